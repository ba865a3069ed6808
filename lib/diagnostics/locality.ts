/**
 * Attention-dilution diagnostics: the locally accumulated attention curve of Fig. 2a of "The Devil in Linear
 * Transformer" (Qin et al. 2022), its area, and per-row summaries (entropy, mean distance, mass in a window).
 *
 * Every function takes attention weights as a float32 tf.Tensor of shape [n, n] (query i, key j) or
 * [batch, heads, n, n], reads them once and computes on the CPU in typed arrays; it creates no lasting tensors. Each
 * has an async twin (`localityCurveAsync`, ...) that awaits the read (`await weights.data()`) instead of `dataSync`,
 * for a GPU backend, and runs the same arithmetic on what it read. Each row is first normalised by the sum of its absolute values, p_ij = |w_ij| / Σ_j |w_ij|, because
 * NormAttention's kernel matrix φ(Q)φ(K)ᵀ can have negative entries; on non-negative rows (softmax, row-normalised
 * linear attention) this is the ordinary row normalisation. A row whose entries are all zero has no distribution and
 * throws.
 *
 * Divergences from the paper, which defines the score only in words ("the accumulated attention scores inside the
 * neighbourhood of the centering token", x = neighbourhood size relative to the input length): the authors dumped
 * matrices divided by their plain row sums, while here rows are divided by the sum of absolute values (equal for
 * non-negative rows); the neighbourhood's tie-breaking, the causal "available context" curve and the area under the
 * curve are this project's choices, documented on {@linkcode localityCurve}. No public code of the authors computes
 * the curve.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { checkOptionKeys, resolveOptions } from "../_options.ts";
import { type ReadPlan, readPlan, readPlanAsync } from "../read.ts";
import { checkNotDisposed, checkRatios, checkShape, checkValues, describe } from "./_checks.ts";

/**
 * The default neighbourhood ratios of {@linkcode localityCurve}: 0, 0.05, ..., 1 (21 points).
 *
 * @example
 * ```ts
 * import { LOCALITY_RATIOS } from "./locality.ts";
 * console.log(LOCALITY_RATIOS.length, LOCALITY_RATIOS[1], LOCALITY_RATIOS[20]); // 21 0.05 1
 * ```
 */
export const LOCALITY_RATIOS: readonly number[] = Object.freeze(Array.from({ length: 21 }, (_, i) => i / 20));

/** Options of {@linkcode localityCurve}. */
export interface LocalityOptions {
  /** Neighbourhood ratios x in [0, 1] at which the curves are sampled. Default {@linkcode LOCALITY_RATIOS}. */
  ratios?: readonly number[];
  /**
   * The weights are causal: query i attends to keys j <= i only. Entries above the diagonal must then be exactly 0
   * (anything else throws), and the available-context curve uses i + 1 keys for query i. Default false.
   */
  causal?: boolean;
}

/** The curves of one head (one [n, n] matrix); the fields mean what they mean in {@linkcode LocalityCurve}. */
export interface HeadLocality {
  /** Batch index (0 for an [n, n] input). */
  batch: number;
  /** Head index (0 for an [n, n] input). */
  head: number;
  /** Full-neighbourhood curve of this head, one value per ratio. */
  curve: number[];
  /** Area under this head's full-neighbourhood curve. */
  auc: number;
  /** Available-context curve of this head, one value per ratio. */
  availableCurve: number[];
  /** Area under this head's available-context curve. */
  availableAuc: number;
}

/** The result of {@linkcode localityCurve}: means over query rows, heads and the batch. */
export interface LocalityCurve {
  /** The ratios x the curves are sampled at, as given. */
  ratios: number[];
  /** curve[r]: mean |.|-normalised mass inside the ⌈x·n⌉ tokens nearest to the query, x = ratios[r]. */
  curve: number[];
  /** ∫₀¹ of the full-neighbourhood step curve, exactly: (1/n) Σ_{k=1..n} C(k), independent of `ratios`. */
  auc: number;
  /**
   * availableCurve[r]: mean mass inside the ⌈x·m_i⌉ keys nearest to query i within its available context of m_i
   * keys (m_i = i + 1 when causal, n otherwise, so it equals `curve` for non-causal weights).
   */
  availableCurve: number[];
  /** ∫₀¹ of the available-context step curve, exactly (mean over rows of (1/m_i) Σ_{k=1..m_i} C_i(k)). */
  availableAuc: number;
  /** Sequence length n. */
  n: number;
  /** Whether the weights were treated as causal. */
  causal: boolean;
  /** Per-head curves, batch-major: perHead[b · heads + h]. One entry for an [n, n] input. */
  perHead: HeadLocality[];
}

/** A per-row statistic, summarised three ways. */
export interface RowStatistic {
  /** Mean over every query row of every head and batch element. */
  mean: number;
  /** byQuery[i]: mean over batch and heads for query position i (length n). */
  byQuery: number[];
  /** byHead[b · heads + h]: mean over the n query rows of one head, batch-major. */
  byHead: number[];
}

/** Options of {@linkcode windowMass}. */
export interface WindowMassOptions {
  /** Required: the largest distance |i − j| counted as inside the window (an integer >= 0). */
  window: number;
}

/** Checked weights: flat [groups, n, n] data, with every row's Σ_j |w_ij|. */
interface Rows {
  data: ArrayLike<number>;
  batch: number;
  heads: number;
  n: number;
  /** [groups · n]: Σ_j |w_ij| of each row, groups = batch · heads. */
  rowSums: Float64Array;
}

// x·m within this of an integer counts as that integer, so 0.07 · 100 = 7.000000000000001 gives 7 tokens, not 8.
const CEIL_SLACK = 1e-9;

/** The neighbourhood size ⌈x·m⌉ (with {@link CEIL_SLACK}), clamped to [0, m]. */
function neighbourhoodSize(x: number, m: number): number {
  return Math.min(m, Math.max(0, Math.ceil(x * m - CEIL_SLACK)));
}

/** Checks that `weights` is a live float32 tensor [n, n] or [batch, heads, n, n] with n >= 1; returns its shape. */
function checkWeights(owner: string, weights: unknown): number[] {
  checkNotDisposed(owner, "weights", weights);
  if (!(weights instanceof tf.Tensor) || (weights.rank !== 2 && weights.rank !== 4)) {
    throw new Error(
      `${owner}: weights must be a float32 tf.Tensor of shape [n, n] or [batch, heads, n, n], got ${
        describe(weights)
      }; add or remove axes with tf.reshape`,
    );
  }
  if (weights.dtype !== "float32") {
    throw new Error(`${owner}: weights must be float32, got ${weights.dtype}; use tf.cast(weights, "float32")`);
  }
  checkShape(owner, weights.shape);
  return weights.shape;
}

/** The weights' values (read back, flat, row-major) checked row by row: finite, causal if asked, some mass per row. */
function rowsOf(owner: string, data: ArrayLike<number>, shape: readonly number[], causal: boolean): Rows {
  const n = shape[shape.length - 1];
  const [batch, heads] = shape.length === 4 ? [shape[0], shape[1]] : [1, 1];
  const rows = batch * heads * n;
  const rowSums = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const i = r % n;
    const base = r * n;
    let sum = 0;
    for (let j = 0; j < n; j++) {
      const w = data[base + j];
      if (!Number.isFinite(w)) {
        throw new Error(`${owner}: weights must be finite, got ${w} at ${where(r, j, batch, heads, n)}`);
      }
      if (causal && j > i && w !== 0) {
        throw new Error(
          `${owner}: causal weights must be 0 above the diagonal, got ${w} at ${where(r, j, batch, heads, n)}; ` +
            `pass causal: false for bidirectional attention`,
        );
      }
      sum += Math.abs(w);
    }
    if (sum === 0) {
      throw new Error(
        `${owner}: every row needs some attention mass, but the row of ${
          where(r, -1, batch, heads, n)
        } is all zeros, so p_ij = |w_ij| / Σ_j |w_ij| is undefined`,
      );
    }
    rowSums[r] = sum;
  }
  return { data, batch, heads, n, rowSums };
}

/**
 * The plan of a per-row diagnostic: `weights` checked now, read once by the caller (`readPlan` or `readPlanAsync`),
 * then checked row by row and handed to `compute`.
 */
function rowsPlan<R>(owner: string, weights: tf.Tensor, causal: boolean, compute: (rows: Rows) => R): ReadPlan<R> {
  const shape = checkWeights(owner, weights);
  return { build: () => [weights], finish: ([data]) => compute(rowsOf(owner, data, shape, causal)) };
}

/** Names the position of row r (and key j when j >= 0) in the input's own axes. */
function where(r: number, j: number, batch: number, heads: number, n: number): string {
  const i = r % n;
  const g = Math.floor(r / n);
  const key = j >= 0 ? `, key ${j}` : "";
  return batch * heads === 1
    ? `query ${i}${key}`
    : `batch ${Math.floor(g / heads)}, head ${g % heads}, query ${i}${key}`;
}

/**
 * The locally accumulated attention curve (Fig. 2a of the paper) and its area.
 *
 * For a ratio x, query i's neighbourhood is the ⌈x·n⌉ tokens nearest to it: the query itself first, then i − 1,
 * i + 1, i − 2, i + 2, ... (ties go to the left), skipping positions outside [0, n). `curve[r]` is the mean over query
 * rows, heads and batch of the |.|-normalised mass inside that neighbourhood. So x = 0 gives 0, x = 1 gives 1, an
 * identity matrix gives 1 for every x > 0, and a uniform matrix gives ⌈x·n⌉/n. x·n within 1e-9 of an integer counts
 * as that integer (0.07 · 100 is 7 tokens, not 8).
 *
 * `auc` is the exact area under the step function x ↦ C(⌈x·n⌉) on [0, 1], where C(k) is the mean mass in the k
 * nearest tokens: (1/n) Σ_{k=1..n} C(k). It does not depend on `ratios`. Uniform attention gives (n + 1)/(2n)
 * = 1/2 + 1/(2n), attention on the query alone gives 1; larger means more local.
 *
 * Causal weights (`causal: true`): a causal row has only a left side, so the right half of the full neighbourhood
 * holds no mass, and an early query's whole context (i + 1 keys) fits in a small neighbourhood. The full curve of a
 * causal model therefore rises fast even for uniform attention and reads as "mass within distance ~x·n/2 to the
 * left"; compare causal models with each other, not with bidirectional ones. `availableCurve` measures each query
 * against its own context instead: the neighbourhood is the ⌈x·(i + 1)⌉ keys i, i − 1, ..., so uniform causal
 * attention gives (1/n) Σ_i ⌈x·(i + 1)⌉/(i + 1) ≈ x, the diagonal that uniform bidirectional attention gives on
 * the full curve. For non-causal weights the available context is all n keys and `availableCurve` equals `curve`.
 *
 * The second argument is either the options or, as a shorthand, the ratios alone: `localityCurve(w, [0, 0.5, 1])`.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { localityCurve } from "./locality.ts";
 * const uniform = tf.fill([4, 4], 0.25);
 * const { curve, auc } = localityCurve(uniform, { ratios: [0, 0.25, 0.5, 1] });
 * console.log(curve, auc); // [0, 0.25, 0.5, 1] 0.625
 * uniform.dispose();
 * ```
 */
export function localityCurve(weights: tf.Tensor, options?: LocalityOptions | readonly number[]): LocalityCurve {
  return readPlan(localityPlan("localityCurve", weights, options));
}

/**
 * {@linkcode localityCurve} with its one read awaited (`await weights.data()`), for a GPU backend: the same checks
 * and the same curves. `weights` must stay alive until it resolves.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { localityCurveAsync } from "./locality.ts";
 * const uniform = tf.fill([4, 4], 0.25);
 * const { curve, auc } = await localityCurveAsync(uniform, { ratios: [0, 0.5, 1] });
 * console.log(curve, auc); // [0, 0.5, 1] 0.625
 * uniform.dispose();
 * ```
 */
export async function localityCurveAsync(
  weights: tf.Tensor,
  options?: LocalityOptions | readonly number[],
): Promise<LocalityCurve> {
  return await readPlanAsync(localityPlan("localityCurveAsync", weights, options));
}

/**
 * {@linkcode localityCurve} of weights already read back: `values` holds them flat and row-major, of shape [n, n] or
 * [batch, heads, n, n] (so the curves of a tensor's `await data()` need no second read).
 *
 * @example
 * ```ts
 * import { localityCurveOfValues } from "./locality.ts";
 * // Two queries, each on itself: every neighbourhood of at least one token holds all of the mass.
 * console.log(localityCurveOfValues([1, 0, 0, 1], [2, 2], { ratios: [0, 0.5, 1] }).curve); // [0, 1, 1]
 * ```
 */
export function localityCurveOfValues(
  values: ArrayLike<number>,
  shape: readonly number[],
  options?: LocalityOptions | readonly number[],
): LocalityCurve {
  const owner = "localityCurveOfValues";
  const { ratios, causal } = localityOptions(owner, options);
  checkValues(owner, values, shape);
  return localityOf(rowsOf(owner, values, shape, causal), ratios, causal);
}

function localityOptions(owner: string, options: unknown): { ratios: number[]; causal: boolean } {
  const given = checkOptionKeys(owner, Array.isArray(options) ? { ratios: options } : options, [
    "ratios",
    "causal",
  ]);
  const ratios = checkRatios(owner, given.ratios ?? LOCALITY_RATIOS);
  const { causal } = resolveOptions(owner, { causal: given.causal }, { causal: false }, {
    causal: { type: "boolean" },
  });
  return { ratios, causal };
}

function localityPlan(owner: string, weights: tf.Tensor, options: unknown): ReadPlan<LocalityCurve> {
  const { ratios, causal } = localityOptions(owner, options);
  return rowsPlan(owner, weights, causal, (rows) => localityOf(rows, ratios, causal));
}

/** The curves of checked rows (see localityCurve). */
function localityOf(rows: Rows, ratios: number[], causal: boolean): LocalityCurve {
  const { data, batch, heads, n, rowSums } = rows;
  const fullSizes = ratios.map((x) => neighbourhoodSize(x, n));
  // cum[k]: Σ |w| over the k nearest tokens of the current row (full); left[k]: over keys i, i − 1, ..., i − k + 1.
  const cum = new Float64Array(n + 1);
  const left = new Float64Array(n + 1);
  const perHead: HeadLocality[] = [];
  for (let g = 0; g < batch * heads; g++) {
    const curve = new Array<number>(ratios.length).fill(0);
    const availableCurve = new Array<number>(ratios.length).fill(0);
    let auc = 0;
    let availableAuc = 0;
    for (let i = 0; i < n; i++) {
      const base = (g * n + i) * n;
      const s = rowSums[g * n + i];
      let k = 0;
      let acc = Math.abs(data[base + i]);
      cum[++k] = acc;
      for (let d = 1; k < n; d++) {
        if (i - d >= 0) cum[++k] = acc += Math.abs(data[base + i - d]);
        if (i + d < n) cum[++k] = acc += Math.abs(data[base + i + d]);
      }
      let area = 0;
      for (let m = 1; m <= n; m++) area += cum[m];
      auc += area / (n * s);
      fullSizes.forEach((size, r) => (curve[r] += cum[size] / s));
      if (!causal) continue;
      const context = i + 1;
      acc = 0;
      area = 0;
      for (let m = 1; m <= context; m++) area += left[m] = acc += Math.abs(data[base + i - m + 1]);
      availableAuc += area / (context * s);
      ratios.forEach((x, r) => (availableCurve[r] += left[neighbourhoodSize(x, context)] / s));
    }
    const mean = (v: number[]) => v.map((c) => c / n);
    perHead.push({
      batch: Math.floor(g / heads),
      head: g % heads,
      curve: mean(curve),
      auc: auc / n,
      availableCurve: causal ? mean(availableCurve) : mean(curve),
      availableAuc: causal ? availableAuc / n : auc / n,
    });
  }
  const average = (pick: (h: HeadLocality) => number) => perHead.reduce((a, h) => a + pick(h), 0) / perHead.length;
  return {
    ratios,
    curve: ratios.map((_, r) => average((h) => h.curve[r])),
    auc: average((h) => h.auc),
    availableCurve: ratios.map((_, r) => average((h) => h.availableCurve[r])),
    availableAuc: average((h) => h.availableAuc),
    n,
    causal,
    perHead,
  };
}

/** Applies `f(base, i, s)` to every row (data offset, query index, Σ|w|) and summarises the values. */
function rowStatistic(rows: Rows, f: (base: number, i: number, s: number) => number): RowStatistic {
  const { batch, heads, n, rowSums } = rows;
  const groups = batch * heads;
  const byQuery = new Array<number>(n).fill(0);
  const byHead = new Array<number>(groups).fill(0);
  for (let g = 0; g < groups; g++) {
    for (let i = 0; i < n; i++) {
      const value = f((g * n + i) * n, i, rowSums[g * n + i]);
      byQuery[i] += value / groups;
      byHead[g] += value / n;
    }
  }
  return { mean: byHead.reduce((a, b) => a + b, 0) / groups, byQuery, byHead };
}

/**
 * The entropy of each attention row in nats, H_i = −Σ_j p_ij log p_ij with p_ij = |w_ij| / Σ_j |w_ij| and
 * 0 · log 0 = 0. It is 0 for a row on one key and log m for a row uniform over m keys (log n for full uniform
 * attention, log(i + 1) for causal uniform attention): diluted attention has high entropy.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { attentionEntropy } from "./locality.ts";
 * const uniform = tf.fill([4, 4], 1);
 * console.log(attentionEntropy(uniform).mean.toFixed(4), Math.log(4).toFixed(4)); // 1.3863 1.3863
 * uniform.dispose();
 * ```
 */
export function attentionEntropy(weights: tf.Tensor): RowStatistic {
  return readPlan(rowsPlan("attentionEntropy", weights, false, entropyOf));
}

/**
 * {@linkcode attentionEntropy} with its one read awaited (`await weights.data()`), for a GPU backend.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { attentionEntropyAsync } from "./locality.ts";
 * const uniform = tf.fill([2, 2], 1);
 * console.log((await attentionEntropyAsync(uniform)).mean.toFixed(4), Math.log(2).toFixed(4)); // 0.6931 0.6931
 * uniform.dispose();
 * ```
 */
export async function attentionEntropyAsync(weights: tf.Tensor): Promise<RowStatistic> {
  return await readPlanAsync(rowsPlan("attentionEntropyAsync", weights, false, entropyOf));
}

function entropyOf(rows: Rows): RowStatistic {
  const { data, n } = rows;
  return rowStatistic(rows, (base, _i, s) => {
    let h = 0;
    for (let j = 0; j < n; j++) {
      const p = Math.abs(data[base + j]) / s;
      if (p > 0) h -= p * Math.log(p);
    }
    return h;
  });
}

/**
 * The mean attention distance of each row in tokens, Σ_j p_ij |i − j| with p_ij = |w_ij| / Σ_j |w_ij|: 0 for
 * attention on the query itself, and about n/3 on average over the rows of uniform attention.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { meanAttentionDistance } from "./locality.ts";
 * // Every query attends to its left neighbour (query 0 to itself).
 * const shifted = tf.tensor2d([[1, 0, 0], [1, 0, 0], [0, 1, 0]]);
 * console.log(meanAttentionDistance(shifted).byQuery); // [0, 1, 1]
 * shifted.dispose();
 * ```
 */
export function meanAttentionDistance(weights: tf.Tensor): RowStatistic {
  return readPlan(rowsPlan("meanAttentionDistance", weights, false, distanceOf));
}

/**
 * {@linkcode meanAttentionDistance} with its one read awaited (`await weights.data()`), for a GPU backend.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { meanAttentionDistanceAsync } from "./locality.ts";
 * const shifted = tf.tensor2d([[1, 0, 0], [1, 0, 0], [0, 1, 0]]);
 * console.log((await meanAttentionDistanceAsync(shifted)).byQuery); // [0, 1, 1]
 * shifted.dispose();
 * ```
 */
export async function meanAttentionDistanceAsync(weights: tf.Tensor): Promise<RowStatistic> {
  return await readPlanAsync(rowsPlan("meanAttentionDistanceAsync", weights, false, distanceOf));
}

function distanceOf(rows: Rows): RowStatistic {
  const { data, n } = rows;
  return rowStatistic(rows, (base, i, s) => {
    let d = 0;
    for (let j = 0; j < n; j++) d += Math.abs(data[base + j]) * Math.abs(i - j);
    return d / s;
  });
}

/**
 * The fraction of each row's |.|-normalised mass within a fixed window, Σ_{|i − j| <= window} p_ij. Unlike
 * {@linkcode localityCurve}, the window does not grow with n, so it measures the same local context at every length.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { windowMass } from "./locality.ts";
 * const uniform = tf.fill([5, 5], 1);
 * // Query 0 sees keys 0..1 inside a window of 1 (2 of 5 keys), query 2 sees keys 1..3 (3 of 5).
 * console.log(windowMass(uniform, { window: 1 }).byQuery); // [0.4, 0.6, 0.6, 0.6, 0.4]
 * uniform.dispose();
 * ```
 */
export function windowMass(weights: tf.Tensor, options: WindowMassOptions): RowStatistic {
  return readPlan(windowMassPlan("windowMass", weights, options));
}

/**
 * {@linkcode windowMass} with its one read awaited (`await weights.data()`), for a GPU backend.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { windowMassAsync } from "./locality.ts";
 * const uniform = tf.fill([5, 5], 1);
 * console.log((await windowMassAsync(uniform, { window: 1 })).byQuery); // [0.4, 0.6, 0.6, 0.6, 0.4]
 * uniform.dispose();
 * ```
 */
export async function windowMassAsync(weights: tf.Tensor, options: WindowMassOptions): Promise<RowStatistic> {
  return await readPlanAsync(windowMassPlan("windowMassAsync", weights, options));
}

function windowMassPlan(owner: string, weights: tf.Tensor, options: WindowMassOptions): ReadPlan<RowStatistic> {
  const given = checkOptionKeys(owner, options, ["window"]);
  if (given.window === undefined) {
    throw new Error(`${owner}: option window is required: the largest |i - j| counted as local, e.g. { window: 32 }`);
  }
  const { window } = resolveOptions(owner, given, { window: 0 }, {
    window: { type: "number", min: 0, integer: true },
  });
  return rowsPlan(owner, weights, false, (rows) => {
    const { data, n } = rows;
    return rowStatistic(rows, (base, i, s) => {
      let inside = 0;
      for (let j = Math.max(0, i - window); j <= Math.min(n - 1, i + window); j++) inside += Math.abs(data[base + j]);
      return inside / s;
    });
  });
}

/** Options of {@linkcode uniformLocality}. */
export interface UniformLocalityOptions {
  /** Neighbourhood ratios x in [0, 1]. Default {@linkcode LOCALITY_RATIOS}. */
  ratios?: readonly number[];
  /** Uniform over each query's i + 1 keys (a causal model's fully diluted attention) instead of all n. Default false. */
  causal?: boolean;
}

/**
 * The locality curves of fully diluted attention: every query spreads its weight evenly over all n keys, or over its
 * i + 1 keys when `causal`. The reference line of Fig. 2a. In closed form: the full curve of bidirectional uniform
 * attention is ⌈x·n⌉/n with area (n + 1)/(2n); the available-context area of causal uniform attention is the mean over
 * m = 1..n of (m + 1)/(2m), i.e. 1/2 + H_n/(2n) with H_n the n-th harmonic number (0.5212 at n = 128). Computed by
 * {@linkcode localityCurveOfValues} on the explicit matrix (n² floats, on the CPU); creates no tensors, so it runs the
 * same on every backend.
 *
 * @example
 * ```ts
 * import { uniformLocality } from "./locality.ts";
 * console.log(uniformLocality(4, { ratios: [0, 0.5, 1] }).curve, uniformLocality(4).auc); // [0, 0.5, 1] 0.625
 * console.log(uniformLocality(128, { causal: true }).availableAuc.toFixed(4)); // 0.5212
 * ```
 */
export function uniformLocality(n: number, options?: UniformLocalityOptions): LocalityCurve {
  const owner = "uniformLocality";
  if (typeof n !== "number") {
    throw new TypeError(`${owner}: n must be a number (the sequence length), got ${describe(n)}`);
  }
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`${owner}: n must be an integer >= 1 (the sequence length), got ${n}`);
  }
  const given = checkOptionKeys(owner, options, ["ratios", "causal"]);
  const ratios = checkRatios(owner, given.ratios ?? LOCALITY_RATIOS);
  const { causal } = resolveOptions(owner, { causal: given.causal }, { causal: false }, {
    causal: { type: "boolean" },
  });
  // The 0/1 matrix is uniform attention: rows are normalised inside the curve. Built on the CPU, so that no backend
  // (webgpu included) is asked to read it back.
  const weights = new Float32Array(n * n); // [n, n]
  for (let i = 0; i < n; i++) weights.fill(1, i * n, causal ? i * n + i + 1 : (i + 1) * n);
  return localityCurveOfValues(weights, [n, n], { ratios, causal });
}
