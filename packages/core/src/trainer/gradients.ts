import * as tf from '@tensorflow/tfjs';

/**
 * Adds `grads` (keyed by the task's variable names) into `into`. Consumes `grads` and the
 * previous sums.
 */
export function accumulateGrads(
  into: Record<string, tf.Tensor>,
  grads: Record<string, tf.Tensor>,
  weight?: number,
): void {
  if (weight !== undefined && weight !== 1) {
    const scaled = tf.tidy(() => Object.fromEntries(Object.entries(grads).map(([n, g]) => [n, tf.mul(g, weight)])));
    tf.dispose(grads);
    grads = scaled;
  }
  for (const [name, grad] of Object.entries(grads)) {
    const previous = into[name];
    if (previous) {
      into[name] = tf.add(previous, grad);
      previous.dispose();
      grad.dispose();
    } else into[name] = grad;
  }
}

/**
 * Divides summed gradients by `count`: the number of micro-batches, or the sum of their weights
 * when they were accumulated weighted; consumes `sums`.
 */
export function averageGrads(sums: Record<string, tf.Tensor>, count: number): Record<string, tf.Tensor> {
  if (count === 1) return sums;
  const mean = tf.tidy(() => Object.fromEntries(Object.entries(sums).map(([n, g]) => [n, tf.div(g, count)])));
  tf.dispose(sums);
  return mean;
}
