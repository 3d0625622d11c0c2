import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { TrainerView } from '../contracts.js';
import { ConfigError } from '../errors.js';
import type { Output } from '../services/tokens.js';
import { checkpointName } from '../trainer/checkpoint.js';
import type { CheckpointingCallback } from '../trainer/trainer.js';
import { availableMetrics, minModeWarning, suggestMetric } from './metrics.js';

export const modelCheckpointSchema = z.strictObject({
  /** Default `<runDir>/checkpoints`. */
  dirpath: z.string().min(1).nullable().default(null),
  /**
   * Metric to rank checkpoints by; null ranks by recency (keeps the latest `save_top_k`). Until it
   * has been logged, saves only update `last` (with a warning); a name no step or validation
   * logs is a config error (exit 2) once both have run.
   */
  monitor: z.string().min(1).nullable().default(null),
  mode: z.enum(['min', 'max']).default('min'),
  /** -1 keeps every checkpoint, 0 none (only `last`). */
  save_top_k: z.number().int().min(-1).default(1),
  save_last: z.boolean().default(true),
  /** Save every N optimizer steps; when set, epoch-based saving is off unless every_n_epochs is also set. */
  every_n_train_steps: z.number().int().min(1).nullable().default(null),
  every_n_epochs: z.number().int().min(1).nullable().default(null),
});
export type ModelCheckpointOptions = z.input<typeof modelCheckpointSchema>;

interface Saved {
  path: string;
  step: number;
  score: number | null;
}

/**
 * Saves checkpoints named `step=NNNNNN` by step and/or epoch schedule, keeps the `save_top_k`
 * best by `monitor` (or the latest, without one), deletes those that fall out, and keeps `last`
 * up to date. Epoch-based saving happens after each validation of a qualifying epoch, or at the
 * epoch end when that epoch had no validation.
 *
 * A `monitor` with no value yet (e.g. `val/loss` before the first validation) does not lose work,
 * as in Lightning: the save warns once and still writes `last`; top-k starts once the metric
 * exists. A `monitor` that can never appear (a typo such as `val/los`) is known as soon as a
 * training step and a validation (or the sanity check) have both logged their metrics without
 * it: `last` is saved, then a ConfigError (exit 2) names the key and suggests the closest metric.
 */
export class ModelCheckpoint implements CheckpointingCallback {
  readonly name = 'model_checkpoint';
  readonly options: z.output<typeof modelCheckpointSchema>;
  private saved: Saved[] = [];
  private lastPath: string | undefined;
  private lastSavedStep = -1;
  private validatedThisEpoch = false;
  private dir: string | undefined;
  /** Every metric name logged so far in this fit (training steps, validations, the sanity check). */
  private readonly seen = new Set<string>();
  private seenTrainStep = false;
  private seenValidation = false;
  private warnedMissing = false;
  private warnedNonFinite = false;

  /** `output` receives the "monitor not logged yet" warning (stderr when omitted). */
  constructor(
    options: ModelCheckpointOptions = {},
    private readonly output?: Pick<Output, 'warn'>,
  ) {
    this.options = modelCheckpointSchema.parse(options);
  }

  get monitor(): string | null {
    return this.options.monitor;
  }

  get mode(): 'min' | 'max' {
    return this.options.mode;
  }

  get bestModelPath(): string | undefined {
    return this.ranked()[0]?.path;
  }

  /** The monitored value of `bestModelPath`; null when it was NaN or infinite, undefined without one. */
  get bestModelScore(): number | null | undefined {
    const best = this.ranked()[0];
    return best === undefined || this.options.monitor === null ? undefined : best.score;
  }

  get lastModelPath(): string | undefined {
    return this.lastPath;
  }

  /** Where `last` is written: known before the fit when `dirpath` is set, else once it has started. */
  get lastCheckpointTarget(): string | undefined {
    const dir = this.dir ?? this.options.dirpath;
    return dir === null || dir === undefined ? undefined : join(dir, 'last');
  }

  /** Checkpoints currently kept, best first. */
  get kept(): readonly string[] {
    return this.ranked().map((s) => s.path);
  }

  /**
   * @throws ConfigError (exit 2) when the monitor names a validation metric (`val/…`, `val_…`) and
   * this fit does not validate: known before the first step, so nothing is trained or written.
   */
  onFitStart(trainer: TrainerView): void {
    const { monitor } = this.options;
    if (monitor !== null && trainer.validates === false && /^val(idation)?[/_.]/i.test(monitor)) {
      throw new ConfigError(
        [
          {
            path: 'trainer.callbacks.model_checkpoint.monitor',
            message:
              `'${monitor}' is a validation metric, but this run does not validate (no val batches, ` +
              'trainer.limit_val_batches=0 or a task without validationStep), so it is never logged; monitor a ' +
              'training metric, set trainer.callbacks.model_checkpoint.monitor=null to keep the newest, or turn ' +
              'validation on',
            value: monitor,
          },
        ],
        'Invalid checkpoint monitor',
      );
    }
    const modeWarning = minModeWarning('trainer.callbacks.model_checkpoint', monitor, this.options.mode);
    if (modeWarning) this.warn(modeWarning);
    this.dir = this.options.dirpath ?? join(trainer.runDir, 'checkpoints');
    this.seen.clear();
    this.seenTrainStep = false;
    this.seenValidation = false;
    this.warnedMissing = false;
  }

  async onSanityCheckEnd(trainer: TrainerView, metrics: Record<string, number>): Promise<void> {
    for (const name of Object.keys(metrics)) this.seen.add(name);
    this.seenValidation = true;
    await this.checkMonitor(trainer);
  }

  onTrainEpochStart(): void {
    this.validatedThisEpoch = false;
  }

  async onTrainBatchEnd(trainer: TrainerView): Promise<void> {
    this.seenTrainStep = true;
    await this.checkMonitor(trainer);
    const n = this.options.every_n_train_steps;
    if (n !== null && trainer.globalStep % n === 0) await this.save(trainer);
  }

  async onValidationEnd(trainer: TrainerView): Promise<void> {
    this.validatedThisEpoch = true;
    this.seenValidation = true;
    await this.checkMonitor(trainer);
    if (this.epochDue(trainer)) await this.save(trainer);
  }

  async onTrainEpochEnd(trainer: TrainerView): Promise<void> {
    if (!this.validatedThisEpoch && this.epochDue(trainer)) await this.save(trainer);
  }

  async onFitEnd(trainer: TrainerView): Promise<void> {
    // The final weights always end up in `last`, whatever the schedule.
    if (this.options.save_last && !trainer.dryRun && this.lastSavedStep !== trainer.globalStep) {
      await this.saveLastCheckpoint(trainer);
    }
  }

  async saveLastCheckpoint(trainer: TrainerView): Promise<string> {
    const path = join(this.dir ?? join(trainer.runDir, 'checkpoints'), 'last');
    this.lastPath = path;
    this.lastSavedStep = trainer.globalStep;
    return trainer.saveCheckpoint(path);
  }

  stateDict(): Record<string, unknown> {
    return {
      saved: this.saved,
      lastPath: this.lastPath ?? null,
      lastSavedStep: this.lastSavedStep,
      monitor: this.options.monitor,
      mode: this.options.mode,
    };
  }

  /**
   * Restores the kept checkpoints and `last`. Checkpoints ranked by another monitor or mode than
   * this run's (a resume that did not repeat the monitor override) are not adopted: ranked anew,
   * they could be evicted, and the best of the earlier ranking deleted. They stay on disk,
   * untouched, with a warning naming them and the override that ranks them again (as Lightning
   * keys a ModelCheckpoint's state by its monitor and mode).
   */
  loadStateDict(state: Record<string, unknown>): void {
    const saved = (state['saved'] as Saved[] | undefined) ?? [];
    const monitor = state['monitor'] as string | null | undefined;
    const mode = (state['mode'] as 'min' | 'max' | undefined) ?? 'min';
    const sameRanking =
      monitor === undefined || (monitor === this.options.monitor && (monitor === null || mode === this.options.mode));
    this.saved = sameRanking ? saved : [];
    if (!sameRanking && saved.length > 0) {
      const was = monitor === null ? 'by recency (no monitor)' : `by ${monitor} (mode=${mode})`;
      const now =
        this.options.monitor === null
          ? 'by recency (no monitor)'
          : `by ${this.options.monitor} (mode=${this.options.mode})`;
      const restore =
        monitor === null
          ? 'trainer.callbacks.model_checkpoint.monitor=null'
          : `trainer.callbacks.model_checkpoint.monitor=${monitor} trainer.callbacks.model_checkpoint.mode=${mode}`;
      this.warn(
        `The checkpoint resumed from kept its checkpoints ranked ${was}; this run ranks them ${now}. ` +
          `${saved.map((s) => s.path).join(', ')} stay${saved.length === 1 ? 's' : ''} on disk, outside this run's ` +
          `ranking (never replaced or deleted by it); to go on ranking ${saved.length === 1 ? 'it' : 'them'}, ` +
          `resume with ${restore}.`,
      );
    }
    this.lastPath = (state['lastPath'] as string | null | undefined) ?? undefined;
    this.lastSavedStep = (state['lastSavedStep'] as number | undefined) ?? -1;
  }

  private epochDue(trainer: TrainerView): boolean {
    const n = this.options.every_n_epochs ?? (this.options.every_n_train_steps === null ? 1 : null);
    return n !== null && (trainer.epoch + 1) % n === 0;
  }

  private async save(trainer: TrainerView): Promise<void> {
    if (trainer.dryRun || this.lastSavedStep === trainer.globalStep) return;
    const { monitor, save_top_k: k, save_last } = this.options;
    let score: number | null = null;
    if (monitor !== null) {
      const value = trainer.callbackMetrics[monitor];
      if (value === undefined) {
        // Not logged yet (e.g. no validation so far): keep the work in `last`, rank nothing.
        if (!this.warnedMissing) {
          this.warnedMissing = true;
          this.warn(
            `trainer.callbacks.model_checkpoint.monitor is '${monitor}', ` +
              `which has not been logged yet at step ${trainer.globalStep} ` +
              `(logged so far: ${availableMetrics(trainer)}); saving only ` +
              `'last' until it is. Top-k checkpoints start once it exists.`,
          );
        }
        this.lastSavedStep = trainer.globalStep;
        if (save_last) await this.saveLastCheckpoint(trainer);
        return;
      }
      // NaN or ±Infinity ranks last, never best (Lightning ranks a non-finite value worst too).
      score = Number.isFinite(value) ? value : null;
      if (score === null && !this.warnedNonFinite) {
        this.warnedNonFinite = true;
        this.warn(
          `trainer.callbacks.model_checkpoint.monitor '${monitor}' is ${value} at step ${trainer.globalStep}: ` +
            'that checkpoint ranks below every finite value (a diverging metric, or a bad value in the validation ' +
            'data: check the logged values); warned once.',
        );
      }
    }
    const dir = this.dir ?? join(trainer.runDir, 'checkpoints');
    this.lastSavedStep = trainer.globalStep;
    if (k !== 0) {
      const entry: Saved = { path: join(dir, checkpointName(trainer.globalStep)), step: trainer.globalStep, score };
      const ranked = this.ranked([...this.saved, entry]);
      const keep = k === -1 ? ranked : ranked.slice(0, k);
      const evicted = ranked.filter((s) => !keep.includes(s));
      if (!evicted.includes(entry)) {
        // Bookkeeping first, so the checkpoint's own callback state already lists it.
        this.saved = keep;
        await trainer.saveCheckpoint(entry.path);
        await Promise.all(evicted.map((s) => rm(s.path, { recursive: true, force: true })));
      }
    }
    if (save_last) await this.saveLastCheckpoint(trainer);
  }

  /**
   * Once a training step and a validation have both logged (or a training step, in a fit that does
   * not validate), a monitor never seen can never appear:
   * save `last` (the work so far is kept), then throw a ConfigError (exit 2) with a did-you-mean.
   */
  private async checkMonitor(trainer: TrainerView): Promise<void> {
    const { monitor } = this.options;
    for (const name of Object.keys(trainer.callbackMetrics)) this.seen.add(name);
    // Without validation in this fit (trainer.validates false), a training step is all there is to see.
    const validationSeen = this.seenValidation || trainer.validates === false;
    if (monitor === null || this.seen.has(monitor) || !this.seenTrainStep || !validationSeen) return;
    if (
      this.options.save_last &&
      !trainer.dryRun &&
      trainer.globalStep > 0 &&
      this.lastSavedStep !== trainer.globalStep
    ) {
      await this.saveLastCheckpoint(trainer);
    }
    const logged = [...this.seen].sort();
    const kept = this.lastPath && !trainer.dryRun ? ` The weights so far were saved to ${this.lastPath}.` : '';
    throw new ConfigError(
      [
        {
          path: 'trainer.callbacks.model_checkpoint.monitor',
          message:
            `no training step or validation logs a metric named '${monitor}' ` +
            `(logged: ${logged.map((n) => `'${n}'`).join(', ') || 'none'}` +
            `${this.seenValidation ? '' : '; this run does not validate: no val batches, trainer.limit_val_batches=0 or no validationStep'}); ` +
            `set monitor to one of those, or log it from the task (ctx.log('${monitor}', ...)).${kept}`,
          value: monitor,
          suggestions: suggestMetric(monitor, logged),
        },
      ],
      'Invalid checkpoint monitor',
    );
  }

  private warn(message: string): void {
    if (this.output) this.output.warn(message);
    else process.stderr.write(`warning: ${message}\n`);
  }

  /** Best first: by score when monitoring (NaN last, ties oldest first), else newest first. */
  private ranked(list: Saved[] = this.saved): Saved[] {
    const sign = this.options.mode === 'min' ? 1 : -1;
    return [...list].sort((a, b) => {
      if (this.options.monitor === null) return b.step - a.step;
      // Ties keep the older checkpoint: a new one must be strictly better to displace it.
      if (a.score === null || b.score === null) return a.score === null ? (b.score === null ? a.step - b.step : 1) : -1;
      return sign * (a.score - b.score) || a.step - b.step;
    });
  }
}
