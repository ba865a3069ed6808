/**
 * Base64 for `data:` URIs, without a dependency.
 *
 * @module
 */

/**
 * Encodes bytes as standard base64 (with padding).
 *
 * @example
 * ```ts
 * import { encodeBase64 } from "./base64.ts";
 * console.log(encodeBase64(new TextEncoder().encode("hi!?"))); // aGkhPw==
 * ```
 */
export function encodeBase64(bytes: Uint8Array): string {
  const chunk = 0x8000;
  let binary = "";
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}
