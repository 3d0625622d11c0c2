import type { ConfigProblem } from '../errors.js';
import type { Override } from './overrides.js';
import { isPlainObject, splitPath, type ConfigNode } from './paths.js';
import { displayPath, findConfigFile, listGroupOptions, listGroups, listPrimaryConfigs } from './search-path.js';
import { suggest } from './suggest.js';
import { shellWord, withPrefix } from './override-grammar.js';
import { loadConfigFile, type RawDefault } from './yaml-io.js';

/** One parsed `defaults` entry (or a `+group=option` from the command line). */
export interface Entry {
  kind: 'self' | 'config' | 'group';
  /** Group (for `group`) or file path (for `config`), without leading `/`. */
  name: string;
  option?: string | null;
  pkg?: string;
  override?: boolean;
  optional?: boolean;
  /** `file:line`, or `command line`. */
  where: string;
  /** The command-line override that produced this entry. */
  cli?: string;
}

/** A pending change to a group selection, from the command line or an `override` entry. */
export interface GroupOverride {
  option: string | null;
  remove?: { expected?: string };
  where: string;
  cli?: string;
  /** The parsed command-line override, kept to reinterpret it as a key override when unused. */
  parsed?: Override;
  force?: boolean;
  used: boolean;
}

export interface MergeItem {
  pkg: string;
  body: ConfigNode;
  source: string;
  /** The config group (key, e.g. `scheduler`) whose selected option this body belongs to; innermost wins. */
  group?: string;
}

/**
 * A group whose selection differs from what its defaults entry named (changed by `group=option`
 * or an `override` entry), or that selects nothing (`~group`, `group=null`, `group: null`).
 * Other files' settings under the group's package must then follow the selection.
 */
export interface GroupChange {
  /** Group key, e.g. `scheduler` or `db@backup`. */
  key: string;
  /** What the defaults entry named. */
  from: string | null;
  /** What is selected now; null: nothing (the group is deleted). */
  to: string | null;
  /** Where the selection was changed (`command line` or `file:line`). */
  where: string;
  /** The dotted package the group's option lands at ('' = root). */
  pkg: string;
  /** The file that made the change with an `override` entry: its own settings are meant for the new option. */
  changedIn?: string;
}

export interface Expansion {
  items: MergeItem[];
  choices: Array<[string, string | null]>;
}

const NAME = /^\/?([\w\-./]+?)\/?(?:@([\w\-.]+))?$/;

const groupKey = (entry: Entry): string => (entry.pkg === undefined ? entry.name : `${entry.name}@${entry.pkg}`);

/** `_global_` (root) and `_group_` (the group's own path, dotted) in a package spec. */
function resolvePackage(spec: string, group: string): string {
  const keys = splitPath(spec).flatMap((key, i) => {
    if (key === '_global_' && i === 0) return [];
    if (key === '_group_') return group === '' ? [] : group.split('/');
    return [key];
  });
  return keys.join('.');
}

function parseEntry(raw: RawDefault): Entry | ConfigProblem {
  const bad = (message: string): ConfigProblem => ({ path: 'defaults', message, value: raw.value, source: raw.where });
  const shape =
    "expected '_self_', 'group: option', 'group@package: option', " +
    "'override group: option' or a config path such as 'some/file'";
  if (typeof raw.value === 'string') {
    if (raw.value.trim() === '_self_') return { kind: 'self', name: '_self_', where: raw.where };
    const match = NAME.exec(raw.value.trim());
    if (!match) return bad(`malformed defaults entry; ${shape}`);
    return { kind: 'config', name: match[1]!, pkg: match[2], where: raw.where };
  }
  if (!isPlainObject(raw.value) || Object.keys(raw.value).length !== 1)
    return bad(`malformed defaults entry; ${shape}`);
  const [key, option] = Object.entries(raw.value)[0]!;
  const words = key.trim().split(/\s+/);
  const match = NAME.exec(words.pop()!);
  const flags = new Set(words);
  const unknownFlag = words.find((w) => w !== 'override' && w !== 'optional');
  if (!match || unknownFlag !== undefined) {
    return bad(
      unknownFlag
        ? `unknown keyword '${unknownFlag}' in defaults entry (known: override, optional)`
        : `malformed defaults entry; ${shape}`,
    );
  }
  if (option !== null && typeof option === 'object') {
    return bad(
      `group '${match[1]}' must select one option (a name or null); selecting several options is not supported`,
    );
  }
  return {
    kind: 'group',
    name: match[1]!,
    pkg: match[2],
    option: option === null ? null : String(option),
    override: flags.has('override'),
    optional: flags.has('optional'),
    where: raw.where,
  };
}

/** Turns the defaults tree into an ordered list of bodies to merge (Hydra 1.1 semantics). */
export class DefaultsExpander {
  readonly problems: ConfigProblem[] = [];
  /** Groups whose selection was changed or emptied; see {@link GroupChange}. */
  readonly changes: GroupChange[] = [];
  private readonly selected = new Map<string, { option: string | null; where: string; cli?: string }>();
  private readonly groups: Set<string>;

  constructor(
    private readonly searchPath: string[],
    readonly overrides: Map<string, GroupOverride>,
  ) {
    this.groups = new Set(listGroups(searchPath));
  }

  /**
   * Expands one file. Entries are visited last to first, as Hydra does, so that an `override` in a
   * later file (an experiment) is registered before the earlier selection it replaces is expanded.
   */
  expand(file: string, pkg: (header: string | undefined) => string, appended: Entry[], ancestry: string[]): Expansion {
    const display = displayPath(file);
    if (ancestry.includes(file)) {
      this.problems.push({
        path: 'defaults',
        message: `defaults cycle: ${[...ancestry, file].map(displayPath).join(' -> ')}`,
        source: display,
      });
      return { items: [], choices: [] };
    }
    const loaded = loadConfigFile(file, display);
    this.problems.push(...loaded.problems);
    const entries: Entry[] = [];
    for (const raw of loaded.defaults ?? []) {
      const parsed = parseEntry(raw);
      if ('kind' in parsed) entries.push(parsed);
      else this.problems.push(parsed);
    }
    entries.push(...appended);
    const selfCount = entries.filter((e) => e.kind === 'self').length;
    if (selfCount > 1)
      this.problems.push({
        path: 'defaults',
        message: `'_self_' appears ${selfCount} times; list it at most once`,
        source: display,
      });
    for (const entry of entries) {
      if (entry.override && !this.overrides.has(groupKey(entry))) {
        this.overrides.set(groupKey(entry), { option: entry.option ?? null, where: entry.where, used: false });
      }
    }
    const expanded: Array<Expansion | undefined> = new Array(entries.length);
    for (let i = entries.length - 1; i >= 0; i--) {
      const entry = entries[i]!;
      if (entry.kind === 'config') expanded[i] = this.expandConfig(entry, [...ancestry, file]);
      else if (entry.kind === 'group' && !entry.override) expanded[i] = this.expandGroup(entry, [...ancestry, file]);
    }
    const own: Expansion = {
      items: [{ pkg: pkg(loaded.packageHeader), body: loaded.body, source: display }],
      choices: [],
    };
    const result: Expansion = { items: [], choices: [] };
    entries.forEach((entry, i) => {
      const part = entry.kind === 'self' ? own : expanded[i];
      if (part) {
        result.items.push(...part.items);
        result.choices.push(...part.choices);
      }
    });
    // Hydra 1.1: without an explicit `_self_`, a file's own body is merged after its defaults.
    if (selfCount === 0) result.items.push(...own.items);
    return result;
  }

  private expandConfig(entry: Entry, ancestry: string[]): Expansion | undefined {
    const file = findConfigFile(this.searchPath, entry.name);
    const dir = entry.name.includes('/') ? entry.name.slice(0, entry.name.lastIndexOf('/')) : '';
    if (!file) {
      const siblings =
        dir === ''
          ? listPrimaryConfigs(this.searchPath)
          : listGroupOptions(this.searchPath, dir).map((o) => `${dir}/${o}`);
      this.problems.push({
        path: 'defaults',
        message: `config file '${entry.name}.yaml' is not in the search path (${this.searchPath.join(', ')})`,
        suggestions: suggest(entry.name, siblings),
        source: entry.where,
      });
      return undefined;
    }
    return this.expand(file, (header) => resolvePackage(entry.pkg ?? header ?? '_group_', dir), [], ancestry);
  }

  private expandGroup(entry: Entry, ancestry: string[]): Expansion | undefined {
    const key = groupKey(entry);
    let option = entry.option ?? null;
    let where = entry.where;
    const override = this.overrides.get(key);
    if (override) {
      override.used = true;
      if (override.remove) {
        if (override.remove.expected === undefined || override.remove.expected === option) {
          this.recordChange(entry, null, override.where);
          return undefined;
        }
        this.problems.push({
          path: key,
          message:
            `'${override.cli}' removes group '${key}' only when '${override.remove.expected}' ` +
            `is selected, but '${option}' is (from ${entry.where})`,
          source: 'command line',
        });
      } else {
        option = override.option;
        where = override.where;
      }
    }
    const earlier = this.selected.get(key);
    if (earlier) {
      const cli = earlier.cli ?? entry.cli;
      const other = earlier.cli ? entry : earlier;
      this.problems.push({
        path: key,
        message: cli
          ? `'${cli}' adds config group '${key}', but it is already selected ` +
            `('${other.option}') by ${other.where}; write ${shellWord(`${key}=<option>`)} ` +
            `to change the selection, putting an option of '${key}' in place of <option>`
          : `config group '${key}' is selected twice: '${entry.option}' by ${entry.where} ` +
            `and '${earlier.option}' by ${earlier.where}; to replace the earlier ` +
            `selection write '- override ${key}: ${earlier.option}' in the later file`,
        source: entry.where,
      });
      return undefined;
    }
    this.selected.set(key, { option, where, cli: entry.cli });
    if (option === null || (override && option !== (entry.option ?? null))) this.recordChange(entry, option, where);
    const choice: Expansion = { items: [], choices: [[key, option]] };
    if (option === null) return choice;
    const file = findConfigFile(this.searchPath, `${entry.name}/${option}`);
    if (!file) {
      if (entry.optional) return { items: [], choices: [] };
      const available = listGroupOptions(this.searchPath, entry.name);
      const cliText = where === 'command line' ? (override?.cli ?? entry.cli) : undefined;
      // Hydra names options without their extension: `task=longrun.yaml` means `task=longrun`.
      const bare = option.replace(/\.ya?ml$/i, '');
      const withExtension = bare !== option && available.includes(bare);
      const suggestions = withExtension ? [bare] : suggest(option, available);
      this.problems.push(
        this.groups.has(entry.name)
          ? {
              path: key,
              message: withExtension
                ? `config group '${entry.name}' has no option '${option}': options are named without ` +
                  `their .yaml extension (available: ${available.join(', ')})`
                : `config group '${entry.name}' has no option '${option}' (available: ${available.join(', ')})`,
              suggestions,
              source: where,
              // Not for `option.yaml`: the fix is the name without the extension, no plugin build.
              ...(withExtension ? {} : { missingConfig: { group: entry.name, option } }),
              ...(cliText !== undefined
                ? {
                    override: cliText,
                    fixes: suggestions.map(
                      (s) => `write ${shellWord(`${cliText.slice(0, cliText.indexOf('=') + 1)}${s}`)}`,
                    ),
                  }
                : {}),
            }
          : {
              path: key,
              message: `there is no config group '${entry.name}' in the search path (${this.searchPath.join(', ')})`,
              suggestions: suggest(entry.name, this.groups),
              source: where,
              missingConfig: { group: entry.name },
            },
      );
      return choice;
    }
    const nested = this.expand(
      file,
      (header) => resolvePackage(entry.pkg ?? header ?? '_group_', entry.name),
      [],
      ancestry,
    );
    for (const item of nested.items) item.group ??= key;
    return { items: nested.items, choices: [[key, option], ...nested.choices] };
  }

  /** Notes that `entry`'s group now selects `option` (null: nothing), at the package its options land at. */
  private recordChange(entry: Entry, option: string | null, where: string): void {
    const packageOf = (name: string | null): string | undefined => {
      const file = name === null ? undefined : findConfigFile(this.searchPath, `${entry.name}/${name}`);
      const header = file ? loadConfigFile(file, displayPath(file)).packageHeader : undefined;
      return file ? resolvePackage(entry.pkg ?? header ?? '_group_', entry.name) : undefined;
    };
    const pkg =
      packageOf(entry.option ?? null) ?? packageOf(option) ?? resolvePackage(entry.pkg ?? '_group_', entry.name);
    this.changes.push({
      key: groupKey(entry),
      from: entry.option ?? null,
      to: option,
      where,
      pkg,
      ...(where !== 'command line' && where !== entry.where ? { changedIn: where.replace(/(:\d+)+$/, '') } : {}),
    });
  }
}

export function unusedOverrideProblem(key: string, override: GroupOverride, selected: string[]): ConfigProblem {
  const problem = { path: key, suggestions: suggest(key, selected), source: override.where };
  if (override.remove)
    return {
      ...problem,
      message: `'${override.cli}': config group '${key}' is not selected, so there is nothing to remove`,
    };
  if (override.cli) {
    // The did-you-mean (printed first) may be the group meant; adding the group is offered after it.
    const rest = override.cli.slice(override.cli.indexOf(key) + key.length);
    return {
      ...problem,
      message: `config group '${key}' is not in the defaults list, so there is no selection to change`,
      override: override.cli,
      fixes: [
        ...problem.suggestions.map((s) => `write ${shellWord(`${s}${rest}`)}`),
        `write ${shellWord(withPrefix(override.cli, '+'))} to add it`,
      ],
    };
  }
  return {
    ...problem,
    message:
      `'override ${key}: ${override.option}' has nothing to override: '${key}' is not ` +
      `selected earlier in the defaults list; drop 'override' to add the group instead`,
  };
}
