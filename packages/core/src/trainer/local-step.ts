import * as tf from '@tensorflow/tfjs';
import type { StepContext, Task } from '../contracts.js';
import { TaskforgeError } from '../errors.js';
import { isTensorLike } from '../tensor-like.js';
import { StepLog } from './step-context.js';

/** What a training step sees of its position (the `log` function is added per call). */
export type StepFields = Omit<StepContext, 'log'>;

/** One logged value: its name, value and weight (as `ctx.log` got them). */
export interface LoggedValue {
  name: string;
  value: number;
  weight: number;
}

/** Loss, logged values and gradients of one (micro-)batch or shard. */
export interface StepResult {
  loss: number;
  logs: LoggedValue[];
  /** By the task's variable names; the caller owns (and disposes) the tensors. */
  grads: Record<string, tf.Tensor>;
  /** The `WeightedLoss.weight` the step returned (summed over shards), if it returned one. */
  weight?: number;
}

/**
 * Runs `task.trainingStep` on `batch` under `tf.variableGrads` for the `trainable` variables
 * (`[task name, variable]` pairs). Throws TaskforgeError (exit 1) when the loss is not a scalar
 * or a `WeightedLoss`'s weight is not a finite number ≥ 0; whatever the step throws propagates,
 * with its logged tensors disposed.
 */
export async function computeStep(
  task: Task,
  batch: unknown,
  fields: StepFields,
  trainable: ReadonlyArray<readonly [string, tf.Variable]>,
): Promise<StepResult> {
  const log = new StepLog();
  const ctx = log.context(fields);
  let result: { value: tf.Scalar; grads: tf.NamedTensorMap };
  let weight: number | undefined;
  try {
    result = tf.variableGrads(
      () => {
        const output = task.trainingStep(batch, ctx);
        const loss = isTensorLike(output) ? output : lossOf(output);
        if (!isTensorLike(output)) weight = weightOf(output);
        if (loss.rank !== 0) {
          throw new TaskforgeError(
            `trainingStep must return a scalar loss, got a tensor of shape [${loss.shape.join(', ')}]; ` +
              'reduce it (e.g. tf.mean) before returning.',
          );
        }
        return loss;
      },
      trainable.map(([, v]) => v),
    );
  } catch (error) {
    log.discard();
    throw error;
  }
  // The loss is read before the log, which disposes what it holds (often the loss itself).
  const loss = (await result.value.data())[0]!;
  const logs = await log.read();
  result.value.dispose();
  const nameOf = new Map(trainable.map(([name, v]) => [v.name, name]));
  const grads: Record<string, tf.Tensor> = {};
  for (const [tfName, grad] of Object.entries(result.grads)) grads[nameOf.get(tfName)!] = grad;
  return { loss, logs, grads, ...(weight !== undefined ? { weight } : {}) };
}

const RETURN_HINT =
  'trainingStep must return a scalar loss tensor or { loss, weight } (a scalar tensor and the number of units ' +
  'it averages over, e.g. real tokens; see WeightedLoss in docs/new-task.md)';

function lossOf(output: unknown): tf.Scalar {
  const loss = (output as { loss?: unknown } | null)?.loss;
  if (!isTensorLike(loss)) throw new TaskforgeError(`${RETURN_HINT}; got ${describeValue(output)}.`);
  return loss as tf.Scalar;
}

function weightOf(output: unknown): number {
  const weight = (output as { weight?: unknown }).weight;
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0)
    throw new TaskforgeError(
      `trainingStep returned { loss, weight } with weight ${describeValue(weight)}: expected a finite number ≥ 0 ` +
        '(how many units the loss averages over, e.g. the real tokens of the batch, as a plain number).',
    );
  return weight;
}

function describeValue(value: unknown): string {
  if (isTensorLike(value)) return `a tensor of shape [${value.shape.join(', ')}]`;
  if (value === null || typeof value !== 'object') return String(value);
  return `an object with keys ${Object.keys(value).join(', ') || '(none)'}`;
}

/**
 * Runs an evaluation step that only logs (`validationStep`, `testStep`) on `batch` in its own
 * tensor scope and returns what it logged; a step that throws leaves no logged tensors behind.
 */
export async function computeEvaluation(
  task: Task,
  method: 'validationStep' | 'testStep',
  batch: unknown,
  fields: StepFields,
): Promise<LoggedValue[]> {
  const step = task[method];
  if (!step) throw new TaskforgeError(`The task has no ${method}.`);
  return runLogged(fields, (ctx) => step.call(task, batch, ctx));
}

/**
 * Runs a synchronous step inside `tf.tidy` with a fresh `ctx.log` and returns what it logged;
 * on a throw the logged values are released and the error goes on.
 */
export async function runLogged(fields: StepFields, step: (ctx: StepContext) => unknown): Promise<LoggedValue[]> {
  const log = new StepLog();
  const ctx = log.context(fields);
  try {
    tf.tidy(() => {
      step(ctx);
    });
  } catch (error) {
    log.discard();
    throw error;
  }
  return log.read();
}

export async function computePrediction(task: Task, batch: unknown, fields: StepFields): Promise<unknown> {
  const step = task.predictStep;
  if (!step) throw new TaskforgeError('The task has no predictStep.');
  return runScoped(fields, (ctx) => step.call(task, batch, ctx));
}

/**
 * Runs a step (possibly async) in its own tensor scope and returns its output; tensors in the
 * output are kept (they belong to the caller), everything else the step made is disposed, and
 * what it logs is dropped.
 */
export async function runScoped(fields: StepFields, step: (ctx: StepContext) => unknown): Promise<unknown> {
  const log = new StepLog();
  const ctx = log.context(fields);
  // A scope rather than tf.tidy because the step may be async.
  tf.engine().startScope();
  let output: unknown;
  try {
    output = await step(ctx);
  } finally {
    tf.engine().endScope(output as tf.TensorContainer);
    log.discard();
  }
  return output;
}
