/**
 * Diagnostics of attention layers: gradients and their bounds (`gradients.ts`), attention dilution (`locality.ts`:
 * the locally accumulated attention curve, entropy, distance and window mass), heatmap helpers (`heatmap.ts`) and a
 * model's per-layer attention matrices and locality curves over windows of text (`attention_maps.ts`). Every
 * diagnostic that reads tensors back has an async twin (`localityCurveAsync`, `gradientSweepAsync`, ...) that awaits
 * one read (`await data()`) where the sync form calls `dataSync`, for a GPU backend, and gives the same result.
 *
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { localityCurve, maxScoreGradient } from "./mod.ts";
 * console.log(maxScoreGradient(tf.tensor1d([5, 5]), "softmax")); // 0.25
 * console.log(localityCurve(tf.eye(8), { ratios: [0.125, 1] }).curve); // [1, 1]
 * ```
 *
 * @module
 */

export { forEachAttentionBatch, forEachAttentionBatchAsync } from "./_checks.ts";
export * from "./attention_maps.ts";
export * from "./attention_view.ts";
export * from "./deviation.ts";
export * from "./gradients.ts";
export * from "./heatmap.ts";
export * from "./inputs.ts";
export * from "./locality.ts";
export * from "./locality_stats.ts";
