import { z } from 'zod';
import { objectKeys } from './zod-issues.js';

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
  const shape = (objectShape(schema) ?? {}) as Record<string, z.ZodType>;
  return objectKeys(schema)
    .filter((key) => shape[key] !== undefined && TRAINING_ONLY.has(shape[key]))
    .map((key) => `${prefix}.${key}`);
}

/** The shape of an object schema, through the wrappers (refinements, defaults) around it. */
function objectShape(schema: unknown): Record<string, unknown> | undefined {
  let current = schema as { _zod?: { def?: Record<string, unknown> } } | undefined;
  for (let i = 0; i < 16 && current?._zod?.def; i++) {
    const def = current._zod.def;
    if (def['type'] === 'object') return def['shape'] as Record<string, unknown>;
    current = (def['innerType'] ?? def['in']) as typeof current;
  }
  return undefined;
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
