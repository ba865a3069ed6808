/**
 * Starts the classic Jupyter Notebook server (`python3 -m notebook`) from
 * code: on a free port, with a token, and returns once it answers HTTP.
 * `deno task notebook` and the browser tests start it through
 * {@linkcode startNotebookServer}, so the tests exercise the user's path.
 *
 * @module
 */

import { existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { findPython } from "./jupyter.ts";
import { NOTEBOOKS_DIR } from "./paths.ts";

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
 * import { buildNotebookArgs } from "./server.ts";
 * console.log(buildNotebookArgs({ headless: true, root: false, dir: "/repo/notebooks", extra: ["--port", "8899"] }));
 * ```
 */
export function buildNotebookArgs(options: NotebookArgsOptions): string[] {
  const extra = options.extra ?? [];
  const args = ["-m", "notebook", `--notebook-dir=${options.dir ?? NOTEBOOKS_DIR}`];
  if (options.headless && !hasFlag(extra, "--no-browser") && !hasFlag(extra, "--browser")) args.push("--no-browser");
  if (options.root && !hasFlag(extra, "--allow-root")) args.push("--allow-root");
  return [...args, ...extra];
}

/**
 * Whether no browser can be opened: Linux without a display, or CI.
 *
 * @example
 * ```ts
 * import { isHeadless } from "./server.ts";
 * console.log(typeof isHeadless());
 * ```
 */
export function isHeadless(): boolean {
  if (Deno.env.get("CI")) return true;
  if (Deno.build.os !== "linux") return false;
  return !Deno.env.get("DISPLAY") && !Deno.env.get("WAYLAND_DISPLAY");
}

/**
 * The first Jupyter server URL in a log line.
 *
 * @example
 * ```ts
 * import { findServerUrl } from "./server.ts";
 * console.log(findServerUrl("[I 10:00:00 NotebookApp]  or http://127.0.0.1:8888/?token=abc"));
 * ```
 */
export function findServerUrl(line: string): string | undefined {
  return line.match(/https?:\/\/(?:localhost|127\.0\.0\.1|\[::1\]|[\w.-]+):\d+\/\S*/)?.[0];
}

function hasFlag(args: readonly string[], flag: string): boolean {
  return args.some((a) => a === flag || a.startsWith(`${flag}=`));
}

/**
 * The value of `--name VALUE` or `--name=VALUE` in `args` (the last one wins,
 * as in Jupyter's own parser); `undefined` when absent.
 *
 * @example
 * ```ts
 * import { flagValue } from "./server.ts";
 * console.log(flagValue(["--port", "8899"], "--port"), flagValue(["--port=9000"], "--port"));
 * ```
 */
export function flagValue(args: readonly string[], name: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name && i + 1 < args.length) value = args[i + 1];
    else if (args[i].startsWith(`${name}=`)) value = args[i].slice(name.length + 1);
  }
  return value;
}

/**
 * A TCP port on 127.0.0.1 that nothing listens on right now: `preferred`
 * when it is free, else one the operating system picks.
 *
 * @example
 * ```ts
 * import { freePort } from "./server.ts";
 * const port = freePort();
 * console.log(port > 0 && port < 65536);
 * ```
 */
export function freePort(preferred?: number): number {
  if (preferred !== undefined) {
    if (!Number.isInteger(preferred) || preferred < 1 || preferred > 65535) {
      throw new RangeError(`freePort: preferred must be an integer port in 1..65535, got ${preferred}`);
    }
    try {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: preferred });
      listener.close();
      return preferred;
    } catch (err) {
      if (!(err instanceof Deno.errors.AddrInUse)) throw err;
    }
  }
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * A random token for the server's URL: 48 hexadecimal digits.
 *
 * @example
 * ```ts
 * import { randomToken } from "./server.ts";
 * console.log(/^[0-9a-f]{48}$/.test(randomToken()));
 * ```
 */
export function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Options for {@linkcode startNotebookServer}. */
export interface NotebookServerOptions {
  /** Folder the server shows (its notebook directory). Default `notebooks/`. */
  dir?: string;
  /**
   * The kernels' working directory for notebooks at the top of `dir`
   * (Jupyter's `MappingKernelManager.root_dir`). Default: `dir` itself.
   * The tests serve a temporary copy and keep kernels in `notebooks/`, so
   * the notebooks' `../lib/...` imports resolve.
   */
  kernelDir?: string;
  /** Port to listen on. Default: {@linkcode freePort}. A `--port` in `extra` wins. */
  port?: number;
  /** The URL token. Default: {@linkcode randomToken}. A `--NotebookApp.token=` in `extra` wins. */
  token?: string;
  /** Variables added to the server's environment, which its kernels inherit. */
  env?: Record<string, string>;
  /** More arguments for `python -m notebook`, after the ones this function adds. */
  extra?: readonly string[];
  /** Python that can `import notebook`. Default: found by `findPython({ needNotebook: true })`. */
  python?: string;
  /** Seconds to wait for the server to answer. Default 60. */
  startupTimeoutSeconds?: number;
  /**
   * `true` (the task): stdin and stdout are the terminal's, stderr is copied
   * to ours as it comes, so Jupyter's Ctrl+C prompt works. `false` (tests,
   * default): all output is kept, the last lines available from `output()`.
   */
  interactive?: boolean;
}

/** A running Notebook server, from {@linkcode startNotebookServer}. */
export interface NotebookServer {
  /** `http://127.0.0.1:PORT/?token=TOKEN`: what a person opens. */
  url: string;
  /** `http://127.0.0.1:PORT/`, without the token. */
  baseUrl: string;
  port: number;
  token: string;
  /** The full command line that started the server. */
  command: string[];
  /** The URL that opens the notebook at `path` (relative to the served folder), token included. */
  notebookUrl(path: string): string;
  /** The server's output so far: its last 200 lines (stderr only when `interactive`). */
  output(): string;
  /** Resolves with the exit status when the server process ends. */
  status: Promise<Deno.CommandStatus>;
  /** Shuts the server and its kernels down (`POST /api/shutdown`, then signals); safe to call twice. */
  stop(): Promise<Deno.CommandStatus>;
}

const OUTPUT_LINES = 200;

const OPTION_KEYS = [
  "dir",
  "kernelDir",
  "port",
  "token",
  "env",
  "extra",
  "python",
  "startupTimeoutSeconds",
  "interactive",
];

function checkDir(value: unknown, name: string): string {
  if (typeof value !== "string" || value === "") {
    throw new TypeError(`startNotebookServer: ${name} must be a folder path (a non-empty string), got ${value}`);
  }
  const path = resolve(value);
  if (!existsSync(path) || !statSync(path).isDirectory()) {
    throw new Error(`startNotebookServer: ${name} ${path} is not an existing folder; create it or pass another one`);
  }
  return path;
}

const delay = (ms: number) => new Promise((done) => setTimeout(done, ms));

/**
 * Starts `python -m notebook` serving `options.dir` on 127.0.0.1, and
 * resolves once `GET /api/status` answers. Throws an Error with the server's
 * last output lines when it exits before answering or does not answer
 * within `startupTimeoutSeconds`; the process is then stopped.
 *
 * @example
 * ```ts
 * import { startNotebookServer } from "./server.ts";
 * // With the Notebook server installed (`deno task setup --notebook`):
 * //   const server = await startNotebookServer({ env: { ATTNLAB_QUICK: "1" } });
 * //   console.log(server.notebookUrl("00_tour.ipynb")); // open it in a browser
 * //   await server.stop();
 * // Bad options fail before anything starts:
 * const message = await startNotebookServer({ dir: "/nonexistent" }).then(() => "started", (e: Error) => e.message);
 * console.log(message); // startNotebookServer: dir /nonexistent is not an existing folder; ...
 * ```
 */
export async function startNotebookServer(options: NotebookServerOptions = {}): Promise<NotebookServer> {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`startNotebookServer: options must be an object, got ${options}`);
  }
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.includes(key)) {
      throw new TypeError(`startNotebookServer: unknown option "${key}"; expected one of ${OPTION_KEYS.join(", ")}`);
    }
  }
  const dir = checkDir(options.dir ?? NOTEBOOKS_DIR, "dir");
  const kernelDir = options.kernelDir === undefined ? undefined : checkDir(options.kernelDir, "kernelDir");
  const timeoutSeconds = options.startupTimeoutSeconds ?? 60;
  if (!(typeof timeoutSeconds === "number" && timeoutSeconds > 0)) {
    throw new RangeError(`startNotebookServer: startupTimeoutSeconds must be a positive number, got ${timeoutSeconds}`);
  }
  const extra = options.extra ?? [];
  const givenPort = flagValue(extra, "--port") ?? flagValue(extra, "--NotebookApp.port");
  const port = givenPort !== undefined ? Number(givenPort) : options.port ?? freePort();
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`startNotebookServer: the port must be an integer in 1..65535, got ${givenPort ?? port}`);
  }
  const token = flagValue(extra, "--NotebookApp.token") ?? options.token ?? randomToken();
  const python = options.python ?? await notebookPython();

  const own: string[] = [];
  if (givenPort === undefined) own.push(`--port=${port}`);
  // Without this Jupyter silently moves to the next port, and the URL here would be wrong.
  if (!hasFlag(extra, "--port-retries") && !hasFlag(extra, "--NotebookApp.port_retries")) {
    own.push("--NotebookApp.port_retries=0");
  }
  if (!hasFlag(extra, "--ip") && !hasFlag(extra, "--NotebookApp.ip")) own.push("--ip=127.0.0.1");
  if (!hasFlag(extra, "--NotebookApp.token")) own.push(`--NotebookApp.token=${token}`);
  if (kernelDir !== undefined) own.push(`--MappingKernelManager.root_dir=${kernelDir}`);
  const args = buildNotebookArgs({ headless: isHeadless(), root: Deno.uid?.() === 0, dir, extra: [...own, ...extra] });

  const interactive = options.interactive ?? false;
  const child = new Deno.Command(python, {
    args,
    cwd: dir,
    env: { PYTHONUNBUFFERED: "1", ...options.env },
    stdin: interactive ? "inherit" : "null",
    stdout: interactive ? "inherit" : "piped",
    stderr: "piped",
  }).spawn();
  const status = child.status;

  const lines: string[] = [];
  let partial = "";
  const keep = (chunk: string) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop()!;
    lines.push(...parts);
    if (lines.length > OUTPUT_LINES) lines.splice(0, lines.length - OUTPUT_LINES);
  };
  const pump = async (stream: ReadableStream<Uint8Array>, echo: boolean) => {
    const encoder = new TextEncoder();
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      if (echo) {
        const bytes = encoder.encode(chunk);
        let written = 0;
        while (written < bytes.length) written += Deno.stderr.writeSync(bytes.subarray(written));
      }
      keep(chunk);
    }
  };
  const pumps = [pump(child.stderr, interactive)];
  if (!interactive) pumps.push(pump(child.stdout, false));
  const output = () => [...lines, ...(partial ? [partial] : [])].join("\n");

  const baseUrl = `http://127.0.0.1:${port}/`;
  let exited: Deno.CommandStatus | undefined;
  status.then((s) => exited = s);
  let stopping: Promise<Deno.CommandStatus> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      if (exited) return exited;
      try {
        const response = await fetch(`${baseUrl}api/shutdown`, {
          method: "POST",
          headers: { Authorization: `token ${token}` },
          signal: AbortSignal.timeout(5000),
        });
        await response.body?.cancel();
      } catch { /* not answering: the signals below stop it */ }
      for (const [signal, waitMs] of [["SIGTERM", 10_000], ["SIGKILL", 5_000]] as const) {
        const done = await Promise.race([status, delay(waitMs).then(() => undefined)]);
        if (done) break;
        try {
          child.kill(signal);
        } catch { /* already gone */ }
      }
      const final = await status;
      await Promise.all(pumps).catch(() => {});
      return final;
    })();
    return stopping;
  };

  const deadline = performance.now() + timeoutSeconds * 1000;
  let refused = false;
  while (true) {
    if (exited) {
      await Promise.all(pumps).catch(() => {});
      throw new Error(
        `startNotebookServer: \`${python} ${args.join(" ")}\` exited with code ${exited.code} before answering` +
          `${tailOf(output())}`,
      );
    }
    try {
      const response = await fetch(`${baseUrl}api/status`, {
        headers: { Authorization: `token ${token}` },
        signal: AbortSignal.timeout(2000),
      });
      await response.body?.cancel();
      if (response.ok) break;
      // A 403 is another server on the port, or ours refusing the token: ours exits soon in the first case.
      refused ||= response.status === 403;
    } catch {
      // Not listening yet.
    }
    if (performance.now() > deadline) {
      await stop();
      const why = refused
        ? ` (it answered 403: is another server on port ${port}, or a password set in the Jupyter config?)`
        : "";
      throw new Error(
        `startNotebookServer: the server did not answer on ${baseUrl} within ${timeoutSeconds} s${why}` +
          `${tailOf(output())}`,
      );
    }
    await delay(200);
  }

  return {
    url: `${baseUrl}?token=${token}`,
    baseUrl,
    port,
    token,
    command: [python, ...args],
    notebookUrl: (path: string) =>
      `${baseUrl}notebooks/${path.split("/").map(encodeURIComponent).join("/")}?token=${token}`,
    output,
    status,
    stop,
  };
}

function tailOf(text: string, count = 20): string {
  const lines = text.trim().split("\n").filter((l) => l.trim());
  if (lines.length === 0) return " (no output)";
  return `; its last output:\n${lines.slice(-count).map((l) => `    ${l}`).join("\n")}`;
}

async function notebookPython(): Promise<string> {
  const search = await findPython({ needNotebook: true });
  if (!search.found) {
    throw new Error(
      `startNotebookServer: no Python with the Jupyter Notebook server (tried: ${search.rejected.join("; ")}); ` +
        "run `deno task setup --notebook` (as root it installs jupyter-notebook with apt)",
    );
  }
  return search.found.command;
}
