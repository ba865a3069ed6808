/**
 * Argument checks shared by the statistics modules (internal). Every error names
 * the function, the argument and what was expected: `TypeError` for a wrong type,
 * `RangeError` for a value out of range.
 *
 * @module
 */

/** A sample of numbers: a plain array or a typed array. */
export type Sample = readonly number[] | Float32Array | Float64Array;

/** A short description of a value for error messages. */
export function describe(value: unknown): string {
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name}`;
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "function") return "a function";
  if (value !== null && typeof value === "object") return "an object";
  return String(value);
}

/**
 * Checks that `xs` is a non-empty array (or typed array) of finite numbers and
 * returns it as a plain array; `name` is the argument's name in messages.
 *
 * @example
 * ```ts
 * import { checkSample } from "./_checks.ts";
 * console.log(checkSample("mean", "xs", [1, 2, 3])); // [1, 2, 3]
 * try {
 *   checkSample("mean", "xs", [1, NaN]);
 * } catch (err) {
 *   console.log((err as Error).message.startsWith("mean: xs[1] is NaN")); // true
 * }
 * ```
 */
export function checkSample(owner: string, name: string, xs: unknown, minLength = 1): number[] {
  const typed = xs instanceof Float32Array || xs instanceof Float64Array;
  if (!Array.isArray(xs) && !typed) {
    throw new TypeError(`${owner}: ${name} must be an array of numbers, got ${describe(xs)}`);
  }
  const values = xs as ArrayLike<unknown>;
  if (values.length < minLength) {
    throw new RangeError(
      `${owner}: ${name} has ${values.length} value${values.length === 1 ? "" : "s"}; ` +
        `it needs at least ${minLength}`,
    );
  }
  const out = new Array<number>(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (typeof x !== "number") {
      throw new TypeError(`${owner}: ${name}[${i}] must be a number, got ${describe(x)}`);
    }
    if (!Number.isFinite(x)) {
      throw new RangeError(
        `${owner}: ${name}[${i}] is ${x}; every value must be finite (drop or impute missing values first)`,
      );
    }
    out[i] = x;
  }
  return out;
}

/**
 * Checks a confidence level strictly between 0 and 1 and returns it.
 *
 * @example
 * ```ts
 * import { checkLevel } from "./_checks.ts";
 * console.log(checkLevel("tInterval", 0.9)); // 0.9
 * ```
 */
export function checkLevel(owner: string, level: unknown, name = "options.level"): number {
  if (typeof level !== "number") {
    throw new TypeError(`${owner}: ${name} must be a number such as 0.95, got ${describe(level)}`);
  }
  if (!(level > 0 && level < 1)) {
    throw new RangeError(`${owner}: ${name} must lie strictly between 0 and 1 (e.g. 0.95 for 95%), got ${level}`);
  }
  return level;
}

/**
 * Checks that `options` is undefined or a plain object whose keys are all in
 * `known`, and returns it (an empty object when undefined).
 *
 * @example
 * ```ts
 * import { checkOptions } from "./_checks.ts";
 * console.log(checkOptions("tInterval", { level: 0.9 }, ["level"])); // { level: 0.9 }
 * ```
 */
export function checkOptions<T extends object>(owner: string, options: unknown, known: readonly string[]): T {
  if (options === undefined) return {} as T;
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new TypeError(`${owner}: options must be an object like { ${known[0]}: ... }, got ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new TypeError(`${owner}: unknown option "${key}"; expected one of ${known.join(", ")}`);
    }
  }
  return options as T;
}

/**
 * Checks a finite number (`integer` also requires an integer) at least `min`, and returns it.
 *
 * @example
 * ```ts
 * import { checkNumber } from "./_checks.ts";
 * console.log(checkNumber("bootstrapInterval", "options.resamples", 2000, { min: 100, integer: true })); // 2000
 * ```
 */
export function checkNumber(
  owner: string,
  name: string,
  value: unknown,
  rule: { min?: number; integer?: boolean; above?: number } = {},
): number {
  if (typeof value !== "number") {
    throw new TypeError(`${owner}: ${name} must be a number, got ${describe(value)}`);
  }
  if (!Number.isFinite(value)) throw new RangeError(`${owner}: ${name} must be finite, got ${value}`);
  if (rule.integer && !Number.isInteger(value)) {
    throw new RangeError(`${owner}: ${name} must be an integer, got ${value}`);
  }
  if (rule.min !== undefined && value < rule.min) {
    throw new RangeError(`${owner}: ${name} must be at least ${rule.min}, got ${value}`);
  }
  if (rule.above !== undefined && !(value > rule.above)) {
    throw new RangeError(`${owner}: ${name} must be greater than ${rule.above}, got ${value}`);
  }
  return value;
}
