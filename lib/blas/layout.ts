/**
 * Data-movement kernels of the `blas` backend: Transpose (any permutation, in cache-sized tiles),
 * PadV2, GatherV2 (embedding lookups), Slice, SplitV and Concat (one contiguous copy per run of whole trailing axes),
 * Tile, and {@linkcode BROADCAST} (broadcasting without a taped Tile, for the gradients of Sum and Mean). float32 only;
 * other dtypes go to the cpu kernels. All copy values, so results are exact.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { f32, type Kernel, type KernelArgs, sizeOf, type TensorInfo, withFallback } from "./_util.ts";
import { allocFloat32 } from "./pool.ts";

/** Tile edge of the blocked transpose: two 32 x 32 float32 tiles fit in L1 with room to spare. */
const TILE = 32;

/**
 * Merges input axes that stay adjacent and in order under `perm` and drops size-1 axes:
 * the same transpose on fewer, longer axes.
 */
function collapsePermutation(shape: readonly number[], perm: readonly number[]): { shape: number[]; perm: number[] } {
  const keptAxes = [...shape.keys()].filter((axis) => shape[axis] !== 1);
  const squeezed = keptAxes.map((axis) => shape[axis]);
  const order = perm.filter((axis) => shape[axis] !== 1).map((axis) => keptAxes.indexOf(axis));
  // Runs of consecutive input axes in output order become one axis.
  const runs: number[][] = [];
  for (const axis of order) {
    const run = runs.at(-1);
    if (run && run.at(-1)! + 1 === axis) run.push(axis);
    else runs.push([axis]);
  }
  const byInput = [...runs].sort((a, b) => a[0] - b[0]);
  return {
    shape: byInput.map((run) => run.reduce((p, axis) => p * squeezed[axis], 1)),
    perm: runs.map((run) => byInput.indexOf(run)),
  };
}

function rowMajorStrides(shape: readonly number[]): number[] {
  const strides = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) strides[i] = strides[i + 1] * shape[i + 1];
  return strides;
}

/** One 2-D transpose, [np, nq] read -> [nq, np] written, in TILE x TILE blocks so both sides stay in cache. */
function transposeTile(
  x: Float32Array,
  out: Float32Array,
  t: { inBase: number; outBase: number; np: number; nq: number; sp: number; sq: number },
): void {
  const { inBase, outBase, np, nq, sp, sq } = t;
  for (let q0 = 0; q0 < nq; q0 += TILE) {
    const q1 = Math.min(q0 + TILE, nq);
    for (let p0 = 0; p0 < np; p0 += TILE) {
      const p1 = Math.min(p0 + TILE, np);
      for (let j = q0; j < q1; j++) {
        const src = inBase + j;
        const dst = outBase + j * sq;
        for (let i = p0; i < p1; i++) out[dst + i] = x[src + i * sp];
      }
    }
  }
}

/**
 * A transpose that keeps the last axis: out is written in order, row after row of `rowLength` floats, each read from
 * x at the offset the row axes give ([size, input stride] per output axis, outermost first). The innermost row axis
 * runs in a plain loop and the odometer only turns the ones outside it: rows of 16 floats (attention heads) are
 * too short to pay for an odometer step each.
 */
function copyRows(
  x: Float32Array,
  out: Float32Array,
  layout: { rowLength: number; rowAxes: [number, number][] },
): void {
  const { rowLength, rowAxes } = layout;
  const [count, step] = rowAxes[rowAxes.length - 1];
  const outer = rowAxes.slice(0, -1);
  const index = new Array(outer.length).fill(0);
  const blocks = outer.reduce((n, [size]) => n * size, 1);
  let inBase = 0;
  let dst = 0;
  for (let blk = 0; blk < blocks; blk++) {
    for (let t = 0, src = inBase; t < count; t++, src += step, dst += rowLength) {
      for (let i = 0; i < rowLength; i++) out[dst + i] = x[src + i];
    }
    for (let r = outer.length - 1; r >= 0; r--) {
      const [size, stride] = outer[r];
      inBase += stride;
      if (++index[r] < size) break;
      index[r] = 0;
      inBase -= stride * size;
    }
  }
}

/** out = transpose(x, perm) for row-major x of shape `shape`. */
function transposeValues(x: Float32Array, layout: { shape: readonly number[]; perm: readonly number[] }): Float32Array {
  const { shape, perm } = layout;
  const out = allocFloat32(x.length);
  const c = collapsePermutation(shape, perm);
  const k = c.shape.length;
  if (k <= 1) {
    out.set(x);
    return out;
  }
  const inStrides = rowMajorStrides(c.shape);
  const outShape = c.perm.map((axis) => c.shape[axis]);
  const outStrides = rowMajorStrides(outShape);
  // Input stride of each output axis.
  const along = c.perm.map((axis) => inStrides[axis]);
  // The output's last axis (p) is read with stride along[p]; the input's last axis (q, read with stride 1)
  // is written with stride outStrides[q]. When they are the same axis, whole rows are copied.
  const p = k - 1;
  const q = c.perm.indexOf(k - 1);
  const rest = [...Array(k).keys()].filter((axis) => axis !== p && axis !== q);
  const np = outShape[p];
  const nq = outShape[q];
  const sp = along[p];
  const sq = outStrides[q];
  if (p === q) {
    copyRows(x, out, { rowLength: np, rowAxes: rest.map((axis) => [outShape[axis], along[axis]]) });
    return out;
  }
  const index = new Array(rest.length).fill(0);
  const blocks = rest.reduce((n, axis) => n * outShape[axis], 1);
  let inBase = 0;
  let outBase = 0;
  for (let blk = 0; blk < blocks; blk++) {
    transposeTile(x, out, { inBase, outBase, np, nq, sp, sq });
    // Odometer over the remaining axes, innermost first.
    for (let r = rest.length - 1; r >= 0; r--) {
      const axis = rest[r];
      inBase += along[axis];
      outBase += outStrides[axis];
      if (++index[r] < outShape[axis]) break;
      index[r] = 0;
      inBase -= along[axis] * outShape[axis];
      outBase -= outStrides[axis] * outShape[axis];
    }
  }
  return out;
}

function transpose({ inputs, backend, attrs }: KernelArgs): TensorInfo | undefined {
  const x = inputs.x!;
  if (x.dtype !== "float32") return undefined;
  const perm = attrs?.perm as number[];
  const outShape = perm.map((axis) => x.shape[axis]);
  const out = transposeValues(f32(backend, x), { shape: x.shape, perm });
  return backend.makeTensorInfo(outShape, "float32", out);
}

function padV2({ inputs, backend, attrs }: KernelArgs): TensorInfo | undefined {
  const x = inputs.x!;
  if (x.dtype !== "float32" || x.shape.length === 0) return undefined;
  const paddings = attrs?.paddings as [number, number][];
  const constantValue = Number(attrs?.constantValue ?? 0);
  const outShape = paddings.map(([before, after], i) => before + x.shape[i] + after);
  const out = allocFloat32(sizeOf(outShape)).fill(constantValue);
  const xv = f32(backend, x);
  if (xv.length === 0) return backend.makeTensorInfo(outShape, "float32", out);
  const rank = x.shape.length;
  const outStrides = rowMajorStrides(outShape);
  const rowLength = x.shape[rank - 1];
  const rows = xv.length / rowLength;
  // Each input row lands as one run; the odometer walks the input's outer axes.
  const index = new Array(rank - 1).fill(0);
  let dst = paddings.reduce((offset, [before], i) => offset + before * outStrides[i], 0);
  for (let r = 0; r < rows; r++) {
    // A subarray per row costs more than copying a short row by hand.
    if (rowLength < 64) { for (let i = 0, src = r * rowLength; i < rowLength; i++) out[dst + i] = xv[src + i]; }
    else out.set(xv.subarray(r * rowLength, (r + 1) * rowLength), dst);
    for (let d = rank - 2; d >= 0; d--) {
      dst += outStrides[d];
      if (++index[d] < x.shape[d]) break;
      index[d] = 0;
      dst -= outStrides[d] * x.shape[d];
    }
  }
  return backend.makeTensorInfo(outShape, "float32", out);
}

/**
 * x[begin : begin + size] in row-major order. Trailing axes taken whole merge into one longer run,
 * so each run is one `set` of a contiguous block.
 */
function sliceValues(
  xv: Float32Array,
  region: { shape: readonly number[]; begin: number[]; size: number[] },
): Float32Array {
  const shape = [...region.shape];
  const begin = [...region.begin];
  const size = [...region.size];
  const out = allocFloat32(sizeOf(size));
  if (out.length === 0) return out;
  if (shape.length === 0) return xv.slice(0, 1);
  while (shape.length > 1 && size.at(-1) === shape.at(-1)) {
    const last = shape.pop()!;
    size.pop();
    begin.pop();
    shape[shape.length - 1] *= last;
    size[size.length - 1] *= last;
    begin[begin.length - 1] *= last;
  }
  const rank = shape.length;
  const strides = rowMajorStrides(shape);
  const run = size[rank - 1];
  const rows = out.length / run;
  const index = new Array(rank - 1).fill(0);
  let src = begin.reduce((offset, b, i) => offset + b * strides[i], 0);
  for (let r = 0, dst = 0; r < rows; r++, dst += run) {
    // A subarray per run costs more than copying a short run by hand (as in padV2 and concat).
    if (run < 64) { for (let i = 0; i < run; i++) out[dst + i] = xv[src + i]; }
    else out.set(xv.subarray(src, src + run), dst);
    for (let d = rank - 2; d >= 0; d--) {
      src += strides[d];
      if (++index[d] < size[d]) break;
      index[d] = 0;
      src -= strides[d] * size[d];
    }
  }
  return out;
}

function slice({ inputs, backend, attrs }: KernelArgs): TensorInfo | undefined {
  const x = inputs.x!;
  if (x.dtype !== "float32") return undefined;
  const [begin, size] = tf.slice_util.parseSliceParams(
    x as tf.Tensor,
    attrs?.begin as number[],
    attrs?.size as number[],
  );
  const out = sliceValues(f32(backend, x), { shape: x.shape, begin, size });
  return backend.makeTensorInfo(size, "float32", out);
}

function splitV({ inputs, backend, attrs }: KernelArgs): TensorInfo | undefined {
  const x = inputs.x!;
  if (x.dtype !== "float32") return undefined;
  const axis = tf.util.parseAxisParam(attrs?.axis as number, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, attrs?.numOrSizeSplits as number[] | number, axis);
  const xv = f32(backend, x);
  const begin = new Array(x.shape.length).fill(0);
  const outs = sizes.map((s) => {
    const size = [...x.shape];
    size[axis] = s;
    const info = backend.makeTensorInfo(size, "float32", sliceValues(xv, { shape: x.shape, begin: [...begin], size }));
    begin[axis] += s;
    return info;
  });
  // SplitV returns several tensors; the kernel registry accepts an array.
  return outs as unknown as TensorInfo;
}

function concat({ inputs, backend, attrs }: KernelArgs): TensorInfo | undefined {
  const list = Object.values(inputs) as TensorInfo[];
  if (list.length === 0 || list.some((t) => t.dtype !== "float32") || list[0].shape.length === 0) return undefined;
  const axis = tf.util.parseAxisParam(attrs?.axis as number, list[0].shape)[0];
  const shapes = list.map((t) => t.shape);
  tf.backend_util.assertParamsConsistent(shapes, axis);
  const outShape = tf.backend_util.computeOutShape(shapes, axis);
  const out = allocFloat32(sizeOf(outShape));
  if (out.length === 0) return backend.makeTensorInfo(outShape, "float32", out);
  // Seen as [outer, inner_i]: each output row is the inputs' rows side by side.
  const outer = sizeOf(outShape.slice(0, axis));
  const rowLength = out.length / outer;
  let offset = 0;
  for (const t of list) {
    const v = f32(backend, t);
    const inner = v.length / outer;
    for (let o = 0; o < outer; o++) {
      const src = o * inner;
      const dst = o * rowLength + offset;
      if (inner < 64) { for (let i = 0; i < inner; i++) out[dst + i] = v[src + i]; }
      else out.set(v.subarray(src, src + inner), dst);
    }
    offset += inner;
  }
  return backend.makeTensorInfo(outShape, "float32", out);
}

function gatherV2({ inputs, backend, attrs }: KernelArgs): TensorInfo | undefined {
  const x = inputs.x!;
  const indices = inputs.indices!;
  if (x.dtype !== "float32" || indices.dtype !== "int32" || Number(attrs?.batchDims ?? 0) !== 0) return undefined;
  const axis = tf.util.parseAxisParam(attrs?.axis as number, x.shape)[0];
  const dim = x.shape[axis];
  const ids = backend.data.get(indices.dataId)!.values as Int32Array;
  // An index out of range goes to the cpu kernel, which throws its own error.
  for (let j = 0; j < ids.length; j++) if (ids[j] < 0 || ids[j] >= dim) return undefined;
  const { outputShape } = tf.backend_util.segment_util.collectGatherOpShapeInfo(
    x as tf.Tensor,
    indices as tf.Tensor,
    axis,
    0,
  );
  const outer = sizeOf(x.shape.slice(0, axis));
  const slice = sizeOf(x.shape.slice(axis + 1));
  const xv = f32(backend, x);
  const out = allocFloat32(outer * ids.length * slice);
  let dst = 0;
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < ids.length; j++, dst += slice) {
      const src = (o * dim + ids[j]) * slice;
      for (let i = 0; i < slice; i++) out[dst + i] = xv[src + i];
    }
  }
  return backend.makeTensorInfo(outputShape, "float32", out);
}

/**
 * Broadcast of x to attrs.shape (same rank; each axis of x either equal or 1): Tile's values without its gradient.
 * The blas gradients of Sum and Mean use it in place of tfjs's product with a tensor of ones (lib/blas/fused.ts).
 */
export const BROADCAST = "AttnlabBroadcast";

/**
 * x repeated reps[d] times along each axis d, by output rows of the last axis: each row is the input row for the
 * output's leading index (modulo the input's shape) written reps[last] times over.
 */
function tileValues(xv: Float32Array, shape: readonly number[], reps: readonly number[]): Float32Array {
  const rank = shape.length;
  const outShape = shape.map((d, i) => d * reps[i]);
  const out = allocFloat32(sizeOf(outShape));
  if (out.length === 0) return out;
  if (rank === 0) return xv.slice(0, 1);
  const row = shape[rank - 1];
  const outRow = row * reps[rank - 1];
  const strides = rowMajorStrides(shape);
  const rows = out.length / outRow;
  // The odometer walks the output's leading axes; src follows the input row at each index modulo the input's shape.
  const index = new Array(rank - 1).fill(0);
  let src = 0;
  for (let r = 0, dst = 0; r < rows; r++, dst += outRow) {
    if (row === 1) {
      const v = xv[src];
      if (outRow < 64) { for (let i = 0; i < outRow; i++) out[dst + i] = v; }
      else out.fill(v, dst, dst + outRow);
    } else {
      for (let at = dst; at < dst + outRow; at += row) {
        if (row < 64) { for (let i = 0; i < row; i++) out[at + i] = xv[src + i]; }
        else out.set(xv.subarray(src, src + row), at);
      }
    }
    for (let d = rank - 2; d >= 0; d--) {
      const wrapped = (index[d] + 1) % shape[d] === 0;
      src += wrapped ? -(shape[d] - 1) * strides[d] : strides[d];
      if (++index[d] < outShape[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

function tile({ inputs, backend, attrs }: KernelArgs): TensorInfo | undefined {
  const x = inputs.x!;
  const reps = attrs?.reps as number[] | undefined;
  if (x.dtype !== "float32" || !Array.isArray(reps) || reps.length !== x.shape.length) return undefined;
  if (!reps.every((r) => Number.isInteger(r) && r >= 0)) return undefined;
  const out = tileValues(f32(backend, x), x.shape, reps);
  return backend.makeTensorInfo(x.shape.map((d, i) => d * reps[i]), "float32", out);
}

function broadcast({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const x = inputs.x!;
  const shape = attrs?.shape as number[];
  if (x.dtype !== "float32") throw new TypeError(`${BROADCAST}: x must be float32, got ${x.dtype}`);
  if (!Array.isArray(shape) || shape.length !== x.shape.length || x.shape.some((d, i) => d !== shape[i] && d !== 1)) {
    throw new RangeError(
      `${BROADCAST}: cannot broadcast [${x.shape}] to [${shape}]; each axis must be equal or 1, at the same rank`,
    );
  }
  const reps = shape.map((d, i) => (x.shape[i] === d ? 1 : d));
  return backend.makeTensorInfo([...shape], "float32", tileValues(f32(backend, x), x.shape, reps));
}

/**
 * The layout kernels, by kernel name.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { layoutKernels } from "./layout.ts";
 * console.log(Object.keys(layoutKernels()).includes(tf.Transpose)); // true
 * ```
 */
export function layoutKernels(): Record<string, Kernel> {
  return {
    [tf.Transpose]: withFallback(tf.Transpose, transpose),
    [tf.PadV2]: withFallback(tf.PadV2, padV2),
    [tf.GatherV2]: withFallback(tf.GatherV2, gatherV2),
    [tf.Slice]: withFallback(tf.Slice, slice),
    [tf.SplitV]: withFallback(tf.SplitV, splitV),
    [tf.Concat]: withFallback(tf.Concat, concat),
    [tf.Tile]: withFallback(tf.Tile, tile),
    [BROADCAST]: broadcast,
  };
}
