/**
 * A small TransNormer-style transformer with a pluggable attention variant per layer.
 *
 * token ids [b, n] → embedding · sqrt(d) + sinusoidal positions → N pre-norm blocks
 * (`x + Attn(Norm(x))`, then `x + FFN(Norm(x))`) → final norm → head.
 * The language model ties its output head to the embedding and is causal; the masked language model
 * (task "mlm") has the same tied head but bidirectional attention in every layer, and its loss averages
 * over the masked positions only; the classifier is bidirectional, mean-pools the non-pad tokens and
 * applies a linear head.
 *
 * Every attention layer projects q, k, v, runs its variant's fast `attend` (or, for the diagnostics,
 * the explicit `weights(q, k) · v` reference), merges the heads and projects out.
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
import { rotary, sinusoidalTable } from "./positions.ts";

/**
 * The most parameters a model may have, 2^28: checked before any weight is allocated, so that a mistyped size fails
 * at once instead of filling gigabytes with random numbers.
 */
export const MAX_PARAMETERS = 268_435_456;

/** A batch the model trains on. */
export type ModelBatch = LmBatch | ClassBatch;

/** How one forward pass runs its attention layers. */
interface ForwardHooks {
  /** "fast": variant.attend; "reference": outputNorm(weights(q, k) · v), with `perturb[i]` added to layer i's matrix. */
  mode: "fast" | "reference";
  perturb?: tf.Tensor4D[];
  /** Sees every layer's q and k [b, h, n, dh] and the options its variant ran with. */
  capture?: (layer: number, q: tf.Tensor4D, k: tf.Tensor4D, options: Record<string, unknown>) => void;
  /** Padding id for the classifier's pooling. */
  pad?: number;
  /** Position of the first token (sinusoidal table and rotary); default 0. */
  offset?: number;
  /** Replaces every layer's attention: gets the layer index, its q, k, v [b, h, n, dh] and options. */
  attend?: AttendHook;
  /** Sees the stream after each stage: "embed", "blocks.<i>.attn", "blocks.<i>.ffn" [b, n, d], "norm" [b, n, d]. */
  inspect?: (stage: string, x: tf.Tensor) => void;
}

/** Computes one layer's attention output [b, h, n, dh] in place of the variant (e.g. from a decoding state). */
export type AttendHook = (layer: number, qkv: QKV, options: Record<string, unknown>) => tf.Tensor4D;

/** Options of {@linkcode TransformerModel.logits}. */
export interface LogitsOptions {
  /** Classifier only: the padding id left out of the mean pooling. */
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
 * A model built by {@linkcode createModel}: logits, the training loss, and the attention diagnostics.
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
   * `pad` (classifier only) marks tokens left out of the pooling; `form: "reference"` runs every
   * attention layer through its explicit O(n²) matrix instead of the fast path.
   */
  logits(ids: tf.Tensor2D, options: LogitsOptions = {}): tf.Tensor {
    checkOptionKeys("TransformerModel.logits", options, ["pad", "form"]);
    const { pad, form = "fast" } = options;
    if (form !== "fast" && form !== "reference") {
      throw new Error(`TransformerModel.logits: form must be "fast" or "reference", got ${String(form)}`);
    }
    this.#checkIds(ids);
    this.#checkPad("TransformerModel.logits", pad);
    return this.#guarded(ids, () => this.#head(this.#forward(ids, { mode: form, pad }), ids, pad));
  }

  /**
   * Logits for ids [b, n] standing at positions offset..offset+n-1, with every layer's attention
   * computed by `attend(layer, { q, k, v }, options)` instead of the variant: the hook an
   * incremental decoder uses to run one new token against its per-layer states. `options` are the
   * options the layer's variant runs with (including `causal` and Performer's seed).
   */
  logitsWith(ids: tf.Tensor2D, options: { offset?: number; attend: AttendHook; pad?: number }): tf.Tensor {
    if (options === undefined) throw new Error("TransformerModel.logitsWith: options must be an object, got undefined");
    checkOptionKeys("TransformerModel.logitsWith", options, ["offset", "attend", "pad"]);
    const { offset = 0, attend, pad } = options;
    this.#checkIds(ids);
    this.#checkPad("TransformerModel.logitsWith", pad);
    if (typeof attend !== "function") throw new Error("TransformerModel.logitsWith: attend must be a function");
    if (!Number.isInteger(offset) || offset < 0 || offset + ids.shape[1] > this.config.maxLength) {
      throw new Error(
        `TransformerModel.logitsWith: offset must be an integer with offset + n <= maxLength (${this.config.maxLength}), got ${offset}`,
      );
    }
    return this.#guarded(ids, () => this.#head(this.#forward(ids, { mode: "fast", offset, attend, pad }), ids, pad));
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
    return tf.tidy(() => this.#loss(batch, { mode: "fast" }));
  }

  /**
   * The loss through every layer's explicit reference form, outputNorm((M + E) · v), with
   * `perturb[i]` = E added to layer i's attention matrix M (default: no perturbation).
   * Its gradient with respect to E at 0 is {@linkcode scoreGradients}.
   */
  referenceLoss(batch: ModelBatch, options: { perturb?: tf.Tensor4D[] } = {}): tf.Scalar {
    checkOptionKeys("TransformerModel.referenceLoss", options, ["perturb"]);
    const { perturb } = options;
    checkBatch(batch, { config: this.config, owner: "TransformerModel.referenceLoss" });
    if (perturb !== undefined) {
      const want = [batch.batch, this.config.heads, batch.length, batch.length].join(", ");
      if (!Array.isArray(perturb) || perturb.length !== this.config.attention.length) {
        throw new Error(
          `TransformerModel.referenceLoss: perturb must hold one tensor per layer (${this.config.attention.length})`,
        );
      }
      perturb.forEach((e, i) => {
        if (!(e instanceof tf.Tensor) || e.shape.join(", ") !== want) {
          throw new Error(`TransformerModel.referenceLoss: perturb[${i}] must have shape [${want}]`);
        }
        if (e.isDisposed) {
          throw new Error(`TransformerModel.referenceLoss: perturb[${i}] was disposed; pass a live tensor`);
        }
      });
    }
    return tf.tidy(() => this.#loss(batch, { mode: "reference", perturb }));
  }

  /**
   * Every layer's attention matrix M = variant.weights(q, k) on the layer's actual q and k, [b, h, n, n].
   * For NormAttention and DiagAttention with relu blocks this is the raw (unnormalised) kernel matrix.
   */
  attentionWeights(ids: tf.Tensor2D, options: { pad?: number } = {}): tf.Tensor4D[] {
    checkOptionKeys("TransformerModel.attentionWeights", options, ["pad"]);
    this.#checkIds(ids);
    this.#checkPad("TransformerModel.attentionWeights", options.pad);
    return this.#guarded(ids, () => {
      const out: tf.Tensor4D[] = [];
      this.#forward(ids, {
        mode: "fast",
        pad: options.pad,
        capture: (i, q, k, o) => out.push(variants[this.config.attention[i].variant].weights({ q, k }, o)),
      });
      return out;
    });
  }

  /**
   * Every layer's gradient of the batch loss with respect to its attention matrix M, [b, h, n, n],
   * computed through the explicit reference form; entries a query cannot see (future keys, other
   * blocks, outside the window) are zero.
   */
  scoreGradients(batch: ModelBatch): tf.Tensor4D[] {
    if (this.#disposed) throw new Error("TransformerModel: the model was disposed");
    checkBatch(batch, { config: this.config, owner: "TransformerModel.scoreGradients" });
    const { batch: b, length: n } = batch;
    const h = this.config.heads;
    return tf.tidy(() => {
      const zeros = this.config.attention.map(() => tf.zeros([b, h, n, n]) as tf.Tensor4D);
      const grads = tf.grads((...perturb: tf.Tensor[]) =>
        this.#loss(batch, { mode: "reference", perturb: perturb as tf.Tensor4D[] })
      )(zeros);
      return grads.map((g, i) => tf.mul(g, visibleKeys(this.config.attention[i], n, this.#causal)) as tf.Tensor4D);
    });
  }

  /** Frobenius norm of each layer's {@linkcode scoreGradients}. */
  scoreGradientNorms(batch: ModelBatch): number[] {
    const grads = this.scoreGradients(batch);
    const norms = grads.map((g) => tf.tidy(() => tf.norm(g).dataSync()[0]));
    tf.dispose(grads);
    return norms;
  }

  /**
   * Where a non-finite loss starts: the first stage of the forward pass on `batch` whose output holds a
   * NaN or ±Inf, in order "embed" (embedding + positions), "blocks.<i>.attn" and "blocks.<i>.ffn" (the
   * residual stream after layer i's attention and FFN), "norm" (the final norm), "head" (the logits);
   * null when every stage is finite. Non-finite q, k or v count as a non-finite attention output (the
   * variants would throw on them). The training loop calls it when it stops on a non-finite loss.
   *
   * @example
   * ```ts
   * import { createModel } from "./model.ts";
   * const model = createModel({ attention: "vanilla", layers: 2, dModel: 8, heads: 2 }, { log: () => {} });
   * const batch = { kind: "lm" as const, inputs: Int32Array.from([1, 2]), targets: Int32Array.from([2, 3]), batch: 1, length: 2 };
   * console.log(model.firstNonFinite(batch)); // null
   * model.variables["blocks.1.ffn.w1"].assign(model.variables["blocks.1.ffn.w1"].mul(NaN));
   * console.log(model.firstNonFinite(batch)); // blocks.1.ffn
   * model.dispose();
   * ```
   */
  firstNonFinite(batch: ModelBatch): string | null {
    if (this.#disposed) throw new Error("TransformerModel: the model was disposed");
    checkBatch(batch, { config: this.config, owner: "TransformerModel.firstNonFinite" });
    const stages: string[] = [];
    let flags: ArrayLike<number> = [];
    tf.tidy(() => {
      const finite: tf.Tensor[] = [];
      const inspect = (stage: string, x: tf.Tensor) => {
        stages.push(stage);
        finite.push(tf.all(tf.isFinite(x))); // []
      };
      // The variants throw on non-finite q, k, v; here they give a NaN output that the next stage reports.
      const attend: AttendHook = (i, qkv, options) => {
        const bad = tf.tidy(() =>
          !Number.isFinite(tf.sum(tf.mul(tf.concat([qkv.q, qkv.k, qkv.v], 3), 0)).dataSync()[0])
        );
        if (bad) return tf.fill(qkv.v.shape, NaN) as tf.Tensor4D; // [b, h, n, dh]
        const variant = variants[this.config.attention[i].variant] as unknown as {
          attend(qkv: QKV, o: object): tf.Tensor4D;
        };
        return variant.attend(qkv, options);
      };
      const ids = tf.tensor2d(batch.inputs, [batch.batch, batch.length], "int32"); // [b, n]
      const pad = batch.kind === "cls" ? batch.pad : undefined;
      inspect("head", this.#head(this.#forward(ids, { mode: "fast", pad, inspect, attend }), ids, pad));
      flags = tf.stack(finite).dataSync(); // [stages]
    });
    const bad = Array.from(flags).findIndex((f) => !f);
    return bad < 0 ? null : stages[bad];
  }

  /** Frees the variables and the position table. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    tf.dispose(Object.values(this.variables));
    this.#positions?.dispose();
  }

  /** Only the causal language model masks future keys; "mlm" and "classify" attend both ways in every layer. */
  get #causal(): boolean {
    return this.config.task === "lm";
  }

  #checkIds(ids: tf.Tensor2D): tf.Tensor2D {
    if (this.#disposed) throw new Error("TransformerModel: the model was disposed");
    if (!(ids instanceof tf.Tensor) || ids.rank !== 2 || ids.dtype !== "int32") {
      throw new TypeError(
        `TransformerModel: ids must be an int32 tf.Tensor2D [batch, n]; build one with tf.tensor2d(data, [b, n], "int32")`,
      );
    }
    if (ids.isDisposed) {
      throw new Error("TransformerModel: ids was disposed; pass a live tensor (dispose it after the call)");
    }
    const [b, n] = ids.shape;
    if (n < 1 || n > this.config.maxLength) {
      throw new RangeError(
        `TransformerModel: sequence length must be 1..${this.config.maxLength} (maxLength), got ${n}`,
      );
    }
    if (b < 1) throw new RangeError(`TransformerModel: ids must hold at least one sequence, got shape [${b}, ${n}]`);
    return ids;
  }

  /**
   * `compute()` (in a tidy) for ids that come as a tensor, once every id is known to be in the vocabulary. tf.oneHot
   * turns an id outside 0..V-1 into a zero row (an all-zero embedding, with no error), and a lookup's check depends on
   * the backend: where the backend reads synchronously, one min/max read and a RangeError instead. On webgpu, which
   * cannot read synchronously under Deno (and a read would stall it), the check joins the computation: every output
   * is multiplied by 1, or by NaN when an id is out of range, so bad ids show as NaN rather than as a silent zero row.
   */
  #guarded<T extends tf.Tensor | tf.Tensor[]>(ids: tf.Tensor2D, compute: () => T): T {
    const V = this.config.vocabSize;
    if (tf.getBackend() !== "webgpu") {
      const [lo, hi] = tf.tidy(() => tf.stack([tf.min(ids), tf.max(ids)]).dataSync());
      if (lo < 0 || hi >= V) {
        throw new RangeError(
          `TransformerModel: ids holds token id ${lo < 0 ? lo : hi}, outside the vocabulary 0..${V - 1} ` +
            `(vocabSize ${V}); map such tokens to an id the model has, or build the model with a larger vocabSize`,
        );
      }
      return tf.tidy(compute);
    }
    return tf.tidy(() => {
      const inside = tf.logicalAnd(tf.greaterEqual(tf.min(ids), 0), tf.less(tf.max(ids), V));
      const factor = tf.where(inside, tf.scalar(1), tf.scalar(NaN)); // []
      const out = compute();
      return (Array.isArray(out) ? out.map((t) => tf.mul(t, factor)) : tf.mul(out, factor)) as T;
    });
  }

  #checkPad(owner: string, pad: unknown): void {
    if (pad === undefined) return;
    if (this.config.task !== "classify") {
      throw new Error(`${owner}: option pad is only for a classifier (task "classify"); remove it`);
    }
    if (typeof pad !== "number") throw new TypeError(`${owner}: option pad must be a token id, got ${String(pad)}`);
    if (!Number.isInteger(pad) || pad < 0 || pad >= this.config.vocabSize) {
      // A pad that matches no token would pool the padding silently.
      throw new RangeError(
        `${owner}: option pad must be a token id in 0..${this.config.vocabSize - 1}, got ${pad}`,
      );
    }
  }

  #v(name: string): tf.Variable {
    return this.variables[name];
  }

  #norm(x: tf.Tensor3D, prefix: string): tf.Tensor3D {
    // SimpleRMSNorm: normalizeLastAxis(x, "srms") bit for bit, value and gradient, one fused kernel each way on blas.
    if (this.config.norm === "srms") return srmsNorm(x); // [b, n, d]
    const y = normalizeLastAxis(x, this.config.norm);
    return tf.add(tf.mul(y, this.#v(`${prefix}.weight`)), this.#v(`${prefix}.bias`));
  }

  #forward(ids: tf.Tensor2D, hooks: ForwardHooks): tf.Tensor3D {
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
    this.config.attention.forEach((layer, i) => {
      const p = `blocks.${i}`;
      x = tf.add(x, this.#attention(this.#norm(x, `${p}.norm1`), layer, i, hooks));
      hooks.inspect?.(`${p}.attn`, x);
      x = tf.add(x, this.#ffn(this.#norm(x, `${p}.norm2`), p));
      hooks.inspect?.(`${p}.ffn`, x);
    });
    const out = this.#norm(x, "norm"); // [b, n, d]
    hooks.inspect?.("norm", out);
    return out;
  }

  #attention(x: tf.Tensor3D, layer: LayerAttention, i: number, hooks: ForwardHooks): tf.Tensor3D {
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
    const options: Record<string, unknown> = { ...layer.options, causal: this.#causal };
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
    } else if (hooks.mode === "fast") {
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

  #head(h: tf.Tensor3D, ids: tf.Tensor2D, pad: number | undefined): tf.Tensor {
    const { vocabSize: V, task } = this.config;
    const [b, n, d] = h.shape;
    if (task !== "classify") {
      return tf.reshape(tf.matMul(tf.reshape(h, [b * n, d]), this.#v("embed.weight"), false, true), [b, n, V]);
    }
    const keep = pad === undefined ? tf.onesLike(ids).toFloat() : tf.cast(tf.notEqual(ids, pad), "float32"); // [b, n]
    const summed = tf.sum(tf.mul(h, tf.expandDims(keep, 2)), 1); // [b, d]
    const pooled = tf.div(summed, tf.maximum(tf.sum(keep, 1, true), 1)); // [b, d]
    return tf.add(tf.matMul(pooled, this.#v("head.weight")), this.#v("head.bias")); // [b, classes]
  }

  #loss(batch: ModelBatch, hooks: ForwardHooks): tf.Scalar {
    checkBatch(batch, { config: this.config, owner: "TransformerModel.loss" });
    const ids = tf.tensor2d(batch.inputs, [batch.batch, batch.length], "int32");
    const pad = batch.kind === "cls" ? batch.pad : undefined;
    const logits = this.#head(this.#forward(this.#checkIds(ids), { ...hooks, pad }), ids, pad);
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

/** 1 where query i can see key j in this layer, [n, n]: the variant's own visibility (diag's blocks, local's window). */
function visibleKeys(layer: LayerAttention, n: number, causal: boolean): tf.Tensor2D {
  return variants[layer.variant].visibleKeys(n, { ...layer.options, causal } as never);
}

/**
 * Checks a batch before any tensor is made, in one pass over each array: ids, targets and labels in range (tf.oneHot
 * turns an id out of range into a zero row, so a bad target would add 0 to the loss and a bad input read a zero
 * embedding, with no error), mask weights finite and >= 0 with at least one > 0.
 */
function checkBatch(batch: ModelBatch, context: { config: ModelConfig; owner: string }): void {
  const { config, owner } = context;
  if (batch === null || typeof batch !== "object" || (batch.kind !== "lm" && batch.kind !== "cls")) {
    throw new TypeError(`${owner}: batch must be an LmBatch (kind "lm") or a ClassBatch (kind "cls")`);
  }
  const want = config.task === "classify" ? "cls" : "lm";
  if (batch.kind !== want) {
    throw new Error(`${owner}: a ${config.task} model needs kind "${want}" batches, got "${batch.kind}"`);
  }
  for (const key of ["batch", "length"] as const) {
    if (!Number.isInteger(batch[key]) || batch[key] < 1) {
      throw new RangeError(`${owner}: batch.${key} must be an integer >= 1, got ${String(batch[key])}`);
    }
  }
  if (batch.length > config.maxLength) {
    throw new RangeError(
      `${owner}: batch.length must be at most the model's maxLength ${config.maxLength}, got ${batch.length}`,
    );
  }
  const size = batch.batch * batch.length;
  const checkIds = (key: "inputs" | "targets" | "labels", count: number, fix: string) => {
    const ids = (batch as unknown as Record<string, unknown>)[key];
    const [what, limit] = key === "labels" ? ["label", config.numClasses!] : ["token id", config.vocabSize];
    if (!(ids instanceof Int32Array) || ids.length !== count) {
      const wanted = key === "labels" ? `batch = ${count}` : `batch*length = ${count}`;
      throw new TypeError(`${owner}: batch.${key} must be an Int32Array of ${wanted} ${what}s`);
    }
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] < 0 || ids[i] >= limit) {
        throw new RangeError(`${owner}: batch.${key}[${i}] is ${what} ${ids[i]}, outside 0..${limit - 1}; ${fix}`);
      }
    }
  };
  const vocabulary = `the vocabulary has ${config.vocabSize} ids: map other tokens to one of them, or build the ` +
    "model with a larger vocabSize";
  checkIds("inputs", size, vocabulary);
  if (batch.kind === "lm") {
    checkIds("targets", size, `${vocabulary} (a masked target too: give it 0 with mask 0)`);
    if (batch.mask !== undefined) {
      if (!(batch.mask instanceof Float32Array) || batch.mask.length !== size) {
        throw new TypeError(`${owner}: batch.mask must be a Float32Array of ${size} weights`);
      }
      let total = 0;
      for (const w of batch.mask) {
        if (!(w >= 0) || w === Infinity) {
          throw new RangeError(`${owner}: batch.mask weights must be finite and >= 0, got ${w}`);
        }
        total += w;
      }
      // The loss divides by the mask's sum: with nothing selected it would be 0 whatever the model predicts.
      if (total === 0) {
        throw new RangeError(`${owner}: batch.mask selects no target (all weights are 0); the mean loss is undefined`);
      }
    } else if (config.task === "mlm") {
      // Without weights the loss would average over every position, most of them unmasked copies of the input.
      throw new TypeError(
        `${owner}: a masked language model (task "mlm") needs batch.mask, a Float32Array of ${size} weights ` +
          "(1 on the masked positions, 0 elsewhere); build its batches with mlmSampler or mlmTiling (lib/data/mlm.ts)",
      );
    }
  } else {
    if (batch.numClasses !== config.numClasses) {
      throw new Error(`${owner}: the batch has ${batch.numClasses} classes, the model ${config.numClasses}`);
    }
    checkIds("labels", batch.batch, `the model has numClasses ${config.numClasses}; check the task's labels`);
    if (!Number.isInteger(batch.pad) || batch.pad < 0 || batch.pad >= config.vocabSize) {
      throw new RangeError(`${owner}: batch.pad must be a token id in 0..${config.vocabSize - 1}, got ${batch.pad}`);
    }
  }
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
