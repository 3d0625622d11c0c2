// `node scripts/bench-sum-rows.mjs [--matmul]` (after `npx nx build core`): on the wasm backend,
// CPU ms per call of a column sum (a bias gradient) as wasm's Sum over axis 0, as a
// [1, N]·[N, D] product on XNNPACK, and as core's sumRows kernel; with --matmul also the
// weight-gradient product xᵀ·dy with matMul's transposeA flag, with an explicit transpose, and
// as core's matMulTransposeA kernel (what `linear` uses).
// Median of 3 calls after one warm-up; the numbers quoted in packages/core/src/ops come from here.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { matMulTransposeA, sumRows } from '@taskforge/core';

if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend failed to initialise');
const withMatMul = process.argv.includes('--matmul');
// Each timed call gets a tensor it has not seen: tfjs-backend-wasm caches XNNPACK's packed
// right-hand operand by tensor, so timing one tensor over and over would hide the packing that a
// training step (a new gradient every time) pays on every call.
const time = (shape, f) => {
  const fresh = () => tf.randomNormal(shape, 0, 1, 'float32');
  const once = () => {
    const t = fresh();
    const c0 = process.cpuUsage();
    tf.tidy(() => f(t).dataSync());
    const c = process.cpuUsage(c0);
    t.dispose();
    return (c.user + c.system) / 1000;
  };
  once();
  const ms = [once(), once(), once()];
  return ms.sort((a, b) => a - b)[1].toFixed(1);
};
// [N, in, out]: the large config's MLP (B·T = 8192 rows) and the default config's.
for (const [N, I, O] of [
  [8192, 128, 512],
  [16384, 16, 64],
]) {
  const x = tf.randomNormal([N, I], 0, 1, 'float32', 1);
  const dyShape = [N, O];
  console.log(
    `[${N}, ${O}] sum over rows: tf.sum(axis 0) ${time(dyShape, (dy) => dy.sum(0))} ms, ` +
      `[1, N]·[N, D] on XNNPACK ${time(dyShape, (dy) => tf.matMul(tf.ones([1, N]), dy))} ms, ` +
      `sumRows (core's kernel) ${time(dyShape, (dy) => sumRows(dy))} ms CPU`,
  );
  if (withMatMul)
    console.log(
      `[${N}, ${I}]ᵀ·[${N}, ${O}]: transposeA flag ${time(dyShape, (dy) => tf.matMul(x, dy, true, false))} ms, ` +
        `explicit transpose ${time(dyShape, (dy) => tf.matMul(x.transpose(), dy))} ms, ` +
        `matMulTransposeA (core's kernel) ${time(dyShape, (dy) => matMulTransposeA(x, dy))} ms CPU`,
    );
  x.dispose();
}
console.log(
  `load average ${(await import('node:os'))
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
);
