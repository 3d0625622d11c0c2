/**
 * exp for four lanes of x ≤ 0, shared by the attention and GELU kernels, and a table-free log
 * for the attention's log-sum-exp (imported; only an entry file's own exports become a module's
 * exports). Nothing here may use static data: the kernels are instantiated on TF.js's heap
 * (`--importMemory`), and AssemblyScript's Mathf.log/Math.log carry lookup tables.
 */

/**
 * exp(x) for four lanes, as 2^t with t = x·log2(e) = n + f (n = round(t), |f| ≤ 1/2): 2^f by a
 * degree-5 polynomial (relative-error minimax fit on [−1/2, 1/2], 1.7e-7 in f32, ~1.4 ulp), and
 * 2^n added to its exponent bits. Cheaper than Cephes' expf (two-constant range reduction and a
 * degree-7 form) by a third; the reduction's rounding grows with |x| (≤ 2e-6 relative at x = −30,
 * where exp(x) weighs < 1e-13 of its row), which no softmax output can see.
 * Lanes with x < FLUSH_BELOW give exactly 0. In the attention kernels every x is a score minus its
 * row's max (or log-sum-exp), so x ≤ 0 and such a lane weighs < 1e-13 of the row's largest, far
 * below f32 rounding; but kept, its tiny p times a value lands in the subnormal range, which x86
 * cores compute through a slow microcode assist (wasm has no flush-to-zero mode): a trained
 * model's peaked attention made whole steps ~30% slower.
 */
@inline
export function exp4(x: v128): v128 {
  const keep = f32x4.ge(x, f32x4.splat(FLUSH_BELOW));
  const t = f32x4.mul(f32x4.pmax(x, f32x4.splat(FLUSH_BELOW)), f32x4.splat(1.4426950408889634));
  // Adding 1.5·2²³ rounds t to an integer (to nearest, ties to even, as f32x4.nearest) held in
  // the low mantissa bits of r, so r << 23 is n in the exponent field: no float-to-int conversion,
  // which V8 expands into a long saturating sequence on x64 (XNNPACK's "magic bias").
  const r = f32x4.add(t, f32x4.splat(MAGIC_BIAS));
  const n = f32x4.sub(r, f32x4.splat(MAGIC_BIAS));
  const f = f32x4.sub(t, n);
  let p = f32x4.splat(1.3273167423903942e-3);
  p = f32x4.add(f32x4.mul(p, f), f32x4.splat(9.671817533671856e-3));
  p = f32x4.add(f32x4.mul(p, f), f32x4.splat(5.5507075041532516e-2));
  p = f32x4.add(f32x4.mul(p, f), f32x4.splat(2.4022236466407776e-1));
  p = f32x4.add(f32x4.mul(p, f), f32x4.splat(6.931470036506653e-1));
  p = f32x4.add(f32x4.mul(p, f), f32x4.splat(1.0));
  // n ≥ −44 and 2^f ≥ 0.7, so the product stays a normal float: adding n to the exponent is exact.
  return v128.and(i32x4.add(p, i32x4.shl(r, 23)), keep);
}

/** 1.5·2²³: t + this has round(t) in its low mantissa bits for |t| < 2²². */
const MAGIC_BIAS: f32 = 12582912.0;

/** exp(−30) ≈ 9.4e-14 (see exp4). */
export const FLUSH_BELOW: f32 = -30.0;

/**
 * ln(x) for a normal x > 0 (the attention passes a row's Σ exp(s − max) ∈ [1, T]), table-free:
 * x = 2^e·m with m ∈ [√½, √2), ln m = 2·atanh(s) with s = (m − 1)/(m + 1), |s| ≤ 0.172, by its
 * series to s⁹ (truncation < 1e-9 relative), in f64, so the f32 result is within an ulp.
 */
@inline
export function lnf(x: f32): f32 {
  const bits = reinterpret<i32>(x);
  let e = (bits >> 23) - 127;
  let m = <f64>reinterpret<f32>((bits & 0x7fffff) | 0x3f800000);
  if (m > 1.4142135623730951) {
    m *= 0.5;
    e += 1;
  }
  const s = (m - 1) / (m + 1);
  const s2 = s * s;
  const series = 2 * s * (1 + s2 * (1.0 / 3 + s2 * (0.2 + s2 * (1.0 / 7 + s2 / 9))));
  return <f32>(<f64>e * 0.6931471805599453 + series);
}
