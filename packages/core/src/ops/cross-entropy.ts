import * as tf from '@tensorflow/tfjs';
import { TaskforgeError } from '../errors.js';

/**
 * Mean cross-entropy in nats of class `logits` against integer `labels`, optionally against
 * label-smoothed targets (`(1 − smoothing)·onehot + smoothing / C`, as PyTorch's
 * `F.cross_entropy(label_smoothing=…)`). Built from `logSoftmax` and a one-hot product, which
 * have gradients on every backend (cpu, wasm, webgl, webgpu); `tf.gather`-based versions do not on wasm.
 *
 * @param logits [N, C] float, unnormalised.
 * @param labels [N] int32, each in 0..C−1 (not checked here: out-of-range labels contribute 0;
 *   tasks check their batches, see docs/new-task.md).
 * @param smoothing in [0, 1); 0 (the default) is plain cross-entropy.
 * @returns a rank-0 tensor: the mean over the N rows.
 * @throws TaskforgeError (exit 1) when the shapes disagree (logits not rank 2, labels not rank 1
 *   with N entries) or `smoothing` is outside [0, 1): a bug in the calling task, not user input.
 */
export function crossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D, smoothing = 0): tf.Scalar {
  if (logits.rank !== 2 || labels.rank !== 1 || labels.shape[0] !== logits.shape[0]) {
    throw new TaskforgeError(
      `crossEntropy needs logits [N, C] and labels [N]; got logits [${logits.shape.join(', ')}] and ` +
        `labels [${labels.shape.join(', ')}].`,
    );
  }
  if (!(smoothing >= 0 && smoothing < 1)) {
    throw new TaskforgeError(`crossEntropy's label smoothing must be in [0, 1); got ${smoothing}.`);
  }
  return tf.tidy(() => {
    const classes = logits.shape[1];
    const onehot = tf.oneHot(labels, classes).toFloat();
    const targets = smoothing === 0 ? onehot : onehot.mul(1 - smoothing).add(smoothing / classes);
    return tf.logSoftmax(logits).mul(targets).sum(-1).mean().neg() as tf.Scalar;
  });
}
