import { resolve } from 'node:path';
import { loadCheckpointSync, restoreTaskWeights, TaskforgeError, type NamedVariables } from '@taskforge/core';
import { assertSamePalette, type Palette } from './image-data.js';

/** Variables that may be absent from a pretrained checkpoint or sized for another label set there. */
export const PRETRAINED_SKIP: readonly string[] = ['cls_head.*'];

/**
 * Loads a pretrained checkpoint's weights into `target`'s variables (backbone and LM head) and
 * returns its palette and the variables that kept their initialisation.
 *
 * Synchronous, because components are created synchronously and the weights must be in place
 * before the optimizer is built. Every variable must match by name and shape (core's
 * `restoreTaskWeights`) except the classification head (`cls_head.*`), which keeps its fresh
 * initialisation when the checkpoint's differs in shape (fine-tuning on another label set) or is
 * absent. Any problem is a TaskforgeError (exit 2) starting `task.pretrained: cannot load '<dir>'`.
 */
export function loadPretrained(
  dirArg: string, target: { namedVariables(): NamedVariables }, dataPalette: Palette,
): { palette: Palette; skipped: string[] } {
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
    let skipped: string[] = [];
    try {
      // Weights only: the palette was checked above, the rest of the task state is this run's.
      const report = restoreTaskWeights({ namedVariables: () => target.namedVariables() }, checkpoint, { skip: PRETRAINED_SKIP });
      skipped = report.skipped ?? [];
    } catch (error) {
      fail(`${(error as Error).message} Use the backbone settings the checkpoint was trained with (see its config.yaml).`);
    }
    return { palette, skipped };
  } finally {
    checkpoint.dispose();
  }
}
