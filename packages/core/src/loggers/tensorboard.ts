import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import type { MetricsLogger } from '../contracts.js';
import { TaskforgeError } from '../errors.js';
import { withFsErrors, writeFileAtomic } from '../fs.js';
import { encodeEvent, frameRecord, type SummaryValue } from './tfevents.js';

export interface TensorBoardLoggerOptions {
  /** Directory of the event file, e.g. `<runDir>/logs/tensorboard` (point `tensorboard --logdir` at it or above). */
  dir: string;
  /** Write to disk every this many logged events (and on finalize). Default 10. */
  flushEvery?: number;
  /** Milliseconds since the epoch; for the file name and event wall times. Default `Date.now`. */
  now?: () => number;
  /** Host part of the file name. Default `os.hostname()`. */
  host?: string;
}

/**
 * Writes `events.out.tfevents.<secs>.<host>` readable by TensorBoard: scalars, PNG images, and
 * the hyper-parameters as YAML (a text summary, plus `hparams.yaml` beside the events file).
 */
export class TensorBoardLogger implements MetricsLogger {
  readonly name = 'tensorboard';
  readonly dir: string;
  readonly eventsPath: string;
  private readonly flushEvery: number;
  private readonly now: () => number;
  private pending: Buffer[] = [];
  private fd: number | undefined;

  constructor(options: TensorBoardLoggerOptions) {
    this.dir = options.dir;
    this.flushEvery = options.flushEvery ?? 10;
    this.now = options.now ?? Date.now;
    const host = (options.host ?? hostname()).replace(/[^A-Za-z0-9._-]/g, '_');
    this.eventsPath = join(this.dir, `events.out.tfevents.${Math.floor(this.now() / 1000)}.${host}`);
    // TensorBoard expects the version record first.
    this.pending.push(frameRecord(encodeEvent({ wallTime: this.now() / 1000, step: 0, fileVersion: 'brain.Event:2' })));
  }

  logHyperparams(config: Record<string, unknown>): void {
    const yaml = YAML.stringify(config);
    writeFileAtomic(join(this.dir, 'hparams.yaml'), yaml);
    // Indented by four spaces: the text plugin renders Markdown, where that makes a code block.
    const text = yaml
      .trimEnd()
      .split('\n')
      .map((line) => `    ${line}`)
      .join('\n');
    this.enqueue(0, [{ tag: 'hparams', text }]);
  }

  /**
   * Marks a resume at `step` (session_log START at step + 1, as PyTorch's `purge_step`):
   * TensorBoard drops what an interrupted run in this dir logged after `step`, so a resumed
   * in-place run's curves do not show those steps twice.
   */
  purgeAfter(step: number): number {
    this.pending.push(frameRecord(encodeEvent({ wallTime: this.now() / 1000, step: step + 1, sessionStart: true })));
    return 0;
  }

  logMetrics(metrics: Record<string, number>, step: number): void {
    const values = Object.entries(metrics).map(([tag, simpleValue]) => ({ tag, simpleValue }));
    if (values.length > 0) this.enqueue(step, values);
  }

  logImage(tag: string, png: Uint8Array, step: number): void {
    this.enqueue(step, [{ tag, image: { png } }]);
  }

  /** Writes pending events now. */
  flush(): void {
    if (this.pending.length <= 0) return;
    const data = Buffer.concat(this.pending);
    withFsErrors('write TensorBoard events to', this.eventsPath, () => {
      if (this.fd === undefined) {
        mkdirSync(this.dir, { recursive: true });
        this.fd = openSync(this.eventsPath, 'a');
      }
      writeSync(this.fd, data);
    });
    this.pending = [];
  }

  /**
   * Flushes and closes the file. The Trainer finalizes loggers after each of fit/validate/test, as
   * Lightning does, so logging afterwards reopens the same file in append mode.
   */
  finalize(): void {
    this.flush();
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private enqueue(step: number, values: SummaryValue[]): void {
    if (!Number.isInteger(step) || step < 0)
      throw new TaskforgeError(`TensorBoard logger: step must be a non-negative integer, got ${step}.`);
    this.pending.push(frameRecord(encodeEvent({ wallTime: this.now() / 1000, step, values })));
    if (this.pending.length >= this.flushEvery) this.flush();
  }
}
