/**
 * Errors a user can act on. The CLI prints `message` as one paragraph (no stack trace unless
 * --verbose) and exits with `exitCode`: 2 for usage/config mistakes, 1 for runtime failures.
 */
export class TaskforgeError extends Error {
  readonly exitCode: number;
  /**
   * The config settings the error is about (dotted key → the value at fault), for callers that
   * know where a setting came from: an evaluation says which ones its checkpoint's saved config set.
   */
  readonly settings: Readonly<Record<string, unknown>>;
  constructor(
    message: string,
    options: { exitCode?: number; cause?: unknown; settings?: Readonly<Record<string, unknown>> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.exitCode = options.exitCode ?? 1;
    this.settings = options.settings ?? {};
  }
}

/**
 * A TaskforgeError from any copy of core: a plugin may bundle its own, so `instanceof` is not
 * enough; an Error with a numeric `exitCode` is one.
 */
export function isTaskforgeError(error: unknown): error is TaskforgeError {
  return (
    error instanceof TaskforgeError ||
    (error instanceof Error && typeof (error as { exitCode?: unknown }).exitCode === 'number')
  );
}

/** One problem found in a config: where, what was found, what was expected, and a hint. */
export interface ConfigProblem {
  /** Dotted config path, e.g. `trainer.max_steps`; empty for the root. */
  path: string;
  message: string;
  /** The offending value, when there is one. */
  value?: unknown;
  /** "did you mean ..." candidates, best first. */
  suggestions?: string[];
  /** Where the value came from (`file:line`, file path or `command line`), when known. */
  source?: string;
  /** The command-line override as the user typed it, when the value came from one. */
  override?: string;
  /**
   * Shell-ready fixes, best first, each a complete sentence fragment such as
   * `write 'trainer.max_steps=5'`; printed after the did-you-mean, joined by `, or `.
   */
  fixes?: string[];
  /**
   * For a `key=value` override whose key does not exist: the `+key=value` form. Composition
   * cannot know whether the schema accepts a new key there; the session adds it to `fixes` only
   * where it does, so no hint that fails is ever printed.
   */
  addAs?: string;
  /**
   * The whole value corrected, best first, when the mistake is inside it (an interpolation naming a
   * misspelt key: `${trainer.sed}` → `${trainer.seed}`; a misspelt or foreign name for an accepted
   * value: `wsam` → `wasm`, `cuda` → `gpu`); explainProblems turns each into a fix for where the
   * value came from (the override to type, or the file, line and key to edit). The `suggestions`
   * then name the referenced key or the accepted value, not this problem's key.
   */
  correctedValues?: string[];
  /** The schema's default for this key, when it has one: offered as a fix (`key=<default>`). */
  defaultValue?: unknown;
  /**
   * Other dotted paths a cross-key rule is about (`backbone.num_heads` for "embed_dim must be
   * divisible by num_heads"): when this key came from a file but one of those was typed on the
   * command line, explainProblems blames that override. A schema sets them with
   * `ctx.addIssue({ code: 'custom', path: [key], params: { relatedKeys: ['other_key'] }, ... })`
   * (sibling keys of the issue's key).
   */
  relatedPaths?: string[];
  /**
   * For a selection of a config group option (or a whole group) that is not in the search path:
   * which one (`option` absent for a group), so the session can name an unbuilt plugin that has it.
   */
  missingConfig?: { group: string; option?: string };
}

/** A config or usage mistake: carries every problem found, not just the first. Exit code 2. */
export class ConfigError extends TaskforgeError {
  readonly problems: ConfigProblem[];
  /** The message's first words, e.g. `Invalid configuration` or `Invalid override`. */
  readonly heading: string;
  constructor(problems: ConfigProblem[] | string, heading = 'Invalid configuration') {
    const list: ConfigProblem[] = typeof problems === 'string' ? [{ path: '', message: problems }] : problems;
    super(formatProblems(heading, list), { exitCode: 2 });
    this.problems = list;
    this.heading = heading;
  }
}

/**
 * A config value as the user would write it: JSON, except that the non-finite numbers the
 * override grammar accepts print as `inf`, `-inf` and `nan` (JSON would print `null`).
 */
export function formatValue(value: unknown): string {
  const nonFinite = (v: number) => (Number.isNaN(v) ? 'nan' : v > 0 ? 'inf' : '-inf');
  if (typeof value === 'number' && !Number.isFinite(value)) return nonFinite(value);
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? nonFinite(v) : v));
}

/**
 * The message of a ConfigError: a heading and one line per problem,
 * `- <path>: <message> (got <value>); did you mean '<a>' or '<b>'? [from <source>] <override as typed>; fix: <fixes>`.
 */
export function formatProblems(heading: string, problems: ConfigProblem[]): string {
  if (
    problems.length === 1 &&
    problems[0]!.path === '' &&
    !problems[0]!.suggestions?.length &&
    !problems[0]!.fixes?.length
  ) {
    return `${heading}: ${problems[0]!.message}`;
  }
  const lines = problems.map((p) => {
    let line = p.path ? `  - ${p.path}: ${p.message}` : `  - ${p.message}`;
    if (p.value !== undefined) line += ` (got ${formatValue(p.value)})`;
    if (p.suggestions?.length) line += `; did you mean ${p.suggestions.map((s) => `'${s}'`).join(' or ')}?`;
    if (p.source) line += ` [from ${p.source}]${p.override !== undefined ? ` ${p.override}` : ''}`;
    if (p.fixes?.length) line += `; fix: ${p.fixes.join(', or ')}`;
    return line;
  });
  return `${heading} (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${lines.join('\n')}`;
}
