import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import type { OptimizerBuilders } from '../contracts.js';
import type { ConfigNode } from '../config/paths.js';
import { optimizerSpecs, schedulerSpecs } from '../optim/index.js';
import { constantSchedule } from '../optim/schedulers.js';
import { Instantiator } from '../registry/instantiator.js';
import { ComponentRegistry } from '../registry/registry.js';

/** The optimizer used when the config has no `optimizer` section: AdamW with its defaults (lr 1e-3). */
export const DEFAULT_OPTIMIZER: ConfigNode = { _target_: 'optimizer/adamw' };

/**
 * Builders of the `optimizer` node (default `DEFAULT_OPTIMIZER`) and the `scheduler` node (a
 * constant LR when absent) of a run config, through `instantiator` (so plugin-registered
 * optimizers work). A bad node is a ConfigError (exit 2) at `optimizer.*` / `scheduler.*`, raised
 * when the Trainer builds them at the start of fit.
 */
export function configuredOptimizers(
  config: { optimizer?: unknown; scheduler?: unknown },
  instantiator: Instantiator,
  container: DependencyContainer,
): OptimizerBuilders {
  return {
    buildOptimizer: (variables) =>
      instantiator.create('optimizer', config.optimizer ?? DEFAULT_OPTIMIZER, { container, variables }, 'optimizer'),
    buildScheduler: ({ totalSteps, baseLr }) =>
      config.scheduler
        ? instantiator.create('scheduler', config.scheduler, { container, totalSteps, baseLr }, 'scheduler')
        : constantSchedule(baseLr),
  };
}

/** `configuredOptimizers` over core's own optimizers and schedulers: what `new Trainer` uses without `optimizers`. */
export function coreOptimizers(config: { optimizer?: unknown; scheduler?: unknown } = {}): OptimizerBuilders {
  const registry = new ComponentRegistry();
  for (const spec of [...optimizerSpecs, ...schedulerSpecs]) registry.register(spec);
  return configuredOptimizers(config, new Instantiator(registry), rootContainer.createChildContainer());
}
