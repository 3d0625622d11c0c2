/**
 * The evaluating commands need `ckpt=`: without it they stop with exit 2 and the fix before any
 * data step (no download, no cache, no run dir); `ckpt=none` asks for untrained weights on purpose.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from './main.js';

const WORKSPACE_CONF = join(import.meta.dirname, '../../../conf');
const work = mkdtempSync(join(tmpdir(), 'taskforge-eval-args-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function run(args: string[]): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const code = await main([...args, '--config-dir', WORKSPACE_CONF], {
    stdout: () => {},
    stderr: (t: string) => void (stderr += t),
  });
  return { code, stderr };
}

describe('validate/test/predict/sample without ckpt=', () => {
  for (const command of ['test', 'validate', 'predict', 'sample']) {
    for (const ckpt of [[], ['ckpt=']]) {
      it(`${command} ${ckpt.join(' ')}: exit 2 with the fix, before any data step or run dir`, async () => {
        const dir = join(work, `${command}${ckpt.length}`);
        const r = await run([
          command,
          ...ckpt,
          `trainer.run_dir=${join(dir, 'run')}`,
          `dataset.data_dir=${join(dir, 'data')}`,
          `dataset.url=${join(dir, 'missing.tar.gz')}`,
        ]);
        expect(r.code).toBe(2);
        expect(r.stderr).toContain(`\`taskforge ${command}\` needs the weights to use`);
        expect(r.stderr).toContain('ckpt=<dir>');
        expect(r.stderr).toContain('ckpt=none');
        expect(r.stderr).not.toMatch(/\n\s+at /);
        expect(existsSync(dir)).toBe(false);
      });
    }
  }

  it('ckpt=none goes on to the data step with untrained weights (here: a data source that does not exist)', async () => {
    const dir = join(work, 'none');
    const r = await run([
      'test',
      'ckpt=none',
      `trainer.run_dir=${join(dir, 'run')}`,
      `dataset.data_dir=${join(dir, 'data')}`,
      `dataset.url=${join(dir, 'missing.tar.gz')}`,
      'trainer.accelerator=cpu',
    ]);
    expect(r.stderr).not.toContain('needs the weights to use');
    expect(r.stderr).toContain('missing.tar.gz');
    expect(r.code).not.toBe(0);
  });
});
