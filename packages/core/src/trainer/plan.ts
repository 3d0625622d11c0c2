import type { DataModule, Split } from '../contracts.js';
import { ConfigError, TaskforgeError } from '../errors.js';
import type { TrainerConfig } from './config.js';

/**
 * How many batches one pass over a split takes after `limit_*_batches` (undefined = until
 * exhausted; 0 when the limit is 0, i.e. that loop is turned off). Throws ConfigError (exit 2) for a
 * fraction when the datamodule cannot count its batches, TaskforgeError (exit 1) for an empty split.
 */
export function batchBudget(
  dm: DataModule,
  split: Split,
  limit: number | null,
  key: string,
  fastDevRun: boolean,
  datamodule = 'the datamodule',
): number | undefined {
  const available = dm.numBatches?.(split);
  if (fastDevRun) return 1;
  if (limit === 0) return 0;
  let budget: number | undefined;
  if (limit === null) budget = available;
  else if (limit < 1) {
    if (available === undefined) {
      throw new ConfigError([
        {
          path: `trainer.${key}`,
          message:
            `is a fraction, but the datamodule does not report how many ` +
            `${split} batches it has; give a whole number of batches instead`,
          value: limit,
        },
      ]);
    }
    budget = Math.max(1, Math.floor(available * limit));
  } else budget = available === undefined ? limit : Math.min(limit, available);
  if (budget === 0) throw emptySplitError(split, datamodule);
  return budget;
}

/** The TaskforgeError (exit 1) for a split whose dataloader yields no batches, naming the data module. */
export function emptySplitError(split: Split, datamodule = 'the datamodule'): TaskforgeError {
  return new TaskforgeError(
    `The ${split} dataloader of ${datamodule} yields no batches; check the dataset's ${split} split (its file or ` +
      `size keys) and the batch size (a batch larger than the split with drop_last gives none).`,
  );
}

export interface FitPlan {
  /** Training batches per epoch, when known. */
  trainBatches: number | undefined;
  /** Planned optimizer steps over the whole run. */
  totalSteps: number;
  /**
   * Validate every this many training batches within an epoch (a whole-number
   * `val_check_interval`); undefined = see `valAtBatches`, or only at the epoch end.
   */
  valEveryBatches: number | undefined;
  /**
   * For a fractional `val_check_interval` f: the batch positions of an epoch after which it
   * validates besides its end, round(k·f·n) of its n batches for k = 1, 2, … while k·f ≤ 1 − f/2.
   * So 0.5 means twice per epoch, the middle and the end (63 and 125 of 125 batches), and a point
   * less than half an interval before the end is left to the end's validation (0.3: at 0.3, 0.6
   * and the end, not also at 0.9). Empty otherwise.
   */
  valAtBatches: number[];
  /**
   * Validation runs: the datamodule has a val split and `limit_val_batches` is not 0;
   * `valBatches` undefined then means "until exhausted".
   */
  hasVal: boolean;
  valBatches: number | undefined;
  /** Things the run does differently from what the config asks (e.g. no validation: empty val split), to print. */
  warnings: string[];
}

/**
 * The fit's plan from the config and the datamodule's batch counts. `datamodule` names the data
 * module in messages (e.g. its `dataset._target_`). A val split with no batches skips validation
 * with a warning, as Lightning does. Throws ConfigError (exit 2) for a step count or
 * val_check_interval that cannot work, TaskforgeError (exit 1) for an empty train split.
 */
export function planFit(config: TrainerConfig, dm: DataModule, datamodule = 'the datamodule'): FitPlan {
  const fast = config.fast_dev_run;
  const warnings: string[] = [];
  const trainBatches = batchBudget(dm, 'train', config.limit_train_batches, 'limit_train_batches', fast, datamodule);
  const emptyVal = dm.valDataloader !== undefined && dm.numBatches?.('val') === 0 && config.limit_val_batches !== 0;
  if (emptyVal)
    warnings.push(
      `The val dataloader of ${datamodule} yields no batches: validation is skipped (no val metrics, no sanity ` +
        'check; a checkpoint callback monitoring a val metric has nothing to compare). Check the val split and ' +
        'the batch size, or set trainer.limit_val_batches=0 to turn validation off without this warning.',
    );
  const valBatches =
    dm.valDataloader && !emptyVal
      ? batchBudget(dm, 'val', config.limit_val_batches, 'limit_val_batches', fast, datamodule)
      : emptyVal
        ? 0
        : undefined;
  const stepsPerEpoch =
    trainBatches === undefined ? undefined : Math.ceil(trainBatches / config.accumulate_grad_batches);
  const maxEpochs = fast ? 1 : config.max_epochs;
  const maxSteps = fast ? 1 : config.max_steps;
  const fromEpochs = maxEpochs === -1 || stepsPerEpoch === undefined ? Infinity : stepsPerEpoch * maxEpochs;
  const totalSteps = Math.min(fromEpochs, maxSteps === -1 ? Infinity : maxSteps);
  if (!Number.isFinite(totalSteps)) {
    throw new ConfigError([
      {
        path: 'trainer.max_steps',
        message:
          'the datamodule does not report how many training batches an epoch has, so the number of ' +
          'optimizer steps (needed by LR schedules and progress) is unknown; set trainer.max_steps',
        value: config.max_steps,
      },
    ]);
  }
  let valEveryBatches: number | undefined;
  const valAtBatches: number[] = [];
  const interval = config.val_check_interval;
  if (interval > 1) {
    if (!fast && trainBatches !== undefined && interval > trainBatches) {
      // Lightning refuses this too: counted within an epoch, such an interval never comes round.
      throw new ConfigError([
        {
          path: 'trainer.val_check_interval',
          message:
            `is ${interval} training batches, but an epoch has only ${trainBatches}` +
            `${config.limit_train_batches === null ? '' : ' (after limit_train_batches)'}, so validation would ` +
            `never run within an epoch; give at most ${trainBatches}, a fraction of the epoch such as 0.5, ` +
            "or 1.0 to validate at each epoch's end",
          value: interval,
        },
      ]);
    }
    valEveryBatches = interval;
  } else if (interval < 1) {
    if (trainBatches === undefined) {
      throw new ConfigError([
        {
          path: 'trainer.val_check_interval',
          message:
            'is a fraction of the epoch, but the datamodule does not report how many ' +
            'training batches an epoch has; give a whole number of batches instead',
          value: interval,
        },
      ]);
    }
    // Integer steps k over the fraction (k·f ≤ 1 − f/2 ⇔ k ≤ 1/f − 1/2), so 0.1 × 10 is not 0.9999….
    for (let k = 1; k <= 1 / interval - 0.5 + 1e-9; k++) {
      const at = Math.max(1, Math.round(k * interval * trainBatches));
      if (at < trainBatches && at > (valAtBatches.at(-1) ?? 0)) valAtBatches.push(at);
    }
  }
  return {
    trainBatches,
    totalSteps,
    valEveryBatches,
    valAtBatches,
    hasVal: dm.valDataloader !== undefined && valBatches !== 0,
    valBatches,
    warnings,
  };
}
