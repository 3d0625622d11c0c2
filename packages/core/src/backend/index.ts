export { Accelerator } from './accelerator.js';
export { registerWasmPolyfills } from './wasm-kernels.js';
export {
  selectBackend,
  type AcceleratorKind,
  type AcceleratorRequest,
  type BackendName,
  type BackendSelection,
  type SelectBackendOptions,
} from './select.js';
