/**
 * Matmul FLOP counts of each attention variant, counted from what `lib/attention` computes (padding and
 * masked-out entries included, since the implementation multiplies them too).
 *
 * Notation: `bh = batch · heads`; a matmul of [M, K] by [K, N] costs `2·M·N·K`. Elementwise work
 * (masks, exp, feature maps, norms) is not counted: it is O(n·d) or O(n²) adds that the usual
 * convention leaves out, though on the cpu backend it often takes most of the time.
 *
 * | variant                | forward FLOPs                                                                           |
 * | ---------------------- | --------------------------------------------------------------------------------------- |
 * | softmax                | `2·bh·n²·(dk + dv)` (Q Kᵀ, then P V; causal too, the mask is applied after)              |
 * | softmax, query blocks  | `Σ_blocks 2·bh·rows·keys·(dk + dv)`, keys = n, or up to the block's last query if causal |
 * | kernel, causal         | `2·bh·N·(C·(m + dv) + 2·m·dv)`: chunk Q Kᵀ, chunk (QKᵀ)V, chunk Kᵀ V, Q S                |
 * | kernel, bidirectional  | `4·bh·n·m·dv`: Kᵀ V, then Q (Kᵀ V)                                                       |
 * | diag                   | `2·bh·N·B·(dk + dv)`, N = n padded to blocks of B                                         |
 * | local                  | `2·bh·N·3C·(dk + dv)`, C = window, N = n padded to chunks of C                            |
 *
 * Kernel variants: `linear` and `norm` (m = dk), `cosformer` (m = 2·dk), `performer`
 * (m = ⌈dk·ln dk⌉ by default, plus `4·bh·n·dk·m` for projecting q and k); N = n padded to chunks of C
 * (`chunkSize`, 64). Forward + backward is 3 × forward (each matmul's gradient is two matmuls of
 * its size), except for query-blocked softmax, whose backward recomputes Q Kᵀ: `4·QKᵀ + 3·PV`.
 *
 * @module
 */

import type { VariantName } from "../attention/mod.ts";

/** The variants {@linkcode flopCount} knows, in registry order. */
export const FLOP_VARIANTS: readonly VariantName[] = [
  "softmax",
  "linear",
  "performer",
  "cosformer",
  "norm",
  "diag",
  "local",
];

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
   * The variant's options that change the work: chunkSize (kernel variants, 64), blockSize (diag, 64),
   * window (local, 64), features (performer, ⌈dk ln dk⌉), queryBlockSize (softmax, none). Others are ignored.
   */
  options?: Record<string, unknown>;
}

/** FLOPs of one forward pass and of forward + backward (gradients for q, k and v). */
export interface FlopCount {
  fwd: number;
  fwdBwd: number;
}

function positiveInteger(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new Error(`flopCount: ${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

function optionInteger(options: Record<string, unknown>, key: string, fallback: number): number {
  const value = options[key];
  return value === undefined || value === null ? fallback : positiveInteger(value, `options.${key}`);
}

/**
 * Performer's default number of random features for key size dk: ⌈dk·ln dk⌉, at least 1.
 *
 * @example
 * ```ts
 * import { performerFeatures } from "./flops.ts";
 * console.log(performerFeatures(64)); // 267
 * ```
 */
export function performerFeatures(dk: number): number {
  positiveInteger(dk, "dk");
  return Math.max(1, Math.ceil(dk * Math.log(dk)));
}

/**
 * Matmul FLOPs of `variant`'s `attend()` at `dims` (formulas in this module's header).
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
    throw new Error(`flopCount: dims must be an object { batch, heads, n, dk, dv?, causal?, options? }`);
  }
  const bh = positiveInteger(dims.batch, "dims.batch") * positiveInteger(dims.heads, "dims.heads");
  const n = positiveInteger(dims.n, "dims.n");
  const dk = positiveInteger(dims.dk, "dims.dk");
  const dv = dims.dv === undefined ? dk : positiveInteger(dims.dv, "dims.dv");
  const causal = dims.causal ?? true;
  if (typeof causal !== "boolean") throw new Error(`flopCount: dims.causal must be a boolean, got ${String(causal)}`);
  const options = dims.options ?? {};
  const padded = (size: number) => Math.ceil(n / size) * size;
  const plain = (fwd: number): FlopCount => ({ fwd, fwdBwd: 3 * fwd });

  const kernel = (m: number, extra = 0): FlopCount => {
    if (!causal) return plain(4 * bh * n * m * dv + extra);
    const c = Math.min(optionInteger(options, "chunkSize", 64), n);
    return plain(2 * bh * padded(c) * (c * (m + dv) + 2 * m * dv) + extra);
  };

  switch (variant) {
    case "softmax": {
      const size = optionInteger(options, "queryBlockSize", n);
      if (size >= n) return plain(2 * bh * n * n * (dk + dv));
      let qk = 0;
      let pv = 0;
      for (let start = 0; start < n; start += size) {
        const rows = Math.min(size, n - start);
        const keys = causal ? start + rows : n;
        qk += 2 * bh * rows * keys * dk;
        pv += 2 * bh * rows * keys * dv;
      }
      return { fwd: qk + pv, fwdBwd: 4 * qk + 3 * pv };
    }
    case "linear":
    case "norm":
      return kernel(dk);
    case "cosformer":
      return kernel(2 * dk);
    case "performer": {
      const m = optionInteger(options, "features", performerFeatures(dk));
      return kernel(m, 4 * bh * n * dk * m);
    }
    case "diag": {
      const b = Math.min(optionInteger(options, "blockSize", 64), n);
      return plain(2 * bh * padded(b) * b * (dk + dv));
    }
    case "local": {
      const window = options.window ?? 64;
      if (typeof window !== "number" || !Number.isInteger(window) || window < 0) {
        throw new Error(`flopCount: options.window must be an integer >= 0, got ${String(window)}`);
      }
      const c = Math.max(1, Math.min(window, n));
      return plain(2 * bh * padded(c) * 3 * c * (dk + dv));
    }
  }
  throw new Error(`flopCount: no formula for ${variant}`);
}
