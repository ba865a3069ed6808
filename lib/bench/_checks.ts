/**
 * Argument checks shared by the benchmark harnesses (internal).
 *
 * @module
 */

/**
 * `value` as a positive integer, or a TypeError (not a number) / RangeError (not a positive integer) naming it.
 *
 * @example
 * ```ts
 * import { positiveInteger } from "./_checks.ts";
 * console.log(positiveInteger("demo", "options.rounds", 5)); // 5
 * try {
 *   positiveInteger("demo", "options.rounds", 0);
 * } catch (e) {
 *   console.log((e as Error).message); // demo: options.rounds must be a positive integer, got 0
 * }
 * ```
 */
export function positiveInteger(owner: string, name: string, value: unknown): number {
  if (typeof value !== "number") {
    throw new TypeError(`${owner}: ${name} must be a positive integer, got ${String(value)}`);
  }
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${owner}: ${name} must be a positive integer, got ${value}`);
  }
  return value;
}
