/**
 * Kernels of the `blas` backend computed by oneDNN (lib/blas/dnnl.ts) where it beats the typed-array loops: each
 * dispatches by size, running oneDNN from {@linkcode DNNL_MIN_ELEMENTS} output elements up and the JavaScript kernel
 * it replaces below that (where the cost of a call into oneDNN, 1–5 µs, exceeds the loop), for other dtypes, and
 * for layouts oneDNN has no optimised implementation of.
 *
 * - Softmax over the last axis (oneDNN's softmax), and Softmax's gradient (the fused kernel `AttnlabSoftmaxGrad` of
 *   fused.ts; oneDNN 2.6 has no vectorised softmax backward for AVX2, so: dy · y (binary), its row sums s (a
 *   matrix–vector product with ones, `dnnl_sgemm`), and (dy − s) · y (a binary op with a binary post-op));
 * - Exp, Sigmoid, Tanh, Elu and its gradient EluGrad, Sqrt, Square, Abs, Relu (oneDNN eltwise);
 * - Add, Sub, Multiply, RealDiv with broadcasting where oneDNN can: one operand of the output's shape and the other
 *   broadcast from it (swapped for Add and Multiply when the first is the broadcast one);
 * - Transpose (a oneDNN reorder);
 * - the fused silu(a) · b of fused.ts and its gradient (`AttnlabSiluGate`, `AttnlabSiluGateGrad`: sigmoid, then a
 *   binary product with a post-op product; the gradient with oneDNN's swish gradient);
 * - the fused elu(x) + 1 of fused.ts (`AttnlabEluPlusOne`): relu(x), x − relu(x) = min(x, 0), its exp, + relu(x); and
 *   its gradient `AttnlabEluPlusOneGrad`, min(y, 1) · dy (a binary min with a post-op product);
 * - the forward of fused_loss.ts's softmax cross-entropy (`AttnlabSoftmaxCrossEntropy`): oneDNN's softmax of each
 *   row, and each row's loss −log p[target] in a double from it; a row whose p[target] is below 1e-30 (a loss above
 *   69, where p's float32 rounding would show) sends the call to the JavaScript kernel, which works in doubles;
 * - Sum and Mean over trailing axes (row sums) or leading axes (column sums, as in a bias's gradient), as
 *   matrix–vector products with a vector of ones (`dnnl_sgemm`: oneDNN's reduction primitive is slower than the
 *   JavaScript loop on rows of 64 to 171);
 * - BatchMatMul ({@linkcode dnnlBatchMatMul}, which lib/blas/backend.ts registers in place of its per-matrix
 *   `cblas_sgemm` loop): one oneDNN matmul primitive for a whole batch of matrices, transposes as strides, batch
 *   broadcasting as oneDNN's, by the size rule {@linkcode DNNL_MATMUL_RULE}; within float32 rounding of OpenBLAS
 *   (sums in another order), not the same bits.
 *
 * **Not the same bits as the JavaScript kernels.** oneDNN computes in float32 with its own polynomial exp, tanh and
 * logistic and float32 sums in its own order, where the cpu kernels compute each element in doubles and round once.
 * Results agree within a few float32 units in the last place (tests/dnnl_test.ts states the tolerances; the
 * arithmetic ops, Sqrt, Square, Abs, Relu and Transpose are exact), and in special values: where oneDNN's vector code
 * differs from IEEE arithmetic on NaN or Infinity (its exp maps NaN to Infinity, its relu maps NaN to 0, its softmax
 * gives a row holding NaN or +Infinity 0 and NaN where the cpu kernel gives NaN throughout), the kernel first sums
 * its input with oneDNN's reduction (a NaN or infinite sum reveals such input; about 0.15 ns an element) and hands
 * those calls to the JavaScript kernel. Log, Maximum, Minimum and the Max/Min reductions are left to JavaScript:
 * oneDNN's log is up to 2 · 10⁻⁶ off near 1, and its max and min drop NaN operands.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { cpuKernel, f32, type FastPath, type Kernel, type KernelArgs, reductionLayout, sizeOf } from "./_util.ts";
import type { DnnlBinary, DnnlEltwise, DnnlLibrary } from "./dnnl.ts";
import { fusedAttentionKernels, SOFTMAX_ATTENTION, SOFTMAX_ATTENTION_GRAD } from "./fused_attention.ts";
import { fusedCausalKernels } from "./fused_causal.ts";
import { ELU_PLUS_ONE, ELU_PLUS_ONE_GRAD, RELU_GRAD, SILU_GATE, SILU_GATE_GRAD, SOFTMAX_GRAD } from "./fused.ts";
import { SOFTMAX_CROSS_ENTROPY } from "./fused_loss.ts";
import { allocFloat32 } from "./pool.ts";
import type { Sgemm } from "./sgemm.ts";

/**
 * The size, in elements (of the largest operand), from which each kernel calls oneDNN; smaller calls run the
 * JavaScript kernel. Measured on the 2-core AVX2 machine with oneDNN on one thread (scratch benchmark: the kernels
 * called in turn on the same inputs, the fastest of 7 rounds each): between the last power of 4 where the loop won
 * and the first where oneDNN did, e.g. Exp 0.8× at 256 elements and 2.0× at 1024, Add 1.0× at 1024 and 2.2× at 4096.
 */
export const DNNL_MIN_ELEMENTS: Readonly<Record<string, number>> = Object.freeze({
  [tf.Softmax]: 256,
  [SOFTMAX_GRAD]: 8192,
  [tf.Exp]: 512,
  [tf.Sigmoid]: 256,
  [tf.Tanh]: 256,
  [tf.Elu]: 256,
  [tf.EluGrad]: 2048,
  [tf.Sqrt]: 1024,
  [tf.Square]: 2048,
  [tf.Abs]: 2048,
  [tf.Relu]: 4096,
  [tf.Add]: 2048,
  [tf.Sub]: 2048,
  [tf.Multiply]: 2048,
  [tf.RealDiv]: 2048,
  [tf.Sum]: 8192,
  [tf.Mean]: 8192,
  [tf.Transpose]: 4096,
  [SILU_GATE]: 1024,
  [SILU_GATE_GRAD]: 4096,
  [SOFTMAX_CROSS_ENTROPY]: 4096,
  [ELU_PLUS_ONE]: 2048,
  [ELU_PLUS_ONE_GRAD]: 2048,
  [RELU_GRAD]: 4096,
  // The size of one block of scores ([block, keys]): softmax attention's kernels themselves always run.
  [SOFTMAX_ATTENTION]: 1024,
  [SOFTMAX_ATTENTION_GRAD]: 1024,
});

/** A fresh scratch array of at least n floats, rounded up to a power of two so that growing is rare. */
function grown(n: number): Float32Array<ArrayBuffer> {
  return new Float32Array(2 ** Math.ceil(Math.log2(n)));
}

// Softmax and its gradient run in blocks of whole rows of about this many elements (512 KiB of float32), so that
// each block's second and third passes (after the guard's sum, after dy · y) find it in the cache: measured on
// [8192, 128] with cold caches, 1.6–1.9 ms blocked against 2.2 ms in one piece (the loops: 2.2–2.5 ms).
const BLOCK_ELEMENTS = 131072;

/** [start, end) element ranges of blocks of whole rows of length n. */
function rowBlocks(rows: number, n: number): [number, number][] {
  const per = Math.max(1, Math.floor(BLOCK_ELEMENTS / n));
  const blocks: [number, number][] = [];
  for (let r = 0; r < rows; r += per) blocks.push([r * n, Math.min(rows, r + per) * n]);
  return blocks;
}

/** How an eltwise kernel maps to oneDNN: the algorithm, α, and whether NaN input must go to JavaScript. */
interface EltwiseSpec {
  op: DnnlEltwise;
  alpha?: number;
  /** "nan": a NaN input element gives the wrong result in oneDNN; "finite": any non-finite one does. */
  guard?: "nan" | "finite";
}

const ELTWISE: Record<string, EltwiseSpec> = {
  // exp(NaN) is +Infinity in oneDNN's vector exp.
  [tf.Exp]: { op: "exp", guard: "nan" },
  [tf.Sigmoid]: { op: "logistic" },
  [tf.Tanh]: { op: "tanh" },
  [tf.Elu]: { op: "elu", alpha: 1 },
  [tf.Sqrt]: { op: "sqrt" },
  [tf.Square]: { op: "square" },
  [tf.Abs]: { op: "abs" },
  // relu(NaN) is 0 in oneDNN (a vector max with 0).
  [tf.Relu]: { op: "relu", guard: "nan" },
};

const BINARY: Record<string, { op: DnnlBinary; commutes: boolean }> = {
  [tf.Add]: { op: "add", commutes: true },
  [tf.Sub]: { op: "sub", commutes: false },
  [tf.Multiply]: { op: "mul", commutes: true },
  [tf.RealDiv]: { op: "div", commutes: false },
};

const REDUCTION: Record<string, "sum" | "mean"> = { [tf.Sum]: "sum", [tf.Mean]: "mean" };

/**
 * The oneDNN form of a broadcast binary op: `full` is the operand with the output's shape, `other` the broadcast one,
 * both with their dims merged where they broadcast alike; undefined when neither operand has the output's shape, or
 * only b has it and the op does not commute.
 *
 * @example
 * ```ts
 * import { dnnlBroadcast } from "./dnnl_kernels.ts";
 * console.log(JSON.stringify(dnnlBroadcast([16, 4, 128, 128], [16, 1, 1, 128], { commutes: false })));
 * // {"swap":false,"outShape":[16,4,128,128],"fullDims":[16,512,128],"otherDims":[16,1,128]}
 * ```
 */
export function dnnlBroadcast(
  aShape: readonly number[],
  bShape: readonly number[],
  options: { commutes: boolean },
): { swap: boolean; outShape: number[]; fullDims: number[]; otherDims: number[] } | undefined {
  if (options === null || typeof options !== "object" || typeof options.commutes !== "boolean") {
    throw new TypeError("dnnlBroadcast: options must be { commutes: boolean } (whether a ∘ b = b ∘ a)");
  }
  const { commutes } = options;
  const outShape = tf.backend_util.assertAndGetBroadcastShape([...aShape], [...bShape]);
  const rank = outShape.length;
  const pad = (shape: readonly number[]) => [...new Array(rank - shape.length).fill(1), ...shape];
  const a = pad(aShape);
  const b = pad(bShape);
  const aFull = a.every((d, i) => d === outShape[i]);
  const swap = !aFull;
  if (swap && !(commutes && b.every((d, i) => d === outShape[i]))) return undefined;
  const other = swap ? a : b;
  const fullDims: number[] = [];
  const otherDims: number[] = [];
  let last: boolean | undefined;
  for (let i = 0; i < rank; i++) {
    const d = outShape[i];
    if (d === 1) continue;
    const broadcast = other[i] === 1;
    if (broadcast === last) {
      fullDims[fullDims.length - 1] *= d;
      if (!broadcast) otherDims[otherDims.length - 1] *= d;
    } else {
      fullDims.push(d);
      otherDims.push(broadcast ? 1 : d);
      last = broadcast;
    }
  }
  if (fullDims.length === 0) {
    fullDims.push(1);
    otherDims.push(1);
  }
  return { swap, outShape, fullDims, otherDims };
}

/**
 * The oneDNN-backed kernels, by kernel name, each falling back to the kernel of that name in `js` (the blas
 * backend's JavaScript kernels; the cpu kernel where `js` has none) below its size threshold
 * ({@linkcode DNNL_MIN_ELEMENTS}, or `options.minElements` by kernel name) and wherever oneDNN declines.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { dnnl } from "./dnnl.ts";
 * import { dnnlKernels } from "./dnnl_kernels.ts";
 * import { reductionKernels } from "./reduce.ts";
 * const lib = dnnl();
 * console.log(lib === undefined || tf.Softmax in dnnlKernels(lib, reductionKernels())); // true
 * ```
 */
export function dnnlKernels(
  lib: DnnlLibrary,
  js: Record<string, Kernel>,
  options: { minElements?: Readonly<Record<string, number>> } = {},
): Record<string, Kernel> {
  if (lib === null || typeof lib !== "object" || typeof lib.softmax !== "function") {
    throw new TypeError("dnnlKernels: lib must be a DnnlLibrary (from openDnnl() or dnnl())");
  }
  if (js === null || typeof js !== "object") {
    throw new TypeError("dnnlKernels: js must be an object of kernels by name");
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError("dnnlKernels: options must be { minElements? }");
  }
  const thresholds = { ...DNNL_MIN_ELEMENTS, ...options.minElements };
  for (const [name, value] of Object.entries(thresholds)) {
    if (!Number.isInteger(value) || value < 0) {
      throw new RangeError(`dnnlKernels: options.minElements.${name} must be an integer >= 0, got ${value}`);
    }
  }
  let ones = new Float32Array(32).fill(1);
  /** A vector of at least n ones, kept between calls. */
  const onesOf = (n: number): Float32Array => {
    if (ones.length < n) ones = grown(n).fill(1);
    return ones;
  };
  /** Σ x over rows [rows, n] into out [rows] (times alpha): a matrix–vector product with ones. */
  const rowSums = (x: Float32Array, out: Float32Array, dims: { rows: number; n: number; alpha?: number }) =>
    lib.sgemm({
      transA: false,
      transB: false,
      m: dims.rows,
      n: 1,
      k: dims.n,
      a: x,
      lda: dims.n,
      b: onesOf(dims.n),
      ldb: 1,
      c: out,
      ldc: 1,
      alpha: dims.alpha,
    });
  const probe = new Float32Array(1);
  // Softmax's gradient's row sums, kept between calls (grown to a power of two as needed).
  let sums = new Float32Array(32);
  /** Whether x has no NaN ("nan") or no NaN and no infinity ("finite"), as far as its sum tells. */
  const passes = (x: Float32Array, guard: "nan" | "finite"): boolean => {
    // oneDNN's reduction, not a one-row matrix–vector product: dnnl_sgemm takes a scalar path for a single row.
    if (!lib.reduction("sum", { x, xDims: [x.length], out: probe, outDims: [1] })) return false;
    const s = probe[0];
    return guard === "nan" ? s === s : Number.isFinite(s);
  };
  const kernel = (name: string, fast: FastPath): Kernel => {
    const fallback = js[name] ?? (tf.getKernel(name, "cpu") ? cpuKernel(name) : undefined);
    const slow: Kernel = (args) => {
      if (!fallback) throw new Error(`blas backend: ${name} needs its JavaScript kernel for this call; none was given`);
      return fallback(args);
    };
    // f32 gives oneDNN a float32 copy of a tensor cast from int32 or bool (whose integer array tfjs keeps).
    return (args) => fast(args) ?? slow(args);
  };
  const kernels: Record<string, Kernel> = {};

  for (const [name, spec] of Object.entries(ELTWISE)) {
    const min = thresholds[name];
    kernels[name] = kernel(name, ({ inputs, backend }) => {
      const x = inputs.x!;
      if (x.dtype !== "float32" || sizeOf(x.shape) < min) return undefined;
      const xv = f32(backend, x);
      if (spec.guard && !passes(xv, spec.guard)) return undefined;
      const out = allocFloat32(xv.length);
      if (!lib.eltwise(spec.op, { x: xv, out, alpha: spec.alpha })) return undefined;
      return backend.makeTensorInfo(x.shape, "float32", out);
    });
  }

  kernels[tf.EluGrad] = kernel(tf.EluGrad, ({ inputs, backend }) => {
    const dy = inputs.dy!;
    const y = inputs.y!;
    const size = sizeOf(y.shape);
    if (dy.dtype !== "float32" || y.dtype !== "float32" || size < thresholds[tf.EluGrad]) return undefined;
    if (sizeOf(dy.shape) !== size) return undefined;
    const dx = allocFloat32(size);
    // tfjs: dy where y >= 0, else dy · (y + 1); oneDNN's elu gradient from its output with α = 1 is the same.
    if (!lib.eltwiseBackward("elu_use_dst_for_bwd", { dy: f32(backend, dy), data: f32(backend, y), dx, alpha: 1 })) {
      return undefined;
    }
    return backend.makeTensorInfo(y.shape, "float32", dx);
  });

  kernels[RELU_GRAD] = kernel(RELU_GRAD, ({ inputs, backend }) => {
    const dy = inputs.dy!;
    const x = inputs.x!;
    const size = sizeOf(x.shape);
    if (dy.dtype !== "float32" || x.dtype !== "float32" || size < thresholds[RELU_GRAD]) return undefined;
    if (sizeOf(dy.shape) !== size) return undefined;
    const xv = f32(backend, x);
    const dyv = f32(backend, dy);
    // tfjs: dy · step(x), so NaN where x is NaN, and NaN where dy is ±Inf or NaN and x <= 0. oneDNN's relu gradient
    // (x > 0 ? dy : 0) gives 0 there: such input goes to the loop.
    if (!passes(xv, "nan") || !passes(dyv, "finite")) return undefined;
    const dx = allocFloat32(size);
    if (!lib.eltwiseBackward("relu", { dy: dyv, data: xv, dx, alpha: 0 })) return undefined;
    return backend.makeTensorInfo(x.shape, "float32", dx);
  });

  for (const [name, { op, commutes }] of Object.entries(BINARY)) {
    const min = thresholds[name];
    kernels[name] = kernel(name, ({ inputs, backend }) => {
      const a = inputs.a!;
      const b = inputs.b!;
      if (a.dtype !== "float32" || b.dtype !== "float32") return undefined;
      if (Math.max(sizeOf(a.shape), sizeOf(b.shape)) < min) return undefined;
      const plan = dnnlBroadcast(a.shape, b.shape, { commutes });
      if (!plan || plan.fullDims.length > 12) return undefined;
      const [full, other] = plan.swap ? [b, a] : [a, b];
      const out = allocFloat32(sizeOf(plan.outShape));
      const done = lib.binary(op, {
        a: f32(backend, full),
        aDims: plan.fullDims,
        b: f32(backend, other),
        bDims: plan.otherDims,
        out,
      });
      return done ? backend.makeTensorInfo(plan.outShape, "float32", out) : undefined;
    });
  }

  for (const [name, kind] of Object.entries(REDUCTION)) {
    const min = thresholds[name];
    kernels[name] = kernel(name, ({ inputs, backend, attrs }) => {
      const x = inputs.x!;
      const size = sizeOf(x.shape);
      if (x.dtype !== "float32" || size < min) return undefined;
      const axes = tf.util.parseAxisParam(attrs?.axis as number | number[], x.shape);
      const layout = reductionLayout(x.shape, axes);
      // Rows summed side by side (inner = 1), or columns of one block (outer = 1): one matrix–vector product.
      if (!layout || layout.reduce === 1 || (layout.inner !== 1 && layout.outer !== 1)) return undefined;
      const { outer, reduce, inner } = layout;
      const out = allocFloat32(outer * inner);
      const xv = f32(backend, x);
      const alpha = kind === "mean" ? 1 / reduce : 1;
      if (inner === 1 && outer < 4) {
        // A few long rows: oneDNN's reduction (dnnl_sgemm is slow with one row, the reduction fast on long ones).
        if (!lib.reduction(kind, { x: xv, xDims: [outer, reduce], out, outDims: [outer, 1] })) return undefined;
      } else if (inner === 1) {
        rowSums(xv, out, { rows: outer, n: reduce, alpha });
      } else {
        const b = onesOf(reduce);
        lib.sgemm({
          transA: true,
          transB: false,
          m: inner,
          n: 1,
          k: reduce,
          a: xv,
          lda: inner,
          b,
          ldb: 1,
          c: out,
          ldc: 1,
          alpha,
        });
      }
      const [outShape] = tf.backend_util.computeOutAndReduceShapes(x.shape, axes);
      const shape = attrs?.keepDims ? tf.backend_util.expandShapeToKeepDim(outShape, axes) : outShape;
      return backend.makeTensorInfo(shape, "float32", out);
    });
  }

  kernels[tf.Softmax] = kernel(tf.Softmax, ({ inputs, backend, attrs }) => {
    const logits = inputs.logits!;
    const rank = logits.shape.length;
    const dim = attrs?.dim as number;
    const size = sizeOf(logits.shape);
    if (logits.dtype !== "float32" || rank === 0 || (dim !== -1 && dim !== rank - 1)) return undefined;
    if (size < thresholds[tf.Softmax]) return undefined;
    const n = logits.shape[rank - 1];
    const x = f32(backend, logits);
    const out = allocFloat32(size);
    for (const [start, end] of rowBlocks(size / n, n)) {
      const xs = x.subarray(start, end);
      // A row holding NaN or +Infinity comes out of oneDNN as 0 and NaN, not NaN throughout as in the cpu kernel.
      if (!passes(xs, "finite")) return undefined;
      if (!lib.softmax({ x: xs, out: out.subarray(start, end) }, { rows: (end - start) / n, n })) return undefined;
    }
    return backend.makeTensorInfo(logits.shape, "float32", out);
  });

  // relu(x) for the elu + 1 kernel, kept between calls.
  let reluScratch = new Float32Array(0);
  kernels[ELU_PLUS_ONE] = kernel(ELU_PLUS_ONE, ({ inputs, backend }) => {
    const x = inputs.x!;
    const n = sizeOf(x.shape);
    if (x.dtype !== "float32" || n < thresholds[ELU_PLUS_ONE]) return undefined;
    const xv = f32(backend, x);
    // oneDNN's exp maps NaN to +Infinity: such input goes to the loop.
    if (!passes(xv, "nan")) return undefined;
    const out = allocFloat32(n);
    if (reluScratch.length < n) reluScratch = grown(n);
    const r = reluScratch.subarray(0, n);
    const dims = [n];
    // relu(x); min(x, 0) = x − relu(x) (exact: x − x or x − 0); e^min(x, 0); + relu(x), rounded once. Four oneDNN
    // passes: the loops' min and add cost about 8 ns an element on features whose signs are random.
    const done = lib.eltwise("relu", { x: xv, out: r }) &&
      lib.binary("sub", { a: xv, aDims: dims, b: r, bDims: dims, out }) &&
      lib.eltwise("exp", { x: out, out }) &&
      lib.binary("add", { a: out, aDims: dims, b: r, bDims: dims, out });
    if (!done) return undefined;
    return backend.makeTensorInfo(x.shape, "float32", out);
  });

  const one = new Float32Array([1]);
  kernels[ELU_PLUS_ONE_GRAD] = kernel(ELU_PLUS_ONE_GRAD, ({ inputs, backend }) => {
    const y = inputs.y!;
    const dy = inputs.dy!;
    const n = sizeOf(y.shape);
    if (y.dtype !== "float32" || dy.dtype !== "float32" || n < thresholds[ELU_PLUS_ONE_GRAD]) return undefined;
    const yv = f32(backend, y);
    // oneDNN's min drops a NaN operand (min(NaN, 1) = 1): such input goes to the loop.
    if (!passes(yv, "nan")) return undefined;
    const out = allocFloat32(n);
    const dims = [n];
    const done = lib.binary("min", {
      a: yv,
      aDims: dims,
      b: one,
      bDims: [1],
      out,
      then: { op: "mul", c: f32(backend, dy), cDims: dims },
    });
    return done ? backend.makeTensorInfo(y.shape, "float32", out) : undefined;
  });

  // The softmax of a cross-entropy call whose caller keeps no probabilities, kept between calls.
  let scratchProbs = new Float32Array(0);
  kernels[SOFTMAX_CROSS_ENTROPY] = kernel(
    SOFTMAX_CROSS_ENTROPY,
    (({ inputs, backend, attrs }: KernelArgs) => {
      const logits = inputs.logits!;
      const size = sizeOf(logits.shape);
      if (logits.dtype !== "float32" || size < thresholds[SOFTMAX_CROSS_ENTROPY]) return undefined;
      if (inputs.weights && inputs.weights.dtype !== "float32") return undefined;
      const [rows, classes] = logits.shape;
      const x = f32(backend, logits);
      const targets = backend.data.get(inputs.targets!.dataId)!.values as Int32Array;
      const weights = inputs.weights ? f32(backend, inputs.weights) : null;
      const keep = Boolean(attrs?.probs);
      if (!keep && scratchProbs.length < size) scratchProbs = grown(size);
      const probs = keep ? allocFloat32(size) : scratchProbs.subarray(0, size);
      for (const [start, end] of rowBlocks(rows, classes)) {
        const xs = x.subarray(start, end);
        // NaN or ±Infinity in the logits: the JavaScript kernel gives what the composite gives.
        if (!passes(xs, "finite")) return undefined;
        if (!lib.softmax({ x: xs, out: probs.subarray(start, end) }, { rows: (end - start) / classes, n: classes })) {
          return undefined;
        }
      }
      const loss = allocFloat32(rows);
      for (let r = 0; r < rows; r++) {
        const weight = weights === null ? 1 : weights[r];
        const t = targets[r];
        // A target out of range: the JavaScript kernel throws the RangeError that names it.
        if (!(t >= 0 && t < classes)) return undefined;
        if (weight === 0) {
          // Not read by the gradient kernel; zeroed as the JavaScript kernel does.
          loss[r] = 0;
          probs.fill(0, r * classes, (r + 1) * classes);
          continue;
        }
        const p = probs[r * classes + t];
        // −log p is off by p's relative error (oneDNN's softmax: within 2e-6), but a p near float32's underflow has
        // lost digits: such rows (and so the call) go to the double-precision loop.
        if (!(p >= 1e-30)) return undefined;
        loss[r] = weight * -Math.log(p);
      }
      const out = [backend.makeTensorInfo([rows], "float32", loss)];
      if (keep) out.push(backend.makeTensorInfo([rows, classes], "float32", probs));
      return out;
    }) as unknown as FastPath,
  );

  kernels[SOFTMAX_GRAD] = kernel(SOFTMAX_GRAD, ({ inputs, backend }) => {
    const y = inputs.y!;
    const dy = inputs.dy!;
    const size = sizeOf(y.shape);
    if (y.dtype !== "float32" || dy.dtype !== "float32" || size < thresholds[SOFTMAX_GRAD]) return undefined;
    if (!tf.util.arraysEqual(y.shape, dy.shape)) return undefined;
    const n = y.shape[y.shape.length - 1];
    const yAll = f32(backend, y);
    const dyAll = f32(backend, dy);
    const dxAll = allocFloat32(size);
    for (const [start, end] of rowBlocks(size / n, n)) {
      const rows = (end - start) / n;
      const [yv, dyv, dx] = [yAll, dyAll, dxAll].map((v) => v.subarray(start, end));
      if (sums.length < rows) sums = grown(rows);
      const s = sums.subarray(0, rows);
      const dims = [rows, n];
      // dx = (dy − s) · y with s = Σ dy · y over each row: dy · y first written into dx, its row sums by a
      // matrix–vector product, then one binary op with a binary post-op.
      if (!lib.binary("mul", { a: dyv, aDims: dims, b: yv, bDims: dims, out: dx })) return undefined;
      rowSums(dx, s, { rows, n });
      const then = { op: "mul" as const, c: yv, cDims: dims };
      if (!lib.binary("sub", { a: dyv, aDims: dims, b: s, bDims: [rows, 1], out: dx, then })) return undefined;
    }
    return backend.makeTensorInfo(y.shape, "float32", dxAll);
  });

  kernels[tf.Transpose] = kernel(tf.Transpose, ({ inputs, backend, attrs }) => {
    const x = inputs.x!;
    const size = sizeOf(x.shape);
    if (x.dtype !== "float32" || size < thresholds[tf.Transpose]) return undefined;
    const c = collapsedPermutation(x.shape, attrs?.perm as number[]);
    // Nothing moves (a copy) or more dims than oneDNN takes: the loops.
    if (c.shape.length < 2 || c.shape.length > 12) return undefined;
    const out = allocFloat32(size);
    if (!lib.transpose({ x: f32(backend, x), out }, c)) return undefined;
    const perm = attrs?.perm as number[];
    return backend.makeTensorInfo(perm.map((axis) => x.shape[axis]), "float32", out);
  });

  kernels[SILU_GATE] = kernel(
    SILU_GATE,
    (({ inputs, backend }: KernelArgs) => {
      const a = inputs.a!;
      const b = inputs.b!;
      const n = sizeOf(a.shape);
      if (a.dtype !== "float32" || b.dtype !== "float32" || n < thresholds[SILU_GATE] || sizeOf(b.shape) !== n) {
        return undefined;
      }
      const av = f32(backend, a);
      const s = allocFloat32(n);
      const out = allocFloat32(n);
      // s = sigmoid(a); out = (a · s) · b, one binary op with a binary post-op.
      const done = lib.eltwise("logistic", { x: av, out: s }) &&
        lib.binary("mul", {
          a: av,
          aDims: [n],
          b: s,
          bDims: [n],
          out,
          then: { op: "mul", c: f32(backend, b), cDims: [n] },
        });
      if (!done) return undefined;
      return [backend.makeTensorInfo(a.shape, "float32", out), backend.makeTensorInfo(a.shape, "float32", s)];
    }) as unknown as FastPath,
  );

  kernels[SILU_GATE_GRAD] = kernel(
    SILU_GATE_GRAD,
    (({ inputs, backend }: KernelArgs) => {
      const { dy, a, b, s } = inputs;
      const n = sizeOf(a!.shape);
      if (
        [dy, a, b, s].some((t) => t!.dtype !== "float32" || sizeOf(t!.shape) !== n) || n < thresholds[SILU_GATE_GRAD]
      ) {
        return undefined;
      }
      const av = f32(backend, a!);
      const dyv = f32(backend, dy!);
      const da = allocFloat32(n);
      const db = allocFloat32(n);
      const dims = [n];
      // da = (dy · b) · silu′(a), silu′(a) = s + a · s · (1 − s) (oneDNN's swish gradient with α = 1, in place);
      // db = (a · s) · dy.
      const done = lib.binary("mul", { a: dyv, aDims: dims, b: f32(backend, b!), bDims: dims, out: da }) &&
        lib.eltwiseBackward("swish", { dy: da, data: av, dx: da, alpha: 1 }) &&
        lib.binary("mul", {
          a: av,
          aDims: dims,
          b: f32(backend, s!),
          bDims: dims,
          out: db,
          then: { op: "mul", c: dyv, cDims: dims },
        });
      if (!done) return undefined;
      return [backend.makeTensorInfo(a!.shape, "float32", da), backend.makeTensorInfo(a!.shape, "float32", db)];
    }) as unknown as FastPath,
  );

  // Softmax attention's blocks on oneDNN's row softmax and its gradient (in place, as the primitives allow) and its
  // sgemm: the same blocks and products as the loops' kernels; a block below the threshold keeps the loops' softmax.
  const rowsOf = (name: string, n: number, size: number) => size >= thresholds[name] && n > 0 ? size / n : 0;
  const dnnlSgemm: Sgemm = (args) => lib.sgemm(args);
  Object.assign(
    kernels,
    fusedAttentionKernels({
      forward: (x, out, n) => {
        const rows = rowsOf(SOFTMAX_ATTENTION, n, x.length);
        return rows > 0 && lib.softmax({ x, out }, { rows, n });
      },
      backward: (dy, y, dx, n) => {
        const rows = rowsOf(SOFTMAX_ATTENTION_GRAD, n, y.length);
        return rows > 0 && lib.softmaxBackward({ dy, y, dx }, { rows, n });
      },
    }, { sgemm: dnnlSgemm }),
  );
  // The fused causal products on oneDNN's sgemm: the same kernels, their many small products faster (fused_causal.ts).
  Object.assign(kernels, fusedCausalKernels({ sgemm: dnnlSgemm }));
  return kernels;
}

/**
 * A transpose with size-1 axes dropped and runs of input axes that stay together in order merged: the smallest
 * shape and permutation that move the same data.
 *
 * @example
 * ```ts
 * import { collapsedPermutation } from "./dnnl_kernels.ts";
 * console.log(JSON.stringify(collapsedPermutation([16, 128, 4, 16], [0, 2, 1, 3])));
 * // {"shape":[16,128,4,16],"perm":[0,2,1,3]}
 * console.log(JSON.stringify(collapsedPermutation([2, 1, 3, 4, 5], [0, 3, 4, 1, 2])));
 * // {"shape":[2,3,20],"perm":[0,2,1]}
 * console.log(JSON.stringify(collapsedPermutation([2, 1, 3], [1, 0, 2])));
 * // {"shape":[6],"perm":[0]}
 * ```
 */
export function collapsedPermutation(
  shape: readonly number[],
  perm: readonly number[],
): { shape: number[]; perm: number[] } {
  if (!Array.isArray(perm) || perm.length !== shape.length) {
    throw new RangeError(`collapsedPermutation: perm must list each of the ${shape.length} axes once, got [${perm}]`);
  }
  // Size-1 axes hold no elements: drop them, and number the rest in input order.
  const inputAxes = shape.map((_, axis) => axis).filter((axis) => shape[axis] !== 1);
  const sizes = inputAxes.map((axis) => shape[axis]);
  const kept = perm.filter((axis) => shape[axis] !== 1).map((axis) => inputAxes.indexOf(axis));
  // Runs of output axes whose input axes are consecutive: each run is one input block.
  const runs: number[][] = [];
  for (const axis of kept) {
    const last = runs.at(-1);
    if (last && axis === last[last.length - 1] + 1) last.push(axis);
    else runs.push([axis]);
  }
  // Input order of the blocks: by their first axis.
  const byInput = [...runs].sort((p, q) => p[0] - q[0]);
  return {
    shape: byInput.map((run) => run.reduce((size, axis) => size * sizes[axis], 1)),
    perm: runs.map((run) => byInput.indexOf(run)),
  };
}

/** The kernel names {@linkcode dnnlKernels} covers. */
export const DNNL_KERNEL_NAMES: readonly string[] = Object.freeze(Object.keys(DNNL_MIN_ELEMENTS));

/**
 * A batched matmul as oneDNN takes it ({@linkcode DnnlMatMulDims}), with tfjs's output shape: from tfjs's
 * BatchMatMul operands a [...batchA, rows, cols] and b [...batchB, rows, cols] (op(A) [..., m, k], op(B) [..., k,
 * n]).
 */
export interface MatMulLayout {
  /** tfjs's output shape: [...broadcast batch, m, n]. */
  outShape: number[];
  /**
   * The batch dims that oneDNN sees, one rank for a and b: the output's size-1 dims dropped, and neighbours that
   * broadcast alike merged (a dim is either the output's or 1, where that operand is broadcast).
   */
  aBatch: number[];
  bBatch: number[];
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
}

/**
 * The oneDNN layout of tfjs's BatchMatMul on operands of shapes `aShape` and `bShape` (rank ≥ 2 each). Where b
 * holds one matrix for every matrix of a and A is not transposed, a's stacked matrices are one (batch · m) × k
 * matrix: one product, no batch. Throws a RangeError when the inner dims differ or the batch dims do not broadcast.
 *
 * @example
 * ```ts
 * import { matMulLayout } from "./dnnl_kernels.ts";
 * // Attention scores: [16, 4, 128, 16] · [16, 4, 128, 16]ᵀ, 64 matrices of 128 × 128.
 * console.log(JSON.stringify(matMulLayout([16, 4, 128, 16], [16, 4, 128, 16], { transB: true })));
 * // {"outShape":[16,4,128,128],"aBatch":[64],"bBatch":[64],"m":128,"n":128,"k":16,"transA":false,"transB":true}
 * // A dense layer, [16, 128, 64] · [64, 171]: one 2048 × 64 by 64 × 171 product.
 * console.log(JSON.stringify(matMulLayout([16, 128, 64], [64, 171], {})));
 * // {"outShape":[16,128,171],"aBatch":[],"bBatch":[],"m":2048,"n":171,"k":64,"transA":false,"transB":false}
 * console.log(matMulLayout([2, 1, 5, 3], [4, 5, 7], { transA: true }).aBatch); // [ 2, 1 ]
 * ```
 */
export function matMulLayout(
  aShape: readonly number[],
  bShape: readonly number[],
  options: { transA?: boolean; transB?: boolean },
): MatMulLayout {
  if (options === null || typeof options !== "object") {
    throw new TypeError("matMulLayout: options must be { transA?, transB? } (booleans)");
  }
  if (!Array.isArray(aShape) || !Array.isArray(bShape) || aShape.length < 2 || bShape.length < 2) {
    throw new RangeError(`matMulLayout: aShape and bShape must have rank 2 or more, got [${aShape}] and [${bShape}]`);
  }
  const transA = Boolean(options.transA);
  const transB = Boolean(options.transB);
  const ra = aShape.length;
  const rb = bShape.length;
  let m = transA ? aShape[ra - 1] : aShape[ra - 2];
  const k = transA ? aShape[ra - 2] : aShape[ra - 1];
  const kb = transB ? bShape[rb - 1] : bShape[rb - 2];
  const n = transB ? bShape[rb - 2] : bShape[rb - 1];
  if (k !== kb) {
    throw new RangeError(
      `matMulLayout: inner dims ${k} (of a [${aShape}], transA ${transA}) and ${kb} (of b [${bShape}], transB ` +
        `${transB}) must match`,
    );
  }
  const batchA = aShape.slice(0, -2);
  const batchB = bShape.slice(0, -2);
  const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(batchA, batchB);
  const rank = outBatch.length;
  const pad = (shape: readonly number[]) => [...new Array(rank - shape.length).fill(1), ...shape];
  const pa = pad(batchA);
  const pb = pad(batchB);
  let aBatch: number[] = [];
  let bBatch: number[] = [];
  let last = "";
  for (let i = 0; i < rank; i++) {
    const d = outBatch[i];
    if (d === 1) continue;
    // Which operands have this dim ("ab": both; "a" or "b": the other is broadcast along it).
    const pattern = (pa[i] === 1 ? "" : "a") + (pb[i] === 1 ? "" : "b");
    if (pattern === last) {
      if (pattern.includes("a")) aBatch[aBatch.length - 1] *= d;
      if (pattern.includes("b")) bBatch[bBatch.length - 1] *= d;
    } else {
      aBatch.push(pa[i] === 1 ? 1 : d);
      bBatch.push(pb[i] === 1 ? 1 : d);
      last = pattern;
    }
  }
  if (!transA && bBatch.every((d) => d === 1)) {
    // Every A matrix meets the one B: rows of a stacked matrix.
    m *= aBatch.reduce((x, y) => x * y, 1);
    aBatch = [];
    bBatch = [];
  }
  return {
    outShape: [...outBatch, transA ? aShape[ra - 1] : aShape[ra - 2], n],
    aBatch,
    bBatch,
    m,
    n,
    k,
    transA,
    transB,
  };
}

/** The thresholds of {@linkcode prefersDnnlMatMul}, in FLOPs (2 m n k a matrix, times the batch for a call). */
export interface DnnlMatMulRule {
  /** oneDNN from this many FLOPs a call. */
  minFlops: number;
  /** ... and from this many a matrix. */
  minMatrixFlops: number;
  /** Where OpenBLAS has more threads than oneDNN: OpenBLAS from this many FLOPs a call ... */
  blasFromFlops: number;
  /** ... and this many a matrix (a batch of small matrices stays in oneDNN). */
  blasFromMatrixFlops: number;
}

/**
 * When {@linkcode dnnlBatchMatMul} calls oneDNN's matmul rather than `cblas_sgemm` once per matrix, by FLOPs
 * (2 m n k per matrix, times the output's batch for the call). Measured 2026-12-01 on the 2-core AVX2 machine (AMD
 * EPYC) beside other work, by scratch benchmarks: per call, both called in turn on the same arrays, 9 interleaved
 * rounds, the median; each range spans runs with OpenBLAS at its default (two threads) and at one
 * (`OPENBLAS_NUM_THREADS=1`, as the training workers run), at load averages 1.3–2.1; oneDNN at one thread (dnnl.ts).
 *
 * - `minFlops`, `minMatrixFlops`: oneDNN from 2¹⁹ FLOPs a call and 2¹³ a matrix (16 × 16 × 16). A oneDNN call costs
 *   about 5 µs (three data-handle updates, the execute and the wait: 5 FFI calls) against 1–1.5 µs for one sgemm, and
 *   its batch loop spends longer than OpenBLAS on each tiny matrix. oneDNN's time over OpenBLAS's: [64] 4 × 4 × 4
 *   1.2–1.5×, [64] 8 × 8 × 8 1.0–1.2×, [16] 16 × 16 × 16 (2¹⁷ FLOPs) 1.0–1.07×, one 64 × 64 × 64 (2¹⁹) 0.94–1.10×,
 *   one 128 × 128 × 16 (2¹⁹) 0.75–0.83×, [16] 32 × 32 × 32 0.77–0.84×, [128] 16 × 16 × 16 0.75–0.95×.
 * - Batches above them: oneDNN took 0.51–0.72× OpenBLAS's time on the small config's attention products ([64]
 *   128 × 128 × 16 and [64] 128 × 16 × 128, all four transpose combinations), 0.53–0.99× on T2's ([128] 64 × 16 × 16,
 *   64 × 64 × 16, 64 × 16 × 64, 16 × 16 × 64), 0.67–0.91× on the medium config's T2 blocks ([256] 64 × 64 × 64).
 * - Single products (the dense layers, 2048 × 64 by 64 × 64, 171 or 256 and back, 2²⁴–2²⁶): against a one-thread
 *   OpenBLAS 0.57–1.0×. Against two threads it depends on the other work: at load about 2, 0.36–0.98× on the forward
 *   and input-gradient products and 0.76–1.12× on the weight gradients; minutes later at load 1.3–1.6, 1.1–1.8× (the
 *   second core was free). In whole training steps (4 layers, d 64, 16 × 128; 14 interleaved rounds of 3 steps at load
 *   1.4–1.5, two OpenBLAS threads) sending these to OpenBLAS gained nothing measurable: ms a step, median, vanilla
 *   127.5 with sgemm throughout, 119.4 with them in OpenBLAS, 115.8 in oneDNN; T2 134.0, 134.9, 123.3. So oneDNN
 *   keeps them: it does not slow down when the second core is busy.
 * - `blasFromFlops`: from 2²⁸ FLOPs a call, OpenBLAS when it has more threads than oneDNN. Called alone, a two-thread
 *   OpenBLAS won from 2³⁰: the medium config's attention ([32] 512 × 512 × 64 and 512 × 64 × 512, 2³⁰) took oneDNN
 *   1.06–1.39× OpenBLAS's time in 7 of its 8 cases, its GLU products (4096 × 683 × 256 and their gradients)
 *   0.73–2.0×, while at 2²⁹ (4096 × 256 × 256) oneDNN took 0.78–0.98×. Within whole training steps of the medium
 *   config (6 layers, d 256, 8 × 512, whose dense products are 2²⁹ and larger), OpenBLAS did better from 2²⁹: 6
 *   interleaved rounds at load 1.9–2.0, ms a step (median), vanilla: sgemm throughout 3242, this rule with its bound
 *   at 2³⁰ 3659, at 2²⁸ 3131; T2: 2670, 2912, 2791 (per-round ratios to sgemm throughout: 0.95–1.32 at 2³⁰,
 *   0.81–1.17 at 2²⁸). The small config's products are at most 2²⁶. Against a one-thread OpenBLAS oneDNN took
 *   0.77–1.19× at 2³⁰ and above (even, within the noise), hence the bound only with more threads.
 * - `blasFromMatrixFlops`: ... and only for matrices of 2²² FLOPs or more. A batch of small matrices gains nothing from
 *   OpenBLAS's threads (each matrix is one call): local attention's causal products at b 1, h 8, n 2048, d 64
 *   ([256] 64 × 128 × 64 and its gradients, 2²⁰ a matrix, 2²⁸ a call) took the attention forward + backward 63.8 ms
 *   (median of 6 paired rounds of 3, `deno task bench --paired`) in a two-thread OpenBLAS, 41.1 ms in oneDNN, runs
 *   one after the other on 2026-12-02. Every product of 2²⁸ or more in either training config is one matrix of 2²⁹
 *   or more (logged over one step of each preset), so their steps run as before.
 */
export const DNNL_MATMUL_RULE: Readonly<DnnlMatMulRule> = Object.freeze({
  minFlops: 2 ** 19,
  minMatrixFlops: 2 ** 13,
  blasFromFlops: 2 ** 28,
  blasFromMatrixFlops: 2 ** 22,
});

/**
 * Whether a matmul of `layout` should run in oneDNN (true) or OpenBLAS (false), by {@linkcode DNNL_MATMUL_RULE}
 * (or `options.rule`), given each library's thread count.
 *
 * @example
 * ```ts
 * import { matMulLayout, prefersDnnlMatMul } from "./dnnl_kernels.ts";
 * const threads = { dnnl: 1, blas: 2 };
 * const scores = matMulLayout([16, 4, 128, 16], [16, 4, 128, 16], { transB: true });
 * const medium = matMulLayout([8, 4, 512, 64], [8, 4, 512, 64], { transB: true });
 * const tiny = matMulLayout([4, 8, 8], [4, 8, 8], {});
 * console.log(prefersDnnlMatMul(scores, threads), prefersDnnlMatMul(medium, threads), prefersDnnlMatMul(tiny, threads));
 * // true false false
 * console.log(prefersDnnlMatMul(medium, { dnnl: 1, blas: 1 })); // true
 * ```
 */
export function prefersDnnlMatMul(
  layout: MatMulLayout,
  threads: { dnnl: number; blas: number },
  options: { rule?: Readonly<DnnlMatMulRule> } = {},
): boolean {
  if (layout === null || typeof layout !== "object" || !Array.isArray(layout.aBatch)) {
    throw new TypeError("prefersDnnlMatMul: layout must be a MatMulLayout (from matMulLayout)");
  }
  if (threads === null || typeof threads !== "object" || !(threads.dnnl >= 1) || !(threads.blas >= 1)) {
    throw new RangeError("prefersDnnlMatMul: threads must be { dnnl, blas }, each a thread count >= 1");
  }
  const rule = options.rule ?? DNNL_MATMUL_RULE;
  const { aBatch, bBatch, m, n, k } = layout;
  const matrix = 2 * m * n * k;
  const total = aBatch.reduce((flops, d, i) => flops * Math.max(d, bBatch[i]), matrix);
  if (total < rule.minFlops || matrix < rule.minMatrixFlops) return false;
  return threads.blas <= threads.dnnl || total < rule.blasFromFlops || matrix < rule.blasFromMatrixFlops;
}

/**
 * The blas backend's BatchMatMul through oneDNN: one batched matmul primitive per call where
 * {@linkcode prefersDnnlMatMul} says so (transposes as strides, batch broadcasting as oneDNN's; values within float32
 * rounding of `fallback`'s, sums in another order), `fallback` (the per-matrix sgemm kernel) for every other call:
 * other dtypes, small or (beside a multithreaded OpenBLAS) very large products, and layouts oneDNN has no optimised
 * implementation of.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { dnnl } from "./dnnl.ts";
 * import { dnnlBatchMatMul } from "./dnnl_kernels.ts";
 * import { cpuKernel } from "./_util.ts";
 * const lib = dnnl();
 * if (lib) console.log(typeof dnnlBatchMatMul(lib, cpuKernel(tf.BatchMatMul), { blasThreads: 1 })); // function
 * ```
 */
export function dnnlBatchMatMul(
  lib: DnnlLibrary,
  fallback: Kernel,
  options: {
    blasThreads: number;
    rule?: Readonly<DnnlMatMulRule>;
  },
): Kernel {
  if (lib === null || typeof lib !== "object" || typeof lib.matmul !== "function") {
    throw new TypeError("dnnlBatchMatMul: lib must be a DnnlLibrary (from openDnnl() or dnnl())");
  }
  if (typeof fallback !== "function") throw new TypeError("dnnlBatchMatMul: fallback must be a kernel function");
  if (options === null || typeof options !== "object") {
    throw new TypeError("dnnlBatchMatMul: options must be { blasThreads, rule? }");
  }
  if (!Number.isInteger(options.blasThreads) || options.blasThreads < 1) {
    throw new RangeError(
      `dnnlBatchMatMul: options.blasThreads must be OpenBLAS's thread count, an integer >= 1; got ${options.blasThreads}`,
    );
  }
  const threads = { dnnl: lib.threads, blas: options.blasThreads };
  return (args) => {
    const { backend } = args;
    const a = args.inputs.a!;
    const b = args.inputs.b!;
    if (a.dtype !== "float32" || b.dtype !== "float32") return fallback(args);
    let layout: MatMulLayout;
    try {
      layout = matMulLayout(a.shape, b.shape, { transA: args.attrs?.transposeA, transB: args.attrs?.transposeB } as {
        transA?: boolean;
        transB?: boolean;
      });
    } catch {
      // The fallback throws tfjs's error for these shapes.
      return fallback(args);
    }
    if (!prefersDnnlMatMul(layout, threads, options)) return fallback(args);
    const out = allocFloat32(sizeOf(layout.outShape));
    if (!lib.matmul({ a: f32(backend, a), b: f32(backend, b), out }, layout)) return fallback(args);
    return backend.makeTensorInfo(layout.outShape, "float32", out);
  };
}
