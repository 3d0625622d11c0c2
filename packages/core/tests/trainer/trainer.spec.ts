import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { describe, expect, it, vi } from 'vitest';
import { ModelCheckpoint } from '../../src/callbacks/model-checkpoint.js';
import { TaskforgeError } from '../../src/errors.js';
import { TrainingInterrupted } from '../../src/trainer/signals.js';
import { planWarnings } from '../../src/trainer/trainer.js';
import { RecordingCallback, ToyDataModule, ToyTask } from '../toy/toy.js';
import { makeTrainer, useScratch } from './helpers.js';

const scratch = useScratch();

describe('Trainer.fit', () => {
  it('fits the toy regression: validation loss falls and the result reports where it stopped', async () => {
    const task = new ToyTask({ lr: 0.05 });
    const dm = new ToyDataModule();
    const { trainer, logger } = makeTrainer(scratch.dir(), { max_epochs: 4 });
    const result = await trainer.fit(task, dm);
    const val = logger.series('val_loss').map(([, v]) => v);
    expect(val).toHaveLength(4);
    expect(val[3]!).toBeLessThan(val[0]! * 0.5);
    expect(result.globalStep).toBe(32);
    expect(result.epoch).toBe(4);
    expect(result).toMatchObject({ epochsCompleted: 4, batchInEpoch: 0 });
    expect(result.metrics['val_loss']).toBe(val[3]);
    expect(task.totalSteps).toBe(32);
    expect(dm.calls).toEqual(['prepareData', 'setup:fit', 'teardown']);
    expect(logger.finalized).toEqual(['success']);
    // Per-step training metrics: loss, lr, epoch and what the task logged.
    expect(Object.keys(logger.metrics[0]!.metrics).sort()).toEqual(['epoch', 'lr', 'train_loss', 'train_mse']);
    expect(logger.metrics[0]!.metrics['train_mse']).toBeCloseTo(logger.metrics[0]!.metrics['train_loss']!, 5);
    task.dispose();
  });

  it('runs callbacks in Lightning order', async () => {
    const recorder = new RecordingCallback();
    const task = new ToyTask();
    const dm = new ToyDataModule({ nTrain: 8, nVal: 4 });
    const { trainer } = makeTrainer(scratch.dir(), { max_epochs: 2, num_sanity_val_steps: 1 }, [recorder]);
    await trainer.fit(task, dm);
    const epoch = (first: number) => [
      `onTrainEpochStart@${first}`,
      `onTrainBatchEnd@${first + 1}`,
      `onTrainBatchEnd@${first + 2}`,
      `onValidationStart@${first + 2}`,
      `onValidationEnd@${first + 2}`,
      `onTrainEpochEnd@${first + 2}`,
    ];
    // The sanity check runs validationStep but fires no validation hooks.
    expect(recorder.events).toEqual(['onFitStart@0', ...epoch(0), ...epoch(2), 'onFitEnd@4']);
    expect(task.validationCalls).toBe(1 + 2);
    task.dispose();
  });

  it('reports the completed epochs and the batches of a partial one when max_steps stops mid-epoch', async () => {
    const { trainer } = makeTrainer(scratch.dir(), { max_epochs: 5, max_steps: 11 }); // 8 batches per epoch
    const result = await trainer.fit(new ToyTask(), new ToyDataModule());
    expect(result).toMatchObject({ globalStep: 11, epoch: 1, epochsCompleted: 1, batchInEpoch: 3 });
  });

  it('averages gradients over accumulate_grad_batches: 4 x batch 2 == 1 x batch 8', async () => {
    const runWith = async (batchSize: number, accumulate: number) => {
      const task = new ToyTask({ hidden: 5, optimizer: 'adam', lr: 0.01 });
      const dm = new ToyDataModule({ nTrain: 16, batchSize, noVal: true });
      const { trainer } = makeTrainer(scratch.dir(), {
        max_steps: 2,
        accumulate_grad_batches: accumulate,
        gradient_clip_val: 0.5,
      });
      const result = await trainer.fit(task, dm);
      expect(result.globalStep).toBe(2);
      const weights = task.snapshot();
      task.dispose();
      return weights;
    };
    const big = await runWith(8, 1);
    const small = await runWith(2, 4);
    for (const [name, values] of Object.entries(big)) {
      small[name]!.forEach((v, i) => expect(v).toBeCloseTo(values[i]!, 6));
    }
  });

  it('accumulates a WeightedLoss by its weights: 4 x batch 2 == 1 x batch 8 for a mean over unequal units', async () => {
    const runWith = async (batchSize: number, accumulate: number, weightedLoss = true) => {
      const task = new ToyTask({ hidden: 5, optimizer: 'adam', lr: 0.01, weightedLoss });
      const dm = new ToyDataModule({ nTrain: 16, batchSize, noVal: true });
      const { trainer, logger } = makeTrainer(scratch.dir(), { max_steps: 2, accumulate_grad_batches: accumulate });
      await trainer.fit(task, dm);
      const weights = task.snapshot();
      task.dispose();
      return { weights, losses: logger.series('train_loss').map(([, v]) => v) };
    };
    const big = await runWith(8, 1);
    const small = await runWith(2, 4);
    for (const [name, values] of Object.entries(big.weights)) {
      small.weights[name]!.forEach((v, i) => expect(v, name).toBeCloseTo(values[i]!, 6));
    }
    // The logged train_loss is the weighted mean too: the loss of the whole batch of 8.
    small.losses.forEach((v, i) => expect(v).toBeCloseTo(big.losses[i]!, 6));
  });

  it('warns before training of a logging interval longer than the run and an LR that never reaches its base', async () => {
    const constant = { name: 'constant', lrAt: () => 0.01 };
    const warmup = (steps: number) => ({
      name: 'warmup',
      lrAt: (s: number) => (0.01 * Math.min(s + 1, steps)) / steps,
    });
    expect(planWarnings({ log_every_n_steps: 10 }, 20, 0.01, constant, 1)).toEqual([]);
    expect(planWarnings({ log_every_n_steps: 50 }, 20, 0.01, constant, 1)).toEqual([
      'trainer.log_every_n_steps is 50, more than the 20 optimizer steps this run plans, so no training metrics ' +
        'will be logged (only validation rows); set trainer.log_every_n_steps=2 or lower.',
    ]);
    expect(planWarnings({ log_every_n_steps: 50 }, 20, 0.01, constant, 0)).toEqual([]); // nothing logs anyway
    expect(planWarnings({ log_every_n_steps: 1 }, 20, 0.01, warmup(20), 1)).toEqual([]);
    expect(planWarnings({ log_every_n_steps: 1 }, 20, 0.01, warmup(10_000), 1)).toEqual([
      'The LR schedule (warmup) never reaches the configured learning rate 0.01 within the 20 planned optimizer ' +
        'steps: its highest is 0.00002. A warmup longer than the run (scheduler.warmup_steps) does this; shorten ' +
        'it, or train for more steps.',
    ]);
    // Through fit: said once, before the first step.
    const task = new ToyTask();
    const { trainer, output } = makeTrainer(scratch.dir(), { max_steps: 4, log_every_n_steps: 5 });
    await trainer.fit(task, new ToyDataModule());
    expect(output.warnings.filter((w) => w.startsWith('trainer.log_every_n_steps is 5'))).toHaveLength(1);
    task.dispose();
  });

  it('honours max_steps, max_epochs and limit_*_batches', async () => {
    const count = async (config: Record<string, unknown>) => {
      const recorder = new RecordingCallback();
      const task = new ToyTask();
      const { trainer } = makeTrainer(scratch.dir(), config, [recorder]);
      const result = await trainer.fit(task, new ToyDataModule());
      task.dispose();
      const steps = recorder.hooks().filter((h) => h === 'onTrainBatchEnd').length;
      return { steps, validations: task.validationCalls, result };
    };
    expect((await count({ max_epochs: 3 })).steps).toBe(24);
    expect((await count({ max_epochs: 3, max_steps: 5 })).steps).toBe(5);
    const limited = await count({ max_epochs: 2, limit_train_batches: 0.5, limit_val_batches: 1 });
    expect(limited.steps).toBe(8);
    expect(limited.validations).toBe(2);
    expect((await count({ max_epochs: 1, limit_train_batches: 3, accumulate_grad_batches: 2 })).steps).toBe(2);
    // Stopping mid-epoch at max_steps still validates the final weights once.
    const midEpoch = await count({ max_epochs: 5, max_steps: 3 });
    expect(midEpoch.validations).toBe(4);
    expect(midEpoch.result.epoch).toBe(0);
  });

  it('validates on val_check_interval (fraction and batch count) and check_val_every_n_epoch', async () => {
    const validatedAt = async (config: Record<string, unknown>) => {
      const recorder = new RecordingCallback();
      const task = new ToyTask();
      const { trainer } = makeTrainer(scratch.dir(), config, [recorder]);
      await trainer.fit(task, new ToyDataModule({ nVal: 4 }));
      task.dispose();
      return recorder.events.filter((e) => e.startsWith('onValidationEnd')).map((e) => Number(e.split('@')[1]));
    };
    expect(await validatedAt({ max_epochs: 1, val_check_interval: 0.5 })).toEqual([4, 8]);
    expect(await validatedAt({ max_epochs: 1, val_check_interval: 3 })).toEqual([3, 6, 8]);
    expect(await validatedAt({ max_epochs: 4, check_val_every_n_epoch: 2 })).toEqual([16, 32]);
  });

  it('a fractional val_check_interval validates that many times per epoch, the last at the end, with accumulation too', async () => {
    const validatedAt = async (config: Record<string, unknown>, nTrain: number) => {
      const recorder = new RecordingCallback();
      const task = new ToyTask();
      const { trainer } = makeTrainer(scratch.dir(), { max_epochs: 1, ...config }, [recorder]);
      await trainer.fit(task, new ToyDataModule({ nTrain, batchSize: 1, nVal: 2 }));
      task.dispose();
      return recorder.events.filter((e) => e.startsWith('onValidationEnd')).map((e) => Number(e.split('@')[1]));
    };
    // 25 batches: 0.5 is the middle (13) and the end, not also batch 24 one step before the end.
    expect(await validatedAt({ val_check_interval: 0.5 }, 25)).toEqual([13, 25]);
    // Accumulating 2 batches per step: the steps that reach batch 13 (step 7) and the end (13).
    expect(await validatedAt({ val_check_interval: 0.5, accumulate_grad_batches: 2 }, 25)).toEqual([7, 13]);
    // 0.3 of 25 batches: at 8 and 15; 0.9 (23) is less than half an interval before the end, which validates.
    expect(await validatedAt({ val_check_interval: 0.3 }, 25)).toEqual([8, 15, 25]);
    expect(await validatedAt({ val_check_interval: 0.25 }, 25)).toEqual([6, 13, 19, 25]);
  });

  it('limit_val_batches=0 turns validation and the sanity check off (Lightning)', async () => {
    const recorder = new RecordingCallback();
    const task = new ToyTask();
    const { trainer, logger } = makeTrainer(
      scratch.dir(),
      { max_epochs: 2, limit_val_batches: 0, num_sanity_val_steps: 2 },
      [recorder],
    );
    const result = await trainer.fit(task, new ToyDataModule({ nVal: 4 }));
    expect(result.globalStep).toBe(16);
    expect(task.validationCalls).toBe(0);
    expect(recorder.events.filter((e) => e.startsWith('onValidation'))).toEqual([]);
    expect(logger.series('val_loss')).toEqual([]);
    task.dispose();
  });

  it('fast_dev_run runs one batch of each loop and writes no checkpoint', async () => {
    const task = new ToyTask();
    const dm = new ToyDataModule();
    const checkpoint = new ModelCheckpoint({ every_n_train_steps: 1 });
    const { trainer, logger, runDir } = makeTrainer(
      scratch.dir(),
      { fast_dev_run: true, max_epochs: 3, num_sanity_val_steps: 2 },
      [checkpoint],
    );
    const result = await trainer.fit(task, dm);
    expect(result.globalStep).toBe(1);
    expect(task.validationCalls).toBe(1);
    expect(result.lastCheckpoint).toBeUndefined();
    expect(existsSync(runDir)).toBe(false);
    expect(logger.series('train_loss')).toHaveLength(1);
    const tested = await trainer.test(task, dm);
    expect(task.testCalls).toBe(1);
    expect(tested.extras).toMatchObject({ test_batches: 1, test_epoch: { batches: 1, samples: 4 } });
    expect(existsSync(runDir)).toBe(false);
    task.dispose();
  });

  it('stops on a NaN loss, naming the step and batch, before touching the weights', async () => {
    const task = new ToyTask({ nanAtStep: 3 });
    const { trainer, logger } = makeTrainer(scratch.dir(), { max_epochs: 1 });
    const before: Record<string, number[]>[] = [];
    const recorder = new RecordingCallback({ onTrainBatchEnd: () => void before.push(task.snapshot()) });
    (trainer.callbacks as unknown[]).push(recorder);
    const error = await trainer.fit(task, new ToyDataModule()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskforgeError);
    expect((error as Error).message).toMatch(
      /Training loss is NaN at global step 3 \(after 3 completed optimizer steps; epoch 0, batch 3\)/,
    );
    expect((error as Error).message).toContain('stop_on_nan');
    expect(task.snapshot()).toEqual(before[2]);
    expect(logger.finalized).toEqual(['failed']);
    expect(recorder.hooks()).toContain('onException');
    task.dispose();
  });

  it('with stop_on_nan=false trains on, and warns when the weights ended NaN or infinite', async () => {
    const blown = new ToyTask({ lr: 1e38 });
    const run = makeTrainer(scratch.dir(), { max_epochs: 1, stop_on_nan: false });
    await run.trainer.fit(blown, new ToyDataModule());
    expect(run.output.warnings.join('\n')).toMatch(
      /After training, \d+ of \d+ weights are NaN or infinite \(in .+\): the checkpoints saved from here hold them/,
    );
    blown.dispose();
    const fine = new ToyTask();
    const ok = makeTrainer(scratch.dir(), { max_epochs: 1, stop_on_nan: false });
    await ok.trainer.fit(fine, new ToyDataModule());
    expect(ok.output.warnings.join('\n')).not.toContain('NaN or infinite');
    fine.dispose();
  });

  it('keeps the number of live tensors constant across steps', async () => {
    const counts: number[] = [];
    const recorder = new RecordingCallback({ onTrainBatchEnd: () => void counts.push(tf.memory().numTensors) });
    const task = new ToyTask({ hidden: 4, dropout: 0.2, optimizer: 'adam' });
    const { trainer } = makeTrainer(
      scratch.dir(),
      { max_epochs: 2, accumulate_grad_batches: 2, gradient_clip_val: 1, val_check_interval: 0.5 },
      [recorder],
    );
    const before = tf.memory().numTensors;
    await trainer.fit(task, new ToyDataModule());
    expect(counts).toHaveLength(8);
    expect(new Set(counts).size).toBe(1);
    // Only the optimizer's slots (disposed at the end of fit) were added.
    expect(tf.memory().numTensors).toBe(before);
    task.dispose();
  });

  it.each([
    [
      'before the checkpoint is written',
      'onTrainBatchEnd',
      /^Received SIGINT again: aborting now, at global step 3, without saving a checkpoint/,
    ],
    [
      'after it is written, while the loggers finalize',
      'finalize',
      /^Received SIGINT again: exiting now\. The checkpoint \S+ was saved completely before it; resume by adding \S+ \S+ to the same command\./,
    ],
  ] as const)('a second SIGINT %s says whether the checkpoint holds (s6: finding 6)', async (_, hook, said) => {
    // The second signal re-raises SIGINT to end the process: stubbed, so the test process lives on.
    const kill = vi.spyOn(process, 'kill').mockImplementation(() => true);
    try {
      const recorder = new RecordingCallback({
        onTrainBatchEnd: (trainer) => {
          if (trainer.globalStep === 3) process.emit('SIGINT');
          if (trainer.globalStep === 3 && hook === 'onTrainBatchEnd') process.emit('SIGINT');
        },
      });
      const task = new ToyTask();
      const { trainer, output, logger } = makeTrainer(scratch.dir(), { max_epochs: 2 }, [recorder]);
      const finalize = logger.finalize.bind(logger);
      logger.finalize = (status) => {
        if (hook === 'finalize') process.emit('SIGINT');
        return finalize(status);
      };
      await expect(trainer.fit(task, new ToyDataModule())).rejects.toThrow(TrainingInterrupted);
      expect(output.warnings[1]).toMatch(said);
      expect(kill).toHaveBeenCalledWith(process.pid, 'SIGINT');
      task.dispose();
    } finally {
      kill.mockRestore();
    }
  });

  it('a second SIGINT before the save names the newest earlier checkpoint to resume from (s7)', async () => {
    const kill = vi.spyOn(process, 'kill').mockImplementation(() => true);
    try {
      const recorder = new RecordingCallback({
        onTrainBatchEnd: (trainer) => {
          if (trainer.globalStep === 3) {
            process.emit('SIGINT');
            process.emit('SIGINT');
          }
        },
      });
      const checkpoint = new ModelCheckpoint({ every_n_train_steps: 2 });
      const task = new ToyTask();
      const { trainer, output, runDir } = makeTrainer(scratch.dir(), { max_epochs: 2 }, [checkpoint, recorder]);
      await expect(trainer.fit(task, new ToyDataModule())).rejects.toThrow(TrainingInterrupted);
      const last = join(runDir, 'checkpoints', 'last');
      expect(output.warnings[1]).toContain(
        `checkpoints saved earlier are intact). To go on from the newest of them, ${last}, add 'trainer.run_dir=${runDir}' 'trainer.resume_from=${last}' to the same command.`,
      );
      task.dispose();
    } finally {
      kill.mockRestore();
    }
  });

  it('a second SIGINT names no checkpoint that is not complete on disk (one still being written) (s9: finding 2)', async () => {
    const kill = vi.spyOn(process, 'kill').mockImplementation(() => true);
    try {
      const recorder = new RecordingCallback({
        onTrainBatchEnd: (trainer) => {
          if (trainer.globalStep === 3) {
            process.emit('SIGINT');
            process.emit('SIGINT');
          }
        },
      });
      const task = new ToyTask();
      const { trainer, output, runDir } = makeTrainer(scratch.dir(), { max_epochs: 2 }, [recorder]);
      // A checkpointer that has named its epoch-end checkpoint but not finished writing it.
      const writing = {
        name: 'writing',
        monitor: null,
        bestModelPath: join(runDir, 'checkpoints', 'step=000003'),
        lastModelPath: undefined,
        saveLastCheckpoint: async () => join(runDir, 'checkpoints', 'last'),
      };
      (trainer as unknown as { callbacks: unknown[] }).callbacks.push(writing);
      await expect(trainer.fit(task, new ToyDataModule())).rejects.toThrow(TrainingInterrupted);
      expect(output.warnings[1]).toMatch(/^Received SIGINT again: aborting now/);
      expect(output.warnings[1]).not.toContain('step=000003');
      expect(output.warnings[1]).not.toContain('To go on from');
      task.dispose();
    } finally {
      kill.mockRestore();
    }
  });

  it('warns when a component switched the TF.js backend away from the one the run set up (s7)', async () => {
    const task = new ToyTask();
    const { trainer, output } = makeTrainer(scratch.dir(), { max_steps: 1 });
    await trainer.strategy.setup(); // the app layer selects the backend before it builds the task
    expect(await tf.setBackend('wasm')).toBe(true); // as a task constructor calling tf.setBackend would
    try {
      await trainer.fit(task, new ToyDataModule());
      expect(output.warnings.filter((w) => w.includes('tf.setBackend'))).toEqual([
        "TF.js's active backend is 'wasm', but the run set up 'cpu' (trainer.accelerator=cpu): the task, the data " +
          "module or a callback called tf.setBackend(). The run goes on on 'wasm'. Remove that call and choose the " +
          'backend with trainer.accelerator instead.',
      ]);
    } finally {
      await tf.setBackend('cpu');
      task.dispose();
    }
  });

  it('on SIGINT finishes the step, saves last, finalizes loggers as interrupted and removes its listeners', async () => {
    const listeners = process.listenerCount('SIGINT');
    const recorder = new RecordingCallback({
      onTrainBatchEnd: (trainer) => {
        if (trainer.globalStep === 3) process.emit('SIGINT');
      },
    });
    const task = new ToyTask();
    const { trainer, logger, runDir, output } = makeTrainer(scratch.dir(), { max_epochs: 2 }, [recorder]);
    const error = await trainer.fit(task, new ToyDataModule()).catch((e: unknown) => e);
    const last = join(runDir, 'checkpoints', 'last');
    expect(error).toBeInstanceOf(TrainingInterrupted);
    expect((error as TrainingInterrupted).message).toBe(
      `Training interrupted by SIGINT at step 3; last checkpoint saved to ${last}; resume by adding 'trainer.run_dir=${runDir}' 'trainer.resume_from=${last}' to the same command.`,
    );
    expect((error as TrainingInterrupted).exitCode).toBe(130);
    expect(JSON.parse(await readFile(join(last, 'trainer_state.json'), 'utf8'))).toMatchObject({
      globalStep: 3,
      epoch: 0,
      batchInEpoch: 3,
    });
    expect(logger.finalized).toEqual(['interrupted']);
    // The resume hint is printed as the signal arrives, before the step ends (a parent like nx may stop relaying soon after).
    expect(output.warnings[0]).toBe(
      `Received SIGINT: finishing the current step, then saving a checkpoint to ${last} and stopping; resume by adding 'trainer.run_dir=${runDir}' 'trainer.resume_from=${last}' to the same command. Send it again to abort at once.`,
    );
    // With trainer.run_dir given, resuming there is already in place: the hint adds only resume_from.
    expect(makeTrainer(scratch.dir(), { run_dir: runDir }).trainer.resumeHint(last)).toBe(
      `resume by adding 'trainer.resume_from=${last}' to the same command`,
    );
    // A resumed run's command has one already: the hint says the new one replaces it.
    expect(makeTrainer(scratch.dir(), { run_dir: runDir, resume_from: last }).trainer.resumeHint(last)).toBe(
      `resume by adding 'trainer.resume_from=${last}' to the same command, in place of its trainer.resume_from`,
    );
    expect(process.listenerCount('SIGINT')).toBe(listeners);
    expect(recorder.hooks().filter((h) => h === 'onTrainBatchEnd')).toHaveLength(3);
    task.dispose();
  });

  it('a real SIGINT (delivered by the event loop) stops after the current step, even when no step waits for I/O (s9: finding 1)', async () => {
    // process.emit runs the listener at once; a real signal only reaches it when the event loop
    // turns, which a loop of synchronous steps over ready batches (strategy=single) never did
    // before the epoch ended.
    const recorder = new RecordingCallback({
      onTrainBatchEnd: (trainer) => {
        if (trainer.globalStep === 3) process.kill(process.pid, 'SIGINT');
      },
    });
    const task = new ToyTask();
    const { trainer } = makeTrainer(scratch.dir(), { max_epochs: 3 }, [recorder]);
    const error = await trainer.fit(task, new ToyDataModule()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TrainingInterrupted);
    expect((error as TrainingInterrupted).message).toMatch(/^Training interrupted by SIGINT at step 3;/);
    task.dispose();
  });

  it('a real SIGINT during a validation of fit is acknowledged at once; the run stops after that validation', async () => {
    let sent = false;
    let acknowledgedBeforeValidationEnd: boolean | undefined;
    const said = () => output.warnings.some((w) => w.startsWith('Received SIGINT'));
    const probe = {
      name: 'probe',
      onValidationBatchEnd: () => {
        if (!sent) {
          sent = true;
          process.kill(process.pid, 'SIGINT');
        }
      },
      onValidationEnd: () => {
        if (sent && acknowledgedBeforeValidationEnd === undefined) acknowledgedBeforeValidationEnd = said();
      },
    };
    const task = new ToyTask();
    const { trainer, output } = makeTrainer(scratch.dir(), { max_epochs: 3, num_sanity_val_steps: 0 }, [probe]);
    const error = await trainer.fit(task, new ToyDataModule()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TrainingInterrupted);
    expect(acknowledgedBeforeValidationEnd).toBe(true);
    task.dispose();
  });

  it('validate() runs one validation epoch with its hooks and logs the metrics', async () => {
    const recorder = new RecordingCallback();
    const task = new ToyTask();
    const dm = new ToyDataModule({ nVal: 12 });
    const { trainer, logger } = makeTrainer(scratch.dir(), { limit_val_batches: 2 }, [recorder]);
    const metrics = await trainer.validate(task, dm);
    expect(Object.keys(metrics)).toEqual(['val_loss']);
    expect(task.validationCalls).toBe(2);
    expect(recorder.hooks()).toEqual(['onValidationStart', 'onValidationEnd']);
    // With its epoch, as every logged row (Lightning logs `epoch` with each one).
    expect(logger.metrics).toEqual([{ step: 0, metrics: { ...metrics, epoch: 0 } }]);
    expect(dm.calls).toEqual(['prepareData', 'setup:validate', 'teardown']);
    task.dispose();
  });

  it('rejects a non-scalar loss with a clear message', async () => {
    const task = new ToyTask();
    task.trainingStep = (batch, ctx) => task.forward(batch, ctx) as unknown as tf.Scalar;
    const { trainer } = makeTrainer(scratch.dir());
    await expect(trainer.fit(task, new ToyDataModule())).rejects.toThrow(
      'trainingStep must return a scalar loss, got a tensor of shape [4]',
    );
    task.dispose();
  });

  it('rejects a WeightedLoss without a scalar loss or with a weight that is not a finite number >= 0, and mixed forms', async () => {
    const fails = async (step: (task: ToyTask) => ToyTask['trainingStep'], message: string, config = {}) => {
      const task = new ToyTask();
      task.trainingStep = step(task);
      const { trainer } = makeTrainer(scratch.dir(), config);
      await expect(trainer.fit(task, new ToyDataModule())).rejects.toThrow(message);
      task.dispose();
    };
    const mse = (task: ToyTask, batch: Parameters<ToyTask['forward']>[0], ctx: Parameters<ToyTask['forward']>[1]) =>
      tf.losses.meanSquaredError(tf.tensor1d(batch.y), task.forward(batch, ctx)) as tf.Scalar;
    await fails(
      () => () => ({ weight: 3 }) as never,
      'trainingStep must return a scalar loss tensor or { loss, weight } (a scalar tensor and the number of units ' +
        'it averages over, e.g. real tokens; see WeightedLoss in docs/new-task.md); got an object with keys weight.',
    );
    for (const [weight, shown] of [
      [Number.NaN, 'NaN'],
      [-1, '-1'],
      [tf.scalar(2), 'a tensor of shape []'],
    ] as const) {
      await fails(
        (task) => (batch, ctx) => ({ loss: mse(task, batch, ctx), weight: weight as number }),
        `trainingStep returned { loss, weight } with weight ${shown}: expected a finite number ≥ 0`,
      );
    }
    await fails(
      (task) => (batch, ctx) =>
        ctx.batchIdx === 1 ? { loss: mse(task, batch, ctx), weight: 2 } : mse(task, batch, ctx),
      'trainingStep returned { loss, weight } at global step 0 (batch 1) but a plain loss for an earlier batch of the same step',
      { accumulate_grad_batches: 2 },
    );
  });

  it("test() averages metrics by weight and returns the extras (result files are the app layer's); predict() returns outputs", async () => {
    const task = new ToyTask();
    const dm = new ToyDataModule({ nTest: 10, batchSize: 4 });
    const { trainer, runDir, logger } = makeTrainer(scratch.dir());
    const result = await trainer.test(task, dm);
    // Weighted by batch size (4, 4, 2): equal to the loss over all 10 examples at once.
    const whole = new ToyDataModule({ nTest: 10, batchSize: 10 });
    const reference = await makeTrainer(scratch.dir()).trainer.test(task, whole);
    expect(result.metrics['test_loss']).toBeCloseTo(reference.metrics['test_loss']!, 5);
    expect(result.extras).toMatchObject({ test_batches: 3, test_epoch: { batches: 3, samples: 10 } });
    // One place writes result files (core/src/app/commands.ts `writeResults`), so the Trainer writes none.
    expect(existsSync(join(runDir, 'test_results.json'))).toBe(false);
    expect(logger.finalized).toEqual(['success']);
    const outputs = (await trainer.predict(task, dm)) as tf.Tensor[];
    expect(outputs.map((o) => o.shape)).toEqual([[4], [4], [2]]);
    tf.dispose(outputs);
    task.dispose();
  });

  it('an empty test or predict split is refused alike, naming the data module (s5: finding 7)', async () => {
    const task = new ToyTask();
    const empty = new ToyDataModule({ nTest: 0, batchSize: 4 });
    const message =
      /^The (test|predict) dataloader of the datamodule ToyDataModule yields no batches; check the dataset's \1 split/;
    await expect(makeTrainer(scratch.dir()).trainer.test(task, empty)).rejects.toThrow(message);
    await expect(makeTrainer(scratch.dir()).trainer.predict(task, empty)).rejects.toThrow(TaskforgeError);
    await expect(makeTrainer(scratch.dir()).trainer.predict(task, empty)).rejects.toThrow(message);
    // A data module that does not count its batches is caught after the loop.
    const uncounted = Object.assign(new ToyDataModule({ nTest: 0, batchSize: 4 }), { numBatches: undefined });
    await expect(makeTrainer(scratch.dir()).trainer.predict(task, uncounted)).rejects.toThrow(message);
    task.dispose();
  });
});
