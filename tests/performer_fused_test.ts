// Performer's causal attend() through the fused causal product (the blas backend, form "auto") against weights()·v
// of the log-space form (the naive reference) and against float64, on outputs and q/k/v gradients; and which form ran
// (lastPerformerPath): the fused product where every row sum clears e^−40, the chunkwise log-space form elsewhere
// (and on cpu, which has no fused kernel). Tolerances: tests/_performer_cases.ts.

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { favorLogFeatures, lastPerformerPath, performer } from "../lib/attention/performer.ts";
import {
  assertSameForms,
  BACKENDS,
  defaultProjection,
  DK,
  DV,
  gradientsThrough,
  largestLog,
  maxAbsOf,
  relativeError,
  scaledQKV,
} from "./_performer_cases.ts";
import { assertClose, onBackend } from "./helpers.ts";

const LENGTHS = [1, 63, 65, 130];
const SCALES = [0.5, 1, 3, 10, 30];

type Options = { causal: boolean; eps: number; chunkSize?: number; projection?: tf.Tensor2D };

/** attend() (form "auto") with its q/k/v gradients, and the form that ran. */
function attendAndGrads(qkv: { q: tf.Tensor4D; k: tf.Tensor4D; v: tf.Tensor4D }, options: Options) {
  const run = gradientsThrough((q, k, v) => performer.attend({ q, k, v }, options), [qkv.q, qkv.k, qkv.v], 6);
  return { ...run, path: lastPerformerPath().attend };
}

/** The naive reference: weights() of form "log" times v, with its q/k/v gradients. */
function referenceAndGrads(qkv: { q: tf.Tensor4D; k: tf.Tensor4D; v: tf.Tensor4D }, options: Options) {
  const f = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) =>
    tf.matMul(performer.weights({ q, k }, { ...options, form: "log" }), v);
  return gradientsThrough(f, [qkv.q, qkv.k, qkv.v], 6);
}

Deno.test("performer_fused: causal attend() equals weights(form log)·v on outputs and q/k/v gradients (n 1/63/65/130, scales 0.5 to 30, eps 0 and 1e-9, causal and not); the fused product runs on blas at ×0.5 and ×1", async (t) => {
  const projection = defaultProjection();
  for (const backend of BACKENDS) {
    await t.step(backend, () =>
      onBackend(backend, () => {
        for (const n of LENGTHS) {
          for (const scale of SCALES) {
            tf.tidy(() => {
              const qkv = scaledQKV({ n, scale, seed: 1000 * n + 10 * scale + 1 });
              const rel = relativeError(largestLog(qkv, projection));
              const outScale = maxAbsOf([qkv.v]);
              for (const causal of [false, true]) {
                for (const eps of [0, 1e-9]) {
                  const what = `${backend} n=${n} ×${scale} causal=${causal} eps=${eps}`;
                  // chunks of 16: n = 63, 65 and 130 span several, with a partial last one.
                  const options = { causal, eps, chunkSize: 16 };
                  const fast = attendAndGrads(qkv, options);
                  assertSameForms(fast, referenceAndGrads(qkv, options), {
                    what,
                    rel,
                    outScale,
                    names: ["q", "k", "v"],
                  });
                  const fused = causal && backend === "blas" && scale <= 1;
                  if (fused) assert.equal(fast.path, "fused", `${what}: the fused product ran`);
                  if (causal && backend === "cpu") assert.equal(fast.path, "chunked", `${what}: no fused kernel`);
                  if (!causal) assert.equal(fast.path, "global", what);
                }
              }
            });
          }
        }
      }));
  }
  projection.dispose();
});

Deno.test("performer_fused: a row sum below e^−40 makes the fused product refuse; the chunkwise form's rows equal weights()·v", async (t) => {
  // dk = 8 with the default features. Key 0 lies far out (8 · dk^(1/4) · e_0: |x'|²/2 = 32, so its log-features are
  // about −32 ± 8 − 1.4) while keys 1.. sit near 0 (log-features near −1.4): every feature's maximum c_r comes from a
  // later key, 30 or more above key 0's, so row 0 (which sees only key 0) has a row sum near e^(−30 − 8·2) < e^−40 at
  // its scale d_0 = max_r (lq_0r + c_r).
  const n = 20;
  const build = () => {
    const base = scaledQKV({ n, scale: 0.1, seed: 31 });
    const row0 = tf.reshape(tf.oneHot(tf.tensor1d([0], "int32"), n), [1, 1, n, 1]); // [1, 1, n, 1]
    const far = tf.mul(tf.oneHot(tf.tensor1d([0], "int32"), DK).reshape([1, 1, 1, DK]), 16 * Math.pow(DK, 0.25));
    const k = tf.add(base.k, tf.mul(row0, far)) as tf.Tensor4D; // [1, 2, n, 8]
    return { q: base.q, k, v: base.v };
  };
  for (const backend of BACKENDS) {
    await t.step(backend, () =>
      onBackend(backend, () =>
        tf.tidy(() => {
          const qkv = build();
          const projection = defaultProjection();
          // The premise: row 0's largest term lies more than 40 below its scale d_0 (in float64 from the log-features).
          const [lq, lk] = [qkv.q, qkv.k].map((x) => favorLogFeatures(x, { projection }).arraySync()[0][0]);
          const c = lk[0].map((_, r) => Math.max(...lk.map((row) => row[r])));
          const d0 = Math.max(...lq[0].map((x, r) => x + c[r]));
          const rowSum0 = lq[0].reduce((sum, x, r) => sum + Math.exp(x + lk[0][r] - d0), 0);
          assert.ok(rowSum0 < Math.exp(-40), `row 0's sum e^${Math.log(rowSum0).toFixed(1)} is below e^−40`);
          const rel = relativeError(largestLog(qkv, projection));
          for (const eps of [0, 1e-9]) {
            const options = { causal: true, eps };
            const run = attendAndGrads(qkv, options);
            const what = `${backend} eps=${eps}`;
            assertSameForms(run, referenceAndGrads(qkv, options), {
              what,
              rel,
              outScale: maxAbsOf([qkv.v]),
              names: ["q", "k", "v"],
            });
            assert.equal(run.path, "chunked", `${what}: the fused product refused`);
            // Row 0 sees key 0 only: without eps its output is v_0.
            if (eps === 0) {
              assertClose(
                tf.slice(run.out, [0, 0, 0, 0], [1, 1, 1, DV]),
                tf.slice(qkv.v, [0, 0, 0, 0], [1, 1, 1, DV]),
                what,
              );
            }
          }
        })));
  }
});

Deno.test("performer_fused: causal attend() equals the float64 closed form from the log-features (n 6, dk 8, m 17)", async (t) => {
  for (const backend of BACKENDS) {
    await t.step(backend, () =>
      onBackend(backend, () =>
        tf.tidy(() => {
          const projection = defaultProjection();
          const qkv = scaledQKV({ n: 6, scale: 1, seed: 41 });
          const slice = (x: tf.Tensor4D) => x.arraySync()[0][1]; // head 1: [n][d]
          const [lq, lk] = [qkv.q, qkv.k].map((x) => slice(favorLogFeatures(x, { projection })));
          const v = slice(qkv.v);
          const rel = relativeError(largestLog(qkv, projection));
          for (const eps of [0, 1e-9]) {
            const out = performer.attend(qkv, { causal: true, eps });
            if (backend === "blas") assert.equal(lastPerformerPath().attend, "fused");
            // out_i = Σ_{j ≤ i} K_ij v_j / (Σ_{j ≤ i} K_ij + eps), K_ij = Σ_r e^(ℓq_ir + ℓk_jr), in doubles.
            const expected = lq.map((qi, i) => {
              const kernel = lk.slice(0, i + 1).map((kj) => qi.reduce((sum, x, r) => sum + Math.exp(x + kj[r]), 0));
              const den = kernel.reduce((a, b) => a + b, 0) + eps;
              return v[0].map((_, e) => kernel.reduce((sum, w, j) => sum + w * v[j][e], 0) / den);
            });
            const got = tf.squeeze(tf.slice(out, [0, 1, 0, 0], [1, 1, -1, -1]), [0, 1]);
            assertClose(got, tf.tensor2d(expected), `${backend} eps=${eps}`, {
              atol: rel * maxAbsOf([qkv.v]),
              rtol: 0,
            });
          }
        })));
  }
});
