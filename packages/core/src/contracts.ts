/**
 * The contracts every plugin implements. They mirror PyTorch Lightning's split of concerns:
 * a DataModule holds only data, a Backbone only a model, a Task only the math of a step; the
 * Trainer (in core) owns the loop, devices, optimisation, checkpoints and logging.
 */
import type * as tf from '@tensorflow/tfjs';

/** What the Trainer is doing when it calls `DataModule.setup`. */
export type Stage = 'fit' | 'validate' | 'test' | 'predict';
export type Split = 'train' | 'val' | 'test' | 'predict';

/**
 * Facts about the data that the model needs at construction (number of classes, vocabulary
 * size, sequence length, a colour palette, ...). Produced by the DataModule after `setup`,
 * handed to the Backbone and the Task, so shapes are never typed twice in config.
 * Must be JSON-serialisable: it is saved in every checkpoint.
 */
export type ModelDataArgs = Readonly<Record<string, unknown>>;

/**
 * The common `modelDataArgs` of token-sequence data, typed once for every package: a data module
 * of sequences returns at least these (plus its own keys, e.g. a palette), and sequence backbones
 * and tasks read them with `readSequenceDataArgs`. A type alias (not an interface) so that it and
 * its extensions fit `ModelDataArgs`.
 */
export type SequenceDataArgs = {
  /** Sequence length T: positions per example (sizes position tables). */
  readonly num_positions: number;
  /** Vocabulary size V: tokens lie in 0..V−1 (sizes token tables and LM heads). */
  readonly num_vocab: number;
  /** Number of classes C of labelled data: labels lie in 0..C−1 (absent for unlabelled data). */
  readonly num_classes?: number;
};

/** A variable-name → variable map. Names are stable: checkpoints and parameter groups use them. */
export type NamedVariables = Record<string, tf.Variable>;

export interface DataLoaderOptions {
  /** 0-based epoch; shuffling and augmentation are derived from (seed, epoch, index) only. */
  epoch: number;
  /** The run's seed (`trainer.seed`). */
  seed: number;
  /** Skip this many batches at the start of the epoch (exact resume mid-epoch). */
  startBatch?: number;
}

/**
 * Holds only data. The Trainer calls, in order: `prepareData()` once, `setup(stage)`, then the
 * dataloaders. Dataloaders are async iterables of batches made of plain typed arrays (not
 * tensors): the Task turns a batch into tensors inside its step, so nothing leaks when a batch
 * is dropped, and batches can be produced ahead of the Trainer (prefetch). For data-parallel
 * training a batch is a plain object with a numeric `size` (its sample count) whose per-sample
 * fields are typed arrays (or arrays) of `size` rows: the DDP strategy cuts those along the rows.
 */
export interface DataModule<Batch = unknown> {
  /** Download / extract / compute caches. Idempotent: a second run reuses the cache. */
  prepareData(): Promise<void>;
  /** Load splits for `stage`. After `setup('fit')`, `modelDataArgs` is available. */
  setup(stage: Stage): Promise<void>;
  trainDataloader(options: DataLoaderOptions): AsyncIterable<Batch>;
  valDataloader?(options: DataLoaderOptions): AsyncIterable<Batch>;
  testDataloader?(options: DataLoaderOptions): AsyncIterable<Batch>;
  predictDataloader?(options: DataLoaderOptions): AsyncIterable<Batch>;
  /** Number of batches one pass over `split` yields, when known (progress, ETA, schedules). */
  numBatches?(split: Split): number | undefined;
  readonly modelDataArgs: ModelDataArgs;
  /** Release anything held (open files, workers). */
  teardown?(): Promise<void>;
}

/**
 * A model component built from its config plus `modelDataArgs`. Core only needs its variables;
 * the Task that uses it defines (structurally, in its own package) the forward API it expects.
 */
export interface Backbone {
  namedVariables(): NamedVariables;
  dispose(): void;
}

/**
 * What every forward that can be stochastic takes (a backbone's body and its heads alike):
 * `training` turns dropout and other noise on; `seed` seeds it, derived from the step's
 * `StepContext.seed` so runs and resumes are deterministic. A Task passes them to each such
 * method its backbone API declares, e.g. `forward(x, options)` and `classify(hidden, options)`.
 */
export interface ForwardOptions {
  readonly training: boolean;
  readonly seed: number;
}

/** Given to every Task step. */
export interface StepContext {
  /** Optimizer steps taken so far in this run (0-based for the step being computed). */
  readonly globalStep: number;
  readonly epoch: number;
  readonly batchIdx: number;
  /** True inside `trainingStep` (dropout on), false otherwise. */
  readonly training: boolean;
  /**
   * A seed for stochastic ops of this step (e.g. `tf.dropout(x, rate, undefined, mixSeed(ctx.seed, i))`
   * for the i-th dropout site), derived from the run's seed and the step so that runs and resumes are
   * deterministic. Never 0 (see `mixSeed`).
   */
  readonly seed: number;
  /**
   * Record a metric. Scalars logged in `trainingStep` are logged at that step; values logged in
   * validation/test steps are averaged over the epoch (weighted by `weight`, default 1) by the
   * Trainer. Tensors passed here are read and disposed by the Trainer.
   */
  log(name: string, value: tf.Scalar | number, options?: LogOptions): void;
}

export interface LogOptions {
  /** Weight of this value in the epoch mean (e.g. the batch size). Default 1. */
  weight?: number;
  /** Show in the progress bar. Default: only `loss`. */
  progressBar?: boolean;
}

export interface OptimizerSetup {
  optimizer: Optimizer;
  scheduler?: LRScheduler;
}

/** Builders of the configured optimizer (`optimizer` config node) and LR scheduler (`scheduler` node). */
export interface OptimizerBuilders {
  /** The configured optimizer over `variables` (its parameter groups follow the node's `no_decay` patterns). */
  buildOptimizer(variables: NamedVariables): Optimizer;
  /** The configured LR scheduler over `totalSteps` optimizer steps from `baseLr`; constant when none is configured. */
  buildScheduler(options: { totalSteps: number; baseLr: number }): LRScheduler;
}

/** What `Task.configureOptimizers` is given: the planned number of optimizer steps and the configured builders. */
export interface ConfigureOptimizersOptions extends OptimizerBuilders {
  /** Planned optimizer steps of the whole run (after max_epochs, max_steps and limit_train_batches). */
  totalSteps: number;
}

/**
 * A loss that is a mean over `weight` units of the batch, e.g. a masked cross-entropy summed over
 * the real tokens and divided by their count (`weight` = that count). The Trainer combines the
 * gradients of ddp shards and of accumulated micro-batches weighted by it (Σ wᵢ·gᵢ / Σ wᵢ), so the
 * update is the gradient of the mean over every unit of the global batch, as with one device and
 * no accumulation. A plain scalar counts as a mean over the samples: shards are weighted by their
 * sample counts, micro-batches equally (Lightning's accumulation). `weight` must be a finite number
 * ≥ 0 (a TaskforgeError, exit 1, names the value otherwise); a (micro-)batch of weight 0 adds
 * nothing, so keep its loss finite (`sum / max(count, 1)`). A task returns it on every step or on
 * none.
 */
export interface WeightedLoss {
  loss: tf.Scalar;
  /** How many units the loss averages over (real tokens, pixels, …); a plain number, not a tensor. */
  weight: number;
}

/**
 * Holds only the math. A step returns a scalar loss (training) or logs metrics (validation/test);
 * the Trainer computes gradients, clips, accumulates, updates and logs, and builds the optimizer
 * and LR scheduler from the config.
 */
export interface Task<Batch = unknown> {
  namedVariables(): NamedVariables;
  /**
   * The loss of one (micro-)batch: a rank-0 float tensor (shape []), e.g. a mean cross-entropy in
   * nats, or `{ loss, weight }` (see {@link WeightedLoss}) when the loss is a mean over something
   * other than the batch's samples, such as its real (unpadded) tokens. Any other rank is a
   * TaskforgeError (exit 1) naming the shape. Called inside `tf.variableGrads`, so it must be
   * synchronous and differentiable in the task's variables.
   */
  trainingStep(batch: Batch, ctx: StepContext): tf.Scalar | WeightedLoss;
  validationStep?(batch: Batch, ctx: StepContext): void;
  testStep?(batch: Batch, ctx: StepContext): void;
  predictStep?(batch: Batch, ctx: StepContext): unknown | Promise<unknown>;
  /**
   * Optional override of how the optimizer and LR scheduler are built (e.g. parameter groups with
   * their own learning rates). Without it the Trainer builds the configured optimizer over all of
   * `namedVariables()` and the configured scheduler from its learning rate.
   */
  configureOptimizers?(options: ConfigureOptimizersOptions): OptimizerSetup;
  /**
   * JSON-serialisable state the task needs at inference besides its weights (e.g. a palette).
   * Saved in every checkpoint next to `modelDataArgs`.
   */
  stateDict?(): Record<string, unknown>;
  loadStateDict?(state: Record<string, unknown>): void;
  /**
   * Extra results at the end of a test epoch (e.g. a confusion matrix), written to the run dir.
   * May be async, so a task can read tensors it kept during `testStep` with `await t.data()`
   * (GPU backends cannot read synchronously under Node).
   */
  onTestEpochEnd?(): Record<string, unknown> | undefined | Promise<Record<string, unknown> | undefined>;
  /**
   * Data-parallel test (`trainer.strategy=ddp`; Lightning's torchmetrics state sync with
   * `dist_reduce_fx`). Under ddp each device runs `testStep` on whole batches (rank 0 batches 0,
   * N, 2N, …; worker r batches r, N+r, …), so state a task keeps across test batches (e.g. a
   * confusion matrix) is split over the replicas. At the end of the epoch each worker's replica
   * is asked for `exportTestState()`: the state its `testStep` calls accumulated, as plain,
   * structured-cloneable data (numbers, arrays, typed arrays, plain objects), and it resets that
   * state. Rank 0 then calls `mergeTestState(state)` once per worker, in rank order, to fold it
   * into its own (e.g. add the counts), and then its `onTestEpochEnd()` as on one device. May be
   * async (e.g. to read tensors kept during `testStep`).
   *
   * A task with `onTestEpochEnd` that lacks either hook is tested on rank 0 only under ddp (the
   * Trainer prints a one-line note saying so); a task without `onTestEpochEnd` keeps no test state
   * worth merging and is sharded without them.
   */
  exportTestState?(): unknown;
  /** Folds one worker's `exportTestState()` into this (rank 0) replica's test state; see `exportTestState`. */
  mergeTestState?(state: unknown): void | Promise<void>;
  /**
   * Generative tasks: write samples (e.g. a PNG grid of completions) into `outDir` and return the
   * files written. Sampling settings come from the task's own config. Used by `taskforge sample`
   * and by sampling callbacks during training.
   */
  sample?(options: SampleOptions): Promise<SampleResult>;
  dispose(): void;
}

export interface SampleOptions {
  /** Existing files there must never be replaced (core's `writeNewFileAtomic` picks a free name). */
  outDir: string;
  /** Set up for 'test' when the samples condition on data (e.g. image completions). */
  datamodule?: DataModule;
  seed: number;
  /** Used in file names, e.g. `samples-step000200.png`. */
  tag: string;
}

export interface SampleResult {
  files: string[];
  /** PNG bytes of the main image, for loggers that show images. */
  image?: Uint8Array;
}

/** A parameter group: its variables and per-group hyper-parameters (e.g. no weight decay). */
export interface ParamGroup {
  name: string;
  variables: NamedVariables;
  weightDecay: number;
}

/**
 * Updates variables from gradients. The Trainer sets `lr` from the scheduler before each update.
 * State (moments, step counts) round-trips through `getState`/`setState` for exact resume.
 */
export interface Optimizer {
  readonly name: string;
  lr: number;
  readonly paramGroups: readonly ParamGroup[];
  /** Apply one update. `grads` are keyed by variable name; missing names are skipped. */
  applyGradients(grads: Record<string, tf.Tensor>): void;
  getState(): OptimizerState;
  setState(state: OptimizerState): void;
  dispose(): void;
}

export interface OptimizerState {
  /** Tensors by name (e.g. `m/<var>`, `v/<var>`), saved in TF.js weights format. */
  tensors: Record<string, tf.Tensor>;
  /** Plain values (step counts, ...). */
  meta: Record<string, unknown>;
}

/** The learning rate as a pure function of the optimizer step, so resuming needs no extra state. */
export interface LRScheduler {
  readonly name: string;
  lrAt(step: number): number;
}

/** Lightning-style hooks; every one is optional. Names say when they run. */
export interface Callback {
  readonly name: string;
  onFitStart?(trainer: TrainerView): void | Promise<void>;
  /** After the sanity check (a few validation batches before training), with its metrics; not logged. */
  onSanityCheckEnd?(trainer: TrainerView, metrics: Record<string, number>): void | Promise<void>;
  onTrainEpochStart?(trainer: TrainerView): void | Promise<void>;
  onTrainBatchEnd?(
    trainer: TrainerView,
    outputs: { loss: number; metrics: Record<string, number> },
  ): void | Promise<void>;
  onTrainEpochEnd?(trainer: TrainerView): void | Promise<void>;
  /** Before a validation pass; `batches` is how many it will run (undefined: until the loader ends). */
  onValidationStart?(trainer: TrainerView, info: { batches: number | undefined }): void | Promise<void>;
  /** After each validation batch: `batchesDone` so far, of `batches` (undefined: until the loader ends). */
  onValidationBatchEnd?(
    trainer: TrainerView,
    progress: { batchesDone: number; batches: number | undefined },
  ): void | Promise<void>;
  onValidationEnd?(trainer: TrainerView, metrics: Record<string, number>): void | Promise<void>;
  onFitEnd?(trainer: TrainerView): void | Promise<void>;
  onTestEnd?(trainer: TrainerView, metrics: Record<string, number>): void | Promise<void>;
  onException?(trainer: TrainerView, error: unknown): void | Promise<void>;
  /** State saved in checkpoints (best scores, patience counters). */
  stateDict?(): Record<string, unknown>;
  loadStateDict?(state: Record<string, unknown>): void;
}

/** Writes metrics somewhere (CSV, TensorBoard, ...). */
export interface MetricsLogger {
  readonly name: string;
  logHyperparams(config: Record<string, unknown>): void | Promise<void>;
  logMetrics(metrics: Record<string, number>, step: number): void | Promise<void>;
  /** Optional: a PNG image (e.g. sampled completions). */
  logImage?(tag: string, png: Uint8Array, step: number): void | Promise<void>;
  /**
   * Optional: the run resumes from a checkpoint at `step`; drop (or mark for the viewer to drop)
   * what was logged after it in this logger's place, which an interrupted run resumed in place
   * would otherwise show twice. Returns how many records were dropped, when it knows.
   */
  purgeAfter?(step: number): number | void | Promise<number | void>;
  finalize(status: 'success' | 'failed' | 'interrupted'): void | Promise<void>;
}

/** What callbacks may see and ask of the Trainer. */
export interface TrainerView {
  readonly globalStep: number;
  readonly epoch: number;
  readonly maxSteps: number;
  readonly runDir: string;
  readonly task: Task;
  readonly datamodule: DataModule;
  readonly optimizer: Optimizer | undefined;
  readonly loggers: readonly MetricsLogger[];
  /** Latest value of every logged metric. */
  readonly callbackMetrics: Readonly<Record<string, number>>;
  /** Ask the loop to stop after the current step (EarlyStopping). */
  requestStop(reason: string): void;
  /** Save a checkpoint directory atomically (temp dir, then rename) and return its path. */
  saveCheckpoint(dir: string): Promise<string>;
  /** True when the run writes nothing but logs (fast_dev_run). */
  readonly dryRun: boolean;
  /** Training metrics are sent to the loggers every this many optimizer steps (`trainer.log_every_n_steps`). */
  readonly logEveryNSteps: number;
  /**
   * During a fit: whether it validates at all (a val split with batches, `limit_val_batches` not
   * 0, a task with `validationStep`); undefined outside a fit.
   */
  readonly validates?: boolean | undefined;
}
