import type { TrainerView } from '../contracts.js';
import { suggest } from '../config/suggest.js';

/** The logged metric names, for "did you mean" style error messages. */
export function availableMetrics(trainer: TrainerView): string {
  const names = Object.keys(trainer.callbackMetrics).sort();
  return names.length ? names.map((n) => `'${n}'`).join(', ') : 'none yet';
}

/** `val_loss=0.1234 acc=0.9000`, for one-line summaries. */
export function formatMetrics(metrics: Record<string, number>): string {
  return Object.entries(metrics)
    .map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toPrecision(4)}`)
    .join(' ');
}

/**
 * A metric whose name reads as higher-is-better (accuracy, F1, AUC, precision, recall, IoU, mAP,
 * BLEU, ROUGE, R²): `val/acc`, `test_f1`, `val/top5_accuracy`. Used to warn when such a metric
 * is monitored with `mode: min`, the default (as in Lightning), which keeps its worst value.
 */
export function readsHigherIsBetter(metric: string): boolean {
  return /(^|[-/_.])(acc|accuracy|top\d*(_acc(uracy)?)?|f1|auc|auroc|roc_auc|precision|recall|iou|miou|map|bleu|rouge\w*|r2)$/i.test(
    metric,
  );
}

/**
 * The warning for a monitor that reads as higher-is-better under `mode: min` (see
 * {@link readsHigherIsBetter}), or undefined. `key` is the callback's config path.
 */
export function minModeWarning(key: string, monitor: string | null, mode: 'min' | 'max'): string | undefined {
  if (monitor === null || mode !== 'min' || !readsHigherIsBetter(monitor)) return undefined;
  return (
    `${key}.monitor is '${monitor}', which reads as higher-is-better, but ${key}.mode is min (the default, ` +
    `as in Lightning), so its lowest value counts as best; set ${key}.mode=max if higher is better.`
  );
}

/**
 * "Did you mean" metrics for a monitor nothing logs, best first, at most 3: close spellings
 * (`val/los` → `val/loss`), then logged names that start and end with the monitor's first and
 * last words, whatever the separators (`val_acc` → `val/tok_acc`).
 */
export function suggestMetric(monitor: string, logged: readonly string[]): string[] {
  const words = (name: string) =>
    name
      .toLowerCase()
      .split(/[/_.-]+/)
      .filter(Boolean);
  const wanted = words(monitor);
  const sameSplitAndEnd = logged.filter((name) => {
    const w = words(name);
    return name !== monitor && w.length > 1 && w[0] === wanted[0] && w.at(-1) === wanted.at(-1);
  });
  return [...new Set([...suggest(monitor, logged), ...sameSplitAndEnd])].slice(0, 3);
}
