/**
 * GPT-2 and its custom attention on the webgpu backend (Dawn) agree with the cpu backend:
 * forward, gradients and KV-cache decoding. Runs on a GPU or on Mesa's software Vulkan driver
 * (lavapipe, as on CI); skipped with the reason where Dawn finds no adapter. Shapes are tiny
 * because lavapipe is slow.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeWebgpu, selectBackend } from '@taskforge/core';
import { causalSelfAttention } from './attention.js';
import { Gpt2, type Gpt2Hparams } from './gpt2.js';

const probe = await probeWebgpu();
const why =
  'reason' in probe
    ? `no WebGPU adapter here (${probe.reason}); on Debian bookworm run ` +
      `\`bash .ci/install-lavapipe.sh\` as root to get a software one`
    : '';
if (why) console.warn(`webgpu tests skipped: ${why}`);

const T = 12;
const config: Gpt2Hparams = {
  embed_dim: 8,
  num_heads: 2,
  num_layers: 1,
  dropout: 0,
  init_std: 0.02,
  residual_norm: false,
  num_positions: T,
  num_vocab: 4,
  attention_block_size: 5, // blocks 5 + 5 + 2
};
const tokens = Array.from({ length: 2 }, (_, b) => Array.from({ length: T }, (_, i) => (i * (b + 1) + b) % 4));

async function read(ts: tf.Tensor[]): Promise<number[][]> {
  return Promise.all(ts.map(async (t) => Array.from(await t.data())));
}

function expectClose(actual: number[][], expected: number[][], digits: number, what: string): void {
  expect(actual.length).toBe(expected.length);
  expected.forEach((row, i) => {
    const diff = Math.max(...row.map((v, j) => Math.abs(v - actual[i]![j]!)));
    expect(diff, `${what} #${i}`).toBeLessThan(10 ** -digits);
  });
}

/** Builds the model on the current backend with weights copied from `weights` (so both backends start equal). */
function modelWith(weights: Record<string, number[]>): Gpt2 {
  const model = new Gpt2(config, { seed: 1 });
  for (const [name, v] of Object.entries(model.namedVariables())) v.assign(tf.tensor(weights[name]!, v.shape));
  return model;
}

/** A fixed next-token head of the test's own ([D, V]; the backbone has none), equal on every backend. */
const headValues = Array.from({ length: 8 * 4 }, (_, i) => Math.sin(i + 1) * 0.5);

/**
 * Loss, hidden states and the gradients of a CE loss (through the test's head) w.r.t. every variable, in
 * variable order.
 */
async function forwardAndGrads(model: Gpt2): Promise<number[][]> {
  const vars = model.namedVariables();
  const ids = tf.tensor2d(tokens, undefined, 'int32');
  const head = tf.tensor2d(headValues, [8, 4]);
  const { value, grads } = tf.variableGrads(() => {
    const { hidden } = model.forward(ids, { training: false, seed: 0 });
    const logits = hidden.reshape([-1, 8]).matMul(head);
    return tf
      .logSoftmax(logits)
      .mul(tf.oneHot(ids.reshape([-1]), 4).toFloat())
      .sum(-1)
      .mean()
      .neg() as tf.Scalar;
  }, Object.values(vars));
  const logits = tf.tidy(() => model.forward(ids, { training: false, seed: 0 }).hidden);
  const out = await read([value, logits, ...Object.values(vars).map((v) => grads[v.name]!)]);
  tf.dispose([ids, head, value, logits, grads]);
  return out;
}

describe.skipIf(why !== '')('GPT-2 on webgpu matches cpu', () => {
  let weights: Record<string, number[]>;
  let cpu: number[][];

  beforeAll(async () => {
    await selectBackend('cpu');
    const model = new Gpt2(config, { seed: 1 });
    const entries = Object.entries(model.namedVariables());
    weights = Object.fromEntries(
      await Promise.all(entries.map(async ([n, v]) => [n, Array.from(await v.data())] as const)),
    );
    cpu = await forwardAndGrads(model);
    model.dispose();
    await selectBackend('webgpu');
  });
  afterAll(() => selectBackend('cpu'));

  it('custom attention (batched formulation, ragged blocks): output and q, k, v gradients', async () => {
    const shape: [number, number, number, number] = [1, 2, 9, 4];
    const compute = async (backend: string) => {
      await tf.setBackend(backend);
      const [q, k, v, w] = [0, 1, 2, 3].map((i) => tf.randomNormal(shape, 0, 1, 'float32', 40 + i)) as tf.Tensor4D[];
      const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
        causalSelfAttention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, { blockSize: 4 })
          .mul(w!)
          .sum();
      const outs = [causalSelfAttention(q!, k!, v!, { blockSize: 4 }), ...tf.grads(f)([q!, k!, v!])];
      const values = await read(outs);
      tf.dispose([q, k, v, w, ...outs]);
      return values;
    };
    const expected = await compute('cpu');
    expectClose(await compute('webgpu'), expected, 4, 'attention output / dq / dk / dv');
  });

  it('forward (loss, hidden states) and the gradient of every variable', async () => {
    await tf.setBackend('webgpu');
    const model = modelWith(weights);
    const gpu = await forwardAndGrads(model);
    model.dispose();
    expect(cpu.slice(2).every((g) => g.some((x) => x !== 0))).toBe(true);
    expectClose(gpu, cpu, 4, 'loss / hidden / gradients');
  });

  it('KV-cache decoding gives the full forward pass hidden states', async () => {
    await tf.setBackend('webgpu');
    const model = modelWith(weights);
    const full = await read([
      tf.tidy(() => model.forward(tf.tensor2d(tokens, undefined, 'int32'), { training: false, seed: 0 }).hidden),
    ]);
    const cache = model.createCache(2);
    const before = tf.memory().numTensors;
    try {
      for (let p = 0; p < T; p++) {
        const prev =
          p === 0
            ? null
            : tf.tensor1d(
                tokens.map((row) => row[p - 1]!),
                'int32',
              );
        const hidden = model.step(prev, cache);
        const [step] = await read([hidden]);
        hidden.dispose();
        prev?.dispose();
        for (let b = 0; b < 2; b++)
          for (let d = 0; d < 8; d++) expect(step![b * 8 + d]).toBeCloseTo(full[0]![(b * T + p) * 8 + d]!, 4);
      }
    } finally {
      cache.dispose();
    }
    expect(tf.memory().numTensors).toBeLessThanOrEqual(before);
    model.dispose();
  });
});
