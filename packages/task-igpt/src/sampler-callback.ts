import { join } from 'node:path';
import { z } from 'zod';
import { prepareAndSetup, type Callback, type TrainerView } from '@taskforge/core';

export const samplerCallbackSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** Sample after every N optimizer steps. */
  every_n_steps: z.int().positive().default(1000),
  /** Fixed, so successive grids complete the same images with the same random stream: progress is visible. */
  seed: z.int().nonnegative().default(0),
});

export type SamplerCallbackConfig = z.output<typeof samplerCallbackSchema>;

/**
 * Calls `task.sample` every `every_n_steps` optimizer steps, writing `<runDir>/samples/
 * samples-stepNNNNNN.png`, and hands the PNG to every logger that implements `logImage`.
 * The data module is set up for 'test' once, before the first sampling, so completions are of
 * held-out images.
 */
export class IgptSamplerCallback implements Callback {
  readonly name = 'igpt_sampler';
  private lastStep = -1;

  constructor(readonly config: SamplerCallbackConfig) {}

  async onTrainBatchEnd(trainer: TrainerView): Promise<void> {
    const step = trainer.globalStep;
    // With gradient accumulation several batches end on the same optimizer step: sample once.
    if (
      !this.config.enabled ||
      trainer.dryRun ||
      step === 0 ||
      step % this.config.every_n_steps !== 0 ||
      step === this.lastStep
    )
      return;
    this.lastStep = step;
    await this.sampleAt(trainer, step);
  }

  private async sampleAt(trainer: TrainerView, step: number): Promise<void> {
    const { task, datamodule } = trainer;
    if (!task.sample) return;
    if (datamodule.testDataloader) await prepareAndSetup(datamodule, 'test');
    const result = await task.sample({
      outDir: join(trainer.runDir, 'samples'),
      datamodule,
      seed: this.config.seed,
      tag: `step${String(step).padStart(6, '0')}`,
    });
    if (!result.image) return;
    for (const logger of trainer.loggers) await logger.logImage?.('samples', result.image, step);
  }
}
