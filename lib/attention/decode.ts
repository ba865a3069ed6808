/**
 * Incremental decoding for every attention variant ("Transformers are RNNs"): one token at a
 * time from a carried state, with one API for all. Token t's output equals row t of the
 * variant's causal attend() over the whole sequence.
 *
 * | variant            | state                                   | cost per token |
 * | ------------------ | --------------------------------------- | -------------- |
 * | linear, norm       | S [m, dv], z [m] (m = dk)               | O(dk dv)       |
 * | performer          | S, z over m random features, key max c  | O(m (dk + dv)) |
 * | cosformer          | S, z over 2 dk features                 | O(dk dv)       |
 * | softmax (cache)    | K, V of the prefix                      | O(t d)         |
 * | softmax (no cache) | q, k, v of the prefix, all recomputed   | O(t² d)        |
 * | diag               | K, V of the current block               | O(blockSize d) |
 * | local              | K, V of the last `window` tokens        | O(window d)    |
 *
 * Derivations and the documented deviations (performer's key stabiliser, cosFormer's
 * `maxLength`) are in README.md beside this file.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { cosformer, type CosformerOptions } from "./cosformer.ts";
import { diag, type DiagOptions } from "./diag.ts";
import { kernelChunked, type KernelState, kernelStep, lowerTriangle } from "./kernel.ts";
import { linear, type LinearOptions } from "./linear.ts";
import { local, type LocalOptions } from "./local.ts";
import { norm, type NormOptions } from "./norm.ts";
import { applyOutputNorm } from "./norms.ts";
import {
  favorNormalize,
  favorWithStabiliser,
  orthogonalRandomFeatures,
  performer,
  type PerformerOptions,
} from "./performer.ts";
import { chunkedAttend, initialState, recurrentStep } from "./recurrent.ts";
import { softmax, type SoftmaxOptions } from "./softmax.ts";
import { checkQKV, type OptionRule, type QKV, resolveOptions } from "./types.ts";
import { maskBias } from "./variant.ts";

/** The variants {@linkcode decoder} accepts: all of them. */
export const DECODER_VARIANTS = ["softmax", "linear", "performer", "cosformer", "norm", "diag", "local"] as const;

/** One of {@linkcode DECODER_VARIANTS}. */
export type DecoderVariant = typeof DECODER_VARIANTS[number];

interface VariantOptionsOf {
  softmax: SoftmaxOptions;
  linear: LinearOptions;
  performer: PerformerOptions;
  cosformer: CosformerOptions;
  norm: NormOptions;
  diag: DiagOptions;
  local: LocalOptions;
}

interface DecoderExtras {
  softmax: {
    /** Keep the prefix's K, V (true, default: O(t) per token) or recompute the whole prefix every step (false: O(t²)). */
    cache?: boolean;
  };
  cosformer: Record<never, never>;
  linear: Record<never, never>;
  performer: Record<never, never>;
  norm: Record<never, never>;
  diag: Record<never, never>;
  local: Record<never, never>;
}

/**
 * The variant's own options (causal is implied) plus the decoder's `cache` (softmax). cosFormer's `maxLength` (M) is
 * required here: attend() defaults to M = n, so a decoder needs the sequence length in advance.
 */
export type DecoderOptions<N extends DecoderVariant> =
  & Omit<VariantOptionsOf[N], "causal">
  & { causal?: true }
  & DecoderExtras[N];

/** Sizes fixed for a whole decode: batch, heads, key/query features dk, value features dv. */
export interface DecodeDims {
  batch: number;
  heads: number;
  dk: number;
  dv: number;
}

/**
 * A decoder's carried state. Its tensors are kept (tf.keep) and owned by the caller: dispose
 * a state with {@linkcode Decoder.dispose} once the next one has been computed from it.
 */
export interface DecodeState {
  readonly variant: DecoderVariant;
  readonly dims: Readonly<DecodeDims>;
  /** Tokens consumed so far; the next token has this (0-based) position. */
  readonly position: number;
  /** The state's tensors by name (which names depends on the variant; see README.md). */
  readonly tensors: Readonly<Record<string, tf.Tensor>>;
}

/** What {@linkcode Decoder.step} and {@linkcode Decoder.prefill} return: the outputs and the next state. */
export interface DecodeResult {
  /** [batch, heads, p, dv]: the outputs of the p tokens given (p = 1 for step). */
  out: tf.Tensor4D;
  state: DecodeState;
}

/** Where {@linkcode Decoder.init} starts: zeros by default, or a carried kernel state (linear, norm). */
export interface DecodeInitOptions {
  /** The state after `position` tokens from recurrentAttend / chunkedAttend (linear and norm only). */
  from?: KernelState | null;
  /** Tokens already consumed; required with `from`, 0 otherwise. */
  position?: number;
}

/** One uniform decoding API; see {@linkcode decoder}. */
export interface Decoder {
  readonly variant: DecoderVariant;
  /** The resolved options, defaults filled in. */
  readonly options: Readonly<Record<string, unknown>>;
  /** A fresh state before the first token (or one carried from a recurrent run). */
  init(dims: DecodeDims, options?: DecodeInitOptions): DecodeState;
  /** One token: q, k [b, h, 1, dk], v [b, h, 1, dv] -> out [b, h, 1, dv]. Leaves `state` as it was. */
  step(state: DecodeState, token: QKV): DecodeResult;
  /** p tokens at once (a prompt), in the chunked or blocked form: equal to p calls of step(). */
  prefill(state: DecodeState, qkv: QKV): DecodeResult;
  /** Number of floats held by the state's tensors. */
  stateSize(state: DecodeState): number;
  /** Disposes the state's tensors. */
  dispose(state: DecodeState): void;
}

/** The engine of one variant: tensors in, outputs and new tensors out, run inside tf.tidy. */
interface Engine {
  init(dims: DecodeDims): Record<string, tf.Tensor>;
  advance(tensors: Readonly<Record<string, tf.Tensor>>, call: { qkv: QKV; position: number; single: boolean }): {
    out: tf.Tensor4D;
    tensors: Record<string, tf.Tensor>;
  };
}

type Resolved = Record<string, unknown>;

// The decoder's rules: the variant's own plus the decoder's `cache` (softmax).
const RULES: Record<DecoderVariant, Record<string, OptionRule>> = {
  softmax: { ...softmax.rules, cache: { type: "boolean" } },
  linear: linear.rules,
  performer: performer.rules,
  cosformer: cosformer.rules,
  norm: norm.rules,
  diag: diag.rules,
  local: local.rules,
};

// Defaults: the variant's own, causal, and the decoder's extras.
const DEFAULTS: Record<DecoderVariant, Resolved> = {
  softmax: { ...softmax.defaults, causal: true, cache: true },
  linear: { ...linear.defaults, causal: true },
  performer: { ...performer.defaults, causal: true },
  cosformer: { ...cosformer.defaults, causal: true, maxLength: null },
  norm: { ...norm.defaults, causal: true },
  diag: { ...diag.defaults, causal: true },
  local: { ...local.defaults, causal: true },
};

const sliceTokens = (x: tf.Tensor4D, from: number, size: number) =>
  tf.slice(x, [0, 0, from, 0], [-1, -1, size, -1]) as tf.Tensor4D;

const sliceLast = (x: tf.Tensor4D, range: { from: number; size: number }) =>
  tf.slice(x, [0, 0, 0, range.from], [-1, -1, -1, range.size]) as tf.Tensor4D;

const squeezeToken = (x: tf.Tensor4D) => tf.squeeze(x, [2]) as tf.Tensor3D;

const appendTokens = (cache: tf.Tensor | undefined, x: tf.Tensor4D) =>
  cache === undefined ? x : tf.concat([cache as tf.Tensor4D, x], 2) as tf.Tensor4D;

/** Queries against an explicit key set under a 0/1 mask: softmax(q Kᵀ·scale + bias) V, or relu(q Kᵀ·scale) ⊙ mask V. */
function maskedAttend(
  qkv: QKV,
  options: { allowed: tf.Tensor2D; scale: number; inner: "softmax" | "relu" },
): tf.Tensor4D {
  const logits = tf.mul(tf.matMul(qkv.q, qkv.k, false, true), options.scale); // [b, h, p, c]
  const scores = options.inner === "softmax"
    ? tf.softmax(tf.add(logits, maskBias(options.allowed)))
    : tf.mul(tf.relu(logits), options.allowed); // [b, h, p, c]
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

function kernelEngine(name: "linear" | "norm", o: Resolved): Engine {
  const { causal: _, ...options } = o;
  return {
    init: (dims) => ({ ...initialState(dims) }),
    advance: ({ s, z }, { qkv, single }) => {
      const state = { s: s as tf.Tensor4D, z: z as tf.Tensor3D };
      if (!single) {
        const run = chunkedAttend(name, qkv, { ...options, state });
        return { out: run.output, tensors: { ...run.state } };
      }
      const token = { q: squeezeToken(qkv.q), k: squeezeToken(qkv.k), v: squeezeToken(qkv.v) };
      const step = recurrentStep(name, token, { ...options, state });
      return { out: tf.expandDims(step.output, 2) as tf.Tensor4D, tensors: { ...step.state } };
    },
  };
}

function performerEngine(o: Resolved): Engine {
  const given = o.projection as tf.Tensor2D | null;
  const eps = o.eps as number;
  return {
    init: ({ batch, heads, dk, dv }) => {
      const features = given?.shape[0] ?? (o.features as number | null) ?? Math.max(1, Math.ceil(dk * Math.log(dk)));
      const projection = given === null
        ? orthogonalRandomFeatures({ features, dk, seed: o.seed as number })
        : tf.clone(given); // [m, dk]
      return {
        projection,
        s: tf.zeros([batch, heads, features, dv]),
        z: tf.zeros([batch, heads, features]),
        // The running maximum of the keys' w·x' so far; -inf before the first key.
        c: tf.fill([batch, heads, 1, 1], -Infinity), // [b, h, 1, 1]
      };
    },
    advance: (tensors, { qkv, single }) => {
      const projection = tensors.projection as tf.Tensor2D;
      const [m, dk] = projection.shape;
      const [b, h] = qkv.q.shape;
      const xs = tf.mul(qkv.k, Math.pow(dk, -0.25)); // [b, h, p, dk]
      const wx = tf.matMul(xs, projection, false, true); // [b, h, p, m]
      const half = tf.mul(tf.sum(tf.square(xs), -1, true), 0.5); // [b, h, p, 1]
      // favorFeatures subtracts the maximum over all keys, future ones included; a decoder can only
      // know the maximum so far, so the state is kept at that scale and rescaled when it grows.
      const c = tf.maximum(tensors.c, tf.max(wx, [2, 3], true)); // [b, h, 1, 1]
      const rescale = tf.exp(tf.sub(tensors.c, c)); // [b, h, 1, 1]
      const state = {
        s: tf.mul(tensors.s, rescale) as tf.Tensor4D, // [b, h, m, dv]
        z: tf.mul(tensors.z, tf.reshape(rescale, [b, h, 1])) as tf.Tensor3D, // [b, h, m]
      };
      const fk = tf.mul(tf.exp(tf.sub(tf.sub(wx, half), c)), 1 / Math.sqrt(m)) as tf.Tensor4D; // [b, h, p, m]
      const fq = favorWithStabiliser(qkv.q, { projection, role: "query" }); // features [b, h, p, m]
      // A column of ones after v carries the denominator through the unnormalised kernel (as in attend()),
      // so eps can be added at the unstabilised scale e^(c_q + c).
      const dv = qkv.v.shape[3];
      const v1 = tf.concat([qkv.v, tf.onesLike(sliceLast(qkv.v, { from: 0, size: 1 }))], 3) as tf.Tensor4D; // [b, h, p, dv+1]
      const kernel = {
        normalize: false,
        eps: 0,
        state: { s: tf.concat([state.s, tf.expandDims(state.z, 3)], 3) as tf.Tensor4D, z: state.z }, // s: [b, h, m, dv+1]
      };
      const run = single
        ? kernelStep({ fq: squeezeToken(fq.features), fk: squeezeToken(fk), v: squeezeToken(v1) }, kernel)
        : kernelChunked({ fq: fq.features, fk, v: v1 }, { ...kernel, chunkSize: o.chunkSize as number });
      const both = (single ? tf.expandDims(run.output, 2) : run.output) as tf.Tensor4D; // [b, h, p, dv+1]
      const out = favorNormalize(sliceLast(both, { from: 0, size: dv }), {
        den: sliceLast(both, { from: dv, size: 1 }),
        scale: tf.add(fq.stabiliser, c) as tf.Tensor4D, // [b, h, p, 1]
        eps,
      }); // [b, h, p, dv]
      const s = sliceLast(run.state.s, { from: 0, size: dv }); // [b, h, m, dv]
      return { out, tensors: { projection, s, z: run.state.z, c } };
    },
  };
}

function cosformerEngine(o: Resolved): Engine {
  const maxLength = o.maxLength as number;
  const eps = o.eps as number;
  // φ(x_i) = [relu(x_i) sin(a_i), relu(x_i) cos(a_i)], a_i = π/2 · i / M at absolute positions i = 1..M.
  const features = (x: tf.Tensor4D, position: number) => {
    const p = x.shape[2];
    const angles = Float32Array.from({ length: p }, (_, i) => (Math.PI / 2) * (position + i + 1) / maxLength);
    const a = tf.tensor2d(angles, [p, 1]); // [p, 1]
    const r = tf.relu(x); // [b, h, p, dk]
    return tf.concat([tf.mul(r, tf.sin(a)), tf.mul(r, tf.cos(a))], 3) as tf.Tensor4D; // [b, h, p, 2dk]
  };
  return {
    init: ({ batch, heads, dk, dv }) => ({
      s: tf.zeros([batch, heads, 2 * dk, dv]),
      z: tf.zeros([batch, heads, 2 * dk]),
    }),
    advance: (tensors, { qkv, position, single }) => {
      const state = { s: tensors.s as tf.Tensor4D, z: tensors.z as tf.Tensor3D };
      const fq = features(qkv.q, position);
      const fk = features(qkv.k, position);
      if (single) {
        const run = kernelStep({ fq: squeezeToken(fq), fk: squeezeToken(fk), v: squeezeToken(qkv.v) }, {
          normalize: true,
          eps,
          state,
        });
        return { out: tf.expandDims(run.output, 2) as tf.Tensor4D, tensors: { ...run.state } };
      }
      const run = kernelChunked({ fq, fk, v: qkv.v }, {
        normalize: true,
        eps,
        chunkSize: o.chunkSize as number,
        state,
      });
      return { out: run.output, tensors: { ...run.state } };
    },
  };
}

function softmaxEngine(o: Resolved): Engine {
  const scaleOf = (dk: number) => (o.scale as number | null) ?? 1 / Math.sqrt(dk);
  if (o.cache) {
    return {
      init: () => ({}),
      advance: (tensors, { qkv, position }) => {
        const k = appendTokens(tensors.k, qkv.k); // [b, h, t+p, dk]
        const v = appendTokens(tensors.v, qkv.v); // [b, h, t+p, dv]
        const p = qkv.q.shape[2];
        const allowed = lowerTriangle(p, { cols: position + p, offset: position }); // [p, t+p]
        const out = maskedAttend({ q: qkv.q, k, v }, { allowed, scale: scaleOf(k.shape[3]), inner: "softmax" });
        return { out, tensors: { k, v } };
      },
    };
  }
  // No cache: keep the prefix's inputs and re-run the causal attention over all of it at every call.
  return {
    init: () => ({}),
    advance: (tensors, { qkv }) => {
      const prefix = {
        q: appendTokens(tensors.q, qkv.q), // [b, h, t+p, dk]
        k: appendTokens(tensors.k, qkv.k), // [b, h, t+p, dk]
        v: appendTokens(tensors.v, qkv.v), // [b, h, t+p, dv]
      };
      const { cache: _, ...options } = o;
      const all = softmax.attend(prefix, options as SoftmaxOptions); // [b, h, t+p, dv]
      const p = qkv.q.shape[2];
      return { out: sliceTokens(all, all.shape[2] - p, p), tensors: prefix };
    },
  };
}

/**
 * Runs the p new tokens piece by piece; each piece attends to `cache` keys plus its own under `allowed`,
 * then `keep` says how many of the most recent keys the next piece still needs.
 */
function windowedAdvance(
  tensors: Readonly<Record<string, tf.Tensor>>,
  options: {
    qkv: QKV;
    position: number;
    pieceEnd: (start: number) => number;
    allowed: (i: number, j: number) => boolean;
    keep: (end: number, available: number) => number;
    inner: "softmax" | "relu";
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
    const allowed = bandMask({ rows: len, cached: c }, (i, j) => options.allowed(first + i, first + j)); // [len, c+len]
    outs.push(maskedAttend({ q: sliceTokens(qkv.q, start, len), k, v }, { allowed, scale, inner: options.inner }));
    const kept = options.keep(options.position + end, c + len);
    cache = kept === 0 ? {} : { k: sliceTokens(k, c + len - kept, kept), v: sliceTokens(v, c + len - kept, kept) };
    start = end;
  }
  const out = outs.length === 1 ? outs[0] : tf.concat(outs, 2) as tf.Tensor4D; // [b, h, p, dv]
  const next: Record<string, tf.Tensor> = cache.k && cache.v ? { k: cache.k, v: cache.v } : {};
  return { out, tensors: next };
}

function diagEngine(o: Resolved): Engine {
  const size = o.blockSize as number;
  const inner = o.inner as "softmax" | "relu";
  const block = (i: number) => Math.floor(i / size);
  return {
    init: () => ({}),
    advance: (tensors, { qkv, position }) => {
      const run = windowedAdvance(tensors, {
        qkv,
        position,
        // A piece never crosses a block boundary, and the cache holds only the current block.
        pieceEnd: (start) => (block(start) + 1) * size,
        allowed: (i, j) => j <= i && block(i) === block(j),
        keep: (end, available) => Math.min(available, end % size),
        inner,
      });
      const out = inner === "relu" ? applyOutputNorm(run.out, { norm: "srms", scope: "hidden" }) : run.out;
      return { out, tensors: run.tensors };
    },
  };
}

function localEngine(o: Resolved): Engine {
  const window = o.window as number;
  return {
    init: () => ({}),
    advance: (tensors, { qkv, position }) =>
      windowedAdvance(tensors, {
        qkv,
        position,
        pieceEnd: (start) => start + Math.max(1, window),
        allowed: (i, j) => j <= i && i - j <= window,
        keep: (_, available) => Math.min(available, window),
        inner: "softmax",
      }),
  };
}

function checkDims(owner: string, dims: DecodeDims): DecodeDims {
  if (dims === null || typeof dims !== "object" || Array.isArray(dims)) {
    throw new Error(`${owner}: dims must be an object { batch, heads, dk, dv }, got ${String(dims)}`);
  }
  const keys = ["batch", "heads", "dk", "dv"];
  for (const key of Object.keys(dims)) {
    if (!keys.includes(key)) throw new Error(`${owner}: unknown dims key "${key}"; valid keys are ${keys.join(", ")}`);
  }
  for (const key of keys) {
    const value = (dims as unknown as Record<string, unknown>)[key];
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
      throw new Error(`${owner}: dims.${key} must be a positive integer, got ${String(value)}`);
    }
  }
  return { batch: dims.batch, heads: dims.heads, dk: dims.dk, dv: dims.dv };
}

function checkInitOptions(owner: string, options: DecodeInitOptions | undefined): DecodeInitOptions {
  if (options === undefined) return {};
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new Error(`${owner}: options must be an object { from?, position? }, got ${String(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (key !== "from" && key !== "position") {
      throw new Error(`${owner}: unknown option "${key}"; valid options are from, position`);
    }
  }
  const { from = null, position } = options;
  if (position !== undefined && (typeof position !== "number" || !Number.isInteger(position) || position < 0)) {
    throw new Error(`${owner}: option position must be a non-negative integer, got ${String(position)}`);
  }
  if (from !== null && (typeof from !== "object" || Array.isArray(from))) {
    throw new Error(`${owner}: option from must be a KernelState { s, z } or null, got ${String(from)}`);
  }
  return { from, position };
}

function resolveDecoderOptions(name: DecoderVariant, options: object | undefined): Resolved {
  const owner = `decoder("${name}")`;
  const causal = (options as { causal?: unknown } | undefined)?.causal;
  if (causal !== undefined && causal !== true) {
    throw new Error(`${owner}: option causal must be true or omitted: decoding is causal; use the variant's attend()`);
  }
  const o = resolveOptions<Resolved>(owner, options, { ...DEFAULTS[name] }, RULES[name]);
  if (name === "cosformer" && o.maxLength === null) {
    throw new Error(
      `${owner}: option maxLength is required: cosFormer's weight cos(π/2 (i − j)/M) uses M = the sequence length, ` +
        `so give the length of the sequence to decode, e.g. { maxLength: 512 }`,
    );
  }
  if (name === "performer" && o.projection !== null && o.features !== null) {
    const rows = (o.projection as tf.Tensor2D).shape[0];
    if (rows !== o.features) {
      throw new Error(
        `${owner}: option features (${o.features}) disagrees with projection's ${rows} rows; give only one`,
      );
    }
  }
  return o;
}

/**
 * A decoder for one attention variant: init a state, then step token by token (or prefill a prompt).
 * Token t's output equals row t of `variants[name].attend(qkv, { ...options, causal: true })`.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { decoder } from "./decode.ts";
 * import { linear } from "./linear.ts";
 * const q = tf.randomNormal([1, 2, 5, 4]) as tf.Tensor4D;
 * const v = tf.randomNormal([1, 2, 5, 3]) as tf.Tensor4D;
 * const dec = decoder("linear");
 * let state = dec.init({ batch: 1, heads: 2, dk: 4, dv: 3 });
 * const outs = [];
 * for (let t = 0; t < 5; t++) {
 *   const x = tf.slice(q, [0, 0, t, 0], [-1, -1, 1, -1]) as tf.Tensor4D;
 *   const { out, state: next } = dec.step(state, { q: x, k: x, v: tf.slice(v, [0, 0, t, 0], [-1, -1, 1, -1]) });
 *   dec.dispose(state);
 *   state = next;
 *   outs.push(out);
 * }
 * const parallel = linear.attend({ q, k: q, v }, { causal: true });
 * console.log(tf.max(tf.abs(tf.sub(tf.concat(outs, 2), parallel))).dataSync()[0] < 1e-4); // true
 * console.log(dec.stateSize(state)); // 2 * 4 * 3 + 2 * 4 = 32
 * ```
 */
export function decoder<N extends DecoderVariant>(name: N, options?: DecoderOptions<N>): Decoder {
  if (!(DECODER_VARIANTS as readonly string[]).includes(name)) {
    throw new Error(`decoder: variant must be one of ${DECODER_VARIANTS.join(", ")}, got ${JSON.stringify(name)}`);
  }
  const o = resolveDecoderOptions(name, options);
  const owner = `decoder("${name}")`;
  const engine: Engine = name === "linear" || name === "norm"
    ? kernelEngine(name, o)
    : name === "performer"
    ? performerEngine(o)
    : name === "cosformer"
    ? cosformerEngine(o)
    : name === "softmax"
    ? softmaxEngine(o)
    : name === "diag"
    ? diagEngine(o)
    : localEngine(o);

  const checkState = (method: string, state: DecodeState) => {
    if (state === null || typeof state !== "object" || !state.tensors || !state.dims) {
      throw new Error(`${owner}.${method}: state must be a DecodeState from init(), step() or prefill()`);
    }
    if (state.variant !== name) {
      throw new Error(`${owner}.${method}: state belongs to variant "${state.variant}"; use that variant's decoder`);
    }
    if (Object.values(state.tensors).some((x) => x.isDisposed)) {
      throw new Error(
        `${owner}.${method}: state has been disposed; pass the state returned by the latest step() or prefill()`,
      );
    }
  };

  const checkInput = (state: DecodeState, { method, qkv }: { method: string; qkv: QKV }) => {
    checkQKV(`${owner}.${method}`, qkv);
    const [b, h, n, dk] = qkv.q.shape;
    const dv = qkv.v.shape[3];
    if (method === "step" && n !== 1) {
      throw new Error(`${owner}.step: q, k, v must hold one token ([batch, heads, 1, d]), got n = ${n}; use prefill()`);
    }
    const want = state.dims;
    const got = { batch: b, heads: h, dk, dv };
    for (const key of ["batch", "heads", "dk", "dv"] as const) {
      if (got[key] !== want[key]) {
        throw new Error(
          `${owner}.${method}: the input's ${key} is ${got[key]} but the state was built for ${key} = ${want[key]}; ` +
            `pass q, k [${want.batch}, ${want.heads}, n, ${want.dk}] and v [${want.batch}, ${want.heads}, n, ${want.dv}]`,
        );
      }
    }
    if (name === "cosformer" && state.position + n > (o.maxLength as number)) {
      throw new Error(
        `${owner}.${method}: position ${state.position + n} is beyond maxLength ${o.maxLength}; ` +
          `cosFormer's weights depend on the sequence length, so build the decoder with a larger maxLength`,
      );
    }
  };

  const advance = (state: DecodeState, { method, qkv }: { method: string; qkv: QKV }): DecodeResult => {
    checkState(method, state);
    checkInput(state, { method, qkv });
    const old = new Set<tf.Tensor>([...Object.values(state.tensors), qkv.q, qkv.k, qkv.v]);
    const result = tf.tidy(() => {
      const r = engine.advance(state.tensors, { qkv, position: state.position, single: method === "step" });
      // Every state owns its tensors: what the engine passed through unchanged is cloned.
      const tensors = Object.fromEntries(
        Object.entries(r.tensors).map(([key, x]) => [key, old.has(x) ? tf.clone(x) : x]),
      );
      return { out: old.has(r.out) ? tf.clone(r.out) : r.out, tensors };
    });
    for (const x of Object.values(result.tensors)) tf.keep(x);
    const next: DecodeState = Object.freeze({
      variant: name,
      dims: state.dims,
      position: state.position + qkv.q.shape[2],
      tensors: Object.freeze(result.tensors),
    });
    return { out: result.out, state: next };
  };

  return Object.freeze({
    variant: name,
    options: Object.freeze({ ...o }),
    init(dims: DecodeDims, initOptions?: DecodeInitOptions): DecodeState {
      const d = Object.freeze(checkDims(`${owner}.init`, dims));
      const start = checkInitOptions(`${owner}.init`, initOptions);
      const projection = o.projection as tf.Tensor2D | null | undefined;
      if (projection && projection.shape[1] !== d.dk) {
        throw new Error(
          `${owner}.init: option projection must be [features, dk] with dk = ${d.dk}, got [${
            projection.shape.join(", ")
          }]`,
        );
      }
      let tensors: Record<string, tf.Tensor>;
      if (start.from) {
        if (name !== "linear" && name !== "norm") {
          throw new Error(`${owner}.init: option from is only for linear and norm (the KernelState of recurrent.ts)`);
        }
        if (start.position === undefined) {
          throw new Error(`${owner}.init: option position is required with from: the tokens the state has consumed`);
        }
        const { s, z } = start.from;
        const ok = s instanceof tf.Tensor && z instanceof tf.Tensor && !s.isDisposed && !z.isDisposed &&
          s.shape.join() === [d.batch, d.heads, d.dk, d.dv].join() &&
          z.shape.join() === [d.batch, d.heads, d.dk].join();
        if (!ok) {
          throw new Error(
            `${owner}.init: option from must be { s: [${d.batch}, ${d.heads}, ${d.dk}, ${d.dv}], ` +
              `z: [${d.batch}, ${d.heads}, ${d.dk}] } (the dims given), as returned by recurrentAttend or chunkedAttend`,
          );
        }
        tensors = { s: tf.clone(s), z: tf.clone(z) };
      } else {
        if (start.position !== undefined && start.position !== 0) {
          throw new Error(`${owner}.init: option position needs a carried state (option from); omit it otherwise`);
        }
        tensors = tf.tidy(() => engine.init(d));
      }
      for (const x of Object.values(tensors)) tf.keep(x);
      return Object.freeze({ variant: name, dims: d, position: start.position ?? 0, tensors: Object.freeze(tensors) });
    },
    step: (state: DecodeState, token: QKV) => advance(state, { method: "step", qkv: token }),
    prefill: (state: DecodeState, qkv: QKV) => advance(state, { method: "prefill", qkv }),
    stateSize(state: DecodeState): number {
      checkState("stateSize", state);
      return Object.values(state.tensors).reduce((sum, x) => sum + x.size, 0);
    },
    dispose(state: DecodeState): void {
      if (state === null || typeof state !== "object" || !state.tensors) {
        throw new Error(`${owner}.dispose: state must be a DecodeState from init(), step() or prefill()`);
      }
      tf.dispose(Object.values(state.tensors));
    },
  });
}
