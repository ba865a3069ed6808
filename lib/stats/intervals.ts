/**
 * Confidence intervals from Student's t: the mean of one sample, the difference
 * of two (paired across shared seeds, or Welch's unpaired interval), the ratio of
 * two positive samples (on the log scale, for timings), and the degenerate
 * interval of an exactly computed value.
 *
 * Every interval has the same core, {@linkcode Interval}: `estimate`, `low`,
 * `high`, `level`, `n`, `method` and `nullValue` (the value meaning "no effect":
 * 0 for differences, 1 for ratios), which is what `verdict` reads.
 *
 * **Too few values.** An empty sample is a `RangeError`. One value (or one in
 * either group of an unpaired difference) gives no estimate of the spread, so the
 * interval comes back with `NaN` bounds and a `reason` instead of throwing: the
 * caller can still report the estimate, and `verdict` reads such an interval as
 * inconclusive (underpowered).
 *
 * @module
 */

import { checkOptionKeys, describeValue } from "../_options.ts";
import { checkLevel, checkSample } from "./_checks.ts";
import type { Sample } from "./_checks.ts";
import { tQuantile } from "./distributions.ts";
import { meanOf, sumOfSquares } from "./_sums.ts";

/** What every interval carries; `verdict` reads these fields. */
export interface Interval {
  /** The point estimate: a mean, a difference of means, a ratio, a bootstrap statistic. */
  estimate: number;
  /** Lower bound; `NaN` when the interval cannot be computed (see `reason`). */
  low: number;
  /** Upper bound; `NaN` when the interval cannot be computed (see `reason`). */
  high: number;
  /** Confidence level, e.g. 0.95; 1 for an exact value. */
  level: number;
  /** Number of independent values behind it: values, pairs, or the smaller group. */
  n: number;
  /** How it was computed, in words: `"t"`, `"paired t"`, `"Welch t"`, `"bootstrap percentile"`, `"exact"`, … */
  method: string;
  /** The value meaning "no effect": 0 for means and differences, 1 for ratios. */
  nullValue: number;
  /** Why the bounds are `NaN`, when they are. */
  reason?: string;
  /** Whether the value was computed exactly (no sampling noise): `verdict` needs no minimum n then. */
  exact?: boolean;
}

/** A t interval for a mean: {@linkcode tInterval}. */
export interface TInterval extends Interval {
  /** The sample mean (equal to `estimate`). */
  mean: number;
  /** t_{(1+level)/2, df} · se; `NaN` for one value. */
  halfWidth: number;
  /** Degrees of freedom, n − 1. */
  df: number;
  /** Sample standard deviation (n − 1). */
  sd: number;
  /** Standard error, sd / √n. */
  se: number;
}

/** A difference of two means: {@linkcode differenceInterval}. */
export interface DifferenceInterval extends Interval {
  /** t · se; `NaN` when either group (or the pairs) has fewer than 2 values. */
  halfWidth: number;
  /** Degrees of freedom: pairs − 1, or Welch–Satterthwaite's. */
  df: number;
  /** Standard error of the difference. */
  se: number;
  /** Whether the values were paired. */
  paired: boolean;
  /** Mean of `a`. */
  meanA: number;
  /** Mean of `b`. */
  meanB: number;
  /** Size of `a`. */
  nA: number;
  /** Size of `b`. */
  nB: number;
}

/** A ratio of two positive samples: {@linkcode ratioInterval}. */
export interface RatioInterval extends Interval {
  /** Whether the values were paired. */
  paired: boolean;
  /** Degrees of freedom of the t interval on the log scale. */
  df: number;
  /** The interval of mean(ln a) − mean(ln b) it was exponentiated from. */
  log: DifferenceInterval;
}

/** Options of {@linkcode tInterval}. */
export interface LevelOptions {
  /** Confidence level, strictly between 0 and 1. Default 0.95. */
  level?: number;
}

/** Options of {@linkcode differenceInterval} and {@linkcode ratioInterval}. */
export interface DifferenceOptions {
  /**
   * Required. `true` when a[i] and b[i] belong together (same seed, same
   * interleaved round): the interval is on the differences a[i] − b[i], and the
   * lengths must match. `false` for independent groups (Welch's interval).
   */
  paired: boolean;
  /** Confidence level, strictly between 0 and 1. Default 0.95. */
  level?: number;
}

function sampleVariance(values: number[], m: number): number {
  return sumOfSquares(values, m) / (values.length - 1);
}

function levelOf(owner: string, options: unknown): number {
  const { level = 0.95 } = checkOptionKeys<LevelOptions>(owner, options, ["level"]);
  return checkLevel(owner, level);
}

function tIntervalOf(values: number[], level: number): TInterval {
  const n = values.length;
  const m = meanOf(values);
  const base = { estimate: m, mean: m, level, n, method: "t", nullValue: 0, df: n - 1 };
  if (n < 2) {
    return {
      ...base,
      low: NaN,
      high: NaN,
      halfWidth: NaN,
      sd: NaN,
      se: NaN,
      reason: "one value: a t interval needs at least 2 to estimate the spread",
    };
  }
  const sd = Math.sqrt(sampleVariance(values, m));
  const se = sd / Math.sqrt(n);
  const halfWidth = tQuantile((1 + level) / 2, n - 1) * se;
  return { ...base, low: m - halfWidth, high: m + halfWidth, halfWidth, sd, se };
}

/**
 * The Student-t confidence interval for the mean: mean ± t_{(1+level)/2, n−1} ·
 * s/√n, with s the sample standard deviation. n = 0 is a `RangeError`; n = 1
 * gives `NaN` bounds and a `reason`.
 *
 * @example
 * ```ts
 * import { tInterval } from "./intervals.ts";
 * // mean 3, s = √2.5, se = s/√5 = 0.7071068, t(0.975, 4) = 2.776445: half-width 1.963243
 * const iv = tInterval([1, 2, 3, 4, 5]);
 * console.log(iv.halfWidth.toFixed(6), iv.low.toFixed(6), iv.high.toFixed(6)); // 1.963243 1.036757 4.963243
 * ```
 */
export function tInterval(xs: Sample, options?: LevelOptions): TInterval {
  const level = levelOf("tInterval", options);
  return tIntervalOf(checkSample("tInterval", "xs", xs), level);
}

function checkDifferenceOptions(owner: string, options: unknown): { paired: boolean; level: number } {
  if (options === undefined) {
    throw new TypeError(
      `${owner}: options must say { paired: true } (a[i] and b[i] share a seed or round) or { paired: false }`,
    );
  }
  const o = checkOptionKeys<DifferenceOptions>(owner, options, ["paired", "level"]);
  if (typeof o.paired !== "boolean") {
    throw new TypeError(
      `${owner}: options.paired must be true (a[i] and b[i] share a seed or round) or false (independent ` +
        `groups), got ${describeValue(o.paired)}`,
    );
  }
  return { paired: o.paired, level: checkLevel(owner, o.level ?? 0.95) };
}

function differenceOf(a: number[], b: number[], paired: boolean, level: number, owner: string): DifferenceInterval {
  const meanA = meanOf(a), meanB = meanOf(b);
  const common = { meanA, meanB, nA: a.length, nB: b.length, paired, level, nullValue: 0 };
  if (paired) {
    if (a.length !== b.length) {
      throw new RangeError(
        `${owner}: paired samples must have the same length, got a: ${a.length} and b: ${b.length}; ` +
          `pair them by seed or round, or pass { paired: false }`,
      );
    }
    const d = tIntervalOf(a.map((x, i) => x - b[i]), level);
    return {
      ...common,
      estimate: d.estimate,
      low: d.low,
      high: d.high,
      halfWidth: d.halfWidth,
      df: d.df,
      se: d.se,
      n: d.n,
      method: "paired t",
      ...(d.reason !== undefined ? { reason: "one pair: a paired interval needs at least 2" } : {}),
    };
  }
  const estimate = meanA - meanB;
  const n = Math.min(a.length, b.length);
  if (n < 2) {
    return {
      ...common,
      estimate,
      low: NaN,
      high: NaN,
      halfWidth: NaN,
      df: NaN,
      se: NaN,
      n,
      method: "Welch t",
      reason: `${a.length < 2 ? "a" : "b"} has one value: Welch's interval needs at least 2 in each group`,
    };
  }
  const va = sampleVariance(a, meanA) / a.length;
  const vb = sampleVariance(b, meanB) / b.length;
  const se = Math.sqrt(va + vb);
  // Welch–Satterthwaite: df = (va + vb)² / (va²/(nA − 1) + vb²/(nB − 1)), with va = s_a²/nA.
  // With no spread at all the interval is a point whatever df is; keep the pooled df then.
  const df = se === 0
    ? a.length + b.length - 2
    : (va + vb) ** 2 / (va ** 2 / (a.length - 1) + vb ** 2 / (b.length - 1));
  const halfWidth = tQuantile((1 + level) / 2, df) * se;
  return {
    ...common,
    estimate,
    low: estimate - halfWidth,
    high: estimate + halfWidth,
    halfWidth,
    df,
    se,
    n,
    method: "Welch t",
  };
}

/**
 * The confidence interval of mean(a) − mean(b).
 *
 * - `{ paired: true }`: the t interval of the differences a[i] − b[i] (n − 1 df);
 *   use it when a[i] and b[i] share a seed or an interleaved round, which removes
 *   what they have in common. Different lengths are a `RangeError`.
 * - `{ paired: false }`: Welch's interval, estimate ± t · √(s_a²/n_a + s_b²/n_b),
 *   with the Welch–Satterthwaite degrees of freedom (unequal variances allowed).
 *
 * `n` is the number of pairs, or the smaller group. Fewer than 2 gives `NaN` bounds
 * and a `reason`.
 *
 * @example
 * ```ts
 * import { differenceInterval } from "./intervals.ts";
 * // Seeds shift both arms alike, so pairing removes the seed-to-seed spread.
 * const a = [10.2, 12.1, 9.3, 11.4], b = [10.0, 11.8, 9.2, 11.0];
 * const paired = differenceInterval(a, b, { paired: true });
 * const welch = differenceInterval(a, b, { paired: false });
 * console.log(paired.estimate.toFixed(2), paired.low > 0, welch.low > 0); // 0.25 true false
 * ```
 */
export function differenceInterval(a: Sample, b: Sample, options: DifferenceOptions): DifferenceInterval {
  const { paired, level } = checkDifferenceOptions("differenceInterval", options);
  const xa = checkSample("differenceInterval", "a", a);
  const xb = checkSample("differenceInterval", "b", b);
  return differenceOf(xa, xb, paired, level, "differenceInterval");
}

function checkPositive(owner: string, name: string, values: number[]): number[] {
  values.forEach((x, i) => {
    if (!(x > 0)) {
      throw new RangeError(`${owner}: ${name}[${i}] is ${x}; a ratio interval needs positive values (times, sizes)`);
    }
  });
  return values;
}

/**
 * The confidence interval of a ratio a / b of two positive samples (timings,
 * sizes), computed on the log scale and exponentiated: the interval of
 * mean(ln a) − mean(ln b) from {@linkcode differenceInterval} (paired for
 * interleaved repetitions, Welch otherwise), then e^low, e^high. The estimate is
 * the ratio of geometric means, e^{mean(ln a) − mean(ln b)}; `nullValue` is 1.
 * Multiplicative noise, which timings have, is symmetric on this scale.
 *
 * @example
 * ```ts
 * import { ratioInterval } from "./intervals.ts";
 * // Interleaved rounds: b is about twice as fast as a in every round, whatever the round's load.
 * const a = [210, 260, 200, 240], b = [100, 128, 101, 118];
 * const r = ratioInterval(a, b, { paired: true });
 * console.log(r.estimate.toFixed(2), r.low > 1.9, r.high < 2.2); // 2.04 true true
 * ```
 */
export function ratioInterval(a: Sample, b: Sample, options: DifferenceOptions): RatioInterval {
  const { paired, level } = checkDifferenceOptions("ratioInterval", options);
  const la = checkPositive("ratioInterval", "a", checkSample("ratioInterval", "a", a)).map(Math.log);
  const lb = checkPositive("ratioInterval", "b", checkSample("ratioInterval", "b", b)).map(Math.log);
  const log = differenceOf(la, lb, paired, level, "ratioInterval");
  return {
    estimate: Math.exp(log.estimate),
    low: Math.exp(log.low),
    high: Math.exp(log.high),
    level,
    n: log.n,
    method: paired ? "log-ratio paired t" : "log-ratio Welch t",
    nullValue: 1,
    paired,
    df: log.df,
    log,
    ...(log.reason !== undefined ? { reason: log.reason } : {}),
  };
}

/** Options of {@linkcode exactInterval}. */
export interface ExactOptions {
  /** Numerical tolerance around the value (float rounding, solver tolerance), ≥ 0. Default 0. */
  tolerance?: number;
  /** The value meaning "no effect". Default 0. */
  nullValue?: number;
}

/**
 * The interval of a value computed without sampling noise (a closed form, a FLOP
 * count, a numerical identity): value ± tolerance, `level` 1, marked `exact` so
 * that `verdict` asks no minimum number of values.
 *
 * @example
 * ```ts
 * import { exactInterval } from "./intervals.ts";
 * const iv = exactInterval(0.25, { tolerance: 1e-6 });
 * console.log(iv.low, iv.high, iv.exact); // 0.249999 0.250001 true
 * ```
 */
export function exactInterval(value: number, options?: ExactOptions): Interval {
  const o = checkOptionKeys<ExactOptions>("exactInterval", options, ["tolerance", "nullValue"]);
  for (const [name, v] of [["value", value], ["options.nullValue", o.nullValue ?? 0]] as const) {
    if (typeof v !== "number") throw new TypeError(`exactInterval: ${name} must be a number, got ${describeValue(v)}`);
    if (!Number.isFinite(v)) throw new RangeError(`exactInterval: ${name} must be finite, got ${v}`);
  }
  const tolerance = o.tolerance ?? 0;
  if (typeof tolerance !== "number") {
    throw new TypeError(`exactInterval: options.tolerance must be a number, got ${describeValue(tolerance)}`);
  }
  if (!(tolerance >= 0) || !Number.isFinite(tolerance)) {
    throw new RangeError(`exactInterval: options.tolerance must be finite and ≥ 0, got ${tolerance}`);
  }
  return {
    estimate: value,
    low: value - tolerance,
    high: value + tolerance,
    level: 1,
    n: 1,
    method: tolerance > 0 ? `exact (± ${tolerance})` : "exact",
    nullValue: o.nullValue ?? 0,
    exact: true,
  };
}
