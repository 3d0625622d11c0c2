/**
 * The derived caches: the k-means palette (JSON) and each source split's token sequences
 * (binary). Both are keyed by everything that determines their content, archive md5 included,
 * and written atomically, so a cache file that exists is always complete and current.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { setImmediate as tick } from 'node:timers/promises';
import { mixSeed, writeFileAtomic, type Output } from '@taskforge/core';
import { IMAGE_SIZE } from './format.js';
import type { ImageSet } from './images.js';
import { miniBatchKMeans, toPalette } from './kmeans.js';
import { paletteIndex, quantizeStrided, type Palette } from './quantize.js';
import { mulberry32 } from './rng.js';

export interface PaletteParams {
  archive_md5: string;
  palette_size: number;
  palette_sample_pixels: number;
  palette_batch_size: number;
  palette_iterations: number;
  palette_seed: number;
  /** Omitted at 32, so keys (and caches) from before `image_size` existed stay valid. */
  image_size?: number;
}

/** Bump when the palette algorithm changes, so stale palettes are not reused. */
const PALETTE_VERSION = 1;

export function paletteKey(params: PaletteParams): string {
  const { image_size: size, ...rest } = params;
  const keyed = size === undefined || size === IMAGE_SIZE ? rest : params;
  const canonical = JSON.stringify({ v: PALETTE_VERSION, ...keyed }, Object.keys({ v: 0, ...keyed }).sort());
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

/** `n` training pixels drawn uniformly (with replacement) from all images, as interleaved RGB. */
function samplePixels(images: ImageSet, n: number, seed: number): Uint8Array {
  const rand = mulberry32(mixSeed(seed, 0x5a));
  const pixels = images.size * images.size;
  const total = images.count * pixels;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const q = Math.floor(rand() * total);
    const base = Math.floor(q / pixels) * images.stride + images.offset + (q % pixels);
    out[i * 3] = images.data[base]!;
    out[i * 3 + 1] = images.data[base + pixels]!;
    out[i * 3 + 2] = images.data[base + 2 * pixels]!;
  }
  return out;
}

/** Reads the cached palette for `params`, or fits one on the training images and caches it. */
export async function loadOrFitPalette(
  file: string,
  params: PaletteParams,
  images: () => Promise<ImageSet>,
  output: Output,
): Promise<number[][]> {
  const cached = await readFile(file, 'utf8').then(
    (t) => JSON.parse(t) as { key?: string; palette?: number[][] },
    () => undefined,
  );
  const key = paletteKey(params);
  if (cached?.key === key && Array.isArray(cached.palette) && cached.palette.length === params.palette_size)
    return cached.palette;
  const pixels = samplePixels(await images(), params.palette_sample_pixels, params.palette_seed);
  const bar = output.progress({
    label: `cifar10: fitting a ${params.palette_size}-colour palette (k-means)`,
    total: params.palette_iterations,
    unit: 'steps',
  });
  let palette: number[][];
  try {
    palette = toPalette(
      miniBatchKMeans(pixels, {
        k: params.palette_size,
        iterations: params.palette_iterations,
        batchSize: params.palette_batch_size,
        seed: mixSeed(params.palette_seed, 0xc3),
        onIteration: (done) => bar.update(done),
      }),
    );
  } finally {
    bar.stop();
  }
  writeFileAtomic(file, `${JSON.stringify({ key, params, palette })}\n`);
  return palette;
}

/** Token sequences and labels of one source split (the 50,000 training or 10,000 test images). */
export interface TokenStore {
  count: number;
  labels: Uint8Array;
  /** count×image_size² raster-order tokens; 1 byte each when the palette has ≤ 256 colours. */
  tokens: Uint8Array | Uint16Array;
}

/** Quantises every image, yielding to the event loop between chunks so progress can redraw. */
export async function tokenize(images: ImageSet, palette: Palette, output: Output, label: string): Promise<TokenStore> {
  const index = paletteIndex(palette);
  const pixels = images.size * images.size;
  const tokens = palette.length <= 256 ? new Uint8Array(images.count * pixels) : new Uint16Array(images.count * pixels);
  const bar = output.progress({ label, total: images.count, unit: 'items' });
  try {
    const chunk = 500;
    for (let start = 0; start < images.count; start += chunk) {
      const end = Math.min(images.count, start + chunk);
      for (let i = start; i < end; i++) {
        const base = images.offset + i * images.stride;
        quantizeStrided(images.data, pixels, base, base + pixels, base + 2 * pixels, 1, index, tokens, i * pixels);
      }
      bar.update(end);
      await tick();
    }
  } finally {
    bar.stop();
  }
  return { count: images.count, labels: images.labels.slice(), tokens };
}

const MAGIC = 0x54434654; // "TFCT"
const HEADER = 16;

export async function writeTokenStore(file: string, store: TokenStore): Promise<void> {
  const bpt = store.tokens.BYTES_PER_ELEMENT;
  const out = new Uint8Array(HEADER + store.tokens.byteLength + store.count);
  new Uint32Array(out.buffer, 0, 4).set([MAGIC, 1, store.count, bpt]);
  out.set(new Uint8Array(store.tokens.buffer, store.tokens.byteOffset, store.tokens.byteLength), HEADER);
  out.set(store.labels, HEADER + store.tokens.byteLength);
  writeFileAtomic(file, out);
}

/**
 * The cached store of images with `pixels` tokens each, or undefined when absent or not of the
 * expected shape (it is then rebuilt). The header's count fixes the expected length, so a store
 * of another image size can never pass.
 */
export async function readTokenStore(
  file: string,
  paletteSize: number,
  pixels: number,
): Promise<TokenStore | undefined> {
  const buf = await readFile(file).catch(() => undefined);
  if (!buf || buf.length < HEADER) return undefined;
  // Copy into a fresh, aligned buffer so typed views of any element size are valid.
  const bytes = new Uint8Array(buf);
  const [magic, version, count, bpt] = new Uint32Array(bytes.buffer, 0, 4);
  const wantBpt = paletteSize <= 256 ? 1 : 2;
  if (magic !== MAGIC || version !== 1 || bpt !== wantBpt || bytes.length !== HEADER + count! * (pixels * bpt + 1))
    return undefined;
  const tokenBytes = count! * pixels * bpt;
  const tokens =
    bpt === 1 ? bytes.subarray(HEADER, HEADER + tokenBytes) : new Uint16Array(bytes.buffer, HEADER, count! * pixels);
  const labels = bytes.subarray(HEADER + tokenBytes);
  if (labels.some((l) => l > 9)) return undefined;
  return { count: count!, labels, tokens };
}
