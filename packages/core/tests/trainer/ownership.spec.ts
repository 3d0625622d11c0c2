/**
 * What the Trainer owns (issue 12, part 1): the backend (through its Strategy), the run dir and
 * optimisation (optimizer and scheduler from the config unless the task overrides them).
 */
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createContainer } from '../../src/app/container.js';
import type { Task } from '../../src/contracts.js';
import { plugin as corePlugin } from '../../src/plugin.js';
import { ComponentRegistry } from '../../src/registry/registry.js';
import { validateConfig } from '../../src/registry/validate.js';
import type { ConfigNode } from '../../src/config/paths.js';
import { Tokens } from '../../src/services/tokens.js';
import { SingleDeviceStrategy } from '../../src/trainer/strategy.js';
import { trainerConfigSchema } from '../../src/trainer/config.js';
import { Trainer, type TrainerRunConfig } from '../../src/trainer/trainer.js';
import { RecordingOutput, ToyDataModule, ToyTask } from '../toy/toy.js';
import { useScratch } from './helpers.js';

/** The toy task without its own configureOptimizers: the Trainer must build them. */
function plainToyTask(): ToyTask {
  const task = new ToyTask();
  (task as Partial<Task>).configureOptimizers = undefined;
  return task;
}

const clock = { now: () => Date.UTC(2024, 0, 2, 3, 4, 5) };

describe('the Trainer owns', () => {
  const scratch = useScratch();

  it('the backend: new Trainer({ accelerator }) selects it when it runs, once per process', async () => {
    const output = new RecordingOutput();
    const trainer = new Trainer(
      { accelerator: 'wasm', fast_dev_run: true },
      { callbacks: [], loggers: [], runDir: scratch.dir(), output },
    );
    expect(trainer.strategy).toBeInstanceOf(SingleDeviceStrategy);
    const task = new ToyTask();
    await trainer.fit(task, new ToyDataModule());
    expect(tf.getBackend()).toBe('wasm');
    expect(output.lines.filter((l) => l.startsWith('Accelerator: wasm'))).toHaveLength(1);
    // A second Trainer with the same request finds wasm active and says nothing.
    const again = new RecordingOutput();
    await new Trainer(
      { accelerator: 'wasm', fast_dev_run: true },
      { callbacks: [], loggers: [], runDir: scratch.dir(), output: again },
    ).test(task, new ToyDataModule());
    expect(again.lines.filter((l) => l.startsWith('Accelerator'))).toEqual([]);
    task.dispose();
    await tf.setBackend('cpu');
  });

  it('the run dir: trainer.run_dir, else <default_root_dir>/<date>/<time>, resolved against projectRoot', () => {
    const output = new RecordingOutput();
    const deps = { callbacks: [], loggers: [], output, clock, projectRoot: '/proj' };
    expect(new Trainer({ run_dir: 'runs/a' }, deps).runDir).toBe(resolve('/proj/runs/a'));
    const dated = new Trainer({ default_root_dir: 'out' }, deps).runDir;
    expect(dated.startsWith(resolve('/proj/out'))).toBe(true);
    expect(dated).toMatch(/out\/2024-01-0[12]\/\d\d-04-05$/);
  });

  it('optimisation: the configured optimizer and scheduler, sized by the planned steps', async () => {
    const output = new RecordingOutput();
    const seen: Array<{ lr: number; name: string }> = [];
    const task = plainToyTask();
    const trainer = new Trainer(
      { max_steps: 6, max_epochs: -1, num_sanity_val_steps: 0, accelerator: 'cpu', log_every_n_steps: 1 },
      {
        callbacks: [
          {
            name: 'spy',
            onTrainBatchEnd: (t) => {
              seen.push({ lr: t.optimizer!.lr, name: t.optimizer!.name });
            },
          },
        ],
        loggers: [],
        runDir: scratch.dir(),
        output,
        composedConfig: {
          optimizer: { _target_: 'optimizer/sgd', lr: 0.05 },
          scheduler: { _target_: 'scheduler/warmup_linear', warmup_steps: 2, min_lr_ratio: 0 },
        },
      },
    );
    const before = task.snapshot();
    await trainer.fit(task, new ToyDataModule());
    expect(seen.map((s) => s.name)).toEqual(new Array(6).fill('sgd'));
    // Linear warmup over 2 steps, then linear decay to 0 at step 6: the schedule knew the total.
    expect(seen.map((s) => s.lr)).toEqual(
      [0, 0.025, 0.05, (0.05 * 3) / 4, (0.05 * 2) / 4, 0.05 / 4].map((x) => expect.closeTo(x, 10)),
    );
    expect(task.snapshot()).not.toEqual(before);
    task.dispose();
  });

  it('optimisation: AdamW with its defaults when nothing is configured; a task override wins', async () => {
    const output = new RecordingOutput();
    const names: string[] = [];
    const spy = {
      name: 'spy',
      onFitStart: (t: { optimizer: { name: string } | undefined }) => {
        names.push(t.optimizer!.name);
      },
    };
    const make = () =>
      new Trainer(
        { fast_dev_run: true, accelerator: 'cpu' },
        { callbacks: [spy], loggers: [], runDir: scratch.dir(), output },
      );
    const plain = plainToyTask();
    await make().fit(plain, new ToyDataModule());
    const own = new ToyTask({ optimizer: 'sgd' });
    await make().fit(own, new ToyDataModule());
    expect(names).toEqual(['adamw', 'sgd']);
    expect(own.totalSteps).toBe(1);
    [plain, own].forEach((t) => t.dispose());
  });

  it('Trainer.create: backend, run dir, callbacks, loggers and optimizer from a composed config', async () => {
    const output = new RecordingOutput();
    const registry = new ComponentRegistry();
    registry.registerPlugin(corePlugin);
    const container = createContainer({ registry, output, clock });
    const trainer = await Trainer.create(
      {
        trainer: {
          accelerator: 'cpu',
          run_dir: join(scratch.dir(), 'created'),
          fast_dev_run: true,
          loggers: { csv: { _target_: 'logger/csv' } },
        },
        optimizer: { _target_: 'optimizer/sgd', lr: 0.5 },
      },
      { container, projectRoot: '/elsewhere' },
    );
    expect(tf.getBackend()).toBe('cpu');
    expect(trainer.runDir).toBe(join(scratch.dir(), 'created'));
    expect(trainer.loggers.map((l) => l.name)).toEqual(['csv']);
    const lrs: number[] = [];
    const task = plainToyTask();
    (trainer.callbacks as unknown as Array<object>).push({
      name: 'spy',
      onFitStart: (t: Trainer) => {
        lrs.push(t.optimizer!.lr);
      },
    });
    await trainer.fit(task, new ToyDataModule());
    expect(lrs).toEqual([0.5]);
    expect(container.resolve(Tokens.Accelerator)).toBeDefined();
    task.dispose();
  });

  it('Trainer.create builds callback and logger nodes the run config validated without validating them again', async () => {
    const registry = new ComponentRegistry();
    registry.registerPlugin(corePlugin);
    let parses = 0;
    registry.register({
      kind: 'callback',
      name: 'counting',
      description: 'counts how often its config is parsed',
      schema: z.preprocess(
        (raw) => {
          parses += 1;
          return raw;
        },
        z.strictObject({ every: z.number().int().positive().default(1) }),
      ),
      create: (config) => ({ name: 'counting', config }),
    });
    const config = validateConfig<TrainerRunConfig & ConfigNode>(
      {
        trainer: {
          accelerator: 'cpu',
          run_dir: join(scratch.dir(), 'once'),
          fast_dev_run: true,
          callbacks: { counting: { _target_: 'callback/counting' } },
        },
      },
      registry,
      { rootSchemas: { trainer: trainerConfigSchema } },
    );
    expect(parses).toBe(1);
    const container = createContainer({ registry, output: new RecordingOutput(), clock });
    const trainer = await Trainer.create(config, { container });
    expect(parses).toBe(1);
    expect(trainer.callbacks.find((c) => c.name === 'counting')).toMatchObject({ config: { every: 1 } });
    // A hand-written node is still validated when it is built.
    await Trainer.create(
      {
        trainer: {
          accelerator: 'cpu',
          run_dir: join(scratch.dir(), 'hand'),
          callbacks: { c: { _target_: 'callback/counting' } },
        },
      },
      { container },
    );
    expect(parses).toBe(2);
  });

  it('Trainer.create reports a bad optimizer node as a config error at its path', async () => {
    const registry = new ComponentRegistry();
    registry.registerPlugin(corePlugin);
    const container = createContainer({ registry, output: new RecordingOutput(), clock });
    const trainer = await Trainer.create(
      {
        trainer: { accelerator: 'cpu', run_dir: join(scratch.dir(), 'bad'), fast_dev_run: true },
        optimizer: { _target_: 'optimizer/sgd', lr: -1 },
      },
      { container },
    );
    const task = plainToyTask();
    await expect(trainer.fit(task, new ToyDataModule())).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringMatching(/optimizer\.lr/),
    });
    task.dispose();
  });
});
