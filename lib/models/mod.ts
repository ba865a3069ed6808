/**
 * Models: a small TransNormer-style transformer with one attention variant per layer, its
 * config and presets, position encodings, and its diagnostics (probes.ts).
 *
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "./mod.ts";
 * const model = createModel({ attention: "vanilla", layers: 2, dModel: 16, heads: 2 }, { log: () => {} });
 * console.log(model.logits(tf.tensor2d([[0, 1]], [1, 2], "int32")).shape.join(",")); // 1,2,256
 * model.dispose();
 * ```
 *
 * @module
 */

export * from "./config.ts";
export * from "./generate.ts";
export * from "./model.ts";
export * from "./positions.ts";
export * from "./pretrained.ts";
export * from "./probes.ts";
