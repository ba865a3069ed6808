/**
 * Finds the pieces of Jupyter that the notebook runner needs: a Python that
 * can import nbclient, and the Deno kernelspec.
 *
 * @module
 */

import { existsSync, readFileSync, realpathSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/** What one Python interpreter offers. */
export interface PythonInfo {
  /** The command that was run, as given (`python3`, `/usr/bin/python3`). */
  command: string;
  /** The interpreter's `sys.executable`. */
  executable: string;
  /** The nbclient version. */
  nbclient: string;
  /** The classic Jupyter Notebook version, when it is installed. */
  notebook?: string;
}

/** Python commands tried in order; `ATTNLAB_PYTHON` replaces the list when set. */
export const PYTHON_CANDIDATES: readonly string[] = ["python3", "/usr/bin/python3", "python"];

/** The oldest nbclient with the cell hooks the driver uses. */
export const MIN_NBCLIENT: readonly [number, number] = [0, 6];

const PROBE = [
  "import json, sys",
  "info = {'executable': sys.executable}",
  "try:",
  "    import nbclient, nbformat, jupyter_client",
  "    info['nbclient'] = nbclient.__version__",
  "except Exception as e:",
  "    info['error'] = type(e).__name__ + ': ' + str(e)",
  "try:",
  "    import notebook",
  "    info['notebook'] = notebook.__version__",
  "except Exception:",
  "    pass",
  "print(json.dumps(info))",
].join("\n");

/**
 * Whether an nbclient version string is at least {@linkcode MIN_NBCLIENT}.
 *
 * @example
 * ```ts
 * import { nbclientRecentEnough } from "./jupyter.ts";
 * console.log(nbclientRecentEnough("0.7.2"), nbclientRecentEnough("0.5.13"));
 * ```
 */
export function nbclientRecentEnough(version: string): boolean {
  const [major, minor] = version.split(".").map((part) => parseInt(part, 10));
  if (!Number.isFinite(major) || !Number.isFinite(minor)) return false;
  return major > MIN_NBCLIENT[0] || (major === MIN_NBCLIENT[0] && minor >= MIN_NBCLIENT[1]);
}

async function probe(command: string): Promise<PythonInfo | string> {
  try {
    const out = await new Deno.Command(command, {
      args: ["-c", PROBE],
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout).trim();
    if (!out.success || !text) return `${command}: exited with ${out.code}`;
    const info = JSON.parse(text.split("\n").at(-1)!);
    if (info.error) return `${command}: ${info.error}`;
    if (!nbclientRecentEnough(info.nbclient)) {
      return `${command}: nbclient ${info.nbclient} is older than ${MIN_NBCLIENT.join(".")}`;
    }
    return { command, executable: info.executable, nbclient: info.nbclient, notebook: info.notebook };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return `${command}: not found`;
    return `${command}: ${(err as Error).message}`;
  }
}

/** The result of {@linkcode findPython}: the first usable interpreter, and why the others were not. */
export interface PythonSearch {
  /** The first interpreter that meets the request, if any. */
  found?: PythonInfo;
  /** With `needNotebook`: the first interpreter that has nbclient but not the Notebook server. */
  withoutNotebook?: PythonInfo;
  /** One line per rejected candidate. */
  rejected: string[];
}

/** Options for {@linkcode findPython}. */
export interface FindPythonOptions {
  /** Also require the classic Jupyter Notebook (`import notebook`). Default false. */
  needNotebook?: boolean;
  /** Commands to try; default `ATTNLAB_PYTHON` if set, else {@linkcode PYTHON_CANDIDATES}. */
  candidates?: readonly string[];
}

/**
 * Finds a Python that can import nbclient (and, if asked, the Notebook server).
 *
 * @example
 * ```ts
 * import { findPython } from "./jupyter.ts";
 * const search = await findPython({ candidates: ["/nonexistent/python3"] });
 * console.log(search.found === undefined, search.rejected[0]);
 * ```
 */
export async function findPython(options: FindPythonOptions = {}): Promise<PythonSearch> {
  const fromEnv = Deno.env.get("ATTNLAB_PYTHON");
  const candidates = options.candidates ?? (fromEnv ? [fromEnv] : PYTHON_CANDIDATES);
  const rejected: string[] = [];
  let withoutNotebook: PythonInfo | undefined;
  for (const command of candidates) {
    const result = await probe(command);
    if (typeof result === "string") {
      rejected.push(result);
    } else if (options.needNotebook && result.notebook === undefined) {
      rejected.push(`${command}: has nbclient ${result.nbclient} but no Jupyter Notebook (import notebook)`);
      withoutNotebook ??= result;
    } else {
      return { found: result, withoutNotebook, rejected };
    }
  }
  return { withoutNotebook, rejected };
}

/**
 * The user's Jupyter data folder, where `deno jupyter --install` puts kernelspecs.
 * `JUPYTER_DATA_DIR` wins, as in Jupyter itself.
 *
 * @example
 * ```ts
 * import { jupyterDataDir } from "./jupyter.ts";
 * console.log(jupyterDataDir().length > 0);
 * ```
 */
export function jupyterDataDir(): string {
  const explicit = Deno.env.get("JUPYTER_DATA_DIR");
  if (explicit) return explicit;
  return denoJupyterDataDir();
}

/**
 * The Jupyter data folder `deno jupyter --install` writes to; it ignores `JUPYTER_DATA_DIR`.
 *
 * @example
 * ```ts
 * import { denoJupyterDataDir } from "./jupyter.ts";
 * console.log(denoJupyterDataDir().endsWith("upyter"));
 * ```
 */
export function denoJupyterDataDir(): string {
  const home = homedir();
  if (Deno.build.os === "darwin") return join(home, "Library", "Jupyter");
  if (Deno.build.os === "windows") return join(Deno.env.get("APPDATA") ?? home, "jupyter");
  return join(Deno.env.get("XDG_DATA_HOME") || join(home, ".local", "share"), "jupyter");
}

/** What {@linkcode kernelspecStatus} found. */
export interface KernelspecStatus {
  /** The kernelspec folder looked at. */
  dir: string;
  /** `ok`, or why the kernelspec must be (re)installed. */
  state: "ok" | "missing" | "unreadable" | "stale" | "other-deno";
  /** The deno binary the kernelspec starts, when readable. */
  deno?: string;
}

function realpathOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/**
 * Checks the kernelspec named `name` under `dataDir`: present, and starting this very deno.
 *
 * @example
 * ```ts
 * import { kernelspecStatus } from "./jupyter.ts";
 * console.log(kernelspecStatus({ dataDir: "/nonexistent" }).state);
 * ```
 */
export function kernelspecStatus(
  options: { dataDir?: string; name?: string; deno?: string } = {},
): KernelspecStatus {
  const dir = join(options.dataDir ?? jupyterDataDir(), "kernels", options.name ?? "deno");
  const file = join(dir, "kernel.json");
  if (!existsSync(file)) return { dir, state: "missing" };
  let argv0: unknown;
  try {
    argv0 = JSON.parse(readFileSync(file, "utf8")).argv?.[0];
  } catch {
    return { dir, state: "unreadable" };
  }
  if (typeof argv0 !== "string") return { dir, state: "unreadable" };
  if (!existsSync(argv0)) return { dir, state: "stale", deno: argv0 };
  const current = options.deno ?? Deno.execPath();
  if (realpathOrSelf(argv0) !== realpathOrSelf(current)) return { dir, state: "other-deno", deno: argv0 };
  return { dir, state: "ok", deno: argv0 };
}
