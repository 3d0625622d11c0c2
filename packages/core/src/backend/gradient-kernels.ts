/**
 * The TF.js kernels that training common layers needs, forward and backward, by layer. Every
 * backend taskforge trains on must register all of them: `missingGradientKernels(backend)` lists
 * the gaps, and core's tests assert there are none on cpu and wasm (after `registerWasmPolyfills`)
 * and that each layer's forward + gradient, profiled on cpu, dispatches no kernel missing from
 * its entry. Adding a backend (webgpu, tensorflow) means adding it to that test's backend list.
 * Kernel names are TF.js's (`tf.getKernel(name, backend)`), e.g. `Conv2DBackpropFilter`.
 */
import * as tf from '@tensorflow/tfjs';

/** Element-wise and shape kernels that nearly every gradient uses (reductions, broadcasting). */
const BASICS = [
  'Add',
  'Cast',
  'Identity',
  'Multiply',
  'Neg',
  'Range',
  'RealDiv',
  'Reshape',
  'Square',
  'Sub',
  'Sum',
  'Fill',
  'Tile',
  'ExpandDims',
] as const;

/** Kernels by layer; `basics` is shared by all. */
export const GRADIENT_KERNELS: Readonly<Record<string, readonly string[]>> = {
  basics: BASICS,
  conv1d: ['Conv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput'],
  conv2d: ['Conv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput'],
  conv2dTranspose: ['Conv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput'],
  depthwiseConv2d: [
    'DepthwiseConv2dNative',
    'DepthwiseConv2dNativeBackpropFilter',
    'DepthwiseConv2dNativeBackpropInput',
  ],
  separableConv2d: [
    'Conv2D',
    'Conv2DBackpropFilter',
    'Conv2DBackpropInput',
    'DepthwiseConv2dNative',
    'DepthwiseConv2dNativeBackpropFilter',
    'DepthwiseConv2dNativeBackpropInput',
  ],
  maxPool: ['MaxPool', 'MaxPoolGrad'],
  avgPool: ['AvgPool', 'AvgPoolGrad'],
  'global average pool': ['Mean'],
  'batch norm': ['FusedBatchNorm', 'Mean', 'Rsqrt'],
  'layer norm': ['Mean', 'Pow', 'Rsqrt'],
  'embedding (gather)': ['GatherV2', 'Transpose', 'UnsortedSegmentSum'],
  dense: ['BatchMatMul', 'Relu', 'Step'],
  activations: [
    'Concat',
    'SplitV',
    'Relu6',
    'LeakyRelu',
    'Prelu',
    'Elu',
    'EluGrad',
    'Selu',
    'Sigmoid',
    'Tanh',
    'Exp',
    'Step',
    'Greater',
    'LessEqual',
    'Select',
  ],
  dropout: ['Floor'],
  'softmax cross-entropy': ['OneHot', 'Exp', 'Log', 'Max'],
  'bilinear resize': ['ResizeBilinear', 'ResizeBilinearGrad'],
  attention: ['BatchMatMul', 'Select', 'Softmax'],
  'gelu (erf) and logSoftmax': ['Erf', 'Exp', 'Log', 'Max'],
};

/** Every listed kernel once, sorted. */
export function gradientKernelNames(): string[] {
  return [...new Set(Object.values(GRADIENT_KERNELS).flat())].sort();
}

/**
 * The listed kernels `backendName` ('cpu', 'wasm', 'webgpu', 'tensorflow', …) has no kernel for,
 * each with the layers that need it; empty when it can train all of them. Looks only at the
 * kernel registry (`tf.getKernel`), so the backend need not be active; polyfills count once
 * registered (`registerWasmPolyfills` for wasm).
 */
export function missingGradientKernels(backendName: string): Array<{ kernel: string; layers: string[] }> {
  return gradientKernelNames()
    .filter((kernel) => tf.getKernel(kernel, backendName) === undefined)
    .map((kernel) => ({
      kernel,
      layers: Object.keys(GRADIENT_KERNELS).filter((layer) => GRADIENT_KERNELS[layer]!.includes(kernel)),
    }));
}
