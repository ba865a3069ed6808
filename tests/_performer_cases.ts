/**
 * Shared by tests/performer_matrix_test.ts and tests/performer_fused_test.ts: seeded Performer inputs at a scale, the
 * float32 error allowed between two forms of the same quantity, and gradients through a seeded cotangent.
 *
 * The tolerance is that of tests/performer_test.ts: every form computes its exponents from the same float32
 * log-features, and a weight e^(ℓ_ij − s_i) moves, relative to itself, by about an ulp of the largest |log φ̂| (E) per
 * rounding of an exponent of that size; two forms round differently, so two ulps each (4 E ε32), plus 1e-5 for the
 * sums. An output is a weighted mean of the v_j, so its error is that times max |v|; a gradient's is that times the
 * largest entry of the case's reference gradients, or 1 if that is smaller (one scale for q, k and v: a gradient that
 * vanishes, like d/dq at n = 1, is held to the others' scale; and gradients that all vanish, where eps swamps every
 * kernel entry at large scales, to the unit scale of the N(0, 1) values and cotangent).
 */

import * as tf from "@tensorflow/tfjs";
import { loadableBackends } from "../lib/backend.ts";
import { favorLogFeatures, orthogonalRandomFeatures, performerFeatures } from "../lib/attention/performer.ts";
import type { QKV } from "../lib/attention/mod.ts";
import { randomNormal } from "../lib/random.ts";
import { assertClose, seededQKV } from "./helpers.ts";

export const DK = 8;
export const DV = 5;
export const M = performerFeatures(DK); // 17
const EPS32 = 2 ** -24;

/** The backends to run on: blas (where the fast forms run) when it loads here, and cpu. */
export const BACKENDS: ("blas" | "cpu")[] = (await loadableBackends()).includes("blas") ? ["blas", "cpu"] : ["cpu"];

/** Seeded q, k ~ N(0, scale²) [1, 2, n, 8] and v ~ N(0, 1) [1, 2, n, 5]. */
export function scaledQKV(options: { n: number; scale: number; seed: number }): QKV {
  const { n, scale, seed } = options;
  const qk = seededQKV({ b: 1, n, dk: DK, dv: DV, seed, std: scale });
  const v = randomNormal<tf.Tensor4D>([1, 2, n, DV], { seed: seed + 2 });
  qk.v.dispose();
  return { q: qk.q, k: qk.k, v };
}

/** The default projection of the performer variant at dk = 8 (seed 0), to read its log-features. */
export function defaultProjection(): tf.Tensor2D {
  return orthogonalRandomFeatures({ features: M, dk: DK, seed: 0 });
}

/** E: the largest |log φ̂| over q's and k's log-features under `projection`. */
export function largestLog(qk: { q: tf.Tensor4D; k: tf.Tensor4D }, projection: tf.Tensor2D): number {
  return tf.tidy(() => {
    const lf = tf.concat([favorLogFeatures(qk.q, { projection }), favorLogFeatures(qk.k, { projection })], 2);
    return tf.max(tf.abs(lf)).dataSync()[0];
  });
}

/** The relative float32 error allowed between two forms whose exponents reach E in size (module comment). */
export function relativeError(maxLog: number): number {
  return 1e-5 + 4 * EPS32 * maxLog;
}

/** max |x| over every tensor of xs. */
export function maxAbsOf(xs: tf.Tensor[]): number {
  return tf.tidy(() => Math.max(...xs.map((x) => tf.max(tf.abs(x)).dataSync()[0])));
}

/**
 * The gradients with respect to `inputs` of Σ f(inputs) · cot, for f of one or more tensors, cot seeded from `seed`.
 */
export function gradientsThrough(
  f: (...xs: tf.Tensor4D[]) => tf.Tensor,
  inputs: tf.Tensor4D[],
  seed: number,
): { out: tf.Tensor; grads: tf.Tensor[] } {
  const out = f(...inputs);
  const cot = randomNormal(out.shape, { seed });
  const grads = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...(xs as tf.Tensor4D[])), cot)))(inputs);
  return { out, grads };
}

/**
 * Asserts two forms agree on the output (within rel · outScale) and on every gradient (within rel · the largest
 * entry of the expected gradients, at least rel), naming the case.
 */
export function assertSameForms(
  actual: { out: tf.Tensor; grads: tf.Tensor[] },
  expected: { out: tf.Tensor; grads: tf.Tensor[] },
  options: { what: string; rel: number; outScale: number; names: string[] },
): void {
  const { what, rel, outScale, names } = options;
  assertClose(actual.out, expected.out, `${what}: output`, { atol: rel * outScale, rtol: 0 });
  const gradScale = Math.max(1, maxAbsOf(expected.grads));
  actual.grads.forEach((g, i) =>
    assertClose(g, expected.grads[i], `${what}: d/d${names[i]}`, { atol: rel * gradScale, rtol: 0 })
  );
}
