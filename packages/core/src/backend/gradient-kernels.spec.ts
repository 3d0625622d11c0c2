/**
 * Every backend taskforge trains on can differentiate common layers (conv, depthwise conv,
 * pooling, norms, embeddings, attention…), and agrees with the cpu backend's reference kernels.
 * GRADIENT_KERNELS is checked two ways: each layer's forward + gradient, profiled on cpu,
 * dispatches only kernels its entry lists; and no listed kernel is missing on a supported backend.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { LAYER_CASES } from '../../tests/fixtures/gradient-layers.js';
import { GRADIENT_KERNELS, gradientKernelNames, missingGradientKernels } from './gradient-kernels.js';
import { registerWasmPolyfills, WASM_POLYFILLS } from './wasm-kernels.js';

/** The backends taskforge trains on in this environment (add 'webgpu' where it is registered). */
const BACKENDS = ['cpu', 'wasm'] as const;

beforeAll(async () => {
  expect(await tf.setBackend('wasm')).toBe(true);
  expect(await tf.setBackend('cpu')).toBe(true);
  registerWasmPolyfills();
});

function gradients(backend: string, name: string): { loss: number; grads: Float32Array[] } {
  const layer = LAYER_CASES[name]!;
  tf.setBackend(backend);
  return tf.tidy(() => {
    const inputs = layer.inputs();
    const { value, grads } = tf.valueAndGrads(layer.loss)(inputs);
    return { loss: value.dataSync()[0]!, grads: grads.map((g) => g.dataSync() as Float32Array) };
  });
}

describe('GRADIENT_KERNELS', () => {
  for (const [name, layer] of Object.entries(LAYER_CASES)) {
    it(`lists every kernel that ${name} dispatches forward and backward (profiled on cpu)`, async () => {
      tf.setBackend('cpu');
      const profile = await tf.profile(() => tf.grads(layer.loss)(layer.inputs()));
      // `tf.customGrad` ops (softmaxCrossEntropy__op) show up in the profile but are not kernels.
      const used = new Set(profile.kernelNames.filter((k) => !k.endsWith('__op')));
      const listed = new Set([...GRADIENT_KERNELS.basics!, ...(GRADIENT_KERNELS[layer.layer] ?? [])]);
      expect(GRADIENT_KERNELS[layer.layer], `GRADIENT_KERNELS has no entry '${layer.layer}'`).toBeDefined();
      expect(
        [...used].filter((k) => !listed.has(k)),
        `kernels ${name} uses that GRADIENT_KERNELS['${layer.layer}'] lacks`,
      ).toEqual([]);
    });
  }

  for (const backend of BACKENDS) {
    it(`has every listed kernel registered on ${backend}`, () => {
      expect(missingGradientKernels(backend)).toEqual([]);
    });
  }

  it('reports a missing kernel with the layers that need it', () => {
    expect(missingGradientKernels('no-such-backend')).toContainEqual({
      kernel: 'Conv2DBackpropFilter',
      layers: ['conv1d', 'conv2d', 'conv2dTranspose', 'separableConv2d'],
    });
    expect(missingGradientKernels('no-such-backend')).toHaveLength(gradientKernelNames().length);
  });
});

describe('wasm polyfills', () => {
  it('fill exactly the gaps TF.js wasm 4.22 has in GRADIENT_KERNELS (an upgrade that closes one shows here)', () => {
    for (const kernel of Object.keys(WASM_POLYFILLS)) {
      expect(tf.getKernel(kernel, 'wasm')?.kernelFunc, kernel).toBe(WASM_POLYFILLS[kernel]);
    }
    expect(Object.keys(WASM_POLYFILLS).sort()).toEqual([
      'Conv2DBackpropFilter',
      'DepthwiseConv2dNativeBackpropFilter',
      'DepthwiseConv2dNativeBackpropInput',
      'UnsortedSegmentSum',
    ]);
    expect(registerWasmPolyfills()).toEqual([]); // idempotent
  });

  it('leak no tensors (inputs stay alive, intermediates are freed)', () => {
    tf.setBackend('wasm');
    const layer = LAYER_CASES.separableConv2d!;
    const inputs = layer.inputs();
    const before = tf.memory().numTensors;
    const grads = tf.grads(layer.loss)(inputs);
    expect(tf.memory().numTensors).toBe(before + grads.length);
    tf.dispose(grads);
    expect(inputs.every((t) => !t.isDisposed && t.dataSync().length > 0)).toBe(true);
    tf.dispose(inputs);
  });
});

describe('gradients of common layers on every backend agree with cpu', () => {
  for (const name of Object.keys(LAYER_CASES)) {
    it(name, () => {
      const reference = gradients('cpu', name);
      expect(reference.grads.every((g) => g.some((v) => v !== 0))).toBe(true);
      for (const backend of BACKENDS.filter((b) => b !== 'cpu')) {
        const got = gradients(backend, name);
        expect(got.loss).toBeCloseTo(reference.loss, 2);
        got.grads.forEach((g, i) => {
          const scale = Math.max(1, ...reference.grads[i]!.map(Math.abs));
          const worst = Math.max(...g.map((v, j) => Math.abs(v - reference.grads[i]![j]!)));
          expect(worst / scale, `${backend}: input ${i}`).toBeLessThan(1e-4);
        });
      }
    });
  }

  it('NCHW conv2d filter gradients agree too (the kernel transposes to NHWC)', () => {
    const compute = (backend: string) => {
      tf.setBackend(backend);
      return tf.tidy(() => {
        const x = tf.randomNormal([2, 3, 5, 5], 0, 1, 'float32', 1) as tf.Tensor4D;
        const dy = tf.randomNormal([2, 4, 3, 3], 0, 1, 'float32', 2) as tf.Tensor4D;
        const attrs = { strides: [2, 2], pad: 'same', dataFormat: 'NCHW', filterShape: [3, 3, 3, 4] };
        return Array.from((tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs) as tf.Tensor).dataSync());
      });
    };
    const cpu = compute('cpu');
    const wasm = compute('wasm');
    expect(cpu.length).toBe(3 * 3 * 3 * 4);
    wasm.forEach((v, i) => expect(v).toBeCloseTo(cpu[i]!, 4));
  });
});
