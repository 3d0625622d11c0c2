import { resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { compareCheckpointData, loadCheckpointSync, TaskforgeError, type ModelDataArgs, type NamedVariables } from '@taskforge/core';
import { assertSamePalette, type Palette } from './image-data.js';

/** The run's data, to compare with the data the pretrained checkpoint was trained on. */
export interface PretrainedRunData {
  /** The data module's palette (k-means colours, RGB 0–255). */
  palette: Palette;
  /** The data module's `modelDataArgs` (num_positions, image_height, palette, …). */
  modelDataArgs: ModelDataArgs;
  /** The run's `dataset` config node, when known: a mismatch then names the setting (e.g. `dataset.image_size`). */
  dataConfig?: Readonly<Record<string, unknown>> | undefined;
}

/** Class facts may differ: fine-tuning on another label set keeps a fresh classification head. */
const LABEL_FACTS = ['num_classes', 'class_names'];

/**
 * Loads a pretrained checkpoint's backbone weights into `variables` and returns its palette.
 *
 * Synchronous, because components are created synchronously and the weights must be in place
 * before the optimizer is built. The checkpoint's data facts (sequence length, image size,
 * palette) must equal the run's; every variable must match by name and shape except the
 * classification head (`cls_head.*`), which keeps its fresh initialisation when the checkpoint's
 * differs in shape (fine-tuning on another label set) or is absent.
 *
 * @throws TaskforgeError (exit code 2) naming `task.pretrained` and the cause: the directory is
 *   missing or not a checkpoint, a data setting differs (named, with both values), or the weights
 *   do not fit the configured backbone.
 */
export function loadPretrained(dirArg: string, variables: NamedVariables, data: PretrainedRunData): { palette: Palette; skipped: string[] } {
  const fail = (why: string): never => {
    throw new TaskforgeError(`task.pretrained: cannot load '${dirArg}': ${why}`, { exitCode: 2 });
  };
  let checkpoint;
  try {
    checkpoint = loadCheckpointSync(resolve(dirArg), { optimizer: false });
  } catch (error) {
    return fail(`${(error as Error).message} Point task.pretrained at a checkpoint directory such as <run_dir>/checkpoints/last.`);
  }
  try {
    const { state, modelDataArgs } = checkpoint.taskState;
    const savedPalette = state?.['palette'] ?? modelDataArgs['palette'];
    if (savedPalette === undefined) fail('its task_state.json has no palette, so it was not trained with task/vision/igpt.');
    const mismatch = compareCheckpointData(checkpoint, { modelDataArgs: data.modelDataArgs, dataConfig: data.dataConfig }, LABEL_FACTS);
    if (mismatch) {
      const fix = mismatch.settings.length
        ? `set ${mismatch.settings.map((d) => `${d.key}=${JSON.stringify(d.checkpoint)}`).join(' ')} as when it was trained`
        : 'configure the dataset as it was when the checkpoint was trained';
      fail(`${mismatch.message}. To fine-tune from it, ${fix} (see its config.yaml).`);
    }
    let palette: Palette;
    try {
      palette = assertSamePalette(data.palette, savedPalette, `pretrained checkpoint '${dirArg}'`);
    } catch (error) {
      return fail((error as Error).message);
    }
    const problems: string[] = [];
    const skipped: string[] = [];
    for (const [name, variable] of Object.entries(variables)) {
      const saved = checkpoint.weights[name];
      const fits = saved !== undefined && tf.util.arraysEqual(saved.shape, variable.shape);
      if (name.startsWith('cls_head.') && !fits) skipped.push(name);
      else if (!saved) problems.push(`'${name}' is missing`);
      else if (!fits) problems.push(`'${name}' is [${saved.shape.join(', ')}] in the checkpoint but [${variable.shape.join(', ')}] in the model`);
    }
    if (problems.length) {
      fail(`its weights do not fit the configured backbone: ${problems.slice(0, 6).join('; ')}${problems.length > 6 ? ` and ${problems.length - 6} more` : ''}. `
        + 'Use the backbone settings the checkpoint was trained with (see its config.yaml).');
    }
    for (const [name, variable] of Object.entries(variables)) if (!skipped.includes(name)) variable.assign(checkpoint.weights[name]!);
    return { palette, skipped };
  } finally {
    checkpoint.dispose();
  }
}
