/**
 * Data-parallel training (`trainer.strategy=ddp`) through the built CLI: Image GPT with rank 0 on
 * the main thread and one worker thread built from the composed config through plugin discovery.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { serveFile, startTaskforge, taskforge, tinyCifarArchive, tinyRun } from './fixtures/cli.js';

const DDP = ['trainer.strategy=ddp', 'trainer.devices=2'];
const STRATEGY_LINE = 'Strategy: ddp, 2 devices (worker threads) (trainer.devices=2)';

describe('taskforge train under ddp (2 devices)', () => {
  let server: Awaited<ReturnType<typeof serveFile>>;
  let archive: { file: string; md5: string };
  const work = mkdtempSync(join(tmpdir(), 'taskforge-e2e-ddp-'));
  const dataDir = join(work, 'data');
  const tiny = (runDir: string) => tinyRun(server.url, archive.md5, dataDir, runDir);

  beforeAll(async () => {
    archive = await tinyCifarArchive();
    server = await serveFile(archive.file);
  });
  afterAll(() => server?.close());

  it('fast_dev_run trains one batch split over two workers and writes no checkpoint', async () => {
    const runDir = join(work, 'fast-dev-run');
    const r = await taskforge(['train', 'trainer.fast_dev_run=true', ...DDP, ...tiny(runDir)]);
    const out = r.stdout + r.stderr;
    expect(r.code, out).toBe(0);
    expect(out).toContain(STRATEGY_LINE);
    expect(out).toContain('Training finished at step 1');
    expect(existsSync(join(runDir, 'checkpoints'))).toBe(false);
  });

  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)(
    '%s: finishes the step, saves last and exits %i; the SIGTERM checkpoint resumes under single',
    async (signal, code) => {
      const runDir = join(work, signal);
      const live = startTaskforge([
        'train',
        ...DDP,
        ...tiny(runDir),
        'trainer.max_epochs=-1',
        'trainer.max_steps=100000',
      ]);
      onTestFinished(() => live.signal('SIGKILL'));
      await live.waitFor(/^train: .*step=\d+\/100000/m);
      live.signal(signal);
      const ended = await live.exit;
      expect(ended.code, ended.stdout + ended.stderr).toBe(code);
      expect(ended.stderr).toContain(STRATEGY_LINE);
      expect(ended.stderr).not.toMatch(/\n\s+at /);
      const stopped = new RegExp(
        `Training interrupted by ${signal} at step (\\d+); last checkpoint saved to (\\S+);`,
      ).exec(ended.stderr);
      expect(stopped, ended.stderr).not.toBeNull();
      const step = Number(stopped![1]);
      const last = join(runDir, 'checkpoints', 'last');
      expect(JSON.parse(readFileSync(join(last, 'trainer_state.json'), 'utf8')).globalStep).toBe(step);
      if (signal === 'SIGINT') return;

      const resumed = await taskforge([
        'train',
        'trainer.strategy=single',
        ...tiny(join(work, 'resumed')),
        `trainer.max_steps=${step + 1}`,
        `trainer.resume_from=${last}`,
      ]);
      expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
      expect(resumed.stderr).toContain('Strategy: single device (trainer.strategy=single)');
      expect(resumed.stderr).toContain(`Resumed from '${last}' at global step ${step}`);
      expect(resumed.stderr).toContain(`Training finished at step ${step + 1}`);
    },
  );

  it.each([
    [['trainer.devices=5'], /trainer\.devices=5 is more than the batch size \(dataset\.batch_size=4\)/],
    [['trainer.strategy=single', 'trainer.devices=2'], /trainer\.devices=2 needs trainer\.strategy=ddp/],
    [['trainer.devices=0'], /trainer\.devices: expected 'auto' or an integer >= 1 \(got 0\)/],
  ])(
    '%j is a usage error (exit 2) naming the key and the fix, before any run dir exists',
    async (overrides, message) => {
      const runDir = join(work, `refused-${overrides.length}-${overrides.at(-1)!.replace(/\W/g, '_')}`);
      const r = await taskforge(['train', ...tiny(runDir), ...overrides]);
      expect(r.code, r.stdout + r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(existsSync(runDir)).toBe(false);
    },
  );

  it('test and predict of a checkpoint under ddp write the results of a single-device run', async () => {
    const runDir = join(work, 'evaluated');
    const train = await taskforge(['train', ...tiny(runDir), 'task.classify=true', 'trainer.max_steps=2']);
    expect(train.code, train.stdout + train.stderr).toBe(0);
    const last = join(runDir, 'checkpoints', 'last');
    const evaluate = async (command: 'test' | 'predict', strategy: string[]) => {
      const dir = join(work, `${command}-${strategy.length ? 'ddp' : 'single'}`);
      const single = strategy.length ? [] : ['trainer.strategy=single'];
      const r = await taskforge([command, `ckpt=${last}`, `trainer.run_dir=${dir}`, ...single, ...strategy]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stderr).not.toContain('rank 0 only');
      const file = command === 'test' ? 'test_results.json' : 'predictions.json';
      return { out: r.stderr, json: JSON.parse(readFileSync(join(dir, file), 'utf8')) };
    };
    // 10 test images in batches of 4, 4, 2: rank 0 runs batches 0 and 2, the worker batch 1.
    const [singleTest, ddpTest] = [await evaluate('test', []), await evaluate('test', DDP)];
    expect(ddpTest.out).toContain(STRATEGY_LINE);
    expect(ddpTest.json.extras.confusion_matrix.matrix.flat().reduce((a: number, b: number) => a + b, 0)).toBe(10);
    expect(ddpTest.json.extras).toEqual(singleTest.json.extras);
    for (const [name, value] of Object.entries(singleTest.json.metrics as Record<string, number>))
      expect(ddpTest.json.metrics[name], name).toBeCloseTo(value, 5);

    const [singlePredict, ddpPredict] = [await evaluate('predict', []), await evaluate('predict', DDP)];
    type Prediction = { label: number; bpp: number; predicted: number };
    const ddpRecords = (ddpPredict.json as Prediction[][]).flat();
    const singleRecords = (singlePredict.json as Prediction[][]).flat();
    expect((ddpPredict.json as Prediction[][]).map((b) => b.length)).toEqual([4, 4, 2]);
    expect(ddpRecords.map((r) => [r.label, r.predicted])).toEqual(singleRecords.map((r) => [r.label, r.predicted]));
    ddpRecords.forEach((r, i) => expect(r.bpp).toBeCloseTo(singleRecords[i]!.bpp, 5));
  });
});
