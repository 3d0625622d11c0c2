import { readFile, rm, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import {
  ConfigError,
  mixSeed,
  TaskforgeError,
  writeFileAtomic,
  type DataLoaderOptions,
  type DataModule,
  type ModelDataArgs,
  type Output,
  type Paths,
  type SequenceDataArgs,
  type Split,
  type Stage,
} from '@taskforge/core';
import { download, extractArchive, md5File, md5Mismatch, resolveSource } from './archive.js';
import { augmentGrid, augmentPad, augmentParams } from './augment.js';
import type { Cifar10Config } from './config.js';
import {
  ALL_FILES,
  BATCH_DIR,
  IMAGE_SIZE,
  META_FILE,
  NUM_CLASSES,
  TEST_FILE,
  TRAIN_FILES,
  parseBatch,
  parseMeta,
  readBatches,
  readMeta,
} from './format.js';
import { ensureWritableDir, removeStaleTemps } from './fsutil.js';
import { downsample, type ImageSet } from './images.js';
import { prefetch } from './prefetch.js';
import { permutation } from './rng.js';
import {
  loadOrFitPalette,
  paletteKey,
  readTokenStore,
  tokenize,
  writeTokenStore,
  type PaletteParams,
  type TokenStore,
} from './store.js';

/** One batch: plain typed arrays, turned into tensors by the task. */
export interface CifarBatch {
  /** size×image_size² palette tokens, raster order. */
  tokens: Int32Array;
  /** Class ids 0..9. */
  labels: Int32Array;
  size: number;
  /** Index of each image in its source file set (training 0..49999 for train/val, test 0..9999). */
  indices: Int32Array;
}

/**
 * Core's `SequenceDataArgs` (`num_vocab`: palette size, `num_positions`: image_height × image_width,
 * `num_classes`: 10) plus the image facts. A type alias, not an interface, so it fits
 * `ModelDataArgs`' index signature.
 */
export type Cifar10ModelDataArgs = SequenceDataArgs & {
  num_classes: number;
  image_height: number;
  image_width: number;
  palette: number[][];
  class_names: string[];
};

const MARKER = 'extracted.json';
const ARCHIVE = 'cifar-10-binary.tar.gz';

interface Marker {
  archive_md5: string;
  url: string;
  files: string[];
}

interface SplitView {
  store: TokenStore;
  /** Positions in `store`, in the split's canonical (unshuffled) order. */
  indices: Int32Array;
}

export class Cifar10DataModule implements DataModule<CifarBatch> {
  readonly dataDir: string;
  /** Tokens per image: image_size². */
  private readonly pixels: number;
  private prepared?: Promise<void>;
  private archiveMd5?: string;
  private palette?: number[][];
  private classNames?: string[];
  private splits: Partial<Record<'train' | 'val' | 'test', SplitView>> = {};
  /** Token stores read or built by prepareData, kept so setup does not read them again. */
  private stores: Partial<Record<'train' | 'test', TokenStore>> = {};

  constructor(
    readonly config: Cifar10Config,
    private readonly paths: Paths,
    private readonly output: Output,
  ) {
    const dir = config.data_dir ?? join(paths.cacheDir, 'datasets', 'cifar10');
    this.dataDir = isAbsolute(dir) ? dir : resolve(paths.projectRoot, dir);
    this.pixels = config.image_size * config.image_size;
  }

  /**
   * Download, verify, extract, fit the palette and tokenise both source splits; cached in `data_dir`.
   * @throws ConfigError (exit 2) for a `dataset.url` with another URL scheme than http(s)/file;
   *   TaskforgeError (exit 1) for a failed or interrupted download, an md5 mismatch or a corrupt
   *   archive, each naming the file and what to do.
   */
  prepareData(): Promise<void> {
    this.prepared ??= this.prepare().catch((err: unknown) => {
      this.prepared = undefined; // a fixed config or network can retry in the same process
      throw err;
    });
    return this.prepared;
  }

  private async prepare(): Promise<void> {
    await ensureWritableDir(this.dataDir);
    // Temp dirs/files of a run that was killed (SIGKILL) are collected here, even when the cache is complete.
    await removeStaleTemps(this.dataDir, this.output);
    const batchDir = join(this.dataDir, BATCH_DIR);
    this.archiveMd5 = await this.ensureExtracted(batchDir);
    this.classNames = await readMeta(batchDir);
    const size = this.config.image_size;
    const images = async (files: readonly string[]) => downsample(await readBatches(batchDir, files), size);
    let train: Promise<ImageSet> | undefined;
    const trainImages = () => (train ??= images(TRAIN_FILES));
    this.palette = await loadOrFitPalette(this.paletteFile(), this.paletteParams(), trainImages, this.output);
    const at = size === IMAGE_SIZE ? '' : ` at ${size}×${size}`;
    for (const [name, files] of [
      ['train', TRAIN_FILES],
      ['test', [TEST_FILE]],
    ] as const) {
      const file = this.tokenFile(name);
      const cached = await readTokenStore(file, this.config.palette_size, this.pixels);
      if (cached) {
        this.stores[name] = cached;
        continue;
      }
      const set = name === 'train' ? await trainImages() : await images(files);
      const store = await tokenize(set, this.palette, this.output, `cifar10: tokenising ${name} images${at}`);
      await writeTokenStore(file, store);
      this.stores[name] = store;
    }
  }

  /** Ensures the batch files are extracted and returns the archive's md5. */
  private async ensureExtracted(batchDir: string): Promise<string> {
    const { url, md5 } = this.config;
    const markerFile = join(this.dataDir, MARKER);
    const marker = await readFile(markerFile, 'utf8').then(
      (t) => JSON.parse(t) as Marker,
      () => undefined,
    );
    const markerOk =
      marker &&
      (md5 === null ? marker.url === url : marker.archive_md5 === md5) &&
      (await stat(batchDir).then(
        (s) => s.isDirectory(),
        () => false,
      ));
    if (markerOk) return marker.archive_md5;

    const source = resolveSource(url, this.paths.projectRoot);
    let archive: string;
    let actual: string;
    let fix: string;
    if (source.kind === 'file') {
      archive = source.path;
      if (
        !(await stat(archive).then(
          (s) => s.isFile(),
          () => false,
        ))
      ) {
        throw new TaskforgeError(
          `dataset.url points to ${archive}, which does not exist or is not a file. Set ` +
            `dataset.url to the path of cifar-10-binary.tar.gz, or to an http(s):// URL.`,
        );
      }
      actual = await md5File(archive, this.output, `cifar10: verifying ${archive}`);
      if (md5 !== null && actual !== md5) throw md5Mismatch(archive, md5, actual, 'Nothing was copied into the cache.');
      fix = `Replace ${archive} with a good copy of cifar-10-binary.tar.gz, or point dataset.url elsewhere.`;
    } else {
      archive = join(this.dataDir, ARCHIVE);
      // A cached archive is reused only when it can be verified; with md5 null it may be from an old url.
      const cached =
        md5 !== null &&
        (await stat(archive).then(
          (s) => s.isFile(),
          () => false,
        ));
      actual = cached ? await md5File(archive, this.output, `cifar10: verifying cached ${ARCHIVE}`) : '';
      if (!cached || actual !== md5) {
        await rm(archive, { force: true });
        actual = await download(source.url, archive, md5, this.output);
      }
      fix = `The cached copy ${archive} was deleted; check dataset.url and run again.`;
    }
    if (md5 === null)
      this.output.warn(`cifar10: dataset.md5 is null, so ${url} was not verified (its md5 is ${actual}).`);

    const validate = async (dir: string) => {
      for (const f of ALL_FILES) {
        if (
          !(await stat(join(dir, f)).then(
            (s) => s.isFile(),
            () => false,
          ))
        )
          missing(f, archive, fix);
      }
      for (const f of [...TRAIN_FILES, TEST_FILE])
        parseBatch(await readFile(join(dir, f)), `${BATCH_DIR}/${f} in ${archive}`);
      parseMeta(await readFile(join(dir, META_FILE), 'utf8'), `${BATCH_DIR}/${META_FILE} in ${archive}`);
    };
    // Invalidated only now that the new source is verified, so a mistyped dataset.url leaves a good
    // cache usable; and before extracting, so no marker vouches for a half-replaced directory.
    await rm(markerFile, { force: true });
    try {
      await extractArchive(archive, BATCH_DIR, batchDir, validate, fix);
    } catch (err) {
      if (source.kind === 'http') await rm(archive, { force: true });
      throw err;
    }
    writeFileAtomic(markerFile, `${JSON.stringify({ archive_md5: actual, url, files: ALL_FILES } satisfies Marker)}\n`);
    return actual;
  }

  /**
   * Loads the splits `stage` uses (fit/validate: train and val; test/predict: test).
   * @throws ConfigError (exit 2) when `dataset.val_size` leaves no training image, or with
   *   `drop_last` the training split is smaller than `dataset.batch_size`; and as `prepareData`.
   */
  async setup(stage: Stage): Promise<void> {
    await this.prepareData();
    if (stage === 'fit' || stage === 'validate') {
      const store = await this.loadStore('train');
      const { val_size: valSize, split_seed: splitSeed } = this.config;
      if (valSize >= store.count) {
        throw new ConfigError([
          {
            path: 'dataset.val_size',
            value: valSize,
            message: `must be smaller than the ${store.count} training images so that some remain for training`,
          },
        ]);
      }
      const perm = permutation(store.count, mixSeed(splitSeed, 0x59));
      this.splits.val = { store, indices: limit(perm.subarray(0, valSize), this.config.limit_val_samples) };
      this.splits.train = { store, indices: limit(perm.subarray(valSize), this.config.limit_train_samples) };
      if (stage === 'fit' && this.config.drop_last && this.splits.train.indices.length < this.config.batch_size) {
        throw new ConfigError([
          {
            path: 'dataset.batch_size',
            value: this.config.batch_size,
            message:
              `exceeds the ${this.splits.train.indices.length} training images and drop_last is ` +
              `true, so an epoch would have no batch; lower batch_size or set drop_last: false`,
          },
        ]);
      }
    } else {
      const store = await this.loadStore('test');
      this.splits.test = { store, indices: limit(permutationIdentity(store.count), this.config.limit_test_samples) };
    }
  }

  private async loadStore(name: 'train' | 'test'): Promise<TokenStore> {
    const kept = this.stores[name];
    if (kept) return kept;
    const store = await readTokenStore(this.tokenFile(name), this.config.palette_size, this.pixels);
    if (store) return store;
    // Deleted or damaged after prepareData in this process: rebuild it.
    this.prepared = undefined;
    await this.prepareData();
    const again = await readTokenStore(this.tokenFile(name), this.config.palette_size, this.pixels);
    if (!again)
      throw new TaskforgeError(
        `The CIFAR-10 token cache ${this.tokenFile(name)} could not be ` +
          `read back after writing it; check the disk under ${this.dataDir}.`,
      );
    return again;
  }

  get modelDataArgs(): Cifar10ModelDataArgs {
    if (!this.palette || !this.classNames) {
      throw new TaskforgeError(
        'cifar10: modelDataArgs was read before prepareData()/setup() finished; call setup() first.',
      );
    }
    const size = this.config.image_size;
    return {
      num_vocab: this.palette.length,
      num_positions: this.pixels,
      num_classes: NUM_CLASSES,
      image_height: size,
      image_width: size,
      palette: this.palette.map((c) => [...c]),
      class_names: [...this.classNames],
    } satisfies ModelDataArgs;
  }

  numBatches(split: Split): number | undefined {
    const view = split === 'predict' ? this.splits.test : this.splits[split];
    if (!view) return undefined;
    const n = view.indices.length,
      bs = this.config.batch_size;
    return split === 'train' && this.config.drop_last ? Math.floor(n / bs) : Math.ceil(n / bs);
  }

  trainDataloader(options: DataLoaderOptions): AsyncIterable<CifarBatch> {
    const view = this.view('train');
    const order = this.config.shuffle
      ? reorder(view.indices, permutation(view.indices.length, mixSeed(options.seed, options.epoch, 0x7e)))
      : view.indices;
    const augment = this.config.augment ? options : undefined;
    return this.batches('train', { ...view, indices: order }, options.startBatch ?? 0, augment);
  }

  valDataloader(options: DataLoaderOptions): AsyncIterable<CifarBatch> {
    return this.batches('val', this.view('val'), options.startBatch ?? 0);
  }

  testDataloader(options: DataLoaderOptions): AsyncIterable<CifarBatch> {
    return this.batches('test', this.view('test'), options.startBatch ?? 0);
  }

  predictDataloader(options: DataLoaderOptions): AsyncIterable<CifarBatch> {
    return this.testDataloader(options);
  }

  async teardown(): Promise<void> {
    this.splits = {};
    this.stores = {};
  }

  private view(split: 'train' | 'val' | 'test'): SplitView {
    const view = this.splits[split];
    if (!view) {
      const stage = split === 'test' ? "'test'" : "'fit' or 'validate'";
      throw new TaskforgeError(`cifar10: the ${split} dataloader was requested before setup(${stage}).`);
    }
    return view;
  }

  private batches(
    split: Split,
    view: SplitView,
    startBatch: number,
    augment?: DataLoaderOptions,
  ): AsyncIterable<CifarBatch> {
    const total = this.numBatches(split) ?? 0;
    const bs = this.config.batch_size;
    const P = this.pixels,
      side = this.config.image_size,
      pad = augmentPad(side);
    const make = (b: number): CifarBatch => {
      const indices = view.indices.slice(b * bs, Math.min(view.indices.length, (b + 1) * bs));
      const size = indices.length;
      const tokens = new Int32Array(size * P);
      const labels = new Int32Array(size);
      for (let j = 0; j < size; j++) {
        const idx = indices[j]!;
        labels[j] = view.store.labels[idx]!;
        const src = idx * P;
        if (augment)
          augmentGrid(
            view.store.tokens,
            src,
            tokens,
            j * P,
            augmentParams(augment.seed, augment.epoch, idx, pad),
            side,
            pad,
          );
        else tokens.set(view.store.tokens.subarray(src, src + P), j * P);
      }
      return { tokens, labels, size, indices };
    };
    return { [Symbol.asyncIterator]: () => prefetch(Math.max(0, startBatch), total, this.config.prefetch, make) };
  }

  /** Everything the palette (and so the tokens) depend on; image_size only when not 32, keeping older caches valid. */
  private paletteParams(): PaletteParams {
    const c = this.config;
    return {
      archive_md5: this.archiveMd5!,
      palette_size: c.palette_size,
      palette_sample_pixels: c.palette_sample_pixels,
      palette_batch_size: c.palette_batch_size,
      palette_iterations: c.palette_iterations,
      palette_seed: c.palette_seed,
      ...(c.image_size === IMAGE_SIZE ? {} : { image_size: c.image_size }),
    };
  }

  /**
   * The key alone separates image sizes; the readable suffix (none at 32, as before) is for people browsing
   * the cache.
   */
  private sizeSuffix(): string {
    const s = this.config.image_size;
    return s === IMAGE_SIZE ? '' : `-${s}x${s}`;
  }

  private paletteFile(): string {
    return join(
      this.dataDir,
      'palettes',
      `palette-${this.config.palette_size}${this.sizeSuffix()}-${paletteKey(this.paletteParams())}.json`,
    );
  }

  private tokenFile(name: 'train' | 'test'): string {
    return join(this.dataDir, 'tokens', `${paletteKey(this.paletteParams())}${this.sizeSuffix()}-${name}.bin`);
  }
}

function limit(indices: Int32Array, n: number | null): Int32Array {
  return n === null ? indices : indices.subarray(0, Math.min(n, indices.length));
}

function permutationIdentity(n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => i);
}

function reorder(indices: Int32Array, perm: Int32Array): Int32Array {
  return perm.map((p) => indices[p]!);
}

function missing(file: string, archive: string, fix: string): never {
  throw new TaskforgeError(
    `The CIFAR-10 archive ${archive} has no ${BATCH_DIR}/${file}: ` +
      `it is incomplete or not the CIFAR-10 binary archive. ${fix}`,
  );
}
