/**
 * Σ over every axis but the last, as a bias or LayerNorm-scale gradient needs it, on a fast path
 * for the wasm backend.
 *
 * TF.js's wasm `Sum` reduces a leading axis by transposing its whole input first (inside the
 * kernel), and the product [1, N]·[N, D] on XNNPACK repacks its [N, D] operand on every call
 * with a new tensor (every gradient is one). On wasm this is one SIMD kernel of ours
 * (`sumRowsWasm`, a column sum in row blocks). CPU ms per call with a fresh tensor each time
 * (`node scripts/bench-sum-rows.mjs`, 2026-11-30, 2-core AMD EPYC): [8192, 512] 73 (Sum), 13.2
 * (XNNPACK), 2.6 (kernel); [16384, 64] 16.8, 4.9, 0.9. Other backends sum directly.
 */
import * as tf from '@tensorflow/tfjs';
import { sumRowsWasm } from './linear-grad.js';

/**
 * x [..., D] (rank ≥ 1, float32) → [D], the sum over all leading axes (x itself summed over
 * nothing when rank 1). Differentiable like `tf.sum`.
 */
export function sumRows(x: tf.Tensor): tf.Tensor1D {
  return tf.tidy(() => {
    const D = x.shape[x.rank - 1]!;
    const rows = x.reshape([-1, D]) as tf.Tensor2D;
    if (tf.getBackend() !== 'wasm' || rows.dtype !== 'float32') return rows.sum(0) as tf.Tensor1D;
    return columnSum(rows);
  });
}

/** The wasm kernel with `tf.sum`'s gradient: dy [D] broadcast back to x's shape. */
function columnSum(rows: tf.Tensor2D): tf.Tensor1D {
  return tf.customGrad((...args) => {
    const r = args[0] as tf.Tensor2D;
    return {
      value: sumRowsWasm(r),
      gradFunc: (dy: tf.Tensor1D) => tf.broadcastTo(dy.reshape([1, -1]), r.shape),
    };
  })(rows) as tf.Tensor1D;
}
