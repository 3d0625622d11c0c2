import { describe, expect, it } from 'vitest';
import type { DataModule, Split } from '../contracts.js';
import { ConfigError } from '../errors.js';
import { parseTrainerConfig } from './config.js';
import { planFit } from './plan.js';

/** A datamodule that only counts its batches (all planFit reads). */
const counting = (batches: Partial<Record<Split, number>>) =>
  ({ numBatches: (split: Split) => batches[split], valDataloader: () => [] }) as unknown as DataModule;

describe('planFit', () => {
  it('refuses val_check_interval larger than the batches of an epoch (Lightning does too), naming both', () => {
    const dm = counting({ train: 10, val: 2 });
    const plan = (raw: object) => planFit(parseTrainerConfig(raw), dm);
    expect(plan({ val_check_interval: 10 }).valEveryBatches).toBe(10);
    expect(plan({ val_check_interval: 1000, fast_dev_run: true }).valEveryBatches).toBe(1000);
    expect(() => plan({ val_check_interval: 11 })).toThrow(ConfigError);
    expect(() => plan({ val_check_interval: 11 })).toThrow(
      /is 11 training batches, but an epoch has only 10, .* at most 10/,
    );
    expect(() => plan({ val_check_interval: 8, limit_train_batches: 5 })).toThrow(
      /only 5 \(after limit_train_batches\)/,
    );
  });

  it('skips validation with a warning naming the datamodule when the val split has no batches (as Lightning)', () => {
    const plan = planFit(parseTrainerConfig({}), counting({ train: 10, val: 0 }), 'the datamodule datamodule/csv');
    expect(plan).toMatchObject({ hasVal: false, valBatches: 0 });
    expect(plan.warnings).toEqual([
      expect.stringMatching(
        /^The val dataloader of the datamodule datamodule\/csv yields no batches: validation is skipped/,
      ),
    ]);
    expect(plan.warnings[0]).toContain('trainer.limit_val_batches=0');
    // Turned off on purpose: no warning.
    expect(planFit(parseTrainerConfig({ limit_val_batches: 0 }), counting({ train: 10, val: 0 })).warnings).toEqual([]);
    expect(planFit(parseTrainerConfig({}), counting({ train: 10, val: 2 }))).toMatchObject({
      hasVal: true,
      valBatches: 2,
      warnings: [],
    });
  });

  it('counts a trailing partial accumulation as a step (accumulate_grad_batches not dividing the epoch)', () => {
    const plan = planFit(parseTrainerConfig({ accumulate_grad_batches: 3, max_epochs: 2 }), counting({ train: 10 }));
    expect(plan.totalSteps).toBe(8); // ceil(10 / 3) = 4 steps per epoch
  });
});
