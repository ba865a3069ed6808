/**
 * Imported first (before tests/helpers.ts, which starts the backend) by a suite that holds the blas backend's
 * JavaScript kernels to exact values: pins `ATTNLAB_BLAS_KERNELS=js` while the backend registers its kernels. The
 * suite calls {@linkcode releaseKernelPin} once its backend is up, so that later test modules get the default set.
 *
 * @module
 */

const before = Deno.env.get("ATTNLAB_BLAS_KERNELS");
if (before === undefined) Deno.env.set("ATTNLAB_BLAS_KERNELS", "js");

/** Puts `ATTNLAB_BLAS_KERNELS` back as it was before this module pinned it. */
export function releaseKernelPin(): void {
  if (before === undefined) Deno.env.delete("ATTNLAB_BLAS_KERNELS");
}
