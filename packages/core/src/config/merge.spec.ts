import { describe, expect, it } from 'vitest';
import { clearSources, mergeAtPackage, recordSources, type Sources } from './merge.js';
import type { ConfigNode } from './paths.js';

const sorted = (sources: Sources) => Object.fromEntries([...sources].sort(([a], [b]) => a.localeCompare(b)));

describe('mergeAtPackage', () => {
  it('merges mappings key by key, replaces lists and scalars, and records the source of every leaf written', () => {
    const root: ConfigNode = { a: { x: 1, y: 2 }, l: [1, 2], s: 'keep' };
    const sources: Sources = new Map([
      ['a.x', 'f1'],
      ['a.y', 'f1'],
      ['l', 'f1'],
      ['s', 'f1'],
    ]);
    mergeAtPackage(root, '', { a: { y: 3, z: {} }, l: [3] }, 'f2', sources);
    expect(root).toEqual({ a: { x: 1, y: 3, z: {} }, l: [3], s: 'keep' });
    expect(sorted(sources)).toEqual({ 'a.x': 'f1', 'a.y': 'f2', 'a.z': 'f2', l: 'f2', s: 'f1' });
  });

  it("a scalar replacing a mapping forgets the mapping's leaves; a mapping replacing a scalar forgets it", () => {
    const root: ConfigNode = { a: { x: 1, y: { deep: true } }, b: 5 };
    const sources: Sources = new Map([
      ['a.x', 'f1'],
      ['a.y.deep', 'f1'],
      ['b', 'f1'],
      ['ab', 'f1'],
    ]);
    mergeAtPackage(root, '', { a: 7, b: { c: 1 } }, 'f2', sources);
    expect(root).toEqual({ a: 7, b: { c: 1 } });
    expect(sorted(sources)).toEqual({ a: 'f2', ab: 'f1', 'b.c': 'f2' });
  });

  it('an empty mapping is a leaf of its own until something is merged into it', () => {
    const root: ConfigNode = { a: {} };
    const sources: Sources = new Map([['a', 'f1']]);
    mergeAtPackage(root, '', { a: {} }, 'f2', sources);
    expect(sorted(sources)).toEqual({ a: 'f1' }); // merging nothing into it changes nothing
    mergeAtPackage(root, '', { a: { b: 1 } }, 'f3', sources);
    expect(root).toEqual({ a: { b: 1 } });
    expect(sorted(sources)).toEqual({ 'a.b': 'f3' });
  });

  it('at a nested package, creates the parents and replaces a scalar in the way', () => {
    const root: ConfigNode = { x: 3, keep: 1 };
    const sources: Sources = new Map([
      ['x', 'f1'],
      ['keep', 'f1'],
    ]);
    mergeAtPackage(root, 'x.y', { k: 1, m: { n: 2 } }, 'f2', sources);
    expect(root).toEqual({ x: { y: { k: 1, m: { n: 2 } } }, keep: 1 });
    expect(sorted(sources)).toEqual({ keep: 'f1', 'x.y.k': 'f2', 'x.y.m.n': 'f2' });
    mergeAtPackage(root, 'x.y', { k: 5 }, 'f3', sources);
    expect(root).toEqual({ x: { y: { k: 5, m: { n: 2 } } }, keep: 1 });
    expect(sorted(sources)).toEqual({ keep: 'f1', 'x.y.k': 'f3', 'x.y.m.n': 'f2' });
  });

  it('keeps an existing parent mapping when merging below it', () => {
    const root: ConfigNode = { x: { other: 1 } };
    const sources: Sources = new Map([['x.other', 'f1']]);
    mergeAtPackage(root, 'x.y', { k: 1 }, 'f2', sources);
    expect(root).toEqual({ x: { other: 1, y: { k: 1 } } });
    expect(sorted(sources)).toEqual({ 'x.other': 'f1', 'x.y.k': 'f2' });
  });

  it('copies what it merges: later changes to the body do not leak into the config', () => {
    const body = { list: [1, { a: 1 }], map: { b: [2] } };
    const root: ConfigNode = {};
    mergeAtPackage(root, '', body, 'f', new Map());
    (body.list[1] as { a: number }).a = 99;
    body.map.b.push(3);
    expect(root).toEqual({ list: [1, { a: 1 }], map: { b: [2] } });
  });

  it('does not mistake inherited properties for existing keys', () => {
    const root: ConfigNode = {};
    const sources: Sources = new Map();
    mergeAtPackage(root, '', { toString: { a: 1 } }, 'f', sources);
    expect(Object.hasOwn(root, 'toString')).toBe(true);
    expect(root['toString']).toEqual({ a: 1 });
    expect(sorted(sources)).toEqual({ 'toString.a': 'f' });
  });
});

describe('clearSources / recordSources', () => {
  it('clears a path and everything below it, not siblings sharing a prefix; the empty path clears all', () => {
    const sources: Sources = new Map([
      ['a', 's'],
      ['a.b', 's'],
      ['a.b.c', 's'],
      ['ab', 's'],
      ['b', 's'],
    ]);
    clearSources(sources, 'a');
    expect(sorted(sources)).toEqual({ ab: 's', b: 's' });
    clearSources(sources, '');
    expect(sources.size).toBe(0);
  });

  it('records leaves (scalars, lists, empty mappings) and not the mappings above them', () => {
    const sources: Sources = new Map();
    recordSources(sources, 'p', { a: 1, l: [1, 2], e: {}, m: { n: null } }, 'src');
    expect(sorted(sources)).toEqual({ 'p.a': 'src', 'p.e': 'src', 'p.l': 'src', 'p.m.n': 'src' });
    recordSources(sources, '', 5, 'root');
    expect(sources.has('')).toBe(false);
  });
});
