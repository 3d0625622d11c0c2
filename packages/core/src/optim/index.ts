export { Adam, type AdamOptions } from './adam.js';
export { BaseOptimizer, type BaseOptimizerOptions } from './base.js';
export { clipByGlobalNorm } from './clip.js';
export { buildParamGroups, matchesPattern } from './param-groups.js';
export {
  constantSchedule,
  warmupCosineSchedule,
  warmupLinearSchedule,
  type WarmupScheduleOptions,
} from './schedulers.js';
export { Sgd, type SgdOptions } from './sgd.js';
export { DEFAULT_NO_DECAY, optimizerSpecs, schedulerSpecs, type AdamConfig, type SgdConfig } from './specs.js';
