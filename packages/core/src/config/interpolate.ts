import { ConfigError, type ConfigProblem } from '../errors.js';
import { clearSources, recordSources, type Sources } from './merge.js';
import {
  allPaths,
  deepCopy,
  describe,
  getPath,
  hasPath,
  isPlainObject,
  joinPath,
  setPath,
  splitPath,
  type ConfigNode,
} from './paths.js';
import { OverrideSyntaxError, parseOverrideValue } from './override-grammar.js';
import { suggest } from './suggest.js';

type Token = { text: string } | { ref: string };

const RESOLVERS = ['env', 'oc.env'];

/** Thrown to unwind a resolution whose problem has already been recorded. */
class Failed extends Error {}

function tokenize(value: string): Token[] {
  const tokens: Token[] = [];
  let text = '';
  let i = 0;
  while (i < value.length) {
    if (value.startsWith('\\${', i)) {
      text += '${';
      i += 3;
    } else if (value.startsWith('${', i)) {
      const end = value.indexOf('}', i + 2);
      if (end < 0)
        throw new Error(
          `unterminated interpolation: '${value.slice(i)}' has no closing '}' (write '\\\${' for a literal '\${')`,
        );
      const expr = value.slice(i + 2, end).trim();
      if (expr.includes('${'))
        throw new Error(`nested interpolations such as '${value.slice(i, end + 1)}}' are not supported`);
      if (expr === '') throw new Error("empty interpolation '${}'");
      if (text !== '') tokens.push({ text });
      text = '';
      tokens.push({ ref: expr });
      i = end + 1;
    } else {
      text += value[i];
      i += 1;
    }
  }
  if (text !== '' || tokens.length === 0) tokens.push({ text });
  return tokens;
}

/**
 * Types an environment variable's text (or an `${env:NAME,default}` default) like a command-line
 * value: `3` int, `0.5` float, `true` bool, `null`, `[1, 2]`, `'quoted'` string (quotes removed). Any
 * other text, including text the override grammar refuses (`a#b`, `x,y`), is kept exactly as it is.
 */
export function typeEnvValue(text: string): unknown {
  try {
    const value = parseOverrideValue(text);
    // Plain text stays exactly as set (no trimming, no escape processing); quotes make a string.
    return typeof value === 'string' && !/^[ \t]*['"]/.test(text) ? text : value;
  } catch (error) {
    if (error instanceof OverrideSyntaxError) return text;
    throw error;
  }
}

function stringify(value: unknown): string {
  return typeof value === 'string'
    ? value
    : typeof value === 'object' && value !== null
      ? JSON.stringify(value)
      : String(value);
}

/**
 * Resolves every `${...}` in `root` in place, OmegaConf style, and returns the problems found:
 * `${a.b}` (absolute), `${.b}` / `${..b}` (relative to the containing mapping), `${env:NAME}` and
 * `${env:NAME,default}` (the variable's text, or the default, is typed like a command-line value by
 * {@link typeEnvValue}: `3` is a number, `true` a boolean, `null` null, `'3'` a string; a value that is
 * exactly one `${env:…}` gets its source recorded as `environment variable NAME, via <file>`). A value that
 * is exactly one interpolation takes the referenced value's type; otherwise the
 * result is a string. `\${` is a literal `${`. Each problem is reported once, at the value that
 * causes it; values that merely depend on a broken one are left unresolved without a second report.
 */
export function resolveInterpolations(
  root: ConfigNode,
  sources: Sources,
  env: NodeJS.ProcessEnv = process.env,
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  /** Value path → where its `${env:…}` took its text from, for the sources map. */
  const envUses = new Map<string, string>();
  const state = new Map<string, 'resolving' | 'done' | 'failed'>();
  const stack: string[] = [];

  const report = (path: string, message: string, extra: Partial<ConfigProblem> = {}): never => {
    problems.push({ path, message, source: sources.get(path), ...extra });
    throw new Failed();
  };

  const needsWork = (value: unknown): value is string => typeof value === 'string' && value.includes('${');

  const resolveTree = (path: string): void => {
    const node = getPath(root, path);
    if (needsWork(node)) resolveAt(path);
    else if (Array.isArray(node)) node.forEach((_, i) => resolveTree(joinPath(path, String(i))));
    else if (isPlainObject(node)) for (const key of Object.keys(node)) resolveTree(joinPath(path, key));
  };

  const lookup = (target: string, from: string, expr: string): unknown => {
    const keys = splitPath(target);
    let node: unknown = root;
    for (let i = 0; i <= keys.length; i++) {
      const here = keys.slice(0, i).join('.');
      if (needsWork(node)) {
        resolveAt(here);
        node = getPath(root, here);
      }
      if (i === keys.length) break;
      const key = keys[i]!;
      const container = Array.isArray(node) || isPlainObject(node);
      if (!hasPath(node, key)) {
        const why = container || i === 0 ? '' : ` ('${here}' is a ${describe(node)})`;
        const value = getPath(root, from);
        // Never the key that holds this interpolation, one inside it or one around it: each
        // would be a cycle.
        const suggestions = suggest(
          target,
          allPaths(root).filter((p) => p !== from && !p.startsWith(`${from}.`) && !from.startsWith(`${p}.`)),
        );
        const written = `\${${expr}}`;
        report(from, `interpolation '${written}' refers to '${target}', which does not exist${why}`, {
          value,
          suggestions,
          // The fix keeps the key that holds the interpolation and corrects the reference in it.
          // (Empty when it cannot be rewritten: the suggestions still name the referenced key, not this one.)
          correctedValues:
            typeof value === 'string' && value.includes(written)
              ? suggestions.map((s) => value.split(written).join(`\${${s}}`))
              : [],
        });
      }
      node = Array.isArray(node) ? node[Number(key)] : (node as ConfigNode)[key];
    }
    if (Array.isArray(node) || isPlainObject(node)) {
      stack.push(target);
      try {
        resolveTree(target);
      } finally {
        stack.pop();
      }
      node = getPath(root, target);
    }
    return node;
  };

  const evaluate = (expr: string, from: string): unknown => {
    const resolver = /^([A-Za-z_][\w.]*):(.*)$/s.exec(expr);
    if (resolver) {
      const [, name, args] = resolver as unknown as [string, string, string];
      if (!RESOLVERS.includes(name)) {
        // Hydra's own resolvers, named for what taskforge does instead.
        const hydra: Record<string, string> = {
          now:
            '; taskforge names a run dir outputs/<date>/<time> itself when trainer.run_dir is null ' +
            '(trainer.default_root_dir sets the root)',
          hydra:
            '; there is no hydra node: the run dir is trainer.run_dir, and taskforge never changes ' +
            'directory, so relative paths resolve against the directory the command runs in',
        };
        report(
          from,
          `unknown resolver '${name}' in '\${${expr}}'; available: env (\${env:NAME} or \${env:NAME,default})` +
            (hydra[name] ?? ''),
          { suggestions: suggest(name, ['env']) },
        );
      }
      const comma = args.indexOf(',');
      const variable = (comma < 0 ? args : args.slice(0, comma)).trim();
      const value = env[variable];
      if (value === undefined && comma < 0) {
        report(
          from,
          // In the resolver's own spelling (Hydra users write oc.env).
          `environment variable '${variable}' is not set; set it, or give a default with '\${${name}:${variable},default}'`,
        );
      }
      const text = value ?? args.slice(comma + 1);
      envUses.set(
        from,
        value !== undefined
          ? `environment variable ${variable}`
          : `the default of \${${expr}} (${variable} is not set)`,
      );
      return typeEnvValue(text);
    }
    const dots = /^\.*/.exec(expr)![0].length;
    let target = expr;
    if (dots > 0) {
      const fromKeys = splitPath(from);
      if (dots > fromKeys.length)
        report(from, `relative interpolation '\${${expr}}' goes above the root of the config`);
      const base = fromKeys.slice(0, -dots);
      target = [...base, ...splitPath(expr.slice(dots))].join('.');
    }
    return lookup(target, from, expr);
  };

  const resolveAt = (path: string): void => {
    const status = state.get(path);
    if (status === 'done') return;
    if (status === 'failed') throw new Failed();
    if (status === 'resolving') {
      const cycle = [...stack.slice(stack.indexOf(path)), path];
      for (const member of cycle) state.set(member, 'failed');
      report(path, `interpolation cycle: ${cycle.join(' -> ')}`, { value: getPath(root, path) });
    }
    const raw = getPath(root, path);
    if (!needsWork(raw)) {
      state.set(path, 'done');
      return;
    }
    state.set(path, 'resolving');
    stack.push(path);
    try {
      let tokens: Token[];
      try {
        tokens = tokenize(raw);
      } catch (error) {
        report(path, (error as Error).message, { value: raw });
      }
      const single = tokens!.length === 1 && 'ref' in tokens![0]! ? tokens![0] : undefined;
      let value: unknown;
      if (single) {
        value = deepCopy(evaluate(single.ref, path));
      } else {
        value = tokens!.map((token) => ('ref' in token ? stringify(evaluate(token.ref, path)) : token.text)).join('');
      }
      let source = sources.get(path);
      const fromEnv = envUses.get(path);
      if (single && fromEnv !== undefined && !isPlainObject(value) && !Array.isArray(value)) {
        // The value is the environment's, not the file's: say so in `config` and in type errors.
        source = `${fromEnv}, via ${source ?? 'the config'}`;
        sources.set(path, source);
      }
      setPath(root, path, value);
      if (source !== undefined && isPlainObject(value)) {
        clearSources(sources, path);
        recordSources(sources, path, value, source);
      }
      state.set(path, 'done');
    } catch (error) {
      state.set(path, 'failed');
      throw error;
    } finally {
      stack.pop();
    }
  };

  const pending: string[] = [];
  const collect = (node: unknown, path: string): void => {
    if (needsWork(node)) pending.push(path);
    else if (Array.isArray(node)) node.forEach((item, i) => collect(item, joinPath(path, String(i))));
    else if (isPlainObject(node)) for (const [key, value] of Object.entries(node)) collect(value, joinPath(path, key));
  };
  collect(root, '');
  for (const path of pending) {
    try {
      resolveAt(path);
    } catch (error) {
      if (!(error instanceof Failed)) throw error;
    }
  }
  return problems;
}

/** Whether a sources-map entry says the value came from `${env:…}` (see resolveInterpolations). */
export function isEnvSource(source: string | undefined): boolean {
  return (
    source !== undefined &&
    (source.startsWith('environment variable ') ||
      source.startsWith('the default of ${env:') ||
      source.startsWith('the default of ${oc.env:'))
  );
}

/**
 * Adds the source to each problem of a validation error whose value came from the environment, so
 * that a type error such as "expected a number (got "abc")" says `[from environment variable N, via
 * conf/config.yaml]`. Returns `error` itself when no problem is about such a value.
 */
export function attachEnvSources(error: ConfigError, sources: ReadonlyMap<string, string>): ConfigError {
  let changed = false;
  const problems = error.problems.map((problem) => {
    const source = sources.get(problem.path);
    if (problem.source !== undefined || !isEnvSource(source)) return problem;
    changed = true;
    return { ...problem, source };
  });
  return changed ? new ConfigError(problems, 'Invalid configuration') : error;
}
