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
