import { callbackSpecs } from './callbacks/index.js';
import { loggerSpecs } from './loggers/index.js';
import { optimizerSpecs, schedulerSpecs } from './optim/index.js';
import type { TaskforgePlugin } from './registry/types.js';

/** Core is a plugin like any other: it registers the optimizers, schedulers, callbacks and loggers. */
export const plugin: TaskforgePlugin = {
  packageName: '@taskforge/core',
  register(registry) {
    for (const spec of [...optimizerSpecs, ...schedulerSpecs, ...callbackSpecs, ...loggerSpecs])
      registry.register(spec);
  },
};
