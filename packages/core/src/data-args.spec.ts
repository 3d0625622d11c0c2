import { describe, expect, it } from 'vitest';
import type { SequenceDataArgs } from './contracts.js';
import { readSequenceDataArgs } from './data-args.js';
import { ConfigError } from './errors.js';

describe('readSequenceDataArgs', () => {
  it('returns the required keys typed, and num_classes when the data module gives one', () => {
    const args = { num_positions: 64, num_vocab: 16, num_classes: 10, palette: [[0, 0, 0]] };
    const read: SequenceDataArgs = readSequenceDataArgs(args, { who: 'b', required: ['num_positions', 'num_vocab'] });
    expect(read).toEqual({ num_positions: 64, num_vocab: 16, num_classes: 10 });
    expect(readSequenceDataArgs({ num_positions: 4, num_vocab: 2 }, { who: 'b', required: ['num_vocab'] })).toEqual({
      num_vocab: 2,
    });
  });

  it('names every missing or non-positive key, who needs it and an example data module (exit 2)', () => {
    let error: unknown;
    try {
      readSequenceDataArgs(
        { num_positions: 0, num_vocab: 2.5 },
        { who: 'backbone/x', required: ['num_positions', 'num_vocab', 'num_classes'], example: 'datamodule/y' },
      );
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).exitCode).toBe(2);
    const problems = (error as ConfigError).problems;
    expect(problems.map((p) => [p.path, p.value])).toEqual([
      ['modelDataArgs.num_positions', 0],
      ['modelDataArgs.num_vocab', 2.5],
      ['modelDataArgs.num_classes', null],
    ]);
    expect(problems[0]!.message).toBe(
      'backbone/x needs a positive integer num_positions from the data module; use a data module that provides ' +
        'num_positions, num_vocab, num_classes in its modelDataArgs (e.g. datamodule/y)',
    );
    expect((error as Error).message).toContain('backbone/x cannot be built from this data module');
  });
});
