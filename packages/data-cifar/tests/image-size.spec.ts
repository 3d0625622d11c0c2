/** `dataset.image_size`: downsampled images end to end, on tiny local archives. */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ComponentRegistry, ConfigError, validateConfig } from '@taskforge/core';
import {
  augmentGrid,
  augmentPad,
  augmentParams,
  cifar10Schema,
  cifar10Spec,
  dequantize,
  RECORD_BYTES,
  type CifarBatch,
  type Cifar10ConfigInput,
  type Cifar10DataModule,
} from '../src/index.js';
import {
  CLASS_NAMES,
  COLORS,
  cifarEntries,
  colorOf,
  RecordingOutput,
  tempDir,
  testContainer,
  writeArchive,
} from './helpers.js';

/** Colour id of pixel (x, y) of image `id`: constant on 4×4 blocks, so 16×16 and 8×8 averages are exact palette colours. */
const blockColor = (id: number, x: number, y: number) => colorOf(id, (y >> 2) * 8 + (x >> 2));

/** Records with ids first.., label id % 10, pixels `rgb(id, x, y)`. */
function records(
  first: number,
  count: number,
  rgb: (id: number, x: number, y: number) => readonly number[],
): Uint8Array {
  const out = new Uint8Array(count * RECORD_BYTES);
  for (let r = 0; r < count; r++) {
    const id = first + r,
      base = r * RECORD_BYTES;
    out[base] = id % 10;
    for (let p = 0; p < 1024; p++) {
      const c = rgb(id, p % 32, p >> 5);
      for (let ch = 0; ch < 3; ch++) out[base + 1 + ch * 1024 + p] = c[ch]!;
    }
  }
  return out;
}

/** A CIFAR archive of 5×`perFile` training and 8 test images drawn by `rgb`. */
function entries(perFile: number, rgb: (id: number, x: number, y: number) => readonly number[]) {
  const files: Record<string, Uint8Array> = { 'test_batch.bin': records(1000, 8, rgb) };
  for (let b = 0; b < 5; b++) files[`data_batch_${b + 1}.bin`] = records(b * perFile, perFile, rgb);
  return cifarEntries(perFile, 8, files);
}

let tmp: Awaited<ReturnType<typeof tempDir>>;
let blocks: { path: string; md5: string };

beforeAll(async () => {
  tmp = await tempDir();
  const path = await writeArchive(
    join(tmp.dir, 'blocks.tar.gz'),
    entries(6, (id, x, y) => COLORS[blockColor(id, x, y)]!),
  );
  blocks = {
    path,
    md5: createHash('md5')
      .update(await readFile(path))
      .digest('hex'),
  };
});

afterAll(async () => {
  await tmp.cleanup();
});

function make(
  dataDir: string,
  overrides: Partial<Cifar10ConfigInput> = {},
  output = new RecordingOutput(),
): Cifar10DataModule {
  const config = cifar10Schema.parse({
    url: blocks.path,
    md5: blocks.md5,
    data_dir: join(tmp.dir, dataDir),
    val_size: 6,
    batch_size: 4,
    palette_size: 4,
    palette_sample_pixels: 2000,
    palette_iterations: 5,
    shuffle: false,
    ...overrides,
  });
  return cifar10Spec.create(config, {
    container: testContainer({ projectRoot: tmp.dir, cacheDir: join(tmp.dir, 'unused') }, output),
  }) as Cifar10DataModule;
}

async function collect(it: AsyncIterable<CifarBatch>): Promise<CifarBatch[]> {
  const out: CifarBatch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

/** Interleaved RGB of image `id` at `size`×`size`: pixel (x, y) covers source pixel (x·f, y·f) of a uniform block. */
function expectedRgb(id: number, size: number): number[] {
  const f = 32 / size;
  return Array.from({ length: size * size }, (_, p) => [
    ...COLORS[blockColor(id, (p % size) * f, Math.floor(p / size) * f)]!,
  ]).flat();
}

describe('dataset.image_size', () => {
  it.each([16, 8])('at %i serves size²-token images that dequantise to the block averages', async (size) => {
    const dm = make(`cache-${size}`, { image_size: size });
    await dm.setup('fit');
    await dm.setup('test');
    const args = dm.modelDataArgs;
    expect(args).toMatchObject({
      num_vocab: 4,
      num_positions: size * size,
      num_classes: 10,
      image_height: size,
      image_width: size,
      class_names: CLASS_NAMES,
    });
    expect([...args.palette].sort()).toEqual(COLORS.map((c) => [...c]).sort());
    expect([dm.numBatches('train'), dm.numBatches('val'), dm.numBatches('test')]).toEqual([6, 2, 2]);
    for (const [batches, idOf, count] of [
      [await collect(dm.trainDataloader({ epoch: 0, seed: 1 })), (i: number) => i, 6],
      [await collect(dm.testDataloader({ epoch: 0, seed: 1 })), (i: number) => 1000 + i, 2],
    ] as const) {
      expect(batches).toHaveLength(count);
      expect(batches.reduce((n, b) => n + b.size, 0)).toBe(count === 6 ? 24 : 8);
      for (const b of batches) {
        expect(b.tokens).toBeInstanceOf(Int32Array);
        expect(b.tokens.length).toBe(b.size * size * size);
        for (let j = 0; j < b.size; j++) {
          const id = idOf(b.indices[j]!);
          expect(b.labels[j]).toBe(id % 10);
          expect(
            Array.from(dequantize(b.tokens.subarray(j * size * size, (j + 1) * size * size), args.palette)),
          ).toEqual(expectedRgb(id, size));
        }
      }
    }
  });

  it('fits the palette on the downsampled pixels, not the 32×32 ones', async () => {
    // Rows alternate between two colours, so every 16×16 pixel is their mean, a colour absent at 32×32.
    const pair = (id: number) => (id % 2 === 0 ? [0, 1] : [2, 3]);
    const path = await writeArchive(
      join(tmp.dir, 'stripes.tar.gz'),
      entries(2, (id, _x, y) => COLORS[pair(id)[y & 1]!]!),
    );
    const dm = make('cache-stripes', {
      url: path,
      md5: null,
      val_size: 2,
      palette_size: 2,
      palette_sample_pixels: 500,
      image_size: 16,
    });
    await dm.setup('fit');
    // (250,10,10)+(10,250,10) → (130,130,10); (10,10,250)+(240,240,240) → (125,125,245).
    expect([...dm.modelDataArgs.palette].sort()).toEqual([
      [125, 125, 245],
      [130, 130, 10],
    ]);
    const [batch] = await collect(dm.trainDataloader({ epoch: 0, seed: 0 }));
    const rgb = dequantize(batch!.tokens.subarray(0, 256), dm.modelDataArgs.palette);
    expect(Array.from(rgb.subarray(0, 3))).toEqual(
      pair(batch!.indices[0]!)[0] === 0 ? [130, 130, 10] : [125, 125, 245],
    );
  });

  it('augments at 16×16 with padding 2, in bounds, and only the training split', async () => {
    const plain = make('cache-16', { image_size: 16 });
    const aug = make('cache-16', { image_size: 16, augment: true });
    for (const dm of [plain, aug]) await dm.setup('fit');
    const [p, a] = [
      await collect(plain.trainDataloader({ epoch: 2, seed: 9 })),
      await collect(aug.trainDataloader({ epoch: 2, seed: 9 })),
    ];
    let changed = 0;
    for (let b = 0; b < p.length; b++) {
      expect(a[b]!.tokens.length).toBe(a[b]!.size * 256);
      for (let j = 0; j < p[b]!.size; j++) {
        const expected = new Int32Array(256);
        augmentGrid(p[b]!.tokens, j * 256, expected, 0, augmentParams(9, 2, p[b]!.indices[j]!, augmentPad(16)), 16, 2);
        const got = a[b]!.tokens.subarray(j * 256, (j + 1) * 256);
        expect(got).toEqual(expected);
        expect(got.every((t) => t >= 0 && t < 4)).toBe(true);
        if (got.some((t, i) => t !== p[b]!.tokens[j * 256 + i])) changed++;
      }
    }
    expect(changed).toBeGreaterThan(12);
    expect(await collect(aug.valDataloader({ epoch: 2, seed: 9 }))).toEqual(
      await collect(plain.valDataloader({ epoch: 2, seed: 9 })),
    );
  });

  it('keeps separate palette and token caches per size in one data_dir, all reusable', async () => {
    await make('shared').setup('fit');
    await make('shared', { image_size: 16 }).setup('fit');
    const dir = join(tmp.dir, 'shared');
    const tokens = (await readdir(join(dir, 'tokens'))).sort();
    expect(tokens).toHaveLength(4);
    expect(tokens.filter((f) => f.includes('-16x16-'))).toHaveLength(2);
    expect((await readdir(join(dir, 'palettes'))).filter((f) => f.includes('-16x16-'))).toHaveLength(1);
    for (const size of [32, 16]) {
      const out = new RecordingOutput();
      const dm = make('shared', { image_size: size }, out);
      await dm.setup('fit');
      await dm.setup('test');
      expect(out.bars, `size ${size} recomputed something`).toEqual([]);
      expect(dm.modelDataArgs.num_positions).toBe(size * size);
      const [batch] = await collect(dm.testDataloader({ epoch: 0, seed: 0 }));
      expect(Array.from(dequantize(batch!.tokens.subarray(0, size * size), dm.modelDataArgs.palette))).toEqual(
        expectedRgb(1000, size),
      );
    }
  });

  it('rejects a size that is not 32, 16, 8 or 4 as a ConfigError naming dataset.image_size', () => {
    const registry = new ComponentRegistry();
    registry.register(cifar10Spec);
    const err = (() => {
      try {
        validateConfig({ dataset: { _target_: 'datamodule/cifar10', image_size: 12 } }, registry);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([expect.objectContaining({ path: 'dataset.image_size', value: 12 })]);
    expect((err as Error).message).toMatch(/dataset\.image_size: must be one of 32, 16, 8, 4 .*\(got 12\)/);
    for (const bad of [64, 2, 1, 0, 16.5, '16'])
      expect(cifar10Schema.safeParse({ image_size: bad }).success, String(bad)).toBe(false);
    for (const good of [32, 16, 8, 4]) expect(cifar10Schema.parse({ image_size: good }).image_size).toBe(good);
    expect(cifar10Schema.parse({}).image_size).toBe(32);
  });
});
