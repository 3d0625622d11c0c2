import { describe, expect, it } from 'vitest';
import { TaskforgeError } from '@taskforge/core';
import { dequantize, paletteIndex, quantize } from './quantize.js';
import { mulberry32 } from './rng.js';

function randomBytes(n: number, seed: number): Uint8Array {
  const rand = mulberry32(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
}

function randomPalette(k: number, seed: number): number[][] {
  const b = randomBytes(k * 3, seed);
  return Array.from({ length: k }, (_, i) => [b[i * 3]!, b[i * 3 + 1]!, b[i * 3 + 2]!]);
}

function bruteForce(pixels: Uint8Array, palette: number[][]): Int32Array {
  const out = new Int32Array(pixels.length / 3);
  for (let i = 0; i < out.length; i++) {
    let best = 0,
      bestD = Infinity;
    palette.forEach(([r, g, b], c) => {
      const d = (pixels[i * 3]! - r!) ** 2 + (pixels[i * 3 + 1]! - g!) ** 2 + (pixels[i * 3 + 2]! - b!) ** 2;
      if (d < bestD) {
        bestD = d;
        best = c;
      }
    });
    out[i] = best;
  }
  return out;
}

describe('quantize', () => {
  it.each([2, 16, 512])('matches a brute-force argmin exactly with %i colours', (k) => {
    const palette = randomPalette(k, k);
    const pixels = randomBytes(3 * 20_000, 7 + k);
    expect(quantize(pixels, palette)).toEqual(bruteForce(pixels, palette));
  });

  it('breaks ties towards the lowest index, like argmin', () => {
    // Pixel [100,100,100] is equidistant from colours 1 and 2; colour 3 duplicates colour 1.
    const palette = [
      [0, 0, 0],
      [90, 100, 100],
      [110, 100, 100],
      [90, 100, 100],
    ];
    expect(Array.from(quantize(Uint8Array.from([100, 100, 100, 91, 100, 100]), palette))).toEqual([1, 1]);
  });

  it('round-trips palette colours exactly and maps other pixels to their nearest colour', () => {
    const palette = randomPalette(64, 3);
    const tokens = Int32Array.from({ length: 1024 }, (_, i) => (i * 37) % 64);
    // Duplicated palette colours make tokens ambiguous, so compare pixels, not tokens.
    const pixels = dequantize(tokens, palette);
    expect(pixels.length).toBe(3072);
    expect(dequantize(quantize(pixels, palette), palette)).toEqual(pixels);
    expect(Array.from(pixels.subarray(3, 6))).toEqual(palette[37]);
  });

  it('reuses a prepared index and accepts it in place of the palette', () => {
    const palette = randomPalette(8, 9);
    const index = paletteIndex(palette);
    expect(paletteIndex(palette)).toBe(index);
    const pixels = randomBytes(300, 1);
    expect(quantize(pixels, index)).toEqual(quantize(pixels, palette));
  });

  it('rejects bad input with clear errors', () => {
    expect(() => quantize(new Uint8Array(4), [[0, 0, 0]])).toThrow(/multiple of 3\); got length 4/);
    expect(() => quantize(new Uint8Array(3), [[0, 0, 256]])).toThrow(/Palette colour 0 is \[0,0,256\]/);
    expect(() => quantize(new Uint8Array(3), [])).toThrow(TaskforgeError);
    expect(() =>
      dequantize(
        [0, 5],
        [
          [0, 0, 0],
          [1, 1, 1],
        ],
      ),
    ).toThrow(/token 5 at position 1 is outside the palette \(valid tokens are 0\.\.1\)/);
  });
});
