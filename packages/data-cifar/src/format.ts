/**
 * The CIFAR-10 binary format: each batch file is a run of 3073-byte records, one label byte
 * (0..9) then 1024 red, 1024 green and 1024 blue bytes, each plane 32×32 row-major.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { TaskforgeError } from '@taskforge/core';

export const IMAGE_SIZE = 32;
export const IMAGE_PIXELS = IMAGE_SIZE * IMAGE_SIZE;
export const RECORD_BYTES = 1 + 3 * IMAGE_PIXELS;
export const NUM_CLASSES = 10;
export const BATCH_DIR = 'cifar-10-batches-bin';
export const TRAIN_FILES = [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`);
export const TEST_FILE = 'test_batch.bin';
export const META_FILE = 'batches.meta.txt';
export const ALL_FILES = [...TRAIN_FILES, TEST_FILE, META_FILE];

const FIX =
  'Check that dataset.url points to the CIFAR-10 binary archive ' +
  '(cifar-10-binary.tar.gz, not the python or matlab version) and run again.';

/** Records of one or more batch files, concatenated: `data` holds `count` raw 3073-byte records. */
export interface CifarRecords {
  count: number;
  labels: Uint8Array;
  data: Uint8Array;
}

/**
 * Validates a batch file's bytes (size a multiple of 3073, labels 0..9) and exposes its labels.
 * @throws TaskforgeError (exit 1) naming `file` and what is wrong (the file is corrupt).
 */
export function parseBatch(data: Uint8Array, file: string): CifarRecords {
  if (data.length === 0 || data.length % RECORD_BYTES !== 0) {
    throw new TaskforgeError(
      `CIFAR-10 batch file ${file} is ${data.length} bytes, which ` +
        `is not a positive multiple of the ${RECORD_BYTES}-byte record ` +
        `(1 label byte + 3072 pixel bytes): the file is truncated or not in CIFAR-10 binary format. ${FIX}`,
    );
  }
  const count = data.length / RECORD_BYTES;
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const label = data[i * RECORD_BYTES]!;
    if (label >= NUM_CLASSES) {
      throw new TaskforgeError(
        `CIFAR-10 batch file ${file}: record ${i} (byte offset ` +
          `${i * RECORD_BYTES}) has label ${label}, but labels must be 0..9. ` +
          `The file is corrupt or not CIFAR-10 (CIFAR-100 binaries have two label bytes). ${FIX}`,
      );
    }
    labels[i] = label;
  }
  return { count, labels, data };
}

/**
 * Reads and validates batch files from `dir`, concatenated in the given order.
 * @throws TaskforgeError (exit 1) as `parseBatch` does, or when a file cannot be read.
 */
export async function readBatches(dir: string, files: readonly string[]): Promise<CifarRecords> {
  if (files.length === 1) {
    const file = join(dir, files[0]!);
    return parseBatch(await readRequired(file), file);
  }
  // Sized up front so the 150 MB of training records are copied once, one file at a time.
  const sizes = await Promise.all(files.map((f) => statRequired(join(dir, f))));
  const total = sizes.reduce((s, n) => s + n, 0);
  const data = new Uint8Array(total - (total % RECORD_BYTES));
  const labels = new Uint8Array(data.length / RECORD_BYTES);
  let at = 0;
  for (const f of files) {
    const part = parseBatch(await readRequired(join(dir, f)), join(dir, f));
    data.set(part.data, at * RECORD_BYTES);
    labels.set(part.labels, at);
    at += part.count;
  }
  return { count: at, labels, data };
}

/** Class names from `batches.meta.txt`: one per line, blank lines ignored. */
export function parseMeta(text: string, file: string): string[] {
  const names = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  if (names.length !== NUM_CLASSES) {
    throw new TaskforgeError(
      `CIFAR-10 metadata file ${file} lists ${names.length} ` +
        `class names, expected ${NUM_CLASSES} (one per line). ${FIX}`,
    );
  }
  return names;
}

export async function readMeta(dir: string): Promise<string[]> {
  const file = join(dir, META_FILE);
  return parseMeta(new TextDecoder().decode(await readRequired(file)), file);
}

async function readRequired(file: string): Promise<Uint8Array> {
  try {
    return await readFile(file);
  } catch (err) {
    throw fileError(file, err);
  }
}

async function statRequired(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch (err) {
    throw fileError(file, err);
  }
}

function fileError(file: string, err: unknown): TaskforgeError {
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
    return new TaskforgeError(`CIFAR-10 file ${file} is missing: the archive did not contain it. ${FIX}`, {
      cause: err,
    });
  }
  return new TaskforgeError(`Cannot read CIFAR-10 file ${file}: ${(err as Error).message}.`, { cause: err });
}
