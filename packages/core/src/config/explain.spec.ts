import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { formatProblems } from '../errors.js';
import { issuesToProblems } from '../registry/zod-issues.js';
import { explainProblems } from './explain.js';

/** A backbone-like schema with a cross-key rule, as @taskforge/backbone-gpt2 declares it. */
const schema = z
  .strictObject({ embed_dim: z.int().default(16), num_heads: z.int().default(2) })
  .superRefine((c, ctx) => {
    if (c.embed_dim % c.num_heads !== 0)
      ctx.addIssue({
        code: 'custom',
        path: ['embed_dim'],
        params: { relatedKeys: ['num_heads'] },
        message: `embed_dim (${c.embed_dim}) must be divisible by num_heads (${c.num_heads})`,
      });
  });

function problemsFor(input: { embed_dim: number; num_heads: number }) {
  const result = schema.safeParse(input);
  expect(result.success).toBe(false);
  return issuesToProblems(result.error!.issues, schema, input, 'backbone', 'backbone/gpt2');
}

describe('explainProblems: a cross-key rule (relatedPaths)', () => {
  it('blames the override of the other key, not the file that set this one, and offers the value it replaced', () => {
    const problems = problemsFor({ embed_dim: 16, num_heads: 3 });
    expect(problems[0]!.relatedPaths).toEqual(['backbone.num_heads']);
    const [explained] = explainProblems(problems, {
      sources: new Map([
        ['backbone.embed_dim', '/conf/backbone/gpt2.yaml'],
        ['backbone.num_heads', 'command line'],
      ]),
      overrides: new Map([
        [
          'backbone.num_heads',
          { text: 'backbone.num_heads=3', previous: 2, previousSource: '/conf/backbone/gpt2.yaml:4' },
        ],
      ]),
    });
    expect(explained).toMatchObject({ source: 'command line', override: 'backbone.num_heads=3' });
    expect(formatProblems('Invalid configuration', [explained!])).toContain(
      "[from command line] backbone.num_heads=3; fix: write 'backbone.num_heads=2' (the configured value, from /conf/backbone/gpt2.yaml:4) or drop the override",
    );
  });

  it('keeps the file as the source when the other key was not typed either', () => {
    const [explained] = explainProblems(problemsFor({ embed_dim: 16, num_heads: 3 }), {
      sources: new Map([
        ['backbone.embed_dim', '/nonexistent/gpt2.yaml'],
        ['backbone.num_heads', '/nonexistent/gpt2.yaml'],
      ]),
      overrides: new Map(),
    });
    expect(explained!.source).toBe('/nonexistent/gpt2.yaml');
    expect(explained!.override).toBeUndefined();
  });
});

describe('issuesToProblems: a non-finite number', () => {
  it('says the value must be finite, since inf passes a bound such as "non-negative"', () => {
    const lr = z.strictObject({ lr: z.number().nonnegative() });
    for (const value of [Infinity, Number.NaN]) {
      const result = lr.safeParse({ lr: value });
      const [problem] = issuesToProblems(result.error!.issues, lr, { lr: value }, 'optimizer');
      expect(problem!.message).toBe('expected a finite non-negative number (inf and nan are not accepted)');
    }
  });
});

describe('issuesToProblems: integers declared with z.int() (s7)', () => {
  it('says "integer", as for z.number().int()', () => {
    for (const schema of [z.strictObject({ n: z.int().min(2) }), z.strictObject({ n: z.number().int().min(2) })]) {
      const result = schema.safeParse({ n: 2.5 });
      expect(issuesToProblems(result.error!.issues, schema, { n: 2.5 }, 'dataset')[0]!.message).toBe(
        'expected an integer >= 2',
      );
    }
    const positive = z.strictObject({ n: z.int().positive() });
    const result = positive.safeParse({ n: 2.5 });
    expect(issuesToProblems(result.error!.issues, positive, { n: 2.5 }, 'dataset')[0]!.message).toBe(
      'expected a positive integer',
    );
  });
});

describe('explainProblems: a list typed whole (s10)', () => {
  const betas = z.strictObject({ betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]) });
  const explained = (value: unknown[]) => {
    const result = betas.safeParse({ betas: value });
    expect(result.success).toBe(false);
    return explainProblems(
      issuesToProblems(result.error!.issues, betas, { betas: value }, 'optimizer', 'optimizer/adam'),
      {
        sources: new Map([['optimizer.betas', 'command line']]),
        overrides: new Map([
          [
            'optimizer.betas',
            { text: `optimizer.betas=[${value.join(',')}]`, previous: [0.9, 0.999], previousSource: 'adam.yaml:3' },
          ],
        ]),
      },
    );
  };

  it('names the override and the list it replaced for a bad element, and the exact length of a tuple', () => {
    expect(formatProblems('Invalid configuration', explained([1.5, 0.9]))).toContain(
      'optimizer.betas[0]: expected a number >= 0 and < 1 for optimizer/adam (got 1.5) [from command line] ' +
        "optimizer.betas=[1.5,0.9]; fix: write 'optimizer.betas=[0.9,0.999]' (the configured value, from adam.yaml:3) or drop the override",
    );
    expect(formatProblems('Invalid configuration', explained([0.8]))).toContain(
      'optimizer.betas: expected a list of 2 items for optimizer/adam (got [0.8]) [from command line]',
    );
  });
});
