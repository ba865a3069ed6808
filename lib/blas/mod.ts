/**
 * The `blas` backend: TensorFlow.js's cpu backend with matrix multiplies computed by the system BLAS.
 *
 * @module
 */

export { BLAS_BACKEND, registerBlasBackend } from "./backend.ts";
export { BLAS_INSTALL_HINT, blasCandidates, type BlasLibrary, openBlas, type Sgemm } from "./sgemm.ts";
