import type { ComponentSpec } from '../registry/types.js';
import { Tokens, type Output } from '../services/tokens.js';
import { DeviceStatsMonitor, deviceStatsSchema } from './device-stats.js';
import { EarlyStopping, earlyStoppingSchema } from './early-stopping.js';
import { LearningRateMonitor, lrMonitorSchema } from './lr-monitor.js';
import { ModelCheckpoint, modelCheckpointSchema } from './model-checkpoint.js';
import { ProgressBar, progressBarSchema } from './progress-bar.js';

/** The built-in callbacks, registered by core as `callback/<name>`. */
export const callbackSpecs: ComponentSpec<'callback'>[] = [
  {
    kind: 'callback',
    name: 'model_checkpoint',
    description: 'Save checkpoints by step/epoch, keep the top-k by a metric, and keep `last` current',
    schema: modelCheckpointSchema,
    create: (config, { container }) => new ModelCheckpoint(config, container.resolve<Output>(Tokens.Output)),
  },
  {
    kind: 'callback',
    name: 'early_stopping',
    description: 'Stop training when a validation metric stops improving',
    schema: earlyStoppingSchema,
    create: (config, { container }) => new EarlyStopping(config, container.resolve<Output>(Tokens.Output)),
  },
  {
    kind: 'callback',
    name: 'lr_monitor',
    description: 'Log the learning rate as lr-<optimizer> to every logger',
    schema: lrMonitorSchema,
    create: (config) => new LearningRateMonitor(config),
  },
  {
    kind: 'callback',
    name: 'device_stats',
    description:
      'Log tensor memory (count, bytes; GPU buffer bytes on webgpu) as memory/* to every logger; warn when the count keeps growing (a leak)',
    schema: deviceStatsSchema,
    create: (config, { container }) => new DeviceStatsMonitor(config, container.resolve<Output>(Tokens.Output)),
  },
  {
    kind: 'callback',
    name: 'progress_bar',
    description: 'Show training progress (epoch, step/total, loss, it/s, ETA) and validation results',
    schema: progressBarSchema,
    create: (config, { container }) => new ProgressBar(container.resolve<Output>(Tokens.Output), config),
  },
];
