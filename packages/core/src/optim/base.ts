import * as tf from '@tensorflow/tfjs';
import type { NamedVariables, Optimizer, OptimizerState, ParamGroup } from '../contracts.js';
import { TaskforgeError } from '../errors.js';

/** Hyper-parameters shared by every optimizer here; `weightDecay` applies when given bare variables. */
export interface BaseOptimizerOptions {
  lr: number;
  weightDecay?: number;
  /** Shown in error messages and logs; defaults to the optimizer kind. */
  name?: string;
}

/**
 * Bookkeeping common to the hand-written optimizers: parameter groups, per-variable slot
 * variables (moments, momentum buffers) updated in place, per-variable step counts (PyTorch
 * counts steps per parameter, so a variable that got no gradient is not advanced), and an
 * exact state round trip for resume.
 */
export abstract class BaseOptimizer implements Optimizer {
  readonly name: string;
  lr: number;
  readonly paramGroups: readonly ParamGroup[];
  /** slot name → variable name → slot variable. */
  private readonly slots = new Map<string, Map<string, tf.Variable>>();
  private readonly paramSteps = new Map<string, number>();
  private readonly groupOf = new Map<string, ParamGroup>();
  private steps = 0;
  private disposed = false;

  protected constructor(
    variablesOrGroups: NamedVariables | readonly ParamGroup[],
    options: BaseOptimizerOptions,
    kind: string,
    slotNames: readonly string[],
  ) {
    this.name = options.name ?? kind;
    this.lr = options.lr;
    checkNonNegative(this.name, 'lr', options.lr);
    this.paramGroups = Array.isArray(variablesOrGroups)
      ? (variablesOrGroups as readonly ParamGroup[])
      : [{ name: 'default', variables: variablesOrGroups as NamedVariables, weightDecay: options.weightDecay ?? 0 }];
    for (const group of this.paramGroups) {
      checkNonNegative(this.name, `weight decay of parameter group '${group.name}'`, group.weightDecay);
      for (const varName of Object.keys(group.variables)) {
        const previous = this.groupOf.get(varName);
        if (previous) {
          throw new TaskforgeError(
            `Optimizer '${this.name}': variable '${varName}' is in both ` +
              `parameter groups '${previous.name}' and '${group.name}'. ` +
              'Each variable must belong to exactly one group.',
          );
        }
        this.groupOf.set(varName, group);
        this.paramSteps.set(varName, 0);
      }
    }
    for (const slot of slotNames) {
      const byVar = new Map<string, tf.Variable>();
      for (const group of this.paramGroups) {
        for (const [varName, variable] of Object.entries(group.variables)) {
          byVar.set(
            varName,
            tf.tidy(() => tf.variable(tf.zerosLike(variable), false)),
          );
        }
      }
      this.slots.set(slot, byVar);
    }
  }

  /** One variable's update, run inside `tf.tidy`; `t` is that variable's 1-based step. */
  protected abstract update(
    variable: tf.Variable,
    grad: tf.Tensor,
    slots: Readonly<Record<string, tf.Variable>>,
    group: ParamGroup,
    t: number,
  ): void;

  /**
   * One optimizer step over `grads` (variable name → gradient of the same shape). Grads are not
   * disposed: the caller owns them.
   * @throws TaskforgeError (exit 1) for gradients of variables it does not manage, a gradient
   *   whose shape differs from its variable's, or use after `dispose()`.
   */
  applyGradients(grads: Record<string, tf.Tensor>): void {
    this.assertLive();
    const unknown = Object.keys(grads).filter((n) => !this.groupOf.has(n));
    if (unknown.length > 0) {
      throw new TaskforgeError(
        `Optimizer '${this.name}' got gradients for variables it ` +
          `does not manage: ${unknown.map((n) => `'${n}'`).join(', ')}. ` +
          'Build the optimizer over the same variables the gradients are computed for.',
      );
    }
    for (const group of this.paramGroups) {
      for (const [varName, variable] of Object.entries(group.variables)) {
        const grad = grads[varName];
        if (grad === undefined) continue;
        if (!tf.util.arraysEqual(grad.shape, variable.shape)) {
          throw new TaskforgeError(
            `Optimizer '${this.name}': gradient for '${varName}' has shape ` +
              `[${grad.shape.join(', ')}] but the variable has shape [${variable.shape.join(', ')}].`,
          );
        }
        const t = this.paramSteps.get(varName)! + 1;
        const slots: Record<string, tf.Variable> = {};
        for (const [slot, byVar] of this.slots) slots[slot] = byVar.get(varName)!;
        tf.tidy(() => this.update(variable, grad, slots, group, t));
        this.paramSteps.set(varName, t);
      }
    }
    this.steps += 1;
  }

  /** Copies of the slot tensors (the caller owns and disposes them) and the step counts. */
  getState(): OptimizerState {
    this.assertLive();
    const tensors: Record<string, tf.Tensor> = {};
    for (const [slot, byVar] of this.slots) {
      for (const [varName, value] of byVar) tensors[`${slot}/${varName}`] = tf.clone(value);
    }
    return {
      tensors,
      meta: { optimizer: this.name, step: this.steps, paramSteps: Object.fromEntries(this.paramSteps) },
    };
  }

  /**
   * Copies values in; `state`'s tensors stay owned by the caller. Validates everything before changing anything.
   * @throws TaskforgeError exit code 2 (a config mistake: another optimizer or model) listing the mismatches.
   */
  setState(state: OptimizerState): void {
    this.assertLive();
    const problems: string[] = [];
    const expected = new Set<string>();
    for (const [slot, byVar] of this.slots) {
      for (const [varName, value] of byVar) {
        const key = `${slot}/${varName}`;
        expected.add(key);
        const given = state.tensors[key];
        if (given === undefined) problems.push(`missing tensor '${key}'`);
        else if (!tf.util.arraysEqual(given.shape, value.shape) || given.dtype !== value.dtype) {
          problems.push(
            `'${key}' is ${given.dtype} [${given.shape.join(', ')}], ` +
              `expected ${value.dtype} [${value.shape.join(', ')}]`,
          );
        }
      }
    }
    for (const key of Object.keys(state.tensors)) if (!expected.has(key)) problems.push(`unexpected tensor '${key}'`);
    const step = state.meta['step'];
    if (!Number.isInteger(step) || (step as number) < 0)
      problems.push(`meta.step must be a non-negative integer, got ${JSON.stringify(step)}`);
    const paramSteps = (state.meta['paramSteps'] ?? {}) as Record<string, unknown>;
    for (const [varName, value] of Object.entries(paramSteps)) {
      if (!this.groupOf.has(varName)) problems.push(`meta.paramSteps names unknown variable '${varName}'`);
      else if (!Number.isInteger(value) || (value as number) < 0)
        problems.push(`meta.paramSteps['${varName}'] must be a non-negative integer`);
    }
    if (problems.length > 0) {
      const saved = typeof state.meta['optimizer'] === 'string' ? ` (saved by '${state.meta['optimizer']}')` : '';
      throw new TaskforgeError(
        `Cannot restore the state of optimizer '${this.name}'${saved}: ${problems.slice(0, 5).join('; ')}` +
          `${problems.length > 5 ? `; and ${problems.length - 5} more` : ''}. ` +
          'The checkpoint was made with a different optimizer or model; resume ' +
          'with the same optimizer and model config, or start a fresh run.',
        { exitCode: 2 },
      );
    }
    for (const [slot, byVar] of this.slots) {
      // assign shares the data (reference-counted), so the caller may dispose its tensors.
      for (const [varName, value] of byVar) value.assign(state.tensors[`${slot}/${varName}`]!);
    }
    this.steps = step as number;
    // Older or hand-made states without per-variable counts: every variable was stepped each time.
    for (const varName of this.paramSteps.keys()) {
      this.paramSteps.set(varName, (paramSteps[varName] as number | undefined) ?? this.steps);
    }
  }

  /** Optimizer steps applied so far. */
  get step(): number {
    return this.steps;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const byVar of this.slots.values()) for (const value of byVar.values()) value.dispose();
    this.slots.clear();
  }

  private assertLive(): void {
    if (this.disposed) throw new TaskforgeError(`Optimizer '${this.name}' was used after dispose().`);
  }
}

/**
 * Checks an optimizer setting (`lr`, `momentum`, `weight_decay`, ...).
 * @throws TaskforgeError (exit 1) naming the optimizer, the setting and the value when it is not
 *   a finite number >= 0 (config values are validated before; this guards programmatic use).
 */
export function checkNonNegative(optimizer: string, what: string, value: number): void {
  if (!Number.isFinite(value) || value < 0) {
    throw new TaskforgeError(`Optimizer '${optimizer}': ${what} must be a finite number >= 0, got ${value}.`);
  }
}
