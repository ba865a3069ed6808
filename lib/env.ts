/**
 * Run-time settings shared by the library, the notebooks and the tasks.
 *
 * Every setting comes from an environment variable so that notebooks, which
 * take no command-line arguments, can be steered from the outside:
 *
 * | variable              | meaning                                             |
 * | --------------------- | --------------------------------------------------- |
 * | `ATTNLAB_QUICK`       | `1` selects small sizes (CI, the test task)         |
 * | `ATTNLAB_BACKEND`     | forces a TensorFlow.js backend (see `backend.ts`)   |
 * | `ATTNLAB_FIGURES_DIR` | where figures and `manifest.json` are written       |
 *
 * @module
 */

import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root: the folder that holds `deno.json`. */
export const REPO_ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), "..");

function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    // Without --allow-env every variable reads as unset.
    return undefined;
  }
}

/**
 * Whether quick mode is on (`ATTNLAB_QUICK=1`): notebooks then use small sizes.
 *
 * @example
 * ```ts
 * import { isQuick } from "./env.ts";
 * const lengths = isQuick() ? [64, 128] : [256, 1024, 4096];
 * console.log(lengths.length > 0);
 * ```
 */
export function isQuick(): boolean {
  const value = readEnv("ATTNLAB_QUICK");
  if (value === undefined || value === "" || value === "0") return false;
  if (value === "1") return true;
  throw new Error(`ATTNLAB_QUICK must be "1" or "0", got "${value}"; unset it or set ATTNLAB_QUICK=1 for quick mode`);
}

/**
 * The folder figures are written to: `ATTNLAB_FIGURES_DIR`, or `figures/` at the repository root.
 *
 * @example
 * ```ts
 * import { figuresDir } from "./env.ts";
 * console.log(figuresDir().length > 0);
 * ```
 */
export function figuresDir(): string {
  const value = readEnv("ATTNLAB_FIGURES_DIR");
  return value ? resolve(value) : join(REPO_ROOT, "figures");
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
