/**
 * Saving several files in one folder as one unit: a figure's SVG, PNG and CSV,
 * and the manifest entry that describes them.
 *
 * {@linkcode commitFileSet} runs these steps, in this order:
 *
 * 1. **Lock** the folder (`withFileLock`: waits for another saver, breaks a
 *    stale lock, fails with the lock's path and the fix). Nothing is written
 *    before this, so a lock problem leaves the folder as it was.
 * 2. **Recover**: if a journal from an earlier save is there, that save was
 *    killed in the middle of step 7; its remaining renames are done now.
 * 3. **Sweep** leftover temporary files (see "Sweeping" below).
 * 4. **Plan**: the caller's `plan()` runs, still under the lock, and returns the
 *    files to write (reading and changing the manifest happens here, so an
 *    unreadable manifest throws before anything is written).
 * 5. **Write temporaries**: every file, the manifest included, is written
 *    under a temporary name `.<name>.set-<random>.tmp` in the same folder and
 *    flushed to disk. A failure here removes them and leaves the old set.
 * 6. **Journal**: the list of renames and removals is written, atomically, to
 *    the journal file.
 * 7. **Rename**: the temporaries are renamed over their targets one after the
 *    other with no other work in between (a handful of `rename` calls, well
 *    under a millisecond), stale files are removed, and the manifest is renamed
 *    last.
 * 8. The journal is removed and the lock released.
 *
 * **What a reader sees if the process is killed** (a kernel restart, Ctrl-C,
 * `kill -9`):
 *
 * - during steps 1–6: the complete old set and the old manifest. Temporary
 *   files (and the lock file) are left behind; the next save in that folder
 *   breaks the lock at once (its holder no longer runs) and sweeps them.
 * - during step 7: some targets are new and the others old (for instance a new
 *   SVG beside the old PNG), and the manifest is old. The next save, or any
 *   manifest update, in that folder finds the journal and finishes the renames
 *   (every new file is already on disk), so the set becomes the complete new one.
 * - during step 8: the complete new set; the leftover journal is removed by
 *   the next save.
 *
 * **Sweeping.** Figure-set temporaries are written only while the folder's lock
 * is held, so a save that holds the lock knows that any it finds belong to a
 * killed save (or to a holder whose lock was broken as stale) and removes them
 * at once, after the journal has been replayed. Temporary files of plain
 * `writeFileAtomic` calls (`.<name>.<random>.tmp`, written without the lock, for
 * example by `deno task bench`) are removed only once their last write is older
 * than {@linkcode LOCK_STALE_MS}, so a write in progress is never touched.
 *
 * @module
 */

import { join } from "node:path";
import { isTempName, SET_TAG, sweepTempFiles, tempNameFor, writeNewFile } from "./atomic.ts";
import { LOCK_STALE_MS, withFileLock } from "./lock.ts";

/** A file to write: its name inside the folder, and its content. */
export type FileContent = readonly [name: string, data: string | Uint8Array];

/** What {@linkcode commitFileSet}'s `plan` returns. */
export interface FileSetPlan {
  /** Files to write, renamed into place in this order. */
  files: readonly FileContent[];
  /** File names to remove after the renames of `files` (missing ones are fine). */
  remove?: readonly string[];
  /** A file written after everything else, e.g. `manifest.json`. */
  last?: FileContent;
}

/** Options for {@linkcode commitFileSet}. */
export interface CommitFileSetOptions {
  /** The lock file's name inside the folder. */
  lockName: string;
  /** The journal's name inside the folder; it should match `.*.tmp` so git ignores it. */
  journalName: string;
  /** The lock wait; default `LOCK_WAIT_MS`. */
  waitMs?: number;
}

/** Stages at which {@linkcode fileSetTestHooks} are called. */
export type FileSetStage = "temps-written" | "before-step";

/**
 * For tests only: called synchronously at each stage of a save, so a test can
 * stop a child process there (and kill it) to check what a crash leaves.
 * `before-step` gets the index of the journal step about to run.
 */
export const fileSetTestHooks: { onStage?: (stage: FileSetStage, index: number) => void } = {};

type Step = ["rename", string, string] | ["remove", string];

function checkName(name: unknown, what: string): string {
  if (
    typeof name !== "string" || name === "" || name === "." || name === ".." || name.includes("/") ||
    name.includes("\\") || name.includes("\0")
  ) {
    throw new Error(`${what} must be a plain file name inside the folder, got ${JSON.stringify(name)}`);
  }
  return name;
}

// Reads and checks the journal; null when there is none.
async function readJournal(path: string): Promise<Step[] | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
  const bad = (why: string): never => {
    throw new Error(
      `${path} (the journal of an interrupted save) ${why}; delete it, and the .*.set-*.tmp files beside it, ` +
        `then save the figures again`,
    );
  };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return bad(`is not valid JSON (${(err as Error).message})`);
  }
  const steps = (parsed as { steps?: unknown } | null)?.steps;
  if (!Array.isArray(steps)) return bad(`has no "steps" list`);
  return steps.map((step, i): Step => {
    try {
      if (Array.isArray(step) && step[0] === "rename" && step.length === 3) {
        const from = checkName(step[1], `steps[${i}][1]`);
        if (!isTempName(from)?.set) throw new Error(`steps[${i}][1] must be a set temporary file, got ${from}`);
        return ["rename", from, checkName(step[2], `steps[${i}][2]`)];
      }
      if (Array.isArray(step) && step[0] === "remove" && step.length === 2) {
        return ["remove", checkName(step[1], `steps[${i}][1]`)];
      }
      throw new Error(`steps[${i}] must be ["rename", from, to] or ["remove", name]`);
    } catch (err) {
      return bad(`is not a journal this version wrote: ${(err as Error).message}`);
    }
  });
}

// Runs journal steps, synchronously so that nothing else happens in between.
// Idempotent: a rename whose source is gone was done already; a removal of a missing file is done.
function runSteps(dir: string, steps: readonly Step[], from = 0): void {
  for (let i = from; i < steps.length; i++) {
    fileSetTestHooks.onStage?.("before-step", i);
    const step = steps[i];
    try {
      if (step[0] === "rename") Deno.renameSync(join(dir, step[1]), join(dir, step[2]));
      else Deno.removeSync(join(dir, step[1]));
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
}

async function recover(dir: string, journal: string): Promise<Step[] | null> {
  const steps = await readJournal(journal);
  if (steps === null) return null;
  try {
    runSteps(dir, steps);
  } catch (err) {
    throw new Error(
      `could not finish the interrupted save recorded in ${journal} (${(err as Error).message}); ` +
        `fix the cause and save again, or delete that file and the .*.set-*.tmp files beside it`,
    );
  }
  await Deno.remove(journal);
  return steps;
}

async function isFolder(path: string): Promise<boolean> {
  try {
    return (await Deno.lstat(path)).isDirectory;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/**
 * Writes a set of files into `dir` (which must exist) as one unit, under the
 * lock `options.lockName`: every file is written to a temporary name first,
 * then all are renamed into place with `plan().last` renamed last. See the
 * module doc for the steps and for what a crash at any point leaves.
 * `plan` runs under the lock; if it throws, nothing is written.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { commitFileSet } from "./file_set.ts";
 * const dir = await Deno.makeTempDir();
 * await commitFileSet(dir, () => ({ files: [["a.txt", "new a\n"], ["b.txt", "new b\n"]], last: ["index.json", "{}\n"] }), {
 *   lockName: "index.json.lock",
 *   journalName: ".index.json.journal.tmp",
 * });
 * console.log(await Deno.readTextFile(join(dir, "b.txt"))); // new b
 * ```
 */
export async function commitFileSet(
  dir: string,
  plan: () => FileSetPlan | Promise<FileSetPlan>,
  options: CommitFileSetOptions,
): Promise<void> {
  const lockName = checkName(options.lockName, "commitFileSet: options.lockName");
  const journalName = checkName(options.journalName, "commitFileSet: options.journalName");
  const journal = join(dir, journalName);
  await withFileLock(join(dir, lockName), async () => {
    await recover(dir, journal);
    await sweepTempFiles(dir, { sets: true, olderThanMs: LOCK_STALE_MS });

    const { files, remove = [], last } = await plan();
    const writes = [...files, ...(last !== undefined ? [last] : [])];
    for (const [name] of writes) {
      checkName(name, "commitFileSet: a file name");
      if (await isFolder(join(dir, name))) {
        throw new Error(`cannot save ${join(dir, name)}: a folder of that name is in the way; move or delete it`);
      }
    }
    for (const name of remove) checkName(name, "commitFileSet: a name to remove");

    const temps: string[] = [];
    try {
      for (const [name, data] of writes) {
        const temp = tempNameFor(name, SET_TAG);
        temps.push(temp);
        await writeNewFile(join(dir, temp), data);
      }
      fileSetTestHooks.onStage?.("temps-written", temps.length);
      const steps: Step[] = files.map(([name], i): Step => ["rename", temps[i], name]);
      for (const name of remove) steps.push(["remove", name]);
      if (last !== undefined) steps.push(["rename", temps[temps.length - 1], last[0]]);
      const journalTemp = tempNameFor(journalName, SET_TAG);
      temps.push(journalTemp);
      await writeNewFile(join(dir, journalTemp), JSON.stringify({ version: 1, steps }) + "\n");
      await Deno.rename(join(dir, journalTemp), journal);
      temps.length = 0; // From here on the journal owns the temporaries.
      try {
        runSteps(dir, steps);
      } catch (err) {
        throw new Error(
          `saving to ${dir} stopped in the middle of its renames (${(err as Error).message}); ` +
            `the next save in that folder finishes them from ${journal}`,
        );
      }
    } finally {
      for (const temp of temps) await Deno.remove(join(dir, temp)).catch(() => {});
    }
    await Deno.remove(journal);
  }, {
    waitMs: options.waitMs,
    holderHint: `no other notebook or task is saving to ${dir}`,
  });
}
