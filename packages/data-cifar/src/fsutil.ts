import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TaskforgeError } from '@taskforge/core';

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
