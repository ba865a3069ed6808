/**
 * What an interrupted `deno task reproduce` already finished, so the next one resumes there.
 *
 * The record lives in `data/cache/reproduce.json`. Each executed notebook is recorded with a hash
 * of its code cells and of the library's source ({@linkcode sourceHash}); a later run skips a
 * notebook only when that hash is unchanged. A run that finishes every notebook deletes the
 * record, so the next `task reproduce` runs everything again.
 *
 * @module
 */

import { mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { REPO_ROOT } from "../env.ts";
import { writeFileAtomic } from "../figures/atomic.ts";
import { sha256Hex } from "../train/hash.ts";

/** Default place of the record. */
export const RESUME_FILE: string = join(REPO_ROOT, "data", "cache", "reproduce.json");

/** One finished notebook. */
export interface FinishedNotebook {
  /** {@linkcode notebookInputsHash} when it ran. */
  inputs: string;
  /** ISO time it finished. */
  finished: string;
  seconds: number;
}

/** The record of an unfinished `task reproduce`. */
export interface ResumeRecord {
  version: 1;
  /** ISO time the interrupted run started. */
  started: string;
  /** Notebook path (relative to the repository) to what finished. */
  done: Record<string, FinishedNotebook>;
  /**
   * The git state and code hash recorded when the interrupted run started, before it saved anything.
   * A resumed run at the same commit and code hash reuses it: the tree is dirty then only because the
   * interrupted run saved notebooks in place.
   */
  provenance?: { commit: string | null; dirty: boolean | null; codeHash: string | null };
}

/**
 * A hash of what a notebook's outputs depend on: its code cells' source and `libraryHash`
 * (saved outputs do not count, so a notebook executed in place keeps its hash).
 *
 * @example
 * ```ts
 * import { notebookInputsHash } from "./resume.ts";
 * const nb = (source: string, output: string) =>
 *   JSON.stringify({ cells: [{ cell_type: "code", source, outputs: [{ text: output }] }] });
 * const a = await notebookInputsHash(nb("1 + 1", "2"), "lib0");
 * console.log(a === await notebookInputsHash(nb("1 + 1", "other output"), "lib0")); // true
 * console.log(a === await notebookInputsHash(nb("1 + 2", "2"), "lib0")); // false
 * console.log(a === await notebookInputsHash(nb("1 + 1", "2"), "lib1")); // false
 * ```
 */
export function notebookInputsHash(notebookJson: string, libraryHash: string): Promise<string> {
  const nb = JSON.parse(notebookJson) as { cells?: { cell_type?: string; source?: string | string[] }[] };
  if (!Array.isArray(nb.cells)) throw new TypeError(`notebookInputsHash: not a notebook: it has no "cells" list`);
  const code = nb.cells
    .filter((c) => c.cell_type === "code")
    .map((c) => (Array.isArray(c.source) ? c.source.join("") : c.source ?? ""));
  return sha256Hex(JSON.stringify({ library: libraryHash, code }));
}

/**
 * Reads the record; null when there is none. A record that cannot be read is treated as none
 * (the run then starts over), with a note through `log`.
 *
 * @example
 * ```ts
 * import { readResumeRecord } from "./resume.ts";
 * console.log(readResumeRecord("/nonexistent/reproduce.json")); // null
 * ```
 */
export function readResumeRecord(
  path: string = RESUME_FILE,
  log: (line: string) => void = console.log,
): ResumeRecord | null {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") return null;
    throw err;
  }
  try {
    const record = JSON.parse(text);
    if (record?.version === 1 && typeof record.done === "object" && record.done !== null) return record;
  } catch { /* reported below */ }
  log(`reproduce: ignoring an unreadable resume record at ${path}; running every notebook`);
  return null;
}

/**
 * Writes the record atomically, creating its folder.
 *
 * @example
 * ```ts
 * import { readResumeRecord, writeResumeRecord } from "./resume.ts";
 * const path = `${await Deno.makeTempDir()}/cache/reproduce.json`;
 * await writeResumeRecord({ version: 1, started: "2026-11-30T00:00:00Z", done: {} }, path);
 * console.log(readResumeRecord(path)?.started); // 2026-11-30T00:00:00Z
 * ```
 */
export async function writeResumeRecord(record: ResumeRecord, path: string = RESUME_FILE): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  await writeFileAtomic(path, JSON.stringify(record, null, 2) + "\n");
}
