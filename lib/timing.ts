/**
 * Wall-clock timing for benchmarks and notebooks (never for tests: these machines are shared and noisy):
 * the median of repeated runs, interleaved rounds of several computations, and the geometric mean of
 * repeated timings with its confidence interval.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { type Interval, tInterval } from "./stats/mod.ts";

/** Options for {@linkcode medianMs}. */
export interface MedianMsOptions {
  /** Timed runs; default 5. */
  repeats?: number;
  /** Untimed runs first (kernel set-up, caches); default 1. */
  warmup?: number;
}

/**
 * Waits until every tensor in `container` is computed, by reading one element of each with `await data()` (the first:
 * a [1, ..., 1] slice). Reading whole outputs would time a copy too, and on the blas backend an array read back is never
 * recycled (lib/blas/pool.ts), so every run would then fault in fresh pages for its outputs. Disposes nothing of
 * `container`.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { computed } from "./timing.ts";
 * const a = tf.ones([64, 64]);
 * const out = tf.matMul(a, a);
 * await computed([out, tf.scalar(1)]);
 * console.log(out.isDisposed, tf.memory().numTensors); // false 3
 * ```
 */
export async function computed(container: tf.TensorContainer): Promise<void> {
  const corners = flatten(container).map(cornerOf);
  try {
    await Promise.all(corners.map((t) => t.data()));
  } finally {
    tf.dispose(corners);
  }
}

/** {@linkcode computed}, reading synchronously (`dataSync()`), for the CPU backends. */
function computedSync(container: tf.TensorContainer): void {
  const corners = flatten(container).map(cornerOf);
  try {
    for (const t of corners) t.dataSync();
  } finally {
    tf.dispose(corners);
  }
}

/** The first element of t as a tensor of t's rank (an empty t: itself, read as nothing). */
function cornerOf(t: tf.Tensor): tf.Tensor {
  if (t.rank === 0 || t.size === 0) return tf.clone(t);
  return tf.slice(t, new Array(t.rank).fill(0), new Array(t.rank).fill(1));
}

/**
 * The median wall time in milliseconds of `fn`, which returns tensors: one element of each is read back
 * ({@linkcode computed}, so asynchronous backends finish) and they are disposed after every run.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { medianMs } from "./timing.ts";
 * const a = tf.ones([64, 64]);
 * const ms = medianMs(() => tf.matMul(a, a), { repeats: 3 });
 * console.log(ms >= 0); // true
 * ```
 */
export function medianMs(fn: () => tf.TensorContainer, options: MedianMsOptions = {}): number {
  const { repeats, warmup } = medianOptions("medianMs", options);
  const once = () => {
    const start = performance.now();
    const out = fn();
    computedSync(out);
    const ms = performance.now() - start;
    tf.dispose(out);
    return ms;
  };
  for (let i = 0; i < warmup; i++) once();
  return median(Array.from({ length: repeats }, once));
}

/**
 * {@linkcode medianMs} for a backend that cannot read synchronously (webgpu under Deno): one element of each run's
 * tensors is read back with `await data()` ({@linkcode computed}) before its clock stops. `fn` may be async (a training
 * step that awaits its own reads): its promise is awaited first.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { medianMsAsync } from "./timing.ts";
 * const a = tf.ones([64, 64]);
 * const ms = await medianMsAsync(() => tf.matMul(a, a), { repeats: 3 });
 * console.log(ms >= 0); // true
 * ```
 */
export async function medianMsAsync(
  fn: () => tf.TensorContainer | Promise<tf.TensorContainer>,
  options: MedianMsOptions = {},
): Promise<number> {
  return median(await timesOf("medianMsAsync", fn, options));
}

/**
 * Every timed run of {@linkcode medianMsAsync}, in order (the warm-up runs left out): for a caller that keeps the
 * runs, such as a benchmark that pairs them by round.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { timesMsAsync } from "./timing.ts";
 * const a = tf.ones([64, 64]);
 * const times = await timesMsAsync(() => tf.matMul(a, a), { repeats: 3, warmup: 1 });
 * console.log(times.length, times.every((ms) => ms >= 0), tf.memory().numTensors); // 3 true 1
 * ```
 */
export function timesMsAsync(
  fn: () => tf.TensorContainer | Promise<tf.TensorContainer>,
  options: MedianMsOptions = {},
): Promise<number[]> {
  return timesOf("timesMsAsync", fn, options);
}

async function timesOf(
  owner: string,
  fn: () => tf.TensorContainer | Promise<tf.TensorContainer>,
  options: MedianMsOptions,
): Promise<number[]> {
  const { repeats, warmup } = medianOptions(owner, options);
  const once = async () => {
    const start = performance.now();
    // An async fn (a training step that awaits its own reads) is done when its promise settles.
    const out = await fn();
    try {
      await computed(out);
    } finally {
      tf.dispose(out);
    }
    return performance.now() - start;
  };
  for (let i = 0; i < warmup; i++) await once();
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) times.push(await once());
  return times;
}

function medianOptions(owner: string, options: MedianMsOptions): Required<MedianMsOptions> {
  for (const key of Object.keys(options)) {
    if (key !== "repeats" && key !== "warmup") {
      throw new TypeError(`${owner}: unknown option "${key}"; expected repeats or warmup`);
    }
  }
  const { repeats = 5, warmup = 1 } = options;
  if (!Number.isInteger(repeats) || repeats < 1) {
    throw new RangeError(`${owner}: repeats must be an integer >= 1, got ${repeats}`);
  }
  if (!Number.isInteger(warmup) || warmup < 0) {
    throw new RangeError(`${owner}: warmup must be an integer >= 0, got ${warmup}`);
  }
  return { repeats, warmup };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Options for {@linkcode interleavedTimes}. */
export interface InterleavedOptions {
  /** Rounds; each round times every function once. Default 7. */
  rounds?: number;
  /** Timed runs per function per round, whose median is the round's time. Default 3. */
  repeats?: number;
  /** Untimed runs of every function before the first round. Default 1. */
  warmup?: number;
  /** Receives (round, name) before each timing, e.g. for a progress line. */
  onTime?: (round: number, name: string) => void;
}

/**
 * Times several computations in interleaved rounds: each round times every function
 * ({@linkcode medianMs} of `repeats` runs), in an order rotated from round to round, so a change
 * in the machine's load hits every function alike instead of whichever ran last. Returns each
 * function's per-round times in milliseconds, paired by round: feed two of them to `ratioInterval`
 * from lib/stats with `paired: true` for a ratio with its confidence interval.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { interleavedTimes } from "./timing.ts";
 * const a = tf.ones([64, 64]);
 * const times = interleavedTimes({ small: () => tf.matMul(a, a), big: () => tf.matMul(tf.tile(a, [4, 1]), a) }, {
 *   rounds: 3, repeats: 1,
 * });
 * console.log(times.small.length, times.big.length); // 3 3
 * a.dispose();
 * ```
 */
export function interleavedTimes(
  fns: Record<string, () => tf.TensorContainer>,
  options: InterleavedOptions = {},
): Record<string, number[]> {
  const { names, order, repeats, onTime } = interleavedPlan("interleavedTimes", fns, options);
  const times: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (const { round, name, timed } of order) {
    if (timed) onTime?.(round, name);
    const ms = medianMs(fns[name], { repeats: timed ? repeats : 1, warmup: 0 });
    if (timed) times[name].push(ms);
  }
  return times;
}

/**
 * {@linkcode interleavedTimes} with every run's tensors waited for by `await data()` ({@linkcode medianMsAsync}):
 * the same warm-up, rounds and rotated order, for a backend that cannot or should not read synchronously (webgpu).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { interleavedTimesAsync } from "./timing.ts";
 * const a = tf.ones([64, 64]);
 * const order: string[] = [];
 * const times = await interleavedTimesAsync({ x: () => tf.matMul(a, a), y: () => tf.add(a, a) }, {
 *   rounds: 2, repeats: 1, onTime: (round, name) => order.push(`${round}:${name}`),
 * });
 * console.log(times.x.length, order); // 2 ["0:x", "0:y", "1:y", "1:x"]
 * a.dispose();
 * ```
 */
export async function interleavedTimesAsync(
  fns: Record<string, () => tf.TensorContainer | Promise<tf.TensorContainer>>,
  options: InterleavedOptions = {},
): Promise<Record<string, number[]>> {
  const { names, order, repeats, onTime } = interleavedPlan("interleavedTimesAsync", fns, options);
  const times: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (const { round, name, timed } of order) {
    if (timed) onTime?.(round, name);
    const ms = await medianMsAsync(fns[name], { repeats: timed ? repeats : 1, warmup: 0 });
    if (timed) times[name].push(ms);
  }
  return times;
}

/** One timing of an interleaved schedule: a warm-up run (`timed` false, round -1) or a round's timing. */
interface ScheduledTiming {
  round: number;
  name: string;
  timed: boolean;
}

/**
 * The checked options of {@linkcode interleavedTimes} and its schedule: `warmup` untimed runs of every function in
 * the given order, then per round every function once, the order rotated by one each round.
 */
function interleavedPlan(
  owner: string,
  fns: Record<string, () => unknown>,
  options: InterleavedOptions,
): { names: string[]; order: ScheduledTiming[]; repeats: number; onTime?: InterleavedOptions["onTime"] } {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`${owner}: options must be { rounds?, repeats?, warmup?, onTime? }, got ${String(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!["rounds", "repeats", "warmup", "onTime"].includes(key)) {
      throw new TypeError(`${owner}: unknown option "${key}"; expected rounds, repeats, warmup or onTime`);
    }
  }
  const { rounds = 7, repeats = 3, warmup = 1, onTime } = options;
  if (!Number.isInteger(rounds) || rounds < 1) {
    throw new RangeError(`${owner}: rounds must be an integer >= 1, got ${rounds}`);
  }
  if (!Number.isInteger(repeats) || repeats < 1) {
    throw new RangeError(`${owner}: repeats must be an integer >= 1, got ${repeats}`);
  }
  if (fns === null || typeof fns !== "object") {
    throw new TypeError(`${owner}: fns must be an object of named functions returning tensors, got ${String(fns)}`);
  }
  const names = Object.keys(fns);
  if (names.length === 0) throw new RangeError(`${owner}: give at least one function to time`);
  for (const name of names) {
    if (typeof fns[name] !== "function") {
      throw new TypeError(`${owner}: fns.${name} must be a function returning tensors`);
    }
  }
  if (!Number.isInteger(warmup) || warmup < 0) {
    throw new RangeError(`${owner}: warmup must be an integer >= 0, got ${warmup}`);
  }
  if (onTime !== undefined && typeof onTime !== "function") {
    throw new TypeError(`${owner}: onTime must be a function (round, name) => void, got ${typeof onTime}`);
  }
  const order: ScheduledTiming[] = [];
  for (let w = 0; w < warmup; w++) for (const name of names) order.push({ round: -1, name, timed: false });
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < names.length; k++) order.push({ round: r, name: names[(r + k) % names.length], timed: true });
  }
  return { names, order, repeats, ...(onTime === undefined ? {} : { onTime }) };
}

/**
 * The geometric mean of repeated timings (e.g. one per interleaved round) with its Student-t interval,
 * computed on log times and mapped back: timings are skewed (a run slowed by the machine's load is far above
 * the rest, one cannot be far below), and both bounds stay positive, as a log axis needs. Fewer than two
 * timings give `NaN` bounds with a `reason`, as `tInterval` does.
 *
 * @example
 * ```ts
 * import { timeInterval } from "./timing.ts";
 * // log times 0, ln 2, ln 4: mean ln 2, so the geometric mean is 2; the interval is 2 ×/÷ a common factor.
 * const iv = timeInterval([1, 2, 4]);
 * console.log(iv.estimate.toFixed(3), (iv.high / iv.estimate).toFixed(3) === (iv.estimate / iv.low).toFixed(3)); // 2.000 true
 * ```
 */
export function timeInterval(ms: readonly number[], options: { level?: number } = {}): Interval {
  if (!Array.isArray(ms)) throw new TypeError(`timeInterval: ms must be an array of times, got ${typeof ms}`);
  ms.forEach((t, i) => {
    if (typeof t !== "number") throw new TypeError(`timeInterval: ms[${i}] must be a number, got ${typeof t}`);
    if (!(t > 0) || !Number.isFinite(t)) {
      throw new RangeError(`timeInterval: ms[${i}] must be a finite time > 0, got ${t}`);
    }
  });
  const log = tInterval(ms.map(Math.log), options);
  return {
    estimate: Math.exp(log.estimate),
    low: Math.exp(log.low),
    high: Math.exp(log.high),
    level: log.level,
    n: log.n,
    method: "geometric mean, log t",
    nullValue: 0,
    ...(log.reason === undefined ? {} : { reason: log.reason }),
  };
}

function flatten(container: tf.TensorContainer): tf.Tensor[] {
  if (container instanceof tf.Tensor) return [container];
  if (Array.isArray(container)) return container.flatMap(flatten);
  if (container !== null && typeof container === "object") return Object.values(container).flatMap(flatten);
  return [];
}
