import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { sumRows } from './sum-rows.js';

describe.each(['cpu', 'wasm'])('sumRows on %s', (backend) => {
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
  });

  // On wasm: 16-column bands, 4-wide and scalar tails, and N across several 128-row blocks.
  it.each([[[7]], [[1, 5]], [[9, 3]], [[2, 13, 6]], [[300, 37]], [[2, 129, 16]], [[5, 64]]])(
    'sums every axis but the last of %j',
    (shape) => {
      const x = tf.randomNormal(shape, 0, 1, 'float32', 3);
      const D = shape[shape.length - 1]!;
      const data = x.dataSync();
      const expected = new Array<number>(D).fill(0);
      for (let i = 0; i < data.length; i++) expected[i % D]! += data[i]!;
      const actual = sumRows(x);
      expect(actual.shape).toEqual([D]);
      Array.from(actual.dataSync()).forEach((v, j) => expect(v).toBeCloseTo(expected[j]!, 4));
      tf.dispose([x, actual]);
    },
  );

  it('is differentiable: the gradient is the upstream row broadcast back', () => {
    const x = tf.randomNormal([4, 3]);
    const w = tf.tensor1d([1, -2, 3]);
    const [g] = tf.grads((t: tf.Tensor) => sumRows(t).mul(w).sum())([x]);
    expect(g!.arraySync()).toEqual(Array.from({ length: 4 }, () => [1, -2, 3]));
    tf.dispose([x, w, g!]);
  });
});
