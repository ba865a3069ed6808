/**
 * Cost of one attention layer against the sequence length, for fitting exponents with confidence intervals
 * (notebook 07): every variant at every length, forward and forward + backward, timed in interleaved rounds so
 * that each round sees the same machine load at every length and variant, and peak memory from one profiled
 * warm-up run of each. A variant stops growing n once a run is predicted (or found) to exceed a time cap.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { type FlopCount, setFiniteChecks, type VariantName, variants } from "../attention/mod.ts";
import { randomNormal } from "../random.ts";
import { interleavedTimesAsync } from "../timing.ts";
import { extrapolatePowerLaw } from "./fit.ts";
import { flopCount } from "./flops.ts";
import { positiveInteger } from "../_options.ts";

/** One configuration to time: a label, a registered variant and its options (causal is set from the options). */
export interface ScalingSpec {
  name: string;
  variant: VariantName;
  options?: Record<string, unknown>;
  /** The lengths to run it at; default all of {@linkcode ScalingOptions.lengths}. */
  lengths?: readonly number[];
}

/** Options of {@linkcode attentionScaling}. */
export interface ScalingOptions {
  /** Sequence lengths, run in increasing order per spec. */
  lengths: readonly number[];
  /** Default 1. */
  batch?: number;
  /** Default 1. */
  heads?: number;
  /** Query/key/value size per head. Default 64. */
  dk?: number;
  /** Default true. */
  causal?: boolean;
  /** Interleaved rounds. Default 5. */
  rounds?: number;
  /** A length whose forward + backward run is predicted (or found, in its warm-up) to take longer is not timed. Default Infinity. */
  maxRunMs?: number;
  /**
   * A timing repeats a short run until about this long: runs per timing = clamp(round(targetMs / warm-up ms), 1, 16),
   * and its time is their mean (less timer and scheduling noise on short runs). Default 0 (one run per timing).
   */
  targetMs?: number;
  /** Seed of q, k, v and the cotangent. Default 0. */
  seed?: number;
  /** Receives "name@n" before each warm-up, and (round, "name@n:fwd" or "name@n:fwdBwd") before each timing. */
  onWarmup?: (label: string) => void;
  onTime?: (round: number, label: string) => void;
}

/** One (spec, length) of {@linkcode attentionScaling}. */
export interface ScalingRow {
  name: string;
  variant: VariantName;
  n: number;
  /** "timed", or "over time cap" (then not timed; `note` says why). */
  status: "timed" | "over time cap";
  note: string;
  /** Runs per timing of the forward and of the forward + backward (their mean is the round's time); 0 unless timed. */
  runsPerTiming: { fwd: number; fwdBwd: number };
  /** Forward milliseconds, one per round; empty unless timed. */
  fwdMs: number[];
  /** Forward + backward (gradients of q, k, v) milliseconds, one per round. */
  fwdBwdMs: number[];
  /** Peak tensor bytes above the inputs during the forward and the forward + backward warm-up (tf.profile). */
  peakBytesFwd: number | null;
  peakBytesFwdBwd: number | null;
  /** Matmul FLOPs (lib/bench/flops.ts). */
  flops: FlopCount;
}

/**
 * `fn` run `runs` times per call: every output but the last disposed unread, the last returned (the timer reads it).
 * Reading the last output alone times every run: a synchronous backend computes each run before the next starts,
 * and a GPU backend runs its queue in order, so the last output is ready only after the earlier ones.
 */
function repeated(fn: () => tf.TensorContainer, runs: number): () => tf.TensorContainer {
  if (runs === 1) return fn;
  return () => {
    for (let i = 1; i < runs; i++) tf.dispose(fn());
    return fn();
  };
}

async function profiled(fn: () => tf.TensorContainer): Promise<{ ms: number; bytes: number }> {
  const before = tf.memory().numBytes;
  const start = performance.now();
  const info = await tf.profile(async () => {
    const out = fn();
    await Promise.all(([out].flat() as tf.Tensor[]).map((t) => t.data()));
    return out;
  });
  const ms = performance.now() - start;
  tf.dispose(info.result);
  return { ms, bytes: Math.max(0, info.peakBytes - before) };
}

/**
 * Times `variant.attend()` forward and forward + backward for every spec at every length, on seeded q, k, v of
 * shape [batch, heads, n, dk], in interleaved rounds (`interleavedTimesAsync`: every read awaited; a run shorter
 * than `targetMs` is repeated within its timing and averaged), after one profiled warm-up of each that gives its
 * peak memory. Lengths run in increasing order per spec; once a spec's forward + backward is predicted from its shorter lengths (`extrapolatePowerLaw`), or found in its warm-up, to exceed
 * `maxRunMs`, that length and the longer ones are recorded "over time cap" and not timed. The finite checks of
 * the attention layers are off while timing. Leaves no tensors behind. Per-round times of one spec at several
 * lengths are paired by round: `exponentInterval` fits an exponent per round.
 *
 * @example
 * ```ts
 * import { attentionScaling } from "./scaling.ts";
 * const rows = await attentionScaling([{ name: "linear", variant: "linear" }, { name: "softmax", variant: "softmax" }], {
 *   lengths: [32, 64], dk: 8, rounds: 3,
 * });
 * console.log(rows.map((r) => `${r.name}@${r.n}: ${r.fwdMs.length} rounds, ${r.peakBytesFwdBwd! > 0}`));
 * // ["linear@32: 3 rounds, true", "linear@64: 3 rounds, true", "softmax@32: 3 rounds, true", "softmax@64: 3 rounds, true"]
 * ```
 */
export async function attentionScaling(
  specs: readonly ScalingSpec[],
  options: ScalingOptions,
): Promise<ScalingRow[]> {
  const owner = "attentionScaling";
  if (options === null || typeof options !== "object") {
    throw new TypeError(`${owner}: options must be { lengths, ... }`);
  }
  const known = [
    "lengths",
    "batch",
    "heads",
    "dk",
    "causal",
    "rounds",
    "maxRunMs",
    "targetMs",
    "seed",
    "onWarmup",
    "onTime",
  ];
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new TypeError(`${owner}: unknown option "${key}"; expected ${known.join(", ")}`);
  }
  if (!Array.isArray(specs) || specs.length === 0) {
    throw new TypeError(`${owner}: specs must be a non-empty array of { name, variant, options?, lengths? }`);
  }
  if (!Array.isArray(options.lengths) || options.lengths.length === 0) {
    throw new TypeError(`${owner}: options.lengths must be a non-empty array of sequence lengths`);
  }
  const batch = positiveInteger(owner, "options.batch", options.batch ?? 1);
  const heads = positiveInteger(owner, "options.heads", options.heads ?? 1);
  const dk = positiveInteger(owner, "options.dk", options.dk ?? 64);
  const rounds = positiveInteger(owner, "options.rounds", options.rounds ?? 5);
  const seed = options.seed ?? 0;
  const causal = options.causal ?? true;
  if (typeof causal !== "boolean") throw new TypeError(`${owner}: options.causal must be a boolean, got ${causal}`);
  const maxRunMs = options.maxRunMs ?? Infinity;
  if (typeof maxRunMs !== "number" || !(maxRunMs > 0)) {
    throw new RangeError(`${owner}: options.maxRunMs must be a number > 0, got ${maxRunMs}`);
  }
  const targetMs = options.targetMs ?? 0;
  if (typeof targetMs !== "number" || !(targetMs >= 0) || !Number.isFinite(targetMs)) {
    throw new RangeError(`${owner}: options.targetMs must be a finite number >= 0, got ${targetMs}`);
  }
  const runsFor = (ms: number) => Math.min(16, Math.max(1, Math.round(targetMs / Math.max(ms, 1e-3))));
  const names = new Set<string>();
  const plans = (specs as readonly ScalingSpec[]).map((spec: ScalingSpec, i: number) => {
    if (spec === null || typeof spec !== "object" || typeof spec.name !== "string" || spec.name === "") {
      throw new TypeError(`${owner}: specs[${i}] must be { name, variant, options?, lengths? } with a non-empty name`);
    }
    if (names.has(spec.name)) throw new RangeError(`${owner}: specs[${i}].name "${spec.name}" is used twice`);
    names.add(spec.name);
    if (!(spec.variant in variants)) {
      throw new RangeError(
        `${owner}: specs[${i}].variant must be one of ${Object.keys(variants).join(", ")}, got ${spec.variant}`,
      );
    }
    const lengths = (spec.lengths ?? options.lengths).map((n: number) =>
      positiveInteger(owner, `lengths of specs[${i}]`, n)
    );
    return { spec, lengths: [...new Set(lengths)].sort((a, b) => a - b) };
  });
  const inputs = new Map<number, tf.Tensor4D[]>();
  const inputsAt = (n: number) => {
    if (!inputs.has(n)) {
      inputs.set(n, [0, 1, 2, 3].map((k) => randomNormal<tf.Tensor4D>([batch, heads, n, dk], { seed: seed + k }))); // q, k, v, dy: [b, h, n, dk]
    }
    return inputs.get(n)!;
  };
  const rows: ScalingRow[] = [];
  const fns: Record<string, () => tf.TensorContainer> = {};
  const finiteBefore = setFiniteChecks(false); // timed calls read nothing back; restored below
  try {
    for (const { spec, lengths } of plans) {
      const variantOptions = { ...(spec.options ?? {}), causal };
      const variant = variants[spec.variant] as unknown as { attend(qkv: object, o: object): tf.Tensor4D };
      const gradient = tf.grads((q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) =>
        variant.attend({ q, k, v }, variantOptions)
      );
      const measured: { x: number; y: number }[] = [];
      let why = "";
      for (const n of lengths) {
        const flops = flopCount(spec.variant, { batch, heads, n, dk, causal, options: variantOptions });
        const row: ScalingRow = {
          name: spec.name,
          variant: spec.variant,
          n,
          status: "timed",
          note: "",
          fwdMs: [],
          fwdBwdMs: [],
          peakBytesFwd: null,
          peakBytesFwdBwd: null,
          runsPerTiming: { fwd: 0, fwdBwd: 0 },
          flops,
        };
        rows.push(row);
        const predicted = extrapolatePowerLaw(measured, n);
        if (why === "" && predicted > maxRunMs) {
          why = `forward + backward predicted ≈ ${(predicted / 1000).toFixed(1)} s > ${(maxRunMs / 1000).toFixed(1)} s`;
        }
        if (why !== "") {
          [row.status, row.note] = ["over time cap", why];
          continue;
        }
        const [q, k, v, dy] = inputsAt(n);
        const forward = () => variant.attend({ q, k, v }, variantOptions);
        const forwardBackward = () => gradient([q, k, v], dy);
        options.onWarmup?.(`${spec.name}@${n}`);
        const warmFwd = await profiled(forward);
        row.peakBytesFwd = warmFwd.bytes;
        const warm = await profiled(forwardBackward);
        row.peakBytesFwdBwd = warm.bytes;
        measured.push({ x: n, y: warm.ms });
        if (warm.ms > maxRunMs) {
          why = `forward + backward warm-up took ${(warm.ms / 1000).toFixed(1)} s > ${(maxRunMs / 1000).toFixed(1)} s`;
          [row.status, row.note] = ["over time cap", why];
          continue;
        }
        row.runsPerTiming = { fwd: runsFor(warmFwd.ms), fwdBwd: runsFor(warm.ms) };
        fns[`${spec.name}@${n}:fwd`] = repeated(forward, row.runsPerTiming.fwd);
        fns[`${spec.name}@${n}:fwdBwd`] = repeated(forwardBackward, row.runsPerTiming.fwdBwd);
      }
    }
    const times: Record<string, number[]> = Object.keys(fns).length === 0
      ? {}
      : await interleavedTimesAsync(fns, { rounds, repeats: 1, warmup: 0, onTime: options.onTime });
    for (const row of rows) {
      row.fwdMs = (times[`${row.name}@${row.n}:fwd`] ?? []).map((ms) => ms / row.runsPerTiming.fwd);
      row.fwdBwdMs = (times[`${row.name}@${row.n}:fwdBwd`] ?? []).map((ms) => ms / row.runsPerTiming.fwdBwd);
    }
    return rows;
  } finally {
    setFiniteChecks(finiteBefore);
    for (const ts of inputs.values()) tf.dispose(ts);
  }
}
