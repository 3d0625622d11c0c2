import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ConsoleOutput, formatDuration } from './output.js';
import type { Clock } from './tokens.js';

class FakeClock implements Clock {
  t = 1_000_000;
  now(): number {
    return this.t;
  }
  advance(seconds: number): void {
    this.t += seconds * 1000;
  }
}

function sink(isTTY = false) {
  const chunks: string[] = [];
  const stream = Object.assign(
    new Writable({
      write(chunk, _enc, done) {
        chunks.push(String(chunk));
        done();
      },
    }),
    { isTTY, columns: 120 },
  );
  return { stream, text: () => chunks.join(''), lines: () => chunks.join('').split('\n').filter(Boolean) };
}

describe('ConsoleOutput (plain lines, non-TTY)', () => {
  it('prints info and warnings as lines', () => {
    const out = sink();
    const output = new ConsoleOutput({ stream: out.stream });
    output.info('loading cifar10');
    output.warn('no GPU backend; using cpu');
    expect(out.lines()).toEqual(['loading cifar10', 'warning: no GPU backend; using cpu']);
  });

  it('prints progress at most once per interval and a final line, with MB, speed and ETA for bytes', () => {
    const out = sink();
    const clock = new FakeClock();
    const output = new ConsoleOutput({ stream: out.stream, clock, plainIntervalMs: 5000 });
    const bar = output.progress({ label: 'download cifar-10-binary.tar.gz', unit: 'bytes' });
    bar.setTotal(163_000_000);
    clock.advance(1);
    bar.update(2_000_000); // first update prints
    clock.advance(1);
    bar.update(4_000_000); // within the interval: silent
    clock.advance(4);
    bar.update(12_000_000); // 5 s after the last line
    clock.advance(2);
    bar.update(16_000_000); // silent
    clock.advance(10);
    bar.update(163_000_000);
    bar.stop();
    bar.stop();
    expect(out.lines()).toEqual([
      'download cifar-10-binary.tar.gz: 2.0/163.0 MB (1%) 2.0 MB/s ETA 1m21s',
      'download cifar-10-binary.tar.gz: 12.0/163.0 MB (7%) 2.0 MB/s ETA 1m16s',
      'download cifar-10-binary.tar.gz: 163.0/163.0 MB (100%) 9.1 MB/s',
      'download cifar-10-binary.tar.gz: 163.0/163.0 MB (100%) 9.1 MB/s, done in 18s',
    ]);
  });

  it('shows steps with fields, and items without a known total', () => {
    const out = sink();
    const clock = new FakeClock();
    const output = new ConsoleOutput({ stream: out.stream, clock, plainIntervalMs: 1000 });
    const steps = output.progress({ label: 'train', total: 1000, unit: 'steps' });
    clock.advance(4);
    steps.update(10, { loss: 2.345678, epoch: 0 });
    steps.stop();
    const items = output.progress({ label: 'index' });
    clock.advance(2);
    items.update(50);
    items.stop();
    expect(out.lines()).toEqual([
      'train: 10/1000 steps (1%) 2.5 steps/s ETA 6m36s loss=2.346 epoch=0',
      'train: 10/1000 steps (1%) 2.5 steps/s ETA 6m36s loss=2.346 epoch=0, done in 4s',
      'index: 50 25 it/s',
      'index: 50 25 it/s, done in 2s',
    ]);
  });
});

describe('ConsoleOutput rateFromFirstUpdate (training ETA)', () => {
  it('leaves startup and the first step out of the rate and ETA; "done in" still counts all', () => {
    const out = sink();
    const clock = new FakeClock();
    const output = new ConsoleOutput({ stream: out.stream, clock, plainIntervalMs: 0 });
    const bar = output.progress({ label: 'train', total: 100, unit: 'steps', rateFromFirstUpdate: true });
    clock.advance(50); // backend start, data loading, kernel compilation, the first step
    bar.update(1, { loss: 2 });
    clock.advance(2);
    bar.update(3); // 2 steps in 2 s: 1 step/s, 97 steps left
    clock.advance(1);
    bar.update(4);
    bar.stop();
    expect(out.lines()).toEqual([
      'train: 1/100 steps (1%) loss=2',
      'train: 3/100 steps (3%) 1 steps/s ETA 1m37s loss=2',
      'train: 4/100 steps (4%) 1 steps/s ETA 1m36s loss=2',
      'train: 4/100 steps (4%) 1 steps/s ETA 1m36s loss=2, done in 53s',
    ]);
  });

  it('without it, the rate counts from the start (startup included)', () => {
    const out = sink();
    const clock = new FakeClock();
    const output = new ConsoleOutput({ stream: out.stream, clock, plainIntervalMs: 0 });
    const bar = output.progress({ label: 'train', total: 100, unit: 'steps' });
    clock.advance(50);
    bar.update(1);
    expect(out.lines()).toEqual(['train: 1/100 steps (1%) 0.02 steps/s ETA 1h22m']);
  });
});

describe('ConsoleOutput (TTY)', () => {
  it('draws a bar with the label and amount, and prints messages above it', () => {
    const out = sink(true);
    const output = new ConsoleOutput({ stream: out.stream, clock: new FakeClock() });
    const bar = output.progress({ label: 'train', total: 4, unit: 'steps' });
    bar.update(2, { loss: 0.5 });
    output.info('validation done');
    bar.update(4);
    bar.stop();
    const text = out.text();
    expect(text).toContain('validation done\n');
    expect(text).toMatch(/train [█░]{30} 4\/4 steps \(100%\)/);
    expect(text).toContain('loss=0.5, done in 0s');
  });
});

describe('formatDuration', () => {
  it('uses s, m and h', () => {
    expect([formatDuration(0), formatDuration(59.4), formatDuration(61), formatDuration(3 * 3600 + 5 * 60)]).toEqual([
      '0s',
      '59s',
      '1m01s',
      '3h05m',
    ]);
  });
});
