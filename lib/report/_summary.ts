/**
 * (Internal.) The report's summary as rows of plain text, shared by the HTML page and the
 * Markdown file (each escapes them its own way): the claims table, the claims
 * not counted as evidence, the inconclusive claims with what would settle them,
 * the outcomes changed since the last commit and the provenance lines.
 *
 * @module
 */

import { outcomeMark } from "../figures/claims.ts";
import type { NormalizedClaim, Settle } from "../figures/claims.ts";
import type { Outcome, VerdictInterval } from "../stats/verdict.ts";
import type { ClaimCounts, NotebookSection, ReportData, RunInfo } from "./load.ts";

/** Column names and rows of text. */
export interface TextTable {
  columns: string[];
  rows: string[][];
}

// Up to 4 significant digits, without float noise.
function num(x: number): string {
  return String(Number(x.toPrecision(4)));
}

/**
 * A verdict interval in one line: estimate, bounds, level, method and n (`—` for a bound that could not be
 * computed); an exact value (level 1) as the value and its method.
 *
 * @example
 * ```ts
 * import { formatVerdictInterval } from "./_summary.ts";
 * const iv = { estimate: 0.2167, low: 0.1408, high: 0.2925, level: 0.95, n: 3, method: "paired t" };
 * console.log(formatVerdictInterval(iv)); // 0.2167 [0.1408, 0.2925] (95% paired t, n = 3)
 * ```
 */
export function formatVerdictInterval(iv: VerdictInterval): string {
  if (iv.level === 1) return `${num(iv.estimate)} (${iv.method})`;
  const bound = (x: number | null) => (x === null ? "—" : num(x));
  return `${num(iv.estimate)} [${bound(iv.low)}, ${bound(iv.high)}] (${
    num(100 * iv.level)
  }% ${iv.method}, n = ${iv.n})`;
}

/**
 * What would settle a claim, in one line: model, tokens, seeds, FLOPs and the note.
 *
 * @example
 * ```ts
 * import { formatSettle } from "./_summary.ts";
 * console.log(formatSettle({ model: "6 layers, d = 512", tokens: "300M", seeds: 3, flops: 4.5e16 }));
 * // 6 layers, d = 512; 300M tokens; 3 seeds; 4.5e16 FLOPs
 * ```
 */
export function formatSettle(settle: Settle): string {
  const parts: string[] = [];
  if (settle.model !== undefined) parts.push(settle.model);
  if (settle.tokens !== undefined) parts.push(`${settle.tokens} tokens`);
  if (settle.seeds !== undefined) parts.push(`${settle.seeds} seed${settle.seeds === 1 ? "" : "s"}`);
  if (settle.flops !== undefined) parts.push(`${settle.flops.toExponential(1).replace("e+", "e")} FLOPs`);
  if (settle.note !== undefined) parts.push(settle.note);
  return parts.join("; ");
}

function reasonText(c: NormalizedClaim): string {
  return [c.reason, c.evidence ? undefined : "not counted as evidence"].filter((x) => x !== undefined).join("; ");
}

function outcomeText(outcome: Outcome | null, reason: string | undefined, missing: string): string {
  if (outcome === null) return missing;
  return `${outcomeMark(outcome)} ${outcome}${reason !== undefined ? ` (${reason})` : ""}`;
}

/**
 * A notebook's claims table, in file order: ✓ / ✗ / ?, claim, paper, measured, the interval (a column only
 * when some claim has one), reason, rule and note.
 */
export function claimsTable(n: NotebookSection): TextTable {
  const claims = n.claims.flatMap((c) => c.claims);
  const withInterval = claims.some((c) => c.interval !== undefined);
  const columns = ["", "claim", "paper", "measured", ...(withInterval ? ["interval"] : []), "reason", "rule", "note"];
  const rows = claims.map((c) => [
    outcomeMark(c.outcome),
    c.claim,
    c.paper,
    c.measured,
    ...(withInterval ? [c.interval === undefined ? "" : formatVerdictInterval(c.interval)] : []),
    reasonText(c),
    c.rule,
    c.note ?? "",
  ]);
  return { columns, rows };
}

function notebookClaims(data: ReportData): { notebook: string; claim: NormalizedClaim }[] {
  return data.notebooks.flatMap((n) =>
    n.claims.flatMap((c) => c.claims.map((claim) => ({ notebook: n.notebook, claim })))
  );
}

/** The claims that hold by construction (`evidence: false`): shown apart, not counted. */
export function notCountedRows(data: ReportData): TextTable {
  const rows = notebookClaims(data).filter(({ claim }) => !claim.evidence).map(({ notebook, claim }) => [
    outcomeMark(claim.outcome),
    notebook,
    claim.claim,
    claim.measured,
    claim.reason ?? "",
    claim.rule,
  ]);
  return { columns: ["", "notebook", "claim", "measured", "reason", "rule"], rows };
}

/** Every inconclusive claim that counts, with its reason and what would settle it ("not stated" when not given). */
export function inconclusiveRows(data: ReportData): TextTable {
  const rows = notebookClaims(data)
    .filter(({ claim }) => claim.evidence && claim.outcome === "inconclusive")
    .map(({ notebook, claim }) => [
      outcomeMark(claim.outcome),
      notebook,
      claim.claim,
      claim.reason ?? "",
      claim.settle === undefined ? "not stated" : formatSettle(claim.settle),
    ]);
  return { columns: ["", "notebook", "claim", "reason", "what would settle it"], rows };
}

/**
 * The marker of an outcome change between scales: the committed and the current outcome are of other models, so the
 * change is not a rerun of the same experiment.
 *
 * @example
 * ```ts
 * import { scaleChangeText } from "./_summary.ts";
 * console.log(scaleChangeText({ before: "full", after: "large" })); // scale full → large: other models, not a rerun
 * ```
 */
export function scaleChangeText(scales: { before: string; after: string }): string {
  return `scale ${scales.before} → ${scales.after}: other models, not a rerun`;
}

/**
 * The claims whose outcome changed since the last committed report; a `scale` column, when some change is between
 * scales, marks those ({@linkcode scaleChangeText}).
 */
export function changeRows(data: ReportData): TextTable {
  const acrossScales = data.changes.changes.some((c) => c.scales !== undefined);
  const rows = data.changes.changes.map((c) => [
    c.notebook ?? c.file,
    c.claim,
    outcomeText(c.before, c.beforeReason, "(new since)"),
    outcomeText(c.after, c.afterReason, "(gone)"),
    ...(acrossScales ? [c.scales === undefined ? "" : scaleChangeText(c.scales)] : []),
  ]);
  return { columns: ["notebook", "claim", "committed", "now", ...(acrossScales ? ["scale"] : [])], rows };
}

/**
 * One sentence on the inconclusive claims by reason, e.g. "Inconclusive by reason: not comparable 2, within
 * noise 1."; "No claim is inconclusive." when none is.
 */
export function countsLine(s: ClaimCounts): string {
  const reasons = Object.entries(s.inconclusiveBy).sort(([a], [b]) => a.localeCompare(b));
  if (reasons.length === 0) return "No counted claim is inconclusive.";
  return `Inconclusive by reason: ${reasons.map(([reason, n]) => `${reason} ${n}`).join(", ")}.`;
}

function names(list: readonly string[]): string {
  const shown = list.slice(0, 12).join(", ");
  return list.length > 12 ? `${shown} and ${list.length - 12} more` : shown;
}

/** The provenance of the results, one line each: the current code hash, then what is doubtful, if anything. */
export function provenanceLines(data: ReportData): string[] {
  const p = data.provenance;
  const lines = [
    `Current code hash (lib/, deno.json, deno.lock): ${p.codeHash === null ? "unknown" : p.codeHash.slice(0, 12)}.`,
  ];
  const of = (k: number) => `${k} of ${p.total} result${p.total === 1 ? "" : "s"}`;
  if (p.dirty.length > 0) {
    lines.push(`${of(p.dirty.length)} were made from a tree with uncommitted changes: ${names(p.dirty)}.`);
  }
  if (p.otherCode.length > 0) {
    lines.push(
      `${of(p.otherCode.length)} were made under other code than the current tree's (another code hash): ` +
        `${names(p.otherCode)}.`,
    );
  }
  if (p.noCodeHash.length > 0) {
    lines.push(
      `${of(p.noCodeHash.length)} record no code hash (saved before code hashes were recorded, or outside a ` +
        `checkout), so whether the code changed since cannot be told: ${names(p.noCodeHash)}.`,
    );
  }
  if (lines.length === 1) {
    lines.push(`All ${p.total} results were made from a clean tree under the current code.`);
  }
  if (p.scales !== undefined) lines.push(scaleLine(p.scales, p.total));
  return lines;
}

/**
 * One sentence on the scales the results were made at, e.g. "Scale: 40 results at full scale, 18 at large scale;
 * each result is tagged with its scale." (results saved before scales were recorded count as full).
 *
 * @example
 * ```ts
 * import { scaleLine } from "./_summary.ts";
 * console.log(scaleLine({ full: ["a", "b"] }, 2)); // Scale: all 2 results at full scale.
 * console.log(scaleLine({ full: ["a"], large: ["b"] }, 2)); // Scale: 1 result at full scale, 1 at large scale; …
 * ```
 */
export function scaleLine(scales: Partial<Record<string, readonly string[]>>, total: number): string {
  const present = Object.entries(scales).filter(([, names]) => names !== undefined && names.length > 0);
  if (present.length === 1 && present[0][0] === "full") return `Scale: all ${total} results at full scale.`;
  const parts = present.map(([scale, names], i) =>
    `${names!.length}${i === 0 ? ` result${names!.length === 1 ? "" : "s"}` : ""} at ${scale} scale`
  );
  return `Scale: ${parts.join(", ")}; each result is tagged with its scale` +
    (present.some(([s]) => s !== "full") ? " (results at another scale than full are of other models)." : ".");
}

/** A run's commit as shown: the short id, or "none". */
export function runCommit(r: RunInfo): string {
  return r.commit === null ? "none" : r.commit.slice(0, 10);
}
