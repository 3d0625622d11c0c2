/**
 * The weight gradient of a dense layer, dw = xᵀ·dy, in WebAssembly SIMD (AssemblyScript).
 *
 * Built by `nx run core:build-wasm` into `wasm/linear.wasm` with `--importMemory`; driven from
 * `src/ops/linear-grad.ts`, which passes the byte offsets of x, dy and the output in TF.js's own
 * wasm heap (zero-copy: the module has no static data and allocates nothing). TF.js's wasm backend computes xᵀ·dy either through a scalar loop
 * (matMul's transposeA) or by transposing x first (a generic per-element Transpose kernel);
 * this reads x and dy row by row as they lie, so nothing is transposed.
 *
 * Tiling: 4 rows of dw (4 columns of x, splatted) × 8 columns of dw (two f32x4 of a dy row) are
 * eight accumulators that stay in registers while a block of NB rows of x and dy streams past;
 * the blocks keep those rows in L1 while every tile of dw reads them.
 */

/** Rows of x and dy per block: 128 × (in + out) × 4 bytes stays inside a 32 KiB L1 for in + out ≤ 64. */
const NB = 128;

/**
 * dw [inDim, outDim] = xᵀ·dy for x [N, inDim] and dy [N, outDim], all row-major f32.
 * Pointers are byte offsets; dw is overwritten.
 */
export function matMulTN(N: i32, inDim: i32, outDim: i32, x: usize, dy: usize, dw: usize): void {
  memory.fill(dw, 0, (<usize>(inDim * outDim)) << 2);
  const xRow = (<usize>inDim) << 2;
  const dyRow = (<usize>outDim) << 2;
  const dwRow = dyRow;
  for (let n0 = 0; n0 < N; n0 += NB) {
    const nb = min(NB, N - n0);
    const xb = x + <usize>n0 * xRow;
    const dyb = dy + <usize>n0 * dyRow;
    let i = 0;
    for (; i + 4 <= inDim; i += 4) {
      const w0 = dw + <usize>i * dwRow;
      const w1 = w0 + dwRow;
      const w2 = w1 + dwRow;
      const w3 = w2 + dwRow;
      let j = 0;
      for (; j + 8 <= outDim; j += 8) {
        const jb = (<usize>j) << 2;
        let a0 = v128.load(w0 + jb),
          b0 = v128.load(w0 + jb, 16);
        let a1 = v128.load(w1 + jb),
          b1 = v128.load(w1 + jb, 16);
        let a2 = v128.load(w2 + jb),
          b2 = v128.load(w2 + jb, 16);
        let a3 = v128.load(w3 + jb),
          b3 = v128.load(w3 + jb, 16);
        let xp = xb + ((<usize>i) << 2);
        let dp = dyb + jb;
        for (let n = 0; n < nb; n++) {
          const d0 = v128.load(dp);
          const d1 = v128.load(dp, 16);
          const x0 = v128.load32_splat(xp);
          const x1 = v128.load32_splat(xp, 4);
          const x2 = v128.load32_splat(xp, 8);
          const x3 = v128.load32_splat(xp, 12);
          a0 = f32x4.add(a0, f32x4.mul(x0, d0));
          b0 = f32x4.add(b0, f32x4.mul(x0, d1));
          a1 = f32x4.add(a1, f32x4.mul(x1, d0));
          b1 = f32x4.add(b1, f32x4.mul(x1, d1));
          a2 = f32x4.add(a2, f32x4.mul(x2, d0));
          b2 = f32x4.add(b2, f32x4.mul(x2, d1));
          a3 = f32x4.add(a3, f32x4.mul(x3, d0));
          b3 = f32x4.add(b3, f32x4.mul(x3, d1));
          xp += xRow;
          dp += dyRow;
        }
        v128.store(w0 + jb, a0);
        v128.store(w0 + jb, b0, 16);
        v128.store(w1 + jb, a1);
        v128.store(w1 + jb, b1, 16);
        v128.store(w2 + jb, a2);
        v128.store(w2 + jb, b2, 16);
        v128.store(w3 + jb, a3);
        v128.store(w3 + jb, b3, 16);
      }
      for (; j + 4 <= outDim; j += 4) {
        const jb = (<usize>j) << 2;
        let a0 = v128.load(w0 + jb),
          a1 = v128.load(w1 + jb),
          a2 = v128.load(w2 + jb),
          a3 = v128.load(w3 + jb);
        let xp = xb + ((<usize>i) << 2);
        let dp = dyb + jb;
        for (let n = 0; n < nb; n++) {
          const d0 = v128.load(dp);
          a0 = f32x4.add(a0, f32x4.mul(v128.load32_splat(xp), d0));
          a1 = f32x4.add(a1, f32x4.mul(v128.load32_splat(xp, 4), d0));
          a2 = f32x4.add(a2, f32x4.mul(v128.load32_splat(xp, 8), d0));
          a3 = f32x4.add(a3, f32x4.mul(v128.load32_splat(xp, 12), d0));
          xp += xRow;
          dp += dyRow;
        }
        v128.store(w0 + jb, a0);
        v128.store(w1 + jb, a1);
        v128.store(w2 + jb, a2);
        v128.store(w3 + jb, a3);
      }
      for (; j < outDim; j++) scalarColumn(nb, i, 4, j, xb, dyb, xRow, dyRow, dw, dwRow);
    }
    for (; i < inDim; i++) {
      const w0 = dw + <usize>i * dwRow;
      let j = 0;
      for (; j + 4 <= outDim; j += 4) {
        const jb = (<usize>j) << 2;
        let a0 = v128.load(w0 + jb);
        let xp = xb + ((<usize>i) << 2);
        let dp = dyb + jb;
        for (let n = 0; n < nb; n++) {
          a0 = f32x4.add(a0, f32x4.mul(v128.load32_splat(xp), v128.load(dp)));
          xp += xRow;
          dp += dyRow;
        }
        v128.store(w0 + jb, a0);
      }
      for (; j < outDim; j++) scalarColumn(nb, i, 1, j, xb, dyb, xRow, dyRow, dw, dwRow);
    }
  }
}

/** dw[i .. i+rows-1, j] += Σ over the block's nb rows of x[n, i+r]·dy[n, j] (column tails). */
function scalarColumn(
  nb: i32,
  i: i32,
  rows: i32,
  j: i32,
  xb: usize,
  dyb: usize,
  xRow: usize,
  dyRow: usize,
  dw: usize,
  dwRow: usize,
): void {
  for (let r = 0; r < rows; r++) {
    let s: f32 = 0;
    let xp = xb + ((<usize>(i + r)) << 2);
    let dp = dyb + ((<usize>j) << 2);
    for (let n = 0; n < nb; n++) {
      s += load<f32>(xp) * load<f32>(dp);
      xp += xRow;
      dp += dyRow;
    }
    const w = dw + <usize>(i + r) * dwRow + ((<usize>j) << 2);
    store<f32>(w, load<f32>(w) + s);
  }
}

/**
 * out [D] = Σₙ x[n, :] for x [N, D] row-major f32 (a bias gradient). Bands of 16 columns are
 * summed in registers over blocks of NB rows, each block's sum then added to out, so rounding
 * grows with NB + N / NB rather than N. Pointers are byte offsets; out is overwritten.
 */
export function sumRows(N: i32, D: i32, x: usize, out: usize): void {
  memory.fill(out, 0, (<usize>D) << 2);
  const row = (<usize>D) << 2;
  for (let n0 = 0; n0 < N; n0 += NB) {
    const nb = min(NB, N - n0);
    const xb = x + <usize>n0 * row;
    let j = 0;
    for (; j + 16 <= D; j += 16) {
      let a0 = f32x4.splat(0),
        a1 = a0,
        a2 = a0,
        a3 = a0;
      let p = xb + ((<usize>j) << 2);
      for (let n = 0; n < nb; n++) {
        a0 = f32x4.add(a0, v128.load(p));
        a1 = f32x4.add(a1, v128.load(p, 16));
        a2 = f32x4.add(a2, v128.load(p, 32));
        a3 = f32x4.add(a3, v128.load(p, 48));
        p += row;
      }
      const o = out + ((<usize>j) << 2);
      v128.store(o, f32x4.add(v128.load(o), a0));
      v128.store(o, f32x4.add(v128.load(o, 16), a1), 16);
      v128.store(o, f32x4.add(v128.load(o, 32), a2), 32);
      v128.store(o, f32x4.add(v128.load(o, 48), a3), 48);
    }
    for (; j + 4 <= D; j += 4) {
      let a0 = f32x4.splat(0);
      let p = xb + ((<usize>j) << 2);
      for (let n = 0; n < nb; n++) {
        a0 = f32x4.add(a0, v128.load(p));
        p += row;
      }
      const o = out + ((<usize>j) << 2);
      v128.store(o, f32x4.add(v128.load(o), a0));
    }
    for (; j < D; j++) {
      let s: f32 = 0;
      let p = xb + ((<usize>j) << 2);
      for (let n = 0; n < nb; n++) {
        s += load<f32>(p);
        p += row;
      }
      const o = out + ((<usize>j) << 2);
      store<f32>(o, load<f32>(o) + s);
    }
  }
}
