/**
 * Pixel ↔ palette-token conversion. Nearest colour is exact (squared RGB distance, ties to the
 * lowest index, identical to a brute-force argmin) but fast: the RGB cube is cut into 8×8×8
 * cells and each cell keeps only the palette colours that can be nearest to some point in it,
 * so a pixel is compared with a handful of colours instead of all k (k = 512 stays cheap).
 */
import { TaskforgeError } from '@taskforge/core';

/** k colours, each `[r, g, b]` with integer channels in 0..255. */
export type Palette = ReadonlyArray<ReadonlyArray<number>>;

const CELL_BITS = 3;
const GRID = 256 >> CELL_BITS;
const CELL = 1 << CELL_BITS;

/** A palette prepared for repeated quantisation (build once with `paletteIndex`). */
export interface PaletteIndex {
  readonly size: number;
  /** k×3 colours, interleaved. */
  readonly colors: Int32Array;
  /** Candidates of cell c are `candidates[cellStart[c] .. cellStart[c + 1])`, ascending. */
  readonly cellStart: Int32Array;
  readonly candidates: Uint16Array;
}

const indexCache = new WeakMap<object, PaletteIndex>();

function validatePalette(palette: Palette): Int32Array {
  if (!Array.isArray(palette) || palette.length === 0 || palette.length > 65535) {
    throw new TaskforgeError(
      `A palette must be a non-empty array of at most 65535 [r, g, b] colours; got ` +
        `${Array.isArray(palette) ? `${palette.length} colours` : typeof palette}.`,
    );
  }
  const colors = new Int32Array(palette.length * 3);
  palette.forEach((c, i) => {
    if (!Array.isArray(c) || c.length !== 3 || !c.every((v) => Number.isInteger(v) && v >= 0 && v <= 255)) {
      throw new TaskforgeError(
        `Palette colour ${i} is ${JSON.stringify(c)}; every colour must be [r, g, b] with integers in 0..255.`,
      );
    }
    colors.set(c, i * 3);
  });
  return colors;
}

/**
 * Prepares `palette` for `quantize`; memoised per palette array.
 * @throws TaskforgeError (exit 1) for an empty palette, more than 65535 colours or a colour that
 *   is not [r, g, b] with integers in 0..255.
 */
export function paletteIndex(palette: Palette): PaletteIndex {
  const cached = indexCache.get(palette);
  if (cached) return cached;
  const colors = validatePalette(palette);
  const k = palette.length;
  const cellStart = new Int32Array(GRID * GRID * GRID + 1);
  const lists: number[] = [];
  const minD = new Float64Array(k);
  for (let cr = 0; cr < GRID; cr++) {
    for (let cg = 0; cg < GRID; cg++) {
      for (let cb = 0; cb < GRID; cb++) {
        const cell = (cr * GRID + cg) * GRID + cb;
        cellStart[cell] = lists.length;
        // A colour can only win in this cell if its closest approach beats the best worst case.
        let bound = Infinity;
        for (let c = 0; c < k; c++) {
          const r = colors[c * 3]!,
            g = colors[c * 3 + 1]!,
            b = colors[c * 3 + 2]!;
          minD[c] = AXIS_MIN[r * GRID + cr]! + AXIS_MIN[g * GRID + cg]! + AXIS_MIN[b * GRID + cb]!;
          const far = AXIS_MAX[r * GRID + cr]! + AXIS_MAX[g * GRID + cg]! + AXIS_MAX[b * GRID + cb]!;
          if (far < bound) bound = far;
        }
        for (let c = 0; c < k; c++) if (minD[c]! <= bound) lists.push(c);
      }
    }
  }
  cellStart[GRID * GRID * GRID] = lists.length;
  const index: PaletteIndex = { size: k, colors, cellStart, candidates: Uint16Array.from(lists) };
  indexCache.set(palette, index);
  return index;
}

/** Squared distance along one axis from value v to the nearest / farthest point of a cell. */
const AXIS_MIN = new Int32Array(256 * GRID);
const AXIS_MAX = new Int32Array(256 * GRID);
for (let v = 0; v < 256; v++) {
  for (let cell = 0; cell < GRID; cell++) {
    const lo = cell * CELL,
      hi = lo + CELL - 1;
    const near = v < lo ? lo - v : v > hi ? v - hi : 0;
    const far = Math.max(Math.abs(v - lo), Math.abs(v - hi));
    AXIS_MIN[v * GRID + cell] = near * near;
    AXIS_MAX[v * GRID + cell] = far * far;
  }
}

/**
 * Nearest-colour tokens for `n` pixels read from `src` at `rOff/gOff/bOff + i * stride`, written
 * to `out[outOff + i]`. Covers both interleaved RGB (stride 3) and CIFAR's planar layout (stride 1).
 */
export function quantizeStrided(
  src: Uint8Array,
  n: number,
  rOff: number,
  gOff: number,
  bOff: number,
  stride: number,
  index: PaletteIndex,
  out: { [i: number]: number },
  outOff = 0,
): void {
  const { colors, cellStart, candidates } = index;
  const shift = CELL_BITS;
  for (let i = 0; i < n; i++) {
    const p = i * stride;
    const r = src[rOff + p]!,
      g = src[gOff + p]!,
      b = src[bOff + p]!;
    const cell = ((r >> shift) * GRID + (g >> shift)) * GRID + (b >> shift);
    let best = 0,
      bestD = Infinity;
    for (let j = cellStart[cell]!, end = cellStart[cell + 1]!; j < end; j++) {
      const c = candidates[j]!;
      const o = c * 3;
      const dr = r - colors[o]!,
        dg = g - colors[o + 1]!,
        db = b - colors[o + 2]!;
      const d = dr * dr + dg * dg + db * db;
      if (d < bestD) {
        bestD = d;
        best = c;
      }
    }
    out[outOff + i] = best;
  }
}

/**
 * Interleaved RGB pixels (`length = 3N`, 0..255) → N raster-order palette tokens (nearest colour).
 * @throws TaskforgeError (exit 1) when the length is not a multiple of 3, or the palette is invalid.
 */
export function quantize(pixels: Uint8Array, palette: Palette | PaletteIndex): Int32Array {
  if (pixels.length % 3 !== 0) {
    throw new TaskforgeError(
      `quantize expects interleaved RGB pixels (length a multiple of 3); got length ${pixels.length}.`,
    );
  }
  const index = isIndex(palette) ? palette : paletteIndex(palette);
  const n = pixels.length / 3;
  const out = new Int32Array(n);
  quantizeStrided(pixels, n, 0, 1, 2, 3, index, out);
  return out;
}

/**
 * Palette tokens → interleaved RGB pixels (`length = 3N`), the inverse of `quantize`.
 * @throws TaskforgeError (exit 1) naming a token outside the palette and its position.
 */
export function dequantize(tokens: ArrayLike<number>, palette: Palette | PaletteIndex): Uint8Array {
  const colors = isIndex(palette) ? palette.colors : validatePalette(palette);
  const k = colors.length / 3;
  const out = new Uint8Array(tokens.length * 3);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (!Number.isInteger(t) || t < 0 || t >= k) {
      throw new TaskforgeError(
        `dequantize: token ${t} at position ${i} is outside the palette (valid tokens are 0..${k - 1}).`,
      );
    }
    out[i * 3] = colors[t * 3]!;
    out[i * 3 + 1] = colors[t * 3 + 1]!;
    out[i * 3 + 2] = colors[t * 3 + 2]!;
  }
  return out;
}

function isIndex(p: Palette | PaletteIndex): p is PaletteIndex {
  return !Array.isArray(p) && typeof (p as PaletteIndex).cellStart === 'object';
}
