/** Synthetic 8×8 palette images and helpers shared by the task-igpt tests. */
import * as tf from '@tensorflow/tfjs';
import { container } from 'tsyringe';
import { Adam, type DataLoaderOptions, type DataModule, type StepContext } from '@taskforge/core';
import { createGpt2, gpt2Schema } from '@taskforge/backbone-gpt2';
import { igptTaskSchema, igptTaskSpec, type IgptBatch, type ImageGptTask } from '../src/index.js';

export const H = 8;
export const W = 8;
export const T = H * W;
export const palette = [
  [0, 0, 0],
  [255, 0, 0],
  [0, 255, 0],
  [0, 0, 255],
];
export const dataArgs = {
  num_vocab: 4,
  num_positions: T,
  num_classes: 3,
  image_height: H,
  image_width: W,
  palette,
  class_names: ['ab', 'cd', 'ad'],
};

/** Class c is a checkerboard of two colours; the pairs differ, so classes are separable by colour counts. */
const CLASS_COLOURS = [
  [0, 1],
  [2, 3],
  [0, 3],
];

export function imageOf(label: number, phase = 0): Int32Array {
  const img = new Int32Array(T);
  for (let r = 0; r < H; r++) for (let c = 0; c < W; c++) img[r * W + c] = CLASS_COLOURS[label]![(r + c + phase) % 2]!;
  return img;
}

export function batchOf(labels: number[], phases: number[] = labels.map(() => 0)): IgptBatch {
  const tokens = new Int32Array(labels.length * T);
  labels.forEach((l, i) => tokens.set(imageOf(l, phases[i]), i * T));
  return { tokens, labels: Int32Array.from(labels), size: labels.length, indices: Int32Array.from(labels.keys()) };
}

export function makeTask(
  taskConfig: Record<string, unknown> = {},
  options: { seed?: number; args?: Record<string, unknown> } = {},
): ImageGptTask {
  const args = options.args ?? dataArgs;
  const backbone = createGpt2(gpt2Schema.parse({ num_layers: 2, embed_dim: 16, init_seed: options.seed ?? 0 }), args);
  return igptTaskSpec.create(igptTaskSchema.parse(taskConfig), {
    container: container.createChildContainer(),
    modelDataArgs: args,
    backbone,
  }) as ImageGptTask;
}

export interface Logged {
  value: number;
  weight: number | undefined;
}

/** A StepContext that reads every logged value immediately, like the Trainer does after a step. */
export function recordingContext(training: boolean, seed = 1): { ctx: StepContext; logs: Map<string, Logged[]> } {
  const logs = new Map<string, Logged[]>();
  const ctx: StepContext = {
    globalStep: 0,
    epoch: 0,
    batchIdx: 0,
    training,
    seed,
    log(name, value, options) {
      const v = typeof value === 'number' ? value : value.dataSync()[0]!;
      if (typeof value !== 'number') value.dispose();
      logs.set(name, [...(logs.get(name) ?? []), { value: v, weight: options?.weight }]);
    },
  };
  return { ctx, logs };
}

/** Trains like the Trainer: variableGrads over the task's variables, then Adam over all of them. */
export function fit(task: ImageGptTask, batch: IgptBatch, steps: number, lr = 1e-2): number[] {
  const optimizer = new Adam(task.namedVariables(), { lr });
  const named = task.namedVariables();
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    const { ctx } = recordingContext(true, s);
    const { value, grads } = tf.variableGrads(() => task.trainingStep(batch, ctx), Object.values(named));
    optimizer.applyGradients(Object.fromEntries(Object.entries(named).map(([n, v]) => [n, grads[v.name]!])));
    losses.push(value.dataSync()[0]!);
    tf.dispose([value, grads]);
  }
  optimizer.dispose();
  return losses;
}

/** A data module whose every split is the same fixed synthetic batches. */
export class SyntheticImages implements DataModule<IgptBatch> {
  readonly modelDataArgs = dataArgs;
  readonly setupCalls: string[] = [];
  constructor(readonly batches: IgptBatch[]) {}
  async prepareData(): Promise<void> {}
  async setup(stage: string): Promise<void> {
    this.setupCalls.push(stage);
  }
  async *trainDataloader(): AsyncIterable<IgptBatch> {
    yield* this.batches;
  }
  async *valDataloader(_options: DataLoaderOptions): AsyncIterable<IgptBatch> {
    yield* this.batches;
  }
  async *testDataloader(_options: DataLoaderOptions): AsyncIterable<IgptBatch> {
    yield* this.batches;
  }
  numBatches(): number {
    return this.batches.length;
  }
}
