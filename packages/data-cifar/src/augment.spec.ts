import { describe, expect, it } from 'vitest';
import { augmentGrid, augmentParams, PAD, reflect, type AugmentParams } from './augment.js';

const src = Int32Array.from({ length: 1024 }, (_, i) => i); // value = y*32 + x
const run = (p: AugmentParams) => {
  const out = new Int32Array(1024);
  augmentGrid(src, 0, out, 0, p);
  return out;
};

describe('augmentation', () => {
  it('reflects without repeating the edge', () => {
    expect([-4, -1, 0, 31, 32, 35].map((i) => reflect(i, 32))).toEqual([4, 1, 0, 31, 30, 27]);
  });

  it('is the identity at the centre crop without flip', () => {
    expect(run({ dx: PAD, dy: PAD, flip: false })).toEqual(src);
  });

  it('a flip mirrors each row of the same crop', () => {
    for (const [dx, dy] of [[0, 0], [3, 7], [8, 8], [4, 1]]) {
      const plain = run({ dx: dx!, dy: dy!, flip: false });
      const flipped = run({ dx: dx!, dy: dy!, flip: true });
      for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) expect(flipped[y * 32 + x]).toBe(plain[y * 32 + 31 - x]);
    }
  });

  it('crops shift content by at most the padding and reflect at the border', () => {
    const out = run({ dx: 0, dy: 8, flip: false });
    // dx = 0: column x shows source column reflect(x - 4); dy = 8: row y shows reflect(y + 4).
    expect(out[0]).toBe(4 * 32 + 4);
    expect(out[31 * 32 + 0]).toBe(reflect(35, 32) * 32 + 4);
    expect(out[5 * 32 + 10]).toBe(9 * 32 + 6);
  });

  it('draws parameters in range, deterministically from (seed, epoch, index)', () => {
    const draws = Array.from({ length: 2000 }, (_, i) => augmentParams(7, 1, i));
    for (const p of draws) {
      expect(p.dx).toBeGreaterThanOrEqual(0);
      expect(p.dx).toBeLessThanOrEqual(2 * PAD);
      expect(p.dy).toBeGreaterThanOrEqual(0);
      expect(p.dy).toBeLessThanOrEqual(2 * PAD);
    }
    expect(new Set(draws.map((p) => p.dx)).size).toBe(9);
    expect(new Set(draws.map((p) => p.dy)).size).toBe(9);
    const flips = draws.filter((p) => p.flip).length;
    expect(flips).toBeGreaterThan(900);
    expect(flips).toBeLessThan(1100);
    expect(augmentParams(7, 1, 5)).toEqual(draws[5]);
    expect(Array.from({ length: 50 }, (_, i) => augmentParams(7, 2, i))).not.toEqual(draws.slice(0, 50));
  });
});
