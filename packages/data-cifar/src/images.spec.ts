import { describe, expect, it } from 'vitest';
import { parseBatch, RECORD_BYTES, type CifarRecords } from './format.js';
import { downsample, imageToRgb } from './images.js';

/** One record per `planes(c, x, y)` (channel 0..2, pixel 0..31), label `label`. */
function record(planes: (c: number, x: number, y: number) => number, label = 0): Uint8Array {
  const out = new Uint8Array(RECORD_BYTES);
  out[0] = label;
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) out[1 + c * 1024 + y * 32 + x] = planes(c, x, y);
  return out;
}

function records(...recs: Uint8Array[]): CifarRecords {
  const data = new Uint8Array(recs.length * RECORD_BYTES);
  recs.forEach((r, i) => data.set(r, i * RECORD_BYTES));
  return parseBatch(data, 'synthetic.bin');
}

// Each 2×2 block is tiled with one of these quadruples (top-left, top-right, bottom-left, bottom-right).
const QUADS: [number[], number][] = [
  [[10, 20, 30, 41], 25], // mean 25.25 → 25
  [[0, 0, 0, 2], 1], // 0.5: halves round up
  [[255, 255, 255, 254], 255], // 254.75 → 255
  [[7, 7, 7, 7], 7],
  [[0, 255, 0, 255], 128], // 127.5 → 128
  [[100, 101, 101, 101], 101], // 100.75 → 101
];

describe('downsample', () => {
  it('averages each 2×2 block per channel at 16×16, rounding to nearest', () => {
    // Channel c of block (bx, by) uses quadruple (bx + 2·by + c) mod 6; record 1 is the same shifted by 1.
    const quad = (shift: number) => (c: number, x: number, y: number) =>
      QUADS[((x >> 1) + 2 * (y >> 1) + c + shift) % 6]![0][(y & 1) * 2 + (x & 1)]!;
    const set = downsample(records(record(quad(0), 3), record(quad(1), 7)), 16);
    expect(set).toMatchObject({ count: 2, size: 16, offset: 0, stride: 768 });
    expect(Array.from(set.labels)).toEqual([3, 7]);
    expect(set.data.length).toBe(2 * 768);
    for (let i = 0; i < 2; i++) {
      const rgb = imageToRgb(set, i);
      for (let by = 0; by < 16; by++) {
        for (let bx = 0; bx < 16; bx++) {
          for (let c = 0; c < 3; c++) expect(rgb[(by * 16 + bx) * 3 + c]).toBe(QUADS[(bx + 2 * by + c + i) % 6]![1]);
        }
      }
    }
  });

  it('averages 4×4 and 8×8 blocks at 8×8 and 4×4', () => {
    // Values 0..63 over each 8×8 block (mean 31.5 → 32); the green plane is constant per 4×4 block.
    const set4 = downsample(records(record((c, x, y) => (c === 1 ? 200 : (y & 7) * 8 + (x & 7)))), 4);
    expect(Array.from(imageToRgb(set4, 0))).toEqual(Array.from({ length: 16 }, () => [32, 200, 32]).flat());
    // At 8×8 a 4×4 block of the same pattern has mean 1.5 + 8·1.5 = 13.5, plus 4 (odd bx) and 32 (odd by):
    // halves round up.
    const set8 = downsample(records(record((_c, x, y) => (y & 7) * 8 + (x & 7))), 8);
    const expected = (bx: number, by: number) => 14 + (by & 1) * 32 + (bx & 1) * 4;
    const rgb = imageToRgb(set8, 0);
    for (let by = 0; by < 8; by++) for (let bx = 0; bx < 8; bx++) expect(rgb[(by * 8 + bx) * 3]).toBe(expected(bx, by));
  });

  it('is a copy-free view at 32×32 that reads the original pixels', () => {
    const recs = records(
      record((c, x, y) => (c * 97 + x * 5 + y * 3) % 256, 2),
      record(() => 9, 4),
    );
    const set = downsample(recs, 32);
    expect(set.data).toBe(recs.data);
    expect(set).toMatchObject({ size: 32, offset: 1, stride: RECORD_BYTES });
    const rgb = imageToRgb(set, 0);
    expect(Array.from(rgb.subarray((3 * 32 + 5) * 3, (3 * 32 + 5) * 3 + 3))).toEqual([34, 131, 228]);
    expect(imageToRgb(set, 1).every((v) => v === 9)).toBe(true);
  });
});
