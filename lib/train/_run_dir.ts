/**
 * The check that a run folder can be written, made before any training step (internal: not re-exported from
 * mod.ts).
 *
 * @module
 */

import { join } from "node:path";

/**
 * Creates `dir` (a run folder under `runsDir`) if missing, then writes and removes a small probe file in it, so
 * that a folder that cannot hold the run fails now rather than at the first checkpoint, after the steps have run.
 * Throws an Error that names `runsDir`, its value and the fix.
 *
 * @example
 * ```ts
 * import { checkRunDir } from "./_run_dir.ts";
 * const runsDir = await Deno.makeTempDir();
 * await checkRunDir("demo", { runsDir, dir: `${runsDir}/run` });
 * const file = await Deno.makeTempFile();
 * try {
 *   await checkRunDir("demo", { runsDir: file, dir: `${file}/run` });
 * } catch (err) {
 *   console.log((err as Error).message.startsWith(`demo: option runsDir ("${file}") cannot hold`)); // true
 * }
 * await Deno.remove(runsDir, { recursive: true });
 * await Deno.remove(file);
 * ```
 */
export async function checkRunDir(owner: string, paths: { runsDir: string; dir: string }): Promise<void> {
  const { runsDir, dir } = paths;
  const probe = join(dir, `.write-probe-${crypto.randomUUID().slice(0, 8)}.tmp`);
  try {
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(probe, "");
    await Deno.remove(probe);
  } catch (err) {
    throw new Error(
      `${owner}: option runsDir (${JSON.stringify(runsDir)}) cannot hold the run: writing in ${dir} failed ` +
        `(${(err as Error).message}); give a folder you can write to, or leave runsDir out for <repo>/data/runs`,
      { cause: err },
    );
  }
}
