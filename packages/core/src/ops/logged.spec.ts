import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { loggedValue } from './logged.js';

describe('loggedValue', () => {
  it('is a kept copy: it outlives the step tidy that disposes the original, and is all that is left to dispose', () => {
    tf.setBackend('cpu');
    const before = tf.memory().numTensors;
    let original!: tf.Scalar;
    let logged!: tf.Scalar;
    tf.tidy(() => {
      original = tf.scalar(2).add(0.5) as tf.Scalar;
      logged = loggedValue(original);
      expect(logged).not.toBe(original);
    });
    expect(original.isDisposed).toBe(true);
    expect(logged.isDisposed).toBe(false);
    expect(logged.dataSync()[0]).toBe(2.5);
    logged.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
