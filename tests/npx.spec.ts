/**
 * `npx taskforge` inside the repository: npm links the committed bin shim at install time (before
 * any build), the shim runs the built CLI whatever the mode bits of dist/ (Nx's cache restore drops
 * them), says how to build when dist/ is missing, and npx never falls through to the registry.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO, run } from './fixtures/cli.js';

const SHIM = join(REPO, 'packages/cli/bin/taskforge.js');
const DIST_BIN = join(REPO, 'packages/cli/dist/bin.js');
const VERSION = (JSON.parse(readFileSync(join(REPO, 'packages/cli/package.json'), 'utf8')) as { version: string })
  .version;
// --no-install plus offline: if the local bin were missing, npx fails here instead of asking the registry.
const npxEnv = { npm_config_offline: 'true', npm_config_yes: 'false' };

describe('npx taskforge in the repository', () => {
  const work = mkdtempSync(join(tmpdir(), 'taskforge-npx-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('npm links the committed, executable shim (it exists at npm ci time, unlike dist/)', () => {
    expect(realpathSync(join(REPO, 'node_modules/.bin/taskforge'))).toBe(realpathSync(SHIM));
    const mode = execFileSync('git', ['ls-files', '-s', 'packages/cli/bin/taskforge.js'], {
      cwd: REPO,
      encoding: 'utf8',
    });
    expect(mode).toMatch(/^100755 /);
  });

  it('runs the built CLI, also after the build lost its executable bit (Nx cache restore)', async () => {
    const before = statSync(DIST_BIN).mode;
    try {
      chmodSync(DIST_BIN, 0o644);
      const r = await run('npx', ['--no-install', 'taskforge', '--version'], { env: npxEnv });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe(VERSION);
      const list = await run('npx', ['--no-install', 'taskforge', 'list'], { env: npxEnv });
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).toContain('task/vision/igpt');
    } finally {
      chmodSync(DIST_BIN, before);
    }
  });

  it('says how to build when the CLI is not built yet, without a stack trace', async () => {
    const copy = join(work, 'cli', 'bin');
    mkdirSync(copy, { recursive: true });
    copyFileSync(SHIM, join(copy, 'taskforge.js'));
    const r = await run(process.execPath, [join(copy, 'taskforge.js'), '--version']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`taskforge is not built yet (${join(work, 'cli', 'dist', 'bin.js')} does not exist)`);
    expect(r.stderr).toContain('npx nx run-many -t build');
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
