// One-off measurement, not a test: the fused causal-attention kernels on wasm, forward and
// backward timed apart, with the rate each reaches by FLOP count (forward: q·kᵀ and p·v over the
// causal half, 2 matMuls; backward: the recomputed q·kᵀ, dy·vᵀ, pᵀ·dy, dS·k and dSᵀ·q, 5 matMuls).
// Medians of 6 timed calls after a warm-up (V8 compiles the kernels with TurboFan on a later call).
// Build first (npx nx build backbone-gpt2), then e.g.
//   node packages/backbone-gpt2/bench/attention-kernels.mjs --shape 8,4,1024,32
// --module points at another build's dist/fused-attention.js (its ../wasm/attention.wasm comes
// with it), to compare two versions in alternating processes.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    shape: { type: 'string', default: '8,4,1024,32' },
    module: { type: 'string', default: new URL('../dist/fused-attention.js', import.meta.url).href },
  },
});
const { fusedCausalAttention } = await import(a.module);
await tf.setBackend('wasm');
const shape = a.shape.split(',').map(Number);
const [B, H, T, hd] = shape;
const [q, k, v] = [0, 1, 2].map((i) => tf.variable(tf.randomNormal(shape, 0, 1, 'float32', i)));
/** FLOPs of one [T, T]·[T, hd]-sized product over the causal half (multiply and add counted). */
const causalMatMulFlop = B * H * ((T * (T + 1)) / 2) * hd * 2;
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const forwardMs = [];
const totalMs = [];
for (let round = 0; round < 7; round++) {
  let t0 = performance.now();
  const o = fusedCausalAttention(q, k, v);
  o.dataSync();
  o.dispose();
  forwardMs.push(performance.now() - t0);
  t0 = performance.now();
  const { value, grads } = tf.variableGrads(() => fusedCausalAttention(q, k, v).square().sum(), [q, k, v]);
  await value.data();
  grads[q.name].dataSync();
  tf.dispose([value, grads]);
  totalMs.push(performance.now() - t0);
}
const fwd = median(forwardMs.slice(1));
const bwd = median(totalMs.slice(1)) - fwd;
const rate = (matMuls, ms) => ((matMuls * causalMatMulFlop) / ms / 1e6).toFixed(1);
console.log(
  `[${shape}] forward ${fwd.toFixed(1)} ms (${rate(2, fwd)} GFLOP/s), backward ${bwd.toFixed(1)} ms ` +
    `(${rate(5, bwd)} GFLOP/s); load average ${(await import('node:os'))
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}`,
);
