// `node scripts/bench-linear-grad.mjs` (after `npx nx build core`): on the wasm backend (one
// thread), ms per call of a dense layer's weight gradient xᵀ·dy, as core's `linear` computed it
// before (Transpose of the wider-packed operand, then XNNPACK's 2-D matMul) against core's
// `matMulTransposeA` kernel (assembly/linear.ts). Shapes: the layers of the default iGPT config
// (batch 8 = one ddp shard, 1024 tokens, embed 16) and of the large one (batch 4, embed 128).
// Mean of 20 calls after a warm-up; the numbers quoted in packages/core/src/ops come from here.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { matMulTransposeA } from '@taskforge/core';

if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend failed to initialise');
const transposeThenMatMul = (x, dy) =>
  tf.tidy(() => (x.shape[1] >= dy.shape[1] ? tf.matMul(x.transpose(), dy) : tf.matMul(dy.transpose(), x).transpose()));
const time = (f) => {
  f().dispose();
  const t0 = performance.now();
  for (let k = 0; k < 20; k++) {
    const r = f();
    r.dataSync();
    r.dispose();
  }
  return (performance.now() - t0) / 20;
};
console.log('N in out: transpose+matMul ms, matMulTransposeA ms, max |difference|');
for (const [N, inDim, outDim] of [
  [8192, 16, 48],
  [8192, 16, 16],
  [8192, 16, 64],
  [8192, 64, 16],
  [4096, 128, 384],
  [4096, 128, 512],
  [4096, 512, 128],
]) {
  const x = tf.randomNormal([N, inDim], 0, 1, 'float32', 1);
  const dy = tf.randomNormal([N, outDim], 0, 1, 'float32', 2);
  const diff = tf.tidy(() => tf.max(tf.abs(transposeThenMatMul(x, dy).sub(matMulTransposeA(x, dy)))).dataSync()[0]);
  const before = time(() => transposeThenMatMul(x, dy));
  const after = time(() => matMulTransposeA(x, dy));
  console.log(`${N} ${inDim} ${outDim}: ${before.toFixed(2)} ms, ${after.toFixed(2)} ms, ${diff.toExponential(1)}`);
  tf.dispose([x, dy]);
}
