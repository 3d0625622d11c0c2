import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { linear } from './linear.js';

describe.each(['cpu', 'wasm'])('linear on %s', (backend) => {
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
  });

  // in > out and in < out take different dW products on wasm.
  it.each([
    [6, 3, true],
    [3, 6, true],
    [5, 5, false],
  ])('matches autodiff of matMul + bias (in %i, out %i, bias %s)', (inDim, outDim, withBias) => {
    const [expected, actual] = [false, true].map((custom) =>
      tf.tidy(() => {
        const x = tf.randomNormal([7, inDim], 0, 1, 'float32', 1) as tf.Tensor2D;
        const w = tf.randomNormal([inDim, outDim], 0, 1, 'float32', 2) as tf.Tensor2D;
        const b = tf.randomNormal([outDim], 0, 1, 'float32', 3) as tf.Tensor1D;
        const upstream = tf.randomNormal([7, outDim], 0, 1, 'float32', 4);
        const f = (...[xx, ww, bb]: tf.Tensor[]) => {
          const y = custom
            ? linear(xx as tf.Tensor2D, ww as tf.Tensor2D, bb as tf.Tensor1D | undefined)
            : bb
              ? tf.matMul(xx!, ww!).add(bb)
              : tf.matMul(xx!, ww!);
          return y.mul(upstream).sum();
        };
        const { value, grads } = tf.valueAndGrads(f)(withBias ? [x, w, b] : [x, w]);
        return [value, ...grads].map((t) => Array.from(t.dataSync()));
      }),
    );
    expect(actual!.length).toBe(expected!.length);
    actual!.forEach((values, i) => values.forEach((v, j) => expect(v).toBeCloseTo(expected![i]![j]!, 4)));
  });
});
