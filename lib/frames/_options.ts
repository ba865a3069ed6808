/**
 * Checks shared by the loaders: option objects, path options and display options.
 *
 * @module
 */

import { resolve } from "node:path";

/** Describes a value for an error message: its type, and the value itself when short. */
export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") {
    return `the string ${JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value)}`;
  }
  if (typeof value === "function") return "a function";
  if (typeof value === "object") return "an object";
  return `${typeof value} ${String(value)}`;
}

/**
 * Checks that `options` is `undefined` or a plain object whose keys are all in `valid`, and returns it
 * (`{}` for `undefined`). A TypeError names `owner`, the bad key and the valid ones.
 */
export function checkOptions(owner: string, options: unknown, valid: readonly string[]): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new TypeError(`${owner}: options must be an object like { ${valid[0]}: ... }, got ${describeValue(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!valid.includes(key)) {
      throw new TypeError(`${owner}: unknown option "${key}"; valid options are ${valid.join(", ")}`);
    }
  }
  return options as Record<string, unknown>;
}

/** Reads a folder or file option: `undefined` gives `fallback()`, else a non-empty string, resolved. */
export function pathOption(owner: string, key: string, value: unknown, fallback: () => string): string {
  if (value === undefined) return resolve(fallback());
  if (typeof value !== "string" || value === "") {
    throw new TypeError(`${owner}: options.${key} must be a non-empty path, got ${describeValue(value)}`);
  }
  return resolve(value);
}

/** Options for {@linkcode show}. */
export interface ShowOptions {
  /** Significant digits of non-integer numbers. Default 4. */
  digits?: number;
  /** Rows shown; the rest are counted in a line under the table. Default 50. */
  maxRows?: number;
}

/** The display options every loader accepts, as keys. */
export const SHOW_OPTION_KEYS: readonly string[] = ["digits", "maxRows"];

/** Checks display options, filling in the defaults; `owner` names the caller in errors. */
export function checkShowOptions(owner: string, options: ShowOptions): Required<ShowOptions> {
  const { digits = 4, maxRows = 50 } = options;
  if (typeof digits !== "number") {
    throw new TypeError(`${owner}: options.digits must be a number from 1 to 21, got ${describeValue(digits)}`);
  }
  if (!Number.isInteger(digits) || digits < 1 || digits > 21) {
    throw new RangeError(`${owner}: options.digits must be an integer from 1 to 21, got ${digits}`);
  }
  if (typeof maxRows !== "number") {
    throw new TypeError(`${owner}: options.maxRows must be a positive integer, got ${describeValue(maxRows)}`);
  }
  if (!Number.isInteger(maxRows) || maxRows < 1) {
    throw new RangeError(`${owner}: options.maxRows must be a positive integer, got ${maxRows}`);
  }
  return { digits, maxRows };
}
