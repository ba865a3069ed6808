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

/** Throws unless `options` is undefined or a plain object whose keys are all in `valid`; returns it as a record. */
export function checkKeys(owner: string, options: unknown, valid: readonly string[]): Record<string, unknown> {
  if (options !== undefined && (options === null || typeof options !== "object" || Array.isArray(options))) {
    throw new Error(`${owner}: options must be an object, got ${describe(options)}`);
  }
  const given = (options ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!valid.includes(key)) {
      throw new Error(`${owner}: unknown option "${key}"; valid options are ${valid.join(", ")}`);
    }
  }
  return given;
}
