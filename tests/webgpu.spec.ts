/**
 * End to end on the webgpu backend (Dawn), with the built CLI in child processes: a fast_dev_run
 * of vision/igpt, and checkpoints that move between webgpu and wasm in both directions (resume
 * training, test, sample). Runs on a GPU or on Mesa's software Vulkan driver (lavapipe, as on
 * CI); skipped with the reason where Dawn finds no adapter. Tiny 8×8 images: lavapipe is slow.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeWebgpu } from '@taskforge/core';
import { serveFile, taskforge, tinyCifarArchive, tinyRun } from './fixtures/cli.js';

const probe = await probeWebgpu();
const why =
  'reason' in probe
    ? `no WebGPU adapter here (${probe.reason}); on Debian bookworm run \`bash .ci/install-lavapipe.sh\` as root to get a software one`
    : '';
if (why) console.warn(`webgpu e2e tests skipped: ${why}`);

describe.skipIf(why !== '')('Image GPT on webgpu, end to end', () => {
  let server: Awaited<ReturnType<typeof serveFile>>;
  let archive: { file: string; md5: string };
  const work = mkdtempSync(join(tmpdir(), 'taskforge-webgpu-'));
  const args = (runDir: string, ...more: string[]) => [
    ...tinyRun(server.url, archive.md5, join(work, 'data'), runDir),
    'dataset.image_size=8',
    'trainer.log_every_n_steps=1',
    ...more,
  ];
  const lossesOf = (runDir: string) =>
    readFileSync(join(runDir, 'logs', 'csv', 'metrics.csv'), 'utf8')
      .trim()
      .split('\n');

  beforeAll(async () => {
    archive = await tinyCifarArchive();
    server = await serveFile(archive.file);
  });
  afterAll(async () => server?.close());

  it('fast_dev_run trains, validates and names the adapter on trainer.accelerator=webgpu', async () => {
    const r = await taskforge([
      'train',
      ...args(join(work, 'fast'), 'trainer.fast_dev_run=true', 'trainer.accelerator=webgpu'),
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const out = r.stdout + r.stderr;
    expect(out).toMatch(/Accelerator: webgpu \(Dawn; \S+/);
    if ('adapter' in probe && probe.adapter.software) expect(out).toContain('The WebGPU adapter is a software one');
    expect(out).toContain('Training finished at step 1');
    expect(out).not.toMatch(/\n\s+at /);
  });

  it('trainer.accelerator=auto passes over the software adapter without Dawn limit warnings on stderr', async () => {
    const r = await taskforge([
      'train',
      ...args(join(work, 'auto'), 'trainer.fast_dev_run=true', 'trainer.accelerator=auto'),
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    if ('adapter' in probe && probe.adapter.software)
      expect(r.stdout + r.stderr).toContain('skipped webgpu: only a software adapter');
    expect(r.stderr).not.toMatch(/maxDynamic\w*BuffersPerPipelineLayout/);
  });

  it('a webgpu checkpoint resumes, tests and samples on wasm, and a wasm checkpoint resumes on webgpu', async () => {
    const gpuRun = join(work, 'gpu');
    const train = await taskforge([
      'train',
      ...args(gpuRun, 'trainer.max_steps=2', 'trainer.accelerator=webgpu', 'task.classify=true'),
    ]);
    expect(train.code, train.stderr).toBe(0);
    const gpuLast = join(gpuRun, 'checkpoints', 'last');
    expect(existsSync(join(gpuLast, 'weights.bin'))).toBe(true);
    // GPU tensor memory is logged by the device_stats callback.
    expect(lossesOf(gpuRun)[0]).toContain('memory/gpu_bytes');

    const wasmRun = join(work, 'wasm-resumed');
    const resumed = await taskforge([
      'train',
      ...args(
        wasmRun,
        'trainer.max_steps=3',
        'trainer.accelerator=wasm',
        'task.classify=true',
        `trainer.resume_from=${gpuLast}`,
      ),
    ]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout + resumed.stderr).toMatch(/Accelerator: wasm/);
    expect(resumed.stdout + resumed.stderr).toContain('Training finished at step 3');

    const test = await taskforge([
      'test',
      `ckpt=${gpuLast}`,
      'trainer.accelerator=wasm',
      `trainer.run_dir=${join(work, 'test-on-wasm')}`,
    ]);
    expect(test.code, test.stderr).toBe(0);
    const results = JSON.parse(readFileSync(join(work, 'test-on-wasm', 'test_results.json'), 'utf8'));
    expect(results.metrics['test/loss']).toBeGreaterThan(0);
    expect((results.extras.confusion_matrix.matrix as number[][]).flat().reduce((a, b) => a + b, 0)).toBe(10);

    // ... and the reverse: the wasm run's checkpoint goes back to webgpu, where test and sampling (KV cache) run.
    const wasmLast = join(wasmRun, 'checkpoints', 'last');
    const back = await taskforge([
      'train',
      ...args(
        join(work, 'gpu-again'),
        'trainer.max_steps=4',
        'trainer.accelerator=webgpu',
        'task.classify=true',
        `trainer.resume_from=${wasmLast}`,
      ),
    ]);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout + back.stderr).toContain('Training finished at step 4');
    const gpuTest = await taskforge([
      'test',
      `ckpt=${wasmLast}`,
      'trainer.accelerator=webgpu',
      `trainer.run_dir=${join(work, 'test-on-gpu')}`,
    ]);
    expect(gpuTest.code, gpuTest.stderr).toBe(0);
    const gpuResults = JSON.parse(readFileSync(join(work, 'test-on-gpu', 'test_results.json'), 'utf8'));
    const wasmTest = await taskforge([
      'test',
      `ckpt=${wasmLast}`,
      'trainer.accelerator=wasm',
      `trainer.run_dir=${join(work, 'test-wasm-again')}`,
    ]);
    const wasmResults = JSON.parse(readFileSync(join(work, 'test-wasm-again', 'test_results.json'), 'utf8'));
    expect(wasmTest.code, wasmTest.stderr).toBe(0);
    // The same checkpoint scores the same on both backends.
    expect(gpuResults.metrics['test/loss']).toBeCloseTo(wasmResults.metrics['test/loss'], 4);
    expect(gpuResults.extras.confusion_matrix.matrix).toEqual(wasmResults.extras.confusion_matrix.matrix);
    const sample = await taskforge([
      'sample',
      `ckpt=${wasmLast}`,
      'trainer.accelerator=webgpu',
      'task.sampling.num_images=1',
      'task.sampling.num_unconditional=1',
      `trainer.run_dir=${join(work, 'sample-on-gpu')}`,
    ]);
    expect(sample.code, sample.stderr).toBe(0);
    expect(readdirSync(join(work, 'sample-on-gpu', 'samples')).filter((f) => f.endsWith('.png'))).toHaveLength(1);
  });
});
