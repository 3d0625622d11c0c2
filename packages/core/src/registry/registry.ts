import { suggest } from '../config/suggest.js';
import { ConfigError, TaskforgeError, type ConfigProblem } from '../errors.js';
import {
  COMPONENT_KINDS,
  type ComponentKind,
  type PluginRegistry,
  type ComponentSpec,
  type TaskforgePlugin,
} from './types.js';

/** Lower-case segments separated by single slashes: `gpt2`, `vision/igpt`, `early_stopping`. */
const NAME_PATTERN = /^[a-z0-9_-]+(\/[a-z0-9_-]+)*$/;

/** Who registered a component when no plugin package is involved (tests, embedding apps). */
export const LOCAL_PACKAGE = '<local>';

export interface RegistryEntry {
  /** `<kind>/<name>`, the value of `_target_` in config. */
  target: string;
  kind: ComponentKind;
  name: string;
  description: string;
  packageName: string;
}

interface Registered {
  entry: RegistryEntry;
  spec: ComponentSpec;
}

export function isComponentKind(value: string): value is ComponentKind {
  return (COMPONENT_KINDS as readonly string[]).includes(value);
}

/** Splits `backbone/gpt2` into kind and name; undefined when the kind part is not a known kind. */
export function parseTarget(target: string): { kind: ComponentKind; name: string } | undefined {
  const slash = target.indexOf('/');
  if (slash < 0) return undefined;
  const kind = target.slice(0, slash);
  const name = target.slice(slash + 1);
  return isComponentKind(kind) && NAME_PATTERN.test(name) ? { kind, name } : undefined;
}

/**
 * Every component the installed plugins provide, keyed by `<kind>/<name>`. Config can only ever
 * name what is registered here: `_target_` is a lookup key, never a module path.
 */
export class ComponentRegistry implements PluginRegistry {
  private readonly components = new Map<string, Registered>();
  private readonly plugins = new Map<string, TaskforgePlugin>();

  /**
   * Registers a component on behalf of no package (`<local>`); plugins go through `registerPlugin`.
   * @throws TaskforgeError (exit 1) when the spec is malformed (kind, name, schema or create) or
   *   its `<kind>/<name>` is already registered, naming both owners.
   */
  register<K extends ComponentKind>(spec: ComponentSpec<K>): void {
    this.add(spec, LOCAL_PACKAGE);
  }

  /**
   * The `PluginRegistry` view that records `packageName` as the owner of what it registers.
   * Its `register` throws as `register` does.
   */
  forPackage(packageName: string): PluginRegistry {
    return { register: (spec) => this.add(spec, packageName) };
  }

  /**
   * Runs a plugin's `register`. Registering the same plugin object again is a no-op; a different
   * object under the same package name means the package was loaded twice (two copies, or src
   * and dist), which would split module state, so it is refused.
   * @throws TaskforgeError (exit 1) for a package loaded twice, a component registered twice or a
   *   malformed spec, or wrapping anything else the plugin's `register` threw (with the package name).
   */
  registerPlugin(plugin: TaskforgePlugin): void {
    const previous = this.plugins.get(plugin.packageName);
    if (previous === plugin) return;
    if (previous) {
      throw new TaskforgeError(
        `Plugin package '${plugin.packageName}' was loaded twice as two different module instances ` +
          `(two installed copies, or both its source and its build). Run \`npm ls ${plugin.packageName}\` ` +
          'and `npm dedupe` so that only one copy is installed.',
      );
    }
    this.plugins.set(plugin.packageName, plugin);
    try {
      plugin.register(this.forPackage(plugin.packageName));
    } catch (error) {
      if (error instanceof TaskforgeError) throw error;
      throw new TaskforgeError(
        `Plugin package '${plugin.packageName}' failed while registering its components: ${messageOf(error)}`,
        { cause: error },
      );
    }
  }

  has(target: string): boolean {
    return this.components.has(target);
  }

  /**
   * The spec for `target`.
   * @throws ConfigError (exit 2) for an unknown target, at `path`, with close registered names.
   */
  resolve(target: string, path = '_target_'): ComponentSpec {
    const found = this.components.get(target);
    if (found) return found.spec;
    throw new ConfigError([this.unknownTargetProblem(target, path)]);
  }

  /** The registry entry (owner package, description) for `target`, if registered. */
  entry(target: string): RegistryEntry | undefined {
    return this.components.get(target)?.entry;
  }

  /** Entries sorted by target, optionally only one kind. */
  list(kind?: ComponentKind): RegistryEntry[] {
    return [...this.components.values()]
      .map((r) => r.entry)
      .filter((e) => kind === undefined || e.kind === kind)
      .sort((a, b) => a.target.localeCompare(b.target));
  }

  /** The problem to report for an unregistered `target`, with suggestions from the same kind. */
  unknownTargetProblem(target: unknown, path: string): ConfigProblem {
    const parsed = typeof target === 'string' ? parseTarget(target) : undefined;
    const pool = this.list(parsed?.kind).map((e) => e.target);
    const suggestions = typeof target === 'string' ? suggest(target, pool) : [];
    let message: string;
    if (parsed) {
      const known = pool.length
        ? `registered ${parsed.kind} components: ${pool.join(', ')}`
        : `no ${parsed.kind} components are registered`;
      message =
        `no ${parsed.kind} of that name is registered (${known}); ` +
        `is the plugin package that provides it installed?`;
    } else {
      message =
        `'_target_' must name a registered component as '<kind>/<name>' with kind one of ` +
        `${COMPONENT_KINDS.join(', ')} (module or file paths are never imported from config); ` +
        'run `taskforge list` to see what is registered';
    }
    return { path, message, value: target, ...(suggestions.length ? { suggestions } : {}) };
  }

  private add(spec: ComponentSpec, packageName: string): void {
    const what = `Package '${packageName}' tried to register a component`;
    if (!spec || typeof spec !== 'object')
      throw new TaskforgeError(`${what} that is not an object (got ${typeof spec}).`);
    if (typeof spec.kind !== 'string' || !isComponentKind(spec.kind)) {
      throw new TaskforgeError(
        `${what} with kind ${JSON.stringify(spec.kind)}; kind must be one of ${COMPONENT_KINDS.join(', ')}.`,
      );
    }
    if (typeof spec.name !== 'string' || !NAME_PATTERN.test(spec.name)) {
      throw new TaskforgeError(
        `${what} named ${JSON.stringify(spec.name)}; names use lower-case letters, digits, '_' and '-', ` +
          "in segments separated by '/' (e.g. 'gpt2', 'vision/igpt').",
      );
    }
    const target = `${spec.kind}/${spec.name}`;
    if (typeof spec.schema?.safeParse !== 'function' || typeof spec.create !== 'function') {
      throw new TaskforgeError(
        `${what} '${target}' without a zod \`schema\` and a \`create\` function; both are required.`,
      );
    }
    const existing = this.components.get(target);
    if (existing) {
      const owner = existing.entry.packageName;
      throw new TaskforgeError(
        `Component '${target}' is registered twice: by '${owner}' and by '${packageName}'. ` +
          (owner === packageName
            ? 'A package must register each name once.'
            : 'Uninstall one of the two packages, or rename the component in one of them.'),
      );
    }
    const entry: RegistryEntry = {
      target,
      kind: spec.kind,
      name: spec.name,
      description: String(spec.description ?? ''),
      packageName,
    };
    this.components.set(target, { entry, spec });
  }
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
