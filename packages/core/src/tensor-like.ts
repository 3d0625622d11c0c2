import type * as tf from '@tensorflow/tfjs';

/**
 * A tf.Tensor from any copy of TF.js, known by its shape rather than `instanceof` (a plugin may
 * bundle its own TF.js, whose Tensor class is another).
 */
export function isTensorLike(value: unknown): value is tf.Tensor {
  return (
    typeof value === 'object' &&
    value !== null &&
    'dataId' in value &&
    Array.isArray((value as { shape?: unknown }).shape)
  );
}
