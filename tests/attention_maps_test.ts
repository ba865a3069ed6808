import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  attentionMaps,
  layerLocality,
  localityCurve,
  pooledLocalityCurve,
  rowNormalize,
  textWindows,
} from "../lib/diagnostics/mod.ts";
import { createModel, type TransformerModel } from "../lib/models/model.ts";
import { randomNormal, seededUniform } from "../lib/random.ts";
import { assertClose } from "./helpers.ts";

/** Ratios as exact fractions [num, den], so the expected ⌈x·m⌉ is an integer ceiling free of float noise. */
const FRACTIONS: [number, number][] = [[0, 1], [1, 10], [1, 4], [1, 3], [1, 2], [3, 4], [1, 1]];
const RATIOS = FRACTIONS.map(([a, b]) => a / b);

function assertAllNear(actual: number[], expected: number[], what: string, tol = 1e-9) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  actual.forEach((a, i) =>
    assert.ok(Math.abs(a - expected[i]) <= tol, `${what}[${i}]: got ${a}, expected ${expected[i]}`)
  );
}

/** The share of Σ_j |w_ij| held by the k keys among `keys` nearest to i (ties to the left), by sorting. */
function referenceMass(row: number[], i: number, k: number, keys: number[]): number {
  const order = [...keys].sort((a, b) => Math.abs(i - a) - Math.abs(i - b) || a - b);
  const total = row.reduce((s, w) => s + Math.abs(w), 0);
  return order.slice(0, k).reduce((s, j) => s + Math.abs(row[j]), 0) / total;
}

/** Per-row reference values of one query row: curves at FRACTIONS and the exact areas (mean over k of C(k)). */
function referenceRow(row: number[], i: number, causal: boolean) {
  const n = row.length;
  const all = Array.from({ length: n }, (_, j) => j);
  const m = causal ? i + 1 : n;
  const context = all.slice(0, m);
  const mass = (k: number, keys: number[]) => referenceMass(row, i, k, keys);
  let auc = 0;
  for (let k = 1; k <= n; k++) auc += mass(k, all) / n;
  let availableAuc = 0;
  for (let k = 1; k <= m; k++) availableAuc += mass(k, context) / m;
  return {
    curve: FRACTIONS.map(([a, b]) => mass(Math.ceil((a * n) / b), all)),
    availableCurve: FRACTIONS.map(([a, b]) => mass(Math.ceil((a * m) / b), context)),
    auc,
    availableAuc,
  };
}

/** Reference pooled over every non-empty row of a [groups][n][n] array. */
function referencePooled(groups: number[][][], causal: boolean) {
  const rows = groups.flatMap((w) =>
    w.map((row, i) => ({ row, i })).filter(({ row }) => row.some((v) => v !== 0))
      .map(({ row, i }) => referenceRow(row, i, causal))
  );
  const emptyRows = groups.reduce((s, w) => s + w.filter((row) => row.every((v) => v === 0)).length, 0);
  const mean = (pick: (r: typeof rows[number]) => number) => rows.reduce((s, r) => s + pick(r), 0) / rows.length;
  return {
    curve: FRACTIONS.map((_, r) => mean((x) => x.curve[r])),
    availableCurve: FRACTIONS.map((_, r) => mean((x) => x.availableCurve[r])),
    auc: mean((x) => x.auc),
    availableAuc: mean((x) => x.availableAuc),
    rows: rows.length,
    emptyRows,
  };
}

/** Seeded causal float32 [b, h, n, n] weights with negative entries, and the rows `empty(g)` of group g set to 0. */
function weightsWithEmptyRows(b: number, h: number, n: number, seed: number, empty: (g: number) => number[]) {
  const u = seededUniform(seed);
  return Array.from({ length: b * h }, (_, g) => {
    const zeroed = new Set(empty(g));
    return Array.from(
      { length: n },
      (_, i) =>
        Array.from({ length: n }, (_, j) => (j > i || zeroed.has(i) ? 0 : Math.fround((u() - 0.3) * (1 + 3 * u())))),
    );
  });
}

function tinyModel(attention: "transnormer-t1" | "vanilla" | "linear"): TransformerModel {
  return createModel({ attention, layers: 2, dModel: 8, heads: 2, maxLength: 64, seed: 5 }, { log: () => {} });
}

Deno.test("textWindows: windows inside documents, in order, non-overlapping, with the bytes at their starts", () => {
  const u = seededUniform(11);
  const bytes = Uint8Array.from({ length: 2000 }, () => (u() < 0.01 ? 0 : 32 + Math.floor(u() * 90)));
  const { n, starts, ids } = textWindows(bytes, { n: 40, count: 12 });
  assert.equal(n, 40);
  assert.equal(starts.length, 12);
  assert.equal(ids.length, 12 * 40);
  starts.forEach((start, k) => {
    const window = bytes.subarray(start, start + 40);
    assert.ok(!window.includes(0), `window ${k} at ${start} holds the separator`);
    assert.deepEqual(Array.from(ids.subarray(k * 40, (k + 1) * 40)), Array.from(window));
    if (k > 0) assert.ok(start >= starts[k - 1] + 40, `window ${k} overlaps window ${k - 1}`);
    // Each window is the first separator-free one at or after its evenly spaced target (and the previous window).
    const target = Math.max(k > 0 ? starts[k - 1] + 40 : 0, Math.floor((k * (2000 - 40)) / 12));
    for (let s = target; s < start; s++) assert.ok(bytes.subarray(s, s + 40).includes(0), `start ${s} was free`);
  });
  assert.deepEqual(textWindows(bytes, { n: 40, count: 12 }).starts, starts);
  const custom = textWindows(Uint8Array.from([1, 2, 9, 3, 4, 9, 5]), { n: 2, count: 2, separator: 9 });
  assert.deepEqual(custom.starts, [0, 3]);
});

Deno.test("rowNormalize: each row divided by its sum (or Σ|w|), zero divisors leave the row at 0", () => {
  const data = [[[1, 3, 0], [2, -1, -1], [0, 0, 0]], [[0.5, 0.5, 1], [-2, 1, 0], [4, 0, 0]]];
  const w = tf.tensor3d(data);
  const expected = (by: "sum" | "abs") =>
    data.map((m) =>
      m.map((row) => {
        const s = row.reduce((a, v) => a + (by === "sum" ? v : Math.abs(v)), 0);
        return row.map((v) => (s === 0 ? 0 : v / s));
      })
    );
  for (const by of ["sum", "abs"] as const) {
    const got = rowNormalize(w, { by });
    const want = tf.tensor3d(expected(by));
    assertClose(got, want, `rowNormalize ${by}`, { atol: 1e-6, rtol: 0 });
    tf.dispose([got, want]);
  }
  const positive = tf.tidy(() => tf.abs(randomNormal<tf.Tensor4D>([2, 3, 5, 5], { seed: 4 })));
  const sums = tf.tidy(() => tf.sum(rowNormalize(positive), -1));
  const ones = tf.onesLike(sums);
  assertClose(sums, ones, "row sums of a positive matrix", { atol: 1e-6, rtol: 0 });
  tf.dispose([w, positive, sums, ones]);
});

Deno.test("pooledLocalityCurve: equals the sorting reference over non-empty rows, empty rows counted apart", () => {
  const [b, h, n] = [2, 2, 9];
  // Different numbers of empty rows per head, query 0 included, so pooling differs from a mean of head means.
  const empty = (g: number) => [[0, 4], [], [1, 2, 3, 8], [7]][g];
  const groups = weightsWithEmptyRows(b, h, n, 21, empty);
  const w = tf.tensor4d(groups.flat(2), [b, h, n, n]);
  for (const causal of [true, false]) {
    const got = pooledLocalityCurve(w, { ratios: RATIOS, causal });
    const want = referencePooled(groups, causal);
    assertAllNear(got.curve, want.curve, `curve (causal ${causal})`);
    assertAllNear(got.availableCurve, want.availableCurve, `available curve (causal ${causal})`);
    assertAllNear([got.auc, got.availableAuc], [want.auc, want.availableAuc], `areas (causal ${causal})`);
    assert.equal(got.rows, want.rows);
    assert.equal(got.emptyRows, 7);
    assert.deepEqual(got.ratios, RATIOS);
  }
  w.dispose();
});

Deno.test("pooledLocalityCurve: without empty rows it equals localityCurve", () => {
  const groups = weightsWithEmptyRows(1, 3, 11, 8, () => []);
  const w = tf.tensor4d(groups.flat(2), [1, 3, 11, 11]);
  const pooled = pooledLocalityCurve(w, { causal: true });
  const plain = localityCurve(w, { causal: true });
  assertAllNear(pooled.curve, plain.curve, "curve", 1e-12);
  assertAllNear(pooled.availableCurve, plain.availableCurve, "available curve", 1e-12);
  assertAllNear([pooled.auc, pooled.availableAuc], [plain.auc, plain.availableAuc], "areas", 1e-12);
  assert.equal(pooled.emptyRows, 0);
  assert.equal(pooled.rows, 33);
  w.dispose();
});

Deno.test("layerLocality: pooled over windows it matches the reference on each window's weights, for any batchSize", () => {
  const model = tinyModel("transnormer-t1");
  // Relu DiagAttention leaves some queries without mass; make sure the test exercises that.
  const u = seededUniform(3);
  const count = 5;
  const n = 12;
  const ids = tf.tensor2d(Int32Array.from({ length: count * n }, () => Math.floor(u() * 256)), [count, n], "int32");
  const weights = model.attentionWeights(ids);
  const arrays = weights.map((w) => w.arraySync());
  tf.dispose(weights);
  const byBatch = [1, 2, count].map((batchSize) => layerLocality(model, ids, { ratios: RATIOS, batchSize }));
  let emptySeen = 0;
  arrays.forEach((layerWeights, layer) => {
    const groups = layerWeights.flat(1);
    const want = referencePooled(groups, true);
    emptySeen += want.emptyRows;
    for (const result of byBatch) {
      const got = result[layer];
      assert.equal(got.layer, layer);
      assert.equal(got.variant, model.config.attention[layer].variant);
      assertAllNear(got.curve, want.curve, `layer ${layer} curve`, 1e-6);
      assertAllNear(got.availableCurve, want.availableCurve, `layer ${layer} available`, 1e-6);
      assertAllNear([got.auc, got.availableAuc], [want.auc, want.availableAuc], `layer ${layer} areas`, 1e-6);
      assert.equal(got.rows, want.rows);
      assert.equal(got.emptyRows, want.emptyRows);
      got.perHead.forEach((head, hIndex) => {
        const headWant = referencePooled(layerWeights.map((perHead) => perHead[hIndex]), true);
        assert.equal(head.head, hIndex);
        assertAllNear(head.curve, headWant.curve, `layer ${layer} head ${hIndex}`, 1e-6);
        assert.equal(head.rows + head.emptyRows, count * n);
      });
    }
  });
  assert.ok(emptySeen > 0, "the relu diag layer of this seed has empty rows");
  ids.dispose();
  model.dispose();
});

Deno.test("attentionMaps: rowNormalize of the raw weights; softmax rows already sum to 1", () => {
  const ids = tf.tensor2d([[3, 1, 4, 1, 5, 9, 2, 6]], [1, 8], "int32");
  for (const preset of ["transnormer-t1", "vanilla", "linear"] as const) {
    const model = tinyModel(preset);
    const raw = model.attentionWeights(ids);
    for (const normalize of ["sum", "abs", "none"] as const) {
      const maps = attentionMaps(model, ids, { normalize });
      maps.forEach((m, i) => {
        const want = normalize === "none" ? raw[i].clone() : rowNormalize(raw[i], { by: normalize });
        assertClose(m, want, `${preset} layer ${i} ${normalize}`, { atol: 1e-7, rtol: 0 });
        want.dispose();
        // Softmax probabilities and linear attention's normalised kernel are left as they are.
        if (preset !== "transnormer-t1") assertClose(m, raw[i], `${preset} layer ${i} unchanged`, { atol: 1e-5 });
      });
      tf.dispose(maps);
    }
    tf.dispose(raw);
    model.dispose();
  }
  ids.dispose();
});

Deno.test("bad inputs throw errors that name the argument and the fix", () => {
  const model = tinyModel("vanilla");
  const ids = tf.tensor2d([[1, 2]], [1, 2], "int32");
  const eye = tf.eye(3);
  const bytes = Uint8Array.from([1, 2, 0, 3]);
  const cases: [() => unknown, RegExp][] = [
    [() => textWindows([1, 2] as unknown as Uint8Array, { n: 1, count: 1 }), /bytes must be a Uint8Array/],
    [() => textWindows(bytes, { count: 1 } as { n: number; count: number }), /option n is required/],
    [() => textWindows(bytes, { n: 2, count: 0 }), /option count must be >= 1/],
    [() => textWindows(bytes, { n: 2.5, count: 1 }), /option n must be an integer/],
    [() => textWindows(bytes, { n: 2, count: 3 }), /only 1 windows of n = 2 bytes.*count = 3.*fewer or shorter/],
    [() => textWindows(bytes, { n: 1, count: 1, stride: 2 } as never), /unknown option "stride"/],
    [() => rowNormalize(eye, { by: "max" as "sum" }), /option by must be one of "sum", "abs"/],
    [() => rowNormalize(tf.ones([3]), {}), /weights must be a float32 tf.Tensor with queries and keys/],
    [() => pooledLocalityCurve(eye, { ratios: [0, 1e-9] }), /ratios must hold 0 or numbers in \[1e-6, 1\].*index 1/],
    [() => pooledLocalityCurve(eye, { ratios: [] }), /non-empty array/],
    [() => pooledLocalityCurve(eye, { causal: 1 } as never), /option causal must be true or false/],
    [() => pooledLocalityCurve(tf.ones([2, 3, 3]) as tf.Tensor), /\[n, n\] or \[batch, heads, n, n\]/],
    [() => pooledLocalityCurve(tf.zeros([2, 2])), /every one of the 2 query rows is all zeros/],
    [() => pooledLocalityCurve(tf.ones([2, 2]), { causal: true }), /causal weights must be 0 above the diagonal/],
    [() => layerLocality({} as TransformerModel, ids), /model must be a TransformerModel/],
    [() => layerLocality(model, tf.ones([1, 2]) as tf.Tensor2D), /ids must be an int32 tf.Tensor2D.*tf.tensor2d/],
    [() => layerLocality(model, ids, { batchSize: 0 }), /option batchSize must be >= 1/],
    [() => layerLocality(model, ids, { window: 2 } as never), /unknown option "window"; valid options are ratios/],
    [() => attentionMaps(model, ids, { normalize: "rows" as "sum" }), /option normalize must be one of/],
  ];
  for (const [f, message] of cases) tf.tidy(() => void assert.throws(f, message));
  tf.dispose([ids, eye]);
  model.dispose();
});

Deno.test("no tensors leak: the count returns to its start after repeated calls", () => {
  const model = tinyModel("transnormer-t1");
  const ids = tf.tensor2d([[5, 4, 3, 2, 1, 0], [6, 7, 8, 9, 10, 11], [1, 1, 2, 3, 5, 8]], [3, 6], "int32");
  const w = tf.tidy(() => tf.relu(randomNormal<tf.Tensor4D>([1, 2, 6, 6], { seed: 2 })));
  const start = tf.memory().numTensors;
  for (let rep = 0; rep < 3; rep++) {
    layerLocality(model, ids, { batchSize: 2 });
    tf.dispose(attentionMaps(model, ids));
    tf.dispose(attentionMaps(model, ids, { normalize: "none" }));
    rowNormalize(w).dispose();
    pooledLocalityCurve(w);
    assert.throws(() => pooledLocalityCurve(w, { causal: true }));
    assert.throws(() => tf.tidy(() => void pooledLocalityCurve(tf.zeros([2, 2]))));
  }
  assert.equal(tf.memory().numTensors, start);
  tf.dispose([ids, w]);
  model.dispose();
});
