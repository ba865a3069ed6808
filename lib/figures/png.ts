/**
 * A minimal, deterministic PNG encoder and header reader.
 *
 * Used by the canvas stand-in of {@linkcode plotDocument} (Plot draws colour
 * ramps and rasters into a canvas and embeds them as PNG data URLs) and by the
 * tests to check rendered sizes.
 *
 * @module
 */

import { deflateSync } from "node:zlib";

const SIGNATURE = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/**
 * Encodes straight (non-premultiplied) RGBA pixels, row by row from the top,
 * as an 8-bit RGBA PNG. Same pixels give the same bytes.
 *
 * @example
 * ```ts
 * import { encodePng, readPngSize } from "./png.ts";
 * const red = new Uint8Array([255, 0, 0, 255, 255, 0, 0, 255]);
 * const png = encodePng(2, 1, red);
 * console.log(readPngSize(png)); // { width: 2, height: 1 }
 * ```
 */
export function encodePng(width: number, height: number, rgba: ArrayLike<number>): Uint8Array {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new Error(`encodePng: width and height must be positive integers, got ${width}×${height}`);
  }
  if (rgba.length !== width * height * 4) {
    throw new Error(
      `encodePng: expected ${width * height * 4} RGBA bytes for ${width}×${height}, got ${rgba.length}`,
    );
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 6, 0, 0, 0], 8);
  const stride = width * 4;
  const raw = new Uint8Array((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    for (let i = 0; i < stride; i++) raw[y * (stride + 1) + 1 + i] = rgba[y * stride + i];
  }
  const parts = [
    SIGNATURE,
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(raw, { level: 9 })),
    chunk("IEND", new Uint8Array()),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Reads the pixel size from a PNG's IHDR chunk; throws if the bytes are not a PNG.
 *
 * @example
 * ```ts
 * import { encodePng, readPngSize } from "./png.ts";
 * const { width, height } = readPngSize(encodePng(3, 2, new Uint8Array(24)));
 * console.log(width, height); // 3 2
 * ```
 */
export function readPngSize(png: Uint8Array): { width: number; height: number } {
  const isPng = png.length >= 24 && SIGNATURE.every((b, i) => png[i] === b) &&
    String.fromCharCode(...png.subarray(12, 16)) === "IHDR";
  if (!isPng) throw new Error("readPngSize: the bytes are not a PNG (no PNG signature followed by an IHDR chunk)");
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}
