import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll } from 'vitest';
import type { Callback } from '../../src/contracts.js';
import { Trainer, type TrainerDeps } from '../../src/trainer/trainer.js';
import type { TrainerConfigInput } from '../../src/trainer/config.js';
import { RecordingLogger, RecordingOutput } from '../toy/toy.js';

/** CPU backend and a scratch directory removed after the file's tests. */
export function useScratch(): { dir: () => string } {
  let dir = '';
  beforeAll(async () => {
    await tf.setBackend('cpu');
    dir = await mkdtemp(join(tmpdir(), 'taskforge-trainer-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  return { dir: () => dir };
}

let runs = 0;

export function makeTrainer(
  root: string,
  config: TrainerConfigInput = {},
  callbacks: Callback[] = [],
  deps: Partial<TrainerDeps> = {},
): { trainer: Trainer; logger: RecordingLogger; output: RecordingOutput; runDir: string } {
  const logger = new RecordingLogger();
  const output = new RecordingOutput();
  const runDir = join(root, `run${runs++}`);
  const trainer = new Trainer(
    { num_sanity_val_steps: 0, log_every_n_steps: 1, accelerator: 'cpu', ...config },
    {
      callbacks,
      loggers: [logger],
      runDir,
      output,
      clock: { now: () => Date.UTC(2024, 0, 2, 3, 4, 5) },
      composedConfig: { trainer: config, note: 'toy' },
      ...deps,
    },
  );
  return { trainer, logger, output, runDir };
}
