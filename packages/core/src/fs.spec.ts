import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeNewFileAtomic } from './fs.js';

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
