/**
 * Number formatting for notebook prose, tables and claims: `fmt` (significant
 * digits, exponent for very large or small values), `pct`, `pm` ("1.23 ± 0.04")
 * and `formatInterval` ("1.23 [1.05, 1.41] (95% t, n = 3)").
 *
 * @module
 */

import { checkNumber, checkOptionKeys, describeValue } from "../_options.ts";
import type { Interval } from "./intervals.ts";

function checkDigits(owner: string, digits: unknown): number {
  return checkNumber(owner, "digits", digits, { min: 1, integer: true });
}

function special(x: number): string | undefined {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "∞";
  if (x === -Infinity) return "−∞";
  if (x === 0) return "0";
  return undefined;
}

/**
 * A number with `digits` significant digits (default 3): `x.toPrecision(digits)`
 * for 10⁻³ ≤ |x| < 10⁴ (values with more integer digits than `digits` are
 * rounded to an integer: 1234 → "1234"), and the exponent form with
 * `digits − 1` decimals outside that range (2.50e+5, 1.20e-4). 0 is "0", NaN is
 * "NaN", ±Infinity is "∞"/"−∞", and `null`/`undefined` (a missing value) is "–".
 *
 * @example
 * ```ts
 * import { fmt } from "./format.ts";
 * console.log(fmt(1 / 3), fmt(1234.5), fmt(250000), fmt(0.00012, 2), fmt(null)); // 0.333 1235 2.50e+5 1.2e-4 –
 * ```
 */
export function fmt(x: number | null | undefined, digits = 3): string {
  checkDigits("fmt", digits);
  if (x === null || x === undefined) return "–";
  if (typeof x !== "number") throw new TypeError(`fmt: x must be a number, null or undefined, got ${describeValue(x)}`);
  const s = special(x);
  if (s !== undefined) return s;
  const a = Math.abs(x);
  if (a >= 1e4 || a < 1e-3) return x.toExponential(digits - 1);
  const text = x.toPrecision(digits);
  // toPrecision switches to an exponent when the integer part has more digits than `digits` (1234 → "1.23e+3").
  return text.includes("e") ? String(Math.round(x)) : text;
}

/** Options of {@linkcode pct}. */
export interface PctOptions {
  /** Show "+" before positive values (changes). Default `false`. */
  signed?: boolean;
}

/**
 * A fraction as a percentage with `digits` decimals (default 1): 0.053 → "5.3%".
 * Negative values take a true minus sign ("−0.6%"); `{ signed: true }` also marks
 * positive changes ("+5.3%"). A value that rounds to zero has no sign.
 *
 * @example
 * ```ts
 * import { pct } from "./format.ts";
 * console.log(pct(0.053), pct(-0.006, 1, { signed: true }), pct(0.105, 0, { signed: true })); // 5.3% −0.6% +11%
 * ```
 */
export function pct(x: number, digits = 1, options?: PctOptions): string {
  checkNumber("pct", "digits", digits, { min: 0, integer: true });
  const { signed = false } = checkOptionKeys<PctOptions>("pct", options, ["signed"]);
  if (typeof x !== "number") throw new TypeError(`pct: x must be a number, got ${describeValue(x)}`);
  if (!Number.isFinite(x)) return `${special(x)}%`;
  const text = Math.abs(100 * x).toFixed(digits);
  // A value that rounds to zero gets no sign, whatever its sign was.
  const sign = Number(text) === 0 ? "" : x < 0 ? "−" : signed ? "+" : "";
  return `${sign}${text}%`;
}

/** Options of {@linkcode pm}. */
export interface PmOptions {
  /** Significant digits of the half-width. Default: 2 when its leading digit is 1 or 2, else 1. */
  digits?: number;
}

/**
 * "mean ± half-width", both rounded to the last decimal place of the half-width.
 * The half-width keeps 2 significant digits when its leading digit is 1 or 2 and
 * 1 otherwise (a common convention for uncertainties), or `options.digits`. A
 * `NaN` half-width (an interval that could not be computed) gives "mean ± n/a".
 *
 * @example
 * ```ts
 * import { pm } from "./format.ts";
 * console.log(pm(1.2345, 0.04), pm(1.78, 0.123), pm(12345, 678), pm(2.5, NaN)); // 1.23 ± 0.04 1.78 ± 0.12 12300 ± 700 2.50 ± n/a
 * ```
 */
export function pm(mean: number, halfWidth: number, options?: PmOptions): string {
  const o = checkOptionKeys<PmOptions>("pm", options, ["digits"]);
  if (o.digits !== undefined) checkDigits("pm", o.digits);
  if (typeof mean !== "number") throw new TypeError(`pm: mean must be a number, got ${describeValue(mean)}`);
  if (typeof halfWidth !== "number") {
    throw new TypeError(`pm: halfWidth must be a number, got ${describeValue(halfWidth)}`);
  }
  if (halfWidth < 0) throw new RangeError(`pm: halfWidth must be ≥ 0, got ${halfWidth}`);
  if (!Number.isFinite(mean)) return `${special(mean)} ± ${fmt(halfWidth)}`;
  if (Number.isNaN(halfWidth)) return `${fmt(mean)} ± n/a`;
  if (halfWidth === 0 || halfWidth === Infinity) return `${fmt(mean)} ± ${fmt(halfWidth)}`;
  // Leading digit and decimal exponent from the exponent form, which has no rounding surprises (0.03 / 0.01 < 3).
  const [mantissa, power] = halfWidth.toExponential().split("e");
  const exponent = Number(power), leading = Number(mantissa[0]);
  const digits = o.digits ?? (leading <= 2 ? 2 : 1);
  const decimals = digits - 1 - exponent;
  if (decimals > 15 || Math.abs(mean) >= 1e15) return `${fmt(mean, 4)} ± ${fmt(halfWidth, digits)}`;
  if (decimals >= 0) return `${mean.toFixed(decimals)} ± ${halfWidth.toFixed(decimals)}`;
  const unit = 10 ** -decimals;
  return `${Math.round(mean / unit) * unit} ± ${Math.round(halfWidth / unit) * unit}`;
}

/**
 * An interval in one line for a claim's `measured` text: "estimate [low, high]
 * (95% method, n = …)", each number by {@linkcode fmt} with `digits` significant
 * digits; "estimate (no interval: reason)" when the bounds could not be computed,
 * and "estimate (exact)" for an exactly computed value.
 *
 * @example
 * ```ts
 * import { formatInterval, tInterval } from "./mod.ts";
 * console.log(formatInterval(tInterval([1, 2, 3, 4, 5]))); // 3.00 [1.04, 4.96] (95% t, n = 5)
 * console.log(formatInterval(tInterval([2]))); // 2.00 (no interval: one value: a t interval needs at least 2 to estimate the spread)
 * ```
 */
export function formatInterval(interval: Interval, digits = 3): string {
  checkDigits("formatInterval", digits);
  if (interval === null || typeof interval !== "object") {
    throw new TypeError(`formatInterval: interval must be an interval object, got ${describeValue(interval)}`);
  }
  const { estimate, low, high, level, n, method, reason, exact } = interval;
  if (exact) {
    return low === high
      ? `${fmt(estimate, digits)} (exact)`
      : `${fmt(estimate, digits)} (exact, ± ${fmt((high - low) / 2, 2)})`;
  }
  if (Number.isNaN(low) || Number.isNaN(high)) {
    return `${fmt(estimate, digits)} (no interval: ${reason ?? "not computable"})`;
  }
  return `${fmt(estimate, digits)} [${fmt(low, digits)}, ${fmt(high, digits)}] (${
    Number((100 * level).toPrecision(6))
  }% ${method}, n = ${n})`;
}
