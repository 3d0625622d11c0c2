/**
 * A signal during the CIFAR-10 extraction removes its temp dir (`.extract-<pid>-XXXXXX`) and still
 * ends the process by that signal. Runs the built data-cifar in a child process, which is killed.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO } from './fixtures/cli.js';

const FSUTIL = pathToFileURL(join(REPO, 'packages/data-cifar/dist/fsutil.js')).href;

describe('extraction temp dirs', () => {
  const work = mkdtempSync(join(tmpdir(), 'taskforge-temp-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    it(`are removed when ${signal} arrives mid-extraction, and the process still dies of ${signal}`, async () => {
      const dataDir = mkdtempSync(join(work, 'data-'));
      // Stands in for tar writing into the temp dir: it writes a file, says so, then keeps working.
      const script = join(work, `extract-${signal}.mjs`);
      writeFileSync(
        script,
        `
        import { writeFileSync } from 'node:fs';
        import { join } from 'node:path';
        const { withTempDir } = await import(${JSON.stringify(FSUTIL)});
        await withTempDir(process.argv[2], '.extract-', async (dir) => {
          writeFileSync(join(dir, 'data_batch_1.bin'), new Uint8Array(1 << 20));
          process.stdout.write('extracting\\n');
          await new Promise((resolve) => setTimeout(resolve, 60_000));
        });
      `,
      );
      const child = spawn(process.execPath, [script, dataDir], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((ok) =>
        child.on('close', (code, sig) => ok({ code, signal: sig })),
      );
      await new Promise<void>((ok, fail) => {
        child.stdout.on('data', (d) => {
          if (String(d).includes('extracting')) ok();
        });
        child.on('close', () => fail(new Error(`child ended early: ${stderr}`)));
      });
      expect(readdirSync(dataDir).filter((n) => n.startsWith('.extract-'))).toHaveLength(1);
      child.kill(signal);
      const result = await exited;
      expect(result.signal, stderr).toBe(signal);
      expect(readdirSync(dataDir)).toEqual([]);
    });
  }
});
