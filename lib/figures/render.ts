/**
 * SVG to PNG with resvg and the bundled DejaVu fonts, identical on every machine.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Resvg } from "@resvg/resvg-js";
import { REPO_ROOT } from "../env.ts";

/** The scale PNGs are rendered at: 2 device pixels per SVG pixel. */
export const PNG_SCALE = 2;

const FONT_FILES = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf"];

let fontDir: string | undefined;

function findFontDir(): string {
  if (fontDir !== undefined) return fontDir;
  const candidates: string[] = [];
  try {
    candidates.push(dirname(fileURLToPath(import.meta.resolve("dejavu-fonts-ttf/ttf/DejaVuSans.ttf"))));
  } catch {
    // Not resolvable through the import map; fall back to node_modules below.
  }
  candidates.push(join(REPO_ROOT, "node_modules", "dejavu-fonts-ttf", "ttf"));
  const found = candidates.find((dir) => existsSync(join(dir, FONT_FILES[0])));
  if (found === undefined) {
    throw new Error(
      `svgToPng: the DejaVu fonts were not found (looked in ${candidates.join(", ")}); ` +
        `run \`deno install\` at the repository root to fetch the npm package dejavu-fonts-ttf`,
    );
  }
  fontDir = found;
  return found;
}

/** Options for {@linkcode svgToPng}. */
export interface SvgToPngOptions {
  /** Device pixels per SVG pixel. Default {@linkcode PNG_SCALE} (2). */
  scale?: number;
}

/** A rendered image: PNG bytes plus the raw RGBA pixels, for tests and checks. */
export interface RenderedPng {
  png: Uint8Array;
  width: number;
  height: number;
  /** Straight RGBA, row by row from the top. */
  pixels: Uint8Array;
}

/**
 * Renders an SVG string with resvg on a white background, using only the
 * DejaVu fonts from the npm package (system fonts are ignored), and returns
 * the PNG together with its RGBA pixels.
 *
 * @example
 * ```ts
 * import { renderSvg } from "./render.ts";
 * const image = renderSvg('<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10"/>');
 * console.log(image.width, image.height, image.pixels.length); // 40 20 3200
 * ```
 */
export function renderSvg(svg: string, options: SvgToPngOptions = {}): RenderedPng {
  for (const key of Object.keys(options)) {
    if (key !== "scale") throw new Error(`svgToPng: unknown option "${key}"; the only option is scale`);
  }
  const scale = options.scale ?? PNG_SCALE;
  if (!(typeof scale === "number" && scale > 0 && Number.isFinite(scale))) {
    throw new Error(`svgToPng: options.scale must be a positive number, got ${scale}; omit it for ${PNG_SCALE}x`);
  }
  const dir = findFontDir();
  const resvg = new Resvg(svg, {
    background: "white",
    fitTo: { mode: "zoom", value: scale },
    font: {
      fontFiles: FONT_FILES.map((file) => join(dir, file)),
      loadSystemFonts: false,
      defaultFontFamily: "DejaVu Sans",
      sansSerifFamily: "DejaVu Sans",
    },
    logLevel: "off",
  });
  const image = resvg.render();
  return {
    png: new Uint8Array(image.asPng()),
    width: image.width,
    height: image.height,
    pixels: new Uint8Array(image.pixels),
  };
}

/**
 * Renders an SVG string to PNG bytes (white background, DejaVu fonts, 2x by default).
 *
 * @example
 * ```ts
 * import { svgToPng } from "./mod.ts";
 * const png = svgToPng('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><text y="15">Hi</text></svg>');
 * console.log(png[1] === 0x50 && png[2] === 0x4e && png[3] === 0x47); // true ("PNG")
 * ```
 */
export function svgToPng(svg: string, options: SvgToPngOptions = {}): Uint8Array {
  return renderSvg(svg, options).png;
}

/**
 * The scale of the PNG twin sent beside every inline SVG: 1 device pixel per SVG
 * pixel. The Deno kernel cannot attach the width metadata that would make
 * Jupyter show a 2x PNG at its intended size, so a 2x twin would display twice
 * as large in an untrusted notebook; 1x also keeps notebooks small (over the
 * committed figures: median 72 KB of base64 per figure at 1x, 168 KB at 2x).
 */
export const DISPLAY_PNG_SCALE = 1;

const SVG_NS = "http://www.w3.org/2000/svg";
const XLINK_NS = "http://www.w3.org/1999/xlink";

/**
 * The PNG twin of an inline SVG output, base64-encoded as Jupyter expects for
 * `image/png` in a MIME bundle. Jupyter drops `image/svg+xml` outputs of
 * untrusted notebooks (every notebook opened from a fresh clone) and shows the
 * PNG instead. Rendered by {@linkcode renderSvg} (white background, bundled
 * DejaVu fonts) at {@linkcode DISPLAY_PNG_SCALE} unless `options.scale` says
 * otherwise; the same SVG gives the same string. SVG from elsewhere (a Plot
 * element's `outerHTML`, say) is accepted: a missing `xmlns` is added first.
 *
 * @example
 * ```ts
 * import { pngForSvg } from "./render.ts";
 * const b64 = pngForSvg('<svg width="40" height="20"><text y="15">Hi</text></svg>');
 * const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
 * console.log(String.fromCharCode(...bytes.subarray(1, 4)), b64 === pngForSvg('<svg width="40" height="20"><text y="15">Hi</text></svg>')); // PNG true
 * ```
 */
export function pngForSvg(svg: string, options: SvgToPngOptions = {}): string {
  if (typeof svg !== "string") {
    throw new TypeError(`pngForSvg: svg must be a string of SVG markup, got ${svg === null ? "null" : typeof svg}`);
  }
  const start = svg.search(/<svg[\s>/]/);
  if (start < 0 || svg.slice(0, start).replace(/<\?xml[^>]*\?>|<!--[\s\S]*?-->|<!DOCTYPE[^>]*>/g, "").trim() !== "") {
    throw new TypeError(
      `pngForSvg: svg must be SVG markup starting with "<svg", got ${JSON.stringify(svg.slice(0, 40))}`,
    );
  }
  const rootEnd = svg.indexOf(">", start);
  let root = svg.slice(start, rootEnd);
  // resvg needs the namespaces that browsers infer for inline SVG.
  if (!/\sxmlns\s*=/.test(root)) root = root.replace(/^<svg/, `<svg xmlns="${SVG_NS}"`);
  if (/\sxlink:/.test(svg) && !/\sxmlns:xlink\s*=/.test(root)) {
    root = root.replace(/^<svg/, `<svg xmlns:xlink="${XLINK_NS}"`);
  }
  const png = svgToPng(svg.slice(0, start) + root + svg.slice(rootEnd), { scale: options.scale ?? DISPLAY_PNG_SCALE });
  return Buffer.from(png).toString("base64");
}
