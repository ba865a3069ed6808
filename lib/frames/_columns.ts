/**
 * Typed columns for the loaders: the four column types, reading them from CSV cells or row values,
 * strictly, and building the polars frame. See `frame.ts` for the rules.
 *
 * @module
 */

import pl from "nodejs-polars";
import type { DataFrame, Series } from "nodejs-polars";
import { columnsOf } from "../figures/csv.ts";
import type { Row } from "../figures/csv.ts";
import { parseCsv } from "../report/csv.ts";
import { describeValue } from "../_options.ts";

/** A column's type: `"int"` (Int64), `"float"` (Float64), `"bool"` or `"string"`. */
export type ColumnType = "int" | "float" | "bool" | "string";

const COLUMN_TYPES: readonly ColumnType[] = ["int", "float", "bool", "string"];

/** Declared column types: by name, one type for every column not named, and columns that must be present. */
export interface ColumnTypes {
  /** Types of named columns. */
  types?: Readonly<Record<string, ColumnType>>;
  /** The type of every column not in `types`. Default: read from the values. */
  otherColumns?: ColumnType;
  /** Columns that must be present (CSV only). */
  required?: readonly string[];
}

// The numbers toCsv writes (formatNumber): no "+", no leading zeros, no bare "." ends.
const NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?$/;
const SPECIAL: Readonly<Record<string, number>> = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity };
const INT32_MAX = 2 ** 31 - 1;

function parseNumber(text: string): number | undefined {
  if (Object.hasOwn(SPECIAL, text)) return SPECIAL[text];
  return NUMBER.test(text) ? Number(text) : undefined;
}

const isInt = (x: number) => Number.isSafeInteger(x);

const EXPECTED: Readonly<Record<ColumnType, string>> = {
  int: "an integer",
  float: "a number (NaN and Infinity allowed)",
  bool: "true or false",
  string: "text",
};

/** Checks a `types` option: an object of column name to a {@linkcode ColumnType}. */
export function checkTypes(owner: string, types: unknown): Readonly<Record<string, ColumnType>> {
  if (types === undefined) return {};
  if (types === null || typeof types !== "object" || Array.isArray(types)) {
    throw new TypeError(
      `${owner}: options.types must be an object like { step: "int" }, got ${describeValue(types, { typed: true })}`,
    );
  }
  for (const [name, type] of Object.entries(types)) {
    if (!COLUMN_TYPES.includes(type as ColumnType)) {
      throw new RangeError(
        `${owner}: options.types["${name}"] must be one of ${COLUMN_TYPES.map((t) => `"${t}"`).join(", ")}, ` +
          `got ${describeValue(type, { typed: true })}`,
      );
    }
  }
  return types as Record<string, ColumnType>;
}

// One typed polars column. Int columns go to Float64 when a value is beyond ±2³¹ (see frame.ts).
function series(name: string, type: ColumnType, values: (number | boolean | string | null)[]): Series {
  switch (type) {
    case "int": {
      const wide = values.some((v) => v !== null && Math.abs(v as number) > INT32_MAX);
      return pl.Series(name, values, wide ? pl.Float64 : pl.Int64);
    }
    case "float":
      return pl.Series(name, values, pl.Float64);
    case "bool":
      return pl.Series(name, values, pl.Bool);
    case "string":
      return pl.Series(name, values, pl.Utf8);
  }
}

// The type of a CSV column from its non-empty cells.
function inferCsvType(cells: readonly string[]): ColumnType {
  const present = cells.filter((c) => c !== "");
  if (present.length === 0) return "string";
  if (present.every((c) => c === "true" || c === "false")) return "bool";
  const numbers = present.map(parseNumber);
  if (numbers.every((x) => x !== undefined)) return numbers.every((x) => isInt(x!)) ? "int" : "float";
  return "string";
}

function csvValue(cell: string, type: ColumnType): number | boolean | string | null | undefined {
  if (cell === "") return null;
  switch (type) {
    case "string":
      return cell;
    case "bool":
      return cell === "true" ? true : cell === "false" ? false : undefined;
    case "float":
      return parseNumber(cell);
    case "int": {
      const x = parseNumber(cell);
      return x !== undefined && isInt(x) ? x : undefined;
    }
  }
}

/**
 * Builds a typed DataFrame from CSV text with declared types and required columns. Errors name
 * `source`, the row (1 = the first record after the header) and the column.
 */
export function csvToFrame(text: string, source: string, schema: ColumnTypes = {}): DataFrame {
  const records = parseCsv(text, source);
  if (records.length === 0) throw new Error(`${source} is empty; expected a header line of column names`);
  const [header, ...rows] = records;
  const seen = new Set<string>();
  header.forEach((name, i) => {
    if (name === "") throw new Error(`${source}: column ${i + 1} of the header has no name`);
    if (seen.has(name)) throw new Error(`${source}: the header names column "${name}" twice`);
    seen.add(name);
  });
  for (const name of schema.required ?? []) {
    if (!seen.has(name)) {
      throw new Error(`${source} has no "${name}" column (columns: ${header.join(", ")}); is it the right file?`);
    }
  }
  rows.forEach((row, r) => {
    if (row.length !== header.length) {
      throw new Error(
        `${source}: row ${r + 1} has ${row.length} field${row.length === 1 ? "" : "s"}, the header has ` +
          `${header.length}; the file is cut short or is not one table`,
      );
    }
  });
  const columns = header.map((name, c) => {
    const cells = rows.map((row) => row[c]);
    const type = schema.types?.[name] ?? schema.otherColumns ?? inferCsvType(cells);
    const values = cells.map((cell, r) => {
      const value = csvValue(cell, type);
      if (value === undefined) {
        throw new Error(
          `${source}: row ${r + 1}, column "${name}" holds ${JSON.stringify(cell)}, expected ${EXPECTED[type]} ` +
            `or an empty cell`,
        );
      }
      return value;
    });
    return series(name, type, values);
  });
  return pl.DataFrame(columns);
}

type Kind = "number" | "boolean" | "string";

/**
 * Builds a typed DataFrame from rows of values; `owner` names the caller in errors. Columns in
 * first-seen key order; a missing key, `null` and `undefined` are `null`.
 */
export function rowsToFrame(owner: string, rows: readonly Row[], schema: ColumnTypes = {}): DataFrame {
  let names: string[];
  try {
    names = columnsOf(rows, `${owner}: rows`);
  } catch (err) {
    throw new TypeError((err as Error).message);
  }
  const columns = names.map((name) => {
    const values = rows.map((row) => row[name]);
    let first: { kind: Kind; row: number } | undefined;
    const plain = values.map((v, r) => {
      if (v === null || v === undefined) return null;
      if (v instanceof Date) {
        throw new TypeError(
          `${owner}: rows[${r}]["${name}"] is a Date; give it as text (date.toISOString()) or a number (date.getTime())`,
        );
      }
      let value = v as number | boolean | string;
      if (typeof v === "bigint") {
        if (!Number.isSafeInteger(Number(v))) {
          throw new RangeError(
            `${owner}: rows[${r}]["${name}"] is the bigint ${v}, beyond the integers a number holds`,
          );
        }
        value = Number(v);
      }
      const kind = typeof value as Kind;
      if (first === undefined) first = { kind, row: r };
      else if (kind !== first.kind) {
        throw new TypeError(
          `${owner}: column "${name}" mixes ${first.kind}s (rows[${first.row}]: ${
            describeValue(values[first.row], { typed: true })
          }) ` +
            `and ${kind}s (rows[${r}]: ${
              describeValue(v, { typed: true })
            }); give a missing value as null, or convert the column`,
        );
      }
      return value;
    });
    const inferred: ColumnType = first === undefined
      ? "string"
      : first.kind === "string"
      ? "string"
      : first.kind === "boolean"
      ? "bool"
      : plain.every((v) => v === null || isInt(v as number))
      ? "int"
      : "float";
    const type = schema.types?.[name] ?? schema.otherColumns ?? inferred;
    // An all-null column takes any type; an integer column may be declared float.
    if (first !== undefined && type !== inferred && !(type === "float" && inferred === "int")) {
      const r = type === "int" && inferred === "float"
        ? plain.findIndex((v) => v !== null && !isInt(v as number))
        : first.row;
      throw new TypeError(
        `${owner}: column "${name}" is declared "${type}", but rows[${r}]["${name}"] is ${
          describeValue(values[r], { typed: true })
        }; ` +
          `expected ${EXPECTED[type]}`,
      );
    }
    return series(name, type, plain);
  });
  return pl.DataFrame(columns);
}
