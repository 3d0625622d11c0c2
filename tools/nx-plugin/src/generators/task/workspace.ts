/**
 * What the generator needs to know about the workspace, read from the Nx Tree (so tests and
 * --dry-run see the same thing as a real run): the workspace packages, which of them are
 * taskforge plugins (a `"taskforge"` field, as runtime discovery requires), and their configs.
 */
import { joinPathFragments, type Tree } from '@nx/devkit';

export interface WorkspacePackage {
  /** Folder relative to the workspace root, e.g. `packages/backbone-gpt2`. */
  root: string;
  name: string;
  version: string;
  /** The plugin's config folder (`taskforge.conf`), when the package is a taskforge plugin. */
  confDir?: string;
  dependencies: Record<string, string>;
}

interface PackageJson {
  name?: unknown;
  version?: unknown;
  workspaces?: unknown;
  taskforge?: { conf?: unknown };
  dependencies?: Record<string, string>;
}

function readPackageJson(tree: Tree, dir: string): PackageJson | undefined {
  const file = joinPathFragments(dir, 'package.json');
  if (!tree.isFile(file)) return undefined;
  try {
    return JSON.parse(tree.read(file, 'utf-8') ?? '') as PackageJson;
  } catch {
    return undefined; // a broken package.json elsewhere is not this generator's business
  }
}

/** The root package.json `workspaces` globs (npm/yarn array or `{ packages: [...] }`). */
export function workspaceGlobs(tree: Tree): string[] {
  const field = readPackageJson(tree, '')?.workspaces;
  const list = Array.isArray(field) ? field : (field as { packages?: unknown } | undefined)?.packages;
  return Array.isArray(list) ? list.filter((g): g is string => typeof g === 'string') : [];
}

/**
 * Whether `dir` is matched by a workspaces glob. Only the common shapes are understood:
 * `some/dir` and `some/dir/*` (npm's own `**` patterns are rare in practice and would need a
 * full glob engine for a warning).
 */
export function inWorkspaces(globs: string[], dir: string): boolean {
  return globs.some((g) => {
    const clean = g.replace(/^\.\//, '').replace(/\/+$/, '');
    if (clean.endsWith('/*')) {
      const parent = clean.slice(0, -2);
      return dir.startsWith(`${parent}/`) && !dir.slice(parent.length + 1).includes('/');
    }
    return clean === dir;
  });
}

/** Every package matched by the workspaces globs (same shapes as `inWorkspaces`). */
export function workspacePackages(tree: Tree): WorkspacePackage[] {
  const roots = new Set<string>();
  for (const glob of workspaceGlobs(tree)) {
    const clean = glob.replace(/^\.\//, '').replace(/\/+$/, '');
    if (clean.endsWith('/*')) {
      const parent = clean.slice(0, -2);
      for (const child of tree.children(parent)) roots.add(joinPathFragments(parent, child));
    } else if (!clean.includes('*')) {
      roots.add(clean);
    }
  }
  const out: WorkspacePackage[] = [];
  for (const root of [...roots].sort()) {
    const pkg = readPackageJson(tree, root);
    if (!pkg || typeof pkg.name !== 'string') continue;
    const conf = pkg.taskforge && typeof pkg.taskforge === 'object' ? pkg.taskforge.conf : undefined;
    out.push({
      root,
      name: pkg.name,
      version: typeof pkg.version === 'string' ? pkg.version : '0.0.0',
      ...(pkg.taskforge !== undefined
        ? { confDir: joinPathFragments(root, typeof conf === 'string' ? conf : 'conf') }
        : {}),
      dependencies: pkg.dependencies ?? {},
    });
  }
  return out;
}

/** Files below `dir` (recursively), skipping node_modules and dist. */
export function filesUnder(tree: Tree, dir: string): string[] {
  if (!tree.exists(dir)) return [];
  if (tree.isFile(dir)) return [dir];
  return tree
    .children(dir)
    .filter((c) => c !== 'node_modules' && c !== 'dist')
    .flatMap((c) => filesUnder(tree, joinPathFragments(dir, c)));
}

/** Config options of `group` in `confDir`: `{ option: 'vision/igpt', file }` for `task/vision/igpt.yaml`. */
export function configOptions(tree: Tree, confDir: string, group: string): Array<{ option: string; file: string }> {
  const base = joinPathFragments(confDir, group);
  return filesUnder(tree, base)
    .filter((f) => /\.ya?ml$/.test(f))
    .map((file) => ({ option: file.slice(base.length + 1).replace(/\.ya?ml$/, ''), file }));
}
