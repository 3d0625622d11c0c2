import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { removeDirIfOnly, writeNewFileAtomic } from './fs.js';

let dir = '';
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'taskforge-fs-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('writeNewFileAtomic', () => {
  it('never replaces an existing file: a taken name gets -2, -3, ... and no temp file is left', () => {
    const path = join(dir, 'samples', 'samples-step000200.png');
    expect(writeNewFileAtomic(path, 'first')).toBe(path);
    expect(writeNewFileAtomic(path, 'second')).toBe(join(dir, 'samples', 'samples-step000200-2.png'));
    expect(writeNewFileAtomic(path, 'third')).toBe(join(dir, 'samples', 'samples-step000200-3.png'));
    expect(readFileSync(path, 'utf8')).toBe('first');
    expect(readFileSync(join(dir, 'samples', 'samples-step000200-2.png'), 'utf8')).toBe('second');
    expect(readdirSync(join(dir, 'samples')).sort()).toEqual([
      'samples-step000200-2.png',
      'samples-step000200-3.png',
      'samples-step000200.png',
    ]);
  });

  it('reports an unwritable target by path, leaving nothing behind', () => {
    writeFileSync(join(dir, 'file'), 'x');
    expect(() => writeNewFileAtomic(join(dir, 'file', 'sub', 'a.png'), 'data')).toThrow(
      /Cannot write '.*file\/sub\/a\.png'/,
    );
    expect(readdirSync(dir)).toEqual(['file']);
  });
});

describe('removeDirIfOnly', () => {
  it('removes a run dir holding only config.yaml (and empty dirs), and nothing else', () => {
    const run = join(dir, 'run');
    mkdirSync(join(run, 'logs', 'csv'), { recursive: true });
    writeFileSync(join(run, 'config.yaml'), 'a: 1\n');
    expect(removeDirIfOnly(run, 'config.yaml')).toBe(true);
    expect(existsSync(run)).toBe(false);
    expect(removeDirIfOnly(run, 'config.yaml')).toBe(false); // gone: nothing to do

    // Anything else written (a log, a checkpoint, a config.yaml deeper down) keeps it.
    for (const other of ['logs/csv/metrics.csv', 'checkpoints/last/config.yaml', 'notes.txt']) {
      mkdirSync(join(run, other, '..'), { recursive: true });
      writeFileSync(join(run, 'config.yaml'), 'a: 1\n');
      writeFileSync(join(run, other), 'x');
      expect(removeDirIfOnly(run, 'config.yaml'), other).toBe(false);
      expect(readFileSync(join(run, other), 'utf8')).toBe('x');
      rmSync(run, { recursive: true });
    }
  });
});
