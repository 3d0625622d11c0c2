import { describe, expect, it } from 'vitest';
import { ConfigError } from './errors.js';

describe('ConfigError', () => {
  it('lists every problem with path, value and suggestions, and exits with 2', () => {
    const error = new ConfigError([
      { path: 'trainer.max_stpes', message: 'unknown key', suggestions: ['max_steps'] },
      { path: 'trainer.seed', message: 'expected an integer', value: 'abc' },
    ]);
    expect(error.exitCode).toBe(2);
    expect(error.message).toContain("trainer.max_stpes: unknown key; did you mean 'max_steps'?");
    expect(error.message).toContain('trainer.seed: expected an integer (got "abc")');
    expect(error.message).toMatch(/^Invalid configuration \(2 problems\)/);
  });

  it('prints non-finite numbers as the override grammar spells them, not as JSON null', () => {
    const error = new ConfigError([
      { path: 'optimizer.lr', message: 'expected a non-negative number', value: Infinity },
      { path: 'x.bounds', message: 'expected finite numbers', value: [-Infinity, Number.NaN, 1] },
    ]);
    expect(error.message).toContain('optimizer.lr: expected a non-negative number (got inf)');
    expect(error.message).toContain('x.bounds: expected finite numbers (got ["-inf","nan",1])');
  });
});
