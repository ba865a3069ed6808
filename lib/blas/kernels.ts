/**
 * The kernels the `blas` backend computes itself besides matmul: elementwise ops, reductions, Softmax,
 * Cumsum, UnsortedSegmentSum, Transpose, PadV2, GatherV2, Slice, SplitV and Concat, as typed-array loops (see
 * elementwise.ts, reduce.ts, layout.ts), each taking float32 inputs and handing every other case to the cpu kernel
 * of the same name; and the fused kernels of fused.ts (silu(a) · b and SimpleRMSNorm with their gradients,
 * Softmax's gradient), which no other backend has.
 *
 * `ATTNLAB_BLAS_KERNELS=matmul` registers only the matmul kernels (the backend as it was before these
 * kernels existed), for speed comparisons; `all` (the default) registers everything here as well.
 *
 * @module
 */

import type { Kernel } from "./_util.ts";
import { elementwiseKernels } from "./elementwise.ts";
import { fusedKernels } from "./fused.ts";
import { layoutKernels } from "./layout.ts";
import { reductionKernels } from "./reduce.ts";
import { envString } from "../env.ts";

/** Values of `ATTNLAB_BLAS_KERNELS`: "all" (default) or "matmul" (only BatchMatMul and _FusedMatMul). */
export const BLAS_KERNEL_SETS = ["all", "matmul"] as const;

/** One of {@linkcode BLAS_KERNEL_SETS}. */
export type BlasKernelSet = typeof BLAS_KERNEL_SETS[number];

/**
 * The kernel set chosen by `ATTNLAB_BLAS_KERNELS` (default "all"); any other value is an error.
 *
 * @example
 * ```ts
 * import { blasKernelSet } from "./kernels.ts";
 * console.log(["all", "matmul"].includes(blasKernelSet())); // true
 * ```
 */
export function blasKernelSet(): BlasKernelSet {
  const value = envString("ATTNLAB_BLAS_KERNELS") ?? "all";
  if ((BLAS_KERNEL_SETS as readonly string[]).includes(value)) return value as BlasKernelSet;
  throw new Error(
    `ATTNLAB_BLAS_KERNELS must be one of ${BLAS_KERNEL_SETS.join(", ")}, got "${value}"; ` +
      `unset it to use every blas kernel`,
  );
}

/**
 * The blas backend's own kernels other than matmul, by kernel name.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { fastKernels } from "./kernels.ts";
 * const names = Object.keys(fastKernels());
 * console.log(names.includes(tf.Softmax) && names.includes(tf.Add)); // true
 * ```
 */
export function fastKernels(): Record<string, Kernel> {
  return { ...elementwiseKernels(), ...reductionKernels(), ...layoutKernels(), ...fusedKernels() };
}
