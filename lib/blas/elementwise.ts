/**
 * Elementwise kernels of the `blas` backend: binary ops with NumPy broadcasting and unary ops,
 * as tight loops over Float32Array. float32 only; other dtypes go to the cpu kernels.
 *
 * Each result is computed with the cpu kernel's arithmetic (in doubles, rounded once to float32),
 * so outputs match the cpu backend bit for bit; Exp and Sigmoid compute e^x with fastExp (_exp.ts), which differs
 * from the cpu kernels' Math.exp by one float32 unit in the last place in fewer than one input in 10^7.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { f32, type FastPath, type Kernel, type KernelArgs, sizeOf, type TensorInfo, withFallback } from "./_util.ts";
import { fastExp } from "./_exp.ts";
import { allocFloat32 } from "./pool.ts";

type Values = Float32Array | Uint8Array;

/** One contiguous row of a broadcast op: out[io + i] = f(a[ia + i * sa], b[ib + i * sb]), sa and sb in {0, 1}. */
type RowLoop = (
  a: Float32Array,
  ia: number,
  sa: number,
  b: Float32Array,
  ib: number,
  sb: number,
  out: Values,
  io: number,
  n: number,
) => void;

/** out[i] = f(x[i]) for every i; `alpha` is the op's attribute where it has one (Step). */
type MapLoop = (x: Float32Array, out: Float32Array, alpha: number) => void;

// V8 inlines a callback only where one function reaches the call site, so a shared loop calling
// `(x, y) => x + y` runs about 4x slower than a loop with the arithmetic written in. Each op gets
// its own loop, generated once from its expression in x and y.
function rowLoop(expr: string): RowLoop {
  return new Function(
    "a",
    "ia",
    "sa",
    "b",
    "ib",
    "sb",
    "out",
    "io",
    "n",
    `"use strict";
    if (sa === 1 && sb === 1) {
      for (let i = 0; i < n; i++) { const x = a[ia + i], y = b[ib + i]; out[io + i] = ${expr}; }
    } else if (sa === 0) {
      const x = a[ia];
      for (let i = 0; i < n; i++) { const y = b[ib + i]; out[io + i] = ${expr}; }
    } else {
      const y = b[ib];
      for (let i = 0; i < n; i++) { const x = a[ia + i]; out[io + i] = ${expr}; }
    }`,
  ) as RowLoop;
}

// The expression may call fastExp, handed in as a closure variable.
function mapLoop(expr: string): MapLoop {
  return new Function(
    "fastExp",
    `"use strict";
    return function (x, out, alpha) {
      const n = x.length;
      for (let i = 0; i < n; i++) { const v = x[i]; out[i] = ${expr}; }
    };`,
  )(fastExp) as MapLoop;
}

/** How a broadcast op walks its operands: collapsed output dims and each operand's strides (0 where broadcast). */
interface BroadcastPlan {
  outShape: number[];
  dims: number[];
  stridesA: number[];
  stridesB: number[];
}

function paddedStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const rank = outShape.length;
  const padded = [...new Array(rank - shape.length).fill(1), ...shape];
  const strides = new Array(rank).fill(0);
  let stride = 1;
  for (let i = rank - 1; i >= 0; i--) {
    strides[i] = padded[i] === 1 ? 0 : stride;
    stride *= padded[i];
  }
  return strides;
}

function broadcastPlan(aShape: readonly number[], bShape: readonly number[]): BroadcastPlan {
  const outShape = tf.backend_util.assertAndGetBroadcastShape([...aShape], [...bShape]);
  const fullA = paddedStrides(aShape, outShape);
  const fullB = paddedStrides(bShape, outShape);
  // Innermost first: merge a dim into the one inside it when both operands step through the pair as one run.
  const dims: number[] = [];
  const stridesA: number[] = [];
  const stridesB: number[] = [];
  for (let i = outShape.length - 1; i >= 0; i--) {
    const d = outShape[i];
    if (d === 1) continue;
    const k = dims.length - 1;
    const joins = (inner: number, outer: number, size: number) =>
      (inner === 0 && outer === 0) || (inner !== 0 && outer === inner * size);
    if (k >= 0 && joins(stridesA[k], fullA[i], dims[k]) && joins(stridesB[k], fullB[i], dims[k])) {
      dims[k] *= d;
    } else {
      dims.push(d);
      stridesA.push(fullA[i]);
      stridesB.push(fullB[i]);
    }
  }
  return { outShape, dims: dims.reverse(), stridesA: stridesA.reverse(), stridesB: stridesB.reverse() };
}

function runBroadcast(
  row: RowLoop,
  operands: { a: Float32Array; b: Float32Array; out: Values; plan: BroadcastPlan },
): void {
  const { a, b, out, plan: { dims, stridesA, stridesB } } = operands;
  const k = dims.length;
  if (k === 0) {
    if (out.length > 0) row(a, 0, 0, b, 0, 0, out, 0, 1);
    return;
  }
  const len = dims[k - 1];
  const rows = out.length / len;
  const index = new Array(k - 1).fill(0);
  let ia = 0;
  let ib = 0;
  for (let r = 0, io = 0; r < rows; r++, io += len) {
    row(a, ia, stridesA[k - 1], b, ib, stridesB[k - 1], out, io, len);
    // Odometer over the outer dims, innermost first.
    for (let d = k - 2; d >= 0; d--) {
      ia += stridesA[d];
      ib += stridesB[d];
      if (++index[d] < dims[d]) break;
      index[d] = 0;
      ia -= stridesA[d] * dims[d];
      ib -= stridesB[d] * dims[d];
    }
  }
}

function binary(name: string, op: { expr: string; outDtype: "float32" | "bool" }): Kernel {
  const { expr, outDtype } = op;
  const row = rowLoop(expr);
  const fast: FastPath = ({ inputs, backend }) => {
    const a = inputs.a!;
    const b = inputs.b!;
    if (a.dtype !== "float32" || b.dtype !== "float32") return undefined;
    const plan = broadcastPlan(a.shape, b.shape);
    const size = sizeOf(plan.outShape);
    const out = outDtype === "bool" ? new Uint8Array(size) : allocFloat32(size);
    runBroadcast(row, { a: f32(backend, a), b: f32(backend, b), out, plan });
    return backend.makeTensorInfo(plan.outShape, outDtype, out);
  };
  return withFallback(name, fast);
}

function unary(name: string, expr: string): Kernel {
  const loop = mapLoop(expr);
  const fast: FastPath = ({ inputs, backend, attrs }) => {
    const x = inputs.x!;
    if (x.dtype !== "float32") return undefined;
    const values = f32(backend, x);
    const out = allocFloat32(values.length);
    loop(values, out, Number(attrs?.alpha ?? 0));
    return backend.makeTensorInfo(x.shape, "float32", out);
  };
  return withFallback(name, fast);
}

function eluGrad({ inputs, backend }: KernelArgs): TensorInfo | undefined {
  const dy = inputs.dy!;
  const y = inputs.y!;
  if (dy.dtype !== "float32" || y.dtype !== "float32" || sizeOf(dy.shape) !== sizeOf(y.shape)) return undefined;
  const dyv = f32(backend, dy);
  const yv = f32(backend, y);
  const out = allocFloat32(yv.length);
  for (let i = 0; i < yv.length; i++) {
    const v = yv[i];
    out[i] = v >= 0 ? dyv[i] : dyv[i] * (v + 1);
  }
  return backend.makeTensorInfo(y.shape, "float32", out);
}

// The expressions are the cpu kernels' own (tfjs-backend-cpu 4.22), so results agree exactly. Comparisons (and Step,
// below) turn their boolean into a number with `+(...)` instead of `? 1 : 0`: the same values, but V8 then emits no
// branch, which on random signs is mispredicted about half the time (5–7 ns an element).
const BINARY: Record<string, [string, "float32" | "bool"]> = {
  [tf.Add]: ["x + y", "float32"],
  [tf.Sub]: ["x - y", "float32"],
  [tf.Multiply]: ["x * y", "float32"],
  [tf.RealDiv]: ["x / y", "float32"],
  [tf.Maximum]: ["Math.max(x, y)", "float32"],
  [tf.Minimum]: ["Math.min(x, y)", "float32"],
  [tf.SquaredDifference]: ["(x - y) * (x - y)", "float32"],
  [tf.Pow]: ["Math.pow(x, y)", "float32"],
  [tf.Less]: ["+(x < y)", "bool"],
  [tf.LessEqual]: ["+(x <= y)", "bool"],
  [tf.Greater]: ["+(x > y)", "bool"],
  [tf.GreaterEqual]: ["+(x >= y)", "bool"],
  [tf.Equal]: ["+(x === y)", "bool"],
  [tf.NotEqual]: ["+(x !== y)", "bool"],
};

// Math.exp takes a slow path far below its underflow (masked logits of -1e9 run 4x slower); below -104,
// e^v rounds to 0 in float32 anyway, so these guards change no result. Exp and Sigmoid use fastExp (_exp.ts), which
// rounds to the same float32 as Math.exp but in fewer than one input in 10^7; Elu keeps Math.exp, since e^v - 1 near
// v = 0 would magnify fastExp's 1e-16 into a visible difference.
const UNARY: Record<string, string> = {
  [tf.Exp]: "v < -104 ? 0 : fastExp(v)",
  [tf.Log]: "Math.log(v)",
  [tf.Neg]: "-v",
  [tf.Sqrt]: "Math.sqrt(v)",
  [tf.Rsqrt]: "1 / Math.sqrt(v)",
  [tf.Square]: "v * v",
  [tf.Relu]: "Math.max(0, v)",
  [tf.Elu]: "v >= 0 ? v : v < -104 ? -1 : Math.exp(v) - 1",
  [tf.Sigmoid]: "v > 104 ? 1 : v < -104 ? 0 : 1 / (1 + fastExp(-v))",
  [tf.Tanh]: "Math.tanh(v)",
  [tf.Abs]: "Math.abs(v)",
  [tf.Reciprocal]: "1 / v",
  [tf.Step]: "v !== v ? NaN : +(v > 0) + alpha * +(v <= 0)",
};

/**
 * The elementwise kernels, by kernel name: binary ops with any broadcast of float32 operands
 * (comparisons give bool), unary ops on float32, and EluGrad.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { elementwiseKernels } from "./elementwise.ts";
 * console.log(tf.Multiply in elementwiseKernels()); // true
 * ```
 */
export function elementwiseKernels(): Record<string, Kernel> {
  const kernels: Record<string, Kernel> = {};
  for (const [name, [expr, outDtype]] of Object.entries(BINARY)) kernels[name] = binary(name, { expr, outDtype });
  for (const [name, expr] of Object.entries(UNARY)) kernels[name] = unary(name, expr);
  kernels[tf.EluGrad] = withFallback(tf.EluGrad, eluGrad);
  return kernels;
}
