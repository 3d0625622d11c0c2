import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { CausalMasks, causalSelfAttention, type CausalAttentionOptions } from './attention.js';

/** The textbook version, differentiated by TF.js autodiff. */
function reference(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): tf.Tensor4D {
  const [, , T, hd] = q.shape;
  const mask = tf.linalg
    .bandPart(tf.ones([T, T]), -1, 0)
    .sub(1)
    .mul(1e9);
  const scores = tf.matMul(q, k, false, true).div(Math.sqrt(hd)).add(mask);
  return tf.matMul(tf.softmax(scores), v);
}

type Attention = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D;

/** Output and gradients w.r.t. q, k, v of sum(attention(q, k, v) ⊙ w) for a random w (so dY is not uniform). */
function outputsAndGrads(attention: Attention, shape: [number, number, number, number], seed: number): number[][] {
  return tf.tidy(() => {
    const [q, k, v, w] = [0, 1, 2, 3].map((i) =>
      tf.randomNormal(shape, 0, 1, 'float32', seed * 10 + i),
    ) as tf.Tensor4D[];
    const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      attention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D)
        .mul(w!)
        .sum();
    const grads = tf.grads(f)([q!, k!, v!]);
    return [attention(q!, k!, v!), ...grads].map((t) => Array.from(t.dataSync()));
  });
}

function maxAbsDiff(a: number[], b: number[]): number {
  expect(a.length).toBe(b.length);
  return Math.max(...a.map((x, i) => Math.abs(x - b[i]!)));
}

describe.each(['cpu', 'wasm'])('causalSelfAttention on %s', (backend) => {
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
  });

  // fused: false keeps the plain-ops path on wasm too (fused-attention.spec.ts tests the kernels).
  const cases: [string, [number, number, number, number], CausalAttentionOptions][] = [
    ['per head, ragged blocks', [1, 3, 37, 4], { blockSize: 8, perHead: true, fused: false }],
    ['batched, ragged blocks', [1, 3, 37, 4], { blockSize: 8, perHead: false, fused: false }],
    ['per head, B=2 H=2', [2, 2, 37, 4], { blockSize: 8, perHead: true, fused: false }],
    ['one row per block', [1, 2, 9, 4], { blockSize: 1, fused: false }],
    ['one block larger than T', [2, 1, 37, 4], { blockSize: 64, fused: false }],
    ['default dispatch (fused kernels on wasm)', [2, 2, 37, 4], {}],
  ];

  it.each(cases)('matches the reference output and gradients (%s)', (_, shape, options) => {
    const expected = outputsAndGrads(reference, shape, 1);
    const actual = outputsAndGrads((q, k, v) => causalSelfAttention(q, k, v, options), shape, 1);
    ['output', 'dq', 'dk', 'dv'].forEach((name, i) => {
      // Guard against a vacuous pass: every compared quantity carries real signal.
      expect(Math.max(...expected[i]!.map(Math.abs)), name).toBeGreaterThan(0.1);
      expect(maxAbsDiff(actual[i]!, expected[i]!), name).toBeLessThan(1e-5);
    });
  });

  it('is causal: changing key/value j leaves outputs before j unchanged', () => {
    const [before, after] = tf.tidy(() => {
      const [q, k, v] = [0, 1, 2].map((i) => tf.randomNormal([1, 2, 20, 4], 0, 1, 'float32', i)) as tf.Tensor4D[];
      const bump = tf
        .oneHot(tf.tensor1d([12], 'int32'), 20)
        .reshape([1, 1, 20, 1])
        .mul(5);
      const run = (kk: tf.Tensor4D, vv: tf.Tensor4D) =>
        causalSelfAttention(q!, kk, vv, { blockSize: 8, fused: false }).arraySync()[0]![1]!;
      return [run(k!, v!), run(k!.add(bump), v!.add(bump))];
    });
    for (let i = 0; i < 12; i++) expect(after[i]).toEqual(before[i]);
    expect(maxAbsDiff(after[12]!, before[12]!)).toBeGreaterThan(1e-3);
  });

  it('keeps the tensor count constant across training steps, with and without a mask cache', () => {
    const masks = new CausalMasks();
    const [q, k, v] = [0, 1, 2].map((i) => tf.variable(tf.randomNormal([2, 2, 19, 4], 0, 1, 'float32', i)));
    const step = (options: CausalAttentionOptions) => {
      const { value, grads } = tf.variableGrads(
        () =>
          causalSelfAttention(
            q as tf.Variable<tf.Rank.R4>,
            k as tf.Variable<tf.Rank.R4>,
            v as tf.Variable<tf.Rank.R4>,
            options,
          )
            .square()
            .sum() as tf.Scalar,
        [q!, k!, v!],
      );
      tf.dispose([value, grads]);
    };
    for (const options of [
      { blockSize: 5, fused: false },
      { blockSize: 5, masks, fused: false },
      { blockSize: 5, perHead: !(backend === 'wasm'), fused: false },
      {},
    ]) {
      step(options); // warm-up: builds the cached masks
      const count = tf.memory().numTensors;
      step(options);
      step(options);
      expect(tf.memory().numTensors).toBe(count);
    }
    masks.dispose();
    tf.dispose([q!, k!, v!]);
  });
});

describe('causalSelfAttention inputs', () => {
  beforeAll(() => tf.setBackend('cpu'));

  it('rejects mismatched shapes and bad block sizes, naming them', () => {
    tf.tidy(() => {
      const q = tf.zeros([1, 2, 8, 4]) as tf.Tensor4D;
      expect(() => causalSelfAttention(q, tf.zeros([1, 2, 7, 4]), q)).toThrow(/q \[1,2,8,4\], k \[1,2,7,4\]/);
      expect(() => causalSelfAttention(q, q, q, { blockSize: 0 })).toThrow(
        /blockSize must be a positive integer, got 0/,
      );
      expect(() => causalSelfAttention(q, q, q, { blockSize: 2.5 })).toThrow(/got 2.5/);
    });
  });

  it('builds each cached mask once: 0 on and below the diagonal, very negative above', () => {
    const masks = new CausalMasks();
    const m = masks.get(2, 3);
    expect(masks.get(2, 3)).toBe(m);
    const data = m.arraySync();
    expect(m.shape).toEqual([3, 5]);
    expect(data.map((row) => row.map((x) => (x === 0 ? 0 : 1)))).toEqual([
      [0, 0, 0, 1, 1],
      [0, 0, 0, 0, 1],
      [0, 0, 0, 0, 0],
    ]);
    expect(data[0]![4]).toBeLessThan(-1e8);
    masks.dispose();
    expect(m.isDisposed).toBe(true);
  });
});
