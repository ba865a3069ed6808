/**
 * Attention matrices of a trained model, collected for the dilution and heatmap notebooks (Fig. 2 of "The Devil in
 * Linear Transformer"): windows of text from a corpus split, each layer's matrices row-normalised the way the
 * authors plotted them, each layer's locally accumulated attention curve averaged over many windows, and each
 * layer's mass near the diagonal against uniform attention ({@linkcode diagonalMass}, {@linkcode layerDiagonalMass}:
 * the sharp diagonal of Fig. 2b as a number, with each window's sums kept apart for a bootstrap over windows).
 *
 * Two details the plain {@linkcode localityCurve} leaves to the caller are handled here:
 *
 * - Rows without attention mass. DiagAttention with relu blocks (TransNormer T1) gives a query whose block scores
 *   are all negative a row of zeros: the query attends to nothing, and its row has no distribution. Such rows are
 *   left out of every mean and counted in `emptyRows`.
 * - Many windows. The curves are pooled over every query row of every window (and head), not averaged per window.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { checkOptionKeys, resolveOptions } from "../_options.ts";
import type { TransformerModel } from "../models/model.ts";
import { type ReadPlan, readPlan, readPlanAsync } from "../read.ts";
import { LOCALITY_RATIOS, localityCurveOfValues } from "./locality.ts";
import {
  checkIds,
  checkModel,
  checkNotDisposed,
  checkRatios,
  checkValues,
  describe,
  forEachAttentionBatch,
  forEachAttentionBatchAsync,
} from "./_checks.ts";

/** What {@linkcode textWindows} returns: `count` windows of `n` bytes as token ids. */
export interface TextWindows {
  /** Tokens per window. */
  n: number;
  /** Offset of each window's first byte in the input bytes, increasing; windows never overlap. */
  starts: number[];
  /** The windows' bytes as int32 token ids, row-major [count, n]. */
  ids: Int32Array;
}

/** Options of {@linkcode textWindows}. */
export interface TextWindowsOptions {
  /** Tokens per window (an integer >= 1). Required. */
  n: number;
  /** Number of windows (an integer >= 1). Required. */
  count: number;
  /** Byte that separates documents; no window contains it. Default 0, the separator of `loadSotu`. */
  separator?: number;
}

/** Options of {@linkcode rowNormalize}. */
export interface RowNormalizeOptions {
  /**
   * "sum": w_ij / Σ_j w_ij, the authors' normalisation for their figures; "abs": w_ij / Σ_j |w_ij|, the
   * normalisation of {@linkcode localityCurve} (equal to "sum" on non-negative rows). Default "sum".
   */
  by?: "sum" | "abs";
}

/** Options of {@linkcode attentionMaps}. */
export interface AttentionMapsOptions {
  /**
   * "sum" or "abs" as in {@linkcode rowNormalize}, or "none" for the raw `model.attentionWeights` matrices (for
   * NormAttention and relu DiagAttention the unnormalised kernel matrix). Default "sum", as the authors plotted.
   */
  normalize?: "sum" | "abs" | "none";
}

/** Options of {@linkcode pooledLocalityCurve}. */
export interface PooledLocalityOptions {
  /** Neighbourhood ratios, each 0 or in [1e-6, 1]. Default {@linkcode LOCALITY_RATIOS}. */
  ratios?: readonly number[];
  /** The weights are causal (zero above the diagonal), as in {@linkcode localityCurve}. Default false. */
  causal?: boolean;
}

/** Options of {@linkcode layerLocality}. */
export interface LayerLocalityOptions {
  /** Neighbourhood ratios, each 0 or in [1e-6, 1]. Default {@linkcode LOCALITY_RATIOS}. */
  ratios?: readonly number[];
  /** Windows per forward pass (an integer >= 1); bounds the memory of the [b, h, n, n] matrices. Default 8. */
  batchSize?: number;
}

/** Locality curves pooled over the query rows that hold attention mass; the curves mean what they mean in localityCurve. */
export interface PooledLocality {
  /** The ratios x the curves are sampled at. */
  ratios: number[];
  /** Full-neighbourhood curve: mean over the counted rows of the |.|-normalised mass in the ⌈x·n⌉ nearest tokens. */
  curve: number[];
  /** Exact area under the full-neighbourhood curve, mean over the counted rows. */
  auc: number;
  /** Available-context curve (equal to `curve` for non-causal weights). */
  availableCurve: number[];
  /** Exact area under the available-context curve. */
  availableAuc: number;
  /** Query rows counted in the means. */
  rows: number;
  /** Query rows left out because all their entries are 0. */
  emptyRows: number;
}

/** {@linkcode PooledLocality} of one head, pooled over the batch. */
export interface HeadPooledLocality extends PooledLocality {
  /** Head index. */
  head: number;
}

/** One layer's locality, pooled over every window: the result of {@linkcode layerLocality}. */
export interface LayerLocality extends PooledLocality {
  /** Layer index, 0 first. */
  layer: number;
  /** The layer's attention variant (its name in `lib/attention`). */
  variant: string;
  /** Per-head curves, pooled over the windows, by head index. */
  perHead: HeadPooledLocality[];
}

/** Running sums of one group of rows (a head, or a whole layer). */
interface LocalitySums {
  curve: number[];
  availableCurve: number[];
  auc: number;
  availableAuc: number;
  rows: number;
  emptyRows: number;
}

/**
 * `count` windows of `n` consecutive bytes, spread evenly over `bytes`, none containing the document separator.
 * Window k starts at the first position at or after k·(length − n)/count (and after the previous window) whose next
 * n bytes hold no separator, so the windows lie inside single documents, in order, and never overlap. The same bytes
 * always give the same windows. Throws when fewer than `count` such windows fit.
 *
 * @example
 * ```ts
 * import { textWindows } from "./attention_maps.ts";
 * const bytes = new TextEncoder().encode("abcdef\0ghijkl");
 * const { starts, ids } = textWindows(bytes, { n: 3, count: 2 });
 * console.log(starts, new TextDecoder().decode(Uint8Array.from(ids))); // [0, 7] abcghi
 * ```
 */
export function textWindows(bytes: Uint8Array, options: TextWindowsOptions): TextWindows {
  const owner = "textWindows";
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(`${owner}: bytes must be a Uint8Array (e.g. corpus.splits.valid), got ${describe(bytes)}`);
  }
  const given = checkOptionKeys(owner, options, ["n", "count", "separator"]);
  for (const key of ["n", "count"]) {
    if (given[key] === undefined) {
      throw new TypeError(`${owner}: option ${key} is required, e.g. { n: 128, count: 16 }`);
    }
  }
  const { n, count, separator } = resolveOptions(owner, given, { n: 1, count: 1, separator: 0 }, {
    n: { type: "number", min: 1, integer: true },
    count: { type: "number", min: 1, integer: true },
    separator: { type: "number", min: 0, integer: true },
  });
  // nextSeparator[p]: the first separator position >= p (bytes.length if none), so a window check is O(1).
  const nextSeparator = new Int32Array(bytes.length + 1).fill(bytes.length);
  for (let p = bytes.length - 1; p >= 0; p--) nextSeparator[p] = bytes[p] === separator ? p : nextSeparator[p + 1];
  const starts: number[] = [];
  let from = 0;
  for (let k = 0; k < count; k++) {
    let start = Math.max(from, Math.floor((k * Math.max(0, bytes.length - n)) / count));
    while (start + n <= bytes.length && nextSeparator[start] < start + n) start = nextSeparator[start] + 1;
    if (start + n > bytes.length) {
      throw new RangeError(
        `${owner}: only ${k} windows of n = ${n} bytes without the separator ${separator} fit into the ` +
          `${bytes.length} bytes given, not count = ${count}; ask for fewer or shorter windows`,
      );
    }
    starts.push(start);
    from = start + n;
  }
  const ids = new Int32Array(count * n);
  starts.forEach((start, k) => ids.set(bytes.subarray(start, start + n), k * n));
  return { n, starts, ids };
}

/**
 * Divides every row (last axis) of attention weights by its sum, w_ij / Σ_j w_ij (`by: "sum"`, default: how the
 * authors normalised the matrices they plotted, so NormAttention's kernel matrix φ(Q)φ(K)ᵀ becomes comparable to
 * softmax's probabilities), or by the sum of its absolute values (`by: "abs"`, the normalisation of
 * {@linkcode localityCurve}, which keeps negative entries of an elu kernel bounded by 1 in size). Rows whose divisor
 * is 0 stay 0. Works on any rank >= 2 (typically [b, h, n, n]); the caller disposes the result.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { rowNormalize } from "./attention_maps.ts";
 * const w = tf.tensor2d([[2, 2], [1, -3], [0, 0]]);
 * console.log(rowNormalize(w).arraySync(), rowNormalize(w, { by: "abs" }).arraySync()[1]);
 * // [[0.5, 0.5], [-0.5, 1.5], [0, 0]] [0.25, -0.75]
 * w.dispose();
 * ```
 */
export function rowNormalize<T extends tf.Tensor>(weights: T, options?: RowNormalizeOptions): T {
  const owner = "rowNormalize";
  const { by } = resolveOptions(owner, options, { by: "sum" as "sum" | "abs" }, {
    by: { type: "enum", values: ["sum", "abs"] },
  });
  checkNotDisposed(owner, "weights", weights);
  if (!(weights instanceof tf.Tensor) || weights.rank < 2 || weights.dtype !== "float32") {
    throw new TypeError(
      `${owner}: weights must be a float32 tf.Tensor with queries and keys in its last two axes ([.., n, n]), ` +
        `got ${describe(weights)}`,
    );
  }
  return tf.tidy(() => {
    const total = tf.sum(by === "sum" ? weights : tf.abs(weights), -1, true); // [.., n, 1]
    // A zero divisor (a row without mass, or an elu row summing to exactly 0) leaves its row at 0.
    const zero = tf.equal(total, 0); // [.., n, 1]
    const safe = tf.where(zero, tf.onesLike(total), total); // [.., n, 1]
    return tf.where(tf.broadcastTo(zero, weights.shape), tf.zerosLike(weights), tf.div(weights, safe)) as T;
  });
}

/**
 * Every layer's attention matrix of `model` on token ids [b, n], [b, h, n, n] per layer, row-normalised as the
 * authors plotted them (`normalize: "sum"`, default): row-normalised φ(Q)φ(K)ᵀ for linear attention and
 * NormAttention, softmax probabilities for vanilla attention, row-normalised block scores for DiagAttention. The
 * caller disposes the tensors.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "../models/model.ts";
 * import { attentionMaps } from "./attention_maps.ts";
 * const model = createModel({ attention: "transnormer-t2", layers: 2, dModel: 8, heads: 2 }, { log: () => {} });
 * const ids = tf.tensor2d([[72, 105, 33]], [1, 3], "int32");
 * const maps = attentionMaps(model, ids);
 * const sums = (tf.sum(maps[1], -1).arraySync() as number[][][])[0][0];
 * console.log(maps.length, maps[1].shape, sums.map((s) => s.toFixed(3)));
 * // 2 [1, 2, 3, 3] ["1.000", "1.000", "1.000"]
 * tf.dispose([...maps, ids]);
 * model.dispose();
 * ```
 */
export function attentionMaps(
  model: TransformerModel,
  ids: tf.Tensor2D,
  options?: AttentionMapsOptions,
): tf.Tensor4D[] {
  const owner = "attentionMaps";
  const { normalize } = resolveOptions(owner, options, { normalize: "sum" as "sum" | "abs" | "none" }, {
    normalize: { type: "enum", values: ["sum", "abs", "none"] },
  });
  checkModel(owner, model);
  checkIds(owner, ids);
  const raw = model.attentionWeights(ids);
  if (normalize === "none") return raw;
  const out = raw.map((w) => rowNormalize(w, { by: normalize }));
  tf.dispose(raw);
  return out;
}

/** Checks that `weights` is a live float32 tensor [n, n] or [batch, heads, n, n], square and non-empty; its shape. */
function checkSquare(owner: string, weights: unknown): number[] {
  checkNotDisposed(owner, "weights", weights);
  if (!(weights instanceof tf.Tensor) || (weights.rank !== 2 && weights.rank !== 4) || weights.dtype !== "float32") {
    throw new TypeError(
      `${owner}: weights must be a float32 tf.Tensor of shape [n, n] or [batch, heads, n, n], got ${describe(weights)}`,
    );
  }
  const shape = weights.shape;
  const n = shape[shape.length - 1];
  if (shape[shape.length - 2] !== n || n === 0) {
    throw new RangeError(`${owner}: weights must be square and non-empty in its last two axes, got [${shape}]`);
  }
  return shape;
}

/**
 * Sums of the locality quantities over the non-empty rows of each (batch, head) group of weights read back (`data`,
 * flat, of `shape`).
 */
function groupSums(
  data: ArrayLike<number>,
  shape: readonly number[],
  ratios: number[],
  causal: boolean,
): LocalitySums[] {
  const n = shape[shape.length - 1];
  // Empty rows get a one-hot on the query itself, whose contribution is known exactly and taken out again below.
  const patched = Float32Array.from(data);
  const empty = new Uint8Array(patched.length / n);
  for (let r = 0; r < empty.length; r++) {
    let mass = 0;
    for (let j = 0; j < n; j++) mass += Math.abs(patched[r * n + j]);
    if (mass === 0) {
      empty[r] = 1;
      patched[r * n + (r % n)] = 1;
    }
  }
  const result = localityCurveOfValues(patched, shape, { ratios, causal });
  // The query's own key is inside every neighbourhood of a ratio >= 1e-6 (checkRatios): 1 there, 0 at x = 0; area 1.
  const self = ratios.map((x) => (x > 0 ? 1 : 0));
  return result.perHead.map((h, g) => {
    let emptyRows = 0;
    for (let i = 0; i < n; i++) emptyRows += empty[g * n + i];
    const total = (mean: number, own: number) => n * mean - emptyRows * own;
    return {
      curve: h.curve.map((c, r) => total(c, self[r])),
      availableCurve: h.availableCurve.map((c, r) => total(c, self[r])),
      auc: total(h.auc, 1),
      availableAuc: total(h.availableAuc, 1),
      rows: n - emptyRows,
      emptyRows,
    };
  });
}

function addSums(into: LocalitySums, from: LocalitySums): void {
  from.curve.forEach((c, r) => (into.curve[r] += c));
  from.availableCurve.forEach((c, r) => (into.availableCurve[r] += c));
  into.auc += from.auc;
  into.availableAuc += from.availableAuc;
  into.rows += from.rows;
  into.emptyRows += from.emptyRows;
}

function zeroSums(length: number): LocalitySums {
  const zeros = () => new Array<number>(length).fill(0);
  return { curve: zeros(), availableCurve: zeros(), auc: 0, availableAuc: 0, rows: 0, emptyRows: 0 };
}

function means(owner: string, sums: LocalitySums, ratios: number[]): PooledLocality {
  if (sums.rows === 0) {
    throw new RangeError(
      `${owner}: every one of the ${sums.emptyRows} query rows is all zeros, so no row has a distribution to measure`,
    );
  }
  const mean = (v: number) => v / sums.rows;
  return {
    ratios: [...ratios],
    curve: sums.curve.map(mean),
    auc: mean(sums.auc),
    availableCurve: sums.availableCurve.map(mean),
    availableAuc: mean(sums.availableAuc),
    rows: sums.rows,
    emptyRows: sums.emptyRows,
  };
}

/**
 * {@linkcode localityCurve} pooled over the query rows that hold attention mass: every row of every head and batch
 * element counts once, and rows whose entries are all 0 (relu DiagAttention's queries whose block scores are all
 * negative) are left out and counted in `emptyRows` instead of throwing. Without empty rows and with the same number
 * of rows per head this equals localityCurve's means. Ratios must be 0 or at least 1e-6.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { pooledLocalityCurve } from "./attention_maps.ts";
 * // Query 1 attends to nothing; queries 0 and 2 attend to themselves.
 * const w = tf.tensor2d([[1, 0, 0], [0, 0, 0], [0, 0, 1]]);
 * const { curve, auc, rows, emptyRows } = pooledLocalityCurve(w, { ratios: [0, 0.5, 1], causal: true });
 * console.log(curve, auc, rows, emptyRows); // [0, 1, 1] 1 2 1
 * w.dispose();
 * ```
 */
export function pooledLocalityCurve(weights: tf.Tensor, options?: PooledLocalityOptions): PooledLocality {
  return readPlan(pooledPlan("pooledLocalityCurve", weights, options));
}

/**
 * {@linkcode pooledLocalityCurve} with its one read awaited (`await weights.data()`), for a GPU backend.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { pooledLocalityCurveAsync } from "./attention_maps.ts";
 * const w = tf.tensor2d([[1, 0, 0], [0, 0, 0], [0, 0, 1]]);
 * const { curve, rows, emptyRows } = await pooledLocalityCurveAsync(w, { ratios: [0, 0.5, 1], causal: true });
 * console.log(curve, rows, emptyRows); // [0, 1, 1] 2 1
 * w.dispose();
 * ```
 */
export async function pooledLocalityCurveAsync(
  weights: tf.Tensor,
  options?: PooledLocalityOptions,
): Promise<PooledLocality> {
  return await readPlanAsync(pooledPlan("pooledLocalityCurveAsync", weights, options));
}

function pooledPlan(owner: string, weights: tf.Tensor, options?: PooledLocalityOptions): ReadPlan<PooledLocality> {
  const o = pooledOptions(owner, options);
  const shape = checkSquare(owner, weights);
  return { build: () => [weights], finish: ([data]) => pooledLocalityOf(owner, data, shape, o) };
}

function pooledOptions(owner: string, options?: PooledLocalityOptions): { ratios: number[]; causal: boolean } {
  const given = checkOptionKeys(owner, options, ["ratios", "causal"]);
  const ratios = checkRatios(owner, given.ratios ?? LOCALITY_RATIOS);
  const { causal } = resolveOptions(owner, { causal: given.causal }, { causal: false }, {
    causal: { type: "boolean" },
  });
  return { ratios, causal };
}

/**
 * {@linkcode pooledLocalityCurve} of weights already read back: `values` flat and row-major, of shape [n, n] or
 * [batch, heads, n, n].
 *
 * @example
 * ```ts
 * import { pooledLocalityOfValues } from "./attention_maps.ts";
 * // Query 1 attends to nothing and is left out.
 * const { curve, rows, emptyRows } = pooledLocalityOfValues([1, 0, 0, 0], [2, 2], { ratios: [0, 1], causal: true });
 * console.log(curve, rows, emptyRows); // [0, 1] 1 1
 * ```
 */
export function pooledLocalityOfValues(
  values: ArrayLike<number>,
  shape: readonly number[],
  options?: PooledLocalityOptions,
): PooledLocality {
  const owner = "pooledLocalityOfValues";
  const o = pooledOptions(owner, options);
  checkValues(owner, values, shape);
  return pooledLocalityOf(owner, values, shape, o);
}

function pooledLocalityOf(
  owner: string,
  values: ArrayLike<number>,
  shape: readonly number[],
  o: { ratios: number[]; causal: boolean },
): PooledLocality {
  const total = zeroSums(o.ratios.length);
  for (const group of groupSums(values, shape, o.ratios, o.causal)) addSums(total, group);
  return means(owner, total, o.ratios);
}

/**
 * Each layer's locally accumulated attention curve (Fig. 2a), pooled over every query row of every window in
 * `ids` [windows, n] and every head, on the raw `model.attentionWeights` (rows normalised by Σ|w| inside, as
 * {@linkcode localityCurve} does; causal for a language model). Windows run through the model `batchSize` at a
 * time. Rows without mass are left out, as in {@linkcode pooledLocalityCurve}. Creates no lasting tensors.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "../models/model.ts";
 * import { layerLocality } from "./attention_maps.ts";
 * const model = createModel({ attention: "vanilla", layers: 2, dModel: 8, heads: 2 }, { log: () => {} });
 * const ids = tf.tensor2d([[1, 2, 3, 4], [5, 6, 7, 8]], [2, 4], "int32");
 * const layers = layerLocality(model, ids, { ratios: [0, 1] });
 * console.log(layers.map((l) => [l.variant, l.curve, l.rows])); // [["softmax", [0, 1], 16], ["softmax", [0, 1], 16]]
 * ids.dispose();
 * model.dispose();
 * ```
 */
export function layerLocality(
  model: TransformerModel,
  ids: tf.Tensor2D,
  options?: LayerLocalityOptions,
): LayerLocality[] {
  const run = layerLocalityRun("layerLocality", model, ids, options);
  forEachAttentionBatch(model, ids, { batchSize: run.batchSize, visit: (w, from) => readPlan(run.plan(w, from)) });
  return run.result();
}

/**
 * {@linkcode layerLocality} with one awaited read (`await data()`) per batch of windows, for a GPU backend.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "../models/model.ts";
 * import { layerLocalityAsync } from "./attention_maps.ts";
 * const model = createModel({ attention: "vanilla", layers: 1, dModel: 8, heads: 2 }, { log: () => {} });
 * const ids = tf.tensor2d([[1, 2, 3, 4]], [1, 4], "int32");
 * const layers = await layerLocalityAsync(model, ids, { ratios: [0, 1] });
 * console.log(layers.map((l) => [l.variant, l.curve, l.rows])); // [["softmax", [0, 1], 8]]
 * ids.dispose();
 * model.dispose();
 * ```
 */
export async function layerLocalityAsync(
  model: TransformerModel,
  ids: tf.Tensor2D,
  options?: LayerLocalityOptions,
): Promise<LayerLocality[]> {
  const run = layerLocalityRun("layerLocalityAsync", model, ids, options);
  await forEachAttentionBatchAsync(model, ids, {
    batchSize: run.batchSize,
    visit: (w, from) => readPlanAsync(run.plan(w, from)),
  });
  return run.result();
}

/**
 * A walk over a model's attention weights, batch by batch: `plan(weights, from)` reads one batch's layers at once and
 * adds them up, `result()` gives the answer once every batch is in. Shared by a diagnostic's sync and async forms.
 */
interface BatchRun<R> {
  batchSize: number;
  plan: (weights: tf.Tensor4D[], from: number) => ReadPlan<void>;
  result: () => R;
}

/** Every layer's weights of one batch, read at once: `add` gets each layer's values and shape. */
function layersPlan(
  weights: tf.Tensor4D[],
  add: (layer: number, values: Float32Array, shape: number[]) => void,
): ReadPlan<void> {
  return {
    build: () => weights,
    finish: (values) => values.forEach((v, layer) => add(layer, v, weights[layer].shape)),
  };
}

function layerLocalityRun(
  owner: string,
  model: TransformerModel,
  ids: tf.Tensor2D,
  options?: LayerLocalityOptions,
): BatchRun<LayerLocality[]> {
  const given = checkOptionKeys(owner, options, ["ratios", "batchSize"]);
  const ratios = checkRatios(owner, given.ratios ?? LOCALITY_RATIOS);
  const { batchSize } = resolveOptions(owner, { batchSize: given.batchSize }, { batchSize: 8 }, {
    batchSize: { type: "number", min: 1, integer: true },
  });
  checkModel(owner, model);
  checkIds(owner, ids);
  const causal = model.causal;
  const layers = model.config.attention.length;
  const heads = model.config.heads;
  const perHead = Array.from({ length: layers }, () => Array.from({ length: heads }, () => zeroSums(ratios.length)));
  return {
    batchSize,
    plan: (weights) =>
      layersPlan(
        weights,
        (layer, values, shape) =>
          groupSums(values, shape, ratios, causal).forEach((sums, g) => addSums(perHead[layer][g % heads], sums)),
      ),
    result: () =>
      perHead.map((groups, layer) => {
        const total = zeroSums(ratios.length);
        groups.forEach((g) => addSums(total, g));
        return {
          layer,
          variant: model.config.attention[layer].variant,
          ...means(`${owner} (layer ${layer})`, total, ratios),
          perHead: groups.map((g, head) =>
            g.rows === 0 ? { head, ...nanLocality(g, ratios) } : { head, ...means(owner, g, ratios) }
          ),
        };
      }),
  };
}

/** A head whose rows were all empty: NaN curves, so a plot leaves it out rather than the whole layer throwing. */
function nanLocality(sums: LocalitySums, ratios: number[]): PooledLocality {
  return {
    ratios: [...ratios],
    curve: ratios.map(() => NaN),
    auc: NaN,
    availableCurve: ratios.map(() => NaN),
    availableAuc: NaN,
    rows: 0,
    emptyRows: sums.emptyRows,
  };
}

/** Sums over the counted query rows of one group (a window, a head, a layer): add groups, then divide by `rows`. */
export interface DiagonalSums {
  /** Σ over the counted rows of the |.|-normalised mass on keys within the window of the query. */
  mass: number;
  /** Σ over the same rows of the mass that uniform attention over the row's context puts there. */
  uniform: number;
  /** Rows counted. */
  rows: number;
}

/** Options of {@linkcode diagonalMass}. */
export interface DiagonalMassOptions {
  /** Required: the largest distance |i − j| that counts as near the diagonal (an integer >= 0). */
  window: number;
  /** Causal weights: query i's context is keys 0..i, and entries above the diagonal must be 0. Default false. */
  causal?: boolean;
}

/** Options of {@linkcode layerDiagonalMass}. */
export interface LayerDiagonalMassOptions {
  /** Required: the largest distance |i − j| that counts as near the diagonal (an integer >= 0). */
  window: number;
  /** Windows per forward pass (an integer >= 1); bounds the memory of the [b, h, n, n] matrices. Default 8. */
  batchSize?: number;
}

/** Means over the counted rows. */
export interface DiagonalMeans {
  /** Mean near-diagonal mass of the counted rows. */
  mass: number;
  /** Mean near-diagonal mass of uniform attention over the same rows' contexts. */
  uniform: number;
  /** mass − uniform: 0 for uniform attention, 1 − uniform for attention on the nearest keys alone. */
  excess: number;
  /** Rows counted. */
  rows: number;
}

/** What {@linkcode diagonalMass} returns. */
export interface DiagonalMass extends DiagonalMeans {
  /** The window: keys with |i − j| <= window are near the diagonal. */
  window: number;
  /** Whether the weights were treated as causal. */
  causal: boolean;
  /** Rows left out because all their entries are 0 (they attend to nothing). */
  emptyRows: number;
  /** Rows left out because the window holds their whole context, so uniform attention would score 1 there too. */
  coveredRows: number;
  /** The sums of each (batch, head) group, batch-major: perGroup[b · heads + h]; one entry for an [n, n] input. */
  perGroup: DiagonalSums[];
}

/** One layer's near-diagonal mass over many windows: the result of {@linkcode layerDiagonalMass}. */
export interface LayerDiagonalMass extends DiagonalMeans {
  /** Layer index, 0 first. */
  layer: number;
  /** The layer's attention variant (its name in `lib/attention`). */
  variant: string;
  /** The window of the measure. */
  window: number;
  /** Rows left out because all their entries are 0. */
  emptyRows: number;
  /** Rows left out because the window holds their whole context. */
  coveredRows: number;
  /** perWindow[k]: the sums of window k (row k of `ids`) over every head: the unit to resample within a model. */
  perWindow: DiagonalSums[];
  /** Per-head means over every window, by head index (NaN for a head without a counted row). */
  perHead: (DiagonalMeans & { head: number })[];
}

interface DiagonalGroups {
  perGroup: DiagonalSums[];
  emptyRows: number;
  coveredRows: number;
  /** [batch, heads] of the input ([1, 1] for [n, n]). */
  batch: number;
  heads: number;
}

function checkWindow(owner: string, given: Record<string, unknown>): number {
  if (given.window === undefined) {
    throw new TypeError(
      `${owner}: option window is required: the largest |i − j| counted as near the diagonal, e.g. { window: 4 }`,
    );
  }
  return resolveOptions(owner, { window: given.window }, { window: 0 }, {
    window: { type: "number", min: 0, integer: true },
  }).window;
}

/** The near-diagonal sums of each (batch, head) group of weights read back (`data`, flat, of `shape`). */
function diagonalGroups(
  owner: string,
  data: ArrayLike<number>,
  shape: readonly number[],
  o: { window: number; causal: boolean },
): DiagonalGroups {
  const { window, causal } = o;
  const n = shape[shape.length - 1];
  const [batch, heads] = shape.length === 4 ? [shape[0], shape[1]] : [1, 1];
  const perGroup: DiagonalSums[] = [];
  let emptyRows = 0, coveredRows = 0;
  for (let g = 0; g < batch * heads; g++) {
    const sums: DiagonalSums = { mass: 0, uniform: 0, rows: 0 };
    for (let i = 0; i < n; i++) {
      const base = (g * n + i) * n;
      let total = 0;
      for (let j = 0; j < n; j++) {
        const w = data[base + j];
        if (!Number.isFinite(w) || (causal && j > i && w !== 0)) {
          const where =
            `${batch * heads > 1 ? `group ${g} (batch ${Math.floor(g / heads)}, head ${g % heads}), ` : ""}` +
            `query ${i}, key ${j}`;
          throw new RangeError(
            Number.isFinite(w)
              ? `${owner}: causal weights must be 0 above the diagonal, got ${w} at ${where}; pass causal: false`
              : `${owner}: weights must be finite, got ${w} at ${where}`,
          );
        }
        total += Math.abs(w);
      }
      // The keys near the diagonal inside the row's context, and the size of that context.
      const lo = Math.max(0, i - window), hi = causal ? i : Math.min(n - 1, i + window);
      const context = causal ? i + 1 : n;
      if (total === 0) emptyRows++;
      else if (hi - lo + 1 === context) coveredRows++;
      else {
        let near = 0;
        for (let j = lo; j <= hi; j++) near += Math.abs(data[base + j]);
        sums.mass += near / total;
        sums.uniform += (hi - lo + 1) / context;
        sums.rows++;
      }
    }
    perGroup.push(sums);
  }
  return { perGroup, emptyRows, coveredRows, batch, heads };
}

function addDiagonal(into: DiagonalSums, from: DiagonalSums): DiagonalSums {
  into.mass += from.mass;
  into.uniform += from.uniform;
  into.rows += from.rows;
  return into;
}

function diagonalMeans(sums: DiagonalSums): DiagonalMeans {
  const mass = sums.mass / sums.rows, uniform = sums.uniform / sums.rows;
  return sums.rows === 0
    ? { mass: NaN, uniform: NaN, excess: NaN, rows: 0 }
    : { mass, uniform, excess: mass - uniform, rows: sums.rows };
}

/**
 * The sharp diagonal of Fig. 2b as a number: for each query row i, the share of its attention on keys within
 * `window` of it, p_ij = |w_ij| / Σ_j |w_ij| summed over |i − j| <= window, set against the share that uniform
 * attention over the row's context would put there (the keys 0..i for causal weights, all n keys otherwise).
 * `excess` = mean mass − mean uniform share over the counted rows: 0 for uniform attention, larger when attention
 * sits near the diagonal, negative when it avoids it. Rows whose entries are all 0 (relu DiagAttention) and rows
 * whose window holds their whole context (a causal query i <= window, where every distribution scores 1) are left
 * out and counted apart. Throws when no row is left to count. Creates no tensors.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { diagonalMass } from "./attention_maps.ts";
 * // Causal, window 1: queries 2 and 3 count. Query 2 puts 1/2 on keys 1..2 (uniform 2/3), query 3 all (uniform 2/4).
 * const w = tf.tensor2d([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 1, 1]]);
 * const d = diagonalMass(w, { window: 1, causal: true });
 * console.log(d.mass, d.uniform.toFixed(4), d.excess.toFixed(4), d.rows, d.coveredRows); // 0.75 0.5833 0.1667 2 2
 * w.dispose();
 * ```
 */
export function diagonalMass(weights: tf.Tensor, options: DiagonalMassOptions): DiagonalMass {
  return readPlan(diagonalPlan("diagonalMass", weights, options));
}

/**
 * {@linkcode diagonalMass} with its one read awaited (`await weights.data()`), for a GPU backend.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { diagonalMassAsync } from "./attention_maps.ts";
 * const w = tf.tensor2d([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 1, 1]]);
 * const d = await diagonalMassAsync(w, { window: 1, causal: true });
 * console.log(d.mass, d.rows, d.coveredRows); // 0.75 2 2
 * w.dispose();
 * ```
 */
export async function diagonalMassAsync(weights: tf.Tensor, options: DiagonalMassOptions): Promise<DiagonalMass> {
  return await readPlanAsync(diagonalPlan("diagonalMassAsync", weights, options));
}

function diagonalPlan(owner: string, weights: tf.Tensor, options: DiagonalMassOptions): ReadPlan<DiagonalMass> {
  const given = checkOptionKeys(owner, options, ["window", "causal"]);
  const window = checkWindow(owner, given);
  const { causal } = resolveOptions(owner, { causal: given.causal }, { causal: false }, {
    causal: { type: "boolean" },
  });
  const shape = checkSquare(owner, weights);
  return {
    build: () => [weights],
    finish: ([data]) => {
      const groups = diagonalGroups(owner, data, shape, { window, causal });
      const total = groups.perGroup.reduce((s, g) => addDiagonal(s, g), { mass: 0, uniform: 0, rows: 0 });
      if (total.rows === 0) {
        throw new RangeError(
          `${owner}: no row to measure: ${groups.emptyRows} rows are all zeros and ${groups.coveredRows} have their ` +
            `whole context within window = ${window}; use a smaller window or a longer input`,
        );
      }
      const { emptyRows, coveredRows, perGroup } = groups;
      return { window, causal, ...diagonalMeans(total), emptyRows, coveredRows, perGroup };
    },
  };
}

/**
 * The excess near-diagonal mass pooled over groups of rows (windows, heads, layers): (Σ mass − Σ uniform) / Σ rows.
 * It is the statistic to resample when bootstrapping over the windows of one model
 * (`bootstrapInterval(perWindow, diagonalExcess)` from `lib/stats`). Throws when no row is counted.
 *
 * @example
 * ```ts
 * import { diagonalExcess } from "./attention_maps.ts";
 * console.log(diagonalExcess([{ mass: 3, uniform: 1, rows: 4 }, { mass: 1, uniform: 1, rows: 4 }])); // 0.25
 * ```
 */
export function diagonalExcess(parts: readonly DiagonalSums[]): number {
  if (!Array.isArray(parts)) {
    throw new TypeError(
      `diagonalExcess: parts must be an array of { mass, uniform, rows } sums, got ${describe(parts)}`,
    );
  }
  const total = parts.reduce((s: DiagonalSums, p) => addDiagonal(s, p), { mass: 0, uniform: 0, rows: 0 });
  if (!(total.rows > 0)) {
    throw new RangeError(`diagonalExcess: the ${parts.length} parts count no row; pass the sums of measured rows`);
  }
  return (total.mass - total.uniform) / total.rows;
}

/**
 * Each layer's near-diagonal mass ({@linkcode diagonalMass}) pooled over every query row of every window in `ids`
 * [windows, n] and every head, on the raw `model.attentionWeights` (causal for a language model), with the sums of
 * each window kept apart (`perWindow`) for a bootstrap over windows. Windows run through the model `batchSize` at
 * a time. Throws when the window holds every row's context (n <= window + 1 for a causal model). Creates no
 * lasting tensors.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "../models/model.ts";
 * import { layerDiagonalMass } from "./attention_maps.ts";
 * const model = createModel({ attention: "transnormer-t2", layers: 2, dModel: 8, heads: 2 }, { log: () => {} });
 * const ids = tf.tensor2d([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]], [2, 6], "int32");
 * const layers = layerDiagonalMass(model, ids, { window: 1 });
 * // Per window: 2 heads × 4 counted queries (2..5); queries 0 and 1 see nothing beyond the window.
 * console.log(layers.map((l) => [l.variant, l.rows, l.perWindow.map((w) => w.rows)])); // [["diag", 16, [8, 8]], ["norm", 16, [8, 8]]]
 * ids.dispose();
 * model.dispose();
 * ```
 */
export function layerDiagonalMass(
  model: TransformerModel,
  ids: tf.Tensor2D,
  options: LayerDiagonalMassOptions,
): LayerDiagonalMass[] {
  const run = layerDiagonalRun("layerDiagonalMass", model, ids, options);
  forEachAttentionBatch(model, ids, { batchSize: run.batchSize, visit: (w, from) => readPlan(run.plan(w, from)) });
  return run.result();
}

/**
 * {@linkcode layerDiagonalMass} with one awaited read (`await data()`) per batch of windows, for a GPU backend.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "../models/model.ts";
 * import { layerDiagonalMassAsync } from "./attention_maps.ts";
 * const model = createModel({ attention: "transnormer-t2", layers: 2, dModel: 8, heads: 2 }, { log: () => {} });
 * const ids = tf.tensor2d([[1, 2, 3, 4, 5, 6]], [1, 6], "int32");
 * const layers = await layerDiagonalMassAsync(model, ids, { window: 1 });
 * console.log(layers.map((l) => [l.variant, l.rows])); // [["diag", 8], ["norm", 8]]
 * ids.dispose();
 * model.dispose();
 * ```
 */
export async function layerDiagonalMassAsync(
  model: TransformerModel,
  ids: tf.Tensor2D,
  options: LayerDiagonalMassOptions,
): Promise<LayerDiagonalMass[]> {
  const run = layerDiagonalRun("layerDiagonalMassAsync", model, ids, options);
  await forEachAttentionBatchAsync(model, ids, {
    batchSize: run.batchSize,
    visit: (w, from) => readPlanAsync(run.plan(w, from)),
  });
  return run.result();
}

function layerDiagonalRun(
  owner: string,
  model: TransformerModel,
  ids: tf.Tensor2D,
  options: LayerDiagonalMassOptions,
): BatchRun<LayerDiagonalMass[]> {
  const given = checkOptionKeys(owner, options, ["window", "batchSize"]);
  const window = checkWindow(owner, given);
  const { batchSize } = resolveOptions(owner, { batchSize: given.batchSize }, { batchSize: 8 }, {
    batchSize: { type: "number", min: 1, integer: true },
  });
  checkModel(owner, model);
  checkIds(owner, ids);
  const causal = model.causal;
  const [count, n] = ids.shape;
  if (causal ? n <= window + 1 : n <= 1) {
    throw new RangeError(
      `${owner}: every query's context lies within window = ${window} when n = ${n}; ` +
        `use windows of more than ${causal ? window + 1 : 1} tokens or a smaller window`,
    );
  }
  const { heads, attention } = model.config;
  const zero = () => ({ mass: 0, uniform: 0, rows: 0 });
  const layers = attention.map(() => ({
    perWindow: Array.from({ length: count }, zero),
    perHead: Array.from({ length: heads }, zero),
    emptyRows: 0,
    coveredRows: 0,
  }));
  return {
    batchSize,
    plan: (weights, from) =>
      layersPlan(weights, (layer, values, shape) => {
        const groups = diagonalGroups(owner, values, shape, { window, causal });
        const into = layers[layer];
        groups.perGroup.forEach((sums, g) => {
          addDiagonal(into.perWindow[from + Math.floor(g / heads)], sums);
          addDiagonal(into.perHead[g % heads], sums);
        });
        into.emptyRows += groups.emptyRows;
        into.coveredRows += groups.coveredRows;
      }),
    result: () =>
      layers.map((l, layer) => ({
        layer,
        variant: attention[layer].variant,
        window,
        ...diagonalMeans(l.perWindow.reduce((s, w) => addDiagonal(s, w), zero())),
        emptyRows: l.emptyRows,
        coveredRows: l.coveredRows,
        perWindow: l.perWindow,
        perHead: l.perHead.map((h, head) => ({ head, ...diagonalMeans(h) })),
      })),
  };
}

/**
 * The sums of each window pooled over the chosen layers (default all) of {@linkcode layerDiagonalMass}'s result:
 * one {@linkcode DiagonalSums} per window, ready for {@linkcode diagonalExcess} and a bootstrap over windows.
 *
 * @example
 * ```ts
 * import { diagonalByWindow, diagonalExcess, type LayerDiagonalMass } from "./attention_maps.ts";
 * const layer = (mass: number) => ({ perWindow: [{ mass, uniform: 1, rows: 2 }, { mass: 1, uniform: 1, rows: 2 }] });
 * const layers = [layer(2), layer(3)] as LayerDiagonalMass[];
 * const early = diagonalByWindow(layers, { layers: [0] });
 * console.log(early, diagonalExcess(diagonalByWindow(layers))); // [{ mass: 2, uniform: 1, rows: 2 }, { mass: 1, uniform: 1, rows: 2 }] 0.375
 * ```
 */
export function diagonalByWindow(
  layers: readonly LayerDiagonalMass[],
  options?: { layers?: readonly number[] },
): DiagonalSums[] {
  const owner = "diagonalByWindow";
  if (!Array.isArray(layers) || layers.length === 0 || layers.some((l) => !Array.isArray(l?.perWindow))) {
    throw new TypeError(`${owner}: layers must be the non-empty result of layerDiagonalMass, got ${describe(layers)}`);
  }
  const given = checkOptionKeys(owner, options, ["layers"]);
  const chosen = (given.layers ?? layers.map((_, i) => i)) as number[];
  if (!Array.isArray(chosen) || chosen.length === 0) {
    throw new TypeError(`${owner}: option layers must be a non-empty array of layer indices, got ${describe(chosen)}`);
  }
  chosen.forEach((i) => {
    if (!Number.isInteger(i) || i < 0 || i >= layers.length) {
      throw new RangeError(`${owner}: option layers must hold layer indices in 0..${layers.length - 1}, got ${i}`);
    }
  });
  const count = layers[0].perWindow.length;
  if (layers.some((l) => l.perWindow.length !== count)) {
    throw new RangeError(
      `${owner}: every layer must have the same windows, got ${layers.map((l) => l.perWindow.length)}`,
    );
  }
  return Array.from(
    { length: count },
    (_, k) =>
      chosen.reduce((s: DiagonalSums, i) => addDiagonal(s, layers[i].perWindow[k]), { mass: 0, uniform: 0, rows: 0 }),
  );
}
