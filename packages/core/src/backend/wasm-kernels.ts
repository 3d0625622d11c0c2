/**
 * Kernels that the gradients of common layers need and that `@tensorflow/tfjs-backend-wasm`
 * 4.22 lacks (the full list is `GRADIENT_KERNELS` in ./gradient-kernels.ts):
 *
 * - `UnsortedSegmentSum` (gradient of `tf.gather`, i.e. every embedding lookup)
 * - `Conv2DBackpropFilter` (gradient of `tf.conv1d`/`tf.conv2d` w.r.t. the filter, and of
 *   `tf.conv2dTranspose` w.r.t. its input)
 * - `DepthwiseConv2dNativeBackpropFilter` and `DepthwiseConv2dNativeBackpropInput` (gradients of
 *   `tf.depthwiseConv2d`, hence of `tf.separableConv2d`)
 *
 * The convolution kernels are compositions of wasm's own vectorised ops (pad, strided slice,
 * transpose, 2-D matMul, multiply, sum), run through the engine on the wasm backend, not scalar
 * JavaScript loops. `node scripts/bench-wasm-grads.mjs` (x [8, 32, 32, 16], 3×3 filters, 32 output
 * channels), on the 2-core development machine under load: Conv2DBackpropFilter 146 ms on wasm vs
 * 33.8 s for the cpu backend's loop (wasm's own Conv2D forward: 47 ms); depthwise filter gradient
 * 120 ms vs 1.46 s; depthwise input gradient 43 ms vs 71 ms. A kernel may return a Tensor (the
 * engine then uses it as the op's output as is), so each is a `tf.tidy` returning one.
 */
import * as tf from '@tensorflow/tfjs';
import type { WasmBackendLike } from '../ops/wasm-kernels.js';

type Pad = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
type Rounding = 'floor' | 'round' | 'ceil' | undefined;

/**
 * `UnsortedSegmentSum` in JavaScript for the wasm backend, which has no kernel for it. Without it
 * the gradient of `tf.gather` (every embedding lookup) fails on wasm. TensorFlow semantics (for
 * the 1-D `segmentIds` gather passes, what TF.js cpu does): ids outside [0, numSegments) are dropped.
 */
const unsortedSegmentSum: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = (attrs as { numSegments: number }).numSegments;
  const wasm = backend as unknown as WasmBackendLike;
  const values = wasm.readSync(x.dataId);
  const ids = wasm.readSync(segmentIds.dataId);
  const innerShape = x.shape.slice(segmentIds.shape.length);
  const inner = tf.util.sizeFromShape(innerShape);
  const out = x.dtype === 'int32' ? new Int32Array(numSegments * inner) : new Float32Array(numSegments * inner);
  for (let i = 0; i < ids.length; i++) {
    const segment = ids[i]!;
    if (segment < 0 || segment >= numSegments) continue;
    const from = i * inner;
    const to = segment * inner;
    for (let j = 0; j < inner; j++) out[to + j]! += values[from + j]!;
  }
  return wasm.makeOutput([numSegments, ...innerShape], x.dtype, undefined, out);
};

/**
 * A kernel input as a Tensor (same data, no copy). Inputs from `runKernel` already are Tensors;
 * a bare TensorInfo gets a wrapper holding its own reference, which the enclosing tidy releases.
 */
function asTensor<R extends tf.Rank>(info: tf.TensorInfo): tf.Tensor<R> {
  if (info instanceof tf.Tensor) return info as tf.Tensor<R>;
  const engine = tf.engine();
  const tensor = engine.makeTensorFromTensorInfo(info) as tf.Tensor<R>;
  engine.backend.incRef(info.dataId);
  return tensor;
}

const pair = (v: number | [number, number] | undefined): [number, number] =>
  v === undefined ? [1, 1] : typeof v === 'number' ? [v, v] : v;

/**
 * The window of tap (kh, kw) over a zero-padded NHWC (or, with `channelsFirstAxis`, [C, N, H, W])
 * input: element (oh, ow) of the result is the padded input at (oh·sh + kh·dh, ow·sw + kw·dw).
 */
function tapWindow(
  padded: tf.Tensor4D,
  kh: number,
  kw: number,
  info: tf.backend_util.Conv2DInfo,
  spatialAxis: 1 | 2,
): tf.Tensor4D {
  const begin = [0, 0, 0, 0];
  const end = [...padded.shape];
  const strides = [1, 1, 1, 1];
  const rowStart = kh * info.dilationHeight;
  const colStart = kw * info.dilationWidth;
  begin[spatialAxis] = rowStart;
  begin[spatialAxis + 1] = colStart;
  end[spatialAxis] = rowStart + (info.outHeight - 1) * info.strideHeight + 1;
  end[spatialAxis + 1] = colStart + (info.outWidth - 1) * info.strideWidth + 1;
  strides[spatialAxis] = info.strideHeight;
  strides[spatialAxis + 1] = info.strideWidth;
  return tf.stridedSlice(padded, begin, end, strides) as tf.Tensor4D;
}

/** NCHW → NHWC (the layout the wasm kernels compute in). */
const toNhwc = (t: tf.Tensor4D): tf.Tensor4D => tf.transpose(t, [0, 2, 3, 1]);

/**
 * `Conv2DBackpropFilter`:
 * dW[kh, kw, ci, co] = Σ_{n, oh, ow} x_pad[n, oh·sh + kh, ow·sw + kw, ci] · dy[n, oh, ow, co].
 * Inputs x [N, H, W, Cin] and dy [N, Ho, Wo, Cout] (NCHW too, via `dataFormat`); output the
 * filter's shape [fh, fw, Cin, Cout]. As im2col: x is transposed once to [Cin, N, H, W] and padded,
 * the fh·fw tap windows are stacked into [fh·fw·Cin, N·Ho·Wo], and one untransposed 2-D matMul
 * with dy as [N·Ho·Wo, Cout] (the shape wasm hands to XNNPACK) gives the gradient.
 */
const conv2DBackpropFilter: tf.KernelFunc = ({ inputs, attrs }) => {
  const a = attrs as {
    strides: number | [number, number];
    pad: Pad;
    dataFormat?: 'NHWC' | 'NCHW';
    dimRoundingMode?: Rounding;
    filterShape: [number, number, number, number];
  };
  return tf.tidy(() => {
    let x = asTensor<tf.Rank.R4>(inputs.x!);
    let dy = asTensor<tf.Rank.R4>(inputs.dy!);
    if (a.dataFormat === 'NCHW') {
      x = toNhwc(x);
      dy = toNhwc(dy);
    }
    const [fh, fw, cin, cout] = a.filterShape;
    const info = tf.backend_util.computeConv2DInfo(
      x.shape,
      a.filterShape,
      a.strides,
      1,
      a.pad,
      a.dimRoundingMode,
      false,
      'channelsLast',
    );
    const { top, bottom, left, right } = info.padInfo;
    const padded = tf.pad(tf.transpose(x, [3, 0, 1, 2]), [
      [0, 0],
      [0, 0],
      [top, bottom],
      [left, right],
    ]) as tf.Tensor4D;
    const windows: tf.Tensor[] = [];
    for (let kh = 0; kh < fh; kh++) for (let kw = 0; kw < fw; kw++) windows.push(tapWindow(padded, kh, kw, info, 2));
    const rows = fh * fw * cin;
    const patches = (windows.length === 1 ? windows[0]! : tf.concat(windows, 0)).reshape([rows, -1]) as tf.Tensor2D;
    const grad = tf.matMul(patches, dy.reshape([-1, cout]) as tf.Tensor2D);
    return grad.reshape([fh, fw, cin, cout]);
  });
};

interface DepthwiseAttrs {
  strides: number | [number, number];
  dilations?: number | [number, number];
  pad: Pad;
  dimRoundingMode?: Rounding;
}

function depthwiseInfo(
  xShape: [number, number, number, number],
  filterShape: [number, number, number, number],
  a: DepthwiseAttrs,
) {
  return tf.backend_util.computeConv2DInfo(
    xShape,
    filterShape,
    a.strides,
    pair(a.dilations),
    a.pad,
    a.dimRoundingMode,
    true,
    'channelsLast',
  );
}

/**
 * `DepthwiseConv2dNativeBackpropFilter`: dW[kh, kw, c, m] = Σ_{n, oh, ow} x_pad[n, oh·sh + kh·dh, ow·sw +
 * kw·dw, c] · dy[n, oh, ow, c·M + m].
 * Inputs x [N, H, W, C], dy [N, Ho, Wo, C·M]; output [fh, fw, C, M]. Per tap: one strided window,
 * a broadcast multiply and a sum over (n, oh, ow), all wasm ops.
 */
const depthwiseConv2dBackpropFilter: tf.KernelFunc = ({ inputs, attrs }) => {
  const a = attrs as unknown as DepthwiseAttrs & { filterShape: [number, number, number, number] };
  return tf.tidy(() => {
    const x = asTensor<tf.Rank.R4>(inputs.x!);
    const dy = asTensor<tf.Rank.R4>(inputs.dy!);
    const [fh, fw, channels, multiplier] = a.filterShape;
    const info = depthwiseInfo(x.shape, a.filterShape, a);
    const { top, bottom, left, right } = info.padInfo;
    const padded = tf.pad(x, [
      [0, 0],
      [top, bottom],
      [left, right],
      [0, 0],
    ]) as tf.Tensor4D;
    const dyTaps = dy.reshape([-1, channels, multiplier]);
    const taps: tf.Tensor[] = [];
    for (let kh = 0; kh < fh; kh++) {
      for (let kw = 0; kw < fw; kw++) {
        taps.push(tf.tidy(() => tapWindow(padded, kh, kw, info, 1).reshape([-1, channels, 1]).mul(dyTaps).sum(0)));
      }
    }
    return tf.stack(taps).reshape([fh, fw, channels, multiplier]);
  });
};

/**
 * `DepthwiseConv2dNativeBackpropInput`: dx = Σ over taps (kh, kw) of dy·W[kh, kw] (summed over the
 * multiplier), scattered back to the input positions it was read from. Inputs dy [N, Ho, Wo, C·M]
 * and filter [fh, fw, C, M]; output `inputShape` [N, H, W, C]. The scatter of a strided tap is a
 * zero-interleave (pad a unit axis, reshape) and a pad into place; then the padding is cut off.
 */
const depthwiseConv2dBackpropInput: tf.KernelFunc = ({ inputs, attrs }) => {
  const a = attrs as unknown as DepthwiseAttrs & { inputShape: [number, number, number, number] };
  return tf.tidy(() => {
    const dy = asTensor<tf.Rank.R4>(inputs.dy!);
    const filter = asTensor<tf.Rank.R4>(inputs.filter!);
    const [fh, fw, channels, multiplier] = filter.shape;
    const [n, h, w] = a.inputShape;
    const info = depthwiseInfo(a.inputShape, filter.shape, a);
    const { top, bottom, left, right } = info.padInfo;
    const { outHeight: ho, outWidth: wo, strideHeight: sh, strideWidth: sw } = info;
    const paddedH = h + top + bottom;
    const paddedW = w + left + right;
    const spanH = (ho - 1) * sh + 1;
    const spanW = (wo - 1) * sw + 1;
    const dyTaps = dy.reshape([n, ho, wo, channels, multiplier]);
    const parts: tf.Tensor4D[] = [];
    for (let kh = 0; kh < fh; kh++) {
      for (let kw = 0; kw < fw; kw++) {
        parts.push(
          tf.tidy(() => {
            const weights = filter.slice([kh, kw, 0, 0], [1, 1, channels, multiplier]).reshape([channels, multiplier]);
            let contribution = dyTaps.mul(weights).sum(4) as tf.Tensor4D; // [N, Ho, Wo, C]
            if (sh > 1 || sw > 1) {
              contribution = contribution
                .reshape([n, ho, 1, wo, 1, channels])
                .pad([
                  [0, 0],
                  [0, 0],
                  [0, sh - 1],
                  [0, 0],
                  [0, sw - 1],
                  [0, 0],
                ])
                .reshape([n, ho * sh, wo * sw, channels])
                .slice([0, 0, 0, 0], [n, spanH, spanW, channels]) as tf.Tensor4D;
            }
            const row = kh * info.dilationHeight;
            const col = kw * info.dilationWidth;
            return contribution.pad([
              [0, 0],
              [row, paddedH - row - spanH],
              [col, paddedW - col - spanW],
              [0, 0],
            ]);
          }),
        );
      }
    }
    const sum = parts.length === 1 ? parts[0]! : tf.addN(parts);
    return sum.slice([0, top, left, 0], [n, h, w, channels]);
  });
};

/** Kernels this module supplies for wasm, by name. */
export const WASM_POLYFILLS: Readonly<Record<string, tf.KernelFunc>> = {
  UnsortedSegmentSum: unsortedSegmentSum,
  Conv2DBackpropFilter: conv2DBackpropFilter,
  DepthwiseConv2dNativeBackpropFilter: depthwiseConv2dBackpropFilter,
  DepthwiseConv2dNativeBackpropInput: depthwiseConv2dBackpropInput,
};

/**
 * `Identity` (`tf.clone`) without a copy: the output shares the input's buffer, reference-counted
 * as wasm's own `Reshape` does and as TF.js's cpu backend's `Identity` does. TF.js tensors are
 * immutable (a variable's `assign` swaps its buffer, no kernel writes into an input), so a shared
 * buffer is never seen to change. Why: the engine clones every tensor it saves for a gradient
 * (each kernel's saved inputs and outputs, each `tf.customGrad`'s saved tensors), and wasm's
 * `Identity` copied each one: 491 copies per default iGPT step, every activation held twice
 * until the backward pass. Strings keep wasm's own kernel.
 */
function sharedIdentity(copying: tf.KernelFunc): tf.KernelFunc {
  const kernelFunc: tf.KernelFunc = (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype === 'string') return copying(args);
    (args.backend as unknown as WasmBackendLike).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
  return Object.assign(kernelFunc, { [SHARED]: true });
}
const SHARED = Symbol('taskforge shared Identity');

/**
 * Registers on the wasm backend each kernel of `WASM_POLYFILLS` it lacks, and replaces its
 * copying `Identity` with `sharedIdentity` (idempotent); returns the names it added or replaced,
 * in that order. Called by `selectBackend` when it picks wasm.
 */
export function registerWasmPolyfills(): string[] {
  const added: string[] = [];
  for (const [kernelName, kernelFunc] of Object.entries(WASM_POLYFILLS)) {
    if (tf.getKernel(kernelName, 'wasm') !== undefined) continue;
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc });
    added.push(kernelName);
  }
  const identity = tf.getKernel('Identity', 'wasm');
  if (identity && !(SHARED in identity.kernelFunc)) {
    tf.unregisterKernel('Identity', 'wasm');
    tf.registerKernel({ kernelName: 'Identity', backendName: 'wasm', kernelFunc: sharedIdentity(identity.kernelFunc) });
    added.push('Identity');
  }
  return added;
}
