// `node scripts/bench-sum-rows.mjs [--matmul]` (after `npx nx build core`): on the wasm backend,
// CPU ms per call of a column sum (a bias gradient) as wasm's Sum over axis 0 against core's
// sumRows (a [1, N]·[N, D] product on XNNPACK); with --matmul also the weight-gradient product
// xᵀ·dy with matMul's transposeA flag against an explicit transpose (what core's `linear` does).
// Median of 3 calls after one warm-up; the numbers quoted in packages/core/src/ops come from here.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { sumRows } from '@taskforge/core';

if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend failed to initialise');
const withMatMul = process.argv.includes('--matmul');
const time = (f) => {
  tf.tidy(() => f().dataSync());
  const ms = [];
  for (let i = 0; i < 3; i++) {
    const c0 = process.cpuUsage();
    tf.tidy(() => f().dataSync());
    const c = process.cpuUsage(c0);
    ms.push((c.user + c.system) / 1000);
  }
  return ms.sort((a, b) => a - b)[1].toFixed(1);
};
// [N, in, out]: the large config's MLP (B·T = 8192 rows) and the default config's.
for (const [N, I, O] of [
  [8192, 128, 512],
  [16384, 16, 64],
]) {
  const x = tf.randomNormal([N, I], 0, 1, 'float32', 1);
  const dy = tf.randomNormal([N, O], 0, 1, 'float32', 2);
  console.log(
    `[${N}, ${O}] sum over rows: tf.sum(axis 0) ${time(() => dy.sum(0))} ms, sumRows ${time(() => sumRows(dy))} ms CPU`,
  );
  if (withMatMul)
    console.log(
      `[${N}, ${I}]ᵀ·[${N}, ${O}]: transposeA flag ${time(() => tf.matMul(x, dy, true, false))} ms, ` +
        `explicit transpose ${time(() => tf.matMul(x.transpose(), dy))} ms CPU`,
    );
  tf.dispose([x, dy]);
}
console.log(
  `load average ${(await import('node:os'))
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
);
