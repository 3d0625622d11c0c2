import type { DependencyContainer } from 'tsyringe';
import type { z } from 'zod';
import type {
  Backbone,
  Callback,
  DataModule,
  LRScheduler,
  MetricsLogger,
  ModelDataArgs,
  NamedVariables,
  Optimizer,
  Task,
} from '../contracts.js';

/**
 * The kinds a component is registered under (`<kind>/<name>`). The config section that names a
 * `datamodule` is `dataset` (as Lightning Transformers' `dataset` group targets a DataModule);
 * every other section shares its kind's name. See docs/configuration.md#sections-of-a-run.
 */
export type ComponentKind = 'datamodule' | 'backbone' | 'task' | 'optimizer' | 'scheduler' | 'callback' | 'logger';
export const COMPONENT_KINDS: readonly ComponentKind[] = [
  'datamodule',
  'backbone',
  'task',
  'optimizer',
  'scheduler',
  'callback',
  'logger',
];

/** What each kind of component is given, besides its own config, when it is created. */
export interface CreateContexts {
  datamodule: { container: DependencyContainer };
  backbone: { container: DependencyContainer; modelDataArgs: ModelDataArgs };
  /** The Trainer builds the optimizer and scheduler (see `Task.configureOptimizers`). */
  task: {
    container: DependencyContainer;
    modelDataArgs: ModelDataArgs;
    backbone: Backbone;
    /**
     * The run's validated `dataset` config node (absent when built outside a command), so a task
     * loading pretrained weights can name the data setting that differs from the checkpoint's
     * (see `compareCheckpointData`).
     */
    dataConfig?: Readonly<Record<string, unknown>>;
    /**
     * The run's validated `backbone` config node (absent when built outside a command), so a task
     * loading pretrained weights can name the backbone settings that differ from the checkpoint's.
     */
    backboneConfig?: Readonly<Record<string, unknown>>;
    /**
     * The data module's training-only settings (`dataset.augment`; see `trainingOnly`), which a
     * task comparing its data with a checkpoint's (`compareCheckpointData`) does not name.
     */
    dataTrainingOnly?: readonly string[];
  };
  optimizer: { container: DependencyContainer; variables: NamedVariables };
  scheduler: { container: DependencyContainer; totalSteps: number; baseLr: number };
  callback: { container: DependencyContainer };
  logger: { container: DependencyContainer; runDir: string };
}

export interface ComponentInstances {
  datamodule: DataModule;
  backbone: Backbone;
  task: Task;
  optimizer: Optimizer;
  scheduler: LRScheduler;
  callback: Callback;
  logger: MetricsLogger;
}

/**
 * A registered component. Config nodes name it with `_target_: <kind>/<name>`, e.g.
 * `_target_: backbone/gpt2`. `schema` validates the node (without `_target_`); it should be a
 * strict zod object with defaults, so unknown keys are errors and omitted keys get defaults.
 */
export interface ComponentSpec<K extends ComponentKind = ComponentKind, C = any> {
  kind: K;
  /** Stable name within its kind, e.g. `gpt2`, `vision/igpt`, `adamw`. */
  name: string;
  /** One line for `taskforge list`. */
  description: string;
  schema: z.ZodType<C>;
  create(config: C, ctx: CreateContexts[K]): ComponentInstances[K];
  /**
   * Optional: adjust the composed run config before it is validated, for settings this component
   * derives from elsewhere (e.g. a task that takes the backbone settings from the checkpoint its
   * `pretrained` key names). The app layer calls it for each top-level component section (`task`,
   * `dataset`, `backbone`, `optimizer`, `scheduler`, in that order) whose `_target_` names this
   * component, after composition and before validation, for every command except evaluations of
   * a checkpoint (`ckpt=`, whose saved config is used as it is). Returns one-line notes, printed
   * as information (e.g. which keys were taken from where). May throw a ConfigError (exit 2).
   */
  adjustRunConfig?(draft: RunConfigDraft): string[] | void;
  /**
   * Optional: the names other libraries give this component's settings, each mapped to the key
   * it has here (GPT-2's `n_layer` → `num_layers`, Keras's `learning_rate` → `lr`). An override
   * of such a name (`backbone.n_layer=4`) is refused (exit 2) with the override that sets this
   * key instead (`backbone.num_layers=4`), which an edit distance would not find. A name is never
   * accepted in place of the key: the config keeps one spelling.
   */
  keyAliases?: Readonly<Record<string, string>>;
}

/** What `ComponentSpec.adjustRunConfig` is given: the composed, not yet validated run config. */
export interface RunConfigDraft {
  /** The whole run config (interpolations resolved); change it only through `set`. */
  readonly config: Readonly<Record<string, unknown>>;
  /** The component's own section, e.g. `task`, and its node as composed (unvalidated: check types). */
  readonly section: string;
  readonly node: Readonly<Record<string, unknown>>;
  /** Where the value at a dotted path came from (`command line`, a config file, …), when known. */
  sourceOf(path: string): string | undefined;
  /** True when the value at `path`, or any value under it, was set on the command line. */
  fromCommandLine(path: string): boolean;
  /** Sets the value at a dotted path and records `source` as where it came from (`taskforge config` shows it). */
  set(path: string, value: unknown, source: string): void;
}

/** What a plugin package's entry point exports as `plugin` (or default export). */
export interface TaskforgePlugin {
  /** The npm package name; the registry uses it in error messages and `taskforge list`. */
  packageName: string;
  register(registry: PluginRegistry): void;
}

/**
 * The part of the registry a plugin sees: only `register` (the full `ComponentRegistry` also
 * resolves and lists). One word for the concept: a plugin's `register(registry)` is handed this
 * view of the run's `ComponentRegistry`, which records the plugin's package as the owner.
 */
export interface PluginRegistry {
  register<K extends ComponentKind>(spec: ComponentSpec<K>): void;
}
