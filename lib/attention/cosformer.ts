/**
 * cosFormer (Qin et al., 2022): relu features re-weighted by cos(pi/2 (i - j) / M), M = n.
 * The weight decomposes as sin(a_i) sin(a_j) + cos(a_i) cos(a_j) with a_i = pi i / (2M), so
 * phi(q_i) = [relu(q_i) sin(a_i), relu(q_i) cos(a_i)] keeps it linear. Positions i run 1..n as in the authors' code.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { kernelAttend, lowerTriangle } from "./kernel.ts";
import type { AttentionOptions } from "./types.ts";
import { defineVariant } from "./variant.ts";

/** Options of {@linkcode cosformer}. */
export interface CosformerOptions extends AttentionOptions {
  /** Added to each row's denominator; default 1e-6. */
  eps?: number;
  /** Tokens per chunk of the causal chunkwise form; default 64. */
  chunkSize?: number;
  /**
   * M in cos(π/2 (i − j)/M); default null: M = n, the length of the sequence given. Set it to attend over the first n
   * tokens of a longer sequence of length M, as a token-by-token decoder of M tokens does.
   */
  maxLength?: number | null;
}

function angles(n: number, maxLength: number): tf.Tensor2D {
  return tf.tensor2d(Float32Array.from({ length: n }, (_, i) => (Math.PI / 2) * (i + 1) / maxLength), [n, 1]); // [n, 1]
}

function sequenceLength(n: number, maxLength: number | null | undefined): number {
  const m = maxLength ?? n;
  if (n > m) {
    throw new Error(
      `cosformer: the sequence has ${n} tokens but option maxLength is ${m}; ` +
        `cosFormer's weight cos(π/2 (i − j)/M) needs n ≤ M, so raise maxLength or leave it null (M = n)`,
    );
  }
  return m;
}

/**
 * cosFormer's features of x [b, h, n, d] -> [b, h, n, 2d]: [relu(x) sin(a), relu(x) cos(a)], a_i = π i / (2M) with M
 * = `maxLength` (default n).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { cosformerFeatures } from "./cosformer.ts";
 * console.log(cosformerFeatures(tf.ones([1, 1, 3, 2]) as tf.Tensor4D).shape.join(",")); // 1,1,3,4
 * ```
 */
export function cosformerFeatures(x: tf.Tensor4D, maxLength?: number | null): tf.Tensor4D {
  return tf.tidy(() => {
    const a = angles(x.shape[2], sequenceLength(x.shape[2], maxLength));
    const r = tf.relu(x); // [b, h, n, d]
    return tf.concat([tf.mul(r, tf.sin(a)), tf.mul(r, tf.cos(a))], 3) as tf.Tensor4D; // [b, h, n, 2d]
  });
}

/**
 * The `cosformer` variant. weights() is built directly from relu(Q) relu(K)^T * cos(pi/2 (i-j)/n),
 * row-normalised, so the test attend() == reference() checks the decomposition too.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { cosformer } from "./cosformer.ts";
 * const q = tf.randomNormal([1, 1, 5, 4]) as tf.Tensor4D;
 * const v = tf.randomNormal([1, 1, 5, 2]) as tf.Tensor4D;
 * const d = tf.sub(cosformer.attend({ q, k: q, v }), cosformer.reference({ q, k: q, v }));
 * console.log(tf.max(tf.abs(d)).dataSync()[0] < 1e-4); // true
 * ```
 */
export const cosformer = defineVariant<CosformerOptions>({
  name: "cosformer",
  defaults: { causal: false, eps: 1e-6, chunkSize: 64, maxLength: null },
  rules: {
    causal: { type: "boolean" },
    eps: { type: "number", min: 0 },
    chunkSize: { type: "number", min: 1, integer: true },
    maxLength: { type: "number", min: 1, integer: true, nullable: true },
  },
  weights: ({ q, k }, o) => {
    const n = q.shape[2];
    const m = sequenceLength(n, o.maxLength);
    const reweight = tf.tensor2d(
      Float32Array.from({ length: n * n }, (_, t) => Math.cos((Math.PI / 2) * (Math.floor(t / n) - (t % n)) / m)),
      [n, n],
    );
    let a: tf.Tensor4D = tf.mul(tf.matMul(tf.relu(q), tf.relu(k), false, true), reweight); // [b, h, n, n]
    if (o.causal) a = tf.mul(a, lowerTriangle(n));
    return tf.div(a, tf.add(tf.sum(a, -1, true), o.eps));
  },
  attend: ({ q, k, v }, o) =>
    kernelAttend(
      { fq: cosformerFeatures(q, o.maxLength), fk: cosformerFeatures(k, o.maxLength), v },
      { causal: o.causal, normalize: true, eps: o.eps, chunkSize: o.chunkSize },
    ),
});
