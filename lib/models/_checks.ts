/**
 * The model's input checks, kept out of model.ts so that the model reads top to bottom: batches (before any tensor is
 * made), id tensors, the classifier's pad id, and the vocabulary guard around a forward pass.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { ModelConfig } from "./config.ts";
import type { ModelBatch } from "./model.ts";

/**
 * Checks that `ids` is a live int32 tf.Tensor2D [batch, n] with 1 <= n <= maxLength and at least one row.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { checkIdTensor } from "./_checks.ts";
 * const ids = tf.tensor2d([[1, 2]], [1, 2], "int32");
 * console.log(checkIdTensor(ids, { maxLength: 4 }) === ids); // true
 * ids.dispose();
 * ```
 */
export function checkIdTensor(ids: tf.Tensor2D, config: Pick<ModelConfig, "maxLength">): tf.Tensor2D {
  if (!(ids instanceof tf.Tensor) || ids.rank !== 2 || ids.dtype !== "int32") {
    throw new TypeError(
      `TransformerModel: ids must be an int32 tf.Tensor2D [batch, n]; build one with tf.tensor2d(data, [b, n], "int32")`,
    );
  }
  if (ids.isDisposed) {
    throw new Error("TransformerModel: ids was disposed; pass a live tensor (dispose it after the call)");
  }
  const [b, n] = ids.shape;
  if (n < 1 || n > config.maxLength) {
    throw new RangeError(`TransformerModel: sequence length must be 1..${config.maxLength} (maxLength), got ${n}`);
  }
  if (b < 1) throw new RangeError(`TransformerModel: ids must hold at least one sequence, got shape [${b}, ${n}]`);
  return ids;
}

/**
 * Checks the classifier's `pad` option (undefined passes): only a classifier takes one, and it must be a token id.
 *
 * @example
 * ```ts
 * import { checkPadOption } from "./_checks.ts";
 * const config = { task: "classify" as const, vocabSize: 10 };
 * checkPadOption(0, { config, owner: "demo" });
 * try { checkPadOption(12, { config, owner: "demo" }); } catch (e) { console.log((e as Error).name); } // RangeError
 * ```
 */
export function checkPadOption(
  pad: unknown,
  context: { config: Pick<ModelConfig, "task" | "vocabSize">; owner: string },
): void {
  const { config, owner } = context;
  if (pad === undefined) return;
  if (config.task !== "classify") {
    throw new Error(`${owner}: option pad is only for a classifier (task "classify"); remove it`);
  }
  if (typeof pad !== "number") throw new TypeError(`${owner}: option pad must be a token id, got ${String(pad)}`);
  if (!Number.isInteger(pad) || pad < 0 || pad >= config.vocabSize) {
    // A pad that matches no token would pool the padding silently.
    throw new RangeError(`${owner}: option pad must be a token id in 0..${config.vocabSize - 1}, got ${pad}`);
  }
}

/**
 * `compute()` (in a tidy) for ids that come as a tensor, once every id is known to be in the vocabulary 0..V-1.
 * tf.oneHot turns an id outside it into a zero row (an all-zero embedding, with no error), and a lookup's check
 * depends on the backend: where the backend reads synchronously, one min/max read and a RangeError instead. On
 * webgpu, which cannot read synchronously under Deno (and a read would stall it), the check joins the computation:
 * every output is multiplied by 1, or by NaN when an id is out of range, so bad ids show as NaN rather than as a
 * silent zero row.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { withIdsInVocabulary } from "./_checks.ts";
 * const ids = tf.tensor2d([[1, 7]], [1, 2], "int32");
 * try { withIdsInVocabulary(ids, 5, () => tf.zeros([1])); } catch (e) { console.log((e as Error).name); } // RangeError
 * ids.dispose();
 * ```
 */
export function withIdsInVocabulary<T extends tf.Tensor | tf.Tensor[]>(
  ids: tf.Tensor2D,
  vocabSize: number,
  compute: () => T,
): T {
  const V = vocabSize;
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

/**
 * Checks a batch before any tensor is made, in one pass over each array: ids, targets and labels in range (tf.oneHot
 * turns an id out of range into a zero row, so a bad target would add 0 to the loss and a bad input read a zero
 * embedding, with no error), mask weights finite and >= 0 with at least one > 0.
 *
 * @example
 * ```ts
 * import { modelConfig } from "./config.ts";
 * import { checkBatch } from "./_checks.ts";
 * const config = modelConfig({ attention: "vanilla", dModel: 8, heads: 2 });
 * const batch = { kind: "lm" as const, inputs: Int32Array.from([1, 300]), targets: Int32Array.from([2, 3]), batch: 1, length: 2 };
 * try { checkBatch(batch, { config, owner: "demo" }); } catch (e) { console.log((e as Error).message.slice(0, 45)); } // demo: batch.inputs[1] is token id 300, outsid
 * ```
 */
export function checkBatch(batch: ModelBatch, context: { config: ModelConfig; owner: string }): void {
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
