/**
 * Whole-model training steps (notebook 07's Table 7): the matmul FLOPs of one training update of a model,
 * a timer for one update (forward, backward and Adam), and the steps of several presets at several lengths
 * timed in interleaved rounds, with lengths past a memory budget or a time cap recorded as such (as the
 * paper records "OOM") instead of run.
 *
 * - {@linkcode modelFlops}: matmul FLOPs of the forward pass and of a training step of a model config.
 * - {@linkcode trainStepTimer}: one Adam update per call, on any batch.
 * - {@linkcode trainStepTimes}: the Table 7 harness.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { setFiniteChecks } from "../attention/mod.ts";
import type { LmBatch } from "../data/types.ts";
import { ffnHiddenSize, type ModelConfig, type ModelConfigInput, type PresetName } from "../models/config.ts";
import { createModel, TransformerModel } from "../models/model.ts";
import { LM_RECIPE } from "../models/pretrained.ts";
import { seededUniform } from "../random.ts";
import { interleavedTimesAsync } from "../timing.ts";
import { adam, type AdamOptions } from "../train/adam.ts";
import { trainStep } from "../train/train.ts";
import { extrapolatePowerLaw } from "./fit.ts";
import { flopCount } from "./flops.ts";
import { positiveInteger } from "../_options.ts";

/** What {@linkcode modelFlops} returns: matmul FLOPs, as `flopCount` counts them. */
export interface ModelFlops {
  /** One forward pass over the batch. */
  fwd: number;
  /** One training step: forward and backward (the Adam update is O(parameters) elementwise, not counted). */
  step: number;
  /** The attention layers' share of `fwd`. */
  attentionFwd: number;
  /** The attention layers' share of `step`. */
  attentionStep: number;
}

/**
 * Matmul FLOPs of a model on `batch` sequences of `n` tokens: per layer the q, k, v and output projections
 * (4 · 2bnd²), the feed-forward (GLU: 3 · 2bndh, MLP: 2 · 2bndh) and the attention (`flopCount` of the layer's
 * variant, with dk = dv = d / heads) and the tied output head (2bndV; a classifier's head is 2bdC). The embedding is
 * a row lookup and counts nothing (on a backend without the lookup's gradient the model makes it a one-hot matmul,
 * 2bnVd each way, which is not counted either: the count is the model's, not one backend's). A training step is 3 ×
 * forward for every matmul (its two gradients), and the attention's own forward + backward count.
 *
 * @example
 * ```ts
 * import { modelConfig } from "../models/config.ts";
 * import { modelFlops } from "./train_step.ts";
 * // One softmax layer, d = 8, 2 heads, GLU hidden 21, vocabulary 256, n = 16.
 * const config = modelConfig({ attention: ["softmax"], dModel: 8, heads: 2 });
 * const f = modelFlops(config, { batch: 1, n: 16 });
 * const dense = 2 * 16 * (4 * 8 * 8 + 3 * 8 * 21), head = 2 * 16 * 256 * 8, attention = 2 * 2 * 16 * 16 * (4 + 4);
 * console.log(f.fwd === dense + head + attention, f.step === 3 * (dense + head + attention)); // true true
 * ```
 */
export function modelFlops(config: ModelConfig, dims: { batch: number; n: number }): ModelFlops {
  const owner = "modelFlops";
  if (config === null || typeof config !== "object" || !Array.isArray(config.attention)) {
    throw new TypeError(`${owner}: config must be a ModelConfig (modelConfig(...) or model.config)`);
  }
  if (dims === null || typeof dims !== "object") throw new TypeError(`${owner}: dims must be { batch, n }`);
  const b = positiveInteger(owner, "dims.batch", dims.batch);
  const n = positiveInteger(owner, "dims.n", dims.n);
  const { dModel: d, heads, vocabSize: V } = config;
  const dh = d / heads;
  const hidden = ffnHiddenSize(config);
  const causal = config.task === "lm";
  const perLayer = 2 * b * n * (4 * d * d + (config.ffn === "glu" ? 3 : 2) * d * hidden);
  let attentionFwd = 0, attentionStep = 0;
  for (const layer of config.attention) {
    const f = flopCount(layer.variant, { batch: b, heads, n, dk: dh, dv: dh, causal, options: layer.options });
    attentionFwd += f.fwd;
    attentionStep += f.fwdBwd;
  }
  const head = config.task === "classify" ? 2 * b * d * config.numClasses! : 2 * b * n * d * V;
  const dense = config.attention.length * perLayer + head;
  return {
    fwd: dense + attentionFwd,
    step: 3 * dense + attentionStep,
    attentionFwd,
    attentionStep,
  };
}

/**
 * The update a timed training step makes, here and in the PyTorch twin (lib/bench/torch_twin.ts): the shared recipe's
 * AdamW (`LM_RECIPE`: lr, β₂ = 0.98, weight decay, clipping) at a constant learning rate.
 *
 * @example
 * ```ts
 * import { STEP_ADAM } from "./train_step.ts";
 * console.log(STEP_ADAM.beta2, STEP_ADAM.schedule); // 0.98 constant
 * ```
 */
export const STEP_ADAM: Readonly<AdamOptions> = Object.freeze({
  lr: LM_RECIPE.lr,
  beta2: LM_RECIPE.beta2,
  weightDecay: LM_RECIPE.weightDecay,
  clip: LM_RECIPE.clip,
  schedule: "constant",
  steps: 1_000_000,
});

/** What {@linkcode trainStepTimer} returns. */
export interface TrainStepTimer {
  /**
   * One update on `batch`: loss, gradients, Adam; resolves to the loss before the update once the update is applied.
   * Throws when the loss or a gradient is not finite (nothing is applied then).
   */
  step(batch: LmBatch): Promise<number>;
  /** Frees the optimizer's moments (not the model). */
  dispose(): void;
}

/**
 * A training update of `model` per call, the training loop's own ({@linkcode trainStep}): the loss and every
 * variable's gradient (`variableGrads` of lib/train/backprop.ts), one awaited read of the loss and the gradients' squared norms (so a GPU
 * backend, which cannot read synchronously, is timed too), then an Adam update with {@linkcode STEP_ADAM}'s settings;
 * `adam` overrides them. The update changes the model's weights.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "../models/model.ts";
 * import { trainStepTimer } from "./train_step.ts";
 * const model = createModel({ attention: "linear", layers: 1, dModel: 8, heads: 2 }, { log: () => {} });
 * const batch = { kind: "lm" as const, inputs: Int32Array.from([1, 2, 3]), targets: Int32Array.from([2, 3, 4]), batch: 1, length: 3 };
 * const timer = trainStepTimer(model, { adam: { lr: 0.05 } });
 * const first = await timer.step(batch);
 * for (let i = 0; i < 5; i++) await timer.step(batch);
 * const later = await timer.step(batch);
 * console.log(later < first, tf.memory().numTensors === Object.keys(model.variables).length + 1); // true true
 * timer.dispose();
 * model.dispose();
 * ```
 */
export function trainStepTimer(
  model: TransformerModel,
  options: { adam?: Partial<AdamOptions> } = {},
): TrainStepTimer {
  if (!(model instanceof TransformerModel)) {
    throw new TypeError(`trainStepTimer: model must be a TransformerModel (from createModel), got ${String(model)}`);
  }
  if (options === null || typeof options !== "object") throw new TypeError("trainStepTimer: options must be { adam? }");
  for (const key of Object.keys(options)) {
    if (key !== "adam") throw new TypeError(`trainStepTimer: unknown option "${key}"; expected adam`);
  }
  const opt = adam(model.variables, { ...STEP_ADAM, ...options.adam });
  return {
    async step(batch: LmBatch): Promise<number> {
      const { row, stopped } = await trainStep(model, batch, opt);
      if (stopped !== null) {
        throw new Error(
          `trainStepTimer: the update at step ${stopped.step} met a non-finite ${stopped.where} ` +
            `(${stopped.stage ?? stopped.variables.join(", ")}); nothing was applied`,
        );
      }
      return row.loss;
    },
    dispose: () => opt.dispose(),
  };
}

/** Options of {@linkcode trainStepTimes}. */
export interface TrainStepTimesOptions {
  /** The attention stacks to time, e.g. ["vanilla", "performer", "transnormer-t2"]. */
  presets: readonly PresetName[];
  /** Sequence lengths, timed in increasing order per preset. */
  lengths: readonly number[];
  /** The rest of the model (layers, dModel, heads, ...); maxLength is raised to the longest length. */
  architecture: ModelConfigInput;
  /** Sequences per batch. Default 1. */
  batch?: number;
  /** Interleaved rounds. Default 5. */
  rounds?: number;
  /** Token ids the batches are cut from (at least batch · (longest length + 1)); default seeded random bytes. */
  tokens?: ArrayLike<number>;
  /**
   * Peak tensor bytes a step may take. A length whose step is predicted to need more (its preset's peak at the
   * lengths measured, extrapolated by the exponent fitted to them, or by n² from one length) is not run; nor is
   * one whose warm-up step took more. Default Infinity.
   */
  memoryBudgetBytes?: number;
  /** Milliseconds a step may take, predicted and measured the same way. Default Infinity. */
  maxStepMs?: number;
  /** Seeds the models' weights and the default tokens. Default 0. */
  seed?: number;
  /** Receives "preset@n" before each warm-up step, and (round, "preset@n") before each timed one. */
  onWarmup?: (label: string) => void;
  onTime?: (round: number, label: string) => void;
}

/** One (preset, length) of {@linkcode trainStepTimes}. */
export interface TrainStepRow {
  preset: PresetName;
  n: number;
  batch: number;
  /** "timed"; or why it was not: over the memory budget or the time cap (predicted or measured). */
  status: "timed" | "over memory budget" | "over time cap";
  /** The numbers behind a status other than "timed". */
  note: string;
  /** Milliseconds per training step, one per round; empty unless timed. */
  stepMs: number[];
  /** Peak tensor bytes above those alive before the warm-up step (tf.profile); null when it did not run. */
  peakBytes: number | null;
  /** Matmul FLOPs of the model at this length. */
  flops: ModelFlops;
  /** Trainable parameters. */
  parameters: number;
}

function batchOf(tokens: ArrayLike<number>, batch: number, n: number): LmBatch {
  const inputs = new Int32Array(batch * n), targets = new Int32Array(batch * n);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < n; i++) {
      inputs[b * n + i] = tokens[b * (n + 1) + i];
      targets[b * n + i] = tokens[b * (n + 1) + i + 1];
    }
  }
  return { kind: "lm", inputs, targets, batch, length: n };
}

/**
 * Times a full training update (forward, backward, Adam) of each preset at each length, `batch` sequences of
 * n tokens, in interleaved rounds (`interleavedTimesAsync`: each step's loss read back by `await data()`), after one
 * profiled warm-up step per (preset, length) that gives its peak memory. Lengths whose step is predicted (or found) to exceed `memoryBudgetBytes` or
 * `maxStepMs` are recorded with that status and not timed, and neither is any longer length of the preset.
 * The finite checks of the attention layers are off while timing. Per-round times of two presets at one length
 * are paired by round: `ratioInterval(a.stepMs, b.stepMs, { paired: true })`.
 *
 * @example
 * ```ts
 * import { trainStepTimes } from "./train_step.ts";
 * const rows = await trainStepTimes({
 *   presets: ["vanilla"], lengths: [16, 64], architecture: { layers: 1, dModel: 8, heads: 2 }, rounds: 3,
 *   memoryBudgetBytes: 2e6,
 * });
 * // n = 16 takes about 0.4 MB; n = 64 is predicted from it by n²: 16 × that, over the 2 MB budget.
 * console.log(rows.map((r) => `${r.n}: ${r.status}, ${r.stepMs.length} rounds`)); // ["16: timed, 3 rounds", "64: over memory budget, 0 rounds"]
 * ```
 */
export async function trainStepTimes(options: TrainStepTimesOptions): Promise<TrainStepRow[]> {
  const owner = "trainStepTimes";
  if (options === null || typeof options !== "object") throw new TypeError(`${owner}: options must be an object`);
  const known = [
    "presets",
    "lengths",
    "architecture",
    "batch",
    "rounds",
    "tokens",
    "memoryBudgetBytes",
    "maxStepMs",
    "seed",
    "onWarmup",
    "onTime",
  ];
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new TypeError(`${owner}: unknown option "${key}"; expected ${known.join(", ")}`);
  }
  if (!Array.isArray(options.presets) || options.presets.length === 0) {
    throw new TypeError(`${owner}: options.presets must be a non-empty array of preset names`);
  }
  if (!Array.isArray(options.lengths) || options.lengths.length === 0) {
    throw new TypeError(`${owner}: options.lengths must be a non-empty array of sequence lengths`);
  }
  if (options.architecture === null || typeof options.architecture !== "object") {
    throw new TypeError(
      `${owner}: options.architecture must be a model config without attention, e.g. LM_ARCHITECTURE`,
    );
  }
  const lengths = [...options.lengths].map((n) => positiveInteger(owner, "options.lengths[]", n)).sort((a, b) => a - b);
  const batch = positiveInteger(owner, "options.batch", options.batch ?? 1);
  const rounds = positiveInteger(owner, "options.rounds", options.rounds ?? 5);
  const seed = options.seed ?? 0;
  const budget = options.memoryBudgetBytes ?? Infinity;
  const maxMs = options.maxStepMs ?? Infinity;
  for (const [name, v] of [["memoryBudgetBytes", budget], ["maxStepMs", maxMs]] as const) {
    if (typeof v !== "number" || !(v > 0)) {
      throw new RangeError(`${owner}: options.${name} must be a number > 0, got ${v}`);
    }
  }
  const longest = lengths[lengths.length - 1];
  const needed = batch * (longest + 1);
  let tokens: ArrayLike<number>;
  if (options.tokens === undefined) {
    const uniform = seededUniform(seed);
    tokens = Int32Array.from({ length: needed }, () => Math.floor(uniform() * 256));
  } else {
    tokens = options.tokens;
    if (typeof tokens?.length !== "number" || tokens.length < needed) {
      throw new RangeError(
        `${owner}: options.tokens must hold at least batch · (longest length + 1) = ${needed} ids, got ${tokens?.length}`,
      );
    }
  }
  const maxLength = Math.max(options.architecture.maxLength ?? 0, longest);
  const models: TransformerModel[] = [];
  const timers: TrainStepTimer[] = [];
  const rows: TrainStepRow[] = [];
  const fns: Record<string, () => Promise<void>> = {};
  const finiteBefore = setFiniteChecks(false); // timed calls read nothing back; restored below
  try {
    for (const preset of options.presets) {
      const model = createModel({ ...options.architecture, attention: preset, maxLength, seed }, { log: () => {} });
      models.push(model);
      const timer = trainStepTimer(model);
      timers.push(timer);
      const measured: { x: number; ms: number; bytes: number }[] = [];
      let stop: TrainStepRow["status"] | null = null, why = "";
      for (const n of lengths) {
        const b = batchOf(tokens, batch, n);
        const row: TrainStepRow = {
          preset,
          n,
          batch,
          status: "timed",
          note: "",
          stepMs: [],
          peakBytes: null,
          flops: modelFlops(model.config, { batch, n }),
          parameters: model.parameterCount,
        };
        rows.push(row);
        if (stop === null) {
          const bytes = extrapolatePowerLaw(measured.map((m) => ({ x: m.x, y: m.bytes })), n);
          const ms = extrapolatePowerLaw(measured.map((m) => ({ x: m.x, y: m.ms })), n);
          if (bytes > budget) [stop, why] = ["over memory budget", `predicted ${gib(bytes)} > ${gib(budget)}`];
          else if (ms > maxMs) [stop, why] = ["over time cap", `predicted ${seconds(ms)} > ${seconds(maxMs)}`];
        }
        if (stop === null) {
          options.onWarmup?.(`${preset}@${n}`);
          const before = tf.memory().numBytes;
          const start = performance.now();
          const info = await tf.profile(async () => {
            await timer.step(b);
          });
          const ms = performance.now() - start;
          row.peakBytes = Math.max(0, info.peakBytes - before);
          measured.push({ x: n, ms, bytes: Math.max(1, row.peakBytes) });
          if (row.peakBytes > budget) {
            [stop, why] = ["over memory budget", `warm-up peak ${gib(row.peakBytes)} > ${gib(budget)}`];
          } else if (ms > maxMs) [stop, why] = ["over time cap", `warm-up step ${seconds(ms)} > ${seconds(maxMs)}`];
          else {
            fns[`${preset}@${n}`] = async () => {
              await timer.step(b);
            };
            continue;
          }
        }
        row.status = stop;
        row.note = why;
      }
    }
    const times = Object.keys(fns).length === 0
      ? {}
      : await interleavedTimesAsync(fns, { rounds, repeats: 1, warmup: 0, onTime: options.onTime });
    for (const row of rows) row.stepMs = times[`${row.preset}@${row.n}`] ?? [];
    return rows;
  } finally {
    setFiniteChecks(finiteBefore);
    for (const t of timers) t.dispose();
    for (const m of models) m.dispose();
  }
}

function gib(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
