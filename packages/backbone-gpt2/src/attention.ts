/**
 * Causal self-attention. One dispatch point (`causalSelfAttention`): on the wasm backend the
 * fused WebAssembly SIMD kernels of fused-attention.ts; on every other backend (or with
 * `fused: false`) the plain-ops version below.
 *
 * Plain ops: memory-efficient causal self-attention (the idea of FlashAttention, in TF.js ops).
 *
 * Autodiff of `softmax(q·kᵀ + mask)·v` keeps the [B·H, T, T] probabilities of every layer for
 * the backward pass: at T = 1024 that is 128 MB per tensor per 32 heads, several per layer,
 * which overflows the wasm heap. Here the forward pass keeps only q, k, v and the output; the
 * backward pass recomputes the probabilities one block of query rows at a time. Block i (rows
 * s..e-1) only meets keys 0..e-1, so the upper-triangle blocks are skipped entirely (about half
 * the work at T/blockSize ≥ 4), and the additive mask touches only a [rows, e] slab.
 *
 * On wasm, TF.js sends only 2-D, untransposed matMuls to XNNPACK; batched or transposed ones
 * run a scalar loop about 10× slower, and XNNPACK repacks the right-hand operand on every call
 * (slow for a fresh [rows, e] matrix). So on wasm every (batch, head) pair is processed with 2-D
 * matMuls whose right-hand operand is small ([e, hd] or [hd, e]), transposing the big left-hand
 * one where needed (`perHead`); elsewhere one batched matMul per block is faster.
 * Attention-probability dropout is not applied (see the README).
 */
import * as tf from '@tensorflow/tfjs';
import { fusedCausalAttention } from './fused-attention.js';

export interface CausalAttentionOptions {
  /** Query rows per block (the last block may be shorter). Default 128. */
  blockSize?: number;
  /** 2-D matMuls per (batch, head) pair instead of batched ones. Default: true on wasm only. */
  perHead?: boolean;
  /** Masks reused across calls; without one, masks are built per call and freed with it. */
  masks?: CausalMasks;
  /**
   * Use the fused WebAssembly SIMD kernels (fused-attention.ts) instead of plain ops. Default:
   * true on the wasm backend, the only backend they are registered for; blockSize, perHead and
   * masks then do not apply.
   */
  fused?: boolean;
}

/** Added to scores above the diagonal: exp underflows to exactly 0 without risking inf − inf. */
const MASKED = -1e9;

/** Additive causal masks for query blocks, built once per (start, rows) and kept until disposed. */
export class CausalMasks {
  private readonly cache = new Map<string, tf.Tensor2D>();

  /** [rows, start + rows]: 0 where key j ≤ start + row, MASKED above the diagonal. */
  get(start: number, rows: number): tf.Tensor2D {
    const key = `${start}:${rows}`;
    let mask = this.cache.get(key);
    if (!mask) {
      const width = start + rows;
      const data = new Float32Array(rows * width);
      for (let r = 0; r < rows; r++) data.fill(MASKED, r * width + start + r + 1, (r + 1) * width);
      mask = tf.keep(tf.tensor2d(data, [rows, width]));
      this.cache.set(key, mask);
    }
    return mask;
  }

  dispose(): void {
    for (const m of this.cache.values()) m.dispose();
    this.cache.clear();
  }
}

/**
 * softmax(q·kᵀ/√hd + causal mask)·v for q, k, v of shape [B, H, T, hd]; returns [B, H, T, hd].
 * Differentiable w.r.t. q, k and v through a custom gradient that recomputes the probabilities.
 */
export function causalSelfAttention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  options: CausalAttentionOptions = {},
): tf.Tensor4D {
  const shape = q.shape;
  if (k.shape.join() !== shape.join() || v.shape.join() !== shape.join()) {
    throw new RangeError(
      `causalSelfAttention: q, k and v must share one [B, H, T, ` +
        `hd] shape; got q [${shape}], k [${k.shape}], v [${v.shape}]`,
    );
  }
  const blockSize = options.blockSize ?? 128;
  if (!Number.isInteger(blockSize) || blockSize < 1) {
    throw new RangeError(`causalSelfAttention: blockSize must be a positive integer, got ${blockSize}`);
  }
  // The one dispatch point: wasm backend → fused kernels, any other backend → plain ops below.
  if (options.fused ?? tf.getBackend() === 'wasm') return fusedCausalAttention(q, k, v);
  const [B, H, T, hd] = shape;
  const perHead = options.perHead ?? tf.getBackend() === 'wasm';
  const scale = 1 / Math.sqrt(hd);
  const blocks: [number, number][] = [];
  for (let s = 0; s < T; s += blockSize) blocks.push([s, Math.min(s + blockSize, T)]);
  // Heads are independent: [B·H, T, hd] either as one batch or as B·H separate 2-D problems.
  const groups = (x: tf.Tensor, last = hd): tf.Tensor[] =>
    perHead ? splitHeads(x, B * H, T, last) : [x.reshape([B * H, T, last])];
  const merge = (parts: tf.Tensor[]): tf.Tensor4D =>
    (perHead ? mergeHeads(parts) : parts[0]!).reshape(shape) as tf.Tensor4D;
  // Pᵀ·X: on wasm an explicit transpose is cheaper than the scalar transposed-matMul loop.
  const matMulTA = (a: tf.Tensor, b: tf.Tensor) =>
    perHead ? tf.matMul(transpose(a), b) : tf.matMul(a, b, true, false);

  const attend = tf.customGrad((...args) => {
    const [qIn, kIn, vIn] = args as tf.Tensor4D[];
    const save = args[3] as tf.GradSaveFunc;
    const y = withMasks((masks) => {
      const [qs, ks, vs] = [groups(qIn!.mul(scale)), groups(kIn!), groups(vIn!)];
      return merge(
        qs.map((qg, g) =>
          tf.tidy(() => {
            const kt = transpose(ks[g]!);
            const out = blocks.map(([s, e]) =>
              tf.tidy(() => {
                const p = tf.softmax(tf.matMul(rows(qg, s, e), cols(kt, 0, e)).add(masks.get(s, e - s)));
                return tf.matMul(p, rows(vs[g]!, 0, e));
              }),
            );
            return tf.concat(out, -2);
          }),
        ),
      );
    });
    save([qIn!, kIn!, vIn!, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) =>
        withMasks((masks) => backward(dy, saved as tf.Tensor4D[], masks)),
    };
  });

  /** Gradients w.r.t. q, k, v, recomputing each block's probabilities from the saved inputs. */
  function backward(dy: tf.Tensor4D, [qIn, kIn, vIn, y]: tf.Tensor4D[], masks: CausalMasks): tf.Tensor4D[] {
    return tf.tidy(() => {
      // rowsum(dP ⊙ P) = rowsum(dY ⊙ Y): one [.., T, 1] term instead of a pass over each block.
      const delta = groups(dy.mul(y!).sum(-1, true), 1);
      const [qs, ks, vs, dys] = [groups(qIn!.mul(scale)), groups(kIn!), groups(vIn!), groups(dy)];
      const perGroup = qs.map((qg, g) =>
        tf.tidy(() => {
          const [kg, dyg] = [ks[g]!, dys[g]!];
          const [kt, vt] = [transpose(kg), transpose(vs[g]!)];
          let dk: tf.Tensor = tf.zerosLike(kg);
          let dv: tf.Tensor = tf.zerosLike(kg);
          const dq = blocks.map(([s, e]) => {
            const [dqBlock, nextDk, nextDv] = tf.tidy(() => {
              const [qi, dyi] = [rows(qg, s, e), rows(dyg, s, e)];
              const p = tf.softmax(tf.matMul(qi, cols(kt, 0, e)).add(masks.get(s, e - s)));
              const ds = p.mul(tf.matMul(dyi, cols(vt, 0, e)).sub(rows(delta[g]!, s, e)));
              return [
                tf.matMul(ds, rows(kg, 0, e)),
                dk.add(padRows(matMulTA(ds, qi), T)),
                dv.add(padRows(matMulTA(p, dyi), T)),
              ];
            });
            tf.dispose([dk, dv]);
            [dk, dv] = [nextDk!, nextDv!];
            return dqBlock!;
          });
          return [tf.concat(dq, -2).mul(scale), dk, dv];
        }),
      );
      return [0, 1, 2].map((i) => merge(perGroup.map((gr) => gr[i]!)));
    });
  }

  /** Runs `f` in a tidy scope with the caller's masks, or with temporary ones freed afterwards. */
  function withMasks<R extends tf.TensorContainer>(f: (masks: CausalMasks) => R): R {
    const temporary = options.masks ? null : new CausalMasks();
    try {
      return tf.tidy(() => f(options.masks ?? temporary!));
    } finally {
      temporary?.dispose();
    }
  }

  return attend(q, k, v) as tf.Tensor4D;
}

/** Rows [s, e) of the second-to-last axis. */
function rows(x: tf.Tensor, s: number, e: number): tf.Tensor {
  const begin = x.shape.map(() => 0);
  const size = x.shape.map(() => -1);
  begin[x.rank - 2] = s;
  size[x.rank - 2] = e - s;
  return x.slice(begin, size);
}

/** Columns [s, e) of the last axis. */
function cols(x: tf.Tensor, s: number, e: number): tf.Tensor {
  const begin = x.shape.map(() => 0);
  const size = x.shape.map(() => -1);
  begin[x.rank - 1] = s;
  size[x.rank - 1] = e - s;
  return x.slice(begin, size);
}

/** Zero-pad the second-to-last axis at the end to `length`. */
function padRows(x: tf.Tensor, length: number): tf.Tensor {
  const pad = x.shape.map((): [number, number] => [0, 0]);
  pad[x.rank - 2] = [0, length - x.shape[x.rank - 2]!];
  return tf.pad(x, pad);
}

/**
 * [BH, T, last] → BH tensors [T, last] through one read of the data: on wasm, slice and gather
 * cost ~0.5 ms per head here (slice first copies the whole input out of the wasm heap).
 */
function splitHeads(x: tf.Tensor, heads: number, T: number, last: number): tf.Tensor2D[] {
  const data = x.dataSync() as Float32Array;
  const size = T * last;
  return Array.from({ length: heads }, (_, i) => tf.tensor2d(data.subarray(i * size, (i + 1) * size), [T, last]));
}

/** Inverse of splitHeads: BH tensors [T, last] → [BH, T, last]. */
function mergeHeads(parts: tf.Tensor[]): tf.Tensor3D {
  const [T, last] = parts[0]!.shape as [number, number];
  const out = new Float32Array(parts.length * T * last);
  parts.forEach((p, i) => out.set(p.dataSync(), i * T * last));
  return tf.tensor3d(out, [parts.length, T, last]);
}

/** Swap the last two axes (operands are transposed once up front so every matMul is untransposed). */
function transpose(x: tf.Tensor): tf.Tensor {
  return x.rank === 2 ? x.transpose() : x.transpose([0, 2, 1]);
}
