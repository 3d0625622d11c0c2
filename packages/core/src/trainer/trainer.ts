/**
 * The Trainer: what a run does with a Task and a DataModule, in Lightning's shape. It owns the
 * devices (through its Strategy), the run dir, optimisation (optimizer and LR scheduler built from
 * the config unless the task overrides `configureOptimizers`), callbacks, loggers and checkpoints.
 * The loops themselves live in `loops/`: `fit-loop.ts` (training, accumulation, the optimizer
 * step) and `evaluation-loop.ts` (validation, test and predict); `progress.ts` holds where
 * training stands.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { DependencyContainer } from 'tsyringe';
import type {
  Callback,
  DataLoaderOptions,
  DataModule,
  LRScheduler,
  MetricsLogger,
  ModelDataArgs,
  Optimizer,
  OptimizerBuilders,
  OptimizerSetup,
  Split,
  StepContext,
  Task,
  TrainerView,
} from '../contracts.js';
import type { ConfigNode } from '../config/paths.js';
import { TaskforgeError } from '../errors.js';
import { overrideHint } from '../config/override-grammar.js';
import type { Instantiator } from '../registry/instantiator.js';
import { Tokens, type Clock, type Output } from '../services/tokens.js';
import type { ComponentRegistry } from '../registry/registry.js';
import { dataTrainingOnly } from '../registry/training-only.js';
import { Accelerator } from '../backend/accelerator.js';
import type { BackendSelection } from '../backend/select.js';
import {
  loadCheckpoint,
  restoreTaskWeights,
  settleUnfinishedCheckpoints,
  writeCheckpoint,
  type TrainerState,
} from './checkpoint.js';
import { parseTrainerConfig, runDirPath, type TrainerConfig, type TrainerConfigInput } from './config.js';
import { prepareAndSetup, teardownData } from './data-setup.js';
import { compareCheckpointData } from './data-match.js';
import { evaluationLoop, type EvaluationRun } from './loops/evaluation-loop.js';
import { FitLoop, type FitLoopHost } from './loops/fit-loop.js';
import { configuredOptimizers, coreOptimizers } from './optimization.js';
import { batchBudget, emptySplitError, planFit } from './plan.js';
import { Progress } from './progress.js';
import { SIGNAL_EXIT_CODES, SignalWatcher, TrainingInterrupted } from './signals.js';
import { mixSeed } from './step-context.js';
import type { ReplicaSpec } from './ddp/protocol.js';
import { createStrategy } from './strategies.js';
import type { BatchParallel, Strategy } from './strategy.js';

export interface TrainerDeps {
  callbacks: Callback[];
  loggers: MetricsLogger[];
  /**
   * Where results and default checkpoints go; default: resolved from `trainer.run_dir` /
   * `trainer.default_root_dir` against `projectRoot`.
   */
  runDir?: string;
  /** What a relative run dir is resolved against; default: the working directory. */
  projectRoot?: string;
  output: Output;
  clock?: Clock;
  /**
   * Devices; default: from `trainer.strategy` / `trainer.devices` (`createStrategy`), on the backend
   * named by `trainer.accelerator` (with `trainer.threads`).
   */
  strategy?: Strategy;
  /** How DDP workers build their replica of the task; without it `trainer.strategy=auto` stays on one device. */
  replica?: ReplicaSpec;
  /** The global batch size (`dataset.batch_size`), when known: caps `trainer.devices=auto`. */
  batchSize?: number;
  /**
   * Build the configured optimizer and LR scheduler (the `optimizer` / `scheduler` config nodes).
   * `Trainer.create` supplies them through the registry; default: core's optimizers and schedulers
   * over `composedConfig.optimizer` / `.scheduler` (AdamW with its defaults when none is given).
   */
  optimizers?: OptimizerBuilders;
  /** The whole composed config: saved as `config.yaml` in checkpoints and sent to `logHyperparams`. */
  composedConfig?: Record<string, unknown>;
  /** The data module's training-only settings (see `trainingOnly`), left out of a resume's data check. */
  dataTrainingOnly?: readonly string[];
}

/** How the app layer makes Trainers; registered in the container under `Tokens.TrainerFactory`. */
export type TrainerFactory = (config: TrainerConfig | TrainerConfigInput, deps: TrainerDeps) => Trainer;

/** The parts of a composed run config `Trainer.create` reads. */
export interface TrainerRunConfig {
  trainer: TrainerConfig | TrainerConfigInput;
  optimizer?: ConfigNode | null;
  scheduler?: ConfigNode | null;
  [section: string]: unknown;
}

export interface FitResult {
  globalStep: number;
  /** The global step the fit started from: 0, or the step of the checkpoint it resumed. */
  startStep: number;
  /** The 0-based epoch of the loop's position at the end (after max_epochs = N it is N). */
  epoch: number;
  /** Epochs whose training batches were all consumed. */
  epochsCompleted: number;
  /** Training batches of the next epoch (0-based index `epochsCompleted`) consumed: 0 at an epoch boundary. */
  batchInEpoch: number;
  metrics: Record<string, number>;
  /** The best checkpoint by `checkpointMonitor`, or without one the newest (Lightning's best_model_path). */
  bestCheckpoint?: string;
  /** The metric the checkpointing callback ranks by; null: none. */
  checkpointMonitor?: string | null;
  /** Whether its lowest (`min`) or highest (`max`) value ranks best. */
  checkpointMode?: 'min' | 'max';
  /** The monitored value of `bestCheckpoint`: null when it was NaN or infinite (none finite was logged). */
  checkpointBestScore?: number | null;
  lastCheckpoint?: string;
  runDir: string;
}

export interface TestResult {
  metrics: Record<string, number>;
  /** What `task.onTestEpochEnd()` returned. */
  extras: Record<string, unknown>;
}

/**
 * A callback that owns checkpoint files (ModelCheckpoint). The Trainer runs these after the
 * other callbacks, as Lightning does, so they see every metric, and asks them to save `last`
 * when a run is interrupted.
 */
export interface CheckpointingCallback extends Callback {
  /** The newest checkpoint when there is no monitor (as Lightning's best_model_path). */
  readonly bestModelPath: string | undefined;
  /** The metric `bestModelPath` is best by; null or absent: none (it is the newest). */
  readonly monitor?: string | null;
  /** Whether the lowest (`min`) or highest (`max`) `monitor` value is best; absent: min. */
  readonly mode?: 'min' | 'max';
  /** The `monitor` value of `bestModelPath`: null when not finite; absent without a monitor. */
  readonly bestModelScore?: number | null | undefined;
  readonly lastModelPath: string | undefined;
  /** Where `saveLastCheckpoint` will write, once the fit has started. */
  readonly lastCheckpointTarget?: string | undefined;
  saveLastCheckpoint(trainer: TrainerView): Promise<string>;
}

export function isCheckpointingCallback(callback: Callback): callback is CheckpointingCallback {
  return typeof (callback as Partial<CheckpointingCallback>).saveLastCheckpoint === 'function';
}

type Hook =
  | 'onFitStart'
  | 'onSanityCheckEnd'
  | 'onTrainEpochStart'
  | 'onTrainBatchEnd'
  | 'onTrainEpochEnd'
  | 'onValidationStart'
  | 'onValidationBatchEnd'
  | 'onValidationEnd'
  | 'onFitEnd'
  | 'onTestEnd'
  | 'onException';

/** Seed streams of the evaluation splits (training uses TRAIN_SEED_STREAM = 1). */
const EVAL_SEED_STREAM: Record<Exclude<Split, 'train'> | 'sanity', number> = { val: 2, test: 3, predict: 4, sanity: 5 };

/** Runs any Task on any DataModule: devices, the loops, optimisation, checkpoints, callbacks and logging. */
export class Trainer implements TrainerView {
  readonly config: TrainerConfig;
  /** Absolute (or as given in `deps.runDir`) run directory: logs, checkpoints, samples, result files. */
  readonly runDir: string;
  readonly loggers: readonly MetricsLogger[];
  readonly callbacks: readonly Callback[];
  readonly strategy: Strategy;
  /** Where training stands (global step, epoch, batch in epoch, epoch finished, validated-at). */
  readonly progress = new Progress();
  /** Planned optimizer steps of the current fit (0 before `fit`). */
  maxSteps = 0;
  optimizer: Optimizer | undefined;
  scheduler: LRScheduler | undefined;
  callbackMetrics: Record<string, number> = {};
  private readonly output: Output;
  private readonly composedConfig: Record<string, unknown> | undefined;
  private readonly dataTrainingOnly: readonly string[];
  private readonly clock: Clock;
  private readonly optimizers: OptimizerBuilders;
  private currentTask: Task | undefined;
  private currentDatamodule: DataModule | undefined;
  private stopReason: string | undefined;
  /** Whether the fit under way validates at all (see TrainerView.validates). */
  private fitValidates: boolean | undefined;
  /** Validation metrics already warned about for a NaN or infinite value. */
  private readonly warnedNonFinite = new Set<string>();
  // The resume hint is printed at once: a parent such as `nx run` may stop relaying output soon after the signal.
  private readonly signals = new SignalWatcher(
    (signal) => {
      const dir = this.interruptCheckpointDir();
      const where = this.dryRun
        ? 'stopping (fast_dev_run: no checkpoint)'
        : `saving a checkpoint to ${dir} and stopping; ${this.resumeHint(dir)}`;
      this.output.warn(
        `Received ${signal}: finishing the current step, then ${where}. Send it again to abort at once.`,
      );
    },
    (signal) => {
      // The process dies next: a checkpoint half written (its temp copy) must not stay in the run dir.
      settleUnfinishedCheckpoints();
      // Printed before the process dies of the signal, so the user knows whether the resume hint above holds.
      const saved = this.interruptSavedTo;
      const checkpointer = this.callbacks.find(isCheckpointingCallback);
      // Only a checkpoint complete on disk: one the checkpointer is still writing (an epoch-end
      // save under way when the signal came) is not there yet (s9: finding 2).
      const earlier = [checkpointer?.lastModelPath, checkpointer?.bestModelPath].find(
        (dir) => dir !== undefined && existsSync(join(dir, 'weights.json')),
      );
      const resumeEarlier = earlier
        ? ` To go on from the newest of them, ${earlier}, ${this.resumeHint(earlier, 'add')}.`
        : '';
      this.output.warn(
        saved
          ? `Received ${signal} again: exiting now. The checkpoint ${saved} was saved completely before it; ` +
              `${this.resumeHint(saved)}.`
          : `Received ${signal} again: aborting now, at global step ${this.globalStep}, without saving a checkpoint ` +
              `(${this.interruptCheckpointDir()} is not written by this stop; checkpoints saved earlier are intact).` +
              `${resumeEarlier} ${this.runDir} keeps the logs; to start over, delete it or set another trainer.run_dir.`,
      );
    },
  );
  /** Where the checkpoint of a signal stop went, once it is completely written (undefined before). */
  private interruptSavedTo: string | undefined;

  /**
   * Validates `config` (a ConfigError, exit 2, names every bad `trainer.*` key at once). Selects
   * no backend yet: that happens at the start of fit/validate/test/predict (or in `Trainer.create`).
   */
  constructor(config: TrainerConfig | TrainerConfigInput, deps: TrainerDeps) {
    this.config = parseTrainerConfig(config);
    this.clock = deps.clock ?? Date;
    this.runDir = deps.runDir ?? runDirPath(this.config, deps.projectRoot ?? process.cwd(), this.clock);
    this.loggers = deps.loggers;
    this.output = deps.output;
    this.composedConfig = deps.composedConfig;
    this.dataTrainingOnly = deps.dataTrainingOnly ?? [];
    this.optimizers = deps.optimizers ?? coreOptimizers(deps.composedConfig ?? {});
    this.strategy =
      deps.strategy ??
      createStrategy(this.config, {
        accelerator: new Accelerator(deps.output),
        output: deps.output,
        replica: deps.replica,
        batchSize: deps.batchSize,
      });
    // Checkpointing callbacks go last (stable otherwise) so they see metrics other callbacks log.
    this.callbacks = [
      ...deps.callbacks.filter((c) => !isCheckpointingCallback(c)),
      ...deps.callbacks.filter(isCheckpointingCallback),
    ];
  }

  /**
   * The Trainer of a composed run config, built from the services in `container`: selects the
   * backend (so weights built afterwards land on it), resolves the run dir against `projectRoot`,
   * builds the configured callbacks and loggers, and the optimizer/scheduler builders from the
   * `optimizer` and `scheduler` sections (a constant LR when no scheduler is configured).
   * Builds the strategy from `trainer.strategy` / `trainer.devices` (DDP workers rebuild the task
   * with `options.replica`; `dataset.batch_size` caps `devices=auto`, except with
   * `options.wholeBatches`, for a run that only tests or predicts) and prints its choice.
   * Throws ConfigError (exit 2) for a bad `trainer.*` key or component node, TaskforgeError
   * (exit 2) for an impossible strategy/devices setting, TaskforgeError (exit 1) when the
   * accelerator cannot be initialised.
   */
  static async create(
    config: TrainerRunConfig,
    options: { container: DependencyContainer; projectRoot?: string; replica?: ReplicaSpec; wholeBatches?: boolean },
  ): Promise<Trainer> {
    const { container } = options;
    const trainerConfig = parseTrainerConfig(config.trainer);
    const output = container.resolve<Output>(Tokens.Output);
    const clock = container.resolve<Clock>(Tokens.Clock);
    const instantiator = container.resolve<Instantiator>(Tokens.Instantiator);
    const dataset = config['dataset'] as { batch_size?: unknown } | null | undefined;
    const strategy = createStrategy(trainerConfig, {
      accelerator: container.resolve<Accelerator>(Tokens.Accelerator),
      output,
      replica: options.replica,
      batchSize: typeof dataset?.batch_size === 'number' ? dataset.batch_size : undefined,
      wholeBatches: options.wholeBatches,
    });
    await strategy.setup();
    const runDir = runDirPath(trainerConfig, options.projectRoot ?? process.cwd(), clock);
    const callbacks: Callback[] = [];
    for (const [name, node] of Object.entries(trainerConfig.callbacks)) {
      if (node) callbacks.push(instantiator.create('callback', node, { container }, `trainer.callbacks.${name}`));
    }
    const loggers: MetricsLogger[] = [];
    for (const [name, node] of Object.entries(trainerConfig.loggers)) {
      if (node) loggers.push(instantiator.create('logger', node, { container, runDir }, `trainer.loggers.${name}`));
    }
    const optimizers = configuredOptimizers(config, instantiator, container);
    const makeTrainer = container.resolve<TrainerFactory>(Tokens.TrainerFactory);
    return makeTrainer(trainerConfig, {
      callbacks,
      loggers,
      runDir,
      output,
      clock,
      strategy,
      optimizers,
      composedConfig: config as Record<string, unknown>,
      dataTrainingOnly: dataTrainingOnly(
        container.resolve<ComponentRegistry>(Tokens.Registry),
        config['dataset'] as Record<string, unknown> | null | undefined,
      ),
    });
  }

  get task(): Task {
    if (!this.currentTask)
      throw new TaskforgeError('trainer.task was read before fit/validate/test/predict was called.');
    return this.currentTask;
  }

  get datamodule(): DataModule {
    if (!this.currentDatamodule)
      throw new TaskforgeError('trainer.datamodule was read before fit/validate/test/predict was called.');
    return this.currentDatamodule;
  }

  get globalStep(): number {
    return this.progress.globalStep;
  }

  get epoch(): number {
    return this.progress.epoch;
  }

  get dryRun(): boolean {
    return this.config.fast_dev_run;
  }

  get validates(): boolean | undefined {
    return this.fitValidates;
  }

  get logEveryNSteps(): number {
    return this.config.log_every_n_steps;
  }

  requestStop(reason: string): void {
    this.stopReason ??= reason;
  }

  async saveCheckpoint(dir: string): Promise<string> {
    if (this.dryRun) return dir;
    return writeCheckpoint(dir, {
      task: this.task,
      modelDataArgs: this.datamodule.modelDataArgs,
      ...(this.optimizer ? { optimizer: this.optimizer } : {}),
      trainerState: this.trainerState(),
      ...(this.composedConfig ? { config: this.composedConfig } : {}),
    });
  }

  /**
   * Trains `task` on `datamodule` until `max_epochs`/`max_steps`, validating as configured;
   * resumes exactly from `options.resumeFrom` (else `trainer.resume_from`). Throws
   * TrainingInterrupted (exit 130/143) after saving `last` on SIGINT/SIGTERM, TaskforgeError
   * (exit 1) on a non-finite loss or gradient norm (with `stop_on_nan`) or an unusable checkpoint.
   */
  async fit(task: Task, datamodule: DataModule, options: { resumeFrom?: string } = {}): Promise<FitResult> {
    this.attach(task, datamodule, await this.strategy.setup());
    this.progress.reset();
    this.callbackMetrics = {};
    this.stopReason = undefined;
    this.interruptSavedTo = undefined;
    this.signals.install();
    let status: 'success' | 'failed' | 'interrupted' = 'failed';
    try {
      await prepareAndSetup(datamodule, 'fit', this.dataConfig());
      this.strategy.connect?.({ modelDataArgs: datamodule.modelDataArgs });
      const plan = planFit(this.config, datamodule, this.describeDataModule(datamodule));
      for (const warning of plan.warnings) this.output.warn(warning);
      this.fitValidates = plan.hasVal && task.validationStep !== undefined;
      this.maxSteps = plan.totalSteps;
      const { optimizer, scheduler } = this.configureOptimizers(task, plan.totalSteps);
      this.optimizer = optimizer;
      this.scheduler = scheduler;
      if (!this.config.fast_dev_run)
        for (const warning of planWarnings(this.config, plan.totalSteps, optimizer.lr, scheduler, this.loggers.length))
          this.output.warn(warning);
      const resumeFrom = options.resumeFrom ?? this.config.resume_from ?? undefined;
      if (resumeFrom) await this.restore(resumeFrom, datamodule.modelDataArgs);
      const startStep = this.globalStep;
      if (resumeFrom) {
        // Resumed in place after an interrupt: the steps logged past the checkpoint come again.
        const dropped = await Promise.all(this.loggers.map((l) => l.purgeAfter?.(startStep)));
        const rows = dropped.reduce<number>((n, d) => n + (typeof d === 'number' ? d : 0), 0);
        if (rows > 0)
          this.output.info(
            `Dropped ${rows} logged row${rows === 1 ? '' : 's'} after step ${startStep} (the interrupted run's, ` +
              'logged past the checkpoint): this run logs those steps again.',
          );
        // Lightning says "`max_steps=N` reached" here; without a word, an unchanged config looks like
        // a run that did nothing.
        if (this.globalStep >= plan.totalSteps)
          this.output.warn(
            `The checkpoint is already at step ${this.globalStep}, the end of this run (${plan.totalSteps} ` +
              `steps from trainer.max_steps=${this.config.max_steps}, trainer.max_epochs=${this.config.max_epochs}): ` +
              'nothing is left to train. Raise trainer.max_steps or trainer.max_epochs to train on.',
          );
      }
      await Promise.all(this.loggers.map((l) => l.logHyperparams(this.composedConfig ?? { trainer: this.config })));
      await this.hook('onFitStart');
      if (!this.dryRun && this.config.num_sanity_val_steps !== 0 && plan.hasVal)
        await this.sanityCheck(plan.valBatches);
      await new FitLoop(this.fitLoopHost(optimizer), plan, plan.totalSteps).run();
      if (this.stopReason !== undefined) this.output.info(`Stopped at step ${this.globalStep}: ${this.stopReason}.`);
      if (!this.config.stop_on_nan) this.warnNonFiniteWeights(task);
      await this.hook('onFitEnd');
      status = 'success';
      const checkpointer = this.callbacks.find(isCheckpointingCallback);
      return {
        globalStep: this.globalStep,
        startStep,
        epoch: this.epoch,
        epochsCompleted: this.progress.epoch + (this.progress.epochFinished ? 1 : 0),
        batchInEpoch: this.progress.epochFinished ? 0 : this.progress.batchInEpoch,
        metrics: { ...this.callbackMetrics },
        runDir: this.runDir,
        ...(checkpointer?.bestModelPath
          ? {
              bestCheckpoint: checkpointer.bestModelPath,
              checkpointMonitor: checkpointer.monitor ?? null,
              checkpointMode: checkpointer.mode ?? 'min',
              ...(checkpointer.bestModelScore !== undefined
                ? { checkpointBestScore: checkpointer.bestModelScore }
                : {}),
            }
          : {}),
        ...(checkpointer?.lastModelPath ? { lastCheckpoint: checkpointer.lastModelPath } : {}),
      };
    } catch (error) {
      if (error instanceof TrainingInterrupted) status = 'interrupted';
      await this.hook('onException', error).catch((hookError: unknown) => {
        this.output.warn(`A callback failed while handling an error: ${(hookError as Error).message}`);
      });
      throw error;
    } finally {
      try {
        await this.finish(status);
      } finally {
        // Only now: a second signal while the run winds down (loggers, workers) still says what it cuts short.
        this.signals.remove();
      }
      this.optimizer?.dispose();
      this.optimizer = undefined;
    }
  }

  /**
   * One validation epoch outside fit, sharded over the devices under ddp (each batch split, as
   * during fit); returns the averaged metrics. Throws TaskforgeError (exit 1)
   * when the task has no validationStep or the datamodule no valDataloader.
   */
  async validate(task: Task, datamodule: DataModule): Promise<Record<string, number>> {
    this.attach(task, datamodule, await this.strategy.setup());
    let status: 'success' | 'failed' = 'failed';
    try {
      await prepareAndSetup(datamodule, 'validate', this.dataConfig());
      if (!task.validationStep || !datamodule.valDataloader) {
        throw new TaskforgeError(
          'Cannot validate: the task has no validationStep or the datamodule has no valDataloader.',
        );
      }
      const budget = batchBudget(
        datamodule,
        'val',
        this.config.limit_val_batches,
        'limit_val_batches',
        this.dryRun,
        this.describeDataModule(datamodule),
      );
      // Sharded over the devices as during fit; one batch is not worth starting workers for.
      if (budget !== 1) this.strategy.connect?.({ modelDataArgs: datamodule.modelDataArgs });
      const metrics = await this.validation(budget);
      status = 'success';
      return metrics;
    } finally {
      await this.finish(status);
    }
  }

  /**
   * One test epoch: averaged metrics plus `task.onTestEpochEnd()` (the app layer writes them to
   * `test_results.json`). Throws TaskforgeError (exit 1) when the
   * task has no testStep or the datamodule no testDataloader, and when the test split yields no
   * batches (naming the data module).
   */
  async test(task: Task, datamodule: DataModule): Promise<TestResult> {
    this.attach(task, datamodule, await this.strategy.setup());
    let status: 'success' | 'failed' = 'failed';
    try {
      await prepareAndSetup(datamodule, 'test', this.dataConfig());
      if (!task.testStep || !datamodule.testDataloader) {
        throw new TaskforgeError('Cannot test: the task has no testStep or the datamodule has no testDataloader.');
      }
      const budget = batchBudget(
        datamodule,
        'test',
        this.config.limit_test_batches,
        'limit_test_batches',
        this.dryRun,
        this.describeDataModule(datamodule),
      );
      const parallel = await this.batchParallel(task, datamodule, 'testStep', budget);
      const { metrics } = await evaluationLoop({
        batches: datamodule.testDataloader(this.loaderOptions(this.epoch)),
        budget,
        collect: 'metrics',
        context: (batchIdx) => this.evalContext('test', batchIdx),
        step: (batch, ctx) => task.testStep!(batch, ctx),
        parallel,
      });
      if (parallel && task.exportTestState && task.mergeTestState) {
        for (const state of await parallel.exportTestStates()) await task.mergeTestState(state);
      }
      const extras = (await task.onTestEpochEnd?.()) ?? {};
      Object.assign(this.callbackMetrics, metrics);
      await this.logMetrics(metrics);
      await this.hook('onTestEnd', metrics);
      status = 'success';
      return { metrics, extras };
    } finally {
      await this.finish(status);
    }
  }

  /**
   * Runs `predictStep` over the predict split (one batch under fast_dev_run); tensors in the
   * outputs belong to the caller. Throws TaskforgeError (exit 1) when the task has no predictStep
   * or the datamodule no predictDataloader, and when the predict split yields no batches (naming
   * the data module).
   */
  async predict(task: Task, datamodule: DataModule): Promise<unknown[]> {
    this.attach(task, datamodule, await this.strategy.setup());
    try {
      await prepareAndSetup(datamodule, 'predict', this.dataConfig());
      if (!task.predictStep || !datamodule.predictDataloader) {
        throw new TaskforgeError(
          'Cannot predict: the task has no predictStep or the datamodule has no predictDataloader.',
        );
      }
      // An empty predict split is refused as test refuses one, before or after the loop (when the
      // datamodule does not count its batches): an empty predictions file would say nothing.
      if (datamodule.numBatches?.('predict') === 0)
        throw emptySplitError('predict', this.describeDataModule(datamodule));
      const budget = this.dryRun ? 1 : undefined;
      const { outputs } = await evaluationLoop({
        batches: datamodule.predictDataloader(this.loaderOptions(0)),
        budget,
        collect: 'outputs',
        context: (batchIdx) => this.evalContext('predict', batchIdx),
        step: (batch, ctx) => task.predictStep!(batch, ctx),
        parallel: await this.batchParallel(task, datamodule, 'predictStep', budget),
      });
      if (outputs.length === 0) throw emptySplitError('predict', this.describeDataModule(datamodule));
      return outputs;
    } finally {
      await this.cleanup(datamodule);
    }
  }

  /** The data module as messages name it: its config target (`the datamodule datamodule/cifar10`) or class. */
  private describeDataModule(datamodule: DataModule): string {
    const target = (this.composedConfig?.['dataset'] as { _target_?: unknown } | undefined)?._target_;
    if (typeof target === 'string') return `the datamodule ${target}`;
    return datamodule.constructor.name ? `the datamodule ${datamodule.constructor.name}` : 'the datamodule';
  }

  // ---------------------------------------------------------------- optimisation

  /** The task's own `configureOptimizers` when it has one, else the configured optimizer over all its variables. */
  private configureOptimizers(task: Task, totalSteps: number): OptimizerSetup {
    const builders = this.optimizers;
    if (task.configureOptimizers) return task.configureOptimizers({ totalSteps, ...builders });
    // Frozen variables (trainable = false) get no optimizer state: no gradient ever reaches them.
    const trainable = Object.fromEntries(Object.entries(task.namedVariables()).filter(([, v]) => v.trainable));
    const optimizer = builders.buildOptimizer(trainable);
    return { optimizer, scheduler: builders.buildScheduler({ totalSteps, baseLr: optimizer.lr }) };
  }

  // ---------------------------------------------------------------- evaluation

  /** Catches bugs in validationStep before a long epoch; the numbers are not meaningful. */
  private async sanityCheck(valBatches: number | undefined): Promise<void> {
    const { validationStep } = this.task;
    const { valDataloader } = this.datamodule;
    if (!validationStep || !valDataloader) return;
    const steps = this.config.num_sanity_val_steps;
    const { metrics } = await evaluationLoop({
      batches: valDataloader.call(this.datamodule, this.loaderOptions(this.epoch)),
      budget: steps === -1 ? valBatches : Math.min(steps, valBatches ?? steps),
      collect: 'metrics',
      context: (batchIdx) => this.evalContext('sanity', batchIdx),
      step: (batch, ctx) => validationStep.call(this.task, batch, ctx),
      sharded: this.shardedValidation(),
    });
    await this.hook('onSanityCheckEnd', metrics);
  }

  private async validation(budget: number | undefined): Promise<Record<string, number>> {
    await this.hook('onValidationStart', { batches: budget });
    const { metrics } = await evaluationLoop({
      batches: this.datamodule.valDataloader!(this.loaderOptions(this.epoch)),
      budget,
      collect: 'metrics',
      context: (batchIdx) => this.evalContext('val', batchIdx),
      step: (batch, ctx) => this.task.validationStep!(batch, ctx),
      sharded: this.shardedValidation(),
      onBatchEnd: (done) => this.hook('onValidationBatchEnd', { batchesDone: done, batches: budget }),
    });
    Object.assign(this.callbackMetrics, metrics);
    this.warnNonFiniteValidation(metrics);
    // With its epoch, as Lightning logs every row: a validation off the training rows' logging
    // interval gets a row of its own, which would otherwise have none (s5: finding 16).
    await this.logMetrics({ ...metrics, epoch: this.epoch });
    await this.hook('onValidationEnd', metrics);
    return metrics;
  }

  /**
   * A validation metric that is NaN or infinite does not stop training (stop_on_nan watches the
   * training loss) but means the model or the validation data went wrong: say so, once per metric.
   */
  private warnNonFiniteValidation(metrics: Record<string, number>): void {
    const bad = Object.entries(metrics).filter(([name, v]) => !Number.isFinite(v) && !this.warnedNonFinite.has(name));
    if (bad.length === 0) return;
    for (const [name] of bad) this.warnedNonFinite.add(name);
    this.output.warn(
      `Validation at step ${this.globalStep} logged ${bad.map(([name, v]) => `${name}=${v}`).join(', ')}: the model ` +
        'diverged (see the training loss) or the validation data holds a value the metric cannot take (an extreme ' +
        'target, a division by an empty count); training goes on. Warned once per metric.',
    );
  }

  /**
   * Test or predict over the strategy's devices (whole batches round-robin under ddp), when it
   * offers that and the split has more than one batch to run; undefined runs it here alone.
   */
  private async batchParallel(
    task: Task,
    datamodule: DataModule,
    method: 'testStep' | 'predictStep',
    budget: number | undefined,
  ): Promise<BatchParallel | undefined> {
    const { strategy } = this;
    if (!strategy.batchParallel || budget === 1 || budget === 0) return undefined;
    strategy.connect?.({ modelDataArgs: datamodule.modelDataArgs });
    return strategy.batchParallel(task, method, this.evalContext(method === 'testStep' ? 'test' : 'predict', 0));
  }

  /**
   * With stop_on_nan=false a run can end with NaN or infinite weights (skipped updates do not
   * undo a step that overflowed): say so before `last` is saved, since nothing else will.
   */
  private warnNonFiniteWeights(task: Task): void {
    let bad = 0;
    let total = 0;
    const names: string[] = [];
    for (const [name, variable] of Object.entries(task.namedVariables())) {
      const values = variable.dataSync();
      let here = 0;
      for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) here++;
      total += values.length;
      bad += here;
      if (here > 0) names.push(name);
    }
    if (bad === 0) return;
    const listed = names.slice(0, 3).join(', ') + (names.length > 3 ? ` and ${names.length - 3} more` : '');
    this.output.warn(
      `After training, ${bad} of ${total} weights are NaN or infinite (in ${listed}): the checkpoints saved ` +
        'from here hold them and the model predicts nothing useful. trainer.stop_on_nan=false let the run go ' +
        'on past a NaN or infinite loss; lower the learning rate (or set trainer.gradient_clip_val) and ' +
        'train again from an earlier checkpoint, or leave trainer.stop_on_nan=true to stop at the first one.',
    );
  }

  /** Validation through the strategy (sharded under ddp), when it offers that. */
  private shardedValidation(): EvaluationRun['sharded'] {
    const { strategy } = this;
    if (!strategy.evaluationStep) return undefined;
    return (batch, fields) => strategy.evaluationStep!(this.task, 'validationStep', batch, fields);
  }

  private evalContext(split: keyof typeof EVAL_SEED_STREAM, batchIdx: number): Omit<StepContext, 'log'> {
    return {
      globalStep: this.globalStep,
      epoch: this.epoch,
      batchIdx,
      training: false,
      seed: mixSeed(this.config.seed, EVAL_SEED_STREAM[split], this.globalStep, batchIdx),
    };
  }

  // ---------------------------------------------------------------- state, faults, plumbing

  private fitLoopHost(optimizer: Optimizer): FitLoopHost {
    return {
      config: this.config,
      progress: this.progress,
      task: this.task,
      datamodule: this.datamodule,
      optimizer,
      scheduler: this.scheduler,
      strategy: this.strategy,
      output: this.output,
      callbackMetrics: this.callbackMetrics,
      stopReason: () => this.stopReason,
      signalReceived: () => this.signals.received !== undefined,
      interrupt: () => this.interrupt(),
      onTrainEpochStart: () => this.hook('onTrainEpochStart'),
      onTrainBatchEnd: (outputs) => this.hook('onTrainBatchEnd', outputs),
      onTrainEpochEnd: () => this.hook('onTrainEpochEnd'),
      validate: (budget) => this.validation(budget),
      logMetrics: (metrics) => this.logMetrics(metrics),
      loaderOptions: (epoch, startBatch) => this.loaderOptions(epoch, startBatch),
    };
  }

  private trainerState(): TrainerState {
    const callbacks: Record<string, Record<string, unknown>> = {};
    for (const [key, callback] of this.keyedCallbacks()) {
      const state = callback.stateDict?.();
      if (state) callbacks[key] = state;
    }
    return {
      ...this.progress.state(),
      seed: this.config.seed,
      optimizer: this.optimizer?.name ?? null,
      scheduler: this.scheduler?.name ?? null,
      callbacks,
      metrics: { ...this.callbackMetrics },
      savedAt: new Date(this.clock.now()).toISOString(),
      totalSteps: this.maxSteps,
      ...(this.scheduler ? { nextLr: this.scheduler.lrAt(this.globalStep) } : {}),
    };
  }

  /**
   * Resuming with other max_steps/max_epochs than the checkpoint's run: the LR schedule is a
   * function of the planned total, so it restarts from the new total instead of continuing.
   * Warns with both totals and, when known, the LR the next step gets now and would have got.
   */
  private warnOnNewSchedule(dir: string, state: TrainerState): void {
    const scheduler = this.scheduler;
    // A constant LR (the default without a scheduler) does not depend on the total.
    if (!scheduler || scheduler.name === 'constant') return;
    if (state.totalSteps === undefined || state.totalSteps === this.maxSteps) return;
    const step = this.globalStep;
    const now = scheduler.lrAt(step);
    const was = state.nextLr;
    const lr =
      was !== undefined && now !== was
        ? `step ${step + 1} uses LR ${now.toExponential(2)} where the original run would have used ` +
          `${was.toExponential(2)}, and the LR follows the new total from there`
        : 'the LR follows the new total from here on';
    this.output.warn(
      `Resuming '${dir}' (saved by a run planned for ${state.totalSteps} optimizer steps) with a plan of ` +
        `${this.maxSteps} steps (trainer.max_steps=${this.config.max_steps}, ` +
        `trainer.max_epochs=${this.config.max_epochs}): the ${scheduler.name} LR schedule is computed from the ` +
        `planned total, so it does not continue the original schedule: ${lr}. To continue exactly, keep ` +
        'max_steps/max_epochs as they were.',
    );
  }

  /** Callback states are keyed by name; repeated names get `#2`, `#3` in order. */
  private keyedCallbacks(): Array<[string, Callback]> {
    const seen = new Map<string, number>();
    return this.callbacks.map((c) => {
      const n = (seen.get(c.name) ?? 0) + 1;
      seen.set(c.name, n);
      return [n === 1 ? c.name : `${c.name}#${n}`, c];
    });
  }

  private async restore(dir: string, modelDataArgs: ModelDataArgs): Promise<void> {
    const checkpoint = await loadCheckpoint(dir);
    try {
      const state = checkpoint.trainerState;
      if (!state) {
        throw new TaskforgeError(
          `Cannot resume from '${dir}': it has no trainer_state.json, so it holds weights only. Load ` +
            `it as pretrained weights instead, or resume from a checkpoint written during training.`,
          { exitCode: 2 },
        );
      }
      // Named by the data setting that changed (dataset.seq_len), not by the weight shape it broke.
      const dataset = this.composedConfig?.['dataset'];
      const mismatch = compareCheckpointData(checkpoint, {
        modelDataArgs,
        dataConfig: dataset !== null && typeof dataset === 'object' ? (dataset as Record<string, unknown>) : undefined,
        trainingOnly: this.dataTrainingOnly,
      });
      if (mismatch) {
        const scalar = (v: unknown): v is string | number | boolean | null =>
          v === null || ['string', 'number', 'boolean'].includes(typeof v);
        const keep =
          mismatch.settings.length > 0 && mismatch.settings.every((d) => scalar(d.checkpoint))
            ? `set ${mismatch.settings.map((d) => overrideHint(d.key, d.checkpoint as string | number | boolean | null)).join(' ')} as the checkpoint was trained`
            : "use the data settings in the checkpoint's config.yaml";
        throw new TaskforgeError(
          `Cannot resume from '${dir}': ${mismatch.message}. A resume continues the same model on the same ` +
            `data: ${keep}, or start a new run without trainer.resume_from for the new data.`,
          { exitCode: 2 },
        );
      }
      restoreTaskWeights(this.task, checkpoint, this.composedConfig ? { currentConfig: this.composedConfig } : {});
      if (this.optimizer) {
        if (!checkpoint.optimizer) {
          throw new TaskforgeError(
            `Cannot resume from '${dir}': it has no optimizer state (optimizer.json), which an exact resume needs.`,
            { exitCode: 2 },
          );
        }
        this.optimizer.setState(checkpoint.optimizer.state);
      }
      if (state.seed !== this.config.seed) {
        this.output.warn(
          `Resuming a run trained with seed ${state.seed} using trainer.seed=${this.config.seed}: ` +
            `data order and dropout will differ from the original run.`,
        );
      }
      this.progress.load(state);
      if (this.progress.epochFinished) this.progress.startNextEpoch();
      this.warnOnNewSchedule(dir, state);
      // Mutated in place: the fit loop holds this object.
      Object.assign(this.callbackMetrics, state.metrics);
      for (const [key, callback] of this.keyedCallbacks()) {
        const saved = state.callbacks[key];
        if (saved && callback.loadStateDict) callback.loadStateDict(saved);
      }
      this.output.info(
        `Resumed from '${dir}' at global step ${this.globalStep} ` +
          `(epoch ${this.epoch}, batch ${this.progress.batchInEpoch}).`,
      );
    } finally {
      checkpoint.dispose();
    }
  }

  /** Where an interrupt saves `last`: the checkpointing callback's target, else `<runDir>/checkpoints/last`. */
  private interruptCheckpointDir(): string {
    return (
      this.callbacks.find(isCheckpointingCallback)?.lastCheckpointTarget ?? join(this.runDir, 'checkpoints', 'last')
    );
  }

  /**
   * "resume by adding 'trainer.resume_from=<checkpoint>' to the same command"; for a run dir chosen
   * by default (a timestamp) with `trainer.run_dir=<this run dir>` too, so the resume continues this
   * run in place (one dir, one continuous log) rather than in a new timestamped dir.
   */
  resumeHint(checkpoint: string, verb: 'resume by adding' | 'add' = 'resume by adding'): string {
    const overrides =
      this.config.run_dir === null
        ? `${overrideHint('trainer.run_dir', this.runDir)} ${overrideHint('trainer.resume_from', checkpoint)}`
        : overrideHint('trainer.resume_from', checkpoint);
    // A resumed run's command already has a trainer.resume_from: the new one replaces it.
    return this.config.resume_from
      ? `${verb} ${overrides} to the same command, in place of its trainer.resume_from`
      : `${verb} ${overrides} to the same command`;
  }

  private async interrupt(): Promise<never> {
    const signal = this.signals.received!;
    let where = 'no checkpoint was saved (fast_dev_run)';
    if (!this.dryRun) {
      const checkpointer = this.callbacks.find(isCheckpointingCallback);
      const dir = checkpointer
        ? await checkpointer.saveLastCheckpoint(this)
        : await this.saveCheckpoint(join(this.runDir, 'checkpoints', 'last'));
      this.interruptSavedTo = dir;
      where = `last checkpoint saved to ${dir}; ${this.resumeHint(dir)}`;
    }
    throw new TrainingInterrupted(
      `Training interrupted by ${signal} at step ${this.globalStep}; ${where}.`,
      SIGNAL_EXIT_CODES[signal] ?? 1,
    );
  }

  private loaderOptions(epoch: number, startBatch = 0): DataLoaderOptions {
    return startBatch > 0 ? { epoch, seed: this.config.seed, startBatch } : { epoch, seed: this.config.seed };
  }

  private attach(task: Task, datamodule: DataModule, selection: BackendSelection): void {
    this.currentTask = task;
    this.currentDatamodule = datamodule;
    // The Trainer owns the backend; a component calling tf.setBackend (a TF.js habit) would
    // otherwise send the run silently to another backend than the one announced.
    const active = tf.getBackend();
    if (active !== selection.backend && !this.warnedBackend) {
      this.warnedBackend = true;
      this.output.warn(
        `TF.js's active backend is '${active}', but the run set up '${selection.backend}' (trainer.accelerator=` +
          `${this.config.accelerator}): the task, the data module or a callback called tf.setBackend(). The run ` +
          `goes on on '${active}'. Remove that call and choose the backend with trainer.accelerator instead.`,
      );
    }
  }

  private warnedBackend = false;

  private async logMetrics(metrics: Record<string, number>): Promise<void> {
    await Promise.all(this.loggers.map((l) => l.logMetrics(metrics, this.globalStep)));
  }

  private async finish(status: 'success' | 'failed' | 'interrupted'): Promise<void> {
    await this.cleanup(this.currentDatamodule, ...this.loggers.map(async (l) => l.finalize(status)));
  }

  /** Tears down the data and the strategy's devices (plus `more`), warning about each part that fails. */
  private async cleanup(datamodule: DataModule | undefined, ...more: Promise<unknown>[]): Promise<void> {
    const results = await Promise.allSettled([
      ...more,
      (async () => datamodule && teardownData(datamodule))(),
      this.strategy.teardown(),
    ]);
    for (const r of results)
      if (r.status === 'rejected') this.output.warn(`Cleanup failed: ${(r.reason as Error).message}`);
  }

  /** The `dataset` section of the composed config, so data errors can name its keys. */
  private dataConfig(): Record<string, unknown> | undefined {
    const node = this.composedConfig?.['dataset'];
    return node && typeof node === 'object' && !Array.isArray(node) ? (node as Record<string, unknown>) : undefined;
  }

  private async hook(name: Hook, ...args: unknown[]): Promise<void> {
    for (const callback of this.callbacks) {
      const fn = callback[name] as ((trainer: TrainerView, ...rest: unknown[]) => unknown) | undefined;
      if (fn) await fn.call(callback, this, ...args);
    }
  }
}

/**
 * What a run's plan makes pointless, said before the first step (Lightning warns of the first):
 * a logging interval longer than the run (no training row would be logged), and an LR schedule
 * that never reaches the configured learning rate within the planned steps (a warmup longer
 * than the run). Pure; `loggers` is how many are configured.
 */
export function planWarnings(
  config: Pick<TrainerConfig, 'log_every_n_steps'>,
  totalSteps: number,
  baseLr: number,
  scheduler: LRScheduler | undefined,
  loggers: number,
): string[] {
  const warnings: string[] = [];
  if (loggers > 0 && Number.isFinite(totalSteps) && totalSteps < config.log_every_n_steps) {
    warnings.push(
      `trainer.log_every_n_steps is ${config.log_every_n_steps}, more than the ${totalSteps} optimizer steps this ` +
        `run plans, so no training metrics will be logged (only validation rows); set trainer.log_every_n_steps=` +
        `${Math.max(1, Math.min(50, Math.floor(totalSteps / 10) || 1))} or lower.`,
    );
  }
  if (scheduler && baseLr > 0 && Number.isFinite(totalSteps) && totalSteps <= 1_000_000) {
    let peak = 0;
    for (let step = 0; step < totalSteps; step++) peak = Math.max(peak, scheduler.lrAt(step));
    if (totalSteps > 0 && peak < 0.99 * baseLr) {
      warnings.push(
        `The LR schedule (${scheduler.name}) never reaches the configured learning rate ${baseLr} within the ` +
          `${totalSteps} planned optimizer steps: its highest is ${Number(peak.toPrecision(3))}. A warmup longer ` +
          'than the run (scheduler.warmup_steps) does this; shorten it, or train for more steps.',
      );
    }
  }
  return warnings;
}
