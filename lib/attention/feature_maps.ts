/**
 * Feature maps phi applied to queries and keys by the kernel (linear) variants.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { eluPlusOne } from "../blas/fused.ts";

/** The elementwise feature maps: "elu+1" (Katharopoulos et al.), "elu" (TransNormer T1), "relu", "identity". */
export const FEATURE_MAPS = ["elu+1", "elu", "relu", "identity"] as const;

/** One of {@linkcode FEATURE_MAPS}. */
export type FeatureMap = typeof FEATURE_MAPS[number];

/**
 * Applies the feature map elementwise.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { applyFeatureMap } from "./feature_maps.ts";
 * const y = applyFeatureMap(tf.tensor1d([-1, 0, 2]), "elu+1");
 * console.log(Array.from(y.dataSync()).map((x) => x.toFixed(3)).join(" ")); // 0.368 1.000 3.000
 * ```
 */
export function applyFeatureMap<T extends tf.Tensor>(x: T, map: FeatureMap): T {
  switch (map) {
    case "elu+1":
      // relu(x) + exp(min(x, 0)): elu(x) + 1 without the cancellation of (e^x - 1) + 1 (one fused kernel on blas).
      return eluPlusOne(x);
    case "elu":
      return tf.elu(x) as T;
    case "relu":
      return tf.relu(x) as T;
    case "identity":
      return tf.clone(x) as T;
    default:
      throw new Error(`applyFeatureMap: map must be one of ${FEATURE_MAPS.join(", ")}, got "${map}"`);
  }
}
