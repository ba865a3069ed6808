import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  attentionView,
  cropMatrix,
  downsampleMatrix,
  type GridCell,
  heatmapGridPlot,
  heatmapRows,
  logColorDomain,
  type MatrixCells,
  matrixCells,
} from "../lib/diagnostics/mod.ts";
import { JUPYTER_DISPLAY } from "../lib/figures/display.ts";
import { toSvgString } from "../lib/figures/svg.ts";
import { createModel } from "../lib/models/model.ts";
import { randomNormal } from "../lib/random.ts";
import "./helpers.ts";

function assertNear(actual: number, expected: number, what: string, tol = 1e-9) {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: got ${actual}, expected ${expected}`);
}

/** Mean of the original entries in rows [r0, r1) × columns [c0, c1), read straight from the nested array. */
function blockMean(m: number[][], [r0, r1]: [number, number], [c0, c1]: [number, number]): number {
  let sum = 0;
  for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) sum += m[r][c];
  return sum / ((r1 - r0) * (c1 - c0));
}

/** Every cell must equal the mean of the original block its ranges name. */
function assertCellsMatch(cells: MatrixCells, original: number[][], what: string) {
  cells.values.forEach((row, r) =>
    row.forEach((v, c) =>
      assertNear(v, blockMean(original, cells.rowRanges[r], cells.colRanges[c]), `${what} cell ${r},${c}`, 1e-6)
    )
  );
}

/** Area-weighted mean of the cells. */
function weightedMean(cells: MatrixCells): number {
  let sum = 0;
  let area = 0;
  cells.values.forEach((row, r) =>
    row.forEach((v, c) => {
      const a = (cells.rowRanges[r][1] - cells.rowRanges[r][0]) * (cells.colRanges[c][1] - cells.colRanges[c][0]);
      sum += a * v;
      area += a;
    })
  );
  return sum / area;
}

const seeded = (n: number, seed: number) => randomNormal<tf.Tensor2D>([n, n], { seed });

Deno.test("matrixCells: a tensor read asynchronously gives the cells the synchronous read gives; bad input is named", async () => {
  const w = tf.tensor2d([[0.5, 0.25, 0.25], [0, 1, 0]]);
  const cells = await matrixCells(w);
  assert.deepEqual(cells.values, [[0.5, 0.25, 0.25], [0, 1, 0]]);
  assert.deepEqual(cells.rowRanges, [[0, 1], [1, 2]]);
  assert.deepEqual(heatmapRows(cells), heatmapRows(w));
  assert.deepEqual(cropMatrix(cells, { start: 1, size: 1 }), cropMatrix(w, { start: 1, size: 1 }));
  const [cube, bad] = [tf.ones([2, 2, 2]), tf.tensor2d([[1, NaN]])];
  await assert.rejects(() => matrixCells(cube as never), /matrixCells: matrix must be a rank-2/);
  await assert.rejects(() => matrixCells(bad), /matrixCells: matrix must be finite, got NaN/);
  await assert.rejects(() => matrixCells([[1]] as never), /matrixCells: matrix must be a tf.Tensor2D/);
  tf.dispose([w, cube, bad]);
});

Deno.test("downsampleMatrix: 2×2 blocks of a small known matrix", () => {
  const w = tf.tensor2d([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]);
  const out = downsampleMatrix(w, { size: 2 });
  // (1 + 2 + 5 + 6)/4 = 3.5, (3 + 4 + 7 + 8)/4 = 5.5, ...
  assert.deepEqual(out.values, [[3.5, 5.5], [11.5, 13.5]]);
  assert.deepEqual(out.rowRanges, [[0, 2], [2, 4]]);
  assert.deepEqual(out.colRanges, [[0, 2], [2, 4]]);
  // size 1: the mean of everything, (1 + 16)/2.
  assert.deepEqual(downsampleMatrix(w, { size: 1 }).values, [[8.5]]);
  w.dispose();
});

Deno.test("downsampleMatrix: divisible n keeps the plain mean; any n keeps the area-weighted mean", () => {
  for (const [n, size] of [[12, 4], [12, 5], [7, 3], [10, 7], [5, 5]]) {
    const w = seeded(n, n * 10 + size);
    const original = w.arraySync();
    const mean = tf.tidy(() => tf.mean(w).dataSync()[0]);
    const out = downsampleMatrix(w, { size });
    w.dispose();
    assert.equal(out.values.length, size);
    // Bins are contiguous, cover 0..n once, and hold ⌊n/size⌋ or ⌈n/size⌉ tokens.
    assert.equal(out.rowRanges[0][0], 0);
    assert.equal(out.rowRanges[size - 1][1], n);
    out.rowRanges.forEach(([a, b], i) => {
      if (i > 0) assert.equal(a, out.rowRanges[i - 1][1]);
      assert.ok(b - a === Math.floor(n / size) || b - a === Math.ceil(n / size), `bin ${i} of n=${n}: ${b - a}`);
    });
    assertCellsMatch(out, original, `n=${n} size=${size}`);
    assertNear(weightedMean(out), mean, `weighted mean n=${n} size=${size}`, 1e-6);
    if (n % size === 0) {
      const plain = out.values.flat().reduce((a, b) => a + b) / (size * size);
      assertNear(plain, mean, `plain mean n=${n} size=${size}`, 1e-6);
    }
  }
});

Deno.test("downsampleMatrix: a size at or above n leaves the matrix as is; two nested steps equal one", () => {
  const w = seeded(8, 3);
  const original = w.arraySync();
  for (const size of [8, 100]) {
    const same = downsampleMatrix(w, { size });
    same.values.forEach((row, r) => row.forEach((v, c) => assert.equal(v, original[r][c])));
  }
  const twoSteps = downsampleMatrix(downsampleMatrix(w, { size: 4 }), { size: 2 });
  const oneStep = downsampleMatrix(w, { size: 2 });
  assert.deepEqual(twoSteps.rowRanges, oneStep.rowRanges);
  twoSteps.values.flat().forEach((v, i) => assertNear(v, oneStep.values.flat()[i], `nested ${i}`, 1e-6));
  // Uneven bins (7 → 3) pooled again stay exact token means thanks to the area weights.
  const u = seeded(7, 4);
  const uneven = downsampleMatrix(downsampleMatrix(u, { size: 3 }), { size: 2 });
  assertCellsMatch(uneven, u.arraySync(), "uneven nested");
  tf.dispose([w, u]);
});

Deno.test("cropMatrix: the window's values and token ranges, then downsampled", () => {
  const n = 10;
  const original = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => 100 * i + j));
  const w = tf.tensor2d(original);
  const crop = cropMatrix(w, { start: 2, size: 4 });
  assert.deepEqual(crop.values[0], [202, 203, 204, 205]);
  assert.deepEqual(crop.values[3], [502, 503, 504, 505]);
  assert.deepEqual(crop.rowRanges, [[2, 3], [3, 4], [4, 5], [5, 6]]);
  const pooled = downsampleMatrix(crop, { size: 2 });
  assert.deepEqual(pooled.rowRanges, [[2, 4], [4, 6]]);
  assertCellsMatch(pooled, original, "crop then pool");
  // Cropping pooled cells counts in cells and keeps their token ranges.
  const cropPooled = cropMatrix(downsampleMatrix(w, { size: 5 }), { start: 1, size: 2 });
  assert.deepEqual(cropPooled.colRanges, [[2, 4], [4, 6]]);
  assertCellsMatch(cropPooled, original, "pool then crop");
  assert.deepEqual(cropMatrix(w, { size: 10 }).values, original);
  w.dispose();
});

Deno.test("heatmapRows: one record per cell, row by row, with token ranges", () => {
  const w = tf.tensor2d([[1, 2, 3], [4, 5, 6], [7, 8, 9]]);
  const rows = heatmapRows(w);
  assert.equal(rows.length, 9);
  assert.deepEqual(rows[5], { row: 1, col: 2, value: 6, rowStart: 1, rowEnd: 2, colStart: 2, colEnd: 3 });
  rows.forEach((cell, k) => {
    assert.equal(cell.row, Math.floor(k / 3));
    assert.equal(cell.col, k % 3);
  });
  const pooled = heatmapRows(downsampleMatrix(w, { size: 2 }));
  // Bins of 3 into 2: [0, 1) and [1, 3). Cell (1, 1) is the mean of 5, 6, 8, 9.
  assert.deepEqual(pooled[3], { row: 1, col: 1, value: 7, rowStart: 1, rowEnd: 3, colStart: 1, colEnd: 3 });
  w.dispose();
});

Deno.test("bad inputs: crop bounds, options and shapes throw errors that say what to do", () => {
  const w = tf.ones([6, 6]) as tf.Tensor2D;
  const cases: [() => unknown, RegExp][] = [
    [() => cropMatrix(w, { start: 4, size: 3 }), /4 \+ 3 = 7 exceeds the matrix's 6 rows.*start <= 3 or size <= 2/],
    [() => cropMatrix(w, { start: -1, size: 2 }), /option start must be >= 0/],
    [() => cropMatrix(w, { start: 0, size: 0 }), /option size must be >= 1/],
    [() => cropMatrix(w, { start: 1.5, size: 2 }), /option start must be an integer/],
    [() => cropMatrix(w, {} as { size: number }), /option size is required/],
    [() => cropMatrix(w, { size: 2, end: 3 } as { size: number }), /unknown option "end"/],
    [() => downsampleMatrix(w, { size: 0 }), /option size must be >= 1/],
    [() => downsampleMatrix(w, { size: "8" as unknown as number }), /option size must be a finite number/],
    [() => downsampleMatrix(tf.ones([1, 1, 6, 6]) as unknown as tf.Tensor2D), /rank-2.*pick one head/],
    [() => downsampleMatrix(tf.ones([2, 2], "int32") as tf.Tensor2D), /float32/],
    [() => downsampleMatrix(tf.zeros([0, 3]) as tf.Tensor2D), /at least one row/],
    [() => heatmapRows(tf.tensor2d([[1, NaN]])), /finite, got NaN at row 0, column 1/],
    [() => heatmapRows({ values: [[1]], rowRanges: [] } as unknown as MatrixCells), /tf\.Tensor2D or the/],
    [
      () => heatmapRows({ values: [[1, 2]], rowRanges: [[0, 1]], colRanges: [[0, 1]] }),
      /\[rowRanges\.length, colRanges\.length\] = \[1, 1\]/,
    ],
  ];
  for (const [f, message] of cases) tf.tidy(() => void assert.throws(f, message));
  w.dispose();
});

Deno.test("no tensors leak: the count returns to its start after repeated calls", () => {
  const w = seeded(16, 1);
  const start = tf.memory().numTensors;
  for (let rep = 0; rep < 3; rep++) {
    heatmapRows(downsampleMatrix(cropMatrix(w, { start: 2, size: 12 }), { size: 5 }));
    assert.throws(() => cropMatrix(w, { start: 10, size: 12 }));
  }
  assert.equal(tf.memory().numTensors, start);
  w.dispose();
});

const tinyLm = () =>
  createModel({ attention: "vanilla", layers: 2, dModel: 8, heads: 2, maxLength: 64, seed: 3 }, { log: () => {} });

Deno.test("attentionView: the heatmap cells are block means of |w| / Σ|w| of the chosen head; uniform curves in closed form", () => {
  const model = tinyLm();
  const text = "attention is all you need";
  const view = attentionView(model, text, { layer: 1, head: 1, n: 12, cells: 4, label: "tiny" });
  assert.equal(view.n, 12);
  assert.equal(view.title, "tiny · layer 1 · softmax · head 1");
  // The reference: the same head's softmax rows read straight from attentionWeights on the first 12 bytes.
  const ids = tf.tensor2d([Array.from(new TextEncoder().encode(text).subarray(0, 12))], [1, 12], "int32");
  const weights = model.attentionWeights(ids);
  const head = (weights[1].arraySync() as number[][][][])[0][1];
  tf.dispose([ids, ...weights]);
  const normalised = head.map((row) => row.map((v) => Math.abs(v) / row.reduce((a, b) => a + Math.abs(b), 0)));
  const cells = view.data.filter((d) => d.part === "heatmap");
  // Zero cells (above the causal diagonal) are left out of the data; every kept one is a 3 × 3 block mean.
  for (const c of cells) {
    const q = c.query as number, k = c.key as number;
    assertNear(c.value as number, blockMean(normalised, [q, q + 3], [k, k + 3]), `cell ${q},${k}`, 1e-6);
  }
  assert.equal(cells.length, 10, "4 × 4 cells of a causal matrix: the 6 above the diagonal are 0");
  // Uniform causal attention: the available-context curve is (1/n) Σ_i ⌈x·(i + 1)⌉ / (i + 1).
  const m = 12;
  view.uniform.ratios.forEach((x, r) => {
    let want = 0;
    for (let i = 0; i < m; i++) want += Math.min(i + 1, Math.ceil(x * (i + 1) - 1e-9)) / (i + 1) / m;
    assertNear(view.uniform.availableCurve[r], want, `uniform at x = ${x}`, 1e-6);
  });
  assertNear(view.locality.availableCurve.at(-1)!, 1, "all the mass at x = 1");
  assert.ok(view.caption.startsWith("n = 12 tokens."));
  assert.ok("image/svg+xml" in view[JUPYTER_DISPLAY]());
  model.dispose();
});

Deno.test("attentionView: save writes the figure with its data; bad options throw and name the fix", async () => {
  const model = tinyLm();
  const dir = await Deno.makeTempDir();
  try {
    const saved = await attentionView(model, "hello world").save("view_test", { outDir: dir });
    assert.ok((await Deno.readTextFile(saved.paths.csv!)).startsWith("part,"));
    assert.ok((await Deno.stat(saved.paths.png)).size > 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const cases: [() => unknown, ErrorConstructor, RegExp][] = [
    [
      () => attentionView(model, "hello", { preset: "x" } as never),
      TypeError,
      /unknown option "preset"; valid options are layer, head, n, cells, label/,
    ],
    [() => attentionView(model, "hello", { layer: 2 }), RangeError, /option layer must be <= 1, got 2/],
    [() => attentionView(model, "hello", { head: 0.5 }), RangeError, /option head must be an integer/],
    [() => attentionView(model, "hello", { label: 3 } as never), TypeError, /option label must be a string/],
    [() => attentionView(model, 42 as never), TypeError, /text must be a string or a Uint8Array/],
    [() => attentionView(model, "h"), RangeError, /at least 2 bytes, got 1/],
    [() => attentionView({} as never, "hello"), TypeError, /model must be a TransformerModel/],
  ];
  for (const [f, type, message] of cases) {
    assert.throws(f, (err: Error) => err instanceof type && message.test(err.message));
  }
  model.dispose();
});

Deno.test("heatmapGridPlot: one raster per model and layer on one log scale", () => {
  const w = tf.tensor2d([[1, 0], [0.25, 0.75]]);
  const cells: GridCell[] = ["vanilla", "linear"].flatMap((model) =>
    ["layer 0", "layer 1"].flatMap((layer) => heatmapRows(w).map((c) => ({ ...c, model, layer, variant: "softmax" })))
  );
  w.dispose();
  const svg = toSvgString(heatmapGridPlot(cells, { title: "Grid", cells: 2, tokenOf: (c) => 10 * c }));
  assert.equal(svg.match(/<image/g)?.length, 4 + 1, "four panels and the colour legend's ramp");
  assert.ok(svg.includes(">Grid<"));
  assert.deepEqual(logColorDomain(cells), [1e-4, 1]);
  const cases: [() => unknown, ErrorConstructor, RegExp][] = [
    [() => heatmapGridPlot([], { title: "t", cells: 2 }), TypeError, /cells must be a non-empty array/],
    [() => heatmapGridPlot(cells, { cells: 2 } as never), TypeError, /options title \(a string\) and cells/],
    [() => heatmapGridPlot(cells, { title: "t", cells: 0 }), RangeError, /option cells must be >= 1/],
    [() => heatmapGridPlot(cells, { title: "t", cells: 2, size: 3 } as never), TypeError, /unknown option "size"/],
    [() => logColorDomain([{ value: 0 }]), RangeError, /positive finite value/],
  ];
  for (const [f, type, message] of cases) {
    assert.throws(f, (err: Error) => err instanceof type && message.test(err.message));
  }
});

Deno.test("attentionView: no tensors leak", () => {
  const model = tinyLm();
  const start = tf.memory().numTensors;
  for (let rep = 0; rep < 3; rep++) {
    attentionView(model, "some text to read", { cells: 4 });
    assert.throws(() => attentionView(model, "x"));
  }
  assert.equal(tf.memory().numTensors, start);
  model.dispose();
});
