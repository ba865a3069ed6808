/**
 * The `blas` TensorFlow.js backend: the cpu backend, with `BatchMatMul` and `_FusedMatMul`
 * computed by `cblas_sgemm` from the system BLAS. Gradients need nothing extra: tfjs writes
 * matmul gradients as matmuls, which land here too.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import { type BlasLibrary, openBlas, type Sgemm } from "./sgemm.ts";

/** The backend's registered name. */
export const BLAS_BACKEND = "blas";

type TensorInfo = tf.TensorInfo;
interface KernelArgs {
  inputs: Record<string, TensorInfo | undefined>;
  backend: MathBackendCPU;
  attrs?: Record<string, unknown>;
}

const OVERRIDDEN = new Set<string>([tf.BatchMatMul, tf._FusedMatMul]);

function cpuKernel(name: string) {
  const kernel = tf.getKernel(name, "cpu");
  if (!kernel) throw new Error(`blas backend: the cpu kernel ${name} is not registered; import @tensorflow/tfjs first`);
  return kernel.kernelFunc as unknown as (args: KernelArgs) => TensorInfo;
}

function values(backend: MathBackendCPU, info: TensorInfo): Float32Array {
  return backend.data.get(info.dataId)!.values as Float32Array;
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
  const out = new Float32Array(batch * m * n);
  if (out.length > 0 && k > 0) {
    const av = values(backend, a);
    const bv = values(backend, b);
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

const ACTIVATIONS: Record<string, string> = {
  linear: tf.Identity,
  relu: tf.Relu,
  relu6: tf.Relu6,
  elu: tf.Elu,
  sigmoid: tf.Sigmoid,
  leakyrelu: tf.LeakyRelu,
  prelu: tf.Prelu,
};

function fusedMatMul(args: KernelArgs, sgemm: Sgemm): TensorInfo {
  const { backend } = args;
  const { bias, preluActivationWeights } = args.inputs;
  const attrs = args.attrs ?? {};
  let current = batchMatMul(
    {
      inputs: { a: args.inputs.a, b: args.inputs.b },
      backend,
      attrs: { transposeA: attrs.transposeA, transposeB: attrs.transposeB },
    },
    sgemm,
  );
  const replace = (next: TensorInfo) => {
    backend.disposeIntermediateTensorInfo(current);
    current = next;
  };
  if (bias) replace(cpuKernel(tf.Add)({ inputs: { a: current, b: bias }, backend }));
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
    replace(cpuKernel(name)({ inputs, backend, attrs: { alpha: attrs.leakyreluAlpha } }));
  }
  return current;
}

let registered: BlasLibrary | undefined;

/**
 * Loads the BLAS library and registers the `blas` backend (once). Throws, saying how to
 * install OpenBLAS, when no library loads. Select it with `initBackend({ backend: "blas" })`.
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
  const blas = openBlas();
  tf.registerBackend(BLAS_BACKEND, () => new MathBackendCPU(), 0);
  for (const config of tf.getKernelsForBackend("cpu")) {
    if (!OVERRIDDEN.has(config.kernelName)) tf.registerKernel({ ...config, backendName: BLAS_BACKEND });
  }
  const kernel = (fn: (args: KernelArgs, sgemm: Sgemm) => TensorInfo) => (args: unknown) =>
    fn(args as KernelArgs, blas.sgemm);
  tf.registerKernel({
    kernelName: tf.BatchMatMul,
    backendName: BLAS_BACKEND,
    kernelFunc: kernel(batchMatMul) as tf.KernelFunc,
  });
  tf.registerKernel({
    kernelName: tf._FusedMatMul,
    backendName: BLAS_BACKEND,
    kernelFunc: kernel(fusedMatMul) as tf.KernelFunc,
  });
  registered = blas;
  return blas;
}
