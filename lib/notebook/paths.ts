/**
 * Where the notebook tooling finds the repository, its notebooks and figures.
 *
 * @module
 */

import { join } from "node:path";
import { figuresDir, REPO_ROOT } from "../env.ts";

/** The repository root: the folder that holds `deno.json`. */
export const ROOT: string = REPO_ROOT;

/** The folder that holds the project's notebooks; also the kernel's working directory. */
export const NOTEBOOKS_DIR: string = join(ROOT, "notebooks");

/** The Python driver that executes one notebook through nbclient. */
export const EXECUTE_PY: string = join(ROOT, "lib", "notebook", "execute.py");

/**
 * The folder full runs write figures to: `ATTNLAB_FIGURES_DIR`, or `figures/` at the root
 * (even under `ATTNLAB_QUICK=1`: the runner sets each notebook's mode itself).
 *
 * @example
 * ```ts
 * import { defaultFiguresDir } from "./paths.ts";
 * console.log(defaultFiguresDir().length > 0);
 * ```
 */
export function defaultFiguresDir(): string {
  return figuresDir({ quick: false });
}
