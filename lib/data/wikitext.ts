/**
 * WikiText-103 (Merity et al., 2016; CC BY-SA) for users with internet access: download,
 * checksum, unzip (with {@linkcode listZip}), tokenise.
 *
 * The archive is `wikitext-103-v1.zip` (the tokenised release, about 181 MB) from
 * `https://wikitext.smerity.com/`, the author's mirror; the original address on
 * `s3.amazonaws.com/research.metamind.io` no longer serves it. It holds
 * `wikitext-103/wiki.{train,valid,test}.tokens`.
 *
 * Checksums. The MD5 `9ddaacaf6af0710eda8c456decff7832` is the one torchtext pins for this
 * archive; it is checked whenever the default address is used. No SHA-256 published by the
 * authors could be confirmed (and the archive cannot be downloaded here), so the loader
 * computes the SHA-256, returns it in `checksums.zip`, records it next to a downloaded archive
 * (`<name>.sha256`) and checks it on every later load; pass `sha256` to pin a value yourself.
 *
 * Tokenisation. `"word"` (the standard word-level setup, as in PyTorch's word_language_model
 * example): every line is split on whitespace (the characters Python's `str.split()` splits on)
 * and ends with `<eos>`; the vocabulary is the train split's words in order of first
 * appearance; a word of valid or test that train lacks becomes `<unk>`. `"byte"`: the files'
 * UTF-8 bytes, vocabulary 256.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { basename, join } from "node:path";
import { REPO_ROOT } from "../env.ts";
import { writeFileAtomic } from "../figures/atomic.ts";
import { progress } from "../notebook/progress.ts";
import type { SplitName } from "./sotu.ts";
import { sha256Hex } from "./types.ts";
import { listZip, type ZipEntry, zipEntryStream } from "./zip.ts";
import { resolveOptions } from "../_options.ts";

/** The standard WikiText-103 archive. */
export const WIKITEXT103 = {
  url: "https://wikitext.smerity.com/wikitext-103-v1.zip",
  /** The address in the paper's era, now refused (HTTP 403). */
  originalUrl: "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip",
  /** MD5 of the archive as pinned by torchtext (`torchtext/datasets/wikitext103.py`). */
  md5: "9ddaacaf6af0710eda8c456decff7832",
  /** Lines per file, as listed by torchtext. */
  lines: { train: 1801350, valid: 3760, test: 4358 },
} as const;

/** Options for {@linkcode loadWikiText}. */
export interface LoadWikiTextOptions {
  /** An http(s) or file: URL, downloaded into cacheDir; or a local path to the zip, read in place. */
  source?: string;
  /** Where a downloaded archive is kept; default `data/cache/wikitext` at the repository root. */
  cacheDir?: string;
  /** Expected SHA-256 (hex) of the archive. Default: the value recorded at download, if any. */
  sha256?: string | null;
  /** Expected MD5 (hex). Default: {@linkcode WIKITEXT103}.md5 for the default source, else none. */
  md5?: string | null;
  /** `"word"` (default) or `"byte"`. */
  tokenization?: "word" | "byte";
  /** Seconds to wait for the server to answer before giving up. Default 30. */
  timeoutSeconds?: number;
}

/** A tokenised WikiText corpus. */
export interface WikiTextCorpus {
  name: string;
  tokenization: "word" | "byte";
  vocabSize: number;
  /** Word of each id (word level), or null (byte level). */
  vocab: string[] | null;
  /** Token ids per split: Int32Array (word) or Uint8Array (byte). */
  splits: Record<SplitName, Int32Array | Uint8Array>;
  /** Lines per split file. */
  lines: Record<SplitName, number>;
  /** Words of valid/test mapped to `<unk>` because train lacks them (word level). */
  unknownWords: Record<SplitName, number>;
  /** SHA-256 (hex) of the archive, and of each split's file bytes. */
  checksums: { zip: string; zipMd5: string } & Record<SplitName, string>;
  /** Where the archive came from and where it lies. */
  source: { url: string; zipPath: string };
}

// The characters Python's str.split() treats as whitespace, including the separators \x1c-\x1f.
// deno-lint-ignore no-control-regex
const WHITESPACE = /[\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;

const SPLIT_FILES: Record<SplitName, string> = {
  train: "wiki.train.tokens",
  valid: "wiki.valid.tokens",
  test: "wiki.test.tokens",
};

/**
 * Loads WikiText-103 (or any archive with the same three files), downloading it if needed.
 * Without network access the download fails at once with a message naming the URL and the
 * path to save the archive to by hand.
 *
 * @example
 * ```ts
 * import { loadWikiText } from "./wikitext.ts";
 * // No network here: the unreachable address fails fast with instructions.
 * const err = await loadWikiText({ source: "http://127.0.0.1:9/wikitext-103-v1.zip", cacheDir: await Deno.makeTempDir() })
 *   .catch((e) => e);
 * console.log(String(err).includes("download")); // true
 * ```
 */
export async function loadWikiText(options?: LoadWikiTextOptions): Promise<WikiTextCorpus> {
  const owner = "loadWikiText";
  const o = resolveOptions(
    owner,
    options,
    {
      source: WIKITEXT103.url as string,
      cacheDir: join(REPO_ROOT, "data", "cache", "wikitext"),
      sha256: null as string | null,
      md5: undefined as string | null | undefined,
      tokenization: "word" as "word" | "byte",
      timeoutSeconds: 30,
    },
    {
      source: { type: "string", nonEmpty: true },
      cacheDir: { type: "string", nonEmpty: true },
      sha256: { type: "string", nonEmpty: true, nullable: true },
      md5: { type: "string", nonEmpty: true, nullable: true },
      tokenization: { type: "enum", values: ["word", "byte"] },
      timeoutSeconds: { type: "number", min: 0, exclusiveMin: true },
    },
  );
  const md5 = o.md5 === undefined ? (o.source === WIKITEXT103.url ? WIKITEXT103.md5 : null) : o.md5;
  const remote = /^(https?|file):/i.test(o.source);
  const zipPath = remote ? join(o.cacheDir, basename(new URL(o.source).pathname) || "wikitext.zip") : o.source;
  const recordPath = `${zipPath}.sha256`;
  if (remote && !(await exists(zipPath))) {
    await download(owner, o.source, zipPath, o.timeoutSeconds);
    await writeFileAtomic(recordPath, `${await sha256File(zipPath)}\n`);
  }
  let zip: Uint8Array;
  try {
    zip = await Deno.readFile(zipPath);
  } catch (err) {
    throw new Error(`${owner}: cannot read the archive ${zipPath}: ${(err as Error).message}`);
  }
  const sha256 = await sha256Hex(zip);
  const zipMd5 = createHash("md5").update(zip).digest("hex");
  const recorded = o.sha256 ?? (remote ? (await readText(recordPath))?.trim() ?? null : null);
  if (recorded !== null && recorded.toLowerCase() !== sha256) {
    throw new Error(
      `${owner}: SHA-256 of ${zipPath} is ${sha256}, expected ${recorded}; the file is corrupt or a different ` +
        `release: delete it and download ${o.source} again`,
    );
  }
  if (md5 !== null && md5.toLowerCase() !== zipMd5) {
    throw new Error(
      `${owner}: MD5 of ${zipPath} is ${zipMd5}, expected ${md5}; the file is corrupt or a different ` +
        `release: delete it and download ${o.source} again`,
    );
  }

  const entries = listZip(zip);
  const find = (split: SplitName): ZipEntry => {
    const hit = entries.find((e) => e.name === SPLIT_FILES[split] || e.name.endsWith(`/${SPLIT_FILES[split]}`));
    if (!hit) {
      throw new Error(
        `${owner}: ${zipPath} has no ${SPLIT_FILES[split]}; it holds ${entries.map((e) => e.name).join(", ")}`,
      );
    }
    return hit;
  };
  const tokenizer = o.tokenization === "word" ? new WordTokenizer() : null;
  const splits = {} as WikiTextCorpus["splits"];
  const lines = {} as WikiTextCorpus["lines"];
  const unknownWords = { train: 0, valid: 0, test: 0 };
  const fileChecksums = {} as Record<SplitName, string>;
  for (const split of ["train", "valid", "test"] as const) {
    const hash = createHash("sha256");
    const ids = new Growable<Int32Array | Uint8Array>(o.tokenization === "word" ? Int32Array : Uint8Array);
    let count = 0;
    let unknown = 0;
    for await (const line of linesOf(zipEntryStream(zip, find(split)), (chunk) => hash.update(chunk))) {
      count += 1;
      if (tokenizer) unknown += tokenizer.encodeLine(line, { grow: split === "train", out: ids });
      else ids.push(line.bytes, line.hasNewline);
    }
    splits[split] = ids.finish();
    lines[split] = count;
    unknownWords[split] = unknown;
    fileChecksums[split] = hash.digest("hex");
  }
  return {
    name: basename(zipPath).replace(/\.zip$/i, ""),
    tokenization: o.tokenization,
    vocabSize: tokenizer ? tokenizer.words.length : 256,
    vocab: tokenizer ? tokenizer.words : null,
    splits,
    lines,
    unknownWords,
    checksums: { zip: sha256, zipMd5, ...fileChecksums },
    source: { url: remote ? o.source : `file://${zipPath}`, zipPath },
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

async function readText(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

async function sha256File(path: string): Promise<string> {
  return await sha256Hex(await Deno.readFile(path));
}

/** Streams `url` into `path` through a temporary file; fails fast with instructions when offline. */
async function download(owner: string, url: string, path: string, timeoutSeconds: number): Promise<void> {
  const manual = `without internet access, download ${url} by hand and save it as ${path} ` +
    `(or pass { source: "/path/to/the.zip" })`;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutSeconds * 1000);
  let response: Response;
  try {
    response = await fetch(url.startsWith("file:") ? new URL(url) : url, { signal: controller.signal });
  } catch (err) {
    const why = controller.signal.aborted ? `no answer in ${timeoutSeconds} s` : (err as Error).message;
    throw new Error(`${owner}: cannot download ${url} (${why}); ${manual}`);
  } finally {
    clearTimeout(timer);
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    throw new Error(`${owner}: cannot download ${url} (HTTP ${response.status} ${response.statusText}); ${manual}`);
  }
  await Deno.mkdir(join(path, ".."), { recursive: true });
  const temp = join(path, "..", `.${basename(path)}.${crypto.randomUUID().slice(0, 8)}.tmp`);
  const total = Number(response.headers.get("content-length")) || undefined;
  const bar = progress({ total, label: `download ${basename(path)}` });
  try {
    const file = await Deno.open(temp, { write: true, createNew: true });
    try {
      for await (const chunk of response.body) {
        let written = 0;
        while (written < chunk.length) written += await file.write(chunk.subarray(written));
        bar.tick(chunk.length);
      }
      await file.sync();
    } finally {
      file.close();
    }
    await bar.done();
    await Deno.rename(temp, path);
  } catch (err) {
    await Deno.remove(temp).catch(() => {});
    throw new Error(`${owner}: download of ${url} failed (${(err as Error).message}); ${manual}`);
  }
}

interface Line {
  /** The line's bytes without the newline. */
  bytes: Uint8Array;
  /** Whether a newline followed it (false only for a last line without one). */
  hasNewline: boolean;
}

/** The lines of a byte stream, split at "\n"; `onChunk` sees every chunk first. */
async function* linesOf(stream: ReadableStream<Uint8Array>, onChunk: (chunk: Uint8Array) => void) {
  let carry = new Uint8Array(0);
  for await (const chunk of stream) {
    onChunk(chunk);
    let data = chunk;
    if (carry.length > 0) {
      data = new Uint8Array(carry.length + chunk.length);
      data.set(carry);
      data.set(chunk, carry.length);
    }
    let start = 0;
    for (let nl = data.indexOf(10, start); nl >= 0; nl = data.indexOf(10, start)) {
      yield { bytes: data.subarray(start, nl), hasNewline: true } as Line;
      start = nl + 1;
    }
    carry = data.slice(start);
  }
  if (carry.length > 0) yield { bytes: carry, hasNewline: false } as Line;
}

/** Word-level ids: vocabulary grown from train in order of first appearance. */
class WordTokenizer {
  words: string[] = [];
  private ids = new Map<string, number>();
  private decoder = new TextDecoder("utf-8", { fatal: true });

  private id(word: string): number {
    let id = this.ids.get(word);
    if (id === undefined) {
      id = this.words.length;
      this.ids.set(word, id);
      this.words.push(word);
    }
    return id;
  }

  /** Appends the line's ids and `<eos>`; returns how many words became `<unk>`. */
  encodeLine(line: Line, options: { grow: boolean; out: Growable<Int32Array | Uint8Array> }): number {
    const text = this.decoder.decode(line.bytes);
    let unknown = 0;
    for (const word of text.split(WHITESPACE)) {
      if (word === "") continue;
      const known = this.ids.get(word);
      if (known !== undefined) options.out.pushOne(known);
      else if (options.grow) options.out.pushOne(this.id(word));
      else {
        unknown += 1;
        options.out.pushOne(this.id("<unk>"));
      }
    }
    options.out.pushOne(this.id("<eos>"));
    return unknown;
  }
}

/** An append-only typed array that doubles its capacity. */
class Growable<T extends Int32Array | Uint8Array> {
  private data: T;
  private size = 0;
  constructor(private readonly Kind: { new (n: number): T }) {
    this.data = new Kind(1 << 16);
  }
  private reserve(extra: number) {
    if (this.size + extra <= this.data.length) return;
    let capacity = this.data.length * 2;
    while (capacity < this.size + extra) capacity *= 2;
    const next = new this.Kind(capacity);
    next.set(this.data.subarray(0, this.size));
    this.data = next;
  }
  pushOne(value: number) {
    this.reserve(1);
    this.data[this.size++] = value;
  }
  /** Appends a line's bytes and, when it had one, its newline. */
  push(bytes: Uint8Array, newline: boolean) {
    this.reserve(bytes.length + 1);
    this.data.set(bytes, this.size);
    this.size += bytes.length;
    if (newline) this.data[this.size++] = 10;
  }
  finish(): T {
    return this.data.slice(0, this.size) as T;
  }
}
