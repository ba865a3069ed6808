/**
 * Turns an Observable Plot figure into one standalone, reproducible SVG string.
 *
 * Normalisation rules (they are what make the files byte-identical run to run):
 *
 * - The root gets `xmlns` (and `xmlns:xlink` when used), explicit `width` and
 *   `height`, `font-family="DejaVu Sans, sans-serif"` (the font the PNG is drawn
 *   with), and a white background rectangle.
 * - ids ending in digits (Plot's process-wide `plot-clip-7`, `plot-marker-3`...)
 *   are renumbered per prefix in order of appearance, and every `url(#id)` and
 *   `href="#id"` reference follows.
 * - Numbers in geometry attributes (`d`, `transform`, `x`, `width`, `points`...)
 *   are rounded to 2 decimals; text content is never touched.
 * - Plot's own `<style>` blocks (`:where(.plot-…)` rules for HTML pages) are
 *   dropped and `var(--plot-background)` becomes `white`.
 *
 * A `<figure>` wrapper (Plot adds one for a title, subtitle, caption or legend)
 * is laid out top to bottom inside one SVG with a 10px margin: the title as
 * 16px bold text, the subtitle as 12px grey text, each legend (a colour ramp is
 * already an SVG; swatches become squares with labels, wrapped to the plot
 * width), the plot itself, then the caption. Rich HTML inside titles is
 * flattened to its text. Label widths for wrapping are estimated at 0.62em per
 * character, which suits DejaVu Sans.
 *
 * @module
 */

import { DOMParser } from "linkedom";

/** The font family written into every SVG; the PNG renderer loads exactly this font. */
export const FONT_FAMILY = "DejaVu Sans, sans-serif";

const PLOT_FONT_FAMILY = "system-ui, sans-serif";
const SVG_NS = "http://www.w3.org/2000/svg";
const XLINK_NS = "http://www.w3.org/1999/xlink";
const DECIMALS = 2;
const FIGURE_MARGIN = 10;
const CHAR_WIDTH_EM = 0.62;

const ROUNDED_ATTRIBUTES = new Set([
  "d",
  "transform",
  "x",
  "y",
  "x1",
  "x2",
  "y1",
  "y2",
  "cx",
  "cy",
  "r",
  "rx",
  "ry",
  "dx",
  "dy",
  "width",
  "height",
  "points",
  "viewBox",
  "stroke-width",
  "stroke-dasharray",
  "stroke-dashoffset",
  "font-size",
  "offset",
  "opacity",
  "fill-opacity",
  "stroke-opacity",
]);

/** A DOM node as seen by the serializer: works with linkedom, jsdom or a browser DOM. */
export interface DomNode {
  readonly nodeType: number;
  readonly nodeName: string;
  readonly textContent: string | null;
  readonly childNodes: ArrayLike<DomNode>;
}

/** A DOM element as seen by the serializer. */
export interface DomElement extends DomNode {
  readonly tagName: string;
  readonly localName?: string;
  readonly attributes: ArrayLike<{ readonly name: string; readonly value: string }>;
  getAttribute(name: string): string | null;
}

/**
 * What the figure functions accept: the element `Plot.plot` returns (`<svg>` or
 * `<figure>`), or SVG markup as a string.
 */
export type FigureInput = string | DomElement;

function isElement(node: DomNode): node is DomElement {
  return node.nodeType === 1;
}

function nameOf(element: DomElement): string {
  return element.localName ?? element.tagName.toLowerCase();
}

function elementChildren(node: DomNode): DomElement[] {
  return Array.from(node.childNodes).filter(isElement);
}

function parseMarkup(markup: string): DomElement {
  const trimmed = markup.replace(/^\uFEFF/, "").replace(/^\s*(<\?xml[^>]*\?>\s*)?(<!--[\s\S]*?-->\s*)*/, "");
  if (!/^<(svg|figure)[\s>]/i.test(trimmed)) {
    throw new Error(
      `figure: expected SVG markup starting with "<svg" (or a Plot "<figure>"), got ${
        JSON.stringify(trimmed.slice(0, 40))
      }; pass the element returned by Plot.plot or an SVG string`,
    );
  }
  const doc = new DOMParser().parseFromString(trimmed, "image/svg+xml") as unknown as {
    documentElement: DomElement | null;
  };
  const root = doc.documentElement;
  if (!root || !/^(svg|figure)$/i.test(nameOf(root))) {
    throw new Error("figure: the SVG string could not be parsed as XML; check that it is well-formed");
  }
  return root;
}

function toRoot(figure: FigureInput): DomElement {
  if (typeof figure === "string") return parseMarkup(figure);
  if (figure === null || typeof figure !== "object" || typeof (figure as DomElement).tagName !== "string") {
    throw new Error(
      `figure: expected the element returned by Plot.plot (an <svg> or <figure>) or an SVG string, got ${
        figure === null ? "null" : typeof figure
      }`,
    );
  }
  return figure;
}

function formatNumber(value: number): string {
  const factor = 10 ** DECIMALS;
  const rounded = Math.round(value * factor) / factor;
  return String(Object.is(rounded, -0) ? 0 : rounded);
}

function roundNumbers(value: string): string {
  return value.replace(/-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/g, (token) => {
    if (!/[.eE]/.test(token)) return token;
    const n = Number(token);
    return Number.isFinite(n) ? formatNumber(n) : token;
  });
}

function escapeText(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function escapeAttribute(value: string): string {
  return escapeText(value).replace(/"/g, "&quot;").replace(/\n/g, "&#10;");
}

function isPlotStyle(element: DomElement): boolean {
  return nameOf(element) === "style" && /:where\(\.plot-/.test(element.textContent ?? "");
}

interface Context {
  ids: Map<string, string>;
  usesXlink: boolean;
}

function collectIds(root: DomElement): Map<string, string> {
  const ids = new Map<string, string>();
  const counters = new Map<string, number>();
  const visit = (element: DomElement) => {
    const id = element.getAttribute("id");
    if (id !== null && !ids.has(id)) {
      const match = /^(.*?)\d+$/.exec(id);
      if (match) {
        const count = (counters.get(match[1]) ?? 0) + 1;
        counters.set(match[1], count);
        ids.set(id, `${match[1]}${count}`);
      } else {
        ids.set(id, id);
      }
    }
    elementChildren(element).forEach(visit);
  };
  visit(root);
  return ids;
}

function rewriteAttribute(name: string, value: string, ctx: Context): string {
  if (name === "id") return ctx.ids.get(value) ?? value;
  if ((name === "href" || name === "xlink:href") && value.startsWith("#")) {
    return "#" + (ctx.ids.get(value.slice(1)) ?? value.slice(1));
  }
  let out = value.replace(/url\(\s*#([^)\s]+)\s*\)/g, (_, id: string) => `url(#${ctx.ids.get(id) ?? id})`);
  out = out.replace(/var\(--plot-background\)/g, "white");
  if (name === "font-family" && out === PLOT_FONT_FAMILY) out = FONT_FAMILY;
  if (ROUNDED_ATTRIBUTES.has(name)) out = roundNumbers(out);
  return out;
}

function attributesOf(element: DomElement, ctx: Context, skip: (name: string) => boolean): [string, string][] {
  const out: [string, string][] = [];
  for (const { name, value } of Array.from(element.attributes)) {
    if (skip(name)) continue;
    if (name.startsWith("xlink:")) ctx.usesXlink = true;
    out.push([name, rewriteAttribute(name, value, ctx)]);
  }
  return out;
}

function openTag(name: string, attributes: [string, string][]): string {
  return `<${name}${attributes.map(([k, v]) => ` ${k}="${escapeAttribute(v)}"`).join("")}`;
}

function serializeNode(node: DomNode, ctx: Context): string {
  if (node.nodeType === 3 || node.nodeType === 4) return escapeText(node.textContent ?? "");
  if (!isElement(node) || isPlotStyle(node)) return "";
  return serializeElement(node, ctx, [], (name) => name === "xmlns" || name === "xmlns:xlink");
}

function serializeElement(
  element: DomElement,
  ctx: Context,
  extra: [string, string][],
  skip: (name: string) => boolean,
): string {
  const name = nameOf(element);
  const attributes = attributesOf(element, ctx, (n) => skip(n) || extra.some(([k]) => k === n));
  const children = Array.from(element.childNodes).map((child) => serializeNode(child, ctx)).join("");
  const tag = openTag(name, [...extra, ...attributes]);
  return children === "" ? `${tag}/>` : `${tag}>${children}</${name}>`;
}

function sizeOf(svg: DomElement): { width: number; height: number } {
  const viewBox = (svg.getAttribute("viewBox") ?? "").trim().split(/[\s,]+/).map(Number);
  const read = (attr: "width" | "height", index: number) => {
    const raw = svg.getAttribute(attr);
    const value = raw === null ? NaN : Number(raw.replace(/px$/, ""));
    if (Number.isFinite(value) && value > 0) return value;
    if (viewBox.length === 4 && Number.isFinite(viewBox[index]) && viewBox[index] > 0) return viewBox[index];
    throw new Error(
      `figure: the <svg> needs a numeric ${attr} attribute or a viewBox (got ${attr}=${JSON.stringify(raw)}); ` +
        `set width and height on the plot`,
    );
  };
  return { width: read("width", 2), height: read("height", 3) };
}

function background(width: number, height: number, x = 0, y = 0): string {
  return openTag("rect", [
    ["x", formatNumber(x)],
    ["y", formatNumber(y)],
    ["width", formatNumber(width)],
    ["height", formatNumber(height)],
    ["fill", "white"],
  ]) + "/>";
}

/** The root `<svg ...>` tag followed by the white background; call after serialising the body. */
function rootOpen(ctx: Context, attributes: [string, string][], backdrop: string): string {
  const namespaces: [string, string][] = [["xmlns", SVG_NS]];
  if (ctx.usesXlink) namespaces.push(["xmlns:xlink", XLINK_NS]);
  return openTag("svg", [...namespaces, ...attributes]) + ">" + backdrop;
}

function standaloneSvg(svg: DomElement, ctx: Context): string {
  const { width, height } = sizeOf(svg);
  const children = Array.from(svg.childNodes).map((child) => serializeNode(child, ctx)).join("");
  const replaced = new Set(["xmlns", "xmlns:xlink", "width", "height", "font-family"]);
  const attributes = attributesOf(svg, ctx, (name) => replaced.has(name));
  const viewBox = (svg.getAttribute("viewBox") ?? "").trim().split(/[\s,]+/).map(Number);
  const backdrop = viewBox.length === 4 && viewBox.every(Number.isFinite)
    ? background(viewBox[2], viewBox[3], viewBox[0], viewBox[1])
    : background(width, height);
  const head: [string, string][] = [
    ["width", formatNumber(width)],
    ["height", formatNumber(height)],
    ["font-family", FONT_FAMILY],
  ];
  return `${rootOpen(ctx, [...head, ...attributes], backdrop)}${children}</svg>\n`;
}

function textWidth(text: string, fontSize: number): number {
  return [...text].length * fontSize * CHAR_WIDTH_EM;
}

function wrapWords(text: string, fontSize: number, maxWidth: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter((w) => w !== "")) {
    const candidate = line === "" ? word : `${line} ${word}`;
    if (line !== "" && textWidth(candidate, fontSize) > maxWidth) {
      lines.push(line);
      line = word;
    } else {
      line = candidate;
    }
  }
  if (line !== "") lines.push(line);
  return lines;
}

interface Block {
  height: number;
  render(x: number, y: number, width: number): string;
}

function textBlock(text: string, style: { size: number; weight?: string; fill?: string }, maxWidth: number): Block {
  const lineHeight = Math.round(style.size * 1.3);
  const lines = wrapWords(text, style.size, maxWidth);
  return {
    height: lines.length * lineHeight,
    render: (x, y) =>
      lines.map((line, i) => {
        const attributes: [string, string][] = [
          ["x", formatNumber(x)],
          ["y", formatNumber(y + i * lineHeight + style.size)],
          ["font-size", String(style.size)],
        ];
        if (style.weight) attributes.push(["font-weight", style.weight]);
        if (style.fill) attributes.push(["fill", style.fill]);
        return `${openTag("text", attributes)}>${escapeText(line)}</text>`;
      }).join(""),
  };
}

function nestedSvgBlock(svg: DomElement, ctx: Context): Block {
  const { width, height } = sizeOf(svg);
  return {
    height,
    render: (x, y) =>
      serializeElement(
        svg,
        ctx,
        [["x", formatNumber(x)], ["y", formatNumber(y)], ["width", formatNumber(width)], [
          "height",
          formatNumber(height),
        ], ["overflow", "visible"]],
        (name) => name === "xmlns" || name === "xmlns:xlink" || name === "x" || name === "y" || name === "overflow",
      ),
  };
}

function swatchesBlock(div: DomElement, ctx: Context, maxWidth: number): Block {
  const fontSize = 10;
  const gap = 5;
  const items = elementChildren(div).filter((child) => nameOf(child) !== "style").map((item) => {
    const swatch = elementChildren(item).find((child) => nameOf(child) === "svg");
    const label = Array.from(item.childNodes)
      .filter((child) => child !== swatch)
      .map((child) => child.textContent ?? "")
      .join("")
      .trim();
    const size = swatch ? sizeOf(swatch) : { width: 15, height: 15 };
    return { swatch, label, size, width: size.width + gap + textWidth(label, fontSize) + 2 * gap };
  });
  const rowHeight = Math.max(15, ...items.map((item) => item.size.height)) + 4;
  const placed: { item: typeof items[number]; dx: number; row: number }[] = [];
  let dx = 0, row = 0;
  for (const item of items) {
    if (dx > 0 && dx + item.width > maxWidth) {
      row++;
      dx = 0;
    }
    placed.push({ item, dx, row });
    dx += item.width;
  }
  const rows = items.length === 0 ? 0 : row + 1;
  return {
    height: rows * rowHeight,
    render: (x, y) =>
      `<g font-size="${fontSize}">` + placed.map(({ item, dx, row }) => {
        const top = y + row * rowHeight + (rowHeight - item.size.height) / 2;
        const swatch = item.swatch ? nestedSvgBlock(item.swatch, ctx).render(x + dx, top, item.size.width) : "";
        const label = openTag("text", [
          ["x", formatNumber(x + dx + item.size.width + gap)],
          ["y", formatNumber(top + item.size.height / 2 + fontSize * 0.35)],
        ]) + `>${escapeText(item.label)}</text>`;
        return swatch + label;
      }).join("") + "</g>",
  };
}

function figureSvg(figure: DomElement, ctx: Context): string {
  const children = elementChildren(figure).filter((child) => nameOf(child) !== "style");
  const plotWidth = Math.max(
    200,
    ...children.filter((child) => nameOf(child) === "svg").map((svg) => sizeOf(svg).width),
  );
  const blocks: { block: Block; gapBefore: number }[] = [];
  for (const child of children) {
    const name = nameOf(child);
    const text = (child.textContent ?? "").replace(/\s+/g, " ").trim();
    if (name === "svg") {
      blocks.push({ block: nestedSvgBlock(child, ctx), gapBefore: 6 });
    } else if (name === "div" && /-swatches\b/.test(child.getAttribute("class") ?? "")) {
      blocks.push({ block: swatchesBlock(child, ctx, plotWidth), gapBefore: 6 });
    } else if (name === "h2") {
      blocks.push({ block: textBlock(text, { size: 16, weight: "bold" }, plotWidth), gapBefore: 4 });
    } else if (name === "h3") {
      blocks.push({ block: textBlock(text, { size: 12, fill: "#555" }, plotWidth), gapBefore: 4 });
    } else if (text !== "") {
      blocks.push({ block: textBlock(text, { size: 12, fill: "#555" }, plotWidth), gapBefore: 6 });
    }
  }
  let y = FIGURE_MARGIN;
  const body = blocks.map(({ block, gapBefore }, i) => {
    if (i > 0) y += gapBefore;
    const out = block.render(FIGURE_MARGIN, y, plotWidth);
    y += block.height;
    return out;
  }).join("");
  const width = plotWidth + 2 * FIGURE_MARGIN;
  const height = Math.ceil(y + FIGURE_MARGIN);
  const attributes: [string, string][] = [
    ["width", formatNumber(width)],
    ["height", formatNumber(height)],
    ["viewBox", `0 0 ${formatNumber(width)} ${formatNumber(height)}`],
    ["font-family", FONT_FAMILY],
    ["font-size", "10"],
  ];
  return `${rootOpen(ctx, attributes, background(width, height))}${body}</svg>\n`;
}

/**
 * Serialises a Plot figure (`<svg>` or `<figure>` element) or an SVG string to
 * one standalone, normalised SVG document (see the module notes). The input is
 * never modified, and the same figure always gives the same string, whatever
 * was drawn before it in the process.
 *
 * @example
 * ```ts
 * import * as Plot from "@observablehq/plot";
 * import { plotDocument, toSvgString } from "./mod.ts";
 * const plot = Plot.plot({
 *   document: plotDocument(),
 *   title: "Loss",
 *   marks: [Plot.lineY([3, 2, 1.5, 1.2])],
 * });
 * const svg = toSvgString(plot);
 * console.log(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')); // true
 * ```
 */
export function toSvgString(figure: FigureInput): string {
  const root = toRoot(figure);
  const ctx: Context = { ids: collectIds(root), usesXlink: false };
  const name = nameOf(root).toLowerCase();
  if (name === "svg") return standaloneSvg(root, ctx);
  if (name === "figure") return figureSvg(root, ctx);
  throw new Error(
    `figure: expected an <svg> or <figure> element (what Plot.plot returns), got <${nameOf(root)}>; ` +
      `pass the value of Plot.plot({ document: plotDocument(), ... }) directly`,
  );
}

/**
 * Reads the pixel size (`width`, `height` attributes) of a standalone SVG string.
 *
 * @example
 * ```ts
 * import { svgSize } from "./svg.ts";
 * console.log(svgSize('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="32"/>')); // { width: 64, height: 32 }
 * ```
 */
export function svgSize(svg: string): { width: number; height: number } {
  return sizeOf(parseMarkup(svg));
}
