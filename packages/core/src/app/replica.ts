/**
 * How a DDP worker builds its replica of the task the way the main thread does: a fresh container,
 * plugin discovery from the project root (so every plugin, and any kernel it registers, is loaded
 * in the worker too), and the backbone and task built through the registry from the composed,
 * validated run config with the data facts rank 0 got from its datamodule.
 */
import type { DependencyContainer } from 'tsyringe';
import type { ModelDataArgs, Task } from '../contracts.js';
import type { Instantiator } from '../registry/instantiator.js';
import type { ComponentRegistry } from '../registry/registry.js';
import { dataTrainingOnly } from '../registry/training-only.js';
import { Tokens, type Output, type ProgressHandle } from '../services/tokens.js';
import type { ReplicaFactoryArgs, ReplicaSpec } from '../trainer/ddp/protocol.js';
import { createContainer } from './container.js';
import { Session, type RunConfig } from './session.js';

/**
 * Builds the configured backbone and task (`config.backbone`, `config.task`, with
 * `config.dataset` as the task's data config) through the container's registry. Throws
 * ConfigError (exit 2) when a section does not validate.
 */
export function buildTaskFromConfig(
  container: DependencyContainer,
  config: Pick<RunConfig, 'backbone' | 'task' | 'dataset'>,
  modelDataArgs: ModelDataArgs,
): Task {
  const instantiator = container.resolve<Instantiator>(Tokens.Instantiator);
  const backbone = instantiator.create('backbone', config.backbone, { container, modelDataArgs }, 'backbone');
  return instantiator.create(
    'task',
    config.task,
    {
      container,
      modelDataArgs,
      backbone,
      ...(config.dataset
        ? {
            dataConfig: config.dataset,
            dataTrainingOnly: dataTrainingOnly(container.resolve<ComponentRegistry>(Tokens.Registry), config.dataset),
          }
        : {}),
      ...(config.backbone ? { backboneConfig: config.backbone } : {}),
    },
    'task',
  );
}

/** Options of the app layer's replica recipe (plain data, sent to each worker). */
export interface AppReplicaOptions {
  projectRoot: string;
  config: RunConfig;
  /**
   * The `plugins` list the command's session loaded (`Session.listedPlugins`): not the composed
   * config's, which for `ckpt=` runs is the one saved in the checkpoint.
   */
  plugins: string[];
}

/** The app layer's recipe for DDP workers: `buildAppReplica` in this module with the run's config. */
export function appReplica(options: AppReplicaOptions): ReplicaSpec {
  return { module: import.meta.url, exportName: 'buildAppReplica', options: { ...options } };
}

/** Worker output: progress and info are rank 0's business; warnings go to stderr tagged with the rank. */
class WorkerOutput implements Output {
  constructor(private readonly rank: number) {}
  info(): void {}
  warn(message: string): void {
    process.stderr.write(`[ddp rank ${this.rank}] ${message}\n`);
  }
  progress(): ProgressHandle {
    return { update() {}, setTotal() {}, stop() {} };
  }
}

/** Runs in a DDP worker: discovers and loads the project's plugins, then builds the task. */
export async function buildAppReplica(args: ReplicaFactoryArgs<AppReplicaOptions>): Promise<Task> {
  const container = createContainer({ output: new WorkerOutput(args.rank) });
  // Rank 0 already printed the discovery warnings (unbuilt plugins) for this project: not again per rank.
  const session = await Session.open({
    cwd: args.projectRoot,
    container,
    plugins: args.plugins,
    discoveryWarnings: false,
  });
  return buildTaskFromConfig(session.container, args.config, args.modelDataArgs);
}
