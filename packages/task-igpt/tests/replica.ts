/**
 * The iGPT test task's DDP replica recipe (ReplicaSpec) for Trainer tests: each worker builds
 * `makeTask(taskConfig, { seed })` from the fixtures (rank 0 sends it the weights it tests with).
 */
import '@taskforge/core'; // Loads reflect-metadata before the fixtures import tsyringe.
import type { ReplicaFactoryArgs, ReplicaSpec } from '@taskforge/core';
import type { ImageGptTask } from '../src/index.js';
import { makeTask } from './fixtures.js';

export interface IgptReplicaOptions {
  taskConfig: Record<string, unknown>;
  seed?: number;
}

export function igptReplica(options: IgptReplicaOptions): ReplicaSpec {
  return { module: import.meta.url, exportName: 'buildIgptReplica', options: { ...options } };
}

export function buildIgptReplica(args: ReplicaFactoryArgs<IgptReplicaOptions>): ImageGptTask {
  return makeTask(args.taskConfig, {
    ...(args.seed === undefined ? {} : { seed: args.seed }),
    args: args.modelDataArgs,
  });
}
