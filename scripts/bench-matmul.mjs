// matMul throughput of a TF.js backend, in GFLOP/s (2·N³ floating-point operations per N×N·N×N
// product). Selects the backend through taskforge core (as `taskforge train` does), so it shows
// the accelerator line with the adapter. Prints one JSON object as its last stdout line.
//
//   node scripts/bench-matmul.mjs --backend=webgpu --sizes=1024,2048,4096 --reps=10
//
// Each size: one warm-up product (shader compilation), then `reps` products queued back to back
// and one read of the last result, which waits for the GPU (reading is the only sync on webgpu).
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    backend: { type: 'string', default: 'webgpu' },
    sizes: { type: 'string', default: '1024,2048,4096' },
    reps: { type: 'string', default: '10' },
  },
});

const info = (m) => process.stderr.write(`${m}\n`);
const tf = await import('@tensorflow/tfjs');
const { selectBackend } = await import('@taskforge/core');
const selection = await selectBackend(a.backend, {
  output: { info, warn: (m) => info(`warning: ${m}`), progress: () => ({ update() {}, setTotal() {}, stop() {} }) },
});
const reps = Number.parseInt(a.reps, 10);
const results = [];
for (const n of a.sizes.split(',').map((s) => Number.parseInt(s, 10))) {
  const x = tf.randomUniform([n, n], -1, 1, 'float32', 1);
  const y = tf.randomUniform([n, n], -1, 1, 'float32', 2);
  const warm = tf.matMul(x, y);
  await warm.data();
  warm.dispose();
  const t0 = performance.now();
  let last;
  for (let i = 0; i < reps; i++) {
    last?.dispose();
    last = tf.matMul(x, y);
  }
  await last.data();
  const ms = (performance.now() - t0) / reps;
  const gflops = (2 * n ** 3) / (ms * 1e6);
  info(`matMul ${n}×${n}: ${ms.toFixed(2)} ms, ${gflops.toFixed(1)} GFLOP/s`);
  results.push({ n, ms, gflops });
  tf.dispose([x, y, last]);
}
process.stdout.write(
  `${JSON.stringify({ ok: true, backend: selection.backend, description: selection.description, adapter: selection.adapter ?? null, reps, results })}\n`,
);
