/**
 * The parameter-free output norms of NormAttention and DiagAttention (T1).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { srmsNorm } from "../blas/fused.ts";

/** "srms" SimpleRMSNorm, "rms" RMSNorm, "layer" LayerNorm (all without learned gain or bias), "none". */
export const OUTPUT_NORMS = ["srms", "rms", "layer", "none"] as const;

/** One of {@linkcode OUTPUT_NORMS}. */
export type OutputNorm = typeof OUTPUT_NORMS[number];

/** "hidden": over all heads concatenated (the authors' code); "head": over each head's dv. */
export const NORM_SCOPES = ["hidden", "head"] as const;

/** One of {@linkcode NORM_SCOPES}. */
export type NormScope = typeof NORM_SCOPES[number];

const RMS_EPS = 1e-6;
const LAYER_EPS = 1e-5;
const SRMS_EPS = 1e-8;

/**
 * Normalises the last axis of x.
 * - srms: x / (||x||_2 d^(-1/2) + 1e-8)
 * - rms: x / sqrt(mean(x^2) + 1e-6)
 * - layer: (x - mean) / sqrt(var + 1e-5)
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { normalizeLastAxis } from "./norms.ts";
 * const y = normalizeLastAxis(tf.tensor1d([3, 4]), "srms");
 * console.log(Array.from(y.dataSync()).map((x) => x.toFixed(4)).join(" ")); // 0.8485 1.1314
 * ```
 */
export function normalizeLastAxis<T extends tf.Tensor>(x: T, norm: OutputNorm): T {
  return tf.tidy(() => {
    const d = x.shape[x.rank - 1];
    switch (norm) {
      case "none":
        return tf.clone(x);
      case "srms": {
        // sqrt(s + 1e-24) instead of sqrt(s): the same value in float32, but a zero row gets gradient 0, not NaN.
        const l2 = tf.sqrt(tf.add(tf.sum(tf.square(x), -1, true), 1e-24));
        return tf.div(x, tf.add(tf.mul(l2, 1 / Math.sqrt(d)), SRMS_EPS));
      }
      case "rms":
        return tf.div(x, tf.sqrt(tf.add(tf.mean(tf.square(x), -1, true), RMS_EPS)));
      case "layer": {
        const centred = tf.sub(x, tf.mean(x, -1, true));
        return tf.div(centred, tf.sqrt(tf.add(tf.mean(tf.square(centred), -1, true), LAYER_EPS)));
      }
      default:
        throw new Error(`normalizeLastAxis: norm must be one of ${OUTPUT_NORMS.join(", ")}, got "${norm}"`);
    }
  }) as T;
}

/** normalizeLastAxis, with SimpleRMSNorm by lib/blas/fused.ts's srmsNorm: the same bits, one kernel each way on blas. */
function normalized<T extends tf.Tensor>(x: T, norm: OutputNorm): T {
  return norm === "srms" ? srmsNorm(x) : normalizeLastAxis(x, norm);
}

/**
 * Applies an output norm to attention outputs [batch, heads, n, dv], per head or over the hidden vector.
 * SimpleRMSNorm runs as one fused kernel forward and one backward on the blas backend, with the values and gradient
 * of {@linkcode normalizeLastAxis} bit for bit.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { applyOutputNorm } from "./norms.ts";
 * const o = tf.ones([1, 2, 3, 4]) as tf.Tensor4D;
 * console.log(applyOutputNorm(o, { norm: "srms", scope: "hidden" }).shape.join(",")); // 1,2,3,4
 * ```
 */
export function applyOutputNorm(o: tf.Tensor4D, options: { norm: OutputNorm; scope: NormScope }): tf.Tensor4D {
  if (options.norm === "none") return tf.clone(o);
  if (options.scope === "head") return normalized(o, options.norm);
  const [b, h, n, dv] = o.shape;
  return tf.tidy(() => {
    const hidden = tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [b, n, h * dv]); // [b, n, h*dv]
    const normed = tf.reshape(normalized(hidden, options.norm), [b, n, h, dv]); // [b, n, h, dv]
    return tf.transpose(normed, [0, 2, 1, 3]) as tf.Tensor4D; // [b, h, n, dv]
  });
}
