/**
 * lib/stats against known values: published t tables, closed forms (t with 1 and
 * 2 degrees of freedom, I_x(a, 1) = x^a), hand-computed intervals (the arithmetic
 * is in the comments), bootstraps of distributions whose answer is known, and the
 * verdict's truth table on synthetic intervals.
 */

import assert from "node:assert/strict";
import {
  bootstrapInterval,
  countOutcomes,
  detrend,
  differenceInterval,
  exactInterval,
  exactVerdict,
  fmt,
  formatInterval,
  incompleteBeta,
  inconclusiveBecause,
  type Interval,
  lnGamma,
  mad,
  mean,
  median,
  normalCdf,
  normalQuantile,
  pct,
  pm,
  quantile,
  rank,
  ratioInterval,
  robustRsd,
  rollingMedian,
  rsd,
  std,
  tCdf,
  tInterval,
  tQuantile,
  variance,
  verdict,
} from "../lib/stats/mod.ts";
import { seededNormal, seededUniform } from "../lib/random.ts";

function near(actual: number, expected: number, tol: number, what: string) {
  assert.ok(
    Math.abs(actual - expected) <= tol,
    `${what}: got ${actual}, expected ${expected} ± ${tol} (off by ${Math.abs(actual - expected)})`,
  );
}

function normals(seed: number, n: number, mu = 0, sigma = 1): number[] {
  const g = seededNormal(seed);
  return Array.from({ length: n }, () => mu + sigma * g());
}

// ---------------------------------------------------------------- distributions

Deno.test("tQuantile matches published t tables to 1e-6", () => {
  // Two-sided 95% (p = 0.975) and one-sided 95% (p = 0.95) critical values, as printed in standard t tables.
  const table: [number, number, number][] = [
    [0.975, 1, 12.706205],
    [0.975, 2, 4.302653],
    [0.975, 3, 3.182446],
    [0.975, 4, 2.776445],
    [0.975, 10, 2.228139],
    [0.975, 30, 2.042272],
    [0.95, 5, 2.015048],
    [0.95, 1, 6.313752],
    [0.995, 3, 5.840909],
    [0.9995, 1, 636.619249],
  ];
  for (const [p, df, t] of table) {
    near(tQuantile(p, df), t, 1e-6 * Math.max(1, t / 10), `t(${p}, ${df})`);
    near(tQuantile(1 - p, df), -t, 1e-6 * Math.max(1, t / 10), `t(${1 - p}, ${df}) by symmetry`);
  }
  // The normal limit: z(0.975) = 1.959964, reached as df grows.
  near(tQuantile(0.975, Infinity), 1.959964, 1e-6, "t(0.975, ∞)");
  near(tQuantile(0.975, 1e9), 1.959964, 1e-6, "t(0.975, 1e9)");
  near(normalQuantile(0.975), 1.959964, 1e-6, "z(0.975)");
  near(normalQuantile(0.95), 1.644854, 1e-6, "z(0.95)");
  assert.equal(tQuantile(0.5, 3), 0);
  assert.equal(tQuantile(1, 3), Infinity);
  assert.equal(tQuantile(0, 3), -Infinity);
});

Deno.test("tQuantile and tCdf equal the closed forms at df = 1 (Cauchy) and df = 2", () => {
  // df = 1: F(t) = 1/2 + atan(t)/π, so t_p = tan(π(p − 1/2)).
  // df = 2: F(t) = 1/2 + t / (2√(2 + t²)), so t_p = (2p − 1) / √(2p(1 − p)).
  for (let p = 0.001; p < 1; p += 0.0237) {
    const cauchy = Math.tan(Math.PI * (p - 0.5));
    near(tQuantile(p, 1), cauchy, 1e-10 * Math.max(1, Math.abs(cauchy)), `t(${p}, 1)`);
    const two = (2 * p - 1) / Math.sqrt(2 * p * (1 - p));
    near(tQuantile(p, 2), two, 1e-10 * Math.max(1, Math.abs(two)), `t(${p}, 2)`);
  }
  for (const t of [-30, -3, -1, -0.2, 0, 0.5, 1, 2.5, 40]) {
    near(tCdf(t, 1), 0.5 + Math.atan(t) / Math.PI, 1e-12, `F(${t} | 1)`);
    near(tCdf(t, 2), 0.5 + t / (2 * Math.sqrt(2 + t * t)), 1e-12, `F(${t} | 2)`);
  }
});

Deno.test("tCdf matches known values and inverts tQuantile, also at fractional (Welch) df", () => {
  near(tCdf(2, 3), 0.930337, 1e-6, "P(T ≤ 2 | 3)");
  near(tCdf(-2, 3), 1 - 0.930337, 1e-6, "P(T ≤ −2 | 3)");
  near(tCdf(2.776445, 4), 0.975, 1e-7, "P(T ≤ 2.776445 | 4)");
  near(normalCdf(-1.959964), 0.025, 1e-7, "Φ(−1.959964)");
  near(normalCdf(1), 0.841345, 1e-6, "Φ(1)");
  // Φ(−5) = 2.8665157e-7: the tail keeps its relative precision.
  near(normalCdf(-5) / 2.8665157e-7, 1, 1e-7, "Φ(−5)");
  for (const df of [0.5, 1, 2.06, 3.7, 12.5, 97, 1e4, 5e5, 1e7]) {
    for (const p of [1e-8, 0.001, 0.025, 0.3, 0.7, 0.975, 0.999]) {
      const t = tQuantile(p, df);
      const back = tCdf(t, df);
      near(back / p, 1, 1e-9, `F(t(${p}, ${df}))`);
    }
  }
  // Continuity where the large-df expansion takes over (above df = 1e5): a df step of 1e-6 moves the true values by
  // about 1e-16, so the two methods on either side must agree to their own accuracy.
  near(tQuantile(0.975, 1e5), tQuantile(0.975, 1e5 + 1e-6), 2e-12, "t(0.975) across df = 1e5");
  near(tQuantile(1e-9, 1e5), tQuantile(1e-9, 1e5 + 1e-6), 1e-11, "t(1e-9) across df = 1e5");
  near(tCdf(3, 1e5), tCdf(3, 1e5 + 1e-6), 1e-13, "F(3) across df = 1e5");
  // The quantile decreases with df towards the normal's.
  let previous = Infinity;
  for (const df of [1, 2, 5, 10, 100, 1e4, 1e6, Infinity]) {
    const t = tQuantile(0.975, df);
    assert.ok(t < previous && t >= 1.959963, `t(0.975, ${df}) = ${t} must decrease towards 1.959964`);
    previous = t;
  }
});

Deno.test("lnGamma and incompleteBeta match closed forms", () => {
  // ln Γ(n) = ln (n − 1)!, ln Γ(1/2) = ln √π.
  let logFactorial = 0;
  for (let n = 1; n <= 30; n++) {
    near(lnGamma(n), logFactorial, 1e-12 * Math.max(1, logFactorial), `lnΓ(${n})`);
    logFactorial += Math.log(n);
  }
  near(lnGamma(0.5), 0.5 * Math.log(Math.PI), 1e-14, "lnΓ(1/2)");
  for (const x of [0, 0.01, 0.3, 0.5, 0.77, 0.999, 1]) {
    near(incompleteBeta(x, 3.5, 1), x ** 3.5, 1e-13, `I_${x}(3.5, 1) = x^3.5`);
    near(incompleteBeta(x, 1, 2.5), 1 - (1 - x) ** 2.5, 1e-13, `I_${x}(1, 2.5) = 1 − (1 − x)^2.5`);
  }
  for (const a of [0.5, 2, 7.3, 40]) near(incompleteBeta(0.5, a, a), 0.5, 1e-13, `I_0.5(${a}, ${a}) by symmetry`);
});

// ---------------------------------------------------------------- descriptive

Deno.test("descriptive statistics match hand-computed values", () => {
  assert.equal(mean([1, 2, 3, 4]), 2.5);
  // A large offset loses no precision: the mean of 1e9 + {1, 2, 3} is 1e9 + 2, the variance 1.
  assert.equal(mean([1e9 + 1, 1e9 + 2, 1e9 + 3]), 1e9 + 2);
  assert.equal(variance([1e9 + 1, 1e9 + 2, 1e9 + 3]), 1);
  // Σ(x − 3)² = 4 + 1 + 0 + 1 + 4 = 10: sample variance 10/4, population 10/5.
  assert.equal(variance([1, 2, 3, 4, 5]), 2.5);
  assert.equal(variance([1, 2, 3, 4, 5], { population: true }), 2);
  near(std([1, 2, 3, 4, 5]), Math.sqrt(2.5), 1e-15, "std");
  // Σ(x − 5)² = 32 over 8 values: population std 2, sample std √(32/7).
  assert.equal(std([2, 4, 4, 4, 5, 5, 7, 9], { population: true }), 2);
  near(std([2, 4, 4, 4, 5, 5, 7, 9]), Math.sqrt(32 / 7), 1e-15, "sample std");
  assert.equal(variance([7], { population: true }), 0);
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  // Type 7 (R's default): quantile(1:4, 0.25) = 1.75; quantile(1:10, 0.1) = 1.9; quantile(c(1, 3, 10), 0.75) = 6.5.
  assert.equal(quantile([4, 3, 2, 1], 0.25), 1.75);
  near(quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.1), 1.9, 1e-15, "quantile(1:10, 0.1)");
  assert.equal(quantile([10, 1, 3], 0.75), 6.5);
  assert.equal(quantile([10, 1, 3], 0), 1);
  assert.equal(quantile([10, 1, 3], 1), 10);
  // median 2, |x − 2| = 1 1 0 0 2 4 7 → median 1.
  assert.equal(mad([1, 1, 2, 2, 4, 6, 9]), 1);
  assert.deepEqual(rank([10, 30, 20, 20, 20, 5]), [2, 6, 4, 4, 4, 1]);
  assert.deepEqual(rank([10, 30, 20, 20]), [1, 4, 2.5, 2.5]);
  assert.deepEqual(rank([10, 30, 20, 20], { ties: "min" }), [1, 4, 2, 2]);
  // The average ranks always sum to n(n + 1)/2.
  const r = rank([3, 1, 3, 3, 2, 2, 9]);
  assert.equal(r.reduce((s, x) => s + x, 0), (7 * 8) / 2);
  // RSD: population std 2 over mean 5.
  assert.equal(rsd([2, 4, 4, 4, 5, 5, 7, 9], { population: true }), 0.4);
  near(rsd([2, 4, 4, 4, 5, 5, 7, 9]), Math.sqrt(32 / 7) / 5, 1e-15, "sample rsd");
  // Robust RSD: median 10, MAD 1 → 1.4826 / 10, whatever the spike.
  near(robustRsd([9, 10, 11, 10, 1000]), 0.14826, 1e-15, "robustRsd");
  near(robustRsd([9, 10, 11, 10, 1e9]), 0.14826, 1e-15, "robustRsd with a larger spike");
});

Deno.test("robustRsd and rsd both estimate σ/μ on normal data", () => {
  // 20000 draws from N(10, 1): σ/μ = 0.1; the sampling error of either estimate is below 0.002 at this n.
  const xs = normals(11, 20_000, 10, 1);
  near(rsd(xs), 0.1, 0.003, "rsd");
  near(robustRsd(xs), 0.1, 0.003, "robustRsd");
});

Deno.test("rollingMedian is centred, cut at the ends, and detrend removes a multiplicative trend", () => {
  // window 3 on [1, 9, 2, 8, 3]: med(1,9) = 5, med(1,9,2) = 2, med(9,2,8) = 8, med(2,8,3) = 3, med(8,3) = 5.5.
  assert.deepEqual(rollingMedian([1, 9, 2, 8, 3], { window: 3 }), [5, 2, 8, 3, 5.5]);
  // window 5 on 1..6: [1..3] → 2, [1..4] → 2.5, [1..5] → 3, [2..6] → 4, [3..6] → 4.5, [4..6] → 5.
  assert.deepEqual(rollingMedian([1, 2, 3, 4, 5, 6], { window: 5 }), [2, 2.5, 3, 4, 4.5, 5]);
  // A window at least 2n − 1 long gives every value the median of the whole series.
  assert.deepEqual(rollingMedian([4, 1, 3], { window: 5 }), [3, 3, 3]);
  assert.deepEqual(rollingMedian([4, 1, 3], { window: 1 }), [4, 1, 3]);
  // Against a direct sort of every window, on random data with ties.
  const u = seededUniform(3);
  const xs = Array.from({ length: 200 }, () => Math.round(u() * 20));
  const h = 7;
  const direct = xs.map((_, i) => median(xs.slice(Math.max(0, i - h), Math.min(xs.length, i + h + 1))));
  assert.deepEqual(rollingMedian(xs, { window: 2 * h + 1 }), direct);

  // A geometric series c·rⁱ: inside, the window's median is the value itself, so detrend gives 1; at the two
  // ends the window holds xs[0], xs[1] (median c(1 + r)/2), so the first value becomes 2/(1 + r) and the last 2r/(1 + r).
  const ratio = 1.05;
  const series = Array.from({ length: 30 }, (_, i) => 3 * ratio ** i);
  const flat = detrend(series, { window: 3 });
  near(flat[0], 2 / (1 + ratio), 1e-12, "first value");
  near(flat[29], (2 * ratio) / (1 + ratio), 1e-12, "last value");
  for (let i = 1; i < 29; i++) near(flat[i], 1, 1e-12, `detrended value ${i}`);
  // A drifting series with ±10% noise: drift inflates std/mean; after detrending, the spread is the noise's.
  const noise = normals(5, 600, 0, 0.1);
  const drifting = noise.map((e, i) => (1 + i / 60) * (1 + e));
  assert.ok(rsd(drifting) > 0.4, `the drift dominates the raw RSD (${rsd(drifting)})`);
  near(std(detrend(drifting, { window: 51 })), 0.1, 0.015, "std of the detrended series");
});

// ---------------------------------------------------------------- t intervals

Deno.test("tInterval matches a hand-computed interval", () => {
  // xs = 1..5: mean 3, s = √(10/4) = 1.5811388, se = s/√5 = 0.7071068,
  // 95%: half-width = t(0.975, 4) · se = 2.776445 × 0.7071068 = 1.963243 → [1.036757, 4.963243];
  // 90%: half-width = t(0.95, 4) · se = 2.131847 × 0.7071068 = 1.507443.
  const iv = tInterval([1, 2, 3, 4, 5]);
  assert.equal(iv.mean, 3);
  assert.equal(iv.estimate, 3);
  assert.equal(iv.n, 5);
  assert.equal(iv.df, 4);
  assert.equal(iv.level, 0.95);
  near(iv.sd, 1.5811388, 1e-7, "s");
  near(iv.se, 0.7071068, 1e-7, "se");
  near(iv.halfWidth, 1.963243, 1e-6, "half-width");
  near(iv.low, 1.036757, 1e-6, "low");
  near(iv.high, 4.963243, 1e-6, "high");
  near(tInterval([1, 2, 3, 4, 5], { level: 0.9 }).halfWidth, 1.507443, 1e-6, "90% half-width");
  // No spread: the interval is the point.
  const flat = tInterval([2, 2, 2]);
  assert.deepEqual([flat.low, flat.high, flat.halfWidth], [2, 2, 0]);
});

Deno.test("tInterval with one value has NaN bounds and says why; none is a RangeError", () => {
  const one = tInterval([4.2]);
  assert.equal(one.estimate, 4.2);
  assert.ok(Number.isNaN(one.low) && Number.isNaN(one.high) && Number.isNaN(one.halfWidth));
  assert.match(one.reason ?? "", /needs at least 2/);
  assert.throws(() => tInterval([]), RangeError, "tInterval: xs has 0 values");
  assert.throws(() => tInterval([]), /xs has 0 values; it needs at least 1/);
});

Deno.test("tInterval covers the true mean about 95% of the time on normal samples", () => {
  // 2000 samples of n = 5 from N(1, 2²): the t interval is exact for normal data, so the coverage is a binomial
  // proportion with mean 0.95 and standard error √(0.95·0.05/2000) = 0.0049; 4 standard errors is 0.02.
  let covered = 0;
  const g = seededNormal(21);
  for (let r = 0; r < 2000; r++) {
    const xs = Array.from({ length: 5 }, () => 1 + 2 * g());
    const iv = tInterval(xs);
    if (iv.low < 1 && 1 < iv.high) covered++;
  }
  near(covered / 2000, 0.95, 0.02, "coverage");
});

// ---------------------------------------------------------------- differences and ratios

Deno.test("Welch's interval uses the Welch–Satterthwaite df (hand-computed)", () => {
  // a = 1..5: mean 3, s² = 2.5, s²/n = 0.5. b = 10, 20, 30: mean 20, s² = 100, s²/n = 33.333333.
  // se = √33.833333 = 5.8166428; df = 33.833333² / (0.5²/4 + 33.333333²/2) = 1144.6944 / 555.61806 = 2.0602182.
  const iv = differenceInterval([1, 2, 3, 4, 5], [10, 20, 30], { paired: false });
  assert.equal(iv.estimate, -17);
  assert.equal(iv.method, "Welch t");
  near(iv.se, 5.8166428, 1e-7, "se");
  near(iv.df, 2.0602182, 1e-7, "Welch df");
  assert.equal(iv.n, 3);
  // The t quantile falls with df: at df = 2.06 it lies between t(0.975, 3) and t(0.975, 2).
  assert.ok(iv.halfWidth > 3.182446 * iv.se && iv.halfWidth < 4.302653 * iv.se, `half-width ${iv.halfWidth}`);
  near(iv.halfWidth, tQuantile(0.975, iv.df) * iv.se, 1e-12, "half-width = t · se");
  // Equal sizes and variances: df = 2(n − 1), the pooled value. a = 1..4, b = 11..14: s² = 5/3 each, n = 4 → df 6.
  near(differenceInterval([1, 2, 3, 4], [11, 12, 13, 14], { paired: false }).df, 6, 1e-12, "equal-variance df");
});

Deno.test("pairing across shared seeds narrows the interval of a difference", () => {
  // Seeds move both arms alike (10, 12, 8, 11); the effect is 0.3, 0.2, 0.4, 0.1.
  // Paired: d mean 0.25, s = √(0.05/3) = 0.1290994, se = 0.0645497, half-width 3.182446 × se = 0.205426.
  const a = [10.3, 12.2, 8.4, 11.1], b = [10, 12, 8, 11];
  const paired = differenceInterval(a, b, { paired: true });
  near(paired.estimate, 0.25, 1e-12, "paired estimate");
  near(paired.halfWidth, 0.205426, 1e-6, "paired half-width");
  assert.equal(paired.df, 3);
  assert.equal(paired.method, "paired t");
  assert.ok(paired.low > 0, "the paired interval excludes 0");
  const welch = differenceInterval(a, b, { paired: false });
  near(welch.estimate, 0.25, 1e-12, "Welch estimate");
  assert.ok(welch.halfWidth > 5 * paired.halfWidth, `Welch ${welch.halfWidth} vs paired ${paired.halfWidth}`);
  assert.ok(welch.low < 0, "the unpaired interval straddles 0");
  assert.throws(() => differenceInterval([1, 2, 3], [1, 2], { paired: true }), RangeError, "a: 3 and b: 2");
  const single = differenceInterval([1, 2, 3], [5], { paired: false });
  assert.ok(Number.isNaN(single.low));
  assert.match(single.reason ?? "", /b has one value/);
});

Deno.test("ratioInterval is a t interval on log ratios, exponentiated", () => {
  // log ratios ln 2 + (0, 0.1, −0.1): mean ln 2, s = 0.1, se = 0.1/√3 = 0.0577350,
  // half-width t(0.975, 2) · se = 4.302653 × 0.0577350 = 0.2484138 → [2e^−0.2484138, 2e^0.2484138] = [1.560074, 2.563981].
  const b = [100, 150, 120];
  const a = [2 * 100, 2 * 150 * Math.exp(0.1), 2 * 120 * Math.exp(-0.1)];
  const r = ratioInterval(a, b, { paired: true });
  near(r.estimate, 2, 1e-12, "ratio");
  near(r.low, 1.560074, 1e-6, "low");
  near(r.high, 2.563981, 1e-6, "high");
  assert.equal(r.nullValue, 1);
  assert.equal(r.df, 2);
  near(r.log.halfWidth, 0.2484138, 1e-7, "log half-width");
  // An exact factor of 2 in every round: a point interval at 2.
  const exact = ratioInterval([2, 4, 6], [1, 2, 3], { paired: true });
  near(exact.low, 2, 1e-12, "exact low");
  near(exact.high, 2, 1e-12, "exact high");
  // Unpaired: the ratio of geometric means, √(1·4)/√(1·1) = 2 here.
  near(ratioInterval([1, 4], [1, 1], { paired: false }).estimate, 2, 1e-12, "Welch ratio");
  assert.throws(() => ratioInterval([1, 0, 2], [1, 1, 1], { paired: true }), RangeError, "a[1] is 0");
  assert.throws(() => ratioInterval([1, 2], [1, -2], { paired: false }), RangeError, "b[1] is -2");
});

// ---------------------------------------------------------------- bootstrap

Deno.test("bootstrap percentile interval of a normal mean ≈ mean ± 1.96 σ/√n", () => {
  // 400 draws from N(2, 1): the bootstrap distribution of the mean is close to N(x̄, s²/n), so the 95% percentile
  // interval is about x̄ ± 1.96 · s/√400 = x̄ ± 0.098. Monte Carlo error of a 2.5% quantile from 2000 resamples:
  // √(0.025·0.975/2000) / φ(1.96) · s/√n ≈ 0.0035/0.058 · 0.05 ≈ 0.003; the tolerance is 0.012.
  const xs = normals(7, 400, 2, 1);
  const xbar = mean(xs), s = std(xs);
  const iv = bootstrapInterval(xs, mean, { seed: 3 });
  assert.equal(iv.estimate, xbar);
  assert.equal(iv.resamples, 2000);
  assert.equal(iv.method, "bootstrap percentile");
  near(iv.low, xbar - 1.959964 * s / 20, 0.012, "low");
  near(iv.high, xbar + 1.959964 * s / 20, 0.012, "high");
  near(iv.standardError, s / 20, 0.005, "bootstrap standard error");
  assert.ok(iv.low < 2 && 2 < iv.high, `[${iv.low}, ${iv.high}] should hold μ = 2`);
  // BCa on symmetric data stays close to the percentile interval.
  const bca = bootstrapInterval(xs, mean, { seed: 3, method: "bca" });
  near(bca.low, iv.low, 0.01, "BCa low");
  near(bca.high, iv.high, 0.01, "BCa high");
});

Deno.test("bootstrap intervals cover the true mean about 95% of the time", () => {
  // 200 samples of n = 30 from N(0, 1), 1000 resamples each. The percentile interval of a mean undercovers a little
  // at n = 30 (it uses s·√((n−1)/n) and z rather than t: about 93.5%); binomial standard error over 200 repetitions
  // is √(0.95·0.05/200) = 0.015. Accepted: 0.89 to 0.99.
  let covered = 0;
  for (let r = 0; r < 200; r++) {
    const iv = bootstrapInterval(normals(1000 + r, 30), mean, { seed: r, resamples: 1000 });
    if (iv.low < 0 && 0 < iv.high) covered++;
  }
  const coverage = covered / 200;
  assert.ok(coverage >= 0.89 && coverage <= 0.99, `percentile coverage ${coverage}`);
});

Deno.test("BCa moves the interval towards the long tail of a skewed statistic", () => {
  // Exponential data, n = 40: the mean's sampling distribution is skewed right (2n·x̄/θ ~ χ²₈₀), so the exact 95%
  // interval of θ, x̄ · 80 / [χ²₈₀(0.975), χ²₈₀(0.025)] = x̄ · 80 / [106.63, 57.15] = x̄ · [0.750, 1.400], has an upper arm
  // 1.6 times its lower arm. The percentile interval is nearly symmetric; BCa's should lean the right way.
  const u = seededUniform(99);
  const xs = Array.from({ length: 40 }, () => -Math.log(1 - u()));
  const p = bootstrapInterval(xs, mean, { seed: 5 });
  const b = bootstrapInterval(xs, mean, { seed: 5, method: "bca" });
  const skewP = (p.high - p.estimate) / (p.estimate - p.low);
  const skewB = (b.high - b.estimate) / (b.estimate - b.low);
  assert.ok(skewP > 1, `percentile upper arm longer (${skewP})`);
  assert.ok(skewB > skewP, `BCa more asymmetric (${skewB}) than percentile (${skewP})`);
});

Deno.test("bootstrap is seeded, takes objects, and resamples them as it does numbers", () => {
  const curves = Array.from({ length: 8 }, (_, s) => Array.from({ length: 5 }, (_, k) => (k + 1) / 5 + 0.03 * s));
  const auc = (c: number[]) => c.reduce((t, y) => t + y, 0) / c.length;
  const meanAuc = (cs: number[][]) => cs.reduce((t, c) => t + auc(c), 0) / cs.length;
  const a = bootstrapInterval(curves, meanAuc, { seed: 42 });
  const again = bootstrapInterval(curves, meanAuc, { seed: 42 });
  const other = bootstrapInterval(curves, meanAuc, { seed: 43 });
  assert.deepEqual([a.low, a.high], [again.low, again.high]);
  assert.notDeepEqual([a.low, a.high], [other.low, other.high]);
  // The same seed draws the same indices, so resampling the curves equals resampling their AUCs.
  const direct = bootstrapInterval(curves.map(auc), mean, { seed: 42 });
  near(a.low, direct.low, 1e-12, "low");
  near(a.high, direct.high, 1e-12, "high");
  near(a.estimate, meanAuc(curves), 1e-15, "estimate");
  // The statistic receives whole objects.
  bootstrapInterval(curves, (cs) => {
    assert.ok(cs.every((c) => Array.isArray(c) && c.length === 5));
    return cs.length;
  }, { resamples: 100 });
});

Deno.test("bootstrapInterval rejects bad input with errors that name the argument", () => {
  assert.throws(() => bootstrapInterval([], mean), RangeError, "samples is empty");
  const one = bootstrapInterval([3], mean);
  assert.ok(Number.isNaN(one.low));
  assert.match(one.reason ?? "", /needs at least 2/);
  assert.throws(() => bootstrapInterval("abc" as unknown as number[], mean), TypeError, "samples must be an array");
  assert.throws(
    () => bootstrapInterval([1, 2], 3 as unknown as typeof mean),
    TypeError,
    "statistic must be a function",
  );
  assert.throws(() => bootstrapInterval([1, 2, 3], () => NaN), RangeError, "statistic returned NaN on samples");
  let calls = 0;
  assert.throws(() => bootstrapInterval([1, 2, 3], () => (calls++ === 5 ? Infinity : 1)), RangeError, "on resample 4");
  assert.throws(
    () => bootstrapInterval([1, 2], mean, { resamples: 10 }),
    RangeError,
    "options.resamples must be at least 100",
  );
  assert.throws(() => bootstrapInterval([1, 2], mean, { seed: -1 }), RangeError, "options.seed must be at least 0");
  assert.throws(
    () => bootstrapInterval([1, 2], mean, { level: 95 }),
    RangeError,
    "options.level must lie strictly between 0 and 1",
  );
  assert.throws(() => bootstrapInterval([1, 2], mean, { method: "bc" as "bca" }), RangeError, "options.method");
});

// ---------------------------------------------------------------- verdicts

/** An interval from its bounds, as a t interval with n values would be. */
function interval(low: number, high: number, n = 5, nullValue = 0): Interval {
  return { estimate: (low + high) / 2, low, high, level: 0.95, n, method: "t", nullValue };
}

Deno.test("verdict: a clear effect is reproduced, with the rule written out", () => {
  // Per-seed gains 1.0, 1.1, 0.9, 1.05: mean 1.0125, s = 0.0854, se = 0.0427, half-width 3.182 × 0.0427 = 0.136.
  const v = verdict(tInterval([1.0, 1.1, 0.9, 1.05]), { direction: "greater", margin: 0.2, quantity: "the gain" });
  assert.equal(v.outcome, "reproduced");
  assert.equal(v.reason, undefined);
  assert.equal(
    v.rule,
    "reproduced if the 95% t interval of the gain lies above 0.2 (0 + margin 0.2), not reproduced if it lies " +
      "below it, otherwise inconclusive (within noise); inconclusive (underpowered) with n < 3",
  );
  assert.equal(v.interval?.n, 4);
  assert.ok(v.interval !== undefined && v.interval.low !== null && v.interval.low > 0.2);
});

Deno.test("verdict: no effect with a narrow interval inside the margin is a confident absence", () => {
  // Values around 0 with s ≈ 0.0079: the interval ≈ [−0.01, 0.01] lies below the margin 0.2.
  const v = verdict(tInterval([0.01, -0.01, 0.005, 0, -0.005]), { direction: "greater", margin: 0.2 });
  assert.equal(v.outcome, "not reproduced");
  assert.equal(v.reason, "confident absence");
  // The same interval for an equivalence claim ("comparable", within ±0.2) is reproduced.
  const same = verdict(tInterval([0.01, -0.01, 0.005, 0, -0.005]), { direction: "two-sided", margin: 0.2 });
  assert.equal(same.outcome, "reproduced");
});

Deno.test("verdict: an effect in the wrong direction is not reproduced", () => {
  const v = verdict(tInterval([-1, -1.1, -0.9]), { direction: "greater" });
  assert.equal(v.outcome, "not reproduced");
  assert.equal(v.reason, "opposite effect");
  assert.match(v.rule, /lies above the null 0/);
  const less = verdict(tInterval([1, 1.1, 0.9]), { direction: "less", margin: 0.1 });
  assert.equal(less.outcome, "not reproduced");
  assert.equal(less.reason, "opposite effect");
});

Deno.test("verdict: a noisy effect is inconclusive, within noise", () => {
  const v = verdict(tInterval([0.5, -0.3, 0.9, 0.1]), { direction: "greater", margin: 0.1 });
  assert.equal(v.outcome, "inconclusive");
  assert.equal(v.reason, "within noise");
});

Deno.test("verdict: too few seeds is inconclusive, underpowered, whatever the interval", () => {
  // Two seeds of a clear effect: mean 1.005, se 0.005, half-width 12.706 × 0.005 = 0.064, so [0.94, 1.07] excludes 0;
  // but the rule asks for 3 seeds first.
  const v = verdict(tInterval([1, 1.01]), { direction: "greater", minN: 3 });
  assert.equal(v.outcome, "inconclusive");
  assert.equal(v.reason, "underpowered");
  assert.match(v.rule, /n < 3/);
  // An interval that could not be computed is underpowered even with minN 1, and its bounds are null in the record.
  const one = verdict(tInterval([5]), { direction: "greater", minN: 1 });
  assert.equal(one.reason, "underpowered");
  assert.deepEqual([one.interval?.low, one.interval?.high], [null, null]);
  assert.equal(JSON.parse(JSON.stringify(one)).interval.low, null);
});

Deno.test("verdict: a timing ratio straddling a ×1.2 threshold is inconclusive", () => {
  // Block 128 over block 16 time per step, interleaved rounds: ratios 1.10, 1.30, 1.15, 1.22 (geometric mean ≈ 1.19).
  const fast = [150, 160, 155, 170];
  const slow = [1.1, 1.3, 1.15, 1.22].map((r, i) => r * fast[i]);
  const ratio = ratioInterval(slow, fast, { paired: true });
  assert.ok(ratio.low < 1.2 && 1.2 < ratio.high, `[${ratio.low}, ${ratio.high}] straddles 1.2`);
  const v = verdict(ratio, { direction: "greater", margin: 0.2, quantity: "the time ratio" });
  assert.equal(v.outcome, "inconclusive");
  assert.equal(v.reason, "within noise");
  assert.match(v.rule, /above 1\.2 \(1 \+ margin 0\.2\)/);
  // A clear ×2 in every round clears the same threshold.
  const clear = ratioInterval(fast.map((t, i) => t * [2, 2.1, 1.9, 2][i]), fast, { paired: true });
  assert.equal(verdict(clear, { direction: "greater", margin: 0.2 }).outcome, "reproduced");
});

Deno.test("verdict follows its truth table, mirrored between greater and less", () => {
  const cases: [number, number, string, string, string | undefined][] = [
    // low, high, direction, outcome, reason; null 0, margin 0.5
    [0.6, 0.9, "greater", "reproduced", undefined],
    [0.5, 0.9, "greater", "inconclusive", "within noise"], // touches the threshold
    [0.1, 0.4, "greater", "not reproduced", "confident absence"],
    [-0.4, 0.4, "greater", "not reproduced", "confident absence"],
    [-0.9, -0.1, "greater", "not reproduced", "opposite effect"],
    [-0.9, 0.7, "greater", "inconclusive", "within noise"],
    [-0.9, -0.6, "less", "reproduced", undefined],
    [-0.4, -0.1, "less", "not reproduced", "confident absence"],
    [0.1, 0.9, "less", "not reproduced", "opposite effect"],
    [-0.7, 0.1, "less", "inconclusive", "within noise"],
    [-0.4, 0.4, "two-sided", "reproduced", undefined],
    [0.6, 0.9, "two-sided", "not reproduced", "confident difference"],
    [-0.9, -0.6, "two-sided", "not reproduced", "confident difference"],
    [0.3, 0.7, "two-sided", "inconclusive", "within noise"],
    [-0.7, 0.7, "two-sided", "inconclusive", "within noise"],
  ];
  for (const [low, high, direction, outcome, reason] of cases) {
    const v = verdict(interval(low, high), { direction: direction as "greater", margin: 0.5 });
    assert.deepEqual([v.outcome, v.reason], [outcome, reason], `[${low}, ${high}] ${direction}`);
  }
  // Mirror: "greater" on [l, h] with null N is "less" on [−h, −l] with null −N, for any interval.
  const u = seededUniform(8);
  for (let i = 0; i < 500; i++) {
    const a = 4 * u() - 2, b = 4 * u() - 2, nul = u() - 0.5, margin = u();
    const [low, high] = [Math.min(a, b), Math.max(a, b)];
    const g = verdict(interval(low, high), { direction: "greater", null: nul, margin });
    const l = verdict(interval(-high, -low), { direction: "less", null: -nul, margin });
    assert.deepEqual([g.outcome, g.reason], [l.outcome, l.reason], `[${low}, ${high}], null ${nul}, margin ${margin}`);
  }
});

Deno.test("exact values, explicit inconclusive reasons and outcome counts", () => {
  // An exact value needs no minimum n; touching the threshold is still not past it.
  assert.equal(verdict(exactInterval(8), { direction: "greater", null: 1, margin: 0.2 }).outcome, "reproduced");
  assert.equal(verdict(exactInterval(1.2), { direction: "greater", null: 1, margin: 0.2 }).reason, "within noise");
  assert.match(verdict(exactInterval(8), { direction: "greater", margin: 1 }).rule, /exactly computed value/);
  const ok = exactVerdict(0.25000003 <= 0.25 + 1e-6, "max |∂p/∂s| ≤ 1/4 + 1e-6");
  assert.deepEqual(ok, { outcome: "reproduced", rule: "max |∂p/∂s| ≤ 1/4 + 1e-6" });
  assert.equal(exactVerdict(false, "the bound holds").outcome, "not reproduced");
  const v = inconclusiveBecause("not comparable", "the paper timed batched generation on a GPU");
  assert.deepEqual(v, {
    outcome: "inconclusive",
    reason: "not comparable",
    rule: "the paper timed batched generation on a GPU",
  });
  assert.throws(
    () => inconclusiveBecause("by construction", ""),
    TypeError,
    "inconclusiveBecause: rule must be a sentence",
  );
  assert.throws(() => exactVerdict(1 as unknown as boolean, "x"), TypeError, "holds must be true or false");

  const counts = countOutcomes([
    { outcome: "reproduced" },
    { outcome: "not reproduced", reason: "opposite effect" },
    { outcome: "inconclusive", reason: "by construction" },
    { outcome: "inconclusive", reason: "within noise" },
    { outcome: "inconclusive", reason: "within noise" },
    { outcome: "inconclusive" },
  ]);
  assert.deepEqual(counts, {
    reproduced: 1,
    notReproduced: 1,
    inconclusive: 4,
    total: 6,
    inconclusiveBy: { "by construction": 1, "within noise": 2, unstated: 1 },
  });
  assert.throws(
    () => countOutcomes([{ outcome: "reproduced" }, { reproduced: true } as unknown as { outcome: "reproduced" }]),
    RangeError,
    "countOutcomes: claims[1].outcome must be one of",
  );
});

Deno.test("verdict rejects malformed intervals and rules", () => {
  const iv = interval(0.1, 0.3);
  assert.throws(() => verdict(iv, { direction: "up" as "greater" }), RangeError, "rule.direction must be one of");
  assert.throws(() => verdict(iv, { direction: "two-sided" }), RangeError, "needs rule.margin > 0");
  assert.throws(() => verdict(iv, { direction: "greater", margin: -1 }), RangeError, "rule.margin must be at least 0");
  assert.throws(() => verdict(iv, { direction: "greater", minN: 2.5 }), RangeError, "rule.minN must be an integer");
  assert.throws(() => verdict(iv, { direction: "greater", margni: 1 } as never), TypeError, 'unknown option "margni"');
  assert.throws(() => verdict(interval(0.3, 0.1), { direction: "greater" }), RangeError, "low ≤ high");
  assert.throws(() => verdict(null as unknown as Interval, { direction: "greater" }), TypeError, "verdict: interval");
  assert.throws(() => verdict(iv, undefined as unknown as { direction: "greater" }), TypeError, "rule must be given");
});

// ---------------------------------------------------------------- formatting

Deno.test("fmt agrees with the notebooks' copies and fixes their exponent in [10³, 10⁴)", () => {
  // The copy in notebooks 01, 02 and 06, kept here as the reference it replaces.
  const old = (x: number, digits = 3) =>
    x === 0 ? "0" : Math.abs(x) >= 1e4 || Math.abs(x) < 1e-3 ? x.toExponential(digits - 1) : x.toPrecision(digits);
  for (const x of [1.5, -0.002345, 0.3333333, 12.345, 999, 250000, -3e-7, 1e4, 0.001, 123.456]) {
    for (const d of [2, 3, 4]) {
      if (Math.abs(x) < 1e4 && Math.abs(x) >= 10 ** d) continue;
      assert.equal(fmt(x, d), old(x, d), `fmt(${x}, ${d})`);
    }
  }
  // Where the old copy printed "1.23e+3", fmt prints the integer.
  assert.equal(old(1234.5), "1.23e+3");
  assert.equal(fmt(1234.5), "1235");
  assert.equal(fmt(999.7), "1000");
  assert.equal(fmt(-0), "0");
  assert.equal(fmt(NaN), "NaN");
  assert.equal(fmt(Infinity), "∞");
  assert.equal(fmt(-Infinity), "−∞");
  assert.equal(fmt(null), "–"); // 07's missing values
  assert.equal(fmt(undefined), "–");
  assert.throws(() => fmt(1, 0), RangeError, "fmt: digits must be at least 1");
  assert.throws(() => fmt("1" as unknown as number), TypeError, "fmt: x must be a number");
});

Deno.test("pct, pm and formatInterval", () => {
  assert.equal(pct(0.053), "5.3%");
  assert.equal(pct(0.053, 1, { signed: true }), "+5.3%"); // notebook 05's pct
  assert.equal(pct(-0.006, 1, { signed: true }), "−0.6%");
  assert.equal(pct(-0.006), "−0.6%");
  assert.equal(pct(-0.0001, 1, { signed: true }), "0.0%");
  assert.equal(pct(0.95, 0), "95%");
  // Half-width to 1 significant digit (2 when it starts with 1 or 2), the mean to the same decimal place.
  assert.equal(pm(1.2345, 0.04), "1.23 ± 0.04");
  assert.equal(pm(1.2345, 0.03), "1.23 ± 0.03");
  assert.equal(pm(1.78, 0.123), "1.78 ± 0.12");
  assert.equal(pm(29.571, 0.5), "29.6 ± 0.5");
  assert.equal(pm(12345, 678), "12300 ± 700");
  assert.equal(pm(1.2346, 0.04, { digits: 2 }), "1.235 ± 0.040");
  assert.equal(pm(2.5, NaN), "2.50 ± n/a");
  assert.equal(pm(2.5, 0), "2.50 ± 0");
  assert.throws(() => pm(1, -0.1), RangeError, "pm: halfWidth must be ≥ 0");
  assert.equal(formatInterval(tInterval([1, 2, 3, 4, 5])), "3.00 [1.04, 4.96] (95% t, n = 5)");
  assert.equal(formatInterval(exactInterval(0.25)), "0.250 (exact)");
  assert.match(formatInterval(tInterval([7])), /^7\.00 \(no interval: one value/);
});

// ---------------------------------------------------------------- bad input

Deno.test("bad input: errors name the argument and what was expected", () => {
  assert.throws(() => mean([]), RangeError, "mean: xs has 0 values; it needs at least 1");
  assert.throws(() => mean([1, NaN, 3]), RangeError, "mean: xs[1] is NaN");
  assert.throws(() => median([1, Infinity]), RangeError, "median: xs[1] is Infinity");
  assert.throws(() => std("123" as unknown as number[]), TypeError, "std: xs must be an array of numbers");
  assert.throws(() => mean([1, "2"] as unknown as number[]), TypeError, "mean: xs[1] must be a number");
  assert.throws(() => variance([3]), RangeError, "the sample variance needs at least 2");
  assert.throws(() => quantile([1, 2], 1.5), RangeError, "quantile: p must lie in [0, 1]");
  assert.throws(() => rank([1, 2], { ties: "max" as "min" }), RangeError, 'options.ties must be "average" or "min"');
  assert.throws(() => rsd([-1, 1]), RangeError, "rsd: the mean of xs is 0");
  assert.throws(() => robustRsd([-1, 0, 1]), RangeError, "robustRsd: the median of xs is 0");
  assert.throws(() => rollingMedian([1, 2, 3], { window: 4 }), RangeError, "options.window must be odd");
  assert.throws(() => detrend([1, 2, 3], undefined as unknown as { window: number }), TypeError, "{ window: 51 }");
  assert.throws(() => detrend([0, 0, 1], { window: 3 }), RangeError, "the rolling median at index 0 is 0");
  assert.throws(
    () => tInterval([1, 2], { level: 1 }),
    RangeError,
    "tInterval: options.level must lie strictly between 0 and 1",
  );
  assert.throws(() => tInterval([1, 2], { level: 0 }), RangeError, "options.level");
  assert.throws(() => tInterval([1, 2], { levle: 0.9 } as never), TypeError, 'tInterval: unknown option "levle"');
  assert.throws(
    () => differenceInterval([1, 2], [1, 2], { level: 0.9 } as never),
    TypeError,
    "options.paired must be true",
  );
  assert.throws(() => differenceInterval([1, 2], [1, 2], undefined as never), TypeError, "{ paired: true }");
  assert.throws(
    () => differenceInterval([1, 2], [NaN, 2], { paired: false }),
    RangeError,
    "differenceInterval: b[0] is NaN",
  );
  assert.throws(() => tQuantile(0.975, 0), RangeError, "tQuantile: df must be positive");
  assert.throws(() => tQuantile(0.975, -3), RangeError, "df must be positive");
  assert.throws(() => tQuantile(0.975, NaN), RangeError, "df must be positive");
  assert.throws(() => tCdf(1, 0), RangeError, "tCdf: df must be positive");
  assert.throws(() => tQuantile(1.2, 3), RangeError, "tQuantile: p must lie in [0, 1]");
  assert.throws(() => tCdf(NaN, 3), RangeError, "tCdf: t is NaN");
  assert.throws(() => normalQuantile(-0.1), RangeError, "normalQuantile: p must lie in [0, 1]");
  assert.throws(() => exactInterval(1, { tolerance: -1 }), RangeError, "options.tolerance must be finite and ≥ 0");
});
