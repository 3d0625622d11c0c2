/**
 * Fused causal self-attention for TF.js's wasm backend: one WebAssembly SIMD kernel for the
 * forward pass and one for the backward pass (source: `assembly/attention.ts`, AssemblyScript,
 * compiled by the package build into `wasm/attention.wasm`).
 *
 * The plain-ops attention (attention.ts) spends most of a wasm step moving data: transposes,
 * slices and per-head copies so that XNNPACK gets untransposed 2-D matMuls, plus a scalar
 * batched matMul and a separate Softmax. These kernels read q, k, v through strides, either as
 * [B, H, T, hd] tensors (`fusedCausalAttention`) or straight from the qkv projection [B, T, 3D],
 * writing the merged heads [B, T, D] (`fusedCausalAttentionPacked`, what Gpt2 uses on wasm: no
 * head split or merge transposes), keep one query row's scores at a time (no [T, T] tensor
 * exists, in either pass; the backward pass recomputes probabilities from the saved per-row
 * log-sum-exp, as FlashAttention-2 does), never touch keys past the row, and vectorise across
 * four keys per f32x4.
 *
 * Registered for the `wasm` backend only (`tf.registerKernel`); each gradient is a
 * `tf.customGrad` around a forward and a backward kernel. Call these functions only when the
 * active backend is wasm (attention.ts and gpt2.ts decide).
 */
import * as tf from '@tensorflow/tfjs';
import {
  WasmKernelModule,
  heapOffset,
  registerWasmKernels,
  type WasmBackendLike,
  type WasmKernelArgs,
} from '@taskforge/core';

/** Kernel names in TF.js's registry (backend `wasm`). */
export const FUSED_ATTENTION_KERNEL = 'TaskforgeCausalAttention';
export const FUSED_ATTENTION_GRAD_KERNEL = 'TaskforgeCausalAttentionGrad';
/** The same kernels over the qkv projection's [B, T, 3D] output, writing [B, T, D] (no head transposes). */
export const FUSED_ATTENTION_PACKED_KERNEL = 'TaskforgeCausalAttentionPacked';
export const FUSED_ATTENTION_PACKED_GRAD_KERNEL = 'TaskforgeCausalAttentionPackedGrad';

interface KernelExports {
  /** See assembly/attention.ts: strides are in f32 elements, pointers are byte offsets. */
  forward(
    B: number,
    H: number,
    T: number,
    hd: number,
    scale: number,
    q: number,
    k: number,
    v: number,
    sB: number,
    sH: number,
    sT: number,
    o: number,
    oB: number,
    oH: number,
    oT: number,
    lse: number,
    kt: number,
    vt: number,
    rows: number,
    qsp: number,
  ): void;
  backward(
    B: number,
    H: number,
    T: number,
    hd: number,
    scale: number,
    q: number,
    k: number,
    v: number,
    sB: number,
    sH: number,
    sT: number,
    o: number,
    dy: number,
    oB: number,
    oH: number,
    oT: number,
    lse: number,
    dq: number,
    dk: number,
    dv: number,
    kt: number,
    vt: number,
    dkt: number,
    dvt: number,
    rows: number,
    qsp: number,
    dysp: number,
  ): void;
}

/** The compiled kernels (same relative path from src/ and dist/), instantiated on first use. */
const attentionKernels = new WasmKernelModule<KernelExports>(
  new URL('../wasm/attention.wasm', import.meta.url),
  'fused attention',
  'npx nx run backbone-gpt2:build-wasm',
);

/**
 * Where the heads lie. Element (b, h, t, d) of q, k, v (and of their gradients) is at
 * b·sB + h·sH + t·sT + d of its buffer, k and v `kAt` and `vAt` elements after q when the three
 * share one buffer; of o and dy at b·oB + h·oH + t·oT + d.
 */
interface Geometry {
  B: number;
  H: number;
  T: number;
  hd: number;
  sB: number;
  sH: number;
  sT: number;
  oB: number;
  oH: number;
  oT: number;
  /** Shape of o (and dy). */
  outShape: number[];
}

/** [B, H, T, hd] q, k, v and o: three buffers, heads contiguous. */
function headsGeometry(info: tf.TensorInfo): Geometry {
  if (info.shape.length !== 4 || info.dtype !== 'float32') {
    throw new RangeError(`fused attention: expected float32 [B, H, T, hd] tensors, got ${info.dtype} [${info.shape}]`);
  }
  const [B, H, T, hd] = info.shape as [number, number, number, number];
  const s = { sB: H * T * hd, sH: T * hd, sT: hd };
  return { B, H, T, hd, ...s, oB: s.sB, oH: s.sH, oT: s.sT, outShape: [B, H, T, hd] };
}

/** [B, T, 3D] qkv (q | k | v along the last axis, head h at columns h·hd ..) and [B, T, D] o. */
function packedGeometry(info: tf.TensorInfo, numHeads: number): Geometry {
  const [B, T, threeD] = info.shape as [number, number, number];
  if (info.shape.length !== 3 || info.dtype !== 'float32' || threeD % (3 * numHeads) !== 0) {
    throw new RangeError(
      `fused attention: expected a float32 [B, T, 3·D] qkv tensor with D divisible by numHeads (${numHeads}), ` +
        `got ${info.dtype} [${info.shape}]`,
    );
  }
  const D = threeD / 3;
  return {
    B,
    H: numHeads,
    T,
    hd: D / numHeads,
    sB: T * threeD,
    sH: D / numHeads,
    sT: threeD,
    oB: T * D,
    oH: D / numHeads,
    oT: D,
    outShape: [B, T, D],
  };
}

/**
 * The forward kernel over `inputs` (q, k, v or qkv, in TF.js's heap); `qkvAt` maps their byte
 * offsets to the q, k, v pointers. Returns o and lse, allocated in the heap.
 */
function runForward(
  wasm: WasmBackendLike,
  inputs: tf.TensorInfo[],
  g: Geometry,
  qkvAt: (at: number[]) => [number, number, number],
): tf.TensorInfo[] {
  const { B, H, T, hd } = g;
  const T4 = Math.ceil(T / 4) * 4;
  const outs = [g.outShape, [B, H, T]].map((shape) => wasm.makeOutput(shape, 'float32'));
  const [op, lp] = outs.map((t) => heapOffset(wasm, t)) as [number, number];
  const [qp, kp, vp] = qkvAt(inputs.map((t) => heapOffset(wasm, t)));
  const kernels = attentionKernels.exportsFor(wasm);
  // Scratch (f32 elements; layouts in assembly/attention.ts): k and v panels, a block's 4 score
  // rows, q splats.
  attentionKernels.withScratch(wasm, [hd * T4, hd * T4, 4 * T4, 16 * hd], ([ktp, vtp, rowp, qsp]) =>
    kernels.forward(
      B,
      H,
      T,
      hd,
      1 / Math.sqrt(hd),
      qp,
      kp,
      vp,
      g.sB,
      g.sH,
      g.sT,
      op,
      g.oB,
      g.oH,
      g.oT,
      lp,
      ktp!,
      vtp!,
      rowp!,
      qsp!,
    ),
  );
  return outs;
}

/**
 * The backward kernel over `inputs` (q, k, v or qkv, then o, dy, lse); `grads` are the shapes of
 * the gradient outputs to allocate (dq, dk, dv or dqkv) and `qkvAt` maps the byte offsets of the
 * inputs, and of those outputs, to the q, k, v and dq, dk, dv pointers.
 */
function runBackward(
  wasm: WasmBackendLike,
  inputs: tf.TensorInfo[],
  g: Geometry,
  grads: number[][],
  qkvAt: (at: number[]) => [number, number, number],
): tf.TensorInfo[] {
  const { B, H, T, hd } = g;
  const T4 = Math.ceil(T / 4) * 4;
  const outs = grads.map((shape) => wasm.makeOutput(shape, 'float32'));
  const at = inputs.map((t) => heapOffset(wasm, t));
  const nIn = inputs.length;
  const [op, dyp, lp] = at.slice(nIn - 3, nIn) as [number, number, number];
  const [qp, kp, vp] = qkvAt(at);
  const [dqp, dkp, dvp] = qkvAt(outs.map((t) => heapOffset(wasm, t)));
  const kernels = attentionKernels.exportsFor(wasm);
  // Scratch (f32 elements; layouts in assembly/attention.ts): k, v, dk and dv panels, a block's
  // 4 rows of dS, q and dy splats.
  const panel = hd * T4;
  attentionKernels.withScratch(
    wasm,
    [panel, panel, panel, panel, 4 * T4, 16 * hd, 16 * hd],
    ([ktp, vtp, dktp, dvtp, rowp, qsp, dysp]) =>
      kernels.backward(
        B,
        H,
        T,
        hd,
        1 / Math.sqrt(hd),
        qp,
        kp,
        vp,
        g.sB,
        g.sH,
        g.sT,
        op,
        dyp,
        g.oB,
        g.oH,
        g.oT,
        lp,
        dqp,
        dkp,
        dvp,
        ktp!,
        vtp!,
        dktp!,
        dvtp!,
        rowp!,
        qsp!,
        dysp!,
      ),
  );
  return outs;
}

/** q, k, v [B, H, T, hd] → o [B, H, T, hd], lse [B, H, T]. */
function forwardKernel({ inputs, backend }: WasmKernelArgs): tf.TensorInfo[] {
  const { q, k, v } = inputs as Record<'q' | 'k' | 'v', tf.TensorInfo>;
  return runForward(backend as WasmBackendLike, [q!, k!, v!], headsGeometry(q!), (at) => [at[0]!, at[1]!, at[2]!]);
}

/** q, k, v, o, dy [B, H, T, hd], lse → dq, dk, dv [B, H, T, hd]. */
function backwardKernel({ inputs, backend }: WasmKernelArgs): tf.TensorInfo[] {
  const { q, k, v, o, dy, lse } = inputs as Record<'q' | 'k' | 'v' | 'o' | 'dy' | 'lse', tf.TensorInfo>;
  const g = headsGeometry(q!);
  return runBackward(
    backend as WasmBackendLike,
    [q!, k!, v!, o!, dy!, lse!],
    g,
    [g.outShape, g.outShape, g.outShape],
    (at) => [at[0]!, at[1]!, at[2]!],
  );
}

/** Byte offsets of q, k, v inside one [B, T, 3D] buffer at `at`. */
const packedAt = (at: number, D: number): [number, number, number] => [at, at + 4 * D, at + 8 * D];

/** qkv [B, T, 3D] → o [B, T, D], lse [B, H, T]; attr numHeads. */
function packedForwardKernel({ inputs, backend, attrs }: WasmKernelArgs): tf.TensorInfo[] {
  const { qkv } = inputs as Record<'qkv', tf.TensorInfo>;
  const g = packedGeometry(qkv!, attrs!['numHeads'] as number);
  return runForward(backend as WasmBackendLike, [qkv!], g, (at) => packedAt(at[0]!, g.oT));
}

/** qkv [B, T, 3D], o, dy [B, T, D], lse [B, H, T] → dqkv [B, T, 3D]; attr numHeads. */
function packedBackwardKernel({ inputs, backend, attrs }: WasmKernelArgs): tf.TensorInfo[] {
  const { qkv, o, dy, lse } = inputs as Record<'qkv' | 'o' | 'dy' | 'lse', tf.TensorInfo>;
  const g = packedGeometry(qkv!, attrs!['numHeads'] as number);
  return runBackward(backend as WasmBackendLike, [qkv!, o!, dy!, lse!], g, [qkv!.shape], (at) =>
    packedAt(at[0]!, g.oT),
  );
}

registerWasmKernels({
  [FUSED_ATTENTION_KERNEL]: forwardKernel,
  [FUSED_ATTENTION_GRAD_KERNEL]: backwardKernel,
  [FUSED_ATTENTION_PACKED_KERNEL]: packedForwardKernel,
  [FUSED_ATTENTION_PACKED_GRAD_KERNEL]: packedBackwardKernel,
});

/**
 * softmax(q·kᵀ/√hd + causal mask)·v for q, k, v float32 [B, H, T, hd] → [B, H, T, hd], by the
 * fused wasm kernels; differentiable w.r.t. q, k and v (the backward kernel recomputes the
 * probabilities from q, k and the saved [B, H, T] log-sum-exp).
 * @throws Error (a runtime failure, exit 1) when the active backend is not wasm or the compiled
 *   kernel file is missing (the message names it and the build command).
 */
export function fusedCausalAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): tf.Tensor4D {
  if (tf.getBackend() !== 'wasm')
    throw new Error(`fused attention runs on the wasm backend only; the active backend is ${tf.getBackend()}`);
  attentionKernels.ensureLoaded();
  const attend = tf.customGrad((...args) => {
    const [qIn, kIn, vIn] = args as tf.Tensor4D[];
    const save = args[3] as tf.GradSaveFunc;
    const [y, lse] = tf.engine().runKernel(FUSED_ATTENTION_KERNEL, { q: qIn!, k: kIn!, v: vIn! }, {}) as tf.Tensor[];
    save([qIn!, kIn!, vIn!, y!, lse!]);
    return {
      value: y as tf.Tensor4D,
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
        const [sq, sk, sv, so, sl] = saved;
        return tf
          .engine()
          .runKernel(FUSED_ATTENTION_GRAD_KERNEL, { q: sq!, k: sk!, v: sv!, o: so!, dy, lse: sl! }, {}) as tf.Tensor[];
      },
    };
  });
  return attend(q, k, v) as tf.Tensor4D;
}

/**
 * Causal multi-head self-attention straight from the qkv projection: qkv float32 [B, T, 3D]
 * holds q, k, v side by side along the last axis (head h of q at columns h·hd .. (h+1)·hd − 1,
 * of k at D + h·hd .., of v at 2D + h·hd .., hd = D / numHeads), and the result is [B, T, D]
 * with head h at columns h·hd .., i.e. the heads already merged. Equal to splitting the heads
 * ([B, T, 3D] → 3 × [B, H, T, hd]), `fusedCausalAttention`, and merging them back, but the
 * kernels read and write these layouts through strides, so no Transpose runs in either pass.
 * Differentiable w.r.t. qkv (gradient [B, T, 3D]).
 * @throws Error (exit 1) when the active backend is not wasm or the compiled kernel is missing;
 *   RangeError when qkv is not [B, T, 3D] float32 with D divisible by numHeads.
 */
export function fusedCausalAttentionPacked(qkv: tf.Tensor3D, numHeads: number): tf.Tensor3D {
  if (tf.getBackend() !== 'wasm')
    throw new Error(`fused attention runs on the wasm backend only; the active backend is ${tf.getBackend()}`);
  packedGeometry(qkv, numHeads);
  attentionKernels.ensureLoaded();
  const attend = tf.customGrad((...args) => {
    const qkvIn = args[0] as tf.Tensor3D;
    const save = args[1] as tf.GradSaveFunc;
    const [y, lse] = tf.engine().runKernel(FUSED_ATTENTION_PACKED_KERNEL, { qkv: qkvIn }, { numHeads }) as tf.Tensor[];
    save([qkvIn, y!, lse!]);
    return {
      value: y as tf.Tensor3D,
      gradFunc: (dy: tf.Tensor3D, saved: tf.Tensor[]) => {
        const [sqkv, so, sl] = saved;
        return tf
          .engine()
          .runKernel(
            FUSED_ATTENTION_PACKED_GRAD_KERNEL,
            { qkv: sqkv!, o: so!, dy, lse: sl! },
            { numHeads },
          ) as tf.Tensor;
      },
    };
  });
  return attend(qkv) as tf.Tensor3D;
}
