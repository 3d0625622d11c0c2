import { z } from 'zod';
import type { Callback, TrainerView } from '../contracts.js';
import { ConfigError } from '../errors.js';
import type { Output } from '../services/tokens.js';
import { availableMetrics, minModeWarning, suggestMetric } from './metrics.js';

export const earlyStoppingSchema = z.strictObject({
  /** `val/loss`: what core's tasks and the generated ones log (`<split>/<name>`). */
  monitor: z.string().min(1).default('val/loss'),
  mode: z.enum(['min', 'max']).default('min'),
  /** Validations without improvement before stopping. */
  patience: z.number().int().min(1).default(3),
  /** The smallest change that counts as an improvement. */
  min_delta: z.number().min(0).default(0),
});
export type EarlyStoppingOptions = z.input<typeof earlyStoppingSchema>;

/** Stops training when `monitor` has not improved for `patience` validations (or became NaN/Inf). */
export class EarlyStopping implements Callback {
  readonly name = 'early_stopping';
  readonly options: z.output<typeof earlyStoppingSchema>;
  best: number | undefined;
  wait = 0;

  /**
   * `output` receives the warning for a higher-is-better monitor under mode min (stderr when omitted).
   * @throws ZodError for options its schema refuses (config nodes are validated before they get here).
   */
  constructor(
    options: EarlyStoppingOptions = {},
    private readonly output?: Pick<Output, 'warn'>,
  ) {
    this.options = earlyStoppingSchema.parse(options);
  }

  onFitStart(): void {
    const warning = minModeWarning('trainer.callbacks.early_stopping', this.options.monitor, this.options.mode);
    if (!warning) return;
    if (this.output) this.output.warn(warning);
    else process.stderr.write(`warning: ${warning}\n`);
  }

  /** @throws ConfigError (exit 2) when validation logged no metric named `monitor`, with the names it did log. */
  onValidationEnd(trainer: TrainerView): void {
    const { monitor, mode, patience, min_delta } = this.options;
    const value = trainer.callbackMetrics[monitor];
    if (value === undefined) {
      // Validation has just logged everything it logs: a missing name is a config mistake (exit 2).
      const logged = Object.keys(trainer.callbackMetrics).sort();
      throw new ConfigError(
        [
          {
            path: 'trainer.callbacks.early_stopping.monitor',
            message:
              `no metric named '${monitor}' was logged by validation (logged: ${availableMetrics(trainer)}); ` +
              `log it in the task's validationStep (ctx.log('${monitor}', ` +
              `...)) or set monitor to one of the logged metrics`,
            value: monitor,
            suggestions: suggestMetric(monitor, logged),
          },
        ],
        'Invalid early-stopping monitor',
      );
    }
    if (!Number.isFinite(value)) {
      trainer.requestStop(`early stopping: '${monitor}' is ${value} at step ${trainer.globalStep}`);
      return;
    }
    const improved =
      this.best === undefined || (mode === 'min' ? value < this.best - min_delta : value > this.best + min_delta);
    if (improved) {
      this.best = value;
      this.wait = 0;
      return;
    }
    this.wait += 1;
    if (this.wait >= patience) {
      trainer.requestStop(
        `early stopping: '${monitor}' did not improve (mode ${mode}: ${mode === 'min' ? 'lower' : 'higher'} is better) by more than ${min_delta} ` +
          // Six significant digits: a float32 metric read as a double prints 0.9279999997615814.
          `in ${patience} validations (best ${Number(this.best!.toPrecision(6))}, now ${Number(value.toPrecision(6))})`,
      );
    }
  }

  stateDict(): Record<string, unknown> {
    return { best: this.best ?? null, wait: this.wait, monitor: this.options.monitor, mode: this.options.mode };
  }

  /**
   * Restores the best value and the validations waited. A best value of another monitor or mode
   * (a resume with other early-stopping settings) would compare unlike with like: the count
   * starts afresh instead (Lightning keys this state by monitor and mode).
   */
  loadStateDict(state: Record<string, unknown>): void {
    const monitor = state['monitor'] as string | undefined;
    if (monitor !== undefined && (monitor !== this.options.monitor || state['mode'] !== this.options.mode)) {
      this.best = undefined;
      this.wait = 0;
      return;
    }
    this.best = (state['best'] as number | null) ?? undefined;
    this.wait = (state['wait'] as number | undefined) ?? 0;
  }
}
