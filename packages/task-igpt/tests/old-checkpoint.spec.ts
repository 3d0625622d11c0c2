/**
 * Checkpoints written before the heads moved from the GPT-2 backbone into the task
 * (tests/fixtures/igpt-ckpt-v0, written by that code with `classify: true` and perturbed heads)
 * still load, for evaluation and as pretrained weights, and give the outputs they gave then.
 */
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { container } from 'tsyringe';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadCheckpoint, restoreTaskWeights } from '@taskforge/core';
import { createGpt2, gpt2Schema } from '@taskforge/backbone-gpt2';
import { igptTaskSchema, igptTaskSpec, type ImageGptTask } from '../src/index.js';

const dir = fileURLToPath(new URL('./fixtures/igpt-ckpt-v0', import.meta.url));
const expected = JSON.parse(readFileSync(`${dir}/expected.json`, 'utf8')) as {
  tokens: number[][];
  logits: number[][][];
  class_logits: number[][];
};
const palette = [
  [0, 0, 0],
  [255, 0, 0],
  [0, 255, 0],
  [0, 0, 255],
];
const args = {
  num_vocab: 4,
  num_positions: 4,
  num_classes: 3,
  image_height: 2,
  image_width: 2,
  palette,
  class_names: ['a', 'b', 'c'],
};

function makeTask(
  taskConfig: Record<string, unknown>,
  seed: number,
  dataArgs: Record<string, unknown> = args,
): ImageGptTask {
  const backbone = createGpt2(
    gpt2Schema.parse({ num_layers: 1, embed_dim: 8, num_heads: 2, init_seed: seed }),
    dataArgs,
  );
  return igptTaskSpec.create(igptTaskSchema.parse(taskConfig), {
    container: container.createChildContainer(),
    modelDataArgs: dataArgs,
    backbone,
  }) as ImageGptTask;
}

function outputs(task: ImageGptTask): { logits: number[][][]; classLogits: number[][] } {
  return tf.tidy(() => {
    const tokens = tf.tensor2d(expected.tokens, undefined, 'int32');
    const { hidden } = task.backbone.forward(tokens, { training: false, seed: 0 });
    return { logits: task.logits(tokens).arraySync(), classLogits: task.clsHead.apply(hidden).arraySync() };
  });
}

function expectClose(actual: number[], wanted: number[]): void {
  expect(actual.length).toBe(wanted.length);
  const worst = Math.max(...actual.map((a, i) => Math.abs(a - wanted[i]!)));
  expect(worst).toBeLessThan(1e-5);
}

describe('a checkpoint written when the backbone held the heads', () => {
  beforeAll(() => tf.setBackend('cpu'));

  it('restores every variable by its old name and reproduces the old logits and class logits', async () => {
    const task = makeTask({ classify: true }, 7);
    const before = outputs(task);
    const checkpoint = await loadCheckpoint(dir, { optimizer: false });
    try {
      const report = restoreTaskWeights(task, checkpoint);
      expect(report).toEqual({ missing: [], unexpected: [] });
    } finally {
      checkpoint.dispose();
    }
    const after = outputs(task);
    // Initialised weights differ from the checkpoint's, so this is not vacuous.
    expect(Math.abs(before.logits[0]![0]![0]! - expected.logits[0]![0]![0]!)).toBeGreaterThan(1e-4);
    expectClose(after.logits.flat(2), expected.logits.flat(2));
    expectClose(after.classLogits.flat(), expected.class_logits.flat());
    expect(task.stateDict()).toEqual({ palette, class_names: ['a', 'b', 'c'] });
    task.dispose();
  });

  it('serves as pretrained weights, keeping a fresh classification head for another label set', () => {
    const loaded = makeTask({ pretrained: dir }, 9);
    expectClose(outputs(loaded).logits.flat(2), expected.logits.flat(2));
    expectClose(outputs(loaded).classLogits.flat(), expected.class_logits.flat());

    const five = { ...args, num_classes: 5, class_names: ['a', 'b', 'c', 'd', 'e'] };
    const refit = makeTask({ pretrained: dir, classify: true }, 9, five);
    expectClose(outputs(refit).logits.flat(2), expected.logits.flat(2));
    expect(refit.namedVariables()['cls_head.kernel']!.shape).toEqual([8, 5]);
    expect(Array.from(refit.namedVariables()['cls_head.bias']!.dataSync())).toEqual([0, 0, 0, 0, 0]);
    [loaded, refit].forEach((t) => t.dispose());
  });
});
