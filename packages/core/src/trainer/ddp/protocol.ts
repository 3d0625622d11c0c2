/**
 * Messages between the DDP main thread (rank 0) and its workers (ranks 1..N-1). Everything is
 * plain data: typed arrays travel as transferable buffers (shards to workers, gradients back).
 */
import type { AcceleratorRequest, BackendName } from '../../backend/select.js';
import type { ModelDataArgs } from '../../contracts.js';
import type { LoggedValue, StepFields } from '../local-step.js';

/**
 * How a worker builds its replica of the task: it imports `module` (a file URL or package
 * specifier) and awaits `module[exportName]({ ...options, modelDataArgs, rank, worldSize })`,
 * which must return a Task with the same named variables as rank 0's. The app layer's recipe is
 * `appReplica(...)` (app/replica.ts): plugin discovery and the registry, as on the main thread.
 * `options` must be structured-cloneable (plain JSON-like data).
 */
export interface ReplicaSpec {
  module: string;
  exportName: string;
  options: Record<string, unknown>;
}

/** What a replica factory is called with. */
export type ReplicaFactoryArgs<Options = Record<string, unknown>> = Options & {
  modelDataArgs: ModelDataArgs;
  rank: number;
  worldSize: number;
};

/** `workerData` of a DDP worker. */
export interface WorkerInit {
  rank: number;
  worldSize: number;
  accelerator: AcceleratorRequest;
  threads: number | null;
  /** The backend rank 0 runs on; the worker must get the same one. */
  backend: BackendName;
  replica: ReplicaSpec;
  modelDataArgs: ModelDataArgs;
}

/** A variable's values, sent to workers so every replica computes with rank 0's weights. */
export interface WeightsMessage {
  [name: string]: { values: Float32Array | Int32Array | Uint8Array; shape: number[] };
}

/** The task methods a worker runs: training and validation on shards, test and predict on whole batches. */
export type WorkerMethod = 'trainingStep' | 'validationStep' | 'testStep' | 'predictStep';

export type ToWorker =
  | {
      type: 'step';
      /**
       * `trainingStep`: loss, logs and gradients; `validationStep` and `testStep`: logs only;
       * `predictStep`: the step's output (tensors encoded, see `encodeOutput` in outputs.ts).
       */
      method: WorkerMethod;
      id: number;
      /** When rank 0 posted it (ms since the Unix epoch, `performance.timeOrigin + performance.now()`): the worker's `phasesMs.receive`. */
      sentAt?: number;
      batch: unknown;
      fields: StepFields;
      /** Present when the weights changed since the worker last got them. */
      weights?: WeightsMessage;
      /** Rank 0's `task.stateDict()`, loaded with `loadStateDict` (sent with the weights of a test or predict run). */
      taskState?: Record<string, unknown>;
    }
  | {
      /** Ends a sharded test epoch: the worker answers with `task.exportTestState()` (which resets it). */
      type: 'exportTestState';
      id: number;
    };

export type FromWorker =
  | {
      type: 'ready';
      backend: string;
      /** Set when building the replica moved TF.js to another backend (a tf.setBackend call); the worker moved it back. */
      backendSwitchedTo?: string;
    }
  | {
      type: 'result';
      id: number;
      loss: number;
      logs: LoggedValue[];
      grads: Record<string, Float32Array>;
      /** A training step's `WeightedLoss.weight`, when the task returned one. */
      weight?: number;
      /** `predictStep`'s output, encoded; `exportTestState`'s state. */
      output?: unknown;
      /** Milliseconds the worker spent on this request, from receiving it to posting the answer. */
      busyMs?: number;
      /**
       * A training step's parts (ms): `receive` (posted to received, across threads), `loadWeights`,
       * `step` (the task's trainingStep and its gradients), `readGrads` (copying them out).
       */
      phasesMs?: Record<string, number>;
    }
  | { type: 'error'; id?: number; method?: WorkerMethod | 'exportTestState'; message: string; stack?: string };
