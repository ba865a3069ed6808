/**
 * The shared recipe for the byte-level language models the notebooks study: one model config and
 * one training budget per mode, trained on the State of the Union corpus through the trained-model
 * cache, so every notebook that needs "the trained T2" gets the same checkpoint.
 *
 * @module
 */

import { type Scale, scale as envScale, toScale } from "../env.ts";
import { type ByteCorpus, loadSotu } from "../data/sotu.ts";
import { lmSampler, lmTiling } from "../data/batching.ts";
import { MLM_REPLACE, mlmSampler, mlmTiling } from "../data/mlm.ts";
import type { LmBatch } from "../data/types.ts";
import { type CacheAction, trainCached, type TrainCachedOptions } from "../train/cache.ts";
import type { StepInfo, TrainResult } from "../train/train.ts";
import type { ProgressOutput } from "../notebook/progress.ts";
import { type ModelConfig, modelConfig, type ModelConfigInput } from "./config.ts";
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

/**
 * The large-scale recipe (`ATTNLAB_SCALE=large`), sized by the reports' "what would settle it": 12,000 updates of
 * 16 × 512 bytes, 98.3M training tokens, over 20 per parameter of {@linkcode LM_ARCHITECTURE_LARGE}. It is meant for a
 * GPU. The learning rate (1e-3, lower than full scale's 3e-3 for a 4× wider model) and the 600 warm-up updates (5%,
 * as full scale's 60 of 600 would be 10%) are untested at this size.
 * The score-gradient probe reads 4 rows every 60th update: 200 samples per run at a quarter of a batch.
 */
export const LM_RECIPE_LARGE: Readonly<LmRecipe> = Object.freeze({
  steps: 12_000,
  batchSize: 16,
  seqLen: 512,
  lr: 1e-3,
  warmup: 600,
  clip: 1,
  beta2: 0.98,
  weightDecay: 0.01,
  seed: 0,
  validEvery: 250,
  validBatches: 8,
  probeEvery: 60,
  probeRows: 4,
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

/** The large-scale architecture: 6 layers, d = 256, 4 heads (about 4.8M parameters with a byte vocabulary). */
export const LM_ARCHITECTURE_LARGE: Readonly<ModelConfigInput> = Object.freeze({
  layers: 6,
  dModel: 256,
  heads: 4,
  maxLength: 16384,
});

/**
 * The shared recipe at a scale: {@linkcode LM_RECIPE_QUICK}, {@linkcode LM_RECIPE} or {@linkcode LM_RECIPE_LARGE}
 * (`true`/`false` read as quick/full).
 *
 * @example
 * ```ts
 * import { lmRecipe } from "./pretrained.ts";
 * console.log(lmRecipe("quick").steps, lmRecipe(false).steps, lmRecipe("large").steps); // 6 600 12000
 * ```
 */
export function lmRecipe(scale: Scale | boolean): Readonly<LmRecipe> {
  const s = toScale(scale, "lmRecipe: scale");
  return s === "quick" ? LM_RECIPE_QUICK : s === "full" ? LM_RECIPE : LM_RECIPE_LARGE;
}

/**
 * The shared architecture at a scale: {@linkcode LM_ARCHITECTURE_QUICK}, {@linkcode LM_ARCHITECTURE} or
 * {@linkcode LM_ARCHITECTURE_LARGE} (`true`/`false` read as quick/full).
 *
 * @example
 * ```ts
 * import { lmArchitecture } from "./pretrained.ts";
 * console.log(lmArchitecture("full").dModel, lmArchitecture("large").layers); // 64 6
 * ```
 */
export function lmArchitecture(scale: Scale | boolean): Readonly<ModelConfigInput> {
  const s = toScale(scale, "lmArchitecture: scale");
  return s === "quick" ? LM_ARCHITECTURE_QUICK : s === "full" ? LM_ARCHITECTURE : LM_ARCHITECTURE_LARGE;
}

/**
 * The suffix of a scale's run groups: `-quick`, none for full, `-large` (`true`/`false` read as quick/full).
 *
 * @example
 * ```ts
 * import { scaleSuffix } from "./pretrained.ts";
 * console.log(JSON.stringify([scaleSuffix("quick"), scaleSuffix(false), scaleSuffix("large")])); // ["-quick","","-large"]
 * ```
 */
export function scaleSuffix(scale: Scale | boolean): string {
  const s = toScale(scale, "scaleSuffix: scale");
  return s === "full" ? "" : `-${s}`;
}

/**
 * The seed of the masking of an "mlm" run's validation batches: one for every run, whatever its own seed, so that
 * validation perplexities are over the same masked bytes and comparable across runs.
 */
export const MLM_VALID_SEED = 0;

/** Options of {@linkcode trainedLanguageModel}. */
export interface TrainedLanguageModelOptions {
  /**
   * The run's folder name under data/runs; default `lm/<preset>` (`lm-quick/<preset>` at quick scale,
   * `lm-large/<preset>` at large scale), and `mlm/<preset>` (`mlm-quick/…`, `mlm-large/…`) when the recipe's task is
   * "mlm".
   */
  name?: string;
  /** Overrides of the scale's recipe. */
  recipe?: Partial<LmRecipe>;
  /** Quick mode (`true`: scale "quick", `false`: "full"); default from the environment (see `scale` in lib/env.ts). */
  quick?: boolean;
  /** The scale (see `scale` in lib/env.ts); default from the environment. Must agree with `quick` when both are given. */
  scale?: Scale;
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
const OPTION_KEYS = [
  "name",
  "recipe",
  "quick",
  "scale",
  "corpus",
  "runsDir",
  "checkpointEvery",
  "onStep",
  "progress",
  "log",
];

/**
 * The scale of a run's options: `options.scale`, else `options.quick` (`true`: quick, `false`: full), else the
 * environment's. Both given and disagreeing is a RangeError.
 *
 * @example
 * ```ts
 * import { optionsScale } from "./pretrained.ts";
 * console.log(optionsScale({ quick: true }, "f"), optionsScale({ scale: "large" }, "f")); // quick large
 * ```
 */
export function optionsScale(options: { quick?: boolean; scale?: Scale }, owner: string): Scale {
  const fromQuick = options.quick === undefined ? undefined : toScale(options.quick, `${owner}: options.quick`);
  const given = options.scale === undefined ? undefined : toScale(options.scale, `${owner}: options.scale`);
  if (fromQuick !== undefined && given !== undefined && fromQuick !== given) {
    throw new RangeError(
      `${owner}: options.quick is ${options.quick} (scale ${fromQuick}) but options.scale is "${given}"; ` +
        "give only options.scale",
    );
  }
  return given ?? fromQuick ?? envScale();
}

/**
 * The run folder name of a shared language model: `lm/<label>`, `lm-quick/<label>` at quick scale or
 * `lm-large/<label>` at large scale (`true`/`false` read as quick/full).
 *
 * @example
 * ```ts
 * import { lmRunName } from "./pretrained.ts";
 * console.log(lmRunName("vanilla", false), lmRunName("vanilla", true), lmRunName("vanilla", "large")); // lm/vanilla lm-quick/vanilla lm-large/vanilla
 * ```
 */
export function lmRunName(label: string, scale: Scale | boolean): string {
  return `lm${scaleSuffix(scale)}/${label}`;
}

/**
 * The run folder name of a masked language model (recipe task "mlm"): `mlm/<label>`, `mlm-quick/<label>` or
 * `mlm-large/<label>`, beside the causal runs of {@linkcode lmRunName}.
 *
 * @example
 * ```ts
 * import { mlmRunName } from "./pretrained.ts";
 * console.log(mlmRunName("vanilla", false), mlmRunName("vanilla", true)); // mlm/vanilla mlm-quick/vanilla
 * ```
 */
export function mlmRunName(label: string, scale: Scale | boolean): string {
  return `mlm${scaleSuffix(scale)}/${label}`;
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
  /** The checked config of the model the run builds (e.g. for its size and FLOPs, without building it). */
  config: ModelConfig;
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
  const scale = optionsScale(options, "trainedLanguageModel");
  for (const key of Object.keys(options.recipe ?? {})) {
    if (!RECIPE_KEYS.includes(key)) {
      throw new Error(`trainedLanguageModel: unknown recipe key "${key}"; valid keys are ${RECIPE_KEYS.join(", ")}`);
    }
  }
  const recipe: LmRecipe = { ...lmRecipe(scale), ...options.recipe };
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
  const base = lmArchitecture(scale);
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
  const name = options.name ?? (mlm ? mlmRunName : lmRunName)(label as string, scale);
  const corpus = options.corpus ?? await loadSotu();
  const { batchSize, seqLen, seed, maskRate } = recipe;
  // The [MASK] id of the model this run builds (256 unless the architecture sets vocabSize or maskToken).
  const config = modelConfig(input);
  const maskToken = mlm ? config.maskToken! : 0;
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
      // Read with await: a GPU backend cannot read synchronously.
      fn: async (step) =>
        Object.fromEntries(
          (await model!.scoreGradientNormsAsync(probeBatch(step))).map((v, i) => [`score_grad_${i}`, v]),
        ),
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
  return { name, recipe, config, corpus, options: trainOptions };
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
