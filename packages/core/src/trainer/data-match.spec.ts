import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { dataTrainingOnly, trainingOnly } from '../registry/training-only.js';
import { compareCheckpointData, datasetSettingDifferences } from './data-match.js';

const args8 = {
  num_vocab: 4,
  num_positions: 64,
  image_height: 8,
  num_classes: 10,
  palette: [
    [0, 0, 0],
    [9, 9, 9],
  ],
};
const saved = {
  taskState: { modelDataArgs: args8 },
  config: { dataset: { _target_: 'datamodule/x', image_size: 8, batch_size: 4, nested: { a: 1 } } },
};

describe('compareCheckpointData', () => {
  it('finds nothing when the data facts agree, whatever else differs in the dataset config', () => {
    expect(
      compareCheckpointData(saved, {
        modelDataArgs: { ...args8 },
        dataConfig: { ...saved.config.dataset, batch_size: 32 },
      }),
    ).toBeUndefined();
  });

  it('names the dataset settings that differ, then the data facts, scalars before lists', () => {
    const run = {
      modelDataArgs: {
        ...args8,
        palette: [
          [1, 1, 1],
          [9, 9, 9],
        ],
        num_positions: 256,
        image_height: 16,
      },
      dataConfig: { _target_: 'datamodule/x', image_size: 16, batch_size: 4, nested: { a: 2 } },
    };
    const mismatch = compareCheckpointData(saved, run)!;
    expect(mismatch.settings.map((d) => d.key)).toEqual(['dataset.image_size', 'dataset.nested.a']);
    expect(mismatch.modelDataArgs.map((d) => d.key)).toEqual(['num_positions', 'image_height', 'palette']);
    expect(mismatch.message).toBe(
      'the data differs from the data the checkpoint was trained ' +
        'on in dataset.image_size (checkpoint 8, this run 16), ' +
        "dataset.nested.a (checkpoint 1, this run 2), so the model's " +
        'data facts differ: num_positions (checkpoint 64, this run 256), ' +
        'image_height (checkpoint 8, this run 16), palette (2 entries in both, but different values)',
    );
  });

  it('skips ignored keys and keys only one side has; without a dataset config it names the facts alone', () => {
    expect(
      compareCheckpointData(saved, { modelDataArgs: { ...args8, num_classes: 4, extra: 1 } }, ['num_classes']),
    ).toBeUndefined();
    const mismatch = compareCheckpointData(saved, { modelDataArgs: { num_vocab: 8 } })!;
    expect(mismatch.settings).toEqual([]);
    expect(mismatch.message).toBe(
      'the data differs from the data the checkpoint was trained on: num_vocab (checkpoint 4, this run 8)',
    );
  });
});

describe('training-only and loader settings (s10)', () => {
  it('are never named as the cause of different data facts: only settings that can shape a sample', () => {
    const schema = z.strictObject({
      image_size: z.number().default(8),
      batch_size: z.number().default(4),
      augment: trainingOnly(z.boolean().default(false)),
    });
    const registry = {
      has: (t: string) => t === 'datamodule/x',
      resolve: () => ({ schema }),
    };
    const data = { _target_: 'datamodule/x', image_size: 16, batch_size: 32, augment: true };
    expect(dataTrainingOnly(registry, data)).toEqual(['dataset.augment']);
    expect(dataTrainingOnly(registry, { _target_: 'datamodule/other' })).toEqual([]);
    const before = {
      taskState: { modelDataArgs: args8 },
      config: { dataset: { ...data, image_size: 8, batch_size: 4, augment: false } },
    };
    const mismatch = compareCheckpointData(before, {
      modelDataArgs: { ...args8, num_positions: 256 },
      dataConfig: data,
      trainingOnly: dataTrainingOnly(registry, data),
    })!;
    expect(mismatch.settings.map((d) => d.key)).toEqual(['dataset.image_size']);
    expect(datasetSettingDifferences(before.config, data, ['dataset.augment']).map((d) => d.key)).toEqual([
      'dataset.image_size',
    ]);
  });
});
