/**
 * The `blas` backend: TensorFlow.js's cpu backend with matrix multiplies computed by the system BLAS,
 * and the hot elementwise, reduction, softmax and layout kernels as typed-array loops (see backend.ts;
 * `ATTNLAB_BLAS_KERNELS=matmul` keeps only the matmuls). The layout kernels (layout.ts) are Transpose,
 * PadV2, GatherV2, Slice and SplitV.
 *
 * @module
 */

export { BLAS_BACKEND, blasOverrides, registerBlasBackend } from "./backend.ts";
export { BLAS_KERNEL_SETS, type BlasKernelSet, blasKernelSet, fastKernels } from "./kernels.ts";
export { BLAS_INSTALL_HINT, blasCandidates, type BlasLibrary, openBlas, type Sgemm } from "./sgemm.ts";
