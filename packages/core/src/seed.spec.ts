import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { mixSeed } from './seed.js';

describe('mixSeed', () => {
  it('never returns 0, which TF.js would treat as "no seed" for normal draws', () => {
    // The murmur3 finaliser is a bijection, so exactly this input hashes to 0 before the fix-up.
    expect(mixSeed(0x9e3779b9)).toBe(1);
    for (let i = 0; i < 1000; i++) {
      const s = mixSeed(0, i);
      expect(s).toBeGreaterThan(0);
      expect(s).toBeLessThan(2 ** 31);
    }
  });

  it('gives the same normal draws for the same parts, including an init_seed of 0', () => {
    const draw = (seed: number) => Array.from(tf.tidy(() => tf.randomNormal([8], 0, 1, 'float32', seed)).dataSync());
    // The trap mixSeed avoids: a raw seed of 0 draws differently every time.
    expect(draw(0)).not.toEqual(draw(0));
    expect(draw(mixSeed(0, 0))).toEqual(draw(mixSeed(0, 0)));
    expect(draw(mixSeed(0x9e3779b9))).toEqual(draw(mixSeed(0x9e3779b9)));
  });
});
