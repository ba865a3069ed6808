/**
 * Rows of data shown as a table in Jupyter.
 *
 * @module
 */

import { checkDigits, columnsOf, formatCell } from "./csv.ts";
import type { Row } from "./csv.ts";
import { JUPYTER_DISPLAY } from "./display.ts";
import type { Displayable, MimeBundle } from "./display.ts";

/** Options for {@linkcode table}. */
export interface TableOptions {
  /** Significant digits for non-integer numbers. Default 4. */
  digits?: number;
  /** Rows shown before the rest is summarised as "… N more rows". Default 50. */
  maxRows?: number;
}

/** A table ready to display; `toString()` gives the plain-text form. */
export interface Table extends Displayable {
  columns: string[];
  rows: readonly Row[];
  toString(): string;
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function escapeMarkdown(text: string): string {
  return escapeHtml(text).replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

/**
 * Renders rows as a table: `text/html` (a plain `<table>`, which survives
 * notebook sanitisers), with `text/markdown` and `text/plain` fallbacks.
 * Columns appear in first-seen key order; numeric columns are right-aligned.
 *
 * @example
 * ```ts
 * import { JUPYTER_DISPLAY, table } from "./mod.ts";
 * const t = table([{ method: "softmax", ms: 1.23456 }, { method: "linear", ms: 0.5 }]);
 * console.log(t[JUPYTER_DISPLAY]()["text/markdown"]);
 * // | method | ms |
 * // | :--- | ---: |
 * // | softmax | 1.235 |
 * // | linear | 0.5 |
 * ```
 */
export function table(rows: readonly Row[], options: TableOptions = {}): Table {
  for (const key of Object.keys(options)) {
    if (key !== "digits" && key !== "maxRows") {
      throw new Error(`table: unknown option "${key}"; expected digits or maxRows`);
    }
  }
  const digits = options.digits === undefined ? 4 : checkDigits(options.digits, "table");
  const maxRows = options.maxRows ?? 50;
  if (!Number.isInteger(maxRows) || maxRows < 1) {
    throw new Error(`table: options.maxRows must be a positive integer, got ${String(maxRows)}`);
  }
  const columns = columnsOf(rows, "table rows");
  const shown = rows.slice(0, maxRows);
  const cells = shown.map((row) => columns.map((c) => formatCell(row[c], digits)));
  const numeric = columns.map((c) =>
    shown.some((row) => row[c] !== null && row[c] !== undefined) &&
    shown.every((row) =>
      row[c] === null || row[c] === undefined || typeof row[c] === "number" || typeof row[c] === "bigint"
    )
  );
  const hidden = rows.length - shown.length;
  const note = hidden > 0 ? `… ${hidden} more row${hidden === 1 ? "" : "s"} (${rows.length} in all)` : "";

  const html = () => {
    const align = (i: number) => numeric[i] ? ' style="text-align: right"' : "";
    const head = columns.map((c, i) => `<th${align(i)}>${escapeHtml(c)}</th>`).join("");
    const body = cells.map((r) => `<tr>${r.map((v, i) => `<td${align(i)}>${escapeHtml(v)}</td>`).join("")}</tr>`);
    const caption = note ? `<caption style="caption-side: bottom">${escapeHtml(note)}</caption>` : "";
    return `<table>${caption}<thead><tr>${head}</tr></thead><tbody>${body.join("")}</tbody></table>`;
  };

  const markdown = () => {
    const line = (values: string[]) => `| ${values.map(escapeMarkdown).join(" | ")} |`;
    const rule = `| ${numeric.map((n) => n ? "---:" : ":---").join(" | ")} |`;
    return [line(columns), rule, ...cells.map(line), ...(note ? ["", note] : [])].join("\n");
  };

  const plain = () => {
    const width = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)));
    const pad = (v: string, i: number) => numeric[i] ? v.padStart(width[i]) : v.padEnd(width[i]);
    const line = (values: string[]) => values.map(pad).join("  ").trimEnd();
    return [line(columns), line(width.map((w) => "-".repeat(w))), ...cells.map(line), ...(note ? [note] : [])]
      .join("\n");
  };

  return {
    columns,
    rows,
    toString: plain,
    [JUPYTER_DISPLAY]: (): MimeBundle => ({ "text/html": html(), "text/markdown": markdown(), "text/plain": plain() }),
  };
}
