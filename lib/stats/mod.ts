/**
 * Statistics for the verdicts: descriptive statistics, Student-t and bootstrap
 * confidence intervals, differences and ratios between conditions (paired across
 * shared seeds or rounds), the three-outcome verdict with its stated rule, and
 * number formatting for the notebooks. Plain numbers in, plain numbers out: no
 * tensors.
 *
 * - `descriptive.ts`: `mean`, `variance`, `std`, `median`, `quantile` (type 7),
 *   `mad`, `rank`, `rsd`, `robustRsd`, `rollingMedian`, `detrend`.
 * - `distributions.ts`: `tCdf`, `tQuantile`, `normalCdf`, `normalQuantile`,
 *   `incompleteBeta`, `lnGamma`.
 * - `intervals.ts`: `tInterval`, `differenceInterval`, `ratioInterval`, `exactInterval`.
 * - `bootstrap.ts`: `bootstrapInterval` (percentile or BCa, seeded).
 * - `verdict.ts`: `verdict`, `inconclusiveBecause`, `exactVerdict`, `countOutcomes`, and for a claim about
 *   several comparisons at once, `allOf` (verdicts) and `leastFavourable` (intervals).
 * - `format.ts`: `fmt`, `pct`, `pm`, `formatInterval`.
 *
 * @example
 * ```ts
 * import { differenceInterval, formatInterval, verdict } from "./mod.ts";
 * // Validation loss per seed (seeds 0, 1, 2) of two configurations trained on the same seeds.
 * const withNorm = [2.10, 2.15, 2.08], without = [2.31, 2.40, 2.27];
 * const diff = differenceInterval(without, withNorm, { paired: true });
 * const v = verdict(diff, { direction: "greater", margin: 0.05, quantity: "loss without − with the norm" });
 * console.log(v.outcome, formatInterval(diff)); // reproduced 0.217 [0.141, 0.293] (95% paired t, n = 3)
 * ```
 *
 * @module
 */

export {
  detrend,
  mad,
  MAD_NORMAL_SCALE,
  mean,
  median,
  quantile,
  rank,
  robustRsd,
  rollingMedian,
  rsd,
  std,
  variance,
} from "./descriptive.ts";
export type { RankOptions, RollingOptions, SpreadOptions } from "./descriptive.ts";
export { incompleteBeta, lnGamma, normalCdf, normalQuantile, tCdf, tQuantile } from "./distributions.ts";
export { differenceInterval, exactInterval, ratioInterval, tInterval } from "./intervals.ts";
export type {
  DifferenceInterval,
  DifferenceOptions,
  ExactOptions,
  Interval,
  LevelOptions,
  RatioInterval,
  TInterval,
} from "./intervals.ts";
export { bootstrapInterval } from "./bootstrap.ts";
export type { BootstrapInterval, BootstrapOptions } from "./bootstrap.ts";
export {
  allOf,
  countOutcomes,
  exactVerdict,
  inconclusiveBecause,
  leastFavourable,
  OUTCOMES,
  verdict,
} from "./verdict.ts";
export type {
  Direction,
  LeastFavourable,
  Outcome,
  OutcomeCounts,
  Reason,
  Rule,
  Verdict,
  VerdictInterval,
} from "./verdict.ts";
export { fmt, formatInterval, pct, pm } from "./format.ts";
export type { PctOptions, PmOptions } from "./format.ts";
