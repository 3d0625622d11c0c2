/** `task.probe_layer`: iGPT's linear probe on a frozen backbone. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ComponentRegistry,
  ConfigError,
  Trainer,
  validateConfig,
  writeCheckpoint,
  type Callback,
  type MetricsLogger,
  type Output,
} from '@taskforge/core';
import { igptTaskSpec, type ImageGptTask } from '../src/index.js';
import { batchOf, dataArgs, fit, makeTask, recordingContext, SyntheticImages } from './fixtures.js';

let tmp: string;
beforeAll(async () => {
  expect(await tf.setBackend('wasm')).toBe(true);
  tmp = mkdtempSync(join(tmpdir(), 'igpt-probe-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const quiet: Output = { info() {}, warn() {}, progress: () => ({ update() {}, setTotal() {}, stop() {} }) };

class RecordingLogger implements MetricsLogger {
  readonly name = 'recording';
  readonly rows: Record<string, number>[] = [];
  logHyperparams(): void {}
  logMetrics(metrics: Record<string, number>): void {
    this.rows.push({ ...metrics });
  }
  finalize(): void {}
  series(key: string): number[] {
    return this.rows.filter((r) => key in r).map((r) => r[key]!);
  }
}

/** Every variable's values by name, copied. */
function snapshot(task: ImageGptTask): Map<string, number[]> {
  return new Map(Object.entries(task.namedVariables()).map(([n, v]) => [n, Array.from(v.dataSync())]));
}

const isHead = (name: string) => name.startsWith('cls_head.');

/** A Trainer over the synthetic images, Adam at `lr`, every step logged. */
function trainer(runDir: string, maxSteps: number, logger: MetricsLogger, callbacks: Callback[] = [], lr = 0.05) {
  return new Trainer(
    { max_steps: maxSteps, max_epochs: -1, num_sanity_val_steps: 0, log_every_n_steps: 1, accelerator: 'wasm' },
    {
      callbacks,
      loggers: [logger],
      runDir,
      output: quiet,
      composedConfig: { optimizer: { _target_: 'optimizer/adam', lr } },
    },
  );
}

describe('task.probe_layer: a linear probe on the frozen backbone', () => {
  it("trains only the classifier under core's Trainer: backbone and LM head unchanged, loss falls, accuracy reported", async () => {
    const task = makeTask({ probe_layer: 1 }, { seed: 3 });
    expect(task.classifies).toBe(true); // classification is implied
    const trainable = Object.entries(task.namedVariables())
      .filter(([, v]) => v.trainable)
      .map(([n]) => n);
    expect(trainable).toEqual(['cls_head.kernel', 'cls_head.bias']);
    const before = snapshot(task);
    const data = new SyntheticImages([batchOf([0, 1, 2, 1], [0, 0, 0, 1]), batchOf([2, 1, 0, 0], [1, 1, 1, 0])]);
    const logger = new RecordingLogger();
    let optimized: string[] = [];
    const spy: Callback = {
      name: 'optimizer-spy',
      onFitStart: (t) => void (optimized = t.optimizer!.paramGroups.flatMap((g) => Object.keys(g.variables)).sort()),
    };
    const run = trainer(join(tmp, 'probe-run'), 30, logger, [spy]);
    const fitted = await run.fit(task, data);
    expect(fitted.globalStep).toBe(30);

    // Not in the optimizer: its parameter groups hold the classification head only.
    expect(optimized).toEqual(['cls_head.bias', 'cls_head.kernel']);
    const after = snapshot(task);
    for (const [name, values] of before) {
      if (isHead(name)) expect(after.get(name), name).not.toEqual(values);
      else expect(after.get(name), name).toEqual(values);
    }

    // The probe's loss is the classifier's cross-entropy: ~ln 3 at init, and it falls.
    const losses = logger.series('train/loss');
    expect(losses).toHaveLength(30);
    expect(losses[0]).toBeGreaterThan(0.9 * Math.log(3));
    expect(Math.min(...losses.slice(-3))).toBeLessThan(0.6 * losses[0]!);
    expect(logger.series('train/clf_loss')).toEqual(losses);
    expect(logger.series('train/bpp')).toEqual([]); // no generative loss is computed or logged

    const test = await run.test(task, data);
    expect(test.metrics['test/acc']).toBeGreaterThan(0.6);
    const matrix = (test.extras['confusion_matrix'] as { matrix: number[][] }).matrix;
    expect(matrix.flat().reduce((a, b) => a + b)).toBe(8);
    expect(test.extras['accuracy']).toBeCloseTo(test.metrics['test/acc']!, 5);
    const validation = await run.validate(task, data);
    expect(validation['val/acc']).toBeCloseTo(test.metrics['test/acc']!, 5);
    task.dispose();
  });

  it('reads the features of the configured layer (another layer gives other logits), without dropout', () => {
    const [a, b] = [0, 2].map((probe_layer) => makeTask({ probe_layer }, { seed: 4 }));
    const batch = batchOf([0, 1, 2]);
    const logitsOf = (task: ImageGptTask, seed: number) => {
      const { ctx, logs } = recordingContext(true, seed);
      tf.dispose(task.trainingStep(batch, ctx));
      return logs.get('train/loss')![0]!.value;
    };
    expect(logitsOf(a!, 1)).not.toBeCloseTo(logitsOf(b!, 1), 6);
    // The frozen backbone runs in inference mode: training steps with other seeds agree.
    const dropout = makeTask({ probe_layer: 1 }, { seed: 4 });
    expect(logitsOf(dropout, 1)).toBe(logitsOf(dropout, 2));
    [a, b, dropout].forEach((t) => t!.dispose());
  });

  it('predictStep gives the probe classifier and the bpp of the full model', async () => {
    const task = makeTask({ probe_layer: 1 }, { seed: 3 });
    const plain = makeTask({}, { seed: 3 });
    const batch = batchOf([2, 0, 1]);
    const records = await task.predictStep(batch, recordingContext(false).ctx);
    const reference = await plain.predictStep(batch, recordingContext(false).ctx);
    expect(records.map((r) => r.bpp)).toEqual(reference.map((r) => r.bpp));
    for (const r of records) {
      expect(r.predicted).toBeGreaterThanOrEqual(0);
      expect(r.probability).toBeGreaterThan(0);
    }
    [task, plain].forEach((t) => t.dispose());
  });

  it("loads task.pretrained's weights and keeps them frozen while the probe trains", async () => {
    const source = makeTask({}, { seed: 5 });
    fit(source, batchOf([0, 1, 2], [0, 1, 0]), 3);
    const dir = await writeCheckpoint(join(tmp, 'pretrained'), { task: source, modelDataArgs: dataArgs });
    const pretrained = snapshot(source);
    const probe = makeTask({ pretrained: dir, probe_layer: 2 }, { seed: 9 });
    const loaded = snapshot(probe);
    for (const [name, values] of pretrained) if (!isHead(name)) expect(loaded.get(name), name).toEqual(values);
    const data = new SyntheticImages([batchOf([0, 1, 2, 1])]);
    await trainer(join(tmp, 'probe-pretrained'), 5, new RecordingLogger()).fit(probe, data);
    const after = snapshot(probe);
    for (const [name, values] of pretrained) {
      if (isHead(name)) expect(after.get(name), name).not.toEqual(loaded.get(name));
      else expect(after.get(name), name).toEqual(values);
    }
    [source, probe].forEach((t) => t.dispose());
  });
});

describe('task.probe_layer: bad values are config errors (exit 2) naming the key, the range and a fix', () => {
  const registry = new ComponentRegistry();
  registry.register(igptTaskSpec);
  const problemsOf = (value: unknown) => {
    try {
      validateConfig({ task: { _target_: 'task/vision/igpt', probe_layer: value } }, registry);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).exitCode).toBe(2);
      return (error as ConfigError).message;
    }
    throw new Error(`probe_layer=${JSON.stringify(value)} was accepted`);
  };

  it.each([-1, 1.5, 'four', true])('refuses %j when the config is validated', (value) => {
    const message = problemsOf(value);
    expect(message).toContain('task.probe_layer: expected a layer index: an integer from 0 (the token embeddings)');
    expect(message).toContain('to backbone.num_layers (the final hidden states, after ln_f), or null for no probe');
    expect(message).toContain('set e.g. task.probe_layer=4');
    expect(message).toContain(`(got ${JSON.stringify(value)})`);
  });

  it('accepts null and any integer >= 0 at validation', () => {
    for (const probe_layer of [null, 0, 3, 100]) {
      const config = validateConfig({ task: { _target_: 'task/vision/igpt', probe_layer } }, registry);
      expect((config.task as Record<string, unknown>)['probe_layer']).toBe(probe_layer);
    }
  });

  it("refuses a layer beyond the backbone's depth when the task is built", () => {
    const build = () => makeTask({ probe_layer: 3 }); // the fixture backbone has 2 layers
    expect(build).toThrow(ConfigError);
    try {
      build();
    } catch (error) {
      const e = error as ConfigError;
      expect(e.exitCode).toBe(2);
      expect(e.problems[0]!.path).toBe('task.probe_layer');
      expect(e.message).toContain('task.probe_layer: the backbone has 2 layers, so expected a layer index');
      expect(e.message).toContain('to 2 (the final hidden states, after ln_f)');
      expect(e.message).toContain('set task.probe_layer=1 (the middle');
      expect(e.message).toContain('(got 3)');
    }
    const top = makeTask({ probe_layer: 2 }); // num_layers itself is the last valid index
    expect(top.probeLayer).toBe(2);
    top.dispose();
  });
});
