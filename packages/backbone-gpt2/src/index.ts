import { z } from 'zod';
import { readSequenceDataArgs, type ComponentSpec, type ModelDataArgs, type TaskforgePlugin } from '@taskforge/core';
import { Gpt2, type Gpt2Hparams } from './gpt2.js';

export { Gpt2, KVCache, attention } from './gpt2.js';
export type { Gpt2Hparams, ForwardOptions, ForwardOutput } from './gpt2.js';

/** The `backbone` config node (without `_target_`). Shapes come from the data module. */
export const gpt2Schema = z
  .strictObject({
    embed_dim: z.int().positive().default(16),
    num_heads: z.int().positive().default(2),
    num_layers: z.int().positive().default(8),
    dropout: z.number().min(0).lt(1).default(0),
    init_std: z.number().positive().default(0.02),
    residual_norm: z.boolean().default(false),
    /** Query rows per block of the memory-efficient attention (speed/memory trade-off only; results are the same). */
    attention_block_size: z.int().positive().default(128),
    /** Seeds weight initialisation, so two runs with the same config start from the same weights. */
    init_seed: z.int().nonnegative().default(0),
  })
  .superRefine((c, ctx) => {
    if (c.embed_dim % c.num_heads !== 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['embed_dim'],
        params: { relatedKeys: ['num_heads'] },
        message:
          `embed_dim (${c.embed_dim}) must be divisible by num_heads (${c.num_heads}) so every head gets ` +
          `embed_dim / num_heads dimensions; pick e.g. num_heads=${largestDivisorAtMost(c.embed_dim, c.num_heads)} ` +
          `or embed_dim=${Math.ceil(c.embed_dim / c.num_heads) * c.num_heads}`,
      });
    }
  });

/** The validated `backbone` config node (`gpt2Schema`'s output); `Gpt2Hparams` adds the data's shapes. */
export type Gpt2Config = z.output<typeof gpt2Schema>;

/**
 * Build the backbone from its validated config (`gpt2Schema`'s output: the Instantiator, or
 * `gpt2Schema.parse` when built by hand, has checked it; it is not parsed again here) and the data
 * module's `modelDataArgs`, read as core's `SequenceDataArgs` (`num_positions`, `num_vocab`).
 * @throws ConfigError (exit 2) naming each missing or non-positive `modelDataArgs.*` entry.
 */
export function createGpt2(config: Gpt2Config, modelDataArgs: ModelDataArgs): Gpt2 {
  const { num_positions, num_vocab } = readSequenceDataArgs(modelDataArgs, {
    who: 'backbone/gpt2',
    required: ['num_positions', 'num_vocab'],
    example: 'datamodule/cifar10',
  });
  const { init_seed, ...model } = config;
  const hparams: Gpt2Hparams = { ...model, num_positions, num_vocab };
  return new Gpt2(hparams, { seed: init_seed });
}

export const gpt2Spec: ComponentSpec<'backbone', Gpt2Config> = {
  kind: 'backbone',
  name: 'gpt2',
  description:
    'GPT-2 decoder (causal self-attention, learned sos and ' +
    'positions) returning hidden states; heads belong to the task',
  schema: gpt2Schema,
  // Hugging Face's GPT2Config and nanoGPT's names, and keras-nlp's `hidden_dim`.
  keyAliases: {
    n_layer: 'num_layers',
    n_embd: 'embed_dim',
    n_head: 'num_heads',
    hidden_dim: 'embed_dim',
    resid_pdrop: 'dropout',
    embd_pdrop: 'dropout',
    initializer_range: 'init_std',
  },
  create: (config, ctx) => createGpt2(config, ctx.modelDataArgs),
};

export const plugin: TaskforgePlugin = {
  packageName: '@taskforge/backbone-gpt2',
  register(registry) {
    registry.register(gpt2Spec);
  },
};

export default plugin;

function largestDivisorAtMost(n: number, limit: number): number {
  for (let d = Math.min(n, limit); d > 1; d--) if (n % d === 0) return d;
  return 1;
}
