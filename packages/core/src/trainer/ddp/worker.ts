/**
 * A DDP worker thread (ranks 1..N-1): selects the backend rank 0 runs on, builds its replica of the
 * task through the replica recipe (for the app layer: plugin discovery and the registry, so plugin
 * kernels are registered here too), then answers `step` messages: it loads the weights it is sent,
 * runs the task's `trainingStep` on its shard and posts the loss, logged values and gradients back
 * (gradient buffers transferred), or runs `validationStep` / `testStep` and posts what it logged,
 * or runs `predictStep` and posts its output (tensors encoded), or answers `exportTestState` with
 * `task.exportTestState()`. It never updates weights itself.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../backend/select.js';
import type { Task } from '../../contracts.js';
import { computeEvaluation, computePrediction, computeStep } from '../local-step.js';
import { encodeOutput } from './outputs.js';
import type { FromWorker, ReplicaFactoryArgs, ToWorker, WeightsMessage, WorkerInit } from './protocol.js';

const init = workerData as WorkerInit;
const port = parentPort!;

function post(message: FromWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer);
}

function describe(error: unknown): { message: string; stack?: string } {
  if (error instanceof Error) return { message: error.message, ...(error.stack ? { stack: error.stack } : {}) };
  return { message: String(error) };
}

async function buildReplica(): Promise<Task> {
  const selection = await selectBackend(init.accelerator, { threads: init.threads });
  if (selection.backend !== init.backend) {
    throw new Error(
      `it got the ${selection.backend} backend for trainer.accelerator=${init.accelerator}, ` +
        `but rank 0 runs on ${init.backend}; ` +
        `set trainer.accelerator=${init.backend === 'tensorflow' ? 'node' : init.backend}`,
    );
  }
  const module = (await import(init.replica.module)) as Record<string, unknown>;
  const factory = module[init.replica.exportName];
  if (typeof factory !== 'function')
    throw new Error(`${init.replica.module} has no exported function ${init.replica.exportName} to build a replica`);
  const args: ReplicaFactoryArgs = {
    ...init.replica.options,
    modelDataArgs: init.modelDataArgs,
    rank: init.rank,
    worldSize: init.worldSize,
  };
  return (await (factory as (a: ReplicaFactoryArgs) => Promise<Task> | Task)(args)) as Task;
}

function loadWeights(task: Task, weights: WeightsMessage): void {
  const variables = task.namedVariables();
  for (const [name, { values, shape }] of Object.entries(weights)) {
    const variable = variables[name];
    if (!variable) throw new Error(`rank 0 sent weights for '${name}', which this replica does not have`);
    tf.tidy(() => variable.assign(tf.tensor(values, shape, variable.dtype)));
  }
}

let task: Task;
try {
  task = await buildReplica();
  // A plugin calling tf.setBackend at import or in a constructor (a TF.js habit) would leave this
  // replica on another backend than rank 0's, far slower and not the math announced: move back.
  const switched = tf.getBackend();
  if (switched !== init.backend) await tf.setBackend(init.backend);
  post({
    type: 'ready',
    backend: tf.getBackend(),
    ...(switched !== init.backend ? { backendSwitchedTo: switched } : {}),
  });
} catch (error) {
  post({ type: 'error', ...describe(error) });
  // Nothing else to do: rank 0 terminates this worker once it has read the error.
  throw error;
}

async function answer(message: ToWorker): Promise<void> {
  const started = performance.now();
  if (message.type === 'exportTestState') {
    if (!task.exportTestState) throw new Error('the task has no exportTestState');
    const state = await task.exportTestState();
    post({ type: 'result', id: message.id, loss: Number.NaN, logs: [], grads: {}, output: state });
    return;
  }
  if (message.weights) loadWeights(task, message.weights);
  const loaded = performance.now();
  if (message.taskState) task.loadStateDict?.(message.taskState);
  if (message.method === 'validationStep' || message.method === 'testStep') {
    const logs = await computeEvaluation(task, message.method, message.batch, message.fields);
    post({ type: 'result', id: message.id, loss: Number.NaN, logs, grads: {} });
    return;
  }
  if (message.method === 'predictStep') {
    const output = await encodeOutput(await computePrediction(task, message.batch, message.fields));
    post({ type: 'result', id: message.id, loss: Number.NaN, logs: [], grads: {}, output });
    return;
  }
  const trainable = Object.entries(task.namedVariables()).filter(([, v]) => v.trainable);
  const result = await computeStep(task, message.batch, message.fields, trainable);
  const computed = performance.now();
  const grads: Record<string, Float32Array> = {};
  for (const [name, grad] of Object.entries(result.grads)) {
    // A copy: the backend may hand out its own buffer, which must not be transferred away.
    grads[name] = Float32Array.from(await grad.data());
    grad.dispose();
  }
  const done = performance.now();
  post(
    {
      type: 'result',
      id: message.id,
      loss: result.loss,
      logs: result.logs,
      grads,
      ...(result.weight !== undefined ? { weight: result.weight } : {}),
      busyMs: done - started,
      phasesMs: {
        receive: performance.timeOrigin + started - (message.sentAt ?? Number.NaN),
        loadWeights: loaded - started,
        step: computed - loaded,
        readGrads: done - computed,
      },
    },
    Object.values(grads).map((g) => g.buffer as ArrayBuffer),
  );
}

let queue = Promise.resolve();
port.on('message', (message: ToWorker) => {
  queue = queue.then(async () => {
    try {
      await answer(message);
    } catch (error) {
      const method = message.type === 'exportTestState' ? message.type : message.method;
      post({ type: 'error', id: message.id, method, ...describe(error) });
    }
  });
});
