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
 * - Faults: a worker that throws, exits or runs out of memory makes the pending step reject with a
 *   TaskforgeError (exit 1) naming the rank, the step and the cause; the 'error'/'exit' events
 *   mean no wait is left hanging. The update of that step is never applied, so the last checkpoint
 *   stays the last good one. `teardown` terminates every worker (the Trainer calls it on every
 *   exit path; a worker keeps the process alive only while rank 0 waits on it).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
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
import { copyBatch, splitBatch, transferables } from './shards.js';

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
      { exitCode: 2 },
    );
  }
  if (request.strategy === 'single') {
    if (typeof request.devices === 'number' && request.devices > 1) {
      throw new TaskforgeError(
        `trainer.devices=${request.devices} needs trainer.strategy=ddp (or auto), ` +
          'but trainer.strategy=single runs on one device. ' +
          'Set trainer.strategy=ddp, or trainer.devices=1.',
        { exitCode: 2 },
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
        { exitCode: 2 },
      );
    }
    const devices = request.devices === 'auto' ? Math.max(1, Math.min(cores, batchSize ?? cores)) : request.devices;
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

  constructor(
    readonly rank: number,
    init: WorkerInit,
  ) {
    this.ready = new Promise<void>((resolve, reject) => (this.readyWait = { resolve, reject }));
    this.ready.catch(() => undefined);
    this.worker = spawnWorker(init);
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
    this.settle();
    if (message.type === 'result') pending.resolve(message);
    else {
      const what = message.method === 'exportTestState' ? 'exportTestState' : `${STEP_NAMES[message.method!]} step`;
      pending.reject(new Error(`its ${what} threw: ${message.message}`));
    }
  }

  /** Lets the process exit while this worker has nothing rank 0 waits for. */
  private settle(): void {
    if (this.pending.size === 0) this.worker.unref();
  }

  fail(reason: string): void {
    if (this.failure !== undefined) return;
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
      this.pending.set(message.id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage(message, transfer);
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
function spawnWorker(init: WorkerInit): Worker {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./worker.js', here), { workerData: init });
  const require = createRequire(here);
  const tsxApi = pathToFileURL(join(dirname(require.resolve('tsx/package.json')), 'dist/esm/api/index.mjs')).href;
  const tsconfig = join(dirname(fileURLToPath(here)), '../../../tsconfig.lib.json');
  const entry = new URL('./worker.ts', here).href;
  const code =
    `const { register } = await import(${JSON.stringify(tsxApi)});\n` +
    `register(${existsSync(tsconfig) ? `{ tsconfig: ${JSON.stringify(tsconfig)} }` : ''});\n` +
    `await import(${JSON.stringify(entry)});\n`;
  return new Worker(code, { eval: true, workerData: init, execArgv: ['--conditions=@taskforge/source'] });
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
    private readonly request: DevicesRequest & { accelerator: AcceleratorRequest; threads: number | null },
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

  async trainingStep(
    task: Task,
    batch: unknown,
    fields: StepFields,
    trainable: ReadonlyArray<readonly [string, tf.Variable]>,
  ): Promise<StepResult> {
    if (this.worldSize <= 1) return computeStep(task, batch, fields, trainable);
    const shards = splitBatch(batch, this.worldSize);
    if (shards.length === 1) return computeStep(task, batch, fields, trainable);
    await this.launch(fields);
    const weights = snapshotWeights(task);
    const requests = shards.slice(1).map((shard, i) => {
      const rank = i + 1;
      const message: ToWorker = {
        type: 'step',
        method: 'trainingStep',
        id: this.nextId++,
        batch: shard.batch,
        fields: { ...fields, seed: mixSeed(fields.seed, rank) },
        weights,
      };
      return this.replicas[i]!.request(message, transferables(shard.batch));
    });
    // Settled before anything throws, so no rejection goes unobserved.
    const settled = Promise.allSettled(requests);
    let local: StepResult;
    try {
      local = await computeStep(task, shards[0]!.batch, fields, trainable);
    } catch (error) {
      await settled;
      throw error;
    }
    const results = await settled;
    const failed = results.findIndex((r) => r.status === 'rejected');
    if (failed !== -1) {
      tf.dispose(local.grads);
      const rank = failed + 1;
      const cause = ((results[failed] as PromiseRejectedResult).reason as Error).message;
      throw this.workerError(rank, fields, cause);
    }
    const total = shards.reduce((n, s) => n + s.size, 0);
    const weightsOf = shards.map((s) => s.size / total);
    const remote = results.map((r) => (r as PromiseFulfilledResult<Extract<FromWorker, { type: 'result' }>>).value);
    const grads = tf.tidy(() => {
      const out: Record<string, tf.Tensor> = {};
      for (const [name, g0] of Object.entries(local.grads)) {
        let sum = tf.mul(g0, weightsOf[0]!);
        remote.forEach((r, i) => {
          const values = r.grads[name];
          if (!values) throw new TaskforgeError(`DDP worker rank ${i + 1} sent no gradient for '${name}'.`);
          sum = tf.add(sum, tf.mul(tf.tensor(values, g0.shape, 'float32'), weightsOf[i + 1]!));
        });
        out[name] = sum;
      }
      return out;
    });
    tf.dispose(local.grads);
    const loss = weightsOf[0]! * local.loss + remote.reduce((s, r, i) => s + weightsOf[i + 1]! * r.loss, 0);
    return {
      loss,
      logs: mergeLogs(
        [local.logs, ...remote.map((r) => r.logs)],
        shards.map((s) => s.size),
      ),
      grads,
    };
  }

  /**
   * Validation sharded like training: rank 0 splits the batch, workers run `validationStep` on
   * their shards, and the logged values are merged weighted by shard size (`mergeLogs`). Only
   * logged values come back: state a task keeps across validation batches stays per replica.
   * Runs locally with one device or outside fit (no data facts to build workers with).
   */
  async evaluationStep(
    task: Task,
    method: 'validationStep',
    batch: unknown,
    fields: StepFields,
  ): Promise<LoggedValue[]> {
    const shards = this.worldSize > 1 && this.modelDataArgs ? splitBatch(batch, this.worldSize) : [];
    if (shards.length < 2) return computeEvaluation(task, method, batch, fields);
    await this.launch(fields);
    const weights = snapshotWeights(task);
    const requests = shards.slice(1).map((shard, i) =>
      this.replicas[i]!.request(
        {
          type: 'step',
          method,
          id: this.nextId++,
          batch: shard.batch,
          fields: { ...fields, seed: mixSeed(fields.seed, i + 1) },
          weights,
        },
        transferables(shard.batch),
      ),
    );
    const settled = Promise.allSettled(requests);
    let local: LoggedValue[];
    try {
      local = await computeEvaluation(task, method, shards[0]!.batch, fields);
    } catch (error) {
      await settled;
      throw error;
    }
    const results = await settled;
    const failed = results.findIndex((r) => r.status === 'rejected');
    if (failed !== -1)
      throw this.workerError(
        failed + 1,
        fields,
        ((results[failed] as PromiseRejectedResult).reason as Error).message,
        'validation',
      );
    const remote = results.map(
      (r) => (r as PromiseFulfilledResult<Extract<FromWorker, { type: 'result' }>>).value.logs,
    );
    return mergeLogs(
      [local, ...remote],
      shards.map((s) => s.size),
    );
  }

  async batchParallel(
    task: Task,
    method: 'testStep' | 'predictStep',
    fields: StepFields,
  ): Promise<BatchParallel | undefined> {
    if (this.worldSize <= 1 || !this.modelDataArgs) return undefined;
    if (method === 'testStep' && task.onTestEpochEnd && !(task.exportTestState && task.mergeTestState)) {
      this.output.info(
        'Test runs on rank 0 only: the task keeps state across test batches (onTestEpochEnd) but has no ' +
          'exportTestState/mergeTestState to merge it over the ddp devices (see docs/new-task.md).',
      );
      return undefined;
    }
    await this.launch(fields);
    const weights = snapshotWeights(task);
    const taskState = task.stateDict?.();
    const synced = new Set<number>();
    const during = method === 'testStep' ? 'test' : 'predict';
    return {
      devices: this.worldSize,
      run: async (rank, batch, batchFields) => {
        const replica = this.replicas[rank - 1];
        if (!replica) throw new TaskforgeError(`DDP has no worker rank ${rank} (devices: ${this.worldSize}).`);
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
          throw this.workerError(rank, batchFields, (error as Error).message, during);
        }
      },
      exportTestStates: async () => {
        const requests = this.replicas.map((replica) =>
          replica.request({ type: 'exportTestState', id: this.nextId++ }, []),
        );
        const results = await Promise.allSettled(requests);
        return results.map((r, i) => {
          if (r.status === 'rejected')
            throw new TaskforgeError(
              `DDP worker rank ${i + 1} of ${this.worldSize} failed at the end of the test epoch: ` +
                `${(r.reason as Error).message}. ` +
                'Run with trainer.strategy=single to see the failure on the main thread.',
            );
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

  /** Starts workers 1..N-1 (once) and waits until each has built its replica. */
  private async launch(fields: StepFields): Promise<void> {
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
      for (let rank = 1; rank < this.worldSize; rank++) this.replicas.push(new Replica(rank, { ...base, rank }));
      const ready = await Promise.allSettled(this.replicas.map((r) => r.ready));
      const failed = ready.findIndex((r) => r.status === 'rejected');
      if (failed !== -1) {
        await this.teardown();
        throw this.workerError(failed + 1, fields, ((ready[failed] as PromiseRejectedResult).reason as Error).message);
      }
    })();
    try {
      await this.launching;
    } catch (error) {
      this.launching = undefined;
      throw error;
    }
  }

  private workerError(
    rank: number,
    fields: StepFields,
    cause: string,
    during?: 'validation' | 'test' | 'predict',
  ): TaskforgeError {
    if (during === 'test' || during === 'predict') {
      return new TaskforgeError(
        `DDP worker rank ${rank} of ${this.worldSize} failed at ${during} batch ${fields.batchIdx}: ${cause}. ` +
          'Run with trainer.strategy=single to see the failure on the main thread.',
      );
    }
    const batch = `${during ? 'validation ' : ''}batch ${fields.batchIdx}`;
    const where = `${during ? 'validation at ' : ''}global step ${fields.globalStep} (epoch ${fields.epoch}, ${batch})`;
    return new TaskforgeError(
      `DDP worker rank ${rank} of ${this.worldSize} failed at ${where}: ${cause}. ` +
        'The step was not applied, so the last checkpoint saved is the last good one. ' +
        'Run with trainer.strategy=single to see the failure on the main thread.',
    );
  }
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
 * does. Per name the value is the shard values' mean weighted by sample count (what one step
 * over the whole batch logs, for a value that is a mean over its batch). The weight is chosen as
 * the whole batch would have logged it: when the shards' weights are proportional to their sizes
 * (e.g. `weight: batch.size`) they add up; when they are one constant (e.g. the default 1) it is
 * kept. (Equal shards whose weight equals their size count as the former.)
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
    const samples = list.reduce((s, e) => s + e.size, 0);
    const value = list.reduce((s, e) => s + e.value * e.size, 0) / samples;
    const first = list[0]!;
    const constant = list.every((e) => e.weight === first.weight);
    const proportional = list.every((e) => e.weight * first.size === first.weight * e.size);
    const add = proportional && (!constant || first.weight === first.size);
    out.push({ name, value, weight: add || !constant ? list.reduce((s, e) => s + e.weight, 0) : first.weight });
  }
  return out;
}
