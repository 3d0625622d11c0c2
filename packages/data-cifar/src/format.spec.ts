import { describe, expect, it } from 'vitest';
import { TaskforgeError } from '@taskforge/core';
import { parseBatch, parseMeta, RECORD_BYTES } from './format.js';
import { downsample, imageToRgb } from './images.js';

describe('CIFAR-10 binary format', () => {
  it('parses labels and exposes pixels as interleaved RGB', () => {
    const data = new Uint8Array(2 * RECORD_BYTES);
    data[0] = 3;
    data[RECORD_BYTES] = 9;
    data[RECORD_BYTES + 1 + 5] = 11; // R of pixel 5
    data[RECORD_BYTES + 1 + 1024 + 5] = 22; // G
    data[RECORD_BYTES + 1 + 2048 + 5] = 33; // B
    const records = parseBatch(data, 'x.bin');
    expect(records.count).toBe(2);
    expect(Array.from(records.labels)).toEqual([3, 9]);
    expect(Array.from(imageToRgb(downsample(records, 32), 1).subarray(15, 18))).toEqual([11, 22, 33]);
  });

  it('names the file and size when the size is not a multiple of 3073', () => {
    expect(() => parseBatch(new Uint8Array(RECORD_BYTES + 10), '/d/data_batch_2.bin')).toThrow(
      /data_batch_2\.bin is 3083 bytes, which is not a positive multiple of the 3073-byte record/,
    );
    expect(() => parseBatch(new Uint8Array(0), 'e.bin')).toThrow(TaskforgeError);
  });

  it('names the file and record index of a label above 9', () => {
    const data = new Uint8Array(3 * RECORD_BYTES);
    data[2 * RECORD_BYTES] = 10;
    expect(() => parseBatch(data, 'test_batch.bin')).toThrow(
      /test_batch\.bin: record 2 \(byte offset 6146\) has label 10/,
    );
  });

  it('reads ten class names from batches.meta.txt', () => {
    const names = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'];
    expect(parseMeta(`${names.join('\r\n')}\n\n`, 'm')).toEqual(names);
    expect(() => parseMeta('a\nb\n', 'batches.meta.txt')).toThrow(
      /batches\.meta\.txt lists 2 class names, expected 10/,
    );
  });
});
