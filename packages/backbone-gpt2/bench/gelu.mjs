// One-off measurement, not a test: GELU forward + backward on wasm, the SIMD kernels (what
// `gelu` runs there) against the composed ops it runs on other backends, interleaved in one
// process so both see the same machine load. Reports median wall ms per call.
// Build first (npx nx build backbone-gpt2), then:
//   node packages/backbone-gpt2/bench/gelu.mjs
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

const { gelu } = await import('../dist/gelu.js');
await tf.setBackend('wasm');

const K = 2 * Math.sqrt(2 / Math.PI);
const A = 0.044715;
/** src/gelu.ts's composed-ops path, as a customGrad that saves x. */
const composed = (x) =>
  tf.customGrad((input, save) => {
    save([input]);
    return {
      value: tf.tidy(() =>
        input.mul(
          tf.sigmoid(
            input.mul(
              input
                .square()
                .mul(A * K)
                .add(K),
            ),
          ),
        ),
      ),
      gradFunc: (dy, [xs]) =>
        tf.tidy(() => {
          const x2 = xs.square();
          const s = tf.sigmoid(xs.mul(x2.mul(A * K).add(K)));
          return dy.mul(
            s.add(
              xs
                .mul(s)
                .mul(tf.sub(1, s))
                .mul(x2.mul(3 * A * K).add(K)),
            ),
          );
        }),
    };
  })(x);

const median = (xs) => [...xs].sort((p, q) => p - q)[xs.length >> 1];
// The MLP activation of the bench's default ([16·1024, 4·16]) and large ([8·1024, 4·128]) configs.
for (const shape of [
  [16384, 64],
  [8192, 512],
]) {
  const x = tf.variable(tf.randomNormal(shape));
  const upstream = tf.randomNormal(shape);
  const time = (f) => {
    const t0 = performance.now();
    const grads = tf.grads((v) => f(v).mul(upstream))([x]);
    grads[0].dataSync();
    tf.dispose(grads);
    return performance.now() - t0;
  };
  const runs = { composed: [], kernels: [] };
  // Warm-up: heap growth, kernel loading.
  for (let i = 0; i < 3; i++) {
    time(composed);
    time(gelu);
  }
  for (let i = 0; i < 9; i++) {
    runs.composed.push(time(composed));
    runs.kernels.push(time(gelu));
  }
  const [c, k] = [median(runs.composed), median(runs.kernels)];
  console.log(`[${shape}]: composed ops ${c.toFixed(1)} ms, kernels ${k.toFixed(1)} ms (${(c / k).toFixed(2)}x)`);
  tf.dispose([x, upstream]);
}
