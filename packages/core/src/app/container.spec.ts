import { describe, expect, it } from 'vitest';
import { toyBackbone, type ToyBackbone } from '../../tests/fixtures/components.js';
import { Instantiator } from '../registry/instantiator.js';
import { ComponentRegistry } from '../registry/registry.js';
import { createContainer } from './container.js';
import { ConsoleOutput } from '../services/output.js';
import { defaultPaths } from '../services/paths.js';
import { Tokens, type Clock, type Output, type Paths } from '../services/tokens.js';

describe('createContainer', () => {
  it('provides the default services', () => {
    const c = createContainer();
    expect(c.resolve(Tokens.Registry)).toBeInstanceOf(ComponentRegistry);
    expect(c.resolve(Tokens.Output)).toBeInstanceOf(ConsoleOutput);
    expect(c.resolve(Tokens.Output)).toBe(c.resolve(Tokens.Output));
    expect(typeof c.resolve<Clock>(Tokens.Clock).now()).toBe('number');
    expect(c.resolve<Paths>(Tokens.Paths)).toEqual(defaultPaths());
    expect(c.resolve(Tokens.Instantiator)).toBeInstanceOf(Instantiator);
  });

  it('swaps services via overrides or by registering on the child container', () => {
    const lines: string[] = [];
    const output: Output = {
      info: (m) => lines.push(m),
      warn: (m) => lines.push(`warn ${m}`),
      progress: () => ({ update() {}, setTotal() {}, stop() {} }),
    };
    const paths: Paths = { projectRoot: '/p', cacheDir: '/c' };
    const c = createContainer({ output, paths });
    c.resolve<Output>(Tokens.Output).info('hello');
    expect(lines).toEqual(['hello']);
    expect(c.resolve(Tokens.Paths)).toBe(paths);

    const clock: Clock = { now: () => 42 };
    c.register(Tokens.Clock, { useValue: clock });
    expect(c.resolve<Clock>(Tokens.Clock).now()).toBe(42);
  });

  it('builds the Instantiator over whichever Registry is registered', () => {
    const c = createContainer();
    const registry = new ComponentRegistry();
    registry.register(toyBackbone);
    c.register(Tokens.Registry, { useValue: registry });
    const backbone = c
      .resolve<Instantiator>(Tokens.Instantiator)
      .create('backbone', { _target_: 'backbone/toy' }, { container: c, modelDataArgs: {} }) as ToyBackbone;
    expect(backbone.config.n_layer).toBe(2);
    expect(() =>
      c
        .resolve<Instantiator>(Tokens.Instantiator)
        .create('logger', { _target_: 'logger/csv' }, { container: c, runDir: '/r' }),
    ).toThrow(/no logger of that name is registered/);
  });

  it('keeps sibling containers independent', () => {
    const a = createContainer();
    const b = createContainer();
    a.resolve<ComponentRegistry>(Tokens.Registry).register(toyBackbone);
    expect(b.resolve<ComponentRegistry>(Tokens.Registry).has('backbone/toy')).toBe(false);
  });
});
