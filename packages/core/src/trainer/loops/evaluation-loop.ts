/**
 * One pass over an evaluation split, shared by validation (and the sanity check), test and
 * predict (Lightning's `_EvaluationLoop` / `_PredictionLoop`). Reads top to bottom: for each batch
 * up to the budget, build the step's context, run the step in its own tensor scope, then either
 * average what it logged (metrics) or keep what it returned (predictions). With `parallel`, the
 * batches are taken N at a time: the first runs here, the others on workers 1..N-1 at once, and
 * their logs and outputs are added in batch order, so the result is a single-device run's.
 */
import * as tf from '@tensorflow/tfjs';
import type { StepContext } from '../../contracts.js';
import { runLogged, runScoped, type LoggedValue } from '../local-step.js';
import { MeanAccumulator } from '../step-context.js';
import { turnEventLoop } from '../signals.js';
import type { BatchParallel } from '../strategy.js';

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
  sharded?: ((batch: unknown, fields: Omit<StepContext, 'log'>) => Promise<LoggedValue[]>) | undefined;
  /** Whole batches round-robin over the strategy's devices (test, predict); see `Strategy.batchParallel`. */
  parallel?: BatchParallel | undefined;
  /** Called with the number of batches taken so far, after each (for progress displays). */
  onBatchEnd?: ((batchesDone: number) => void | Promise<void>) | undefined;
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
  const devices = run.parallel?.devices ?? 1;
  /** Batches read but not run yet (at most `devices`), with their indices. */
  let window: Array<{ batch: unknown; batchIdx: number }> = [];
  const flush = async (): Promise<void> => {
    const [first, ...rest] = window;
    window = [];
    if (!first) return;
    const remote = rest.map((item, i) => run.parallel!.run(i + 1, item.batch, run.context(item.batchIdx)));
    // Settled before anything throws, so no rejection goes unobserved.
    const settled = Promise.allSettled(remote);
    let local: { logs: LoggedValue[]; output: unknown };
    try {
      local = await runLocal(run, first.batch, first.batchIdx);
    } catch (error) {
      disposeOutputs(await settled);
      throw error;
    }
    const results = await settled;
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      disposeOutputs(results);
      tf.dispose(local.output as tf.TensorContainer);
      throw failed.reason;
    }
    for (const item of [local, ...results.map((r) => (r as PromiseFulfilledResult<typeof local>).value)]) {
      if (run.collect === 'metrics') means.addAll(item.logs);
      else outputs.push(item.output);
    }
  };
  let batchIdx = 0;
  for await (const batch of run.batches) {
    if (run.collect === 'metrics' && run.sharded) {
      means.addAll(await run.sharded(batch, run.context(batchIdx)));
    } else {
      window.push({ batch, batchIdx });
      if (window.length >= devices) await flush();
    }
    batchIdx += 1;
    await run.onBatchEnd?.(batchIdx);
    // A signal during a validation of fit is acknowledged at once (the stop waits for its end).
    await turnEventLoop();
    if (run.budget !== undefined && batchIdx >= run.budget) break;
  }
  await flush();
  return { metrics: means.means(), outputs };
}

/** One batch on this thread: what the step logged (metrics) or what it returned (outputs). */
async function runLocal(
  run: EvaluationRun,
  batch: unknown,
  batchIdx: number,
): Promise<{ logs: LoggedValue[]; output: unknown }> {
  const fields = run.context(batchIdx);
  if (run.collect === 'metrics')
    return { logs: await runLogged(fields, (ctx) => run.step(batch, ctx)), output: undefined };
  return { logs: [], output: await runScoped(fields, (ctx) => run.step(batch, ctx)) };
}

/** Releases the tensors of outputs that will not be returned (a failed window). */
function disposeOutputs(results: Array<PromiseSettledResult<{ output: unknown }>>): void {
  for (const r of results) if (r.status === 'fulfilled') tf.dispose(r.value.output as tf.TensorContainer);
}
