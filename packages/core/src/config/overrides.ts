import { isDeepStrictEqual } from 'node:util';
import { ConfigError, type ConfigProblem } from '../errors.js';
import { clearSources, mergeAtPackage, recordSources, type Sources } from './merge.js';
import {
  allPaths,
  deletePath,
  describe,
  getPath,
  hasPath,
  isPlainObject,
  setPath,
  splitPath,
  type ConfigNode,
} from './paths.js';
import { suggest } from './suggest.js';
import {
  OverrideSyntaxError,
  parseOverrideKey,
  parseOverrideValue as parseValue,
  shellWord,
  withPrefix,
} from './override-grammar.js';

/** Lightning Trainer arguments with no taskforge key of that name, and what to use instead. */
const LIGHTNING_KEYS: Readonly<Record<string, string>> = {
  ckpt_path:
    'in taskforge `train trainer.resume_from=<run dir>/checkpoints/last` resumes a run, and ' +
    '`test`, `validate`, `predict` and `sample` take `ckpt=<checkpoint dir>`',
  precision:
    'taskforge trains in float32 on every backend (TF.js wasm, cpu and webgpu have no mixed ' +
    'precision), so there is nothing to set: drop it',
  gpus:
    'taskforge names it trainer.accelerator=gpu (tfjs-node-gpu, CUDA) or trainer.accelerator=webgpu; one ' +
    'GPU per process (trainer.devices counts data-parallel worker threads on wasm/cpu)',
  deterministic:
    'a taskforge run is reproducible from trainer.seed on the same backend and devices (data order, ' +
    'dropout and initial weights follow it, and a resume continues exactly), so there is nothing to set: drop it',
  seed_everything: 'taskforge seeds everything from trainer.seed (e.g. trainer.seed=7)',
  max_time:
    'taskforge stops on trainer.max_steps or trainer.max_epochs only; a run stopped by Ctrl-C or ' +
    'SIGTERM saves checkpoints/last, and trainer.resume_from continues it',
};

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
  /** Typed value (Hydra's override grammar); `undefined` only for `~key` without a value. */
  value?: unknown;
  /**
   * The value as a string (quotes and escapes removed; else the trimmed text); the option name
   * when `key` is a config group.
   */
  rawValue?: string;
  /** The override as the user typed it, for error messages. */
  text: string;
}

/**
 * Types a command-line value by Hydra's override grammar (see override-grammar.ts): `3` int,
 * `10_0` int 100, `3e-3`/`0.5`/`inf`/`nan` floats, `true`/`TRUE` booleans, `null`, `[1, 2]`,
 * `{a: 1}`, `'quoted'`/`"quoted"` strings, `${a.b}` interpolations (resolved later), everything
 * else a string with escapes (`\,` `\ ` `\(`…) removed. The empty string stays `''`.
 * Throws ConfigError (exit 2) naming the value, the column, what was expected and a fix.
 */
export function parseOverrideValue(text: string): unknown {
  try {
    return parseValue(text);
  } catch (error) {
    if (!(error instanceof OverrideSyntaxError)) throw error;
    throw new ConfigError(
      [{ path: '', message: describeSyntaxError(`value '${text}'`, error, 0, (fix) => fix), source: 'command line' }],
      'Invalid value',
    );
  }
}

/** One line: where, what, and the fixes as shell words that can be pasted as they are. */
function describeSyntaxError(
  what: string,
  error: OverrideSyntaxError,
  shift: number,
  toArg: (fix: string) => string,
): string {
  let message = `cannot parse ${what} at column ${error.offset + shift + 1}: ${error.reason}`;
  const fixes = error.fixes.map((fix) => shellWord(toArg(fix)));
  if (fixes.length > 0) message += `; write ${fixes.join(', or write ')}`;
  if (error.advice) message += `${fixes.length > 0 ? ' (' : '; '}${error.advice}${fixes.length > 0 ? ')' : ''}`;
  return message;
}

/** Parses one override string; accepts the `--key=value` spelling too. Throws ConfigError (exit 2). */
export function parseOverride(text: string): Override {
  const fail = (error: OverrideSyntaxError, shift: number, toArg: (fix: string) => string): never => {
    throw new ConfigError(
      [{ path: '', message: describeSyntaxError(`override '${text}'`, error, shift, toArg), source: 'command line' }],
      'Invalid override',
    );
  };
  let head: ReturnType<typeof parseOverrideKey>;
  try {
    head = parseOverrideKey(text);
  } catch (error) {
    if (!(error instanceof OverrideSyntaxError)) throw error;
    return fail(error, 0, (fix) => fix);
  }
  const { kind, key, valueStart } = head;
  if (valueStart === undefined) {
    if (kind !== 'delete') {
      const prefix = text.slice(0, text.length - key.length);
      return fail(
        new OverrideSyntaxError(
          text.length,
          "missing '=' and a value",
          [],
          `write ${shellWord(`${prefix}${key}=<value>`)}, putting the value in place of <value>`,
        ),
        0,
        (f) => f,
      );
    }
    return { kind, key, text };
  }
  const rawText = text.slice(valueStart);
  let value: unknown;
  try {
    value = parseValue(rawText, valueStart);
  } catch (error) {
    if (!(error instanceof OverrideSyntaxError)) throw error;
    return fail(error, valueStart, (fix) => text.slice(0, valueStart) + fix);
  }
  const rawValue = typeof value === 'string' ? value : rawText.trim();
  return { kind, key, value, rawValue, text };
}

/** A value override that was applied: the text as typed, and what the key held before it. */
export interface AppliedOverride {
  text: string;
  /** The value before the override (undefined for a key the override added). */
  previous?: unknown;
  /** Where that previous value came from, when known. */
  previousSource?: string;
}

/**
 * Applies `key=value`-style overrides to the merged tree, recording problems instead of throwing.
 * Each problem carries the override as typed (`override`) and, for a key that does not exist,
 * did-you-mean paths with a shell-ready fix per candidate; `addAs` holds the `+key=value` form,
 * which the caller offers only where the schema accepts new keys (see Session.compose).
 * `applied`, when given, records path → the override (as typed, and the value it replaced) for
 * every value set from the command line.
 */
export function applyValueOverrides(
  root: ConfigNode,
  sources: Sources,
  overrides: Override[],
  groups: Set<string>,
  problems: ConfigProblem[],
  applied?: Map<string, AppliedOverride>,
): void {
  const source = 'command line';
  for (const ov of overrides) {
    const exists = hasPath(root, ov.key);
    const problem = (message: string, extra: Partial<ConfigProblem> = {}) =>
      problems.push({ path: ov.key, message, source, override: ov.text, ...extra });
    // Compare like with like: a misspelt `a.b` is most likely another two-level path.
    const depth = splitPath(ov.key).length;
    const missing = () => {
      // A bare leaf name (Lightning's `--max_epochs=1` habit) first suggests the paths ending in it.
      const leaf = depth === 1 ? allPaths(root).filter((p) => p.endsWith(`.${ov.key}`)) : [];
      const suggestions = [
        ...leaf.slice(0, 3),
        ...suggest(ov.key, [
          ...allPaths(root).filter((p) => splitPath(p).length === depth),
          ...(depth === 1 ? groups : []),
        ]),
      ].filter((p, i, all) => all.indexOf(p) === i);
      const rest = ov.text.slice(ov.text.indexOf(ov.key) + ov.key.length);
      const prefix = ov.text.slice(0, ov.text.indexOf(ov.key)).replace(/^--/, '');
      return {
        suggestions,
        fixes: suggestions.map((s) => `write ${shellWord(`${prefix}${s}${rest}`)}`),
      };
    };
    // Without a close match, say which keys the parent mapping does have.
    const keysHere = () => {
      const parent = splitPath(ov.key).slice(0, -1).join('.');
      const node = parent === '' ? undefined : getPath(root, parent);
      return isPlainObject(node) && Object.keys(node).length > 0
        ? ` ('${parent}' has: ${Object.keys(node).join(', ')})`
        : '';
    };
    if (ov.kind === 'delete') {
      if (!exists) {
        const m = missing();
        problem(`there is no key '${ov.key}' to delete${m.suggestions.length ? '' : keysHere()}`, m);
      } else if (ov.value !== undefined && !isDeepStrictEqual(getPath(root, ov.key), ov.value)) {
        problem(
          `not deleted: the current value is ${JSON.stringify(getPath(root, ov.key))}, not ${JSON.stringify(ov.value)}`,
          { fixes: [`write ${shellWord(`~${ov.key}`)}`] },
        );
      } else {
        deletePath(root, ov.key);
        clearSources(sources, ov.key);
      }
      continue;
    }
    if (ov.kind === 'set' && !exists && ov.key.startsWith('hydra.')) {
      // Hydra's own node: taskforge has none; the run dir is the trainer's.
      const rest = ov.text.slice(ov.text.indexOf(ov.key) + ov.key.length);
      problem(
        `taskforge has no 'hydra' node (see "Differences from Hydra" in docs/configuration.md); ` +
          `the run dir is trainer.run_dir`,
        ov.key === 'hydra.run.dir' ? { fixes: [`write ${shellWord(`trainer.run_dir${rest}`)}`] } : {},
      );
      continue;
    }
    const lightning = LIGHTNING_KEYS[ov.key.replace(/^trainer\./, '')];
    if (ov.kind === 'set' && !exists && lightning !== undefined) {
      // A Lightning Trainer argument taskforge spells otherwise (or has no use for).
      problem(`'${ov.key}' is Lightning's; ${lightning}`);
      continue;
    }
    if (ov.kind === 'set' && !exists) {
      const m = missing();
      problem(
        `'${ov.key}' is neither a key in the config nor a config group${m.suggestions.length ? '' : keysHere()}`,
        {
          ...m,
          addAs: withPrefix(ov.text, '+'),
        },
      );
      continue;
    }
    if (ov.kind === 'add' && exists) {
      const from = sources.get(ov.key);
      problem(
        `key '${ov.key}' already exists ` +
          `(value ${JSON.stringify(getPath(root, ov.key))}${from ? `, from ${from}` : ''})`,
        {
          fixes: [
            `write ${shellWord(withPrefix(ov.text, ''))} to replace it`,
            `write ${shellWord(withPrefix(ov.text, '++'))} to add-or-replace`,
          ],
        },
      );
      continue;
    }
    const keys = splitPath(ov.key);
    const blocked = keys
      .slice(0, -1)
      .map((_, i) => keys.slice(0, i + 1).join('.'))
      .find((p) => {
        const v = getPath(root, p);
        return v !== undefined && !isPlainObject(v) && !Array.isArray(v);
      });
    if (blocked !== undefined) {
      problem(`'${blocked}' is a ${describe(getPath(root, blocked))}, not a mapping, so it cannot hold '${ov.key}'`);
      continue;
    }
    const previous = getPath(root, ov.key);
    applied?.set(ov.key, {
      text: ov.text,
      ...(previous !== undefined ? { previous, previousSource: sources.get(ov.key) } : {}),
    });
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
