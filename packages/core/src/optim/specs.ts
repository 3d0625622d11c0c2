import { z } from 'zod';
import type { DependencyContainer } from 'tsyringe';
import type { NamedVariables } from '../contracts.js';
import type { ComponentSpec } from '../registry/types.js';
import { Tokens, type Output } from '../services/tokens.js';
import { Adam } from './adam.js';
import { buildParamGroups, matchesPattern } from './param-groups.js';
import { constantSchedule, warmupCosineSchedule, warmupLinearSchedule } from './schedulers.js';
import { Sgd } from './sgd.js';

/** Patterns exempt from weight decay by default for AdamW: biases, norms, embeddings, start tokens. */
export const DEFAULT_NO_DECAY: readonly string[] = ['*bias*', '*norm*', '*ln*', '*embed*', '*sos*'];

const lr = z.number().nonnegative().describe('learning rate (the scheduler scales it)');
const weightDecay = z.number().nonnegative();
const noDecay = z
  .array(z.string().min(1))
  .describe('variable-name patterns (substring or glob, case-insensitive) with weight decay 0');
const beta = z.number().min(0).lt(1);

/** Keras's, TF.js's and timm's names for the settings every optimizer here has. */
const OPTIMIZER_KEY_ALIASES = {
  learning_rate: 'lr',
  learningRate: 'lr',
  weightDecay: 'weight_decay',
  wd: 'weight_decay',
} as const;
/** …and the Adam family's (`epsilon` is Keras's and TF.js's `eps`). */
const ADAM_KEY_ALIASES = { ...OPTIMIZER_KEY_ALIASES, epsilon: 'eps' } as const;
/** Hugging Face's (`num_warmup_steps`) and timm's (`warmup_epochs` is not steps: no alias) warmup names. */
const SCHEDULER_KEY_ALIASES = {
  num_warmup_steps: 'warmup_steps',
  warmupSteps: 'warmup_steps',
  warmup: 'warmup_steps',
} as const;

const sgdSchema = z.strictObject({
  lr: lr.default(1e-3),
  momentum: z.number().nonnegative().default(0),
  nesterov: z.boolean().default(false),
  weight_decay: weightDecay.default(0),
  no_decay: noDecay.default([]),
});

function adamSchema(defaultWeightDecay: number, defaultNoDecay: readonly string[]) {
  return z.strictObject({
    lr: lr.default(1e-3),
    betas: z.tuple([beta, beta]).default([0.9, 0.999]),
    eps: z.number().positive().default(1e-8),
    weight_decay: weightDecay.default(defaultWeightDecay),
    no_decay: noDecay.default([...defaultNoDecay]),
  });
}

/**
 * A `no_decay` pattern the user wrote (not one of the defaults) that matches no variable is most
 * likely a typo, and its variables silently get weight decay: warn, naming a few variable names.
 */
function warnUnmatchedNoDecay(
  config: { weight_decay: number; no_decay: readonly string[] },
  variables: NamedVariables,
  container: DependencyContainer,
): void {
  if (config.weight_decay === 0 || !container.isRegistered(Tokens.Output, true)) return;
  const names = Object.keys(variables);
  const unmatched = config.no_decay.filter(
    (p) => !DEFAULT_NO_DECAY.includes(p) && !names.some((name) => matchesPattern(name, p)),
  );
  if (unmatched.length === 0) return;
  container.resolve<Output>(Tokens.Output).warn(
    `optimizer.no_decay: ${unmatched.map((p) => `'${p}'`).join(', ')} match${unmatched.length === 1 ? 'es' : ''} no ` +
      `variable, so nothing is exempted by ${unmatched.length === 1 ? 'it' : 'them'} from weight_decay ` +
      `${config.weight_decay}. A pattern is a substring, or a glob with * and ? over the whole name (case ` +
      `ignored); the names look like ${names
        .slice(0, 4)
        .map((n) => `'${n}'`)
        .join(', ')}` +
      `${names.length > 4 ? ', …' : ''}.`,
  );
}

export type SgdConfig = z.infer<typeof sgdSchema>;
export type AdamConfig = z.infer<ReturnType<typeof adamSchema>>;

export const optimizerSpecs: ComponentSpec<'optimizer'>[] = [
  {
    kind: 'optimizer',
    name: 'sgd',
    description: 'SGD with optional (Nesterov) momentum and L2 weight decay, PyTorch update rule',
    schema: sgdSchema,
    keyAliases: OPTIMIZER_KEY_ALIASES,
    create: (config: SgdConfig, { variables, container }) => {
      warnUnmatchedNoDecay(config, variables, container);
      return new Sgd(buildParamGroups(variables, { weightDecay: config.weight_decay, noDecay: config.no_decay }), {
        lr: config.lr,
        momentum: config.momentum,
        nesterov: config.nesterov,
      });
    },
  },
  ...(
    [
      ['adam', 'Adam with L2 weight decay added to the gradient (PyTorch Adam)', false, 0, []],
      ['adamw', 'AdamW: Adam with decoupled weight decay (PyTorch AdamW)', true, 0.01, DEFAULT_NO_DECAY],
    ] as const
  ).map(([name, description, decoupled, wd, patterns]): ComponentSpec<'optimizer'> => ({
    kind: 'optimizer',
    name,
    description,
    schema: adamSchema(wd, patterns),
    keyAliases: ADAM_KEY_ALIASES,
    create: (config: AdamConfig, { variables, container }) => {
      warnUnmatchedNoDecay(config, variables, container);
      return new Adam(buildParamGroups(variables, { weightDecay: config.weight_decay, noDecay: config.no_decay }), {
        lr: config.lr,
        beta1: config.betas[0],
        beta2: config.betas[1],
        epsilon: config.eps,
        decoupledWeightDecay: decoupled,
        name,
      });
    },
  })),
];

const warmupSteps = z
  .number()
  .int()
  .nonnegative()
  .default(0)
  .describe('linear warmup from 0 over this many optimizer steps');
const minLrRatio = z.number().min(0).max(1).default(0).describe('final lr as a fraction of the base lr');

const constantSchema = z.strictObject({ warmup_steps: warmupSteps });
const decaySchema = z.strictObject({ warmup_steps: warmupSteps, min_lr_ratio: minLrRatio });
type DecayConfig = z.infer<typeof decaySchema>;

export const schedulerSpecs: ComponentSpec<'scheduler'>[] = [
  {
    kind: 'scheduler',
    name: 'constant',
    description: 'constant learning rate after an optional linear warmup',
    schema: constantSchema,
    keyAliases: SCHEDULER_KEY_ALIASES,
    create: (config: z.infer<typeof constantSchema>, { baseLr }) =>
      constantSchedule(baseLr, { warmupSteps: config.warmup_steps }),
  },
  {
    kind: 'scheduler',
    name: 'warmup_cosine',
    description: 'linear warmup, then cosine decay to min_lr_ratio × lr at the last step',
    schema: decaySchema,
    keyAliases: SCHEDULER_KEY_ALIASES,
    create: (config: DecayConfig, { baseLr, totalSteps }) =>
      warmupCosineSchedule({ baseLr, totalSteps, warmupSteps: config.warmup_steps, minLrRatio: config.min_lr_ratio }),
  },
  {
    kind: 'scheduler',
    name: 'warmup_linear',
    description: 'linear warmup, then linear decay to min_lr_ratio × lr at the last step',
    schema: decaySchema,
    keyAliases: SCHEDULER_KEY_ALIASES,
    create: (config: DecayConfig, { baseLr, totalSteps }) =>
      warmupLinearSchedule({ baseLr, totalSteps, warmupSteps: config.warmup_steps, minLrRatio: config.min_lr_ratio }),
  },
];
