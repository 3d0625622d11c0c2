import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { sgd, toyBackbone } from '../../tests/fixtures/components.js';
import { makeProject, pluginSource, type TempProject } from '../../tests/fixtures/plugin-project.js';
import type { DataModule, Task } from '../contracts.js';
import { ConfigError } from '../errors.js';
import type { ComponentRegistry } from '../registry/registry.js';
import type { ComponentSpec, RunConfigDraft } from '../registry/types.js';
import { Tokens, type Output } from '../services/tokens.js';
import { createContainer } from './container.js';
import { Session } from './session.js';

let project: string;
beforeAll(() => {
  project = mkdtempSync(join(tmpdir(), 'taskforge-session-'));
  writeFileSync(join(project, 'package.json'), '{ "name": "session-spec", "private": true }\n');
  mkdirSync(join(project, 'conf'));
  writeFileSync(
    join(project, 'conf', 'config.yaml'),
    [
      'task: { _target_: task/derives, depth_from: elsewhere }',
      'dataset: { _target_: datamodule/none }',
      'backbone: { _target_: backbone/toy, n_layer: 2, activation: gelu }',
      'optimizer: { _target_: optimizer/sgd, lr: 0.1 }',
      'trainer: {}',
      '',
    ].join('\n'),
  );
});
afterAll(() => rmSync(project, { recursive: true, force: true }));

const drafts: RunConfigDraft[] = [];

/** A task that derives the backbone depth from "elsewhere", unless the command line sets it. */
const derivingTask: ComponentSpec<'task'> = {
  kind: 'task',
  name: 'derives',
  description: 'sets backbone.n_layer from its depth_from key',
  schema: z.strictObject({ depth_from: z.string() }),
  create: () => ({}) as Task,
  adjustRunConfig(draft) {
    drafts.push(draft);
    if (draft.fromCommandLine('backbone.n_layer')) return ['kept the command line'];
    draft.set('backbone.n_layer', 5, `the ${String(draft.node['depth_from'])} file`);
    return [`took backbone.n_layer=5 (activation from ${draft.sourceOf('backbone.activation')})`];
  },
};
const noData: ComponentSpec<'datamodule'> = {
  kind: 'datamodule',
  name: 'none',
  description: 'no data',
  schema: z.strictObject({}),
  create: () => ({}) as DataModule,
};

async function open(): Promise<{ session: Session; lines: string[] }> {
  const lines: string[] = [];
  const output: Output = {
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    progress: () => ({ update() {}, setTotal() {}, stop() {} }),
  };
  const session = await Session.open({ cwd: project, container: createContainer({ output }) });
  const registry = session.container.resolve<ComponentRegistry>(Tokens.Registry);
  for (const spec of [derivingTask, noData, toyBackbone, sgd]) registry.register(spec);
  return { session, lines };
}

describe("Session.compose: components' adjustRunConfig", () => {
  it('lets the task set backbone keys before validation, records the source and prints its note', async () => {
    const { session, lines } = await open();
    drafts.length = 0;
    const { config, sources } = session.compose([]);
    expect((config.backbone as Record<string, unknown>)['n_layer']).toBe(5);
    expect(sources.get('backbone.n_layer')).toBe('the elsewhere file');
    expect(lines).toEqual([`info took backbone.n_layer=5 (activation from ${join(project, 'conf', 'config.yaml')})`]);
    expect(drafts.map((d) => d.section)).toEqual(['task']);
    expect(drafts[0]!.node).toMatchObject({ _target_: 'task/derives', depth_from: 'elsewhere' });
  });

  it('tells the hook which keys the command line set, and the hook keeps them', async () => {
    const { session, lines } = await open();
    const { config, sources } = session.compose(['backbone.n_layer=3']);
    expect((config.backbone as Record<string, unknown>)['n_layer']).toBe(3);
    expect(sources.get('backbone.n_layer')).toBe('command line');
    expect(lines).toEqual(['info kept the command line']);
    // A whole node given on the command line counts for the keys under it.
    expect(session.compose(['backbone={_target_: backbone/toy, n_layer: 4}']).config.backbone).toMatchObject({
      n_layer: 4,
    });
  });

  it('with adjust: false (evaluating a checkpoint with its saved config) the config is used as composed', async () => {
    const { session, lines } = await open();
    drafts.length = 0;
    const { config } = session.compose([], { adjust: false });
    expect((config.backbone as Record<string, unknown>)['n_layer']).toBe(2);
    expect(drafts).toEqual([]);
    expect(lines).toEqual([]);
  });

  it('a task with no optimizer names the optimizer options to pick from', async () => {
    mkdirSync(join(project, 'conf', 'optimizer'), { recursive: true });
    for (const name of ['sgd', 'adam'])
      writeFileSync(join(project, 'conf', 'optimizer', `${name}.yaml`), `_target_: optimizer/${name}\n`);
    try {
      const { session } = await open();
      expect(() => session.compose(['~optimizer'])).toThrow(
        /optimizer: no optimizer is configured; select one on the command line: optimizer=adam, optimizer=sgd$/m,
      );
    } finally {
      rmSync(join(project, 'conf', 'optimizer'), { recursive: true, force: true });
    }
  });

  it('validates what the hook set, like any other value', async () => {
    const { session } = await open();
    expect(() => session.compose(['task.depth_from=3'])).toThrow(/task\.depth_from: expected a string/);
  });
});

describe("Session.compose: another library's name for a key (ComponentSpec.keyAliases)", () => {
  it("names the component's own key and the override that sets it, in place of a guess", async () => {
    const { session } = await open();
    const registry = session.container.resolve<ComponentRegistry>(Tokens.Registry);
    registry.register({ ...sgd, name: 'aliased', keyAliases: { learning_rate: 'lr', mom: 'not_a_key' } });
    const problems = (overrides: string[]) => {
      try {
        session.compose(['optimizer={_target_: optimizer/aliased, lr: 0.1}', ...overrides]);
      } catch (error) {
        if (error instanceof ConfigError) return error.problems;
        throw error;
      }
      throw new Error('composed');
    };
    const [aliased] = problems(['optimizer.learning_rate=0.5']);
    expect(aliased).toMatchObject({
      path: 'optimizer.learning_rate',
      message: "optimizer/aliased has no 'learning_rate': that is another library's name for its 'lr'",
      suggestions: ['optimizer.lr'],
      fixes: ["write 'optimizer.lr=0.5'"],
    });
    // Added with ++ (or written in a config file), the schema refuses it the same way.
    expect(problems(['++optimizer.learning_rate=0.5'])).toMatchObject([
      { ...aliased, override: '++optimizer.learning_rate=0.5', message: aliased!.message },
    ]);
    // An alias of a key the component lacks is not offered.
    const [unmapped] = problems(['optimizer.mom=0.9']);
    expect(unmapped!.message).toMatch(/^'optimizer\.mom' is neither a key in the config nor a config group/);
  });
});

describe("Session.open: the config's `plugins` list", () => {
  let p: TempProject;
  beforeEach(() => {
    p = makeProject();
    // No "taskforge" field: only loaded when the config lists it.
    p.addPackage('listed-plugin', { index: pluginSource('listed-plugin', 'backbone', 'listed') });
  });
  afterEach(() => p.cleanup());

  const openIn = (overrides: string[] = []) => Session.open({ cwd: p.root, overrides });
  const config = (lines: string[]) => p.write('conf/config.yaml', [...lines, ''].join('\n'));

  it('warns about an unbuilt workspace plugin, except with discoveryWarnings: false (a ddp worker)', async () => {
    config(['trainer: {}']);
    p.write(
      'packages/unbuilt/package.json',
      JSON.stringify({ name: '@fixture/unbuilt', main: './dist/index.js', taskforge: {} }),
    );
    mkdirSync(join(p.root, 'node_modules/@fixture'), { recursive: true });
    symlinkSync('../../packages/unbuilt', join(p.root, 'node_modules/@fixture/unbuilt'));
    const warnings = async (discoveryWarnings?: boolean) => {
      const lines: string[] = [];
      const output: Output = {
        info: () => {},
        warn: (m) => lines.push(m),
        progress: () => ({ update() {}, setTotal() {}, stop() {} }),
      };
      await Session.open({
        cwd: p.root,
        container: createContainer({ output }),
        ...(discoveryWarnings === undefined ? {} : { discoveryWarnings }),
      });
      return lines;
    };
    expect(await warnings()).toEqual([expect.stringContaining('Skipping plugin @fixture/unbuilt: it is not built')]);
    expect(await warnings(false)).toEqual([]);
  });

  it('loads the packages the primary config file lists, and only those', async () => {
    config(['trainer: {}']);
    expect((await openIn()).registry.has('backbone/listed')).toBe(false);
    config(['trainer: {}', 'plugins: [listed-plugin]']);
    const session = await openIn();
    expect(session.registry.has('backbone/listed')).toBe(true);
    expect(session.plugins.map((x) => x.packageName)).toEqual(['listed-plugin']);
    expect(session.compose([]).config.plugins).toEqual(['listed-plugin']);
  });

  it('takes plugins=[…] / +plugins=[…] from the command line over the file, and ~plugins empties the list', async () => {
    config(['trainer: {}']);
    const added = await openIn(['trainer.max_steps=3', '+plugins=[listed-plugin]']);
    expect(added.registry.has('backbone/listed')).toBe(true);
    expect(added.compose(['+plugins=[listed-plugin]']).config.plugins).toEqual(['listed-plugin']);

    config(['trainer: {}', 'plugins: []']);
    expect((await openIn(['plugins=[listed-plugin]'])).registry.has('backbone/listed')).toBe(true);

    config(['trainer: {}', 'plugins: [listed-plugin]']);
    expect((await openIn(['~plugins'])).registry.has('backbone/listed')).toBe(false);
  });

  it('refuses a listed package that is not installed: exit 2, naming it, where it was listed and the fix', async () => {
    config(['trainer: {}', 'plugins: [listed-plugin, not-installed]']);
    const fromFile = await openIn().catch((e: unknown) => e);
    expect(fromFile).toBeInstanceOf(ConfigError);
    expect((fromFile as ConfigError).exitCode).toBe(2);
    expect((fromFile as ConfigError).message).toContain("package 'not-installed' is not installed");
    expect((fromFile as ConfigError).message).toContain('`npm install not-installed`');
    expect((fromFile as ConfigError).message).toContain(`[from ${join(p.root, 'conf', 'config.yaml')}]`);

    config(['trainer: {}']);
    await expect(openIn(['+plugins=[@scope/missing]'])).rejects.toThrow(
      /package '@scope\/missing' is not installed.*`npm install @scope\/missing`.*\[from command line\]/,
    );
  });

  it('refuses a plugins value that is not a list of names, naming the file or override', async () => {
    config(['trainer: {}', 'plugins: listed-plugin']);
    await expect(openIn()).rejects.toThrow(/plugins: must be a list of npm package names; write 'plugins: \[/);
    config(['trainer: {}']);
    await expect(openIn(['+plugins=listed-plugin'])).rejects.toThrow(
      /plugins: must be a list of npm package names; write 'plugins=\[my-taskforge-plugin\]'.*\[from command line\]/,
    );
  });
});

describe('Session.compose: a config option from a plugin skipped as not built', () => {
  let p: TempProject;
  beforeEach(() => {
    p = makeProject();
    // A workspace package npm linked, with its conf but no dist/: discovery skips it.
    p.write(
      'packages/unbuilt/package.json',
      JSON.stringify({
        name: '@fixture/unbuilt',
        version: '0.1.0',
        main: './dist/index.js',
        taskforge: { conf: 'conf' },
        nx: { name: 'unbuilt' },
      }),
    );
    p.write('packages/unbuilt/conf/task/vision/igpt.yaml', '_target_: task/vision/igpt\n');
    p.write('packages/unbuilt/conf/callbacks/x.yaml', '{}\n');
    mkdirSync(join(p.root, 'node_modules/@fixture'), { recursive: true });
    symlinkSync('../../packages/unbuilt', join(p.root, 'node_modules/@fixture/unbuilt'));
    p.write('conf/task/other.yaml', '_target_: task/other\n');
  });
  afterEach(() => p.cleanup());

  const composeError = async (lines: string[], overrides: string[] = []) => {
    p.write('conf/config.yaml', [...lines, ''].join('\n'));
    const session = await Session.open({ cwd: p.root, container: createContainer({ output: quiet() }) });
    expect(session.skipped.map((s) => s.packageName)).toEqual(['@fixture/unbuilt']);
    try {
      session.compose(overrides);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as ConfigError).message;
    }
    throw new Error('compose did not fail');
  };

  it('names the skipped plugin that provides a missing option and its build command', async () => {
    const message = await composeError(['defaults:', '  - task: vision/igpt', '  - _self_', 'trainer: {}']);
    expect(message).toContain("config group 'task' has no option 'vision/igpt' (available: other)");
    expect(message).toContain(
      "'task/vision/igpt' is in @fixture/unbuilt, skipped because it is not built " +
        '(see the "Skipping plugin" warning above)',
    );
    expect(message).toContain('fix: run `npx nx build unbuilt`');
  });

  it('a misspelt override of an unbuilt default reports the typo only, not the default it replaces (s5: finding 3)', async () => {
    const message = await composeError(
      ['defaults:', '  - task: vision/igpt', '  - _self_', 'trainer: {}'],
      ['task=othr'],
    );
    expect(message).toContain("config group 'task' has no option 'othr'");
    expect(message).toContain("did you mean 'other'");
    expect(message).not.toContain('vision/igpt');
  });

  it('lists the skipped plugins when none of them provides the option', async () => {
    const message = await composeError(['defaults:', '  - task: other', '  - _self_', 'trainer: {}'], ['task=nope']);
    expect(message).toContain("config group 'task' has no option 'nope'");
    expect(message).toContain(
      "1 plugin was skipped because not built (@fixture/unbuilt); if 'task/nope' comes from one of them, build it",
    );
    expect(message).toContain('run `npx nx run-many -t build`');
    expect(message).not.toContain('npx nx build unbuilt');
  });
});

function quiet(): Output {
  return { info: () => {}, warn: () => {}, progress: () => ({ update() {}, setTotal() {}, stop() {} }) };
}
