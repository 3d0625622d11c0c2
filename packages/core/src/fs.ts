import {
  closeSync,
  existsSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { TaskforgeError } from './errors.js';

/** Runs a filesystem action, turning its failure into one actionable paragraph naming `path`. */
export function withFsErrors<T>(what: string, path: string, action: () => T): T {
  try {
    return action();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new TaskforgeError(
      `Cannot ${what} '${path}': ${reason}. Check that the directory is writable and the disk is not full.`,
      { cause: error },
    );
  }
}

/** Writes `data` to a temp file beside `path`, then renames it over `path`: readers never see half a file. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  withFsErrors('write', path, () => writeViaTemp(path, data, (tmp) => renameSync(tmp, path)));
}

/**
 * Writes and fsyncs `data` to a fresh temp file beside `path`, then hands it to `publish` (which
 * moves it into place); the temp file is removed if anything fails.
 */
function writeViaTemp<T>(path: string, data: string | Uint8Array, publish: (tmp: string) => T): T {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  try {
    const fd = openSync(tmp, 'w');
    try {
      writeFileSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    return publish(tmp);
  } catch (error) {
    rmSync(tmp, { force: true });
    throw error;
  }
}

/**
 * Writes `data` to `path` like `writeFileAtomic`, but never replaces an existing file: when `path`
 * is taken it writes `<stem>-2<ext>`, then `-3`, ... and returns the path actually written. The
 * final name is claimed with a hard link, which fails if the name exists, so two processes never
 * write the same name. Throws TaskforgeError (exit 1) naming `path` when it cannot write.
 */
export function writeNewFileAtomic(path: string, data: string | Uint8Array): string {
  return withFsErrors('write', path, () =>
    writeViaTemp(path, data, (tmp) => {
      const ext = extname(path);
      const stem = path.slice(0, path.length - ext.length);
      for (let n = 1; ; n++) {
        const candidate = n === 1 ? path : `${stem}-${n}${ext}`;
        try {
          linkSync(tmp, candidate);
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === 'EEXIST') continue;
          // No hard links on this filesystem: check, then rename (not race-free, still never clobbers a file seen).
          if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw error;
          if (existsSync(candidate)) continue;
          renameSync(tmp, candidate);
          return candidate;
        }
        unlinkSync(tmp);
        return candidate;
      }
    }),
  );
}

/**
 * Removes `dir` when the only file under it is `keep` (e.g. the run's `config.yaml`), other than
 * empty directories: a run that failed before writing anything else (no checkpoint, log or result)
 * leaves no run dir behind. Returns true when it removed `dir`; false (touching nothing) when `dir`
 * is missing or holds anything else. Symlinks count as content.
 */
export function removeDirIfOnly(dir: string, keep: string): boolean {
  if (!existsSync(dir)) return false;
  const onlyKeep = (at: string, top: boolean): boolean =>
    readdirSync(at, { withFileTypes: true }).every((entry) =>
      entry.isDirectory() ? onlyKeep(join(at, entry.name), false) : top && entry.name === keep && entry.isFile(),
    );
  if (!onlyKeep(dir, true)) return false;
  rmSync(dir, { recursive: true, force: true });
  return true;
}
