import { join } from 'node:path';
import { z } from 'zod';
import type { ComponentSpec, CreateContexts } from '../registry/types.js';
import { type Clock, Tokens } from '../services/tokens.js';
import { CsvLogger } from './csv.js';
import { TensorBoardLogger } from './tensorboard.js';

const subdir = (fallback: string) =>
  z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/, 'must be a single directory name (letters, digits, ".", "_", "-")')
    .refine((s) => s !== '.' && s !== '..', 'must not be "." or ".."')
    .default(fallback)
    .describe(`directory under <run>/logs/ (default ${fallback})`);
const flushEvery = z.number().int().positive().default(10).describe('write to disk every N logged steps');

const csvSchema = z.strictObject({ name: subdir('csv'), flush_every: flushEvery });
const tensorboardSchema = z.strictObject({ name: subdir('tensorboard'), flush_every: flushEvery });

function clockOf(ctx: CreateContexts['logger']): Clock | undefined {
  return ctx.container.isRegistered(Tokens.Clock, true) ? ctx.container.resolve<Clock>(Tokens.Clock) : undefined;
}

export const loggerSpecs: ComponentSpec<'logger'>[] = [
  {
    kind: 'logger',
    name: 'csv',
    description: 'metrics.csv (one row per logged step) and hparams.yaml under <run>/logs/csv',
    schema: csvSchema,
    create: (config: z.infer<typeof csvSchema>, ctx) =>
      new CsvLogger({ dir: join(ctx.runDir, 'logs', config.name), flushEvery: config.flush_every }),
  },
  {
    kind: 'logger',
    name: 'tensorboard',
    description: 'TensorBoard event file (scalars, images, hparams text) under <run>/logs/tensorboard',
    schema: tensorboardSchema,
    create: (config: z.infer<typeof tensorboardSchema>, ctx) => {
      const clock = clockOf(ctx);
      return new TensorBoardLogger({
        dir: join(ctx.runDir, 'logs', config.name),
        flushEvery: config.flush_every,
        ...(clock ? { now: () => clock.now() } : {}),
      });
    },
  },
];
