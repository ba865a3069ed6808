/**
 * The `blas` TensorFlow.js backend: the cpu backend (its tensors, memory and every kernel not named
 * here), with
 *
 * - `BatchMatMul` and `_FusedMatMul` computed by `cblas_sgemm` from the system BLAS, once per matrix of a batch,
 *   or, where oneDNN loads, by one oneDNN matmul primitive for the whole batch (lib/blas/dnnl_kernels.ts's
 *   `dnnlBatchMatMul`: from 2¹⁹ FLOPs a call and 16³ a matrix, and, when OpenBLAS has more threads than oneDNN,
 *   below 2²⁸ FLOPs a call or 2²² a matrix; `DNNL_MATMUL_RULE` holds the measurements). Transposed operands are read as they are stored, by
 *   either. Gradients need nothing extra: tfjs writes matmul gradients as matmuls, which land here too.
 * - the hot non-matmul kernels of attention and transformer training as tight typed-array loops
 *   (lib/blas/kernels.ts): Add, Sub, Multiply, RealDiv, Maximum, Minimum, SquaredDifference, Pow and the
 *   comparisons, with any broadcast; Exp, Log, Neg, Sqrt, Rsqrt, Square, Relu, Elu, EluGrad, Sigmoid,
 *   Tanh, Abs, Reciprocal, Step; Sum, Mean, Max, Min over a block of axes; Softmax as one kernel;
 *   Cumsum; GatherV2 and UnsortedSegmentSum (an embedding lookup and its gradient); Transpose; PadV2;
 *   Slice, SplitV and Concat.
 *   They take float32, hand other dtypes to the cpu kernels, and compute what the cpu kernels compute,
 *   with the same roundings, bit for bit; except where the cpu kernel is wrong: Cumsum over a negative
 *   axis (cpu returns a mis-shaped tensor) and UnsortedSegmentSum with NaN or Inf input (cpu spreads it
 *   to every segment), and e^x in Exp, Sigmoid and Softmax (lib/blas/_exp.ts: 2.5× faster than
 *   Math.exp, one float32 ulp away from it in fewer than one input in 10^7).
 * - fused kernels (lib/blas/fused.ts) for silu(a) · b, SimpleRMSNorm and Softmax's gradient,
 *   forward and backward, with the composites' roundings: lib/models calls the first two, and Softmax's
 *   gradient is registered over tfjs's to use the third on this backend.
 * - oneDNN (Debian's `libdnnl2`, through FFI: lib/blas/dnnl.ts) in place of the loops of Softmax and its
 *   gradient, the fused silu(a) · b and its gradient, Exp, Sigmoid, Tanh, Elu, EluGrad, Sqrt, Square, Abs, Relu,
 *   Add, Sub, Multiply, RealDiv, Sum, Mean and Transpose, for calls large enough to gain
 *   (lib/blas/dnnl_kernels.ts): JIT-vectorised (AVX2 here; one thread unless `OMP_NUM_THREADS` says more), within
 *   a few float32 ulps of the cpu kernels rather than bit for bit (the arithmetic ops and Transpose: bit for bit).
 *   Without the library the backend says so once and keeps the loops.
 *
 * Kernel outputs come from a pool of recycled arrays (lib/blas/pool.ts): the backend is MathBackendCPU
 * with the data of freed tensors handed back to the pool unless something outside may still hold it.
 *
 * `ATTNLAB_BLAS_KERNELS` picks the kernel set, to measure what each group gains: `all` (the default) as above,
 * `js` without oneDNN, `matmul` with the matmuls alone.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { cpuKernel, f32, type Kernel, type KernelArgs, type TensorInfo } from "./_util.ts";
import { registerFusedGradients } from "./fused.ts";
import { blasKernelSet, fastKernels } from "./kernels.ts";
import { dnnl, type DnnlLibrary } from "./dnnl.ts";
import { dnnlBatchMatMul } from "./dnnl_kernels.ts";
import { allocFloat32, allocFloat32Zeroed, PoolingBackend } from "./pool.ts";
import { type BlasLibrary, openBlas, type Sgemm } from "./sgemm.ts";

/** The backend's registered name. */
export const BLAS_BACKEND = "blas";

/** The blas kernel of `name` (its own where it has one, else the copied cpu kernel). */
function blasKernel(name: string): Kernel {
  return tf.getKernel(name, BLAS_BACKEND)!.kernelFunc as unknown as Kernel;
}

function batchOffsets(batchShape: number[], outBatch: number[], matrixSize: number): Int32Array {
  // For each output batch index, the offset of the operand's matrix, broadcasting size-1 dims.
  const rank = outBatch.length;
  const padded = [...Array(rank - batchShape.length).fill(1), ...batchShape];
  const strides = new Array(rank).fill(0);
  let stride = matrixSize;
  for (let i = rank - 1; i >= 0; i--) {
    strides[i] = padded[i] === 1 ? 0 : stride;
    stride *= padded[i];
  }
  const total = outBatch.reduce((x, y) => x * y, 1);
  const offsets = new Int32Array(total);
  for (let index = 0; index < total; index++) {
    let rest = index;
    let offset = 0;
    for (let i = rank - 1; i >= 0; i--) {
      offset += (rest % outBatch[i]) * strides[i];
      rest = Math.floor(rest / outBatch[i]);
    }
    offsets[index] = offset;
  }
  return offsets;
}

/**
 * BatchMatMul through sgemm: [..., M, K] x [..., K, N] with optional transposes and batch broadcasting.
 * Transposed operands are passed to sgemm as they are stored, without copies.
 */
function batchMatMul(args: KernelArgs, sgemm: Sgemm): TensorInfo {
  const { backend } = args;
  const a = args.inputs.a!;
  const b = args.inputs.b!;
  if (a.dtype !== "float32" || b.dtype !== "float32") return cpuKernel(tf.BatchMatMul)(args);
  const transA = Boolean(args.attrs?.transposeA);
  const transB = Boolean(args.attrs?.transposeB);
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = transA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kb = transB ? b.shape[rb - 1] : b.shape[rb - 2];
  const n = transB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (k !== kb) {
    throw new Error(
      `Error in matMul: inner shapes (${k}) and (${kb}) of Tensors with shapes ${a.shape} and ${b.shape} ` +
        `and transposeA=${transA} and transposeB=${transB} must match.`,
    );
  }
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(batchA, batchB);
  const batch = outBatch.reduce((x, y) => x * y, 1);
  // sgemm with beta = 0 writes every element of C; with k = 0 there is nothing to multiply and C is zero.
  const out = k > 0 ? allocFloat32(batch * m * n) : allocFloat32Zeroed(batch * m * n);
  if (out.length > 0 && k > 0) {
    const av = f32(backend, a);
    const bv = f32(backend, b);
    const lda = a.shape[ra - 1];
    const ldb = b.shape[rb - 1];
    const sizeB = batchB.reduce((x, y) => x * y, 1);
    if (sizeB === 1 && !transA && batchA.length === outBatch.length) {
      // Every A matrix meets the same B: stacked, they are one (batch * M) x K matrix and one call.
      sgemm({ transA, transB, m: batch * m, n, k, a: av, lda, b: bv, ldb, c: out, ldc: n });
    } else {
      const offA = batchOffsets(batchA, outBatch, m * k);
      const offB = batchOffsets(batchB, outBatch, k * n);
      for (let i = 0; i < batch; i++) {
        sgemm({
          transA,
          transB,
          m,
          n,
          k,
          a: av.subarray(offA[i]),
          lda,
          b: bv.subarray(offB[i]),
          ldb,
          c: out.subarray(i * m * n),
          ldc: n,
        });
      }
    }
  }
  return backend.makeTensorInfo([...outBatch, m, n], "float32", out);
}

/**
 * The blas backend's BatchMatMul kernel through `blas`'s `cblas_sgemm` alone, once per matrix of a batch (one call
 * where every matrix of A meets the same B): the kernel that {@linkcode registerBlasBackend} registers without oneDNN
 * (`ATTNLAB_BLAS_KERNELS=js` or `matmul`, or no libdnnl2), and the one the oneDNN kernel hands small products to.
 * Exported to compare the two, e.g. by registering it over the backend's BatchMatMul.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { BLAS_BACKEND, registerBlasBackend, sgemmBatchMatMul } from "./backend.ts";
 * try {
 *   const kernel = sgemmBatchMatMul(registerBlasBackend());
 *   tf.unregisterKernel(tf.BatchMatMul, BLAS_BACKEND);
 *   tf.registerKernel({ kernelName: tf.BatchMatMul, backendName: BLAS_BACKEND, kernelFunc: kernel as tf.KernelFunc });
 *   console.log(typeof kernel); // function
 * } catch (err) {
 *   console.log((err as Error).message); // no BLAS here
 * }
 * ```
 */
export function sgemmBatchMatMul(blas: BlasLibrary): (args: KernelArgs) => TensorInfo {
  if (blas === null || typeof blas !== "object" || typeof blas.sgemm !== "function") {
    throw new TypeError("sgemmBatchMatMul: blas must be a BlasLibrary (from openBlas() or registerBlasBackend())");
  }
  return (args) => batchMatMul(args, blas.sgemm);
}

const ACTIVATIONS: Record<string, string> = {
  linear: tf.Identity,
  relu: tf.Relu,
  relu6: tf.Relu6,
  elu: tf.Elu,
  sigmoid: tf.Sigmoid,
  leakyrelu: tf.LeakyRelu,
  prelu: tf.Prelu,
};

/** _FusedMatMul: the product by `matMul` (the backend's BatchMatMul), then bias and activation by its kernels. */
function fusedMatMul(args: KernelArgs, matMul: Kernel): TensorInfo {
  const { backend } = args;
  const { bias, preluActivationWeights } = args.inputs;
  const attrs = args.attrs ?? {};
  let current = matMul({
    inputs: { a: args.inputs.a, b: args.inputs.b },
    backend,
    attrs: { transposeA: attrs.transposeA, transposeB: attrs.transposeB },
  });
  const replace = (next: TensorInfo) => {
    backend.disposeIntermediateTensorInfo(current);
    current = next;
  };
  if (bias) replace(blasKernel(tf.Add)({ inputs: { a: current, b: bias }, backend }));
  const activation = attrs.activation as string | undefined;
  if (activation && activation !== "linear") {
    const name = ACTIVATIONS[activation];
    if (!name) {
      throw new Error(
        `blas backend: activation "${activation}" is not implemented; expected one of ${
          Object.keys(ACTIVATIONS).join(", ")
        }`,
      );
    }
    const inputs = activation === "prelu" ? { x: current, alpha: preluActivationWeights } : { x: current };
    replace(blasKernel(name)({ inputs, backend, attrs: { alpha: attrs.leakyreluAlpha } }));
  }
  return current;
}

let registered: BlasLibrary | undefined;
let registeredDnnl: DnnlLibrary | undefined;
let overridden: string[] = [];

/**
 * The oneDNN library the registered `blas` backend's kernels call, or undefined: before
 * {@linkcode registerBlasBackend}, under `ATTNLAB_BLAS_KERNELS=js` or `matmul`, or when `libdnnl.so.2` did not load.
 *
 * @example
 * ```ts
 * import { blasDnnl, registerBlasBackend } from "./backend.ts";
 * try {
 *   registerBlasBackend();
 *   const lib = blasDnnl();
 *   console.log(lib === undefined ? "JavaScript kernels only" : `oneDNN ${lib.version}`);
 * } catch (err) {
 *   console.log((err as Error).message); // no BLAS here
 * }
 * ```
 */
export function blasDnnl(): DnnlLibrary | undefined {
  return registeredDnnl;
}

/**
 * The kernels the registered `blas` backend computes itself (sorted; empty before
 * {@linkcode registerBlasBackend}): the matmuls, plus the typed-array and oneDNN kernels unless
 * `ATTNLAB_BLAS_KERNELS=matmul` (oneDNN's take the names of the loops they replace).
 *
 * @example
 * ```ts
 * import { blasOverrides, registerBlasBackend } from "./backend.ts";
 * try {
 *   registerBlasBackend();
 *   console.log(blasOverrides().includes("BatchMatMul")); // true
 * } catch (err) {
 *   console.log((err as Error).message); // no BLAS here
 * }
 * ```
 */
export function blasOverrides(): string[] {
  return [...overridden];
}

/**
 * Loads the BLAS library and registers the `blas` backend (once). Throws, saying how to
 * install OpenBLAS, when no library loads. Select it with `initBackend({ backend: "blas" })`.
 * `ATTNLAB_BLAS_KERNELS` (read here, once) picks the kernel set; with "all", oneDNN is loaded here too (when it
 * cannot be, one line on stderr says so and the backend keeps its JavaScript kernels).
 *
 * @example
 * ```ts
 * import { registerBlasBackend } from "./backend.ts";
 * try {
 *   console.log(registerBlasBackend().path.length > 0); // true
 * } catch (err) {
 *   console.log((err as Error).message); // no BLAS here
 * }
 * ```
 */
export function registerBlasBackend(): BlasLibrary {
  if (registered) return registered;
  const set = blasKernelSet();
  const blas = openBlas();
  // oneDNN only for "all"; when it cannot load, dnnl() says so once and the loops stand.
  const lib = set === "all" ? dnnl() : undefined;
  const sgemmMatMul = sgemmBatchMatMul(blas);
  // A library that does not say how many threads it runs (not OpenBLAS) is taken to run one per core.
  const blasThreads = blas.threads ?? navigator.hardwareConcurrency;
  const matMul = lib ? dnnlBatchMatMul(lib, sgemmMatMul, { blasThreads }) : sgemmMatMul;
  const own: Record<string, Kernel> = {
    ...(set === "matmul" ? {} : fastKernels({ dnnl: lib })),
    [tf.BatchMatMul]: matMul,
    [tf._FusedMatMul]: (args) => fusedMatMul(args, matMul),
  };
  tf.registerBackend(BLAS_BACKEND, () => new PoolingBackend(), 0);
  for (const config of tf.getKernelsForBackend("cpu")) {
    if (!(config.kernelName in own)) tf.registerKernel({ ...config, backendName: BLAS_BACKEND });
  }
  for (const [kernelName, kernel] of Object.entries(own)) {
    tf.registerKernel({ kernelName, backendName: BLAS_BACKEND, kernelFunc: kernel as unknown as tf.KernelFunc });
  }
  // Softmax's gradient through the fused kernel where the current backend has it; tfjs's own everywhere else.
  if (set !== "matmul") registerFusedGradients();
  overridden = Object.keys(own).sort();
  registeredDnnl = lib;
  registered = blas;
  return blas;
}
