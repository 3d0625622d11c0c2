import { z } from 'zod';
import { memoryStats } from '../backend/memory.js';
import type { Callback, TrainerView } from '../contracts.js';
import type { Output } from '../services/tokens.js';

export const deviceStatsSchema = z.strictObject({
  /**
   * Warn once when `memory/tensors` grew at this many logs in a row (a tensor leak, the most
   * common TF.js bug); 0 turns the warning off.
   */
  leak_warning_after: z.int().nonnegative().default(5),
});
export type DeviceStatsMonitorOptions = z.input<typeof deviceStatsSchema>;

/**
 * Logs tensor memory every `trainer.log_every_n_steps` steps, like Lightning's DeviceStatsMonitor:
 * `memory/tensors`, `memory/bytes`, and on webgpu `memory/gpu_bytes` (buffers of live tensors)
 * and `memory/gpu_bytes_allocated` (including the backend's reuse pool). Reading the counters
 * costs no GPU sync.
 *
 * A count that grows from log to log is a tensor leak (a tensor made outside `tf.tidy` and never
 * disposed, in `trainingStep` or a callback): when it grew at `leak_warning_after` logs in a row,
 * it warns once, with the counts and the fix. Lazily made state (optimizer slots, caches) grows
 * the count once, not at every log.
 */
export class DeviceStatsMonitor implements Callback {
  readonly name = 'device_stats';
  private readonly leakWarningAfter: number;
  /** The count and step at the start of the current run of increases, and its length. */
  private streak: { from: number; fromStep: number; length: number } | undefined;
  private lastCount: number | undefined;
  private lastStep = 0;
  private warned = false;

  /** `output` receives the leak warning (stderr when omitted). */
  constructor(
    options: DeviceStatsMonitorOptions = {},
    private readonly output?: Pick<Output, 'warn'>,
  ) {
    this.leakWarningAfter = deviceStatsSchema.parse(options).leak_warning_after;
  }

  async onTrainBatchEnd(trainer: TrainerView): Promise<void> {
    if (trainer.globalStep % trainer.logEveryNSteps !== 0) return;
    const stats = memoryStats();
    const metrics = Object.fromEntries(Object.entries(stats).map(([k, v]) => [`memory/${k}`, v as number]));
    await Promise.all(trainer.loggers.map((l) => l.logMetrics(metrics, trainer.globalStep)));
    this.watchForLeak(stats.tensors, trainer.globalStep);
  }

  private watchForLeak(count: number, step: number): void {
    if (this.lastCount !== undefined && count > this.lastCount) {
      this.streak = this.streak
        ? { ...this.streak, length: this.streak.length + 1 }
        : { from: this.lastCount, fromStep: this.lastStep, length: 1 };
    } else this.streak = undefined;
    this.lastCount = count;
    this.lastStep = step;
    const streak = this.streak;
    if (this.warned || this.leakWarningAfter === 0 || !streak || streak.length < this.leakWarningAfter) return;
    this.warned = true;
    const perStep = (count - streak.from) / (step - streak.fromStep);
    const message =
      `memory/tensors grew at each of the last ${streak.length} logs, from ${streak.from} at step ${streak.fromStep} ` +
      `to ${count} at step ${step} (${perStep.toFixed(perStep < 10 ? 1 : 0)} per step): tensors are leaking, most likely ` +
      'in trainingStep or a callback. Compute tensors inside tf.tidy() and dispose() those you keep; comparing ' +
      'tf.memory().numTensors before and after one call finds the culprit. ' +
      '(trainer.callbacks.device_stats.leak_warning_after=0 turns this warning off.)';
    if (this.output) this.output.warn(message);
    else process.stderr.write(`warning: ${message}\n`);
  }
}
