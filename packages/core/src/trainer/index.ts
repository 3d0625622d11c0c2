export {
  Trainer,
  isCheckpointingCallback,
  type TrainerDeps,
  type TrainerFactory,
  type TrainerRunConfig,
  type FitResult,
  type TestResult,
  type CheckpointingCallback,
} from './trainer.js';
export { SingleDeviceStrategy, type BatchParallel, type Strategy } from './strategy.js';
export { createStrategy } from './strategies.js';
export { DDPStrategy, resolveDevices, mergeLogs, type DevicesPlan, type DevicesRequest } from './ddp/strategy.js';
export type { ReplicaSpec, ReplicaFactoryArgs } from './ddp/protocol.js';
export { splitBatch, type Shard } from './ddp/shards.js';
export type { StepFields, StepResult, LoggedValue } from './local-step.js';
export { Progress, type ProgressState } from './progress.js';
export {
  trainerConfigSchema,
  parseTrainerConfig,
  resolveRunDir,
  runDirPath,
  type TrainerConfig,
  type TrainerConfigInput,
} from './config.js';
export {
  writeCheckpoint,
  loadCheckpoint,
  loadCheckpointSync,
  readCheckpointConfig,
  readCheckpointJson,
  restoreTaskWeights,
  checkpointName,
  WEIGHTS_FORMAT,
  OPTIMIZER_FORMAT,
  type Checkpoint,
  type CheckpointContents,
  type TrainerState,
  type TaskState,
  type RestoreReport,
  type RestoreOptions,
} from './checkpoint.js';
export { runDirOutputs, removeRunDirIfBare, assertRunDirFree, type RunDirCheck } from './run-dir.js';
export { mixSeed } from './step-context.js';
export { TrainingInterrupted } from './signals.js';
export { prepareAndSetup, teardownData } from './data-setup.js';
export {
  compareCheckpointData,
  type CheckpointDataFacts,
  type RunDataFacts,
  type DataDifference,
  type DataMismatch,
} from './data-match.js';
