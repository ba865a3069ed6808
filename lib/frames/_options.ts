/**
 * Checks only the loaders share: path options and display options (the rest is in lib/_options.ts).
 *
 * @module
 */

import { resolve } from "node:path";
import { checkInteger, describeValue, positiveInteger } from "../_options.ts";

/** Reads a folder or file option: `undefined` gives `fallback()`, else a non-empty string, resolved. */
export function pathOption(owner: string, key: string, value: unknown, fallback: () => string): string {
  if (value === undefined) return resolve(fallback());
  if (typeof value !== "string" || value === "") {
    throw new TypeError(
      `${owner}: options.${key} must be a non-empty path, got ${describeValue(value, { typed: true })}`,
    );
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
    throw new TypeError(
      `${owner}: options.digits must be a number from 1 to 21, got ${describeValue(digits, { typed: true })}`,
    );
  }
  return {
    digits: checkInteger(owner, "options.digits", digits, { min: 1, max: 21 }),
    maxRows: positiveInteger(owner, "options.maxRows", maxRows),
  };
}
