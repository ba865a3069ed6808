/**
 * Bootstrap confidence intervals for any statistic of any samples: numbers, or
 * whole objects such as one seed's locality curve, with the statistic computed
 * over a resample of them (e.g. the mean AUC over resampled seeds). Resampling
 * uses the project's seeded generator (`seededUniform` of `lib/random.ts`), so
 * the same seed gives the same interval.
 *
 * Two methods:
 * - `"percentile"` (default): the (1 − level)/2 and (1 + level)/2 quantiles (type 7)
 *   of the resampled statistics.
 * - `"bca"`: bias-corrected and accelerated (Efron 1987). The bias correction
 *   z₀ = Φ⁻¹(share of resampled statistics below the estimate, ties counted half)
 *   and the acceleration a = Σ(θ̄ − θ₍ᵢ₎)³ / (6 · (Σ(θ̄ − θ₍ᵢ₎)²)^{3/2}) from the
 *   jackknife (n more evaluations of the statistic) move the two quantile levels
 *   to Φ(z₀ + (z₀ + z_α) / (1 − a(z₀ + z_α))). Better coverage for skewed or biased
 *   statistics; it costs n extra evaluations.
 *
 * A bootstrap over a handful of seeds is only as good as those seeds: with n = 3
 * there are 10 distinct resamples, and the interval is too narrow. `verdict`'s
 * minimum n applies to it as to any interval.
 *
 * @module
 */

import { seededUniform } from "../random.ts";
import { checkNumber, checkOptionKeys, describeValue } from "../_options.ts";
import { checkLevel } from "./_checks.ts";
import type { Interval } from "./intervals.ts";
import { normalCdf, normalQuantile } from "./distributions.ts";

/** Options of {@linkcode bootstrapInterval}. */
export interface BootstrapOptions {
  /** Confidence level, strictly between 0 and 1. Default 0.95. */
  level?: number;
  /** Number of resamples, an integer ≥ 100. Default 2000. */
  resamples?: number;
  /** Seed of the resampling (a non-negative integer). Default 0. */
  seed?: number;
  /** `"percentile"` (default) or `"bca"` (bias-corrected and accelerated). */
  method?: "percentile" | "bca";
  /** The value meaning "no effect", for `verdict`. Default 0. */
  nullValue?: number;
}

/** What {@linkcode bootstrapInterval} returns. */
export interface BootstrapInterval extends Interval {
  /** Number of resamples. */
  resamples: number;
  /** Seed of the resampling. */
  seed: number;
  /** Standard deviation of the resampled statistics: the bootstrap standard error. */
  standardError: number;
}

// Type 7 quantile of a sorted array.
function quantileSorted(s: Float64Array, p: number): number {
  const h = (s.length - 1) * p;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, s.length - 1);
  return s[lo] + (h - lo) * (s[hi] - s[lo]);
}

function checkStatistic(value: unknown, where: string, seed: number): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new RangeError(
      `bootstrapInterval: statistic returned ${describeValue(value)} ${where} (seed ${seed}); ` +
        `it must return a finite number for every resample`,
    );
  }
  return value;
}

/**
 * A bootstrap confidence interval for `statistic(samples)`: the statistic is
 * recomputed on `resamples` resamples of `samples` drawn with replacement (each
 * the size of `samples`), and the interval read from their distribution by the
 * percentile or BCa method (see the module doc). `samples` may hold anything,
 * e.g. one locality curve per seed; `statistic` receives a resample (a new
 * array) and returns a finite number. `estimate` is the statistic of `samples`.
 * An empty `samples` is a `RangeError`; one sample gives `NaN` bounds and a
 * `reason`.
 *
 * @example
 * ```ts
 * import { bootstrapInterval } from "./bootstrap.ts";
 * // One curve per seed; the statistic is the mean area under the curves.
 * const curves = [[0.2, 0.6, 1], [0.3, 0.7, 1], [0.25, 0.5, 1], [0.35, 0.8, 1], [0.3, 0.6, 1]];
 * const auc = (c: number[]) => c.reduce((s, y) => s + y, 0) / c.length;
 * const meanAuc = (cs: readonly number[][]) => cs.reduce((s, c) => s + auc(c), 0) / cs.length;
 * const iv = bootstrapInterval(curves, meanAuc, { seed: 1 });
 * const again = bootstrapInterval(curves, meanAuc, { seed: 1 });
 * console.log(iv.estimate.toFixed(3), iv.low <= iv.estimate && iv.estimate <= iv.high, iv.low === again.low);
 * // 0.640 true true
 * ```
 */
export function bootstrapInterval<T>(
  samples: readonly T[],
  statistic: (resample: T[]) => number,
  options?: BootstrapOptions,
): BootstrapInterval {
  const owner = "bootstrapInterval";
  const o = checkOptionKeys<BootstrapOptions>(owner, options, ["level", "resamples", "seed", "method", "nullValue"]);
  const level = checkLevel(owner, o.level ?? 0.95);
  const resamples = checkNumber(owner, "options.resamples", o.resamples ?? 2000, { min: 100, integer: true });
  const seed = checkNumber(owner, "options.seed", o.seed ?? 0, { min: 0, integer: true });
  const nullValue = checkNumber(owner, "options.nullValue", o.nullValue ?? 0);
  const method = o.method ?? "percentile";
  if (method !== "percentile" && method !== "bca") {
    throw new RangeError(`${owner}: options.method must be "percentile" or "bca", got ${describeValue(method)}`);
  }
  if (!Array.isArray(samples)) {
    throw new TypeError(
      `${owner}: samples must be an array (numbers, or one object per seed), got ${describeValue(samples)}`,
    );
  }
  if (typeof statistic !== "function") {
    throw new TypeError(`${owner}: statistic must be a function from a resample (an array) to a number`);
  }
  const n = samples.length;
  if (n === 0) throw new RangeError(`${owner}: samples is empty; pass at least 2 samples`);
  const estimate = checkStatistic(statistic([...samples]), "on samples", seed);
  const label = method === "bca" ? "bootstrap BCa" : "bootstrap percentile";
  const base = { estimate, level, n, method: label, nullValue, resamples, seed };
  if (n < 2) {
    return {
      ...base,
      low: NaN,
      high: NaN,
      standardError: NaN,
      reason: "one sample: a bootstrap interval needs at least 2",
    };
  }

  const uniform = seededUniform(seed);
  const stats = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    const resample = new Array<T>(n);
    for (let i = 0; i < n; i++) resample[i] = samples[Math.floor(uniform() * n)];
    stats[r] = checkStatistic(statistic(resample), `on resample ${r}`, seed);
  }
  let sum = 0;
  for (const s of stats) sum += s;
  const center = sum / resamples;
  let ss = 0;
  for (const s of stats) ss += (s - center) ** 2;
  const standardError = Math.sqrt(ss / (resamples - 1));

  let pLow = (1 - level) / 2, pHigh = (1 + level) / 2;
  if (method === "bca") [pLow, pHigh] = bcaLevels(samples, statistic, stats, estimate, level, seed);
  stats.sort();
  return { ...base, low: quantileSorted(stats, pLow), high: quantileSorted(stats, pHigh), standardError };
}

/** The BCa quantile levels for the two bounds. */
function bcaLevels<T>(
  samples: readonly T[],
  statistic: (resample: T[]) => number,
  stats: Float64Array,
  estimate: number,
  level: number,
  seed: number,
): [number, number] {
  const n = samples.length, b = stats.length;
  let below = 0;
  for (const s of stats) below += s < estimate ? 1 : s === estimate ? 0.5 : 0;
  // Keep the share off 0 and 1, where z₀ would be infinite (the estimate outside every resample).
  const share = Math.min(Math.max(below / b, 0.5 / b), 1 - 0.5 / b);
  const z0 = normalQuantile(share);

  const jack = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const rest = samples.filter((_, j) => j !== i);
    jack[i] = checkStatistic(statistic(rest), `without sample ${i} (jackknife)`, seed);
  }
  let jm = 0;
  for (const v of jack) jm += v / n;
  let num = 0, den = 0;
  for (const v of jack) {
    const d = jm - v;
    num += d * d * d;
    den += d * d;
  }
  const a = den === 0 ? 0 : num / (6 * den ** 1.5);

  const adjust = (p: number, fallback: number) => {
    const z = normalQuantile(p);
    const denominator = 1 - a * (z0 + z);
    // An acceleration this extreme leaves the formula's range: fall back to the widest level on that side.
    if (!(denominator > 0)) return fallback;
    return normalCdf(z0 + (z0 + z) / denominator);
  };
  return [adjust((1 - level) / 2, 0), adjust((1 + level) / 2, 1)];
}
