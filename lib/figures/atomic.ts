/**
 * Atomic file writes: write a temporary file in the same folder, flush it to
 * disk, then rename it over the target. Readers see the old file or the new
 * one, never a partial one.
 *
 * Temporary files are named `.<target>.<8 hex digits>.tmp` by
 * {@linkcode writeFileAtomic} and `.<target>.set-<8 hex digits>.tmp` by the
 * figure-set saves of `file_set.ts`. Both match `.*.tmp`, which `.gitignore`
 * ignores, and {@linkcode sweepTempFiles} removes the ones a killed process left.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";

/** Temporary files are named `.<target>.<random>.tmp`, next to their target. */
export const TEMP_SUFFIX = ".tmp";

/** The tag a figure-set save puts before its random part: `.<target>.set-<random>.tmp`. */
export const SET_TAG = "set-";

// `.<target>.<tag?><8 hex>.tmp`; the target itself must be non-empty.
const TEMP_NAME = /^\.(.+)\.(set-)?([0-9a-f]{8})\.tmp$/;

/**
 * The temporary name for `target` (a file name, not a path): `.<target>.<tag><8 hex>.tmp`.
 *
 * @example
 * ```ts
 * import { isTempName, tempNameFor } from "./atomic.ts";
 * const name = tempNameFor("scaling.svg", "set-");
 * console.log(name.startsWith(".scaling.svg.set-"), isTempName(name)); // true true
 * ```
 */
export function tempNameFor(target: string, tag = ""): string {
  return `.${target}.${tag}${crypto.randomUUID().slice(0, 8)}${TEMP_SUFFIX}`;
}

/** What {@linkcode isTempName} tells about a file name. */
export interface TempNameInfo {
  /** The file the temporary file was going to replace. */
  target: string;
  /** Whether a figure-set save (which writes temporary files only while holding the folder's lock) wrote it. */
  set: boolean;
}

/**
 * Whether a file name is one of our temporary files, and if so for which target.
 *
 * @example
 * ```ts
 * import { isTempName } from "./atomic.ts";
 * console.log(isTempName(".a.svg.0123abcd.tmp"), isTempName(".a.svg.set-0123abcd.tmp"), isTempName("a.svg"));
 * // { target: "a.svg", set: false } { target: "a.svg", set: true } null
 * ```
 */
export function isTempName(name: string): TempNameInfo | null {
  const match = TEMP_NAME.exec(name);
  return match === null ? null : { target: match[1], set: match[2] !== undefined };
}

/**
 * Writes `data` to a new file `path` (which must not exist) and flushes it to disk.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { writeNewFile } from "./atomic.ts";
 * const path = join(await Deno.makeTempDir(), "a.txt");
 * await writeNewFile(path, "a\n");
 * console.log(await Deno.readTextFile(path)); // a
 * ```
 */
export async function writeNewFile(path: string, data: string | Uint8Array): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const file = await Deno.open(path, { write: true, createNew: true });
  try {
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.sync();
  } finally {
    file.close();
  }
}

/**
 * Writes `data` to `path` atomically; the folder must exist.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { writeFileAtomic } from "./atomic.ts";
 * const dir = await Deno.makeTempDir();
 * await writeFileAtomic(join(dir, "hello.txt"), "hello\n");
 * console.log(await Deno.readTextFile(join(dir, "hello.txt"))); // hello
 * ```
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const temp = join(dirname(path), tempNameFor(basename(path)));
  try {
    await writeNewFile(temp, data);
    await Deno.rename(temp, path);
  } catch (err) {
    await Deno.remove(temp).catch(() => {});
    throw err;
  }
}

/** Options for {@linkcode sweepTempFiles}. */
export interface SweepOptions {
  /**
   * Remove figure-set temporary files (`.<target>.set-<random>.tmp`) whatever their age.
   * Only safe while holding the folder's lock, since set saves write them only under it.
   */
  sets?: boolean;
  /** Other temporary files are removed once their last write is this old. */
  olderThanMs: number;
  /** Names to leave alone (temporary files a pending journal still refers to). */
  keep?: ReadonlySet<string>;
}

/**
 * Removes leftover temporary files from `dir` and returns their names, sorted.
 * A {@linkcode writeFileAtomic} temp file is removed only when its last write is
 * older than `olderThanMs` (a write in progress keeps touching it, and finishes
 * with a rename); figure-set temp files are removed at once when `sets` is true.
 * Files that vanish meanwhile (another process finished or swept them) are skipped.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { sweepTempFiles } from "./atomic.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(join(dir, ".a.svg.set-0123abcd.tmp"), "partial");
 * await Deno.writeTextFile(join(dir, ".b.csv.89abcdef.tmp"), "in progress");
 * console.log(await sweepTempFiles(dir, { sets: true, olderThanMs: 30_000 })); // [".a.svg.set-0123abcd.tmp"]
 * ```
 */
export async function sweepTempFiles(dir: string, options: SweepOptions): Promise<string[]> {
  const now = Date.now();
  const removed: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile) continue;
    const info = isTempName(entry.name);
    if (info === null || options.keep?.has(entry.name)) continue;
    const path = join(dir, entry.name);
    if (!(info.set && options.sets)) {
      const mtime = (await Deno.stat(path).catch(() => null))?.mtime?.getTime();
      if (mtime === undefined || now - mtime <= options.olderThanMs) continue;
    }
    try {
      await Deno.remove(path);
      removed.push(entry.name);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  return removed.sort();
}
