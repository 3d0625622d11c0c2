import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { ConfigError } from '../errors.js';
import { parseTrainerConfig, resolveRunDir, trainerConfigSchema } from './config.js';

describe('trainer config', () => {
  it('fills every default', () => {
    expect(parseTrainerConfig({})).toMatchObject({
      max_epochs: 1,
      max_steps: -1,
      limit_train_batches: null,
      val_check_interval: 1,
      accumulate_grad_batches: 1,
      gradient_clip_val: null,
      seed: 42,
      fast_dev_run: false,
      num_sanity_val_steps: 2,
      accelerator: 'auto',
      default_root_dir: 'outputs',
      run_dir: null,
      stop_on_nan: true,
      log_every_n_steps: 10,
      callbacks: {},
      loggers: {},
    });
  });

  it('matches the shipped conf/trainer/default.yaml', () => {
    const shipped = YAML.parse(readFileSync(new URL('../../conf/trainer/default.yaml', import.meta.url), 'utf8'));
    const { callbacks, loggers, ...rest } = trainerConfigSchema.parse(shipped);
    const { callbacks: _c, loggers: _l, ...defaults } = trainerConfigSchema.parse({});
    expect(rest).toEqual(defaults);
    expect(Object.keys(callbacks)).toEqual(['progress_bar', 'model_checkpoint', 'lr_monitor', 'device_stats']);
    expect(loggers['csv']).toEqual({ _target_: 'logger/csv' });
  });

  it('reports every problem with its dotted path and value', () => {
    let error: ConfigError | undefined;
    try {
      parseTrainerConfig({ max_stpes: 10, limit_val_batches: 2.5, val_check_interval: 1.5, accelerator: 'tpu' });
    } catch (e) {
      error = e as ConfigError;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const paths = error!.problems.map((p) => p.path).sort();
    expect(paths).toEqual([
      'trainer.accelerator',
      'trainer.limit_val_batches',
      'trainer.max_stpes',
      'trainer.val_check_interval',
    ]);
    expect(error!.message).toContain("trainer.max_stpes: unknown key 'max_stpes'");
    expect(error!.message).toContain("did you mean 'trainer.max_steps'");
    expect(error!.message).toMatch(
      /trainer\.limit_val_batches: expected 0 \(off\), a fraction in \(0, 1\) or a whole number of batches >= 1 \(null = all batches\) \(got 2\.5\)/,
    );
  });

  it('accepts fractions and counts, and rejects a run with no end', () => {
    expect(parseTrainerConfig({ limit_train_batches: 0.25, val_check_interval: 50 })).toMatchObject({
      limit_train_batches: 0.25,
      val_check_interval: 50,
    });
    expect(() => parseTrainerConfig({ max_epochs: -1 })).toThrow(/max_epochs and max_steps are both -1/);
    expect(parseTrainerConfig({ max_epochs: -1, max_steps: 100 }).max_steps).toBe(100);
  });

  it('accepts 0 for limit_val_batches and limit_test_batches (off) but not for limit_train_batches', () => {
    expect(parseTrainerConfig({ limit_val_batches: 0, limit_test_batches: 0 })).toMatchObject({
      limit_val_batches: 0,
      limit_test_batches: 0,
    });
    expect(() => parseTrainerConfig({ limit_train_batches: 0 })).toThrow(/trainer\.limit_train_batches/);
    expect(() => parseTrainerConfig({ limit_val_batches: -1 })).toThrow(/trainer\.limit_val_batches/);
  });

  it('derives the run directory from the clock unless run_dir is set', () => {
    const clock = { now: () => new Date(2024, 4, 1, 13, 5, 9).getTime() };
    expect(resolveRunDir({ run_dir: null, default_root_dir: 'outputs' }, clock)).toBe('outputs/2024-05-01/13-05-09');
    expect(resolveRunDir({ run_dir: 'runs/a', default_root_dir: 'outputs' }, clock)).toBe('runs/a');
  });
  it.each<[string, unknown[], unknown[]]>([
    ['max_epochs', [0, 3], [-2, 1.5, '1']], // -1 needs max_steps: below
    ['max_steps', [-1, 0, 7], [-2, 2.5]],
    ['limit_train_batches', [null, 0.5, 0.999, 1, 3], [0, -0.5, 1.5, 2.25]],
    ['val_check_interval', [0.5, 1, 2, 50], [0, -1, 1.5]],
    ['check_val_every_n_epoch', [1, 4], [0, 1.5]],
    ['accumulate_grad_batches', [1, 8], [0, -1]],
    ['gradient_clip_val', [null, 0.5, 10], [-1]], // 0 = off, as in Lightning: below
    ['seed', [0, 7], [-1, 0.5]],
    ['num_sanity_val_steps', [-1, 0, 2], [-2, 1.5]],
    ['threads', [null, 1, 4], [0, 1.5]],
    ['log_every_n_steps', [1, 50], [0, 2.5]],
    ['default_root_dir', ['o'], ['', null]],
    ['run_dir', [null, 'r'], ['']],
    ['resume_from', [null], ['']], // an existing checkpoint dir: see the input-path specs
    ['accelerator', ['auto', 'gpu', 'node', 'wasm', 'cpu'], ['tpu', '']],
    ['fast_dev_run', [true, false], ['yes', 1]],
    ['stop_on_nan', [true, false], [0]],
  ])('%s: accepts %j, rejects %j naming the key', (key, good, bad) => {
    for (const value of good)
      expect(
        parseTrainerConfig({ [key]: value })[key as keyof ReturnType<typeof parseTrainerConfig>],
        `${key}=${String(value)}`,
      ).toEqual(value);
    for (const value of bad) {
      const error = (() => {
        try {
          parseTrainerConfig({ [key]: value }, 'run.trainer');
        } catch (e) {
          return e;
        }
      })();
      expect(error, `${key}=${JSON.stringify(value)} was accepted`).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems.map((p) => p.path)).toEqual([`run.trainer.${key}`]);
    }
  });

  it('fast_dev_run needs no end: max_epochs and max_steps may both be -1 then; the error names the prefix', () => {
    expect(parseTrainerConfig({ max_epochs: -1, max_steps: -1, fast_dev_run: true }).fast_dev_run).toBe(true);
    expect(parseTrainerConfig({ max_epochs: -1, max_steps: 0 }).max_steps).toBe(0);
    expect(parseTrainerConfig(undefined).max_epochs).toBe(1);
    const error = (() => {
      try {
        parseTrainerConfig({ max_epochs: -1 }, 'x.trainer');
      } catch (e) {
        return e;
      }
    })() as ConfigError;
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.problems).toEqual([
      {
        path: 'x.trainer.max_epochs',
        value: -1,
        defaultValue: 1,
        message:
          'max_epochs and max_steps are both -1 (unlimited), so training would never end; set one of them (to stop a long run early press Ctrl-C: the checkpoint is saved)',
      },
    ]);
  });

  it("reads Lightning's gradient_clip_val=0 as no clipping (null), not as clipping every gradient to 0", () => {
    expect(parseTrainerConfig({ gradient_clip_val: 0 }).gradient_clip_val).toBeNull();
  });

  it('explains limit_train_batches=0 and resume_from=last|best (Lightning spellings) instead of a bare refusal', () => {
    const message = (raw: object) => {
      try {
        parseTrainerConfig(raw);
      } catch (e) {
        return (e as Error).message;
      }
      return 'accepted';
    };
    expect(message({ limit_train_batches: 0 })).toContain('limit_train_batches=0 would train on no batch');
    expect(message({ limit_train_batches: 0 })).toContain('taskforge validate ckpt=<dir>');
    for (const word of ['last', 'best']) {
      expect(message({ resume_from: word })).toContain(`'${word}' is Lightning's ckpt_path shortcut`);
      expect(message({ resume_from: word })).toContain('trainer.resume_from=<run dir>/checkpoints/');
    }
  });

  it('pads every date and time field of the run directory to two digits', () => {
    const clock = { now: () => new Date(2024, 0, 2, 3, 4, 5).getTime() };
    expect(resolveRunDir({ run_dir: null, default_root_dir: 'o' }, clock)).toBe('o/2024-01-02/03-04-05');
    const late = { now: () => new Date(2024, 11, 31, 23, 59, 58).getTime() };
    expect(resolveRunDir({ run_dir: null, default_root_dir: 'o' }, late)).toBe('o/2024-12-31/23-59-58');
  });
  it('names what a wrong val_check_interval or a non-callback / non-logger component should be', () => {
    const problems = (raw: unknown) => {
      try {
        parseTrainerConfig(raw);
        return [];
      } catch (e) {
        return (e as ConfigError).problems;
      }
    };
    expect(problems({ val_check_interval: 1.5 })).toEqual([
      expect.objectContaining({
        path: 'trainer.val_check_interval',
        message: expect.stringContaining(
          'expected a fraction of the epoch in (0, 1] or a whole number of training batches > 1',
        ),
      }),
    ]);
    // null does not mean "no validation": the error says how to turn validation off.
    expect(problems({ val_check_interval: null })).toEqual([
      expect.objectContaining({
        path: 'trainer.val_check_interval',
        message: expect.stringContaining('to turn validation off set trainer.limit_val_batches=0'),
      }),
    ]);
    expect(
      problems({ callbacks: { ckpt: { _target_: 'logger/csv' } }, loggers: { csv: { _target_: 'callback/x' } } }),
    ).toEqual([
      expect.objectContaining({
        path: 'trainer.callbacks.ckpt._target_',
        message: expect.stringContaining("expected a callback component ('_target_: callback/<name>')"),
      }),
      expect.objectContaining({
        path: 'trainer.loggers.csv._target_',
        message: expect.stringContaining("expected a logger component ('_target_: logger/<name>')"),
      }),
    ]);
    expect(
      parseTrainerConfig({
        callbacks: { a: { _target_: 'callback/a' }, off: null },
        loggers: { l: { _target_: 'logger/l' } },
      }),
    ).toMatchObject({
      callbacks: { a: { _target_: 'callback/a' }, off: null },
      loggers: { l: { _target_: 'logger/l' } },
    });
  });
});
