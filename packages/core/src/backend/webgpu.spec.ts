/**
 * The webgpu backend for real, through Dawn: on a GPU, or on Mesa's software Vulkan driver
 * (lavapipe; `.ci/install-lavapipe.sh` installs it on Debian bookworm, as CI does). Where Dawn
 * finds no adapter the suite is skipped with the reason. lavapipe is slow: keep shapes tiny.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clipByGlobalNorm } from '../optim/index.js';
import type { Output } from '../services/tokens.js';
import { describeMemory, memoryStats } from './memory.js';
import { probeWebgpu, selectBackend } from './select.js';

const probe = await probeWebgpu();
const why =
  'reason' in probe
    ? `no WebGPU adapter here (${probe.reason}); on Debian bookworm run ` +
      `\`bash .ci/install-lavapipe.sh\` as root to get a software one`
    : '';
if (why) console.warn(`webgpu tests skipped: ${why}`);

function recordingOutput(): Output & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    info: (m) => lines.push(`info: ${m}`),
    warn: (m) => lines.push(`warn: ${m}`),
    progress: () => ({ update() {}, setTotal() {}, stop() {} }),
  };
}

type Op = (x: tf.Tensor) => tf.Scalar;
const X = [
  [0.1, -0.5, 2, 0.3],
  [1, 0.2, -1, 0.7],
];
const OPS: Record<string, Op> = {
  'gather (embedding lookup)': (x) =>
    tf
      .gather(x, tf.tensor1d([1, 0, 1], 'int32'))
      .mul(tf.range(1, 13).reshape([3, 4]))
      .sum(),
  'gelu (tanh approximation)': (x) =>
    x
      .mul(0.5)
      .mul(tf.tanh(x.add(x.pow(3).mul(0.044715)).mul(Math.sqrt(2 / Math.PI))).add(1))
      .sum(),
  logSoftmax: (x) =>
    tf
      .logSoftmax(x)
      .mul(
        tf.tensor2d([
          [1, 0, 0, 0],
          [0, 0, 1, 0],
        ]),
      )
      .sum(),
  'batched matMul (attention scores)': (x) =>
    tf
      .matMul(x.reshape([1, 2, 4]), x.reshape([1, 2, 4]), false, true)
      .square()
      .sum(),
  'layer norm (moments, rsqrt)': (x) => {
    const { mean, variance } = tf.moments(x, -1, true);
    return x
      .sub(mean)
      .mul(tf.rsqrt(variance.add(1e-5)))
      .mul(tf.range(0, 8).reshape([2, 4]))
      .sum();
  },
  'causal mask (where) + softmax': (x) =>
    tf
      .where(
        tf
          .tensor2d([
            [1, 0, 1, 0],
            [0, 1, 1, 1],
          ])
          .cast('bool'),
        x,
        tf.fill([2, 4], -1e9),
      )
      .softmax()
      .square()
      .sum(),
  softmaxCrossEntropy: (x) => tf.losses.softmaxCrossEntropy(tf.oneHot(tf.tensor1d([0, 2], 'int32'), 4), x),
};

async function run(backend: string, op: Op): Promise<{ forward: number[]; grad: number[] }> {
  await tf.setBackend(backend);
  const [y, g] = tf.tidy(() => {
    const x = tf.tensor2d(X);
    return [op(x), tf.grad(op)(x)];
  });
  const out = { forward: Array.from(await y.data()), grad: Array.from(await g.data()) };
  tf.dispose([y, g]);
  return out;
}

describe.skipIf(why !== '')('webgpu backend (Dawn)', () => {
  beforeAll(async () => {
    await selectBackend('cpu'); // initialises cpu without its tfjs-node banner
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('auto takes webgpu only on a hardware adapter and says why it passed over a software one', async () => {
    const adapter = 'adapter' in probe ? probe.adapter : undefined;
    const selection = await selectBackend('auto');
    if (adapter?.software) {
      expect(selection.skipped.find((s) => s.accelerator === 'webgpu')?.reason).toMatch(
        /^only a software adapter \(.+\), which runs on the CPU far slower than wasm/,
      );
      expect(selection.backend).not.toBe('webgpu');
    } else {
      expect(selection.backend).toBe('webgpu');
    }
  });

  it('an explicit webgpu takes the adapter, names it, and warns when it is a software one', async () => {
    const output = recordingOutput();
    const selection = await selectBackend('webgpu', { output });
    expect(tf.getBackend()).toBe('webgpu');
    expect(selection.backend).toBe('webgpu');
    const adapter = selection.adapter!;
    expect(adapter.vendor).not.toBe('');
    expect(selection.description).toContain(adapter.vendor);
    expect(output.lines.at(-1)).toBe(`info: Accelerator: ${selection.description}`);
    if (adapter.software)
      expect(output.lines[0]).toMatch(
        /^warn: The WebGPU adapter is a software one .*Use it for tests, not training\.$/,
      );
    const y = tf.tensor1d([1, 2, 3]).square();
    expect(Array.from(await y.data())).toEqual([1, 4, 9]);
    y.dispose();
  });

  for (const [name, op] of Object.entries(OPS)) {
    it(`${name}: forward and backward agree on webgpu and cpu`, async () => {
      const cpu = await run('cpu', op);
      const gpu = await run('webgpu', op);
      expect(cpu.grad.some((g) => g !== 0)).toBe(true);
      cpu.forward.forEach((v, i) => expect(gpu.forward[i]).toBeCloseTo(v, 4));
      cpu.grad.forEach((v, i) => expect(gpu.grad[i]).toBeCloseTo(v, 4));
    });
  }

  it('reports GPU tensor memory; a training loop leaks neither tensors nor GPU buffers over many steps', async () => {
    await tf.setBackend('webgpu');
    const w = tf.variable(tf.randomNormal([8, 4], 0, 0.1, 'float32', 1), true, 'leak/w');
    const b = tf.variable(tf.zeros([4]), true, 'leak/b');
    const optimizer = tf.train.adam(0.01);
    const x = tf.randomNormal([16, 8], 0, 1, 'float32', 2);
    const labels = tf.oneHot(
      tf.tensor1d(
        Array.from({ length: 16 }, (_, i) => i % 4),
        'int32',
      ),
      4,
    );
    const step = async () => {
      const { value, grads } = tf.variableGrads(
        () => tf.losses.softmaxCrossEntropy(labels, x.matMul(w).add(b)) as tf.Scalar,
      );
      const clipped = await clipByGlobalNorm(grads, 1);
      optimizer.applyGradients(Object.entries(clipped.grads).map(([name, tensor]) => ({ name, tensor })));
      tf.dispose([grads, clipped.grads]);
      const loss = (await value.data())[0]!;
      value.dispose();
      return loss;
    };
    const first = await step();
    await step();
    const settled = memoryStats();
    expect(settled.gpu_bytes).toBeGreaterThan(0);
    expect(settled.gpu_bytes_allocated).toBeGreaterThanOrEqual(settled.gpu_bytes!);
    expect(describeMemory(settled)).toMatch(/^\d+ tensors, [\d.]+ MB \(GPU: [\d.]+ MB in use, [\d.]+ MB allocated\)$/);
    let last = first;
    for (let i = 0; i < 30; i++) last = await step();
    const after = memoryStats();
    expect(after.tensors).toBe(settled.tensors);
    expect(after.gpu_bytes).toBe(settled.gpu_bytes);
    expect(last).toBeLessThan(first); // it really trained
    tf.dispose([w, b, x, labels]);
    optimizer.dispose();
  });
});
