import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { DataModule, Stage } from '../contracts.js';
import { TaskforgeError } from '../errors.js';
import { prepareAndSetup, teardownData } from './data-setup.js';

describe('prepareAndSetup', () => {
  it('prepares and sets up each stage once per data module', async () => {
    const calls: string[] = [];
    const dm = {
      prepareData: async () => void calls.push('prepare'),
      setup: async (stage: Stage) => void calls.push(`setup:${stage}`),
    } as unknown as DataModule;
    await prepareAndSetup(dm, 'fit');
    await prepareAndSetup(dm, 'fit');
    await prepareAndSetup(dm, 'test');
    expect(calls).toEqual(['prepare', 'setup:fit', 'prepare', 'setup:test']);
  });

  it('sets up again after teardownData (a second fit on the same data module)', async () => {
    const calls: string[] = [];
    const dm = {
      prepareData: async () => undefined,
      setup: async (stage: Stage) => void calls.push(`setup:${stage}`),
      teardown: async () => void calls.push('teardown'),
    } as unknown as DataModule;
    await prepareAndSetup(dm, 'fit');
    await teardownData(dm);
    await prepareAndSetup(dm, 'fit');
    expect(calls).toEqual(['setup:fit', 'teardown', 'setup:fit']);
  });

  it('teardownData works on a data module without teardown(), and still forgets the stages set up', async () => {
    const calls: string[] = [];
    const dm = {
      prepareData: async () => undefined,
      setup: async (stage: Stage) => void calls.push(`setup:${stage}`),
    } as unknown as DataModule;
    await prepareAndSetup(dm, 'test');
    await expect(teardownData(dm)).resolves.toBeUndefined();
    await prepareAndSetup(dm, 'test');
    expect(calls).toEqual(['setup:test', 'setup:test']);
  });

  it('tries again after a failed setup, and counts the stage as set up only once setup succeeded', async () => {
    let fail = true;
    const calls: string[] = [];
    const dm = {
      prepareData: async () => void calls.push('prepare'),
      setup: async (stage: Stage) => {
        calls.push(`setup:${stage}`);
        if (fail) throw new Error('no data yet');
      },
    } as unknown as DataModule;
    await expect(prepareAndSetup(dm, 'fit')).rejects.toThrow('no data yet');
    fail = false;
    await expect(prepareAndSetup(dm, 'fit')).resolves.toBeUndefined();
    await prepareAndSetup(dm, 'fit'); // now set up: not repeated
    expect(calls).toEqual(['prepare', 'setup:fit', 'prepare', 'setup:fit']);
  });

  it('tries again after a failed prepareData, without calling setup for the failed attempt', async () => {
    let fail = true;
    const calls: string[] = [];
    const dm = {
      prepareData: async () => {
        calls.push('prepare');
        if (fail) throw new Error('download failed');
      },
      setup: async (stage: Stage) => void calls.push(`setup:${stage}`),
    } as unknown as DataModule;
    await expect(prepareAndSetup(dm, 'test')).rejects.toThrow('download failed');
    fail = false;
    await prepareAndSetup(dm, 'test');
    expect(calls).toEqual(['prepare', 'prepare', 'setup:test']);
  });

  it('reports a file-system error from setup/prepareData as a data module failure naming the path and the key', async () => {
    const dataConfig = { _target_: 'datamodule/csv', data_dir: '.data/nowhere', batch_size: 4 };
    const dm = {
      prepareData: async () => undefined,
      setup: async () => void (await readFile(join('.data/nowhere', 'train.csv'))),
    } as unknown as DataModule;
    const error = await prepareAndSetup(dm, 'fit', dataConfig).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskforgeError);
    expect((error as TaskforgeError).exitCode).toBe(2);
    expect((error as Error).message).toBe(
      `The data module (datamodule/csv) failed in setup('fit'): ${resolve('.data/nowhere/train.csv')} does not exist ` +
        `(${((error as Error).cause as Error).message}); check dataset.data_dir=.data/nowhere, which points there.`,
    );

    // Not a wrong path (permission denied …): a runtime failure, exit 1; without a key naming it, a general hint.
    const denied = Object.assign(new Error("EACCES: permission denied, open '/srv/d.bin'"), {
      code: 'EACCES',
      path: '/srv/d.bin',
    });
    const dm2 = {
      prepareData: async () => Promise.reject(denied),
      setup: async () => undefined,
    } as unknown as DataModule;
    const error2 = (await prepareAndSetup(dm2, 'test', dataConfig).catch((e: unknown) => e)) as TaskforgeError;
    expect(error2.exitCode).toBe(1);
    expect(error2.message).toContain(
      'failed in prepareData(): /srv/d.bin cannot be read or written (permission denied)',
    );
    expect(error2.message).toContain('check the dataset.* keys that name data files');

    // The module's own TaskforgeError already says what to do: it passes through as it is.
    const own = new TaskforgeError('data/x.csv, line 3: label "cat" is not a class', { exitCode: 2 });
    const dm3 = { prepareData: async () => undefined, setup: async () => Promise.reject(own) } as unknown as DataModule;
    await expect(prepareAndSetup(dm3, 'fit', dataConfig)).rejects.toBe(own);
  });

  it("reports any other error of the module's code (a JSON.parse of a bad line) as the data module's, with where it threw", async () => {
    const dataConfig = { _target_: 'datamodule/wave_jsonl', data_dir: 'data' };
    const dm = {
      prepareData: async () => undefined,
      setup: async () => void JSON.parse('{"signal":[NaN,0.5]}'),
    } as unknown as DataModule;
    const error = (await prepareAndSetup(dm, 'fit', dataConfig).catch((e: unknown) => e)) as TaskforgeError;
    expect(error).toBeInstanceOf(TaskforgeError);
    expect(error.exitCode).toBe(1);
    expect(error.cause).toBeInstanceOf(SyntaxError);
    expect(error.message).toMatch(
      /^The data module \(datamodule\/wave_jsonl\) failed in setup\('fit'\): SyntaxError: Unexpected token .*NaN.* \(thrown at src\/trainer\/data-setup\.spec\.ts:\d+:\d+\)\. This comes from the data module's code or the data it reads, not from taskforge/,
    );
    expect(error.message).toContain('docs/new-task.md');

    // Built JavaScript with a source map beside it (as every package's build writes): the line is
    // the TypeScript one a user edits. The map sends line 1 of dist/loader.js to line 41 of src/loader.ts.
    const built = mkdtempSync(join(tmpdir(), 'taskforge-built-'));
    try {
      mkdirSync(join(built, 'dist'));
      writeFileSync(
        join(built, 'dist', 'loader.js'),
        "export function load() { JSON.parse('{bad'); }\n//# sourceMappingURL=loader.js.map\n",
      );
      writeFileSync(
        join(built, 'dist', 'loader.js.map'),
        JSON.stringify({ version: 3, file: 'loader.js', sources: ['../src/loader.ts'], names: [], mappings: 'AAwCA' }),
      );
      const { load } = (await import(pathToFileURL(join(built, 'dist', 'loader.js')).href)) as { load: () => void };
      const dmBuilt = { prepareData: async () => undefined, setup: async () => load() } as unknown as DataModule;
      const mapped = (await prepareAndSetup(dmBuilt, 'fit', dataConfig).catch((e: unknown) => e)) as Error;
      expect(mapped.message).toContain(`(thrown at ${join(built, 'src', 'loader.ts')}:41:1)`);
    } finally {
      rmSync(built, { recursive: true, force: true });
    }

    // prepareData too; a non-Error is left alone (nothing to name).
    const dm2 = { prepareData: async () => Promise.reject(new RangeError('bad size')), setup: async () => undefined };
    const error2 = (await prepareAndSetup(dm2 as unknown as DataModule, 'test').catch((e: unknown) => e)) as Error;
    expect(error2.message).toMatch(/^The data module failed in prepareData\(\): RangeError: bad size/);
    const dm3 = { prepareData: async () => Promise.reject('plain string'), setup: async () => undefined };
    await expect(prepareAndSetup(dm3 as unknown as DataModule, 'fit')).rejects.toBe('plain string');
  });
});
