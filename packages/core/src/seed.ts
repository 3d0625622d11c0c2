/**
 * Counter-based seeds: every random choice in taskforge (dropout masks, data order, augmentation,
 * palette fitting) is seeded by a pure function of integers such as (seed, epoch, sample index),
 * so a resumed run draws exactly what an uninterrupted one would, without carrying PRNG state.
 */

/**
 * A 31-bit seed in [0, 2^31) from a list of integers (murmur3's finaliser over each part, after
 * MurmurHash3 by Austin Appleby), so nearby inputs get unrelated seeds and the result fits
 * `tf.randomUniform`'s seed argument. Each part is taken modulo 2^32.
 */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const part of parts) {
    h = Math.imul(h ^ (part >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 1;
}
