export { Accelerator } from './accelerator.js';
export { GRADIENT_KERNELS, gradientKernelNames, missingGradientKernels } from './gradient-kernels.js';
export { registerWasmPolyfills, WASM_POLYFILLS } from './wasm-kernels.js';
export { describeMemory, memoryStats, type MemoryStats } from './memory.js';
export {
  adapterInfo,
  NO_ADAPTER_HINT,
  probeWebgpu,
  selectBackend,
  type GpuAdapterInfo,
  type AcceleratorKind,
  type AcceleratorRequest,
  type BackendName,
  type BackendSelection,
  type SelectBackendOptions,
} from './select.js';
