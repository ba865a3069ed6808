/**
 * `buildReport`: reads a figures folder and writes `report.html` and
 * `report.md` next to it (atomically).
 *
 * @module
 */

import { join, resolve } from "node:path";
import { figuresDir } from "../env.ts";
import { writeFileAtomic } from "../figures/atomic.ts";
import { renderHtml } from "./html.ts";
import { loadReport } from "./load.ts";
import type { ReportData } from "./load.ts";
import { renderMarkdown } from "./markdown.ts";

/** Above this many bytes of embedded SVG, figures are embedded as PNG instead. */
export const MAX_HTML_BYTES = 15_000_000;

/** Options for {@linkcode buildReport}; all optional. */
export interface BuildReportOptions {
  /** The figures folder to read. Default `figuresDir({ quick: false })` (`ATTNLAB_FIGURES_DIR` or `figures/`, even in quick mode). */
  figuresDir?: string;
  /** Where `report.html` and `report.md` go. Default: the figures folder. */
  outDir?: string;
  /** `"svg"` embeds SVGs, `"png"` PNGs; `"auto"` (default) SVGs unless the page would pass {@linkcode MAX_HTML_BYTES}. */
  image?: "svg" | "png" | "auto";
  /** The folder whose claims files at git `HEAD` are the last committed report. Default: the figures folder. */
  baseline?: string;
  /** The current tree's code hash, to mark results made under other code. Default `libraryCodeHash()`. */
  codeHash?: string | null;
}

/** What {@linkcode buildReport} wrote. */
export interface BuiltReport {
  html: string;
  markdown: string;
  /** Bytes of the HTML page. */
  htmlBytes: number;
  /** Which images were embedded. */
  image: "svg" | "png";
  data: ReportData;
}

/**
 * Builds the report from the manifest and writes `report.html` (one
 * self-contained page) and `report.md`, each atomically. Needs no browser.
 *
 * @example
 * ```ts
 * import { saveClaims } from "../figures/claims.ts";
 * import { buildReport } from "./build.ts";
 * const dir = await Deno.makeTempDir();
 * const claim = { id: "a", claim: "c", paper: "1", measured: "1.0", reproduced: true };
 * await saveClaims("demo_claims", [claim], { notebook: "01_demo", outDir: dir, backend: "cpu" });
 * const built = await buildReport({ figuresDir: dir });
 * console.log(built.html.endsWith(".html"), built.data.summary.total); // true 1
 * ```
 */
export async function buildReport(options: BuildReportOptions = {}): Promise<BuiltReport> {
  for (const key of Object.keys(options)) {
    if (!["figuresDir", "outDir", "image", "baseline", "codeHash"].includes(key)) {
      throw new Error(`buildReport: unknown option "${key}"; expected figuresDir, outDir, image, baseline or codeHash`);
    }
  }
  const mode = options.image ?? "auto";
  if (!["svg", "png", "auto"].includes(mode)) {
    throw new Error(`buildReport: options.image must be "svg", "png" or "auto", got ${JSON.stringify(mode)}`);
  }
  const dir = resolve(options.figuresDir ?? figuresDir({ quick: false }));
  const outDir = resolve(options.outDir ?? dir);
  let image: "svg" | "png" = mode === "png" ? "png" : "svg";
  const compare = {
    ...(options.baseline !== undefined ? { baseline: options.baseline } : {}),
    ...(options.codeHash !== undefined ? { codeHash: options.codeHash } : {}),
  };
  let data = await loadReport(dir, { image, ...compare });
  let page = new TextEncoder().encode(renderHtml(data));
  if (mode === "auto" && page.length > MAX_HTML_BYTES) {
    image = "png";
    data = await loadReport(dir, { image, ...compare });
    page = new TextEncoder().encode(renderHtml(data));
  }
  await Deno.mkdir(outDir, { recursive: true });
  const html = join(outDir, "report.html");
  const markdown = join(outDir, "report.md");
  await writeFileAtomic(html, page);
  await writeFileAtomic(markdown, renderMarkdown(data, { outDir }));
  return { html, markdown, htmlBytes: page.length, image, data };
}
