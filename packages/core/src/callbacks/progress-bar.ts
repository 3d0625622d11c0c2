import { z } from 'zod';
import type { Callback, TrainerView } from '../contracts.js';
import type { Output, ProgressHandle } from '../services/tokens.js';
import { formatMetrics } from './metrics.js';

export const progressBarSchema = z.strictObject({
  /** Update the display every N optimizer steps. */
  refresh_rate: z.number().int().min(1).default(1),
});
export type ProgressBarOptions = z.input<typeof progressBarSchema>;

/**
 * One display over the optimizer steps this fit will run, with epoch, global step/total and
 * loss beside it, a second one over each validation pass's batches, and a line with each
 * validation's and test's metrics. The `Output` adds rate and ETA and picks
 * a TTY bar or plain lines. Positions count from where this fit started, so a resumed run's
 * rate and ETA are not inflated by the steps it skipped, and the rate is measured from the first
 * displayed step on, so startup and the slow first step do not inflate the ETA either.
 */
export class ProgressBar implements Callback {
  readonly name = 'progress_bar';
  readonly options: z.output<typeof progressBarSchema>;
  private handle: ProgressHandle | undefined;
  private valHandle: ProgressHandle | undefined;
  private startStep = 0;

  constructor(
    private readonly output: Output,
    options: ProgressBarOptions = {},
  ) {
    this.options = progressBarSchema.parse(options);
  }

  onFitStart(trainer: TrainerView): void {
    this.startStep = trainer.globalStep;
    this.handle = this.output.progress({
      label: 'train',
      total: Math.max(0, trainer.maxSteps - this.startStep),
      unit: 'steps',
      // Startup and the first step (backend init, kernel compilation) are far slower than the
      // steps after them: counting them made the first ETAs many times too long.
      rateFromFirstUpdate: true,
    });
  }

  onTrainBatchEnd(trainer: TrainerView, outputs: { loss: number }): void {
    const step = trainer.globalStep;
    if (!this.handle || (step % this.options.refresh_rate !== 0 && step !== trainer.maxSteps)) return;
    this.handle.update(step - this.startStep, {
      epoch: trainer.epoch,
      step: `${step}/${trainer.maxSteps}`,
      loss: Number(outputs.loss.toPrecision(4)),
    });
  }

  /** A second display for the validation pass: a full pass can take minutes with nothing else moving. */
  onValidationStart(_trainer: TrainerView, info: { batches: number | undefined }): void {
    this.valHandle?.stop();
    this.valHandle = this.output.progress({
      label: 'val',
      ...(info.batches !== undefined ? { total: info.batches } : {}),
      unit: 'items',
    });
  }

  onValidationBatchEnd(_trainer: TrainerView, progress: { batchesDone: number }): void {
    this.valHandle?.update(progress.batchesDone);
  }

  onValidationEnd(trainer: TrainerView, metrics: Record<string, number>): void {
    this.valHandle?.stop();
    this.valHandle = undefined;
    this.output.info(`Validation at step ${trainer.globalStep} (epoch ${trainer.epoch}): ${formatMetrics(metrics)}`);
  }

  onTestEnd(_trainer: TrainerView, metrics: Record<string, number>): void {
    this.output.info(`Test: ${formatMetrics(metrics)}`);
  }

  onFitEnd(): void {
    this.stop();
  }

  onException(): void {
    this.stop();
  }

  private stop(): void {
    this.valHandle?.stop();
    this.valHandle = undefined;
    this.handle?.stop();
    this.handle = undefined;
  }
}
