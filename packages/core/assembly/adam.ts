/**
 * One Adam / AdamW update of one variable, fused into a single pass (WebAssembly SIMD,
 * AssemblyScript), the same float32 operations in the same order as the composed TF.js ops of
 * `src/optim/adam.ts`, so both give bitwise the same result:
 *
 *   g′ = g + wd·p            (L2 weight decay, Adam; else g′ = g)
 *   p′ = p·decay             (decoupled weight decay, AdamW: decay = 1 − lr·wd; else p′ = p)
 *   m  = β1·m + (1 − β1)·g′
 *   v  = β2·v + (1 − β2)·g′²
 *   p  = p′ − (m / (√v / √(1 − β2ᵗ) + ε))·(lr / (1 − β1ᵗ))
 *
 * Built by `nx run core:build-wasm` into `wasm/adam.wasm` with `--importMemory`: every pointer
 * is a byte offset into TF.js's wasm heap (zero-copy; no static data). The composed ops make
 * ~12 passes over the variable, each writing a new tensor; this reads p, g, m, v once and writes
 * p, m, v once.
 */

/**
 * For i < n: writes the new p, m, v at pOut, mOut, vOut from p, g, m, v. The constants are
 * float32 values as the composed ops would round them: b1, 1 − β1, b2, 1 − β2, sqrt(1 − β2ᵗ), ε,
 * lr / (1 − β1ᵗ), wd (L2, 0 for none) and decay (AdamW, 1 for none).
 */
export function adamStep(
  n: i32,
  p: usize,
  g: usize,
  m: usize,
  v: usize,
  pOut: usize,
  mOut: usize,
  vOut: usize,
  b1: f32,
  oneMinusB1: f32,
  b2: f32,
  oneMinusB2: f32,
  sqrtBc2: f32,
  eps: f32,
  stepSize: f32,
  wd: f32,
  decay: f32,
): void {
  const l2 = wd != 0;
  const decoupled = decay != 1;
  const B1 = f32x4.splat(b1),
    C1 = f32x4.splat(oneMinusB1),
    B2 = f32x4.splat(b2),
    C2 = f32x4.splat(oneMinusB2),
    S2 = f32x4.splat(sqrtBc2),
    E = f32x4.splat(eps),
    LR = f32x4.splat(stepSize),
    WD = f32x4.splat(wd),
    DE = f32x4.splat(decay);
  const whole = n & ~3;
  for (let i = 0; i < whole; i += 4) {
    const at = (<usize>i) << 2;
    const pv = v128.load(p + at);
    let gv = v128.load(g + at);
    if (l2) gv = f32x4.add(gv, f32x4.mul(pv, WD));
    const pd = decoupled ? f32x4.mul(pv, DE) : pv;
    const mv = f32x4.add(f32x4.mul(v128.load(m + at), B1), f32x4.mul(gv, C1));
    const vv = f32x4.add(f32x4.mul(v128.load(v + at), B2), f32x4.mul(f32x4.mul(gv, gv), C2));
    const denom = f32x4.add(f32x4.div(f32x4.sqrt(vv), S2), E);
    v128.store(mOut + at, mv);
    v128.store(vOut + at, vv);
    v128.store(pOut + at, f32x4.sub(pd, f32x4.mul(f32x4.div(mv, denom), LR)));
  }
  // The last n % 4 elements one at a time: never read or write past n.
  for (let i = whole; i < n; i++) {
    const at = (<usize>i) << 2;
    const pv = load<f32>(p + at);
    let gv = load<f32>(g + at);
    if (l2) gv = gv + pv * wd;
    const pd = decoupled ? pv * decay : pv;
    const mv = load<f32>(m + at) * b1 + gv * oneMinusB1;
    const vv = load<f32>(v + at) * b2 + gv * gv * oneMinusB2;
    const denom = Mathf.sqrt(vv) / sqrtBc2 + eps;
    store<f32>(mOut + at, mv);
    store<f32>(vOut + at, vv);
    store<f32>(pOut + at, pd - (mv / denom) * stepSize);
  }
}
