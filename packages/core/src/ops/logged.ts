import * as tf from '@tensorflow/tfjs';

/**
 * A value to hand `ctx.log` from inside a step's `tf.tidy`: a kept clone of `value`.
 *
 * `ctx.log` takes the tensor it is given (the Trainer reads it after the step and disposes it),
 * while the step usually still uses the tensor, e.g. returns it as the loss. The clone is that
 * logged copy: it survives the step's tidy scope (and `tf.variableGrads`'), `value` stays the
 * step's own, and nothing leaks. `ctx.log('train/loss', loggedValue(loss))`.
 *
 * @param value a rank-0 tensor (any dtype; `ctx.log` refuses other shapes).
 * @returns a new tensor with the same value, kept (outside every tidy scope) until the Trainer disposes it.
 */
export function loggedValue(value: tf.Scalar): tf.Scalar {
  return tf.keep(value.clone());
}
