/**
 * A server-side `document` for Observable Plot.
 *
 * Plot needs a DOM to build its SVG; under Deno that DOM comes from linkedom.
 * linkedom has no canvas, yet Plot draws continuous colour legends and
 * `Plot.raster` into a canvas and embeds the result as a PNG data URL, so the
 * document returned here replaces `<canvas>` with a small pure-TypeScript
 * stand-in (fillStyle + fillRect, createImageData/putImageData/getImageData,
 * toDataURL) whose PNG output is deterministic.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { parseHTML } from "linkedom";
import { encodePng } from "./png.ts";

/**
 * The DOM document that {@linkcode plotDocument} returns; pass it to
 * `Plot.plot({ document, ... })`. Typed loosely because Deno ships no DOM types.
 */
export interface PlotDocument {
  createElement(tagName: string): unknown;
  createElementNS(namespace: string | null, qualifiedName: string): unknown;
  createTextNode(data: string): unknown;
  readonly documentElement: unknown;
}

const NAMED_COLOURS: Record<string, [number, number, number, number]> = {
  black: [0, 0, 0, 1],
  white: [255, 255, 255, 1],
  red: [255, 0, 0, 1],
  green: [0, 128, 0, 1],
  blue: [0, 0, 255, 1],
  gray: [128, 128, 128, 1],
  grey: [128, 128, 128, 1],
  steelblue: [70, 130, 180, 1],
  currentcolor: [0, 0, 0, 1],
  transparent: [0, 0, 0, 0],
  none: [0, 0, 0, 0],
};

function parseColour(value: string): [number, number, number, number] {
  const s = value.trim().toLowerCase();
  if (s in NAMED_COLOURS) return NAMED_COLOURS[s];
  let m = /^#([0-9a-f]{3,8})$/.exec(s);
  if (m && [3, 4, 6, 8].includes(m[1].length)) {
    const hex = m[1].length <= 4 ? [...m[1]].map((c) => c + c).join("") : m[1];
    const byte = (i: number) => parseInt(hex.slice(2 * i, 2 * i + 2), 16);
    return [byte(0), byte(1), byte(2), hex.length === 8 ? byte(3) / 255 : 1];
  }
  m = /^rgba?\(\s*([^)]*)\)$/.exec(s);
  if (m) {
    const parts = m[1].split(/\s*[,/]\s*|\s+/).filter((p) => p !== "").map(Number);
    if ((parts.length === 3 || parts.length === 4) && parts.every(Number.isFinite)) {
      return [parts[0], parts[1], parts[2], parts[3] ?? 1];
    }
  }
  throw new Error(
    `plotDocument canvas: unsupported colour "${value}"; use #rrggbb, rgb(r, g, b), rgba(r, g, b, a) ` +
      `or one of ${Object.keys(NAMED_COLOURS).join(", ")}`,
  );
}

interface ImageDataLike {
  width: number;
  height: number;
  data: Uint8ClampedArray;
}

class CanvasStandIn {
  width = 300;
  height = 150;
  #context: Context2DStandIn | undefined;

  getContext(kind: string): Context2DStandIn | null {
    if (kind !== "2d") return null;
    this.#context ??= new Context2DStandIn(this);
    return this.#context;
  }

  toDataURL(type = "image/png"): string {
    if (type !== "image/png") {
      throw new Error(`plotDocument canvas: toDataURL supports only "image/png", got "${type}"`);
    }
    const pixels = this.getContext("2d")!.pixels();
    return "data:image/png;base64," + Buffer.from(encodePng(this.width, this.height, pixels)).toString("base64");
  }
}

class Context2DStandIn {
  #canvas: CanvasStandIn;
  #pixels = new Uint8ClampedArray(0);
  #size = "";
  #fill: [number, number, number, number] = [0, 0, 0, 1];
  #fillStyle = "#000000";

  constructor(canvas: CanvasStandIn) {
    this.#canvas = canvas;
  }

  get canvas(): CanvasStandIn {
    return this.#canvas;
  }

  get fillStyle(): string {
    return this.#fillStyle;
  }

  set fillStyle(value: string) {
    this.#fill = parseColour(String(value));
    this.#fillStyle = String(value);
  }

  /** The pixel buffer, cleared whenever the canvas was resized (as a real canvas does). */
  pixels(): Uint8ClampedArray {
    const { width, height } = this.#canvas;
    if (this.#size !== `${width}x${height}`) {
      this.#pixels = new Uint8ClampedArray(width * height * 4);
      this.#size = `${width}x${height}`;
    }
    return this.#pixels;
  }

  fillRect(x: number, y: number, w: number, h: number): void {
    const px = this.pixels();
    const { width, height } = this.#canvas;
    const [r, g, b, a] = this.#fill;
    const x0 = Math.max(0, Math.round(x)), x1 = Math.min(width, Math.round(x + w));
    const y0 = Math.max(0, Math.round(y)), y1 = Math.min(height, Math.round(y + h));
    for (let j = y0; j < y1; j++) {
      for (let i = x0; i < x1; i++) {
        const k = (j * width + i) * 4;
        const da = px[k + 3] / 255;
        const oa = a + da * (1 - a);
        if (oa === 0) continue;
        px[k] = (r * a + px[k] * da * (1 - a)) / oa;
        px[k + 1] = (g * a + px[k + 1] * da * (1 - a)) / oa;
        px[k + 2] = (b * a + px[k + 2] * da * (1 - a)) / oa;
        px[k + 3] = oa * 255;
      }
    }
  }

  createImageData(width: number, height: number): ImageDataLike {
    return { width, height, data: new Uint8ClampedArray(width * height * 4) };
  }

  getImageData(x: number, y: number, w: number, h: number): ImageDataLike {
    const out = this.createImageData(w, h);
    const px = this.pixels();
    const { width, height } = this.#canvas;
    for (let j = 0; j < h; j++) {
      for (let i = 0; i < w; i++) {
        const sx = x + i, sy = y + j;
        if (sx < 0 || sy < 0 || sx >= width || sy >= height) continue;
        const src = (sy * width + sx) * 4, dst = (j * w + i) * 4;
        for (let c = 0; c < 4; c++) out.data[dst + c] = px[src + c];
      }
    }
    return out;
  }

  putImageData(image: ImageDataLike, dx: number, dy: number): void {
    const px = this.pixels();
    const { width, height } = this.#canvas;
    for (let j = 0; j < image.height; j++) {
      for (let i = 0; i < image.width; i++) {
        const x = dx + i, y = dy + j;
        if (x < 0 || y < 0 || x >= width || y >= height) continue;
        const src = (j * image.width + i) * 4, dst = (y * width + x) * 4;
        for (let c = 0; c < 4; c++) px[dst + c] = image.data[src + c];
      }
    }
  }
}

/**
 * A fresh linkedom `document` for `Plot.plot({ document, ... })`, with a
 * canvas stand-in so colour-ramp legends and `Plot.raster` work under Deno.
 *
 * @example
 * ```ts
 * import * as Plot from "@observablehq/plot";
 * import { plotDocument } from "./dom.ts";
 * const plot = Plot.plot({
 *   document: plotDocument(),
 *   color: { legend: true },
 *   marks: [Plot.cell([{ x: "a", v: 1 }, { x: "b", v: 2 }], { x: "x", fill: "v" })],
 * });
 * console.log(plot.tagName); // FIGURE (legend + plot)
 * ```
 */
export function plotDocument(): PlotDocument {
  const { document } = parseHTML("<!DOCTYPE html><html><head></head><body></body></html>") as unknown as {
    document: PlotDocument;
  };
  const createElement = document.createElement.bind(document);
  Object.defineProperty(document, "createElement", {
    configurable: true,
    writable: true,
    value: (tagName: string, ...rest: unknown[]) =>
      String(tagName).toLowerCase() === "canvas"
        ? new CanvasStandIn()
        : (createElement as (tag: string, ...r: unknown[]) => unknown)(tagName, ...rest),
  });
  return document;
}
