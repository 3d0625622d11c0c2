import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { NamedVariables, Optimizer } from '../contracts.js';
import { TaskforgeError } from '../errors.js';
import { Adam } from './adam.js';
import { clipByGlobalNorm } from './clip.js';
import { buildParamGroups, matchesPattern } from './param-groups.js';
import { Sgd } from './sgd.js';
import { DEFAULT_NO_DECAY, optimizerSpecs, schedulerSpecs } from './specs.js';
import { createContainer } from '../app/container.js';
import { objectKeys } from '../registry/zod-issues.js';

// Reference trajectories from PyTorch's update formulas evaluated in float64 (Python), for
// p0 = [1, -2], lr = 0.1, and the three gradients below.
const GRADS = [
  [0.5, -1.0],
  [0.1, 0.3],
  [-0.2, 0.4],
];
const EXPECTED = {
  adamL2: [
    [0.9000000016666666, -1.9000000008333333],
    [0.8136483454297575, -1.8400703555381717],
    [0.7598997572221902, -1.8057542212511155],
  ],
  adamw: [
    [0.890000002, -1.880000001],
    [0.8007959063646517, -1.8184151424192265],
    [0.7583525727518424, -1.792225087042392],
  ],
  adamNoDecay: [
    [0.900000002, -1.900000001],
    [0.8196959063846517, -1.8572151424292265],
    [0.7852605318354889, -1.8492092384765841],
  ],
  sgdPlain: [
    [0.95, -1.9],
    [0.94, -1.93],
    [0.96, -1.97],
  ],
  sgdMomentum: [
    [0.94, -1.88],
    [0.8665999999999999, -1.7832],
    [0.811874, -1.718248],
  ],
  sgdNesterov: [
    [0.886, -1.772],
    [0.801566, -1.698132],
    [0.765319646, -1.664334292],
  ],
};

function vars(): NamedVariables {
  return { w: tf.variable(tf.tensor1d([1, -2]), true) };
}

function trajectory(optimizer: Optimizer, variables: NamedVariables, steps = GRADS.length, from = 0): number[][] {
  const out: number[][] = [];
  for (const g of GRADS.slice(from, from + steps)) {
    const grad = tf.tensor1d(g);
    optimizer.applyGradients({ w: grad });
    grad.dispose();
    out.push(Array.from(variables['w']!.dataSync()));
  }
  return out;
}

function expectClose(actual: number[][], expected: number[][]): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((row, i) => row.forEach((x, j) => expect(x).toBeCloseTo(expected[i]![j]!, 5)));
}

function disposeAll(variables: NamedVariables): void {
  for (const v of Object.values(variables)) v.dispose();
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('optimizers match PyTorch update formulas', () => {
  const cases: [string, (v: NamedVariables) => Optimizer, number[][]][] = [
    ['Adam with L2 decay', (v) => new Adam(v, { lr: 0.1, weightDecay: 0.1 }), EXPECTED.adamL2],
    ['AdamW', (v) => new Adam(v, { lr: 0.1, weightDecay: 0.1, decoupledWeightDecay: true }), EXPECTED.adamw],
    ['Adam without decay', (v) => new Adam(v, { lr: 0.1 }), EXPECTED.adamNoDecay],
    ['SGD', (v) => new Sgd(v, { lr: 0.1 }), EXPECTED.sgdPlain],
    [
      'SGD with momentum and decay',
      (v) => new Sgd(v, { lr: 0.1, momentum: 0.9, weightDecay: 0.1 }),
      EXPECTED.sgdMomentum,
    ],
    [
      'SGD with Nesterov momentum and decay',
      (v) => new Sgd(v, { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.1 }),
      EXPECTED.sgdNesterov,
    ],
  ];
  for (const [label, make, expected] of cases) {
    it(label, () => {
      const variables = vars();
      const optimizer = make(variables);
      expectClose(trajectory(optimizer, variables), expected);
      optimizer.dispose();
      disposeAll(variables);
    });
  }

  it('names AdamW after its decay mode and keeps the lr settable between steps', () => {
    const variables = vars();
    const optimizer = new Adam(variables, { lr: 0.1, decoupledWeightDecay: true });
    expect(optimizer.name).toBe('adamw');
    optimizer.lr = 0;
    trajectory(optimizer, variables, 1);
    expect(Array.from(variables['w']!.dataSync())).toEqual([1, -2]);
    optimizer.dispose();
    disposeAll(variables);
  });
});

describe('parameter groups', () => {
  it('matches substrings and globs case-insensitively', () => {
    expect(matchesPattern('h.0.ln_1.gamma', 'ln_')).toBe(true);
    expect(matchesPattern('h.0.mlp.c_fc.bias', '*.bias')).toBe(true);
    expect(matchesPattern('h.0.mlp.c_fc.bias.extra', '*.bias')).toBe(false);
    expect(matchesPattern('encoder/LayerNorm/beta', '*norm*')).toBe(true);
    expect(matchesPattern('wte.embedding', 'h.?.*')).toBe(false);
    expect(matchesPattern('h.1.attn.kernel', 'h.?.*')).toBe(true);
  });

  it('puts matching variables in a zero-decay group, and AdamW then decays only the others', () => {
    const variables: NamedVariables = {
      'dense.kernel': tf.variable(tf.tensor1d([1, -2])),
      'dense.bias': tf.variable(tf.tensor1d([1, -2])),
    };
    const groups = buildParamGroups(variables, { weightDecay: 0.1, noDecay: ['*bias*'] });
    expect(groups.map((g) => [g.name, Object.keys(g.variables), g.weightDecay])).toEqual([
      ['decay', ['dense.kernel'], 0.1],
      ['no_decay', ['dense.bias'], 0],
    ]);
    const optimizer = new Adam(groups, { lr: 0.1, decoupledWeightDecay: true });
    for (const g of GRADS) {
      const grads = { 'dense.kernel': tf.tensor1d(g), 'dense.bias': tf.tensor1d(g) };
      optimizer.applyGradients(grads);
      tf.dispose(grads);
    }
    expectClose([Array.from(variables['dense.kernel']!.dataSync())], [EXPECTED.adamw[2]!]);
    expectClose([Array.from(variables['dense.bias']!.dataSync())], [EXPECTED.adamNoDecay[2]!]);
    optimizer.dispose();
    disposeAll(variables);
  });

  it('rejects a variable listed in two groups', () => {
    const v = tf.variable(tf.zeros([1]));
    expect(
      () =>
        new Sgd(
          [
            { name: 'a', variables: { x: v }, weightDecay: 0 },
            { name: 'b', variables: { x: v }, weightDecay: 0 },
          ],
          { lr: 1 },
        ),
    ).toThrow(/'x' is in both parameter groups 'a' and 'b'/);
    v.dispose();
  });
});

describe('optimizer state', () => {
  it('resumes exactly: two steps, export, import into a fresh optimizer, third step matches', () => {
    const first = vars();
    const optimizer = new Adam(first, { lr: 0.1, weightDecay: 0.1 });
    trajectory(optimizer, first, 2);
    const state = optimizer.getState();
    expect(Object.keys(state.tensors).sort()).toEqual(['m/w', 'v/w']);
    expect(state.meta).toMatchObject({ step: 2, paramSteps: { w: 2 } });

    const second: NamedVariables = { w: tf.variable(first['w']!.clone()) };
    const resumed = new Adam(second, { lr: 0.1, weightDecay: 0.1 });
    resumed.setState(state);
    tf.dispose(state.tensors);
    expect(resumed.step).toBe(2);
    expectClose(trajectory(resumed, second, 1, 2), [EXPECTED.adamL2[2]!]);
    for (const o of [optimizer, resumed]) o.dispose();
    disposeAll(first);
    disposeAll(second);
  });

  it('round-trips SGD momentum buffers', () => {
    const first = vars();
    const optimizer = new Sgd(first, { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.1 });
    trajectory(optimizer, first, 1);
    const state = optimizer.getState();
    expect(Object.keys(state.tensors)).toEqual(['momentum/w']);
    const second: NamedVariables = { w: tf.variable(first['w']!.clone()) };
    const resumed = new Sgd(second, { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.1 });
    resumed.setState(state);
    tf.dispose(state.tensors);
    expectClose(trajectory(resumed, second, 2, 1), EXPECTED.sgdNesterov.slice(1));
    for (const o of [optimizer, resumed]) o.dispose();
    disposeAll(first);
    disposeAll(second);
  });

  it('refuses a state from another optimizer or model, naming what is wrong, and changes nothing', () => {
    const variables = vars();
    const adam = new Adam(variables, { lr: 0.1 });
    const sgdVars = vars();
    const sgd = new Sgd(sgdVars, { lr: 0.1, momentum: 0.9 });
    const sgdState = sgd.getState();
    expect(() => adam.setState(sgdState)).toThrow(TaskforgeError);
    expect(() => adam.setState(sgdState)).toThrow(
      /saved by 'sgd'.*missing tensor 'm\/w'.*unexpected tensor 'momentum\/w'/,
    );
    const wrongShape = { tensors: { 'm/w': tf.zeros([3]), 'v/w': tf.zeros([2]) }, meta: { step: 1 } };
    expect(() => adam.setState(wrongShape)).toThrow(/'m\/w' is float32 \[3\], expected float32 \[2\]/);
    expect(adam.step).toBe(0);
    tf.dispose([sgdState.tensors, wrongShape.tensors]);
    for (const o of [adam, sgd]) o.dispose();
    disposeAll(variables);
    disposeAll(sgdVars);
  });
});

describe('applyGradients', () => {
  it('skips variables without a gradient, without advancing their Adam step', () => {
    const variables: NamedVariables = { a: tf.variable(tf.tensor1d([1, -2])), b: tf.variable(tf.tensor1d([1, -2])) };
    const optimizer = new Adam(variables, { lr: 0.1 });
    const g0 = tf.tensor1d(GRADS[0]!);
    optimizer.applyGradients({ a: g0 });
    expect(Array.from(variables['b']!.dataSync())).toEqual([1, -2]);
    optimizer.applyGradients({ a: g0, b: g0 });
    // b's first update is a first step (bias correction with t = 1), not a second one.
    expectClose([Array.from(variables['b']!.dataSync())], [EXPECTED.adamNoDecay[0]!]);
    const state = optimizer.getState();
    expect(state.meta).toMatchObject({ step: 2, paramSteps: { a: 2, b: 1 } });
    tf.dispose([g0, state.tensors]);
    optimizer.dispose();
    disposeAll(variables);
  });

  it('rejects gradients for unknown variables or of the wrong shape', () => {
    const variables = vars();
    const optimizer = new Sgd(variables, { lr: 0.1 });
    const g = tf.zeros([3]);
    expect(() => optimizer.applyGradients({ nope: g })).toThrow(/variables it does not manage: 'nope'/);
    expect(() => optimizer.applyGradients({ w: g })).toThrow(
      /gradient for 'w' has shape \[3\] but the variable has shape \[2\]/,
    );
    g.dispose();
    optimizer.dispose();
    expect(() => optimizer.applyGradients({})).toThrow(/used after dispose/);
    disposeAll(variables);
  });

  it('rejects invalid hyper-parameters', () => {
    const variables = vars();
    expect(() => new Sgd(variables, { lr: 0.1, nesterov: true })).toThrow(/nesterov momentum needs momentum > 0/);
    expect(() => new Adam(variables, { lr: -1 })).toThrow(/lr must be a finite number >= 0, got -1/);
    expect(() => new Adam(variables, { lr: 0.1, beta2: 1 })).toThrow(/beta2 must be in \[0, 1\)/);
    disposeAll(variables);
  });

  it('leaks no tensors across steps, and dispose frees its slots', () => {
    const variables = vars();
    const before = tf.memory().numTensors;
    const optimizer = new Adam(variables, { lr: 0.1, weightDecay: 0.1, decoupledWeightDecay: true });
    const afterCreate = tf.memory().numTensors;
    expect(afterCreate).toBe(before + 2);
    trajectory(optimizer, variables);
    expect(tf.memory().numTensors).toBe(afterCreate);
    optimizer.dispose();
    expect(tf.memory().numTensors).toBe(before);
    disposeAll(variables);
  });
});

describe('clipByGlobalNorm', () => {
  it('scales all gradients by maxNorm / norm when the global norm is above maxNorm, leaking no tensor', async () => {
    const grads = { a: tf.tensor1d([3]), b: tf.tensor1d([4]) };
    const before = tf.memory().numTensors;
    const { grads: clipped, norm } = await clipByGlobalNorm(grads, 1);
    expect(tf.memory().numTensors).toBe(before + 2);
    expect(norm).toBeCloseTo(5, 5);
    expect(clipped['a']!.dataSync()[0]).toBeCloseTo(0.6, 5);
    expect(clipped['b']!.dataSync()[0]).toBeCloseTo(0.8, 5);
    expect(grads.a.isDisposed).toBe(false);
    tf.dispose([grads, clipped]);
  });

  it('returns copies unchanged when below maxNorm or when the norm is not finite', async () => {
    const grads = { a: tf.tensor1d([3, 4]) };
    const below = await clipByGlobalNorm(grads, 10);
    expect(Array.from(below.grads['a']!.dataSync())).toEqual([3, 4]);
    expect(below.grads['a']).not.toBe(grads.a);
    const bad = { a: tf.tensor1d([NaN, 1]) };
    const nonFinite = await clipByGlobalNorm(bad, 1);
    expect(nonFinite.norm).toBeNaN();
    expect(nonFinite.grads['a']!.dataSync()[1]).toBe(1);
    tf.dispose([grads, below.grads, bad, nonFinite.grads]);
  });
});

describe('optimizer and scheduler specs', () => {
  it("warn when a no_decay pattern of the user's matches no variable (its variables get weight decay)", () => {
    const warnings: string[] = [];
    const container = createContainer({
      output: {
        info: () => {},
        warn: (m) => warnings.push(m),
        progress: () => ({ update() {}, setTotal() {}, stop() {} }),
      },
    });
    const variables = {
      'head/kernel': tf.variable(tf.zeros([2, 2])),
      'blocks.0.ln1.gamma': tf.variable(tf.ones([2])),
    };
    const adamw = optimizerSpecs.find((spec) => spec.name === 'adamw')!;
    const build = (no_decay: string[], weight_decay = 0.01) =>
      adamw.create(adamw.schema.parse({ no_decay, weight_decay }), { variables, container });
    build(['heda.*', '*ln*', '*bias*']);
    expect(warnings).toEqual([
      "optimizer.no_decay: 'heda.*' matches no variable, so nothing is exempted by it from weight_decay 0.01. A " +
        'pattern is a substring, or a glob with * and ? over the whole name (case ignored); the names look like ' +
        "'head/kernel', 'blocks.0.ln1.gamma'.",
    ]);
    warnings.length = 0;
    build(['head*']); // matches
    build(['heda.*'], 0); // no weight decay: nothing to exempt
    build([...DEFAULT_NO_DECAY]); // the defaults need not all match
    expect(warnings).toEqual([]);
    tf.dispose(Object.values(variables));
  });

  it("map other libraries' key names (keyAliases) only to keys their schema has", () => {
    for (const spec of [...optimizerSpecs, ...schedulerSpecs]) {
      expect(spec.keyAliases, spec.name).toBeDefined();
      for (const ours of Object.values(spec.keyAliases!)) expect(objectKeys(spec.schema), spec.name).toContain(ours);
    }
  });
});
