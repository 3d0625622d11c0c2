/**
 * Turns the CLI options into everything the templates need, and refuses bad input. All checks
 * run here, before the generator touches the Tree, so a refused run writes nothing.
 */
import { joinPathFragments, names, offsetFromRoot, type Tree } from '@nx/devkit';
import type { TaskGeneratorSchema } from './schema.js';
import {
  configOptions,
  filesUnder,
  inWorkspaces,
  workspaceGlobs,
  workspacePackages,
  type WorkspacePackage,
} from './workspace.js';

/** A refused generator run: the message says what is wrong and how to fix it. */
export class TaskGeneratorError extends Error {
  override readonly name = 'TaskGeneratorError';
}

export const NAME_PATTERN = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;
const BACKBONE_PATTERN = /^[a-z][a-z0-9_-]*(\/[a-z][a-z0-9_-]*)*$/;

export type BackboneChoice =
  | { kind: 'new'; option: string; target: string }
  | { kind: 'existing'; option: string; target: string; packageName: string; packageRoot: string; version: string };

export interface NormalizedOptions {
  name: string;
  /** `SeqCls`, `seqCls` for a task named `seq-cls`. */
  className: string;
  propertyName: string;
  projectName: string;
  packageName: string;
  projectRoot: string;
  description: string;
  backbone: BackboneChoice;
  datasetOption: string;
  /** Path from the package folder back to the workspace root, e.g. `../../`. */
  offset: string;
  /** Whether the root `workspaces` globs include the package (npm only links those). */
  inWorkspaces: boolean;
  versions: {
    core: string;
    tfjs: string;
    tfjsWasm: string;
    zod: string;
    seedrandom: string;
    yaml: string;
    typesSeedrandom: string;
  };
  skipInstall: boolean;
}

export function normalizeOptions(tree: Tree, schema: TaskGeneratorSchema): NormalizedOptions {
  const name = (schema.name ?? '').trim();
  if (!NAME_PATTERN.test(name)) {
    throw new TaskGeneratorError(
      `Invalid task name '${name}': expected lower-case kebab-case starting with a letter (letters, digits, single ` +
        `hyphens between them), e.g. 'seq-cls'. It becomes the package @taskforge/task-<name>, the component ` +
        `task/<name> and the config option task=<name>; pick e.g. '${suggestName(name)}'.`,
    );
  }
  const projectRoot = normalizeDirectory(schema.directory, name);
  const packageName = `@taskforge/task-${name}`;
  const packages = workspacePackages(tree);
  const backbone = resolveBackbone(tree, packages, schema.backbone ?? 'gpt2', name);
  const datasetOption = `${name}_synthetic`;

  const conflicts = findConflicts(tree, packages, { name, datasetOption, backbone });
  if (tree.exists(projectRoot)) {
    conflicts.unshift(
      `the folder ${projectRoot} already exists (pass --directory=<another folder>, or delete it if it is a leftover)`,
    );
  }
  const samePackage = packages.find((p) => p.name === packageName);
  if (samePackage) conflicts.push(`the package name ${packageName} is taken by ${samePackage.root}/package.json`);
  if (conflicts.length) {
    throw new TaskGeneratorError(
      `Cannot generate task '${name}': ${conflicts.join('; ')}. Nothing was written. ` +
        'Choose another name, or remove the existing definition first.',
    );
  }

  const n = names(name);
  const core = packages.find((p) => p.name === '@taskforge/core');
  const dep = (pkg: string, fallback: string) => core?.dependencies[pkg] ?? fallback;
  return {
    name,
    className: n.className,
    propertyName: n.propertyName,
    projectName: `task-${name}`,
    packageName,
    projectRoot,
    description:
      (schema.description ?? '').replace(/\s+/g, ' ').trim() ||
      `The ${name} task for taskforge (scaffolded by @taskforge/nx-plugin).`,
    backbone,
    datasetOption,
    offset: offsetFromRoot(projectRoot),
    inWorkspaces: inWorkspaces(workspaceGlobs(tree), projectRoot),
    versions: {
      core: `^${core?.version ?? '0.1.0'}`,
      tfjs: dep('@tensorflow/tfjs', '4.22.0'),
      tfjsWasm: dep('@tensorflow/tfjs-backend-wasm', '4.22.0'),
      zod: dep('zod', '^4.1.0'),
      seedrandom: dep('seedrandom', '^3.0.5'),
      yaml: dep('yaml', '^2.8.0'),
      typesSeedrandom: '^3.0.8',
    },
    skipInstall: schema.skipInstall ?? false,
  };
}

function suggestName(raw: string): string {
  const kebab = raw
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^[^a-z]+|-+$/g, '');
  return NAME_PATTERN.test(kebab) ? kebab : 'my-task';
}

function normalizeDirectory(directory: string | undefined, name: string): string {
  if (directory === undefined || directory.trim() === '') return `packages/task-${name}`;
  const dir = directory.trim().replace(/\\/g, '/').replace(/^\.\//, '').replace(/\/+$/, '');
  if (
    dir.startsWith('/') ||
    /^[A-Za-z]:/.test(dir) ||
    dir.split('/').some((s) => s === '..' || s === '.' || s === '')
  ) {
    throw new TaskGeneratorError(
      `Invalid --directory '${directory}': expected a folder relative to the workspace root and inside it, ` +
        `without '.', '..' or empty segments, e.g. --directory=packages/task-${name}.`,
    );
  }
  return dir;
}

/** `new`, or a `conf/backbone/<option>.yaml` shipped by a workspace plugin package. */
function resolveBackbone(tree: Tree, packages: WorkspacePackage[], option: string, name: string): BackboneChoice {
  if (option === 'new') return { kind: 'new', option: `${name}_encoder`, target: `backbone/${name}_encoder` };
  const plugins = packages.filter((p) => p.confDir);
  const available = plugins.flatMap((p) => configOptions(tree, p.confDir!, 'backbone').map((o) => ({ ...o, pkg: p })));
  const found = BACKBONE_PATTERN.test(option) ? available.find((a) => a.option === option) : undefined;
  if (!found) {
    const list = available.map((a) => `'${a.option}' (${a.pkg.name})`).join(', ');
    throw new TaskGeneratorError(
      `Unknown --backbone '${option}': no workspace plugin package has a conf/backbone/${option}.yaml. ` +
        (list ? `Registered backbones: ${list}. ` : 'No workspace package provides a backbone config. ') +
        'Use one of those, or --backbone=new to scaffold a small backbone inside the new package.',
    );
  }
  // The option file names the component; it is usually, but not necessarily, the same name.
  const target =
    /^_target_:\s*['"]?([^'"\s#]+)/m.exec(tree.read(found.file, 'utf-8') ?? '')?.[1] ?? `backbone/${option}`;
  return {
    kind: 'existing',
    option,
    target,
    packageName: found.pkg.name,
    packageRoot: found.pkg.root,
    version: found.pkg.version,
  };
}

/**
 * Definitions the new package would clash with: config options of the same group and name
 * (`conf/task/**\/<name>.yaml`, also nested ones, since `task=vision/<name>` and `task=<name>`
 * side by side confuse users), and task specs in plugin sources declaring the same name. The
 * source scan is textual (`kind: 'task'` and `name: '<name>'` in one file): cheap, no build
 * needed, and it catches tasks whose config lives elsewhere.
 */
function findConflicts(
  tree: Tree,
  packages: WorkspacePackage[],
  wanted: { name: string; datasetOption: string; backbone: BackboneChoice },
): string[] {
  const confDirs = ['conf', ...packages.flatMap((p) => (p.confDir ? [p.confDir] : []))];
  const groups: Array<[group: string, option: string]> = [
    ['task', wanted.name],
    ['dataset', wanted.datasetOption],
  ];
  if (wanted.backbone.kind === 'new') groups.push(['backbone', wanted.backbone.option]);
  const out: string[] = [];
  for (const dir of confDirs) {
    for (const [group, option] of groups) {
      for (const o of configOptions(tree, dir, group)) {
        if (o.option === option || (group === 'task' && o.option.endsWith(`/${option}`))) {
          out.push(`${o.file} already defines the ${group} option '${o.option}'`);
        }
      }
    }
  }
  const spec = new RegExp(`name:\\s*['"\`]([\\w-]+/)*${wanted.name.replace(/-/g, '\\-')}['"\`]`);
  for (const pkg of packages.filter((p) => p.confDir)) {
    for (const file of filesUnder(tree, joinPathFragments(pkg.root, 'src'))) {
      if (!file.endsWith('.ts') || file.endsWith('.spec.ts')) continue;
      const text = tree.read(file, 'utf-8') ?? '';
      if (/kind:\s*['"]task['"]/.test(text) && spec.test(text)) {
        out.push(
          `${file} (${pkg.name}) already registers a task named '${spec
            .exec(text)![0]
            .replace(/^name:\s*/, '')
            .slice(1, -1)}'`,
        );
      }
    }
  }
  return out;
}
