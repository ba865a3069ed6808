/**
 * Pictures of attention matrices for the heatmap notebook (Fig. 2b of "The Devil in Linear Transformer"):
 *
 * - {@linkcode heatmapGridPlot}: one raster panel per model (rows) and layer (columns), on a logarithmic colour
 *   scale, from the `{ row, col, value }` cells of `heatmap.ts` tagged with their model and layer;
 * - {@linkcode attentionView}: one head of one layer of a model on any text, its matrix above its locality curves
 *   against uniform attention, as one figure that displays itself in Jupyter and saves through `saveFigure`.
 *
 * Rows are shown as |w| / Σ_j |w_ij|: the authors' w / Σ_j w on every non-negative matrix (softmax, linear
 * attention's kernel), and the magnitudes for a signed kernel (NormAttention with elu). Exact zeros (future keys
 * of a causal model, keys outside a DiagAttention block) stay white.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import * as Plot from "@observablehq/plot";
import { checkOptionKeys, resolveOptions } from "../_options.ts";
import { JUPYTER_DISPLAY, type MimeBundle, show } from "../figures/display.ts";
import { plotDocument } from "../figures/dom.ts";
import type { Row } from "../figures/csv.ts";
import { type SavedFigure, saveFigure, type SaveFigureOptions } from "../figures/save.ts";
import type { DomElement } from "../figures/svg.ts";
import type { TransformerModel } from "../models/model.ts";
import { type PooledLocality, pooledLocalityCurve, pooledLocalityCurveAsync, rowNormalize } from "./attention_maps.ts";
import { downsampleMatrix, type HeatmapCell, heatmapRows, matrixCells } from "./heatmap.ts";
import { type LocalityCurve, localityCurve, localityCurveAsync } from "./locality.ts";
import { describe } from "./_checks.ts";

/** A heatmap cell of one panel of {@linkcode heatmapGridPlot}: the model (grid row) and layer (grid column). */
export interface GridCell extends HeatmapCell {
  /** The model's label: the panel's row. */
  model: string;
  /** The layer's label, e.g. "layer 0": the panel's column. */
  layer: string;
  /** The layer's attention variant, written in the panel's upper-right corner. */
  variant: string;
}

/** Options of {@linkcode heatmapGridPlot}. */
export interface HeatmapGridOptions {
  /** Title above the grid. Required. */
  title: string;
  /** Caption below the grid. Default none. */
  caption?: string;
  /** Cells along each axis of a panel (the size the matrices were downsampled to). Required. */
  cells: number;
  /** The first token a cell index covers, for the axis ticks. Default: the cell index itself. */
  tokenOf?: (cell: number) => number;
  /** The models in row order. Default: in order of first appearance in the cells. */
  models?: readonly string[];
}

/** Options of {@linkcode attentionView}. */
export interface AttentionViewOptions {
  /** Layer index (0 first). Default 0. */
  layer?: number;
  /** Head index. Default 0. */
  head?: number;
  /** The text is cut to its first n bytes (an integer >= 2; memory grows as n²). Default: the whole text. */
  n?: number;
  /** The matrix is averaged down to at most cells × cells (an integer >= 1). Default 64. */
  cells?: number;
  /** The model's name in the title. Default: its preset, or "model". */
  label?: string;
}

/** What {@linkcode attentionView} returns; it displays itself as the figure when it is a cell's last expression. */
export interface AttentionView {
  /** "label · layer L · variant · head H". */
  title: string;
  /** One sentence with n, the AUCs against uniform attention and the cell size, for a saved figure. */
  caption: string;
  /** Tokens read. */
  n: number;
  /** The head's locality curves (causal for a language model), rows without mass left out. */
  locality: PooledLocality;
  /** The same curves for uniform attention over each query's context. */
  uniform: LocalityCurve;
  /** The figure: title, heatmap, locality curves and caption, stacked. */
  figure: DomElement;
  /** The data behind it: the non-zero heatmap cells, then the four curves. */
  data: Row[];
  /** Saves the view through `saveFigure` with its data and caption (both can be overridden in `options`). */
  save(name: string, options?: SaveFigureOptions): Promise<SavedFigure>;
  [JUPYTER_DISPLAY](): MimeBundle;
}

/**
 * The colour domain of a log-scaled heatmap: from the largest value down four decades, [max / 10⁴, max], so
 * near-zero cells do not stretch the scale. Values must include a positive one.
 *
 * @example
 * ```ts
 * import { logColorDomain } from "./attention_view.ts";
 * console.log(logColorDomain([{ value: 0 }, { value: 0.5 }, { value: 0.25 }])); // [0.00005, 0.5]
 * ```
 */
export function logColorDomain(cells: readonly { value: number }[]): [number, number] {
  if (!Array.isArray(cells)) {
    throw new TypeError(`logColorDomain: cells must be an array of { value }, got ${describe(cells)}`);
  }
  const max = cells.reduce((m, c) => (c.value > m ? c.value : m), -Infinity);
  if (!(max > 0) || !Number.isFinite(max)) {
    throw new RangeError(
      `logColorDomain: cells must hold a positive finite value to scale the colours to, got a largest value of ${max}`,
    );
  }
  return [max / 1e4, max];
}

/** The raster body of one heatmap: one pixel per cell, scaled up without smoothing; exact zeros left white. */
function rasterMark(cells: readonly HeatmapCell[], side: number, facets: Record<string, string>) {
  return Plot.raster(cells, {
    ...facets,
    x: (c: HeatmapCell) => c.col + 0.5,
    y: (c: HeatmapCell) => c.row + 0.5,
    fill: (c: HeatmapCell) => (c.value > 0 ? c.value : NaN),
    x1: 0,
    x2: side,
    y1: 0,
    y2: side,
    width: side,
    height: side,
    // optimizeSpeed asks renderers (resvg included) to scale the pixels up without smoothing.
    imageRendering: "optimizeSpeed",
  });
}

function tokenAxes(side: number, tokenOf: (cell: number) => number) {
  const ticks = [0, 0.25, 0.5, 0.75].map((f) => f * side);
  const tickFormat = (c: number) => String(Math.round(tokenOf(c)));
  return {
    x: { label: "key token →", domain: [0, side], ticks, tickFormat },
    y: { label: "↓ query token", domain: [0, side], reverse: true, ticks, tickFormat },
  };
}

const COLOR = { type: "log", scheme: "viridis", clamp: true, legend: true, width: 360, tickFormat: "~e" } as const;

/**
 * A grid of heatmaps, one panel per model (rows) and layer (columns), each panel a raster of `cells` × `cells`
 * on one shared logarithmic colour scale ({@linkcode logColorDomain}), with the layer's variant in the panel's
 * upper-right corner (empty above a causal diagonal). Returns what `Plot.plot` returns, for `saveFigure` or `show`.
 *
 * @example
 * ```ts
 * import { heatmapRows } from "./heatmap.ts";
 * import { heatmapGridPlot } from "./attention_view.ts";
 * import { toSvgString } from "../figures/svg.ts";
 * import * as tf from "@tensorflow/tfjs";
 * const w = tf.tensor2d([[1, 0], [0.5, 0.5]]);
 * const cells = heatmapRows(w).map((c) => ({ ...c, model: "vanilla", layer: "layer 0", variant: "softmax" }));
 * const svg = toSvgString(heatmapGridPlot(cells, { title: "One panel", cells: 2 }));
 * console.log(svg.match(/<image/g)?.length); // 2: the panel and the colour legend
 * w.dispose();
 * ```
 */
export function heatmapGridPlot(cells: readonly GridCell[], options: HeatmapGridOptions): DomElement {
  const owner = "heatmapGridPlot";
  if (!Array.isArray(cells) || cells.length === 0) {
    throw new TypeError(`${owner}: cells must be a non-empty array of { model, layer, variant, row, col, value }`);
  }
  const given = checkOptionKeys(owner, options, ["title", "caption", "cells", "tokenOf", "models"]);
  if (typeof given.title !== "string" || typeof given.cells !== "number") {
    throw new TypeError(
      `${owner}: options title (a string) and cells (a number) are required, e.g. { title, cells: 64 }`,
    );
  }
  const { cells: side } = resolveOptions(owner, { cells: given.cells }, { cells: 1 }, {
    cells: { type: "number", min: 1, integer: true },
  });
  const tokenOf = (given.tokenOf ?? ((c: number) => c)) as (cell: number) => number;
  if (typeof tokenOf !== "function") throw new TypeError(`${owner}: option tokenOf must be a function of a cell index`);
  const layers = [...new Set(cells.map((c) => c.layer))];
  const models = (given.models as string[] | undefined) ?? [...new Set(cells.map((c) => c.model))];
  const panels = [...new Map(cells.map((c) => [`${c.model}|${c.layer}`, c])).values()];
  const panel = 150;
  return Plot.plot({
    document: plotDocument(),
    title: given.title as string,
    caption: given.caption as string | undefined,
    width: 130 + panel * layers.length,
    height: 60 + panel * models.length,
    marginLeft: 40,
    marginRight: 120,
    marginBottom: 40,
    fx: { label: null, domain: layers },
    fy: { label: null, domain: models },
    ...tokenAxes(side, tokenOf),
    color: { ...COLOR, domain: logColorDomain(cells), label: "row-normalised attention |w| / Σ|w| (log scale)" },
    marks: [
      Plot.frame({ stroke: "#ccc" }),
      rasterMark(cells, side, { fx: "layer", fy: "model" }),
      Plot.text(panels, {
        fx: "layer",
        fy: "model",
        text: "variant",
        frameAnchor: "top-right",
        dx: -4,
        dy: 4,
        fontSize: 10,
      }),
    ],
  }) as unknown as DomElement;
}

function viewInput(owner: string, model: TransformerModel, text: unknown, options: unknown) {
  if (model === null || typeof model !== "object" || typeof model.attentionWeights !== "function") {
    throw new TypeError(`${owner}: model must be a TransformerModel (from createModel or trainedSharedLm)`);
  }
  if (typeof text !== "string" && !(text instanceof Uint8Array)) {
    throw new TypeError(`${owner}: text must be a string or a Uint8Array of bytes, got ${describe(text)}`);
  }
  const { heads, attention, preset } = model.config;
  const given = checkOptionKeys(owner, options, ["layer", "head", "n", "cells", "label"]);
  const { label = preset ?? "model", ...numbers } = given;
  if (typeof label !== "string") throw new TypeError(`${owner}: option label must be a string, got ${describe(label)}`);
  const o = resolveOptions(owner, numbers, { layer: 0, head: 0, n: Infinity, cells: 64 }, {
    layer: { type: "number", min: 0, max: attention.length - 1, integer: true },
    head: { type: "number", min: 0, max: heads - 1, integer: true },
    n: { type: "number", min: 2, integer: true },
    cells: { type: "number", min: 1, integer: true },
  });
  const bytes = (typeof text === "string" ? new TextEncoder().encode(text) : text).subarray(0, o.n);
  if (bytes.length < 2) {
    throw new RangeError(`${owner}: text must hold at least 2 bytes, got ${bytes.length}; pass a longer text`);
  }
  return { ...o, label, bytes };
}

/** A [m, m] matrix of uniform attention over each query's context (causal: keys 0..i). */
function uniformWeights(m: number, causal: boolean): tf.Tensor2D {
  return tf.tidy(() => {
    const support = causal ? tf.linalg.bandPart(tf.ones([m, m]), -1, 0) : tf.ones([m, m]); // [m, m]
    return tf.div(support, tf.sum(support, 1, true)) as tf.Tensor2D; // [m, m]
  });
}

/** Title, heatmap, curves and caption stacked in one <figure> (lib/figures lays a <figure> out top to bottom). */
function stack(title: string, plots: unknown[], caption: string): DomElement {
  const document = plotDocument();
  const figure = document.createElement("figure") as { appendChild(node: unknown): void };
  const heading = document.createElement("h2") as { textContent: string };
  heading.textContent = title;
  figure.appendChild(heading);
  for (const plot of plots as { tagName: string; childNodes: ArrayLike<unknown> }[]) {
    if (plot.tagName.toLowerCase() === "figure") {
      for (const child of Array.from(plot.childNodes)) figure.appendChild(child);
    } else figure.appendChild(plot);
  }
  const note = document.createElement("p") as { textContent: string };
  note.textContent = caption;
  figure.appendChild(note);
  return figure as unknown as DomElement;
}

/**
 * One head's attention matrix of `model` on `text` (rows shown as |w| / Σ|w|, averaged down to at most
 * `cells` × `cells`), above its locally accumulated attention curves (full neighbourhood and available context)
 * against uniform attention over each query's context. The result displays itself in Jupyter as the figure, and
 * `view.save(name, { run })` exports it. Unknown options, a layer or head the model lacks, and a text of fewer than
 * 2 bytes throw. Creates no lasting tensors.
 *
 * @example
 * ```ts
 * import { createModel } from "../models/model.ts";
 * import { attentionView } from "./attention_view.ts";
 * const model = createModel({ attention: "vanilla", layers: 2, dModel: 8, heads: 2 }, { log: () => {} });
 * const view = attentionView(model, "The quick brown fox", { layer: 1, head: 1, cells: 8 });
 * console.log(view.title, view.n, view.locality.rows); // vanilla · layer 1 · softmax · head 1 19 19
 * model.dispose();
 * ```
 */
export function attentionView(
  model: TransformerModel,
  text: string | Uint8Array,
  options?: AttentionViewOptions,
): AttentionView {
  const view = viewTensors("attentionView", model, text, options);
  try {
    return viewFigure(view, {
      cellData: heatmapRows(downsampleMatrix(view.shown, { size: view.side })),
      locality: pooledLocalityCurve(view.w, { causal: view.causal }),
      uniform: localityCurve(view.flat, { causal: view.causal }),
    });
  } finally {
    view.dispose();
  }
}

/**
 * {@linkcode attentionView} with its reads awaited (`await data()`), so that it runs on `webgpu` too: the same figure,
 * data and numbers.
 *
 * @example
 * ```ts
 * import { createModel } from "../models/model.ts";
 * import { attentionView, attentionViewAsync } from "./attention_view.ts";
 * const model = createModel({ attention: "vanilla", layers: 2, dModel: 8, heads: 2 }, { log: () => {} });
 * const view = await attentionViewAsync(model, "The quick brown fox", { layer: 1, head: 1, cells: 8 });
 * const same = attentionView(model, "The quick brown fox", { layer: 1, head: 1, cells: 8 });
 * console.log(view.locality.auc === same.locality.auc, JSON.stringify(view.data) === JSON.stringify(same.data)); // true true
 * model.dispose();
 * ```
 */
export async function attentionViewAsync(
  model: TransformerModel,
  text: string | Uint8Array,
  options?: AttentionViewOptions,
): Promise<AttentionView> {
  const view = viewTensors("attentionViewAsync", model, text, options);
  try {
    return viewFigure(view, {
      cellData: heatmapRows(downsampleMatrix(await matrixCells(view.shown), { size: view.side })),
      locality: await pooledLocalityCurveAsync(view.w, { causal: view.causal }),
      uniform: await localityCurveAsync(view.flat, { causal: view.causal }),
    });
  } finally {
    view.dispose();
  }
}

/** What an attention view reads: one head's matrix, its rows as |w| / Σ|w|, and uniform attention; `dispose` frees them. */
interface ViewTensors {
  layer: number;
  head: number;
  label: string;
  /** The layer's attention variant. */
  variant: string;
  causal: boolean;
  /** Tokens, and the heatmap's cells per side. */
  m: number;
  side: number;
  /** The head's attention matrix [m, m], its rows shown as |w| / Σ|w|, and uniform attention over each context. */
  w: tf.Tensor2D;
  shown: tf.Tensor2D;
  flat: tf.Tensor2D;
  dispose(): void;
}

/** Checks the input and computes the head's matrices (no read). */
function viewTensors(
  owner: string,
  model: TransformerModel,
  text: string | Uint8Array,
  options?: AttentionViewOptions,
): ViewTensors {
  const { layer, head, cells, label, bytes } = viewInput(owner, model, text, options);
  const m = bytes.length, side = Math.min(cells, m);
  const causal = model.causal;
  const input = tf.tensor2d(Int32Array.from(bytes), [1, m], "int32"); // [1, m]
  const raw = model.attentionWeights(input); // per layer [1, h, m, m]
  const w = tf.tidy(() => tf.reshape(tf.slice(raw[layer], [0, head, 0, 0], [1, 1, m, m]), [m, m]) as tf.Tensor2D);
  tf.dispose([input, ...raw]);
  const shown = tf.tidy(() => tf.abs(rowNormalize(w, { by: "abs" }))); // [m, m]
  const flat = uniformWeights(m, causal); // [m, m]
  const variant = model.config.attention[layer].variant;
  return { layer, head, label, variant, causal, m, side, w, shown, flat, dispose: () => tf.dispose([w, shown, flat]) };
}

/** The figure of a view from the values read: the heatmap cells and the two locality curves. */
function viewFigure(
  view: ViewTensors,
  read: { cellData: HeatmapCell[]; locality: PooledLocality; uniform: LocalityCurve },
): AttentionView {
  const { layer, head, label, m, side } = view;
  const { cellData, locality, uniform } = read;
  const per = m / side;
  const title = `${label} · layer ${layer} · ${view.variant} · head ${head}`;
  const f3 = (x: number) => x.toFixed(3);
  const caption =
    `n = ${m} tokens. AUC: available context ${f3(locality.availableAuc)} (uniform ${f3(uniform.availableAuc)}), full ${
      f3(locality.auc)
    } (uniform ${f3(uniform.auc)}). Rows normalised by Σ|w|; cells of ${per.toFixed(1)} × ${per.toFixed(1)} tokens.` +
    (locality.emptyRows ? ` ${locality.emptyRows} query rows attend to nothing and are left out of the curves.` : "");
  const curves = locality.ratios.flatMap((x, r) => [
    { series: "this head, available context", x, y: locality.availableCurve[r] },
    { series: "this head, full neighbourhood", x, y: locality.curve[r] },
    { series: "uniform, available context", x, y: uniform.availableCurve[r] },
    { series: "uniform, full neighbourhood", x, y: uniform.curve[r] },
  ]);
  const document = plotDocument();
  const heat = Plot.plot({
    document,
    width: 460,
    height: 480,
    marginLeft: 50,
    ...tokenAxes(side, (c) => c * per),
    color: { ...COLOR, domain: logColorDomain(cellData), label: "|w| / Σ|w| per token, cell mean (log scale)" },
    marks: [Plot.frame({ stroke: "#ccc" }), rasterMark(cellData, side, {})],
  });
  const curve = Plot.plot({
    document,
    width: 460,
    height: 300,
    grid: true,
    marginLeft: 50,
    x: { label: "neighbourhood size / context length (x)", domain: [0, 1] },
    y: { label: "accumulated attention", domain: [0, 1] },
    color: {
      legend: true,
      domain: [...new Set(curves.map((d) => d.series))],
      range: ["#4c78a8", "#e45756", "#999", "#ccc"],
    },
    marks: [Plot.line(curves, { x: "x", y: "y", stroke: "series" })],
  });
  const figure = stack(title, [heat, curve], caption);
  const data: Row[] = [
    ...cellData.filter((c) => c.value > 0).map((c) => ({
      part: "heatmap",
      query: c.rowStart,
      key: c.colStart,
      value: c.value,
    })),
    ...curves.map((d) => ({ part: "locality", ...d })),
  ];
  let display: ReturnType<typeof show> | undefined;
  return {
    title,
    caption,
    n: m,
    locality,
    uniform,
    figure,
    data,
    save: (name, saveOptions) => saveFigure(name, figure, { data, caption, ...saveOptions }),
    [JUPYTER_DISPLAY]: () => (display ??= show(figure))[JUPYTER_DISPLAY](),
  };
}
