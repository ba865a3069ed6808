/**
 * Argument checks shared by the diagnostics modules (internal).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

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
