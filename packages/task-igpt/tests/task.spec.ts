import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { composeConfig, ConfigError, TaskforgeError, writeCheckpoint, type Task } from '@taskforge/core';
import { igptTaskSchema, igptTaskSpec, plugin, samplerCallbackSchema } from '../src/index.js';
import { loadPretrained } from '../src/pretrained.js';
import { batchOf, dataArgs, fit, makeTask, palette, recordingContext } from './fixtures.js';

let tmp: string;
beforeAll(async () => {
  expect(await tf.setBackend('wasm')).toBe(true);
  tmp = mkdtempSync(join(tmpdir(), 'igpt-task-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('generative pre-training', () => {
  it('loss falls on a learnable pattern and bpp is the loss in bits', () => {
    const task = makeTask();
    const batch = batchOf([0, 1, 2, 0, 1, 2], [0, 0, 0, 1, 1, 1]);
    const losses = fit(task, batch, 30);
    expect(losses[0]).toBeGreaterThan(1.2); // ≈ ln 4 at init
    expect(mean(losses.slice(-3))).toBeLessThan(0.5 * losses[0]!);

    const { ctx, logs } = recordingContext(true);
    tf.dispose(task.trainingStep(batch, ctx));
    const loss = logs.get('train/loss')![0]!;
    expect(loss.weight).toBe(6);
    expect(logs.get('train/bpp')![0]!.value).toBeCloseTo(loss.value / Math.LN2, 5);
    expect(logs.has('train/acc')).toBe(false);
    task.dispose();
  });

  it('validation logs val/loss and val/bpp weighted by batch size', async () => {
    const task = makeTask();
    const { ctx, logs } = recordingContext(false);
    task.validationStep(batchOf([0, 1]), ctx);
    task.validationStep(batchOf([2]), ctx);
    expect(logs.get('val/loss')!.map((l) => l.weight)).toEqual([2, 1]);
    expect(logs.get('val/bpp')![0]!.value).toBeCloseTo(logs.get('val/loss')![0]!.value / Math.LN2, 5);
    expect(await task.onTestEpochEnd()).toBeUndefined(); // no confusion matrix without classify
    task.dispose();
  });
});

describe('classification fine-tuning', () => {
  it('learns a separable toy set; loss = classification CE + generative CE', async () => {
    const task = makeTask({ classify: true });
    const batch = batchOf([0, 1, 2, 2, 1, 0]);
    fit(task, batch, 30);
    const { ctx, logs } = recordingContext(true);
    tf.dispose(task.trainingStep(batch, ctx));
    const get = (n: string) => logs.get(`train/${n}`)![0]!.value;
    expect(get('acc')).toBe(1);
    expect(get('loss')).toBeCloseTo(get('clf_loss') + get('gen_loss'), 5);
    expect(get('clf_loss')).toBeLessThan(0.5);

    const test = recordingContext(false);
    task.testStep!(batchOf([0, 1, 2]), test.ctx);
    task.testStep!(batchOf([2, 2]), test.ctx);
    const kept = tf.memory().numTensors;
    const result = (await task.onTestEpochEnd()) as {
      confusion_matrix: { matrix: number[][]; class_names: string[] };
      accuracy: number;
    };
    expect(result.confusion_matrix.class_names).toEqual(['ab', 'cd', 'ad']);
    expect(result.confusion_matrix.matrix).toEqual([
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 3],
    ]);
    expect(result.accuracy).toBe(1);
    expect(tf.memory().numTensors).toBe(kept - 2); // the kept predictions are released once read
    expect(test.logs.get('test/acc')!.map((l) => l.weight)).toEqual([3, 2]);
    // The matrix restarts for the next test epoch.
    task.testStep!(batchOf([1]), test.ctx);
    expect(
      ((await task.onTestEpochEnd()) as typeof result).confusion_matrix.matrix.flat().reduce((a, b) => a + b),
    ).toBe(1);
    task.dispose();
  });
});

describe('predictStep', () => {
  it("returns one record per image: bpp matching val/bpp, and the classifier's class and probability", async () => {
    const task = makeTask({ classify: true });
    const train = batchOf([0, 1, 2, 2, 1, 0]);
    fit(task, train, 30);
    const batch = batchOf([2, 0, 1]);
    const { ctx, logs } = recordingContext(false);
    const before = tf.memory().numTensors;
    const records = await task.predictStep(batch, ctx);
    expect(tf.memory().numTensors).toBe(before);
    expect(records.map((r) => r.label)).toEqual([2, 0, 1]);
    const val = recordingContext(false);
    task.validationStep(batch, val.ctx);
    // The per-image bits per pixel average to what validation logs for the same batch.
    expect(mean(records.map((r) => r.bpp))).toBeCloseTo(val.logs.get('val/bpp')![0]!.value, 4);
    for (const r of records) {
      expect(Number.isFinite(r.bpp) && r.bpp > 0 && r.bpp < 3).toBe(true);
      expect(r.predicted).toBe(r.label); // the separable toy set was learnt (train acc 1 above)
      expect(r.predicted_name).toBe(dataArgs.class_names[r.label]);
      expect(r.probability).toBeGreaterThan(1 / 3);
      expect(r.probability).toBeLessThanOrEqual(1);
    }
    expect(logs.size).toBe(0); // predict logs nothing
    const generative = makeTask();
    const plain = await generative.predictStep(batch, recordingContext(false).ctx);
    expect(Object.keys(plain[0]!).sort()).toEqual(['bpp', 'label']);
    [task, generative].forEach((t) => t.dispose());
  });
});

describe('optimizers, state and checkpoints', () => {
  it("leaves optimisation to the Trainer and owns its heads beside the backbone's variables", () => {
    const task = makeTask();
    expect((task as Task).configureOptimizers).toBeUndefined();
    const names = Object.keys(task.namedVariables());
    expect(names).toEqual([
      ...Object.keys(task.backbone.namedVariables()),
      'lm_head.kernel',
      'cls_head.kernel',
      'cls_head.bias',
    ]);
    expect(task.namedVariables()['lm_head.kernel']!.shape).toEqual([16, 4]);
    expect(task.namedVariables()['cls_head.kernel']!.shape).toEqual([16, 3]);
    task.dispose();
  });

  it('seeds the heads from init_seed: the same seed gives the same heads, another seed other heads', () => {
    const heads = (seed: number) => {
      const task = makeTask({ init_seed: seed });
      const vars = task.namedVariables();
      const values = ['lm_head.kernel', 'cls_head.kernel'].map((k) => Array.from(vars[k]!.dataSync()));
      task.dispose();
      return values;
    };
    const [lm0, cls0] = heads(0);
    const [lm0again, cls0again] = heads(0);
    const [lm7, cls7] = heads(7);
    expect(lm0again).toEqual(lm0);
    expect(cls0again).toEqual(cls0);
    expect(lm7).not.toEqual(lm0);
    expect(cls7).not.toEqual(cls0);
    expect(igptTaskSchema.parse({}).init_seed).toBe(0);
  });

  it('stateDict round-trips the palette and class names, and rejects another palette', () => {
    const a = makeTask();
    const state = JSON.parse(JSON.stringify(a.stateDict()));
    expect(state).toEqual({ palette, class_names: ['ab', 'cd', 'ad'] });
    const b = makeTask({}, { args: { ...dataArgs, class_names: undefined } });
    b.loadStateDict(state);
    expect(b.stateDict()).toEqual(state);
    const other = { ...state, palette: [[1, 1, 1], ...palette.slice(1)] };
    expect(() => b.loadStateDict(other)).toThrow(
      /palette in the checkpoint's task state \(4 colours\) differs from the data module's/,
    );
    a.dispose();
    b.dispose();
  });

  it("pretrained: loads a checkpoint's backbone weights and checks its palette", async () => {
    const source = makeTask({}, { seed: 5 });
    fit(source, batchOf([0, 1, 2]), 2);
    const dir = await writeCheckpoint(join(tmp, 'ckpt'), { task: source, modelDataArgs: dataArgs });

    const loaded = makeTask({ classify: true, pretrained: dir }, { seed: 9 });
    const want = source.namedVariables();
    for (const [name, v] of Object.entries(loaded.namedVariables())) {
      expect(Array.from(v.dataSync()), name).toEqual(Array.from(want[name]!.dataSync()));
    }

    // Fine-tuning on another label set keeps a fresh classification head.
    const fourClasses = { ...dataArgs, num_classes: 4, class_names: ['a', 'b', 'c', 'd'] };
    const refit = makeTask({ pretrained: dir }, { args: fourClasses });
    expect(refit.namedVariables()['cls_head.kernel']!.shape).toEqual([16, 4]);
    expect(Array.from(refit.namedVariables()['lm_head.kernel']!.dataSync())).toEqual(
      Array.from(want['lm_head.kernel']!.dataSync()),
    );

    const otherPalette = { ...dataArgs, palette: [[9, 9, 9], ...palette.slice(1)] };
    expect(() => makeTask({ pretrained: dir }, { args: otherPalette })).toThrow(
      /task\.pretrained: .*palette \(4 entries in both, but different values\)/,
    );
    // A missing path is a config error found when the config is validated, before any run dir exists.
    const parsed = igptTaskSchema.safeParse({ pretrained: join(tmp, 'nope') });
    expect(parsed.success).toBe(false);
    expect(parsed.error!.issues[0]!.message).toMatch(/the path does not exist \(.*nope\)/);
    const err = (() => {
      try {
        loadPretrained(join(tmp, 'nope'), { namedVariables: () => ({}) }, { palette, modelDataArgs: dataArgs });
      } catch (e) {
        return e as TaskforgeError;
      }
    })();
    expect(err).toBeInstanceOf(TaskforgeError);
    expect(err!.exitCode).toBe(2);
    expect(err!.message).toMatch(/task\.pretrained: cannot load .*nope.*does not exist/);
    [source, loaded, refit].forEach((t) => t.dispose());
  });

  it('pretrained at another image size names the dataset setting that differs, not the palette (exit 2)', async () => {
    const source = makeTask({}, { seed: 5 });
    const dir = await writeCheckpoint(join(tmp, 'ckpt-8px'), {
      task: source,
      modelDataArgs: dataArgs,
      config: { dataset: { _target_: 'datamodule/cifar10', image_size: 8, palette_size: 4 } },
    });
    // At 16 px the k-means palette differs too, which used to be blamed instead of the size.
    const big = {
      ...dataArgs,
      num_positions: 256,
      image_height: 16,
      image_width: 16,
      palette: [[1, 1, 1], ...palette.slice(1)],
    };
    const err = (() => {
      try {
        loadPretrained(dir, source, {
          palette: big.palette,
          modelDataArgs: big,
          dataConfig: { _target_: 'datamodule/cifar10', image_size: 16, palette_size: 4 },
        });
      } catch (e) {
        return e as TaskforgeError;
      }
    })();
    expect(err).toBeInstanceOf(TaskforgeError);
    expect(err!.exitCode).toBe(2);
    expect(err!.message).toMatch(/in dataset\.image_size \(checkpoint 8, this run 16\)/);
    expect(err!.message).toMatch(/num_positions \(checkpoint 64, this run 256\)/);
    expect(err!.message).toMatch(/set the dataset settings that shape the data .* it had dataset\.image_size=8/);
    expect(err!.message.indexOf('image_height')).toBeLessThan(err!.message.indexOf('palette'));
    // Through the task (no dataset config known): the data facts are still named, sizes first.
    expect(() => makeTask({ pretrained: dir }, { args: big })).toThrow(/image_height \(checkpoint 8, this run 16\)/);
    source.dispose();
  });
});

describe('input checks', () => {
  it('reports every modelDataArgs problem at once', () => {
    const bad = { ...dataArgs, palette: palette.slice(0, 3), image_height: undefined };
    const err = (() => {
      try {
        makeTask({}, { args: { ...bad, num_vocab: 4 } });
      } catch (e) {
        return e as ConfigError;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.problems.map((p) => p.path)).toEqual(['modelDataArgs.image_height', 'modelDataArgs.palette']);
    expect(err!.message).toMatch(/has 3 colours but num_vocab is 4/);
  });

  it('rejects batches that do not fit the palette or the image size', () => {
    const task = makeTask();
    const { ctx } = recordingContext(true);
    const batch = batchOf([0]);
    batch.tokens[10] = 7;
    expect(() => task.trainingStep(batch, ctx)).toThrow(
      /token 7 \(image 0, pixel 10\) is outside the 4-colour palette/,
    );
    expect(() => task.trainingStep({ ...batchOf([0]), size: 2 }, ctx)).toThrow(
      /batch of 2 images has 64 tokens; expected 2 × 64/,
    );
    task.dispose();
  });

  it('refuses a backbone without the decoder API', () => {
    const create = () =>
      igptTaskSpec.create(igptTaskSchema.parse({}), {
        container: undefined as never,
        modelDataArgs: dataArgs,
        backbone: { namedVariables: () => ({}), dispose: () => {} },
      });
    expect(create).toThrow(/lacks forward\(\), createCache\(\), step\(\), hiddenSize/);
  });
});

describe('config', () => {
  it('registers the task and the sampler callback', () => {
    const names: string[] = [];
    plugin.register({ register: (spec) => names.push(`${spec.kind}/${spec.name}`) });
    expect(names).toEqual(['task/vision/igpt', 'callback/igpt_sampler']);
  });

  it('the config fragment composes the run and its nodes validate', () => {
    const text = readFileSync(new URL('../conf/task/vision/igpt.yaml', import.meta.url), 'utf8');
    expect(text.split('\n')[0]).toBe('# @package _global_');
    const doc = YAML.parse(text);
    expect(doc.defaults).toEqual([
      { '/dataset': 'cifar10' },
      { '/backbone': 'gpt2' },
      { '/optimizer': 'adam' },
      { '/scheduler': 'warmup_cosine' },
      '_self_',
    ]);
    // init_seed follows the run seed (an interpolation, resolved when the run is composed; see below).
    const { _target_, init_seed, ...task } = doc.task;
    expect(_target_).toBe('task/vision/igpt');
    expect(init_seed).toBe('${trainer.seed}');
    expect(igptTaskSchema.parse(task)).toEqual(igptTaskSchema.parse({}));
    expect(doc.optimizer.lr).toBe(3e-3);
    expect(doc.scheduler.warmup_steps).toBe(500);
    const { _target_: cb, ...sampler } = doc.trainer.callbacks.sampler;
    expect(cb).toBe('callback/igpt_sampler');
    expect(samplerCallbackSchema.parse(sampler).every_n_steps).toBe(1000);
  });

  it("composes with core's composer into a full run config", () => {
    // A stand-in dataset group, so this package's tests need not depend on data-cifar.
    const conf = join(tmp, 'conf');
    mkdirSync(join(conf, 'dataset'), { recursive: true });
    writeFileSync(join(conf, 'dataset', 'cifar10.yaml'), '_target_: datamodule/cifar10\n');
    writeFileSync(join(conf, 'config.yaml'), 'defaults:\n  - trainer: default\n  - task: vision/igpt\n  - _self_\n');
    const pkg = (name: string) => new URL(`../../${name}/conf`, import.meta.url).pathname;
    const { config } = composeConfig({
      searchPath: [conf, pkg('task-igpt'), pkg('backbone-gpt2'), pkg('core')],
      overrides: ['task.sampling.top_k=5'],
    });
    const c = config as Record<string, any>;
    expect(c.dataset._target_).toBe('datamodule/cifar10');
    expect(c.backbone._target_).toBe('backbone/gpt2');
    expect(c.optimizer).toMatchObject({ _target_: 'optimizer/adam', lr: 3e-3 });
    expect(c.scheduler).toMatchObject({ _target_: 'scheduler/warmup_cosine', warmup_steps: 500 });
    expect(c.task).toMatchObject({ _target_: 'task/vision/igpt', classify: false, sampling: { top_k: 5 } });
    expect(c.task.init_seed).toBe(42);
    expect(c.trainer.seed).toBe(42);
    expect(c.trainer.callbacks.sampler._target_).toBe('callback/igpt_sampler');
  });

  it('rejects unknown or invalid sampling settings', () => {
    expect(igptTaskSchema.safeParse({ sampling: { topk: 5 } }).success).toBe(false);
    expect(igptTaskSchema.safeParse({ sampling: { temperature: -1 } }).success).toBe(false);
    expect(igptTaskSchema.safeParse({ sampling: { top_k: 0 } }).success).toBe(false);
  });
});
