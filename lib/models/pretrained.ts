/**
 * The shared recipe for the byte-level language models the notebooks study: one model config and
 * one training budget per mode, trained on the State of the Union corpus through the trained-model
 * cache, so every notebook that needs "the trained T2" gets the same checkpoint.
 *
 * @module
 */

import { isQuick } from "../env.ts";
import { type ByteCorpus, loadSotu } from "../data/sotu.ts";
import { lmSampler, lmTiling } from "../data/batching.ts";
import { MLM_REPLACE, mlmSampler, mlmTiling } from "../data/mlm.ts";
import type { LmBatch } from "../data/types.ts";
import { type CacheAction, trainCached, type TrainCachedOptions } from "../train/cache.ts";
import type { StepInfo, TrainResult } from "../train/train.ts";
import type { ProgressOutput } from "../notebook/progress.ts";
import { modelConfig, type ModelConfigInput } from "./config.ts";
import { createModel, type TransformerModel } from "./model.ts";

/** Everything about how a language model is trained, besides its architecture. */
export interface LmRecipe {
  steps: number;
  batchSize: number;
  seqLen: number;
  lr: number;
  warmup: number;
  /** Global-norm clipping threshold, or null for none. */
  clip: number | null;
  /** Adam's second-moment decay; 0.98 as in the authors' fairseq recipes (PyTorch's default is 0.999). */
  beta2: number;
  weightDecay: number;
  /** Seeds the model's initial weights and the batch order. */
  seed: number;
  /** Validate every this many updates, on the first `validBatches` batches of the validation split. */
  validEvery: number;
  validBatches: number;
  /** Record every layer's attention-score gradient norm every this many updates (null: never). */
  probeEvery: number | null;
  /** Sequences of the step's batch the score-gradient probe uses (the whole batch when >= batchSize). */
  probeRows: number;
  /**
   * "lm" (default): causal next-token prediction. "mlm": masked language modelling as the authors' bidirectional
   * runs (fairseq's masked_lm): a model of task "mlm" (bidirectional, vocabSize 257 with [MASK] = 256) trained on
   * {@linkcode mlmSampler} batches and validated on a fixed {@linkcode mlmTiling}, so its loss and perplexity are
   * over the masked bytes.
   */
  task: "lm" | "mlm";
  /** Task "mlm": the fraction of positions masked in each row (BERT's 0.15); unused by "lm". */
  maskRate: number;
}

/** The full-mode recipe: minutes per model on 2 cores with the blas backend. */
export const LM_RECIPE: Readonly<LmRecipe> = Object.freeze({
  steps: 600,
  batchSize: 16,
  seqLen: 128,
  lr: 3e-3,
  warmup: 60,
  clip: 1,
  beta2: 0.98,
  weightDecay: 0.01,
  seed: 0,
  validEvery: 50,
  validBatches: 8,
  // Every 10th update: the probe is a second pass through the O(n²) reference forms, as costly as an update, so
  // probing every update doubled training. 54 post-warmup samples per run and seed still give Table 2's deviations.
  probeEvery: 10,
  probeRows: 16,
  task: "lm",
  maskRate: 0.15,
});

/** The quick-mode recipe: a few steps, to exercise the path in CI. */
export const LM_RECIPE_QUICK: Readonly<LmRecipe> = Object.freeze({
  steps: 6,
  batchSize: 2,
  seqLen: 32,
  lr: 3e-3,
  warmup: 2,
  clip: 1,
  beta2: 0.98,
  weightDecay: 0.01,
  seed: 0,
  validEvery: 3,
  validBatches: 1,
  probeEvery: 1,
  probeRows: 2,
  task: "lm",
  maskRate: 0.15,
});

/** The architecture every preset shares in full mode (the attention list comes from the preset). */
export const LM_ARCHITECTURE: Readonly<ModelConfigInput> = Object.freeze({
  layers: 4,
  dModel: 64,
  heads: 4,
  maxLength: 16384,
});

/** The quick-mode architecture. */
export const LM_ARCHITECTURE_QUICK: Readonly<ModelConfigInput> = Object.freeze({
  layers: 2,
  dModel: 32,
  heads: 2,
  maxLength: 16384,
});

/**
 * The seed of the masking of an "mlm" run's validation batches: one for every run, whatever its own seed, so that
 * validation perplexities are over the same masked bytes and comparable across runs.
 */
export const MLM_VALID_SEED = 0;

/** Options of {@linkcode trainedLanguageModel}. */
export interface TrainedLanguageModelOptions {
  /**
   * The run's folder name under data/runs; default `lm/<preset>` (`lm-quick/<preset>` in quick mode), and
   * `mlm/<preset>` (`mlm-quick/<preset>`) when the recipe's task is "mlm".
   */
  name?: string;
  /** Overrides of the mode's recipe. */
  recipe?: Partial<LmRecipe>;
  /** Quick mode; default from ATTNLAB_QUICK. */
  quick?: boolean;
  /** A corpus already loaded; default loadSotu(). */
  corpus?: ByteCorpus;
  /** Where trained runs live; default data/runs. */
  runsDir?: string;
  /** Save a checkpoint every this many updates, so an interrupted run resumes there; default null (at the end). */
  checkpointEvery?: number | null;
  /** Called after each update (see {@linkcode StepInfo}); does not change the run's hash. */
  onStep?: ((info: StepInfo) => void | Promise<void>) | null;
  progress?: ProgressOutput;
  log?: ((line: string) => void) | null;
}

/** What {@linkcode trainedLanguageModel} returns. The caller disposes `model`. */
export interface TrainedLanguageModel {
  model: TransformerModel;
  result: TrainResult;
  action: CacheAction;
  recipe: LmRecipe;
  corpus: ByteCorpus;
}

const RECIPE_KEYS = Object.keys(LM_RECIPE);
const OPTION_KEYS = ["name", "recipe", "quick", "corpus", "runsDir", "checkpointEvery", "onStep", "progress", "log"];

/**
 * The run folder name of a shared language model: `lm/<label>`, or `lm-quick/<label>` in quick mode.
 *
 * @example
 * ```ts
 * import { lmRunName } from "./pretrained.ts";
 * console.log(lmRunName("vanilla", false), lmRunName("vanilla", true)); // lm/vanilla lm-quick/vanilla
 * ```
 */
export function lmRunName(label: string, quick: boolean): string {
  return `${quick ? "lm-quick" : "lm"}/${label}`;
}

/**
 * The run folder name of a masked language model (recipe task "mlm"): `mlm/<label>`, or `mlm-quick/<label>` in
 * quick mode, beside the causal runs of {@linkcode lmRunName}.
 *
 * @example
 * ```ts
 * import { mlmRunName } from "./pretrained.ts";
 * console.log(mlmRunName("vanilla", false), mlmRunName("vanilla", true)); // mlm/vanilla mlm-quick/vanilla
 * ```
 */
export function mlmRunName(label: string, quick: boolean): string {
  return `${quick ? "mlm-quick" : "mlm"}/${label}`;
}

/**
 * Everything {@linkcode trainCached} needs to train or load one language model: the run's name,
 * a model builder and the training options. {@linkcode trainedLanguageModel} trains it; the
 * training task (`deno task train`) uses it to train runs ahead of the notebooks and to tell
 * which runs are already cached.
 */
export interface LanguageModelRun {
  /** The run's folder under the runs folder, e.g. `lm/transnormer-t2`. */
  name: string;
  recipe: LmRecipe;
  corpus: ByteCorpus;
  /** What to pass to {@linkcode trainCached} with `name`. */
  options: TrainCachedOptions<LmBatch, TransformerModel>;
}

/**
 * The run that {@linkcode trainedLanguageModel} trains or loads, without training it.
 *
 * @example
 * ```ts
 * import { languageModelRun } from "./pretrained.ts";
 * const run = await languageModelRun("transnormer-t2", { quick: true });
 * console.log(run.name, run.recipe.steps); // lm-quick/transnormer-t2 6
 * const mlm = await languageModelRun("transnormer-t2", { quick: true, recipe: { task: "mlm" } });
 * console.log(mlm.name, mlm.options.batchAt!(0).mask!.some((w) => w === 1)); // mlm-quick/transnormer-t2 true
 * ```
 */
export async function languageModelRun(
  architecture: string | ModelConfigInput,
  options: TrainedLanguageModelOptions = {},
): Promise<LanguageModelRun> {
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.includes(key)) {
      throw new Error(`trainedLanguageModel: unknown option "${key}"; valid options are ${OPTION_KEYS.join(", ")}`);
    }
  }
  const quick = options.quick ?? isQuick();
  for (const key of Object.keys(options.recipe ?? {})) {
    if (!RECIPE_KEYS.includes(key)) {
      throw new Error(`trainedLanguageModel: unknown recipe key "${key}"; valid keys are ${RECIPE_KEYS.join(", ")}`);
    }
  }
  const recipe: LmRecipe = { ...(quick ? LM_RECIPE_QUICK : LM_RECIPE), ...options.recipe };
  if (recipe.task !== "lm" && recipe.task !== "mlm") {
    const message = `trainedLanguageModel: recipe.task must be "lm" or "mlm", got ${String(recipe.task)}`;
    throw typeof recipe.task === "string" ? new RangeError(message) : new TypeError(message);
  }
  if (typeof architecture !== "string" && architecture.task !== undefined && architecture.task !== recipe.task) {
    throw new Error(
      `trainedLanguageModel: the architecture's task "${architecture.task}" differs from the recipe's ` +
        `"${recipe.task}"; leave task out of the architecture and set recipe.task ("lm" or "mlm")`,
    );
  }
  const base = quick ? LM_ARCHITECTURE_QUICK : LM_ARCHITECTURE;
  const input: ModelConfigInput = typeof architecture === "string"
    ? { ...base, attention: architecture as ModelConfigInput["attention"], seed: recipe.seed, task: recipe.task }
    : { ...base, seed: recipe.seed, ...architecture, task: recipe.task };
  if (typeof architecture !== "string" && Array.isArray(architecture.attention) && architecture.layers === undefined) {
    delete input.layers;
  }
  const label = typeof architecture === "string" ? architecture : architecture.attention;
  if (options.name === undefined && typeof label !== "string") {
    throw new Error(
      `trainedLanguageModel: a custom attention list needs options.name, the run's folder under data/runs`,
    );
  }
  const mlm = recipe.task === "mlm";
  const name = options.name ?? (mlm ? mlmRunName : lmRunName)(label as string, quick);
  const corpus = options.corpus ?? await loadSotu();
  const { batchSize, seqLen, seed, maskRate } = recipe;
  // The [MASK] id of the model this run builds (256 unless the architecture sets vocabSize or maskToken).
  const maskToken = mlm ? modelConfig(input).maskToken! : 0;
  const sampler = mlm
    ? mlmSampler(corpus.splits.train, { batchSize, seqLen, seed, maskRate, maskToken })
    : lmSampler(corpus.splits.train, { batchSize, seqLen, seed });
  const tiling = mlm
    ? mlmTiling(corpus.splits.valid, {
      batchSize,
      seqLen,
      maxBatches: recipe.validBatches,
      maskRate,
      maskToken,
      seed: MLM_VALID_SEED,
    })
    : lmTiling(corpus.splits.valid, { batchSize, seqLen, maxBatches: recipe.validBatches });
  const validation = Array.from(tiling);
  // The probe reads the model that build() made last: trainCached builds once per call.
  let model: TransformerModel | null = null;
  const probeBatch = (step: number): LmBatch => {
    const b = sampler.batch(step);
    const rows = Math.min(recipe.probeRows, b.batch);
    const size = rows * b.length;
    const rest = b.mask ? { mask: b.mask.slice(0, size) } : {};
    return { ...b, batch: rows, inputs: b.inputs.slice(0, size), targets: b.targets.slice(0, size), ...rest };
  };
  const trainOptions: TrainCachedOptions<LmBatch, TransformerModel> = {
    build: () => (model = createModel(input, { log: options.log ?? (() => {}) })),
    steps: recipe.steps,
    lr: recipe.lr,
    warmup: recipe.warmup,
    clip: recipe.clip,
    beta2: recipe.beta2,
    weightDecay: recipe.weightDecay,
    batchAt: (step) => sampler.batch(step),
    validation: { every: recipe.validEvery, batches: () => validation },
    probe: recipe.probeEvery === null ? null : {
      every: recipe.probeEvery,
      fn: (step) =>
        Object.fromEntries(model!.scoreGradientNorms(probeBatch(step)).map((v, i) => [`score_grad_${i}`, v])),
    },
    batchTokens: (b) => b.inputs.length,
    seed: recipe.seed,
    dataId:
      `${corpus.name}:${corpus.checksums.corpus}:seq${recipe.seqLen}:batch${recipe.batchSize}:valid${recipe.validBatches}:probe${recipe.probeEvery}x${recipe.probeRows}` +
      // Only masked runs name their masking, so the causal runs keep their data id.
      (mlm
        ? `:mlm${maskRate}:${MLM_REPLACE.mask}/${MLM_REPLACE.random}/${MLM_REPLACE.keep}:validmask${MLM_VALID_SEED}`
        : ""),
    ...(options.runsDir ? { runsDir: options.runsDir } : {}),
    ...(options.checkpointEvery !== undefined ? { checkpointEvery: options.checkpointEvery } : {}),
    ...(options.onStep !== undefined ? { onStep: options.onStep } : {}),
    ...(options.progress ? { progress: options.progress } : {}),
    ...(options.log !== undefined ? { log: options.log } : {}),
  };
  return { name, recipe, corpus, options: trainOptions };
}

/**
 * A byte-level language model of the given architecture, trained with the shared recipe on the
 * State of the Union corpus, from the run cache when its config hash matches (otherwise trained now).
 * `architecture` is a preset name or a full {@linkcode ModelConfigInput}; the mode's
 * {@linkcode LM_ARCHITECTURE} fills in what it leaves out.
 *
 * The run logs per-step gradient norms of every variable (grad_norms.csv), validation loss
 * (valid.csv) and, every `probeEvery` updates, each layer's attention-score gradient norm
 * (`score_grad_<i>` in probes.csv, from {@linkcode TransformerModel.scoreGradientNorms}).
 *
 * @example
 * ```ts
 * import { trainedLanguageModel } from "./pretrained.ts";
 * const runsDir = await Deno.makeTempDir();
 * const { model, result, action } = await trainedLanguageModel("transnormer-t2", {
 *   quick: true, runsDir, recipe: { steps: 2 }, progress: "none", log: null,
 * });
 * console.log(action, result.step, result.logs.probes.length > 0); // trained 2 true
 * model.dispose();
 * await Deno.remove(runsDir, { recursive: true });
 * ```
 */
export async function trainedLanguageModel(
  architecture: string | ModelConfigInput,
  options: TrainedLanguageModelOptions = {},
): Promise<TrainedLanguageModel> {
  const run = await languageModelRun(architecture, options);
  const { model, result, action } = await trainCached<LmBatch, TransformerModel>(run.name, run.options);
  return { model, result, action, recipe: run.recipe, corpus: run.corpus };
}
