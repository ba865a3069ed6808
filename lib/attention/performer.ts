/**
 * Performer / FAVOR+ (Choromanski et al., 2021): positive orthogonal random features
 * phi(x) = m^(-1/2) exp(W x' - |x'|^2 / 2), x' = dk^(-1/4) x, so that
 * E[phi(q) . phi(k)] = exp(q . k / sqrt(dk)); then normalised linear attention.
 *
 * Everything is computed from the log-features log phi(x) (README.md, Performer): out_i is a softmax over the m
 * features of log phi(q_i)_r + log z_r, where z_r = Σ_j phi(k_j)_r is each feature's key mass, applied to each
 * feature's weighted mean of the values. So no feature under- or overflows, whatever the inputs' scale.
 * Two fast forms (option form "auto") fall back to those where float32 could not hold them: weights() by one
 * max-shifted matmul, and causal attend() on the blas backend by the fused causal product (README.md, Performer).
 * Its recurrent forms carry, per feature, the keys' log-mass and weighted mean of v, and the projection [m, dk]
 * (README.md, decoding): O(m (dk + dv)) per token.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { seededNormal } from "../random.ts";
import { CAUSAL_PRODUCT, causalProduct, withOnes } from "../blas/fused_causal.ts";
import { kernelFlops, lowerTriangle } from "./kernel.ts";
import type { AttentionOptions, QKV, StateDims } from "./types.ts";
import { defineVariant, keyRows } from "./variant.ts";

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
  /**
   * Tokens per chunk of the causal chunkwise form; default 64. A chunk's C x C product is one matmul while its keys'
   * range allows it in float32; else chunks of 16 sum it over the m features in log space (README.md, Performer).
   */
  chunkSize?: number;
  /**
   * Which forms run; default "auto": weights() by one max-shifted matmul per (batch, head) (rows where an underflowed
   * entry could matter go to log space), and causal attend() on the blas backend by the fused causal product of
   * lib/blas/fused_causal.ts (when every row sum clears e^−40). "log": always the log-space forms (the reference).
   * The webgpu backend always takes the log-space forms (deciding would read back synchronously).
   */
  form?: "auto" | "log";
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
  const key = `${m},${d},${seed}`;
  // Every attend() of a layer draws the same matrix: computed once per (m, dk, seed), kept as values, not a tensor.
  let data = projections.get(key);
  if (data === undefined) {
    data = drawOrthogonal(m, d, seed);
    projections.set(key, data);
  }
  // A copy: the cpu-based backends keep the array they are given as the tensor's data.
  return tf.tensor2d(data.slice(), [m, d]);
}

/** orthogonalRandomFeatures' values by "m,dk,seed". */
const projections = new Map<string, Float32Array>();

function drawOrthogonal(m: number, d: number, seed: number): Float32Array {
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
  return data;
}

/**
 * The log of the unstabilised FAVOR+ features of x [b, h, n, dk] under projection w [m, dk] -> [b, h, n, m]:
 * log φ̂(x)_r = w_r·x' − |x'|²/2 − ½ ln m, with x' = dk^(−1/4) x. Finite for any finite x (φ̂ itself under- or
 * overflows float32 once these pass about ±88).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { favorLogFeatures } from "./performer.ts";
 * // w = [[1, 0]], x = [2, 0] with dk = 2: x' = 2^(3/4), so log φ̂ = 2^(3/4) − 2^(1/2) ≈ 0.2675.
 * const lf = favorLogFeatures(tf.tensor4d([2, 0], [1, 1, 1, 2]), { projection: tf.tensor2d([[1, 0]]) });
 * console.log(lf.dataSync()[0].toFixed(4)); // 0.2675
 * ```
 */
export function favorLogFeatures(x: tf.Tensor4D, options: { projection: tf.Tensor2D }): tf.Tensor4D {
  return tf.tidy(() => {
    const [m, dk] = options.projection.shape;
    const xs = tf.mul(x, Math.pow(dk, -0.25)); // [b, h, n, dk]
    const wx = tf.matMul(xs, options.projection, false, true); // [b, h, n, m]
    const half = tf.mul(tf.sum(tf.square(xs), -1, true), 0.5); // [b, h, n, 1]
    return tf.sub(wx, tf.add(half, 0.5 * Math.log(m))) as tf.Tensor4D; // [b, h, n, m]
  });
}

/**
 * FAVOR+ features of x [b, h, n, dk] under projection w [m, dk] -> [b, h, n, m], scaled by a constant so that they
 * fit float32: the maximum of log φ̂ is subtracted inside exp, per row for queries and over all keys of a
 * (batch, head) for keys. So every row of query features, and the keys' features as a whole, have largest entry 1.
 * (attend() does not use these: it works from {@linkcode favorLogFeatures}, README.md, Performer.)
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { favorFeatures, orthogonalRandomFeatures } from "./performer.ts";
 * const w = orthogonalRandomFeatures({ features: 8, dk: 4, seed: 1 });
 * // Scaled by 30, log φ̂ lies hundreds below 0: exp of it alone would be 0 in float32.
 * const x = tf.mul(tf.randomNormal([1, 1, 3, 4]), 30) as tf.Tensor4D;
 * const f = favorFeatures(x, { projection: w, role: "query" });
 * console.log(f.shape.join(","), tf.max(f, -1).dataSync().join(" ")); // 1,1,3,8 1 1 1
 * ```
 */
export function favorFeatures(
  x: tf.Tensor4D,
  options: { projection: tf.Tensor2D; role: "query" | "key" },
): tf.Tensor4D {
  return tf.tidy(() => {
    const lf = favorLogFeatures(x, options); // [b, h, n, m]
    const top = options.role === "query" ? tf.max(lf, -1, true) : tf.max(lf, [2, 3], true); // [b, h, n or 1, 1]
    return tf.exp(tf.sub(lf, top)) as tf.Tensor4D; // [b, h, n, m]
  });
}

/** A finite stand-in for −∞ in log space: exp(NEG − x) is 0 for any moderate x, and NEG − NEG is 0 (−∞ − −∞ is NaN). */
const NEG = -1e30;

/**
 * compute(...inputs), off the gradient tape: as a custom gradient with no inputs, backprop never visits it, and the
 * ops of a custom gradient's forward pass are not taped. For the max-stabilisers: a function that does not depend on
 * its stabiliser (they cancel) has the same gradient with the stabiliser held constant.
 */
function untracked<T extends tf.Tensor>(inputs: tf.Tensor[], compute: (...xs: tf.Tensor[]) => T): T {
  const node = tf.customGrad((() => ({ value: compute(...inputs), gradFunc: () => [] })) as never) as () => T;
  return node();
}

/** log(e^a + e^b), elementwise, without overflow. */
function logAddExp<T extends tf.Tensor>(a: T, b: T): T {
  const top = untracked([a, b], tf.maximum);
  return tf.add(top, tf.log(tf.add(tf.exp(tf.sub(a, top)), tf.exp(tf.sub(b, top))))) as T;
}

/**
 * eps·e^(−s): eps at the unstabilised scale of a row whose stabiliser is s (null when eps = 0). The exponent is capped
 * at 40: past it the eps term already exceeds e^40 times the row's largest term, the output is 0 to float32 either
 * way, and the division's gradient (which squares the denominator) stays finite.
 */
function epsTerm(s: tf.Tensor, eps: number): tf.Tensor | null {
  return eps === 0 ? null : tf.exp(tf.minimum(tf.sub(Math.log(eps), s), 40));
}

/**
 * What the keys contribute, per feature r: the log-mass log Σ_j φ̂(k_j)_r [B, m] and the mean of v weighted by
 * φ̂(k_j)_r [B, m, dv], from log-features lk [B, n, m] and values v [B, n, dv] (n ≥ 1 keys, rows at NEG count as none).
 * Also the per-feature maximum `top` [B, 1, m] and the features at that scale, `e` = exp(lk − top) [B, n, m].
 */
function keySummary(
  lk: tf.Tensor3D,
  v: tf.Tensor3D,
): { mass: tf.Tensor2D; mean: tf.Tensor3D; top: tf.Tensor3D; e: tf.Tensor3D } {
  const top = untracked([lk], (x) => tf.max(x, 1, true)) as tf.Tensor3D; // [B, 1, m]
  const e = tf.exp(tf.sub(lk, top)) as tf.Tensor3D; // [B, n, m], largest entry of each feature 1
  const z = tf.sum(e, 1); // [B, m], >= 1
  const kv = tf.matMul(e, v, true, false); // [B, m, dv]
  const mean = tf.div(kv, tf.expandDims(z, 2)) as tf.Tensor3D; // [B, m, dv]
  const mass = tf.add(tf.squeeze(top, [1]), tf.log(z)) as tf.Tensor2D; // [B, m]
  return { mass, mean, top, e };
}

/** The running maximum along axis 1 of x [B, C, m]: Hillis–Steele doubling, ⌈log2 C⌉ steps. */
function runningMax(x: tf.Tensor3D): tf.Tensor3D {
  const [bh, c, m] = x.shape;
  for (let d = 1; d < c; d *= 2) {
    const prev = tf.concat([tf.fill([bh, d, m], NEG), tf.slice(x, [0, 0, 0], [-1, c - d, -1])], 1); // [B, C, m]
    x = tf.maximum(x, prev) as tf.Tensor3D;
  }
  return x;
}

/**
 * Inclusive prefix over axis 1 of K summaries (log-mass [B, K, m], weighted mean [B, K, m, dv]): element k becomes
 * the summary of elements 0..k. Hillis–Steele doubling, ⌈log2 K⌉ steps; each merge is a logaddexp of the masses and a
 * convex combination of the means, so nothing leaves [min, max] of its inputs.
 */
function prefixSummaries(mass: tf.Tensor3D, mean: tf.Tensor4D): { mass: tf.Tensor3D; mean: tf.Tensor4D } {
  const [bh, k, m] = mass.shape;
  const dv = mean.shape[3];
  for (let d = 1; d < k; d *= 2) {
    const prevMass = tf.concat([
      tf.fill([bh, d, m], NEG),
      tf.slice(mass, [0, 0, 0], [-1, k - d, -1]),
    ], 1) as tf.Tensor3D; // [B, K, m]
    const prevMean = tf.concat([
      tf.zeros([bh, d, m, dv]),
      tf.slice(mean, [0, 0, 0, 0], [-1, k - d, -1, -1]),
    ], 1) as tf.Tensor4D; // [B, K, m, dv]
    const next = logAddExp(mass, prevMass); // [B, K, m]
    const weight = (x: tf.Tensor3D) => tf.expandDims(tf.exp(tf.sub(x, next)), 3); // [B, K, m, 1]
    mean = tf.add(tf.mul(mean, weight(mass)), tf.mul(prevMean, weight(prevMass))) as tf.Tensor4D;
    mass = next;
  }
  return { mass, mean };
}

/** [rows, cols] of 0 where key j <= query i (j, i counted from 0), NEG elsewhere: a causal mask added in log space. */
function causalBias(rows: number, cols: number, offset = 0): tf.Tensor2D {
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) data.fill(NEG, i * cols + Math.max(0, Math.min(cols, i + offset + 1)), (i + 1) * cols);
  return tf.tensor2d(data, [rows, cols]);
}

/**
 * Non-causal FAVOR+ from log-features lq, lk [B, n, m] and v [B, n, dv] -> [B, n, dv]:
 * out_i = Σ_r p_ir mean_r / (Σ_r p_ir + eps e^(−s_i)), p_ir = exp(lq_ir + mass_r − s_i), s_i = max_r (lq_ir + mass_r).
 */
function favorGlobal(parts: { lq: tf.Tensor3D; lk: tf.Tensor3D; v: tf.Tensor3D }, eps: number): tf.Tensor3D {
  const { mass, mean } = keySummary(parts.lk, parts.v); // [B, m], [B, m, dv]
  const logits = tf.add(parts.lq, tf.expandDims(mass, 1)); // [B, n, m]
  const s = untracked([logits], (x) => tf.max(x, 2, true)); // [B, n, 1]
  const p = tf.exp(tf.sub(logits, s)); // [B, n, m], largest entry of each row 1
  const num = tf.matMul(p, mean); // [B, n, dv]
  const extra = epsTerm(s, eps);
  const den = extra === null ? tf.sum(p, 2, true) : tf.add(tf.sum(p, 2, true), extra); // [B, n, 1], >= 1
  return tf.div(num, den) as tf.Tensor3D;
}

/** The carried per-feature summaries of the keys so far (log-mass [B, m], weighted mean of v [B, m, dv]). */
interface Summaries {
  mass: tf.Tensor2D;
  mean: tf.Tensor3D;
}

/**
 * The widest gap between a row's cheap upper and lower bounds on its largest term for which the fast product uses
 * the upper bound: the denominator then stays above e^(−40), so its square (the division's gradient) stays a normal
 * float32.
 */
const CHEAP_GAP = 40;

/** The chunk size the causal form falls back to where a chunk's keys span too wide a range for the fast product. */
const FALLBACK_CHUNK = 16;

/**
 * Causal FAVOR+, chunkwise, from log-features lq, lk [B, n, m], v [B, n, dv] and the summaries of the keys before
 * them -> output [B, n, dv] and the summaries after the last key. The keys of earlier chunks enter through their
 * per-feature summaries (a prefix over chunks); each row subtracts the largest of all its terms lq_ir + lk_jr
 * (j <= i) and lq_ir + mass_r, so its denominator is >= 1. In a chunk, the fast product scales keys by their chunk's
 * per-feature maximum b_r and queries by e^(lq_ir + b_r − s_i); where a query factor would pass about e^80 (keys later
 * in the chunk far above the row's own), the chunk size drops to 16 and, if still needed, the C x C x m terms are
 * summed in log space (README.md, Performer).
 */
function favorChunked(
  parts: { lq: tf.Tensor3D; lk: tf.Tensor3D; v: tf.Tensor3D },
  options: { chunkSize: number; eps: number; before: Summaries | null },
): { output: tf.Tensor3D; after: Summaries } {
  const { lq, lk, v } = parts;
  const [bh, n, m] = lq.shape;
  const dv = v.shape[2];
  const c = Math.min(options.chunkSize, n);
  const nc = Math.ceil(n / c);
  const pad = nc * c - n;
  // Padded keys sit at NEG (no mass); padded queries at 0 (their rows are cut off at the end).
  const padTokens = (x: tf.Tensor3D, value: number) =>
    pad === 0 ? x : tf.pad(x, [[0, 0], [0, pad], [0, 0]], value) as tf.Tensor3D;
  const qc = tf.reshape(padTokens(lq, 0), [bh * nc, c, m]) as tf.Tensor3D; // [B·nc, C, m]
  const kc = tf.reshape(padTokens(lk, NEG), [bh * nc, c, m]) as tf.Tensor3D; // [B·nc, C, m]
  const vc = tf.reshape(padTokens(v, 0), [bh * nc, c, dv]) as tf.Tensor3D; // [B·nc, C, dv]

  // Per-chunk summaries; the keys before chunk t are the carried state's and those of chunks 0..t−1.
  const chunk = keySummary(kc, vc); // mass [B·nc, m], mean [B·nc, m, dv], top [B·nc, 1, m], e [B·nc, C, m]
  const { before: state } = options;
  const masses = tf.reshape(chunk.mass, [bh, nc, m]) as tf.Tensor3D; // [B, nc, m]
  const means = tf.reshape(chunk.mean, [bh, nc, m, dv]) as tf.Tensor4D; // [B, nc, m, dv]
  const prefix = state === null ? prefixSummaries(masses, means) : prefixSummaries(
    tf.concat([tf.expandDims(state.mass, 1), masses], 1) as tf.Tensor3D,
    tf.concat([tf.expandDims(state.mean, 1), means], 1) as tf.Tensor4D,
  ); // inclusive: mass [B, K, m], mean [B, K, m, dv], K = nc (+1 with a state)
  const last = prefix.mass.shape[1] - 1;
  const after = {
    mass: tf.reshape(tf.slice(prefix.mass, [0, last, 0], [-1, 1, -1]), [bh, m]) as tf.Tensor2D,
    mean: tf.reshape(tf.slice(prefix.mean, [0, last, 0, 0], [-1, 1, -1, -1]), [bh, m, dv]) as tf.Tensor3D,
  };
  let earlier: { mass: tf.Tensor3D; mean: tf.Tensor3D } | null = null; // [B·nc, 1, m], [B·nc, m, dv]
  if (state !== null || nc > 1) {
    // Before chunk t: prefix element t with a state in front, else element t − 1 (none before chunk 0).
    const shifted = state !== null ? prefix : {
      mass: tf.concat([tf.fill([bh, 1, m], NEG), prefix.mass], 1) as tf.Tensor3D,
      mean: tf.concat([tf.zeros([bh, 1, m, dv]), prefix.mean], 1) as tf.Tensor4D,
    };
    earlier = {
      mass: tf.reshape(tf.slice(shifted.mass, [0, 0, 0], [-1, nc, -1]), [bh * nc, 1, m]),
      mean: tf.reshape(tf.slice(shifted.mean, [0, 0, 0, 0], [-1, nc, -1, -1]), [bh * nc, m, dv]),
    };
  }

  // The fast product scales keys by their chunk's per-feature maximum b_r (later keys of the chunk included) and
  // row i by a stabiliser s_i: key factors e^(lk_jr − b_r) <= 1, query factors e^(lq_ir + b_r − s_i). Two choices of
  // s_i keep every factor, and the row's largest term, within float32 (README.md, Performer):
  // 1. the upper bound max_r (lq_ir + max(b_r, mass_r)) (mass: the earlier keys'), if it lies within CHEAP_GAP of the
  //    lower bound given by the row's diagonal term and mass terms: query factors <= 1, denominator >= e^(−CHEAP_GAP);
  // 2. else the row's exact largest term (a running maximum over the chunk), if no query factor passes e^limit:
  //    denominator >= 1, and the largest term's key factor e^(s − lq − b) >= e^(−limit) stays a normal float32.
  // Else the chunk size drops to FALLBACK_CHUNK, and then the C x C x m terms are summed in log space. Chunks of one
  // token (decoding steps) go there directly: their terms are only m per row, and no bound needs reading back.
  const logits = earlier === null ? null : tf.add(qc, earlier.mass); // [B·nc, C, m]
  const massTerms = (q: tf.Tensor) => earlier === null ? null : tf.max(tf.add(q, earlier.mass), 2); // [B·nc, C]
  const widest = (x: tf.Tensor) => tf.max(tf.slice(tf.reshape(x, [bh, nc * c]), [0, 0], [-1, n])).dataSync()[0];
  let s: tf.Tensor2D | null = null; // [B·nc, C]
  let fast = false;
  // Deno's WebGPU cannot read a bound synchronously (lib/webgpu.ts): there every chunk takes the log-space sum below,
  // in chunks of at most FALLBACK_CHUNK, which reads nothing.
  const canRead = tf.getBackend() !== "webgpu";
  if (c > 1 && canRead) {
    const upper = untracked([qc], (q) => {
      const top = earlier === null ? chunk.top : tf.maximum(chunk.top, earlier.mass); // [B·nc, 1, m]
      return tf.max(tf.add(q, top), 2); // [B·nc, C]
    });
    const lowerGap = untracked([qc, kc, upper], (q, k, up) => {
      const diagonal = tf.max(tf.add(q, k), 2); // [B·nc, C]
      const fromMass = massTerms(q);
      return tf.sub(up, fromMass === null ? diagonal : tf.maximum(diagonal, fromMass)); // [B·nc, C]
    });
    if (widest(lowerGap) <= CHEAP_GAP) [s, fast] = [upper as tf.Tensor2D, true];
  }
  if (s === null) {
    s = untracked([qc, kc], (q, k) => {
      const inChunk = tf.max(tf.add(q, runningMax(k as tf.Tensor3D)), 2); // [B·nc, C]
      const fromMass = massTerms(q);
      return fromMass === null ? inChunk : tf.maximum(inChunk, fromMass);
    }) as tf.Tensor2D;
    const limit = Math.min(80, 87 - Math.log(m)); // m query factors of e^limit sum below float32's max
    const exact = s;
    fast = c > 1 && canRead &&
      widest(untracked([qc], (q) => tf.sub(tf.max(tf.add(q, chunk.top), 2), exact))) <= limit;
  }
  const rowScale = tf.expandDims(s, 2); // [B·nc, C, 1]
  let a: tf.Tensor3D; // [B·nc, C, C]: Σ_r exp(lq_ir + lk_jr − s_i) for j <= i, else 0
  if (fast) {
    const queries = tf.exp(tf.sub(tf.add(qc, chunk.top), rowScale)); // [B·nc, C, m]
    a = tf.mul(tf.matMul(queries, chunk.e, false, true), lowerTriangle(c)) as tf.Tensor3D;
  } else if (c > FALLBACK_CHUNK) {
    return favorChunked(parts, { ...options, chunkSize: FALLBACK_CHUNK });
  } else {
    const bias = tf.expandDims(causalBias(c, c), 2); // [C, C, 1]
    const terms = tf.add(tf.add(tf.expandDims(qc, 2), tf.expandDims(kc, 1)), bias); // [B·nc, C, C, m]
    a = tf.sum(tf.exp(tf.sub(terms, tf.expandDims(rowScale, 3))), 3) as tf.Tensor3D;
  }
  let num: tf.Tensor3D = tf.matMul(a, vc); // [B·nc, C, dv]
  let den: tf.Tensor2D = tf.sum(a, 2); // [B·nc, C]; with the earlier keys' terms >= 1 or >= e^(−CHEAP_GAP)
  if (earlier !== null && logits !== null) {
    const p = tf.exp(tf.sub(logits, rowScale)); // [B·nc, C, m]
    num = tf.add(num, tf.matMul(p, earlier.mean));
    den = tf.add(den, tf.sum(p, 2));
  }
  const extra = epsTerm(s, options.eps);
  if (extra !== null) den = tf.add(den, extra);
  const out = tf.div(num, tf.expandDims(den, 2)); // [B·nc, C, dv]
  const output = tf.slice(tf.reshape(out, [bh, nc * c, dv]), [0, 0, 0], [-1, n, -1]) as tf.Tensor3D; // [B, n, dv]
  return { output, after };
}

/** Which forms the last {@linkcode performer} weights() and attend() calls ran; see {@linkcode lastPerformerPath}. */
export interface PerformerPaths {
  /**
   * "matmul": every row by the max-shifted matmul; "mixed": some row blocks in log space; "log": all rows in log space
   * (form "log", the webgpu backend, or every block failing the underflow test); null before any call.
   */
  weights: "matmul" | "mixed" | "log" | null;
  /** "fused": causal, the fused causal product; "chunked": causal, the log-space chunkwise form; "global": not causal. */
  attend: "fused" | "chunked" | "global" | null;
}

const paths: PerformerPaths = { weights: null, attend: null };

/**
 * Which forms the last {@linkcode performer} weights() and attend() calls ran (a test hook: the fast forms fall back to
 * the log-space ones where float32 could not hold them; README.md, Performer). The recurrent forms do not set it.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { lastPerformerPath, performer } from "./performer.ts";
 * const q = tf.randomNormal([1, 1, 4, 4]) as tf.Tensor4D;
 * performer.weights({ q, k: q }, { form: "log" });
 * console.log(lastPerformerPath().weights); // log
 * ```
 */
export function lastPerformerPath(): PerformerPaths {
  return { ...paths };
}

/** τ = 2^−80: an entry of the max-shifted product at or above it is accurate to float32 rounding (README.md). */
const TAU = 2 ** -80;

/**
 * The log of an upper bound on an exact kernel entry Σ_r e^(lq_ir − a_i) e^(lk_jr − b_j) whose computed value fell
 * below τ, over m features: c (τ + 4 m 2^−126), c = (1 + 2^−16)^3 (1 + (m + 2) 2^−24) (README.md, Performer).
 */
function logUnderflowBound(m: number): number {
  const c = Math.pow(1 + 2 ** -16, 3) * (1 + (m + 2) * 2 ** -24);
  return Math.log(c * (TAU + 4 * m * 2 ** -126));
}

/** Rows per block of the log-space matrix: its [B, rows, n, m] terms stay near 2^22 numbers. */
function logBlockRows(bh: number, n: number, m: number): number {
  return Math.max(1, Math.min(n, Math.floor(2 ** 22 / (bh * n * m))));
}

/** The log-kernel ℓ_ij = logsumexp_r (lq_ir + lk_jr) of query rows [from, from + size), in log space: [B, size, n]. */
function logKernelRows(lq: tf.Tensor3D, lk: tf.Tensor3D, from: number, size: number): tf.Tensor3D {
  const q = tf.slice(lq, [0, from, 0], [-1, size, -1]); // [B, rows, m]
  const terms = tf.add(tf.expandDims(q, 2), tf.expandDims(lk, 1)); // [B, rows, n, m]
  const top = untracked([terms], (x) => tf.max(x, 3, true)); // [B, rows, n, 1]
  return tf.add(tf.squeeze(top, [3]), tf.log(tf.sum(tf.exp(tf.sub(terms, top)), 3))); // [B, rows, n]
}

/**
 * The log-kernel [B, n, n] by one matmul of max-shifted features, ℓ_ij = a_i + b_j + log max(Ŝ_ij, τ) with
 * Ŝ = e^(lq − a) (e^(lk − b))ᵀ, a_i = max_r lq_ir, b_j = max_r lk_jr; and per query row whether it must go to log space
 * (1) or not (0), over all (batch, head) slices: where some visible Ŝ_ij < τ (possibly underflowed) has an upper bound
 * that is not ln n + 26 ln 2 + 1 below the row's largest kept entry (README.md, Performer). Reads [n] numbers back.
 */
function matmulLogKernel(
  lq: tf.Tensor3D,
  lk: tf.Tensor3D,
  causal: boolean,
): { logK: tf.Tensor3D; failing: Float32Array } {
  const [bh, n, m] = lq.shape;
  const a = untracked([lq], (x) => tf.max(x, 2, true)); // [B, n, 1]
  const b = untracked([lk], (x) => tf.reshape(tf.max(x, 2), [bh, 1, n])); // [B, 1, n]
  const shifted = tf.matMul(tf.exp(tf.sub(lq, a)), tf.exp(tf.sub(lk, tf.reshape(b, [bh, n, 1]))), false, true); // [B, n, n]
  const offset = tf.add(a, b); // [B, n, n]: a_i + b_j
  // log sees max(Ŝ, τ): no log 0, and no gradient from an entry below τ (dropped, or its row recomputed).
  const logK = tf.add(offset, tf.log(tf.maximum(shifted, TAU))) as tf.Tensor3D; // [B, n, n]
  const failing = untracked([shifted, offset, logK], (s, o, l) => {
    const small = tf.less(s, TAU); // [B, n, n]
    const visible = causal ? tf.cast(lowerTriangle(n), "bool") : null; // [n, n]
    const dropped = visible === null ? small : tf.logicalAnd(small, visible); // [B, n, n]
    const unkept = visible === null ? small : tf.logicalOr(small, tf.logicalNot(visible)); // [B, n, n]
    const best = tf.max(tf.where(unkept, tf.scalar(NEG), l), 2, true); // [B, n, 1]: the row's largest kept entry
    const margin = Math.log(n) + 26 * Math.LN2 + 1;
    const risky = tf.greater(tf.add(o, logUnderflowBound(m)), tf.sub(best, margin)); // [B, n, n]
    return tf.max(tf.cast(tf.logicalAnd(dropped, risky), "float32"), [0, 2]); // [n]
  });
  return { logK, failing: failing.dataSync() as Float32Array };
}

/** Masks (when causal) and row-normalises a log-kernel [B, n, n]: w_ij = e^(ℓ_ij − s_i) / (Σ_j e^(ℓ_ij − s_i) + eps e^(−s_i)). */
function normalisedRows(logK: tf.Tensor3D, options: { causal: boolean; eps: number }): tf.Tensor3D {
  const n = logK.shape[1];
  const masked = options.causal ? tf.add(logK, causalBias(n, n)) : logK; // [B, n, n]
  const s = untracked([masked], (x) => tf.max(x, 2, true)); // [B, n, 1]
  const e = tf.exp(tf.sub(masked, s)); // [B, n, n]
  const extra = epsTerm(s, options.eps);
  const den = extra === null ? tf.sum(e, 2, true) : tf.add(tf.sum(e, 2, true), extra); // [B, n, 1]
  return tf.div(e, den) as tf.Tensor3D;
}

/**
 * The explicit row-normalised matrix [B, n, n] from log-features lq, lk [B, n, m]: the log-kernel
 * ℓ_ij = log φ̂(q_i)·φ̂(k_j) = logsumexp_r (lq_ir + lk_jr), masked when causal, then
 * w_ij = e^(ℓ_ij − s_i) / (Σ_j e^(ℓ_ij − s_i) + eps e^(−s_i)) with s_i = max_j ℓ_ij. Form "auto" (but on webgpu) takes
 * ℓ from one max-shifted matmul, and recomputes in log space only the row blocks where underflow could show; the log
 * space form goes in blocks of rows that keep the [B, rows, n, m] terms near 2^22 numbers.
 */
function favorMatrix(
  lq: tf.Tensor3D,
  lk: tf.Tensor3D,
  options: { causal: boolean; eps: number; form: "auto" | "log" },
): tf.Tensor3D {
  const [bh, n, m] = lq.shape;
  const rows = logBlockRows(bh, n, m);
  const fast = options.form === "auto" && tf.getBackend() !== "webgpu" ? matmulLogKernel(lq, lk, options.causal) : null;
  if (fast !== null && fast.failing.every((x) => x === 0)) {
    paths.weights = "matmul";
    return normalisedRows(fast.logK, options);
  }
  const blocks: tf.Tensor3D[] = [];
  let logRows = 0;
  for (let from = 0; from < n; from += rows) {
    const size = Math.min(rows, n - from);
    if (fast !== null && fast.failing.subarray(from, from + size).every((x) => x === 0)) {
      blocks.push(tf.slice(fast.logK, [0, from, 0], [-1, size, -1])); // [B, rows, n]
    } else {
      blocks.push(logKernelRows(lq, lk, from, size)); // [B, rows, n]
      logRows += size;
    }
  }
  paths.weights = logRows === n ? "log" : "mixed";
  return normalisedRows(blocks.length === 1 ? blocks[0] : tf.concat(blocks, 1), options);
}

/** The smallest row sum of the fused causal product, at its row scale, for which attend() uses it (else chunked). */
const FUSED_MIN_ROW_SUM = Math.exp(-40);

/**
 * Causal FAVOR+ by the fused causal product of lib/blas/fused_causal.ts, from log-features lq, lk [B, n, m] and
 * v [B, n, dv] -> [B, n, dv], or null where a row sum falls below e^−40 (the caller then runs the chunkwise form).
 * Keys are scaled by their per-feature maximum over the sequence, φ̂(k)_jr = e^(lk_jr − c_r), and query rows by an
 * upper bound of their largest term, d_i = max_r (lq_ir + c_r): every term e^(lq_ir + lk_jr − d_i) is at most 1.
 * out_i = num_i / (den_i + eps e^(−d_i)), as {@linkcode favorGlobal} at its own scale (README.md, Performer).
 * `dead` [B, n, 1] (a key mask's rows that see no real key: 1) is added to the row sums: those rows, whose sum is 0,
 * then neither fail the test nor divide by 0 (their output is zeroed afterwards).
 */
function favorFused(
  parts: { lq: tf.Tensor3D; lk: tf.Tensor3D; v: tf.Tensor3D },
  options: { chunkSize: number; eps: number; heads: number; dead: tf.Tensor3D | null },
): tf.Tensor3D | null {
  const { lq, lk, v } = parts;
  const [bh, n, m] = lq.shape;
  const dv = v.shape[2];
  const h = options.heads;
  const c = untracked([lk], (x) => tf.max(x, 1, true)); // [B, 1, m]
  const d = untracked([lq, c], (q, top) => tf.max(tf.add(q, top), 2, true)); // [B, n, 1]
  const fq = tf.exp(tf.sub(tf.add(lq, c), d)); // [B, n, m], each entry <= 1
  const fk = tf.exp(tf.sub(lk, c)); // [B, n, m], each entry <= 1
  const as4 = (x: tf.Tensor, cols: number) => tf.reshape(x, [bh / h, h, n, cols]) as tf.Tensor4D; // [b, h, n, cols]
  const y = causalProduct({ q: as4(fq, m), k: as4(fk, m), v: withOnes(as4(v, dv)) }, { chunkSize: options.chunkSize });
  // split, not two slices: its gradient is one concat where two slices' would be two pads and an add.
  const [num, sums] = tf.split(tf.reshape(y, [bh, n, dv + 1]), [dv, 1], 2); // [B, n, dv], [B, n, 1]
  const rowSum = options.dead === null ? sums : tf.add(sums, options.dead); // [B, n, 1]
  // A row sum below e^−40 lost its terms to underflow, or would square (the division's gradient) below float32's
  // normal range: that call runs the chunkwise form. NaN fails the test too.
  const least = untracked([rowSum], (x) => tf.min(x)).dataSync()[0];
  if (!(least >= FUSED_MIN_ROW_SUM)) return null;
  const extra = epsTerm(d, options.eps);
  return tf.div(num, extra === null ? rowSum : tf.add(rowSum, extra)) as tf.Tensor3D; // [B, n, dv]
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

/** [b, h, n, d] -> [b·h, n, d] */
function merged(x: tf.Tensor4D): tf.Tensor3D {
  const [b, h, n, d] = x.shape;
  return tf.reshape(x, [b * h, n, d]);
}

/**
 * The log-features of the keys lk [b, h, n, m] with the pad keys of `keyMask` [b, n] at NEG: φ̂(k_j) = 0, so the key
 * is in no sum; lk itself when keyMask is null. Arithmetic rather than a select, so a pad row's gradient is exactly 0.
 */
function withoutPadKeys(lk: tf.Tensor4D, keyMask: tf.Tensor2D | null): tf.Tensor4D {
  if (keyMask === null) return lk;
  const real = keyRows(keyMask); // [b, 1, n, 1]
  return tf.add(tf.mul(lk, real), tf.mul(tf.sub(1, real), NEG)) as tf.Tensor4D; // [b, h, n, m]
}

/**
 * [b, 1, n, 1]: 1 where query i sees some real key of `keyMask` [b, n] (any key of its sequence; when causal, one at
 * j <= i), else 0. Such a row has no real key to normalise over: with every key's features at NEG the log-space
 * forms spread it over the pad keys instead (NEG − NEG = 0), so its output and weights are multiplied by 0.
 */
function liveQueries(keyMask: tf.Tensor2D, causal: boolean): tf.Tensor4D {
  const [b, n] = keyMask.shape;
  const real = tf.reshape(keyRows(keyMask), [b, n]); // [b, n]
  const seen = causal ? tf.cumsum(real, 1) : tf.max(real, 1, true); // [b, n] or [b, 1]
  return tf.reshape(tf.cast(tf.greater(seen, 0), "float32"), [b, 1, causal ? n : 1, 1]); // [b, 1, n or 1, 1]
}

/** The log-features of q and k [b·h, n, m] (pad keys at NEG) and v [b·h, n, dv], heads merged into the batch. */
function logParts(qkv: QKV, projection: tf.Tensor2D, keyMask: tf.Tensor2D | null = null) {
  return {
    lq: merged(favorLogFeatures(qkv.q, { projection })),
    lk: merged(withoutPadKeys(favorLogFeatures(qkv.k, { projection }), keyMask)),
    v: merged(qkv.v),
  };
}

/** The carried state of causal Performer attention; see {@linkcode performer}. */
export type PerformerState = {
  /** [m, dk]: fixed for the whole sequence. */
  projection: tf.Tensor2D;
  /** Per feature r, the mean of the values so far weighted by φ̂(k_j)_r: [batch, heads, m, dv] (0 before any key). */
  s: tf.Tensor4D;
  /** Per feature r, the log of the keys' mass so far, log Σ_j φ̂(k_j)_r: [batch, heads, m] (−1e30 before any key). */
  z: tf.Tensor3D;
};

function initialPerformerState({ batch, heads, dk, dv }: StateDims, o: Required<PerformerOptions>): PerformerState {
  const given = o.projection !== null;
  const projection = given ? tf.clone(projectionFor(dk, o)) : projectionFor(dk, o); // [m, dk]
  const m = projection.shape[0];
  return {
    projection,
    s: tf.zeros([batch, heads, m, dv]),
    z: tf.fill([batch, heads, m], NEG),
  };
}

/**
 * p tokens of causal FAVOR+ from a carried state: chunkwise (prefill), or one recurrent step (p = 1, a chunk of one).
 * The state's per-feature summaries enter as the keys before the first chunk, so the result is attend()'s rows
 * whatever the split (README.md: decoding, Performer).
 */
function performerAdvance(
  state: PerformerState,
  qkv: QKV,
  o: Required<PerformerOptions>,
): { output: tf.Tensor4D; state: PerformerState } {
  const { projection } = state;
  const [b, h, p] = qkv.q.shape;
  const [m, dv] = [projection.shape[0], qkv.v.shape[3]];
  const parts = logParts(qkv, projection); // lq, lk [b·h, p, m], v [b·h, p, dv]
  const before = {
    mass: tf.reshape(state.z, [b * h, m]) as tf.Tensor2D,
    mean: tf.reshape(state.s, [b * h, m, dv]) as tf.Tensor3D,
  };
  const { output, after } = favorChunked(parts, { chunkSize: o.chunkSize, eps: o.eps, before });
  return {
    output: tf.reshape(output, [b, h, p, dv]),
    state: {
      projection,
      s: tf.reshape(after.mean, [b, h, m, dv]),
      z: tf.reshape(after.mass, [b, h, m]),
    },
  };
}

/**
 * The `performer` variant. weights() is the row-normalised phi(Q) phi(K)^T, which approaches softmax's as features grow.
 * Its recurrent forms carry {@linkcode PerformerState}: the projection attend() builds for the same options (made
 * once by `initialState`) and, per feature, the keys' log-mass and weighted mean of the values.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { performer } from "./performer.ts";
 * const q = tf.randomNormal([1, 1, 6, 4]) as tf.Tensor4D;
 * const w = performer.weights({ q, k: q }, { features: 64, seed: 3 });
 * console.log(Math.abs(tf.sum(w, -1).dataSync()[0] - 1) < 1e-4); // true
 * // Inputs scaled by 30 stay finite and normalised (the exponents are in the thousands).
 * const big = tf.mul(q, 30) as tf.Tensor4D;
 * const v = tf.randomNormal([1, 1, 6, 2]) as tf.Tensor4D;
 * const out = performer.attend({ q: big, k: big, v }, { causal: true });
 * console.log(out.dataSync().every(Number.isFinite)); // true
 * ```
 */
export const performer = defineVariant<PerformerOptions, PerformerState>({
  name: "performer",
  defaults: { causal: false, features: null, seed: 0, projection: null, eps: 1e-9, chunkSize: 64, form: "auto" },
  rules: {
    causal: { type: "boolean" },
    features: { type: "number", min: 1, integer: true, nullable: true },
    seed: { type: "number", min: 0, integer: true },
    projection: { type: "tensor", rank: 2, nullable: true },
    eps: { type: "number", min: 0 },
    chunkSize: { type: "number", min: 1, integer: true },
    form: { type: "enum", values: ["auto", "log"] },
  },
  weights: (qk, o) => {
    const [b, h, n] = qk.q.shape;
    const projection = projectionFor(qk.q.shape[3], o);
    const lq = merged(favorLogFeatures(qk.q, { projection })); // [b·h, n, m]
    const lk = merged(withoutPadKeys(favorLogFeatures(qk.k, { projection }), o.keyMask)); // [b·h, n, m]
    const matrix = favorMatrix(lq, lk, { causal: o.causal, eps: o.eps, form: o.form }); // [b·h, n, n]
    const w = tf.reshape(matrix, [b, h, n, n]) as tf.Tensor4D; // [b, h, n, n]
    return o.keyMask === null ? w : tf.mul(w, liveQueries(o.keyMask, o.causal)) as tf.Tensor4D;
  },
  attend: (qkv, o) => {
    const [b, h, n] = qkv.q.shape;
    const dv = qkv.v.shape[3];
    const projection = projectionFor(qkv.q.shape[3], o);
    const parts = logParts(qkv, projection, o.keyMask); // lq, lk [b·h, n, m], v [b·h, n, dv]
    const live = o.keyMask === null ? null : liveQueries(o.keyMask, o.causal); // [b, 1, n or 1, 1]
    const finish = (out: tf.Tensor3D) => {
      const y = tf.reshape(out, [b, h, n, dv]) as tf.Tensor4D; // [b, h, n, dv]
      return live === null ? y : tf.mul(y, live) as tf.Tensor4D;
    };
    if (!o.causal) {
      paths.attend = "global";
      return finish(favorGlobal(parts, o.eps));
    }
    // The fused product runs where its kernel is registered (the blas backend), which also reads back synchronously.
    const fusable = o.form === "auto" && n > 0 && tf.getKernel(CAUSAL_PRODUCT, tf.getBackend()) !== undefined;
    // The rows that see no real key (1) go into the fused product's row sums, so that they do not fail its test.
    const dead = live === null || !fusable
      ? null
      : tf.reshape(tf.broadcastTo(tf.sub(1, live), [b, h, n, 1]), [b * h, n, 1]) as tf.Tensor3D; // [b·h, n, 1]
    const fused = fusable ? favorFused(parts, { chunkSize: o.chunkSize, eps: o.eps, heads: h, dead }) : null;
    paths.attend = fused === null ? "chunked" : "fused";
    return finish(fused ?? favorChunked(parts, { chunkSize: o.chunkSize, eps: o.eps, before: null }).output);
  },
  // The kernel forms' matmul count plus 4·bh·n·dk·m for projecting q and k onto the m random features. A causal chunk
  // that falls back to log space does its C·C·m in-chunk products as exponentials instead (the same count).
  flops: (size, o) => {
    const m = featureCount(size.dk, o);
    const extra = 4 * size.batch * size.heads * size.n * size.dk * m;
    return kernelFlops(size, { causal: o.causal, chunkSize: o.chunkSize, m, extra });
  },
  recurrent: {
    shapes: ({ batch, heads, dk, dv }, o) => {
      const m = featureCount(dk, o);
      return { projection: [m, dk], s: [batch, heads, m, dv], z: [batch, heads, m] };
    },
    init: initialPerformerState,
    check: (o, owner) => checkFeatures(o, owner),
    chunked: (qkv, o, { state }) => performerAdvance(state ?? initialPerformerState(dimsOf(qkv), o), qkv, o),
    step: (qkv, o, { state }) => performerAdvance(state, qkv, o),
  },
});

function dimsOf(qkv: QKV): StateDims {
  const [batch, heads, , dk] = qkv.q.shape;
  return { batch, heads, dk, dv: qkv.v.shape[3] };
}
