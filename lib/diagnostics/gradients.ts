/**
 * Gradient diagnostics for attention (Proposition 3.1 of "The Devil in Linear Transformer", Qin et al. 2022).
 *
 * Score level: with p_j = f(s_j) / Σ_k f(s_k) (f = exp for softmax, f = identity for linear attention),
 * {@linkcode scoreJacobian} differentiates p by autodiff and {@linkcode scoreJacobianClosedForm} evaluates the
 * paper's formula ∂p_j/∂s_k = f'(s_k)/f(s_k) · (1[j=k] p_j − p_j p_k). {@linkcode maxScoreGradient} and
 * {@linkcode maxLinearBoundRatio} measure the bounds |∂p/∂s| <= 1/4 (softmax) and |∂p_j/∂s_k| · 4|s_k| <= 1 (linear).
 *
 * Layer level: {@linkcode outputJacobian}, {@linkcode layerJacobianNorms} and {@linkcode layerGradientNorms}
 * differentiate any registered attention variant with respect to q, k and v.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { checkQKV, type QKV, type VariantName, variants } from "../attention/mod.ts";
import { randomNormal } from "../random.ts";
import { checkNotDisposed, describe } from "./_checks.ts";

/** The two score normalisations: "softmax" (f = exp) and "linear" (f = identity). */
export const SCORE_KINDS = ["softmax", "linear"] as const;

/** One of {@linkcode SCORE_KINDS}. */
export type ScoreKind = typeof SCORE_KINDS[number];

/** Floats held by one chunk of a batched Jacobian; bounds the memory of the batched reverse passes. */
const CHUNK_FLOATS = 1 << 22;

function checkKind(owner: string, kind: unknown): ScoreKind {
  if (typeof kind !== "string" || !(SCORE_KINDS as readonly string[]).includes(kind)) {
    throw new Error(`${owner}: kind must be "softmax" or "linear", got ${describe(kind)}`);
  }
  return kind as ScoreKind;
}

/**
 * Checks score vectors ([n] or [batch, n]) and returns them as [batch, n].
 * `positive`: every score must be > 0 (the closed form divides by f(s_k) = s_k for linear attention).
 */
function checkScores(
  owner: string,
  scores: unknown,
  kind: ScoreKind,
  ranks: readonly number[],
  positive = false,
): tf.Tensor2D {
  const shapes = ranks.map((r) => (r === 1 ? "[n]" : "[batch, n]")).join(" or ");
  checkNotDisposed(owner, "scores", scores);
  if (!(scores instanceof tf.Tensor) || !ranks.includes(scores.rank)) {
    throw new Error(`${owner}: scores must be a float32 tf.Tensor of shape ${shapes}, got ${describe(scores)}`);
  }
  if (scores.dtype !== "float32") {
    throw new Error(`${owner}: scores must be float32, got ${scores.dtype}; use tf.cast(scores, "float32")`);
  }
  const n = scores.shape[scores.rank - 1];
  if (n < 1 || scores.size === 0) {
    throw new Error(
      `${owner}: scores must hold at least one vector of at least one score, got shape [${scores.shape}]`,
    );
  }
  const data = scores.dataSync();
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new Error(`${owner}: scores must be finite, got ${data[i]} at flat index ${i}`);
    }
  }
  if (kind === "linear") {
    for (let row = 0; row < data.length / n; row++) {
      let sum = 0;
      for (let k = 0; k < n; k++) {
        const s = data[row * n + k];
        if (s < 0 || (positive && s === 0)) {
          throw new Error(
            `${owner}: linear attention needs f(s) = s ${positive ? "> 0" : ">= 0"} for every score, got ${s} ` +
              `at vector ${row}, index ${k}; pass the feature-map scores φ(q)·φ(k) of a positive feature map` +
              (positive ? ", or use scoreJacobian (autodiff), which accepts zero scores" : ""),
          );
        }
        sum += s;
      }
      if (sum === 0) {
        throw new Error(
          `${owner}: linear attention needs Σ f(s) = Σ s > 0, but vector ${row} sums to 0 (all its scores are 0), ` +
            `so p = s / Σ s is undefined; give it at least one positive score`,
        );
      }
    }
  }
  return (scores.rank === 1 ? tf.expandDims(scores, 0) : tf.clone(scores)) as tf.Tensor2D;
}

/** Autodiff Jacobians of checked scores [b, n] -> [b, n, n], in chunks of rows. */
function autodiffJacobians(scores: tf.Tensor2D, kind: ScoreKind): tf.Tensor3D {
  const [b, n] = scores.shape;
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_FLOATS / (n * n)));
  const parts: tf.Tensor3D[] = [];
  for (let start = 0; start < b; start += rowsPerChunk) {
    const size = Math.min(rowsPerChunk, b - start);
    parts.push(tf.tidy(() => {
      const s = tf.slice(scores, [start, 0], [size, n]); // [c, n]
      // Subtracting a row constant leaves p unchanged; computed outside the gradient, it only prevents overflow.
      const shift = kind === "softmax" ? tf.expandDims(tf.max(s, 1, true), 1) : tf.zeros([size, 1, 1]); // [c, 1, 1]
      // Copy j of the row is differentiated through p_j only: one reverse pass gives every row of J at once.
      const copies = tf.tile(tf.expandDims(s, 1), [1, n, 1]); // [c, n (j), n (k)]
      const pick = tf.eye(n); // [n, n]
      return tf.grad((x: tf.Tensor) => {
        const f = kind === "softmax" ? tf.exp(tf.sub(x, shift)) : x; // [c, n, n]
        const p = tf.div(f, tf.sum(f, -1, true)); // [c, n, n]
        return tf.sum(tf.mul(p, pick));
      })(copies) as tf.Tensor3D; // [c, n (j), n (k)]
    }));
  }
  const out = parts.length === 1 ? parts[0] : tf.concat(parts, 0);
  if (parts.length > 1) tf.dispose(parts);
  return out;
}

/**
 * The Jacobian J[j][k] = ∂p_j/∂s_k of p_j = f(s_j) / Σ_k f(s_k), by automatic differentiation (one batched reverse
 * pass: row j of J is the gradient of p_j). f = exp for "softmax", f = identity for "linear". Linear scores must be
 * >= 0 with a positive sum; anything else throws.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { scoreJacobian } from "./gradients.ts";
 * // Two equal scores: p = (1/2, 1/2), so ∂p_0/∂s_0 = p_0 (1 - p_0) = 1/4.
 * const j = scoreJacobian(tf.tensor1d([3, 3]), "softmax");
 * console.log(j.arraySync()); // [[0.25, -0.25], [-0.25, 0.25]]
 * ```
 */
export function scoreJacobian(scores: tf.Tensor1D, kind: ScoreKind): tf.Tensor2D {
  const owner = "scoreJacobian";
  const k = checkKind(owner, kind);
  if (!(scores instanceof tf.Tensor) || scores.rank !== 1) {
    throw new Error(
      `${owner}: scores must be a rank-1 tf.Tensor [n], got ${describe(scores)}; ` +
        `for a batch [batch, n] use scoreJacobians`,
    );
  }
  return tf.tidy(() => tf.squeeze(autodiffJacobians(checkScores(owner, scores, k, [1]), k), [0]) as tf.Tensor2D);
}

/**
 * {@linkcode scoreJacobian} for a batch of score vectors: scores [batch, n] -> Jacobians [batch, n, n].
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { scoreJacobians } from "./gradients.ts";
 * const j = scoreJacobians(tf.tensor2d([[1, 2, 3], [0.5, 0.5, 0.5]]), "linear");
 * console.log(j.shape.join("x")); // 2x3x3
 * ```
 */
export function scoreJacobians(scores: tf.Tensor2D, kind: ScoreKind): tf.Tensor3D {
  const owner = "scoreJacobians";
  const k = checkKind(owner, kind);
  return tf.tidy(() => autodiffJacobians(checkScores(owner, scores, k, [2]), k));
}

/**
 * The paper's closed form ∂p_j/∂s_k = f'(s_k)/f(s_k) · (1[j=k] p_j − p_j p_k): the prefactor is 1 for softmax and
 * 1/s_k for linear attention. Accepts [n] (returns [n, n]) or [batch, n] (returns [batch, n, n]). Linear scores must
 * be > 0, since the formula divides by f(s_k) = s_k.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { scoreJacobianClosedForm } from "./gradients.ts";
 * // Linear, s = (1, 3): p = (1/4, 3/4), ∂p_0/∂s_0 = (1/1)(1/4 - 1/16) = 3/16.
 * const j = scoreJacobianClosedForm(tf.tensor1d([1, 3]), "linear") as tf.Tensor2D;
 * console.log(j.arraySync()[0][0]); // 0.1875
 * ```
 */
export function scoreJacobianClosedForm<T extends tf.Tensor1D | tf.Tensor2D>(
  scores: T,
  kind: ScoreKind,
): T extends tf.Tensor1D ? tf.Tensor2D : tf.Tensor3D {
  const owner = "scoreJacobianClosedForm";
  const k = checkKind(owner, kind);
  const rank = scores instanceof tf.Tensor ? scores.rank : 0;
  return tf.tidy(() => {
    const s = checkScores(owner, scores, k, [1, 2], true); // [b, n]
    const f = k === "softmax" ? tf.exp(tf.sub(s, tf.max(s, 1, true))) : s; // [b, n], scaled by a row constant
    const p = tf.div(f, tf.sum(f, 1, true)); // [b, n]
    const prefactor = k === "softmax" ? tf.onesLike(s) : tf.reciprocal(s); // [b, n]: f'(s_k)/f(s_k)
    const n = s.shape[1];
    const diag = tf.mul(tf.expandDims(tf.eye(n), 0), tf.expandDims(p, 2)); // [b, n, n]: 1[j=k] p_j
    const outer = tf.mul(tf.expandDims(p, 2), tf.expandDims(p, 1)); // [b, n, n]: p_j p_k
    const j = tf.mul(tf.sub(diag, outer), tf.expandDims(prefactor, 1)); // [b, n (j), n (k)]
    return rank === 1 ? tf.squeeze(j, [0]) : j;
  }) as T extends tf.Tensor1D ? tf.Tensor2D : tf.Tensor3D;
}

/**
 * The largest |∂p_j/∂s_k| (autodiff) over every score vector of a batch ([n] or [batch, n]).
 * Softmax attention keeps it <= 1/4; linear attention has no such bound.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { maxScoreGradient } from "./gradients.ts";
 * console.log(maxScoreGradient(tf.tensor2d([[40, 40, -40], [0, 1, 2]]), "softmax")); // 0.25
 * ```
 */
export function maxScoreGradient(scores: tf.Tensor1D | tf.Tensor2D, kind: ScoreKind): number {
  const owner = "maxScoreGradient";
  const k = checkKind(owner, kind);
  return tf.tidy(() => tf.max(tf.abs(autodiffJacobians(checkScores(owner, scores, k, [1, 2]), k))).dataSync()[0]);
}

/**
 * For linear attention, the largest |∂p_j/∂s_k| · 4|s_k| (autodiff) over every score vector of a batch
 * ([n] or [batch, n]). Proposition 3.1 bounds it by 1: |∂p_j/∂s_k| <= 1/(4|s_k|), so the gradient can grow like
 * 1/s_k as scores approach 0. Two equal scores reach the bound.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { maxLinearBoundRatio } from "./gradients.ts";
 * const r = maxLinearBoundRatio(tf.tensor1d([1e-3, 1e-3]));
 * console.log(Math.abs(r - 1) < 1e-4); // true
 * ```
 */
export function maxLinearBoundRatio(scores: tf.Tensor1D | tf.Tensor2D): number {
  const owner = "maxLinearBoundRatio";
  return tf.tidy(() => {
    const s = checkScores(owner, scores, "linear", [1, 2]); // [b, n]
    const j = autodiffJacobians(s, "linear"); // [b, n (j), n (k)]
    const scaled = tf.mul(tf.abs(j), tf.expandDims(tf.mul(tf.abs(s), 4), 1)); // [b, n, n]
    return tf.max(scaled).dataSync()[0];
  });
}

/** Which attention variant a layer diagnostic differentiates, and how it is called. */
export interface LayerOptions {
  /** A key of `variants` (lib/attention). */
  variant: VariantName;
  /** Options passed to the variant (e.g. `{ norm: "none" }` for `norm`); default `{}`. */
  variantOptions?: Record<string, unknown>;
  /** "attend" (fast path, default) or "reference" (the naive weights()·v path). */
  path?: "attend" | "reference";
}

/** Options of {@linkcode outputJacobian}. */
export interface OutputJacobianOptions extends LayerOptions {
  /** The input to differentiate with respect to. */
  wrt: "q" | "k" | "v";
}

/** Options of {@linkcode layerGradientNorms}. */
export interface GradientNormOptions extends LayerOptions {
  /** Seed of the N(0, 1) cotangent; default 0. */
  seed?: number;
}

/** Norms of one Jacobian J [outputs, inputs]. */
export interface JacobianSummary {
  /** ‖J‖_F. */
  frobenius: number;
  /** max_i Σ_j |J_ij|: the operator norm for the max norm (largest output change per unit input change). */
  maxRowSum: number;
  /** max |J_ij|. */
  maxAbs: number;
}

const LAYER_KEYS = ["variant", "variantOptions", "path"] as const;

function resolveLayer(owner: string, options: unknown, extra: readonly string[]) {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new Error(`${owner}: options must be an object such as { variant: "norm" }, got ${describe(options)}`);
  }
  const o = options as Record<string, unknown>;
  const allowed = [...LAYER_KEYS, ...extra];
  for (const key of Object.keys(o)) {
    if (!allowed.includes(key)) {
      throw new Error(`${owner}: unknown option "${key}"; valid options are ${allowed.join(", ")}`);
    }
  }
  if (typeof o.variant !== "string" || !(o.variant in variants)) {
    throw new Error(
      `${owner}: option variant must be one of ${Object.keys(variants).map((v) => `"${v}"`).join(", ")}, ` +
        `got ${describe(o.variant)}`,
    );
  }
  const variantOptions = o.variantOptions ?? {};
  if (variantOptions === null || typeof variantOptions !== "object" || Array.isArray(variantOptions)) {
    throw new Error(`${owner}: option variantOptions must be an object of variant options, got ${describe(o)}`);
  }
  const path = o.path ?? "attend";
  if (path !== "attend" && path !== "reference") {
    throw new Error(`${owner}: option path must be "attend" or "reference", got ${describe(path)}`);
  }
  const variant = variants[o.variant as VariantName];
  const call = (qkv: QKV): tf.Tensor4D =>
    // deno-lint-ignore no-explicit-any
    (variant[path] as (x: QKV, options: any) => tf.Tensor4D)(qkv, variantOptions);
  return { call, o };
}

/** Runs a variant once on qkv so its option and input errors surface before any gradient is taken. */
function probe(call: (qkv: QKV) => tf.Tensor4D, qkv: QKV): number[] {
  const out = call(qkv);
  const shape = out.shape.slice();
  out.dispose();
  return shape;
}

/**
 * The full Jacobian of a variant's output [b, h, n, dv] with respect to q, k or v, flattened to
 * [b·h·n·dv, b·h·n·d]: J[i][j] = ∂out_i/∂x_j in row-major order. Computed by reverse passes batched over copies of
 * the input along the batch axis (variants treat batch entries independently), so it costs O(outputs × inputs)
 * memory in chunks: keep inputs small.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { outputJacobian } from "./gradients.ts";
 * const x = tf.randomNormal([1, 1, 3, 2]) as tf.Tensor4D;
 * const j = outputJacobian({ q: x, k: x, v: x }, { variant: "softmax", wrt: "v" });
 * console.log(j.shape.join("x")); // 6x6
 * ```
 */
export function outputJacobian(qkv: QKV, options: OutputJacobianOptions): tf.Tensor2D {
  const owner = "outputJacobian";
  const { call, o } = resolveLayer(owner, options, ["wrt"]);
  if (o.wrt !== "q" && o.wrt !== "k" && o.wrt !== "v") {
    throw new Error(`${owner}: option wrt must be "q", "k" or "v", got ${describe(o.wrt)}`);
  }
  checkQKV(owner, qkv);
  const wrt = o.wrt;
  const outShape = probe(call, qkv);
  const outputs = outShape.reduce((a, b) => a * b, 1);
  const x = qkv[wrt];
  const inputs = x.size;
  const perCopy = Math.max(inputs, outputs, qkv.q.shape[2] * qkv.q.shape[2] * qkv.q.shape[0] * qkv.q.shape[1]);
  const copiesPerChunk = Math.max(1, Math.floor(CHUNK_FLOATS / perCopy));
  const parts: tf.Tensor2D[] = [];
  for (let start = 0; start < outputs; start += copiesPerChunk) {
    const m = Math.min(copiesPerChunk, outputs - start);
    parts.push(tf.tidy(() => {
      const tiled = {
        q: tf.tile(qkv.q, [m, 1, 1, 1]), // [m·b, h, n, dk]
        k: tf.tile(qkv.k, [m, 1, 1, 1]), // [m·b, h, n, dk]
        v: tf.tile(qkv.v, [m, 1, 1, 1]), // [m·b, h, n, dv]
      } as QKV;
      const picks = tf.oneHot(tf.range(start, start + m, 1, "int32"), outputs); // [m, outputs]
      const cot = tf.reshape(tf.cast(picks, "float32"), [m * outShape[0], ...outShape.slice(1)]); // [m·b, h, n, dv]
      const g = tf.grad((input: tf.Tensor) => tf.sum(tf.mul(call({ ...tiled, [wrt]: input } as QKV), cot)))(
        tiled[wrt],
      ); // [m·b, h, n, d]
      return tf.reshape(g, [m, inputs]) as tf.Tensor2D;
    }));
  }
  const out = parts.length === 1 ? parts[0] : tf.concat(parts, 0);
  if (parts.length > 1) tf.dispose(parts);
  return out;
}

function summarise(j: tf.Tensor2D): JacobianSummary {
  return tf.tidy(() => {
    const abs = tf.abs(j); // [outputs, inputs]
    return {
      frobenius: Math.sqrt(tf.sum(tf.square(j)).dataSync()[0]),
      maxRowSum: tf.max(tf.sum(abs, 1)).dataSync()[0],
      maxAbs: tf.max(abs).dataSync()[0],
    };
  });
}

/**
 * Norms of the Jacobian of a variant's output with respect to q and to k (see {@linkcode outputJacobian}).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { layerJacobianNorms } from "./gradients.ts";
 * const x = tf.randomNormal([1, 2, 4, 3]) as tf.Tensor4D;
 * const { q, k } = layerJacobianNorms({ q: x, k: x, v: x }, { variant: "norm" });
 * console.log(q.frobenius > 0 && k.maxAbs > 0); // true
 * ```
 */
export function layerJacobianNorms(qkv: QKV, options: LayerOptions): { q: JacobianSummary; k: JacobianSummary } {
  resolveLayer("layerJacobianNorms", options, []);
  const result = {} as { q: JacobianSummary; k: JacobianSummary };
  for (const wrt of ["q", "k"] as const) {
    const j = outputJacobian(qkv, { ...options, wrt });
    result[wrt] = summarise(j);
    j.dispose();
  }
  return result;
}

/**
 * Frobenius norms of the gradients of ⟨out, u⟩ with respect to q, k and v, for a seeded N(0, 1) cotangent u of the
 * output's shape: one reverse pass, cheap at any size.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { layerGradientNorms } from "./gradients.ts";
 * const x = tf.randomNormal([1, 2, 16, 8]) as tf.Tensor4D;
 * const g = layerGradientNorms({ q: x, k: x, v: x }, { variant: "linear", seed: 1 });
 * console.log([g.q, g.k, g.v].every(Number.isFinite)); // true
 * ```
 */
export function layerGradientNorms(qkv: QKV, options: GradientNormOptions): { q: number; k: number; v: number } {
  const owner = "layerGradientNorms";
  const { call, o } = resolveLayer(owner, options, ["seed"]);
  const seed = o.seed ?? 0;
  if (typeof seed !== "number" || !Number.isInteger(seed)) {
    throw new Error(`${owner}: option seed must be an integer, got ${describe(seed)}`);
  }
  checkQKV(owner, qkv);
  const outShape = probe(call, qkv);
  return tf.tidy(() => {
    const u = randomNormal<tf.Tensor4D>(outShape, { seed }); // [b, h, n, dv]
    const grads = tf.grads((q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) => tf.sum(tf.mul(call({ q, k, v } as QKV), u)))([
      qkv.q,
      qkv.k,
      qkv.v,
    ]);
    const norms = grads.map((g) => Math.sqrt(tf.sum(tf.square(g)).dataSync()[0]));
    return { q: norms[0], k: norms[1], v: norms[2] };
  });
}
