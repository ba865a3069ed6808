/**
 * A small TransNormer-style transformer with a pluggable attention variant per layer.
 *
 * token ids [b, n] → embedding · sqrt(d) + sinusoidal positions → N pre-norm blocks
 * (`x + Attn(Norm(x))`, then `x + FFN(Norm(x))`) → final norm → head.
 * The language model ties its output head to the embedding and is causal; the masked language model
 * (task "mlm") has the same tied head but bidirectional attention in every layer, and its loss averages
 * over the masked positions only; the classifier is bidirectional, keeps its pad tokens out of every
 * layer's keys (a key-padding mask) and out of the mean pooling, and applies a linear head.
 *
 * Every attention layer projects q, k, v, runs its variant's fast `attend` (or, for the diagnostics,
 * the explicit `weights(q, k) · v` reference), merges the heads and projects out.
 *
 * The file reads top to bottom: the parameters, then the model (its forward pass, then the hook point
 * `trace` that the diagnostics in probes.ts run through), then `createModel`. The input checks are in _checks.ts.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { checkOptionKeys, normalizeLastAxis, type QKV, variants } from "../attention/mod.ts";
import { siluGate, srmsNorm } from "../blas/fused.ts";
import { softmaxCrossEntropy } from "../blas/fused_loss.ts";
import type { ClassBatch, LmBatch } from "../data/types.ts";
import { seededNormal } from "../random.ts";
import {
  ffnHiddenSize,
  type LayerAttention,
  type ModelConfig,
  modelConfig,
  type ModelConfigInput,
  type PresetName,
  PRESETS,
} from "./config.ts";
import { checkBatch, checkIdTensor, checkPadOption, withIdsInVocabulary } from "./_checks.ts";
import { rotary, sinusoidalTable } from "./positions.ts";
import {
  attentionWeights,
  firstNonFinite,
  referenceLoss,
  scoreGradientNorms,
  scoreGradientNormsAsync,
  scoreGradients,
} from "./probes.ts";

/**
 * The most parameters a model may have, 2^28: checked before any weight is allocated, so that a mistyped size fails
 * at once instead of filling gigabytes with random numbers.
 */
export const MAX_PARAMETERS = 268_435_456;

/** A batch the model trains on. */
export type ModelBatch = LmBatch | ClassBatch;

/**
 * Hooks of a traced forward pass ({@linkcode TransformerModel.trace}), all optional: what the diagnostics
 * (probes.ts) and an incremental decoder (generate.ts) run the model with.
 */
export interface TraceHooks {
  /** "fast" (default): variant.attend; "reference": outputNorm(weights(q, k) · v), `perturb[i]` added to layer i's. */
  form?: "fast" | "reference";
  /** One tensor [b, h, n, n] per layer, added to its attention matrix in the reference form. */
  perturb?: tf.Tensor4D[];
  /** Sees every layer's q and k [b, h, n, dh] and the options its variant runs with. */
  capture?: (layer: number, q: tf.Tensor4D, k: tf.Tensor4D, options: Record<string, unknown>) => void;
  /** Classifier only: the padding id, left out of every layer's keys and of the pooling. */
  pad?: number;
  /** Position of the first token (sinusoidal table and rotary); default 0. */
  offset?: number;
  /** Replaces every layer's attention: gets the layer index, its q, k, v [b, h, n, dh] and options. */
  attend?: AttendHook;
  /** Sees the stream after each stage: "embed", "blocks.<i>.attn", "blocks.<i>.ffn" [b, n, d], "norm" [b, n, d]. */
  inspect?: (stage: string, x: tf.Tensor) => void;
}

const TRACE_HOOKS = ["form", "perturb", "capture", "pad", "offset", "attend", "inspect"];

/** Computes one layer's attention output [b, h, n, dh] in place of the variant (e.g. from a decoding state). */
export type AttendHook = (layer: number, qkv: QKV, options: Record<string, unknown>) => tf.Tensor4D;

/** Options of {@linkcode TransformerModel.logits}. */
export interface LogitsOptions {
  /** Classifier only: the padding id, left out of every layer's keys and of the mean pooling. */
  pad?: number;
  /** "fast" (default): each variant's attend(); "reference": its explicit weights(q, k) · v. */
  form?: "fast" | "reference";
}

/** Options of {@linkcode createModel}. */
export interface CreateModelOptions {
  /** Receives the one-line summary with the parameter count; default console.log. */
  log?: (line: string) => void;
}

/** One trainable variable of a model: its name, shape and initialisation (a normal's std, or ones, or zeros). */
export interface ParameterSpec {
  name: string;
  shape: number[];
  std: number | "ones" | "zeros";
}

/**
 * Every trainable variable a model of `config` has, in layer order, without allocating any: what
 * {@linkcode TransformerModel} builds, so {@linkcode parameterCount} can size a model before building it.
 *
 * @example
 * ```ts
 * import { modelConfig } from "./config.ts";
 * import { parameterPlan } from "./model.ts";
 * const plan = parameterPlan(modelConfig({ attention: ["softmax"], dModel: 8, heads: 2 }));
 * console.log(plan.map((p) => p.name).slice(0, 3)); // ["embed.weight", "blocks.0.attn.wq", "blocks.0.attn.wk"]
 * ```
 */
export function parameterPlan(config: ModelConfig): ParameterSpec[] {
  const { vocabSize: V, dModel: d, attention, norm, task, numClasses } = config;
  const L = attention.length;
  const hidden = ffnHiddenSize(config);
  const plan: ParameterSpec[] = [];
  const add = (name: string, shape: number[], std: number | "ones" | "zeros") => plan.push({ name, shape, std });
  // Residual-branch outputs start smaller by 1/sqrt(2L) so the stream's variance stays put with depth.
  const outStd = (fanIn: number) => 1 / Math.sqrt(fanIn) / Math.sqrt(2 * L);
  add("embed.weight", [V, d], 1 / Math.sqrt(d));
  for (let i = 0; i < L; i++) {
    const p = `blocks.${i}`;
    if (norm === "layer") {
      add(`${p}.norm1.weight`, [d], "ones");
      add(`${p}.norm1.bias`, [d], "zeros");
    }
    for (const w of ["wq", "wk", "wv"]) add(`${p}.attn.${w}`, [d, d], 1 / Math.sqrt(d));
    if (attention[i].gain) add(`${p}.attn.gain`, [d], "ones");
    add(`${p}.attn.wo`, [d, d], outStd(d));
    if (norm === "layer") {
      add(`${p}.norm2.weight`, [d], "ones");
      add(`${p}.norm2.bias`, [d], "zeros");
    }
    if (config.ffn === "glu") {
      add(`${p}.ffn.w1`, [d, hidden], 1 / Math.sqrt(d));
      add(`${p}.ffn.w2`, [d, hidden], 1 / Math.sqrt(d));
      add(`${p}.ffn.w3`, [hidden, d], outStd(hidden));
    } else {
      add(`${p}.ffn.w1`, [d, hidden], 1 / Math.sqrt(d));
      add(`${p}.ffn.w2`, [hidden, d], outStd(hidden));
    }
  }
  if (norm === "layer") {
    add("norm.weight", [d], "ones");
    add("norm.bias", [d], "zeros");
  }
  if (task === "classify") {
    add("head.weight", [d, numClasses!], 1 / Math.sqrt(d));
    add("head.bias", [numClasses!], "zeros");
  }
  return plan;
}

function planSize(plan: readonly ParameterSpec[]): number {
  return plan.reduce((sum, { shape }) => sum + shape.reduce((a, b) => a * b, 1), 0);
}

/**
 * The number of trainable scalars of a model of `config` ({@linkcode TransformerModel.parameterCount}), without
 * building it.
 *
 * @example
 * ```ts
 * import { modelConfig } from "./config.ts";
 * import { parameterCount } from "./model.ts";
 * // Embedding 256·8, then q, k, v, o (4·8²) and the GLU feed-forward (3·8·21) of one layer.
 * console.log(parameterCount(modelConfig({ attention: ["softmax"], dModel: 8, heads: 2 })) === 256 * 8 + 4 * 64 + 3 * 8 * 21); // true
 * ```
 */
export function parameterCount(config: ModelConfig): number {
  return planSize(parameterPlan(config));
}

/**
 * A model built by {@linkcode createModel}: logits and the training loss, then the hook point
 * ({@linkcode TransformerModel.trace}) that the attention diagnostics (probes.ts beside this file) run through.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "./model.ts";
 * const model = createModel({ attention: "transnormer-t1", layers: 2, dModel: 16, heads: 2 }, { log: () => {} });
 * const batch = { kind: "lm" as const, inputs: Int32Array.from([1, 2, 3]), targets: Int32Array.from([2, 3, 4]), batch: 1, length: 3 };
 * const loss = model.loss(batch);
 * const weights = model.attentionWeights(tf.tensor2d(batch.inputs, [1, 3], "int32"));
 * console.log(loss.dataSync()[0] > 0, weights[0].shape.join(","), model.scoreGradientNorms(batch).length); // true 1,2,3,3 2
 * tf.dispose([loss, ...weights]);
 * model.dispose();
 * ```
 */
export class TransformerModel {
  /** The full, checked config. */
  readonly config: ModelConfig;
  /** Trainable variables by dotted name, in layer order. */
  readonly variables: Readonly<Record<string, tf.Variable>>;
  /** Number of trainable scalars. */
  readonly parameterCount: number;
  readonly #positions: tf.Tensor2D | null;
  #disposed = false;

  constructor(config: ModelConfig) {
    this.config = config;
    const d = config.dModel;
    const plan = parameterPlan(config);
    this.parameterCount = planSize(plan);
    if (this.parameterCount > MAX_PARAMETERS) {
      throw new RangeError(
        `TransformerModel: the config needs ${this.parameterCount.toLocaleString("en-US")} parameters, over the ` +
          `limit of ${MAX_PARAMETERS.toLocaleString("en-US")} (1 GiB of float32, and Adam keeps two more copies); ` +
          "lower dModel, ffnHidden, vocabSize or the number of layers",
      );
    }

    const normal = seededNormal(config.seed);
    const vars: Record<string, tf.Variable> = {};
    try {
      for (const { name, shape, std } of plan) {
        const size = shape.reduce((a, b) => a * b, 1);
        const data = new Float32Array(size);
        if (std === "ones") data.fill(1);
        else if (std !== "zeros") { for (let i = 0; i < size; i++) data[i] = normal() * std; }
        // tidy disposes the initial tensor, also when the variable cannot be made, and keeps the variable.
        vars[name] = tf.tidy(() => tf.variable(tf.tensor(data, shape), true));
      }
      this.#positions = config.positions === "sinusoidal" ? sinusoidalTable(config.maxLength, d) : null;
    } catch (err) {
      // A failed build leaves nothing behind.
      tf.dispose(Object.values(vars));
      // The sizes were checked by modelConfig: a RangeError here is an allocation too large for this machine.
      if (err instanceof RangeError) {
        throw new RangeError(
          `TransformerModel: out of memory allocating ${this.parameterCount.toLocaleString("en-US")} parameters ` +
            `(${err.message}); lower dModel, ffnHidden, vocabSize or the number of layers`,
        );
      }
      throw err;
    }
    this.variables = Object.freeze(vars);
  }

  /** One line: preset or layer list, sizes and the parameter count. */
  summary(): string {
    const c = this.config;
    const layers = c.attention.map((l) => l.variant).join(",");
    return `${c.preset ?? "custom"} [${layers}] d=${c.dModel} heads=${c.heads} ffn=${c.ffn}(${
      ffnHiddenSize(c)
    }) norm=${c.norm} task=${c.task}: ${this.parameterCount.toLocaleString("en-US")} parameters`;
  }

  /**
   * Logits for token ids [b, n]: [b, n, vocab] for the language models ("lm", "mlm"), [b, classes] for the classifier.
   * `pad` (classifier only) marks padding: left out of every layer's keys and of the pooling. `form: "reference"` runs
   * every attention layer through its explicit O(n²) matrix instead of the fast path.
   */
  logits(ids: tf.Tensor2D, options: LogitsOptions = {}): tf.Tensor {
    checkOptionKeys("TransformerModel.logits", options, ["pad", "form"]);
    return this.trace(ids, { pad: options.pad, form: options.form }, { owner: "TransformerModel.logits" });
  }

  /**
   * Mean cross-entropy of a batch, synchronous (for tf.variableGrads). With `mask` weights it is the weighted mean
   * over positions, sum(w · CE) / sum(w), so a position of weight 0 does not count; a masked language model (task
   * "mlm") requires them (1 on the masked positions: see lib/data/mlm.ts), so its loss is the mean over the masked
   * tokens and exp(loss) their perplexity.
   *
   * @example
   * ```ts
   * import { createModel } from "./model.ts";
   * const model = createModel({ attention: "vanilla", layers: 1, dModel: 8, heads: 2, task: "mlm" }, { log: () => {} });
   * const [M, targets] = [model.config.maskToken!, Int32Array.from([104, 105, 33])]; // "hi!", "i" masked
   * const batch = { kind: "lm" as const, inputs: Int32Array.from([104, M, 33]), targets, batch: 1, length: 3 };
   * const loss = model.loss({ ...batch, mask: Float32Array.from([0, 1, 0]) });
   * console.log(loss.dataSync()[0] > 0); // true
   * loss.dispose();
   * model.dispose();
   * ```
   */
  loss(batch: ModelBatch): tf.Scalar {
    return tf.tidy(() => this.traceLoss(batch, { form: "fast" }));
  }

  // The forward pass, top to bottom: embed → blocks (attention, FFN) → final norm → head → loss.

  /** The classifier's pad tokens are left out of every layer's keys and of the pooling: 1 = a real token; null: none. */
  #padMask(ids: tf.Tensor2D, pad: number | undefined): tf.Tensor2D | null {
    return pad === undefined ? null : tf.cast(tf.notEqual(ids, pad), "float32") as tf.Tensor2D; // [b, n]
  }

  #forward(ids: tf.Tensor2D, hooks: TraceHooks, keyMask: tf.Tensor2D | null): tf.Tensor3D {
    const { vocabSize: V, dModel: d } = this.config;
    const [b, n] = ids.shape;
    const flat = tf.reshape(ids, [b * n]); // [b*n]
    // A row lookup where the backend has its gradient (UnsortedSegmentSum), else a one-hot matmul, whose gradient is a
    // matmul on every backend (wasm lacks the other): the same rows, the lookup without 2·b·n·V·d FLOPs each way.
    const rows = tf.getKernel(tf.UnsortedSegmentSum, tf.getBackend())
      ? tf.gather(this.#v("embed.weight"), flat) // [b*n, d]
      : tf.matMul(tf.oneHot(flat, V), this.#v("embed.weight")); // [b*n, V] x [V, d]
    let x = tf.reshape(tf.mul(rows, Math.sqrt(d)), [b, n, d]) as tf.Tensor3D;
    const offset = hooks.offset ?? 0;
    if (this.#positions) x = tf.add(x, tf.slice(this.#positions, [offset, 0], [n, d])); // [b, n, d]
    hooks.inspect?.("embed", x);
    // Without hooks that hold a block's tensors, each block runs in a tidy of its own: what it made and no op saved
    // for the backward pass is freed as the forward pass goes, not at its end.
    const ownTidy = !hooks.capture && !hooks.inspect && !hooks.attend;
    this.config.attention.forEach((layer, i) => {
      const p = `blocks.${i}`;
      const block = (x: tf.Tensor3D) => {
        x = tf.add(x, this.#attention(this.#norm(x, `${p}.norm1`), { layer, i, keyMask }, hooks));
        hooks.inspect?.(`${p}.attn`, x);
        x = tf.add(x, this.#ffn(this.#norm(x, `${p}.norm2`), p));
        hooks.inspect?.(`${p}.ffn`, x);
        return x;
      };
      x = ownTidy ? tf.tidy(() => block(x)) : block(x);
    });
    const out = this.#norm(x, "norm"); // [b, n, d]
    hooks.inspect?.("norm", out);
    return out;
  }

  #attention(
    x: tf.Tensor3D,
    at: { layer: LayerAttention; i: number; keyMask: tf.Tensor2D | null },
    hooks: TraceHooks,
  ): tf.Tensor3D {
    const { layer, i } = at;
    const { heads: H, dModel: d, seed } = this.config;
    const [b, n] = x.shape;
    const dh = d / H;
    const p = `blocks.${i}.attn`;
    const split = (w: string) => tf.transpose(tf.reshape(dense(x, this.#v(`${p}.${w}`)), [b, n, H, dh]), [0, 2, 1, 3]);
    let q = split("wq") as tf.Tensor4D; // [b, h, n, dh]
    let k = split("wk") as tf.Tensor4D; // [b, h, n, dh]
    const v = split("wv") as tf.Tensor4D; // [b, h, n, dh]
    if (this.config.rotary) {
      q = rotary(q, { offset: hooks.offset ?? 0 });
      k = rotary(k, { offset: hooks.offset ?? 0 });
    }
    const options: Record<string, unknown> = { ...layer.options, causal: this.causal };
    if (at.keyMask !== null) options.keyMask = at.keyMask;
    // A variant with a `seed` option (Performer's random features) gets one per layer unless the layer sets it.
    if ("seed" in variants[layer.variant].defaults && options.seed === undefined) options.seed = seed * 1009 + i;
    hooks.capture?.(i, q, k, options);
    const variant = variants[layer.variant] as unknown as {
      attend(qkv: object, o: object): tf.Tensor4D;
      weights(qk: object, o: object): tf.Tensor4D;
      outputNorm(o: tf.Tensor4D, opts: object): tf.Tensor4D;
    };
    let o: tf.Tensor4D; // [b, h, n, dh]
    if (hooks.attend) {
      o = hooks.attend(i, { q, k, v }, options);
    } else if (hooks.form !== "reference") {
      o = variant.attend({ q, k, v }, options);
    } else {
      let m = variant.weights({ q, k }, options); // [b, h, n, n]
      if (hooks.perturb) m = tf.add(m, hooks.perturb[i]);
      o = variant.outputNorm(tf.matMul(m, v) as tf.Tensor4D, options);
    }
    let merged = tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [b, n, d]) as tf.Tensor3D; // [b, n, d]
    if (layer.gain) merged = tf.mul(merged, this.#v(`${p}.gain`)); // [b, n, d] · [d]
    return dense(merged, this.#v(`${p}.wo`));
  }

  #ffn(x: tf.Tensor3D, p: string): tf.Tensor3D {
    if (this.config.ffn === "glu") {
      // silu(x·w1) · (x·w2): one fused kernel each way on the blas backend, the same values as the composite.
      const gate = siluGate(dense(x, this.#v(`${p}.ffn.w1`)), dense(x, this.#v(`${p}.ffn.w2`))); // [b, n, hidden]
      return dense(gate, this.#v(`${p}.ffn.w3`));
    }
    return dense(gelu(dense(x, this.#v(`${p}.ffn.w1`))), this.#v(`${p}.ffn.w2`));
  }

  #norm(x: tf.Tensor3D, prefix: string): tf.Tensor3D {
    // SimpleRMSNorm: normalizeLastAxis(x, "srms") bit for bit, value and gradient, one fused kernel each way on blas.
    if (this.config.norm === "srms") return srmsNorm(x); // [b, n, d]
    const y = normalizeLastAxis(x, this.config.norm);
    return tf.add(tf.mul(y, this.#v(`${prefix}.weight`)), this.#v(`${prefix}.bias`));
  }

  #head(h: tf.Tensor3D, ids: tf.Tensor2D, keyMask: tf.Tensor2D | null): tf.Tensor {
    const { vocabSize: V, task } = this.config;
    const [b, n, d] = h.shape;
    if (task !== "classify") {
      return tf.reshape(tf.matMul(tf.reshape(h, [b * n, d]), this.#v("embed.weight"), false, true), [b, n, V]);
    }
    const keep = keyMask ?? tf.onesLike(ids).toFloat(); // [b, n]
    const summed = tf.sum(tf.mul(h, tf.expandDims(keep, 2)), 1); // [b, d]
    const pooled = tf.div(summed, tf.maximum(tf.sum(keep, 1, true), 1)); // [b, d]
    return tf.add(tf.matMul(pooled, this.#v("head.weight")), this.#v("head.bias")); // [b, classes]
  }

  #loss(batch: ModelBatch, hooks: TraceHooks): tf.Scalar {
    const ids = tf.tensor2d(batch.inputs, [batch.batch, batch.length], "int32");
    const pad = batch.kind === "cls" ? batch.pad : undefined;
    const keyMask = this.#padMask(this.#checkIds(ids), pad);
    const logits = this.#head(this.#forward(ids, hooks, keyMask), ids, keyMask);
    // −log softmax(logits)[target] per row: one fused kernel each way on the blas backend (in double precision,
    // rounded once), tfjs's logSoftmax composite elsewhere.
    if (batch.kind === "cls") {
      const labels = tf.tensor1d(batch.labels, "int32"); // [b]
      return tf.mean(softmaxCrossEntropy(logits as tf.Tensor2D, labels));
    }
    const V = this.config.vocabSize;
    const rows = batch.batch * batch.length;
    const targets = tf.tensor1d(batch.targets, "int32"); // [b*n]
    if (!batch.mask) return tf.mean(softmaxCrossEntropy(tf.reshape(logits, [rows, V]), targets));
    const mask = tf.tensor1d(batch.mask); // [b*n]
    const weighted = softmaxCrossEntropy(tf.reshape(logits, [rows, V]), targets, { weights: mask }); // [b*n]
    return tf.div(tf.sum(weighted), tf.maximum(tf.sum(mask), 1));
  }

  // The hook point: the forward pass with hooks, for the diagnostics in probes.ts and for a researcher's own.

  /**
   * The forward pass on ids [b, n] with `hooks` (see {@linkcode TraceHooks}), in a tidy: returns the logits, as
   * {@linkcode TransformerModel.logits} does, or what `options.pick(logits)` returns (tensors made by the hooks, kept
   * out of the tidy). `options.owner` names the caller in errors. Every id must be in the vocabulary.
   *
   * @example
   * ```ts
   * import * as tf from "@tensorflow/tfjs";
   * import { createModel } from "./model.ts";
   * const model = createModel({ attention: "vanilla", layers: 2, dModel: 8, heads: 2 }, { log: () => {} });
   * const ids = tf.tensor2d([[1, 2, 3]], [1, 3], "int32");
   * const norms: tf.Tensor[] = [];
   * const inspect = (stage: string, x: tf.Tensor) => { if (stage.endsWith(".attn")) norms.push(tf.norm(x)); };
   * const stream = model.trace(ids, { inspect }, { pick: () => tf.stack(norms) }); // the stream's norm after each attention
   * console.log(stream.shape.join(",")); // 2
   * tf.dispose([ids, stream]);
   * model.dispose();
   * ```
   */
  trace<T extends tf.Tensor | tf.Tensor[] = tf.Tensor>(
    ids: tf.Tensor2D,
    hooks: TraceHooks = {},
    options: { owner?: string; pick?: (logits: tf.Tensor) => T } = {},
  ): T {
    const { owner = "TransformerModel.trace", pick = (logits: tf.Tensor) => logits as T } = options;
    checkOptionKeys(owner, hooks, TRACE_HOOKS);
    const { form = "fast", pad, offset = 0 } = hooks;
    if (form !== "fast" && form !== "reference") {
      throw new Error(`${owner}: form must be "fast" or "reference", got ${String(form)}`);
    }
    this.#checkIds(ids);
    checkPadOption(pad, { config: this.config, owner });
    for (const key of ["capture", "attend", "inspect"] as const) {
      if (hooks[key] !== undefined && typeof hooks[key] !== "function") {
        throw new TypeError(`${owner}: ${key} must be a function`);
      }
    }
    if (!Number.isInteger(offset) || offset < 0 || offset + ids.shape[1] > this.config.maxLength) {
      throw new Error(
        `${owner}: offset must be an integer with offset + n <= maxLength (${this.config.maxLength}), got ${offset}`,
      );
    }
    return withIdsInVocabulary(ids, this.config.vocabSize, () => {
      const keyMask = this.#padMask(ids, pad);
      return pick(this.#head(this.#forward(ids, hooks, keyMask), ids, keyMask));
    });
  }

  /**
   * The mean loss of `batch` (as {@linkcode TransformerModel.loss}) through the forward pass with `hooks`; not in a
   * tidy, so that tf.grads can differentiate it with respect to tensors the hooks add (`perturb`). The batch's own
   * pad id applies.
   */
  traceLoss(batch: ModelBatch, hooks: Omit<TraceHooks, "pad" | "offset"> = {}): tf.Scalar {
    checkBatch(batch, { config: this.config, owner: "TransformerModel.loss" });
    return this.#loss(batch, hooks);
  }

  // The diagnostics: their bodies are in probes.ts, beside this file.

  /**
   * Logits for ids [b, n] standing at positions offset..offset+n-1, with every layer's attention
   * computed by `attend(layer, { q, k, v }, options)` instead of the variant: the hook an
   * incremental decoder uses to run one new token against its per-layer states. `options` are the
   * options the layer's variant runs with (including `causal` and Performer's seed).
   */
  logitsWith(ids: tf.Tensor2D, options: { offset?: number; attend: AttendHook; pad?: number }): tf.Tensor {
    const owner = "TransformerModel.logitsWith";
    if (options === undefined) throw new Error(`${owner}: options must be an object, got undefined`);
    checkOptionKeys(owner, options, ["offset", "attend", "pad"]);
    if (typeof options.attend !== "function") throw new Error(`${owner}: attend must be a function`);
    return this.trace(ids, options, { owner });
  }

  /** The loss through the explicit reference forms, with perturbations of the attention matrices: see probes.ts. */
  referenceLoss(batch: ModelBatch, options: { perturb?: tf.Tensor4D[] } = {}): tf.Scalar {
    this.#checkLive();
    return referenceLoss(this, batch, options);
  }

  /** Every layer's attention matrix [b, h, n, n] on the layer's actual q and k: see probes.ts. */
  attentionWeights(ids: tf.Tensor2D, options: { pad?: number } = {}): tf.Tensor4D[] {
    return attentionWeights(this, ids, options);
  }

  /** Every layer's gradient of the loss with respect to its attention matrix, [b, h, n, n]: see probes.ts. */
  scoreGradients(batch: ModelBatch): tf.Tensor4D[] {
    this.#checkLive();
    return scoreGradients(this, batch);
  }

  /** Frobenius norm of each layer's {@linkcode TransformerModel.scoreGradients}. */
  scoreGradientNorms(batch: ModelBatch): number[] {
    this.#checkLive();
    return scoreGradientNorms(this, batch);
  }

  /** {@linkcode TransformerModel.scoreGradientNorms} read with one `await data()`: runs on `webgpu` too. */
  scoreGradientNormsAsync(batch: ModelBatch): Promise<number[]> {
    this.#checkLive();
    return scoreGradientNormsAsync(this, batch);
  }

  /** The first stage of the forward pass whose output is not finite, or null (read asynchronously): see probes.ts. */
  firstNonFinite(batch: ModelBatch): Promise<string | null> {
    this.#checkLive();
    return firstNonFinite(this, batch);
  }

  /** Frees the variables and the position table. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    tf.dispose(Object.values(this.variables));
    this.#positions?.dispose();
  }

  /** Whether attention is causal: only the language model ("lm") masks future keys; "mlm" and "classify" see both ways. */
  get causal(): boolean {
    return this.config.task === "lm";
  }

  #checkLive(): void {
    if (this.#disposed) throw new Error("TransformerModel: the model was disposed");
  }

  #checkIds(ids: tf.Tensor2D): tf.Tensor2D {
    this.#checkLive();
    return checkIdTensor(ids, this.config);
  }

  #v(name: string): tf.Variable {
    return this.variables[name];
  }
}

/** x [b, n, din] · w [din, dout] -> [b, n, dout], as one 2D matmul. */
function dense(x: tf.Tensor3D, w: tf.Tensor): tf.Tensor3D {
  const [b, n, din] = x.shape;
  return tf.reshape(tf.matMul(tf.reshape(x, [b * n, din]), w), [b, n, w.shape[1]!]);
}

function gelu(x: tf.Tensor3D): tf.Tensor3D {
  // The tanh approximation; tfjs has no erf gradient on every backend.
  const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)));
}

/**
 * Builds a model from a config (or config input) and prints its one-line summary with the parameter count.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "./model.ts";
 * const model = createModel({ attention: "transnormer-t2", layers: 2, dModel: 16, heads: 2 }, { log: () => {} });
 * const logits = model.logits(tf.tensor2d([[1, 2, 3]], [1, 3], "int32"));
 * console.log(logits.shape.join(","), model.parameterCount > 0); // 1,3,256 true
 * model.dispose();
 * ```
 */
export function createModel(
  config: ModelConfig | ModelConfigInput,
  options: CreateModelOptions = {},
): TransformerModel {
  if (config === null || typeof config !== "object" || Array.isArray(config)) {
    throw new TypeError(
      `createModel: config must be an object, got ${Array.isArray(config) ? "an array" : String(config)}; ` +
        'e.g. createModel({ attention: "transnormer-t2", layers: 4, dModel: 64, heads: 4 }), or createModel({}) ' +
        "for the defaults",
    );
  }
  const { log = console.log } = checkOptionKeys("createModel", options, ["log"]) as CreateModelOptions;
  if (typeof log !== "function") throw new TypeError(`createModel: option log must be a function (line) => void`);
  const { preset, ...input } = config as ModelConfigInput & { preset?: unknown };
  const resolved = modelConfig(input);
  // A resolved config carries its preset name beside the expanded list; keep it.
  if (preset !== undefined && preset !== null) {
    if (!(PRESETS as readonly unknown[]).includes(preset)) {
      throw new Error(`createModel: preset must be one of ${PRESETS.join(", ")} or null, got ${String(preset)}`);
    }
    resolved.preset = preset as PresetName;
  }
  const model = new TransformerModel(resolved);
  log(model.summary());
  return model;
}
