/**
 * DiagAttention (Qin et al., 2022): attention inside non-overlapping blocks of `blockSize`
 * tokens, nothing across a block boundary. O(n * blockSize * d).
 * - inner "softmax" (T2): softmax(Q K^T / sqrt(dk)) per block, no norm after.
 * - inner "relu" (T1): relu(Q K^T / sqrt(dk)) per block, no denominator, then SimpleRMSNorm over the hidden dim.
 * Its decoder keeps the keys and values of the current block so far: O(blockSize d) per token.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { windowedAdvance } from "./_decoding.ts";
import { applyOutputNorm } from "./norms.ts";
import type { AttentionOptions } from "./types.ts";
import {
  allowRealKeys,
  defineVariant,
  forwardFlops,
  keyMaskedSoftmax,
  keyRows,
  maskedSoftmax,
  maskFrom,
  paddedLength,
} from "./variant.ts";

/** Options of {@linkcode diag}. */
export interface DiagOptions extends AttentionOptions {
  /** Tokens per block; default 64. */
  blockSize?: number;
  /** Inside a block: "softmax" (T2, default) or "relu" (T1). */
  inner?: "softmax" | "relu";
}

function blockScores(
  logits: tf.Tensor,
  allowed: tf.Tensor,
  o: { inner: "softmax" | "relu"; keyMask: tf.Tensor2D | null },
): tf.Tensor {
  if (o.inner === "relu") return tf.mul(tf.relu(logits), allowed);
  // Under a key mask a query can lose every key of its block: its row is then 0 (keyMaskedSoftmax), not spread evenly.
  return o.keyMask === null ? maskedSoftmax(logits, allowed) : keyMaskedSoftmax(logits, allowed);
}

/** Query i sees key j when both lie in the same block of `blockSize` tokens (and j <= i when causal). */
function visible(i: number, j: number, o: Required<DiagOptions>): boolean {
  return Math.floor(i / o.blockSize) === Math.floor(j / o.blockSize) && (!o.causal || j <= i);
}

function outputNorm(out: tf.Tensor4D, o: Required<DiagOptions>): tf.Tensor4D {
  return o.inner === "relu" ? applyOutputNorm(out, { norm: "srms", scope: "hidden" }) : out;
}

/**
 * The `diag` variant. Lengths not divisible by blockSize are zero-padded and cut back;
 * padded keys are masked, so they never get weight. So are the pad keys of a `keyMask`; a query whose block holds no
 * real key it may see returns 0.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { diag } from "./diag.ts";
 * const q = tf.randomNormal([1, 1, 4, 2]) as tf.Tensor4D;
 * const w = diag.weights({ q, k: q }, { blockSize: 2 }).arraySync()[0][0];
 * console.log(w[0][2] === 0 && w[3][1] === 0); // true
 * ```
 */
export const diag = defineVariant<DiagOptions>({
  name: "diag",
  defaults: { causal: false, blockSize: 64, inner: "softmax" },
  rules: {
    causal: { type: "boolean" },
    blockSize: { type: "number", min: 1, integer: true },
    inner: { type: "enum", values: ["softmax", "relu"] },
  },
  visible,
  weights: ({ q, k }, o) => {
    const [, , n, dk] = q.shape;
    const allowed = allowRealKeys(maskFrom(n, (i, j) => visible(i, j, o)), o.keyMask); // [n, n] or [b, 1, n, n]
    const logits = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(dk)); // [b, h, n, n]
    return blockScores(logits, allowed, o) as tf.Tensor4D;
  },
  outputNorm,
  attend: ({ q, k, v }, o) => {
    const [b, h, n, dk] = q.shape;
    const dv = v.shape[3];
    const size = Math.min(o.blockSize, n);
    const nb = Math.ceil(n / size);
    const pad = nb * size - n;
    const blocks = (x: tf.Tensor4D) => {
      const padded = pad === 0 ? x : tf.pad(x, [[0, 0], [0, 0], [0, pad], [0, 0]]);
      return tf.reshape(padded, [b, x.shape[1], nb, size, x.shape[3]]); // [b, h, nb, B, d]
    };
    const allowedData = new Float32Array(nb * size * size);
    for (let blk = 0; blk < nb; blk++) {
      for (let r = 0; r < size; r++) {
        for (let t = 0; t < size; t++) {
          const real = blk * size + t < n;
          allowedData[(blk * size + r) * size + t] = real && visible(blk * size + r, blk * size + t, o) ? 1 : 0;
        }
      }
    }
    let allowed: tf.Tensor = tf.tensor3d(allowedData, [nb, size, size]); // [nb, B, B]
    if (o.keyMask !== null) {
      // The key mask is blocked as the keys are, then laid along the key axis of each block's scores.
      allowed = tf.mul(allowed, tf.transpose(blocks(keyRows(o.keyMask)), [0, 1, 2, 4, 3])); // [b, 1, nb, B, B]
    }
    const logits = tf.mul(tf.matMul(blocks(q), blocks(k), false, true), 1 / Math.sqrt(dk)); // [b, h, nb, B, B]
    const out = tf.matMul(blockScores(logits, allowed, o), blocks(v)); // [b, h, nb, B, dv]
    const cut = tf.slice(tf.reshape(out, [b, h, nb * size, dv]), [0, 0, 0, 0], [b, h, n, dv]) as tf.Tensor4D;
    return outputNorm(cut, o);
  },
  // `2·bh·N·B·(dk + dv)`, N = n padded to blocks of B.
  flops: ({ batch, heads, n, dk, dv }, o) => {
    const size = Math.min(o.blockSize, n);
    return forwardFlops(2 * batch * heads * paddedLength(n, size) * size * (dk + dv));
  },
  // Token t attends to the keys from B⌊t/B⌋ to t: the state holds the current block's keys and values so far.
  decoding: {
    init: () => ({}),
    advance: (tensors, { qkv, position }, o) => {
      const size = o.blockSize;
      const run = windowedAdvance(tensors, {
        qkv,
        position,
        // A piece never crosses a block boundary, and the cache holds only the current block.
        pieceEnd: (start) => (Math.floor(start / size) + 1) * size,
        visible: (i, j) => visible(i, j, o),
        keep: (end, available) => Math.min(available, end % size),
        scores: (logits, allowed) => blockScores(logits, allowed, o),
      });
      // T1's SimpleRMSNorm acts on each token's hidden vector, which a piece can do alone.
      return { out: outputNorm(run.out, o), tensors: run.tensors };
    },
  },
});
