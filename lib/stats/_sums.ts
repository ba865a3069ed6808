/**
 * Accurate sums behind the mean and the variance, shared by the descriptive statistics and
 * the intervals (private: the public functions check their input first).
 *
 * @module
 */

/**
 * The mean, corrected two-pass: the mean of the residuals is added back, so large offsets lose no precision.
 *
 * @example
 * ```ts
 * import { meanOf } from "./_sums.ts";
 * console.log(meanOf([1e9 + 1, 1e9 + 2, 1e9 + 3])); // 1000000002
 * ```
 */
export function meanOf(values: number[]): number {
  let sum = 0;
  for (const x of values) sum += x;
  const m = sum / values.length;
  let residual = 0;
  for (const x of values) residual += x - m;
  return m + residual / values.length;
}

/**
 * Σ (x − m)², corrected two-pass: the second term removes the rounding error of the mean; never negative.
 *
 * @example
 * ```ts
 * import { sumOfSquares } from "./_sums.ts";
 * console.log(sumOfSquares([1, 2, 3, 4, 5], 3)); // 10
 * ```
 */
export function sumOfSquares(values: number[], m: number): number {
  let ss = 0, s = 0;
  for (const x of values) {
    const d = x - m;
    ss += d * d;
    s += d;
  }
  return Math.max(0, ss - (s * s) / values.length);
}
