import * as tf from '@tensorflow/tfjs';
import type { NamedVariables, ParamGroup } from '../contracts.js';
import { TaskforgeError } from '../errors.js';
import { adamStepWasm, canUseAdamKernel } from './adam-wasm.js';
import { BaseOptimizer, checkNonNegative } from './base.js';

export interface AdamOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  /** Used when given bare variables; parameter groups carry their own. */
  weightDecay?: number;
  /** true: AdamW (`p -= lr·wd·p`, decoupled from the moments); false: L2 added to the gradient. */
  decoupledWeightDecay?: boolean;
  name?: string;
}

/**
 * Adam / AdamW with PyTorch's bias-corrected update:
 * `m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²; p -= lr/(1-β1ᵗ) · m / (√v/√(1-β2ᵗ) + ε)`.
 * Note ε is added after the bias correction of v, as in PyTorch (TF.js's own Adam differs).
 * On the wasm backend each variable's update is one fused kernel (`adamStepWasm`) with bitwise
 * the results of the composed ops used elsewhere.
 */
export class Adam extends BaseOptimizer {
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  readonly decoupledWeightDecay: boolean;

  /**
   * @throws TaskforgeError (exit 1) for an out-of-range lr, beta, epsilon or weight decay, or a
   *   variable in two parameter groups.
   */
  constructor(variablesOrGroups: NamedVariables | readonly ParamGroup[], options: AdamOptions) {
    const decoupled = options.decoupledWeightDecay ?? false;
    super(variablesOrGroups, options, decoupled ? 'adamw' : 'adam', ['m', 'v']);
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-8;
    this.decoupledWeightDecay = decoupled;
    for (const [key, beta] of [
      ['beta1', this.beta1],
      ['beta2', this.beta2],
    ] as const) {
      if (!(beta >= 0 && beta < 1)) {
        throw new TaskforgeError(
          `Optimizer '${this.name}': ${key} must be in [0, 1), got ${beta}. Typical values are 0.9 and 0.999.`,
        );
      }
    }
    checkNonNegative(this.name, 'epsilon', this.epsilon);
  }

  protected update(
    variable: tf.Variable,
    grad: tf.Tensor,
    slots: Readonly<Record<string, tf.Variable>>,
    group: ParamGroup,
    t: number,
  ): void {
    const m = slots['m']!;
    const v = slots['v']!;
    const wd = group.weightDecay;
    const biasCorrection1 = 1 - this.beta1 ** t;
    const biasCorrection2 = 1 - this.beta2 ** t;
    if (canUseAdamKernel(variable, grad)) {
      const [pNext, mNext, vNext] = adamStepWasm(variable, grad, m, v, {
        beta1: this.beta1,
        beta2: this.beta2,
        epsilon: this.epsilon,
        stepSize: this.lr / biasCorrection1,
        sqrtBiasCorrection2: Math.sqrt(biasCorrection2),
        l2: this.decoupledWeightDecay ? 0 : wd,
        decay: this.decoupledWeightDecay && wd !== 0 ? 1 - this.lr * wd : 1,
      });
      m.assign(mNext);
      v.assign(vNext);
      variable.assign(pNext);
      return;
    }
    const g = wd !== 0 && !this.decoupledWeightDecay ? grad.add(variable.mul(wd)) : grad;
    let p: tf.Tensor = variable;
    if (wd !== 0 && this.decoupledWeightDecay) p = p.mul(1 - this.lr * wd);
    const mNext = m.mul(this.beta1).add(g.mul(1 - this.beta1));
    const vNext = v.mul(this.beta2).add(g.square().mul(1 - this.beta2));
    m.assign(mNext);
    v.assign(vNext);
    const denom = vNext.sqrt().div(Math.sqrt(biasCorrection2)).add(this.epsilon);
    variable.assign(p.sub(mNext.div(denom).mul(this.lr / biasCorrection1)));
  }
}
