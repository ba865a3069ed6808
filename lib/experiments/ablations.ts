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
 * Seeds of every configuration: three in full mode, one in quick mode.
 *
 * @example
 * ```ts
 * import { ablationSeeds } from "./ablations.ts";
 * console.log(ablationSeeds(false), ablationSeeds(true)); // [1, 2, 3] [1]
 * ```
 */
export function ablationSeeds(quick: boolean): number[] {
  return quick ? [1] : [1, 2, 3];
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

const diag = (blockSize = 64): AblationLayer => ({ variant: "diag", options: { inner: "softmax", blockSize } });
const normAtt = (norm = "srms"): AblationLayer => ({ variant: "norm", options: { featureMap: "elu+1", norm } });
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
 * console.log(ABLATIONS.runs(false).length, ABLATIONS.runs(true).length); // 36 12
 * ```
 */
export const ABLATIONS: RunGroup = registerRunGroup({
  name: "ablation",
  description: "the ablations of Tables 1, 8/9 and 11 (T2 stack variations × seeds)",
  notebooks: ["05_"],
  runs: (quick) =>
    Object.keys(ABLATION_CONFIGS).flatMap((id) => ablationSeeds(quick).map((seed) => ablationRun(id, seed, quick))),
});
