/**
 * `saveClaims` and `saveTable`: what a notebook measured against what the
 * paper says, saved next to its figures for `deno task report`.
 *
 * - `saveClaims(name, claims, { run })` writes `<name>.json`: an array of
 *   claims as the notebook gave them, and records a manifest entry of kind
 *   `"claims"`. A claim reads one of three outcomes, with the rule that decided
 *   it: `{ id, claim, paper, measured, outcome, rule, reason?, interval?,
 *   settle?, evidence?, note? }` (spread `verdict(...)` from `lib/stats` into it).
 *   The legacy format `{ id, claim, paper, measured, reproduced, note? }` is still
 *   accepted; a claim may not mix the two. Readers go through
 *   {@linkcode normalizeClaims}, which maps legacy claims onto the three outcomes.
 * - `saveTable(name, rows, { run, caption })` writes `<name>.csv` and records
 *   a manifest entry of kind `"table"`.
 *
 * Both check everything first (arguments, config, the folder, a readable
 * manifest), then save the file and its manifest entry together the way
 * `saveFigure` does, recording config, seed, backend, commit, dirty, code hash
 * and date.
 *
 * @module
 */

import { join } from "node:path";
import { ensureFiguresDir, REPO_ROOT, scale as envScale } from "../env.ts";
import { columnsOf, toCsv } from "./csv.ts";
import type { Row } from "./csv.ts";
import { OUTCOMES } from "../stats/verdict.ts";
import type { Outcome, Reason, VerdictInterval } from "../stats/verdict.ts";
import { JUPYTER_DISPLAY } from "./display.ts";
import type { Displayable } from "./display.ts";
import { checkCaption, checkConfig, checkSeed, gitState, readManifest, recordFigure } from "./manifest.ts";
import type { Config, EntryKind, ManifestEntry, Run, Seed } from "./manifest.ts";
import { FIGURE_NAME } from "./save.ts";
import { table } from "./table.ts";
import type { Table } from "./table.ts";
import { describeValue } from "../_options.ts";

/** The text every claim carries, in either format. */
export interface ClaimText {
  /** Short identifier, unique within the notebook, e.g. `"softmax_bound"`. */
  id: string;
  /** What the paper says, in a sentence. */
  claim: string;
  /** The paper's number or statement. */
  paper: string;
  /** The measured number, formatted. */
  measured: string;
  /** Anything a reader needs to judge the comparison. */
  note?: string;
}

/**
 * What would settle an inconclusive claim: the model, the training tokens, the
 * seeds and the compute it takes (at least one field).
 */
export interface Settle {
  /** The model it needs, e.g. `"6 layers, d = 512 (≈25M parameters)"`. */
  model?: string;
  /** The training tokens, e.g. `"300M"`. */
  tokens?: string;
  /** Seeds per arm (a positive integer). */
  seeds?: number;
  /** The FLOPs it takes (6·N·D for training), a positive number. */
  flops?: number;
  /** Anything else, e.g. `"batched generation on a GPU"`. */
  note?: string;
}

/**
 * A claim decided by a stated rule, in three outcomes (the format of
 * `lib/stats`' `verdict`, `inconclusiveBecause` and `exactVerdict`: spread one
 * into the claim, `{ id, claim, paper, measured, ...verdict(interval, rule) }`).
 */
export interface OutcomeClaim extends ClaimText {
  /** `"reproduced"`, `"not reproduced"` or `"inconclusive"`. */
  outcome: Outcome;
  /**
   * Why: required when inconclusive (`"within noise"`, `"underpowered"`,
   * `"not comparable"`, `"by construction"` or a short phrase); optional when not
   * reproduced (`"opposite effect"`, `"confident absence"`, …); never when reproduced.
   */
  reason?: Reason;
  /** The rule that decided it, as a sentence with its numbers. */
  rule: string;
  /** The interval it was decided on, when there was one. */
  interval?: VerdictInterval;
  /** For an inconclusive claim: what would settle it. */
  settle?: Settle;
  /**
   * `false` for a check that holds by construction or by algebra: it is shown,
   * but not counted as evidence. Leave it out for every other claim.
   */
  evidence?: false;
}

/**
 * A claim in the first format, `reproduced: true | false | null`, which the
 * notebooks still write. Readers normalise it ({@linkcode normalizeClaims}):
 * `true` is reproduced, `false` not reproduced, `null` inconclusive ("not comparable"),
 * each with the rule {@linkcode LEGACY_RULE}.
 */
export interface LegacyClaim extends ClaimText {
  /** Whether the measurement agrees with the paper; `null` when they cannot be compared. */
  reproduced: boolean | null;
}

/** One statement of the paper set against what a notebook measured, in either format (never both). */
export type Claim = OutcomeClaim | LegacyClaim;

/** A claim as readers see it: every claim in the three-outcome form, whichever format it was saved in. */
export interface NormalizedClaim extends ClaimText {
  outcome: Outcome;
  /** Why (absent when reproduced; "not comparable" for a legacy `reproduced: null`). */
  reason?: Reason;
  /** The rule that decided it; {@linkcode LEGACY_RULE} for a legacy claim. */
  rule: string;
  interval?: VerdictInterval;
  settle?: Settle;
  /** Whether the claim counts as evidence (false for checks that hold by construction). */
  evidence: boolean;
  /** Whether the claim was saved in the legacy `reproduced` format. */
  legacy: boolean;
}

/** The rule a legacy claim (`reproduced: true | false | null`) is read with. */
export const LEGACY_RULE = "legacy: the notebook's own check (no interval)";

/**
 * ✓, ✗ or ? for an outcome.
 *
 * @example
 * ```ts
 * import { outcomeMark } from "./claims.ts";
 * console.log(outcomeMark("reproduced"), outcomeMark("not reproduced"), outcomeMark("inconclusive")); // ✓ ✗ ?
 * ```
 */
export function outcomeMark(outcome: Outcome): string {
  if (outcome === "reproduced") return "✓";
  if (outcome === "not reproduced") return "✗";
  if (outcome === "inconclusive") return "?";
  throw new RangeError(
    `outcomeMark: outcome must be one of ${OUTCOMES.map((o) => `"${o}"`).join(", ")}, got ${
      JSON.stringify(outcome) ?? String(outcome)
    }`,
  );
}
/** Options for {@linkcode saveClaims} and {@linkcode saveTable}; all optional. */
export interface SaveResultOptions {
  /** From `startRun`: supplies notebook, config, seed and the compute time. */
  run?: Run;
  /** Notebook name for the manifest; overrides `run.notebook`. */
  notebook?: string;
  /** Settings the result depends on; overrides `run.config`. Default `{}`. */
  config?: Config;
  /** Random seed; overrides `run.seed`. Default `null`. */
  seed?: Seed;
  /** Backend name for the manifest. Default: the TensorFlow.js backend in use, or `null`. */
  backend?: string;
  /** What the table shows (tables only; claims carry their own text). */
  caption?: string;
  /** Output folder. Default: `figuresDir()` (`ATTNLAB_FIGURES_DIR`, else `figures/`, or a temporary folder in quick mode). */
  outDir?: string;
}

/** What {@linkcode saveClaims} and {@linkcode saveTable} return; displays as a table in Jupyter. */
export interface SavedResult extends Displayable {
  name: string;
  /** Absolute path of the file written. */
  path: string;
  /** The manifest entry recorded. */
  entry: ManifestEntry;
}

const TEXT_KEYS = ["id", "claim", "paper", "measured", "note"];
const OUTCOME_KEYS = ["outcome", "reason", "rule", "interval", "settle", "evidence"];
const CLAIM_KEYS = [...TEXT_KEYS, "reproduced", ...OUTCOME_KEYS];
const INTERVAL_KEYS = ["estimate", "low", "high", "level", "n", "method"];
const SETTLE_KEYS = ["model", "tokens", "seeds", "flops", "note"];
const CLAIM_ID = /^[a-z0-9][a-z0-9_-]*$/;
const SHAPE = "{ id, claim, paper, measured, outcome, rule, reason?, interval?, settle?, evidence?, note? } " +
  "(or, in the legacy format, { id, claim, paper, measured, reproduced, note? })";

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function nonEmpty(value: unknown): boolean {
  return typeof value === "string" && value.trim() !== "";
}

function checkInterval(value: unknown, at: string): void {
  if (!isObject(value)) {
    throw new TypeError(
      `${at} must be an interval { ${INTERVAL_KEYS.join(", ")} } as verdict() returns, got ${describeValue(value)}`,
    );
  }
  for (const key of Object.keys(value)) {
    if (!INTERVAL_KEYS.includes(key)) {
      throw new TypeError(
        `${at} has unknown field "${key}"; expected ${INTERVAL_KEYS.join(", ")} (verdict() writes them)`,
      );
    }
  }
  const { estimate, low, high, level, n, method } = value;
  if (typeof estimate !== "number" || !Number.isFinite(estimate)) {
    throw new TypeError(`${at}.estimate must be a finite number, got ${describeValue(estimate)}`);
  }
  for (const [key, bound] of [["low", low], ["high", high]] as const) {
    if (bound !== null && (typeof bound !== "number" || !Number.isFinite(bound))) {
      throw new TypeError(
        `${at}.${key} must be a finite number, or null when it could not be computed, got ${describeValue(bound)}`,
      );
    }
  }
  if (typeof low === "number" && typeof high === "number" && low > high) {
    throw new RangeError(`${at} must have low ≤ high, got [${low}, ${high}]`);
  }
  if (typeof level !== "number" || !(level > 0 && level <= 1)) {
    throw new RangeError(
      `${at}.level must be a confidence level in (0, 1] (1 for an exact value), got ${describeValue(level)}`,
    );
  }
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1) {
    throw new RangeError(`${at}.n must be the number of values behind it, an integer ≥ 1, got ${describeValue(n)}`);
  }
  if (!nonEmpty(method)) {
    throw new TypeError(`${at}.method must be a non-empty string such as "t", got ${describeValue(method)}`);
  }
}

function checkSettle(value: unknown, at: string): void {
  if (!isObject(value)) {
    throw new TypeError(
      `${at} must be an object { ${SETTLE_KEYS.join(", ")} } (any of them), got ${describeValue(value)}`,
    );
  }
  const keys = Object.keys(value);
  for (const key of keys) {
    if (!SETTLE_KEYS.includes(key)) {
      throw new TypeError(`${at} has unknown field "${key}"; expected ${SETTLE_KEYS.join(", ")}`);
    }
  }
  if (keys.length === 0) {
    throw new TypeError(
      `${at} is empty; say what would settle the claim with ${SETTLE_KEYS.join(", ")}, or leave it out`,
    );
  }
  for (const key of ["model", "tokens", "note"]) {
    if (key in value && !nonEmpty(value[key])) {
      throw new TypeError(`${at}.${key} must be a non-empty string, got ${describeValue(value[key])}`);
    }
  }
  if ("seeds" in value && (typeof value.seeds !== "number" || !Number.isInteger(value.seeds) || value.seeds < 1)) {
    throw new RangeError(`${at}.seeds must be a positive integer (seeds per arm), got ${describeValue(value.seeds)}`);
  }
  if ("flops" in value && (typeof value.flops !== "number" || !Number.isFinite(value.flops) || value.flops <= 0)) {
    throw new RangeError(
      `${at}.flops must be a positive finite number (e.g. 4.5e16), got ${describeValue(value.flops)}`,
    );
  }
}

// The fields of the three-outcome format; `at` is e.g. `saveClaims: claims[2]`.
function checkOutcomeFields(claim: Record<string, unknown>, at: string): void {
  const { outcome, reason, rule } = claim;
  if (typeof outcome !== "string") {
    throw new TypeError(
      `${at}.outcome must be one of ${OUTCOMES.map((o) => `"${o}"`).join(", ")}, got ${describeValue(outcome)}`,
    );
  }
  if (!OUTCOMES.includes(outcome as Outcome)) {
    throw new RangeError(
      `${at}.outcome must be one of ${OUTCOMES.map((o) => `"${o}"`).join(", ")}, got ${describeValue(outcome)}`,
    );
  }
  if (!nonEmpty(rule)) {
    throw new TypeError(
      `${at}.rule must be a non-empty sentence saying how the claim was decided (verdict() writes one), got ${
        describeValue(rule)
      }`,
    );
  }
  if (reason !== undefined && !nonEmpty(reason)) {
    throw new TypeError(`${at}.reason must be a non-empty string when given, got ${describeValue(reason)}`);
  }
  if (outcome === "inconclusive" && reason === undefined) {
    throw new TypeError(
      `${at} is inconclusive without a reason; set reason to "within noise", "underpowered", "not comparable", ` +
        `"by construction" or a short phrase`,
    );
  }
  if (outcome === "reproduced" && reason !== undefined) {
    throw new RangeError(
      `${at} is reproduced but gives reason ${describeValue(reason)}; a reason says why a claim is not reproduced or ` +
        "inconclusive: remove it, or change the outcome",
    );
  }
  if (claim.interval !== undefined) checkInterval(claim.interval, `${at}.interval`);
  if (claim.settle !== undefined) {
    if (outcome !== "inconclusive") {
      throw new RangeError(
        `${at}.settle says what would settle an inconclusive claim, but this claim is ${
          describeValue(outcome)
        }; remove it`,
      );
    }
    checkSettle(claim.settle, `${at}.settle`);
  }
  if (claim.evidence !== undefined && claim.evidence !== false) {
    throw new TypeError(
      `${at}.evidence may only be false (a check that holds by construction, not counted as evidence); ` +
        `leave it out for a claim that counts, got ${describeValue(claim.evidence)}`,
    );
  }
}
function checkName(name: unknown, where: string): string {
  if (typeof name !== "string" || !FIGURE_NAME.test(name)) {
    throw new Error(
      `${where}: name must match ${FIGURE_NAME} (lowercase letters, digits, "_" and "-"), ` +
        `got ${JSON.stringify(name)}; use for example "01_claims"`,
    );
  }
  return name;
}

function checkOptions(options: unknown, where: string, allowCaption: boolean): SaveResultOptions {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new Error(`${where}: options must be an object like { run }, got ${String(options)}`);
  }
  const keys = ["run", "notebook", "config", "seed", "backend", "outDir", ...(allowCaption ? ["caption"] : [])];
  for (const key of Object.keys(options)) {
    if (!keys.includes(key)) throw new Error(`${where}: unknown option "${key}"; expected one of ${keys.join(", ")}`);
  }
  const o = options as SaveResultOptions;
  for (const key of ["notebook", "backend"] as const) {
    if (o[key] !== undefined && typeof o[key] !== "string") {
      throw new Error(`${where}: options.${key} must be a string, got ${typeof o[key]}`);
    }
  }
  if (o.outDir !== undefined && (typeof o.outDir !== "string" || o.outDir === "")) {
    throw new Error(`${where}: options.outDir must be a non-empty folder path, got ${String(o.outDir)}`);
  }
  if (o.run !== undefined && typeof o.run?.elapsedMs !== "function") {
    throw new Error(`${where}: options.run must be the value returned by startRun()`);
  }
  checkCaption(o.caption, where);
  return o;
}

/**
 * Checks a list of claims and returns it unchanged; the errors name the claim
 * and field at fault (`TypeError` for a missing or mistyped field, `RangeError`
 * for a value out of range). Each claim is in the three-outcome format (`outcome`,
 * `rule`, and `reason` when inconclusive) or in the legacy one (`reproduced`),
 * never both. Read claims through {@linkcode normalizeClaims}.
 *
 * @example
 * ```ts
 * import { checkClaims } from "./claims.ts";
 * const claims = checkClaims([
 *   { id: "bound", claim: "softmax's |∂p/∂s| ≤ 1/4", paper: "0.25", measured: "0.25", outcome: "reproduced",
 *     rule: "max |∂p/∂s| ≤ 1/4 + 1e-6 (float32 rounding)" },
 *   { id: "old", claim: "c", paper: "1", measured: "1.0", reproduced: true },
 * ]);
 * console.log(claims.length); // 2
 * try {
 *   checkClaims([{ id: "x", claim: "c", paper: "1", measured: "2", reproduced: false, outcome: "not reproduced", rule: "r" }]);
 * } catch (err) {
 *   console.log((err as Error).message.startsWith("saveClaims: claims[0] mixes")); // true
 * }
 * ```
 */
export function checkClaims(claims: unknown, where = "saveClaims"): Claim[] {
  if (!Array.isArray(claims)) {
    throw new TypeError(`${where}: claims must be an array of ${SHAPE}, got ${describeValue(claims)}`);
  }
  const seen = new Set<string>();
  claims.forEach((c, i) => {
    const at = `${where}: claims[${i}]`;
    if (!isObject(c)) throw new TypeError(`${at} must be an object ${SHAPE}, got ${describeValue(c)}`);
    for (const key of Object.keys(c)) {
      if (!CLAIM_KEYS.includes(key)) {
        throw new TypeError(`${at} has unknown field "${key}"; expected ${CLAIM_KEYS.join(", ")}`);
      }
    }
    if (typeof c.id !== "string" || !CLAIM_ID.test(c.id)) {
      throw new TypeError(`${at}.id must match ${CLAIM_ID}, got ${describeValue(c.id)}`);
    }
    if (seen.has(c.id)) throw new RangeError(`${at}.id "${c.id}" is used twice; ids must be unique`);
    seen.add(c.id);
    for (const key of ["claim", "paper", "measured"]) {
      if (!nonEmpty(c[key])) {
        throw new TypeError(
          `${at}.${key} must be a non-empty string (format numbers first), got ${describeValue(c[key])}`,
        );
      }
    }
    if (c.note !== undefined && typeof c.note !== "string") {
      throw new TypeError(`${at}.note must be a string when given, got ${describeValue(c.note)}`);
    }
    const modern = OUTCOME_KEYS.filter((key) => key in c);
    if ("reproduced" in c) {
      if (modern.length > 0) {
        throw new TypeError(
          `${at} mixes the legacy field "reproduced" with ${modern.map((k) => `"${k}"`).join(", ")}; a claim is ` +
            `either { outcome, rule, reason?, ... } or, in the legacy format, { reproduced }: drop "reproduced"`,
        );
      }
      if (!(c.reproduced === true || c.reproduced === false || c.reproduced === null)) {
        throw new TypeError(
          `${at}.reproduced must be true, false or null (not comparable), got ${describeValue(c.reproduced)}`,
        );
      }
    } else if (modern.length === 0) {
      throw new TypeError(
        `${at} has no outcome: give outcome ("reproduced", "not reproduced" or "inconclusive") and rule, e.g. ` +
          "by spreading verdict(interval, rule) from lib/stats into the claim",
      );
    } else {
      checkOutcomeFields(c, at);
    }
  });
  return claims as Claim[];
}

/**
 * Checks claims ({@linkcode checkClaims}) and returns them in the three-outcome
 * form, whichever format they were saved in. A legacy claim maps `reproduced: true`
 * to "reproduced", `false` to "not reproduced" and `null` to "inconclusive" with
 * reason "not comparable", each with the rule {@linkcode LEGACY_RULE}; `evidence`
 * is `false` only for claims that say so.
 *
 * @example
 * ```ts
 * import { normalizeClaims } from "./claims.ts";
 * const [old, fixed] = normalizeClaims([
 *   { id: "speed", claim: "4,460× faster", paper: "4460", measured: "908×", reproduced: null },
 *   { id: "state", claim: "constant state", paper: "O(1)", measured: "4352 B", outcome: "inconclusive",
 *     reason: "by construction", rule: "the state size is fixed by the code", evidence: false },
 * ]);
 * console.log(old.outcome, old.reason, old.legacy); // inconclusive not comparable true
 * console.log(fixed.evidence, fixed.legacy); // false false
 * ```
 */
export function normalizeClaims(claims: unknown, where = "normalizeClaims"): NormalizedClaim[] {
  return checkClaims(claims, where).map((c): NormalizedClaim => {
    const text: ClaimText = { id: c.id, claim: c.claim, paper: c.paper, measured: c.measured };
    if (c.note !== undefined) text.note = c.note;
    if ("reproduced" in c) {
      const outcome: Outcome = c.reproduced === null ? "inconclusive" : c.reproduced ? "reproduced" : "not reproduced";
      return {
        ...text,
        outcome,
        ...(c.reproduced === null ? { reason: "not comparable" } : {}),
        rule: LEGACY_RULE,
        evidence: true,
        legacy: true,
      };
    }
    return {
      ...text,
      outcome: c.outcome,
      ...(c.reason !== undefined ? { reason: c.reason } : {}),
      rule: c.rule,
      ...(c.interval !== undefined ? { interval: c.interval } : {}),
      ...(c.settle !== undefined ? { settle: c.settle } : {}),
      evidence: c.evidence !== false,
      legacy: false,
    };
  });
}

/**
 * The table a claims file displays as: outcome (✓ / ✗ / ?), claim, paper,
 * measured, reason (with "not counted as evidence" for checks that hold by
 * construction), rule and note.
 *
 * @example
 * ```ts
 * import { claimsTable, JUPYTER_DISPLAY } from "./mod.ts";
 * const shown = claimsTable([{ id: "a", claim: "c", paper: "1", measured: "2", reproduced: null }]);
 * console.log(shown[JUPYTER_DISPLAY]()["text/markdown"].split("\n")[2].startsWith("| ? | c | 1 | 2 | not comparable |")); // true
 * ```
 */
export function claimsTable(claims: readonly Claim[]): Table {
  return table(
    normalizeClaims(claims, "claimsTable").map((c) => ({
      outcome: outcomeMark(c.outcome),
      claim: c.claim,
      paper: c.paper,
      measured: c.measured,
      reason: [c.reason, c.evidence ? undefined : "not counted as evidence"].filter((x) => x !== undefined).join("; "),
      rule: c.rule,
      note: c.note ?? "",
    })),
  );
}
async function currentBackend(): Promise<string | null> {
  const { backendName } = await import("../backend.ts");
  const name = backendName();
  return typeof name === "string" && name !== "" ? name : null;
}

// Checks what the entry needs, the folder and the manifest, before anything is written; returns the folder.
async function prepare(options: SaveResultOptions, kind: EntryKind): Promise<string> {
  checkConfig(options.config ?? options.run?.config ?? {}, `save ${kind}`);
  checkSeed(options.seed !== undefined ? options.seed : options.run?.seed ?? null, `save ${kind}`);
  const dir = ensureFiguresDir(options.outDir, { label: `save ${kind}: options.outDir` });
  await readManifest(dir);
  return dir;
}

async function record(
  name: string,
  file: readonly [string, string],
  kind: EntryKind,
  options: SaveResultOptions,
  dir: string,
): Promise<ManifestEntry> {
  const { run } = options;
  const notebook = options.notebook ?? run?.notebook;
  const { commit, dirty, codeHash } = await gitState(REPO_ROOT, dir);
  const entry: ManifestEntry = {
    name,
    files: [file[0]],
    ...(notebook !== undefined ? { notebook } : {}),
    config: checkConfig(options.config ?? run?.config ?? {}, `save ${kind}`),
    seed: checkSeed(options.seed !== undefined ? options.seed : run?.seed ?? null, `save ${kind}`),
    backend: options.backend ?? await currentBackend(),
    commit,
    dirty,
    codeHash,
    date: new Date().toISOString(),
    durationMs: run?.elapsedMs() ?? null,
    ...(options.caption !== undefined ? { caption: options.caption } : {}),
    kind,
    scale: run?.scale ?? envScale(),
  };
  await recordFigure(dir, entry, { files: [file] });
  return entry;
}

/**
 * Saves a notebook's claims, each compared with what it measured, as
 * `<name>.json` (the claims as given), together with a manifest entry of kind
 * `"claims"`. Build every `measured` string and every outcome from measured
 * values: spread `verdict(interval, rule)`, `exactVerdict` or `inconclusiveBecause`
 * from `lib/stats` into each claim. Legacy claims (`reproduced: true | false | null`)
 * are still accepted. The result displays as a table with ✓ / ✗ / ?, the reason
 * and the rule ({@linkcode claimsTable}).
 *
 * @example
 * ```ts
 * import { exactVerdict } from "../stats/verdict.ts";
 * import { saveClaims } from "./claims.ts";
 * const measured = 0.25000003;
 * const saved = await saveClaims("demo_claims", [{
 *   id: "softmax_bound",
 *   claim: "Softmax attention's |∂p/∂s| is at most 1/4",
 *   paper: "≤ 0.25",
 *   measured: measured.toFixed(8),
 *   ...exactVerdict(measured <= 0.25 + 1e-6, "max |∂p/∂s| ≤ 1/4 + 1e-6 (float32 rounding)"),
 * }], { notebook: "demo", outDir: await Deno.makeTempDir() });
 * console.log(saved.entry.kind, saved.entry.files); // claims ["demo_claims.json"]
 * ```
 */
export async function saveClaims(
  name: string,
  claims: readonly Claim[],
  options: SaveResultOptions = {},
): Promise<SavedResult> {
  checkName(name, "saveClaims");
  const checked = checkClaims(claims);
  const o = checkOptions(options, "saveClaims", false);
  const dir = await prepare(o, "claims");
  const path = join(dir, `${name}.json`);
  const entry = await record(name, [`${name}.json`, JSON.stringify(checked, null, 2) + "\n"], "claims", o, dir);
  const shown = claimsTable(checked);
  return { name, path, entry, [JUPYTER_DISPLAY]: () => shown[JUPYTER_DISPLAY]() };
}

/**
 * Saves a table (flat rows, e.g. paper versus measured) as `<name>.csv`,
 * together with a manifest entry of kind `"table"` with its caption. The
 * result displays as the table.
 *
 * @example
 * ```ts
 * import { saveTable } from "./claims.ts";
 * const rows: { model: string; paper: number; measured: number }[] = [{ model: "vanilla", paper: 4.2, measured: 4.31 }];
 * const saved = await saveTable("demo_table", rows, { caption: "Perplexity", outDir: await Deno.makeTempDir() });
 * console.log(saved.entry.kind, saved.entry.caption); // table Perplexity
 * ```
 */
export async function saveTable(
  name: string,
  rows: readonly Row[],
  options: SaveResultOptions = {},
): Promise<SavedResult> {
  checkName(name, "saveTable");
  columnsOf(rows, "saveTable: rows");
  if (rows.length === 0) throw new Error("saveTable: rows is empty; pass at least one row object");
  const o = checkOptions(options, "saveTable", true);
  const dir = await prepare(o, "table");
  const path = join(dir, `${name}.csv`);
  const entry = await record(name, [`${name}.csv`, toCsv(rows)], "table", o, dir);
  const shown = table(rows);
  return { name, path, entry, [JUPYTER_DISPLAY]: () => shown[JUPYTER_DISPLAY]() };
}
