/**
 * LayerNorm over the last axis for the GPT-2 backbone: one wasm SIMD kernel per pass
 * (`assembly/layer-norm.ts`), composed ops on other backends.
 */
import * as tf from '@tensorflow/tfjs';
import {
  WasmKernelModule,
  heapOffset,
  registerWasmKernels,
  sumRows,
  type WasmBackendLike,
  type WasmKernelArgs,
} from '@taskforge/core';

/** γ and β of one LayerNorm, [D] each. */
export interface Norm {
  gamma: tf.Tensor;
  beta: tf.Tensor;
}

const LN_EPS = 1e-5;

/**
 * LayerNorm over the last axis: x̂ = (x − mean) / √(var + ε), y = x̂ · γ + β (exported for its
 * tests only). The gradient is written out (Ba et al. 2016; the form PyTorch's and Apex's fused
 * kernels use) instead of differentiating `tf.moments`, which on wasm cost ~25 elementwise
 * kernels per call: with g = dy·γ, dx = (g − mean(g) − x̂·mean(g·x̂)) / √(var + ε),
 * dγ = Σ dy·x̂ and dβ = Σ dy over the leading axes. On wasm each pass is one SIMD kernel
 * (`assembly/layer-norm.ts`: one sweep over the rows, where the ops below take ~10 forward and
 * ~12 backward); elsewhere ops, with core's `sumRows` for dγ and dβ.
 * @throws Error (exit 1) on wasm when the compiled kernel file is missing (it names the file and
 *   the build command).
 */
export function layerNorm<T extends tf.Tensor>(x: T, { gamma, beta }: Norm): T {
  const fused = tf.getBackend() === 'wasm' && x.dtype === 'float32';
  if (fused) layerNormKernels.ensureLoaded();
  return tf.customGrad((...args) => {
    const [a, g, b] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    if (fused) {
      const [y, xhat, rstd] = tf
        .engine()
        .runKernel(LAYER_NORM_KERNEL, { x: a!, gamma: g!, beta: b! }, {}) as tf.Tensor[];
      save([xhat!, rstd!, g!]);
      return {
        value: y!,
        gradFunc: (dy: tf.Tensor, [sxh, srstd, sg]: tf.Tensor[]) =>
          tf
            .engine()
            .runKernel(LAYER_NORM_GRAD_KERNEL, { dy, xhat: sxh!, rstd: srstd!, gamma: sg! }, {}) as tf.Tensor[],
      };
    }
    const { mean, variance } = tf.moments(a!, -1, true);
    const rstd = tf.rsqrt(variance.add(LN_EPS));
    const xhat = a!.sub(mean).mul(rstd);
    save([xhat, rstd, g!]);
    return {
      value: xhat.mul(g!).add(b!),
      gradFunc: (dy: tf.Tensor, [sxh, srstd, sg]: tf.Tensor[]) => {
        const gy = dy.mul(sg!);
        const dx = gy
          .sub(gy.mean(-1, true))
          .sub(sxh!.mul(gy.mul(sxh!).mean(-1, true)))
          .mul(srstd!);
        return [dx, sumRows(dy.mul(sxh!)), sumRows(dy)];
      },
    };
  })(x, gamma, beta) as T;
}

/** LayerNorm's kernel names in TF.js's registry (backend `wasm`). */
export const LAYER_NORM_KERNEL = 'TaskforgeLayerNorm';
export const LAYER_NORM_GRAD_KERNEL = 'TaskforgeLayerNormGrad';

interface LayerNormExports {
  forward(
    x: number,
    gamma: number,
    beta: number,
    y: number,
    xhat: number,
    rstd: number,
    N: number,
    D: number,
    eps: number,
  ): void;
  backward(
    dy: number,
    xhat: number,
    rstd: number,
    gamma: number,
    dx: number,
    dgamma: number,
    dbeta: number,
    N: number,
    D: number,
  ): void;
}

/**
 * The compiled kernels (same relative path from src/ and dist/), instantiated on first use on
 * TF.js's heap: zero-copy, they read and write the tensors where they lie.
 */
const layerNormKernels = new WasmKernelModule<LayerNormExports>(
  new URL('../wasm/layer-norm.wasm', import.meta.url),
  'LayerNorm',
  'npx nx run backbone-gpt2:build-wasm',
);

/** x [..., D], gamma, beta [D] → y, xhat (x's shape), rstd [N] (N = rows of x). */
function layerNormKernel({ inputs, backend }: WasmKernelArgs): tf.TensorInfo[] {
  const { x, gamma, beta } = inputs as Record<'x' | 'gamma' | 'beta', tf.TensorInfo>;
  const wasm = backend as WasmBackendLike;
  const D = x!.shape[x!.shape.length - 1]!;
  const N = tf.util.sizeFromShape(x!.shape) / D;
  const outs = [x!.shape, x!.shape, [N]].map((shape) => wasm.makeOutput(shape, 'float32'));
  const [yp, hp, rp] = outs.map((t) => heapOffset(wasm, t)) as [number, number, number];
  const at = (t: tf.TensorInfo) => heapOffset(wasm, t);
  layerNormKernels.exportsFor(wasm).forward(at(x!), at(gamma!), at(beta!), yp, hp, rp, N, D, LN_EPS);
  return outs;
}

/** dy, xhat [..., D], rstd [N], gamma [D] → dx (dy's shape), dgamma, dbeta [D]. */
function layerNormGradKernel({ inputs, backend }: WasmKernelArgs): tf.TensorInfo[] {
  const { dy, xhat, rstd, gamma } = inputs as Record<'dy' | 'xhat' | 'rstd' | 'gamma', tf.TensorInfo>;
  const wasm = backend as WasmBackendLike;
  const D = dy!.shape[dy!.shape.length - 1]!;
  const N = tf.util.sizeFromShape(dy!.shape) / D;
  const outs = [dy!.shape, [D], [D]].map((shape) => wasm.makeOutput(shape, 'float32'));
  const [dxp, dgp, dbp] = outs.map((t) => heapOffset(wasm, t)) as [number, number, number];
  const at = (t: tf.TensorInfo) => heapOffset(wasm, t);
  layerNormKernels.exportsFor(wasm).backward(at(dy!), at(xhat!), at(rstd!), at(gamma!), dxp, dgp, dbp, N, D);
  return outs;
}

registerWasmKernels({ [LAYER_NORM_KERNEL]: layerNormKernel, [LAYER_NORM_GRAD_KERNEL]: layerNormGradKernel });
