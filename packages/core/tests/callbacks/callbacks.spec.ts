import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { container } from 'tsyringe';
import { describe, expect, it } from 'vitest';
import {
  callbackSpecs,
  DeviceStatsMonitor,
  EarlyStopping,
  LearningRateMonitor,
  ModelCheckpoint,
  ProgressBar,
} from '../../src/callbacks/index.js';
import { ConfigError } from '../../src/errors.js';
import { Tokens } from '../../src/services/tokens.js';
import { RecordingOutput, ToyDataModule, ToyTask } from '../toy/toy.js';
import { readsHigherIsBetter, suggestMetric } from '../../src/callbacks/metrics.js';
import { makeTrainer, useScratch } from '../trainer/helpers.js';

const scratch = useScratch();

describe('ModelCheckpoint', () => {
  it('keeps the top-k by the monitored metric, deletes the rest and keeps last current', async () => {
    // One validation per epoch (8 steps each); scores rank epochs 3 and 1 best under mode=min.
    const task = new ToyTask({ valScores: [0.5, 0.2, 0.9, 0.1, 0.7] });
    const checkpoint = new ModelCheckpoint({ monitor: 'score', save_top_k: 2 });
    const { trainer, runDir } = makeTrainer(scratch.dir(), { max_epochs: 5 }, [checkpoint]);
    const result = await trainer.fit(task, new ToyDataModule());
    const dir = join(runDir, 'checkpoints');
    expect((await readdir(dir)).sort()).toEqual(['last', 'step=000016', 'step=000032']);
    expect(result.bestCheckpoint).toBe(join(dir, 'step=000032'));
    expect(checkpoint.bestModelScore).toBe(0.1);
    expect(checkpoint.kept).toEqual([join(dir, 'step=000032'), join(dir, 'step=000016')]);
    expect(result.lastCheckpoint).toBe(join(dir, 'last'));
    task.dispose();
  });

  it('without a monitor keeps the latest save_top_k, on a step schedule', async () => {
    const task = new ToyTask();
    const checkpoint = new ModelCheckpoint({
      every_n_train_steps: 3,
      save_top_k: 2,
      save_last: false,
      dirpath: join(scratch.dir(), 'custom'),
    });
    const { trainer } = makeTrainer(scratch.dir(), { max_steps: 10, max_epochs: 5 }, [checkpoint]);
    const result = await trainer.fit(task, new ToyDataModule());
    expect((await readdir(join(scratch.dir(), 'custom'))).sort()).toEqual(['step=000006', 'step=000009']);
    expect(result.bestCheckpoint).toBe(join(scratch.dir(), 'custom', 'step=000009'));
    expect(result.lastCheckpoint).toBeUndefined();
    task.dispose();
  });

  it('before the monitored metric is logged, warns once and still saves last (no whole epoch lost)', async () => {
    // The run: one epoch, validation only every 2 epochs, so val_loss never exists in this run.
    for (const sanity of [0, 2]) {
      const task = new ToyTask();
      const output = new RecordingOutput();
      const checkpoint = new ModelCheckpoint({ monitor: 'val_loss' }, output);
      const { trainer, runDir } = makeTrainer(
        scratch.dir(),
        { max_epochs: 1, check_val_every_n_epoch: 2, limit_train_batches: 3, num_sanity_val_steps: sanity },
        [checkpoint],
      );
      const result = await trainer.fit(task, new ToyDataModule());
      expect(result.globalStep).toBe(3);
      expect(await readdir(join(runDir, 'checkpoints'))).toEqual(['last']);
      expect(result.lastCheckpoint).toBe(join(runDir, 'checkpoints', 'last'));
      expect(
        JSON.parse(await readFile(join(runDir, 'checkpoints', 'last', 'trainer_state.json'), 'utf8')).globalStep,
      ).toBe(3);
      expect(
        output.warnings.filter((w) => w.includes("monitor is 'val_loss', which has not been logged yet at step 3")),
      ).toHaveLength(1);
      expect(output.warnings[0]).toContain("saving only 'last' until it is");
      task.dispose();
    }
  });

  it('starts top-k once the monitored metric exists', async () => {
    const task = new ToyTask({ valScores: [0.5, 0.2] });
    const checkpoint = new ModelCheckpoint({ monitor: 'score', save_top_k: 1 }, new RecordingOutput());
    // Epochs end at steps 8, 16, 24, 32; validation (and so `score`) only after epochs 2 and 4.
    const { trainer, runDir } = makeTrainer(scratch.dir(), { max_epochs: 4, check_val_every_n_epoch: 2 }, [checkpoint]);
    const result = await trainer.fit(task, new ToyDataModule());
    expect((await readdir(join(runDir, 'checkpoints'))).sort()).toEqual(['last', 'step=000032']);
    expect(result.bestCheckpoint).toBe(join(runDir, 'checkpoints', 'step=000032'));
    expect(checkpoint.bestModelScore).toBe(0.2);
    task.dispose();
  });

  it('a monitor no step or validation logs is a config error (exit 2) with a did-you-mean, and last is kept', async () => {
    const task = new ToyTask();
    const { trainer, runDir } = makeTrainer(scratch.dir(), { max_epochs: 3 }, [
      new ModelCheckpoint({ monitor: 'val_los' }),
    ]);
    const error = await trainer.fit(task, new ToyDataModule()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).exitCode).toBe(2);
    const message = (error as Error).message;
    expect(message).toContain(
      "trainer.callbacks.model_checkpoint.monitor: no training step or validation logs a metric named 'val_los'",
    );
    expect(message).toContain("(logged: 'epoch', 'lr', 'train_loss', 'train_mse', 'val_loss')");
    expect(message).toContain("did you mean 'val_loss'?");
    // Known at the first validation (step 8, the end of epoch 0), not after three epochs; the work is in `last`.
    expect(await readdir(join(runDir, 'checkpoints'))).toEqual(['last']);
    expect(
      JSON.parse(await readFile(join(runDir, 'checkpoints', 'last', 'trainer_state.json'), 'utf8')).globalStep,
    ).toBe(8);
    expect(message).toContain(`The weights so far were saved to ${join(runDir, 'checkpoints', 'last')}`);
    task.dispose();
  });

  it('with a sanity check, a typo in monitor is reported after the first training step', async () => {
    const task = new ToyTask();
    const { trainer, runDir } = makeTrainer(scratch.dir(), { max_epochs: 3, num_sanity_val_steps: 1 }, [
      new ModelCheckpoint({ monitor: 'val_los' }),
    ]);
    const error = await trainer.fit(task, new ToyDataModule()).catch((e: unknown) => e);
    expect((error as ConfigError).exitCode).toBe(2);
    expect(
      JSON.parse(await readFile(join(runDir, 'checkpoints', 'last', 'trainer_state.json'), 'utf8')).globalStep,
    ).toBe(1);
    task.dispose();
  });
});

describe('ModelCheckpoint in a fit that does not validate', () => {
  it('a val monitor is a config error before the first step (it can never be logged); nothing is written', async () => {
    const task = new ToyTask();
    const { trainer, runDir } = makeTrainer(scratch.dir(), { max_epochs: 3, limit_val_batches: 0 }, [
      new ModelCheckpoint({ monitor: 'val/loss' }),
    ]);
    const error = await trainer.fit(task, new ToyDataModule()).catch((e: unknown) => e);
    expect((error as ConfigError).exitCode).toBe(2);
    expect((error as Error).message).toContain(
      "trainer.callbacks.model_checkpoint.monitor: 'val/loss' is a validation metric, but this run does not validate",
    );
    expect(existsSync(join(runDir, 'checkpoints'))).toBe(false);
    task.dispose();
  });

  it('another monitor no training step logs is a config error after the first step, last kept', async () => {
    const task = new ToyTask();
    const { trainer, runDir } = makeTrainer(scratch.dir(), { max_epochs: 3, limit_val_batches: 0 }, [
      new ModelCheckpoint({ monitor: 'loss_val' }),
    ]);
    const error = await trainer.fit(task, new ToyDataModule()).catch((e: unknown) => e);
    expect((error as ConfigError).exitCode).toBe(2);
    expect((error as Error).message).toContain(
      "no training step or validation logs a metric named 'loss_val' (logged: 'epoch', 'lr', 'train_loss', " +
        "'train_mse'; this run does not validate: no val batches, trainer.limit_val_batches=0 or no validationStep)",
    );
    expect(
      JSON.parse(await readFile(join(runDir, 'checkpoints', 'last', 'trainer_state.json'), 'utf8')).globalStep,
    ).toBe(1);
    task.dispose();
  });
});

describe('ModelCheckpoint with a non-finite monitor', () => {
  it('ranks NaN and infinite values below every finite one (even +Infinity under mode max), warning once', async () => {
    const task = new ToyTask({ valScores: [Number.NaN, Number.POSITIVE_INFINITY, 0.5, 0.7, Number.NaN] });
    const warnings: string[] = [];
    const checkpoint = new ModelCheckpoint(
      { monitor: 'score', mode: 'max', save_top_k: 2 },
      { warn: (m) => warnings.push(m) },
    );
    const { trainer, runDir, output } = makeTrainer(scratch.dir(), { max_epochs: 5, limit_train_batches: 1 }, [
      checkpoint,
    ]);
    const result = await trainer.fit(task, new ToyDataModule());
    // The trainer says it too, once per metric, monitored or not.
    expect(output.warnings.filter((w) => w.startsWith('Validation at step'))).toEqual([
      expect.stringMatching(/^Validation at step 1 logged score=NaN: the model diverged/),
    ]);
    expect(checkpoint.kept).toEqual([
      join(runDir, 'checkpoints', 'step=000004'),
      join(runDir, 'checkpoints', 'step=000003'),
    ]);
    expect(result.checkpointBestScore).toBeCloseTo(0.7, 6);
    expect(warnings).toEqual([
      "trainer.callbacks.model_checkpoint.monitor 'score' is NaN at step 1: that checkpoint ranks below every " +
        'finite value (a diverging metric, or a bad value in the validation data: check the logged values); warned once.',
    ]);
    task.dispose();
  });

  it('with no finite value at all, keeps the oldest and says the ranking means nothing', async () => {
    const task = new ToyTask({ valScores: [Number.NaN] });
    const checkpoint = new ModelCheckpoint({ monitor: 'score', mode: 'max' }, { warn: () => {} });
    const { trainer, runDir } = makeTrainer(scratch.dir(), { max_epochs: 2, limit_train_batches: 1 }, [checkpoint]);
    const result = await trainer.fit(task, new ToyDataModule());
    expect(result).toMatchObject({
      bestCheckpoint: join(runDir, 'checkpoints', 'step=000001'),
      checkpointBestScore: null,
    });
    task.dispose();
  });
});

describe('suggestMetric', () => {
  it('suggests close spellings, then logged metrics of the same split ending in the same word', () => {
    const logged = ['train/loss', 'val/loss', 'val/tok_acc', 'val/entity_f1', 'test/tok_acc'];
    expect(suggestMetric('val/los', logged)).toEqual(['val/loss']);
    expect(suggestMetric('val_acc', logged)).toEqual(['val/tok_acc']);
    expect(suggestMetric('val/f1', logged)).toEqual(['val/entity_f1']);
    expect(suggestMetric('val/bleu', logged)).toEqual([]);
  });
});

describe('EarlyStopping', () => {
  it('stops after `patience` validations without an improvement larger than min_delta', async () => {
    const task = new ToyTask({ valScores: [1, 0.8, 0.79, 0.85, 0.3] });
    const stopper = new EarlyStopping({ monitor: 'score', patience: 2, min_delta: 0.05 });
    const { trainer, output } = makeTrainer(scratch.dir(), { max_epochs: 10, val_check_interval: 0.5 }, [stopper]);
    const result = await trainer.fit(task, new ToyDataModule());
    // Validations at steps 4, 8, 12, 16: 0.79 and 0.85 do not beat 0.8 by 0.05, so it stops at step 16.
    expect(result.globalStep).toBe(16);
    // Printed to six significant digits (the scores are float32 values read as doubles).
    expect(output.lines.join('\n')).toContain(
      "Stopped at step 16: early stopping: 'score' did not improve (mode min: lower is better) by more than 0.05 in 2 validations (best 0.8, now 0.85).",
    );
    expect(stopper.stateDict()).toEqual({ best: 0.8, wait: 2, monitor: 'score', mode: 'min' });
    task.dispose();
  });

  it('warns at fit start when a higher-is-better monitor runs under mode min, for both callbacks', async () => {
    const task = new ToyTask();
    const out = new RecordingOutput();
    const { trainer } = makeTrainer(scratch.dir(), { max_steps: 1 }, [
      new EarlyStopping({ monitor: 'val/acc' }, out),
      new ModelCheckpoint({ monitor: 'val/acc' }, out),
    ]);
    await trainer.fit(task, new ToyDataModule()).catch(() => undefined);
    const warned = out.warnings.join('\n');
    expect(warned).toContain(
      "trainer.callbacks.early_stopping.monitor is 'val/acc', which reads as higher-is-better, but " +
        'trainer.callbacks.early_stopping.mode is min (the default, as in Lightning), so its lowest value counts ' +
        'as best; set trainer.callbacks.early_stopping.mode=max if higher is better.',
    );
    expect(warned).toContain(
      "trainer.callbacks.model_checkpoint.monitor is 'val/acc', which reads as higher-is-better",
    );
    const quiet = new RecordingOutput();
    const ok = makeTrainer(scratch.dir(), { max_steps: 1 }, [
      new EarlyStopping({ monitor: 'val/acc', mode: 'max' }, quiet),
      new ModelCheckpoint({ monitor: 'val_loss' }, quiet),
    ]);
    await ok.trainer.fit(task, new ToyDataModule()).catch(() => undefined);
    expect(quiet.warnings.join('\n')).not.toContain('higher-is-better');
    expect(['val/acc', 'test_f1', 'val/top5_accuracy', 'val/AUROC', 'val-miou'].map(readsHigherIsBetter)).toEqual([
      true,
      true,
      true,
      true,
      true,
    ]);
    expect(
      ['val/loss', 'val_loss', 'val/bpp', 'val/perplexity', 'val/accumulated_loss'].map(readsHigherIsBetter),
    ).toEqual([false, false, false, false, false]);
    task.dispose();
  });

  it('with mode=max, improvements reset the patience', async () => {
    const task = new ToyTask({ valScores: [1, 0.5, 2, 1, 3, 1, 1] });
    const stopper = new EarlyStopping({ monitor: 'score', mode: 'max', patience: 2 });
    const { trainer } = makeTrainer(scratch.dir(), { max_epochs: 20, limit_train_batches: 1 }, [stopper]);
    const result = await trainer.fit(task, new ToyDataModule());
    expect(result.globalStep).toBe(7);
    task.dispose();
  });

  it('restores its best value and wait for the same monitor and mode only', () => {
    const first = new EarlyStopping({ monitor: 'score', mode: 'max' });
    first.best = 0.9;
    first.wait = 2;
    const same = new EarlyStopping({ monitor: 'score', mode: 'max' });
    same.loadStateDict(first.stateDict());
    expect([same.best, same.wait]).toEqual([0.9, 2]);
    // A best score read as a loss (mode min) would stop a run that is improving: start afresh.
    for (const other of [new EarlyStopping({ monitor: 'val/loss' }), new EarlyStopping({ monitor: 'score' })]) {
      other.loadStateDict(first.stateDict());
      expect([other.best, other.wait]).toEqual([undefined, 0]);
    }
    // Checkpoints written before the monitor was saved restore as they did.
    const old = new EarlyStopping({ monitor: 'val/loss' });
    old.loadStateDict({ best: 0.5, wait: 1 });
    expect([old.best, old.wait]).toEqual([0.5, 1]);
  });

  it('a monitor validation never logs is a config error (exit 2) with a did-you-mean', async () => {
    const task = new ToyTask();
    const { trainer } = makeTrainer(scratch.dir(), { max_epochs: 2 }, [new EarlyStopping({ monitor: 'val_los' })]);
    const error = await trainer.fit(task, new ToyDataModule()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).exitCode).toBe(2);
    expect((error as Error).message).toContain(
      "trainer.callbacks.early_stopping.monitor: no metric named 'val_los' was logged by validation",
    );
    expect((error as Error).message).toContain("did you mean 'val_loss'?");
    task.dispose();
  });
});

describe('DeviceStatsMonitor', () => {
  it('logs tensor memory on the trainer logging interval, and the count stays flat (no leak) across steps', async () => {
    const task = new ToyTask();
    const { trainer, logger } = makeTrainer(scratch.dir(), { max_steps: 6, log_every_n_steps: 2 }, [
      new DeviceStatsMonitor(),
    ]);
    await trainer.fit(task, new ToyDataModule());
    const tensors = logger.series('memory/tensors');
    expect(tensors.map(([step]) => step)).toEqual([2, 4, 6]);
    expect(tensors[0]![1]).toBeGreaterThan(0);
    expect(new Set(tensors.map(([, n]) => n)).size).toBe(1);
    expect(logger.series('memory/bytes')[0]![1]).toBeGreaterThan(0);
    expect(logger.series('memory/gpu_bytes')).toEqual([]); // only on webgpu (see src/backend/webgpu.spec.ts)
    task.dispose();
  });
});

describe('DeviceStatsMonitor leak warning', () => {
  /** A task that keeps one tensor per training step, as a forgotten tf.keep or a tensor made outside tf.tidy does. */
  class LeakyTask extends ToyTask {
    readonly kept: tf.Tensor[] = [];
    override trainingStep(batch: Parameters<ToyTask['trainingStep']>[0], ctx: Parameters<ToyTask['trainingStep']>[1]) {
      this.kept.push(tf.keep(tf.zeros([4])));
      return super.trainingStep(batch, ctx);
    }
  }

  const fit = async (task: ToyTask, options: { leak_warning_after?: number } = {}) => {
    const output = new RecordingOutput();
    const { trainer } = makeTrainer(scratch.dir(), { max_epochs: 2, max_steps: 14, log_every_n_steps: 2 }, [
      new DeviceStatsMonitor(options, output),
    ]);
    await trainer.fit(task, new ToyDataModule());
    return output.warnings.filter((w) => w.includes('memory/tensors grew'));
  };

  it('warns once when memory/tensors grew at each of leak_warning_after logs, naming the counts and the fix', async () => {
    const task = new LeakyTask();
    const warnings = await fit(task);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      /grew at each of the last 5 logs, from \d+ at step 2 to \d+ at step 12 \(1\.0 per step\): tensors are leaking.*tf\.tidy\(\).*leak_warning_after=0/,
    );
    tf.dispose(task.kept);
    task.dispose();
  });

  it('stays quiet for a task that does not leak, and when turned off', async () => {
    const clean = new ToyTask();
    expect(await fit(clean)).toEqual([]);
    clean.dispose();
    const task = new LeakyTask();
    expect(await fit(task, { leak_warning_after: 0 })).toEqual([]);
    tf.dispose(task.kept);
    task.dispose();
  });
});

describe('LearningRateMonitor and ProgressBar', () => {
  it('logs lr-<optimizer> on the trainer logging interval', async () => {
    const task = new ToyTask({ optimizer: 'adam', lr: 0.1, scheduler: 'warmup_cosine' });
    const { trainer, logger } = makeTrainer(scratch.dir(), { max_steps: 6, log_every_n_steps: 2 }, [
      new LearningRateMonitor(),
    ]);
    await trainer.fit(task, new ToyDataModule());
    const lrs = logger.series('lr-adamw');
    expect(lrs.map(([step]) => step)).toEqual([2, 4, 6]);
    // warmup over 2 steps, then cosine to 0 at step 6: the update of step 3 (logged at 4) used 0.1·(1+cos(π/4))/2.
    expect(lrs[1]![1]).toBeCloseTo((0.1 * (1 + Math.cos(Math.PI / 4))) / 2, 10);
    task.dispose();
  });

  it('reports steps, epoch and loss to the Output, and one line per validation', async () => {
    const output = new RecordingOutput();
    const task = new ToyTask();
    const { trainer } = makeTrainer(scratch.dir(), { max_epochs: 2 }, [new ProgressBar(output, { refresh_rate: 4 })]);
    await trainer.fit(task, new ToyDataModule());
    const [bar] = output.progressBars;
    // The rate (and ETA) is measured from the first displayed step: startup is left out.
    expect(bar).toMatchObject({ label: 'train', total: 16, stopped: true, rateFromFirstUpdate: true });
    expect(bar!.updates.map((u) => [u.current, u.fields?.['step'], u.fields?.['epoch']])).toEqual([
      [4, '4/16', 0],
      [8, '8/16', 0],
      [12, '12/16', 1],
      [16, '16/16', 1],
    ]);
    expect(typeof bar!.updates[0]!.fields!['loss']).toBe('number');
    // One display per validation pass over its batches, stopped before the metrics line.
    const val = output.progressBars.filter((b) => b.label === 'val');
    expect(val).toHaveLength(2);
    expect(val.every((b) => b.stopped && b.updates.length > 0)).toBe(true);
    expect(val[0]!.updates.map((u) => u.current)).toEqual(
      Array.from({ length: val[0]!.updates.length }, (_, i) => i + 1),
    );
    expect(output.lines).toHaveLength(2);
    expect(output.lines[0]).toMatch(/^Validation at step 8 \(epoch 0\): val_loss=\d/);
    task.dispose();
  });
});

describe('callbackSpecs', () => {
  it('registers the five callbacks with strict schemas and builds them', () => {
    expect(callbackSpecs.map((s) => s.name)).toEqual([
      'model_checkpoint',
      'early_stopping',
      'lr_monitor',
      'device_stats',
      'progress_bar',
    ]);
    const spec = (name: string) => callbackSpecs.find((s) => s.name === name)!;
    expect(spec('device_stats').schema.safeParse({ every: 3 }).success).toBe(false);
    expect(spec('model_checkpoint').schema.safeParse({ save_top_k: 2, monitr: 'x' }).success).toBe(false);
    expect(spec('early_stopping').schema.parse({})).toEqual({
      monitor: 'val/loss',
      mode: 'min',
      patience: 3,
      min_delta: 0,
    });
    const child = container.createChildContainer();
    child.register(Tokens.Output, { useValue: new RecordingOutput() });
    const bar = spec('progress_bar').create(spec('progress_bar').schema.parse({}), { container: child });
    expect(bar).toBeInstanceOf(ProgressBar);
    const ckpt = spec('model_checkpoint').create(spec('model_checkpoint').schema.parse({ monitor: 'val_loss' }), {
      container: child,
    });
    expect((ckpt as ModelCheckpoint).options).toMatchObject({ monitor: 'val_loss', save_top_k: 1, save_last: true });
  });
});
