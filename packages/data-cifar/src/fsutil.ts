import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { onExit } from 'signal-exit';
import { TaskforgeError, type Output } from '@taskforge/core';

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
      `Cannot write to the CIFAR-10 data directory ${dir} (${code}). ` +
        `The dataset, its palette and token caches are stored there. ` +
        `Set dataset.data_dir to a writable folder, or fix the permissions of ${dir}.`,
      { cause: err },
    );
  }
}

export function errorCode(err: unknown): string {
  const e = err as { code?: string; cause?: { code?: string; message?: string }; message?: string };
  return e.cause?.code ?? e.code ?? e.cause?.message ?? e.message ?? String(err);
}

/** Temp names this package creates: `.extract-<pid>-XXXXXX` dirs and `<file>.tmp-<pid>-<hex>` files. */
const OWNED_TEMP = /^\.extract-(\d+)-|\.tmp-(\d+)-[0-9a-z]+$/;
/** `.extract-XXXXXX` from versions that did not put the pid in the name. */
const LEGACY_EXTRACT = /^\.extract-[A-Za-z0-9]{6}$/;
/** A legacy temp dir this old cannot belong to a running extraction. */
const LEGACY_MAX_AGE_MS = 60 * 60 * 1000;

function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, owned by someone else
  }
}

/**
 * Removes temp dirs and files left in `dir` by a process that was killed before it could clean
 * up (SIGKILL, power loss): those whose owner pid is no longer running, and pid-less legacy
 * `.extract-XXXXXX` dirs older than an hour. Those of live processes (a concurrent run) are kept.
 * Returns the names removed; failures to remove are warnings, never errors.
 */
export async function removeStaleTemps(dir: string, output?: Pick<Output, 'warn'>): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names) {
    const owned = OWNED_TEMP.exec(name);
    let stale = false;
    if (owned) stale = !isAlive(Number(owned[1] ?? owned[2]));
    else if (LEGACY_EXTRACT.test(name)) {
      const mtime = await stat(join(dir, name)).then(
        (s) => s.mtimeMs,
        () => Date.now(),
      );
      stale = Date.now() - mtime > LEGACY_MAX_AGE_MS;
    }
    if (!stale) continue;
    try {
      await rm(join(dir, name), { recursive: true, force: true });
      removed.push(name);
    } catch (err) {
      output?.warn(
        `cifar10: could not remove the stale temp ${join(dir, name)} (${errorCode(err)}); delete it by hand.`,
      );
    }
  }
  return removed;
}

/**
 * Runs `action` with a fresh temp dir `<parent>/<prefix><pid>-XXXXXX` that is removed when the
 * action ends (success or failure) and also if the process exits or is killed by a signal
 * (SIGINT, SIGTERM, SIGHUP...) meanwhile; the signal then still ends the process as it would
 * have. Only SIGKILL can leave the dir behind; `removeStaleTemps` collects it on the next run.
 */
export async function withTempDir<T>(parent: string, prefix: string, action: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(parent, `${prefix}${process.pid}-`));
  const removeOnExit = onExit(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    return await action(dir);
  } finally {
    removeOnExit();
    await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  }
}
