export { taskGenerator } from './generators/task/generator.js';
export {
  normalizeOptions,
  TaskGeneratorError,
  NAME_PATTERN,
  type BackboneChoice,
  type NormalizedOptions,
} from './generators/task/normalize.js';
export type { TaskGeneratorSchema } from './generators/task/schema.js';
