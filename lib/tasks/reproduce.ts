/**
 * `deno task reproduce`: setup, then every notebook in full mode, saved in
 * place with its outputs; figures go to `figures/` (or `ATTNLAB_FIGURES_DIR`).
 *
 * @module
 */

import { existsSync } from "node:fs";
import { pruneManifest } from "../figures/manifest.ts";
import { formatSummary, listNotebooks, runNotebooks } from "../notebook/runner.ts";
import { defaultFiguresDir } from "../notebook/paths.ts";
import { setup } from "./setup.ts";
import { formatHelp, parseFlags, parseSeconds, runMain } from "./cli.ts";

const FLAGS = {
  only: {
    type: "string",
    multiple: true,
    value: "PATTERN",
    description: "run only notebooks whose file name starts with or contains PATTERN (e.g. --only 00)",
  },
  "fail-fast": { type: "boolean", description: "stop at the first failing notebook" },
  "cell-timeout": { type: "string", value: "SECONDS", description: "seconds one cell may run (default 3600)" },
  timeout: { type: "string", value: "SECONDS", description: "seconds one notebook may run (default 14400)" },
  help: { type: "boolean", description: "show this help" },
} as const;

const DESCRIPTION = `Executes notebooks/NN_*.ipynb (or the NOTEBOOKS given) one by one at full size
through Jupyter and the Deno kernel, saving each in place with its outputs.
A failing notebook is left unchanged; its partial outputs go to a temporary file.`;

/**
 * The task's entry point; returns the exit status.
 *
 * @example
 * ```ts
 * import { main } from "./reproduce.ts";
 * console.log(await main(["--help"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, FLAGS, { command: "reproduce", positionals: true });
  if (values.help) {
    console.log(formatHelp("deno task reproduce [flags] [NOTEBOOKS...]", DESCRIPTION, FLAGS));
    return 0;
  }
  const cellTimeoutSeconds = values["cell-timeout"]
    ? parseSeconds(values["cell-timeout"] as string, "--cell-timeout")
    : 3600;
  const timeoutSeconds = values.timeout ? parseSeconds(values.timeout as string, "--timeout") : 14400;
  const only = (values.only as string[] | undefined) ?? [];
  if (positionals.length > 0 && only.length > 0) throw new Error("reproduce: give NOTEBOOKS or --only, not both");
  const missing = positionals.filter((path) => !existsSync(path));
  if (missing.length > 0) throw new Error(`reproduce: no such notebook: ${missing.join(", ")}`);
  const notebooks = positionals.length > 0 ? positionals : listNotebooks({ only });

  await setup();
  if (notebooks.length === 0) {
    console.log("reproduce: no notebooks in notebooks/, nothing to do");
    return 0;
  }
  console.log(`reproduce: ${notebooks.length} notebook(s), figures to ${defaultFiguresDir()}`);
  const results = await runNotebooks(notebooks, {
    mode: "full",
    cellTimeoutSeconds,
    timeoutSeconds,
    failFast: Boolean(values["fail-fast"]),
  });
  console.log(formatSummary(results));
  const dropped = await pruneManifest(defaultFiguresDir());
  if (dropped.length > 0) {
    console.log(`reproduce: dropped manifest entries of figures no longer drawn: ${dropped.join(", ")}`);
  }
  const failed = results.filter((r) => r.status === "failed").length;
  console.log(`reproduce: ${results.length - failed} passed, ${failed} failed`);
  return failed > 0 ? 1 : 0;
}

if (import.meta.main) await runMain(main);
