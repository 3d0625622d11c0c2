/**
 * A toy regression problem for Trainer tests (and other packages' tests): y = x·w* + b* + noise
 * on seeded synthetic data, a linear model or a small MLP with dropout, and recording doubles
 * for Output, MetricsLogger and Callback.
 */
import * as tf from '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import type {
  Callback,
  DataLoaderOptions,
  DataModule,
  LRScheduler,
  MetricsLogger,
  NamedVariables,
  OptimizerSetup,
  Split,
  Stage,
  StepContext,
  Task,
  TrainerView,
  WeightedLoss,
} from '../../src/contracts.js';
import { Adam, Sgd, warmupCosineSchedule } from '../../src/optim/index.js';
import type { Output, ProgressHandle } from '../../src/services/tokens.js';

export interface ToyBatch {
  x: Float32Array;
  y: Float32Array;
  size: number;
}

export interface ToyDataOptions {
  nTrain?: number;
  nVal?: number;
  nTest?: number;
  batchSize?: number;
  inputDim?: number;
  /** Seeds the synthetic data itself (the trainer's seed only drives shuffling). */
  dataSeed?: number;
  noise?: number;
  /** Leave out the validation split. */
  noVal?: boolean;
}

const TRUE_W = [1.5, -2, 0.5, 1, -0.5, 0.25, 2, -1];

export class ToyDataModule implements DataModule<ToyBatch> {
  readonly options: Required<ToyDataOptions>;
  readonly calls: string[] = [];
  private splits: Partial<Record<Split, { x: Float32Array; y: Float32Array; n: number }>> = {};
  valDataloader?: (options: DataLoaderOptions) => AsyncIterable<ToyBatch>;

  constructor(options: ToyDataOptions = {}) {
    this.options = {
      nTrain: 32,
      nVal: 16,
      nTest: 16,
      batchSize: 4,
      inputDim: 3,
      dataSeed: 0,
      noise: 0.05,
      noVal: false,
      ...options,
    };
    if (!this.options.noVal) this.valDataloader = (o) => this.loader('val', o, false);
  }

  get modelDataArgs() {
    return { inputDim: this.options.inputDim };
  }

  async prepareData(): Promise<void> {
    this.calls.push('prepareData');
  }

  async setup(stage: Stage): Promise<void> {
    this.calls.push(`setup:${stage}`);
    const { nTrain, nVal, nTest, dataSeed } = this.options;
    const make = (n: number, salt: string) => this.generate(n, seedrandom(`${dataSeed}/${salt}`));
    this.splits = {
      train: make(nTrain, 'train'),
      val: make(nVal, 'val'),
      test: make(nTest, 'test'),
      predict: make(nTest, 'test'),
    };
  }

  async teardown(): Promise<void> {
    this.calls.push('teardown');
  }

  trainDataloader(options: DataLoaderOptions): AsyncIterable<ToyBatch> {
    return this.loader('train', options, true);
  }

  testDataloader(options: DataLoaderOptions): AsyncIterable<ToyBatch> {
    return this.loader('test', options, false);
  }

  predictDataloader(options: DataLoaderOptions): AsyncIterable<ToyBatch> {
    return this.loader('predict', options, false);
  }

  numBatches(split: Split): number | undefined {
    const n = {
      train: this.options.nTrain,
      val: this.options.nVal,
      test: this.options.nTest,
      predict: this.options.nTest,
    }[split];
    return Math.ceil(n / this.options.batchSize);
  }

  private generate(n: number, rng: () => number) {
    const d = this.options.inputDim;
    const x = new Float32Array(n * d);
    const y = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let target = 0.3 + this.options.noise * (rng() * 2 - 1);
      for (let j = 0; j < d; j++) {
        x[i * d + j] = rng() * 2 - 1;
        target += x[i * d + j]! * TRUE_W[j % TRUE_W.length]!;
      }
      y[i] = target;
    }
    return { x, y, n };
  }

  private async *loader(split: Split, options: DataLoaderOptions, shuffle: boolean): AsyncGenerator<ToyBatch> {
    const data = this.splits[split];
    if (!data) throw new Error(`ToyDataModule: setup() was not called before the ${split} dataloader`);
    const order = Array.from({ length: data.n }, (_, i) => i);
    if (shuffle) {
      // Example-level permutation from (seed, epoch) only, so batch size and startBatch do not change it.
      const rng = seedrandom(`${options.seed}/${options.epoch}`);
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rng() * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
    }
    const { batchSize, inputDim: d } = this.options;
    for (let start = (options.startBatch ?? 0) * batchSize; start < data.n; start += batchSize) {
      const idx = order.slice(start, start + batchSize);
      const x = new Float32Array(idx.length * d);
      const y = new Float32Array(idx.length);
      idx.forEach((src, k) => {
        x.set(data.x.subarray(src * d, src * d + d), k * d);
        y[k] = data.y[src]!;
      });
      yield { x, y, size: idx.length };
    }
  }
}

export interface ToyTaskOptions {
  inputDim?: number;
  /** Hidden units of a one-layer MLP with dropout; 0 = linear regression. */
  hidden?: number;
  dropout?: number;
  lr?: number;
  optimizer?: 'sgd' | 'adam';
  /** A scheduler, or 'warmup_cosine' (2 warmup steps over the planned total). */
  scheduler?: LRScheduler | 'warmup_cosine';
  initSeed?: number;
  /** Return a NaN loss at this global step. */
  nanAtStep?: number;
  /** trainingStep throws at this global step (injected worker failure in DDP tests). */
  throwAtStep?: number;
  /** testStep throws at this test batch index (injected worker failure in DDP tests). */
  throwAtTestBatch?: number;
  /** trainingStep ends its thread (`process.exit(3)`, in a worker) at this global step. */
  exitAtStep?: number;
  /** trainingStep never returns (an endless loop) at this global step (injected hang in DDP tests). */
  hangAtStep?: number;
  /** trainingStep fills the JS heap until the isolate runs out of memory at this global step. */
  oomAtStep?: number;
  /**
   * Test state without the ddp merge hooks (`exportTestState`/`mergeTestState` left out), so
   * test under ddp falls back to rank 0.
   */
  noTestSync?: boolean;
  /** stateDict() throws (to break checkpoint writes midway). */
  failStateDict?: boolean;
  /** Validation logs `score` from this list, one value per validation epoch (for checkpoint/early-stopping tests). */
  valScores?: number[];
  /**
   * trainingStep returns `{ loss, weight }`: a mean squared error over weighted units, each sample
   * counting 1–4 units by its target (as a sequence counts its real tokens), weight = their sum.
   */
  weightedLoss?: boolean;
}

/** The units a sample counts for under `weightedLoss`: 1–4, from its target, so any batching agrees. */
export function toyUnits(y: number): number {
  return 1 + (Math.floor(Math.abs(y) * 10) % 4);
}

let instances = 0;

export class ToyTask implements Task<ToyBatch> {
  readonly options: Required<
    Omit<
      ToyTaskOptions,
      | 'scheduler'
      | 'nanAtStep'
      | 'valScores'
      | 'throwAtStep'
      | 'exitAtStep'
      | 'hangAtStep'
      | 'oomAtStep'
      | 'noTestSync'
      | 'throwAtTestBatch'
      | 'weightedLoss'
    >
  > &
    ToyTaskOptions;
  readonly variables: NamedVariables;
  /** Task state that must survive checkpoints. */
  label = 'toy';
  totalSteps: number | undefined;
  validationCalls = 0;
  /** Samples this replica validated (a DDP rank 0 sees only its shards). */
  validationSamples = 0;
  testCalls = 0;
  /**
   * Test batches and samples since the last test epoch end, and the sign confusion
   * [true sign][predicted sign] (0: < 0, 1: >= 0).
   */
  private testState = {
    batches: 0,
    samples: 0,
    signs: [
      [0, 0],
      [0, 0],
    ],
  };
  private validationsSeen = new Set<string>();

  constructor(options: ToyTaskOptions = {}) {
    this.options = {
      inputDim: 3,
      hidden: 0,
      dropout: 0,
      lr: 0.1,
      optimizer: 'sgd',
      initSeed: 1,
      failStateDict: false,
      ...options,
    };
    if (options.noTestSync) {
      this.exportTestState = undefined;
      this.mergeTestState = undefined;
    }
    const { inputDim: d, hidden: h, initSeed: s } = this.options;
    const id = `toy${instances++}`;
    const init = (shape: number[], seed: number) => tf.tidy(() => tf.randomNormal(shape, 0, 0.5, 'float32', seed));
    this.variables =
      h > 0
        ? {
            'hidden/kernel': tf.variable(init([d, h], s), true, `${id}/hidden/kernel`),
            'hidden/bias': tf.variable(tf.zeros([h]), true, `${id}/hidden/bias`),
            'out/kernel': tf.variable(init([h, 1], s + 1), true, `${id}/out/kernel`),
            'out/bias': tf.variable(tf.zeros([1]), true, `${id}/out/bias`),
          }
        : {
            'out/kernel': tf.variable(init([d, 1], s), true, `${id}/out/kernel`),
            'out/bias': tf.variable(tf.zeros([1]), true, `${id}/out/bias`),
          };
  }

  namedVariables(): NamedVariables {
    return this.variables;
  }

  forward(batch: ToyBatch, ctx: StepContext): tf.Tensor1D {
    const v = this.variables;
    let x: tf.Tensor2D = tf.tensor2d(batch.x, [batch.size, this.options.inputDim]);
    if (this.options.hidden > 0) {
      x = tf.relu(tf.add(tf.matMul(x, v['hidden/kernel']! as tf.Tensor2D), v['hidden/bias']!));
      if (ctx.training && this.options.dropout > 0)
        x = tf.dropout(x, this.options.dropout, undefined, ctx.seed) as tf.Tensor2D;
    }
    return tf.add(tf.matMul(x, v['out/kernel']! as tf.Tensor2D), v['out/bias']!).reshape([batch.size]);
  }

  private mse(batch: ToyBatch, ctx: StepContext): tf.Scalar {
    return tf.losses.meanSquaredError(tf.tensor1d(batch.y), this.forward(batch, ctx)) as tf.Scalar;
  }

  trainingStep(batch: ToyBatch, ctx: StepContext): tf.Scalar | WeightedLoss {
    if (ctx.globalStep === this.options.throwAtStep) throw new Error(`injected failure at step ${ctx.globalStep}`);
    if (ctx.globalStep === this.options.exitAtStep) process.exit(3);
    if (ctx.globalStep === this.options.hangAtStep) for (;;);
    if (ctx.globalStep === this.options.oomAtStep) {
      const hog: number[][] = [];
      for (;;) hog.push(Array.from({ length: 1 << 20 }, (_, i) => i + hog.length));
    }
    if (this.options.weightedLoss) {
      const units = Array.from(batch.y, toyUnits);
      const weight = units.reduce((a, b) => a + b, 0);
      const error = tf.squaredDifference(tf.tensor1d(batch.y), this.forward(batch, ctx));
      const loss = tf.div(tf.sum(tf.mul(error, tf.tensor1d(units))), weight) as tf.Scalar;
      ctx.log('train_mse', loss, { weight });
      return { loss, weight };
    }
    const loss = this.mse(batch, ctx);
    ctx.log('train_mse', loss, { weight: batch.size });
    return ctx.globalStep === this.options.nanAtStep ? (tf.mul(loss, Number.NaN) as tf.Scalar) : loss;
  }

  validationStep(batch: ToyBatch, ctx: StepContext): void {
    this.validationCalls += 1;
    this.validationSamples += batch.size;
    ctx.log('val_loss', this.mse(batch, ctx), { weight: batch.size });
    const scores = this.options.valScores;
    if (scores) {
      // One scripted value per validation pass, keyed by where the pass happens.
      this.validationsSeen.add(`${ctx.globalStep}/${ctx.epoch}`);
      ctx.log('score', scores[Math.min(this.validationsSeen.size, scores.length) - 1]!);
    }
  }

  testStep(batch: ToyBatch, ctx: StepContext): void {
    if (ctx.batchIdx === this.options.throwAtTestBatch)
      throw new Error(`injected test failure at batch ${ctx.batchIdx}`);
    this.testCalls += 1;
    const prediction = this.forward(batch, ctx);
    ctx.log('test_loss', tf.losses.meanSquaredError(tf.tensor1d(batch.y), prediction), { weight: batch.size });
    const predicted = prediction.dataSync();
    this.testState.batches += 1;
    this.testState.samples += batch.size;
    for (let i = 0; i < batch.size; i++)
      this.testState.signs[batch.y[i]! >= 0 ? 1 : 0]![predicted[i]! >= 0 ? 1 : 0]! += 1;
  }

  predictStep(batch: ToyBatch, ctx: StepContext): tf.Tensor1D {
    return this.forward(batch, ctx);
  }

  configureOptimizers({ totalSteps }: { totalSteps: number }): OptimizerSetup {
    this.totalSteps = totalSteps;
    const optimizer =
      this.options.optimizer === 'adam'
        ? new Adam(this.variables, { lr: this.options.lr, weightDecay: 0.01, decoupledWeightDecay: true })
        : new Sgd(this.variables, { lr: this.options.lr, momentum: 0.9 });
    const { scheduler, lr } = this.options;
    if (scheduler === 'warmup_cosine')
      return { optimizer, scheduler: warmupCosineSchedule({ baseLr: lr, totalSteps, warmupSteps: 2 }) };
    return scheduler ? { optimizer, scheduler } : { optimizer };
  }

  stateDict(): Record<string, unknown> {
    if (this.options.failStateDict) throw new Error('stateDict exploded');
    return { label: this.label };
  }

  loadStateDict(state: Record<string, unknown>): void {
    this.label = String(state['label']);
  }

  /**
   * `test_batches`: testStep calls of this replica over its life; `test_epoch`: the epoch's
   * batches, samples and sign confusion, over every ddp device when the hooks below merge them.
   */
  onTestEpochEnd(): Record<string, unknown> {
    const epoch = this.testState;
    this.resetTestState();
    return { test_batches: this.testCalls, test_epoch: epoch };
  }

  exportTestState?(): unknown {
    const state = this.testState;
    this.resetTestState();
    return state;
  }

  mergeTestState?(state: unknown): void {
    const other = state as ToyTask['testState'];
    this.testState.batches += other.batches;
    this.testState.samples += other.samples;
    other.signs.forEach((row, t) => row.forEach((n, p) => (this.testState.signs[t]![p]! += n)));
  }

  private resetTestState(): void {
    this.testState = {
      batches: 0,
      samples: 0,
      signs: [
        [0, 0],
        [0, 0],
      ],
    };
  }

  dispose(): void {
    tf.dispose(Object.values(this.variables));
  }

  /** Weights as plain arrays, for exact comparisons. */
  snapshot(): Record<string, number[]> {
    return Object.fromEntries(Object.entries(this.variables).map(([n, v]) => [n, Array.from(v.dataSync())]));
  }
}

export class RecordingOutput implements Output {
  readonly lines: string[] = [];
  readonly warnings: string[] = [];
  readonly progressBars: Array<{
    label: string;
    total?: number;
    rateFromFirstUpdate?: boolean;
    updates: Array<{ current: number; fields?: Record<string, string | number> }>;
    stopped: boolean;
  }> = [];

  info(message: string): void {
    this.lines.push(message);
  }

  warn(message: string): void {
    this.warnings.push(message);
  }

  progress(options: { label: string; total?: number; rateFromFirstUpdate?: boolean }): ProgressHandle {
    const bar = {
      label: options.label,
      ...(options.total === undefined ? {} : { total: options.total }),
      ...(options.rateFromFirstUpdate === undefined ? {} : { rateFromFirstUpdate: options.rateFromFirstUpdate }),
      updates: [] as Array<{ current: number; fields?: Record<string, string | number> }>,
      stopped: false,
    };
    this.progressBars.push(bar);
    return {
      update: (current, fields) => bar.updates.push(fields ? { current, fields } : { current }),
      setTotal: (total) => {
        bar.total = total;
      },
      stop: () => {
        bar.stopped = true;
      },
    };
  }
}

export class RecordingLogger implements MetricsLogger {
  readonly name = 'recording';
  readonly metrics: Array<{ step: number; metrics: Record<string, number> }> = [];
  hyperparams: Record<string, unknown> | undefined;
  finalized: string[] = [];

  logHyperparams(config: Record<string, unknown>): void {
    this.hyperparams = config;
  }

  logMetrics(metrics: Record<string, number>, step: number): void {
    this.metrics.push({ step, metrics: { ...metrics } });
  }

  finalize(status: 'success' | 'failed' | 'interrupted'): void {
    this.finalized.push(status);
  }

  /** Every logged value of `name`, with its step. */
  series(name: string): Array<[number, number]> {
    return this.metrics.filter((m) => name in m.metrics).map((m) => [m.step, m.metrics[name]!]);
  }
}

type HookName = Exclude<keyof Callback, 'name' | 'stateDict' | 'loadStateDict'>;
const HOOKS: HookName[] = [
  'onFitStart',
  'onTrainEpochStart',
  'onTrainBatchEnd',
  'onTrainEpochEnd',
  'onValidationStart',
  'onValidationEnd',
  'onFitEnd',
  'onTestEnd',
  'onException',
];

/** Records every hook as `name@step`; `on` adds behaviour to a hook (e.g. emit a signal). */
export class RecordingCallback implements Callback {
  readonly name = 'recording';
  readonly events: string[] = [];

  constructor(on: Partial<Record<HookName, (trainer: TrainerView, ...args: unknown[]) => void | Promise<void>>> = {}) {
    for (const hook of HOOKS) {
      (this as Record<string, unknown>)[hook] = async (trainer: TrainerView, ...args: unknown[]) => {
        this.events.push(`${hook}@${trainer.globalStep}`);
        await on[hook]?.(trainer, ...args);
      };
    }
  }

  /** Hook names only, in order. */
  hooks(): string[] {
    return this.events.map((e) => e.split('@')[0]!);
  }
}
