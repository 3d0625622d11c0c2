import type * as tf from '@tensorflow/tfjs';
import { TaskforgeError, type Backbone } from '@taskforge/core';

/**
 * What the iGPT task needs from its backbone. Declared here, matched structurally, so the task
 * depends on core only; `backbone/gpt2` (@taskforge/backbone-gpt2) implements it.
 */
export interface IgptBackbone extends Backbone {
  /** tokens int32 [B, T]; logits[:, i] predict token i from tokens 0 .. i-1 (a start vector feeds position 0). */
  forward(tokens: tf.Tensor2D, options: { training: boolean; seed: number }): { hidden: tf.Tensor3D; logits: tf.Tensor3D };
  /** [B, T, D] hidden states → [B, C] class logits. */
  classify(hidden: tf.Tensor3D): tf.Tensor2D;
  /** Key/value cache for incremental decoding of `batch` sequences. */
  createCache(batch: number): DecoderCache;
  /** Logits [B, V] of the next position; `null` for the first one, then the previous position's tokens. */
  step(token: tf.Tensor1D | null, cache: DecoderCache): tf.Tensor2D;
}

export interface DecoderCache {
  dispose(): void;
}

const METHODS = ['forward', 'classify', 'createCache', 'step'] as const;

export function asIgptBackbone(backbone: Backbone, target: string): IgptBackbone {
  const missing = METHODS.filter((m) => typeof (backbone as unknown as Record<string, unknown>)[m] !== 'function');
  if (missing.length) {
    throw new TaskforgeError(
      `task/vision/igpt needs a decoder backbone with ${METHODS.join(', ')}(), but the configured backbone ` +
        `(${target}) lacks ${missing.join(', ')}(). Use 'backbone: gpt2' (from @taskforge/backbone-gpt2).`,
      { exitCode: 2 },
    );
  }
  return backbone as IgptBackbone;
}
