/**
 * One verdict rule for every claim: three outcomes decided by where a confidence
 * interval lies, and the rule written out in the claim.
 *
 * A {@linkcode Rule} states the claimed direction, the null value N (no effect;
 * by default the interval's own `nullValue`: 0 for differences, 1 for ratios), a
 * practical margin m ≥ 0 and the minimum number of values (seeds, rounds) minN.
 *
 * **One-sided claims** ("greater": the effect exceeds N by more than m; "less":
 * falls below N by more than m) compare the interval [low, high] with the
 * threshold T = N + m (greater) or T = N − m (less). An effect counts when the
 * interval excludes the null in the claimed direction and clears the margin,
 * i.e. lies wholly beyond T. A one-sided claim is refuted when the whole interval
 * lies on the other side of T: either on the wrong side of the null (the opposite
 * effect), or between the null and T, which is a confident absence of an effect
 * as large as the margin. (With m = 0 only the opposite effect refutes it.)
 *
 * **"two-sided"** is an equivalence claim ("comparable to", "matches"): it needs
 * m > 0 and the band [N − m, N + m]. It is reproduced when the interval lies
 * wholly inside the band, refuted when it lies wholly outside (a confident
 * difference larger than the margin).
 *
 * Checked first: fewer than minN values (default 3), or an interval that could
 * not be computed (`NaN` bounds), is inconclusive, "underpowered". An `exact`
 * interval (a closed form; `exactInterval`) needs no minimum. Boundaries are
 * strict: an interval that touches T counts as straddling it.
 *
 * | direction  | interval [low, high] (n ≥ minN)     | outcome        | reason            |
 * | ---------- | ----------------------------------- | -------------- | ----------------- |
 * | greater    | low > N + m                         | reproduced     |                   |
 * | greater    | high < N                            | not reproduced | opposite effect   |
 * | greater    | N ≤ high < N + m (m > 0)            | not reproduced | confident absence |
 * | greater    | low ≤ N + m ≤ high                  | inconclusive   | within noise      |
 * | less       | high < N − m                        | reproduced     |                   |
 * | less       | low > N                             | not reproduced | opposite effect   |
 * | less       | N − m < low ≤ N (m > 0)             | not reproduced | confident absence |
 * | less       | low ≤ N − m ≤ high                  | inconclusive   | within noise      |
 * | two-sided  | N − m < low and high < N + m        | reproduced     |                   |
 * | two-sided  | low > N + m or high < N − m         | not reproduced | confident difference |
 * | two-sided  | otherwise (straddles a band edge)   | inconclusive   | within noise      |
 * | any        | n < minN, or NaN bounds             | inconclusive   | underpowered      |
 *
 * Claims that no measurement can decide use {@linkcode inconclusiveBecause}
 * ("by construction", "not comparable"), and deterministic checks with a stated
 * rule use {@linkcode exactVerdict}, so that no notebook writes an outcome by hand.
 *
 * @module
 */

import { checkNumber, checkOptionKeys, describeValue } from "../_options.ts";
import type { Interval } from "./intervals.ts";

/** The three outcomes of a claim. */
export type Outcome = "reproduced" | "not reproduced" | "inconclusive";

/** The outcomes, in report order. */
export const OUTCOMES: readonly Outcome[] = ["reproduced", "not reproduced", "inconclusive"];

/**
 * Why a claim came out as it did (never set for "reproduced"). Inconclusive:
 * `"within noise"`, `"underpowered"`, `"not comparable"`, `"by construction"`, or
 * another short phrase. Not reproduced: `"opposite effect"`, `"confident absence"`,
 * `"confident difference"`, or another short phrase (from `exactVerdict`).
 */
export type Reason =
  | "within noise"
  | "underpowered"
  | "not comparable"
  | "by construction"
  | "opposite effect"
  | "confident absence"
  | "confident difference"
  | (string & Record<never, never>);

/** The claimed direction of an effect; `"two-sided"` means equivalence within the margin ("comparable to"). */
export type Direction = "greater" | "less" | "two-sided";

/** The rule a claim is decided by. */
export interface Rule {
  /** `"greater"`, `"less"`, or `"two-sided"` (equivalence: within ±margin of the null). */
  direction: Direction;
  /** Practical margin m ≥ 0 beyond the null, in the interval's units (a ratio threshold of 1.2 is null 1, margin 0.2). Default 0; `"two-sided"` needs m > 0. */
  margin?: number;
  /** The null value N. Default: the interval's `nullValue` (0 for differences, 1 for ratios). */
  null?: number;
  /** Minimum n (seeds, rounds) for a verdict; fewer is inconclusive, "underpowered". Default 3. */
  minN?: number;
  /** The measured quantity, for the rule's sentence, e.g. `"T2 − vanilla perplexity"`. Default `"the effect"`. */
  quantity?: string;
}

/** The interval behind a verdict, JSON-safe: bounds that could not be computed are `null`. */
export interface VerdictInterval {
  estimate: number;
  low: number | null;
  high: number | null;
  level: number;
  n: number;
  method: string;
}

/** What {@linkcode verdict}, {@linkcode inconclusiveBecause} and {@linkcode exactVerdict} return: the fields a claim records. */
export interface Verdict {
  /** The outcome. */
  outcome: Outcome;
  /** Why (absent for "reproduced"). */
  reason?: Reason;
  /** The rule that decided it, in one sentence with its numbers. */
  rule: string;
  /** The interval it was decided on, when there was one. */
  interval?: VerdictInterval;
}

const DIRECTIONS: readonly Direction[] = ["greater", "less", "two-sided"];

// Numbers in rule sentences: up to 6 significant digits, no float noise (0.1 + 0.2 → 0.3).
function num(x: number): string {
  return String(Number(x.toPrecision(6)));
}

function describeInterval(iv: Interval, quantity: string): string {
  if (iv.exact) {
    return `the exactly computed value of ${quantity}${iv.high > iv.low ? ` ± ${num((iv.high - iv.low) / 2)}` : ""}`;
  }
  return `the ${num(100 * iv.level)}% ${iv.method} interval of ${quantity}`;
}

function checkInterval(interval: unknown): Interval {
  if (interval === null || typeof interval !== "object" || Array.isArray(interval)) {
    throw new TypeError(
      `verdict: interval must be an interval object such as tInterval(...) returns, got ${describeValue(interval)}`,
    );
  }
  const iv = interval as Interval;
  for (const key of ["estimate", "low", "high", "level", "n", "nullValue"] as const) {
    if (typeof iv[key] !== "number") {
      throw new TypeError(`verdict: interval.${key} must be a number, got ${describeValue(iv[key])}`);
    }
  }
  if (typeof iv.method !== "string") {
    throw new TypeError(`verdict: interval.method must be a string, got ${describeValue(iv.method)}`);
  }
  if (Number.isNaN(iv.low) !== Number.isNaN(iv.high) || iv.low > iv.high) {
    throw new RangeError(
      `verdict: interval bounds must satisfy low ≤ high (or both be NaN), got [${iv.low}, ${iv.high}]`,
    );
  }
  return iv;
}

function checkRule(rule: unknown, iv: Interval): Required<Rule> {
  if (rule === undefined) {
    throw new TypeError(`verdict: rule must be given, e.g. { direction: "greater", margin: 0.02 }`);
  }
  const r = checkOptionKeys<Rule>("verdict", rule, ["direction", "margin", "null", "minN", "quantity"]);
  if (!DIRECTIONS.includes(r.direction)) {
    throw new RangeError(
      `verdict: rule.direction must be one of ${DIRECTIONS.join(", ")}, got ${describeValue(r.direction)}`,
    );
  }
  const margin = checkNumber("verdict", "rule.margin", r.margin ?? 0, { min: 0 });
  if (r.direction === "two-sided" && margin === 0) {
    throw new RangeError(
      `verdict: a "two-sided" (equivalence) rule needs rule.margin > 0: the band within which values count as ` +
        `comparable, e.g. { direction: "two-sided", margin: 0.05 }`,
    );
  }
  const nullValue = checkNumber("verdict", "rule.null", r.null ?? iv.nullValue);
  const minN = checkNumber("verdict", "rule.minN", r.minN ?? 3, { min: 1, integer: true });
  const quantity = r.quantity ?? "the effect";
  if (typeof quantity !== "string" || quantity.trim() === "") {
    throw new TypeError(`verdict: rule.quantity must be a non-empty string, got ${describeValue(quantity)}`);
  }
  return { direction: r.direction, margin, null: nullValue, minN, quantity };
}

function ruleSentence(r: Required<Rule>, iv: Interval): string {
  const what = describeInterval(iv, r.quantity);
  const power = iv.exact ? "" : `; inconclusive (underpowered) with n < ${r.minN}`;
  const n = num(r.null), m = num(r.margin);
  if (r.direction === "two-sided") {
    const band = `[${num(r.null - r.margin)}, ${num(r.null + r.margin)}] (${n} ± ${m})`;
    return `reproduced if ${what} lies inside ${band}, not reproduced if it lies wholly outside, ` +
      `otherwise inconclusive (within noise)${power}`;
  }
  const above = r.direction === "greater";
  const t = above ? r.null + r.margin : r.null - r.margin;
  const threshold = r.margin === 0 ? `the null ${n}` : `${num(t)} (${n} ${above ? "+" : "−"} margin ${m})`;
  return `reproduced if ${what} lies ${above ? "above" : "below"} ${threshold}, not reproduced if it lies ` +
    `${above ? "below" : "above"} it, otherwise inconclusive (within noise)${power}`;
}

function summary(iv: Interval): VerdictInterval {
  const finite = (x: number) => (Number.isNaN(x) ? null : x);
  return {
    estimate: iv.estimate,
    low: finite(iv.low),
    high: finite(iv.high),
    level: iv.level,
    n: iv.n,
    method: iv.method,
  };
}

/**
 * Decides a claim from a confidence interval and a stated rule; the result holds
 * the outcome, the reason, the rule as a sentence with its numbers and the
 * interval (see the module doc for the truth table).
 *
 * @example
 * ```ts
 * import { tInterval, verdict } from "./mod.ts";
 * // Per-seed improvement of T2 over vanilla; the claim: it improves by more than 0.02.
 * const v = verdict(tInterval([0.10, 0.12, 0.09, 0.11]), { direction: "greater", margin: 0.02 });
 * console.log(v.outcome, v.reason); // reproduced undefined
 * console.log(verdict(tInterval([0.10, -0.05, 0.02]), { direction: "greater", margin: 0.02 }).reason); // within noise
 * ```
 */
export function verdict(interval: Interval, rule: Rule): Verdict {
  const iv = checkInterval(interval);
  const r = checkRule(rule, iv);
  const sentence = ruleSentence(r, iv);
  const result = (outcome: Outcome, reason?: Reason): Verdict => ({
    outcome,
    ...(reason !== undefined ? { reason } : {}),
    rule: sentence,
    interval: summary(iv),
  });
  if ((!iv.exact && iv.n < r.minN) || Number.isNaN(iv.low)) return result("inconclusive", "underpowered");
  const { low, high } = iv;
  if (r.direction === "two-sided") {
    const lo = r.null - r.margin, hi = r.null + r.margin;
    if (low > lo && high < hi) return result("reproduced");
    if (low > hi || high < lo) return result("not reproduced", "confident difference");
    return result("inconclusive", "within noise");
  }
  // Mirror "less" onto "greater": flip the signs of the interval and the null.
  const sign = r.direction === "greater" ? 1 : -1;
  const [l, h] = sign === 1 ? [low, high] : [-high, -low];
  const nullValue = sign * r.null;
  const threshold = nullValue + r.margin;
  if (l > threshold) return result("reproduced");
  if (h < nullValue) return result("not reproduced", "opposite effect");
  if (h < threshold) return result("not reproduced", "confident absence");
  return result("inconclusive", "within noise");
}

function checkRuleText(owner: string, rule: unknown): string {
  if (typeof rule !== "string" || rule.trim() === "") {
    throw new TypeError(
      `${owner}: rule must be a sentence saying how the claim is decided, got ${describeValue(rule)}`,
    );
  }
  return rule;
}

/**
 * An inconclusive verdict for a claim no measurement here can decide, with the
 * reason: `"by construction"` (the check holds by the code or by algebra, so it
 * is no evidence), `"not comparable"` (the setting differs from the paper's), or
 * another short phrase. `rule` says why, in a sentence.
 *
 * @example
 * ```ts
 * import { inconclusiveBecause } from "./verdict.ts";
 * const v = inconclusiveBecause("by construction", "the recurrent state has a fixed size in the code");
 * console.log(v.outcome, v.reason); // inconclusive by construction
 * ```
 */
export function inconclusiveBecause(reason: Reason, rule: string): Verdict {
  if (typeof reason !== "string" || reason.trim() === "") {
    throw new TypeError(
      `inconclusiveBecause: reason must be a short phrase such as "by construction" or "not comparable", got ${
        describeValue(reason)
      }`,
    );
  }
  return { outcome: "inconclusive", reason, rule: checkRuleText("inconclusiveBecause", rule) };
}

/**
 * The verdict of a deterministic check (a closed form, a numerical identity, an
 * exact count), where there is no sampling noise: reproduced when `holds`, else
 * not reproduced. `rule` states the check with its numbers and tolerance.
 *
 * @example
 * ```ts
 * import { exactVerdict } from "./verdict.ts";
 * const maxGrad = 0.25000003;
 * const v = exactVerdict(maxGrad <= 0.25 + 1e-6, "max |∂p/∂s| ≤ 1/4 + 1e-6 (float32 rounding)");
 * console.log(v.outcome); // reproduced
 * ```
 */
export function exactVerdict(holds: boolean, rule: string): Verdict {
  if (typeof holds !== "boolean") {
    throw new TypeError(`exactVerdict: holds must be true or false (the check's result), got ${describeValue(holds)}`);
  }
  const text = checkRuleText("exactVerdict", rule);
  return holds
    ? { outcome: "reproduced", rule: text }
    : { outcome: "not reproduced", reason: "check fails", rule: text };
}

/** What {@linkcode countOutcomes} returns. */
export interface OutcomeCounts {
  reproduced: number;
  notReproduced: number;
  inconclusive: number;
  /** All claims counted. */
  total: number;
  /** Inconclusive claims by reason (`"unstated"` when a claim has none). */
  inconclusiveBy: Record<string, number>;
}

/**
 * Counts claims by outcome, for the report's summary; the inconclusive ones also
 * by reason. A claim whose `outcome` is not one of the three is a `RangeError`
 * naming its index.
 *
 * @example
 * ```ts
 * import { countOutcomes } from "./verdict.ts";
 * const counts = countOutcomes([
 *   { outcome: "reproduced" },
 *   { outcome: "inconclusive", reason: "within noise" },
 *   { outcome: "not reproduced" },
 *   { outcome: "inconclusive", reason: "within noise" },
 * ]);
 * console.log(counts.reproduced, counts.notReproduced, counts.inconclusive, counts.inconclusiveBy);
 * // 1 1 2 { "within noise": 2 }
 * ```
 */
export function countOutcomes(claims: readonly { outcome: Outcome; reason?: string }[]): OutcomeCounts {
  if (!Array.isArray(claims)) {
    throw new TypeError(`countOutcomes: claims must be an array of { outcome }, got ${describeValue(claims)}`);
  }
  const counts: OutcomeCounts = { reproduced: 0, notReproduced: 0, inconclusive: 0, total: 0, inconclusiveBy: {} };
  claims.forEach((claim, i) => {
    const outcome = (claim as { outcome?: unknown } | null)?.outcome;
    if (outcome === "reproduced") counts.reproduced++;
    else if (outcome === "not reproduced") counts.notReproduced++;
    else if (outcome === "inconclusive") {
      counts.inconclusive++;
      const reason = claim.reason ?? "unstated";
      counts.inconclusiveBy[reason] = (counts.inconclusiveBy[reason] ?? 0) + 1;
    } else {
      throw new RangeError(
        `countOutcomes: claims[${i}].outcome must be one of ${OUTCOMES.map((o) => `"${o}"`).join(", ")}, got ${
          describeValue(outcome)
        }`,
      );
    }
    counts.total++;
  });
  return counts;
}

/** What {@linkcode leastFavourable} returns. */
export interface LeastFavourable<T extends Interval> {
  /** Index of the deciding interval in the input. */
  index: number;
  /** The deciding interval: give it to `verdict` with the same rule. */
  interval: T;
  /** The outcome `verdict(interval, rule)` gives: the claim's outcome over all the comparisons. */
  outcome: Outcome;
}

const SEVERITY: Record<Outcome, number> = { "reproduced": 0, "inconclusive": 1, "not reproduced": 2 };

// How far an interval reaches towards refuting the rule: larger is less favourable (NaN bounds rank first).
function exposure(iv: Interval, rule: Rule): number {
  if (Number.isNaN(iv.low) || Number.isNaN(iv.high)) return Infinity;
  const n = rule.null ?? iv.nullValue, m = rule.margin ?? 0;
  if (rule.direction === "less") return iv.high;
  if (rule.direction === "greater") return -iv.low;
  return Math.max(iv.high - (n + m), n - m - iv.low);
}

/**
 * The interval that decides a claim made about every one of several comparisons ("T2's deviation is much lower than
 * every other linear method's"), by an intersection–union test: the claim is reproduced when every interval passes
 * `rule`, not reproduced when any one is refuted, and inconclusive otherwise. That is the outcome of the least
 * favourable interval, which this returns: the first refuted one if any (the one reaching furthest past the
 * threshold), else the inconclusive one reaching furthest, else the reproduced one closest to its threshold. Each
 * comparison is tested at the full level: no multiplicity correction is needed, since all must pass.
 *
 * @example
 * ```ts
 * import { leastFavourable } from "./verdict.ts";
 * import { tInterval, verdict } from "../stats/mod.ts";
 * // Ratios of T2's deviation to three other methods', over seeds; the claim: all below 1/1.5.
 * const ratios = [tInterval([0.40, 0.45, 0.42]), tInterval([0.55, 0.60, 0.58]), tInterval([0.30, 0.33, 0.31])];
 * const rule = { direction: "less" as const, null: 1, margin: 1 - 1 / 1.5 };
 * const worst = leastFavourable(ratios, rule);
 * console.log(worst.index, worst.outcome, verdict(worst.interval, rule).outcome); // 1 reproduced reproduced
 * ```
 */
export function leastFavourable<T extends Interval>(intervals: readonly T[], rule: Rule): LeastFavourable<T> {
  if (!Array.isArray(intervals)) {
    throw new TypeError(`leastFavourable: intervals must be an array of intervals, got ${describeValue(intervals)}`);
  }
  if (intervals.length === 0) {
    throw new RangeError("leastFavourable: intervals is empty; pass one interval per comparison");
  }
  // verdict checks each interval and the rule, and names what is wrong.
  const judged = intervals.map((interval, index) => ({
    index,
    interval,
    outcome: verdict(interval, rule).outcome,
    exposure: exposure(interval, rule),
  }));
  const worst = judged.reduce((a, b) =>
    SEVERITY[b.outcome] > SEVERITY[a.outcome] ||
      (SEVERITY[b.outcome] === SEVERITY[a.outcome] && b.exposure > a.exposure)
      ? b
      : a
  );
  return { index: worst.index, interval: worst.interval, outcome: worst.outcome };
}

/**
 * Intersection–union: a claim made of parts that must all hold ("every norm beats no norm") is reproduced only when
 * every part is, not reproduced when any part is not (the first such part's reason, named), and inconclusive
 * otherwise (the first inconclusive part's reason). Each part keeps its own level: no multiplicity correction is
 * needed for an all-of claim.
 *
 * @example
 * ```ts
 * import { allOf, verdict } from "./verdict.ts";
 * import { tInterval } from "./intervals.ts";
 * const yes = verdict(tInterval([0.5, 0.6, 0.55]), { direction: "greater" });
 * const noisy = verdict(tInterval([0.5, -0.4, 0.1]), { direction: "greater" });
 * const v = allOf([{ label: "LayerNorm", verdict: yes }, { label: "RMSNorm", verdict: noisy }]);
 * console.log(v.outcome, v.reason, allOf([{ label: "LayerNorm", verdict: yes }]).outcome); // inconclusive within noise reproduced
 * ```
 */
export function allOf(parts: readonly { label: string; verdict: Verdict }[]): Verdict {
  if (!Array.isArray(parts) || parts.length === 0) {
    throw new TypeError("allOf: parts must be a non-empty array of { label, verdict }");
  }
  const rule = `reproduced only if every part is, not reproduced if any part is not, otherwise inconclusive: ${
    parts.map((p) => `${p.label}: ${p.verdict.rule}`).join(" | ")
  }`;
  const failed = parts.find((p) => p.verdict.outcome === "not reproduced");
  if (failed !== undefined) {
    return { ...exactVerdict(false, rule), reason: `${failed.label}: ${failed.verdict.reason ?? "not reproduced"}` };
  }
  const open = parts.find((p) => p.verdict.outcome === "inconclusive");
  if (open !== undefined) return inconclusiveBecause(open.verdict.reason ?? "inconclusive", rule);
  return exactVerdict(true, rule);
}
