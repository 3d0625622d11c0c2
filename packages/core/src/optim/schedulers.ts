import type { LRScheduler } from '../contracts.js';
import { TaskforgeError } from '../errors.js';

export interface WarmupScheduleOptions {
  baseLr: number;
  /** Planned optimizer steps; decay reaches its floor here and stays there. */
  totalSteps: number;
  /** Linear warmup from 0 to `baseLr` over this many steps (0: none). Default 0. */
  warmupSteps?: number;
  /** Floor of the decay as a fraction of `baseLr`. Default 0. */
  minLrRatio?: number;
}

/**
 * The schedules follow Hugging Face's `get_*_schedule_with_warmup` (what Lightning Transformers
 * uses): the update at step `s < warmup` uses `baseLr·s/warmup`, so step 0 uses lr 0.
 */
function warmupFactor(step: number, warmupSteps: number): number | undefined {
  return step < warmupSteps ? step / warmupSteps : undefined;
}

function checkStep(name: string, step: number): void {
  if (!Number.isInteger(step) || step < 0) {
    throw new TaskforgeError(`LR scheduler '${name}': step must be a non-negative integer, got ${step}.`);
  }
}

function normalise(name: string, options: WarmupScheduleOptions): Required<WarmupScheduleOptions> {
  const resolved = { warmupSteps: 0, minLrRatio: 0, ...options };
  const { baseLr, totalSteps, warmupSteps, minLrRatio } = resolved;
  const problems: string[] = [];
  if (!Number.isFinite(baseLr) || baseLr < 0) problems.push(`baseLr must be >= 0 (got ${baseLr})`);
  if (!Number.isInteger(totalSteps) || totalSteps < 0)
    problems.push(`totalSteps must be a non-negative integer (got ${totalSteps})`);
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0)
    problems.push(`warmup_steps must be a non-negative integer (got ${warmupSteps})`);
  if (!(minLrRatio >= 0 && minLrRatio <= 1)) problems.push(`min_lr_ratio must be in [0, 1] (got ${minLrRatio})`);
  if (problems.length > 0) throw new TaskforgeError(`LR scheduler '${name}': ${problems.join('; ')}.`);
  return resolved;
}

/** Fraction of the decay phase done at `step`, clamped to [0, 1]. */
function progress(step: number, warmupSteps: number, totalSteps: number): number {
  return Math.min(1, Math.max(0, (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps)));
}

/**
 * Constant `baseLr`, after an optional linear warmup. The schedules below throw alike:
 * @throws TaskforgeError (exit 1) for a negative or non-finite `baseLr`, a `warmupSteps`/`totalSteps`
 *   that is not a non-negative integer or a `minLrRatio` outside [0, 1] when built, and from `lrAt`
 *   for a step that is not a non-negative integer.
 */
export function constantSchedule(baseLr: number, options: { warmupSteps?: number } = {}): LRScheduler {
  const { warmupSteps } = normalise('constant', { baseLr, totalSteps: 0, warmupSteps: options.warmupSteps ?? 0 });
  return {
    name: 'constant',
    lrAt(step) {
      checkStep('constant', step);
      return baseLr * (warmupFactor(step, warmupSteps) ?? 1);
    },
  };
}

/** Linear warmup, then half a cosine from `baseLr` down to `minLrRatio·baseLr` at `totalSteps`. */
export function warmupCosineSchedule(options: WarmupScheduleOptions): LRScheduler {
  const { baseLr, totalSteps, warmupSteps, minLrRatio } = normalise('warmup_cosine', options);
  return {
    name: 'warmup_cosine',
    lrAt(step) {
      checkStep('warmup_cosine', step);
      const warm = warmupFactor(step, warmupSteps);
      if (warm !== undefined) return baseLr * warm;
      const cosine = 0.5 * (1 + Math.cos(Math.PI * progress(step, warmupSteps, totalSteps)));
      return baseLr * (minLrRatio + (1 - minLrRatio) * cosine);
    },
  };
}

/** Linear warmup, then linear decay from `baseLr` to `minLrRatio·baseLr` at `totalSteps`. */
export function warmupLinearSchedule(options: WarmupScheduleOptions): LRScheduler {
  const { baseLr, totalSteps, warmupSteps, minLrRatio } = normalise('warmup_linear', options);
  return {
    name: 'warmup_linear',
    lrAt(step) {
      checkStep('warmup_linear', step);
      const warm = warmupFactor(step, warmupSteps);
      if (warm !== undefined) return baseLr * warm;
      return baseLr * (minLrRatio + (1 - minLrRatio) * (1 - progress(step, warmupSteps, totalSteps)));
    },
  };
}
