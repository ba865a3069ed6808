/**
 * Performer / FAVOR+ (Choromanski et al., 2021): positive orthogonal random features
 * phi(x) = m^(-1/2) exp(W x' - |x'|^2 / 2), x' = dk^(-1/4) x, so that
 * E[phi(q) . phi(k)] = exp(q . k / sqrt(dk)); then normalised linear attention.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { seededNormal } from "../random.ts";
import { kernelAttend, kernelMatrix } from "./kernel.ts";
import type { AttentionOptions } from "./types.ts";
import { defineVariant } from "./variant.ts";

/** Options of {@linkcode performer}. */
export interface PerformerOptions extends AttentionOptions {
  /** Number of random features m; default (null) ceil(dk ln dk), at least 1. */
  features?: number | null;
  /** Seed of the random projection; default 0. */
  seed?: number;
  /** An explicit [features, dk] projection; overrides seed (and must agree with features if both are given). */
  projection?: tf.Tensor2D | null;
  /** Added to each row's denominator; default 1e-9 (the stabilised features make row sums small). */
  eps?: number;
  /** Tokens per chunk of the causal chunkwise form; default 64. */
  chunkSize?: number;
}

/**
 * Positive orthogonal random features: [m, d] rows, orthogonal within each block of d rows
 * (Gram-Schmidt of a Gaussian matrix), each rescaled to the norm of an independent
 * d-dimensional Gaussian vector. Generated in JavaScript from the seed.
 *
 * @example
 * ```ts
 * import { orthogonalRandomFeatures } from "./performer.ts";
 * const w = orthogonalRandomFeatures({ features: 6, dk: 4, seed: 0 });
 * console.log(w.shape.join("x")); // 6x4
 * ```
 */
export function orthogonalRandomFeatures(options: { features: number; dk: number; seed: number }): tf.Tensor2D {
  const { features: m, dk: d, seed } = options;
  const gaussian = seededNormal(seed);
  const rows: Float64Array[] = [];
  while (rows.length < m) {
    const block: Float64Array[] = [];
    for (let r = 0; r < d; r++) {
      const row = Float64Array.from({ length: d }, gaussian);
      for (const prev of block) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += row[i] * prev[i];
        for (let i = 0; i < d; i++) row[i] -= dot * prev[i];
      }
      const len = Math.hypot(...row);
      for (let i = 0; i < d; i++) row[i] /= len;
      block.push(row);
    }
    rows.push(...block);
  }
  const data = new Float32Array(m * d);
  for (let r = 0; r < m; r++) {
    const chi = Math.hypot(...Array.from({ length: d }, gaussian));
    for (let i = 0; i < d; i++) data[r * d + i] = rows[r][i] * chi;
  }
  return tf.tensor2d(data, [m, d]);
}

/**
 * FAVOR+ features of x [b, h, n, dk] under projection w [m, dk] -> [b, h, n, m].
 * A max is subtracted inside exp for stability: per row for queries (it cancels in each
 * row's normalisation), one per (batch, head) for keys (it cancels across all keys).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { favorFeatures, orthogonalRandomFeatures } from "./performer.ts";
 * const w = orthogonalRandomFeatures({ features: 8, dk: 4, seed: 1 });
 * const f = favorFeatures(tf.randomNormal([1, 1, 3, 4]) as tf.Tensor4D, { projection: w, role: "query" });
 * console.log(f.shape.join(","), tf.min(f).dataSync()[0] > 0); // 1,1,3,8 true
 * ```
 */
export function favorFeatures(
  x: tf.Tensor4D,
  options: { projection: tf.Tensor2D; role: "query" | "key" },
): tf.Tensor4D {
  return tf.tidy(() => {
    const [m, dk] = options.projection.shape;
    const xs = tf.mul(x, Math.pow(dk, -0.25)); // [b, h, n, dk]
    const wx = tf.matMul(xs, options.projection, false, true); // [b, h, n, m]
    const half = tf.mul(tf.sum(tf.square(xs), -1, true), 0.5); // [b, h, n, 1]
    const stabiliser = options.role === "query" ? tf.max(wx, -1, true) : tf.max(wx, [2, 3], true);
    return tf.mul(tf.exp(tf.sub(tf.sub(wx, half), stabiliser)), 1 / Math.sqrt(m)) as tf.Tensor4D;
  });
}

function projectionFor(dk: number, o: Required<PerformerOptions>): tf.Tensor2D {
  if (o.projection !== null) {
    const [m, d] = o.projection.shape;
    if (d !== dk) {
      throw new Error(`performer: option projection must be [features, dk] with dk = ${dk}, got [${m}, ${d}]`);
    }
    if (o.features !== null && o.features !== m) {
      throw new Error(
        `performer: option features (${o.features}) disagrees with projection's ${m} rows; give only one`,
      );
    }
    return o.projection;
  }
  const features = o.features ?? Math.max(1, Math.ceil(dk * Math.log(dk)));
  return orthogonalRandomFeatures({ features, dk, seed: o.seed });
}

function features({ q, k }: { q: tf.Tensor4D; k: tf.Tensor4D }, o: Required<PerformerOptions>) {
  const projection = projectionFor(q.shape[3], o);
  return { fq: favorFeatures(q, { projection, role: "query" }), fk: favorFeatures(k, { projection, role: "key" }) };
}

/**
 * The `performer` variant. weights() is the row-normalised phi(Q) phi(K)^T, which approaches softmax's as features grow.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { performer } from "./performer.ts";
 * const q = tf.randomNormal([1, 1, 6, 4]) as tf.Tensor4D;
 * const w = performer.weights({ q, k: q }, { features: 64, seed: 3 });
 * console.log(Math.abs(tf.sum(w, -1).dataSync()[0] - 1) < 1e-4); // true
 * ```
 */
export const performer = defineVariant<PerformerOptions>({
  name: "performer",
  defaults: { causal: false, features: null, seed: 0, projection: null, eps: 1e-9, chunkSize: 64 },
  rules: {
    causal: { type: "boolean" },
    features: { type: "number", min: 1, integer: true, nullable: true },
    seed: { type: "number", min: 0, integer: true },
    projection: { type: "tensor", rank: 2, nullable: true },
    eps: { type: "number", min: 0 },
    chunkSize: { type: "number", min: 1, integer: true },
  },
  weights: (qk, o) => kernelMatrix(features(qk, o), { causal: o.causal, normalize: true, eps: o.eps }),
  attend: (qkv, o) =>
    kernelAttend({ ...features(qkv, o), v: qkv.v }, {
      causal: o.causal,
      normalize: true,
      eps: o.eps,
      chunkSize: o.chunkSize,
    }),
});
