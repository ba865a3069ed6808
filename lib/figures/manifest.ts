/**
 * `manifest.json`: one entry per saved figure recording how it was made.
 *
 * The file lives next to the figures and looks like
 * `{ "figures": { "<name>": { name, files, notebook?, config, seed, backend,
 * commit, dirty, codeHash?, date, durationMs, caption?, kind?, scale? } } }`, names
 * sorted so diffs stay small. An entry without `kind` is a figure (older manifests have
 * no kinds); `"table"` entries come from `saveTable`, `"claims"` from `saveClaims`.
 * `scale` is the experiments' scale when the result was made (`quick`, `full` or `large`, from `ATTNLAB_SCALE`); an
 * entry without one was saved before scales were recorded, when every saved result was full scale
 * ({@linkcode entryScale}).
 *
 * It is updated read-modify-write under a lock file (`manifest.json.lock`,
 * shared by processes; see `lock.ts` for how a stale lock is broken), together
 * with the files an entry describes: {@linkcode recordFigure} writes them all
 * under temporary names, then renames them into place with the manifest last
 * (see `file_set.ts` for the steps and what a crash at any point leaves). The
 * manifest is read once before the lock is taken, so an unreadable manifest
 * fails before anything is written.
 *
 * Provenance: `commit` and `dirty` come from git, and `codeHash` is the
 * SHA-256 of the library's source (`lib/`, `deno.json` and `deno.lock`: the
 * `LIBRARY_SOURCES` of `lib/source_hash.ts`, the same inputs a resumed
 * `deno task reproduce` keys its notebooks on), so the report can mark results
 * made under older code. Trained models are keyed by a narrower hash (the model,
 * training and data code; `trainingCodeHash` in `lib/train/train.ts`). `deno task
 * reproduce` records all three once, at its start, and hands them to the
 * notebooks in {@linkcode PROVENANCE_ENV} (`ATTNLAB_PROVENANCE`), so that the
 * notebooks it saves in place as it goes do not mark later results dirty;
 * {@linkcode gitState} returns that state when the variable is set.
 *
 * @module
 */

import { isAbsolute, join, relative } from "node:path";
import { describeValue } from "../_options.ts";
import { REPO_ROOT, type Scale, scale as envScale } from "../env.ts";
import { LIBRARY_SOURCES, sourceHash } from "../source_hash.ts";
import { commitFileSet } from "./file_set.ts";
import type { FileContent } from "./file_set.ts";

/** The manifest's file name inside the figures folder. */
export const MANIFEST_FILE = "manifest.json";

/** The lock file that serialises saves into one figures folder. */
export const MANIFEST_LOCK = `${MANIFEST_FILE}.lock`;

/** The journal of a save in progress (see `file_set.ts`); matches `.*.tmp`, so git ignores it. */
export const SAVE_JOURNAL = `.${MANIFEST_FILE}.journal.tmp`;

/** A configuration object holding only JSON values (see {@linkcode checkConfig}). */
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
  /**
   * SHA-256 of the library's source when the result was made (see {@linkcode libraryCodeHash}); `null` outside a
   * checkout; absent in entries saved before code hashes were recorded.
   */
  codeHash?: string | null;
  /** When the figure was saved, ISO 8601 in UTC. */
  date: string;
  /** Compute time in milliseconds, or `null` when unknown. */
  durationMs: number | null;
  /** What the figure or table shows, when the notebook gave a caption. */
  caption?: string;
  /** Absent for figures; `"table"` or `"claims"` otherwise. */
  kind?: EntryKind;
  /** The experiments' scale when it was made; absent in entries saved before scales were recorded (read as full). */
  scale?: Scale;
}

/**
 * The scale of a manifest entry: its `scale`, or `"full"` when it has none (entries saved before scales were
 * recorded were all full scale).
 *
 * @example
 * ```ts
 * import { entryScale } from "./manifest.ts";
 * console.log(entryScale({ scale: "large" }), entryScale({})); // large full
 * ```
 */
export function entryScale(entry: Partial<ManifestEntry>): Scale {
  return entry.scale ?? "full";
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
  /** The experiments' scale when the run started (`scale()` of lib/env.ts), recorded with every result it saves. */
  readonly scale?: Scale;
  /** Milliseconds since the run started, rounded to whole milliseconds. */
  elapsedMs(): number;
}

const CONFIG_VALUES = "JSON values: finite numbers, strings, booleans, null, arrays and plain objects";

/** `describeValue`, except that an undefined array element may be a hole, which JSON would also store as null. */
function describeConfigValue(value: unknown): string {
  return value === undefined ? "undefined (or an array hole)" : describeValue(value);
}

function hintFor(value: unknown): string {
  if (value === undefined) return "JSON would store it as null: use null, or leave the element out";
  if (typeof value === "function") return "record what it does instead, e.g. its name or its parameters";
  if (typeof value === "bigint") return "convert it with Number() or String()";
  if (typeof value === "number") return "record it as a string or null, or leave it out";
  if (value instanceof Map) return "convert it with Object.fromEntries(map)";
  if (value instanceof Set) return "convert it with [...set]";
  if (value instanceof Date) return "convert it with .toISOString()";
  if (ArrayBuffer.isView(value)) return "convert it with Array.from()";
  return "convert it to one of those";
}

function keyPath(path: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

// Walks a config value; `ancestors` holds the objects on the path from the root, to find cycles.
function checkConfigValue(value: unknown, path: string, where: string, ancestors: Map<object, string>): void {
  const fail = (what: string, hint: string): never => {
    throw new TypeError(`${where}: ${path} is ${what}; a config holds only ${CONFIG_VALUES}; ${hint}`);
  };
  if (value === null || typeof value === "string" || typeof value === "boolean") return;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) fail(describeConfigValue(value), hintFor(value));
    return;
  }
  if (typeof value !== "object") return fail(describeConfigValue(value), hintFor(value));
  const seenAt = ancestors.get(value);
  if (seenAt !== undefined) fail(`the same object as ${seenAt} (a cycle)`, "store the data without the cycle");
  const isArray = Array.isArray(value);
  const proto = Object.getPrototypeOf(value);
  if (!isArray && proto !== Object.prototype && proto !== null) fail(describeConfigValue(value), hintFor(value));
  const symbols = Object.getOwnPropertySymbols(value);
  if (symbols.length > 0) fail(`an object with a symbol key (${String(symbols[0])})`, "use string keys");
  ancestors.set(value, path);
  if (isArray) {
    for (let i = 0; i < value.length; i++) checkConfigValue(value[i], `${path}[${i}]`, where, ancestors);
  } else {
    for (const [key, item] of Object.entries(value)) {
      // An undefined property is the same as a missing one, in JSON as in the config.
      if (item !== undefined) checkConfigValue(item, keyPath(path, key), where, ancestors);
    }
  }
  ancestors.delete(value);
}

/**
 * Validates a config object: a plain object holding only JSON values (finite
 * numbers, strings, booleans, `null`, arrays and plain objects), so that the
 * manifest stores exactly what the config says. Anything else (a function, a
 * symbol, a bigint, `NaN` or `±Infinity`, an instance such as a `Map` or a
 * `Date`, a cycle) throws a `TypeError` that names its path, e.g.
 * `config.schedule`. A property set to `undefined` counts as absent.
 *
 * @example
 * ```ts
 * import { checkConfig } from "./manifest.ts";
 * console.log(checkConfig({ n: 64, heads: 4 }, "saveFigure")); // { n: 64, heads: 4 }
 * try {
 *   checkConfig({ schedule: (step: number) => step / 100 }, "saveFigure");
 * } catch (err) {
 *   console.log((err as Error).message); // saveFigure: config.schedule is a function (schedule); a config holds only JSON values: …
 * }
 * ```
 */
export function checkConfig(config: unknown, where: string): Config {
  if (config === null || typeof config !== "object" || Array.isArray(config)) {
    throw new TypeError(
      `${where}: config must be a plain object like { n: 64, heads: 4 }, got ${
        config === null ? "null" : Array.isArray(config) ? "an array" : typeof config
      }`,
    );
  }
  checkConfigValue(config, "config", where, new Map());
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
 * A malformed `ATTNLAB_PROVENANCE` (see {@linkcode provenanceFromEnv}) fails
 * here, before the notebook computes anything.
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
  // A malformed ATTNLAB_PROVENANCE fails here, at the top of the notebook, not at its first save.
  provenanceFromEnv();
  const startMs = performance.now();
  return {
    ...(options.notebook !== undefined ? { notebook: options.notebook } : {}),
    config: checkConfig(options.config ?? {}, "startRun"),
    seed: checkSeed(options.seed ?? null, "startRun"),
    startMs,
    scale: envScale(),
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

/** The state of the code's checkout, as recorded in the manifest. */
export interface GitState {
  commit: string | null;
  dirty: boolean | null;
  /** {@linkcode libraryCodeHash} of the checkout; `null` when it has no `lib/`, `deno.json` or `deno.lock`. */
  codeHash: string | null;
}

/** Options of {@linkcode gitState}. */
export interface GitStateOptions {
  /** Use {@linkcode PROVENANCE_ENV} when it is set. Default true; `deno task reproduce` reads git itself with false. */
  fromEnv?: boolean;
}

/**
 * The environment variable in which `deno task reproduce` hands the notebooks the git state it recorded at
 * its start, as JSON `{ "commit": …, "dirty": …, "codeHash": … }`.
 */
export const PROVENANCE_ENV = "ATTNLAB_PROVENANCE";

const COMMIT = /^[0-9a-f]{40}([0-9a-f]{24})?$/;
const SHA256 = /^[0-9a-f]{64}$/;
const codeHashes = new Map<string, Promise<string | null>>();

/**
 * The SHA-256 of the library's source in the checkout at `root` (default the repository root): every file
 * under `lib/`, `deno.json` and `deno.lock` (`LIBRARY_SOURCES`), with its path, as `sourceHash` computes it.
 * `null` when one of them is missing (not a checkout). Computed once per process and root: a running
 * notebook's modules do not change under it either.
 *
 * @example
 * ```ts
 * import { libraryCodeHash } from "./manifest.ts";
 * console.log((await libraryCodeHash())?.length, await libraryCodeHash(await Deno.makeTempDir())); // 64 null
 * ```
 */
export function libraryCodeHash(root: string = REPO_ROOT): Promise<string | null> {
  let hash = codeHashes.get(root);
  if (hash === undefined) {
    hash = (async () => {
      for (const path of LIBRARY_SOURCES) {
        try {
          await Deno.stat(join(root, path));
        } catch (err) {
          if (err instanceof Deno.errors.NotFound) return null;
          throw err;
        }
      }
      return await sourceHash(LIBRARY_SOURCES, { root });
    })();
    codeHashes.set(root, hash);
    // A failure (a file unreadable for a moment) is not remembered.
    hash.catch(() => codeHashes.delete(root));
  }
  return hash;
}

function describeJson(value: unknown): string {
  return value === undefined ? "nothing" : JSON.stringify(value);
}

/**
 * The git state in {@linkcode PROVENANCE_ENV} (`ATTNLAB_PROVENANCE`), validated, or `null` when the variable
 * is unset or empty. A value that is not JSON `{ "commit": "<40 or 64 hex digits>" | null, "dirty": true |
 * false | null, "codeHash": "<64 hex digits>" | null }` is an Error naming the variable (`TypeError` for the
 * wrong shape or type, `RangeError` for a malformed hash).
 *
 * @example
 * ```ts
 * import { PROVENANCE_ENV, provenanceFromEnv } from "./manifest.ts";
 * Deno.env.set(PROVENANCE_ENV, JSON.stringify({ commit: "a".repeat(40), dirty: false, codeHash: null }));
 * console.log(provenanceFromEnv()?.dirty); // false
 * Deno.env.set(PROVENANCE_ENV, "{ not json");
 * try {
 *   provenanceFromEnv();
 * } catch (err) {
 *   console.log((err as Error).message.startsWith("ATTNLAB_PROVENANCE is not valid JSON")); // true
 * }
 * Deno.env.delete(PROVENANCE_ENV);
 * ```
 */
export function provenanceFromEnv(): GitState | null {
  const text = Deno.env.get(PROVENANCE_ENV);
  if (text === undefined || text.trim() === "") return null;
  const fix = `${PROVENANCE_ENV} is set by deno task reproduce to the git state at its start, as ` +
    `{"commit": "<40 or 64 hex digits>" | null, "dirty": true | false | null, "codeHash": "<64 hex digits>" | null}; ` +
    "unset it to read the git state directly";
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new TypeError(`${PROVENANCE_ENV} is not valid JSON (${(err as Error).message}); ${fix}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new TypeError(`${PROVENANCE_ENV} must hold a JSON object, got ${describeJson(parsed)}; ${fix}`);
  }
  const state = parsed as Record<string, unknown>;
  for (const key of Object.keys(state)) {
    if (!["commit", "dirty", "codeHash"].includes(key)) {
      throw new TypeError(`${PROVENANCE_ENV} has unknown field "${key}"; ${fix}`);
    }
  }
  const { commit, dirty, codeHash } = state;
  if (commit !== null && typeof commit !== "string") {
    throw new TypeError(`${PROVENANCE_ENV}: commit must be a string or null, got ${describeJson(commit)}; ${fix}`);
  }
  if (typeof commit === "string" && !COMMIT.test(commit)) {
    throw new RangeError(
      `${PROVENANCE_ENV}: commit must be 40 or 64 lowercase hex digits, got ${describeJson(commit)}; ${fix}`,
    );
  }
  if (dirty !== null && typeof dirty !== "boolean") {
    throw new TypeError(`${PROVENANCE_ENV}: dirty must be true, false or null, got ${describeJson(dirty)}; ${fix}`);
  }
  if (codeHash !== null && typeof codeHash !== "string") {
    throw new TypeError(`${PROVENANCE_ENV}: codeHash must be a string or null, got ${describeJson(codeHash)}; ${fix}`);
  }
  if (typeof codeHash === "string" && !SHA256.test(codeHash)) {
    throw new RangeError(
      `${PROVENANCE_ENV}: codeHash must be 64 lowercase hex digits (a SHA-256), got ${describeJson(codeHash)}; ${fix}`,
    );
  }
  return { commit, dirty, codeHash };
}

/**
 * The state of the checkout at `dir` (default the repository root): `git rev-parse HEAD`, whether
 * `git status --porcelain` is non-empty, ignoring changes under `excludeDir` (the figures folder, whose own
 * output would otherwise mark every later save as dirty), and {@linkcode libraryCodeHash}. Outside a git
 * repository, before the first commit, or without git, the unknown parts are `null`.
 *
 * When {@linkcode PROVENANCE_ENV} (`ATTNLAB_PROVENANCE`) is set, as `deno task reproduce` sets it for the
 * notebooks it runs, returns the state it holds instead (validated: see {@linkcode provenanceFromEnv}), unless
 * `options.fromEnv` is false.
 *
 * @example
 * ```ts
 * import { gitState } from "./manifest.ts";
 * const outside = await gitState(await Deno.makeTempDir(), undefined, { fromEnv: false });
 * console.log(outside); // { commit: null, dirty: null, codeHash: null }
 * ```
 */
export async function gitState(
  dir: string = REPO_ROOT,
  excludeDir?: string,
  options: GitStateOptions = {},
): Promise<GitState> {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`gitState: options must be an object like { fromEnv: false }, got ${String(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (key !== "fromEnv") throw new TypeError(`gitState: unknown option "${key}"; the only option is fromEnv`);
  }
  if (options.fromEnv !== undefined && typeof options.fromEnv !== "boolean") {
    throw new TypeError(`gitState: options.fromEnv must be true or false, got ${String(options.fromEnv)}`);
  }
  if (options.fromEnv !== false) {
    const recorded = provenanceFromEnv();
    if (recorded !== null) return recorded;
  }
  const head = await git(["rev-parse", "--verify", "--quiet", "HEAD"], dir);
  const commit = head === null || !COMMIT.test(head.trim()) ? null : head.trim();
  const pathspec = ["--", "."];
  if (excludeDir !== undefined) {
    const rel = relative(dir, excludeDir);
    if (rel !== "" && !rel.startsWith("..") && !isAbsolute(rel)) pathspec.push(`:(exclude)${rel}`);
  }
  const status = await git(["status", "--porcelain", ...pathspec], dir);
  return { commit, dirty: status === null ? null : status.trim() !== "", codeHash: await libraryCodeHash(dir) };
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

let queue: Promise<unknown> = Promise.resolve();

/** Files saved together with a manifest entry (see {@linkcode recordFigure}). */
export interface RecordFigureOptions {
  /** Files to write into the folder (name, content), renamed into place before the manifest. */
  files?: readonly FileContent[];
  /** File names to remove in the same step (e.g. a CSV the figure no longer has). */
  remove?: readonly string[];
}

function sortedManifest(figures: Record<string, ManifestEntry>): Manifest {
  const sorted: Record<string, ManifestEntry> = {};
  for (const name of Object.keys(figures).sort()) sorted[name] = figures[name];
  return { figures: sorted };
}

// Read, change and write `<dir>/manifest.json` (sorted by figure name) together with `files`, as one unit under
// the folder's lock. Saves from this process queue up here, so they never wait on each other's lock file.
async function updateManifest(
  dir: string,
  change: (figures: Record<string, ManifestEntry>) => void | Promise<void>,
  options: RecordFigureOptions = {},
): Promise<Manifest> {
  // Read once before the lock: an unreadable manifest fails before anything, even the lock file, is written.
  await readManifest(dir);
  let manifest: Manifest | undefined;
  const task = queue.then(() =>
    commitFileSet(dir, async () => {
      const { figures } = await readManifest(dir);
      await change(figures);
      manifest = sortedManifest(figures);
      return {
        files: options.files ?? [],
        remove: options.remove ?? [],
        last: [MANIFEST_FILE, JSON.stringify(manifest, null, 2) + "\n"],
      };
    }, { lockName: MANIFEST_LOCK, journalName: SAVE_JOURNAL })
  );
  queue = task.catch(() => {});
  await task;
  return manifest!;
}

/**
 * Adds or replaces one entry in `<dir>/manifest.json` (sorted by figure name)
 * and returns the new manifest. `options.files` are saved in the same step:
 * under the folder's lock, everything is written to temporary files first,
 * then renamed into place with the manifest last (see `file_set.ts`). The
 * folder must exist.
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
export function recordFigure(dir: string, entry: ManifestEntry, options: RecordFigureOptions = {}): Promise<Manifest> {
  return updateManifest(dir, (figures) => {
    figures[entry.name] = entry;
  }, options);
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
  try {
    await Deno.stat(dir);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return dropped;
    throw err;
  }
  await updateManifest(dir, async (figures) => {
    // Listed under the lock, after any interrupted save was finished.
    const present = new Set<string>();
    for await (const entry of Deno.readDir(dir)) present.add(entry.name);
    for (const [name, entry] of Object.entries(figures)) {
      if (!entry.files.every((file) => present.has(file))) {
        dropped.push(name);
        delete figures[name];
      }
    }
  });
  return dropped;
}
