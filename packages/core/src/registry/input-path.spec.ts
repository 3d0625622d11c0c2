import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { inputPath } from './input-path.js';

const dir = mkdtempSync(join(tmpdir(), 'taskforge-input-path-'));
const file = join(dir, 'archive.tar.gz');
writeFileSync(file, 'x');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const message = (schema: ReturnType<typeof inputPath>, value: string) => {
  const result = schema.safeParse(value);
  return result.success ? undefined : result.error.issues.map((i) => i.message).join('; ');
};

describe('inputPath', () => {
  it('accepts an existing path and refuses a missing one, naming the absolute path and the hint', () => {
    expect(message(inputPath(), dir)).toBeUndefined();
    expect(message(inputPath({ hint: 'point it at a checkpoint' }), join(dir, 'gone'))).toBe(
      `the path does not exist (${join(dir, 'gone')}); point it at a checkpoint`,
    );
  });

  it('checks the kind of entry', () => {
    expect(message(inputPath({ kind: 'dir' }), file)).toBe(`expected a directory, but ${file} is a file`);
    expect(message(inputPath({ kind: 'file' }), dir)).toBe(`expected a file, but ${dir} is a directory`);
    expect(message(inputPath({ kind: 'file' }), file)).toBeUndefined();
  });

  it('with urls: lets http(s) through and checks file:// URLs like paths', () => {
    const urls = inputPath({ urls: true, kind: 'file' });
    expect(message(urls, 'https://example.org/a.tar.gz')).toBeUndefined();
    expect(message(urls, pathToFileURL(file).href)).toBeUndefined();
    expect(message(urls, pathToFileURL(join(dir, 'gone.tar.gz')).href)).toBe(
      `the path does not exist (${join(dir, 'gone.tar.gz')})`,
    );
    expect(message(inputPath(), 'https://example.org/a.tar.gz')).toMatch(/the path does not exist/);
  });
});
