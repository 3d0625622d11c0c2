import { describe, expect, it } from 'vitest';
import { ConfigError, TaskforgeError } from '../errors.js';
import { csvLogger, sgd, toyBackbone, toyTask } from '../../tests/fixtures/components.js';
import { ComponentRegistry, LOCAL_PACKAGE, parseTarget } from './registry.js';
import type { TaskforgePlugin } from './types.js';

function registryWithToys(): ComponentRegistry {
  const registry = new ComponentRegistry();
  registry.forPackage('@toys/models').register(toyBackbone);
  registry.forPackage('@toys/models').register(toyTask);
  registry.forPackage('@toys/optim').register(sgd);
  registry.register(csvLogger);
  return registry;
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a throw');
}

describe('ComponentRegistry', () => {
  it('resolves registered targets to their specs and lists entries sorted, filtered by kind', () => {
    const registry = registryWithToys();
    expect(registry.resolve('backbone/toy')).toBe(toyBackbone);
    expect(registry.resolve('task/vision/toy')).toBe(toyTask);
    expect(registry.list().map((e) => e.target)).toEqual([
      'backbone/toy',
      'logger/csv',
      'optimizer/sgd',
      'task/vision/toy',
    ]);
    expect(registry.list('task')).toEqual([
      {
        target: 'task/vision/toy',
        kind: 'task',
        name: 'vision/toy',
        description: toyTask.description,
        packageName: '@toys/models',
      },
    ]);
    expect(registry.entry('logger/csv')?.packageName).toBe(LOCAL_PACKAGE);
  });

  it('refuses a duplicate target, naming both packages', () => {
    const registry = registryWithToys();
    const error = thrown(() => registry.forPackage('@other/models').register({ ...toyBackbone }));
    expect(error).toBeInstanceOf(TaskforgeError);
    expect(error.message).toContain("'backbone/toy'");
    expect(error.message).toContain("'@toys/models'");
    expect(error.message).toContain("'@other/models'");
  });

  it('reports an unknown target as a ConfigError suggesting same-kind names', () => {
    const registry = registryWithToys();
    const error = thrown(() => registry.resolve('backbone/tyo', 'model._target_')) as ConfigError;
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.exitCode).toBe(2);
    expect(error.problems).toHaveLength(1);
    expect(error.problems[0]).toMatchObject({
      path: 'model._target_',
      value: 'backbone/tyo',
      suggestions: ['backbone/toy'],
    });
    expect(error.message).toContain('registered backbone components: backbone/toy');
  });

  it('rejects invalid kinds and names at registration', () => {
    const registry = new ComponentRegistry();
    expect(() => registry.register({ ...toyBackbone, name: 'GPT2' })).toThrow(/lower-case/);
    expect(() => registry.register({ ...toyBackbone, name: '../evil' })).toThrow(TaskforgeError);
    expect(() => registry.register({ ...toyBackbone, name: 'a//b' })).toThrow(TaskforgeError);
    expect(() => registry.register({ ...toyBackbone, kind: 'model' as 'backbone' })).toThrow(/kind must be one of/);
    expect(() => registry.register({ ...toyBackbone, create: undefined as never })).toThrow(/create/);
    expect(registry.list()).toEqual([]);
  });

  it('parses targets into kind and name', () => {
    expect(parseTarget('task/vision/igpt')).toEqual({ kind: 'task', name: 'vision/igpt' });
    expect(parseTarget('fs/promises')).toBeUndefined();
    expect(parseTarget('../../evil.js')).toBeUndefined();
    expect(parseTarget('backbone/')).toBeUndefined();
  });

  it('runs a plugin once, and refuses the same package loaded as a second module instance', () => {
    const registry = new ComponentRegistry();
    const plugin: TaskforgePlugin = { packageName: '@toys/models', register: (r) => r.register(toyBackbone) };
    registry.registerPlugin(plugin);
    registry.registerPlugin(plugin);
    expect(registry.entry('backbone/toy')?.packageName).toBe('@toys/models');
    const copy: TaskforgePlugin = { ...plugin };
    expect(() => registry.registerPlugin(copy)).toThrow(/loaded twice as two different module instances/);
  });

  it('names the plugin whose register function fails', () => {
    const registry = new ComponentRegistry();
    const plugin: TaskforgePlugin = {
      packageName: '@toys/broken',
      register: () => {
        throw new Error('boom');
      },
    };
    expect(() => registry.registerPlugin(plugin)).toThrow(
      /'@toys\/broken' failed while registering its components: boom/,
    );
  });
});
