export { SystemClock } from './clock.js';
export { ConsoleOutput, formatDuration, type ConsoleOutputOptions } from './output.js';
export { defaultPaths, findProjectRoot, type PathsOptions } from './paths.js';
