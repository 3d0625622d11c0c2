/**
 * End-to-end: the built `taskforge` CLI in child processes, as a user runs it. Needs the packages
 * built (the e2e project's test target depends on every package's build).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { parse } from 'yaml';
import { REPO, run, serveFile, startTaskforge, taskforge, tinyCifarArchive, tinyRun } from './fixtures/cli.js';

/** Files (not folders) anywhere under `dir`, by any name; [] when `dir` does not exist. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((f) => statSync(join(dir, f)).isFile())
    .sort();
}

/** Finite and within [lo, hi], with the key named when it is not. */
function expectInRange(metrics: Record<string, unknown>, key: string, lo: number, hi: number): void {
  const value = metrics[key];
  expect(typeof value === 'number' && Number.isFinite(value), `${key} = ${String(value)} is not a finite number`).toBe(
    true,
  );
  expect(value as number, key).toBeGreaterThanOrEqual(lo);
  expect(value as number, key).toBeLessThanOrEqual(hi);
}

/** What `trainer.accelerator=auto` must pick in this install: libtensorflow when tfjs-node is installed, else wasm. */
function expectedAutoAccelerator(): RegExp {
  const installed = (name: string) => {
    try {
      createRequire(join(REPO, 'packages/core/package.json')).resolve(name);
      return true;
    } catch {
      return false;
    }
  };
  if (installed('@tensorflow/tfjs-node-gpu') || installed('@tensorflow/tfjs-node'))
    return /Accelerator: tensorflow \(libtensorflow via @tensorflow\/tfjs-node(-gpu)?, (CPU|GPU)\) \(auto\)/;
  return /Accelerator: wasm \((SIMD|no SIMD), 1 thread\) \(auto\)/;
}

/** 8 colours: uniform guessing costs 3 bits per pixel; an untrained or barely trained model is near that. */
const MAX_BPP = 1.5 * 3;
/** Generative CE (≤ 1.5 × ln 8) plus the classifier's CE over 10 classes (≤ 1.5 × ln 10). */
const MAX_LOSS = 1.5 * (Math.log(8) + Math.log(10));

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

  it('prints a recipe: +experiment=cifar10_1h_pretrain, still overridable; +experiment=nope lists the recipes (exit 2)', async () => {
    const r = await taskforge(['config', '+experiment=cifar10_1h_pretrain', 'trainer.max_steps=7']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const config = parse(r.stdout);
    expect(config.dataset).toMatchObject({ image_size: 16, palette_size: 16, batch_size: 32 });
    expect(config.backbone).toMatchObject({ embed_dim: 64, num_heads: 4, num_layers: 4 });
    expect(config.trainer.max_steps).toBe(7);
    expect(r.stdout).toMatch(/embed_dim: 64 # from packages\/task-igpt\/conf\/experiment\/cifar10_1h_pretrain\.yaml/);
    const nope = await taskforge(['config', '+experiment=nope']);
    expect(nope.code).toBe(2);
    expect(nope.stderr).toContain(
      "config group 'experiment' has no option 'nope' (available: cifar10_1h_finetune, cifar10_1h_pretrain, cifar10_1h_probe)",
    );
  });

  it("task.pretrained=<checkpoint>: the backbone comes from the checkpoint's config.yaml unless set on the command line, and it says so", async () => {
    const ckpt = mkdtempSync(join(tmpdir(), 'taskforge-e2e-pretrained-'));
    writeFileSync(
      join(ckpt, 'config.yaml'),
      'backbone:\n  _target_: backbone/gpt2\n  embed_dim: 48\n  num_heads: 3\n  num_layers: 5\n',
    );
    const r = await taskforge([
      'config',
      '+experiment=cifar10_1h_finetune',
      `task.pretrained=${ckpt}`,
      'backbone.num_heads=4',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const config = parse(r.stdout);
    expect(config.backbone).toMatchObject({ embed_dim: 48, num_heads: 4, num_layers: 5 });
    expect(r.stdout).toContain(`embed_dim: 48 # from checkpoint ${join(ckpt, 'config.yaml')}`);
    expect(r.stderr.trim().split('\n')).toEqual([
      `task.pretrained: backbone settings taken from ${join(ckpt, 'config.yaml')}: embed_dim=48, num_layers=5 (changed: embed_dim, num_layers); ` +
        'kept from the command line: backbone.num_heads=4 (checkpoint: 3)',
    ]);
  });

  it('reports every config mistake at once, with suggestions, and exits 2 without a stack trace', async () => {
    const r = await taskforge(['config', 'trainer.max_stepz=3', 'backbone.embed_dim=abc']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("did you mean 'trainer.max_steps'");
    // The key problem and the value problem come in one message, each with the override as typed.
    expect(r.stderr).toContain('Invalid configuration (2 problems)');
    expect(r.stderr).toContain('[from command line] backbone.embed_dim=abc');
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
    for (const line of [
      'task/vision/igpt',
      'backbone/gpt2',
      'datamodule/cifar10',
      'optimizer/adamw',
      'callback/model_checkpoint',
      'logger/tensorboard',
    ]) {
      expect(list.stdout).toContain(line);
    }
    expect(list.stdout).toMatch(/task\/vision\/igpt .*\[@taskforge\/task-igpt\]/);
    const version = await taskforge(['--version']);
    expect(version.stdout.trim()).toBe(
      JSON.parse(readFileSync(join(REPO, 'packages/cli/package.json'), 'utf8')).version,
    );
    const help = await taskforge(['train', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('group=option');
    const unknown = await taskforge(['trian']);
    expect(unknown.code).toBe(2);
  });

  it('exits quietly when its reader closes the pipe early (`taskforge config | head`)', async () => {
    const child = spawn(process.execPath, [join(REPO, 'packages/cli/dist/bin.js'), 'config'], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy(); // the reader is gone before the first line is written
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise((ok) => child.on('close', ok));
    expect(stderr).not.toContain('EPIPE');
    expect(code).toBe(0);
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
    const r = await run('npx', [
      'nx',
      'run',
      'task-igpt:train',
      '--skip-nx-cache',
      '--',
      'trainer.fast_dev_run=true',
      ...tinyRun(server.url, archive.md5, dataDir, runDir),
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const out = r.stdout + r.stderr;
    expect(out).toMatch(expectedAutoAccelerator());
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
    const child = spawn(
      'npx',
      [
        'nx',
        'run',
        'task-igpt:train',
        '--',
        ...tinyRun(server.url, archive.md5, dataDir, runDir),
        'trainer.max_epochs=100000',
        'trainer.log_every_n_steps=1',
      ],
      {
        cwd: REPO,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, NX_DAEMON: 'false', NX_NO_CLOUD: 'true', NX_TUI: 'false' },
      },
    );
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
    expect(out).toContain(
      `the checkpoint is saved to ${last}; resume by adding 'trainer.resume_from=${last}' to the same command`,
    );
    expect(existsSync(join(last, 'trainer_state.json')), out).toBe(true);
  });

  it('trains, then test and sample a checkpoint in fresh processes, reusing the cached download', async () => {
    const runDir = join(work, 'pretrain');
    const args = [
      ...tinyRun(server.url, archive.md5, dataDir, runDir),
      'trainer.max_steps=3',
      'trainer.log_every_n_steps=1',
      'task.classify=true',
      'task.sampling.num_images=2',
      'task.sampling.num_unconditional=2',
      'task.sampling.scale=1',
    ];
    const train = await taskforge(['train', ...args]);
    expect(train.code, train.stderr).toBe(0);
    expect(server.requests()).toBe(1); // the archive was cached by the first test
    const last = join(runDir, 'checkpoints', 'last');
    expect(readdirSync(last).sort()).toEqual([
      'config.yaml',
      'optimizer.bin',
      'optimizer.json',
      'task_state.json',
      'trainer_state.json',
      'weights.bin',
      'weights.json',
    ]);
    expect(train.stderr).toContain(last);
    const metrics = readFileSync(join(runDir, 'logs', 'csv', 'metrics.csv'), 'utf8')
      .trim()
      .split('\n');
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
    expectInRange(results.metrics, 'test/loss', 0.01, MAX_LOSS);
    expectInRange(results.metrics, 'test/gen_loss', 0.01, MAX_BPP * Math.LN2);
    expectInRange(results.metrics, 'test/bpp', 0.01, MAX_BPP);
    expectInRange(results.metrics, 'test/acc', 0, 1);
    // With classify=true the loss adds the classifier's CE; bits per pixel measure the generative part.
    expect(results.metrics['test/bpp']).toBeCloseTo(results.metrics['test/gen_loss'] / Math.LN2, 4);
    expect(results.metrics['test/loss']).toBeCloseTo(
      results.metrics['test/gen_loss'] + results.metrics['test/clf_loss'],
      4,
    );
    const matrix = results.extras.confusion_matrix.matrix as number[][];
    expect(matrix).toHaveLength(10);
    expect(test.stderr).toMatch(/confusion_matrix:\n.*\n\s+airplane/);
    expect(matrix.flat().reduce((a, b) => a + b, 0)).toBe(10);
    // test/acc and the confusion matrix describe the same 10 predictions.
    expect(results.metrics['test/acc']).toBeCloseTo(matrix.reduce((sum, row, i) => sum + row[i]!, 0) / 10, 5);

    const sample = await taskforge(['sample', `ckpt=${last}`, `trainer.run_dir=${join(work, 'sample')}`]);
    expect(sample.code, sample.stderr).toBe(0);
    const pngs = readdirSync(join(work, 'sample', 'samples')).filter((f) => f.endsWith('.png'));
    expect(pngs).toEqual(['samples-step000003-seed42.png']);
    // A second `sample` into the same dir never overwrites the first grid.
    const first = readFileSync(join(work, 'sample', 'samples', pngs[0]!));
    const again = await taskforge(['sample', `ckpt=${last}`, `trainer.run_dir=${join(work, 'sample')}`]);
    expect(again.code, again.stderr).toBe(0);
    expect(readdirSync(join(work, 'sample', 'samples')).sort()).toEqual([
      'samples-step000003-seed42-2.png',
      'samples-step000003-seed42.png',
    ]);
    expect(readFileSync(join(work, 'sample', 'samples', pngs[0]!)).equals(first)).toBe(true);
    expect(again.stderr).toContain('samples-step000003-seed42-2.png');
    const image = PNG.sync.read(readFileSync(join(work, 'sample', 'samples', pngs[0]!)));
    // 32×32 cells at scale 1 with 2-pixel gaps: one row of 2 completion/original pairs (4 columns),
    // one row for the 2 unconditional samples: 2 + 4 × (32 + 2) by 2 + 2 × (32 + 2).
    expect([image.width, image.height]).toEqual([138, 70]);
  });

  it('validate evaluates a checkpoint on the validation split and writes validate_results.json', async () => {
    const last = join(work, 'pretrain', 'checkpoints', 'last');
    const runDir = join(work, 'validate');
    const r = await taskforge(['validate', `ckpt=${last}`, `trainer.run_dir=${runDir}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`Loaded weights from ${last} (step 3)`);
    const results = JSON.parse(readFileSync(join(runDir, 'validate_results.json'), 'utf8'));
    expectInRange(results.metrics, 'val/loss', 0.01, MAX_LOSS);
    expectInRange(results.metrics, 'val/bpp', 0.01, MAX_BPP);
    expectInRange(results.metrics, 'val/acc', 0, 1);
    expect(results.metrics['val/bpp']).toBeCloseTo(results.metrics['val/gen_loss'] / Math.LN2, 4);
    // The numbers printed are the numbers written, and it says where.
    expect(r.stderr).toContain(`  ${'val/loss'.padEnd(16)} ${results.metrics['val/loss'].toFixed(4)}`);
    expect(r.stderr).toContain(`written to ${join(runDir, 'validate_results.json')}`);
  });

  it('predict writes one record per test image (label, bits per pixel) to predictions.json', async () => {
    const last = join(work, 'pretrain', 'checkpoints', 'last');
    const runDir = join(work, 'predict');
    const r = await taskforge(['predict', `ckpt=${last}`, `trainer.run_dir=${runDir}`]);
    expect(r.code, r.stderr).toBe(0);
    const file = join(runDir, 'predictions.json');
    const batches = JSON.parse(readFileSync(file, 'utf8')) as Array<Array<{ label: number; bpp: number }>>;
    const records = batches.flat();
    expect(records.length).toBeGreaterThan(0);
    for (const record of records) {
      expect(Number.isInteger(record.label) && record.label >= 0 && record.label < 10, JSON.stringify(record)).toBe(
        true,
      );
      expectInRange(record, 'bpp', 0.01, MAX_BPP);
    }
    expect(r.stderr).toContain(`Made ${batches.length} prediction batches; written to ${file}`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('SIGTERM to a training CLI process: finishes the step, saves last, exits 143; trainer.resume_from continues from that step', async () => {
    const runDir = join(work, 'sigterm');
    const args = [
      ...tinyRun(server.url, archive.md5, dataDir, runDir),
      'trainer.max_epochs=-1',
      'trainer.max_steps=100000',
      'trainer.log_every_n_steps=1',
    ];
    const live = startTaskforge(['train', ...args]);
    onTestFinished(() => live.signal('SIGKILL')); // a 100,000-step run must not outlive a failed assertion
    await live.waitFor(/^train: .*step=\d+\/100000/m); // the first progress line: training is under way
    live.signal('SIGTERM');
    const ended = await live.exit;
    expect(ended.code, ended.stdout + ended.stderr).toBe(143);
    expect(ended.stderr).toContain('Received SIGTERM');
    expect(ended.stderr).not.toMatch(/\n\s+at /);
    const last = join(runDir, 'checkpoints', 'last');
    const stopped =
      /Training interrupted by SIGTERM at step (\d+); last checkpoint saved to (.+); resume by adding '?trainer\.resume_from=([^']+)'? to the same command\./.exec(
        ended.stderr,
      );
    expect(stopped, ended.stderr).not.toBeNull();
    const step = Number(stopped![1]);
    expect(step).toBeGreaterThanOrEqual(1);
    expect([stopped![2], stopped![3]]).toEqual([last, last]);
    expect(JSON.parse(readFileSync(join(last, 'trainer_state.json'), 'utf8')).globalStep).toBe(step);

    const resumedDir = join(work, 'resumed');
    const resumed = await taskforge([
      'train',
      ...tinyRun(server.url, archive.md5, dataDir, resumedDir),
      'trainer.max_epochs=-1',
      'trainer.max_steps=100000',
      'trainer.log_every_n_steps=1',
      `trainer.max_steps=${step + 2}`,
      `trainer.resume_from=${last}`,
    ]);
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain(`Resumed from '${last}' at global step ${step}`);
    expect(resumed.stderr).toContain(`Training finished at step ${step + 2}`);
    expect(
      JSON.parse(readFileSync(join(resumedDir, 'checkpoints', 'last', 'trainer_state.json'), 'utf8')).globalStep,
    ).toBe(step + 2);
    // The resumed run logged only the steps after the checkpoint.
    const rows = readFileSync(join(resumedDir, 'logs', 'csv', 'metrics.csv'), 'utf8')
      .trim()
      .split('\n');
    const stepColumn = rows[0]!.split(',').indexOf('step');
    const steps = rows
      .slice(1)
      .map((l) => Number(l.split(',')[stepColumn]))
      .filter((n) => n > 0);
    expect(Math.min(...steps)).toBeGreaterThan(step);
  });

  /** A tiny run with no end in sight, started and already stepping (killed when the test ends). */
  const startEndlessTraining = async (runDir: string, overrides: string[] = []) => {
    const live = startTaskforge([
      'train',
      ...tinyRun(server.url, archive.md5, dataDir, runDir),
      'trainer.max_epochs=-1',
      'trainer.max_steps=100000',
      ...overrides,
    ]);
    onTestFinished(() => live.signal('SIGKILL'));
    await live.waitFor(/^train: .*step=\d+\/100000/m);
    return live;
  };

  it('SIGINT to a training CLI process exits 130 with last saved', async () => {
    const runDir = join(work, 'sigint');
    const live = await startEndlessTraining(runDir);
    live.signal('SIGINT');
    const ended = await live.exit;
    expect(ended.code, ended.stdout + ended.stderr).toBe(130);
    expect(ended.stderr).toMatch(/Training interrupted by SIGINT at step \d+; last checkpoint saved to /);
    expect(existsSync(join(runDir, 'checkpoints', 'last', 'trainer_state.json'))).toBe(true);
  });

  it('a second SIGINT aborts at once and says no checkpoint was saved (s5: finding 6)', async () => {
    const runDir = join(work, 'sigint-twice');
    // Steps of a few hundred ms (a bigger model; a later override wins), so both signals land in one step.
    const live = await startEndlessTraining(runDir, ['backbone.num_layers=8', 'backbone.embed_dim=64']);
    // As a user's double Ctrl-C: the second comes before the step ends and the checkpoint is written.
    // 50 ms apart, not less: Linux merges a second SIGINT that arrives while the first is still
    // pending (not yet delivered, e.g. while a loaded machine has not scheduled the process).
    live.signal('SIGINT');
    await new Promise((ok) => setTimeout(ok, 50));
    live.signal('SIGINT');
    const ended = await live.exit;
    expect(ended.signal ?? ended.code, ended.stderr).toSatisfy((end: unknown) => end === 'SIGINT' || end === 130);
    expect(ended.stderr).toMatch(
      /Received SIGINT again: aborting now, at global step \d+, without saving a checkpoint .*to start over, delete it or set another trainer\.run_dir/,
    );
    expect(existsSync(join(runDir, 'checkpoints', 'last', 'trainer_state.json'))).toBe(false);
  });

  it('checkpoint monitor: not logged yet keeps last (exit 0); a typo is exit 2 with did-you-mean, last still kept', async () => {
    // The issue's run: validation only every 2 epochs, one epoch, so val/loss never exists in it.
    const waiting = join(work, 'monitor-waiting');
    const ok = await taskforge([
      'train',
      ...tinyRun(server.url, archive.md5, dataDir, waiting),
      'trainer.max_epochs=1',
      'trainer.check_val_every_n_epoch=2',
      'trainer.limit_train_batches=3',
      'trainer.callbacks.model_checkpoint.monitor=val/loss',
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toContain("monitor is 'val/loss', which has not been logged yet at step 3");
    expect(readdirSync(join(waiting, 'checkpoints'))).toEqual(['last']);

    const typo = join(work, 'monitor-typo');
    const bad = await taskforge([
      'train',
      ...tinyRun(server.url, archive.md5, dataDir, typo),
      'trainer.max_epochs=2',
      'trainer.limit_train_batches=3',
      'trainer.callbacks.model_checkpoint.monitor=val/los',
    ]);
    expect(bad.code, bad.stderr).toBe(2);
    expect(bad.stderr).toContain(
      "trainer.callbacks.model_checkpoint.monitor: no training step or validation logs a metric named 'val/los'",
    );
    expect(bad.stderr).toContain("did you mean 'val/loss'");
    expect(bad.stderr).not.toMatch(/\n\s+at /);
    // The sanity check logs val/* before training, so it is known after the first step; that step is kept.
    expect(JSON.parse(readFileSync(join(typo, 'checkpoints', 'last', 'trainer_state.json'), 'utf8')).globalStep).toBe(
      1,
    );
  });

  it('fails with a clear message when the download md5 is wrong, leaving no partial file', async () => {
    const freshData = join(work, 'bad-md5-data');
    const r = await taskforge([
      'train',
      'trainer.fast_dev_run=true',
      ...tinyRun(server.url, 'f'.repeat(32), freshData, join(work, 'bad')),
    ]);
    expect(r.code).toBeGreaterThan(0);
    expect(r.stderr).toMatch(/md5/i);
    expect(r.stderr).toContain(server.url);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    // Nothing by any name: no archive, no .part file, no temporary extraction folder's files.
    expect(filesUnder(freshData)).toEqual([]);
  });
});
