/**
 * Argument checks shared by the diagnostics modules (internal).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { TransformerModel } from "../models/model.ts";

/** A short description of a value for error messages. */
export function describe(value: unknown): string {
  if (value instanceof tf.Tensor) return `a ${value.dtype} tensor of shape [${value.shape.join(", ")}]`;
  if (value instanceof Uint8Array) return `a Uint8Array of ${value.length} bytes`;
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return `"${value}"`;
  return String(value);
}

/**
 * Throws an Error naming `name` when `x` is a disposed tensor, which tfjs would meet deep inside a kernel with a raw
 * TypeError. Anything else passes (the caller checks types).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { checkNotDisposed } from "./_checks.ts";
 * const w = tf.zeros([2, 2]);
 * checkNotDisposed("demo", "weights", w);
 * w.dispose();
 * try {
 *   checkNotDisposed("demo", "weights", w);
 * } catch (err) {
 *   console.log((err as Error).message); // demo: weights was disposed; pass a live tensor
 * }
 * ```
 */
export function checkNotDisposed(owner: string, name: string, x: unknown): void {
  if (x instanceof tf.Tensor && x.isDisposed) throw new Error(`${owner}: ${name} was disposed; pass a live tensor`);
}

// A neighbourhood of at least this fraction holds at least the query itself, for every n and every query.
const MIN_RATIO = 1e-6;

/**
 * Checks the neighbourhood fractions of a locality curve: a non-empty array of 0 or numbers in [1e-6, 1] (TypeError for
 * a wrong type, RangeError for a value out of range). Returns a copy.
 *
 * @example
 * ```ts
 * import { checkRatios } from "./_checks.ts";
 * console.log(checkRatios("demo", [0, 0.5, 1])); // [0, 0.5, 1]
 * try {
 *   checkRatios("demo", [0.5, 2]);
 * } catch (e) {
 *   console.log((e as Error).name); // RangeError
 * }
 * ```
 */
export function checkRatios(owner: string, ratios: unknown): number[] {
  if (!Array.isArray(ratios) || ratios.length === 0) {
    throw new TypeError(
      `${owner}: option ratios must be a non-empty array of numbers in [0, 1], got ${describe(ratios)}`,
    );
  }
  ratios.forEach((x, r) => {
    if (typeof x !== "number" || !Number.isFinite(x) || x < 0 || x > 1 || (x > 0 && x < MIN_RATIO)) {
      const message = `${owner}: option ratios must hold 0 or numbers in [1e-6, 1], got ${describe(x)} at index ${r}`;
      throw typeof x === "number" ? new RangeError(message) : new TypeError(message);
    }
  });
  return [...ratios];
}

/**
 * Checks that `model` is a language model the attention diagnostics can read (TypeError otherwise).
 *
 * @example
 * ```ts
 * import { checkModel } from "./_checks.ts";
 * try {
 *   checkModel("demo", {});
 * } catch (e) {
 *   console.log((e as Error).name); // TypeError
 * }
 * ```
 */
export function checkModel(owner: string, model: unknown): TransformerModel {
  const m = model as TransformerModel;
  if (
    m === null || typeof m !== "object" || typeof m.attentionWeights !== "function" ||
    !Array.isArray(m.config?.attention)
  ) {
    throw new TypeError(
      `${owner}: model must be a TransformerModel (from createModel, trainedSharedLm or trainedMlmAblation), got ${
        describe(model)
      }`,
    );
  }
  return m;
}

/**
 * Throws unless `ids` is an int32 tf.Tensor2D [windows, n] holding at least one window of at least one token.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { checkIds } from "./_checks.ts";
 * const ids = tf.tensor2d([[1, 2]], [1, 2], "int32");
 * console.log(checkIds("demo", ids) === ids); // true
 * try {
 *   checkIds("demo", tf.zeros([0, 3], "int32"));
 * } catch (err) {
 *   console.log((err as Error).name); // RangeError
 * }
 * ids.dispose();
 * ```
 */
export function checkIds(owner: string, ids: unknown): tf.Tensor2D {
  checkNotDisposed(owner, "ids", ids);
  if (!(ids instanceof tf.Tensor) || ids.rank !== 2 || ids.dtype !== "int32") {
    throw new TypeError(
      `${owner}: ids must be an int32 tf.Tensor2D [windows, n], got ${describe(ids)}; ` +
        `build one with tf.tensor2d(windows.ids, [count, n], "int32")`,
    );
  }
  if (ids.shape[0] === 0 || ids.shape[1] === 0) {
    throw new RangeError(`${owner}: ids must hold at least one window of at least one token, got [${ids.shape}]`);
  }
  return ids as tf.Tensor2D;
}

/**
 * Walks the model's attention weights over `ids` in batches of at most `batchSize` windows, so that memory stays at
 * O(batchSize · n²) whatever the number of windows: `visit(weights, from)` gets one [size, h, n, n] tensor per layer for
 * windows from … from + size − 1, which are disposed when it returns (or throws).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "../models/model.ts";
 * import { forEachAttentionBatch } from "./_checks.ts";
 * const model = createModel({ attention: "vanilla", layers: 1, dModel: 8, heads: 2 }, { log: () => {} });
 * const ids = tf.tensor2d([[1, 2, 3], [4, 5, 6], [7, 8, 9]], [3, 3], "int32");
 * const seen: string[] = [];
 * forEachAttentionBatch(model, ids, { batchSize: 2, visit: (w, from) => seen.push(`${from}:[${w[0].shape}]`) });
 * console.log(seen.join(" ")); // 0:[2,2,3,3] 2:[1,2,3,3]
 * ids.dispose();
 * model.dispose();
 * ```
 */
export function forEachAttentionBatch(
  model: TransformerModel,
  ids: tf.Tensor2D,
  options: { batchSize: number; visit: (weights: tf.Tensor4D[], from: number) => void },
): void {
  for (const from of batchStarts(ids, options.batchSize)) {
    const batch = openBatch(model, ids, from, options.batchSize);
    try {
      options.visit(batch.weights, from);
    } finally {
      batch.dispose();
    }
  }
}

/**
 * {@linkcode forEachAttentionBatch} for a `visit` that awaits (reads the weights with `await data()`): each batch's
 * tensors are disposed once its visit has resolved (or rejected), and the next batch starts only then.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "../models/model.ts";
 * import { forEachAttentionBatchAsync } from "./_checks.ts";
 * const model = createModel({ attention: "vanilla", layers: 1, dModel: 8, heads: 2 }, { log: () => {} });
 * const ids = tf.tensor2d([[1, 2, 3], [4, 5, 6], [7, 8, 9]], [3, 3], "int32");
 * const sums: number[] = [];
 * await forEachAttentionBatchAsync(model, ids, {
 *   batchSize: 2,
 *   visit: async (w) => {
 *     const total = tf.sum(w[0]); // []: every softmax row sums to 1
 *     sums.push(Math.round((await total.data())[0]));
 *     total.dispose();
 *   },
 * });
 * console.log(sums); // [12, 6]
 * ids.dispose();
 * model.dispose();
 * ```
 */
export async function forEachAttentionBatchAsync(
  model: TransformerModel,
  ids: tf.Tensor2D,
  options: { batchSize: number; visit: (weights: tf.Tensor4D[], from: number) => void | Promise<void> },
): Promise<void> {
  for (const from of batchStarts(ids, options.batchSize)) {
    const batch = openBatch(model, ids, from, options.batchSize);
    try {
      await options.visit(batch.weights, from);
    } finally {
      batch.dispose();
    }
  }
}

/** The first window of each batch: 0, batchSize, 2 · batchSize, ... below the number of windows. */
function batchStarts(ids: tf.Tensor2D, batchSize: number): number[] {
  return Array.from({ length: Math.ceil(ids.shape[0] / batchSize) }, (_, k) => k * batchSize);
}

/** The attention weights of windows from … from + batchSize − 1 (at most), per layer [size, h, n, n], to dispose. */
function openBatch(
  model: TransformerModel,
  ids: tf.Tensor2D,
  from: number,
  batchSize: number,
): { weights: tf.Tensor4D[]; dispose: () => void } {
  const [count, n] = ids.shape;
  const size = Math.min(batchSize, count - from);
  const chunk = tf.slice(ids, [from, 0], [size, n]); // [size, n]
  try {
    const weights = model.attentionWeights(chunk); // per layer [size, h, n, n]
    return { weights, dispose: () => tf.dispose([chunk, ...weights]) };
  } catch (err) {
    chunk.dispose();
    throw err;
  }
}

/**
 * Throws a RangeError unless `shape` is square in its last two axes ([.., n, n], queries × keys) with no empty axis.
 *
 * @example
 * ```ts
 * import { checkShape } from "./_checks.ts";
 * checkShape("demo", [2, 3, 4, 4]);
 * try {
 *   checkShape("demo", [4, 3]);
 * } catch (err) {
 *   console.log((err as Error).name); // RangeError
 * }
 * ```
 */
export function checkShape(owner: string, shape: readonly number[]): void {
  const n = shape[shape.length - 1];
  if (shape[shape.length - 2] !== n) {
    throw new RangeError(
      `${owner}: weights must be square in its last two axes (queries × keys, [.., n, n]), got shape [${
        shape.join(", ")
      }]`,
    );
  }
  if (shape.reduce((a, b) => a * b, 1) === 0) {
    throw new RangeError(
      `${owner}: weights must hold at least one query row (n >= 1), got shape [${shape.join(", ")}]`,
    );
  }
}

/**
 * Checks weights already read back: `shape` is [n, n] or [batch, heads, n, n] of integers (TypeError otherwise),
 * square and non-empty ({@linkcode checkShape}), and `values` holds exactly its number of entries (RangeError).
 *
 * @example
 * ```ts
 * import { checkValues } from "./_checks.ts";
 * checkValues("demo", new Float32Array(4), [2, 2]);
 * try {
 *   checkValues("demo", [1, 2, 3], [2, 2]);
 * } catch (err) {
 *   console.log((err as Error).message); // demo: values holds 3 numbers, shape [2, 2] needs 4
 * }
 * ```
 */
export function checkValues(owner: string, values: unknown, shape: unknown): void {
  if (
    !Array.isArray(shape) || (shape.length !== 2 && shape.length !== 4) ||
    !shape.every((d) => Number.isInteger(d) && d >= 0)
  ) {
    throw new TypeError(`${owner}: shape must be [n, n] or [batch, heads, n, n] of integers, got ${describe(shape)}`);
  }
  checkShape(owner, shape);
  const v = values as ArrayLike<number>;
  if (v === null || typeof v !== "object" || typeof v.length !== "number") {
    throw new TypeError(`${owner}: values must be an array or typed array of weights, got ${describe(values)}`);
  }
  const size = shape.reduce((a: number, b: number) => a * b, 1);
  if (v.length !== size) {
    throw new RangeError(`${owner}: values holds ${v.length} numbers, shape [${shape.join(", ")}] needs ${size}`);
  }
}
