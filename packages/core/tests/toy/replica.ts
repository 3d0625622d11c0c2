/**
 * The toy task's DDP replica recipe (ReplicaSpec) for Trainer tests: each worker builds
 * `new ToyTask(task)`; `failOnRank` limits the task's injected failures (throwAtStep, exitAtStep, hangAtStep, oomAtStep, throwAtTestBatch)
 * to one rank.
 */
import * as tf from '@tensorflow/tfjs';
import type { ReplicaFactoryArgs, ReplicaSpec } from '../../src/trainer/ddp/protocol.js';
import { ToyTask, type ToyTaskOptions } from './toy.js';

export interface ToyReplicaOptions {
  task: Omit<ToyTaskOptions, 'scheduler'>;
  failOnRank?: number;
  /** Calls tf.setBackend(this) while building, as a plugin with that TF.js habit would. */
  setBackendOnBuild?: string;
}

export function toyReplica(options: ToyReplicaOptions): ReplicaSpec {
  return { module: import.meta.url, exportName: 'buildToyReplica', options: { ...options } };
}

export async function buildToyReplica(args: ReplicaFactoryArgs<ToyReplicaOptions>): Promise<ToyTask> {
  if (args.setBackendOnBuild) {
    if (args.setBackendOnBuild === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
    await tf.setBackend(args.setBackendOnBuild);
  }
  const { throwAtStep, exitAtStep, hangAtStep, oomAtStep, throwAtTestBatch, ...rest } = args.task;
  const failing = args.rank === args.failOnRank;
  return new ToyTask({
    ...rest,
    ...(failing && throwAtStep !== undefined ? { throwAtStep } : {}),
    ...(failing && exitAtStep !== undefined ? { exitAtStep } : {}),
    ...(failing && hangAtStep !== undefined ? { hangAtStep } : {}),
    ...(failing && oomAtStep !== undefined ? { oomAtStep } : {}),
    ...(failing && throwAtTestBatch !== undefined ? { throwAtTestBatch } : {}),
  });
}
