import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  attentionMaps,
  diagonalByWindow,
  diagonalExcess,
  diagonalMass,
  layerDiagonalMass,
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

/**
 * Reference near-diagonal mass of one row, straight from the definition: the keys of the row's context (0..i when
 * causal), those within `window` of i, and their share of Σ|w| against the share of keys. null when the row is
 * empty or its window holds its whole context.
 */
function referenceDiagonalRow(row: number[], i: number, window: number, causal: boolean) {
  const context = row.map((_, j) => j).filter((j) => !causal || j <= i);
  const near = context.filter((j) => Math.abs(i - j) <= window);
  const total = context.reduce((s, j) => s + Math.abs(row[j]), 0);
  if (total === 0 || near.length === context.length) return null;
  return { mass: near.reduce((s, j) => s + Math.abs(row[j]), 0) / total, uniform: near.length / context.length };
}

function referenceDiagonal(groups: number[][][], window: number, causal: boolean) {
  const rows = groups.flatMap((w) => w.map((row, i) => referenceDiagonalRow(row, i, window, causal)));
  const counted = rows.filter((r) => r !== null);
  const mass = counted.reduce((s, r) => s + r.mass, 0), uniform = counted.reduce((s, r) => s + r.uniform, 0);
  return { mass, uniform, rows: counted.length };
}

Deno.test("diagonalMass: closed forms for uniform, identity and previous-token attention", () => {
  const n = 10, w = 2;
  // Causal uniform attention: the excess is 0; the counted rows are i = w + 1 .. n − 1, each with share (w + 1)/(i + 1).
  const uniform = tf.tidy(() => {
    const lower = tf.linalg.bandPart(tf.ones([n, n]), -1, 0);
    return tf.div(lower, tf.sum(lower, 1, true)) as tf.Tensor2D;
  });
  let share = 0;
  for (let i = w + 1; i < n; i++) share += (w + 1) / (i + 1);
  const u = diagonalMass(uniform, { window: w, causal: true });
  assertAllNear([u.mass, u.uniform, u.excess], [share / (n - w - 1), share / (n - w - 1), 0], "uniform", 1e-6);
  assert.equal(u.rows, n - w - 1);
  assert.equal(u.coveredRows, w + 1);
  // Identity and next-token attention are all near the diagonal: mass 1, excess 1 − uniform share.
  const eye = tf.eye(n);
  // Previous-token attention: query i on key i − 1 (query 0 on itself).
  const previous = tf.tensor2d(
    Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (j === Math.max(0, i - 1) ? 1 : 0))),
  );
  for (const m of [eye, previous]) {
    const d = diagonalMass(m, { window: w, causal: true });
    assertAllNear([d.mass, d.excess], [1, 1 - share / (n - w - 1)], "on the diagonal", 1e-6);
  }
  // Bidirectional uniform attention over n keys: share (2w + 1)/n inside, fewer at the edges; the excess is 0 again.
  const flat = tf.fill([n, n], 1 / n);
  const f = diagonalMass(flat, { window: w });
  assertAllNear([f.excess], [0], "bidirectional uniform", 1e-7);
  assert.equal(f.rows, n);
  // Attention on the farthest key only: no mass near the diagonal, a negative excess.
  const far = tf.tensor2d(
    Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (j === (i < n / 2 ? n - 1 : 0) ? 1 : 0))),
  );
  assert.equal(diagonalMass(far, { window: w }).mass, 0);
  tf.dispose([uniform, eye, previous, flat, far]);
});

Deno.test("diagonalMass: equals the reference on signed weights with empty rows, per group and pooled", () => {
  for (const causal of [true, false]) {
    for (const window of [0, 1, 3]) {
      const groups = weightsWithEmptyRows(2, 3, 9, 40 + window, (g) => (g % 2 ? [2, 6] : []));
      if (!causal) {
        groups.forEach((w, g) =>
          w.forEach((row, i) => row.forEach((_, j) => (row[j] += j > i && i !== 2 && i !== 6 ? 0.1 * g : 0)))
        );
      }
      const w = tf.tensor4d(groups.flat(2), [2, 3, 9, 9]);
      const got = diagonalMass(w, { window, causal });
      const want = referenceDiagonal(groups, window, causal);
      assert.equal(got.rows, want.rows, `${causal} ${window} rows`);
      assert.equal(got.emptyRows, 3 * 2, "three odd groups with two empty rows each");
      assert.equal(got.rows + got.emptyRows + got.coveredRows, 2 * 3 * 9);
      assertAllNear(
        [got.mass, got.uniform],
        [want.mass / want.rows, want.uniform / want.rows],
        `${causal} ${window}`,
        1e-6,
      );
      got.perGroup.forEach((sums, g) => {
        const one = referenceDiagonal([groups[g]], window, causal);
        assertAllNear([sums.mass, sums.uniform, sums.rows], [one.mass, one.uniform, one.rows], `group ${g}`, 1e-6);
      });
      assertAllNear([diagonalExcess(got.perGroup)], [got.excess], "diagonalExcess of the groups", 1e-12);
      w.dispose();
    }
  }
});

Deno.test("layerDiagonalMass: each window's sums match diagonalMass on its weights, for any batchSize", () => {
  const model = tinyModel("transnormer-t1");
  const u = seededUniform(8);
  const count = 5, n = 12, window = 2;
  const ids = tf.tensor2d(Int32Array.from({ length: count * n }, () => Math.floor(u() * 256)), [count, n], "int32");
  const weights = model.attentionWeights(ids); // per layer [count, h, n, n]
  const arrays = weights.map((w) => w.arraySync());
  tf.dispose(weights);
  const byBatch = [1, 2, count].map((batchSize) => layerDiagonalMass(model, ids, { window, batchSize }));
  let emptySeen = 0;
  arrays.forEach((layerWeights, layer) => {
    const want = referenceDiagonal(layerWeights.flat(1), window, true);
    for (const result of byBatch) {
      const got = result[layer];
      assert.equal(got.variant, model.config.attention[layer].variant);
      assert.equal(got.rows, want.rows);
      assertAllNear(
        [got.mass, got.uniform, got.excess],
        [want.mass / want.rows, want.uniform / want.rows, (want.mass - want.uniform) / want.rows],
        `layer ${layer}`,
        1e-6,
      );
      got.perWindow.forEach((sums, k) => {
        const one = referenceDiagonal(layerWeights[k], window, true);
        assertAllNear(
          [sums.mass, sums.uniform, sums.rows],
          [one.mass, one.uniform, one.rows],
          `layer ${layer} window ${k}`,
          1e-6,
        );
      });
      got.perHead.forEach((head, h) => {
        const one = referenceDiagonal(layerWeights.map((perHead) => perHead[h]), window, true);
        assertAllNear([head.mass * head.rows, head.rows], [one.mass, one.rows], `layer ${layer} head ${h}`, 1e-6);
      });
      assert.equal(got.rows + got.emptyRows + got.coveredRows, count * model.config.heads * n);
    }
    emptySeen += byBatch[0][layer].emptyRows;
  });
  assert.ok(emptySeen > 0, "the relu diag layer of this seed has empty rows");
  // Pooled over the chosen layers, window by window.
  const layers = byBatch[0];
  const early = diagonalByWindow(layers, { layers: [0] });
  assert.deepEqual(early, layers[0].perWindow);
  const both = diagonalByWindow(layers);
  both.forEach((s, k) =>
    assertAllNear(
      [s.mass, s.rows],
      [
        layers[0].perWindow[k].mass + layers[1].perWindow[k].mass,
        layers[0].perWindow[k].rows + layers[1].perWindow[k].rows,
      ],
      `window ${k}`,
      1e-12,
    )
  );
  const total = layers[0].rows + layers[1].rows;
  assertAllNear(
    [diagonalExcess(both)],
    [(layers[0].excess * layers[0].rows + layers[1].excess * layers[1].rows) / total],
    "pooled excess",
    1e-9,
  );
  ids.dispose();
  model.dispose();
});

Deno.test("diagonal mass: bad inputs throw TypeError or RangeError naming the argument", () => {
  const model = tinyModel("vanilla");
  const ids = tf.tensor2d([[1, 2, 3]], [1, 3], "int32");
  const eye = tf.eye(4);
  const layers = layerDiagonalMass(model, ids, { window: 1 });
  const cases: [() => unknown, ErrorConstructor, RegExp][] = [
    [() => diagonalMass(eye, {} as { window: number }), TypeError, /option window is required/],
    [() => diagonalMass(eye, { window: -1 }), RangeError, /option window must be >= 0/],
    [
      () => diagonalMass(eye, { window: 1, side: 2 } as never),
      TypeError,
      /unknown option "side"; valid options are window, causal/,
    ],
    [() => diagonalMass(eye, { window: 1, causal: "yes" } as never), TypeError, /option causal must be true or false/],
    [
      () => diagonalMass(tf.ones([4]), { window: 1 }),
      TypeError,
      /weights must be a float32 tf.Tensor of shape \[n, n\]/,
    ],
    [
      () => diagonalMass(tf.ones([4, 4]), { window: 1, causal: true }),
      RangeError,
      /causal weights must be 0 above the diagonal.*query 0, key 1/,
    ],
    [
      () => diagonalMass(tf.tensor2d([[1, NaN], [0, 1]]), { window: 0 }),
      RangeError,
      /must be finite, got NaN at query 0, key 1/,
    ],
    [
      () => diagonalMass(tf.eye(2), { window: 1, causal: true }),
      RangeError,
      /no row to measure.*smaller window or a longer input/,
    ],
    [() => layerDiagonalMass(model, ids, { window: 2 }), RangeError, /context lies within window = 2 when n = 3/],
    [() => layerDiagonalMass(model, ids, { window: 1, batchSize: 0 }), RangeError, /option batchSize must be >= 1/],
    [
      () => layerDiagonalMass({} as TransformerModel, ids, { window: 1 }),
      TypeError,
      /model must be a TransformerModel/,
    ],
    [() => diagonalExcess([{ mass: 0, uniform: 0, rows: 0 }]), RangeError, /count no row/],
    [() => diagonalExcess("x" as never), TypeError, /parts must be an array/],
    [() => diagonalByWindow(layers, { layers: [2] }), RangeError, /layer indices in 0..1, got 2/],
    [() => diagonalByWindow([] as never), TypeError, /non-empty result of layerDiagonalMass/],
    [() => diagonalByWindow(layers, { early: true } as never), TypeError, /unknown option "early"/],
  ];
  for (const [f, type, message] of cases) {
    tf.tidy(() => void assert.throws(f, (err: Error) => err instanceof type && message.test(err.message)));
  }
  tf.dispose([ids, eye]);
  model.dispose();
});

Deno.test("diagonal mass: no tensors leak", () => {
  const model = tinyModel("transnormer-t1");
  const ids = tf.tensor2d([[5, 4, 3, 2, 1, 0], [6, 7, 8, 9, 10, 11]], [2, 6], "int32");
  const w = tf.tidy(() => tf.relu(randomNormal<tf.Tensor4D>([1, 2, 6, 6], { seed: 2 })));
  const start = tf.memory().numTensors;
  for (let rep = 0; rep < 3; rep++) {
    layerDiagonalMass(model, ids, { window: 1, batchSize: 1 });
    diagonalMass(w, { window: 2 });
    assert.throws(() => diagonalMass(w, { window: 1, causal: true }));
  }
  assert.equal(tf.memory().numTensors, start);
  tf.dispose([ids, w]);
  model.dispose();
});
