/**
 * x·W (+ b) with a gradient that avoids the wasm backend's slow paths.
 *
 * TF.js differentiates matMul into transposed matMuls (dy·Wᵀ, xᵀ·dy), which wasm runs as a
 * scalar loop: 15–30× slower than the forward product at [16384, 16]·[16, 64]. On wasm,
 * dx = dy·Wᵀ transposes the (small) kernel and stays on XNNPACK's plain 2-D product, and the
 * weight gradient xᵀ·dy is one SIMD kernel of ours (`matMulTransposeA`, linear-grad.ts) that
 * reads x and dy as they lie: transposing the [N, in] activations first cost more than the
 * product itself (a generic per-element Transpose kernel; 5.1 → 0.6 ms for the qkv projection
 * of a default iGPT layer). Other backends keep the transposed matMuls they run natively. The
 * bias gradient sums dy's rows as a product (`sumRows`), not with wasm's Sum, which transposes
 * its input to reduce axis 0.
 */
import * as tf from '@tensorflow/tfjs';
import { matMulTransposeA } from './linear-grad.js';
import { sumRows } from './sum-rows.js';

/** x [N, in] · kernel [in, out] (+ bias [out]) → [N, out]. */
export function linear(x: tf.Tensor2D, kernel: tf.Tensor2D, bias?: tf.Tensor1D): tf.Tensor2D {
  const product = (a: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D) => {
    const y = tf.matMul(a, w);
    return (b ? y.add(b) : y) as tf.Tensor2D;
  };
  const grads = (dy: tf.Tensor2D, a: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor[] => {
    if (tf.getBackend() !== 'wasm') return [tf.matMul(dy, w, false, true), tf.matMul(a, dy, true, false)];
    return [tf.matMul(dy, w.transpose()), matMulTransposeA(a, dy)];
  };
  if (bias) {
    return tf.customGrad((...args) => {
      const [a, w, b] = args as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
      (args[3] as tf.GradSaveFunc)([a, w]);
      return {
        value: product(a, w, b),
        gradFunc: (dy: tf.Tensor2D, [sa, sw]: tf.Tensor[]) => [
          ...grads(dy, sa as tf.Tensor2D, sw as tf.Tensor2D),
          sumRows(dy),
        ],
      };
    })(x, kernel, bias) as tf.Tensor2D;
  }
  return tf.customGrad((...args) => {
    const [a, w] = args as [tf.Tensor2D, tf.Tensor2D];
    (args[2] as tf.GradSaveFunc)([a, w]);
    return {
      value: product(a, w),
      gradFunc: (dy: tf.Tensor2D, [sa, sw]: tf.Tensor[]) => grads(dy, sa as tf.Tensor2D, sw as tf.Tensor2D),
    };
  })(x, kernel) as tf.Tensor2D;
}
