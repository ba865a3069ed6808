/**
 * Diagnostics of attention layers: gradients and their bounds (`gradients.ts`).
 *
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { maxScoreGradient } from "./mod.ts";
 * console.log(maxScoreGradient(tf.tensor1d([5, 5]), "softmax")); // 0.25
 * ```
 *
 * @module
 */

export * from "./gradients.ts";
