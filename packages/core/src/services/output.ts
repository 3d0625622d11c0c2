import cliProgress from 'cli-progress';
import { SystemClock } from './clock.js';
import type { Clock, Output, ProgressHandle } from './tokens.js';

type Unit = 'items' | 'bytes' | 'steps';

export interface ConsoleOutputOptions {
  /** Where messages and progress go; default stderr, so stdout stays clean for piping. */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Force bar (true) or plain-line (false) progress; default: whether `stream` is a TTY. */
  tty?: boolean;
  clock?: Clock;
  /** Minimum time between plain progress lines; default 10 s. */
  plainIntervalMs?: number;
}

const BYTE_UNITS: Array<[number, string]> = [
  [1e9, 'GB'],
  [1e6, 'MB'],
  [1e3, 'kB'],
  [1, 'B'],
];

function byteScale(n: number): [number, string] {
  return BYTE_UNITS.find(([size]) => Math.abs(n) >= size) ?? [1, 'B'];
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function formatField(value: string | number): string {
  if (typeof value === 'string' || Number.isInteger(value)) return String(value);
  return Number(value.toPrecision(4)).toString();
}

/** Position, total and timing of one progress display, rendered as text. */
class ProgressState {
  current = 0;
  fields: Record<string, string | number> = {};
  readonly startedAt: number;
  /** Where the rate is measured from: the start, or (rateFromFirstUpdate) the first update once it came. */
  private rateBase: { at: number; current: number } | undefined;

  constructor(
    readonly label: string,
    readonly unit: Unit,
    public total: number | undefined,
    private readonly clock: Clock,
    rateFromFirstUpdate = false,
  ) {
    this.startedAt = clock.now();
    if (!rateFromFirstUpdate) this.rateBase = { at: this.startedAt, current: 0 };
  }

  elapsedSeconds(): number {
    return (this.clock.now() - this.startedAt) / 1000;
  }

  advance(current: number, fields: Record<string, string | number> | undefined): void {
    this.current = current;
    this.rateBase ??= { at: this.clock.now(), current };
    if (fields) this.fields = { ...this.fields, ...fields };
  }

  /** Units per second since the rate base; 0 while there is nothing to measure yet. */
  private ratePerSecond(): number {
    if (!this.rateBase) return 0;
    const seconds = (this.clock.now() - this.rateBase.at) / 1000;
    return seconds > 0 ? (this.current - this.rateBase.current) / seconds : 0;
  }

  /** The closing text, e.g. `163.0/163.0 MB (100%) 5.1 MB/s, done in 32s`. */
  done(): string {
    return `${this.describe()}, done in ${formatDuration(this.elapsedSeconds())}`;
  }

  /** e.g. `12.3/163.0 MB (7%) 5.1 MB/s ETA 30s loss=0.4321` */
  describe(): string {
    const parts = [this.amount()];
    const total = this.total;
    if (total) parts.push(`(${Math.floor((100 * Math.min(this.current, total)) / total)}%)`);
    const rate = this.ratePerSecond();
    if (rate > 0) {
      parts.push(this.rate(rate));
      if (total && this.current < total) parts.push(`ETA ${formatDuration((total - this.current) / rate)}`);
    }
    for (const [key, value] of Object.entries(this.fields)) parts.push(`${key}=${formatField(value)}`);
    return parts.join(' ');
  }

  private amount(): string {
    if (this.unit === 'bytes') {
      const [size, name] = byteScale(this.total ?? this.current);
      const digits = size === 1 ? 0 : 1;
      const current = (this.current / size).toFixed(digits);
      return this.total === undefined
        ? `${current} ${name}`
        : `${current}/${(this.total / size).toFixed(digits)} ${name}`;
    }
    const amount = this.total === undefined ? `${this.current}` : `${this.current}/${this.total}`;
    return this.unit === 'steps' ? `${amount} steps` : amount;
  }

  private rate(perSecond: number): string {
    if (this.unit === 'bytes') {
      const [size, name] = byteScale(perSecond);
      return `${(perSecond / size).toFixed(1)} ${name}/s`;
    }
    return `${formatField(perSecond)} ${this.unit === 'steps' ? 'steps' : 'it'}/s`;
  }
}

/** Human-facing output: plain lines, and progress as a bar on a TTY or periodic lines otherwise. */
export class ConsoleOutput implements Output {
  private readonly stream: NodeJS.WritableStream;
  private readonly tty: boolean;
  private readonly clock: Clock;
  private readonly plainIntervalMs: number;
  private bars: cliProgress.MultiBar | undefined;
  private activeBars = 0;

  constructor(options: ConsoleOutputOptions = {}) {
    const stream = options.stream ?? process.stderr;
    this.stream = stream;
    this.tty = options.tty ?? Boolean(stream.isTTY);
    this.clock = options.clock ?? new SystemClock();
    this.plainIntervalMs = options.plainIntervalMs ?? 10_000;
  }

  info(message: string): void {
    this.line(message);
  }

  warn(message: string): void {
    this.line(`warning: ${message}`);
  }

  progress(options: { label: string; total?: number; unit?: Unit; rateFromFirstUpdate?: boolean }): ProgressHandle {
    const state = new ProgressState(
      options.label,
      options.unit ?? 'items',
      options.total,
      this.clock,
      options.rateFromFirstUpdate,
    );
    return this.tty ? this.barProgress(state) : this.plainProgress(state);
  }

  private line(text: string): void {
    // A bar owns the last terminal line; cli-progress prints logged lines above it.
    if (this.bars) this.bars.log(`${text}\n`);
    else this.stream.write(`${text}\n`);
  }

  private plainProgress(state: ProgressState): ProgressHandle {
    let lastPrint: number | undefined;
    let stopped = false;
    return {
      update: (current, fields) => {
        if (stopped) return;
        state.advance(current, fields);
        const now = this.clock.now();
        if (lastPrint === undefined || now - lastPrint >= this.plainIntervalMs) {
          lastPrint = now;
          this.line(`${state.label}: ${state.describe()}`);
        }
      },
      setTotal: (total) => {
        state.total = total;
      },
      stop: () => {
        if (stopped) return;
        stopped = true;
        this.line(`${state.label}: ${state.done()}`);
      },
    };
  }

  private barProgress(state: ProgressState): ProgressHandle {
    this.bars ??= new cliProgress.MultiBar({
      stream: this.stream as NodeJS.WritableStream & { isTTY: boolean } as never,
      // Ctrl-C must reach the trainer (which saves a checkpoint), not just stop the bars.
      gracefulExit: false,
      hideCursor: false,
      clearOnComplete: false,
      barsize: 30,
      barCompleteChar: '\u2588',
      barIncompleteChar: '\u2591',
      format: (options, params, payload: { label: string; text: string; known: boolean }) =>
        `${payload.label} ` +
        `${payload.known ? `${cliProgress.Format.BarFormat(params.progress, options)} ` : ''}${payload.text}`,
    });
    const payload = () => ({ label: state.label, text: state.describe(), known: state.total !== undefined });
    const bar = this.bars.create(state.total ?? 1, 0, payload());
    this.activeBars++;
    let stopped = false;
    return {
      update: (current, fields) => {
        if (stopped) return;
        state.advance(current, fields);
        bar.update(state.total === undefined ? 0 : current, payload());
      },
      setTotal: (total) => {
        state.total = total;
        bar.setTotal(total);
      },
      stop: () => {
        if (stopped) return;
        stopped = true;
        bar.update(state.total === undefined ? 0 : state.current, {
          ...payload(),
          text: state.done(),
        });
        bar.stop();
        if (--this.activeBars === 0) {
          this.bars?.update(); // flushes lines logged since the last redraw
          this.bars?.stop();
          this.bars = undefined;
        }
      },
    };
  }
}
