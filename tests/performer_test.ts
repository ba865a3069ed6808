/**
 * Performer (FAVOR+) at every input scale, against the closed form evaluated in float64 in plain JavaScript.
 *
 * The closed form: φ̂(x)_r = m^(−1/2) exp(w_r·x' − |x'|²/2), x' = dk^(−1/4) x, and
 * out_i = Σ_j (φ̂(q_i)·φ̂(k_j)) v_j / (Σ_j φ̂(q_i)·φ̂(k_j) + eps) over the keys row i sees. At dk = 8 and inputs
 * scaled by c = 30 the exponents reach the thousands, past float64's range too, so the float64 reference sums in log space:
 * log φ̂(q_i)·φ̂(k_j) = logsumexp_r (log φ̂(q_i)_r + log φ̂(k_j)_r), then a max-shifted normalisation over j (exact).
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  chunkedAttend,
  decoder,
  favorFeatures,
  orthogonalRandomFeatures,
  performerFeatures,
  type QKV,
  recurrentAttend,
  variants,
} from "../lib/attention/mod.ts";
import { favorLogFeatures } from "../lib/attention/performer.ts";
import { randomNormal } from "../lib/random.ts";
import { assertClose, seededQKV } from "./helpers.ts";

const DK = 8;
const DV = 5;
const M = performerFeatures(DK); // 17
const EPS32 = 2 ** -24;

/** Inputs in float64 (q, k, v flattened [b, h, n, d]) with their sizes. */
interface Inputs64 {
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
  dims: { bh: number; n: number; dk: number; dv: number };
}

function inputs64(qkv: QKV): Inputs64 {
  const [b, h, n, dk] = qkv.q.shape;
  const f64 = (x: tf.Tensor) => Float64Array.from(x.dataSync());
  return { q: f64(qkv.q), k: f64(qkv.k), v: f64(qkv.v), dims: { bh: b * h, n, dk, dv: qkv.v.shape[3] } };
}

/** log φ̂(x)_r for every row of x [rows, dk] in float64: [rows][m]. */
function logFeatures64(x: Float64Array, w: Float64Array, dims: { rows: number; dk: number; m: number }): number[][] {
  const { rows, dk, m } = dims;
  const scale = Math.pow(dk, -0.25);
  return Array.from({ length: rows }, (_, i) => {
    let half = 0;
    for (let d = 0; d < dk; d++) half += (x[i * dk + d] * scale) ** 2 / 2;
    return Array.from({ length: m }, (_, r) => {
      let dot = 0;
      for (let d = 0; d < dk; d++) dot += w[r * dk + d] * x[i * dk + d] * scale;
      return dot - half - Math.log(m) / 2;
    });
  });
}

function logSumExp(xs: number[]): number {
  const top = Math.max(...xs);
  return top + Math.log(xs.reduce((sum, x) => sum + Math.exp(x - top), 0));
}

/**
 * The closed form in float64: the weights [bh][n][n] (rows over the visible keys, with eps at the unstabilised
 * scale), the output [bh·n·dv] = weights·v, and the largest |log φ̂| met (for the float32 error bound).
 */
function performer64(
  x: Inputs64,
  w: Float64Array,
  options: { causal: boolean; eps: number },
): { weights: number[][][]; out: Float64Array; maxLog: number } {
  const { bh, n, dk, dv } = x.dims;
  const m = w.length / dk;
  const out = new Float64Array(bh * n * dv);
  const weights: number[][][] = [];
  let maxLog = 0;
  for (let g = 0; g < bh; g++) {
    const rows = (a: Float64Array) => a.subarray(g * n * dk, (g + 1) * n * dk);
    const lq = logFeatures64(rows(x.q), w, { rows: n, dk, m });
    const lk = logFeatures64(rows(x.k), w, { rows: n, dk, m });
    for (const row of [...lq, ...lk]) for (const e of row) maxLog = Math.max(maxLog, Math.abs(e));
    weights.push(lq.map((qi, i) => {
      const visible = options.causal ? i + 1 : n;
      const logK = Array.from({ length: visible }, (_, j) => logSumExp(qi.map((e, r) => e + lk[j][r])));
      const s = Math.max(...logK);
      const terms = logK.map((l) => Math.exp(l - s));
      const den = terms.reduce((a, b) => a + b, 0) + (options.eps > 0 ? Math.exp(Math.log(options.eps) - s) : 0);
      const row = Array.from({ length: n }, (_, j) => j < visible ? terms[j] / den : 0);
      for (let c = 0; c < dv; c++) {
        let sum = 0;
        for (let j = 0; j < visible; j++) sum += row[j] * x.v[(g * n + j) * dv + c];
        out[(g * n + i) * dv + c] = sum;
      }
      return row;
    }));
  }
  return { weights, out, maxLog };
}

/**
 * The float32 error allowed against the float64 closed form. Each float32 exponent log φ̂ is off by about an ulp of the
 * largest |log φ̂| (E); a weight e^(ℓ_ij − s_i) then moves by that much relative to itself, so an output moves by at
 * most twice that times max |v|. Two ulps of E (4 E ε32 max|v|), plus 1e-5 for the sums.
 */
function toleranceFor(maxLog: number, maxV: number): { atol: number; rtol: number } {
  return { atol: 1e-5 + 4 * EPS32 * maxLog * maxV, rtol: 0 };
}

function maxAbs(x: ArrayLike<number>): number {
  let top = 0;
  for (let i = 0; i < x.length; i++) top = Math.max(top, Math.abs(x[i]));
  return top;
}

/** Seeded q = c·q₀ − shift, k = c·k₀, v ~ N(0, 1): [2, 2, n, 8], [2, 2, n, 5]. */
function sweptQKV(options: { n: number; c: number; shift?: number; seed: number }): QKV {
  const { n, c, shift = 0, seed } = options;
  const base = seededQKV({ n, dk: DK, dv: DV, seed });
  const scaled = tf.tidy(() => ({
    q: tf.sub(tf.mul(base.q, c), shift) as tf.Tensor4D,
    k: tf.mul(base.k, c) as tf.Tensor4D,
  }));
  tf.dispose([base.q, base.k]);
  return { ...scaled, v: base.v };
}

/** The cases of the layer sweep that failed: scales 1 to 30, and queries shifted by 12 and 24 at scale 1. */
const CASES = [
  { c: 1, shift: 0 },
  { c: 5, shift: 0 },
  { c: 10, shift: 0 },
  { c: 30, shift: 0 },
  { c: 1, shift: 12 },
  { c: 1, shift: 24 },
];

function caseLabel(x: { c: number; shift: number }): string {
  return x.shift === 0 ? `c=${x.c}` : `shift=${x.shift}`;
}

/** Runs f and asserts that it leaves no tensor behind. */
function noLeak(f: () => void): void {
  const start = tf.memory().numTensors;
  f();
  assert.equal(tf.memory().numTensors, start, "tensors leaked");
}

Deno.test("performer: log-features equal the closed form in float64, and favorFeatures peaks at 1 where exp would underflow", () => {
  noLeak(() => {
    const projection = orthogonalRandomFeatures({ features: M, dk: DK, seed: 0 });
    const qkv = sweptQKV({ n: 9, c: 30, seed: 1 });
    const lf = favorLogFeatures(qkv.q, { projection });
    const x = inputs64(qkv);
    const expected = logFeatures64(x.q, Float64Array.from(projection.dataSync()), { rows: 4 * 9, dk: DK, m: M });
    const flat = expected.flat();
    const largest = maxAbs(flat);
    assert.ok(largest > 500, `scale 30 makes the exponents large (${largest})`);
    const got = lf.dataSync();
    for (let i = 0; i < flat.length; i++) {
      assert.ok(Math.abs(got[i] - flat[i]) <= 16 * EPS32 * largest, `log-feature ${i}: ${got[i]} vs ${flat[i]}`);
    }
    // Every row of query features and the keys as a whole have their largest entry exactly 1, none NaN.
    const fq = favorFeatures(qkv.q, { projection, role: "query" });
    const fk = favorFeatures(qkv.k, { projection, role: "key" });
    const [rowMax, keyMax] = [tf.max(fq, -1), tf.max(fk, [2, 3])];
    assert.deepEqual(Array.from(rowMax.dataSync()), new Array(4 * 9).fill(1));
    assert.deepEqual(Array.from(keyMax.dataSync()), [1, 1, 1, 1]);
    assert.ok(fq.dataSync().every(Number.isFinite) && fk.dataSync().every(Number.isFinite));
    tf.dispose([projection, qkv.q, qkv.k, qkv.v, lf, fq, fk, rowMax, keyMax]);
  });
});

Deno.test("performer: weights() and attend() equal the float64 closed form at every scale (dk 8, n 1/63/65, causal and not, eps 0 and 1e-9)", async (t) => {
  const projection = orthogonalRandomFeatures({ features: M, dk: DK, seed: 0 });
  const w64 = Float64Array.from(projection.dataSync());
  for (const sweep of CASES) {
    for (const n of [1, 63, 65]) {
      for (const causal of [false, true]) {
        for (const eps of [0, 1e-9]) {
          const label = `${caseLabel(sweep)} n=${n} causal=${causal} eps=${eps}`;
          await t.step(label, () => {
            noLeak(() => {
              const qkv = sweptQKV({ n, ...sweep, seed: 3 });
              const x = inputs64(qkv);
              const exact = performer64(x, w64, { causal, eps });
              const tol = toleranceFor(exact.maxLog, maxAbs(x.v));
              const options = { causal, eps, projection };
              const expected = tf.tensor4d(Float32Array.from(exact.out), qkv.v.shape);
              const expectedWeights = tf.tensor4d(exact.weights.flat(2), [2, 2, n, n]);
              tf.tidy(() => {
                // The weights are distributions over the visible keys when eps = 0 (the closed form's rows).
                const weights = variants.performer.weights(qkv, options);
                assertClose(weights, expectedWeights, `${label}: weights`, { atol: tol.atol, rtol: 0 });
                assertClose(variants.performer.attend(qkv, options), expected, `${label}: attend`, tol);
                assertClose(variants.performer.reference(qkv, options), expected, `${label}: reference`, tol);
                // The default chunk (64) and a smaller one (16, several chunks) agree.
                if (causal) {
                  const small = variants.performer.attend(qkv, { ...options, chunkSize: 16 });
                  assertClose(small, expected, `${label}: attend, chunk 16`, tol);
                }
              });
              tf.dispose([qkv.q, qkv.k, qkv.v, expected, expectedWeights]);
            });
          });
        }
      }
    }
  }
  projection.dispose();
});

Deno.test("performer: at large scales (c = 10 and 30) rows are not lost: with eps = 0 every row of attend() is a convex mix of v", () => {
  // Before, every feature of a row underflowed at c >= 10 and the row came out exactly 0.
  noLeak(() => {
    for (const c of [10, 30]) {
      for (const causal of [false, true]) {
        tf.tidy(() => {
          const qkv = sweptQKV({ n: 65, c, seed: 5 });
          const out = variants.performer.attend(qkv, { causal, eps: 0 });
          const v = qkv.v.arraySync();
          const o = out.arraySync();
          for (let g = 0; g < 2; g++) {
            for (let h = 0; h < 2; h++) {
              for (let i = 0; i < 65; i++) {
                const seen = v[g][h].slice(0, causal ? i + 1 : 65);
                for (let d = 0; d < DV; d++) {
                  const column = seen.map((row) => row[d]);
                  const [lo, hi] = [Math.min(...column), Math.max(...column)];
                  assert.ok(
                    o[g][h][i][d] >= lo - 1e-5 && o[g][h][i][d] <= hi + 1e-5,
                    `c=${c} causal=${causal} row ${i}: ${o[g][h][i][d]} outside [${lo}, ${hi}]`,
                  );
                }
              }
            }
          }
        });
      }
    }
  });
});

/** ⟨O(x), u⟩ of the float64 closed form. */
function objective64(x: Inputs64, w: Float64Array, u: Float64Array, options: { causal: boolean; eps: number }): number {
  const { out } = performer64(x, w, options);
  let sum = 0;
  for (let i = 0; i < out.length; i++) sum += out[i] * u[i];
  return sum;
}

/** x + h·d, for each of q, k and v. */
function step64(x: Inputs64, d: Inputs64, h: number): Inputs64 {
  const move = (a: Float64Array, b: Float64Array) => a.map((value, i) => value + h * b[i]);
  return { q: move(x.q, d.q), k: move(x.k, d.k), v: move(x.v, d.v), dims: x.dims };
}

Deno.test("performer: q/k/v gradients are finite and match float64 central differences of the closed form, for 3 seeds", async (t) => {
  const projection = orthogonalRandomFeatures({ features: M, dk: DK, seed: 0 });
  const w64 = Float64Array.from(projection.dataSync());
  for (const sweep of CASES) {
    for (const causal of [false, true]) {
      for (const seed of [1, 2, 3]) {
        const n = 63;
        const label = `${caseLabel(sweep)} causal=${causal} seed=${seed}`;
        await t.step(label, () => {
          noLeak(() => {
            const qkv = sweptQKV({ n, ...sweep, seed });
            const u = randomNormal<tf.Tensor4D>([2, 2, n, DV], { seed: seed + 100 });
            // A random direction in (q, k, v), scaled like the inputs so that it moves every exponent alike.
            const direction = tf.tidy(() => ({
              q: tf.mul(randomNormal([2, 2, n, DK], { seed: seed + 200 }), sweep.c),
              k: tf.mul(randomNormal([2, 2, n, DK], { seed: seed + 300 }), sweep.c),
              v: randomNormal([2, 2, n, DV], { seed: seed + 400 }),
            })) as unknown as QKV;
            const options = { causal, eps: 0, projection };
            const grads = tf.tidy(() =>
              tf.grads((q, k, v) => tf.sum(tf.mul(variants.performer.attend({ q, k, v } as QKV, options), u)))([
                qkv.q,
                qkv.k,
                qkv.v,
              ])
            );
            const flat = grads.map((g) => g.dataSync());
            for (const [i, name] of ["q", "k", "v"].entries()) {
              assert.ok(flat[i].every(Number.isFinite), `${label}: d/d${name} has a non-finite entry`);
            }
            // Autodiff's directional derivative against (F(x + hd) − F(x − hd)) / 2h in float64.
            const d = inputs64(direction);
            let autodiff = 0;
            let size = 0;
            for (const [i, part] of [d.q, d.k, d.v].entries()) {
              for (let j = 0; j < part.length; j++) autodiff += flat[i][j] * part[j];
              size += Math.hypot(...flat[i].map((g, j) => g * part[j]));
            }
            const x = inputs64(qkv);
            const u64 = Float64Array.from(u.dataSync());
            const h = 1e-6;
            const central = (objective64(step64(x, d, h), w64, u64, options) -
              objective64(step64(x, d, -h), w64, u64, options)) / (2 * h);
            const exact = performer64(x, w64, options);
            // Each term g_j d_j of autodiff's sum carries the rounding of the float32 exponents (a couple of ulps of E,
            // relative); the central difference is good to about 1e-5 (h = 1e-6 against the inputs' scale).
            const bound = 1e-5 * (1 + Math.abs(central)) + 4 * EPS32 * exact.maxLog * size;
            assert.ok(
              Math.abs(autodiff - central) <= bound,
              `${label}: autodiff ${autodiff} vs float64 central difference ${central} (bound ${bound})`,
            );
            tf.dispose([qkv.q, qkv.k, qkv.v, u, direction.q, direction.k, direction.v, ...grads]);
          });
        });
      }
    }
  }
  projection.dispose();
});

Deno.test("performer: gradients of attend() equal those of the naive weights()·v path at every scale (eps = 0)", async (t) => {
  // eps = 0: with the default 1e-9, rows at c >= 10 or shifted queries are eps-dominated and their gradients vanish.
  const projection = orthogonalRandomFeatures({ features: M, dk: DK, seed: 0 });
  for (const sweep of CASES) {
    for (const causal of [false, true]) {
      await t.step(`${caseLabel(sweep)} causal=${causal}`, () => {
        noLeak(() => {
          tf.tidy(() => {
            const qkv = sweptQKV({ n: 65, ...sweep, seed: 7 });
            const u = randomNormal<tf.Tensor4D>([2, 2, 65, DV], { seed: 8 });
            const options = { causal, chunkSize: 16, eps: 0, projection };
            const grad = (f: (x: QKV) => tf.Tensor4D) =>
              tf.grads((q, k, v) => tf.sum(tf.mul(f({ q, k, v } as QKV), u)))([qkv.q, qkv.k, qkv.v]);
            const fast = grad((x) => variants.performer.attend(x, options));
            const naive = grad((x) => variants.performer.reference(x, options));
            // The largest |log φ̂| (E): both paths round exponents of that size, a couple of ulps each.
            const logScale = Math.max(
              ...[qkv.q, qkv.k].map((x) => tf.max(tf.abs(favorLogFeatures(x, { projection }))).dataSync()[0]),
            );
            // The gradients' terms are as large as the largest gradient (they cancel in some, e.g. d/dq for queries
            // shifted far from the keys): two paths that round differently agree to a few ulps of E times that size.
            const scale = Math.max(...naive.map((g) => tf.max(tf.abs(g)).dataSync()[0]));
            assert.ok(scale > 1, `the gradients are not vanishingly small (${scale})`);
            for (const [i, name] of ["q", "k", "v"].entries()) {
              assert.ok(fast[i].dataSync().every(Number.isFinite), `d/d${name} finite`);
              assertClose(fast[i], naive[i], `d/d${name}`, { atol: 1e-5 + 8 * EPS32 * logScale * scale, rtol: 0 });
            }
          });
        });
      });
    }
  }
  projection.dispose();
});

Deno.test("performer: chunked, recurrent, split-state and decoder forms equal attend() and float64 at c = 10 and c = 30", async (t) => {
  const n = 65;
  // eps = 0: with the default 1e-9 most rows at these scales are eps-dominated (D̂ ≪ 1e-9) and near 0 in every form.
  for (const c of [10, 30]) {
    await t.step(`c=${c}`, () => {
      noLeak(() => {
        const qkv = sweptQKV({ n, c, seed: 9 });
        const options = { features: M, seed: 0, eps: 0 };
        const x = inputs64(qkv);
        const projection = orthogonalRandomFeatures({ features: M, dk: DK, seed: 0 });
        const exact = performer64(x, Float64Array.from(projection.dataSync()), { causal: true, eps: 0 });
        const tol = toleranceFor(exact.maxLog, maxAbs(x.v));
        const expected = tf.tensor4d(Float32Array.from(exact.out), qkv.v.shape);
        tf.tidy(() => {
          const attend = variants.performer.attend(qkv, { ...options, causal: true });
          assertClose(attend, expected, "attend vs float64", tol);
          for (const chunkSize of [1, 8, 64]) {
            const chunked = chunkedAttend("performer", qkv, { ...options, chunkSize }).output;
            assertClose(chunked, attend, `chunked (chunk ${chunkSize}) vs attend`, tol);
          }
          assertClose(recurrentAttend("performer", qkv, options).output, attend, "recurrent vs attend", tol);
          // [0, 30) chunkwise, then [30, 65) token by token from the carried state.
          const part = (from: number, size: number) => ({
            q: tf.slice(qkv.q, [0, 0, from, 0], [-1, -1, size, -1]),
            k: tf.slice(qkv.k, [0, 0, from, 0], [-1, -1, size, -1]),
            v: tf.slice(qkv.v, [0, 0, from, 0], [-1, -1, size, -1]),
          } as QKV);
          const first = chunkedAttend("performer", part(0, 30), { ...options, chunkSize: 16 });
          const rest = recurrentAttend("performer", part(30, n - 30), { ...options, state: first.state, position: 30 });
          assertClose(tf.concat([first.output, rest.output], 2), attend, "split state vs attend", tol);
        });
        // The decoder: a prompt of 20 tokens, then one step per token.
        const dec = decoder("performer", options);
        let state = dec.init({ batch: 2, heads: 2, dk: DK, dv: DV });
        const outs: tf.Tensor4D[] = [];
        for (const [from, size] of [[0, 20], ...Array.from({ length: n - 20 }, (_, i) => [20 + i, 1])]) {
          const slice: QKV = {
            q: tf.slice(qkv.q, [0, 0, from, 0], [-1, -1, size, -1]),
            k: tf.slice(qkv.k, [0, 0, from, 0], [-1, -1, size, -1]),
            v: tf.slice(qkv.v, [0, 0, from, 0], [-1, -1, size, -1]),
          };
          const next = size === 1 ? dec.step(state, slice) : dec.prefill(state, slice);
          dec.dispose(state);
          state = next.state;
          outs.push(next.out);
          tf.dispose([slice.q, slice.k, slice.v]);
        }
        const decoded = tf.concat(outs, 2);
        assertClose(decoded, expected, "decoder vs float64", tol);
        dec.dispose(state);
        tf.dispose([...outs, decoded, expected, projection, qkv.q, qkv.k, qkv.v]);
      });
    });
  }
});

Deno.test("performer: a large eps really regularises at the unstabilised scale, as in float64", () => {
  noLeak(() => {
    const projection = orthogonalRandomFeatures({ features: M, dk: DK, seed: 0 });
    const qkv = sweptQKV({ n: 63, c: 2, seed: 11 });
    const x = inputs64(qkv);
    for (const causal of [false, true]) {
      const exact = performer64(x, Float64Array.from(projection.dataSync()), { causal, eps: 10 });
      // eps = 10 is comparable to the rows' D̂ here, so the outputs shrink visibly (not the eps = 0 outputs).
      const plain = performer64(x, Float64Array.from(projection.dataSync()), { causal, eps: 0 });
      assert.ok(maxAbs(exact.out.map((o, i) => o - plain.out[i])) > 0.05, "eps = 10 changes the outputs");
      tf.tidy(() => {
        const expected = tf.tensor4d(Float32Array.from(exact.out), qkv.v.shape);
        const tol = toleranceFor(exact.maxLog, maxAbs(x.v));
        const options = { causal, eps: 10, projection };
        assertClose(variants.performer.attend(qkv, options), expected, `causal=${causal}: attend`, tol);
        assertClose(variants.performer.reference(qkv, options), expected, `causal=${causal}: reference`, tol);
      });
    }
    tf.dispose([projection, qkv.q, qkv.k, qkv.v]);
  });
});
