/**
 * x·W (+ b) with a gradient that stays on XNNPACK's fast path on the wasm backend.
 *
 * TF.js differentiates matMul into transposed matMuls (dy·Wᵀ, xᵀ·dy), which wasm runs as a
 * scalar loop: 15–30× slower than the forward product at [16384, 16]·[16, 64]. On wasm the
 * gradient transposes explicitly so every product is a plain 2-D matMul, putting the narrower
 * of x and dy on the right (XNNPACK repacks the right-hand operand on every call). Other
 * backends keep the transposed matMuls they run natively. matMul's transposeA flag is no way
 * around the transpose on wasm: it takes the scalar loop too (xᵀ·dy for x [8192, 128] and
 * dy [8192, 512]: 900 ms CPU with the flag against 159 ms transposing x explicitly; measured
 * with `scripts/bench-sum-rows.mjs --matmul` under load). The bias gradient sums dy's rows as a
 * product (`sumRows`), not with wasm's Sum, which transposes its input to reduce axis 0.
 */
import * as tf from '@tensorflow/tfjs';
import { sumRows } from './sum-rows.js';

/** x [N, in] · kernel [in, out] (+ bias [out]) → [N, out]. */
export function linear(x: tf.Tensor2D, kernel: tf.Tensor2D, bias?: tf.Tensor1D): tf.Tensor2D {
  const product = (a: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D) => {
    const y = tf.matMul(a, w);
    return (b ? y.add(b) : y) as tf.Tensor2D;
  };
  const grads = (dy: tf.Tensor2D, a: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor[] => {
    if (tf.getBackend() !== 'wasm') return [tf.matMul(dy, w, false, true), tf.matMul(a, dy, true, false)];
    const dx = tf.matMul(dy, w.transpose());
    const [inDim, outDim] = w.shape;
    // dW = xᵀ·dy, or (dyᵀ·x)ᵀ when x is the narrower one to pack.
    const dw = outDim <= inDim ? tf.matMul(a.transpose(), dy) : tf.matMul(dy.transpose(), a).transpose();
    return [dx, dw];
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
