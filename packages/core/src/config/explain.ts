/**
 * Makes every config problem say the same things, whichever pass found it: the key, the value,
 * where it came from (`file:line` for a YAML file, `command line` plus the override as typed) and
 * a fix that can be pasted into a shell.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isMap, isScalar, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import type { ConfigProblem } from '../errors.js';
import type { AppliedOverride } from './overrides.js';
import { overrideHint, shellWord, withPrefix } from './override-grammar.js';
import { splitPath } from './paths.js';

/** What is known about where the values of a composed config came from. */
export interface ProblemContext {
  /** Dotted leaf path → file or `command line` (ComposedConfig.sources). */
  sources: ReadonlyMap<string, string>;
  /** Dotted path → the command-line override that set it (ComposedConfig.overrides). */
  overrides: ReadonlyMap<string, AppliedOverride>;
}

const COMMAND_LINE = 'command line';

/** The parent paths of `path`, nearest first: `a.b.c` → `a.b`, `a`. */
function ancestors(path: string): string[] {
  const keys = splitPath(path);
  return keys.slice(0, -1).map((_, i) => keys.slice(0, keys.length - 1 - i).join('.'));
}

/** The list holding a list element's path (`optimizer.betas[0]` → `optimizer.betas`); other paths as they are. */
function listPath(path: string): string {
  return path.replace(/(\[\d+\])+$/, '');
}

/**
 * The source recorded for `path`, for the first leaf below it (a mapping has no source of its
 * own), or for the list holding it (an element has none of its own either).
 */
function sourceOf(path: string, sources: ReadonlyMap<string, string>): string | undefined {
  const exact = sources.get(path) ?? sources.get(listPath(path));
  if (exact !== undefined) return exact;
  for (const [key, source] of sources) if (path !== '' && key.startsWith(`${path}.`)) return source;
  return undefined;
}

/** The override that set `path`, the list holding it, or a mapping above it. */
function overrideOf(path: string, overrides: ReadonlyMap<string, AppliedOverride>): AppliedOverride | undefined {
  for (const p of [path, listPath(path), ...ancestors(listPath(path))]) {
    const found = overrides.get(p);
    if (found) return found;
  }
  return undefined;
}

/**
 * `file:line` of the key `path` in a YAML file, or undefined. The file may hold the value under a
 * package (`# @package dataset`, or a group file merged at `dataset`), so the path is tried whole
 * and then without its leading keys.
 */
export function lineOf(
  file: string,
  path: string,
  cache = new Map<string, ReturnType<typeof load>>(),
): number | undefined {
  if (!cache.has(file)) cache.set(file, load(file));
  const loaded = cache.get(file);
  if (!loaded) return undefined;
  const keys = splitPath(path);
  for (let i = 0; i < keys.length; i++) {
    const line = keyLine(loaded.doc.contents as YamlNode | null, keys.slice(i), loaded.lines);
    if (line !== undefined) return line;
  }
  return undefined;
}

function load(file: string) {
  if (!/\.ya?ml$/.test(file) || !existsSync(file)) return undefined;
  try {
    const lines = new LineCounter();
    const doc = parseDocument(readFileSync(file, 'utf8'), { lineCounter: lines });
    return doc.errors.length ? undefined : { doc, lines };
  } catch {
    return undefined;
  }
}

/** The line of the last key of `keys` (the key, not its value, so a mapping value points at its key). */
function keyLine(node: YamlNode | null, keys: string[], lines: LineCounter): number | undefined {
  let current: unknown = node;
  for (const [i, key] of keys.entries()) {
    if (!isMap(current)) return undefined;
    const pair = current.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === key);
    if (!pair) return undefined;
    if (i === keys.length - 1) {
      const start = (pair.key as YamlNode | null)?.range?.[0];
      return start === undefined ? undefined : lines.linePos(start).line;
    }
    current = pair.value;
  }
  return undefined;
}

/** `value` as an override value when it is a scalar (a fix names one), else undefined. */
function scalar(value: unknown): string | number | boolean | null | undefined {
  return value === null || ['string', 'number', 'boolean'].includes(typeof value)
    ? (value as string | number | boolean | null)
    : undefined;
}

/**
 * Returns the problems with their source (`file:line`, or `command line` and the override as
 * typed) and shell-ready fixes filled in where they were missing:
 * - a misspelt key typed on the command line: the override with the did-you-mean key instead
 *   (without a `+`, since that key exists);
 * - a bad value typed on the command line: the value it replaced (from the files), else the
 *   schema's default;
 * - a bad value in a file: edit that line, or override the key with the schema's default;
 * - a cross-key rule (`relatedPaths`) broken by an override of one of the other keys: that
 *   override, and the value it replaced.
 * Problems whose value came from an environment variable or an interpolation keep their source.
 */
export function explainProblems(problems: readonly ConfigProblem[], context: ProblemContext): ConfigProblem[] {
  const cache = new Map<string, ReturnType<typeof load>>();
  return problems.map((problem) => {
    const out: ConfigProblem = { ...problem };
    const source = out.source ?? sourceOf(out.path, context.sources);
    // A cross-key rule broken by an override of the other key: blame what was typed, not the file.
    const typedRelated =
      source === COMMAND_LINE
        ? undefined
        : out.relatedPaths?.find(
            (p) => sourceOf(p, context.sources) === COMMAND_LINE && overrideOf(p, context.overrides),
          );
    if (typedRelated !== undefined) {
      const applied = overrideOf(typedRelated, context.overrides)!;
      out.source = COMMAND_LINE;
      out.override = applied.text;
      if (!out.fixes?.length) out.fixes = commandLineFixes({ ...out, path: typedRelated, suggestions: [] }, applied);
    } else if (source === COMMAND_LINE) {
      out.source = COMMAND_LINE;
      const applied = overrideOf(out.path, context.overrides);
      if (out.override === undefined && applied) out.override = applied.text;
      if (!out.fixes?.length && out.correctedValues?.length) out.fixes = correctedOverrides(out, applied);
      if (!out.fixes?.length && applied) out.fixes = commandLineFixes(out, applied);
    } else if (source !== undefined) {
      const line = /:\d+(:\d+)?$/.test(source) ? undefined : lineOf(source, out.path, cache);
      out.source = line === undefined ? source : `${source}:${line}`;
      if (!out.fixes?.length && out.correctedValues?.length && existsSync(source))
        out.fixes = correctedInFile(out, out.source);
      if (!out.fixes?.length && existsSync(source)) out.fixes = fileFixes(out, out.source);
    } else if (!out.fixes?.length && out.defaultValue !== undefined && out.path !== '') {
      out.fixes = [`write ${overrideHint(out.path, scalar(out.defaultValue) ?? null)} (the default)`];
    }
    if (!out.fixes?.length) delete out.fixes;
    return out;
  });
}

/**
 * A value corrected inside (e.g. an interpolation's reference) typed on the command line: the
 * override as typed with the value corrected, e.g. `task.init_seed=${trainer.seed}` for
 * `task.init_seed=${trainer.sed}`; `<key>=<value>` when the override set a mapping above the key.
 */
function correctedOverrides(problem: ConfigProblem, applied: AppliedOverride | undefined): string[] {
  const typed = applied ? withPrefix(applied.text, '') : undefined;
  const typedKey = typed?.slice(0, typed.indexOf('='));
  const prefix = applied ? (/^(?:--)?(\+\+|\+)?/.exec(applied.text)![1] ?? '') : '';
  return problem.correctedValues!.map(
    (value) => `write ${shellWord(`${typedKey === problem.path ? prefix : ''}${problem.path}=${value}`)}`,
  );
}

/** A value corrected inside, set in a file: edit that line so the key holds the corrected value, or override it. */
function correctedInFile(problem: ConfigProblem, where: string): string[] {
  return problem.correctedValues!.flatMap((value) => [
    `edit ${where} so that ${problem.path} is ${value}`,
    `write ${shellWord(`${problem.path}=${value}`)}`,
  ]);
}

function commandLineFixes(problem: ConfigProblem, applied: AppliedOverride): string[] {
  const typed = withPrefix(applied.text, '');
  const key = typed.slice(0, typed.indexOf('='));
  // Suggestions name keys, except for a value corrected inside (they name what it refers to then).
  if (problem.suggestions?.length && key === problem.path && problem.correctedValues === undefined) {
    const value = typed.slice(key.length);
    return problem.suggestions.map((s) => `write ${shellWord(`${s}${value}`)}`);
  }
  // A list typed whole (`optimizer.betas=[1.5,0.9]`), wrong as a whole or in one element: the list it replaced.
  const list = applied.previous;
  if (key === listPath(problem.path) && Array.isArray(list) && list.every((v) => scalar(v) !== undefined)) {
    const from = applied.previousSource ? `, from ${applied.previousSource}` : '';
    return [
      `write ${shellWord(`${key}=[${list.map((v) => String(v)).join(',')}]`)} (the configured value${from}) or drop the override`,
    ];
  }
  if (key !== problem.path) return [];
  const previous = scalar(applied.previous);
  if (previous !== undefined && applied.previous !== problem.value) {
    const from = applied.previousSource ? `, from ${applied.previousSource}` : '';
    return [`write ${overrideHint(problem.path, previous)} (the configured value${from}) or drop the override`];
  }
  const fallback = scalar(problem.defaultValue);
  if (problem.defaultValue !== undefined && fallback !== undefined)
    return [`write ${overrideHint(problem.path, fallback)} (the default)`];
  return [];
}

function fileFixes(problem: ConfigProblem, where: string): string[] {
  const fixes = [`edit ${where}`];
  const fallback = scalar(problem.defaultValue);
  if (problem.defaultValue !== undefined && fallback !== undefined && problem.path !== '')
    fixes.push(`write ${overrideHint(problem.path, fallback)} (the default)`);
  return fixes;
}
