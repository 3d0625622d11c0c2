import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { TaskforgeError, type NamedVariables } from '@taskforge/core';
import { assertSamePalette, type Palette } from './image-data.js';

/**
 * Loads a pretrained checkpoint's backbone weights into `variables` and returns its palette.
 *
 * Reads core's checkpoint layout (`weights.json` + `weights.bin` in TF.js weights format, and
 * `task_state.json`) synchronously, because components are created synchronously and the
 * weights must be in place before the optimizer is built. Every variable must match by name and
 * shape except the classification head (`cls_head.*`), which keeps its fresh initialisation when
 * the checkpoint's differs in shape (fine-tuning on another label set) or is absent.
 */
export function loadPretrained(dirArg: string, variables: NamedVariables, dataPalette: Palette): { palette: Palette; skipped: string[] } {
  const dir = resolve(dirArg);
  const fail = (why: string): never => {
    throw new TaskforgeError(`task.pretrained: cannot load '${dirArg}' (${dir}): ${why}`, { exitCode: 2 });
  };
  if (!existsSync(join(dir, 'weights.json'))) {
    fail(`${existsSync(dir) ? 'it has no weights.json, so it is not a taskforge checkpoint' : 'the directory does not exist'}. `
      + 'Point task.pretrained at a checkpoint directory such as <run_dir>/checkpoints/last.');
  }
  const manifest = readJson(join(dir, 'weights.json'), fail) as { format?: string; weightsManifest?: tf.io.WeightsManifestConfig };
  const group = manifest.weightsManifest?.[0];
  if (manifest.format !== 'taskforge-weights' || !group) fail('weights.json is not in the taskforge-weights format.');
  const state = existsSync(join(dir, 'task_state.json'))
    ? readJson(join(dir, 'task_state.json'), fail) as { modelDataArgs?: Record<string, unknown>; state?: Record<string, unknown> | null }
    : {};
  const savedPalette = state.state?.['palette'] ?? state.modelDataArgs?.['palette'];
  if (savedPalette === undefined) fail('its task_state.json has no palette, so it was not trained with task/vision/igpt.');
  const palette = assertSamePalette(dataPalette, savedPalette, `pretrained checkpoint '${dirArg}'`);

  const bytes = readFileSync(join(dir, group!.paths[0] ?? 'weights.bin'));
  let weights: tf.NamedTensorMap;
  try {
    weights = tf.io.decodeWeights(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer, group!.weights);
  } catch (error) {
    return fail(`weights.bin does not match weights.json (${(error as Error).message}); the checkpoint is corrupt.`);
  }
  try {
    const problems: string[] = [];
    const skipped: string[] = [];
    for (const [name, variable] of Object.entries(variables)) {
      const saved = weights[name];
      const fits = saved !== undefined && tf.util.arraysEqual(saved.shape, variable.shape);
      if (name.startsWith('cls_head.') && !fits) skipped.push(name);
      else if (!saved) problems.push(`'${name}' is missing`);
      else if (!fits) problems.push(`'${name}' is [${saved.shape.join(', ')}] in the checkpoint but [${variable.shape.join(', ')}] in the model`);
    }
    if (problems.length) {
      fail(`its weights do not fit the configured backbone: ${problems.slice(0, 6).join('; ')}${problems.length > 6 ? ` and ${problems.length - 6} more` : ''}. `
        + 'Use the backbone settings the checkpoint was trained with (see its config.yaml).');
    }
    for (const [name, variable] of Object.entries(variables)) if (!skipped.includes(name)) variable.assign(weights[name]!);
    return { palette, skipped };
  } finally {
    tf.dispose(weights);
  }
}

function readJson(file: string, fail: (why: string) => never): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    return fail(`${file} is not valid JSON (${(error as Error).message}).`);
  }
}
