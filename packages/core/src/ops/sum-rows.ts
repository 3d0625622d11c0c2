/**
 * Σ over every axis but the last, as a bias or LayerNorm-scale gradient needs it, on a fast path
 * for the wasm backend.
 *
 * TF.js's wasm `Sum` reduces a leading axis by transposing its whole input first (inside the
 * kernel): 79 ms CPU for [8192, 512] on this project's 2-core machine, against 3.7 ms for the
 * same sum as the product [1, N]·[N, D] on XNNPACK (`scripts/bench-sum-rows.mjs`). Other
 * backends sum directly.
 */
import * as tf from '@tensorflow/tfjs';

/**
 * x [..., D] (rank ≥ 1, float32) → [D], the sum over all leading axes (x itself summed over
 * nothing when rank 1). Differentiable like `tf.sum`.
 */
export function sumRows(x: tf.Tensor): tf.Tensor1D {
  return tf.tidy(() => {
    const D = x.shape[x.rank - 1]!;
    const rows = x.reshape([-1, D]) as tf.Tensor2D;
    if (tf.getBackend() !== 'wasm') return rows.sum(0) as tf.Tensor1D;
    return tf.matMul(tf.ones([1, rows.shape[0]]), rows).reshape([D]) as tf.Tensor1D;
  });
}
