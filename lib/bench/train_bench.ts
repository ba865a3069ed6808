/**
 * The whole-step training benchmark behind `deno task bench --train`: a training update (forward, backward,
 * AdamW with clipping) of attnlab's model against the same update of its PyTorch twin (`torch_twin.ts`), per
 * config and preset, timed in interleaved rounds in one run; with tokens/s, GFLOP/s from counted FLOPs, the share
 * of the sgemm peak measured in the same run, peak memory, and the ratio attnlab / PyTorch with its interval.
 *
 * - {@linkcode runTrainBench}: the benchmark.
 * - {@linkcode trainBenchRow}: one row from its step times (the arithmetic, kept apart to be checked by hand).
 * - {@linkcode formatTrainBenchTable}: the rows as a table.
 * - {@linkcode trainBenchModel}: a config's model and batch (also what `deno task bench --profile` profiles).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { setFiniteChecks } from "../attention/mod.ts";
import type { LmBatch } from "../data/types.ts";
import { type PresetName, PRESETS } from "../models/config.ts";
import { createModel, type TransformerModel } from "../models/model.ts";
import { LM_ARCHITECTURE, LM_RECIPE } from "../models/pretrained.ts";
import { seededUniform } from "../random.ts";
import { median, ratioInterval } from "../stats/mod.ts";
import type { AdamOptions } from "../train/adam.ts";
import { positiveInteger } from "../_options.ts";
import { deviceOf } from "./device.ts";
import { type SgemmPeak, sgemmPeak } from "./measure.ts";
import { TorchTwin, type TwinInfo, type TwinStepTimes } from "./torch_twin.ts";
import { modelFlops, STEP_ADAM, trainStepTimer } from "./train_step.ts";
import { BLAS_BACKEND } from "../blas/backend.ts";
import { dataBytes, resetPeakDataBytes } from "../blas/pool.ts";

/** A benchmark config: the model's size and the batch. */
export interface TrainBenchSpec {
  layers: number;
  dModel: number;
  heads: number;
  /** Sequences per batch. */
  batch: number;
  /** Bytes per sequence. */
  n: number;
  /** Timed steps per side per round by default (more for fast steps, so a round is not all timer noise). */
  steps: number;
  /**
   * Interleaved rounds by default: more where steps are short. The ratio's interval comes from the spread between
   * rounds, and on this shared 2-vCPU machine a round's times move by 20–40% either way with the host's load.
   */
  rounds: number;
}

/** The configs' names. */
export const TRAIN_BENCH_CONFIG_NAMES = ["small", "medium"] as const;

/** A key of {@linkcode TRAIN_BENCH_CONFIGS}. */
export type TrainBenchConfigName = typeof TRAIN_BENCH_CONFIG_NAMES[number];

/**
 * The benchmark's configs. "small" is the shared language models of the notebooks (`LM_ARCHITECTURE`: 4 layers,
 * d 64, 4 heads, batches of 16 × 128 bytes); "medium" is 6 layers, d 256, 4 heads, 8 × 512 bytes.
 *
 * @example
 * ```ts
 * import { TRAIN_BENCH_CONFIGS } from "./train_bench.ts";
 * const { layers, dModel, batch, n } = TRAIN_BENCH_CONFIGS.medium;
 * console.log(layers, dModel, batch * n); // 6 256 4096
 * ```
 */
export const TRAIN_BENCH_CONFIGS: Readonly<Record<TrainBenchConfigName, Readonly<TrainBenchSpec>>> = Object.freeze({
  small: Object.freeze({
    layers: LM_ARCHITECTURE.layers!,
    dModel: LM_ARCHITECTURE.dModel!,
    heads: LM_ARCHITECTURE.heads!,
    batch: LM_RECIPE.batchSize,
    n: LM_RECIPE.seqLen,
    steps: 4,
    rounds: 12,
  }),
  medium: Object.freeze({ layers: 6, dModel: 256, heads: 4, batch: 8, n: 512, steps: 1, rounds: 5 }),
});

/**
 * What the benchmark needs of the PyTorch twin (a `TorchTwin`, or a stand-in with known times in a test).
 */
export interface TwinLike {
  readonly info: TwinInfo;
  load(
    config: TransformerModel["config"],
    options?: { weights?: Record<string, Float32Array>; adam?: Partial<AdamOptions> },
  ): Promise<void>;
  /** `memory: false` skips the twin's extra update that measures peak memory. */
  timeSteps(batch: LmBatch, options: { warmup: number; steps: number; memory?: boolean }): Promise<TwinStepTimes>;
  /** Sets PyTorch's threads for later steps; returns them. Without it the twin keeps its threads. */
  setThreads?(threads: number): Promise<number>;
  close(): Promise<void>;
}

/**
 * Why a row has PyTorch's numbers or not: "ok"; "off" (not asked for); "unavailable" (PyTorch did not start);
 * "reference BLAS" (PyTorch runs the reference BLAS, about 10× slower than an optimised one: not timed, since a
 * ratio against it would flatter attnlab); "failed" (the twin failed on this row).
 */
export type TorchStatus = "ok" | "off" | "unavailable" | "reference BLAS" | "failed";

/** One row of figures/bench_train.csv: a config and preset. Empty fields are null. */
export interface TrainBenchRow {
  [column: string]: string | number | null;
  config: string;
  preset: string;
  layers: number;
  d_model: number;
  heads: number;
  batch: number;
  n: number;
  parameters: number;
  /** attnlab's backend. */
  backend: string;
  /** What the backend ran on: the CPU's model and logical cores, or the WebGPU adapter (lib/bench/device.ts). */
  device: string;
  rounds: number;
  /** Timed steps per side per round. */
  steps_per_round: number;
  /** Matmul GFLOP of one training step (modelFlops(...).step / 1e9). */
  gflop_step: number;
  /** Median ms per step over every timed step, and the fastest and slowest. */
  attnlab_ms: number;
  attnlab_ms_min: number;
  attnlab_ms_max: number;
  /** batch · n tokens / (attnlab_ms / 1000). */
  attnlab_tokens_per_s: number;
  /** FLOPs of a step / attnlab_ms / 1e6. */
  attnlab_gflops: number;
  /** attnlab_gflops / peak_gflops. */
  attnlab_share_of_peak: number;
  /**
   * Peak MB of one step above what was held before it (null: not measured), counted as attnlab_peak_method says:
   * "buffers" (blas): the backend's tensor data buffers, views (Reshape) not counted, as PyTorch's allocator events
   * count its; "tensors" (other backends): tf.profile's tensor bytes, every tensor at its size, views too (an
   * overestimate). Neither counts the pool of freed arrays kept for reuse, nor the JavaScript heap.
   */
  attnlab_peak_mb: number | null;
  /** How attnlab_peak_mb was counted: "buffers" or "tensors"; null when not measured. */
  attnlab_peak_method: string | null;
  torch_status: TorchStatus;
  /** What the status means here: the reason, the install hint, the error. */
  torch_note: string;
  torch_ms: number | null;
  torch_ms_min: number | null;
  torch_ms_max: number | null;
  torch_tokens_per_s: number | null;
  torch_gflops: number | null;
  /** torch_gflops / peak_gflops (the same yardstick as attnlab's). */
  torch_share_of_peak: number | null;
  /** The twin's peak memory of a step, MB, as it measures it (torch_peak_method): see TwinStepTimes.peakBytes. */
  torch_peak_mb: number | null;
  /** "profiler" (torch.profiler's allocation events), "rss" or "none"; null without PyTorch. */
  torch_peak_method: string | null;
  /**
   * attnlab / PyTorch time: the ratio of the geometric means of the rounds' median step times, rounds paired
   * (ratioInterval, paired); above 1 attnlab is slower. Only with torch_status "ok".
   */
  ratio: number | null;
  /** Its 95% interval over rounds (null with fewer than 2 rounds). */
  ratio_low: number | null;
  ratio_high: number | null;
  /** The sgemm peak measured in the same run, GFLOP/s (1024³ on attnlab's backend). */
  peak_gflops: number;
  /** PyTorch's own sgemm, GFLOP/s, its threads and its BLAS (null without PyTorch). */
  torch_sgemm_gflops: number | null;
  torch_threads: number | null;
  torch_blas: string | null;
}

/** The times behind one row: per round, each timed step's ms. */
export interface TrainBenchSample {
  attnlabMs: number[][];
  /** null when PyTorch was not timed. */
  torchMs: number[][] | null;
}

/** What {@linkcode trainBenchRow} builds a row from. */
export interface TrainBenchRowInput {
  config: string;
  spec: Readonly<TrainBenchSpec>;
  preset: string;
  parameters: number;
  backend: string;
  /** What the backend ran on (`deviceOf(backend)`, lib/bench/device.ts). */
  device: string;
  /** Matmul FLOPs of one training step (modelFlops(...).step). */
  flopsStep: number;
  /** The sgemm peak of the run, GFLOP/s. */
  peakGflops: number;
  /** Per round, attnlab's step times in ms. */
  attnlabMs: readonly (readonly number[])[];
  attnlabPeakBytes: number | null;
  /** How attnlabPeakBytes was counted ("buffers" or "tensors", see TrainBenchRow); default "tensors". */
  attnlabPeakMethod?: string;
  torch: {
    status: TorchStatus;
    note: string;
    info: TwinInfo | null;
    /** Per round, PyTorch's step times (paired with attnlab's by round); null unless status is "ok". */
    ms: readonly (readonly number[])[] | null;
    peakBytes: number | null;
    /** How the twin measured its peak ("profiler", "rss", "none"); null when it did not. */
    peakMethod?: string | null;
    /** The threads PyTorch ran this row with; default info.threads. */
    threads?: number;
  };
}

const MB = 1e6;

/**
 * One row of the benchmark from its step times: medians, spreads, tokens/s, GFLOP/s = FLOPs / ms / 1e6, shares
 * of the sgemm peak, and the ratio attnlab / PyTorch with its paired interval over rounds (each round's time is
 * the median of its steps). PyTorch's columns stay empty unless its status is "ok".
 *
 * @example
 * ```ts
 * import { TRAIN_BENCH_CONFIGS, trainBenchRow } from "./train_bench.ts";
 * const row = trainBenchRow({
 *   config: "small", spec: TRAIN_BENCH_CONFIGS.small, preset: "vanilla", parameters: 213248, backend: "blas",
 *   device: "Intel(R) Xeon(R) Processor, 2 logical cores",
 *   flopsStep: 50e9, peakGflops: 200, attnlabMs: [[400], [420], [410]], attnlabPeakBytes: 3e8,
 *   torch: { status: "ok", note: "", info: null, ms: [[100], [105], [102.5]], peakBytes: 1e8 },
 * });
 * // 50 GFLOP in 410 ms: 122 GFLOP/s; every round is 4× PyTorch's, so the ratio and its interval are 4.
 * console.log(row.attnlab_ms, row.attnlab_gflops.toFixed(1), row.ratio?.toFixed(3), row.ratio_low?.toFixed(3)); // 410 122.0 4.000 4.000
 * ```
 */
export function trainBenchRow(input: TrainBenchRowInput): TrainBenchRow {
  const owner = "trainBenchRow";
  if (input === null || typeof input !== "object") throw new TypeError(`${owner}: input must be an object`);
  const rounds = checkTimes(owner, "input.attnlabMs", input.attnlabMs);
  const { spec, torch } = input;
  if (torch === null || typeof torch !== "object") throw new TypeError(`${owner}: input.torch must be an object`);
  for (const key of ["backend", "device"] as const) {
    if (typeof input[key] !== "string") {
      throw new TypeError(`${owner}: input.${key} must be a string, got ${typeof input[key]}`);
    }
  }
  for (const [name, v] of [["flopsStep", input.flopsStep], ["peakGflops", input.peakGflops]] as const) {
    if (typeof v !== "number" || !(v > 0)) {
      throw new RangeError(`${owner}: input.${name} must be a number > 0, got ${v}`);
    }
  }
  const tokens = spec.batch * spec.n;
  const all = input.attnlabMs.flat();
  const ms = median(all);
  const gflops = input.flopsStep / ms / 1e6;
  let torchCols: Pick<
    TrainBenchRow,
    | "torch_ms"
    | "torch_ms_min"
    | "torch_ms_max"
    | "torch_tokens_per_s"
    | "torch_gflops"
    | "torch_share_of_peak"
    | "ratio"
    | "ratio_low"
    | "ratio_high"
  > = {
    torch_ms: null,
    torch_ms_min: null,
    torch_ms_max: null,
    torch_tokens_per_s: null,
    torch_gflops: null,
    torch_share_of_peak: null,
    ratio: null,
    ratio_low: null,
    ratio_high: null,
  };
  if (torch.status === "ok") {
    if (torch.ms === null) {
      throw new TypeError(`${owner}: input.torch.ms must hold PyTorch's times when its status is ok`);
    }
    const torchRounds = checkTimes(owner, "input.torch.ms", torch.ms);
    if (torchRounds !== rounds) {
      throw new RangeError(
        `${owner}: input.torch.ms has ${torchRounds} rounds, attnlabMs ${rounds}: they pair by round`,
      );
    }
    const tms = median(torch.ms.flat());
    const tgflops = input.flopsStep / tms / 1e6;
    const ratio = ratioInterval(input.attnlabMs.map((r) => median([...r])), torch.ms.map((r) => median([...r])), {
      paired: true,
    });
    torchCols = {
      torch_ms: tms,
      torch_ms_min: Math.min(...torch.ms.flat()),
      torch_ms_max: Math.max(...torch.ms.flat()),
      torch_tokens_per_s: tokens / (tms / 1000),
      torch_gflops: tgflops,
      torch_share_of_peak: tgflops / input.peakGflops,
      ratio: ratio.estimate,
      ratio_low: Number.isFinite(ratio.low) ? ratio.low : null,
      ratio_high: Number.isFinite(ratio.high) ? ratio.high : null,
    };
  }
  return {
    config: input.config,
    preset: input.preset,
    layers: spec.layers,
    d_model: spec.dModel,
    heads: spec.heads,
    batch: spec.batch,
    n: spec.n,
    parameters: input.parameters,
    backend: input.backend,
    device: input.device,
    rounds,
    steps_per_round: Math.max(...input.attnlabMs.map((r) => r.length)),
    gflop_step: input.flopsStep / 1e9,
    attnlab_ms: ms,
    attnlab_ms_min: Math.min(...all),
    attnlab_ms_max: Math.max(...all),
    attnlab_tokens_per_s: tokens / (ms / 1000),
    attnlab_gflops: gflops,
    attnlab_share_of_peak: gflops / input.peakGflops,
    attnlab_peak_mb: input.attnlabPeakBytes === null ? null : input.attnlabPeakBytes / MB,
    attnlab_peak_method: input.attnlabPeakBytes === null ? null : input.attnlabPeakMethod ?? "tensors",
    torch_status: torch.status,
    torch_note: torch.note,
    ...torchCols,
    torch_peak_mb: torch.status === "ok" && torch.peakBytes !== null ? torch.peakBytes / MB : null,
    torch_peak_method: torch.status === "ok" ? torch.peakMethod ?? null : null,
    peak_gflops: input.peakGflops,
    torch_sgemm_gflops: torch.info?.sgemmGflops ?? null,
    torch_threads: torch.status === "ok" ? torch.threads ?? torch.info?.threads ?? null : null,
    torch_blas: torch.info?.blas ?? null,
  };
}

function checkTimes(owner: string, name: string, rounds: unknown): number {
  if (!Array.isArray(rounds) || rounds.length === 0) {
    throw new TypeError(`${owner}: ${name} must be a non-empty array of rounds, each an array of step times in ms`);
  }
  rounds.forEach((r, i) => {
    if (!Array.isArray(r) || r.length === 0) {
      throw new TypeError(`${owner}: ${name}[${i}] must be a non-empty array of step times in ms`);
    }
    r.forEach((t, j) => {
      if (typeof t !== "number" || !(t > 0) || !Number.isFinite(t)) {
        throw new RangeError(`${owner}: ${name}[${i}][${j}] must be a finite time > 0 ms, got ${t}`);
      }
    });
  });
  return rounds.length;
}

/**
 * A config's model with a preset's attention (seeded) and its batch of seeded random bytes; the caller disposes
 * the model. The position table is sized to the batch's length.
 *
 * @example
 * ```ts
 * import { trainBenchModel } from "./train_bench.ts";
 * const { model, batch } = trainBenchModel("small", "transnormer-t2");
 * console.log(model.config.attention.length, batch.batch, batch.length); // 4 16 128
 * model.dispose();
 * ```
 */
export function trainBenchModel(
  config: TrainBenchConfigName,
  preset: PresetName,
  options: { seed?: number } = {},
): { model: TransformerModel; batch: LmBatch; spec: Readonly<TrainBenchSpec> } {
  const owner = "trainBenchModel";
  const spec = configSpec(owner, "config", config);
  if (!(PRESETS as readonly string[]).includes(preset)) {
    throw new RangeError(`${owner}: unknown preset "${preset}"; expected one of ${PRESETS.join(", ")}`);
  }
  for (const key of Object.keys(options)) {
    if (key !== "seed") throw new TypeError(`${owner}: unknown option "${key}"; expected seed`);
  }
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed)) throw new TypeError(`${owner}: options.seed must be an integer, got ${seed}`);
  const uniform = seededUniform(seed);
  const { batch: b, n } = spec;
  const ids = Int32Array.from({ length: b * (n + 1) }, () => Math.floor(uniform() * 256));
  const inputs = new Int32Array(b * n), targets = new Int32Array(b * n);
  for (let s = 0; s < b; s++) {
    inputs.set(ids.subarray(s * (n + 1), s * (n + 1) + n), s * n);
    targets.set(ids.subarray(s * (n + 1) + 1, (s + 1) * (n + 1)), s * n);
  }
  const model = createModel(
    { attention: preset, layers: spec.layers, dModel: spec.dModel, heads: spec.heads, maxLength: n, seed },
    { log: () => {} },
  );
  return { model, batch: { kind: "lm", inputs, targets, batch: b, length: n }, spec };
}

function configSpec(owner: string, name: string, config: unknown): Readonly<TrainBenchSpec> {
  if (typeof config !== "string") {
    throw new TypeError(`${owner}: ${name} must be a config name (${TRAIN_BENCH_CONFIG_NAMES.join(", ")})`);
  }
  if (!(TRAIN_BENCH_CONFIG_NAMES as readonly string[]).includes(config)) {
    throw new RangeError(
      `${owner}: unknown config "${config}" in ${name}; expected one of ${TRAIN_BENCH_CONFIG_NAMES.join(", ")}`,
    );
  }
  return TRAIN_BENCH_CONFIGS[config as TrainBenchConfigName];
}

/** Options of {@linkcode runTrainBench}. */
export interface TrainBenchOptions {
  /** Default both, small first. */
  configs?: readonly TrainBenchConfigName[];
  /** Default all six of PRESETS. */
  presets?: readonly PresetName[];
  /** Interleaved rounds per row; default the config's `rounds` (small 12, medium 5). */
  rounds?: number;
  /** Timed steps per side per round; default the config's `steps` (small 4, medium 1). */
  steps?: number;
  /** Untimed steps per side before the profiled step and the rounds. Default 1. */
  warmup?: number;
  /** Time PyTorch too (when it starts and runs an optimised BLAS). Default true. */
  torch?: boolean;
  /** A twin to use instead of starting one (the caller closes it). */
  twin?: TwinLike;
  /** The interpreter for TorchTwin.start; default its own. */
  python?: string;
  /**
   * The most threads PyTorch may use; default navigator.hardwareConcurrency, the cores attnlab's BLAS uses. Each round
   * times PyTorch at every thread count from 1 to this, and each row keeps the rounds of the count with the lowest
   * median: on this 2-core machine two threads made the small config's steps 1.7× slower than one in one run and
   * faster in another, so a fixed count, or one chosen from a few warm-up steps, would flatter attnlab.
   */
  threads?: number;
  /** Size of the square matmul timed as the sgemm peak. Default 1024. */
  sgemmSize?: number;
  /** Seeds the models and the batches. Default 0. */
  seed?: number;
  /** Receives a line at each stage and round, for long runs. Default none. */
  onProgress?: (line: string) => void;
}

/** What {@linkcode runTrainBench} returns. */
export interface TrainBenchResult {
  rows: TrainBenchRow[];
  /** The step times behind each row, in the same order. */
  samples: TrainBenchSample[];
  peak: SgemmPeak;
  /** PyTorch for the whole run: its status before any row ("ok" when it started on an optimised BLAS). */
  torch: { status: TorchStatus; detail: string; info: TwinInfo | null };
  backend: string;
  /** What the backend ran on (lib/bench/device.ts). */
  device: string;
  elapsedS: number;
}

const OPTION_KEYS = [
  "configs",
  "presets",
  "rounds",
  "steps",
  "warmup",
  "torch",
  "twin",
  "python",
  "threads",
  "sgemmSize",
  "seed",
  "onProgress",
];

/**
 * Runs the training benchmark on the current backend: the sgemm peak, then for each config and preset one model
 * (seeded) and its twin loaded with the same weights and AdamW settings, `warmup` untimed steps each, one
 * profiled attnlab step (its peak memory), then `rounds` rounds of `steps` timed steps per side, attnlab's and
 * PyTorch's alternately (first one, then the other, swapping every round) so a change in the machine's load hits
 * both. Rows give ms per step, tokens/s, GFLOP/s, the share of the sgemm peak, peak memory and the ratio with its
 * interval ({@linkcode trainBenchRow}). Without PyTorch, or with PyTorch on the reference BLAS, the rows say so in
 * `torch_status` and carry no ratio. The attention layers' finite checks are off while it runs.
 *
 * @example
 * ```ts
 * import { initBackend } from "../backend.ts";
 * import { runTrainBench } from "./train_bench.ts";
 * await initBackend({ quiet: true }); // the best backend here (blas where OpenBLAS loads), as the bench task does
 * const result = await runTrainBench({
 *   configs: ["small"], presets: ["linear"], rounds: 1, steps: 1, warmup: 0, torch: false, sgemmSize: 64,
 * });
 * const row = result.rows[0];
 * console.log(row.preset, row.torch_status, row.attnlab_ms > 0, row.ratio); // linear off true null
 * ```
 */
export async function runTrainBench(options: TrainBenchOptions = {}): Promise<TrainBenchResult> {
  const owner = "runTrainBench";
  if (options === null || typeof options !== "object") throw new TypeError(`${owner}: options must be an object`);
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.includes(key)) {
      throw new TypeError(`${owner}: unknown option "${key}"; expected ${OPTION_KEYS.join(", ")}`);
    }
  }
  const configs = nameList(owner, "options.configs", options.configs, TRAIN_BENCH_CONFIG_NAMES);
  const presets = nameList(owner, "options.presets", options.presets, PRESETS);
  const fixedRounds = options.rounds === undefined ? null : positiveInteger(owner, "options.rounds", options.rounds);
  const steps = options.steps === undefined ? null : positiveInteger(owner, "options.steps", options.steps);
  const warmup = options.warmup ?? 1;
  if (typeof warmup !== "number") {
    throw new TypeError(`${owner}: options.warmup must be an integer >= 0, got ${warmup}`);
  }
  if (!Number.isInteger(warmup) || warmup < 0) {
    throw new RangeError(`${owner}: options.warmup must be an integer >= 0, got ${warmup}`);
  }
  const useTorch = options.torch ?? true;
  if (typeof useTorch !== "boolean") throw new TypeError(`${owner}: options.torch must be a boolean, got ${useTorch}`);
  if (options.twin !== undefined) {
    const t = options.twin as unknown as Record<string, unknown>;
    if (t === null || typeof t !== "object" || typeof t.info !== "object" || t.info === null) {
      throw new TypeError(`${owner}: options.twin must be a TorchTwin (or { info, load, timeSteps, close })`);
    }
    for (const m of ["load", "timeSteps", "close"]) {
      if (typeof t[m] !== "function") throw new TypeError(`${owner}: options.twin.${m} must be a function`);
    }
    if (!useTorch) throw new TypeError(`${owner}: options.twin is given but options.torch is false; drop one`);
  }
  const threads = positiveInteger(owner, "options.threads", options.threads ?? navigator.hardwareConcurrency);
  const sgemmSize = positiveInteger(owner, "options.sgemmSize", options.sgemmSize ?? 1024);
  const seed = options.seed ?? 0;
  if (typeof seed !== "number" || !Number.isInteger(seed)) {
    throw new TypeError(`${owner}: options.seed must be an integer, got ${seed}`);
  }
  if (options.python !== undefined && typeof options.python !== "string") {
    throw new TypeError(`${owner}: options.python must be a path to a python interpreter`);
  }
  if (options.onProgress !== undefined && typeof options.onProgress !== "function") {
    throw new TypeError(`${owner}: options.onProgress must be a function (line) => void`);
  }
  const progress = options.onProgress ?? (() => {});
  const start = performance.now();
  const backend = tf.getBackend();
  const device = await deviceOf(backend);

  const peak = await sgemmPeak({ size: sgemmSize, repeats: 5 });
  progress(`train bench: sgemm peak ${peak.gflops.toFixed(1)} GFLOP/s (${sgemmSize}³ on ${backend})`);

  let twin: TwinLike | null = null;
  let owned = false;
  let torch: TrainBenchResult["torch"] = {
    status: "off",
    detail: "not asked for (torch: false; --no-torch)",
    info: null,
  };
  if (useTorch) {
    try {
      if (options.twin !== undefined) twin = options.twin;
      else {
        twin = await TorchTwin.start({ threads, ...(options.python === undefined ? {} : { python: options.python }) });
        owned = true;
      }
      const info = twin.info;
      torch = info.blasOptimised
        ? { status: "ok", detail: `PyTorch ${info.torch}, ${info.threads} threads, ${info.blas}`, info }
        : {
          status: "reference BLAS",
          detail: `PyTorch ${info.torch} runs the reference BLAS (${info.blas}), about 10× slower than an optimised ` +
            "one: not timed, no ratio; install libopenblas0 (apt-get install libopenblas0)",
          info,
        };
    } catch (err) {
      torch = { status: "unavailable", detail: firstLine(err), info: null };
    }
    progress(
      `train bench: torch ${torch.status}: ${torch.detail}` +
        (torch.info ? `; its sgemm ${torch.info.sgemmGflops.toFixed(1)} GFLOP/s` : ""),
    );
  }

  const rows: TrainBenchRow[] = [];
  const samples: TrainBenchSample[] = [];
  const finiteBefore = setFiniteChecks(false); // timed calls read nothing back; restored below
  try {
    for (const config of configs) {
      for (const preset of presets) {
        const { model, batch, spec } = trainBenchModel(config, preset, { seed });
        const timer = trainStepTimer(model, { adam: { ...STEP_ADAM } });
        const perRound = steps ?? spec.steps;
        const rounds = fixedRounds ?? spec.rounds;
        const label = `${config} ${preset}`;
        try {
          let status: TorchStatus = torch.status;
          let note = torch.status === "ok" ? "" : torch.detail;
          let torchPeak: number | null = null;
          let peakMethod: string | null = null;
          const fail = (err: unknown) => {
            status = "failed";
            note = firstLine(err);
            progress(`train bench: ${label}: PyTorch failed: ${note}`);
          };
          if (status === "ok") {
            progress(`train bench: ${label}: loading the twin`);
            try {
              await twin!.load(model.config, { weights: await weightsOf(model), adam: { ...STEP_ADAM } });
            } catch (err) {
              fail(err);
            }
          }
          progress(`train bench: ${label}: ${warmup} warm-up step${warmup === 1 ? "" : "s"} each, one profiled`);
          for (let i = 0; i < warmup; i++) await stepMs(timer, batch);
          const attnlabPeak = await profiledPeak(timer, batch);
          // PyTorch runs at every thread count from 1 to `threads` in each round; the row keeps the fastest count's
          // rounds (null: the twin's own count, when it cannot change it or only one thread is allowed).
          const counts = status === "ok" && twin!.setThreads !== undefined && threads > 1
            ? Array.from({ length: threads }, (_, i) => i + 1)
            : null;
          if (status === "ok") {
            try {
              // The warm-up call also measures the twin's peak memory, on one extra update; the rounds skip that.
              const t = await twin!.timeSteps(batch, { warmup, steps: 1, memory: true });
              torchPeak = Number.isFinite(t.peakBytes) ? t.peakBytes : null;
              peakMethod = t.peakMethod;
            } catch (err) {
              fail(err);
            }
          }
          const attnlabMs: number[][] = [];
          const torchMsBy = new Map<number | null, number[][]>((counts ?? [null]).map((t) => [t, []]));
          for (let r = 0; r < rounds; r++) {
            const ours = async () => {
              const times: number[] = [];
              for (let i = 0; i < perRound; i++) times.push(await stepMs(timer, batch));
              attnlabMs.push(times);
            };
            const theirs = async () => {
              if (status !== "ok") return;
              try {
                // Counts in turn, the order reversed every other round: one change of count per round.
                const order = counts === null ? [null] : r % 2 === 0 ? counts : [...counts].reverse();
                for (const count of order) {
                  if (count !== null) await twin!.setThreads!(count);
                  const t = await twin!.timeSteps(batch, { warmup: 0, steps: perRound, memory: false });
                  if (t.ms.length !== perRound) {
                    throw new Error(`the twin timed ${t.ms.length} steps, ${perRound} asked for`);
                  }
                  torchMsBy.get(count)!.push([...t.ms]);
                }
              } catch (err) {
                fail(err);
              }
            };
            // Alternate who goes first, so a trend in the machine's load does not favour one side.
            if (r % 2 === 0) {
              await ours();
              await theirs();
            } else {
              await theirs();
              await ours();
            }
            const last = (xs: number[][]) => xs.length > r ? `${median(xs[r]).toFixed(1)} ms` : "–";
            const theirsLast = [...torchMsBy].map(([count, ms]) =>
              `torch${count === null ? "" : ` ${count} thread${count === 1 ? "" : "s"}`} ${last(ms)}`
            );
            progress(
              `train bench: ${label}: round ${r + 1}/${rounds}: attnlab ${last(attnlabMs)}` +
                (status === "ok" ? `, ${theirsLast.join(", ")}` : ""),
            );
          }
          const fastest = fastestThreadCount(torchMsBy);
          const torchMs = torchMsBy.get(fastest)!;
          const torchThreads = fastest ?? torch.info?.threads;
          if (status === "ok" && counts !== null) {
            progress(`train bench: ${label}: PyTorch was fastest here with ${fastest} thread(s)`);
          }
          const row = trainBenchRow({
            config,
            spec,
            preset,
            parameters: model.parameterCount,
            backend,
            device,
            flopsStep: modelFlops(model.config, { batch: spec.batch, n: spec.n }).step,
            peakGflops: peak.gflops,
            attnlabMs,
            attnlabPeakBytes: attnlabPeak.bytes,
            attnlabPeakMethod: attnlabPeak.method,
            torch: {
              status,
              note,
              info: torch.info,
              ms: status === "ok" ? torchMs : null,
              peakBytes: torchPeak,
              peakMethod,
              ...(torchThreads === undefined ? {} : { threads: torchThreads }),
            },
          });
          rows.push(row);
          samples.push({ attnlabMs, torchMs: status === "ok" ? torchMs : null });
          progress(
            `train bench: ${label}: attnlab ${row.attnlab_ms.toFixed(1)} ms/step` +
              (row.ratio === null ? "" : `, torch ${row.torch_ms!.toFixed(1)} ms/step, ratio ${row.ratio.toFixed(2)}`),
          );
        } catch (err) {
          // Name the row: a long run's error is otherwise hard to place.
          throw new Error(`${owner}: ${label}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        } finally {
          timer.dispose();
          model.dispose();
        }
      }
    }
  } finally {
    setFiniteChecks(finiteBefore);
    if (owned) await twin!.close();
  }
  return { rows, samples, peak, torch, backend, device, elapsedS: (performance.now() - start) / 1000 };
}

/**
 * The thread count whose rounds have the lowest median time (all its runs together); the first count when none has
 * a run. Choosing after the fact can only favour PyTorch: of two counts within noise, the one that happened to run
 * faster is kept.
 *
 * @example
 * ```ts
 * import { fastestThreadCount } from "./train_bench.ts";
 * const byCount = new Map([[1, [[30, 31], [29]]], [2, [[25], [40, 26]]]]);
 * console.log(fastestThreadCount(byCount)); // 2
 * ```
 */
export function fastestThreadCount<T extends number | null>(
  byCount: ReadonlyMap<T, readonly (readonly number[])[]>,
): T {
  let best: { count: T; ms: number } = { count: byCount.keys().next().value as T, ms: Infinity };
  for (const [count, rounds] of byCount) {
    const steps = rounds.flat();
    if (steps.length === 0) continue;
    const ms = median(steps);
    if (ms < best.ms) best = { count, ms };
  }
  return best.count;
}

/** One update's wall time, to the end of its awaited read (a GPU backend is done only then). */
async function stepMs(timer: ReturnType<typeof trainStepTimer>, batch: LmBatch): Promise<number> {
  const start = performance.now();
  await timer.step(batch);
  return performance.now() - start;
}

/** Peak tensor bytes of one update above those alive before it (tf.profile; a view counts as its own tensor). */
async function profiledPeak(timer: ReturnType<typeof trainStepTimer>, batch: LmBatch): Promise<PeakMemory> {
  const step = async () => {
    await timer.step(batch);
  };
  if (tf.getBackend() === BLAS_BACKEND) {
    // The backend's buffers, as the twin's allocator events count PyTorch's: views (Reshape, Identity) count nothing.
    resetPeakDataBytes();
    const before = dataBytes().live;
    await step();
    return { bytes: Math.max(0, dataBytes().peak - before), method: "buffers" };
  }
  // Elsewhere tf.profile's tensor bytes, which count a view at its tensor's full size (an overestimate).
  const before = tf.memory().numBytes;
  const info = await tf.profile(step);
  return { bytes: Math.max(0, info.peakBytes - before), method: "tensors" };
}

/** One step's peak memory above what was held before it, and how it was counted. */
interface PeakMemory {
  bytes: number;
  /** "buffers": the blas backend's data buffers (dataBytes); "tensors": tf.profile's tensor bytes. */
  method: "buffers" | "tensors";
}

/** The model's weights as copies, every variable read by `await data()` together. */
async function weightsOf(model: TransformerModel): Promise<Record<string, Float32Array>> {
  const entries = Object.entries(model.variables);
  const values = await Promise.all(entries.map(([, v]) => v.data()));
  return Object.fromEntries(entries.map(([name], i) => [name, Float32Array.from(values[i] as Float32Array)]));
}

function nameList<T extends string>(
  owner: string,
  name: string,
  value: readonly T[] | undefined,
  valid: readonly T[],
): T[] {
  if (value === undefined) return [...valid];
  if (!Array.isArray(value) || value.length === 0) {
    throw new TypeError(`${owner}: ${name} must be a non-empty array of names from ${valid.join(", ")}`);
  }
  for (const v of value) {
    if (!(valid as readonly unknown[]).includes(v)) {
      throw new RangeError(`${owner}: unknown name "${v}" in ${name}; expected some of ${valid.join(", ")}`);
    }
  }
  return [...new Set(value)];
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}

/**
 * The rows as a table: per config and preset, attnlab's ms per step (median, fastest–slowest), tokens/s,
 * GFLOP/s, share of the sgemm peak and peak MB, then PyTorch's ms, GFLOP/s and peak MB, the ratio with its
 * interval, and PyTorch's status; under it, the notes of rows without a ratio.
 *
 * @example
 * ```ts
 * import { formatTrainBenchTable, TRAIN_BENCH_CONFIGS, trainBenchRow } from "./train_bench.ts";
 * const row = trainBenchRow({
 *   config: "small", spec: TRAIN_BENCH_CONFIGS.small, preset: "vanilla", parameters: 213248, backend: "blas",
 *   device: "Intel(R) Xeon(R) Processor, 2 logical cores",
 *   flopsStep: 50e9, peakGflops: 200, attnlabMs: [[400], [420]], attnlabPeakBytes: null,
 *   torch: { status: "off", note: "--no-torch", info: null, ms: null, peakBytes: null },
 * });
 * const table = formatTrainBenchTable([row]);
 * console.log(table.split("\n")[0].startsWith("config  preset")); // true
 * console.log(table.includes("--no-torch")); // true
 * ```
 */
export function formatTrainBenchTable(rows: readonly TrainBenchRow[]): string {
  if (!Array.isArray(rows)) throw new TypeError("formatTrainBenchTable: rows must be an array of TrainBenchRow");
  const num = (x: number | null, digits = 3) =>
    x === null || !Number.isFinite(x) ? "" : Math.abs(x) >= 1000 ? x.toFixed(0) : x.toPrecision(digits);
  const header = [
    "config",
    "preset",
    "backend",
    "device",
    "ms/step",
    "min–max",
    "tokens/s",
    "GFLOP/s",
    "% peak",
    "peak MB",
    "torch ms",
    "torch GFLOP/s",
    "torch MB",
    "× torch",
    "95% interval",
    "torch",
  ];
  const body = rows.map((r) => [
    r.config,
    r.preset,
    r.backend,
    r.device,
    num(r.attnlab_ms),
    `${num(r.attnlab_ms_min)}–${num(r.attnlab_ms_max)}`,
    num(r.attnlab_tokens_per_s),
    num(r.attnlab_gflops),
    (100 * r.attnlab_share_of_peak).toFixed(1),
    num(r.attnlab_peak_mb),
    num(r.torch_ms),
    num(r.torch_gflops),
    num(r.torch_peak_mb),
    r.ratio === null ? "" : r.ratio.toFixed(2),
    r.ratio_low === null || r.ratio_high === null ? "" : `${r.ratio_low.toFixed(2)}–${r.ratio_high.toFixed(2)}`,
    r.torch_status,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => cells[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < 4 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ")
      .trimEnd();
  const notes = [...new Set(rows.filter((r) => r.torch_note !== "").map((r) => `${r.torch_status}: ${r.torch_note}`))];
  return [line(header), ...body.map(line), ...(notes.length > 0 ? ["", ...notes] : [])].join("\n");
}
