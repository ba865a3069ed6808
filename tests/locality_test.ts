import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  attentionMaps,
  layerLocality,
  type PooledLocality,
  pooledLocalityCurve,
} from "../lib/diagnostics/attention_maps.ts";
import {
  attentionEntropy,
  type LocalityCurve,
  localityCurve,
  meanAttentionDistance,
  type RowStatistic,
  uniformLocality,
  windowMass,
} from "../lib/diagnostics/locality.ts";
import {
  curveBand,
  layerHalves,
  localityAucInterval,
  poolWindows,
  type WindowLocality,
  windowLocality,
} from "../lib/diagnostics/locality_stats.ts";
import { createModel } from "../lib/models/model.ts";
import { randomNormal, seededUniform } from "../lib/random.ts";
import "./helpers.ts";

/** Ratios as exact fractions [num, den], so the expected ⌈x·m⌉ is an integer ceiling free of float noise. */
const FRACTIONS: [number, number][] = [[0, 1], [1, 8], [1, 5], [1, 3], [1, 2], [2, 3], [7, 10], [9, 10], [1, 1]];
const RATIOS = FRACTIONS.map(([a, b]) => a / b);
const size = ([a, b]: [number, number], m: number) => Math.ceil((a * m) / b);

function assertNear(actual: number, expected: number, what: string, tol = 1e-9) {
  assert.ok(Number.isFinite(actual), `${what}: got ${actual}`);
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: got ${actual}, expected ${expected}`);
}

function assertAllNear(actual: number[], expected: number[], what: string, tol = 1e-9) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  actual.forEach((a, i) => assertNear(a, expected[i], `${what}[${i}]`, tol));
}

/** An [n, n] matrix from f(i, j). */
function matrix(n: number, f: (i: number, j: number) => number): number[][] {
  return Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => f(i, j)));
}

/**
 * The reference definition, by sorting: the k keys among `keys` with the smallest (|i − j|, j), and the share of
 * Σ_j |w_ij| they hold.
 */
function referenceMass(row: number[], i: number, k: number, keys: number[]): number {
  const order = [...keys].sort((a, b) => Math.abs(i - a) - Math.abs(i - b) || a - b);
  const total = row.reduce((s, w) => s + Math.abs(w), 0);
  return order.slice(0, k).reduce((s, j) => s + Math.abs(row[j]), 0) / total;
}

/** Reference curves of one [n, n] matrix at FRACTIONS; available context i + 1 keys when causal. */
function referenceCurves(w: number[][], causal: boolean): { curve: number[]; available: number[] } {
  const n = w.length;
  const all = Array.from({ length: n }, (_, j) => j);
  const mean = (f: (i: number) => number) => w.reduce((s, _, i) => s + f(i), 0) / n;
  return {
    curve: FRACTIONS.map((x) => mean((i) => referenceMass(w[i], i, size(x, n), all))),
    available: FRACTIONS.map((x) => {
      return mean((i) => {
        const m = causal ? i + 1 : n;
        return referenceMass(w[i], i, size(x, m), all.slice(0, m));
      });
    }),
  };
}

/** Seeded random [n, n] weights: normal entries (negative ones included), lower-triangular when causal. */
function randomWeights(n: number, seed: number, causal = false): number[][] {
  const data = tf.tidy(() => randomNormal<tf.Tensor2D>([n, n], { seed }).arraySync());
  return data.map((row, i) => row.map((w, j) => (causal && j > i ? 0 : w)));
}

Deno.test("identity: the curve is 1 from the first token on, its area is 1, for every n", () => {
  for (const n of [1, 2, 5, 7, 16]) {
    for (const causal of [false, true]) {
      const w = tf.eye(n);
      const out = localityCurve(w, { ratios: RATIOS, causal });
      w.dispose();
      const expected = RATIOS.map((x) => (x === 0 ? 0 : 1));
      assertAllNear(out.curve, expected, `identity n=${n} causal=${causal}`);
      assertAllNear(out.availableCurve, expected, `identity available n=${n}`);
      assertNear(out.auc, 1, `identity auc n=${n}`);
      assertNear(out.availableAuc, 1, `identity available auc n=${n}`);
    }
  }
});

Deno.test("uniform: the curve is ⌈x·n⌉/n, the area (n + 1)/(2n), also for n not divisible by the ratio", () => {
  for (const n of [1, 3, 7, 10, 33]) {
    const w = tf.fill([n, n], 0.37);
    const out = localityCurve(w, { ratios: RATIOS });
    w.dispose();
    assertAllNear(out.curve, FRACTIONS.map((x) => size(x, n) / n), `uniform n=${n}`);
    assertAllNear(out.availableCurve, out.curve, `uniform available = full, n=${n}`);
    // Step function C(k) = k/n on ((k − 1)/n, k/n]: ∫ = (1/n) Σ_k k/n = (n + 1)/(2n).
    assertNear(out.auc, (n + 1) / (2 * n), `uniform auc n=${n}`);
    assert.deepEqual(out.ratios, RATIOS);
  }
  const w = tf.fill([5, 5], 0.2);
  assertAllNear(localityCurve(w, RATIOS).curve, FRACTIONS.map((x) => size(x, 5) / 5), "ratios passed positionally");
  w.dispose();
  // 0.07 · 100 and 0.14 · 50 are 7.000000000000001 in floating point; the neighbourhoods still hold 7 tokens.
  for (const [x, n] of [[0.07, 100], [0.14, 50]]) {
    assert.ok(x * n > 7, "the float product must overshoot for this check to bite");
    const w = tf.fill([n, n], 1);
    assertNear(localityCurve(w, { ratios: [x] }).curve[0], 7 / n, `${x} of ${n} tokens`);
    w.dispose();
  }
});

Deno.test("banded: a hand-derived curve; a one-sided band checks that ties go to the left", () => {
  // |i − j| <= 1 at n = 5: end rows hold 2 keys, middle rows 3. k = 1 keeps the query: (1/2 + 3·1/3 + 1/2)/5;
  // k = 2 adds the left neighbour (row 0: its right one): (1 + 3·2/3 + 1)/5; k >= 3 holds every key.
  const band = tf.tensor2d(matrix(5, (i, j) => (Math.abs(i - j) <= 1 ? 1 : 0)));
  const out = localityCurve(band, { ratios: [0, 0.2, 0.4, 0.6, 0.8, 1] });
  band.dispose();
  assertAllNear(out.curve, [0, 2 / 5, 4 / 5, 1, 1, 1], "band 1, n = 5");
  assertNear(out.auc, (2 / 5 + 4 / 5 + 3) / 5, "band auc");
  // Attention on the right neighbour only: with 2 tokens the neighbourhood is {i, i − 1}, so only row 0
  // (no left neighbour) and the last row (on itself) count; with 3 it holds i + 1 too.
  const n = 6;
  const right = tf.tensor2d(matrix(n, (i, j) => (j === Math.min(i + 1, n - 1) ? 1 : 0)));
  const left = tf.tensor2d(matrix(n, (i, j) => (j === Math.max(i - 1, 0) ? 1 : 0)));
  const ratios = [1 / n, 2 / n, 3 / n];
  assertAllNear(localityCurve(right, { ratios }).curve, [1 / n, 2 / n, 1], "right neighbour");
  assertAllNear(localityCurve(left, { ratios }).curve, [1 / n, 1, 1], "left neighbour");
  tf.dispose([right, left]);
  // A wider band against the sorting reference, n not divisible by the ratios' denominators.
  const wide = matrix(13, (i, j) => (Math.abs(i - j) <= 3 ? 1 + ((i + 2 * j) % 3) : 0));
  const t = tf.tensor2d(wide);
  assertAllNear(localityCurve(t, { ratios: RATIOS }).curve, referenceCurves(wide, false).curve, "band 3, n = 13");
  t.dispose();
});

Deno.test("rows with negative entries are normalised by Σ|w|", () => {
  // Row 0 sums to 0, so plain normalisation is undefined; |.| gives (1/2, 1/2). Row 1: (1/4, 3/4).
  const w = tf.tensor2d([[2, -2], [-1, 3]]);
  const out = localityCurve(w, { ratios: [0.5, 1] });
  assertAllNear(out.curve, [(1 / 2 + 3 / 4) / 2, 1], "negative rows");
  const abs = tf.abs(w);
  assert.deepEqual(localityCurve(abs, { ratios: RATIOS }), localityCurve(w, { ratios: RATIOS }));
  assert.deepEqual(attentionEntropy(abs), attentionEntropy(w));
  tf.dispose([w, abs]);
  // Random signed matrices against the sorting reference.
  for (const n of [4, 9, 31]) {
    const data = randomWeights(n, 100 + n);
    const t = tf.tensor2d(data);
    assertAllNear(localityCurve(t, { ratios: RATIOS }).curve, referenceCurves(data, false).curve, `random n=${n}`);
    t.dispose();
  }
});

Deno.test("every diagnostic is invariant to scaling each row by its own non-zero factor", () => {
  const n = 11;
  const data = randomWeights(n, 7);
  const u = seededUniform(8);
  const factors = data.map((_, i) => (i % 3 === 0 ? -1 : 1) * (1e-3 + 100 * u()));
  const a = tf.tensor2d(data);
  const b = tf.tensor2d(data.map((row, i) => row.map((w) => w * factors[i])));
  const ca = localityCurve(a, { ratios: RATIOS });
  const cb = localityCurve(b, { ratios: RATIOS });
  assertAllNear(cb.curve, ca.curve, "curve", 1e-6);
  assertNear(cb.auc, ca.auc, "auc", 1e-6);
  assertAllNear(attentionEntropy(b).byQuery, attentionEntropy(a).byQuery, "entropy", 1e-5);
  assertAllNear(meanAttentionDistance(b).byQuery, meanAttentionDistance(a).byQuery, "distance", 1e-5);
  assertAllNear(windowMass(b, { window: 2 }).byQuery, windowMass(a, { window: 2 }).byQuery, "window", 1e-6);
  tf.dispose([a, b]);
});

Deno.test("causal uniform: closed forms of the full and the available-context curves", () => {
  for (const n of [1, 6, 17]) {
    // Row i holds 1/(i + 1) on each key j <= i.
    const w = tf.tensor2d(matrix(n, (i, j) => (j <= i ? 1 / (i + 1) : 0)));
    const out = localityCurve(w, { ratios: RATIOS, causal: true });
    w.dispose();
    // Full: the k nearest tokens alternate self, left, right, left, ...; ⌊k/2⌋ + 1 of them lie at j <= i while the
    // right side lasts (n − 1 − i tokens), k − (n − 1 − i) once it has run out, and never more than the i + 1 keys.
    const leftCount = (
      i: number,
      k: number,
    ) => (k === 0 ? 0 : Math.min(i + 1, Math.max(Math.floor(k / 2) + 1, k - (n - 1 - i))));
    const mean = (f: (i: number) => number) => Array.from({ length: n }, (_, i) => f(i)).reduce((a, b) => a + b) / n;
    const full = FRACTIONS.map((x) => mean((i) => leftCount(i, size(x, n)) / (i + 1)));
    assertAllNear(out.curve, full, `causal uniform full n=${n}`);
    // Available: ⌈x(i + 1)⌉ of the i + 1 equal keys.
    const available = FRACTIONS.map((x) => mean((i) => size(x, i + 1) / (i + 1)));
    assertAllNear(out.availableCurve, available, `causal uniform available n=${n}`);
    // Each row's available area is that of a uniform row over m = i + 1 keys, (m + 1)/(2m): mean 1/2 + H_n/(2n).
    const harmonic = Array.from({ length: n }, (_, i) => 1 / (i + 1)).reduce((a, b) => a + b);
    assertNear(out.availableAuc, 0.5 + harmonic / (2 * n), `causal uniform available auc n=${n}`);
    assert.equal(out.causal, true);
  }
});

Deno.test("causal random weights match the sorting reference, full and available", () => {
  for (const n of [5, 12, 23]) {
    const data = randomWeights(n, 300 + n, true);
    const t = tf.tensor2d(data);
    const out = localityCurve(t, { ratios: RATIOS, causal: true });
    t.dispose();
    const ref = referenceCurves(data, true);
    assertAllNear(out.curve, ref.curve, `causal full n=${n}`);
    assertAllNear(out.availableCurve, ref.available, `causal available n=${n}`);
  }
});

Deno.test("the area is the exact integral: the mean of the curve sampled at the right ends k/n", () => {
  for (const causal of [false, true]) {
    const n = 14;
    const data = randomWeights(n, 9, causal);
    const t = tf.tensor2d(data);
    const grid = Array.from({ length: n }, (_, k) => (k + 1) / n);
    const out = localityCurve(t, { ratios: grid, causal });
    assertNear(out.auc, out.curve.reduce((a, b) => a + b) / n, `auc causal=${causal}`);
    // Each ratio set samples the same step function, so the area does not depend on it.
    assertNear(localityCurve(t, { ratios: [0.5], causal }).auc, out.auc, "auc independent of ratios");
    t.dispose();
  }
});

Deno.test("[batch, heads, n, n]: means over heads equal the means of the per-head [n, n] results", () => {
  const [b, h, n] = [2, 3, 9];
  const w = tf.tidy(() => tf.abs(randomNormal<tf.Tensor4D>([b, h, n, n], { seed: 5 })));
  const out = localityCurve(w, { ratios: RATIOS });
  assert.equal(out.perHead.length, b * h);
  const single: { one: LocalityCurve; entropy: RowStatistic; distance: RowStatistic }[] = [];
  for (let g = 0; g < b * h; g++) {
    const [bi, hi] = [Math.floor(g / h), g % h];
    const head = tf.tidy(() => tf.reshape(tf.slice(w, [bi, hi, 0, 0], [1, 1, n, n]), [n, n]));
    const one = localityCurve(head, { ratios: RATIOS });
    assert.equal(out.perHead[g].batch, bi);
    assert.equal(out.perHead[g].head, hi);
    assertAllNear(out.perHead[g].curve, one.curve, `perHead ${g}`);
    assertNear(out.perHead[g].auc, one.auc, `perHead auc ${g}`);
    single.push({ one, entropy: attentionEntropy(head), distance: meanAttentionDistance(head) });
    head.dispose();
  }
  const avg = (f: (s: typeof single[number]) => number) => single.reduce((a, s) => a + f(s), 0) / single.length;
  assertAllNear(out.curve, RATIOS.map((_, r) => avg((s) => s.one.curve[r])), "mean curve");
  assertNear(out.auc, avg((s) => s.one.auc), "mean auc");
  const entropy = attentionEntropy(w);
  assertAllNear(entropy.byHead, single.map((s) => s.entropy.mean), "entropy byHead");
  assertAllNear(entropy.byQuery, Array.from({ length: n }, (_, i) => avg((s) => s.entropy.byQuery[i])), "byQuery");
  assertNear(meanAttentionDistance(w).mean, avg((s) => s.distance.mean), "distance mean");
  w.dispose();
});

Deno.test("entropy: log n for uniform rows, log(i + 1) for causal uniform rows, 0 for one-hot rows", () => {
  const n = 9;
  const uniform = tf.fill([n, n], 3);
  const causal = tf.tensor2d(matrix(n, (i, j) => (j <= i ? 1 : 0)));
  const eye = tf.eye(n);
  assertAllNear(attentionEntropy(uniform).byQuery, new Array(n).fill(Math.log(n)), "uniform");
  assertAllNear(attentionEntropy(causal).byQuery, Array.from({ length: n }, (_, i) => Math.log(i + 1)), "causal");
  assertNear(attentionEntropy(eye).mean, 0, "identity");
  // Two keys with mass (1/4, 3/4).
  const two = tf.tensor2d([[1, 3], [-3, 1]]);
  assertNear(attentionEntropy(two).mean, -(0.25 * Math.log(0.25) + 0.75 * Math.log(0.75)), "two keys");
  tf.dispose([uniform, causal, eye, two]);
});

Deno.test("mean distance: 0 on the diagonal, Σ_j |i − j|/n for uniform rows, (n² − 1)/(3n) on average", () => {
  const n = 10;
  const uniform = tf.fill([n, n], 1);
  const eye = tf.eye(n);
  const out = meanAttentionDistance(uniform);
  // Σ_j |i − j| = i(i + 1)/2 + (n − 1 − i)(n − i)/2.
  assertAllNear(out.byQuery, Array.from({ length: n }, (_, i) => (i * (i + 1) + (n - 1 - i) * (n - i)) / (2 * n)), "u");
  assertNear(out.mean, (n * n - 1) / (3 * n), "uniform mean");
  assertNear(meanAttentionDistance(eye).mean, 0, "identity");
  tf.dispose([uniform, eye]);
});

Deno.test("window mass: clipped windows of uniform rows, the whole band inside its own width", () => {
  const n = 8;
  const uniform = tf.fill([n, n], 1);
  for (const window of [0, 1, 3, 7, 20]) {
    const expected = Array.from(
      { length: n },
      (_, i) => (Math.min(n - 1, i + window) - Math.max(0, i - window) + 1) / n,
    );
    assertAllNear(windowMass(uniform, { window }).byQuery, expected, `uniform window ${window}`);
  }
  const band = tf.tensor2d(matrix(n, (i, j) => (Math.abs(i - j) <= 2 ? -1 - i : 0)));
  assertNear(windowMass(band, { window: 2 }).mean, 1, "band inside");
  // Window 1 on a band of width 2: interior rows keep 3 of their 5 keys.
  assertNear(windowMass(band, { window: 1 }).byQuery[4], 3 / 5, "band interior row");
  tf.dispose([uniform, band]);
});

Deno.test("bad inputs throw errors that name the argument and the fix", () => {
  const ok = tf.eye(3);
  const cases: [() => unknown, RegExp][] = [
    [() => localityCurve(tf.ones([2, 3, 3]) as tf.Tensor, {}), /\[n, n\] or \[batch, heads, n, n\].*tf\.reshape/],
    [() => localityCurve(tf.ones([3, 4]), {}), /square.*\[3, 4\]/],
    [() => localityCurve(tf.ones([3, 3], "int32"), {}), /float32.*tf\.cast/],
    [() => localityCurve([[1]] as unknown as tf.Tensor), /tf\.Tensor.*got an array/],
    [() => localityCurve(tf.zeros([0, 0])), /at least one query row/],
    [() => localityCurve(tf.tensor2d([[1, NaN], [0, 1]])), /finite, got NaN at query 0, key 1/],
    [() => localityCurve(tf.tensor2d([[1, 0], [0, 0]])), /query 1 is all zeros/],
    [() => localityCurve(tf.zeros([1, 2, 2, 2])), /batch 0, head 0, query 0/],
    [() => localityCurve(ok, { ratios: [] }), /ratios must be a non-empty array/],
    [
      () => localityCurve(ok, { ratios: [0.5, 1.5] }),
      /ratios must hold 0 or numbers in \[1e-6, 1\], got 1\.5 at index 1/,
    ],
    [() => localityCurve(ok, { ratios: [NaN] }), /ratios must hold 0 or numbers in \[1e-6, 1\], got NaN/],
    [() => localityCurve(ok, { ratios: 0.5 as unknown as number[] }), /non-empty array/],
    [() => localityCurve(ok, { causal: "yes" as unknown as boolean }), /option causal must be true or false/],
    [
      () => localityCurve(ok, { window: 3 } as unknown as { causal: boolean }),
      /unknown option "window".*ratios, causal/,
    ],
    [() => localityCurve(ok, [0.5, 2]), /ratios must hold 0 or numbers in \[1e-6, 1\], got 2 at index 1/],
    [
      () => localityCurve(tf.ones([3, 3]), { causal: true }),
      /causal weights must be 0 above the diagonal.*query 0, key 1.*causal: false/,
    ],
    [() => windowMass(ok, {} as { window: number }), /option window is required/],
    [() => windowMass(ok, { window: -1 }), /option window must be >= 0/],
    [() => windowMass(ok, { window: 1.5 }), /option window must be an integer/],
    [() => attentionEntropy(tf.ones([3]) as tf.Tensor), /\[n, n\] or \[batch, heads, n, n\]/],
    [() => meanAttentionDistance(tf.tensor2d([[Infinity]])), /finite/],
  ];
  for (const [f, message] of cases) tf.tidy(() => void assert.throws(f, message));
  ok.dispose();
});

Deno.test("no tensors leak: the count returns to its start after repeated calls", () => {
  const w = tf.tidy(() => tf.softmax(randomNormal<tf.Tensor4D>([2, 2, 16, 16], { seed: 3 })));
  const start = tf.memory().numTensors;
  for (let rep = 0; rep < 3; rep++) {
    localityCurve(w, { causal: false });
    attentionEntropy(w);
    meanAttentionDistance(w);
    windowMass(w, { window: 4 });
    assert.throws(() => localityCurve(w, { causal: true }));
  }
  assert.equal(tf.memory().numTensors, start);
  w.dispose();
});

Deno.test("uniformLocality: the closed forms ⌈x·n⌉/n, (n + 1)/(2n) and 1/2 + H_n/(2n)", () => {
  for (const n of [1, 3, 10, 128]) {
    const full = uniformLocality(n, { ratios: RATIOS });
    assertAllNear(full.curve, FRACTIONS.map((x) => size(x, n) / n), `bidirectional curve, n = ${n}`);
    assertNear(full.auc, (n + 1) / (2 * n), `bidirectional area, n = ${n}`);
    assert.equal(full.causal, false);
    let harmonic = 0;
    for (let m = 1; m <= n; m++) harmonic += 1 / m;
    const causal = uniformLocality(n, { causal: true });
    assertNear(causal.availableAuc, 0.5 + harmonic / (2 * n), `causal available area, n = ${n}`);
    // Query i holds 1/(i + 1) on each of its keys: the available-context curve is the mean of ⌈x·(i + 1)⌉/(i + 1).
    const available = uniformLocality(n, { ratios: RATIOS, causal: true }).availableCurve;
    const expected = FRACTIONS.map((x) => Array.from({ length: n }, (_, i) => size(x, i + 1) / (i + 1)));
    assertAllNear(available, expected.map((v) => v.reduce((a, b) => a + b, 0) / n), `causal available, n = ${n}`);
  }
  assert.equal(uniformLocality(5).ratios.length, 21);
});

/** A PooledLocality whose curves are flat at `value` (area `value` on both curves). */
function flat(value: number, rows: number, emptyRows = 0): PooledLocality {
  return {
    ratios: [0, 1],
    curve: [value, value],
    auc: value,
    availableCurve: [value / 2, value / 2],
    availableAuc: value / 2,
    rows,
    emptyRows,
  };
}

/** A WindowLocality of one layer, one window per value. */
function sampleLocality(values: number[], rows: number[] = values.map(() => 4)): WindowLocality {
  return {
    n: 4,
    causal: false,
    ratios: [0, 1],
    variants: ["softmax"],
    windows: values.map((v, k) => [flat(v, rows[k])]),
  };
}

Deno.test("windowLocality: per-window samples that pool back to layerLocality and match pooledLocalityCurve", () => {
  for (const task of ["lm", "mlm"] as const) {
    const model = createModel({ attention: "transnormer-t1", layers: 2, dModel: 8, heads: 2, task, seed: 5 }, {
      log: () => {},
    });
    const ids = tf.tidy(() =>
      tf.cast(tf.mul(tf.randomUniform([5, 6], 0, 1, "float32", 9), 255), "int32")
    ) as tf.Tensor2D;
    const ratios = [0, 0.25, 0.5, 1];
    const start = tf.memory().numTensors;
    const samples = windowLocality(model, ids, { ratios, batchSize: 2 });
    assert.equal(tf.memory().numTensors, start, `${task}: no tensors left`);
    assert.equal(samples.causal, task === "lm");
    assert.deepEqual(samples.variants, ["diag", "norm"]);
    assert.equal(samples.windows.length, 5);
    // Reference: the raw matrices of window 3, pooled by pooledLocalityCurve.
    const maps = attentionMaps(model, tf.slice(ids, [3, 0], [1, 6]) as tf.Tensor2D, { normalize: "none" });
    maps.forEach((w, l) => {
      const ref = pooledLocalityCurve(w, { ratios, causal: task === "lm" });
      const got = samples.windows[3][l];
      assertAllNear(got.curve, ref.curve, `${task} layer ${l} curve`, 1e-6);
      assertNear(got.availableAuc, ref.availableAuc, `${task} layer ${l} available area`, 1e-6);
      assert.equal(got.rows + got.emptyRows, 2 * 6);
    });
    tf.dispose(maps);
    const pooled = layerLocality(model, ids, { ratios });
    pooled.forEach((layer, l) => {
      const mine = poolWindows(samples.windows, { layers: [l] });
      assertAllNear(mine.curve, layer.curve, `${task} layer ${l} pooled curve`, 1e-6);
      assertAllNear(mine.availableCurve, layer.availableCurve, `${task} layer ${l} pooled available`, 1e-6);
      assertNear(mine.auc, layer.auc, `${task} layer ${l} pooled area`, 1e-6);
      assert.equal(mine.rows, layer.rows);
      assert.equal(mine.emptyRows, layer.emptyRows);
    });
    if (task === "mlm") assertAllNear(samples.windows[0][1].availableCurve, samples.windows[0][1].curve, "mlm: equal");
    // Both paths are exercised: relu blocks leave some rows of layer 0 empty (pooled window by window), and
    // NormAttention's layer 1 has none (one localityCurve call per batch).
    assert.ok(samples.windows.some((w) => w[0].emptyRows > 0), `${task}: layer 0 has empty rows`);
    assert.ok(samples.windows.every((w) => w[1].emptyRows === 0), `${task}: layer 1 has none`);
    ids.dispose();
    model.dispose();
  }
});

Deno.test("poolWindows: windows count by their rows, layers once each, empty windows are skipped", () => {
  const windows = [[flat(0.5, 1), flat(0.6, 2)], [flat(0.9, 3), flat(0.8, 2)], [flat(NaN, 0, 8), flat(0.2, 4)]];
  windows[2][0].curve = [NaN, NaN];
  windows[2][0].availableCurve = [NaN, NaN];
  const layer0 = (0.5 * 1 + 0.9 * 3) / 4;
  const layer1 = (0.6 * 2 + 0.8 * 2 + 0.2 * 4) / 8;
  const one = poolWindows(windows, { layers: [0] });
  assertNear(one.auc, layer0, "layer 0 area");
  assertAllNear(one.curve, [layer0, layer0], "layer 0 curve");
  assertAllNear(one.availableCurve, [layer0 / 2, layer0 / 2], "layer 0 available curve");
  assert.equal(one.rows, 4);
  assert.equal(one.emptyRows, 8);
  const both = poolWindows(windows);
  assertNear(both.auc, (layer0 + layer1) / 2, "mean over layers");
  assertNear(both.availableAuc, (layer0 + layer1) / 4, "mean over layers, available");
  assert.equal(both.rows, 12);
  assert.throws(() => poolWindows([windows[2]], { layers: [0] }), /layer 0 has no query row with attention mass/);
});

Deno.test("localityAucInterval: the bootstrap of a mean over windows drawn from a known distribution", () => {
  // 400 windows whose areas are normal with sd 0.05: the 95% interval is about mean ± 1.96 · s/√400.
  const values = tf.tidy(() => Array.from(tf.add(tf.mul(randomNormal([400], { seed: 11 }), 0.05), 0.7).dataSync()));
  const sample = sampleLocality(values);
  const iv = localityAucInterval(sample, { curve: "full", seed: 3 });
  const m = values.reduce((a, b) => a + b, 0) / values.length;
  const s = Math.sqrt(values.reduce((a, v) => a + (v - m) ** 2, 0) / (values.length - 1));
  const half = (1.96 * s) / Math.sqrt(values.length);
  assertNear(iv.estimate, m, "estimate: the pooled mean", 1e-12);
  assert.ok(Math.abs((iv.high - iv.low) / 2 / half - 1) < 0.15, `half-width ${(iv.high - iv.low) / 2} vs ${half}`);
  assert.ok(iv.low < 0.7 && 0.7 < iv.high, `the true mean 0.7 lies in [${iv.low}, ${iv.high}]`);
  assert.equal(iv.n, 400);
  assert.equal(iv.method, "bootstrap percentile");
  // The available curve's area is half the full one's in these samples; the same seed gives the same interval.
  const available = localityAucInterval(sample, { seed: 3 });
  assertNear(available.low, iv.low / 2, "available area", 1e-12);
  assert.equal(localityAucInterval(sample, { curve: "full", seed: 3 }).low, iv.low);
});

Deno.test("localityAucInterval: the paired difference on shared windows removes what the text shares", () => {
  const values = [0.61, 0.75, 0.68, 0.9, 0.55, 0.7, 0.82, 0.64];
  const a = sampleLocality(values);
  const b = sampleLocality(values.map((v) => v - 0.1));
  // Every resample shifts both models alike, so the difference is exactly 0.1 however wide each interval is.
  const diff = localityAucInterval(a, { minus: b, curve: "full", seed: 2 });
  assertNear(diff.estimate, 0.1, "estimate", 1e-12);
  assertNear(diff.low, 0.1, "low", 1e-12);
  assertNear(diff.high, 0.1, "high", 1e-12);
  assert.ok(
    localityAucInterval(a, { curve: "full", seed: 2 }).high - localityAucInterval(a, { curve: "full" }).low > 0.05,
  );
  // Rows weight the windows: the estimate is Σ rows · auc / Σ rows.
  const weighted = sampleLocality([0.5, 1], [3, 1]);
  assertNear(localityAucInterval(weighted, { curve: "full" }).estimate, 0.625, "row-weighted estimate", 1e-12);
});

Deno.test("layerHalves and curveBand", () => {
  assert.deepEqual(layerHalves(1), { early: [0], late: [], all: [0] });
  assert.deepEqual(layerHalves(2), { early: [0], late: [1], all: [0, 1] });
  assert.deepEqual(layerHalves(5).early, [0, 1, 2]);
  assert.deepEqual(layerHalves(6).late, [3, 4, 5]);
  const band = curveBand([[0, 0.2, 1], [0, 0.5, 1], [0, 0.8, 1]]);
  assertAllNear(band.mean, [0, 0.5, 1], "mean");
  assert.deepEqual(band.low, [0, 0.2, 1]);
  assert.deepEqual(band.high, [0, 0.8, 1]);
  assert.deepEqual(curveBand([[0.3, 0.4]]), { mean: [0.3, 0.4], low: [0.3, 0.4], high: [0.3, 0.4] });
});

Deno.test("locality_stats: bad inputs throw errors that name the argument", () => {
  const model = createModel({ attention: "vanilla", layers: 2, dModel: 8, heads: 2 }, { log: () => {} });
  const ids = tf.tensor2d([[1, 2, 3]], [1, 3], "int32");
  const a = sampleLocality([0.5, 0.6]);
  const cases: [() => unknown, ErrorConstructor, RegExp][] = [
    [() => uniformLocality(0), RangeError, /n must be an integer >= 1/],
    [() => uniformLocality("4" as unknown as number), TypeError, /n must be a number/],
    [() => uniformLocality(4, { causal: 1 as unknown as boolean }), TypeError, /option causal must be true or false/],
    [() => windowLocality({} as never, ids), TypeError, /model must be a TransformerModel/],
    [() => windowLocality(model, tf.ones([1, 3]) as tf.Tensor2D), TypeError, /ids must be an int32 tf\.Tensor2D/],
    [() => windowLocality(model, ids, { ratios: [1e-9] }), RangeError, /0 or numbers in \[1e-6, 1\], got 1e-9/],
    [() => windowLocality(model, ids, { batchSize: 0 }), RangeError, /option batchSize must be >= 1/],
    [() => poolWindows([]), TypeError, /windows must be a non-empty array/],
    [() => poolWindows(a.windows, { layers: [1] }), RangeError, /layers must hold integers in \[0, 0\].*got 1/],
    [() => poolWindows([[flat(1, 1)], []]), TypeError, /non-empty array of per-layer/],
    [() => localityAucInterval(a, { minus: sampleLocality([0.5]) }), RangeError, /same windows \(2 of n = 4\)/],
    [() => localityAucInterval(a, { curve: "centred" as never }), RangeError, /option curve must be one of/],
    [() => localityAucInterval(a, { resamples: 10 }), RangeError, /resamples/],
    [() => localityAucInterval({} as never), TypeError, /locality must be what windowLocality returns/],
    [() => layerHalves(0), RangeError, /integer >= 1/],
    [() => curveBand([[0, 1], [0]]), RangeError, /curve 1 has 1/],
    [() => curveBand([[0, NaN]]), RangeError, /finite numbers, got NaN at curve 0, point 1/],
  ];
  for (const [f, type, message] of cases) {
    assert.throws(f, (e: unknown) => e instanceof type && message.test(String(e)));
  }
  tf.dispose(ids);
  model.dispose();
});
