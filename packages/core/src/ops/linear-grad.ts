/**
 * A dense layer's gradients on TF.js's wasm backend by WebAssembly SIMD kernels
 * (assembly/linear.ts): the weight gradient dw = xᵀ·dy (`matMulTransposeA`) and the bias
 * gradient Σₙ dy[n, :] (`sumRowsWasm`), with no Transpose and no repacking. Measured against transposing and
 * calling XNNPACK (`scripts/bench-linear-grad.mjs`, 2026-11-30, one core): 5.1 → 0.6 ms for
 * x [8192, 16], dy [8192, 48]; 8.7 → 0.9 ms for [8192, 16]·[8192, 64]; 27 → 16 ms for
 * [4096, 128]·[4096, 384].
 */
import * as tf from '@tensorflow/tfjs';
import {
  WasmKernelModule,
  heapOffset,
  registerWasmKernels,
  type WasmBackendLike,
  type WasmKernelArgs,
} from './wasm-kernels.js';

/** The kernels' names in TF.js's registry (backend `wasm`). */
export const MATMUL_TN_KERNEL = 'TaskforgeMatMulTN';
export const SUM_ROWS_KERNEL = 'TaskforgeSumRows';

interface LinearExports {
  /** See assembly/linear.ts. */
  matMulTN(N: number, inDim: number, outDim: number, x: number, dy: number, dw: number): void;
  sumRows(N: number, D: number, x: number, out: number): void;
}

/** Zero-copy: the kernels read x and dy where they lie in TF.js's heap. */
const linearKernels = new WasmKernelModule<LinearExports>(
  new URL('../../wasm/linear.wasm', import.meta.url),
  'linear weight gradient',
  'npx nx run core:build-wasm',
);

/** x [N, in], dy [N, out] → dw [in, out]. */
function matMulTNKernel({ inputs, backend }: WasmKernelArgs): tf.TensorInfo {
  const { x, dy } = inputs as Record<'x' | 'dy', tf.TensorInfo>;
  const [N, inDim] = x!.shape as [number, number];
  const outDim = dy!.shape[1]!;
  const wasm = backend as WasmBackendLike;
  const dw = wasm.makeOutput([inDim, outDim], 'float32');
  linearKernels
    .exportsFor(wasm)
    .matMulTN(N, inDim, outDim, heapOffset(wasm, x!), heapOffset(wasm, dy!), heapOffset(wasm, dw));
  return dw;
}

/** x [N, D] → [D]. */
function sumRowsKernel({ inputs, backend }: WasmKernelArgs): tf.TensorInfo {
  const { x } = inputs as Record<'x', tf.TensorInfo>;
  const [N, D] = x!.shape as [number, number];
  const wasm = backend as WasmBackendLike;
  const out = wasm.makeOutput([D], 'float32');
  linearKernels.exportsFor(wasm).sumRows(N, D, heapOffset(wasm, x!), heapOffset(wasm, out));
  return out;
}

registerWasmKernels({ [MATMUL_TN_KERNEL]: matMulTNKernel, [SUM_ROWS_KERNEL]: sumRowsKernel });

/**
 * xᵀ·dy for float32 x [N, in] and dy [N, out] → [in, out], on the wasm backend only (not
 * differentiable: it is a gradient).
 * @throws Error (exit 1) when the compiled kernel file is missing (the message names it and the
 *   build command); RangeError when the shapes do not match.
 */
export function matMulTransposeA(x: tf.Tensor2D, dy: tf.Tensor2D): tf.Tensor2D {
  if (x.rank !== 2 || dy.rank !== 2 || x.shape[0] !== dy.shape[0] || x.dtype !== 'float32' || dy.dtype !== 'float32')
    throw new RangeError(
      `matMulTransposeA: expected float32 x [N, in] and dy [N, out] with the same N, got x ${x.dtype} [${x.shape}] and dy ${dy.dtype} [${dy.shape}]`,
    );
  linearKernels.ensureLoaded();
  return tf.engine().runKernel(MATMUL_TN_KERNEL, { x, dy }, {}) as tf.Tensor2D;
}

/**
 * Σₙ x[n, :] for float32 x [N, D] → [D], on the wasm backend only (not differentiable; `sumRows`
 * wraps it with its gradient).
 * @throws Error (exit 1) when the compiled kernel file is missing; RangeError for another shape or dtype.
 */
export function sumRowsWasm(x: tf.Tensor2D): tf.Tensor1D {
  if (x.rank !== 2 || x.dtype !== 'float32')
    throw new RangeError(`sumRowsWasm: expected a float32 [N, D] tensor, got ${x.dtype} [${x.shape}]`);
  linearKernels.ensureLoaded();
  return tf.engine().runKernel(SUM_ROWS_KERNEL, { x }, {}) as tf.Tensor1D;
}
