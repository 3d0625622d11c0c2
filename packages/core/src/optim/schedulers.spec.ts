import * as tf from '@tensorflow/tfjs';
import * as tsyringe from 'tsyringe';
import { describe, expect, it } from 'vitest';
import type { NamedVariables } from '../contracts.js';
import { Adam } from './adam.js';
import { constantSchedule, warmupCosineSchedule, warmupLinearSchedule } from './schedulers.js';
import { optimizerSpecs, schedulerSpecs } from './specs.js';
import { Sgd } from './sgd.js';

const base = 2e-3;
const at = (s: { lrAt(step: number): number }, steps: number[]) => steps.map((step) => s.lrAt(step) / base);

describe('schedulers (warmup 10, total 110)', () => {
  const options = { baseLr: base, totalSteps: 110, warmupSteps: 10 };

  it('constant: ramps over warmup then holds', () => {
    expect(at(constantSchedule(base, { warmupSteps: 10 }), [0, 5, 10, 60, 110, 500])).toEqual([0, 0.5, 1, 1, 1, 1]);
    expect(constantSchedule(base).lrAt(0)).toBe(base);
  });

  it('warmup_cosine: 0, half, full, half-way down, floor at the end and after', () => {
    const values = at(warmupCosineSchedule(options), [0, 5, 10, 60, 110, 200]);
    [0, 0.5, 1, 0.5, 0, 0].forEach((v, i) => expect(values[i]).toBeCloseTo(v, 12));
    const floored = at(warmupCosineSchedule({ ...options, minLrRatio: 0.1 }), [10, 35, 60, 110, 200]);
    const quarter = 0.5 * (1 + Math.cos(Math.PI / 4));
    [1, 0.1 + 0.9 * quarter, 0.55, 0.1, 0.1].forEach((v, i) => expect(floored[i]).toBeCloseTo(v, 12));
  });

  it('warmup_linear: 0, half, full, half-way down, floor at the end and after', () => {
    const values = at(warmupLinearSchedule(options), [0, 5, 10, 60, 110, 200]);
    [0, 0.5, 1, 0.5, 0, 0].forEach((v, i) => expect(values[i]).toBeCloseTo(v, 12));
    const floored = at(warmupLinearSchedule({ ...options, minLrRatio: 0.2 }), [60, 110]);
    [0.6, 0.2].forEach((v, i) => expect(floored[i]).toBeCloseTo(v, 12));
  });

  it('without warmup starts at the base lr', () => {
    expect(warmupCosineSchedule({ baseLr: base, totalSteps: 10 }).lrAt(0)).toBe(base);
    expect(warmupLinearSchedule({ baseLr: base, totalSteps: 10 }).lrAt(5)).toBeCloseTo(base / 2, 15);
  });

  it('rejects bad settings and steps', () => {
    expect(() => warmupCosineSchedule({ baseLr: base, totalSteps: 10, minLrRatio: 2 })).toThrow(
      /min_lr_ratio must be in \[0, 1\] \(got 2\)/,
    );
    expect(() => warmupLinearSchedule({ baseLr: base, totalSteps: 10, warmupSteps: 1.5 })).toThrow(
      /warmup_steps must be a non-negative integer/,
    );
    expect(() => warmupLinearSchedule(options).lrAt(-1)).toThrow(/step must be a non-negative integer, got -1/);
  });
});

describe('registered specs', () => {
  const optimizer = (name: string) => optimizerSpecs.find((s) => s.name === name)!;
  const scheduler = (name: string) => schedulerSpecs.find((s) => s.name === name)!;
  const container = tsyringe.container.createChildContainer();

  it('fills PyTorch-like defaults and rejects unknown keys', () => {
    expect(optimizer('adamw').schema.parse({})).toEqual({
      lr: 1e-3,
      betas: [0.9, 0.999],
      eps: 1e-8,
      weight_decay: 0.01,
      no_decay: ['*bias*', '*norm*', '*ln*', '*embed*', '*sos*'],
    });
    expect(optimizer('adam').schema.parse({ lr: 0.1 })).toMatchObject({ lr: 0.1, weight_decay: 0, no_decay: [] });
    expect(optimizer('sgd').schema.parse({})).toEqual({
      lr: 1e-3,
      momentum: 0,
      nesterov: false,
      weight_decay: 0,
      no_decay: [],
    });
    expect(optimizer('adamw').schema.safeParse({ learning_rate: 1 }).success).toBe(false);
    expect(optimizer('adam').schema.safeParse({ betas: [0.9, 1] }).success).toBe(false);
    expect(scheduler('warmup_cosine').schema.parse({})).toEqual({ warmup_steps: 0, min_lr_ratio: 0 });
    expect(scheduler('constant').schema.safeParse({ min_lr_ratio: 0.1 }).success).toBe(false);
  });

  it('creates AdamW with biases, norms and embeddings exempt from decay', () => {
    const variables: NamedVariables = {
      'h.0.attn.kernel': tf.variable(tf.zeros([2])),
      'h.0.attn.bias': tf.variable(tf.zeros([2])),
      'h.0.ln_1.gamma': tf.variable(tf.zeros([2])),
      'wte.embeddings': tf.variable(tf.zeros([2])),
    };
    const adamw = optimizer('adamw');
    const adamwOptimizer = adamw.create(adamw.schema.parse({ lr: 0.5 }), { container, variables });
    expect(adamwOptimizer).toBeInstanceOf(Adam);
    expect((adamwOptimizer as Adam).decoupledWeightDecay).toBe(true);
    expect(adamwOptimizer.lr).toBe(0.5);
    expect(adamwOptimizer.paramGroups.map((g) => [g.name, Object.keys(g.variables), g.weightDecay])).toEqual([
      ['decay', ['h.0.attn.kernel'], 0.01],
      ['no_decay', ['h.0.attn.bias', 'h.0.ln_1.gamma', 'wte.embeddings'], 0],
    ]);
    const sgd = optimizer('sgd');
    const plain = sgd.create(sgd.schema.parse({ momentum: 0.9, nesterov: true }), { container, variables });
    expect(plain).toBeInstanceOf(Sgd);
    for (const o of [adamwOptimizer, plain]) o.dispose();
    tf.dispose(Object.values(variables));
  });

  it('creates schedulers from config and the run plan', () => {
    const cosine = scheduler('warmup_cosine');
    const schedule = cosine.create(cosine.schema.parse({ warmup_steps: 4, min_lr_ratio: 0.1 }), {
      container,
      totalSteps: 20,
      baseLr: 1,
    });
    expect(schedule.name).toBe('warmup_cosine');
    expect(schedule.lrAt(2)).toBeCloseTo(0.5, 12);
    expect(schedule.lrAt(20)).toBeCloseTo(0.1, 12);
  });
});
