import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import YAML from 'yaml';
import { loadConfigFile } from '../config/yaml-io.js';
import type { ModelDataArgs, Optimizer, OptimizerState, Task } from '../contracts.js';
import { TaskforgeError } from '../errors.js';
import { matchesPattern } from '../optim/param-groups.js';

export const WEIGHTS_FORMAT = 'taskforge-weights';
export const OPTIMIZER_FORMAT = 'taskforge-optimizer';

/** Where the loop stood when the checkpoint was written (always at an optimizer-step boundary). */
export interface TrainerState {
  globalStep: number;
  epoch: number;
  /** Training batches of `epoch` already consumed: the dataloader's `startBatch` on resume. */
  batchInEpoch: number;
  /** True once `epoch`'s training batches are exhausted (saved during epoch-end validation). */
  epochFinished: boolean;
  /** `batchInEpoch` at this epoch's latest validation (-1: none yet), so a resume redoes a pending one. */
  validatedAt: number;
  seed: number;
  optimizer: string | null;
  scheduler: string | null;
  /** Callback name → its `stateDict()`. */
  callbacks: Record<string, Record<string, unknown>>;
  /** Latest value of every logged metric. */
  metrics: Record<string, number>;
  /** ISO time of the save, from the Trainer's clock. */
  savedAt?: string;
  /**
   * The optimizer steps the saving run planned (from max_steps/max_epochs); LR schedules are a
   * function of it. Absent in checkpoints written before it was recorded.
   */
  totalSteps?: number;
  /**
   * The LR the saving run's schedule gives the next optimizer step (`lrAt(globalStep)`); absent
   * without a scheduler.
   */
  nextLr?: number;
}

export interface TaskState {
  modelDataArgs: ModelDataArgs;
  state: Record<string, unknown> | null;
}

/** A loaded checkpoint. Its tensors belong to the caller: call `dispose()` when done. */
export interface Checkpoint {
  dir: string;
  weights: tf.NamedTensorMap;
  optimizer?: { name: string; state: OptimizerState };
  trainerState?: TrainerState;
  taskState: TaskState;
  config: Record<string, unknown>;
  dispose(): void;
}

export interface CheckpointContents {
  task: Task;
  modelDataArgs: ModelDataArgs;
  optimizer?: Optimizer;
  trainerState?: TrainerState;
  config?: Record<string, unknown>;
}

/** Checkpoint writes under way in this process: their directory, temp copy and swapped-out previous. */
const unfinished = new Set<{ dir: string; tmp: string; old: string }>();

/**
 * For a process about to die mid-write (a second Ctrl-C): synchronously removes the temp copy of
 * every checkpoint still being written, and puts back a previous checkpoint that was swapped out
 * for it, so the run dir holds complete checkpoints only (as before the write began).
 */
export function settleUnfinishedCheckpoints(): void {
  for (const write of unfinished) {
    try {
      if (!existsSync(write.dir) && existsSync(write.old)) renameSync(write.old, write.dir);
      rmSync(write.tmp, { recursive: true, force: true });
    } catch {
      // Dying anyway: a leftover '.tmp-<pid>' is named by notACheckpoint if it is ever loaded.
    }
  }
  unfinished.clear();
}

/**
 * Writes a checkpoint directory atomically: everything goes to `<dir>.tmp-<pid>` first, and an
 * existing `<dir>` is swapped out only once the new one is complete, so a failure at any point
 * leaves the previous checkpoint as it was. Returns `dir`.
 * @throws TaskforgeError (exit 1) when writing or moving it into place fails, saying which
 *   checkpoint is left on disk.
 */
export async function writeCheckpoint(dir: string, contents: CheckpointContents): Promise<string> {
  const tmp = `${dir}.tmp-${process.pid}`;
  const old = `${dir}.old-${process.pid}`;
  const write = { dir, tmp, old };
  unfinished.add(write);
  try {
    return await writeCheckpointVia(write, contents);
  } finally {
    unfinished.delete(write);
  }
}

async function writeCheckpointVia(
  { dir, tmp, old }: { dir: string; tmp: string; old: string },
  contents: CheckpointContents,
): Promise<string> {
  await rm(tmp, { recursive: true, force: true });
  try {
    await mkdir(tmp, { recursive: true });
    await writeTensors(tmp, 'weights', WEIGHTS_FORMAT, contents.task.namedVariables(), {});
    if (contents.optimizer) {
      const state = contents.optimizer.getState();
      try {
        await writeTensors(tmp, 'optimizer', OPTIMIZER_FORMAT, state.tensors, {
          name: contents.optimizer.name,
          meta: state.meta,
        });
      } finally {
        tf.dispose(state.tensors);
      }
    }
    if (contents.trainerState) await writeFile(join(tmp, 'trainer_state.json'), json(contents.trainerState));
    const taskState: TaskState = { modelDataArgs: contents.modelDataArgs, state: contents.task.stateDict?.() ?? null };
    await writeFile(join(tmp, 'task_state.json'), json(taskState));
    await writeFile(join(tmp, 'config.yaml'), YAML.stringify(contents.config ?? {}));
  } catch (error) {
    await rm(tmp, { recursive: true, force: true });
    throw new TaskforgeError(
      `Could not write checkpoint '${dir}': ${(error as Error).message}. ` +
        `Any previous checkpoint there was left untouched.`,
      { cause: error },
    );
  }
  const hadPrevious = existsSync(dir);
  try {
    await rm(old, { recursive: true, force: true });
    if (hadPrevious) await rename(dir, old);
    await rename(tmp, dir);
  } catch (error) {
    const where = hadPrevious && !existsSync(dir) && existsSync(old) ? ` The previous checkpoint is at '${old}'.` : '';
    throw new TaskforgeError(
      `Could not move the new checkpoint from '${tmp}' into place at '${dir}': ${(error as Error).message}.${where}`,
      { cause: error },
    );
  }
  if (hadPrevious) await rm(old, { recursive: true, force: true });
  return dir;
}

async function writeTensors(
  dir: string,
  stem: string,
  format: string,
  tensors: tf.NamedTensorMap,
  extra: Record<string, unknown>,
): Promise<void> {
  const { data, specs } = await tf.io.encodeWeights(tensors);
  const buffer = Array.isArray(data) ? Buffer.concat(data.map((b) => Buffer.from(b))) : Buffer.from(data);
  await writeFile(join(dir, `${stem}.bin`), buffer);
  await writeFile(
    join(dir, `${stem}.json`),
    json({ format, ...extra, weightsManifest: [{ paths: [`${stem}.bin`], weights: specs }] }),
  );
}

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

/**
 * Reads a checkpoint written by `writeCheckpoint`. `optimizer: false` skips the optimizer state.
 * @throws TaskforgeError exit code 2 when `dir` is missing or is not a checkpoint (a usage mistake);
 *   exit code 1 when a file in it is corrupt or truncated.
 */
export async function loadCheckpoint(dir: string, options: { optimizer?: boolean } = {}): Promise<Checkpoint> {
  return loadCheckpointSync(dir, options);
}

/**
 * Why `dir` is not a checkpoint directory, as a sentence with the fix (a run dir or its
 * `checkpoints/` dir, which Lightning users pass, gets its `last` checkpoint as the did-you-mean),
 * or undefined when it is one (it has weights.json; whether the files are sound is checked on load).
 */
export function notACheckpoint(dir: string): string | undefined {
  if (existsSync(join(dir, 'weights.json'))) return undefined;
  const last = lastCheckpointIn(dir);
  const hint = last
    ? `that is ${last.kind === 'run' ? 'a run directory' : "a run's checkpoints directory"}, not a checkpoint: did you mean '${last.dir}', its last checkpoint (the others ` +
      'are the step=* directories next to it)'
    : existsSync(dir)
      ? `the directory exists but has no weights.json, so it is not a taskforge checkpoint (or it ` +
        `was written by an interrupted save; look for '${basename(dir)}.tmp-*' or '.old-*' next to it)`
      : 'the directory does not exist';
  return (
    `${hint}. Checkpoints are directories such as '<run_dir>/checkpoints/last' ` +
    `or '<run_dir>/checkpoints/step=000200' containing weights.json and weights.bin.`
  );
}

/**
 * The `last` checkpoint of a run dir or of a run's `checkpoints/` dir (what Lightning users pass
 * for a checkpoint), with which of the two `dir` is; undefined for any other directory.
 */
export function lastCheckpointIn(dir: string): { dir: string; kind: 'run' | 'checkpoints' } | undefined {
  const inRunDir = join(dir, 'checkpoints', 'last');
  if (existsSync(join(inRunDir, 'weights.json'))) return { dir: inRunDir, kind: 'run' };
  const inCheckpointsDir = join(dir, 'last');
  if (existsSync(join(inCheckpointsDir, 'weights.json'))) return { dir: inCheckpointsDir, kind: 'checkpoints' };
  return undefined;
}

/**
 * `loadCheckpoint` for code that cannot await, e.g. a component's synchronous `create` loading
 * pretrained weights before its optimizer is built.
 * @throws TaskforgeError as `loadCheckpoint` (exit 2: missing or not a checkpoint; exit 1: corrupt).
 */
export function loadCheckpointSync(dir: string, options: { optimizer?: boolean } = {}): Checkpoint {
  const problem = notACheckpoint(dir);
  if (problem) throw new TaskforgeError(`Cannot load checkpoint '${dir}': ${problem}`, { exitCode: 2 });
  const owned: tf.Tensor[] = [];
  try {
    const weights = readTensors(dir, 'weights', WEIGHTS_FORMAT);
    owned.push(...Object.values(weights));
    let optimizer: Checkpoint['optimizer'];
    if (options.optimizer !== false && existsSync(join(dir, 'optimizer.json'))) {
      const manifest = readJson<{ name?: string; meta?: Record<string, unknown> }>(dir, 'optimizer.json');
      const tensors = readTensors(dir, 'optimizer', OPTIMIZER_FORMAT);
      owned.push(...Object.values(tensors));
      optimizer = { name: String(manifest.name ?? 'unknown'), state: { tensors, meta: manifest.meta ?? {} } };
    }
    const trainerState = existsSync(join(dir, 'trainer_state.json'))
      ? readJson<TrainerState>(dir, 'trainer_state.json')
      : undefined;
    const taskState = existsSync(join(dir, 'task_state.json'))
      ? readJson<TaskState>(dir, 'task_state.json')
      : { modelDataArgs: {}, state: null };
    const config = readCheckpointConfig(dir) ?? {};
    return {
      dir,
      weights,
      taskState,
      config,
      ...(optimizer ? { optimizer } : {}),
      ...(trainerState ? { trainerState } : {}),
      dispose: () => tf.dispose(owned),
    };
  } catch (error) {
    tf.dispose(owned);
    if (error instanceof TaskforgeError) throw error;
    throw new TaskforgeError(`Cannot load checkpoint '${dir}': ${(error as Error).message}.`, { cause: error });
  }
}

/**
 * The run config a checkpoint was saved with: `<dir>/config.yaml` as `writeCheckpoint` wrote it
 * (the composed, validated config: `task`, `dataset`, `backbone`, `trainer`…), read with the
 * config YAML reader; `undefined` when the directory has no config.yaml. An empty file is `{}`.
 * Reads only that file: it does not check that `dir` holds weights (see `loadCheckpoint`).
 * @throws TaskforgeError (exit code 1) when config.yaml cannot be read, is not valid YAML or is
 *   not a mapping, naming the file, line and column and calling the checkpoint corrupt; callers
 *   that know which setting named `dir` may catch it and report that setting instead.
 */
export function readCheckpointConfig(dir: string): Record<string, unknown> | undefined {
  const file = join(dir, 'config.yaml');
  if (!existsSync(file)) return undefined;
  const { body, problems } = loadConfigFile(file, file);
  if (problems.length) {
    const reasons = problems.map((p) => `${p.message}${p.source && p.source !== file ? ` (${p.source})` : ''}`);
    throw new TaskforgeError(
      `Checkpoint file '${file}' cannot be read as a config: ${reasons.join('; ')}; the checkpoint is corrupt ` +
        '(checkpoints written by taskforge hold the run config as a YAML mapping).',
    );
  }
  return body;
}

function readJson<T>(dir: string, file: string): T {
  const text = readFileSync(join(dir, file), 'utf8');
  return parseCheckpointJson<T>(dir, file, text);
}

/**
 * One JSON file of a checkpoint dir (`trainer_state.json`, `task_state.json`, …), or undefined
 * when the dir has no such file. Throws TaskforgeError (exit 1) when it is not valid JSON.
 */
export function readCheckpointJson<T>(dir: string, file: string): T | undefined {
  if (!existsSync(join(dir, file))) return undefined;
  return readJson<T>(dir, file);
}

function parseCheckpointJson<T>(dir: string, file: string, text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new TaskforgeError(
      `Checkpoint file '${join(dir, file)}' is not valid JSON ` +
        `(${(error as Error).message}); the checkpoint is corrupt.`,
    );
  }
}

function readTensors(dir: string, stem: string, format: string): tf.NamedTensorMap {
  const manifest = readJson<{ format?: string; weightsManifest?: tf.io.WeightsManifestConfig }>(dir, `${stem}.json`);
  const group = manifest.weightsManifest?.[0];
  if (manifest.format !== format || !group) {
    throw new TaskforgeError(
      `Checkpoint file '${join(dir, `${stem}.json`)}' has format ${JSON.stringify(manifest.format)}, ` +
        `expected '${format}' with a weightsManifest; it was not written by taskforge.`,
    );
  }
  const bytes = readFileSync(join(dir, group.paths[0] ?? `${stem}.bin`));
  const expected = group.weights.reduce(
    (sum, s) => sum + s.shape.reduce((a, b) => a * b, 1) * bytesPerElement(s.dtype),
    0,
  );
  if (bytes.byteLength !== expected) {
    throw new TaskforgeError(
      `Checkpoint file '${join(dir, `${stem}.bin`)}' has ${bytes.byteLength} bytes ` +
        `but its manifest describes ${expected}; the file is truncated or corrupt.`,
    );
  }
  const data = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  return tf.io.decodeWeights(data, group.weights);
}

function bytesPerElement(dtype: string): number {
  if (dtype === 'bool') return 1;
  if (dtype === 'float32' || dtype === 'int32') return 4;
  throw new TaskforgeError(`Checkpoints of dtype '${dtype}' are not supported (expected float32, int32 or bool).`);
}

export interface RestoreReport {
  missing: string[];
  unexpected: string[];
  /**
   * Only with `skip`: variables matching a skip pattern that kept their current values (absent or
   * of another shape in the checkpoint).
   */
  skipped?: string[];
}

export interface RestoreOptions {
  /** Default true: any missing or unexpected variable is an error. */
  strict?: boolean;
  /**
   * Variable-name patterns (substring or glob, as `no_decay`, e.g. `cls_head.*`) that may be
   * absent from the checkpoint or differ in shape there: such variables keep their current values
   * (e.g. a fresh classification head when fine-tuning on another label set).
   */
  skip?: readonly string[];
  /**
   * The config of the run loading the checkpoint: when the weights do not fit, the error names the
   * `backbone.*` and `task.*` values that differ from the checkpoint's config.yaml, with the
   * overrides that load it.
   */
  currentConfig?: Record<string, unknown>;
}

/**
 * Copies a checkpoint's weights into the task's variables and restores its state dict (when the
 * target has `loadStateDict`). Strict (default): any missing, unexpected or mis-shaped variable
 * is an error naming them all; with `strict: false` (e.g. loading a pretrained backbone into a
 * bigger task) only mis-shaped variables are errors, and the names that did not match are
 * returned. Variables matching `skip` are never errors. Nothing is assigned unless every check
 * passes.
 * @throws TaskforgeError exit code 2 (a config mistake, whichever part differs) naming every
 *   mis-shaped, missing and unexpected variable.
 */
export function restoreTaskWeights(
  task: Pick<Task, 'namedVariables' | 'loadStateDict'>,
  checkpoint: Checkpoint,
  options: RestoreOptions = {},
): RestoreReport {
  const variables = task.namedVariables();
  const skippable = (name: string) => (options.skip ?? []).some((pattern) => matchesPattern(name, pattern));
  const fits = (name: string) => {
    const saved = checkpoint.weights[name];
    return (
      saved !== undefined &&
      tf.util.arraysEqual(saved.shape, variables[name]!.shape) &&
      saved.dtype === variables[name]!.dtype
    );
  };
  const skipped = Object.keys(variables).filter((n) => skippable(n) && !fits(n));
  const missing = Object.keys(variables).filter((n) => !(n in checkpoint.weights) && !skipped.includes(n));
  const unexpected = Object.keys(checkpoint.weights).filter((n) => !(n in variables) && !skippable(n));
  const misShaped = Object.keys(variables)
    .filter((n) => n in checkpoint.weights && !skipped.includes(n) && !fits(n))
    .map((n) => {
      const saved = checkpoint.weights[n]!;
      return (
        `'${n}' (checkpoint ${saved.dtype} [${saved.shape.join(', ')}], ` +
        `model ${variables[n]!.dtype} [${variables[n]!.shape.join(', ')}])`
      );
    });
  const strict = options.strict ?? true;
  const problems: string[] = [];
  if (misShaped.length) problems.push(`mis-shaped: ${list(misShaped)}`);
  if (strict && missing.length) problems.push(`missing from the checkpoint: ${list(missing.map((n) => `'${n}'`))}`);
  if (strict && unexpected.length)
    problems.push(`in the checkpoint but not in the model: ${list(unexpected.map((n) => `'${n}'`))}`);
  if (problems.length) {
    const differences = options.currentConfig ? modelConfigDifferences(checkpoint.dir, options.currentConfig) : [];
    // A key the checkpoint's config lacks was added by this run (an override or a file: `~key`
    // removes it) or is a setting the code gained since, whose default no override removes.
    const settable = differences.filter((d) => d.saved !== UNSET);
    const added = differences.filter((d) => d.saved === UNSET);
    const describe = (d: { key: string; saved: string; current: string }) =>
      d.saved === UNSET
        ? `${d.key} is not in it and ${d.current} here`
        : `${d.key} is ${d.saved} there and ${d.current} here`;
    const advice = differences.length
      ? `The model config differs from the checkpoint's (${join(checkpoint.dir, 'config.yaml')}): ` +
        `${differences.map(describe).join(', ')}; ` +
        (settable.length
          ? `to load it, set ${settable.map(loadingOverride).join(' ')} (or drop the overrides that changed them)` +
            (added.length ? ', and ' : '.')
          : '') +
        (added.length
          ? `${settable.length ? '' : 'to load it, '}remove ${added.map((d) => d.key).join(', ')} if this run added ` +
            `${added.length === 1 ? 'it' : 'them'} (${added.map((d) => `~${d.key}`).join(' ')}, or drop the override); ` +
            `a setting the code gained since the checkpoint was saved has no override: load it with the code it was trained with.`
          : '')
      : 'The model config (or the data that sizes it) differs from the one the checkpoint ' +
        "was trained with; use the config saved in the checkpoint's config.yaml.";
    // Names are made by the components' code, not by config values: when they differ, the fix may
    // be the code the checkpoint was trained with, whatever the config says.
    const codeNote =
      (strict && missing.length) || (strict && unexpected.length)
        ? ' Variable names come from the backbone and task code: if the names still differ with the ' +
          "checkpoint's config, the code changed since it was saved (e.g. another backbone class); " +
          'load it with the code it was trained with, or train afresh.'
        : '';
    throw new TaskforgeError(
      `Checkpoint '${checkpoint.dir}' does not match the model: ${problems.join('; ')}. ${advice}${codeNote}`,
      {
        exitCode: 2,
      },
    );
  }
  for (const [name, variable] of Object.entries(variables)) {
    const saved = checkpoint.weights[name];
    if (saved && !skipped.includes(name)) variable.assign(saved);
  }
  if (checkpoint.taskState.state && task.loadStateDict) task.loadStateDict(checkpoint.taskState.state);
  return options.skip ? { missing, unexpected, skipped } : { missing, unexpected };
}

function list(items: string[], max = 8): string {
  return items.length > max ? `${items.slice(0, max).join(', ')} and ${items.length - max} more` : items.join(', ');
}

/** Directory name for a checkpoint taken after `globalStep` optimizer steps, e.g. `step=000200`. */
export function checkpointName(globalStep: number): string {
  return `step=${String(globalStep).padStart(6, '0')}`;
}

/**
 * The override that gives a key the checkpoint's value: add it (`+`) or set it; for another
 * component (`backbone._target_`), the config group selection named like it (`backbone/gpt2` →
 * `backbone=gpt2`, the convention of conf/<group>/<name>.yaml).
 */
function loadingOverride(d: { key: string; saved: string; current: string }): string {
  const section = d.key.endsWith('._target_') ? d.key.slice(0, -'._target_'.length) : undefined;
  if (section !== undefined) {
    const target = JSON.parse(d.saved) as string;
    return `${section}=${target.startsWith(`${section}/`) ? target.slice(section.length + 1) : target}`;
  }
  return `${d.current === UNSET ? '+' : ''}${d.key}=${d.saved}`;
}

const UNSET = '(unset)';

/**
 * The `backbone.*` and `task.*` leaf values of `current` that differ from those in the config.yaml
 * saved in checkpoint `dir` (values as YAML flow text); empty when it has none or it cannot be read.
 */
function modelConfigDifferences(
  dir: string,
  current: Record<string, unknown>,
): Array<{ key: string; saved: string; current: string }> {
  let saved: Record<string, unknown> | undefined;
  try {
    saved = readCheckpointConfig(dir);
  } catch {
    return [];
  }
  if (!saved) return [];
  const leaves = (node: unknown, prefix: string, out: Map<string, string>) => {
    if (node !== null && typeof node === 'object' && !Array.isArray(node)) {
      for (const [k, v] of Object.entries(node)) leaves(v, `${prefix}.${k}`, out);
    } else out.set(prefix, JSON.stringify(node) ?? 'null');
    return out;
  };
  const differences: Array<{ key: string; saved: string; current: string }> = [];
  const isNode = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v);
  for (const section of ['backbone', 'task']) {
    // A config without the section (an empty one, a task without a backbone) says nothing about it.
    if (!isNode(saved[section]) || !isNode(current[section])) continue;
    const target = (node: unknown) => (node as { _target_?: unknown })._target_;
    if (typeof target(saved[section]) === 'string' && target(saved[section]) !== target(current[section])) {
      // Another component: its settings differ as a consequence; the fix is selecting the checkpoint's.
      differences.push({
        key: `${section}._target_`,
        saved: JSON.stringify(target(saved[section])),
        current: JSON.stringify(target(current[section])) ?? UNSET,
      });
      continue;
    }
    const a = leaves(saved[section], section, new Map());
    const b = leaves(current[section], section, new Map());
    for (const key of new Set([...a.keys(), ...b.keys()])) {
      if (a.get(key) !== b.get(key))
        differences.push({ key, saved: a.get(key) ?? UNSET, current: b.get(key) ?? UNSET });
    }
  }
  return differences;
}
