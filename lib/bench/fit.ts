/**
 * Scaling laws from measurements: the exponent p of y ≈ c·nᵖ (with a confidence interval over interleaved
 * rounds, and whether several exponents all lie in a band), the sum of a fitted power law over positions, the
 * extrapolation of a cost to a longer length, and the length where one method overtakes another.
 *
 * @module
 */

import { median, type TInterval, tInterval, type Verdict, verdict } from "../stats/mod.ts";

/** One measurement: x (e.g. the sequence length) and y (e.g. milliseconds), both > 0. */
export interface Point {
  x: number;
  y: number;
}

/** The least-squares fit of log y = log c + p·log x. */
export interface ExponentFit {
  /** The slope p on log-log axes. */
  exponent: number;
  /** c in y ≈ c·xᵖ. */
  coefficient: number;
  /** Coefficient of determination of the log-log fit (1 for exact power laws). */
  r2: number;
  /** Points used. */
  points: number;
}

/**
 * Fits y ≈ c·xᵖ by least squares on log-log axes. Needs at least two distinct x, all x and y finite and > 0.
 *
 * @example
 * ```ts
 * import { fitExponent } from "./fit.ts";
 * const fit = fitExponent([256, 512, 1024].map((x) => ({ x, y: 3 * x ** 2 })));
 * console.log(fit.exponent.toFixed(3), fit.coefficient.toFixed(3)); // 2.000 3.000
 * ```
 */
export function fitExponent(points: readonly Point[]): ExponentFit {
  if (!Array.isArray(points)) throw new Error(`fitExponent: points must be an array of { x, y }, got ${typeof points}`);
  points.forEach((p, i) => {
    if (p === null || typeof p !== "object") throw new Error(`fitExponent: points[${i}] must be { x, y }`);
    for (const key of ["x", "y"] as const) {
      const value = p[key];
      if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
        throw new Error(`fitExponent: points[${i}].${key} must be a finite number > 0, got ${String(value)}`);
      }
    }
  });
  if (new Set(points.map((p) => p.x)).size < 2) {
    throw new Error(`fitExponent: points must hold at least two distinct x values, got ${points.length} point(s)`);
  }
  const lx = points.map((p) => Math.log(p.x));
  const ly = points.map((p) => Math.log(p.y));
  const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
  const mx = mean(lx);
  const my = mean(ly);
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < lx.length; i++) {
    sxy += (lx[i] - mx) * (ly[i] - my);
    sxx += (lx[i] - mx) ** 2;
    syy += (ly[i] - my) ** 2;
  }
  const exponent = sxy / sxx;
  const r2 = syy === 0 ? 1 : (sxy * sxy) / (sxx * syy);
  return { exponent, coefficient: Math.exp(my - exponent * mx), r2, points: points.length };
}

/** The values measured at one x in every round: `ys[r]` is round r's value (e.g. from `interleavedTimes`). */
export interface RoundSeries {
  x: number;
  ys: readonly number[];
}

/** What {@linkcode exponentInterval} returns. */
export interface ExponentInterval {
  /** The Student-t interval of the per-round exponents (`estimate` is their mean); `verdict` reads it. */
  interval: TInterval;
  /** The exponent fitted to each round's values, in round order. */
  exponents: number[];
  /** The fit to the per-x medians over rounds: the curve to draw. */
  fit: ExponentFit;
}

/**
 * The exponent p of y ≈ c·xᵖ with a confidence interval over repetitions: `fitExponent` on each round's
 * values (round r is `ys[r]` at every x), then the Student-t interval of those exponents over the rounds.
 * Rounds of interleaved timings see the same load at every x, so each round's exponent is an independent
 * estimate of the slope, and the interval is their spread. Needs at least two distinct x and the same
 * number of rounds at each x; one round gives `NaN` bounds (an underpowered interval).
 *
 * @example
 * ```ts
 * import { exponentInterval } from "./fit.ts";
 * // Three rounds of a quadratic cost, each round 10% slower or faster than the last at every length.
 * const series = [256, 512, 1024].map((x) => ({ x, ys: [1, 1.1, 0.9].map((s) => s * (x / 256) ** 2) }));
 * const { interval, exponents } = exponentInterval(series);
 * console.log(exponents.map((p) => p.toFixed(3)), interval.estimate.toFixed(3)); // ["2.000", "2.000", "2.000"] 2.000
 * ```
 */
export function exponentInterval(series: readonly RoundSeries[], options: { level?: number } = {}): ExponentInterval {
  if (!Array.isArray(series)) {
    throw new TypeError(`exponentInterval: series must be an array of { x, ys }, got ${typeof series}`);
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError(`exponentInterval: options must be an object { level? }, got ${String(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (key !== "level") throw new TypeError(`exponentInterval: unknown option "${key}"; expected level`);
  }
  series.forEach((s, i) => {
    if (s === null || typeof s !== "object" || !Array.isArray(s.ys)) {
      throw new TypeError(`exponentInterval: series[${i}] must be { x, ys: number[] (one value per round) }`);
    }
  });
  if (series.length === 0) throw new RangeError("exponentInterval: series is empty; give at least two x values");
  const rounds = series[0].ys.length;
  if (rounds === 0) throw new RangeError("exponentInterval: series[0].ys is empty; give one value per round");
  series.forEach((s, i) => {
    if (s.ys.length !== rounds) {
      throw new RangeError(
        `exponentInterval: series[${i}].ys has ${s.ys.length} values, series[0].ys ${rounds}; ` +
          "every x needs one value per round (drop the x values where a round is missing)",
      );
    }
  });
  const exponents = Array.from(
    { length: rounds },
    (_, r) => fitExponent(series.map((s) => ({ x: s.x, y: s.ys[r] }))).exponent,
  );
  const fit = fitExponent(series.map((s) => ({ x: s.x, y: median(s.ys) })));
  return { interval: tInterval(exponents, options), exponents, fit };
}

/** The band {@linkcode exponentsWithin} checks: every exponent within expected ± margin. */
export interface ExponentBand {
  /** The exponent the claim expects, e.g. 1 for O(n), 0 for a constant cost. */
  expected: number;
  /** Half-width of the band, > 0, e.g. 0.3. */
  margin: number;
  /** Joint confidence level over all the series (Bonferroni: each interval at 1 − (1 − level)/k). Default 0.95. */
  level?: number;
}

/** What {@linkcode exponentsWithin} returns. */
export interface ExponentsWithin {
  /** The claim's verdict: the worst of the series' (see the function), with the rule that says so. */
  verdict: Verdict;
  /** The series that decided it. */
  deciding: string;
  /** Each series' interval (at the Bonferroni level) and verdict. */
  each: { name: string; exponent: ExponentInterval; verdict: Verdict }[];
}

/**
 * Decides "every one of these costs grows like x^expected" from interleaved rounds: each named series gets its
 * exponent interval ({@linkcode exponentInterval}, at the Bonferroni level 1 − (1 − level)/k for k series) and a
 * two-sided `verdict` against the band expected ± margin. The claim takes the worst outcome: not reproduced when
 * any interval lies wholly outside the band, reproduced when every one lies inside, inconclusive otherwise (an
 * interval straddles an edge, or too few rounds). Its interval is the deciding series' (the first refuted, else the
 * first inconclusive, else the one furthest from `expected`). One interval per series, rather than a statistic
 * pooled over the series such as the largest deviation per round, so noise cannot add up to a refutation.
 *
 * @example
 * ```ts
 * import { exponentsWithin } from "./fit.ts";
 * const rounds = [1, 1.05, 0.95, 1.02];
 * const cost = (p: number) => [256, 512, 1024].map((x) => ({ x, ys: rounds.map((s, r) => s * (x / 256) ** (p + 0.01 * r)) }));
 * const both = exponentsWithin([{ name: "linear", series: cost(1) }, { name: "diag", series: cost(1.1) }], { expected: 1, margin: 0.3 });
 * console.log(both.verdict.outcome, both.deciding); // reproduced diag
 * const refuted = exponentsWithin([{ name: "linear", series: cost(1) }, { name: "softmax", series: cost(2) }], { expected: 1, margin: 0.3 });
 * console.log(refuted.verdict.outcome, refuted.deciding); // not reproduced softmax
 * ```
 */
export function exponentsWithin(
  fits: readonly { name: string; series: readonly RoundSeries[] }[],
  band: ExponentBand,
): ExponentsWithin {
  if (!Array.isArray(fits) || fits.length === 0) {
    throw new TypeError("exponentsWithin: fits must be a non-empty array of { name, series }");
  }
  if (band === null || typeof band !== "object") {
    throw new TypeError("exponentsWithin: band must be { expected, margin, level? }");
  }
  for (const key of Object.keys(band)) {
    if (!["expected", "margin", "level"].includes(key)) {
      throw new TypeError(`exponentsWithin: unknown band key "${key}"; expected expected, margin or level`);
    }
  }
  const { expected, margin, level = 0.95 } = band;
  if (typeof expected !== "number" || !Number.isFinite(expected)) {
    throw new TypeError(`exponentsWithin: band.expected must be a finite number, got ${String(expected)}`);
  }
  if (typeof margin !== "number" || !(margin > 0) || !Number.isFinite(margin)) {
    throw new RangeError(`exponentsWithin: band.margin must be a finite number > 0, got ${String(margin)}`);
  }
  if (typeof level !== "number" || !(level > 0 && level < 1)) {
    throw new RangeError(`exponentsWithin: band.level must be strictly between 0 and 1, got ${String(level)}`);
  }
  const k = fits.length;
  const each = fits.map(({ name, series }, i) => {
    if (typeof name !== "string" || name === "") {
      throw new TypeError(`exponentsWithin: fits[${i}].name must be a non-empty string`);
    }
    const exponent = exponentInterval(series, { level: 1 - (1 - level) / k });
    const v = verdict(exponent.interval, {
      direction: "two-sided",
      null: expected,
      margin,
      quantity: `${name}'s exponent`,
    });
    return { name, exponent, verdict: v };
  });
  const furthest = each.reduce((a, b) =>
    Math.abs(b.exponent.interval.estimate - expected) > Math.abs(a.exponent.interval.estimate - expected) ? b : a
  );
  const decider = each.find((e) => e.verdict.outcome === "not reproduced") ??
    each.find((e) => e.verdict.outcome === "inconclusive") ?? furthest;
  const lo = Number((expected - margin).toPrecision(6)), hi = Number((expected + margin).toPrecision(6));
  const pct = Number((100 * (1 - (1 - level) / k)).toPrecision(4));
  const names = each.map((e) => e.name).join(", ");
  const joint = Number((100 * level).toPrecision(4));
  const rule = k === 1
    ? `${names}'s exponent fitted per interleaved round, decided on the ${pct}% t interval over the rounds against ` +
      `[${lo}, ${hi}] (${expected} ± ${margin}): reproduced if it lies inside, not reproduced if it lies wholly outside, ` +
      "otherwise inconclusive (within noise, or underpowered with fewer than 3 rounds)"
    : `each of ${k} exponents (${names}) fitted per interleaved round, decided on its own ${pct}% t interval over the ` +
      `rounds (Bonferroni: ${joint}% jointly) against [${lo}, ${hi}] (${expected} ± ${margin}): reproduced if all lie ` +
      "inside, not reproduced if any lies wholly outside, otherwise inconclusive (within noise, or underpowered with " +
      `fewer than 3 rounds); decided by ${decider.name}`;
  const { rule: _, ...decided } = decider.verdict;
  return { verdict: { ...decided, rule }, deciding: decider.name, each };
}

/**
 * Σ c·pᵉ over the positions p = 1 … n: the total of a per-position cost that follows the fitted power law,
 * e.g. the time to generate every token of an n-token sequence from the time per token at each position.
 *
 * @example
 * ```ts
 * import { powerLawSum } from "./fit.ts";
 * console.log(powerLawSum({ coefficient: 2, exponent: 1 }, 4)); // 20 (= 2·(1 + 2 + 3 + 4))
 * console.log(powerLawSum({ coefficient: 1.5, exponent: 0 }, 10)); // 15
 * ```
 */
export function powerLawSum(fit: Pick<ExponentFit, "coefficient" | "exponent">, n: number): number {
  if (fit === null || typeof fit !== "object") {
    throw new TypeError(`powerLawSum: fit must be { coefficient, exponent } (from fitExponent), got ${String(fit)}`);
  }
  for (const key of ["coefficient", "exponent"] as const) {
    if (typeof fit[key] !== "number" || !Number.isFinite(fit[key])) {
      throw new TypeError(`powerLawSum: fit.${key} must be a finite number, got ${String(fit[key])}`);
    }
  }
  if (typeof n !== "number") throw new TypeError(`powerLawSum: n must be a positive integer, got ${String(n)}`);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`powerLawSum: n must be a positive integer, got ${n}`);
  let sum = 0;
  for (let p = 1; p <= n; p++) sum += p ** fit.exponent;
  return fit.coefficient * sum;
}

/** Options of {@linkcode extrapolatePowerLaw}. */
export interface ExtrapolateOptions {
  /** The exponent used from a single point. Default 2 (conservative for costs that are at most quadratic). */
  fallbackExponent?: number;
  /** The smallest exponent used, so a flat start (fixed costs) does not predict too little. Default 1. */
  minExponent?: number;
}

/**
 * Predicts y at `x` from measured points of a cost that grows like xᵖ: from the last point, with the exponent
 * fitted to all of them (at least `minExponent`), or `fallbackExponent` from a single point; 0 with no points.
 * For deciding whether the next length fits a time or memory budget before running it.
 *
 * @example
 * ```ts
 * import { extrapolatePowerLaw } from "./fit.ts";
 * console.log(extrapolatePowerLaw([{ x: 1000, y: 2 }], 3000)); // 18 (n² from one point)
 * console.log(extrapolatePowerLaw([{ x: 1000, y: 2 }, { x: 2000, y: 4 }], 4000)); // 8 (the fitted exponent, 1)
 * ```
 */
export function extrapolatePowerLaw(points: readonly Point[], x: number, options: ExtrapolateOptions = {}): number {
  if (typeof x !== "number" || !(x > 0) || !Number.isFinite(x)) {
    throw new RangeError(`extrapolatePowerLaw: x must be a finite number > 0, got ${String(x)}`);
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError("extrapolatePowerLaw: options must be { fallbackExponent?, minExponent? }");
  }
  for (const key of Object.keys(options)) {
    if (key !== "fallbackExponent" && key !== "minExponent") {
      throw new TypeError(`extrapolatePowerLaw: unknown option "${key}"; expected fallbackExponent or minExponent`);
    }
  }
  const { fallbackExponent = 2, minExponent = 1 } = options;
  if (!Array.isArray(points)) throw new TypeError("extrapolatePowerLaw: points must be an array of { x, y }");
  if (points.length === 0) return 0;
  const last = points[points.length - 1];
  const exponent = new Set(points.map((p) => p.x)).size >= 2
    ? Math.max(minExponent, fitExponent(points).exponent)
    : fallbackExponent;
  return last.y * (x / last.x) ** exponent;
}

/** A measured row for {@linkcode crossoverLength}: a method name, a length and a value (lower is better). */
export type CrossoverRow = Record<string, unknown>;

/** Where method b overtakes method a. */
export interface Crossover {
  /**
   * "crosses": b is slower at the shortest common length and faster at a longer one; `n` is interpolated.
   * "b-faster-throughout": b is already at most as slow at the shortest common length; `n` is that length (an upper bound).
   * "a-faster-throughout": b never catches up within the lengths measured; `n` is null.
   */
  relation: "crosses" | "b-faster-throughout" | "a-faster-throughout";
  n: number | null;
  /** The measured lengths either side of the crossing (relation "crosses" only). */
  bracket: [number, number] | null;
}

/** Options for {@linkcode crossoverLength}. */
export interface CrossoverOptions {
  /** Key of the method name in each row; default "variant". */
  by?: string;
  /** Key of the length; default "n". */
  length?: string;
  /** Key of the value compared (lower is better); default "ms". */
  value?: string;
}

/**
 * The length at which method `b` overtakes method `a` (b's value drops below a's): the first sign change of
 * log(b / a) over the lengths both were measured at, interpolated linearly in log n.
 *
 * @example
 * ```ts
 * import { crossoverLength } from "./fit.ts";
 * const rows = [256, 512, 1024, 2048].flatMap((n) => [
 *   { variant: "softmax", n, ms: (n / 1000) ** 2 },
 *   { variant: "linear", n, ms: n / 1000 },
 * ]);
 * const c = crossoverLength(rows, "softmax", "linear");
 * console.log(c.relation, Math.round(c.n!)); // crosses 1000
 * ```
 */
export function crossoverLength(
  rows: readonly CrossoverRow[],
  a: string,
  b: string,
  options: CrossoverOptions = {},
): Crossover {
  for (const key of Object.keys(options)) {
    if (!["by", "length", "value"].includes(key)) {
      throw new Error(`crossoverLength: unknown option "${key}"; expected by, length or value`);
    }
  }
  const { by = "variant", length = "n", value = "ms" } = options;
  if (!Array.isArray(rows)) throw new Error(`crossoverLength: rows must be an array of objects`);
  if (typeof a !== "string" || typeof b !== "string" || a === b) {
    throw new Error(`crossoverLength: a and b must be two different method names, got ${String(a)} and ${String(b)}`);
  }
  const series = (name: string) => {
    const out = new Map<number, number>();
    for (const row of rows) {
      if (row?.[by] !== name) continue;
      const n = row[length];
      const y = row[value];
      if (typeof n !== "number" || typeof y !== "number" || !(n > 0) || !(y > 0) || !Number.isFinite(y)) continue;
      out.set(n, y);
    }
    return out;
  };
  const sa = series(a);
  const sb = series(b);
  const common = [...sa.keys()].filter((n) => sb.has(n)).sort((x, y) => x - y);
  if (common.length === 0) {
    throw new Error(
      `crossoverLength: no length has a positive "${value}" for both "${a}" and "${b}" (rows keyed by "${by}", "${length}")`,
    );
  }
  const gap = (n: number) => Math.log(sb.get(n)! / sa.get(n)!);
  if (gap(common[0]) <= 0) return { relation: "b-faster-throughout", n: common[0], bracket: null };
  for (let i = 1; i < common.length; i++) {
    const g1 = gap(common[i]);
    if (g1 > 0) continue;
    const [n0, n1] = [common[i - 1], common[i]];
    const g0 = gap(n0);
    const t = g0 / (g0 - g1);
    return { relation: "crosses", n: Math.exp(Math.log(n0) + t * (Math.log(n1) - Math.log(n0))), bracket: [n0, n1] };
  }
  return { relation: "a-faster-throughout", n: null, bracket: null };
}
