/**
 * Injection tokens for the services core resolves through tsyringe. Tests and users swap a
 * service by registering another value for its token in a child container.
 */
export const Tokens = {
  /** ComponentRegistry: registered components by kind and name. */
  Registry: Symbol.for('taskforge.Registry'),
  /** Output: human-facing lines and progress bars (stderr/stdout). */
  Output: Symbol.for('taskforge.Output'),
  /** Clock: `now()` in ms; swapped in tests for deterministic run dirs and ETAs. */
  Clock: Symbol.for('taskforge.Clock'),
  /** Paths: cache and data directories, project root. */
  Paths: Symbol.for('taskforge.Paths'),
  /** Accelerator: chooses and initialises the TF.js backend. */
  Accelerator: Symbol.for('taskforge.Accelerator'),
  /** Instantiator: builds registered components from validated config nodes. */
  Instantiator: Symbol.for('taskforge.Instantiator'),
  /** TrainerFactory: `(config, deps) => Trainer`; swap it to run commands with another Trainer. */
  TrainerFactory: Symbol.for('taskforge.TrainerFactory'),
} as const;

export interface Clock {
  now(): number;
}

export interface Paths {
  /** Root of the user's project (nearest package.json from cwd). */
  projectRoot: string;
  /** Per-user cache dir: $TASKFORGE_CACHE_DIR, else $XDG_CACHE_HOME/taskforge, else ~/.cache/taskforge. */
  cacheDir: string;
}

/** A progress display: a bar on a TTY, periodic plain lines otherwise (CI logs). */
export interface ProgressHandle {
  /** Set the absolute position; `fields` are shown beside the bar (e.g. loss). */
  update(current: number, fields?: Record<string, string | number>): void;
  /** Change the total (e.g. once a download's size is known). */
  setTotal(total: number): void;
  stop(): void;
}

export interface Output {
  info(message: string): void;
  warn(message: string): void;
  /**
   * `unit: 'bytes'` shows sizes, speed and ETA in bytes. `rateFromFirstUpdate: true` measures the
   * rate (and so the ETA) from the first update on, leaving out the time before it (startup and a
   * slow first step, e.g. training's kernel compilation); the first update then shows no rate or ETA.
   */
  progress(options: {
    label: string;
    total?: number;
    unit?: 'items' | 'bytes' | 'steps';
    rateFromFirstUpdate?: boolean;
  }): ProgressHandle;
}
