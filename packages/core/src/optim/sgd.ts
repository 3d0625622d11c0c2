import * as tf from '@tensorflow/tfjs';
import type { NamedVariables, ParamGroup } from '../contracts.js';
import { TaskforgeError } from '../errors.js';
import { BaseOptimizer, checkNonNegative } from './base.js';

export interface SgdOptions {
  lr: number;
  momentum?: number;
  nesterov?: boolean;
  /** L2 penalty added to the gradient (PyTorch's `weight_decay`); used when given bare variables. */
  weightDecay?: number;
  name?: string;
}

/**
 * Stochastic gradient descent with PyTorch's update (dampening 0):
 * `g += wd·p; buf = μ·buf + g; g = nesterov ? g + μ·buf : buf; p -= lr·g`.
 * With momentum 0 no buffer is kept.
 */
export class Sgd extends BaseOptimizer {
  readonly momentum: number;
  readonly nesterov: boolean;

  /**
   * @throws TaskforgeError (exit 1) for a negative or non-finite lr, momentum or weight decay,
   *   nesterov without momentum, or a variable in two parameter groups.
   */
  constructor(variablesOrGroups: NamedVariables | readonly ParamGroup[], options: SgdOptions) {
    const momentum = options.momentum ?? 0;
    super(variablesOrGroups, options, 'sgd', momentum > 0 ? ['momentum'] : []);
    checkNonNegative(this.name, 'momentum', momentum);
    if (options.nesterov && momentum <= 0) {
      throw new TaskforgeError(
        `Optimizer '${this.name}': nesterov momentum needs momentum > 0; set momentum (e.g. 0.9) or nesterov: false.`,
      );
    }
    this.momentum = momentum;
    this.nesterov = options.nesterov ?? false;
  }

  protected update(
    variable: tf.Variable,
    grad: tf.Tensor,
    slots: Readonly<Record<string, tf.Variable>>,
    group: ParamGroup,
  ): void {
    let g = group.weightDecay !== 0 ? grad.add(variable.mul(group.weightDecay)) : grad;
    const buffer = slots['momentum'];
    if (buffer) {
      const next = buffer.mul(this.momentum).add(g);
      buffer.assign(next);
      g = this.nesterov ? g.add(next.mul(this.momentum)) : next;
    }
    variable.assign(variable.sub(g.mul(this.lr)));
  }
}
