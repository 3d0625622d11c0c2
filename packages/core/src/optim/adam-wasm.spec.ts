import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, describe, expect, it } from 'vitest';
import { Adam, type AdamOptions } from './adam.js';
import { ADAM_KERNEL } from './adam-wasm.js';

/** Every value of the variable and both moments after `steps` updates on `backend`, as float32 bits. */
async function run(backend: string, size: number, options: AdamOptions, steps: number) {
  expect(await tf.setBackend(backend)).toBe(true);
  const w = tf.variable(tf.randomNormal([size], 0, 1, 'float32', 7), true, `w${size}`);
  const adam = new Adam({ w }, options);
  for (let step = 0; step < steps; step++) {
    // Gradients across magnitudes, signs and exact zeros (zero second moments at step 1).
    const g = tf.tidy(() =>
      tf
        .randomNormal([size], 0, 1, 'float32', 100 + step)
        .mul(tf.scalar(10 ** ((step % 5) - 3)))
        .relu(),
    );
    adam.applyGradients({ w: g });
    g.dispose();
  }
  const state = adam.getState();
  const bits = (t: tf.Tensor) => Array.from(new Uint32Array(Float32Array.from(t.dataSync()).buffer));
  const out = { w: bits(w), m: bits(state.tensors['m/w']!), v: bits(state.tensors['v/w']!) };
  tf.dispose(Object.values(state.tensors));
  adam.dispose();
  w.dispose();
  return out;
}

afterAll(async () => {
  await tf.setBackend('cpu');
});

describe('Adam on wasm (one fused kernel per variable)', () => {
  // The CPU backend rounds every op to float32 correctly, as wasm's f32 arithmetic does, so the
  // kernel must give bitwise the composed ops' result. Sizes cover whole SIMD lanes and tails.
  const modes: [string, AdamOptions][] = [
    ['Adam', { lr: 0.01 }],
    ['Adam with L2 decay', { lr: 0.003, weightDecay: 0.1, beta1: 0.8, beta2: 0.95, epsilon: 1e-6 }],
    ['AdamW', { lr: 0.02, weightDecay: 0.05, decoupledWeightDecay: true }],
  ];
  it.each(modes.flatMap(([label, options]) => [1, 3, 4, 7, 1029].map((size) => [label, size, options] as const)))(
    '%s on %i values gives bitwise what the composed ops give on cpu',
    async (_label, size, options) => {
      const expected = await run('cpu', size, options, 6);
      const actual = await run('wasm', size, options, 6);
      expect(actual.w).toEqual(expected.w);
      expect(actual.m).toEqual(expected.m);
      expect(actual.v).toEqual(expected.v);
    },
  );

  it('runs the fused kernel and none of the composed ops, leaking no tensor', async () => {
    expect(await tf.setBackend('wasm')).toBe(true);
    const w = tf.variable(tf.ones([10]), true, 'wProfiled');
    const adam = new Adam({ w }, { lr: 0.1, weightDecay: 0.1 });
    const g = tf.fill([10], 0.5);
    adam.applyGradients({ w: g }); // first step: slot variables made
    const before = tf.memory().numTensors;
    const profile = await tf.profile(() => adam.applyGradients({ w: g }));
    expect(tf.memory().numTensors).toBe(before);
    const kernels = profile.kernelNames;
    expect(kernels).toContain(ADAM_KERNEL);
    expect(kernels).not.toContain('Sqrt');
    expect(kernels).not.toContain('RealDiv');
    tf.dispose([g, w]);
    adam.dispose();
  });
});
