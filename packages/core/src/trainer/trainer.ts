import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type {
  Callback, DataLoaderOptions, DataModule, LRScheduler, MetricsLogger, Optimizer, Split, StepContext, Task, TrainerView,
} from '../contracts.js';
import { TaskforgeError } from '../errors.js';
import { clipByGlobalNorm } from '../optim/index.js';
import type { Clock, Output } from '../services/tokens.js';
import { loadCheckpoint, restoreTaskWeights, writeCheckpoint, type TrainerState } from './checkpoint.js';
import { parseTrainerConfig, type TrainerConfig, type TrainerConfigInput } from './config.js';
import { accumulateGrads, averageGrads } from './gradients.js';
import { batchBudget, planFit, type FitPlan } from './plan.js';
import { SIGNAL_EXIT_CODES, SignalWatcher, TrainingInterrupted } from './signals.js';
import { overrideHint } from '../config/override-grammar.js';
import { prepareAndSetup, teardownData } from './data-setup.js';
import { MeanAccumulator, mixSeed, StepLog } from './step-context.js';

export interface TrainerDeps {
  callbacks: Callback[];
  loggers: MetricsLogger[];
  runDir: string;
  output: Output;
  clock?: Clock;
  /** The whole composed config: saved as `config.yaml` in checkpoints and sent to `logHyperparams`. */
  composedConfig?: Record<string, unknown>;
}

/** How the app layer makes Trainers; registered in the container under `Tokens.TrainerFactory`. */
export type TrainerFactory = (config: TrainerConfig | TrainerConfigInput, deps: TrainerDeps) => Trainer;

export interface FitResult {
  globalStep: number;
  epoch: number;
  metrics: Record<string, number>;
  bestCheckpoint?: string;
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
  readonly bestModelPath: string | undefined;
  readonly lastModelPath: string | undefined;
  saveLastCheckpoint(trainer: TrainerView): Promise<string>;
}

export function isCheckpointingCallback(callback: Callback): callback is CheckpointingCallback {
  return typeof (callback as Partial<CheckpointingCallback>).saveLastCheckpoint === 'function';
}

type Hook = 'onFitStart' | 'onTrainEpochStart' | 'onTrainBatchEnd' | 'onTrainEpochEnd' | 'onValidationStart'
  | 'onValidationEnd' | 'onFitEnd' | 'onTestEnd' | 'onException';
type EvalStep = (batch: unknown, ctx: StepContext) => void;

const SPLIT_SEED: Record<Split | 'sanity', number> = { train: 1, val: 2, test: 3, predict: 4, sanity: 5 };

/** Runs any Task on any DataModule: the loop, gradients, checkpoints, callbacks and logging. */
export class Trainer implements TrainerView {
  readonly config: TrainerConfig;
  readonly runDir: string;
  readonly loggers: readonly MetricsLogger[];
  readonly callbacks: readonly Callback[];
  globalStep = 0;
  epoch = 0;
  maxSteps = 0;
  optimizer: Optimizer | undefined;
  scheduler: LRScheduler | undefined;
  callbackMetrics: Record<string, number> = {};
  private readonly output: Output;
  private readonly composedConfig: Record<string, unknown> | undefined;
  private readonly clock: Clock;
  private currentTask: Task | undefined;
  private currentDatamodule: DataModule | undefined;
  private batchInEpoch = 0;
  private epochFinished = false;
  /** Training batches of this epoch seen at its latest validation; -1 before the first. */
  private validatedAt = -1;
  private stopReason: string | undefined;
  private readonly signals = new SignalWatcher((signal) => {
    this.output.warn(`Received ${signal}: finishing the current step, then saving a checkpoint and stopping. Send it again to abort at once.`);
  });

  constructor(config: TrainerConfig | TrainerConfigInput, deps: TrainerDeps) {
    this.config = parseTrainerConfig(config);
    this.runDir = deps.runDir;
    this.loggers = deps.loggers;
    this.output = deps.output;
    this.composedConfig = deps.composedConfig;
    this.clock = deps.clock ?? Date;
    // Checkpointing callbacks go last (stable otherwise) so they see metrics other callbacks log.
    this.callbacks = [...deps.callbacks.filter((c) => !isCheckpointingCallback(c)), ...deps.callbacks.filter(isCheckpointingCallback)];
  }

  get task(): Task {
    if (!this.currentTask) throw new TaskforgeError('trainer.task was read before fit/validate/test/predict was called.');
    return this.currentTask;
  }

  get datamodule(): DataModule {
    if (!this.currentDatamodule) throw new TaskforgeError('trainer.datamodule was read before fit/validate/test/predict was called.');
    return this.currentDatamodule;
  }

  get dryRun(): boolean {
    return this.config.fast_dev_run;
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

  async fit(task: Task, datamodule: DataModule, options: { resumeFrom?: string } = {}): Promise<FitResult> {
    this.attach(task, datamodule);
    this.globalStep = 0;
    this.epoch = 0;
    this.batchInEpoch = 0;
    this.epochFinished = false;
    this.validatedAt = -1;
    this.callbackMetrics = {};
    this.stopReason = undefined;
    this.signals.install();
    let status: 'success' | 'failed' | 'interrupted' = 'failed';
    try {
      await prepareAndSetup(datamodule, 'fit');
      const plan = planFit(this.config, datamodule);
      this.maxSteps = plan.totalSteps;
      const { optimizer, scheduler } = task.configureOptimizers({ totalSteps: plan.totalSteps });
      this.optimizer = optimizer;
      this.scheduler = scheduler;
      const resumeFrom = options.resumeFrom ?? this.config.resume_from ?? undefined;
      if (resumeFrom) await this.restore(resumeFrom);
      await Promise.all(this.loggers.map((l) => l.logHyperparams(this.composedConfig ?? { trainer: this.config })));
      await this.hook('onFitStart');
      if (!this.dryRun && this.config.num_sanity_val_steps !== 0) await this.sanityCheck(plan);
      while (!this.trainingDone()) {
        await this.trainEpoch(plan);
        if (this.signals.received) await this.interrupt();
        if (this.stopReason !== undefined) break;
        if (this.epochFinished) this.startNextEpoch();
      }
      if (this.stopReason !== undefined) this.output.info(`Stopped at step ${this.globalStep}: ${this.stopReason}.`);
      await this.hook('onFitEnd');
      status = 'success';
      const checkpointer = this.callbacks.find(isCheckpointingCallback);
      return {
        globalStep: this.globalStep,
        epoch: this.epoch,
        metrics: { ...this.callbackMetrics },
        runDir: this.runDir,
        ...(checkpointer?.bestModelPath ? { bestCheckpoint: checkpointer.bestModelPath } : {}),
        ...(checkpointer?.lastModelPath ? { lastCheckpoint: checkpointer.lastModelPath } : {}),
      };
    } catch (error) {
      if (error instanceof TrainingInterrupted) status = 'interrupted';
      await this.hook('onException', error).catch((hookError: unknown) => {
        this.output.warn(`A callback failed while handling an error: ${(hookError as Error).message}`);
      });
      throw error;
    } finally {
      this.signals.remove();
      await this.finish(status);
      this.optimizer?.dispose();
      this.optimizer = undefined;
    }
  }

  /** One validation epoch outside fit. */
  async validate(task: Task, datamodule: DataModule): Promise<Record<string, number>> {
    this.attach(task, datamodule);
    let status: 'success' | 'failed' = 'failed';
    try {
      await prepareAndSetup(datamodule, 'validate');
      if (!task.validationStep || !datamodule.valDataloader) {
        throw new TaskforgeError('Cannot validate: the task has no validationStep or the datamodule has no valDataloader.');
      }
      const budget = batchBudget(datamodule, 'val', this.config.limit_val_batches, 'limit_val_batches', this.dryRun);
      const metrics = await this.validation(budget);
      status = 'success';
      return metrics;
    } finally {
      await this.finish(status);
    }
  }

  /** One test epoch: averaged metrics plus `task.onTestEpochEnd()` (the app layer writes them to `test_results.json`). */
  async test(task: Task, datamodule: DataModule): Promise<TestResult> {
    this.attach(task, datamodule);
    let status: 'success' | 'failed' = 'failed';
    try {
      await prepareAndSetup(datamodule, 'test');
      if (!task.testStep || !datamodule.testDataloader) {
        throw new TaskforgeError('Cannot test: the task has no testStep or the datamodule has no testDataloader.');
      }
      const budget = batchBudget(datamodule, 'test', this.config.limit_test_batches, 'limit_test_batches', this.dryRun);
      const metrics = await this.evalLoop('test', task.testStep.bind(task), datamodule.testDataloader.bind(datamodule), budget);
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

  /** Runs `predictStep` over the predict split; tensors in the outputs belong to the caller. */
  async predict(task: Task, datamodule: DataModule): Promise<unknown[]> {
    this.attach(task, datamodule);
    try {
      await prepareAndSetup(datamodule, 'predict');
      if (!task.predictStep || !datamodule.predictDataloader) {
        throw new TaskforgeError('Cannot predict: the task has no predictStep or the datamodule has no predictDataloader.');
      }
      const outputs: unknown[] = [];
      let batchIdx = 0;
      for await (const batch of datamodule.predictDataloader(this.loaderOptions(0))) {
        const log = new StepLog();
        const ctx = log.context(this.evalFields('predict', batchIdx));
        // A scope rather than tf.tidy because predictStep may be async; returned tensors are kept.
        tf.engine().startScope();
        let output: unknown;
        try {
          output = await task.predictStep(batch, ctx);
        } finally {
          tf.engine().endScope(output as tf.TensorContainer);
          log.discard();
        }
        outputs.push(output);
        batchIdx += 1;
        if (this.dryRun) break;
      }
      return outputs;
    } finally {
      await teardownData(datamodule);
    }
  }

  // ---------------------------------------------------------------- training loop

  private async trainEpoch(plan: FitPlan): Promise<void> {
    const task = this.task;
    await this.hook('onTrainEpochStart');
    const validateThisEpoch = plan.hasVal && task.validationStep !== undefined
      && (this.epoch + 1) % this.config.check_val_every_n_epoch === 0;
    const variables = Object.entries(task.namedVariables()).filter(([, v]) => v.trainable);
    const nameOf = new Map(variables.map(([name, v]) => [v.name, name]));
    const varList = variables.map(([, v]) => v);
    const startBatch = this.batchInEpoch;
    let accumulated: Record<string, tf.Tensor> = {};
    let micro: Array<{ loss: number; logs: Array<{ name: string; value: number; weight: number }> }> = [];
    let batchIdx = startBatch;
    let stoppedEarly = false;

    const validateHere = async () => {
      // Recorded first: a checkpoint saved by a validation hook must not redo this validation on resume.
      this.validatedAt = batchIdx;
      await this.validation(plan.valBatches);
    };
    const step = async () => {
      const previous = this.batchInEpoch;
      const metrics = await this.optimizerStep(accumulated, micro, batchIdx - 1);
      accumulated = {};
      micro = [];
      this.batchInEpoch = batchIdx;
      await this.hook('onTrainBatchEnd', { loss: metrics['train_loss']!, metrics });
      const every = plan.valEveryBatches;
      if (validateThisEpoch && every !== undefined && Math.floor(batchIdx / every) > Math.floor(previous / every)) await validateHere();
      if (this.signals.received) await this.interrupt();
    };

    if (!this.epochFinished) {
      for await (const batch of this.datamodule.trainDataloader(this.loaderOptions(this.epoch, startBatch))) {
        const log = new StepLog();
        const ctx = log.context({
          globalStep: this.globalStep, epoch: this.epoch, batchIdx, training: true,
          seed: mixSeed(this.config.seed, SPLIT_SEED.train, this.globalStep, micro.length),
        });
        let result: { value: tf.Scalar; grads: tf.NamedTensorMap };
        try {
          result = tf.variableGrads(() => {
            const loss = task.trainingStep(batch, ctx);
            if (loss.rank !== 0) {
              throw new TaskforgeError(`trainingStep must return a scalar loss, got a tensor of shape [${loss.shape.join(', ')}]; reduce it (e.g. tf.mean) before returning.`);
            }
            return loss;
          }, varList);
        } catch (error) {
          log.discard();
          throw error;
        }
        // The loss is read before the log, which disposes what it holds (often the loss itself).
        const loss = (await result.value.data())[0]!;
        const logs = await log.read();
        result.value.dispose();
        accumulateGrads(accumulated, result.grads, nameOf);
        if (!Number.isFinite(loss) && this.config.stop_on_nan) {
          tf.dispose(accumulated);
          throw new TaskforgeError(
            `Training loss is ${loss} at global step ${this.globalStep} (epoch ${this.epoch}, batch ${batchIdx}); stopping before the weights are updated. ` +
              'Common causes: a learning rate that is too high, no gradient clipping (set trainer.gradient_clip_val, e.g. 1.0), or bad values in that batch. ' +
              'Set trainer.stop_on_nan=false to keep training anyway.',
          );
        }
        micro.push({ loss, logs });
        batchIdx += 1;
        if (micro.length === this.config.accumulate_grad_batches) await step();
        if (plan.trainBatches !== undefined && batchIdx >= plan.trainBatches) break;
        if (this.stopReason !== undefined || this.maxStepsReached()) {
          stoppedEarly = true;
          break;
        }
      }
      // A trailing partial accumulation still makes a step, averaged over the batches it has.
      if (micro.length > 0) await step();
      this.epochFinished = !stoppedEarly;
    }
    // Validate at the epoch end, and also when max_steps ends training mid-epoch, unless that position was just validated.
    if (validateThisEpoch && this.stopReason === undefined && this.validatedAt !== batchIdx) await validateHere();
    await this.hook('onTrainEpochEnd');
  }

  /** Averages the accumulated gradients, clips, sets the LR and applies one update. */
  private async optimizerStep(
    accumulated: Record<string, tf.Tensor>,
    micro: Array<{ loss: number; logs: Array<{ name: string; value: number; weight: number }> }>,
    lastBatchIdx: number,
  ): Promise<Record<string, number>> {
    const optimizer = this.optimizer!;
    let grads = averageGrads(accumulated, micro.length);
    const metrics = new MeanAccumulator();
    let apply = true;
    if (this.config.gradient_clip_val !== null) {
      const clipped = await clipByGlobalNorm(grads, this.config.gradient_clip_val);
      tf.dispose(grads);
      grads = clipped.grads;
      metrics.add('grad_norm', clipped.norm);
      if (!Number.isFinite(clipped.norm)) {
        if (this.config.stop_on_nan) {
          tf.dispose(grads);
          throw new TaskforgeError(
            `The gradient norm is ${clipped.norm} at global step ${this.globalStep} (epoch ${this.epoch}, batch ${lastBatchIdx}); stopping before the weights are updated. ` +
              'Lower the learning rate or check the inputs; set trainer.stop_on_nan=false to skip such steps instead.',
          );
        }
        this.output.warn(`Skipping the update at global step ${this.globalStep}: the gradient norm is ${clipped.norm}.`);
        apply = false;
      }
    }
    if (this.scheduler) optimizer.lr = this.scheduler.lrAt(this.globalStep);
    try {
      if (apply) optimizer.applyGradients(grads);
    } finally {
      tf.dispose(grads);
    }
    for (const m of micro) {
      metrics.add('train_loss', m.loss);
      metrics.addAll(m.logs);
    }
    this.globalStep += 1;
    const values = { ...metrics.means(), lr: optimizer.lr, epoch: this.epoch };
    Object.assign(this.callbackMetrics, values);
    if (this.globalStep % this.config.log_every_n_steps === 0) await this.logMetrics(values);
    return values;
  }

  // ---------------------------------------------------------------- evaluation

  private async sanityCheck(plan: FitPlan): Promise<void> {
    const { validationStep } = this.task;
    const { valDataloader } = this.datamodule;
    if (!validationStep || !valDataloader) return;
    const steps = this.config.num_sanity_val_steps;
    const budget = steps === -1 ? plan.valBatches : Math.min(steps, plan.valBatches ?? steps);
    // Catches bugs in validationStep before a long epoch; the numbers are not meaningful.
    await this.evalLoop('sanity', validationStep.bind(this.task), valDataloader.bind(this.datamodule), budget);
  }

  private async validation(budget: number | undefined): Promise<Record<string, number>> {
    await this.hook('onValidationStart');
    const metrics = await this.evalLoop(
      'val', this.task.validationStep!.bind(this.task), this.datamodule.valDataloader!.bind(this.datamodule), budget,
    );
    Object.assign(this.callbackMetrics, metrics);
    await this.logMetrics(metrics);
    await this.hook('onValidationEnd', metrics);
    return metrics;
  }

  private async evalLoop(
    split: 'val' | 'test' | 'sanity', stepFn: EvalStep,
    loader: (options: DataLoaderOptions) => AsyncIterable<unknown>, budget: number | undefined,
  ): Promise<Record<string, number>> {
    const means = new MeanAccumulator();
    let batchIdx = 0;
    if (budget === 0) return {};
    for await (const batch of loader(this.loaderOptions(this.epoch))) {
      const log = new StepLog();
      try {
        tf.tidy(() => stepFn(batch, log.context(this.evalFields(split, batchIdx))));
      } catch (error) {
        log.discard();
        throw error;
      }
      means.addAll(await log.read());
      batchIdx += 1;
      if (budget !== undefined && batchIdx >= budget) break;
    }
    return means.means();
  }

  private evalFields(split: Split | 'sanity', batchIdx: number): Omit<StepContext, 'log'> {
    return {
      globalStep: this.globalStep, epoch: this.epoch, batchIdx, training: false,
      seed: mixSeed(this.config.seed, SPLIT_SEED[split], this.globalStep, batchIdx),
    };
  }

  // ---------------------------------------------------------------- state, faults, plumbing

  private trainerState(): TrainerState {
    const callbacks: Record<string, Record<string, unknown>> = {};
    for (const [key, callback] of this.keyedCallbacks()) {
      const state = callback.stateDict?.();
      if (state) callbacks[key] = state;
    }
    return {
      globalStep: this.globalStep,
      epoch: this.epoch,
      batchInEpoch: this.batchInEpoch,
      epochFinished: this.epochFinished,
      validatedAt: this.validatedAt,
      seed: this.config.seed,
      optimizer: this.optimizer?.name ?? null,
      scheduler: this.scheduler?.name ?? null,
      callbacks,
      metrics: { ...this.callbackMetrics },
      savedAt: new Date(this.clock.now()).toISOString(),
    };
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

  private async restore(dir: string): Promise<void> {
    const checkpoint = await loadCheckpoint(dir);
    try {
      const state = checkpoint.trainerState;
      if (!state) {
        throw new TaskforgeError(
          `Cannot resume from '${dir}': it has no trainer_state.json, so it holds weights only. Load it as pretrained weights instead, or resume from a checkpoint written during training.`,
          { exitCode: 2 },
        );
      }
      restoreTaskWeights(this.task, checkpoint);
      if (this.optimizer) {
        if (!checkpoint.optimizer) {
          throw new TaskforgeError(`Cannot resume from '${dir}': it has no optimizer state (optimizer.json), which an exact resume needs.`, { exitCode: 2 });
        }
        this.optimizer.setState(checkpoint.optimizer.state);
      }
      if (state.seed !== this.config.seed) {
        this.output.warn(`Resuming a run trained with seed ${state.seed} using trainer.seed=${this.config.seed}: data order and dropout will differ from the original run.`);
      }
      this.globalStep = state.globalStep;
      this.epoch = state.epoch;
      this.batchInEpoch = state.batchInEpoch;
      this.epochFinished = state.epochFinished;
      this.validatedAt = state.validatedAt;
      if (this.epochFinished) this.startNextEpoch();
      this.callbackMetrics = { ...state.metrics };
      for (const [key, callback] of this.keyedCallbacks()) {
        const saved = state.callbacks[key];
        if (saved && callback.loadStateDict) callback.loadStateDict(saved);
      }
      this.output.info(`Resumed from '${dir}' at global step ${this.globalStep} (epoch ${this.epoch}, batch ${this.batchInEpoch}).`);
    } finally {
      checkpoint.dispose();
    }
  }

  private async interrupt(): Promise<never> {
    const signal = this.signals.received!;
    let where = 'no checkpoint was saved (fast_dev_run)';
    if (!this.dryRun) {
      const checkpointer = this.callbacks.find(isCheckpointingCallback);
      const dir = checkpointer
        ? await checkpointer.saveLastCheckpoint(this)
        : await this.saveCheckpoint(join(this.runDir, 'checkpoints', 'last'));
      where = `last checkpoint saved to ${dir}; resume with ${overrideHint('trainer.resume_from', dir)}`;
    }
    throw new TrainingInterrupted(`Training interrupted by ${signal} at step ${this.globalStep}; ${where}.`, SIGNAL_EXIT_CODES[signal] ?? 1);
  }

  private startNextEpoch(): void {
    this.epoch += 1;
    this.batchInEpoch = 0;
    this.epochFinished = false;
    this.validatedAt = -1;
  }

  private trainingDone(): boolean {
    const maxEpochs = this.dryRun ? 1 : this.config.max_epochs;
    return this.stopReason !== undefined || this.maxStepsReached() || (maxEpochs !== -1 && this.epoch >= maxEpochs);
  }

  private maxStepsReached(): boolean {
    return this.globalStep >= this.maxSteps;
  }

  private loaderOptions(epoch: number, startBatch = 0): DataLoaderOptions {
    return startBatch > 0 ? { epoch, seed: this.config.seed, startBatch } : { epoch, seed: this.config.seed };
  }

  private attach(task: Task, datamodule: DataModule): void {
    this.currentTask = task;
    this.currentDatamodule = datamodule;
  }

  private async logMetrics(metrics: Record<string, number>): Promise<void> {
    await Promise.all(this.loggers.map((l) => l.logMetrics(metrics, this.globalStep)));
  }

  private async finish(status: 'success' | 'failed' | 'interrupted'): Promise<void> {
    const results = await Promise.allSettled([
      ...this.loggers.map(async (l) => l.finalize(status)),
      (async () => this.currentDatamodule && teardownData(this.currentDatamodule))(),
    ]);
    for (const r of results) if (r.status === 'rejected') this.output.warn(`Cleanup failed: ${(r.reason as Error).message}`);
  }

  private async hook(name: Hook, ...args: unknown[]): Promise<void> {
    for (const callback of this.callbacks) {
      const fn = callback[name] as ((trainer: TrainerView, ...rest: unknown[]) => unknown) | undefined;
      if (fn) await fn.call(callback, this, ...args);
    }
  }
}

