import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { inputPath } from '../registry/input-path.js';
import { componentNode } from '../registry/validate.js';
import { issuesToProblems } from '../registry/zod-issues.js';
import type { Clock } from '../services/tokens.js';

/**
 * JS cannot tell `1` from `1.0`, so the Lightning convention (int = count, float = fraction)
 * is read by value: numbers in (0, 1) are fractions, integers >= 1 are batch counts.
 */
const batchLimit = z
  .number()
  .min(0)
  .refine((v) => v !== 0, {
    message:
      'limit_train_batches=0 would train on no batch (Lightning then skips training); to only evaluate, ' +
      'run `taskforge validate ckpt=<dir>`; else give a fraction in (0, 1) or a whole number of batches >= 1 ' +
      '(null = all batches)',
  })
  .refine((v) => v < 1 || Number.isInteger(v), {
    message: 'expected a fraction in (0, 1) or a whole number of batches >= 1 (null = all batches)',
  })
  .nullable()
  .default(null);

/**
 * Evaluation limits also accept 0, as in Lightning: `limit_val_batches=0` turns validation off
 * (no validation during fit and no sanity check); `limit_test_batches=0` makes `test` run no batch.
 */
const evalBatchLimit = z
  .number()
  .min(0)
  .refine((v) => v < 1 || Number.isInteger(v), {
    message: 'expected 0 (off), a fraction in (0, 1) or a whole number of batches >= 1 (null = all batches)',
  })
  .nullable()
  .default(null);

export const trainerConfigSchema = z
  .strictObject({
    /** -1 = no limit (then max_steps must be set). */
    max_epochs: z.number().int().min(-1).default(1),
    /** Optimizer steps; -1 = no limit. Training stops at whichever of max_epochs/max_steps comes first. */
    max_steps: z.number().int().min(-1).default(-1),
    limit_train_batches: batchLimit,
    limit_val_batches: evalBatchLimit,
    limit_test_batches: evalBatchLimit,
    /** <= 1: fraction of the training epoch; integer > 1: every N training batches. */
    val_check_interval: z
      .number()
      .positive()
      .refine((v) => v <= 1 || Number.isInteger(v), {
        message: 'expected a fraction of the epoch in (0, 1] or a whole number of training batches > 1',
      })
      // null is not "off" (Lightning reads None as 1.0): refused, saying how to turn validation off.
      .nullable()
      .refine((v) => v !== null, {
        message:
          'null does not turn validation off here; to turn validation off set trainer.limit_val_batches=0, ' +
          'to validate once per epoch give 1.0',
      })
      .transform((v) => v as number)
      .default(1.0),
    check_val_every_n_epoch: z.number().int().min(1).default(1),
    accumulate_grad_batches: z.number().int().min(1).default(1),
    /** Clip the global gradient norm to this; null or 0 (Lightning's spelling, read as null) = no clipping. */
    gradient_clip_val: z
      .number()
      .min(0)
      .nullable()
      .default(null)
      .transform((v) => (v === 0 ? null : v)),
    seed: z.number().int().min(0).default(42),
    fast_dev_run: z.boolean().default(false),
    /** -1 = the whole validation set. */
    num_sanity_val_steps: z.number().int().min(-1).default(2),
    accelerator: z
      .enum(['auto', 'gpu', 'node', 'webgpu', 'wasm', 'cpu'])
      // What Lightning and TF.js users type: CUDA is tfjs-node-gpu, the native CPU backend is
      // tfjs-node (TensorFlow C), Metal and Vulkan GPUs go through WebGPU.
      .meta({
        valueAliases: {
          cuda: 'gpu',
          'tfjs-node-gpu': 'gpu',
          tensorflow: 'node',
          tf: 'node',
          'tfjs-node': 'node',
          native: 'node',
          mps: 'webgpu',
          metal: 'webgpu',
          vulkan: 'webgpu',
          dawn: 'webgpu',
          'tfjs-backend-wasm': 'wasm',
        },
      })
      .default('auto'),
    threads: z.number().int().min(1).nullable().default(null),
    /** auto: ddp over worker threads on wasm/cpu when the batch splits, else single (see ddp/strategy.ts). */
    strategy: z
      .enum(['auto', 'single', 'ddp'])
      // Lightning's names: every data-parallel flavour is our ddp, single_device is single.
      .meta({
        valueAliases: {
          single_device: 'single',
          ddp_spawn: 'ddp',
          ddp_fork: 'ddp',
          ddp_notebook: 'ddp',
          ddp_find_unused_parameters_true: 'ddp',
          dp: 'ddp',
          fsdp: 'ddp',
          deepspeed: 'ddp',
        },
      })
      .default('auto'),
    /** auto: one device per core (capped at the batch size); N: that many (rank 0 + N-1 worker threads). */
    devices: z.union([z.literal('auto'), z.number().int().min(1)]).default('auto'),
    /**
     * ddp: seconds a worker may take to build its replica or answer one step before the run stops
     * with an error naming it (PyTorch's process-group timeout, also 30 min by default); null = no limit.
     */
    ddp_timeout: z.number().positive().nullable().default(1800),
    default_root_dir: z.string().min(1).default('outputs'),
    run_dir: z.string().min(1).nullable().default(null),
    /** A checkpoint dir to resume from; it must exist when the config is validated (before the run dir is made). */
    resume_from: inputPath({
      kind: 'dir',
      hint: 'point it at a checkpoint directory such as <run dir>/checkpoints/last',
      words: Object.fromEntries(
        ['last', 'best'].map((w) => [
          w,
          `'${w}' is Lightning's ckpt_path shortcut; here resume_from takes the checkpoint directory itself, ` +
            `e.g. trainer.resume_from=<run dir>/checkpoints/${w === 'last' ? 'last' : 'step=<N>'} ` +
            '(`taskforge train` prints where it saves them)',
        ]),
      ),
    })
      .nullable()
      .default(null),
    stop_on_nan: z.boolean().default(true),
    log_every_n_steps: z.number().int().min(1).default(10),
    /** name → component node; null removes an entry inherited from a default. */
    callbacks: z.record(z.string(), componentNode('callback').nullable()).default({}),
    loggers: z.record(z.string(), componentNode('logger').nullable()).default({}),
  })
  .superRefine((config, ctx) => {
    // Lightning reads max_epochs=-1 with no max_steps as "train forever"; here a run always has an
    // end (LR schedules and progress need the step count), so say it with the other config problems.
    if (config.max_epochs === -1 && config.max_steps === -1 && !config.fast_dev_run)
      ctx.addIssue({
        code: 'custom',
        path: ['max_epochs'],
        input: -1,
        message:
          'max_epochs and max_steps are both -1 (unlimited), so training would never end; set one of them ' +
          '(to stop a long run early press Ctrl-C: the checkpoint is saved)',
      });
  });

export type TrainerConfig = z.output<typeof trainerConfigSchema>;
export type TrainerConfigInput = z.input<typeof trainerConfigSchema>;

/** Configs `parseTrainerConfig` returned: passed to it again (Trainer.create → new Trainer), kept as they are. */
const parsedConfigs = new WeakSet<object>();

/**
 * The parsed `callbacks`/`loggers` record with each input node itself in place of zod's copy:
 * `componentNode` only checks `_target_` (a loose object, no defaults), so the copy is equal, but
 * the input may be a node the whole run config validated, which the Instantiator then builds
 * without validating it again (see `isValidatedNode`).
 */
function keepInputNodes<T extends Record<string, unknown>>(parsed: T, input: unknown): T {
  if (typeof input !== 'object' || input === null) return parsed;
  const nodes = input as Record<string, unknown>;
  return Object.fromEntries(
    Object.entries(parsed).map(([name, node]) => [
      name,
      node !== null && Object.hasOwn(nodes, name) ? nodes[name] : node,
    ]),
  ) as T;
}

/**
 * Validates a raw `trainer` node (for programmatic `new Trainer({...})`; the CLI's is validated
 * with the whole run config first) and returns it with defaults applied. A config this function
 * returned is returned as it is; the callback and logger nodes are the input's own objects.
 * @throws ConfigError (exit 2) reporting every problem at once as `<prefix>.<key>`, including
 *   `max_epochs` and `max_steps` both -1 without `fast_dev_run` (a run that would never end).
 */
export function parseTrainerConfig(raw: unknown, prefix = 'trainer'): TrainerConfig {
  if (typeof raw === 'object' && raw !== null && parsedConfigs.has(raw)) return raw as TrainerConfig;
  const result = trainerConfigSchema.safeParse(raw ?? {});
  if (result.success) {
    const input = (raw ?? {}) as { callbacks?: unknown; loggers?: unknown };
    const config: TrainerConfig = {
      ...result.data,
      callbacks: keepInputNodes(result.data.callbacks, input.callbacks),
      loggers: keepInputNodes(result.data.loggers, input.loggers),
    };
    parsedConfigs.add(config);
    return config;
  }
  throw new ConfigError(issuesToProblems(result.error.issues, trainerConfigSchema, raw ?? {}, prefix));
}

/**
 * `run_dir`, else `<default_root_dir>/<YYYY-MM-DD>/<HH-MM-SS>` in local time (Hydra's layout). The
 * path only: {@link runDirPath} is the run dir a Trainer uses.
 */
export function resolveRunDir(
  config: Pick<TrainerConfig, 'run_dir' | 'default_root_dir'>,
  clock: Clock = Date,
): string {
  if (config.run_dir) return config.run_dir;
  const d = new Date(clock.now());
  const p = (n: number) => String(n).padStart(2, '0');
  return join(
    config.default_root_dir,
    `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`,
    `${p(d.getHours())}-${p(d.getMinutes())}-${p(d.getSeconds())}`,
  );
}

/**
 * The absolute run dir of `config`: `run_dir` resolved against `root` when given (it may exist: a
 * command checks what it holds before writing there), else the timestamped default of
 * {@link resolveRunDir}, with `-2`, `-3`… appended while a dir of that name exists, so a run started
 * in the same second as another (or as a dir left there) never shares its dir.
 */
export function runDirPath(
  config: Pick<TrainerConfig, 'run_dir' | 'default_root_dir'>,
  root: string,
  clock: Clock = Date,
): string {
  const dir = resolve(root, resolveRunDir(config, clock));
  if (config.run_dir || !existsSync(dir)) return dir;
  for (let n = 2; ; n++) if (!existsSync(`${dir}-${n}`)) return `${dir}-${n}`;
}
