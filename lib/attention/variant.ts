/**
 * Builds a registered variant from its two core computations, so that input checks,
 * option handling, memory hygiene and the naive reference are the same for all.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import {
  type AttentionOptions,
  type AttentionVariant,
  checkQK,
  checkQKV,
  type OptionRule,
  type QK,
  type QKV,
  resolveOptions,
} from "./types.ts";

/** What a variant module provides; {@linkcode defineVariant} adds the rest. */
export interface VariantSpec<O extends AttentionOptions> {
  name: string;
  /** Every option's default; `null` stands for a default computed from the input (e.g. 1/sqrt(dk)). */
  defaults: Required<O>;
  rules: Record<keyof O & string, OptionRule>;
  /** The fast path; inputs are checked and options resolved. */
  attend(qkv: QKV, options: Required<O>): tf.Tensor4D;
  /** The explicit [batch, heads, n, n] matrix. */
  weights(qk: QK, options: Required<O>): tf.Tensor4D;
  /** The output norm applied after M v, if any. */
  outputNorm?(o: tf.Tensor4D, options: Required<O>): tf.Tensor4D;
}

/**
 * Wraps a {@linkcode VariantSpec} into an {@linkcode AttentionVariant}: checks inputs, resolves
 * options (unknown keys throw), runs inside tf.tidy, and derives reference() = norm(weights() v).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { defineVariant } from "./variant.ts";
 * const mean = defineVariant({
 *   name: "mean",
 *   defaults: { causal: false },
 *   rules: { causal: { type: "boolean" } },
 *   weights: ({ q, k }) => tf.div(tf.onesLike(tf.matMul(q, k, false, true)), q.shape[2]),
 *   attend: ({ v }) => tf.mul(tf.onesLike(v), tf.mean(v, 2, true)),
 * });
 * const x = tf.ones([1, 1, 4, 2]) as tf.Tensor4D;
 * console.log(mean.attend({ q: x, k: x, v: x }).shape.join(",")); // 1,1,4,2
 * ```
 */
export function defineVariant<O extends AttentionOptions>(spec: VariantSpec<O>): AttentionVariant<O> {
  const { name, defaults, rules } = spec;
  const resolve = (method: string, options: O | undefined) =>
    resolveOptions(`${name}.${method}`, options, defaults, rules as Record<string, OptionRule>);
  return Object.freeze({
    name,
    defaults: Object.freeze({ ...defaults }),
    rules: Object.freeze({ ...rules }) as Readonly<Record<string, OptionRule>>,
    attend(qkv: QKV, options?: O): tf.Tensor4D {
      checkQKV(`${name}.attend`, qkv);
      const o = resolve("attend", options);
      return tf.tidy(() => spec.attend(qkv, o));
    },
    weights(qk: QK, options?: O): tf.Tensor4D {
      checkQK(`${name}.weights`, qk);
      const o = resolve("weights", options);
      return tf.tidy(() => spec.weights(qk, o));
    },
    reference(qkv: QKV, options?: O): tf.Tensor4D {
      checkQKV(`${name}.reference`, qkv);
      const o = resolve("reference", options);
      return tf.tidy(() => {
        const out = tf.matMul(spec.weights(qkv, o), qkv.v) as tf.Tensor4D; // [b, h, n, dv]
        return spec.outputNorm ? spec.outputNorm(out, o) : out;
      });
    },
    outputNorm(out: tf.Tensor4D, options?: O): tf.Tensor4D {
      if (!(out instanceof tf.Tensor) || out.rank !== 4) {
        throw new TypeError(`${name}.outputNorm: o must be a rank-4 tf.Tensor [batch, heads, n, dv]`);
      }
      if (out.isDisposed) throw new Error(`${name}.outputNorm: o was disposed; pass a live tensor`);
      const o = resolve("outputNorm", options);
      return spec.outputNorm ? tf.tidy(() => spec.outputNorm!(out, o)) : tf.clone(out);
    },
  });
}

/**
 * An additive mask: 0 where `allowed` is 1 and -1e9 where it is 0, so masked logits vanish in softmax.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { maskBias } from "./variant.ts";
 * console.log(Array.from(maskBias(tf.tensor1d([1, 0])).dataSync()).join(" ")); // 0 -1000000000
 * ```
 */
export function maskBias<T extends tf.Tensor>(allowed: T): T {
  return tf.tidy(() => tf.mul(tf.sub(1, allowed), -1e9) as T);
}

/**
 * An [n, n] 0/1 matrix from a predicate on (query i, key j).
 *
 * @example
 * ```ts
 * import { maskFrom } from "./variant.ts";
 * console.log(JSON.stringify(maskFrom(2, (i, j) => i === j).arraySync())); // [[1,0],[0,1]]
 * ```
 */
export function maskFrom(n: number, allowed: (i: number, j: number) => boolean): tf.Tensor2D {
  const data = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) data[i * n + j] = allowed(i, j) ? 1 : 0;
  return tf.tensor2d(data, [n, n]);
}
