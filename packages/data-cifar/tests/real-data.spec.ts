/**
 * Real CIFAR-10, built from the shared JPEG copy into the gitignored `.data/` (reused when
 * present). Skipped, not faked, on machines without `../shared/datasets` beside the repo.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cifar10Schema, Cifar10DataModule, downsample, imageToRgb, quantize, readBatches } from '../src/index.js';
import { RecordingOutput } from './helpers.js';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../../../..');
const shared = resolve(repoRoot, '../shared/datasets');
const available = existsSync(join(shared, 'build-cifar10.sh'));
const BUILT_MD5 = '767e5566dd24ed2636f7f84a767e4098';
if (!available) console.warn(`[data-cifar] real-data test skipped: ${shared} (the shared CIFAR-10 copy) is not present on this machine.`);

function counts(labels: Uint8Array): number[] {
  const c = new Array<number>(10).fill(0);
  for (const l of labels) c[l]!++;
  return c;
}

describe('real CIFAR-10', () => {
  it.skipIf(!available)(`has 50,000 / 10,000 images, 5,000 / 1,000 per class, and loads through the data module (needs ${shared})`, async () => {
    const outDir = join(repoRoot, '.data', 'cifar10');
    execFileSync('bash', [join(shared, 'build-cifar10.sh'), outDir], { stdio: 'pipe' });
    const output = new RecordingOutput();
    const dm = new Cifar10DataModule(
      cifar10Schema.parse({
        url: join(outDir, 'cifar-10-binary.tar.gz'), md5: BUILT_MD5, data_dir: join(outDir, 'cache'),
        palette_size: 16, palette_sample_pixels: 20_000, palette_iterations: 20, batch_size: 64,
      }),
      { projectRoot: repoRoot, cacheDir: join(outDir, 'unused') }, output,
    );
    await dm.setup('fit');
    await dm.setup('test');
    const batchDir = join(dm.dataDir, 'cifar-10-batches-bin');
    const train = await readBatches(batchDir, [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`));
    const test = await readBatches(batchDir, ['test_batch.bin']);
    expect(train.count).toBe(50_000);
    expect(test.count).toBe(10_000);
    expect(counts(train.labels)).toEqual(new Array(10).fill(5000));
    expect(counts(test.labels)).toEqual(new Array(10).fill(1000));
    expect(dm.modelDataArgs.class_names).toEqual(['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']);
    expect([dm.numBatches('train'), dm.numBatches('val'), dm.numBatches('test')]).toEqual([Math.ceil(45_000 / 64), Math.ceil(5000 / 64), Math.ceil(10_000 / 64)]);
    for await (const batch of dm.valDataloader({ epoch: 0, seed: 0 })) {
      expect(batch.size).toBe(64);
      expect(batch.tokens.every((t) => t >= 0 && t < 16)).toBe(true);
      break;
    }
  });

  it.skipIf(!available)(`serves 8×8 images whose tokens quantise the 4×4 block averages (needs ${shared})`, async () => {
    const outDir = join(repoRoot, '.data', 'cifar10');
    execFileSync('bash', [join(shared, 'build-cifar10.sh'), outDir], { stdio: 'pipe' });
    const dm = new Cifar10DataModule(
      cifar10Schema.parse({
        url: join(outDir, 'cifar-10-binary.tar.gz'), md5: BUILT_MD5, data_dir: join(outDir, 'cache'), image_size: 8,
        palette_size: 16, palette_sample_pixels: 20_000, palette_iterations: 20, batch_size: 32, limit_test_samples: 32,
      }),
      { projectRoot: repoRoot, cacheDir: join(outDir, 'unused') }, new RecordingOutput(),
    );
    await dm.setup('test');
    const { palette, ...args } = dm.modelDataArgs;
    expect(args).toMatchObject({ num_positions: 64, image_height: 8, image_width: 8 });
    const raw = await readBatches(join(dm.dataDir, 'cifar-10-batches-bin'), ['test_batch.bin']);
    // Independently of downsample(): red of pixel (1, 0) is the rounded mean of columns 4..7, rows 0..3.
    let sum = 0;
    for (let y = 0; y < 4; y++) for (let x = 4; x < 8; x++) sum += raw.data[1 + y * 32 + x]!;
    const small = downsample(raw, 8);
    expect(imageToRgb(small, 0)[3]).toBe(Math.floor(sum / 16 + 0.5));
    for await (const batch of dm.testDataloader({ epoch: 0, seed: 0 })) {
      expect(batch.tokens.length).toBe(32 * 64);
      for (let j = 0; j < batch.size; j++) expect(batch.tokens.subarray(j * 64, (j + 1) * 64)).toEqual(quantize(imageToRgb(small, j), palette));
    }
  });
});
