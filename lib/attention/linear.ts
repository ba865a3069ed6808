/**
 * Linear attention (Katharopoulos et al., 2020): O_i = phi(q_i)^T S_i / (phi(q_i)^T z_i + eps),
 * with S_i = sum_j phi(k_j) v_j^T and z_i = sum_j phi(k_j) over j <= i (causal) or all j.
 * Its state forms and decoder carry S [dk, dv] and z [dk] per head: O(dk dv) per token at any position.
 *
 * @module
 */

import { applyFeatureMap, FEATURE_MAPS, type FeatureMap } from "./feature_maps.ts";
import { kernelAttend, kernelFlops, kernelMatrix, kernelRecurrent, type KernelState } from "./kernel.ts";
import type { AttentionOptions, OwnOptions } from "./types.ts";
import { defineVariant } from "./variant.ts";

/** Options of {@linkcode linear}. */
export interface LinearOptions extends AttentionOptions {
  /** phi; default "elu+1". */
  featureMap?: FeatureMap;
  /** Added to each row's denominator; default 1e-6. */
  eps?: number;
  /** Tokens per chunk of the causal chunkwise form; default 64. */
  chunkSize?: number;
}

/** Defaults of {@linkcode linear}. */
export const LINEAR_DEFAULTS: Required<OwnOptions<LinearOptions>> = {
  causal: false,
  featureMap: "elu+1",
  eps: 1e-6,
  chunkSize: 64,
};

/** Option rules of linear attention (and of its recurrent forms and decoder). */
export const LINEAR_RULES = {
  causal: { type: "boolean" },
  featureMap: { type: "enum", values: FEATURE_MAPS },
  eps: { type: "number", min: 0 },
  chunkSize: { type: "number", min: 1, integer: true },
} as const;

/**
 * The `linear` variant. Causal attend() is chunkwise-parallel: no n x n or n x dk x dv tensor. Its recurrent forms
 * (`chunkedAttend`, `recurrentAttend`, `recurrentStep`) carry {@linkcode KernelState} { s: [b, h, dk, dv], z: [b, h, dk] }.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { linear } from "./linear.ts";
 * const q = tf.randomNormal([1, 2, 70, 4]) as tf.Tensor4D;
 * const v = tf.randomNormal([1, 2, 70, 3]) as tf.Tensor4D;
 * const fast = linear.attend({ q, k: q, v }, { causal: true });
 * const naive = linear.reference({ q, k: q, v }, { causal: true });
 * console.log(tf.max(tf.abs(tf.sub(fast, naive))).dataSync()[0] < 1e-4); // true
 * ```
 */
export const linear = defineVariant<LinearOptions, KernelState>({
  name: "linear",
  defaults: LINEAR_DEFAULTS,
  rules: LINEAR_RULES,
  weights: ({ q, k }, o) =>
    kernelMatrix(
      { fq: applyFeatureMap(q, o.featureMap), fk: applyFeatureMap(k, o.featureMap) },
      { causal: o.causal, normalize: true, eps: o.eps, keyMask: o.keyMask },
    ),
  attend: ({ q, k, v }, o) =>
    kernelAttend(
      { fq: applyFeatureMap(q, o.featureMap), fk: applyFeatureMap(k, o.featureMap), v },
      { causal: o.causal, normalize: true, eps: o.eps, chunkSize: o.chunkSize, keyMask: o.keyMask },
    ),
  flops: (size, o) => kernelFlops(size, { causal: o.causal, chunkSize: o.chunkSize, m: size.dk }),
  recurrent: kernelRecurrent<LinearOptions>({
    features: (x, o) => applyFeatureMap(x, o.featureMap), // [b, h, p, dk]
    size: (dk) => dk,
    kernel: (o) => ({ normalize: true, eps: o.eps }),
  }),
});
