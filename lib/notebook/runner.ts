/**
 * Executes notebooks through the real Jupyter machinery (nbclient and the
 * Deno kernel), one at a time, with one progress line per cell.
 *
 * Three modes, one per scale (the kernel gets `ATTNLAB_SCALE` set to the mode):
 * - `quick` (tests, CI): runs a copy in a temporary folder with
 *   `ATTNLAB_QUICK=1` and figures going to a temporary folder; tracked files
 *   are never written.
 * - `full` (reproduce): full sizes, saves each notebook in place with its
 *   outputs (atomically), figures go to `figures/` (or `ATTNLAB_FIGURES_DIR`).
 * - `large` (`deno task reproduce --scale large`, meant for a GPU): as `full`, at the large scale.
 *
 * The kernel always runs in `notebooks/`, so relative imports such as
 * `../lib/attention/mod.ts` resolve even when the file executed is a copy.
 *
 * @module
 */

import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { writeFileAtomic } from "../figures/atomic.ts";
import { PROVENANCE_ENV } from "../figures/manifest.ts";
import type { GitState } from "../figures/manifest.ts";
import { trackChild } from "../children.ts";
import { findPython } from "./jupyter.ts";
import { normaliseOutputs, type NotebookJson } from "./outputs.ts";
import { defaultFiguresDir, EXECUTE_PY, NOTEBOOKS_DIR, ROOT } from "./paths.ts";

/**
 * `quick`: small sizes, on copies; `full`: full sizes, saved in place; `large`: the large scale (`ATTNLAB_SCALE=large`,
 * meant for a GPU), saved in place as in full mode. The mode is the kernel's scale: it gets `ATTNLAB_SCALE` set to the
 * mode and `ATTNLAB_QUICK` to agree.
 */
export type RunMode = "quick" | "full" | "large";

/** Options for {@linkcode runNotebook} and {@linkcode runNotebooks}. */
export interface RunOptions {
  /** Default `quick`. */
  mode?: RunMode;
  /** Seconds one cell may run. Default 1200. */
  cellTimeoutSeconds?: number;
  /** Seconds the whole notebook may run, kernel start included. Default 3600. */
  timeoutSeconds?: number;
  /** Seconds the kernel may take to start. Default 120. */
  startupTimeoutSeconds?: number;
  /** Python command that can import nbclient. Default: found by `findPython`. */
  python?: string;
  /** Kernelspec name. Default `deno`. */
  kernel?: string;
  /** The kernel's working directory. Default `notebooks/`. */
  cwd?: string;
  /** Where figures go. Default: a temporary folder in quick mode, `figures/` in full mode. */
  figuresDir?: string;
  /** Receives every progress line. Default `console.log`. */
  log?: (line: string) => void;
  /** Seconds between "still running" lines for a long cell. Default 60. */
  heartbeatSeconds?: number;
  /**
   * The git state to record in every manifest entry the notebook saves, handed to the kernel as
   * `ATTNLAB_PROVENANCE` (`deno task reproduce` records it once, at its start). Default: none, and the
   * notebook reads the git state at each save.
   */
  provenance?: GitState;
}

/** The outcome of one notebook. */
export interface NotebookResult {
  /** The notebook, relative to the repository root when inside it. */
  notebook: string;
  /** Number of cells in the notebook, markdown included. */
  cells: number;
  /** Code cells executed. */
  executed: number;
  /** Wall-clock seconds, kernel start included. */
  seconds: number;
  /** Seconds the kernel took to start, when it started. */
  kernelSeconds?: number;
  status: "ok" | "failed";
  /** The failure, when `status` is `failed`. */
  error?: NotebookError;
}

/** A notebook failed: names the notebook and, when a cell failed, the cell. */
export class NotebookError extends Error {
  /** The notebook, as given to the runner. */
  readonly notebook: string;
  /** The failing cell, 1-based over all cells (markdown included), as Jupyter shows them. */
  readonly cell?: number;
  /** The first non-blank source line of the failing cell. */
  readonly firstLine?: string;
  /** `cell` (the code threw), `timeout`, `kernel` (died), `setup` or `runner`. */
  readonly kind: string;
  /** Error name reported by the kernel, e.g. `RangeError`. */
  readonly ename?: string;
  /** Error message reported by the kernel. */
  readonly evalue?: string;
  /** Where the partially executed notebook was saved, if anywhere. */
  readonly partialOutput?: string;

  constructor(
    message: string,
    details: {
      notebook: string;
      kind: string;
      cell?: number;
      firstLine?: string;
      ename?: string;
      evalue?: string;
      partialOutput?: string;
    },
  ) {
    super(message);
    this.name = "NotebookError";
    this.notebook = details.notebook;
    this.kind = details.kind;
    this.cell = details.cell;
    this.firstLine = details.firstLine;
    this.ename = details.ename;
    this.evalue = details.evalue;
    this.partialOutput = details.partialOutput;
  }
}

const NOTEBOOK_NAME = /^\d\d_.*\.ipynb$/;

/**
 * The project's notebooks: `NN_*.ipynb` in `dir` (default `notebooks/`), sorted.
 * Each `only` pattern keeps names that start with or contain it; a pattern
 * that matches nothing is an error. No notebooks at all gives an empty list.
 *
 * @example
 * ```ts
 * import { listNotebooks } from "./runner.ts";
 * console.log(listNotebooks({ dir: "/nonexistent" }));
 * ```
 */
export function listNotebooks(options: { dir?: string; only?: readonly string[] } = {}): string[] {
  const dir = options.dir ?? NOTEBOOKS_DIR;
  let names: string[];
  try {
    names = readdirSync(dir).filter((name) => NOTEBOOK_NAME.test(name)).sort();
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") names = [];
    else throw err;
  }
  const only = (options.only ?? []).flatMap((p) => p.split(",")).map((p) => p.trim()).filter((p) => p);
  if (only.length > 0) {
    const picked = names.filter((name) => only.some((p) => name.startsWith(p) || name.includes(p)));
    for (const pattern of only) {
      if (!names.some((name) => name.startsWith(pattern) || name.includes(pattern))) {
        const have = names.length > 0 ? names.join(", ") : "none";
        throw new Error(`--only ${pattern} matches no notebook in ${dir} (notebooks there: ${have})`);
      }
    }
    names = picked;
  }
  return names.map((name) => join(dir, name));
}

/** What {@linkcode buildExecuteArgs} needs to know. */
export interface ExecuteArgsOptions {
  /** Notebook file to read. */
  input: string;
  /** Where to save the executed notebook; none: not saved. */
  output?: string;
  /** Where to save a partially executed notebook on failure. */
  partialOutput?: string;
  cwd?: string;
  kernel?: string;
  cellTimeoutSeconds?: number;
  timeoutSeconds?: number;
  startupTimeoutSeconds?: number;
}

/**
 * The arguments for the Python driver `execute.py`, for the interpreter that has nbclient.
 *
 * @example
 * ```ts
 * import { buildExecuteArgs } from "./runner.ts";
 * const args = buildExecuteArgs({ input: "/tmp/00_intro.ipynb", cellTimeoutSeconds: 60 });
 * console.log(args.slice(1).join(" "));
 * ```
 */
export function buildExecuteArgs(options: ExecuteArgsOptions): string[] {
  const args = [
    EXECUTE_PY,
    "--input",
    options.input,
    "--cwd",
    options.cwd ?? NOTEBOOKS_DIR,
    "--kernel",
    options.kernel ?? "deno",
    "--cell-timeout",
    String(options.cellTimeoutSeconds ?? 1200),
    "--timeout",
    String(options.timeoutSeconds ?? 3600),
    "--startup-timeout",
    String(options.startupTimeoutSeconds ?? 120),
  ];
  if (options.output) args.push("--output", options.output);
  if (options.partialOutput) args.push("--partial-output", options.partialOutput);
  return args;
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;

/**
 * Removes ANSI colour and cursor sequences.
 *
 * @example
 * ```ts
 * import { stripAnsi } from "./runner.ts";
 * console.log(stripAnsi("\x1b[31mred\x1b[0m"));
 * ```
 */
export function stripAnsi(text: string): string {
  return text.replace(ANSI, "");
}

/**
 * Shortens `text` to `width` characters with an ellipsis.
 *
 * @example
 * ```ts
 * import { truncate } from "./runner.ts";
 * console.log(truncate("const attention = softmax(q @ k)", 16));
 * ```
 */
export function truncate(text: string, width: number): string {
  return text.length <= width ? text : text.slice(0, Math.max(0, width - 1)) + "…";
}

/**
 * Seconds as `0.42 s`, `12.3 s` or `3 m 05 s`.
 *
 * @example
 * ```ts
 * import { formatSeconds } from "./runner.ts";
 * console.log(formatSeconds(0.4212), formatSeconds(12.34), formatSeconds(185));
 * ```
 */
export function formatSeconds(seconds: number): string {
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} m ${String(Math.round(seconds - minutes * 60)).padStart(2, "0")} s`;
}

/**
 * A notebook path as shown to people: relative to the repository root when inside it.
 *
 * @example
 * ```ts
 * import { displayPath } from "./runner.ts";
 * console.log(displayPath("/somewhere/else.ipynb"));
 * ```
 */
export function displayPath(path: string): string {
  const rel = relative(ROOT, resolve(path));
  return rel.startsWith("..") ? resolve(path) : rel;
}

/**
 * The summary table printed after a run.
 *
 * @example
 * ```ts
 * import { formatSummary } from "./runner.ts";
 * console.log(formatSummary([
 *   { notebook: "notebooks/00_intro.ipynb", cells: 12, executed: 9, seconds: 14.2, status: "ok" },
 * ]));
 * ```
 */
export function formatSummary(results: readonly NotebookResult[]): string {
  const rows = results.map((r) => [
    r.notebook,
    String(r.cells),
    r.seconds.toFixed(1),
    r.status === "ok" ? "ok" : r.error?.cell ? `FAILED (cell ${r.error.cell})` : "FAILED",
  ]);
  const header = ["notebook", "cells", "seconds", "status"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (row: string[]) =>
    [row[0].padEnd(widths[0]), row[1].padStart(widths[1]), row[2].padStart(widths[2]), row[3]].join("  ");
  return [line(header), ...rows.map(line)].join("\n");
}

interface DriverEvent {
  event: string;
  [key: string]: unknown;
}

const EVENT_PREFIX = "@@attnlab ";
// The kernel's start-up warning, and asyncio's note about the task nbclient abandons on a timeout.
const KERNEL_NOISE = /"deno jupyter" is unstable|^Task was destroyed but it is pending!|^task: <Task pending/;

/**
 * Calls `onLine` with every line of a byte stream (a child's stdout or stderr) as it arrives,
 * without its line ending; the last line may lack one.
 *
 * @example
 * ```ts
 * import { forEachLine } from "./runner.ts";
 * const lines: string[] = [];
 * await forEachLine(new Blob(["a\r\nb\nc"]).stream(), (line) => lines.push(line));
 * console.log(lines); // ["a", "b", "c"]
 * ```
 */
export async function forEachLine(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let buffer = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    let newline: number;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      onLine(buffer.slice(0, newline).replace(/\r$/, ""));
      buffer = buffer.slice(newline + 1);
    }
  }
  if (buffer) onLine(buffer);
}

let foundPython: string | undefined;

async function resolvePython(options: RunOptions): Promise<string> {
  if (options.python) return options.python;
  if (foundPython) return foundPython;
  const search = await findPython();
  if (search.found) return foundPython = search.found.command;
  throw new Error(
    `no Python that can import nbclient (${search.rejected.join("; ")}); ` +
      "run `deno task setup`, or set ATTNLAB_PYTHON to an interpreter with nbclient",
  );
}

function notebookError(notebook: string, cells: string[], event: DriverEvent): NotebookError {
  const index = typeof event.index === "number" ? event.index : undefined;
  const cell = index === undefined ? undefined : index + 1;
  const firstLine = index === undefined ? undefined : firstSourceLine(cells[index] ?? "");
  const ename = event.ename as string | undefined;
  const evalue = stripAnsi(String(event.evalue ?? ""));
  const where = cell === undefined ? "" : ` cell ${cell} (${JSON.stringify(truncate(firstLine ?? "", 60))})`;
  const what = event.kind === "timeout" ? "timed out" : event.kind === "kernel" ? "killed the kernel" : "failed";
  const lines = [`${displayPath(notebook)}:${where} ${what}: ${ename ?? "Error"}: ${evalue}`];
  const traceback = Array.isArray(event.traceback) ? event.traceback.map((t) => stripAnsi(String(t))) : [];
  const detail = traceback.join("\n").split("\n").filter((l) => l.trim() && !l.includes(evalue));
  if (detail.length > 0) lines.push(...detail.slice(0, 8).map((l) => `    ${l}`));
  const partialOutput = event.partial_output as string | undefined;
  if (partialOutput) lines.push(`    partial outputs saved to ${partialOutput}`);
  return new NotebookError(lines.join("\n"), {
    notebook,
    kind: String(event.kind ?? "runner"),
    cell,
    firstLine,
    ename,
    evalue,
    partialOutput,
  });
}

function cellCount(path: string): number {
  try {
    return readCells(resolve(path)).length;
  } catch {
    return 0;
  }
}

function firstSourceLine(source: string): string {
  return source.split("\n").map((l) => l.trim()).find((l) => l) ?? "";
}

function readCells(path: string): string[] {
  let nb: { cells?: unknown };
  try {
    nb = JSON.parse(Deno.readTextFileSync(path));
  } catch (err) {
    throw new NotebookError(`${displayPath(path)}: cannot read the notebook: ${(err as Error).message}`, {
      notebook: path,
      kind: "runner",
    });
  }
  if (!Array.isArray(nb.cells)) {
    throw new NotebookError(`${displayPath(path)} is not a notebook: it has no "cells" list`, {
      notebook: path,
      kind: "runner",
    });
  }
  return nb.cells.map((c: { source?: string | string[] }) =>
    Array.isArray(c.source) ? c.source.join("") : c.source ?? ""
  );
}

/**
 * JSON as nbformat writes it: keys sorted, one-space indent, non-ASCII kept, a final newline.
 *
 * @example
 * ```ts
 * import { nbformatJson } from "./runner.ts";
 * console.log(nbformatJson({ b: 1, a: ["é"] }));
 * ```
 */
export function nbformatJson(value: unknown): string {
  const sorted = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sorted)
      : v !== null && typeof v === "object"
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted((v as Record<string, unknown>)[k])]))
      : v;
  return JSON.stringify(sorted(value), null, 1) + "\n";
}

// Reads the executed notebook, adds PNG twins and relative paths, and replaces the target atomically.
async function saveNormalised(executed: string, target: string): Promise<void> {
  const notebook = JSON.parse(await Deno.readTextFile(executed)) as NotebookJson;
  normaliseOutputs(notebook);
  await writeFileAtomic(target, nbformatJson(notebook));
}

/**
 * Executes one notebook; resolves with its result, or rejects with a
 * {@linkcode NotebookError} naming the notebook and the failing cell.
 *
 * @example
 * ```ts
 * import { runNotebook } from "./runner.ts";
 * // Starting a kernel takes seconds; this only shows the call.
 * const run = () => runNotebook("notebooks/00_intro.ipynb", { mode: "quick", cellTimeoutSeconds: 300 });
 * console.log(typeof run);
 * ```
 */
export async function runNotebook(path: string, options: RunOptions = {}): Promise<NotebookResult> {
  const mode = options.mode ?? "quick";
  const log = options.log ?? console.log;
  const timeoutSeconds = options.timeoutSeconds ?? 3600;
  const startupTimeoutSeconds = options.startupTimeoutSeconds ?? 120;
  const source = resolve(path);
  const cells = readCells(source);
  const python = await resolvePython(options);
  const scratch = await Deno.makeTempDir({ prefix: "attnlab_nb_" });
  let keepScratch = false;
  try {
    const name = basename(source);
    let input = source;
    let figuresDir = options.figuresDir;
    if (mode === "quick") {
      input = join(scratch, name);
      copyFileSync(source, input);
      figuresDir ??= join(scratch, "figures");
    } else {
      figuresDir ??= defaultFiguresDir();
    }
    mkdirSync(figuresDir, { recursive: true });
    // A fresh clone has no notebooks/ until a notebook is committed; the kernel needs it to exist.
    mkdirSync(options.cwd ?? NOTEBOOKS_DIR, { recursive: true });
    // Full mode: the driver saves to scratch; the outputs are normalised before the notebook is replaced.
    const executed = join(scratch, `executed_${name}`);
    const inPlace = mode !== "quick";
    const args = buildExecuteArgs({
      input,
      output: inPlace ? executed : undefined,
      partialOutput: join(scratch, `partial_${name}`),
      cwd: options.cwd,
      kernel: options.kernel,
      cellTimeoutSeconds: options.cellTimeoutSeconds,
      timeoutSeconds,
      startupTimeoutSeconds,
    });
    const child = new Deno.Command(python, {
      args,
      cwd: options.cwd ?? NOTEBOOKS_DIR,
      env: {
        NO_COLOR: "1",
        ATTNLAB_QUICK: mode === "quick" ? "1" : "0",
        ATTNLAB_SCALE: mode,
        ATTNLAB_FIGURES_DIR: resolve(figuresDir),
        PYTHONUNBUFFERED: "1",
        ...(options.provenance !== undefined
          ? {
            [PROVENANCE_ENV]: JSON.stringify({
              commit: options.provenance.commit,
              dirty: options.provenance.dirty,
              codeHash: options.provenance.codeHash,
            }),
          }
          : {}),
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const untrack = trackChild(child);

    const started = performance.now();
    const events: DriverEvent[] = [];
    const otherOutput: string[] = [];
    let current: { index: number; since: number } | undefined;
    const heartbeatMs = (options.heartbeatSeconds ?? 60) * 1000;
    const heartbeat = setInterval(() => {
      if (current && performance.now() - current.since >= heartbeatMs) {
        const running = (performance.now() - current.since) / 1000;
        log(`  cell ${current.index + 1}/${cells.length} still running (${formatSeconds(running)})`);
      }
    }, heartbeatMs);
    // The driver enforces the timeouts; this guard only catches a hung driver.
    const guardMs = (timeoutSeconds + startupTimeoutSeconds + 60) * 1000;
    let killed = false;
    const guard = setTimeout(() => {
      killed = true;
      try {
        child.kill("SIGTERM");
        setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch { /* already gone */ }
        }, 10_000);
      } catch { /* already gone */ }
    }, guardMs);

    const onStdout = (line: string) => {
      if (!line.startsWith(EVENT_PREFIX)) {
        if (line.trim()) otherOutput.push(line);
        log(`  | ${line}`);
        return;
      }
      const event = JSON.parse(line.slice(EVENT_PREFIX.length)) as DriverEvent;
      events.push(event);
      if (event.event === "kernel_started") {
        log(`  kernel started in ${formatSeconds(Number(event.seconds))}`);
      } else if (event.event === "cell_start") {
        current = { index: Number(event.index), since: performance.now() };
      } else if (event.event === "cell_done") {
        const index = Number(event.index);
        const first = truncate(firstSourceLine(cells[index] ?? ""), 60);
        const mark = event.status === "ok" ? "" : `${String(event.status).toUpperCase()}  `;
        const position = `${index + 1}/${cells.length}`.padStart(2 * String(cells.length).length + 1);
        log(`  cell ${position}  ${formatSeconds(Number(event.seconds)).padStart(8)}  ${mark}${first}`);
        current = undefined;
      }
    };
    const onStderr = (line: string) => {
      if (KERNEL_NOISE.test(stripAnsi(line))) return;
      if (line.trim()) otherOutput.push(line);
      console.error(`  | ${line}`);
    };
    const [status] = await Promise.all([
      child.status,
      forEachLine(child.stdout, onStdout),
      forEachLine(child.stderr, onStderr),
    ]);
    untrack();
    clearInterval(heartbeat);
    clearTimeout(guard);

    const seconds = (performance.now() - started) / 1000;
    const kernelEvent = events.find((e) => e.event === "kernel_started");
    const kernelSeconds = kernelEvent ? Number(kernelEvent.seconds) : undefined;
    const executedCells = events.filter((e) => e.event === "cell_done").length;
    const failure = events.find((e) => e.event === "error");
    const done = events.find((e) => e.event === "done");
    if (failure) {
      keepScratch = Boolean(failure.partial_output);
      throw notebookError(source, cells, failure);
    }
    if (!status.success || !done) {
      const reason = killed
        ? `the driver hung and was killed after ${Math.round(guardMs / 1000)} s`
        : `the driver exited with ${status.code} without finishing`;
      const tail = otherOutput.slice(-10).map((l) => `    ${stripAnsi(l)}`);
      throw new NotebookError([`${displayPath(source)}: ${reason}`, ...tail].join("\n"), {
        notebook: source,
        kind: "runner",
      });
    }
    if (inPlace) await saveNormalised(executed, source);
    return {
      notebook: displayPath(source),
      cells: cells.length,
      executed: executedCells,
      seconds,
      kernelSeconds,
      status: "ok",
    };
  } finally {
    if (!keepScratch) await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}

/** Options for {@linkcode runNotebooks}. */
export interface RunAllOptions extends RunOptions {
  /** Stop at the first failing notebook. Default false: run them all, then report. */
  failFast?: boolean;
}

/**
 * Executes notebooks one by one and returns one result per notebook started.
 * A failing notebook is logged and recorded, not thrown; problems that stop
 * every notebook (no Jupyter, no kernel) still throw.
 *
 * @example
 * ```ts
 * import { runNotebooks } from "./runner.ts";
 * const results = await runNotebooks([], { mode: "quick" });
 * console.log(results.length);
 * ```
 */
export async function runNotebooks(paths: readonly string[], options: RunAllOptions = {}): Promise<NotebookResult[]> {
  const log = options.log ?? console.log;
  const results: NotebookResult[] = [];
  for (const [i, path] of paths.entries()) {
    log(`notebook ${i + 1}/${paths.length}: ${displayPath(path)} (${options.mode ?? "quick"} mode)`);
    const started = performance.now();
    try {
      results.push(await runNotebook(path, options));
    } catch (err) {
      if (!(err instanceof NotebookError)) throw err;
      if (err.kind === "setup") throw err;
      log(`  FAILED ${err.message}`);
      results.push({
        notebook: displayPath(path),
        cells: cellCount(path),
        executed: 0,
        seconds: (performance.now() - started) / 1000,
        status: "failed",
        error: err,
      });
      if (options.failFast) break;
    }
  }
  return results;
}
