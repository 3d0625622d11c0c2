import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { TaskforgeError } from '@taskforge/core';

/** A sibling temp name, unique per process and call, so concurrent runs never share one. */
function tempPath(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Writes `data` to a temp file and renames it over `path`: readers see all or nothing. */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = tempPath(path);
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Creates `dir` and proves it writable with a probe file (root ignores mode bits, so access() is not enough). */
export async function ensureWritableDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    const probe = join(dir, `.write-test-${process.pid}`);
    await writeFile(probe, '');
    await rm(probe, { force: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new TaskforgeError(
      `Cannot write to the CIFAR-10 data directory ${dir} (${code}). The dataset, its palette and token caches are stored there. ` +
      `Set dataset.data_dir to a writable folder, or fix the permissions of ${dir}.`,
      { cause: err },
    );
  }
}

export function errorCode(err: unknown): string {
  const e = err as { code?: string; cause?: { code?: string; message?: string }; message?: string };
  return e.cause?.code ?? e.code ?? e.cause?.message ?? e.message ?? String(err);
}
