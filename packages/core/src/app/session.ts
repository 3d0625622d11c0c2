/**
 * A session ties the pieces together for one command: a service container, the plugins found
 * in the project, the config search path, and composition + validation of the run config.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { DependencyContainer } from 'tsyringe';
import { z } from 'zod';
import { attachEnvSources, composeConfig, parseOverride, type ComposedConfig } from '../config/index.js';
import { explainProblems } from '../config/explain.js';
import { shellWord } from '../config/override-grammar.js';
import { displayPath, findConfigFile, listGroupOptions } from '../config/search-path.js';
import { loadConfigFile } from '../config/yaml-io.js';
import { setPath, type ConfigNode } from '../config/paths.js';
import { ConfigError, type ConfigProblem } from '../errors.js';
import { discoverPlugins, loadPlugins, type DiscoveredPlugin, type SkippedPlugin } from '../registry/discovery.js';
import type { ComponentRegistry } from '../registry/registry.js';
import type { RunConfigDraft } from '../registry/types.js';
import { isComponentNode, validateConfig } from '../registry/validate.js';
import { keyAliasMessage } from '../registry/zod-issues.js';
import { createContainer } from './container.js';
import { findProjectRoot } from '../services/paths.js';
import { Tokens, type Output } from '../services/tokens.js';
import { trainerConfigSchema, type TrainerConfig } from '../trainer/config.js';

export interface SessionOptions {
  cwd?: string;
  /** The project's own conf dir, searched first; default `<project root>/conf`. */
  configDir?: string;
  /** Primary config name; default `config`. */
  configName?: string;
  /** A container to build on (tests swap services here); default: a fresh one. */
  container?: DependencyContainer;
  /**
   * The command's config overrides. Only `plugins=[…]`, `+plugins=[…]`, `++plugins=[…]` and
   * `~plugins` are read here (to find plugins before the search path exists); composition applies
   * all of them later as usual.
   */
  overrides?: readonly string[];
  /**
   * Plugin package names to load, used instead of the primary config file's `plugins` and the
   * overrides (a DDP worker passes the run's validated list).
   */
  plugins?: readonly string[];
  /**
   * Print discovery warnings (plugins skipped as unbuilt); default true. A DDP worker passes
   * false: the main thread already printed them for the same project.
   */
  discoveryWarnings?: boolean;
}

/** The validated run config. Component sections keep their `_target_`. */
export interface RunConfig {
  task?: ConfigNode;
  dataset?: ConfigNode;
  backbone?: ConfigNode;
  optimizer?: ConfigNode;
  scheduler?: ConfigNode;
  trainer: TrainerConfig;
  plugins: string[];
  [key: string]: unknown;
}

export interface ComposedRun {
  config: RunConfig;
  /** Where each value came from (files, command line, or a schema default). */
  sources: Map<string, string>;
  choices: Record<string, string | null>;
  /** Settings dropped because their group now selects an option without them (already printed as warnings). */
  notes: string[];
}

/** Top-level sections of a run config; anything else is a misspelling. */
const ROOT_SCHEMAS = {
  trainer: trainerConfigSchema,
  plugins: z.array(z.string()).default([]),
};
const COMPONENT_SECTIONS = ['task', 'dataset', 'backbone', 'optimizer', 'scheduler'] as const;
/**
 * Sections a configured task is built with (the optimizer only in `train`, but `config` validates
 * as `train` does); `~scheduler` means a constant learning rate. A project that selects no task
 * at all still prints its skeleton with `taskforge config`; commands refuse it ("Nothing to run").
 */
const REQUIRED_WITH_TASK = ['dataset', 'backbone', 'optimizer'] as const;

export class Session {
  private constructor(
    readonly container: DependencyContainer,
    readonly projectRoot: string,
    readonly plugins: DiscoveredPlugin[],
    readonly searchPath: string[],
    private readonly configName: string,
    /** Workspace plugins skipped because they are not built (a warning named each when the session opened). */
    readonly skipped: SkippedPlugin[] = [],
    /**
     * The package names the `plugins` config key listed for this command (from the primary config
     * file and the overrides, or `SessionOptions.plugins`); DDP workers open their session with them.
     */
    readonly listedPlugins: string[] = [],
  ) {}

  /**
   * Finds and loads the project's plugins: every installed package with a `"taskforge"` field,
   * plus the names in the config's `plugins` list (see {@link configuredPlugins}), then builds the
   * search path: the project's conf dir first, then each plugin's conf dir.
   * @throws ConfigError (exit 2) for a missing `--config-dir`, a malformed `plugins` value, or a
   *   listed plugin that is not installed (naming it, where it was listed, and `npm install <name>`).
   * @throws TaskforgeError (exit 1) when a plugin fails to load.
   */
  static async open(options: SessionOptions = {}): Promise<Session> {
    const container = options.container ?? createContainer();
    const projectRoot = findProjectRoot(options.cwd);
    const projectConf = options.configDir ? resolve(options.configDir) : join(projectRoot, 'conf');
    if (options.configDir && !existsSync(projectConf)) {
      throw new ConfigError(`the config dir ${projectConf} (from --config-dir) does not exist`, 'Usage error');
    }
    const configName = options.configName ?? 'config';
    const listed = options.plugins
      ? options.plugins.map((name) => ({ name, source: 'the run config' }))
      : configuredPlugins(projectConf, configName, options.overrides ?? []);
    const discovered = discoverPlugins({
      projectRoot,
      extra: listed.map((p) => p.name),
      extraSources: Object.fromEntries(listed.map((p) => [p.name, p.source])),
    });
    const output = container.resolve<Output>(Tokens.Output);
    if (options.discoveryWarnings !== false) {
      for (const skipped of discovered.skipped) output.warn(skipped.message);
      for (const stale of discovered.stale) output.warn(stale);
    }
    await loadPlugins(discovered, container.resolve<ComponentRegistry>(Tokens.Registry));
    const searchPath = [...(existsSync(projectConf) ? [projectConf] : []), ...discovered.searchPathDirs];
    return new Session(
      container,
      projectRoot,
      discovered.plugins,
      searchPath,
      configName,
      discovered.skipped,
      listed.map((p) => p.name),
    );
  }

  get registry(): ComponentRegistry {
    return this.container.resolve<ComponentRegistry>(Tokens.Registry);
  }

  /**
   * Composes the config from the search path and overrides, lets the configured components adjust
   * it (their `adjustRunConfig`, unless `adjust: false`; their notes are printed as information),
   * then validates every section; notes about settings dropped by a group swap are printed as
   * warnings. Every command (`config` included) goes through here, so all validate alike.
   * @throws ConfigError (exit code 2) listing every problem; a config group option (or group) that
   *   is missing while workspace plugins were skipped as not built says so, naming the plugin that
   *   provides it and its build command when one does.
   */
  compose(
    overrides: string[],
    options: { searchPath?: string[]; configName?: string; adjust?: boolean } = {},
  ): ComposedRun {
    try {
      return this.composeChecked(overrides, options);
    } catch (error) {
      throw error instanceof ConfigError ? this.explainUnbuilt(error) : error;
    }
  }

  /**
   * Adds to each problem about a missing config group option (or group) which skipped, unbuilt
   * plugin provides it (its conf dir has the file) and the command that builds it; when none
   * does, names the skipped plugins, as one of them may be meant. Other problems are unchanged.
   */
  private explainUnbuilt(error: ConfigError): ConfigError {
    if (!this.skipped.length) return error;
    let changed = false;
    const problems = error.problems.map((problem) => {
      const missing = problem.missingConfig;
      if (!missing) return problem;
      changed = true;
      const name = missing.option === undefined ? undefined : `${missing.group}/${missing.option}`;
      const providers = this.skipped.filter((s) =>
        s.confDir === undefined
          ? false
          : name !== undefined
            ? findConfigFile([s.confDir], name) !== undefined
            : existsSync(join(s.confDir, missing.group)),
      );
      const what = name !== undefined ? `'${name}'` : `config group '${missing.group}'`;
      const note = providers.length
        ? `${what} is in ${providers.map((s) => s.packageName).join(' and ')}, skipped because it is not built`
        : `${this.skipped.length} plugin${this.skipped.length === 1 ? ' was' : 's were'} skipped because ` +
          `not built (${this.skipped.map((s) => s.packageName).join(', ')}); ` +
          `if ${what} comes from one of them, build it`;
      const fixes = providers.length
        ? [...providers.map((s) => `run \`${s.buildCommand}\``), ...(problem.fixes ?? [])]
        : [...(problem.fixes ?? []), 'run `npx nx run-many -t build`'];
      return { ...problem, message: `${problem.message}; ${note} (see the "Skipping plugin" warning above)`, fixes };
    });
    if (!changed) return error;
    return new ConfigError(problems, error.heading);
  }

  private composeChecked(
    overrides: string[],
    options: { searchPath?: string[]; configName?: string; adjust?: boolean },
  ): ComposedRun {
    const { composed, run, problems, adjusted } = this.check(overrides, options);
    if (problems.length) {
      for (const problem of problems) this.explainKeyAlias(problem, composed.config);
      // `+key=value` is offered for a missing key only where it would be accepted: try it.
      for (const problem of problems) {
        if (problem.addAs === undefined) continue;
        const trial = this.check(
          overrides.map((o) => (o === problem.override ? problem.addAs! : o)),
          options,
        );
        // Any problem at the key, below it, or at a mapping above it (a closed schema refusing the new key) counts.
        const related = (p: string) =>
          p === problem.path ||
          p.startsWith(`${problem.path}.`) ||
          p.startsWith(`${problem.path}[`) ||
          problem.path.startsWith(`${p}.`);
        if (!trial.problems.some((p) => related(p.path)))
          problem.fixes = [...(problem.fixes ?? []), `write ${shellWord(problem.addAs)} to add it as a new key`];
      }
      throw new ConfigError(problems.map(({ addAs: _, ...p }) => p));
    }
    const output = this.container.resolve<Output>(Tokens.Output);
    for (const note of composed.notes) output.warn(note);
    for (const note of adjusted) output.info(note);
    return run!;
  }

  /**
   * An override of a key that does not exist, named as another library names one of the
   * component's settings (`ComponentSpec.keyAliases`: `backbone.n_layer` for gpt2's `num_layers`):
   * says so and offers the override of that key, in place of an edit distance's guesses.
   */
  private explainKeyAlias(problem: ConfigProblem, config: Record<string, unknown>): void {
    if (problem.addAs === undefined || problem.override === undefined) return;
    const [section, key, ...deeper] = problem.path.split('.');
    const node = config[section!];
    if (key === undefined || deeper.length > 0 || !isComponentNode(node) || typeof node._target_ !== 'string') return;
    if (!this.registry.has(node._target_)) return;
    const ours = this.registry.resolve(node._target_).keyAliases?.[key];
    if (ours === undefined || !(ours in node)) return;
    const at = problem.override.indexOf(problem.path);
    const fixed = `${problem.override.slice(0, at)}${section}.${ours}${problem.override.slice(at + problem.path.length)}`;
    problem.message = keyAliasMessage(node._target_, key, ours);
    problem.suggestions = [`${section}.${ours}`];
    problem.fixes = [`write ${shellWord(fixed)}`];
    delete problem.addAs;
  }

  /**
   * Composes and validates, collecting every problem instead of throwing at the first pass: key
   * errors from the overrides and value errors from the schemas come back together, each with
   * its source and fixes (see explainProblems). Problems that leave no tree to validate (a broken
   * file, an unknown config group option) are thrown as before.
   */
  private check(
    overrides: string[],
    options: { searchPath?: string[]; configName?: string; adjust?: boolean },
  ): { composed: ComposedConfig; run?: ComposedRun; problems: ConfigProblem[]; adjusted: string[] } {
    let composed: ComposedConfig;
    try {
      composed = composeConfig({
        searchPath: options.searchPath ?? this.searchPath,
        configName: options.configName ?? this.configName,
        overrides,
        collectProblems: true,
      });
    } catch (error) {
      // A bad group override (`task=vision/igtp`) leaves no tree; without the overrides at fault
      // the rest can still be checked, so their problems come in the same message.
      if (!(error instanceof ConfigError)) throw error;
      const atFault = new Set(error.problems.map((p) => p.override));
      if (atFault.has(undefined) || !overrides.some((o) => atFault.has(o))) throw error;
      const { heading } = error;
      let more: ConfigProblem[];
      try {
        more = this.check(
          overrides.filter((o) => !atFault.has(o)),
          options,
        ).problems;
      } catch (again) {
        if (!(again instanceof ConfigError)) throw again;
        more = again.problems;
      }
      // Without the overrides at fault, their groups fall back to the defaults they replace: what
      // is wrong there (an unbuilt plugin's default, say) is not what the user ran.
      const replaced = error.problems.filter((p) => p.override !== undefined).map((p) => p.path);
      const inReplaced = (path: string) => replaced.some((r) => path === r || path.startsWith(`${r}.`));
      throw new ConfigError([...error.problems, ...more.filter((p) => !inReplaced(p.path))], heading);
    }
    // The configured components adjust the tree before it is validated (their notes are printed on success).
    const adjusted = options.adjust !== false ? this.adjust(composed) : [];
    let found: ConfigProblem[] = [];
    let run: ComposedRun | undefined;
    try {
      run = this.validate(composed);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      found = error.problems;
    }
    // A value composition already reported (e.g. an interpolation that failed) is not reported again.
    const reported = composed.problems.map((p) => p.path).filter((p) => p !== '');
    const covered = (path: string) => reported.some((r) => path === r || path.startsWith(`${r}.`));
    // A value still holding `${…}` was left unresolved because of an interpolation problem already
    // reported (e.g. `backbone.init_seed: ${trainer.seed}` after `trainer.seed=${nope}`).
    const unresolved = (p: ConfigProblem) =>
      composed.problems.length > 0 && typeof p.value === 'string' && p.value.includes('${');
    const problems = [...composed.problems, ...found.filter((p) => !covered(p.path) && !unresolved(p))];
    return { composed, ...(run ? { run } : {}), problems: explainProblems(problems, composed), adjusted };
  }

  /**
   * Calls `adjustRunConfig` of the component each top-level section names (unknown targets are
   * left to validation), in place; returns their notes.
   */
  private adjust(composed: ComposedConfig): string[] {
    const notes: string[] = [];
    const { config, sources } = composed;
    for (const section of COMPONENT_SECTIONS) {
      const node = config[section];
      if (!isComponentNode(node) || typeof node._target_ !== 'string' || !this.registry.has(node._target_)) continue;
      const spec = this.registry.resolve(node._target_);
      if (!spec.adjustRunConfig) continue;
      const draft: RunConfigDraft = {
        config,
        section,
        node,
        sourceOf: (path) => sources.get(path),
        fromCommandLine: (path) =>
          [...sources].some(
            ([key, source]) => source === 'command line' && (key === path || key.startsWith(`${path}.`)),
          ),
        set(path, value, source) {
          setPath(config, path, value);
          for (const key of [...sources.keys()]) if (key.startsWith(`${path}.`)) sources.delete(key);
          sources.set(path, source);
        },
      };
      notes.push(...(spec.adjustRunConfig(draft) ?? []));
    }
    return notes;
  }

  /**
   * Validates a composed config: each component section against its component's schema, the
   * `trainer` section, the sections a configured task needs (dataset, backbone, optimizer), and that every
   * component section
   * names its component (`_target_`), so nothing half-configured reaches a command.
   * @throws ConfigError (exit code 2) listing every problem.
   */
  validate(composed: ComposedConfig): ComposedRun {
    const problems: ConfigProblem[] = [];
    const configured = (section: string) => composed.config[section] !== undefined && composed.config[section] !== null;
    for (const section of configured('task') ? REQUIRED_WITH_TASK : []) {
      if (!configured(section)) {
        const options = listGroupOptions(this.searchPath, section);
        problems.push({
          path: section,
          message:
            `no ${section} is configured; select one on the command line` +
            (options.length
              ? `: ${options.map((o) => `${section}=${o}`).join(', ')}`
              : `, e.g. ${section}=<option> (see \`taskforge list\`)`),
        });
      }
    }
    for (const section of COMPONENT_SECTIONS) {
      const node = composed.config[section];
      if (node === undefined || node === null || isComponentNode(node)) continue;
      const leaf = firstLeaf(composed.sources, section);
      const source = leaf === undefined ? undefined : composed.sources.get(leaf);
      problems.push({
        path: section,
        message:
          `has settings but names no component (no _target_): select an option ` +
          `with ${section}=<option>, or delete the whole group with ~${section}`,
        value: node,
        ...(source ? { source } : {}),
      });
    }
    if (problems.length) throw new ConfigError(problems);
    let config: RunConfig;
    try {
      config = validateConfig<ConfigNode>(composed.config, this.registry, {
        rootSchemas: ROOT_SCHEMAS,
        allowedRootKeys: COMPONENT_SECTIONS,
      }) as RunConfig;
    } catch (error) {
      // A type error in a value from `${env:…}` names the variable, not just the config key.
      throw error instanceof ConfigError ? attachEnvSources(error, composed.sources) : error;
    }
    const sources = new Map(composed.sources);
    markDefaults(config, '', sources);
    return { config, sources, choices: composed.choices, notes: composed.notes };
  }
}

/** One entry of the config's `plugins` list and where it was set (a file or `command line`). */
export interface ListedPlugin {
  name: string;
  source: string;
}

/**
 * The top-level `plugins` list as far as it can be known before plugins are loaded (they add conf
 * dirs, so the full composition must wait): the project's primary config file
 * (`<conf dir>/<configName>.yaml`, not the files its defaults list pulls in), then the overrides
 * in order: `plugins=[a,b]`, `+plugins=[…]` and `++plugins=[…]` replace the list, `~plugins`
 * empties it. Values are read with the config YAML reader and the override grammar.
 * @throws ConfigError (exit 2) when the file does not parse, or a `plugins` value is not a list of
 *   strings (naming the file or the override, and the expected form).
 */
export function configuredPlugins(confDir: string, configName: string, overrides: readonly string[]): ListedPlugin[] {
  let listed: ListedPlugin[] = [];
  const take = (value: unknown, source: string, write: string) => {
    if (!Array.isArray(value) || !value.every((v): v is string => typeof v === 'string')) {
      throw new ConfigError([
        {
          path: 'plugins',
          message: `must be a list of npm package names; write ${write}`,
          value,
          source,
        },
      ]);
    }
    listed = value.map((name) => ({ name, source }));
  };
  const file = findConfigFile([confDir], configName.replace(/\.ya?ml$/, ''));
  if (file) {
    const display = displayPath(file);
    const loaded = loadConfigFile(file, display);
    if (loaded.problems.length) throw new ConfigError(loaded.problems);
    if (Object.hasOwn(loaded.body, 'plugins') && loaded.body.plugins !== null) {
      take(loaded.body.plugins, display, "'plugins: [my-taskforge-plugin]' (or delete the key)");
    }
  }
  for (const text of overrides) {
    // Cheap pre-filter: parse only what can be a `plugins` override; composition parses the rest.
    if (!/^[+~]*plugins(=|$)/.test(text)) continue;
    const override = parseOverride(text);
    if (override.key !== 'plugins') continue;
    if (override.kind === 'delete') listed = [];
    else take(override.value, 'command line', "'plugins=[my-taskforge-plugin]' (quote it for the shell)");
  }
  return listed;
}

/** The first recorded leaf under `section`, to say where a value came from. */
function firstLeaf(sources: Map<string, string>, section: string): string | undefined {
  for (const key of sources.keys()) if (key.startsWith(`${section}.`)) return key;
  return undefined;
}

/** Values the files did not set came from a component's schema: say so in `taskforge config`. */
function markDefaults(node: unknown, path: string, sources: Map<string, string>): void {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) {
    if (path && !sources.has(path)) sources.set(path, 'schema default');
    return;
  }
  for (const [key, value] of Object.entries(node)) markDefaults(value, path ? `${path}.${key}` : key, sources);
}
