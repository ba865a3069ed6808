/**
 * Canonical JSON and SHA-256, to identify a run by its config.
 *
 * @module
 */

/**
 * JSON with object keys sorted at every level, so equal values give equal text. Throws, naming the path,
 * on what JSON cannot hold exactly: functions, symbols, bigints, undefined inside arrays, NaN and ±Infinity.
 * Object properties that are undefined are left out, as JSON.stringify does.
 *
 * @example
 * ```ts
 * import { canonicalJson } from "./hash.ts";
 * console.log(canonicalJson({ b: 1, a: [true, null, { d: "x", c: 2 }] })); // {"a":[true,null,{"c":2,"d":"x"}],"b":1}
 * ```
 */
export function canonicalJson(value: unknown, path = "value"): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
    case "string":
      return JSON.stringify(value);
    case "number":
      if (!Number.isFinite(value)) {
        throw new Error(`canonicalJson: ${path} is ${value}, which JSON cannot hold; use a finite number or a string`);
      }
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) {
        return `[${value.map((x, i) => canonicalJson(x, `${path}[${i}]`)).join(",")}]`;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw new Error(
          `canonicalJson: ${path} is a ${proto?.constructor?.name ?? "non-plain"} object; ` +
            "use plain objects, arrays, strings, finite numbers, booleans and null",
        );
      }
      const entries = Object.keys(value).sort()
        .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
        .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k], `${path}.${k}`)}`);
      return `{${entries.join(",")}}`;
    }
    default:
      throw new Error(
        `canonicalJson: ${path} is a ${typeof value}, which JSON cannot hold; ` +
          "use plain objects, arrays, strings, finite numbers, booleans and null",
      );
  }
}

/**
 * The SHA-256 of bytes or of a string's UTF-8 encoding, as 64 lowercase hex digits.
 *
 * @example
 * ```ts
 * import { sha256Hex } from "./hash.ts";
 * console.log(await sha256Hex("abc")); // ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
 * ```
 */
export async function sha256Hex(data: string | Uint8Array): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The SHA-256 of a value's {@linkcode canonicalJson}: equal configs give equal hashes whatever their key order.
 *
 * @example
 * ```ts
 * import { configHash } from "./hash.ts";
 * console.log(await configHash({ a: 1, b: 2 }) === await configHash({ b: 2, a: 1 })); // true
 * ```
 */
export function configHash(value: unknown): Promise<string> {
  return sha256Hex(canonicalJson(value));
}
