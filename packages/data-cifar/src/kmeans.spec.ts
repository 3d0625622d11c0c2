import { describe, expect, it } from 'vitest';
import { miniBatchKMeans, toPalette } from './kmeans.js';
import { mulberry32 } from './rng.js';

const CENTRES = [
  [20, 30, 200],
  [220, 40, 40],
  [60, 200, 90],
  [240, 240, 240],
  [10, 10, 10],
];

function clusteredPoints(n: number, seed: number): Uint8Array {
  const rand = mulberry32(seed);
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const c = CENTRES[i % CENTRES.length]!;
    for (let d = 0; d < 3; d++) out[i * 3 + d] = Math.max(0, Math.min(255, c[d]! + Math.round((rand() - 0.5) * 12)));
  }
  return out;
}

describe('miniBatchKMeans', () => {
  it('recovers well-separated clusters', () => {
    const points = clusteredPoints(5000, 1);
    const palette = toPalette(miniBatchKMeans(points, { k: 5, iterations: 50, batchSize: 256, seed: 3 }));
    const found = [...palette].sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
    const expected = [...CENTRES].sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
    found.forEach((c, i) => c.forEach((v, d) => expect(Math.abs(v - expected[i]![d]!)).toBeLessThanOrEqual(2)));
  });

  it('is deterministic for a seed and reports every iteration', () => {
    const points = clusteredPoints(2000, 2);
    const seen: number[] = [];
    const a = miniBatchKMeans(points, {
      k: 16,
      iterations: 10,
      batchSize: 128,
      seed: 5,
      onIteration: (d) => seen.push(d),
    });
    const b = miniBatchKMeans(points, { k: 16, iterations: 10, batchSize: 128, seed: 5 });
    const c = miniBatchKMeans(points, { k: 16, iterations: 10, batchSize: 128, seed: 6 });
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('handles fewer distinct colours than clusters', () => {
    const points = Uint8Array.from([1, 2, 3, 1, 2, 3, 9, 9, 9]);
    const palette = toPalette(miniBatchKMeans(points, { k: 4, iterations: 3, batchSize: 4, seed: 0 }));
    expect(palette).toHaveLength(4);
    for (const c of palette)
      expect([
        [1, 2, 3],
        [9, 9, 9],
      ]).toContainEqual(c);
  });
});
