import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { matMulTransposeA } from './linear-grad.js';
import { linear } from './linear.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { WasmKernelModule } from './wasm-kernels.js';

describe.each(['cpu', 'wasm'])('linear on %s', (backend) => {
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
  });

  // in > out and in < out take different dW products on wasm.
  it.each([
    [6, 3, true],
    [3, 6, true],
    [5, 5, false],
    [16, 48, true],
    [64, 16, false],
  ])('matches autodiff of matMul + bias (in %i, out %i, bias %s)', (inDim, outDim, withBias) => {
    const [expected, actual] = [false, true].map((custom) =>
      tf.tidy(() => {
        const x = tf.randomNormal([7, inDim], 0, 1, 'float32', 1) as tf.Tensor2D;
        const w = tf.randomNormal([inDim, outDim], 0, 1, 'float32', 2) as tf.Tensor2D;
        const b = tf.randomNormal([outDim], 0, 1, 'float32', 3) as tf.Tensor1D;
        const upstream = tf.randomNormal([7, outDim], 0, 1, 'float32', 4);
        const f = (...[xx, ww, bb]: tf.Tensor[]) => {
          const y = custom
            ? linear(xx as tf.Tensor2D, ww as tf.Tensor2D, bb as tf.Tensor1D | undefined)
            : bb
              ? tf.matMul(xx!, ww!).add(bb)
              : tf.matMul(xx!, ww!);
          return y.mul(upstream).sum();
        };
        const { value, grads } = tf.valueAndGrads(f)(withBias ? [x, w, b] : [x, w]);
        return [value, ...grads].map((t) => Array.from(t.dataSync()));
      }),
    );
    expect(actual!.length).toBe(expected!.length);
    actual!.forEach((values, i) => values.forEach((v, j) => expect(v).toBeCloseTo(expected![i]![j]!, 4)));
  });
});

describe('matMulTransposeA (the wasm weight-gradient kernel)', () => {
  beforeAll(async () => {
    expect(await tf.setBackend('wasm')).toBe(true);
  });

  // Every tile path: 4×8 and 4×4 tiles, column tails, row tails, and N across several 128-row blocks.
  it.each([
    [300, 16, 48],
    [257, 4, 8],
    [129, 5, 13],
    [7, 3, 17],
    [130, 9, 4],
    [1, 1, 1],
    [64, 12, 3],
  ])('equals xᵀ·dy for N %i, in %i, out %i', (N, inDim, outDim) => {
    const [expected, actual] = tf.tidy(() => {
      const x = tf.randomNormal([N, inDim], 0, 1, 'float32', N) as tf.Tensor2D;
      const dy = tf.randomNormal([N, outDim], 0, 1, 'float32', inDim) as tf.Tensor2D;
      return [tf.matMul(x, dy, true, false).arraySync(), matMulTransposeA(x, dy).arraySync()] as number[][][];
    });
    expect(actual!.length).toBe(inDim);
    actual!.forEach((row, i) => row.forEach((v, j) => expect(v).toBeCloseTo(expected![i]![j]!, 3)));
  });

  it('refuses shapes that do not match', () => {
    const x = tf.zeros([4, 2]) as tf.Tensor2D;
    const dy = tf.zeros([5, 3]) as tf.Tensor2D;
    expect(() => matMulTransposeA(x, dy)).toThrow(/same N, got x float32 \[4,2\] and dy float32 \[5,3\]/);
    tf.dispose([x, dy]);
  });
});

describe('WasmKernelModule', () => {
  it('refuses a module with static data, which would overwrite TF.js tensors when instantiated on its heap', () => {
    // A valid module: one memory, and a data section writing one byte at offset 0.
    const bytes = [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0, 1, 0x0b, 7, 1, 0, 0x41, 0, 0x0b, 1, 0x2a];
    const file = join(mkdtempSync(join(tmpdir(), 'taskforge-heap-kernel-')), 'static-data.wasm');
    writeFileSync(file, Uint8Array.from(bytes));
    const module = new WasmKernelModule(pathToFileURL(file), 'test kernel', 'npx nx run core:build-wasm');
    expect(() => module.ensureLoaded()).toThrow(
      /test kernel: .*static-data\.wasm has a data section .*must use no static data/,
    );
  });

  it('names a missing compiled kernel and the command that builds it', () => {
    const missing = new WasmKernelModule(
      new URL('file:///nonexistent/k.wasm'),
      'test kernel',
      'npx nx run core:build-wasm',
    );
    expect(() => missing.ensureLoaded()).toThrow(
      /test kernel: the compiled kernel \/nonexistent\/k\.wasm is missing .*core:build-wasm/,
    );
  });

  it('lays scratch buffers out 16-byte aligned (the first 64) without overlap, and frees them even when the body throws', async () => {
    expect(await tf.setBackend('wasm')).toBe(true);
    const backend = tf.backend() as unknown as Parameters<WasmKernelModule<object>['withScratch']>[0];
    const module = new WasmKernelModule<object>(new URL('file:///unused.wasm'), 'test kernel', 'build');
    const buffersBefore = tf.backend().numDataIds();
    const lengths = [5, 1, 64, 3];
    const offsets = module.withScratch(backend, lengths, (at) => at);
    expect(offsets[0]! % 64).toBe(0);
    offsets.forEach((at, i) => {
      expect(at % 16).toBe(0);
      if (i > 0) expect(at).toBeGreaterThanOrEqual(offsets[i - 1]! + 4 * lengths[i - 1]!);
    });
    expect(() =>
      module.withScratch(backend, [8], () => {
        throw new Error('kernel failed');
      }),
    ).toThrow('kernel failed');
    expect(tf.backend().numDataIds()).toBe(buffersBefore);
  });
});
