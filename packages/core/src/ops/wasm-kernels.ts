/**
 * Compiled WebAssembly SIMD kernel modules that work on TF.js's wasm backend's tensors in place
 * (zero-copy): a module is compiled with `asc --importMemory` and instantiated against the
 * backend's own `WebAssembly.Memory`, so its pointers are the byte offsets of TF.js's tensors
 * (`heapOffset`); it reads its inputs where they lie and writes into outputs (`makeOutput`) and
 * scratch buffers (`withScratch`) allocated in that heap. Such a module must carry no static data
 * (a data segment would overwrite tensors when instantiated), which is checked on load.
 *
 * (Before, each module had its own memory and every call copied its inputs in and its outputs
 * out: by the tensors' sizes, about 0.5 GB of copies per step of the default iGPT config.)
 *
 * Used by core's `linear`, `sumRows` and Adam (assembly/) and by plugins' fused kernels.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';

/** The WebAssembly JS API as used here (packages compile without the DOM lib, which types it). */
const WasmApi = (
  globalThis as unknown as {
    WebAssembly: {
      Module: {
        new (bytes: Uint8Array): object;
        imports(module: object): { module: string; name: string; kind: string }[];
      };
      Instance: new (module: object, imports: object) => { exports: unknown };
      Memory: abstract new (...args: never[]) => object;
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
  /** Frees a buffer made by `makeOutput` (`force`: whatever its reference count). */
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
  /** The backend's Emscripten module; its `asm.memory` is the heap every tensor lives in. */
  readonly wasm: { asm?: { memory?: unknown }; wasmMemory?: unknown };
}

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
 * The byte offset of a float32 tensor's data in the wasm backend's heap: the pointer a
 * `WasmKernelModule`'s function takes. Stable while the tensor lives (the heap may grow, but
 * never moves what it holds).
 */
export function heapOffset(backend: WasmBackendLike, info: tf.TensorInfo): number {
  return backend.typedArrayFromHeap(info).byteOffset;
}

/** The sections of a wasm binary that write memory when it is instantiated: data (11) and start (8). */
function memoryWritingSections(bytes: Uint8Array): string[] {
  const found: string[] = [];
  let at = 8; // magic and version
  const leb = () => {
    let value = 0;
    let shift = 0;
    let byte: number;
    do {
      byte = bytes[at++]!;
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
    } while (byte & 0x80);
    return value;
  };
  while (at < bytes.length) {
    const id = bytes[at++]!;
    const size = leb();
    if (id === 11) found.push('a data section (static data: Math tables, strings, static arrays)');
    if (id === 8) found.push('a start function');
    at += size;
  }
  return found;
}

/**
 * One compiled kernel module (built with `asc ... --importMemory`): instantiated once
 * per backend heap on first use, its functions take byte offsets into TF.js's heap
 * (`heapOffset`) and write only into buffers the caller allocated there (`makeOutput`,
 * `withScratch`), so no tensor is copied in or out.
 * @typeParam E the module's exported functions.
 */
export class WasmKernelModule<E extends object> {
  private compiled: object | null = null;
  private readonly instances = new WeakMap<object, E>();

  /**
   * @param url the compiled `.wasm` file (e.g. `new URL('../../wasm/adam.wasm', import.meta.url)`,
   *   the same relative path from src/ and dist/).
   * @param what a name for error messages ("Adam").
   * @param buildCommand the command that builds the file, named when it is missing.
   */
  constructor(
    private readonly url: URL,
    private readonly what: string,
    private readonly buildCommand: string,
  ) {}

  /**
   * Compiles the module now, so that a missing or unfit file fails before any kernel runs.
   * @throws Error (exit 1) naming the missing file and the command that builds it, or what in
   *   the module would overwrite TF.js's heap (a data section or a start function).
   */
  ensureLoaded(): void {
    this.compile();
  }

  /**
   * The module's functions, working on `backend`'s heap.
   * @throws Error (exit 1) as `ensureLoaded`, or when the backend's heap cannot be found or
   *   imported (another build of @tensorflow/tfjs-backend-wasm than the 4.x this was written for).
   */
  exportsFor(backend: WasmBackendLike): E {
    const memory = backend.wasm.asm?.memory ?? backend.wasm.wasmMemory;
    if (!(memory instanceof WasmApi.Memory)) {
      throw new Error(
        `${this.what}: cannot find the wasm backend's heap (backend.wasm.asm.memory); ` +
          'this kernel was written for @tensorflow/tfjs-backend-wasm 4.x',
      );
    }
    let exports = this.instances.get(memory);
    if (!exports) {
      try {
        exports = new WasmApi.Instance(this.compile(), { env: { memory } }).exports as E;
      } catch (e) {
        throw new Error(
          `${this.what}: cannot instantiate ${fileURLToPath(this.url)} on the wasm backend's heap ` +
            `(${(e as Error).message}); rebuild it with \`${this.buildCommand}\``,
          { cause: e },
        );
      }
      this.instances.set(memory, exports);
    }
    return exports;
  }

  /**
   * Runs `body` with temporary float32 buffers of the given lengths in the backend's heap (their
   * byte offsets), freed afterwards whatever `body` does. They lie one after the other, each
   * 16-byte aligned and the first 64-byte aligned: TF.js's allocator aligns to 8 bytes only, and
   * SIMD loads that straddle cache lines made the attention kernels ~15% slower.
   */
  withScratch<R>(backend: WasmBackendLike, lengths: number[], body: (offsets: number[]) => R): R {
    const padded = lengths.map((n) => Math.ceil(n / 4) * 4);
    const total = padded.reduce((a, b) => a + b, 0) + 16; // + 64 bytes of alignment slack
    const buffer = backend.makeOutput([total], 'float32');
    try {
      let at = Math.ceil(heapOffset(backend, buffer) / 64) * 64;
      const offsets = padded.map((n) => {
        const here = at;
        at += n * 4;
        return here;
      });
      return body(offsets);
    } finally {
      backend.disposeData(buffer.dataId, true);
    }
  }

  private compile(): object {
    if (this.compiled) return this.compiled;
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
    const unfit = memoryWritingSections(bytes);
    if (unfit.length > 0) {
      throw new Error(
        `${this.what}: ${fileURLToPath(this.url)} has ${unfit.join(' and ')}, which would overwrite ` +
          "TF.js's tensors when the module is instantiated on its heap. A zero-copy kernel must use no " +
          'static data (AssemblyScript: no Math/Mathf functions with tables, strings or static arrays); ' +
          `change its source and run \`${this.buildCommand}\`.`,
      );
    }
    const module = new WasmApi.Module(bytes);
    const imports = WasmApi.Module.imports(module);
    if (!imports.some((i) => i.module === 'env' && i.name === 'memory' && i.kind === 'memory')) {
      throw new Error(
        `${this.what}: ${fileURLToPath(this.url)} does not import its memory, so it cannot work on TF.js's ` +
          `heap; compile it with \`asc ... --importMemory\` (run \`${this.buildCommand}\`).`,
      );
    }
    this.compiled = module;
    return this.compiled;
  }
}
