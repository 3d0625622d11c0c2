import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TaskforgeError } from '../errors.js';
import { CsvLogger } from '../loggers/csv.js';
import { TensorBoardLogger } from '../loggers/tensorboard.js';
import { eventsHoldData, frameRecord } from '../loggers/tfevents.js';
import { runDirPath } from './config.js';
import { assertRunDirFree, removeRunDirIfBare, runDirOutputs } from './run-dir.js';

let dir = '';
let run = '';
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'taskforge-run-dir-'));
  run = join(dir, 'run');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** What a run writes before its first step: config.yaml, both loggers' hparams, the events header. */
function skeleton(at: string): void {
  mkdirSync(join(at, 'checkpoints'), { recursive: true });
  writeFileSync(join(at, 'config.yaml'), 'trainer: {}\n');
  const csv = new CsvLogger({ dir: join(at, 'logs', 'csv') });
  const tb = new TensorBoardLogger({ dir: join(at, 'logs', 'tensorboard') });
  for (const logger of [csv, tb]) {
    logger.logHyperparams({ trainer: { max_steps: 3 } });
    logger.finalize();
  }
}

/** A finished run: a checkpoint, two metrics rows (CSV and TensorBoard). */
function finishedRun(at: string): void {
  skeleton(at);
  mkdirSync(join(at, 'checkpoints', 'last'), { recursive: true });
  writeFileSync(join(at, 'checkpoints', 'last', 'trainer_state.json'), '{"globalStep": 2}');
  writeFileSync(join(at, 'checkpoints', 'last', 'weights.bin'), 'w');
  const csv = new CsvLogger({ dir: join(at, 'logs', 'csv') });
  const tb = new TensorBoardLogger({ dir: join(at, 'logs', 'tensorboard'), now: () => 1_000 });
  for (const logger of [csv, tb]) {
    logger.logMetrics({ 'train/loss': 2 }, 1);
    logger.logMetrics({ 'train/loss': 1 }, 2);
    logger.finalize();
  }
}

function refusal(action: () => void): TaskforgeError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(TaskforgeError);
    return error as TaskforgeError;
  }
  throw new Error('expected a refusal');
}

describe('runDirOutputs', () => {
  it('is empty for a missing dir, an empty one and the skeleton a run writes before its first step', () => {
    expect(runDirOutputs(run)).toEqual([]);
    mkdirSync(run);
    expect(runDirOutputs(run)).toEqual([]);
    skeleton(run);
    writeFileSync(join(run, 'logs', 'csv', 'metrics.csv'), 'step,train/loss\n'); // header only
    expect(runDirOutputs(run)).toEqual([]);
  });

  it('names checkpoints by dir, metrics files with their rows, events with data and any other file', () => {
    finishedRun(run);
    mkdirSync(join(run, 'checkpoints', 'step=000001'));
    writeFileSync(join(run, 'checkpoints', 'step=000001', 'weights.bin'), 'w');
    writeFileSync(join(run, 'test_results.json'), '{}');
    const outputs = runDirOutputs(run);
    expect(outputs).toEqual([
      'checkpoints/last',
      'checkpoints/step=000001',
      'logs/csv/metrics.csv (2 rows, steps 1-2)',
      expect.stringMatching(/^logs\/tensorboard\/events\.out\.tfevents\.\d+\./),
      'test_results.json',
    ]);
    expect(outputs.filter((o) => o.includes('tfevents'))).toHaveLength(1); // the skeleton's file has no data
  });

  it('counts a top-level file of any other name, a config.yaml deeper down and a symlink', () => {
    for (const other of ['notes.txt', 'checkpoints/last/config.yaml', 'link']) {
      rmSync(run, { recursive: true, force: true });
      skeleton(run);
      if (other === 'link') symlinkSync(dir, join(run, other));
      else {
        mkdirSync(join(run, other, '..'), { recursive: true });
        writeFileSync(join(run, other), 'x');
      }
      expect(runDirOutputs(run), other).toEqual([
        other === 'checkpoints/last/config.yaml' ? 'checkpoints/last' : other,
      ]);
    }
  });
});

describe('eventsHoldData', () => {
  it('is false for the version record and hparams text only, true for a scalar, and true for broken data', () => {
    const tb = new TensorBoardLogger({ dir, now: () => 5_000 });
    tb.logHyperparams({ a: 1 });
    tb.finalize();
    const header = readFileSync(tb.eventsPath);
    expect(eventsHoldData(header)).toBe(false);
    expect(eventsHoldData(new Uint8Array(0))).toBe(false);
    tb.logMetrics({ loss: 1 }, 0);
    tb.finalize();
    expect(eventsHoldData(readFileSync(tb.eventsPath))).toBe(true);
    expect(eventsHoldData(header.subarray(0, header.length - 3)), 'truncated').toBe(true);
    expect(eventsHoldData(frameRecord(Uint8Array.from([0xff, 0xff]))), 'not a protobuf').toBe(true);
  });
});

describe('removeRunDirIfBare', () => {
  it('removes a skeleton-only dir; keeps a dir with a checkpoint or a metrics row, touching nothing', () => {
    skeleton(run);
    expect(removeRunDirIfBare(run)).toBe(true);
    expect(existsSync(run)).toBe(false);
    expect(removeRunDirIfBare(run)).toBe(false);

    skeleton(run);
    writeFileSync(join(run, 'logs', 'csv', 'metrics.csv'), 'step,train/loss\n0,2.5\n');
    expect(removeRunDirIfBare(run)).toBe(false);
    expect(readFileSync(join(run, 'logs', 'csv', 'metrics.csv'), 'utf8')).toContain('0,2.5');

    rmSync(run, { recursive: true });
    skeleton(run);
    mkdirSync(join(run, 'checkpoints', 'last'));
    writeFileSync(join(run, 'checkpoints', 'last', 'weights.bin'), 'w');
    expect(removeRunDirIfBare(run)).toBe(false);
    expect(existsSync(join(run, 'checkpoints', 'last', 'weights.bin'))).toBe(true);
  });
});

describe('assertRunDirFree', () => {
  it('passes a missing, empty or skeleton-only dir', () => {
    for (const setup of [() => {}, () => mkdirSync(run), () => skeleton(run)]) {
      setup();
      expect(() => assertRunDirFree(run, { command: 'train', given: 'outputs/do1' })).not.toThrow();
    }
  });

  it('refuses to train into a finished run (exit 2), naming the dir, what it holds and every fix', () => {
    finishedRun(run);
    const error = refusal(() => assertRunDirFree(run, { command: 'train', given: 'outputs/do1' }));
    expect(error.exitCode).toBe(2);
    expect(error.message).toContain(`trainer.run_dir=outputs/do1: the run dir ${run} already holds a run (`);
    expect(error.message).toContain('checkpoints/last');
    expect(error.message).toContain('logs/csv/metrics.csv (2 rows, steps 1-2)');
    expect(error.message).toContain('would overwrite its checkpoints and config.yaml');
    expect(error.message).toContain(`trainer.resume_from=${join(run, 'checkpoints', 'last')}`);
    expect(error.message).toContain('pick another trainer.run_dir');
    expect(error.message).toContain(`delete ${run}`);
  });

  it('lets train resume from a checkpoint inside the dir, but not from one of another run', () => {
    finishedRun(run);
    const last = join(run, 'checkpoints', 'last');
    expect(() => assertRunDirFree(run, { command: 'train', given: run, resumeFrom: last })).not.toThrow();
    const other = join(dir, 'other', 'checkpoints', 'last');
    mkdirSync(other, { recursive: true });
    const error = refusal(() => assertRunDirFree(run, { command: 'train', given: run, resumeFrom: other }));
    expect(error.message).toContain(`trainer.resume_from=${other} is not a checkpoint of this run dir`);
    // An evaluation never continues a run: a resume path does not let it in.
    const test = refusal(() => assertRunDirFree(run, { command: 'test', given: run, resumeFrom: last }));
    expect(test.exitCode).toBe(2);
    expect(test.message).toContain('`taskforge test` would overwrite its config.yaml and results and add to its logs.');
    expect(test.message).not.toContain('resume');
    // predict writes no logs, so it does not claim to (s5: finding 15).
    const predict = refusal(() => assertRunDirFree(run, { command: 'predict', given: run }));
    expect(predict.message).toContain('`taskforge predict` would overwrite its config.yaml and results. ');
  });

  it('lets sample add to a dir holding only earlier samples, not to a training run', () => {
    mkdirSync(join(run, 'samples'), { recursive: true });
    writeFileSync(join(run, 'samples', 'samples-step000003-seed42.png'), 'png');
    expect(() => assertRunDirFree(run, { command: 'sample', given: run })).not.toThrow();
    expect(() => assertRunDirFree(run, { command: 'test', given: run })).toThrow(/samples\/samples-step000003/);
    finishedRun(run);
    expect(refusal(() => assertRunDirFree(run, { command: 'sample', given: run })).message).toContain(
      'already holds a run (checkpoints/last',
    );
  });

  it('lists at most six outputs and counts the rest', () => {
    mkdirSync(run);
    for (let i = 0; i < 9; i++) writeFileSync(join(run, `f${i}.txt`), 'x');
    const error = refusal(() => assertRunDirFree(run, { command: 'predict' }));
    expect(error.message).toContain('f0.txt, f1.txt, f2.txt, f3.txt, f4.txt, f5.txt and 3 more');
    expect(error.message).toMatch(/^The run dir /);
  });
});

describe('runDirPath', () => {
  const clock = { now: () => new Date(2026, 10, 30, 13, 5, 9).getTime() };

  it('keeps an explicit run_dir even when it exists (the command checks what it holds)', () => {
    mkdirSync(run);
    expect(runDirPath({ run_dir: 'run', default_root_dir: 'outputs' }, dir, clock)).toBe(run);
  });

  it('gives the timestamped default a -2, -3 suffix when a dir of that name exists', () => {
    const config = { run_dir: null, default_root_dir: 'outputs' };
    const first = join(dir, 'outputs', '2026-11-30', '13-05-09');
    expect(runDirPath(config, dir, clock)).toBe(first);
    mkdirSync(first, { recursive: true });
    expect(runDirPath(config, dir, clock)).toBe(`${first}-2`);
    mkdirSync(`${first}-2`);
    expect(runDirPath(config, dir, clock)).toBe(`${first}-3`);
  });
});
