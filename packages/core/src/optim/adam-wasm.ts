/**
 * Adam's per-variable update as one WebAssembly SIMD kernel on TF.js's wasm backend
 * (assembly/adam.ts, zero-copy on TF.js's heap). The composed ops of `Adam.update` launch ~12
 * kernels per variable, each writing a new tensor; this is one pass that reads p, g, m, v and
 * writes the new p, m, v, with bitwise the same float32 results (same operations, same order).
 */
import * as tf from '@tensorflow/tfjs';
import {
  WasmKernelModule,
  heapOffset,
  registerWasmKernels,
  type WasmBackendLike,
  type WasmKernelArgs,
} from '../ops/wasm-kernels.js';

/** The kernel's name in TF.js's registry (backend `wasm`). */
export const ADAM_KERNEL = 'TaskforgeAdam';

interface AdamExports {
  /** See assembly/adam.ts. */
  adamStep(
    n: number,
    p: number,
    g: number,
    m: number,
    v: number,
    pOut: number,
    mOut: number,
    vOut: number,
    b1: number,
    oneMinusB1: number,
    b2: number,
    oneMinusB2: number,
    sqrtBc2: number,
    eps: number,
    stepSize: number,
    wd: number,
    decay: number,
  ): void;
}

const adamKernels = new WasmKernelModule<AdamExports>(
  new URL('../../wasm/adam.wasm', import.meta.url),
  'Adam',
  'npx nx run core:build-wasm',
);

/** The scalars of one update, as JS numbers (rounded to float32 at the kernel's boundary, as TF.js rounds its scalars). */
export interface AdamScalars {
  beta1: number;
  beta2: number;
  epsilon: number;
  /** lr / (1 − β1ᵗ). */
  stepSize: number;
  /** √(1 − β2ᵗ). */
  sqrtBiasCorrection2: number;
  /** L2 weight decay added to the gradient (Adam), 0 for none. */
  l2: number;
  /** The factor p is scaled by first (AdamW's 1 − lr·wd), 1 for none. */
  decay: number;
}

function adamKernel({ inputs, backend, attrs }: WasmKernelArgs): tf.TensorInfo[] {
  const { p, g, m, v } = inputs as Record<'p' | 'g' | 'm' | 'v', tf.TensorInfo>;
  const s = attrs as unknown as AdamScalars;
  const wasm = backend as WasmBackendLike;
  const outs = [p!, m!, v!].map((t) => wasm.makeOutput(t.shape, 'float32'));
  const [pOut, mOut, vOut] = outs.map((t) => heapOffset(wasm, t)) as [number, number, number];
  adamKernels
    .exportsFor(wasm)
    .adamStep(
      tf.util.sizeFromShape(p!.shape),
      heapOffset(wasm, p!),
      heapOffset(wasm, g!),
      heapOffset(wasm, m!),
      heapOffset(wasm, v!),
      pOut,
      mOut,
      vOut,
      s.beta1,
      1 - s.beta1,
      s.beta2,
      1 - s.beta2,
      s.sqrtBiasCorrection2,
      s.epsilon,
      s.stepSize,
      s.l2,
      s.decay,
    );
  return outs;
}

registerWasmKernels({ [ADAM_KERNEL]: adamKernel });

/** True when `adamStepWasm` can run: the wasm backend and float32 tensors. */
export function canUseAdamKernel(...tensors: tf.Tensor[]): boolean {
  return tf.getBackend() === 'wasm' && tensors.every((t) => t.dtype === 'float32');
}

/**
 * The new [p, m, v] (each of p's shape) from p, g, m, v of one shape, on the wasm backend.
 * @throws Error (exit 1) when the compiled kernel file is missing (the message names it and the
 *   build command).
 */
export function adamStepWasm(
  p: tf.Tensor,
  g: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  scalars: AdamScalars,
): [tf.Tensor, tf.Tensor, tf.Tensor] {
  adamKernels.ensureLoaded();
  return tf.engine().runKernel(ADAM_KERNEL, { p, g, m, v }, scalars as unknown as tf.NamedAttrMap) as unknown as [
    tf.Tensor,
    tf.Tensor,
    tf.Tensor,
  ];
}
