/**
 * The parts of oneDNN 2.6's C ABI (libdnnl.so.2, x86-64 Linux) that lib/blas/dnnl.ts uses: struct sizes, enum values
 * and argument indices. Internal to lib/blas.
 *
 * The values were read from Debian's libdnnl-dev 2.6.3 headers (/usr/include/oneapi/dnnl/dnnl_types.h) and checked
 * with a C program compiled against them (`printf("%zu", sizeof(dnnl_eltwise_desc_t))` and so on). In 2.x the
 * operation descriptors and `dnnl_memory_desc_t` are plain structs the caller allocates and the `*_desc_init`
 * functions fill; oneDNN 3.x replaced them with opaque handles, so this file fits the 2.x series only (libdnnl.so.2).
 *
 * @module
 */

/** Bytes of `dnnl_memory_desc_t` (ndims, dims[12], data_type, padded dims and offsets, format descriptor, extra). */
export const MEMORY_DESC_BYTES = 696;

/**
 * Bytes reserved for any operation descriptor used here: the largest of `dnnl_eltwise_desc_t` (1416),
 * `dnnl_softmax_v2_desc_t` (2800), `dnnl_binary_desc_t` (2096), `dnnl_reduction_desc_t` (1408) and
 * `dnnl_matmul_desc_t` (2800), rounded up.
 */
export const OP_DESC_BYTES = 4096;

/** Bytes of one `dnnl_exec_arg_t` ({ int arg; dnnl_memory_t memory; }: the pointer at offset 8). */
export const EXEC_ARG_BYTES = 16;

/** `DNNL_MAX_NDIMS`: the most dimensions a memory descriptor has. */
export const MAX_NDIMS = 12;

/** `dnnl_status_t` values, by number, for error messages. */
export const STATUS_NAMES: Record<number, string> = {
  0: "dnnl_success",
  1: "dnnl_out_of_memory",
  2: "dnnl_invalid_arguments",
  3: "dnnl_unimplemented",
  4: "dnnl_iterator_ends",
  5: "dnnl_runtime_error",
  6: "dnnl_not_required",
};

/** `dnnl_unimplemented`: no implementation for this descriptor (the caller falls back). */
export const STATUS_UNIMPLEMENTED = 3;

/** `dnnl_f32`. */
export const DATA_TYPE_F32 = 3;
/** `dnnl_cpu`. */
export const ENGINE_CPU = 1;
/** `dnnl_stream_default_flags`. */
export const STREAM_DEFAULT_FLAGS = 1;
/** `dnnl_forward_training`. */
export const PROP_FORWARD_TRAINING = 64;
/** `dnnl_forward_inference`. */
export const PROP_FORWARD_INFERENCE = 96;
/** `dnnl_query_impl_info_str`: the implementation's name, such as "jit:avx2" or "ref:any". */
export const QUERY_IMPL_INFO_STR = 8;

/** `dnnl_alg_kind_t` values of the eltwise algorithms. */
export const ELTWISE_ALG = {
  relu: 31,
  tanh: 47,
  elu: 63,
  square: 79,
  abs: 95,
  sqrt: 111,
  linear: 127,
  logistic: 175,
  exp: 191,
  gelu_tanh: 207,
  gelu_erf: 48,
  swish: 223,
  log: 239,
  pow: 32,
  relu_use_dst_for_bwd: 256,
  tanh_use_dst_for_bwd: 257,
  elu_use_dst_for_bwd: 258,
  sqrt_use_dst_for_bwd: 259,
  logistic_use_dst_for_bwd: 260,
  exp_use_dst_for_bwd: 261,
} as const;

/** `dnnl_alg_kind_t` values of the binary algorithms. */
export const BINARY_ALG = { add: 131056, mul: 131057, max: 131058, min: 131059, div: 131060, sub: 131061 } as const;

/** `dnnl_alg_kind_t` values of the reduction algorithms. */
export const REDUCTION_ALG = { max: 196594, min: 196595, sum: 196596, mean: 196598 } as const;

/** `dnnl_softmax_accurate`. */
export const SOFTMAX_ACCURATE = 196608;

/**
 * `DNNL_ARG_*` indices; `postOp0Src1` is `DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1` (16384 · 1 | 2), the
 * second operand of a first, binary post-op. A matmul reads `src` (A) and `weights` (B) and writes `dst`.
 */
export const ARG = {
  src: 1,
  src1: 2,
  dst: 17,
  weights: 33,
  diffSrc: 129,
  diffDst: 145,
  postOp0Src1: 16386,
} as const;
