/**
 * The iGPT task's heads over the backbone's hidden states (the keras-nlp split: backbones return
 * hidden states, tasks own their heads). Variable names are those the GPT-2 backbone used when it
 * held the heads (`lm_head.kernel`, `cls_head.kernel`, `cls_head.bias`), so checkpoints written
 * before the split load unchanged.
 */
/*
 * Each head's `seed` is the task's `init_seed` (`${trainer.seed}` in the task's conf); the head
 * mixes it with its own index through core's `mixSeed` (1: LM head, 2: classifier), so the two
 * heads, and runs with different seeds, start from unrelated weights.
 */
import * as tf from '@tensorflow/tfjs';
import { linear, mixSeed, type NamedVariables } from '@taskforge/core';

/** Std of the heads' normal initialiser (GPT-2's 0.02). */
const INIT_STD = 0.02;

/** Next-token logits: hidden [N, D] → [N, V], an untied projection (as in iGPT), no bias. */
export class LmHead {
  readonly kernel: tf.Variable;

  /** `seed`: the task's `init_seed`; the kernel is drawn with `mixSeed(seed, 1)`. */
  constructor(hiddenSize: number, numVocab: number, seed: number) {
    this.kernel = variable(tf.randomNormal([hiddenSize, numVocab], 0, INIT_STD, 'float32', mixSeed(seed, 1)));
  }

  /** hidden [N, D] → logits [N, V]. */
  apply(hidden: tf.Tensor2D): tf.Tensor2D {
    return linear(hidden, this.kernel as tf.Tensor2D);
  }

  namedVariables(): NamedVariables {
    return { 'lm_head.kernel': this.kernel };
  }
}

/** Class logits from the mean of the hidden states over the sequence: [B, T, D] → [B, C]. */
export class ClassificationHead {
  readonly kernel: tf.Variable;
  readonly bias: tf.Variable;

  /** `seed`: the task's `init_seed`; the kernel is drawn with `mixSeed(seed, 2)`, the bias starts at 0. */
  constructor(hiddenSize: number, numClasses: number, seed: number) {
    this.kernel = variable(tf.randomNormal([hiddenSize, numClasses], 0, INIT_STD, 'float32', mixSeed(seed, 2)));
    this.bias = variable(tf.zeros([numClasses]));
  }

  apply(hidden: tf.Tensor3D): tf.Tensor2D {
    return tf.tidy(() => hidden.mean(1).matMul(this.kernel).add(this.bias) as tf.Tensor2D);
  }

  namedVariables(): NamedVariables {
    return { 'cls_head.kernel': this.kernel, 'cls_head.bias': this.bias };
  }
}

function variable(init: tf.Tensor): tf.Variable {
  const v = tf.variable(init, true);
  init.dispose();
  return v;
}
