import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultPaths, findProjectRoot } from './paths.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function project(): string {
  const root = realpathSync(mkdtempSync(join(tmpdir(), 'taskforge-paths-')));
  dirs.push(root);
  writeFileSync(join(root, 'package.json'), '{}');
  mkdirSync(join(root, 'src/deep'), { recursive: true });
  return root;
}

describe('defaultPaths', () => {
  it('finds the project root as the nearest package.json above cwd', () => {
    const root = project();
    expect(findProjectRoot(join(root, 'src/deep'))).toBe(root);
    expect(defaultPaths({ cwd: join(root, 'src/deep'), env: {}, home: '/home/u' }).projectRoot).toBe(root);
  });

  it('takes the cache dir from TASKFORGE_CACHE_DIR, then XDG_CACHE_HOME, then ~/.cache', () => {
    const root = project();
    const base = { cwd: root, home: '/home/u' };
    expect(defaultPaths({ ...base, env: { TASKFORGE_CACHE_DIR: 'cache', XDG_CACHE_HOME: '/xdg' } }).cacheDir).toBe(
      join(root, 'cache'),
    );
    expect(defaultPaths({ ...base, env: { XDG_CACHE_HOME: '/xdg' } }).cacheDir).toBe('/xdg/taskforge');
    expect(defaultPaths({ ...base, env: { TASKFORGE_CACHE_DIR: '', XDG_CACHE_HOME: '' } }).cacheDir).toBe(
      '/home/u/.cache/taskforge',
    );
  });
});
