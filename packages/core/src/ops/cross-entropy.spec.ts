import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { TaskforgeError } from '../errors.js';
import { crossEntropy } from './cross-entropy.js';

describe.each(['cpu', 'wasm'])('crossEntropy on %s', (backend) => {
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
  });

  const rows = [
    [2, 0, -1],
    [0.5, 0.5, 3],
  ];
  const labels = [0, 2];
  /** −log softmax(row)[label], averaged: the definition, computed in plain JS. */
  function reference(smoothing: number): number {
    let total = 0;
    rows.forEach((row, i) => {
      const logZ = Math.log(row.reduce((s, x) => s + Math.exp(x), 0));
      row.forEach((x, c) => {
        const target = (c === labels[i] ? 1 - smoothing : 0) + smoothing / row.length;
        total -= target * (x - logZ);
      });
    });
    return total / rows.length;
  }

  it.each([0, 0.1])('is the mean negative log-likelihood in nats (smoothing %f), a rank-0 tensor', (smoothing) => {
    const loss = tf.tidy(() => crossEntropy(tf.tensor2d(rows), tf.tensor1d(labels, 'int32'), smoothing));
    expect(loss.rank).toBe(0);
    expect(loss.dataSync()[0]).toBeCloseTo(reference(smoothing), 5);
    loss.dispose();
  });

  it('has the softmax-minus-target gradient', () => {
    const logits = tf.tensor2d(rows);
    const grad = tf.grad((x: tf.Tensor) => crossEntropy(x as tf.Tensor2D, tf.tensor1d(labels, 'int32')))(logits);
    const expected = tf
      .softmax(logits)
      .sub(tf.oneHot(tf.tensor1d(labels, 'int32'), 3).toFloat())
      .div(rows.length);
    expect(Array.from(grad.dataSync())).toEqual(Array.from(expected.dataSync()).map((v) => expect.closeTo(v, 5)));
    tf.dispose([logits, grad, expected]);
  });

  it('refuses mismatched shapes and a smoothing outside [0, 1), naming what it got', () => {
    const logits = tf.zeros([2, 3]) as tf.Tensor2D;
    expect(() => crossEntropy(logits, tf.tensor1d([0, 1, 2], 'int32'))).toThrow(
      /logits \[N, C\] and labels \[N\]; got logits \[2, 3\] and labels \[3\]/,
    );
    expect(() => crossEntropy(logits, tf.tensor1d([0, 1], 'int32'), 1)).toThrow(TaskforgeError);
    expect(() => crossEntropy(logits, tf.tensor1d([0, 1], 'int32'), 1)).toThrow(/got 1/);
    logits.dispose();
  });
});
