import type * as tf from '@tensorflow/tfjs';
import { requireBackbone, type Backbone } from '@taskforge/core';

/**
 * What the iGPT task needs from its backbone: a causal decoder that returns hidden states (the
 * heads are the task's, see heads.ts). Declared here, matched structurally, so the task depends on
 * core only; `backbone/gpt2` (@taskforge/backbone-gpt2) implements it.
 */
export interface IgptBackbone extends Backbone {
  /** Width D of the hidden states. */
  readonly hiddenSize: number;
  /**
   * tokens int32 [B, T] → `hidden` [B, T, D]; position i has seen a start vector and tokens 0 .. i−1 only.
   * With `layer` (0 .. numLayers, used by `task.probe_layer`): the hidden states at that depth, as
   * iGPT's linear probe takes them (n^l = layer_norm(h^l); numLayers: the final ones).
   */
  forward(tokens: tf.Tensor2D, options: { training: boolean; seed: number; layer?: number }): { hidden: tf.Tensor3D };
  /** Number of blocks; needed only for the linear probe (`task.probe_layer`). */
  readonly numLayers?: number;
  /** Key/value cache for incremental decoding of `batch` sequences. */
  createCache(batch: number): DecoderCache;
  /** Hidden state [B, D] of the next position; `null` for the first one, then the previous position's tokens. */
  step(token: tf.Tensor1D | null, cache: DecoderCache): tf.Tensor2D;
}

export interface DecoderCache {
  dispose(): void;
}

/**
 * Checks `backbone` structurally (core's `requireBackbone`) and returns it typed as `IgptBackbone`.
 * @throws TaskforgeError (exit 2) naming what it lacks and the backbone to use instead.
 */
export function asIgptBackbone(backbone: Backbone, target: string): IgptBackbone {
  return requireBackbone<IgptBackbone>(backbone, {
    task: 'task/vision/igpt',
    what: 'a decoder backbone',
    methods: ['forward', 'createCache', 'step'],
    numbers: ['hiddenSize'],
    target,
    fix: "Use 'backbone: gpt2' (from @taskforge/backbone-gpt2).",
  });
}
