/**
 * How training is spread over devices (Lightning's `strategy`, chosen by `trainer.strategy` and
 * `trainer.devices`; `createStrategy` in strategies.ts reads them):
 *
 * - `SingleDeviceStrategy` (here): everything on one TF.js backend, chosen by `trainer.accelerator`.
 * - `DDPStrategy` (ddp/strategy.ts): data-parallel training over Node worker threads on the CPU
 *   backends (wasm, cpu). The main thread is rank 0 and keeps the data, callbacks, loggers,
 *   checkpoints and the one optimizer; `trainingStep` splits each batch along dim 0 into one shard
 *   per device, ranks 1..N-1 (workers, each with its own backend and a replica of the task built
 *   from the composed config) compute their shard's loss and gradients, and rank 0 averages them
 *   weighted by shard sample counts. The fit loop then clips and applies ONE optimizer update on
 *   rank 0, and the updated weights are sent to every worker with its next shard, so the replicas
 *   cannot drift.
 *
 * The fit loop hands each micro-batch to `trainingStep` and each accumulated gradient map to
 * `reduceGradients` (the identity for both strategies here: `trainingStep` already returns the
 * gradients of the whole batch) before clipping and the optimizer update.
 */
import * as tf from '@tensorflow/tfjs';
import type { Accelerator } from '../backend/accelerator.js';
import type { AcceleratorRequest, BackendSelection } from '../backend/select.js';
import type { DataLoaderOptions, ModelDataArgs, Task } from '../contracts.js';
import { computeStep, type LoggedValue, type StepFields, type StepResult } from './local-step.js';

export interface Strategy {
  /** `single_device` or `ddp` (once `setup` resolved `trainer.strategy=auto`). */
  readonly name: string;
  /** True on the process that writes checkpoints, logs and result files (always, on one device). */
  readonly isGlobalZero: boolean;
  /**
   * Chooses and initialises the device(s). Idempotent: the Trainer calls it from `Trainer.create`
   * (before the task's weights are built, so they land on the chosen backend) and again at the start
   * of fit/validate/test/predict. Throws a TaskforgeError when the requested accelerator cannot be
   * used (runtime failure: exit 1; an unknown accelerator name: exit 2).
   */
  setup(): Promise<BackendSelection>;
  /** Gradients (by variable name, already averaged over the micro-batches) to apply on this replica. */
  reduceGradients(grads: Record<string, tf.Tensor>): Record<string, tf.Tensor>;
  /** The dataloader options of this replica for an epoch. */
  loaderOptions(options: DataLoaderOptions): DataLoaderOptions;
  /**
   * Loss, logged values and gradients (by the task's variable names, owned by the caller) of one
   * training micro-batch over every device. Throws what the task's step throws; under ddp a
   * TaskforgeError (exit 1) naming the worker rank, the step and the cause when a worker fails.
   */
  trainingStep(
    task: Task,
    batch: unknown,
    fields: StepFields,
    trainable: ReadonlyArray<readonly [string, tf.Variable]>,
  ): Promise<StepResult>;
  /**
   * What `task.validationStep` logs for `batch`, over every device (weighted by shard sizes under
   * ddp). Optional: without it (or before training has started any worker) validation runs locally.
   */
  evaluationStep?(task: Task, method: 'validationStep', batch: unknown, fields: StepFields): Promise<LoggedValue[]>;
  /**
   * Test and predict over every device: whole batches go round-robin to the devices (batch i to
   * rank i mod N, rank 0 runs its own locally), so each batch's logs and output are exactly a
   * single-device run's. Resolves to undefined when there is only one device (or the strategy
   * has no data facts to build workers with, see `connect`), and for `testStep` also when the
   * task keeps test state (`onTestEpochEnd`) without `exportTestState`/`mergeTestState`, after a
   * one-line note that test runs on rank 0 only and why. `fields` (the first batch's) name the
   * place in errors. Throws TaskforgeError (exit 1) naming the rank when a worker fails to start.
   */
  batchParallel?(
    task: Task,
    method: 'testStep' | 'predictStep',
    fields: StepFields,
  ): Promise<BatchParallel | undefined>;
  /** The data facts replicas are built with; the Trainer calls it once the datamodule is set up. */
  connect?(context: { modelDataArgs: ModelDataArgs }): void;
  /** Releases devices and workers; safe to call more than once, and `setup` works again afterwards. */
  teardown(): Promise<void>;
}

/** Whole evaluation batches on the workers of a multi-device strategy (see `Strategy.batchParallel`). */
export interface BatchParallel {
  /** Devices, rank 0 included (at least 2). */
  readonly devices: number;
  /**
   * Runs the method on a whole batch on worker `rank` (1..devices-1), with rank 0's weights and
   * task state: what the step logged, and for `predictStep` its output (tensors rebuilt on rank 0,
   * owned by the caller). Rejects with a TaskforgeError (exit 1) naming the rank, the batch and the
   * cause when the worker fails.
   */
  run(rank: number, batch: unknown, fields: StepFields): Promise<{ logs: LoggedValue[]; output: unknown }>;
  /** Each worker's `task.exportTestState()` (which resets it), in rank order (1..devices-1). */
  exportTestStates(): Promise<unknown[]>;
}

/** The backend selected last in this process, so Trainers after the first do not re-initialise it. */
let active: { key: string; selection: BackendSelection } | undefined;

/**
 * Everything on one TF.js backend: `trainer.accelerator` (`auto|gpu|node|wasm|cpu`) and
 * `trainer.threads` (wasm only). Selection goes through core's `Accelerator` (backend/select.ts),
 * which prints which backend it took and why it passed over the others; selecting the same
 * request again while that backend is still active is a no-op that prints nothing.
 */
export class SingleDeviceStrategy implements Strategy {
  readonly name = 'single_device';
  readonly isGlobalZero = true;
  private selecting: Promise<BackendSelection> | undefined;

  constructor(
    private readonly request: { accelerator: AcceleratorRequest; threads: number | null },
    private readonly accelerator: Accelerator,
  ) {}

  setup(): Promise<BackendSelection> {
    this.selecting ??= this.select();
    return this.selecting;
  }

  reduceGradients(grads: Record<string, tf.Tensor>): Record<string, tf.Tensor> {
    return grads;
  }

  loaderOptions(options: DataLoaderOptions): DataLoaderOptions {
    return options;
  }

  trainingStep(
    task: Task,
    batch: unknown,
    fields: StepFields,
    trainable: ReadonlyArray<readonly [string, tf.Variable]>,
  ): Promise<StepResult> {
    return computeStep(task, batch, fields, trainable);
  }

  async teardown(): Promise<void> {}

  private async select(): Promise<BackendSelection> {
    const key = `${this.request.accelerator}/${this.request.threads ?? ''}`;
    if (active?.key === key && tf.getBackend() === active.selection.backend) return active.selection;
    try {
      const selection = await this.accelerator.select(this.request.accelerator, { threads: this.request.threads });
      active = { key, selection };
      return selection;
    } catch (error) {
      this.selecting = undefined;
      throw error;
    }
  }
}
