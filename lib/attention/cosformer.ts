/**
 * cosFormer (Qin et al., 2022): relu features re-weighted by cos(pi/2 (i - j) / M), M = n.
 * The weight decomposes as sin(a_i) sin(a_j) + cos(a_i) cos(a_j) with a_i = pi i / (2M), so
 * phi(q_i) = [relu(q_i) sin(a_i), relu(q_i) cos(a_i)] keeps it linear. Positions i run 1..n as in the authors' code.
 * Its recurrent forms carry S [2dk, dv] and z [2dk] and need M (`maxLength`) in advance: O(dk dv) per token.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { kernelAttend, kernelFlops, kernelRecurrent, type KernelState, lowerTriangle } from "./kernel.ts";
import type { AttentionOptions } from "./types.ts";
import { defineVariant, zeroPadKeys } from "./variant.ts";
import { scaledReluPair } from "../blas/fused_features.ts";

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

// a_i = π/2 · i / M at the absolute positions i = position + 1 .. position + n.
function angles(n: number, options: { maxLength: number; position: number }): tf.Tensor2D {
  const { maxLength, position } = options;
  return tf.tensor2d(
    Float32Array.from({ length: n }, (_, i) => (Math.PI / 2) * (position + i + 1) / maxLength),
    [n, 1],
  ); // [n, 1]
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
 * = `maxLength` (default n) at the positions i = position + 1 .. position + n (`position` default 0: the sequence's
 * first tokens; a decoder passes the tokens it has consumed).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { cosformerFeatures } from "./cosformer.ts";
 * console.log(cosformerFeatures(tf.ones([1, 1, 3, 2]) as tf.Tensor4D).shape.join(",")); // 1,1,3,4
 * const late = cosformerFeatures(tf.ones([1, 1, 1, 1]) as tf.Tensor4D, { maxLength: 4, position: 3 });
 * console.log(Array.from(late.dataSync()).map((x) => x.toFixed(3)).join(" ")); // 1.000 -0.000
 * ```
 */
export function cosformerFeatures(
  x: tf.Tensor4D,
  options: { maxLength?: number | null; position?: number } = {},
): tf.Tensor4D {
  const { maxLength = null, position = 0 } = options;
  return tf.tidy(() => {
    const n = x.shape[2];
    const a = angles(n, { maxLength: sequenceLength(position + n, maxLength), position }); // [n, 1]
    // [relu(x) sin(a), relu(x) cos(a)]: one kernel each way on the blas backend, the composite's bits.
    return scaledReluPair(x, { a: tf.sin(a), b: tf.cos(a) }); // [b, h, n, 2d]
  });
}

function checkMaxLength(o: Required<CosformerOptions>, owner: string): void {
  if (o.maxLength === null) {
    throw new TypeError(
      `${owner}: option maxLength is required: cosFormer's weight cos(π/2 (i − j)/M) uses M = the sequence length, ` +
        `so give the length of the sequence to decode, e.g. { maxLength: 512 }`,
    );
  }
}

/** The features of tokens [position, position + p) of a sequence of M = maxLength tokens, for the state forms. */
function stateFeatures(x: tf.Tensor4D, o: Required<CosformerOptions>, position: number): tf.Tensor4D {
  const end = position + x.shape[2];
  if (end > o.maxLength!) {
    throw new RangeError(
      `cosformer: position ${end} is beyond maxLength ${o.maxLength}; cosFormer's weights depend on the sequence ` +
        `length, so set maxLength to the length of the whole sequence`,
    );
  }
  return cosformerFeatures(x, { maxLength: o.maxLength, position }); // [b, h, p, 2d]
}

/**
 * The `cosformer` variant. weights() is built directly from relu(Q) relu(K)^T * cos(pi/2 (i-j)/n),
 * row-normalised, so the test attend() == reference() checks the decomposition too. Its recurrent forms carry
 * {@linkcode KernelState} over the 2dk features, { s: [b, h, 2dk, dv], z: [b, h, 2dk] }; they need `maxLength` (M),
 * and `position` for a carried state, since the features depend on absolute positions.
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
export const cosformer = defineVariant<CosformerOptions, KernelState>({
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
    const keys = zeroPadKeys(tf.relu(k), o.keyMask); // [b, h, n, dk]
    let a: tf.Tensor4D = tf.mul(tf.matMul(tf.relu(q), keys, false, true), reweight); // [b, h, n, n]
    if (o.causal) a = tf.mul(a, lowerTriangle(n));
    return tf.div(a, tf.add(tf.sum(a, -1, true), o.eps));
  },
  attend: ({ q, k, v }, o) =>
    kernelAttend(
      { fq: cosformerFeatures(q, { maxLength: o.maxLength }), fk: cosformerFeatures(k, { maxLength: o.maxLength }), v },
      { causal: o.causal, normalize: true, eps: o.eps, chunkSize: o.chunkSize, keyMask: o.keyMask },
    ),
  flops: (size, o) => kernelFlops(size, { causal: o.causal, chunkSize: o.chunkSize, m: 2 * size.dk }),
  // A session knows the length of the whole sequence: that is M, on the decoding and the re-run paths alike.
  sessionOptions: (options, { length }) => ({ ...options, maxLength: length }),
  recurrent: kernelRecurrent<CosformerOptions>({
    features: stateFeatures,
    size: (dk) => 2 * dk,
    kernel: (o) => ({ normalize: true, eps: o.eps }),
    check: checkMaxLength,
  }),
});
