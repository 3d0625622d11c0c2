/**
 * Images at the configured resolution, in CIFAR's planar layout. Downsampling happens before
 * the palette is fitted, so palette, tokens and model all see the same (smaller) images.
 */
import { IMAGE_PIXELS, IMAGE_SIZE, RECORD_BYTES, type CifarRecords } from './format.js';

/** Allowed `dataset.image_size` values: divisors of 32 whose box filter covers whole blocks. */
export const IMAGE_SIZES = [32, 16, 8, 4] as const;

/**
 * `count` planar `size`×`size` images: image i's red plane is `data[offset + i * stride ..]` (`size²`
 * bytes, row-major), green and blue follow it. Raw CIFAR records are a view with offset 1 (the
 * label byte) and stride 3073, so full-size images are never copied.
 */
export interface ImageSet {
  count: number;
  size: number;
  labels: Uint8Array;
  data: Uint8Array;
  offset: number;
  stride: number;
}

/**
 * `records` at `size`×`size`: each output pixel is the mean of its (32/size)² block per channel,
 * rounded to nearest (halves up). One pass over the source bytes; at 32 returns a view, no copy.
 * @throws RangeError when `size` does not divide 32 (the config schema allows only 32, 16, 8, 4).
 */
export function downsample(records: CifarRecords, size: number): ImageSet {
  if (size === IMAGE_SIZE)
    return { count: records.count, size, labels: records.labels, data: records.data, offset: 1, stride: RECORD_BYTES };
  const factor = IMAGE_SIZE / size;
  if (!Number.isInteger(factor) || size < 1) throw new RangeError(`image size ${size} does not divide ${IMAGE_SIZE}`);
  const shift = Math.log2(factor);
  const pixels = size * size;
  const half = (factor * factor) >> 1;
  const out = new Uint8Array(records.count * 3 * pixels);
  const acc = new Uint32Array(pixels);
  const src = records.data;
  // Locals, not imported bindings, in the hot loop: some module loaders turn those into getters.
  const W = IMAGE_SIZE,
    PLANE = IMAGE_PIXELS,
    RECORD = RECORD_BYTES;
  for (let i = 0; i < records.count; i++) {
    for (let c = 0; c < 3; c++) {
      acc.fill(0);
      const plane = i * RECORD + 1 + c * PLANE;
      for (let y = 0; y < W; y++) {
        const row = plane + y * W,
          accRow = (y >> shift) * size;
        for (let x = 0; x < W; x++) acc[accRow + (x >> shift)]! += src[row + x]!;
      }
      const dst = (i * 3 + c) * pixels;
      // The block area is a power of two, so rounding division is an add and a shift.
      for (let p = 0; p < pixels; p++) out[dst + p] = (acc[p]! + half) >> (2 * shift);
    }
  }
  return { count: records.count, size, labels: records.labels.slice(), data: out, offset: 0, stride: 3 * pixels };
}

/** Image `i` of `images` as interleaved RGB (`3·size²` bytes), e.g. for PNGs or `quantize`. */
export function imageToRgb(images: ImageSet, i: number): Uint8Array {
  const pixels = images.size * images.size;
  const base = images.offset + i * images.stride;
  const out = new Uint8Array(3 * pixels);
  for (let p = 0; p < pixels; p++) {
    out[p * 3] = images.data[base + p]!;
    out[p * 3 + 1] = images.data[base + pixels + p]!;
    out[p * 3 + 2] = images.data[base + 2 * pixels + p]!;
  }
  return out;
}
