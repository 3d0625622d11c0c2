import { resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import {
  isPlainObject,
  compareCheckpointData,
  loadCheckpointSync,
  restoreTaskWeights,
  TaskforgeError,
  type ModelDataArgs,
  type NamedVariables,
} from '@taskforge/core';
import { assertSamePalette, type Palette } from './image-data.js';

/** The run's data, to compare with the data the pretrained checkpoint was trained on. */
export interface PretrainedRunData {
  /** The data module's palette (k-means colours, RGB 0–255). */
  palette: Palette;
  /** The data module's `modelDataArgs` (num_positions, image_height, palette, …). */
  modelDataArgs: ModelDataArgs;
  /** The run's `dataset` config node, when known: a mismatch then names the setting (e.g. `dataset.image_size`). */
  dataConfig?: Readonly<Record<string, unknown>> | undefined;
  /** The data module's training-only settings (`dataset.augment`), never named as a difference. */
  dataTrainingOnly?: readonly string[] | undefined;
  /**
   * The run's `backbone` config node, when known: weights that do not fit then name the backbone
   * settings that differ from the checkpoint's config.yaml (command-line overrides, as the task
   * takes every other backbone setting from there, see `backboneFromPretrained`).
   */
  backboneConfig?: Readonly<Record<string, unknown>> | undefined;
}

/**
 * What to do when the weights do not fit: drop the overrides of the backbone settings that
 * differ, named with both values.
 */
function backboneFix(saved: unknown, run: Readonly<Record<string, unknown>> | undefined): string {
  const fallback = 'Use the backbone settings the checkpoint was trained with (see its config.yaml).';
  if (!isPlainObject(saved) || !run) return fallback;
  const differing = [...new Set([...Object.keys(saved), ...Object.keys(run)])].filter(
    (key) => key !== '_target_' && !isDeepStrictEqual(saved[key], run[key]),
  );
  if (!differing.length) return fallback;
  const show = (v: unknown) => (v === undefined ? 'unset' : JSON.stringify(v));
  const pairs = differing.map((k) => `backbone.${k} (checkpoint ${show(saved[k])}, this run ${show(run[k])})`);
  const overrides = differing.map((k) => `backbone.${k}=${show(run[k])}`);
  const one = differing.length === 1;
  return (
    `This run's backbone differs from the checkpoint's in ${pairs.join(', ')}. ` +
    `Drop the command-line override${one ? '' : 's'} ${overrides.join(' ')} ` +
    `(the checkpoint's value${one ? ' is' : 's are'} then taken from its config.yaml), ` +
    'or pre-train a model with these settings.'
  );
}

/** Class facts may differ: fine-tuning on another label set keeps a fresh classification head. */
const LABEL_FACTS = ['num_classes', 'class_names'];

/** Variables that may be absent from a pretrained checkpoint or sized for another label set there. */
export const PRETRAINED_SKIP: readonly string[] = ['cls_head.*'];

/**
 * Loads a pretrained checkpoint's weights into `target`'s variables (backbone and LM head) and
 * returns its palette and the variables that kept their initialisation.
 *
 * Synchronous, because components are created synchronously and the weights must be in place
 * before the optimizer is built. The checkpoint's data facts (sequence length, image size,
 * palette) must equal the run's; every variable must match by name and shape (core's
 * `restoreTaskWeights`) except the classification head (`cls_head.*`), which keeps its fresh
 * initialisation when the checkpoint's differs in shape (fine-tuning on another label set) or is
 * absent.
 *
 * @throws TaskforgeError (exit code 2) starting `task.pretrained: cannot load '<dir>'` and naming
 *   the cause: the directory is missing or not a checkpoint, a data setting differs (named, with
 *   both values), or the weights do not fit the configured backbone (with the `backbone.*`
 *   settings that differ from the checkpoint's, both values, and the overrides to drop).
 */
export function loadPretrained(
  dirArg: string,
  target: { namedVariables(): NamedVariables },
  data: PretrainedRunData,
): { palette: Palette; skipped: string[] } {
  const fail = (why: string): never => {
    throw new TaskforgeError(`task.pretrained: cannot load '${dirArg}': ${why}`, { exitCode: 2 });
  };
  let checkpoint;
  try {
    checkpoint = loadCheckpointSync(resolve(dirArg), { optimizer: false });
  } catch (error) {
    return fail(
      `${(error as Error).message} Point task.pretrained at a checkpoint directory such as <run_dir>/checkpoints/last.`,
    );
  }
  try {
    const { state, modelDataArgs } = checkpoint.taskState;
    const savedPalette = state?.['palette'] ?? modelDataArgs['palette'];
    if (savedPalette === undefined)
      fail('its task_state.json has no palette, so it was not trained with task/vision/igpt.');
    const mismatch = compareCheckpointData(
      checkpoint,
      { modelDataArgs: data.modelDataArgs, dataConfig: data.dataConfig, trainingOnly: data.dataTrainingOnly },
      LABEL_FACTS,
    );
    if (mismatch) {
      // Not every differing setting shapes the data (augmentation does not): list them, do not prescribe all.
      const fix = mismatch.settings.length
        ? 'set the dataset settings that shape the data (such as dataset.image_size) as they were when it was ' +
          `trained; of those that differ, it had ${mismatch.settings
            .map((d) => `${d.key}=${JSON.stringify(d.checkpoint)}`)
            .join(' ')}`
        : 'configure the dataset as it was when the checkpoint was trained';
      fail(`${mismatch.message}. To fine-tune from it, ${fix} (see its config.yaml).`);
    }
    let palette: Palette;
    try {
      palette = assertSamePalette(data.palette, savedPalette, `pretrained checkpoint '${dirArg}'`);
    } catch (error) {
      return fail((error as Error).message);
    }
    let skipped: string[] = [];
    try {
      // Weights only: the palette was checked above, the rest of the task state is this run's.
      const report = restoreTaskWeights({ namedVariables: () => target.namedVariables() }, checkpoint, {
        skip: PRETRAINED_SKIP,
      });
      skipped = report.skipped ?? [];
    } catch (error) {
      fail(`${(error as Error).message} ${backboneFix(checkpoint.config['backbone'], data.backboneConfig)}`);
    }
    return { palette, skipped };
  } finally {
    checkpoint.dispose();
  }
}
