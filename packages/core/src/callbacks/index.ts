export { ModelCheckpoint, modelCheckpointSchema, type ModelCheckpointOptions } from './model-checkpoint.js';
export { EarlyStopping, earlyStoppingSchema, type EarlyStoppingOptions } from './early-stopping.js';
export { LearningRateMonitor, lrMonitorSchema, type LearningRateMonitorOptions } from './lr-monitor.js';
export { ProgressBar, progressBarSchema, type ProgressBarOptions } from './progress-bar.js';
export { callbackSpecs } from './specs.js';
export { DeviceStatsMonitor, deviceStatsSchema, type DeviceStatsMonitorOptions } from './device-stats.js';
