import { ConfigError, type ConfigProblem } from '../errors.js';
import { DefaultsExpander, unusedOverrideProblem, type Entry, type GroupOverride } from './defaults.js';
import { resolveInterpolations } from './interpolate.js';
import { mergeAtPackage, type Sources } from './merge.js';
import { applyValueOverrides, parseOverride, type Override } from './overrides.js';
import { getPath, hasPath, isPlainObject, type ConfigNode } from './paths.js';
import { findConfigFile, listGroups, listPrimaryConfigs } from './search-path.js';
import { suggest } from './suggest.js';

/** Options for {@link composeConfig}. */
export interface ComposeOptions {
  /** Conf dirs, highest priority first: the project's `conf/`, then each plugin's. */
  searchPath: string[];
  /** Primary config file name without extension; default `config`. */
  configName?: string;
  /** Command-line overrides, e.g. `task=vision/igpt`, `trainer.max_steps=10`, `+x=1`, `~y`. */
  overrides?: string[];
  /** Environment for `${env:...}`; default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

/** The result of {@link composeConfig}. */
export interface ComposedConfig {
  /** The merged, overridden and interpolated config (plain objects; no `defaults` key). */
  config: ConfigNode;
  /** Dotted leaf path → where its value came from (file path, or `command line`). */
  sources: Map<string, string>;
  /** Final config group selections in defaults order, e.g. `{ task: 'vision/igpt', dataset: null }`. */
  choices: Record<string, string | null>;
}

/**
 * Composes a config the way Hydra does: loads the primary config from the search path, expands
 * its `defaults` list (config groups, `@package` placement, `_self_`, `override`), deep-merges
 * everything, applies command-line overrides, then resolves `${...}` interpolations.
 *
 * A config group override (`task=vision/igpt`, `+group=option`, `~group`) is recognised when its key
 * names a config group directory in the search path and its value is a plain name; every other
 * override addresses a key path. All problems found are reported together in one ConfigError.
 */
export function composeConfig(options: ComposeOptions): ComposedConfig {
  const { searchPath, configName = 'config', overrides = [], env = process.env } = options;
  const problems: ConfigProblem[] = [];
  const primaryName = configName.replace(/\.ya?ml$/, '');
  const primary = findConfigFile(searchPath, primaryName);
  if (!primary) {
    throw new ConfigError(
      [
        {
          path: '',
          message: `primary config '${primaryName}.yaml' not found in the search path (${searchPath.join(', ') || 'empty'}); create it in your conf/ dir or pass an existing config name`,
          suggestions: suggest(primaryName, listPrimaryConfigs(searchPath)),
        },
      ],
      'Cannot compose the configuration',
    );
  }

  const groups = new Set(listGroups(searchPath));
  const groupOverrides = new Map<string, GroupOverride>();
  const appended: Entry[] = [];
  const valueOverrides: Override[] = [];
  for (const text of overrides) {
    let ov: Override;
    try {
      ov = parseOverride(text);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(...error.problems);
      continue;
    }
    const name = ov.key.replace(/^\//, '');
    const isGroup = groups.has(name.split('@')[0]!) && (typeof ov.value !== 'object' || ov.value === null);
    if (!isGroup) {
      valueOverrides.push(ov);
      continue;
    }
    const [group, pkg] = name.split('@') as [string, string | undefined];
    const option = ov.value === null ? null : (ov.rawValue ?? null);
    const where = 'command line';
    if (ov.kind === 'add') appended.push({ kind: 'group', name: group, pkg, option, where, cli: ov.text });
    else if (ov.kind === 'delete') groupOverrides.set(name, { option: null, remove: { expected: ov.rawValue }, where, cli: ov.text, parsed: ov, used: false });
    else groupOverrides.set(name, { option, where, cli: ov.text, parsed: ov, force: ov.kind === 'force', used: false });
  }

  let expander = new DefaultsExpander(searchPath, new Map(groupOverrides));
  let expansion = expander.expand(primary, () => '', appended, []);
  // `++group=option` changes the selection when the group is in the tree and adds it otherwise;
  // which one applies is only known after expanding, so add the unused ones and expand again.
  const forced = [...expander.overrides].filter(([, o]) => o.force && !o.used);
  if (forced.length > 0) {
    for (const [name] of forced) groupOverrides.delete(name);
    for (const [name, o] of forced) {
      const [group, pkg] = name.split('@') as [string, string | undefined];
      appended.push({ kind: 'group', name: group, pkg, option: o.option, where: o.where, cli: o.cli });
    }
    expander = new DefaultsExpander(searchPath, new Map(groupOverrides));
    expansion = expander.expand(primary, () => '', appended, []);
  }
  problems.push(...expander.problems);
  const selected = expansion.choices.map(([key]) => key);
  const unused = [...expander.overrides].filter(([, o]) => !o.used);
  // A command-line `name=value` or `~name` whose name is a group directory but not in the defaults
  // tree may still address a plain key of that name (`~trainer`); decide once the tree is merged.
  const failing = problems.length > 0 || unused.some(([, o]) => !o.parsed);
  for (const [key, override] of unused) {
    if (!override.parsed || failing) problems.push(unusedOverrideProblem(key, override, selected));
  }
  if (problems.length > 0) throw new ConfigError(problems, 'Cannot compose the configuration');

  const config: ConfigNode = {};
  const sources: Sources = new Map();
  for (const item of expansion.items) mergeAtPackage(config, item.pkg, item.body, item.source, sources);
  for (const [key, override] of unused) {
    const { kind, key: path } = override.parsed!;
    // Replacing a whole mapping with an option-like name is almost surely a missing `+`, so only
    // deletions and scalar keys fall back to plain key overrides.
    if (hasPath(config, path) && (kind === 'delete' || !isPlainObject(getPath(config, path)))) valueOverrides.push(override.parsed!);
    else problems.push(unusedOverrideProblem(key, override, selected));
  }
  valueOverrides.sort((a, b) => overrides.indexOf(a.text) - overrides.indexOf(b.text));
  applyValueOverrides(config, sources, valueOverrides, groups, problems);
  problems.push(...resolveInterpolations(config, sources, env));
  if (problems.length > 0) throw new ConfigError(problems, 'Invalid configuration');
  return { config, sources, choices: Object.fromEntries(expansion.choices) };
}
