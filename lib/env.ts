/**
 * Run-time settings shared by the library, the notebooks and the tasks.
 *
 * Every setting comes from an environment variable so that notebooks, which
 * take no command-line arguments, can be steered from the outside:
 *
 * | variable              | meaning                                                                                   |
 * | --------------------- | ----------------------------------------------------------------------------------------- |
 * | `ATTNLAB_SCALE`       | `quick`, `full` (the default) or `large`: the size of every experiment (see below)        |
 * | `ATTNLAB_QUICK`       | `1` selects small sizes (CI, the test task): the same as `ATTNLAB_SCALE=quick`            |
 * | `ATTNLAB_BACKEND`     | forces a TensorFlow.js backend (see `backend.ts`)                                         |
 * | `ATTNLAB_FIGURES_DIR` | where figures and `manifest.json` go; a relative path is from the repository root         |
 * |                       | unset: `figures/` in full mode, a temporary folder in quick mode (below); empty: an error |
 *
 * **Scales.** {@linkcode scale} reads the experiments' size: `quick` (a few updates of tiny models, to exercise the
 * code), `full` (the default: minutes per model on a CPU) or `large` (the size that settles the inconclusive
 * claims, meant for a GPU; see `lib/models/pretrained.ts`). `ATTNLAB_QUICK=1` is an alias of
 * `ATTNLAB_SCALE=quick`; the two may both be set only when they agree.
 *
 * **Quick mode never writes to `figures/` unless asked.** With `ATTNLAB_QUICK=1`
 * and no `ATTNLAB_FIGURES_DIR`, {@linkcode figuresDir} returns a temporary folder
 * (`attnlab-quick-figures-*` under the system's temporary folder), created once
 * per process and reused, and says where on stderr the first time. The tracked
 * full-mode figures and `figures/manifest.json` are therefore never overwritten
 * by a quick run. To write quick figures to `figures/` anyway, set
 * `ATTNLAB_FIGURES_DIR=figures`. The temporary folder is left in place when the
 * process ends, so the figures can still be looked at.
 *
 * {@linkcode ensureFiguresDir} checks (and creates) the figures folder before any
 * work starts; the save functions call it first, and tasks can call it at
 * start. Its errors name `ATTNLAB_FIGURES_DIR` and its value when the variable
 * is at fault, say why, and how to fix it.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root: the folder that holds `deno.json`. */
export const REPO_ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The prefix of the per-process temporary figures folder used in quick mode. */
export const QUICK_FIGURES_PREFIX = "attnlab-quick-figures-";

function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    // Without --allow-env every variable reads as unset.
    return undefined;
  }
}

/** The sizes the experiments run at: see {@linkcode scale}. */
export type Scale = "quick" | "full" | "large";

/** Every scale, smallest first. */
export const SCALES: readonly Scale[] = Object.freeze(["quick", "full", "large"]);

/**
 * Checks a scale given by a caller (`label` names the argument in the error) and returns it: one of
 * {@linkcode SCALES}, or a boolean for the older quick flag (`true`: quick, `false`: full).
 *
 * @example
 * ```ts
 * import { toScale } from "./env.ts";
 * console.log(toScale("large", "f: scale"), toScale(true, "f: quick"), toScale(false, "f: quick")); // large quick full
 * ```
 */
export function toScale(value: Scale | boolean, label: string): Scale {
  if (value === true) return "quick";
  if (value === false) return "full";
  if (typeof value !== "string") {
    throw new TypeError(`${label} must be "quick", "full", "large" or a boolean (true: quick), got ${String(value)}`);
  }
  if (!(SCALES as readonly string[]).includes(value)) {
    throw new RangeError(`${label} must be "quick", "full" or "large", got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * The scale the experiments run at, from `ATTNLAB_SCALE` (`quick`, `full` or `large`) and its alias
 * `ATTNLAB_QUICK=1` (quick); `full` when neither is set. An unknown value, or `ATTNLAB_QUICK=1` together with
 * another `ATTNLAB_SCALE`, is a RangeError that names the variables and how to fix them.
 *
 * @example
 * ```ts
 * import { scale } from "./env.ts";
 * const saved = [Deno.env.get("ATTNLAB_SCALE"), Deno.env.get("ATTNLAB_QUICK")];
 * Deno.env.delete("ATTNLAB_QUICK");
 * Deno.env.set("ATTNLAB_SCALE", "large");
 * console.log(scale()); // large
 * Deno.env.delete("ATTNLAB_SCALE");
 * console.log(scale()); // full
 * for (const [name, value] of [["ATTNLAB_SCALE", saved[0]], ["ATTNLAB_QUICK", saved[1]]] as const) {
 *   if (value === undefined) Deno.env.delete(name);
 *   else Deno.env.set(name, value);
 * }
 * ```
 */
export function scale(): Scale {
  const quick = readEnv("ATTNLAB_QUICK");
  if (quick !== undefined && quick !== "" && quick !== "0" && quick !== "1") {
    throw new RangeError(
      `ATTNLAB_QUICK must be "1" or "0", got "${quick}"; unset it, or set ATTNLAB_SCALE=quick|full|large instead`,
    );
  }
  const value = readEnv("ATTNLAB_SCALE");
  if (value === undefined || value === "") return quick === "1" ? "quick" : "full";
  if (!(SCALES as readonly string[]).includes(value)) {
    throw new RangeError(
      `ATTNLAB_SCALE must be "quick", "full" or "large", got "${value}"; unset it for full scale or set one of those`,
    );
  }
  if (quick === "1" && value !== "quick") {
    throw new RangeError(
      `ATTNLAB_QUICK=1 asks for quick scale but ATTNLAB_SCALE=${value} for ${value} scale; ` +
        `unset ATTNLAB_QUICK (or set it to 0) to run at ${value} scale, or set ATTNLAB_SCALE=quick`,
    );
  }
  return value as Scale;
}

/**
 * Whether quick mode is on (`ATTNLAB_QUICK=1`, or `ATTNLAB_SCALE=quick`): notebooks then use small sizes.
 * The same as `scale() === "quick"` (see {@linkcode scale}).
 *
 * @example
 * ```ts
 * import { isQuick } from "./env.ts";
 * const lengths = isQuick() ? [64, 128] : [256, 1024, 4096];
 * console.log(lengths.length > 0);
 * ```
 */
export function isQuick(): boolean {
  return scale() === "quick";
}

/** Options for {@linkcode figuresDir}. */
export interface FiguresDirOptions {
  /**
   * Whether to answer for quick mode (a temporary folder when `ATTNLAB_FIGURES_DIR`
   * is unset). Default: {@linkcode isQuick}. Pass `false` for the folder full runs use.
   */
  quick?: boolean;
}

let quickFiguresDir: string | undefined;

// The per-process temporary folder for quick-mode figures, created (and announced) once.
// (A new one is made, and announced, only if the first was deleted meanwhile.)
function quickDir(): string {
  if (quickFiguresDir !== undefined && existsSync(quickFiguresDir)) return quickFiguresDir;
  quickFiguresDir = Deno.makeTempDirSync({ prefix: QUICK_FIGURES_PREFIX });
  console.error(
    `attnlab: quick mode (ATTNLAB_QUICK=1) writes figures to ${quickFiguresDir}, not figures/; ` +
      `set ATTNLAB_FIGURES_DIR=figures to write them there`,
  );
  return quickFiguresDir;
}

function unsetOrEmpty(value: string | undefined): value is undefined {
  if (value === "") {
    throw new Error(
      `ATTNLAB_FIGURES_DIR is set but empty; unset it to use figures/ (a temporary folder in quick mode), ` +
        `or set it to a folder such as ATTNLAB_FIGURES_DIR=/tmp/attnlab-figures`,
    );
  }
  return value === undefined;
}

/**
 * The folder figures are written to, as an absolute path:
 *
 * - `ATTNLAB_FIGURES_DIR` when set (a relative path is taken from the repository root);
 * - otherwise, in quick mode, a temporary folder made once per process (its path is
 *   printed to stderr the first time), so quick runs never overwrite `figures/`;
 * - otherwise `figures/` at the repository root.
 *
 * An empty `ATTNLAB_FIGURES_DIR` is an error. Nothing is checked on disk; use
 * {@linkcode ensureFiguresDir} for that.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { figuresDir, REPO_ROOT } from "./env.ts";
 * const saved = Deno.env.get("ATTNLAB_FIGURES_DIR");
 * Deno.env.delete("ATTNLAB_FIGURES_DIR");
 * console.log(figuresDir({ quick: false }) === join(REPO_ROOT, "figures")); // true
 * Deno.env.set("ATTNLAB_FIGURES_DIR", "out/figs");
 * console.log(figuresDir({ quick: true }) === join(REPO_ROOT, "out", "figs")); // true
 * if (saved === undefined) Deno.env.delete("ATTNLAB_FIGURES_DIR");
 * else Deno.env.set("ATTNLAB_FIGURES_DIR", saved);
 * ```
 */
export function figuresDir(options: FiguresDirOptions = {}): string {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new TypeError(`figuresDir: options must be an object like { quick: false }, got ${String(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (key !== "quick") throw new TypeError(`figuresDir: unknown option "${key}"; the only option is quick`);
  }
  if (options.quick !== undefined && typeof options.quick !== "boolean") {
    throw new TypeError(`figuresDir: options.quick must be true or false, got ${String(options.quick)}`);
  }
  const value = readEnv("ATTNLAB_FIGURES_DIR");
  if (!unsetOrEmpty(value)) return isAbsolute(value) ? resolve(value) : resolve(REPO_ROOT, value);
  return (options.quick ?? isQuick()) ? quickDir() : join(REPO_ROOT, "figures");
}

/** Options for {@linkcode ensureFiguresDir}. */
export interface EnsureFiguresDirOptions {
  /** What the folder is called in error messages when it was given explicitly, e.g. `"saveFigure: options.outDir"`. */
  label?: string;
  /** Without `dir`: passed to {@linkcode figuresDir} (`false` checks the folder full runs use). Default {@linkcode isQuick}. */
  quick?: boolean;
}

function describeError(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/**
 * Checks that the figures folder can be used before any work starts: it (or the
 * nearest folder above it that exists) must be a folder, not a file, and a file
 * must be creatable in it. A missing folder is created. Returns the absolute path.
 *
 * Without `dir` it checks {@linkcode figuresDir}; the error then names
 * `ATTNLAB_FIGURES_DIR` and its value when that variable chose the folder.
 * With `dir` the error names `options.label` (default `"the folder"`) and `dir`.
 * Every error says why and how to fix it.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { ensureFiguresDir } from "./env.ts";
 * const dir = await Deno.makeTempDir();
 * console.log(ensureFiguresDir(join(dir, "figures")) === join(dir, "figures")); // true (created)
 * const file = await Deno.makeTempFile();
 * try {
 *   ensureFiguresDir(join(file, "figures"), { label: "outDir" });
 * } catch (err) {
 *   console.log((err as Error).message); // outDir "/tmp/…/figures" cannot be used as the figures folder: /tmp/… is a file, …
 * }
 * ```
 */
export function ensureFiguresDir(dir?: string, options: EnsureFiguresDirOptions = {}): string {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new TypeError(`ensureFiguresDir: options must be an object like { label: "outDir" }, got ${String(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (key !== "label" && key !== "quick") {
      throw new TypeError(`ensureFiguresDir: unknown option "${key}"; expected label or quick`);
    }
  }
  if (dir !== undefined && (typeof dir !== "string" || dir === "")) {
    throw new TypeError(
      `${options.label ?? "ensureFiguresDir: dir"} must be a non-empty folder path, got ${JSON.stringify(dir)}`,
    );
  }
  const fromEnv = dir === undefined ? readEnv("ATTNLAB_FIGURES_DIR") : undefined;
  const path = dir !== undefined ? resolve(dir) : figuresDir({ quick: options.quick });
  const what = fromEnv !== undefined
    ? `ATTNLAB_FIGURES_DIR=${JSON.stringify(fromEnv)}`
    : dir !== undefined
    ? `${options.label ?? "the folder"} ${JSON.stringify(dir)}`
    : `the figures folder ${path}`;
  const fix = fromEnv !== undefined
    ? "set ATTNLAB_FIGURES_DIR to a folder you can write to (it is created if missing), " +
      "or unset it to use figures/ (a temporary folder in quick mode)"
    : "choose a folder you can write to (it is created if missing)";
  const fail = (reason: string): never => {
    throw new Error(`${what} cannot be used as the figures folder: ${reason}; ${fix}`);
  };

  // The nearest existing path at or above the folder must be a folder.
  let existing = path;
  for (;;) {
    let stat: Deno.FileInfo | undefined;
    try {
      stat = Deno.statSync(existing);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory)) {
        fail(`${existing} cannot be read (${describeError(err)})`);
      }
    }
    if (stat === undefined) {
      if (dirname(existing) === existing) fail(`no part of ${path} exists`);
      existing = dirname(existing);
      continue;
    }
    if (!stat.isDirectory) {
      fail(
        existing === path
          ? `${path} is a file, not a folder`
          : `${existing} is a file, not a folder, so no folder can be created under it`,
      );
    }
    break;
  }
  try {
    Deno.mkdirSync(path, { recursive: true });
  } catch (err) {
    fail(`the folder could not be created (${describeError(err)})`);
  }
  // A file must be creatable in it; the probe is removed at once.
  let probe: string | undefined;
  try {
    probe = Deno.makeTempFileSync({ dir: path, prefix: ".attnlab-write-check-", suffix: ".tmp" });
  } catch (err) {
    fail(`no file can be created in ${path} (${describeError(err)})`);
  } finally {
    if (probe !== undefined) Deno.removeSync(probe);
  }
  return path;
}

/**
 * Reads a string environment variable; `undefined` when unset or not permitted.
 *
 * @example
 * ```ts
 * import { envString } from "./env.ts";
 * console.log(typeof (envString("HOME") ?? ""));
 * ```
 */
export function envString(name: string): string | undefined {
  const value = readEnv(name);
  return value === "" ? undefined : value;
}
