/**
 * Saved results as DataFrames: the notebooks' claims (`*_claims.json`), the tables saved with
 * `saveTable`, the data behind each figure, and the benchmark rows (`bench.csv`), all read from a
 * figures folder and its `manifest.json` (see `lib/figures`).
 *
 * @module
 */

import type { DataFrame } from "nodejs-polars";
import { isAbsolute, join, relative, resolve } from "node:path";
import { figuresDir } from "../env.ts";
import { normalizeClaims } from "../figures/claims.ts";
import type { Row } from "../figures/csv.ts";
import { entryKind, entryScale, MANIFEST_FILE, readManifest } from "../figures/manifest.ts";
import type { EntryKind, ManifestEntry } from "../figures/manifest.ts";
import { csvToFrame, rowsToFrame } from "./_columns.ts";
import type { ColumnType } from "./_columns.ts";
import { isFolder, readText } from "./_files.ts";
import { checkOptionKeys, describeValue } from "../_options.ts";
import { pathOption } from "./_options.ts";
import { show } from "./show.ts";

/** Options of the loaders that read a figures folder. */
export interface FiguresDirOptions {
  /**
   * The folder to read. Default `figuresDir()`: `ATTNLAB_FIGURES_DIR`, else `figures/`, or in quick
   * mode the session's temporary figures folder.
   */
  figuresDir?: string;
}

/** Options for {@linkcode benchResults}. */
export interface BenchResultsOptions extends FiguresDirOptions {
  /** The CSV to read, e.g. one written by `deno task bench --out PATH`. Default `<figuresDir>/bench.csv`. */
  path?: string;
}

const REPRODUCE = "the notebooks write it: run `deno task reproduce` (`--only NN` for one notebook)";

async function figuresFolder(owner: string, value: unknown): Promise<string> {
  const dir = pathOption(owner, "figuresDir", value, () => figuresDir());
  if (!(await isFolder(dir))) {
    throw new Error(`${owner}: the figures folder ${dir} does not exist; ${REPRODUCE}`);
  }
  return dir;
}

async function manifestOf(owner: string, dir: string): Promise<Record<string, ManifestEntry>> {
  const path = join(dir, MANIFEST_FILE);
  try {
    await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new Error(`${owner}: ${path} is missing; ${REPRODUCE}`);
    throw err;
  }
  return (await readManifest(dir)).figures;
}

const LOADER: Readonly<Record<EntryKind, string>> = {
  figure: "figureData(name)",
  table: "resultTable(name)",
  claims: "claims()",
};

// The manifest entry of a saved table or figure and the path of its CSV, inside the figures folder.
async function savedCsv(owner: string, name: unknown, kind: EntryKind, folder: unknown): Promise<DataFrame> {
  if (typeof name !== "string" || name === "") {
    throw new TypeError(
      `${owner}: name must be the name a ${kind} was saved under, got ${describeValue(name, { typed: true })}`,
    );
  }
  const dir = await figuresFolder(owner, folder);
  const entries = await manifestOf(owner, dir);
  const entry = entries[name];
  if (entry === undefined || entry === null) {
    const names = Object.values(entries).filter((e) => e !== null && entryKind(e) === kind).map((e) => e.name);
    const listed = names.length === 0 ? `it lists no ${kind}s` : `its ${kind}s: ${names.join(", ")}`;
    throw new Error(`${owner}: ${join(dir, MANIFEST_FILE)} has no ${kind} "${name}" (${listed})`);
  }
  const actual = entryKind(entry);
  if (actual !== kind) {
    throw new Error(`${owner}: "${name}" is saved as a ${actual}, not a ${kind}; read it with ${LOADER[actual]}`);
  }
  const file = entry.files.find((f) => f.endsWith(".csv"));
  if (file === undefined) {
    throw new Error(
      `${owner}: ${kind} "${name}" was saved without data (its files: ${entry.files.join(", ")}); ` +
        `saveFigure writes <name>.csv when given { data: rows }`,
    );
  }
  const path = resolve(dir, file);
  const rel = relative(dir, path);
  if (rel.startsWith("..") || isAbsolute(rel)) {
    throw new Error(`${owner}: ${MANIFEST_FILE} lists "${file}" for "${name}", outside the figures folder ${dir}`);
  }
  const notebook = entry.notebook;
  const rerun = notebook
    ? `rerun notebook ${notebook}: \`deno task reproduce --only ${notebook.slice(0, 2)}\``
    : "rerun the notebook that saves it";
  const text = await readText(owner, path, `${MANIFEST_FILE} lists it for ${kind} "${name}"; ${rerun}`);
  return show(csvToFrame(text, path));
}

// Column types of claims(): every column is typed whatever the rows hold, so an all-null column keeps its type.
const CLAIM_TYPES: Readonly<Record<string, ColumnType>> = {
  notebook: "string",
  name: "string",
  scale: "string",
  id: "string",
  outcome: "string",
  reason: "string",
  rule: "string",
  evidence: "bool",
  legacy: "bool",
  claim: "string",
  paper: "string",
  measured: "string",
  note: "string",
  interval_estimate: "float",
  interval_low: "float",
  interval_high: "float",
  interval_level: "float",
  interval_n: "int",
  interval_method: "string",
  settle_model: "string",
  settle_tokens: "string",
  settle_seeds: "int",
  settle_flops: "float",
  settle_note: "string",
};

/**
 * Every claim of every notebook, from the `*_claims.json` files of the figures folder (written by
 * `saveClaims`), one row per claim in file order, in the three-outcome form (`normalizeClaims`: a legacy
 * `reproduced: true / false / null` reads as reproduced / not reproduced / inconclusive, "not comparable"):
 * `notebook` (from the manifest; `null` when it has no entry for the file), `name` (the file's name without
 * `.json`), `scale` (the scale the claims were made at, "quick", "full" or "large", from the manifest: "full" for
 * entries saved before scales were recorded and for files without an entry), `id`, `outcome` ("reproduced", "not reproduced" or "inconclusive"), `reason`, `rule`, `evidence`
 * (false for checks that hold by construction), `legacy` (saved in the legacy format), `claim`, `paper`,
 * `measured`, `note`, the interval the verdict was decided on (`interval_estimate`, `interval_low`,
 * `interval_high`, `interval_level`, `interval_n`, `interval_method`) and what would settle an inconclusive
 * claim (`settle_model`, `settle_tokens`, `settle_seeds`, `settle_flops`, `settle_note`); `null` where absent.
 * A malformed file is an Error naming it and the claim at fault; no claims files at all is an Error saying
 * how to write them.
 *
 * @example
 * ```ts
 * import { saveClaims } from "../figures/mod.ts";
 * import { claims } from "./results.ts";
 * const dir = await Deno.makeTempDir();
 * await saveClaims("01_claims", [
 *   { id: "bound", claim: "|∂p/∂s| ≤ 1/4", paper: "0.25", measured: "0.2500", outcome: "reproduced",
 *     rule: "max |∂p/∂s| ≤ 1/4 + 1e-6" },
 *   { id: "speed", claim: "4,460× faster", paper: "4460", measured: "908×", reproduced: null, note: "CPU" },
 * ], { notebook: "01_demo", outDir: dir, backend: "cpu" });
 * const df = await claims({ figuresDir: dir });
 * console.log(df.getColumn("outcome").toArray(), df.getColumn("reason").toArray());
 * // ["reproduced", "inconclusive"] [null, "not comparable"]
 * ```
 */
export async function claims(options: FiguresDirOptions = {}): Promise<DataFrame> {
  const o = checkOptionKeys("claims", options, ["figuresDir"]);
  const dir = await figuresFolder("claims", o.figuresDir);
  const files: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.isFile && e.name.endsWith("_claims.json")) files.push(e.name);
  if (files.length === 0) {
    throw new Error(`claims: ${dir} holds no *_claims.json file (saveClaims writes them); ${REPRODUCE}`);
  }
  files.sort();
  const notebookOf = new Map<string, string>();
  const scaleOf = new Map<string, string>();
  const manifest = await readManifest(dir);
  for (const e of Object.values(manifest.figures)) {
    if (e === null) continue;
    for (const f of e.files ?? []) {
      if (e.notebook !== undefined) notebookOf.set(f, e.notebook);
      scaleOf.set(f, entryScale(e));
    }
  }
  const rows: Row[] = [];
  for (const file of files) {
    const path = join(dir, file);
    let parsed: unknown;
    try {
      parsed = JSON.parse(await Deno.readTextFile(path));
    } catch (err) {
      if (err instanceof SyntaxError) throw new Error(`claims: ${path} is not valid JSON (${err.message})`);
      throw err;
    }
    for (const c of normalizeClaims(parsed, `claims: ${path}`)) {
      rows.push({
        notebook: notebookOf.get(file) ?? null,
        name: file.slice(0, -".json".length),
        scale: scaleOf.get(file) ?? "full",
        id: c.id,
        outcome: c.outcome,
        reason: c.reason ?? null,
        rule: c.rule,
        evidence: c.evidence,
        legacy: c.legacy,
        claim: c.claim,
        paper: c.paper,
        measured: c.measured,
        note: c.note ?? null,
        interval_estimate: c.interval?.estimate ?? null,
        interval_low: c.interval?.low ?? null,
        interval_high: c.interval?.high ?? null,
        interval_level: c.interval?.level ?? null,
        interval_n: c.interval?.n ?? null,
        interval_method: c.interval?.method ?? null,
        settle_model: c.settle?.model ?? null,
        settle_tokens: c.settle?.tokens ?? null,
        settle_seeds: c.settle?.seeds ?? null,
        settle_flops: c.settle?.flops ?? null,
        settle_note: c.settle?.note ?? null,
      });
    }
  }
  return show(rowsToFrame("claims", rows, { types: CLAIM_TYPES }));
}

/**
 * The tables saved with `saveTable` in the figures folder, one row each, sorted by name: `name`,
 * `notebook`, `caption`, `file` (the CSV), `date`, `backend` and `commit` (`null` when unknown), from
 * `manifest.json`. Read one with {@linkcode resultTable}.
 *
 * @example
 * ```ts
 * import { saveTable } from "../figures/mod.ts";
 * import { resultTables } from "./results.ts";
 * const dir = await Deno.makeTempDir();
 * await saveTable("demo_table", [{ model: "vanilla", ppl: 4.2 }], { caption: "Perplexity", outDir: dir, backend: "cpu" });
 * const df = await resultTables({ figuresDir: dir });
 * console.log(df.getColumn("name").toArray(), df.getColumn("caption").toArray()); // ["demo_table"] ["Perplexity"]
 * ```
 */
export async function resultTables(options: FiguresDirOptions = {}): Promise<DataFrame> {
  const o = checkOptionKeys("resultTables", options, ["figuresDir"]);
  const dir = await figuresFolder("resultTables", o.figuresDir);
  const entries = Object.values(await manifestOf("resultTables", dir))
    .filter((e) => e !== null && entryKind(e) === "table")
    .sort((a, b) => a.name.localeCompare(b.name));
  const columns = ["name", "notebook", "caption", "file", "date", "backend", "commit"];
  const rows: Row[] = entries.map((e) => ({
    name: e.name,
    notebook: e.notebook ?? null,
    caption: e.caption ?? null,
    file: e.files.find((f) => f.endsWith(".csv")) ?? null,
    date: e.date ?? null,
    backend: e.backend ?? null,
    commit: e.commit ?? null,
  }));
  if (rows.length === 0) {
    // No tables yet: the same columns, no rows.
    return show(csvToFrame(columns.join(",") + "\n", "resultTables", { otherColumns: "string" }));
  }
  return show(rowsToFrame("resultTables", rows, { otherColumns: "string" }));
}

/**
 * One table saved with `saveTable(name, rows)`, read back from its CSV as a typed DataFrame: numbers
 * as numbers, `true`/`false` as booleans, empty cells as `null`; a column with any text in it (such
 * as "9.65 ± 0.067" or "—") stays text. A name the manifest does not list is an Error listing the
 * saved tables; a missing CSV is an Error naming it and the notebook that writes it.
 *
 * @example
 * ```ts
 * import { saveTable } from "../figures/mod.ts";
 * import { resultTable } from "./results.ts";
 * const dir = await Deno.makeTempDir();
 * await saveTable("demo_table", [{ model: "vanilla", ppl: 4.2, rank: 1 }, { model: "1+elu", ppl: null, rank: 2 }], {
 *   outDir: dir,
 *   backend: "cpu",
 * });
 * const df = await resultTable("demo_table", { figuresDir: dir });
 * console.log(df.getColumn("ppl").toArray(), df.getColumn("rank").toArray()); // [4.2, null] [1, 2]
 * ```
 */
export async function resultTable(name: string, options: FiguresDirOptions = {}): Promise<DataFrame> {
  const o = checkOptionKeys("resultTable", options, ["figuresDir"]);
  return await savedCsv("resultTable", name, "table", o.figuresDir);
}

/**
 * The data behind a saved figure (the `<name>.csv` that `saveFigure(name, plot, { data })` writes) as
 * a typed DataFrame. A figure saved without data, or a name the manifest does not list, is an Error
 * that says so.
 *
 * @example
 * ```ts
 * import * as Plot from "@observablehq/plot";
 * import { plotDocument, saveFigure } from "../figures/mod.ts";
 * import { figureData } from "./results.ts";
 * const dir = await Deno.makeTempDir();
 * const data = [{ n: 64, ms: 1.5 }, { n: 128, ms: 4.25 }];
 * const plot = Plot.plot({ document: plotDocument(), marks: [Plot.line(data, { x: "n", y: "ms" })] });
 * await saveFigure("demo_scaling", plot, { data, outDir: dir, backend: "cpu" });
 * const df = await figureData("demo_scaling", { figuresDir: dir });
 * console.log(df.getColumn("ms").toArray()); // [1.5, 4.25]
 * ```
 */
export async function figureData(name: string, options: FiguresDirOptions = {}): Promise<DataFrame> {
  const o = checkOptionKeys("figureData", options, ["figuresDir"]);
  return await savedCsv("figureData", name, "figure", o.figuresDir);
}

// Column types of bench.csv (BenchRow in lib/bench/run.ts); a column added later is typed from its values.
const BENCH_TYPES: Readonly<Record<string, ColumnType>> = {
  backend: "string",
  device: "string",
  variant: "string",
  causal: "bool",
  n: "int",
  batch: "int",
  heads: "int",
  d: "int",
  status: "string",
  note: "string",
  repeats: "int",
  ...Object.fromEntries(
    [
      "fwd_ms",
      "fwd_bwd_ms",
      "peak_mb_fwd",
      "peak_mb_fwd_bwd",
      "gflop_fwd",
      "gflop_fwd_bwd",
      "gflops_fwd",
      "gflops_fwd_bwd",
      "share_of_peak",
      "peak_gflops",
      "speedup_vs_cpu_fwd",
      "speedup_vs_cpu_fwd_bwd",
      "speedup_vs_torch_fwd",
      "speedup_vs_torch_fwd_bwd",
    ].map((c) => [c, "float" as const]),
  ),
};

/**
 * The benchmark rows of `deno task bench` (`<figuresDir>/bench.csv`, or `options.path`) as a
 * DataFrame: one row per backend, variant, causal and n, with `status` ("ok" or why it was skipped),
 * the forward and forward + backward times in ms, GFLOP/s, peak memory and the speed-ups; a value
 * that was not measured (a skipped row, no PyTorch) is `null`.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { benchResults } from "./results.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(
 *   join(dir, "bench.csv"),
 *   "backend,variant,causal,n,status,note,fwd_ms\nblas,softmax,true,256,ok,,16.5\nblas,softmax,true,512,skipped (time),predicted 20 s,\n",
 * );
 * const df = await benchResults({ figuresDir: dir });
 * console.log(df.getColumn("n").toArray(), df.getColumn("fwd_ms").toArray()); // [256, 512] [16.5, null]
 * ```
 */
export async function benchResults(options: BenchResultsOptions = {}): Promise<DataFrame> {
  const o = checkOptionKeys("benchResults", options, ["figuresDir", "path"]);
  if (o.figuresDir !== undefined && o.path !== undefined) {
    throw new TypeError("benchResults: give options.figuresDir or options.path, not both");
  }
  const path = o.path !== undefined
    ? pathOption("benchResults", "path", o.path, () => "")
    : join(pathOption("benchResults", "figuresDir", o.figuresDir, () => figuresDir()), "bench.csv");
  const text = await readText(
    "benchResults",
    path,
    "run `deno task bench` to write it (`deno task bench --quick` for a small run; `--out PATH` writes elsewhere)",
  );
  return show(
    csvToFrame(text, path, { types: BENCH_TYPES, required: ["backend", "variant", "n", "status"] }),
  );
}
