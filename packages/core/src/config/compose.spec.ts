import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { composeConfig, listGroupOptions, listGroups } from './index.js';

const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

/** Writes `files` (relative path → YAML text) into a fresh temp dir and returns its path. */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'taskforge-conf-'));
  roots.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

function composeError(options: Parameters<typeof composeConfig>[0]): ConfigError {
  try {
    composeConfig(options);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected composeConfig to throw a ConfigError');
}

const project = () =>
  tree({
    'config.yaml':
      'defaults:\n  - task: vision/igpt\n  - dataset: cifar10\n  - optimizer: adam\n  - _self_\nseed: 42\ntrainer:\n  max_steps: 100\n  precision: 32\n',
    'task/vision/igpt.yaml': 'name: igpt\nlayers: 2\n',
    'task/text/gpt.yaml': 'name: gpt\nlayers: 12\n',
    'dataset/cifar10.yaml': 'name: cifar10\nsize: [32, 32]\n',
    'dataset/mnist.yaml': 'name: mnist\nsize: [28, 28]\n',
    'optimizer/adam.yaml': 'lr: 0.001\nbetas: [0.9, 0.999]\n',
    'optimizer/sgd.yaml': 'lr: 0.1\nmomentum: 0.9\n',
    'experiment/fast.yaml':
      '# @package _global_\ndefaults:\n  - override /optimizer: sgd\nseed: 7\ntrainer:\n  max_steps: 5\n',
  });

describe('defaults lists', () => {
  it('places each group file under its group, records choices, and drops the defaults key', () => {
    const { config, choices } = composeConfig({ searchPath: [project()] });
    expect(config).toEqual({
      task: { name: 'igpt', layers: 2 },
      dataset: { name: 'cifar10', size: [32, 32] },
      optimizer: { lr: 0.001, betas: [0.9, 0.999] },
      seed: 42,
      trainer: { max_steps: 100, precision: 32 },
    });
    expect(choices).toEqual({ task: 'vision/igpt', dataset: 'cifar10', optimizer: 'adam' });
    expect(Object.keys(choices)).toEqual(['task', 'dataset', 'optimizer']);
  });

  it('merges _self_ where it is listed, and after the defaults when it is not', () => {
    const conf = tree({
      'config.yaml': 'defaults:\n  - _self_\n  - model: small\nwidth: 1\nmodel:\n  width: 1\n  depth: 1\n',
      'self_last.yaml': 'defaults:\n  - model: small\nmodel:\n  width: 1\n',
      'model/small.yaml': 'width: 8\n',
    });
    expect(composeConfig({ searchPath: [conf] }).config.model).toEqual({ width: 8, depth: 1 });
    expect(composeConfig({ searchPath: [conf], configName: 'self_last' }).config.model).toEqual({ width: 1 });
  });

  it('expands nested defaults, absolute groups (with or without a leading /) and bare config includes', () => {
    const conf = tree({
      'config.yaml': 'defaults:\n  - model: gpt\n  - common/base\n',
      'model/gpt.yaml': 'defaults:\n  - /backbone: transformer\n  - _self_\n  - head: lm\nkind: gpt\n',
      'backbone/transformer.yaml': 'defaults:\n  - attention: flash\nlayers: 4\n',
      'attention/flash.yaml': 'dropout: 0.0\n',
      'head/lm.yaml': 'vocab: 100\n',
      'common/base.yaml': 'epochs: 3\n',
    });
    const { config, choices } = composeConfig({ searchPath: [conf] });
    expect(config).toEqual({
      model: { kind: 'gpt' },
      backbone: { layers: 4 },
      attention: { dropout: 0 },
      head: { vocab: 100 },
      common: { epochs: 3 },
    });
    expect(choices).toEqual({ model: 'gpt', backbone: 'transformer', attention: 'flash', head: 'lm' });
  });

  it('honours @pkg in the entry over a # @package header, and _global_ / _group_ headers', () => {
    const conf = tree({
      'config.yaml':
        'defaults:\n  - db@source: mysql\n  - db@target: mysql\n  - logging: global\n  - nested/deep: group_pkg\n',
      'db/mysql.yaml': '# @package _global_\nport: 3306\n',
      'logging/global.yaml': '# a comment first\n# @package _global_\nlog_level: info\n',
      'nested/deep/group_pkg.yaml': '# @package _group_.opts\nx: 1\n',
    });
    const { config, choices } = composeConfig({ searchPath: [conf] });
    expect(config).toEqual({
      source: { port: 3306 },
      target: { port: 3306 },
      log_level: 'info',
      nested: { deep: { opts: { x: 1 } } },
    });
    expect(choices).toEqual({
      'db@source': 'mysql',
      'db@target': 'mysql',
      logging: 'global',
      'nested/deep': 'group_pkg',
    });
  });

  it('selects nothing for group: null, and lets an experiment override an earlier selection', () => {
    const conf = project();
    const nulled = tree({ 'config.yaml': 'defaults:\n  - optimizer: null\nx: 1\n' });
    expect(composeConfig({ searchPath: [nulled, conf] })).toMatchObject({
      config: { x: 1 },
      choices: { optimizer: null },
    });

    const { config, choices } = composeConfig({ searchPath: [conf], overrides: ['+experiment=fast'] });
    expect(config.optimizer).toEqual({ lr: 0.1, momentum: 0.9 });
    expect(config.seed).toBe(7);
    expect(config.trainer).toEqual({ max_steps: 5, precision: 32 });
    expect(choices).toMatchObject({ optimizer: 'sgd', experiment: 'fast' });
  });

  it('skips a missing optional selection and changes a packaged selection with group@pkg=option', () => {
    const conf = tree({
      'config.yaml': 'defaults:\n  - optional local: user\n  - db@backup: mysql\n',
      'local/other.yaml': 'x: 1\n',
      'db/mysql.yaml': 'port: 3306\n',
      'db/pg.yaml': 'port: 5432\n',
    });
    expect(composeConfig({ searchPath: [conf] })).toEqual({
      config: { backup: { port: 3306 } },
      sources: new Map([['backup.port', join(conf, 'db/mysql.yaml')]]),
      choices: { 'db@backup': 'mysql' },
      notes: [],
      problems: [],
      overrides: new Map(),
    });
    expect(composeConfig({ searchPath: [conf], overrides: ['db@backup=pg'] }).config).toEqual({
      backup: { port: 5432 },
    });
  });

  it('reports a group selected twice without override, naming both files', () => {
    const conf = tree({
      'config.yaml': 'defaults:\n  - optimizer: adam\n  - extra\n',
      'extra.yaml': 'defaults:\n  - optimizer: sgd\n',
      'optimizer/adam.yaml': 'lr: 1\n',
      'optimizer/sgd.yaml': 'lr: 2\n',
    });
    const error = composeError({ searchPath: [conf] });
    expect(error.problems).toHaveLength(1);
    expect(error.problems[0]!.message).toMatch(
      /config group 'optimizer' is selected twice: 'adam' by .*config\.yaml:2 and 'sgd' by .*extra\.yaml:2/,
    );
    expect(error.problems[0]!.message).toContain("'- override optimizer: sgd'");
  });

  it('reports an override with nothing to override, and a defaults cycle', () => {
    const conf = tree({
      'config.yaml': 'defaults:\n  - a\n  - override optimizr: sgd\n',
      'a.yaml': 'defaults:\n  - b\n',
      'b.yaml': 'defaults:\n  - a\n',
      'optimizer/sgd.yaml': 'lr: 2\n',
    });
    const messages = composeError({ searchPath: [conf] }).problems.map((p) => p.message);
    expect(messages).toEqual([
      expect.stringMatching(/^defaults cycle: .*config\.yaml -> .*a\.yaml -> .*b\.yaml -> .*a\.yaml$/),
      expect.stringContaining("'override optimizr: sgd' has nothing to override"),
    ]);
  });
});

describe('search path', () => {
  it('takes each file from the first dir that has it and lists options across all dirs', () => {
    const projectConf = tree({
      'config.yaml': 'defaults:\n  - dataset: cifar10\n',
      'dataset/cifar10.yaml': 'from: project\n',
    });
    const pluginConf = tree({
      'config.yaml': 'from: plugin\n',
      'dataset/cifar10.yaml': 'from: plugin\n',
      'dataset/mnist.yaml': 'from: plugin\n',
      'task/vision/igpt.yaml': 'x: 1\n',
    });
    const searchPath = [projectConf, pluginConf];
    const { config, sources } = composeConfig({ searchPath });
    expect(config).toEqual({ dataset: { from: 'project' } });
    expect(sources.get('dataset.from')).toBe(join(projectConf, 'dataset/cifar10.yaml'));
    expect(composeConfig({ searchPath, overrides: ['dataset=mnist'] }).config).toEqual({ dataset: { from: 'plugin' } });
    expect(listGroupOptions(searchPath, 'dataset')).toEqual(['cifar10', 'mnist']);
    expect(listGroupOptions(searchPath, 'task')).toEqual(['vision/igpt']);
    expect(listGroups(searchPath)).toEqual(['dataset', 'task', 'task/vision']);
  });

  it('reports a missing primary config with suggestions', () => {
    const conf = tree({ 'config.yaml': 'x: 1\n', 'train.yaml': 'x: 2\n' });
    const error = composeError({ searchPath: [conf], configName: 'trian' });
    expect(error.exitCode).toBe(2);
    expect(error.problems[0]!.message).toContain("primary config 'trian.yaml' not found");
    expect(error.problems[0]!.suggestions).toEqual(['train']);
  });
});

describe('config group overrides from the command line', () => {
  it('changes (group=option), adds (+group=option) and removes (~group) selections', () => {
    const conf = project();
    const changed = composeConfig({ searchPath: [conf], overrides: ['task=text/gpt', 'dataset=mnist'] });
    expect(changed.config.task).toEqual({ name: 'gpt', layers: 12 });
    expect(changed.choices).toMatchObject({ task: 'text/gpt', dataset: 'mnist' });

    const removed = composeConfig({ searchPath: [conf], overrides: ['~optimizer'] });
    expect(removed.config).not.toHaveProperty('optimizer');
    expect(removed.choices).not.toHaveProperty('optimizer');
    expect(composeConfig({ searchPath: [conf], overrides: ['~optimizer=adam'] }).config).not.toHaveProperty(
      'optimizer',
    );
    expect(composeError({ searchPath: [conf], overrides: ['~optimizer=sgd'] }).message).toContain(
      "removes group 'optimizer' only when 'sgd' is selected, but 'adam' is",
    );

    const nulled = composeConfig({ searchPath: [conf], overrides: ['optimizer=null'] });
    expect(nulled.choices.optimizer).toBeNull();
    expect(nulled.config).not.toHaveProperty('optimizer');
  });

  it('treats name=value / ~name as key overrides when the group is not in the defaults tree', () => {
    const conf = tree({
      'config.yaml': 'trainer:\n  steps: 3\nmode: train\n',
      'trainer/fast.yaml': 'steps: 1\n',
      'mode/eval.yaml': 'x: 1\n',
    });
    expect(composeConfig({ searchPath: [conf], overrides: ['~trainer', 'mode=eval'] }).config).toEqual({
      mode: 'eval',
    });
    expect(composeError({ searchPath: [conf], overrides: ['trainer=fast'] }).message).toContain(
      "[from command line] trainer=fast; fix: write '+trainer=fast' to add it",
    );
  });

  it('adds with ++group when absent and changes the selection when present', () => {
    const conf = project();
    expect(composeConfig({ searchPath: [conf], overrides: ['++experiment=fast'] }).choices.experiment).toBe('fast');
    expect(composeConfig({ searchPath: [conf], overrides: ['++optimizer=sgd'] }).choices.optimizer).toBe('sgd');
  });

  it('explains when group=option targets a group not in the defaults, or +group one already there', () => {
    const conf = project();
    expect(composeError({ searchPath: [conf], overrides: ['experiment=fast'] }).problems[0]).toMatchObject({
      message: "config group 'experiment' is not in the defaults list, so there is no selection to change",
      override: 'experiment=fast',
      fixes: ["write '+experiment=fast' to add it"],
    });
    // A did-you-mean comes first, as a fix of its own, before adding a group.
    const misspelt = composeError({ searchPath: [conf], overrides: ['optimzer=sgd'] }).message;
    expect(misspelt).toContain(
      "did you mean 'optimizer'? [from command line] optimzer=sgd; fix: write 'optimizer=sgd', or write '+optimzer=sgd' to add it",
    );
    expect(composeError({ searchPath: [conf], overrides: ['+optimizer=sgd'] }).problems[0]!.message).toMatch(
      /^'\+optimizer=sgd' adds config group 'optimizer', but it is already selected \('adam'\) by .*config\.yaml:4; write 'optimizer=<option>'/,
    );
  });

  it('suggests options for a misspelt option and groups for an unknown group, all at once', () => {
    const conf = tree({
      'config.yaml': 'defaults:\n  - optimizer: adamw\n  - tsk: igpt\n',
      'optimizer/adam.yaml': 'lr: 1\n',
      'optimizer/sgd.yaml': 'lr: 2\n',
      'task/vision/igpt.yaml': 'x: 1\n',
    });
    const error = composeError({ searchPath: [conf], overrides: ['task.x=1=', '+a=[1,'] });
    expect(error.problems).toEqual([
      expect.objectContaining({
        path: '',
        message: expect.stringContaining("cannot parse override 'task.x=1=' at column 9: '=' is not allowed"),
        source: 'command line',
      }),
      expect.objectContaining({
        path: '',
        message: expect.stringContaining("cannot parse override '+a=[1,' at column 7: unterminated list"),
        source: 'command line',
      }),
      expect.objectContaining({
        path: 'tsk',
        message: expect.stringContaining("there is no config group 'tsk'"),
        suggestions: ['task'],
      }),
      expect.objectContaining({
        path: 'optimizer',
        message: "config group 'optimizer' has no option 'adamw' (available: adam, sgd)",
        suggestions: ['adam'],
        source: expect.stringMatching(/config\.yaml:2$/),
      }),
    ]);
    const leafOnly = tree({ 'config.yaml': 'defaults:\n  - task: igpt\n', 'task/vision/igpt.yaml': 'x: 1\n' });
    expect(composeError({ searchPath: [leafOnly] }).problems[0]!.suggestions).toEqual(['vision/igpt']);

    // Hydra habit: the file name with its extension (s7).
    const withExtension = composeError({ searchPath: [project()], overrides: ['optimizer=sgd.yaml'] }).problems[0]!;
    expect(withExtension).toMatchObject({
      message:
        "config group 'optimizer' has no option 'sgd.yaml': options are named without their .yaml extension (available: adam, sgd)",
      suggestions: ['sgd'],
      fixes: ["write 'optimizer=sgd'"],
    });
  });
});

describe('value overrides', () => {
  it('sets, adds, force-adds and deletes keys with YAML-typed values, including --key=value', () => {
    const { config, sources } = composeConfig({
      searchPath: [project()],
      overrides: [
        'trainer.max_steps=10',
        '--trainer.precision=16',
        '+trainer.lr=3e-3',
        '+trainer.name="007"',
        "+trainer.flag='true'",
        '+trainer.on=true',
        '+trainer.none=null',
        '+trainer.list=[1,2,3]',
        '+trainer.map={a: 1, b: [x]}',
        '++trainer.max_steps=0.5',
        '++new.deep.key=hello world',
        '~dataset.size',
        '~seed=42',
        'optimizer.betas.1=0.99',
      ],
    });
    expect(config.trainer).toEqual({
      max_steps: 0.5,
      precision: 16,
      lr: 0.003,
      name: '007',
      flag: 'true',
      on: true,
      none: null,
      list: [1, 2, 3],
      map: { a: 1, b: ['x'] },
    });
    expect(config.new).toEqual({ deep: { key: 'hello world' } });
    expect(config.dataset).toEqual({ name: 'cifar10' });
    expect(config).not.toHaveProperty('seed');
    expect(config.optimizer).toEqual({ lr: 0.001, betas: [0.9, 0.99] });
    expect(sources.get('trainer.map.a')).toBe('command line');
    expect(sources.get('optimizer.betas')).toBe('command line');
    expect(sources.has('dataset.size')).toBe(false);
  });

  it('applies overrides in order, so a key given twice takes the last value, as Hydra does', () => {
    // Hydra keeps this on purpose: command-line overrides are ordered (facebookresearch/hydra#3283).
    const { config } = composeConfig({
      searchPath: [project()],
      overrides: ['trainer.max_steps=3', 'trainer.max_steps=5', '+trainer.lr=1', '++trainer.lr=2'],
    });
    expect(config.trainer).toMatchObject({ max_steps: 5, lr: 2 });
  });

  it('merges a mapping value into an existing mapping, as Hydra does', () => {
    const { config } = composeConfig({ searchPath: [project()], overrides: ['trainer={max_steps: 1}'] });
    expect(config.trainer).toEqual({ max_steps: 1, precision: 32 });
  });

  it('keeps __proto__ keys as data instead of touching prototypes', () => {
    const conf = tree({ 'config.yaml': '__proto__:\n  polluted: 1\n' });
    const { config } = composeConfig({ searchPath: [conf], overrides: ['++__proto__.x=2', '+a.__proto__.y=3'] });
    const own = (obj: object) => Object.getOwnPropertyDescriptor(obj, '__proto__')?.value;
    expect(own(config)).toEqual({ polluted: 1, x: 2 });
    expect(own(config.a as object)).toEqual({ y: 3 });
    expect(Object.getPrototypeOf(config)).toBe(Object.prototype);
    expect(
      ({} as Record<string, unknown>).polluted ??
        ({} as Record<string, unknown>).x ??
        ({} as Record<string, unknown>).y,
    ).toBeUndefined();
  });

  it('collects every bad value override with suggestions', () => {
    const error = composeError({
      searchPath: [project()],
      overrides: [
        'trainer.max_stpes=10',
        '+seed=1',
        '~trainer.precison',
        '~trainer.precision=16',
        '+seed.sub=1',
        'optimizr.lr=1',
      ],
    });
    expect(error.problems.map((p) => [p.path, p.suggestions ?? []])).toEqual([
      ['trainer.max_stpes', ['trainer.max_steps']],
      ['seed', []],
      ['trainer.precison', ['trainer.precision']],
      ['trainer.precision', []],
      ['seed.sub', []],
      ['optimizr.lr', ['optimizer.lr']],
    ]);
    expect(error.message).toContain("seed: key 'seed' already exists (value 42, from ");
    expect(error.message).toContain(
      "[from command line] +seed=1; fix: write 'seed=1' to replace it, or write '++seed=1' to add-or-replace",
    );
    expect(error.message).toContain(
      'trainer.precision: not deleted: the current value is 32, not 16 [from command line] ~trainer.precision=16',
    );
    expect(error.message).toContain("'seed' is a number, not a mapping");
    expect(error.message).toMatch(/^Invalid configuration \(6 problems\)/);
  });
});

describe('YAML errors and interpolation in composition', () => {
  it('names file, line and column of a syntax error', () => {
    const conf = tree({ 'config.yaml': 'defaults:\n  - model: bad\n', 'model/bad.yaml': 'a: 1\nb: [1, 2\nc: 3\n' });
    const [problem] = composeError({ searchPath: [conf] }).problems;
    expect(problem!.message).toMatch(/^YAML syntax error: /);
    expect(problem!.source).toBe(`${join(conf, 'model/bad.yaml')}:3:1`);
  });

  it('resolves interpolations after command-line overrides', () => {
    const conf = tree({ 'config.yaml': 'lr: 0.1\noptim:\n  lr: ${lr}\nname: run_${lr}\n' });
    const { config } = composeConfig({ searchPath: [conf], overrides: ['lr=0.5'] });
    expect(config).toEqual({ lr: 0.5, optim: { lr: 0.5 }, name: 'run_0.5' });
  });
});

describe("a file's settings for a config group follow the selected option (issue 10.6)", () => {
  const igptLike = () =>
    tree({
      'config.yaml': 'defaults:\n  - task: igpt\n  - _self_\n',
      'task/igpt.yaml':
        '# @package _global_\ndefaults:\n  - /scheduler: warmup_cosine\n  - _self_\ntask:\n  name: igpt\nscheduler:\n  warmup_steps: 500\n  min_lr_ratio: 0.0\n',
      'scheduler/warmup_cosine.yaml': '_target_: scheduler/warmup_cosine\nwarmup_steps: 100\nmin_lr_ratio: 0.1\n',
      'scheduler/warmup_linear.yaml': '_target_: scheduler/warmup_linear\nwarmup_steps: 100\nmin_lr_ratio: 0.1\n',
      'scheduler/constant.yaml': '_target_: scheduler/constant\nwarmup_steps: 0\n',
      'experiment/flat.yaml':
        '# @package _global_\ndefaults:\n  - override /scheduler: constant\nscheduler:\n  warmup_steps: 7\n',
    });

  it("keeps the task file's values without a swap, and no notes", () => {
    const { config, notes } = composeConfig({ searchPath: [igptLike()] });
    expect(config.scheduler).toEqual({ _target_: 'scheduler/warmup_cosine', warmup_steps: 500, min_lr_ratio: 0 });
    expect(notes).toEqual([]);
  });

  it('scheduler=constant keeps the keys constant has and drops min_lr_ratio with a note naming file, key and option', () => {
    const { config, notes, sources } = composeConfig({ searchPath: [igptLike()], overrides: ['scheduler=constant'] });
    expect(config.scheduler).toEqual({ _target_: 'scheduler/constant', warmup_steps: 500 });
    expect(sources.get('scheduler.warmup_steps')).toMatch(/task\/igpt\.yaml/);
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatch(
      /task\/igpt\.yaml sets scheduler\.min_lr_ratio for scheduler 'warmup_cosine', but 'constant' is selected \(command line\) and has no such key; the setting is dropped/,
    );
  });

  it('scheduler=warmup_linear takes every setting over, as both options have the keys', () => {
    const { config, notes } = composeConfig({ searchPath: [igptLike()], overrides: ['scheduler=warmup_linear'] });
    expect(config.scheduler).toEqual({ _target_: 'scheduler/warmup_linear', warmup_steps: 500, min_lr_ratio: 0 });
    expect(notes).toEqual([]);
  });

  it('~scheduler and scheduler=null remove everything under the group, leaving no half node', () => {
    for (const override of ['~scheduler', 'scheduler=null']) {
      const { config, notes } = composeConfig({ searchPath: [igptLike()], overrides: [override] });
      expect(config, override).toEqual({ task: { name: 'igpt' } });
      expect(notes, override).toEqual([]);
    }
  });

  it("an experiment's override entry swaps the option, and its own settings apply to the new option", () => {
    const { config, notes } = composeConfig({ searchPath: [igptLike()], overrides: ['+experiment=flat'] });
    expect(config.scheduler).toEqual({ _target_: 'scheduler/constant', warmup_steps: 7 });
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatch(/min_lr_ratio/);
  });

  it('command-line values still reach the new option, and a key it lacks stays an error for validation', () => {
    const { config } = composeConfig({
      searchPath: [igptLike()],
      overrides: ['scheduler=constant', 'scheduler.warmup_steps=3'],
    });
    expect(config.scheduler).toEqual({ _target_: 'scheduler/constant', warmup_steps: 3 });
  });
});
