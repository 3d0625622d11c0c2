import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import {
  ConfigError,
  crossEntropy,
  inputPath,
  loggedValue,
  writeNewFileAtomic,
  TaskforgeError,
  type CreateContexts,
  type DataModule,
  type NamedVariables,
  type SampleOptions,
  type SampleResult,
  type StepContext,
  type Task,
} from '@taskforge/core';
import type { IgptBackbone } from './backbone-api.js';
import { ClassificationHead, LmHead } from './heads.js';
import { assertSamePalette, type ImageSpec, type Palette } from './image-data.js';
import { renderGrid } from './png.js';
import { loadPretrained } from './pretrained.js';
import { generate, type TokenDecoder } from './sampling.js';

/** A batch of palette-quantised images, as produced by `datamodule/cifar10`. */
export interface IgptBatch {
  /** [size × num_positions] palette tokens, raster order. */
  tokens: Int32Array;
  labels: Int32Array;
  size: number;
  indices?: Int32Array;
}

/** What `task.probe_layer` accepts, for the messages that refuse anything else. */
const PROBE_LAYER_RANGE =
  'a layer index: an integer from 0 (the token embeddings) to backbone.num_layers ' +
  '(the final hidden states, after ln_f), or null for no probe';

/** The probe layer in the middle of the backbone: where the iGPT paper finds the best linear-probe features. */
const middleLayer = (numLayers: number) => Math.floor(numLayers / 2);

export const igptTaskSchema = z.strictObject({
  /** Fine-tune for classification: loss = classification CE + generative CE. */
  classify: z.boolean().default(false),
  /**
   * iGPT's linear probe (Chen et al. 2020, section 3.3): the backbone's hidden states at this
   * depth (0 .. backbone.num_layers, see `forward`'s `layer`), averaged over positions, feed the
   * linear classification head, the only part trained (backbone and LM head frozen: not
   * trainable, not in the optimizer); classification is implied. null: no probe.
   */
  probe_layer: z
    .custom<number | null>((v) => v === null || (typeof v === 'number' && Number.isInteger(v) && v >= 0), {
      error:
        `expected ${PROBE_LAYER_RANGE}; set e.g. task.probe_layer=4 (the middle of an 8-layer backbone), ` +
        'or task.probe_layer=null to fine-tune',
    })
    .default(null),
  /** A checkpoint directory whose backbone weights (and palette) start this run. */
  pretrained: inputPath({ kind: 'dir', hint: 'point it at a checkpoint directory such as <run dir>/checkpoints/last' })
    .nullable()
    .default(null),
  sampling: z
    .strictObject({
      temperature: z.number().min(0).default(1),
      top_k: z.int().positive().nullable().default(null),
      /** Test images completed from their top half. */
      num_images: z.int().nonnegative().default(8),
      num_unconditional: z.int().nonnegative().default(8),
      /** Pixels per image pixel in the PNG. */
      scale: z.int().min(1).max(32).default(4),
    })
    .prefault({}),
  /**
   * Seeds the heads' initialisation (`mixSeed(init_seed, 1)` for the LM head, `mixSeed(init_seed, 2)`
   * for the classifier, see heads.ts); the task's conf sets it to `${trainer.seed}`, as the
   * backbone's `init_seed`. Weights loaded from a checkpoint replace the initial ones.
   */
  init_seed: z.int().nonnegative().default(0),
});

export type IgptTaskConfig = z.output<typeof igptTaskSchema>;

/** What the task needs from its create context besides the backbone and the image facts. */
type RunData = Partial<
  Pick<CreateContexts['task'], 'modelDataArgs' | 'dataConfig' | 'backboneConfig' | 'dataTrainingOnly'>
>;

const LN2 = Math.log(2);

/** What `predictStep` returns for one image (see there). */
export interface IgptPrediction {
  label: number;
  bpp: number;
  predicted?: number;
  predicted_name?: string;
  probability?: number;
}

/**
 * Image GPT: next-pixel prediction over palette tokens (bits per pixel logged as `bpp`), and with
 * `classify` a classification loss on the mean hidden state added to it. With `probe_layer` a
 * linear probe: only the classification head learns, on the mean hidden state of that layer of
 * the frozen backbone. Owns its heads (`lm_head.*`, `cls_head.*`, see heads.ts) over the
 * backbone's hidden states.
 *
 * The steps take batches of `B` images as `tokens` int32 [B × num_positions] and `labels` [B];
 * `trainingStep` returns the rank-0 loss in nats. A batch that disagrees with `modelDataArgs`
 * (token count, a token outside the palette, with `classify` or `probe_layer` a label outside
 * 0..C−1) is a TaskforgeError (exit 1) naming the image and value. With `pretrained`, the
 * constructor throws as `loadPretrained` does (exit 2 for a checkpoint that does not fit this data
 * or model); with a `probe_layer` beyond the backbone's depth, a ConfigError (exit 2).
 */
export class ImageGptTask implements Task<IgptBatch> {
  readonly lmHead: LmHead;
  readonly clsHead: ClassificationHead;
  /** Next-token logits one position at a time (the backbone's KV-cache step and the LM head), for sampling. */
  readonly decoder: TokenDecoder;
  private palette: Palette;
  private classNames: string[];
  /** Rows: true class, columns: predicted class; accumulated over a test epoch. */
  private confusion: number[][];
  /** testStep's predictions, read once at the end of the test epoch. */
  private pendingPredictions: Array<{ labels: number[]; predicted: tf.Tensor }> = [];
  /** The linear probe's layer (`task.probe_layer`), or null. */
  readonly probeLayer: number | null;

  constructor(
    readonly backbone: IgptBackbone,
    readonly config: IgptTaskConfig,
    readonly image: ImageSpec,
    runData: RunData = {},
  ) {
    this.lmHead = new LmHead(backbone.hiddenSize, image.numVocab, config.init_seed);
    this.clsHead = new ClassificationHead(backbone.hiddenSize, image.numClasses, config.init_seed);
    this.decoder = {
      createCache: (batch) => backbone.createCache(batch),
      step: (token, cache) => tf.tidy(() => this.lmHead.apply(backbone.step(token, cache))),
    };
    this.palette = image.palette;
    this.classNames = image.classNames;
    this.confusion = this.emptyConfusion();
    this.probeLayer = config.probe_layer === null ? null : checkProbeLayer(config.probe_layer, backbone);
    if (this.probeLayer !== null) {
      // Frozen: the Trainer takes gradients of, and builds optimizer state for, trainable variables only.
      for (const v of [...Object.values(backbone.namedVariables()), ...Object.values(this.lmHead.namedVariables())])
        v.trainable = false;
    }
    if (config.pretrained) {
      this.palette = loadPretrained(config.pretrained, this, {
        palette: image.palette,
        modelDataArgs: runData.modelDataArgs ?? {},
        dataConfig: runData.dataConfig,
        dataTrainingOnly: runData.dataTrainingOnly,
        backboneConfig: runData.backboneConfig,
      }).palette;
    }
  }

  /** True when the task trains or evaluates a classifier: `classify`, or a linear probe. */
  get classifies(): boolean {
    return this.config.classify || this.probeLayer !== null;
  }

  /**
   * The backbone's variables, then `lm_head.kernel`, `cls_head.kernel`, `cls_head.bias` (all of
   * them, so checkpoints are complete; with `probe_layer` all but `cls_head.*` are not trainable).
   */
  namedVariables(): NamedVariables {
    return { ...this.backbone.namedVariables(), ...this.lmHead.namedVariables(), ...this.clsHead.namedVariables() };
  }

  /** Next-token logits [B, T, V] of tokens int32 [B, T]: position i predicts token i. */
  logits(
    tokens: tf.Tensor2D,
    options: { training: boolean; seed: number } = { training: false, seed: 0 },
  ): tf.Tensor3D {
    return tf.tidy(() => {
      const [B, T] = tokens.shape;
      const { hidden } = this.backbone.forward(tokens, options);
      return this.lmHead.apply(hidden.reshape([B * T, -1])).reshape([B, T, this.image.numVocab]) as tf.Tensor3D;
    });
  }

  trainingStep(batch: IgptBatch, ctx: StepContext): tf.Scalar {
    return tf.tidy(() => {
      const out = this.losses(batch, { training: true, seed: ctx.seed });
      this.logAll(ctx, 'train', out, batch.size);
      return out.loss;
    });
  }

  validationStep(batch: IgptBatch, ctx: StepContext): void {
    tf.tidy(() => this.logAll(ctx, 'val', this.losses(batch, { training: false, seed: ctx.seed }), batch.size));
  }

  testStep(batch: IgptBatch, ctx: StepContext): void {
    tf.tidy(() => {
      const out = this.losses(batch, { training: false, seed: ctx.seed });
      this.logAll(ctx, 'test', out, batch.size);
      if (!out.predictions) return;
      // Kept and read in onTestEpochEnd: a sync read per batch would stall a GPU backend (and webgpu cannot
      // read synchronously in Node).
      this.pendingPredictions.push({
        labels: Array.from(batch.labels.subarray(0, batch.size)),
        predicted: tf.keep(out.predictions),
      });
    });
  }

  /**
   * One JSON record per image of the batch, in dataset order: `label` (the true class index),
   * `bpp` (bits per pixel of its palette tokens under the model: mean next-token cross-entropy
   * / ln 2) and, with `classify` or `probe_layer`, `predicted` (class index), `predicted_name` and
   * `probability` (its softmax probability). Reads the values once per batch, asynchronously.
   */
  async predictStep(batch: IgptBatch, ctx: StepContext): Promise<IgptPrediction[]> {
    const out = tf.tidy(() => {
      const tokens = this.toTokens(batch);
      const { hidden } = this.backbone.forward(tokens, { training: false, seed: ctx.seed });
      const [B, T, D] = hidden.shape;
      const logProbs = tf.logSoftmax(this.lmHead.apply(hidden.reshape([B * T, D])));
      const picked = logProbs.mul(tf.oneHot(tokens.reshape([-1]), this.image.numVocab)).sum(-1);
      const bpp = picked.reshape([B, T]).mean(1).neg().div(LN2);
      if (!this.classifies) return { bpp };
      const probs = tf.softmax(this.clsHead.apply(this.probeLayer === null ? hidden : this.probeFeatures(tokens)));
      return { bpp, predicted: probs.argMax(-1), probability: probs.max(-1) };
    });
    try {
      const [bpp, predicted, probability] = await Promise.all([
        out.bpp.data(),
        out.predicted?.data(),
        out.probability?.data(),
      ]);
      return Array.from({ length: batch.size }, (_, i) => {
        const record: IgptPrediction = { label: batch.labels[i]!, bpp: bpp[i]! };
        if (predicted && probability) {
          record.predicted = predicted[i]!;
          record.predicted_name = this.classNames[predicted[i]!] ?? String(predicted[i]);
          record.probability = probability[i]!;
        }
        return record;
      });
    } finally {
      tf.dispose([out.bpp, out.predicted, out.probability].filter((t): t is tf.Tensor => t !== undefined));
    }
  }

  async onTestEpochEnd(): Promise<Record<string, unknown> | undefined> {
    await this.countPending();
    if (!this.classifies) return undefined;
    const matrix = this.confusion;
    this.confusion = this.emptyConfusion();
    const total = matrix.flat().reduce((a, b) => a + b, 0);
    const correct = matrix.reduce((sum, row, i) => sum + row[i]!, 0);
    return {
      confusion_matrix: { class_names: this.classNames, rows: 'true class', columns: 'predicted class', matrix },
      accuracy: total ? correct / total : null,
    };
  }

  /**
   * Data-parallel test: this replica's confusion counts of the epoch so far (C × C numbers, rows
   * the true class), which it then resets; rank 0 adds them with `mergeTestState`.
   */
  async exportTestState(): Promise<{ confusion: number[][] }> {
    await this.countPending();
    const confusion = this.confusion;
    this.confusion = this.emptyConfusion();
    return { confusion };
  }

  /**
   * Adds another replica's `exportTestState()` counts to this one's. Throws TaskforgeError (exit 1)
   * when the matrix is not C × C for this task's C classes (replicas built from other data).
   */
  mergeTestState(state: unknown): void {
    const confusion = (state as { confusion?: unknown } | null)?.confusion;
    const size = this.confusion.length;
    if (
      !Array.isArray(confusion) ||
      confusion.length !== size ||
      !confusion.every((row) => Array.isArray(row) && row.length === size && row.every((n) => Number.isInteger(n)))
    ) {
      throw new TaskforgeError(
        `mergeTestState got test state that is not a ${size} × ${size} confusion matrix of counts; ` +
          'every ddp replica must be built from the same data (dataset.num_classes).',
      );
    }
    (confusion as number[][]).forEach((row, t) => row.forEach((n, p) => (this.confusion[t]![p]! += n)));
  }

  /** Adds the predictions testStep kept to the confusion matrix (one async read per batch) and releases them. */
  private async countPending(): Promise<void> {
    const pending = this.pendingPredictions;
    this.pendingPredictions = [];
    try {
      for (const { labels, predicted } of pending) {
        const values = await predicted.data();
        labels.forEach((label, i) => (this.confusion[label]![values[i]!]! += 1));
      }
    } finally {
      tf.dispose(pending.map((p) => p.predicted));
    }
  }

  /** Lets a checkpoint turn tokens back into colours without the data directory. */
  stateDict(): Record<string, unknown> {
    return { palette: this.palette.map((c) => [...c]), class_names: [...this.classNames] };
  }

  loadStateDict(state: Record<string, unknown>): void {
    this.palette = assertSamePalette(this.image.palette, state['palette'], "the checkpoint's task state");
    const names = state['class_names'];
    if (Array.isArray(names) && names.length === this.image.numClasses && names.every((n) => typeof n === 'string'))
      this.classNames = [...names];
  }

  async sample({ outDir, datamodule, seed, tag }: SampleOptions): Promise<SampleResult> {
    const { num_images, num_unconditional, temperature, top_k: topK, scale } = this.config.sampling;
    const { numPositions, width, height } = this.image;
    const originals = datamodule && num_images > 0 ? await takeImages(datamodule, num_images, numPositions, seed) : [];
    // Top half in raster order: the first height/2 rows of pixels.
    const given = Math.floor(height / 2) * width;
    const prefixes = [
      ...originals.map((o) => o.subarray(0, given)),
      ...Array.from({ length: num_unconditional }, () => new Int32Array(0)),
    ];
    const sequences = await generate(this.decoder, { length: numPositions, prefixes, seed, temperature, topK });
    const png = renderGrid({
      completions: sequences.slice(0, originals.length),
      originals,
      unconditional: sequences.slice(originals.length),
      palette: this.palette,
      height,
      width,
      scale,
    });
    // Never replaces an earlier grid (the training run's, or a previous `sample`): a taken name gets -2, -3, ...
    const file = writeNewFileAtomic(join(outDir, `samples-${tag}.png`), png);
    return { files: [file], image: new Uint8Array(png.buffer, png.byteOffset, png.byteLength) };
  }

  /** Idempotent: disposes the backbone and the heads. */
  dispose(): void {
    this.backbone.dispose();
    for (const v of [...Object.values(this.lmHead.namedVariables()), ...Object.values(this.clsHead.namedVariables())])
      if (!v.isDisposed) v.dispose();
  }

  private losses(
    batch: IgptBatch,
    options: { training: boolean; seed: number },
  ): {
    loss: tf.Scalar;
    genLoss?: tf.Scalar;
    clfLoss?: tf.Scalar;
    accuracy?: tf.Scalar;
    predictions?: tf.Tensor1D;
  } {
    const tokens = this.toTokens(batch);
    if (this.probeLayer !== null) {
      const labels = tf.tensor1d(batch.labels.subarray(0, batch.size), 'int32');
      const classLogits = this.clsHead.apply(this.probeFeatures(tokens));
      const clfLoss = crossEntropy(classLogits, labels);
      const predictions = classLogits.argMax(-1) as tf.Tensor1D;
      const accuracy = predictions.equal(labels).toFloat().mean() as tf.Scalar;
      return { loss: clfLoss, clfLoss, accuracy, predictions };
    }
    const { hidden } = this.backbone.forward(tokens, options);
    const [B, T, D] = hidden.shape;
    const logits = this.lmHead.apply(hidden.reshape([B * T, D]));
    const genLoss = crossEntropy(logits, tokens.reshape([-1]));
    if (!this.config.classify) return { loss: genLoss, genLoss };
    const labels = tf.tensor1d(batch.labels.subarray(0, batch.size), 'int32');
    const classLogits = this.clsHead.apply(hidden);
    const clfLoss = crossEntropy(classLogits, labels);
    const predictions = classLogits.argMax(-1) as tf.Tensor1D;
    const accuracy = predictions.equal(labels).toFloat().mean() as tf.Scalar;
    return { loss: clfLoss.add(genLoss) as tf.Scalar, genLoss, clfLoss, accuracy, predictions };
  }

  private logAll(ctx: StepContext, split: string, out: ReturnType<ImageGptTask['losses']>, size: number): void {
    // Each logged value is its own kept clone (loggedValue): the Trainer reads and disposes it
    // after the step, independently of the tensors this step still uses or returns.
    const log = (name: string, value: tf.Scalar, progressBar = false) =>
      ctx.log(`${split}/${name}`, loggedValue(value), { weight: size, progressBar });
    log('loss', out.loss, true);
    if (out.genLoss) log('bpp', out.genLoss.div(LN2));
    if (out.clfLoss) {
      if (out.genLoss) log('gen_loss', out.genLoss);
      log('clf_loss', out.clfLoss);
      log('acc', out.accuracy!, true);
    }
  }

  /**
   * The linear probe's features: hidden states [B, T, D] at `probe_layer` of the frozen backbone,
   * in inference mode (no dropout), whatever the step; the head averages them over positions.
   */
  private probeFeatures(tokens: tf.Tensor2D): tf.Tensor3D {
    return this.backbone.forward(tokens, { training: false, seed: 0, layer: this.probeLayer! }).hidden;
  }

  private toTokens(batch: IgptBatch): tf.Tensor2D {
    const { size, tokens, labels } = batch;
    const T = this.image.numPositions;
    const V = this.image.numVocab;
    if (tokens.length !== size * T) {
      throw new TaskforgeError(
        `task/vision/igpt: a batch of ${size} images has ${tokens.length} tokens; expected ${size} ` +
          `× ${T} (image_height × image_width). The data module and its modelDataArgs disagree.`,
      );
    }
    for (let i = 0; i < tokens.length; i++) {
      if (tokens[i]! < 0 || tokens[i]! >= V) {
        throw new TaskforgeError(
          `task/vision/igpt: token ${tokens[i]} (image ${Math.floor(i / T)}, pixel ${i % T}) ` +
            `is outside the ${V}-colour palette; the data was quantised with another palette.`,
        );
      }
    }
    if (this.classifies) {
      const bad = labels.subarray(0, size).findIndex((l) => l < 0 || l >= this.image.numClasses);
      if (labels.length < size || bad >= 0) {
        throw new TaskforgeError(
          `task/vision/igpt: label ${labels[bad]} of image ${bad} ` +
            `is not a class index in 0..${this.image.numClasses - 1}.`,
        );
      }
    }
    return tf.tensor2d(tokens, [size, T], 'int32');
  }

  private emptyConfusion(): number[][] {
    return Array.from({ length: this.image.numClasses }, () => new Array<number>(this.image.numClasses).fill(0));
  }
}

/**
 * `task.probe_layer` against the backbone's depth (the schema checked it is an integer >= 0).
 * @throws ConfigError (exit code 2) at `task.probe_layer` naming the range and a value to use, when it
 *   exceeds the backbone's number of layers or the backbone cannot return intermediate layers.
 */
function checkProbeLayer(layer: number, backbone: IgptBackbone): number {
  const depth = backbone.numLayers;
  if (typeof depth !== 'number') {
    throw new ConfigError([
      {
        path: 'task.probe_layer',
        message:
          "the linear probe needs a backbone that reports numLayers and returns a layer's hidden states " +
          "(forward's `layer` option), which the configured one does not; use 'backbone: gpt2', " +
          'or set task.probe_layer=null',
        value: layer,
      },
    ]);
  }
  if (layer > depth) {
    throw new ConfigError([
      {
        path: 'task.probe_layer',
        message:
          `the backbone has ${depth} layers, so expected ` +
          `${PROBE_LAYER_RANGE.replace('backbone.num_layers', String(depth))}; ` +
          `set task.probe_layer=${middleLayer(depth)} (the middle, where the iGPT paper finds the best probe ` +
          `features) or another value in 0..${depth}`,
        value: layer,
      },
    ]);
  }
  return layer;
}

/** The first `count` images of the test split (the validation split when there is no test loader). */
async function takeImages(datamodule: DataModule, count: number, T: number, seed: number): Promise<Int32Array[]> {
  const loader = datamodule.testDataloader ?? datamodule.valDataloader;
  if (!loader) return [];
  const images: Int32Array[] = [];
  for await (const raw of loader.call(datamodule, { epoch: 0, seed })) {
    const batch = raw as IgptBatch;
    for (let i = 0; i < batch.size && images.length < count; i++) images.push(batch.tokens.slice(i * T, (i + 1) * T));
    if (images.length >= count) break;
  }
  return images;
}
