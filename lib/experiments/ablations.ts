/**
 * The ablation runs of notebook 05 (Tables 1, 8/9 and 11): variations of the TransNormer T2 stack,
 * each trained for several seeds with a smaller budget than the shared models.
 *
 * @module
 */

import { isQuick } from "../env.ts";
import type { ModelConfigInput } from "../models/config.ts";
import {
  LM_RECIPE,
  LM_RECIPE_QUICK,
  type LmRecipe,
  type TrainedLanguageModel,
  trainedLanguageModel,
  type TrainedLanguageModelOptions,
} from "../models/pretrained.ts";
import { type PlannedRun, registerRunGroup, type RunGroup } from "./registry.ts";

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
 * Seeds of every configuration, in both modes: three (quick-mode runs are a few updates each, so quick mode keeps
 * all three and notebook 05's interval code runs in CI).
 *
 * @example
 * ```ts
 * import { ablationSeeds } from "./ablations.ts";
 * console.log(ablationSeeds(false), ablationSeeds(true)); // [1, 2, 3] [1, 2, 3]
 * ```
 */
export function ablationSeeds(_quick: boolean): number[] {
  return [1, 2, 3];
}

/**
 * The recipe the ablation runs use, seed aside.
 *
 * @example
 * ```ts
 * import { ablationRecipe } from "./ablations.ts";
 * console.log(ablationRecipe(false).steps, ablationRecipe(true).probeEvery); // 250 null
 * ```
 */
export function ablationRecipe(quick: boolean): LmRecipe {
  return quick ? { ...LM_RECIPE_QUICK, probeEvery: null } : { ...LM_RECIPE, ...ABLATION_RECIPE_FULL };
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
export function mlmAblationRecipe(id: string, quick: boolean): LmRecipe {
  return { ...ablationRecipe(quick), task: "mlm", clip: mlmConfig("mlmAblationRecipe", id).clip };
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
 * The planned run of configuration `id` with `seed`.
 *
 * @example
 * ```ts
 * import { ablationRun } from "./ablations.ts";
 * console.log(ablationRun("t2", 2, false).name); // ablation/t2/seed2
 * ```
 */
export function ablationRun(id: string, seed: number, quick: boolean): PlannedRun {
  const attention = ABLATION_CONFIGS[id];
  if (attention === undefined) {
    throw new RangeError(
      `ablationRun: unknown configuration "${id}"; the configurations are ${Object.keys(ABLATION_CONFIGS).join(", ")}`,
    );
  }
  const name = `${quick ? "ablation-quick" : "ablation"}/${id}/seed${seed}`;
  return {
    name,
    group: "ablation",
    architecture: { attention },
    options: {
      name,
      quick,
      recipe: { ...(quick ? { probeEvery: null } : ABLATION_RECIPE_FULL), seed },
    },
  };
}

/**
 * Trains configuration `id` with `seed`, or loads it from the run cache; `options.quick` defaults to
 * ATTNLAB_QUICK, as in {@linkcode trainedLanguageModel}.
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
  const run = ablationRun(id, seed, options.quick ?? isQuick());
  return trainedLanguageModel(run.architecture, { ...run.options, ...options });
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
  runs: (quick) =>
    Object.keys(ABLATION_CONFIGS).flatMap((id) => ablationSeeds(quick).map((seed) => ablationRun(id, seed, quick))),
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
export function mlmAblationRun(id: string, seed: number, quick: boolean): PlannedRun {
  const { attention, clip } = mlmConfig("mlmAblationRun", id);
  const name = `${quick ? "ablation-mlm-quick" : "ablation-mlm"}/${canonicalMlmId(id)}/seed${seed}`;
  return {
    name,
    group: "ablation-mlm",
    architecture: { attention },
    options: {
      name,
      quick,
      recipe: { ...(quick ? { probeEvery: null } : ABLATION_RECIPE_FULL), task: "mlm", clip, seed },
    },
  };
}

/**
 * Trains masked-LM configuration `id` with `seed`, or loads it from the run cache; `options.quick` defaults to
 * ATTNLAB_QUICK. Its validation loss is over the masked bytes of a fixed masking of the validation split.
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
  const run = mlmAblationRun(id, seed, options.quick ?? isQuick());
  return trainedLanguageModel(run.architecture, { ...run.options, ...options });
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
  runs: (quick) =>
    [...new Set(Object.keys(MLM_ABLATION_CONFIGS).map(canonicalMlmId))].flatMap((id) =>
      ablationSeeds(quick).map((seed) => mlmAblationRun(id, seed, quick))
    ),
});
