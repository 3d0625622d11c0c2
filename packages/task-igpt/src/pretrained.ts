import { resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadCheckpointSync, TaskforgeError, type NamedVariables } from '@taskforge/core';
import { assertSamePalette, type Palette } from './image-data.js';

/**
 * Loads a pretrained checkpoint's backbone weights into `variables` and returns its palette.
 *
 * Synchronous, because components are created synchronously and the weights must be in place
 * before the optimizer is built. Every variable must match by name and shape except the
 * classification head (`cls_head.*`), which keeps its fresh initialisation when the checkpoint's
 * differs in shape (fine-tuning on another label set) or is absent.
 */
export function loadPretrained(dirArg: string, variables: NamedVariables, dataPalette: Palette): { palette: Palette; skipped: string[] } {
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
    const palette = assertSamePalette(dataPalette, savedPalette, `pretrained checkpoint '${dirArg}'`);
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
