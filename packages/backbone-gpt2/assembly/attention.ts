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
 * base + b·oB + h·oH + t·oT + d. lse is [B·H, T]. Scratch (T4 = T rounded up to a multiple of 4):
 * kt, vt, dkt, dvt are key-quad panels [T4/4, hd, 4], rows is [T4/4, 4, 4] (key quad, query row,
 * lane), and qsp, dysp are [hd, 4] f32x4 splats (column d, query row r). Nothing of size T × T
 * exists.
 *
 * Why these layouts: every inner loop then walks its operands with pointers that step by a
 * constant (16 bytes along d, 64 along key quads, hd·16 from panel to panel) and reads the rest
 * at constant offsets, which V8 folds into x64 addressing modes. Indexing by (r·hd + d) and
 * (d·ld + j) instead cost 2–3 integer instructions per vector load and spilled accumulators:
 * the kernels ran 1.2–1.35× slower (at [8, 4, 1024, 32], forward 88.9 → 72.9 ms, backward
 * 238 → 182 ms; bench/attention-kernels.mjs, docs/benchmarks.md).
 *
 * Running maxima use f32x4.pmax (one maxps) rather than f32x4.max, whose NaN/−0 semantics V8
 * lowers to six instructions. A NaN score is then skipped by the max and gets p = 0 (exp4 zeroes
 * NaN lanes) instead of spreading over its row; a diverged model still shows NaN, because the
 * residual stream carries it to the loss (and a NaN q makes its whole row NaN here too).
 *
 * Block-causal, in blocks of 4 query rows: block i0..i0+3 meets keys 0..i0+3 only (the upper
 * triangle is never touched; only the diagonal group of 4 keys is masked), and its scores live
 * in `rows` while it is processed. The backward pass recomputes them from q, k and the saved
 * per-row log-sum-exp (as FlashAttention-2 does).
 *
 * Vectorised across keys: k and v are packed once per head into panels so that the scores of
 * 4 rows × 4 consecutive keys are four f32x4 accumulators, whatever the head size, and each
 * loaded key vector serves 4 rows.
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

/**
 * dst [T4/4, hd, 4] (key-quad panels) = src [T, hd] (rows sT elements apart): element (j, d) at
 * ((j >> 2)·hd + d)·4 + (j & 3); keys T..T4-1 are zero.
 */
function packPanels(src: usize, dst: usize, T: i32, T4: i32, hd: i32, sT: i32): void {
  for (let j = 0; j < T4; j++) {
    const to = dst + (<usize>(((j >> 2) * hd) * 4 + (j & 3)) << 2);
    if (j < T) {
      const row = src + (<usize>(j * sT) << 2);
      for (let d = 0; d < hd; d++) store<f32>(to + (<usize>d << 4), load<f32>(row + (<usize>d << 2)));
    } else {
      for (let d = 0; d < hd; d++) store<f32>(to + (<usize>d << 4), 0);
    }
  }
}

/** dst [T, hd] (rows sT elements apart) = src [T4/4, hd, 4] panels (keys < T). */
function unpackPanels(src: usize, dst: usize, T: i32, hd: i32, sT: i32): void {
  for (let j = 0; j < T; j++) {
    const from = src + (<usize>(((j >> 2) * hd) * 4 + (j & 3)) << 2);
    const row = dst + (<usize>(j * sT) << 2);
    for (let d = 0; d < hd; d++) store<f32>(row + (<usize>d << 2), load<f32>(from + (<usize>d << 4)));
  }
}

const NEG: f32 = -3.4e38;

@inline
function hmax(v: v128): f32 {
  return max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

/**
 * Splats of 4 query rows: sp [hd, 4] f32x4, entry (d, r) = splat(src row r, column d · mult), for
 * rows i0..i0+3 (rows past T repeat row T-1; `zeroPast` gives them 0 instead).
 */
@inline
function fillSplats(sp: usize, src: usize, stride: i32, i0: i32, T: i32, hd: i32, mult: f32, zeroPast: bool): void {
  for (let r = 0; r < 4; r++) {
    const row = src + (<usize>(min(i0 + r, T - 1) * stride) << 2);
    const m: f32 = zeroPast && i0 + r >= T ? 0 : mult;
    const to = sp + (<usize>r << 4);
    for (let d = 0; d < hd; d++) v128.store(to + (<usize>d << 6), f32x4.splat(load<f32>(row + (<usize>d << 2)) * m));
  }
}

/**
 * out[r, d] = (Σ_j rows[j, r] · cols[j, d]) · mult_r for the rb real rows of a block (r < rb)
 * and d < hd: the probabilities (or dS) of 4 query rows, interleaved in `rows` ([n4/4, 4, 4]:
 * key quad, row, lane), times the values (or keys) in panels ([n4/4, hd, 4]). Two d at a time,
 * so each loaded row vector serves two columns; an odd hd ends with one column.
 */
@inline
function rowsTimesPanels(
  rows: usize, cols: usize, n4: i32, hd: i32,
  out: usize, outStride: usize, rb: i32, mult0: f32, mult1: f32, mult2: f32, mult3: f32,
): void {
  const panel = <usize>hd << 4;
  const quads = n4 >> 2;
  let d = 0;
  for (; d + 2 <= hd; d += 2) {
    let cp = cols + (<usize>d << 4);
    let rp = rows;
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
    let b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (let jq = 0; jq < quads; jq++) {
      const x0 = v128.load(cp);
      const x1 = v128.load(cp, 16);
      const p0 = v128.load(rp);
      a0 = f32x4.add(a0, f32x4.mul(p0, x0));
      b0 = f32x4.add(b0, f32x4.mul(p0, x1));
      const p1 = v128.load(rp, 16);
      a1 = f32x4.add(a1, f32x4.mul(p1, x0));
      b1 = f32x4.add(b1, f32x4.mul(p1, x1));
      const p2 = v128.load(rp, 32);
      a2 = f32x4.add(a2, f32x4.mul(p2, x0));
      b2 = f32x4.add(b2, f32x4.mul(p2, x1));
      const p3 = v128.load(rp, 48);
      a3 = f32x4.add(a3, f32x4.mul(p3, x0));
      b3 = f32x4.add(b3, f32x4.mul(p3, x1));
      cp += panel;
      rp += 64;
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
    let cp = cols + (<usize>d << 4);
    let rp = rows;
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
    for (let jq = 0; jq < quads; jq++) {
      const x0 = v128.load(cp);
      a0 = f32x4.add(a0, f32x4.mul(v128.load(rp), x0));
      a1 = f32x4.add(a1, f32x4.mul(v128.load(rp, 16), x0));
      a2 = f32x4.add(a2, f32x4.mul(v128.load(rp, 32), x0));
      a3 = f32x4.add(a3, f32x4.mul(v128.load(rp, 48), x0));
      cp += panel;
      rp += 64;
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
  const panel = <usize>hd << 4;
  const BH = B * H;
  for (let h = 0; h < BH; h++) {
    const off = <usize>((h / H) * sB + (h % H) * sH) << 2;
    const oOff = <usize>((h / H) * oB + (h % H) * oH) << 2;
    packPanels(k + off, kt, T, T4, hd, sT);
    packPanels(v + off, vt, T, T4, hd, sT);
    for (let i0 = 0; i0 < T; i0 += 4) {
      const rb = min(4, T - i0);
      fillSplats(qsp, q + off, sT, i0, T, hd, scale, false);
      const n4 = i0 + 4;
      let m0 = f32x4.splat(NEG), m1 = m0, m2 = m0, m3 = m0;
      // Pairs of key quads below the diagonal: 4 rows × 8 keys share each q splat load.
      let j = 0;
      for (; j + 8 <= i0; j += 8) {
        let pa = kt + (<usize>(j >> 2) * panel);
        let pb = pa + panel;
        let sp = qsp;
        let s0 = f32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
        let t0 = s0, t1 = s0, t2 = s0, t3 = s0;
        for (let d = 0; d < hd; d++) {
          const ka = v128.load(pa);
          const kb = v128.load(pb);
          const q0 = v128.load(sp);
          s0 = f32x4.add(s0, f32x4.mul(q0, ka));
          t0 = f32x4.add(t0, f32x4.mul(q0, kb));
          const q1 = v128.load(sp, 16);
          s1 = f32x4.add(s1, f32x4.mul(q1, ka));
          t1 = f32x4.add(t1, f32x4.mul(q1, kb));
          const q2 = v128.load(sp, 32);
          s2 = f32x4.add(s2, f32x4.mul(q2, ka));
          t2 = f32x4.add(t2, f32x4.mul(q2, kb));
          const q3 = v128.load(sp, 48);
          s3 = f32x4.add(s3, f32x4.mul(q3, ka));
          t3 = f32x4.add(t3, f32x4.mul(q3, kb));
          pa += 16;
          pb += 16;
          sp += 64;
        }
        const rp = rows + (<usize>(j >> 2) << 6);
        v128.store(rp, s0);
        v128.store(rp, s1, 16);
        v128.store(rp, s2, 32);
        v128.store(rp, s3, 48);
        v128.store(rp, t0, 64);
        v128.store(rp, t1, 80);
        v128.store(rp, t2, 96);
        v128.store(rp, t3, 112);
        m0 = f32x4.pmax(m0, f32x4.pmax(s0, t0));
        m1 = f32x4.pmax(m1, f32x4.pmax(s1, t1));
        m2 = f32x4.pmax(m2, f32x4.pmax(s2, t2));
        m3 = f32x4.pmax(m3, f32x4.pmax(s3, t3));
      }
      for (; j < n4; j += 4) {
        let kp = kt + (<usize>(j >> 2) * panel);
        let sp = qsp;
        let s0 = f32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
        for (let d = 0; d < hd; d++) {
          const kv = v128.load(kp);
          s0 = f32x4.add(s0, f32x4.mul(v128.load(sp), kv));
          s1 = f32x4.add(s1, f32x4.mul(v128.load(sp, 16), kv));
          s2 = f32x4.add(s2, f32x4.mul(v128.load(sp, 32), kv));
          s3 = f32x4.add(s3, f32x4.mul(v128.load(sp, 48), kv));
          kp += 16;
          sp += 64;
        }
        if (j == i0) {
          // The diagonal group: row i0+r sees keys ≤ i0+r.
          const neg = f32x4.splat(NEG);
          s0 = v128.bitselect(s0, neg, causalLanes(j, i0 + 1));
          s1 = v128.bitselect(s1, neg, causalLanes(j, i0 + 2));
          s2 = v128.bitselect(s2, neg, causalLanes(j, i0 + 3));
        }
        const rp = rows + (<usize>(j >> 2) << 6);
        v128.store(rp, s0);
        v128.store(rp, s1, 16);
        v128.store(rp, s2, 32);
        v128.store(rp, s3, 48);
        m0 = f32x4.pmax(m0, s0);
        m1 = f32x4.pmax(m1, s1);
        m2 = f32x4.pmax(m2, s2);
        m3 = f32x4.pmax(m3, s3);
      }
      const lseBlock = lse + (<usize>(h * T + i0) << 2);
      const inv0 = softmaxRow(rows, hmax(m0), i0, 0, lseBlock, rb);
      const inv1 = softmaxRow(rows + 16, hmax(m1), i0, 1, lseBlock, rb);
      const inv2 = softmaxRow(rows + 32, hmax(m2), i0, 2, lseBlock, rb);
      const inv3 = softmaxRow(rows + 48, hmax(m3), i0, 3, lseBlock, rb);
      rowsTimesPanels(rows, vt, n4, hd, o + oOff + (<usize>(i0 * oT) << 2), <usize>oT << 2, rb, inv0, inv1, inv2, inv3);
    }
  }
}

/**
 * Turns row r of block i0 (scores of keys 0..i0+3 at `row`, quads 64 bytes apart, max m) into
 * exp(s − m) in place, zero past the row; writes its log-sum-exp when the row is real (r < rb).
 * Returns 1 / Σ exp(s − m).
 */
@inline
function softmaxRow(row: usize, m: f32, i0: i32, r: i32, lseBlock: usize, rb: i32): f32 {
  const mv = f32x4.splat(m);
  let sum = f32x4.splat(0);
  let rp = row;
  const last = row + (<usize>(i0 >> 2) << 6);
  for (; rp < last; rp += 64) {
    const p = exp4(f32x4.sub(v128.load(rp), mv));
    v128.store(rp, p);
    sum = f32x4.add(sum, p);
  }
  const p = v128.and(exp4(f32x4.sub(v128.load(last), mv)), causalLanes(i0, i0 + r + 1));
  v128.store(last, p);
  sum = f32x4.add(sum, p);
  const total = hsum(sum);
  if (r < rb) store<f32>(lseBlock + (<usize>r << 2), m + lnf(total));
  return <f32>1.0 / total;
}

/**
 * panel[d] += Σ_r w_r · splats[d, r] for d < hd: one key quad's panel of dv (w = p, splats = dy)
 * or dk (w = dS, splats = q·scale), 4 query rows at a time.
 */
@inline
function addRowsTimesSplats(panel: usize, splats: usize, w0: v128, w1: v128, w2: v128, w3: v128, hd: i32): void {
  let pp = panel;
  let sp = splats;
  for (let d = 0; d < hd; d++) {
    let acc = v128.load(pp);
    acc = f32x4.add(acc, f32x4.mul(w0, v128.load(sp)));
    acc = f32x4.add(acc, f32x4.mul(w1, v128.load(sp, 16)));
    acc = f32x4.add(acc, f32x4.mul(w2, v128.load(sp, 32)));
    acc = f32x4.add(acc, f32x4.mul(w3, v128.load(sp, 48)));
    v128.store(pp, acc);
    pp += 16;
    sp += 64;
  }
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
  const panel = <usize>hd << 4;
  const gradBytes = <usize>(hd * T4) << 2;
  const BH = B * H;
  for (let h = 0; h < BH; h++) {
    const off = <usize>((h / H) * sB + (h % H) * sH) << 2;
    const oOff = <usize>((h / H) * oB + (h % H) * oH) << 2;
    packPanels(k + off, kt, T, T4, hd, sT);
    packPanels(v + off, vt, T, T4, hd, sT);
    memory.fill(dkt, 0, gradBytes);
    memory.fill(dvt, 0, gradBytes);
    for (let i0 = 0; i0 < T; i0 += 4) {
      const rb = min(4, T - i0);
      // Rows past T get dy = 0 (and δ = 0), so they add nothing to dk and dv.
      fillSplats(qsp, q + off, sT, i0, T, hd, scale, false);
      fillSplats(dysp, dy + oOff, oT, i0, T, hd, 1, true);
      let D0: f32 = 0, D1: f32 = 0, D2: f32 = 0, D3: f32 = 0;
      let L0: f32 = 0, L1: f32 = 0, L2: f32 = 0, L3: f32 = 0;
      for (let r = 0; r < 4; r++) {
        // A row past T takes row T-1's log-sum-exp, so its (unused) p stays ≤ 1, and δ = 0.
        const ir = min(i0 + r, T - 1);
        const outRow = dy + oOff + (<usize>(ir * oT) << 2);
        const oRow = o + oOff + (<usize>(ir * oT) << 2);
        let delta: f32 = 0;
        if (r < rb) {
          for (let d = 0; d < hd; d++) delta += load<f32>(outRow + (<usize>d << 2)) * load<f32>(oRow + (<usize>d << 2));
        }
        const L = load<f32>(lse + (<usize>(h * T + ir) << 2));
        if (r == 0) { D0 = delta; L0 = L; } else if (r == 1) { D1 = delta; L1 = L; } else if (r == 2) { D2 = delta; L2 = L; } else { D3 = delta; L3 = L; }
      }
      const quads = (i0 >> 2) + 1;
      for (let jq = 0; jq < quads; jq++) {
        const j = jq << 2;
        const po = <usize>jq * panel;
        // Scores s = q·kᵀ (q splats carry the scale) ...
        let kp = kt + po;
        let sp = qsp;
        let s0 = f32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
        for (let d = 0; d < hd; d++) {
          const kv = v128.load(kp);
          s0 = f32x4.add(s0, f32x4.mul(v128.load(sp), kv));
          s1 = f32x4.add(s1, f32x4.mul(v128.load(sp, 16), kv));
          s2 = f32x4.add(s2, f32x4.mul(v128.load(sp, 32), kv));
          s3 = f32x4.add(s3, f32x4.mul(v128.load(sp, 48), kv));
          kp += 16;
          sp += 64;
        }
        // ... and dP = dy·vᵀ, as two loops of four accumulators (one of eight spills on x64).
        let vp = vt + po;
        let gp = dysp;
        let g0 = f32x4.splat(0), g1 = g0, g2 = g0, g3 = g0;
        for (let d = 0; d < hd; d++) {
          const vv = v128.load(vp);
          g0 = f32x4.add(g0, f32x4.mul(v128.load(gp), vv));
          g1 = f32x4.add(g1, f32x4.mul(v128.load(gp, 16), vv));
          g2 = f32x4.add(g2, f32x4.mul(v128.load(gp, 32), vv));
          g3 = f32x4.add(g3, f32x4.mul(v128.load(gp, 48), vv));
          vp += 16;
          gp += 64;
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
        const rp = rows + (<usize>jq << 6);
        v128.store(rp, ds0);
        v128.store(rp, ds1, 16);
        v128.store(rp, ds2, 32);
        v128.store(rp, ds3, 48);
        // dv += pᵀ·dy and dk += dSᵀ·q (scaled).
        addRowsTimesSplats(dvt + po, dysp, p0, p1, p2, p3, hd);
        addRowsTimesSplats(dkt + po, qsp, ds0, ds1, ds2, ds3, hd);
      }
      // dq rows = dS·k·scale, from the block's dS kept in rows.
      rowsTimesPanels(rows, kt, i0 + 4, hd, dq + off + (<usize>(i0 * sT) << 2), <usize>sT << 2, rb, scale, scale, scale, scale);
    }
    unpackPanels(dkt, dk + off, T, hd, sT);
    unpackPanels(dvt, dv + off, T, hd, sT);
  }
}
