import { describe, expect, it } from 'vitest';
import { prefetch } from './prefetch.js';

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('prefetch', () => {
  it.each([0, 1, 3])('yields every item in order with depth %i', async (depth) => {
    expect(await collect(prefetch(2, 9, depth, (i) => i * 10))).toEqual([20, 30, 40, 50, 60, 70, 80]);
  });

  it('builds up to depth items ahead of the consumer, no more', async () => {
    const built: number[] = [];
    // Resolved from an immediate queued by the build of item 2: it runs after every build the
    // generator had already queued, so an item built too far ahead would be in `built` by then.
    let settled!: () => void;
    const afterItem2 = new Promise<void>((r) => (settled = r));
    const gen = prefetch(0, 10, 2, (i) => {
      built.push(i);
      if (i === 2) setImmediate(settled);
      return i;
    });
    expect(await gen.next()).toEqual({ value: 0, done: false });
    await afterItem2;
    expect(built).toEqual([0, 1, 2]);
    expect(await gen.return(undefined)).toEqual({ value: undefined, done: true });
    expect(built).toEqual([0, 1, 2]);
  });

  it('surfaces an error at the failing item', async () => {
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const x of prefetch(0, 5, 2, (i) => {
          if (i === 3) throw new Error('boom 3');
          return i;
        }))
          seen.push(x);
      })(),
    ).rejects.toThrow('boom 3');
    expect(seen).toEqual([0, 1, 2]);
  });
});
