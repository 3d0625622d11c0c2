import { TaskforgeError } from '../errors.js';

/** Thrown by `fit` after a SIGINT/SIGTERM stop; `exitCode` is the shell's 128 + signal number. */
export class TrainingInterrupted extends TaskforgeError {
  constructor(message: string, exitCode: number) {
    super(message, { exitCode });
  }
}

export const SIGNAL_EXIT_CODES: Readonly<Record<string, number>> = { SIGINT: 130, SIGTERM: 143 };

/**
 * Turns the first SIGINT/SIGTERM into a flag the training loop polls at step boundaries, so
 * it can save a checkpoint and stop cleanly (`onFirst` says so). A second signal calls `onSecond`
 * (synchronously: say what is lost), then restores the default behaviour and re-raises, ending
 * the process at once.
 */
export class SignalWatcher {
  received: NodeJS.Signals | undefined;
  // Bound per signal: listeners get no argument when a signal is raised with process.emit.
  private readonly listeners = { SIGINT: () => this.on('SIGINT'), SIGTERM: () => this.on('SIGTERM') };

  constructor(
    private readonly onFirst: (signal: NodeJS.Signals) => void,
    private readonly onSecond?: (signal: NodeJS.Signals) => void,
  ) {}

  install(): void {
    this.received = undefined;
    process.on('SIGINT', this.listeners.SIGINT);
    process.on('SIGTERM', this.listeners.SIGTERM);
  }

  remove(): void {
    process.off('SIGINT', this.listeners.SIGINT);
    process.off('SIGTERM', this.listeners.SIGTERM);
  }

  private on(signal: NodeJS.Signals): void {
    if (this.received) {
      this.remove();
      try {
        this.onSecond?.(signal);
      } finally {
        process.kill(process.pid, signal);
      }
      return;
    }
    this.received = signal;
    this.onFirst(signal);
  }
}

/**
 * Lets the event loop turn once. A SIGINT/SIGTERM listener is a macrotask: a loop whose awaits all
 * settle at once (synchronous steps on prefetched batches, as under strategy=single on wasm or
 * cpu) would never let it run, and Ctrl-C would wait for the epoch's end. One turn costs
 * microseconds.
 */
export function turnEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
