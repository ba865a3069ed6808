/**
 * Reading tensors back once, synchronously or asynchronously, through the same arithmetic: a {@linkcode ReadPlan}
 * says which tensors to build and what to compute from their values; {@linkcode readPlan} reads them with
 * `dataSync()` (cpu, wasm, blas) and {@linkcode readPlanAsync} with `await data()` (webgpu, where a synchronous read
 * stalls the GPU or, under Deno, throws). The tensors are flattened, cast to float32 and concatenated, so a plan costs
 * one read from the device whatever it asks for.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

/** What to read and what to make of it: the sync and async twins of a diagnostic share one plan. */
export interface ReadPlan<R> {
  /**
   * The tensors to read, in order; runs inside `tf.tidy` (its intermediates are disposed, the tensors passed in are
   * not). At least one.
   */
  build: () => tf.Tensor[];
  /** The result from the values of each built tensor (flat, float32, in `build`'s order). */
  finish: (values: Float32Array[]) => R;
}

/** The built tensors as one flat float32 tensor [Σ sizes], with each part's size. */
function pack(owner: string, build: () => tf.Tensor[]): { packed: tf.Tensor1D; sizes: number[] } {
  let sizes: number[] = [];
  const packed = tf.tidy(() => {
    const parts = build();
    if (!Array.isArray(parts) || parts.length === 0 || !parts.every((t) => t instanceof tf.Tensor)) {
      throw new TypeError(`${owner}: plan.build must return a non-empty array of tensors, got ${String(parts)}`);
    }
    sizes = parts.map((t) => t.size);
    return tf.concat(parts.map((t) => tf.reshape(tf.cast(t, "float32"), [-1]))) as tf.Tensor1D; // [Σ sizes]
  });
  return { packed, sizes };
}

/** `values` cut into consecutive views of the given sizes. */
function split(values: Float32Array, sizes: readonly number[]): Float32Array[] {
  let offset = 0;
  return sizes.map((size) => values.subarray(offset, offset += size));
}

function checkPlan(owner: string, plan: unknown): asserts plan is ReadPlan<unknown> {
  const p = plan as ReadPlan<unknown>;
  if (p === null || typeof p !== "object" || typeof p.build !== "function" || typeof p.finish !== "function") {
    throw new TypeError(`${owner}: plan must be { build: () => tensors, finish: (values) => result }`);
  }
}

/**
 * Runs a plan with one synchronous read (`dataSync`); leaves no tensors behind.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { readPlan } from "./read.ts";
 * const x = tf.tensor1d([3, -4]);
 * const norm = readPlan({ build: () => [tf.sum(tf.square(x)), x], finish: ([s, v]) => [Math.sqrt(s[0]), v.length] });
 * console.log(norm); // [5, 2]
 * x.dispose();
 * ```
 */
export function readPlan<R>(plan: ReadPlan<R>): R {
  checkPlan("readPlan", plan);
  const { packed, sizes } = pack("readPlan", plan.build);
  try {
    return plan.finish(split(packed.dataSync() as Float32Array, sizes));
  } finally {
    packed.dispose();
  }
}

/**
 * Runs a plan with one asynchronous read (`await data()`), the way a GPU backend wants it; leaves no tensors behind,
 * and the tensors the plan reads from must stay alive until it resolves.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { readPlanAsync } from "./read.ts";
 * const x = tf.tensor1d([3, -4]);
 * const norm = await readPlanAsync({ build: () => [tf.sum(tf.square(x))], finish: ([s]) => Math.sqrt(s[0]) });
 * console.log(norm); // 5
 * x.dispose();
 * ```
 */
export async function readPlanAsync<R>(plan: ReadPlan<R>): Promise<R> {
  checkPlan("readPlanAsync", plan);
  const { packed, sizes } = pack("readPlanAsync", plan.build);
  let values: Float32Array;
  try {
    values = await packed.data() as Float32Array;
  } finally {
    packed.dispose();
  }
  return plan.finish(split(values, sizes));
}
