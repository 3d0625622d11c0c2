/**
 * `taskforge train` on a toy task through the app layer: what a run leaves in its run dir when
 * it is refused early, and how the default run dir avoids one that exists.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { toyBackbone } from '../../tests/fixtures/components.js';
import { RecordingOutput, ToyDataModule, ToyTask, type ToyBatch } from '../../tests/toy/toy.js';
import { callbackSpecs } from '../callbacks/index.js';
import type { StepContext } from '../contracts.js';
import { ConfigError, TaskforgeError } from '../errors.js';
import { loggerSpecs } from '../loggers/index.js';
import { optimizerSpecs } from '../optim/index.js';
import type { ComponentRegistry } from '../registry/registry.js';
import type { ComponentSpec } from '../registry/types.js';
import { Tokens, type Clock } from '../services/tokens.js';
import { describeFit, evaluateCommand, trainCommand } from './commands.js';
import { createContainer } from './container.js';
import { Session } from './session.js';

let project: string;
beforeAll(() => {
  project = mkdtempSync(join(tmpdir(), 'taskforge-commands-'));
  writeFileSync(join(project, 'package.json'), '{ "name": "commands-spec", "private": true }\n');
  mkdirSync(join(project, 'conf'));
  writeFileSync(
    join(project, 'conf', 'config.yaml'),
    [
      'task: { _target_: task/refusing, refuse_at_step: null }',
      'dataset: { _target_: datamodule/toy }',
      'backbone: { _target_: backbone/toy }',
      'optimizer: { _target_: optimizer/sgd, lr: 0.1 }',
      'trainer:',
      '  strategy: single',
      '  accelerator: cpu',
      '  max_steps: 3',
      '  log_every_n_steps: 1',
      '  num_sanity_val_steps: 0',
      '  run_dir: null',
      '  callbacks: { model_checkpoint: { _target_: callback/model_checkpoint } }',
      '  loggers: { csv: { _target_: logger/csv }, tensorboard: { _target_: logger/tensorboard } }',
      '',
    ].join('\n'),
  );
});
afterAll(() => rmSync(project, { recursive: true, force: true }));

/** The toy regression task, refusing its batch (exit 2, as ddp refuses padded labels) at one step. */
const refusingTask: ComponentSpec<'task'> = {
  kind: 'task',
  name: 'refusing',
  description: 'toy regression that refuses a batch at refuse_at_step',
  schema: z.strictObject({ refuse_at_step: z.number().int().nullable() }),
  create: (config) => {
    const task = new ToyTask();
    const step = task.trainingStep.bind(task);
    task.trainingStep = (batch: ToyBatch, ctx: StepContext) => {
      if (ctx.globalStep === config.refuse_at_step)
        throw new TaskforgeError(`refused the batch at step ${ctx.globalStep}`, { exitCode: 2 });
      return step(batch, ctx);
    };
    return task;
  },
};
const toyData: ComponentSpec<'datamodule'> = {
  kind: 'datamodule',
  name: 'toy',
  description: 'toy regression data',
  // `clip` stands for a preprocessing setting that leaves the model's data facts alone.
  schema: z.strictObject({ clip: z.number().default(1) }),
  create: () => new ToyDataModule({ nTrain: 16, nVal: 4, batchSize: 4 }),
};

async function open(clock?: Clock): Promise<{ session: Session; output: RecordingOutput }> {
  const output = new RecordingOutput();
  const session = await Session.open({
    cwd: project,
    container: createContainer({ output, ...(clock ? { clock } : {}) }),
  });
  const registry = session.container.resolve<ComponentRegistry>(Tokens.Registry);
  for (const spec of [refusingTask, toyData, toyBackbone, ...optimizerSpecs, ...callbackSpecs, ...loggerSpecs])
    registry.register(spec);
  return { session, output };
}

async function train(overrides: string[], clock?: Clock) {
  const { session, output } = await open(clock);
  try {
    return { result: await trainCommand(session, { overrides }), output, error: undefined };
  } catch (error) {
    return { result: undefined, output, error: error as TaskforgeError };
  }
}

const said = (output: RecordingOutput) => [...output.lines, ...output.warnings].join('\n');

describe('a run refused early (s5: finding 4)', () => {
  it('after the loggers wrote their hparams, removes the run dir it created and says so', async () => {
    const runDir = join(project, 'refused-at-0');
    const { error, output } = await train([`trainer.run_dir=${runDir}`, 'task.refuse_at_step=0']);
    expect(error?.exitCode).toBe(2);
    expect(error?.message).toContain('refused the batch at step 0');
    expect(said(output)).toContain(`Removed the run dir ${runDir}`);
    expect(existsSync(runDir)).toBe(false);
  });

  it('removes the parent dirs it created for the run dir too (outputs/<date>/), while they are empty', async () => {
    const parent = join(project, 'made', 'for-it');
    const { error, output } = await train([`trainer.run_dir=${join(parent, 'run')}`, 'task.refuse_at_step=0']);
    expect(error?.exitCode).toBe(2);
    expect(said(output)).toContain(`Removed the run dir ${join(parent, 'run')}`);
    expect(existsSync(join(project, 'made'))).toBe(false);
    // A parent that existed (or that another run wrote into) stays.
    mkdirSync(join(project, 'shared-parent', 'other-run'), { recursive: true });
    await train([`trainer.run_dir=${join(project, 'shared-parent', 'new', 'run')}`, 'task.refuse_at_step=0']);
    expect(readdirSync(join(project, 'shared-parent'))).toEqual(['other-run']);
  });

  it('keeps a run dir that existed before the run, even empty', async () => {
    const runDir = join(project, 'existed');
    mkdirSync(runDir);
    const { error, output } = await train([`trainer.run_dir=${runDir}`, 'task.refuse_at_step=0']);
    expect(error?.exitCode).toBe(2);
    expect(said(output)).not.toContain('Removed the run dir');
    expect(readdirSync(runDir)).toContain('config.yaml');
  });

  it('keeps a run dir holding metrics rows of the steps before the refusal', async () => {
    const runDir = join(project, 'refused-at-2');
    const { error, output } = await train([`trainer.run_dir=${runDir}`, 'task.refuse_at_step=2']);
    expect(error?.exitCode).toBe(2);
    expect(said(output)).not.toContain('Removed the run dir');
    const rows = readFileSync(join(runDir, 'logs', 'csv', 'metrics.csv'), 'utf8')
      .trim()
      .split('\n');
    expect(rows.length).toBeGreaterThan(1);
  });
});

describe('a run with no task (s10)', () => {
  it("names the task options of this project's search path (core knows no task of its own)", async () => {
    mkdirSync(join(project, 'conf', 'task', 'text'), { recursive: true });
    writeFileSync(
      join(project, 'conf', 'task', 'text', 'tagging.yaml'),
      '_target_: task/refusing\nrefuse_at_step: null\n',
    );
    writeFileSync(join(project, 'conf', 'task', 'regression.yaml'), '_target_: task/refusing\nrefuse_at_step: null\n');
    try {
      const { error } = await train(['~task']);
      expect(error?.exitCode).toBe(2);
      expect(error?.message).toContain(
        'task: no task is configured; choose one on the command line: task=regression, task=text/tagging',
      );
    } finally {
      rmSync(join(project, 'conf', 'task'), { recursive: true, force: true });
    }
  });
});

describe('the default run dir (s5: finding 1)', () => {
  it('two runs started in the same second get <time> and <time>-2; neither writes into the other', async () => {
    const clock = { now: () => new Date(2026, 10, 30, 13, 5, 9).getTime() };
    const first = await train([], clock);
    const second = await train([], clock);
    expect(first.error).toBeUndefined();
    expect(second.error).toBeUndefined();
    const dir = join(project, 'outputs', '2026-11-30', '13-05-09');
    expect(first.result?.runDir).toBe(dir);
    expect(second.result?.runDir).toBe(`${dir}-2`);
    const steps = readFileSync(join(dir, 'logs', 'csv', 'metrics.csv'), 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((row) => Number(row.split(',')[0]));
    expect(steps).toEqual([...new Set(steps)].sort((a, b) => a - b)); // one run's steps, not two
  });

  it('an explicit run_dir holding a finished run is refused before anything in it changes', async () => {
    const dir = join(project, 'outputs', '2026-11-30', '13-05-09');
    const before = readFileSync(join(dir, 'config.yaml'), 'utf8');
    const { error } = await train([`trainer.run_dir=${dir}`, 'trainer.max_steps=1']);
    expect(error?.exitCode).toBe(2);
    expect(error?.message).toContain(`the run dir ${dir} already holds a run (checkpoints/last`);
    expect(readFileSync(join(dir, 'config.yaml'), 'utf8')).toBe(before);
  });
});

describe('the closing summary of train (s7)', () => {
  it("labels the saved checkpoint 'newest' without a monitor and 'best (metric)' with one, and counts epochs as the bar does", async () => {
    const plain = await train([
      `trainer.run_dir=${join(project, 'summary-plain')}`,
      'trainer.max_steps=6',
      '++trainer.max_epochs=3',
    ]);
    expect(plain.error).toBeUndefined();
    const text = said(plain.output);
    expect(text).toContain('Training finished at step 6: 1 epoch and 2 batches of epoch 1 trained.');
    expect(text).toMatch(
      /newest checkpoint: \S+step=000006 \(no monitor, so none is ranked best; set trainer\.callbacks\.model_checkpoint\.monitor/,
    );
    expect(text).not.toContain('best checkpoint');
    const short = await train([`trainer.run_dir=${join(project, 'summary-short')}`, 'trainer.max_steps=2']);
    expect(said(short.output)).toContain('Training finished at step 2: 2 batches of epoch 0 trained.');
    const ranked = await train([
      `trainer.run_dir=${join(project, 'summary-ranked')}`,
      'trainer.max_steps=4',
      '+trainer.callbacks.model_checkpoint.monitor=val_loss',
    ]);
    expect(ranked.error).toBeUndefined();
    expect(said(ranked.output)).toMatch(
      /Training finished at step 4: 1 epoch trained\.\n {2}last validation: .*\n {2}best checkpoint \(val_loss\): \S+step=/,
    );
  });
});

describe('describeFit', () => {
  it('says when the best checkpoint is the LOWEST of a higher-is-better metric (mode=min, the default)', () => {
    const result = {
      globalStep: 94,
      startStep: 0,
      epoch: 1,
      epochsCompleted: 2,
      batchInEpoch: 0,
      metrics: { 'val/acc': 0.99 },
      runDir: '/r',
      bestCheckpoint: '/r/checkpoints/step=000047',
      checkpointMonitor: 'val/acc',
      checkpointMode: 'min' as const,
    };
    expect(describeFit(result, '/r', false)).toContain(
      '  best checkpoint (val/acc, its LOWEST value: mode=min; set trainer.callbacks.model_checkpoint.mode=max ' +
        'to keep the highest): /r/checkpoints/step=000047',
    );
    expect(describeFit({ ...result, checkpointMode: 'max' }, '/r', false)).toContain(
      '  best checkpoint (val/acc): /r/checkpoints/step=000047',
    );
    expect(describeFit({ ...result, checkpointMonitor: 'val/loss' }, '/r', false)).toContain(
      '  best checkpoint (val/loss): /r/checkpoints/step=000047',
    );
    // Every value NaN or infinite: no ranking to speak of (s10).
    expect(describeFit({ ...result, checkpointMode: 'max', checkpointBestScore: null }, '/r', false)).toContain(
      '  best checkpoint (val/acc: no checkpoint had a finite value, so none ranks above another; this is the ' +
        'oldest kept): /r/checkpoints/step=000047',
    );
  });
});

describe('a resume whose checkpoint already ends the run', () => {
  it('warns, trains nothing and removes the new run dir it made; a run dir resumed in place stays', async () => {
    const first = join(project, 'noop-first');
    expect((await train([`trainer.run_dir=${first}`, 'trainer.max_steps=2'])).error).toBeUndefined();
    const last = join(first, 'checkpoints', 'last');
    const again = join(project, 'noop-again');
    const noop = await train([`trainer.run_dir=${again}`, 'trainer.max_steps=2', `+trainer.resume_from=${last}`]);
    expect(noop.error).toBeUndefined();
    expect(noop.result).toMatchObject({ globalStep: 2, startStep: 2 });
    const text = said(noop.output);
    expect(text).toContain('nothing is left to train');
    expect(text).toContain(`Removed the run dir ${again}: nothing was trained`);
    expect(text).toContain('Nothing trained: the checkpoint resumed is at step 2, the end of this run (');
    expect(existsSync(again)).toBe(false);
    // The summary lists no logs or config of the removed dir.
    expect(text).not.toContain(join(again, 'logs'));
    const inPlace = await train([`trainer.run_dir=${first}`, 'trainer.max_steps=2', `+trainer.resume_from=${last}`]);
    expect(inPlace.error).toBeUndefined();
    expect(existsSync(join(first, 'config.yaml'))).toBe(true);
    expect(existsSync(last)).toBe(true);
    // A resume that trains on keeps its new run dir.
    const more = join(project, 'noop-more');
    const onwards = await train([`trainer.run_dir=${more}`, 'trainer.max_steps=3', `+trainer.resume_from=${last}`]);
    expect(onwards.result).toMatchObject({ globalStep: 3, startStep: 2 });
    expect(existsSync(join(more, 'checkpoints', 'last'))).toBe(true);
  });
});

describe('ckpt= naming a checkpoints directory or a run directory (s7)', () => {
  it('lists the checkpoints in it and suggests its last one, before any backend or data step', async () => {
    const runDir = join(project, 'ckpt-dir');
    expect((await train([`trainer.run_dir=${runDir}`, 'trainer.max_steps=2'])).error).toBeUndefined();
    const checkpoints = join(runDir, 'checkpoints');
    const error = await evaluateCommand((await open()).session, 'test', { ckpt: checkpoints, overrides: [] }).catch(
      (e: unknown) => e,
    );
    expect((error as TaskforgeError).exitCode).toBe(2);
    expect((error as Error).message).toMatch(
      new RegExp(`it holds the checkpoints last, step=\\d+: did you mean ckpt=${join(checkpoints, 'last')}\\?`),
    );
    const { session, output } = await open();
    const runError = await evaluateCommand(session, 'test', { ckpt: runDir, overrides: [] }).catch((e: unknown) => e);
    expect((runError as TaskforgeError).exitCode).toBe(2);
    expect((runError as Error).message).toContain(
      `is a run directory, not a checkpoint: did you mean ckpt=${join(runDir, 'checkpoints', 'last')}, its last checkpoint?`,
    );
    expect(said(output)).not.toContain('Accelerator:'); // refused before any backend or data step
    // Lightning's 'best' shortcut as a path: no such dir; the checkpoints next to it are named.
    const best = await evaluateCommand((await open()).session, 'test', {
      ckpt: join(checkpoints, 'best'),
      overrides: [],
    }).catch((e: unknown) => e);
    expect((best as TaskforgeError).exitCode).toBe(2);
    expect((best as Error).message).toMatch(
      new RegExp(
        `does not exist\\. taskforge has no 'best' shortcut \\(Lightning's ckpt_path='best'\\): name the checkpoint dir; .*` +
          ` ${checkpoints} holds the checkpoints last, step=\\d+\\.$`,
      ),
    );
  });
});

describe('trainer.resume_from that is no checkpoint (s7)', () => {
  it('is refused before any backend, worker or run dir, with the last checkpoint as the fix', async () => {
    const runDir = join(project, 'resume-source');
    expect((await train([`trainer.run_dir=${runDir}`, 'trainer.max_steps=2'])).error).toBeUndefined();
    const target = join(project, 'resume-target');
    const { error, output } = await train([
      `trainer.run_dir=${target}`,
      `+trainer.resume_from=${join(runDir, 'checkpoints')}`,
    ]);
    expect(error?.exitCode).toBe(2);
    expect(error?.message).toContain(
      `trainer.resume_from=${join(runDir, 'checkpoints')}: that is a run's checkpoints directory, not a checkpoint: did you mean '${join(runDir, 'checkpoints', 'last')}'`,
    );
    expect(said(output)).not.toContain('Accelerator:');
    expect(existsSync(target)).toBe(false);
  });
});

describe('an evaluation inheriting a setting from the checkpoint (s5: finding 13)', () => {
  it("says a trainer setting at fault comes from the checkpoint's saved config, not the command line", async () => {
    const runDir = join(project, 'inherits');
    expect((await train([`trainer.run_dir=${runDir}`, 'trainer.max_steps=1'])).error).toBeUndefined();
    const ckpt = join(runDir, 'checkpoints', 'last');
    // As a run trained with trainer.devices=2 saves it; this test asks for a single device.
    const saved = readFileSync(join(ckpt, 'config.yaml'), 'utf8');
    const ddp = saved.replace(/^( +)devices: .*$/m, '$1devices: 2');
    expect(ddp).not.toBe(saved);
    writeFileSync(join(ckpt, 'config.yaml'), ddp);
    const { session } = await open();
    const error = await evaluateCommand(session, 'test', { ckpt, overrides: ['trainer.strategy=single'] }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TaskforgeError);
    expect((error as TaskforgeError).exitCode).toBe(2);
    expect((error as TaskforgeError).message).toContain('trainer.devices=2 needs trainer.strategy=ddp');
    expect((error as TaskforgeError).message).toContain(
      `(trainer.devices=2 comes from the checkpoint's saved config, ${join(ckpt, 'config.yaml')}: override it on the command line.)`,
    );
    // A setting given on the command line is the user's own: no attribution.
    const own = await evaluateCommand((await open()).session, 'test', {
      ckpt,
      overrides: ['trainer.strategy=single', 'trainer.devices=2'],
    }).catch((e: unknown) => e);
    expect((own as Error).message).toContain('trainer.devices=2 needs trainer.strategy=ddp');
    expect((own as Error).message).not.toContain('comes from the checkpoint');
  });

  it('attributes an accelerator the checkpoint was trained on and this machine lacks, keeping the exit code', async () => {
    const runDir = join(project, 'inherits-accelerator');
    expect((await train([`trainer.run_dir=${runDir}`, 'trainer.max_steps=1'])).error).toBeUndefined();
    const ckpt = join(runDir, 'checkpoints', 'last');
    // As a run trained on tfjs-node saves it; @tensorflow/tfjs-node is not installed here.
    const saved = readFileSync(join(ckpt, 'config.yaml'), 'utf8');
    const node = saved.replace(/^( +)accelerator: .*$/m, '$1accelerator: node');
    expect(node).not.toBe(saved);
    writeFileSync(join(ckpt, 'config.yaml'), node);
    const error = await evaluateCommand((await open()).session, 'test', { ckpt, overrides: [] }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TaskforgeError);
    expect((error as TaskforgeError).exitCode).toBe(1);
    expect((error as TaskforgeError).message).toContain('trainer.accelerator=node needs @tensorflow/tfjs-node');
    expect((error as TaskforgeError).message).toContain(
      `(trainer.accelerator=node comes from the checkpoint's saved config, ${join(ckpt, 'config.yaml')}: override it on the command line.)`,
    );
  });
});

describe('evaluating a checkpoint with other data settings (s9: finding 5)', () => {
  it('warns, naming each dataset setting that differs from its config.yaml and both values', async () => {
    const runDir = join(project, 'clip-trained');
    expect((await train([`trainer.run_dir=${runDir}`, 'trainer.max_steps=1'])).error).toBeUndefined();
    const ckpt = join(runDir, 'checkpoints', 'last');
    const same = await open();
    await evaluateCommand(same.session, 'test', { ckpt, overrides: [] });
    expect(same.output.warnings.filter((w) => w.includes('other settings'))).toEqual([]);
    const other = await open();
    await evaluateCommand(other.session, 'test', { ckpt, overrides: ['dataset.clip=2.5'] });
    expect(other.output.warnings.filter((w) => w.includes('other settings'))).toEqual([
      `This evaluation reads the data with other settings than ckpt=${ckpt} was trained with: dataset.clip is 2.5 ` +
        'here and 1 in its config.yaml. Where such a setting changes how the evaluated inputs are prepared (a clip, ' +
        'a normalisation; not a training-only one such as augmentation), the model is scored on inputs prepared ' +
        "otherwise than in training; if that is not what you want, drop that override (the checkpoint's settings are used then).",
    ]);
  });
});

describe('a ckpt= evaluation given a group selection copied from the training command (s10)', () => {
  it("drops one naming the checkpoint's own component with a note, and refuses another in one problem", async () => {
    const runDir = join(project, 'selected');
    expect((await train([`trainer.run_dir=${runDir}`, 'trainer.max_steps=1'])).error).toBeUndefined();
    const ckpt = join(runDir, 'checkpoints', 'last');
    mkdirSync(join(project, 'conf', 'task', 'text'), { recursive: true });
    writeFileSync(
      join(project, 'conf', 'task', 'text', 'regression.yaml'),
      '_target_: task/refusing\nrefuse_at_step: null\n',
    );
    writeFileSync(join(project, 'conf', 'task', 'other.yaml'), '_target_: task/other\n');
    // A task file in the global package, as generated tasks and iGPT write theirs (s10 final check).
    writeFileSync(
      join(project, 'conf', 'task', 'global.yaml'),
      '# @package _global_\ntask:\n  _target_: task/refusing\n  refuse_at_step: null\n',
    );
    try {
      const same = await open();
      await evaluateCommand(same.session, 'test', { ckpt, overrides: ['task=text/regression'] });
      expect(said(same.output)).toContain(
        "task=text/regression: not needed with ckpt= (the checkpoint's config already selects task/refusing); left out.",
      );
      const global = await open();
      await evaluateCommand(global.session, 'test', { ckpt, overrides: ['task=global'] });
      expect(said(global.output)).toContain(
        "task=global: not needed with ckpt= (the checkpoint's config already selects task/refusing)",
      );
      const other = await open();
      const error = await evaluateCommand(other.session, 'test', { ckpt, overrides: ['task=other'] }).catch(
        (e: unknown) => e as ConfigError,
      );
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems).toHaveLength(1);
      expect((error as ConfigError).message).toContain(
        `task: ckpt=${ckpt} was trained with task task/refusing, not task/other; an evaluation runs the checkpoint's own components`,
      );
    } finally {
      rmSync(join(project, 'conf', 'task'), { recursive: true, force: true });
    }
  });
});

describe('evaluating a checkpoint (s6: finding 13)', () => {
  it("logs at the checkpoint's step and epoch, not epoch 0", async () => {
    const runDir = join(project, 'two-epochs');
    // 16 samples in batches of 4: step 6 is in epoch 1.
    expect(
      (await train([`trainer.run_dir=${runDir}`, 'trainer.max_steps=6', '++trainer.max_epochs=3'])).error,
    ).toBeUndefined();
    const { session } = await open();
    await evaluateCommand(session, 'validate', { ckpt: join(runDir, 'checkpoints', 'last'), overrides: [] });
    const [evaluation] = readdirSync(join(runDir, 'evaluations'));
    const rows = readFileSync(join(runDir, 'evaluations', evaluation!, 'logs', 'csv', 'metrics.csv'), 'utf8')
      .trim()
      .split('\n');
    const header = rows[0]!.split(',');
    const row = rows[1]!.split(',');
    expect(row[header.indexOf('step')]).toBe('6');
    expect(row[header.indexOf('epoch')]).toBe('1');
  });
});
