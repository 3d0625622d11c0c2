import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Trainer, type Output } from '@taskforge/core';
import { IgptSamplerCallback, samplerCallbackSchema } from '../src/index.js';
import { batchOf, makeTask, SyntheticImages } from './fixtures.js';

let tmp: string;
beforeAll(async () => {
  expect(await tf.setBackend('wasm')).toBe(true);
  tmp = mkdtempSync(join(tmpdir(), 'igpt-trainer-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const quiet: Output = { info() {}, warn() {}, progress: () => ({ update() {}, setTotal() {}, stop() {} }) };

it('trains, validates, samples and tests under core\'s Trainer', async () => {
  const task = makeTask({ classify: true, sampling: { num_images: 2, num_unconditional: 1, scale: 1 } });
  const data = new SyntheticImages([batchOf([0, 1, 2]), batchOf([2, 1, 0])]);
  const runDir = join(tmp, 'run');
  const sampler = new IgptSamplerCallback(samplerCallbackSchema.parse({ every_n_steps: 4 }));
  const trainer = new Trainer(
    { max_steps: 8, max_epochs: -1, num_sanity_val_steps: 0, log_every_n_steps: 1, accelerator: 'wasm' },
    { callbacks: [sampler], loggers: [], runDir, output: quiet },
  );
  const fit = await trainer.fit(task, data);
  expect(fit.globalStep).toBe(8);
  for (const key of ['train/loss', 'train/bpp', 'train/acc', 'val/loss', 'val/bpp', 'val/acc']) expect(fit.metrics[key], key).toBeTypeOf('number');
  expect(existsSync(join(runDir, 'samples', 'samples-step000004.png'))).toBe(true);
  expect(existsSync(join(runDir, 'samples', 'samples-step000008.png'))).toBe(true);

  // Sampling again with the same tag (a resumed run, or `sample` into this run dir) never replaces a grid.
  const before = readFileSync(join(runDir, 'samples', 'samples-step000008.png'));
  const again = await task.sample!({ outDir: join(runDir, 'samples'), datamodule: data, seed: 7, tag: 'step000008' });
  expect(again.files).toEqual([join(runDir, 'samples', 'samples-step000008-2.png')]);
  expect(readFileSync(join(runDir, 'samples', 'samples-step000008.png')).equals(before)).toBe(true);
  expect(readdirSync(join(runDir, 'samples')).sort()).toEqual(['samples-step000004.png', 'samples-step000008-2.png', 'samples-step000008.png']);

  const test = await trainer.test(task, data);
  expect(test.metrics['test/loss']).toBeTypeOf('number');
  const matrix = (test.extras['confusion_matrix'] as { matrix: number[][] }).matrix;
  expect(matrix.flat().reduce((a, b) => a + b)).toBe(6);
  task.dispose();
});
