import type { TaskforgePlugin } from '@taskforge/core';
import { cifar10Spec } from './component.js';

export { cifar10Spec } from './component.js';
export { cifar10Schema, OFFICIAL_MD5, OFFICIAL_URL, type Cifar10Config, type Cifar10ConfigInput } from './config.js';
export { Cifar10DataModule, type CifarBatch, type Cifar10ModelDataArgs } from './datamodule.js';
export { dequantize, paletteIndex, quantize, type Palette, type PaletteIndex } from './quantize.js';
export { miniBatchKMeans, toPalette, type KMeansOptions } from './kmeans.js';
export { augmentGrid, augmentPad, augmentParams, reflect, PAD, type AugmentParams } from './augment.js';
export { downsample, imageToRgb, IMAGE_SIZES, type ImageSet } from './images.js';
export {
  IMAGE_PIXELS,
  IMAGE_SIZE,
  NUM_CLASSES,
  RECORD_BYTES,
  parseBatch,
  readBatches,
  readMeta,
  type CifarRecords,
} from './format.js';

export const plugin: TaskforgePlugin = {
  packageName: '@taskforge/data-cifar',
  register(registry) {
    registry.register(cifar10Spec);
  },
};
