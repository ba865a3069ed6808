/**
 * Makes an executed notebook's saved outputs fit to commit and to open anywhere:
 *
 * - every `image/svg+xml` output gets an `image/png` twin, because Jupyter drops SVG outputs of
 *   an untrusted notebook (every notebook opened from a fresh clone is untrusted) but shows PNG;
 * - paths under the repository become relative to it, so saved outputs name no folder of the
 *   machine that ran them.
 *
 * The runner applies this to every notebook it saves.
 *
 * @module
 */

import { REPO_ROOT } from "../env.ts";
import { pngForSvg } from "../figures/render.ts";

/** A notebook as nbformat 4 stores it (only the parts read here). */
export interface NotebookJson {
  cells: {
    cell_type: string;
    source?: string | string[];
    outputs?: Record<string, unknown>[];
    [key: string]: unknown;
  }[];
  [key: string]: unknown;
}

/** Options of {@linkcode normaliseOutputs}. */
export interface NormaliseOptions {
  /** The folder whose paths become relative. Default: the repository root. */
  root?: string;
  /** Renders an SVG to base64 PNG. Default: {@linkcode pngForSvg} at 1×, as lib/figures displays figures. */
  pngForSvg?: (svg: string) => string;
}

/** What {@linkcode normaliseOutputs} changed. */
export interface NormaliseReport {
  /** PNG twins added. */
  pngs: number;
  /** Strings in which a path was made relative. */
  paths: number;
}

function joined(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (Array.isArray(value) && value.every((v) => typeof v === "string")) return value.join("");
  return undefined;
}

/**
 * Replaces absolute paths under `root` (also as `file://` URLs) by paths relative to it.
 *
 * @example
 * ```ts
 * import { relativisePaths } from "./outputs.ts";
 * console.log(relativisePaths("saved /repo/figures/a.svg (file:///repo/lib/x.ts:3)", "/repo"));
 * // saved figures/a.svg (lib/x.ts:3)
 * ```
 */
export function relativisePaths(text: string, root: string): string {
  const base = root.replace(/\/+$/, "");
  return text.replaceAll(`file://${base}/`, "").replaceAll(`${base}/`, "").replaceAll(base, ".");
}

/**
 * Adds PNG twins to SVG outputs and makes repository paths relative, in place.
 *
 * @example
 * ```ts
 * import { normaliseOutputs } from "./outputs.ts";
 * const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="2"/>';
 * const nb = { cells: [{ cell_type: "code", outputs: [
 *   { output_type: "display_data", data: { "image/svg+xml": svg, "text/plain": "saved /repo/figures/a.svg" } },
 * ] }] };
 * console.log(normaliseOutputs(nb, { root: "/repo", pngForSvg: () => "PNG" })); // { pngs: 1, paths: 1 }
 * console.log(nb.cells[0].outputs[0].data); // { "image/svg+xml": ..., "text/plain": "saved figures/a.svg", "image/png": "PNG" }
 * ```
 */
export function normaliseOutputs(notebook: NotebookJson, options: NormaliseOptions = {}): NormaliseReport {
  const root = options.root ?? REPO_ROOT;
  const toPng = options.pngForSvg ?? ((svg: string) => pngForSvg(svg));
  const report: NormaliseReport = { pngs: 0, paths: 0 };
  const fix = (value: unknown): unknown => {
    const text = joined(value);
    if (text === undefined || !text.includes(root)) return value;
    report.paths++;
    return relativisePaths(text, root);
  };
  for (const cell of notebook.cells) {
    for (const output of cell.outputs ?? []) {
      if ("text" in output) output.text = fix(output.text);
      if ("evalue" in output) output.evalue = fix(output.evalue);
      if (Array.isArray(output.traceback)) output.traceback = output.traceback.map(fix);
      const data = output.data as Record<string, unknown> | undefined;
      if (data === undefined || data === null) continue;
      for (const [mime, value] of Object.entries(data)) {
        if (mime.startsWith("text/")) data[mime] = fix(value);
      }
      const svg = joined(data["image/svg+xml"]);
      if (svg !== undefined && data["image/png"] === undefined) {
        data["image/png"] = toPng(svg);
        report.pngs++;
      }
    }
  }
  return report;
}

/**
 * Normalises saved notebooks in place (`deno run -A lib/notebook/outputs.ts NOTEBOOK...`): for
 * notebooks saved from an interactive session, which the runner did not write. Returns the exit status.
 *
 * @example
 * ```ts
 * import { main } from "./outputs.ts";
 * console.log(await main([])); // 2
 * ```
 */
export async function main(paths: readonly string[]): Promise<number> {
  if (paths.length === 0) {
    console.error("usage: deno run -A lib/notebook/outputs.ts NOTEBOOK.ipynb...");
    return 2;
  }
  const { nbformatJson } = await import("./runner.ts");
  const { writeFileAtomic } = await import("../figures/atomic.ts");
  for (const path of paths) {
    const text = await Deno.readTextFile(path);
    const notebook = JSON.parse(text) as NotebookJson;
    if (!Array.isArray(notebook.cells)) throw new TypeError(`${path} is not a notebook: it has no "cells" list`);
    const report = normaliseOutputs(notebook);
    const out = nbformatJson(notebook);
    if (out !== text) await writeFileAtomic(path, out);
    console.log(`${path}: ${report.pngs} PNG twin(s) added, ${report.paths} output(s) with paths made relative`);
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
