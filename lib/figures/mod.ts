/**
 * Figures for attnlab notebooks: build a plot with Observable Plot, then save
 * it with {@linkcode saveFigure}, which writes `<name>.svg`, `<name>.png` and
 * `<name>.csv` (the data) to the figures folder, records the run in
 * `manifest.json`, and shows the figure inline in Jupyter. Paper-versus-measured
 * tables go through {@linkcode saveTable}, a notebook's verdicts through
 * {@linkcode saveClaims} (three outcomes, each with the rule that decided it);
 * `deno task report` gathers all three. {@linkcode md} displays Markdown built
 * from measured numbers.
 *
 * A figure's files and its manifest entry change together: a save checks
 * everything first, writes every file under a temporary name, then renames them
 * into place with the manifest last, under the folder's lock (`file_set.ts`
 * explains what a crash at any point leaves and how the next save repairs it).
 * Inline figures carry an `image/png` twin beside the SVG ({@linkcode pngForSvg}),
 * so they show in untrusted notebooks too, and list their files relative to
 * the repository root.
 *
 * ```ts
 * import * as Plot from "@observablehq/plot";
 * import { plotDocument, saveFigure, startRun, table } from "./mod.ts"; // from a notebook: "../lib/figures/mod.ts"
 *
 * const run = startRun({ notebook: "01_scaling", config: { lengths: [64, 128] }, seed: 42 });
 * const rows = [{ n: 64, ms: 1.2 }, { n: 128, ms: 4.1 }];
 * const plot = Plot.plot({
 *   document: plotDocument(),
 *   x: { type: "log" },
 *   marks: [Plot.line(rows, { x: "n", y: "ms" })],
 * });
 * table(rows); // displays as a table when it ends a cell
 * await saveFigure("scaling", plot, { data: rows, run, outDir: await Deno.makeTempDir() });
 * ```
 *
 * @module
 */

export { plotDocument } from "./dom.ts";
export type { PlotDocument } from "./dom.ts";
export { FONT_FAMILY, svgSize, toSvgString } from "./svg.ts";
export type { DomElement, DomNode, FigureInput } from "./svg.ts";
export { DISPLAY_PNG_SCALE, PNG_SCALE, pngForSvg, renderSvg, svgToPng } from "./render.ts";
export type { RenderedPng, SvgToPngOptions } from "./render.ts";
export { DEFAULT_DIGITS, formatNumber, toCsv } from "./csv.ts";
export type { Cell, Row, ToCsvOptions } from "./csv.ts";
export { JUPYTER_DISPLAY, md, show, svgMimeBundle } from "./display.ts";
export type { Displayable, MimeBundle, ShownFigure, ShownMarkdown } from "./display.ts";
export { table } from "./table.ts";
export type { Table, TableOptions } from "./table.ts";
export {
  checkConfig,
  ENTRY_KINDS,
  entryKind,
  entryScale,
  gitState,
  libraryCodeHash,
  MANIFEST_FILE,
  PROVENANCE_ENV,
  provenanceFromEnv,
  pruneManifest,
  readManifest,
  startRun,
} from "./manifest.ts";
export type {
  Config,
  EntryKind,
  GitState,
  GitStateOptions,
  Manifest,
  ManifestEntry,
  Run,
  Seed,
  StartRunOptions,
} from "./manifest.ts";
export {
  checkClaims,
  claimsTable,
  LEGACY_RULE,
  normalizeClaims,
  outcomeMark,
  saveClaims,
  saveTable,
} from "./claims.ts";
export type {
  Claim,
  ClaimText,
  LegacyClaim,
  NormalizedClaim,
  OutcomeClaim,
  SavedResult,
  SaveResultOptions,
  Settle,
} from "./claims.ts";
export { displayPath, FIGURE_NAME, saveFigure } from "./save.ts";
export type { SavedFigure, SaveFigureOptions } from "./save.ts";
export { readPngSize } from "./png.ts";
