import { createHash } from 'node:crypto';
import { mkdirSync, realpathSync, symlinkSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, TaskforgeError } from '../errors.js';
import { makeProject, pluginSource, type TempProject } from '../../tests/fixtures/plugin-project.js';
import { discoverPlugins, loadPlugins, sourceChangedSinceBuild } from './discovery.js';
import { ComponentRegistry } from './registry.js';
import { validateConfig } from './validate.js';

const projects: TempProject[] = [];
function project(): TempProject {
  const p = makeProject();
  projects.push(p);
  return p;
}
afterEach(() => {
  for (const p of projects.splice(0)) p.cleanup();
});

describe('discoverPlugins', () => {
  it('finds scoped, unscoped and workspace-linked plugins, sorted, with their conf dirs', () => {
    const p = project();
    p.addPackage('@fixture/plugin-a', {
      taskforge: { conf: 'conf' },
      index: pluginSource('@fixture/plugin-a', 'backbone', 'fixture-a'),
    });
    p.write('node_modules/@fixture/plugin-a/conf/backbone/fixture_a.yaml', '_target_: backbone/fixture-a\n');
    p.addPackage('zz-plain-plugin', { taskforge: {}, index: pluginSource('zz-plain-plugin', 'logger', 'plain') });
    p.addPackage('left-pad', { index: 'export default 1;\n' });
    // An npm workspace: the package lives in packages/ and node_modules holds a symlink to it.
    p.write(
      'packages/linked/package.json',
      JSON.stringify({ name: '@fixture/linked', version: '0.1.0', taskforge: { conf: 'conf' } }),
    );
    p.write('packages/linked/index.js', pluginSource('@fixture/linked', 'callback', 'linked'));
    symlinkSync('../../packages/linked', join(p.root, 'node_modules/@fixture/linked'));
    p.write('app/src/.keep', '');

    const result = discoverPlugins({ cwd: join(p.root, 'app/src') });
    const root = realpathSync(p.root);
    expect(result.plugins).toEqual([
      { packageName: '@fixture/linked', version: '0.1.0', dir: join(root, 'packages/linked') },
      {
        packageName: '@fixture/plugin-a',
        version: '1.2.3',
        dir: join(root, 'node_modules/@fixture/plugin-a'),
        confDir: join(root, 'node_modules/@fixture/plugin-a/conf'),
      },
      { packageName: 'zz-plain-plugin', version: '1.2.3', dir: join(root, 'node_modules/zz-plain-plugin') },
    ]);
    expect(result.searchPathDirs).toEqual([join(root, 'node_modules/@fixture/plugin-a/conf')]);
  });

  it('lets a nearer node_modules shadow a parent one, and dedupes by real path', () => {
    const p = project();
    p.addPackage('@fixture/plugin-a', { taskforge: {}, version: '1.0.0' });
    p.addPackage('@fixture/only-in-parent', { taskforge: {} });
    p.write('app/package.json', JSON.stringify({ name: 'app' }));
    mkdirSync(join(p.root, 'app/node_modules/@fixture'), { recursive: true });
    p.write(
      'app/node_modules/@fixture/plugin-a/package.json',
      JSON.stringify({ name: '@fixture/plugin-a', version: '2.0.0', taskforge: {} }),
    );
    // The same real package reachable under a second link must be loaded once, under its own name.
    symlinkSync('../../../node_modules/@fixture/only-in-parent', join(p.root, 'app/node_modules/@fixture/alias'));

    const { plugins } = discoverPlugins({ cwd: join(p.root, 'app') });
    expect(plugins.map((x) => `${x.packageName}@${x.version}`)).toEqual([
      '@fixture/only-in-parent@1.2.3',
      '@fixture/plugin-a@2.0.0',
    ]);
    expect(plugins[0]!.dir).toBe(join(p.root, 'node_modules/@fixture/only-in-parent'));
  });

  it('finds the workspace packages of this monorepo, core once, by its real directory', () => {
    const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));
    const { plugins } = discoverPlugins({ projectRoot: repoRoot });
    const core = plugins.filter((x) => x.packageName === '@taskforge/core');
    expect(core).toEqual([expect.objectContaining({ dir: realpathSync(join(repoRoot, 'packages/core')) })]);
    expect(plugins.map((x) => x.packageName)).toEqual([...plugins.map((x) => x.packageName)].sort());
  });

  it('skips an unbuilt workspace plugin (and its conf dir) with a message naming the build command', () => {
    const p = project();
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
    p.write('packages/unbuilt/conf/task/x.yaml', '_target_: task/x\n');
    mkdirSync(join(p.root, 'node_modules/@fixture'), { recursive: true });
    symlinkSync('../../packages/unbuilt', join(p.root, 'node_modules/@fixture/unbuilt'));
    p.addPackage('@fixture/plugin-a', {
      taskforge: {},
      index: pluginSource('@fixture/plugin-a', 'backbone', 'fixture-a'),
    });

    const result = discoverPlugins({ projectRoot: p.root });
    expect(result.plugins.map((x) => x.packageName)).toEqual(['@fixture/plugin-a']);
    expect(result.searchPathDirs).toEqual([]);
    expect(result.skipped).toEqual([
      expect.objectContaining({
        packageName: '@fixture/unbuilt',
        buildCommand: 'npx nx build unbuilt',
        entry: join(p.root, 'packages/unbuilt/dist/index.js'),
      }),
    ]);
    expect(result.skipped[0]!.message).toBe(
      'Skipping plugin @fixture/unbuilt: it is not built ' +
        '(packages/unbuilt/dist/index.js is missing); its components and configs ' +
        'are unavailable until you run `npx nx build unbuilt` (or `npx nx run-many -t build`).',
    );

    // Once built, it is loaded like any other.
    p.write('packages/unbuilt/dist/index.js', pluginSource('@fixture/unbuilt', 'task', 'x'));
    const built = discoverPlugins({ projectRoot: p.root });
    expect(built.plugins.map((x) => x.packageName)).toEqual(['@fixture/plugin-a', '@fixture/unbuilt']);
    expect(built.skipped).toEqual([]);
  });

  it('warns when a workspace plugin runs from a build older than its source, naming the file and the build command', () => {
    const p = project();
    p.write(
      'packages/edited/package.json',
      JSON.stringify({
        name: '@fixture/edited',
        version: '0.1.0',
        main: './dist/index.js',
        taskforge: {},
        nx: { name: 'edited' },
      }),
    );
    p.write('packages/edited/dist/index.js', pluginSource('@fixture/edited', 'task', 'e'));
    p.write('packages/edited/src/index.ts', '// source\n');
    p.write('packages/edited/src/task.spec.ts', '// a test: never part of the build\n');
    mkdirSync(join(p.root, 'node_modules/@fixture'), { recursive: true });
    symlinkSync('../../packages/edited', join(p.root, 'node_modules/@fixture/edited'));
    const at = (path: string, seconds: number) => utimesSync(join(p.root, path), seconds, seconds);
    at('packages/edited/dist/index.js', 1000);
    at('packages/edited/src/index.ts', 900);
    at('packages/edited/src/task.spec.ts', 2000);
    expect(discoverPlugins({ projectRoot: p.root }).stale).toEqual([]);
    at('packages/edited/src/index.ts', 1100);
    const result = discoverPlugins({ projectRoot: p.root });
    expect(result.plugins.map((x) => x.packageName)).toEqual(['@fixture/edited']);
    expect(result.stale).toEqual([
      'Plugin @fixture/edited runs from its build in packages/edited/dist, but packages/edited/src/index.ts ' +
        'changed after it, so this command runs the old code; run `npx nx build edited` first (its nx targets, ' +
        'such as train, build it themselves).',
    ]);

    // A build's tsbuildinfo records each source's hash: a file touched (or checked out) with the
    // text it was built from is no change, since its rebuild (an nx cache hit) rewrites nothing.
    const sha = (text: string) => createHash('sha256').update(text).digest('hex');
    p.write(
      'packages/edited/dist/tsconfig.lib.tsbuildinfo',
      JSON.stringify({ fileNames: ['../src/index.ts'], fileInfos: [{ version: sha('// source\n') }] }),
    );
    at('packages/edited/dist/index.js', 1000);
    at('packages/edited/src/index.ts', 1100);
    expect(discoverPlugins({ projectRoot: p.root }).stale).toEqual([]);
    p.write('packages/edited/src/index.ts', '// edited\n');
    at('packages/edited/src/index.ts', 1200);
    expect(discoverPlugins({ projectRoot: p.root }).stale).toHaveLength(1);
  });

  it('sourceChangedSinceBuild (what `npm run bench` checks): relative or absolute dirs, hashes before mtimes', () => {
    const p = project();
    const sha = (text: string) => createHash('sha256').update(text).digest('hex');
    p.write('pkg/dist/index.js', '// built\n');
    p.write('pkg/src/index.ts', '// source\n');
    p.write(
      'pkg/dist/tsconfig.lib.tsbuildinfo',
      JSON.stringify({ fileNames: ['../src/index.ts'], fileInfos: [sha('// source\n')] }),
    );
    const at = (path: string, seconds: number) => utimesSync(join(p.root, path), seconds, seconds);
    at('pkg/dist/index.js', 1000);
    at('pkg/src/index.ts', 1100); // touched, text as built
    const cwd = process.cwd();
    try {
      process.chdir(p.root);
      expect(sourceChangedSinceBuild('pkg/src', 'pkg/dist')).toBeUndefined();
      p.write('pkg/src/index.ts', '// edited\n');
      at('pkg/src/index.ts', 1100);
      expect(sourceChangedSinceBuild('pkg/src', 'pkg/dist')).toBe(join(realpathSync(p.root), 'pkg/src/index.ts'));
      expect(sourceChangedSinceBuild(join(p.root, 'pkg/src'), join(p.root, 'pkg/dist'))).toBe(
        join(p.root, 'pkg/src/index.ts'),
      );
    } finally {
      process.chdir(cwd);
    }
  });

  it('does not skip an installed (not workspace) package whose entry is missing: a broken install', async () => {
    const p = project();
    p.addPackage('@fixture/no-entry', { taskforge: {} }); // package.json only
    const result = discoverPlugins({ projectRoot: p.root });
    expect(result.skipped).toEqual([]);
    await expect(loadPlugins(result, new ComponentRegistry())).rejects.toThrow(
      /Could not load plugin package '@fixture\/no-entry'/,
    );
  });

  it('adds explicitly listed packages, and rejects missing ones and paths', () => {
    const p = project();
    p.addPackage('no-field-plugin', { index: pluginSource('no-field-plugin', 'callback', 'noop') });
    expect(
      discoverPlugins({ projectRoot: p.root, extra: ['no-field-plugin'] }).plugins.map((x) => x.packageName),
    ).toEqual(['no-field-plugin']);

    const missing = () => discoverPlugins({ projectRoot: p.root, extra: ['@fixture/not-installed'] });
    expect(missing).toThrow(ConfigError);
    expect(missing).toThrow('install it with `npm install @fixture/not-installed`');
    expect(() => discoverPlugins({ projectRoot: p.root, extra: ['../../evil'] })).toThrow('not paths or URLs');
  });

  it('rejects a malformed "taskforge" field, naming the package', () => {
    const p = project();
    p.addPackage('@fixture/bad-conf', { taskforge: { conf: '../../outside' } });
    expect(() => discoverPlugins({ projectRoot: p.root })).toThrow(
      /'@fixture\/bad-conf'.*"taskforge.conf": "..\/..\/outside"/,
    );
  });
});

describe('loadPlugins', () => {
  it('imports plugins and registers their components under their package name', async () => {
    const p = project();
    p.addPackage('@fixture/plugin-a', {
      taskforge: { conf: 'conf' },
      index: pluginSource('@fixture/plugin-a', 'backbone', 'fixture-a'),
    });
    p.addPackage('zz-plain-plugin', { taskforge: {}, index: pluginSource('zz-plain-plugin', 'logger', 'plain') });
    const registry = new ComponentRegistry();
    await loadPlugins(discoverPlugins({ projectRoot: p.root }), registry);

    expect(registry.list().map((e) => [e.target, e.packageName])).toEqual([
      ['backbone/fixture-a', '@fixture/plugin-a'],
      ['logger/plain', 'zz-plain-plugin'],
    ]);
    expect(validateConfig({ backbone: { _target_: 'backbone/fixture-a' } }, registry)).toEqual({
      backbone: { _target_: 'backbone/fixture-a', width: 8 },
    });
  });

  it('explains what a package with the field but no plugin export must export', async () => {
    const p = project();
    p.addPackage('@fixture/bad-export', {
      taskforge: {},
      index: 'export const helper = 1;\nexport const plugin = { name: "x" };\n',
    });
    const load = loadPlugins(discoverPlugins({ projectRoot: p.root }), new ComponentRegistry());
    await expect(load).rejects.toThrow(TaskforgeError);
    await expect(load).rejects.toThrow(
      new RegExp(
        "'@fixture/bad-export'.*must export `plugin` \\(or a default export\\) of type TaskforgePlugin.*" +
          "It exports 'helper', 'plugin' instead \\('plugin' lacks",
        's',
      ),
    );
  });

  it('accepts a default export, and refuses a plugin that names another package', async () => {
    const p = project();
    p.addPackage('default-export', {
      taskforge: {},
      index: pluginSource('default-export', 'callback', 'noop').replace('export const plugin =', 'export default'),
    });
    p.addPackage('wrong-name', { taskforge: {}, index: pluginSource('other-name', 'callback', 'other') });
    const [good, bad] = discoverPlugins({ projectRoot: p.root }).plugins;
    const registry = new ComponentRegistry();
    await loadPlugins([good!], registry);
    expect(registry.entry('callback/noop')?.packageName).toBe('default-export');
    await expect(loadPlugins([bad!], registry)).rejects.toThrow(
      "exports a plugin whose packageName is 'other-name'; set it to 'wrong-name'",
    );
  });

  it('imports the discovered copy when the same name resolves to another package from core', async () => {
    const p = project();
    // The workspace has the real 'yaml' package; this project's plugin happens to share the name.
    p.addPackage('yaml', { taskforge: {}, index: pluginSource('yaml', 'callback', 'yaml-fixture') });
    const registry = new ComponentRegistry();
    await loadPlugins(discoverPlugins({ projectRoot: p.root }), registry);
    expect(registry.entry('callback/yaml-fixture')?.packageName).toBe('yaml');
  });

  it("loads core's own plugin by name, as the same module instance the rest of core uses", async () => {
    const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));
    const core = discoverPlugins({ projectRoot: repoRoot }).plugins.filter((x) => x.packageName === '@taskforge/core');
    const registry = new ComponentRegistry();
    await loadPlugins(core, registry);
    const { plugin } = await import('../index.js');
    registry.registerPlugin(plugin); // a second identity would throw here
    expect(registry.list().every((e) => e.packageName === '@taskforge/core')).toBe(true);
    expect(registry.list('optimizer').length).toBeGreaterThan(0);
  });

  it('reports a plugin whose entry point fails to load', async () => {
    const p = project();
    p.addPackage('broken-plugin', { taskforge: {}, index: 'import "./missing.js";\n' });
    await expect(loadPlugins(discoverPlugins({ projectRoot: p.root }), new ComponentRegistry())).rejects.toThrow(
      /Could not load plugin package 'broken-plugin' \(.*index\.js\)/,
    );
  });
});
