/**
 * GPT-2's GELU, y = x·σ(u) with u = K·(x + A·x³) (the tanh form 0.5·x·(1 + tanh(u/2)) written
 * with the logistic function), and its gradient, in WebAssembly SIMD (AssemblyScript).
 *
 * Built by `nx run backbone-gpt2:build-wasm` into `wasm/gelu.wasm`; driven from `src/gelu.ts`,
 * which passes the byte offsets of the tensors in TF.js's own wasm heap (built with
 * `--importMemory`: zero-copy; the module has no static data and allocates nothing). One pass over x (and dy) per call, where the composed TF.js ops
 * make 6 passes forward and 13 backward, each writing a [B, T, 4D] tensor.
 */

import { exp4 } from './exp';

const K: f32 = 1.5957691216057308; // 2·√(2/π)
const A: f32 = 0.044715;

/**
 * σ(u) = 1 / (1 + e^(−u)) for four lanes, from e = exp(−|u|) ≤ 1 so nothing overflows:
 * 1 / (1 + e) for u ≥ 0 and e / (1 + e) for u < 0.
 */
@inline
function sigmoid4(u: v128): v128 {
  const e = exp4(f32x4.neg(f32x4.abs(u)));
  const inv = f32x4.div(f32x4.splat(1.0), f32x4.add(f32x4.splat(1.0), e));
  return v128.bitselect(inv, f32x4.mul(e, inv), f32x4.ge(u, f32x4.splat(0.0)));
}

/** u = K·(x + A·x³) = x·(K + A·K·x²). */
@inline
function inner(x: v128, x2: v128): v128 {
  return f32x4.mul(x, f32x4.add(f32x4.splat(K), f32x4.mul(f32x4.splat(A * K), x2)));
}

@inline
function geluAt(x: v128): v128 {
  return f32x4.mul(x, sigmoid4(inner(x, f32x4.mul(x, x))));
}

/** dy·(σ(u) + x·σ(u)·(1 − σ(u))·u′), with u′ = K·(1 + 3A·x²). */
@inline
function geluGradAt(x: v128, dy: v128): v128 {
  const x2 = f32x4.mul(x, x);
  const s = sigmoid4(inner(x, x2));
  const du = f32x4.add(f32x4.splat(K), f32x4.mul(f32x4.splat(3 * A * K), x2));
  const slope = f32x4.mul(f32x4.mul(x, f32x4.mul(s, f32x4.sub(f32x4.splat(1.0), s))), du);
  return f32x4.mul(dy, f32x4.add(s, slope));
}

/** y[i] = gelu(x[i]) for i < n. */
export function forward(x: usize, y: usize, n: i32): void {
  const whole = n & ~3;
  for (let i = 0; i < whole; i += 4) {
    const at = <usize>i << 2;
    v128.store(y + at, geluAt(v128.load(x + at)));
  }
  // The last n % 4 elements, one lane each: never read or write past n.
  for (let i = whole; i < n; i++) {
    const at = <usize>i << 2;
    store<f32>(y + at, f32x4.extract_lane(geluAt(f32x4.splat(load<f32>(x + at))), 0));
  }
}

/** dx[i] = dy[i]·gelu′(x[i]) for i < n. */
export function backward(x: usize, dy: usize, dx: usize, n: i32): void {
  const whole = n & ~3;
  for (let i = 0; i < whole; i += 4) {
    const at = <usize>i << 2;
    v128.store(dx + at, geluGradAt(v128.load(x + at), v128.load(dy + at)));
  }
  for (let i = whole; i < n; i++) {
    const at = <usize>i << 2;
    const g = geluGradAt(f32x4.splat(load<f32>(x + at)), f32x4.splat(load<f32>(dy + at)));
    store<f32>(dx + at, f32x4.extract_lane(g, 0));
  }
}
