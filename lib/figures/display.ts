/**
 * Inline display in Jupyter (Deno kernel): objects that carry a
 * `Symbol.for("Jupyter.display")` method show themselves when they are the
 * last expression of a cell, or through `await Deno.jupyter.display(x)`.
 *
 * @module
 */

import { pngForSvg } from "./render.ts";
import { svgSize, toSvgString } from "./svg.ts";
import type { FigureInput } from "./svg.ts";

/** The symbol the Deno Jupyter kernel looks for to display an object. */
export const JUPYTER_DISPLAY: unique symbol = Symbol.for("Jupyter.display") as typeof JUPYTER_DISPLAY;

/** A MIME bundle: MIME type to content, as Jupyter expects. */
export type MimeBundle = Record<string, string>;

/** Anything that displays itself in a Jupyter notebook. */
export interface Displayable {
  [JUPYTER_DISPLAY](): MimeBundle;
}

/** A figure ready to display: the normalised SVG and its size. */
export interface ShownFigure extends Displayable {
  svg: string;
  width: number;
  height: number;
}

/**
 * The MIME bundle for an SVG figure: `image/svg+xml`, its `image/png` twin
 * (base64, from `pngForSvg`: untrusted notebooks drop SVG and show the PNG) and
 * a `text/plain` fallback.
 *
 * @example
 * ```ts
 * import { svgMimeBundle } from "./display.ts";
 * const bundle = svgMimeBundle('<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10"/>', "a box");
 * console.log(Object.keys(bundle)); // ["image/svg+xml", "image/png", "text/plain"]
 * ```
 */
export function svgMimeBundle(svg: string, text: string): MimeBundle {
  return { "image/svg+xml": svg, "image/png": pngForSvg(svg), "text/plain": text };
}

/**
 * Displays a figure inline without saving anything: as `image/svg+xml`, with an
 * `image/png` twin for untrusted notebooks (rendered once, when first displayed).
 * Make it the last expression of a cell, or `await Deno.jupyter.display(show(plot))`.
 *
 * @example
 * ```ts
 * import * as Plot from "@observablehq/plot";
 * import { JUPYTER_DISPLAY, plotDocument, show } from "./mod.ts";
 * const shown = show(Plot.plot({ document: plotDocument(), marks: [Plot.lineY([1, 3, 2])] }));
 * console.log(Object.keys(shown[JUPYTER_DISPLAY]())); // ["image/svg+xml", "image/png", "text/plain"]
 * ```
 */
export function show(figure: FigureInput): ShownFigure {
  const svg = toSvgString(figure);
  const { width, height } = svgSize(svg);
  let bundle: MimeBundle | undefined;
  return {
    svg,
    width,
    height,
    [JUPYTER_DISPLAY]: () => bundle ??= svgMimeBundle(svg, `<figure ${width}×${height}>`),
  };
}

/** What {@linkcode md} returns: Markdown that displays as such in Jupyter. */
export interface ShownMarkdown extends Displayable {
  /** The Markdown text. */
  text: string;
}

/**
 * Displays Markdown in Jupyter (`text/markdown`, with the same text as
 * `text/plain`): for prose built from measured numbers, e.g.
 * ``md(`The fitted exponent is **${p.toFixed(2)}**.`)`` as the last expression
 * of a cell. A `text` that is not a string is a `TypeError`.
 *
 * @example
 * ```ts
 * import { JUPYTER_DISPLAY, md } from "./mod.ts";
 * const ratio = 2460 / 908;
 * const shown = md(`The speed-up moved by **×${ratio.toFixed(2)}** between runs.`);
 * console.log(shown[JUPYTER_DISPLAY]()["text/markdown"]); // The speed-up moved by **×2.71** between runs.
 * ```
 */
export function md(text: string): ShownMarkdown {
  if (typeof text !== "string") {
    const got = text === null ? "null" : Array.isArray(text) ? "an array" : typeof text;
    throw new TypeError(
      `md: text must be a string of Markdown, got ${got}; build it with a template literal, e.g. md(\`p = \${p}\`)`,
    );
  }
  return { text, [JUPYTER_DISPLAY]: () => ({ "text/markdown": text, "text/plain": text }) };
}
