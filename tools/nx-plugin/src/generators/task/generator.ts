import { existsSync } from 'node:fs';
import { join, posix } from 'node:path';
import {
  generateFiles,
  installPackagesTask,
  joinPathFragments,
  logger,
  updateJson,
  writeJson,
  type GeneratorCallback,
  type Tree,
} from '@nx/devkit';
import { normalizeOptions, type NormalizedOptions } from './normalize.js';
import type { TaskGeneratorSchema } from './schema.js';

/**
 * Templates ship in src/ (tsc does not copy assets): next to this file when it runs from source
 * (tests), three levels up from dist/generators/task when it runs built.
 */
function templatesDir(): string {
  const candidates = [
    join(__dirname, 'files'),
    join(__dirname, '..', '..', '..', 'src', 'generators', 'task', 'files'),
  ];
  const found = candidates.find((c) => existsSync(c));
  if (!found)
    throw new Error(
      `@taskforge/nx-plugin is incomplete: its templates are ` +
        `missing (looked in ${candidates.join(', ')}); reinstall it.`,
    );
  return found;
}

/** `nx g @taskforge/nx-plugin:task <name>`: scaffolds a task plugin package. */
export async function taskGenerator(tree: Tree, schema: TaskGeneratorSchema): Promise<GeneratorCallback> {
  const options = normalizeOptions(tree, schema); // throws before anything is written
  const vars = templateVars(options);
  const templates = templatesDir();
  generateFiles(tree, join(templates, 'common'), options.projectRoot, vars);
  if (options.backbone.kind === 'new') generateFiles(tree, join(templates, 'new-backbone'), options.projectRoot, vars);
  writeJson(tree, joinPathFragments(options.projectRoot, 'package.json'), packageJson(options));
  writeJson(tree, joinPathFragments(options.projectRoot, 'tsconfig.lib.json'), tsconfigLib(options));
  addRootReference(tree, options.projectRoot);

  if (!options.inWorkspaces) {
    logger.warn(
      `${options.projectRoot} is not matched by the root package.json "workspaces", so npm will not link ` +
        `${options.packageName} and taskforge will not discover it. Add "${options.projectRoot}" to "workspaces".`,
    );
  }
  return () => {
    if (!options.skipInstall) installPackagesTask(tree, true);
    logger.info(
      [
        `Created ${options.packageName} in ${options.projectRoot}. Next:`,
        `  npx nx test ${options.projectName}`,
        `  npx nx typecheck ${options.projectName}`,
        // The train target builds this package, its dependencies and the CLI; workspace plugins
        // it does not need may stay unbuilt (taskforge skips them with a one-line warning).
        `  npx nx run ${options.projectName}:train -- trainer.fast_dev_run=true`,
        `  npx taskforge list                    # components and configs taskforge discovers`,
        ...(options.skipInstall
          ? ['  (run `npm install` first: it links the new package so taskforge discovers it)']
          : []),
      ].join('\n'),
    );
  };
}

export default taskGenerator;

function templateVars(o: NormalizedOptions) {
  const existing = o.backbone.kind === 'existing' ? o.backbone : undefined;
  return {
    ...o,
    descriptionLiteral: `'${o.description.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`,
    newBackbone: o.backbone.kind === 'new',
    backboneOption: o.backbone.option,
    backboneTarget: o.backbone.target,
    backbonePackage: existing?.packageName ?? o.packageName,
    // Small enough for a unit test; keys the scaffolded tests pass to the backbone's schema.
    testBackboneConfig:
      o.backbone.kind === 'new'
        ? '{ embed_dim: 16, hidden_dim: 32 }'
        : o.backbone.target === 'backbone/gpt2'
          ? '{ num_layers: 1, embed_dim: 16, num_heads: 2 }'
          : '{}',
  };
}

function packageJson(o: NormalizedOptions): Record<string, unknown> {
  const dependencies: Record<string, string> = {
    '@tensorflow/tfjs': o.versions.tfjs,
    seedrandom: o.versions.seedrandom,
    zod: o.versions.zod,
  };
  if (o.backbone.kind === 'existing') dependencies[o.backbone.packageName] = `^${o.backbone.version}`;
  return {
    name: o.packageName,
    version: '0.1.0',
    description: o.description,
    license: 'MIT',
    type: 'module',
    main: './dist/index.js',
    types: './dist/index.d.ts',
    exports: {
      '.': {
        '@taskforge/source': './src/index.ts',
        types: './dist/index.d.ts',
        import: './dist/index.js',
        default: './dist/index.js',
      },
      './package.json': './package.json',
    },
    files: ['dist', '!dist/**/*.tsbuildinfo', 'README.md', 'conf'],
    keywords: ['taskforge', 'taskforge-plugin', 'tensorflowjs'],
    engines: { node: '>=20' },
    publishConfig: { access: 'public' },
    dependencies: sortKeys(dependencies),
    devDependencies: {
      '@tensorflow/tfjs-backend-wasm': o.versions.tfjsWasm,
      '@types/seedrandom': o.versions.typesSeedrandom,
      yaml: o.versions.yaml,
    },
    peerDependencies: { '@taskforge/core': o.versions.core },
    taskforge: { conf: 'conf' },
    nx: {
      name: o.projectName,
      // Module boundaries (eslint.config.mjs): a task plugin imports only core's public index.
      tags: ['type:plugin'],
      targets: {
        train: {
          command: `node packages/cli/dist/bin.js train task=${o.name}`,
          options: { cwd: '{workspaceRoot}' },
          dependsOn: ['build', '^build', { projects: ['cli'], target: 'build' }],
        },
      },
    },
  };
}

function tsconfigLib(o: NormalizedOptions): Record<string, unknown> {
  const refs = ['packages/core'];
  if (o.backbone.kind === 'existing') refs.push(o.backbone.packageRoot);
  return {
    extends: `${o.offset}tsconfig.base.json`,
    compilerOptions: { rootDir: 'src', outDir: 'dist', tsBuildInfoFile: 'dist/tsconfig.lib.tsbuildinfo' },
    include: ['src/**/*.ts'],
    exclude: ['src/**/*.spec.ts', 'src/**/*.test.ts'],
    // Relative to the project, as `nx sync` writes them, so `nx sync:check` passes straight away.
    references: refs.map((r) => ({ path: `${posix.relative(o.projectRoot, r)}/tsconfig.lib.json` })),
  };
}

/** The root tsconfig.json lists every project (Nx's TypeScript project references layout). */
function addRootReference(tree: Tree, projectRoot: string): void {
  if (!tree.exists('tsconfig.json')) return;
  updateJson(tree, 'tsconfig.json', (json: { references?: { path: string }[] }) => {
    const path = `./${projectRoot}`;
    json.references ??= [];
    if (!json.references.some((r) => posix.normalize(r.path) === posix.normalize(path))) json.references.push({ path });
    return json;
  });
}

function sortKeys(record: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => a.localeCompare(b)));
}
