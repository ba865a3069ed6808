/**
 * Attention variants behind one contract, and their recurrent forms.
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
import { softmax } from "./softmax.ts";

export * from "./types.ts";
export { softmax, type SoftmaxOptions, softmaxWeights } from "./softmax.ts";
export { linear, type LinearOptions } from "./linear.ts";
export { favorFeatures, orthogonalRandomFeatures, performer, type PerformerOptions } from "./performer.ts";
export { cosformer, cosformerFeatures, type CosformerOptions } from "./cosformer.ts";
export { norm, type NormOptions } from "./norm.ts";
export { diag, type DiagOptions } from "./diag.ts";
export { local, type LocalOptions } from "./local.ts";
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
  RECURRENT_VARIANTS,
  recurrentAttend,
  type RecurrentOptions,
  recurrentStep,
  type RecurrentVariant,
} from "./recurrent.ts";
export type { KernelState } from "./kernel.ts";
export {
  type DecodeDims,
  type DecodeInitOptions,
  type Decoder,
  decoder,
  DECODER_VARIANTS,
  type DecodeResult,
  type DecoderOptions,
  type DecoderVariant,
  type DecodeState,
} from "./decode.ts";

/**
 * Every attention variant, keyed by name.
 *
 * @example
 * ```ts
 * import { variants } from "./mod.ts";
 * console.log(Object.keys(variants).join(" ")); // softmax linear performer cosformer norm diag local
 * ```
 */
export const variants = Object.freeze({ softmax, linear, performer, cosformer, norm, diag, local });

/** A key of {@linkcode variants}. */
export type VariantName = keyof typeof variants;
