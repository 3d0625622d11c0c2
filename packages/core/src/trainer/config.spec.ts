import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { ConfigError } from '../errors.js';
import { parseTrainerConfig, resolveRunDir, trainerConfigSchema } from './config.js';

describe('trainer config', () => {
  it('fills every default', () => {
    expect(parseTrainerConfig({})).toMatchObject({
      max_epochs: 1, max_steps: -1, limit_train_batches: null, val_check_interval: 1, accumulate_grad_batches: 1,
      gradient_clip_val: null, seed: 42, fast_dev_run: false, num_sanity_val_steps: 2, accelerator: 'auto',
      default_root_dir: 'outputs', run_dir: null, stop_on_nan: true, log_every_n_steps: 10, callbacks: {}, loggers: {},
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
    expect(paths).toEqual(['trainer.accelerator', 'trainer.limit_val_batches', 'trainer.max_stpes', 'trainer.val_check_interval']);
    expect(error!.message).toContain("trainer.max_stpes: unknown key 'max_stpes'");
    expect(error!.message).toContain("did you mean 'max_steps'");
    expect(error!.message).toMatch(/trainer\.limit_val_batches: expected a fraction in \(0, 1\) or a whole number of batches >= 1 \(null = all batches\) \(got 2\.5\)/);
  });

  it('accepts fractions and counts, and rejects a run with no end', () => {
    expect(parseTrainerConfig({ limit_train_batches: 0.25, val_check_interval: 50 })).toMatchObject({ limit_train_batches: 0.25, val_check_interval: 50 });
    expect(() => parseTrainerConfig({ max_epochs: -1 })).toThrow(/max_epochs and max_steps are both -1/);
    expect(parseTrainerConfig({ max_epochs: -1, max_steps: 100 }).max_steps).toBe(100);
  });

  it('derives the run directory from the clock unless run_dir is set', () => {
    const clock = { now: () => new Date(2024, 4, 1, 13, 5, 9).getTime() };
    expect(resolveRunDir({ run_dir: null, default_root_dir: 'outputs' }, clock)).toBe('outputs/2024-05-01/13-05-09');
    expect(resolveRunDir({ run_dir: 'runs/a', default_root_dir: 'outputs' }, clock)).toBe('runs/a');
  });
});
