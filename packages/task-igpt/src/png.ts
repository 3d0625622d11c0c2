import { PNG } from 'pngjs';
import { decodeTokens, type Palette } from './image-data.js';

export interface GridInput {
  /** Completions (top half given, bottom half sampled), each shown left of its original. */
  completions: ArrayLike<number>[];
  originals: ArrayLike<number>[];
  unconditional: ArrayLike<number>[];
  palette: Palette;
  height: number;
  width: number;
  /** Each pixel becomes a scale × scale block. */
  scale: number;
}

export interface GridLayout {
  columns: number;
  gap: number;
  cellWidth: number;
  cellHeight: number;
  /** Top-left pixel of every cell, by kind and index. */
  completion(i: number): [number, number];
  original(i: number): [number, number];
  unconditional(i: number): [number, number];
  pngWidth: number;
  pngHeight: number;
}

const BACKGROUND = 255;

/**
 * Cells of `columns` per row: completion/original pairs first (pairs never split across rows),
 * then the unconditional samples on rows of their own. `gap` pixels of white separate cells.
 */
export function gridLayout(input: Omit<GridInput, 'palette'>): GridLayout {
  const { completions, unconditional, height, width, scale } = input;
  const columns = Math.max(2, unconditional.length, Math.min(8, 2 * completions.length));
  const pairsPerRow = Math.floor(columns / 2);
  const completionRows = Math.ceil(completions.length / pairsPerRow);
  const unconditionalRows = Math.ceil(unconditional.length / columns);
  const gap = Math.max(2, scale);
  const cellWidth = width * scale;
  const cellHeight = height * scale;
  const at = (row: number, col: number): [number, number] => [
    gap + col * (cellWidth + gap),
    gap + row * (cellHeight + gap),
  ];
  return {
    columns,
    gap,
    cellWidth,
    cellHeight,
    completion: (i) => at(Math.floor(i / pairsPerRow), (i % pairsPerRow) * 2),
    original: (i) => at(Math.floor(i / pairsPerRow), (i % pairsPerRow) * 2 + 1),
    unconditional: (i) => at(completionRows + Math.floor(i / columns), i % columns),
    pngWidth: gap + columns * (cellWidth + gap),
    pngHeight: gap + Math.max(1, completionRows + unconditionalRows) * (cellHeight + gap),
  };
}

/** Renders the sample grid as PNG bytes. */
export function renderGrid(input: GridInput): Buffer {
  const layout = gridLayout(input);
  const png = new PNG({ width: layout.pngWidth, height: layout.pngHeight });
  png.data.fill(BACKGROUND);
  const draw = (tokens: ArrayLike<number>, [x0, y0]: [number, number]) => {
    const rgb = decodeTokens(tokens, input.palette);
    for (let y = 0; y < layout.cellHeight; y++) {
      for (let x = 0; x < layout.cellWidth; x++) {
        const src = (Math.floor(y / input.scale) * input.width + Math.floor(x / input.scale)) * 3;
        const dst = ((y0 + y) * layout.pngWidth + x0 + x) * 4;
        png.data[dst] = rgb[src]!;
        png.data[dst + 1] = rgb[src + 1]!;
        png.data[dst + 2] = rgb[src + 2]!;
      }
    }
  };
  input.completions.forEach((t, i) => draw(t, layout.completion(i)));
  input.originals.forEach((t, i) => draw(t, layout.original(i)));
  input.unconditional.forEach((t, i) => draw(t, layout.unconditional(i)));
  return PNG.sync.write(png, { colorType: 2 });
}
