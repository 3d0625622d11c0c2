/**
 * End-to-end: the built `taskforge` CLI in child processes, as a user runs it. Needs the packages
 * built (the e2e project's test target depends on every package's build).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO, run, serveFile, taskforge, tinyCifarArchive, tinyRun } from './fixtures/cli.js';

describe('taskforge CLI', () => {
  it('prints the composed config for task=vision/igpt with overrides', async () => {
    const r = await taskforge(['config', 'task=vision/igpt', 'trainer.max_steps=3']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const config = parse(r.stdout);
    expect(config.trainer.max_steps).toBe(3);
    expect(config.task._target_).toBe('task/vision/igpt');
    expect(config.backbone).toMatchObject({ _target_: 'backbone/gpt2', embed_dim: 16, num_heads: 2, num_layers: 8 });
    expect(config.optimizer).toMatchObject({ _target_: 'optimizer/adam', lr: 3e-3 });
    expect(r.stdout).toContain('max_steps: 3 # from command line');
  });

  it('reports every config mistake at once, with suggestions, and exits 2 without a stack trace', async () => {
    const r = await taskforge(['config', 'trainer.max_stepz=3', 'backbone.embed_dim=abc']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("did you mean 'trainer.max_steps'");
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const misspeltGroup = await taskforge(['config', 'task=vision/igtp']);
    expect(misspeltGroup.code).toBe(2);
    expect(misspeltGroup.stderr).toContain('vision/igpt');
    const badType = await taskforge(['config', 'backbone.embed_dim=abc']);
    expect(badType.code).toBe(2);
    expect(badType.stderr).toContain('backbone.embed_dim');
  });

  it('lists plugins and components with their packages, and has --version and --help', async () => {
    const list = await taskforge(['list']);
    expect(list.code).toBe(0);
    for (const line of ['task/vision/igpt', 'backbone/gpt2', 'datamodule/cifar10', 'optimizer/adamw', 'callback/model_checkpoint', 'logger/tensorboard']) {
      expect(list.stdout).toContain(line);
    }
    expect(list.stdout).toMatch(/task\/vision\/igpt .*\[@taskforge\/task-igpt\]/);
    const version = await taskforge(['--version']);
    expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(join(REPO, 'packages/cli/package.json'), 'utf8')).version);
    const help = await taskforge(['train', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('group=option');
    const unknown = await taskforge(['trian']);
    expect(unknown.code).toBe(2);
  });
});

describe('Image GPT end to end on a tiny CIFAR archive served on 127.0.0.1', () => {
  let server: Awaited<ReturnType<typeof serveFile>>;
  let archive: { file: string; md5: string };
  const work = mkdtempSync(join(tmpdir(), 'taskforge-e2e-'));
  const dataDir = join(work, 'data');

  beforeAll(async () => {
    archive = await tinyCifarArchive();
    server = await serveFile(archive.file);
  });
  afterAll(async () => server?.close());

  it('nx run task-igpt:train -- trainer.fast_dev_run=true ... downloads, trains one batch and writes no checkpoint', async () => {
    const runDir = join(work, 'fast-dev-run');
    const r = await run('npx', ['nx', 'run', 'task-igpt:train', '--skip-nx-cache', '--',
      'trainer.fast_dev_run=true', ...tinyRun(server.url, archive.md5, dataDir, runDir)]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const out = r.stdout + r.stderr;
    expect(out).toMatch(/Accelerator: (wasm|cpu|tensorflow)/);
    expect(out).toContain('Training finished at step 1');
    // The summary lists only what exists: fast_dev_run writes no samples.
    expect(out).not.toContain('samples:');
    expect(out).toContain(`config:          ${join(runDir, 'config.yaml')}`);
    expect(server.requests()).toBe(1);
    expect(existsSync(join(runDir, 'config.yaml'))).toBe(true);
    expect(existsSync(join(runDir, 'checkpoints'))).toBe(false);
  });

  it('Ctrl-C under nx run task-igpt:train: the resume hint reaches the terminal and last is saved', async () => {
    const runDir = join(work, 'interrupted');
    // Its own process group, so the signal goes to nx the way a terminal's Ctrl-C does.
    const child = spawn('npx', ['nx', 'run', 'task-igpt:train', '--', ...tinyRun(server.url, archive.md5, dataDir, runDir),
      'trainer.max_epochs=100000', 'trainer.log_every_n_steps=1'], {
      cwd: REPO, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NX_DAEMON: 'false', NX_NO_CLOUD: 'true', NX_TUI: 'false' },
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const closed = new Promise<number>((ok) => child.on('close', (code, signal) => ok(code ?? (signal ? 128 : -1))));
    // Training has started once the CSV logger flushed its first rows.
    const csv = join(runDir, 'logs', 'csv', 'metrics.csv');
    for (let waited = 0; !existsSync(csv); waited += 200) {
      if (waited > 240_000 || child.exitCode !== null) throw new Error(`training did not start:\n${out}`);
      await new Promise((ok) => setTimeout(ok, 200));
    }
    process.kill(-child.pid!, 'SIGINT');
    const code = await closed;
    const last = join(runDir, 'checkpoints', 'last');
    expect(code, out).not.toBe(0);
    // nx discards its task's output once it gets Ctrl-C, so the hint is printed before training starts.
    expect(out).toContain(`the checkpoint is saved to ${last}; resume with 'trainer.resume_from=${last}'`);
    expect(existsSync(join(last, 'trainer_state.json')), out).toBe(true);
  });

  it('trains, then test and sample a checkpoint in fresh processes, reusing the cached download', async () => {
    const runDir = join(work, 'pretrain');
    const args = [...tinyRun(server.url, archive.md5, dataDir, runDir), 'trainer.max_steps=3', 'trainer.log_every_n_steps=1',
      'task.classify=true', 'task.sampling.num_images=2', 'task.sampling.num_unconditional=2', 'task.sampling.scale=1'];
    const train = await taskforge(['train', ...args]);
    expect(train.code, train.stderr).toBe(0);
    expect(server.requests()).toBe(1); // the archive was cached by the first test
    const last = join(runDir, 'checkpoints', 'last');
    expect(readdirSync(last).sort()).toEqual(['config.yaml', 'optimizer.bin', 'optimizer.json', 'task_state.json', 'trainer_state.json', 'weights.bin', 'weights.json']);
    expect(train.stderr).toContain(last);
    const metrics = readFileSync(join(runDir, 'logs', 'csv', 'metrics.csv'), 'utf8').trim().split('\n');
    expect(metrics[0]).toContain('train_loss');
    // One row per logged step: step 3's training metrics, learning rate and validation share a row.
    const header = metrics[0]!.split(',');
    expect(metrics.slice(1).map((row) => row.split(',')[0])).toEqual(['1', '2', '3']);
    const row3 = Object.fromEntries(metrics[3]!.split(',').map((v, i) => [header[i], v]));
    const lrColumn = header.find((h) => h.startsWith('lr-'))!;
    for (const key of ['train_loss', lrColumn, 'val/loss']) expect(row3[key], key).toMatch(/^-?[\d.e+-]+$/);
    // No sampling happened in 3 steps (every_n_steps=1000): no samples line in the summary.
    expect(train.stderr).not.toContain('samples:');

    const test = await taskforge(['test', `ckpt=${last}`, `trainer.run_dir=${join(work, 'test')}`]);
    expect(test.code, test.stderr).toBe(0);
    expect(test.stderr).not.toContain('Hi, looks like');
    const results = JSON.parse(readFileSync(join(work, 'test', 'test_results.json'), 'utf8'));
    expect(results.metrics['test/loss']).toBeGreaterThan(0);
    // With classify=true the loss adds the classifier's CE; bits per pixel measure the generative part.
    expect(results.metrics['test/bpp']).toBeCloseTo(results.metrics['test/gen_loss'] / Math.LN2, 4);
    expect(results.metrics['test/acc']).toBeGreaterThanOrEqual(0);
    const matrix = results.extras.confusion_matrix.matrix as number[][];
    expect(matrix).toHaveLength(10);
    expect(test.stderr).toMatch(/confusion_matrix:\n.*\n\s+airplane/);
    expect(matrix.flat().reduce((a, b) => a + b, 0)).toBe(10);

    const sample = await taskforge(['sample', `ckpt=${last}`, `trainer.run_dir=${join(work, 'sample')}`]);
    expect(sample.code, sample.stderr).toBe(0);
    const pngs = readdirSync(join(work, 'sample', 'samples')).filter((f) => f.endsWith('.png'));
    expect(pngs).toEqual(['samples-step000003-seed42.png']);
    // A second `sample` into the same dir never overwrites the first grid.
    const first = readFileSync(join(work, 'sample', 'samples', pngs[0]!));
    const again = await taskforge(['sample', `ckpt=${last}`, `trainer.run_dir=${join(work, 'sample')}`]);
    expect(again.code, again.stderr).toBe(0);
    expect(readdirSync(join(work, 'sample', 'samples')).sort()).toEqual(['samples-step000003-seed42-2.png', 'samples-step000003-seed42.png']);
    expect(readFileSync(join(work, 'sample', 'samples', pngs[0]!)).equals(first)).toBe(true);
    expect(again.stderr).toContain('samples-step000003-seed42-2.png');
    const image = PNG.sync.read(readFileSync(join(work, 'sample', 'samples', pngs[0]!)));
    expect(image.width).toBeGreaterThan(32);
    expect(image.height).toBeGreaterThan(32);
  });

  it('checkpoint monitor: not logged yet keeps last (exit 0); a typo is exit 2 with did-you-mean, last still kept', async () => {
    // The run: validation only every 2 epochs, one epoch, so val/loss never exists in it.
    const waiting = join(work, 'monitor-waiting');
    const ok = await taskforge(['train', ...tinyRun(server.url, archive.md5, dataDir, waiting), 'trainer.max_epochs=1',
      'trainer.check_val_every_n_epoch=2', 'trainer.limit_train_batches=3', 'trainer.callbacks.model_checkpoint.monitor=val/loss']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toContain("monitor is 'val/loss', which has not been logged yet at step 3");
    expect(readdirSync(join(waiting, 'checkpoints'))).toEqual(['last']);

    const typo = join(work, 'monitor-typo');
    const bad = await taskforge(['train', ...tinyRun(server.url, archive.md5, dataDir, typo), 'trainer.max_epochs=2',
      'trainer.limit_train_batches=3', 'trainer.callbacks.model_checkpoint.monitor=val/los']);
    expect(bad.code, bad.stderr).toBe(2);
    expect(bad.stderr).toContain("trainer.callbacks.model_checkpoint.monitor: no training step or validation logs a metric named 'val/los'");
    expect(bad.stderr).toContain("did you mean 'val/loss'");
    expect(bad.stderr).not.toMatch(/\n\s+at /);
    // The sanity check logs val/* before training, so it is known after the first step; that step is kept.
    expect(JSON.parse(readFileSync(join(typo, 'checkpoints', 'last', 'trainer_state.json'), 'utf8')).globalStep).toBe(1);
  });

  it('fails with a clear message when the download md5 is wrong, leaving no partial file', async () => {
    const freshData = join(work, 'bad-md5-data');
    const r = await taskforge(['train', 'trainer.fast_dev_run=true', ...tinyRun(server.url, 'f'.repeat(32), freshData, join(work, 'bad'))]);
    expect(r.code).toBeGreaterThan(0);
    expect(r.stderr).toMatch(/md5/i);
    expect(r.stderr).toContain(server.url);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const left = existsSync(freshData) ? readdirSync(freshData, { recursive: true }).map(String) : [];
    expect(left.filter((f) => f.endsWith('.tar.gz'))).toEqual([]);
  });
});
