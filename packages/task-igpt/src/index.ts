import type { ComponentSpec, TaskforgePlugin } from '@taskforge/core';
import { asIgptBackbone } from './backbone-api.js';
import { readImageSpec } from './image-data.js';
import { backboneFromPretrained } from './pretrained-config.js';
import { IgptSamplerCallback, samplerCallbackSchema, type SamplerCallbackConfig } from './sampler-callback.js';
import { ImageGptTask, igptTaskSchema, type IgptTaskConfig } from './task.js';

export { ImageGptTask, igptTaskSchema } from './task.js';
export type { IgptBatch, IgptPrediction, IgptTaskConfig } from './task.js';
export type { IgptBackbone, DecoderCache } from './backbone-api.js';
export { readImageSpec, decodeTokens, type IgptDataArgs, type ImageSpec, type Palette } from './image-data.js';
export {
  generate,
  sampleToken,
  argmax,
  type GenerateOptions,
  type SamplingOptions,
  type TokenDecoder,
} from './sampling.js';
export { LmHead, ClassificationHead } from './heads.js';
export { backboneFromPretrained } from './pretrained-config.js';
export { gridLayout, renderGrid, type GridInput, type GridLayout } from './png.js';
export { IgptSamplerCallback, samplerCallbackSchema } from './sampler-callback.js';
export type { SamplerCallbackConfig } from './sampler-callback.js';

export const igptTaskSpec: ComponentSpec<'task', IgptTaskConfig> = {
  kind: 'task',
  name: 'vision/igpt',
  description: 'Image GPT: generative pre-training on palette tokens, classification fine-tuning, sampled completions',
  schema: igptTaskSchema,
  create: (config, ctx) =>
    new ImageGptTask(
      asIgptBackbone(ctx.backbone, ctx.backbone.constructor?.name ?? 'unknown'),
      config,
      readImageSpec(ctx.modelDataArgs),
      {
        modelDataArgs: ctx.modelDataArgs,
        ...(ctx.dataConfig ? { dataConfig: ctx.dataConfig } : {}),
        ...(ctx.dataTrainingOnly ? { dataTrainingOnly: ctx.dataTrainingOnly } : {}),
        ...(ctx.backboneConfig ? { backboneConfig: ctx.backboneConfig } : {}),
      },
    ),
  adjustRunConfig: backboneFromPretrained,
};

export const igptSamplerSpec: ComponentSpec<'callback', SamplerCallbackConfig> = {
  kind: 'callback',
  name: 'igpt_sampler',
  description: 'Writes iGPT sample grids (completions + unconditional) every N steps and logs them as images',
  schema: samplerCallbackSchema,
  create: (config) => new IgptSamplerCallback(config),
};

export const plugin: TaskforgePlugin = {
  packageName: '@taskforge/task-igpt',
  register(registry) {
    registry.register(igptTaskSpec);
    registry.register(igptSamplerSpec);
  },
};

export default plugin;
