import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { GELU_GRAD_KERNEL, GELU_KERNEL, gelu } from './gelu.js';

/** GPT-2's formula as written in the paper, differentiated by autodiff. */
function reference(x: tf.Tensor): tf.Tensor {
  const inner = x.add(x.pow(3).mul(0.044715)).mul(Math.sqrt(2 / Math.PI));
  return x.mul(0.5).mul(tf.tanh(inner).add(1));
}

describe.each(['cpu', 'wasm'])('gelu on %s', (backend) => {
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
  });

  it('matches the tanh formula and its autodiff gradient', () => {
    const [expected, actual] = [reference, gelu].map((f) =>
      tf.tidy(() => {
        const x = tf.linspace(-6, 6, 240).reshape([3, 80, 1]).tile([1, 1, 2]);
        const upstream = tf.randomNormal(x.shape, 0, 1, 'float32', 1);
        const { value, grad } = tf.valueAndGrad((t: tf.Tensor) => f(t).mul(upstream).sum())(x);
        return [f(x).dataSync(), grad.dataSync(), value.dataSync()].map((d) => Array.from(d));
      }),
    );
    // float32: 1e-5 relative to the magnitude (the summed value is ~24).
    expected!.forEach((values, i) =>
      values.forEach((v, j) => expect(Math.abs(actual![i]![j]! - v)).toBeLessThan(1e-5 * Math.max(1, Math.abs(v)))),
    );
    expect(Math.max(...expected![1]!.map(Math.abs))).toBeGreaterThan(0.5);
  });

  it('matches the formula on a length that is no multiple of 4 (the kernel tail), at extreme inputs too', () => {
    const values = [
      -40, -12, -5.3, -1, -1e-3, 0, 1e-3, 0.7, 3, 9, 40, 2.5, -2.5, 0.2, -0.2, 1.5, -7, 6, 100, -100, 0.05,
    ];
    const x = tf.tensor2d(values, [7, 3]);
    const upstream = tf.randomNormal([7, 3], 0, 1, 'float32', 2);
    const run = (f: (t: tf.Tensor) => tf.Tensor) =>
      tf.tidy(() => {
        const { grad } = tf.valueAndGrad((t: tf.Tensor) => f(t).mul(upstream).sum())(x);
        return [f(x).dataSync(), grad.dataSync()].map((d) => Array.from(d));
      });
    const [expected, actual] = [run(reference), run(gelu)];
    expected!.forEach((vs, i) =>
      vs.forEach((v, j) =>
        expect(Math.abs(actual![i]![j]! - v), `${i}:${values[j]}`).toBeLessThan(2e-6 * Math.max(1, Math.abs(v))),
      ),
    );
    tf.dispose([x, upstream]);
  });

  it(`runs ${backend === 'wasm' ? 'the SIMD kernels, one per pass' : 'composed ops'}`, async () => {
    const x = tf.variable(tf.randomNormal([16, 10]));
    const { kernelNames } = await tf.profile(() => {
      const { value, grads } = tf.variableGrads(() => gelu(x).sum() as tf.Scalar, [x]);
      tf.dispose([value, grads]);
    });
    if (backend === 'wasm') {
      expect(kernelNames).toEqual(expect.arrayContaining([GELU_KERNEL, GELU_GRAD_KERNEL]));
      expect(kernelNames).not.toContain('Sigmoid');
    } else {
      expect(kernelNames).toContain('Sigmoid');
      expect(kernelNames).not.toContain(GELU_KERNEL);
    }
    x.dispose();
  });

  it('leaves no tensors behind after a gradient step', () => {
    const x = tf.variable(tf.randomNormal([4, 8]));
    const count = tf.memory().numTensors;
    const { value, grads } = tf.variableGrads(() => gelu(x).sum() as tf.Scalar, [x]);
    tf.dispose([value, grads]);
    expect(tf.memory().numTensors).toBe(count);
    x.dispose();
  });
});
