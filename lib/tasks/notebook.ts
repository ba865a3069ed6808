/**
 * `deno task notebook`: setup (with the Jupyter Notebook server), then
 * `jupyter notebook` in `notebooks/` with the Deno kernel registered.
 *
 * @module
 */

import { NOTEBOOKS_DIR } from "../notebook/paths.ts";
import { setup } from "./setup.ts";
import { runMain } from "./cli.ts";

const HELP = `usage: deno task notebook [JUPYTER NOTEBOOK ARGS...]

Installs what is missing (see \`deno task setup --help\`, here with the Notebook
server), then starts \`jupyter notebook\` in notebooks/ with the Deno kernel.
Every argument except --help goes to \`jupyter notebook\` unchanged
(e.g. --port 8899, --ip 0.0.0.0). --no-browser is added when there is no
display, --allow-root when running as root.

flags:
  --help  show this help`;

/** Options for {@linkcode buildNotebookArgs}. */
export interface NotebookArgsOptions {
  /** Whether a browser can be opened here. */
  headless: boolean;
  /** Whether this runs as root (Jupyter refuses to without --allow-root). */
  root: boolean;
  /** Extra arguments, passed through. */
  extra?: readonly string[];
  /** Folder to serve. Default `notebooks/`. */
  dir?: string;
}

/**
 * The arguments for `python -m notebook`.
 *
 * @example
 * ```ts
 * import { buildNotebookArgs } from "./notebook.ts";
 * console.log(buildNotebookArgs({ headless: true, root: false, dir: "/repo/notebooks", extra: ["--port", "8899"] }));
 * ```
 */
export function buildNotebookArgs(options: NotebookArgsOptions): string[] {
  const extra = options.extra ?? [];
  const args = ["-m", "notebook", `--notebook-dir=${options.dir ?? NOTEBOOKS_DIR}`];
  const has = (flag: string) => extra.some((a) => a === flag || a.startsWith(`${flag}=`));
  if (options.headless && !has("--no-browser") && !has("--browser")) args.push("--no-browser");
  if (options.root && !has("--allow-root")) args.push("--allow-root");
  return [...args, ...extra];
}

/**
 * Whether no browser can be opened: Linux without a display, or CI.
 *
 * @example
 * ```ts
 * import { isHeadless } from "./notebook.ts";
 * console.log(typeof isHeadless());
 * ```
 */
export function isHeadless(): boolean {
  if (Deno.env.get("CI")) return true;
  if (Deno.build.os !== "linux") return false;
  return !Deno.env.get("DISPLAY") && !Deno.env.get("WAYLAND_DISPLAY");
}

/**
 * The first Jupyter server URL in a log line, preferring the one with a token.
 *
 * @example
 * ```ts
 * import { findServerUrl } from "./notebook.ts";
 * console.log(findServerUrl("[I 10:00:00 NotebookApp]  or http://127.0.0.1:8888/?token=abc"));
 * ```
 */
export function findServerUrl(line: string): string | undefined {
  return line.match(/https?:\/\/(?:localhost|127\.0\.0\.1|\[::1\]|[\w.-]+):\d+\/\S*/)?.[0];
}

/**
 * The task's entry point; returns the exit status of the Notebook server.
 *
 * @example
 * ```ts
 * import { main } from "./notebook.ts";
 * console.log(await main(["--help"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(HELP);
    return 0;
  }
  const report = await setup({ notebookUI: true });
  const jupyterArgs = buildNotebookArgs({ headless: isHeadless(), root: Deno.uid?.() === 0, extra: args });
  console.log(`notebook: ${report.python.command} ${jupyterArgs.join(" ")}`);
  const child = new Deno.Command(report.python.command, {
    args: jupyterArgs,
    cwd: NOTEBOOKS_DIR,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "piped",
  }).spawn();
  // Ctrl+C belongs to Jupyter (it asks before shutting down); this process just waits.
  const ignore = () => {};
  Deno.addSignalListener("SIGINT", ignore);
  let announced = false;
  const encoder = new TextEncoder();
  let buffer = "";
  for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
    Deno.stderr.writeSync(encoder.encode(chunk));
    buffer += chunk;
    let newline: number;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      const url = findServerUrl(line);
      if (!announced && url && url.includes("token=")) {
        announced = true;
        console.log(`notebook: open ${url}`);
      }
    }
  }
  const status = await child.status;
  Deno.removeSignalListener("SIGINT", ignore);
  return status.code;
}

if (import.meta.main) await runMain(main);
