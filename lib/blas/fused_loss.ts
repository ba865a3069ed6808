/**
 * Softmax cross-entropy as one fused kernel of the `blas` backend, forward and backward: per row of logits [rows, V]
 * and its int32 target, −log softmax(logits)[target], optionally times a per-row weight (a masked language model's
 * mask), where tfjs runs logSoftmax, oneHot, a product and a sum, and about ten ops for their gradient.
 *
 * The forward kernel works in double precision and rounds once: log Σ exp over a row in a double after subtracting the
 * row's maximum, the loss from it, and the softmax, which it keeps for the gradient (in place of the logits, so the
 * memory is the composite's); the gradient kernel is then one multiply per element, (softmax − onehot) · dy · weight.
 * So the values are not the composite's bits (which round every intermediate to float32) but within a rounding or two
 * of the exact ones; a row of weight 0 is not read at all (its loss and gradient are 0). With oneDNN (libdnnl2, the
 * default kernel set), lib/blas/dnnl_kernels.ts computes the forward from oneDNN's vectorised softmax instead, about 3×
 * faster: the loss is then within 2e-6 (times the row's weight) of the exact one, and the softmax within 2e-6 relative.
 *
 * On any other backend, under `ATTNLAB_BLAS_KERNELS=matmul` and for other dtypes, {@linkcode softmaxCrossEntropy} runs
 * the composite tf ops instead, and so it does inside nested gradient recordings (where its gradient may itself be
 * differentiated).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { fastExp } from "./_exp.ts";
import { f32, hasFloat32Kernel, type Kernel, type KernelArgs, runKernel, type TensorInfo } from "./_util.ts";
import { allocFloat32 } from "./pool.ts";

/**
 * Softmax cross-entropy: inputs logits [rows, V] float32, targets [rows] int32 and optionally weights [rows] float32;
 * attribute `probs` (boolean); outputs [the loss per row [rows]], and with `probs` also [the softmax [rows, V]] that
 * the gradient reads.
 */
export const SOFTMAX_CROSS_ENTROPY = "AttnlabSoftmaxCrossEntropy";
/**
 * Gradient of {@linkcode SOFTMAX_CROSS_ENTROPY}: inputs dy [rows], probs [rows, V] (the forward's softmax), targets
 * and optionally weights; output d logits [rows, V].
 */
export const SOFTMAX_CROSS_ENTROPY_GRAD = "AttnlabSoftmaxCrossEntropyGrad";

function int32(backend: KernelArgs["backend"], info: TensorInfo): Int32Array {
  return backend.data.get(info.dataId)!.values as Int32Array;
}

function checkTarget(target: number, row: number, classes: number): void {
  if (!(target >= 0 && target < classes)) {
    throw new RangeError(
      `softmaxCrossEntropy: targets[${row}] is ${target}, outside 0..${classes - 1} (the logits' last axis has ` +
        `${classes} classes); give every row a class the logits have`,
    );
  }
}

function crossEntropyKernel({ inputs, backend, attrs }: KernelArgs): TensorInfo[] {
  const logits = inputs.logits!;
  const [rows, classes] = logits.shape;
  const xv = f32(backend, logits);
  const tv = int32(backend, inputs.targets!);
  const wv = inputs.weights ? f32(backend, inputs.weights) : null;
  const loss = allocFloat32(rows);
  const probs = attrs?.probs ? allocFloat32(rows * classes) : null;
  // One row's e^(x − max) in doubles, so that each probability is rounded to float32 once.
  const exps = probs ? new Float64Array(classes) : null;
  for (let r = 0; r < rows; r++) {
    const weight = wv === null ? 1 : wv[r];
    const target = tv[r];
    checkTarget(target, r, classes);
    const start = r * classes;
    if (weight === 0) {
      loss[r] = 0;
      probs?.fill(0, start, start + classes);
      continue;
    }
    // The row's maximum and where it first is: that element's e^(x − max) is exactly 1, and the others' sum, rest,
    // gives log Σ e^(x − max) = log1p(rest), accurate also where rest is far below a double's epsilon.
    let max = xv[start], at = 0;
    for (let j = 1; j < classes; j++) {
      const v = xv[start + j];
      // NaN wins, as in tf.max: the row's loss is then NaN.
      if (v > max || v !== v) {
        max = v;
        at = j;
      }
      if (max !== max) break;
    }
    if (!Number.isFinite(max)) {
      // A NaN, +Infinity or only −Infinity in the row: x − max is NaN somewhere, as in the composite.
      loss[r] = NaN;
      probs?.fill(NaN, start, start + classes);
      continue;
    }
    let rest = 0;
    if (exps) {
      for (let j = 0; j < classes; j++) exps[j] = fastExp(xv[start + j] - max);
      for (let j = 0; j < at; j++) rest += exps[j];
      for (let j = at + 1; j < classes; j++) rest += exps[j];
      const inverse = 1 / (1 + rest);
      for (let j = 0; j < classes; j++) probs![start + j] = exps[j] * inverse;
    } else {
      for (let j = 0; j < at; j++) rest += fastExp(xv[start + j] - max);
      for (let j = at + 1; j < classes; j++) rest += fastExp(xv[start + j] - max);
    }
    // (max − x_t) + log Σ e^(x − max): x_t − max is exact in a double, and the log comes last.
    loss[r] = weight * ((max - xv[start + target]) + Math.log1p(rest));
  }
  const out = [backend.makeTensorInfo([rows], "float32", loss)];
  if (probs) out.push(backend.makeTensorInfo([rows, classes], "float32", probs));
  return out;
}

function crossEntropyGradKernel({ inputs, backend }: KernelArgs): TensorInfo {
  const probs = inputs.probs!;
  const [rows, classes] = probs.shape;
  const pv = f32(backend, probs);
  const dyv = f32(backend, inputs.dy!);
  const tv = int32(backend, inputs.targets!);
  const wv = inputs.weights ? f32(backend, inputs.weights) : null;
  const out = allocFloat32(rows * classes);
  for (let r = 0; r < rows; r++) {
    const start = r * classes;
    const weight = wv === null ? 1 : wv[r];
    if (weight === 0) {
      out.fill(0, start, start + classes);
      continue;
    }
    // d loss_r / d x_j = dy_r · w_r · (softmax(x)_j − [j = target]).
    const coefficient = dyv[r] * weight;
    for (let j = 0; j < classes; j++) out[start + j] = coefficient * pv[start + j];
    const t = start + tv[r];
    out[t] = coefficient * (pv[t] - 1);
  }
  return backend.makeTensorInfo(probs.shape, "float32", out);
}

/**
 * The kernels of this module, by name, for the `blas` backend to register (through lib/blas/fused.ts's
 * `fusedKernels`).
 *
 * @example
 * ```ts
 * import { fusedLossKernels, SOFTMAX_CROSS_ENTROPY } from "./fused_loss.ts";
 * console.log(SOFTMAX_CROSS_ENTROPY in fusedLossKernels()); // true
 * ```
 */
export function fusedLossKernels(): Record<string, Kernel> {
  return {
    [SOFTMAX_CROSS_ENTROPY]: crossEntropyKernel as unknown as Kernel,
    [SOFTMAX_CROSS_ENTROPY_GRAD]: crossEntropyGradKernel,
  };
}

/** −log softmax(logits)[target] per row (times the weights), in tf ops: tfjs's own composite. */
function composite(logits: tf.Tensor2D, targets: tf.Tensor1D, weights: tf.Tensor1D | undefined): tf.Tensor1D {
  const [rows, classes] = logits.shape;
  const logp = tf.logSoftmax(logits); // [rows, V]
  // tf.oneHot needs two classes or more; with one, its log-probability is the row's only column.
  const picked = classes === 1 ? tf.reshape(logp, [rows]) : tf.sum(tf.mul(tf.oneHot(targets, classes), logp), 1); // [rows]
  return (weights ? tf.mul(tf.neg(picked), weights) : tf.neg(picked)) as tf.Tensor1D;
}

function fused(logits: tf.Tensor2D, targets: tf.Tensor1D, weights: tf.Tensor1D | undefined): tf.Tensor1D {
  const given: Record<string, tf.Tensor> = weights ? { targets, weights } : { targets };
  const depth = tf.engine().state.gradientDepth;
  // Outside a gradient recording nothing will read the softmax: the kernel skips writing it.
  if (depth === 0) return runKernel(SOFTMAX_CROSS_ENTROPY, { logits, ...given })[0] as tf.Tensor1D;
  // Inside two recordings the gradient may itself be differentiated: tfjs's ops, which it can differentiate.
  if (depth > 1) return composite(logits, targets, weights);
  // targets and weights take no gradient: they are saved for the backward pass rather than passed as inputs.
  const op = tf.customGrad((...args: unknown[]) => {
    const [x, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
    const [loss, probs] = runKernel(SOFTMAX_CROSS_ENTROPY, { logits: x, ...given }, { probs: true });
    save(weights ? [probs, targets, weights] : [probs, targets]);
    return {
      value: loss,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [probs, targets, weights] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D?];
        const rest: Record<string, tf.Tensor> = weights ? { targets, weights } : { targets };
        if (tf.engine().state.gradientDepth === 0 && dy.dtype === "float32") {
          return [runKernel(SOFTMAX_CROSS_ENTROPY_GRAD, { dy, probs, ...rest })[0]];
        }
        // A gradient taken inside another recording (which a forward pass at depth 1 should not meet): the same
        // expression in tf ops, with the saved softmax a constant to the outer tape.
        const coefficient = weights ? tf.mul(dy, weights) : dy; // [rows]
        const classes = probs.shape[1];
        const delta = tf.sub(probs, classes === 1 ? 1 : tf.oneHot(targets, classes)); // [rows, V]
        return [tf.mul(delta, tf.expandDims(coefficient, 1))];
      },
    };
  });
  return op(logits) as tf.Tensor1D;
}

/** Options of {@linkcode softmaxCrossEntropy}. */
export interface SoftmaxCrossEntropyOptions {
  /** Per-row weights [rows] (float32, finite, >= 0): each row's loss is multiplied by its weight. Default none (1). */
  weights?: tf.Tensor1D;
}

/**
 * The cross-entropy of each row of `logits` [rows, V] against its class in `targets` [rows] (int32 in 0..V−1):
 * −log softmax(logits[r])[targets[r]], times `weights[r]` when given, as a [rows] tensor (the caller averages it).
 * Its gradient with respect to the logits is (softmax − onehot) · weight · the upstream gradient.
 *
 * On the blas backend one kernel computes it and one its gradient, in double precision rounded once to float32 (a
 * row of weight 0 is skipped: its loss and gradient are 0), and a target outside 0..V−1 is a RangeError. Elsewhere
 * tfjs's composite runs, `−sum(oneHot(targets) · logSoftmax(logits))`, whose float32 roundings differ by a few units
 * in the last place (and which turns a row with a logit of −Infinity into NaN, and a target outside 0..V−1 into a
 * loss of 0, with no error).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { softmaxCrossEntropy } from "./fused_loss.ts";
 * const logits = tf.tensor2d([[0, 0], [Math.log(3), 0]]);
 * const loss = softmaxCrossEntropy(logits, tf.tensor1d([1, 0], "int32"));
 * // −log(1/2) and −log(3/4).
 * console.log(Array.from(loss.dataSync()).map((v) => v.toFixed(4))); // ["0.6931", "0.2877"]
 * ```
 */
export function softmaxCrossEntropy(
  logits: tf.Tensor2D,
  targets: tf.Tensor1D,
  options: SoftmaxCrossEntropyOptions = {},
): tf.Tensor1D {
  const owner = "softmaxCrossEntropy";
  if (!(logits instanceof tf.Tensor) || logits.rank !== 2) {
    throw new TypeError(`${owner}: logits must be a tf.Tensor2D [rows, classes]; reshape [b, n, V] to [b·n, V]`);
  }
  const [rows, classes] = logits.shape;
  if (classes < 1) throw new RangeError(`${owner}: logits must have at least one class, got shape [${logits.shape}]`);
  if (!(targets instanceof tf.Tensor) || targets.rank !== 1 || targets.dtype !== "int32") {
    throw new TypeError(
      `${owner}: targets must be an int32 tf.Tensor1D [rows]; build it with tf.tensor1d(ids, "int32")`,
    );
  }
  if (targets.shape[0] !== rows) {
    throw new RangeError(`${owner}: targets has ${targets.shape[0]} entries, expected one per row of logits (${rows})`);
  }
  if (options === null || typeof options !== "object") throw new TypeError(`${owner}: options must be { weights? }`);
  for (const key of Object.keys(options)) {
    if (key !== "weights") throw new TypeError(`${owner}: unknown option "${key}"; the only option is weights`);
  }
  const { weights } = options;
  if (weights !== undefined) {
    if (!(weights instanceof tf.Tensor) || weights.rank !== 1 || weights.dtype !== "float32") {
      throw new TypeError(`${owner}: options.weights must be a float32 tf.Tensor1D [rows], or left out`);
    }
    if (weights.shape[0] !== rows) {
      throw new RangeError(`${owner}: options.weights has ${weights.shape[0]} entries, expected ${rows} (one per row)`);
    }
  }
  return hasFloat32Kernel(SOFTMAX_CROSS_ENTROPY, [logits])
    ? fused(logits, targets, weights)
    : composite(logits, targets, weights);
}
