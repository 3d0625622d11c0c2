import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Trainer, type DataLoaderOptions, type Output } from '@taskforge/core';
import type { IgptBatch, IgptPrediction } from '../src/index.js';
import { batchOf, fit, makeTask, SyntheticImages } from './fixtures.js';
import { igptReplica } from './replica.js';

let tmp: string;
beforeAll(async () => {
  expect(await tf.setBackend('wasm')).toBe(true);
  tmp = mkdtempSync(join(tmpdir(), 'igpt-ddp-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Records what the Trainer prints (the strategy line, notes). */
class Lines implements Output {
  readonly lines: string[] = [];
  info(message: string): void {
    this.lines.push(message);
  }
  warn(message: string): void {
    this.lines.push(message);
  }
  progress() {
    return { update() {}, setTotal() {}, stop() {} };
  }
}

class WithPredict extends SyntheticImages {
  async *predictDataloader(_options: DataLoaderOptions): AsyncIterable<IgptBatch> {
    yield* this.batches;
  }
}

// Five batches of uneven sizes: rank 0 runs batches 0, 2, 4 and the worker 1 and 3.
const data = () =>
  new WithPredict([
    batchOf([0, 1, 2]),
    batchOf([2, 1, 0], [1, 1, 1]),
    batchOf([1, 1]),
    batchOf([0, 2, 0], [0, 1, 0]),
    batchOf([2]),
  ]);

function trainer(ddp: boolean): { trainer: Trainer; output: Lines } {
  const output = new Lines();
  const config = { accelerator: 'wasm' as const, ...(ddp ? { strategy: 'ddp' as const, devices: 2 } : {}) };
  return {
    trainer: new Trainer(config, {
      callbacks: [],
      loggers: [],
      runDir: join(tmp, `run-${ddp ? 'ddp' : 'single'}-${Math.random()}`),
      output,
      ...(ddp ? { replica: igptReplica({ taskConfig: { classify: true } }), batchSize: 3 } : {}),
    }),
    output,
  };
}

it('test under ddp: metrics and the merged confusion matrix equal a single-device run', async () => {
  const task = makeTask({ classify: true });
  fit(task, batchOf([0, 1, 2, 0]), 4);
  const single = await trainer(false).trainer.test(task, data());
  const run = trainer(true);
  const ddp = await run.trainer.test(task, data());
  expect(run.output.lines.join('\n')).toContain('Strategy: ddp, 2 devices');
  expect(run.output.lines.join('\n')).not.toContain('rank 0 only');
  const matrix = (r: typeof single) => (r.extras['confusion_matrix'] as { matrix: number[][] }).matrix;
  expect(
    matrix(single)
      .flat()
      .reduce((a, b) => a + b),
  ).toBe(12);
  expect(matrix(ddp)).toEqual(matrix(single));
  expect(ddp.extras['accuracy']).toBe(single.extras['accuracy']);
  expect(Object.keys(ddp.metrics).sort()).toEqual(Object.keys(single.metrics).sort());
  for (const [name, value] of Object.entries(single.metrics)) expect(ddp.metrics[name], name).toBeCloseTo(value, 5);
  task.dispose();
}, 120_000);

it('predict under ddp: one record per image in dataset order, equal to a single-device run', async () => {
  const task = makeTask({ classify: true });
  fit(task, batchOf([0, 1, 2, 0]), 4);
  const single = (await trainer(false).trainer.predict(task, data())) as IgptPrediction[][];
  const ddp = (await trainer(true).trainer.predict(task, data())) as IgptPrediction[][];
  expect(ddp.map((b) => b.map((r) => r.label))).toEqual([[0, 1, 2], [2, 1, 0], [1, 1], [0, 2, 0], [2]]);
  expect(ddp.map((b) => b.map((r) => r.predicted))).toEqual(single.map((b) => b.map((r) => r.predicted)));
  ddp.flat().forEach((r, i) => {
    expect(r.bpp).toBeCloseTo(single.flat()[i]!.bpp, 5);
    expect(r.probability!).toBeCloseTo(single.flat()[i]!.probability!, 5);
  });
  task.dispose();
}, 120_000);

it('mergeTestState adds the counts and rejects a matrix of another size (exit 1)', async () => {
  const task = makeTask({ classify: true });
  task.mergeTestState({
    confusion: [
      [1, 0, 0],
      [0, 2, 0],
      [0, 0, 3],
    ],
  });
  expect(await task.exportTestState()).toEqual({
    confusion: [
      [1, 0, 0],
      [0, 2, 0],
      [0, 0, 3],
    ],
  });
  // exportTestState reset the counts.
  expect(await task.exportTestState()).toEqual({
    confusion: [
      [0, 0, 0],
      [0, 0, 0],
      [0, 0, 0],
    ],
  });
  expect(() => task.mergeTestState({ confusion: [[1]] })).toThrow(/not a 3 × 3 confusion matrix/);
  task.dispose();
});
