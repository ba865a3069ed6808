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
 * Sweeps and verdicts: {@linkcode gradientSweep} measures the layer-level gradient (and the score-level one) of random
 * layers as their inputs are scaled or shifted, {@linkcode growthExponents} fits how fast it grows in a direction,
 * with an interval over seeds, {@linkcode growthVerdict} decides "grows" or "bounded" claims from those intervals,
 * and {@linkcode seedSpread} summarises any measurement over seeds for bands and tables.
 * {@linkcode closedFormDeviation} compares autodiff with the paper's closed form.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { checkQKV, FEATURE_MAPS, type FeatureMap, type QKV, type VariantName, variants } from "../attention/mod.ts";
import { fitExponent } from "../bench/fit.ts";
import { randomNormal } from "../random.ts";
import { median, tInterval, verdict } from "../stats/mod.ts";
import type { Interval, TInterval, Verdict } from "../stats/mod.ts";
import { type ReadPlan, readPlan, readPlanAsync } from "../read.ts";
import { checkNotDisposed, describe } from "./_checks.ts";
import { type InputSweep, type LayerShape, sweptQKV } from "./inputs.ts";

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
 * On `webgpu`, which cannot read synchronously, the value check reads nothing: it joins the computation, and scores
 * that fail it come back all NaN, so every result made from them is NaN (the shape checks still throw).
 */
function checkScores(
  owner: string,
  scores: unknown,
  kind: ScoreKind,
  ranks: readonly number[],
  positive = false,
): tf.Tensor2D {
  const n = checkScoreTensor(owner, scores, ranks);
  const s = scores as tf.Tensor;
  const asRows = () => (s.rank === 1 ? tf.expandDims(s, 0) : tf.clone(s)) as tf.Tensor2D; // [b, n]
  if (tf.getBackend() !== "webgpu") {
    checkScoreValues(owner, s.dataSync(), { n, kind, positive });
    return asRows();
  }
  return tf.tidy(() => {
    const rows = asRows();
    let valid = tf.all(tf.isFinite(rows)); // []
    if (kind === "linear") {
      const signOk = positive ? tf.all(tf.greater(rows, 0)) : tf.all(tf.greaterEqual(rows, 0));
      valid = tf.logicalAnd(valid, tf.logicalAnd(signOk, tf.all(tf.greater(tf.sum(rows, 1), 0))));
    }
    return tf.mul(rows, tf.where(valid, tf.scalar(1), tf.scalar(NaN))) as tf.Tensor2D;
  });
}

/** Checks the type, rank, dtype and size of score vectors ([n] or [batch, n]), not their values; returns n. */
function checkScoreTensor(owner: string, scores: unknown, ranks: readonly number[]): number {
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
  return n;
}

/**
 * Checks score values read back, vectors of n one after the other: finite, and for linear attention f(s) = s >= 0
 * (> 0 when `positive`) with a positive sum per vector.
 */
function checkScoreValues(
  owner: string,
  data: ArrayLike<number>,
  o: { n: number; kind: ScoreKind; positive: boolean },
): void {
  const { n, kind, positive } = o;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new Error(`${owner}: scores must be finite, got ${data[i]} at flat index ${i}`);
    }
  }
  if (kind !== "linear") return;
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

/**
 * A score diagnostic's read: the scores (checked once read, as checkScores checks them) and the scalars `compute`
 * builds from them as [batch, n], in one read; `finish` gets those scalars' values.
 */
function scorePlan<R>(
  owner: string,
  scores: unknown,
  o: { kind: ScoreKind; ranks: readonly number[]; positive?: boolean },
  compute: (s: tf.Tensor2D) => tf.Tensor[],
  finish: (values: Float32Array[]) => R,
): ReadPlan<R> {
  const n = checkScoreTensor(owner, scores, o.ranks);
  const s = scores as tf.Tensor;
  return {
    // Computed before the values are checked (a bad score gives NaN here, and the check below throws).
    build: () => [s, ...compute((s.rank === 1 ? tf.expandDims(s, 0) : s) as tf.Tensor2D)],
    finish: ([data, ...rest]) => {
      checkScoreValues(owner, data, { n, kind: o.kind, positive: o.positive ?? false });
      return finish(rest);
    },
  };
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
    const j = closedForm(checkScores(owner, scores, k, [1, 2], true), k); // [b, n (j), n (k)]
    return rank === 1 ? tf.squeeze(j, [0]) : j;
  }) as T extends tf.Tensor1D ? tf.Tensor2D : tf.Tensor3D;
}

/** The closed form of checked scores [b, n] -> [b, n (j), n (k)] (see scoreJacobianClosedForm). */
function closedForm(s: tf.Tensor2D, k: ScoreKind): tf.Tensor3D {
  return tf.tidy(() => {
    const f = k === "softmax" ? tf.exp(tf.sub(s, tf.max(s, 1, true))) : s; // [b, n], scaled by a row constant
    const p = tf.div(f, tf.sum(f, 1, true)); // [b, n]
    const prefactor = k === "softmax" ? tf.onesLike(s) : tf.reciprocal(s); // [b, n]: f'(s_k)/f(s_k)
    const n = s.shape[1];
    const diag = tf.mul(tf.expandDims(tf.eye(n), 0), tf.expandDims(p, 2)); // [b, n, n]: 1[j=k] p_j
    const outer = tf.mul(tf.expandDims(p, 2), tf.expandDims(p, 1)); // [b, n, n]: p_j p_k
    return tf.mul(tf.sub(diag, outer), tf.expandDims(prefactor, 1)) as tf.Tensor3D; // [b, n (j), n (k)]
  });
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
  return readPlan(maxScorePlan("maxScoreGradient", scores, kind));
}

/**
 * {@linkcode maxScoreGradient} with its one read (the scores, for their checks, and the result) awaited, for a GPU
 * backend.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { maxScoreGradientAsync } from "./gradients.ts";
 * const s = tf.tensor1d([5, 5]);
 * console.log(await maxScoreGradientAsync(s, "softmax")); // 0.25
 * s.dispose();
 * ```
 */
export async function maxScoreGradientAsync(scores: tf.Tensor1D | tf.Tensor2D, kind: ScoreKind): Promise<number> {
  return await readPlanAsync(maxScorePlan("maxScoreGradientAsync", scores, kind));
}

function maxScorePlan(owner: string, scores: unknown, kind: ScoreKind): ReadPlan<number> {
  const k = checkKind(owner, kind);
  return scorePlan(
    owner,
    scores,
    { kind: k, ranks: [1, 2] },
    (s) => [tf.max(tf.abs(autodiffJacobians(s, k)))],
    ([m]) => m[0],
  );
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
  return readPlan(linearBoundPlan("maxLinearBoundRatio", scores));
}

/**
 * {@linkcode maxLinearBoundRatio} with its one read awaited, for a GPU backend.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { maxLinearBoundRatioAsync } from "./gradients.ts";
 * const s = tf.tensor1d([1e-3, 1e-3]);
 * console.log(Math.abs((await maxLinearBoundRatioAsync(s)) - 1) < 1e-4); // true
 * s.dispose();
 * ```
 */
export async function maxLinearBoundRatioAsync(scores: tf.Tensor1D | tf.Tensor2D): Promise<number> {
  return await readPlanAsync(linearBoundPlan("maxLinearBoundRatioAsync", scores));
}

function linearBoundPlan(owner: string, scores: unknown): ReadPlan<number> {
  return scorePlan(owner, scores, { kind: "linear", ranks: [1, 2] }, (s) => {
    const j = autodiffJacobians(s, "linear"); // [b, n (j), n (k)]
    return [tf.max(tf.mul(tf.abs(j), tf.expandDims(tf.mul(tf.abs(s), 4), 1)))]; // max over [b, n, n]
  }, ([m]) => m[0]);
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
  return readPlan(jacobianNormsPlan("layerJacobianNorms", qkv, options));
}

/**
 * {@linkcode layerJacobianNorms} with its one read (the six norms) awaited, for a GPU backend.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { layerJacobianNormsAsync } from "./gradients.ts";
 * const x = tf.randomNormal([1, 1, 3, 2]) as tf.Tensor4D;
 * const { q, k } = await layerJacobianNormsAsync({ q: x, k: x, v: x }, { variant: "softmax" });
 * console.log(q.maxAbs <= q.maxRowSum && k.maxAbs <= k.frobenius); // true
 * x.dispose();
 * ```
 */
export async function layerJacobianNormsAsync(
  qkv: QKV,
  options: LayerOptions,
): Promise<{ q: JacobianSummary; k: JacobianSummary }> {
  return await readPlanAsync(jacobianNormsPlan("layerJacobianNormsAsync", qkv, options));
}

function jacobianNormsPlan(
  owner: string,
  qkv: QKV,
  options: LayerOptions,
): ReadPlan<{ q: JacobianSummary; k: JacobianSummary }> {
  resolveLayer(owner, options, []);
  // One Jacobian at a time: each is summarised (‖J‖²_F, max row sum, max |J|) and freed before the next.
  const summary = (wrt: "q" | "k") =>
    tf.tidy(() => {
      const j = outputJacobian(qkv, { ...options, wrt }); // [outputs, inputs]
      const abs = tf.abs(j); // [outputs, inputs]
      return tf.stack([tf.sum(tf.square(j)), tf.max(tf.sum(abs, 1)), tf.max(abs)]); // [3]
    });
  const read = (v: Float32Array): JacobianSummary => ({ frobenius: Math.sqrt(v[0]), maxRowSum: v[1], maxAbs: v[2] });
  return { build: () => [summary("q"), summary("k")], finish: ([q, k]) => ({ q: read(q), k: read(k) }) };
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
  return readPlan(gradientNormsPlan("layerGradientNorms", qkv, options));
}

/**
 * {@linkcode layerGradientNorms} with its one read (the three squared norms) awaited, for a GPU backend.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { layerGradientNormsAsync } from "./gradients.ts";
 * const x = tf.randomNormal([1, 2, 16, 8]) as tf.Tensor4D;
 * const g = await layerGradientNormsAsync({ q: x, k: x, v: x }, { variant: "linear", seed: 1 });
 * console.log([g.q, g.k, g.v].every(Number.isFinite)); // true
 * x.dispose();
 * ```
 */
export async function layerGradientNormsAsync(
  qkv: QKV,
  options: GradientNormOptions,
): Promise<{ q: number; k: number; v: number }> {
  return await readPlanAsync(gradientNormsPlan("layerGradientNormsAsync", qkv, options));
}

function gradientNormsPlan(
  owner: string,
  qkv: QKV,
  options: GradientNormOptions,
): ReadPlan<{ q: number; k: number; v: number }> {
  const { call, o } = resolveLayer(owner, options, ["seed"]);
  const seed = o.seed ?? 0;
  if (typeof seed !== "number" || !Number.isInteger(seed)) {
    throw new Error(`${owner}: option seed must be an integer, got ${describe(seed)}`);
  }
  checkQKV(owner, qkv);
  const outShape = probe(call, qkv);
  return {
    build: () => {
      const u = randomNormal<tf.Tensor4D>(outShape, { seed }); // [b, h, n, dv]
      const f = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) => tf.sum(tf.mul(call({ q, k, v } as QKV), u));
      return tf.grads(f)([qkv.q, qkv.k, qkv.v]).map((g) => tf.sum(tf.square(g)));
    },
    finish: ([q, k, v]) => ({ q: Math.sqrt(q[0]), k: Math.sqrt(k[0]), v: Math.sqrt(v[0]) }),
  };
}

/**
 * How far autodiff is from the paper's closed form on a batch of score vectors [batch, n]: `absolute` is
 * max |autodiff − closed form| over every entry, `relative` the largest per-vector maximum divided by the size of
 * the terms the formula adds (p_j p_k f'(s_k)/f(s_k) is at most 1 for softmax and 1/Σ s for linear attention, whose
 * entries span many orders of magnitude). Linear scores must be > 0 (the closed form divides by them).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { closedFormDeviation } from "./gradients.ts";
 * const s = tf.tensor2d([[1, 3], [0.5, 0.25]]);
 * const { absolute, relative } = closedFormDeviation(s, "linear");
 * console.log(absolute < 1e-6, relative < 1e-6); // true true
 * s.dispose();
 * ```
 */
export function closedFormDeviation(scores: tf.Tensor2D, kind: ScoreKind): { absolute: number; relative: number } {
  return readPlan(deviationPlan("closedFormDeviation", scores, kind));
}

/**
 * {@linkcode closedFormDeviation} with its one read (the scores, for their checks, and both deviations) awaited, for a
 * GPU backend.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { closedFormDeviationAsync } from "./gradients.ts";
 * const s = tf.tensor2d([[1, 3], [0.5, 0.25]]);
 * const { absolute, relative } = await closedFormDeviationAsync(s, "linear");
 * console.log(absolute < 1e-6, relative < 1e-6); // true true
 * s.dispose();
 * ```
 */
export async function closedFormDeviationAsync(
  scores: tf.Tensor2D,
  kind: ScoreKind,
): Promise<{ absolute: number; relative: number }> {
  return await readPlanAsync(deviationPlan("closedFormDeviationAsync", scores, kind));
}

function deviationPlan(
  owner: string,
  scores: unknown,
  kind: ScoreKind,
): ReadPlan<{ absolute: number; relative: number }> {
  const k = checkKind(owner, kind);
  return scorePlan(owner, scores, { kind: k, ranks: [2], positive: true }, (s) => {
    const diff = tf.abs(tf.sub(autodiffJacobians(s, k), closedForm(s, k))); // [b, n, n]
    const size = k === "softmax" ? tf.onesLike(tf.sum(s, 1)) : tf.reciprocal(tf.sum(s, 1)); // [b]: the terms' scale
    return [tf.max(diff), tf.max(tf.div(tf.max(diff, [1, 2]), size))];
  }, ([absolute, relative]) => ({ absolute: absolute[0], relative: relative[0] }));
}

/** One attention layer in a sweep: a label for tables and figures, the variant and its options. */
export interface LayerSetup {
  /** Unique label, e.g. `"norm T1 (elu, srms)"`. */
  label: string;
  /** A key of `variants` (lib/attention). */
  variant: VariantName;
  /** Options passed to the variant; default `{}`. A variant with a `seed` option (Performer) gets the sweep's seed unless this sets one. */
  variantOptions?: Record<string, unknown>;
}

/** Options of {@linkcode gradientSweep}. */
export interface GradientSweepOptions {
  /** `"scale"` (q = c·q₀, k = c·k₀) or `"shift"` (q = q₀ − m): see {@linkcode sweptQKV}. */
  sweep: InputSweep;
  /** The values of c (> 0) or m swept. */
  values: readonly number[];
  /** One random layer per seed (non-negative integers): q₀, k₀, v₀, the cotangent u, and Performer's features. */
  seeds: readonly number[];
  /** Sizes; default `SWEEP_SHAPE` (inputs.ts): batch 1, 2 heads, n = 16, d = 8. */
  shape?: LayerShape;
  /** Feature map of the kernel scores s_ij = φ(q_i)·φ(k_j) measured at the score level; default `"elu+1"`. */
  scoreFeatureMap?: FeatureMap;
}

/** One layer-level measurement of {@linkcode gradientSweep}: the gradient g = ∇_{q,k}⟨O, u⟩ of one setup at one input. */
export interface LayerSweepRow {
  setup: string;
  seed: number;
  /** The swept value: c or m. */
  x: number;
  /** ‖g‖ = √(‖∇_q‖² + ‖∇_k‖²); NaN when the gradient is not finite. */
  norm: number;
  /** mean |g| over every entry of ∇_q and ∇_k. */
  mean: number;
  /** max |g| over every entry of ∇_q and ∇_k. */
  max: number;
  /** The median kernel row sum Σ_j s_ij of the same input (see {@linkcode ScoreSweepRow}). */
  rowSum: number;
}

/** One score-level measurement of {@linkcode gradientSweep}, on the kernel scores s_ij = φ(q_i)·φ(k_j) of one input. */
export interface ScoreSweepRow {
  seed: number;
  x: number;
  /** max |∂p_j/∂s_k| of p = s / Σ s over the rows whose scores do not all underflow to 0; NaN if none. */
  maxScoreGradient: number;
  /** The median row sum Σ_j s_ij over all rows. */
  rowSum: number;
  /** The smallest positive row sum. */
  minRowSum: number;
  /** Rows whose scores all underflow to 0 in float32 (p = s / Σ s is undefined there). */
  zeroRows: number;
}

/**
 * The score level of one sweep input: the kernel scores [rows, n], their row sums [rows] and max |∂p/∂s| over the
 * rows whose sum is positive (the others, whose scores all underflow to 0, have no p = s / Σ s: they are swapped for
 * ones before the Jacobian and masked out of the maximum, so no second read is needed to drop them).
 */
function scoreTensors(qkv: QKV, featureMap: FeatureMap): tf.Tensor[] {
  const n = qkv.q.shape[2];
  const all = tf.reshape(variants.norm.weights(qkv, { featureMap }), [-1, n]) as tf.Tensor2D; // [b·h·n, n]
  const sums = tf.sum(all, 1); // [b·h·n]
  const keep = tf.expandDims(tf.greater(sums, 0), 1); // [b·h·n, 1]
  const safe = tf.where(tf.broadcastTo(keep, all.shape), all, tf.onesLike(all)) as tf.Tensor2D; // [b·h·n, n]
  const j = tf.abs(autodiffJacobians(safe, "linear")); // [b·h·n, n (j), n (k)]
  const kept = tf.where(tf.broadcastTo(tf.expandDims(keep, 2), j.shape), j, tf.zerosLike(j)); // [b·h·n, n, n]
  return [all, sums, tf.max(kept)];
}

/** The score-level row from scoreTensors' values; the counted rows' scores are checked as maxScoreGradient checks. */
function scoreLevel(owner: string, [all, sums, max]: Float32Array[]): Omit<ScoreSweepRow, "seed" | "x"> {
  const n = all.length / sums.length;
  const keep = Array.from(sums).flatMap((sum, i) => (sum > 0 ? [i] : []));
  const kept = new Float32Array(keep.length * n);
  keep.forEach((row, i) => kept.set(all.subarray(row * n, (row + 1) * n), i * n));
  checkScoreValues(owner, kept, { n, kind: "linear", positive: false });
  const sorted = Array.from(sums).sort((a, b) => a - b);
  const rowSum = sorted.length % 2 === 1
    ? sorted[(sorted.length - 1) / 2]
    : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
  return {
    maxScoreGradient: keep.length === 0 ? NaN : max[0],
    rowSum,
    minRowSum: keep.length === 0 ? NaN : Math.min(...keep.map((i) => sums[i])),
    zeroRows: sums.length - keep.length,
  };
}

/**
 * Gradients of one random layer per seed as its inputs move along a sweep (Proposition 3.1 at the layer level).
 * For each seed and value x it builds q, k, v with {@linkcode sweptQKV}, and returns
 *
 * - `layers`: for each setup, the gradient g of ⟨O, u⟩ (u ~ N(0, 1) of the output's shape, seed 4·seed + 3) with
 *   respect to q and k, as its norm, mean |g| and max |g| ({@linkcode LayerSweepRow});
 * - `scores`: the score-level quantity on the same input, max |∂p/∂s| of the kernel scores φ(q)·φ(k)
 *   ({@linkcode ScoreSweepRow}).
 *
 * @example
 * ```ts
 * import { gradientSweep } from "./gradients.ts";
 * // relu linear attention is unchanged when q and k are scaled, so its gradient is exactly ∝ 1/c.
 * const { layers } = gradientSweep([{ label: "relu", variant: "linear", variantOptions: { featureMap: "relu" } }], {
 *   sweep: "scale", values: [0.1, 1], seeds: [0],
 * });
 * console.log((layers[0].norm / layers[1].norm).toFixed(3)); // 10.000
 * ```
 */
export function gradientSweep(
  setups: readonly LayerSetup[],
  options: GradientSweepOptions,
): { layers: LayerSweepRow[]; scores: ScoreSweepRow[] } {
  return sweepRows(sweepPlans("gradientSweep", setups, options).map((plan) => readPlan(plan)));
}

/**
 * {@linkcode gradientSweep} with one awaited read (`await data()`) per seed and swept value, for a GPU backend: the
 * same rows.
 *
 * @example
 * ```ts
 * import { gradientSweepAsync } from "./gradients.ts";
 * const { layers, scores } = await gradientSweepAsync([{ label: "relu", variant: "linear", variantOptions: { featureMap: "relu" } }], {
 *   sweep: "scale", values: [0.1, 1], seeds: [0],
 * });
 * console.log((layers[0].norm / layers[1].norm).toFixed(3), scores.length); // 10.000 2
 * ```
 */
export async function gradientSweepAsync(
  setups: readonly LayerSetup[],
  options: GradientSweepOptions,
): Promise<{ layers: LayerSweepRow[]; scores: ScoreSweepRow[] }> {
  const points: SweepPoint[] = [];
  for (const plan of sweepPlans("gradientSweepAsync", setups, options)) points.push(await readPlanAsync(plan));
  return sweepRows(points);
}

/** What one (seed, value) of a sweep measures. */
interface SweepPoint {
  score: ScoreSweepRow;
  layers: LayerSweepRow[];
}

function sweepRows(points: SweepPoint[]): { layers: LayerSweepRow[]; scores: ScoreSweepRow[] } {
  return { layers: points.flatMap((p) => p.layers), scores: points.map((p) => p.score) };
}

/** gradientSweep's arguments checked, and one read per seed and value, seed-major: its input, scores and gradients. */
function sweepPlans(
  owner: string,
  setups: readonly LayerSetup[],
  options: GradientSweepOptions,
): ReadPlan<SweepPoint>[] {
  if (!Array.isArray(setups) || setups.length === 0) {
    throw new TypeError(`${owner}: setups must be a non-empty array of { label, variant }, got ${describe(setups)}`);
  }
  const labels = new Set<string>();
  const calls = setups.map((setup, i) => {
    if (setup === null || typeof setup !== "object" || typeof setup.label !== "string" || setup.label === "") {
      throw new TypeError(`${owner}: setups[${i}] must be { label, variant, variantOptions? } with a non-empty label`);
    }
    if (labels.has(setup.label)) throw new RangeError(`${owner}: setups[${i}].label "${setup.label}" is used twice`);
    labels.add(setup.label);
    const { variantOptions = {}, variant } = setup;
    const defaults = (variants as Record<string, { defaults: object } | undefined>)[variant]?.defaults;
    const seeded = defaults !== undefined && "seed" in defaults && !("seed" in variantOptions);
    const at = (seed: number) =>
      resolveLayer(owner, { variant, variantOptions: seeded ? { ...variantOptions, seed } : variantOptions }, []).call;
    at(0); // checks the setup now, before any work
    return at;
  });
  if (options === null || typeof options !== "object") {
    throw new TypeError(`${owner}: options must be { sweep, values, seeds }, got ${describe(options)}`);
  }
  const known = ["sweep", "values", "seeds", "shape", "scoreFeatureMap"];
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new RangeError(`${owner}: unknown option "${key}"; valid options are ${known.join(", ")}`);
    }
  }
  const { sweep, values, seeds, shape, scoreFeatureMap = "elu+1" } = options;
  for (const [name, list] of [["values", values], ["seeds", seeds]] as const) {
    if (!Array.isArray(list) || list.length === 0 || !list.every((v) => typeof v === "number")) {
      throw new TypeError(`${owner}: options.${name} must be a non-empty array of numbers, got ${describe(list)}`);
    }
  }
  if (!(FEATURE_MAPS as readonly string[]).includes(scoreFeatureMap)) {
    throw new RangeError(
      `${owner}: options.scoreFeatureMap must be one of ${FEATURE_MAPS.join(", ")}, got ${describe(scoreFeatureMap)}`,
    );
  }
  return seeds.flatMap((seed) =>
    values.map((x): ReadPlan<SweepPoint> => ({
      build: () => {
        // Inside the read's tidy: the input is freed with everything else once read.
        const qkv = sweptQKV(sweep, x, { seed, ...(shape === undefined ? {} : { shape }) });
        const perSetup = setups.map((_, i) => {
          const call = calls[i](seed);
          const out = call(qkv); // [b, h, n, dv]
          const u = randomNormal<tf.Tensor4D>(out.shape, { seed: 4 * seed + 3 }); // [b, h, n, dv]
          const f = (q: tf.Tensor, k: tf.Tensor) => tf.sum(tf.mul(call({ q, k, v: qkv.v } as QKV), u));
          const g = tf.concat(tf.grads(f)([qkv.q, qkv.k]).map((t) => tf.reshape(t, [-1]))); // [2·b·h·n·d]
          const abs = tf.abs(g);
          return tf.stack([tf.sum(tf.square(g)), tf.mean(abs), tf.max(abs)]); // [3]
        });
        return [...scoreTensors(qkv, scoreFeatureMap), ...perSetup];
      },
      finish: (read) => {
        const score = { seed, x, ...scoreLevel(owner, read.slice(0, 3)) };
        const layers = setups.map((setup, i) => {
          const stats = Array.from(read[3 + i]);
          const finite = stats.every(Number.isFinite);
          return {
            setup: setup.label,
            seed,
            x,
            norm: finite ? Math.sqrt(stats[0]) : NaN,
            mean: finite ? stats[1] : NaN,
            max: finite ? stats[2] : NaN,
            rowSum: score.rowSum,
          };
        });
        return { score, layers };
      },
    }))
  );
}

/** One point of a growth fit: the value y of a seed's measurement at x. */
export interface GrowthPoint {
  seed: number;
  x: number;
  y: number;
}

/** Options of {@linkcode growthExponents}. */
export interface GrowthFitOptions {
  /** The direction of travel: `"large"` fits y ∝ x^γ as x grows, `"small"` fits y ∝ x^(−γ) as x shrinks. */
  toward: "large" | "small";
  /** Smallest x used; default −∞ (all). */
  from?: number;
  /** Largest x used; default +∞ (all). */
  to?: number;
  /** Confidence level of the interval over seeds; default 0.95. */
  level?: number;
}

/** What {@linkcode growthExponents} returns. */
export interface GrowthExponents {
  toward: "large" | "small";
  /** The seeds fitted, in order of first appearance. */
  seeds: number[];
  /** The growth exponent γ of each fitted seed: > 0 when y grows in the direction of travel. */
  exponents: number[];
  /** Seeds left without a fit: fewer than two distinct usable x in range. */
  unfitted: number[];
  /** Points in range left out because y was 0, negative or not finite (log y undefined). */
  dropped: number;
  /** The Student-t interval of γ over the fitted seeds (NaN bounds with fewer than two). */
  interval: TInterval;
}

/**
 * The growth exponent γ of a measurement in one direction of travel, one least-squares fit of log y on log x per seed
 * (`fitExponent` of lib/bench), and its Student-t interval over seeds (lib/stats `tInterval`): γ is the slope when
 * travelling `"large"` (y ∝ x^γ) and minus the slope when travelling `"small"` (y ∝ (1/x)^γ), so γ > 0 always
 * means that y grows in that direction. Points outside [from, to] are ignored; points with y <= 0 or not finite are
 * left out and counted (`dropped`): a gradient that underflows to 0 or overflows has no logarithm.
 *
 * @example
 * ```ts
 * import { growthExponents } from "./gradients.ts";
 * // Three seeds of y = a/x: the gradient grows like (1/x)^1 as x shrinks, whatever a.
 * const points = [1, 2, 3].flatMap((seed) => [0.01, 0.1, 1].map((x) => ({ seed, x, y: seed / x })));
 * const fit = growthExponents(points, { toward: "small" });
 * console.log(fit.exponents.map((g) => g.toFixed(3)), fit.interval.n); // ["1.000", "1.000", "1.000"] 3
 * ```
 */
export function growthExponents(points: readonly GrowthPoint[], options: GrowthFitOptions): GrowthExponents {
  const owner = "growthExponents";
  if (!Array.isArray(points)) {
    throw new TypeError(`${owner}: points must be an array of { seed, x, y }, got ${describe(points)}`);
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `${owner}: options must be { toward: "large" | "small", from?, to?, level? }, got ${describe(options)}`,
    );
  }
  for (const key of Object.keys(options)) {
    if (!["toward", "from", "to", "level"].includes(key)) {
      throw new RangeError(`${owner}: unknown option "${key}"; valid options are toward, from, to, level`);
    }
  }
  const { toward, from = -Infinity, to = Infinity, level = 0.95 } = options;
  if (toward !== "large" && toward !== "small") {
    throw new RangeError(`${owner}: options.toward must be "large" or "small", got ${describe(toward)}`);
  }
  if (typeof from !== "number" || typeof to !== "number" || Number.isNaN(from) || Number.isNaN(to) || from > to) {
    throw new RangeError(
      `${owner}: options.from and options.to must be numbers with from <= to, got ${from} and ${to}`,
    );
  }
  const bySeed = new Map<number, { x: number; y: number }[]>();
  let dropped = 0;
  points.forEach((p, i) => {
    if (p === null || typeof p !== "object" || ![p.seed, p.x, p.y].every((v) => typeof v === "number")) {
      throw new TypeError(`${owner}: points[${i}] must be { seed, x, y } with numbers, got ${describe(p)}`);
    }
    if (!(p.x > 0) || !Number.isFinite(p.x)) {
      throw new RangeError(
        `${owner}: points[${i}].x must be a finite number > 0 (it is fitted on a log scale), got ${p.x}`,
      );
    }
    if (!bySeed.has(p.seed)) bySeed.set(p.seed, []);
    if (p.x < from || p.x > to) return;
    if (!(p.y > 0) || !Number.isFinite(p.y)) dropped++;
    else bySeed.get(p.seed)!.push({ x: p.x, y: p.y });
  });
  const seeds: number[] = [], exponents: number[] = [], unfitted: number[] = [];
  for (const [seed, usable] of bySeed) {
    if (new Set(usable.map((p) => p.x)).size < 2) {
      unfitted.push(seed);
      continue;
    }
    const slope = fitExponent(usable).exponent;
    seeds.push(seed);
    exponents.push(toward === "large" ? slope : -slope);
  }
  const interval: TInterval = exponents.length > 0 ? tInterval(exponents, { level }) : {
    estimate: NaN,
    mean: NaN,
    low: NaN,
    high: NaN,
    halfWidth: NaN,
    level,
    n: 0,
    df: 0,
    sd: NaN,
    se: NaN,
    method: "t",
    nullValue: 0,
    reason: "no seed had two distinct x with a positive, finite y to fit",
  };
  return { toward, seeds, exponents, unfitted, dropped, interval };
}

/** One case of a growth claim: a label (which setup, which direction) and the interval of its growth exponent γ. */
export interface GrowthCase {
  label: string;
  interval: Interval;
}

/** Options of {@linkcode growthVerdict}. */
export interface GrowthVerdictOptions {
  /** `"grows"`: the gradient grows in at least one case; `"bounded"`: it grows in none. */
  claim: "grows" | "bounded";
  /** The practical margin m > 0: growth slower than x^m over the sweep does not count as growing. */
  margin: number;
  /** What γ is the exponent of, for the rule's sentence, e.g. `"the q/k gradient as c → 0"`. */
  quantity: string;
  /** Minimum seeds per case; default 3. */
  minN?: number;
}

/**
 * Decides a claim about whether a gradient grows, from the intervals of its growth exponent γ in one or more cases
 * (setups, directions, statistics), with lib/stats `verdict` applied to each case: γ "grows" in a case when its
 * interval lies above the margin m, is "bounded" there when it lies below m, and is undecided when it straddles m
 * (or has fewer than `minN` seeds).
 *
 * - `"grows"`: reproduced if γ grows in at least one case, not reproduced ("confident absence") if it is bounded
 *   in every case, otherwise inconclusive.
 * - `"bounded"`: reproduced if γ is bounded in every case, not reproduced if it grows in at least one (the reason
 *   names those cases), otherwise inconclusive.
 *
 * The verdict carries the interval of the case with the largest estimate of γ, and the rule in one sentence.
 *
 * @example
 * ```ts
 * import { tInterval } from "../stats/mod.ts";
 * import { growthVerdict } from "./gradients.ts";
 * const cases = [
 *   { label: "T1 as c → 0", interval: tInterval([0.98, 1.01, 0.99]) },
 *   { label: "T2 as c → 0", interval: tInterval([0.04, 0.06, 0.05]) },
 * ];
 * const v = growthVerdict(cases, { claim: "bounded", margin: 0.25, quantity: "NormAttention's q/k gradient" });
 * console.log(v.outcome, "|", v.reason); // not reproduced | grows: T1 as c → 0
 * ```
 */
export function growthVerdict(cases: readonly GrowthCase[], options: GrowthVerdictOptions): Verdict {
  const owner = "growthVerdict";
  if (!Array.isArray(cases) || cases.length === 0) {
    throw new TypeError(`${owner}: cases must be a non-empty array of { label, interval }, got ${describe(cases)}`);
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError(`${owner}: options must be { claim, margin, quantity }, got ${describe(options)}`);
  }
  const { claim, margin, quantity, minN = 3 } = options;
  if (claim !== "grows" && claim !== "bounded") {
    throw new RangeError(`${owner}: options.claim must be "grows" or "bounded", got ${describe(claim)}`);
  }
  if (typeof margin !== "number" || !(margin > 0) || !Number.isFinite(margin)) {
    throw new RangeError(`${owner}: options.margin must be a finite number > 0, got ${describe(margin)}`);
  }
  if (typeof quantity !== "string" || quantity.trim() === "") {
    throw new TypeError(`${owner}: options.quantity must be a non-empty string, got ${describe(quantity)}`);
  }
  const decided = cases.map((c, i) => {
    if (c === null || typeof c !== "object" || typeof c.label !== "string") {
      throw new TypeError(`${owner}: cases[${i}] must be { label, interval }, got ${describe(c)}`);
    }
    const v = verdict(c.interval, { direction: "greater", null: 0, margin, minN, quantity: `γ (${c.label})` });
    const state = v.outcome === "reproduced" ? "grows" : v.outcome === "not reproduced" ? "bounded" : "undecided";
    return { ...c, v, state };
  });
  const worst = decided.reduce((
    a,
    b,
  ) => (b.interval.estimate > a.interval.estimate || Number.isNaN(a.interval.estimate) ? b : a));
  const growing = decided.filter((d) => d.state === "grows");
  const undecided = decided.filter((d) => d.state === "undecided");
  const labels = cases.map((c) => c.label).join("; ");
  const level = `${Number((100 * cases[0].interval.level).toPrecision(6))}%`;
  const every = cases.length === 1 ? "" : cases.length === 2 ? " in both cases" : ` in all ${cases.length} cases`;
  const some = cases.length === 1 ? "" : " in at least one case";
  const rule = `γ is the growth exponent of ${quantity} (one log–log least-squares fit per seed; γ > 0: it grows ` +
    `along the direction of travel), in ${cases.length === 1 ? "one case" : `${cases.length} cases`} (${labels}); ` +
    (claim === "grows"
      ? `reproduced if the ${level} t interval of γ over seeds lies above the margin ${margin}${some}, not ` +
        `reproduced if it lies below ${margin}${every}, otherwise inconclusive (within noise)`
      : `reproduced if the ${level} t interval of γ over seeds lies below the margin ${margin}${every}, not ` +
        `reproduced if it lies above ${margin}${some}, otherwise inconclusive (within noise)`) +
    `; inconclusive (underpowered) with fewer than ${minN} seeds`;
  // The interval shown: the growing case that clears the margin most, else the case with the largest γ.
  const pick = growing.length > 0 ? growing.reduce((a, b) => (b.interval.low > a.interval.low ? b : a)) : worst;
  const base = { rule, interval: pick.v.interval! };
  const reasonOf = (
    d: typeof undecided,
  ) => (d.some((x) => x.v.reason === "underpowered") ? "underpowered" : "within noise");
  if (claim === "grows") {
    if (growing.length > 0) return { outcome: "reproduced", ...base };
    if (undecided.length === 0) return { outcome: "not reproduced", reason: "confident absence", ...base };
    return { outcome: "inconclusive", reason: reasonOf(undecided), ...base };
  }
  if (growing.length > 0) {
    return { outcome: "not reproduced", reason: `grows: ${growing.map((d) => d.label).join("; ")}`, ...base };
  }
  if (undecided.length === 0) return { outcome: "reproduced", ...base };
  return { outcome: "inconclusive", reason: reasonOf(undecided), ...base };
}

/** Options of {@linkcode seedSpread}. */
export interface SeedSpreadOptions<R, K extends keyof R & string> {
  /** The keys that identify a group (e.g. setup and x); rows that agree on all of them are one group. */
  by: readonly K[];
  /** The key of the value summarised over each group's rows (one row per seed). */
  value: keyof R & string;
  /** Confidence level of the t interval; default 0.95. */
  level?: number;
}

/** The spread of one group's values over seeds, as {@linkcode seedSpread} returns it. */
export interface SeedSpread {
  /** Finite values summarised. */
  n: number;
  mean: number;
  median: number;
  min: number;
  max: number;
  /** Student-t interval of the mean (NaN with fewer than two values). */
  low: number;
  high: number;
  halfWidth: number;
  /** Values left out because they were not finite numbers. */
  dropped: number;
}

/**
 * Summarises a value over seeds, group by group, for bands and tables: for each distinct combination of the `by`
 * keys (in order of first appearance), the group's keys with n, mean, median, min, max and the Student-t interval of
 * the mean (lib/stats `tInterval`). Values that are not finite numbers are left out and counted (`dropped`); a group
 * without any has NaN statistics.
 *
 * @example
 * ```ts
 * import { seedSpread } from "./gradients.ts";
 * const rows = [1, 2, 3].map((v, seed) => ({ setup: "a", seed, g: v }));
 * const [s] = seedSpread(rows, { by: ["setup"], value: "g" });
 * // mean 2, s = 1, t(0.975, 2) = 4.302653: half-width 4.302653/√3 = 2.484138
 * console.log(s.setup, s.n, s.mean, s.min, s.max, s.halfWidth.toFixed(6)); // a 3 2 1 3 2.484138
 * ```
 */
export function seedSpread<R extends object, K extends keyof R & string>(
  rows: readonly R[],
  options: SeedSpreadOptions<R, K>,
): (Pick<R, K> & SeedSpread)[] {
  const owner = "seedSpread";
  if (!Array.isArray(rows)) throw new TypeError(`${owner}: rows must be an array of objects, got ${describe(rows)}`);
  if (options === null || typeof options !== "object" || !Array.isArray(options.by)) {
    throw new TypeError(`${owner}: options must be { by: [keys], value: key }, got ${describe(options)}`);
  }
  const { by, value, level = 0.95 } = options;
  if (typeof value !== "string") throw new TypeError(`${owner}: options.value must be a key, got ${describe(value)}`);
  const groups = new Map<string, { keys: Pick<R, K>; values: number[]; dropped: number }>();
  rows.forEach((row, i) => {
    if (row === null || typeof row !== "object") throw new TypeError(`${owner}: rows[${i}] must be an object`);
    const r = row as Record<string, unknown>;
    for (const key of [...by, value]) {
      if (!(key in r)) throw new RangeError(`${owner}: rows[${i}] has no key "${key}"`);
    }
    const id = JSON.stringify(by.map((k) => r[k]));
    if (!groups.has(id)) {
      groups.set(id, { keys: Object.fromEntries(by.map((k) => [k, r[k]])) as Pick<R, K>, values: [], dropped: 0 });
    }
    const group = groups.get(id)!;
    const v = r[value];
    if (typeof v === "number" && Number.isFinite(v)) group.values.push(v);
    else group.dropped++;
  });
  return [...groups.values()].map(({ keys, values, dropped }) => {
    if (values.length === 0) {
      const nan = { mean: NaN, median: NaN, min: NaN, max: NaN, low: NaN, high: NaN, halfWidth: NaN };
      return { ...keys, n: 0, ...nan, dropped };
    }
    const iv = tInterval(values, { level });
    const stats = { mean: iv.mean, median: median(values), min: Math.min(...values), max: Math.max(...values) };
    return { ...keys, n: values.length, ...stats, low: iv.low, high: iv.high, halfWidth: iv.halfWidth, dropped };
  });
}
