/**
 * What a run dir holds: a run's outputs (checkpoints, metrics rows, TensorBoard events, results,
 * samples, anything else) as opposed to the skeleton every run writes before its first step (its
 * `config.yaml`, each logger's `hparams.yaml`, an events file holding only the hyper-parameters, a
 * header-only `metrics.csv`, empty dirs). One definition serves both sides: a new run refuses a
 * run dir that holds outputs (they would be overwritten), and a run that fails early removes the
 * dir it created when nothing but the skeleton is in it.
 */
import { existsSync, readFileSync, readdirSync, realpathSync, rmSync, statSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { parse } from 'csv-parse/sync';
import { overrideHint } from '../config/override-grammar.js';
import { TaskforgeError } from '../errors.js';
import { eventsHoldData } from '../loggers/tfevents.js';

/** At most this many outputs are named in a message; the rest are counted. */
const LISTED = 6;

/**
 * The outputs of a run found in `dir`, one line each, relative to `dir`: a checkpoint as its dir
 * (`checkpoints/last`), a metrics file with its rows (`logs/csv/metrics.csv (4 rows, steps 0-3)`),
 * any other file by its path. Empty when `dir` does not exist or holds only the skeleton of a run
 * that wrote nothing yet (see the module comment). Files that cannot be read count as outputs.
 * Symlinks count as outputs and are not followed.
 */
export function runDirOutputs(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const outputs = new Set<string>();
  const walk = (at: string): void => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      const rel = relative(dir, path);
      const parts = rel.split(/[\\/]/);
      if (entry.isDirectory()) {
        walk(path);
        continue;
      }
      if (parts[0] === 'checkpoints' && parts.length > 2) {
        outputs.add(`checkpoints/${parts[1]}`);
        continue;
      }
      if (!entry.isFile()) {
        outputs.add(rel);
        continue;
      }
      if (rel === 'config.yaml' || entry.name === 'hparams.yaml') continue;
      if (entry.name === 'metrics.csv') {
        const rows = metricsRows(path);
        if (rows !== '') outputs.add(`${rel} (${rows})`);
        continue;
      }
      if (entry.name.startsWith('events.out.tfevents.')) {
        if (eventsFileHoldsData(path)) outputs.add(rel);
        continue;
      }
      outputs.add(rel);
    }
  };
  walk(dir);
  return [...outputs].sort();
}

/** `4 rows, steps 0-3`; '' for a header-only or empty file; `unreadable` when it cannot be parsed. */
function metricsRows(path: string): string {
  try {
    const records = parse(readFileSync(path, 'utf8'), {
      relax_column_count: true,
      skip_empty_lines: true,
    }) as string[][];
    const rows = records.slice(1);
    if (rows.length === 0) return '';
    const steps = rows.map((r) => r[0]);
    return `${rows.length} row${rows.length === 1 ? '' : 's'}, steps ${steps[0]}-${steps.at(-1)}`;
  } catch {
    return 'unreadable';
  }
}

function eventsFileHoldsData(path: string): boolean {
  try {
    return eventsHoldData(readFileSync(path));
  } catch {
    return true;
  }
}

/**
 * Removes `dir` when it holds no output of a run (only the skeleton: config.yaml, hparams, an
 * events file with only the hyper-parameters, empty dirs). Returns true when it removed `dir`;
 * false, touching nothing, when `dir` is missing or holds any output. The caller decides whether
 * the dir is its own to remove (never one that existed before the run).
 */
export function removeRunDirIfBare(dir: string): boolean {
  if (!existsSync(dir) || runDirOutputs(dir).length > 0) return false;
  rmSync(dir, { recursive: true, force: true });
  return true;
}

/** Options of {@link assertRunDirFree}. */
export interface RunDirCheck {
  /** The command about to write there: `train`, `test`, `validate`, `predict`, `sample`. */
  command: string;
  /** `trainer.run_dir` as the user gave it (named in the message); absent for the default dir. */
  given?: string | null;
  /** `trainer.resume_from` (resolved against the cwd, as it is read): a checkpoint inside `runDir` continues that run there. */
  resumeFrom?: string | null;
}

/**
 * Refuses to start a command in a run dir that already holds a run's outputs (checkpoints,
 * metrics rows, events, results, samples, other files; see {@link runDirOutputs}): training there
 * would overwrite its checkpoints and `config.yaml` and append a second run's steps to its logs;
 * an evaluation would overwrite its `config.yaml` and results. A missing or empty dir, or one
 * holding only a skeleton, passes. `train` with `resumeFrom` inside `runDir` passes too: resuming
 * continues that run in place, and `sample` passes a dir holding only earlier samples (it never
 * replaces one) (Lightning warns that a checkpoint dir "exists and is not empty";
 * this refuses, since the checkpoints would be overwritten).
 * @throws TaskforgeError exit code 2 naming the dir, what it holds and the fixes (resume from its
 *   `checkpoints/last`, another `trainer.run_dir`, or deleting the dir).
 */
export function assertRunDirFree(runDir: string, check: RunDirCheck): void {
  if (check.command === 'train' && check.resumeFrom && isInside(runDir, check.resumeFrom)) return;
  // `sample` never replaces a file (a second grid gets `-2`): earlier samples alone do not stop it.
  const outputs = runDirOutputs(runDir).filter((o) => check.command !== 'sample' || !o.startsWith('samples/'));
  if (outputs.length === 0) return;
  const listed =
    outputs.slice(0, LISTED).join(', ') + (outputs.length > LISTED ? ` and ${outputs.length - LISTED} more` : '');
  const where = check.given ? `trainer.run_dir=${check.given}: the run dir ${runDir}` : `The run dir ${runDir}`;
  const head = `${where} already holds a run (${listed}).`;
  const elsewhere = check.given
    ? 'pick another trainer.run_dir (or leave it unset for a new dir)'
    : 'run again (a new dir is chosen) or set trainer.run_dir to a new dir';
  if (check.command === 'train') {
    const resumable = resumeCandidate(runDir);
    const resume = resumable
      ? `To continue that run in it, keep ${overrideHint('trainer.run_dir', check.given ?? runDir)} and add ${overrideHint('trainer.resume_from', resumable)} (without trainer.run_dir, a resumed run writes to a new run dir); to start a new run, `
      : 'To start a new run, ';
    const note =
      check.resumeFrom && !isInside(runDir, check.resumeFrom)
        ? ` (trainer.resume_from=${check.resumeFrom} is not a checkpoint of this run dir, so this would be a new run in it.)`
        : '';
    throw new TaskforgeError(
      `${head} Training into it would overwrite its checkpoints and config.yaml and append this run's steps to its logs.${note} ` +
        `${resume}${elsewhere}, or delete ${runDir} if it is not needed.`,
      { exitCode: 2 },
    );
  }
  throw new TaskforgeError(
    // predict logs no metrics: it only writes config.yaml and predictions.json.
    `${head} \`taskforge ${check.command}\` would overwrite its config.yaml and results${check.command === 'predict' ? '' : ' and add to its logs'}. ` +
      `To keep it, ${elsewhere}; or delete ${runDir} if it is not needed.`,
    { exitCode: 2 },
  );
}

/** `<runDir>/checkpoints/last` when it is a checkpoint, else the newest-named resumable checkpoint there. */
function resumeCandidate(runDir: string): string | undefined {
  const dir = join(runDir, 'checkpoints');
  if (!existsSync(dir)) return undefined;
  const names = readdirSync(dir)
    .filter((n) => existsSync(join(dir, n, 'trainer_state.json')))
    .sort();
  const name = names.includes('last') ? 'last' : names.at(-1);
  return name === undefined ? undefined : join(dir, name);
}

/** Whether `path` (resolved against the cwd) lies inside `dir`, symlinks resolved. */
function isInside(dir: string, path: string): boolean {
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  };
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return false;
  const rel = relative(real(dir), real(path));
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}
