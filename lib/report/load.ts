/**
 * Reads a figures folder (its `manifest.json`, figure files, tables' CSVs and
 * claims JSON) into one {@linkcode ReportData} grouped by notebook.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { checkClaims } from "../figures/claims.ts";
import type { Claim } from "../figures/claims.ts";
import { entryKind, MANIFEST_FILE, readManifest } from "../figures/manifest.ts";
import type { Config, ManifestEntry } from "../figures/manifest.ts";
import { parseCsv } from "./csv.ts";

/** A figure and the image that shows it. */
export interface ReportFigure {
  entry: ManifestEntry;
  /** The file shown: the SVG when there is one, else the PNG. */
  file: string;
  mime: "image/svg+xml" | "image/png";
  bytes: Uint8Array;
}

/** A saved table and its cells as text. */
export interface ReportTable {
  entry: ManifestEntry;
  columns: string[];
  rows: string[][];
}

/** A notebook's claims file. */
export interface ReportClaims {
  entry: ManifestEntry;
  claims: Claim[];
}

/** How one notebook's results were made: a distinct config / backend / commit, with its dates. */
export interface RunInfo {
  config: Config;
  seed: ManifestEntry["seed"];
  backend: string | null;
  commit: string | null;
  dirty: boolean | null;
  /** Earliest and latest save date of the entries made this way. */
  firstDate: string;
  lastDate: string;
  /** Total compute time recorded, largest entry (the run's elapsed time), or `null`. */
  durationMs: number | null;
}

/** Everything one notebook contributed. */
export interface NotebookSection {
  /** The notebook name, or `"other"` for entries without one. */
  notebook: string;
  figures: ReportFigure[];
  tables: ReportTable[];
  claims: ReportClaims[];
  runs: RunInfo[];
}

/** Counts of claims by verdict. */
export interface ClaimCounts {
  total: number;
  reproduced: number;
  notReproduced: number;
  notComparable: number;
}

/** The whole report's data. */
export interface ReportData {
  /** The folder read, absolute. */
  figuresDir: string;
  /** The latest save date in the manifest (the report's "as of"), or `null` when it is empty. */
  asOf: string | null;
  notebooks: NotebookSection[];
  summary: ClaimCounts;
}

/** Options for {@linkcode loadReport}. */
export interface LoadReportOptions {
  /** Which image of a figure to embed: `"svg"` (default, falls back to PNG) or `"png"`. */
  image?: "svg" | "png";
}

/** Entries without a notebook are grouped under this name. */
export const OTHER_NOTEBOOK = "other";

/**
 * Counts claims by verdict.
 *
 * @example
 * ```ts
 * import { countClaims } from "./load.ts";
 * const c = (reproduced: boolean | null) => ({ id: "x", claim: "c", paper: "p", measured: "m", reproduced });
 * console.log(countClaims([c(true), c(false), c(null), c(true)]));
 * // { total: 4, reproduced: 2, notReproduced: 1, notComparable: 1 }
 * ```
 */
export function countClaims(claims: readonly Claim[]): ClaimCounts {
  return {
    total: claims.length,
    reproduced: claims.filter((c) => c.reproduced === true).length,
    notReproduced: claims.filter((c) => c.reproduced === false).length,
    notComparable: claims.filter((c) => c.reproduced === null).length,
  };
}

async function readFile(dir: string, file: string, entry: ManifestEntry): Promise<Uint8Array> {
  try {
    return await Deno.readFile(join(dir, file));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      const rerun = entry.notebook ? ` (deno task reproduce --only ${entry.notebook.slice(0, 2)})` : "";
      throw new Error(
        `report: ${join(dir, file)} is missing, but ${MANIFEST_FILE} lists it for ${entryKind(entry)} ` +
          `"${entry.name}"; rerun the notebook that saves it${rerun}, or drop stale entries with pruneManifest`,
      );
    }
    throw err;
  }
}

function runsOf(entries: ManifestEntry[]): RunInfo[] {
  const byKey = new Map<string, RunInfo>();
  for (const e of [...entries].sort((a, b) => a.date.localeCompare(b.date))) {
    const key = JSON.stringify([e.config, e.seed, e.backend, e.commit, e.dirty]);
    const run = byKey.get(key);
    if (run === undefined) {
      byKey.set(key, {
        config: e.config,
        seed: e.seed,
        backend: e.backend,
        commit: e.commit,
        dirty: e.dirty,
        firstDate: e.date,
        lastDate: e.date,
        durationMs: e.durationMs,
      });
    } else {
      run.lastDate = e.date;
      if (e.durationMs !== null) run.durationMs = Math.max(run.durationMs ?? 0, e.durationMs);
    }
  }
  return [...byKey.values()];
}

/**
 * Reads `dir`'s manifest and every file it lists, grouped by notebook (sorted
 * by name; entries in the order they were saved). A file the manifest lists
 * but that is missing, a malformed claims file or CSV is an Error naming it.
 *
 * @example
 * ```ts
 * import { saveClaims } from "../figures/claims.ts";
 * import { loadReport } from "./load.ts";
 * const dir = await Deno.makeTempDir();
 * const claim = { id: "a", claim: "c", paper: "1", measured: "1.0", reproduced: true };
 * await saveClaims("demo_claims", [claim], { notebook: "01_demo", outDir: dir, backend: "cpu" });
 * const data = await loadReport(dir);
 * console.log(data.notebooks.map((n) => n.notebook), data.summary.reproduced); // ["01_demo"] 1
 * ```
 */
export async function loadReport(dir: string, options: LoadReportOptions = {}): Promise<ReportData> {
  for (const key of Object.keys(options)) {
    if (key !== "image") throw new Error(`loadReport: unknown option "${key}"; the only option is image`);
  }
  const image = options.image ?? "svg";
  if (image !== "svg" && image !== "png") {
    throw new Error(`loadReport: options.image must be "svg" or "png", got ${JSON.stringify(image)}`);
  }
  const root = resolve(dir);
  const manifest = await readManifest(root);
  const groups = new Map<string, ManifestEntry[]>();
  for (const entry of Object.values(manifest.figures)) {
    const name = entry.notebook ?? OTHER_NOTEBOOK;
    groups.set(name, [...(groups.get(name) ?? []), entry]);
  }
  const notebooks: NotebookSection[] = [];
  const allClaims: Claim[] = [];
  for (const notebook of [...groups.keys()].sort()) {
    const entries = groups.get(notebook)!.sort((a, b) => a.date.localeCompare(b.date) || a.name.localeCompare(b.name));
    const section: NotebookSection = { notebook, figures: [], tables: [], claims: [], runs: runsOf(entries) };
    for (const entry of entries) {
      const kind = entryKind(entry);
      if (kind === "figure") {
        const svg = entry.files.find((f) => f.endsWith(".svg"));
        const png = entry.files.find((f) => f.endsWith(".png"));
        const file = image === "png" ? png ?? svg : svg ?? png;
        if (file === undefined) {
          throw new Error(`report: figure "${entry.name}" lists no .svg or .png file in ${MANIFEST_FILE}`);
        }
        const mime = file.endsWith(".svg") ? "image/svg+xml" : "image/png";
        section.figures.push({ entry, file, mime, bytes: await readFile(root, file, entry) });
      } else if (kind === "table") {
        const file = entry.files.find((f) => f.endsWith(".csv"));
        if (file === undefined) throw new Error(`report: table "${entry.name}" lists no .csv file in ${MANIFEST_FILE}`);
        const text = new TextDecoder().decode(await readFile(root, file, entry));
        const [columns = [], ...rows] = parseCsv(text, join(root, file));
        section.tables.push({ entry, columns, rows });
      } else {
        const file = entry.files.find((f) => f.endsWith(".json"));
        if (file === undefined) {
          throw new Error(`report: claims "${entry.name}" list no .json file in ${MANIFEST_FILE}`);
        }
        const path = join(root, file);
        let parsed: unknown;
        try {
          parsed = JSON.parse(new TextDecoder().decode(await readFile(root, file, entry)));
        } catch (err) {
          if (err instanceof SyntaxError) throw new Error(`report: ${path} is not valid JSON (${err.message})`);
          throw err;
        }
        const claims = checkClaims(parsed, `report: ${path}`);
        section.claims.push({ entry, claims });
        allClaims.push(...claims);
      }
    }
    notebooks.push(section);
  }
  const dates = Object.values(manifest.figures).map((e) => e.date).sort();
  return { figuresDir: root, asOf: dates.at(-1) ?? null, notebooks, summary: countClaims(allClaims) };
}
