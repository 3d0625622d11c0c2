// One-off measurement, not a test: time (and optionally profile) Gpt2 training steps on wasm.
// Build first (npx tsc -b packages/backbone-gpt2/tsconfig.lib.json), then e.g.
//   node packages/backbone-gpt2/bench/train-step.mjs --batch 16 --steps 3 --profile
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    batch: { type: 'string', default: '16' },
    T: { type: 'string', default: '1024' },
    embed: { type: 'string', default: '16' },
    layers: { type: 'string', default: '8' },
    heads: { type: 'string', default: '2' },
    vocab: { type: 'string', default: '16' },
    block: { type: 'string', default: '128' },
    steps: { type: 'string', default: '3' },
    profile: { type: 'boolean', default: false },
    backend: { type: 'string', default: 'wasm' },
    module: { type: 'string', default: new URL('../dist/gpt2.js', import.meta.url).href },
  },
});
const n = (k) => Number(a[k]);
const { Gpt2 } = await import(a.module);
await tf.setBackend(a.backend);
await tf.ready();
const [B, T, V] = [n('batch'), n('T'), n('vocab')];
const model = new Gpt2(
  {
    embed_dim: n('embed'),
    num_heads: n('heads'),
    num_layers: n('layers'),
    dropout: 0,
    init_std: 0.02,
    residual_norm: false,
    num_positions: T,
    num_vocab: V,
    num_classes: 10,
    attention_block_size: n('block'),
  },
  { seed: 0 },
);
const optimizer = tf.train.adam(1e-3);
const vars = Object.values(model.namedVariables());
const tokens = tf.tensor2d(
  Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % V),
  [B, T],
  'int32',
);
let peakRss = 0;
let peakBytes = 0;
const step = () => {
  const { value, grads } = tf.variableGrads(
    () =>
      tf.tidy(() => {
        const { logits } = model.forward(tokens, { training: true, seed: 0 });
        peakBytes = Math.max(peakBytes, tf.memory().numBytes);
        return tf
          .logSoftmax(logits.reshape([-1, V]))
          .mul(tf.oneHot(tokens.reshape([-1]), V).toFloat())
          .sum(-1)
          .mean()
          .neg();
      }),
    vars,
  );
  peakBytes = Math.max(peakBytes, tf.memory().numBytes);
  optimizer.applyGradients(grads);
  const loss = value.dataSync()[0];
  tf.dispose([value, grads]);
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  return loss;
};
console.log(
  `${a.backend} B=${B} T=${T} D=${n('embed')} L=${n('layers')} H=${n('heads')} block=${n('block')} module=${a.module.split('/').slice(-3).join('/')}`,
);
for (let s = 0; s < n('steps'); s++) {
  const [t0, c0] = [performance.now(), process.cpuUsage()];
  const loss = step();
  const { user, system } = process.cpuUsage(c0);
  // CPU time is the steadier number on a shared machine (the wasm backend runs one thread).
  console.log(
    `step ${s}: wall ${((performance.now() - t0) / 1000).toFixed(2)} s, cpu ${((user + system) / 1e6).toFixed(2)} s, loss ${loss.toFixed(4)}, tensors ${tf.memory().numTensors}`,
  );
}
if (a.profile) {
  const info = await tf.profile(() => {
    step();
  });
  const total = (m) => [...m.values()].reduce((x, y) => x + y, 0);
  const group = (keyOf) => {
    const m = new Map();
    for (const k of info.kernels) m.set(keyOf(k), (m.get(keyOf(k)) ?? 0) + k.kernelTimeMs);
    return [...m].sort((x, y) => y[1] - x[1]).slice(0, 14);
  };
  const byKernel = new Map(group((k) => k.name));
  console.log(
    `profiled step: kernels ${total(byKernel).toFixed(0)} ms (inner kernels of custom ops are counted twice), peak ${(info.peakBytes / 2 ** 20).toFixed(0)} MiB`,
  );
  for (const [name, ms] of byKernel) console.log(`  ${name.padEnd(22)} ${ms.toFixed(0).padStart(6)} ms`);
  console.log('by kernel and input shapes:');
  for (const [key, ms] of group((k) => `${k.name} ${JSON.stringify(k.inputShapes)}`))
    console.log(`  ${ms.toFixed(0).padStart(6)} ms  ${key}`);
}
console.log(
  `peak rss ${(peakRss / 2 ** 20).toFixed(0)} MiB, tf.memory after forward ${(peakBytes / 2 ** 20).toFixed(0)} MiB, tensors after ${tf.memory().numTensors}`,
);
