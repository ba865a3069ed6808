/**
 * The recurrent forms by variant name ("Transformers are RNNs"): for every registered variant whose causal past fits
 * in a fixed-size state (RECURRENT_VARIANTS in mod.ts: linear, performer, cosformer, norm, retention), that state is
 * all a token needs from its past.
 *
 * Two forms with one signature, both starting from an optional state and returning the final one:
 * {@linkcode recurrentAttend} (token by token) and {@linkcode chunkedAttend} (chunkwise-parallel). Both equal the
 * causal `attend()` of the registered variant. They are the variant's own `recurrentAttend` / `chunkedAttend`
 * (`variants[name]`), looked up by name; each variant's file defines them.
 *
 * @module
 */

import type * as tf from "@tensorflow/tfjs";
import { type KernelState, zeroKernelState } from "./kernel.ts";
import { RECURRENT_VARIANTS, type RecurrentVariant, type VariantName, variants } from "./mod.ts";
import type { QKV, RecurrentAttentionVariant, StateFormOptions, Token } from "./types.ts";

export type { KernelState } from "./kernel.ts";

/** The options of variant N's state forms (causal implied), plus the state to start from and its position. */
export type RecurrentOptions<N extends RecurrentVariant> = StateFormOptions<OptionsOf<N>, StateOf<N>>;

/** The options type of variant N. */
export type OptionsOf<N extends VariantName> = (typeof variants)[N] extends
  { attend(qkv: QKV, options?: infer O): unknown } ? NonNullable<O>
  : never;

/** The state type of recurrent variant N (linear, norm, cosformer: {@linkcode KernelState}). */
export type StateOf<N extends RecurrentVariant> = (typeof variants)[N] extends
  RecurrentAttentionVariant<infer _, infer S> ? S : never;

function recurrentVariant<N extends RecurrentVariant>(owner: string, name: N) {
  if (!(RECURRENT_VARIANTS as readonly string[]).includes(name)) {
    throw new Error(`${owner}: variant must be one of ${RECURRENT_VARIANTS.join(", ")}, got ${JSON.stringify(name)}`);
  }
  return variants[name] as unknown as RecurrentAttentionVariant<OptionsOf<N>, StateOf<N>>;
}

/**
 * A zero {@linkcode KernelState} over m = dk features, the state of linear and norm: s [batch, heads, dk, dv],
 * z [batch, heads, dk]. Every recurrent variant's own zero state is `variants[name].initialState(dims, options)`.
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
  token: Token,
  options: RecurrentOptions<N> & { state: StateOf<N> },
): { output: tf.Tensor3D; state: StateOf<N> } {
  return recurrentVariant("recurrentStep", name).recurrentStep(token, options);
}

/**
 * The recurrent form: runs {@linkcode recurrentStep} over the n tokens. O(n) steps, a state of fixed size.
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
): { output: tf.Tensor4D; state: StateOf<N> } {
  return recurrentVariant("recurrentAttend", name).recurrentAttend(qkv, options);
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
 * const b = recurrentAttend("retention", { q, k: q, v: q });
 * const c = chunkedAttend("retention", { q, k: q, v: q }, { chunkSize: 4 });
 * console.log(a.state.z.shape.join(","), tf.max(tf.abs(tf.sub(b.output, c.output))).dataSync()[0] < 1e-4); // 1,1,3 true
 * ```
 */
export function chunkedAttend<N extends RecurrentVariant>(
  name: N,
  qkv: QKV,
  options?: RecurrentOptions<N>,
): { output: tf.Tensor4D; state: StateOf<N> } {
  return recurrentVariant("chunkedAttend", name).chunkedAttend(qkv, options);
}
