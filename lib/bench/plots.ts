/**
 * The scaling figures of notebooks 06 and 07: time or memory against length on log–log axes, one coloured
 * line per series, with the interval of each point as an error bar and dashed power-law guides. On log–log
 * axes a power law c·nᵖ is a straight line of slope p, so a guide of slope 1 or 2 is what O(n) or O(n²)
 * looks like.
 *
 * - {@linkcode timePlot}: time (ms by default), with error bars from `low`/`high` columns and guides.
 * - {@linkcode memoryPlot}: memory (MB by default), the same chart with memory's labels.
 *
 * Both return the Plot element for `saveFigure` (lib/figures) or inline display.
 *
 * @module
 */

import * as Plot from "@observablehq/plot";
import { plotDocument } from "../figures/dom.ts";

/** A row of data: the columns the options name. */
export type PlotRow = Record<string, unknown>;

/** Options of {@linkcode timePlot} and {@linkcode memoryPlot}. */
export interface LogLogPlotOptions {
  /** Column of x (a length or a position), > 0. Default "n". */
  x?: string;
  /** Column of y, > 0. Default "ms" (timePlot) or "MB" (memoryPlot). */
  y?: string;
  /** Column naming each row's series (one colour and one line per value). Default "variant". */
  series?: string;
  /** Columns of each point's interval, drawn as a vertical bar; both or neither. Rows where either is null get none. */
  low?: string;
  high?: string;
  /** Column to facet on (side-by-side panels), e.g. "pass"; none by default. */
  fx?: string;
  /** Slopes of dashed grey guides through the lowest point at the smallest x of each panel, e.g. [1, 2]. */
  guides?: readonly number[];
  /** The variable the guide labels use ("∝ n²"). Default "n". */
  guideVariable?: string;
  /** Axis labels. */
  xLabel?: string;
  yLabel?: string;
  /**
   * Spreads the series apart along x so their interval bars do not cover each other: series i of k is drawn at
   * x · (1 + dodge)^(i − (k − 1)/2), a small shift on the log axis. Default 0.015 with intervals, 0 without.
   */
  dodge?: number;
  /** Series in legend order; default in order of appearance. */
  domain?: readonly string[];
  /** One colour per `domain` entry; default Plot's scheme. */
  colors?: readonly string[];
  width?: number;
  height?: number;
}

const OPTION_KEYS = [
  "x",
  "y",
  "series",
  "low",
  "high",
  "fx",
  "guides",
  "guideVariable",
  "dodge",
  "xLabel",
  "yLabel",
  "domain",
  "colors",
  "width",
  "height",
];

/** The column holding each row's drawn (dodged) x. */
const DRAWN_X = "__drawnX";

const SUPERSCRIPT: Record<string, string> = { "2": "²", "3": "³", "4": "⁴" };

/** "constant", "∝ n", "∝ n²", or "∝ n^1.5". */
function guideLabel(slope: number, variable: string): string {
  if (slope === 0) return "constant";
  if (slope === 1) return `∝ ${variable}`;
  return `∝ ${variable}${SUPERSCRIPT[String(slope)] ?? `^${slope}`}`;
}

function checkColumn(owner: string, name: string, value: unknown): string {
  if (typeof value !== "string" || value === "") {
    throw new TypeError(`${owner}: options.${name} must be a column name (a non-empty string), got ${String(value)}`);
  }
  return value;
}

function logLogPlot(
  owner: string,
  rows: readonly PlotRow[],
  options: LogLogPlotOptions,
  defaults: { y: string; yLabel: string },
): ReturnType<typeof Plot.plot> {
  if (!Array.isArray(rows)) throw new TypeError(`${owner}: rows must be an array of objects, got ${typeof rows}`);
  if (options === null || typeof options !== "object") {
    throw new TypeError(`${owner}: options must be an object, got ${String(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.includes(key)) {
      throw new TypeError(`${owner}: unknown option "${key}"; expected one of ${OPTION_KEYS.join(", ")}`);
    }
  }
  const x = checkColumn(owner, "x", options.x ?? "n");
  const y = checkColumn(owner, "y", options.y ?? defaults.y);
  const series = checkColumn(owner, "series", options.series ?? "variant");
  const fx = options.fx === undefined ? undefined : checkColumn(owner, "fx", options.fx);
  if ((options.low === undefined) !== (options.high === undefined)) {
    throw new TypeError(`${owner}: give both options.low and options.high (the interval's columns), or neither`);
  }
  const low = options.low === undefined ? undefined : checkColumn(owner, "low", options.low);
  const high = options.high === undefined ? undefined : checkColumn(owner, "high", options.high);
  if (rows.length === 0) throw new RangeError(`${owner}: rows is empty; give at least one measured row`);
  rows.forEach((row, i) => {
    if (row === null || typeof row !== "object") throw new TypeError(`${owner}: rows[${i}] must be an object`);
    for (const column of [x, y]) {
      const v = row[column];
      if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
        throw new RangeError(
          `${owner}: rows[${i}].${column} must be a finite number > 0 (the axes are logarithmic), got ${String(v)}; ` +
            "leave out the rows that have no measurement",
        );
      }
    }
  });
  const guides = options.guides ?? [];
  if (!Array.isArray(guides) || !guides.every((g) => typeof g === "number" && Number.isFinite(g))) {
    throw new TypeError(`${owner}: options.guides must be an array of slopes (numbers), e.g. [1, 2]`);
  }
  const variable = options.guideVariable ?? "n";
  const colors = options.colors;
  if (colors !== undefined && (options.domain === undefined || colors.length !== options.domain.length)) {
    throw new RangeError(`${owner}: options.colors needs options.domain, with one colour per series`);
  }
  // Guides: through the lowest point at the panel's smallest x, out to its largest x.
  const panels = fx === undefined ? [undefined] : [...new Set(rows.map((r) => r[fx]))];
  const guideRows = panels.flatMap((panel) => {
    const own = fx === undefined ? rows : rows.filter((r) => r[fx] === panel);
    const xs = own.map((r) => r[x] as number);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    const y0 = Math.min(...own.filter((r) => r[x] === x0).map((r) => r[y] as number));
    return guides.flatMap((slope) =>
      [x0, x1].map((at) => ({ panel, label: guideLabel(slope, variable), x: at, y: y0 * (at / x0) ** slope }))
    );
  });
  const facet = fx === undefined ? {} : { fx };
  const domain = options.domain ? [...options.domain] : [...new Set(rows.map((r) => r[series]))];
  const dodge = options.dodge ?? (low === undefined ? 0 : 0.015);
  if (typeof dodge !== "number" || !(dodge >= 0) || !Number.isFinite(dodge)) {
    throw new RangeError(`${owner}: options.dodge must be a finite number >= 0, got ${String(dodge)}`);
  }
  // The drawn x of each row: its series' small multiplicative shift, so bars at one x stand side by side.
  const shifted = rows.map((r) => {
    const i = Math.max(0, domain.indexOf(r[series]));
    return { ...r, [DRAWN_X]: (r[x] as number) * (1 + dodge) ** (i - (domain.length - 1) / 2) };
  });
  const bars = low === undefined
    ? []
    : shifted.filter((r) => typeof r[low] === "number" && typeof r[high!] === "number" && (r[low] as number) > 0);
  return Plot.plot({
    document: plotDocument(),
    width: options.width ?? 760,
    height: options.height ?? 420,
    grid: true,
    marginRight: 24,
    ...(fx === undefined ? {} : { marginTop: 40, fx: { label: null, domain: panels } }),
    x: { type: "log", label: options.xLabel ?? x, tickFormat: "~s" },
    y: { type: "log", label: options.yLabel ?? defaults.yLabel, tickFormat: "~g" },
    color: {
      legend: true,
      domain,
      ...(colors ? { range: [...colors] } : {}),
    },
    marks: [
      Plot.line(guideRows, {
        ...(fx === undefined ? {} : { fx: "panel" }),
        x: "x",
        y: "y",
        z: "label",
        stroke: "#bbb",
        strokeDasharray: "4,3",
      }),
      Plot.text(guideRows.filter((_, i) => i % 2 === 1), {
        ...(fx === undefined ? {} : { fx: "panel" }),
        x: "x",
        y: "y",
        text: "label",
        fill: "#888",
        dx: -16,
        dy: -6,
      }),
      ...(low === undefined ? [] : [Plot.ruleX(bars, { ...facet, x: DRAWN_X, y1: low, y2: high, stroke: series })]),
      Plot.line(shifted, { ...facet, x: DRAWN_X, y, stroke: series }),
      Plot.dot(shifted, { ...facet, x: DRAWN_X, y, fill: series, r: 2.5 }),
    ],
  });
}

/**
 * Time against length on log–log axes: one line and dots per series, the interval of each point as a
 * vertical bar (`low`/`high`), and dashed guides of the given slopes (e.g. `[1, 2]` for O(n) and O(n²)).
 *
 * @example
 * ```ts
 * import { timePlot } from "./plots.ts";
 * const rows = [256, 512, 1024].flatMap((n) => [
 *   { variant: "softmax", n, ms: (n / 256) ** 2, low: 0.9 * (n / 256) ** 2, high: 1.1 * (n / 256) ** 2 },
 *   { variant: "linear", n, ms: n / 256, low: 0.9 * n / 256, high: 1.1 * n / 256 },
 * ]);
 * const plot = timePlot(rows, { low: "low", high: "high", guides: [1, 2], xLabel: "sequence length n" });
 * console.log(plot.scale("x")!.type, plot.scale("color")!.domain); // log ["softmax", "linear"]
 * ```
 */
export function timePlot(rows: readonly PlotRow[], options: LogLogPlotOptions = {}): ReturnType<typeof Plot.plot> {
  return logLogPlot("timePlot", rows, options, { y: "ms", yLabel: "time (ms)" });
}

/**
 * Memory against length on log–log axes: one line and dots per series (and, like {@linkcode timePlot},
 * optional intervals and guides).
 *
 * @example
 * ```ts
 * import { memoryPlot } from "./plots.ts";
 * const rows = [64, 128, 256].flatMap((position) => [
 *   { model: "KV cache", position, MB: position * 0.01 },
 *   { model: "recurrent", position, MB: 0.02 },
 * ]);
 * const plot = memoryPlot(rows, { x: "position", series: "model" });
 * console.log(plot.scale("y")!.type, plot.scale("y")!.domain); // log [0.02, 2.56]
 * ```
 */
export function memoryPlot(rows: readonly PlotRow[], options: LogLogPlotOptions = {}): ReturnType<typeof Plot.plot> {
  return logLogPlot("memoryPlot", rows, options, { y: "MB", yLabel: "memory (MB)" });
}
