import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import YAML from 'yaml';
import type { MetricsLogger } from '../contracts.js';
import { TaskforgeError } from '../errors.js';
import { withFsErrors, writeFileAtomic } from '../fs.js';

export interface CsvLoggerOptions {
  /** Directory of `metrics.csv` and `hparams.yaml`, e.g. `<runDir>/logs/csv`. */
  dir: string;
  /** Write to disk every this many `logMetrics` calls (and on finalize). Default 10. */
  flushEvery?: number;
}

type Row = Record<string, number>;

/** Python-style spellings, so pandas and friends read non-finite values back. */
function formatNumber(value: number): string {
  if (Number.isNaN(value)) return 'nan';
  if (value === Infinity) return 'inf';
  if (value === -Infinity) return '-inf';
  return String(value);
}

function parseNumber(field: string): number {
  return field === 'inf' ? Infinity : field === '-inf' ? -Infinity : Number(field);
}

/**
 * Lightning-style CSV logger: one row per logged step, columns `step` then every metric name in
 * order of first appearance (names new in the same call sorted). Metrics logged at the step of
 * the latest row (the training metrics, then the learning rate, then validation, all at one step)
 * are merged into that row; a call for the same step that repeats a metric already in the row
 * with the same value (the `epoch` every call carries, as in Lightning) merges too, one with
 * another value starts a new row instead of overwriting it. Rows are appended; when a new metric appears,
 * or a row already on disk gained values, the whole file is rewritten (temp file, then rename).
 * A `metrics.csv` already in `dir` (a resumed run) is kept and extended. Reading and writing
 * CSV (quoting of metric names holding `,` or `"`) is left to csv-parse and csv-stringify.
 */
export class CsvLogger implements MetricsLogger {
  readonly name = 'csv';
  readonly dir: string;
  readonly metricsPath: string;
  private readonly flushEvery: number;
  private columns: string[] = ['step'];
  private rows: Row[] = [];
  /** Rows already in the file, and the header they were written under (undefined: nothing on disk yet). */
  private rowsOnDisk = 0;
  private headerOnDisk: string[] | undefined;
  private loaded = false;
  /** A row already on disk gained values: the next flush rewrites the file. */
  private rewrite = false;
  private callsSinceFlush = 0;

  constructor(options: CsvLoggerOptions) {
    this.dir = options.dir;
    this.metricsPath = join(options.dir, 'metrics.csv');
    this.flushEvery = options.flushEvery ?? 10;
  }

  logHyperparams(config: Record<string, unknown>): void {
    writeFileAtomic(join(this.dir, 'hparams.yaml'), YAML.stringify(config));
  }

  /**
   * Adds `metrics` to the row of `step` (optimizer steps, an integer >= 0).
   * @throws TaskforgeError (exit 1) for another step value, or when an existing `metrics.csv` in
   *   `dir` is not a taskforge metrics file.
   */
  logMetrics(metrics: Record<string, number>, step: number): void {
    if (!Number.isInteger(step) || step < 0)
      throw new TaskforgeError(`CSV logger: step must be a non-negative integer, got ${step}.`);
    this.loadExisting();
    const fresh = Object.keys(metrics).filter((k) => k !== 'step' && !this.columns.includes(k));
    this.columns.push(...fresh.sort());
    const last = this.rows.at(-1);
    if (
      last !== undefined &&
      last['step'] === step &&
      Object.entries(metrics).every(([k, v]) => k === 'step' || last[k] === undefined || Object.is(last[k], v))
    ) {
      Object.assign(last, metrics, { step });
      if (this.rows.length <= this.rowsOnDisk) this.rewrite = true;
    } else {
      this.rows.push({ ...metrics, step });
    }
    if ((this.callsSinceFlush += 1) >= this.flushEvery) this.flush();
  }

  /**
   * Drops the rows after `step` from `metrics.csv` (rewritten atomically): a run resumed in place
   * from a checkpoint at `step` logs those steps again, and the interrupted run's rows would
   * otherwise appear twice. Returns how many rows were dropped.
   */
  purgeAfter(step: number): number {
    this.loadExisting();
    const kept = this.rows.filter((row) => (row['step'] ?? 0) <= step);
    const dropped = this.rows.length - kept.length;
    if (dropped > 0) {
      this.rows = kept;
      this.rewrite = true;
      this.flush();
    }
    return dropped;
  }

  /** Writes pending rows now. */
  flush(): void {
    this.loadExisting();
    this.callsSinceFlush = 0;
    const upToDate =
      this.rows.length === this.rowsOnDisk && this.headerOnDisk?.length === this.columns.length && !this.rewrite;
    if (upToDate || (this.rows.length === 0 && !this.rewrite)) return;
    const records = (rows: Row[]) =>
      rows.map((row) => this.columns.map((c) => (row[c] === undefined ? '' : formatNumber(row[c]!))));
    if (this.headerOnDisk?.length === this.columns.length && !this.rewrite) {
      const pending = stringify(records(this.rows.slice(this.rowsOnDisk)));
      withFsErrors('append to', this.metricsPath, () => appendFileSync(this.metricsPath, pending));
    } else {
      writeFileAtomic(this.metricsPath, stringify([this.columns, ...records(this.rows)]));
      this.headerOnDisk = [...this.columns];
      this.rewrite = false;
    }
    this.rowsOnDisk = this.rows.length;
  }

  finalize(): void {
    this.flush();
  }

  private loadExisting(): void {
    if (this.loaded) return;
    this.loaded = true;
    if (!existsSync(this.metricsPath)) return;
    const text = withFsErrors('read', this.metricsPath, () => readFileSync(this.metricsPath, 'utf8'));
    let records: string[][];
    try {
      records = parse(text, { relax_column_count: true, skip_empty_lines: true }) as string[][];
    } catch (error) {
      throw new TaskforgeError(
        `'${this.metricsPath}' is not valid CSV (${(error as Error).message}); ` +
          'move it away or log to another directory (logger `name`).',
      );
    }
    if (records.length === 0) return;
    const header = records[0]!;
    if (header[0] !== 'step') {
      throw new TaskforgeError(
        `'${this.metricsPath}' exists but is not a taskforge metrics ` +
          `file (its first column is '${header[0]}', expected 'step'). ` +
          'Move it away or log to another directory (logger `name`).',
      );
    }
    this.columns = header;
    this.rows = records.slice(1).map((fields) => {
      const row: Row = {};
      fields.forEach((field, i) => {
        if (field !== '' && header[i] !== undefined) row[header[i]!] = parseNumber(field);
      });
      return row;
    });
    this.rowsOnDisk = this.rows.length;
    this.headerOnDisk = [...header];
  }
}
