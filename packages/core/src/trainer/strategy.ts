/**
 * How training is spread over devices (Lightning's `strategy`). Today there is one: a single
 * device, the TF.js backend chosen by `trainer.accelerator`. The seam is shaped for data-parallel
 * training (`ddp`), which is not implemented yet, so `trainer.strategy` / `trainer.devices` are not
 * config keys yet. A DDP strategy would:
 *
 * - own the replicas: `setup()` starts one worker per device (each with its own TF.js backend and a
 *   copy of the task's weights) and broadcasts rank 0's weights to the others;
 * - all-reduce gradients: the fit loop hands each accumulated gradient map to `reduceGradients`
 *   before clipping and the optimizer update, which then run identically on every replica;
 * - shard the data: `loaderOptions` gives each rank its own disjoint slice of every epoch
 *   (`DataLoaderOptions` would gain `rank` / `worldSize`);
 * - write from one place: only the replica where `isGlobalZero` is true saves checkpoints and logs.
 */
import * as tf from '@tensorflow/tfjs';
import { Accelerator } from '../backend/accelerator.js';
import type { AcceleratorRequest, BackendSelection } from '../backend/select.js';
import type { DataLoaderOptions } from '../contracts.js';
import type { Output } from '../services/tokens.js';

export interface Strategy {
  /** `single_device` today; `ddp` next. */
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

  /** A strategy that reports through `output` with a fresh `Accelerator`. */
  static for(
    request: { accelerator: AcceleratorRequest; threads: number | null },
    output: Output,
  ): SingleDeviceStrategy {
    return new SingleDeviceStrategy(request, new Accelerator(output));
  }

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
