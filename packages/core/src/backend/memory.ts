import * as tf from '@tensorflow/tfjs';

/** Tensor memory of the active backend, as numbers ready to log. */
export interface MemoryStats {
  /** Live tensors (`tf.memory().numTensors`). */
  tensors: number;
  /** Bytes held by live tensors, all backends (`tf.memory().numBytes`). */
  bytes: number;
  /** webgpu only: bytes of GPU buffers backing live tensors (`numBytesInGPU`). */
  gpu_bytes?: number;
  /**
   * webgpu only: bytes of GPU buffers allocated, including the backend's free-buffer pool
   * (`numBytesAllocatedInGPU`).
   */
  gpu_bytes_allocated?: number;
}

/**
 * Reads `tf.memory()` for the active backend without a GPU sync (the numbers are bookkeeping
 * kept on the CPU). On webgpu it adds the GPU buffer bytes; other backends report what TF.js
 * tracks (wasm: its heap share; tensorflow: host-side counts only).
 */
export function memoryStats(): MemoryStats {
  const m = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number; numBytesAllocatedInGPU?: number };
  const stats: MemoryStats = { tensors: m.numTensors, bytes: m.numBytes };
  if (typeof m.numBytesInGPU === 'number') stats.gpu_bytes = m.numBytesInGPU;
  if (typeof m.numBytesAllocatedInGPU === 'number') stats.gpu_bytes_allocated = m.numBytesAllocatedInGPU;
  return stats;
}

/** One line for logs, e.g. `412 tensors, 38.2 MB (GPU: 38.2 MB in use, 51.0 MB allocated)`. */
export function describeMemory(stats: MemoryStats = memoryStats()): string {
  const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
  const gpu =
    stats.gpu_bytes === undefined
      ? ''
      : ` (GPU: ${mb(stats.gpu_bytes)} in use, ${mb(stats.gpu_bytes_allocated ?? stats.gpu_bytes)} allocated)`;
  return `${stats.tensors} tensors, ${mb(stats.bytes)}${gpu}`;
}
