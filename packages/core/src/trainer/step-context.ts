import * as tf from '@tensorflow/tfjs';
import type { LogOptions, StepContext } from '../contracts.js';
import { TaskforgeError } from '../errors.js';

export { mixSeed } from '../seed.js';

interface Logged {
  name: string;
  value: tf.Scalar | number;
  weight: number;
}

/**
 * Collects what a step logs through `ctx.log`. Logged tensors are `tf.keep`-ed so they survive
 * the step's tidy scope (and `tf.variableGrads`' own scope); `read()` fetches and disposes them.
 */
export class StepLog {
  private entries: Logged[] = [];

  context(fields: Omit<StepContext, 'log'>): StepContext {
    return {
      ...fields,
      log: (name: string, value: tf.Scalar | number, options?: LogOptions) => {
        if (typeof value !== 'number') {
          if (value.size !== 1) {
            throw new TaskforgeError(
              `ctx.log('${name}') needs a scalar, got a tensor of shape ` +
                `[${value.shape.join(', ')}]; reduce it first (e.g. tf.mean).`,
            );
          }
          tf.keep(value);
        }
        this.entries.push({ name, value, weight: options?.weight ?? 1 });
      },
    };
  }

  /** Reads every logged value (the tensors are disposed) and clears the log. */
  async read(): Promise<Array<{ name: string; value: number; weight: number }>> {
    const entries = this.entries;
    this.entries = [];
    try {
      return await Promise.all(
        entries.map(async (e) => ({
          name: e.name,
          weight: e.weight,
          value: typeof e.value === 'number' ? e.value : (await e.value.data())[0]!,
        })),
      );
    } finally {
      tf.dispose(entries.flatMap((e) => (typeof e.value === 'number' ? [] : [e.value])));
    }
  }

  /** Drops unread values (after a failed step). */
  discard(): void {
    tf.dispose(this.entries.flatMap((e) => (typeof e.value === 'number' ? [] : [e.value])));
    this.entries = [];
  }
}

/** Weighted means of metrics over micro-batches or a validation epoch. */
export class MeanAccumulator {
  private readonly sums = new Map<string, { sum: number; weight: number }>();

  add(name: string, value: number, weight = 1): void {
    const entry = this.sums.get(name) ?? { sum: 0, weight: 0 };
    entry.sum += value * weight;
    entry.weight += weight;
    this.sums.set(name, entry);
  }

  addAll(values: Array<{ name: string; value: number; weight: number }>): void {
    for (const v of values) this.add(v.name, v.value, v.weight);
  }

  means(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, { sum, weight }] of this.sums) out[name] = weight === 0 ? Number.NaN : sum / weight;
    return out;
  }
}
