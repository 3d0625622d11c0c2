/**
 * Training augmentation: reflect-pad, take a random crop of the original size, flip
 * horizontally with probability 1/2 (the standard CIFAR recipe: pad 4 at 32×32). It only moves
 * pixels, so it commutes with per-pixel quantisation and is applied directly to token grids.
 */
import { mixSeed } from '@taskforge/core';

/** Padding at 32×32. */
export const PAD = 4;

/**
 * Padding at `imageSize`: 4 scaled with the image, so a crop shifts content by the same
 * fraction of the image (32 → 4, 16 → 2, 8 → 1), and at least 1 so augmentation never vanishes
 * (4 → 1, a larger fraction than at 32).
 */
export function augmentPad(imageSize: number): number {
  return Math.max(1, Math.round((PAD * imageSize) / 32));
}

/** Crop origin in the padded image (0..2·pad on each axis) and whether to mirror. */
export interface AugmentParams {
  dx: number;
  dy: number;
  flip: boolean;
}

/** Draws depend only on (seed, epoch, sample index): resumable and independent of batching. */
export function augmentParams(seed: number, epoch: number, index: number, pad = PAD): AugmentParams {
  return {
    dx: mixSeed(seed, epoch, index, 1) % (2 * pad + 1),
    dy: mixSeed(seed, epoch, index, 2) % (2 * pad + 1),
    flip: (mixSeed(seed, epoch, index, 3) & 1) === 1,
  };
}

/** numpy/torch 'reflect' padding: the edge pixel is not repeated (-1 → 1, n → n-2). */
export function reflect(i: number, n: number): number {
  return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i;
}

/**
 * Writes the augmented `size`×`size` grid at `src[srcOff..]` to `dst[dstOff..]`; `p` must be drawn with the
 * same `pad`.
 */
export function augmentGrid(
  src: ArrayLike<number>,
  srcOff: number,
  dst: { [i: number]: number },
  dstOff: number,
  p: AugmentParams,
  size = 32,
  pad = augmentPad(size),
): void {
  for (let y = 0; y < size; y++) {
    const row = srcOff + reflect(y + p.dy - pad, size) * size;
    for (let x = 0; x < size; x++) {
      const cx = p.flip ? size - 1 - x : x;
      dst[dstOff + y * size + x] = src[row + reflect(cx + p.dx - pad, size)]!;
    }
  }
}
