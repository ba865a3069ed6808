/**
 * Reduction kernels of the `blas` backend: Sum, Mean, Max, Min over any contiguous block of axes,
 * a one-pass Softmax, Cumsum and UnsortedSegmentSum (the gradient of an embedding lookup). float32 only;
 * other dtypes and reductions over axes that are not one block go to the cpu kernels.
 *
 * The cpu kernels transpose the reduced axes to the end and then reduce rows; these kernels read the
 * data where it lies: [outer, reduce, inner], with inner rows accumulated side by side. Sums accumulate
 * in doubles in the same order as the cpu kernels, so results match them exactly.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import {
  f32,
  type FastPath,
  type Kernel,
  type KernelArgs,
  reductionLayout,
  sizeOf,
  type TensorInfo,
  withFallback,
} from "./_util.ts";
import { fastExp } from "./_exp.ts";
import { allocFloat32 } from "./pool.ts";

type ReduceKind = "sum" | "mean" | "max" | "min";

/** x viewed as [outer, reduce, inner] -> out [outer, inner]. */
function reduceBlock(
  x: Float32Array,
  layout: { kind: ReduceKind; outer: number; reduce: number; inner: number },
): Float32Array {
  const { kind, outer, reduce, inner } = layout;
  const out = allocFloat32(outer * inner);
  const isSum = kind === "sum" || kind === "mean";
  // The cpu Mean divides every element by the count (rounding to float32) and then sums.
  const scale = kind === "mean" ? reduce : 1;
  if (inner === 1) {
    for (let o = 0; o < outer; o++) {
      const start = o * reduce;
      if (isSum) {
        let s = 0;
        if (scale === 1) {
          for (let j = 0; j < reduce; j++) s += x[start + j];
        } else {
          for (let j = 0; j < reduce; j++) s += Math.fround(x[start + j] / scale);
        }
        out[o] = s;
      } else if (kind === "max") {
        let m = x[start];
        for (let j = 1; j < reduce; j++) {
          const v = x[start + j];
          // NaN wins, as in the cpu kernel.
          if (v > m || v !== v) m = v;
          if (m !== m) break;
        }
        out[o] = m;
      } else {
        let m = x[start];
        for (let j = 1; j < reduce; j++) {
          const v = x[start + j];
          if (v < m || v !== v) m = v;
          if (m !== m) break;
        }
        out[o] = m;
      }
    }
    return out;
  }
  const acc = new Float64Array(inner);
  for (let o = 0; o < outer; o++) {
    const base = o * reduce * inner;
    if (isSum) {
      acc.fill(0);
      for (let r = 0; r < reduce; r++) {
        const row = base + r * inner;
        if (scale === 1) {
          for (let i = 0; i < inner; i++) acc[i] += x[row + i];
        } else {
          for (let i = 0; i < inner; i++) acc[i] += Math.fround(x[row + i] / scale);
        }
      }
    } else {
      for (let i = 0; i < inner; i++) acc[i] = x[base + i];
      const isMax = kind === "max";
      for (let r = 1; r < reduce; r++) {
        const row = base + r * inner;
        for (let i = 0; i < inner; i++) {
          const v = x[row + i];
          const m = acc[i];
          // Once NaN, a column stays NaN.
          if (m === m && ((isMax ? v > m : v < m) || v !== v)) acc[i] = v;
        }
      }
    }
    out.set(acc, o * inner);
  }
  return out;
}

function reduction(name: string, how: { kind: ReduceKind; axisAttr: "axis" | "reductionIndices" }): Kernel {
  const { kind, axisAttr } = how;
  const fast: FastPath = ({ inputs, backend, attrs }) => {
    const x = inputs.x!;
    if (x.dtype !== "float32" || x.shape.some((d) => d === 0)) return undefined;
    const axes = tf.util.parseAxisParam(attrs?.[axisAttr] as number | number[], x.shape);
    const layout = reductionLayout(x.shape, axes);
    if (!layout) return undefined;
    const out = reduceBlock(f32(backend, x), { kind, ...layout });
    const [outShape] = tf.backend_util.computeOutAndReduceShapes(x.shape, axes);
    const shape = attrs?.keepDims ? tf.backend_util.expandShapeToKeepDim(outShape, axes) : outShape;
    return backend.makeTensorInfo(shape, "float32", out);
  };
  return withFallback(name, fast);
}

/**
 * Softmax over each row of x seen as [x.length / n, n], into out (which may be x), with the cpu kernel's roundings:
 * max, e = exp(x − max) in float32, e / sum(e); e^d by fastExp, which rounds to the same float32 as the cpu kernel's
 * Math.exp but in fewer than one case in 10^7. −Infinity entries (masked) get 0.
 *
 * @example
 * ```ts
 * import { softmaxRows } from "./reduce.ts";
 * const out = new Float32Array(4);
 * softmaxRows(new Float32Array([0, 0, 1, -Infinity]), out, 2);
 * console.log(Array.from(out)); // [0.5, 0.5, 1, 0]
 * ```
 */
export function softmaxRows(x: Float32Array, out: Float32Array, n: number): void {
  for (let start = 0; start < x.length; start += n) {
    let m = x[start];
    for (let j = 1; j < n; j++) {
      const v = x[start + j];
      if (v > m || v !== v) m = v;
      if (m !== m) break;
    }
    let s = 0;
    for (let j = 0; j < n; j++) {
      const d = Math.fround(x[start + j] - m);
      // Masked logits (-1e9) would send Math.exp down its slow underflow path; e^d is 0 in float32 below -104.
      const e = d < -104 ? 0 : Math.fround(fastExp(d));
      out[start + j] = e;
      s += e;
    }
    const total = Math.fround(s);
    for (let j = 0; j < n; j++) out[start + j] = out[start + j] / total;
  }
}

function softmax({ inputs, backend, attrs }: KernelArgs): TensorInfo | undefined {
  const logits = inputs.logits!;
  const rank = logits.shape.length;
  const dim = attrs?.dim as number;
  if (logits.dtype !== "float32" || rank === 0 || (dim !== -1 && dim !== rank - 1)) return undefined;
  const n = logits.shape[rank - 1];
  const x = f32(backend, logits);
  const out = allocFloat32(x.length);
  if (n > 0) softmaxRows(x, out, n);
  return backend.makeTensorInfo(logits.shape, "float32", out);
}

function cumsum({ inputs, backend, attrs }: KernelArgs): TensorInfo | undefined {
  const xInfo = inputs.x!;
  if (xInfo.dtype !== "float32" || xInfo.shape.length === 0) return undefined;
  const axis = attrs?.axis as number;
  const exclusive = Boolean(attrs?.exclusive);
  const reverse = Boolean(attrs?.reverse);
  const normalized = axis < 0 ? axis + xInfo.shape.length : axis;
  const length = xInfo.shape[normalized];
  const outer = sizeOf(xInfo.shape.slice(0, normalized));
  const inner = sizeOf(xInfo.shape.slice(normalized + 1));
  const x = f32(backend, xInfo);
  const out = allocFloat32(x.length);
  // Running sums rounded to float32 at every step, walking the axis forwards or backwards, as the cpu kernel does.
  const step = reverse ? -inner : inner;
  for (let o = 0; o < outer; o++) {
    const first = o * length * inner + (reverse ? (length - 1) * inner : 0);
    for (let i = 0; i < inner; i++) {
      let at = first + i;
      out[at] = exclusive ? 0 : x[at];
      for (let t = 1; t < length; t++) {
        const prev = at;
        at += step;
        out[at] = (exclusive ? x[prev] : x[at]) + out[prev];
      }
    }
  }
  return backend.makeTensorInfo(xInfo.shape, "float32", out);
}

function unsortedSegmentSum({ inputs, backend, attrs }: KernelArgs): TensorInfo | undefined {
  const x = inputs.x!;
  const ids = inputs.segmentIds!;
  const numSegments = attrs?.numSegments as number;
  if (x.dtype !== "float32" || ids.dtype !== "int32" || ids.shape.length !== 1 || x.shape.length === 0) {
    return undefined;
  }
  if (ids.shape[0] !== x.shape[0]) return undefined;
  const rowSize = x.shape.slice(1).reduce((p, d) => p * d, 1);
  const xv = f32(backend, x);
  const idv = backend.data.get(ids.dataId)!.values as Int32Array;
  // Rows summed in doubles in row order, as the cpu kernel's masked sums do. Unlike those (mask * x),
  // a NaN or Inf in one row does not spill into every other segment.
  const acc = new Float64Array(numSegments * rowSize);
  for (let r = 0; r < idv.length; r++) {
    const id = idv[r];
    if (id < 0 || id >= numSegments) continue;
    const src = r * rowSize;
    const dst = id * rowSize;
    for (let i = 0; i < rowSize; i++) acc[dst + i] += xv[src + i];
  }
  const out = allocFloat32(acc.length);
  out.set(acc);
  return backend.makeTensorInfo([numSegments, ...x.shape.slice(1)], "float32", out);
}

/**
 * The reduction kernels, by kernel name.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { reductionKernels } from "./reduce.ts";
 * console.log(Object.keys(reductionKernels()).includes(tf.Softmax)); // true
 * ```
 */
export function reductionKernels(): Record<string, Kernel> {
  return {
    [tf.Sum]: reduction(tf.Sum, { kind: "sum", axisAttr: "axis" }),
    [tf.Mean]: reduction(tf.Mean, { kind: "mean", axisAttr: "axis" }),
    [tf.Max]: reduction(tf.Max, { kind: "max", axisAttr: "reductionIndices" }),
    [tf.Min]: reduction(tf.Min, { kind: "min", axisAttr: "axis" }),
    [tf.Softmax]: withFallback(tf.Softmax, softmax),
    [tf.Cumsum]: withFallback(tf.Cumsum, cumsum),
    [tf.UnsortedSegmentSum]: withFallback(tf.UnsortedSegmentSum, unsortedSegmentSum),
  };
}
