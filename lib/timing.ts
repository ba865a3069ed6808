/**
 * Wall-clock timing for benchmarks and notebooks (never for tests: these machines are shared and noisy).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

/** Options for {@linkcode medianMs}. */
export interface MedianMsOptions {
  /** Timed runs; default 5. */
  repeats?: number;
  /** Untimed runs first (kernel set-up, caches); default 1. */
  warmup?: number;
}

/**
 * The median wall time in milliseconds of `fn`, which returns tensors: they are read back
 * (so asynchronous backends finish) and disposed after every run.
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
  for (const key of Object.keys(options)) {
    if (key !== "repeats" && key !== "warmup") {
      throw new Error(`medianMs: unknown option "${key}"; expected repeats or warmup`);
    }
  }
  const { repeats = 5, warmup = 1 } = options;
  if (!Number.isInteger(repeats) || repeats < 1) {
    throw new Error(`medianMs: repeats must be an integer >= 1, got ${repeats}`);
  }
  if (!Number.isInteger(warmup) || warmup < 0) {
    throw new Error(`medianMs: warmup must be an integer >= 0, got ${warmup}`);
  }
  const once = () => {
    const start = performance.now();
    const out = fn();
    for (const t of flatten(out)) t.dataSync();
    const ms = performance.now() - start;
    tf.dispose(out);
    return ms;
  };
  for (let i = 0; i < warmup; i++) once();
  const times = Array.from({ length: repeats }, once).sort((a, b) => a - b);
  const mid = Math.floor(repeats / 2);
  return repeats % 2 === 1 ? times[mid] : (times[mid - 1] + times[mid]) / 2;
}

function flatten(container: tf.TensorContainer): tf.Tensor[] {
  if (container instanceof tf.Tensor) return [container];
  if (Array.isArray(container)) return container.flatMap(flatten);
  if (container !== null && typeof container === "object") return Object.values(container).flatMap(flatten);
  return [];
}
