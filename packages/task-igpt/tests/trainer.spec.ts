import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Trainer, type MetricsLogger, type Output } from '@taskforge/core';
import { IgptSamplerCallback, samplerCallbackSchema } from '../src/index.js';
import { batchOf, makeTask, SyntheticImages } from './fixtures.js';

let tmp: string;
beforeAll(async () => {
  expect(await tf.setBackend('wasm')).toBe(true);
  tmp = mkdtempSync(join(tmpdir(), 'igpt-trainer-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const quiet: Output = { info() {}, warn() {}, progress: () => ({ update() {}, setTotal() {}, stop() {} }) };

/** Keeps every metrics row the Trainer logs, by step. */
class RecordingLogger implements MetricsLogger {
  readonly name = 'recording';
  readonly rows: { step: number; metrics: Record<string, number> }[] = [];
  logHyperparams(): void {}
  logMetrics(metrics: Record<string, number>, step: number): void {
    this.rows.push({ step, metrics: { ...metrics } });
  }
  finalize(): void {}
  series(key: string): number[] {
    return this.rows.filter((r) => key in r.metrics).map((r) => r.metrics[key]!);
  }
}

/** 4 colours: a uniform guess costs log(4) nats = 2 bits per pixel; a trained model costs less. */
const UNIFORM_NATS = Math.log(4);

/** Finite and inside [lo, hi]: NaN, Infinity and out-of-range values all fail with the key named. */
function expectInRange(value: unknown, lo: number, hi: number, key: string): void {
  expect(value, key).toBeTypeOf('number');
  expect(Number.isFinite(value), `${key} = ${String(value)} is not finite`).toBe(true);
  expect(value as number, key).toBeGreaterThanOrEqual(lo);
  expect(value as number, key).toBeLessThanOrEqual(hi);
}

it("trains, validates, samples and tests under core's Trainer", async () => {
  const task = makeTask({ classify: true, sampling: { num_images: 2, num_unconditional: 1, scale: 1 } });
  const data = new SyntheticImages([batchOf([0, 1, 2]), batchOf([2, 1, 0])]);
  const runDir = join(tmp, 'run');
  const logger = new RecordingLogger();
  const sampler = new IgptSamplerCallback(samplerCallbackSchema.parse({ every_n_steps: 4 }));
  const trainer = new Trainer(
    { max_steps: 8, max_epochs: -1, num_sanity_val_steps: 0, log_every_n_steps: 1, accelerator: 'wasm' },
    { callbacks: [sampler], loggers: [logger], runDir, output: quiet },
  );
  const fit = await trainer.fit(task, data);
  expect(fit.globalStep).toBe(8);
  // Loss = generative CE (≤ ~uniform at init) + classifier CE over 3 classes (≤ ~log 3 at init).
  const maxLoss = 1.5 * (UNIFORM_NATS + Math.log(3));
  for (const split of ['train', 'val']) {
    expectInRange(fit.metrics[`${split}/loss`], 0, maxLoss, `${split}/loss`);
    expectInRange(fit.metrics[`${split}/bpp`], 0, (1.5 * UNIFORM_NATS) / Math.LN2, `${split}/bpp`);
    expectInRange(fit.metrics[`${split}/acc`], 0, 1, `${split}/acc`);
  }
  // Learning happened: the last training loss is clearly below the first one (8 steps: ~9% lower).
  const losses = logger.series('train/loss');
  expect(losses).toHaveLength(8);
  for (const [i, l] of losses.entries()) expectInRange(l, 0, maxLoss, `train/loss at step ${i + 1}`);
  expect(losses.at(-1)!).toBeLessThan(0.95 * losses[0]!);
  // Every logged value of every row is finite (a NaN metric anywhere fails here).
  for (const row of logger.rows)
    for (const [k, v] of Object.entries(row.metrics))
      expect(Number.isFinite(v), `${k} = ${v} at step ${row.step}`).toBe(true);
  expect(logger.series('val/acc').length).toBeGreaterThan(0);
  expect(existsSync(join(runDir, 'samples', 'samples-step000004.png'))).toBe(true);
  expect(existsSync(join(runDir, 'samples', 'samples-step000008.png'))).toBe(true);

  // Sampling again with the same tag (a resumed run, or `sample` into this run dir) never replaces a grid.
  const before = readFileSync(join(runDir, 'samples', 'samples-step000008.png'));
  const again = await task.sample!({ outDir: join(runDir, 'samples'), datamodule: data, seed: 7, tag: 'step000008' });
  expect(again.files).toEqual([join(runDir, 'samples', 'samples-step000008-2.png')]);
  expect(readFileSync(join(runDir, 'samples', 'samples-step000008.png')).equals(before)).toBe(true);
  expect(readdirSync(join(runDir, 'samples')).sort()).toEqual([
    'samples-step000004.png',
    'samples-step000008-2.png',
    'samples-step000008.png',
  ]);

  const test = await trainer.test(task, data);
  expectInRange(test.metrics['test/loss'], 0, maxLoss, 'test/loss');
  expectInRange(test.metrics['test/bpp'], 0, (1.5 * UNIFORM_NATS) / Math.LN2, 'test/bpp');
  expectInRange(test.metrics['test/acc'], 0, 1, 'test/acc');
  const matrix = (test.extras['confusion_matrix'] as { matrix: number[][] }).matrix;
  expect(matrix.flat().reduce((a, b) => a + b)).toBe(6);
  // The confusion matrix and test/acc describe the same predictions.
  expect(test.metrics['test/acc']).toBeCloseTo(matrix.reduce((sum, row, i) => sum + row[i]!, 0) / 6, 5);
  task.dispose();
});
