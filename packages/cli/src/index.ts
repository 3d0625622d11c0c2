export { main, commandOptions, type CliIo } from './main.js';
export {
  plotCommand,
  readCurves,
  curvesSpec,
  confusionSpec,
  renderPng,
  type CurvePoint,
  type PlotResult,
  type PlotOptions,
} from './plot.js';
