/**
 * Descriptive statistics of a sample of finite numbers: mean, variance and
 * standard deviation (sample, n − 1, by default), median and quantiles (type 7),
 * the median absolute deviation, ranks with average ties, relative spreads, and a
 * centred rolling median to take the trend out of a series.
 *
 * Every function rejects an empty sample, a non-finite value (`RangeError` naming
 * the index) and a non-number (`TypeError`).
 *
 * @module
 */

import { checkNumber, checkOptionKeys, describeValue } from "../_options.ts";
import { checkSample } from "./_checks.ts";
import type { Sample } from "./_checks.ts";
import { meanOf, sumOfSquares } from "./_sums.ts";

/**
 * 1 / Φ⁻¹(3/4) to four decimals: the factor that makes the median absolute
 * deviation of normal data estimate its standard deviation.
 */
export const MAD_NORMAL_SCALE = 1.4826;

/** Options of {@linkcode variance}, {@linkcode std} and {@linkcode rsd}. */
export interface SpreadOptions {
  /** Divide by n (the population variance) instead of n − 1 (the sample variance). Default `false`. */
  population?: boolean;
}

/**
 * The arithmetic mean, computed in two passes (the mean, then the mean residual
 * added back) so that large offsets lose no precision.
 *
 * @example
 * ```ts
 * import { mean } from "./descriptive.ts";
 * console.log(mean([1, 2, 3, 4])); // 2.5
 * ```
 */
export function mean(xs: Sample): number {
  return meanOf(checkSample("mean", "xs", xs));
}

function checkPopulation(owner: string, options: unknown): boolean {
  const { population = false } = checkOptionKeys<SpreadOptions>(owner, options, ["population"]);
  if (typeof population !== "boolean") {
    throw new TypeError(`${owner}: options.population must be true or false, got ${describeValue(population)}`);
  }
  return population;
}

function varianceOf(owner: string, values: number[], population: boolean): number {
  if (!population && values.length < 2) {
    throw new RangeError(
      `${owner}: xs has 1 value; the sample variance needs at least 2 (pass { population: true } for the ` +
        `population variance, which is 0 for one value)`,
    );
  }
  return sumOfSquares(values, meanOf(values)) / (population ? values.length : values.length - 1);
}

/**
 * The variance: Σ(x − x̄)² / (n − 1) (the unbiased sample variance, needs n ≥ 2),
 * or Σ(x − x̄)² / n with `{ population: true }`.
 *
 * @example
 * ```ts
 * import { variance } from "./descriptive.ts";
 * console.log(variance([1, 2, 3, 4, 5]), variance([1, 2, 3, 4, 5], { population: true })); // 2.5 2
 * ```
 */
export function variance(xs: Sample, options?: SpreadOptions): number {
  const population = checkPopulation("variance", options);
  return varianceOf("variance", checkSample("variance", "xs", xs), population);
}

/**
 * The standard deviation: the square root of {@linkcode variance} (sample, n − 1,
 * by default; `{ population: true }` divides by n).
 *
 * @example
 * ```ts
 * import { std } from "./descriptive.ts";
 * console.log(std([2, 4, 4, 4, 5, 5, 7, 9], { population: true })); // 2
 * ```
 */
export function std(xs: Sample, options?: SpreadOptions): number {
  const population = checkPopulation("std", options);
  return Math.sqrt(varianceOf("std", checkSample("std", "xs", xs), population));
}

function sorted(values: number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

// Type 7 on an already sorted array.
function quantileSorted(s: number[], p: number): number {
  const h = (s.length - 1) * p;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, s.length - 1);
  return s[lo] + (h - lo) * (s[hi] - s[lo]);
}

/**
 * The p-quantile by linear interpolation between order statistics, type 7 of
 * Hyndman & Fan (the default of R's `quantile` and of NumPy): with the sorted
 * values x₍₀₎ ≤ … ≤ x₍ₙ₋₁₎ and h = (n − 1)·p, it is
 * x₍⌊h⌋₎ + (h − ⌊h⌋)·(x₍⌊h⌋₊₁₎ − x₍⌊h⌋₎). p = 0 gives the minimum, p = 1 the maximum.
 *
 * @example
 * ```ts
 * import { quantile } from "./descriptive.ts";
 * console.log(quantile([1, 2, 3, 4], 0.25), quantile([10, 0], 1)); // 1.75 10
 * ```
 */
export function quantile(xs: Sample, p: number): number {
  const values = checkSample("quantile", "xs", xs);
  checkProbability("quantile", "p", p);
  return quantileSorted(sorted(values), p);
}

function checkProbability(owner: string, name: string, p: unknown): number {
  if (typeof p !== "number") {
    throw new TypeError(`${owner}: ${name} must be a number in [0, 1], got ${describeValue(p)}`);
  }
  if (!(p >= 0 && p <= 1)) throw new RangeError(`${owner}: ${name} must lie in [0, 1], got ${p}`);
  return p;
}

/**
 * The median: the middle value, or the mean of the two middle values when n is even.
 *
 * @example
 * ```ts
 * import { median } from "./descriptive.ts";
 * console.log(median([3, 1, 2]), median([4, 1, 3, 2])); // 2 2.5
 * ```
 */
export function median(xs: Sample): number {
  return quantileSorted(sorted(checkSample("median", "xs", xs)), 0.5);
}

/**
 * The median absolute deviation, median(|x − median(x)|), unscaled. Multiply by
 * {@linkcode MAD_NORMAL_SCALE} (1.4826) to estimate σ for normal data.
 *
 * @example
 * ```ts
 * import { mad } from "./descriptive.ts";
 * console.log(mad([1, 1, 2, 2, 4, 6, 9])); // 1
 * ```
 */
export function mad(xs: Sample): number {
  const values = checkSample("mad", "xs", xs);
  const m = quantileSorted(sorted(values), 0.5);
  return quantileSorted(sorted(values.map((x) => Math.abs(x - m))), 0.5);
}

/** Options of {@linkcode rank}. */
export interface RankOptions {
  /**
   * How tied values are ranked: `"average"` (default) gives each the mean of the
   * ranks they span (fractional ranks, as Spearman's correlation uses); `"min"`
   * gives each the lowest (competition ranking: 1, 2, 2, 4).
   */
  ties?: "average" | "min";
}

/**
 * The 1-based ranks of the values in ascending order, in the input's order.
 * Ties share the average of the ranks they span by default (`[10, 20, 20, 30]` →
 * `[1, 2.5, 2.5, 4]`), or the lowest with `{ ties: "min" }` (→ `[1, 2, 2, 4]`).
 *
 * @example
 * ```ts
 * import { rank } from "./descriptive.ts";
 * console.log(rank([30, 10, 20, 20]), rank([30, 10, 20, 20], { ties: "min" })); // [4, 1, 2.5, 2.5] [4, 1, 2, 2]
 * ```
 */
export function rank(xs: Sample, options?: RankOptions): number[] {
  const values = checkSample("rank", "xs", xs);
  const { ties = "average" } = checkOptionKeys<RankOptions>("rank", options, ["ties"]);
  if (ties !== "average" && ties !== "min") {
    throw new RangeError(`rank: options.ties must be "average" or "min", got ${describeValue(ties)}`);
  }
  const order = values.map((_, i) => i).sort((a, b) => values[a] - values[b]);
  const ranks = new Array<number>(values.length);
  for (let start = 0; start < order.length;) {
    let end = start + 1;
    while (end < order.length && values[order[end]] === values[order[start]]) end++;
    // Positions start..end-1 (0-based) hold one tied value: ranks start+1..end.
    const shared = ties === "average" ? (start + 1 + end) / 2 : start + 1;
    for (let j = start; j < end; j++) ranks[order[j]] = shared;
    start = end;
  }
  return ranks;
}

/**
 * The relative standard deviation, std / mean (sample std by default;
 * `{ population: true }` divides by n). A `RangeError` when the mean is 0.
 *
 * @example
 * ```ts
 * import { rsd } from "./descriptive.ts";
 * console.log(rsd([2, 4, 4, 4, 5, 5, 7, 9], { population: true })); // 0.4
 * ```
 */
export function rsd(xs: Sample, options?: SpreadOptions): number {
  const population = checkPopulation("rsd", options);
  const values = checkSample("rsd", "xs", xs);
  const m = meanOf(values);
  if (m === 0) throw new RangeError("rsd: the mean of xs is 0, so std / mean is undefined");
  return Math.sqrt(varianceOf("rsd", values, population)) / m;
}

/**
 * The robust relative standard deviation, 1.4826 · MAD / median: it estimates
 * std / mean for normal data, but a few spikes cannot move it. A `RangeError`
 * when the median is 0.
 *
 * @example
 * ```ts
 * import { robustRsd } from "./descriptive.ts";
 * console.log(robustRsd([9, 10, 11, 10, 1000])); // 0.14826
 * ```
 */
export function robustRsd(xs: Sample): number {
  const values = checkSample("robustRsd", "xs", xs);
  const m = quantileSorted(sorted(values), 0.5);
  if (m === 0) throw new RangeError("robustRsd: the median of xs is 0, so MAD / median is undefined");
  return (MAD_NORMAL_SCALE * quantileSorted(sorted(values.map((x) => Math.abs(x - m))), 0.5)) / m;
}

/** Options of {@linkcode rollingMedian} and {@linkcode detrend}. */
export interface RollingOptions {
  /** Number of values in the full window: an odd integer ≥ 1, so it centres on each value (51 means ±25). */
  window: number;
}

function checkWindow(owner: string, options: unknown): number {
  if (options === undefined) {
    throw new TypeError(`${owner}: options must give the window, e.g. { window: 51 } for ±25 values`);
  }
  const { window } = checkOptionKeys<RollingOptions>(owner, options, ["window"]);
  checkNumber(owner, "options.window", window, { min: 1, integer: true });
  if (window % 2 === 0) {
    throw new RangeError(
      `${owner}: options.window must be odd so the window centres on each value, got ${window}; ` +
        `use ${window + 1} for ±${window / 2}`,
    );
  }
  return window;
}

// Index of the first element of sorted `s` that is ≥ x.
function lowerBound(s: number[], x: number): number {
  let lo = 0, hi = s.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (s[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The centred rolling median: value i is the median of xs[i − h … i + h] with
 * h = (window − 1) / 2. Near the ends the window is cut to the values that exist
 * (xs[0 … i + h] at the start, xs[i − h … n − 1] at the end), so it is shorter
 * and no longer centred there; it is never padded. A window at least 2n − 1 long
 * gives every value the median of the whole series.
 *
 * @example
 * ```ts
 * import { rollingMedian } from "./descriptive.ts";
 * console.log(rollingMedian([1, 9, 2, 8, 3], { window: 3 })); // [5, 2, 8, 3, 5.5]
 * ```
 */
export function rollingMedian(xs: Sample, options: RollingOptions): number[] {
  const values = checkSample("rollingMedian", "xs", xs);
  const h = (checkWindow("rollingMedian", options) - 1) / 2;
  const n = values.length;
  // A sorted copy of the current window, updated by one insertion and one removal per step.
  const win: number[] = [];
  const insert = (x: number) => win.splice(lowerBound(win, x), 0, x);
  for (let j = 0; j <= Math.min(h, n - 1); j++) insert(values[j]);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    out[i] = quantileSorted(win, 0.5);
    if (i + h + 1 < n) insert(values[i + h + 1]);
    if (i - h >= 0) win.splice(lowerBound(win, values[i - h]), 1);
  }
  return out;
}

/**
 * Removes a slow trend by dividing each value by the centred rolling median
 * around it ({@linkcode rollingMedian}: odd window, cut to the existing values at
 * the ends): the result fluctuates around 1, so its std (or {@linkcode robustRsd})
 * measures fluctuation without drift. Meant for positive series such as gradient
 * norms; a `RangeError` names the index where the rolling median is 0.
 *
 * @example
 * ```ts
 * import { detrend } from "./descriptive.ts";
 * // A series that doubles, with ±10% wiggles: what is left is the wiggles around 1.
 * const xs = [10, 11, 9, 10, 20, 22, 18, 20];
 * console.log(detrend(xs, { window: 3 }).map((x) => x.toFixed(2)).join(" "));
 * // 0.95 1.10 0.90 1.00 1.00 1.10 0.90 1.05
 * ```
 */
export function detrend(xs: Sample, options: RollingOptions): number[] {
  const values = checkSample("detrend", "xs", xs);
  checkWindow("detrend", options);
  const trend = rollingMedian(values, options);
  return values.map((x, i) => {
    if (trend[i] === 0) {
      throw new RangeError(
        `detrend: the rolling median at index ${i} is 0, so x / median is undefined; detrend positive series`,
      );
    }
    return x / trend[i];
  });
}
