/**
 * The `taskforge` command line. It parses arguments and nothing else: every command is a
 * function in @taskforge/core's app layer, so the CLI stays thin and the logic stays testable.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import {
  Session,
  TaskforgeError,
  isTaskforgeError,
  configCommand,
  evaluateCommand,
  listCommand,
  predictCommand,
  sampleCommand,
  trainCommand,
  type CommandOptions,
} from '@taskforge/core';

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string })
  .version;

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

const OVERRIDES_HELP = `
Overrides (Hydra's override grammar, any number, in order):
  key.path=value     change a value:        trainer.max_steps=200
  group=option       pick a config file:    task=vision/igpt
  +key.path=value    add a new key:         '+trainer.callbacks.x={_target_: callback/lr_monitor}'
  ++key.path=value   add or replace
  ~key.path          delete a key or group: ~trainer.loggers.tensorboard
  --key.path=value   same as key.path=value
Values: 3, 10_000, 3e-3, inf, true, null, [1, 2], {a: 1}, \${other.key}, 'quoted text'.
Quote a value holding # , = ( ) or ~ (and the whole override for the shell): "trainer.run_dir='/tmp/exp #1'".
Sweeps (a=1,2, --multirun/-m) and functions (choice(...)) are not supported: run one command per value.`;

/** Runs the CLI; resolves to the process exit code (0 ok, 1 runtime failure, 2 usage/config error). */
export async function main(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  let verbose = argv.includes('--verbose') || argv.includes('-v');
  const program = new Command('taskforge')
    .description('Train transformer models as task plugins (TensorFlow.js).')
    .version(VERSION, '-V, --version')
    .option('-v, --verbose', 'print stack traces for errors')
    .option('--config-dir <dir>', 'project config dir, searched first (default: <project>/conf)')
    .option('--config-name <name>', 'primary config file name without .yaml', 'config')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .exitOverride();

  /** Opens the session; `overrides` (a command's) may list extra plugins with `plugins=[…]`. */
  const session = (overrides: string[] = []) => {
    const opts = program.opts<{ configDir?: string; configName: string }>();
    return Session.open({
      ...(opts.configDir ? { configDir: opts.configDir } : {}),
      configName: opts.configName,
      overrides,
    });
  };

  const withOverrides = (name: string, description: string, extra = '') =>
    program
      .command(name)
      .description(description)
      .argument('[overrides...]', 'config overrides, e.g. trainer.max_steps=200')
      .allowUnknownOption(true)
      .addHelpText('after', extra + OVERRIDES_HELP);

  withOverrides('train', 'fit the configured task (checkpoints, logs and samples go to the run dir)').action(
    async (args: string[]) => {
      await trainCommand(await session(commandOptions(args).overrides), commandOptions(args));
    },
  );
  withOverrides('validate', 'evaluate on the validation split', CKPT_HELP).action(async (args: string[]) => {
    await evaluateCommand(await session(commandOptions(args).overrides), 'validate', commandOptions(args));
  });
  withOverrides('test', 'evaluate on the test split (loss, metrics, task extras)', CKPT_HELP).action(
    async (args: string[]) => {
      await evaluateCommand(await session(commandOptions(args).overrides), 'test', commandOptions(args));
    },
  );
  withOverrides('predict', "run the task's predictStep over the predict split", CKPT_HELP).action(
    async (args: string[]) => {
      await predictCommand(await session(commandOptions(args).overrides), commandOptions(args));
    },
  );
  withOverrides('sample', 'write samples from a generative task (e.g. image completions)', CKPT_HELP).action(
    async (args: string[]) => {
      await sampleCommand(await session(commandOptions(args).overrides), commandOptions(args));
    },
  );
  withOverrides('config', 'print the composed config as YAML, with where each value came from')
    .addOption(new Option('--no-sources', 'omit the "# from ..." comments'))
    .action(async (args: string[], opts: { sources: boolean }) => {
      io.stdout(
        configCommand(await session(commandOptions(args).overrides), {
          ...commandOptions(args.filter((a) => a !== '--no-sources')),
          sources: opts.sources,
        }),
      );
    });
  program
    .command('plot')
    .description("draw a run's curves (metrics.csv) and confusion matrix (test results) as PNG")
    .argument('<target>', 'a run dir, a metrics.csv, or a test results JSON')
    .option('--out <file>', 'where to write the curves PNG (default <run dir>/plots/curves.png)')
    .action(async (target: string, opts: { out?: string }) => {
      const { plotCommand } = await import('./plot.js');
      const result = await plotCommand(target, opts.out ? { out: opts.out } : {});
      const curves = result.points
        ? ` (${result.points} points in ${result.panels.length} panels: ${result.panels.join(', ')}` +
          `${result.aliases.length ? `; not drawn twice: ${result.aliases.join(', ')}` : ''})`
        : '';
      io.stdout(`wrote ${result.files.join(', ')}${curves}\n`);
    });
  program
    .command('list')
    .description('list plugins, registered components by kind, and the config search path')
    .action(async () => {
      io.stdout(listCommand(await session()) + '\n');
    });

  try {
    refuseMultirun(argv); // before commander, which would call `-m` an unknown option in front of a command
    refuseHydraCfg(argv);
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    verbose ||= Boolean(program.opts().verbose);
    return report(error, io, verbose);
  }
}

const CKPT_HELP = `
Checkpoint:
  ckpt=<dir>         evaluate this checkpoint with the config it was trained with
                     (overrides still apply on top of it); required
  ckpt=none          use freshly initialised, untrained weights instead`;

/** Hydra's sweep flags; taskforge runs one config per command. */
const MULTIRUN_FLAGS = ['--multirun', '-m'];

/**
 * Refuses Hydra's `--multirun`/`-m` anywhere in `args`, before it could be read as an override.
 * @throws TaskforgeError exit code 2 saying sweeps are not supported and to run one command per value.
 */
export function refuseMultirun(args: readonly string[]): void {
  if (!args.some((a) => MULTIRUN_FLAGS.includes(a) || a.startsWith('--multirun='))) return;
  throw new TaskforgeError(
    '--multirun/-m: sweeps are not supported by taskforge; run one command per value (e.g. ' +
      '`taskforge train trainer.seed=1`, then `taskforge train trainer.seed=2`); see "Differences from Hydra" ' +
      'in docs/configuration.md.',
    { exitCode: 2 },
  );
}

/**
 * Refuses Hydra's `--cfg job|hydra|all` (print the config), pointing at `taskforge config`.
 * @throws TaskforgeError exit code 2.
 */
export function refuseHydraCfg(args: readonly string[]): void {
  if (!args.some((a) => a === '--cfg' || a === '-c' || a.startsWith('--cfg='))) return;
  throw new TaskforgeError(
    "--cfg: to print the composed config, run `taskforge config <overrides>` (Hydra's --cfg job); " +
      'see "Differences from Hydra" in docs/configuration.md.',
    { exitCode: 2 },
  );
}

/**
 * Splits `ckpt=...` from the config overrides and normalises `--key=value` to `key=value`.
 * @throws TaskforgeError exit code 2 for Hydra's `--multirun`/`-m` (see {@link refuseMultirun}).
 */
export function commandOptions(args: string[]): CommandOptions {
  refuseMultirun(args);
  refuseHydraCfg(args);
  let ckpt: string | undefined;
  const overrides: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const raw = args[i]!;
    if (raw === '--verbose' || raw === '-v') continue;
    // Lightning's argparse flags: `--fast_dev_run` alone means true, `--max_epochs=1` and
    // `--max_epochs 1` set a value; all are read as overrides, whose errors then name the full key
    // (trainer.fast_dev_run). A word after `--key` is its value unless it is an override or flag itself.
    const next = args[i + 1];
    const valueNext = next !== undefined && !next.includes('=') && !/^[-+~]/.test(next);
    let flag = raw;
    if (raw.startsWith('--') && !raw.includes('=')) {
      flag = valueNext ? `${raw}=${next}` : `${raw}=true`;
      if (valueNext) i += 1;
    }
    const arg = flag.startsWith('--') ? flag.slice(2) : flag;
    if (arg.startsWith('ckpt=')) ckpt = arg.slice('ckpt='.length);
    else overrides.push(arg);
  }
  return { overrides, ...(ckpt !== undefined ? { ckpt } : {}) };
}

function report(error: unknown, io: CliIo, verbose: boolean): number {
  if (error instanceof CommanderError) {
    // Help and --version "fail" with exit code 0; real usage mistakes are exit code 2.
    return error.exitCode === 0 ? 0 : 2;
  }
  if (isTaskforgeError(error)) {
    io.stderr(`error: ${error.message}\n`);
    if (verbose && error.stack) io.stderr(`${error.stack}\n`);
    // A wrapped error (e.g. a data module's own exception) keeps its stack in `cause`.
    if (verbose && error.cause instanceof Error && error.cause.stack) io.stderr(`caused by: ${error.cause.stack}\n`);
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  io.stderr(`error: ${message}\n`);
  if (verbose && error instanceof Error && error.stack) io.stderr(`${error.stack}\n`);
  else io.stderr('(this looks like a bug in taskforge or a plugin; run again with --verbose for the stack trace)\n');
  return 1;
}

function defaultIo(): CliIo {
  return { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) };
}
