/**
 * A compiled WebAssembly SIMD kernel module that works on TF.js's wasm backend's tensors.
 *
 * TF.js's wasm backend keeps tensors in its own module's memory; a kernel module of ours has its
 * own memory, laid out by the caller: `stage` copies the inputs in (16-byte aligned, after the
 * module's static data) followed by room for outputs and scratch, and `unstage` copies results
 * out into new TF.js tensors. The copies are plain memcpys, a small fraction of any kernel here.
 * Used by core's `linear` (assembly/linear.ts) and by plugins' fused kernels.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';

/** The WebAssembly JS API as used here (packages compile without the DOM lib, which types it). */
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

/** The parts of TF.js's BackendWasm a kernel uses (typed here to avoid a dependency on its internals). */
export interface WasmBackendLike {
  /** A new output tensor in the backend's heap; `values` fills it. */
  makeOutput(
    shape: number[],
    dtype: tf.DataType,
    memoryOffset?: number,
    values?: Float32Array | Int32Array,
  ): tf.TensorInfo;
  /** A view of a tensor's data in the backend's heap (invalid after the heap grows). */
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
  /** A copy of a tensor's data. */
  readSync(dataId: unknown): ArrayLike<number>;
  /** One more reference to a buffer (a tensor sharing it). */
  incRef(dataId: tf.DataId): void;
}

const WASM32_LIMIT = 4 * 1024 ** 3;
const sizeOf = (info: tf.TensorInfo) => info.shape.reduce((a, b) => a * b, 1);

/** What TF.js passes a kernel function: its named inputs, the backend (wasm) and the attributes. */
export interface WasmKernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}

/**
 * Registers kernel functions (name → function) for TF.js's `wasm` backend, each once: a module
 * of ours may be evaluated twice in one process (source and built copies), and TF.js warns on a
 * second registration.
 */
export function registerWasmKernels(
  kernels: Record<string, (args: WasmKernelArgs) => tf.TensorInfo | tf.TensorInfo[]>,
): void {
  for (const [kernelName, kernelFunc] of Object.entries(kernels)) {
    if (!tf.getKernel(kernelName, 'wasm'))
      tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  }
}

/**
 * One compiled kernel module, instantiated synchronously on first use.
 * @typeParam E the module's exported functions (pointers are byte offsets into its memory).
 */
export class WasmKernelModule<E extends object> {
  private loaded: { exports: E & { memory: WasmMemory }; base: number } | null = null;

  /**
   * @param url the compiled `.wasm` file (e.g. `new URL('../../wasm/linear.wasm', import.meta.url)`,
   *   the same relative path from src/ and dist/).
   * @param what a name for error messages ("fused attention").
   * @param buildCommand the command that builds the file, named when it is missing.
   */
  constructor(
    private readonly url: URL,
    private readonly what: string,
    private readonly buildCommand: string,
  ) {}

  /**
   * The module's exports.
   * @throws Error (exit 1) naming the missing file and the command that builds it.
   */
  get exports(): E {
    return this.load().exports;
  }

  /**
   * Loads the module now, so that a missing file fails before any kernel runs.
   * @throws Error (exit 1) naming the missing file and the command that builds it.
   */
  ensureLoaded(): void {
    this.load();
  }

  private load(): { exports: E & { memory: WasmMemory }; base: number } {
    if (this.loaded) return this.loaded;
    let bytes: Buffer;
    try {
      bytes = readFileSync(this.url);
    } catch (e) {
      throw new Error(
        `${this.what}: the compiled kernel ${fileURLToPath(this.url)} is missing (${(e as Error).message}). ` +
          `It is built from source by the package build: run \`${this.buildCommand}\` (or \`npx nx run-many -t build\`).`,
        { cause: e },
      );
    }
    const exports = new WasmApi.Instance(new WasmApi.Module(bytes), {}).exports as E & { memory: WasmMemory };
    // The modules allocate nothing: everything past their initial memory is ours to lay out.
    this.loaded = { exports, base: exports.memory.buffer.byteLength };
    return this.loaded;
  }

  /**
   * Copies `inputs` (float32 tensors of the wasm backend) into the module's memory, one buffer
   * each, followed by uninitialised buffers of the `extra` lengths (in f32 elements); returns
   * the byte offsets of all of them, inputs first, each 16-byte aligned.
   * @throws RangeError when the total passes the 4 GiB wasm32 limit (lower the batch size).
   */
  stage(backend: WasmBackendLike, inputs: tf.TensorInfo[], extra: number[]): number[] {
    const { exports, base } = this.load();
    const offsets: number[] = [];
    let end = base;
    for (const n of [...inputs.map(sizeOf), ...extra]) {
      offsets.push(end);
      end += Math.ceil((n * 4) / 16) * 16;
    }
    const have = exports.memory.buffer.byteLength;
    if (end > have) {
      if (end > WASM32_LIMIT)
        throw new RangeError(
          `${this.what}: needs ${(end / 1024 ** 2).toFixed(0)} MiB of wasm memory, over the 4 GiB wasm32 limit; lower the batch size`,
        );
      exports.memory.grow(Math.ceil((end - have) / 65536));
    }
    const mem = new Float32Array(exports.memory.buffer);
    inputs.forEach((t, i) => mem.set(backend.typedArrayFromHeap(t), offsets[i]! / 4));
    return offsets;
  }

  /** Copies each part (`[byte offset, shape]`) of the module's memory into a new float32 tensor of that shape. */
  unstage(backend: WasmBackendLike, parts: [number, number[]][]): tf.TensorInfo[] {
    // Every output is allocated before any view of TF.js's heap is taken (an allocation may move it).
    const outs = parts.map(([, shape]) => backend.makeOutput(shape, 'float32'));
    const mem = new Float32Array(this.load().exports.memory.buffer);
    outs.forEach((t, i) => {
      const at = parts[i]![0] / 4;
      const view = backend.typedArrayFromHeap(t);
      view.set(mem.subarray(at, at + view.length));
    });
    return outs;
  }
}
