/**
 * The ablation runs of notebook 05 (Tables 1, 8/9 and 11): variations of the TransNormer T2 stack,
 * each trained for several seeds with a smaller budget than the shared models.
 *
 * @module
 */

import { type Scale, toScale } from "../env.ts";
import type { ModelConfigInput } from "../models/config.ts";
import {
  LM_ARCHITECTURE_LARGE,
  LM_RECIPE,
  LM_RECIPE_LARGE,
  LM_RECIPE_QUICK,
  type LmRecipe,
  optionsScale,
  scaleSuffix,
  type TrainedLanguageModel,
  trainedLanguageModel,
  type TrainedLanguageModelOptions,
} from "../models/pretrained.ts";
import { type PlannedRun, registerRunGroup, type RunGroup, scaleOption, withoutScale } from "./registry.ts";

/** One layer of an ablation stack. */
export type AblationLayer = NonNullable<ModelConfigInput["attention"]>[number] & object;

/** DiagAttention block sizes of Table 11; 64 is T2's own. */
export const ABLATION_BLOCK_SIZES: readonly number[] = Object.freeze([16, 32, 64, 128]);

/**
 * The full-mode budget: smaller than {@linkcode LM_RECIPE}'s so that 3 seeds × 12 configurations
 * fit in about 45 CPU minutes. No score-gradient probe; `probeRows` is part of the run's hash, so it
 * stays at the value the cached runs were trained with.
 */
export const ABLATION_RECIPE_FULL: Readonly<Partial<LmRecipe>> = Object.freeze({
  steps: 250,
  batchSize: 8,
  seqLen: 128,
  warmup: 25,
  validEvery: 25,
  validBatches: 8,
  probeEvery: null,
  probeRows: 2,
});

/**
 * The large-scale budget (`ATTNLAB_SCALE=large`): the shared models' own ({@linkcode LM_RECIPE_LARGE}, over 20
 * training tokens per parameter), without the score-gradient probe, so the ablations are decided at the same size
 * and budget as the shared models.
 */
export const ABLATION_RECIPE_LARGE: Readonly<Partial<LmRecipe>> = Object.freeze({ probeEvery: null });

// What an ablation run's recipe overrides of the scale's shared recipe, seed aside.
function ablationOverrides(scale: Scale): Partial<LmRecipe> {
  return scale === "quick" ? { probeEvery: null } : scale === "full" ? ABLATION_RECIPE_FULL : ABLATION_RECIPE_LARGE;
}

/**
 * Seeds of every configuration, at every scale: three (quick-mode runs are a few updates each, so quick mode keeps
 * all three and notebook 05's interval code runs in CI).
 *
 * @example
 * ```ts
 * import { ablationSeeds } from "./ablations.ts";
 * console.log(ablationSeeds(false), ablationSeeds(true), ablationSeeds("large")); // [1, 2, 3] [1, 2, 3] [1, 2, 3]
 * ```
 */
export function ablationSeeds(scale: Scale | boolean): number[] {
  toScale(scale, "ablationSeeds: scale");
  return [1, 2, 3];
}

/**
 * The recipe the ablation runs use at a scale, seed aside (`true`/`false` read as quick/full).
 *
 * @example
 * ```ts
 * import { ablationRecipe } from "./ablations.ts";
 * console.log(ablationRecipe(false).steps, ablationRecipe(true).probeEvery, ablationRecipe("large").steps); // 250 null 12000
 * ```
 */
export function ablationRecipe(scale: Scale | boolean): LmRecipe {
  const s = toScale(scale, "ablationRecipe: scale");
  const base = s === "quick" ? LM_RECIPE_QUICK : s === "full" ? LM_RECIPE : LM_RECIPE_LARGE;
  return { ...base, ...ablationOverrides(s) };
}

/**
 * The layers of an ablation stack at a scale: 4 at quick and full scale (the T2 stack of the full-scale shared
 * models), {@linkcode LM_ARCHITECTURE_LARGE}'s 6 at large scale.
 *
 * @example
 * ```ts
 * import { ablationLayers } from "./ablations.ts";
 * console.log(ablationLayers("quick"), ablationLayers("full"), ablationLayers("large")); // 4 4 6
 * ```
 */
export function ablationLayers(scale: Scale | boolean): number {
  return toScale(scale, "ablationLayers: scale") === "large" ? LM_ARCHITECTURE_LARGE.layers! : 4;
}

/**
 * A 4-layer ablation stack widened to `layers` layers by halves: new layer i is old layer ⌊4i / layers⌋, so each half
 * of a stack whose halves are uniform (every configuration here: T2 is diag, diag | norm, norm) keeps its attention,
 * now `layers / 2` deep: T2 at 6 layers is diag ×3, norm ×3. The stack itself at 4 layers.
 *
 * @example
 * ```ts
 * import { ABLATION_CONFIGS, widenStack } from "./ablations.ts";
 * console.log(widenStack(ABLATION_CONFIGS.t2, 6).map((l) => l.variant)); // ["diag", "diag", "diag", "norm", "norm", "norm"]
 * ```
 */
export function widenStack(attention: readonly AblationLayer[], layers: number): AblationLayer[] {
  if (!Number.isInteger(layers) || layers < 2 || layers % 2 !== 0) {
    throw new RangeError(`widenStack: layers must be an even whole number >= 2, got ${layers}`);
  }
  return Array.from({ length: layers }, (_, i) => attention[Math.floor((i * attention.length) / layers)]);
}

/**
 * The recipe of the masked-LM ablations ({@linkcode MLM_ABLATION_CONFIGS}), seed aside: {@linkcode ablationRecipe}
 * with task "mlm" and the authors' bidirectional recipe where this scale allows: no gradient clipping unless the
 * configuration asks for it (Table 1's clipped arms), Adam β2 = 0.98.
 *
 * @example
 * ```ts
 * import { mlmAblationRecipe } from "./ablations.ts";
 * const r = mlmAblationRecipe("elu-denominator-clip", false);
 * console.log(r.task, r.clip, mlmAblationRecipe("t2", false).clip); // mlm 1 null
 * ```
 */
export function mlmAblationRecipe(id: string, scale: Scale | boolean): LmRecipe {
  return { ...ablationRecipe(scale), task: "mlm", clip: mlmConfig("mlmAblationRecipe", id).clip };
}

const diag = (blockSize = 64): AblationLayer => ({ variant: "diag", options: { inner: "softmax", blockSize } });
const normAtt = (norm = "srms", gain = false): AblationLayer => ({
  variant: "norm",
  options: { featureMap: "elu+1", norm },
  ...(gain ? { gain: true } : {}),
});
const linear: AblationLayer = { variant: "linear", options: { featureMap: "elu+1" } };
const softmax: AblationLayer = { variant: "softmax", options: {} };

/**
 * Every distinct configuration, by id: the attention of each of the four layers.
 *
 * @example
 * ```ts
 * import { ABLATION_CONFIGS } from "./ablations.ts";
 * console.log(Object.keys(ABLATION_CONFIGS).length, ABLATION_CONFIGS.t2.map((l) => l.variant)); // 12 ["diag", "diag", "norm", "norm"]
 * ```
 */
export const ABLATION_CONFIGS: Readonly<Record<string, AblationLayer[]>> = Object.freeze({
  t2: [diag(), diag(), normAtt(), normAtt()],
  "late-linear": [diag(), diag(), linear, linear],
  "late-none": [diag(), diag(), normAtt("none"), normAtt("none")],
  "late-layer": [diag(), diag(), normAtt("layer"), normAtt("layer")],
  "late-rms": [diag(), diag(), normAtt("rms"), normAtt("rms")],
  "norm-then-diag": [normAtt(), normAtt(), diag(), diag()],
  "all-diag": [diag(), diag(), diag(), diag()],
  "all-norm": [normAtt(), normAtt(), normAtt(), normAtt()],
  "all-softmax": [softmax, softmax, softmax, softmax],
  ...Object.fromEntries(
    ABLATION_BLOCK_SIZES.filter((b) => b !== 64).map((b) => [`block${b}`, [diag(b), diag(b), normAtt(), normAtt()]]),
  ),
});

/**
 * The planned run of configuration `id` with `seed`: `ablation/<id>/seed<n>` (`ablation-quick/…`, `ablation-large/…`
 * at those scales, where the stack is {@linkcode widenStack}ed to {@linkcode ablationLayers}).
 *
 * @example
 * ```ts
 * import { ablationRun } from "./ablations.ts";
 * console.log(ablationRun("t2", 2, false).name, ablationRun("t2", 2, "large").name); // ablation/t2/seed2 ablation-large/t2/seed2
 * ```
 */
export function ablationRun(id: string, seed: number, scale: Scale | boolean): PlannedRun {
  const s = toScale(scale, "ablationRun: scale");
  const attention = ABLATION_CONFIGS[id];
  if (attention === undefined) {
    throw new RangeError(
      `ablationRun: unknown configuration "${id}"; the configurations are ${Object.keys(ABLATION_CONFIGS).join(", ")}`,
    );
  }
  const name = `ablation${scaleSuffix(s)}/${id}/seed${seed}`;
  return {
    name,
    group: "ablation",
    architecture: { attention: s === "large" ? widenStack(attention, ablationLayers(s)) : attention },
    options: { name, ...scaleOption(s), recipe: { ...ablationOverrides(s), seed } },
  };
}

/**
 * Trains configuration `id` with `seed`, or loads it from the run cache; the scale is `options.scale` (or
 * `options.quick`), default the environment's, as in {@linkcode trainedLanguageModel}.
 *
 * @example
 * ```ts
 * import { trainedAblation } from "./ablations.ts";
 * const runsDir = await Deno.makeTempDir();
 * const { model, action } = await trainedAblation("t2", 1, { quick: true, runsDir, progress: "none", log: null });
 * console.log(action, model.config.attention.length); // trained 4
 * model.dispose();
 * await Deno.remove(runsDir, { recursive: true });
 * ```
 */
export function trainedAblation(
  id: string,
  seed: number,
  options: Omit<TrainedLanguageModelOptions, "name" | "recipe"> = {},
): Promise<TrainedLanguageModel> {
  const run = ablationRun(id, seed, optionsScale(options, "trainedAblation"));
  return trainedLanguageModel(run.architecture, { ...run.options, ...withoutScale(options) });
}

/**
 * The group `ablation`: every configuration × seed.
 *
 * @example
 * ```ts
 * import { ABLATIONS } from "./ablations.ts";
 * console.log(ABLATIONS.runs(false).length, ABLATIONS.runs(true).length); // 36 36
 * ```
 */
export const ABLATIONS: RunGroup = registerRunGroup({
  name: "ablation",
  description: "the ablations of Tables 1, 8/9 and 11 (T2 stack variations × seeds)",
  notebooks: ["05_"],
  runs: (scale) =>
    Object.keys(ABLATION_CONFIGS).flatMap((id) => ablationSeeds(scale).map((seed) => ablationRun(id, seed, scale))),
});

/** Which table of the paper a masked-LM ablation belongs to. */
export type AblationTable = "1" | "8/9" | "11";

/** A masked-LM ablation: the attention of each layer, the clipping threshold (null: none) and its table. */
export interface MlmAblationConfig {
  attention: AblationLayer[];
  clip: number | null;
  table: AblationTable;
}

// Table 1: pure 1+elu linear attention in every layer, with its denominator, with nothing in its place, or with a norm
// instead (RMSNorm with a learned gain, LayerNorm and SimpleRMSNorm without parameters), each with and without clipping.
const TABLE1_ARMS: Readonly<Record<string, AblationLayer>> = {
  denominator: linear,
  none: normAtt("none"),
  layer: normAtt("layer"),
  rms: normAtt("rms", true),
  srms: normAtt("srms"),
};

/**
 * The masked-LM (bidirectional) ablations, by id, as the paper ran Tables 1, 8/9 and 11: Table 1's arms
 * `elu-<denominator|none|layer|rms|srms>-<clip|noclip>` (four layers of the same attention), and the T2-stack variations
 * of Tables 8/9 (`t2`, `norm-then-diag`, `all-diag`, `all-norm`, with `all-softmax` as the vanilla reference) and 11
 * (`block16`, `block32`, `block128`), trained without clipping as the authors did.
 *
 * @example
 * ```ts
 * import { MLM_ABLATION_CONFIGS } from "./ablations.ts";
 * const ids = Object.keys(MLM_ABLATION_CONFIGS);
 * console.log(ids.length, ids.filter((id) => MLM_ABLATION_CONFIGS[id].table === "1").length); // 18 10
 * console.log(MLM_ABLATION_CONFIGS["elu-rms-noclip"].attention[0].gain, MLM_ABLATION_CONFIGS.t2.clip); // true null
 * ```
 */
export const MLM_ABLATION_CONFIGS: Readonly<Record<string, MlmAblationConfig>> = Object.freeze({
  ...Object.fromEntries(
    Object.entries(TABLE1_ARMS).flatMap(([arm, layer]) =>
      ([["clip", 1], ["noclip", null]] as const).map(([suffix, clip]) => [
        `elu-${arm}-${suffix}`,
        { attention: [layer, layer, layer, layer], clip, table: "1" as const },
      ])
    ),
  ),
  ...Object.fromEntries(
    ["t2", "norm-then-diag", "all-diag", "all-norm", "all-softmax"].map((id) => [
      id,
      { attention: ABLATION_CONFIGS[id], clip: null, table: "8/9" as const },
    ]),
  ),
  ...Object.fromEntries(
    ABLATION_BLOCK_SIZES.filter((b) => b !== 64).map((b) => [
      `block${b}`,
      { attention: ABLATION_CONFIGS[`block${b}`], clip: null, table: "11" as const },
    ]),
  ),
});

function mlmConfig(owner: string, id: string): MlmAblationConfig {
  const config = MLM_ABLATION_CONFIGS[id];
  if (config === undefined) {
    throw new RangeError(
      `${owner}: unknown masked-LM configuration "${id}"; the configurations are ${
        Object.keys(MLM_ABLATION_CONFIGS).join(", ")
      }`,
    );
  }
  return config;
}

// Two ids may name one configuration (Table 8/9's all-norm is Table 1's SimpleRMSNorm arm without clipping): both map
// to the run of the first id with the same attention and clipping, so it is trained once.
function canonicalMlmId(id: string): string {
  const key = JSON.stringify({ attention: MLM_ABLATION_CONFIGS[id].attention, clip: MLM_ABLATION_CONFIGS[id].clip });
  return Object.keys(MLM_ABLATION_CONFIGS).find((other) =>
    JSON.stringify({ attention: MLM_ABLATION_CONFIGS[other].attention, clip: MLM_ABLATION_CONFIGS[other].clip }) === key
  )!;
}

/**
 * The planned run of masked-LM configuration `id` with `seed`: `ablation-mlm/<id>/seed<n>`, where `id` is the first
 * configuration with the same attention and clipping (so `all-norm` loads `elu-srms-noclip`'s runs).
 *
 * @example
 * ```ts
 * import { mlmAblationRun } from "./ablations.ts";
 * const run = mlmAblationRun("elu-none-noclip", 2, false);
 * console.log(run.name, run.options.recipe); // ablation-mlm/elu-none-noclip/seed2 { steps: 250, batchSize: 8, seqLen: 128, warmup: 25, validEvery: 25, validBatches: 8, probeEvery: null, probeRows: 2, task: "mlm", clip: null, seed: 2 }
 * console.log(mlmAblationRun("all-norm", 1, false).name); // ablation-mlm/elu-srms-noclip/seed1
 * ```
 */
export function mlmAblationRun(id: string, seed: number, scale: Scale | boolean): PlannedRun {
  const s = toScale(scale, "mlmAblationRun: scale");
  const { attention, clip } = mlmConfig("mlmAblationRun", id);
  const name = `ablation-mlm${scaleSuffix(s)}/${canonicalMlmId(id)}/seed${seed}`;
  return {
    name,
    group: "ablation-mlm",
    architecture: { attention: s === "large" ? widenStack(attention, ablationLayers(s)) : attention },
    options: { name, ...scaleOption(s), recipe: { ...ablationOverrides(s), task: "mlm", clip, seed } },
  };
}

/**
 * Trains masked-LM configuration `id` with `seed`, or loads it from the run cache; the scale is `options.scale` (or
 * `options.quick`), default the environment's. Its validation loss is over the masked bytes of a fixed masking of the validation split.
 *
 * @example
 * ```ts
 * import { trainedMlmAblation } from "./ablations.ts";
 * const runsDir = await Deno.makeTempDir();
 * const { model, recipe } = await trainedMlmAblation("elu-rms-noclip", 1, { quick: true, runsDir, progress: "none", log: null });
 * console.log(recipe.task, model.config.task, "blocks.0.attn.gain" in model.variables); // mlm mlm true
 * model.dispose();
 * await Deno.remove(runsDir, { recursive: true });
 * ```
 */
export function trainedMlmAblation(
  id: string,
  seed: number,
  options: Omit<TrainedLanguageModelOptions, "name" | "recipe"> = {},
): Promise<TrainedLanguageModel> {
  const run = mlmAblationRun(id, seed, optionsScale(options, "trainedMlmAblation"));
  return trainedLanguageModel(run.architecture, { ...run.options, ...withoutScale(options) });
}

/**
 * The group `ablation-mlm`: every distinct masked-LM configuration × seed (18 ids, 17 configurations).
 *
 * @example
 * ```ts
 * import { MLM_ABLATIONS } from "./ablations.ts";
 * console.log(MLM_ABLATIONS.runs(false).length); // 51
 * ```
 */
export const MLM_ABLATIONS: RunGroup = registerRunGroup({
  name: "ablation-mlm",
  description: "the ablations of Tables 1, 8/9 and 11 as masked language modelling (bidirectional) × seeds",
  notebooks: ["03_", "05_"],
  runs: (scale) =>
    [...new Set(Object.keys(MLM_ABLATION_CONFIGS).map(canonicalMlmId))].flatMap((id) =>
      ablationSeeds(scale).map((seed) => mlmAblationRun(id, seed, scale))
    ),
});
