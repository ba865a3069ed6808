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
import type { TransformerModel } from "../models/model.ts";
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
