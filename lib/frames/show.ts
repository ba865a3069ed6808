/**
 * How a DataFrame displays in a notebook.
 *
 * nodejs-polars 0.25.2 gives every DataFrame a `Symbol.for("Jupyter.display")` method, which the
 * Deno kernel calls: an HTML table of the first 50 rows (`POLARS_FMT_MAX_ROWS`) with no word that
 * rows were left out, numbers at full float precision (0.30000000000000004), missing values as the
 * text "null", no plain-text form, and the same rows again as `application/vnd.dataresource+json`.
 * {@linkcode show} replaces that method on a frame: a plain `<table>` (which survives the sanitiser
 * of an untrusted notebook) that says how many rows it leaves out, numbers to a few significant
 * digits, dtypes as column tooltips, plus polars' own text form (shape and types) as `text/plain`.
 * Every loader of this module returns frames that display this way.
 *
 * @module
 */

import type { DataFrame } from "nodejs-polars";
import { formatNumber } from "../figures/csv.ts";
import { JUPYTER_DISPLAY } from "../figures/display.ts";
import type { MimeBundle } from "../figures/display.ts";
import { checkOptionKeys, describeValue } from "../_options.ts";
import { checkShowOptions, SHOW_OPTION_KEYS } from "./_options.ts";
import type { ShowOptions } from "./_options.ts";

export type { ShowOptions };

/**
 * Whether `value` is a nodejs-polars DataFrame (judged by its shape: `height`, `columns`, `getColumns`, `head`).
 *
 * @example
 * ```ts
 * import pl from "nodejs-polars";
 * import { isDataFrame } from "./show.ts";
 * console.log(isDataFrame(pl.DataFrame({ a: [1] })), isDataFrame([{ a: 1 }])); // true false
 * ```
 */
export function isDataFrame(value: unknown): value is DataFrame {
  if (value === null || typeof value !== "object") return false;
  const df = value as Partial<DataFrame>;
  return typeof df.height === "number" && Array.isArray(df.columns) && typeof df.getColumns === "function" &&
    typeof df.head === "function";
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function formatValue(value: unknown, digits: number): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return formatNumber(value, digits);
  return String(value);
}

const NUMERIC = /^(U?Int(8|16|32|64)|Float(32|64)|Decimal)$/;

// The HTML table: columns in frame order (read column by column, so that a column named "64" is not moved
// first as it would be among an object's keys), dtypes as tooltips, numbers right-aligned.
function htmlTable(df: DataFrame, digits: number, maxRows: number): string {
  const head = df.head(maxRows);
  const columns = head.getColumns();
  const numeric = columns.map((s) => NUMERIC.test(s.dtype.variant));
  const cells = columns.map((s) => Array.from(s.toArray() as unknown[], (v) => formatValue(v, digits)));
  const align = (i: number) => numeric[i] ? ' style="text-align: right"' : "";
  const th = columns.map((s, i) => `<th title="${escapeHtml(s.dtype.variant)}"${align(i)}>${escapeHtml(s.name)}</th>`);
  const rows: string[] = [];
  for (let r = 0; r < head.height; r++) {
    rows.push(`<tr>${cells.map((c, i) => `<td${align(i)}>${escapeHtml(c[r])}</td>`).join("")}</tr>`);
  }
  const hidden = df.height - head.height;
  const note = hidden > 0
    ? `first ${head.height} of ${df.height} rows shown (${hidden} more); show(df, { maxRows: ${df.height} }) shows all`
    : df.height === 0
    ? "no rows"
    : "";
  const caption = note ? `<caption style="caption-side: bottom">${escapeHtml(note)}</caption>` : "";
  return `<table>${caption}<thead><tr>${th.join("")}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

/**
 * Makes a DataFrame display as a table in Jupyter (`text/html`, and polars' text as `text/plain`), and
 * returns the same frame. Frames from this module's loaders already display this way; call it on a
 * frame derived from one (`show(df.filter(...))`) or made with polars directly.
 *
 * @example
 * ```ts
 * import pl from "nodejs-polars";
 * import { JUPYTER_DISPLAY } from "../figures/mod.ts";
 * import { show } from "./show.ts";
 * const df = show(pl.DataFrame({ n: [64, 128], ms: [1 / 3, 2 / 3] }), { digits: 3 });
 * const html = df[JUPYTER_DISPLAY]()["text/html"];
 * console.log(html.includes("<td style=\"text-align: right\">0.333</td>")); // true
 * ```
 */
export function show<T extends DataFrame>(df: T, options: ShowOptions = {}): T & { [JUPYTER_DISPLAY](): MimeBundle } {
  if (!isDataFrame(df)) {
    throw new TypeError(`show: df must be a nodejs-polars DataFrame, got ${describeValue(df, { typed: true })}`);
  }
  const { digits, maxRows } = checkShowOptions("show", checkOptionKeys("show", options, SHOW_OPTION_KEYS));
  const display = (): MimeBundle => ({
    "text/html": htmlTable(df, digits, maxRows),
    "text/plain": df.toString(),
  });
  Object.defineProperty(df, JUPYTER_DISPLAY, { value: display, configurable: true, writable: true, enumerable: false });
  return df as T & { [JUPYTER_DISPLAY](): MimeBundle };
}
