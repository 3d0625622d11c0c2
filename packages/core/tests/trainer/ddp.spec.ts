import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { Accelerator } from '../../src/backend/accelerator.js';
import { ModelCheckpoint } from '../../src/callbacks/model-checkpoint.js';
import { TaskforgeError } from '../../src/errors.js';
import { loadCheckpoint } from '../../src/trainer/checkpoint.js';
import type { TrainerConfigInput } from '../../src/trainer/config.js';
import { DDPStrategy } from '../../src/trainer/ddp/strategy.js';
import { RecordingOutput, ToyDataModule, ToyTask, type ToyTaskOptions } from '../toy/toy.js';
import { toyReplica } from '../toy/replica.js';
import { makeTrainer, useScratch } from './helpers.js';

const scratch = useScratch();

// Batches of 5 split 3 + 2 over two devices, and the epoch's last batch of 3 splits 2 + 1, so a
// reduction that ignored shard sizes would move the weights elsewhere.
const data = () => new ToyDataModule({ batchSize: 5, nTrain: 23, nVal: 10 });
const TASK: Omit<ToyTaskOptions, 'scheduler'> = { hidden: 4, optimizer: 'adam', lr: 0.05 };

function ddpTrainer(
  config: TrainerConfigInput,
  task: Omit<ToyTaskOptions, 'scheduler'> = TASK,
  failOnRank?: number,
  callbacks = [] as ModelCheckpoint[],
) {
  return makeTrainer(scratch.dir(), { strategy: 'ddp', devices: 2, ...config }, callbacks, {
    replica: toyReplica({ task, ...(failOnRank === undefined ? {} : { failOnRank }) }),
    batchSize: 5,
  });
}

function expectClose(actual: Record<string, number[]>, expected: Record<string, number[]>, tolerance = 1e-5): void {
  expect(Object.keys(actual).sort()).toEqual(Object.keys(expected).sort());
  for (const [name, values] of Object.entries(expected)) {
    const got = actual[name]!;
    expect(got.length).toBe(values.length);
    const worst = Math.max(...values.map((v, i) => Math.abs(v - got[i]!)));
    expect(worst, `${name} differs by ${worst}`).toBeLessThan(tolerance);
  }
}

describe('ddp over worker threads', () => {
  it("moves a worker back to rank 0's backend when building its replica called tf.setBackend, and says so", async () => {
    const run = makeTrainer(scratch.dir(), { strategy: 'ddp', devices: 2, max_steps: 2 }, [], {
      replica: toyReplica({ task: TASK, setBackendOnBuild: 'wasm' }),
      batchSize: 5,
    });
    const task = new ToyTask(TASK);
    await run.trainer.fit(task, data());
    expect(run.output.warnings.join('\n')).toContain(
      "While the DDP workers built their replicas, TF.js was switched to 'wasm' (a plugin, the task or the data " +
        "module called tf.setBackend() at import or in a constructor); each worker moved back to 'cpu'",
    );
    task.dispose();
  });

  it('reaches the weights and logs the losses of devices=1 (accumulation, clipping, uneven shards, sharded validation)', async () => {
    const config: TrainerConfigInput = { max_epochs: 2, accumulate_grad_batches: 2, gradient_clip_val: 0.5 };
    const single = makeTrainer(scratch.dir(), config);
    const a = new ToyTask(TASK);
    await single.trainer.fit(a, data());

    const ddp = ddpTrainer(config);
    const b = new ToyTask(TASK);
    await ddp.trainer.fit(b, data());
    expect(ddp.trainer.strategy.name).toBe('ddp');
    expect(ddp.output.lines.join('\n')).toContain('Strategy: ddp, 2 devices (worker threads) (trainer.devices=2)');
    expect((ddp.trainer.strategy as DDPStrategy).workerCount).toBe(0); // terminated at the end of fit
    // The bench's timeline: the worker's busy time is its trainingStep plus loading weights and reading out gradients.
    const timings = (ddp.trainer.strategy as DDPStrategy).lastStepTimings!;
    expect(timings.localMs).toBeGreaterThan(0);
    const [phases] = timings.workerPhasesMs;
    expect(Object.keys(phases!).sort()).toEqual(['loadWeights', 'readGrads', 'receive', 'step']);
    expect(phases!.step).toBeGreaterThan(0);
    expect(phases!.loadWeights + phases!.step + phases!.readGrads).toBeLessThanOrEqual(timings.workerBusyMs[0]! + 1e-6);

    expectClose(b.snapshot(), a.snapshot());
    // Validation was sharded too: rank 0 validated only its 3 of every 5 samples, yet val_loss matches below.
    expect(a.validationSamples).toBeGreaterThan(0);
    expect(b.validationSamples).toBe((a.validationSamples / 5) * 3);
    for (const name of ['train_loss', 'train_mse', 'grad_norm', 'val_loss']) {
      const s = single.logger.series(name);
      const d = ddp.logger.series(name);
      expect(s.length, name).toBeGreaterThan(0);
      expect(d.map(([step]) => step)).toEqual(s.map(([step]) => step));
      expectClose({ [name]: d.map(([, v]) => v) }, { [name]: s.map(([, v]) => v) });
    }
    a.dispose();
    b.dispose();
  });

  it('weighs shard gradients by a WeightedLoss weight, not sample counts: a mean over unequal units matches devices=1', async () => {
    const weighted = { ...TASK, weightedLoss: true };
    const config: TrainerConfigInput = { max_epochs: 1, accumulate_grad_batches: 2 };
    const single = makeTrainer(scratch.dir(), config);
    const a = new ToyTask(weighted);
    await single.trainer.fit(a, data());
    const ddp = ddpTrainer(config, weighted);
    const b = new ToyTask(weighted);
    await ddp.trainer.fit(b, data());
    expectClose(b.snapshot(), a.snapshot());
    for (const name of ['train_loss', 'train_mse']) {
      expectClose(
        { [name]: ddp.logger.series(name).map(([, v]) => v) },
        { [name]: single.logger.series(name).map(([, v]) => v) },
      );
    }
    a.dispose();
    b.dispose();
  });

  it('writes single-device checkpoints: ddp -> single and single -> ddp resumes match an uninterrupted run', async () => {
    const reference = new ToyTask(TASK);
    await makeTrainer(scratch.dir(), { max_steps: 4 }).trainer.fit(reference, data());

    const resume = async (first: 'ddp' | 'single') => {
      const ckpt = new ModelCheckpoint({ every_n_train_steps: 2 });
      const head =
        first === 'ddp'
          ? ddpTrainer({ max_steps: 2 }, TASK, undefined, [ckpt])
          : makeTrainer(scratch.dir(), { max_steps: 2 }, [ckpt]);
      const task = new ToyTask(TASK);
      await head.trainer.fit(task, data());
      task.dispose();
      const last = join(head.runDir, 'checkpoints', 'last');
      // A different init: the resumed weights must come from the checkpoint.
      const resumed = new ToyTask({ ...TASK, initSeed: 7 });
      const tail = first === 'ddp' ? makeTrainer(scratch.dir(), { max_steps: 4 }) : ddpTrainer({ max_steps: 4 });
      await tail.trainer.fit(resumed, data(), { resumeFrom: last });
      expect(tail.trainer.globalStep).toBe(4);
      return resumed;
    };
    for (const first of ['ddp', 'single'] as const) {
      const resumed = await resume(first);
      expectClose(resumed.snapshot(), reference.snapshot());
      resumed.dispose();
    }
    reference.dispose();
  });

  it('resumes bitwise exactly under the same number of devices', async () => {
    const whole = new ToyTask(TASK);
    await ddpTrainer({ max_steps: 4 }).trainer.fit(whole, data());
    const ckpt = new ModelCheckpoint({ every_n_train_steps: 2 });
    const head = ddpTrainer({ max_steps: 2 }, TASK, undefined, [ckpt]);
    const first = new ToyTask(TASK);
    await head.trainer.fit(first, data());
    first.dispose();
    const resumed = new ToyTask({ ...TASK, initSeed: 7 });
    await ddpTrainer({ max_steps: 4 }).trainer.fit(resumed, data(), {
      resumeFrom: join(head.runDir, 'checkpoints', 'last'),
    });
    expect(resumed.snapshot()).toEqual(whole.snapshot());
    resumed.dispose();
    whole.dispose();
  });

  it('stops on a NaN loss computed on a worker shard, before the update', async () => {
    const run = ddpTrainer({ max_steps: 4 }, { ...TASK, nanAtStep: 2 });
    // Rank 0's task is finite: the NaN comes from the worker's shard through the merged loss.
    const task = new ToyTask(TASK);
    await expect(run.trainer.fit(task, data())).rejects.toThrow(/Training loss is NaN at global step 2/);
    expect((run.trainer.strategy as DDPStrategy).workerCount).toBe(0);
    task.dispose();
  });

  it.each([
    [
      'throws',
      { throwAtStep: 2 },
      /DDP worker rank 1 of 2 failed at global step 2 \(epoch 0, batch 2\): its training step threw: injected failure at step 2 \(its shard: samples \d+-\d+ of the batch; a position the message gives counts within the shard, so add \d+ for the batch\)/,
    ],
    [
      'exits',
      { exitAtStep: 2 },
      /DDP worker rank 1 of 2 failed at global step 2 .*its thread exited unexpectedly \(exit code 3\)/,
    ],
  ])(
    'a worker that %s stops the run with the rank, step and cause; the last checkpoint stays intact',
    async (_, failure, message) => {
      const ckpt = new ModelCheckpoint({ every_n_train_steps: 1 });
      const run = ddpTrainer({ max_steps: 4 }, { ...TASK, ...failure }, 1, [ckpt]);
      const task = new ToyTask(TASK);
      const error = await run.trainer.fit(task, data()).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(TaskforgeError);
      expect((error as TaskforgeError).exitCode).toBe(1);
      expect((error as Error).message).toMatch(message);
      expect((run.trainer.strategy as DDPStrategy).workerCount).toBe(0);
      const last = await loadCheckpoint(join(run.runDir, 'checkpoints', 'last'));
      expect(last.trainerState?.globalStep).toBe(2);
      last.dispose();
      task.dispose();
    },
    30_000,
  );

  it('a worker stuck in an endless loop is stopped after trainer.ddp_timeout; the run names it and ends', async () => {
    const ckpt = new ModelCheckpoint({ every_n_train_steps: 1 });
    // Long enough that building the replicas and the first steps answer in time on a loaded CI machine.
    const run = ddpTrainer({ max_steps: 4, ddp_timeout: 10 }, { ...TASK, hangAtStep: 2 }, 1, [ckpt]);
    const task = new ToyTask(TASK);
    const started = Date.now();
    const error = await run.trainer.fit(task, data()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TaskforgeError);
    expect((error as TaskforgeError).exitCode).toBe(1);
    expect((error as Error).message).toMatch(
      /DDP worker rank 1 of 2 failed at global step 2 \(epoch 0, batch 2\): it did not answer within 10 s \(trainer.ddp_timeout=10\) and was stopped/,
    );
    expect((error as Error).message).toContain('raise trainer.ddp_timeout, or set it to null');
    // Not stopped early: the first two steps (with the workers' start-up) answered in time.
    expect(Date.now() - started).toBeGreaterThan(10_000);
    expect((run.trainer.strategy as DDPStrategy).workerCount).toBe(0);
    const last = await loadCheckpoint(join(run.runDir, 'checkpoints', 'last'));
    expect(last.trainerState?.globalStep).toBe(2);
    last.dispose();
    task.dispose();
  }, 60_000);

  it('a worker that runs out of memory stops the run naming the rank, the step and the cause', async () => {
    const output = new RecordingOutput();
    const strategy = new DDPStrategy(
      {
        accelerator: 'cpu',
        threads: null,
        strategy: 'ddp',
        devices: 2,
        batchSize: 5,
        timeoutS: null,
        resourceLimits: { maxOldGenerationSizeMb: 192 },
      },
      new Accelerator(output),
      output,
      toyReplica({ task: { ...TASK, oomAtStep: 1 }, failOnRank: 1 }),
    );
    const run = makeTrainer(scratch.dir(), { max_steps: 3 }, [], { strategy });
    const task = new ToyTask(TASK);
    const error = await run.trainer.fit(task, data()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TaskforgeError);
    expect((error as Error).message).toMatch(
      /DDP worker rank 1 of 2 failed at global step 1 \(epoch 0, batch 1\): it ran out of memory \(.*\)/,
    );
    expect(strategy.workerCount).toBe(0);
    task.dispose();
  }, 60_000);

  describe('test and predict', () => {
    // 23 test samples in batches of 5: batches 0, 2, 4 (the last one of 3) run on rank 0, 1 and 3 on rank 1.
    const testData = () => new ToyDataModule({ batchSize: 5, nTest: 23 });
    const trained = async () => {
      const task = new ToyTask(TASK);
      await makeTrainer(scratch.dir(), { max_steps: 3 }).trainer.fit(task, data());
      return task;
    };

    it('test metrics and merged test state equal single; rank 0 ran only its whole batches', async () => {
      const task = await trained();
      const single = await makeTrainer(scratch.dir()).trainer.test(task, testData());
      const singleCalls = task.testCalls;
      const run = ddpTrainer({});
      const ddp = await run.trainer.test(task, testData());
      expect(task.testCalls - singleCalls).toBe(3);
      expect((run.trainer.strategy as DDPStrategy).workerCount).toBe(0);
      expect(Object.keys(ddp.metrics)).toEqual(['test_loss']);
      expect(ddp.metrics['test_loss']).toBeCloseTo(single.metrics['test_loss']!, 6);
      expect(single.extras['test_epoch']).toMatchObject({ batches: 5, samples: 23 });
      // Without the merge rank 0 would report 3 batches and 13 samples.
      expect(ddp.extras['test_epoch']).toEqual(single.extras['test_epoch']);
      expect(run.output.lines.join('\n')).not.toContain('rank 0 only');
      task.dispose();
    });

    it('without exportTestState/mergeTestState, test runs on rank 0 only and says why', async () => {
      const task = await trained();
      const single = await makeTrainer(scratch.dir()).trainer.test(task, testData());
      const bare = new ToyTask({ ...TASK, noTestSync: true });
      for (const [name, v] of Object.entries(bare.namedVariables())) v.assign(task.namedVariables()[name]!);
      const run = makeTrainer(scratch.dir(), { strategy: 'ddp', devices: 2 }, [], {
        replica: toyReplica({ task: { ...TASK, noTestSync: true } }),
        batchSize: 5,
      });
      const ddp = await run.trainer.test(bare, testData());
      expect(run.output.lines.join('\n')).toContain(
        'Test runs on rank 0 only: the task keeps state across test batches (onTestEpochEnd) but has no ' +
          'exportTestState/mergeTestState to merge it over the ddp devices (see docs/new-task.md).',
      );
      expect(bare.testCalls).toBe(5);
      expect(ddp.extras['test_epoch']).toEqual(single.extras['test_epoch']);
      expect(ddp.metrics['test_loss']).toBeCloseTo(single.metrics['test_loss']!, 6);
      bare.dispose();
      task.dispose();
    });

    it("validate outside fit is sharded like validation during fit and gives single's metrics", async () => {
      const task = await trained();
      // 10 val samples in batches of 5, each split 3 + 2.
      const single = await makeTrainer(scratch.dir()).trainer.validate(task, data());
      const before = task.validationSamples;
      const run = ddpTrainer({});
      const ddp = await run.trainer.validate(task, data());
      expect(task.validationSamples - before).toBe(6);
      expect(Object.keys(ddp)).toEqual(['val_loss']);
      expect(ddp['val_loss']).toBeCloseTo(single['val_loss']!, 6);
      expect((run.trainer.strategy as DDPStrategy).workerCount).toBe(0);
      task.dispose();
    });

    it('predictions come back in dataset order, equal to single', async () => {
      const task = await trained();
      const single = (await makeTrainer(scratch.dir()).trainer.predict(task, testData())) as tf.Tensor[];
      const run = ddpTrainer({});
      const ddp = (await run.trainer.predict(task, testData())) as tf.Tensor[];
      expect((run.trainer.strategy as DDPStrategy).workerCount).toBe(0);
      expect(ddp.map((t) => t.shape)).toEqual([[5], [5], [5], [5], [3]]);
      expect(ddp.map((t) => Array.from(t.dataSync()))).toEqual(single.map((t) => Array.from(t.dataSync())));
      tf.dispose([...single, ...ddp]);
      task.dispose();
    });

    it('a worker that fails during test names the rank and the batch', async () => {
      const task = await trained();
      const run = makeTrainer(scratch.dir(), { strategy: 'ddp', devices: 2 }, [], {
        replica: toyReplica({ task: { ...TASK, throwAtTestBatch: 3 }, failOnRank: 1 }),
        batchSize: 5,
      });
      await expect(run.trainer.test(task, testData())).rejects.toThrow(
        /DDP worker rank 1 of 2 failed at test batch 3: its test step threw: injected test failure at batch 3/,
      );
      expect((run.trainer.strategy as DDPStrategy).workerCount).toBe(0);
      task.dispose();
    });
  });
});
