/**
 * Softmax attention (Vaswani et al., 2017): softmax(Q K^T * scale) V. O(n^2).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { AttentionOptions } from "./types.ts";
import { defineVariant, maskBias, maskFrom } from "./variant.ts";

/** Options of {@linkcode softmax}. */
export interface SoftmaxOptions extends AttentionOptions {
  /** Logit scale; default (null) 1 / sqrt(dk). */
  scale?: number | null;
}

/**
 * softmax(Q K^T * scale + causal mask) [batch, heads, n, n].
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { softmaxWeights } from "./softmax.ts";
 * const x = tf.zeros([1, 1, 2, 3]) as tf.Tensor4D;
 * console.log(JSON.stringify(softmaxWeights({ q: x, k: x }, { causal: true }).arraySync()[0][0])); // [[1,0],[0.5,0.5]]
 * ```
 */
export function softmaxWeights(qk: { q: tf.Tensor4D; k: tf.Tensor4D }, options: SoftmaxOptions = {}): tf.Tensor4D {
  return tf.tidy(() => {
    const [, , n, dk] = qk.q.shape;
    const scale = options.scale ?? 1 / Math.sqrt(dk);
    let logits: tf.Tensor4D = tf.mul(tf.matMul(qk.q, qk.k, false, true), scale); // [b, h, n, n]
    if (options.causal) logits = tf.add(logits, maskBias(maskFrom(n, (i, j) => j <= i)));
    return tf.softmax(logits);
  });
}

/**
 * The `softmax` variant. Options: `causal` (false), `scale` (1/sqrt(dk)).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { softmax } from "./softmax.ts";
 * const q = tf.randomNormal([1, 2, 5, 4]) as tf.Tensor4D;
 * const v = tf.randomNormal([1, 2, 5, 3]) as tf.Tensor4D;
 * console.log(softmax.attend({ q, k: q, v }, { causal: true }).shape.join(",")); // 1,2,5,3
 * ```
 */
export const softmax = defineVariant<SoftmaxOptions>({
  name: "softmax",
  defaults: { causal: false, scale: null },
  rules: { causal: { type: "boolean" }, scale: { type: "number", min: 0, exclusiveMin: true, nullable: true } },
  weights: softmaxWeights,
  attend: (qkv, o) => tf.matMul(softmaxWeights(qkv, o), qkv.v),
});
