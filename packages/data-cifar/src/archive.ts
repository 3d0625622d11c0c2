/**
 * Getting the archive into the cache: download (or read a local copy), verify its md5, and
 * extract it safely. Every step writes to a temp name and renames, so an interrupted run leaves
 * either nothing or a complete file behind, never a half-written one under its final name.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import * as tar from 'tar';
import { ConfigError, TaskforgeError, type Output } from '@taskforge/core';
import { errorCode, withTempDir } from './fsutil.js';

export type ArchiveSource = { kind: 'http'; url: string } | { kind: 'file'; path: string };

/** `url` may be http(s)://, file://, or a path (relative paths resolve against the project root). */
export function resolveSource(url: string, projectRoot: string): ArchiveSource {
  if (/^https?:\/\//i.test(url)) return { kind: 'http', url };
  if (/^file:\/\//i.test(url)) return { kind: 'file', path: fileURLToPath(url) };
  if (/^[a-z][a-z0-9+.-]+:\/\//i.test(url)) {
    throw new ConfigError([
      {
        path: 'dataset.url',
        value: url,
        message: 'unsupported URL scheme: use http://, https://, file:// or a local path',
      },
    ]);
  }
  return { kind: 'file', path: isAbsolute(url) ? url : resolve(projectRoot, url) };
}

/** md5 of a file, with a byte progress bar. */
export async function md5File(path: string, output: Output, label: string): Promise<string> {
  const size = (await stat(path)).size;
  const hash = createHash('md5');
  const bar = output.progress({ label, total: size, unit: 'bytes' });
  let done = 0;
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
      hash.update(chunk as Buffer);
      bar.update((done += (chunk as Buffer).length));
    }
  } finally {
    bar.stop();
  }
  return hash.digest('hex');
}

/**
 * Downloads `url` to `dest` via `dest.part`, resuming a previous partial download with a Range
 * request when the server allows it, and returns the md5. A wrong md5 deletes the part file.
 */
export async function download(url: string, dest: string, expectedMd5: string | null, output: Output): Promise<string> {
  const part = `${dest}.part`;
  const have = await stat(part).then(
    (s) => s.size,
    () => 0,
  );
  let res: Response;
  try {
    res = await fetch(url, { headers: have > 0 ? { Range: `bytes=${have}-` } : {}, redirect: 'follow' });
  } catch (err) {
    throw new TaskforgeError(
      `Cannot download CIFAR-10 from ${url} (${errorCode(err)}). Check dataset.url and your network connection; ` +
        `offline, copy cifar-10-binary.tar.gz onto this machine and set dataset.url to its local path.`,
      { cause: err },
    );
  }
  if (res.status === 416 && have > 0) {
    // The part file does not fit the remote file (e.g. it changed): start over.
    await res.body?.cancel();
    await rm(part, { force: true });
    return download(url, dest, expectedMd5, output);
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new TaskforgeError(
      `Cannot download CIFAR-10 from ${url}: the server answered HTTP ${res.status} ${res.statusText}. ` +
        `Check dataset.url, or download the archive yourself and set dataset.url to its local path.`,
    );
  }
  const resumed = res.status === 206 && have > 0 && contentRangeStart(res) === have;
  if (res.status === 206 && have > 0 && !resumed) {
    await res.body.cancel();
    await rm(part, { force: true });
    return download(url, dest, expectedMd5, output);
  }
  const hash = createHash('md5');
  if (resumed) for await (const chunk of createReadStream(part)) hash.update(chunk as Buffer);
  let received = resumed ? have : 0;
  const length = Number(res.headers.get('content-length'));
  const total = Number.isFinite(length) && length > 0 ? received + length : undefined;
  const bar = output.progress({ label: `Downloading ${url}`, total, unit: 'bytes' });
  bar.update(received);
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bar.update((received += chunk.length));
      done(null, chunk);
    },
  });
  try {
    await pipeline(
      Readable.fromWeb(res.body as import('node:stream/web').ReadableStream),
      meter,
      createWriteStream(part, { flags: resumed ? 'a' : 'w' }),
    );
  } catch (err) {
    throw interrupted(url, part, received, total, err);
  } finally {
    bar.stop();
  }
  if (total !== undefined && received !== total) throw interrupted(url, part, received, total, undefined);
  const actual = hash.digest('hex');
  if (expectedMd5 !== null && actual !== expectedMd5) {
    await rm(part, { force: true });
    throw md5Mismatch(url, expectedMd5, actual, 'The download was deleted; run again to retry.');
  }
  await rename(part, dest);
  return actual;
}

function contentRangeStart(res: Response): number | undefined {
  const m = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '');
  return m ? Number(m[1]) : undefined;
}

function interrupted(
  url: string,
  part: string,
  received: number,
  total: number | undefined,
  err: unknown,
): TaskforgeError {
  return new TaskforgeError(
    `The download of ${url} was interrupted after ` +
      `${received}${total ? ` of ${total}` : ''} bytes${err ? ` (${errorCode(err)})` : ''}. ` +
      `Run again: the partial file ${part} is kept and the download ` +
      `resumes where it stopped (or restarts if the server cannot resume).`,
    { cause: err },
  );
}

export function md5Mismatch(source: string, expected: string, actual: string, what: string): TaskforgeError {
  return new TaskforgeError(
    `The CIFAR-10 archive from ${source} has md5 ${actual}, but ` +
      `dataset.md5 expects ${expected}: the file is corrupt, truncated, ` +
      `or not the archive you meant. ${what} If you trust this file, ` +
      `set dataset.md5 to ${actual} (or null to skip the check).`,
  );
}

/**
 * Extracts `archive` into a fresh temp dir next to `dest`, refuses entries that could write
 * outside it, runs `validate` on the extracted `member` dir, then renames it to `dest`. The temp
 * dir is removed whatever happens, including SIGINT/SIGTERM during the extraction.
 */
export async function extractArchive(
  archive: string,
  member: string,
  dest: string,
  validate: (dir: string) => Promise<void>,
  fix: string,
): Promise<void> {
  // A listing pass first: a truncated, corrupt or hostile archive is refused before anything is written.
  let unsafe: string | undefined;
  await tarStep(archive, fix, () =>
    tar.t({
      file: archive,
      strict: true,
      onReadEntry: (entry) => {
        unsafe ??= unsafeEntry(entry.path, entry.type);
      },
    }),
  );
  if (unsafe !== undefined) {
    throw new TaskforgeError(
      `Refusing to extract the CIFAR-10 archive ${archive}: ${unsafe}. Nothing was extracted. ${fix}`,
    );
  }
  // Removed on failure, on exit and on signals; a killed process's dir is collected by removeStaleTemps.
  await withTempDir(dirname(dest), '.extract-', async (tmp) => {
    await tarStep(archive, fix, () =>
      tar.x({
        file: archive,
        cwd: tmp,
        strict: true,
        preserveOwner: false,
        // Belt and braces: the listing already refused these; never let tar rewrite and extract them.
        filter: (path, entry) => unsafeEntry(path, 'type' in entry ? entry.type : 'File') === undefined,
      }),
    );
    await validate(join(tmp, member));
    await rm(dest, { recursive: true, force: true });
    await rename(join(tmp, member), dest);
  });
}

async function tarStep(archive: string, fix: string, step: () => Promise<void>): Promise<void> {
  try {
    await step();
  } catch (err) {
    throw new TaskforgeError(
      `Cannot extract the CIFAR-10 archive ${archive} ` +
        `(${errorCode(err)}): it is truncated or not a .tar.gz file. ${fix}`,
      { cause: err },
    );
  }
}

/** Why an entry is unsafe to extract, or undefined when it is a plain file or directory inside the target. */
function unsafeEntry(path: string, type: string): string | undefined {
  if (type !== 'File' && type !== 'OldFile' && type !== 'ContiguousFile' && type !== 'Directory') {
    return (
      `entry '${path}' is a ${type}; only regular files and directories ` +
      `are allowed (links could point outside the target directory)`
    );
  }
  if (path.startsWith('/') || path.startsWith('\\') || /^[a-zA-Z]:/.test(path)) {
    return `entry '${path}' has an absolute path, which would be written outside the target directory`;
  }
  if (path.split(/[\\/]/).includes('..')) {
    return `entry '${path}' contains '..', which would be written outside the target directory`;
  }
  return undefined;
}
