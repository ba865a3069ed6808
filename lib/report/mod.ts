/**
 * The report for people who read results rather than notebooks: one
 * self-contained HTML page and a Markdown version, built from
 * `figures/manifest.json` and the figures, tables and claims it lists, and
 * checked in headless chromium. Run it with `deno task report`.
 *
 * It opens with the three-outcome summary (reproduced, not reproduced,
 * inconclusive; checks that hold by construction listed apart and not
 * counted), every inconclusive claim with its reason and what would settle it,
 * the claims whose outcome changed since the last committed report (the claims
 * files at git `HEAD`), and the provenance of the results: those made from a
 * tree with uncommitted changes or under another code hash are marked.
 *
 * ```ts
 * import { buildReport, renderHtml } from "./mod.ts"; // from a script: "../lib/report/mod.ts"
 * import { saveClaims } from "../figures/mod.ts";
 * const dir = await Deno.makeTempDir();
 * const claim = { id: "a", claim: "c", paper: "1", measured: "1.0", outcome: "reproduced" as const, rule: "1.0 ≥ 1" };
 * await saveClaims("demo_claims", [claim], { notebook: "01_demo", outDir: dir, backend: "cpu" });
 * const built = await buildReport({ figuresDir: dir });
 * console.log(built.data.summary, typeof renderHtml);
 * ```
 *
 * @module
 */

export { buildReport, MAX_HTML_BYTES } from "./build.ts";
export type { BuildReportOptions, BuiltReport } from "./build.ts";
export { escapeHtml, renderHtml, sectionId, verdictMark } from "./html.ts";
export { escapeMarkdown, renderMarkdown } from "./markdown.ts";
export type { RenderMarkdownOptions } from "./markdown.ts";
export { checkFiguresDir, countClaims, loadReport, OTHER_NOTEBOOK, provenanceFlags } from "./load.ts";
export type {
  ClaimCounts,
  LoadReportOptions,
  NotebookSection,
  ProvenanceSummary,
  ReportClaims,
  ReportData,
  ReportFigure,
  ReportTable,
  RunInfo,
} from "./load.ts";
export { changesSinceCommit } from "./changes.ts";
export type { ChangesOptions, ChangesSinceCommit, ClaimsFile, OutcomeChange } from "./changes.ts";
export { parseCsv } from "./csv.ts";
export { CHROMIUM_FLAGS, CHROMIUM_INSTALL_HINT, CHROMIUM_PATH, chromiumAvailable, verifyReport } from "./verify.ts";
export type { VerifyReportOptions, VerifyResult } from "./verify.ts";
