/**
 * `deno task notebook`: setup (with the Jupyter Notebook server), then
 * `jupyter notebook` in `notebooks/` with the Deno kernel registered, started
 * by `startNotebookServer` (lib/notebook/server.ts), as the browser tests do.
 *
 * @module
 */

import { freePort, startNotebookServer } from "../notebook/server.ts";
import { setup } from "./setup.ts";
import { runMain } from "./cli.ts";

// Kept here for callers of the task module; they live with the server start.
export { buildNotebookArgs, findServerUrl, isHeadless, type NotebookArgsOptions } from "../notebook/server.ts";

/** The port `deno task notebook` uses when it is free (Jupyter's usual one); else any free port. */
export const PREFERRED_PORT = 8888;

const HELP = `usage: deno task notebook [JUPYTER NOTEBOOK ARGS...]

Installs what is missing (see \`deno task setup --help\`, here with the Notebook
server), then starts \`jupyter notebook\` in notebooks/ with the Deno kernel on
127.0.0.1, port ${PREFERRED_PORT} when free (else a free port), with a fresh token, and
prints the URL to open once the server answers.
Every argument except --help goes to \`jupyter notebook\` unchanged
(e.g. --port 8899, --ip 0.0.0.0). --no-browser is added when there is no
display, --allow-root when running as root.

flags:
  --help  show this help`;

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
  // Ctrl+C belongs to Jupyter (it asks before shutting down); this process just waits.
  const ignore = () => {};
  Deno.addSignalListener("SIGINT", ignore);
  try {
    const server = await startNotebookServer({
      python: report.python.command,
      extra: args,
      port: freePort(PREFERRED_PORT),
      interactive: true,
      startupTimeoutSeconds: 120,
    });
    console.log(`notebook: ${server.command.join(" ").replace(server.token, "...")}`);
    console.log(`notebook: open ${server.url}`);
    const status = await server.status;
    return status.code;
  } finally {
    Deno.removeSignalListener("SIGINT", ignore);
  }
}

if (import.meta.main) await runMain(main);
