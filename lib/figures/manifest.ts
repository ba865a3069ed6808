/**
 * `manifest.json`: one entry per saved figure recording how it was made.
 *
 * The file lives next to the figures and looks like
 * `{ "figures": { "<name>": { name, files, notebook?, config, seed, backend,
 * commit, dirty, date, durationMs, caption?, kind? } } }`, names sorted so
 * diffs stay small. An entry without `kind` is a figure (older manifests have
 * no kinds); `"table"` entries come from `saveTable`, `"claims"` from `saveClaims`. It is updated read-modify-write under a lock file
 * (`manifest.json.lock`, shared by processes) and written atomically.
 *
 * @module
 */

import { isAbsolute, join, relative } from "node:path";
import { REPO_ROOT } from "../env.ts";
import { writeFileAtomic } from "./atomic.ts";

/** The manifest's file name inside the figures folder. */
export const MANIFEST_FILE = "manifest.json";

/** A JSON-serialisable configuration object. */
export type Config = Record<string, unknown>;

/** The seed recorded with a figure: a number, a string, or `null` for "none". */
export type Seed = number | string | null;

/** What a manifest entry records: a figure (the default when absent), a table, or a notebook's claims. */
export type EntryKind = "figure" | "table" | "claims";

/** The kinds an entry's `kind` may take. */
export const ENTRY_KINDS: readonly EntryKind[] = ["figure", "table", "claims"];

/** One figure's (or table's, or claims file's) record in the manifest. */
export interface ManifestEntry {
  name: string;
  /** File names relative to the figures folder. */
  files: string[];
  notebook?: string;
  config: Config;
  seed: Seed;
  backend: string | null;
  /** `git rev-parse HEAD` of the code, or `null` outside a git repository or before the first commit. */
  commit: string | null;
  /** Whether `git status --porcelain` (figures folder excluded) listed changes; `null` without git. */
  dirty: boolean | null;
  /** When the figure was saved, ISO 8601 in UTC. */
  date: string;
  /** Compute time in milliseconds, or `null` when unknown. */
  durationMs: number | null;
  /** What the figure or table shows, when the notebook gave a caption. */
  caption?: string;
  /** Absent for figures; `"table"` or `"claims"` otherwise. */
  kind?: EntryKind;
}

/**
 * The kind of a manifest entry: its `kind`, or `"figure"` when it has none.
 *
 * @example
 * ```ts
 * import { entryKind } from "./manifest.ts";
 * console.log(entryKind({ kind: "table" }), entryKind({})); // table figure
 * ```
 */
export function entryKind(entry: { kind?: EntryKind }): EntryKind {
  return entry.kind ?? "figure";
}

/** The whole manifest file. */
export interface Manifest {
  figures: Record<string, ManifestEntry>;
}

/** Options for {@linkcode startRun}. */
export interface StartRunOptions {
  /** Notebook (or script) name recorded with each figure, e.g. `"01_scaling"`. */
  notebook?: string;
  /** The settings the results depend on. Default `{}`. */
  config?: Config;
  /** The random seed used. Default `null`. */
  seed?: Seed;
}

/** What {@linkcode startRun} returns; pass it as `saveFigure(name, plot, { run })`. */
export interface Run {
  readonly notebook?: string;
  readonly config: Config;
  readonly seed: Seed;
  /** `performance.now()` when the run started. */
  readonly startMs: number;
  /** Milliseconds since the run started, rounded to whole milliseconds. */
  elapsedMs(): number;
}

/**
 * Validates a config object: a plain object that survives `JSON.stringify`.
 *
 * @example
 * ```ts
 * import { checkConfig } from "./manifest.ts";
 * console.log(checkConfig({ n: 64, heads: 4 }, "saveFigure")); // { n: 64, heads: 4 }
 * ```
 */
export function checkConfig(config: unknown, where: string): Config {
  if (config === null || typeof config !== "object" || Array.isArray(config)) {
    throw new Error(`${where}: config must be a plain object like { n: 64, heads: 4 }, got ${typeof config}`);
  }
  try {
    JSON.stringify(config);
  } catch (err) {
    throw new Error(`${where}: config must be JSON-serialisable (${(err as Error).message})`);
  }
  return config as Config;
}

/**
 * Validates a caption: `undefined` (none) or a non-empty string.
 *
 * @example
 * ```ts
 * import { checkCaption } from "./manifest.ts";
 * console.log(checkCaption("Time per token against n.", "saveFigure")); // Time per token against n.
 * ```
 */
export function checkCaption(caption: unknown, where: string): string | undefined {
  if (caption === undefined) return undefined;
  if (typeof caption !== "string" || caption.trim() === "") {
    throw new Error(
      `${where}: options.caption must be a non-empty string such as "Time per token against n", ` +
        `got ${caption === null ? "null" : typeof caption === "string" ? "an empty string" : typeof caption}`,
    );
  }
  return caption;
}

/**
 * Validates a seed: a finite number, a string, or `null`.
 *
 * @example
 * ```ts
 * import { checkSeed } from "./manifest.ts";
 * console.log(checkSeed(42, "saveFigure")); // 42
 * ```
 */
export function checkSeed(seed: unknown, where: string): Seed {
  if (seed === null || typeof seed === "string" || (typeof seed === "number" && Number.isFinite(seed))) return seed;
  throw new Error(`${where}: seed must be a finite number, a string or null, got ${String(seed)}`);
}

/**
 * Starts timing a computation and records what it depends on; every figure
 * saved with `{ run }` gets its notebook, config, seed and the elapsed time.
 *
 * @example
 * ```ts
 * import { startRun } from "./mod.ts";
 * const run = startRun({ notebook: "01_scaling", config: { n: 64 }, seed: 7 });
 * const total = Array.from({ length: 1000 }, (_, i) => i).reduce((a, b) => a + b, 0);
 * console.log(total, run.seed, run.elapsedMs() >= 0); // 499500 7 true
 * ```
 */
export function startRun(options: StartRunOptions = {}): Run {
  for (const key of Object.keys(options)) {
    if (!["notebook", "config", "seed"].includes(key)) {
      throw new Error(`startRun: unknown option "${key}"; expected notebook, config or seed`);
    }
  }
  if (options.notebook !== undefined && typeof options.notebook !== "string") {
    throw new Error(`startRun: notebook must be a string such as "01_scaling", got ${typeof options.notebook}`);
  }
  const startMs = performance.now();
  return {
    ...(options.notebook !== undefined ? { notebook: options.notebook } : {}),
    config: checkConfig(options.config ?? {}, "startRun"),
    seed: checkSeed(options.seed ?? null, "startRun"),
    startMs,
    elapsedMs: () => Math.round(performance.now() - startMs),
  };
}

async function git(args: string[], cwd: string): Promise<string | null> {
  try {
    const { success, stdout } = await new Deno.Command("git", { args, cwd, stdout: "piped", stderr: "null" }).output();
    return success ? new TextDecoder().decode(stdout) : null;
  } catch {
    return null;
  }
}

/** The state of the code's git checkout, as recorded in the manifest. */
export interface GitState {
  commit: string | null;
  dirty: boolean | null;
}

/**
 * Reads `git rev-parse HEAD` and whether `git status --porcelain` is non-empty
 * in `dir`, ignoring changes under `excludeDir` (the figures folder, whose own
 * output would otherwise mark every later save as dirty). Outside a git
 * repository, before the first commit, or without git, the unknown parts are `null`.
 *
 * @example
 * ```ts
 * import { gitState } from "./manifest.ts";
 * const outside = await gitState(await Deno.makeTempDir());
 * console.log(outside); // { commit: null, dirty: null }
 * ```
 */
export async function gitState(dir: string = REPO_ROOT, excludeDir?: string): Promise<GitState> {
  const head = await git(["rev-parse", "--verify", "--quiet", "HEAD"], dir);
  const commit = head === null || !/^[0-9a-f]{40,64}$/.test(head.trim()) ? null : head.trim();
  const pathspec = ["--", "."];
  if (excludeDir !== undefined) {
    const rel = relative(dir, excludeDir);
    if (rel !== "" && !rel.startsWith("..") && !isAbsolute(rel)) pathspec.push(`:(exclude)${rel}`);
  }
  const status = await git(["status", "--porcelain", ...pathspec], dir);
  return { commit, dirty: status === null ? null : status.trim() !== "" };
}

/**
 * Reads `manifest.json` from a figures folder; a missing file is an empty manifest.
 *
 * @example
 * ```ts
 * import { readManifest } from "./mod.ts";
 * const manifest = await readManifest(await Deno.makeTempDir());
 * console.log(manifest); // { figures: {} }
 * ```
 */
export async function readManifest(dir: string): Promise<Manifest> {
  const path = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { figures: {} };
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path} is not valid JSON (${(err as Error).message}); fix it or delete it to start afresh`);
  }
  const figures = (parsed as Manifest | null)?.figures;
  if (figures === null || typeof figures !== "object" || Array.isArray(figures)) {
    throw new Error(`${path} has no "figures" object; fix it or delete it to start afresh`);
  }
  return { figures };
}

const LOCK_STALE_MS = 30_000;
const LOCK_TIMEOUT_MS = 15_000;

async function withLock<T>(lockPath: string, body: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCK_TIMEOUT_MS;
  for (;;) {
    try {
      (await Deno.open(lockPath, { write: true, createNew: true })).close();
      break;
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
      const mtime = (await Deno.stat(lockPath).catch(() => null))?.mtime?.getTime();
      if (mtime !== undefined && Date.now() - mtime > LOCK_STALE_MS) {
        await Deno.remove(lockPath).catch(() => {});
        continue;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `could not lock ${lockPath} within ${LOCK_TIMEOUT_MS / 1000}s; ` +
            `if no other notebook is saving figures, delete that file and retry`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  try {
    return await body();
  } finally {
    await Deno.remove(lockPath).catch(() => {});
  }
}

let queue: Promise<unknown> = Promise.resolve();

// Read, change and write `<dir>/manifest.json` (sorted by figure name, atomically, under a lock).
function updateManifest(dir: string, change: (figures: Record<string, ManifestEntry>) => void): Promise<Manifest> {
  const task = queue.then(() =>
    withLock(join(dir, `${MANIFEST_FILE}.lock`), async () => {
      const { figures } = await readManifest(dir);
      change(figures);
      const sorted: Record<string, ManifestEntry> = {};
      for (const name of Object.keys(figures).sort()) sorted[name] = figures[name];
      const manifest = { figures: sorted };
      await writeFileAtomic(join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + "\n");
      return manifest;
    })
  );
  queue = task.catch(() => {});
  return task;
}

/**
 * Adds or replaces one entry in `<dir>/manifest.json` (sorted by figure name,
 * written atomically under a lock) and returns the new manifest.
 *
 * @example
 * ```ts
 * import { recordFigure } from "./manifest.ts";
 * const dir = await Deno.makeTempDir();
 * const manifest = await recordFigure(dir, {
 *   name: "demo", files: ["demo.svg"], config: {}, seed: null, backend: null,
 *   commit: null, dirty: null, date: new Date(0).toISOString(), durationMs: null,
 * });
 * console.log(Object.keys(manifest.figures)); // ["demo"]
 * ```
 */
export function recordFigure(dir: string, entry: ManifestEntry): Promise<Manifest> {
  return updateManifest(dir, (figures) => {
    figures[entry.name] = entry;
  });
}

/**
 * Drops the entries (figures, tables, claims) whose files are gone (a notebook stopped saving them) and
 * returns the names dropped.
 *
 * @example
 * ```ts
 * import { pruneManifest, recordFigure } from "./manifest.ts";
 * const dir = await Deno.makeTempDir();
 * await recordFigure(dir, {
 *   name: "gone", files: ["gone.svg"], config: {}, seed: null, backend: null,
 *   commit: null, dirty: null, date: new Date(0).toISOString(), durationMs: null,
 * });
 * console.log(await pruneManifest(dir)); // ["gone"]
 * ```
 */
export async function pruneManifest(dir: string): Promise<string[]> {
  const dropped: string[] = [];
  const present = new Set<string>();
  try {
    for await (const entry of Deno.readDir(dir)) present.add(entry.name);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return dropped;
    throw err;
  }
  await updateManifest(dir, (figures) => {
    for (const [name, entry] of Object.entries(figures)) {
      if (!entry.files.every((file) => present.has(file))) {
        dropped.push(name);
        delete figures[name];
      }
    }
  });
  return dropped;
}
