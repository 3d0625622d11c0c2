import { TaskforgeError } from '../../errors.js';
import { isTensorLike } from '../../tensor-like.js';

/** A batch cut along dim 0: the part and how many samples it holds. */
export interface Shard<Batch = unknown> {
  batch: Batch;
  size: number;
}

type Row = ArrayLike<unknown> & { slice(start: number, end: number): unknown };

function isSplittable(value: unknown): value is Row {
  return Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView));
}

/**
 * The sample count of a batch: its numeric `size` field (DataModule batches are plain objects of
 * typed arrays plus `size`, as core's contracts describe). Undefined when the batch has none.
 */
export function batchSize(batch: unknown): number | undefined {
  if (batch === null || typeof batch !== 'object') return undefined;
  const size = (batch as { size?: unknown }).size;
  return typeof size === 'number' && Number.isInteger(size) && size >= 0 ? size : undefined;
}

/**
 * Splits a batch along dim 0 into `parts` shards whose sizes differ by at most 1 (the first
 * `size % parts` shards get one sample more), in order, so concatenating the shards gives the batch back.
 * Every typed-array or array field is per-sample: it must hold `size` rows of equal length, and is
 * cut into the shards' rows (copies, so their buffers can be transferred); `size` is set to the
 * shard's sample count; any other field (numbers, strings, objects) is copied as is.
 * Throws TaskforgeError (exit 2) when the batch has no `size` field, or an array field's length is
 * not a multiple of `size` (say, labels padded to a capacity): guessing which rows belong to which
 * sample would train on the wrong data without a word.
 */
export function splitBatch<Batch>(batch: Batch, parts: number): Array<Shard<Batch>> {
  const n = batchSize(batch);
  if (n === undefined) {
    throw new TaskforgeError(
      'trainer.strategy=ddp splits each batch along its first dimension, which needs batches that are ' +
        'plain objects with a numeric `size` field (the sample count) and typed-array fields of size × row ' +
        'elements; this DataModule yields batches without `size`. ' +
        'Add `size` to its batches, or train with trainer.strategy=single.',
      { exitCode: 2 },
    );
  }
  for (const [key, value] of Object.entries(batch as Record<string, unknown>)) {
    if (isTensorLike(value)) {
      throw new TaskforgeError(
        `trainer.strategy=ddp sends each shard of a batch to a worker thread as plain arrays, but the batch ` +
          `field '${key}' is a tf.Tensor (shape [${value.shape.join(', ')}]), which cannot cross threads. ` +
          'Yield typed arrays (Int32Array, Float32Array) of size × row elements from the data module and make ' +
          'the tensors in the task, or train with trainer.strategy=single.',
        { exitCode: 2 },
      );
    }
    if (key !== 'size' && isSplittable(value) && (n === 0 ? value.length !== 0 : value.length % n !== 0)) {
      throw new TaskforgeError(
        `trainer.strategy=ddp splits each batch into per-sample rows, but the batch field '${key}' has ` +
          `${value.length} elements, which is not a whole number of rows for its ${n} samples (size=${n}). ` +
          `Give every array field exactly size × row elements (e.g. ${key}.subarray(0, size × row) for a ` +
          'buffer padded to a capacity), keep tables that are not per-sample out of the batch (the task ' +
          'can hold them), or train with trainer.strategy=single.',
        { exitCode: 2 },
      );
    }
  }
  const count = Math.max(1, Math.min(parts, n));
  const base = Math.floor(n / count);
  const extra = n % count;
  const shards: Array<Shard<Batch>> = [];
  let start = 0;
  for (let r = 0; r < count; r++) {
    const size = base + (r < extra ? 1 : 0);
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(batch as Record<string, unknown>)) {
      if (key === 'size') out[key] = size;
      else if (isSplittable(value) && n > 0) {
        const row = value.length / n;
        out[key] = value.slice(start * row, (start + size) * row);
      } else out[key] = value;
    }
    shards.push({ batch: out as Batch, size });
    start += size;
  }
  return shards;
}

/** The ArrayBuffers a shard owns (to transfer them with `postMessage`). */
export function transferables(batch: unknown): ArrayBuffer[] {
  if (batch === null || typeof batch !== 'object') return [];
  const out = new Set<ArrayBuffer>();
  for (const value of Object.values(batch as Record<string, unknown>)) {
    if (ArrayBuffer.isView(value) && value.buffer instanceof ArrayBuffer) out.add(value.buffer);
  }
  return [...out];
}

/**
 * A copy of a whole batch to post to a worker: every typed-array field is copied to a buffer of
 * its own (cloning a view would copy its whole underlying buffer, e.g. a dataset's, and
 * transferring it would detach the dataset), other fields are kept as they are.
 */
export function copyBatch<Batch>(batch: Batch): Batch {
  if (batch === null || typeof batch !== 'object') return batch;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(batch as Record<string, unknown>)) {
    out[key] = ArrayBuffer.isView(value) && !(value instanceof DataView) ? (value as Uint8Array).slice() : value;
  }
  return out as Batch;
}
