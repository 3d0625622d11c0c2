/**
 * Counter-based seeds: every random choice in taskforge (dropout masks, data order, augmentation,
 * palette fitting) is seeded by a pure function of integers such as (seed, epoch, sample index),
 * so a resumed run draws exactly what an uninterrupted one would, without carrying PRNG state.
 */

/**
 * A 31-bit seed in [1, 2^31) from a list of integers (murmur3's finaliser over each part, after
 * MurmurHash3 by Austin Appleby), so nearby inputs get unrelated seeds and the result fits the seed
 * argument of `tf.randomUniform`, `tf.randomNormal`, `tf.truncatedNormal`, `tf.dropout` and the
 * `tf.initializers` (`{ seed }`). Each part is taken modulo 2^32.
 *
 * Never 0: TF.js treats a seed of 0 as "no seed" for normal, truncated-normal and gamma draws
 * (`seed ? seed : Math.random()`), so `tf.randomNormal(shape, 0, 1, 'float32', 0)` and
 * `tf.initializers.heNormal({ seed: 0 })` differ on every call. The one hash value that would be 0
 * maps to 1. Seed every initializer through this function (e.g. `mixSeed(init_seed, i)` for the
 * i-th variable), never with raw arithmetic such as `init_seed * 101 + i`, which is 0 for the first
 * variable of `init_seed` 0.
 */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const part of parts) {
    h = Math.imul(h ^ (part >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 1 || 1;
}
