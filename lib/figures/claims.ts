/**
 * `saveClaims` and `saveTable`: what a notebook measured against what the
 * paper says, saved next to its figures for `deno task report`.
 *
 * - `saveClaims(name, claims, { run })` writes `<name>.json`: an array of
 *   `{ id, claim, paper, measured, reproduced, note? }`, and records a
 *   manifest entry of kind `"claims"`.
 * - `saveTable(name, rows, { run, caption })` writes `<name>.csv` and records
 *   a manifest entry of kind `"table"`.
 *
 * Both check everything first (arguments, config, the folder, a readable
 * manifest), then save the file and its manifest entry together the way
 * `saveFigure` does, recording config, seed, backend, commit and date.
 *
 * @module
 */

import { join } from "node:path";
import { ensureFiguresDir, REPO_ROOT } from "../env.ts";
import { columnsOf, toCsv } from "./csv.ts";
import type { Row } from "./csv.ts";
import { JUPYTER_DISPLAY } from "./display.ts";
import type { Displayable } from "./display.ts";
import { checkCaption, checkConfig, checkSeed, gitState, readManifest, recordFigure } from "./manifest.ts";
import type { Config, EntryKind, ManifestEntry, Run, Seed } from "./manifest.ts";
import { FIGURE_NAME } from "./save.ts";
import { table } from "./table.ts";

/** One statement of the paper set against what a notebook measured. */
export interface Claim {
  /** Short identifier, unique within the notebook, e.g. `"softmax_bound"`. */
  id: string;
  /** What the paper says, in a sentence. */
  claim: string;
  /** The paper's number or statement. */
  paper: string;
  /** The measured number, formatted. */
  measured: string;
  /** Whether the measurement agrees with the paper; `null` when they cannot be compared. */
  reproduced: boolean | null;
  /** Anything a reader needs to judge the comparison. */
  note?: string;
}

/** Options for {@linkcode saveClaims} and {@linkcode saveTable}; all optional. */
export interface SaveResultOptions {
  /** From `startRun`: supplies notebook, config, seed and the compute time. */
  run?: Run;
  /** Notebook name for the manifest; overrides `run.notebook`. */
  notebook?: string;
  /** Settings the result depends on; overrides `run.config`. Default `{}`. */
  config?: Config;
  /** Random seed; overrides `run.seed`. Default `null`. */
  seed?: Seed;
  /** Backend name for the manifest. Default: the TensorFlow.js backend in use, or `null`. */
  backend?: string;
  /** What the table shows (tables only; claims carry their own text). */
  caption?: string;
  /** Output folder. Default: `figuresDir()` (`ATTNLAB_FIGURES_DIR`, else `figures/`, or a temporary folder in quick mode). */
  outDir?: string;
}

/** What {@linkcode saveClaims} and {@linkcode saveTable} return; displays as a table in Jupyter. */
export interface SavedResult extends Displayable {
  name: string;
  /** Absolute path of the file written. */
  path: string;
  /** The manifest entry recorded. */
  entry: ManifestEntry;
}

const CLAIM_KEYS = ["id", "claim", "paper", "measured", "reproduced", "note"];
const CLAIM_ID = /^[a-z0-9][a-z0-9_-]*$/;

function checkName(name: unknown, where: string): string {
  if (typeof name !== "string" || !FIGURE_NAME.test(name)) {
    throw new Error(
      `${where}: name must match ${FIGURE_NAME} (lowercase letters, digits, "_" and "-"), ` +
        `got ${JSON.stringify(name)}; use for example "01_claims"`,
    );
  }
  return name;
}

function checkOptions(options: unknown, where: string, allowCaption: boolean): SaveResultOptions {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new Error(`${where}: options must be an object like { run }, got ${String(options)}`);
  }
  const keys = ["run", "notebook", "config", "seed", "backend", "outDir", ...(allowCaption ? ["caption"] : [])];
  for (const key of Object.keys(options)) {
    if (!keys.includes(key)) throw new Error(`${where}: unknown option "${key}"; expected one of ${keys.join(", ")}`);
  }
  const o = options as SaveResultOptions;
  for (const key of ["notebook", "backend"] as const) {
    if (o[key] !== undefined && typeof o[key] !== "string") {
      throw new Error(`${where}: options.${key} must be a string, got ${typeof o[key]}`);
    }
  }
  if (o.outDir !== undefined && (typeof o.outDir !== "string" || o.outDir === "")) {
    throw new Error(`${where}: options.outDir must be a non-empty folder path, got ${String(o.outDir)}`);
  }
  if (o.run !== undefined && typeof o.run?.elapsedMs !== "function") {
    throw new Error(`${where}: options.run must be the value returned by startRun()`);
  }
  checkCaption(o.caption, where);
  return o;
}

/**
 * Checks a list of claims and returns it; the errors name the claim and field at fault.
 *
 * @example
 * ```ts
 * import { checkClaims } from "./claims.ts";
 * const claims = checkClaims([
 *   { id: "bound", claim: "softmax's |∂p/∂s| ≤ 1/4", paper: "0.25", measured: "0.25", reproduced: true },
 * ]);
 * console.log(claims.length); // 1
 * ```
 */
export function checkClaims(claims: unknown, where = "saveClaims"): Claim[] {
  if (!Array.isArray(claims)) {
    throw new Error(
      `${where}: claims must be an array of { id, claim, paper, measured, reproduced }, got ${typeof claims}`,
    );
  }
  const seen = new Set<string>();
  claims.forEach((c, i) => {
    if (c === null || typeof c !== "object" || Array.isArray(c)) {
      throw new Error(`${where}: claims[${i}] must be an object { id, claim, paper, measured, reproduced }`);
    }
    for (const key of Object.keys(c)) {
      if (!CLAIM_KEYS.includes(key)) {
        throw new Error(`${where}: claims[${i}] has unknown field "${key}"; expected ${CLAIM_KEYS.join(", ")}`);
      }
    }
    const claim = c as Record<string, unknown>;
    if (typeof claim.id !== "string" || !CLAIM_ID.test(claim.id)) {
      throw new Error(`${where}: claims[${i}].id must match ${CLAIM_ID}, got ${JSON.stringify(claim.id)}`);
    }
    if (seen.has(claim.id)) {
      throw new Error(`${where}: claims[${i}].id "${claim.id}" is used twice; ids must be unique`);
    }
    seen.add(claim.id);
    for (const key of ["claim", "paper", "measured"]) {
      if (typeof claim[key] !== "string" || (claim[key] as string).trim() === "") {
        throw new Error(
          `${where}: claims[${i}].${key} must be a non-empty string (format numbers first), got ${typeof claim[key]}`,
        );
      }
    }
    if (!(claim.reproduced === true || claim.reproduced === false || claim.reproduced === null)) {
      throw new Error(
        `${where}: claims[${i}].reproduced must be true, false or null (not comparable), got ${
          String(claim.reproduced)
        }`,
      );
    }
    if (claim.note !== undefined && typeof claim.note !== "string") {
      throw new Error(`${where}: claims[${i}].note must be a string when given, got ${typeof claim.note}`);
    }
  });
  return claims as Claim[];
}

async function currentBackend(): Promise<string | null> {
  const { backendName } = await import("../backend.ts");
  const name = backendName();
  return typeof name === "string" && name !== "" ? name : null;
}

// Checks what the entry needs, the folder and the manifest, before anything is written; returns the folder.
async function prepare(options: SaveResultOptions, kind: EntryKind): Promise<string> {
  checkConfig(options.config ?? options.run?.config ?? {}, `save ${kind}`);
  checkSeed(options.seed !== undefined ? options.seed : options.run?.seed ?? null, `save ${kind}`);
  const dir = ensureFiguresDir(options.outDir, { label: `save ${kind}: options.outDir` });
  await readManifest(dir);
  return dir;
}

async function record(
  name: string,
  file: readonly [string, string],
  kind: EntryKind,
  options: SaveResultOptions,
  dir: string,
): Promise<ManifestEntry> {
  const { run } = options;
  const notebook = options.notebook ?? run?.notebook;
  const { commit, dirty } = await gitState(REPO_ROOT, dir);
  const entry: ManifestEntry = {
    name,
    files: [file[0]],
    ...(notebook !== undefined ? { notebook } : {}),
    config: checkConfig(options.config ?? run?.config ?? {}, `save ${kind}`),
    seed: checkSeed(options.seed !== undefined ? options.seed : run?.seed ?? null, `save ${kind}`),
    backend: options.backend ?? await currentBackend(),
    commit,
    dirty,
    date: new Date().toISOString(),
    durationMs: run?.elapsedMs() ?? null,
    ...(options.caption !== undefined ? { caption: options.caption } : {}),
    kind,
  };
  await recordFigure(dir, entry, { files: [file] });
  return entry;
}

/**
 * Saves a notebook's claims, each compared with what it measured, as
 * `<name>.json`, together with a manifest entry of kind `"claims"`.
 * Build every `measured` string and `reproduced` flag from measured values.
 * The result displays as a table with ✓ / ✗ / n/a.
 *
 * @example
 * ```ts
 * import { saveClaims } from "./claims.ts";
 * const measured = 0.25;
 * const saved = await saveClaims("demo_claims", [{
 *   id: "softmax_bound",
 *   claim: "Softmax attention's |∂p/∂s| is at most 1/4",
 *   paper: "≤ 0.25",
 *   measured: measured.toFixed(4),
 *   reproduced: measured <= 0.25,
 * }], { notebook: "demo", outDir: await Deno.makeTempDir() });
 * console.log(saved.entry.kind, saved.entry.files); // claims ["demo_claims.json"]
 * ```
 */
export async function saveClaims(
  name: string,
  claims: readonly Claim[],
  options: SaveResultOptions = {},
): Promise<SavedResult> {
  checkName(name, "saveClaims");
  const checked = checkClaims(claims);
  const o = checkOptions(options, "saveClaims", false);
  const dir = await prepare(o, "claims");
  const path = join(dir, `${name}.json`);
  const entry = await record(name, [`${name}.json`, JSON.stringify(checked, null, 2) + "\n"], "claims", o, dir);
  const mark = (r: boolean | null) => r === null ? "n/a" : r ? "✓" : "✗";
  const shown = table(checked.map((c) => ({
    reproduced: mark(c.reproduced),
    claim: c.claim,
    paper: c.paper,
    measured: c.measured,
    note: c.note ?? "",
  })));
  return { name, path, entry, [JUPYTER_DISPLAY]: () => shown[JUPYTER_DISPLAY]() };
}

/**
 * Saves a table (flat rows, e.g. paper versus measured) as `<name>.csv`,
 * together with a manifest entry of kind `"table"` with its caption. The
 * result displays as the table.
 *
 * @example
 * ```ts
 * import { saveTable } from "./claims.ts";
 * const rows: { model: string; paper: number; measured: number }[] = [{ model: "vanilla", paper: 4.2, measured: 4.31 }];
 * const saved = await saveTable("demo_table", rows, { caption: "Perplexity", outDir: await Deno.makeTempDir() });
 * console.log(saved.entry.kind, saved.entry.caption); // table Perplexity
 * ```
 */
export async function saveTable(
  name: string,
  rows: readonly Row[],
  options: SaveResultOptions = {},
): Promise<SavedResult> {
  checkName(name, "saveTable");
  columnsOf(rows, "saveTable: rows");
  if (rows.length === 0) throw new Error("saveTable: rows is empty; pass at least one row object");
  const o = checkOptions(options, "saveTable", true);
  const dir = await prepare(o, "table");
  const path = join(dir, `${name}.csv`);
  const entry = await record(name, [`${name}.csv`, toCsv(rows)], "table", o, dir);
  const shown = table(rows);
  return { name, path, entry, [JUPYTER_DISPLAY]: () => shown[JUPYTER_DISPLAY]() };
}
