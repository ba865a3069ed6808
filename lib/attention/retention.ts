/**
 * Retention (Sun et al., 2023, "Retentive Network: A Successor to Transformer for Large Language Models"): linear
 * attention with a fixed exponential decay γ_h per head, and no softmax, feature map or denominator,
 *
 *     o_n = Σ_{m ≤ n} γ^(n−m) (q_n · k_m) · scale · v_m
 *
 * with three forms of one computation (README.md beside this file derives them):
 * - naive, `weights()`: the decay-masked matrix (Q Kᵀ · scale) ⊙ D, D_nm = γ^(n−m) for m ≤ n, 0 above;
 * - chunked: inside a chunk of C tokens that masked C × C product, across chunks a state carried with decay (on the
 *   blas backend, attend() runs it as the fused causal product with a decay: one kernel each way);
 * - recurrent: S_n = γ S_{n−1} + k_nᵀ v_n, o_n = scale · q_n S_n, a state S of dk × dv per head.
 *
 * RetNet's language model is causal, and so are its three forms. `causal: false` (a bidirectional layer: mlm,
 * classification) is defined here as the symmetric decay γ^|n−m|: the causal sum plus its mirror over the reversed
 * sequence, minus the diagonal counted twice. RetNet's xPos rotation, group norm and gate belong to its layer,
 * not to retention itself, and are left out (a model's `rotary` supplies relative positions).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { CAUSAL_PRODUCT, causalProduct } from "../blas/fused_causal.ts";
import { kernelFlops } from "./kernel.ts";
import type { AttentionOptions, QK, QKV, StateDims } from "./types.ts";
import { defineVariant, paddedLength, zeroPadKeys } from "./variant.ts";

/** Options of {@linkcode retention}. */
export interface RetentionOptions extends AttentionOptions {
  /**
   * The decay γ in (0, 1]: one number for every head, one per head, or null (default) for RetNet's γ_h = 1 − 2^(−5−h)
   * (head h = 0, 1, ...: 0.96875, 0.984375, ...). γ = 1 keeps everything: unnormalised linear attention.
   */
  gamma?: number | readonly number[] | null;
  /** Multiplies q · k; default null: 1/√dk, as RetNet scales its keys. */
  scale?: number | null;
  /** Tokens per chunk of the chunkwise form; default 64. */
  chunkSize?: number;
}

/** The carried state of causal retention: S_n = Σ_{m ≤ n} γ^(n−m) k_mᵀ v_m. */
export type RetentionState = {
  /** [batch, heads, dk, dv] */
  s: tf.Tensor4D;
};

/**
 * The decay of each of `heads` heads: `gamma` as given (one number, or one per head), or RetNet's 1 − 2^(−5−h).
 *
 * @example
 * ```ts
 * import { retentionDecays } from "./retention.ts";
 * console.log(retentionDecays(3, null).join(" ")); // 0.96875 0.984375 0.9921875
 * console.log(retentionDecays(2, 0.5).join(" ")); // 0.5 0.5
 * ```
 */
export function retentionDecays(heads: number, gamma: number | readonly number[] | null): number[] {
  if (gamma === null) return Array.from({ length: heads }, (_, h) => 1 - Math.pow(2, -5 - h));
  if (typeof gamma === "number") return new Array(heads).fill(gamma);
  if (gamma.length !== heads) {
    throw new RangeError(
      `retention: option gamma has ${gamma.length} values but the input has ${heads} heads; ` +
        `give one per head or a single number`,
    );
  }
  return [...gamma];
}

const scaleOf = (dk: number, o: Required<RetentionOptions>) => o.scale ?? 1 / Math.sqrt(dk);

/** [heads, ...shape] float32 from f(head decay γ, index), computed in float64. */
function perHead(gammas: number[], shape: number[], f: (gamma: number, index: number[]) => number): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const strides = shape.map((_, axis) => shape.slice(axis + 1).reduce((a, b) => a * b, 1));
  const data = new Float32Array(gammas.length * size);
  const index = shape.map(() => 0);
  gammas.forEach((gamma, h) => {
    for (let flat = 0; flat < size; flat++) {
      for (let axis = 0; axis < shape.length; axis++) index[axis] = Math.floor(flat / strides[axis]) % shape[axis];
      data[h * size + flat] = f(gamma, index);
    }
  });
  return tf.tensor(data, [gammas.length, ...shape]);
}

/** D [heads, n, n]: γ^(i−j) for j <= i and 0 above (causal), or γ^|i−j| (bidirectional). */
function decayMatrix(gammas: number[], n: number, causal: boolean): tf.Tensor3D {
  return perHead(gammas, [n, n], (g, [i, j]) => (causal && j > i ? 0 : Math.pow(g, Math.abs(i - j)))) as tf.Tensor3D;
}

function weights({ q, k }: QK, o: Required<RetentionOptions>): tf.Tensor4D {
  const [, h, n, dk] = q.shape;
  const d = decayMatrix(retentionDecays(h, o.gamma), n, o.causal); // [h, n, n]
  const keys = zeroPadKeys(k, o.keyMask); // [b, h, n, dk]
  return tf.mul(tf.mul(tf.matMul(q, keys, false, true), scaleOf(dk, o)), d) as tf.Tensor4D; // [b, h, n, n]
}

/**
 * The chunkwise form: n tokens from the state S_0 (zeros when null) after the tokens before them. For chunk c of C
 * tokens at local positions r, t and S_{<c} the state before it,
 *   O_c = ((Q_c K_cᵀ · scale) ⊙ D_C) V_c + (γ^(r+1) ⊙ Q_c · scale) S_{<c},
 *   S_{<c+1} = γ^L S_{<c} + (γ^(L−1−t) ⊙ K_c)ᵀ V_c   (L: the chunk's real tokens, C but in the last chunk).
 * The states are carried by a loop over chunks of elementwise updates; every product is batched over all chunks.
 */
function chunked(
  qkv: QKV,
  o: Required<RetentionOptions>,
  state: tf.Tensor4D | null,
): { output: tf.Tensor4D; s: tf.Tensor4D } {
  const [b, h, n, dk] = qkv.q.shape;
  const dv = qkv.v.shape[3];
  const gammas = retentionDecays(h, o.gamma);
  const c = Math.min(o.chunkSize, n);
  const nc = Math.ceil(n / c);
  const last = n - (nc - 1) * c; // real tokens in the last chunk
  const length = (chunk: number) => (chunk === nc - 1 ? last : c);
  // Zero keys and values after the last token add nothing to any state; their query rows are cut.
  const chunks = (x: tf.Tensor4D) => {
    const padded = paddedLength(n, c) === n ? x : tf.pad(x, [[0, 0], [0, 0], [0, paddedLength(n, c) - n], [0, 0]]);
    return tf.reshape(padded, [b, h, nc, c, x.shape[3]]); // [b, h, nc, C, d]
  };
  const qc = chunks(tf.mul(qkv.q, scaleOf(dk, o)) as tf.Tensor4D); // [b, h, nc, C, dk]
  const kc = chunks(qkv.k); // [b, h, nc, C, dk]
  const vc = chunks(qkv.v); // [b, h, nc, C, dv]

  const inChunk = perHead(gammas, [1, c, c], (g, [, r, t]) => (t <= r ? Math.pow(g, r - t) : 0)); // [h, 1, C, C]
  const intra = tf.mul(tf.matMul(qc, kc, false, true), inChunk); // [b, h, nc, C, C]
  const keyDecay = perHead(gammas, [nc, c, 1], (g, [ch, t]) => (t < length(ch) ? Math.pow(g, length(ch) - 1 - t) : 0)); // [h, nc, C, 1]
  const chunkKV = tf.unstack(tf.matMul(tf.mul(kc, keyDecay), vc, true, false), 2); // nc × [b, h, dk, dv]
  const carry = (chunk: number) => tf.reshape(tf.tensor1d(gammas.map((g) => Math.pow(g, length(chunk)))), [1, h, 1, 1]); // [1, h, 1, 1]
  const full = carry(0);
  const before: tf.Tensor4D[] = [];
  let s = state ?? (tf.zeros([b, h, dk, dv]) as tf.Tensor4D); // [b, h, dk, dv]
  for (let chunk = 0; chunk < nc; chunk++) {
    before.push(s);
    s = tf.add(tf.mul(s, chunk === nc - 1 ? carry(chunk) : full), chunkKV[chunk]) as tf.Tensor4D;
  }
  const queryDecay = perHead(gammas, [1, c, 1], (g, [, r]) => Math.pow(g, r + 1)); // [h, 1, C, 1]
  const inter = tf.matMul(tf.mul(qc, queryDecay), tf.stack(before, 2)); // [b, h, nc, C, dv]
  const out = tf.add(tf.matMul(intra, vc), inter); // [b, h, nc, C, dv]
  const output = tf.slice(tf.reshape(out, [b, h, nc * c, dv]), [0, 0, 0, 0], [b, h, n, dv]) as tf.Tensor4D;
  return { output, s };
}

/** One token: S = γ S + kᵀ v, o = scale · q S. q, k [b, h, 1, dk], v [b, h, 1, dv]. */
function step(qkv: QKV, o: Required<RetentionOptions>, state: tf.Tensor4D): { output: tf.Tensor4D; s: tf.Tensor4D } {
  const [, h, , dk] = qkv.q.shape;
  const gamma = tf.reshape(tf.tensor1d(retentionDecays(h, o.gamma)), [1, h, 1, 1]); // [1, h, 1, 1]
  const s = tf.add(tf.mul(state, gamma), tf.matMul(qkv.k, qkv.v, true, false)) as tf.Tensor4D; // [b, h, dk, dv]
  const output = tf.matMul(tf.mul(qkv.q, scaleOf(dk, o)), s) as tf.Tensor4D; // [b, h, 1, dv]
  return { output, s };
}

/**
 * On the blas backend: the fused causal product with the decay (lib/blas/fused_causal.ts), one kernel each way per
 * direction, through sgemm on chunks and never an n × n or rank-5 tensor; bidirectional adds the anti-causal product.
 */
function fusedAttend(qkv: QKV, o: Required<RetentionOptions>): tf.Tensor4D {
  const [, h, , dk] = qkv.q.shape;
  const q = tf.mul(qkv.q, scaleOf(dk, o)) as tf.Tensor4D; // [b, h, n, dk]
  const options = { chunkSize: o.chunkSize, decay: retentionDecays(h, o.gamma) };
  const forward = causalProduct({ q, k: qkv.k, v: qkv.v }, options); // [b, h, n, dv]
  if (o.causal) return forward;
  const backward = causalProduct({ q, k: qkv.k, v: qkv.v }, { ...options, reverse: true }); // [b, h, n, dv]
  const self = tf.mul(tf.sum(tf.mul(q, qkv.k), -1, true), qkv.v); // [b, h, n, dv]: the diagonal, in both
  return tf.sub(tf.add(forward, backward), self) as tf.Tensor4D;
}

function attend(given: QKV, o: Required<RetentionOptions>): tf.Tensor4D {
  // No denominator: a pad key with k_j = 0 adds nothing to any output or state, and positions (the decay) stay put.
  const qkv = { ...given, k: zeroPadKeys(given.k, o.keyMask) }; // k [b, h, n, dk]
  if (qkv.q.shape[2] > 0 && tf.getKernel(CAUSAL_PRODUCT, tf.getBackend()) !== undefined) return fusedAttend(qkv, o);
  const forward = chunked(qkv, o, null).output; // [b, h, n, dv]
  if (o.causal) return forward;
  // γ^|n−m| = the causal sum, plus the causal sum over the reversed sequence, minus the diagonal (in both).
  const reverse = (x: tf.Tensor4D) => tf.reverse(x, 2) as tf.Tensor4D;
  const backward = reverse(chunked({ q: reverse(qkv.q), k: reverse(qkv.k), v: reverse(qkv.v) }, o, null).output);
  const self = tf.mul(tf.mul(tf.sum(tf.mul(qkv.q, qkv.k), -1, true), scaleOf(qkv.q.shape[3], o)), qkv.v); // [b, h, n, dv]
  return tf.sub(tf.add(forward, backward), self) as tf.Tensor4D;
}

/**
 * The `retention` variant. Its recurrent forms (`chunkedAttend`, `recurrentAttend`, `recurrentStep`) carry
 * {@linkcode RetentionState} { s: [b, h, dk, dv] }, and its decoder steps the recurrence: O(dk dv) per token.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { retention } from "./retention.ts";
 * const q = tf.randomNormal([1, 2, 70, 4]) as tf.Tensor4D;
 * const v = tf.randomNormal([1, 2, 70, 3]) as tf.Tensor4D;
 * const fast = retention.attend({ q, k: q, v }, { causal: true, chunkSize: 16 });
 * const naive = retention.reference({ q, k: q, v }, { causal: true });
 * const { output } = retention.recurrentAttend({ q, k: q, v });
 * console.log(tf.max(tf.abs(tf.sub(fast, naive))).dataSync()[0] < 1e-4); // true
 * console.log(tf.max(tf.abs(tf.sub(output, naive))).dataSync()[0] < 1e-4); // true
 * ```
 */
export const retention = defineVariant<RetentionOptions, RetentionState>({
  name: "retention",
  defaults: { causal: false, gamma: null, scale: null, chunkSize: 64 },
  rules: {
    causal: { type: "boolean" },
    gamma: { type: "number", min: 0, exclusiveMin: true, max: 1, nullable: true, list: true },
    scale: { type: "number", min: 0, exclusiveMin: true, nullable: true },
    chunkSize: { type: "number", min: 1, integer: true },
  },
  weights,
  attend,
  // The chunkwise form's products are those of causal kernel attention over m = dk; bidirectional runs it twice.
  flops: (size, o) => {
    const causal = kernelFlops(size, { causal: true, chunkSize: o.chunkSize, m: size.dk });
    return o.causal ? causal : { fwd: 2 * causal.fwd, fwdBwd: 2 * causal.fwdBwd };
  },
  recurrent: {
    shapes: ({ batch, heads, dk, dv }: StateDims) => ({ s: [batch, heads, dk, dv] }),
    chunked: (qkv, o, { state }) => {
      const run = chunked(qkv, o, state?.s ?? null);
      return { output: run.output, state: { s: run.s } };
    },
    step: (qkv, o, { state }) => {
      const run = step(qkv, o, state.s);
      return { output: run.output, state: { s: run.s } };
    },
  },
});
