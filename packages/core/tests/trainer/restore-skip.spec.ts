import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCheckpoint, restoreTaskWeights, writeCheckpoint } from '../../src/trainer/checkpoint.js';
import { ToyTask } from '../toy/toy.js';
import { useScratch } from './helpers.js';

describe('restoreTaskWeights with skip patterns', () => {
  const scratch = useScratch();

  it('keeps matching variables that the checkpoint lacks or sizes differently, and loads the rest', async () => {
    const source = new ToyTask({ inputDim: 3, hidden: 4, initSeed: 1 });
    const dir = await writeCheckpoint(join(scratch.dir(), 'src'), { task: source, modelDataArgs: {} });
    // Another input width: hidden/kernel differs in shape; the output layer matches.
    const target = new ToyTask({ inputDim: 5, hidden: 4, initSeed: 2 });
    const own = target.snapshot();
    const checkpoint = await loadCheckpoint(dir);
    try {
      expect(() => restoreTaskWeights(target, checkpoint)).toThrow(/mis-shaped: 'hidden\/kernel'/);
      expect(target.snapshot()).toEqual(own); // nothing assigned by a failed restore
      const report = restoreTaskWeights(target, checkpoint, { skip: ['hidden/kernel'] });
      expect(report).toEqual({ missing: [], unexpected: [], skipped: ['hidden/kernel'] });
    } finally {
      checkpoint.dispose();
    }
    const after = target.snapshot();
    expect(after['hidden/kernel']).toEqual(own['hidden/kernel']);
    expect(after['out/kernel']).toEqual(source.snapshot()['out/kernel']);
    expect(after['hidden/bias']).toEqual(source.snapshot()['hidden/bias']);
    [source, target].forEach((t) => t.dispose());
  });
});
