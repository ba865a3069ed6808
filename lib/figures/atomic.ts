/**
 * Atomic file writes: write a temporary file in the same folder, flush it to
 * disk, then rename it over the target. Readers see the old file or the new
 * one, never a partial one.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";

/** Temporary files are named `.<target>.<random>.tmp`, next to their target. */
export const TEMP_SUFFIX = ".tmp";

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
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const temp = join(dirname(path), `.${basename(path)}.${crypto.randomUUID().slice(0, 8)}${TEMP_SUFFIX}`);
  try {
    const file = await Deno.open(temp, { write: true, createNew: true });
    try {
      let written = 0;
      while (written < bytes.length) written += await file.write(bytes.subarray(written));
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(temp, path);
  } catch (err) {
    await Deno.remove(temp).catch(() => {});
    throw err;
  }
}
