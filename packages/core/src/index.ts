import 'reflect-metadata';

export * from './errors.js';
export { writeFileAtomic, writeNewFileAtomic, withFsErrors, removeDirIfOnly } from './fs.js';
export { linear } from './ops/linear.js';
export { matMulTransposeA, MATMUL_TN_KERNEL } from './ops/linear-grad.js';
export {
  WasmKernelModule,
  heapOffset,
  registerWasmKernels,
  type WasmBackendLike,
  type WasmKernelArgs,
} from './ops/wasm-kernels.js';
export { sumRows } from './ops/sum-rows.js';
export { crossEntropy } from './ops/cross-entropy.js';
export { loggedValue } from './ops/logged.js';
export { requireBackbone, type BackboneRequirements } from './backbone-api.js';
export { readSequenceDataArgs, type RequiredSequenceDataArgs } from './data-args.js';
export * from './contracts.js';
export * from './registry/types.js';
export * from './services/tokens.js';
export * from './config/index.js';
export * from './registry/index.js';
export * from './services/index.js';
export * from './backend/index.js';
export * from './optim/index.js';
export * from './loggers/index.js';
export * from './callbacks/index.js';
export * from './trainer/index.js';
export * from './app/index.js';
export { plugin } from './plugin.js';
