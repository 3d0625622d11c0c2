import { describe, expect, it } from 'vitest';
import type { DataModule, Stage } from '../contracts.js';
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
});
