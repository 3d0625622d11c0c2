/**
 * Config composition, the Hydra/OmegaConf equivalent: YAML files on a search path, `defaults`
 * lists with config groups, command-line overrides and `${...}` interpolation.
 */
export { composeConfig, type ComposeOptions, type ComposedConfig } from './compose.js';
export { parseOverride, parseOverrideValue, type Override } from './overrides.js';
export { attachEnvSources } from './interpolate.js';
export { overrideHint } from './override-grammar.js';
export { toYaml, type ToYamlOptions } from './yaml-io.js';
export { listGroupOptions, listGroups } from './search-path.js';
export { suggest, editDistance } from './suggest.js';
export { getPath, setPath, hasPath, deletePath, isPlainObject, type ConfigNode } from './paths.js';
