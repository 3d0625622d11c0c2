import type { TrainerState } from './checkpoint.js';

/** The loop position fields a checkpoint saves and an exact resume restores. */
export type ProgressState = Pick<
  TrainerState,
  'globalStep' | 'epoch' | 'batchInEpoch' | 'epochFinished' | 'validatedAt'
>;

/**
 * Where training stands, in one place (Lightning's `fit_loop.epoch_progress`): the loops advance
 * it, checkpoints save it (`state()`) and a resume restores it (`load()`). All counts are 0-based.
 */
export class Progress implements ProgressState {
  /** Optimizer steps taken so far in the run. */
  globalStep = 0;
  /** The epoch being trained (0-based). */
  epoch = 0;
  /** Training batches of `epoch` already consumed (at an optimizer-step boundary). */
  batchInEpoch = 0;
  /** True once `epoch`'s training batches are exhausted; the next epoch starts after its validation. */
  epochFinished = false;
  /** `batchInEpoch` at this epoch's latest validation; -1 before the first. */
  validatedAt = -1;

  /** Back to the start of a run. */
  reset(): void {
    this.load({ globalStep: 0, epoch: 0, batchInEpoch: 0, epochFinished: false, validatedAt: -1 });
  }

  startNextEpoch(): void {
    this.epoch += 1;
    this.batchInEpoch = 0;
    this.epochFinished = false;
    this.validatedAt = -1;
  }

  /** Restores a saved position; a position saved after the epoch's end moves on to the next epoch. */
  load(state: ProgressState): void {
    this.globalStep = state.globalStep;
    this.epoch = state.epoch;
    this.batchInEpoch = state.batchInEpoch;
    this.epochFinished = state.epochFinished;
    this.validatedAt = state.validatedAt;
  }

  state(): ProgressState {
    const { globalStep, epoch, batchInEpoch, epochFinished, validatedAt } = this;
    return { globalStep, epoch, batchInEpoch, epochFinished, validatedAt };
  }
}
