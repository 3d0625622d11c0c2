import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { paletteKey, readTokenStore, writeTokenStore, type PaletteParams } from './store.js';

const params: PaletteParams = {
  archive_md5: 'c32a1d4ab5d03f1284b67883e8d87530',
  palette_size: 16,
  palette_sample_pixels: 200_000,
  palette_batch_size: 2048,
  palette_iterations: 100,
  palette_seed: 0,
};

describe('cache keys and token stores', () => {
  it('keeps the 32×32 key of caches written before image_size existed, and keys other sizes apart', () => {
    // The key the package produced before image_size was added, for the default config.
    expect(paletteKey(params)).toBe('26366d2ef0e11182');
    expect(paletteKey({ ...params, image_size: 32 })).toBe('26366d2ef0e11182');
    const keys = [16, 8, 4].map((image_size) => paletteKey({ ...params, image_size }));
    expect(new Set([...keys, '26366d2ef0e11182']).size).toBe(4);
  });

  it('reads a store back only at the image size it was written for', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'taskforge-store-'));
    try {
      const file = join(dir, 'tokens.bin');
      const tokens = Uint8Array.from({ length: 3 * 256 }, (_, i) => i % 7);
      await writeTokenStore(file, { count: 3, labels: Uint8Array.from([1, 2, 9]), tokens });
      const back = await readTokenStore(file, 16, 256);
      expect(back?.count).toBe(3);
      expect(Array.from(back!.labels)).toEqual([1, 2, 9]);
      expect(back!.tokens).toEqual(tokens);
      // 3 images of 256 tokens can never be read as 1024- or 64-token images.
      expect(await readTokenStore(file, 16, 1024)).toBeUndefined();
      expect(await readTokenStore(file, 16, 64)).toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
