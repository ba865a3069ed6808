/**
 * Reads a figures folder (its `manifest.json`, figure files, tables' CSVs and
 * claims JSON) into one {@linkcode ReportData} grouped by notebook.
 *
 * @module
 */

import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { REPO_ROOT } from "../env.ts";
import { normalizeClaims } from "../figures/claims.ts";
import type { NormalizedClaim } from "../figures/claims.ts";
import {
  ENTRY_KINDS,
  entryKind,
  entryScale,
  libraryCodeHash,
  MANIFEST_FILE,
  readManifest,
} from "../figures/manifest.ts";
import { type Scale, SCALES } from "../env.ts";
import type { Config, ManifestEntry } from "../figures/manifest.ts";
import { countOutcomes } from "../stats/verdict.ts";
import type { OutcomeCounts } from "../stats/verdict.ts";
import { changesSinceCommit } from "./changes.ts";
import type { ChangesSinceCommit } from "./changes.ts";
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

/** A notebook's claims file, its claims in the three-outcome form (legacy claims normalised). */
export interface ReportClaims {
  entry: ManifestEntry;
  /** The JSON file, relative to the figures folder. */
  file: string;
  claims: NormalizedClaim[];
  /** What is doubtful about how the file was made (see {@linkcode provenanceFlags}); empty when nothing. */
  flags: string[];
}

/** How one notebook's results were made: a distinct config / backend / commit / code hash, with its dates. */
export interface RunInfo {
  config: Config;
  seed: ManifestEntry["seed"];
  backend: string | null;
  commit: string | null;
  dirty: boolean | null;
  /** The entries' code hash; `null` outside a checkout, `undefined` when not recorded. */
  codeHash?: string | null;
  /** The scale the entries were made at ("full" for entries saved before scales were recorded). */
  scale: Scale;
  /** What is doubtful about how these results were made (see {@linkcode provenanceFlags}); empty when nothing. */
  flags: string[];
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

/**
 * Counts of the claims that count as evidence, by outcome (`countOutcomes` of
 * `lib/stats`), plus those that do not (`evidence: false`: checks that hold by
 * construction), which are left out of every other count.
 */
export interface ClaimCounts extends OutcomeCounts {
  /** Claims with `evidence: false`: shown, not counted. */
  notCounted: number;
}

/** Provenance of the manifest's entries, against the tree the report is built from. */
export interface ProvenanceSummary {
  /** The current tree's code hash (`libraryCodeHash`), or `null` when unknown. */
  codeHash: string | null;
  /** Entries in the manifest. */
  total: number;
  /** Names of the entries made from a tree with uncommitted changes (`dirty: true`). */
  dirty: string[];
  /** Names of the entries made under another code hash than the current tree's. */
  otherCode: string[];
  /** Names of the entries that record no code hash (saved before code hashes were recorded, or outside a checkout). */
  noCodeHash: string[];
  /**
   * Names of the entries at each scale they were made at (`entryScale`: "full" when not recorded), scales with no
   * entry left out. Absent in data built by hand; the report then says nothing about scales.
   */
  scales?: Partial<Record<Scale, string[]>>;
}

/** The whole report's data. */
export interface ReportData {
  /** The folder read, absolute. */
  figuresDir: string;
  /** The latest save date in the manifest (the report's "as of"), or `null` when it is empty. */
  asOf: string | null;
  notebooks: NotebookSection[];
  summary: ClaimCounts;
  /** The claims whose outcome changed since the last committed report. */
  changes: ChangesSinceCommit;
  provenance: ProvenanceSummary;
}

/** Options for {@linkcode loadReport}. */
export interface LoadReportOptions {
  /** Which image of a figure to embed: `"svg"` (default, falls back to PNG) or `"png"`. */
  image?: "svg" | "png";
  /**
   * The folder whose claims files at git `HEAD` are the last committed report, to list the claims whose
   * outcome changed since (see `changesSinceCommit`). Default: the figures folder itself.
   */
  baseline?: string;
  /** The current tree's code hash, to mark results made under other code. Default `libraryCodeHash()`. */
  codeHash?: string | null;
}

/** Entries without a notebook are grouped under this name. */
export const OTHER_NOTEBOOK = "other";

/**
 * Counts claims by outcome for the report's summary: `countOutcomes` over the
 * claims that count as evidence, and apart from them the claims with
 * `evidence: false` (by construction, not counted).
 *
 * @example
 * ```ts
 * import { normalizeClaims } from "../figures/claims.ts";
 * import { countClaims } from "./load.ts";
 * const c = (reproduced: boolean | null, id: string) => ({ id, claim: "c", paper: "p", measured: "m", reproduced });
 * const claims = normalizeClaims([c(true, "a"), c(false, "b"), c(null, "c"), {
 *   id: "d", claim: "c", paper: "p", measured: "m", outcome: "reproduced", rule: "fixed by the code", evidence: false,
 * }]);
 * const counts = countClaims(claims);
 * console.log(counts.reproduced, counts.notReproduced, counts.inconclusive, counts.total, counts.notCounted); // 1 1 1 3 1
 * ```
 */
export function countClaims(claims: readonly NormalizedClaim[]): ClaimCounts {
  if (!Array.isArray(claims)) {
    throw new TypeError(
      `countClaims: claims must be an array of normalised claims (normalizeClaims), got ${typeof claims}`,
    );
  }
  const counted = claims.filter((c) => c.evidence !== false);
  return { ...countOutcomes(counted), notCounted: claims.length - counted.length };
}

/**
 * What is doubtful about how a manifest entry was made, against the current
 * tree's code hash: `"uncommitted changes"` when it was made from a dirty tree,
 * `"other code"` when its code hash differs from the current one, `"no code
 * hash"` when it records none (saved before code hashes were recorded, or
 * outside a checkout). Empty when nothing is.
 *
 * @example
 * ```ts
 * import { provenanceFlags } from "./load.ts";
 * const current = "a".repeat(64);
 * console.log(provenanceFlags({ dirty: true, codeHash: "b".repeat(64) }, current)); // ["uncommitted changes", "other code"]
 * console.log(provenanceFlags({ dirty: false, codeHash: current }, current)); // []
 * ```
 */
export function provenanceFlags(
  entry: { dirty?: boolean | null; codeHash?: string | null },
  currentCodeHash: string | null,
): string[] {
  const flags: string[] = [];
  if (entry.dirty === true) flags.push("uncommitted changes");
  if (typeof entry.codeHash !== "string") flags.push("no code hash");
  else if (currentCodeHash !== null && entry.codeHash !== currentCodeHash) flags.push("other code");
  return flags;
}

/**
 * Throws unless `dir` is a folder holding `manifest.json`; returns its absolute path. `label`
 * says where `dir` came from in the message (default "the figures folder"; the report task
 * passes its flag).
 *
 * @example
 * ```ts
 * import { checkFiguresDir } from "./load.ts";
 * const dir = await Deno.makeTempDir();
 * const err = await checkFiguresDir(dir, "--figures-dir").catch((e) => e);
 * console.log(err.message.includes("holds no manifest.json")); // true
 * ```
 */
export async function checkFiguresDir(dir: string, label = "the figures folder"): Promise<string> {
  if (typeof dir !== "string" || dir.length === 0) {
    throw new TypeError(`report: ${label} must be a non-empty path, got ${JSON.stringify(dir) ?? String(dir)}`);
  }
  const root = resolve(dir);
  const fix = `give the folder that holds ${MANIFEST_FILE} (the notebooks write figures/ and its ${MANIFEST_FILE}), ` +
    "e.g. --figures-dir figures";
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(root);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(`report: ${label} ${dir} does not exist (resolved to ${root}); ${fix}`);
    }
    throw err;
  }
  if (!info.isDirectory) throw new Error(`report: ${label} ${dir} is not a folder (resolved to ${root}); ${fix}`);
  const manifest = await Deno.stat(join(root, MANIFEST_FILE)).catch((err) => {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  });
  if (manifest === null || !manifest.isFile) {
    throw new Error(
      `report: ${label} ${dir} holds no ${MANIFEST_FILE} (resolved to ${root}), so there is nothing to report; ` +
        `${fix}, or run the notebooks first (deno task reproduce)`,
    );
  }
  return root;
}

/** What is wrong with a manifest entry, or null when the report can use it. */
function entryProblem(entry: unknown): string | null {
  if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
    return `is ${entry === null ? "null" : Array.isArray(entry) ? "an array" : `a ${typeof entry}`}, not an object`;
  }
  const e = entry as Record<string, unknown>;
  if (typeof e.name !== "string" || e.name === "") return "has no name";
  if (!Array.isArray(e.files) || !e.files.every((f) => typeof f === "string" && f !== "")) {
    return "has no files list of file names";
  }
  if (typeof e.date !== "string") return "has no date";
  if (e.kind !== undefined && !ENTRY_KINDS.includes(e.kind as ManifestEntry["kind"] & string)) {
    return `has kind ${JSON.stringify(e.kind)}, not one of ${ENTRY_KINDS.join(", ")}`;
  }
  for (const key of ["notebook", "caption"]) {
    if (e[key] !== undefined && typeof e[key] !== "string") return `has a ${key} that is not a string`;
  }
  if (e.codeHash !== undefined && e.codeHash !== null && typeof e.codeHash !== "string") {
    return "has a codeHash that is not a string";
  }
  if (e.scale !== undefined && !(SCALES as readonly unknown[]).includes(e.scale)) {
    return `has scale ${JSON.stringify(e.scale)}, not one of ${SCALES.join(", ")}`;
  }
  return null;
}

/**
 * Checks every entry of the manifest in `root`: an entry the report cannot use, or a file path
 * that leaves the folder (absolute, or through ".."), is an Error naming the manifest, the entry
 * and the path. Nothing is read here.
 */
function checkEntries(root: string, figures: Record<string, unknown>): void {
  const path = join(root, MANIFEST_FILE);
  const keys = Object.keys(figures);
  for (const [index, key] of keys.entries()) {
    const where = `${path}: entry ${index + 1} of ${keys.length}, figures[${JSON.stringify(key)}],`;
    const problem = entryProblem(figures[key]);
    if (problem !== null) {
      throw new Error(
        `report: ${where} ${problem}; the manifest is corrupt: rerun the notebook that saves "${key}" ` +
          `(deno task reproduce --only NN), or remove the entry from ${path}`,
      );
    }
    for (const file of (figures[key] as ManifestEntry).files) {
      if (isAbsolute(file) || !inside(root, resolve(root, file))) {
        throw new Error(
          `report: ${where} lists the file ${JSON.stringify(file)}, which is outside the figures folder ${root}; ` +
            `the report only embeds files inside it: fix or remove the entry in ${path}`,
        );
      }
    }
  }
}

/** Whether `path` (absolute, normalised) lies inside the folder `root`. */
function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel !== "" && rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

async function readFile(dir: string, file: string, entry: ManifestEntry): Promise<Uint8Array> {
  try {
    // A symbolic link may lead out of the folder: compare real paths before reading anything.
    const real = await Deno.realPath(join(dir, file));
    const realRoot = await Deno.realPath(dir);
    if (!inside(realRoot, real)) {
      throw new Error(
        `report: ${MANIFEST_FILE} entry "${entry.name}" lists ${JSON.stringify(file)}, which is a link to ${real}, ` +
          `outside the figures folder ${dir}; the report only embeds files inside it: replace the link with the file`,
      );
    }
    return await Deno.readFile(real);
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

/**
 * What a result is tagged with: its scale ("large scale") when the report's results are of several scales or not
 * all full scale, then its {@linkcode provenanceFlags}.
 *
 * @example
 * ```ts
 * import { resultFlags } from "./load.ts";
 * const e = { scale: "large" as const, dirty: false, codeHash: null };
 * console.log(resultFlags(e, { tagScale: true, currentCodeHash: null })); // ["large scale", "no code hash"]
 * console.log(resultFlags({ dirty: false, codeHash: null }, { tagScale: false, currentCodeHash: null })); // ["no code hash"]
 * ```
 */
export function resultFlags(
  entry: Pick<ManifestEntry, "dirty" | "codeHash" | "scale">,
  options: { tagScale: boolean; currentCodeHash: string | null },
): string[] {
  const scale = options.tagScale ? [`${entryScale(entry)} scale`] : [];
  return [...scale, ...provenanceFlags(entry, options.currentCodeHash)];
}

function runsOf(entries: ManifestEntry[], flagsOf: (e: ManifestEntry) => string[]): RunInfo[] {
  const byKey = new Map<string, RunInfo>();
  for (const e of [...entries].sort((a, b) => a.date.localeCompare(b.date))) {
    const key = JSON.stringify([
      e.config,
      e.seed,
      e.backend,
      e.commit,
      e.dirty,
      e.codeHash ?? "unrecorded",
      entryScale(e),
    ]);
    const run = byKey.get(key);
    if (run === undefined) {
      byKey.set(key, {
        config: e.config,
        seed: e.seed,
        backend: e.backend,
        commit: e.commit,
        dirty: e.dirty,
        ...(e.codeHash !== undefined ? { codeHash: e.codeHash } : {}),
        scale: entryScale(e),
        flags: flagsOf(e),
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
 * by name; entries in the order they were saved). A folder that does not exist
 * or holds no `manifest.json` (see {@linkcode checkFiguresDir}), a manifest entry
 * that is not an entry (`null`, no files...), a listed file outside the folder
 * (absolute, `..`, or a link leading out; it is not read), a file the manifest
 * lists but that is missing, a malformed claims file or CSV is an Error naming it.
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
    if (!["image", "baseline", "codeHash"].includes(key)) {
      throw new Error(`loadReport: unknown option "${key}"; expected image, baseline or codeHash`);
    }
  }
  const image = options.image ?? "svg";
  if (image !== "svg" && image !== "png") {
    throw new Error(`loadReport: options.image must be "svg" or "png", got ${JSON.stringify(image)}`);
  }
  if (options.baseline !== undefined && (typeof options.baseline !== "string" || options.baseline === "")) {
    throw new TypeError(
      `loadReport: options.baseline must be a folder path (the committed figures folder), got ${
        JSON.stringify(options.baseline) ?? String(options.baseline)
      }`,
    );
  }
  if (options.codeHash !== undefined && options.codeHash !== null && !/^[0-9a-f]{64}$/.test(String(options.codeHash))) {
    throw new TypeError(
      `loadReport: options.codeHash must be 64 lowercase hex digits (libraryCodeHash()) or null, got ${
        JSON.stringify(options.codeHash) ?? String(options.codeHash)
      }`,
    );
  }
  const root = await checkFiguresDir(dir);
  const currentCodeHash = options.codeHash !== undefined ? options.codeHash : await libraryCodeHash(REPO_ROOT);
  const manifest = await readManifest(root);
  checkEntries(root, manifest.figures);
  // Every result is tagged with its scale unless all are full scale (the default, and every result before scales).
  const scalesSeen = new Set(Object.values(manifest.figures).map(entryScale));
  const tagScale = scalesSeen.size > 1 || (scalesSeen.size === 1 && !scalesSeen.has("full"));
  const flagsOf = (e: ManifestEntry) => resultFlags(e, { tagScale, currentCodeHash });
  const groups = new Map<string, ManifestEntry[]>();
  for (const entry of Object.values(manifest.figures)) {
    const name = entry.notebook ?? OTHER_NOTEBOOK;
    groups.set(name, [...(groups.get(name) ?? []), entry]);
  }
  const notebooks: NotebookSection[] = [];
  const allClaims: NormalizedClaim[] = [];
  for (const notebook of [...groups.keys()].sort()) {
    const entries = groups.get(notebook)!.sort((a, b) => a.date.localeCompare(b.date) || a.name.localeCompare(b.name));
    const section: NotebookSection = {
      notebook,
      figures: [],
      tables: [],
      claims: [],
      runs: runsOf(entries, flagsOf),
    };
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
        const claims = normalizeClaims(parsed, `report: ${path}`);
        section.claims.push({ entry, file, claims, flags: flagsOf(entry) });
        allClaims.push(...claims);
      }
    }
    notebooks.push(section);
  }
  const entries = Object.values(manifest.figures);
  const dates = entries.map((e) => e.date).sort();
  const flagged = (flag: string) =>
    entries.filter((e) => provenanceFlags(e, currentCodeHash).includes(flag)).map((e) => e.name).sort();
  const current = notebooks.flatMap((n) =>
    n.claims.map((c) => ({
      file: c.file,
      notebook: n.notebook === OTHER_NOTEBOOK ? null : n.notebook,
      claims: c.claims,
      scale: entryScale(c.entry),
    }))
  );
  return {
    figuresDir: root,
    asOf: dates.at(-1) ?? null,
    notebooks,
    summary: countClaims(allClaims),
    changes: await changesSinceCommit(current, { baseline: options.baseline ?? root }),
    provenance: {
      codeHash: currentCodeHash,
      total: entries.length,
      dirty: flagged("uncommitted changes"),
      otherCode: flagged("other code"),
      noCodeHash: flagged("no code hash"),
      scales: Object.fromEntries(
        SCALES.map((s) => [s, entries.filter((e) => entryScale(e) === s).map((e) => e.name).sort()])
          .filter(([, names]) => names.length > 0),
      ),
    },
  };
}
