// Performer's weights() by one max-shifted matmul (form "auto") against the log-space form (form "log", the reference)
// and against the kernel matrix computed in float64 from the log-features; and which form ran (lastPerformerPath):
// the matmul where no underflowed entry can matter, log space for the row blocks where one could (README.md,
// Performer). Tolerances: tests/_performer_cases.ts.

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  favorLogFeatures,
  lastPerformerPath,
  orthogonalRandomFeatures,
  performer,
} from "../lib/attention/performer.ts";
import { randomNormal } from "../lib/random.ts";
import {
  assertSameForms,
  BACKENDS,
  defaultProjection,
  DK,
  gradientsThrough,
  largestLog,
  relativeError,
  scaledQKV,
} from "./_performer_cases.ts";
import { assertClose, onBackend } from "./helpers.ts";

const LENGTHS = [1, 63, 65, 130];
const SCALES = [0.5, 1, 3, 10, 30];

/** weights() of form `form` and its q/k gradients through a seeded cotangent. */
function weightsAndGrads(
  qk: { q: tf.Tensor4D; k: tf.Tensor4D },
  options: { causal: boolean; eps: number; form: "auto" | "log"; projection?: tf.Tensor2D },
) {
  const run = gradientsThrough((q, k) => performer.weights({ q, k }, options), [qk.q, qk.k], 5);
  return { ...run, path: options.form === "auto" ? lastPerformerPath().weights : null };
}

Deno.test("performer_matrix: weights() by the matmul equal form log on weights and q/k gradients (n 1/63/65/130, scales 0.5 to 30, causal and not, eps 0 and 1e-9); ×1 takes the matmul, ×30 log space", async (t) => {
  const projection = defaultProjection();
  for (const backend of BACKENDS) {
    await t.step(backend, () =>
      onBackend(backend, () => {
        for (const n of LENGTHS) {
          for (const scale of SCALES) {
            tf.tidy(() => {
              const qkv = scaledQKV({ n, scale, seed: 1000 * n + 10 * scale });
              const rel = relativeError(largestLog(qkv, projection));
              for (const causal of [false, true]) {
                for (const eps of [0, 1e-9]) {
                  const what = `${backend} n=${n} ×${scale} causal=${causal} eps=${eps}`;
                  const fast = weightsAndGrads(qkv, { causal, eps, form: "auto" });
                  const reference = weightsAndGrads(qkv, { causal, eps, form: "log" });
                  assertSameForms(fast, reference, { what, rel, outScale: 1, names: ["q", "k"] });
                  if (scale === 1 || n === 1) assert.equal(fast.path, "matmul", `${what}: the matmul ran`);
                  if (scale === 30 && n > 1) assert.equal(fast.path, "log", `${what}: log space ran`);
                }
              }
            });
          }
        }
      }));
  }
  projection.dispose();
});

Deno.test("performer_matrix: one query row whose entries all underflow sends its block of rows (only) to log space, equal to form log", async (t) => {
  // m = 512 features make the log-space blocks 63 rows long at n = 65 (2²² / (2 · 65 · 512)). The first 8 rows of
  // the projection are 10·e_r: queries and keys near 6·e_1 · dk^(1/4) peak on feature 1 (log-feature ≈ 42, the others
  // near −18), query 40 near 6·e_0 on feature 0; its max-shifted product with every key is about 2e^−60 < τ = 2^−80,
  // with no kept entry in its row, so it must go to log space. The others share feature 1: their products are ≥ 1.
  const n = 65;
  const build = () => {
    const projection = tf.concat([
      tf.mul(tf.eye(DK), 10),
      orthogonalRandomFeatures({ features: 512 - DK, dk: DK, seed: 4 }),
    ]) as tf.Tensor2D; // [512, 8]
    const unit = (axis: number) => tf.oneHot(tf.tensor1d([axis], "int32"), DK).reshape([1, 1, 1, DK]);
    const at = tf.mul(unit(1), 6 * Math.pow(DK, 0.25)); // [1, 1, 1, 8]
    const noise = (seed: number) => randomNormal([1, 2, n, DK], { seed, std: 0.1 });
    const row40 = tf.reshape(tf.oneHot(tf.tensor1d([40], "int32"), n), [1, 1, n, 1]); // [1, 1, n, 1]
    const qDirection = tf.add(tf.mul(tf.sub(1, row40), at), tf.mul(row40, tf.mul(unit(0), 6 * Math.pow(DK, 0.25))));
    const q = tf.add(qDirection, noise(1)) as tf.Tensor4D; // [1, 2, n, 8]
    const k = tf.add(at, noise(2)) as tf.Tensor4D; // [1, 2, n, 8]
    return { q, k, projection };
  };
  for (const backend of BACKENDS) {
    await t.step(backend, () =>
      onBackend(backend, () =>
        tf.tidy(() => {
          const { q, k, projection } = build();
          const rel = relativeError(largestLog({ q, k }, projection));
          for (const causal of [false, true]) {
            const what = `${backend} causal=${causal}`;
            const fast = weightsAndGrads({ q, k }, { causal, eps: 1e-9, form: "auto", projection });
            const reference = weightsAndGrads({ q, k }, { causal, eps: 1e-9, form: "log", projection });
            assertSameForms(fast, reference, { what, rel, outScale: 1, names: ["q", "k"] });
            assert.equal(fast.path, "mixed", `${what}: one block in log space, the rest by the matmul`);
          }
        })));
  }
});

/** The row-normalised kernel matrix in float64 from float32 log-features lq, lk [n][m] (one slice). */
function weights64(lq: number[][], lk: number[][], options: { causal: boolean; eps: number }): number[][] {
  return lq.map((qi, i) => {
    const kernel = lk.map((kj, j) =>
      options.causal && j > i ? 0 : qi.reduce((sum, x, r) => sum + Math.exp(x + kj[r]), 0)
    );
    const den = kernel.reduce((a, b) => a + b, 0) + options.eps;
    return kernel.map((x) => x / den);
  });
}

Deno.test("performer_matrix: weights() by the matmul equal the kernel matrix in float64 from the log-features (n 5, dk 8, m 6)", async (t) => {
  for (const backend of BACKENDS) {
    await t.step(backend, () =>
      onBackend(backend, () =>
        tf.tidy(() => {
          const projection = orthogonalRandomFeatures({ features: 6, dk: DK, seed: 3 });
          const qkv = scaledQKV({ n: 5, scale: 2, seed: 21 });
          const rows = (x: tf.Tensor4D) => favorLogFeatures(x, { projection }).arraySync()[0][1]; // head 1: [n][m]
          const [lq, lk] = [rows(qkv.q), rows(qkv.k)];
          // exp(ℓ) fits float64 here (|ℓ| < 30), so the closed form needs no stabiliser.
          const rel = relativeError(largestLog(qkv, projection));
          assert.ok(Math.max(...lq.flat().map(Math.abs), ...lk.flat().map(Math.abs)) < 30);
          for (const causal of [false, true]) {
            for (const eps of [0, 1e-9]) {
              const w = performer.weights(qkv, { causal, eps, projection });
              assert.equal(lastPerformerPath().weights, "matmul");
              const expected = tf.tensor2d(weights64(lq, lk, { causal, eps }));
              const got = tf.squeeze(tf.slice(w, [0, 1, 0, 0], [1, 1, -1, -1]), [0, 1]);
              assertClose(got, expected, `${backend} causal=${causal} eps=${eps}`, { atol: rel, rtol: 0 });
            }
          }
        })));
  }
});

Deno.test('performer_matrix: option form must be "auto" or "log" (RangeError for another string, TypeError otherwise)', () => {
  const q = tf.ones([1, 1, 2, 4]) as tf.Tensor4D;
  assert.throws(() => performer.weights({ q, k: q }, { form: "exp" as "log" }), RangeError);
  assert.throws(() => performer.weights({ q, k: q }, { form: 1 as unknown as "log" }), TypeError);
  q.dispose();
});
