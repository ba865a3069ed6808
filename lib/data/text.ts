/**
 * Your own text as a byte-level corpus: a UTF-8 file, or a folder of UTF-8 files, laid out and
 * split exactly like the State of the Union corpus ({@linkcode ByteCorpus}, vocabulary 256), so
 * `lmSampler`, `lmTiling` and `trainedLanguageModel({ corpus })` take it as they take `loadSotu()`.
 *
 * Files. A file path is read as it is. In a folder, every file whose path relative to the folder
 * ('/'-separated) matches `pattern` (a glob, default {@linkcode DEFAULT_TEXT_PATTERN}: every `.txt` file) is read; names starting with "."
 * (hidden files and folders) are skipped, and symbolic links to folders are not followed. Files are
 * taken in the byte order of their UTF-8 relative paths (Python's `sorted()` order of the names),
 * whatever the file system lists first.
 *
 * Checksum. `checksums.text` is the SHA-256 of the files' bytes, as they are, concatenated in that
 * order: for one file it is `sha256sum FILE`; for a folder, `cat` the files in that order into
 * `sha256sum`. `files` holds each file's size and SHA-256 too. Pass `sha256` to pin the text: a
 * different sum is an Error naming both. `checksums.corpus` (the laid-out corpus) is what a run's
 * `dataId` records, as for the State of the Union corpus.
 *
 * Documents. Each file is cut into pieces of at most `documentBytes` bytes (default 4096), each
 * ending after the last line break of its second half when there is one, otherwise before the
 * character that would cross the limit; no piece spans two files. Piece `i` of file `p` is the
 * document `"p#i"`, and its split follows {@linkcode SPLIT_RULE} (SHA-256 of the id: 90/5/5 in
 * expectation). The bytes are kept exactly as in the files (a byte-order mark and CR LF
 * included); byte 0 is the document separator, so a file holding it is refused.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { basename, extname, join, relative, resolve, sep } from "node:path";
import { buildByteCorpus, type ByteCorpus, type CorpusDocument, DOCUMENT_SEPARATOR, SPLIT_NAMES } from "./sotu.ts";
import { sha256Hex } from "./types.ts";
import { resolveOptions } from "../_options.ts";

/** The default `pattern` of {@linkcode loadTextCorpus}. */
export const DEFAULT_TEXT_PATTERN = "**/*.txt";

/** The default `documentBytes` of {@linkcode loadTextCorpus}. */
export const DEFAULT_DOCUMENT_BYTES = 4096;

/** Options for {@linkcode loadTextCorpus}. */
export interface LoadTextCorpusOptions {
  /**
   * For a folder: which files to read, a glob on their '/'-separated paths relative to the folder
   * (`*` and `?` within a name, `**` across folders, `{a,b}` alternatives). Default
   * {@linkcode DEFAULT_TEXT_PATTERN}, every `.txt` file at any depth.
   * Not accepted with a file path.
   */
  pattern?: string;
  /** The largest document, in bytes (at least 16). Default {@linkcode DEFAULT_DOCUMENT_BYTES}. */
  documentBytes?: number;
  /** Expected SHA-256 (64 hex digits) of the text, as in `checksums.text`; null: no check. Default null. */
  sha256?: string | null;
  /** The corpus name. Default: the file's name without its extension, or the folder's name. */
  name?: string;
  /** Accept a corpus with an empty split (too little text for 90/5/5). Default false: it is an Error. */
  allowEmptySplits?: boolean;
}

/** One file read into a {@linkcode TextCorpus}. */
export interface TextFile {
  /** Its path relative to the folder ('/'-separated), or its name for a single file. */
  path: string;
  /** Its size in bytes. */
  bytes: number;
  /** SHA-256 (hex) of its bytes. */
  sha256: string;
}

/** What {@linkcode loadTextCorpus} returns: a {@linkcode ByteCorpus} that also records where its text came from. */
export interface TextCorpus extends ByteCorpus {
  /** The corpus's checksums, and `text`: SHA-256 of the files' bytes concatenated in `files` order. */
  checksums: ByteCorpus["checksums"] & { text: string };
  /** The files read, in the order their bytes were hashed and laid out. */
  files: TextFile[];
  /** `package` and `version` are empty: the text comes from `path` (absolute). */
  source: ByteCorpus["source"] & { path: string; pattern: string | null; documentBytes: number };
}

const OWNER = "loadTextCorpus";

/**
 * Loads a UTF-8 text file, or the matching UTF-8 files of a folder, as a byte-level corpus split
 * like the State of the Union corpus (see the module doc for the file order, the checksum and
 * the document rule). Errors name the path: a path that does not exist, a file that is not
 * UTF-8 (with the byte offset and line), a file holding byte 0, a corpus with no text, a folder
 * with no file matching `pattern`, a `sha256` that differs, an empty split (unless
 * `allowEmptySplits`), and unknown options. Needs read permission for the path.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { loadTextCorpus } from "./text.ts";
 * const dir = await Deno.makeTempDir();
 * const lines = Array.from({ length: 400 }, (_, i) => `Line ${i}: the quick brown fox jumps over the lazy dog.`);
 * await Deno.writeTextFile(join(dir, "fox.txt"), lines.join("\n") + "\n");
 * const corpus = await loadTextCorpus(dir, { documentBytes: 256 });
 * console.log(corpus.vocabSize, corpus.files.map((f) => f.path), corpus.checksums.text.length); // 256 ["fox.txt"] 64
 * console.log(corpus.splits.train.length > corpus.splits.valid.length); // true
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadTextCorpus(path: string, options?: LoadTextCorpusOptions): Promise<TextCorpus> {
  if (typeof path !== "string" || path.length === 0) {
    throw new TypeError(
      `${OWNER}: path must be a non-empty string naming a UTF-8 text file or a folder of them, got ${
        typeof path === "string" ? '""' : String(path)
      }`,
    );
  }
  const o = resolveOptions(
    OWNER,
    options,
    {
      pattern: null as string | null,
      documentBytes: DEFAULT_DOCUMENT_BYTES,
      sha256: null as string | null,
      name: null as string | null,
      allowEmptySplits: false,
    },
    {
      pattern: { type: "string", nonEmpty: true },
      documentBytes: { type: "number", min: 16, integer: true },
      sha256: { type: "string", nonEmpty: true, nullable: true },
      name: { type: "string", nonEmpty: true },
      allowEmptySplits: { type: "boolean" },
    },
  );
  if (o.sha256 !== null && !/^[0-9a-fA-F]{64}$/.test(o.sha256)) {
    throw new RangeError(`${OWNER}: option sha256 must be 64 hexadecimal digits (a SHA-256), got "${o.sha256}"`);
  }
  const root = resolve(path);
  try {
    const info = await statPath(path, root);
    let paths: { rel: string; abs: string }[];
    if (info.isFile) {
      if (o.pattern !== null) {
        throw new Error(
          `${OWNER}: option pattern selects files in a folder, but ${path} is a file; drop the pattern, or pass the folder`,
        );
      }
      paths = [{ rel: basename(root), abs: root }];
    } else if (info.isDirectory) {
      paths = await matchingFiles(path, root, o.pattern ?? DEFAULT_TEXT_PATTERN);
    } else {
      throw new Error(
        `${OWNER}: ${path} is neither a file nor a folder; expected a UTF-8 text file or a folder of them`,
      );
    }

    const files: TextFile[] = [];
    const documents: CorpusDocument[] = [];
    const whole = createHash("sha256");
    for (const { rel, abs } of paths) {
      const bytes = await Deno.readFile(abs);
      checkText(abs, bytes);
      whole.update(bytes);
      files.push({ path: rel, bytes: bytes.length, sha256: await sha256Hex(bytes) });
      for (const [i, [start, end]] of pieces(bytes, o.documentBytes).entries()) {
        documents.push({ id: `${rel}#${i}`, bytes: bytes.subarray(start, end) });
      }
    }
    const text = whole.digest("hex");
    if (o.sha256 !== null && o.sha256.toLowerCase() !== text) {
      throw new Error(
        `${OWNER}: the text of ${path} has SHA-256 ${text}, expected ${o.sha256.toLowerCase()} (option sha256); ` +
          `its ${files.length} file(s) differ from the ones the sum was taken of: restore them, or pass the new ` +
          "sum if the change is intended",
      );
    }
    if (documents.length === 0) {
      const which = info.isFile ? "the file is empty" : `all ${files.length} matching file(s) are empty`;
      throw new Error(`${OWNER}: ${path} holds no text: ${which}; give a file or folder with some text in it`);
    }
    const name = o.name ?? ((info.isFile ? basename(root, extname(root)) : basename(root)) || "text");
    const corpus = await buildByteCorpus(documents, { name });
    if (!o.allowEmptySplits) checkSplits(path, corpus, o.documentBytes);
    return {
      ...corpus,
      checksums: { ...corpus.checksums, text },
      files,
      source: {
        package: "",
        version: "",
        splitRule: corpus.source.splitRule,
        path: root,
        pattern: info.isDirectory ? o.pattern ?? DEFAULT_TEXT_PATTERN : null,
        documentBytes: o.documentBytes,
      },
    };
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
      throw new Error(`${OWNER}: ${(err as Error).message}; run with --allow-read=${root}`);
    }
    throw err;
  }
}

async function statPath(path: string, root: string): Promise<Deno.FileInfo> {
  try {
    return await Deno.stat(root);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(
        `${OWNER}: ${path} does not exist (resolved to ${root}); expected a UTF-8 text file or a folder of them`,
      );
    }
    throw err;
  }
}

/**
 * A glob as a RegExp on '/'-separated relative paths: `**` crosses folders (followed by '/', also none),
 * `*` and `?` stay within a name, `{a,b}` is either; everything else is literal.
 */
function globToRegExp(pattern: string): RegExp {
  let out = "";
  let braces = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "*" && pattern[i + 1] === "*") {
      if (pattern[i + 2] === "/") {
        out += "(?:.*/)?";
        i += 2;
      } else {
        out += ".*";
        i += 1;
      }
    } else if (c === "*") out += "[^/]*";
    else if (c === "?") out += "[^/]";
    else if (c === "{") {
      braces += 1;
      out += "(?:";
    } else if (c === "}" && braces > 0) {
      braces -= 1;
      out += ")";
    } else if (c === "," && braces > 0) out += "|";
    else out += c.replace(/[.+^$()|[\]\\{}]/g, "\\$&");
  }
  if (braces > 0) {
    throw new Error(`${OWNER}: option pattern "${pattern}" has a "{" without its "}"`);
  }
  return new RegExp(`^${out}$`);
}

const encoder = new TextEncoder();

/** Compares two strings by their UTF-8 bytes (code point order), independent of locale. */
function byUtf8(a: string, b: string): number {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}

/** The folder's files whose relative paths match `pattern`, in UTF-8 byte order of those paths. */
async function matchingFiles(path: string, root: string, pattern: string): Promise<{ rel: string; abs: string }[]> {
  const re = globToRegExp(pattern);
  const all: { rel: string; abs: string }[] = [];
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name.startsWith(".")) continue;
      const abs = join(dir, entry.name);
      let isFile = entry.isFile;
      if (entry.isDirectory) await walk(abs);
      else if (entry.isSymlink) {
        // A link to a file is read; a link to a folder is not followed (it could loop).
        isFile = (await Deno.stat(abs).catch(() => null))?.isFile ?? false;
      }
      if (isFile) all.push({ rel: relative(root, abs).split(sep).join("/"), abs });
    }
  };
  await walk(root);
  const matched = all.filter((f) => re.test(f.rel)).sort((a, b) => byUtf8(a.rel, b.rel));
  if (matched.length === 0) {
    const seen = all.length === 0
      ? "it holds no files"
      : `it holds ${all.length} other file(s), e.g. ${all.slice(0, 3).map((f) => f.rel).join(", ")}`;
    throw new Error(
      `${OWNER}: no file in the folder ${path} matches the pattern "${pattern}" (${seen}); ` +
        `pass { pattern } with a glob on the paths relative to the folder, e.g. "**/*.md" or "**/*"`,
    );
  }
  return matched;
}

/**
 * The offset of the first byte that does not start a well-formed UTF-8 sequence (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF, no truncated sequence), or -1 when
 * every byte does: the bytes a fatal `TextDecoder("utf-8")` accepts.
 *
 * @example
 * ```ts
 * import { invalidUtf8Offset } from "./text.ts";
 * const ok = new TextEncoder().encode("naïve ✓");
 * console.log(invalidUtf8Offset(ok), invalidUtf8Offset(new Uint8Array([0x61, 0x62, 0xe9, 0x63]))); // -1 2
 * ```
 */
export function invalidUtf8Offset(bytes: Uint8Array): number {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i];
    if (b < 0x80) {
      i += 1;
      continue;
    }
    // The length of the sequence and the range its second byte must lie in.
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b === 0xe0) [need, lo] = [2, 0xa0];
    else if (b === 0xed) [need, hi] = [2, 0x9f];
    else if (b >= 0xe1 && b <= 0xef) need = 2;
    else if (b === 0xf0) [need, lo] = [3, 0x90];
    else if (b === 0xf4) [need, hi] = [3, 0x8f];
    else if (b >= 0xf1 && b <= 0xf3) need = 3;
    else return i;
    if (i + need >= n) return i;
    if (bytes[i + 1] < lo || bytes[i + 1] > hi) return i;
    for (let k = 2; k <= need; k++) {
      if (bytes[i + k] < 0x80 || bytes[i + k] > 0xbf) return i;
    }
    i += need + 1;
  }
  return -1;
}

/** Throws unless `bytes` is UTF-8 without byte 0; the message names the file, the offset and the line. */
function checkText(file: string, bytes: Uint8Array): void {
  const lineOf = (offset: number) => bytes.subarray(0, offset).reduce((n, b) => n + (b === 10 ? 1 : 0), 1);
  const bad = invalidUtf8Offset(bytes);
  if (bad >= 0) {
    const hex = Array.from(bytes.subarray(bad, bad + 4), (b) => b.toString(16).padStart(2, "0")).join(" ");
    throw new Error(
      `${OWNER}: ${file} is not valid UTF-8: byte offset ${bad} (line ${lineOf(bad)}) starts "${hex}"; ` +
        "convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8) or leave it out with pattern",
    );
  }
  const nul = bytes.indexOf(DOCUMENT_SEPARATOR);
  if (nul >= 0) {
    throw new Error(
      `${OWNER}: ${file} holds byte 0 at byte offset ${nul} (line ${lineOf(nul)}), which the corpus uses as its ` +
        "document separator; text files do not hold it (is this a binary file?): remove it or leave the file out",
    );
  }
}

/**
 * [start, end) of the documents of one file's bytes (valid UTF-8): at most `max` bytes each, ended
 * after the last line break in the second half of the piece, else before the character that would
 * cross `max`.
 */
function pieces(bytes: Uint8Array, max: number): [number, number][] {
  const out: [number, number][] = [];
  let start = 0;
  while (start < bytes.length) {
    let end = Math.min(start + max, bytes.length);
    if (end < bytes.length) {
      const half = start + (max >> 1);
      const newline = bytes.subarray(half, end).lastIndexOf(10);
      if (newline >= 0) end = half + newline + 1;
      // Not inside a character: the next piece must start on a lead byte (max >= 16 > 4 bytes).
      else while ((bytes[end] & 0xc0) === 0x80) end -= 1;
    }
    out.push([start, end]);
    start = end;
  }
  return out;
}

/** Throws when a split is empty: too few documents for the 90/5/5 rule to reach every split. */
function checkSplits(path: string, corpus: ByteCorpus, documentBytes: number): void {
  for (const split of SPLIT_NAMES) {
    if (corpus.splits[split].length > 0) continue;
    const total = corpus.bytes.length - corpus.documents.length;
    const suggested = Math.max(16, Math.floor(total / 400));
    const smaller = suggested < documentBytes
      ? `pass a smaller documentBytes (e.g. { documentBytes: ${suggested} }, about ${
        Math.ceil(total / suggested)
      } documents), more text, or`
      : "give more text, or pass";
    throw new Error(
      `${OWNER}: the ${split} split of ${path} is empty: none of its ${corpus.documents.length} document(s) ` +
        `(pieces of at most ${documentBytes} bytes) fell in it under the 90/5/5 split rule; ${smaller} ` +
        "{ allowEmptySplits: true } to accept it",
    );
  }
}
