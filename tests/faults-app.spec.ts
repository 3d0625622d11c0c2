/**
 * End-to-end: faults found by trying users' bug reports (issues 10.4, 10.6, 10.9, 10.10, 10.11,
 * 11.6), each reproduced with the built CLI exactly as typed, asserting the exit code, the
 * message naming the cause, and what is (not) on disk afterwards.
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { taskforge, tinyCifarArchive } from './fixtures/cli.js';

const work = mkdtempSync(join(tmpdir(), 'taskforge-faults-app-'));
let archive: { file: string; md5: string };

/** A tiny 8×8 iGPT on a local archive: one small layer, 8 colours, batches of 4. */
const tiny = (runDir: string, dataDir = join(work, 'data')) => [
  `dataset.url=${archive.file}`,
  `dataset.md5=${archive.md5}`,
  `dataset.data_dir=${dataDir}`,
  'dataset.val_size=8',
  'dataset.batch_size=4',
  'dataset.palette_size=8',
  'dataset.palette_sample_pixels=4096',
  'dataset.image_size=8',
  'backbone.num_layers=1',
  'backbone.embed_dim=8',
  `trainer.run_dir=${runDir}`,
];

beforeAll(async () => {
  archive = await tinyCifarArchive();
}, 60_000);

/** Every file under `dir` with its size, mtime and content hash: equal snapshots mean nothing was touched. */
function snapshot(dir: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name);
    const stat = statSync(path);
    files[path] = entry.isFile()
      ? `${stat.size} ${stat.mtimeMs} ${createHash('md5').update(readFileSync(path)).digest('hex')}`
      : 'dir';
  }
  return files;
}

describe('every input path is checked before the run dir is created (10.4)', () => {
  it('a missing trainer.resume_from, task.pretrained or local dataset.url is a usage error (exit 2) naming the key', async () => {
    const missing = join(work, 'no-such-checkpoint');
    for (const [key, value] of [
      ['trainer.resume_from', missing],
      ['task.pretrained', missing],
      ['dataset.url', join(work, 'no-such.tar.gz')],
    ] as const) {
      const runDir = join(work, `missing-${key}`);
      const r = await taskforge(['train', ...tiny(runDir), `${key}=${value}`]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`${key}: the path does not exist (${value})`);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(existsSync(runDir), `${key}: no run dir`).toBe(false);
    }
    // `config` validates exactly as `train` does.
    const config = await taskforge(['config', `trainer.resume_from=${missing}`]);
    expect(config.code).toBe(2);
    expect(config.stderr).toContain(`trainer.resume_from: the path does not exist (${missing})`);
  });

  it('test ckpt=<missing dir> says it does not exist (exit 2)', async () => {
    const missing = join(work, 'gone', 'checkpoints', 'last');
    const r = await taskforge(['test', `ckpt=${missing}`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`the checkpoint directory ${missing} does not exist`);
    expect(existsSync(join(work, 'gone'))).toBe(false);
  });
});

describe('config group swaps and deletions (10.6)', () => {
  it("scheduler=constant keeps the task's warmup_steps, drops min_lr_ratio with a note, and validates", async () => {
    const r = await taskforge(['config', 'scheduler=constant']);
    expect(r.code, r.stderr).toBe(0);
    expect(parse(r.stdout).scheduler).toEqual({ _target_: 'scheduler/constant', warmup_steps: 500 });
    expect(r.stderr).toMatch(
      /sets scheduler\.min_lr_ratio for scheduler 'warmup_cosine', but 'constant' is selected \(command line\) and has no such key; the setting is dropped/,
    );
  });

  it('~scheduler and scheduler=null remove the whole group, and train then runs (constant learning rate)', async () => {
    for (const override of ['~scheduler', 'scheduler=null']) {
      const r = await taskforge(['config', override]);
      expect(r.code, r.stderr).toBe(0);
      expect(parse(r.stdout).scheduler, override).toBeUndefined();
    }
    const runDir = join(work, 'no-scheduler');
    const train = await taskforge(['train', ...tiny(runDir), '~scheduler', 'trainer.fast_dev_run=true']);
    expect(train.code, train.stderr).toBe(0);
  });

  it('a half-configured or missing section is refused by config as by train, before any run dir', async () => {
    const runDir = join(work, 'half');
    for (const command of ['config', 'train']) {
      const r = await taskforge([command, ...tiny(runDir).filter((o) => !o.startsWith('backbone.')), '~backbone']);
      expect(r.code, `${command}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain('backbone: no backbone is configured');
    }
    expect(existsSync(runDir)).toBe(false);
  });
});

describe('evaluating checkpoints (11.6, 10.9, 10.10, 10.11)', () => {
  const runDir = join(work, 'pretrain');
  const last = join(runDir, 'checkpoints', 'last');
  const metricsCsv = join(runDir, 'logs', 'csv', 'metrics.csv');

  beforeAll(async () => {
    const train = await taskforge([
      'train',
      ...tiny(runDir),
      'trainer.max_steps=2',
      'trainer.log_every_n_steps=1',
      'task.sampling.num_images=2',
      'task.sampling.num_unconditional=2',
      'task.sampling.scale=1',
    ]);
    expect(train.code, train.stderr).toBe(0);
    cpSync(last, join(runDir, 'checkpoints', 'copy'), { recursive: true });
  }, 240_000);

  it('test ckpt=A, ckpt=B, ckpt=A again: three result files named after each checkpoint; the training metrics.csv is untouched', async () => {
    const before = readFileSync(metricsCsv, 'utf8');
    for (const name of ['last', 'copy', 'last']) {
      const r = await taskforge(['test', `ckpt=${join(runDir, 'checkpoints', name)}`]);
      expect(r.code, r.stderr).toBe(0);
    }
    expect(readFileSync(metricsCsv, 'utf8')).toBe(before);
    expect(existsSync(join(runDir, 'test_results.json'))).toBe(false);
    const evaluations = join(runDir, 'evaluations');
    expect(readdirSync(evaluations).sort()).toEqual([
      'test-copy-step000002',
      'test-last-step000002',
      'test-last-step000002-2',
    ]);
    for (const dir of readdirSync(evaluations)) {
      const results = JSON.parse(readFileSync(join(evaluations, dir, 'test_results.json'), 'utf8'));
      expect(results.metrics['test/loss']).toBeGreaterThan(0);
      // Logged at the checkpoint's step, not at step 0.
      const rows = readFileSync(join(evaluations, dir, 'logs', 'csv', 'metrics.csv'), 'utf8')
        .trim()
        .split('\n');
      expect(rows[0]!.split(',')[0]).toBe('step');
      expect(rows.slice(1).map((row) => row.split(',')[0])).toEqual(['2']);
    }
  });

  it('test ckpt=<8×8> dataset.image_size=16 is refused up front (exit 2) naming dataset.image_size; nothing is written', async () => {
    const before = readdirSync(join(runDir, 'evaluations')).sort();
    const r = await taskforge(['test', `ckpt=${last}`, 'dataset.image_size=16']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('dataset.image_size (checkpoint 8, this run 16)');
    expect(r.stderr).toContain('num_positions (checkpoint 64, this run 256)');
    expect(r.stderr).not.toContain("using the checkpoint's");
    expect(readdirSync(join(runDir, 'evaluations')).sort()).toEqual(before);
  });

  it('task.pretrained=<8×8> dataset.image_size=16 names dataset.image_size, not the palette (exit 2)', async () => {
    const r = await taskforge([
      'train',
      ...tiny(join(work, 'finetune-16')),
      'dataset.image_size=16',
      `task.pretrained=${last}`,
      'trainer.fast_dev_run=true',
    ]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('dataset.image_size (checkpoint 8, this run 16)');
    expect(r.stderr).toMatch(/set the dataset settings that shape the data .*it had dataset\.image_size=8/);
  });

  it('weights that do not fit the model are a config error (exit 2) whichever part differs', async () => {
    const resume = await taskforge([
      'train',
      ...tiny(join(work, 'resume-wide')),
      `trainer.resume_from=${last}`,
      'backbone.embed_dim=16',
      'trainer.max_steps=3',
    ]);
    expect(resume.code, resume.stderr).toBe(2);
    expect(resume.stderr).toContain('mis-shaped');
    const pretrained = await taskforge([
      'train',
      ...tiny(join(work, 'pretrained-wide')),
      `task.pretrained=${last}`,
      'backbone.embed_dim=16',
      'trainer.fast_dev_run=true',
    ]);
    expect(pretrained.code, pretrained.stderr).toBe(2);
    expect(pretrained.stderr).toMatch(/task\.pretrained: cannot load .*mis-shaped/s);
    // The other backbone settings came from the checkpoint; the command line's conflicting one is named with a fix.
    expect(pretrained.stderr).toContain(
      "This run's backbone differs from the checkpoint's in backbone.embed_dim (checkpoint 8, this run 16). " +
        "Drop the command-line override backbone.embed_dim=16 (the checkpoint's value is then taken from its config.yaml)",
    );
    const evaluations = readdirSync(join(runDir, 'evaluations')).sort();
    const test = await taskforge(['test', `ckpt=${last}`, 'backbone.embed_dim=16']);
    expect(test.code, test.stderr).toBe(2);
    expect(test.stderr).toContain('mis-shaped');
    expect(readdirSync(join(runDir, 'evaluations')).sort(), 'refused before its run dir is made').toEqual(evaluations);
  });
});

describe('edges found by a new user (s3: findings 6, 11)', () => {
  it('an empty val split skips validation with a warning naming the datamodule; the run trains', async () => {
    const runDir = join(work, 'empty-val');
    const r = await taskforge(['train', ...tiny(runDir), 'dataset.val_size=0', 'trainer.max_steps=1']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).toMatch(/The val dataloader of the datamodule \S+ yields no batches: validation is skipped/);
  });

  it('a run refused after its run dir was created leaves no run dir behind', async () => {
    const runDir = join(work, 'no-train-images');
    // 5 files of 8 training images: val_size=40 leaves none for training (found in the datamodule's setup).
    const r = await taskforge(['train', ...tiny(runDir), 'dataset.val_size=40']);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(r.stderr).toContain('dataset.val_size');
    expect(r.stderr).toContain(`Removed the run dir ${runDir}`);
    expect(existsSync(runDir)).toBe(false);
  });

  it('test ckpt=… under ddp runs with trainer.devices above dataset.batch_size (whole batches round-robin)', async () => {
    const runDir = join(work, 'ddp-small-batch');
    const train = await taskforge(['train', ...tiny(runDir), 'trainer.strategy=single', 'trainer.max_steps=1']);
    expect(train.code, train.stdout + train.stderr).toBe(0);
    const evalDir = join(work, 'ddp-small-batch-test');
    const r = await taskforge([
      'test',
      `ckpt=${join(runDir, 'checkpoints', 'last')}`,
      `trainer.run_dir=${evalDir}`,
      'trainer.strategy=ddp',
      'trainer.devices=2',
      'dataset.batch_size=1',
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).toContain('Strategy: ddp, 2 devices (worker threads) (trainer.devices=2)');
    expect(existsSync(join(evalDir, 'test_results.json'))).toBe(true);
  });
});

describe('a run dir that already holds a run is never written over (s5: finding 1)', () => {
  const runDir = join(work, 'do1');
  const last = join(runDir, 'checkpoints', 'last');
  const metricsCsv = join(runDir, 'logs', 'csv', 'metrics.csv');

  beforeAll(async () => {
    const train = await taskforge(['train', ...tiny(runDir), 'trainer.max_steps=2', 'trainer.log_every_n_steps=1']);
    expect(train.code, train.stderr).toBe(0);
  }, 240_000);

  it('train with trainer.run_dir=<that run> is refused (exit 2) before anything in it is touched, naming it, what it holds and the fixes', async () => {
    const before = snapshot(runDir);
    const r = await taskforge(['train', ...tiny(runDir), 'trainer.max_steps=2']);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(r.stderr).toContain(
      `trainer.run_dir=${runDir}: the run dir ${runDir} already holds a run (checkpoints/last`,
    );
    expect(r.stderr).toMatch(/logs\/csv\/metrics\.csv \(\d+ rows, steps \d+-2\)/);
    expect(r.stderr).toContain('would overwrite its checkpoints and config.yaml');
    expect(r.stderr).toContain(`keep 'trainer.run_dir=${runDir}' and add 'trainer.resume_from=${last}'`);
    expect(r.stderr).toContain('pick another trainer.run_dir');
    expect(r.stderr).toContain(`delete ${runDir}`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stderr).not.toContain('Removed the run dir');
    expect(snapshot(runDir)).toEqual(before);
  });

  it('test and predict with trainer.run_dir=<that run> are refused as well, leaving it as it was', async () => {
    const before = snapshot(runDir);
    for (const command of ['test', 'predict']) {
      const r = await taskforge([command, `ckpt=${last}`, `trainer.run_dir=${runDir}`]);
      expect(r.code, `${command}: ${r.stdout + r.stderr}`).toBe(2);
      expect(r.stderr).toContain(`the run dir ${runDir} already holds a run (checkpoints/last`);
      expect(r.stderr).toContain(`\`taskforge ${command}\` would overwrite its config.yaml and results`);
    }
    expect(snapshot(runDir)).toEqual(before);
  });

  it('resuming from its checkpoints/last continues in the same run dir: steps go on from 2', async () => {
    const r = await taskforge([
      'train',
      ...tiny(runDir),
      `trainer.resume_from=${last}`,
      'trainer.max_steps=3',
      'trainer.log_every_n_steps=1',
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const steps = readFileSync(metricsCsv, 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((row) => Number(row.split(',')[0]));
    expect(steps.at(-1)).toBe(3);
    expect(steps).toEqual([...steps].sort((a, b) => a - b)); // monotone: no second run from step 0
    const state = JSON.parse(readFileSync(join(last, 'trainer_state.json'), 'utf8'));
    expect(state.globalStep).toBe(3);
  });
});
