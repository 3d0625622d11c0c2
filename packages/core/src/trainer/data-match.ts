import { isDeepStrictEqual } from 'node:util';
import type { ModelDataArgs } from '../contracts.js';

/** What a checkpoint knows about the data its weights were trained on (see `Checkpoint`). */
export interface CheckpointDataFacts {
  /** `task_state.json`'s `modelDataArgs`: vocabulary size, sequence length, palette, … */
  taskState: { modelDataArgs: ModelDataArgs };
  /** The run config saved beside the weights (`config.yaml`); its `dataset` node is compared. */
  config: Record<string, unknown>;
}

/** The data a run is about to use: its data module's `modelDataArgs` and its `dataset` config node. */
export interface RunDataFacts {
  modelDataArgs: ModelDataArgs;
  /** The run's validated `dataset` config node; when given, differing settings are named. */
  dataConfig?: Record<string, unknown> | undefined;
  /**
   * `dataset.*` settings never named as a difference: the data module's training-only ones
   * (`trainingOnlyKeys` of its schema, e.g. `dataset.augment`), which cannot change a sample.
   */
  trainingOnly?: readonly string[] | undefined;
}

/** One difference between a checkpoint's data and a run's. */
export interface DataDifference {
  /** `modelDataArgs` key (e.g. `num_positions`) or dotted config key (e.g. `dataset.image_size`). */
  key: string;
  checkpoint: unknown;
  run: unknown;
}

/** The result of {@link compareCheckpointData}. */
export interface DataMismatch {
  /** `modelDataArgs` keys whose values differ (scalars first, then lists such as a palette). */
  modelDataArgs: DataDifference[];
  /** `dataset.*` leaves whose values differ between the checkpoint's config.yaml and the run's config. */
  settings: DataDifference[];
  /** One sentence naming the settings (else the data facts) that differ, each with both values. */
  message: string;
}

/** `dataset.*` settings that shape how batches are read, not what a sample is: never reported. */
const LOADER_SETTINGS = new Set(['dataset.batch_size', 'dataset.num_workers']);

/**
 * Compares the data a checkpoint was trained on with the data a run will use. Returns undefined
 * when every `modelDataArgs` key present on both sides agrees (keys in `ignore`, e.g. class names
 * when fine-tuning on another label set, are skipped); otherwise the differing data facts plus
 * the `dataset.*` config settings that differ, so an error can name the cause (`dataset.image_size`)
 * rather than its symptom (a palette or a weight shape). Pure: throws nothing; callers raise the
 * error (a config mistake, exit code 2).
 */
export function compareCheckpointData(
  checkpoint: CheckpointDataFacts,
  run: RunDataFacts,
  ignore: readonly string[] = [],
): DataMismatch | undefined {
  const saved = checkpoint.taskState.modelDataArgs;
  const args = Object.keys(saved)
    .filter((k) => !ignore.includes(k) && k in run.modelDataArgs && !isDeepStrictEqual(saved[k], run.modelDataArgs[k]))
    .map((key) => ({ key, checkpoint: saved[key], run: run.modelDataArgs[key] }))
    .sort((a, b) => Number(isCompound(a.checkpoint)) - Number(isCompound(b.checkpoint)));
  if (args.length === 0) return undefined;
  const savedData = checkpoint.config['dataset'];
  const settings = (
    run.dataConfig && isRecord(savedData) ? leafDifferences(savedData, run.dataConfig, 'dataset') : []
  ).filter((d) => !LOADER_SETTINGS.has(d.key) && !run.trainingOnly?.includes(d.key));
  const describe = (d: DataDifference) => `${d.key} (${showPair(d.checkpoint, d.run)})`;
  const facts = args.map(describe).join(', ');
  const message = settings.length
    ? `the data differs from the data the checkpoint was trained on in ` +
      `${settings.map(describe).join(', ')}, so the model's data facts differ: ${facts}`
    : `the data differs from the data the checkpoint was trained on: ${facts}`;
  return { modelDataArgs: args, settings, message };
}

/**
 * The `dataset.*` settings of a run that differ from those of the config a checkpoint was trained
 * with (its config.yaml), batch size and `trainingOnly` settings aside: an evaluation that prepares its inputs otherwise than
 * training did (another clip, normalisation or bin count) scores a model on inputs it never saw.
 * Empty when the checkpoint has no saved `dataset` node.
 */
export function datasetSettingDifferences(
  checkpointConfig: Record<string, unknown>,
  dataConfig: Record<string, unknown> | undefined,
  trainingOnly: readonly string[] = [],
): DataDifference[] {
  const saved = checkpointConfig['dataset'];
  if (!isRecord(saved) || !dataConfig) return [];
  return leafDifferences(saved, dataConfig, 'dataset').filter(
    (d) => !LOADER_SETTINGS.has(d.key) && !trainingOnly.includes(d.key),
  );
}

function leafDifferences(
  saved: Record<string, unknown>,
  current: Record<string, unknown>,
  path: string,
): DataDifference[] {
  const out: DataDifference[] = [];
  for (const key of new Set([...Object.keys(saved), ...Object.keys(current)])) {
    const a = saved[key];
    const b = current[key];
    const at = `${path}.${key}`;
    if (isRecord(a) && isRecord(b)) out.push(...leafDifferences(a, b, at));
    else if (!isDeepStrictEqual(a, b)) out.push({ key: at, checkpoint: a, run: b });
  }
  return out;
}

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isCompound = (v: unknown) => v !== null && typeof v === 'object';

function showPair(checkpoint: unknown, run: unknown): string {
  if (Array.isArray(checkpoint) && Array.isArray(run) && checkpoint.length === run.length) {
    return `${checkpoint.length} ${checkpoint.length === 1 ? 'entry' : 'entries'} in both, but different values`;
  }
  return `checkpoint ${show(checkpoint)}, this run ${show(run)}`;
}

function show(value: unknown): string {
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (isCompound(value)) return 'a mapping';
  return value === undefined ? 'unset' : JSON.stringify(value);
}
