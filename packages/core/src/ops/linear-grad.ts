/**
 * dw = xᵀ·dy on TF.js's wasm backend by one WebAssembly SIMD kernel (assembly/linear.ts), for
 * `linear`'s weight gradient: no Transpose, no repacking. Measured against transposing and
 * calling XNNPACK (`scripts/bench-linear-grad.mjs`, 2026-11-30, one core): 5.1 → 0.6 ms for
 * x [8192, 16], dy [8192, 48]; 8.7 → 0.9 ms for [8192, 16]·[8192, 64]; 27 → 16 ms for
 * [4096, 128]·[4096, 384].
 */
import * as tf from '@tensorflow/tfjs';
import { WasmKernelModule, type WasmBackendLike } from './wasm-kernels.js';

/** The kernel's name in TF.js's registry (backend `wasm`). */
export const MATMUL_TN_KERNEL = 'TaskforgeMatMulTN';

interface LinearExports {
  /** See assembly/linear.ts. */
  matMulTN(N: number, inDim: number, outDim: number, x: number, dy: number, dw: number): void;
}

const linearKernels = new WasmKernelModule<LinearExports>(
  new URL('../../wasm/linear.wasm', import.meta.url),
  'linear weight gradient',
  'npx nx run core:build-wasm',
);

/** x [N, in], dy [N, out] → dw [in, out]. */
function matMulTNKernel({ inputs, backend }: { inputs: tf.NamedTensorInfoMap; backend: unknown }): tf.TensorInfo {
  const { x, dy } = inputs as Record<'x' | 'dy', tf.TensorInfo>;
  const [N, inDim] = x!.shape as [number, number];
  const outDim = dy!.shape[1]!;
  const wasm = backend as WasmBackendLike;
  const [xp, dyp, dwp] = linearKernels.stage(wasm, [x!, dy!], [inDim * outDim]);
  linearKernels.exports.matMulTN(N, inDim, outDim, xp!, dyp!, dwp!);
  return linearKernels.unstage(wasm, [[dwp!, [inDim, outDim]]])[0]!;
}

// Guarded: the module may be evaluated twice in one process (source and built copies).
if (!tf.getKernel(MATMUL_TN_KERNEL, 'wasm'))
  tf.registerKernel({
    kernelName: MATMUL_TN_KERNEL,
    backendName: 'wasm',
    kernelFunc: matMulTNKernel as unknown as tf.KernelFunc,
  });

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
