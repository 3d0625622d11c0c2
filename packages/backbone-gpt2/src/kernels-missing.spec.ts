// The compiled kernel files are absent (e.g. the package was not built): each wasm op says which
// file is missing and the command that builds it.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, expect, it, vi } from 'vitest';

// Every read of a compiled kernel fails as for a missing file.
vi.mock('node:fs', async (importOriginal) => ({
  ...(await importOriginal<typeof import('node:fs')>()),
  readFileSync: () => {
    throw Object.assign(new Error("ENOENT: no such file or directory, open 'attention.wasm'"), { code: 'ENOENT' });
  },
}));

beforeAll(async () => {
  expect(await tf.setBackend('wasm')).toBe(true);
});

it('names the missing wasm/attention.wasm and the command that builds it', async () => {
  const { fusedCausalAttention } = await import('./fused-attention.js');
  const q = tf.zeros([1, 1, 4, 4]) as tf.Tensor4D;
  expect(() => fusedCausalAttention(q, q, q)).toThrow(
    /wasm\/attention\.wasm is missing \(ENOENT.*npx nx run backbone-gpt2:build-wasm/,
  );
  q.dispose();
});

it('names the missing wasm/gelu.wasm and the command that builds it', async () => {
  const { gelu } = await import('./gelu.js');
  const x = tf.zeros([2, 4]);
  expect(() => gelu(x)).toThrow(
    /GELU: the compiled kernel .*wasm\/gelu\.wasm is missing \(ENOENT.*npx nx run backbone-gpt2:build-wasm/,
  );
  x.dispose();
});

it('names the missing wasm/layer-norm.wasm and the command that builds it', async () => {
  const { layerNorm } = await import('./gpt2.js');
  const x = tf.zeros([2, 4]);
  const [gamma, beta] = [tf.ones([4]), tf.zeros([4])];
  expect(() => layerNorm(x, { gamma, beta })).toThrow(
    /LayerNorm: the compiled kernel .*wasm\/layer-norm\.wasm is missing \(ENOENT.*npx nx run backbone-gpt2:build-wasm/,
  );
  tf.dispose([x, gamma, beta]);
});
