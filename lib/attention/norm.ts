/**
 * NormAttention (Qin et al., 2022, "The Devil in Linear Transformer"): O = XNorm(phi(Q) (phi(K)^T V)).
 * No 1/sqrt(d) scaling and no denominator; the norm bounds the output and the gradient.
 * Defaults follow the authors' code: phi = elu (T1), SimpleRMSNorm over all heads concatenated.
 *
 * @module
 */

import { applyFeatureMap, FEATURE_MAPS, type FeatureMap } from "./feature_maps.ts";
import { kernelAttend, kernelFlops, kernelMatrix, kernelRecurrent, type KernelState } from "./kernel.ts";
import { applyOutputNorm, NORM_SCOPES, type NormScope, OUTPUT_NORMS, type OutputNorm } from "./norms.ts";
import type { AttentionOptions, OwnOptions } from "./types.ts";
import { defineVariant } from "./variant.ts";

/** Options of {@linkcode norm}. */
export interface NormOptions extends AttentionOptions {
  /** phi; default "elu" (T1); "elu+1" is T2. */
  featureMap?: FeatureMap;
  /** The output norm; default "srms" (SimpleRMSNorm). "none" leaves the raw kernel output. */
  norm?: OutputNorm;
  /** Normalise over all heads concatenated ("hidden", default) or per head. */
  normScope?: NormScope;
  /** Tokens per chunk of the causal chunkwise form; default 64. */
  chunkSize?: number;
}

/** Defaults of {@linkcode norm}. */
export const NORM_DEFAULTS: Required<OwnOptions<NormOptions>> = {
  causal: false,
  featureMap: "elu",
  norm: "srms",
  normScope: "hidden",
  chunkSize: 64,
};

/** Option rules of NormAttention (and of its recurrent forms and decoder). */
export const NORM_RULES = {
  causal: { type: "boolean" },
  featureMap: { type: "enum", values: FEATURE_MAPS },
  norm: { type: "enum", values: OUTPUT_NORMS },
  normScope: { type: "enum", values: NORM_SCOPES },
  chunkSize: { type: "number", min: 1, integer: true },
} as const;

/**
 * The `norm` variant. weights() is the unnormalised phi(Q) phi(K)^T (masked when causal). Its recurrent forms carry
 * {@linkcode KernelState} { s: [b, h, dk, dv], z: [b, h, dk] } (z unused: no denominator); the output norm acts on each
 * token's hidden vector, so a step applies it alone.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { norm } from "./norm.ts";
 * const q = tf.randomNormal([2, 2, 9, 4]) as tf.Tensor4D;
 * const v = tf.randomNormal([2, 2, 9, 3]) as tf.Tensor4D;
 * const o = norm.attend({ q, k: q, v }, { causal: true });
 * // SimpleRMSNorm over the 2 x 3 hidden values: their mean square is 1.
 * const ms = tf.mean(tf.square(tf.transpose(o, [0, 2, 1, 3])), [2, 3]);
 * console.log(Math.abs(ms.dataSync()[0] - 1) < 1e-4); // true
 * ```
 */
export const norm = defineVariant<NormOptions, KernelState>({
  name: "norm",
  defaults: NORM_DEFAULTS,
  rules: NORM_RULES,
  weights: ({ q, k }, o) =>
    kernelMatrix(
      { fq: applyFeatureMap(q, o.featureMap), fk: applyFeatureMap(k, o.featureMap) },
      { causal: o.causal, normalize: false, eps: 0, keyMask: o.keyMask },
    ),
  outputNorm: (out, o) => applyOutputNorm(out, { norm: o.norm, scope: o.normScope }),
  attend: ({ q, k, v }, o) => {
    const features = { fq: applyFeatureMap(q, o.featureMap), fk: applyFeatureMap(k, o.featureMap), v };
    const kernel = { causal: o.causal, normalize: false, eps: 0, chunkSize: o.chunkSize, keyMask: o.keyMask };
    const raw = kernelAttend(features, kernel);
    return applyOutputNorm(raw, { norm: o.norm, scope: o.normScope });
  },
  flops: (size, o) => kernelFlops(size, { causal: o.causal, chunkSize: o.chunkSize, m: size.dk }),
  recurrent: kernelRecurrent<NormOptions>({
    features: (x, o) => applyFeatureMap(x, o.featureMap), // [b, h, p, dk]
    size: (dk) => dk,
    kernel: () => ({ normalize: false, eps: 0 }),
    outputNorm: (out, o) => applyOutputNorm(out, { norm: o.norm, scope: o.normScope }),
  }),
});
