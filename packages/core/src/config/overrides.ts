import { isDeepStrictEqual } from 'node:util';
import { parse } from 'yaml';
import { ConfigError, type ConfigProblem } from '../errors.js';
import { clearSources, mergeAtPackage, recordSources, type Sources } from './merge.js';
import { allPaths, deletePath, describe, getPath, hasPath, isPlainObject, setPath, splitPath, type ConfigNode } from './paths.js';
import { suggest } from './suggest.js';

/**
 * One command-line override, Hydra style:
 * - `set`    `key=value`   replace an existing key, or change a config group's selection
 * - `add`    `+key=value`  add a key (or a config group) that is not there yet
 * - `force`  `++key=value` add or replace
 * - `delete` `~key` or `~key=value` remove (only if the current value equals `value`, when given)
 */
export interface Override {
  kind: 'set' | 'add' | 'force' | 'delete';
  /** Dotted key path (`trainer.max_steps`) or config group (`task`, `model/backbone`, `db@backup`). */
  key: string;
  /** Typed value (YAML rules); `undefined` only for `~key` without a value. */
  value?: unknown;
  /** The value exactly as written, unquoted; used as the option name when `key` is a config group. */
  rawValue?: string;
  /** The override as the user typed it, for error messages. */
  text: string;
}

const KEY = /^[A-Za-z0-9_\-/.@]+$/;

function unquote(text: string): string {
  const quoted = /^'(.*)'$/s.exec(text) ?? /^"(.*)"$/s.exec(text);
  return quoted ? quoted[1]! : text;
}

/**
 * Types a command-line value the way YAML would: `3` int, `3e-3`/`0.5` float, `true`, `null`,
 * `[1, 2]`, `{a: 1}`; quotes keep a string. The empty string stays `''`. Anything YAML rejects that
 * does not look like a flow collection or quoted string (`*.png`, `@home`) is kept as a string,
 * because shells users type into make such values common.
 */
export function parseOverrideValue(text: string): unknown {
  if (text.trim() === '') return '';
  try {
    return parse(text, { prettyErrors: false });
  } catch (error) {
    if (/^\s*['"[{]/.test(text)) throw error;
    return text;
  }
}

/** Parses one override string; accepts the `--key=value` spelling too. Throws ConfigError. */
export function parseOverride(text: string): Override {
  const fail = (message: string): never => {
    throw new ConfigError([{ path: '', message: `cannot parse override '${text}': ${message}`, source: 'command line' }], 'Invalid override');
  };
  let rest = text.trim().replace(/^--(?=[^-+~])/, '');
  let kind: Override['kind'] = 'set';
  if (rest.startsWith('++')) [kind, rest] = ['force', rest.slice(2)];
  else if (rest.startsWith('+')) [kind, rest] = ['add', rest.slice(1)];
  else if (rest.startsWith('~')) [kind, rest] = ['delete', rest.slice(1)];
  const eq = rest.indexOf('=');
  const key = (eq < 0 ? rest : rest.slice(0, eq)).trim();
  if (key === '') fail("expected 'key=value', '+key=value', '++key=value' or '~key'");
  if (!KEY.test(key) || key.startsWith('.') || key.endsWith('.') || key.includes('..')) {
    fail(`'${key}' is not a valid key; use dotted names such as 'trainer.max_steps' or a config group such as 'task'`);
  }
  if (eq < 0) {
    if (kind !== 'delete') fail(`missing '=': write '${kind === 'set' ? '' : kind === 'add' ? '+' : '++'}${key}=<value>'`);
    return { kind, key, text };
  }
  const rawText = rest.slice(eq + 1);
  let value: unknown;
  try {
    value = parseOverrideValue(rawText);
  } catch (error) {
    fail(`the value '${rawText}' is not valid YAML (${(error as Error).message.split('\n')[0]}); quote it to pass a string, e.g. ${key}='${rawText}'`);
  }
  return { kind, key, value, rawValue: unquote(rawText.trim()), text };
}

/** Applies `key=value`-style overrides to the merged tree, recording problems instead of throwing. */
export function applyValueOverrides(root: ConfigNode, sources: Sources, overrides: Override[], groups: Set<string>, problems: ConfigProblem[]): void {
  const source = 'command line';
  for (const ov of overrides) {
    const exists = hasPath(root, ov.key);
    const problem = (message: string, extra: Partial<ConfigProblem> = {}) => problems.push({ path: ov.key, message: `'${ov.text}': ${message}`, source, ...extra });
    // Compare like with like: a misspelt `a.b` is most likely another two-level path.
    const depth = splitPath(ov.key).length;
    const missing = () => ({
      suggestions: suggest(ov.key, [...allPaths(root).filter((p) => splitPath(p).length === depth), ...(depth === 1 ? groups : [])]),
    });
    if (ov.kind === 'delete') {
      if (!exists) {
        problem(`there is no key '${ov.key}' to delete`, missing());
      } else if (ov.value !== undefined && !isDeepStrictEqual(getPath(root, ov.key), ov.value)) {
        problem(`not deleted: the current value is ${JSON.stringify(getPath(root, ov.key))}, not ${JSON.stringify(ov.value)}`);
      } else {
        deletePath(root, ov.key);
        clearSources(sources, ov.key);
      }
      continue;
    }
    if (ov.kind === 'set' && !exists) {
      problem(`'${ov.key}' is neither a key in the config nor a config group; to add it as a new key write '+${ov.text}'`, missing());
      continue;
    }
    if (ov.kind === 'add' && exists) {
      problem(`key '${ov.key}' already exists (value ${JSON.stringify(getPath(root, ov.key))}); write '${ov.text.replace(/^\+/, '')}' to replace it or '+${ov.text}' to add-or-replace`, {
        source: sources.get(ov.key) ?? source,
      });
      continue;
    }
    const keys = splitPath(ov.key);
    const blocked = keys.slice(0, -1).map((_, i) => keys.slice(0, i + 1).join('.')).find((p) => {
      const v = getPath(root, p);
      return v !== undefined && !isPlainObject(v) && !Array.isArray(v);
    });
    if (blocked !== undefined) {
      problem(`'${blocked}' is a ${describe(getPath(root, blocked))}, not a mapping, so it cannot hold '${ov.key}'`);
      continue;
    }
    if (isPlainObject(ov.value) && isPlainObject(getPath(root, ov.key))) {
      mergeAtPackage(root, ov.key, ov.value, source, sources);
      continue;
    }
    try {
      setPath(root, ov.key, ov.value);
    } catch (error) {
      problem((error as Error).message);
      continue;
    }
    // Lists are leaves for source tracking, so an element override re-attributes the whole list.
    const list = keys.map((_, i) => keys.slice(0, i + 1).join('.')).find((p) => Array.isArray(getPath(root, p)));
    if (list !== undefined && list !== ov.key) {
      sources.set(list, source);
    } else {
      clearSources(sources, ov.key);
      recordSources(sources, ov.key, ov.value, source);
    }
  }
}
