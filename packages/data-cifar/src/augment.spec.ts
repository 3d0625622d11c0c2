import { describe, expect, it } from 'vitest';
import { augmentGrid, augmentPad, augmentParams, PAD, reflect, type AugmentParams } from './augment.js';

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
    for (const [dx, dy] of [
      [0, 0],
      [3, 7],
      [8, 8],
      [4, 1],
    ]) {
      const plain = run({ dx: dx!, dy: dy!, flip: false });
      const flipped = run({ dx: dx!, dy: dy!, flip: true });
      for (let y = 0; y < 32; y++)
        for (let x = 0; x < 32; x++) expect(flipped[y * 32 + x]).toBe(plain[y * 32 + 31 - x]);
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

  it('scales the padding with the image size, never below 1', () => {
    expect([32, 16, 8, 4].map(augmentPad)).toEqual([4, 2, 1, 1]);
    expect(augmentParams(7, 1, 3)).toEqual(augmentParams(7, 1, 3, augmentPad(32)));
    const draws = Array.from({ length: 500 }, (_, i) => augmentParams(7, 1, i, 2));
    expect(new Set(draws.map((p) => p.dx))).toEqual(new Set([0, 1, 2, 3, 4]));
    expect(new Set(draws.map((p) => p.dy))).toEqual(new Set([0, 1, 2, 3, 4]));
  });

  it.each([16, 8, 4])(
    'at image size %i reads only its own image, shifts by at most the padding, and mirrors',
    (size) => {
      const pad = augmentPad(size),
        n = size * size;
      // The image sits between sentinel-filled neighbours: any read outside it would show -1.
      const buf = new Int32Array(3 * n).fill(-1);
      for (let i = 0; i < n; i++) buf[n + i] = i;
      for (let dx = 0; dx <= 2 * pad; dx++) {
        for (let dy = 0; dy <= 2 * pad; dy++) {
          for (const flip of [false, true]) {
            const out = new Int32Array(n + 5).fill(-2);
            augmentGrid(buf, n, out, 5, { dx, dy, flip }, size);
            expect(Array.from(out.subarray(0, 5))).toEqual([-2, -2, -2, -2, -2]);
            const got = Array.from(out.subarray(5));
            expect(Math.min(...got)).toBeGreaterThanOrEqual(0);
            // Row y shows source row y + dy - pad (reflected), so content moves by at most pad.
            expect(got.every((v, i) => Math.abs(Math.floor(v / size) - Math.floor(i / size)) <= pad)).toBe(true);
            const expected = got.map((_, i) => {
              const x = i % size,
                y = Math.floor(i / size);
              return reflect(y + dy - pad, size) * size + reflect((flip ? size - 1 - x : x) + dx - pad, size);
            });
            expect(got).toEqual(expected);
          }
        }
      }
      const centre = new Int32Array(n);
      augmentGrid(buf, n, centre, 0, { dx: pad, dy: pad, flip: false }, size);
      expect(centre).toEqual(buf.subarray(n, 2 * n));
    },
  );
});
