/**
 * Fused causal self-attention for TF.js's wasm backend: one WebAssembly SIMD kernel for the
 * forward pass and one for the backward pass (source: `assembly/attention.ts`, AssemblyScript,
 * compiled by the package build into `wasm/attention.wasm`).
 *
 * The plain-ops attention (attention.ts) spends most of a wasm step moving data: transposes,
 * slices and per-head copies so that XNNPACK gets untransposed 2-D matMuls, plus a scalar
 * batched matMul and a separate Softmax. These kernels read q, k, v [B, H, T, hd] as they are,
 * keep one query row's scores at a time (no [T, T] tensor exists, in either pass; the backward
 * pass recomputes probabilities from the saved per-row log-sum-exp, as FlashAttention-2 does),
 * never touch keys past the row, and vectorise across four keys per f32x4.
 *
 * Registered for the `wasm` backend only (`tf.registerKernel`); the gradient is a
 * `tf.customGrad` around the two kernels. Call `fusedCausalAttention` only when the active
 * backend is wasm (attention.ts decides).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';

/** Kernel names in TF.js's registry (backend `wasm`). */
export const FUSED_ATTENTION_KERNEL = 'TaskforgeCausalAttention';
export const FUSED_ATTENTION_GRAD_KERNEL = 'TaskforgeCausalAttentionGrad';

/** Where the package build writes the compiled kernels (same relative path from src/ and dist/). */
const WASM_URL = new URL('../wasm/attention.wasm', import.meta.url);

/** The WebAssembly JS API as used here (this package compiles without the DOM lib, which types it). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
const WasmApi = (
  globalThis as unknown as {
    WebAssembly: {
      Module: new (bytes: Uint8Array) => object;
      Instance: new (module: object, imports: object) => { exports: unknown };
    };
  }
).WebAssembly;

interface KernelExports {
  memory: WasmMemory;
  forward(
    BH: number,
    T: number,
    hd: number,
    scale: number,
    q: number,
    k: number,
    v: number,
    o: number,
    lse: number,
    kt: number,
    vt: number,
    rows: number,
    qsp: number,
  ): void;
  backward(
    BH: number,
    T: number,
    hd: number,
    scale: number,
    q: number,
    k: number,
    v: number,
    o: number,
    dy: number,
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

/** The parts of TF.js's BackendWasm the kernels use (typed here to avoid a dependency on its package). */
interface WasmBackendLike {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
}

let kernels: { exports: KernelExports; base: number } | null = null;

/**
 * Instantiates the compiled kernels (synchronously, once).
 * @throws Error naming the missing `wasm/attention.wasm` and the command that builds it.
 */
function load(): { exports: KernelExports; base: number } {
  if (kernels) return kernels;
  let bytes: Buffer;
  try {
    bytes = readFileSync(WASM_URL);
  } catch (e) {
    throw new Error(
      `fused attention: the compiled kernel ${fileURLToPath(WASM_URL)} is missing (${(e as Error).message}). ` +
        'It is built from assembly/attention.ts by the package build: run ' +
        '`npx nx run backbone-gpt2:build-wasm` (or `npx nx run-many -t build`).',
      { cause: e },
    );
  }
  const instance = new WasmApi.Instance(new WasmApi.Module(bytes), {});
  const exports = instance.exports as unknown as KernelExports;
  // The module allocates nothing: everything past its initial memory is ours to lay out.
  kernels = { exports, base: exports.memory.buffer.byteLength };
  return kernels;
}

/** Byte offsets of consecutive 16-byte-aligned f32 buffers of the given lengths, after `base`. */
function layout(base: number, lengths: number[]): { offsets: number[]; end: number } {
  const offsets: number[] = [];
  let at = base;
  for (const n of lengths) {
    offsets.push(at);
    at += Math.ceil((n * 4) / 16) * 16;
  }
  return { offsets, end: at };
}

/** Grows the kernels' memory to at least `end` bytes; returns a fresh f32 view of it. */
function heap(exports: KernelExports, end: number): Float32Array {
  const have = exports.memory.buffer.byteLength;
  if (end > have) {
    if (end > 4 * 1024 ** 3)
      throw new RangeError(
        `fused attention: needs ${(end / 1024 ** 2).toFixed(0)} MiB of ` +
          `wasm memory, over the 4 GiB wasm32 limit; lower the batch size`,
      );
    exports.memory.grow(Math.ceil((end - have) / 65536));
  }
  return new Float32Array(exports.memory.buffer);
}

function shapeOf(info: tf.TensorInfo): [number, number, number, number] {
  if (info.shape.length !== 4 || info.dtype !== 'float32') {
    throw new RangeError(`fused attention: expected float32 [B, H, T, hd] tensors, got ${info.dtype} [${info.shape}]`);
  }
  return info.shape as [number, number, number, number];
}

function forwardKernel({ inputs, backend }: { inputs: tf.NamedTensorInfoMap; backend: unknown }): tf.TensorInfo[] {
  const wasm = backend as WasmBackendLike;
  const { q, k, v } = inputs as Record<'q' | 'k' | 'v', tf.TensorInfo>;
  const [B, H, T, hd] = shapeOf(q!);
  const n = B * H * T * hd;
  const T4 = Math.ceil(T / 4) * 4;
  const { exports, base } = load();
  // q, k, v, o, lse, then scratch: kt, vt [hd, T4], a block's 4 score rows, 4 rows of q splats.
  const { offsets, end } = layout(base, [n, n, n, n, B * H * T, hd * T4, hd * T4, 4 * T4, 16 * hd]);
  const [qp, kp, vp, op, lp, ktp, vtp, rowp, qsp] = offsets as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  let mem = heap(exports, end);
  mem.set(wasm.typedArrayFromHeap(q!), qp / 4);
  mem.set(wasm.typedArrayFromHeap(k!), kp / 4);
  mem.set(wasm.typedArrayFromHeap(v!), vp / 4);
  exports.forward(B * H, T, hd, 1 / Math.sqrt(hd), qp, kp, vp, op, lp, ktp, vtp, rowp, qsp);
  mem = new Float32Array(exports.memory.buffer);
  const o = wasm.makeOutput([B, H, T, hd], 'float32');
  const lse = wasm.makeOutput([B, H, T], 'float32');
  // Views of TF.js's heap are taken after both allocations (an allocation may move it).
  wasm.typedArrayFromHeap(o).set(mem.subarray(op / 4, op / 4 + n));
  wasm.typedArrayFromHeap(lse).set(mem.subarray(lp / 4, lp / 4 + B * H * T));
  return [o, lse];
}

function backwardKernel({ inputs, backend }: { inputs: tf.NamedTensorInfoMap; backend: unknown }): tf.TensorInfo[] {
  const wasm = backend as WasmBackendLike;
  const { q, k, v, o, dy, lse } = inputs as Record<'q' | 'k' | 'v' | 'o' | 'dy' | 'lse', tf.TensorInfo>;
  const [B, H, T, hd] = shapeOf(q!);
  const n = B * H * T * hd;
  const T4 = Math.ceil(T / 4) * 4;
  const { exports, base } = load();
  // Inputs, outputs, then scratch: kt, vt, dkt, dvt [hd, T4], 4 rows of dS, q and dy splats.
  const { offsets, end } = layout(base, [
    n,
    n,
    n,
    n,
    n,
    B * H * T,
    n,
    n,
    n,
    hd * T4,
    hd * T4,
    hd * T4,
    hd * T4,
    4 * T4,
    16 * hd,
    16 * hd,
  ]);
  const [qp, kp, vp, op, dyp, lp, dqp, dkp, dvp, ktp, vtp, dktp, dvtp, rowp, qsp, dysp] = offsets as number[];
  let mem = heap(exports, end);
  (
    [
      [q, qp],
      [k, kp],
      [v, vp],
      [o, op],
      [dy, dyp],
      [lse, lp],
    ] as [tf.TensorInfo, number][]
  ).forEach(([t, at]) => mem.set(wasm.typedArrayFromHeap(t), at / 4));
  exports.backward(
    B * H,
    T,
    hd,
    1 / Math.sqrt(hd),
    qp!,
    kp!,
    vp!,
    op!,
    dyp!,
    lp!,
    dqp!,
    dkp!,
    dvp!,
    ktp!,
    vtp!,
    dktp!,
    dvtp!,
    rowp!,
    qsp!,
    dysp!,
  );
  mem = new Float32Array(exports.memory.buffer);
  const outs = [0, 1, 2].map(() => wasm.makeOutput([B, H, T, hd], 'float32'));
  outs.forEach((t, i) => {
    const at = [dqp, dkp, dvp][i]! / 4;
    wasm.typedArrayFromHeap(t).set(mem.subarray(at, at + n));
  });
  return outs;
}

for (const [kernelName, kernelFunc] of [
  [FUSED_ATTENTION_KERNEL, forwardKernel],
  [FUSED_ATTENTION_GRAD_KERNEL, backwardKernel],
] as const) {
  // Guarded: the module may be evaluated twice in one process (source and built copies).
  if (!tf.getKernel(kernelName, 'wasm'))
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
}

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
  load();
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
