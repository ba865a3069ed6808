/**
 * The training loop: Adam over a {@linkcode Trainable}, per-step logs (loss, learning rate, gradient norms
 * per variable and per layer), validation, probes, progress, checkpoints and exact resumption.
 *
 * Files in `<runsDir>/<name>/`: `checkpoint.json` and its data files (see checkpoint.ts), and the logs as
 * `train.csv`, `grad_norms.csv`, `valid.csv` and `probes.csv`, rewritten (atomically) at every checkpoint
 * and when the run ends or stops.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import { REPO_ROOT } from "../env.ts";
import { sourceHash } from "../source_hash.ts";
import { writeFileAtomic } from "../figures/atomic.ts";
import { toCsv } from "../figures/csv.ts";
import { progress, type ProgressOutput } from "../notebook/progress.ts";
import {
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
import { describeValue, type OptionRule, resolveOptions } from "../_options.ts";
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
  /** Returns named numbers; logged to probes.csv with a `step` column. */
  fn: (step: number) => Record<string, number>;
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
      `${owner}: model.firstNonFinite must be a function (batch) => string | null, or absent; got ${
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

/** Frees what tf.variableGrads saved for the backward pass when its function threw (tfjs leaves it on the tape). */
function disposeTape(): void {
  const state = tf.engine().state;
  if (state.gradientDepth !== 0 || !state.activeTape) return;
  for (const node of state.activeTape) for (const t of node.saved ?? []) t.dispose();
  state.activeTape = [];
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

/**
 * Trains `model` with Adam over steps [start, until) where start is 0, or the checkpoint's step with
 * `resume: true`. Each step computes the loss and gradients of `batchAt(step)`, logs them, clips and updates.
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
  const varList = names.map((n) => model.variables[n]);
  const schedule = { lr: o.lr, minLr: o.minLr, warmup: o.warmup, steps: o.steps, schedule: o.schedule };
  const opt = adam(model.variables, {
    lr: o.lr,
    minLr: o.minLr,
    warmup: o.warmup,
    steps: o.steps,
    schedule: o.schedule,
    beta1: o.beta1,
    beta2: o.beta2,
    eps: o.eps,
    weightDecay: o.weightDecay,
    clip: o.clip,
    decay: o.decay,
  });
  try {
    let logs: TrainLogs = { train: [], gradNorms: [], valid: [], probes: [] };
    let savedStep: number | null = null;
    if (dir !== null && o.resume) {
      const checkpoint = await loadCheckpoint(dir);
      if (checkpoint === null) {
        log(`${o.name}: no checkpoint in ${dir}; training from step 0`);
      } else {
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
        logs = checkpoint.logs;
        savedStep = checkpoint.manifest.step;
        log(`${o.name}: resuming from step ${savedStep} of ${o.steps} (${dir})`);
      }
    } else if (dir !== null) {
      await removeCheckpoint(dir);
      await removeLogCsvs(dir);
    }

    const start = opt.step;
    const until = Math.max(start, o.until ?? o.steps);
    let dirty = false;
    const save = async () => {
      if (dir === null) return;
      await saveCheckpoint(dir, {
        name: o.name,
        steps: o.steps,
        hash,
        identity,
        shapes: identity.variables,
        weights: await readWeights(model.variables),
        adam: await opt.getState(),
        logs,
      });
      await writeLogCsvs(dir, logs);
      savedStep = opt.step;
      dirty = false;
    };
    const runProbe = (step: number) => {
      const values = o.probe!.fn(step);
      if (isThenable(values)) {
        throw new TypeError("train: probe.fn returned a Promise; it must be synchronous and return { name: number }");
      }
      if (values === null || typeof values !== "object" || Array.isArray(values)) {
        throw new TypeError(`train: probe.fn must return an object of numbers, got ${describeValue(values)}`);
      }
      for (const [key, value] of Object.entries(values)) {
        // A string or an object would be written to probes.csv as it is, and read back as no number.
        if (typeof value !== "number") {
          throw new TypeError(`train: probe.fn must return an object of numbers, got ${key}: ${describeValue(value)}`);
        }
      }
      logs.probes.push({ step, ...values } as ProbeRow);
      dirty = true;
    };
    const validate = async (step: number) => {
      const loss = await validationLoss(model, o.validation!.batches());
      const row: ValidRow = { step, loss, perplexity: Math.exp(loss), bits_per_byte: loss / Math.LN2 };
      logs.valid.push(row);
      dirty = true;
    };

    if (o.probe && start === 0 && !logs.probes.some((r) => r.step === 0)) runProbe(0);

    const lossStop = (step: number, batch: B, variables: string[]): NonFiniteStop => {
      const stage = model.firstNonFinite?.(batch) ?? null;
      if (stage !== null && typeof stage !== "string") {
        throw new Error(`train: model.firstNonFinite must return a string or null, got ${describeValue(stage)}`);
      }
      const layer = stage === null ? null : layerOf(`${stage}.`);
      return { reason: "non-finite", step, where: "loss", layer, stage, variables };
    };

    // The log row of a step that stopped on a non-finite value: no update was applied.
    const stoppedRow = (
      step: number,
      at: { loss: number; gradNorm: number; tokens: number | null; t0: number },
    ): TrainRow => ({
      step,
      lr: learningRate(step, schedule),
      loss: at.loss,
      grad_norm: at.gradNorm,
      clipped: false,
      clip: o.clip,
      tokens: at.tokens,
      tokens_per_s: null,
      seconds: (performance.now() - at.t0) / 1000,
    });

    const layers = [...new Set(names.map(layerOf).filter((l): l is number => l !== null))].sort((a, b) => a - b);
    const bar = progress({ total: until - start, label: o.name ?? "train", output: o.progress });
    let stopped: NonFiniteStop | null = null;
    try {
      for (let s = start; s < until; s++) {
        const t0 = performance.now();
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
        let computed: { value: tf.Scalar; grads: tf.NamedTensorMap };
        try {
          computed = tf.variableGrads(() => model.loss(batch), varList);
        } catch (err) {
          disposeTape();
          // A model may throw on the non-finite values it meets (the attention variants check q, k, v): when it
          // locates a non-finite output, stop as on a non-finite loss; any other error propagates.
          let stop: NonFiniteStop | null = null;
          try {
            stop = model.firstNonFinite ? lossStop(s, batch, []) : null;
          } catch {
            throw err;
          }
          if (stop?.stage == null) throw err;
          stopped = stop;
          logs.train.push(stoppedRow(s, { loss: NaN, gradNorm: NaN, tokens, t0 }));
          break;
        }
        const { value, grads } = computed;
        const byName: Record<string, tf.Tensor | null> = {};
        names.forEach((n, i) => (byName[n] = grads[varList[i].name] ?? null));
        let loss: number;
        let squares: Float32Array;
        try {
          const present = names.map((_, i) => i).filter((i) => byName[names[i]] !== null);
          // One read for the loss and every squared norm: [1 + V]
          const packed = tf.tidy(() =>
            tf.concat([tf.reshape(value, [1]), squaredNorms(present.map((i) => byName[names[i]]!))])
          );
          const data = await packed.data() as Float32Array;
          packed.dispose();
          loss = data[0];
          squares = new Float32Array(names.length);
          present.forEach((v, i) => (squares[v] = data[1 + i]));

          const gradRow: GradNormRow = { step: s };
          let total = 0;
          const layerSquares = new Map<number, number>();
          names.forEach((n, i) => {
            gradRow[n] = Math.sqrt(squares[i]);
            total += squares[i];
            const layer = layerOf(n);
            if (layer !== null) layerSquares.set(layer, (layerSquares.get(layer) ?? 0) + squares[i]);
          });
          for (const layer of layers) gradRow[`blocks.${layer}.*`] = Math.sqrt(layerSquares.get(layer)!);
          const gradNorm = Math.sqrt(total);
          gradRow.global = gradNorm;

          const badVariables = names.filter((_, i) => !Number.isFinite(squares[i]));
          if (!Number.isFinite(loss) || badVariables.length > 0) {
            if (Number.isFinite(loss)) {
              const where = firstReached(badVariables);
              stopped = {
                reason: "non-finite",
                step: s,
                where,
                layer: layerOf(where),
                stage: null,
                variables: badVariables,
              };
            } else {
              stopped = lossStop(s, batch, badVariables);
            }
            logs.train.push(stoppedRow(s, { loss, gradNorm, tokens, t0 }));
            logs.gradNorms.push(gradRow);
            break;
          }
          const info = opt.apply(byName, { gradNorm });
          const seconds = (performance.now() - t0) / 1000;
          const row: TrainRow = {
            step: s,
            lr: info.lr,
            loss,
            grad_norm: gradNorm,
            clipped: info.clipped,
            clip: o.clip,
            tokens,
            tokens_per_s: tokens === null ? null : tokens / seconds,
            seconds,
          };
          logs.train.push(row);
          logs.gradNorms.push(gradRow);
          dirty = true;

          const done = s + 1;
          if (o.validation && done % o.validation.every === 0) await validate(done);
          if (o.probe && done % o.probe.every === 0) runProbe(done);
          if (o.onStep) {
            await o.onStep({ step: s, lr: info.lr, loss, gradNorm, clipped: info.clipped, row, gradNorms: gradRow });
          }
          bar.tick(1, {
            step: done,
            loss,
            "tokens/s": row.tokens_per_s === null ? "?" : Math.round(row.tokens_per_s),
          });
          if (o.checkpointEvery !== null && done % o.checkpointEvery === 0 && done < until) await save();
        } finally {
          value.dispose();
          for (const g of Object.values(grads)) g?.dispose();
        }
      }
    } finally {
      await bar.done();
    }

    if (stopped !== null) {
      if (dir !== null) await writeLogCsvs(dir, logs);
      const what = stopped.where !== "loss"
        ? `gradient of ${stopped.where}`
        : stopped.stage === null
        ? "loss"
        : `loss (first non-finite output: ${stopped.stage})`;
      const kept = `the last checkpoint (step ${savedStep ?? "none"}) holds the weights before it`;
      const message = `${o.name ?? "train"}: stopped at step ${stopped.step}: non-finite ${what}; ${kept}`;
      if (o.throwOnNonFinite) throw new Error(`train: ${message}`);
      log(message);
    } else {
      const last = logs.valid.at(-1);
      // The end of the run, not of a partial session (until < steps): a resumed run then logs what a straight one does.
      if (o.validation && opt.step === o.steps && last?.step !== opt.step) await validate(opt.step);
      if (dir !== null && (dirty || savedStep !== opt.step)) {
        await save();
        log(`${o.name}: saved step ${opt.step} of ${o.steps} to ${dir}`);
      }
    }
    return {
      name: o.name,
      dir,
      hash,
      step: opt.step,
      steps: o.steps,
      finished: opt.step === o.steps,
      stopped,
      logs,
    };
  } finally {
    opt.dispose();
  }
}
