import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { causalSelfAttention } from './attention.js';
import {
  FUSED_ATTENTION_KERNEL,
  FUSED_ATTENTION_PACKED_GRAD_KERNEL,
  FUSED_ATTENTION_PACKED_KERNEL,
  fusedCausalAttention,
  fusedCausalAttentionPacked,
} from './fused-attention.js';

/** The textbook version, differentiated by TF.js autodiff (plain ops). */
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
function outputsAndGrads(
  attention: Attention,
  shape: [number, number, number, number],
  seed: number,
  spread = 1,
): Float32Array[] {
  return tf.tidy(() => {
    const [q, k, v, w] = [0, 1, 2, 3].map((i) =>
      tf.randomNormal(shape, 0, i < 2 ? spread : 1, 'float32', seed * 10 + i),
    ) as tf.Tensor4D[];
    const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      attention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D)
        .mul(w!)
        .sum();
    const grads = tf.grads(f)([q!, k!, v!]);
    return [attention(q!, k!, v!), ...grads].map((t) => t.dataSync() as Float32Array);
  });
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const x of a) m = Math.max(m, Math.abs(x));
  return m;
}

describe('fusedCausalAttention (wasm SIMD kernels)', () => {
  beforeAll(async () => {
    expect(await tf.setBackend('wasm')).toBe(true);
  });

  // T not a multiple of 4 (the kernels' lane width) nor of the plain path's block size; head
  // sizes 1 (scalar), 3 (odd), 8 and 32 (the default and large configs).
  const cases: [number, number, number, number][] = [
    [1, 1, 1, 4],
    [1, 2, 5, 1],
    [2, 3, 37, 3],
    [2, 2, 130, 8],
    [1, 2, 67, 32],
  ];

  it.each(cases)('matches plain-ops autodiff: output, dq, dk, dv (B=%i H=%i T=%i hd=%i)', (B, H, T, hd) => {
    const shape: [number, number, number, number] = [B, H, T, hd];
    const expected = outputsAndGrads(reference, shape, 1);
    const actual = outputsAndGrads(fusedCausalAttention, shape, 1);
    ['output', 'dq', 'dk', 'dv'].forEach((name, i) => {
      const scale = maxAbs(expected[i]!);
      // Guard against a vacuous pass (T = 1 has dq = dk = 0 exactly: one key, softmax = 1).
      if (!(T === 1 && (name === 'dq' || name === 'dk'))) expect(scale, name).toBeGreaterThan(0.1);
      expect(maxAbsDiff(actual[i]!, expected[i]!), name).toBeLessThan(2e-5 * Math.max(1, scale));
    });
  });

  it('stays exact with large scores (peaked softmax; exp inputs far below 0)', () => {
    const shape: [number, number, number, number] = [1, 2, 45, 8];
    const expected = outputsAndGrads(reference, shape, 2, 6);
    const actual = outputsAndGrads(fusedCausalAttention, shape, 2, 6);
    ['output', 'dq', 'dk', 'dv'].forEach((name, i) => {
      expect(maxAbsDiff(actual[i]!, expected[i]!), name).toBeLessThan(1e-4 * Math.max(1, maxAbs(expected[i]!)));
    });
  });

  it('writes no subnormal floats with peaked scores (x86 computes those through a slow microcode path)', () => {
    // Scores ~N(0, 30²): most exp(s − max) are below 1e-13 and flushed to exactly 0. Kept, their
    // products with values and gradients were subnormal (|x| < 2^-126) in every output below.
    const [out, dq, dk, dv] = outputsAndGrads(fusedCausalAttention, [2, 2, 64, 8], 4, 9);
    const tiny = (a: Float32Array) => a.filter((x) => x !== 0 && Math.abs(x) < 1.1754944e-38).length;
    expect([out, dq, dk, dv].map((a) => tiny(a!))).toEqual([0, 0, 0, 0]);
    expect(maxAbs(dq!)).toBeGreaterThan(0.1);
  });

  it('is what causalSelfAttention dispatches to on wasm, and the plain path agrees with it', () => {
    const shape: [number, number, number, number] = [2, 2, 29, 8];
    const viaDispatch = outputsAndGrads((q, k, v) => causalSelfAttention(q, k, v), shape, 3);
    const fused = outputsAndGrads(fusedCausalAttention, shape, 3);
    const plain = outputsAndGrads((q, k, v) => causalSelfAttention(q, k, v, { fused: false, blockSize: 8 }), shape, 3);
    for (let i = 0; i < 4; i++) {
      expect(viaDispatch[i]).toEqual(fused[i]);
      expect(maxAbsDiff(plain[i]!, fused[i]!)).toBeLessThan(2e-5);
    }
  });

  it('runs as the registered wasm kernel', async () => {
    const x = tf.randomNormal([1, 2, 9, 4]) as tf.Tensor4D;
    const info = await tf.profile(() => causalSelfAttention(x, x, x));
    expect(info.kernels.map((kernel) => kernel.name)).toContain(FUSED_ATTENTION_KERNEL);
    expect(info.kernels.map((kernel) => kernel.name)).not.toContain('Softmax');
    tf.dispose([x, info.result as tf.Tensor]);
  });

  it('keeps the tensor count constant across training steps', () => {
    const [q, k, v] = [0, 1, 2].map((i) => tf.variable(tf.randomNormal([2, 2, 19, 4], 0, 1, 'float32', i)));
    const step = () => {
      const { value, grads } = tf.variableGrads(
        () =>
          fusedCausalAttention(q as tf.Variable<tf.Rank.R4>, k as tf.Variable<tf.Rank.R4>, v as tf.Variable<tf.Rank.R4>)
            .square()
            .sum() as tf.Scalar,
        [q!, k!, v!],
      );
      tf.dispose([value, grads]);
    };
    step();
    const count = tf.memory().numTensors;
    step();
    step();
    expect(tf.memory().numTensors).toBe(count);
    tf.dispose([q!, k!, v!]);
  });

  it('is causal: changing key/value j leaves outputs before j bit-identical', () => {
    const [before, after] = tf.tidy(() => {
      const [q, k, v] = [0, 1, 2].map((i) => tf.randomNormal([1, 2, 20, 4], 0, 1, 'float32', i)) as tf.Tensor4D[];
      const bump = tf
        .oneHot(tf.tensor1d([12], 'int32'), 20)
        .reshape([1, 1, 20, 1])
        .mul(5);
      const run = (kk: tf.Tensor4D, vv: tf.Tensor4D) => fusedCausalAttention(q!, kk, vv).arraySync()[0]![1]!;
      return [run(k!, v!), run(k!.add(bump) as tf.Tensor4D, v!.add(bump) as tf.Tensor4D)];
    });
    for (let i = 0; i < 12; i++) expect(after[i]).toEqual(before[i]);
    expect(Math.max(...after[12]!.map((x, d) => Math.abs(x - before[12]![d]!)))).toBeGreaterThan(1e-3);
  });

  it('does not hide a diverged model: a NaN position spreads to every row that attends to it', () => {
    // The running max skips NaN scores (f32x4.pmax), so this pins what still must show NaN: a
    // position whose q, k and v are NaN (as a NaN residual stream gives), and a NaN query row.
    const rows = tf.tidy(() => {
      const [q, k, v] = [0, 1, 2].map((i) => tf.randomNormal([1, 1, 11, 4], 0, 1, 'float32', i)) as tf.Tensor4D[];
      const nanAt = (t: tf.Tensor4D, pos: number) => {
        const at = tf
          .oneHot(tf.tensor1d([pos], 'int32'), 11)
          .reshape([1, 1, 11, 1])
          .cast('bool')
          .tile([1, 1, 1, 4]);
        return tf.where(at, tf.fill(t.shape, NaN), t) as tf.Tensor4D;
      };
      const poisoned = fusedCausalAttention(nanAt(q!, 6), nanAt(k!, 6), nanAt(v!, 6));
      return poisoned.arraySync()[0]![0]!.map((row) => row.some(Number.isNaN));
    });
    // Rows 6.. attend to it; rows 0..3 lie in an earlier block of 4 and never read it (rows 4, 5
    // share its block, where a masked p = 0 times a NaN value is NaN, as in a plain matMul).
    expect(rows.slice(6)).toEqual([true, true, true, true, true]);
    expect(rows.slice(0, 4)).toEqual([false, false, false, false]);
  });
});

/** Split the heads of qkv [B, T, 3D] with plain ops, attend by `reference`, merge: the packed kernel's definition. */
function referencePacked(qkv: tf.Tensor3D, H: number): tf.Tensor3D {
  const [B, T, threeD] = qkv.shape;
  const D = threeD / 3;
  const [q, k, v] = tf.split(qkv, 3, -1).map((t) => t.reshape([B, T, H, D / H]).transpose([0, 2, 1, 3]) as tf.Tensor4D);
  return reference(q!, k!, v!).transpose([0, 2, 1, 3]).reshape([B, T, D]);
}

/** Output and d/dqkv of sum(attention(qkv) ⊙ w) for random qkv [B, T, 3·H·hd] and w. */
function packedOutputAndGrad(
  attention: (qkv: tf.Tensor3D, H: number) => tf.Tensor3D,
  [B, H, T, hd]: [number, number, number, number],
  seed: number,
): Float32Array[] {
  return tf.tidy(() => {
    const qkv = tf.randomNormal([B, T, 3 * H * hd], 0, 1, 'float32', seed) as tf.Tensor3D;
    const w = tf.randomNormal([B, T, H * hd], 0, 1, 'float32', seed + 1);
    const [grad] = tf.grads((x: tf.Tensor) =>
      attention(x as tf.Tensor3D, H)
        .mul(w)
        .sum(),
    )([qkv]);
    return [attention(qkv, H), grad!].map((t) => t.dataSync() as Float32Array);
  });
}

describe('fusedCausalAttentionPacked (the same kernels over [B, T, 3D] qkv, by strides)', () => {
  beforeAll(async () => {
    expect(await tf.setBackend('wasm')).toBe(true);
  });

  // [B, H, T, hd]: T not a multiple of 4; head sizes 1, 3, 8 (default config) and 32 (large).
  it.each([
    [1, 1, 1, 4],
    [2, 1, 6, 1],
    [2, 3, 37, 3],
    [2, 2, 130, 8],
    [1, 4, 67, 32],
  ] as [number, number, number, number][])(
    'matches split heads + plain-ops autodiff + merge: output and dqkv (B=%i H=%i T=%i hd=%i)',
    (B, H, T, hd) => {
      const expected = packedOutputAndGrad(referencePacked, [B, H, T, hd], 7);
      const actual = packedOutputAndGrad(fusedCausalAttentionPacked, [B, H, T, hd], 7);
      ['output', 'dqkv'].forEach((name, i) => {
        const scale = maxAbs(expected[i]!);
        expect(scale, name).toBeGreaterThan(0.1);
        expect(maxAbsDiff(actual[i]!, expected[i]!), name).toBeLessThan(2e-5 * Math.max(1, scale));
      });
    },
  );

  it('equals the [B, H, T, hd] kernels on the same heads, bit for bit', () => {
    const [B, H, T, hd] = [2, 2, 21, 4];
    const packed = packedOutputAndGrad(fusedCausalAttentionPacked, [B, H, T, hd], 9);
    const viaHeads = packedOutputAndGrad(
      (qkv, heads) => {
        const [q, k, v] = tf
          .split(qkv, 3, -1)
          .map((t) => t.reshape([B, T, heads, hd]).transpose([0, 2, 1, 3]) as tf.Tensor4D);
        return fusedCausalAttention(q!, k!, v!)
          .transpose([0, 2, 1, 3])
          .reshape([B, T, heads * hd]);
      },
      [B, H, T, hd],
      9,
    );
    expect(packed[0]).toEqual(viaHeads[0]);
    expect(packed[1]).toEqual(viaHeads[1]);
  });

  it('runs forward and backward as the packed kernels, with no Transpose', async () => {
    const qkv = tf.randomNormal([2, 11, 24]) as tf.Tensor3D;
    const info = await tf.profile(() =>
      tf.grads((x: tf.Tensor) => fusedCausalAttentionPacked(x as tf.Tensor3D, 2).sum())([qkv]),
    );
    const names = info.kernels.map((kernel) => kernel.name);
    expect(names).toContain(FUSED_ATTENTION_PACKED_KERNEL);
    expect(names).toContain(FUSED_ATTENTION_PACKED_GRAD_KERNEL);
    expect(names).not.toContain('Transpose');
    tf.dispose([qkv, info.result as tf.Tensor[]]);
  });

  it('rejects a last axis that is not 3·D with D divisible by the head count, naming the shape', () => {
    const qkv = tf.zeros([1, 4, 12]) as tf.Tensor3D;
    expect(() => fusedCausalAttentionPacked(qkv, 3)).toThrow(/\[B, T, 3·D\].*numHeads \(3\).*\[1,4,12\]/);
    qkv.dispose();
  });
});

describe('fusedCausalAttention off wasm', () => {
  beforeAll(() => tf.setBackend('cpu'));

  it('refuses other backends, naming the active one', () => {
    const q = tf.zeros([1, 1, 4, 4]) as tf.Tensor4D;
    expect(() => fusedCausalAttention(q, q, q)).toThrow(/wasm backend only; the active backend is cpu/);
    q.dispose();
  });
});
