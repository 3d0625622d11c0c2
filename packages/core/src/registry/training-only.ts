import { z } from 'zod';
import { objectShape } from './zod-issues.js';

/** Data settings marked with {@link trainingOnly}: a registry of their schemas, nothing else. */
const TRAINING_ONLY = z.registry<{ trainingOnly: true }>();

/**
 * Marks a data module's setting as training-only: it changes how training batches are drawn
 * (augmentation, shuffling, sampling) and never what a sample is to the model, so checks that
 * compare a run's data with a checkpoint's (a resume, a fine-tune from `pretrained`, an
 * evaluation with `ckpt=`) do not name it as a difference. Wrap the whole field, default included:
 * `augment: trainingOnly(z.boolean().default(false))`.
 */
export function trainingOnly<T extends z.ZodType>(schema: T): T {
  return (schema as z.ZodType).register(TRAINING_ONLY, { trainingOnly: true }) as T;
}

/**
 * The keys of an object schema (a data module's config schema) marked with {@link trainingOnly},
 * as `<prefix>.<key>` paths (`dataset.augment`). Empty for anything else.
 */
export function trainingOnlyKeys(schema: unknown, prefix = 'dataset'): string[] {
  return Object.entries(objectShape(schema) ?? {})
    .filter(([, field]) => TRAINING_ONLY.has(field as z.ZodType))
    .map(([key]) => `${prefix}.${key}`);
}

/**
 * The training-only settings (`dataset.augment`, …) of the data module a `dataset` config node
 * selects, from its registered schema; empty when the node names no registered component.
 */
export function dataTrainingOnly(
  registry: { has(target: string): boolean; resolve(target: string): { schema: unknown } },
  dataConfig: Readonly<Record<string, unknown>> | null | undefined,
): string[] {
  const target = dataConfig?.['_target_'];
  if (typeof target !== 'string' || !registry.has(target)) return [];
  return trainingOnlyKeys(registry.resolve(target).schema);
}
