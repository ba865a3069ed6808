/**
 * The training loop: Adam over a {@linkcode Trainable}, per-step logs (loss, learning rate, gradient norms
 * per variable and per layer), validation, probes, progress, checkpoints and exact resumption. Each update is a
 * {@linkcode trainStep}; the rest runs around it as callbacks made from the options.
 *
 * Files in `<runsDir>/<name>/`: `checkpoint.json` and its data files (see checkpoint.ts), and the logs as
 * `train.csv`, `grad_norms.csv`, `valid.csv` and `probes.csv`, rewritten (atomically) at every checkpoint
 * and when the run ends or stops.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { variableGrads } from "./backprop.ts";
import { join } from "node:path";
import { REPO_ROOT } from "../env.ts";
import { sourceHash } from "../source_hash.ts";
import { writeFileAtomic } from "../figures/atomic.ts";
import { toCsv } from "../figures/csv.ts";
import { type Progress, progress, type ProgressOutput } from "../notebook/progress.ts";
import {
  type Adam,
  adam,
  ADAM_DEFAULTS,
  ADAM_RULES,
  type AdamOptions,
  checkVariables,
  decayedNames,
  learningRate,
  resolveAdamOptions,
  type ResolvedAdamOptions,
  squaredNorms,
} from "./adam.ts";
import { checkCheckpointStep, loadCheckpoint, removeCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import { canonicalJson, sha256Hex } from "./hash.ts";
import { checkOptionKeys, describeValue, type OptionRule, resolveOptions } from "../_options.ts";
import { checkEveryObject } from "./_options.ts";
import { checkRunDir } from "./_run_dir.ts";
import type { GradNormRow, NonFiniteStop, ProbeRow, Trainable, TrainLogs, TrainRow, ValidRow } from "./types.ts";

/** Validation batches, evaluated every `every` steps and at the end. */
export interface ValidationOptions<B> {
  every: number;
  /**
   * The batches; called at each evaluation. The validation loss is the mean over every scored target: each batch's
   * mean loss weighs by its number of scored targets ({@linkcode scoredTargets}).
   */
  batches: () => B[];
}

/** A probe, called with the number of updates applied, every `every` updates (and at step 0 of a fresh run). */
export interface ProbeOptions {
  every: number;
  /**
   * Returns named numbers, or a promise of them (awaited before training goes on, so a probe can read its tensors
   * with `await data()`, as a GPU backend needs); logged to probes.csv with a `step` column.
   */
  fn: (step: number) => Record<string, number> | Promise<Record<string, number>>;
}

/** What {@linkcode TrainOptions.onStep} receives after each update. */
export interface StepInfo {
  /** The batch index of this update; `step + 1` updates are now applied. */
  step: number;
  lr: number;
  /** Loss before the update. */
  loss: number;
  /** Pre-clip global gradient norm. */
  gradNorm: number;
  clipped: boolean;
  /** The train.csv row. */
  row: TrainRow;
  /** The grad_norms.csv row. */
  gradNorms: GradNormRow;
}

/** Options of {@linkcode train}: Adam's and the schedule's (see {@linkcode AdamOptions}), plus the loop's. */
export interface TrainOptions<B> extends AdamOptions {
  /** The batch of step s; must be a pure function of s, so that resuming sees the same data. Required. */
  batchAt: (step: number) => B;
  /** The run's name: its folder under runsDir (letters, digits, `._-`, `/` between parts); null: write nothing. */
  name?: string | null;
  /** Where run folders go. Default `<repo>/data/runs`. */
  runsDir?: string;
  /** Continue from the checkpoint in the run folder (same hash required). Default false: start over. */
  resume?: boolean;
  /** Stop after this many updates (the schedule still spans `steps`); null: steps. Default null. */
  until?: number | null;
  /** Save a checkpoint every this many updates; null: only at the end. Default null. */
  checkpointEvery?: number | null;
  validation?: ValidationOptions<B> | null;
  probe?: ProbeOptions | null;
  /** Called after each update; may be async. */
  onStep?: ((info: StepInfo) => void | Promise<void>) | null;
  /** Tokens in every batch, for tokens/s; or give `batchTokens`. Default null. */
  tokensPerBatch?: number | null;
  /** Tokens in a batch, for tokens/s. Default null. */
  batchTokens?: ((batch: B) => number) | null;
  /** A seed the caller used (model init, data order): part of the run's hash only. Default null. */
  seed?: number | null;
  /** Names the data (corpus, split, sequence length...): part of the run's hash only. Default null. */
  dataId?: string | null;
  /**
   * The hash of the code that defines the model, the training and the data: part of the run's hash only, so
   * that a change to that code retrains. Default (absent or null): {@linkcode trainingCodeHash}, computed once
   * per process. Give one (64 lowercase hex digits) only to test the cache against another code version.
   */
  codeHash?: string | null;
  /** Throw instead of returning `stopped` when the loss or a gradient is not finite. Default false. */
  throwOnNonFinite?: boolean;
  /** Where the progress line goes. Default "auto". */
  progress?: ProgressOutput;
  /** Receives one-line messages (resuming, saving...); null: silent. Default console.log. */
  log?: ((message: string) => void) | null;
}

/** What {@linkcode train} returns. */
export interface TrainResult {
  name: string | null;
  /** The run folder, or null when nothing was written. */
  dir: string | null;
  /** SHA-256 of the run's identity (model config and the options that change the result). */
  hash: string;
  /** Updates applied. */
  step: number;
  steps: number;
  /** Whether step === steps. */
  finished: boolean;
  /** Set when the run stopped on a non-finite loss or gradient. */
  stopped: NonFiniteStop | null;
  logs: TrainLogs;
}

/** The log files written into a run folder. */
export const LOG_FILES: Readonly<Record<keyof TrainLogs, string>> = Object.freeze({
  train: "train.csv",
  gradNorms: "grad_norms.csv",
  valid: "valid.csv",
  probes: "probes.csv",
});

/** Default folder of runs: `data/runs` at the repository root. */
export const DEFAULT_RUNS_DIR: string = join(REPO_ROOT, "data", "runs");

const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*(\/[A-Za-z0-9_][A-Za-z0-9._-]*)*$/;
const NAME_HINT = 'a name of letters, digits, ".", "_" and "-" (parts separated by "/"), like "t2-softmax"';
const BLOCK = /^blocks\.(\d+)\./;

type Resolved<B> = Required<TrainOptions<B>> & ResolvedAdamOptions;

const LOOP_DEFAULTS = {
  name: null,
  runsDir: DEFAULT_RUNS_DIR,
  resume: false,
  until: null,
  checkpointEvery: null,
  validation: null,
  probe: null,
  onStep: null,
  tokensPerBatch: null,
  batchTokens: null,
  seed: null,
  dataId: null,
  codeHash: null,
  throwOnNonFinite: false,
  progress: "auto",
  log: console.log,
};

const LOOP_RULES: Record<string, OptionRule> = {
  batchAt: { type: "function" },
  name: { type: "string", pattern: NAME, hint: NAME_HINT, nullable: true },
  runsDir: { type: "string", pattern: /./, hint: "a folder path" },
  resume: { type: "boolean" },
  until: { type: "number", min: 1, integer: true, nullable: true },
  checkpointEvery: { type: "number", min: 1, integer: true, nullable: true },
  validation: { type: "object", nullable: true, check: (v, where) => checkEveryObject(v, where, "batches") },
  probe: { type: "object", nullable: true, check: (v, where) => checkEveryObject(v, where, "fn") },
  onStep: { type: "function", nullable: true },
  tokensPerBatch: { type: "number", min: 0, nullable: true },
  batchTokens: { type: "function", nullable: true },
  seed: { type: "number", nullable: true },
  dataId: { type: "string", nullable: true },
  codeHash: { type: "string", nullable: true },
  throwOnNonFinite: { type: "boolean" },
  progress: { type: "enum", values: ["auto", "jupyter", "tty", "plain", "none"] },
  log: { type: "function", nullable: true },
};

/**
 * Checks train options and fills in defaults; `owner` names the caller in errors.
 *
 * @example
 * ```ts
 * import { resolveTrainingOptions } from "./train.ts";
 * const o = resolveTrainingOptions("demo", { steps: 10, batchAt: (s: number) => s });
 * console.log(o.lr, o.resume, o.name); // 0.001 false null
 * ```
 */
export function resolveTrainingOptions<B>(owner: string, options: TrainOptions<B>): Resolved<B> {
  const codeHash = (options as { codeHash?: unknown } | null)?.codeHash;
  if (codeHash !== undefined && codeHash !== null) {
    if (typeof codeHash !== "string") {
      throw new TypeError(
        `${owner}: option codeHash must be a string (a SHA-256 such as trainingCodeHash() returns) or null, got ${
          describeValue(codeHash)
        }`,
      );
    }
    if (!/^[0-9a-f]{64}$/.test(codeHash)) {
      throw new RangeError(
        `${owner}: option codeHash must be 64 lowercase hex digits (a SHA-256 such as trainingCodeHash() returns), ` +
          `got ${describeValue(codeHash)}; leave it out to hash the current code`,
      );
    }
  }
  const rules = { ...ADAM_RULES, ...LOOP_RULES };
  const o = resolveOptions(owner, options, { ...ADAM_DEFAULTS, ...LOOP_DEFAULTS, steps: 0 }, rules);
  if ((options as { batchAt?: unknown }).batchAt === undefined) {
    throw new TypeError(`${owner}: option batchAt is required: a function (step) => batch, pure in step`);
  }
  const adamKeys = Object.keys(ADAM_RULES) as (keyof AdamOptions)[];
  const adamOptions = Object.fromEntries(
    adamKeys.filter((k) => options[k] !== undefined).map((k) => [k, options[k]]),
  ) as unknown as AdamOptions;
  const resolved = { ...o, ...resolveAdamOptions(owner, adamOptions) } as Resolved<B>;
  if (resolved.until !== null && resolved.until > resolved.steps) {
    throw new RangeError(`${owner}: option until must be <= steps (${resolved.steps}), got ${resolved.until}`);
  }
  if (resolved.tokensPerBatch !== null && resolved.batchTokens !== null) {
    throw new TypeError(`${owner}: give tokensPerBatch or batchTokens, not both`);
  }
  if (resolved.resume && resolved.name === null) {
    throw new TypeError(`${owner}: option resume needs a name (the run folder to resume from); set options.name`);
  }
  return resolved;
}

function checkModel<B>(owner: string, model: Trainable<B>): string[] {
  if (model === null || typeof model !== "object") {
    throw new TypeError(`${owner}: model must be a Trainable { variables, loss, config }, got ${describeValue(model)}`);
  }
  if (typeof model.loss !== "function") {
    throw new TypeError(
      `${owner}: model.loss must be a function (batch) => tf.Scalar, got ${describeValue(model.loss)}`,
    );
  }
  if (model.firstNonFinite !== undefined && typeof model.firstNonFinite !== "function") {
    throw new TypeError(
      `${owner}: model.firstNonFinite must be a function (batch) => string | null (or a promise of one), or absent; got ${
        describeValue(model.firstNonFinite)
      }`,
    );
  }
  try {
    canonicalJson(model.config, "model.config");
  } catch (err) {
    throw new Error(`${owner}: model.config must be JSON-serialisable: ${(err as Error).message}`);
  }
  return checkVariables(`${owner}: model`, model.variables);
}

/**
 * The source a trained model depends on, relative to the repository root: the attention variants, the
 * models, the training loop, the data pipelines, the seeded random numbers, the blas backend's kernels and the option
 * rules (with their defaults).
 * {@linkcode trainingCodeHash} hashes it into every run's identity.
 */
export const TRAINING_SOURCES: readonly string[] = Object.freeze([
  "lib/attention",
  "lib/models",
  "lib/train",
  "lib/data",
  "lib/random.ts",
  // The blas backend trains the models, and lib/models calls its fused kernels.
  "lib/blas",
  // The option rules fill in the defaults that every variant, model and training run is built with.
  "lib/_options.ts",
]);

let currentCodeHash: Promise<string> | undefined;

/**
 * The SHA-256 of {@linkcode TRAINING_SOURCES} (every file's path and bytes, as `sourceHash` computes it), part
 * of every run's identity: a change to a file under `lib/attention`, `lib/models`, `lib/train`, `lib/data`,
 * `lib/blas` or to `lib/random.ts`, comments included, makes `trainCached` and `task train` retrain. For the repository
 * itself (no `root`) it is computed once per process, as the modules that train are loaded once; with
 * `options.root` (another checkout, a test's copy) it is computed afresh. A missing path is an Error naming it.
 *
 * @example
 * ```ts
 * import { trainingCodeHash } from "./train.ts";
 * const hash = await trainingCodeHash();
 * console.log(hash.length, hash === await trainingCodeHash()); // 64 true
 * ```
 */
export function trainingCodeHash(options: { root?: string } = {}): Promise<string> {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`trainingCodeHash: options must be an object like { root }, got ${describeValue(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (key !== "root") throw new TypeError(`trainingCodeHash: unknown option "${key}"; the only option is root`);
  }
  if (options.root !== undefined) {
    if (typeof options.root !== "string" || options.root === "") {
      throw new TypeError(`trainingCodeHash: options.root must be a folder path, got ${describeValue(options.root)}`);
    }
    return sourceHash(TRAINING_SOURCES, { root: options.root });
  }
  if (currentCodeHash === undefined) {
    currentCodeHash = sourceHash(TRAINING_SOURCES);
    // A failure is not remembered: the next call tries again.
    currentCodeHash.catch(() => {
      currentCodeHash = undefined;
    });
  }
  return currentCodeHash;
}

/** The description of a run that its hash covers. */
export interface RunIdentity {
  config: unknown;
  variables: Record<string, number[]>;
  steps: number;
  lr: number;
  minLr: number;
  warmup: number;
  schedule: string;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  decayed: string[];
  clip: number | null;
  seed: number | null;
  dataId: string | null;
  /** {@linkcode trainingCodeHash}, or the `codeHash` option when given. */
  codeHash: string;
}

/**
 * The identity of a run (model config, variable shapes, the options that change the result: schedule,
 * Adam constants, clipping, weight decay and which variables it applies to, seed, dataId; and the hash of
 * the code that trains it, {@linkcode trainingCodeHash}) and its SHA-256. Functions cannot be hashed: when
 * `batchAt` changes, change `dataId`.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { runIdentity } from "./train.ts";
 * const w = tf.variable(tf.zeros([2]));
 * const model = { variables: { w }, config: { kind: "demo" }, loss: () => tf.sum(w) as tf.Scalar };
 * const a = await runIdentity(model, { steps: 10, batchAt: () => null });
 * const b = await runIdentity(model, { steps: 20, batchAt: () => null });
 * const c = await runIdentity(model, { steps: 10, batchAt: () => null, codeHash: "0".repeat(64) });
 * console.log(a.hash.length, a.hash !== b.hash, a.hash !== c.hash); // 64 true true
 * w.dispose();
 * ```
 */
export function runIdentity<B>(
  model: Trainable<B>,
  options: TrainOptions<B>,
): Promise<{ identity: RunIdentity; hash: string }> {
  const names = checkModel("runIdentity", model);
  const o = resolveTrainingOptions("runIdentity", options);
  return identityOf(model, names, o);
}

async function identityOf<B>(
  model: Trainable<B>,
  names: string[],
  o: Resolved<B>,
): Promise<{ identity: RunIdentity; hash: string }> {
  const identity: RunIdentity = {
    config: model.config ?? null,
    variables: Object.fromEntries(names.map((n) => [n, [...model.variables[n].shape]])),
    steps: o.steps,
    lr: o.lr,
    minLr: o.minLr,
    warmup: o.warmup,
    schedule: o.schedule,
    beta1: o.beta1,
    beta2: o.beta2,
    eps: o.eps,
    weightDecay: o.weightDecay,
    decayed: o.weightDecay > 0 ? decayedNames(model.variables, o.decay) : [],
    clip: o.clip,
    seed: o.seed,
    dataId: o.dataId,
    codeHash: o.codeHash ?? await trainingCodeHash(),
  };
  return { identity, hash: await sha256Hex(canonicalJson(identity)) };
}

/**
 * Copies saved weights into a model's variables; names and sizes must match exactly.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { restoreWeights } from "./train.ts";
 * const w = tf.variable(tf.zeros([2]));
 * restoreWeights({ w }, { w: new Float32Array([1, 2]) });
 * console.log(Array.from(w.dataSync())); // [1, 2]
 * w.dispose();
 * ```
 */
export function restoreWeights(
  variables: Readonly<Record<string, tf.Variable>>,
  weights: Readonly<Record<string, Float32Array>>,
): void {
  const names = Object.keys(variables);
  const saved = Object.keys(weights);
  const missing = names.filter((n) => !(n in weights));
  const extra = saved.filter((n) => !(n in variables));
  if (missing.length > 0 || extra.length > 0) {
    throw new Error(
      `restoreWeights: the saved weights do not match the model's variables (missing: ${
        missing.join(", ") || "none"
      }; not in the model: ${extra.join(", ") || "none"}); the model config must be the one that was trained`,
    );
  }
  for (const name of names) {
    if (weights[name].length !== variables[name].size) {
      throw new Error(
        `restoreWeights: "${name}" was saved with ${weights[name].length} values, the model's has ` +
          `${variables[name].size} (shape [${variables[name].shape}])`,
      );
    }
  }
  tf.tidy(() => {
    for (const name of names) variables[name].assign(tf.tensor(weights[name], variables[name].shape, "float32"));
  });
}

async function readWeights(variables: Readonly<Record<string, tf.Variable>>): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = {};
  for (const [name, w] of Object.entries(variables)) out[name] = Float32Array.from(await w.data() as Float32Array);
  return out;
}

/**
 * Writes the logs as CSV files into `dir` (atomically; empty logs are skipped).
 *
 * @example
 * ```ts
 * import { writeLogCsvs } from "./train.ts";
 * const dir = await Deno.makeTempDir();
 * await writeLogCsvs(dir, { train: [], gradNorms: [{ step: 0, "blocks.0.w": 1 }], valid: [], probes: [] });
 * console.log(await Deno.readTextFile(`${dir}/grad_norms.csv`)); // step,blocks.0.w\n0,1
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeLogCsvs(dir: string, logs: TrainLogs): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  for (const key of Object.keys(LOG_FILES) as (keyof TrainLogs)[]) {
    if (logs[key].length === 0) continue;
    await writeFileAtomic(join(dir, LOG_FILES[key]), toCsv(logs[key], { digits: 7 }));
  }
}

async function removeLogCsvs(dir: string): Promise<void> {
  for (const file of Object.values(LOG_FILES)) {
    await Deno.remove(join(dir, file)).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
  }
}

/**
 * The number of targets a batch's mean loss averages over, its weight in the validation loss: for a language-model
 * batch (`kind: "lm"`) the sum of its `mask` weights, or batch × length without a mask; for a classification batch
 * (`kind: "cls"`) its number of sequences; for any other batch 1 (each batch's mean then weighs the same).
 *
 * @example
 * ```ts
 * import { scoredTargets } from "./train.ts";
 * const lm = { kind: "lm", inputs: new Int32Array(6), targets: new Int32Array(6), batch: 2, length: 3 };
 * console.log(scoredTargets(lm), scoredTargets({ ...lm, mask: Float32Array.from([0, 1, 0, 1, 1, 0]) })); // 6 3
 * console.log(scoredTargets({ kind: "cls", batch: 4 }), scoredTargets(7)); // 4 1
 * ```
 */
export function scoredTargets(batch: unknown): number {
  if (batch === null || typeof batch !== "object") return 1;
  const b = batch as { kind?: unknown; mask?: unknown; batch?: unknown; length?: unknown };
  if (b.kind === "lm") {
    if (b.mask instanceof Float32Array) {
      let total = 0;
      for (const w of b.mask) total += w;
      return total;
    }
    return Number(b.batch) * Number(b.length);
  }
  if (b.kind === "cls") return Number(b.batch);
  return 1;
}

async function validationLoss<B>(model: Trainable<B>, batches: B[]): Promise<number> {
  if (isThenable(batches)) {
    throw new TypeError(
      "train: validation.batches() returned a Promise; it must return the array of batches synchronously " +
        "(load them before training, e.g. const valid = await load(); batches: () => valid)",
    );
  }
  if (!Array.isArray(batches) || batches.length === 0) {
    throw new Error(
      `train: validation.batches() must return a non-empty array of batches, got ${describeValue(batches)}`,
    );
  }
  // The mean over every scored target: a batch with a short last row, fewer masked positions or fewer sequences
  // counts for less.
  let total = 0;
  let targets = 0;
  for (const [i, batch] of batches.entries()) {
    const weight = scoredTargets(batch);
    if (!(weight > 0) || !Number.isFinite(weight)) {
      throw new RangeError(
        `train: validation batch ${i} scores ${describeValue(weight)} targets; each batch needs a finite number > 0 ` +
          "(batch × length, or a mask with some weight)",
      );
    }
    const loss = tf.tidy(() => model.loss(batch));
    const value = (await loss.data())[0];
    loss.dispose();
    total += value * weight;
    targets += weight;
  }
  return total / targets;
}

function isThenable(value: unknown): boolean {
  return value !== null && (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function";
}

function layerOf(name: string): number | null {
  const match = BLOCK.exec(name);
  return match ? Number(match[1]) : null;
}

/**
 * The bad variable backpropagation reaches first: NaN from layer k spreads to every earlier layer and to
 * the (tied) embedding, so the last bad one in the highest layer; with none in a layer, the last bad one.
 */
function firstReached(bad: readonly string[]): string {
  let best = bad[bad.length - 1];
  let bestLayer = -1;
  for (const name of bad) {
    const layer = layerOf(name);
    if (layer !== null && layer >= bestLayer) [best, bestLayer] = [name, layer];
  }
  return best;
}

/** Options of {@linkcode trainStep}. */
export interface TrainStepOptions {
  /** Tokens in the batch, for the row's `tokens` and `tokens_per_s`; null: unknown. Default null. */
  tokens?: number | null;
  /**
   * When the step began, a `performance.now()` time (so that its `seconds` can count making the batch too); null:
   * when trainStep is called. Default null.
   */
  t0?: number | null;
}

/**
 * What {@linkcode trainStep} returns. When the update was applied, `stopped` is null and `row` and `gradNorms` are the
 * step's train.csv and grad_norms.csv rows. When it was not, `stopped` says where the loss or a gradient was not
 * finite; `row` is the step's train.csv row (its `lr` the one the update would have had; loss and grad_norm NaN when
 * the loss threw) and `gradNorms` its grad_norms.csv row, or null when the loss threw and no gradient was computed.
 */
export type TrainStepResult =
  | { stopped: null; row: TrainRow; gradNorms: GradNormRow }
  | { stopped: NonFiniteStop; row: TrainRow; gradNorms: GradNormRow | null };

/**
 * One training update, the one {@linkcode train} makes at each step: the loss of `model` on `batch` and its gradients
 * ({@linkcode variableGrads}: tf.variableGrads's values, freeing memory as the backward pass goes), one read of the
 * loss and of every squared gradient norm, then `optimizer`'s update (clipped by its `clip`; its index is
 * `optimizer.step`). `optimizer` must be `adam(model.variables, ...)`. Returns the step's log
 * rows; or, when the loss or a gradient is not finite, applies no update and returns where in `stopped` (as
 * {@linkcode train} reports it; a loss that throws is such a stop when `model.firstNonFinite` locates a non-finite
 * output, and is rethrown otherwise). Disposes every tensor it makes; for a loop of your own around the model.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { adam, trainStep } from "./mod.ts";
 * // loss (w - t)², gradient 2(w - t)
 * const w = tf.variable(tf.tensor1d([3]));
 * const model = { variables: { w }, config: {}, loss: (t: number) => tf.sum(tf.square(tf.sub(w, t))) as tf.Scalar };
 * const opt = adam(model.variables, { lr: 0.1, steps: 10 });
 * const step = await trainStep(model, 1, opt);
 * console.log(step.stopped, step.row.loss, step.gradNorms?.w, opt.step); // null 4 4 1
 * const bad = await trainStep(model, NaN, opt);
 * console.log(bad.stopped?.where, bad.stopped?.step, opt.step); // loss 1 1
 * opt.dispose();
 * w.dispose();
 * ```
 */
export async function trainStep<B>(
  model: Trainable<B>,
  batch: B,
  optimizer: Adam,
  options: TrainStepOptions = {},
): Promise<TrainStepResult> {
  // Checked in the promise: bad arguments reject it, as any failure of the step does.
  return await applyStep(model, batch, optimizer, checkStepArgs(model, optimizer, options));
}

/** {@linkcode trainStep} on checked arguments: what {@linkcode train}, which checked them once, calls every step. */
async function applyStep<B>(
  model: Trainable<B>,
  batch: B,
  optimizer: Adam,
  at: { tokens: number | null; t0: number },
): Promise<TrainStepResult> {
  const { tokens, t0 } = at;
  const names = optimizer.names;
  const varList = names.map((n) => model.variables[n]);
  const step = optimizer.step;
  let computed: { value: tf.Scalar; grads: tf.NamedTensorMap };
  try {
    // value: [], grads: each variable's shape, keyed by its tf name
    computed = variableGrads(() => model.loss(batch), varList);
  } catch (err) {
    // (variableGrads has freed its tape.) A model may throw on the non-finite values it meets (the attention variants check q, k, v): when it
    // locates a non-finite output, stop as on a non-finite loss; any other error propagates.
    let stopped: NonFiniteStop | null = null;
    try {
      stopped = model.firstNonFinite ? await lossStop(model, step, batch, []) : null;
    } catch {
      throw err;
    }
    if (stopped?.stage == null) throw err;
    return { stopped, row: stoppedRow(optimizer, { loss: NaN, gradNorm: NaN, tokens, t0 }), gradNorms: null };
  }
  const { value, grads } = computed;
  try {
    const byName: Record<string, tf.Tensor | null> = {};
    names.forEach((n, i) => (byName[n] = grads[varList[i].name] ?? null));
    const present = names.map((_, i) => i).filter((i) => byName[names[i]] !== null);
    // One read for the loss and every squared norm: [1 + V]
    const packed = tf.tidy(() =>
      tf.concat([tf.reshape(value, [1]), squaredNorms(present.map((i) => byName[names[i]]!))])
    );
    const data = await packed.data() as Float32Array;
    packed.dispose();
    const loss = data[0];
    const squares = new Float32Array(names.length);
    present.forEach((v, i) => (squares[v] = data[1 + i]));
    const gradNorms = gradNormRow(step, names, squares);
    const gradNorm = gradNorms.global;

    const badVariables = names.filter((_, i) => !Number.isFinite(squares[i]));
    if (!Number.isFinite(loss) || badVariables.length > 0) {
      const stopped = Number.isFinite(loss)
        ? gradientStop(step, badVariables)
        : await lossStop(model, step, batch, badVariables);
      return { stopped, row: stoppedRow(optimizer, { loss, gradNorm, tokens, t0 }), gradNorms };
    }
    const info = optimizer.apply(byName, { gradNorm });
    const seconds = (performance.now() - t0) / 1000;
    const row: TrainRow = {
      step,
      lr: info.lr,
      loss,
      grad_norm: gradNorm,
      clipped: info.clipped,
      clip: optimizer.options.clip,
      tokens,
      tokens_per_s: tokens === null ? null : tokens / seconds,
      seconds,
    };
    return { stopped: null, row, gradNorms };
  } finally {
    value.dispose();
    for (const g of Object.values(grads)) g?.dispose();
  }
}

/** Checks {@linkcode trainStep}'s arguments (cheaply: it runs at every step) and fills in its options. */
function checkStepArgs<B>(
  model: Trainable<B>,
  optimizer: Adam,
  options: TrainStepOptions,
): { tokens: number | null; t0: number } {
  if (model === null || typeof model !== "object" || typeof model.loss !== "function") {
    throw new TypeError(
      `trainStep: model must be a Trainable { variables, loss, config }, got ${describeValue(model)}`,
    );
  }
  if (optimizer === null || typeof optimizer !== "object" || !Array.isArray(optimizer.names)) {
    throw new TypeError(`trainStep: optimizer must be adam(model.variables, options), got ${describeValue(optimizer)}`);
  }
  const names = Object.keys(model.variables ?? {});
  if (names.length !== optimizer.names.length || optimizer.names.some((n, i) => n !== names[i])) {
    const theirs = optimizer.names.join(", ");
    throw new Error(
      `trainStep: the optimizer's variables (${theirs}) are not the model's (${names.join(", ")}); ` +
        "create it with adam(model.variables, options)",
    );
  }
  const { tokens = null, t0 = null } = checkOptionKeys<TrainStepOptions>("trainStep", options, ["tokens", "t0"]);
  if (tokens !== null && (typeof tokens !== "number" || !(tokens >= 0))) {
    throw new TypeError(`trainStep: option tokens must be a number >= 0 or null, got ${describeValue(tokens)}`);
  }
  if (t0 !== null && (typeof t0 !== "number" || !Number.isFinite(t0))) {
    throw new TypeError(`trainStep: option t0 must be a performance.now() time or null, got ${describeValue(t0)}`);
  }
  return { tokens, t0: t0 ?? performance.now() };
}

/**
 * The grad_norms.csv row of a step from its squared gradient norms (one per variable, in `names`' order): each
 * variable's norm, each layer's (`blocks.<i>.*`, in layer order), then the global norm.
 */
function gradNormRow(step: number, names: readonly string[], squares: Float32Array): GradNormRow {
  const row: GradNormRow = { step };
  let total = 0;
  const layerSquares = new Map<number, number>();
  names.forEach((n, i) => {
    row[n] = Math.sqrt(squares[i]);
    total += squares[i];
    const layer = layerOf(n);
    if (layer !== null) layerSquares.set(layer, (layerSquares.get(layer) ?? 0) + squares[i]);
  });
  for (const layer of [...layerSquares.keys()].sort((a, b) => a - b)) {
    row[`blocks.${layer}.*`] = Math.sqrt(layerSquares.get(layer)!);
  }
  row.global = Math.sqrt(total);
  return row;
}

/** The stop on non-finite gradients of `variables` (the loss finite): where backpropagation meets them first. */
function gradientStop(step: number, variables: string[]): NonFiniteStop {
  const where = firstReached(variables);
  return { reason: "non-finite", step, where, layer: layerOf(where), stage: null, variables };
}

/** The stop on a non-finite (or throwing) loss: where the model's `firstNonFinite` locates it, if it can. */
async function lossStop<B>(
  model: Trainable<B>,
  step: number,
  batch: B,
  variables: string[],
): Promise<NonFiniteStop> {
  const stage = (await model.firstNonFinite?.(batch)) ?? null;
  if (stage !== null && typeof stage !== "string") {
    throw new Error(`train: model.firstNonFinite must return a string or null, got ${describeValue(stage)}`);
  }
  const layer = stage === null ? null : layerOf(`${stage}.`);
  return { reason: "non-finite", step, where: "loss", layer, stage, variables };
}

/** The log row of a step that stopped on a non-finite value: no update was applied. */
function stoppedRow(
  optimizer: Adam,
  at: { loss: number; gradNorm: number; tokens: number | null; t0: number },
): TrainRow {
  const { lr, minLr, warmup, steps, schedule, clip } = optimizer.options;
  return {
    step: optimizer.step,
    lr: learningRate(optimizer.step, { lr, minLr, warmup, steps, schedule }),
    loss: at.loss,
    grad_norm: at.gradNorm,
    clipped: false,
    clip,
    tokens: at.tokens,
    tokens_per_s: null,
    seconds: (performance.now() - at.t0) / 1000,
  };
}

/** The run a {@linkcode TrainCallback} sees. */
interface TrainContext<B> {
  readonly model: Trainable<B>;
  readonly optimizer: Adam;
  /** The logs so far, a resumed run's included; callbacks append their rows. */
  readonly logs: TrainLogs;
  /** The first step of this session: 0, or the checkpoint's step when resuming. */
  readonly start: number;
  /** The step this session stops before: `until`, or `steps`. */
  readonly until: number;
  /** The steps the schedule spans. */
  readonly steps: number;
}

/**
 * What runs around {@linkcode trainStep} in {@linkcode train}. Made from train's options (validation, probe, onStep,
 * progress, checkpoints), called in that order at each point; a promise returned is awaited before the next call.
 */
interface TrainCallback<B> {
  /** Before the first step. */
  start?(ctx: TrainContext<B>): void | Promise<void>;
  /** After each update applied; `info.step + 1` updates are applied. */
  afterStep?(ctx: TrainContext<B>, info: StepInfo): void | Promise<void>;
  /** After the last step, or the step that stopped (`stopped`), when nothing threw; before a stop is reported. */
  end?(ctx: TrainContext<B>, stopped: NonFiniteStop | null): void | Promise<void>;
}

/** Validation every `every` updates and at the end of the run, unless that step was just measured. */
function validationCallback<B>(validation: ValidationOptions<B>): TrainCallback<B> {
  const validate = async (ctx: TrainContext<B>, step: number) => {
    const loss = await validationLoss(ctx.model, validation.batches());
    const row: ValidRow = { step, loss, perplexity: Math.exp(loss), bits_per_byte: loss / Math.LN2 };
    ctx.logs.valid.push(row);
  };
  return {
    async afterStep(ctx, { step }) {
      if ((step + 1) % validation.every === 0) await validate(ctx, step + 1);
    },
    async end(ctx, stopped) {
      const done = ctx.optimizer.step;
      // The end of the run, not of a partial session (until < steps): a resumed run then logs what a straight one does.
      if (stopped === null && done === ctx.steps && ctx.logs.valid.at(-1)?.step !== done) await validate(ctx, done);
    },
  };
}

/** The probe every `every` updates, and at step 0 of a fresh run (unless its logs have it). */
function probeCallback<B>(probe: ProbeOptions): TrainCallback<B> {
  const run = async (ctx: TrainContext<B>, step: number) => {
    const values: unknown = await probe.fn(step);
    if (values === null || typeof values !== "object" || Array.isArray(values)) {
      throw new TypeError(`train: probe.fn must return an object of numbers, got ${describeValue(values)}`);
    }
    for (const [key, value] of Object.entries(values)) {
      // A string or an object would be written to probes.csv as it is, and read back as no number.
      if (typeof value !== "number") {
        throw new TypeError(`train: probe.fn must return an object of numbers, got ${key}: ${describeValue(value)}`);
      }
    }
    ctx.logs.probes.push({ step, ...values } as ProbeRow);
  };
  return {
    async start(ctx) {
      if (ctx.start === 0 && !ctx.logs.probes.some((r) => r.step === 0)) await run(ctx, 0);
    },
    async afterStep(ctx, { step }) {
      if ((step + 1) % probe.every === 0) await run(ctx, step + 1);
    },
  };
}

/** The progress bar: made at the start (its clock starts then), ticked after each update; `close` ends its line. */
function progressCallback<B>(label: string, output: ProgressOutput): TrainCallback<B> & { close(): Promise<void> } {
  let bar: Progress | null = null;
  return {
    start(ctx) {
      bar = progress({ total: ctx.until - ctx.start, label, output });
    },
    afterStep(_ctx, { step, loss, row }) {
      bar!.tick(1, {
        step: step + 1,
        loss,
        "tokens/s": row.tokens_per_s === null ? "?" : Math.round(row.tokens_per_s),
      });
    },
    async close() {
      await bar?.done();
    },
  };
}

/**
 * The rows in `logs`: a save is due at the end when it changed since the last one (rows are only ever appended, so
 * a new row changes it).
 */
function rowCount(logs: TrainLogs): number {
  return logs.train.length + logs.gradNorms.length + logs.valid.length + logs.probes.length;
}

/**
 * Checkpoints into the run folder: every `every` updates before the session's last, and at the end when the logs or
 * the step changed since the last one (`savedStep`, the resumed checkpoint's at first); after a stop, the log files
 * alone (the last checkpoint holds the weights before it).
 */
function checkpointCallback<B>(
  run: {
    dir: string;
    name: string;
    hash: string;
    identity: RunIdentity;
    every: number | null;
    log: (message: string) => void;
    resumed: { logs: TrainLogs; savedStep: number | null };
  },
): TrainCallback<B> & { readonly savedStep: number | null } {
  const { dir, name, hash, identity, every, log } = run;
  let savedStep = run.resumed.savedStep;
  let savedRows = rowCount(run.resumed.logs);
  const save = async (ctx: TrainContext<B>) => {
    await saveCheckpoint(dir, {
      name,
      steps: ctx.steps,
      hash,
      identity,
      shapes: identity.variables,
      weights: await readWeights(ctx.model.variables),
      adam: await ctx.optimizer.getState(),
      logs: ctx.logs,
    });
    await writeLogCsvs(dir, ctx.logs);
    savedStep = ctx.optimizer.step;
    savedRows = rowCount(ctx.logs);
  };
  return {
    get savedStep() {
      return savedStep;
    },
    async afterStep(ctx, { step }) {
      const done = step + 1;
      if (every !== null && done % every === 0 && done < ctx.until) await save(ctx);
    },
    async end(ctx, stopped) {
      if (stopped !== null) {
        await writeLogCsvs(dir, ctx.logs);
      } else if (rowCount(ctx.logs) !== savedRows || savedStep !== ctx.optimizer.step) {
        await save(ctx);
        log(`${name}: saved step ${ctx.optimizer.step} of ${ctx.steps} to ${dir}`);
      }
    },
  };
}

/**
 * With `resume` and a checkpoint in `dir` (of the same hash), restores the weights and Adam's state from it and returns
 * its logs and step; without `resume`, removes any previous checkpoint and logs from `dir`. Else empty logs.
 */
async function resumeOrStartOver<B>(
  model: Trainable<B>,
  opt: Adam,
  o: Resolved<B>,
  run: { dir: string | null; hash: string; log: (message: string) => void },
): Promise<{ logs: TrainLogs; savedStep: number | null }> {
  const { dir, hash, log } = run;
  const empty = { logs: { train: [], gradNorms: [], valid: [], probes: [] } as TrainLogs, savedStep: null };
  if (dir === null) return empty;
  if (!o.resume) {
    await removeCheckpoint(dir);
    await removeLogCsvs(dir);
    return empty;
  }
  const checkpoint = await loadCheckpoint(dir);
  if (checkpoint === null) {
    log(`${o.name}: no checkpoint in ${dir}; training from step 0`);
    return empty;
  }
  if (checkpoint.manifest.hash !== hash) {
    throw new Error(
      `train: the checkpoint in ${dir} is of a different run (hash ${checkpoint.manifest.hash.slice(0, 12)}…, ` +
        `this run ${hash.slice(0, 12)}…: the model config, the training options or the training code changed); ` +
        "pass resume: false to start over, or choose another name",
    );
  }
  checkCheckpointStep(dir, { step: checkpoint.manifest.step, steps: o.steps });
  restoreWeights(model.variables, checkpoint.weights);
  opt.setState(checkpoint.adam);
  log(`${o.name}: resuming from step ${checkpoint.manifest.step} of ${o.steps} (${dir})`);
  return { logs: checkpoint.logs, savedStep: checkpoint.manifest.step };
}

/** `batchAt(s)` and its tokens (`tokensPerBatch`, or `batchTokens` of it), checked. */
function batchOf<B>(o: Resolved<B>, s: number): { batch: B; tokens: number | null } {
  const batch = o.batchAt(s);
  if (isThenable(batch)) {
    throw new TypeError(
      `train: option batchAt returned a Promise at step ${s}; it must be synchronous and pure in step ` +
        "(the loss runs inside tf.variableGrads): load or compute the batches before training, e.g. " +
        "const batches = await loadAll(); batchAt: (s) => batches[s % batches.length]",
    );
  }
  const tokens = o.tokensPerBatch ?? (o.batchTokens ? o.batchTokens(batch) : null);
  if (tokens !== null && (typeof tokens !== "number" || !(tokens >= 0))) {
    throw new Error(`train: batchTokens must return a number >= 0, got ${describeValue(tokens)} at step ${s}`);
  }
  return { batch, tokens };
}

/** The options of {@linkcode adam} among resolved training options. */
function adamOptionsOf(o: ResolvedAdamOptions): AdamOptions {
  const keys = Object.keys(ADAM_RULES) as (keyof AdamOptions)[];
  return Object.fromEntries(keys.map((k) => [k, o[k]])) as unknown as AdamOptions;
}

/** What `onStep` and the callbacks receive after an update, from its log rows. */
function stepInfo(row: TrainRow, gradNorms: GradNormRow): StepInfo {
  return { step: row.step, lr: row.lr, loss: row.loss, gradNorm: row.grad_norm, clipped: row.clipped, row, gradNorms };
}

/** The line that reports a stop on a non-finite value. */
function stopMessage(name: string | null, stopped: NonFiniteStop, savedStep: number | null): string {
  const what = stopped.where !== "loss"
    ? `gradient of ${stopped.where}`
    : stopped.stage === null
    ? "loss"
    : `loss (first non-finite output: ${stopped.stage})`;
  const kept = `the last checkpoint (step ${savedStep ?? "none"}) holds the weights before it`;
  return `${name ?? "train"}: stopped at step ${stopped.step}: non-finite ${what}; ${kept}`;
}

/**
 * Trains `model` with Adam over steps [start, until) where start is 0, or the checkpoint's step with
 * `resume: true`. Each step ({@linkcode trainStep}) computes the loss and gradients of `batchAt(step)`, logs them,
 * clips and updates; validation, the probe, `onStep`, the progress bar and checkpoints follow it, in that order.
 * Stops cleanly (no update, no checkpoint) at the first non-finite loss or gradient and reports where in
 * `stopped`: for a gradient, the bad variable in the highest layer; for the loss, the first stage of the
 * forward pass with a non-finite output when the model has `firstNonFinite` (with it, a loss that throws
 * on non-finite values, as the attention variants do, stops the same way). Returns the logs; the model's variables hold the trained weights. The caller owns the model.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { train } from "./train.ts";
 * const w = tf.variable(tf.tensor1d([2]));
 * const model = { variables: { "blocks.0.w": w }, config: {}, loss: (t: number) => tf.sum(tf.square(tf.sub(w, t))) as tf.Scalar };
 * const runsDir = await Deno.makeTempDir();
 * const result = await train(model, {
 *   name: "demo", runsDir, steps: 3, lr: 0.1, batchAt: () => 0, progress: "none", log: null,
 * });
 * console.log(result.logs.train.map((r) => r.loss.toFixed(2)), result.finished); // ["4.00", "3.61", "3.40"] true
 * w.dispose();
 * await Deno.remove(runsDir, { recursive: true });
 * ```
 */
export async function train<B>(model: Trainable<B>, options: TrainOptions<B>): Promise<TrainResult> {
  const names = checkModel("train", model);
  const o = resolveTrainingOptions("train", options);
  const { identity, hash } = await identityOf(model, names, o);
  const log = o.log ?? (() => {});
  const dir = o.name === null ? null : join(o.runsDir, o.name);
  if (dir !== null) await checkRunDir("train", { runsDir: o.runsDir, dir });
  const opt = adam(model.variables, adamOptionsOf(o));
  try {
    const resumed = await resumeOrStartOver(model, opt, o, { dir, hash, log });
    const { logs } = resumed;
    const start = opt.step;
    const until = Math.max(start, o.until ?? o.steps);
    const ctx: TrainContext<B> = { model, optimizer: opt, logs, start, until, steps: o.steps };
    const { validation, probe, onStep, checkpointEvery: every } = o;
    const bar = progressCallback<B>(o.name ?? "train", o.progress);
    const checkpoints = dir === null
      ? null
      : checkpointCallback<B>({ dir, name: o.name!, hash, identity, every, log, resumed });
    // Around each step, in this order.
    const callbacks = [
      validation && validationCallback(validation),
      probe && probeCallback<B>(probe),
      onStep && { afterStep: (_ctx: TrainContext<B>, info: StepInfo) => onStep(info) },
      bar,
      checkpoints,
    ].filter((c): c is TrainCallback<B> => !!c);

    let stopped: NonFiniteStop | null = null;
    try {
      for (const c of callbacks) await c.start?.(ctx);
      for (let s = start; s < until; s++) {
        const t0 = performance.now();
        const { batch, tokens } = batchOf(o, s);
        const result = await applyStep(model, batch, opt, { tokens, t0 });
        logs.train.push(result.row);
        if (result.gradNorms !== null) logs.gradNorms.push(result.gradNorms);
        if (result.stopped !== null) {
          stopped = result.stopped;
          break;
        }
        const info = stepInfo(result.row, result.gradNorms);
        for (const c of callbacks) await c.afterStep?.(ctx, info);
      }
    } finally {
      await bar.close();
    }
    for (const c of callbacks) await c.end?.(ctx, stopped);

    if (stopped !== null) {
      const message = stopMessage(o.name, stopped, checkpoints?.savedStep ?? null);
      if (o.throwOnNonFinite) throw new Error(`train: ${message}`);
      log(message);
    }
    return { name: o.name, dir, hash, step: opt.step, steps: o.steps, finished: opt.step === o.steps, stopped, logs };
  } finally {
    opt.dispose();
  }
}
