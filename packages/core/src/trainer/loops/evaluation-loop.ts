/**
 * One pass over an evaluation split, shared by validation (and the sanity check), test and
 * predict (Lightning's `_EvaluationLoop` / `_PredictionLoop`). Reads top to bottom: for each batch
 * up to the budget, build the step's context, run the step in its own tensor scope, then either
 * average what it logged (metrics) or keep what it returned (predictions).
 */
import * as tf from '@tensorflow/tfjs';
import type { StepContext } from '../../contracts.js';
import { MeanAccumulator, StepLog } from '../step-context.js';

export interface EvaluationRun {
  /** The split's batches, already positioned for this epoch. */
  batches: AsyncIterable<unknown>;
  /** Batches to run; undefined = until the loader is exhausted; 0 = none. */
  budget: number | undefined;
  /** The context fields of batch `batchIdx` (seed, step, epoch). */
  context(batchIdx: number): Omit<StepContext, 'log'>;
  /**
   * `metrics`: a synchronous step whose logged values are averaged (validation, test);
   * `outputs`: a possibly async step whose return values are kept and returned (predict).
   */
  collect: 'metrics' | 'outputs';
  step(batch: unknown, ctx: StepContext): unknown;
  /**
   * For `collect: 'metrics'`: runs the step elsewhere (sharded over the strategy's devices) and
   * returns what it logged; replaces the local `step` when given.
   */
  sharded?:
    | ((
        batch: unknown,
        fields: Omit<StepContext, 'log'>,
      ) => Promise<Array<{ name: string; value: number; weight: number }>>)
    | undefined;
}

export interface EvaluationResult {
  /** Weighted means of every value the steps logged (empty for `collect: 'outputs'`). */
  metrics: Record<string, number>;
  /** What each step returned, tensors included (they belong to the caller); empty for `metrics`. */
  outputs: unknown[];
}

/** Runs `run.step` over `run.batches`; a step that throws leaves no logged tensors behind. */
export async function evaluationLoop(run: EvaluationRun): Promise<EvaluationResult> {
  const means = new MeanAccumulator();
  const outputs: unknown[] = [];
  if (run.budget === 0) return { metrics: {}, outputs };
  let batchIdx = 0;
  for await (const batch of run.batches) {
    if (run.collect === 'metrics' && run.sharded) {
      means.addAll(await run.sharded(batch, run.context(batchIdx)));
      batchIdx += 1;
      if (run.budget !== undefined && batchIdx >= run.budget) break;
      continue;
    }
    const log = new StepLog();
    const ctx = log.context(run.context(batchIdx));
    if (run.collect === 'metrics') {
      try {
        tf.tidy(() => {
          run.step(batch, ctx);
        });
      } catch (error) {
        log.discard();
        throw error;
      }
      means.addAll(await log.read());
    } else {
      // A scope rather than tf.tidy because predictStep may be async; returned tensors are kept.
      tf.engine().startScope();
      let output: unknown;
      try {
        output = await run.step(batch, ctx);
      } finally {
        tf.engine().endScope(output as tf.TensorContainer);
        log.discard();
      }
      outputs.push(output);
    }
    batchIdx += 1;
    if (run.budget !== undefined && batchIdx >= run.budget) break;
  }
  return { metrics: means.means(), outputs };
}
