/**
 * GPT-2's tanh approximation of GELU, 0.5·x·(1 + tanh(u/2)), computed as the identical x·σ(u)
 * with u = 2·√(2/π)·(x + 0.044715·x³).
 *
 * - On wasm, one SIMD kernel per pass (`assembly/gelu.ts`, compiled into `wasm/gelu.wasm`): the
 *   composed ops below write 6 tensors of the input's size forward and 13 backward.
 * - Elsewhere, composed ops: sigmoid rather than tanh (wasm's tanh is a scalar loop, ~8× slower
 *   than its XNNPACK sigmoid), and a written-out gradient that saves x once where autodiff of the
 *   formula saves ~9 copies of the [B, T, 4D] activation.
 * (erf's gradient is not available on every backend, hence the approximation.)
 */
import * as tf from '@tensorflow/tfjs';
import {
  WasmKernelModule,
  heapOffset,
  registerWasmKernels,
  type WasmBackendLike,
  type WasmKernelArgs,
} from '@taskforge/core';

const K = 2 * Math.sqrt(2 / Math.PI);
const A = 0.044715;

/** Kernel names in TF.js's registry (backend `wasm`). */
export const GELU_KERNEL = 'TaskforgeGelu';
export const GELU_GRAD_KERNEL = 'TaskforgeGeluGrad';

interface KernelExports {
  forward(x: number, y: number, n: number): void;
  backward(x: number, dy: number, dx: number, n: number): void;
}

/**
 * The compiled kernels (same relative path from src/ and dist/), instantiated on first use on
 * TF.js's heap: zero-copy, they read and write the tensors where they lie.
 */
const geluKernels = new WasmKernelModule<KernelExports>(
  new URL('../wasm/gelu.wasm', import.meta.url),
  'GELU',
  'npx nx run backbone-gpt2:build-wasm',
);

/** x → gelu(x), same shape (float32). */
function forwardKernel({ inputs, backend }: WasmKernelArgs): tf.TensorInfo {
  const { x } = inputs as Record<'x', tf.TensorInfo>;
  const wasm = backend as WasmBackendLike;
  const y = wasm.makeOutput(x!.shape, 'float32');
  geluKernels.exportsFor(wasm).forward(heapOffset(wasm, x!), heapOffset(wasm, y), tf.util.sizeFromShape(x!.shape));
  return y;
}

/** x, dy → dy·gelu′(x), same shape (float32). */
function backwardKernel({ inputs, backend }: WasmKernelArgs): tf.TensorInfo {
  const { x, dy } = inputs as Record<'x' | 'dy', tf.TensorInfo>;
  const wasm = backend as WasmBackendLike;
  const dx = wasm.makeOutput(x!.shape, 'float32');
  geluKernels
    .exportsFor(wasm)
    .backward(heapOffset(wasm, x!), heapOffset(wasm, dy!), heapOffset(wasm, dx), tf.util.sizeFromShape(x!.shape));
  return dx;
}

registerWasmKernels({ [GELU_KERNEL]: forwardKernel, [GELU_GRAD_KERNEL]: backwardKernel });

/**
 * GELU of a float32 tensor of any shape (same shape out), differentiable; it saves x alone for
 * the backward pass. On the wasm backend it runs the SIMD kernels (within ~1e-6 relative of the
 * composed ops: the kernels' exp is a minimax polynomial, see assembly/gelu.ts).
 * @throws Error (exit 1) on wasm when the compiled kernel file is missing (the message names it
 *   and the build command).
 */
export function gelu<T extends tf.Tensor>(x: T): T {
  const fused = tf.getBackend() === 'wasm' && x.dtype === 'float32';
  if (fused) geluKernels.ensureLoaded();
  return tf.customGrad((...args) => {
    const input = args[0] as tf.Tensor;
    (args[1] as tf.GradSaveFunc)([input]);
    return {
      value: fused ? (tf.engine().runKernel(GELU_KERNEL, { x: input }, {}) as tf.Tensor) : geluOps(input),
      gradFunc: (dy: tf.Tensor, [xs]: tf.Tensor[]) =>
        fused ? (tf.engine().runKernel(GELU_GRAD_KERNEL, { x: xs!, dy }, {}) as tf.Tensor) : geluGradOps(xs!, dy),
    };
  })(x) as T;
}

/** x·σ(u) by composed ops. */
function geluOps(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() =>
    x.mul(
      tf.sigmoid(
        x.mul(
          x
            .square()
            .mul(A * K)
            .add(K),
        ),
      ),
    ),
  );
}

/** dy·(σ(u) + x·σ(u)·(1 − σ(u))·u′), u′ = K·(1 + 3A·x²), by composed ops. */
function geluGradOps(x: tf.Tensor, dy: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const x2 = x.square();
    const s = tf.sigmoid(x.mul(x2.mul(A * K).add(K)));
    const slope = x
      .mul(s)
      .mul(tf.sub(1, s))
      .mul(x2.mul(3 * A * K).add(K));
    return dy.mul(s.add(slope));
  });
}
