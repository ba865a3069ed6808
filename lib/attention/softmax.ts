/**
 * Softmax attention (Vaswani et al., 2017): softmax(Q K^T * scale) V. O(n^2) time.
 * With `queryBlockSize`, queries are processed in blocks and the gradient recomputes each
 * block's probabilities, so memory is O(queryBlockSize * n) instead of O(n^2), forward and backward.
 * Its decoder keeps the prefix's K and V (`cache: true`, O(t d) per token) or re-runs the whole prefix (`cache: false`).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { AttentionOptions, QKV } from "./types.ts";
import { fusedSoftmaxAttention, fusesSoftmaxAttention } from "../blas/fused_attention.ts";
import { lowerTriangle } from "./kernel.ts";
import { appendTokens, maskedAttend, sliceTokens } from "./_decoding.ts";
import { allowRealKeys, defineVariant, forwardFlops, keyMaskedSoftmax, maskBias, maskedSoftmax } from "./variant.ts";

/** Options of {@linkcode softmax}. */
export interface SoftmaxOptions extends AttentionOptions {
  /** Logit scale; default (null) 1 / sqrt(dk). */
  scale?: number | null;
  /** Queries per block of the memory-bounded path; default (null) all at once. */
  queryBlockSize?: number | null;
}

/**
 * softmax(qb kᵀ · scale) [b, h, B, nk] of a block of B queries from position `start` against the first nk keys, under
 * the causal mask and the key-padding mask (a row left with no key is 0; README.md, "Key-padding masks").
 */
function blockProbabilities(
  qb: tf.Tensor4D,
  k: tf.Tensor4D,
  o: { scale: number; causal: boolean; start: number; keyMask: tf.Tensor2D | null },
): tf.Tensor4D {
  const [, , rows] = qb.shape;
  const keys = k.shape[2];
  const logits: tf.Tensor4D = tf.mul(tf.matMul(qb, k, false, true), o.scale); // [b, h, B, nk]
  const visible = o.causal ? lowerTriangle(rows, { cols: keys, offset: o.start }) : null; // [B, nk]
  if (o.keyMask === null) return tf.softmax(visible === null ? logits : tf.add(logits, maskBias(visible)));
  const keyMask = tf.slice(o.keyMask, [0, 0], [-1, keys]) as tf.Tensor2D; // [b, nk]
  const allowed = allowRealKeys(visible ?? tf.ones([1, keys]), keyMask); // [b, 1, B or 1, nk]
  return keyMaskedSoftmax(logits, allowed);
}

/**
 * Softmax attention over query blocks, with a gradient that recomputes each block's
 * probabilities (as FlashAttention does) instead of keeping all of them: O(B n) memory.
 * Causal blocks only read the keys up to their last query. With `keyMask` [b, n], the pad keys get no weight and a
 * query row left with no key is 0.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { blockedSoftmaxAttend, softmax } from "./softmax.ts";
 * const q = tf.randomNormal([1, 2, 10, 4]) as tf.Tensor4D;
 * const v = tf.randomNormal([1, 2, 10, 3]) as tf.Tensor4D;
 * const blocked = blockedSoftmaxAttend({ q, k: q, v }, { causal: true, queryBlockSize: 4 });
 * const whole = softmax.attend({ q, k: q, v }, { causal: true });
 * console.log(tf.max(tf.abs(tf.sub(blocked, whole))).dataSync()[0] < 1e-5); // true
 * ```
 */
export function blockedSoftmaxAttend(
  qkv: { q: tf.Tensor4D; k: tf.Tensor4D; v: tf.Tensor4D },
  options: { causal?: boolean; scale?: number | null; queryBlockSize: number; keyMask?: tf.Tensor2D | null },
): tf.Tensor4D {
  const [, , n, dk] = qkv.q.shape;
  const scale = options.scale ?? 1 / Math.sqrt(dk);
  const causal = options.causal ?? false;
  const keyMask = options.keyMask ?? null;
  const size = options.queryBlockSize;
  const blocks = Array.from(
    { length: Math.ceil(n / size) },
    (_, i) => ({ start: i * size, rows: Math.min(size, n - i * size) }),
  );
  const keysFor = (start: number, rows: number) => causal ? start + rows : n;
  const rowsOf = (x: tf.Tensor4D, start: number, count: number) =>
    tf.slice(x, [0, 0, start, 0], [-1, -1, count, -1]) as tf.Tensor4D;

  const attend = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [q, k, v] = args as tf.Tensor4D[];
    (args[3] as tf.GradSaveFunc)([q, k, v]);
    const outputs = blocks.map(({ start, rows }) =>
      tf.tidy(() => {
        const nk = keysFor(start, rows);
        const p = blockProbabilities(rowsOf(q, start, rows), rowsOf(k, 0, nk), { scale, causal, start, keyMask });
        return tf.matMul(p, rowsOf(v, 0, nk)); // [b, h, B, dv]
      })
    );
    const value = tf.concat(outputs, 2); // [b, h, n, dv]
    tf.dispose(outputs);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sq, sk, sv] = saved as tf.Tensor4D[];
      let dk: tf.Tensor = tf.zerosLike(sk);
      let dv: tf.Tensor = tf.zerosLike(sv);
      const dqs = blocks.map(({ start, rows }) => {
        const nk = keysFor(start, rows);
        const [dqb, dkPart, dvPart] = tf.tidy(() => {
          const qb = rowsOf(sq, start, rows);
          const kb = rowsOf(sk, 0, nk);
          const vb = rowsOf(sv, 0, nk);
          const dob = rowsOf(dy as tf.Tensor4D, start, rows); // [b, h, B, dv]
          // A row zeroed by the key mask has p = 0 there, so ds = 0: the derivative of a constant 0 output.
          const p = blockProbabilities(qb, kb, { scale, causal, start, keyMask }); // [b, h, B, nk]
          const dp = tf.matMul(dob, vb, false, true); // [b, h, B, nk]
          const ds = tf.mul(p, tf.sub(dp, tf.sum(tf.mul(dp, p), -1, true))); // [b, h, B, nk]
          const toN = (x: tf.Tensor4D) => nk === n ? x : tf.pad(x, [[0, 0], [0, 0], [0, n - nk], [0, 0]]);
          return [
            tf.mul(tf.matMul(ds, kb), scale), // [b, h, B, dk]
            toN(tf.mul(tf.matMul(ds, qb, true, false), scale)), // [b, h, n, dk]
            toN(tf.matMul(p, dob, true, false)), // [b, h, n, dv]
          ];
        });
        const nextK = tf.add(dk, dkPart);
        const nextV = tf.add(dv, dvPart);
        tf.dispose([dk, dv, dkPart, dvPart]);
        dk = nextK;
        dv = nextV;
        return dqb;
      });
      const dq = tf.concat(dqs, 2);
      tf.dispose(dqs);
      return [dq, dk, dv];
    };
    return { value, gradFunc };
  });
  return attend(qkv.q, qkv.k, qkv.v) as tf.Tensor4D;
}

/**
 * softmax(Q K^T * scale + causal mask) [batch, heads, n, n], over the real keys only when `keyMask` [batch, n] is given
 * (a row with no real key it may see is 0).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { softmaxWeights } from "./softmax.ts";
 * const x = tf.zeros([1, 1, 2, 3]) as tf.Tensor4D;
 * console.log(JSON.stringify(softmaxWeights({ q: x, k: x }, { causal: true }).arraySync()[0][0])); // [[1,0],[0.5,0.5]]
 * ```
 */
export function softmaxWeights(qk: { q: tf.Tensor4D; k: tf.Tensor4D }, options: SoftmaxOptions = {}): tf.Tensor4D {
  return tf.tidy(() => {
    const scale = options.scale ?? 1 / Math.sqrt(qk.q.shape[3]);
    const o = { scale, causal: options.causal ?? false, start: 0, keyMask: options.keyMask ?? null };
    return blockProbabilities(qk.q, qk.k, o); // [b, h, n, n]
  });
}

function softmaxAttend(qkv: QKV, o: Required<SoftmaxOptions>): tf.Tensor4D {
  // On the blas backend: one fused kernel forward and one backward, by query blocks with the causal blocks' upper
  // half skipped, O(block · n) memory (lib/blas/fused_attention.ts). Elsewhere, and with a key mask (the kernel takes
  // none), the tf-op forms below.
  const fusable = o.keyMask === null && fusesSoftmaxAttention(qkv);
  if (fusable && (!o.causal || qkv.k.shape[2] === qkv.q.shape[2])) {
    const blockSize = o.queryBlockSize ?? undefined;
    const scale = o.scale ?? 1 / Math.sqrt(qkv.q.shape[3]);
    return fusedSoftmaxAttention(qkv, { causal: o.causal, scale, ...(blockSize ? { blockSize } : {}) });
  }
  return o.queryBlockSize !== null && o.queryBlockSize < qkv.q.shape[2]
    ? blockedSoftmaxAttend(qkv, {
      causal: o.causal,
      scale: o.scale,
      queryBlockSize: o.queryBlockSize,
      keyMask: o.keyMask,
    })
    : tf.matMul(softmaxWeights(qkv, o), qkv.v);
}

// A session without a cache re-runs attention over the whole prefix: in query blocks, so a 16k prefix
// needs 16k × block scores at once instead of 16k².
const RERUN_QUERY_BLOCK = 512;

/**
 * The `softmax` variant. Options: `causal` (false), `scale` (1/sqrt(dk)), `queryBlockSize` (null: no blocks).
 * Its decoder takes `cache` besides: keep the prefix's K, V (true, default: O(t d) per token) or recompute the whole
 * prefix every step (false: O(t² d), what a model without a cache does).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { softmax } from "./softmax.ts";
 * const q = tf.randomNormal([1, 2, 5, 4]) as tf.Tensor4D;
 * const v = tf.randomNormal([1, 2, 5, 3]) as tf.Tensor4D;
 * console.log(softmax.attend({ q, k: q, v }, { causal: true }).shape.join(",")); // 1,2,5,3
 * ```
 */
export const softmax = defineVariant<SoftmaxOptions, { cache: boolean }>({
  name: "softmax",
  defaults: { causal: false, scale: null, queryBlockSize: null },
  rules: {
    causal: { type: "boolean" },
    scale: { type: "number", min: 0, exclusiveMin: true, nullable: true },
    queryBlockSize: { type: "number", min: 1, integer: true, nullable: true },
  },
  weights: softmaxWeights,
  attend: softmaxAttend,
  // `2·bh·n²·(dk + dv)` (Q Kᵀ, then P V; causal too, the mask is applied after). By query blocks, each block reads n
  // keys (causal: up to its last query) and the backward recomputes Q Kᵀ: `4·QKᵀ + 3·PV`.
  flops: ({ batch, heads, n, dk, dv }, o) => {
    const bh = batch * heads;
    const size = o.queryBlockSize ?? n;
    if (size >= n) return forwardFlops(2 * bh * n * n * (dk + dv));
    let qk = 0;
    let pv = 0;
    for (let start = 0; start < n; start += size) {
      const rows = Math.min(size, n - start);
      const keys = o.causal ? start + rows : n;
      qk += 2 * bh * rows * keys * dk;
      pv += 2 * bh * rows * keys * dv;
    }
    return { fwd: qk + pv, fwdBwd: 4 * qk + 3 * pv };
  },
  sessionOptions: (options, { rerun }) =>
    rerun && options.queryBlockSize == null ? { ...options, queryBlockSize: RERUN_QUERY_BLOCK } : options,
  decoding: {
    defaults: { cache: true },
    rules: { cache: { type: "boolean" } },
    init: () => ({}),
    advance: (tensors, { qkv, position }, o) => {
      if (o.cache) {
        // Row t reads only keys and values <= t: the cache holds them all, and one masked product serves p queries.
        const k = appendTokens(tensors.k, qkv.k); // [b, h, t+p, dk]
        const v = appendTokens(tensors.v, qkv.v); // [b, h, t+p, dv]
        const p = qkv.q.shape[2];
        const allowed = lowerTriangle(p, { cols: position + p, offset: position }); // [p, t+p]
        const scale = o.scale ?? 1 / Math.sqrt(k.shape[3]);
        const out = maskedAttend({ q: qkv.q, k, v }, { allowed, scale, scores: maskedSoftmax });
        return { out, tensors: { k, v } };
      }
      // No cache: keep the prefix's inputs and re-run the causal attention over all of it at every call.
      const prefix = {
        q: appendTokens(tensors.q, qkv.q), // [b, h, t+p, dk]
        k: appendTokens(tensors.k, qkv.k), // [b, h, t+p, dk]
        v: appendTokens(tensors.v, qkv.v), // [b, h, t+p, dv]
      };
      const all = softmaxAttend(prefix, o); // [b, h, t+p, dv]
      const p = qkv.q.shape[2];
      return { out: sliceTokens(all, all.shape[2] - p, p), tensors: prefix };
    },
  },
});
