export { CsvLogger, type CsvLoggerOptions } from './csv.js';
export { loggerSpecs } from './specs.js';
export { TensorBoardLogger, type TensorBoardLoggerOptions } from './tensorboard.js';
export {
  encodeEvent,
  eventsHoldData,
  frameRecord,
  maskedCrc32c,
  pngInfo,
  ProtoWriter,
  type SummaryValue,
} from './tfevents.js';
