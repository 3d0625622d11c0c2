/**
 * Finds installed plugin packages at run time: any package whose package.json has a
 * `"taskforge"` field, e.g. `"taskforge": { "conf": "conf" }`. Nothing is hard-coded, so
 * `npm install some-taskforge-plugin` is all it takes to make its components and configs usable.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, realpathSync, statSync, type Dirent } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ConfigError, TaskforgeError } from '../errors.js';
import { findProjectRoot } from '../services/paths.js';
import { messageOf, type ComponentRegistry } from './registry.js';
import type { TaskforgePlugin } from './types.js';

export interface DiscoveredPlugin {
  packageName: string;
  version: string;
  /** Real path of the package directory (workspace symlinks followed). */
  dir: string;
  /** Absolute path of the package's config dir, when it declares one that exists. */
  confDir?: string;
}

/** A workspace plugin left out because it is not built (see `discoverPlugins`). */
export interface SkippedPlugin {
  packageName: string;
  dir: string;
  /** The entry file that does not exist, e.g. `<dir>/dist/index.js`. */
  entry: string;
  /** The command that builds it, e.g. `npx nx build data-cifar`. */
  buildCommand: string;
  /** Its conf dir (its `"taskforge": { "conf" }`), whose config options are unavailable while it is skipped. */
  confDir?: string;
  /** One line for the user: what was skipped, why, and the command that builds it. */
  message: string;
}

export interface DiscoveryResult {
  /** Sorted by package name. */
  plugins: DiscoveredPlugin[];
  /**
   * Workspace plugins (linked source packages, not installed ones) whose entry file is not built:
   * left out of `plugins` and of the search path, so one unbuilt, unrelated package does not stop
   * every command. Callers warn with each `message`.
   */
  skipped: SkippedPlugin[];
  /**
   * One warning per workspace plugin loaded from a build older than its source (a file under its
   * `src/` changed after the newest file of its build): the command runs the old code. Callers warn.
   */
  stale: string[];
  /** The plugins' config dirs, in plugin order; the composer puts the project's own first. */
  searchPathDirs: string[];
}

export interface DiscoverOptions {
  /** Where to start looking for the project root; default `process.cwd()`. */
  cwd?: string;
  /** Skips the project root search. */
  projectRoot?: string;
  /** Package names to load even without a `"taskforge"` field (the config's `plugins` list). */
  extra?: readonly string[];
  /** Where each `extra` name was listed (a config file, `command line`), named in its error. */
  extraSources?: Readonly<Record<string, string>>;
}

// npm's rules for package names; anything else (paths, URLs) is refused before touching disk.
const PACKAGE_NAME = /^(@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/;

interface PackageJson {
  name?: unknown;
  version?: unknown;
  main?: unknown;
  exports?: unknown;
  taskforge?: unknown;
}

function readPackageJson(dir: string): PackageJson | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson;
  } catch {
    return undefined;
  }
}

/** `node_modules` dirs in Node's lookup order: the project's, then each parent's. */
function nodeModulesDirs(projectRoot: string): string[] {
  const dirs: string[] = [];
  for (let dir = projectRoot; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules');
    if (existsSync(candidate)) dirs.push(candidate);
    if (dirname(dir) === dir) return dirs;
  }
}

function packageDirsIn(nodeModules: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(nodeModules)) {
    if (entry.startsWith('.')) continue;
    const full = join(nodeModules, entry);
    if (entry.startsWith('@')) {
      if (!isDirectory(full)) continue;
      for (const scoped of readdirSync(full)) if (!scoped.startsWith('.')) out.push(join(full, scoped));
    } else {
      out.push(full);
    }
  }
  return out;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory(); // follows symlinks (npm workspaces link packages)
  } catch {
    return false;
  }
}

function describePlugin(linkDir: string, pkg: PackageJson, packageName: string): DiscoveredPlugin {
  const dir = realpathSync(linkDir);
  const field = pkg.taskforge ?? {};
  if (typeof field !== 'object' || field === null || Array.isArray(field)) {
    throw new TaskforgeError(
      `Package '${packageName}' (${join(dir, 'package.json')}) has a "taskforge" field that is not an object; ` +
        'it must look like "taskforge": { "conf": "conf" } (conf is optional).',
    );
  }
  const conf = (field as { conf?: unknown }).conf;
  if (
    conf !== undefined &&
    (typeof conf !== 'string' || isAbsolute(conf) || relative(dir, resolve(dir, conf)).startsWith('..'))
  ) {
    throw new TaskforgeError(
      `Package '${packageName}' (${join(dir, 'package.json')}) declares "taskforge.conf": ${JSON.stringify(conf)}; ` +
        'it must be a directory path relative to the package, inside it (e.g. "conf").',
    );
  }
  const confDir = typeof conf === 'string' ? resolve(dir, conf) : undefined;
  return {
    packageName,
    version: typeof pkg.version === 'string' ? pkg.version : '0.0.0',
    dir,
    ...(confDir && isDirectory(confDir) ? { confDir } : {}),
  };
}

/**
 * Lists plugin packages visible from the project root without importing any of them.
 * @throws ConfigError (exit 2) at `plugins` for an `extra` name that is not an npm package name
 *   or is not installed (saying how to install it).
 */
export function discoverPlugins(options: DiscoverOptions = {}): DiscoveryResult {
  const projectRoot = options.projectRoot ?? findProjectRoot(options.cwd);
  const dirs = nodeModulesDirs(projectRoot);
  const byName = new Map<string, DiscoveredPlugin>();
  const seenReal = new Set<string>();
  const add = (linkDir: string, pkg: PackageJson, name: string) => {
    const plugin = describePlugin(linkDir, pkg, name);
    if (seenReal.has(plugin.dir)) return;
    seenReal.add(plugin.dir);
    byName.set(name, plugin);
  };
  for (const nodeModules of dirs) {
    for (const linkDir of packageDirsIn(nodeModules)) {
      const pkg = readPackageJson(linkDir);
      // A nearer node_modules shadows a farther one, as in Node's own resolution.
      if (!pkg || pkg.taskforge === undefined || typeof pkg.name !== 'string' || byName.has(pkg.name)) continue;
      add(linkDir, pkg, pkg.name);
    }
  }
  const sourceOf = (name: string) => {
    const source = options.extraSources?.[name];
    return source === undefined ? {} : { source };
  };
  const missing: string[] = [];
  for (const name of options.extra ?? []) {
    if (byName.has(name)) continue;
    if (!PACKAGE_NAME.test(name)) {
      throw new ConfigError([
        {
          path: 'plugins',
          message:
            "plugins are npm package names (e.g. '@scope/taskforge-plugin'), not paths or URLs; " +
            'install a local plugin package with `npm install <path>` and list its name',
          value: name,
          ...sourceOf(name),
        },
      ]);
    }
    const linkDir = dirs.map((d) => join(d, name)).find((d) => readPackageJson(d) !== undefined);
    if (linkDir) add(linkDir, readPackageJson(linkDir)!, name);
    else missing.push(name);
  }
  if (missing.length) {
    throw new ConfigError(
      missing.map((name) => ({
        path: 'plugins',
        message:
          `package '${name}' is not installed (looked in ${dirs.join(', ') || `${projectRoot}/node_modules`}); ` +
          `install it with \`npm install ${name}\` (or \`npm install <path to its dir>\`) or remove it from 'plugins'`,
        value: name,
        ...sourceOf(name),
      })),
    );
  }
  const skipped: SkippedPlugin[] = [];
  const plugins = [...byName.values()]
    .sort((a, b) => a.packageName.localeCompare(b.packageName))
    .filter((plugin) => {
      const unbuilt = unbuiltWorkspacePlugin(plugin, projectRoot);
      if (unbuilt) skipped.push(unbuilt);
      return !unbuilt;
    });
  const stale = plugins.flatMap((plugin) => staleWorkspacePlugin(plugin, projectRoot) ?? []);
  return { plugins, skipped, stale, searchPathDirs: plugins.flatMap((p) => (p.confDir ? [p.confDir] : [])) };
}

/**
 * A workspace plugin (see unbuiltWorkspacePlugin) that will be loaded from built JavaScript while
 * a source file under its `src/` (tests aside) is newer than every file of that build: editing
 * the source and running `taskforge …` directly (not an nx target, which builds first) would
 * silently run the old code. Undefined when it is loaded from its source (a test runner's export
 * condition) or has no `src/`.
 */
function staleWorkspacePlugin(plugin: DiscoveredPlugin, projectRoot: string): string | undefined {
  if (plugin.dir.split(sep).includes('node_modules')) return undefined;
  const pkg = readPackageJson(plugin.dir) ?? {};
  const resolved = resolveFromHere(plugin.packageName);
  const loaded = resolved?.startsWith(plugin.dir + sep) ? resolved : entryFile(plugin.dir, pkg);
  if (!/\.[cm]?js$/.test(loaded) || !existsSync(loaded)) return undefined;
  const buildDir = dirname(loaded);
  const changed = sourceChangedSinceBuild(join(plugin.dir, 'src'), buildDir);
  if (!changed) return undefined;
  return (
    `Plugin ${plugin.packageName} runs from its build in ${shownPath(buildDir, projectRoot)}, but ` +
    `${shownPath(changed, projectRoot)} changed after it, so this command runs the old code; run ` +
    `\`${buildCommandOf(plugin, pkg)}\` first (its nx targets, such as train, build it themselves).`
  );
}

/**
 * The newest TypeScript source under `srcDir` (tests aside) that changed after the build in
 * `buildDir` was made: newer than every `.js` there and not the text that build compiled (by the
 * SHA-256 its `*.tsbuildinfo` records), so a checkout or `touch` that left a file as built is no
 * change. Undefined when nothing changed or there is no build. Used by plugin discovery and by
 * `npm run bench`, which measures the built packages.
 */
export function sourceChangedSinceBuild(srcDir: string, buildDir: string): string | undefined {
  // Absolute, as the build info's file names resolve to.
  [srcDir, buildDir] = [resolve(srcDir), resolve(buildDir)];
  const build = newestFile(buildDir, (f) => /\.[cm]?js$/.test(f));
  if (!build) return undefined;
  const sources = filesBelow(srcDir, (f) => /\.[cm]?tsx?$/.test(f) && !/\.(spec|test)\.[cm]?tsx?$/.test(f));
  const newer = sources.filter((f) => f.mtimeMs > build.mtimeMs);
  if (newer.length === 0) return undefined;
  const built = builtSourceHashes(buildDir);
  return newer
    .filter((f) => built?.get(f.path) !== createHash('sha256').update(readFileSync(f.path)).digest('hex'))
    .sort((x, y) => y.mtimeMs - x.mtimeMs)[0]?.path;
}

/**
 * The SHA-256 of each source file a TypeScript build compiled, from the `*.tsbuildinfo` in its
 * output dir (TypeScript records a file's hash as its `version`); undefined when there is none or
 * it cannot be read.
 */
function builtSourceHashes(buildDir: string): Map<string, string> | undefined {
  try {
    const info = readdirSync(buildDir).find((f) => f.endsWith('.tsbuildinfo'));
    if (!info) return undefined;
    const parsed = JSON.parse(readFileSync(join(buildDir, info), 'utf8')) as {
      fileNames?: unknown;
      fileInfos?: unknown;
    };
    if (!Array.isArray(parsed.fileNames) || !Array.isArray(parsed.fileInfos)) return undefined;
    const hashes = new Map<string, string>();
    parsed.fileNames.forEach((name, i) => {
      const entry = (parsed.fileInfos as unknown[])[i];
      const version = typeof entry === 'string' ? entry : (entry as { version?: unknown } | undefined)?.version;
      if (typeof name === 'string' && typeof version === 'string') hashes.set(resolve(buildDir, name), version);
    });
    return hashes;
  } catch {
    return undefined;
  }
}

/** Every file below `dir` whose name passes `keep`, with its mtime; empty when there is no dir. */
function filesBelow(dir: string, keep: (name: string) => boolean): Array<{ path: string; mtimeMs: number }> {
  const out: Array<{ path: string; mtimeMs: number }> = [];
  const walk = (at: string) => {
    let entries: Dirent[];
    try {
      entries = readdirSync(at, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile() && keep(entry.name)) out.push({ path, mtimeMs: statSync(path).mtimeMs });
    }
  };
  walk(dir);
  return out;
}

/** The most recently modified file below `dir` whose name passes `keep`; undefined when none (or no dir). */
function newestFile(dir: string, keep: (name: string) => boolean): { path: string; mtimeMs: number } | undefined {
  return filesBelow(dir, keep).reduce<{ path: string; mtimeMs: number } | undefined>(
    (newest, f) => (!newest || f.mtimeMs > newest.mtimeMs ? f : newest),
    undefined,
  );
}

/**
 * A plugin whose real directory is not inside a node_modules (a workspace package that npm
 * linked, as in this repository after `npm ci`) and whose entry file does not exist yet: it has
 * not been built. An installed package with a missing entry is a broken install instead, and
 * still fails loudly when imported.
 */
function unbuiltWorkspacePlugin(plugin: DiscoveredPlugin, projectRoot: string): SkippedPlugin | undefined {
  if (plugin.dir.split(sep).includes('node_modules')) return undefined;
  const pkg = readPackageJson(plugin.dir) ?? {};
  const entry = entryFile(plugin.dir, pkg);
  // Also loadable: the name resolves from core to a file of this package (e.g. its TypeScript
  // source under a test runner's `@taskforge/source` export condition).
  if (existsSync(entry) || resolveFromHere(plugin.packageName)?.startsWith(plugin.dir + sep)) return undefined;
  const buildCommand = buildCommandOf(plugin, pkg);
  return {
    packageName: plugin.packageName,
    dir: plugin.dir,
    entry,
    buildCommand,
    ...(plugin.confDir ? { confDir: plugin.confDir } : {}),
    message:
      `Skipping plugin ${plugin.packageName}: it is not built ` +
      `(${shownPath(entry, projectRoot)} is missing); ` +
      `its components and configs are unavailable until you run \`${buildCommand}\` (or \`npx nx run-many -t build\`).`,
  };
}

/** `npx nx build <project>` for a workspace package (its `nx.name`, else its package name). */
function buildCommandOf(plugin: DiscoveredPlugin, pkg: PackageJson): string {
  const nxName = (pkg as { nx?: { name?: unknown } }).nx?.name;
  return `npx nx build ${typeof nxName === 'string' ? nxName : plugin.packageName}`;
}

/** `path` relative to the project root when it lies inside it, else as it is. */
function shownPath(path: string, projectRoot: string): string {
  const rel = relative(projectRoot, path);
  return rel && !rel.startsWith('..') ? rel : path;
}

/** The ESM entry file of a package, from `exports` (import/node/default) or `main`. */
function entryFile(dir: string, pkg: PackageJson): string {
  const pick = (target: unknown): string | undefined => {
    if (typeof target === 'string') return target;
    if (Array.isArray(target)) return target.map(pick).find(Boolean);
    if (target && typeof target === 'object') {
      const conditions = target as Record<string, unknown>;
      if ('.' in conditions) return pick(conditions['.']);
      for (const key of ['import', 'node', 'default']) {
        const found = key in conditions ? pick(conditions[key]) : undefined;
        if (found) return found;
      }
    }
    return undefined;
  };
  return resolve(dir, pick(pkg.exports) ?? (typeof pkg.main === 'string' ? pkg.main : 'index.js'));
}

function isPlugin(value: unknown): value is TaskforgePlugin {
  const candidate = value as Partial<TaskforgePlugin> | undefined;
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.packageName === 'string' &&
    typeof candidate.register === 'function'
  );
}

/** Real path of the file `name` resolves to from core, or undefined when it does not resolve. */
function resolveFromHere(name: string): string | undefined {
  try {
    return realpathSync(fileURLToPath(import.meta.resolve(name)));
  } catch {
    return undefined;
  }
}

/**
 * Imports a plugin package by name when that name resolves, from core, to the discovered copy:
 * a package also imported elsewhere by name (core itself) then keeps one module identity, and
 * export conditions apply as usual. Otherwise (a plugin installed in the project but not beside
 * core, or a different copy shadowing it) the discovered copy's entry file is imported.
 * @throws TaskforgeError (exit 1) when the import fails, the package exports no TaskforgePlugin
 *   (naming what it exports and the shape to export), or its `packageName` differs from the package's.
 */
export async function importPlugin(plugin: DiscoveredPlugin): Promise<TaskforgePlugin> {
  const resolved = resolveFromHere(plugin.packageName);
  const specifier = resolved?.startsWith(plugin.dir + sep)
    ? plugin.packageName
    : pathToFileURL(entryFile(plugin.dir, readPackageJson(plugin.dir) ?? {})).href;
  let mod: Record<string, unknown>;
  try {
    mod = await import(/* @vite-ignore */ specifier);
  } catch (error) {
    throw new TaskforgeError(
      `Could not load plugin package '${plugin.packageName}' (${specifier}): ${messageOf(error)}`,
      { cause: error },
    );
  }
  const exported = isPlugin(mod.plugin) ? mod.plugin : isPlugin(mod.default) ? mod.default : undefined;
  if (!exported) {
    const names = Object.keys(mod).filter((k) => k !== '__esModule');
    throw new TaskforgeError(
      `Package '${plugin.packageName}' (${plugin.dir}) has a ` +
        `"taskforge" field in its package.json, so it must export ` +
        "`plugin` (or a default export) of type TaskforgePlugin: `export const plugin = { packageName: '" +
        `${plugin.packageName}', register(registry) { registry.register({ ` +
        `kind, name, description, schema, create }) } }\`. ` +
        `It exports ${names.length ? names.map((n) => `'${n}'`).join(', ') : 'nothing'} instead` +
        `${'plugin' in mod ? " ('plugin' lacks a string packageName or a register function)" : ''}.`,
    );
  }
  if (exported.packageName !== plugin.packageName) {
    throw new TaskforgeError(
      `Package '${plugin.packageName}' exports a plugin whose packageName is '${exported.packageName}'; ` +
        `set it to '${plugin.packageName}' so errors and \`taskforge list\` name the right package.`,
    );
  }
  return exported;
}

/**
 * Imports every discovered plugin (in order) and registers its components.
 * @throws TaskforgeError (exit 1) as `importPlugin` and `ComponentRegistry.registerPlugin` do.
 */
export async function loadPlugins(
  discovered: DiscoveryResult | readonly DiscoveredPlugin[],
  registry: ComponentRegistry,
): Promise<void> {
  const plugins = 'plugins' in discovered ? discovered.plugins : discovered;
  for (const plugin of plugins) registry.registerPlugin(await importPlugin(plugin));
}
