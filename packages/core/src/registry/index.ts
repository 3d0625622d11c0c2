export {
  discoverPlugins,
  importPlugin,
  loadPlugins,
  sourceChangedSinceBuild,
  type DiscoveredPlugin,
  type DiscoveryResult,
  type DiscoverOptions,
  type SkippedPlugin,
} from './discovery.js';
export { Instantiator } from './instantiator.js';
export { ComponentRegistry, LOCAL_PACKAGE, isComponentKind, parseTarget, type RegistryEntry } from './registry.js';
export { inputPath, type InputPathOptions } from './input-path.js';
export { dataTrainingOnly, trainingOnly, trainingOnlyKeys } from './training-only.js';
export {
  componentNode,
  isComponentNode,
  validateComponentNode,
  validateConfig,
  type ValidateOptions,
} from './validate.js';
export { describeSchema, issuesToProblems } from './zod-issues.js';
