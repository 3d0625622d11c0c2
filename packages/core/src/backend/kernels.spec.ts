/**
 * Which ops a transformer needs work forward and backward on the wasm and cpu backends, and
 * agree. Known gaps are asserted too, so a TF.js upgrade that changes them shows up here.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerWasmPolyfills } from './wasm-kernels.js';

type Op = (x: tf.Tensor) => tf.Scalar;
const X = [
  [0.1, -0.5, 2, 0.3],
  [1, 0.2, -1, 0.7],
];
const ids = () => tf.tensor1d([1, 0, 1], 'int32');

const DIFFERENTIABLE: Record<string, Op> = {
  'gather (embedding lookup)': (x) =>
    tf
      .gather(x, ids())
      .mul(tf.range(1, 13).reshape([3, 4]))
      .sum(),
  erf: (x) => tf.erf(x).sum(),
  'gelu (tanh approximation)': (x) =>
    x
      .mul(0.5)
      .mul(tf.tanh(x.add(x.pow(3).mul(0.044715)).mul(Math.sqrt(2 / Math.PI))).add(1))
      .sum(),
  logSoftmax: (x) =>
    tf
      .logSoftmax(x)
      .mul(
        tf.tensor2d([
          [1, 0, 0, 0],
          [0, 0, 1, 0],
        ]),
      )
      .sum(),
  softmax: (x) => tf.softmax(x).square().sum(),
  'oneHot × x': (x) =>
    tf
      .oneHot(tf.tensor1d([1, 3], 'int32'), 4)
      .mul(x)
      .sum(),
  cumsum: (x) => tf.cumsum(x, 1).square().sum(),
  'batched matMul (attention scores)': (x) =>
    tf
      .matMul(x.reshape([1, 2, 4]), x.reshape([1, 2, 4]), false, true)
      .square()
      .sum(),
  'layer norm (moments, rsqrt)': (x) => {
    const { mean, variance } = tf.moments(x, -1, true);
    return x
      .sub(mean)
      .mul(tf.rsqrt(variance.add(1e-5)))
      .mul(tf.range(0, 8).reshape([2, 4]))
      .sum();
  },
  'causal mask (where)': (x) =>
    tf
      .where(
        tf
          .tensor2d([
            [1, 0, 1, 0],
            [0, 1, 1, 1],
          ])
          .cast('bool'),
        x,
        tf.fill([2, 4], -1e9),
      )
      .softmax()
      .square()
      .sum(),
  softmaxCrossEntropy: (x) => tf.losses.softmaxCrossEntropy(tf.oneHot(tf.tensor1d([0, 2], 'int32'), 4), x),
  'dropout (seeded)': (x) => tf.dropout(x, 0.5, undefined, 1).sum(),
  'concat / slice / transpose': (x) =>
    tf
      .concat([x, x], 1)
      .slice([0, 1], [2, 6])
      .reshape([2, 3, 2])
      .transpose([1, 0, 2])
      .mul(tf.range(0, 12).reshape([3, 2, 2]))
      .sum(),
};

function run(backend: string, op: Op): { forward: number[]; grad: number[] } {
  tf.setBackend(backend);
  return tf.tidy(() => {
    const x = tf.tensor2d(X);
    return { forward: Array.from(op(x).dataSync()), grad: Array.from(tf.grad(op)(x).dataSync()) };
  });
}

const errorOf = (f: () => unknown) => {
  try {
    f();
    return undefined;
  } catch (error) {
    return (error as Error).message.split('\n')[0];
  }
};

beforeAll(async () => {
  expect(await tf.setBackend('wasm')).toBe(true);
  expect(await tf.setBackend('cpu')).toBe(true);
});

describe('wasm kernel coverage for training', () => {
  it("wasm lacks UnsortedSegmentSum, so gather's gradient fails until the polyfill is registered", () => {
    const gather = DIFFERENTIABLE['gather (embedding lookup)']!;
    expect(errorOf(() => run('wasm', gather))).toBe("Kernel 'UnsortedSegmentSum' not registered for backend 'wasm'");
    expect(registerWasmPolyfills()).toEqual([
      'UnsortedSegmentSum',
      'Conv2DBackpropFilter',
      'DepthwiseConv2dNativeBackpropFilter',
      'DepthwiseConv2dNativeBackpropInput',
      'Identity',
    ]);
    expect(registerWasmPolyfills()).toEqual([]);
  });

  it('clones without copying on wasm: the clone shares the buffer and outlives the original', async () => {
    registerWasmPolyfills();
    expect(await tf.setBackend('wasm')).toBe(true);
    const backend = tf.backend() as unknown as { refCount(dataId: tf.DataId): number };
    const x = tf.tensor1d([1, 2, 3]);
    const before = tf.memory().numBytes;
    const y = tf.clone(x);
    expect(y.dataId).toBe(x.dataId);
    expect(backend.refCount(x.dataId)).toBe(2);
    x.dispose();
    expect(backend.refCount(y.dataId)).toBe(1);
    expect(Array.from(y.dataSync())).toEqual([1, 2, 3]);
    y.dispose();
    expect(tf.memory().numBytes).toBe(before - 12);
    // Strings keep the copying kernel.
    const s = tf.clone(tf.tensor1d(['a', 'b'], 'string'));
    expect(s.arraySync()).toEqual(['a', 'b']);
    await tf.setBackend('cpu');
  });

  for (const [name, op] of Object.entries(DIFFERENTIABLE)) {
    it(`${name}: forward and backward agree on wasm and cpu`, () => {
      const cpu = run('cpu', op);
      const wasm = run('wasm', op);
      expect(cpu.grad.some((g) => g !== 0)).toBe(true);
      cpu.forward.forEach((v, i) => expect(wasm.forward[i]).toBeCloseTo(v, 4));
      cpu.grad.forEach((v, i) => expect(wasm.grad[i]).toBeCloseTo(v, 4));
    });
  }

  it('the polyfill matches cpu on a rank-3 input and drops out-of-range ids', () => {
    const compute = (backend: string) => {
      tf.setBackend(backend);
      return tf.tidy(() => {
        const x = tf.tensor3d([[[1, 2]], [[3, 4]], [[5, 6]], [[7, 8]], [[9, 9]]]);
        return Array.from(tf.unsortedSegmentSum(x, tf.tensor1d([0, 2, 2, 5, -1], 'int32'), 3).dataSync());
      });
    };
    expect(compute('wasm')).toEqual(compute('cpu'));
    expect(compute('wasm')).toEqual([1, 2, 0, 0, 8, 10]);
  });

  it('sampling ops run forward on both backends and have no gradient (use them outside tf.grad)', () => {
    for (const backend of ['cpu', 'wasm']) {
      tf.setBackend(backend);
      tf.tidy(() => {
        const logits = tf.tensor2d(X);
        expect(tf.topk(logits, 2).indices.arraySync()).toEqual([
          [2, 3],
          [0, 3],
        ]);
        expect(tf.multinomial(logits, 5, 1).shape).toEqual([2, 5]);
        expect(errorOf(() => tf.grad((x: tf.Tensor) => tf.topk(x, 2).values.sum())(logits))).toMatch(
          /gradient function not found for TopK/,
        );
      });
    }
  });

  it('tf.linalg.bandPart has a broken gradient in TF.js 4.22: build causal masks as constants instead', () => {
    for (const backend of ['cpu', 'wasm']) {
      tf.setBackend(backend);
      const message = tf.tidy(() =>
        errorOf(() => tf.grad((x: tf.Tensor) => tf.linalg.bandPart(x, -1, 0).sum())(tf.tensor2d(X))),
      );
      expect(message).toMatch(/stack must be a `Tensor\[\]`/);
    }
  });
});
