/**
 * Which claims changed their outcome since the last committed report: the
 * claims files of a figures folder set against the same files at git `HEAD`
 * (`git show HEAD:./<file>` run in the committed folder), both read in the
 * three-outcome form (legacy claims normalised on both sides). Without git, a
 * repository or a commit, the comparison says why it was not made instead of
 * failing.
 *
 * @module
 */

import { resolve } from "node:path";
import { normalizeClaims } from "../figures/claims.ts";
import type { NormalizedClaim } from "../figures/claims.ts";
import { entryKind, entryScale, MANIFEST_FILE } from "../figures/manifest.ts";
import type { Scale } from "../env.ts";
import type { Outcome } from "../stats/verdict.ts";

/** One claims file as it is now: its file name inside the figures folder, its notebook and its claims. */
export interface ClaimsFile {
  /** File name relative to the figures folder, e.g. `"05_claims.json"`. */
  file: string;
  notebook: string | null;
  claims: readonly NormalizedClaim[];
  /** The scale the claims were made at (the manifest entry's); default "full". */
  scale?: Scale;
}

/** One claim whose outcome differs from the committed one. */
export interface OutcomeChange {
  /** The claims file, relative to the figures folder. */
  file: string;
  /** The notebook that saves it (from the current manifest, else the committed one), or `null`. */
  notebook: string | null;
  id: string;
  /** The claim's text (the current one; the committed one for a claim that is gone). */
  claim: string;
  /** The committed outcome; `null` for a claim that is new since. */
  before: Outcome | null;
  beforeReason?: string;
  /** The outcome now; `null` for a claim that is gone. */
  after: Outcome | null;
  afterReason?: string;
  /**
   * Present when the committed claims were made at another scale than the current ones: then the outcomes are of
   * other models, and the change is not a rerun of the same experiment.
   */
  scales?: { before: Scale; after: Scale };
}

/** What {@linkcode changesSinceCommit} found. */
export interface ChangesSinceCommit {
  /** Whether the committed claims could be read (git, a repository and a commit were there). */
  compared: boolean;
  /** The commit compared with (`HEAD`), when there is one. */
  commit: string | null;
  /** One sentence: what was compared with, or why nothing was. */
  note: string;
  /** The claims whose outcome changed, new claims and claims that are gone, by file and id. */
  changes: OutcomeChange[];
  /** Committed claims files that could not be read, each with why (they are left out of the comparison). */
  problems: string[];
}

type GitResult = { ok: true; text: string } | { ok: false; missing: boolean; stderr: string };

async function git(args: string[], cwd: string): Promise<GitResult> {
  try {
    const out = await new Deno.Command("git", { args, cwd, stdout: "piped", stderr: "piped", stdin: "null" }).output();
    const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    return out.success
      ? { ok: true, text: decode(out.stdout) }
      : { ok: false, missing: false, stderr: decode(out.stderr) };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { ok: false, missing: true, stderr: "git is not installed" };
    throw err;
  }
}

// The claims files listed by a manifest (a parsed manifest.json), with their notebooks and scales.
function claimsFilesOf(figures: unknown): Map<string, { notebook: string | null; scale: Scale }> {
  const files = new Map<string, { notebook: string | null; scale: Scale }>();
  if (figures === null || typeof figures !== "object") return files;
  for (const entry of Object.values(figures as Record<string, unknown>)) {
    if (entry === null || typeof entry !== "object") continue;
    const e = entry as { kind?: "claims"; files?: unknown; notebook?: unknown; scale?: Scale };
    if (entryKind(e) !== "claims" || !Array.isArray(e.files)) continue;
    for (const file of e.files) {
      if (typeof file === "string" && file.endsWith(".json")) {
        files.set(file, {
          notebook: typeof e.notebook === "string" ? e.notebook : null,
          scale: entryScale({ scale: e.scale }),
        });
      }
    }
  }
  return files;
}

/** Options of {@linkcode changesSinceCommit}. */
export interface ChangesOptions {
  /** The folder, inside a git work tree, whose claims files at `HEAD` are the last committed report. */
  baseline: string;
}

/**
 * Compares claims files (as they are now) with the same files at git `HEAD` in
 * `options.baseline` and lists every claim whose outcome differs, by file and
 * id: changed outcomes, claims that are new since (`before: null`) and claims
 * that are gone (`after: null`; files the committed `manifest.json` listed are
 * included). Outcomes are compared in the three-outcome form, legacy claims
 * normalised on both sides, so a legacy `reproduced: null` equals an
 * inconclusive claim. No git, a folder outside a repository, or a repository
 * without a commit is not an error: `compared` is false and `note` says why. A
 * committed claims file that cannot be read is listed in `problems`.
 *
 * @example
 * ```ts
 * import { changesSinceCommit } from "./changes.ts";
 * const outside = await changesSinceCommit([], { baseline: await Deno.makeTempDir() });
 * console.log(outside.compared, outside.note.includes("not inside a git repository")); // false true
 * ```
 */
export async function changesSinceCommit(
  current: readonly ClaimsFile[],
  options: ChangesOptions,
): Promise<ChangesSinceCommit> {
  if (!Array.isArray(current)) {
    throw new TypeError(
      `changesSinceCommit: current must be an array of { file, notebook, claims }, got ${typeof current}`,
    );
  }
  if (
    options === null || typeof options !== "object" || typeof options.baseline !== "string" || options.baseline === ""
  ) {
    throw new TypeError(
      'changesSinceCommit: options.baseline must be the committed figures folder, e.g. { baseline: "figures" }',
    );
  }
  const baseline = resolve(options.baseline);
  const none = (note: string): ChangesSinceCommit => ({
    compared: false,
    commit: null,
    note,
    changes: [],
    problems: [],
  });
  const skip = "so the claims whose outcome changed since the last committed report are not listed";
  try {
    if (!(await Deno.stat(baseline)).isDirectory) return none(`${baseline} is not a folder, ${skip}`);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return none(`${baseline} does not exist, ${skip}`);
    throw err;
  }
  const inside = await git(["rev-parse", "--is-inside-work-tree"], baseline);
  if (!inside.ok) {
    return none(
      inside.missing ? `git is not installed, ${skip}` : `${baseline} is not inside a git repository, ${skip}`,
    );
  }
  const head = await git(["rev-parse", "--verify", "--quiet", "HEAD"], baseline);
  if (!head.ok) return none(`the repository holding ${baseline} has no commit yet, ${skip}`);
  const commit = head.text.trim();
  const short = commit.slice(0, 10);

  const problems: string[] = [];
  // The committed manifest names the files that may since have gone.
  const committedFiles = new Map<string, { notebook: string | null; scale: Scale }>();
  const committedManifest = await git(["show", `HEAD:./${MANIFEST_FILE}`], baseline);
  if (committedManifest.ok) {
    try {
      for (const [f, nb] of claimsFilesOf(JSON.parse(committedManifest.text)?.figures)) committedFiles.set(f, nb);
    } catch (err) {
      problems.push(`${MANIFEST_FILE} at ${short} is not valid JSON (${(err as Error).message})`);
    }
  }
  const files = new Map<string, { notebook: string | null; now: readonly NormalizedClaim[] | null; scale: Scale }>();
  for (const c of current) files.set(c.file, { notebook: c.notebook, now: c.claims, scale: c.scale ?? "full" });
  for (const [file, { notebook, scale }] of committedFiles) {
    if (!files.has(file)) files.set(file, { notebook, now: null, scale });
  }

  const changes: OutcomeChange[] = [];
  for (const [file, { notebook, now, scale }] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
    // A committed file without a manifest entry was, like every result then, full scale.
    const committedScale = committedFiles.get(file)?.scale ?? "full";
    const shown = await git(["show", `HEAD:./${file}`], baseline);
    let before: NormalizedClaim[] = [];
    if (shown.ok) {
      try {
        before = normalizeClaims(JSON.parse(shown.text), `${file} at ${short}`);
      } catch (err) {
        problems.push(`${file} at ${short} cannot be read (${(err as Error).message}); its claims are not compared`);
        continue;
      }
    }
    const was = new Map(before.map((c) => [c.id, c]));
    const is = new Map((now ?? []).map((c) => [c.id, c]));
    const ids = [...is.keys(), ...[...was.keys()].filter((id) => !is.has(id))];
    for (const id of ids) {
      const a = was.get(id), b = is.get(id);
      if (a !== undefined && b !== undefined && a.outcome === b.outcome) continue;
      changes.push({
        file,
        notebook: notebook ?? committedFiles.get(file)?.notebook ?? null,
        id,
        claim: (b ?? a)!.claim,
        before: a?.outcome ?? null,
        ...(a?.reason !== undefined ? { beforeReason: a.reason } : {}),
        after: b?.outcome ?? null,
        ...(b?.reason !== undefined ? { afterReason: b.reason } : {}),
        ...(a !== undefined && b !== undefined && committedScale !== scale
          ? { scales: { before: committedScale, after: scale } }
          : {}),
      });
    }
  }
  const note = changes.length === 0
    ? `no claim changed its outcome since commit ${short}`
    : `${changes.length} claim(s) differ from commit ${short}`;
  return { compared: true, commit, note, changes, problems };
}
