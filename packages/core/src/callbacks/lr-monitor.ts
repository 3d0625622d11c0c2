import { z } from 'zod';
import type { Callback, TrainerView } from '../contracts.js';

export const lrMonitorSchema = z.strictObject({
  /** 'step' logs with the trainer's log_every_n_steps; 'epoch' once at each epoch start. */
  logging_interval: z.enum(['step', 'epoch']).default('step'),
});
export type LearningRateMonitorOptions = z.input<typeof lrMonitorSchema>;

/** Logs the optimizer's learning rate as `lr-<optimizer name>` to every logger. */
export class LearningRateMonitor implements Callback {
  readonly name = 'lr_monitor';
  readonly options: z.output<typeof lrMonitorSchema>;

  constructor(options: LearningRateMonitorOptions = {}) {
    this.options = lrMonitorSchema.parse(options);
  }

  async onTrainBatchEnd(trainer: TrainerView): Promise<void> {
    if (this.options.logging_interval === 'step' && trainer.globalStep % trainer.logEveryNSteps === 0)
      await this.log(trainer);
  }

  async onTrainEpochStart(trainer: TrainerView): Promise<void> {
    if (this.options.logging_interval === 'epoch') await this.log(trainer);
  }

  private async log(trainer: TrainerView): Promise<void> {
    const optimizer = trainer.optimizer;
    if (!optimizer) return;
    const metrics = { [`lr-${optimizer.name}`]: optimizer.lr };
    await Promise.all(trainer.loggers.map((l) => l.logMetrics(metrics, trainer.globalStep)));
  }
}
