/**
 * Pieces shared by the decoding engines of the variants that keep keys and values instead of a fixed-size state
 * (softmax's KV cache, diag's block, local's window). Private to lib/attention.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { QKV } from "./types.ts";

/**
 * Tokens [from, from + size) of x [b, h, n, d].
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { sliceTokens } from "./_decoding.ts";
 * console.log(sliceTokens(tf.zeros([1, 2, 5, 3]) as tf.Tensor4D, 1, 2).shape.join(",")); // 1,2,2,3
 * ```
 */
export function sliceTokens(x: tf.Tensor4D, from: number, size: number): tf.Tensor4D {
  return tf.slice(x, [0, 0, from, 0], [-1, -1, size, -1]) as tf.Tensor4D;
}

/**
 * The cache [b, h, t, d] followed by the new tokens x [b, h, p, d] (x alone when there is no cache yet).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { appendTokens } from "./_decoding.ts";
 * const x = tf.zeros([1, 1, 2, 3]) as tf.Tensor4D;
 * console.log(appendTokens(undefined, x) === x, appendTokens(x, x).shape.join(",")); // true 1,1,4,3
 * ```
 */
export function appendTokens(cache: tf.Tensor | undefined, x: tf.Tensor4D): tf.Tensor4D {
  return cache === undefined ? x : tf.concat([cache as tf.Tensor4D, x], 2) as tf.Tensor4D;
}

/** How the scores of masked attention come from its logits [..., p, c] and a 0/1 mask [p, c]. */
export type MaskedScores = (logits: tf.Tensor, allowed: tf.Tensor) => tf.Tensor;

/**
 * Queries against an explicit key set under a 0/1 mask: `scores(q Kᵀ·scale, allowed) V`, e.g. softmax with the mask's
 * bias (maskedSoftmax) or diag's relu scores.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { maskedAttend } from "./_decoding.ts";
 * import { maskedSoftmax } from "./variant.ts";
 * const q = tf.zeros([1, 1, 1, 2]) as tf.Tensor4D;
 * const k = tf.zeros([1, 1, 2, 2]) as tf.Tensor4D;
 * const v = tf.tensor4d([1, 3], [1, 1, 2, 1]);
 * const out = maskedAttend({ q, k, v }, { allowed: tf.ones([1, 2]) as tf.Tensor2D, scale: 1, scores: maskedSoftmax });
 * console.log(out.dataSync()[0]); // 2
 * ```
 */
export function maskedAttend(
  qkv: QKV,
  options: { allowed: tf.Tensor2D; scale: number; scores: MaskedScores },
): tf.Tensor4D {
  const logits = tf.mul(tf.matMul(qkv.q, qkv.k, false, true), options.scale); // [b, h, p, c]
  const scores = options.scores(logits, options.allowed); // [b, h, p, c]
  return tf.matMul(scores, qkv.v) as tf.Tensor4D; // [b, h, p, dv]
}

/** A [p, c + p] 0/1 mask: p new queries against c cached keys then the p new keys; query r sits at key index c + r. */
function bandMask(sizes: { rows: number; cached: number }, allowed: (i: number, j: number) => boolean): tf.Tensor2D {
  const { rows: p, cached: c } = sizes;
  const data = new Float32Array(p * (c + p));
  for (let r = 0; r < p; r++) {
    for (let col = 0; col < c + p; col++) {
      data[r * (c + p) + col] = allowed(r + c, col) ? 1 : 0;
    }
  }
  return tf.tensor2d(data, [p, c + p]); // [p, c+p]
}

/**
 * Runs the p new tokens piece by piece; each piece attends to the cached keys plus its own under `visible` (absolute
 * positions), then `keep` says how many of the most recent keys the next piece still needs. The state is
 * `{ k, v }` of those keys, or `{}` when none are kept.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { windowedAdvance } from "./_decoding.ts";
 * import { maskedSoftmax } from "./variant.ts";
 * const x = tf.ones([1, 1, 3, 2]) as tf.Tensor4D;
 * const run = windowedAdvance({}, {
 *   qkv: { q: x, k: x, v: x },
 *   position: 0,
 *   pieceEnd: (start) => start + 2,
 *   visible: (i, j) => j <= i && i - j <= 1,
 *   keep: (_, available) => Math.min(available, 1),
 *   scores: maskedSoftmax,
 * });
 * console.log(run.out.shape.join(","), run.tensors.k.shape.join(",")); // 1,1,3,2 1,1,1,2
 * ```
 */
export function windowedAdvance(
  tensors: Readonly<Record<string, tf.Tensor>>,
  options: {
    qkv: QKV;
    position: number;
    pieceEnd: (start: number) => number;
    visible: (i: number, j: number) => boolean;
    keep: (end: number, available: number) => number;
    scores: MaskedScores;
  },
): { out: tf.Tensor4D; tensors: Record<string, tf.Tensor> } {
  const { qkv } = options;
  const p = qkv.q.shape[2];
  const scale = 1 / Math.sqrt(qkv.q.shape[3]);
  let cache: { k?: tf.Tensor4D; v?: tf.Tensor4D } = { k: tensors.k as tf.Tensor4D, v: tensors.v as tf.Tensor4D };
  const outs: tf.Tensor4D[] = [];
  for (let start = 0; start < p;) {
    const end = Math.min(p, options.pieceEnd(options.position + start) - options.position);
    const len = end - start;
    const k = appendTokens(cache.k, sliceTokens(qkv.k, start, len)); // [b, h, c+len, dk]
    const v = appendTokens(cache.v, sliceTokens(qkv.v, start, len)); // [b, h, c+len, dv]
    const c = k.shape[2] - len;
    const first = options.position + start - c;
    const allowed = bandMask({ rows: len, cached: c }, (i, j) => options.visible(first + i, first + j)); // [len, c+len]
    outs.push(maskedAttend({ q: sliceTokens(qkv.q, start, len), k, v }, { allowed, scale, scores: options.scores }));
    const kept = options.keep(options.position + end, c + len);
    cache = kept === 0 ? {} : { k: sliceTokens(k, c + len - kept, kept), v: sliceTokens(v, c + len - kept, kept) };
    start = end;
  }
  const out = outs.length === 1 ? outs[0] : tf.concat(outs, 2) as tf.Tensor4D; // [b, h, p, dv]
  const next: Record<string, tf.Tensor> = cache.k && cache.v ? { k: cache.k, v: cache.v } : {};
  return { out, tensors: next };
}
