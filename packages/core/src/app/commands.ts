/**
 * What each CLI command does, in plain steps: compose the config, create the Trainer (which picks
 * the backend and the run dir), build the components through the registry, and hand them to it.
 * The CLI only parses arguments.
 */
import { existsSync, mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { mkdir, rmdir } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { stringify } from 'yaml';
import type { DataModule, ModelDataArgs, Stage, Task } from '../contracts.js';
import { parseOverride, toYaml } from '../config/index.js';
import { findConfigFile, listGroupOptions } from '../config/search-path.js';
import { loadConfigFile, type LoadedFile } from '../config/yaml-io.js';
import type { ConfigNode } from '../config/paths.js';
import { ConfigError, TaskforgeError } from '../errors.js';
import { withFsErrors, writeFileAtomic } from '../fs.js';
import type { Instantiator } from '../registry/instantiator.js';
import { dataTrainingOnly } from '../registry/training-only.js';
import { COMPONENT_KINDS } from '../registry/types.js';
import { Tokens, type Output } from '../services/tokens.js';
import {
  lastCheckpointIn,
  loadCheckpoint,
  notACheckpoint,
  readCheckpointConfig,
  readCheckpointJson,
  restoreTaskWeights,
  type Checkpoint,
  type TaskState,
  type TrainerState,
} from '../trainer/checkpoint.js';
import { readsHigherIsBetter } from '../callbacks/metrics.js';
import { compareCheckpointData, datasetSettingDifferences } from '../trainer/data-match.js';
import { assertRunDirFree, removeRunDirIfBare, type RunDirCheck } from '../trainer/run-dir.js';
import { prepareAndSetup, teardownData } from '../trainer/data-setup.js';
import { isCheckpointingCallback, Trainer, type FitResult, type TestResult } from '../trainer/trainer.js';
import { appReplica, buildTaskFromConfig } from './replica.js';
import type { RunConfig, Session } from './session.js';

export interface CommandOptions {
  overrides: string[];
  /**
   * A checkpoint dir: `test`, `validate`, `predict` and `sample` evaluate its weights with its
   * config. Those commands require it; `none` evaluates freshly initialised (untrained) weights.
   */
  ckpt?: string;
}

/** `ckpt=none`: evaluate freshly initialised weights, on purpose. */
export const NO_CHECKPOINT = 'none';

/**
 * The evaluating commands need to be told which weights to use: without `ckpt=` they stop here,
 * before anything is composed, downloaded, prepared or written (Lightning warns and goes on with
 * a fresh model, which silently reports the metrics of random weights).
 * @throws TaskforgeError exit code 2 naming the fixes `ckpt=<dir>` and `ckpt=none`.
 */
export function requireCheckpointArgument(command: string, options: CommandOptions): void {
  if (options.ckpt !== undefined && options.ckpt.trim() !== '') return;
  const given = options.ckpt === undefined ? 'no ckpt= was given' : 'ckpt= is empty';
  throw new TaskforgeError(
    `\`taskforge ${command}\` needs the weights to use, but ${given}. Pass ckpt=<dir>, a checkpoint ` +
      `directory such as <run dir>/checkpoints/last (\`taskforge train\` prints it), or ckpt=${NO_CHECKPOINT} ` +
      `to ${command} freshly initialised, untrained weights.`,
    { exitCode: 2 },
  );
}

/** `taskforge train`: fit the configured task; prints where everything went. */
export async function trainCommand(session: Session, options: CommandOptions): Promise<FitResult> {
  const { config } = session.compose(options.overrides);
  // Before any backend, worker or run dir: a resume path that is no checkpoint is a usage error.
  const resumeFrom = config.trainer.resume_from;
  const problem = resumeFrom ? notACheckpoint(resolve(resumeFrom)) : undefined;
  if (problem) throw new TaskforgeError(`trainer.resume_from=${resumeFrom}: ${problem}`, { exitCode: 2 });
  const run = await prepareRun(session, config, 'train');
  run.createRunDir();
  return run.guard(() => trainInRunDir(run, config));
}

async function trainInRunDir(run: PreparedRun, config: RunConfig): Promise<FitResult> {
  const datamodule = run.buildDatamodule();
  await prepareAndSetup(datamodule, 'fit', config.dataset);
  const task = run.buildTask(datamodule.modelDataArgs);
  const { trainer } = run;
  if (!config.trainer.fast_dev_run) {
    // Said up front: under `nx run`, nx stops relaying output as soon as it gets Ctrl-C, so the
    // interrupt message printed after the step may never reach the terminal.
    const last =
      trainer.callbacks.find(isCheckpointingCallback)?.lastCheckpointTarget ?? join(run.runDir, 'checkpoints', 'last');
    run.output.info(
      `To stop early press Ctrl-C (or send SIGTERM): the current step finishes, then the ` +
        `checkpoint is saved to ${last}; ${trainer.resumeHint(last)}`,
    );
  }
  const result = await trainer.fit(task, datamodule); // it resumes from trainer.resume_from itself
  // A resume whose checkpoint already ends the run (the Trainer warned) leaves a new run dir with
  // only its skeleton: remove it rather than leave an empty run next to the real one.
  if (result.globalStep === result.startStep && result.startStep > 0 && !config.trainer.fast_dev_run)
    run.discardIfBare('nothing was trained, so the run wrote no checkpoint, metric or result');
  run.output.info(describeFit(result, run.runDir, config.trainer.fast_dev_run));
  task.dispose();
  return result;
}

/** `taskforge validate|test`: evaluate a checkpoint (or, with `ckpt=none`, freshly initialised weights) on a split. */
export async function evaluateCommand(
  session: Session,
  stage: 'validate' | 'test',
  options: CommandOptions,
): Promise<TestResult> {
  const { config, run, datamodule, task, step, epoch } = await openForEvaluation(session, options, stage, stage);
  const { trainer } = run;
  // Metrics are logged at the step (and epoch) of the weights evaluated (0 for fresh weights).
  trainer.progress.globalStep = step ?? 0;
  trainer.progress.epoch = epoch ?? 0;
  const result: TestResult = await run.guard(async () =>
    stage === 'test'
      ? trainer.test(task, datamodule)
      : { metrics: await trainer.validate(task, datamodule), extras: {} },
  );
  const resultsFile = writeResults(run, config, `${stage}_results.json`, result);
  run.output.info(describeMetrics(stage, result, resultsFile));
  task.dispose();
  return result;
}

/** `taskforge predict`: run `predictStep` over the predict split; outputs go to predictions.json. */
export async function predictCommand(session: Session, options: CommandOptions): Promise<unknown[]> {
  const { config, run, datamodule, task } = await openForEvaluation(
    session,
    options,
    'predict',
    'predict',
    'predictStep',
  );
  const outputs = await run.guard(() => run.trainer.predict(task, datamodule));
  const file = writeResults(run, config, 'predictions.json', outputs);
  run.output.info(
    `Made ${outputs.length} prediction batches${file ? `; written to ${file}` : ' (fast_dev_run: not written)'}`,
  );
  task.dispose();
  return outputs;
}

/** `taskforge sample ckpt=<dir>`: samples from a generative task into `<run dir>/samples`. */
export async function sampleCommand(session: Session, options: CommandOptions): Promise<string[]> {
  const { config, run, datamodule, task, step } = await openForEvaluation(session, options, 'sample', 'test', 'sample');
  const outDir = join(run.runDir, 'samples');
  // The seed is in the name, so these never share a name with the grids the training run sampled
  // (its sampler uses its own seed); the task also never replaces an existing file.
  const tag = `${step === undefined ? 'init' : `step${String(step).padStart(6, '0')}`}-seed${config.trainer.seed}`;
  try {
    const { files } = await run.guard(async () => {
      await mkdir(outDir, { recursive: true });
      try {
        return await task.sample!({ outDir, datamodule, seed: config.trainer.seed, tag });
      } catch (error) {
        await rmdir(outDir).catch(() => undefined); // only when empty: the run dir may then be bare
        throw error;
      }
    });
    run.output.info(`Samples written:\n${files.map((f) => `  ${f}`).join('\n')}`);
    return files;
  } finally {
    task.dispose();
    await teardownData(datamodule);
  }
}

/**
 * What every evaluating command does first: insist on `ckpt=` (exit 2), compose (on top of the checkpoint's config when
 * `ckpt=` is given), choose the backend, set up the data for `stage`, refuse data the checkpoint's
 * weights do not fit (exit 2), build the task, check it can do what the command needs (exit 2)
 * and restore the weights (exit 2 when they do not fit), and only then create the run dir.
 */
async function openForEvaluation(
  session: Session,
  options: CommandOptions,
  command: string,
  stage: Stage,
  needs?: 'predictStep' | 'sample',
): Promise<{
  config: RunConfig;
  run: PreparedRun;
  datamodule: DataModule;
  task: Task;
  step: number | undefined;
  epoch: number | undefined;
}> {
  requireCheckpointArgument(command, options);
  const { config, ckpt } = composeForCheckpoint(session, options, command);
  // test and predict send whole batches to the ddp devices: the batch size does not bound trainer.devices.
  let run: PreparedRun;
  try {
    run = await prepareRun(session, config, command, stage === 'test' || stage === 'predict');
  } catch (error) {
    throw ckpt ? attributeToCheckpoint(error, ckpt, options.overrides) : error;
  }
  const datamodule = run.buildDatamodule();
  await prepareAndSetup(datamodule, stage, config.dataset);
  // Before the run dir exists: data that cannot match the checkpoint's weights is refused up front.
  const trainingOnly = dataTrainingOnly(session.registry, config.dataset);
  if (ckpt) assertSameData(ckpt, config, datamodule, trainingOnly);
  if (ckpt) warnOtherDataSettings(ckpt, config, run.output, trainingOnly);
  const task = run.buildTask(datamodule.modelDataArgs);
  if (needs && !task[needs]) {
    task.dispose();
    throw new TaskforgeError(
      `The task '${String(config.task?._target_)}' does not support \`${command}\` (it has no ${needs} method).`,
      { exitCode: 2 },
    );
  }
  try {
    // Loaded only now, after prepareRun chose the backend, so the weights land on it.
    if (ckpt)
      restoreFromCheckpoint(
        task,
        await loadCheckpoint(ckpt.dir, { optimizer: false }),
        run.output,
        config as unknown as Record<string, unknown>,
      );
  } catch (error) {
    task.dispose();
    throw error;
  }
  run.createRunDir();
  return { config, run, datamodule, task, step: ckpt?.step, epoch: ckpt?.epoch };
}

/** `taskforge config`: the composed, validated config as YAML, each value with its source. */
export function configCommand(session: Session, options: CommandOptions & { sources?: boolean }): string {
  const { config, sources } = session.compose(options.overrides);
  return toYaml(config as ConfigNode, options.sources === false ? {} : { sources });
}

/** `taskforge list`: registered components by kind (with their packages) and config groups. */
export function listCommand(session: Session): string {
  const lines: string[] = ['Plugins:'];
  for (const p of session.plugins)
    lines.push(`  ${p.packageName}@${p.version}  ${relative(process.cwd(), p.dir) || '.'}`);
  for (const kind of COMPONENT_KINDS) {
    const entries = session.registry.list(kind);
    if (!entries.length) continue;
    lines.push('', `${kind}:`);
    const width = Math.max(...entries.map((e) => e.target.length));
    for (const e of entries) lines.push(`  ${e.target.padEnd(width)}  ${e.description}  [${e.packageName}]`);
  }
  lines.push('', 'Config search path (first wins):', ...session.searchPath.map((d) => `  ${d}`));
  return lines.join('\n');
}

interface PreparedRun {
  runDir: string;
  output: Output;
  /**
   * Creates the run dir with the run's config.yaml and prints it; everything that can be refused
   * is checked before. Refuses (exit 2) a dir that holds another run's outputs, unless `train`
   * resumes from a checkpoint inside it.
   */
  createRunDir(): void;
  /**
   * After a failure (or a resume that trained nothing): removes the run dir this run created when it holds nothing but the skeleton
   * of a run (its config.yaml, hparams.yaml files, an events file with only the hyper-parameters,
   * empty log dirs; no checkpoint, metrics row, result or sample), saying so; never throws. A dir
   * that existed before the run is never removed.
   */
  discardIfBare(why?: string): void;
  /** Runs `work`; when it throws, `discardIfBare()` first, then the error goes on. */
  guard<T>(work: () => Promise<T>): Promise<T>;
  /** Made first, so the backend it selects is active before any weights are built. Writes nothing. */
  trainer: Trainer;
  buildDatamodule(): DataModule;
  buildTask(modelDataArgs: ModelDataArgs): Task;
}

async function prepareRun(
  session: Session,
  config: RunConfig,
  command: string,
  wholeBatches = false,
): Promise<PreparedRun> {
  const { container } = session;
  const output = container.resolve<Output>(Tokens.Output);
  const instantiator = container.resolve<Instantiator>(Tokens.Instantiator);
  if (!config.task) {
    const options = listGroupOptions(session.searchPath, 'task');
    throw new ConfigError(
      [
        {
          path: 'task',
          message:
            'no task is configured; choose one on the command line' +
            (options.length
              ? `: ${options.map((o) => `task=${o}`).join(', ')}`
              : ': no config group task/ has an option here (see `taskforge list` for the plugins loaded)'),
        },
      ],
      'Nothing to run',
    );
  }
  // A run dir given on the command line that holds another run is refused before the backend,
  // the data or the workers start (and checked again just before the dir is written).
  const runDirCheck: RunDirCheck = {
    command,
    given: config.trainer.run_dir ?? null,
    resumeFrom: command === 'train' ? (config.trainer.resume_from ?? null) : null,
  };
  if (config.trainer.run_dir) assertRunDirFree(resolve(session.projectRoot, config.trainer.run_dir), runDirCheck);
  // The Trainer selects the backend, resolves the run dir and builds callbacks, loggers and the optimizer builders.
  const trainer = await Trainer.create(config, {
    container,
    projectRoot: session.projectRoot,
    replica: appReplica({ projectRoot: session.projectRoot, config, plugins: session.listedPlugins }),
    wholeBatches,
  });
  const { runDir } = trainer;
  let created = false;
  /** The outermost parent dir the claim created (`outputs/<date>` for a default run dir). */
  let createdParent: string | undefined;

  const run: PreparedRun = {
    runDir,
    output,
    trainer,
    createRunDir() {
      // Again, just before writing: another process may have written there since.
      assertRunDirFree(runDir, runDirCheck);
      ({ created, createdParent } = claimDir(runDir));
      if (!created && !config.trainer.run_dir) {
        // The default dir did not exist when it was chosen: another run took it in the meantime.
        throw new TaskforgeError(
          `The run dir ${runDir} was created by another process while this run was starting; ` +
            'run the command again (a new dir is chosen) or set trainer.run_dir to a new dir.',
        );
      }
      writeFileAtomic(join(runDir, 'config.yaml'), stringify(config));
      output.info(`taskforge ${command}: run dir ${runDir}`);
    },
    discardIfBare(why = 'the run stopped before writing any checkpoint, metric or result') {
      try {
        if (created && removeRunDirIfBare(runDir)) {
          output.info(`Removed the run dir ${runDir}: ${why}.`);
          removeEmptyParents(runDir, createdParent);
        }
      } catch {
        // Best effort: the run's own error is what matters.
      }
    },
    async guard(work) {
      try {
        return await work();
      } catch (error) {
        run.discardIfBare();
        throw error;
      }
    },
    buildDatamodule: () => instantiator.create('datamodule', config.dataset, { container }, 'dataset'),
    // DDP workers build their replicas through the same function (app/replica.ts).
    buildTask: (modelDataArgs) => buildTaskFromConfig(container, config, modelDataArgs),
  };
  return run;
}

/**
 * Creates `dir` (its parents as needed). `created`: this call created it (false when it existed);
 * `createdParent`: the outermost parent it created, if any.
 * @throws TaskforgeError exit code 1 naming `dir` when it cannot be created.
 */
function claimDir(dir: string): { created: boolean; createdParent: string | undefined } {
  return withFsErrors('create the run dir', dir, () => {
    const createdParent = mkdirSync(dirname(dir), { recursive: true });
    try {
      mkdirSync(dir);
      return { created: true, createdParent };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return { created: false, createdParent };
      throw error;
    }
  });
}

/**
 * After a removed run dir: removes the parents its claim created (`outputs/2026-12-01/`), from the
 * innermost up to `outermost`, while they are empty; a parent another run wrote into stays.
 */
function removeEmptyParents(runDir: string, outermost: string | undefined): void {
  if (outermost === undefined) return;
  for (let dir = dirname(runDir); dir.length >= outermost.length; dir = dirname(dir)) {
    try {
      rmdirSync(dir);
    } catch {
      return; // not empty (or gone): leave it and everything above it
    }
    if (dir === outermost) return;
  }
}

/** A checkpoint named by `ckpt=`: its dir, the step its weights were saved at, and its data facts. */
interface CheckpointRef {
  dir: string;
  step: number | undefined;
  /** The epoch the checkpoint was saved in (its trainer_state.json), when it has one. */
  epoch: number | undefined;
  taskState: TaskState;
  config: Record<string, unknown>;
}

/**
 * With `ckpt=<dir>`, the checkpoint's saved config is the base and the command-line overrides
 * apply on top of it (values only: its config groups were already resolved when it was saved).
 * The evaluation gets its own run dir, named after the checkpoint and its step, under the training
 * run's `evaluations/` (never the training run dir itself, so two evaluations never overwrite each
 * other's results nor append to the training run's metrics.csv); `trainer.run_dir=` on the command
 * line chooses another. A resume path saved in the checkpoint's config is dropped: evaluating resumes nothing.
 * @throws TaskforgeError exit code 2 when the dir does not exist or is not a checkpoint.
 */
function composeForCheckpoint(
  session: Session,
  options: CommandOptions,
  command: string,
): { config: RunConfig; ckpt?: CheckpointRef } {
  if (!options.ckpt || options.ckpt === NO_CHECKPOINT) return { config: session.compose(options.overrides).config };
  const dir = resolve(options.ckpt);
  if (!existsSync(dir)) {
    // Lightning's ckpt_path='best'/'last', or <run>/checkpoints/best: name what is there instead.
    const parent = dirname(dir);
    const siblings = existsSync(parent)
      ? readdirSync(parent, { withFileTypes: true })
          .filter((e) => e.isDirectory() && existsSync(join(parent, e.name, 'weights.json')))
          .map((e) => e.name)
          .sort((a, b) => (a === 'last' ? -1 : b === 'last' ? 1 : a.localeCompare(b)))
      : [];
    const shortcut = ['best', 'last'].includes(basename(dir))
      ? ` taskforge has no '${basename(dir)}' shortcut (Lightning's ckpt_path='${basename(dir)}'): name the ` +
        'checkpoint dir; `last` is <run dir>/checkpoints/last, and the best is the step=* dir the train summary ' +
        "named ('best checkpoint (<monitor>)')."
      : '';
    const near = siblings.length
      ? ` ${parent} holds the checkpoints ${siblings.slice(0, 6).join(', ')}${siblings.length > 6 ? ', …' : ''}.`
      : ' Pass a checkpoint directory such as <run dir>/checkpoints/last.';
    throw new TaskforgeError(
      `ckpt=${options.ckpt}: the checkpoint directory ${dir} does not exist.${shortcut}${near}`,
      { exitCode: 2 },
    );
  }
  if (!existsSync(join(dir, 'config.yaml'))) {
    // A run's checkpoints/ dir (Lightning users pass the dirpath): name the checkpoints in it.
    const entries = statSync(dir).isDirectory() ? readdirSync(dir, { withFileTypes: true }) : [];
    const inside = entries
      .filter((e) => e.isDirectory() && existsSync(join(dir, e.name, 'config.yaml')))
      .map((e) => e.name)
      .sort((a, b) => (a === 'last' ? -1 : b === 'last' ? 1 : a.localeCompare(b)));
    const hint = inside.length
      ? `it holds the checkpoints ${inside.slice(0, 5).join(', ')}${inside.length > 5 ? ', …' : ''}: did you mean ` +
        `ckpt=${join(options.ckpt, inside[0]!)}?`
      : 'pass a checkpoint directory such as <run dir>/checkpoints/last.';
    throw new TaskforgeError(
      `ckpt=${options.ckpt}: ${dir} is not a taskforge checkpoint (it has no config.yaml); ${hint}`,
      { exitCode: 2 },
    );
  }
  // A run dir has a config.yaml too: refuse it here, before any backend or data step starts.
  if (!existsSync(join(dir, 'weights.json')) && lastCheckpointIn(dir)?.kind === 'run') {
    throw new TaskforgeError(
      `ckpt=${options.ckpt}: ${dir} is a run directory, not a checkpoint: did you mean ` +
        `ckpt=${join(options.ckpt, 'checkpoints', 'last')}, its last checkpoint? (The others are the ` +
        'step=* directories next to it.)',
      { exitCode: 2 },
    );
  }
  const savedConfig = readCheckpointConfig(dir) ?? {};
  const overrides = withoutOwnSelections(options.overrides, savedConfig, dir, session);
  // The saved config is used as it was trained: no component re-derives settings (adjust: false).
  const { config } = session.compose(['trainer.resume_from=null', ...overrides], {
    searchPath: [dir, ...session.searchPath],
    configName: 'config',
    adjust: false,
  });
  const trainerState = readCheckpointJson<TrainerState>(dir, 'trainer_state.json');
  const ckpt: CheckpointRef = {
    dir,
    step: trainerState?.globalStep,
    epoch: trainerState?.epoch,
    taskState: readCheckpointJson<TaskState>(dir, 'task_state.json') ?? { modelDataArgs: {}, state: null },
    config: savedConfig,
  };
  if (!options.overrides.some((o) => /^\+{0,2}trainer\.run_dir=/.test(o))) {
    config.trainer.run_dir = uniqueDir(
      join(trainingRunDir(dir), 'evaluations', evaluationName(command, dir, ckpt.step)),
    );
  }
  return { config, ckpt };
}

/** Config groups whose selection names the model or its data: a checkpoint fixes them. */
const CHECKPOINT_SECTIONS = ['task', 'backbone', 'dataset'] as const;

/**
 * A `ckpt=` evaluation composes from the checkpoint's saved config, which has no defaults list:
 * a group selection copied from the training command (`task=text/tagging`) cannot apply. One that
 * names the component the checkpoint was trained with is dropped, with a note; another is refused
 * (exit 2), naming what the checkpoint was trained with and the `<section>.<key>=` overrides that
 * do apply.
 */
function withoutOwnSelections(
  overrides: string[],
  saved: Record<string, unknown>,
  dir: string,
  session: Session,
): string[] {
  const output = session.container.resolve<Output>(Tokens.Output);
  return overrides.filter((text) => {
    let key: string;
    let value: unknown;
    try {
      ({ key, value } = parseOverride(text));
    } catch {
      return true; // compose reports it
    }
    const section = CHECKPOINT_SECTIONS.find((s) => s === key.replace(/^\+{1,2}/, ''));
    if (section === undefined || typeof value !== 'string') return true;
    const file = findConfigFile(
      session.searchPath.map((d) => join(d, section)),
      value,
    );
    const selected = file ? selectedTarget(loadConfigFile(file, file), section) : undefined;
    const trained = (saved[section] as { _target_?: unknown } | undefined)?._target_;
    if (selected !== undefined && selected === trained) {
      output.info(
        `${text}: not needed with ckpt= (the checkpoint's config already selects ${String(trained)}); left out.`,
      );
      return false;
    }
    throw new ConfigError(
      [
        {
          path: section,
          message:
            `ckpt=${dir} was trained with ${section} ${String(trained ?? '(none)')}` +
            `${selected !== undefined ? `, not ${String(selected)}` : ''}; an evaluation runs the checkpoint's own ` +
            `components (its config.yaml), so a ${section}= selection cannot apply. Drop it (override settings ` +
            `inside the section instead, e.g. ${section}.<key>=<value>), or evaluate a checkpoint trained with ` +
            `${selected !== undefined ? String(selected) : `${section}=${value}`}`,
          override: text,
          source: 'command line',
        },
      ],
      'Invalid configuration',
    );
  });
}

/**
 * The component a group option file selects: its own `_target_`, or, for a file in the global
 * package (`# @package _global_`, as task files that also pick a dataset and backbone are), the
 * `_target_` under its section.
 */
function selectedTarget(file: LoadedFile, section: string): unknown {
  const { body } = file;
  if (file.packageHeader === '_global_') return (body[section] as { _target_?: unknown } | undefined)?._target_;
  return body['_target_'];
}

/**
 * An error about `trainer.*` settings (`TaskforgeError.settings`) that the command line did not
 * give says they come from the checkpoint's saved config (an evaluation inherits the training
 * run's trainer settings, e.g. `trainer.devices=2` or `trainer.accelerator=webgpu`) and how to
 * override them; same exit code. Other errors pass as they are.
 */
function attributeToCheckpoint(error: unknown, ckpt: CheckpointRef, overrides: string[]): unknown {
  if (!(error instanceof TaskforgeError) || error instanceof ConfigError) return error;
  const saved = (ckpt.config['trainer'] ?? {}) as Record<string, unknown>;
  const given = (key: string) => overrides.some((o) => new RegExp(`^\\+{0,2}trainer\\.${key}=`).test(o));
  const inherited = Object.entries(error.settings)
    .filter(([path]) => path.startsWith('trainer.'))
    .map(([path, value]) => [path.slice('trainer.'.length), value] as const)
    .filter(([key, value]) => !given(key) && saved[key] !== undefined && String(saved[key]) === String(value))
    .map(([key]) => key);
  if (!inherited.length) return error;
  const settings = inherited.map((key) => `trainer.${key}=${String(saved[key])}`).join(', ');
  return new TaskforgeError(
    `${error.message} (${settings} ${inherited.length === 1 ? 'comes' : 'come'} from the checkpoint's saved config, ` +
      `${join(ckpt.dir, 'config.yaml')}: override ${inherited.length === 1 ? 'it' : 'them'} on the command line.)`,
    { exitCode: error.exitCode, settings: error.settings, cause: error },
  );
}

/** `<run>/checkpoints/<name>` → `<run>`; any other checkpoint dir → its parent. */
function trainingRunDir(ckptDir: string): string {
  const parent = dirname(ckptDir);
  return basename(parent) === 'checkpoints' ? dirname(parent) : parent;
}

/** `test-last-step000200`, `validate-step=000100`: the command, the checkpoint's name and its step. */
function evaluationName(command: string, ckptDir: string, step: number | undefined): string {
  const name = basename(ckptDir);
  const withStep =
    step === undefined || name.includes(String(step).padStart(6, '0'))
      ? name
      : `${name}-step${String(step).padStart(6, '0')}`;
  return `${command}-${withStep}`;
}

/** `dir`, or `dir-2`, `dir-3`… when it exists: a new evaluation never writes over an earlier one. */
function uniqueDir(dir: string): string {
  if (!existsSync(dir)) return dir;
  for (let n = 2; ; n++) if (!existsSync(`${dir}-${n}`)) return `${dir}-${n}`;
}

/**
 * The checkpoint's weights were sized by its data (sequence length, vocabulary, palette): an
 * override that changes them cannot be applied to those weights, so it is refused here, before
 * the run dir is created, naming the setting (e.g. `dataset.image_size`) and both values.
 * @throws TaskforgeError exit code 2.
 */
function assertSameData(
  ckpt: CheckpointRef,
  config: RunConfig,
  datamodule: DataModule,
  trainingOnly: readonly string[],
): void {
  const mismatch = compareCheckpointData(ckpt, {
    modelDataArgs: datamodule.modelDataArgs,
    dataConfig: config.dataset,
    trainingOnly,
  });
  if (!mismatch) return;
  const drop = mismatch.settings.length
    ? `drop the override${mismatch.settings.length > 1 ? 's' : ''} of ` +
      `${mismatch.settings.map((d) => d.key).join(', ')} (the checkpoint's ` +
      `${mismatch.settings.map((d) => `${d.key}=${JSON.stringify(d.checkpoint)}`).join(' ')} is used then)`
    : 'evaluate it with the data settings in its config.yaml';
  throw new TaskforgeError(
    `ckpt=${ckpt.dir}: ${mismatch.message}. Its weights only fit the data ` +
      `they were trained on: ${drop}, or train a model for the new settings.`,
    { exitCode: 2 },
  );
}

/**
 * Data settings that differ from the checkpoint's but leave its weights loadable (the model's data
 * facts agree): the evaluation runs, with a warning naming each setting, both values and the
 * override that restores training's, since a silently different preprocessing scores the model on
 * inputs it never saw (s9: finding 5).
 */
function warnOtherDataSettings(
  ckpt: CheckpointRef,
  config: RunConfig,
  output: Output,
  trainingOnly: readonly string[],
): void {
  const differences = datasetSettingDifferences(ckpt.config, config.dataset, trainingOnly);
  if (!differences.length) return;
  const shown = (v: unknown) => (v === undefined ? 'unset' : JSON.stringify(v));
  output.warn(
    `This evaluation reads the data with other settings than ckpt=${ckpt.dir} was trained with: ` +
      `${differences.map((d) => `${d.key} is ${shown(d.run)} here and ${shown(d.checkpoint)} in its config.yaml`).join(', ')}. ` +
      'Where such a setting changes how the evaluated inputs are prepared (a clip, a normalisation; not a ' +
      'training-only one such as augmentation), the model is scored on inputs prepared otherwise than in ' +
      `training; if that is not what you want, drop ${differences.length === 1 ? 'that override' : 'those overrides'} ` +
      "(the checkpoint's settings are used then).",
  );
}

function restoreFromCheckpoint(
  task: Task,
  checkpoint: Checkpoint,
  output: Output,
  currentConfig: Record<string, unknown>,
): void {
  try {
    restoreTaskWeights(task, checkpoint, { currentConfig });
  } finally {
    checkpoint.dispose();
  }
  output.info(`Loaded weights from ${checkpoint.dir} (step ${checkpoint.trainerState?.globalStep ?? '?'})`);
}

/** The closing summary `train` prints (exported for its tests). */
export function describeFit(result: FitResult, runDir: string, dryRun: boolean): string {
  const epochs = (n: number) => `${n} epoch${n === 1 ? '' : 's'}`;
  const { epochsCompleted: full, batchInEpoch: partial } = result;
  // The partial epoch named by its index, as the progress bar counts: "Epoch 2" is the third.
  const batches = `${partial} batch${partial === 1 ? '' : 'es'} of epoch ${full}`;
  const done =
    partial === 0
      ? `${epochs(full)} trained`
      : full === 0
        ? `${batches} trained`
        : `${epochs(full)} and ${batches} trained`;
  const lines = [
    result.globalStep === result.startStep && result.startStep > 0
      ? `Nothing trained: the checkpoint resumed is at step ${result.globalStep}, the end of this run (${done}).`
      : `Training finished at step ${result.globalStep}: ${done}.`,
  ];
  const metrics = Object.entries(result.metrics)
    .filter(([k]) => k.startsWith('val'))
    .map(([k, v]) => `${k}=${v.toFixed(4)}`);
  if (metrics.length) lines.push(`  last validation: ${metrics.join(' ')}`);
  if (result.bestCheckpoint) {
    lines.push(
      result.checkpointMonitor
        ? `  best checkpoint (${result.checkpointMonitor}${
            result.checkpointBestScore === null
              ? ': no checkpoint had a finite value, so none ranks above another; this is the oldest kept'
              : result.checkpointMode === 'min' && readsHigherIsBetter(result.checkpointMonitor)
                ? ', its LOWEST value: mode=min; set trainer.callbacks.model_checkpoint.mode=max to keep the highest'
                : ''
          }): ${result.bestCheckpoint}`
        : `  newest checkpoint: ${result.bestCheckpoint} (no monitor, so none is ranked best; ` +
            'set trainer.callbacks.model_checkpoint.monitor to a validation metric, e.g. val/loss, to keep the best)',
    );
  }
  if (result.lastCheckpoint) lines.push(`  last checkpoint: ${result.lastCheckpoint}`);
  if (dryRun) lines.push('  fast_dev_run: no checkpoints were written');
  // Only paths that exist: no samples line when the run made none (fast_dev_run, short runs, no sampler).
  const listed: Array<[string, string]> = [
    ['logs:   ', join(runDir, 'logs')],
    ['samples:', join(runDir, 'samples')],
    ['config: ', join(runDir, 'config.yaml')],
  ];
  for (const [label, path] of listed)
    if (existsSync(path) && (!path.endsWith('samples') || readdirSync(path).length > 0))
      lines.push(`  ${label}         ${path}`);
  return lines.join('\n');
}

function describeMetrics(stage: string, result: TestResult, file: string | undefined): string {
  const lines = [`${stage} results:`];
  for (const [k, v] of Object.entries(result.metrics)) lines.push(`  ${k.padEnd(16)} ${v.toFixed(4)}`);
  for (const [k, v] of Object.entries(result.extras)) lines.push(`  ${k}:${formatExtra(v)}`);
  if (file) lines.push(`  written to ${file}`);
  return lines.join('\n');
}

/** Matrices (e.g. a confusion matrix with class names) print as a table; anything else as JSON. */
function formatExtra(value: unknown): string {
  const table = value as { matrix?: unknown; class_names?: unknown };
  const matrix = Array.isArray(value) ? value : table?.matrix;
  if (!Array.isArray(matrix) || !matrix.every((row) => Array.isArray(row))) return ` ${JSON.stringify(value)}`;
  const names = Array.isArray(table.class_names) ? table.class_names.map(String) : matrix.map((_, i) => String(i));
  const width = Math.max(5, ...matrix.flat().map((x) => String(x).length + 1));
  const label = Math.max(...names.map((n) => n.length));
  const header = ' '.repeat(label + 4) + names.map((n) => n.slice(0, width - 1).padStart(width)).join('');
  const rows = (matrix as unknown[][]).map(
    (row, i) => `    ${(names[i] ?? '').padEnd(label)}${row.map((x) => String(x).padStart(width)).join('')}`,
  );
  return `\n${header}\n${rows.join('\n')}`;
}

/**
 * The one place result files (`test_results.json`, `validate_results.json`, `predictions.json`)
 * are written: atomically, as JSON, in the run dir; nothing under `fast_dev_run`. Returns the
 * file written, or undefined.
 */
function writeResults(run: PreparedRun, config: RunConfig, name: string, value: unknown): string | undefined {
  if (config.trainer.fast_dev_run) return undefined;
  const file = join(run.runDir, name);
  writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
  return file;
}
