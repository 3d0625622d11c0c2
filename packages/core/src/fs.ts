import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
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
  withFsErrors('write', path, () => {
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
      renameSync(tmp, path);
    } catch (error) {
      rmSync(tmp, { force: true });
      throw error;
    }
  });
}
