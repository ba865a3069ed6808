/**
 * The one options and validation module (internal): option rules, {@linkcode resolveOptions},
 * {@linkcode checkOptionKeys}, {@linkcode describeValue} and the small argument checkers the other modules share.
 * Every error names the owner (the public call), the option or argument, what was expected and what was got:
 * a `TypeError` for a wrong type or an unknown key, a `RangeError` for a value out of range (non-finite included).
 *
 * It loads no tfjs (the statistics, frames and figures modules use it without a backend): tensors are recognised by
 * their shape, dtype and disposal flag.
 *
 * @module
 */

import type * as tf from "@tensorflow/tfjs";

/**
 * How one option is checked: a type, plus allowed values or bounds; with `nullable`, null is accepted too.
 * - `number`: finite, with optional bounds (`min`, or `> min` with `exclusiveMin`; `max`) and `integer`; with `list`
 *   a non-empty array of such numbers is accepted as well (one per head, say).
 * - `enum`: one of `values`. `string`: any string, a non-empty one (`nonEmpty`) or one matching `pattern`; `hint`
 *   says in words what is expected.
 * - `tensor`: a live tf.Tensor of rank `rank`. `object`: a plain object that `check` checks; what `check` returns
 *   is kept as the option's value.
 */
export type OptionRule =
  & (
    | { type: "boolean" }
    | { type: "number"; min?: number; exclusiveMin?: boolean; max?: number; integer?: boolean; list?: boolean }
    | { type: "enum"; values: readonly string[] }
    | { type: "string"; pattern?: RegExp; nonEmpty?: boolean; hint?: string }
    | { type: "function" }
    | { type: "tensor"; rank: number }
    | { type: "object"; check: (value: object, where: string) => unknown }
  )
  & { nullable?: boolean };

/** Bounds of a number checked by {@linkcode checkNumber}, {@linkcode checkInteger} or a `number` rule. */
export interface NumberBounds {
  /** The least value allowed (or, with `exclusiveMin`, a bound the value must exceed). */
  min?: number;
  /** Makes `min` exclusive: the value must be greater than it. */
  exclusiveMin?: boolean;
  /** The greatest value allowed. */
  max?: number;
  /** Requires an integer. */
  integer?: boolean;
}

/** Options for {@linkcode describeValue}. */
export interface DescribeOptions {
  /** Name the type of numbers, booleans and strings too: `number 42`, `the string "a"`. Default false. */
  typed?: boolean;
}

const MAX_STRING = 60;

/**
 * Describes a value for an error message: short, and never the whole of a long string or array.
 *
 * @example
 * ```ts
 * import { describeValue } from "./_options.ts";
 * console.log(describeValue("x"), describeValue([1, 2]), describeValue(() => 1)); // "x" an array of length 2 a function
 * console.log(describeValue(42, { typed: true }), describeValue(new Map())); // number 42 an instance of Map
 * ```
 */
export function describeValue(value: unknown, options: DescribeOptions = {}): string {
  const typed = options.typed ?? false;
  if (value === null || value === undefined) return String(value);
  if (typeof value === "string") {
    const text = JSON.stringify(value.length > MAX_STRING ? `${value.slice(0, MAX_STRING)}…` : value);
    return typed ? `the string ${text}` : text;
  }
  if (typeof value === "number" || typeof value === "boolean") {
    return typed ? `${typeof value} ${value}` : String(value);
  }
  if (typeof value === "bigint") return `a bigint (${value}n)`;
  if (typeof value === "symbol") return `a symbol (${String(value)})`;
  if (typeof value === "function") return `a function${value.name ? ` (${value.name})` : ""}`;
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (isTensor(value)) {
    const article = /^[aeiou]/.test(value.dtype) ? "an" : "a";
    return `${article} ${value.dtype} tensor of shape [${value.shape.join(", ")}]`;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) return "an object";
  const name = (proto as { constructor?: { name?: string } }).constructor?.name;
  if (!name) return "an object with an unusual prototype";
  return ArrayBuffer.isView(value) && "length" in value
    ? `an instance of ${name} of length ${value.length}`
    : `an instance of ${name}`;
}

/**
 * True for a tf.Tensor (disposed or not). Recognised by its fields, so that this module need not load tfjs.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { isTensor } from "./_options.ts";
 * console.log(isTensor(tf.zeros([2])), isTensor([0, 0])); // true false
 * ```
 */
export function isTensor(value: unknown): value is tf.Tensor {
  if (value === null || typeof value !== "object") return false;
  const t = value as Partial<tf.Tensor>;
  return "dataId" in t && Array.isArray(t.shape) && typeof t.dtype === "string" && typeof t.isDisposed === "boolean";
}

/**
 * Throws unless `options` is undefined (no options: returns `{}`) or a plain object whose keys are all in `valid`:
 * a TypeError naming the first unknown key and the valid ones. Returns the options, typed as `T` (the caller's
 * options type; the values themselves are not checked here).
 *
 * @example
 * ```ts
 * import { checkOptionKeys } from "./_options.ts";
 * console.log(checkOptionKeys("demo", { causal: true }, ["causal", "eps"]).causal); // true
 * try {
 *   checkOptionKeys("demo", { casual: true }, ["causal", "eps"]);
 * } catch (err) {
 *   console.log((err as Error).message); // demo: unknown option "casual"; valid options are causal, eps
 * }
 * ```
 */
export function checkOptionKeys<T extends object = Record<string, unknown>>(
  owner: string,
  options: unknown,
  valid: readonly string[],
): T {
  if (options === undefined) return {} as T;
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    const example = valid.length > 0 ? ` such as { ${valid[0]}: ... }` : "";
    throw new TypeError(
      `${owner}: options must be an object, got ${describeValue(options)}; pass an object${example} or leave it out`,
    );
  }
  for (const key of Object.keys(options)) {
    if (!valid.includes(key)) {
      throw new TypeError(`${owner}: unknown option "${key}"; valid options are ${valid.join(", ")}`);
    }
  }
  return options as T;
}

/**
 * Fills in defaults and checks every given option against its rule. Unknown keys and wrong types throw a TypeError,
 * out-of-range values a RangeError; the message names `owner` and the option. An `object` rule's `check` returns the
 * value kept.
 *
 * @example
 * ```ts
 * import { resolveOptions } from "./_options.ts";
 * const o = resolveOptions("demo", { chunkSize: 4 }, { causal: false, chunkSize: 64, onStep: null }, {
 *   causal: { type: "boolean" },
 *   chunkSize: { type: "number", min: 1, integer: true },
 *   onStep: { type: "function", nullable: true },
 * });
 * console.log(o.chunkSize === 4 && o.causal === false && o.onStep === null); // true
 * ```
 */
export function resolveOptions<T extends object>(
  owner: string,
  options: object | undefined,
  defaults: T,
  rules: Readonly<Record<string, OptionRule>>,
): T {
  const given = checkOptionKeys(owner, options, Object.keys(rules));
  const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  for (const [key, rule] of Object.entries(rules)) {
    const value = given[key];
    if (value !== undefined) out[key] = checkRule(`${owner}: option ${key}`, value, rule);
  }
  return out as T;
}

/** Checks one option value against its rule and returns the value to keep; `where` starts every message. */
function checkRule(where: string, value: unknown, rule: OptionRule): unknown {
  if (value === null && rule.nullable) return null;
  // Kinds whose wrong-type message predates nullable options keep it; the newer kinds say when null is allowed.
  const orNull = rule.nullable ? " or null" : "";
  switch (rule.type) {
    case "boolean":
      if (typeof value !== "boolean") {
        throw new TypeError(`${where} must be true or false, got ${describeValue(value)}`);
      }
      return value;
    case "enum":
      if (typeof value !== "string" || !rule.values.includes(value)) {
        const allowed = rule.values.map((v) => `"${v}"`).join(", ");
        const message = `${where} must be one of ${allowed}, got ${describeValue(value)}`;
        throw typeof value === "string" ? new RangeError(message) : new TypeError(message);
      }
      return value;
    case "number":
      if (rule.list && Array.isArray(value)) {
        if (value.length === 0) throw new RangeError(`${where} must be a number or a non-empty array, got []`);
        value.forEach((x, i) => checkRuleNumber(`${where}[${i}]`, x, rule));
        return value;
      }
      if (rule.list && typeof value !== "number") {
        throw new TypeError(`${where} must be a finite number or an array of them, got ${describeValue(value)}`);
      }
      checkRuleNumber(where, value, rule);
      return value;
    case "string": {
      const expected = rule.hint ??
        (rule.pattern ? `a string matching ${rule.pattern}` : rule.nonEmpty ? "a non-empty string" : "a string");
      if (typeof value !== "string") {
        throw new TypeError(`${where} must be ${expected}${orNull}, got ${describeValue(value)}`);
      }
      if ((rule.nonEmpty && value === "") || (rule.pattern && !rule.pattern.test(value))) {
        throw new RangeError(`${where} must be ${expected}${orNull}, got ${describeValue(value)}`);
      }
      return value;
    }
    case "function":
      if (typeof value !== "function") {
        throw new TypeError(`${where} must be a function${orNull}, got ${describeValue(value)}`);
      }
      return value;
    case "tensor":
      if (!isTensor(value) || value.rank !== rule.rank) {
        throw new TypeError(`${where} must be a rank-${rule.rank} tf.Tensor${orNull}, got ${describeValue(value)}`);
      }
      checkNotDisposed(where, value);
      return value;
    case "object":
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw new TypeError(`${where} must be an object${orNull}, got ${describeValue(value)}`);
      }
      return rule.check(value, where);
  }
}

/**
 * Throws an Error naming `where` when `x` is a disposed tensor: tfjs keeps its shape but not its data, and would
 * fail deep inside a kernel.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { checkNotDisposed } from "./_options.ts";
 * const x = tf.zeros([2]);
 * checkNotDisposed("demo: x", x);
 * x.dispose();
 * try {
 *   checkNotDisposed("demo: x", x);
 * } catch (err) {
 *   console.log((err as Error).message.startsWith("demo: x was disposed")); // true
 * }
 * ```
 */
export function checkNotDisposed(where: string, x: tf.Tensor): void {
  if (x.isDisposed) {
    throw new Error(`${where} was disposed; pass a live tensor (dispose it after the call, or build it again)`);
  }
}

/** Which bound a number breaks, if any: the one test behind every number message here. */
function numberFault(value: unknown, b: NumberBounds): "type" | "finite" | "integer" | "min" | "max" | null {
  if (typeof value !== "number") return "type";
  if (!Number.isFinite(value)) return "finite";
  if (b.integer && !Number.isInteger(value)) return "integer";
  if (b.min !== undefined && (b.exclusiveMin ? value <= b.min : value < b.min)) return "min";
  if (b.max !== undefined && value > b.max) return "max";
  return null;
}

/** A number option: each message names the bound broken, with `>=`, `>` and `<=`. */
function checkRuleNumber(where: string, value: unknown, b: NumberBounds): void {
  switch (numberFault(value, b)) {
    case "type":
      throw new TypeError(`${where} must be a finite number, got ${describeValue(value)}`);
    case "finite":
      throw new RangeError(`${where} must be a finite number, got ${value}`);
    case "integer":
      throw new RangeError(`${where} must be an integer, got ${value}`);
    case "min":
      throw new RangeError(`${where} must be ${b.exclusiveMin ? ">" : ">="} ${b.min}, got ${value}`);
    case "max":
      throw new RangeError(`${where} must be <= ${b.max}, got ${value}`);
  }
}

/**
 * Checks a finite number within `bounds` and returns it: a TypeError when it is not a number, a RangeError naming
 * the bound it breaks (non-finite included) otherwise. `name` is the argument as the caller writes it.
 *
 * @example
 * ```ts
 * import { checkNumber } from "./_options.ts";
 * console.log(checkNumber("bootstrapInterval", "options.resamples", 2000, { min: 100, integer: true })); // 2000
 * try {
 *   checkNumber("fmt", "digits", 0, { min: 1 });
 * } catch (err) {
 *   console.log((err as Error).message); // fmt: digits must be at least 1, got 0
 * }
 * ```
 */
export function checkNumber(owner: string, name: string, value: unknown, bounds: NumberBounds = {}): number {
  const where = `${owner}: ${name}`;
  switch (numberFault(value, bounds)) {
    case "type":
      throw new TypeError(`${where} must be a number, got ${describeValue(value)}`);
    case "finite":
      throw new RangeError(`${where} must be finite, got ${value}`);
    case "integer":
      throw new RangeError(`${where} must be an integer, got ${value}`);
    case "min": {
      const bound = bounds.exclusiveMin ? "greater than" : "at least";
      throw new RangeError(`${where} must be ${bound} ${bounds.min}, got ${value}`);
    }
    case "max":
      throw new RangeError(`${where} must be at most ${bounds.max}, got ${value}`);
  }
  return value as number;
}

/**
 * Checks an integer from `bounds.min` (default 0) to `bounds.max` and returns it. Every message states the whole
 * expectation (`must be an integer >= 0, got -1`): a TypeError when `value` is not a number, else a RangeError.
 *
 * @example
 * ```ts
 * import { checkInteger } from "./_options.ts";
 * console.log(checkInteger("demo", "step", 3)); // 3
 * try {
 *   checkInteger("demo", "digits", 30, { min: 1, max: 21 });
 * } catch (err) {
 *   console.log((err as Error).message); // demo: digits must be an integer from 1 to 21, got 30
 * }
 * ```
 */
export function checkInteger(
  owner: string,
  name: string,
  value: unknown,
  bounds: { min?: number; max?: number } = {},
): number {
  const min = bounds.min ?? 0;
  const expected = bounds.max === undefined ? `an integer >= ${min}` : `an integer from ${min} to ${bounds.max}`;
  return checkWhole(owner, name, value, { min, max: bounds.max, expected });
}

/**
 * `value` as a positive integer, or a TypeError (not a number) / RangeError (not a positive integer) naming it.
 *
 * @example
 * ```ts
 * import { positiveInteger } from "./_options.ts";
 * console.log(positiveInteger("demo", "options.rounds", 5)); // 5
 * try {
 *   positiveInteger("demo", "options.rounds", 0);
 * } catch (e) {
 *   console.log((e as Error).message); // demo: options.rounds must be a positive integer, got 0
 * }
 * ```
 */
export function positiveInteger(owner: string, name: string, value: unknown): number {
  return checkWhole(owner, name, value, { min: 1, expected: "a positive integer" });
}

/** The integer check behind checkInteger and positiveInteger; unsafe integers are out of range too. */
function checkWhole(
  owner: string,
  name: string,
  value: unknown,
  o: { min: number; max?: number; expected: string },
): number {
  const fault = numberFault(value, { min: o.min, max: o.max, integer: true });
  if (fault === null && Number.isSafeInteger(value)) return value as number;
  const message = `${owner}: ${name} must be ${o.expected}, got ${describeValue(value)}`;
  throw fault === "type" ? new TypeError(message) : new RangeError(message);
}
