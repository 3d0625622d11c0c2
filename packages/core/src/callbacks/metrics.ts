import type { TrainerView } from '../contracts.js';

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
