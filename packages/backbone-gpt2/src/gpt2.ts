/**
 * GPT-2 decoder over token sequences (minGPT / nanoGPT style) in TensorFlow.js. It is a backbone:
 * it maps tokens to hidden states; heads (next-token logits, class logits) belong to the task.
 *
 * Input position i sees [sos, x_0 .. x_{i-1}], so the hidden state at i predicts x_i and a whole
 * sequence is scored in one pass; sampling starts from the learned `sos` vector alone.
 *
 * Every op used here has forward and backward kernels on the cpu, wasm and webgl backends.
 * In particular `tf.gather` is avoided: its gradient needs `UnsortedSegmentSum`, which wasm
 * lacks, so token embeddings are a one-hot matMul (fine for palette-sized vocabularies) and the
 * position table is sliced, not gathered.
 */
import * as tf from '@tensorflow/tfjs';
import { linear, mixSeed, sumRows, type Backbone, type NamedVariables } from '@taskforge/core';
import { CausalMasks, causalSelfAttention } from './attention.js';
import { fusedCausalAttentionPacked } from './fused-attention.js';
import { gelu } from './gelu.js';
import { layerNorm, type Norm } from './layer-norm.js';

export { LAYER_NORM_GRAD_KERNEL, LAYER_NORM_KERNEL, layerNorm } from './layer-norm.js';

/**
 * The model's hyper-parameters: the validated `backbone` config node (`Gpt2Config`, less
 * `init_seed`) plus the data's shapes (`num_positions`, `num_vocab` from `modelDataArgs`).
 */
export interface Gpt2Hparams {
  embed_dim: number;
  num_heads: number;
  num_layers: number;
  /** Dropout on embeddings and residual branches; only when training (not on attention weights, see attention.ts). */
  dropout: number;
  /** Std of the normal initialiser for kernels and embeddings. */
  init_std: number;
  /** Lightning Transformers' iGPT block: LayerNorm applied to the residual stream itself. */
  residual_norm: boolean;
  /** Longest sequence (T); sizes the position table. */
  num_positions: number;
  /** Vocabulary size (V); sizes the token table. */
  num_vocab: number;
  /** Query rows per attention block (memory-efficient attention, see attention.ts); default 128. */
  attention_block_size?: number;
}

/** What `forward` returns; an object so backbones can add outputs (attention maps, ...) without breaking tasks. */
export interface ForwardOutput {
  /** [B, T, D], after the final LayerNorm (or, with `layer`, the LayerNorm at that depth). */
  hidden: tf.Tensor3D;
}

export interface ForwardOptions {
  training: boolean;
  /** Seeds dropout; ignored when not training or when dropout is 0. */
  seed: number;
  /**
   * Return the hidden states at this depth instead of the last: an integer in 0 .. num_layers.
   * `l < num_layers`: the input of block `l` after that block's first LayerNorm (`blocks.l.ln1`),
   * i.e. the residual stream after `l` blocks, normalised (0: the token + position embeddings);
   * `num_layers` (the default): after the final LayerNorm `ln_f`. This is iGPT's linear-probe
   * feature n^l = layer_norm(h^l) (Chen et al. 2020, section 3.3); blocks from `l` on are not run.
   */
  layer?: number;
}

/** Keys and values of every layer for the positions decoded so far (inference only). */
export class KVCache {
  /** Number of positions already decoded; the next `step` computes position `length`. */
  length = 0;
  readonly keys: (tf.Tensor4D | null)[];
  readonly values: (tf.Tensor4D | null)[];

  constructor(
    readonly batch: number,
    numLayers: number,
  ) {
    this.keys = new Array<tf.Tensor4D | null>(numLayers).fill(null);
    this.values = new Array<tf.Tensor4D | null>(numLayers).fill(null);
  }

  /** Append [B, H, 1, hd] keys/values of layer `l`; returns the full [B, H, t, hd] history. */
  append(l: number, k: tf.Tensor4D, v: tf.Tensor4D): [tf.Tensor4D, tf.Tensor4D] {
    const oldK = this.keys[l];
    const oldV = this.values[l];
    const newK = tf.keep(oldK ? tf.concat([oldK, k], 2) : k.clone());
    const newV = tf.keep(oldV ? tf.concat([oldV, v], 2) : v.clone());
    oldK?.dispose();
    oldV?.dispose();
    this.keys[l] = newK;
    this.values[l] = newV;
    return [newK, newV];
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t?.dispose();
    this.keys.fill(null);
    this.values.fill(null);
  }
}

// ---- small named pieces ------------------------------------------------------------------------

interface Dense {
  kernel: tf.Tensor;
  bias?: tf.Tensor;
}
/**
 * How a layer's heads attend. `heads`: q, k, v split into [B, H, T, hd] (full causal attention
 * with plain ops, or one new position over a cache). `packed`: straight from the qkv projection
 * [B, T, 3D] to the merged heads [B, T, D] (the fused wasm kernels; no head split or merge).
 */
type Attend =
  | { heads: (l: number, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D }
  | { packed: (qkv: tf.Tensor3D) => tf.Tensor3D };
type Drop = (t: tf.Tensor) => tf.Tensor;

/** x[B, T, in] · kernel[in, out] (+ bias) as one 2-D product with a wasm-friendly gradient (core's `linear`). */
function dense(x: tf.Tensor3D, { kernel, bias }: Dense): tf.Tensor3D {
  const [B, T, inDim] = x.shape;
  return linear(x.reshape([B * T, inDim]), kernel as tf.Tensor2D, bias as tf.Tensor1D | undefined).reshape([
    B,
    T,
    kernel.shape[1]!,
  ]);
}

/**
 * The attention formula as written: softmax(q·kᵀ / √hd)·v over [B, H, Tq, hd] queries and
 * [B, H, Tk, hd] keys/values, with no mask. Decoding uses it directly (one query row that may see
 * every cached key); full sequences take the fast path, `causalSelfAttention` (attention.ts),
 * which computes the same with a causal mask, block by block.
 */
export function attention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): tf.Tensor4D {
  const scores = tf.matMul(q, k, false, true).mul(1 / Math.sqrt(q.shape[3]!));
  return tf.matMul(tf.softmax(scores, -1), v) as tf.Tensor4D;
}

export class Gpt2 implements Backbone {
  readonly config: Readonly<Gpt2Hparams>;
  private readonly vars: NamedVariables = {};
  private readonly headDim: number;
  /** Additive causal masks of the attention blocks, built once. */
  private readonly masks = new CausalMasks();

  /** Throws RangeError when embed_dim is not a multiple of num_heads (the config schema reports it first). */
  constructor(config: Gpt2Hparams, options: { seed?: number } = {}) {
    if (config.embed_dim % config.num_heads !== 0) {
      throw new RangeError(`embed_dim (${config.embed_dim}) must be divisible by num_heads (${config.num_heads})`);
    }
    this.config = Object.freeze({ ...config });
    this.headDim = config.embed_dim / config.num_heads;
    this.initVariables(options.seed ?? 0);
  }

  /** Width D of the hidden states. */
  get hiddenSize(): number {
    return this.config.embed_dim;
  }

  /** Number of blocks; `forward`'s `layer` option takes 0 .. numLayers. */
  get numLayers(): number {
    return this.config.num_layers;
  }

  namedVariables(): NamedVariables {
    return { ...this.vars };
  }

  /** Idempotent: the task that owns this backbone and the Trainer may both dispose it. */
  dispose(): void {
    for (const v of Object.values(this.vars)) if (!v.isDisposed) v.dispose();
    this.masks.dispose();
  }

  /**
   * tokens int32 [B, T] (T ≤ num_positions) → `hidden` [B, T, D] after the final LayerNorm (or
   * at `options.layer`, see ForwardOptions); the state at i has seen sos and tokens 0 .. i−1
   * only. Throws RangeError when T > num_positions or `layer` is not an integer in 0 .. num_layers.
   */
  forward(tokens: tf.Tensor2D, options: ForwardOptions): ForwardOutput {
    const [B, T] = tokens.shape;
    const { embed_dim: D, num_positions, num_layers } = this.config;
    if (T > num_positions) throw new RangeError(`sequence length ${T} exceeds num_positions ${num_positions}`);
    const layer = options.layer ?? num_layers;
    if (!Number.isInteger(layer) || layer < 0 || layer > num_layers)
      throw new RangeError(`layer ${layer} is not an integer in 0 .. ${num_layers} (num_layers)`);
    const blockSize = this.config.attention_block_size ?? 128;
    const hidden = tf.tidy(() => {
      const drop = this.dropper(options);
      // Shift right: position i sees the embedding of token i-1, position 0 sees `sos`.
      const tok = tf.concat([this.sos(B), this.embedTokens(tokens.slice([0, 0], [B, T - 1]))], 1);
      const x = drop(addPositions(tok, this.v('pos_embed').slice([0, 0], [T, D]) as tf.Tensor2D)) as tf.Tensor3D;
      // On wasm the fused kernels read the qkv projection as it is (fused-attention.ts); other
      // backends split the heads and run the plain-ops attention (attention.ts).
      const attend: Attend =
        tf.getBackend() === 'wasm'
          ? { packed: (qkv) => fusedCausalAttentionPacked(qkv, this.config.num_heads) }
          : { heads: (_l, q, k, v) => causalSelfAttention(q, k, v, { blockSize, masks: this.masks }) };
      return this.body(x, attend, drop, layer);
    });
    return { hidden };
  }

  createCache(batch: number): KVCache {
    return new KVCache(batch, this.config.num_layers);
  }

  /**
   * Decode one position with cached keys/values: the same body as `forward`, over one position.
   * Pass `null` for the first position (its input is `sos`), then the token chosen for the previous
   * position. Returns its hidden state [B, D], equal to `forward(...).hidden[:, cache.length]` up to float
   * error. Throws when the token and position disagree, the batch differs or the cache is full.
   */
  step(token: tf.Tensor1D | null, cache: KVCache): tf.Tensor2D {
    const p = cache.length;
    const { embed_dim: D, num_positions } = this.config;
    if ((token === null) !== (p === 0)) {
      throw new Error(
        p === 0
          ? 'the first step takes null (it decodes from sos)'
          : `step ${p} needs the token chosen at position ${p - 1}`,
      );
    }
    if (p >= num_positions) throw new RangeError(`cache is full: all ${num_positions} positions decoded`);
    if (token && token.shape[0] !== cache.batch)
      throw new RangeError(`token batch ${token.shape[0]} != cache batch ${cache.batch}`);
    const B = cache.batch;
    const out = tf.tidy(() => {
      const tok = token === null ? this.sos(B) : this.embedTokens(token.reshape([B, 1]));
      const x = tok.add(this.v('pos_embed').slice([p, 0], [1, D])) as tf.Tensor3D;
      const attendCached: Attend = {
        heads: (l, q, k, v) => {
          const [keys, values] = cache.append(l, k, v);
          return attention(q, keys, values);
        },
      };
      return this.body(x, attendCached, (t) => t).reshape([B, D]) as tf.Tensor2D;
    });
    cache.length = p + 1;
    return out;
  }

  // ---- the body: blocks, then the final LayerNorm ------------------------------------------------

  /** Blocks 0 .. layer−1, then the LayerNorm at `layer`: ln_f after the last block, else `blocks.<layer>.ln1`. */
  private body(x: tf.Tensor3D, attend: Attend, drop: Drop, layer = this.config.num_layers): tf.Tensor3D {
    for (let l = 0; l < layer; l++) x = this.block(l, x, attend, drop);
    return layerNorm(x, this.norm(layer === this.config.num_layers ? 'ln_f' : `blocks.${layer}.ln1`));
  }

  private block(l: number, x: tf.Tensor3D, attend: Attend, drop: Drop): tf.Tensor3D {
    const ln1 = this.norm(`blocks.${l}.ln1`);
    const ln2 = this.norm(`blocks.${l}.ln2`);
    if (this.config.residual_norm) {
      // teddykoker/image-gpt as used by Lightning Transformers: ln_1 rewrites the residual stream.
      const h = layerNorm(x, ln1);
      const a = h.add(drop(this.selfAttention(l, h, attend))) as tf.Tensor3D;
      return a.add(drop(this.mlp(l, layerNorm(a, ln2)))) as tf.Tensor3D;
    }
    const a = x.add(drop(this.selfAttention(l, layerNorm(x, ln1), attend))) as tf.Tensor3D;
    return a.add(drop(this.mlp(l, layerNorm(a, ln2)))) as tf.Tensor3D;
  }

  /**
   * [B, T, D] → q, k, v as [B, H, T, hd] → attend → merge heads → output projection; or, packed,
   * [B, T, D] → qkv [B, T, 3D] → attend → [B, T, D] → output projection.
   */
  private selfAttention(l: number, x: tf.Tensor3D, attend: Attend): tf.Tensor3D {
    const [B, T] = x.shape;
    const { num_heads: H, embed_dim: D } = this.config;
    if ('packed' in attend)
      return dense(attend.packed(dense(x, this.linear(`blocks.${l}.attn.qkv`))), this.linear(`blocks.${l}.attn.proj`));
    const { kernel, bias } = this.linear(`blocks.${l}.attn.qkv`);
    // Split the small kernel rather than the [B, T, 3D] product: wasm slices copy their whole input.
    const [q, k, v] = [0, 1, 2].map((i) => {
      const part = { kernel: kernel.slice([0, i * D], [D, D]), bias: bias!.slice([i * D], [D]) };
      return dense(x, part).reshape([B, T, H, this.headDim]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
    });
    const y = attend.heads(l, q!, k!, v!);
    const merged = y.transpose([0, 2, 1, 3]).reshape([B, T, D]) as tf.Tensor3D;
    return dense(merged, this.linear(`blocks.${l}.attn.proj`));
  }

  private mlp(l: number, x: tf.Tensor3D): tf.Tensor3D {
    return dense(gelu(dense(x, this.linear(`blocks.${l}.mlp.fc`))), this.linear(`blocks.${l}.mlp.proj`));
  }

  // ---- embeddings and dropout ---------------------------------------------------------------------

  /** The learned start vector, [B, 1, D]. */
  private sos(B: number): tf.Tensor3D {
    return tf.tile(this.v('sos').reshape([1, 1, this.config.embed_dim]), [B, 1, 1]);
  }

  /** int32 [B, T] → [B, T, D] via one-hot · table (see the file comment on gather). */
  private embedTokens(tokens: tf.Tensor2D): tf.Tensor3D {
    const [B, T] = tokens.shape;
    const { num_vocab: V, embed_dim: D } = this.config;
    if (T === 0) return tf.zeros([B, 0, D]);
    const oneHot = tf.oneHot(tokens.reshape([B * T]).toInt(), V).toFloat() as tf.Tensor2D;
    return linear(oneHot, this.v('tok_embed') as tf.Tensor2D).reshape([B, T, D]);
  }

  private dropper({ training, seed }: ForwardOptions): Drop {
    const rate = this.config.dropout;
    if (!training || rate === 0) return (t) => t;
    let call = 0;
    // Each dropout site gets its own stream so masks are independent yet reproducible.
    return (t) => tf.dropout(t, rate, undefined, mixSeed(seed, call++));
  }

  // ---- variables (names as in nanoGPT; checkpoints use them) ---------------------------------------

  private initVariables(seed: number): void {
    const { embed_dim: D, num_layers: L, num_positions: P, num_vocab: V, init_std } = this.config;
    let n = 0;
    const normal = (name: string, shape: number[], std = init_std) =>
      // mixSeed never returns 0, which TF.js would take as "unseeded" (init_seed 0 is the default).
      this.add(name, tf.randomNormal(shape, 0, std, 'float32', mixSeed(seed, n++)));
    const zeros = (name: string, shape: number[]) => this.add(name, tf.zeros(shape));
    const ones = (name: string, shape: number[]) => this.add(name, tf.ones(shape));
    normal('tok_embed', [V, D]);
    normal('pos_embed', [P, D]);
    normal('sos', [D]);
    // GPT-2: scale residual-branch output projections by 1/sqrt(2L) so the stream's variance
    // does not grow with depth.
    const projStd = init_std / Math.sqrt(2 * L);
    for (let l = 0; l < L; l++) {
      const p = `blocks.${l}`;
      ones(`${p}.ln1.gamma`, [D]);
      zeros(`${p}.ln1.beta`, [D]);
      normal(`${p}.attn.qkv.kernel`, [D, 3 * D]);
      zeros(`${p}.attn.qkv.bias`, [3 * D]);
      normal(`${p}.attn.proj.kernel`, [D, D], projStd);
      zeros(`${p}.attn.proj.bias`, [D]);
      ones(`${p}.ln2.gamma`, [D]);
      zeros(`${p}.ln2.beta`, [D]);
      normal(`${p}.mlp.fc.kernel`, [D, 4 * D]);
      zeros(`${p}.mlp.fc.bias`, [4 * D]);
      normal(`${p}.mlp.proj.kernel`, [4 * D, D], projStd);
      zeros(`${p}.mlp.proj.bias`, [D]);
    }
    ones('ln_f.gamma', [D]);
    zeros('ln_f.beta', [D]);
  }

  private add(name: string, init: tf.Tensor): void {
    // TF.js variable names are global; leave them auto-generated so several models can coexist.
    this.vars[name] = tf.variable(init, true);
    init.dispose();
  }

  private v(name: string): tf.Variable {
    return this.vars[name]!;
  }

  private linear(prefix: string): Dense {
    return { kernel: this.v(`${prefix}.kernel`), bias: this.v(`${prefix}.bias`) };
  }

  private norm(prefix: string): Norm {
    return { gamma: this.v(`${prefix}.gamma`), beta: this.v(`${prefix}.beta`) };
  }
}

/**
 * tok [B, T, D] + pos [T, D] (broadcast over the batch), differentiable. pos's gradient is the
 * batch sum of dy as core's `sumRows` over [B, T·D]: autodiff of the broadcast add sums axis 0
 * with TF.js's `Sum`, which on wasm transposes the whole [B, T, D] gradient first (19 ms of a
 * large-config step, against ~2 ms).
 */
function addPositions(tok: tf.Tensor3D, pos: tf.Tensor2D): tf.Tensor3D {
  const [B, T, D] = tok.shape;
  return tf.customGrad((...args) => {
    const [t, p] = args as [tf.Tensor3D, tf.Tensor2D];
    return {
      value: t.add(p),
      gradFunc: (dy: tf.Tensor) => [dy, sumRows(dy.reshape([B, T * D])).reshape([T, D])],
    };
  })(tok, pos) as tf.Tensor3D;
}
