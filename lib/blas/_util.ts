/**
 * Shared plumbing of the `blas` backend's kernels: the kernel call shape, access to stored values,
 * and the fall-back to the cpu backend's kernel. Internal to lib/blas.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";

/** A tensor as kernels see it: data id, shape and dtype. */
export type TensorInfo = tf.TensorInfo;

/** What tfjs passes to a kernel of the cpu-derived backends. */
export interface KernelArgs {
  inputs: Record<string, TensorInfo | undefined>;
  backend: MathBackendCPU;
  attrs?: Record<string, unknown>;
}

/** A kernel body. */
export type Kernel = (args: KernelArgs) => TensorInfo;

/** A fast path: the result, or undefined to hand the call to the cpu kernel (other dtypes, unusual layouts). */
export type FastPath = (args: KernelArgs) => TensorInfo | undefined;

/**
 * The cpu backend's kernel `name`.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { cpuKernel } from "./_util.ts";
 * console.log(typeof cpuKernel(tf.Add)); // function
 * ```
 */
export function cpuKernel(name: string): Kernel {
  const kernel = tf.getKernel(name, "cpu");
  if (!kernel) throw new Error(`blas backend: the cpu kernel ${name} is not registered; import @tensorflow/tfjs first`);
  return kernel.kernelFunc as unknown as Kernel;
}

/**
 * A kernel that tries `fast` and falls back to the cpu kernel `name` when `fast` declines.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { withFallback } from "./_util.ts";
 * const kernel = withFallback(tf.Neg, () => undefined); // always the cpu kernel
 * console.log(typeof kernel); // function
 * ```
 */
export function withFallback(name: string, fast: FastPath): Kernel {
  const cpu = cpuKernel(name);
  return (args) => fast(args) ?? cpu(args);
}

/**
 * The values of a float32 tensor as a Float32Array: its stored array, or a float32 copy of it where the tensor was made
 * by `tf.cast` from int32 or bool (tfjs's Cast keeps the Int32Array or Uint8Array; a native library, oneDNN or the
 * BLAS, would read those bytes as floats).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import type { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
 * import { f32 } from "./_util.ts";
 * await tf.setBackend("cpu");
 * const x = tf.tensor1d([1, 2]);
 * console.log(f32(tf.backend() as MathBackendCPU, x)[1]); // 2
 * const cast = tf.cast(tf.tensor1d([3, 4], "int32"), "float32");
 * console.log(f32(tf.backend() as MathBackendCPU, cast)); // Float32Array(2) [ 3, 4 ]
 * ```
 */
export function f32(backend: MathBackendCPU, info: TensorInfo): Float32Array {
  const values = backend.data.get(info.dataId)!.values as ArrayLike<number>;
  return values instanceof Float32Array ? values : Float32Array.from(values);
}

/**
 * The number of elements of a shape.
 *
 * @example
 * ```ts
 * import { sizeOf } from "./_util.ts";
 * console.log(sizeOf([2, 3, 4])); // 24
 * ```
 */
export function sizeOf(shape: readonly number[]): number {
  let size = 1;
  for (const d of shape) size *= d;
  return size;
}

/**
 * A reduction over a contiguous block of axes, seen as [outer, reduce, inner] in row-major order;
 * undefined when the reduced axes (ignoring size-1 axes) are not one contiguous block.
 *
 * @example
 * ```ts
 * import { reductionLayout } from "./_util.ts";
 * console.log(reductionLayout([2, 3, 4, 5], [1, 2])); // { outer: 2, reduce: 12, inner: 5 }
 * ```
 */
export function reductionLayout(
  shape: readonly number[],
  axes: readonly number[],
): { outer: number; reduce: number; inner: number } | undefined {
  const reduced = axes.filter((a) => shape[a] !== 1).sort((a, b) => a - b);
  if (reduced.length === 0) return { outer: sizeOf(shape), reduce: 1, inner: 1 };
  const first = reduced[0];
  const last = reduced[reduced.length - 1];
  // Kept axes of size 1 inside the block do not break it: they hold no elements.
  for (let a = first; a <= last; a++) {
    if (shape[a] !== 1 && !reduced.includes(a)) return undefined;
  }
  return {
    outer: sizeOf(shape.slice(0, first)),
    reduce: sizeOf(shape.slice(first, last + 1)),
    inner: sizeOf(shape.slice(last + 1)),
  };
}

/**
 * Whether the current backend registers kernel `name` and every tensor is float32: when a fused op can run its own
 * kernel rather than the tf-op composite every backend has.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { hasFloat32Kernel } from "./_util.ts";
 * await tf.setBackend("cpu");
 * console.log(hasFloat32Kernel(tf.Add, [tf.zeros([1])]), hasFloat32Kernel("NoSuchKernel", [])); // true false
 * ```
 */
export function hasFloat32Kernel(name: string, tensors: readonly tf.Tensor[]): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined && tensors.every((t) => t.dtype === "float32");
}

/**
 * Runs the registered kernel `name` through the engine (so its outputs are tracked, and taped inside a gradient
 * recording); its outputs as a list, one or several.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { runKernel } from "./_util.ts";
 * await tf.setBackend("cpu");
 * const [sum] = runKernel(tf.Add, { a: tf.scalar(1), b: tf.scalar(2) });
 * console.log(sum.dataSync()[0]); // 3
 * ```
 */
export function runKernel(
  name: string,
  inputs: Record<string, tf.Tensor>,
  attrs: Record<string, unknown> = {},
): tf.Tensor[] {
  const out = tf.engine().runKernel(name, inputs as unknown as tf.NamedTensorMap, attrs as tf.NamedAttrMap);
  return Array.isArray(out) ? out as tf.Tensor[] : [out as tf.Tensor];
}

/**
 * A function that registers the gradients `configs()` makes, the first time it is called, and does nothing after (tfjs
 * warns when a kernel's gradient is registered again). The fused modules call it before running their kernels, so
 * that their gradients exist only once something uses them.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { gradientsOnce } from "./_util.ts";
 * let made = 0;
 * const register = gradientsOnce(() => {
 *   made++;
 *   return [{ kernelName: "ExampleOnceKernel", gradFunc: (dy: tf.Tensor | tf.Tensor[]) => ({ x: () => dy as tf.Tensor }) }];
 * });
 * register();
 * register();
 * console.log(made, tf.getGradient("ExampleOnceKernel") !== undefined); // 1 true
 * ```
 */
export function gradientsOnce(configs: () => tf.GradConfig[]): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    for (const config of configs()) tf.registerGradient(config);
  };
}
