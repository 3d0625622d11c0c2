import { inputPath, trainingOnly } from '@taskforge/core';
import { z } from 'zod';
import { IMAGE_SIZES } from './images.js';

export const OFFICIAL_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz';
export const OFFICIAL_MD5 = 'c32a1d4ab5d03f1284b67883e8d87530';

const count = z.number().int().positive().nullable();

/** The `dataset` config node of `datamodule/cifar10` (without `_target_`). */
export const cifar10Schema = z
  .strictObject({
    /** http(s):// or file:// URL, or a local path (relative to the project root); a local archive must exist. */
    url: inputPath({
      kind: 'file',
      relativeTo: 'project',
      urls: true,
      hint: 'point it at a cifar-10-binary.tar.gz archive or an http(s):// URL',
    }).default(OFFICIAL_URL),
    /** Expected md5 of the archive; null skips the check (with a warning). */
    md5: z
      .string()
      .regex(/^[0-9a-fA-F]{32}$/, 'must be 32 hex digits or null')
      .transform((s) => s.toLowerCase())
      .nullable()
      .default(OFFICIAL_MD5),
    /** Cache folder; null means <cacheDir>/datasets/cifar10. Relative paths resolve against the project root. */
    data_dir: z.string().min(1).nullable().default(null),
    /** Images held out of the 50,000 training images for validation. */
    val_size: z.number().int().nonnegative().default(5000),
    split_seed: z.number().int().default(42),
    limit_train_samples: count.default(null),
    limit_val_samples: count.default(null),
    limit_test_samples: count.default(null),
    batch_size: z.number().int().positive().default(16),
    /** Reshuffle the training split every epoch (seeded by the run's seed and the epoch). */
    shuffle: z.boolean().default(true),
    /** Drop the last, smaller training batch. */
    drop_last: z.boolean().default(false),
    /**
     * Side of the square images served, in pixels: 32 (native), 16, 8 or 4. Smaller images are
     * box-filter averages of the 32×32 ones, made before the palette is fitted; sequences are
     * image_size² tokens long, so attention costs (image_size/32)⁴ of the native size.
     */
    image_size: z
      .number()
      .int()
      .refine((v) => (IMAGE_SIZES as readonly number[]).includes(v), {
        message:
          `must be one of ${IMAGE_SIZES.join(', ')} (a divisor of 32 that is at least 4), so ` +
          `that each pixel averages a whole block of the 32×32 image; pick the nearest of these`,
      })
      .default(32),
    /**
     * Reflect-pad (4 at 32×32, scaled with image_size, at least 1) + random crop + random horizontal flip,
     * training split only.
     */
    augment: trainingOnly(z.boolean().default(false)),
    /** Batches prepared ahead of the consumer; 0 builds each batch on demand. */
    prefetch: z.number().int().nonnegative().default(2),
    palette_size: z.number().int().min(2).max(4096).default(16),
    palette_sample_pixels: z.number().int().positive().max(51_200_000).default(200_000),
    palette_batch_size: z.number().int().positive().default(2048),
    palette_iterations: z.number().int().positive().default(100),
    palette_seed: z.number().int().default(0),
  })
  .superRefine((c, ctx) => {
    if (c.palette_sample_pixels < c.palette_size) {
      ctx.addIssue({
        code: 'custom',
        path: ['palette_sample_pixels'],
        input: c.palette_sample_pixels,
        message: `must be at least palette_size (${c.palette_size}): k-means needs one pixel per colour`,
      });
    }
  });

export type Cifar10Config = z.output<typeof cifar10Schema>;
export type Cifar10ConfigInput = z.input<typeof cifar10Schema>;
