// The fused causal product (lib/blas/fused_causal.ts) and the kernel-attention forms built on it (lib/attention/kernel.ts).
//
// Rounding bound. Every value here is a sum of products of three inputs, e.g. y_id = Σ_{j ≤ i} Σ_r q_ir k_jr v_jd. In
// float32 a term of such a sum passes through at most R roundings before it lands in the result (its products, the
// partial sums it is part of, the state it is carried in), so the computed value is within R · 2⁻²⁴ · B of the exact
// one, to first order, where B is the same sum over the terms' absolute values (computed here in float64). For the
// fused kernel R ≤ max(m, dv) + n + 2: a dot product over m (or dv: dQ and dK dot dY with v) features, then a term
// is summed into a chunk's sgemm (at most C − 1 additions) and into the carried state (one addition per later
// chunk: C + ⌈n/C⌉ ≤ n + 1 for 1 ≤ C ≤ n), and the two parts of a row are added; the tf-op chunked form and the naive
// masked product (whose mask multiplies by exactly 0 or 1) have the same or fewer. One more unit covers the
// second-order terms (R² · 2⁻⁴⁸, below 2⁻³⁰ here), so two computations differ by at most (R + 1) · 2⁻²³ · B element
// by element: the bound used here, as tests/dnnl_matmul_test.ts bounds matmuls.

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { loadableBackends } from "../lib/backend.ts";
import {
  CAUSAL_ATTENTION,
  CAUSAL_ATTENTION_GRAD,
  CAUSAL_PRODUCT,
  CAUSAL_PRODUCT_STATE,
  causalAttention,
  causalProduct,
  causalProductWithState,
  fusedCausalKernels,
} from "../lib/blas/fused_causal.ts";
import { fastKernels } from "../lib/blas/kernels.ts";
import type { Kernel, KernelArgs, TensorInfo } from "../lib/blas/_util.ts";
import { dnnl } from "../lib/blas/dnnl.ts";
import { openBlas, type SgemmArgs } from "../lib/blas/sgemm.ts";
import {
  kernelAttend,
  kernelChunked,
  kernelFused,
  kernelMatrix,
  type KernelState,
  kernelStep,
} from "../lib/attention/kernel.ts";
import { seededNormal } from "../lib/random.ts";
import { onBackend } from "./helpers.ts";

const HAS_BLAS = (await loadableBackends()).includes("blas");
const BACKENDS: ("blas" | "cpu")[] = HAS_BLAS ? ["blas", "cpu"] : ["cpu"];
const LENGTHS = [1, 63, 64, 65, 130];

/** Shapes [slices = b · h, n, features] of one case; b = h = 2. */
interface Dims {
  n: number;
  m: number;
  dv: number;
}

function normals(size: number, seed: number, scale = 1): Float32Array {
  const next = seededNormal(seed);
  return Float32Array.from({ length: size }, () => scale * next());
}

const B = 2;
const H = 2;
const SLICES = B * H;

/** The inputs of one case as arrays: q, k [4, n, m], v [4, n, dv], s0 [4, m, dv] and the cotangents of y and S. */
interface Case extends Dims {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  s0: Float32Array;
  cot: Float32Array;
  cotS: Float32Array;
}

/** A case's q, k [B, H, n, m], v and its cotangent [B, H, n, dv], as tensors. */
function attentionTensors(
  x: { q: Float32Array; k: Float32Array; v: Float32Array; cot: Float32Array },
  dims: { n: number; m: number; dv: number },
): { inputs: tf.Tensor4D[]; cot: tf.Tensor4D } {
  const { n, m, dv } = dims;
  return {
    inputs: [tf.tensor4d(x.q, [B, H, n, m]), tf.tensor4d(x.k, [B, H, n, m]), tf.tensor4d(x.v, [B, H, n, dv])],
    cot: tf.tensor4d(x.cot, [B, H, n, dv]),
  };
}

function makeCase(dims: Dims, seed: number): Case {
  const { n, m, dv } = dims;
  return {
    ...dims,
    q: normals(SLICES * n * m, seed),
    k: normals(SLICES * n * m, seed + 1),
    v: normals(SLICES * n * dv, seed + 2),
    s0: normals(SLICES * m * dv, seed + 3, 3),
    cot: normals(SLICES * n * dv, seed + 4),
    cotS: normals(SLICES * m * dv, seed + 5),
  };
}

/** The [rows, cols] matrices of x [slices, rows, cols] transposed, in float64. */
function transposed(x: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let s = 0; s < x.length / (rows * cols); s++) {
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) out[s * rows * cols + j * rows + i] = x[s * rows * cols + i * cols + j];
    }
  }
  return out;
}

/**
 * B of a causal product of (a, b, c) in float64: Σ_{j ≤ i} (|a_i| · |b_j|) |c_j| + |a_i| |s0| per slice (j ≥ i when
 * reverse), for a, b [slices, n, p], c [slices, n, r] and s0 [slices, p, r].
 */
function absProduct(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  c: ArrayLike<number>,
  shape: { n: number; p: number; r: number; reverse: boolean; s0?: ArrayLike<number> },
): Float64Array {
  const { n, p, r, reverse, s0 } = shape;
  const out = new Float64Array(SLICES * n * r);
  for (let s = 0; s < SLICES; s++) {
    for (let i = 0; i < n; i++) {
      const row = out.subarray((s * n + i) * r, (s * n + i + 1) * r);
      const from = reverse ? i : 0;
      const to = reverse ? n - 1 : i;
      for (let j = from; j <= to; j++) {
        let dot = 0;
        for (let t = 0; t < p; t++) dot += Math.abs(a[(s * n + i) * p + t] * b[(s * n + j) * p + t]);
        for (let d = 0; d < r; d++) row[d] += dot * Math.abs(c[(s * n + j) * r + d]);
      }
      if (s0) {
        for (let t = 0; t < p; t++) {
          for (let d = 0; d < r; d++) row[d] += Math.abs(a[(s * n + i) * p + t] * s0[(s * p + t) * r + d]);
        }
      }
    }
  }
  return out;
}

/** |a| · |b| summed over the sequence, [slices, p, r], plus |extra|: B of Kᵀ V (and of dS₀ = Qᵀ dY + dS). */
function absStateSum(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  dims: { n: number; p: number; r: number },
  extra: ArrayLike<number>,
): Float64Array {
  const { n, p, r } = dims;
  const out = Float64Array.from(extra, Math.abs);
  for (let s = 0; s < SLICES; s++) {
    for (let j = 0; j < n; j++) {
      for (let t = 0; t < p; t++) {
        for (let d = 0; d < r; d++) {
          out[(s * p + t) * r + d] += Math.abs(a[(s * n + j) * p + t] * b[(s * n + j) * r + d]);
        }
      }
    }
  }
  return out;
}

/** Asserts |actual − expected| ≤ (R + 1) · 2⁻²³ · bound element by element (see the top of this file). */
function assertWithinBound(
  what: string,
  actual: Float32Array,
  expected: Float32Array,
  spec: { bound: Float64Array; rounds: number },
): void {
  assert.equal(actual.length, expected.length, `${what}: ${actual.length} values, expected ${expected.length}`);
  const factor = (spec.rounds + 1) * 2 ** -23;
  for (let i = 0; i < actual.length; i++) {
    const ok = Number.isFinite(actual[i]) && Math.abs(actual[i] - expected[i]) <= factor * spec.bound[i];
    if (!ok) {
      assert.fail(`${what}: element ${i}: ${actual[i]}, reference ${expected[i]} (bound ${factor * spec.bound[i]})`);
    }
  }
}

/** The tensors of a case on the current backend. */
function tensorsOf(c: Case) {
  const { n, m, dv } = c;
  return {
    q: tf.tensor4d(c.q, [B, H, n, m]),
    k: tf.tensor4d(c.k, [B, H, n, m]),
    v: tf.tensor4d(c.v, [B, H, n, dv]),
    s0: tf.tensor4d(c.s0, [B, H, m, dv]),
    cot: tf.tensor4d(c.cot, [B, H, n, dv]),
    cotS: tf.tensor4d(c.cotS, [B, H, m, dv]),
  };
}

/** y, the final state and the gradients of Σ cot · y (+ Σ cotS · S with a state) w.r.t. q, k, v (and s0). */
type Run = (x: { q: tf.Tensor4D; k: tf.Tensor4D; v: tf.Tensor4D; s0?: tf.Tensor4D }) => {
  y: tf.Tensor4D;
  s?: tf.Tensor4D;
};

function valuesAndGrads(c: Case, run: Run, withState: boolean): Float32Array[] {
  return tf.tidy(() => {
    const t = tensorsOf(c);
    const loss = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, s0?: tf.Tensor) => {
      const r = run({ q, k, v, ...(s0 ? { s0 } : {}) } as never);
      const main = tf.sum(tf.mul(r.y, t.cot));
      return r.s ? tf.add(main, tf.sum(tf.mul(r.s, t.cotS))) : main;
    };
    const r = run({ q: t.q, k: t.k, v: t.v, ...(withState ? { s0: t.s0 } : {}) });
    const grads = withState
      ? tf.grads((q, k, v, s0) => loss(q, k, v, s0))([t.q, t.k, t.v, t.s0])
      : tf.grads((q, k, v) => loss(q, k, v))([t.q, t.k, t.v]);
    const outs = [r.y, ...(r.s ? [r.s] : []), ...grads];
    return outs.map((x) => Float32Array.from(x.dataSync() as Float32Array));
  });
}

/** The naive masked product, built explicitly: (Q Kᵀ ⊙ L) V (+ Q S₀), and S₀ + Kᵀ V; tfjs differentiates it. */
function naive(reverse: boolean): Run {
  return ({ q, k, v, s0 }) => {
    const n = q.shape[2];
    const mask = tf.linalg.bandPart(tf.ones([n, n]), reverse ? 0 : -1, reverse ? -1 : 0); // [n, n]
    let y = tf.matMul(tf.mul(tf.matMul(q, k, false, true), mask), v) as tf.Tensor4D; // [b, h, n, dv]
    if (!s0) return { y };
    y = tf.add(y, tf.matMul(q, s0));
    return { y, s: tf.add(s0, tf.matMul(k, v, true, false)) as tf.Tensor4D };
  };
}

function fused(reverse: boolean, chunkSize: number): Run {
  return ({ q, k, v, s0 }) => {
    if (!s0) return { y: causalProduct({ q, k, v }, { reverse, chunkSize }) };
    const r = causalProductWithState({ q, k, v }, { reverse, chunkSize, state: s0 });
    return { y: r.output, s: r.state };
  };
}

/** The bounds B of [y, (S), dq, dk, dv, (ds0)] of a case, in the order valuesAndGrads returns them. */
function boundsOf(c: Case, reverse: boolean, withState: boolean): Float64Array[] {
  const { n, m, dv } = c;
  const s0 = withState ? c.s0 : undefined;
  const cotS = withState ? c.cotS : undefined;
  const y = absProduct(c.q, c.k, c.v, { n, p: m, r: dv, reverse, s0 });
  // dQ = tril(dY Vᵀ) K + dY S₀ᵀ; dK = triu(V dYᵀ) Q + V dSᵀ; dV = triu(K Qᵀ) dY + K dS; dS₀ = Qᵀ dY + dS.
  const dq = absProduct(c.cot, c.v, c.k, { n, p: dv, r: m, reverse, s0: s0 && transposed(s0, m, dv) });
  const dk = absProduct(c.v, c.cot, c.q, { n, p: dv, r: m, reverse: !reverse, s0: cotS && transposed(cotS, m, dv) });
  const dvb = absProduct(c.k, c.q, c.cot, { n, p: m, r: dv, reverse: !reverse, s0: cotS });
  if (!withState) return [y, dq, dk, dvb];
  const s = absStateSum(c.k, c.v, { n, p: m, r: dv }, c.s0);
  const ds0 = absStateSum(c.q, c.cot, { n, p: m, r: dv }, c.cotS);
  return [y, s, dq, dk, dvb, ds0];
}

const NAMES = ["y", "dq", "dk", "dv"];
const STATE_NAMES = ["y", "S", "dq", "dk", "dv", "ds0"];

/** Features and chunk sizes per length: m ≠ dv both ways, chunk edges (C = 1, 7, 16, 64 and C > n). */
const SHAPES: { m: number; dv: number; chunkSize: number }[] = [
  { m: 5, dv: 3, chunkSize: 64 },
  { m: 3, dv: 7, chunkSize: 16 },
  { m: 16, dv: 16, chunkSize: 7 },
  { m: 4, dv: 1, chunkSize: 1 },
  { m: 1, dv: 4, chunkSize: 200 },
];

for (const backend of BACKENDS) {
  Deno.test(`causal product (${backend}): outputs and gradients equal the naive masked product, both directions`, async (t) => {
    let seed = 0;
    for (const n of LENGTHS) {
      for (const { m, dv, chunkSize } of SHAPES) {
        for (const reverse of [false, true]) {
          for (const withState of [false, true]) {
            const what = `n=${n} m=${m} dv=${dv} C=${chunkSize}${reverse ? " reverse" : ""}${
              withState ? " with S₀" : ""
            }`;
            await t.step(what, async () => {
              const c = makeCase({ n, m, dv }, 10 * seed++);
              const want = await onBackend("cpu", () => valuesAndGrads(c, naive(reverse), withState));
              const got = await onBackend(backend, () => valuesAndGrads(c, fused(reverse, chunkSize), withState));
              const bounds = boundsOf(c, reverse, withState);
              const rounds = Math.max(m, dv) + n + 2;
              (withState ? STATE_NAMES : NAMES).forEach((name, i) => {
                assertWithinBound(`${what}: ${name}`, got[i], want[i], { bound: bounds[i], rounds });
              });
            });
          }
        }
      }
    }
  });

  Deno.test(`decayed causal product (${backend}): outputs and gradients equal (Q Kᵀ ⊙ D) V, both directions`, async (t) => {
    // D_ij = γ_h^|i−j| where row i sees key j: built here in float64 from the definition, rounded once. The decayed
    // terms are no larger than the plain ones, so the plain bound B holds, with more roundings per term: the power
    // (1), its product (1), the row's state share (1) and the state's decay once per later chunk (⌈n/C⌉).
    const decayed = (reverse: boolean, gammas: number[]): Run => ({ q, k, v }) => {
      const n = q.shape[2];
      const d = new Float32Array(H * n * n);
      gammas.forEach((g, h) => {
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < n; j++) if (reverse ? j >= i : j <= i) d[(h * n + i) * n + j] = g ** Math.abs(i - j);
        }
      });
      return { y: tf.matMul(tf.mul(tf.matMul(q, k, false, true), tf.tensor3d(d, [H, n, n])), v) as tf.Tensor4D };
    };
    let seed = 5000;
    for (const n of LENGTHS) {
      for (const { m, dv, chunkSize } of SHAPES) {
        for (const reverse of [false, true]) {
          // One γ per head (RetNet's first two), and one for both heads given as a number.
          for (const decay of [[0.96875, 0.5], 0.9]) {
            const gammas = typeof decay === "number" ? [decay, decay] : decay;
            const what = `n=${n} m=${m} dv=${dv} C=${chunkSize}${reverse ? " reverse" : ""} γ=${gammas}`;
            await t.step(what, async () => {
              const c = makeCase({ n, m, dv }, 10 * seed++);
              const want = await onBackend("cpu", () => valuesAndGrads(c, decayed(reverse, gammas), false));
              const got = await onBackend(
                backend,
                () =>
                  valuesAndGrads(
                    c,
                    ({ q, k, v }) => ({ y: causalProduct({ q, k, v }, { reverse, chunkSize, decay }) }),
                    false,
                  ),
              );
              const bounds = boundsOf(c, reverse, false);
              const rounds = Math.max(m, dv) + n + 5 + Math.ceil(n / Math.min(chunkSize, n));
              NAMES.forEach((name, i) => {
                assertWithinBound(`${what}: ${name}`, got[i], want[i], { bound: bounds[i], rounds });
              });
            });
          }
        }
      }
    }
  });

  Deno.test(`causal product (${backend}): running [0, s) then [s, n) from the carried state equals one run`, async (t) => {
    const n = 130;
    for (const reverse of [false, true]) {
      for (const s of [1, 64, 100, 129]) {
        await t.step(`s=${s}${reverse ? " reverse" : ""}`, async () => {
          const c = makeCase({ n, m: 6, dv: 5 }, 1000 + s);
          const split: Run = ({ q, k, v, s0 }) => {
            const part = (x: tf.Tensor4D, from: number, size: number) =>
              tf.slice(x, [0, 0, from, 0], [-1, -1, size, -1]) as tf.Tensor4D;
            const head = { q: part(q, 0, s), k: part(k, 0, s), v: part(v, 0, s) };
            const tail = { q: part(q, s, n - s), k: part(k, s, n - s), v: part(v, s, n - s) };
            // Causal: the head first, its state carried into the tail; anti-causal: the other way round.
            const [first, second] = reverse ? [tail, head] : [head, tail];
            const a = causalProductWithState(first, { reverse, chunkSize: 16, state: s0 });
            const b = causalProductWithState(second, { reverse, chunkSize: 16, state: a.state });
            return { y: tf.concat(reverse ? [b.output, a.output] : [a.output, b.output], 2), s: b.state };
          };
          const want = await onBackend("cpu", () => valuesAndGrads(c, naive(reverse), true));
          const got = await onBackend(backend, () => valuesAndGrads(c, split, true));
          const bounds = boundsOf(c, reverse, true);
          STATE_NAMES.forEach((name, i) => {
            assertWithinBound(`s=${s}: ${name}`, got[i], want[i], { bound: bounds[i], rounds: 6 + n + 2 });
          });
        });
      }
    }
  });

  Deno.test(`kernel attention (${backend}): naive ≡ tf-op chunked ≡ fused ≡ recurrent, outputs and states`, async (t) => {
    // Positive features (elu + 1 is positive): every term of the row sum D_i = Σ_j φ(q_i)·φ(k_j) + φ(q_i)·z₀ + eps is
    // positive, so D_i is within R · 2⁻²⁴ of exact relatively, the numerator N_i within R · 2⁻²⁴ · B_N (B_N =
    // Σ_j φ(q_i)·φ(k_j) |v_j| + φ(q_i) |S₀|), and N_i / D_i, rounded once more, within (2R + 2) · 2⁻²⁴ · B_N / D_i,
    // as |N_i| ≤ B_N. Each form is held to that bound around the exact value, computed in float64.
    for (const normalize of [true, false]) {
      for (const n of [1, 65, 130]) {
        for (const withState of [false, true]) {
          const what = `n=${n}${normalize ? "" : " unnormalised"}${withState ? " from a state" : ""}`;
          await t.step(what, async () => {
            const m = 4, dv = 3, eps = 1e-6;
            const c = makeCase({ n, m, dv }, 7 * n + (withState ? 1 : 0));
            const fq = c.q.map((x) => Math.exp(x / 2));
            const fk = c.k.map((x) => Math.exp(x / 2));
            const z0 = withState ? normals(SLICES * m, 99).map((x) => Math.abs(x) * n) : new Float32Array(SLICES * m);
            const s0 = withState ? c.s0 : new Float32Array(SLICES * m * dv);
            const exact = exactKernelAttention({ fq, fk, v: c.v, s0, z0 }, { n, m, dv, eps, normalize });
            const rounds = m + n + 2;
            const check = (form: string, got: Float32Array[]) => {
              const [output, s, z] = got;
              const factor = (2 * rounds + 2) * 2 ** -24;
              output.forEach((x, i) => {
                const bound = factor * exact.bound[i];
                assert.ok(
                  Math.abs(x - exact.output[i]) <= bound,
                  `${what}, ${form}: output ${i}: ${x} vs ${exact.output[i]} (bound ${bound})`,
                );
              });
              if (s === undefined) return;
              assertWithinBound(`${what}, ${form}: S`, s, Float32Array.from(exact.s), { bound: exact.sBound, rounds });
              assertWithinBound(`${what}, ${form}: z`, z, Float32Array.from(exact.z), { bound: exact.z, rounds });
            };
            const got = await onBackend(backend, () =>
              tf.tidy(() => {
                const features = {
                  fq: tf.tensor4d(fq, [B, H, n, m]),
                  fk: tf.tensor4d(fk, [B, H, n, m]),
                  v: tf.tensor4d(c.v, [B, H, n, dv]),
                };
                const state = withState
                  ? { s: tf.tensor4d(s0, [B, H, m, dv]), z: tf.tensor3d(z0, [B, H, m]) }
                  : undefined;
                const options = { normalize, eps, chunkSize: 16, ...(state ? { state } : {}) };
                const read = (r: { output: tf.Tensor; state?: KernelState }) =>
                  [r.output, ...(r.state ? [r.state.s, r.state.z] : [])].map((x) =>
                    Float32Array.from(x.dataSync() as Float32Array)
                  );
                const forms: Record<string, Float32Array[]> = {
                  chunked: read(kernelChunked(features, options)),
                  fused: read(kernelFused(features, options)),
                  recurrent: read(recurrentRun(features, { normalize, eps, state })),
                };
                if (!withState) {
                  forms.attend = read({ output: kernelAttend(features, { ...options, causal: true }) });
                  const weights = kernelMatrix(features, { causal: true, normalize, eps });
                  forms.naive = read({ output: tf.matMul(weights, features.v) });
                }
                return forms;
              }));
            for (const [form, values] of Object.entries(got)) check(form, values);
          });
        }
      }
    }
  });
}

/**
 * Bounds of the gradients of normalised causal attention through the cotangent g, in float64, with positive features
 * (a_ij = q_i · k_j > 0, den_i = Σ_{j ≤ i} a_ij + eps, B_out,i = Σ_{j ≤ i} a_ij |v_j| / den_i ≥ |out_i|): the sums of the
 * absolute terms of ∂L/∂a_ij = (g_i · v_j − g_i · out_i) / den_i times k_j (dQ) or q_i (dK), and of a_ij g_i / den_i
 * (dV).
 */
function attentionGradBounds(
  x: { q: Float32Array; k: Float32Array; v: Float32Array; cot: Float32Array },
  d: { n: number; m: number; dv: number; eps: number },
): Float64Array[] {
  const { n, m, dv, eps } = d;
  const [dq, dk, dvb] = [SLICES * n * m, SLICES * n * m, SLICES * n * dv].map((size) => new Float64Array(size));
  for (let s = 0; s < SLICES; s++) {
    const a = (i: number, j: number) => {
      let dot = 0;
      for (let t = 0; t < m; t++) dot += x.q[(s * n + i) * m + t] * x.k[(s * n + j) * m + t];
      return dot;
    };
    for (let i = 0; i < n; i++) {
      const row = Array.from({ length: i + 1 }, (_, j) => a(i, j));
      const den = row.reduce((p, y) => p + y, eps);
      const g = (e: number) => Math.abs(x.cot[(s * n + i) * dv + e]);
      const vAbs = (j: number, e: number) => Math.abs(x.v[(s * n + j) * dv + e]);
      let gOut = 0;
      for (let e = 0; e < dv; e++) gOut += g(e) * row.reduce((p, y, j) => p + y * vAbs(j, e), 0) / den;
      for (let j = 0; j <= i; j++) {
        let gv = 0;
        for (let e = 0; e < dv; e++) gv += g(e) * vAbs(j, e);
        const w = (gv + gOut) / den;
        for (let t = 0; t < m; t++) {
          dq[(s * n + i) * m + t] += w * Math.abs(x.k[(s * n + j) * m + t]);
          dk[(s * n + j) * m + t] += w * Math.abs(x.q[(s * n + i) * m + t]);
        }
        for (let e = 0; e < dv; e++) dvb[(s * n + j) * dv + e] += row[j] * g(e) / den;
      }
    }
  }
  return [dq, dk, dvb];
}

for (const backend of BACKENDS) {
  Deno.test(`causal attention (${backend}): gradients equal the naive normalised product's`, async (t) => {
    // Rounding count. The naive product's gradient (tfjs's, of (A / (rowsum(A) + eps)) V with A = Q Kᵀ masked) passes
    // the most: A takes m roundings, its row sum plus eps n more; through the division, a term of dA picks up dY Vᵀ
    // (dv), A (m), den² (2(m + n) + 1) and the sum over the row (n), then dQ = dA K or dK = dAᵀ Q adds n: at most
    // 3m + 4n + dv + 4, or dv + m + n + 2 for dV. The fused kernel has fewer: its row sums are in doubles, rounded
    // once, and its products as in the causal product. R = 3m + 4n + dv + 13 covers both with room.
    for (const n of LENGTHS) {
      for (const { m, dv, chunkSize } of SHAPES) {
        const what = `n=${n} m=${m} dv=${dv} C=${chunkSize}`;
        await t.step(what, async () => {
          const c = makeCase({ n, m, dv }, 31 * n + m);
          const x = { q: c.q.map((y) => Math.exp(y / 2)), k: c.k.map((y) => Math.exp(y / 2)), v: c.v, cot: c.cot };
          const eps = 1e-6;
          const grads = (f: (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D) => () =>
            tf.tidy(() => {
              const { inputs, cot } = attentionTensors(x, { n, m, dv });
              const gs = tf.grads((q, k, v) =>
                tf.sum(tf.mul(f(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D), cot))
              )(inputs);
              return gs.map((g) => Float32Array.from(g.dataSync() as Float32Array));
            });
          const naiveAttention = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) =>
            tf.matMul(kernelMatrix({ fq: q, fk: k }, { causal: true, normalize: true, eps }), v) as tf.Tensor4D;
          const want = await onBackend("cpu", grads(naiveAttention));
          const got = await onBackend(backend, grads((q, k, v) => causalAttention({ q, k, v }, { eps, chunkSize })));
          const bounds = attentionGradBounds(x, { n, m, dv, eps });
          const rounds = 3 * m + 4 * n + dv + 13;
          ["dq", "dk", "dv"].forEach((name, i) => {
            assertWithinBound(`${what}: ${name}`, got[i], want[i], { bound: bounds[i], rounds });
          });
        });
      }
    }
  });
}

Deno.test({
  name: "causal attention (blas): a gradient taken inside another recording (differentiable ops) agrees too",
  ignore: !HAS_BLAS,
  fn: async () => {
    // Inside an outer tf.grad the kernel's gradient runs as causal products in tf ops (so it can be differentiated
    // again): the same values, to the bound of the previous test.
    const n = 65, m = 4, dv = 3, eps = 1e-6;
    const c = makeCase({ n, m, dv }, 404);
    const x = { q: c.q.map((y) => Math.exp(y / 2)), k: c.k.map((y) => Math.exp(y / 2)), v: c.v, cot: c.cot };
    const run = (f: (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D, nested: boolean) => () =>
      tf.tidy(() => {
        const { inputs, cot } = attentionTensors(x, { n, m, dv });
        const inner = () =>
          tf.grads((q, k, v) => tf.sum(tf.mul(f(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D), cot)))(inputs);
        let values: Float32Array[] = [];
        if (!nested) values = inner().map((g) => Float32Array.from(g.dataSync() as Float32Array));
        else {
          tf.grad((s: tf.Tensor) => {
            const gs = inner();
            values = gs.map((g) => Float32Array.from(g.dataSync() as Float32Array));
            return tf.mul(s, tf.sum(gs[0]));
          })(tf.scalar(1));
        }
        return values;
      });
    const naiveAttention = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) =>
      tf.matMul(kernelMatrix({ fq: q, fk: k }, { causal: true, normalize: true, eps }), v) as tf.Tensor4D;
    const want = await onBackend("cpu", run(naiveAttention, false));
    const profile = await onBackend(
      "blas",
      () => tf.profile(run((q, k, v) => causalAttention({ q, k, v }, { eps, chunkSize: 16 }), true)),
    );
    const got = profile.result as Float32Array[];
    // The path under test: no gradient kernel, three products (dQ, dK, dV).
    const names = profile.kernels.map((k) => k.name);
    assert.equal(names.filter((name) => name === CAUSAL_ATTENTION_GRAD).length, 0);
    assert.equal(names.filter((name) => name === CAUSAL_PRODUCT).length, 3);
    const bounds = attentionGradBounds(x, { n, m, dv, eps });
    ["dq", "dk", "dv"].forEach((name, i) => {
      assertWithinBound(`nested: ${name}`, got[i], want[i], { bound: bounds[i], rounds: 3 * m + 4 * n + dv + 13 });
    });
  },
});

/** Kernel attention token by token with kernelStep, from `state` (zeros when absent). */
function recurrentRun(
  features: { fq: tf.Tensor4D; fk: tf.Tensor4D; v: tf.Tensor4D },
  options: { normalize: boolean; eps: number; state?: KernelState },
): { output: tf.Tensor4D; state: KernelState } {
  const [b, h, n, m] = features.fq.shape;
  const dv = features.v.shape[3];
  let state = options.state ?? { s: tf.zeros([b, h, m, dv]) as tf.Tensor4D, z: tf.zeros([b, h, m]) as tf.Tensor3D };
  const outputs: tf.Tensor3D[] = [];
  const token = (x: tf.Tensor4D, i: number) =>
    tf.squeeze(tf.slice(x, [0, 0, i, 0], [-1, -1, 1, -1]), [2]) as tf.Tensor3D;
  for (let i = 0; i < n; i++) {
    const run = kernelStep(
      { fq: token(features.fq, i), fk: token(features.fk, i), v: token(features.v, i) },
      { normalize: options.normalize, eps: options.eps, state },
    );
    outputs.push(run.output);
    state = run.state;
  }
  return { output: tf.stack(outputs, 2) as tf.Tensor4D, state };
}

/** Normalised (or raw) causal kernel attention from (S₀, z₀) in float64, with each output's bound B_N / D. */
function exactKernelAttention(
  x: { fq: Float32Array; fk: Float32Array; v: Float32Array; s0: Float32Array; z0: Float32Array },
  d: { n: number; m: number; dv: number; eps: number; normalize: boolean },
): { output: Float64Array; bound: Float64Array; s: Float64Array; sBound: Float64Array; z: Float64Array } {
  const { n, m, dv, eps, normalize } = d;
  const output = new Float64Array(SLICES * n * dv);
  const bound = new Float64Array(SLICES * n * dv);
  for (let sl = 0; sl < SLICES; sl++) {
    for (let i = 0; i < n; i++) {
      const num = new Float64Array(dv);
      const abs = new Float64Array(dv);
      let den = eps;
      const qi = (sl * n + i) * m;
      for (let t = 0; t < m; t++) {
        den += x.fq[qi + t] * x.z0[sl * m + t];
        for (let e = 0; e < dv; e++) {
          const term = x.fq[qi + t] * x.s0[(sl * m + t) * dv + e];
          num[e] += term;
          abs[e] += Math.abs(term);
        }
      }
      for (let j = 0; j <= i; j++) {
        let a = 0;
        for (let t = 0; t < m; t++) a += x.fq[qi + t] * x.fk[(sl * n + j) * m + t];
        den += a;
        for (let e = 0; e < dv; e++) {
          num[e] += a * x.v[(sl * n + j) * dv + e];
          abs[e] += a * Math.abs(x.v[(sl * n + j) * dv + e]);
        }
      }
      for (let e = 0; e < dv; e++) {
        output[(sl * n + i) * dv + e] = normalize ? num[e] / den : num[e];
        bound[(sl * n + i) * dv + e] = normalize ? abs[e] / den : abs[e];
      }
    }
  }
  const sBound = absStateSum(x.fk, x.v, { n, p: m, r: dv }, x.s0);
  const s = Float64Array.from(x.s0);
  const z = Float64Array.from(x.z0);
  for (let sl = 0; sl < SLICES; sl++) {
    for (let j = 0; j < n; j++) {
      for (let t = 0; t < m; t++) {
        const k = x.fk[(sl * n + j) * m + t];
        z[sl * m + t] += k;
        for (let e = 0; e < dv; e++) s[(sl * m + t) * dv + e] += k * x.v[(sl * n + j) * dv + e];
      }
    }
  }
  return { output, bound, s, sBound, z };
}

Deno.test({
  name: "causal product (blas): runs as one kernel forward and three backward; kernel attention too",
  ignore: !HAS_BLAS,
  fn: async () => {
    const names = [CAUSAL_PRODUCT, CAUSAL_PRODUCT_STATE, CAUSAL_ATTENTION, CAUSAL_ATTENTION_GRAD];
    assert.ok(names.every((name) => name in fastKernels()), "fastKernels registers the four kernels");
    assert.deepEqual(Object.keys(fusedCausalKernels()).sort(), names.sort());
    const counts = await onBackend("blas", async () => {
      const c = makeCase({ n: 70, m: 4, dv: 3 }, 5);
      const t = tensorsOf(c);
      const profiled = async (f: () => tf.Tensor[]) => {
        const profile = await tf.profile(() => tf.tidy(f));
        tf.dispose(profile.result as tf.Tensor[]);
        const names = profile.kernels.map((k) => k.name);
        return {
          plain: names.filter((x) => x === CAUSAL_PRODUCT).length,
          state: names.filter((x) => x === CAUSAL_PRODUCT_STATE).length,
          attention: names.filter((x) => x === CAUSAL_ATTENTION || x === CAUSAL_ATTENTION_GRAD).length,
          matMuls: names.filter((x) => x === tf.BatchMatMul).length,
        };
      };
      const plain = await profiled(() =>
        tf.grads((q, k, v) => tf.sum(tf.mul(causalProduct({ q, k, v } as never), t.cot)))([t.q, t.k, t.v])
      );
      const attend = (normalize: boolean) =>
        profiled(() =>
          tf.grads((q, k, v) =>
            tf.sum(tf.mul(
              kernelAttend({ fq: q, fk: k, v } as never, { causal: true, normalize, eps: 1e-6, chunkSize: 64 }),
              t.cot,
            ))
          )([tf.abs(t.q), tf.abs(t.k), t.v])
        );
      const normalised = await attend(true);
      const raw = await attend(false);
      const stateful = await profiled(() =>
        tf.grads((q, k, v, s0) => {
          const r = causalProductWithState({ q, k, v } as never, { state: s0 as tf.Tensor4D });
          return tf.add(tf.sum(tf.mul(r.output, t.cot)), tf.sum(tf.mul(r.state, t.cotS)));
        })([t.q, t.k, t.v, t.s0])
      );
      tf.dispose(Object.values(t));
      return { plain, normalised, raw, stateful };
    });
    assert.deepEqual(counts.plain, { plain: 4, state: 0, attention: 0, matMuls: 0 });
    // Normalised: the attention kernel and its gradient kernel; NormAttention's raw product: four products.
    assert.deepEqual(counts.normalised, { plain: 0, state: 0, attention: 2, matMuls: 0 });
    assert.deepEqual(counts.raw, { plain: 4, state: 0, attention: 0, matMuls: 0 });
    // dS₀ = Qᵀ dY + dS is one matmul.
    assert.deepEqual(counts.stateful, { plain: 0, state: 4, attention: 0, matMuls: 1 });
  },
});

Deno.test({
  name: "causal product (blas): a second-order gradient equals the naive product's",
  ignore: !HAS_BLAS,
  fn: async () => {
    // d/dv Σ w · dQ with dQ = tril(dY Vᵀ) K is the anti-causal product of (K, w, dY): its bound is that product's B.
    const c = makeCase({ n: 65, m: 4, dv: 3 }, 21);
    const w = normals(SLICES * 65 * 4, 77);
    for (const reverse of [false, true]) {
      const second = (run: Run) => () =>
        tf.tidy(() => {
          const t = tensorsOf(c);
          const wt = tf.tensor4d(w, [B, H, 65, 4]);
          const g = tf.grad((v: tf.Tensor) => {
            const dq = tf.grad((q: tf.Tensor) => tf.sum(tf.mul(run({ q, k: t.k, v } as never).y, t.cot)))(t.q);
            return tf.sum(tf.mul(dq, wt));
          })(t.v);
          return Float32Array.from(g.dataSync() as Float32Array);
        });
      const want = await onBackend("cpu", second(naive(reverse)));
      const got = await onBackend("blas", second(fused(reverse, 16)));
      const bound = absProduct(c.k, w, c.cot, { n: 65, p: 4, r: 3, reverse: !reverse });
      assertWithinBound(`reverse=${reverse}: d²`, got, want, { bound, rounds: 4 + 65 + 2 });
    }
  },
});

Deno.test("causal product: bad input is a TypeError or RangeError naming the argument", async () => {
  await onBackend("cpu", () => {
    const q = tf.zeros([1, 2, 5, 3]) as tf.Tensor4D;
    const v = tf.zeros([1, 2, 5, 4]) as tf.Tensor4D;
    const cases: [string, () => unknown, ErrorConstructor, RegExp][] = [
      ["no object", () => causalProduct(null as never), TypeError, /first argument must be \{ q, k, v \}/],
      ["q not a tensor", () => causalProduct({ q: [1] as never, k: q, v }), TypeError, /q must be a tf.Tensor4D/],
      [
        "k of rank 3",
        () => causalProduct({ q, k: tf.zeros([2, 5, 3]) as never, v }),
        TypeError,
        /k must be a tf.Tensor4D/,
      ],
      [
        "v int32",
        () => causalProduct({ q, k: q, v: tf.zeros([1, 2, 5, 4], "int32") as never }),
        TypeError,
        /v must be float32/,
      ],
      [
        "k's shape",
        () => causalProduct({ q, k: tf.zeros([1, 2, 5, 2]) as never, v }),
        RangeError,
        /q and k must have one shape/,
      ],
      [
        "v's length",
        () => causalProduct({ q, k: q, v: tf.zeros([1, 2, 4, 4]) as never }),
        RangeError,
        /v must be \[batch, heads, n, dv\]/,
      ],
      [
        "chunkSize 0",
        () => causalProduct({ q, k: q, v }, { chunkSize: 0 }),
        RangeError,
        /chunkSize must be an integer >= 1, got 0/,
      ],
      [
        "chunkSize 1.5",
        () => causalProduct({ q, k: q, v }, { chunkSize: 1.5 }),
        RangeError,
        /chunkSize must be an integer/,
      ],
      [
        "chunkSize text",
        () => causalProduct({ q, k: q, v }, { chunkSize: "8" as never }),
        TypeError,
        /chunkSize must be a number/,
      ],
      [
        "decay of 3 heads",
        () => causalProduct({ q, k: q, v }, { decay: [0.9, 0.9, 0.9] }),
        RangeError,
        /decay has 3 values but the input has 2 heads/,
      ],
      ["decay 0", () => causalProduct({ q, k: q, v }, { decay: 0 }), RangeError, /decay must be in \(0, 1\], got 0/],
      [
        "decay 1.5",
        () => causalProduct({ q, k: q, v }, { decay: [0.5, 1.5] }),
        RangeError,
        /decay must be in \(0, 1\], got 1.5/,
      ],
      [
        "decay NaN",
        () => causalProduct({ q, k: q, v }, { decay: NaN }),
        RangeError,
        /decay must be in \(0, 1\], got NaN/,
      ],
      [
        "decay text",
        () => causalProduct({ q, k: q, v }, { decay: "0.9" as never }),
        TypeError,
        /decay must be a number, one number per head, or null/,
      ],
      [
        "decay on the state form",
        () => causalProductWithState({ q, k: q, v }, { decay: 0.9 } as never),
        TypeError,
        /unknown option "decay"/,
      ],
      [
        "reverse text",
        () => causalProduct({ q, k: q, v }, { reverse: "yes" as never }),
        TypeError,
        /reverse must be a boolean/,
      ],
      [
        "unknown option",
        () => causalProduct({ q, k: q, v }, { state: q } as never),
        TypeError,
        /unknown option "state"/,
      ],
      ["options null", () => causalProduct({ q, k: q, v }, null as never), TypeError, /options must be an object/],
      [
        "state's shape",
        () => causalProductWithState({ q, k: q, v }, { state: tf.zeros([1, 2, 4, 3]) as tf.Tensor4D }),
        RangeError,
        /options.state must have shape \[1,2,3,4\]/,
      ],
      [
        "eps negative",
        () => causalAttention({ q, k: q, v }, { eps: -1 }),
        RangeError,
        /options.eps must be finite and >= 0/,
      ],
      [
        "eps text",
        () => causalAttention({ q, k: q, v }, { eps: "0" as never }),
        TypeError,
        /options.eps must be a number/,
      ],
      [
        "attention reverse",
        () => causalAttention({ q, k: q, v }, { reverse: true } as never),
        TypeError,
        /unknown option "reverse"/,
      ],
      [
        "state not a tensor",
        () => causalProductWithState({ q, k: q, v }, { state: 1 as never }),
        TypeError,
        /options.state must be a float32/,
      ],
    ];
    for (const [what, f, kind, message] of cases) {
      // In a tidy: the wrongly shaped tensors a case makes are disposed with it.
      tf.tidy(() => assert.throws(f, (err: Error) => err instanceof kind && message.test(err.message), what));
    }
    tf.dispose([q, v]);
  });
});

Deno.test("causal product: zero-length sequences give empty outputs and carry the state through", async () => {
  for (const backend of BACKENDS) {
    await onBackend(backend, () => {
      tf.tidy(() => {
        const q = tf.zeros([1, 2, 0, 3]) as tf.Tensor4D;
        const v = tf.zeros([1, 2, 0, 4]) as tf.Tensor4D;
        assert.deepEqual(causalProduct({ q, k: q, v }).shape, [1, 2, 0, 4]);
        const state = tf.fill([1, 2, 3, 4], 2) as tf.Tensor4D;
        const r = causalProductWithState({ q, k: q, v }, { state });
        assert.deepEqual(r.output.shape, [1, 2, 0, 4]);
        assert.deepEqual(Array.from(r.state.dataSync()), Array(24).fill(2));
      });
    });
  }
});

Deno.test({
  name:
    "causal product (blas): the kernels run their products on the sgemm they are given; the BLAS's and oneDNN's agree",
  ignore: !HAS_BLAS,
  fn: async () => {
    const lib = dnnl();
    await onBackend("blas", () => {
      const backend = tf.backend() as unknown as KernelArgs["backend"];
      const c = makeCase({ n: 130, m: 5, dv: 3 }, 17);
      const t = tensorsOf(c);
      const inputs = { q: t.q, k: t.k, v: t.v } as unknown as KernelArgs["inputs"];
      const run = (kernels: Record<string, Kernel>) => {
        const out = kernels[CAUSAL_PRODUCT]({ inputs, backend, attrs: { chunkSize: 64 } }) as TensorInfo;
        const values = Float32Array.from(backend.readSync(out.dataId) as Float32Array);
        backend.disposeData(out.dataId);
        return values;
      };
      let calls = 0;
      const counting = (args: SgemmArgs) => {
        calls++;
        openBlas().sgemm(args);
      };
      const viaBlas = run(fusedCausalKernels());
      const counted = run(fusedCausalKernels({ sgemm: counting }));
      // Per slice: chunks 64, 64, 2, each a block and its product, then a state product and (but the last) an update.
      assert.equal(calls, SLICES * (3 * 2 + 2 + 2));
      assert.deepEqual(counted, viaBlas, "the same sgemm gives the same bits");
      if (lib !== undefined) {
        const viaDnnl = run(fusedCausalKernels({ sgemm: (args) => lib.sgemm(args) }));
        const worst = viaDnnl.reduce(
          (w, x, i) => Math.max(w, Math.abs(x - viaBlas[i]) / (1 + Math.abs(viaBlas[i]))),
          0,
        );
        assert.ok(worst < 1e-5, `oneDNN's sgemm against the BLAS's: worst relative difference ${worst}`);
      }
      tf.dispose(Object.values(t));
    });
    assert.throws(() => fusedCausalKernels({ sgemm: 3 as never }), TypeError);
  },
});
