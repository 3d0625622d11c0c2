import { existsSync, readFileSync } from 'node:fs';
import { SourceMap, type SourceMapPayload, type SourceMapping } from 'node:module';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DataModule, Stage } from '../contracts.js';
import { TaskforgeError, isTaskforgeError } from '../errors.js';

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
 * Where in a module's own code `error` was thrown: the first stack frame outside Node's internals
 * and node_modules, as a path relative to the working directory with line and column; undefined
 * when the stack has none.
 */
function thrownAt(error: Error): string | undefined {
  for (const line of (error.stack ?? '').split('\n').slice(1)) {
    const frame = /\(?((?:file:\/\/)?\/[^()]+?):(\d+):(\d+)\)?\s*$/.exec(line.trim());
    if (!frame) continue;
    const built = frame[1]!.startsWith('file://') ? fileURLToPath(frame[1]!) : frame[1]!;
    if (built.split(/[\\/]/).includes('node_modules')) continue;
    const at = sourcePosition(built, Number(frame[2]), Number(frame[3])) ?? {
      file: built,
      line: Number(frame[2]),
      column: Number(frame[3]),
    };
    const shown = relative(process.cwd(), at.file);
    return `${shown.startsWith('..') ? at.file : shown}:${at.line}:${at.column}`;
  }
  return undefined;
}

/**
 * The TypeScript position of a position in built JavaScript (1-based line and column), from the
 * source map beside the file (`<file>.map`, which every package's build writes): the line a user
 * edits, not the one tsc emitted. Undefined without a map or a mapping there.
 */
function sourcePosition(
  file: string,
  line: number,
  column: number,
): { file: string; line: number; column: number } | undefined {
  const mapFile = `${file}.map`;
  if (!existsSync(mapFile)) return undefined;
  try {
    const payload = JSON.parse(readFileSync(mapFile, 'utf8')) as SourceMapPayload;
    const entry = new SourceMap(payload).findEntry(line - 1, column - 1) as Partial<SourceMapping>;
    if (!entry.originalSource || entry.originalLine === undefined || entry.originalColumn === undefined)
      return undefined;
    const source = entry.originalSource.startsWith('file://')
      ? fileURLToPath(entry.originalSource)
      : resolve(dirname(mapFile), payload.sourceRoot ?? '', entry.originalSource);
    return { file: source, line: entry.originalLine + 1, column: entry.originalColumn + 1 };
  } catch {
    return undefined;
  }
}

/**
 * An error from the data module's `prepareData`/`setup` as a user should see it. A file-system
 * error: as `dataModuleFsError` words it (exit 2 for a wrong path). A TaskforgeError (the module's
 * own message) or a non-Error: unchanged. Any other error (a JSON.parse SyntaxError on a bad line,
 * a TypeError in the module's loader) comes from the data module's code or the data it reads, not
 * from taskforge: a TaskforgeError (exit 1) naming the data module, the phase, the error and where
 * the module threw it, with the original as its `cause` (`--verbose` prints its stack).
 */
export function dataModuleError(
  error: unknown,
  phase: string,
  dataConfig: Record<string, unknown> | undefined,
): unknown {
  const fsError = dataModuleFsError(error, phase, dataConfig);
  if (fsError !== error || !(error instanceof Error) || isTaskforgeError(error)) return fsError;
  const target = typeof dataConfig?.['_target_'] === 'string' ? ` (${dataConfig['_target_']})` : '';
  const at = thrownAt(error);
  return new TaskforgeError(
    `The data module${target} failed in ${phase}: ${error.name}: ${error.message}` +
      `${at ? ` (thrown at ${at})` : ''}. This comes from the data module's code or the data it reads, ` +
      'not from taskforge: fix the data there, or have the module check what it parses and name the file ' +
      'and line at fault (docs/new-task.md, "2. The data"); run again with --verbose for the stack trace.',
    { exitCode: 1, cause: error },
  );
}

/**
 * `prepareData()` then `setup(stage)`, once per data module and stage (Lightning's
 * `_has_setup_<stage>` guard). The app layer sets data up before the Trainer to read
 * `modelDataArgs` for building the model; the Trainer then does not repeat it.
 * A file-system error from either (a missing data file …) is rethrown as a TaskforgeError naming
 * the data module, the path and the `dataset.*` key of `dataConfig` pointing there (exit 2 for a
 * wrong path, 1 otherwise); any other error that is not a TaskforgeError as one naming the data
 * module, the phase and where its code threw (exit 1); see `dataModuleError`.
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
    throw dataModuleError(error, 'prepareData()', dataConfig);
  }
  try {
    await datamodule.setup(stage);
  } catch (error) {
    throw dataModuleError(error, `setup('${stage}')`, dataConfig);
  }
  stages.add(stage);
  setUp.set(datamodule, stages);
}

/** `teardown()`, and forget the stages set up, so a later fit or test sets the data up again. */
export async function teardownData(datamodule: DataModule): Promise<void> {
  setUp.delete(datamodule);
  await datamodule.teardown?.();
}
