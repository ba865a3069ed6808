/**
 * Rows of data to CSV, with deterministic number formatting.
 *
 * @module
 */

import { describeValue } from "../_options.ts";

/** A cell value that fits in one CSV field. */
export type Cell = string | number | boolean | bigint | Date | null | undefined;

/** One flat row: column name to cell value. */
export type Row = Record<string, Cell>;

/** Significant digits used for non-integer numbers unless told otherwise. */
export const DEFAULT_DIGITS = 6;

/**
 * Checks that `rows` is an array of flat objects and returns the column names
 * in first-seen key order. `what` names the argument in error messages.
 *
 * @example
 * ```ts
 * import { columnsOf } from "./csv.ts";
 * console.log(columnsOf([{ a: 1 }, { b: 2, a: 3 }], "rows")); // ["a", "b"]
 * ```
 */
export function columnsOf(rows: unknown, what: string): string[] {
  if (!Array.isArray(rows)) {
    throw new Error(
      `${what} must be an array of row objects like [{ n: 64, ms: 1.5 }], got ${describeValue(rows, { typed: true })}`,
    );
  }
  const columns = new Set<string>();
  rows.forEach((row, i) => {
    if (row === null || typeof row !== "object" || Array.isArray(row) || row instanceof Date) {
      throw new Error(
        `${what}[${i}] must be a plain object like { n: 64, ms: 1.5 }, got ${describeValue(row, { typed: true })}`,
      );
    }
    for (const [key, value] of Object.entries(row)) {
      if (!isCell(value)) {
        throw new Error(
          `${what}[${i}].${key} must be a string, number, boolean, bigint, Date, null or undefined, ` +
            `got ${describeValue(value, { typed: true })}; flatten nested values into their own columns`,
        );
      }
      columns.add(key);
    }
  });
  return [...columns];
}

function isCell(value: unknown): value is Cell {
  return value === null || value === undefined || value instanceof Date ||
    ["string", "number", "boolean", "bigint"].includes(typeof value);
}

/**
 * Formats a number the same way on every machine: integers exactly, other
 * numbers rounded to `digits` significant digits and written in the shortest
 * form JavaScript gives (`0.333333`, `1.5e-7`); `-0` is `0`; `NaN`,
 * `Infinity` and `-Infinity` are spelled out.
 *
 * @example
 * ```ts
 * import { formatNumber } from "./csv.ts";
 * console.log(formatNumber(1 / 3), formatNumber(4096), formatNumber(0.1 + 0.2, 3)); // 0.333333 4096 0.3
 * ```
 */
export function formatNumber(value: number, digits: number = DEFAULT_DIGITS): string {
  if (Number.isNaN(value)) return "NaN";
  if (!Number.isFinite(value)) return value > 0 ? "Infinity" : "-Infinity";
  if (Number.isInteger(value)) return String(Object.is(value, -0) ? 0 : value);
  const rounded = Number(value.toPrecision(digits));
  return String(Object.is(rounded, -0) ? 0 : rounded);
}

/**
 * Formats one cell as text: numbers via {@linkcode formatNumber}, dates as ISO
 * strings, `null`/`undefined` as the empty string.
 *
 * @example
 * ```ts
 * import { formatCell } from "./csv.ts";
 * console.log(formatCell(2 / 3, 2), formatCell(null) === "", formatCell(true)); // 0.67 true true
 * ```
 */
export function formatCell(value: Cell, digits: number = DEFAULT_DIGITS): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return formatNumber(value, digits);
  if (value instanceof Date) return value.toISOString();
  return String(value);
}

function quote(field: string): string {
  return /[",\r\n]/.test(field) ? `"${field.replace(/"/g, '""')}"` : field;
}

/** Options for {@linkcode toCsv}. */
export interface ToCsvOptions {
  /** Significant digits for non-integer numbers. Default {@linkcode DEFAULT_DIGITS} (6). */
  digits?: number;
}

/**
 * Checks a `digits` option (an integer from 1 to 21) and returns it, or the
 * default when it is `undefined`; `where` names the caller in the error.
 *
 * @example
 * ```ts
 * import { checkDigits } from "./csv.ts";
 * console.log(checkDigits(undefined, "toCsv"), checkDigits(3, "toCsv")); // 6 3
 * ```
 */
export function checkDigits(digits: unknown, where: string): number {
  if (digits === undefined) return DEFAULT_DIGITS;
  if (typeof digits !== "number" || !Number.isInteger(digits) || digits < 1 || digits > 21) {
    throw new Error(`${where}: options.digits must be an integer from 1 to 21, got ${String(digits)}`);
  }
  return digits;
}

/**
 * Writes rows as CSV (RFC 4180 quoting, `\n` line ends, a final newline).
 * Columns are every key in first-seen order; a missing key is an empty field;
 * numbers use {@linkcode formatNumber}. No rows give the empty string.
 *
 * @example
 * ```ts
 * import { toCsv } from "./mod.ts";
 * const csv = toCsv([{ method: "softmax", n: 64, ms: 1 / 3 }, { method: 'say "hi", ok', n: 128 }]);
 * console.log(csv);
 * // method,n,ms
 * // softmax,64,0.333333
 * // "say ""hi"", ok",128,
 * ```
 */
export function toCsv(rows: readonly Row[], options: ToCsvOptions = {}): string {
  for (const key of Object.keys(options)) {
    if (key !== "digits") throw new Error(`toCsv: unknown option "${key}"; the only option is digits`);
  }
  const digits = checkDigits(options.digits, "toCsv");
  const columns = columnsOf(rows, "rows");
  if (columns.length === 0 && rows.length === 0) return "";
  const lines = [columns.map(quote).join(",")];
  for (const row of rows) lines.push(columns.map((c) => quote(formatCell(row[c], digits))).join(","));
  return lines.join("\n") + "\n";
}
