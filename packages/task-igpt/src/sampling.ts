import * as tf from '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import type { DecoderCache } from './backbone-api.js';

export interface SamplingOptions {
  /** Divides the logits; 0 means greedy (argmax). */
  temperature: number;
  /** Sample among the k most likely tokens only; null = all tokens. */
  topK: number | null;
}

/**
 * Draws one token from `logits` (one row, length V). Done in JS rather than with
 * `tf.multinomial`: rows are tiny (V ≤ 512) and a JS PRNG makes samples identical on every backend.
 */
export function sampleToken(
  logits: ArrayLike<number>,
  { temperature, topK }: SamplingOptions,
  random: () => number,
): number {
  const V = logits.length;
  if (temperature === 0 || topK === 1) return argmax(logits);
  let candidates = Array.from({ length: V }, (_, i) => i);
  if (topK !== null && topK < V) {
    // Stable sort: ties at the k-th place keep the lower token ids, matching tf.topk.
    candidates = candidates.sort((a, b) => logits[b]! - logits[a]!).slice(0, topK);
  }
  const max = Math.max(...candidates.map((i) => logits[i]!));
  const weights = candidates.map((i) => Math.exp((logits[i]! - max) / temperature));
  let u = random() * weights.reduce((a, b) => a + b, 0);
  for (let c = 0; c < candidates.length; c++) {
    u -= weights[c]!;
    if (u < 0) return candidates[c]!;
  }
  return candidates[candidates.length - 1]!; // only reached through float round-off
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** Next-token logits one position at a time: a backbone's cached `step` followed by an LM head. */
export interface TokenDecoder {
  createCache(batch: number): DecoderCache;
  /** Logits [B, V] of the next position; `null` for the first one, then the previous position's tokens. */
  step(token: tf.Tensor1D | null, cache: DecoderCache): tf.Tensor2D;
}

export interface GenerateOptions extends SamplingOptions {
  /** Sequence length to produce. */
  length: number;
  /** One entry per sequence: its given leading tokens (empty = unconditional). */
  prefixes: ArrayLike<number>[];
  seed: number;
}

/**
 * Autoregressive sampling with the decoder's key/value cache: one position per step for the
 * whole batch, given tokens forced where a prefix covers the position. Returns one sequence per
 * prefix.
 */
export async function generate(decoder: TokenDecoder, options: GenerateOptions): Promise<Int32Array[]> {
  const { length, prefixes } = options;
  const B = prefixes.length;
  const out = prefixes.map(() => new Int32Array(length));
  if (B === 0) return out;
  const random = seedrandom(`igpt-sample:${options.seed}`);
  const cache = decoder.createCache(B);
  let previous: tf.Tensor1D | null = null;
  try {
    for (let p = 0; p < length; p++) {
      const logits = decoder.step(previous, cache);
      const data = await logits.data();
      logits.dispose();
      const V = data.length / B;
      const column = new Int32Array(B);
      for (let b = 0; b < B; b++) {
        const prefix = prefixes[b]!;
        column[b] = p < prefix.length ? prefix[p]! : sampleToken(data.subarray(b * V, (b + 1) * V), options, random);
        out[b]![p] = column[b]!;
      }
      previous?.dispose();
      previous = tf.tensor1d(column, 'int32');
    }
  } finally {
    previous?.dispose();
    cache.dispose();
  }
  return out;
}
