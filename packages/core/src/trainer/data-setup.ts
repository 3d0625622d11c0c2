import { isAbsolute, relative, resolve } from 'node:path';
import type { DataModule, Stage } from '../contracts.js';
import { TaskforgeError } from '../errors.js';

const setUp = new WeakMap<DataModule, Set<Stage>>();

/** fs error codes meaning "the path is wrong" (a config mistake, exit 2); others (EACCES, EIO …) exit 1. */
const WRONG_PATH = new Set(['ENOENT', 'ENOTDIR', 'EISDIR']);

/** What each fs error code means, in words. */
const MEANING: Record<string, string> = {
  ENOENT: 'does not exist',
  ENOTDIR: 'is not under a directory (a part of the path is a file)',
  EISDIR: 'is a directory where a file was expected',
  EACCES: 'cannot be read or written (permission denied)',
  EPERM: 'cannot be read or written (operation not permitted)',
};

interface FsError extends Error {
  code: string;
  path: string;
}

function isFsError(error: unknown): error is FsError {
  const e = error as Partial<FsError> | null;
  return error instanceof Error && typeof e?.code === 'string' && typeof e.path === 'string';
}

/**
 * The `dataset.*` keys (top level, string values) naming `path` or a directory above it, resolved
 * against the working directory, as `dataset.<key>=<value>`.
 */
function keysNaming(path: string, dataConfig: Record<string, unknown> | undefined): string[] {
  const target = resolve(path);
  return Object.entries(dataConfig ?? {}).flatMap(([key, value]) => {
    if (key === '_target_' || typeof value !== 'string' || !value) return [];
    const rel = relative(resolve(value), target);
    return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel)) ? [`dataset.${key}=${value}`] : [];
  });
}

/**
 * A file-system error from the data module's `prepareData`/`setup` as a TaskforgeError naming the
 * data module, the phase, the path and the `dataset.*` key that points there; exit 2 when the
 * path is wrong (ENOENT, ENOTDIR, EISDIR), 1 otherwise. Other errors are returned as they are.
 */
export function dataModuleFsError(
  error: unknown,
  phase: string,
  dataConfig: Record<string, unknown> | undefined,
): unknown {
  if (!isFsError(error)) return error;
  const target = typeof dataConfig?.['_target_'] === 'string' ? ` (${dataConfig['_target_']})` : '';
  const keys = keysNaming(error.path, dataConfig);
  const fix = keys.length
    ? `check ${keys.join(' and ')}, which points there`
    : 'check the dataset.* keys that name data files (e.g. dataset.data_dir)';
  return new TaskforgeError(
    `The data module${target} failed in ${phase}: ` +
      `${resolve(error.path)} ${MEANING[error.code] ?? `gave ${error.code}`} ` +
      `(${error.message}); ${fix}.`,
    { exitCode: WRONG_PATH.has(error.code) ? 2 : 1, cause: error },
  );
}

/**
 * `prepareData()` then `setup(stage)`, once per data module and stage (Lightning's
 * `_has_setup_<stage>` guard). The app layer sets data up before the Trainer to read
 * `modelDataArgs` for building the model; the Trainer then does not repeat it.
 * A file-system error from either (a missing data file …) is rethrown as a TaskforgeError naming
 * the data module, the path and the `dataset.*` key of `dataConfig` pointing there (exit 2 for a
 * wrong path, 1 otherwise; see `dataModuleFsError`); other errors pass through unchanged.
 */
export async function prepareAndSetup(
  datamodule: DataModule,
  stage: Stage,
  dataConfig?: Record<string, unknown>,
): Promise<void> {
  const stages = setUp.get(datamodule) ?? new Set<Stage>();
  if (stages.has(stage)) return;
  try {
    await datamodule.prepareData();
  } catch (error) {
    throw dataModuleFsError(error, 'prepareData()', dataConfig);
  }
  try {
    await datamodule.setup(stage);
  } catch (error) {
    throw dataModuleFsError(error, `setup('${stage}')`, dataConfig);
  }
  stages.add(stage);
  setUp.set(datamodule, stages);
}

/** `teardown()`, and forget the stages set up, so a later fit or test sets the data up again. */
export async function teardownData(datamodule: DataModule): Promise<void> {
  setUp.delete(datamodule);
  await datamodule.teardown?.();
}
