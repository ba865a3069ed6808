/**
 * A small zip reader over `DecompressionStream("deflate-raw")`: lists the central directory
 * and streams one entry's bytes, checking its CRC-32 and size. Stored (method 0) and deflated
 * (method 8) entries; zip64 and encrypted archives are refused with an Error.
 *
 * @module
 */

/** One file in a zip archive. */
export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflate. */
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  /** Offset of the local file header. */
  headerOffset: number;
}

const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

let table: Uint32Array | undefined;

/**
 * CRC-32 (the zip and PNG polynomial 0xEDB88320) of `bytes`, continuing from `crc`.
 *
 * @example
 * ```ts
 * import { crc32 } from "./zip.ts";
 * console.log(crc32(new TextEncoder().encode("123456789")).toString(16)); // cbf43926
 * ```
 */
export function crc32(bytes: Uint8Array, crc = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = table[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * The entries of a zip archive held in memory, from its central directory.
 *
 * @example
 * ```ts
 * import { listZip } from "./zip.ts";
 * // An empty archive is just the 22-byte end-of-central-directory record.
 * const empty = new Uint8Array(22);
 * new DataView(empty.buffer).setUint32(0, 0x06054b50, true);
 * console.log(listZip(empty).length); // 0
 * ```
 */
export function listZip(zip: Uint8Array): ZipEntry[] {
  if (!(zip instanceof Uint8Array)) throw new Error(`listZip: zip must be a Uint8Array, got ${String(zip)}`);
  const view = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  let eocd = -1;
  // The end record is 22 bytes plus a comment of at most 65535 bytes.
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 65535); i--) {
    if (view.getUint32(i, true) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) {
    throw new Error("listZip: not a zip archive (no end-of-central-directory record); is the file complete?");
  }
  const count = view.getUint16(eocd + 10, true);
  const dirOffset = view.getUint32(eocd + 16, true);
  if (count === 0xffff || dirOffset === 0xffffffff) throw new Error("listZip: zip64 archives are not supported");
  const decoder = new TextDecoder();
  const entries: ZipEntry[] = [];
  let p = dirOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > zip.length || view.getUint32(p, true) !== CENTRAL) {
      throw new Error(`listZip: central directory entry ${i} is damaged (offset ${p}); the file may be truncated`);
    }
    const flags = view.getUint16(p + 8, true);
    const nameLength = view.getUint16(p + 28, true);
    const entry: ZipEntry = {
      name: decoder.decode(zip.subarray(p + 46, p + 46 + nameLength)),
      method: view.getUint16(p + 10, true),
      crc32: view.getUint32(p + 16, true),
      compressedSize: view.getUint32(p + 20, true),
      size: view.getUint32(p + 24, true),
      headerOffset: view.getUint32(p + 42, true),
    };
    if (flags & 1) throw new Error(`listZip: entry "${entry.name}" is encrypted, which is not supported`);
    if (entry.size === 0xffffffff || entry.compressedSize === 0xffffffff || entry.headerOffset === 0xffffffff) {
      throw new Error(`listZip: entry "${entry.name}" uses zip64, which is not supported`);
    }
    entries.push(entry);
    p += 46 + nameLength + view.getUint16(p + 30, true) + view.getUint16(p + 32, true);
  }
  return entries;
}

/**
 * The uncompressed bytes of `entry` as a stream; the stream errors if the CRC-32 or size differs
 * from the central directory's.
 *
 * @example
 * ```ts
 * import { listZip, zipEntryStream } from "./zip.ts";
 * const empty = new Uint8Array(22);
 * new DataView(empty.buffer).setUint32(0, 0x06054b50, true);
 * for (const entry of listZip(empty)) zipEntryStream(empty, entry);
 * ```
 */
export function zipEntryStream(zip: Uint8Array, entry: ZipEntry): ReadableStream<Uint8Array> {
  const view = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  const h = entry.headerOffset;
  if (h + 30 > zip.length || view.getUint32(h, true) !== LOCAL) {
    throw new Error(`zipEntryStream: the local header of "${entry.name}" is damaged; the file may be truncated`);
  }
  const start = h + 30 + view.getUint16(h + 26, true) + view.getUint16(h + 28, true);
  const data = zip.subarray(start, start + entry.compressedSize);
  if (data.length !== entry.compressedSize) {
    throw new Error(`zipEntryStream: "${entry.name}" runs past the end of the archive; the file may be truncated`);
  }
  const raw = new ReadableStream<BufferSource>({
    start(controller) {
      controller.enqueue(data as Uint8Array<ArrayBuffer>);
      controller.close();
    },
  });
  let body: ReadableStream<Uint8Array>;
  if (entry.method === 0) body = raw as ReadableStream<Uint8Array>;
  else if (entry.method === 8) body = raw.pipeThrough(new DecompressionStream("deflate-raw"));
  else {throw new Error(
      `zipEntryStream: "${entry.name}" uses compression method ${entry.method}; only 0 and 8 are supported`,
    );}
  let crc = 0;
  let size = 0;
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        crc = crc32(chunk, crc);
        size += chunk.length;
        controller.enqueue(chunk);
      },
      flush() {
        if (size !== entry.size || crc !== entry.crc32) {
          throw new Error(
            `zipEntryStream: "${entry.name}" is corrupt: got ${size} bytes with CRC-32 ${crc.toString(16)}, ` +
              `expected ${entry.size} bytes with CRC-32 ${entry.crc32.toString(16)}; download the archive again`,
          );
        }
      },
    }),
  );
}

/**
 * The uncompressed bytes of `entry`, checked as in {@linkcode zipEntryStream}.
 *
 * @example
 * ```ts
 * import { listZip, readZipEntry } from "./zip.ts";
 * const empty = new Uint8Array(22);
 * new DataView(empty.buffer).setUint32(0, 0x06054b50, true);
 * console.log((await Promise.all(listZip(empty).map((e) => readZipEntry(empty, e)))).length); // 0
 * ```
 */
export async function readZipEntry(zip: Uint8Array, entry: ZipEntry): Promise<Uint8Array> {
  return new Uint8Array(await new Response(zipEntryStream(zip, entry)).arrayBuffer());
}
