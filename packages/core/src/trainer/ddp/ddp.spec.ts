import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { TaskforgeError } from '../../errors.js';
import { parseTrainerConfig } from '../config.js';
import { splitBatch } from './shards.js';
import { mergeLogs, resolveDevices } from './strategy.js';

describe('resolveDevices', () => {
  it('auto: ddp with one device per core on wasm/cpu, capped by the batch size', () => {
    expect(resolveDevices({ strategy: 'auto', devices: 'auto', batchSize: 16, cores: 2 }, 'wasm')).toEqual({
      strategy: 'ddp',
      devices: 2,
      reason: 'auto: wasm backend, 2 cores, batch of 16 in shards of 8',
    });
    expect(resolveDevices({ strategy: 'auto', devices: 'auto', batchSize: 3, cores: 8 }, 'cpu')).toMatchObject({
      strategy: 'ddp',
      devices: 3,
    });
    expect(resolveDevices({ strategy: 'auto', devices: 'auto', batchSize: 5, cores: 2 }, 'cpu').reason).toContain(
      'shards of 2-3',
    );
  });

  it('auto: single when the backend is not wasm/cpu, there is one core, or the batch has one sample', () => {
    expect(resolveDevices({ strategy: 'auto', devices: 'auto', batchSize: 16, cores: 8 }, 'webgpu')).toEqual({
      strategy: 'single',
      devices: 1,
      reason: 'auto: the webgpu backend runs one device per process',
    });
    expect(resolveDevices({ strategy: 'auto', devices: 'auto', batchSize: 16, cores: 1 }, 'wasm')).toMatchObject({
      strategy: 'single',
      reason: 'auto: wasm backend, 1 core, nothing to split',
    });
    expect(resolveDevices({ strategy: 'auto', devices: 'auto', batchSize: 1, cores: 4 }, 'wasm')).toMatchObject({
      strategy: 'single',
      reason: 'auto: wasm backend, batch of 1, nothing to split',
    });
  });

  it('ddp with explicit devices, and single', () => {
    expect(resolveDevices({ strategy: 'ddp', devices: 3, batchSize: 16, cores: 2 }, 'cpu')).toEqual({
      strategy: 'ddp',
      devices: 3,
      reason: 'trainer.devices=3',
      warning:
        'trainer.devices=3 is more than the 2 cores available: the worker threads share cores, so a step is ' +
        'likely slower than with fewer devices (set trainer.devices to at most 2, or auto)',
    });
    expect(resolveDevices({ strategy: 'ddp', devices: 2, batchSize: 16, cores: 2 }, 'cpu')).not.toHaveProperty(
      'warning',
    );
    expect(resolveDevices({ strategy: 'ddp', devices: 1, batchSize: 16, cores: 2 }, 'wasm')).toEqual({
      strategy: 'single',
      devices: 1,
      reason: 'trainer.strategy=ddp with one device (trainer.devices=1): nothing to split',
    });
    expect(resolveDevices({ strategy: 'single', devices: 'auto', batchSize: 16, cores: 8 }, 'wasm')).toMatchObject({
      strategy: 'single',
      devices: 1,
    });
  });

  it('test/predict (whole batches round-robin): the batch size neither bounds nor caps the devices', () => {
    expect(resolveDevices({ strategy: 'ddp', devices: 2, batchSize: 1, cores: 2, wholeBatches: true }, 'wasm')).toEqual(
      { strategy: 'ddp', devices: 2, reason: 'trainer.devices=2' },
    );
    expect(
      resolveDevices({ strategy: 'auto', devices: 'auto', batchSize: 1, cores: 4, wholeBatches: true }, 'cpu'),
    ).toMatchObject({ strategy: 'ddp', devices: 4 });
  });

  it.each([
    [
      { strategy: 'ddp', devices: 17, batchSize: 16 },
      'wasm',
      /trainer.devices=17 is more than the batch size \(dataset.batch_size=16\).*at most 16/,
    ],
    [
      { strategy: 'single', devices: 2, batchSize: 16 },
      'wasm',
      /trainer.devices=2 needs trainer.strategy=ddp.*trainer.devices=1/,
    ],
    [
      { strategy: 'ddp', devices: 2, batchSize: 16 },
      'webgpu',
      /trainer.strategy=ddp runs on the wasm or cpu backend.*webgpu.*trainer.accelerator=wasm/,
    ],
    [{ strategy: 'ddp', devices: 2, batchSize: 16 }, 'tensorflow', /tensorflow backend was selected/],
  ] as const)('refuses %j on %s with exit 2 and a fix', (request, backend, message) => {
    let error: unknown;
    try {
      resolveDevices({ ...request, cores: 2 }, backend);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TaskforgeError);
    expect((error as TaskforgeError).exitCode).toBe(2);
    expect((error as Error).message).toMatch(message);
  });

  it('the config accepts auto or N >= 1 and names the key otherwise', () => {
    expect(parseTrainerConfig({})).toMatchObject({ strategy: 'auto', devices: 'auto' });
    expect(parseTrainerConfig({ strategy: 'ddp', devices: 2 })).toMatchObject({ strategy: 'ddp', devices: 2 });
    expect(() => parseTrainerConfig({ devices: 0 })).toThrow(
      /trainer\.devices: expected 'auto' or an integer >= 1 \(got 0\)/,
    );
    expect(() => parseTrainerConfig({ strategy: 'fsdp' })).toThrow(/trainer\.strategy[\s\S]*(auto|single|ddp)/);
  });
});

describe('splitBatch', () => {
  it('cuts every per-sample field along dim 0 into shards differing by at most one sample', () => {
    const batch = {
      x: Float32Array.from({ length: 10 }, (_, i) => i), // 5 samples x 2
      y: Int32Array.from([0, 1, 2, 3, 4]),
      names: ['a', 'b', 'c', 'd', 'e'],
      size: 5,
      palette: 'shared',
    };
    const shards = splitBatch(batch, 2);
    expect(shards.map((s) => s.size)).toEqual([3, 2]);
    expect(Array.from(shards[0]!.batch.x)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(Array.from(shards[1]!.batch.x)).toEqual([6, 7, 8, 9]);
    expect(Array.from(shards[1]!.batch.y)).toEqual([3, 4]);
    expect(shards[1]!.batch.names).toEqual(['d', 'e']);
    expect(shards.map((s) => s.batch.size)).toEqual([3, 2]);
    expect(shards[1]!.batch.palette).toBe('shared');
    // Copies: transferring a shard's buffer leaves the batch intact.
    expect(shards[0]!.batch.x.buffer).not.toBe(batch.x.buffer);
    // Never more shards than samples.
    expect(splitBatch({ x: new Float32Array(2), size: 1 }, 4).map((s) => s.size)).toEqual([1]);
    expect(splitBatch({ x: new Float32Array(7), size: 7 }, 3).map((s) => s.size)).toEqual([3, 2, 2]);
  });

  it('refuses an array field that is not whole rows of its samples (e.g. labels padded to a capacity)', () => {
    let error: unknown;
    try {
      splitBatch({ tokens: new Int32Array(8), labels: new Int32Array(6), size: 4 }, 2);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TaskforgeError);
    expect((error as TaskforgeError).exitCode).toBe(2);
    expect((error as Error).message).toMatch(
      /the batch field 'labels' has 6 elements, which is not a whole number of rows for its 4 samples[\s\S]*labels\.subarray\(0, size × row\)[\s\S]*trainer\.strategy=single/,
    );
    expect(() => splitBatch({ x: new Float32Array(1), size: 0 }, 2)).toThrow(/'x' has 1 elements/);
  });

  it('refuses a tf.Tensor field (it cannot cross threads), naming it, with exit 2', () => {
    const tokens = tf.zeros([4, 3], 'int32');
    let error: unknown;
    try {
      splitBatch({ tokens, labels: new Int32Array(4), size: 4 }, 2);
    } catch (e) {
      error = e;
    }
    tokens.dispose();
    expect(error).toBeInstanceOf(TaskforgeError);
    expect((error as TaskforgeError).exitCode).toBe(2);
    expect((error as Error).message).toContain(
      "the batch field 'tokens' is a tf.Tensor (shape [4, 3]), which cannot cross threads. Yield typed arrays",
    );
  });

  it('refuses a batch without a size field, with exit 2 and a fix', () => {
    expect(() => splitBatch({ x: new Float32Array(4) }, 2)).toThrow(
      /numeric `size` field[\s\S]*trainer.strategy=single/,
    );
  });
});

describe('mergeLogs', () => {
  it('weights shard values by sample count; weights that follow the size add up, constant ones stay', () => {
    const merged = mergeLogs(
      [
        [
          { name: 'mse', value: 1, weight: 3 },
          { name: 'acc', value: 0.5, weight: 1 },
        ],
        [
          { name: 'mse', value: 2, weight: 2 },
          { name: 'acc', value: 1, weight: 1 },
        ],
      ],
      [3, 2],
    );
    expect(merged).toEqual([
      { name: 'mse', value: (3 * 1 + 2 * 2) / 5, weight: 5 },
      { name: 'acc', value: (3 * 0.5 + 2 * 1) / 5, weight: 1 },
    ]);
    expect(mergeLogs([[{ name: 'm', value: 1, weight: 2 }], [{ name: 'm', value: 3, weight: 2 }]], [2, 2])).toEqual([
      { name: 'm', value: 2, weight: 4 },
    ]);
  });

  it('weights data-dependent weights (e.g. a count of valid tokens) by those weights, as one batch would', () => {
    // Shard 0: 3 of its samples' tokens valid, mean 0.5; shard 1: none valid (weight 0).
    expect(
      mergeLogs([[{ name: 'acc', value: 0.5, weight: 3 }], [{ name: 'acc', value: 0, weight: 0 }]], [2, 2]),
    ).toEqual([{ name: 'acc', value: 0.5, weight: 3 }]);
    expect(mergeLogs([[{ name: 'acc', value: 1, weight: 1 }], [{ name: 'acc', value: 0, weight: 3 }]], [2, 2])).toEqual(
      [{ name: 'acc', value: 0.25, weight: 4 }],
    );
  });
});
