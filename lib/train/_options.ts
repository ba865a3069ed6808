/**
 * The one option check only the training loop needs: `{ every, fn }` objects (internal: not re-exported from
 * mod.ts). Everything else comes from lib/_options.ts.
 *
 * @module
 */

import { describeValue } from "../_options.ts";

/**
 * Checks `{ every, <fnKey>: function }` objects such as `validation` and `probe`: `every` an integer >= 1,
 * the function present, no other keys. An unknown key or a missing function throws a TypeError, a bad `every` a
 * TypeError (not a number) or RangeError.
 *
 * @example
 * ```ts
 * import { checkEveryObject } from "./_options.ts";
 * const probe = checkEveryObject({ every: 2, fn: () => ({}) }, "train: option probe", "fn");
 * console.log(probe.every); // 2
 * ```
 */
export function checkEveryObject<K extends string>(
  value: object,
  where: string,
  fnKey: K,
): { every: number } & Record<K, (...args: never[]) => unknown> {
  const given = value as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (key !== "every" && key !== fnKey) {
      throw new TypeError(`${where}: unknown key "${key}"; expected { every: number, ${fnKey}: function }`);
    }
  }
  const { every, [fnKey]: fn } = given;
  if (typeof every !== "number" || !Number.isSafeInteger(every) || every < 1) {
    const message = `${where}.every must be an integer >= 1 (steps between calls), got ${describeValue(every)}`;
    throw typeof every === "number" ? new RangeError(message) : new TypeError(message);
  }
  if (typeof fn !== "function") throw new TypeError(`${where}.${fnKey} must be a function, got ${describeValue(fn)}`);
  return { every, [fnKey]: fn } as { every: number } & Record<K, (...args: never[]) => unknown>;
}
