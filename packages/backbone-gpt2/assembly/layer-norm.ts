/**
 * LayerNorm over the last axis, forward and backward, in WebAssembly SIMD (AssemblyScript).
 *
 * Built by `nx run backbone-gpt2:build-wasm` into `wasm/layer-norm.wasm`; driven from
 * `src/layer-norm.ts`, which passes the byte offsets of the tensors in TF.js's own wasm heap
 * (built with `--importMemory`: zero-copy; the module has no static data and allocates nothing). x, y, xhat, dy, dx are [N, D]
 * row-major; rstd is [N]; gamma, beta, dgamma, dbeta are [D].
 *
 * Per row: mean, then the variance as the mean of squared deviations (two passes over the row,
 * which is in L1, so no cancellation as with E[x²] − E[x]²), rstd = 1/√(var + eps),
 * xhat = (x − mean)·rstd, y = xhat·gamma + beta. Backward, with gy = dy·gamma:
 * dx = (gy − mean(gy) − xhat·mean(gy·xhat))·rstd, dgamma = Σ_rows dy·xhat, dbeta = Σ_rows dy.
 */

/** Σ of the four lanes. */
@inline
function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

/** Σ x[0..D) of one row (whole vectors, then the D % 4 tail). */
@inline
function rowSum(row: usize, D: i32): f32 {
  const whole = D & ~3;
  let acc = f32x4.splat(0);
  for (let d = 0; d < whole; d += 4) acc = f32x4.add(acc, v128.load(row + (<usize>d << 2)));
  let s = hsum(acc);
  for (let d = whole; d < D; d++) s += load<f32>(row + (<usize>d << 2));
  return s;
}

export function forward(
  x: usize, gamma: usize, beta: usize, y: usize, xhat: usize, rstd: usize, N: i32, D: i32, eps: f32,
): void {
  const whole = D & ~3;
  const invD: f32 = <f32>1.0 / <f32>D;
  const rowBytes = <usize>D << 2;
  for (let n = 0; n < N; n++) {
    const xr = x + <usize>n * rowBytes;
    const hr = xhat + <usize>n * rowBytes;
    const yr = y + <usize>n * rowBytes;
    const mean = rowSum(xr, D) * invD;
    const mv = f32x4.splat(mean);
    let sq = f32x4.splat(0);
    for (let d = 0; d < whole; d += 4) {
      const c = f32x4.sub(v128.load(xr + (<usize>d << 2)), mv);
      sq = f32x4.add(sq, f32x4.mul(c, c));
    }
    let ss = hsum(sq);
    for (let d = whole; d < D; d++) {
      const c = load<f32>(xr + (<usize>d << 2)) - mean;
      ss += c * c;
    }
    const r: f32 = <f32>1.0 / Mathf.sqrt(ss * invD + eps);
    store<f32>(rstd + (<usize>n << 2), r);
    const rv = f32x4.splat(r);
    for (let d = 0; d < whole; d += 4) {
      const at = <usize>d << 2;
      const h = f32x4.mul(f32x4.sub(v128.load(xr + at), mv), rv);
      v128.store(hr + at, h);
      v128.store(yr + at, f32x4.add(f32x4.mul(h, v128.load(gamma + at)), v128.load(beta + at)));
    }
    for (let d = whole; d < D; d++) {
      const at = <usize>d << 2;
      const h = (load<f32>(xr + at) - mean) * r;
      store<f32>(hr + at, h);
      store<f32>(yr + at, h * load<f32>(gamma + at) + load<f32>(beta + at));
    }
  }
}

/** dgamma and dbeta are accumulated here from zero (the caller's buffers need not be cleared). */
export function backward(
  dy: usize, xhat: usize, rstd: usize, gamma: usize, dx: usize, dgamma: usize, dbeta: usize, N: i32, D: i32,
): void {
  const whole = D & ~3;
  const invD: f32 = <f32>1.0 / <f32>D;
  const rowBytes = <usize>D << 2;
  memory.fill(dgamma, 0, rowBytes);
  memory.fill(dbeta, 0, rowBytes);
  for (let n = 0; n < N; n++) {
    const gr = dy + <usize>n * rowBytes;
    const hr = xhat + <usize>n * rowBytes;
    const dr = dx + <usize>n * rowBytes;
    // Means of gy = dy·gamma and gy·xhat, accumulating dgamma and dbeta on the way.
    let s1 = f32x4.splat(0);
    let s2 = f32x4.splat(0);
    for (let d = 0; d < whole; d += 4) {
      const at = <usize>d << 2;
      const g = v128.load(gr + at);
      const h = v128.load(hr + at);
      const gy = f32x4.mul(g, v128.load(gamma + at));
      s1 = f32x4.add(s1, gy);
      s2 = f32x4.add(s2, f32x4.mul(gy, h));
      v128.store(dgamma + at, f32x4.add(v128.load(dgamma + at), f32x4.mul(g, h)));
      v128.store(dbeta + at, f32x4.add(v128.load(dbeta + at), g));
    }
    let m1 = hsum(s1);
    let m2 = hsum(s2);
    for (let d = whole; d < D; d++) {
      const at = <usize>d << 2;
      const g = load<f32>(gr + at);
      const h = load<f32>(hr + at);
      const gy = g * load<f32>(gamma + at);
      m1 += gy;
      m2 += gy * h;
      store<f32>(dgamma + at, load<f32>(dgamma + at) + g * h);
      store<f32>(dbeta + at, load<f32>(dbeta + at) + g);
    }
    m1 *= invD;
    m2 *= invD;
    const r = load<f32>(rstd + (<usize>n << 2));
    const m1v = f32x4.splat(m1);
    const m2v = f32x4.splat(m2);
    const rv = f32x4.splat(r);
    for (let d = 0; d < whole; d += 4) {
      const at = <usize>d << 2;
      const gy = f32x4.mul(v128.load(gr + at), v128.load(gamma + at));
      const c = f32x4.sub(f32x4.sub(gy, m1v), f32x4.mul(v128.load(hr + at), m2v));
      v128.store(dr + at, f32x4.mul(c, rv));
    }
    for (let d = whole; d < D; d++) {
      const at = <usize>d << 2;
      const gy = load<f32>(gr + at) * load<f32>(gamma + at);
      store<f32>(dr + at, (gy - m1 - load<f32>(hr + at) * m2) * r);
    }
  }
}
