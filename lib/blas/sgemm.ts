/**
 * Single-precision matrix multiply from the system BLAS through Deno FFI.
 *
 * The library is `ATTNLAB_BLAS` when set, else `libopenblas.so.0` on Linux and the
 * Accelerate framework on macOS.
 *
 * @module
 */

import { envString } from "../env.ts";

/** The arguments of an sgemm: C [m, n] = α op(A) [m, k] · op(B) [k, n] + β C, row-major, leading dimensions as in CBLAS. */
export interface SgemmArgs {
  transA: boolean;
  transB: boolean;
  m: number;
  n: number;
  k: number;
  a: Float32Array;
  lda: number;
  b: Float32Array;
  ldb: number;
  c: Float32Array;
  ldc: number;
  alpha?: number;
  beta?: number;
}

/** C = alpha op(A) op(B) + beta C on row-major matrices, with leading dimensions as in CBLAS. */
export type Sgemm = (args: SgemmArgs) => void;

/** A loaded BLAS: where it came from, its sgemm, and its thread count where it says. */
export interface BlasLibrary {
  path: string;
  sgemm: Sgemm;
  /**
   * The threads its sgemm may use (`openblas_get_num_threads`: `OPENBLAS_NUM_THREADS`, else the cores); undefined
   * for a library that does not say (Accelerate, another CBLAS).
   */
  threads?: number;
}

const ROW_MAJOR = 101;
const NO_TRANS = 111;
const TRANS = 112;

/** The install hint printed when no BLAS library can be loaded. */
export const BLAS_INSTALL_HINT = "install OpenBLAS (`apt-get install libopenblas0` on Debian/Ubuntu) " +
  "or set ATTNLAB_BLAS to the path of a CBLAS library such as libopenblas.so";

/**
 * The library paths tried, in order: `ATTNLAB_BLAS` alone when set, else the platform's defaults.
 *
 * @example
 * ```ts
 * import { blasCandidates } from "./sgemm.ts";
 * console.log(blasCandidates().length > 0); // true
 * ```
 */
export function blasCandidates(): string[] {
  const forced = envString("ATTNLAB_BLAS");
  if (forced !== undefined) return [forced];
  if (Deno.build.os === "darwin") return ["/System/Library/Frameworks/Accelerate.framework/Accelerate"];
  return ["libopenblas.so.0", "libopenblas.so", "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"];
}

/**
 * Opens the first BLAS library that loads and exposes `cblas_sgemm`; throws with every reason and the install hint.
 *
 * @example
 * ```ts
 * import { openBlas } from "./sgemm.ts";
 * try {
 *   const blas = openBlas();
 *   const c = new Float32Array(1);
 *   blas.sgemm({ transA: false, transB: false, m: 1, n: 1, k: 2, a: new Float32Array([1, 2]), lda: 2, b: new Float32Array([3, 4]), ldb: 1, c, ldc: 1 });
 *   console.log(c[0]); // 11
 *   console.log(blas.threads === undefined || blas.threads >= 1); // true
 * } catch (err) {
 *   console.log((err as Error).message); // no BLAS on this machine
 * }
 * ```
 */
export function openBlas(): BlasLibrary {
  const reasons: string[] = [];
  for (const path of blasCandidates()) {
    try {
      const lib = Deno.dlopen(path, {
        cblas_sgemm: {
          parameters: [
            "i32",
            "i32",
            "i32",
            "i32",
            "i32",
            "i32",
            "f32",
            "buffer",
            "i32",
            "buffer",
            "i32",
            "f32",
            "buffer",
            "i32",
          ],
          result: "void",
        },
        // OpenBLAS only: any other CBLAS loads without it.
        openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
      });
      const raw = lib.symbols.cblas_sgemm;
      const sgemm: Sgemm = ({ transA, transB, m, n, k, a, lda, b, ldb, c, ldc, alpha = 1, beta = 0 }) =>
        raw(
          ROW_MAJOR,
          transA ? TRANS : NO_TRANS,
          transB ? TRANS : NO_TRANS,
          m,
          n,
          k,
          alpha,
          a,
          lda,
          b,
          ldb,
          beta,
          c,
          ldc,
        );
      const threads = lib.symbols.openblas_get_num_threads?.() ?? undefined;
      return { path, sgemm, threads };
    } catch (err) {
      reasons.push(`${path}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  throw new Error(`no BLAS library could be loaded (${reasons.join("; ")}); ${BLAS_INSTALL_HINT}`);
}

let systemSgemm: Sgemm | undefined;

/**
 * The sgemm a set of kernels computes its products with: `options.sgemm` when given, else the system BLAS's
 * ({@linkcode openBlas}, the library the backend loads), opened at the first call rather than here, so registering
 * kernels loads nothing, and once per process. Throws a TypeError naming `owner` when options is not `{ sgemm? }`.
 *
 * @example
 * ```ts
 * import { sgemmOf, type Sgemm } from "./sgemm.ts";
 * const mine: Sgemm = ({ m, n, c }) => c.fill(0, 0, m * n);
 * console.log(sgemmOf("kernels", { sgemm: mine })() === mine); // true
 * ```
 */
export function sgemmOf(owner: string, options: { sgemm?: Sgemm }): () => Sgemm {
  if (options === null || typeof options !== "object" || !["undefined", "function"].includes(typeof options.sgemm)) {
    throw new TypeError(`${owner}: options must be { sgemm? }, sgemm a function of SgemmArgs`);
  }
  const given = options.sgemm;
  return () => given ?? (systemSgemm ??= openBlas().sgemm);
}
