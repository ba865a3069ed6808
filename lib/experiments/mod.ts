/**
 * The trained runs the notebooks need, declared as groups so they can be trained ahead of the
 * notebooks (`deno task train`) as resumable jobs. Importing this module registers every group.
 *
 * ```ts
 * import { runGroups } from "./mod.ts";
 * console.log(runGroups().map((g) => `${g.name}: ${g.runs(false).length} runs`)); // ["lm: 18 runs", "ablation: 36 runs", "ablation-mlm: 51 runs"]
 * ```
 *
 * @module
 */

export * from "./registry.ts";
export * from "./shared_lms.ts";
export * from "./ablations.ts";
export * from "./ablation_results.ts";
export * from "./plan.ts";
// The scale's shared recipe and architecture, for the notebooks that read recipes, architecture and seeds from here.
export { lmArchitecture, lmRecipe } from "../models/pretrained.ts";
