/**
 * Training augmentation: reflect-pad by 4, take a random 32×32 crop, flip horizontally with
 * probability 1/2 (the standard CIFAR recipe). It only moves pixels, so it commutes with
 * per-pixel quantisation and is applied directly to token grids.
 */
import { hash32 } from './rng.js';

export const PAD = 4;

/** Crop origin in the padded image (0..2·PAD on each axis) and whether to mirror. */
export interface AugmentParams {
  dx: number;
  dy: number;
  flip: boolean;
}

/** Draws depend only on (seed, epoch, sample index): resumable and independent of batching. */
export function augmentParams(seed: number, epoch: number, index: number): AugmentParams {
  return {
    dx: hash32(seed, epoch, index, 1) % (2 * PAD + 1),
    dy: hash32(seed, epoch, index, 2) % (2 * PAD + 1),
    flip: (hash32(seed, epoch, index, 3) & 1) === 1,
  };
}

/** numpy/torch 'reflect' padding: the edge pixel is not repeated (-1 → 1, n → n-2). */
export function reflect(i: number, n: number): number {
  return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i;
}

/** Writes the augmented `size`×`size` grid at `src[srcOff..]` to `dst[dstOff..]`. */
export function augmentGrid(
  src: ArrayLike<number>, srcOff: number, dst: { [i: number]: number }, dstOff: number, p: AugmentParams, size = 32,
): void {
  for (let y = 0; y < size; y++) {
    const row = srcOff + reflect(y + p.dy - PAD, size) * size;
    for (let x = 0; x < size; x++) {
      const cx = p.flip ? size - 1 - x : x;
      dst[dstOff + y * size + x] = src[row + reflect(cx + p.dx - PAD, size)]!;
    }
  }
}
