import {
  ConfigError,
  TaskforgeError,
  type ConfigProblem,
  type ModelDataArgs,
  type SequenceDataArgs,
} from '@taskforge/core';

/** A colour palette: token t is the RGB colour `palette[t]` (0..255 per channel). */
export type Palette = number[][];

/**
 * The `modelDataArgs` the task reads: core's `SequenceDataArgs` with `num_classes`, plus the image
 * facts; `datamodule/cifar10`'s `Cifar10ModelDataArgs` is one. `readImageSpec` checks them.
 */
export type IgptDataArgs = SequenceDataArgs & {
  readonly num_classes: number;
  readonly image_height: number;
  readonly image_width: number;
  /** num_vocab [r, g, b] colours, 0..255 per channel: token t is colour palette[t]. */
  readonly palette: Palette;
  /** num_classes names; default `class <i>`. */
  readonly class_names?: string[];
};

/** The facts about the images the task reads from `modelDataArgs` (an `IgptDataArgs`). */
export interface ImageSpec {
  height: number;
  width: number;
  /** = height × width: one token per pixel, raster order. */
  numPositions: number;
  numVocab: number;
  numClasses: number;
  palette: Palette;
  classNames: string[];
}

/**
 * Reads and cross-checks `modelDataArgs` as `IgptDataArgs` (palette size = num_vocab, image_height ×
 * image_width = num_positions), reporting every problem at once.
 * @throws ConfigError (exit 2) with one problem per missing or inconsistent `modelDataArgs.*` key.
 */
export function readImageSpec(args: ModelDataArgs): ImageSpec {
  const problems: ConfigProblem[] = [];
  const int = (key: string): number => {
    const value = args[key];
    if (typeof value === 'number' && Number.isInteger(value) && value > 0) return value;
    problems.push({
      path: `modelDataArgs.${key}`,
      message: 'expected a positive integer from the data module',
      value: value ?? null,
    });
    return 0;
  };
  const height = int('image_height');
  const width = int('image_width');
  const numPositions = int('num_positions');
  const numVocab = int('num_vocab');
  const numClasses = int('num_classes');
  const paletteProblem = checkPalette(args['palette']);
  if (paletteProblem) problems.push({ path: 'modelDataArgs.palette', message: paletteProblem });
  const palette = (paletteProblem ? [] : args['palette']) as Palette;
  if (!paletteProblem && numVocab && palette.length !== numVocab) {
    problems.push({
      path: 'modelDataArgs.palette',
      message: `has ${palette.length} colours but num_vocab is ${numVocab}; they must be equal (one token per colour)`,
    });
  }
  if (height && width && numPositions && height * width !== numPositions) {
    problems.push({
      path: 'modelDataArgs.num_positions',
      message:
        `is ${numPositions} but image_height × image_width is ${height * width}; ` + 'iGPT needs one token per pixel',
    });
  }
  const rawNames = args['class_names'];
  let classNames = Array.from({ length: numClasses }, (_, i) => `class ${i}`);
  if (rawNames !== undefined) {
    if (Array.isArray(rawNames) && rawNames.length === numClasses && rawNames.every((n) => typeof n === 'string'))
      classNames = rawNames as string[];
    else
      problems.push({
        path: 'modelDataArgs.class_names',
        message: `expected ${numClasses} strings (one per class)`,
        value: rawNames,
      });
  }
  if (problems.length)
    throw new ConfigError(
      problems,
      'task/vision/igpt cannot use this data module (it expects palette-quantised images)',
    );
  return { height, width, numPositions, numVocab, numClasses, palette, classNames };
}

/** Returns why `value` is not a k×3 palette of 0..255 numbers, or undefined when it is one. */
export function checkPalette(value: unknown): string | undefined {
  if (!Array.isArray(value) || value.length === 0) return 'expected a non-empty list of [r, g, b] colours';
  const bad = value.findIndex(
    (c) => !Array.isArray(c) || c.length !== 3 || !c.every((x) => typeof x === 'number' && x >= 0 && x <= 255),
  );
  return bad >= 0
    ? `colour ${bad} is ${JSON.stringify(value[bad])}; expected [r, g, b] with each channel in 0..255`
    : undefined;
}

/** Palettes come from k-means; JSON round trips keep them exact, the tolerance absorbs float32 storage. */
export function samePalette(a: Palette, b: Palette): boolean {
  return a.length === b.length && a.every((c, i) => c.every((x, j) => Math.abs(x - b[i]![j]!) < 1e-3));
}

/**
 * Returns `found` when it is a valid palette equal to `expected` (a checkpoint's, against the data module's).
 * @throws TaskforgeError: exit 1 when `found` is not a palette (the checkpoint is damaged); exit 2
 *   when it differs (the data module is configured otherwise than for the checkpoint), naming `source`.
 */
export function assertSamePalette(expected: Palette, found: unknown, source: string): Palette {
  const problem = checkPalette(found);
  if (problem) throw new TaskforgeError(`The palette in ${source} is invalid: ${problem}.`);
  const palette = found as Palette;
  if (!samePalette(expected, palette)) {
    throw new TaskforgeError(
      `The palette in ${source} (${palette.length} colours) differs ` +
        `from the data module's (${expected.length} colours), so ` +
        'its tokens would mean other colours. Configure the data module as it was when the checkpoint was trained ' +
        "(same dataset and number of palette colours; see the checkpoint's config.yaml).",
      { exitCode: 2 },
    );
  }
  return palette;
}

/**
 * Palette tokens (one image, raster order) → RGB bytes (`length = 3N`).
 * @throws TaskforgeError (exit 1) naming a token outside the palette and its pixel.
 */
export function decodeTokens(tokens: ArrayLike<number>, palette: Palette): Uint8Array {
  const rgb = new Uint8Array(tokens.length * 3);
  for (let i = 0; i < tokens.length; i++) {
    const colour = palette[tokens[i]!];
    if (!colour)
      throw new TaskforgeError(`Token ${tokens[i]} at pixel ${i} is outside the ${palette.length}-colour palette.`);
    rgb[i * 3] = Math.round(colour[0]!);
    rgb[i * 3 + 1] = Math.round(colour[1]!);
    rgb[i * 3 + 2] = Math.round(colour[2]!);
  }
  return rgb;
}
