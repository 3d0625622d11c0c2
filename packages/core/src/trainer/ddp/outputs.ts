/**
 * `predictStep` outputs crossing the thread boundary. A worker's output may hold tf.Tensors, which
 * structured clone cannot carry: `encodeOutput` replaces each tensor (inside arrays and plain
 * objects, at any depth) by its values, shape and dtype, and `decodeOutput` on rank 0 rebuilds it
 * as a tensor on rank 0's backend, so the caller gets what a single-device run returns.
 */
import * as tf from '@tensorflow/tfjs';

const TAG = '__taskforgeTensor';

interface EncodedTensor {
  [TAG]: true;
  values: tf.TypedArray | string[];
  shape: number[];
  dtype: tf.DataType;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * The output with every tf.Tensor replaced by plain data (read asynchronously) and disposed.
 * Other values (numbers, strings, typed arrays, class instances structured clone can copy) are
 * kept as they are.
 */
export async function encodeOutput(output: unknown): Promise<unknown> {
  if (output instanceof tf.Tensor) {
    const encoded: EncodedTensor = {
      [TAG]: true,
      values: (await output.data()) as tf.TypedArray | string[],
      shape: [...output.shape],
      dtype: output.dtype,
    };
    output.dispose();
    return encoded;
  }
  if (Array.isArray(output)) return Promise.all(output.map((v) => encodeOutput(v)));
  if (isPlainObject(output)) {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(output)) out[key] = await encodeOutput(value);
    return out;
  }
  return output;
}

/** The inverse of `encodeOutput`: encoded tensors become tf.Tensors again (owned by the caller). */
export function decodeOutput(output: unknown): unknown {
  if (isPlainObject(output)) {
    if (output[TAG] === true) {
      const { values, shape, dtype } = output as unknown as EncodedTensor;
      return tf.tensor(values as tf.TypedArray, shape, dtype);
    }
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(output)) out[key] = decodeOutput(value);
    return out;
  }
  if (Array.isArray(output)) return output.map((v) => decodeOutput(v));
  return output;
}
