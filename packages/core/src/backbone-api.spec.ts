import { describe, expect, it } from 'vitest';
import { requireBackbone } from './backbone-api.js';
import type { Backbone } from './contracts.js';
import { TaskforgeError } from './errors.js';

const base: Backbone = { namedVariables: () => ({}), dispose() {} };
const needs = {
  task: 'task/demo',
  what: 'a decoder backbone',
  methods: ['forward', 'step'],
  numbers: ['hiddenSize'],
  target: 'Conv',
  fix: "Use 'backbone: gpt2'.",
};

describe('requireBackbone', () => {
  it('returns the backbone itself when it has every listed member', () => {
    const backbone = { ...base, forward() {}, step() {}, hiddenSize: 8 };
    expect(requireBackbone(backbone, needs)).toBe(backbone);
  });

  it('names every missing member, what was needed, the configured backbone and the fix (exit 2)', () => {
    const backbone = { ...base, forward() {}, hiddenSize: '8' };
    let error: unknown;
    try {
      requireBackbone(backbone, needs);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TaskforgeError);
    expect((error as TaskforgeError).exitCode).toBe(2);
    expect((error as Error).message).toBe(
      'task/demo needs a decoder backbone with forward(), step() and hiddenSize, but the configured backbone ' +
        "(Conv) lacks step(), hiddenSize. Use 'backbone: gpt2'.",
    );
  });

  it("says 'a backbone' by default and lists a single member alone", () => {
    expect(() => requireBackbone(base, { task: 't', methods: ['forward'], target: 'X', fix: 'Fix it.' })).toThrow(
      't needs a backbone with forward(), but the configured backbone (X) lacks forward(). Fix it.',
    );
  });
});
