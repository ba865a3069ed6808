/**
 * `saveFigure`: the one way notebooks save a figure.
 *
 * A save checks everything before it writes anything: the arguments, the
 * figures folder (`ensureFiguresDir`: it names `ATTNLAB_FIGURES_DIR` when that
 * is at fault), and that `manifest.json` is readable. It then renders the SVG,
 * PNG and CSV in memory and hands them to `recordFigure`, which writes them
 * under temporary names and renames them into place with the manifest entry
 * last, under the folder's lock (`file_set.ts` says what a crash leaves).
 *
 * @module
 */

import { isAbsolute, join, relative, sep } from "node:path";
import { ensureFiguresDir, REPO_ROOT, scale as envScale } from "../env.ts";
import { columnsOf, toCsv } from "./csv.ts";
import type { Row } from "./csv.ts";
import { JUPYTER_DISPLAY, svgMimeBundle } from "./display.ts";
import type { Displayable, MimeBundle } from "./display.ts";
import { checkCaption, checkConfig, checkSeed, gitState, readManifest, recordFigure } from "./manifest.ts";
import type { Config, ManifestEntry, Run, Seed } from "./manifest.ts";
import { svgToPng } from "./render.ts";
import { toSvgString } from "./svg.ts";
import type { FigureInput } from "./svg.ts";

/** Figure names: lowercase letters, digits, `_` and `-`, starting with a letter or digit. */
export const FIGURE_NAME = /^[a-z0-9][a-z0-9_-]*$/;

/** Options for {@linkcode saveFigure}; all optional. */
export interface SaveFigureOptions {
  /** The data behind the figure, as flat row objects; written to `<name>.csv`. */
  data?: readonly Row[];
  /** From {@linkcode startRun}: supplies notebook, config, seed and the compute time. */
  run?: Run;
  /** Notebook name for the manifest; overrides `run.notebook`. */
  notebook?: string;
  /** Settings the figure depends on; overrides `run.config`. Default `{}`. */
  config?: Config;
  /** Random seed; overrides `run.seed`. Default `null`. */
  seed?: Seed;
  /** Backend name for the manifest. Default: the TensorFlow.js backend in use, or `null` if none. */
  backend?: string;
  /** Compute time in milliseconds; overrides the time measured by `run`. */
  durationMs?: number;
  /** Output folder. Default: `figuresDir()` (`ATTNLAB_FIGURES_DIR`, else `figures/`, or a temporary folder in quick mode). */
  outDir?: string;
  /** One or two sentences saying what the figure shows; stored in the manifest and shown in the report. */
  caption?: string;
}

const OPTION_KEYS = ["data", "run", "notebook", "config", "seed", "backend", "durationMs", "outDir", "caption"];

/**
 * A path as shown to people: relative to the repository root (with `/`) when it
 * lies inside it, so saved notebook outputs carry no machine's absolute paths;
 * absolute otherwise.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { REPO_ROOT } from "../env.ts";
 * import { displayPath } from "./save.ts";
 * console.log(displayPath(join(REPO_ROOT, "figures", "a.svg")), displayPath("/elsewhere/a.svg")); // figures/a.svg /elsewhere/a.svg
 * ```
 */
export function displayPath(path: string): string {
  const rel = relative(REPO_ROOT, path);
  if (rel === "" || rel.startsWith("..") || isAbsolute(rel)) return path;
  return rel.split(sep).join("/");
}

/** What {@linkcode saveFigure} returns; displays itself inline in Jupyter. */
export interface SavedFigure extends Displayable {
  name: string;
  /** The normalised SVG that was written. */
  svg: string;
  /** Absolute paths of the files written. */
  paths: { svg: string; png: string; csv?: string };
  /** The manifest entry recorded for this figure. */
  entry: ManifestEntry;
}

function suggestName(name: string): string {
  const slug = name.toLowerCase().replace(/[^a-z0-9_-]+/g, "_").replace(/^[_-]+|[_-]+$/g, "");
  return slug === "" ? "attention_heatmap" : slug;
}

function checkOptions(options: SaveFigureOptions): void {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new Error(`saveFigure: options must be an object like { data: rows, run }, got ${String(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.includes(key)) {
      throw new Error(`saveFigure: unknown option "${key}"; expected one of ${OPTION_KEYS.join(", ")}`);
    }
  }
  if (options.notebook !== undefined && typeof options.notebook !== "string") {
    throw new Error(`saveFigure: options.notebook must be a string, got ${typeof options.notebook}`);
  }
  if (options.backend !== undefined && typeof options.backend !== "string") {
    throw new Error(`saveFigure: options.backend must be a string, got ${typeof options.backend}`);
  }
  if (options.outDir !== undefined && (typeof options.outDir !== "string" || options.outDir === "")) {
    throw new Error(`saveFigure: options.outDir must be a non-empty folder path, got ${String(options.outDir)}`);
  }
  checkCaption(options.caption, "saveFigure");
  const duration = options.durationMs;
  if (duration !== undefined && !(typeof duration === "number" && Number.isFinite(duration) && duration >= 0)) {
    throw new Error(`saveFigure: options.durationMs must be a non-negative number of milliseconds, got ${duration}`);
  }
  if (options.run !== undefined && typeof options.run?.elapsedMs !== "function") {
    throw new Error("saveFigure: options.run must be the value returned by startRun()");
  }
}

async function currentBackend(): Promise<string | null> {
  const { backendName } = await import("../backend.ts");
  const name = backendName();
  return typeof name === "string" && name !== "" ? name : null;
}

/**
 * Saves a figure as `<name>.svg`, `<name>.png` (2x, white background, DejaVu
 * fonts) and, when `options.data` is given, `<name>.csv`; without data a stale
 * `<name>.csv` is removed. The files and the figure's entry in `manifest.json`
 * (config, seed, backend, git commit, date, compute time, and
 * `options.caption` when given) change together: everything is checked first
 * (arguments, the folder, a readable manifest), then written under temporary
 * names and renamed into place with the manifest last, under the folder's lock.
 * The same inputs give byte-identical SVG, PNG and CSV.
 *
 * The result displays the figure inline in Jupyter as `image/svg+xml` with an
 * `image/png` twin (1x, for untrusted notebooks, where Jupyter drops SVG), and
 * lists the files relative to the repository root.
 *
 * @example
 * ```ts
 * import * as Plot from "@observablehq/plot";
 * import { plotDocument, saveFigure, startRun } from "./mod.ts";
 * const run = startRun({ notebook: "demo", config: { n: [64, 128] }, seed: 1 });
 * const rows = [{ n: 64, ms: 1.5 }, { n: 128, ms: 5.9 }];
 * const plot = Plot.plot({ document: plotDocument(), marks: [Plot.line(rows, { x: "n", y: "ms" })] });
 * const saved = await saveFigure("demo_scaling", plot, { data: rows, run, outDir: await Deno.makeTempDir() });
 * console.log(Object.keys(saved.paths), saved.entry.seed); // ["svg", "png", "csv"] 1
 * ```
 */
export async function saveFigure(
  name: string,
  figure: FigureInput,
  options: SaveFigureOptions = {},
): Promise<SavedFigure> {
  if (typeof name !== "string" || !FIGURE_NAME.test(name)) {
    throw new Error(
      `saveFigure: name must match ${FIGURE_NAME} (lowercase letters, digits, "_" and "-", starting with a ` +
        `letter or digit), got ${JSON.stringify(name)}; use for example "${suggestName(String(name))}"`,
    );
  }
  checkOptions(options);
  const { run } = options;
  if (options.data !== undefined) columnsOf(options.data, "saveFigure: options.data");
  const config = checkConfig(options.config ?? run?.config ?? {}, "saveFigure");
  const seed = checkSeed(options.seed !== undefined ? options.seed : run?.seed ?? null, "saveFigure");
  const notebook = options.notebook ?? run?.notebook;
  const durationMs = options.durationMs !== undefined ? Math.round(options.durationMs) : run?.elapsedMs() ?? null;
  const dir = ensureFiguresDir(options.outDir, { label: "saveFigure: options.outDir" });
  await readManifest(dir); // fails now, before the rendering, if the manifest is unreadable

  const svg = toSvgString(figure);
  const png = svgToPng(svg);
  const csv = options.data !== undefined ? toCsv(options.data) : undefined;

  const paths: SavedFigure["paths"] = { svg: join(dir, `${name}.svg`), png: join(dir, `${name}.png`) };
  if (csv !== undefined) paths.csv = join(dir, `${name}.csv`);
  const { commit, dirty, codeHash } = await gitState(REPO_ROOT, dir);
  const entry: ManifestEntry = {
    name,
    files: Object.values(paths).map((p) => p.slice(dir.length + 1)),
    ...(notebook !== undefined ? { notebook } : {}),
    config,
    seed,
    backend: options.backend ?? await currentBackend(),
    commit,
    dirty,
    codeHash,
    date: new Date().toISOString(),
    durationMs,
    ...(options.caption !== undefined ? { caption: options.caption } : {}),
    scale: run?.scale ?? envScale(),
  };
  await recordFigure(dir, entry, {
    files: [[`${name}.svg`, svg], [`${name}.png`, png], ...(csv !== undefined ? [[`${name}.csv`, csv] as const] : [])],
    remove: csv === undefined ? [`${name}.csv`] : [],
  });
  const listing = Object.values(paths).map(displayPath).join("\n");
  let bundle: MimeBundle | undefined;
  return {
    name,
    svg,
    paths,
    entry,
    [JUPYTER_DISPLAY]: () => bundle ??= svgMimeBundle(svg, `saved ${name}:\n${listing}`),
  };
}
