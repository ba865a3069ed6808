/**
 * The model's diagnostics, beside it: each runs the model's traced forward pass ({@linkcode TransformerModel.trace},
 * {@linkcode TransformerModel.traceLoss}) with hooks, so that model.ts holds only the model. The model's methods of
 * the same names call these.
 *
 * - {@linkcode attentionWeights}: every layer's attention matrix on the layer's actual q and k;
 * - {@linkcode referenceLoss} and {@linkcode scoreGradients}: the loss through the explicit O(n²) forms, and its
 *   gradient with respect to each layer's attention matrix;
 * - {@linkcode firstNonFinite}: the first stage of the forward pass whose output is not finite.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { checkOptionKeys, type QKV, variants } from "../attention/mod.ts";
import type { LayerAttention } from "./config.ts";
import { checkBatch } from "./_checks.ts";
import type { AttendHook, ModelBatch, TransformerModel } from "./model.ts";

/**
 * Every layer's attention matrix M = variant.weights(q, k) on the layer's actual q and k, [b, h, n, n]. For
 * NormAttention and DiagAttention with relu blocks this is the raw (unnormalised) kernel matrix. A classifier's `pad`
 * tokens are left out of the keys as in its forward pass.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "./model.ts";
 * import { attentionWeights } from "./probes.ts";
 * const model = createModel({ attention: "vanilla", layers: 2, dModel: 8, heads: 2 }, { log: () => {} });
 * const ids = tf.tensor2d([[1, 2, 3]], [1, 3], "int32");
 * const weights = attentionWeights(model, ids);
 * console.log(weights.length, weights[0].shape.join(","), tf.sum(weights[0]).dataSync()[0].toFixed(3)); // 2 1,2,3,3 6.000
 * tf.dispose([ids, ...weights]);
 * model.dispose();
 * ```
 */
export function attentionWeights(
  model: TransformerModel,
  ids: tf.Tensor2D,
  options: { pad?: number } = {},
): tf.Tensor4D[] {
  checkOptionKeys("TransformerModel.attentionWeights", options, ["pad"]);
  const out: tf.Tensor4D[] = [];
  const capture = (i: number, q: tf.Tensor4D, k: tf.Tensor4D, o: Record<string, unknown>) =>
    out.push(variants[model.config.attention[i].variant].weights({ q, k }, o as never));
  return model.trace(ids, { pad: options.pad, capture }, {
    owner: "TransformerModel.attentionWeights",
    pick: () => out,
  });
}

/**
 * The loss through every layer's explicit reference form, outputNorm((M + E) · v), with `perturb[i]` = E added to
 * layer i's attention matrix M (default: no perturbation). Its gradient with respect to E at 0 is
 * {@linkcode scoreGradients}.
 *
 * @example
 * ```ts
 * import { createModel } from "./model.ts";
 * import { referenceLoss } from "./probes.ts";
 * const model = createModel({ attention: "transnormer-t2", layers: 2, dModel: 8, heads: 2 }, { log: () => {} });
 * const batch = { kind: "lm" as const, inputs: Int32Array.from([1, 2, 3]), targets: Int32Array.from([2, 3, 4]), batch: 1, length: 3 };
 * const [fast, naive] = [model.loss(batch), referenceLoss(model, batch)];
 * console.log(Math.abs(fast.dataSync()[0] - naive.dataSync()[0]) < 1e-4); // true
 * fast.dispose();
 * naive.dispose();
 * model.dispose();
 * ```
 */
export function referenceLoss(
  model: TransformerModel,
  batch: ModelBatch,
  options: { perturb?: tf.Tensor4D[] } = {},
): tf.Scalar {
  const owner = "TransformerModel.referenceLoss";
  checkOptionKeys(owner, options, ["perturb"]);
  const { perturb } = options;
  checkBatch(batch, { config: model.config, owner });
  if (perturb !== undefined) {
    const want = [batch.batch, model.config.heads, batch.length, batch.length].join(", ");
    if (!Array.isArray(perturb) || perturb.length !== model.config.attention.length) {
      throw new Error(`${owner}: perturb must hold one tensor per layer (${model.config.attention.length})`);
    }
    perturb.forEach((e, i) => {
      if (!(e instanceof tf.Tensor) || e.shape.join(", ") !== want) {
        throw new Error(`${owner}: perturb[${i}] must have shape [${want}]`);
      }
      if (e.isDisposed) throw new Error(`${owner}: perturb[${i}] was disposed; pass a live tensor`);
    });
  }
  return tf.tidy(() => model.traceLoss(batch, { form: "reference", perturb }));
}

/**
 * Every layer's gradient of the batch loss with respect to its attention matrix M, [b, h, n, n], computed through the
 * explicit reference form; entries a query cannot see (future keys, other blocks, outside the window) are zero.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "./model.ts";
 * import { scoreGradients } from "./probes.ts";
 * const model = createModel({ attention: "vanilla", layers: 1, dModel: 8, heads: 2 }, { log: () => {} });
 * const batch = { kind: "lm" as const, inputs: Int32Array.from([1, 2, 3]), targets: Int32Array.from([2, 3, 4]), batch: 1, length: 3 };
 * const [g] = scoreGradients(model, batch);
 * console.log(g.shape.join(","), g.arraySync()[0][0][0][2] === 0); // 1,2,3,3 true (causal: key 2 is in query 0's future)
 * g.dispose();
 * model.dispose();
 * ```
 */
export function scoreGradients(model: TransformerModel, batch: ModelBatch): tf.Tensor4D[] {
  checkBatch(batch, { config: model.config, owner: "TransformerModel.scoreGradients" });
  const { batch: b, length: n } = batch;
  const h = model.config.heads;
  const causal = model.causal;
  return tf.tidy(() => {
    const zeros = model.config.attention.map(() => tf.zeros([b, h, n, n]) as tf.Tensor4D);
    const grads = tf.grads((...perturb: tf.Tensor[]) =>
      model.traceLoss(batch, { form: "reference", perturb: perturb as tf.Tensor4D[] })
    )(zeros);
    return grads.map((g, i) => tf.mul(g, visibleKeys(model.config.attention[i], n, causal)) as tf.Tensor4D);
  });
}

/**
 * Frobenius norm of each layer's {@linkcode scoreGradients}. Reads them with `dataSync()`; on `webgpu`, where that
 * throws, use {@linkcode scoreGradientNormsAsync}.
 *
 * @example
 * ```ts
 * import { createModel } from "./model.ts";
 * import { scoreGradientNorms } from "./probes.ts";
 * const model = createModel({ attention: "vanilla", layers: 2, dModel: 8, heads: 2 }, { log: () => {} });
 * const batch = { kind: "lm" as const, inputs: Int32Array.from([1, 2, 3]), targets: Int32Array.from([2, 3, 4]), batch: 1, length: 3 };
 * console.log(scoreGradientNorms(model, batch).every((x) => x > 0)); // true
 * model.dispose();
 * ```
 */
export function scoreGradientNorms(model: TransformerModel, batch: ModelBatch): number[] {
  const norms = scoreGradientNormTensor(model, batch);
  try {
    return Array.from(norms.dataSync());
  } finally {
    norms.dispose();
  }
}

/**
 * {@linkcode scoreGradientNorms} read with one `await data()`: the same numbers, on every backend, `webgpu` included.
 *
 * @example
 * ```ts
 * import { createModel } from "./model.ts";
 * import { scoreGradientNorms, scoreGradientNormsAsync } from "./probes.ts";
 * const model = createModel({ attention: "vanilla", layers: 2, dModel: 8, heads: 2 }, { log: () => {} });
 * const batch = { kind: "lm" as const, inputs: Int32Array.from([1, 2, 3]), targets: Int32Array.from([2, 3, 4]), batch: 1, length: 3 };
 * const norms = await scoreGradientNormsAsync(model, batch);
 * console.log(norms.length, norms.join() === scoreGradientNorms(model, batch).join()); // 2 true
 * model.dispose();
 * ```
 */
export async function scoreGradientNormsAsync(model: TransformerModel, batch: ModelBatch): Promise<number[]> {
  const norms = scoreGradientNormTensor(model, batch);
  try {
    return Array.from(await norms.data());
  } finally {
    norms.dispose();
  }
}

/** Each layer's score-gradient norm, as one tensor for one read. */
function scoreGradientNormTensor(model: TransformerModel, batch: ModelBatch): tf.Tensor1D {
  const grads = scoreGradients(model, batch);
  try {
    return tf.tidy(() => tf.stack(grads.map((g) => tf.norm(g))) as tf.Tensor1D); // [layers]
  } finally {
    tf.dispose(grads);
  }
}

/**
 * Where a non-finite loss starts: the first stage of the forward pass on `batch` whose output holds a NaN or ±Inf, in
 * order "embed" (embedding + positions), "blocks.<i>.attn" and "blocks.<i>.ffn" (the residual stream after layer i's
 * attention and FFN), "norm" (the final norm), "head" (the logits); null when every stage is finite. Non-finite q, k
 * or v count as a non-finite attention output (the variants may throw on them). The training loop calls it when it
 * stops on a non-finite loss. Asynchronous: it reads one flag per stage with one `await data()` after the forward
 * pass, and nothing during it, so it runs on `webgpu` too.
 *
 * @example
 * ```ts
 * import { createModel } from "./model.ts";
 * import { firstNonFinite } from "./probes.ts";
 * const model = createModel({ attention: "vanilla", layers: 2, dModel: 8, heads: 2 }, { log: () => {} });
 * const batch = { kind: "lm" as const, inputs: Int32Array.from([1, 2]), targets: Int32Array.from([2, 3]), batch: 1, length: 2 };
 * console.log(await firstNonFinite(model, batch)); // null
 * model.variables["blocks.1.ffn.w1"].assign(model.variables["blocks.1.ffn.w1"].mul(NaN));
 * console.log(await firstNonFinite(model, batch)); // blocks.1.ffn
 * model.dispose();
 * ```
 */
export async function firstNonFinite(model: TransformerModel, batch: ModelBatch): Promise<string | null> {
  checkBatch(batch, { config: model.config, owner: "TransformerModel.firstNonFinite" });
  const stages: string[] = [];
  const finite: tf.Tensor[] = [];
  const inspect = (stage: string, x: tf.Tensor) => {
    stages.push(stage);
    finite.push(tf.all(tf.isFinite(x))); // []
  };
  // Non-finite q, k or v make the whole attention output NaN, which the next stage reports. The variant sees them
  // zeroed (it may throw on non-finite input), and nothing is read here: the flag joins the computation.
  const attend: AttendHook = (i, qkv, options) => {
    const variant = variants[model.config.attention[i].variant] as unknown as {
      attend(qkv: QKV, o: object): tf.Tensor4D;
    };
    const finiteOnly = (x: tf.Tensor4D) => tf.where(tf.isFinite(x), x, tf.zerosLike(x)) as tf.Tensor4D;
    const bad = tf.logicalNot(tf.all(tf.stack([qkv.q, qkv.k, qkv.v].map((x) => tf.all(tf.isFinite(x)))))); // []
    const out = variant.attend({ q: finiteOnly(qkv.q), k: finiteOnly(qkv.k), v: finiteOnly(qkv.v) }, options);
    return tf.add(out, tf.where(bad, tf.scalar(NaN), tf.scalar(0))) as tf.Tensor4D; // [b, h, n, dh]
  };
  const pad = batch.kind === "cls" ? batch.pad : undefined;
  const ids = tf.tensor2d(batch.inputs, [batch.batch, batch.length], "int32"); // [b, n]
  try {
    const flags = model.trace(ids, { pad, inspect, attend }, {
      owner: "TransformerModel.firstNonFinite",
      pick: (logits) => {
        inspect("head", logits);
        return tf.stack(finite); // [stages]
      },
    });
    const bad = Array.from(await flags.data()).findIndex((f) => !f);
    flags.dispose();
    return bad < 0 ? null : stages[bad];
  } finally {
    ids.dispose();
  }
}

/** 1 where query i can see key j in this layer, [n, n]: the variant's own visibility (diag's blocks, local's window). */
function visibleKeys(layer: LayerAttention, n: number, causal: boolean): tf.Tensor2D {
  return variants[layer.variant].visibleKeys(n, { ...layer.options, causal } as never);
}
