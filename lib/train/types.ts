/**
 * The contract between a model and the training loop, and the shapes of the loop's logs.
 *
 * @module
 */

import type * as tf from "@tensorflow/tfjs";

/** What the loop trains. Variable names are dotted paths; "blocks.<i>." prefixes mark layer i. */
export interface Trainable<B> {
  /** Trainable variables by name, in a stable order (e.g. "embed.weight", "blocks.0.attn.wq", "blocks.0.ffn.w1", "norm.weight"). */
  readonly variables: Readonly<Record<string, tf.Variable>>;
  /** Scalar mean loss for a batch. Called inside tf.variableGrads / tf.tidy: must be synchronous. */
  loss(batch: B): tf.Scalar;
  /** A JSON-serialisable config that, with the training options, identifies the run (hashed for the cache). */
  readonly config: unknown;
  /**
   * Optional: the first stage of the forward pass on `batch` whose output is not finite (a "blocks.<i>."
   * prefix marks layer i), or null. The loop calls it once when the loss is not finite, and when `loss`
   * throws: a stage found then makes the throw a non-finite stop (the attention variants throw on NaN input). It may
   * return a promise (awaited), so that it can read with `await data()` on a GPU backend.
   */
  firstNonFinite?(batch: B): string | null | Promise<string | null>;
}

/**
 * One row of `train.csv`: the loss on `batchAt(step)` before update `step` (so after `step` updates),
 * the learning rate of that update, the pre-clip global gradient norm and whether it was clipped.
 */
export interface TrainRow {
  [column: string]: number | boolean | null;
  /** Batch index, and the number of updates applied before this loss was measured. */
  step: number;
  /** Learning rate of this step's update. */
  lr: number;
  /** Mean loss of the batch (before the update). */
  loss: number;
  /** Global L2 norm of all gradients, before clipping. */
  grad_norm: number;
  /** Whether the gradients were scaled down to `clip`. */
  clipped: boolean;
  /** The clipping threshold, or null when clipping is off. */
  clip: number | null;
  /** Tokens in the batch, or null when unknown (give `tokensPerBatch` or `batchTokens`). */
  tokens: number | null;
  /** Tokens per second over this step (batch, loss, gradients, update), or null when unknown. */
  tokens_per_s: number | null;
  /** Seconds this step took. */
  seconds: number;
}

/**
 * One row of `grad_norms.csv`: `step`, the L2 norm of every variable's gradient (a column per variable name),
 * a `blocks.<i>.*` column per layer (the norm over that layer's variables) and `global`. Before clipping.
 */
export type GradNormRow = Record<string, number>;

/**
 * One row of `valid.csv`, measured after `step` updates. `loss` is the mean over all scored targets (each batch
 * weighted by `scoredTargets`: its mask sum, or batch × length);
 * `perplexity` is exp(loss): for byte-level data a per-byte perplexity. `bits_per_byte` is loss / ln 2,
 * i.e. bits per token, which are bytes for byte-level data.
 */
export interface ValidRow {
  [column: string]: number;
  /** Updates applied before this measurement. */
  step: number;
  loss: number;
  perplexity: number;
  bits_per_byte: number;
}

/** One row of `probes.csv`: `step` (updates applied before the probe) and the probe's own columns. */
export type ProbeRow = Record<string, number>;

/** Everything a run logs, as arrays of row objects (the CSV files hold the same rows). */
export interface TrainLogs {
  train: TrainRow[];
  gradNorms: GradNormRow[];
  valid: ValidRow[];
  probes: ProbeRow[];
}

/** Why a run stopped before its last step. */
export interface NonFiniteStop {
  reason: "non-finite";
  /** The batch index whose loss or gradients were not finite; its update was not applied. */
  step: number;
  /**
   * "loss" when the loss was not finite; else the variable with a non-finite gradient where backpropagation
   * meets one first: the last of them (in the model's order) in the highest-numbered layer ("blocks.<i>."),
   * or, when no layer's variable is bad, the last of them in the model's order.
   */
  where: string;
  /**
   * The layer i where it started: for a gradient, that of `where`; for the loss, that of `stage`. Null when
   * it is in no layer ("blocks.<i>.").
   */
  layer: number | null;
  /**
   * For a non-finite loss: the first stage of the forward pass with a non-finite output, from
   * {@linkcode Trainable.firstNonFinite} (e.g. "blocks.1.attn"); null for gradients, when the model has no
   * such method, or when every stage was finite.
   */
  stage: string | null;
  /**
   * Every variable with a non-finite gradient, in the model's order; empty when the loss threw on a non-finite
   * value (see {@linkcode Trainable.firstNonFinite}) and no gradient was computed.
   */
  variables: string[];
}
