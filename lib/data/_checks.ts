/**
 * Argument checks shared by the data modules (internal: not re-exported from mod.ts).
 *
 * @module
 */

import { type OptionRule, resolveOptions } from "../attention/types.ts";

/**
 * Throws unless `value` is an integer >= `min`; the message names the owner and the argument.
 *
 * @example
 * ```ts
 * import { checkInteger } from "./_checks.ts";
 * checkInteger("demo", "step", 3, 0);
 * ```
 */
export function checkInteger(owner: string, name: string, value: unknown, min: number): asserts value is number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    const got = typeof value === "string" ? `"${value}"` : String(value);
    throw new Error(`${owner}: ${name} must be an integer >= ${min}, got ${got}`);
  }
}

/** An option rule of lib/attention, or a string or function (optionally nullable). */
export type DataOptionRule = OptionRule | { type: "string" | "function"; nullable?: boolean };

/**
 * {@linkcode resolveOptions} with string and function options too: fills in defaults; unknown keys,
 * wrong types and out-of-range values throw an Error that names the option.
 *
 * @example
 * ```ts
 * import { resolveDataOptions } from "./_checks.ts";
 * const o = resolveDataOptions("demo", { seqLen: 8 }, { seqLen: 64, dir: "data" }, {
 *   seqLen: { type: "number", min: 1, integer: true },
 *   dir: { type: "string" },
 * });
 * console.log(o.seqLen, o.dir); // 8 data
 * ```
 */
export function resolveDataOptions<T extends object>(
  owner: string,
  options: object | undefined,
  defaults: T,
  rules: Record<string, DataOptionRule>,
): T {
  const plain: Record<string, OptionRule> = {};
  if (options !== undefined && (options === null || typeof options !== "object" || Array.isArray(options))) {
    return resolveOptions(owner, options, defaults, plain);
  }
  const own: string[] = [];
  for (const [key, rule] of Object.entries(rules)) {
    if (rule.type === "string" || rule.type === "function") own.push(key);
    // A string or function option passes resolveOptions' key check as a nullable number and is checked here instead.
    plain[key] = rule.type === "string" || rule.type === "function"
      ? { type: "number", nullable: true }
      : rule as OptionRule;
  }
  const given = (options ?? {}) as Record<string, unknown>;
  const rest = { ...given };
  for (const key of own) delete rest[key];
  const out = resolveOptions(owner, options === undefined ? undefined : rest, defaults, plain) as Record<
    string,
    unknown
  >;
  for (const key of own) {
    const value = given[key];
    if (value === undefined) continue;
    const rule = rules[key] as { type: "string" | "function"; nullable?: boolean };
    const ok = rule.type === "string" ? typeof value === "string" && value.length > 0 : typeof value === "function";
    if (!ok && !(value === null && rule.nullable)) {
      const what = rule.type === "string" ? "a non-empty string" : "a function";
      throw new Error(
        `${owner}: option ${key} must be ${what}${rule.nullable ? " or null" : ""}, got ${
          Array.isArray(value) ? "an array" : String(value)
        }`,
      );
    }
    out[key] = value;
  }
  return out as T;
}
