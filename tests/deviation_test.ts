/**
 * lib/diagnostics/deviation.ts against hand-computed values: constant, linear, alternating and stepped series (the
 * arithmetic is in the comments), the window conversion, the growth ratio, and the intersection–union choice of
 * leastFavourable on synthetic intervals.
 */

import assert from "node:assert/strict";
import { gradientDeviation, growth, meanDeviation, sampleWindow } from "../lib/diagnostics/deviation.ts";
import { exactInterval, type Interval, leastFavourable, tInterval, verdict } from "../lib/stats/mod.ts";
import { seededNormal } from "../lib/random.ts";

function near(actual: number, expected: number, tol: number, what: string) {
  assert.ok(
    Math.abs(actual - expected) <= tol,
    `${what}: got ${actual}, expected ${expected} ± ${tol} (off by ${Math.abs(actual - expected)})`,
  );
}

// ---------------------------------------------------------------- gradientDeviation

Deno.test("gradientDeviation: a constant series has no deviation, raw or detrended", () => {
  const d = gradientDeviation(new Array(30).fill(0.7), { window: 7 });
  assert.equal(d.raw, 0);
  assert.equal(d.detrended, 0);
  assert.equal(d.samples, 30);
  assert.equal(d.detrendedSamples, 24); // 30 − (7 − 1)
});

Deno.test("gradientDeviation: a linear trend is all raw deviation and no detrended deviation", () => {
  // x_i = 1 + i, i = 0..n−1: mean (n + 1)/2, sample variance n(n + 1)/12, so raw = √(n(n+1)/12) / ((n+1)/2)
  // = √(n / (3(n + 1))). The median of a centred odd window of a linear series is its centre: every ratio is 1.
  for (const n of [10, 51, 540]) {
    const xs = Array.from({ length: n }, (_, i) => 1 + i);
    const d = gradientDeviation(xs, { window: 5 });
    near(d.raw, Math.sqrt(n / (3 * (n + 1))), 1e-12, `raw, n = ${n}`);
    assert.equal(d.detrended, 0, `detrended, n = ${n}`);
  }
  // A steep trend (x grows 11×, as 1+elu's ‖∂L/∂W_q‖ did) with a window of ±25: still exactly 0 after detrending.
  const steep = Array.from({ length: 540 }, (_, i) => 1 + (10 * i) / 539);
  const d = gradientDeviation(steep, { window: 51 });
  assert.ok(d.raw > 0.4, `raw ${d.raw}`);
  assert.equal(d.detrended, 0);
});

Deno.test("gradientDeviation: an alternating series, by hand", () => {
  // 1, 3, 1, 3, 1, 3, 1, 3 (n = 8): mean 2, Σ(x − 2)² = 8, sample variance 8/7: raw = √(8/7) / 2.
  const xs = [1, 3, 1, 3, 1, 3, 1, 3];
  // Window 3 (±1): each centre sees two of the other value, so the median is the other value; the kept ratios
  // (indices 1..6) are 3, 1/3, 3, 1/3, 3, 1/3: mean 5/3, deviations ±4/3, sample variance 6·(16/9)/5 = 32/15.
  const w3 = gradientDeviation(xs, { window: 3 });
  near(w3.raw, Math.sqrt(8 / 7) / 2, 1e-12, "raw");
  near(w3.detrended, Math.sqrt(32 / 15) / (5 / 3), 1e-12, "detrended, window 3");
  assert.equal(w3.detrendedSamples, 6);
  // Window 5 (±2): three of the five values share the centre's parity, so the median is the centre itself: 0.
  const w5 = gradientDeviation(xs, { window: 5 });
  assert.equal(w5.detrended, 0);
  assert.equal(w5.raw, w3.raw);
});

Deno.test("gradientDeviation: noise on a trend survives detrending, the trend does not", () => {
  // x_i = trend_i · (1 + 0.05 z_i), z standard normal, trend rising 3× over 540 updates. The ratio to a ±25 rolling
  // median is about 1 + 0.05 z (the median's own noise, ≈ 1.25 · 0.05 / √51, adds under 1% to its spread), so the
  // detrended deviation is 0.05 with or without the trend, while the raw one also counts the trend.
  const n = 540;
  const g = seededNormal(7);
  const noise = Array.from({ length: n }, () => 1 + 0.05 * g());
  const xs = noise.map((e, i) => (1 + (2 * i) / (n - 1)) * e);
  const d = gradientDeviation(xs, { window: 51 });
  const flat = gradientDeviation(noise, { window: 51 });
  near(d.detrended, 0.05, 0.005, "detrended with the trend");
  near(flat.detrended, 0.05, 0.005, "detrended without the trend");
  near(flat.raw, 0.05, 0.005, "raw without the trend");
  // The trend alone: 1..3 linear has std / mean ≈ (2 / √12) / 2 = 0.289.
  assert.ok(d.raw > 0.25, `raw with the trend ${d.raw}`);
});

Deno.test("gradientDeviation: a step is drift, a spike is fluctuation, by hand", () => {
  // 1 ×4 then 2 ×4, window 3: kept indices 1..6 have windows {1,1,1} {1,1,1} {1,1,2} {1,2,2} {2,2,2} {2,2,2}, whose
  // medians 1, 1, 1, 2, 2, 2 equal the centres: every ratio is 1, so the level shift leaves no detrended deviation.
  const step = gradientDeviation([1, 1, 1, 1, 2, 2, 2, 2], { window: 3 });
  assert.equal(step.detrended, 0);
  // Raw: mean 1.5, Σ(x − 1.5)² = 8 · 0.25 = 2, sample variance 2/7.
  near(step.raw, Math.sqrt(2 / 7) / 1.5, 1e-12, "raw of the step");
  // 1, 1, 1, 5, 1, 1, 1, window 3: kept ratios 1, 1, 5, 1, 1 (the spike's window {1, 5, 1} has median 1): mean 9/5,
  // Σ(r − 9/5)² = 4 · 0.64 + 3.2² = 12.8, sample variance 3.2.
  const spike = gradientDeviation([1, 1, 1, 5, 1, 1, 1], { window: 3 });
  near(spike.detrended, Math.sqrt(3.2) / 1.8, 1e-12, "detrended spike");
  // Raw: mean 11/7, Σ(x − 11/7)² = 6 · (4/7)² + (24/7)² = 672/49, sample variance 112/49 = 16/7.
  near(spike.raw, Math.sqrt(16 / 7) / (11 / 7), 1e-12, "raw spike");
});

Deno.test("gradientDeviation: typed arrays give the same numbers as plain arrays", () => {
  const xs = [0.5, 0.75, 0.5, 1.25, 0.75, 1, 0.5];
  assert.deepEqual(gradientDeviation(Float64Array.from(xs), { window: 3 }), gradientDeviation(xs, { window: 3 }));
});

Deno.test("gradientDeviation: bad input names the argument", () => {
  assert.throws(() => gradientDeviation([1, 2, 3, 4], undefined as never), TypeError);
  assert.throws(
    () => gradientDeviation([1, 2, 3, 4], { window: 4 }),
    (e: Error) =>
      e instanceof RangeError && /options.window must be an odd integer/.test(e.message) && /use 5/.test(e.message),
  );
  assert.throws(() => gradientDeviation([1, 2, 3, 4], { window: 1 }), RangeError);
  assert.throws(() => gradientDeviation([1, 2, 3, 4], { window: "3" as never }), TypeError);
  assert.throws(() => gradientDeviation([1, 2, 3, 4], { window: 3, edges: "keep" } as never), /unknown option "edges"/);
  assert.throws(
    () => gradientDeviation([1, 2, 3], { window: 3 }),
    (e: Error) => e instanceof RangeError && /xs has 3 values/.test(e.message) && /at least 4/.test(e.message),
  );
  assert.throws(
    () => gradientDeviation([1, 0, 3, 4], { window: 3 }),
    (e: Error) => e instanceof RangeError && /xs\[1\] is 0/.test(e.message),
  );
  assert.throws(() => gradientDeviation([1, NaN, 3, 4], { window: 3 }), RangeError);
  assert.throws(
    () => gradientDeviation([1, "2", 3, 4] as never, { window: 3 }),
    (e: Error) => e instanceof TypeError && /xs\[1\] must be a number/.test(e.message),
  );
  assert.throws(() => gradientDeviation("1234" as never, { window: 3 }), TypeError);
});

// ---------------------------------------------------------------- meanDeviation

Deno.test("meanDeviation: the mean over series of each measure", () => {
  const flat = [2, 2, 2, 2, 2, 2, 2, 2];
  const flip = [1, 3, 1, 3, 1, 3, 1, 3];
  const line = [1, 2, 3, 4, 5, 6, 7, 8];
  const d = meanDeviation([flat, flip, line], { window: 3 });
  // flat: 0, 0; flip: √(8/7)/2, √(32/15)/(5/3) (as above); line: √(8/27), 0.
  near(d.raw, (0 + Math.sqrt(8 / 7) / 2 + Math.sqrt(8 / 27)) / 3, 1e-12, "raw");
  near(d.detrended, (0 + Math.sqrt(32 / 15) / (5 / 3) + 0) / 3, 1e-12, "detrended");
  assert.equal(d.perSeries.length, 3);
  assert.deepEqual(d.perSeries[1], gradientDeviation(flip, { window: 3 }));
});

Deno.test("meanDeviation: bad input names the series", () => {
  assert.throws(() => meanDeviation([], { window: 3 }), RangeError);
  assert.throws(() => meanDeviation([1, 2, 3] as never, { window: 3 }), /series\[0\] must be an array/);
  assert.throws(() => meanDeviation([[1, 2, 3, 4], [1, 2]], { window: 3 }), /series\[1\] has 2 values/);
  assert.throws(() => meanDeviation("ab" as never, { window: 3 }), TypeError);
});

// ---------------------------------------------------------------- sampleWindow, growth

Deno.test("sampleWindow: ±h updates in samples of a series logged every k-th update", () => {
  assert.equal(sampleWindow(25, 1), 51);
  assert.equal(sampleWindow(25, 10), 7); // 2.5 samples rounds up to ±3
  assert.equal(sampleWindow(24, 10), 5); // 2.4 → ±2
  assert.equal(sampleWindow(1, 1), 3);
  assert.equal(sampleWindow(3, 10), 3); // at least ±1 sample
  assert.throws(() => sampleWindow(0, 1), RangeError);
  assert.throws(() => sampleWindow(25, 0), RangeError);
  assert.throws(() => sampleWindow(25, 2.5), RangeError);
  assert.throws(() => sampleWindow("25" as never, 1), TypeError);
});

Deno.test("growth: the mean of the last share over the first", () => {
  // 1..100, fraction 0.1: (91 + … + 100)/10 = 95.5 over (1 + … + 10)/10 = 5.5.
  const xs = Array.from({ length: 100 }, (_, i) => i + 1);
  near(growth(xs), 95.5 / 5.5, 1e-12, "default fraction");
  near(growth(xs, { fraction: 0.5 }), 75.5 / 25.5, 1e-12, "halves");
  assert.equal(growth([3, 3, 3, 3]), 1);
  near(growth([2, 1]), 0.5, 1e-15, "k = 1 for a short series");
  assert.throws(() => growth(xs, { fraction: 0.6 }), RangeError);
  assert.throws(() => growth(xs, { fraction: "0.1" as never }), TypeError);
  assert.throws(() => growth([1]), RangeError);
  assert.throws(() => growth(xs, { share: 0.1 } as never), /unknown option/);
});

// ---------------------------------------------------------------- leastFavourable

function iv(low: number, high: number, n = 3): Interval {
  return { estimate: (low + high) / 2, low, high, level: 0.95, n, method: "test", nullValue: 1 };
}

Deno.test("leastFavourable: every interval must pass for the claim to hold", () => {
  const rule = { direction: "less" as const, margin: 1 / 3 }; // threshold 2/3 below the null 1
  // All below 2/3: reproduced, decided by the one whose upper bound is highest.
  let r = leastFavourable([iv(0.2, 0.4), iv(0.3, 0.6), iv(0.1, 0.5)], rule);
  assert.deepEqual([r.index, r.outcome], [1, "reproduced"]);
  // One straddles 2/3: inconclusive, whatever the others.
  r = leastFavourable([iv(0.2, 0.4), iv(0.5, 0.8), iv(0.1, 0.5)], rule);
  assert.deepEqual([r.index, r.outcome], [1, "inconclusive"]);
  // One lies wholly above 2/3: not reproduced, even though another straddles with a higher upper bound.
  r = leastFavourable([iv(0.3, 1.9), iv(0.7, 0.9), iv(0.1, 0.5)], rule);
  assert.deepEqual([r.index, r.outcome], [1, "not reproduced"]);
  assert.equal(verdict(r.interval, rule).reason, "confident absence");
  // Two refuted: the one reaching further past the threshold (higher upper bound) decides.
  r = leastFavourable([iv(0.7, 0.9), iv(1.2, 1.5), iv(0.8, 0.95)], rule);
  assert.deepEqual([r.index, r.outcome], [1, "not reproduced"]);
  // Too few values anywhere: underpowered, inconclusive.
  r = leastFavourable([iv(0.2, 0.4), iv(0.2, 0.3, 2)], rule);
  assert.deepEqual([r.index, r.outcome], [1, "inconclusive"]);
});

Deno.test("leastFavourable: greater and two-sided rules", () => {
  const greater = { direction: "greater" as const, null: 0, margin: 0.02 };
  const d = (low: number, high: number) => ({ ...iv(low, high), nullValue: 0 });
  let r = leastFavourable([d(0.1, 0.3), d(0.05, 0.4), d(0.2, 0.25)], greater);
  assert.deepEqual([r.index, r.outcome], [1, "reproduced"]); // lowest lower bound
  r = leastFavourable([d(0.1, 0.3), d(-0.05, -0.01), d(0.01, 0.25)], greater);
  assert.deepEqual([r.index, r.outcome], [1, "not reproduced"]);
  const tie = { direction: "two-sided" as const, null: 0, margin: 0.1 };
  r = leastFavourable([d(-0.05, 0.05), d(-0.09, 0.02), d(-0.03, 0.08)], tie);
  assert.equal(r.outcome, "reproduced");
  r = leastFavourable([d(-0.05, 0.05), d(-0.2, 0.02), d(-0.03, 0.15)], tie);
  assert.deepEqual([r.index, r.outcome], [1, "inconclusive"]); // 0.1 past the band's lower edge beats 0.05 past the upper
  r = leastFavourable([d(-0.05, 0.05), d(0.12, 0.3)], tie);
  assert.deepEqual([r.index, r.outcome], [1, "not reproduced"]);
});

Deno.test("leastFavourable: real t intervals and exact values", () => {
  const ratios = [tInterval([0.4, 0.45, 0.42]), tInterval([0.3, 0.9, 0.5])];
  const r = leastFavourable(ratios, { direction: "less", null: 1, margin: 1 / 3 });
  assert.equal(r.index, 1);
  assert.equal(r.outcome, verdict(ratios[1], { direction: "less", null: 1, margin: 1 / 3 }).outcome);
  const exact = leastFavourable([exactInterval(0.5), exactInterval(0.6)], { direction: "less", null: 1, margin: 0.2 });
  assert.deepEqual([exact.index, exact.outcome], [1, "reproduced"]);
});

Deno.test("leastFavourable: bad input", () => {
  assert.throws(() => leastFavourable([], { direction: "less" }), RangeError);
  assert.throws(() => leastFavourable("x" as never, { direction: "less" }), TypeError);
  assert.throws(() => leastFavourable([iv(0, 1)], { direction: "sideways" as never }), RangeError);
  assert.throws(() => leastFavourable([{ low: 0 } as never], { direction: "less" }), TypeError);
});
