/**
 * Local (sliding-window) softmax attention: query i attends to keys with |i - j| <= window
 * (causal: i - window <= j <= i). O(n * window * d).
 * Its decoder keeps the last `window` keys and values: O(window d) per token.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { windowedAdvance } from "./_decoding.ts";
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

/** Options of {@linkcode local}. */
export interface LocalOptions extends AttentionOptions {
  /** Largest |i - j| attended to; default 64. */
  window?: number;
}

/** Query i sees key j when |i − j| <= window (and j <= i when causal). */
function visible(i: number, j: number, o: Required<LocalOptions>): boolean {
  return Math.abs(i - j) <= o.window && (!o.causal || j <= i);
}

/**
 * The `local` variant. attend() splits queries into chunks of C = window tokens; the keys any
 * query of chunk c can see lie in chunks c-1, c, c+1, so each chunk attends to 3C keys (causal: chunks c-1 and c,
 * 2C keys, since chunk c+1 is all in the future). With a `keyMask`, pad keys get no weight, and a query whose window
 * holds no real key returns 0.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { local } from "./local.ts";
 * const q = tf.randomNormal([1, 1, 5, 2]) as tf.Tensor4D;
 * const w = local.weights({ q, k: q }, { window: 1 }).arraySync()[0][0];
 * console.log(w[0][2] === 0 && w[4][2] === 0 && w[2][1] > 0); // true
 * ```
 */
export const local = defineVariant<LocalOptions>({
  name: "local",
  defaults: { causal: false, window: 64 },
  rules: { causal: { type: "boolean" }, window: { type: "number", min: 0, integer: true } },
  visible,
  weights: ({ q, k }, o) => {
    const [, , n, dk] = q.shape;
    const allowed = allowRealKeys(maskFrom(n, (i, j) => visible(i, j, o)), o.keyMask); // [n, n] or [b, 1, n, n]
    const logits = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(dk)); // [b, h, n, n]
    return (o.keyMask === null ? maskedSoftmax : keyMaskedSoftmax)(logits, allowed) as tf.Tensor4D;
  },
  attend: ({ q, k, v }, o) => {
    const [b, h, n, dk] = q.shape;
    const dv = v.shape[3];
    const c = Math.max(1, Math.min(o.window, n));
    const nc = Math.ceil(n / c);
    const tail = nc * c - n;
    const queries = tf.reshape(tf.pad(q, [[0, 0], [0, 0], [0, tail], [0, 0]]), [b, h, nc, c, dk]); // [b, h, nc, C, dk]
    // Chunks of keys per query chunk: the one before, its own and (not causal) the one after. A causal chunk's next
    // chunk is all masked, so leaving it out drops a third of the work and none of the weights.
    const span = o.causal ? 2 : 3;
    // Keys padded by one chunk before (and after); chunk c sees padded chunks c .. c + span − 1.
    const neighbourhood = (x: tf.Tensor4D) => {
      const [, hx, , d] = x.shape;
      const after = tail + (span - 2) * c;
      const chunks = tf.reshape(tf.pad(x, [[0, 0], [0, 0], [c, after], [0, 0]]), [b, hx, nc + span - 1, c, d]);
      const shifted = Array.from({ length: span }, (_, s) => tf.slice(chunks, [0, 0, s, 0, 0], [b, hx, nc, c, d]));
      return tf.concat(shifted, 3); // [b, h, nc, span·C, d]
    };
    const allowedData = new Float32Array(nc * c * span * c);
    for (let ch = 0; ch < nc; ch++) {
      for (let r = 0; r < c; r++) {
        const i = ch * c + r;
        for (let t = 0; t < span * c; t++) {
          const j = ch * c - c + t;
          const ok = j >= 0 && j < n && visible(i, j, o);
          allowedData[(ch * c + r) * span * c + t] = ok ? 1 : 0;
        }
      }
    }
    let allowed: tf.Tensor = tf.tensor3d(allowedData, [nc, c, span * c]); // [nc, C, span·C]
    let scores = maskedSoftmax;
    if (o.keyMask !== null) {
      // The key mask is gathered as the keys are, then laid along the key axis of each chunk's scores; a query whose
      // window holds only pad keys gets a 0 row (keyMaskedSoftmax).
      allowed = tf.mul(allowed, tf.transpose(neighbourhood(keyRows(o.keyMask)), [0, 1, 2, 4, 3])); // [b, 1, nc, C, 3C]
      scores = keyMaskedSoftmax;
    }
    const logits = tf.mul(tf.matMul(queries, neighbourhood(k), false, true), 1 / Math.sqrt(dk)); // [b, h, nc, C, span·C]
    const out = tf.matMul(scores(logits, allowed), neighbourhood(v)); // [b, h, nc, C, dv]
    return tf.slice(tf.reshape(out, [b, h, nc * c, dv]), [0, 0, 0, 0], [b, h, n, dv]) as tf.Tensor4D;
  },
  // `2·bh·N·3C·(dk + dv)` (causal: 2C), C = window (at least 1), N = n padded to chunks of C.
  flops: ({ batch, heads, n, dk, dv }, o) => {
    const c = Math.max(1, Math.min(o.window, n));
    return forwardFlops(2 * batch * heads * paddedLength(n, c) * (o.causal ? 2 : 3) * c * (dk + dv));
  },
  // Query i attends to keys i − window .. i: the state keeps the last `window` keys and values, those the next query
  // needs besides its own (window 0 keeps nothing); a prompt runs in pieces of `window` queries.
  decoding: {
    init: () => ({}),
    advance: (tensors, { qkv, position }, o) =>
      windowedAdvance(tensors, {
        qkv,
        position,
        pieceEnd: (start) => start + Math.max(1, o.window),
        visible: (i, j) => visible(i, j, o),
        keep: (_, available) => Math.min(available, o.window),
        scores: maskedSoftmax,
      }),
  },
});
