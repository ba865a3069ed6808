/**
 * The results of notebook 05's ablations (Tables 1, 8/9 and 11), in both settings it trains: the causal
 * T2-stack variations ({@linkcode ABLATION_CONFIGS}, `trainedAblation`) and the masked-LM runs
 * ({@linkcode MLM_ABLATION_CONFIGS}, `trainedMlmAblation`), each over the same seeds.
 *
 * - {@linkcode ablationEntries}: every row of the three tables in each setting (the arm, its clipping, the paper's
 *   perplexity where it is transcribed).
 * - {@linkcode ablationRecord} and {@linkcode AblationRuns}: what the notebook keeps of each trained run (final
 *   validation loss, a stop on a non-finite loss, the validation log) and the registry of runs by setting, id and
 *   seed, which trains what it lacks ({@linkcode AblationRuns.collect}).
 * - {@linkcode summarizeConfig}, {@linkcode summaryRows}: mean ± 95% interval per configuration over its finished
 *   seeds; {@linkcode curveRows}, {@linkcode seedRows}: the data behind the figures (spread over seeds).
 * - {@linkcode compareLosses}: the paired difference of two configurations' validation losses across shared seeds,
 *   decided by `verdict` from lib/stats, with a stated rule for runs that diverged; {@linkcode allOf} (every part
 *   must hold), {@linkcode contextLimited} (a claim the 128-byte context cannot test), {@linkcode seedsToSettle}.
 * - {@linkcode diagBlockTimers}: DiagAttention forward + backward per block size, for `interleavedTimes`.
 *
 * A run stopped by a non-finite loss (`result.stopped`) is **diverged**: its final loss counts as +∞, never as the
 * last finite validation loss before the stop.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { variants } from "../attention/mod.ts";
import { type FlopCount, flopCount } from "../bench/flops.ts";
import { randomNormal } from "../random.ts";
import {
  type DifferenceInterval,
  differenceInterval,
  exactVerdict,
  fmt,
  formatInterval,
  inconclusiveBecause,
  median,
  pm,
  rank,
  type Rule,
  type TInterval,
  tInterval,
  tQuantile,
  type Verdict,
  verdict,
} from "../stats/mod.ts";
import type { TrainResult } from "../train/train.ts";
import type { ValidRow } from "../train/types.ts";
import { ABLATION_CONFIGS, type AblationTable, MLM_ABLATION_CONFIGS } from "./ablations.ts";

/** The two settings notebook 05 trains: causal LM (today's T2-stack runs) and masked LM (the paper's protocol). */
export type AblationSetting = "causal" | "mlm";

/** The settings in display order. */
export const ABLATION_SETTINGS: readonly AblationSetting[] = Object.freeze(["causal", "mlm"] as AblationSetting[]);

/** One row of an ablation table in one setting. */
export interface AblationEntry {
  /** The paper's table: "1", "8/9" or "11". */
  table: AblationTable;
  setting: AblationSetting;
  /** The run id in {@linkcode ABLATION_CONFIGS} (causal) or {@linkcode MLM_ABLATION_CONFIGS} (mlm). */
  id: string;
  /** What the row varies, the same words in both settings (e.g. "none", "block 16"). */
  arm: string;
  /** The gradient-clipping threshold the run trained with, or null for none. */
  clip: number | null;
  /** The paper's perplexity for this row, where it is transcribed (Tables 1 and 9, T2 column); else null. */
  paper: number | null;
}

// Table 1: what replaces linear attention's denominator. Causal: the two late layers of a T2 stack; MLM: pure 1+elu in
// every layer. The paper's numbers: 4.98 (denominator), 797.08 (none), 4.94 (RMSNorm).
const TABLE1_ARMS: readonly [arm: string, causal: string, mlm: string, paper: number | null][] = [
  ["denominator (1+elu)", "late-linear", "elu-denominator", 4.98],
  ["none", "late-none", "elu-none", 797.08],
  ["LayerNorm", "late-layer", "elu-layer", null],
  ["RMSNorm", "late-rms", "elu-rms", 4.94],
  ["SimpleRMSNorm", "t2", "elu-srms", null],
];
// Tables 8/9 (T2 column of Table 9: 3.81 Diag early, 4.21 Norm early) and Table 11 (no numbers transcribed).
const TABLE9_ARMS: readonly [arm: string, id: string, paper: number | null][] = [
  ["Diag early, Norm late (T2)", "t2", 3.81],
  ["Norm early, Diag late", "norm-then-diag", 4.21],
  ["all Diag", "all-diag", null],
  ["all Norm", "all-norm", null],
  ["all softmax (reference)", "all-softmax", null],
];
const TABLE11_ARMS: readonly [arm: string, id: string][] = [
  ["block 16", "block16"],
  ["block 32", "block32"],
  ["block 64 (= T2)", "t2"],
  ["block 128", "block128"],
];

/** Options of {@linkcode ablationEntries}. */
export interface AblationEntriesOptions {
  /** The clipping threshold of the causal runs (their recipe's `clip`; 1 in both modes). Default 1. */
  causalClip?: number | null;
}

function checkClip(owner: string, clip: unknown): number | null {
  if (clip === null) return null;
  if (typeof clip !== "number") throw new TypeError(`${owner}: causalClip must be a number or null, got ${clip}`);
  if (!(clip > 0)) throw new RangeError(`${owner}: causalClip must be > 0 (or null for none), got ${clip}`);
  return clip;
}

/**
 * Every row of Tables 1, 8/9 and 11 in both settings, in display order (table, then setting, then row). Table 1's
 * masked-LM arms come twice, with clipping at 1 and without (the authors' recipe); every other masked-LM run trains
 * without clipping, every causal run with the causal recipe's clipping.
 *
 * @example
 * ```ts
 * import { ablationEntries } from "./ablation_results.ts";
 * const entries = ablationEntries();
 * const t1 = entries.filter((e) => e.table === "1");
 * console.log(t1.filter((e) => e.setting === "causal").length, t1.filter((e) => e.setting === "mlm").length); // 5 10
 * console.log(t1.find((e) => e.id === "elu-none-noclip")); // { table: "1", setting: "mlm", id: "elu-none-noclip", arm: "none", clip: null, paper: 797.08 }
 * ```
 */
export function ablationEntries(options: AblationEntriesOptions = {}): AblationEntry[] {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`ablationEntries: options must be an object { causalClip? }, got ${options}`);
  }
  const causalClip = checkClip("ablationEntries", options.causalClip === undefined ? 1 : options.causalClip);
  const causal = (table: AblationTable, arm: string, id: string, paper: number | null): AblationEntry => ({
    table,
    setting: "causal",
    id,
    arm,
    clip: causalClip,
    paper,
  });
  const mlm = (table: AblationTable, arm: string, id: string, paper: number | null): AblationEntry => ({
    table,
    setting: "mlm",
    id,
    arm,
    clip: MLM_ABLATION_CONFIGS[id].clip,
    paper,
  });
  const entries: AblationEntry[] = [
    ...TABLE1_ARMS.map(([arm, id, , paper]) => causal("1", arm, id, paper)),
    ...TABLE1_ARMS.flatMap(([arm, , id, paper]) =>
      ["clip", "noclip"].map((suffix) => mlm("1", arm, `${id}-${suffix}`, paper))
    ),
    ...TABLE9_ARMS.map(([arm, id, paper]) => causal("8/9", arm, id, paper)),
    ...TABLE9_ARMS.map(([arm, id, paper]) => mlm("8/9", arm, id, paper)),
    ...TABLE11_ARMS.map(([arm, id]) => causal("11", arm, id, null)),
    ...TABLE11_ARMS.map(([arm, id]) => mlm("11", arm, id, null)),
  ];
  for (const e of entries) {
    const known = e.setting === "causal" ? ABLATION_CONFIGS : MLM_ABLATION_CONFIGS;
    if (known[e.id] === undefined) {
      throw new Error(
        `ablationEntries: ${e.setting} run "${e.id}" is not a configuration of lib/experiments/ablations.ts`,
      );
    }
  }
  return entries;
}

/**
 * "clip 1" or "no clip": an entry's clipping in words.
 *
 * @example
 * ```ts
 * import { clipLabel } from "./ablation_results.ts";
 * console.log(clipLabel(1), clipLabel(null)); // clip 1 no clip
 * ```
 */
export function clipLabel(clip: number | null): string {
  return clip === null ? "no clip" : `clip ${clip}`;
}

/** What a trained run gives {@linkcode ablationRecord}: the fields of `TrainedLanguageModel` it reads. */
export interface TrainedRunLike {
  result: Pick<TrainResult, "stopped" | "logs">;
  action: string;
  model: { parameterCount: number };
  recipe: { steps: number; batchSize: number; seqLen: number; warmup: number };
}

/** What the notebook keeps of one trained run. */
export interface AblationRecord {
  setting: AblationSetting;
  id: string;
  seed: number;
  /** What the run cache did: "trained", "reused", "resumed" or "retrained". */
  action: string;
  parameters: number;
  /** Training tokens of the recipe: steps · batch · sequence length (for 6·N·D). */
  tokens: number;
  /** Whether the run stopped on a non-finite loss or gradient, or ended with a non-finite validation loss. */
  diverged: boolean;
  /** The update at which it stopped (null when it did not stop). */
  stoppedAt: number | null;
  /** Where the non-finite value appeared first, from `result.stopped` ("" when it did not stop). */
  where: string;
  /** The last validation loss (nats per byte; over masked bytes for mlm), +∞ when diverged. */
  finalLoss: number;
  /** The validation log, as trained (a diverged run's ends before its stop). */
  valid: ValidRow[];
  /** Median seconds per update after warmup, in ms (NaN when no update came after warmup). */
  msPerStep: number;
  /** Seconds of training steps, summed over the log (the session that trained the run). */
  trainSeconds: number;
}

function checkSetting(owner: string, setting: unknown): AblationSetting {
  if (setting !== "causal" && setting !== "mlm") {
    const message = `${owner}: setting must be "causal" or "mlm", got ${JSON.stringify(setting) ?? String(setting)}`;
    throw typeof setting === "string" ? new RangeError(message) : new TypeError(message);
  }
  return setting;
}

function checkSeeds(owner: string, seeds: unknown): number[] {
  if (!Array.isArray(seeds) || seeds.length === 0) {
    throw new TypeError(`${owner}: seeds must be a non-empty array of integers, e.g. ablationSeeds(quick)`);
  }
  for (const s of seeds) {
    if (typeof s !== "number" || !Number.isInteger(s) || s < 0) {
      throw new RangeError(`${owner}: every seed must be an integer ≥ 0, got ${s}`);
    }
  }
  return seeds;
}

/**
 * The record of one trained run. A run whose `result.stopped` is set, or whose last validation loss is not finite,
 * is diverged, with `finalLoss` +∞. A finished run without a validation row is a `RangeError`.
 *
 * @example
 * ```ts
 * import { ablationRecord } from "./ablation_results.ts";
 * const logs = {
 *   train: [1, 2, 3].map((step) => ({ step, seconds: step / 10 })),
 *   valid: [{ step: 3, loss: 2, perplexity: Math.exp(2), bits_per_byte: 2 / Math.LN2 }],
 *   gradNorms: [], probes: [],
 * };
 * const trained = {
 *   result: { stopped: null, logs }, action: "trained", model: { parameterCount: 1000 },
 *   recipe: { steps: 3, batchSize: 2, seqLen: 8, warmup: 1 },
 * } as unknown as Parameters<typeof ablationRecord>[3];
 * const r = ablationRecord("causal", "t2", 1, trained);
 * console.log(r.finalLoss, r.diverged, r.tokens, r.msPerStep.toFixed(0), r.trainSeconds.toFixed(1)); // 2 false 48 200 0.6
 * ```
 */
export function ablationRecord(
  setting: AblationSetting,
  id: string,
  seed: number,
  trained: TrainedRunLike,
): AblationRecord {
  checkSetting("ablationRecord", setting);
  if (typeof id !== "string" || id === "") throw new TypeError(`ablationRecord: id must be a run id, got ${id}`);
  checkSeeds("ablationRecord", [seed]);
  if (trained === null || typeof trained !== "object" || trained.result?.logs === undefined) {
    throw new TypeError("ablationRecord: trained must be what trainedAblation / trainedMlmAblation return");
  }
  const { result, recipe } = trained;
  const last = result.logs.valid.at(-1);
  if (result.stopped === null && last === undefined) {
    throw new RangeError(`ablationRecord: run ${setting}/${id}/seed${seed} finished without a validation row`);
  }
  const diverged = result.stopped !== null || !Number.isFinite(last!.loss);
  const afterWarmup = result.logs.train.filter((row) => row.step >= recipe.warmup).map((row) => row.seconds);
  return {
    setting,
    id,
    seed,
    action: trained.action,
    parameters: trained.model.parameterCount,
    tokens: recipe.steps * recipe.batchSize * recipe.seqLen,
    diverged,
    stoppedAt: result.stopped?.step ?? null,
    where: result.stopped?.where ?? "",
    finalLoss: diverged ? Infinity : last!.loss,
    valid: result.logs.valid,
    msPerStep: afterWarmup.length === 0 ? NaN : 1000 * median(afterWarmup),
    trainSeconds: result.logs.train.reduce((s, row) => s + row.seconds, 0),
  };
}

/** A trainer for {@linkcode AblationRuns.collect}: `trainedAblation` or `trainedMlmAblation` with its options bound. */
export type AblationTrainer = (
  id: string,
  seed: number,
) => Promise<TrainedRunLike & { model: { parameterCount: number; dispose(): void } }>;

/**
 * The runs of notebook 05 by setting, configuration id and seed.
 *
 * @example
 * ```ts
 * import { AblationRuns } from "./ablation_results.ts";
 * const runs = new AblationRuns();
 * const record = { setting: "mlm", id: "t2", seed: 1, finalLoss: 2.5, diverged: false } as never;
 * runs.add(record);
 * console.log(runs.size, runs.has("mlm", "t2", 1), runs.has("causal", "t2", 1)); // 1 true false
 * ```
 */
export class AblationRuns {
  #records = new Map<string, AblationRecord>();

  /**
   * A run's key: `<setting>/<id>/seed<n>`.
   *
   * @example
   * ```ts
   * import { AblationRuns } from "./ablation_results.ts";
   * console.log(AblationRuns.key("causal", "t2", 3)); // causal/t2/seed3
   * ```
   */
  static key(setting: AblationSetting, id: string, seed: number): string {
    return `${setting}/${id}/seed${seed}`;
  }

  /** How many runs it holds. */
  get size(): number {
    return this.#records.size;
  }

  /** Adds (or replaces) a run's record. */
  add(record: AblationRecord): void {
    if (record === null || typeof record !== "object") {
      throw new TypeError("AblationRuns.add: record must be what ablationRecord returns");
    }
    this.#records.set(
      AblationRuns.key(checkSetting("AblationRuns.add", record.setting), record.id, record.seed),
      record,
    );
  }

  /** Whether the run is held. */
  has(setting: AblationSetting, id: string, seed: number): boolean {
    return this.#records.has(AblationRuns.key(setting, id, seed));
  }

  /** The run's record; a `RangeError` names the missing run. */
  get(setting: AblationSetting, id: string, seed: number): AblationRecord {
    const key = AblationRuns.key(setting, id, seed);
    const record = this.#records.get(key);
    if (record === undefined) {
      throw new RangeError(`AblationRuns.get: no run ${key}; collect it first (AblationRuns.collect)`);
    }
    return record;
  }

  /** Every record, in the order added. */
  records(): AblationRecord[] {
    return [...this.#records.values()];
  }

  /**
   * The final validation loss of configuration `id` for each seed, in the order of `seeds`; +∞ for a diverged run.
   *
   * @example
   * ```ts
   * import { AblationRuns } from "./ablation_results.ts";
   * const runs = new AblationRuns();
   * runs.add({ setting: "causal", id: "t2", seed: 1, finalLoss: 2.5 } as never);
   * runs.add({ setting: "causal", id: "t2", seed: 2, finalLoss: Infinity } as never);
   * console.log(runs.losses("causal", "t2", [2, 1])); // [Infinity, 2.5]
   * ```
   */
  losses(setting: AblationSetting, id: string, seeds: readonly number[]): number[] {
    return checkSeeds("AblationRuns.losses", seeds).map((seed) => this.get(setting, id, seed).finalLoss);
  }

  /**
   * Trains (or loads from the run cache) every seed of `ids` in `setting` that it does not hold yet, one at a time,
   * disposing each model after its record is taken; `onRun` sees each new record. Returns how many it added.
   *
   * @example
   * ```ts
   * import { AblationRuns } from "./ablation_results.ts";
   * const runs = new AblationRuns();
   * const fake = (id: string, seed: number) => Promise.resolve({
   *   result: { stopped: null, logs: { train: [], valid: [{ step: 1, loss: seed, perplexity: Math.exp(seed), bits_per_byte: 0 }], gradNorms: [], probes: [] } },
   *   action: "trained", model: { parameterCount: 10, dispose() {} }, recipe: { steps: 1, batchSize: 1, seqLen: 4, warmup: 0 },
   * });
   * console.log(await runs.collect("mlm", ["t2", "t2", "all-diag"], [1, 2], fake), runs.losses("mlm", "all-diag", [1, 2])); // 4 [1, 2]
   * console.log(await runs.collect("mlm", ["t2"], [1, 2, 3], fake)); // 1
   * ```
   */
  async collect(
    setting: AblationSetting,
    ids: readonly string[],
    seeds: readonly number[],
    train: AblationTrainer,
    onRun?: (record: AblationRecord) => void,
  ): Promise<number> {
    checkSetting("AblationRuns.collect", setting);
    if (!Array.isArray(ids) || ids.some((id) => typeof id !== "string")) {
      throw new TypeError("AblationRuns.collect: ids must be an array of configuration ids");
    }
    checkSeeds("AblationRuns.collect", seeds);
    if (typeof train !== "function") {
      throw new TypeError("AblationRuns.collect: train must be a function (id, seed) => trainedAblation(...)");
    }
    const todo = [...new Set(ids)].flatMap((id) => seeds.map((seed) => ({ id, seed })))
      .filter(({ id, seed }) => !this.has(setting, id, seed));
    for (const { id, seed } of todo) {
      const trained = await train(id, seed);
      try {
        const record = ablationRecord(setting, id, seed, trained);
        this.add(record);
        onRun?.(record);
      } finally {
        trained.model.dispose();
      }
    }
    return todo.length;
  }
}

/** A configuration's final numbers over its seeds: {@linkcode summarizeConfig}. */
export interface ConfigSummary {
  setting: AblationSetting;
  id: string;
  seeds: number[];
  /** Final validation loss per seed, +∞ for a diverged run. */
  losses: number[];
  /** The diverged seeds, with the update they stopped at (null: finished with a non-finite validation loss). */
  diverged: { seed: number; step: number | null; where: string }[];
  /** The t interval of the finished seeds' final losses; null when every seed diverged. */
  loss: TInterval | null;
  /** The t interval of the finished seeds' final perplexities, exp(loss); null when every seed diverged. */
  ppl: TInterval | null;
}

/**
 * Mean and 95% t interval of configuration `id`'s final validation loss and perplexity over its finished seeds,
 * with the diverged seeds apart.
 *
 * @example
 * ```ts
 * import { AblationRuns, summarizeConfig } from "./ablation_results.ts";
 * const runs = new AblationRuns();
 * for (const [seed, loss] of [[1, 2], [2, 3], [3, Infinity]]) {
 *   runs.add({ setting: "mlm", id: "x", seed, finalLoss: loss, diverged: loss === Infinity, stoppedAt: 7, where: "loss" } as never);
 * }
 * const s = summarizeConfig(runs, "mlm", "x", [1, 2, 3]);
 * // mean 2.5, s = √0.5, se = 0.5, t(0.975, 1) = 12.706205: half-width 6.353
 * console.log(s.loss?.mean, s.loss?.halfWidth.toFixed(3), s.diverged); // 2.5 6.353 [ { seed: 3, step: 7, where: "loss" } ]
 * ```
 */
export function summarizeConfig(
  runs: AblationRuns,
  setting: AblationSetting,
  id: string,
  seeds: readonly number[],
): ConfigSummary {
  const records = checkSeeds("summarizeConfig", seeds).map((seed) => runs.get(setting, id, seed));
  const finished = records.filter((r) => Number.isFinite(r.finalLoss)).map((r) => r.finalLoss);
  return {
    setting,
    id,
    seeds: [...seeds],
    losses: records.map((r) => r.finalLoss),
    diverged: records.filter((r) => !Number.isFinite(r.finalLoss)).map((r) => ({
      seed: r.seed,
      step: r.stoppedAt,
      where: r.where,
    })),
    loss: finished.length === 0 ? null : tInterval(finished),
    ppl: finished.length === 0 ? null : tInterval(finished.map(Math.exp)),
  };
}

function pmInterval(iv: TInterval | null): string {
  return iv === null ? "—" : pm(iv.mean, iv.halfWidth);
}

function divergedText(s: ConfigSummary): string {
  if (s.diverged.length === 0) return "none";
  return s.diverged.map((d) => `seed ${d.seed}${d.step === null ? "" : ` at update ${d.step}`}`).join("; ");
}

/**
 * One table row per entry: validation perplexity and loss as mean ± 95% t half-width over the finished seeds, the
 * diverged seeds, the rank among these entries (lower mean loss first; an entry whose every seed diverged ranks
 * last) and the paper's perplexity (null where it is not transcribed).
 *
 * @example
 * ```ts
 * import { AblationRuns, summaryRows } from "./ablation_results.ts";
 * const runs = new AblationRuns();
 * const entries = [
 *   { table: "8/9", setting: "mlm", id: "a", arm: "A", clip: null, paper: 3.81 },
 *   { table: "8/9", setting: "mlm", id: "b", arm: "B", clip: null, paper: null },
 * ] as const;
 * for (const [id, losses] of [["a", [1, 1.2, 1.4]], ["b", [0.5, 0.5, 0.5]]] as const) {
 *   losses.forEach((finalLoss, i) => runs.add({ setting: "mlm", id, seed: i + 1, finalLoss } as never));
 * }
 * const rows = summaryRows(runs, [...entries], [1, 2, 3]);
 * // a: mean 1.2, s = 0.2, t(0.975, 2) · 0.2/√3 = 0.497
 * console.log(rows[0]["valid loss, nats (mean ± 95% CI)"], rows[0].rank, rows[1].rank, rows[0]["paper PPL"]); // 1.2 ± 0.5 2 1 3.81
 * ```
 */
export function summaryRows(
  runs: AblationRuns,
  entries: readonly AblationEntry[],
  seeds: readonly number[],
): Record<string, string | number | null>[] {
  const sums = entries.map((e) => summarizeConfig(runs, e.setting, e.id, seeds));
  const ranks = rank(sums.map((s) => s.loss?.mean ?? Number.MAX_VALUE), { ties: "min" });
  return entries.map((e, i) => ({
    setting: e.setting,
    configuration: e.arm,
    clipping: clipLabel(e.clip),
    run: e.id,
    "valid PPL (mean ± 95% CI)": pmInterval(sums[i].ppl),
    "valid loss, nats (mean ± 95% CI)": pmInterval(sums[i].loss),
    "finished seeds": `${seeds.length - sums[i].diverged.length} of ${seeds.length}`,
    "diverged seeds": divergedText(sums[i]),
    rank: ranks[i],
    "paper PPL": e.paper,
  }));
}

/**
 * The data behind a validation-curve figure: per entry and step, the mean validation loss over the seeds that
 * logged that step, with the lowest and highest seed (the spread) and how many seeds it rests on.
 *
 * @example
 * ```ts
 * import { AblationRuns, curveRows } from "./ablation_results.ts";
 * const runs = new AblationRuns();
 * const valid = (losses: number[]) => losses.map((loss, step) => ({ step, loss }));
 * runs.add({ setting: "causal", id: "t2", seed: 1, valid: valid([3, 2]) } as never);
 * runs.add({ setting: "causal", id: "t2", seed: 2, valid: valid([5]) } as never); // stopped after step 0
 * const entry = { table: "11", setting: "causal", id: "t2", arm: "block 64", clip: 1, paper: null } as const;
 * console.log(curveRows(runs, [entry], [1, 2]).map((r) => [r.step, r.loss, r.low, r.high, r.seeds])); // [ [ 0, 4, 3, 5, 2 ], [ 1, 2, 2, 2, 1 ] ]
 * ```
 */
export function curveRows(
  runs: AblationRuns,
  entries: readonly AblationEntry[],
  seeds: readonly number[],
): {
  setting: string;
  configuration: string;
  clipping: string;
  step: number;
  loss: number;
  low: number;
  high: number;
  seeds: number;
}[] {
  checkSeeds("curveRows", seeds);
  return entries.flatMap((e) => {
    const logs = seeds.map((seed) => runs.get(e.setting, e.id, seed).valid);
    const steps = [...new Set(logs.flatMap((rows) => rows.map((r) => r.step)))].sort((a, b) => a - b);
    return steps.map((step) => {
      const values = logs.flatMap((rows) => rows.filter((r) => r.step === step && Number.isFinite(r.loss)))
        .map((r) => r.loss);
      return {
        setting: e.setting,
        configuration: e.arm,
        clipping: clipLabel(e.clip),
        step,
        loss: values.reduce((s, x) => s + x, 0) / values.length,
        low: Math.min(...values),
        high: Math.max(...values),
        seeds: values.length,
      };
    }).filter((r) => r.seeds > 0);
  });
}

/** One row of {@linkcode seedRows}. */
export interface SeedRow {
  setting: AblationSetting;
  configuration: string;
  clipping: string;
  seed: number;
  /** The seed's final validation loss; null when it diverged. */
  loss: number | null;
  /** Mean final loss over the finished seeds; null when none finished. */
  mean: number | null;
  /** 95% t interval bounds of that mean; the mean itself when one seed finished, null when none did. */
  low: number | null;
  high: number | null;
  /** How many seeds of the entry diverged. */
  diverged: number;
}

/**
 * The data behind a final-loss figure: one row per entry and seed, the seed's final validation loss (null when it
 * diverged) beside the entry's mean and 95% t interval over its finished seeds.
 *
 * @example
 * ```ts
 * import { AblationRuns, seedRows } from "./ablation_results.ts";
 * const runs = new AblationRuns();
 * runs.add({ setting: "mlm", id: "t2", seed: 1, finalLoss: 2 } as never);
 * runs.add({ setting: "mlm", id: "t2", seed: 2, finalLoss: Infinity } as never);
 * const entry = { table: "8/9", setting: "mlm", id: "t2", arm: "T2", clip: null, paper: 3.81 } as const;
 * console.log(seedRows(runs, [entry], [1, 2]).map((r) => [r.seed, r.loss, r.mean, r.low, r.diverged])); // [ [ 1, 2, 2, 2, 1 ], [ 2, null, 2, 2, 1 ] ]
 * ```
 */
export function seedRows(runs: AblationRuns, entries: readonly AblationEntry[], seeds: readonly number[]): SeedRow[] {
  return entries.flatMap((e) => {
    const s = summarizeConfig(runs, e.setting, e.id, seeds);
    const ci = s.loss;
    const bound = (x: number) => (Number.isNaN(x) ? ci!.mean : x);
    return s.seeds.map((seed, i) => ({
      setting: e.setting,
      configuration: e.arm,
      clipping: clipLabel(e.clip),
      seed,
      loss: Number.isFinite(s.losses[i]) ? s.losses[i] : null,
      mean: ci?.mean ?? null,
      low: ci === null ? null : bound(ci.low),
      high: ci === null ? null : bound(ci.high),
      diverged: s.diverged.length,
    }));
  });
}

/** What {@linkcode compareLosses} returns. */
export interface LossComparison {
  /** Per seed: other − base (+∞ when only `other` diverged, −∞ when only `base` did, NaN when both did). */
  differences: number[];
  /** The paired t interval of other − base when every run finished; else null. */
  interval: DifferenceInterval | null;
  /** The outcome under the stated rule (see {@linkcode compareLosses}). */
  verdict: Verdict;
  /** How many seeds of each side diverged, in words; null when none did. */
  divergence: string | null;
}

/** The sentence every divergence-aware rule ends with. */
export const DIVERGENCE_RULE = "a run stopped by a non-finite loss counts as an infinite loss: when runs diverged, " +
  "the claim is reproduced if every seed's difference is infinite in the claimed direction, not reproduced if every " +
  "one is infinite the other way, and otherwise inconclusive (mixed divergence)";

// The sentence verdict() writes for `rule` on a paired interval of n seeds, whatever the numbers.
function ruleSentence(rule: Rule, n: number): string {
  const placeholder = { estimate: 0, low: NaN, high: NaN, level: 0.95, n, method: "paired t", nullValue: 0 };
  return verdict(placeholder, rule).rule;
}

/**
 * The paired difference other − base of two configurations' final validation losses across shared seeds
 * (`base[i]` and `other[i]` share seed i), decided by `verdict` from lib/stats under `rule` when every run finished.
 * A diverged run's loss is +∞ ({@linkcode AblationRuns.losses}); then no t interval exists, and the rule's
 * divergence clause ({@linkcode DIVERGENCE_RULE}) decides: every seed infinite in the claimed direction (other
 * diverged, base finished, for "greater") is reproduced, every seed infinite the other way is not reproduced
 * ("opposite effect"; "confident difference" for a two-sided rule), any other mix is inconclusive ("mixed
 * divergence"), and fewer seeds than `rule.minN` (default 3) is inconclusive ("underpowered").
 *
 * Any number is accepted per seed, so derived per-seed contrasts (differences of differences) go through the same
 * rule: +∞ − a finite value stays +∞, ∞ − ∞ is NaN (undetermined).
 *
 * @example
 * ```ts
 * import { compareLosses } from "./ablation_results.ts";
 * // Paired differences 0.2, 0.3, 0.1: mean 0.2, s = 0.1, t(0.975, 2) = 4.302653: [−0.0484, 0.4484].
 * const c = compareLosses([2, 2, 2], [2.2, 2.3, 2.1], { direction: "greater", margin: 0.01 });
 * console.log(c.interval?.low.toFixed(4), c.verdict.outcome, c.verdict.reason); // -0.0484 inconclusive within noise
 * const collapse = compareLosses([2, 2, 2], [Infinity, Infinity, Infinity], { direction: "greater" });
 * console.log(collapse.verdict.outcome, collapse.divergence); // reproduced 3 of 3 seeds diverged in the compared arm, 0 of 3 in the reference
 * ```
 */
export function compareLosses(base: readonly number[], other: readonly number[], rule: Rule): LossComparison {
  for (const [name, xs] of [["base", base], ["other", other]] as const) {
    if (!Array.isArray(xs) || xs.length === 0 || xs.some((x) => typeof x !== "number")) {
      throw new TypeError(`compareLosses: ${name} must be a non-empty array of losses, one per seed`);
    }
  }
  if (base.length !== other.length) {
    throw new RangeError(
      `compareLosses: base and other must have one loss per shared seed, got ${base.length} and ${other.length}`,
    );
  }
  const n = base.length;
  const sentence = `${ruleSentence(rule, n)}; ${DIVERGENCE_RULE}`;
  const differences = base.map((b, i) => other[i] - b);
  if (differences.every(Number.isFinite)) {
    const interval = differenceInterval(other, base, { paired: true });
    return { differences, interval, verdict: { ...verdict(interval, rule), rule: sentence }, divergence: null };
  }
  const count = (xs: readonly number[]) => xs.filter((x) => !Number.isFinite(x)).length;
  const divergence = `${count(other)} of ${n} seeds diverged in the compared arm, ${
    count(base)
  } of ${n} in the reference`;
  const result = (v: Verdict): LossComparison => ({ differences, interval: null, verdict: v, divergence });
  if (n < (rule.minN ?? 3)) return result(inconclusiveBecause("underpowered", sentence));
  const claimed = rule.direction === "less" ? -Infinity : Infinity;
  if (rule.direction !== "two-sided" && differences.every((d) => d === claimed)) {
    return result(exactVerdict(true, sentence));
  }
  if (
    differences.every((d) => d === -claimed) ||
    (rule.direction === "two-sided" && differences.every((d) => !Number.isFinite(d) && !Number.isNaN(d)))
  ) {
    const reason = rule.direction === "two-sided" ? "confident difference" : "opposite effect";
    return result({ ...exactVerdict(false, sentence), reason });
  }
  return result(inconclusiveBecause("mixed divergence", sentence));
}

/**
 * A comparison in one line for a claim's `measured` text or a table: the paired interval of the loss difference in
 * nats with the perplexity ratio it implies (e^Δ), or the per-seed differences when runs diverged.
 *
 * @example
 * ```ts
 * import { compareLosses, describeComparison } from "./ablation_results.ts";
 * console.log(describeComparison(compareLosses([2, 2, 2], [2.2, 2.3, 2.1], { direction: "greater" })));
 * // Δ loss (nats) 0.200 [-0.0484, 0.448] (95% paired t, n = 3); PPL ×1.22 [×0.953, ×1.57]
 * console.log(describeComparison(compareLosses([2, 2, 2], [Infinity, 2.1, 2.2], { direction: "greater" })));
 * // Δ loss per seed ∞, 0.100, 0.200 nats (1 of 3 seeds diverged in the compared arm, 0 of 3 in the reference)
 * ```
 */
export function describeComparison(comparison: LossComparison): string {
  const { interval, differences, divergence } = comparison;
  if (interval !== null) {
    const ratio = Number.isNaN(interval.low)
      ? `PPL ×${fmt(Math.exp(interval.estimate))}`
      : `PPL ×${fmt(Math.exp(interval.estimate))} [×${fmt(Math.exp(interval.low))}, ×${fmt(Math.exp(interval.high))}]`;
    return `Δ loss (nats) ${formatInterval(interval)}; ${ratio}`;
  }
  return `Δ loss per seed ${differences.map((d) => fmt(d)).join(", ")} nats (${divergence})`;
}

/**
 * A claim this setting can test only one way: a confident effect in either direction (reproduced, or not
 * reproduced as the opposite effect) stands, but a confident absence or an interval within noise becomes
 * inconclusive, "not comparable", because the setting (`why`, e.g. "at n = 128 block 128 is the whole context")
 * would hide an effect of the paper's size; "underpowered" stays. The rule says so; the interval is kept.
 *
 * @example
 * ```ts
 * import { contextLimited } from "./ablation_results.ts";
 * import { tInterval, verdict } from "../stats/mod.ts";
 * const absent = verdict(tInterval([0.001, 0.002, 0.0015]), { direction: "greater", margin: 0.01 });
 * const v = contextLimited(absent, "at n = 128 all-Diag crosses only one block boundary");
 * console.log(absent.reason, "→", v.outcome, v.reason, v.interval !== undefined); // confident absence → inconclusive not comparable true
 * ```
 */
export function contextLimited(v: Verdict, why: string): Verdict {
  if (typeof why !== "string" || why.trim() === "") {
    throw new TypeError("contextLimited: why must say what in the setting limits the test");
  }
  const rule = `${v.rule}; ${why}, so only a confident effect in either direction counts: a confident absence or ` +
    `an interval within noise is inconclusive (not comparable)`;
  const decisive = v.outcome === "reproduced" || (v.outcome === "not reproduced" && v.reason === "opposite effect") ||
    v.reason === "underpowered";
  if (decisive) return { ...v, rule };
  return { ...inconclusiveBecause("not comparable", rule), ...(v.interval ? { interval: v.interval } : {}) };
}

/**
 * The fewest seeds (pairs) at which a paired t interval with the same spread would clear the rule's nearest
 * decision threshold, assuming the estimate stays where it is: the smallest n ≥ 2 with
 * t_{(1+level)/2, n−1} · sd/√n < |estimate − T| (T = null ± margin; for a two-sided rule the nearer band edge).
 * null when the estimate sits on a threshold, the spread is unknown, or it takes more than `max` (default 1000).
 *
 * @example
 * ```ts
 * import { seedsToSettle } from "./ablation_results.ts";
 * // sd 1, distance 1: t(0.975, 5)/√6 = 1.0496 > 1, t(0.975, 6)/√7 = 0.9249 < 1, so 7 seeds.
 * const iv = { estimate: 1.5, se: 1 / Math.sqrt(3), n: 3, level: 0.95 };
 * console.log(seedsToSettle(iv, { direction: "greater", margin: 0.5 })); // 7
 * ```
 */
export function seedsToSettle(
  interval: { estimate: number; se: number; n: number; level: number },
  rule: Rule,
  options: { max?: number } = {},
): number | null {
  const { estimate, se, n, level } = interval;
  const max = options.max ?? 1000;
  const sd = se * Math.sqrt(n);
  const nullValue = rule.null ?? 0, margin = rule.margin ?? 0;
  const thresholds = rule.direction === "greater"
    ? [nullValue + margin]
    : rule.direction === "less"
    ? [nullValue - margin]
    : [nullValue - margin, nullValue + margin];
  const distance = Math.min(...thresholds.map((t) => Math.abs(estimate - t)));
  if (!Number.isFinite(sd) || !(distance > 0)) return null;
  if (sd === 0) return Math.max(2, n);
  for (let k = 2; k <= max; k++) {
    if (tQuantile((1 + level) / 2, k - 1) * sd / Math.sqrt(k) < distance) return k;
  }
  return null;
}

/** What {@linkcode diagBlockTimers} returns. */
export interface DiagTimers {
  /** `block<B>` → forward + backward of DiagAttention with block B (gradients of q, k, v), for `interleavedTimes`. */
  fns: Record<string, () => tf.Tensor[]>;
  /** Matmul FLOPs of each, from lib/bench's `flopCount` ("diag": 2·bh·N·B·(dk + dv) forward). */
  flops: Record<string, FlopCount>;
  /** Frees q, k, v and the cotangent. */
  dispose(): void;
}

/** Options of {@linkcode diagBlockTimers}. */
export interface DiagTimerOptions {
  /** Sequence length. */
  n: number;
  /** Default 1. */
  batch?: number;
  /** Default 8. */
  heads?: number;
  /** Query/key/value size per head; default 64. */
  dk?: number;
  /** Default true. */
  causal?: boolean;
  /** Seed of q, k, v and the cotangent; default 0. */
  seed?: number;
}

/**
 * DiagAttention (softmax inside the block, as in T2) forward + backward for each block size, on one seeded input
 * of `options.n` tokens, ready to time with `interleavedTimes` from lib/timing; with each one's FLOP count.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { diagBlockTimers } from "./ablation_results.ts";
 * const timers = diagBlockTimers([16, 128], { n: 256, heads: 2, dk: 8 });
 * const grads = timers.fns.block16();
 * console.log(grads.map((g) => g.shape.join("×")), timers.flops.block128.fwd / timers.flops.block16.fwd); // ["1×2×256×8", "1×2×256×8", "1×2×256×8"] 8
 * tf.dispose(grads);
 * timers.dispose();
 * ```
 */
export function diagBlockTimers(blockSizes: readonly number[], options: DiagTimerOptions): DiagTimers {
  if (!Array.isArray(blockSizes) || blockSizes.length === 0) {
    throw new TypeError("diagBlockTimers: blockSizes must be a non-empty array of block sizes, e.g. [16, 32, 64, 128]");
  }
  for (const b of blockSizes) {
    if (typeof b !== "number" || !Number.isInteger(b) || b < 1) {
      throw new RangeError(`diagBlockTimers: every block size must be an integer ≥ 1, got ${b}`);
    }
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError("diagBlockTimers: options must be an object { n, batch?, heads?, dk?, causal?, seed? }");
  }
  const { n, batch = 1, heads = 8, dk = 64, causal = true, seed = 0 } = options;
  const flops = Object.fromEntries(
    blockSizes.map((b) => [`block${b}`, flopCount("diag", { batch, heads, n, dk, causal, options: { blockSize: b } })]),
  );
  const shape: [number, number, number, number] = [batch, heads, n, dk];
  const q = randomNormal<tf.Tensor4D>(shape, { seed }); // [b, h, n, dk]
  const k = randomNormal<tf.Tensor4D>(shape, { seed: seed + 1 }); // [b, h, n, dk]
  const v = randomNormal<tf.Tensor4D>(shape, { seed: seed + 2 }); // [b, h, n, dk]
  const dy = randomNormal<tf.Tensor4D>(shape, { seed: seed + 3 }); // [b, h, n, dk]
  const fns = Object.fromEntries(blockSizes.map((blockSize) => {
    const o = { inner: "softmax" as const, blockSize, causal };
    const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      variants.diag.attend({ q: a as tf.Tensor4D, k: b as tf.Tensor4D, v: c as tf.Tensor4D }, o)
    );
    return [`block${blockSize}`, () => grads([q, k, v], dy)];
  }));
  return { fns, flops, dispose: () => tf.dispose([q, k, v, dy]) };
}
