/**
 * The AdamW update and the gradients' squared norms of lib/train/adam.ts as fused kernels of the `blas` backend: one
 * kernel call updates every variable (where the composite runs about fifteen tf ops per variable), and one computes
 * every gradient's squared L2 norm (two per gradient and a stack). Each does the composite's float32 arithmetic, every
 * operation rounded to float32 in the composite's order, so weights, moments and norms are the same bits:
 *
 * - {@linkcode adamwUpdate}: w, g, m, v → w', m', v' for a list of variables, with the gradient scale of global-norm
 *   clipping and decoupled weight decay;
 * - {@linkcode sumsOfSquares}: Σ x² of each tensor, as one float32 vector.
 *
 * On any other backend, under `ATTNLAB_BLAS_KERNELS=matmul` and for dtypes other than float32, they run the composite
 * tf ops instead.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { f32, hasFloat32Kernel, type Kernel, type KernelArgs, runKernel, type TensorInfo } from "./_util.ts";
import { allocFloat32 } from "./pool.ts";

/**
 * AdamW over N variables: inputs w0, g0, m0, v0, w1, … (each quartet of one shape); attrs {@linkcode AdamwAttrs};
 * outputs [w0', m0', v0', w1', …].
 */
export const ADAMW_UPDATE = "AttnlabAdamwUpdate";
/** Squared L2 norms: inputs x0 … x(N−1), any shapes; output [N], Σ x² of each. */
export const SUMS_OF_SQUARES = "AttnlabSumsOfSquares";

/** The constants of one AdamW update, as JavaScript numbers (each op of the composite rounds them to float32). */
export interface AdamwConstants {
  /** Learning rate of this update. */
  lr: number;
  /** β₁ and β₂. */
  beta1: number;
  beta2: number;
  /** ε. */
  eps: number;
  /** 1-based index of this update, t: the bias corrections are 1 − β₁ᵗ and 1 − β₂ᵗ. */
  t: number;
  /** The factor the gradients are multiplied by first (global-norm clipping); 1 leaves them as they are. */
  scale: number;
  /** Decoupled weight decay λ: a variable with `decay` is multiplied by 1 − lr·λ first. */
  weightDecay: number;
}

/** One variable of {@linkcode adamwUpdate}: its value, gradient and moments (one shape), and whether it decays. */
export interface AdamwSlot {
  w: tf.Tensor;
  g: tf.Tensor;
  m: tf.Tensor;
  v: tf.Tensor;
  decay: boolean;
}

/** The attributes of {@linkcode ADAMW_UPDATE}: the composite's scalar operands, before float32 rounding. */
export interface AdamwAttrs {
  /** Number of variables. */
  count: number;
  scale: number;
  beta1: number;
  /** 1 − β₁, computed in double as the composite computes it. */
  oneMinusBeta1: number;
  beta2: number;
  oneMinusBeta2: number;
  /** 1 − β₁ᵗ and 1 − β₂ᵗ. */
  bias1: number;
  bias2: number;
  eps: number;
  lr: number;
  /** Per variable: 1 − lr·λ where it decays, null where not. */
  keep: (number | null)[];
}

/** The composite's scalar operands for `constants` (shared by both paths, so that they round the same doubles). */
function adamwAttrs(slots: readonly AdamwSlot[], c: AdamwConstants): AdamwAttrs {
  return {
    count: slots.length,
    scale: c.scale,
    beta1: c.beta1,
    oneMinusBeta1: 1 - c.beta1,
    beta2: c.beta2,
    oneMinusBeta2: 1 - c.beta2,
    bias1: 1 - c.beta1 ** c.t,
    bias2: 1 - c.beta2 ** c.t,
    eps: c.eps,
    lr: c.lr,
    keep: slots.map((s) => (s.decay && c.weightDecay > 0 ? 1 - c.lr * c.weightDecay : null)),
  };
}

function adamwKernel({ inputs, backend, attrs }: KernelArgs): TensorInfo[] {
  const a = attrs as unknown as AdamwAttrs;
  const fr = Math.fround;
  // Each scalar as the float32 tensor the composite makes of it.
  const scale = fr(a.scale), b1 = fr(a.beta1), c1 = fr(a.oneMinusBeta1), b2 = fr(a.beta2), c2 = fr(a.oneMinusBeta2);
  const bias1 = fr(a.bias1), bias2 = fr(a.bias2), eps = fr(a.eps), lr = fr(a.lr);
  const scaled = a.scale !== 1;
  const out: TensorInfo[] = [];
  for (let i = 0; i < a.count; i++) {
    const w = inputs[`w${i}`]!;
    const wv = f32(backend, w), gv = f32(backend, inputs[`g${i}`]!);
    const mv = f32(backend, inputs[`m${i}`]!), vv = f32(backend, inputs[`v${i}`]!);
    const n = wv.length;
    const w1 = allocFloat32(n), m1 = allocFloat32(n), v1 = allocFloat32(n);
    const decays = a.keep[i] !== null;
    const keep = decays ? fr(a.keep[i]!) : 1;
    for (let j = 0; j < n; j++) {
      // lib/train/adam.ts's ops in order, each result rounded to float32 as its tensor stores it:
      // g = g0·scale; m' = m·β₁ + g·(1 − β₁); v' = v·β₂ + g²·(1 − β₂);
      // u = (m' / bias1) / (sqrt(v' / bias2) + ε); w' = (decays ? w·keep : w) − u·lr.
      const g = scaled ? fr(gv[j] * scale) : gv[j];
      const m = fr(fr(mv[j] * b1) + fr(g * c1));
      const v = fr(fr(vv[j] * b2) + fr(fr(g * g) * c2));
      const u = fr(fr(m / bias1) / fr(fr(Math.sqrt(fr(v / bias2))) + eps));
      const kept = decays ? fr(wv[j] * keep) : wv[j];
      w1[j] = kept - fr(u * lr);
      m1[j] = m;
      v1[j] = v;
    }
    out.push(
      backend.makeTensorInfo(w.shape, "float32", w1),
      backend.makeTensorInfo(w.shape, "float32", m1),
      backend.makeTensorInfo(w.shape, "float32", v1),
    );
  }
  return out;
}

function sumsOfSquaresKernel({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const count = (attrs as { count: number }).count;
  const out = allocFloat32(count);
  for (let i = 0; i < count; i++) {
    const xv = f32(backend, inputs[`x${i}`]!);
    // tf.sum(tf.square(x)): squares rounded to float32, summed in order in a double, rounded once.
    let s = 0;
    for (let j = 0; j < xv.length; j++) s += Math.fround(xv[j] * xv[j]);
    out[i] = s;
  }
  return backend.makeTensorInfo([count], "float32", out);
}

/**
 * The kernels of this module, by name, for the `blas` backend to register (through lib/blas/fused.ts's
 * `fusedKernels`).
 *
 * @example
 * ```ts
 * import { ADAMW_UPDATE, fusedAdamKernels } from "./fused_adam.ts";
 * console.log(ADAMW_UPDATE in fusedAdamKernels()); // true
 * ```
 */
export function fusedAdamKernels(): Record<string, Kernel> {
  return {
    [ADAMW_UPDATE]: adamwKernel as unknown as Kernel,
    [SUMS_OF_SQUARES]: sumsOfSquaresKernel,
  };
}

function checkNumber(owner: string, name: string, value: unknown, ok: (x: number) => boolean, what: string): void {
  if (typeof value !== "number") throw new TypeError(`${owner}: ${name} must be a number, got ${typeof value}`);
  if (!ok(value)) throw new RangeError(`${owner}: ${name} must be ${what}, got ${value}`);
}

function checkAdamw(slots: readonly AdamwSlot[], constants: AdamwConstants): void {
  const owner = "adamwUpdate";
  if (!Array.isArray(slots)) throw new TypeError(`${owner}: slots must be an array of { w, g, m, v, decay }`);
  slots.forEach((s, i) => {
    if (s === null || typeof s !== "object") throw new TypeError(`${owner}: slots[${i}] must be { w, g, m, v, decay }`);
    for (const key of ["w", "g", "m", "v"] as const) {
      if (!(s[key] instanceof tf.Tensor)) throw new TypeError(`${owner}: slots[${i}].${key} must be a tf.Tensor`);
      if (!tf.util.arraysEqual(s[key].shape, s.w.shape)) {
        throw new RangeError(
          `${owner}: slots[${i}].${key} has shape [${s[key].shape}], expected w's shape [${s.w.shape}]`,
        );
      }
    }
    if (typeof s.decay !== "boolean") throw new TypeError(`${owner}: slots[${i}].decay must be true or false`);
  });
  if (constants === null || typeof constants !== "object") {
    throw new TypeError(`${owner}: constants must be { lr, beta1, beta2, eps, t, scale, weightDecay }`);
  }
  const { lr, beta1, beta2, eps, t, scale, weightDecay } = constants;
  checkNumber(owner, "constants.lr", lr, (x) => x >= 0 && x < Infinity, "finite and >= 0");
  checkNumber(owner, "constants.beta1", beta1, (x) => x >= 0 && x < 1, "in [0, 1)");
  checkNumber(owner, "constants.beta2", beta2, (x) => x >= 0 && x < 1, "in [0, 1)");
  checkNumber(owner, "constants.eps", eps, (x) => x > 0 && x < Infinity, "finite and > 0");
  checkNumber(owner, "constants.t", t, (x) => Number.isInteger(x) && x >= 1, "an integer >= 1 (the 1-based step)");
  checkNumber(owner, "constants.scale", scale, (x) => x > 0 && x < Infinity, "finite and > 0");
  checkNumber(owner, "constants.weightDecay", weightDecay, (x) => x >= 0 && x < Infinity, "finite and >= 0");
}

function adamwComposite(slots: readonly AdamwSlot[], a: AdamwAttrs): tf.Tensor[][] {
  return slots.map(({ w, g: g0, m, v }, i) => {
    const g = a.scale === 1 ? g0 : tf.mul(g0, a.scale); // [...shape]
    const m1 = tf.add(tf.mul(m, a.beta1), tf.mul(g, a.oneMinusBeta1));
    const v1 = tf.add(tf.mul(v, a.beta2), tf.mul(tf.square(g), a.oneMinusBeta2));
    const update = tf.div(tf.div(m1, a.bias1), tf.add(tf.sqrt(tf.div(v1, a.bias2)), a.eps));
    // Decoupled decay: shrink w by lr·λ before the Adam step, independent of the gradient scale.
    const kept = a.keep[i] === null ? w : tf.mul(w, a.keep[i]!);
    return [tf.sub(kept, tf.mul(update, a.lr)), m1, v1];
  });
}

/**
 * One AdamW update of each variable in `slots`, as lib/train/adam.ts applies it: with g the gradient times
 * `constants.scale`, m' = β₁m + (1 − β₁)g, v' = β₂v + (1 − β₂)g², and
 * w' = w·(1 − lr·λ) − lr · (m' / (1 − β₁ᵗ)) / (sqrt(v' / (1 − β₂ᵗ)) + ε), the decay only where `decay` is set.
 * Returns new tensors [w', m', v'] per slot (the caller assigns them and disposes them). On the blas backend one kernel
 * computes them all, with the float32 values of the composite every other backend runs, bit for bit.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { adamwUpdate } from "./fused_adam.ts";
 * const [w, g, m, v] = [tf.tensor1d([1, -1]), tf.tensor1d([0.5, -2]), tf.zeros([2]), tf.zeros([2])];
 * const constants = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, t: 1, scale: 1, weightDecay: 0 };
 * const [[w1, m1, v1]] = adamwUpdate([{ w, g, m, v, decay: false }], constants);
 * // The first step moves each weight by lr against the gradient's sign.
 * console.log(Array.from(w1.dataSync()).map((x) => x.toFixed(3))); // ["0.900", "-0.900"]
 * tf.dispose([w, g, m, v, w1, m1, v1]);
 * ```
 */
export function adamwUpdate(slots: readonly AdamwSlot[], constants: AdamwConstants): tf.Tensor[][] {
  checkAdamw(slots, constants);
  const attrs = adamwAttrs(slots, constants);
  const tensors = slots.flatMap((s) => [s.w, s.g, s.m, s.v]);
  if (slots.length === 0) return [];
  if (!hasFloat32Kernel(ADAMW_UPDATE, tensors)) return tf.tidy(() => adamwComposite(slots, attrs));
  const inputs: Record<string, tf.Tensor> = {};
  slots.forEach((s, i) => {
    inputs[`w${i}`] = s.w;
    inputs[`g${i}`] = s.g;
    inputs[`m${i}`] = s.m;
    inputs[`v${i}`] = s.v;
  });
  const out = runKernel(ADAMW_UPDATE, inputs, attrs as unknown as Record<string, unknown>);
  return slots.map((_, i) => out.slice(3 * i, 3 * i + 3));
}

/**
 * The squared L2 norm Σ x² of each tensor, as one float32 vector [N]: what
 * `tf.stack(tensors.map((t) => tf.sum(tf.square(tf.cast(t, "float32")))))` computes, bit for bit. On the blas backend
 * one kernel computes them all (float32 tensors); elsewhere that composite runs.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { sumsOfSquares } from "./fused_adam.ts";
 * const sq = sumsOfSquares([tf.tensor1d([3, 4]), tf.tensor2d([[1, 1]])]);
 * console.log(Array.from(sq.dataSync())); // [25, 2]
 * ```
 */
export function sumsOfSquares(tensors: readonly tf.Tensor[]): tf.Tensor1D {
  if (!Array.isArray(tensors) || tensors.some((t) => !(t instanceof tf.Tensor))) {
    throw new TypeError("sumsOfSquares: tensors must be an array of tf.Tensors");
  }
  if (tensors.length === 0) return tf.zeros([0]) as tf.Tensor1D;
  if (!hasFloat32Kernel(SUMS_OF_SQUARES, tensors)) {
    // [N]
    return tf.tidy(() => tf.stack(tensors.map((t) => tf.sum(tf.square(tf.cast(t, "float32"))))) as tf.Tensor1D);
  }
  const inputs: Record<string, tf.Tensor> = {};
  tensors.forEach((t, i) => (inputs[`x${i}`] = t));
  return runKernel(SUMS_OF_SQUARES, inputs, { count: tensors.length })[0] as tf.Tensor1D;
}
