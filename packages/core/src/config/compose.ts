import { ConfigError, type ConfigProblem } from '../errors.js';
import {
  DefaultsExpander,
  unusedOverrideProblem,
  type Entry,
  type GroupChange,
  type GroupOverride,
  type MergeItem,
} from './defaults.js';
import { resolveInterpolations } from './interpolate.js';
import { mergeAtPackage, type Sources } from './merge.js';
import { applyValueOverrides, parseOverride, type AppliedOverride, type Override } from './overrides.js';
import { deepCopy, getPath, hasPath, isPlainObject, splitPath, type ConfigNode } from './paths.js';
import { shellWord } from './override-grammar.js';
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
  /**
   * When true, problems found once the tree is merged (value overrides, interpolation) are
   * returned in `problems` instead of thrown, so the caller can validate the rest of the tree and
   * report everything at once. Problems that leave no tree (files, defaults lists, groups) still throw.
   */
  collectProblems?: boolean;
}

/** The result of {@link composeConfig}. */
export interface ComposedConfig {
  /** The merged, overridden and interpolated config (plain objects; no `defaults` key). */
  config: ConfigNode;
  /** Dotted leaf path → where its value came from (file path, or `command line`). */
  sources: Map<string, string>;
  /** Final config group selections in defaults order, e.g. `{ task: 'vision/igpt', dataset: null }`. */
  choices: Record<string, string | null>;
  /**
   * Settings dropped because the group they were written for now selects an option without them,
   * one sentence each (e.g. "packages/task-igpt/conf/task/vision/igpt.yaml sets scheduler.min_lr_ratio, …").
   */
  notes: string[];
  /** Problems collected with `collectProblems` (else always empty: they are thrown). */
  problems: ConfigProblem[];
  /** Dotted path → the command-line override that set it (as typed, and the value it replaced), for messages. */
  overrides: Map<string, AppliedOverride>;
}

/**
 * Composes a config the way Hydra does: loads the primary config from the search path, expands
 * its `defaults` list (config groups, `@package` placement, `_self_`, `override`), deep-merges
 * everything, applies command-line overrides, then resolves `${...}` interpolations.
 *
 * A config group override (`task=vision/igpt`, `+group=option`, `~group`) is recognised when its key
 * names a config group directory in the search path and its value is a plain name; every other
 * override addresses a key path. All problems found are reported together in one ConfigError.
 * @throws ConfigError (exit 2) when the primary config is not on the search path, or listing every
 *   problem in the files, defaults lists, overrides and interpolations (each with its source).
 */
export function composeConfig(options: ComposeOptions): ComposedConfig {
  const { searchPath, configName = 'config', overrides = [], env = process.env, collectProblems = false } = options;
  const problems: ConfigProblem[] = [];
  const primaryName = configName.replace(/\.ya?ml$/, '');
  const primary = findConfigFile(searchPath, primaryName);
  if (!primary) {
    throw new ConfigError(
      [
        {
          path: '',
          message:
            `primary config '${primaryName}.yaml' not found in the search path ` +
            `(${searchPath.join(', ') || 'empty'}); create it in your conf/ dir or pass an ` +
            `existing config name`,
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
  // An override that cannot be parsed is skipped; the tree is still composed, so its problem is
  // reported together with every other one.
  const parseProblems: ConfigProblem[] = [];
  for (const text of overrides) {
    let ov: Override;
    try {
      ov = parseOverride(text);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      parseProblems.push(...error.problems.map((p) => ({ ...p, override: text })));
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
    else if (ov.kind === 'delete')
      groupOverrides.set(name, {
        option: null,
        remove: { expected: ov.rawValue },
        where,
        cli: ov.text,
        parsed: ov,
        used: false,
      });
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
  if (problems.length > 0) throw new ConfigError([...parseProblems, ...problems], 'Cannot compose the configuration');
  problems.push(...parseProblems);

  const { items, notes } = followGroupSelections(expansion.items, expander.changes);
  const config: ConfigNode = {};
  const sources: Sources = new Map();
  for (const item of items) mergeAtPackage(config, item.pkg, item.body, item.source, sources);
  for (const [key, override] of unused) {
    const { kind, key: path } = override.parsed!;
    // Replacing a whole mapping with an option-like name is almost surely a missing `+`, so only
    // deletions and scalar keys fall back to plain key overrides.
    if (hasPath(config, path) && (kind === 'delete' || !isPlainObject(getPath(config, path))))
      valueOverrides.push(override.parsed!);
    else problems.push(unusedOverrideProblem(key, override, selected));
  }
  valueOverrides.sort((a, b) => overrides.indexOf(a.text) - overrides.indexOf(b.text));
  const applied = new Map<string, AppliedOverride>();
  applyValueOverrides(config, sources, valueOverrides, groups, problems, applied);
  problems.push(...resolveInterpolations(config, sources, env));
  if (problems.length > 0 && !collectProblems) {
    // Without a schema every mapping is open, so adding a missing key with `+` works.
    const offered = problems.map(({ addAs, ...p }) =>
      addAs === undefined
        ? p
        : { ...p, fixes: [...(p.fixes ?? []), `write ${shellWord(addAs)} to add it as a new key`] },
    );
    throw new ConfigError(offered, 'Invalid configuration');
  }
  return { config, sources, choices: Object.fromEntries(expansion.choices), notes, problems, overrides: applied };
}

/**
 * A file that sets keys under a config group (a task's `scheduler: {min_lr_ratio: 0}`) wrote them
 * for the option its defaults list named. When the selection changes (`scheduler=constant`, or an
 * `override` entry), those settings follow the new option: keys it has keep the file's values, keys
 * it lacks are dropped, each with a note. When the group selects nothing (`~scheduler`,
 * `scheduler=null`), everything under it is dropped, so no half-configured node is left behind.
 * Group options that land at the root (`@package _global_`) are left alone. Returns the items to
 * merge (copies; a body emptied for a deleted group merges nothing) and the notes.
 */
function followGroupSelections(all: MergeItem[], changes: GroupChange[]): { items: MergeItem[]; notes: string[] } {
  const notes: string[] = [];
  const items = all.map((item) => ({ ...item }));
  for (const change of changes) {
    if (change.pkg === '') continue;
    const option: ConfigNode = {};
    for (const item of items)
      if (item.group === change.key) mergeAtPackage(option, item.pkg, item.body, item.source, new Map());
    const node = change.to === null ? undefined : getPath(option, change.pkg);
    const keep = (key: string) => isPlainObject(node) && Object.hasOwn(node, key);
    const drop = (item: MergeItem, key: string) => {
      if (change.to !== null) {
        notes.push(
          `${item.source} sets ${change.pkg}.${key} for ${change.key} ` +
            `'${change.from}', but '${change.to}' is selected ` +
            `(${change.where}) and has no such key; the setting is dropped`,
        );
      }
    };
    for (const item of items) {
      if (item.group === change.key || item.source === change.changedIn) continue;
      if (item.pkg === change.pkg || item.pkg.startsWith(`${change.pkg}.`)) {
        // The whole body lands inside the group's node: filter its top-level keys (or the item itself).
        const first = item.pkg === change.pkg ? undefined : splitPath(item.pkg.slice(change.pkg.length + 1))[0]!;
        if (first !== undefined) {
          if (!keep(first)) {
            drop(item, first);
            item.pkg = '';
            item.body = {};
          }
          continue;
        }
        item.body = filterKeys(item.body, keep, (key) => drop(item, key));
        if (change.to === null) item.pkg = ''; // nothing is left for the deleted group: merge no empty node
      } else if (item.pkg === '' || change.pkg.startsWith(`${item.pkg}.`)) {
        const relative = splitPath(item.pkg === '' ? change.pkg : change.pkg.slice(item.pkg.length + 1));
        const inner = getPath(item.body, relative.join('.'));
        if (inner === undefined) continue;
        const body = deepCopy(item.body);
        let parent: ConfigNode = body;
        for (const key of relative.slice(0, -1)) parent = parent[key] as ConfigNode;
        const last = relative.at(-1)!;
        if (isPlainObject(inner)) parent[last] = filterKeys(inner, keep, (key) => drop(item, key));
        else if (change.to === null) delete parent[last];
        if (isPlainObject(parent[last]) && Object.keys(parent[last] as ConfigNode).length === 0 && change.to === null)
          delete parent[last];
        item.body = body;
      }
    }
  }
  return { items, notes };
}

function filterKeys(node: ConfigNode, keep: (key: string) => boolean, dropped: (key: string) => void): ConfigNode {
  const out: ConfigNode = {};
  for (const [key, value] of Object.entries(node)) {
    if (keep(key)) out[key] = value;
    else dropped(key);
  }
  return out;
}
