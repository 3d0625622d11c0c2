import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ComponentRegistry, ConfigError, Instantiator, createContainer } from '@taskforge/core';
import {
  Gpt2,
  LAYER_NORM_GRAD_KERNEL,
  LAYER_NORM_KERNEL,
  layerNorm,
  type ForwardOptions,
  type Gpt2Hparams,
} from './gpt2.js';
import { createGpt2, gpt2Schema, plugin } from './index.js';

const T = 64; // an 8×8 image
const base: Gpt2Hparams = {
  embed_dim: 16,
  num_heads: 2,
  num_layers: 2,
  dropout: 0,
  init_std: 0.02,
  residual_norm: false,
  num_positions: T,
  num_vocab: 4,
  attention_block_size: 24, // 24 + 24 + 16: several attention blocks, the last one ragged
};

function randomTokens(batch: number, seed: number, vocab = base.num_vocab): number[][] {
  let s = seed;
  const next = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  return Array.from({ length: batch }, () => Array.from({ length: T }, () => Math.floor(next() * vocab)));
}

/** Hidden states [B, T, D] as arrays (the backbone has no head; its outputs are what the tests compare). */
function logitsOf(
  model: Gpt2,
  tokens: number[][],
  options: ForwardOptions = { training: false, seed: 0 },
): number[][][] {
  return tf.tidy(() => model.forward(tf.tensor2d(tokens, undefined, 'int32'), options).hidden.arraySync());
}

function crossEntropy(logits: tf.Tensor3D, tokens: tf.Tensor2D, vocab: number): tf.Scalar {
  return tf.logSoftmax(logits).mul(tf.oneHot(tokens, vocab).toFloat()).sum(-1).mean().neg() as tf.Scalar;
}

describe.each(['cpu', 'wasm'])('Gpt2 on %s', (backend) => {
  let model: Gpt2;
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
    model = new Gpt2(base, { seed: 1 });
  });
  afterAll(() => model.dispose());

  it('returns hidden states [B,T,D] and no head outputs', () => {
    tf.tidy(() => {
      const { hidden } = model.forward(tf.tensor2d(randomTokens(3, 1), undefined, 'int32'), {
        training: false,
        seed: 0,
      });
      expect(hidden.shape).toEqual([3, T, 16]);
      expect(model.hiddenSize).toBe(16);
      expect((model as unknown as Record<string, unknown>)['classify']).toBeUndefined();
    });
  });

  it('is causal: output i depends only on x_0 .. x_{i-1}', () => {
    const tokens = randomTokens(1, 2);
    const j = 20;
    const changed = tokens.map((row) => row.slice());
    changed[0]![j] = (tokens[0]![j]! + 1) % base.num_vocab;
    const a = logitsOf(model, tokens)[0]!;
    const b = logitsOf(model, changed)[0]!;
    for (let i = 0; i <= j; i++) for (let v = 0; v < 16; v++) expect(b[i]![v]).toBeCloseTo(a[i]![v]!, 5);
    const diff = Math.max(...a[j + 1]!.map((x, v) => Math.abs(x - b[j + 1]![v]!)));
    expect(diff).toBeGreaterThan(1e-4);
  });

  it('decodes with the KV cache exactly like the full forward pass', () => {
    const tokens = randomTokens(2, 3);
    const full = logitsOf(model, tokens);
    const cache = model.createCache(2);
    try {
      for (let p = 0; p < T; p++) {
        const step = tf.tidy(() => {
          const prev =
            p === 0
              ? null
              : tf.tensor1d(
                  tokens.map((row) => row[p - 1]!),
                  'int32',
                );
          return model.step(prev, cache).arraySync();
        });
        for (let b = 0; b < 2; b++) for (let v = 0; v < 16; v++) expect(step[b]![v]).toBeCloseTo(full[b]![p]![v]!, 4);
      }
      expect(() => model.step(tf.tensor1d([0, 0], 'int32'), cache)).toThrow(/cache is full/);
    } finally {
      cache.dispose();
    }
  });

  it('learns a repeating pattern (loss falls) with gradients for every variable', () => {
    const trainee = new Gpt2({ ...base, embed_dim: 16 }, { seed: 2 });
    const rows = Array.from({ length: 4 }, (_, b) => Array.from({ length: T }, (_, i) => (i + b) % 4));
    const tokens = tf.tensor2d(rows, undefined, 'int32');
    // A next-token head of the test's own: the backbone has none.
    const head = tf.variable(tf.randomNormal([16, 4], 0, 0.02, 'float32', 5));
    const optimizer = tf.train.adam(1e-2);
    const vars = { ...trainee.namedVariables(), head };
    const lossOf = () =>
      tf.tidy(() => {
        const { hidden } = trainee.forward(tokens, { training: true, seed: 0 });
        const logits = hidden.reshape([-1, 16]).matMul(head).reshape([4, T, 4]) as tf.Tensor3D;
        return crossEntropy(logits, tokens, 4);
      });
    const losses: number[] = [];
    let tensors = 0;
    for (let s = 0; s < 40; s++) {
      if (s === 1) tensors = tf.memory().numTensors;
      const { value, grads } = tf.variableGrads(lossOf, Object.values(vars));
      if (s === 0) {
        for (const [name, v] of Object.entries(vars)) {
          expect(
            tf.tidy(() => grads[v.name]!.abs().max().dataSync()[0]),
            name,
          ).toBeGreaterThan(0);
        }
      }
      optimizer.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
      losses.push(value.dataSync()[0]!);
      tf.dispose([value, grads]);
    }
    expect(losses[0]).toBeGreaterThan(Math.log(4));
    expect(losses.at(-1)).toBeLessThan(losses[0]! * 0.5);
    expect(tf.memory().numTensors, 'tensors leaked by a training step').toBe(tensors);
    tf.dispose([tokens, head]);
    optimizer.dispose();
    trainee.dispose();
  });
});

describe('Gpt2 options', () => {
  beforeAll(() => tf.setBackend('cpu'));

  it('residual_norm switches to the iGPT block and changes the outputs', () => {
    const plain = new Gpt2(base, { seed: 3 });
    const normed = new Gpt2({ ...base, residual_norm: true }, { seed: 3 });
    const tokens = randomTokens(1, 4);
    const a = logitsOf(plain, tokens).flat(2);
    const b = logitsOf(normed, tokens).flat(2);
    expect(Math.max(...a.map((x, i) => Math.abs(x - b[i]!)))).toBeGreaterThan(1e-3);
    plain.dispose();
    normed.dispose();
  });

  it('same init seed gives the same weights; another seed does not', () => {
    const [a, b, c] = [1, 1, 2].map((seed) => new Gpt2(base, { seed }));
    const w = (m: Gpt2) => m.namedVariables()['blocks.1.attn.qkv.kernel']!.dataSync();
    expect(Array.from(w(a!))).toEqual(Array.from(w(b!)));
    expect(Array.from(w(a!))).not.toEqual(Array.from(w(c!)));
    [a, b, c].forEach((m) => m!.dispose());
  });

  it('init seed 0 (the default) is deterministic too, for every variable', () => {
    // tok_embed is drawn first; a raw seed of 0 would make TF.js draw it unseeded.
    const [a, b] = [0, 0].map((seed) => new Gpt2(base, { seed }));
    const va = a!.namedVariables();
    const vb = b!.namedVariables();
    for (const name of Object.keys(va))
      expect(Array.from(va[name]!.dataSync()), name).toEqual(Array.from(vb[name]!.dataSync()));
    [a, b].forEach((m) => m!.dispose());
  });

  it('applies seeded dropout only when training, also with step seed 0', () => {
    const zero = new Gpt2({ ...base, dropout: 0.5 }, { seed: 4 });
    const t0 = randomTokens(1, 5);
    expect(logitsOf(zero, t0, { training: true, seed: 0 })).toEqual(logitsOf(zero, t0, { training: true, seed: 0 }));
    zero.dispose();
  });

  it('applies seeded dropout only when training', () => {
    const model = new Gpt2({ ...base, dropout: 0.5 }, { seed: 4 });
    const tokens = randomTokens(1, 5);
    const evalA = logitsOf(model, tokens);
    expect(logitsOf(model, tokens)).toEqual(evalA);
    const trainA = logitsOf(model, tokens, { training: true, seed: 7 });
    expect(logitsOf(model, tokens, { training: true, seed: 7 })).toEqual(trainA);
    expect(logitsOf(model, tokens, { training: true, seed: 8 })).not.toEqual(trainA);
    expect(trainA).not.toEqual(evalA);
    model.dispose();
  });

  it('layer=l returns the residual stream after l blocks through blocks.l.ln1 (ln_f for the last)', () => {
    const deep = new Gpt2({ ...base, num_layers: 3 }, { seed: 6 });
    const vars = deep.namedVariables();
    // Distinct LayerNorm parameters, so taking the wrong LayerNorm (or the wrong depth) shows.
    for (const [i, name] of ['blocks.0.ln1', 'blocks.1.ln1', 'blocks.2.ln1', 'ln_f'].entries()) {
      vars[`${name}.gamma`]!.assign(tf.randomNormal([16], 1, 0.5, 'float32', 10 + i));
      vars[`${name}.beta`]!.assign(tf.randomNormal([16], 0, 0.5, 'float32', 20 + i));
    }
    const tokens = randomTokens(2, 9);
    const at = (layer?: number) =>
      logitsOf(deep, tokens, { training: false, seed: 0, ...(layer === undefined ? {} : { layer }) });
    const maxDiff = (a: number[][][], b: number[][][]) => {
      const x = a.flat(2);
      const y = b.flat(2);
      return Math.max(...x.map((v, i) => Math.abs(v - y[i]!)));
    };
    expect(at(3)).toEqual(at());
    // Layer 0, by hand: [sos, embeddings of tokens 0 .. T−2] + positions, through blocks.0.ln1.
    const embedded = tf.tidy(() => {
      const t = tf.tensor2d(tokens, undefined, 'int32');
      const sos = tf.tile(vars['sos']!.reshape([1, 1, 16]), [2, 1, 1]);
      const x = tf.concat([sos, tf.gather(vars['tok_embed']!, t.slice([0, 0], [2, T - 1]))], 1);
      const h = x.add(vars['pos_embed']!);
      const { mean, variance } = tf.moments(h, -1, true);
      const n = h.sub(mean).mul(tf.rsqrt(variance.add(1e-5)));
      return n.mul(vars['blocks.0.ln1.gamma']!).add(vars['blocks.0.ln1.beta']!).arraySync() as number[][][];
    });
    expect(maxDiff(at(0), embedded)).toBeLessThan(1e-5);
    // Layers 1, 2: a model with deep's first l blocks whose ln_f is deep's blocks.l.ln1.
    for (const l of [1, 2]) {
      const shallow = new Gpt2({ ...base, num_layers: l }, { seed: 99 });
      for (const [name, v] of Object.entries(shallow.namedVariables()))
        v.assign(vars[name.startsWith('ln_f.') ? name.replace('ln_f', `blocks.${l}.ln1`) : name]!);
      expect(maxDiff(at(l), logitsOf(shallow, tokens)), `layer ${l}`).toBeLessThan(1e-5);
      expect(maxDiff(at(l), at(l + 1)), `layer ${l} vs ${l + 1}`).toBeGreaterThan(1e-2);
      shallow.dispose();
    }
    for (const bad of [-1, 4, 1.5])
      expect(() => at(bad), String(bad)).toThrow(`layer ${bad} is not an integer in 0 .. 3 (num_layers)`);
    expect(deep.numLayers).toBe(3);
    deep.dispose();
  });

  it('names its variables like nanoGPT, and holds no heads', () => {
    const model = new Gpt2(base);
    const names = Object.keys(model.namedVariables());
    for (const n of [
      'tok_embed',
      'pos_embed',
      'sos',
      'blocks.0.ln1.gamma',
      'blocks.0.attn.qkv.kernel',
      'blocks.1.mlp.proj.bias',
      'ln_f.gamma',
    ])
      expect(names).toContain(n);
    expect(names.filter((n) => n.includes('head'))).toEqual([]);
    expect(names).not.toContain('blocks.2.ln1.gamma');
    model.dispose();
  });
});

describe('backbone/gpt2 component', () => {
  const dataArgs = { num_positions: T, num_vocab: 4 };

  it('fills defaults and registers under backbone/gpt2', () => {
    const specs: { kind: string; name: string }[] = [];
    plugin.register({ register: (spec) => specs.push(spec) });
    expect(specs.map((s) => `${s.kind}/${s.name}`)).toEqual(['backbone/gpt2']);
    expect(gpt2Schema.parse({})).toEqual({
      embed_dim: 16,
      num_heads: 2,
      num_layers: 8,
      dropout: 0,
      init_std: 0.02,
      residual_norm: false,
      attention_block_size: 128,
      init_seed: 0,
    });
  });

  it('rejects embed_dim not divisible by num_heads, naming both and a fix', () => {
    const result = gpt2Schema.safeParse({ embed_dim: 10, num_heads: 4 });
    expect(result.success).toBe(false);
    expect(result.error!.issues[0]!.path).toEqual(['embed_dim']);
    expect(result.error!.issues[0]!.message).toMatch(
      /embed_dim \(10\) must be divisible by num_heads \(4\).*num_heads=2/,
    );
    // The one validation on the way to the model is the Instantiator's (createGpt2 trusts its parsed input).
    const registry = new ComponentRegistry();
    registry.registerPlugin(plugin);
    const build = () =>
      new Instantiator(registry).create(
        'backbone',
        { _target_: 'backbone/gpt2', embed_dim: 10, num_heads: 4 },
        { container: createContainer(), modelDataArgs: dataArgs },
      );
    expect(build).toThrow(ConfigError);
    expect(build).toThrow(/backbone\.embed_dim/);
  });

  it('rejects unknown keys and out-of-range values', () => {
    expect(gpt2Schema.safeParse({ n_embd: 16 }).success).toBe(false);
    expect(gpt2Schema.safeParse({ dropout: 1 }).success).toBe(false);
    expect(gpt2Schema.safeParse({ num_layers: 0 }).success).toBe(false);
    expect(gpt2Schema.safeParse({ attention_block_size: 0 }).success).toBe(false);
  });

  it("answers Hugging Face's and nanoGPT's key names with its own (keyAliases), each a key it has", () => {
    const registry = new ComponentRegistry();
    registry.registerPlugin(plugin);
    const aliases = registry.resolve('backbone/gpt2').keyAliases!;
    for (const ours of Object.values(aliases)) expect(Object.keys(gpt2Schema.shape)).toContain(ours);
    const build = () =>
      new Instantiator(registry).create(
        'backbone',
        { _target_: 'backbone/gpt2', n_layer: 2, n_embd: 32 },
        { container: createContainer(), modelDataArgs: dataArgs },
      );
    expect(build).toThrow(ConfigError);
    expect(build).toThrow(/backbone\/gpt2 has no 'n_layer': that is another library's name for its 'num_layers'/);
    expect(build).toThrow(/did you mean 'backbone\.embed_dim'/);
  });

  it('explains which modelDataArgs are missing', () => {
    const err = (() => {
      try {
        createGpt2(gpt2Schema.parse({ num_layers: 1 }), { num_positions: 0 });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems.map((p) => p.path);
    expect(problems).toEqual(['modelDataArgs.num_positions', 'modelDataArgs.num_vocab']);
    expect((err as Error).message).toMatch(/positive integer num_vocab from the data module/);
  });

  it('builds a model sized by modelDataArgs', () => {
    tf.setBackend('cpu');
    const model = createGpt2(gpt2Schema.parse({ num_layers: 1, embed_dim: 8 }), { num_positions: 16, num_vocab: 5 });
    const vars = model.namedVariables();
    expect(vars['tok_embed']!.shape).toEqual([5, 8]);
    expect(vars['pos_embed']!.shape).toEqual([16, 8]);
    expect(vars['ln_f.gamma']!.shape).toEqual([8]);
    model.dispose();
  });
});

describe('Gpt2 on wasm (packed fused attention) against cpu (split heads, plain ops)', () => {
  afterAll(() => tf.setBackend('cpu'));

  /** Hidden states and the gradients of a loss w.r.t. every variable, on `backend`, from seed-identical weights. */
  async function run(backend: string, config: Gpt2Hparams): Promise<Record<string, Float32Array>> {
    expect(await tf.setBackend(backend)).toBe(true);
    const model = new Gpt2(config, { seed: 4 });
    const vars = model.namedVariables();
    const tokens = tf.tensor2d(randomTokens(2, 5, config.num_vocab), undefined, 'int32');
    const w = tf.randomNormal([2, T, config.embed_dim], 0, 1, 'float32', 6);
    const names = Object.keys(vars);
    const { value, grads } = tf.variableGrads(
      () => model.forward(tokens, { training: false, seed: 0 }).hidden.mul(w).sum() as tf.Scalar,
      names.map((n) => vars[n]!),
    );
    const out: Record<string, Float32Array> = {
      hidden: tf.tidy(() => model.forward(tokens, { training: false, seed: 0 }).hidden.dataSync() as Float32Array),
    };
    for (const n of names) out[n] = grads[vars[n]!.name]!.dataSync() as Float32Array;
    tf.dispose([value, grads, tokens, w]);
    model.dispose();
    return out;
  }

  it.each([
    ['2 heads of 8', { ...base }],
    ['4 heads of 3, residual_norm', { ...base, embed_dim: 12, num_heads: 4, residual_norm: true }],
  ])('hidden states and every gradient agree (%s)', async (_name, config) => {
    const cpu = await run('cpu', config);
    const wasm = await run('wasm', config);
    expect(Object.keys(wasm)).toEqual(Object.keys(cpu));
    for (const [name, expected] of Object.entries(cpu)) {
      const actual = wasm[name]!;
      let scale = 0;
      let diff = 0;
      for (let i = 0; i < expected.length; i++) {
        scale = Math.max(scale, Math.abs(expected[i]!));
        diff = Math.max(diff, Math.abs(actual[i]! - expected[i]!));
      }
      expect(scale, name).toBeGreaterThan(0);
      expect(diff, name).toBeLessThan(1e-4 * Math.max(1, scale));
    }
  });

  it('splits and merges no heads on wasm: no Transpose or Slice in the attention, forward or backward', async () => {
    expect(await tf.setBackend('wasm')).toBe(true);
    const model = new Gpt2(base, { seed: 4 });
    const vars = Object.values(model.namedVariables());
    const tokens = tf.tensor2d(randomTokens(2, 5), undefined, 'int32');
    const info = await tf.profile(() => {
      const { value, grads } = tf.variableGrads(
        () => model.forward(tokens, { training: false, seed: 0 }).hidden.square().sum() as tf.Scalar,
        vars,
      );
      tf.dispose([value, grads]);
    });
    const names = info.kernels.map((k) => k.name);
    expect(names.filter((n) => n === 'TaskforgeCausalAttentionPacked')).toHaveLength(base.num_layers);
    expect(names.filter((n) => n === 'TaskforgeCausalAttentionPackedGrad')).toHaveLength(base.num_layers);
    expect(names).not.toContain('TaskforgeCausalAttention');
    // Head split/merge would transpose rank-4 [B, T, H, hd] / [B, H, T, hd] tensors, and the
    // split qkv projection slices its kernel; only the dense layers' rank-2 products remain.
    const shapesOf = (name: string) =>
      info.kernels.filter((k) => k.name === name).flatMap((k) => k.inputShapes.map((s) => JSON.stringify(s)));
    expect(shapesOf('Transpose').length).toBeGreaterThan(0);
    expect(shapesOf('Transpose').map((s) => JSON.parse(s).length)).not.toContain(4);
    const D = base.embed_dim;
    expect(shapesOf('Slice')).not.toContain(JSON.stringify([D, 3 * D]));
    expect(shapesOf('Slice')).not.toContain(JSON.stringify([3 * D]));
    tokens.dispose();
    model.dispose();
  });
});

describe.each(['cpu', 'wasm'])('layerNorm on %s', (backend) => {
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
  });

  // D = 6 (a vector and a 2-element tail in the wasm kernels), 16 and 128 (whole vectors, the bench's widths).
  it.each([6, 16, 128])('matches autodiff of the plain formula: output, dx, dγ, dβ (D = %i)', (D) => {
    const [expected, actual] = [false, true].map((custom) =>
      tf.tidy(() => {
        const x = tf.randomNormal([3, 5, D], 0, 2, 'float32', 1);
        const gamma = tf.randomNormal([D], 1, 0.5, 'float32', 2);
        const beta = tf.randomNormal([D], 0, 1, 'float32', 3);
        const w = tf.randomNormal([3, 5, D], 0, 1, 'float32', 4);
        const plain = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
          const { mean, variance } = tf.moments(a, -1, true);
          return a
            .sub(mean)
            .mul(tf.rsqrt(variance.add(1e-5)))
            .mul(g)
            .add(b);
        };
        const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
          (custom ? layerNorm(a, { gamma: g, beta: b }) : plain(a, g, b)).mul(w).sum();
        const { value, grads } = tf.valueAndGrads(f)([x, gamma, beta]);
        return [value, ...grads].map((t) => Array.from(t.dataSync()));
      }),
    );
    expect(actual!.map((a) => a.length)).toEqual([1, 15 * D, D, D]);
    actual!.forEach((values, i) => values.forEach((v, j) => expect(v).toBeCloseTo(expected![i]![j]!, 4)));
  });

  it(`runs ${backend === 'wasm' ? 'one kernel per pass' : 'ops'}`, async () => {
    const x = tf.variable(tf.randomNormal([4, 7, 16]));
    const gamma = tf.variable(tf.ones([16]));
    const beta = tf.variable(tf.zeros([16]));
    const { kernelNames } = await tf.profile(() => {
      const { value, grads } = tf.variableGrads(() => layerNorm(x, { gamma, beta }).square().sum() as tf.Scalar);
      tf.dispose([value, grads]);
    });
    if (backend === 'wasm') {
      expect(kernelNames).toEqual(expect.arrayContaining([LAYER_NORM_KERNEL, LAYER_NORM_GRAD_KERNEL]));
      expect(kernelNames).not.toContain('Mean');
    } else expect(kernelNames).not.toContain(LAYER_NORM_KERNEL);
    tf.dispose([x, gamma, beta]);
  });
});
