import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readdir, readFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { ModelCheckpoint } from '../../src/callbacks/model-checkpoint.js';
import { CsvLogger } from '../../src/loggers/csv.js';
import type { Callback, OptimizerState, Task } from '../../src/contracts.js';
import { TaskforgeError } from '../../src/errors.js';
import { Adam } from '../../src/optim/index.js';
import {
  loadCheckpoint,
  readCheckpointConfig,
  restoreTaskWeights,
  settleUnfinishedCheckpoints,
  writeCheckpoint,
} from '../../src/trainer/checkpoint.js';
import { ToyDataModule, ToyTask } from '../toy/toy.js';
import { makeTrainer, useScratch } from './helpers.js';

const scratch = useScratch();

describe('checkpoints', () => {
  it('round-trip weights, optimizer state, trainer state, task state and config', async () => {
    const task = new ToyTask({ hidden: 3, optimizer: 'adam' });
    const checkpoint = new ModelCheckpoint({ every_n_train_steps: 2, save_top_k: -1 });
    // The live optimizer's state after the last step, read as plain numbers before the Trainer disposes it.
    const values = (state: OptimizerState) => ({
      meta: state.meta,
      tensors: Object.fromEntries(
        Object.entries(state.tensors).map(([k, t]) => [k, { shape: t.shape, data: Array.from(t.dataSync()) }]),
      ),
    });
    let live: ReturnType<typeof values> | undefined;
    const capture: Callback = {
      name: 'capture_optimizer_state',
      onTrainBatchEnd: (view) => {
        if (view.globalStep !== 4) return;
        const state = view.optimizer!.getState();
        live = values(state);
        tf.dispose(state.tensors);
      },
    };
    const { trainer, runDir } = makeTrainer(scratch.dir(), { max_steps: 4 }, [capture, checkpoint]);
    task.label = 'trained';
    const result = await trainer.fit(task, new ToyDataModule());
    expect(result.lastCheckpoint).toBe(join(runDir, 'checkpoints', 'last'));
    expect((await readdir(join(runDir, 'checkpoints'))).sort()).toEqual(['last', 'step=000002', 'step=000004']);
    const manifest = JSON.parse(await readFile(join(result.lastCheckpoint!, 'weights.json'), 'utf8'));
    expect(manifest).toMatchObject({ format: 'taskforge-weights', weightsManifest: [{ paths: ['weights.bin'] }] });
    expect(await readFile(join(result.lastCheckpoint!, 'config.yaml'), 'utf8')).toContain('note: toy');

    const loaded = await loadCheckpoint(result.lastCheckpoint!);
    expect(loaded.trainerState).toMatchObject({
      globalStep: 4,
      epoch: 0,
      batchInEpoch: 4,
      optimizer: 'adamw',
      seed: 42,
      savedAt: '2024-01-02T03:04:05.000Z',
    });
    expect(loaded.taskState).toEqual({ modelDataArgs: { inputDim: 3 }, state: { label: 'trained' } });
    expect(loaded.config).toMatchObject({ note: 'toy', trainer: { max_steps: 4 } });
    expect(loaded.optimizer?.state.meta).toMatchObject({ step: 4 });
    expect(Object.keys(loaded.optimizer!.state.tensors).sort()).toContain('m/hidden/kernel');

    const fresh = new ToyTask({ hidden: 3, initSeed: 99 });
    expect(fresh.snapshot()).not.toEqual(task.snapshot());
    expect(restoreTaskWeights(fresh, loaded)).toEqual({ missing: [], unexpected: [] });
    expect(fresh.snapshot()).toEqual(task.snapshot());
    expect(fresh.label).toBe('trained');
    // The saved Adam moments and step counts are exactly the live optimizer's, and survive a restore.
    expect(live).toBeDefined();
    expect(Object.keys(live!.tensors).sort()).toEqual(Object.keys(loaded.optimizer!.state.tensors).sort());
    expect(Object.keys(live!.tensors).some((k) => k.startsWith('v/'))).toBe(true);
    expect(Object.values(live!.tensors).some((t) => t.data.some((x) => x !== 0))).toBe(true);
    expect(values(loaded.optimizer!.state)).toEqual(live);
    const adam = new Adam(fresh.variables, { lr: 0.1, weightDecay: 0.01, decoupledWeightDecay: true });
    adam.setState(loaded.optimizer!.state);
    const restored = adam.getState();
    expect(values(restored)).toEqual({ ...live!, meta: expect.objectContaining(live!.meta) });
    tf.dispose(restored.tensors);
    loaded.dispose();
    adam.dispose();
    fresh.dispose();
    task.dispose();
  });

  it('names missing, unexpected and mis-shaped variables when a checkpoint does not fit the model', async () => {
    const linear = new ToyTask();
    const dir = await writeCheckpoint(join(scratch.dir(), 'linear'), { task: linear, modelDataArgs: { inputDim: 3 } });
    const loaded = await loadCheckpoint(dir);
    const mlp = new ToyTask({ hidden: 4 });
    const error = (() => {
      try {
        restoreTaskWeights(mlp, loaded);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(error).toBeInstanceOf(TaskforgeError);
    expect(error!.message).toContain(`Checkpoint '${dir}' does not match the model`);
    expect(error!.message).toContain("mis-shaped: 'out/kernel' (checkpoint float32 [3, 1], model float32 [4, 1])");
    expect(error!.message).toContain("missing from the checkpoint: 'hidden/kernel', 'hidden/bias'");
    // Names that differ may come from changed code, which no override fixes (s9: finding 21).
    expect(error!.message).toContain('Variable names come from the backbone and task code');
    expect((error as TaskforgeError).exitCode, 'a checkpoint that does not fit the model is a config mistake').toBe(2);

    // With the loading run's config: the backbone and task values that differ from the checkpoint's config.yaml (s6: finding 3).
    const withConfig = await writeCheckpoint(join(scratch.dir(), 'linear-config'), {
      task: linear,
      modelDataArgs: { inputDim: 3 },
      config: { backbone: { embed_dim: 32, num_layers: 2 }, task: { hidden: 0 }, trainer: { seed: 1 } },
    });
    const current = { backbone: { embed_dim: 16, num_layers: 2 }, task: { hidden: 4 }, trainer: { seed: 2 } };
    const named = (() => {
      try {
        restoreTaskWeights(mlp, loaded, { currentConfig: current });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(named!.message).toContain("use the config saved in the checkpoint's config.yaml"); // no config.yaml in `dir`
    const configured = await loadCheckpoint(withConfig);
    const diffed = (() => {
      try {
        restoreTaskWeights(mlp, configured, { currentConfig: current });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(diffed!.message).toContain(
      `The model config differs from the checkpoint's (${join(withConfig, 'config.yaml')}): ` +
        'backbone.embed_dim is 32 there and 16 here, task.hidden is 0 there and 4 here; ' +
        'to load it, set backbone.embed_dim=32 task.hidden=0 (or drop the overrides that changed them).',
    );
    // Keys only one side has: `~key` removes one the checkpoint lacks, `+key=…` adds one it has (s6 final check).
    const sided = (() => {
      try {
        restoreTaskWeights(mlp, configured, {
          currentConfig: { backbone: { embed_dim: 32, num_layers: 2 }, task: { classify: true } },
        });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(sided!.message).toContain(
      'task.classify is not in it and true here; to load it, set +task.hidden=0 (or drop the overrides that ' +
        'changed them), and remove task.classify if this run added it (~task.classify, or drop the override); a ' +
        'setting the code gained since the checkpoint was saved has no override: load it with the code it was trained with.',
    );
    // Another backbone component: one selection, not each of its settings (s10).
    const targeted = await writeCheckpoint(join(scratch.dir(), 'linear-gpt2'), {
      task: linear,
      modelDataArgs: { inputDim: 3 },
      config: { backbone: { _target_: 'backbone/gpt2', embed_dim: 32, num_layers: 2 }, task: { hidden: 0 } },
    });
    const loadedTargeted = await loadCheckpoint(targeted);
    const component = (() => {
      try {
        restoreTaskWeights(mlp, loadedTargeted, {
          currentConfig: { backbone: { _target_: 'backbone/conv', channels: 8 }, task: { hidden: 0 } },
        });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(component!.message).toContain(
      'backbone._target_ is "backbone/gpt2" there and "backbone/conv" here; to load it, set backbone=gpt2 (or drop',
    );
    expect(component!.message).not.toContain('backbone.embed_dim');
    loadedTargeted.dispose();
    configured.dispose();

    // Non-strict (pretrained weights into a bigger model): only what matches is loaded.
    const partial = {
      namedVariables: () => ({ 'out/bias': mlp.variables['out/bias']!, extra: mlp.variables['hidden/bias']! }),
    } as unknown as Task;
    linear.variables['out/bias']!.assign(tf.tensor1d([0.5]));
    const reloaded = await loadCheckpoint(await writeCheckpoint(dir, { task: linear, modelDataArgs: {} }));
    expect(() => restoreTaskWeights(partial, reloaded)).toThrow(
      /in the checkpoint but not in the model: 'out\/kernel'/,
    );
    expect(restoreTaskWeights(partial, reloaded, { strict: false })).toEqual({
      missing: ['extra'],
      unexpected: ['out/kernel'],
    });
    expect(Array.from(mlp.variables['out/bias']!.dataSync())).toEqual([0.5]);
    loaded.dispose();
    reloaded.dispose();
    mlp.dispose();
    linear.dispose();
  });

  it('explains a missing or corrupt checkpoint', async () => {
    const nowhere = join(scratch.dir(), 'nope');
    await expect(loadCheckpoint(nowhere)).rejects.toThrow(
      `Cannot load checkpoint '${nowhere}': the directory does not exist`,
    );
    const task = new ToyTask();
    const dir = await writeCheckpoint(join(scratch.dir(), 'corrupt'), { task, modelDataArgs: {} });
    await truncate(join(dir, 'weights.bin'), 5);
    await expect(loadCheckpoint(dir)).rejects.toThrow(
      /weights\.bin' has 5 bytes but its manifest describes 16; the file is truncated or corrupt/,
    );
    // A path that is not a checkpoint is a usage mistake (2); a damaged file a runtime failure (1).
    await expect(loadCheckpoint(nowhere)).rejects.toMatchObject({ exitCode: 2 });
    await expect(loadCheckpoint(dir)).rejects.toMatchObject({ exitCode: 1 });
    task.dispose();
  });

  it('given a run dir or its checkpoints dir, points at the last checkpoint in it', async () => {
    const run = join(scratch.dir(), 'run');
    const task = new ToyTask();
    await writeCheckpoint(join(run, 'checkpoints', 'last'), { task, modelDataArgs: {} });
    for (const [given, what] of [
      [run, 'a run directory'],
      [join(run, 'checkpoints'), "a run's checkpoints directory"],
    ] as const) {
      await expect(loadCheckpoint(given)).rejects.toThrow(
        `Cannot load checkpoint '${given}': that is ${what}, not a checkpoint: did you mean '${join(run, 'checkpoints', 'last')}'`,
      );
      await expect(loadCheckpoint(given)).rejects.toMatchObject({ exitCode: 2 });
    }
    task.dispose();
  });

  it('readCheckpointConfig: the saved run config, undefined without config.yaml, a named error when corrupt', async () => {
    const dir = join(scratch.dir(), 'ckpt');
    const task = new ToyTask();
    await writeCheckpoint(dir, {
      task,
      modelDataArgs: {},
      config: { backbone: { _target_: 'backbone/toy', width: 4 }, seed: 3 },
    });
    expect(readCheckpointConfig(dir)).toEqual({ backbone: { _target_: 'backbone/toy', width: 4 }, seed: 3 });
    task.dispose();

    const bare = join(scratch.dir(), 'bare');
    mkdirSync(bare);
    expect(readCheckpointConfig(bare)).toBeUndefined();
    writeFileSync(join(bare, 'config.yaml'), '');
    expect(readCheckpointConfig(bare)).toEqual({});

    for (const [text, reason] of [
      ['backbone: [unclosed\n', `${join(bare, 'config.yaml')}:2:1)`],
      ['- a list\n', 'a config file must contain a mapping at the top level, not a list'],
    ] as const) {
      writeFileSync(join(bare, 'config.yaml'), text);
      let error: unknown;
      try {
        readCheckpointConfig(bare);
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(TaskforgeError);
      expect(error).toMatchObject({ exitCode: 1 });
      expect((error as Error).message).toContain(`Checkpoint file '${join(bare, 'config.yaml')}'`);
      expect((error as Error).message).toContain(reason);
    }
  });

  it('leaves the previous checkpoint intact when a write fails midway', async () => {
    const task = new ToyTask();
    const dir = join(scratch.dir(), 'atomic', 'last');
    await writeCheckpoint(dir, { task, modelDataArgs: {} });
    const saved = task.snapshot();
    task.variables['out/bias']!.assign(tf.tensor1d([42]));
    task.options.failStateDict = true;
    // stateDict runs after weights.bin has been written into the temporary directory.
    await expect(writeCheckpoint(dir, { task, modelDataArgs: {} })).rejects.toThrow(
      `Could not write checkpoint '${dir}': stateDict exploded. Any previous checkpoint there was left untouched.`,
    );
    expect(await readdir(join(scratch.dir(), 'atomic'))).toEqual(['last']);
    const loaded = await loadCheckpoint(dir);
    expect(Array.from(loaded.weights['out/bias']!.dataSync())).toEqual(saved['out/bias']);
    loaded.dispose();
    // A successful write replaces it.
    task.options.failStateDict = false;
    await writeCheckpoint(dir, { task, modelDataArgs: {} });
    const replaced = await loadCheckpoint(dir);
    expect(Array.from(replaced.weights['out/bias']!.dataSync())).toEqual([42]);
    expect(existsSync(`${dir}.old-${process.pid}`)).toBe(false);
    replaced.dispose();
    task.dispose();
  });
});

describe('a process dying mid-write (a second Ctrl-C)', () => {
  it('settleUnfinishedCheckpoints removes the temp copy of a checkpoint being written; the previous one stays', async () => {
    const dir = join(scratch.dir(), 'checkpoints', 'last');
    const task = new ToyTask();
    await writeCheckpoint(dir, { task, modelDataArgs: { inputDim: 3 } });
    const before = readFileSync(join(dir, 'weights.bin'));
    const temps = async () => (await readdir(join(dir, '..'))).filter((name) => name.includes('.tmp-'));
    // The signal arrives while the weights are being gathered, once the temp copy exists.
    let tempsWhenSignalled: string[] = [];
    let tempsAfterSettling: string[] | undefined;
    const dying = {
      namedVariables: () => {
        tempsWhenSignalled = readdirSync(join(dir, '..')).filter((name) => name.includes('.tmp-'));
        settleUnfinishedCheckpoints();
        tempsAfterSettling = readdirSync(join(dir, '..')).filter((name) => name.includes('.tmp-'));
        return task.namedVariables();
      },
    } as unknown as Task;
    await writeCheckpoint(dir, { task: dying, modelDataArgs: { inputDim: 3 } }).catch(() => undefined); // the process would be gone
    expect(tempsWhenSignalled).toHaveLength(1);
    expect(tempsAfterSettling).toEqual([]);
    expect(await temps()).toEqual([]);
    expect(readFileSync(join(dir, 'weights.bin'))).toEqual(before);
    task.dispose();
  });
});

describe('resume', () => {
  const config = { max_epochs: 3, accumulate_grad_batches: 2, gradient_clip_val: 1, val_check_interval: 0.5 } as const;
  const makeTask = () =>
    new ToyTask({ hidden: 6, dropout: 0.3, optimizer: 'adam', lr: 0.02, scheduler: 'warmup_cosine' });

  it('reaches exactly the weights of an uninterrupted run, from mid-epoch, epoch-end and SIGINT checkpoints', async () => {
    const reference = makeTask();
    const everyStep = new ModelCheckpoint({ every_n_train_steps: 1, save_top_k: -1 });
    const uninterrupted = makeTrainer(scratch.dir(), config, [everyStep]);
    const full = await uninterrupted.trainer.fit(reference, new ToyDataModule());
    expect(full.globalStep).toBe(12);
    const expected = reference.snapshot();
    const valSeries = uninterrupted.logger.series('val_loss');

    const resumeFrom = async (dir: string, step: number) => {
      const task = makeTask();
      const run = makeTrainer(scratch.dir(), config, [new ModelCheckpoint({ every_n_train_steps: 1, save_top_k: -1 })]);
      const result = await run.trainer.fit(task, new ToyDataModule(), { resumeFrom: dir });
      expect(result.globalStep).toBe(12);
      expect(task.snapshot()).toEqual(expected);
      // The same validations at the same steps with the same results, including one pending at the resume step.
      expect(run.logger.series('val_loss')).toEqual(valSeries.filter(([s]) => s >= step));
      task.dispose();
      return run;
    };
    const ckpt = (step: number) => join(uninterrupted.runDir, 'checkpoints', `step=${String(step).padStart(6, '0')}`);
    // Step 3: epoch 0, batch 6 (mid-epoch, just after a mid-epoch validation).
    const mid = await resumeFrom(ckpt(3), 3);
    expect(mid.output.lines[0]).toBe(`Resumed from '${ckpt(3)}' at global step 3 (epoch 0, batch 6).`);
    // Step 4: the last batch of epoch 0, saved before that epoch's final validation.
    await resumeFrom(ckpt(4), 4);

    // Stopped by SIGINT at step 5, then resumed from the `last` it saved.
    const task = makeTask();
    const stopAt5 = new ModelCheckpoint({ every_n_train_steps: 100 });
    const interrupted = makeTrainer(scratch.dir(), config, [
      stopAt5,
      {
        name: 'interrupter',
        onTrainBatchEnd: (trainer) => {
          if (trainer.globalStep === 5) process.emit('SIGINT');
        },
      },
    ]);
    await expect(interrupted.trainer.fit(task, new ToyDataModule())).rejects.toThrow(/interrupted by SIGINT at step 5/);
    task.dispose();
    await resumeFrom(join(interrupted.runDir, 'checkpoints', 'last'), 5);
    reference.dispose();
  });

  it('refuses to resume a different model, naming the variables', async () => {
    const task = new ToyTask();
    const dir = await writeCheckpoint(join(scratch.dir(), 'other'), {
      task,
      modelDataArgs: {},
      trainerState: {
        globalStep: 1,
        epoch: 0,
        batchInEpoch: 1,
        epochFinished: false,
        validatedAt: -1,
        seed: 42,
        optimizer: 'sgd',
        scheduler: null,
        callbacks: {},
        metrics: {},
      },
    });
    const mlp = makeTask();
    const { trainer } = makeTrainer(scratch.dir(), config);
    await expect(trainer.fit(mlp, new ToyDataModule(), { resumeFrom: dir })).rejects.toThrow(
      /does not match the model: mis-shaped: 'out\/kernel'/,
    );
    mlp.dispose();
    task.dispose();
  });
});

describe('resuming in place', () => {
  it('drops the rows the interrupted run logged past the checkpoint, so each step is logged once', async () => {
    const root = scratch.dir();
    const runDir = join(root, 'in-place');
    const csv = () => new CsvLogger({ dir: join(runDir, 'logs', 'csv'), flushEvery: 1 });
    const first = makeTrainer(
      root,
      { max_steps: 4 },
      [new ModelCheckpoint({ every_n_train_steps: 2, save_top_k: -1 })],
      {
        runDir,
        loggers: [csv()],
      },
    );
    await first.trainer.fit(new ToyTask({ hidden: 3 }), new ToyDataModule());
    const steps = () =>
      readFileSync(join(runDir, 'logs', 'csv', 'metrics.csv'), 'utf8')
        .trim()
        .split('\n')
        .slice(1)
        .map((line) => Number(line.split(',')[0]));
    expect(steps()).toEqual([1, 2, 3, 4]);
    const again = makeTrainer(root, { max_steps: 4 }, [], { runDir, loggers: [csv()] });
    await again.trainer.fit(new ToyTask({ hidden: 3 }), new ToyDataModule(), {
      resumeFrom: join(runDir, 'checkpoints', 'step=000002'),
    });
    expect(steps()).toEqual([1, 2, 3, 4]);
    expect(again.output.lines.join('\n')).toContain(
      "Dropped 2 logged rows after step 2 (the interrupted run's, logged past the checkpoint)",
    );
  });
});

describe('resuming with another checkpoint monitor', () => {
  it("keeps the earlier ranking's best on disk, outside the new ranking, and says how to rank it again", async () => {
    const root = scratch.dir();
    const runDir = join(root, 'ranked');
    // Scores per validation (one per epoch): the best (max) is the second epoch's.
    const task = () => new ToyTask({ hidden: 3, valScores: [0.1, 0.9, 0.2, 0.3, 0.4, 0.5] });
    const ranked = new ModelCheckpoint({ monitor: 'score', mode: 'max' });
    await makeTrainer(root, { max_epochs: 3 }, [ranked], { runDir }).trainer.fit(
      task(),
      new ToyDataModule({ nVal: 8 }),
    );
    const best = ranked.bestModelPath!;
    expect(best).toBe(join(runDir, 'checkpoints', 'step=000016'));
    // Resumed in place without the monitor: a recency ranking with save_top_k=1 would evict (delete) it.
    const warnings: string[] = [];
    const unranked = new ModelCheckpoint({}, { warn: (m) => warnings.push(m) });
    const again = makeTrainer(root, { max_epochs: 5 }, [unranked], { runDir });
    const result = await again.trainer.fit(task(), new ToyDataModule({ nVal: 8 }), {
      resumeFrom: join(runDir, 'checkpoints', 'last'),
    });
    expect(existsSync(best)).toBe(true);
    expect(result.bestCheckpoint).toBe(join(runDir, 'checkpoints', 'step=000040'));
    expect(unranked.kept).toEqual([join(runDir, 'checkpoints', 'step=000040')]);
    expect(warnings.join('\n')).toContain(
      `The checkpoint resumed from kept its checkpoints ranked by score (mode=max); this run ranks them by recency ` +
        `(no monitor). ${best} stays on disk, outside this run's ranking (never replaced or deleted by it); to go on ` +
        'ranking it, resume with trainer.callbacks.model_checkpoint.monitor=score trainer.callbacks.model_checkpoint.mode=max.',
    );
  });
});

describe('resuming on other data', () => {
  it('is refused naming the data setting that changed and the override that restores it', async () => {
    const withData = (inputDim: number) => ({
      composedConfig: { trainer: { max_steps: 2 }, dataset: { input_dim: inputDim } },
    });
    const first = makeTrainer(scratch.dir(), { max_steps: 2 }, [new ModelCheckpoint()], withData(4));
    const done = await first.trainer.fit(new ToyTask({ hidden: 3, inputDim: 4 }), new ToyDataModule({ inputDim: 4 }));
    const other = makeTrainer(scratch.dir(), { max_steps: 3 }, [], withData(6));
    const error = await other.trainer
      .fit(new ToyTask({ hidden: 3, inputDim: 6 }), new ToyDataModule({ inputDim: 6 }), {
        resumeFrom: done.lastCheckpoint!,
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskforgeError);
    expect((error as TaskforgeError).exitCode).toBe(2);
    expect((error as Error).message).toContain(
      `Cannot resume from '${done.lastCheckpoint!}': the data differs from the data the checkpoint was trained on in ` +
        "dataset.input_dim (checkpoint 4, this run 6), so the model's data facts differ: inputDim (checkpoint 4, this run 6). " +
        "A resume continues the same model on the same data: set 'dataset.input_dim=4' as the checkpoint was trained",
    );
    // The same data resumes.
    const same = makeTrainer(scratch.dir(), { max_steps: 3 }, [], withData(4));
    const resumed = await same.trainer.fit(
      new ToyTask({ hidden: 3, inputDim: 4 }),
      new ToyDataModule({ inputDim: 4 }),
      {
        resumeFrom: done.lastCheckpoint!,
      },
    );
    expect(resumed.globalStep).toBe(3);
  });
});

describe('resuming with a changed end', () => {
  it('says so when the checkpoint is already at the end of the run, and trains on when the end is raised', async () => {
    const first = makeTrainer(scratch.dir(), { max_steps: 2 }, [new ModelCheckpoint({ every_n_train_steps: 1 })]);
    const done = await first.trainer.fit(new ToyTask({ hidden: 3, optimizer: 'adam' }), new ToyDataModule());
    const same = makeTrainer(scratch.dir(), { max_steps: 2 });
    const again = await same.trainer.fit(new ToyTask({ hidden: 3, optimizer: 'adam' }), new ToyDataModule(), {
      resumeFrom: done.lastCheckpoint!,
    });
    expect(again.globalStep).toBe(2);
    expect(same.output.warnings.join('\n')).toMatch(
      /The checkpoint is already at step 2, the end of this run \(2 steps from trainer\.max_steps=2.*Raise trainer\.max_steps/,
    );
    const more = makeTrainer(scratch.dir(), { max_steps: 4 });
    const longer = await more.trainer.fit(new ToyTask({ hidden: 3, optimizer: 'adam' }), new ToyDataModule(), {
      resumeFrom: done.lastCheckpoint!,
    });
    expect(longer.globalStep).toBe(4);
    expect(more.output.warnings.join('\n')).not.toContain('nothing is left to train');
  });

  it('warns that a step-based LR schedule restarts from the new total when max_steps changes on resume', async () => {
    const cosine = () => new ToyTask({ hidden: 3, optimizer: 'adam', lr: 0.02, scheduler: 'warmup_cosine' });
    const first = makeTrainer(scratch.dir(), { max_steps: 4 }, [
      new ModelCheckpoint({ every_n_train_steps: 1, save_top_k: -1 }),
    ]);
    await first.trainer.fit(cosine(), new ToyDataModule());
    const step3 = join(first.runDir, 'checkpoints', 'step=000003');
    const saved = await loadCheckpoint(step3);
    expect(saved.trainerState).toMatchObject({ totalSteps: 4, nextLr: expect.any(Number) });
    saved.dispose();

    // The same total: the schedule continues exactly, no warning.
    const same = makeTrainer(scratch.dir(), { max_steps: 4 });
    await same.trainer.fit(cosine(), new ToyDataModule(), { resumeFrom: step3 });
    expect(same.output.warnings.join('\n')).not.toContain('LR schedule');

    const longer = makeTrainer(scratch.dir(), { max_steps: 8 });
    await longer.trainer.fit(cosine(), new ToyDataModule(), { resumeFrom: step3 });
    expect(longer.output.warnings.join('\n')).toMatch(
      /saved by a run planned for 4 optimizer steps\) with a plan of 8 steps \(trainer\.max_steps=8, .*the warmup_cosine LR schedule is computed from the planned total.*step 4 uses LR \d\.\d\de[-+]\d+ where the original run would have used \d\.\d\de[-+]\d+.*keep max_steps\/max_epochs as they were/,
    );
  });
});
