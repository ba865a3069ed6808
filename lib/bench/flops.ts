/**
 * Matmul FLOP counts of each attention variant, counted from what `lib/attention` computes (padding and
 * masked-out entries included, since the implementation multiplies them too). Each variant's formula is its
 * `flops` member, in its own file; this module checks the problem size and looks the variant up.
 *
 * Notation: `bh = batch · heads`; a matmul of [M, K] by [K, N] costs `2·M·N·K`. Elementwise work
 * (masks, exp, feature maps, norms, decays) is not counted: it is O(n·d) or O(n²) adds that the usual
 * convention leaves out, though on the cpu backend it often takes most of the time.
 *
 * For example (the variants' files give the rest): softmax `2·bh·n²·(dk + dv)`; causal kernel attention over m
 * features `2·bh·N·(C·(m + dv) + 2·m·dv)` with N = n padded to chunks of C; diag `2·bh·N·B·(dk + dv)`; local
 * `2·bh·N·3C·(dk + dv)` (causal 2C). Forward + backward is 3 × forward (each matmul's gradient is two matmuls of its size),
 * except for query-blocked softmax, whose backward recomputes Q Kᵀ: `4·QKᵀ + 3·PV`.
 *
 * @module
 */

import { type FlopCount, type VariantName, variants } from "../attention/mod.ts";

export type { FlopCount } from "../attention/mod.ts";
export { performerFeatures } from "../attention/mod.ts";

/** The variants {@linkcode flopCount} knows, in registry order: all of them (`flops` is part of every variant). */
export const FLOP_VARIANTS: readonly VariantName[] = Object.freeze(Object.keys(variants) as VariantName[]);

/** Problem size for {@linkcode flopCount}. */
export interface FlopDims {
  batch: number;
  heads: number;
  /** Sequence length. */
  n: number;
  /** Query/key feature size. */
  dk: number;
  /** Value size; default dk. */
  dv?: number;
  /** Default true (the language-model setting). */
  causal?: boolean;
  /**
   * The variant's options that change the work, e.g. chunkSize (kernel variants, 64), blockSize (diag, 64),
   * window (local, 64), features (performer, ⌈dk ln dk⌉), queryBlockSize (softmax, none); the variant's defaults
   * otherwise. Keys the variant does not have are ignored; `causal` here yields to `dims.causal`.
   */
  options?: Record<string, unknown>;
}

function positiveInteger(value: unknown, name: string): number {
  if (typeof value !== "number") throw new TypeError(`flopCount: ${name} must be a positive integer, got ${value}`);
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`flopCount: ${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/**
 * Matmul FLOPs of `variant`'s `attend()` at `dims`: the variant's own `flops` (formulas in each variant's file).
 *
 * @example
 * ```ts
 * import { flopCount } from "./flops.ts";
 * const { fwd, fwdBwd } = flopCount("softmax", { batch: 1, heads: 8, n: 1024, dk: 64 });
 * console.log(fwd === 4 * 8 * 1024 ** 2 * 64, fwdBwd === 3 * fwd); // true true
 * ```
 */
export function flopCount(variant: VariantName, dims: FlopDims): FlopCount {
  if (!FLOP_VARIANTS.includes(variant)) {
    throw new Error(`flopCount: variant must be one of ${FLOP_VARIANTS.join(", ")}, got ${JSON.stringify(variant)}`);
  }
  if (dims === null || typeof dims !== "object") {
    throw new TypeError(`flopCount: dims must be an object { batch, heads, n, dk, dv?, causal?, options? }`);
  }
  const batch = positiveInteger(dims.batch, "dims.batch");
  const heads = positiveInteger(dims.heads, "dims.heads");
  const n = positiveInteger(dims.n, "dims.n");
  const dk = positiveInteger(dims.dk, "dims.dk");
  const dv = dims.dv === undefined ? dk : positiveInteger(dims.dv, "dims.dv");
  const causal = dims.causal ?? true;
  if (typeof causal !== "boolean") {
    throw new TypeError(`flopCount: dims.causal must be a boolean, got ${String(causal)}`);
  }
  const { rules } = variants[variant];
  const options = Object.fromEntries(Object.entries(dims.options ?? {}).filter(([key]) => key in rules));
  return variants[variant].flops({ batch, heads, n, dk, dv }, { ...options, causal } as never);
}
