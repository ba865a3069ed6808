/**
 * The `blas` backend: TensorFlow.js's cpu backend with matrix multiplies computed by the system BLAS,
 * and the hot elementwise, reduction, softmax and layout kernels as typed-array loops or, on large inputs, oneDNN's
 * vectorised primitives through FFI when libdnnl2 is installed (dnnl.ts, dnnl_kernels.ts; see backend.ts;
 * `ATTNLAB_BLAS_KERNELS=js` leaves oneDNN out, `matmul` keeps only the matmuls). The layout kernels (layout.ts) are Transpose,
 * PadV2, GatherV2, Slice, SplitV and Concat; the fused kernels (fused.ts) silu(a) · b, SimpleRMSNorm, elu(x) + 1,
 * Softmax's gradient, the AdamW update of all variables and the gradients' squared norms (fused_adam.ts, the
 * composite's bits) and softmax cross-entropy (fused_loss.ts, in double precision, rounded once; with oneDNN, from its
 * softmax, within 2e-6), and causal linear attention tril(QKᵀ)V chunkwise by sgemm with its gradient as three more
 * causal products (fused_causal.ts), and cosFormer's features [relu(x) · sin, relu(x) · cos] (fused_features.ts); kernel
 * outputs
 * come from a pool of recycled arrays (pool.ts).
 *
 * @module
 */

export { BLAS_BACKEND, blasDnnl, blasOverrides, registerBlasBackend, sgemmBatchMatMul } from "./backend.ts";
export { DNNL_MATMUL_RULE, matMulLayout, prefersDnnlMatMul } from "./dnnl_kernels.ts";
export { BLAS_KERNEL_SETS, type BlasKernelSet, blasKernelSet, fastKernels } from "./kernels.ts";
export { eluPlusOne, registerFusedGradients, siluGate, srmsNorm } from "./fused.ts";
export { adamwUpdate, sumsOfSquares } from "./fused_adam.ts";
export { CAUSAL_CHUNK_SIZE, causalAttention, causalProduct, causalProductWithState, withOnes } from "./fused_causal.ts";
export { softmaxCrossEntropy } from "./fused_loss.ts";
export { scaledReluPair } from "./fused_features.ts";
export { dnnl, DNNL_INSTALL_HINT, type DnnlLibrary, openDnnl } from "./dnnl.ts";
export { poolStats } from "./pool.ts";
export { BLAS_INSTALL_HINT, blasCandidates, type BlasLibrary, openBlas, type Sgemm } from "./sgemm.ts";
