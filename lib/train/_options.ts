/**
 * Option checks for the training loop: the rules of `resolveOptions` plus functions, strings and
 * nested objects, which `resolveOptions` does not cover (internal: not re-exported from mod.ts).
 *
 * @module
 */

import { checkOptionKeys, type OptionRule, resolveOptions } from "../attention/types.ts";

/** A rule for one option: one of `resolveOptions`'s, or a function, a string, or an object checked by `check`. */
export type TrainOptionRule =
  | OptionRule
  | { type: "function"; nullable?: boolean }
  | { type: "string"; pattern?: RegExp; hint?: string; nullable?: boolean }
  | { type: "object"; check: (value: object, where: string) => unknown; nullable?: boolean };

/**
 * Describes a value for an error message.
 *
 * @example
 * ```ts
 * import { describeValue } from "./_options.ts";
 * console.log(describeValue("x"), describeValue([1]), describeValue(() => 1)); // "x" an array a function
 * ```
 */
export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "function") return "a function";
  if (typeof value === "string") return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (typeof value === "object") return `an object (${Object.prototype.toString.call(value)})`;
  return String(value);
}

/**
 * Fills in defaults and checks every option against its rule, like `resolveOptions` from
 * lib/attention/types.ts, with function, string and object rules added. Unknown keys, wrong types and
 * out-of-range values throw an Error that names the option. An object rule's `check` returns the value to keep.
 *
 * @example
 * ```ts
 * import { resolveTrainOptions } from "./_options.ts";
 * const o = resolveTrainOptions("demo", { lr: 0.1, onStep: () => {} }, { lr: 1e-3, onStep: null }, {
 *   lr: { type: "number", min: 0, exclusiveMin: true },
 *   onStep: { type: "function", nullable: true },
 * });
 * console.log(o.lr, typeof o.onStep); // 0.1 function
 * ```
 */
export function resolveTrainOptions<T extends object>(
  owner: string,
  options: object | undefined,
  defaults: T,
  rules: Record<string, TrainOptionRule>,
): T {
  const given = checkOptionKeys(owner, options, Object.keys(rules));
  const builtin: Record<string, OptionRule> = {};
  const builtinGiven: Record<string, unknown> = {};
  const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  for (const [key, rule] of Object.entries(rules)) {
    const value = given[key];
    if (rule.type === "function" || rule.type === "string" || rule.type === "object") {
      if (value === undefined) continue;
      out[key] = checkExtraRule(owner, key, value, rule);
    } else {
      builtin[key] = rule;
      if (value !== undefined) builtinGiven[key] = value;
    }
  }
  const builtinDefaults = Object.fromEntries(Object.keys(builtin).map((k) => [k, out[k]]));
  Object.assign(out, resolveOptions(owner, builtinGiven, builtinDefaults, builtin));
  return out as T;
}

function checkExtraRule(
  owner: string,
  key: string,
  value: unknown,
  rule: Exclude<TrainOptionRule, OptionRule>,
): unknown {
  const where = `${owner}: option ${key}`;
  if (value === null && rule.nullable) return null;
  switch (rule.type) {
    case "function":
      if (typeof value !== "function") throw new Error(`${where} must be a function, got ${describeValue(value)}`);
      return value;
    case "string":
      if (typeof value !== "string") throw new Error(`${where} must be a string, got ${describeValue(value)}`);
      if (rule.pattern && !rule.pattern.test(value)) {
        throw new Error(
          `${where} must be ${rule.hint ?? `a string matching ${rule.pattern}`}, got ${describeValue(value)}`,
        );
      }
      return value;
    case "object":
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw new Error(`${where} must be an object, got ${describeValue(value)}`);
      }
      return rule.check(value, where);
  }
}

/**
 * Checks `{ every, <fnKey>: function }` objects such as `validation` and `probe`: `every` an integer >= 1,
 * the function present, no other keys.
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
      throw new Error(`${where}: unknown key "${key}"; expected { every: number, ${fnKey}: function }`);
    }
  }
  const every = given.every;
  if (typeof every !== "number" || !Number.isInteger(every) || every < 1) {
    throw new Error(`${where}.every must be an integer >= 1 (steps between calls), got ${describeValue(every)}`);
  }
  if (typeof given[fnKey] !== "function") {
    throw new Error(`${where}.${fnKey} must be a function, got ${describeValue(given[fnKey])}`);
  }
  return { every, [fnKey]: given[fnKey] } as { every: number } & Record<K, (...args: never[]) => unknown>;
}
