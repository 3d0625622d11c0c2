/**
 * Data-parallel training over Node worker threads (`trainer.strategy=ddp`, or `auto` on a CPU
 * backend). See strategy.ts for the shape; here the details:
 *
 * - Why worker threads, not child processes: one process (one PID to signal, nothing left behind
 *   when it exits, since threads die with it), shards and gradients move as transferable
 *   ArrayBuffers (no copy, no serialisation), and each thread still has its own V8 isolate, hence
 *   its own TF.js engine and its own wasm instance, so the backends never share state.
 * - Rank 0 is the main thread: it reads the data, splits each micro-batch along dim 0 into
 *   N shards whose sizes differ by at most 1, posts shards 1..N-1 (with the current weights when
 *   they changed) and computes shard 0 itself, then averages loss, logged values and gradients
 *   weighted by the shards' sample counts. Because a task's loss is a mean over its batch, the
 *   weighted mean of shard gradients is the gradient of the whole batch: devices=N does the math of
 *   devices=1 up to float rounding. Shard r > 0 gets step seed `mixSeed(seed, r)` (rank 0 keeps
 *   the single-device seed), so dropout differs per shard but is reproducible for the same N.
 * - Weights: only rank 0 has an optimizer. After each update the new weights go to every worker
 *   with its next shard (broadcast, not a second optimizer per replica), so replicas cannot drift
 *   and checkpoints (written by rank 0 alone) have exactly the single-device format.
 * - Faults: a worker that throws, exits, runs out of memory or does not answer within
 *   `trainer.ddp_timeout` seconds (then it is terminated) makes the pending step reject with a
 *   TaskforgeError (exit 1) naming the rank, the step and the cause; the 'error'/'exit' events and
 *   the timeout mean no wait is left hanging. The update of that step is never applied, so the last checkpoint
 *   stays the last good one. `teardown` terminates every worker (the Trainer calls it on every
 *   exit path; a worker keeps the process alive only while rank 0 waits on it).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker, type ResourceLimits } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import type { Accelerator } from '../../backend/accelerator.js';
import type { AcceleratorRequest, BackendSelection } from '../../backend/select.js';
import type { DataLoaderOptions, ModelDataArgs, Task } from '../../contracts.js';
import { TaskforgeError } from '../../errors.js';
import { mixSeed } from '../../seed.js';
import type { Output } from '../../services/tokens.js';
import { computeEvaluation, computeStep, type LoggedValue, type StepFields, type StepResult } from '../local-step.js';
import { SingleDeviceStrategy, type BatchParallel, type Strategy } from '../strategy.js';
import { decodeOutput } from './outputs.js';
import type { FromWorker, ReplicaSpec, ToWorker, WeightsMessage, WorkerInit } from './protocol.js';
import { copyBatch, splitBatch, transferables, type Shard } from './shards.js';

/** What `trainer.strategy` / `trainer.devices` asked for, plus what decides `auto`. */
export interface DevicesRequest {
  strategy: 'auto' | 'single' | 'ddp';
  devices: 'auto' | number;
  /** The global batch size (`dataset.batch_size`) when the config names one. */
  batchSize?: number | undefined;
  /** Cores available to this process; default `os.availableParallelism()`. */
  cores?: number;
  /**
   * True when the run only tests or predicts: those send whole batches round-robin to the devices,
   * so the batch size neither bounds nor caps `devices` (fit and validate split each batch).
   */
  wholeBatches?: boolean | undefined;
}

/** How long a worker may take, and what it may use (`DDPStrategy`'s request). */
export interface WorkerLimits {
  /**
   * Seconds a worker may take to answer one request (build its replica, or run one step) before
   * the run stops with an error naming it (`trainer.ddp_timeout`; PyTorch's process-group
   * timeout, 30 min by default, plays the same part). null = wait for ever.
   */
  timeoutS?: number | null | undefined;
  /** Node's per-worker V8 heap limits (`new Worker(..., { resourceLimits })`); default: Node's. */
  resourceLimits?: ResourceLimits | undefined;
}

/** What `resolveDevices` decided: the strategy, the number of devices (workers incl. rank 0) and why. */
export interface DevicesPlan {
  strategy: 'single' | 'ddp';
  devices: number;
  reason: string;
  /** Set when the plan runs more devices than cores (each worker thread then shares a core). */
  warning?: string;
}

/** Backends DDP runs on: each worker gets its own instance of them. */
const DDP_BACKENDS = new Set(['wasm', 'cpu']);

/**
 * Decides the strategy and device count from the request and the backend rank 0 got:
 * `auto` means ddp with one device per core (capped at the batch size) on wasm/cpu when the batch
 * splits into >= 2 shards of >= 1 sample, else single. Throws TaskforgeError (exit 2) naming the
 * key, value and fix for devices > batch size (not with `wholeBatches`), devices > 1 with
 * strategy=single, and ddp on a backend other than wasm/cpu. More devices than cores is allowed,
 * with a `warning` in the plan (printed by `DDPStrategy.setup`).
 */
export function resolveDevices(request: DevicesRequest, backend: string): DevicesPlan {
  const plan = planDevices(request, backend);
  const cores = request.cores ?? availableParallelism();
  if (plan.strategy === 'ddp' && plan.devices > cores) {
    plan.warning =
      `trainer.devices=${plan.devices} is more than the ${cores} core${cores === 1 ? '' : 's'} available: ` +
      'the worker threads share cores, so a step is likely slower than with fewer devices ' +
      `(set trainer.devices to at most ${cores}, or auto)`;
  }
  return plan;
}

function planDevices(request: DevicesRequest, backend: string): DevicesPlan {
  const cores = request.cores ?? availableParallelism();
  const batchSize = request.wholeBatches ? undefined : request.batchSize;
  const batchNote = batchSize === undefined ? '' : `, batch of ${batchSize}`;
  if (typeof request.devices === 'number' && batchSize !== undefined && request.devices > batchSize) {
    throw new TaskforgeError(
      `trainer.devices=${request.devices} is more than the batch size (dataset.batch_size=${batchSize}): ` +
        'each device needs at least one sample of every batch. ' +
        `Set trainer.devices to at most ${batchSize} (or auto), or raise dataset.batch_size.`,
      { exitCode: 2, settings: { 'trainer.devices': request.devices, 'dataset.batch_size': batchSize } },
    );
  }
  if (request.strategy === 'single') {
    if (typeof request.devices === 'number' && request.devices > 1) {
      throw new TaskforgeError(
        `trainer.devices=${request.devices} needs trainer.strategy=ddp (or auto), ` +
          'but trainer.strategy=single runs on one device. ' +
          'Set trainer.strategy=ddp, or trainer.devices=1.',
        { exitCode: 2, settings: { 'trainer.devices': request.devices, 'trainer.strategy': request.strategy } },
      );
    }
    return { strategy: 'single', devices: 1, reason: 'trainer.strategy=single' };
  }
  if (request.strategy === 'ddp') {
    if (!DDP_BACKENDS.has(backend)) {
      throw new TaskforgeError(
        'trainer.strategy=ddp runs on the wasm or cpu backend (one instance per worker thread), ' +
          `but the ${backend} backend was selected. ` +
          'Set trainer.accelerator=wasm (or cpu), or trainer.strategy=single (or auto) to train on this backend.',
        { exitCode: 2, settings: { 'trainer.strategy': request.strategy } },
      );
    }
    const devices = request.devices === 'auto' ? Math.max(1, Math.min(cores, batchSize ?? cores)) : request.devices;
    if (devices < 2) {
      const why = request.devices === 'auto' ? `${cores} core, batch of ${batchSize ?? '?'}` : 'trainer.devices=1';
      return {
        strategy: 'single',
        devices: 1,
        reason: `trainer.strategy=ddp with one device (${why}): nothing to split`,
      };
    }
    return {
      strategy: 'ddp',
      devices,
      reason:
        request.devices === 'auto'
          ? `trainer.devices=auto: ${cores} core${cores === 1 ? '' : 's'}${batchNote}`
          : `trainer.devices=${devices}`,
    };
  }
  // auto
  if (!DDP_BACKENDS.has(backend)) {
    return { strategy: 'single', devices: 1, reason: `auto: the ${backend} backend runs one device per process` };
  }
  const wanted = request.devices === 'auto' ? cores : request.devices;
  const devices = Math.max(1, Math.min(wanted, batchSize ?? wanted));
  if (devices < 2) {
    const why = wanted < 2 ? `${wanted === cores ? `${cores} core` : 'trainer.devices=1'}` : `batch of ${batchSize}`;
    return { strategy: 'single', devices: 1, reason: `auto: ${backend} backend, ${why}, nothing to split` };
  }
  const sizes = batchSize === undefined ? '' : `, batch of ${batchSize} in shards of ${shardSizes(batchSize, devices)}`;
  return {
    strategy: 'ddp',
    devices,
    reason:
      `auto: ${backend} backend, ${request.devices === 'auto' ? `${cores} cores` : `trainer.devices=${devices}`}` +
      sizes,
  };
}

function shardSizes(n: number, parts: number): string {
  const base = Math.floor(n / parts);
  return n % parts === 0 ? `${base}` : `${base}-${base + 1}`;
}

const STEP_NAMES = {
  trainingStep: 'training',
  validationStep: 'validation',
  testStep: 'test',
  predictStep: 'predict',
} as const;

interface Pending {
  resolve: (value: Extract<FromWorker, { type: 'result' }>) => void;
  reject: (error: Error) => void;
}

/** One worker thread and the requests it has not answered yet. */
class Replica {
  readonly worker: Worker;
  readonly pending = new Map<number, Pending>();
  /** Why this worker can no longer serve (set once, on its first failure). */
  failure: string | undefined;
  private readyWait: { resolve: () => void; reject: (e: Error) => void } | undefined;
  readonly ready: Promise<void>;
  terminating = false;
  /** Runs while rank 0 waits on this worker (building, or a request); see `WorkerLimits.timeoutS`. */
  private watchdog: NodeJS.Timeout | undefined;
  /** The global step at which this worker last got the weights (see `DDPStrategy.weightsFor`). */
  weightsStep: number | undefined;
  /** The backend a tf.setBackend call moved this worker to while it built its replica (it moved back). */
  backendSwitchedTo: string | undefined;

  constructor(
    readonly rank: number,
    init: WorkerInit,
    private readonly limits: WorkerLimits = {},
  ) {
    this.ready = new Promise<void>((resolve, reject) => (this.readyWait = { resolve, reject }));
    this.ready.catch(() => undefined);
    this.worker = spawnWorker(init, limits.resourceLimits);
    this.arm('build its replica');
    // Referenced (keeps the process alive) only while rank 0 waits on it: until it is ready and
    // while a request is pending; idle, it never holds the process open.
    this.ready.then(
      () => this.settle(),
      () => undefined,
    );
    this.worker.on('message', (message: FromWorker) => this.onMessage(message));
    this.worker.on('error', (error: Error & { code?: string }) => {
      const oom = error.code === 'ERR_WORKER_OUT_OF_MEMORY';
      this.fail(oom ? `it ran out of memory (${error.message})` : `it threw: ${error.message}`);
    });
    this.worker.on('exit', (code) => {
      if (!this.terminating) this.fail(`its thread exited unexpectedly (exit code ${code})`);
    });
  }

  private onMessage(message: FromWorker): void {
    if (message.type === 'ready') {
      this.backendSwitchedTo = message.backendSwitchedTo;
      this.disarm();
      this.readyWait?.resolve();
      return;
    }
    if (message.type === 'error' && message.id === undefined) {
      this.fail(`it failed while building its replica: ${message.message}`);
      return;
    }
    const pending = this.pending.get(message.id!);
    if (!pending) return;
    this.pending.delete(message.id!);
    this.disarm();
    if (this.pending.size > 0) this.arm('answer');
    this.settle();
    if (message.type === 'result') pending.resolve(message);
    else {
      const what = message.method === 'exportTestState' ? 'exportTestState' : `${STEP_NAMES[message.method!]} step`;
      pending.reject(new Error(`its ${what} threw: ${message.message}`));
    }
  }

  /** Lets the process exit while this worker has nothing rank 0 waits for. */
  private settle(): void {
    if (this.pending.size === 0) {
      this.disarm();
      this.worker.unref();
    }
  }

  /**
   * Starts the timeout for what rank 0 now waits on (`what`: build its replica, or answer), unless
   * one runs: requests are answered in order, so it runs from the oldest unanswered one and is
   * restarted by each answer. A worker that misses it is failed and terminated (`terminate`
   * interrupts even an endless JS loop).
   */
  private arm(what: string): void {
    const seconds = this.limits.timeoutS;
    if (seconds === null || seconds === undefined || this.watchdog) return;
    this.watchdog = setTimeout(() => {
      this.watchdog = undefined;
      this.fail(
        `it did not ${what} within ${seconds} s (trainer.ddp_timeout=${seconds}) and was stopped: it may be stuck ` +
          'in an endless loop or a deadlock, or a step may really take that long ' +
          '(then raise trainer.ddp_timeout, or set it to null to wait for ever)',
      );
      void this.worker.terminate();
    }, seconds * 1000);
    // The worker itself keeps the process alive while rank 0 waits; the timer must not.
    this.watchdog.unref();
  }

  private disarm(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = undefined;
  }

  fail(reason: string): void {
    if (this.failure !== undefined) return;
    this.disarm();
    this.failure = reason;
    const error = new Error(reason);
    this.readyWait?.reject(error);
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
    this.worker.unref();
  }

  request(message: ToWorker, transfer: ArrayBuffer[]): Promise<Extract<FromWorker, { type: 'result' }>> {
    if (this.failure !== undefined) return Promise.reject(new Error(this.failure));
    return new Promise((resolve, reject) => {
      // Posted first: a batch structured clone cannot copy (DataCloneError) must leave nothing pending.
      this.worker.postMessage(message, transfer);
      this.pending.set(message.id, { resolve, reject });
      this.worker.ref();
      this.arm('answer');
    });
  }

  async terminate(): Promise<void> {
    this.terminating = true;
    this.fail('it was stopped');
    await this.worker.terminate();
  }
}

/**
 * The worker entry: `worker.js` next to this file in the build. Run from TypeScript sources (the
 * tests), the worker loads them through tsx with the `@taskforge/source` condition, as vitest does.
 */
function spawnWorker(init: WorkerInit, resourceLimits: ResourceLimits | undefined): Worker {
  const here = import.meta.url;
  const limits = resourceLimits ? { resourceLimits } : {};
  if (!here.endsWith('.ts')) return new Worker(new URL('./worker.js', here), { workerData: init, ...limits });
  const require = createRequire(here);
  const tsxApi = pathToFileURL(join(dirname(require.resolve('tsx/package.json')), 'dist/esm/api/index.mjs')).href;
  const tsconfig = join(dirname(fileURLToPath(here)), '../../../tsconfig.lib.json');
  const entry = new URL('./worker.ts', here).href;
  const code =
    `const { register } = await import(${JSON.stringify(tsxApi)});\n` +
    `register(${existsSync(tsconfig) ? `{ tsconfig: ${JSON.stringify(tsconfig)} }` : ''});\n` +
    `await import(${JSON.stringify(entry)});\n`;
  return new Worker(code, { eval: true, workerData: init, execArgv: ['--conditions=@taskforge/source'], ...limits });
}

/**
 * `trainer.strategy=ddp|auto`: selects the backend like the single-device strategy, resolves the
 * device count (`resolveDevices`, printed as a `Strategy:` line after the accelerator's), and with
 * more than one device trains data-parallel over worker threads (see the file's comment). With one
 * device it is the single-device strategy. Validation during fit is sharded like training (each
 * batch split over the devices); test and predict go whole batch by whole batch round-robin to
 * the devices (`batchParallel`): per-batch outputs come back in dataset order, test state is
 * merged through the task's `exportTestState`/`mergeTestState` (or, without them, test runs on
 * rank 0 only, with a note).
 */
export class DDPStrategy implements Strategy {
  readonly isGlobalZero = true;
  private readonly single: SingleDeviceStrategy;
  private plan: DevicesPlan | undefined;
  private selection: BackendSelection | undefined;
  private modelDataArgs: ModelDataArgs | undefined;
  private replicas: Replica[] = [];
  private launching: Promise<void> | undefined;
  private nextId = 1;

  constructor(
    private readonly request: DevicesRequest &
      WorkerLimits & { accelerator: AcceleratorRequest; threads: number | null },
    accelerator: Accelerator,
    private readonly output: Output,
    private readonly replica: ReplicaSpec | undefined,
  ) {
    this.single = new SingleDeviceStrategy({ accelerator: request.accelerator, threads: request.threads }, accelerator);
  }

  get name(): string {
    return this.plan?.strategy === 'ddp' ? 'ddp' : 'single_device';
  }

  /** Devices (rank 0 plus workers) once `setup` resolved them; 1 before. */
  get worldSize(): number {
    return this.plan?.devices ?? 1;
  }

  /** Worker threads running now (0 before the first training step and after `teardown`). */
  get workerCount(): number {
    return this.replicas.length;
  }

  async setup(): Promise<BackendSelection> {
    const selection = await this.single.setup();
    if (!this.plan) {
      this.plan = resolveDevices(this.request, selection.backend);
      this.selection = selection;
      const what =
        this.plan.strategy === 'ddp' ? `ddp, ${this.plan.devices} devices (worker threads)` : 'single device';
      this.output.info(`Strategy: ${what} (${this.plan.reason})`);
      if (this.plan.warning) this.output.warn(this.plan.warning);
      if (this.plan.strategy === 'ddp' && this.plan.devices > 1 && !this.replica) {
        throw new TaskforgeError(
          'trainer.strategy=ddp needs a recipe to build the task in each worker: ' +
            'the app layer (Trainer.create) supplies one; ' +
            'a Trainer made with `new Trainer` needs `deps.replica` (see ReplicaSpec).',
          { exitCode: 2 },
        );
      }
    }
    return selection;
  }

  reduceGradients(grads: Record<string, tf.Tensor>): Record<string, tf.Tensor> {
    return grads;
  }

  loaderOptions(options: DataLoaderOptions): DataLoaderOptions {
    return options;
  }

  connect(context: { modelDataArgs: ModelDataArgs }): void {
    this.modelDataArgs = context.modelDataArgs;
  }

  /**
   * Where the last sharded training step's time went on rank 0 (ms): its own shard (`localMs`),
   * waiting for the workers after it (`waitMs`: rank 0 idle), averaging the gradients
   * (`reduceMs`), and each worker's time on its request (`workerBusyMs`, from receiving it to
   * answering) and its parts (`workerPhasesMs`, see FromWorker). Diagnostics for `npm run bench`;
   * undefined before the first sharded step.
   */
  lastStepTimings:
    | {
        localMs: number;
        waitMs: number;
        reduceMs: number;
        workerBusyMs: number[];
        workerPhasesMs: Record<string, number>[];
      }
    | undefined;

  async trainingStep(
    task: Task,
    batch: unknown,
    fields: StepFields,
    trainable: ReadonlyArray<readonly [string, tf.Variable]>,
  ): Promise<StepResult> {
    if (this.worldSize <= 1) return computeStep(task, batch, fields, trainable);
    const shards = splitBatch(batch, this.worldSize);
    if (shards.length === 1) return computeStep(task, batch, fields, trainable);
    const { local, remote, localMs, waitMs } = await this.scatter(task, 'trainingStep', shards, fields, () =>
      computeStep(task, shards[0]!.batch, fields, trainable),
    );
    const reduceStart = performance.now();
    try {
      const weightsOf = this.shardWeights(shards, [local, ...remote], fields);
      const missing = Object.keys(local.grads).flatMap((name) => {
        const rank = remote.findIndex((r) => !r.grads[name]);
        return rank === -1 ? [] : [{ name, rank: rank + 1 }];
      });
      if (missing.length > 0) {
        throw this.workerError(
          missing[0]!.rank,
          this.where(fields),
          `it sent no gradient for '${missing[0]!.name}' (its replica has different variables; ` +
            'the replica recipe must build the same task as rank 0)',
          { stepNotApplied: true },
        );
      }
      const grads = tf.tidy(() => {
        const out: Record<string, tf.Tensor> = {};
        for (const [name, g0] of Object.entries(local.grads)) {
          let sum = tf.mul(g0, weightsOf[0]!);
          remote.forEach((r, i) => {
            sum = tf.add(sum, tf.mul(tf.tensor(r.grads[name]!, g0.shape, 'float32'), weightsOf[i + 1]!));
          });
          out[name] = sum;
        }
        return out;
      });
      const loss = weightsOf[0]! * local.loss + remote.reduce((s, r, i) => s + weightsOf[i + 1]! * r.loss, 0);
      this.lastStepTimings = {
        localMs,
        waitMs,
        reduceMs: performance.now() - reduceStart,
        workerBusyMs: remote.map((r) => r.busyMs ?? Number.NaN),
        workerPhasesMs: remote.map((r) => r.phasesMs ?? {}),
      };
      return {
        loss,
        logs: mergeLogs(
          [local.logs, ...remote.map((r) => r.logs)],
          shards.map((s) => s.size),
        ),
        grads,
        ...(local.weight !== undefined ? { weight: local.weight + remote.reduce((s, r) => s + r.weight!, 0) } : {}),
      };
    } finally {
      tf.dispose(local.grads);
    }
  }

  /**
   * Each shard's share of the batch gradient: its `WeightedLoss.weight` over their sum when the
   * task returns one (a per-token mean weighs its shard by its real tokens), else its sample count
   * over the batch's. Shards that all weigh 0 add nothing (their gradients are then averaged by
   * sample count, to stay finite). A task returning a weight on some shards only is a TaskforgeError.
   */
  private shardWeights(shards: Shard[], results: Array<{ weight?: number }>, fields: StepFields): number[] {
    const weighted = results.filter((r) => r.weight !== undefined).length;
    if (weighted > 0 && weighted < results.length) {
      const rank = results.findIndex((r) => (r.weight === undefined) !== (results[0]!.weight === undefined));
      throw this.workerError(
        rank,
        this.where(fields),
        `its trainingStep returned ${results[rank]!.weight === undefined ? 'a plain loss' : '{ loss, weight }'} ` +
          `and rank 0's ${results[0]!.weight === undefined ? 'a plain loss' : '{ loss, weight }'}: return one form on every step`,
        { stepNotApplied: true },
      );
    }
    const units = weighted > 0 ? results.map((r) => r.weight!) : shards.map((s) => s.size);
    const total = units.reduce((n, u) => n + u, 0);
    if (total > 0) return units.map((u) => u / total);
    return shards.map((s) => s.size / shards.reduce((n, x) => n + x.size, 0));
  }

  /**
   * Validation sharded like training: rank 0 splits the batch, workers run `validationStep` on
   * their shards, and the logged values are merged as one batch would have logged them
   * (`mergeLogs`). Only logged values come back: state a task keeps across validation batches
   * stays per replica. Runs locally with one device or before `connect` (no data facts to build
   * workers with).
   */
  async evaluationStep(
    task: Task,
    method: 'validationStep',
    batch: unknown,
    fields: StepFields,
  ): Promise<LoggedValue[]> {
    const shards = this.worldSize > 1 && this.modelDataArgs ? splitBatch(batch, this.worldSize) : [];
    if (shards.length < 2) return computeEvaluation(task, method, batch, fields);
    const { local, remote } = await this.scatter(task, method, shards, fields, () =>
      computeEvaluation(task, method, shards[0]!.batch, fields),
    );
    return mergeLogs(
      [local, ...remote.map((r) => r.logs)],
      shards.map((s) => s.size),
    );
  }

  /**
   * Posts shards 1..N-1 to the workers (with the weights, when they changed since each last got
   * them), runs shard 0 here meanwhile, and waits for every answer. Throws `workerError` for the
   * first worker that failed (after every answer settled, so no rejection goes unobserved), or
   * what shard 0 threw.
   */
  private async scatter<Local>(
    task: Task,
    method: 'trainingStep' | 'validationStep',
    shards: Shard[],
    fields: StepFields,
    runLocal: () => Promise<Local>,
  ): Promise<{
    local: Local;
    remote: Array<Extract<FromWorker, { type: 'result' }>>;
    /** Rank 0's time on its own shard, then idle waiting for the workers (ms). */
    localMs: number;
    waitMs: number;
  }> {
    await this.launch(this.where(fields, method === 'validationStep'), method === 'trainingStep');
    const weights = this.weightsFor(task);
    const requests = shards.slice(1).map((shard, i) => {
      const rank = i + 1;
      const replica = this.replicas[i]!;
      const message: ToWorker = {
        type: 'step',
        method,
        id: this.nextId++,
        sentAt: performance.timeOrigin + performance.now(),
        batch: shard.batch,
        fields: { ...fields, seed: mixSeed(fields.seed, rank) },
        ...(replica.weightsStep === fields.globalStep ? {} : { weights: weights() }),
      };
      replica.weightsStep = fields.globalStep;
      return replica.request(message, transferables(shard.batch));
    });
    const settled = Promise.allSettled(requests);
    let local: Local;
    const localStart = performance.now();
    try {
      local = await runLocal();
    } catch (error) {
      await settled;
      throw error;
    }
    const localEnd = performance.now();
    const results = await settled;
    const waitMs = performance.now() - localEnd;
    const failed = results.findIndex((r) => r.status === 'rejected');
    if (failed !== -1) {
      if (method === 'trainingStep') tf.dispose((local as StepResult).grads);
      const rank = failed + 1;
      throw this.workerError(
        rank,
        this.where(fields, method === 'validationStep'),
        `${((results[failed] as PromiseRejectedResult).reason as Error).message} (its shard: ${shardRows(shards, rank)})`,
        { stepNotApplied: method === 'trainingStep' },
      );
    }
    return {
      local,
      remote: results.map((r) => (r as PromiseFulfilledResult<Extract<FromWorker, { type: 'result' }>>).value),
      localMs: localEnd - localStart,
      waitMs,
    };
  }

  /**
   * The weights to send, read at most once per call and only if some worker needs them: a worker
   * gets them when the global step changed since it last got them. Weights change only through
   * the optimizer update, which ends a global step, and through a restore, which happens before
   * any worker starts; the micro-batches of one step and the batches of one validation share them.
   */
  private weightsFor(task: Task): () => WeightsMessage {
    let snapshot: WeightsMessage | undefined;
    return () => (snapshot ??= snapshotWeights(task));
  }

  async batchParallel(
    task: Task,
    method: 'testStep' | 'predictStep',
    _fields: StepFields,
  ): Promise<BatchParallel | undefined> {
    if (this.worldSize <= 1 || !this.modelDataArgs) return undefined;
    if (method === 'testStep' && task.onTestEpochEnd && !(task.exportTestState && task.mergeTestState)) {
      this.output.info(
        'Test runs on rank 0 only: the task keeps state across test batches (onTestEpochEnd) but has no ' +
          'exportTestState/mergeTestState to merge it over the ddp devices (see docs/new-task.md).',
      );
      return undefined;
    }
    const during = method === 'testStep' ? 'test' : 'predict';
    await this.launch(`the start of ${during}`);
    const weights = snapshotWeights(task);
    const taskState = task.stateDict?.();
    const synced = new Set<number>();
    return {
      devices: this.worldSize,
      run: async (rank, batch, batchFields) => {
        const replica = this.replicas[rank - 1];
        if (!replica)
          throw new TaskforgeError(`DDP has no worker rank ${rank} (devices: ${this.worldSize}); this is a bug.`);
        const copy = copyBatch(batch);
        const message: ToWorker = {
          type: 'step',
          method,
          id: this.nextId++,
          batch: copy,
          fields: batchFields,
          ...(synced.has(rank) ? {} : { weights, ...(taskState ? { taskState } : {}) }),
        };
        synced.add(rank);
        try {
          const result = await replica.request(message, transferables(copy));
          return { logs: result.logs, output: method === 'predictStep' ? decodeOutput(result.output) : undefined };
        } catch (error) {
          throw this.workerError(rank, `${during} batch ${batchFields.batchIdx}`, (error as Error).message);
        }
      },
      exportTestStates: async () => {
        const requests = this.replicas.map((replica) =>
          replica.request({ type: 'exportTestState', id: this.nextId++ }, []),
        );
        const results = await Promise.allSettled(requests);
        return results.map((r, i) => {
          if (r.status === 'rejected')
            throw this.workerError(i + 1, 'the end of the test epoch', (r.reason as Error).message);
          return r.value.output;
        });
      },
    };
  }

  async teardown(): Promise<void> {
    const replicas = this.replicas;
    this.replicas = [];
    this.launching = undefined;
    await Promise.allSettled(replicas.map((r) => r.terminate()));
  }

  /** Starts workers 1..N-1 (once) and waits until each has built its replica; `where` names the step for errors. */
  private async launch(where: string, stepNotApplied = false): Promise<void> {
    this.launching ??= (async () => {
      if (!this.modelDataArgs) throw new TaskforgeError('DDPStrategy.connect() was not called before training.');
      const base = {
        worldSize: this.worldSize,
        // The kind rank 0 ended up with (not `auto` again): same backend, no second probe of the others.
        accelerator: this.selection!.accelerator,
        threads: this.request.threads,
        backend: this.selection!.backend,
        replica: this.replica!,
        modelDataArgs: this.modelDataArgs,
      };
      const limits = { timeoutS: this.request.timeoutS, resourceLimits: this.request.resourceLimits };
      for (let rank = 1; rank < this.worldSize; rank++)
        this.replicas.push(new Replica(rank, { ...base, rank }, limits));
      const ready = await Promise.allSettled(this.replicas.map((r) => r.ready));
      const failed = ready.findIndex((r) => r.status === 'rejected');
      if (failed !== -1) {
        await this.teardown();
        throw this.workerError(failed + 1, where, ((ready[failed] as PromiseRejectedResult).reason as Error).message, {
          stepNotApplied,
        });
      }
      const switched = this.replicas.find((r) => r.backendSwitchedTo !== undefined);
      if (switched) {
        this.output.warn(
          `While the DDP workers built their replicas, TF.js was switched to '${switched.backendSwitchedTo}' ` +
            `(a plugin, the task or the data module called tf.setBackend() at import or in a constructor); each ` +
            `worker moved back to '${this.selection!.backend}', the backend rank 0 runs on (trainer.accelerator). ` +
            'Remove that call and choose the backend with trainer.accelerator instead.',
        );
      }
    })();
    try {
      await this.launching;
    } catch (error) {
      this.launching = undefined;
      throw error;
    }
  }

  /**
   * The one form of a worker failure: "DDP worker rank r of N failed at <where>: <cause>." plus, for
   * a training step, that it was not applied (so the last checkpoint is the last good one), and
   * the way to see the failure on the main thread.
   */
  private workerError(
    rank: number,
    where: string,
    cause: string,
    options: { stepNotApplied?: boolean } = {},
  ): TaskforgeError {
    return new TaskforgeError(
      `DDP worker rank ${rank} of ${this.worldSize} failed at ${where}: ${cause}. ` +
        (options.stepNotApplied
          ? 'The step was not applied, so the last checkpoint saved is the last good one. '
          : '') +
        'Run with trainer.strategy=single to see the failure on the main thread.',
    );
  }

  /** "global step 12 (epoch 0, batch 3)", or "validation at global step 12 (epoch 0, validation batch 3)". */
  private where(fields: StepFields, validation = false): string {
    const batch = `${validation ? 'validation ' : ''}batch ${fields.batchIdx}`;
    return `${validation ? 'validation at ' : ''}global step ${fields.globalStep} (epoch ${fields.epoch}, ${batch})`;
  }
}

/** "samples 4-5 of the batch": the rows of the batch that shard `rank` holds. */
function shardRows(shards: Shard[], rank: number): string {
  const first = shards.slice(0, rank).reduce((n, s) => n + s.size, 0);
  const size = shards[rank]!.size;
  if (size === 1) return `sample ${first} of the batch; a position the message gives counts within the shard`;
  // The task saw only its shard: "sequence 10" in its message is sample first + 10 of the batch.
  return (
    `samples ${first}-${first + size - 1} of the batch; a position the message gives counts within the shard, ` +
    `so add ${first} for the batch`
  );
}

/** Every variable's values (copies), for the workers to load before their shard. */
function snapshotWeights(task: Task): WeightsMessage {
  const out: WeightsMessage = {};
  for (const [name, variable] of Object.entries(task.namedVariables())) {
    out[name] = { values: variable.dataSync().slice() as Float32Array, shape: [...variable.shape] };
  }
  return out;
}

/**
 * Logged values of the shards (`sizes[r]` samples each), merged so devices=N logs what devices=1
 * does for the whole batch. Per name:
 * - weights that are one constant across the shards (e.g. the default 1: a batch mean) or that
 *   follow the shard sizes (e.g. `weight: batch.size`): the shard values' mean weighted by sample
 *   count, which is the whole batch's mean; the weight is summed when it follows the size, else kept;
 * - any other weights (a data-dependent count, e.g. `weight: validTokens`): the mean weighted by
 *   those weights, with their sum as the weight, as one batch logging `Σ/count` would have.
 * (Equal shards whose weight equals their size count as following the size.)
 */
export function mergeLogs(shards: LoggedValue[][], sizes: number[]): LoggedValue[] {
  const byName = new Map<string, Array<{ value: number; weight: number; size: number }>>();
  shards.forEach((logs, r) => {
    // Several entries of one name in a shard first collapse to their weighted mean.
    const local = new Map<string, { sum: number; weight: number }>();
    for (const { name, value, weight } of logs) {
      const e = local.get(name) ?? { sum: 0, weight: 0 };
      e.sum += value * weight;
      e.weight += weight;
      local.set(name, e);
    }
    for (const [name, { sum, weight }] of local) {
      const list = byName.get(name) ?? [];
      list.push({ value: weight === 0 ? 0 : sum / weight, weight, size: sizes[r]! });
      byName.set(name, list);
    }
  });
  const out: LoggedValue[] = [];
  for (const [name, list] of byName) {
    const first = list[0]!;
    const constant = list.every((e) => e.weight === first.weight);
    const proportional = list.every((e) => e.weight * first.size === first.weight * e.size);
    const totalWeight = list.reduce((s, e) => s + e.weight, 0);
    if (constant || proportional) {
      const samples = list.reduce((s, e) => s + e.size, 0);
      const value = list.reduce((s, e) => s + e.value * e.size, 0) / samples;
      const add = proportional && (!constant || first.weight === first.size);
      out.push({ name, value, weight: add ? totalWeight : first.weight });
    } else {
      const value = totalWeight === 0 ? 0 : list.reduce((s, e) => s + e.value * e.weight, 0) / totalWeight;
      out.push({ name, value, weight: totalWeight });
    }
  }
  return out;
}
