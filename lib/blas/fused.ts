/**
 * Fused kernels of the `blas` backend for the transformer's hot composites, each a pass over its data where tfjs
 * runs several ops, forward and backward, and each with the composite's float32 roundings in the composite's order,
 * so that results and gradients are the same bits:
 *
 * - {@linkcode siluGate}: silu(a) · b, the gated FFN's product (GLU with SiLU), and its gradient (the same bits where
 *   a feeds no other op, as in the model; otherwise a's gradient adds its parts in another order: float rounding);
 * - {@linkcode srmsNorm}: SimpleRMSNorm over the last axis, x / (‖x‖₂ / √d + 1e-8), and its gradient, whose two
 *   parts (through the division and through the norm) come back as the gradients of two inputs, so that tfjs adds
 *   them to x's other gradients in the composite's order;
 * - {@linkcode eluPlusOne}: elu(x) + 1, linear attention's feature map, as relu(x) + exp(min(x, 0)), and its
 *   gradient, dy · min(y, 1), which needs only the output;
 * - the gradient of Softmax over the last axis (registered over tfjs's, see {@linkcode registerFusedGradients}).
 *
 * {@linkcode fusedKernels} also hands the backend the kernels of fused_adam.ts (the AdamW update of every variable in
 * one call, and the gradients' squared norms, the same bits as lib/train/adam.ts's composites) and of fused_loss.ts
 * (softmax cross-entropy and its gradient, in double precision rounded once: not the composite's bits).
 *
 * "The same bits" holds for the JS kernels here (`ATTNLAB_BLAS_KERNELS=js`). With oneDNN (the default `all` when
 * libdnnl2 is installed), lib/blas/dnnl_kernels.ts overrides `AttnlabSiluGate`, its gradient and Softmax's gradient on
 * large inputs, relying on these kernels' inputs and outputs; those agree with the composite within a few float32 ulps.
 *
 * On any other backend, under `ATTNLAB_BLAS_KERNELS=matmul` and for other dtypes the functions here run the composite
 * tf ops instead, which give the same values; while a higher-order gradient is being recorded, their gradients run
 * differentiable tf ops (the same values up to float rounding).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { fastExp } from "./_exp.ts";
import {
  f32,
  gradientsOnce,
  hasFloat32Kernel,
  type Kernel,
  type KernelArgs,
  runKernel,
  sizeOf,
  type TensorInfo,
} from "./_util.ts";
import { fusedAdamKernels } from "./fused_adam.ts";
import { fusedLossKernels } from "./fused_loss.ts";
import { BROADCAST } from "./layout.ts";
import { allocFloat32 } from "./pool.ts";

/** silu(a) · b: inputs a, b of one shape; outputs [silu(a) · b, sigmoid(a)]. */
export const SILU_GATE = "AttnlabSiluGate";
/** Gradient of {@linkcode SILU_GATE}: inputs dy, a, b, s = sigmoid(a); outputs [da, db]. */
export const SILU_GATE_GRAD = "AttnlabSiluGateGrad";
/** SimpleRMSNorm over the last axis: input x [..., d]; output x / (‖x‖₂ / √d + 1e-8). */
export const SRMS_NORM = "AttnlabSrmsNorm";
/**
 * Gradient of {@linkcode SRMS_NORM}: inputs dy, x [..., d]; outputs [through the division (dy / denominator), through
 * the denominator].
 */
export const SRMS_NORM_GRAD = "AttnlabSrmsNormGrad";
/** Softmax's gradient over the last axis: inputs dy, y (the softmax); output d logits. */
export const SOFTMAX_GRAD = "AttnlabSoftmaxGrad";
/** elu(x) + 1 elementwise, as relu(x) + exp(min(x, 0)): input x; output y. */
export const ELU_PLUS_ONE = "AttnlabEluPlusOne";
/** Gradient of {@linkcode ELU_PLUS_ONE}: inputs dy, y (the forward's output); output dx = dy · min(y, 1). */
export const ELU_PLUS_ONE_GRAD = "AttnlabEluPlusOneGrad";
/** Relu's gradient as one kernel: inputs dy, x (the forward's input); output dx = dy · step(x) (NaN where x is NaN). */
export const RELU_GRAD = "AttnlabReluGrad";

// The constants of lib/attention/norms.ts's SimpleRMSNorm, x / (sqrt(sum(x²) + 1e-24) / √d + 1e-8);
// tests/blas_kernels_test.ts holds the two equal.
const SRMS_TINY = 1e-24;
const SRMS_EPS = 1e-8;

function sigmoid(v: number): number {
  // The blas Sigmoid kernel's expression (elementwise.ts), rounded to float32 as its output is.
  return Math.fround(v > 104 ? 1 : v < -104 ? 0 : 1 / (1 + fastExp(-v)));
}

function siluGateKernel({ inputs, backend }: KernelArgs): TensorInfo[] {
  const av = f32(backend, inputs.a!);
  const bv = f32(backend, inputs.b!);
  const n = av.length;
  const out = allocFloat32(n);
  const sig = allocFloat32(n);
  for (let i = 0; i < n; i++) {
    const v = av[i];
    const s = sigmoid(v);
    sig[i] = s;
    // tf.mul(tf.mul(a, tf.sigmoid(a)), b): each product rounded to float32.
    out[i] = Math.fround(v * s) * bv[i];
  }
  const shape = inputs.a!.shape;
  return [backend.makeTensorInfo(shape, "float32", out), backend.makeTensorInfo(shape, "float32", sig)];
}

function siluGateGradKernel({ inputs, backend }: KernelArgs): TensorInfo[] {
  const dyv = f32(backend, inputs.dy!);
  const av = f32(backend, inputs.a!);
  const bv = f32(backend, inputs.b!);
  const sv = f32(backend, inputs.s!);
  const n = av.length;
  const da = allocFloat32(n);
  const db = allocFloat32(n);
  for (let i = 0; i < n; i++) {
    const g = dyv[i];
    const x = av[i];
    const s = sv[i];
    // tfjs's chain for out = t · b, t = a · s, s = sigmoid(a): dt = dy·b, db = dy·t; da = dt·s + ds·(s·(1 − s))
    // with ds = dt·a, every product and difference rounded to float32, the two parts of da added last.
    const dt = Math.fround(g * bv[i]);
    db[i] = g * Math.fround(x * s);
    const ds = Math.fround(dt * x);
    da[i] = Math.fround(dt * s) + Math.fround(ds * Math.fround(s * Math.fround(1 - s)));
  }
  const shape = inputs.a!.shape;
  return [backend.makeTensorInfo(shape, "float32", da), backend.makeTensorInfo(shape, "float32", db)];
}

/** sqrt(sum(x²) + 1e-24) of the row of x at `start`, as the composite has it (each step rounded to float32). */
function srmsRoot(xv: Float32Array, start: number, d: number): number {
  let s = 0;
  // tf.sum(tf.square(x), -1): squares rounded to float32, summed in order in a double, rounded once.
  for (let j = 0; j < d; j++) {
    const v = xv[start + j];
    s += Math.fround(v * v);
  }
  return Math.fround(Math.sqrt(Math.fround(Math.fround(s) + Math.fround(SRMS_TINY))));
}

function srmsNormKernel({ inputs, backend }: KernelArgs): TensorInfo {
  const x = inputs.x!;
  const d = x.shape[x.shape.length - 1];
  const xv = f32(backend, x);
  const rows = d === 0 ? 0 : xv.length / d;
  const scale = Math.fround(1 / Math.sqrt(d));
  const eps = Math.fround(SRMS_EPS);
  const out = allocFloat32(xv.length);
  for (let r = 0; r < rows; r++) {
    const start = r * d;
    const root = srmsRoot(xv, start, d);
    // tf.div(x, tf.add(tf.mul(l2, 1 / √d), 1e-8)).
    const den = Math.fround(Math.fround(root * scale) + eps);
    for (let j = 0; j < d; j++) out[start + j] = xv[start + j] / den;
  }
  return backend.makeTensorInfo(x.shape, "float32", out);
}

function srmsNormGradKernel({ inputs, backend }: KernelArgs): TensorInfo[] {
  const x = inputs.x!;
  const d = x.shape[x.shape.length - 1];
  const xv = f32(backend, x);
  const dyv = f32(backend, inputs.dy!);
  const rows = d === 0 ? 0 : xv.length / d;
  const scale = Math.fround(1 / Math.sqrt(d));
  const eps = Math.fround(SRMS_EPS);
  const viaDivision = allocFloat32(xv.length);
  const viaNorm = allocFloat32(xv.length);
  for (let r = 0; r < rows; r++) {
    const start = r * d;
    const root = srmsRoot(xv, start, d);
    const den = Math.fround(Math.fround(root * scale) + eps);
    // tfjs's gradient of x / den: dy / den for x; for den, −sum(dy · x) / den², the sum in a double in order.
    let s = 0;
    for (let j = 0; j < d; j++) {
      viaDivision[start + j] = dyv[start + j] / den;
      s += Math.fround(dyv[start + j] * xv[start + j]);
    }
    const dDen = -Math.fround(Math.fround(s) / Math.fround(den * den));
    // Then through den = l2 · scale + eps, l2 = sqrt(plus), plus = sum(x²) + 1e-24: dy · scale, over sqrt(plus) · 2,
    // the sum's gradient (times ones), and the square's, dy · (x · 2). Each step rounded to float32.
    const dPlus = Math.fround(Math.fround(dDen * scale) / Math.fround(root * 2));
    for (let j = 0; j < d; j++) viaNorm[start + j] = dPlus * Math.fround(xv[start + j] * 2);
  }
  return [
    backend.makeTensorInfo(x.shape, "float32", viaDivision),
    backend.makeTensorInfo(x.shape, "float32", viaNorm),
  ];
}

/**
 * Softmax's gradient over each row of y seen as [y.length / n, n], into out (which may be dy, not y), as tfjs computes
 * it: p = dy · y; p − sum(p) · y, the row sum in a double in order, rounded once.
 *
 * @example
 * ```ts
 * import { softmaxGradRows } from "./fused.ts";
 * const out = new Float32Array(2);
 * softmaxGradRows(new Float32Array([1, 0]), new Float32Array([0.5, 0.5]), out, 2);
 * console.log(Array.from(out)); // [0.25, -0.25]
 * ```
 */
export function softmaxGradRows(dy: Float32Array, y: Float32Array, out: Float32Array, n: number): void {
  for (let start = 0; start < y.length; start += n) {
    let s = 0;
    for (let j = 0; j < n; j++) {
      const p = Math.fround(dy[start + j] * y[start + j]);
      out[start + j] = p;
      s += p;
    }
    const total = Math.fround(s);
    for (let j = 0; j < n; j++) out[start + j] = out[start + j] - Math.fround(total * y[start + j]);
  }
}

function softmaxGradKernel({ inputs, backend }: KernelArgs): TensorInfo {
  const y = inputs.y!;
  const yv = f32(backend, y);
  const out = allocFloat32(yv.length);
  softmaxGradRows(f32(backend, inputs.dy!), yv, out, y.shape[y.shape.length - 1]);
  return backend.makeTensorInfo(y.shape, "float32", out);
}

function eluPlusOneKernel({ inputs, backend }: KernelArgs): TensorInfo {
  const xv = f32(backend, inputs.x!);
  const out = allocFloat32(xv.length);
  // relu(x) + exp(min(x, 0)): x + e^0 = x + 1 for x > 0, 0 + e^x otherwise (NaN included), rounded once either way.
  for (let i = 0; i < xv.length; i++) {
    const v = xv[i];
    out[i] = v > 0 ? v + 1 : fastExp(v);
  }
  return backend.makeTensorInfo(inputs.x!.shape, "float32", out);
}

function eluPlusOneGradKernel({ inputs, backend }: KernelArgs): TensorInfo {
  const dyv = f32(backend, inputs.dy!);
  const yv = f32(backend, inputs.y!);
  const out = allocFloat32(yv.length);
  // d/dx is 1 where x > 0 (there y >= 1) and e^x = y where x <= 0 (there y <= 1): min(y, 1) either way, also where
  // x + 1 rounds to 1. At x = 0 both give 1, as the composite's relu' (0) plus min' (1 for x <= 0) times e^0 does.
  // Math.min rather than a branch: the features' signs are random, and a branch on them mispredicts half the time.
  for (let i = 0; i < yv.length; i++) out[i] = dyv[i] * Math.min(yv[i], 1);
  return backend.makeTensorInfo(inputs.y!.shape, "float32", out);
}

function reluGradKernel({ inputs, backend }: KernelArgs): TensorInfo {
  const dyv = f32(backend, inputs.dy!);
  const xv = f32(backend, inputs.x!);
  const out = allocFloat32(xv.length);
  // tfjs's dy · step(x), step(NaN) = NaN. +(v > 0) rather than a branch: the scores' signs are random, and a branch on
  // them mispredicts half the time; the NaN test is almost never taken, so it predicts well.
  for (let i = 0; i < xv.length; i++) {
    const v = xv[i];
    out[i] = dyv[i] * (v !== v ? NaN : +(v > 0));
  }
  return backend.makeTensorInfo(inputs.x!.shape, "float32", out);
}

/**
 * The fused kernels, by name, for the `blas` backend to register: this module's, fused_adam.ts's and fused_loss.ts's.
 *
 * @example
 * ```ts
 * import { fusedKernels, SILU_GATE } from "./fused.ts";
 * import { ADAMW_UPDATE } from "./fused_adam.ts";
 * import { SOFTMAX_CROSS_ENTROPY } from "./fused_loss.ts";
 * const names = Object.keys(fusedKernels());
 * console.log([SILU_GATE, ADAMW_UPDATE, SOFTMAX_CROSS_ENTROPY].every((name) => names.includes(name))); // true
 * ```
 */
export function fusedKernels(): Record<string, Kernel> {
  return {
    [SILU_GATE]: siluGateKernel as unknown as Kernel,
    [SILU_GATE_GRAD]: siluGateGradKernel as unknown as Kernel,
    [SRMS_NORM]: srmsNormKernel,
    [SRMS_NORM_GRAD]: srmsNormGradKernel as unknown as Kernel,
    [SOFTMAX_GRAD]: softmaxGradKernel,
    [ELU_PLUS_ONE]: eluPlusOneKernel,
    [ELU_PLUS_ONE_GRAD]: eluPlusOneGradKernel,
    [RELU_GRAD]: reluGradKernel,
    ...fusedAdamKernels(),
    ...fusedLossKernels(),
  };
}

/** Whether the current backend has the fused kernel `name` and no higher-order gradient is being recorded. */
function fusable(name: string, ...tensors: tf.Tensor[]): boolean {
  return hasFloat32Kernel(name, tensors) && tf.engine().state.gradientDepth === 0;
}

function siluGateComposite(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(a, tf.sigmoid(a)), b);
}

const siluGateFused = tf.customGrad((...args: unknown[]) => {
  const [a, b, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
  const [out, s] = runKernel(SILU_GATE, { a, b });
  save([a, b, s]);
  return {
    value: out,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [a, b, s] = saved;
      if (fusable(SILU_GATE_GRAD)) return runKernel(SILU_GATE_GRAD, { dy, a, b, s });
      // A gradient that is itself being differentiated: tfjs's own chain, in differentiable ops.
      const dt = tf.mul(dy, b);
      const ds = tf.mul(dt, a);
      return [tf.add(tf.mul(dt, s), tf.mul(ds, tf.mul(s, tf.sub(1, s)))), tf.mul(dy, tf.mul(a, s))];
    },
  };
});

/**
 * silu(a) · b = a · sigmoid(a) · b, elementwise, for a and b of one shape: the gate of a GLU feed-forward layer. On the
 * blas backend one kernel computes it and one its gradient (instead of 3 ops forward and 8 backward), with the same
 * float32 values as `tf.mul(tf.mul(a, tf.sigmoid(a)), b)`, which every other backend runs: the value and b's gradient
 * always, a's gradient when a feeds no other op (else its parts are summed in another order, a float rounding apart).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { siluGate } from "./fused.ts";
 * const out = siluGate(tf.tensor1d([0, 1]), tf.tensor1d([3, 2]));
 * console.log(Array.from(out.dataSync()).map((v) => v.toFixed(4))); // ["0.0000", "1.4621"]
 * ```
 */
export function siluGate<T extends tf.Tensor>(a: T, b: T): T {
  if (!(a instanceof tf.Tensor) || !(b instanceof tf.Tensor)) {
    throw new TypeError("siluGate: a and b must be tf.Tensors of one shape");
  }
  if (!tf.util.arraysEqual(a.shape, b.shape)) {
    throw new RangeError(`siluGate: a and b must have one shape, got [${a.shape}] and [${b.shape}]`);
  }
  const fused = tf.getKernel(SILU_GATE, tf.getBackend()) !== undefined && a.dtype === "float32" &&
    b.dtype === "float32";
  return (fused ? siluGateFused(a, b) : siluGateComposite(a, b)) as T;
}

function srmsDenominator(x: tf.Tensor): tf.Tensor {
  const d = x.shape[x.rank - 1];
  const l2 = tf.sqrt(tf.add(tf.sum(tf.square(x), -1, true), SRMS_TINY));
  return tf.add(tf.mul(l2, 1 / Math.sqrt(d)), SRMS_EPS);
}

// x comes in twice: the gradient through the division goes to the first, the one through the denominator to the
// second, and tfjs adds them to x's gradient in that order, as it adds the composite's RealDiv and Square parts.
const srmsNormFused = tf.customGrad((...args: unknown[]) => {
  const [x, _again, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
  const [y] = runKernel(SRMS_NORM, { x });
  save([x]);
  return {
    value: y,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [x] = saved;
      if (fusable(SRMS_NORM_GRAD)) return runKernel(SRMS_NORM_GRAD, { dy, x });
      // A gradient that is itself being differentiated: tfjs's own chain, in differentiable ops.
      const plus = tf.add(tf.sum(tf.square(x), -1, true), SRMS_TINY);
      const den = tf.add(tf.mul(tf.sqrt(plus), 1 / Math.sqrt(x.shape[x.rank - 1])), SRMS_EPS);
      const dDen = tf.neg(tf.div(tf.sum(tf.mul(dy, x), -1, true), tf.square(den)));
      const dPlus = tf.div(tf.mul(dDen, 1 / Math.sqrt(x.shape[x.rank - 1])), tf.mul(tf.sqrt(plus), 2));
      return [tf.div(dy, den), tf.mul(tf.mul(dPlus, tf.onesLike(x)), tf.mul(x, 2))];
    },
  };
});

/**
 * SimpleRMSNorm over the last axis, x / (‖x‖₂ / √d + 1e-8), computed as lib/attention/norms.ts does
 * (`normalizeLastAxis(x, "srms")`: sqrt(Σx² + 1e-24) / √d + 1e-8) with the same values and gradient, bit for bit, x's
 * gradient included when x feeds other ops too. On the blas backend one kernel computes it and one its gradient
 * (instead of 7 ops forward and about 20 backward); elsewhere it runs that composite.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { srmsNorm } from "./fused.ts";
 * const y = srmsNorm(tf.tensor2d([[3, 4]]));
 * console.log(Array.from(y.dataSync()).map((v) => v.toFixed(4))); // ["0.8485", "1.1314"]
 * ```
 */
export function srmsNorm<T extends tf.Tensor>(x: T): T {
  if (!(x instanceof tf.Tensor) || x.rank < 1) {
    throw new TypeError("srmsNorm: x must be a tf.Tensor of rank >= 1 (normalised over its last axis)");
  }
  const fused = tf.getKernel(SRMS_NORM, tf.getBackend()) !== undefined && x.dtype === "float32" && sizeOf(x.shape) > 0;
  return (fused ? srmsNormFused(x, x) : tf.div(x, srmsDenominator(x))) as T;
}

const eluPlusOneFused = tf.customGrad((...args: unknown[]) => {
  const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
  const [y] = runKernel(ELU_PLUS_ONE, { x });
  save([y]);
  return {
    value: y,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [y] = saved;
      if (fusable(ELU_PLUS_ONE_GRAD, dy)) return [runKernel(ELU_PLUS_ONE_GRAD, { dy, y })[0]];
      // Under ATTNLAB_BLAS_KERNELS changes or a non-float32 dy: the same expression in tf ops.
      return [tf.mul(dy, tf.minimum(y, 1))];
    },
  };
});

/**
 * elu(x) + 1 elementwise, computed as relu(x) + exp(min(x, 0)): the same function without the cancellation of
 * (e^x − 1) + 1, which rounds features to 0 in float32 from x < −17 on. Its gradient is 1 where x > 0 and e^x where
 * x ≤ 0, that is dy · min(y, 1). On the blas backend one kernel computes it and one its gradient (instead of 4 ops
 * forward and 6 backward) with the composite's values; elsewhere it runs the composite. Neither form has a second
 * derivative (tfjs's Minimum gradient is not differentiable): tf.grad of a gradient through it throws.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { eluPlusOne } from "./fused.ts";
 * const y = eluPlusOne(tf.tensor1d([-1, 0, 2]));
 * console.log(Array.from(y.dataSync()).map((v) => v.toFixed(3)).join(" ")); // 0.368 1.000 3.000
 * ```
 */
export function eluPlusOne<T extends tf.Tensor>(x: T): T {
  if (!(x instanceof tf.Tensor)) throw new TypeError("eluPlusOne: x must be a tf.Tensor");
  if (hasFloat32Kernel(ELU_PLUS_ONE, [x]) && sizeOf(x.shape) > 0) return eluPlusOneFused(x) as T;
  return tf.tidy(() => tf.add(tf.relu(x), tf.exp(tf.minimum(x, 0)))) as T;
}

/**
 * Registers the gradients of Softmax, Relu, Sum and Mean anew, once: on a backend with the fused {@linkcode SOFTMAX_GRAD}
 * and {@linkcode RELU_GRAD} kernels and lib/blas/layout.ts's BROADCAST (the blas backend), for float32 (Softmax: over
 * the last axis) and outside higher-order gradients, those kernels (one pass instead of four ops, or of Step and
 * Multiply; for Sum and Mean, dy broadcast to x's shape instead of multiplied by a new tensor of ones, which tfjs fills
 * one element at a time), with the same values; everywhere else tfjs's own gradients, called as they were.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { registerFusedGradients } from "./fused.ts";
 * registerFusedGradients();
 * const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.softmax(x), tf.tensor1d([1, 0]))))(tf.tensor1d([0, 0]));
 * console.log(Array.from(g.dataSync())); // [0.25, -0.25]
 * const r = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.relu(x), 3)))(tf.tensor1d([-1, 2]));
 * console.log(Array.from(r.dataSync())); // [0, 3]
 * const m = tf.grad((x: tf.Tensor) => tf.sum(tf.mean(x, 1)))(tf.ones([2, 4]));
 * console.log(Array.from(m.dataSync())); // [0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25]
 * ```
 */
export const registerFusedGradients: () => void = gradientsOnce(() => {
  // tfjs's own gradients, read before these replace them: every call that is not fused goes to them.
  const softmax = tf.getGradient(tf.Softmax);
  const relu = tf.getGradient(tf.Relu);
  const broadcastGrad = (own: tf.GradConfig, mean: boolean): tf.GradConfig => ({
    ...own,
    gradFunc: (dy, saved, attrs) => {
      // x may be lib/train/backprop.ts's shape-only stand-in: only its shape and dtype are read.
      const [x] = saved;
      if (x.dtype !== "float32" || sizeOf(x.shape) === 0 || !fusable(BROADCAST, dy as tf.Tensor)) {
        return own.gradFunc(dy, saved, attrs);
      }
      const axes = tf.util.parseAxisParam((attrs as { axis: number | number[] }).axis, x.shape);
      const expanded = x.shape.map((d, i) => (axes.includes(i) ? 1 : d)); // x's shape, reduced axes at 1
      const spread = runKernel(BROADCAST, { x: tf.reshape(dy as tf.Tensor, expanded) }, { shape: x.shape })[0];
      if (!mean) return { x: () => spread };
      // tfjs's Mean gradient: the broadcast dy divided by the number of elements reduced.
      const count = sizeOf(axes.map((axis) => x.shape[axis]));
      return { x: () => tf.div(spread, count) };
    },
  });
  return [
    {
      ...softmax,
      gradFunc: (dy, saved, attrs) => {
        const [y] = saved;
        const dim = (attrs as { dim?: number }).dim;
        const last = dim === -1 || dim === y.rank - 1;
        if (last && y.rank > 0 && sizeOf(y.shape) > 0 && fusable(SOFTMAX_GRAD, dy as tf.Tensor, y)) {
          return { logits: () => runKernel(SOFTMAX_GRAD, { dy: dy as tf.Tensor, y })[0] };
        }
        return softmax.gradFunc(dy, saved, attrs);
      },
    },
    {
      ...relu,
      gradFunc: (dy, saved, attrs) => {
        const [x] = saved;
        if (sizeOf(x.shape) > 0 && fusable(RELU_GRAD, dy as tf.Tensor, x)) {
          return { x: () => runKernel(RELU_GRAD, { dy: dy as tf.Tensor, x })[0] };
        }
        return relu.gradFunc(dy, saved, attrs);
      },
    },
    broadcastGrad(tf.getGradient(tf.Sum), false),
    broadcastGrad(tf.getGradient(tf.Mean), true),
  ];
});
