/**
 * The kernels the `blas` backend computes itself besides matmul: elementwise ops, reductions, Softmax,
 * Cumsum, UnsortedSegmentSum, Transpose, PadV2, GatherV2, Slice, SplitV and Concat, as typed-array loops (see
 * elementwise.ts, reduce.ts, layout.ts), each taking float32 inputs and handing every other case to the cpu kernel
 * of the same name; the fused kernels of fused.ts (silu(a) · b and SimpleRMSNorm with their gradients,
 * Softmax's gradient), which no other backend has; and, where oneDNN loads (lib/blas/dnnl.ts), oneDNN in place of
 * the loops of Softmax and its gradient, silu(a) · b and its gradient, Exp, Sigmoid, Tanh, Elu, EluGrad, Sqrt,
 * Square, Abs, Relu, Add, Sub, Multiply, RealDiv, Sum, Mean and Transpose for calls large enough to gain
 * (lib/blas/dnnl_kernels.ts); backend.ts likewise sends BatchMatMul to one batched oneDNN matmul by size.
 *
 * `ATTNLAB_BLAS_KERNELS` picks the set, for speed comparisons:
 *
 * - `all` (the default): everything here, oneDNN included when `libdnnl.so.2` loads (else the loops, after one line
 *   on stderr naming `apt-get install libdnnl2`);
 * - `js`: everything here but oneDNN (the loops, with the cpu kernels' values bit for bit except where noted);
 * - `matmul`: only the matmul kernels (the backend as it was before these kernels existed).
 *
 * @module
 */

import type { Kernel } from "./_util.ts";
import { elementwiseKernels } from "./elementwise.ts";
import type { DnnlLibrary } from "./dnnl.ts";
import { dnnlKernels } from "./dnnl_kernels.ts";
import { fusedKernels } from "./fused.ts";
import { fusedAttentionKernels } from "./fused_attention.ts";
import { fusedCausalKernels } from "./fused_causal.ts";
import { scaledReluPairKernels } from "./fused_features.ts";
import { layoutKernels } from "./layout.ts";
import { reductionKernels } from "./reduce.ts";
import { envString } from "../env.ts";

/**
 * Values of `ATTNLAB_BLAS_KERNELS`: "all" (default: the typed-array loops and oneDNN), "js" (the loops without
 * oneDNN) or "matmul" (only BatchMatMul and _FusedMatMul).
 */
export const BLAS_KERNEL_SETS = ["all", "js", "matmul"] as const;

/** One of {@linkcode BLAS_KERNEL_SETS}. */
export type BlasKernelSet = typeof BLAS_KERNEL_SETS[number];

/**
 * The kernel set chosen by `ATTNLAB_BLAS_KERNELS` (default "all"); any other value is an error.
 *
 * @example
 * ```ts
 * import { blasKernelSet } from "./kernels.ts";
 * console.log(["all", "js", "matmul"].includes(blasKernelSet())); // true
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
 * The blas backend's own kernels other than matmul, by kernel name: the typed-array loops, and with `dnnl` the
 * oneDNN kernels in place of the loops they cover (each running its loop for calls too small to gain). The names are
 * the same either way.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { dnnl } from "./dnnl.ts";
 * import { fastKernels } from "./kernels.ts";
 * const names = Object.keys(fastKernels());
 * console.log(names.includes(tf.Softmax) && names.includes(tf.Add)); // true
 * console.log(Object.keys(fastKernels({ dnnl: dnnl() })).length === names.length); // true
 * ```
 */
export function fastKernels(options: { dnnl?: DnnlLibrary } = {}): Record<string, Kernel> {
  if (options === null || typeof options !== "object") {
    throw new TypeError("fastKernels: options must be { dnnl? } (a DnnlLibrary from dnnl() or openDnnl())");
  }
  const js = {
    ...elementwiseKernels(),
    ...reductionKernels(),
    ...layoutKernels(),
    ...fusedKernels(),
    ...fusedCausalKernels(),
    ...scaledReluPairKernels(),
    ...fusedAttentionKernels(),
  };
  if (options.dnnl === undefined) return js;
  const own = dnnlKernels(options.dnnl, js);
  // Only names the loops have: the oneDNN kernels replace, never add.
  for (const name of Object.keys(own)) if (!(name in js)) delete own[name];
  return { ...js, ...own };
}
