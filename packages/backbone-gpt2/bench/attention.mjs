// One-off measurement, not a test: one causal-attention forward + backward on wasm, fused
// kernels (the default there) against the plain-ops path (fused: false), interleaved round by
// round in one process so both see the same machine load. Reports wall and CPU ms per call.
// Build first (npx nx build backbone-gpt2), then e.g.
//   node packages/backbone-gpt2/bench/attention.mjs --shape 16,2,1024,8 --rounds 3
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    shape: { type: 'string', default: '16,2,1024,8' },
    rounds: { type: 'string', default: '3' },
    block: { type: 'string', default: '128' },
    module: { type: 'string', default: new URL('../dist/attention.js', import.meta.url).href },
  },
});
const { causalSelfAttention, CausalMasks } = await import(a.module);
await tf.setBackend('wasm');
const shape = a.shape.split(',').map(Number);
const [q, k, v] = [0, 1, 2].map((i) => tf.variable(tf.randomNormal(shape, 0, 1, 'float32', i)));
const masks = new CausalMasks();
const run = async (fused) => {
  const [t0, c0] = [performance.now(), process.cpuUsage()];
  const { value, grads } = tf.variableGrads(
    () =>
      causalSelfAttention(q, k, v, { fused, masks, blockSize: Number(a.block) })
        .square()
        .sum(),
    [q, k, v],
  );
  await value.data();
  tf.dispose([value, grads]);
  const c = process.cpuUsage(c0);
  return { wall: performance.now() - t0, cpu: (c.user + c.system) / 1000 };
};
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const results = { plain: [], fused: [] };
await run(false);
await run(true); // warm-up: masks, kernel instantiation, wasm heap growth
for (let r = 0; r < Number(a.rounds); r++)
  for (const fused of [false, true]) results[fused ? 'fused' : 'plain'].push(await run(fused));
for (const [name, rs] of Object.entries(results)) {
  console.log(
    `[${shape}] ${name}: median ${median(rs.map((x) => x.wall)).toFixed(0)} ms wall, ${median(rs.map((x) => x.cpu)).toFixed(0)} ms CPU (rounds: ${rs.map((x) => x.cpu.toFixed(0)).join(' ')} ms CPU)`,
  );
}
const speedup = median(results.plain.map((x) => x.cpu)) / median(results.fused.map((x) => x.cpu));
console.log(
  `[${shape}] fused speedup (CPU time): ${speedup.toFixed(2)}x; load average ${(await import('node:os'))
    .loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
