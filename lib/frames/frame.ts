/**
 * Typed polars DataFrames from CSV text and from rows of values, strictly.
 *
 * Every column gets one of four types: `"int"` (polars Int64), `"float"` (Float64), `"bool"` or
 * `"string"`. A column's type is declared (`types`) or read from its values: all numbers give `"int"`
 * when every one is an integer, else `"float"`; all `true`/`false` give `"bool"`; anything else gives
 * `"string"` (so does a column with no values at all). An empty CSV cell, `null` and `undefined` are
 * missing values: polars `null`. `NaN` and `Infinity` stay numbers. A value that does not fit its
 * column is an Error naming the row and column, never a silent `null`.
 *
 * In CSV text a number is written as `toCsv` writes it (`-1.5`, `1e-7`, `NaN`, `Infinity`): `"007"`,
 * `"+3"` or `" 4"` are text, so that identifiers keep their leading zeros.
 *
 * Integers beyond ±2³¹ are stored as Float64 (exact up to 2⁵³): nodejs-polars 0.25.2's `Series.get`
 * reads Int64 values through 32 bits and returns 3000000000 as -1294967296.
 *
 * @module
 */

import type { DataFrame } from "nodejs-polars";
import type { Row } from "../figures/csv.ts";
import { checkTypes, csvToFrame, rowsToFrame } from "./_columns.ts";
import type { ColumnType } from "./_columns.ts";
import { checkOptionKeys, describeValue } from "../_options.ts";
import { checkShowOptions, SHOW_OPTION_KEYS } from "./_options.ts";
import type { ShowOptions } from "./_options.ts";
import { show } from "./show.ts";

export type { ColumnType };

/** Options for {@linkcode csvFrame}. */
export interface CsvFrameOptions extends ShowOptions {
  /** Names the text in error messages, e.g. its path. Default "CSV text". */
  source?: string;
  /** Declared column types, by name; the others are typed from their values. */
  types?: Readonly<Record<string, ColumnType>>;
}

/** Options for {@linkcode frame}. */
export interface FrameOptions extends ShowOptions {
  /** Declared column types, by name; the others are typed from their values. */
  types?: Readonly<Record<string, ColumnType>>;
}

/**
 * Reads CSV text (as `toCsv` and `saveTable` write it) into a typed polars DataFrame: numbers as
 * numbers, `true`/`false` as booleans, empty cells as `null` (see the module doc for the rules). A
 * cell that does not fit its declared type, a row with the wrong number of fields, or a header naming
 * a column twice is an Error naming `source`, the row and the column. Displays as a table in Jupyter.
 *
 * @example
 * ```ts
 * import { csvFrame } from "./frame.ts";
 * const df = csvFrame("n,ms,ok,note\n64,1.5,true,\n128,,false,slow\n");
 * console.log(df.dtypes.map(String)); // ["DataType(Int64)", "DataType(Float64)", "DataType(Bool)", "DataType(String)"]
 * console.log(df.getColumn("ms").toArray(), df.getColumn("note").toArray()); // [1.5, null] [null, "slow"]
 * ```
 */
export function csvFrame(text: string, options: CsvFrameOptions = {}): DataFrame {
  const o = checkOptionKeys("csvFrame", options, ["source", "types", ...SHOW_OPTION_KEYS]);
  if (typeof text !== "string") {
    throw new TypeError(`csvFrame: text must be a string, got ${describeValue(text, { typed: true })}`);
  }
  if (o.source !== undefined && typeof o.source !== "string") {
    throw new TypeError(`csvFrame: options.source must be a string, got ${describeValue(o.source, { typed: true })}`);
  }
  const display = checkShowOptions("csvFrame", o);
  const source = (o.source as string | undefined) ?? "CSV text";
  return show(csvToFrame(text, source, { types: checkTypes("csvFrame", o.types) }), display);
}

/**
 * Builds a typed polars DataFrame from rows of values (`[{ n: 64, ms: 1.5 }, ...]`), which displays
 * as a table in Jupyter: the DataFrame form of `table(rows)`. Columns appear in first-seen key order;
 * a key missing from a row, `null` and `undefined` are `null`. A column that mixes numbers, booleans
 * and text, or a value that does not fit its declared type, is a TypeError naming the column and the
 * rows: give a missing number as `null`, not as "—".
 *
 * @example
 * ```ts
 * import { frame } from "./frame.ts";
 * const df = frame([{ variant: "softmax", n: 64, ms: 1.5 }, { variant: "linear", n: 64, ms: null }]);
 * console.log(df.shape, df.getColumn("ms").toArray()); // { height: 2, width: 3 } [1.5, null]
 * ```
 */
export function frame(rows: readonly Row[], options: FrameOptions = {}): DataFrame {
  const o = checkOptionKeys("frame", options, ["types", ...SHOW_OPTION_KEYS]);
  const display = checkShowOptions("frame", o);
  return show(rowsToFrame("frame", rows, { types: checkTypes("frame", o.types) }), display);
}
