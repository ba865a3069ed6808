/**
 * cosFormer's feature map as one fused kernel of the `blas` backend, forward and backward:
 * {@linkcode scaledReluPair}(x, { a, b }) = [relu(x) · a, relu(x) · b] along the last axis, with a and b one weight per
 * row position i ([n, 1]: sin and cos of π i / 2M). tfjs runs Relu, two products and a Concat forward, and a SplitV,
 * two products, an Add and Relu's gradient backward: about 10% of a cosFormer training step at d = 256, n = 512.
 *
 * Both kernels keep the composite's float32 roundings in its order, so results and gradients are the same bits:
 * forward relu(x) · a rounded once per entry; backward dx = step(x) · (dy₁ · a + dy₂ · b), each product rounded, then
 * their sum (tfjs adds the two parts of relu(x)'s gradient; a sum of two is the same either way round).
 *
 * On any other backend, under `ATTNLAB_BLAS_KERNELS=matmul` and for other dtypes, it runs the composite tf ops; while a
 * higher-order gradient is being recorded, its gradient runs differentiable tf ops.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import {
  f32,
  gradientsOnce,
  hasFloat32Kernel,
  type Kernel,
  type KernelArgs,
  runKernel,
  sizeOf,
  type TensorInfo,
} from "./_util.ts";
import { allocFloat32 } from "./pool.ts";

/** [relu(x) · a, relu(x) · b]: inputs x [..., n, d], a and b [n, 1]; output [..., n, 2d]. */
export const SCALED_RELU_PAIR = "AttnlabScaledReluPair";
/** Gradient of {@linkcode SCALED_RELU_PAIR} in x: inputs dy [..., n, 2d], x, a, b; output dx [..., n, d]. */
export const SCALED_RELU_PAIR_GRAD = "AttnlabScaledReluPairGrad";

/** n and d of x [..., n, d], and its rows (the product of the leading axes, times n). */
function dims(x: TensorInfo): { n: number; d: number; rows: number } {
  const rank = x.shape.length;
  const n = x.shape[rank - 2], d = x.shape[rank - 1];
  return { n, d, rows: d === 0 ? 0 : sizeOf(x.shape) / d };
}

function scaledReluPairKernel({ inputs, backend }: KernelArgs): TensorInfo {
  const x = inputs.x!;
  const { n, d, rows } = dims(x);
  const xv = f32(backend, x);
  const av = f32(backend, inputs.a!);
  const bv = f32(backend, inputs.b!);
  const out = allocFloat32(2 * xv.length);
  for (let r = 0; r < rows; r++) {
    const wa = av[r % n], wb = bv[r % n];
    const src = r * d, dst = 2 * r * d;
    for (let j = 0; j < d; j++) {
      const v = xv[src + j];
      // tfjs's relu, max(x, 0): +0 for x = −0, NaN stays NaN; then each product rounded once.
      const relu = v > 0 ? v : v !== v ? v : 0;
      out[dst + j] = relu * wa;
      out[dst + d + j] = relu * wb;
    }
  }
  return backend.makeTensorInfo([...x.shape.slice(0, -1), 2 * d], "float32", out);
}

function scaledReluPairGradKernel({ inputs, backend }: KernelArgs): TensorInfo {
  const x = inputs.x!;
  const { n, d, rows } = dims(x);
  const xv = f32(backend, x);
  const dyv = f32(backend, inputs.dy!);
  const av = f32(backend, inputs.a!);
  const bv = f32(backend, inputs.b!);
  const out = allocFloat32(xv.length);
  for (let r = 0; r < rows; r++) {
    const wa = av[r % n], wb = bv[r % n];
    const src = r * d, dst = 2 * r * d;
    for (let j = 0; j < d; j++) {
      const v = xv[src + j];
      // relu(x)'s gradient dy₁ · a + dy₂ · b (each product rounded, then the sum), times step(x) (NaN where x is NaN).
      const g = Math.fround(Math.fround(dyv[dst + j] * wa) + Math.fround(dyv[dst + d + j] * wb));
      out[src + j] = g * (v !== v ? NaN : +(v > 0));
    }
  }
  return backend.makeTensorInfo(x.shape, "float32", out);
}

/**
 * The kernels of this module, by name, for the `blas` backend to register.
 *
 * @example
 * ```ts
 * import { SCALED_RELU_PAIR, scaledReluPairKernels } from "./fused_features.ts";
 * console.log(Object.keys(scaledReluPairKernels()).includes(SCALED_RELU_PAIR)); // true
 * ```
 */
export function scaledReluPairKernels(): Record<string, Kernel> {
  return {
    [SCALED_RELU_PAIR]: scaledReluPairKernel,
    [SCALED_RELU_PAIR_GRAD]: scaledReluPairGradKernel,
  };
}

/** The composite, in differentiable tf ops: what every other backend runs, and the reference of the tests. */
function composite(x: tf.Tensor, a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor {
  const r = tf.relu(x); // [..., n, d]
  return tf.concat([tf.mul(r, a), tf.mul(r, b)], -1); // [..., n, 2d]
}

/** Σ over every axis but n of dy's half · relu(x), as [n, 1]: the gradient of a row weight. */
function weightGrad(half: tf.Tensor, x: tf.Tensor): tf.Tensor2D {
  const n = x.shape[x.rank - 2], d = x.shape[x.rank - 1];
  const products = tf.reshape(tf.mul(half, tf.relu(x)), [-1, n, d]); // [rest, n, d]
  return tf.reshape(tf.sum(products, [0, 2]), [n, 1]) as tf.Tensor2D;
}

const registerGradient = gradientsOnce(() => [{
  kernelName: SCALED_RELU_PAIR,
  inputsToSave: ["x", "a", "b"],
  gradFunc: (dy, saved) => {
    const [x, a, b] = saved;
    const g = dy as tf.Tensor; // [..., n, 2d]
    // Split where used: each input's gradient runs in a tidy of its own (which frees what it made), and the training
    // path (the kernel, below) uses neither half.
    const half = (i: number) => tf.split(g, 2, -1)[i]; // [..., n, d]
    return {
      x: () => {
        if (tf.engine().state.gradientDepth === 0 && hasFloat32Kernel(SCALED_RELU_PAIR_GRAD, [g, x, a, b])) {
          return runKernel(SCALED_RELU_PAIR_GRAD, { dy: g, x, a, b })[0];
        }
        // A gradient that is itself being differentiated: relu's chain in differentiable ops.
        return tf.mul(tf.add(tf.mul(half(0), a), tf.mul(half(1), b)), tf.step(x));
      },
      a: () => weightGrad(half(0), x),
      b: () => weightGrad(half(1), x),
    };
  },
}]);

/**
 * [relu(x) · a, relu(x) · b] along the last axis: x [..., n, d] and one weight per row position in a and b ([n, 1]),
 * giving [..., n, 2d]; cosFormer's features, with a = sin and b = cos of each position's angle. On the blas backend one
 * kernel computes it and one its gradient in x, the same bits as the composite
 * `tf.concat([tf.mul(tf.relu(x), a), tf.mul(tf.relu(x), b)], -1)`, which every other backend runs. Differentiable in x,
 * a and b.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { scaledReluPair } from "./fused_features.ts";
 * const y = scaledReluPair(tf.tensor2d([[-1, 2], [3, 4]]), { a: tf.tensor2d([[1], [2]]), b: tf.tensor2d([[10], [0]]) });
 * console.log(JSON.stringify(y.arraySync())); // [[0,2,0,20],[6,8,0,0]]
 * ```
 */
export function scaledReluPair<T extends tf.Tensor>(x: T, weights: { a: tf.Tensor2D; b: tf.Tensor2D }): T {
  const owner = "scaledReluPair";
  if (!(x instanceof tf.Tensor) || x.rank < 2) {
    throw new TypeError(`${owner}: x must be a tf.Tensor of rank >= 2 ([..., n, d])`);
  }
  if (weights === null || typeof weights !== "object") {
    throw new TypeError(`${owner}: weights must be { a, b }, two tf.Tensors of shape [n, 1]`);
  }
  const n = x.shape[x.rank - 2];
  for (const key of ["a", "b"] as const) {
    const w = weights[key];
    if (!(w instanceof tf.Tensor) || w.rank !== 2 || w.shape[0] !== n || w.shape[1] !== 1) {
      throw new RangeError(
        `${owner}: weights.${key} must be a tf.Tensor of shape [${n}, 1] (one weight per row of x [..., ${n}, d]), ` +
          `got ${w instanceof tf.Tensor ? `shape [${w.shape}]` : String(w)}`,
      );
    }
  }
  const { a, b } = weights;
  if (hasFloat32Kernel(SCALED_RELU_PAIR, [x, a, b]) && sizeOf(x.shape) > 0) {
    registerGradient();
    return runKernel(SCALED_RELU_PAIR, { x, a, b })[0] as T;
  }
  return tf.tidy(() => composite(x, a, b)) as T;
}
