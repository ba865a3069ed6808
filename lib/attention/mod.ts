/**
 * Attention variants behind one contract, and their recurrent forms and decoders. Each variant is one file
 * (`softmax.ts`, ..., `retention.ts`) that declares everything the rest of attnlab needs; `variants` below is the
 * registry every other module loops over. README.md beside this file walks through adding one.
 *
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { variants } from "./mod.ts";
 * const q = tf.randomNormal([1, 2, 8, 4]) as tf.Tensor4D;
 * const v = tf.randomNormal([1, 2, 8, 3]) as tf.Tensor4D;
 * for (const variant of Object.values(variants)) variant.attend({ q, k: q, v }, { causal: true });
 * ```
 *
 * @module
 */

import { cosformer } from "./cosformer.ts";
import { diag } from "./diag.ts";
import { linear } from "./linear.ts";
import { local } from "./local.ts";
import { norm } from "./norm.ts";
import { performer } from "./performer.ts";
import { retention } from "./retention.ts";
import { softmax } from "./softmax.ts";

export * from "./types.ts";
export { softmax, type SoftmaxOptions, softmaxWeights } from "./softmax.ts";
export { linear, type LinearOptions } from "./linear.ts";
export {
  favorFeatures,
  orthogonalRandomFeatures,
  performer,
  performerFeatures,
  type PerformerOptions,
  type PerformerState,
} from "./performer.ts";
export { cosformer, cosformerFeatures, type CosformerOptions } from "./cosformer.ts";
export { norm, type NormOptions } from "./norm.ts";
export { diag, type DiagOptions } from "./diag.ts";
export { local, type LocalOptions } from "./local.ts";
export { retention, retentionDecays, type RetentionOptions, type RetentionState } from "./retention.ts";
export { applyFeatureMap, FEATURE_MAPS, type FeatureMap } from "./feature_maps.ts";
export {
  applyOutputNorm,
  NORM_SCOPES,
  normalizeLastAxis,
  type NormScope,
  OUTPUT_NORMS,
  type OutputNorm,
} from "./norms.ts";
export {
  chunkedAttend,
  initialState,
  type OptionsOf,
  recurrentAttend,
  type RecurrentOptions,
  recurrentStep,
  type StateOf,
} from "./recurrent.ts";
export type { KernelState } from "./kernel.ts";
export {
  type DecodeDims,
  type DecodeInitOptions,
  type Decoder,
  decoder,
  type DecodeResult,
  type DecoderOptions,
  type DecodeState,
} from "./decode.ts";

/**
 * Every attention variant, keyed by name: the registry. A new variant is one file and one entry here.
 *
 * @example
 * ```ts
 * import { variants } from "./mod.ts";
 * console.log(Object.keys(variants).join(" ")); // softmax linear performer cosformer norm diag local retention
 * ```
 */
export const variants = Object.freeze({ softmax, linear, performer, cosformer, norm, diag, local, retention });

/** A key of {@linkcode variants}. */
export type VariantName = keyof typeof variants;

/** The variants with recurrent forms (a fixed-size state): chunkedAttend, recurrentAttend, recurrentStep. */
export type RecurrentVariant = {
  [N in VariantName]: (typeof variants)[N] extends { chunkedAttend: unknown } ? N : never;
}[VariantName];

/**
 * The variants with recurrent forms, in registry order: those whose causal past fits in a fixed-size state.
 *
 * @example
 * ```ts
 * import { RECURRENT_VARIANTS } from "./mod.ts";
 * console.log(RECURRENT_VARIANTS.join(" ")); // linear performer cosformer norm retention
 * ```
 */
export const RECURRENT_VARIANTS: readonly RecurrentVariant[] = Object.freeze(
  (Object.keys(variants) as VariantName[]).filter((name) => "chunkedAttend" in variants[name]) as RecurrentVariant[],
);

/** A variant {@linkcode decoder} accepts: every registered one with a decoding form. */
export type DecoderVariant = VariantName;

/**
 * The variants {@linkcode decoder} accepts, in registry order: every variant with a decoding engine.
 *
 * @example
 * ```ts
 * import { DECODER_VARIANTS, variants } from "./mod.ts";
 * console.log(DECODER_VARIANTS.length === Object.keys(variants).length); // true
 * ```
 */
export const DECODER_VARIANTS: readonly DecoderVariant[] = Object.freeze(
  (Object.keys(variants) as VariantName[]).filter((name) => variants[name].decoding !== null),
);
