import { describe, expect, it } from 'vitest';
import { editDistance, suggest } from './suggest.js';

describe('suggest', () => {
  it('counts a transposition as one edit', () => {
    expect(editDistance('max_stpes', 'max_steps')).toBe(1);
    expect(editDistance('kitten', 'sitting')).toBe(3);
  });

  it('returns close candidates best first, at most three, ignoring case and far ones', () => {
    expect(suggest('adm', ['sgd', 'adam', 'adamw'])).toEqual(['adam']);
    expect(suggest('Cifar01', ['cifar10', 'cifar100', 'mnist'])).toEqual(['cifar10', 'cifar100']);
    expect(suggest('lr', ['lr_scheduler', 'momentum'])).toEqual([]);
    expect(suggest('ab', ['aa', 'ac', 'ad', 'ae'])).toHaveLength(3);
  });

  it('matches the last segment of nested names', () => {
    expect(suggest('igpt', ['vision/igpt', 'text/gpt2'])).toEqual(['vision/igpt']);
  });
});
