/**
 * Errors a user can act on. The CLI prints `message` as one paragraph (no stack trace unless
 * --verbose) and exits with `exitCode`: 2 for usage/config mistakes, 1 for runtime failures.
 */
export class TaskforgeError extends Error {
  readonly exitCode: number;
  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.exitCode = options.exitCode ?? 1;
  }
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
  /** Where the value came from (file path or `command line`), when known. */
  source?: string;
}

/** A config or usage mistake: carries every problem found, not just the first. Exit code 2. */
export class ConfigError extends TaskforgeError {
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[] | string, heading = 'Invalid configuration') {
    const list: ConfigProblem[] = typeof problems === 'string' ? [{ path: '', message: problems }] : problems;
    super(formatProblems(heading, list), { exitCode: 2 });
    this.problems = list;
  }
}

export function formatProblems(heading: string, problems: ConfigProblem[]): string {
  if (problems.length === 1 && problems[0]!.path === '' && !problems[0]!.suggestions?.length) {
    return `${heading}: ${problems[0]!.message}`;
  }
  const lines = problems.map((p) => {
    let line = p.path ? `  - ${p.path}: ${p.message}` : `  - ${p.message}`;
    if (p.value !== undefined) line += ` (got ${JSON.stringify(p.value)})`;
    if (p.suggestions?.length) line += `; did you mean ${p.suggestions.map((s) => `'${s}'`).join(' or ')}?`;
    if (p.source) line += ` [from ${p.source}]`;
    return line;
  });
  return `${heading} (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${lines.join('\n')}`;
}
