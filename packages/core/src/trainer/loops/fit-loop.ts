/**
 * The training loop (Lightning's `_FitLoop` + `_TrainingEpochLoop` + automatic optimisation).
 * Reads top to bottom: `run` trains epochs until max_epochs/max_steps or a stop request;
 * `trainEpoch` feeds micro-batches, validating every `val_check_interval` and at the epoch end;
 * `trainMicroBatch` computes a loss and its gradients (through the strategy, which may shard the batch
 * over workers and returns the whole micro-batch's gradients); `optimizerStep` averages the
 * accumulated gradients (weighted, for a `WeightedLoss`), clips, sets the LR and updates the weights.
 * The accumulation state lives in fields, so each piece is a plain method.
 */
import * as tf from '@tensorflow/tfjs';
import type { DataLoaderOptions, DataModule, LRScheduler, Optimizer, Task } from '../../contracts.js';
import { TaskforgeError } from '../../errors.js';
import { clipByGlobalNorm } from '../../optim/index.js';
import type { Output } from '../../services/tokens.js';
import type { TrainerConfig } from '../config.js';
import { accumulateGrads, averageGrads } from '../gradients.js';
import type { FitPlan } from '../plan.js';
import type { Progress } from '../progress.js';
import { MeanAccumulator, mixSeed } from '../step-context.js';
import { turnEventLoop } from '../signals.js';
import type { Strategy } from '../strategy.js';

/** What the fit loop needs from the Trainer that runs it. */
export interface FitLoopHost {
  readonly config: TrainerConfig;
  readonly progress: Progress;
  readonly task: Task;
  readonly datamodule: DataModule;
  readonly optimizer: Optimizer;
  readonly scheduler: LRScheduler | undefined;
  readonly strategy: Strategy;
  readonly output: Output;
  /** Latest value of every logged metric; the loop merges each step's metrics in. */
  readonly callbackMetrics: Record<string, number>;
  /** Set once a callback (or the loop) asked to stop. */
  stopReason(): string | undefined;
  /** True once SIGINT/SIGTERM arrived; `interrupt()` then saves `last` and throws TrainingInterrupted. */
  signalReceived(): boolean;
  interrupt(): Promise<never>;
  onTrainEpochStart(): Promise<void>;
  onTrainBatchEnd(outputs: { loss: number; metrics: Record<string, number> }): Promise<void>;
  onTrainEpochEnd(): Promise<void>;
  /** One validation pass over `budget` batches (hooks, logging and metrics included). */
  validate(budget: number | undefined): Promise<unknown>;
  logMetrics(metrics: Record<string, number>): Promise<void>;
  loaderOptions(epoch: number, startBatch?: number): DataLoaderOptions;
}

interface MicroBatch {
  loss: number;
  logs: Array<{ name: string; value: number; weight: number }>;
  /** The step's `WeightedLoss.weight`, when it returned one. */
  weight?: number;
}

/** Seeds of the training steps are derived from (trainer.seed, this, globalStep, micro-batch). */
export const TRAIN_SEED_STREAM = 1;

export class FitLoop {
  /** Summed gradients of the micro-batches since the last optimizer step, by variable name. */
  private accumulated: Record<string, tf.Tensor> = {};
  /** Loss and logged values of those micro-batches. */
  private micro: MicroBatch[] = [];
  /** Index in the epoch of the next training batch. */
  private batchIdx = 0;
  private validateThisEpoch = false;
  /** The task's trainable variables with their names (gradients are keyed by the names). */
  private trainable: Array<[string, tf.Variable]> = [];

  constructor(
    private readonly host: FitLoopHost,
    private readonly plan: FitPlan,
    private readonly maxSteps: number,
  ) {}

  /** Trains until max_epochs, max_steps or a stop request; interrupts (throws) on a signal. */
  async run(): Promise<void> {
    const { host } = this;
    while (!this.done()) {
      await this.trainEpoch();
      await turnEventLoop();
      if (host.signalReceived()) await host.interrupt();
      if (host.stopReason() !== undefined) break;
      if (host.progress.epochFinished) host.progress.startNextEpoch();
    }
  }

  private async trainEpoch(): Promise<void> {
    const { host, plan } = this;
    const { progress } = host;
    await host.onTrainEpochStart();
    this.validateThisEpoch =
      plan.hasVal &&
      host.task.validationStep !== undefined &&
      (progress.epoch + 1) % host.config.check_val_every_n_epoch === 0;
    this.trainable = Object.entries(host.task.namedVariables()).filter(([, v]) => v.trainable);
    this.accumulated = {};
    this.micro = [];
    this.batchIdx = progress.batchInEpoch;
    let stoppedEarly = false;

    if (!progress.epochFinished) {
      const options = host.strategy.loaderOptions(host.loaderOptions(progress.epoch, progress.batchInEpoch));
      for await (const batch of host.datamodule.trainDataloader(options)) {
        await this.trainMicroBatch(batch);
        if (this.micro.length === host.config.accumulate_grad_batches) await this.step();
        if (plan.trainBatches !== undefined && this.batchIdx >= plan.trainBatches) break;
        if (host.stopReason() !== undefined || this.maxStepsReached()) {
          stoppedEarly = true;
          break;
        }
      }
      // A trailing partial accumulation still makes a step, averaged over the batches it has.
      if (this.micro.length > 0) await this.step();
      progress.epochFinished = !stoppedEarly;
    }
    // Validate at the epoch end, and also when max_steps ends training mid-epoch, unless that position was
    // just validated.
    if (this.validateThisEpoch && host.stopReason() === undefined && progress.validatedAt !== this.batchIdx)
      await this.validate();
    await host.onTrainEpochEnd();
  }

  /** Loss and gradients of one batch (over every device of the strategy), added to the accumulation. */
  private async trainMicroBatch(batch: unknown): Promise<void> {
    const { host } = this;
    const { progress, config, task } = host;
    const result = await host.strategy.trainingStep(
      task,
      batch,
      {
        globalStep: progress.globalStep,
        epoch: progress.epoch,
        batchIdx: this.batchIdx,
        training: true,
        seed: mixSeed(config.seed, TRAIN_SEED_STREAM, progress.globalStep, this.micro.length),
      },
      this.trainable,
    );
    const { loss, logs, weight } = result;
    if (this.micro.length > 0 && (this.micro[0]!.weight === undefined) !== (weight === undefined)) {
      tf.dispose(result.grads);
      throw new TaskforgeError(
        `trainingStep returned ${weight === undefined ? 'a plain loss' : '{ loss, weight }'} at global step ` +
          `${progress.globalStep} (batch ${this.batchIdx}) but ${weight === undefined ? '{ loss, weight }' : 'a plain loss'} ` +
          'for an earlier batch of the same step: return one form on every step, so accumulated batches combine alike.',
      );
    }
    // Accumulated, a weighted loss adds its gradient times its weight; optimizerStep divides by
    // the weights' sum. (One batch per step needs neither: its gradient is the step's.)
    accumulateGrads(this.accumulated, result.grads, config.accumulate_grad_batches > 1 ? weight : undefined);
    if (!Number.isFinite(loss) && config.stop_on_nan) {
      tf.dispose(this.accumulated);
      throw new TaskforgeError(
        // "after N steps" matches the progress bar, which counts completed steps (global_step is 0-based).
        `Training loss is ${loss} at global step ${progress.globalStep} (after ${progress.globalStep} completed ` +
          `optimizer steps; epoch ${progress.epoch}, batch ${this.batchIdx}); stopping before the weights are updated. ` +
          'Common causes: a learning rate that is too high, no gradient clipping ' +
          '(set trainer.gradient_clip_val, e.g. 1.0), or bad values in that batch. ' +
          'Set trainer.stop_on_nan=false to keep training anyway.',
      );
    }
    this.micro.push({ loss, logs, ...(weight !== undefined ? { weight } : {}) });
    this.batchIdx += 1;
  }

  /** One optimizer step over the accumulated micro-batches, then the hooks and any due validation. */
  private async step(): Promise<void> {
    const { host, plan } = this;
    const { progress } = host;
    const previous = progress.batchInEpoch;
    const metrics = await this.optimizerStep();
    progress.batchInEpoch = this.batchIdx;
    await host.onTrainBatchEnd({ loss: metrics['train_loss']!, metrics });
    const every = plan.valEveryBatches;
    const due =
      every !== undefined
        ? Math.floor(this.batchIdx / every) > Math.floor(previous / every)
        : plan.valAtBatches.some((at) => previous < at && at <= this.batchIdx);
    if (this.validateThisEpoch && due) await this.validate();
    await turnEventLoop();
    if (host.signalReceived()) await host.interrupt();
  }

  private async validate(): Promise<void> {
    // Recorded first: a checkpoint saved by a validation hook must not redo this validation on resume.
    this.host.progress.validatedAt = this.batchIdx;
    await this.host.validate(this.plan.valBatches);
  }

  /** Averages the accumulated gradients, reduces them across replicas, clips, sets the LR and applies one update. */
  private async optimizerStep(): Promise<Record<string, number>> {
    const { host } = this;
    const { optimizer, progress, config } = host;
    const micro = this.micro;
    // Lightning averages accumulated batches equally; a WeightedLoss's batches by their weights.
    const weighted = micro[0]?.weight !== undefined;
    const totalWeight = micro.reduce((sum, m) => sum + (m.weight ?? 0), 0);
    const scaled = weighted && host.config.accumulate_grad_batches > 1;
    const averaged = averageGrads(this.accumulated, scaled ? totalWeight || 1 : micro.length);
    this.accumulated = {};
    this.micro = [];
    let grads = host.strategy.reduceGradients(averaged);
    const metrics = new MeanAccumulator();
    let apply = true;
    if (config.gradient_clip_val !== null) {
      const clipped = await clipByGlobalNorm(grads, config.gradient_clip_val);
      tf.dispose(grads);
      grads = clipped.grads;
      metrics.add('grad_norm', clipped.norm);
      if (!Number.isFinite(clipped.norm)) {
        if (config.stop_on_nan) {
          tf.dispose(grads);
          throw new TaskforgeError(
            `The gradient norm is ${clipped.norm} at global step ${progress.globalStep} (after ` +
              `${progress.globalStep} completed optimizer steps; epoch ${progress.epoch}, batch ${this.batchIdx - 1}); ` +
              'stopping before the weights are updated. ' +
              'Lower the learning rate or check the inputs; set trainer.stop_on_nan=false to skip such steps instead.',
          );
        }
        host.output.warn(
          `Skipping the update at global step ${progress.globalStep}: the gradient norm is ${clipped.norm}.`,
        );
        apply = false;
      }
    }
    if (host.scheduler) optimizer.lr = host.scheduler.lrAt(progress.globalStep);
    try {
      if (apply) optimizer.applyGradients(grads);
    } finally {
      tf.dispose(grads);
    }
    for (const m of micro) {
      metrics.add('train_loss', m.loss, weighted && totalWeight > 0 ? m.weight : 1);
      metrics.addAll(m.logs);
    }
    progress.globalStep += 1;
    const values = { ...metrics.means(), lr: optimizer.lr, epoch: progress.epoch };
    Object.assign(host.callbackMetrics, values);
    if (progress.globalStep % config.log_every_n_steps === 0) await host.logMetrics(values);
    return values;
  }

  private done(): boolean {
    const maxEpochs = this.host.config.fast_dev_run ? 1 : this.host.config.max_epochs;
    return (
      this.host.stopReason() !== undefined ||
      this.maxStepsReached() ||
      (maxEpochs !== -1 && this.host.progress.epoch >= maxEpochs)
    );
  }

  private maxStepsReached(): boolean {
    return this.host.progress.globalStep >= this.maxSteps;
  }
}
