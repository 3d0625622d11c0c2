/**
 * What each CLI command does, in plain steps: compose the config, create the Trainer (which picks
 * the backend and the run dir), build the components through the registry, and hand them to it.
 * The CLI only parses arguments.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { stringify } from 'yaml';
import type { DataModule, ModelDataArgs, Stage, Task } from '../contracts.js';
import { toYaml } from '../config/index.js';
import type { ConfigNode } from '../config/paths.js';
import { ConfigError, TaskforgeError } from '../errors.js';
import { writeFileAtomic } from '../fs.js';
import type { Instantiator } from '../registry/instantiator.js';
import { COMPONENT_KINDS } from '../registry/types.js';
import { Tokens, type Output } from '../services/tokens.js';
import { loadCheckpoint, restoreTaskWeights, type Checkpoint } from '../trainer/checkpoint.js';
import { prepareAndSetup, teardownData } from '../trainer/data-setup.js';
import { Trainer, type FitResult, type TestResult } from '../trainer/trainer.js';
import type { RunConfig, Session } from './session.js';

export interface CommandOptions {
  overrides: string[];
  /** A checkpoint dir: `test`, `validate`, `predict` and `sample` evaluate its weights with its config. */
  ckpt?: string;
}

/** `taskforge train`: fit the configured task; prints where everything went. */
export async function trainCommand(session: Session, options: CommandOptions): Promise<FitResult> {
  const { config } = session.compose(options.overrides);
  const run = await prepareRun(session, config, 'train');
  const datamodule = run.buildDatamodule();
  await prepareAndSetup(datamodule, 'fit');
  const task = run.buildTask(datamodule.modelDataArgs);
  const result = await run.trainer.fit(task, datamodule); // it resumes from trainer.resume_from itself
  run.output.info(describeFit(result, run.runDir, config.trainer.fast_dev_run));
  task.dispose();
  return result;
}

/** `taskforge validate|test`: evaluate a checkpoint (or freshly initialised weights) on a split. */
export async function evaluateCommand(session: Session, stage: 'validate' | 'test', options: CommandOptions): Promise<TestResult> {
  const { config, run, datamodule, task } = await openForEvaluation(session, options, stage, stage);
  const result: TestResult = stage === 'test'
    ? await run.trainer.test(task, datamodule)
    : { metrics: await run.trainer.validate(task, datamodule), extras: {} };
  // The Trainer writes test_results.json itself; validation results are written here.
  const resultsFile = join(run.runDir, `${stage}_results.json`);
  if (stage === 'validate' && !config.trainer.fast_dev_run) writeJson(resultsFile, result);
  run.output.info(describeMetrics(stage, result, config.trainer.fast_dev_run ? undefined : resultsFile));
  task.dispose();
  return result;
}

/** `taskforge predict`: run `predictStep` over the predict split; outputs go to predictions.json. */
export async function predictCommand(session: Session, options: CommandOptions): Promise<unknown[]> {
  const { run, datamodule, task } = await openForEvaluation(session, options, 'predict', 'predict', 'predictStep');
  const outputs = await run.trainer.predict(task, datamodule);
  const file = join(run.runDir, 'predictions.json');
  writeJson(file, outputs);
  run.output.info(`Wrote ${outputs.length} prediction batches to ${file}`);
  task.dispose();
  return outputs;
}

/** `taskforge sample ckpt=<dir>`: samples from a generative task into `<run dir>/samples`. */
export async function sampleCommand(session: Session, options: CommandOptions): Promise<string[]> {
  const { config, run, datamodule, task, step } = await openForEvaluation(session, options, 'sample', 'test', 'sample');
  const outDir = join(run.runDir, 'samples');
  await mkdir(outDir, { recursive: true });
  const { files } = await task.sample!({ outDir, datamodule, seed: config.trainer.seed, tag: step === undefined ? 'init' : `step${String(step).padStart(6, '0')}` });
  run.output.info(`Samples written:\n${files.map((f) => `  ${f}`).join('\n')}`);
  task.dispose();
  await teardownData(datamodule);
  return files;
}

/**
 * What every evaluating command does first: compose (on top of the checkpoint's config when
 * `ckpt=` is given), choose the backend, set up the data for `stage`, build the task with the
 * checkpoint's data facts, check it can do what the command needs, and restore its weights.
 */
async function openForEvaluation(
  session: Session, options: CommandOptions, command: string, stage: Stage, needs?: 'predictStep' | 'sample',
): Promise<{ config: RunConfig; run: PreparedRun; datamodule: DataModule; task: Task; step: number | undefined }> {
  const { config, ckptDir } = composeForCheckpoint(session, options);
  const run = await prepareRun(session, config, command);
  // Loaded only now, after prepareRun chose the backend, so the weights land on it.
  const checkpoint = ckptDir ? await loadCheckpoint(ckptDir, { optimizer: false }) : undefined;
  const datamodule = run.buildDatamodule();
  await prepareAndSetup(datamodule, stage);
  const task = run.buildTask(modelDataArgsFor(datamodule, checkpoint, run.output));
  if (needs && !task[needs]) {
    checkpoint?.dispose();
    throw new TaskforgeError(`The task '${String(config.task?._target_)}' does not support \`${command}\` (it has no ${needs} method).`, { exitCode: 2 });
  }
  if (checkpoint) restoreFromCheckpoint(task, checkpoint, run.output);
  return { config, run, datamodule, task, step: checkpoint?.trainerState?.globalStep };
}

/** `taskforge config`: the composed, validated config as YAML, each value with its source. */
export function configCommand(session: Session, options: CommandOptions & { sources?: boolean }): string {
  const { config, sources } = session.compose(options.overrides);
  return toYaml(config as ConfigNode, options.sources === false ? {} : { sources });
}

/** `taskforge list`: registered components by kind (with their packages) and config groups. */
export function listCommand(session: Session): string {
  const lines: string[] = ['Plugins:'];
  for (const p of session.plugins) lines.push(`  ${p.packageName}@${p.version}  ${relative(process.cwd(), p.dir) || '.'}`);
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
  /** Made first, so the backend it selects is active before any weights are built. */
  trainer: Trainer;
  buildDatamodule(): DataModule;
  buildTask(modelDataArgs: ModelDataArgs): Task;
}

async function prepareRun(session: Session, config: RunConfig, command: string): Promise<PreparedRun> {
  const { container } = session;
  const output = container.resolve<Output>(Tokens.Output);
  const instantiator = container.resolve<Instantiator>(Tokens.Instantiator);
  for (const section of ['task', 'dataset'] as const) {
    if (!config[section]) {
      throw new ConfigError([{ path: section, message: `no ${section} is configured; choose one on the command line, e.g. task=vision/igpt (see \`taskforge list\`)` }], 'Nothing to run');
    }
  }
  // The Trainer selects the backend, resolves the run dir and builds callbacks, loggers and the optimizer builders.
  const trainer = await Trainer.create(config, { container, projectRoot: session.projectRoot });
  const { runDir } = trainer;
  writeFileAtomic(join(runDir, 'config.yaml'), stringify(config));
  output.info(`taskforge ${command}: run dir ${runDir}`);

  return {
    runDir,
    output,
    trainer,
    buildDatamodule: () => instantiator.create('datamodule', config.dataset, { container }, 'dataset'),
    buildTask(modelDataArgs) {
      const backbone = instantiator.create('backbone', config.backbone, { container, modelDataArgs }, 'backbone');
      return instantiator.create('task', config.task, { container, modelDataArgs, backbone }, 'task');
    },
  };
}

/**
 * With `ckpt=<dir>`, the checkpoint's saved config is the base and the command-line overrides
 * apply on top of it (values only: its config groups were already resolved when it was saved).
 */
function composeForCheckpoint(session: Session, options: CommandOptions): { config: RunConfig; ckptDir?: string } {
  if (!options.ckpt) return { config: session.compose(options.overrides).config };
  const ckptDir = resolve(options.ckpt);
  if (!existsSync(join(ckptDir, 'config.yaml'))) {
    throw new TaskforgeError(`ckpt=${options.ckpt}: ${ckptDir} is not a taskforge checkpoint (it has no config.yaml); pass a checkpoint directory such as <run dir>/checkpoints/last.`, { exitCode: 2 });
  }
  const { config } = session.compose(options.overrides, { searchPath: [ckptDir, ...session.searchPath], configName: 'config' });
  return { config, ckptDir };
}

/** A checkpoint carries the data facts its weights were trained with; those win over the data's. */
function modelDataArgsFor(datamodule: DataModule, checkpoint: Checkpoint | undefined, output: Output): ModelDataArgs {
  if (!checkpoint) return datamodule.modelDataArgs;
  const saved = checkpoint.taskState.modelDataArgs;
  const differing = Object.keys(saved).filter((k) => k in datamodule.modelDataArgs && !isDeepStrictEqual(saved[k], datamodule.modelDataArgs[k]));
  if (differing.length) {
    output.warn(`the data module reports different ${differing.join(', ')} than checkpoint ${checkpoint.dir} was trained with; using the checkpoint's.`);
  }
  return saved;
}

function restoreFromCheckpoint(task: Task, checkpoint: Checkpoint, output: Output): void {
  restoreTaskWeights(task, checkpoint);
  checkpoint.dispose();
  output.info(`Loaded weights from ${checkpoint.dir} (step ${checkpoint.trainerState?.globalStep ?? '?'})`);
}

function describeFit(result: FitResult, runDir: string, dryRun: boolean): string {
  const lines = [`Training finished at step ${result.globalStep} (epoch ${result.epoch}).`];
  const metrics = Object.entries(result.metrics).filter(([k]) => k.startsWith('val')).map(([k, v]) => `${k}=${v.toFixed(4)}`);
  if (metrics.length) lines.push(`  last validation: ${metrics.join(' ')}`);
  if (result.bestCheckpoint) lines.push(`  best checkpoint: ${result.bestCheckpoint}`);
  if (result.lastCheckpoint) lines.push(`  last checkpoint: ${result.lastCheckpoint}`);
  if (dryRun) lines.push('  fast_dev_run: no checkpoints were written');
  lines.push(`  logs:            ${join(runDir, 'logs')}`, `  samples:         ${join(runDir, 'samples')}`, `  config:          ${join(runDir, 'config.yaml')}`);
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
  const rows = (matrix as unknown[][]).map((row, i) => `    ${(names[i] ?? '').padEnd(label)}${row.map((x) => String(x).padStart(width)).join('')}`);
  return `\n${header}\n${rows.join('\n')}`;
}

function writeJson(file: string, value: unknown): void {
  writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}
