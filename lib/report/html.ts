/**
 * The report as one self-contained HTML page: inline CSS, images as `data:`
 * URIs, no script, nothing fetched.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { outcomeMark } from "../figures/claims.ts";
import type { Outcome } from "../stats/verdict.ts";
import type { NotebookSection, ReportData, RunInfo } from "./load.ts";
import {
  changeRows,
  claimsTable,
  countsLine,
  inconclusiveRows,
  notCountedRows,
  provenanceLines,
  runCommit,
} from "./_summary.ts";

/**
 * Escapes text for HTML element content and attribute values.
 *
 * @example
 * ```ts
 * import { escapeHtml } from "./html.ts";
 * console.log(escapeHtml(`<a href="x">&'`)); // &lt;a href=&quot;x&quot;&gt;&amp;&#39;
 * ```
 */
export function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/**
 * The id of a notebook's section: `nb-` and the notebook name.
 *
 * @example
 * ```ts
 * import { sectionId } from "./html.ts";
 * console.log(sectionId("01_gradient_bounds")); // nb-01_gradient_bounds
 * ```
 */
export function sectionId(notebook: string): string {
  return `nb-${notebook.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

/**
 * ✓, ✗ or ? for an outcome (a legacy `reproduced` flag is read as
 * `normalizeClaims` reads it: `null` is inconclusive).
 *
 * @example
 * ```ts
 * import { verdictMark } from "./html.ts";
 * console.log(verdictMark("reproduced"), verdictMark("not reproduced"), verdictMark("inconclusive")); // ✓ ✗ ?
 * console.log(verdictMark(true), verdictMark(false), verdictMark(null)); // ✓ ✗ ?
 * ```
 */
export function verdictMark(outcome: Outcome | boolean | null): string {
  if (outcome === true) return outcomeMark("reproduced");
  if (outcome === false) return outcomeMark("not reproduced");
  if (outcome === null) return outcomeMark("inconclusive");
  return outcomeMark(outcome);
}

const CSS = `
body { font-family: "DejaVu Sans", system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
  color: #222; line-height: 1.45; }
h1, h2, h3 { line-height: 1.2; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.92em; color: #444; margin-top: 0.3em; }
.yes { color: #1a7f37; font-weight: bold; }
.no { color: #c62828; font-weight: bold; }
.na { color: #9a6700; font-weight: bold; }
.flag { color: #9a6700; }
.counts span { margin-right: 1.5em; }
pre { background: #f7f7f7; padding: 0.5em; overflow-x: auto; font-size: 0.85em; }
.meta { font-size: 0.85em; color: #555; }
`;

function outcomeClass(mark: string): string {
  return mark === "✓" ? "yes" : mark === "✗" ? "no" : "na";
}

function isNumeric(value: string): boolean {
  return value !== "" && /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-?Infinity$|^NaN$/i.test(value);
}

function htmlTable(columns: string[], rows: string[][]): string {
  const numeric = columns.map((_, i) => rows.length > 0 && rows.every((r) => (r[i] ?? "") === "" || isNumeric(r[i])));
  const head = columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("");
  const body = rows.map((r) =>
    `<tr>${
      columns.map((_, i) => `<td${numeric[i] ? ' class="num"' : ""}>${escapeHtml(r[i] ?? "")}</td>`).join("")
    }</tr>`
  ).join("\n");
  return `<table><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

function runTable(runs: RunInfo[]): string {
  const rows = runs.map((r) => [
    r.backend ?? "unknown",
    runCommit(r),
    r.flags.length === 0 ? "clean tree, current code" : r.flags.join("; "),
    r.firstDate === r.lastDate ? r.firstDate : `${r.firstDate} – ${r.lastDate}`,
    r.durationMs === null ? "" : `${(r.durationMs / 1000).toFixed(1)} s`,
    r.seed === null ? "none" : String(r.seed),
  ]);
  const table = htmlTable(["backend", "commit", "provenance", "date (UTC)", "compute time", "seed"], rows);
  const configs = runs.map((r, i) =>
    `<details><summary>configuration${runs.length > 1 ? ` ${i + 1}` : ""}</summary><pre>${
      escapeHtml(JSON.stringify(r.config, null, 2))
    }</pre></details>`
  );
  return `${table}\n${configs.join("\n")}`;
}

// A table whose first column holds outcome marks, coloured.
function marksTable(columns: readonly string[], rows: string[][]): string {
  const head = columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("");
  const body = rows.map((r) =>
    `<tr><td class="${outcomeClass(r[0])}">${escapeHtml(r[0])}</td>${
      r.slice(1).map((cell) => `<td>${escapeHtml(cell)}</td>`).join("")
    }</tr>`
  ).join("\n");
  return `<table><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

function summaryHtml(data: ReportData): string {
  const s = data.summary;
  const counts = `<p class="counts"><span class="yes">✓ reproduced: ${s.reproduced}</span>` +
    `<span class="no">✗ not reproduced: ${s.notReproduced}</span>` +
    `<span class="na">? inconclusive: ${s.inconclusive}</span><span>claims counted: ${s.total}</span>` +
    (s.notCounted > 0 ? `<span>by construction, not counted: ${s.notCounted}</span>` : "") + `</p>\n` +
    `<p>${escapeHtml(countsLine(s))}</p>`;
  const parts = [counts];
  const notCounted = notCountedRows(data);
  if (notCounted.rows.length > 0) {
    parts.push(
      `<h3 id="not-counted">By construction, not counted</h3>\n<p>These checks hold by construction or by algebra: ` +
        `they are shown, but they are not evidence and are left out of the counts above.</p>\n` +
        marksTable(notCounted.columns, notCounted.rows),
    );
  }
  const inconclusive = inconclusiveRows(data);
  if (inconclusive.rows.length > 0) {
    parts.push(
      `<h3 id="inconclusive">Inconclusive, and what would settle them</h3>\n` +
        marksTable(inconclusive.columns, inconclusive.rows),
    );
  }
  const changes = changeRows(data);
  parts.push(
    `<h3 id="changes">Outcomes changed since the last committed report</h3>\n<p>${
      escapeHtml(data.changes.note.charAt(0).toUpperCase() + data.changes.note.slice(1))
    }.</p>\n` +
      (changes.rows.length > 0 ? htmlTable(changes.columns, changes.rows) : "") +
      (data.changes.problems.length > 0
        ? `<ul>${data.changes.problems.map((p) => `<li class="flag">${escapeHtml(p)}</li>`).join("")}</ul>`
        : ""),
  );
  parts.push(
    `<h3 id="provenance">Provenance</h3>\n<ul>${
      provenanceLines(data).map((line) => `<li>${escapeHtml(line)}</li>`).join("")
    }</ul>`,
  );
  const groups = data.notebooks.filter((n) => n.claims.length > 0).map((n) => {
    const flags = [...new Set(n.claims.flatMap((c) => c.flags))];
    const claims = claimsTable(n);
    return `<h3><a href="#${sectionId(n.notebook)}">${escapeHtml(n.notebook)}</a></h3>\n` +
      (flags.length > 0 ? `<p class="flag">Made with: ${escapeHtml(flags.join("; "))}.</p>\n` : "") +
      marksTable(claims.columns, claims.rows);
  });
  const none = groups.length === 0 ? "<p>No notebook has saved claims yet.</p>" : "";
  return `<section id="summary">\n<h2>What reproduced and what did not</h2>\n${parts.join("\n")}\n${none}${
    groups.join("\n")
  }\n</section>`;
}

function notebookHtml(n: NotebookSection): string {
  const figures = n.figures.map((f) => {
    const src = `data:${f.mime};base64,${Buffer.from(f.bytes).toString("base64")}`;
    const caption = f.entry.caption ?? "";
    return `<figure id="fig-${escapeHtml(f.entry.name)}">\n<img src="${src}" alt="${
      escapeHtml(caption || f.entry.name)
    }">\n` +
      `<figcaption><strong>${escapeHtml(f.entry.name)}</strong>${
        caption ? ` — ${escapeHtml(caption)}` : ""
      }</figcaption>\n</figure>`;
  });
  const tables = n.tables.map((t) =>
    `<div class="table" id="table-${escapeHtml(t.entry.name)}">\n<h4>${escapeHtml(t.entry.name)}${
      t.entry.caption ? ` — ${escapeHtml(t.entry.caption)}` : ""
    }</h4>\n${htmlTable(t.columns, t.rows)}\n</div>`
  );
  return `<section class="notebook" id="${sectionId(n.notebook)}">\n<h2>${escapeHtml(n.notebook)}</h2>\n` +
    (figures.length > 0 ? `<h3>Figures</h3>\n${figures.join("\n")}\n` : "") +
    (tables.length > 0 ? `<h3>Tables</h3>\n${tables.join("\n")}\n` : "") +
    `<h3>Run</h3>\n<div class="meta">\n${runTable(n.runs)}\n</div>\n</section>`;
}

/**
 * Renders the report as one self-contained HTML page: the three-outcome
 * summary first (counts, the checks not counted as evidence, the inconclusive
 * claims with what would settle them, the outcomes changed since the last
 * committed report, provenance, and the claims of each notebook with ✓ / ✗ / ?,
 * reason and rule), then per notebook its figures (embedded as `data:` URIs)
 * with captions, its tables and how its run was made.
 *
 * @example
 * ```ts
 * import { normalizeClaims } from "../figures/claims.ts";
 * import { renderHtml } from "./html.ts";
 * import { countClaims } from "./load.ts";
 * const claims = normalizeClaims([{ id: "a", claim: "x < 1", paper: "< 1", measured: "0.5", reproduced: true }]);
 * const html = renderHtml({
 *   figuresDir: "/tmp", asOf: null, summary: countClaims(claims),
 *   notebooks: [{ notebook: "01_demo", figures: [], tables: [], runs: [],
 *     claims: [{ entry: {} as never, file: "01_claims.json", claims, flags: [] }] }],
 *   changes: { compared: false, commit: null, note: "git is not installed", changes: [], problems: [] },
 *   provenance: { codeHash: null, total: 1, dirty: [], otherCode: [], noCodeHash: [] },
 * });
 * console.log(html.includes('id="summary"'), html.includes("x &lt; 1")); // true true
 * ```
 */
export function renderHtml(data: ReportData): string {
  const toc = data.notebooks.map((n) => `<li><a href="#${sectionId(n.notebook)}">${escapeHtml(n.notebook)}</a></li>`);
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>attnlab report: The Devil in Linear Transformer, reproduced</title>
<style>${CSS}</style>
</head>
<body>
<h1>attnlab report</h1>
<p class="meta">Reproducing Qin et al. (2022), "The Devil in Linear Transformer". Generated by <code>deno task report</code>
from <code>manifest.json</code> and the files it lists${
    data.asOf ? `; latest result saved ${escapeHtml(data.asOf)}` : ""
  }. Every number below comes from a notebook run.</p>
<nav><ul>\n<li><a href="#summary">What reproduced and what did not</a>: <a href="#changes">changes since the last commit</a>,
<a href="#provenance">provenance</a></li>\n${toc.join("\n")}\n</ul></nav>
${summaryHtml(data)}
${data.notebooks.map(notebookHtml).join("\n")}
</body>
</html>
`;
}
