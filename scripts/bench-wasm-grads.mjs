// `node scripts/bench-wasm-grads.mjs` (after `npx nx build core`): times the convolution gradient
// kernels core supplies for wasm (registerWasmPolyfills) against the cpu backend's kernels, which
// are scalar JavaScript loops, and wasm's own Conv2D forward for scale. Mean of 5 runs after one
// warm-up, in ms; the numbers quoted in packages/core/src/backend/wasm-kernels.ts come from here.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmPolyfills } from '@taskforge/core';

await tf.setBackend('wasm');
registerWasmPolyfills();
await tf.setBackend('cpu');
const N = 8,
  H = 32,
  CIN = 16,
  COUT = 32;
const cases = {
  'Conv2D (forward, for scale)': (t) => tf.conv2d(t.x, t.w, 1, 'same'),
  Conv2DBackpropFilter: (t) =>
    tf
      .engine()
      .runKernel(
        'Conv2DBackpropFilter',
        { x: t.x, dy: t.dy },
        { strides: [1, 1], pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, CIN, COUT] },
      ),
  DepthwiseConv2dNativeBackpropFilter: (t) =>
    tf
      .engine()
      .runKernel(
        'DepthwiseConv2dNativeBackpropFilter',
        { x: t.x, dy: t.dyDepthwise },
        { strides: [1, 1], dilations: [1, 1], pad: 'same', filterShape: [3, 3, CIN, 1] },
      ),
  DepthwiseConv2dNativeBackpropInput: (t) =>
    tf
      .engine()
      .runKernel(
        'DepthwiseConv2dNativeBackpropInput',
        { dy: t.dyDepthwise, filter: t.wDepthwise },
        { strides: [1, 1], dilations: [1, 1], pad: 'same', inputShape: [N, H, H, CIN] },
      ),
};
console.log(
  `x [${N}, ${H}, ${H}, ${CIN}], 3×3 filters, ${COUT} output channels (depthwise: multiplier 1), 'same' padding`,
);
for (const backend of ['wasm', 'cpu']) {
  tf.setBackend(backend);
  const t = {
    x: tf.randomNormal([N, H, H, CIN], 0, 1, 'float32', 1),
    w: tf.randomNormal([3, 3, CIN, COUT], 0, 1, 'float32', 2),
    dy: tf.randomNormal([N, H, H, COUT], 0, 1, 'float32', 3),
    dyDepthwise: tf.randomNormal([N, H, H, CIN], 0, 1, 'float32', 4),
    wDepthwise: tf.randomNormal([3, 3, CIN, 1], 0, 1, 'float32', 5),
  };
  for (const [name, f] of Object.entries(cases)) {
    tf.tidy(() => f(t).dataSync());
    const start = performance.now();
    for (let i = 0; i < 5; i++) tf.tidy(() => f(t).dataSync());
    console.log(
      `${backend.padEnd(5)} ${name.padEnd(36)} ${((performance.now() - start) / 5).toFixed(1).padStart(9)} ms`,
    );
  }
  tf.dispose(Object.values(t));
}
