export { main, commandOptions, type CliIo } from './main.js';
