/**
 * Argument checks only the statistics modules share (internal; the rest is in lib/_options.ts). Every error names
 * the function, the argument and what was expected: `TypeError` for a wrong type,
 * `RangeError` for a value out of range.
 *
 * @module
 */

import { describeValue } from "../_options.ts";

/** A sample of numbers: a plain array or a typed array. */
export type Sample = readonly number[] | Float32Array | Float64Array;

/**
 * Checks that `xs` is a non-empty array (or typed array) of finite numbers and
 * returns it as a plain array; `name` is the argument's name in messages.
 *
 * @example
 * ```ts
 * import { checkSample } from "./_checks.ts";
 * console.log(checkSample("mean", "xs", [1, 2, 3])); // [1, 2, 3]
 * try {
 *   checkSample("mean", "xs", [1, NaN]);
 * } catch (err) {
 *   console.log((err as Error).message.startsWith("mean: xs[1] is NaN")); // true
 * }
 * ```
 */
export function checkSample(owner: string, name: string, xs: unknown, minLength = 1): number[] {
  const typed = xs instanceof Float32Array || xs instanceof Float64Array;
  if (!Array.isArray(xs) && !typed) {
    throw new TypeError(`${owner}: ${name} must be an array of numbers, got ${describeValue(xs)}`);
  }
  const values = xs as ArrayLike<unknown>;
  if (values.length < minLength) {
    throw new RangeError(
      `${owner}: ${name} has ${values.length} value${values.length === 1 ? "" : "s"}; ` +
        `it needs at least ${minLength}`,
    );
  }
  const out = new Array<number>(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (typeof x !== "number") {
      throw new TypeError(`${owner}: ${name}[${i}] must be a number, got ${describeValue(x)}`);
    }
    if (!Number.isFinite(x)) {
      throw new RangeError(
        `${owner}: ${name}[${i}] is ${x}; every value must be finite (drop or impute missing values first)`,
      );
    }
    out[i] = x;
  }
  return out;
}

/**
 * Checks a confidence level strictly between 0 and 1 and returns it.
 *
 * @example
 * ```ts
 * import { checkLevel } from "./_checks.ts";
 * console.log(checkLevel("tInterval", 0.9)); // 0.9
 * ```
 */
export function checkLevel(owner: string, level: unknown, name = "options.level"): number {
  if (typeof level !== "number") {
    throw new TypeError(`${owner}: ${name} must be a number such as 0.95, got ${describeValue(level)}`);
  }
  if (!(level > 0 && level < 1)) {
    throw new RangeError(`${owner}: ${name} must lie strictly between 0 and 1 (e.g. 0.95 for 95%), got ${level}`);
  }
  return level;
}
