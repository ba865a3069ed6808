/**
 * The engine shared by the kernel (linear) variants: linear, performer, cosformer and norm.
 * They differ only in their features phi(q), phi(k) and in whether rows are normalised;
 * the matrix, global, chunked (tf ops), fused (lib/blas/fused_causal.ts) and recurrent forms here take the features
 * directly.
 * Derivations are in README.md beside this file.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { AttentionOptions, FlopCount, FlopSize } from "./types.ts";
import { forwardFlops, paddedLength, type RecurrentSpec, zeroPadKeys } from "./variant.ts";
import {
  causalAttention,
  causalProduct,
  causalProductWithState,
  dividedByRowSums,
  withOnes,
} from "../blas/fused_causal.ts";

/** The carried state of causal kernel attention: S = sum phi(k) v^T and z = sum phi(k). */
export type KernelState = {
  /** [batch, heads, m, dv] */
  s: tf.Tensor4D;
  /** [batch, heads, m] */
  z: tf.Tensor3D;
};

/** Features of queries and keys ([batch, heads, n, m]) and the values ([batch, heads, n, dv]). */
export interface Features {
  fq: tf.Tensor4D;
  fk: tf.Tensor4D;
  v: tf.Tensor4D;
}

/** Whether rows are divided by their sum (linear attention) or left raw (NormAttention). */
export interface KernelOptions {
  normalize: boolean;
  eps: number;
}

/**
 * A key-padding mask [batch, n] for {@linkcode kernelMatrix} and {@linkcode kernelAttend}: the pad keys' features
 * φ(k_j) are set to 0, which removes key j from the numerator Σ φ(k_j) v_jᵀ and the denominator Σ φ(k_j) alike.
 */
export interface KernelKeyMask {
  keyMask?: tf.Tensor2D | null;
}

/**
 * The causal mask: a [rows, cols] matrix of ones where key j <= query i + offset, zeros elsewhere.
 * `cols` defaults to `rows` and `offset` to 0 (the square lower triangle); a block of queries
 * starting at position s against keys from 0 is `lowerTriangle(B, { cols, offset: s })`.
 *
 * @example
 * ```ts
 * import { lowerTriangle } from "./kernel.ts";
 * console.log(JSON.stringify(lowerTriangle(2).arraySync())); // [[1,0],[1,1]]
 * console.log(JSON.stringify(lowerTriangle(1, { cols: 3, offset: 1 }).arraySync())); // [[1,1,0]]
 * ```
 */
export function lowerTriangle(rows: number, options: { cols?: number; offset?: number } = {}): tf.Tensor2D {
  const { cols = rows, offset = 0 } = options;
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) data.fill(1, i * cols, i * cols + Math.max(0, Math.min(cols, i + offset + 1)));
  return tf.tensor2d(data, [rows, cols]);
}

/**
 * The explicit kernel matrix phi(Q) phi(K)^T [batch, heads, n, n], masked when causal (and, with keyMask, its pad
 * keys' columns 0), with rows divided by (row sum + eps) when normalize is set. Naive O(n^2).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { kernelMatrix } from "./kernel.ts";
 * const f = tf.ones([1, 1, 3, 2]) as tf.Tensor4D;
 * const m = kernelMatrix({ fq: f, fk: f }, { causal: true, normalize: true, eps: 0 });
 * console.log(m.arraySync()[0][0][2].map((x) => x.toFixed(2)).join(" ")); // 0.33 0.33 0.33
 * ```
 */
export function kernelMatrix(
  features: { fq: tf.Tensor4D; fk: tf.Tensor4D },
  options: KernelOptions & KernelKeyMask & { causal: boolean },
): tf.Tensor4D {
  return tf.tidy(() => {
    const n = features.fq.shape[2];
    const fk = zeroPadKeys(features.fk, options.keyMask ?? null); // [b, h, n, m]
    let a: tf.Tensor4D = tf.matMul(features.fq, fk, false, true); // [b, h, n, n]
    if (options.causal) a = tf.mul(a, lowerTriangle(n));
    if (!options.normalize) return a;
    return tf.div(a, tf.add(tf.sum(a, -1, true), options.eps)); // [b, h, n, n]
  });
}

/**
 * Bidirectional kernel attention in O(n m dv): phi(Q) (phi(K)^T V), rows normalised if asked.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { kernelGlobal } from "./kernel.ts";
 * const f = tf.ones([1, 1, 3, 2]) as tf.Tensor4D;
 * const v = tf.tensor4d([1, 2, 3], [1, 1, 3, 1]);
 * const o = kernelGlobal({ fq: f, fk: f, v }, { normalize: true, eps: 0 });
 * console.log(Array.from(o.dataSync()).join(" ")); // 2 2 2
 * ```
 */
export function kernelGlobal(features: Features, options: KernelOptions): tf.Tensor4D {
  return tf.tidy(() => {
    const { fq, fk, v } = features;
    const kv = tf.matMul(fk, v, true, false); // [b, h, m, dv]
    const out: tf.Tensor4D = tf.matMul(fq, kv); // [b, h, n, dv]
    if (!options.normalize) return out;
    const z = tf.sum(fk, 2, true); // [b, h, 1, m]
    const den = tf.sum(tf.mul(fq, z), -1, true); // [b, h, n, 1]
    return tf.div(out, tf.add(den, options.eps));
  });
}

/**
 * Kernel attention by the fast form that fits: when causal, the fused causal product of lib/blas/fused_causal.ts
 * (`causalAttention` when rows are normalised, `causalProduct` when not: one kernel forward and one or three backward
 * on the blas backend, the chunkwise product in tf ops elsewhere); global otherwise. The one entry point of the kernel
 * variants' attend(). With keyMask, the pad keys' features are 0 (every form takes them as they are).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { kernelAttend } from "./kernel.ts";
 * const f = tf.ones([1, 1, 3, 2]) as tf.Tensor4D;
 * const v = tf.tensor4d([1, 2, 3], [1, 1, 3, 1]);
 * const o = kernelAttend({ fq: f, fk: f, v }, { causal: true, normalize: true, eps: 0, chunkSize: 2 });
 * console.log(Array.from(o.dataSync()).join(" ")); // 1 1.5 2
 * ```
 */
export function kernelAttend(
  features: Features,
  options: KernelOptions & KernelKeyMask & { causal: boolean; chunkSize: number },
): tf.Tensor4D {
  const kernel = { normalize: options.normalize, eps: options.eps };
  const { fq, v } = features;
  const fk = zeroPadKeys(features.fk, options.keyMask ?? null); // [b, h, n, m]
  if (!options.causal) return kernelGlobal({ fq, fk, v }, kernel);
  const chunkSize = options.chunkSize;
  return options.normalize
    ? causalAttention({ q: fq, k: fk, v }, { eps: options.eps, chunkSize })
    : causalProduct({ q: fq, k: fk, v }, { chunkSize });
}

/**
 * Causal kernel attention through the fused causal product of lib/blas/fused_causal.ts: one sgemm-chunked kernel on
 * the blas backend (three for the gradient), the same chunkwise product in tf ops elsewhere. Rows are normalised by
 * appending a column of ones to V, so that tril(φ(Q)φ(K)ᵀ) [V, 1] = [numerator, row sum], and the carried state
 * (S, z) is that product's state [S, z]. Starts from `state` (zeros when absent) and returns the state after the last
 * token, as {@linkcode kernelChunked} (its tf-op reference) does.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { kernelFused } from "./kernel.ts";
 * const f = tf.ones([1, 1, 3, 2]) as tf.Tensor4D;
 * const v = tf.tensor4d([1, 2, 3], [1, 1, 3, 1]);
 * const { output, state } = kernelFused({ fq: f, fk: f, v }, { normalize: true, eps: 0, chunkSize: 2 });
 * console.log(Array.from(output.dataSync()).join(" "), Array.from(state.z.dataSync()).join(" ")); // 1 1.5 2 3 3
 * ```
 */
export function kernelFused(
  features: Features,
  options: KernelOptions & { chunkSize: number; state?: KernelState },
): { output: tf.Tensor4D; state: KernelState } {
  const { fq, fk, v } = features;
  const dv = v.shape[3];
  const result = tf.tidy(() => {
    // The ones column also carries z, the state's row-sum part, which the state needs even unnormalised.
    const state = options.state
      ? tf.concat([options.state.s, tf.expandDims(options.state.z, 3)], 3) as tf.Tensor4D // [b, h, m, dv + 1]
      : undefined;
    const run = causalProductWithState(
      { q: fq, k: fk, v: withOnes(v) },
      { chunkSize: options.chunkSize, ...(state ? { state } : {}) },
    );
    const [s, z] = tf.split(run.state, [dv, 1], 3); // [b, h, m, dv], [b, h, m, 1]
    const output = options.normalize
      ? dividedByRowSums(run.output, { eps: options.eps })
      : tf.slice(run.output, [0, 0, 0, 0], [-1, -1, -1, dv]) as tf.Tensor4D; // [b, h, n, dv]
    return { output, s: s as tf.Tensor4D, z: tf.squeeze(z, [3]) as tf.Tensor3D };
  });
  return { output: result.output, state: { s: result.s, z: result.z } };
}

/**
 * A zero state for causal kernel attention.
 *
 * @example
 * ```ts
 * import { zeroKernelState } from "./kernel.ts";
 * const st = zeroKernelState({ batch: 1, heads: 2, m: 3, dv: 4 });
 * console.log(st.s.shape.join(","), st.z.shape.join(",")); // 1,2,3,4 1,2,3
 * ```
 */
export function zeroKernelState(dims: { batch: number; heads: number; m: number; dv: number }): KernelState {
  return {
    s: tf.zeros([dims.batch, dims.heads, dims.m, dims.dv]),
    z: tf.zeros([dims.batch, dims.heads, dims.m]),
  };
}

function exclusivePrefixOverChunks<T extends tf.Tensor>(x: T): T {
  // Prefix sums over axis 2 (chunks), computed on the last axis: wasm's Cumsum
  // gradient returns a wrongly shaped tensor when the axis is not the last one.
  const rank = x.rank;
  const perm = [0, 1, ...Array.from({ length: rank - 3 }, (_, i) => i + 3), 2];
  const inverse = perm.map((_, i) => perm.indexOf(i));
  return tf.transpose(tf.cumsum(tf.transpose(x, perm), rank - 1, true), inverse) as T;
}

/**
 * Causal kernel attention, chunkwise-parallel, in tf ops: inside a chunk of C tokens a masked C x C
 * product; across chunks the carried state S. O(n C (m + dv) + n m dv) work and no
 * n x n or n x m x dv tensor: the per-chunk states are (n / C) x m x dv.
 * Starts from `state` (zeros when absent) and returns the state after the last token.
 * The reference form that the tests hold {@linkcode kernelFused} (what attend() and the state forms run) equal to.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { kernelChunked } from "./kernel.ts";
 * const f = tf.ones([1, 1, 3, 2]) as tf.Tensor4D;
 * const v = tf.tensor4d([1, 2, 3], [1, 1, 3, 1]);
 * const { output } = kernelChunked({ fq: f, fk: f, v }, { normalize: true, eps: 0, chunkSize: 2 });
 * console.log(Array.from(output.dataSync()).join(" ")); // 1 1.5 2
 * ```
 */
export function kernelChunked(
  features: Features,
  options: KernelOptions & { chunkSize: number; state?: KernelState },
): { output: tf.Tensor4D; state: KernelState } {
  const { fq, fk, v } = features;
  const [b, h, n, m] = fq.shape;
  const dv = v.shape[3];
  const c = Math.min(options.chunkSize, n);
  const nc = Math.ceil(n / c);
  const result = tf.tidy(() => {
    const pad = nc * c - n;
    // Zero features after the last token add nothing to any state or row sum.
    const padTokens = <T extends tf.Tensor4D>(x: T) =>
      pad === 0 ? x : tf.pad(x, [[0, 0], [0, 0], [0, pad], [0, 0]]) as T;
    const qc = tf.reshape(padTokens(fq), [b, h, nc, c, m]); // [b, h, nc, C, m]
    const kc = tf.reshape(padTokens(fk), [b, h, nc, c, m]); // [b, h, nc, C, m]
    const vc = tf.reshape(padTokens(v), [b, h, nc, c, dv]); // [b, h, nc, C, dv]

    const intra = tf.mul(tf.matMul(qc, kc, false, true), lowerTriangle(c)); // [b, h, nc, C, C]
    const chunkKV = tf.matMul(kc, vc, true, false); // [b, h, nc, m, dv]
    let before = exclusivePrefixOverChunks(chunkKV); // [b, h, nc, m, dv]
    if (options.state) before = tf.add(before, tf.expandDims(options.state.s, 2));
    let out = tf.add(tf.matMul(intra, vc), tf.matMul(qc, before)); // [b, h, nc, C, dv]

    let s = tf.sum(chunkKV, 2) as tf.Tensor4D; // [b, h, m, dv]
    if (options.state) s = tf.add(s, options.state.s);
    const chunkZ = tf.sum(kc, 3); // [b, h, nc, m]
    let z = tf.sum(chunkZ, 2) as tf.Tensor3D; // [b, h, m]
    if (options.state) z = tf.add(z, options.state.z);

    if (options.normalize) {
      let zBefore = exclusivePrefixOverChunks(chunkZ); // [b, h, nc, m]
      if (options.state) zBefore = tf.add(zBefore, tf.expandDims(options.state.z, 2));
      const denInter = tf.sum(tf.mul(qc, tf.expandDims(zBefore, 3)), -1); // [b, h, nc, C]
      const den = tf.add(tf.add(denInter, tf.sum(intra, -1)), options.eps); // [b, h, nc, C]
      out = tf.div(out, tf.expandDims(den, -1));
    }
    const output = tf.slice(tf.reshape(out, [b, h, nc * c, dv]), [0, 0, 0, 0], [b, h, n, dv]) as tf.Tensor4D;
    return { output, s, z };
  });
  return { output: result.output, state: { s: result.s, z: result.z } };
}

/**
 * One token of causal kernel attention: S += phi(k) v^T, z += phi(k), then read out with phi(q).
 * Token tensors are [batch, heads, m] (features) and [batch, heads, dv] (value).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { kernelStep, zeroKernelState } from "./kernel.ts";
 * const f = tf.ones([1, 1, 2]) as tf.Tensor3D;
 * let state = zeroKernelState({ batch: 1, heads: 1, m: 2, dv: 1 });
 * const a = kernelStep({ fq: f, fk: f, v: tf.tensor3d([[[1]]]) }, { state, normalize: true, eps: 0 });
 * const b = kernelStep({ fq: f, fk: f, v: tf.tensor3d([[[3]]]) }, { state: a.state, normalize: true, eps: 0 });
 * console.log(b.output.dataSync()[0]); // 2
 * ```
 */
export function kernelStep(
  token: { fq: tf.Tensor3D; fk: tf.Tensor3D; v: tf.Tensor3D },
  options: KernelOptions & { state: KernelState },
): { output: tf.Tensor3D; state: KernelState } {
  const result = tf.tidy(() => {
    const { fq, fk, v } = token;
    const s = tf.add(options.state.s, tf.mul(tf.expandDims(fk, 3), tf.expandDims(v, 2))) as tf.Tensor4D; // [b, h, m, dv]
    const z = tf.add(options.state.z, fk) as tf.Tensor3D; // [b, h, m]
    let out = tf.squeeze(tf.matMul(tf.expandDims(fq, 2), s), [2]) as tf.Tensor3D; // [b, h, dv]
    if (options.normalize) {
      const den = tf.sum(tf.mul(fq, z), -1, true); // [b, h, 1]
      out = tf.div(out, tf.add(den, options.eps));
    }
    return { out, s, z };
  });
  return { output: result.out, state: { s: result.s, z: result.z } };
}

/**
 * Matmul FLOPs of kernel attention over m features (padding included): causal, the chunkwise form,
 * `2·bh·N·(C·(m + dv) + 2·m·dv)` (chunk Q Kᵀ, chunk (Q Kᵀ) V, chunk Kᵀ V, Q S; N = n padded to chunks of C);
 * bidirectional, `4·bh·n·m·dv` (Kᵀ V, then Q (Kᵀ V)). `extra` adds the variant's own work (feature projections).
 *
 * @example
 * ```ts
 * import { kernelFlops } from "./kernel.ts";
 * const size = { batch: 1, heads: 1, n: 8, dk: 2, dv: 3 };
 * console.log(kernelFlops(size, { causal: false, chunkSize: 64, m: 2 }).fwd); // 192
 * ```
 */
export function kernelFlops(
  size: FlopSize,
  options: { causal: boolean; chunkSize: number; m: number; extra?: number },
): FlopCount {
  const { batch, heads, n, dv } = size;
  const { m, extra = 0 } = options;
  const bh = batch * heads;
  if (!options.causal) return forwardFlops(4 * bh * n * m * dv + extra);
  const c = Math.min(options.chunkSize, n);
  return forwardFlops(2 * bh * paddedLength(n, c) * (c * (m + dv) + 2 * m * dv) + extra);
}

/** How a kernel variant's state forms get their features, normalisation and output norm. */
export interface KernelForms<O extends AttentionOptions & { chunkSize?: number }> {
  /** φ(x) [b, h, p, d] -> [b, h, p, m] for tokens from absolute position `position` on. */
  features(x: tf.Tensor4D, options: Required<O>, position: number): tf.Tensor4D;
  /** m, the number of features, for key size dk. */
  size(dk: number): number;
  /** Divide rows by φ(q)·z + eps (linear attention, cosFormer) or leave them raw (NormAttention). */
  kernel(options: Required<O>): KernelOptions;
  /** The output norm applied to each token's output (NormAttention), if any. */
  outputNorm?(out: tf.Tensor4D, options: Required<O>): tf.Tensor4D;
  /** Throws, naming `owner`, when the options cannot run the state forms. */
  check?(options: Required<O>, owner: string): void;
}

/**
 * The state forms of a kernel variant, state {@linkcode KernelState} over m features: {@linkcode kernelFused}
 * (prefill, chunkedAttend) and {@linkcode kernelStep} (step, recurrentAttend), from the variant's features.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { kernelRecurrent } from "./kernel.ts";
 * const forms = kernelRecurrent<{ causal?: boolean; chunkSize?: number }>({
 *   features: (x) => tf.relu(x),
 *   size: (dk) => dk,
 *   kernel: () => ({ normalize: true, eps: 1e-6 }),
 * });
 * const x = tf.ones([1, 1, 3, 2]) as tf.Tensor4D;
 * const { output } = forms.chunked({ q: x, k: x, v: x }, { causal: true, chunkSize: 2 }, { state: null, position: 0 });
 * console.log(output.shape.join(",")); // 1,1,3,2
 * ```
 */
export function kernelRecurrent<O extends AttentionOptions & { chunkSize?: number }>(
  how: KernelForms<O>,
): RecurrentSpec<O, KernelState> {
  const finish = (out: tf.Tensor4D, o: Required<O>) => (how.outputNorm ? how.outputNorm(out, o) : out);
  return {
    shapes: ({ batch, heads, dk, dv }) => ({ s: [batch, heads, how.size(dk), dv], z: [batch, heads, how.size(dk)] }),
    ...(how.check ? { check: how.check } : {}),
    chunked: ({ q, k, v }, o, { state, position }) => {
      const fq = how.features(q, o, position); // [b, h, n, m]
      const fk = how.features(k, o, position); // [b, h, n, m]
      const run = kernelFused(
        { fq, fk, v },
        { ...how.kernel(o), chunkSize: o.chunkSize as number, ...(state ? { state } : {}) },
      );
      return { output: finish(run.output, o), state: run.state };
    },
    step: ({ q, k, v }, o, { state, position }) => {
      const token = (x: tf.Tensor4D) => tf.squeeze(x, [2]) as tf.Tensor3D; // [b, h, d]
      const fq = token(how.features(q, o, position)); // [b, h, m]
      const fk = token(how.features(k, o, position)); // [b, h, m]
      const run = kernelStep({ fq, fk, v: token(v) }, { ...how.kernel(o), state });
      return { output: finish(tf.expandDims(run.output, 2) as tf.Tensor4D, o), state: run.state }; // [b, h, 1, dv]
    },
  };
}
