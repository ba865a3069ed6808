/**
 * Performer / FAVOR+ (Choromanski et al., 2021): positive orthogonal random features
 * phi(x) = m^(-1/2) exp(W x' - |x'|^2 / 2), x' = dk^(-1/4) x, so that
 * E[phi(q) . phi(k)] = exp(q . k / sqrt(dk)); then normalised linear attention.
 * Its recurrent forms carry S [m, dv], z [m], the keys' running maximum c and the projection [m, dk] (README.md,
 * decoding): O(m (dk + dv)) per token.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { seededNormal } from "../random.ts";
import { kernelAttend, kernelChunked, kernelFlops, kernelMatrix, kernelStep } from "./kernel.ts";
import type { AttentionOptions, QKV, StateDims } from "./types.ts";
import { defineVariant } from "./variant.ts";

/** Options of {@linkcode performer}. */
export interface PerformerOptions extends AttentionOptions {
  /** Number of random features m; default (null) ceil(dk ln dk), at least 1. */
  features?: number | null;
  /** Seed of the random projection; default 0. */
  seed?: number;
  /** An explicit [features, dk] projection; overrides seed (and must agree with features if both are given). */
  projection?: tf.Tensor2D | null;
  /**
   * Added to each row's denominator at the unstabilised scale, D̂ = Σ φ̂(q)·φ̂(k) ≈ Σ exp(q·k/√dk);
   * default 1e-9. The max-stabilisers do not change its effect (README.md, Performer).
   */
  eps?: number;
  /** Tokens per chunk of the causal chunkwise form; default 64. */
  chunkSize?: number;
}

/**
 * Performer's default number of random features for key size dk: ⌈dk·ln dk⌉, at least 1.
 *
 * @example
 * ```ts
 * import { performerFeatures } from "./performer.ts";
 * console.log(performerFeatures(64), performerFeatures(1)); // 267 1
 * ```
 */
export function performerFeatures(dk: number): number {
  if (typeof dk !== "number") throw new TypeError(`performerFeatures: dk must be a positive integer, got ${dk}`);
  if (!Number.isInteger(dk) || dk < 1) {
    throw new RangeError(`performerFeatures: dk must be a positive integer, got ${dk}`);
  }
  return Math.max(1, Math.ceil(dk * Math.log(dk)));
}

/**
 * Positive orthogonal random features: [m, d] rows, orthogonal within each block of d rows
 * (Gram-Schmidt of a Gaussian matrix), each rescaled to the norm of an independent
 * d-dimensional Gaussian vector. Generated in JavaScript from the seed.
 *
 * @example
 * ```ts
 * import { orthogonalRandomFeatures } from "./performer.ts";
 * const w = orthogonalRandomFeatures({ features: 6, dk: 4, seed: 0 });
 * console.log(w.shape.join("x")); // 6x4
 * ```
 */
export function orthogonalRandomFeatures(options: { features: number; dk: number; seed: number }): tf.Tensor2D {
  const { features: m, dk: d, seed } = options;
  const gaussian = seededNormal(seed);
  const rows: Float64Array[] = [];
  while (rows.length < m) {
    const block: Float64Array[] = [];
    for (let r = 0; r < d; r++) {
      const row = Float64Array.from({ length: d }, gaussian);
      for (const prev of block) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += row[i] * prev[i];
        for (let i = 0; i < d; i++) row[i] -= dot * prev[i];
      }
      const len = Math.hypot(...row);
      for (let i = 0; i < d; i++) row[i] /= len;
      block.push(row);
    }
    rows.push(...block);
  }
  const data = new Float32Array(m * d);
  for (let r = 0; r < m; r++) {
    const chi = Math.hypot(...Array.from({ length: d }, gaussian));
    for (let i = 0; i < d; i++) data[r * d + i] = rows[r][i] * chi;
  }
  return tf.tensor2d(data, [m, d]);
}

/**
 * FAVOR+ features of x [b, h, n, dk] under projection w [m, dk] -> [b, h, n, m].
 * A max is subtracted inside exp for stability: per row for queries (it cancels in each
 * row's normalisation), one per (batch, head) for keys (it cancels across all keys).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { favorFeatures, orthogonalRandomFeatures } from "./performer.ts";
 * const w = orthogonalRandomFeatures({ features: 8, dk: 4, seed: 1 });
 * const f = favorFeatures(tf.randomNormal([1, 1, 3, 4]) as tf.Tensor4D, { projection: w, role: "query" });
 * console.log(f.shape.join(","), tf.min(f).dataSync()[0] > 0); // 1,1,3,8 true
 * ```
 */
export function favorFeatures(
  x: tf.Tensor4D,
  options: { projection: tf.Tensor2D; role: "query" | "key" },
): tf.Tensor4D {
  return tf.tidy(() => favorWithStabiliser(x, options).features);
}

/**
 * The FAVOR+ features of {@linkcode favorFeatures} with the stabiliser c subtracted inside their
 * exp: [b, h, n, 1] (each row's maximum) for queries, [b, h, 1, 1] (the maximum over all keys) for
 * keys. The unstabilised features are `features · e^c`.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { favorFeatures, favorWithStabiliser, orthogonalRandomFeatures } from "./performer.ts";
 * const projection = orthogonalRandomFeatures({ features: 8, dk: 4, seed: 1 });
 * const x = tf.randomNormal([1, 1, 3, 4]) as tf.Tensor4D;
 * const { features, stabiliser } = favorWithStabiliser(x, { projection, role: "key" });
 * const plain = favorFeatures(x, { projection, role: "key" });
 * console.log(stabiliser.shape.join(","), tf.max(tf.abs(tf.sub(features, plain))).dataSync()[0]); // 1,1,1,1 0
 * ```
 */
export function favorWithStabiliser(
  x: tf.Tensor4D,
  options: { projection: tf.Tensor2D; role: "query" | "key" },
): { features: tf.Tensor4D; stabiliser: tf.Tensor4D } {
  return tf.tidy(() => {
    const parts = favorParts(x, options.projection);
    const { wx } = parts;
    const stabiliser = (options.role === "query" ? tf.max(wx, -1, true) : tf.max(wx, [2, 3], true)) as tf.Tensor4D;
    return { features: favorExp(parts, stabiliser), stabiliser };
  });
}

/** The pieces of FAVOR+ before the exp: w·x' [b, h, n, m] and |x'|²/2 [b, h, n, 1], with x' = dk^(-1/4) x. */
interface FavorParts {
  wx: tf.Tensor4D;
  half: tf.Tensor4D;
  m: number;
}

function favorParts(x: tf.Tensor4D, projection: tf.Tensor2D): FavorParts {
  const [m, dk] = projection.shape;
  const xs = tf.mul(x, Math.pow(dk, -0.25)); // [b, h, n, dk]
  const wx = tf.matMul(xs, projection, false, true) as tf.Tensor4D; // [b, h, n, m]
  const half = tf.mul(tf.sum(tf.square(xs), -1, true), 0.5) as tf.Tensor4D; // [b, h, n, 1]
  return { wx, half, m };
}

/** m^(-1/2) exp(w·x' − |x'|²/2 − c): the features at the scale of the stabiliser c (broadcast against wx). */
function favorExp({ wx, half, m }: FavorParts, stabiliser: tf.Tensor): tf.Tensor4D {
  return tf.mul(tf.exp(tf.sub(tf.sub(wx, half), stabiliser)), 1 / Math.sqrt(m)) as tf.Tensor4D; // [b, h, n, m]
}

/** The smallest positive normal float32. */
const FLOAT32_MIN_NORMAL = 1.1754943508222875e-38;

/**
 * Divides numerators [b, h, n, dv] by their stabilised denominators [b, h, n, 1] plus `eps`
 * taken at the unstabilised scale: `eps e^(−scale)`, where `scale` [b, h, n, 1] is the sum of the
 * query's and the keys' stabilisers (README.md, Performer). So the result is N̂ / (D̂ + eps) with
 * N̂, D̂ the unstabilised sums, whatever the stabilisers. Where every feature of a row underflowed
 * (D = 0), a floor at float32's smallest normal number keeps the row finite (0) when eps > 0.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { favorNormalize } from "./performer.ts";
 * const num = tf.tensor4d([2e-20], [1, 1, 1, 1]);
 * const den = tf.tensor4d([1e-20], [1, 1, 1, 1]);
 * // D̂ = 1e-20 e^40 ≈ 2.4e-3, so an eps of 1e-9 leaves the ratio 2 alone (an absolute eps would give 2e-11).
 * const out = favorNormalize(num, { den, scale: tf.tensor4d([40], [1, 1, 1, 1]), eps: 1e-9 });
 * console.log(out.dataSync()[0].toFixed(4)); // 2.0000
 * ```
 */
export function favorNormalize(
  num: tf.Tensor4D,
  options: { den: tf.Tensor4D; scale: tf.Tensor4D; eps: number },
): tf.Tensor4D {
  const { den, scale, eps } = options;
  if (eps === 0) return tf.div(num, den);
  return tf.tidy(() => {
    // eps e^(−scale) in log space: e^(−scale) alone may overflow where the product does not.
    const shift = tf.exp(tf.sub(Math.log(eps), scale)); // [b, h, n, 1]
    return tf.div(num, tf.maximum(tf.add(den, shift), FLOAT32_MIN_NORMAL)) as tf.Tensor4D; // [b, h, n, dv]
  });
}

function checkFeatures(o: Required<PerformerOptions>, owner = "performer"): void {
  if (o.projection !== null && o.features !== null && o.features !== o.projection.shape[0]) {
    throw new Error(
      `${owner}: option features (${o.features}) disagrees with projection's ${
        o.projection.shape[0]
      } rows; give only one`,
    );
  }
}

/** m: the projection's rows, or the option features, or the default ⌈dk ln dk⌉. */
function featureCount(dk: number, o: Required<PerformerOptions>): number {
  return o.projection?.shape[0] ?? o.features ?? performerFeatures(dk);
}

function projectionFor(dk: number, o: Required<PerformerOptions>): tf.Tensor2D {
  checkFeatures(o);
  if (o.projection !== null) {
    const [m, d] = o.projection.shape;
    if (d !== dk) {
      throw new Error(`performer: option projection must be [features, dk] with dk = ${dk}, got [${m}, ${d}]`);
    }
    return o.projection;
  }
  return orthogonalRandomFeatures({ features: featureCount(dk, o), dk, seed: o.seed });
}

function features({ q, k }: { q: tf.Tensor4D; k: tf.Tensor4D }, o: Required<PerformerOptions>) {
  const projection = projectionFor(q.shape[3], o);
  const fq = favorWithStabiliser(q, { projection, role: "query" });
  const fk = favorWithStabiliser(k, { projection, role: "key" });
  // Row i's features were scaled by e^(−c_q,i − c_k): eps is added at the unstabilised scale.
  return { fq: fq.features, fk: fk.features, scale: tf.add(fq.stabiliser, fk.stabiliser) as tf.Tensor4D };
}

/** The carried state of causal Performer attention; see {@linkcode performer}. */
export type PerformerState = {
  /** [m, dk]: fixed for the whole sequence. */
  projection: tf.Tensor2D;
  /** Σ φ(k) vᵀ at the scale e^(−c): [batch, heads, m, dv]. */
  s: tf.Tensor4D;
  /** Σ φ(k) at the scale e^(−c): [batch, heads, m]. */
  z: tf.Tensor3D;
  /** The running maximum of the keys' w·x' so far, −∞ before the first key: [batch, heads, 1, 1]. */
  c: tf.Tensor4D;
};

function initialPerformerState({ batch, heads, dk, dv }: StateDims, o: Required<PerformerOptions>): PerformerState {
  const given = o.projection !== null;
  const projection = given ? tf.clone(projectionFor(dk, o)) : projectionFor(dk, o); // [m, dk]
  const m = projection.shape[0];
  return {
    projection,
    s: tf.zeros([batch, heads, m, dv]),
    z: tf.zeros([batch, heads, m]),
    c: tf.fill([batch, heads, 1, 1], -Infinity), // [b, h, 1, 1]
  };
}

/**
 * p tokens of causal FAVOR+ from a carried state: chunkwise (prefill) or as one recurrent step (p = 1).
 * favorFeatures subtracts the maximum over all keys, future ones included; a decoder can only know the maximum so far,
 * so the state is kept at that scale and rescaled when it grows (README.md: decoding, Performer).
 */
function performerAdvance(
  state: PerformerState,
  qkv: QKV,
  options: { o: Required<PerformerOptions>; single: boolean },
): { output: tf.Tensor4D; state: PerformerState } {
  const { o, single } = options;
  const { projection } = state;
  const [b, h] = qkv.q.shape;
  const keys = favorParts(qkv.k, projection); // wx [b, h, p, m]
  const c = tf.maximum(state.c, tf.max(keys.wx, [2, 3], true)) as tf.Tensor4D; // [b, h, 1, 1]
  const rescale = tf.exp(tf.sub(state.c, c)); // [b, h, 1, 1]
  const s = tf.mul(state.s, rescale) as tf.Tensor4D; // [b, h, m, dv]
  const z = tf.mul(state.z, tf.reshape(rescale, [b, h, 1])) as tf.Tensor3D; // [b, h, m]
  const fk = favorExp(keys, c); // [b, h, p, m]
  const fq = favorWithStabiliser(qkv.q, { projection, role: "query" }); // features [b, h, p, m]
  // A column of ones after v carries the denominator through the unnormalised kernel (as in attend()),
  // so eps can be added at the unstabilised scale e^(c_q + c).
  const dv = qkv.v.shape[3];
  const last = (x: tf.Tensor4D, from: number, size: number) =>
    tf.slice(x, [0, 0, 0, from], [-1, -1, -1, size]) as tf.Tensor4D;
  const v1 = tf.concat([qkv.v, tf.onesLike(last(qkv.v, 0, 1))], 3) as tf.Tensor4D; // [b, h, p, dv+1]
  const kernel = {
    normalize: false,
    eps: 0,
    state: { s: tf.concat([s, tf.expandDims(z, 3)], 3) as tf.Tensor4D, z }, // s: [b, h, m, dv+1]
  };
  const token = (x: tf.Tensor4D) => tf.squeeze(x, [2]) as tf.Tensor3D;
  const run = single
    ? kernelStep({ fq: token(fq.features), fk: token(fk), v: token(v1) }, kernel)
    : kernelChunked({ fq: fq.features, fk, v: v1 }, { ...kernel, chunkSize: o.chunkSize });
  const both = (single ? tf.expandDims(run.output, 2) : run.output) as tf.Tensor4D; // [b, h, p, dv+1]
  const output = favorNormalize(last(both, 0, dv), {
    den: last(both, dv, 1),
    scale: tf.add(fq.stabiliser, c) as tf.Tensor4D, // [b, h, p, 1]
    eps: o.eps,
  }); // [b, h, p, dv]
  return { output, state: { projection, s: last(run.state.s, 0, dv), z: run.state.z, c } };
}

/**
 * The `performer` variant. weights() is the row-normalised phi(Q) phi(K)^T, which approaches softmax's as features grow.
 * Its recurrent forms carry {@linkcode PerformerState}: the projection attend() builds for the same options (made
 * once by `initialState`), S and z at the scale of the keys' running maximum, and that maximum.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { performer } from "./performer.ts";
 * const q = tf.randomNormal([1, 1, 6, 4]) as tf.Tensor4D;
 * const w = performer.weights({ q, k: q }, { features: 64, seed: 3 });
 * console.log(Math.abs(tf.sum(w, -1).dataSync()[0] - 1) < 1e-4); // true
 * ```
 */
export const performer = defineVariant<PerformerOptions, PerformerState>({
  name: "performer",
  defaults: { causal: false, features: null, seed: 0, projection: null, eps: 1e-9, chunkSize: 64 },
  rules: {
    causal: { type: "boolean" },
    features: { type: "number", min: 1, integer: true, nullable: true },
    seed: { type: "number", min: 0, integer: true },
    projection: { type: "tensor", rank: 2, nullable: true },
    eps: { type: "number", min: 0 },
    chunkSize: { type: "number", min: 1, integer: true },
  },
  weights: (qk, o) => {
    const { fq, fk, scale } = features(qk, o);
    const a = kernelMatrix({ fq, fk }, { causal: o.causal, normalize: false, eps: 0 }); // [b, h, n, n]
    return favorNormalize(a, { den: tf.sum(a, -1, true), scale, eps: o.eps });
  },
  attend: (qkv, o) => {
    const { fq, fk, scale } = features(qkv, o);
    const dv = qkv.v.shape[3];
    // A column of ones after v makes the unnormalised kernel attention carry the denominator too.
    const ones = tf.onesLike(tf.slice(qkv.v, [0, 0, 0, 0], [-1, -1, -1, 1])); // [b, h, n, 1]
    const both = kernelAttend({ fq, fk, v: tf.concat([qkv.v, ones], 3) as tf.Tensor4D }, {
      causal: o.causal,
      normalize: false,
      eps: 0,
      chunkSize: o.chunkSize,
    }); // [b, h, n, dv+1]
    const num = tf.slice(both, [0, 0, 0, 0], [-1, -1, -1, dv]) as tf.Tensor4D; // [b, h, n, dv]
    const den = tf.slice(both, [0, 0, 0, dv], [-1, -1, -1, 1]) as tf.Tensor4D; // [b, h, n, 1]
    return favorNormalize(num, { den, scale, eps: o.eps });
  },
  // Plus 4·bh·n·dk·m for projecting q and k onto the m random features.
  flops: (size, o) => {
    const m = featureCount(size.dk, o);
    const extra = 4 * size.batch * size.heads * size.n * size.dk * m;
    return kernelFlops(size, { causal: o.causal, chunkSize: o.chunkSize, m, extra });
  },
  recurrent: {
    shapes: ({ batch, heads, dk, dv }, o) => {
      const m = featureCount(dk, o);
      return { projection: [m, dk], s: [batch, heads, m, dv], z: [batch, heads, m], c: [batch, heads, 1, 1] };
    },
    init: initialPerformerState,
    check: (o, owner) => checkFeatures(o, owner),
    chunked: (qkv, o, { state }) =>
      performerAdvance(state ?? initialPerformerState(dimsOf(qkv), o), qkv, { o, single: false }),
    step: (qkv, o, { state }) => performerAdvance(state, qkv, { o, single: true }),
  },
});

function dimsOf(qkv: QKV): StateDims {
  const [batch, heads, , dk] = qkv.q.shape;
  return { batch, heads, dk, dv: qkv.v.shape[3] };
}
