import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { csvLogger, sgd, toyBackbone, toyTask } from '../../tests/fixtures/components.js';
import { ComponentRegistry } from './registry.js';
import { componentNode, validateConfig, type ValidateOptions } from './validate.js';

const registry = new ComponentRegistry();
for (const spec of [toyBackbone, toyTask, sgd, csvLogger]) registry.forPackage('@toys/all').register(spec);

const rootOptions: ValidateOptions = {
  rootSchemas: {
    backbone: componentNode('backbone'),
    trainer: z
      .strictObject({
        max_steps: z.number().int().positive().default(100),
        precision: z.enum(['fp32', 'fp16']).default('fp32'),
      })
      .default({ max_steps: 100, precision: 'fp32' }),
  },
  allowedRootKeys: ['task', 'loggers', 'seed'],
};

function problemsOf(config: unknown, options: ValidateOptions = rootOptions) {
  try {
    validateConfig(config, registry, options);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('validateConfig', () => {
  it('applies schema defaults to components, nested components and root sections', () => {
    const out = validateConfig(
      {
        backbone: { _target_: 'backbone/toy', n_layer: 4 },
        task: { _target_: 'task/vision/toy', optimizer: { _target_: 'optimizer/sgd', lr: 0.1 } },
        seed: 7,
      },
      registry,
      rootOptions,
    );
    expect(out).toEqual({
      backbone: { _target_: 'backbone/toy', n_layer: 4, activation: 'gelu' },
      task: {
        _target_: 'task/vision/toy',
        label_smoothing: 0,
        optimizer: { _target_: 'optimizer/sgd', lr: 0.1, momentum: 0 },
      },
      seed: 7,
      trainer: { max_steps: 100, precision: 'fp32' },
    });
  });

  it('suggests the closest schema key for an unknown key', () => {
    const problems = problemsOf({ backbone: { _target_: 'backbone/toy', n_layers: 4 } });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ path: 'backbone.n_layers', value: 4, suggestions: ['backbone.n_layer'] });
    expect(problems[0]!.message).toContain("unknown key 'n_layers' for backbone/toy");
  });

  it('collects every problem in the tree, with full paths and expectations in words', () => {
    const problems = problemsOf({
      backbone: { _target_: 'backbone/toy', n_layer: -2, activation: 'tanh' },
      task: {
        _target_: 'task/vision/toy',
        label_smoothing: 'a lot',
        optimizer: { _target_: 'optimizer/sgd', momentum: 2 },
      },
      loggers: [{ _target_: 'logger/csv', flush_every: 1.5 }],
      trainer: { max_steps: 0 },
    });
    const byPath = Object.fromEntries(problems.map((p) => [p.path, p]));
    expect(Object.keys(byPath).sort()).toEqual([
      'backbone.activation',
      'backbone.n_layer',
      'loggers[0].flush_every',
      'task.label_smoothing',
      'task.optimizer.lr',
      'task.optimizer.momentum',
      'trainer.max_steps',
    ]);
    expect(byPath['backbone.n_layer']).toMatchObject({
      value: -2,
      message: 'expected a positive integer for backbone/toy',
    });
    expect(byPath['backbone.activation']!.message).toBe("expected one of 'gelu' | 'relu' for backbone/toy");
    expect(byPath['task.label_smoothing']!.message).toContain('expected a number >= 0 and <= 1');
    expect(byPath['task.optimizer.lr']!.message).toBe(
      'missing required key for optimizer/sgd; expected a positive number',
    );
    expect(byPath['loggers[0].flush_every']).toMatchObject({
      value: 1.5,
      message: 'expected a positive integer for logger/csv',
    });
    expect(byPath['trainer.max_steps']!.message).toBe('expected a positive integer');
  });

  it('reports unknown top-level keys with suggestions', () => {
    const problems = problemsOf({ backbone: { _target_: 'backbone/toy' }, trainr: { max_steps: 5 } });
    expect(problems).toEqual([expect.objectContaining({ path: 'trainr', suggestions: ['trainer'] })]);
    expect(problems[0]!.message).not.toContain('config group');
  });

  it('says a top-level string (`+experiment=fast` with no such group) is no config group in the search path, and where its file would go (s6: finding 10)', () => {
    const [problem] = problemsOf({ backbone: { _target_: 'backbone/toy' }, experiment: 'fast' });
    expect(problem!.message).toContain(
      "; as a config group ('experiment=fast') it is not in the search path either: it would compose " +
        'experiment/fast.yaml from a conf dir on the search path (e.g. conf/experiment/fast.yaml; ' +
        "begin it with '# @package _global_' to set keys anywhere",
    );
  });

  it('reports unknown targets with same-kind suggestions, and the wrong kind where a root schema expects one', () => {
    const problems = problemsOf({ backbone: { _target_: 'logger/csv' }, task: { _target_: 'task/vision/tyo' } });
    expect(problems).toEqual([
      expect.objectContaining({
        path: 'backbone._target_',
        message: "expected a backbone component ('_target_: backbone/<name>')",
      }),
      expect.objectContaining({ path: 'task._target_', value: 'task/vision/tyo', suggestions: ['task/vision/toy'] }),
    ]);
  });

  it.each(['../../evil.js', 'fs/promises', 'file:///etc/passwd', 'node:child_process', '/abs/path.js'])(
    'never resolves %s: only registered targets are accepted',
    (target) => {
      const problems = problemsOf({ backbone: { _target_: target } }, {});
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatchObject({ path: 'backbone._target_', value: target });
      expect(problems[0]!.message).toContain('module or file paths are never imported from config');
    },
  );

  it('rejects a non-string _target_ and a non-mapping config', () => {
    expect(problemsOf({ backbone: { _target_: 42 } }, {})[0]).toMatchObject({ path: 'backbone._target_', value: 42 });
    expect(problemsOf(['not', 'a', 'mapping'], {})[0]!.message).toContain('must be a mapping');
  });

  it('reports a missing required root section', () => {
    const problems = problemsOf({}, { rootSchemas: { trainer: z.strictObject({ max_steps: z.number() }) } });
    expect(problems).toEqual([
      { path: 'trainer', message: 'missing required top-level key; expected a mapping of keys to values' },
    ]);
  });
});

describe('validateConfig messages for other schema shapes', () => {
  it('keeps author messages for refinements and describes lists, unions and nullables', () => {
    const schema = z.strictObject({
      stages: z.array(z.string()).min(1),
      size: z.union([z.number().int(), z.literal('auto')]),
      ratio: z.number().nullable(),
      even: z.number().refine((n) => n % 2 === 0, 'must be even'),
    });
    const problems = problemsOf(
      { run: { stages: [], size: 'big', ratio: 'x', even: 3 } },
      { rootSchemas: { run: schema } },
    );
    expect(Object.fromEntries(problems.map((p) => [p.path, p.message]))).toEqual({
      'run.stages': 'expected a list of at least 1 item',
      'run.size': "expected an integer or 'auto'",
      'run.ratio': 'expected a number or null',
      'run.even': 'must be even',
    });
  });

  it('names the accepted value a misspelt or foreign one was meant to be, from the spelling or the schema aliases', () => {
    const schema = z.strictObject({
      device: z
        .enum(['auto', 'wasm', 'gpu'])
        .meta({ valueAliases: { cuda: 'gpu' } })
        .default('auto'),
      size: z.union([z.number().int(), z.literal('auto')]),
      mode: z.enum(['min', 'max']).nullable(),
    });
    const problems = problemsOf(
      { run: { device: 'wsam', size: 'atuo', mode: 'mxa' } },
      { rootSchemas: { run: schema } },
    );
    const byPath = Object.fromEntries(problems.map((p) => [p.path, p]));
    expect(byPath['run.device']).toMatchObject({ suggestions: ['wasm'], correctedValues: ['wasm'] });
    expect(byPath['run.size']).toMatchObject({ suggestions: ['auto'], correctedValues: ['auto'] });
    expect(byPath['run.mode']).toMatchObject({ suggestions: ['max'], correctedValues: ['max'] });
    expect(
      problemsOf({ run: { device: 'cuda', size: 1, mode: null } }, { rootSchemas: { run: schema } })[0],
    ).toMatchObject({ path: 'run.device', suggestions: ['gpu'], correctedValues: ['gpu'] });
    // Nothing close and no alias: no guess.
    const far = problemsOf({ run: { device: 'banana', size: 1, mode: null } }, { rootSchemas: { run: schema } })[0]!;
    expect(far.suggestions).toBeUndefined();
    expect(far.correctedValues).toBeUndefined();
  });
});
