/**
 * Hashes of the repository's own source, so that results can be keyed by the code that made
 * them: a resumed `deno task reproduce` skips a notebook only when neither it nor the library
 * changed since it ran.
 *
 * @module
 */

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { REPO_ROOT } from "./env.ts";
import { sha256Hex } from "./train/hash.ts";

/** The paths, relative to the repository root, whose files make up the library's source by default. */
export const LIBRARY_SOURCES: readonly string[] = Object.freeze(["lib", "deno.json", "deno.lock"]);

function filesUnder(path: string): string[] {
  const stat = statSync(path);
  if (!stat.isDirectory()) return [path];
  return readdirSync(path).sort().flatMap((name) => filesUnder(join(path, name)));
}

/**
 * SHA-256 over every file under `paths` (relative to `root`, default the repository root):
 * each file's relative path and bytes, in sorted order. A missing path is an Error naming it.
 *
 * @example
 * ```ts
 * import { sourceHash } from "./source_hash.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/a.ts`, "export const a = 1;\n");
 * const before = await sourceHash(["a.ts"], { root: dir });
 * await Deno.writeTextFile(`${dir}/a.ts`, "export const a = 2;\n");
 * console.log(before === await sourceHash(["a.ts"], { root: dir })); // false
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function sourceHash(
  paths: readonly string[] = LIBRARY_SOURCES,
  options: { root?: string } = {},
): Promise<string> {
  const root = options.root ?? REPO_ROOT;
  const parts: Uint8Array[] = [];
  const encoder = new TextEncoder();
  for (const path of paths) {
    const full = join(root, path);
    let files: string[];
    try {
      files = filesUnder(full);
    } catch (err) {
      throw new Error(`sourceHash: cannot read ${full}: ${(err as Error).message}`);
    }
    for (const file of files) {
      parts.push(encoder.encode(`${relative(root, file)}\0`), readFileSync(file), encoder.encode("\0"));
    }
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    bytes.set(p, offset);
    offset += p.length;
  }
  return await sha256Hex(bytes);
}
