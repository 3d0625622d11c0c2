/**
 * Mini-batch k-means (Sculley, 2010) over RGB points, seeded with k-means++. Used to fit the
 * colour palette: a few hundred thousand sampled pixels and ~100 mini-batches give a palette
 * as good as full k-means at a fraction of the cost.
 */
import { mulberry32 } from './rng.js';

export interface KMeansOptions {
  k: number;
  iterations: number;
  batchSize: number;
  seed: number;
  /** Called after each mini-batch step (progress). */
  onIteration?: (done: number, total: number) => void;
}

/**
 * Returns k×3 centres (interleaved, float). `points` holds n interleaved RGB triples.
 * @throws RangeError when `points` holds no RGB triple.
 */
export function miniBatchKMeans(points: Uint8Array | Float32Array, options: KMeansOptions): Float64Array {
  const n = points.length / 3;
  const { k, iterations, batchSize, seed } = options;
  if (!Number.isInteger(n) || n < 1)
    throw new RangeError(`k-means needs at least one RGB point; got ${points.length} values`);
  const rand = mulberry32(seed);
  const centres = kMeansPlusPlus(points, n, k, rand);
  const counts = new Float64Array(k);
  const batch = new Int32Array(batchSize);
  const assigned = new Int32Array(batchSize);
  for (let it = 0; it < iterations; it++) {
    for (let i = 0; i < batchSize; i++) batch[i] = Math.floor(rand() * n);
    // Assign first, then move centres: the order Sculley's algorithm prescribes.
    for (let i = 0; i < batchSize; i++) assigned[i] = nearest(centres, k, points, batch[i]! * 3);
    for (let i = 0; i < batchSize; i++) {
      const c = assigned[i]!,
        p = batch[i]! * 3;
      const eta = 1 / ++counts[c]!;
      for (let d = 0; d < 3; d++) centres[c * 3 + d] = centres[c * 3 + d]! * (1 - eta) + points[p + d]! * eta;
    }
    options.onIteration?.(it + 1, iterations);
  }
  return centres;
}

function kMeansPlusPlus(points: Uint8Array | Float32Array, n: number, k: number, rand: () => number): Float64Array {
  const centres = new Float64Array(k * 3);
  const d2 = new Float64Array(n).fill(Infinity);
  let chosen = Math.floor(rand() * n);
  for (let c = 0; c < k; c++) {
    for (let d = 0; d < 3; d++) centres[c * 3 + d] = points[chosen * 3 + d]!;
    let total = 0;
    for (let i = 0; i < n; i++) {
      const dr = points[i * 3]! - centres[c * 3]!,
        dg = points[i * 3 + 1]! - centres[c * 3 + 1]!,
        db = points[i * 3 + 2]! - centres[c * 3 + 2]!;
      const d = dr * dr + dg * dg + db * db;
      if (d < d2[i]!) d2[i] = d;
      total += d2[i]!;
    }
    // Next centre with probability ∝ D²; uniform when every point is already a centre.
    let target = rand() * total;
    chosen = Math.floor(rand() * n);
    if (total > 0) {
      for (let i = 0; i < n; i++) {
        target -= d2[i]!;
        if (target < 0) {
          chosen = i;
          break;
        }
      }
    }
  }
  return centres;
}

function nearest(centres: Float64Array, k: number, points: Uint8Array | Float32Array, p: number): number {
  const r = points[p]!,
    g = points[p + 1]!,
    b = points[p + 2]!;
  let best = 0,
    bestD = Infinity;
  for (let c = 0; c < k; c++) {
    const dr = r - centres[c * 3]!,
      dg = g - centres[c * 3 + 1]!,
      db = b - centres[c * 3 + 2]!;
    const d = dr * dr + dg * dg + db * db;
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best;
}

/** Rounds float centres to an integer palette (`number[][]`, channels clamped to 0..255). */
export function toPalette(centres: Float64Array): number[][] {
  const palette: number[][] = [];
  for (let c = 0; c < centres.length / 3; c++) {
    palette.push([0, 1, 2].map((d) => Math.min(255, Math.max(0, Math.round(centres[c * 3 + d]!)))));
  }
  return palette;
}
