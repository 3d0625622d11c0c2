export { Accelerator } from './accelerator.js';
export { GRADIENT_KERNELS, gradientKernelNames, missingGradientKernels } from './gradient-kernels.js';
export { registerWasmPolyfills, WASM_POLYFILLS } from './wasm-kernels.js';
export {
  selectBackend,
  type AcceleratorKind,
  type AcceleratorRequest,
  type BackendName,
  type BackendSelection,
  type SelectBackendOptions,
} from './select.js';
