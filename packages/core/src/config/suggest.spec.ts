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

  it('sizes the typo budget by the segments that differ, not the shared prefix (s7)', () => {
    expect(suggest('optimizer.lrr', ['optimizer.eps', 'optimizer.betas'])).toEqual([]);
    expect(suggest('optimizer.lrr', ['optimizer.lr', 'optimizer.eps'])).toEqual(['optimizer.lr']);
    expect(suggest('trainer.max_stpes', ['trainer.max_steps', 'trainer.max_epochs'])).toEqual(['trainer.max_steps']);
    expect(suggest('optimzer.lr', ['optimizer.lr'])).toEqual(['optimizer.lr']);
  });
});
