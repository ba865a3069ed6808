/**
 * The async twins of the diagnostics and of the RNN benchmark (lib/diagnostics, lib/bench/rnn.ts), on the cpu
 * backend: each gives exactly (deep equality) what its sync twin gives on the same seeded input, since both run the
 * same arithmetic on the one read they make; each rejects (never throws synchronously) on bad input, naming itself;
 * and every tensor is freed. The read plans of lib/read.ts: one read, typed errors, nothing left behind.
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  attentionEntropy,
  attentionEntropyAsync,
  attentionView,
  attentionViewAsync,
  closedFormDeviation,
  closedFormDeviationAsync,
  diagonalMass,
  diagonalMassAsync,
  forEachAttentionBatch,
  forEachAttentionBatchAsync,
  gradientSweep,
  gradientSweepAsync,
  layerDiagonalMass,
  layerDiagonalMassAsync,
  layerGradientNorms,
  layerGradientNormsAsync,
  layerJacobianNorms,
  layerJacobianNormsAsync,
  layerLocality,
  layerLocalityAsync,
  localityCurve,
  localityCurveAsync,
  localityCurveOfValues,
  maxLinearBoundRatio,
  maxLinearBoundRatioAsync,
  maxScoreGradient,
  maxScoreGradientAsync,
  meanAttentionDistance,
  meanAttentionDistanceAsync,
  pooledLocalityCurve,
  pooledLocalityCurveAsync,
  pooledLocalityOfValues,
  windowLocality,
  windowLocalityAsync,
  windowMass,
  windowMassAsync,
} from "../lib/diagnostics/mod.ts";
import { decodeTimes, decodeTimesAsync, formAgreement, formAgreementAsync } from "../lib/bench/mod.ts";
import { createModel, type TransformerModel } from "../lib/models/model.ts";
import { randomNormal, seededUniform } from "../lib/random.ts";
import { readPlan, readPlanAsync } from "../lib/read.ts";
import { initBackend } from "../lib/backend.ts";
import { seededQKV } from "./helpers.ts";

await initBackend({ backend: "cpu", quiet: true });

/** Runs `fn` and asserts that the tensor count is back where it started. */
async function noLeak<T>(fn: () => Promise<T>): Promise<T> {
  const start = tf.memory().numTensors;
  const out = await fn();
  assert.equal(tf.memory().numTensors, start, `${tf.memory().numTensors - start} tensors leaked`);
  return out;
}

/** Seeded attention weights [b, h, n, n]: softmax of N(0, 4) scores, lower-triangular when causal. */
function seededWeights(seed: number, o: { b: number; h: number; n: number; causal: boolean }): tf.Tensor4D {
  return tf.tidy(() => {
    const scores = randomNormal<tf.Tensor4D>([o.b, o.h, o.n, o.n], { seed, std: 2 }); // [b, h, n, n]
    if (!o.causal) return tf.softmax(scores);
    const mask = tf.linalg.bandPart(tf.ones([o.n, o.n]), -1, 0); // [n, n]
    const p = tf.mul(tf.softmax(tf.add(scores, tf.mul(tf.sub(mask, 1), 1e9))), mask); // [b, h, n, n]
    return p as tf.Tensor4D;
  });
}

/** Weights [1, 2, n, n] with the rows in `empty` all zero (relu DiagAttention's queries that attend to nothing). */
function weightsWithEmptyRows(n: number, empty: number[]): tf.Tensor4D {
  const u = seededUniform(3);
  const values = Array.from({ length: 2 * n * n }, (_, f) => {
    const i = Math.floor(f / n) % n, j = f % n;
    return j > i || empty.includes(i) ? 0 : 0.1 + u();
  });
  return tf.tensor4d(values, [1, 2, n, n]);
}

function tinyModel(attention: "transnormer-t1" | "transnormer-t2" | "vanilla" | "linear"): TransformerModel {
  return createModel({ attention, layers: 2, dModel: 8, heads: 2, maxLength: 64, seed: 5 }, { log: () => {} });
}

function seededIds(count: number, n: number, seed: number): tf.Tensor2D {
  const u = seededUniform(seed);
  return tf.tensor2d(Array.from({ length: count * n }, () => Math.floor(u() * 256)), [count, n], "int32");
}

Deno.test("locality twins: the async forms equal the sync forms on seeded weights", async () => {
  for (const causal of [false, true]) {
    const w = seededWeights(causal ? 7 : 8, { b: 2, h: 3, n: 12, causal });
    const options = { ratios: [0, 0.1, 0.25, 0.5, 1], causal };
    await noLeak(async () => {
      assert.deepStrictEqual(await localityCurveAsync(w, options), localityCurve(w, options));
      assert.deepStrictEqual(await attentionEntropyAsync(w), attentionEntropy(w));
      assert.deepStrictEqual(await meanAttentionDistanceAsync(w), meanAttentionDistance(w));
      assert.deepStrictEqual(await windowMassAsync(w, { window: 2 }), windowMass(w, { window: 2 }));
      assert.deepStrictEqual(await pooledLocalityCurveAsync(w, options), pooledLocalityCurve(w, options));
      assert.deepStrictEqual(
        await diagonalMassAsync(w, { window: 2, causal }),
        diagonalMass(w, { window: 2, causal }),
      );
    });
    // The values' forms, on the same numbers read once by hand.
    const values = w.dataSync();
    assert.deepStrictEqual(localityCurveOfValues(values, w.shape, options), localityCurve(w, options));
    assert.deepStrictEqual(pooledLocalityOfValues(values, w.shape, options), pooledLocalityCurve(w, options));
    w.dispose();
  }
});

Deno.test("pooled and diagonal twins: rows without mass are left out alike", async () => {
  const w = weightsWithEmptyRows(8, [2, 5]);
  await noLeak(async () => {
    const pooled = await pooledLocalityCurveAsync(w, { causal: true });
    assert.deepStrictEqual(pooled, pooledLocalityCurve(w, { causal: true }));
    // Two heads × two empty queries.
    assert.equal(pooled.emptyRows, 4);
    const diagonal = await diagonalMassAsync(w, { window: 1, causal: true });
    assert.deepStrictEqual(diagonal, diagonalMass(w, { window: 1, causal: true }));
    assert.equal(diagonal.emptyRows, 4);
  });
  w.dispose();
});

Deno.test("model walks: layerLocality, layerDiagonalMass, windowLocality and forEachAttentionBatch twins agree", async () => {
  // transnormer-t1's relu DiagAttention leaves some rows without mass: the pooled paths are exercised too.
  for (const preset of ["transnormer-t1", "vanilla"] as const) {
    const model = tinyModel(preset);
    const ids = seededIds(5, 16, 9);
    await noLeak(async () => {
      const o = { ratios: [0, 0.25, 1], batchSize: 2 };
      assert.deepStrictEqual(await layerLocalityAsync(model, ids, o), layerLocality(model, ids, o));
      assert.deepStrictEqual(await windowLocalityAsync(model, ids, o), windowLocality(model, ids, o));
      const d = { window: 2, batchSize: 2 };
      assert.deepStrictEqual(await layerDiagonalMassAsync(model, ids, d), layerDiagonalMass(model, ids, d));
      const seen: string[] = [], seenAsync: string[] = [];
      forEachAttentionBatch(model, ids, { batchSize: 2, visit: (w, from) => seen.push(`${from}:${w[0].shape}`) });
      await forEachAttentionBatchAsync(model, ids, {
        batchSize: 2,
        visit: async (w, from) => {
          await w[0].data();
          seenAsync.push(`${from}:${w[0].shape}`);
        },
      });
      assert.deepStrictEqual(seenAsync, seen);
      assert.deepStrictEqual(seen, ["0:2,2,16,16", "2:2,2,16,16", "4:1,2,16,16"]);
    });
    tf.dispose(ids);
    model.dispose();
  }
});

Deno.test("attentionViewAsync equals attentionView: figure data, curves and caption; bad options reject alike", async () => {
  // transnormer-t1's layer 0 is relu DiagAttention (rows without mass); vanilla's is causal softmax.
  for (const [preset, layer] of [["transnormer-t1", 0], ["vanilla", 1]] as const) {
    const model = tinyModel(preset);
    const o = { layer, head: 1, cells: 6, label: preset };
    await noLeak(async () => {
      const view = await attentionViewAsync(model, "The quick brown fox jumps", o);
      const same = attentionView(model, "The quick brown fox jumps", o);
      const { figure: _a, save: _b, ...mine } = view;
      const { figure: _c, save: _d, ...theirs } = same;
      assert.deepStrictEqual(JSON.parse(JSON.stringify(mine)), JSON.parse(JSON.stringify(theirs)));
      assert.equal(view.data.length, same.data.length);
      assert.ok(view.data.some((r) => r.part === "heatmap") && view.data.some((r) => r.part === "locality"));
      await assert.rejects(
        () => attentionViewAsync(model, "hello", { layer: 2 }),
        /attentionViewAsync: option layer must be <= 1, got 2/,
      );
    });
    model.dispose();
  }
});

Deno.test("forEachAttentionBatchAsync frees a batch whose visit rejects, and rejects with its error", async () => {
  const model = tinyModel("vanilla");
  const ids = seededIds(3, 4, 2);
  await noLeak(async () => {
    await assert.rejects(
      () =>
        forEachAttentionBatchAsync(model, ids, {
          batchSize: 2,
          visit: () => Promise.reject(new RangeError("stop here")),
        }),
      /stop here/,
    );
  });
  ids.dispose();
  model.dispose();
});

Deno.test("score twins: maxScoreGradient, maxLinearBoundRatio and closedFormDeviation equal their sync forms", async () => {
  const scores = tf.tidy(() => tf.exp(randomNormal<tf.Tensor2D>([6, 10], { seed: 4, std: 3 }))); // [6, 10] > 0
  const vector = tf.tidy(() => tf.exp(randomNormal<tf.Tensor1D>([7], { seed: 5 }))); // [7] > 0
  await noLeak(async () => {
    for (const kind of ["softmax", "linear"] as const) {
      assert.deepStrictEqual(await maxScoreGradientAsync(scores, kind), maxScoreGradient(scores, kind));
      assert.deepStrictEqual(await maxScoreGradientAsync(vector, kind), maxScoreGradient(vector, kind));
      assert.deepStrictEqual(await closedFormDeviationAsync(scores, kind), closedFormDeviation(scores, kind));
    }
    assert.deepStrictEqual(await maxLinearBoundRatioAsync(scores), maxLinearBoundRatio(scores));
    assert.deepStrictEqual(await maxLinearBoundRatioAsync(vector), maxLinearBoundRatio(vector));
  });
  // Two equal scores: the softmax bound 1/4 and the linear bound ratio 1 are reached exactly (closed forms).
  const equal = tf.tensor1d([2, 2]);
  assert.equal(await maxScoreGradientAsync(equal, "softmax"), 0.25);
  assert.ok(Math.abs(await maxLinearBoundRatioAsync(equal) - 1) < 1e-6);
  tf.dispose([scores, vector, equal]);
});

Deno.test("score twins check the values they read as the sync forms do, and reject", async () => {
  const negative = tf.tensor2d([[1, -1]]);
  const zero = tf.tensor2d([[0, 1]]);
  const nonFinite = tf.tensor1d([1, NaN]);
  await noLeak(async () => {
    assert.throws(
      () => maxScoreGradient(negative, "linear"),
      /maxScoreGradient: linear attention needs f\(s\) = s >= 0/,
    );
    await assert.rejects(
      () => maxScoreGradientAsync(negative, "linear"),
      /maxScoreGradientAsync: linear attention needs f\(s\) = s >= 0/,
    );
    await assert.rejects(() => closedFormDeviationAsync(zero, "linear"), /closedFormDeviationAsync: .* s > 0/);
    await assert.rejects(() => maxLinearBoundRatioAsync(nonFinite), /must be finite, got NaN at flat index 1/);
    await assert.rejects(() => maxScoreGradientAsync(negative, "exp" as never), /kind must be "softmax" or "linear"/);
    // A bad argument rejects the promise rather than throwing before it exists.
    const pending = maxScoreGradientAsync("scores" as never, "softmax");
    assert.ok(pending instanceof Promise);
    await assert.rejects(pending, /maxScoreGradientAsync: scores must be a float32 tf.Tensor/);
  });
  tf.dispose([negative, zero, nonFinite]);
});

Deno.test("layer twins: layerJacobianNorms and layerGradientNorms equal their sync forms", async () => {
  const qkv = seededQKV({ b: 1, h: 2, n: 5, dk: 3, dv: 3, seed: 21 });
  await noLeak(async () => {
    for (const variant of ["softmax", "norm", "linear"] as const) {
      assert.deepStrictEqual(
        await layerJacobianNormsAsync(qkv, { variant }),
        layerJacobianNorms(qkv, { variant }),
      );
      assert.deepStrictEqual(
        await layerGradientNormsAsync(qkv, { variant, seed: 3 }),
        layerGradientNorms(qkv, { variant, seed: 3 }),
      );
    }
    await assert.rejects(() => layerGradientNormsAsync(qkv, { variant: "nope" } as never), /option variant must be/);
  });
  tf.dispose([qkv.q, qkv.k, qkv.v]);
});

Deno.test("gradientSweepAsync equals gradientSweep, score level included, on both sweeps", async () => {
  const setups = [
    { label: "relu", variant: "linear" as const, variantOptions: { featureMap: "relu" } },
    { label: "norm", variant: "norm" as const },
    { label: "softmax", variant: "softmax" as const },
  ];
  const shape = { batch: 1, heads: 2, n: 6, d: 4 };
  await noLeak(async () => {
    for (const [sweep, values] of [["scale", [0.05, 1, 8]], ["shift", [0, 3, 40]]] as const) {
      const o = { sweep, values, seeds: [0, 1], shape };
      const got = await gradientSweepAsync(setups, o);
      assert.deepStrictEqual(got, gradientSweep(setups, o));
      assert.equal(got.layers.length, 2 * 3 * 3);
      assert.equal(got.scores.length, 2 * 3);
    }
  });
  // relu linear attention is scale-invariant, so its gradient is exactly ∝ 1/c (closed form).
  const { layers } = await gradientSweepAsync([setups[0]], { sweep: "scale", values: [0.1, 1], seeds: [2], shape });
  assert.ok(Math.abs(layers[0].norm / layers[1].norm - 10) < 1e-3);
  await assert.rejects(() => gradientSweepAsync(setups, { sweep: "scale", values: [], seeds: [0] }), TypeError);
});

Deno.test("formAgreementAsync equals formAgreement; decodeTimesAsync steps the sessions as decodeTimes does", async () => {
  const model = tinyModel("transnormer-t2");
  await noLeak(async () => {
    const ids = [5, 200, 17, 42, 99, 3, 64, 128];
    const rows = await formAgreementAsync(model, ids);
    assert.deepStrictEqual(rows, formAgreement(model, ids));
    assert.deepStrictEqual(rows.map((r) => r.layer), ["0", "1", "logits"]);
    assert.ok(rows.every((r) => r.maxOutput > 0 && r.recurrentVsParallel < 1e-4 * r.maxOutput));
    await assert.rejects(() => formAgreementAsync(model, []), /formAgreementAsync: ids is empty/);

    const tokens = Array.from({ length: 64 }, (_, i) => (7 * i) % 256);
    const specs = [
      { name: "kv", model, positions: [4, 12] },
      { name: "none", model, cache: "none" as const, positions: [8] },
    ];
    const o = { rounds: 3, stepsPerTiming: 2, warmup: 1 };
    const got = await decodeTimesAsync(specs, tokens, o);
    const want = decodeTimes(specs, tokens, o);
    const timeless = (r: (typeof got)[number]) => ({ ...r, msPerToken: r.msPerToken.length });
    assert.deepStrictEqual(got.map(timeless), want.map(timeless));
    // Each kv session moves (1 warm-up + 3 rounds) × 2 steps past its position.
    assert.deepStrictEqual(got.map((r) => r.endPosition), [12, 20, 8]);
    assert.ok(got.every((r) => r.msPerToken.length === 3 && r.msPerToken.every((ms) => ms >= 0)));
    await assert.rejects(() => decodeTimesAsync(specs, tokens, { rounds: 0 }), RangeError);
  });
  model.dispose();
});

Deno.test("readPlan and readPlanAsync: one read of every built tensor, typed errors, nothing left behind", async () => {
  const x = tf.tensor2d([[1, -2], [3, 4]]);
  const flags = tf.tensor1d([1, 0], "bool");
  const plan = {
    build: () => [tf.sum(x), x, flags, tf.cast(tf.argMax(x, 1), "int32")],
    finish: (values: Float32Array[]) => values.map((v) => Array.from(v)),
  };
  await noLeak(async () => {
    const want = [[6], [1, -2, 3, 4], [1, 0], [0, 1]];
    assert.deepStrictEqual(readPlan(plan), want);
    assert.deepStrictEqual(await readPlanAsync(plan), want);
    // One read: data() on the packed tensor only, whatever the plan builds.
    let reads = 0;
    const original = tf.Tensor.prototype.data;
    tf.Tensor.prototype.data = function (this: tf.Tensor) {
      reads++;
      return original.call(this);
    } as typeof original;
    try {
      await readPlanAsync(plan);
    } finally {
      tf.Tensor.prototype.data = original;
    }
    assert.equal(reads, 1);
    assert.throws(() => readPlan({ build: () => [], finish: () => 0 }), TypeError);
    assert.throws(() => readPlan({ build: () => [x] } as never), TypeError);
    await assert.rejects(() => readPlanAsync(null as never), TypeError);
  });
  tf.dispose([x, flags]);
});
