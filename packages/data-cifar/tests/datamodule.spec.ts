import { createHash } from 'node:crypto';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '@taskforge/core';
import {
  augmentGrid,
  augmentParams,
  cifar10Schema,
  cifar10Spec,
  dequantize,
  plugin,
  type CifarBatch,
  type Cifar10Config,
  type Cifar10ConfigInput,
  type Cifar10DataModule,
} from '../src/index.js';
import {
  CLASS_NAMES,
  COLORS,
  cifarEntries,
  colorOf,
  RecordingOutput,
  tarGz,
  tempDir,
  testContainer,
} from './helpers.js';

const archive = tarGz(cifarEntries(6, 8)); // 30 training images, 8 test images
const md5 = createHash('md5').update(archive).digest('hex');
let server: Server;
let url: string;
let requests = 0;
let tmp: Awaited<ReturnType<typeof tempDir>>;

beforeAll(async () => {
  tmp = await tempDir();
  server = createServer((_req, res) => {
    requests++;
    res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': archive.length }).end(archive);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/cifar-10-binary.tar.gz`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  await tmp.cleanup();
});

/** A data module on the shared prepared cache (the first test downloads into it). */
function make(
  overrides: Partial<Cifar10ConfigInput> = {},
  output = new RecordingOutput(),
  unchecked: Partial<Cifar10Config> = {},
): Cifar10DataModule {
  const config = {
    ...cifar10Schema.parse({
      url,
      md5,
      data_dir: join(tmp.dir, 'cache'),
      val_size: 6,
      batch_size: 4,
      palette_size: 4,
      palette_sample_pixels: 2000,
      palette_iterations: 5,
      ...overrides,
    }),
    ...unchecked,
  } as Cifar10Config;
  const container = testContainer({ projectRoot: tmp.dir, cacheDir: join(tmp.dir, 'unused') }, output);
  return cifar10Spec.create(config, { container }) as Cifar10DataModule;
}

async function collect(it: AsyncIterable<CifarBatch>): Promise<CifarBatch[]> {
  const out: CifarBatch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

/** Interleaved RGB of test image `id` as built by the helpers. */
function expectedRgb(id: number): number[] {
  return Array.from({ length: 1024 }, (_, p) => [...COLORS[colorOf(id, p)]!]).flat();
}

describe('Cifar10DataModule', () => {
  it('downloads, verifies, extracts and caches; a second run makes no request and recomputes nothing', async () => {
    const out1 = new RecordingOutput();
    const dm = make({}, out1);
    await dm.setup('fit');
    expect(requests).toBe(1);
    const download = out1.bars.find((b) => b.unit === 'bytes' && b.label.includes(url));
    expect(download).toMatchObject({ total: archive.length, last: archive.length, stopped: true });
    expect(out1.bars.some((b) => b.label.includes('palette'))).toBe(true);
    expect(out1.bars.filter((b) => b.label.includes('tokenising')).map((b) => b.last)).toEqual([30, 8]);
    const marker = JSON.parse(await readFile(join(dm.dataDir, 'extracted.json'), 'utf8'));
    expect(marker.archive_md5).toBe(md5);
    const args = dm.modelDataArgs;
    expect(args).toMatchObject({
      num_vocab: 4,
      num_positions: 1024,
      num_classes: 10,
      image_height: 32,
      image_width: 32,
      class_names: CLASS_NAMES,
    });
    expect([...args.palette].sort()).toEqual(COLORS.map((c) => [...c]).sort());

    const batchDirMtime = (await stat(join(dm.dataDir, 'cifar-10-batches-bin'))).mtimeMs;
    const out2 = new RecordingOutput();
    const again = make({}, out2);
    await again.setup('fit');
    await again.setup('test');
    expect(requests).toBe(1);
    expect(out2.bars).toEqual([]);
    expect((await stat(join(again.dataDir, 'cifar-10-batches-bin'))).mtimeMs).toBe(batchDirMtime);
    expect(again.modelDataArgs.palette).toEqual(args.palette);
    expect((await readdir(again.dataDir)).sort()).toEqual([
      'cifar-10-batches-bin',
      'cifar-10-binary.tar.gz',
      'extracted.json',
      'palettes',
      'tokens',
    ]);
  });

  it('yields batches of tokens that dequantise to the original images, with labels and indices', async () => {
    const dm = make({ shuffle: false });
    await dm.setup('fit');
    await dm.setup('test');
    expect([dm.numBatches('train'), dm.numBatches('val'), dm.numBatches('test')]).toEqual([6, 2, 2]);
    const { palette } = dm.modelDataArgs;
    for (const [split, batches, idOf] of [
      ['train', await collect(dm.trainDataloader({ epoch: 0, seed: 1 })), (i: number) => i],
      ['val', await collect(dm.valDataloader({ epoch: 0, seed: 1 })), (i: number) => i],
      ['test', await collect(dm.testDataloader({ epoch: 0, seed: 1 })), (i: number) => 1000 + i],
    ] as const) {
      expect(
        batches.map((b) => b.size),
        split,
      ).toEqual(split === 'train' ? [4, 4, 4, 4, 4, 4] : split === 'val' ? [4, 2] : [4, 4]);
      for (const b of batches) {
        expect(b.tokens).toBeInstanceOf(Int32Array);
        expect(b.tokens.length).toBe(b.size * 1024);
        for (let j = 0; j < b.size; j++) {
          const id = idOf(b.indices[j]!);
          expect(b.labels[j]).toBe(id % 10);
          expect(Array.from(dequantize(b.tokens.subarray(j * 1024, (j + 1) * 1024), palette))).toEqual(expectedRgb(id));
        }
      }
    }
  });

  it('splits 30 training images into disjoint train/val sets, deterministically per split_seed', async () => {
    const ids = async (dm: Cifar10DataModule, split: 'train' | 'val') =>
      (
        await collect(
          split === 'train' ? dm.trainDataloader({ epoch: 0, seed: 0 }) : dm.valDataloader({ epoch: 0, seed: 0 }),
        )
      ).flatMap((b) => Array.from(b.indices));
    const a = make({ shuffle: false });
    await a.setup('fit');
    const train = await ids(a, 'train'),
      val = await ids(a, 'val');
    expect(train).toHaveLength(24);
    expect(val).toHaveLength(6);
    expect([...train, ...val].sort((x, y) => x - y)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    const b = make({ shuffle: false });
    await b.setup('fit');
    expect(await ids(b, 'val')).toEqual(val);
    const c = make({ shuffle: false, split_seed: 7 });
    await c.setup('fit');
    expect(await ids(c, 'val')).not.toEqual(val);
  });

  it('shuffles per epoch from (seed, epoch), resumes at startBatch, and honours drop_last and limits', async () => {
    const dm = make();
    await dm.setup('fit');
    const order = async (epoch: number, seed = 3, startBatch?: number) =>
      (await collect(dm.trainDataloader({ epoch, seed, startBatch }))).flatMap((b) => Array.from(b.indices));
    const e0 = await order(0),
      e1 = await order(1);
    expect(await order(0)).toEqual(e0);
    expect(e1).not.toEqual(e0);
    expect([...e1].sort()).toEqual([...e0].sort());
    expect(await order(0, 4)).not.toEqual(e0);
    expect(await order(1, 3, 2)).toEqual(e1.slice(8));

    const dropped = make({ batch_size: 5, drop_last: true });
    await dropped.setup('fit');
    expect(dropped.numBatches('train')).toBe(4);
    expect((await collect(dropped.trainDataloader({ epoch: 0, seed: 0 }))).map((b) => b.size)).toEqual([5, 5, 5, 5]);
    expect(dropped.numBatches('val')).toBe(2);

    const limited = make({ limit_train_samples: 5, limit_val_samples: 3, limit_test_samples: 1 });
    await limited.setup('fit');
    await limited.setup('test');
    expect([limited.numBatches('train'), limited.numBatches('val'), limited.numBatches('test')]).toEqual([2, 1, 1]);
    expect((await collect(limited.testDataloader({ epoch: 0, seed: 0 })))[0]!.size).toBe(1);
  });

  it('augments training batches only, as a pure function of (seed, epoch, index)', async () => {
    const plain = make({ shuffle: false });
    const aug = make({ shuffle: false, augment: true });
    for (const dm of [plain, aug]) {
      await dm.setup('fit');
      await dm.setup('test');
    }
    const [p, a] = [
      await collect(plain.trainDataloader({ epoch: 2, seed: 9 })),
      await collect(aug.trainDataloader({ epoch: 2, seed: 9 })),
    ];
    let changed = 0;
    for (let b = 0; b < p.length; b++) {
      for (let j = 0; j < p[b]!.size; j++) {
        const expected = new Int32Array(1024);
        augmentGrid(p[b]!.tokens, j * 1024, expected, 0, augmentParams(9, 2, p[b]!.indices[j]!));
        const got = a[b]!.tokens.subarray(j * 1024, (j + 1) * 1024);
        expect(got).toEqual(expected);
        if (got.some((t, i) => t !== p[b]!.tokens[j * 1024 + i])) changed++;
      }
    }
    expect(changed).toBeGreaterThan(12);
    expect(await collect(aug.valDataloader({ epoch: 2, seed: 9 }))).toEqual(
      await collect(plain.valDataloader({ epoch: 2, seed: 9 })),
    );
    expect(await collect(aug.testDataloader({ epoch: 2, seed: 9 }))).toEqual(
      await collect(plain.testDataloader({ epoch: 2, seed: 9 })),
    );
  });

  it('caches a new palette per parameter set without downloading again', async () => {
    const out = new RecordingOutput();
    const dm = make({ palette_size: 3, palette_seed: 1 }, out);
    await dm.setup('fit');
    expect(dm.modelDataArgs.num_vocab).toBe(3);
    expect(out.bars.map((b) => b.label.split(' (')[0])).toEqual([
      'cifar10: fitting a 3-colour palette',
      'cifar10: tokenising train images',
      'cifar10: tokenising test images',
    ]);
    expect(requests).toBe(1);
  });

  it('reports config mistakes found only once the data is known', async () => {
    await expect(make({ val_size: 30 }).setup('fit')).rejects.toThrow(ConfigError);
    await expect(make({ val_size: 30 }).setup('fit')).rejects.toThrow(
      /dataset\.val_size: must be smaller than the 30 training images/,
    );
    await expect(make({ batch_size: 25, drop_last: true }).setup('fit')).rejects.toThrow(
      /dataset\.batch_size: exceeds the 24 training images/,
    );
    expect(() => make().modelDataArgs).toThrow(/before prepareData\(\)\/setup\(\)/);
    expect(() => cifar10Schema.parse({ palette_size: 64, palette_sample_pixels: 10 })).toThrow(
      /palette_sample_pixels|must be at least palette_size/,
    );
    expect(() => cifar10Schema.parse({ md5: 'abc' })).toThrow(/32 hex digits/);
    expect(() => cifar10Schema.parse({ bogus: 1 })).toThrow(/bogus/);
  });

  it('re-extracts from the verified cached archive, without downloading, when the marker is missing', async () => {
    const dm = make();
    await rm(join(dm.dataDir, 'extracted.json'));
    await rm(join(dm.dataDir, 'cifar-10-batches-bin', 'data_batch_2.bin'));
    const out = new RecordingOutput();
    const again = make({}, out);
    await again.setup('fit');
    expect(requests).toBe(1);
    expect(out.bars.map((b) => b.label)).toEqual(['cifar10: verifying cached cifar-10-binary.tar.gz']);
    expect((await stat(join(again.dataDir, 'cifar-10-batches-bin', 'data_batch_2.bin'))).size).toBe(6 * 3073);
  });

  it('keeps a good cache when a run names a source that does not exist', async () => {
    const missing = join(tmp.dir, 'no-such-archive.tar.gz');
    // Config validation refuses it first (before any run dir); the data module checks again for programmatic use.
    expect(() => make({ url: missing })).toThrow(/the path does not exist \(.*no-such-archive\.tar\.gz\)/);
    const wrong = make({ md5: 'f'.repeat(32) }, new RecordingOutput(), { url: missing });
    await expect(wrong.prepareData()).rejects.toThrow(/does not exist/);
    const out = new RecordingOutput();
    const right = make({}, out);
    await right.prepareData();
    expect(out.bars).toEqual([]); // nothing verified, downloaded or extracted again
    expect(requests).toBe(1);
  });

  it('registers datamodule/cifar10 through the plugin', () => {
    const specs: unknown[] = [];
    plugin.register({ register: (s) => void specs.push(s) });
    expect(plugin.packageName).toBe('@taskforge/data-cifar');
    expect(specs).toEqual([cifar10Spec]);
    expect(cifar10Spec).toMatchObject({ kind: 'datamodule', name: 'cifar10' });
  });
});
