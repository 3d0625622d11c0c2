/**
 * `taskforge plot`: pictures of a run without a browser. Curves come from the CSV logger's
 * metrics.csv, a confusion matrix from an evaluation results JSON. Charts are Vega-Lite specs
 * rendered to SVG by Vega's headless View, then to PNG by resvg (prebuilt in its npm package).
 *
 * This lives in the CLI, not in core, so that plugins depending on core do not pull in a charting
 * stack they never use.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import { parse as parseCsv } from 'csv-parse/sync';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { TaskforgeError, writeNewFileAtomic } from '@taskforge/core';

/** A mistake in what the user asked to plot: exit code 2. */
const usage = (message: string) => new TaskforgeError(message, { exitCode: 2 });

/** One plotted point: `value` of metric `panel` (e.g. `loss`) for `series` (e.g. `val`) at `step`. */
export interface CurvePoint {
  step: number;
  panel: string;
  series: string;
  value: number;
}

/** What {@link plotCommand} wrote. */
export interface PlotResult {
  /** PNG files written, absolute paths. */
  files: string[];
  /** Points drawn on the curves chart (one per non-empty, finite metric cell of metrics.csv, aliases left out). */
  points: number;
  /**
   * Panels of the curves chart, in order (metric names without their `train/`/`val/`/`test/` prefix;
   * byte metrics drawn in MiB get ` (MiB)` appended).
   */
  panels: string[];
  /** Panels not drawn because their one series repeats another panel's: `train_loss = loss/train`. */
  aliases: string[];
}

export interface PlotOptions {
  /**
   * Where to write the curves PNG; default `<run dir>/plots/curves.png` (never overwritten: `-2`, `-3`… are
   * appended).
   */
  out?: string;
}

const SPLITS = ['train', 'val', 'test'];

/**
 * Reads a CSV logger file into points. Columns other than `step` and `epoch` are metrics; a name
 * `split/metric` goes to panel `metric`, series `split`; any other name (e.g. `lr-AdamW`) is its own
 * panel with series `value`. Empty and non-finite cells are skipped.
 *
 * @throws TaskforgeError (exit 2) when the file has no `step` column.
 */
export function readCurves(csvFile: string): CurvePoint[] {
  const rows = parseCsv(readFileSync(csvFile, 'utf8'), { columns: true, skip_empty_lines: true }) as Array<
    Record<string, string>
  >;
  if (rows.length > 0 && !('step' in rows[0]!)) {
    throw usage(`${csvFile} has no 'step' column: it is not a metrics.csv written by taskforge's CSV logger.`);
  }
  const points: CurvePoint[] = [];
  for (const row of rows) {
    const step = Number(row['step']);
    for (const [name, cell] of Object.entries(row)) {
      if (name === 'step' || name === 'epoch' || cell === '' || cell === undefined) continue;
      const value = Number(cell);
      if (!Number.isFinite(value) || !Number.isFinite(step)) continue;
      const slash = name.indexOf('/');
      const split = slash > 0 ? name.slice(0, slash) : '';
      const [panel, series] = SPLITS.includes(split) ? [name.slice(slash + 1), split] : [name, 'value'];
      points.push({ step, panel, series, value });
    }
  }
  return points;
}

/**
 * Leaves out panels that only repeat another: a panel with a single series whose values equal
 * (within float rounding, relative 1e-9) another panel's series at exactly the same steps. The
 * trainer itself logs `train_loss` and `lr` every `log_every_n_steps`, so a task that logs
 * `train/loss` and the `lr_monitor` callback (`lr-<optimizer>`) would otherwise draw each curve
 * twice. Of two aliases the one kept is the panel with more series, else the split-prefixed one
 * (`loss` over `train_loss`), else the first in column order (`lr` over `lr-adam`).
 *
 * @returns the points of the panels kept, and `aliases` as `dropped = kept/series` descriptions.
 */
export function dropAliasPanels(points: CurvePoint[]): { points: CurvePoint[]; aliases: string[] } {
  const panels = panelsOf(points);
  const series = new Map<string, Map<string, Map<number, number>>>();
  for (const p of points) {
    const bySeries = series.get(p.panel) ?? new Map<string, Map<number, number>>();
    series.set(p.panel, bySeries);
    const values = bySeries.get(p.series) ?? new Map<number, number>();
    bySeries.set(p.series, values);
    values.set(p.step, p.value);
  }
  const same = (a: Map<number, number>, b: Map<number, number>) =>
    a.size === b.size &&
    [...a].every(([step, v]) => {
      const w = b.get(step);
      return w !== undefined && Math.abs(v - w) <= 1e-9 * Math.max(Math.abs(v), Math.abs(w));
    });
  const split = (panel: string) => [...series.get(panel)!.keys()].some((s) => SPLITS.includes(s));
  // Whether `panel` should give way to `other`: fewer series, else not split-prefixed, else later.
  const yields = (panel: string, other: string) => {
    const [n, m] = [series.get(panel)!.size, series.get(other)!.size];
    if (n !== m) return n < m;
    if (split(panel) !== split(other)) return split(other);
    return panels.indexOf(panel) > panels.indexOf(other);
  };
  const dropped = new Set<string>();
  const aliases: string[] = [];
  for (const panel of panels) {
    const own = series.get(panel)!;
    if (own.size !== 1) continue;
    const [values] = [...own.values()];
    for (const other of panels) {
      if (other === panel || dropped.has(other)) continue;
      const match = [...series.get(other)!].find(([, v]) => same(values!, v));
      if (match && yields(panel, other)) {
        dropped.add(panel);
        aliases.push(`${panel} = ${match[0] === 'value' ? other : `${match[0]}/${other}`}`);
        break;
      }
    }
  }
  return { points: points.filter((p) => !dropped.has(p.panel)), aliases };
}

/** Bytes per MiB: byte metrics (names ending in `bytes`, e.g. `memory/gpu_bytes`) are drawn in MiB. */
const MIB = 1024 * 1024;

/**
 * Byte-valued panels (name ending in `bytes`, as the device_stats callback logs them) in MiB:
 * values divided by 2^20 and ` (MiB)` appended to the panel name. Other points are unchanged.
 */
export function bytesToMiB(points: CurvePoint[]): CurvePoint[] {
  return points.map((p) => (/bytes$/.test(p.panel) ? { ...p, panel: `${p.panel} (MiB)`, value: p.value / MIB } : p));
}

/**
 * Vega expression for y-axis tick labels: up to 4 significant digits without trailing zeros
 * (`2.03`, `156.3`, `0.0342`, `1234`), exponent notation below 1e-3 and from 1e5 on (`6e-6`,
 * `1.563e+5`), so neither a learning rate nor a large count prints as a long run of digits.
 */
export const Y_LABEL_EXPR =
  'datum.value !== 0 && (abs(datum.value) < 1e-3 || abs(datum.value) >= 1e5)' +
  " ? format(datum.value, '.4~e') : format(datum.value, '.4~r')";

/** The curves chart: one row per panel, independent y scales, step on x, a line and a dot per point. */
export function curvesSpec(points: CurvePoint[], title: string): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values: points },
    facet: { row: { field: 'panel', type: 'nominal', title: null, sort: panelsOf(points) } },
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 520,
      height: 160,
      mark: { type: 'line', point: { size: 12 }, strokeWidth: 1.5 },
      encoding: {
        x: { field: 'step', type: 'quantitative', title: 'step' },
        y: {
          field: 'value',
          type: 'quantitative',
          title: null,
          scale: { zero: false },
          axis: { labelExpr: Y_LABEL_EXPR },
        },
        color: { field: 'series', type: 'nominal', title: 'split', scale: { domain: seriesOf(points) } },
      },
    },
    config: { background: 'white' },
  } as TopLevelSpec;
}

/** A confusion-matrix heat map: true class down, predicted class across, counts in the cells. */
export function confusionSpec(classNames: string[], matrix: number[][], title: string): TopLevelSpec {
  const values = matrix.flatMap((row, t) =>
    row.map((count, p) => ({ true: classNames[t] ?? String(t), predicted: classNames[p] ?? String(p), count })),
  );
  const order = classNames.length ? classNames : matrix.map((_, i) => String(i));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values },
    width: 36 * order.length,
    height: 36 * order.length,
    encoding: {
      x: { field: 'predicted', type: 'ordinal', sort: order, title: 'predicted class' },
      y: { field: 'true', type: 'ordinal', sort: order, title: 'true class' },
    },
    layer: [
      { mark: 'rect', encoding: { color: { field: 'count', type: 'quantitative', scale: { scheme: 'blues' } } } },
      { mark: { type: 'text', fontSize: 9 }, encoding: { text: { field: 'count', type: 'quantitative' } } },
    ],
    config: { background: 'white' },
  } as TopLevelSpec;
}

/** Renders a Vega-Lite spec to PNG bytes (SVG through Vega's headless renderer, then resvg at 2× scale). */
export async function renderPng(spec: TopLevelSpec): Promise<{ png: Uint8Array; svg: string }> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  const png = new Resvg(svg, { fitTo: { mode: 'zoom', value: 2 }, font: { loadSystemFonts: true } }).render().asPng();
  return { png, svg };
}

/**
 * `taskforge plot <run dir | metrics.csv | results.json>`: writes the run's curves (every logged
 * metric against step, from `logs/csv/metrics.csv`, one panel per distinct series: see
 * {@link dropAliasPanels}; bytes in MiB: see {@link bytesToMiB}) and, when the target holds evaluation results
 * with a confusion matrix (`test_results*.json`, also in each of a training run's `evaluations/*`
 * dirs, or any `*.json` given directly), a heat map of it.
 * Existing files are never replaced: a new name gets `-2`, `-3`… before the extension.
 *
 * @throws TaskforgeError (exit 2) when the target does not exist or holds nothing to plot.
 */
export async function plotCommand(target: string, options: PlotOptions = {}): Promise<PlotResult> {
  const path = resolve(target);
  if (!existsSync(path))
    throw usage(
      `'${target}' does not exist. Pass a run dir (it holds ` +
        `logs/csv/metrics.csv), a metrics.csv or a test results JSON.`,
    );
  const isDir = statSync(path).isDirectory();
  const csv = isDir ? findMetricsCsv(path) : extname(path) === '.csv' ? path : undefined;
  const results = isDir ? findResults(path) : extname(path) === '.json' ? [path] : [];
  const runDir = isDir ? path : csv ? runDirOfCsv(csv) : dirname(path);
  const result: PlotResult = { files: [], points: 0, panels: [], aliases: [] };

  if (csv) {
    const read = readCurves(csv);
    if (read.length === 0)
      throw usage(
        `${csv} has no metric values yet: nothing to plot. Train for at least trainer.log_every_n_steps steps.`,
      );
    const distinct = dropAliasPanels(read);
    const points = bytesToMiB(distinct.points);
    const { png } = await renderPng(curvesSpec(points, basename(runDir)));
    const file = writeNewFileAtomic(options.out ? resolve(options.out) : join(runDir, 'plots', 'curves.png'), png);
    Object.assign(result, { points: points.length, panels: panelsOf(points), aliases: distinct.aliases });
    result.files.push(file);
  }
  for (const json of results) {
    const matrix = findConfusion(JSON.parse(readFileSync(json, 'utf8')) as unknown);
    if (!matrix) continue;
    // An evaluation under a training run's evaluations/ is named by its dir (test-step=000200).
    const evaluation = isDir && dirname(json) !== runDir ? basename(dirname(json)) : undefined;
    const own = basename(json, '.json');
    const name = evaluation ? (own === 'test_results' ? evaluation : `${evaluation}_${own}`) : own;
    const { png } = await renderPng(confusionSpec(matrix.class_names, matrix.matrix, name));
    const file = writeNewFileAtomic(join(isDir ? join(runDir, 'plots') : dirname(json), `${name}_confusion.png`), png);
    result.files.push(file);
  }
  if (result.files.length === 0) {
    throw usage(
      `Nothing to plot in '${target}': no logs/csv/metrics.csv (is ` +
        `logger/csv on?) and no results JSON with a confusion matrix.`,
    );
  }
  return result;
}

/** Series present, in a stable order (train, val, test, then others), so colours mean the same in every plot. */
function seriesOf(points: CurvePoint[]): string[] {
  const present = new Set(points.map((p) => p.series));
  return [...SPLITS, 'value'].filter((s) => present.has(s));
}

function panelsOf(points: CurvePoint[]): string[] {
  return [...new Set(points.map((p) => p.panel))];
}

function findMetricsCsv(runDir: string): string | undefined {
  const standard = join(runDir, 'logs', 'csv', 'metrics.csv');
  if (existsSync(standard)) return standard;
  const logs = join(runDir, 'logs');
  if (!existsSync(logs)) return undefined;
  // A renamed CSV logger (logger name → folder) still writes metrics.csv one level below logs/.
  return readdirSync(logs)
    .map((d) => join(logs, d, 'metrics.csv'))
    .find((f) => existsSync(f));
}

/**
 * The test results in a dir: its own `test_results*.json`, then, for a training run, those of each
 * evaluation under `evaluations/` (where `taskforge test ckpt=<run>/checkpoints/…` writes them).
 */
function findResults(runDir: string): string[] {
  const own = (dir: string) =>
    readdirSync(dir)
      .filter((f) => /^test_results.*\.json$/.test(f))
      .sort()
      .map((f) => join(dir, f));
  const evaluations = join(runDir, 'evaluations');
  const nested = existsSync(evaluations)
    ? readdirSync(evaluations, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name)
        .sort()
        .flatMap((d) => own(join(evaluations, d)))
    : [];
  return [...own(runDir), ...nested];
}

function runDirOfCsv(csv: string): string {
  const dir = dirname(csv);
  return basename(dirname(dir)) === 'logs' ? dirname(dirname(dir)) : dir;
}

/** The first `{ matrix: number[][], class_names?: string[] }` found anywhere in a results object. */
function findConfusion(value: unknown): { class_names: string[]; matrix: number[][] } | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const node = value as Record<string, unknown>;
  if (Array.isArray(node['matrix']) && node['matrix'].every((r) => Array.isArray(r))) {
    const names = Array.isArray(node['class_names']) ? (node['class_names'] as unknown[]).map(String) : [];
    return { class_names: names, matrix: node['matrix'] as number[][] };
  }
  for (const child of Object.values(node)) {
    const found = findConfusion(child);
    if (found) return found;
  }
  return undefined;
}
