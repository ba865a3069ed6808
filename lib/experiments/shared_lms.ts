/**
 * The six shared byte-level language models (one per preset) that notebooks 02, 03, 04 and 06
 * study, trained with {@linkcode LM_RECIPE} through {@linkcode trainedLanguageModel}.
 *
 * @module
 */

import { PRESETS } from "../models/config.ts";
import { lmRunName } from "../models/pretrained.ts";
import { registerRunGroup, type RunGroup } from "./registry.ts";

/**
 * The group `lm`: one run per preset, named as `trainedLanguageModel(preset)` names it.
 *
 * @example
 * ```ts
 * import { SHARED_LMS } from "./shared_lms.ts";
 * console.log(SHARED_LMS.runs(false).map((r) => r.name).slice(0, 2)); // ["lm/vanilla", "lm/linear"]
 * ```
 */
export const SHARED_LMS: RunGroup = registerRunGroup({
  name: "lm",
  description: "the shared language models, one per preset",
  notebooks: ["02_", "03_", "04_", "06_"],
  runs: (quick) =>
    PRESETS.map((preset) => ({
      name: lmRunName(preset, quick),
      group: "lm",
      architecture: preset,
      options: { quick },
    })),
});
