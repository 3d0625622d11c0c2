import { container } from 'tsyringe';
import { describe, expect, it } from 'vitest';
import { ConfigError, TaskforgeError } from '../errors.js';
import { csvLogger, toyBackbone, type ToyBackbone } from '../../tests/fixtures/components.js';
import { Instantiator } from './instantiator.js';
import { ComponentRegistry } from './registry.js';
import { validateConfig } from './validate.js';
import { z } from 'zod';

const registry = new ComponentRegistry();
registry.forPackage('@toys/models').register(toyBackbone);
registry.forPackage('@toys/loggers').register(csvLogger);
const instantiator = new Instantiator(registry);
const ctx = { container, modelDataArgs: { vocab_size: 16 } };

function configErrorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('Instantiator', () => {
  it('creates the component with its validated config (defaults applied) and context', () => {
    const backbone = instantiator.create('backbone', { _target_: 'backbone/toy', n_layer: 3 }, ctx) as ToyBackbone;
    expect(backbone.config).toEqual({ n_layer: 3, activation: 'gelu' });
    expect(backbone.seenDataArgs).toEqual({ vocab_size: 16 });
  });

  it('refuses a component of another kind, naming the config path', () => {
    const error = configErrorOf(() =>
      instantiator.create('backbone', { _target_: 'logger/csv' }, ctx, 'model.backbone'),
    );
    expect(error.problems).toEqual([expect.objectContaining({ path: 'model.backbone._target_', value: 'logger/csv' })]);
    expect(error.message).toContain("'logger/csv' is a logger, but a backbone is expected here");
    expect(error.message).toContain('registered: backbone/toy');
  });

  it('refuses a node without _target_ and an invalid node', () => {
    expect(configErrorOf(() => instantiator.create('backbone', { n_layer: 3 }, ctx)).message).toContain(
      "backbone: expected a backbone component node with '_target_: backbone/<name>' (registered: backbone/toy)",
    );
    const error = configErrorOf(() => instantiator.create('backbone', { _target_: 'backbone/toy', n_layer: 0 }, ctx));
    expect(error.problems[0]).toMatchObject({ path: 'backbone.n_layer', value: 0 });
  });

  it('wraps a failing create with the target, path and owning package', () => {
    const failing = new ComponentRegistry();
    failing.forPackage('@toys/broken').register({
      ...toyBackbone,
      create: () => {
        throw new Error('out of memory');
      },
    });
    const run = () => new Instantiator(failing).create('backbone', { _target_: 'backbone/toy' }, ctx);
    expect(run).toThrow(TaskforgeError);
    expect(run).toThrow("Creating backbone/toy (config 'backbone', from '@toys/broken') failed: out of memory");
  });

  describe('validates a config once on its way to a component', () => {
    function countingRegistry() {
      const counted = new ComponentRegistry();
      let parses = 0;
      counted.register({
        ...toyBackbone,
        schema: z.preprocess(
          (raw) => {
            parses += 1;
            return raw;
          },
          z.strictObject({ n_layer: z.number().int().positive().default(2) }),
        ),
      });
      return { counted, parses: () => parses };
    }

    it('builds a node the whole-config validation returned without parsing it again', () => {
      const { counted, parses } = countingRegistry();
      const config = validateConfig<{ backbone: unknown }>({ backbone: { _target_: 'backbone/toy' } }, counted);
      expect(parses()).toBe(1);
      const backbone = new Instantiator(counted).create('backbone', config.backbone, ctx) as ToyBackbone;
      expect(parses()).toBe(1);
      expect(backbone.config).toEqual({ n_layer: 2 });
    });

    it('validates a node built by hand, or edited after validation, when it is built', () => {
      const { counted, parses } = countingRegistry();
      const built = new Instantiator(counted).create('backbone', { _target_: 'backbone/toy', n_layer: 3 }, ctx);
      expect(parses()).toBe(1);
      expect((built as ToyBackbone).config).toEqual({ n_layer: 3 });
      const config = validateConfig<{ backbone: object }>({ backbone: { _target_: 'backbone/toy' } }, counted);
      const edited = { ...config.backbone, n_layer: 0 };
      const error = configErrorOf(() => new Instantiator(counted).create('backbone', edited, ctx));
      expect(error.problems[0]).toMatchObject({ path: 'backbone.n_layer', value: 0 });
    });

    it('validates again a node validated against another registry', () => {
      const { counted, parses } = countingRegistry();
      const other = countingRegistry();
      const config = validateConfig<{ backbone: unknown }>({ backbone: { _target_: 'backbone/toy' } }, other.counted);
      expect(other.parses()).toBe(1);
      new Instantiator(counted).create('backbone', config.backbone, ctx);
      expect(parses()).toBe(1);
    });
  });
});
