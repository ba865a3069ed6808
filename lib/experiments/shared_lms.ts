/**
 * The shared byte-level language models that notebooks 02, 03, 04 and 06 study: one per preset and
 * seed, trained with {@linkcode LM_RECIPE} through {@linkcode trainedLanguageModel}. The seed sets
 * both the initial weights and the batch order, so the spread over seeds is the spread a rerun of
 * the whole experiment would show.
 *
 * @module
 */

import { type Scale, toScale } from "../env.ts";
import { PRESETS } from "../models/config.ts";
import {
  LM_RECIPE,
  lmRunName,
  optionsScale,
  type TrainedLanguageModel,
  trainedLanguageModel,
  type TrainedLanguageModelOptions,
} from "../models/pretrained.ts";
import { type PlannedRun, registerRunGroup, type RunGroup, scaleOption, withoutScale } from "./registry.ts";

/**
 * The seeds of every shared model, at every scale: three, the fewest a Student-t interval over
 * seeds can be computed from with a useful width (quick-mode runs are a few updates each, so
 * quick mode keeps all three and the notebooks' interval code runs in CI; large scale keeps three too).
 *
 * @example
 * ```ts
 * import { sharedLmSeeds } from "./shared_lms.ts";
 * console.log(sharedLmSeeds(false), sharedLmSeeds(true), sharedLmSeeds("large")); // [0, 1, 2] [0, 1, 2] [0, 1, 2]
 * ```
 */
export function sharedLmSeeds(scale: Scale | boolean): number[] {
  toScale(scale, "sharedLmSeeds: scale");
  return [0, 1, 2];
}

function checkPreset(owner: string, preset: unknown): string {
  if (typeof preset !== "string" || !(PRESETS as readonly string[]).includes(preset)) {
    throw new RangeError(`${owner}: preset must be one of ${PRESETS.join(", ")}, got ${JSON.stringify(preset)}`);
  }
  return preset;
}

function checkSeed(owner: string, seed: unknown): number {
  if (typeof seed !== "number" || !Number.isInteger(seed) || seed < 0) {
    const message = `${owner}: seed must be an integer >= 0 (the shared seeds are 0, 1, 2), got ${String(seed)}`;
    throw typeof seed === "number" ? new RangeError(message) : new TypeError(message);
  }
  return seed;
}

/**
 * The planned run of a shared model: `lm/<preset>/seed<n>` (`lm-quick/...` at quick scale, `lm-large/...` at
 * large scale; `true`/`false` read as quick/full).
 *
 * @example
 * ```ts
 * import { sharedLmRun } from "./shared_lms.ts";
 * console.log(sharedLmRun("vanilla", 2, false).name, sharedLmRun("vanilla", 2, "large").name); // lm/vanilla/seed2 lm-large/vanilla/seed2
 * ```
 */
export function sharedLmRun(preset: string, seed: number, scale: Scale | boolean): PlannedRun {
  checkPreset("sharedLmRun", preset);
  checkSeed("sharedLmRun", seed);
  const s = toScale(scale, "sharedLmRun: scale");
  const name = `${lmRunName(preset, s)}/seed${seed}`;
  return { name, group: "lm", architecture: preset, options: { name, ...scaleOption(s), recipe: { seed } } };
}

/**
 * Trains the shared model of `preset` with `seed`, or loads it from the run cache; the scale is
 * `options.scale` (or `options.quick`), default the environment's (`ATTNLAB_SCALE`, `ATTNLAB_QUICK`). The caller
 * disposes `model`.
 *
 * @example
 * ```ts
 * import { trainedSharedLm } from "./shared_lms.ts";
 * const runsDir = await Deno.makeTempDir();
 * const { model, recipe, action } = await trainedSharedLm("transnormer-t2", 1, {
 *   quick: true, runsDir, progress: "none", log: null,
 * });
 * console.log(action, recipe.seed, model.config.seed); // trained 1 1
 * model.dispose();
 * await Deno.remove(runsDir, { recursive: true });
 * ```
 */
export function trainedSharedLm(
  preset: string,
  seed: number,
  options: Omit<TrainedLanguageModelOptions, "name" | "recipe"> = {},
): Promise<TrainedLanguageModel> {
  for (const key of ["name", "recipe"]) {
    if (key in options) {
      throw new TypeError(
        `trainedSharedLm: option "${key}" is fixed by the shared plan (lm/<preset>/seed<n>, LM_RECIPE); ` +
          "call trainedLanguageModel for a run of your own",
      );
    }
  }
  const run = sharedLmRun(preset, seed, optionsScale(options, "trainedSharedLm"));
  return trainedLanguageModel(run.architecture, { ...run.options, ...withoutScale(options) });
}

/**
 * The group `lm`: every preset × {@linkcode sharedLmSeeds}, as {@linkcode trainedSharedLm} names them.
 *
 * @example
 * ```ts
 * import { SHARED_LMS } from "./shared_lms.ts";
 * const runs = SHARED_LMS.runs(false);
 * console.log(runs.length, runs[0].name, runs[1].name); // 18 lm/vanilla/seed0 lm/vanilla/seed1
 * ```
 */
export const SHARED_LMS: RunGroup = registerRunGroup({
  name: "lm",
  description: `the shared language models, one per preset and seed (${LM_RECIPE.steps} updates each)`,
  notebooks: ["02_", "03_", "04_", "06_"],
  runs: (scale) => PRESETS.flatMap((preset) => sharedLmSeeds(scale).map((seed) => sharedLmRun(preset, seed, scale))),
});
