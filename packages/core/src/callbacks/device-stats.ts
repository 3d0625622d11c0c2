import { z } from 'zod';
import { memoryStats } from '../backend/memory.js';
import type { Callback, TrainerView } from '../contracts.js';

export const deviceStatsSchema = z.strictObject({});
export type DeviceStatsMonitorOptions = z.input<typeof deviceStatsSchema>;

/**
 * Logs tensor memory every `trainer.log_every_n_steps` steps, like Lightning's DeviceStatsMonitor:
 * `memory/tensors`, `memory/bytes`, and on webgpu `memory/gpu_bytes` (buffers of live tensors)
 * and `memory/gpu_bytes_allocated` (including the backend's reuse pool). A count that grows
 * from step to step is a tensor leak. Reading the counters costs no GPU sync.
 */
export class DeviceStatsMonitor implements Callback {
  readonly name = 'device_stats';

  constructor(options: DeviceStatsMonitorOptions = {}) {
    deviceStatsSchema.parse(options);
  }

  async onTrainBatchEnd(trainer: TrainerView): Promise<void> {
    if (trainer.globalStep % trainer.logEveryNSteps !== 0) return;
    const metrics = Object.fromEntries(Object.entries(memoryStats()).map(([k, v]) => [`memory/${k}`, v as number]));
    await Promise.all(trainer.loggers.map((l) => l.logMetrics(metrics, trainer.globalStep)));
  }
}
