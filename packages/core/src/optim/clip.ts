import * as tf from '@tensorflow/tfjs';

/**
 * Scales all gradients together so their global L2 norm is at most `maxNorm`, like PyTorch's
 * `clip_grad_norm_` (coefficient `maxNorm / (norm + 1e-6)`, applied only when below 1).
 * Returns new tensors the caller owns (the inputs are not disposed) and the norm before
 * clipping. A non-finite norm is returned as is with the gradients unscaled, so the caller can
 * skip the step instead of poisoning the weights.
 *
 * The norm is read asynchronously (one read per call): GPU backends (webgpu) cannot read
 * synchronously under Node, and an await lets the queued work finish without blocking.
 */
export async function clipByGlobalNorm(
  grads: Record<string, tf.Tensor>,
  maxNorm: number,
): Promise<{ grads: Record<string, tf.Tensor>; norm: number }> {
  const names = Object.keys(grads);
  if (names.length === 0) return { grads: {}, norm: 0 };
  const normTensor = tf.tidy(() => tf.addN(names.map((n) => grads[n]!.square().sum())).sqrt());
  let norm: number;
  try {
    norm = (await normTensor.data())[0]!;
  } finally {
    normTensor.dispose();
  }
  const coefficient = maxNorm / (norm + 1e-6);
  const scale = Number.isFinite(norm) && coefficient < 1;
  const out: Record<string, tf.Tensor> = {};
  for (const n of names) out[n] = scale ? tf.mul(grads[n]!, coefficient) : tf.clone(grads[n]!);
  return { grads: out, norm };
}
