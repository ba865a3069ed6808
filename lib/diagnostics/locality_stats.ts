/**
 * Locality curves as samples, for intervals: each layer's locally accumulated attention (Fig. 2a of "The Devil in
 * Linear Transformer") measured window by window, so that a bootstrap over the windows (sequences of text) gives an
 * interval for the area under the curve of one model, and the helpers that pool those samples over windows, layers
 * and seeds.
 *
 * - {@linkcode windowLocality}: one {@linkcode PooledLocality} per window and layer (pooled over heads and the
 *   window's query rows), from one forward pass per batch of windows.
 * - {@linkcode poolWindows}: the locality of a set of windows and layers: each layer pooled over the windows' rows,
 *   then the mean over the layers (each layer counts once).
 * - {@linkcode localityAucInterval}: a seeded bootstrap interval of that area over resampled windows, or of the
 *   difference between two models read on the same windows (paired: the same resample for both).
 * - {@linkcode layerHalves}: the early and late layers, split as TransNormer splits DiagAttention from NormAttention.
 * - {@linkcode curveBand}: the mean and range over seeds of curves sampled at the same points, for bands in figures.
 *
 * The windows of one model are not independent of the seeds: every seed is read on the same windows, so a t interval
 * over seeds is conditional on them, and the bootstrap over windows says how much the choice of text moves a value.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { checkOptionKeys, resolveOptions } from "../_options.ts";
import type { TransformerModel } from "../models/model.ts";
import { type BootstrapInterval, bootstrapInterval, mean } from "../stats/mod.ts";
import { type ReadPlan, readPlan, readPlanAsync } from "../read.ts";
import { type PooledLocality, pooledLocalityOfValues } from "./attention_maps.ts";
import { type HeadLocality, LOCALITY_RATIOS, localityCurveOfValues } from "./locality.ts";
import {
  checkIds,
  checkModel,
  checkRatios,
  describe,
  forEachAttentionBatch,
  forEachAttentionBatchAsync,
} from "./_checks.ts";

/** Options of {@linkcode windowLocality}. */
export interface WindowLocalityOptions {
  /** Neighbourhood ratios, each 0 or in [1e-6, 1]. Default {@linkcode LOCALITY_RATIOS}. */
  ratios?: readonly number[];
  /** Windows per forward pass (an integer >= 1); bounds the memory of the [b, h, n, n] matrices. Default 8. */
  batchSize?: number;
}

/** What {@linkcode windowLocality} returns. */
export interface WindowLocality {
  /** Tokens per window. */
  n: number;
  /** Whether the weights were causal (a language model of task "lm"); false for a masked LM. */
  causal: boolean;
  /** The ratios x the curves are sampled at. */
  ratios: number[];
  /** Each layer's attention variant, layer 0 first. */
  variants: string[];
  /**
   * windows[k][l]: window k, layer l, pooled over the heads and the query rows of that window that hold attention
   * mass. A window whose rows are all empty in a layer has `rows` 0 and NaN curves; the pooling skips it.
   */
  windows: PooledLocality[][];
}

/** Which curve's area: `"available"` (each query against its own context) or `"full"` (the paper's centred one). */
export type LocalityCurveKind = "available" | "full";

/** Options of {@linkcode poolWindows}. */
export interface PoolWindowsOptions {
  /** Layer indices to average over (each counts once). Default: every layer. */
  layers?: readonly number[];
}

/** Options of {@linkcode localityAucInterval}. */
export interface LocalityIntervalOptions {
  /** Layer indices to average over. Default: every layer. */
  layers?: readonly number[];
  /** Whose area: `"available"` (default) or `"full"`; the same for a non-causal model. */
  curve?: LocalityCurveKind;
  /** A second model read on the same windows: the interval is then of (this − minus), resampling both alike. */
  minus?: WindowLocality;
  /** Confidence level, strictly between 0 and 1. Default 0.95. */
  level?: number;
  /** Bootstrap resamples, an integer >= 100. Default 2000. */
  resamples?: number;
  /** Seed of the resampling. Default 0. */
  seed?: number;
}

/** What {@linkcode layerHalves} returns: layer indices. */
export interface LayerHalves {
  /** The first ⌈L/2⌉ layers (TransNormer's DiagAttention layers). */
  early: number[];
  /** The remaining layers (TransNormer's NormAttention layers). */
  late: number[];
  /** Every layer. */
  all: number[];
}

/** What {@linkcode curveBand} returns, one value per point. */
export interface CurveBand {
  /** Mean over the curves. */
  mean: number[];
  /** Smallest value over the curves. */
  low: number[];
  /** Largest value over the curves. */
  high: number[];
}

/** A window and layer without a single row holding attention mass. */
function emptyLocality(ratios: number[], emptyRows: number): PooledLocality {
  const nan = ratios.map(() => NaN);
  return { ratios: [...ratios], curve: nan, auc: NaN, availableCurve: [...nan], availableAuc: NaN, rows: 0, emptyRows };
}

/** One layer's locality in each window of a batch, from its weights read back (`data`, flat, [b, h, n, n]). */
function batchLocality(
  data: Float32Array,
  shape: readonly number[],
  ratios: number[],
  causal: boolean,
): PooledLocality[] {
  const [size, heads, n] = shape;
  const perWindow = heads * n * n;
  let hasEmpty = false;
  for (let r = 0; r < size * heads * n && !hasEmpty; r++) {
    let mass = 0;
    for (let j = 0; j < n; j++) mass += Math.abs(data[r * n + j]);
    hasEmpty = mass === 0;
  }
  if (!hasEmpty) {
    // Every head of a window has n counted rows, so the window's pooled means are the means of its heads' means:
    // one localityCurve call for the whole batch instead of one per window.
    const { perHead } = localityCurveOfValues(data, shape, { ratios, causal });
    return Array.from({ length: size }, (_, k) => {
      const own = perHead.slice(k * heads, (k + 1) * heads);
      const average = (pick: (h: HeadLocality) => number) => own.reduce((s, h) => s + pick(h), 0) / heads;
      return {
        ratios: [...ratios],
        curve: ratios.map((_, r) => average((h) => h.curve[r])),
        auc: average((h) => h.auc),
        availableCurve: ratios.map((_, r) => average((h) => h.availableCurve[r])),
        availableAuc: average((h) => h.availableAuc),
        rows: heads * n,
        emptyRows: 0,
      };
    });
  }
  // Rows without mass (relu blocks that score every key negative): pool window by window, leaving them out.
  return Array.from({ length: size }, (_, k) => {
    const one = data.subarray(k * perWindow, (k + 1) * perWindow); // [1, h, n, n]
    const mass = one.reduce((s, w) => s + Math.abs(w), 0);
    return mass > 0
      ? pooledLocalityOfValues(one, [1, heads, n, n], { ratios, causal })
      : emptyLocality(ratios, heads * n);
  });
}

/**
 * Each layer's locality curve in each window of `ids` [windows, n], pooled over the heads and the window's query
 * rows: the per-window samples behind {@linkcode localityAucInterval}. Causal for a language model (task "lm"), the
 * centred non-causal curve for a masked LM. Rows without attention mass are left out and counted, as in
 * `pooledLocalityCurve`. Windows run through the model `batchSize` at a time; creates no lasting tensors.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "../models/model.ts";
 * import { windowLocality } from "./locality_stats.ts";
 * const model = createModel({ attention: "vanilla", layers: 2, dModel: 8, heads: 2 }, { log: () => {} });
 * const ids = tf.tensor2d([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]], [3, 4], "int32");
 * const { windows, causal, variants } = windowLocality(model, ids, { ratios: [0, 1], batchSize: 2 });
 * console.log(windows.length, windows[0].length, causal, variants, windows[2][1].rows); // 3 2 true ["softmax", "softmax"] 8
 * ids.dispose();
 * model.dispose();
 * ```
 */
export function windowLocality(
  model: TransformerModel,
  ids: tf.Tensor2D,
  options?: WindowLocalityOptions,
): WindowLocality {
  const run = windowLocalityRun("windowLocality", model, ids, options);
  forEachAttentionBatch(model, ids, { batchSize: run.batchSize, visit: (w) => readPlan(run.plan(w)) });
  return run.result();
}

/**
 * {@linkcode windowLocality} with one awaited read (`await data()`) per batch of windows, for a GPU backend.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "../models/model.ts";
 * import { windowLocalityAsync } from "./locality_stats.ts";
 * const model = createModel({ attention: "vanilla", layers: 1, dModel: 8, heads: 2 }, { log: () => {} });
 * const ids = tf.tensor2d([[1, 2, 3], [4, 5, 6]], [2, 3], "int32");
 * const { windows } = await windowLocalityAsync(model, ids, { ratios: [0, 1] });
 * console.log(windows.length, windows[1][0].curve, windows[1][0].rows); // 2 [0, 1] 6
 * ids.dispose();
 * model.dispose();
 * ```
 */
export async function windowLocalityAsync(
  model: TransformerModel,
  ids: tf.Tensor2D,
  options?: WindowLocalityOptions,
): Promise<WindowLocality> {
  const run = windowLocalityRun("windowLocalityAsync", model, ids, options);
  await forEachAttentionBatchAsync(model, ids, { batchSize: run.batchSize, visit: (w) => readPlanAsync(run.plan(w)) });
  return run.result();
}

/** windowLocality's walk: `plan(weights)` reads one batch's layers at once and adds its windows; then `result()`. */
function windowLocalityRun(
  owner: string,
  model: TransformerModel,
  ids: tf.Tensor2D,
  options?: WindowLocalityOptions,
): { batchSize: number; plan: (weights: tf.Tensor4D[]) => ReadPlan<void>; result: () => WindowLocality } {
  const given = checkOptionKeys(owner, options, ["ratios", "batchSize"]);
  const ratios = checkRatios(owner, given.ratios ?? LOCALITY_RATIOS);
  const { batchSize } = resolveOptions(owner, { batchSize: given.batchSize }, { batchSize: 8 }, {
    batchSize: { type: "number", min: 1, integer: true },
  });
  checkModel(owner, model);
  checkIds(owner, ids);
  const causal = model.causal;
  const n = ids.shape[1];
  const windows: PooledLocality[][] = [];
  return {
    batchSize,
    plan: (weights) => ({
      build: () => weights,
      finish: (values) => {
        const perLayer = values.map((v, layer) => batchLocality(v, weights[layer].shape, ratios, causal));
        for (let k = 0; k < perLayer[0].length; k++) windows.push(perLayer.map((layer) => layer[k]));
      },
    }),
    result: () => ({ n, causal, ratios, variants: model.config.attention.map((a) => a.variant), windows }),
  };
}

function checkWindows(owner: string, windows: unknown): PooledLocality[][] {
  if (!Array.isArray(windows) || windows.length === 0 || !windows.every((w) => Array.isArray(w) && w.length > 0)) {
    throw new TypeError(
      `${owner}: windows must be a non-empty array of per-layer locality arrays ([window][layer], ` +
        `windowLocality(...).windows), got ${describe(windows)}`,
    );
  }
  const layers = windows[0].length;
  windows.forEach((w, k) => {
    if (w.length !== layers) {
      throw new RangeError(
        `${owner}: every window needs ${layers} layers (as window 0 has), window ${k} has ${w.length}`,
      );
    }
  });
  return windows as PooledLocality[][];
}

function checkLayers(owner: string, layers: unknown, count: number): number[] {
  if (layers === undefined) return Array.from({ length: count }, (_, l) => l);
  if (!Array.isArray(layers) || layers.length === 0) {
    throw new TypeError(`${owner}: option layers must be a non-empty array of layer indices, got ${describe(layers)}`);
  }
  layers.forEach((l, i) => {
    if (typeof l !== "number") {
      throw new TypeError(`${owner}: option layers must hold layer indices, got ${describe(l)} at index ${i}`);
    }
    if (!Number.isInteger(l) || l < 0 || l >= count) {
      throw new RangeError(
        `${owner}: option layers must hold integers in [0, ${count - 1}] (the model has ${count} layers), got ${l} ` +
          `at index ${i}`,
      );
    }
  });
  return [...layers];
}

type Scalar = "auc" | "availableAuc";

/** Row-weighted mean of one layer's `key` over `windows`; throws when no window has a counted row. */
function pooledScalar(owner: string, windows: readonly PooledLocality[][], layer: number, key: Scalar): number {
  let sum = 0, rows = 0;
  for (const w of windows) {
    const c = w[layer];
    if (c.rows === 0) continue;
    sum += c.rows * c[key];
    rows += c.rows;
  }
  if (rows === 0) {
    throw new RangeError(`${owner}: layer ${layer} has no query row with attention mass in these windows`);
  }
  return sum / rows;
}

/**
 * The locality of a set of windows: each chosen layer pooled over the windows' counted query rows (a window counts
 * by its rows), then the mean over the chosen layers, each layer once. Curves and areas mean what they mean in
 * `pooledLocalityCurve`; `rows` and `emptyRows` are totals over the chosen layers. A layer without a counted row in
 * any window is a `RangeError`.
 *
 * @example
 * ```ts
 * import { poolWindows } from "./locality_stats.ts";
 * const at = (auc: number, rows: number) => ({
 *   ratios: [1], curve: [1], auc, availableCurve: [1], availableAuc: auc, rows, emptyRows: 0,
 * });
 * // Two windows, two layers; window 1 holds three times the rows of window 0 in layer 0.
 * const windows = [[at(0.5, 1), at(0.6, 2)], [at(0.9, 3), at(0.8, 2)]];
 * console.log(poolWindows(windows, { layers: [0] }).auc.toFixed(2), poolWindows(windows).auc.toFixed(3)); // 0.80 0.750
 * ```
 */
export function poolWindows(
  windows: readonly (readonly PooledLocality[])[],
  options?: PoolWindowsOptions,
): PooledLocality {
  const owner = "poolWindows";
  const ws = checkWindows(owner, windows);
  const given = checkOptionKeys(owner, options, ["layers"]);
  const layers = checkLayers(owner, given.layers, ws[0].length);
  const ratios = ws[0][0].ratios;
  const curve = new Array<number>(ratios.length).fill(0);
  const availableCurve = new Array<number>(ratios.length).fill(0);
  let auc = 0, availableAuc = 0, rows = 0, emptyRows = 0;
  for (const l of layers) {
    const counted = ws.map((w) => w[l]).filter((c) => c.rows > 0);
    const layerRows = counted.reduce((s, c) => s + c.rows, 0);
    emptyRows += ws.reduce((s, w) => s + w[l].emptyRows, 0);
    if (layerRows === 0) {
      throw new RangeError(`${owner}: layer ${l} has no query row with attention mass in these windows`);
    }
    // Each window counts by its rows within the layer; each layer counts once in the mean over layers.
    const share = (c: PooledLocality) => c.rows / layerRows / layers.length;
    for (const c of counted) {
      c.curve.forEach((y, r) => (curve[r] += share(c) * y));
      c.availableCurve.forEach((y, r) => (availableCurve[r] += share(c) * y));
    }
    auc += pooledScalar(owner, ws, l, "auc") / layers.length;
    availableAuc += pooledScalar(owner, ws, l, "availableAuc") / layers.length;
    rows += layerRows;
  }
  return { ratios: [...ratios], curve, auc, availableCurve, availableAuc, rows, emptyRows };
}

function checkLocality(owner: string, name: string, value: unknown): WindowLocality {
  const v = value as WindowLocality;
  if (v === null || typeof v !== "object" || !Array.isArray(v.windows) || typeof v.n !== "number") {
    throw new TypeError(`${owner}: ${name} must be what windowLocality returns, got ${describe(value)}`);
  }
  checkWindows(owner, v.windows);
  return v;
}

/**
 * A seeded bootstrap interval (`bootstrapInterval` of lib/stats, percentile) of a model's locality area over its
 * windows: the windows are resampled with replacement and the area recomputed as {@linkcode poolWindows} computes it
 * (the chosen layers' mean, each layer pooled over the resample's rows). With `minus`, a second model read on the
 * same windows, the interval is of the difference (this − minus) and both are resampled alike, which removes what
 * the two share through the text. `n` is the number of windows.
 *
 * @example
 * ```ts
 * import { localityAucInterval } from "./locality_stats.ts";
 * const at = (auc: number) => ({ ratios: [1], curve: [1], auc, availableCurve: [1], availableAuc: auc, rows: 4, emptyRows: 0 });
 * const local = { n: 4, causal: true, ratios: [1], variants: ["softmax"], windows: [0.70, 0.74, 0.78, 0.72, 0.76].map((a) => [at(a)]) };
 * const flat = { ...local, windows: [0.60, 0.66, 0.67, 0.63, 0.69].map((a) => [at(a)]) };
 * const one = localityAucInterval(local, { seed: 1 });
 * const diff = localityAucInterval(local, { minus: flat, seed: 1 });
 * console.log(one.estimate.toFixed(2), one.low < 0.74 && 0.74 < one.high, diff.estimate.toFixed(2), diff.low > 0); // 0.74 true 0.09 true
 * ```
 */
export function localityAucInterval(locality: WindowLocality, options?: LocalityIntervalOptions): BootstrapInterval {
  const owner = "localityAucInterval";
  const a = checkLocality(owner, "locality", locality);
  const given = checkOptionKeys(owner, options, ["layers", "curve", "minus", "level", "resamples", "seed"]);
  const layers = checkLayers(owner, given.layers, a.windows[0].length);
  const { curve } = resolveOptions(owner, { curve: given.curve }, { curve: "available" as LocalityCurveKind }, {
    curve: { type: "enum", values: ["available", "full"] },
  });
  const b = given.minus === undefined ? null : checkLocality(owner, "option minus", given.minus);
  if (b !== null && (b.windows.length !== a.windows.length || b.n !== a.n)) {
    throw new RangeError(
      `${owner}: option minus must be read on the same windows (${a.windows.length} of n = ${a.n}), got ${b.windows.length} ` +
        `of n = ${b.n}`,
    );
  }
  if (b !== null) checkLayers(owner, layers, b.windows[0].length);
  const key: Scalar = curve === "available" ? "availableAuc" : "auc";
  const area = (ws: PooledLocality[][], picks: number[]) => {
    const chosen = picks.map((k) => ws[k]);
    return layers.reduce((s, l) => s + pooledScalar(owner, chosen, l, key), 0) / layers.length;
  };
  const statistic = (picks: number[]) => area(a.windows, picks) - (b === null ? 0 : area(b.windows, picks));
  const indices = a.windows.map((_, k) => k);
  return bootstrapInterval(indices, statistic, {
    level: given.level as number | undefined,
    resamples: given.resamples as number | undefined,
    seed: given.seed as number | undefined,
  });
}

/**
 * The early and late layers of an L-layer model: the first ⌈L/2⌉ and the rest, the split TransNormer uses between
 * DiagAttention and NormAttention (so a model of one layer has no late layers).
 *
 * @example
 * ```ts
 * import { layerHalves } from "./locality_stats.ts";
 * console.log(layerHalves(4), layerHalves(3).early); // { early: [0, 1], late: [2, 3], all: [0, 1, 2, 3] } [0, 1]
 * ```
 */
export function layerHalves(layers: number): LayerHalves {
  if (typeof layers !== "number") {
    throw new TypeError(`layerHalves: layers must be a number (the model's layer count), got ${describe(layers)}`);
  }
  if (!Number.isInteger(layers) || layers < 1) {
    throw new RangeError(`layerHalves: layers must be an integer >= 1 (the model's layer count), got ${layers}`);
  }
  const all = Array.from({ length: layers }, (_, l) => l);
  const half = Math.ceil(layers / 2);
  return { early: all.slice(0, half), late: all.slice(half), all };
}

/**
 * The mean and the range (smallest and largest value) at each point of curves sampled at the same points, e.g. one
 * locality curve per seed: the band a figure draws for the spread over seeds.
 *
 * @example
 * ```ts
 * import { curveBand } from "./locality_stats.ts";
 * const { mean, low, high } = curveBand([[0, 0.5, 1], [0, 0.7, 1], [0, 0.6, 1]]);
 * console.log(mean.map((y) => y.toFixed(2)), low, high); // ["0.00", "0.60", "1.00"] [0, 0.5, 1] [0, 0.7, 1]
 * ```
 */
export function curveBand(curves: readonly (readonly number[])[]): CurveBand {
  const owner = "curveBand";
  if (!Array.isArray(curves) || curves.length === 0 || !curves.every((c) => Array.isArray(c))) {
    throw new TypeError(`${owner}: curves must be a non-empty array of number arrays (one curve per seed)`);
  }
  const points = curves[0].length;
  curves.forEach((c, s) => {
    if (c.length !== points) {
      throw new RangeError(`${owner}: every curve needs ${points} points (as curve 0 has), curve ${s} has ${c.length}`);
    }
    c.forEach((y, r) => {
      if (typeof y !== "number" || !Number.isFinite(y)) {
        throw new RangeError(`${owner}: curves must hold finite numbers, got ${describe(y)} at curve ${s}, point ${r}`);
      }
    });
  });
  const column = (r: number) => curves.map((c) => c[r]);
  const at = Array.from({ length: points }, (_, r) => column(r));
  return {
    mean: at.map((ys) => mean(ys)),
    low: at.map((ys) => Math.min(...ys)),
    high: at.map((ys) => Math.max(...ys)),
  };
}
