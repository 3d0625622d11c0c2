import 'reflect-metadata';
import { container as rootContainer, instanceCachingFactory, type DependencyContainer } from 'tsyringe';
import { Accelerator } from '../backend/accelerator.js';
import { Instantiator } from '../registry/instantiator.js';
import { ComponentRegistry } from '../registry/registry.js';
import { Trainer, type TrainerFactory } from '../trainer/trainer.js';
import { SystemClock } from '../services/clock.js';
import { ConsoleOutput } from '../services/output.js';
import { defaultPaths } from '../services/paths.js';
import { Tokens, type Clock, type Output, type Paths } from '../services/tokens.js';

export interface ServiceOverrides {
  registry?: ComponentRegistry;
  output?: Output;
  clock?: Clock;
  paths?: Paths;
}

/**
 * A child container with core's services. Registering another value for a token on the returned
 * container (or passing it in `overrides`) swaps that service; the Instantiator is built per
 * resolve so it always uses the Registry currently registered.
 */
export function createContainer(
  overrides: ServiceOverrides = {},
  parent: DependencyContainer = rootContainer,
): DependencyContainer {
  const c = parent.createChildContainer();
  c.register(Tokens.Registry, { useValue: overrides.registry ?? new ComponentRegistry() });
  c.register(Tokens.Clock, { useValue: overrides.clock ?? new SystemClock() });
  if (overrides.output) c.register(Tokens.Output, { useValue: overrides.output });
  else
    c.register(Tokens.Output, {
      useFactory: instanceCachingFactory((r) => new ConsoleOutput({ clock: r.resolve<Clock>(Tokens.Clock) })),
    });
  if (overrides.paths) c.register(Tokens.Paths, { useValue: overrides.paths });
  else c.register(Tokens.Paths, { useFactory: instanceCachingFactory(() => defaultPaths()) });
  c.register(Tokens.Accelerator, {
    useFactory: instanceCachingFactory((r) => new Accelerator(r.resolve<Output>(Tokens.Output))),
  });
  c.register(Tokens.TrainerFactory, {
    useValue: ((config, deps) => new Trainer(config, deps)) satisfies TrainerFactory,
  });
  c.register(Tokens.Instantiator, {
    useFactory: (r) => new Instantiator(r.resolve<ComponentRegistry>(Tokens.Registry)),
  });
  return c;
}
