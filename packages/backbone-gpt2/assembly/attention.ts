/**
 * Fused causal self-attention, forward and backward, in WebAssembly SIMD (AssemblyScript).
 *
 * Built by `nx run backbone-gpt2:build-wasm` into `wasm/attention.wasm`; driven from
 * `src/fused-attention.ts`, which passes the byte offsets of the tensors, the outputs and
 * scratch buffers it allocates in TF.js's own wasm heap (built with `--importMemory`: zero-copy;
 * the module has no static data and allocates nothing).
 *
 * Layout: every tensor is addressed by strides (in f32 elements), so the same kernels read
 * [B, H, T, hd] tensors and, without any transpose, the [B, T, 3D] output of the qkv projection
 * (q, k, v = the same buffer at column offsets 0, D, 2D) and write [B, T, D]. Element (b, h, t, d)
 * of q, k, v, dq, dk, dv lies at base + b·sB + h·sH + t·sT + d; of o and dy at
 * base + b·oB + h·oH + t·oT + d. lse is [B·H, T]. Scratch: kt, vt, dkt, dvt are [hd, T4]
 * (T4 = T rounded up to a multiple of 4) with rows ld = T4 + 16 elements apart, rows is [4, T4],
 * and qsp, dysp are [4, hd] f32x4 splats. Nothing of size T × T exists.
 *
 * Why ld = T4 + 16: the inner loops walk one column of these [hd, T4] arrays, hd rows apart. At
 * T = 1024 unpadded rows are exactly 4 KiB apart, so all hd of them (× 4 arrays in the backward
 * pass) fall into the same L1 cache set and evict each other; 64 more bytes per row spreads
 * them over consecutive sets.
 *
 * Block-causal, in blocks of 4 query rows: block i0..i0+3 meets keys 0..i0+3 only (the upper
 * triangle is never touched; only the diagonal group of 4 keys is masked), and its scores live
 * in `rows` while it is processed. The backward pass recomputes them from q, k and the saved
 * per-row log-sum-exp (as FlashAttention-2 does).
 *
 * Vectorised across keys: k and v are transposed once per head into kt/vt ([hd, T4]) so that the
 * scores of 4 rows × 4 consecutive keys are four f32x4 accumulators, whatever the head size, and
 * each loaded key vector serves 4 rows.
 */

// exp4 (with its flush of lanes below exp(−30) to 0) is shared with the GELU kernels.
import { exp4, lnf } from './exp';

@inline
function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

/** Lanes j0..j0+3 that are keys ≤ i (all ones) or past the row (zero). */
@inline
function causalLanes(j0: i32, n: i32): v128 {
  return i32x4.lt_s(i32x4.add(i32x4.splat(j0), i32x4(0, 1, 2, 3)), i32x4.splat(n));
}

/** dst [hd, T4] (rows ld elements apart) = src [T, hd]ᵀ (src rows sT apart), zero in columns T..T4-1. */
function transposeIn(src: usize, dst: usize, T: i32, T4: i32, hd: i32, sT: i32, ld: i32): void {
  for (let d = 0; d < hd; d++) {
    const row = dst + (<usize>(d * ld) << 2);
    for (let j = 0; j < T; j++) store<f32>(row + (<usize>j << 2), load<f32>(src + (<usize>(j * sT + d) << 2)));
    for (let j = T; j < T4; j++) store<f32>(row + (<usize>j << 2), 0);
  }
}

/** dst [T, hd] (rows sT elements apart) = src [hd, T4]ᵀ (rows ld apart; columns < T). */
function transposeOut(src: usize, dst: usize, T: i32, hd: i32, sT: i32, ld: i32): void {
  for (let j = 0; j < T; j++) {
    const row = dst + (<usize>(j * sT) << 2);
    for (let d = 0; d < hd; d++) store<f32>(row + (<usize>d << 2), load<f32>(src + (<usize>(d * ld + j) << 2)));
  }
}


const NEG: f32 = -3.4e38;

/** Splat scratch entry (r, d) of a [4, hd] f32x4 array. */
@inline
function at4(base: usize, r: i32, d: i32, hd: i32): usize {
  return base + (<usize>(r * hd + d) << 4);
}

@inline
function hmax(v: v128): f32 {
  return max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

/**
 * out[r, d] = (Σ_j row_r[j] · cols[d, j]) · mult_r for the rb real rows of a block (r < rb) and
 * d < hd: the probabilities (or dS) of 4 query rows, kept in row0..row3 ([n4] each), times the
 * transposed values (or keys) cols [hd, ld]. Two d at a time, so each loaded row vector serves
 * two columns (8 accumulators, 4 row and 2 column registers); an odd hd ends with one column.
 */
@inline
function rowsTimesColumns(
  row0: usize, row1: usize, row2: usize, row3: usize, cols: usize, n4: i32, hd: i32, ld: i32,
  out: usize, outStride: usize, rb: i32, mult0: f32, mult1: f32, mult2: f32, mult3: f32,
): void {
  let d = 0;
  for (; d + 2 <= hd; d += 2) {
    const c0 = cols + (<usize>(d * ld) << 2);
    const c1 = c0 + (<usize>ld << 2);
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
    let b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (let j = 0; j < n4; j += 4) {
      const jb = <usize>j << 2;
      const x0 = v128.load(c0 + jb);
      const x1 = v128.load(c1 + jb);
      const p0 = v128.load(row0 + jb);
      const p1 = v128.load(row1 + jb);
      const p2 = v128.load(row2 + jb);
      const p3 = v128.load(row3 + jb);
      a0 = f32x4.add(a0, f32x4.mul(p0, x0));
      b0 = f32x4.add(b0, f32x4.mul(p0, x1));
      a1 = f32x4.add(a1, f32x4.mul(p1, x0));
      b1 = f32x4.add(b1, f32x4.mul(p1, x1));
      a2 = f32x4.add(a2, f32x4.mul(p2, x0));
      b2 = f32x4.add(b2, f32x4.mul(p2, x1));
      a3 = f32x4.add(a3, f32x4.mul(p3, x0));
      b3 = f32x4.add(b3, f32x4.mul(p3, x1));
    }
    const db = <usize>d << 2;
    store<f32>(out + db, hsum(a0) * mult0);
    store<f32>(out + db, hsum(b0) * mult0, 4);
    if (rb > 1) {
      store<f32>(out + outStride + db, hsum(a1) * mult1);
      store<f32>(out + outStride + db, hsum(b1) * mult1, 4);
    }
    if (rb > 2) {
      store<f32>(out + 2 * outStride + db, hsum(a2) * mult2);
      store<f32>(out + 2 * outStride + db, hsum(b2) * mult2, 4);
    }
    if (rb > 3) {
      store<f32>(out + 3 * outStride + db, hsum(a3) * mult3);
      store<f32>(out + 3 * outStride + db, hsum(b3) * mult3, 4);
    }
  }
  if (d < hd) {
    const c0 = cols + (<usize>(d * ld) << 2);
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
    for (let j = 0; j < n4; j += 4) {
      const jb = <usize>j << 2;
      const x0 = v128.load(c0 + jb);
      a0 = f32x4.add(a0, f32x4.mul(v128.load(row0 + jb), x0));
      a1 = f32x4.add(a1, f32x4.mul(v128.load(row1 + jb), x0));
      a2 = f32x4.add(a2, f32x4.mul(v128.load(row2 + jb), x0));
      a3 = f32x4.add(a3, f32x4.mul(v128.load(row3 + jb), x0));
    }
    const db = <usize>d << 2;
    store<f32>(out + db, hsum(a0) * mult0);
    if (rb > 1) store<f32>(out + outStride + db, hsum(a1) * mult1);
    if (rb > 2) store<f32>(out + 2 * outStride + db, hsum(a2) * mult2);
    if (rb > 3) store<f32>(out + 3 * outStride + db, hsum(a3) * mult3);
  }
}

/**
 * Forward: o = softmax(q·kᵀ·scale + causal mask)·v per head, and lse = the rows' log-sum-exp of
 * the scaled, masked scores (saved for the backward pass).
 */
export function forward(
  B: i32, H: i32, T: i32, hd: i32, scale: f32,
  q: usize, k: usize, v: usize, sB: i32, sH: i32, sT: i32,
  o: usize, oB: i32, oH: i32, oT: i32,
  lse: usize, kt: usize, vt: usize, rows: usize, qsp: usize,
): void {
  const T4 = (T + 3) & ~3;
  const ld = T4 + 16;
  const rowBytes = <usize>T4 << 2;
  const r1 = rows + rowBytes;
  const r2 = r1 + rowBytes;
  const r3 = r2 + rowBytes;
  const BH = B * H;
  for (let h = 0; h < BH; h++) {
    const off = <usize>((h / H) * sB + (h % H) * sH) << 2;
    const oOff = <usize>((h / H) * oB + (h % H) * oH) << 2;
    transposeIn(k + off, kt, T, T4, hd, sT, ld);
    transposeIn(v + off, vt, T, T4, hd, sT, ld);
    for (let i0 = 0; i0 < T; i0 += 4) {
      const rb = min(4, T - i0);
      // Rows past T repeat row T-1: computed, never written.
      for (let r = 0; r < 4; r++) {
        const qRow = q + off + (<usize>(min(i0 + r, T - 1) * sT) << 2);
        for (let d = 0; d < hd; d++) v128.store(at4(qsp, r, d, hd), f32x4.splat(load<f32>(qRow + (<usize>d << 2)) * scale));
      }
      const n4 = i0 + 4;
      let m0 = f32x4.splat(NEG), m1 = m0, m2 = m0, m3 = m0;
      // Pairs of key quads below the diagonal: 4 rows × 8 keys share each q splat load.
      let j = 0;
      for (; j + 8 <= i0; j += 8) {
        const jb = <usize>j << 2;
        let s0 = f32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
        let t0 = s0, t1 = s0, t2 = s0, t3 = s0;
        for (let d = 0; d < hd; d++) {
          const kp = kt + (<usize>(d * ld) << 2) + jb;
          const ka = v128.load(kp);
          const kb = v128.load(kp, 16);
          const q0 = v128.load(at4(qsp, 0, d, hd));
          const q1 = v128.load(at4(qsp, 1, d, hd));
          const q2 = v128.load(at4(qsp, 2, d, hd));
          const q3 = v128.load(at4(qsp, 3, d, hd));
          s0 = f32x4.add(s0, f32x4.mul(q0, ka));
          t0 = f32x4.add(t0, f32x4.mul(q0, kb));
          s1 = f32x4.add(s1, f32x4.mul(q1, ka));
          t1 = f32x4.add(t1, f32x4.mul(q1, kb));
          s2 = f32x4.add(s2, f32x4.mul(q2, ka));
          t2 = f32x4.add(t2, f32x4.mul(q2, kb));
          s3 = f32x4.add(s3, f32x4.mul(q3, ka));
          t3 = f32x4.add(t3, f32x4.mul(q3, kb));
        }
        v128.store(rows + jb, s0);
        v128.store(rows + jb, t0, 16);
        v128.store(r1 + jb, s1);
        v128.store(r1 + jb, t1, 16);
        v128.store(r2 + jb, s2);
        v128.store(r2 + jb, t2, 16);
        v128.store(r3 + jb, s3);
        v128.store(r3 + jb, t3, 16);
        m0 = f32x4.max(m0, f32x4.max(s0, t0));
        m1 = f32x4.max(m1, f32x4.max(s1, t1));
        m2 = f32x4.max(m2, f32x4.max(s2, t2));
        m3 = f32x4.max(m3, f32x4.max(s3, t3));
      }
      for (; j < n4; j += 4) {
        const jb = <usize>j << 2;
        let s0 = f32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
        for (let d = 0; d < hd; d++) {
          const kv = v128.load(kt + (<usize>(d * ld) << 2) + jb);
          s0 = f32x4.add(s0, f32x4.mul(v128.load(at4(qsp, 0, d, hd)), kv));
          s1 = f32x4.add(s1, f32x4.mul(v128.load(at4(qsp, 1, d, hd)), kv));
          s2 = f32x4.add(s2, f32x4.mul(v128.load(at4(qsp, 2, d, hd)), kv));
          s3 = f32x4.add(s3, f32x4.mul(v128.load(at4(qsp, 3, d, hd)), kv));
        }
        if (j == i0) {
          // The diagonal group: row i0+r sees keys ≤ i0+r.
          const neg = f32x4.splat(NEG);
          s0 = v128.bitselect(s0, neg, causalLanes(j, i0 + 1));
          s1 = v128.bitselect(s1, neg, causalLanes(j, i0 + 2));
          s2 = v128.bitselect(s2, neg, causalLanes(j, i0 + 3));
        }
        v128.store(rows + jb, s0);
        v128.store(r1 + jb, s1);
        v128.store(r2 + jb, s2);
        v128.store(r3 + jb, s3);
        m0 = f32x4.max(m0, s0);
        m1 = f32x4.max(m1, s1);
        m2 = f32x4.max(m2, s2);
        m3 = f32x4.max(m3, s3);
      }
      const inv0 = softmaxRow(rows, hmax(m0), i0, 0, lse + (<usize>(h * T + i0) << 2), rb);
      const inv1 = softmaxRow(r1, hmax(m1), i0, 1, lse + (<usize>(h * T + i0) << 2), rb);
      const inv2 = softmaxRow(r2, hmax(m2), i0, 2, lse + (<usize>(h * T + i0) << 2), rb);
      const inv3 = softmaxRow(r3, hmax(m3), i0, 3, lse + (<usize>(h * T + i0) << 2), rb);
      rowsTimesColumns(rows, r1, r2, r3, vt, n4, hd, ld, o + oOff + (<usize>(i0 * oT) << 2), <usize>oT << 2, rb, inv0, inv1, inv2, inv3);
    }
  }
}

/**
 * Turns row r of block i0 (scores of keys 0..i0+3, max m) into exp(s − m) in place, zero past
 * the row; writes its log-sum-exp when the row is real (r < rb). Returns 1 / Σ exp(s − m).
 */
@inline
function softmaxRow(row: usize, m: f32, i0: i32, r: i32, lseBlock: usize, rb: i32): f32 {
  const mv = f32x4.splat(m);
  let sum = f32x4.splat(0);
  for (let j = 0; j < i0; j += 4) {
    const p = exp4(f32x4.sub(v128.load(row + (<usize>j << 2)), mv));
    v128.store(row + (<usize>j << 2), p);
    sum = f32x4.add(sum, p);
  }
  const p = v128.and(exp4(f32x4.sub(v128.load(row + (<usize>i0 << 2)), mv)), causalLanes(i0, i0 + r + 1));
  v128.store(row + (<usize>i0 << 2), p);
  sum = f32x4.add(sum, p);
  const total = hsum(sum);
  if (r < rb) store<f32>(lseBlock + (<usize>r << 2), m + lnf(total));
  return <f32>1.0 / total;
}

/**
 * Backward: gradients dq, dk, dv of the forward pass for upstream gradient dy, recomputing the
 * probabilities p = exp(s − lse) block by block. With δᵢ = Σ_d dyᵢ·oᵢ: dS = p ⊙ (dy·vᵀ − δ),
 * dq = dS·k·scale, dk = dSᵀ·q·scale, dv = pᵀ·dy.
 */
export function backward(
  B: i32, H: i32, T: i32, hd: i32, scale: f32,
  q: usize, k: usize, v: usize, sB: i32, sH: i32, sT: i32,
  o: usize, dy: usize, oB: i32, oH: i32, oT: i32,
  lse: usize, dq: usize, dk: usize, dv: usize,
  kt: usize, vt: usize, dkt: usize, dvt: usize, rows: usize, qsp: usize, dysp: usize,
): void {
  const T4 = (T + 3) & ~3;
  const ld = T4 + 16;
  const rowBytes = <usize>T4 << 2;
  const r1 = rows + rowBytes;
  const r2 = r1 + rowBytes;
  const r3 = r2 + rowBytes;
  const gradBytes = <usize>(hd * ld) << 2;
  const BH = B * H;
  for (let h = 0; h < BH; h++) {
    const off = <usize>((h / H) * sB + (h % H) * sH) << 2;
    const oOff = <usize>((h / H) * oB + (h % H) * oH) << 2;
    transposeIn(k + off, kt, T, T4, hd, sT, ld);
    transposeIn(v + off, vt, T, T4, hd, sT, ld);
    memory.fill(dkt, 0, gradBytes);
    memory.fill(dvt, 0, gradBytes);
    for (let i0 = 0; i0 < T; i0 += 4) {
      const rb = min(4, T - i0);
      let D0: f32 = 0, D1: f32 = 0, D2: f32 = 0, D3: f32 = 0;
      let L0: f32 = 0, L1: f32 = 0, L2: f32 = 0, L3: f32 = 0;
      for (let r = 0; r < 4; r++) {
        // Rows past T get dy = 0 (and δ = 0), so they add nothing to dk and dv.
        const real = r < rb;
        const ir = min(i0 + r, T - 1);
        const rowOff = off + (<usize>(ir * sT) << 2);
        const outRowOff = oOff + (<usize>(ir * oT) << 2);
        let delta: f32 = 0;
        for (let d = 0; d < hd; d++) {
          const db = <usize>d << 2;
          const g: f32 = real ? load<f32>(dy + outRowOff + db) : 0;
          v128.store(at4(qsp, r, d, hd), f32x4.splat(load<f32>(q + rowOff + db) * scale));
          v128.store(at4(dysp, r, d, hd), f32x4.splat(g));
          delta += g * load<f32>(o + outRowOff + db);
        }
        const L = load<f32>(lse + (<usize>(h * T + ir) << 2));
        if (r == 0) { D0 = delta; L0 = L; } else if (r == 1) { D1 = delta; L1 = L; } else if (r == 2) { D2 = delta; L2 = L; } else { D3 = delta; L3 = L; }
      }
      const n4 = i0 + 4;
      for (let j = 0; j < n4; j += 4) {
        const jb = <usize>j << 2;
        let s0 = f32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
        let g0 = s0, g1 = s0, g2 = s0, g3 = s0;
        for (let d = 0; d < hd; d++) {
          const col = (<usize>(d * ld) << 2) + jb;
          const kv = v128.load(kt + col);
          const vv = v128.load(vt + col);
          s0 = f32x4.add(s0, f32x4.mul(v128.load(at4(qsp, 0, d, hd)), kv));
          s1 = f32x4.add(s1, f32x4.mul(v128.load(at4(qsp, 1, d, hd)), kv));
          s2 = f32x4.add(s2, f32x4.mul(v128.load(at4(qsp, 2, d, hd)), kv));
          s3 = f32x4.add(s3, f32x4.mul(v128.load(at4(qsp, 3, d, hd)), kv));
          g0 = f32x4.add(g0, f32x4.mul(v128.load(at4(dysp, 0, d, hd)), vv));
          g1 = f32x4.add(g1, f32x4.mul(v128.load(at4(dysp, 1, d, hd)), vv));
          g2 = f32x4.add(g2, f32x4.mul(v128.load(at4(dysp, 2, d, hd)), vv));
          g3 = f32x4.add(g3, f32x4.mul(v128.load(at4(dysp, 3, d, hd)), vv));
        }
        let p0 = exp4(f32x4.sub(s0, f32x4.splat(L0)));
        let p1 = exp4(f32x4.sub(s1, f32x4.splat(L1)));
        let p2 = exp4(f32x4.sub(s2, f32x4.splat(L2)));
        let p3 = exp4(f32x4.sub(s3, f32x4.splat(L3)));
        if (j == i0) {
          p0 = v128.and(p0, causalLanes(j, i0 + 1));
          p1 = v128.and(p1, causalLanes(j, i0 + 2));
          p2 = v128.and(p2, causalLanes(j, i0 + 3));
        }
        const ds0 = f32x4.mul(p0, f32x4.sub(g0, f32x4.splat(D0)));
        const ds1 = f32x4.mul(p1, f32x4.sub(g1, f32x4.splat(D1)));
        const ds2 = f32x4.mul(p2, f32x4.sub(g2, f32x4.splat(D2)));
        const ds3 = f32x4.mul(p3, f32x4.sub(g3, f32x4.splat(D3)));
        v128.store(rows + jb, ds0);
        v128.store(r1 + jb, ds1);
        v128.store(r2 + jb, ds2);
        v128.store(r3 + jb, ds3);
        for (let d = 0; d < hd; d++) {
          const col = (<usize>(d * ld) << 2) + jb;
          let dvv = v128.load(dvt + col);
          dvv = f32x4.add(dvv, f32x4.mul(p0, v128.load(at4(dysp, 0, d, hd))));
          dvv = f32x4.add(dvv, f32x4.mul(p1, v128.load(at4(dysp, 1, d, hd))));
          dvv = f32x4.add(dvv, f32x4.mul(p2, v128.load(at4(dysp, 2, d, hd))));
          dvv = f32x4.add(dvv, f32x4.mul(p3, v128.load(at4(dysp, 3, d, hd))));
          v128.store(dvt + col, dvv);
          let dkv = v128.load(dkt + col);
          dkv = f32x4.add(dkv, f32x4.mul(ds0, v128.load(at4(qsp, 0, d, hd))));
          dkv = f32x4.add(dkv, f32x4.mul(ds1, v128.load(at4(qsp, 1, d, hd))));
          dkv = f32x4.add(dkv, f32x4.mul(ds2, v128.load(at4(qsp, 2, d, hd))));
          dkv = f32x4.add(dkv, f32x4.mul(ds3, v128.load(at4(qsp, 3, d, hd))));
          v128.store(dkt + col, dkv);
        }
      }
      // dq rows = dS·k·scale, from the block's dS kept in rows.
      rowsTimesColumns(rows, r1, r2, r3, kt, n4, hd, ld, dq + off + (<usize>(i0 * sT) << 2), <usize>sT << 2, rb, scale, scale, scale, scale);
    }
    transposeOut(dkt, dk + off, T, hd, sT, ld);
    transposeOut(dvt, dv + off, T, hd, sT, ld);
  }
}
