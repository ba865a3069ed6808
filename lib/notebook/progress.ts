/**
 * Progress reporting for long loops in library code.
 *
 * - In a Jupyter kernel: one live line, updated in place through
 *   `Deno.jupyter.display(..., { display_id, update: true })`; the saved
 *   notebook keeps the final state.
 * - In a terminal (stderr is a TTY): a bar redrawn with `\r` on stderr.
 * - Otherwise (logs, CI): a plain line at most every few seconds, and a final one.
 *
 * ```ts
 * import { progress } from "./progress.ts";
 * const p = progress({ total: 3, label: "train", output: "none" });
 * for (let step = 0; step < 3; step++) p.tick(1, { loss: 1 / (step + 1) });
 * await p.done();
 * ```
 *
 * @module
 */

/** Where progress goes; `auto` picks `jupyter`, `tty` or `plain`. */
export type ProgressOutput = "auto" | "jupyter" | "tty" | "plain" | "none";

/** Custom fields shown after the counters, e.g. `{ loss: 1.23 }`. */
export type ProgressFields = Record<string, number | string>;

/** Options for {@linkcode progress}. */
export interface ProgressOptions {
  /** Number of steps expected; without it no bar, percentage or ETA. */
  total?: number;
  /** Shown first on the line. */
  label?: string;
  /** Default `auto`. */
  output?: ProgressOutput;
  /** Bar width in characters. Default 24. */
  barWidth?: number;
  /** Use `#` and `-` instead of block characters. Default false. */
  ascii?: boolean;
  /** Seconds between plain lines. Default 10. */
  plainIntervalSeconds?: number;
  /** Seconds between live redraws (TTY, Jupyter). Default 0.1 for a TTY, 0.5 for Jupyter. */
  redrawSeconds?: number;
  /** Clock in milliseconds, for tests. Default `performance.now`. */
  now?: () => number;
  /** Receives plain and TTY output instead of stderr, for tests. */
  write?: (text: string) => void;
}

/** A running progress report. */
export interface Progress {
  /** Advances by `n` (default 1) and replaces the custom fields given. */
  tick(n?: number, fields?: ProgressFields): void;
  /** Sets the count to `count`. */
  update(count: number, fields?: ProgressFields): void;
  /** Draws the final state; resolves once a Jupyter update has been sent. */
  done(fields?: ProgressFields): Promise<void>;
  /** The current count. */
  readonly count: number;
}

/** Everything one progress line shows. */
export interface ProgressState {
  label?: string;
  count: number;
  total?: number;
  elapsedSeconds: number;
  fields?: ProgressFields;
}

const BLOCKS = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];

/**
 * A bar `width` characters wide, filled to `fraction` (clamped to 0..1), with eighth-block resolution.
 *
 * @example
 * ```ts
 * import { renderBar } from "./progress.ts";
 * console.log(`|${renderBar(0.5, 10)}|`, `|${renderBar(0.25, 8, { ascii: true })}|`);
 * ```
 */
export function renderBar(fraction: number, width: number, options: { ascii?: boolean } = {}): string {
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  if (options.ascii) {
    const filled = Math.round(f * width);
    return "#".repeat(filled) + "-".repeat(width - filled);
  }
  const eighths = Math.round(f * width * 8);
  const full = Math.floor(eighths / 8);
  const partial = BLOCKS[eighths % 8];
  const used = full + (partial ? 1 : 0);
  return "█".repeat(full) + partial + " ".repeat(width - used);
}

/**
 * Seconds as `mm:ss`, or `h:mm:ss` from one hour; `--:--` when unknown.
 *
 * @example
 * ```ts
 * import { formatDuration } from "./progress.ts";
 * console.log(formatDuration(65), formatDuration(3725), formatDuration(Infinity));
 * ```
 */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return "--:--";
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mm = String(m).padStart(2, "0");
  const ss = String(s).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/**
 * A rate as `12.5 it/s`, or `4.00 s/it` when slower than one step a second.
 *
 * @example
 * ```ts
 * import { formatRate } from "./progress.ts";
 * console.log(formatRate(12.5), formatRate(0.25), formatRate(0));
 * ```
 */
export function formatRate(perSecond: number): string {
  if (!Number.isFinite(perSecond) || perSecond <= 0) return "? it/s";
  if (perSecond < 1) return `${(1 / perSecond).toFixed(2)} s/it`;
  return `${formatValue(perSecond)} it/s`;
}

/**
 * A field value: integers as they are, other numbers to 4 significant digits.
 *
 * @example
 * ```ts
 * import { formatValue } from "./progress.ts";
 * console.log(formatValue(3), formatValue(1.23456), formatValue(0.000012), formatValue("adam"));
 * ```
 */
export function formatValue(value: number | string): string {
  if (typeof value === "string") return value;
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e15) return String(value);
  const abs = Math.abs(value);
  if (abs >= 1e5 || abs < 1e-3) return value.toExponential(2);
  return String(Number(value.toPrecision(4)));
}

/**
 * Custom fields as `key=value` pairs.
 *
 * @example
 * ```ts
 * import { formatFields } from "./progress.ts";
 * console.log(formatFields({ loss: 1.23456, step: 7 }));
 * ```
 */
export function formatFields(fields: ProgressFields | undefined): string {
  if (!fields) return "";
  return Object.entries(fields).map(([key, value]) => `${key}=${formatValue(value)}`).join(" ");
}

/**
 * Seconds left at the average rate so far; `undefined` when unknown.
 *
 * @example
 * ```ts
 * import { estimateRemaining } from "./progress.ts";
 * console.log(estimateRemaining({ count: 25, total: 100, elapsedSeconds: 10 }));
 * ```
 */
export function estimateRemaining(
  state: Pick<ProgressState, "count" | "total" | "elapsedSeconds">,
): number | undefined {
  if (state.total === undefined || state.count <= 0 || state.elapsedSeconds <= 0) return undefined;
  return Math.max(0, state.total - state.count) * state.elapsedSeconds / state.count;
}

/**
 * One progress line: label, percentage, bar, count, elapsed<ETA, rate and fields.
 *
 * @example
 * ```ts
 * import { formatProgressLine } from "./progress.ts";
 * console.log(formatProgressLine(
 *   { label: "train", count: 25, total: 100, elapsedSeconds: 10, fields: { loss: 1.23 } },
 *   { barWidth: 10, ascii: true },
 * ));
 * ```
 */
export function formatProgressLine(
  state: ProgressState,
  options: { barWidth?: number; ascii?: boolean } = {},
): string {
  const parts: string[] = [];
  if (state.label) parts.push(`${state.label}:`);
  const rate = formatRate(state.elapsedSeconds > 0 ? state.count / state.elapsedSeconds : 0);
  const elapsed = formatDuration(state.elapsedSeconds);
  if (state.total !== undefined && state.total > 0) {
    const fraction = state.count / state.total;
    parts.push(`${String(Math.floor(Math.min(1, fraction) * 100)).padStart(3)}%`);
    parts.push(`|${renderBar(fraction, options.barWidth ?? 24, { ascii: options.ascii })}|`);
    parts.push(`${state.count}/${state.total}`);
    parts.push(`[${elapsed}<${formatDuration(estimateRemaining(state))}, ${rate}]`);
  } else {
    parts.push(String(state.count));
    parts.push(`[${elapsed}, ${rate}]`);
  }
  const fields = formatFields(state.fields);
  if (fields) parts.push(fields);
  return parts.join(" ");
}

interface JupyterApi {
  display(
    bundle: Record<string, string>,
    options: { raw: boolean; update?: boolean; display_id?: string },
  ): Promise<void>;
}

function jupyterApi(): JupyterApi | undefined {
  try {
    // Outside `deno jupyter` the getter throws instead of returning undefined.
    const api = (Deno as unknown as { jupyter?: JupyterApi }).jupyter;
    return typeof api?.display === "function" ? api : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Where `auto` output goes here: `jupyter` inside a Deno kernel, `tty` when
 * stderr is a terminal, else `plain`.
 *
 * @example
 * ```ts
 * import { detectOutput } from "./progress.ts";
 * console.log(["jupyter", "tty", "plain"].includes(detectOutput()));
 * ```
 */
export function detectOutput(): "jupyter" | "tty" | "plain" {
  if (jupyterApi()) return "jupyter";
  try {
    if (Deno.stderr.isTerminal()) return "tty";
  } catch {
    // No stderr permission or handle: fall through to plain lines.
  }
  return "plain";
}

function terminalColumns(): number | undefined {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return undefined;
  }
}

let displayCounter = 0;

/**
 * Starts a progress report. Call `tick` in the loop and `await done()` after it.
 *
 * @example
 * ```ts
 * import { progress } from "./progress.ts";
 * const lines: string[] = [];
 * const p = progress({ total: 4, label: "steps", output: "plain", write: (t) => lines.push(t) });
 * for (let i = 0; i < 4; i++) p.tick(1, { loss: 0.5 });
 * await p.done();
 * console.log(lines.at(-1)?.startsWith("steps: 100%"));
 * ```
 */
export function progress(options: ProgressOptions = {}): Progress {
  const known = new Set([
    "total",
    "label",
    "output",
    "barWidth",
    "ascii",
    "plainIntervalSeconds",
    "redrawSeconds",
    "now",
    "write",
  ]);
  for (const key of Object.keys(options)) {
    if (!known.has(key)) throw new Error(`progress: unknown option "${key}"; expected one of ${[...known].join(", ")}`);
  }
  const output = options.output === undefined || options.output === "auto" ? detectOutput() : options.output;
  const now = options.now ?? (() => performance.now());
  const write = options.write ?? ((text: string) => Deno.stderr.writeSync(new TextEncoder().encode(text)));
  const jupyter = output === "jupyter" ? jupyterApi() : undefined;
  if (output === "jupyter" && !jupyter) throw new Error('progress: output "jupyter" needs a Deno Jupyter kernel');
  const intervalMs = 1000 *
    (output === "plain" ? options.plainIntervalSeconds ?? 10 : options.redrawSeconds ?? (output === "tty" ? 0.1 : 0.5));
  const displayId = `attnlab-progress-${Date.now()}-${displayCounter++}`;
  const start = now();
  let count = 0;
  let fields: ProgressFields | undefined;
  let lastDraw = -Infinity;
  let shown = false;
  let finished = false;
  let pending: Promise<void> = Promise.resolve();

  const line = () =>
    formatProgressLine(
      { label: options.label, count, total: options.total, elapsedSeconds: (now() - start) / 1000, fields },
      { barWidth: options.barWidth, ascii: options.ascii },
    );

  const draw = (final: boolean) => {
    const text = line();
    if (output === "none") return;
    if (output === "jupyter") {
      const update = shown;
      pending = pending
        .then(() => jupyter!.display({ "text/plain": text }, { raw: true, update, display_id: displayId }))
        .catch(() => {});
    } else if (output === "tty") {
      const columns = terminalColumns();
      const fitted = columns ? text.slice(0, columns - 1) : text;
      write(`\r${fitted}\x1b[K${final ? "\n" : ""}`);
    } else {
      write(`${text}\n`);
    }
    shown = true;
  };

  const maybeDraw = () => {
    const t = now();
    if (t - lastDraw < intervalMs) return;
    lastDraw = t;
    draw(false);
  };

  return {
    tick(n = 1, newFields?: ProgressFields) {
      if (finished) return;
      count += n;
      if (newFields) fields = newFields;
      maybeDraw();
    },
    update(value: number, newFields?: ProgressFields) {
      if (finished) return;
      count = value;
      if (newFields) fields = newFields;
      maybeDraw();
    },
    async done(newFields?: ProgressFields) {
      if (!finished) {
        finished = true;
        if (newFields) fields = newFields;
        draw(true);
      }
      await pending;
    },
    get count() {
      return count;
    },
  };
}
