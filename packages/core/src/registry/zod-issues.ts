/**
 * Turns zod issues into ConfigProblems a user can act on: "expected a positive integer" rather
 * than "Too small: expected number to be >0", and "did you mean" for misspelt keys and enum values.
 */
import { globalRegistry, type z } from 'zod';
import { joinPath } from '../config/paths.js';
import { suggest } from '../config/suggest.js';
import type { ConfigProblem } from '../errors.js';

type Def = { type: string; [key: string]: any };
type Schema = { _zod: { def: Def } };

const defOf = (schema: unknown): Def | undefined => (schema as Schema | undefined)?._zod?.def;

/** Strips wrappers that do not change what a value must look like. */
function unwrap(schema: unknown): unknown {
  let current = schema;
  for (let i = 0; i < 32; i++) {
    const def = defOf(current);
    if (!def) return current;
    if (['optional', 'default', 'prefault', 'readonly', 'catch', 'nonoptional'].includes(def.type))
      current = def.innerType;
    else if (def.type === 'pipe') current = def.in;
    else if (def.type === 'lazy') current = def.getter();
    else return current;
  }
  return current;
}

/** The sub-schema that validates the value at `path`, when it can be determined statically. */
export function schemaAt(schema: unknown, path: readonly PropertyKey[]): unknown {
  let current = unwrap(schema);
  for (const key of path) {
    const def = defOf(current);
    if (!def) return undefined;
    if (def.type === 'object') current = def.shape[key as string];
    else if (def.type === 'array') current = def.element;
    else if (def.type === 'record') current = def.valueType;
    else if (def.type === 'tuple') current = def.items[key as number] ?? def.rest;
    else return undefined;
    current = unwrap(current);
  }
  return current;
}

/**
 * The schema's default for the value at `path` (a `.default(…)` on the field), or undefined when
 * it has none; used to offer `key=<default>` as a fix.
 */
export function defaultAt(schema: unknown, path: readonly PropertyKey[]): unknown {
  if (path.length === 0) return undefined;
  const parent = defOf(schemaAt(schema, path.slice(0, -1)));
  if (parent?.type !== 'object') return undefined;
  let current: unknown = parent.shape[path.at(-1) as string];
  for (let i = 0; i < 8; i++) {
    const def = defOf(current);
    if (!def) return undefined;
    if (def.type === 'default' || def.type === 'prefault') {
      try {
        const value: unknown = typeof def.defaultValue === 'function' ? def.defaultValue() : def.defaultValue;
        return value === null || ['number', 'string', 'boolean'].includes(typeof value) ? value : undefined;
      } catch {
        return undefined;
      }
    }
    if (!['optional', 'nullable', 'readonly'].includes(def.type)) return undefined;
    current = def.innerType;
  }
  return undefined;
}

/** The field schemas of an object schema (through defaults, pipes and the like), undefined for others. */
export function objectShape(schema: unknown): Record<string, unknown> | undefined {
  const def = defOf(unwrap(schema));
  return def?.type === 'object' ? (def.shape as Record<string, unknown>) : undefined;
}

/** Keys an object schema accepts, for "did you mean". */
export function objectKeys(schema: unknown): string[] {
  return Object.keys(objectShape(schema) ?? {});
}

/** The message for a key another library uses for one of a component's own (`ComponentSpec.keyAliases`). */
export function keyAliasMessage(owner: string, key: string, ours: string): string {
  return `${owner} has no '${key}': that is another library's name for its '${ours}'`;
}

const quote = (v: unknown) => (typeof v === 'string' ? `'${v}'` : String(v));

function describeNumber(def: Def): string {
  const checks: Def[] = (def.checks ?? []).map((c: Schema) => c._zod.def);
  // z.number().int() adds a number_format check; z.int() (zod 4) is itself that format, on its def.
  const integer =
    /int/.test(String(def.format ?? '')) || checks.some((c) => c.check === 'number_format' && /int/.test(c.format));
  const noun = integer ? 'integer' : 'number';
  const lower = checks.filter((c) => c.check === 'greater_than').at(-1);
  const upper = checks.filter((c) => c.check === 'less_than').at(-1);
  if (lower && Number(lower.value) === 0 && !upper) return `a ${lower.inclusive ? 'non-negative' : 'positive'} ${noun}`;
  const bounds: string[] = [];
  if (lower) bounds.push(`${lower.inclusive ? '>=' : '>'} ${lower.value}`);
  if (upper) bounds.push(`${upper.inclusive ? '<=' : '<'} ${upper.value}`);
  return `${integer ? 'an integer' : 'a number'}${bounds.length ? ` ${bounds.join(' and ')}` : ''}`;
}

function describeString(def: Def): string {
  const checks: Def[] = (def.checks ?? []).map((c: Schema) => c._zod.def);
  const min = checks.find((c) => c.check === 'min_length')?.minimum;
  const max = checks.find((c) => c.check === 'max_length')?.maximum;
  if (min === 1 && max === undefined) return 'a non-empty string';
  if (min !== undefined && max !== undefined) return `a string of ${min} to ${max} characters`;
  if (min !== undefined) return `a string of at least ${min} characters`;
  if (max !== undefined) return `a string of at most ${max} characters`;
  return 'a string';
}

/** What a value must be, in words; undefined when the schema is too unusual to describe. */
export function describeSchema(schema: unknown, depth = 0): string | undefined {
  const def = defOf(unwrap(schema));
  if (!def || depth > 4) return undefined;
  switch (def.type) {
    case 'number':
      return describeNumber(def);
    case 'int':
      return 'an integer';
    case 'string':
      return describeString(def);
    case 'boolean':
      return 'true or false';
    case 'null':
      return 'null';
    case 'enum':
      return `one of ${Object.values(def.entries as Record<string, unknown>)
        .map(quote)
        .join(' | ')}`;
    case 'literal':
      return def.values.length === 1 ? quote(def.values[0]) : `one of ${def.values.map(quote).join(' | ')}`;
    case 'array': {
      const element = describeSchema(def.element, depth + 1);
      return element ? `a list whose items are each ${element}` : 'a list';
    }
    case 'tuple':
      return `a list of ${def.items.length} items`;
    case 'object':
    case 'record':
      return 'a mapping of keys to values';
    case 'nullable': {
      const inner = describeSchema(def.innerType, depth + 1);
      return inner && `${inner} or null`;
    }
    case 'union': {
      const options = (def.options as unknown[]).map((o) => describeSchema(o, depth + 1));
      return options.every(Boolean) ? options.join(' or ') : undefined;
    }
    default:
      return undefined;
  }
}

/** Appends a zod issue path to a dotted config path: `a.b` + `[0, 'c']` → `a.b[0].c`. */
export function issuePath(base: string, path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (out, key) => (typeof key === 'number' ? `${out}[${key}]` : joinPath(out, String(key))),
    base,
  );
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let current = input;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

/**
 * The string values a schema accepts (an enum, literals, or a union of them) and the aliases its
 * metadata maps to them (`.meta({ valueAliases: { cuda: 'gpu' } })`: what users of Lightning,
 * PyTorch or TF.js type for one of our values).
 */
function acceptedStrings(schema: unknown, depth = 0): { values: string[]; aliases: Record<string, string> } {
  const inner = unwrap(schema);
  const def = defOf(inner);
  const meta = inner
    ? (globalRegistry.get(inner as z.core.$ZodType) as { valueAliases?: unknown } | undefined)
    : undefined;
  const aliases =
    meta?.valueAliases && typeof meta.valueAliases === 'object'
      ? { ...(meta.valueAliases as Record<string, string>) }
      : {};
  if (!def || depth > 4) return { values: [], aliases };
  const strings = (list: unknown[]) => list.filter((v): v is string => typeof v === 'string');
  if (def.type === 'enum') return { values: strings(Object.values(def.entries as Record<string, unknown>)), aliases };
  if (def.type === 'literal') return { values: strings(def.values as unknown[]), aliases };
  if (def.type === 'union' || def.type === 'nullable') {
    const parts = (def.type === 'union' ? (def.options as unknown[]) : [def.innerType]).map((o) =>
      acceptedStrings(o, depth + 1),
    );
    return {
      values: parts.flatMap((p) => p.values),
      aliases: Object.assign(aliases, ...parts.map((p) => p.aliases)),
    };
  }
  return { values: [], aliases };
}

/** The accepted value a string was probably meant to be: its alias, else the closest by spelling. */
function meantValue(schema: unknown, value: string): string | undefined {
  const { values, aliases } = acceptedStrings(schema);
  if (values.length === 0) return undefined;
  const alias = aliases[value] ?? aliases[value.toLowerCase()];
  if (alias !== undefined && values.includes(alias)) return alias;
  return suggest(value, values, 1)[0];
}

/** Issues fully explained by the schema's type and bounds; others keep zod's (or the author's) message. */
function describable(issue: z.core.$ZodIssue): boolean {
  if (issue.code === 'too_small' || issue.code === 'too_big')
    return ['number', 'int', 'bigint', 'string'].includes(issue.origin);
  return issue.code === 'invalid_type' || issue.code === 'invalid_value' || issue.code === 'invalid_union';
}

/**
 * One ConfigProblem per zod issue (one per key for unknown keys). `base` is the dotted path of
 * `input` in the whole config; `owner` (e.g. `backbone/gpt2`) names whose schema rejected it;
 * `keyAliases` (its `ComponentSpec.keyAliases`) turns an unknown top-level key that another
 * library uses (`n_layer`) into a pointer to the key it has (`num_layers`).
 */
export function issuesToProblems(
  issues: readonly z.core.$ZodIssue[],
  schema: unknown,
  input: unknown,
  base: string,
  owner?: string,
  keyAliases?: Readonly<Record<string, string>>,
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const of = owner ? ` for ${owner}` : '';
  for (const issue of issues) {
    const path = issue.path as PropertyKey[];
    if (issue.code === 'unrecognized_keys') {
      const accepted = objectKeys(schemaAt(schema, path));
      for (const key of issue.keys) {
        const keyPath = [...path, key];
        const ours = path.length === 0 ? keyAliases?.[key] : undefined;
        if (ours !== undefined && accepted.includes(ours)) {
          problems.push({
            path: issuePath(base, keyPath),
            message: keyAliasMessage(owner ?? 'this component', key, ours),
            value: valueAt(input, keyPath),
            suggestions: [issuePath(base, [ours])],
          });
          continue;
        }
        const hint = accepted.length ? `accepted keys: ${accepted.join(', ')}` : 'no keys are accepted here';
        // Full paths, like the suggestions for command-line keys, so each can be pasted as it is.
        const suggestions = suggest(key, accepted).map((k) => issuePath(base, [...path, k]));
        problems.push({
          path: issuePath(base, keyPath),
          message: `unknown key '${key}'${of} (${hint})`,
          value: valueAt(input, keyPath),
          ...(suggestions.length ? { suggestions } : {}),
        });
      }
      continue;
    }
    const value = valueAt(input, path);
    const expected = describable(issue) ? describeSchema(schemaAt(schema, path)) : undefined;
    let message: string;
    if (value === undefined && issue.code === 'invalid_type')
      message = `missing required key${of}; expected ${expected ?? issue.expected}`;
    else if (expected) message = `expected ${expected}${of}`;
    else if ((issue.code === 'too_small' || issue.code === 'too_big') && issue.origin === 'array') {
      const n = Number(issue.code === 'too_small' ? issue.minimum : issue.maximum);
      // A tuple has exactly its items' count: "a list of 2 items", not "at least 2".
      const tuple = defOf(unwrap(schemaAt(schema, path)))?.type === 'tuple';
      message = tuple
        ? `expected ${describeSchema(schemaAt(schema, path))}${of}`
        : `expected a list of ${issue.code === 'too_small' ? 'at least' : 'at most'} ` +
          `${n} item${n === 1 ? '' : 's'}${of}`;
    } else message = `${issue.message}${of}`;
    // `inf` is non-negative: say why it is refused all the same.
    if (typeof value === 'number' && !Number.isFinite(value) && expected && /^an? /.test(expected))
      message = `expected a finite ${expected.replace(/^an? /, '')}${of} (inf and nan are not accepted)`;
    // A misspelt or foreign name for an accepted value: did you mean, and the fix with it.
    const meant =
      typeof value === 'string' && (issue.code === 'invalid_value' || issue.code === 'invalid_union')
        ? meantValue(schemaAt(schema, path), value)
        : undefined;
    const fallback = defaultAt(schema, path);
    const related = issue.code === 'custom' ? (issue.params as { relatedKeys?: unknown } | undefined)?.relatedKeys : [];
    const relatedPaths = Array.isArray(related)
      ? related.filter((k): k is string => typeof k === 'string').map((k) => issuePath(base, [...path.slice(0, -1), k]))
      : [];
    problems.push({
      path: issuePath(base, path),
      message,
      ...(value !== undefined ? { value } : {}),
      ...(meant !== undefined ? { suggestions: [meant], correctedValues: [meant] } : {}),
      ...(fallback !== undefined && fallback !== value ? { defaultValue: fallback } : {}),
      ...(relatedPaths.length ? { relatedPaths } : {}),
    });
  }
  return problems;
}
