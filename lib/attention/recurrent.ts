/**
 * Causal linear attention and NormAttention as recurrences ("Transformers are RNNs"):
 * the state (S = sum phi(k) v^T, z = sum phi(k)) is all a token needs from its past.
 *
 * Two forms with one signature, both starting from an optional state and returning the
 * final one: {@linkcode recurrentAttend} (token by token) and {@linkcode chunkedAttend}
 * (chunkwise-parallel). Both equal the causal `attend()` of the registered variant.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { applyFeatureMap, type FeatureMap } from "./feature_maps.ts";
import { kernelChunked, type KernelState, kernelStep, zeroKernelState } from "./kernel.ts";
import { LINEAR_DEFAULTS, LINEAR_RULES, type LinearOptions } from "./linear.ts";
import { NORM_DEFAULTS, NORM_RULES, type NormOptions } from "./norm.ts";
import { applyOutputNorm, type NormScope, type OutputNorm } from "./norms.ts";
import { checkQKV, type OptionRule, type QKV, resolveOptions } from "./types.ts";

export type { KernelState } from "./kernel.ts";

/** The variants with a recurrent form. */
export const RECURRENT_VARIANTS = ["linear", "norm"] as const;

/** One of {@linkcode RECURRENT_VARIANTS}. */
export type RecurrentVariant = typeof RECURRENT_VARIANTS[number];

/** The variant's options (causal is implied) plus the state to start from (zeros when absent). */
export type RecurrentOptions<N extends RecurrentVariant> =
  & Omit<N extends "linear" ? LinearOptions : NormOptions, "causal">
  & {
    causal?: true;
    state?: KernelState | null;
  };

interface Resolved {
  featureMap: FeatureMap;
  normalize: boolean;
  eps: number;
  chunkSize: number;
  norm: OutputNorm;
  normScope: NormScope;
  state: KernelState | null;
}

function resolve(name: RecurrentVariant, owner: string, options: object | undefined): Resolved {
  if (!(RECURRENT_VARIANTS as readonly string[]).includes(name)) {
    throw new Error(`${owner}: variant must be one of ${RECURRENT_VARIANTS.join(", ")}, got "${name}"`);
  }
  const causal = (options as { causal?: unknown } | undefined)?.causal;
  if (causal !== undefined && causal !== true) {
    throw new Error(
      `${owner}: option causal must be true or omitted: the recurrent forms are causal; use the variant's attend() otherwise`,
    );
  }
  const rules: Record<string, OptionRule> = {
    ...(name === "linear" ? LINEAR_RULES : NORM_RULES),
    state: { type: "boolean" },
  };
  const { state = null, ...rest } = (options ?? {}) as { state?: KernelState | null };
  const o = resolveOptions<Record<string, unknown>>(
    `${name}.${owner}`,
    rest,
    { ...(name === "linear" ? LINEAR_DEFAULTS : NORM_DEFAULTS) },
    rules,
  );
  return {
    featureMap: o.featureMap as FeatureMap,
    normalize: name === "linear",
    eps: name === "linear" ? o.eps as number : 0,
    chunkSize: o.chunkSize as number,
    norm: name === "linear" ? "none" : o.norm as OutputNorm,
    normScope: name === "linear" ? "head" : o.normScope as NormScope,
    state,
  };
}

function checkState(owner: string, state: KernelState, dims: { batch: number; heads: number; dk: number; dv: number }) {
  const want = [dims.batch, dims.heads, dims.dk, dims.dv];
  if (state?.s instanceof tf.Tensor && state.z instanceof tf.Tensor && (state.s.isDisposed || state.z.isDisposed)) {
    throw new Error(`${owner}: option state was disposed; pass the state returned by the latest call`);
  }
  const ok = state && state.s instanceof tf.Tensor && state.z instanceof tf.Tensor &&
    state.s.shape.every((s, i) => s === want[i]) && state.z.shape.every((s, i) => s === want[i]) && state.z.rank === 3;
  if (!ok) {
    throw new Error(
      `${owner}: option state must be { s: [${want.join(", ")}], z: [${want.slice(0, 3).join(", ")}] } ` +
        `(batch, heads, dk, dv of the input); start from initialState() or a state returned by the same variant`,
    );
  }
}

// Options and inputs of a whole-sequence form, checked: the state must fit the input's shapes.
function resolveForSequence(name: RecurrentVariant, owner: string, qkv: QKV, options: object | undefined): Resolved {
  const o = resolve(name, owner, options);
  checkQKV(`${name}.${owner}`, qkv);
  const [batch, heads, , dk] = qkv.q.shape;
  if (o.state !== null) checkState(`${name}.${owner}`, o.state, { batch, heads, dk, dv: qkv.v.shape[3] });
  return o;
}

/**
 * A zero state: s [batch, heads, dk, dv], z [batch, heads, dk].
 *
 * @example
 * ```ts
 * import { initialState } from "./recurrent.ts";
 * const s = initialState({ batch: 1, heads: 2, dk: 4, dv: 3 });
 * console.log(s.s.shape.join(","), s.z.shape.join(",")); // 1,2,4,3 1,2,4
 * ```
 */
export function initialState(dims: { batch: number; heads: number; dk: number; dv: number }): KernelState {
  for (const [key, value] of Object.entries(dims)) {
    if (!Number.isInteger(value) || value < 1) {
      throw new Error(`initialState: ${key} must be a positive integer, got ${value}`);
    }
  }
  return zeroKernelState({ batch: dims.batch, heads: dims.heads, m: dims.dk, dv: dims.dv });
}

/**
 * One token: q, k [batch, heads, dk] and v [batch, heads, dv] -> output [batch, heads, dv] and the next state.
 * The caller owns both returned tensors and the state it passed in.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { initialState, recurrentStep } from "./recurrent.ts";
 * const x = tf.randomNormal([1, 2, 4]) as tf.Tensor3D;
 * const { output, state } = recurrentStep("linear", { q: x, k: x, v: x }, { state: initialState({ batch: 1, heads: 2, dk: 4, dv: 4 }) });
 * console.log(output.shape.join(","), state.s.shape.join(",")); // 1,2,4 1,2,4,4
 * ```
 */
export function recurrentStep<N extends RecurrentVariant>(
  name: N,
  token: { q: tf.Tensor3D; k: tf.Tensor3D; v: tf.Tensor3D },
  options: RecurrentOptions<N> & { state: KernelState },
): { output: tf.Tensor3D; state: KernelState } {
  const owner = "recurrentStep";
  const o = resolve(name, owner, options);
  const { q, k, v } = token ?? {};
  for (const [label, x] of [["q", q], ["k", k], ["v", v]] as const) {
    if (!(x instanceof tf.Tensor) || x.rank !== 3) {
      throw new TypeError(`${name}.${owner}: ${label} must be a rank-3 tensor [batch, heads, d] for one token`);
    }
    if (x.isDisposed) throw new Error(`${name}.${owner}: ${label} was disposed; pass a live tensor`);
    const axis = ["batch", "heads", label === "v" ? "dv" : "dk"][x.shape.findIndex((s) => s < 1)];
    if (axis !== undefined) {
      throw new RangeError(
        `${name}.${owner}: ${label} must have ${axis} >= 1, got shape [${x.shape.join(", ")}] ([batch, heads, d])`,
      );
    }
  }
  // tfjs would broadcast a k or v of size 1 along an axis against the state instead of failing.
  if (k.shape.join() !== q.shape.join() || v.shape[0] !== q.shape[0] || v.shape[1] !== q.shape[1]) {
    throw new Error(
      `${name}.${owner}: k must have q's shape [batch, heads, dk] and v q's batch and heads, got q [${q.shape}], ` +
        `k [${k.shape}], v [${v.shape}]`,
    );
  }
  if (o.state === null) throw new Error(`${name}.${owner}: option state is required; start from initialState()`);
  checkState(`${name}.${owner}`, o.state, { batch: q.shape[0], heads: q.shape[1], dk: q.shape[2], dv: v.shape[2] });
  const features = { fq: applyFeatureMap(q, o.featureMap), fk: applyFeatureMap(k, o.featureMap), v };
  const step = kernelStep(features, { state: o.state, normalize: o.normalize, eps: o.eps });
  tf.dispose([features.fq, features.fk]);
  if (o.norm === "none") return step;
  const output = tf.tidy(() =>
    tf.squeeze(applyOutputNorm(tf.expandDims(step.output, 2) as tf.Tensor4D, { norm: o.norm, scope: o.normScope }), [2])
  ) as tf.Tensor3D;
  step.output.dispose();
  return { output, state: step.state };
}

/**
 * The recurrent form: runs {@linkcode recurrentStep} over the n tokens. O(n dk dv), O(dk dv) state.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { variants } from "./mod.ts";
 * import { recurrentAttend } from "./recurrent.ts";
 * const q = tf.randomNormal([1, 1, 5, 3]) as tf.Tensor4D;
 * const { output } = recurrentAttend("norm", { q, k: q, v: q });
 * const parallel = variants.norm.attend({ q, k: q, v: q }, { causal: true });
 * console.log(tf.max(tf.abs(tf.sub(output, parallel))).dataSync()[0] < 1e-4); // true
 * ```
 */
export function recurrentAttend<N extends RecurrentVariant>(
  name: N,
  qkv: QKV,
  options?: RecurrentOptions<N>,
): { output: tf.Tensor4D; state: KernelState } {
  const o = resolveForSequence(name, "recurrentAttend", qkv, options);
  const [batch, heads, n, dk] = qkv.q.shape;
  const dv = qkv.v.shape[3];
  const { state: _, ...stepOptions } = (options ?? {}) as RecurrentOptions<N>;
  const token = (x: tf.Tensor4D, t: number) =>
    tf.tidy(() => tf.squeeze(tf.slice(x, [0, 0, t, 0], [-1, -1, 1, -1]), [2])) as tf.Tensor3D;
  let state = o.state ?? initialState({ batch, heads, dk, dv });
  const outputs: tf.Tensor3D[] = [];
  for (let t = 0; t < n; t++) {
    const tokens = { q: token(qkv.q, t), k: token(qkv.k, t), v: token(qkv.v, t) };
    const step = recurrentStep(name, tokens, { ...stepOptions, state } as RecurrentOptions<N> & { state: KernelState });
    tf.dispose(tokens);
    if (state !== o.state) tf.dispose([state.s, state.z]);
    state = step.state;
    outputs.push(step.output);
  }
  const output = tf.stack(outputs, 2) as tf.Tensor4D; // [b, h, n, dv]
  tf.dispose(outputs);
  return { output, state };
}

/**
 * The chunkwise-parallel form, with the same signature as {@linkcode recurrentAttend}.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { chunkedAttend, recurrentAttend } from "./recurrent.ts";
 * const q = tf.randomNormal([1, 1, 9, 3]) as tf.Tensor4D;
 * const a = chunkedAttend("linear", { q, k: q, v: q }, { chunkSize: 4 });
 * const b = recurrentAttend("linear", { q, k: q, v: q });
 * console.log(tf.max(tf.abs(tf.sub(a.output, b.output))).dataSync()[0] < 1e-4); // true
 * ```
 */
export function chunkedAttend<N extends RecurrentVariant>(
  name: N,
  qkv: QKV,
  options?: RecurrentOptions<N>,
): { output: tf.Tensor4D; state: KernelState } {
  const o = resolveForSequence(name, "chunkedAttend", qkv, options);
  const fq = applyFeatureMap(qkv.q, o.featureMap);
  const fk = applyFeatureMap(qkv.k, o.featureMap);
  const result = kernelChunked(
    { fq, fk, v: qkv.v },
    { normalize: o.normalize, eps: o.eps, chunkSize: o.chunkSize, ...(o.state ? { state: o.state } : {}) },
  );
  tf.dispose([fq, fk]);
  if (o.norm === "none") return result;
  const output = applyOutputNorm(result.output, { norm: o.norm, scope: o.normScope });
  result.output.dispose();
  return { output, state: result.state };
}
