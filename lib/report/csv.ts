/**
 * Reading the CSVs that `toCsv` writes (RFC 4180 quoting).
 *
 * @module
 */

/**
 * Parses CSV text into rows of fields: quoted fields may hold commas, `""`
 * and line breaks; `\n` or `\r\n` ends a record; a final line break is
 * optional. An unterminated quote is an Error naming `source`.
 *
 * @example
 * ```ts
 * import { parseCsv } from "./csv.ts";
 * console.log(parseCsv('a,b\n"x, ""y""",2\n')); // [["a", "b"], ['x, "y"', "2"]]
 * ```
 */
export function parseCsv(text: string, source = "CSV text"): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let i = 0;
  let quoted = false;
  while (i < text.length) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i += 2;
      } else if (ch === '"') {
        quoted = false;
        i++;
      } else {
        field += ch;
        i++;
      }
    } else if (ch === '"' && field === "") {
      quoted = true;
      i++;
    } else if (ch === ",") {
      row.push(field);
      field = "";
      i++;
    } else if (ch === "\n" || (ch === "\r" && text[i + 1] === "\n")) {
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
      i += ch === "\r" ? 2 : 1;
    } else {
      field += ch;
      i++;
    }
  }
  if (quoted) throw new Error(`${source}: a quoted field is never closed; the file is cut short or not CSV`);
  if (field !== "" || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}
