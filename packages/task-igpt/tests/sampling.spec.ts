import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { PNG } from 'pngjs';
import seedrandom from 'seedrandom';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { argmax, generate, gridLayout, IgptSamplerCallback, sampleToken, samplerCallbackSchema } from '../src/index.js';
import type { MetricsLogger, TrainerView } from '@taskforge/core';
import { batchOf, H, makeTask, palette, recordingContext, SyntheticImages, T, W } from './fixtures.js';

let tmp: string;
beforeAll(async () => {
  expect(await tf.setBackend('wasm')).toBe(true);
  tmp = mkdtempSync(join(tmpdir(), 'igpt-sample-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const rows = (n: number, V: number, seed: string) => {
  const rng = seedrandom(seed);
  return Array.from({ length: n }, () => Float32Array.from({ length: V }, () => rng() * 6 - 3));
};
const softmax = (xs: Float32Array, temperature: number) => {
  const e = Array.from(xs, (x) => Math.exp((x - Math.max(...xs)) / temperature));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
};
function frequencies(
  logits: Float32Array,
  options: Parameters<typeof sampleToken>[1],
  draws: number,
  seed = 's',
): number[] {
  const rng = seedrandom(seed);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < draws; i++) counts[sampleToken(logits, options, rng)]! += 1;
  return counts.map((c) => c / draws);
}

describe('sampleToken', () => {
  it('top_k = 1 and temperature 0 are argmax', () => {
    const rng = seedrandom('a');
    for (const row of rows(50, 16, 'r1')) {
      expect(sampleToken(row, { temperature: 1, topK: 1 }, rng)).toBe(argmax(row));
      expect(sampleToken(row, { temperature: 0, topK: null }, rng)).toBe(argmax(row));
    }
  });

  it('samples from softmax(logits / temperature); lower temperature approaches argmax', () => {
    const [row] = rows(1, 8, 'r2');
    for (const temperature of [1, 2]) {
      const freq = frequencies(row!, { temperature, topK: null }, 6000);
      softmax(row!, temperature).forEach((p, i) => expect(Math.abs(freq[i]! - p)).toBeLessThan(0.025));
    }
    const best = argmax(row!);
    const argmaxShare = [2, 1, 0.3, 0.05, 1e-3].map(
      (t) => frequencies(row!, { temperature: t, topK: null }, 2000)[best]!,
    );
    for (let i = 1; i < argmaxShare.length; i++) expect(argmaxShare[i]).toBeGreaterThanOrEqual(argmaxShare[i - 1]!);
    expect(argmaxShare[0]).toBeLessThan(0.6);
    expect(argmaxShare.at(-1)).toBe(1);
  });

  it('only ever samples within the top-k set, renormalised', () => {
    const [row] = rows(1, 16, 'r3');
    const top3 = Array.from(row!.keys())
      .sort((a, b) => row![b]! - row![a]!)
      .slice(0, 3);
    const freq = frequencies(row!, { temperature: 1, topK: 3 }, 6000);
    freq.forEach((f, i) => (top3.includes(i) ? expect(f).toBeGreaterThan(0) : expect(f).toBe(0)));
    const p = softmax(Float32Array.from(top3.map((i) => row![i]!)), 1);
    top3.forEach((tok, j) => expect(Math.abs(freq[tok]! - p[j]!)).toBeLessThan(0.025));
  });
});

describe('generate', () => {
  it('keeps the given prefix and, with top_k = 1, decodes greedily (checked against the full forward pass)', async () => {
    const task = makeTask();
    const given = batchOf([0]).tokens.subarray(0, 20);
    const [cond, uncond] = await generate(task.decoder, {
      length: T,
      prefixes: [given, new Int32Array(0)],
      seed: 1,
      temperature: 1,
      topK: 1,
    });
    expect(Array.from(cond!.subarray(0, 20))).toEqual(Array.from(given));
    const logits = tf.tidy(() =>
      task.logits(tf.tensor2d([Array.from(cond!), Array.from(uncond!)], undefined, 'int32')).arraySync(),
    );
    for (let p = 20; p < T; p++) expect(cond![p]).toBe(argmax(logits[0]![p]!));
    for (let p = 0; p < T; p++) expect(uncond![p]).toBe(argmax(logits[1]![p]!));
    task.dispose();
  });

  it('is reproducible for a seed and varies across seeds', async () => {
    const task = makeTask();
    const run = (seed: number) =>
      generate(task.decoder, { length: T, prefixes: [new Int32Array(0)], seed, temperature: 1, topK: null });
    const [a, b, c] = [await run(3), await run(3), await run(4)];
    expect(Array.from(a[0]!)).toEqual(Array.from(b[0]!));
    expect(Array.from(a[0]!)).not.toEqual(Array.from(c[0]!));
    task.dispose();
  });
});

function pixel(png: PNG, x: number, y: number): number[] {
  const i = (y * png.width + x) * 4;
  return [png.data[i]!, png.data[i + 1]!, png.data[i + 2]!];
}

describe('task.sample', () => {
  it('writes a PNG grid: completions beside originals (top half given) and unconditional samples', async () => {
    const scale = 2;
    const task = makeTask({ sampling: { num_images: 4, num_unconditional: 3, scale, top_k: 2 } });
    const data = new SyntheticImages([batchOf([0, 1, 2]), batchOf([1, 2, 0])]);
    const originals = [...data.batches[0]!.tokens.subarray(0, 3 * T), ...data.batches[1]!.tokens.subarray(0, T)];
    const outDir = join(tmp, 'samples');
    const result = await task.sample!({ outDir, datamodule: data, seed: 0, tag: 'step000010' });

    expect(result.files).toEqual([join(outDir, 'samples-step000010.png')]);
    expect(readdirSync(outDir)).toEqual(['samples-step000010.png']); // no temp file left
    const bytes = readFileSync(result.files[0]!);
    expect(Buffer.from(result.image!).equals(bytes)).toBe(true);
    const png = PNG.sync.read(bytes);
    const layout = gridLayout({
      completions: new Array(4),
      originals: new Array(4),
      unconditional: new Array(3),
      height: H,
      width: W,
      scale,
    });
    expect([png.width, png.height]).toEqual([layout.pngWidth, layout.pngHeight]);
    expect(pixel(png, 0, 0)).toEqual([255, 255, 255]);

    const colour = (img: number, p: number) => palette[originals[img * T + p]!]!;
    for (let i = 0; i < 4; i++) {
      const [cx, cy] = layout.completion(i);
      const [ox, oy] = layout.original(i);
      for (let p = 0; p < T; p++) {
        const [x, y] = [(p % W) * scale + 1, Math.floor(p / W) * scale + 1];
        expect(pixel(png, ox + x, oy + y)).toEqual(colour(i, p));
        if (p < T / 2) expect(pixel(png, cx + x, cy + y)).toEqual(colour(i, p));
        else expect(palette).toContainEqual(pixel(png, cx + x, cy + y));
      }
    }
    for (let i = 0; i < 3; i++) {
      const [ux, uy] = layout.unconditional(i);
      for (let p = 0; p < T; p += 7)
        expect(palette).toContainEqual(pixel(png, ux + (p % W) * scale, uy + Math.floor(p / W) * scale));
    }
    task.dispose();
  });

  it('leaks no tensors (steps and sampling)', async () => {
    const task = makeTask({ classify: true, sampling: { num_images: 1, num_unconditional: 1, scale: 1 } });
    const data = new SyntheticImages([batchOf([0, 1])]);
    const { ctx } = recordingContext(false);
    task.validationStep!(batchOf([0, 1]), ctx); // builds the backbone's cached causal mask
    const before = tf.memory().numTensors;
    task.validationStep!(batchOf([0, 1]), ctx);
    task.testStep!(batchOf([0, 1]), ctx);
    await task.onTestEpochEnd(); // releases the predictions testStep keeps for the epoch's confusion matrix
    tf.dispose(task.trainingStep(batchOf([0, 1]), recordingContext(true).ctx));
    await task.sample!({ outDir: join(tmp, 'leak'), datamodule: data, seed: 0, tag: 'x' });
    expect(tf.memory().numTensors).toBe(before);
    task.dispose();
  });

  it('without a data module draws only unconditional samples', async () => {
    const task = makeTask({ sampling: { num_images: 4, num_unconditional: 2, scale: 1 } });
    const result = await task.sample!({ outDir: join(tmp, 'uncond'), seed: 0, tag: 'x' });
    const png = PNG.sync.read(Buffer.from(result.image!));
    const layout = gridLayout({
      completions: [],
      originals: [],
      unconditional: new Array(2),
      height: H,
      width: W,
      scale: 1,
    });
    expect([png.width, png.height]).toEqual([layout.pngWidth, layout.pngHeight]);
    task.dispose();
  });
});

describe('callback/igpt_sampler', () => {
  function trainerAt(
    globalStep: number,
    runDir: string,
    data: SyntheticImages,
    task: ReturnType<typeof makeTask>,
    images: unknown[][],
    dryRun = false,
  ): TrainerView {
    const logger: MetricsLogger = {
      name: 'images',
      logHyperparams() {},
      logMetrics() {},
      finalize() {},
      logImage: (tag, png, step) => {
        images.push([tag, png.byteLength, step]);
      },
    };
    const plain: MetricsLogger = { name: 'csv', logHyperparams() {}, logMetrics() {}, finalize() {} };
    return {
      globalStep,
      epoch: 0,
      maxSteps: 100,
      runDir,
      task,
      datamodule: data,
      optimizer: undefined,
      loggers: [plain, logger],
      callbackMetrics: {},
      requestStop() {},
      saveCheckpoint: async (d) => d,
      dryRun,
      logEveryNSteps: 1,
    };
  }

  it('samples every N steps into <runDir>/samples and hands the PNG to image loggers', async () => {
    const task = makeTask({ sampling: { num_images: 1, num_unconditional: 1, scale: 1 } });
    const data = new SyntheticImages([batchOf([0])]);
    const runDir = join(tmp, 'run');
    const images: unknown[][] = [];
    const callback = new IgptSamplerCallback(samplerCallbackSchema.parse({ every_n_steps: 5 }));
    for (const step of [1, 4, 5, 5, 6, 10]) await callback.onTrainBatchEnd(trainerAt(step, runDir, data, task, images));
    expect(readdirSync(join(runDir, 'samples')).sort()).toEqual(['samples-step000005.png', 'samples-step000010.png']);
    expect(images.map(([tag, , step]) => [tag, step])).toEqual([
      ['samples', 5],
      ['samples', 10],
    ]);
    expect(images[0]![1]).toBeGreaterThan(0);
    expect(data.setupCalls).toEqual(['test']);

    const off = new IgptSamplerCallback(samplerCallbackSchema.parse({ every_n_steps: 5, enabled: false }));
    await off.onTrainBatchEnd(trainerAt(15, runDir, data, task, images));
    const dry = new IgptSamplerCallback(samplerCallbackSchema.parse({ every_n_steps: 5 }));
    await dry.onTrainBatchEnd(trainerAt(15, join(tmp, 'dry'), data, task, images, true));
    expect(images).toHaveLength(2);
    expect(existsSync(join(tmp, 'dry'))).toBe(false);
    task.dispose();
  });
});
