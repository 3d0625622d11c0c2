import { logger, readJson, type Tree } from '@nx/devkit';
import { createTreeWithEmptyWorkspace } from '@nx/devkit/testing';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parse } from 'yaml';
import { taskGenerator } from './generator.js';
import { TaskGeneratorError } from './normalize.js';

/** A workspace shaped like taskforge's: core, a gpt2 backbone package, and the iGPT task package. */
function workspace(): Tree {
  const tree = createTreeWithEmptyWorkspace();
  tree.write(
    'package.json',
    JSON.stringify({ name: '@taskforge/source', private: true, workspaces: ['packages/*', 'tools/*'] }),
  );
  tree.write(
    'tsconfig.json',
    JSON.stringify({ extends: './tsconfig.base.json', files: [], references: [{ path: './packages/core' }] }),
  );
  const pkg = (root: string, json: Record<string, unknown>) => tree.write(`${root}/package.json`, JSON.stringify(json));
  pkg('packages/core', {
    name: '@taskforge/core',
    version: '0.3.0',
    taskforge: { conf: 'conf' },
    dependencies: { '@tensorflow/tfjs': '4.22.0', zod: '^4.1.0' },
  });
  tree.write('packages/core/conf/optimizer/adam.yaml', '_target_: optimizer/adam\n');
  pkg('packages/backbone-gpt2', { name: '@taskforge/backbone-gpt2', version: '0.2.0', taskforge: { conf: 'conf' } });
  tree.write('packages/backbone-gpt2/conf/backbone/gpt2.yaml', '# GPT-2\n_target_: backbone/gpt2\nembed_dim: 16\n');
  pkg('packages/task-igpt', { name: '@taskforge/task-igpt', version: '0.1.0', taskforge: { conf: 'conf' } });
  tree.write(
    'packages/task-igpt/conf/task/vision/igpt.yaml',
    '# @package _global_\ntask:\n  _target_: task/vision/igpt\n',
  );
  tree.write('packages/task-igpt/src/index.ts', "export const spec = { kind: 'task', name: 'vision/igpt' };\n");
  return tree;
}

const text = (tree: Tree, path: string) => tree.read(path, 'utf-8') ?? '';

let tree: Tree;
beforeEach(() => {
  tree = workspace();
});
afterEach(() => vi.restoreAllMocks());

/** Every file in the tree with its content: a refusal must leave this exactly as it was. */
function contents(t: Tree): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (dir: string) => {
    for (const child of t.children(dir)) {
      const path = dir ? `${dir}/${child}` : child;
      if (t.isFile(path)) files.set(path, t.read(path, 'utf-8') ?? '');
      else walk(path);
    }
  };
  walk('');
  return files;
}

/** The generator throws a TaskGeneratorError matching `message`, and no file was added, removed or changed. */
async function refused(options: Parameters<typeof taskGenerator>[1], message: RegExp): Promise<void> {
  const before = contents(tree);
  const error = await taskGenerator(tree, options).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'the generator did not refuse').toBeInstanceOf(TaskGeneratorError);
  expect((error as Error).message).toMatch(message);
  expect(contents(tree)).toEqual(before); // refused before any write, by content
}

describe('task generator: default backbone (gpt2, reused by name)', () => {
  beforeEach(async () => {
    await taskGenerator(tree, { name: 'seq-cls', skipInstall: true });
  });

  it('writes the package files, templates fully rendered', () => {
    const files = tree
      .listChanges()
      .filter((c) => c.path.startsWith('packages/task-seq-cls/'))
      .map((c) => c.path.slice('packages/task-seq-cls/'.length));
    expect(files.sort()).toEqual([
      'README.md',
      'conf/dataset/seq-cls_synthetic.yaml',
      'conf/task/seq-cls.yaml',
      'eslint.config.mjs',
      'package.json',
      'src/backbone-api.ts',
      'src/data.ts',
      'src/index.ts',
      'src/task.ts',
      'tests/data.spec.ts',
      'tests/fixtures.ts',
      'tests/task.spec.ts',
      'tsconfig.json',
      'tsconfig.lib.json',
      'tsconfig.spec.json',
      'vitest.config.ts',
    ]);
    for (const file of files) {
      expect(text(tree, `packages/task-seq-cls/${file}`), file).not.toMatch(/<%|%>|__name__/);
    }
  });

  it('writes a publish-ready package.json with the taskforge field, the nx name and a train target', () => {
    const pkg = readJson(tree, 'packages/task-seq-cls/package.json');
    expect(pkg).toMatchObject({
      name: '@taskforge/task-seq-cls',
      version: '0.1.0',
      license: 'MIT',
      type: 'module',
      files: ['dist', '!dist/**/*.tsbuildinfo', 'README.md', 'conf'],
      taskforge: { conf: 'conf' },
      peerDependencies: { '@taskforge/core': '^0.3.0' },
      dependencies: { '@taskforge/backbone-gpt2': '^0.2.0', '@tensorflow/tfjs': '4.22.0', zod: '^4.1.0' },
      nx: {
        name: 'task-seq-cls',
        targets: {
          train: {
            command: 'node packages/cli/dist/bin.js train task=seq-cls',
            options: { cwd: '{workspaceRoot}' },
            dependsOn: ['build', '^build', { projects: ['cli'], target: 'build' }],
          },
        },
      },
    });
    expect(pkg.exports['.']['@taskforge/source']).toBe('./src/index.ts');
    expect(readJson(tree, 'packages/task-seq-cls/tsconfig.lib.json').references).toEqual([
      { path: '../core/tsconfig.lib.json' },
      { path: '../backbone-gpt2/tsconfig.lib.json' },
    ]);
    expect(readJson(tree, 'tsconfig.json').references).toContainEqual({ path: './packages/task-seq-cls' });
  });

  it('composes a whole run in conf/task/<name>.yaml and names the components consistently', () => {
    const conf = parse(text(tree, 'packages/task-seq-cls/conf/task/seq-cls.yaml'));
    expect(text(tree, 'packages/task-seq-cls/conf/task/seq-cls.yaml').startsWith('# @package _global_\n')).toBe(true);
    expect(conf.defaults).toEqual([
      { '/dataset': 'seq-cls_synthetic' },
      { '/backbone': 'gpt2' },
      { '/optimizer': 'adam' },
      { '/scheduler': 'warmup_cosine' },
      '_self_',
    ]);
    expect(conf.task).toEqual({ _target_: 'task/seq-cls', label_smoothing: 0, init_seed: '${trainer.seed}' });
    const task = text(tree, 'packages/task-seq-cls/src/task.ts');
    expect(task).toContain('mixSeed(config.init_seed, 1)');
    expect(task).not.toContain('mixSeed(0,');
    expect(parse(text(tree, 'packages/task-seq-cls/conf/dataset/seq-cls_synthetic.yaml'))._target_).toBe(
      'datamodule/seq-cls_synthetic',
    );
    const index = text(tree, 'packages/task-seq-cls/src/index.ts');
    expect(index).toContain("name: 'seq-cls',");
    expect(index).toContain("packageName: '@taskforge/task-seq-cls'");
    expect(index).not.toContain('backbone.js');
    expect(text(tree, 'packages/task-seq-cls/src/backbone-api.ts')).toContain(
      'export interface SeqClsBackbone extends Backbone',
    );
    expect(text(tree, 'packages/task-seq-cls/tests/fixtures.ts')).toContain(
      "import { plugin as backbonePlugin } from '@taskforge/backbone-gpt2';",
    );
  });
});

describe('task generator: --backbone=new', () => {
  it('scaffolds a backbone component in the package, registered and configured', async () => {
    await taskGenerator(tree, { name: 'enc', backbone: 'new', skipInstall: true });
    const root = 'packages/task-enc';
    expect(tree.exists(`${root}/src/backbone.ts`)).toBe(true);
    expect(tree.exists(`${root}/tests/backbone.spec.ts`)).toBe(true);
    expect(parse(text(tree, `${root}/conf/backbone/enc_encoder.yaml`))).toMatchObject({
      _target_: 'backbone/enc_encoder',
      embed_dim: 32,
    });
    expect(parse(text(tree, `${root}/conf/task/enc.yaml`)).defaults[1]).toEqual({ '/backbone': 'enc_encoder' });
    expect(text(tree, `${root}/src/index.ts`)).toContain('registry.register(encEncoderSpec);');
    expect(text(tree, `${root}/src/backbone.ts`)).toContain("name: 'enc_encoder',");
    const pkg = readJson(tree, `${root}/package.json`);
    expect(pkg.dependencies['@taskforge/backbone-gpt2']).toBeUndefined();
    expect(readJson(tree, `${root}/tsconfig.lib.json`).references).toEqual([{ path: '../core/tsconfig.lib.json' }]);
    expect(text(tree, `${root}/tests/fixtures.ts`)).not.toContain('backbonePlugin');
  });
});

describe('task generator: seeds', () => {
  it('seeds every initializer and dropout through mixSeed, never raw arithmetic that can be 0', async () => {
    // TF.js takes a seed of 0 as "unseeded" for normal draws, so `init_seed * 101 + i` with the
    // default init_seed 0 makes the first variable differ on every run; mixSeed never returns 0.
    await taskGenerator(tree, { name: 'enc', backbone: 'new', skipInstall: true });
    const files = [...contents(tree)].filter(([path]) => path.startsWith('packages/task-enc/src/'));
    expect(files.length).toBeGreaterThan(0);
    const seeded = /\b(?:seed|init_seed|options\.seed|ctx\.seed)\s*[*+]/;
    for (const [path, body] of files) expect(body, path).not.toMatch(seeded);
    const backbone = text(tree, 'packages/task-enc/src/backbone.ts');
    expect(backbone).toContain('initializers.glorotUniform({ seed: mixSeed(seed, i) })');
    expect(backbone).toContain('tf.dropout(x, rate, undefined, mixSeed(options.seed, i))');
    expect(backbone).toMatch(/import \{ mixSeed,[^}]*\} from '@taskforge\/core'/);
    expect(text(tree, 'packages/task-enc/src/task.ts')).toContain("'float32', mixSeed(config.init_seed, 1))");
  });
});

describe('task generator: fixture data', () => {
  it('keeps the data config keys in one hook, SMALL_DATA, and names it when it no longer fits the data module', async () => {
    await taskGenerator(tree, { name: 'enc', backbone: 'new', skipInstall: true });
    const root = 'packages/task-enc';
    const fixtures = text(tree, `${root}/tests/fixtures.ts`);
    // The data module's target and keys live in SMALL_DATA only; build() spreads it.
    expect(fixtures).toMatch(
      /export const SMALL_DATA: Record<string, unknown> = \{\n\s+_target_: 'datamodule\/enc_synthetic',/,
    );
    expect(fixtures).toContain('const node = { ...SMALL_DATA, ...options.data };');
    expect(fixtures.match(/datamodule\/enc_synthetic/g)).toHaveLength(1);
    // A ConfigError from building the data module says to update SMALL_DATA, keeping every problem.
    expect(fixtures).toContain('The test fixture data (SMALL_DATA in tests/fixtures.ts');
    expect(fixtures).toContain('update SMALL_DATA in tests/fixtures.ts (docs/new-task.md, "7. Test")');
    expect(fixtures).toContain('e.problems.map(');
    // task.spec.ts names no data config key, so it survives a new data module.
    const taskSpec = text(tree, `${root}/tests/task.spec.ts`);
    for (const key of ['num_train', 'num_val', 'seq_len', 'vocab_size', 'signal', 'data_seed'])
      expect(taskSpec).not.toContain(key);
    // vitest prints a ConfigError's lines whole in failed assertions.
    expect(text(tree, `${root}/vitest.config.ts`)).toContain('chaiConfig: { truncateThreshold: 0 }');
  });
});

describe('task generator: bad data errors', () => {
  it('names a bad label by batch, epoch and step, and checks labels where the data module loads them', async () => {
    await taskGenerator(tree, { name: 'enc', backbone: 'new', skipInstall: true });
    const root = 'packages/task-enc';
    const task = text(tree, `${root}/src/task.ts`);
    expect(task).toContain('`the ${split} batch ${ctx.batchIdx} (epoch ${ctx.epoch}, global step ${ctx.globalStep})`');
    expect(task).toContain("batchName('train', ctx)");
    expect(task).toContain("batchName('val', ctx)");
    expect(task).toContain("batchName('test', ctx)");
    expect(task).toContain("with src/data.ts's checkLabels");
    const data = text(tree, `${root}/src/data.ts`);
    expect(data).toMatch(
      /export function checkLabels\(\s*labels: Int32Array,\s*numClasses: number,\s*source: string,\s*where: \(row: number\) => string = \(row\) => `row \$\{row\} \(counting from 0\)`,\s*\): void/,
    );
    // The caller names its data module (a user's own module is not the synthetic one).
    expect(data).toMatch(
      /checkLabels\(\s*data\.labels,\s*this\.config\.num_classes,\s*`datamodule\/\w+: the \$\{split\} split/,
    );
    expect(data).toContain('`${source}, ${where(row)}: label');
    // The generated specs exercise both messages.
    expect(text(tree, `${root}/tests/task.spec.ts`)).toContain('label ${C} of sequence ${row} of the val batch 3');
    expect(text(tree, `${root}/tests/data.spec.ts`)).toContain(
      "import { checkLabels, labelsFromNames } from '../src/data.js';",
    );
  });
});

describe('task generator: ddp-ready batches and predict (s5: finding 5)', () => {
  it('uses the labels as given (no padding suggested) and gives the task a predictStep over a predict dataloader', async () => {
    await taskGenerator(tree, { name: 'enc', backbone: 'new', skipInstall: true });
    const root = 'packages/task-enc';
    const task = text(tree, `${root}/src/task.ts`);
    expect(task).not.toMatch(/subarray\(0, (batch\.)?size\)/);
    expect(task).toContain("tf.tensor1d(batch.labels, 'int32')");
    expect(task).toContain('labels.length !== size');
    expect(task).toContain('async predictStep(batch: EncBatch, ctx: StepContext): Promise<EncPrediction[]>');
    expect(text(tree, `${root}/src/data.ts`)).toContain('predictDataloader(options: DataLoaderOptions)');
    expect(text(tree, `${root}/src/index.ts`)).toContain('EncPrediction');
    expect(text(tree, `${root}/tests/task.spec.ts`)).toContain('predictStep gives each sequence its label');
  });
});

describe('task generator: options', () => {
  it('--directory places the package, fixes relative paths, and warns when npm workspaces miss it', async () => {
    const warn = vi.spyOn(logger, 'warn').mockImplementation(() => undefined);
    await taskGenerator(tree, { name: 'deep', directory: 'plugins/tasks/deep/', skipInstall: true });
    expect(readJson(tree, 'plugins/tasks/deep/tsconfig.json').extends).toBe('../../../tsconfig.base.json');
    expect(text(tree, 'plugins/tasks/deep/vitest.config.ts')).toContain("from '../../../vitest.shared.js'");
    expect(text(tree, 'plugins/tasks/deep/eslint.config.mjs')).toContain("from '../../../eslint.config.mjs'");
    expect(readJson(tree, 'plugins/tasks/deep/package.json').nx.tags).toEqual(['type:plugin']);
    expect(warn).toHaveBeenCalledWith(
      expect.stringMatching(/plugins\/tasks\/deep is not matched by the root package.json "workspaces"/),
    );
  });

  it('does not warn for a folder the workspaces globs cover', async () => {
    const warn = vi.spyOn(logger, 'warn').mockImplementation(() => undefined);
    await taskGenerator(tree, { name: 'tool', directory: 'tools/task-tool', skipInstall: true });
    expect(warn).not.toHaveBeenCalled();
  });

  it('--description lands in package.json, the README and the spec, quoted safely', async () => {
    const description = "Tom's & Jerry's <classifier>";
    await taskGenerator(tree, { name: 'quote', description, skipInstall: true });
    expect(readJson(tree, 'packages/task-quote/package.json').description).toBe(description);
    expect(text(tree, 'packages/task-quote/README.md')).toContain(description);
    expect(text(tree, 'packages/task-quote/src/index.ts')).toContain(
      "description: 'Tom\\'s & Jerry\\'s <classifier>',",
    );
  });

  it('the callback reports next steps without installing when skipInstall is set', async () => {
    const info = vi.spyOn(logger, 'info').mockImplementation(() => undefined);
    const callback = await taskGenerator(tree, { name: 'later', skipInstall: true });
    callback();
    expect(info).toHaveBeenCalledWith(
      expect.stringContaining('npx nx run task-later:train -- trainer.fast_dev_run=true'),
    );
  });
});

describe('task generator: refusals write nothing', () => {
  it.each(['SeqCls', '1st', 'seq_cls', 'seq--cls', '-seq', 'seq-', ''])('rejects the name %j', async (name) => {
    await refused({ name }, /Invalid task name .*lower-case kebab-case starting with a letter/);
  });

  it('suggests a valid spelling', async () => {
    await refused({ name: 'SeqCls' }, /pick e\.g\. 'seq-cls'/);
  });

  it('refuses an existing target folder', async () => {
    tree.write('packages/task-dup/README.md', 'leftover');
    await refused({ name: 'dup' }, /the folder packages\/task-dup already exists/);
  });

  it('refuses a task name another workspace package registers in its conf/task (nested options too)', async () => {
    await refused(
      { name: 'igpt' },
      /packages\/task-igpt\/conf\/task\/vision\/igpt\.yaml already defines the task option 'vision\/igpt'/,
    );
  });

  it("refuses a task name registered only in a plugin's source", async () => {
    tree.write('packages/extra/package.json', JSON.stringify({ name: '@acme/extra', taskforge: {} }));
    tree.write('packages/extra/src/spec.ts', "export const s = {\n  kind: 'task',\n  name: 'ner',\n};\n");
    await refused(
      { name: 'ner' },
      /packages\/extra\/src\/spec\.ts \(@acme\/extra\) already registers a task named 'ner'/,
    );
  });

  it('refuses an unknown backbone, listing the registered ones', async () => {
    await refused(
      { name: 'x', backbone: 'bert' },
      /Unknown --backbone 'bert'.*Registered backbones: 'gpt2' \(@taskforge\/backbone-gpt2\).*--backbone=new/,
    );
  });

  it('refuses a --directory outside the workspace', async () => {
    await refused({ name: 'x', directory: '../elsewhere' }, /Invalid --directory '\.\.\/elsewhere'/);
    await refused({ name: 'x', directory: '/abs/path' }, /Invalid --directory/);
  });
});
