/**
 * oneDNN (Intel's Deep Neural Network Library, Debian's `libdnnl2` 2.6) through Deno FFI: its JIT-vectorised
 * eltwise, softmax, binary, reduction, reorder (transpose) and batched matmul primitives and its sgemm, on float32
 * arrays in row-major order, for the blas backend's kernels (lib/blas/dnnl_kernels.ts, lib/blas/backend.ts).
 *
 * - {@linkcode openDnnl} loads the library and returns a {@linkcode DnnlLibrary}; {@linkcode dnnl} does so once per
 *   process and returns undefined (after saying once on stderr how to install it) when it cannot.
 * - One CPU engine and one stream are created at load. A primitive is built the first time an operation meets a
 *   shape and kept, with its memory objects, in a cache keyed by operation, attributes and shape (at most
 *   {@linkcode DNNL_CACHE_ENTRIES}, least recently used evicted first). A call then costs a data-handle update per
 *   operand, one `dnnl_primitive_execute` and one `dnnl_stream_wait`: no allocation, nothing freed.
 * - Each operation returns false, computing nothing, when oneDNN has no optimised implementation for it (only a
 *   reference one, "ref:any", which is slower than the JavaScript loops, or none at all); the caller then computes it
 *   itself. Any other failure throws an Error naming the oneDNN call and its status.
 *
 * **Threads.** The Debian build runs its primitives in OpenMP (libgomp). `OMP_NUM_THREADS`, when set, decides the
 * thread count as usual. Otherwise {@linkcode openDnnl} calls `omp_set_num_threads(1)` from libgomp before any
 * primitive is built: one thread. Measured on the 2-core machine beside other work, a training step (4 layers, d 64,
 * 16 × 128) took 2–6× longer with OpenMP's default of two threads than with one (its barrier waits for a thread that
 * shares its core with OpenBLAS's threads or another process; `OMP_WAIT_POLICY=passive` helped only in part), while
 * one thread already gains the vector units. The training workers, which set `OPENBLAS_NUM_THREADS=1` and run two
 * at a time, get one thread either way. `OMP_NUM_THREADS=2` tries both cores.
 *
 * The library is `ATTNLAB_DNNL` when set, else `libdnnl.so.2`.
 *
 * @module
 */

import {
  ARG,
  BINARY_ALG,
  DATA_TYPE_F32,
  ELTWISE_ALG,
  ENGINE_CPU,
  EXEC_ARG_BYTES,
  MAX_NDIMS,
  MEMORY_DESC_BYTES,
  OP_DESC_BYTES,
  PROP_FORWARD_TRAINING,
  QUERY_IMPL_INFO_STR,
  REDUCTION_ALG,
  SOFTMAX_ACCURATE,
  STATUS_NAMES,
  STATUS_UNIMPLEMENTED,
  STREAM_DEFAULT_FLAGS,
} from "./_dnnl_abi.ts";
import { envString } from "../env.ts";
import type { SgemmArgs } from "./sgemm.ts";

/** The install hint printed when oneDNN cannot be loaded. */
export const DNNL_INSTALL_HINT = "install oneDNN (`apt-get install libdnnl2` on Debian/Ubuntu) " +
  "or set ATTNLAB_DNNL to the path of libdnnl.so.2";

/** The most primitives kept at once; past it the least recently used is destroyed. */
export const DNNL_CACHE_ENTRIES = 512;

/** Eltwise operations forward: y = f(x), with oneDNN's α and β where the algorithm has them. */
export type DnnlEltwise =
  | "relu"
  | "tanh"
  | "elu"
  | "square"
  | "abs"
  | "sqrt"
  | "linear"
  | "logistic"
  | "exp"
  | "gelu_tanh"
  | "gelu_erf"
  | "swish"
  | "log"
  | "pow";

/**
 * Eltwise gradients: those named `*_use_dst_for_bwd` read the forward output y (dx = dy · f′ written in terms of y),
 * the others the forward input x.
 */
export type DnnlEltwiseBackward =
  | DnnlEltwise
  | "relu_use_dst_for_bwd"
  | "tanh_use_dst_for_bwd"
  | "elu_use_dst_for_bwd"
  | "sqrt_use_dst_for_bwd"
  | "logistic_use_dst_for_bwd"
  | "exp_use_dst_for_bwd";

/** Binary operations: out = a ∘ b, b broadcast along the axes where its dims are 1. */
export type DnnlBinary = keyof typeof BINARY_ALG;

/** The operands of {@linkcode DnnlLibrary.binary}. */
export interface DnnlBinaryArrays {
  a: Float32Array;
  aDims: number[];
  b: Float32Array;
  bDims: number[];
  out: Float32Array;
  /** A second operation applied to the result as a oneDNN post-op: out = (a ∘ b) ∘′ c. */
  then?: { op: DnnlBinary; c: Float32Array; cDims: number[] };
}

/** The arguments of {@linkcode DnnlLibrary.sgemm}: those of an sgemm (lib/blas/sgemm.ts). */
export type DnnlSgemmArgs = SgemmArgs;

/**
 * The layout of {@linkcode DnnlLibrary.matmul}: out [...batch, m, n] = op(A) [...aBatch, m, k] · op(B) [...bBatch, k,
 * n], with A stored row-major as [...aBatch, m, k], or as [...aBatch, k, m] when `transA` (and B as [...bBatch, k, n],
 * or [...bBatch, n, k] when `transB`): a transpose is a choice of strides, never a copy.
 */
export interface DnnlMatMulDims {
  /** A's batch dims (default none); of b's rank, each equal to b's or 1 (broadcast). */
  aBatch?: number[];
  /** B's batch dims (default none), as aBatch. */
  bBatch?: number[];
  m: number;
  n: number;
  k: number;
  transA?: boolean;
  transB?: boolean;
}

/** Reductions: out = reduce(x) along the axes where out's dims are 1. */
export type DnnlReduction = keyof typeof REDUCTION_ALG;

/** A loaded oneDNN. Arrays are float32, row-major and must not overlap unless said. */
export interface DnnlLibrary {
  /** The library path that loaded. */
  path: string;
  /** Its version, e.g. "2.6.3". */
  version: string;
  /** The OpenMP threads its primitives use. */
  threads: number;
  /**
   * out = f(x) elementwise over x.length elements (out may be x); α and β as oneDNN defines them (elu: α; linear:
   * α·x + β; pow: α·x^β; swish: x·sigmoid(α·x)). False when oneDNN has no optimised implementation.
   */
  eltwise(op: DnnlEltwise, arrays: { x: Float32Array; out: Float32Array; alpha?: number; beta?: number }): boolean;
  /**
   * dx = dy · f′, f′ from `data`: the forward output y for the `*_use_dst_for_bwd` algorithms, else the forward
   * input x; all three of one length (dx may be dy). False as above.
   */
  eltwiseBackward(
    op: DnnlEltwiseBackward,
    arrays: { dy: Float32Array; data: Float32Array; dx: Float32Array; alpha?: number; beta?: number },
  ): boolean;
  /**
   * out = x transposed: out's axis i is x's axis perm[i], x of `shape` (row-major), by a oneDNN reorder. False as
   * above.
   */
  transpose(arrays: { x: Float32Array; out: Float32Array }, layout: { shape: number[]; perm: number[] }): boolean;
  /** Softmax over the last axis of x seen as [rows, n] (out may be x). False as above. */
  softmax(arrays: { x: Float32Array; out: Float32Array }, dims: { rows: number; n: number }): boolean;
  /** Softmax's gradient over the last axis: dx = y · (dy − Σ dy · y), all seen as [rows, n]. False as above. */
  softmaxBackward(
    arrays: { dy: Float32Array; y: Float32Array; dx: Float32Array },
    dims: { rows: number; n: number },
  ): boolean;
  /**
   * out = a ∘ b, or (a ∘ b) ∘′ c with `then`, with shapes given as dims of one rank (at most 12): a's dims are
   * out's, b's and c's are out's or 1 (broadcast). out may be a, not b or c. False as above.
   */
  binary(op: DnnlBinary, arrays: DnnlBinaryArrays): boolean;
  /** out = reduce(x) over the axes where outDims is 1 and xDims is not (ranks equal, at most 12). False as above. */
  reduction(
    op: DnnlReduction,
    arrays: { x: Float32Array; xDims: number[]; out: Float32Array; outDims: number[] },
  ): boolean;
  /**
   * C = α op(A) op(B) + β C on row-major matrices (`dnnl_sgemm`, with CBLAS's leading dimensions; α = 1 and β = 0
   * unless given): the blas backend uses it for matrix–vector products (row and column sums against a vector of ones).
   */
  sgemm(args: DnnlSgemmArgs): void;
  /**
   * out = op(A) · op(B), batched, with batch broadcasting (see {@linkcode DnnlMatMulDims}; out's batch dims are the
   * larger of a's and b's, out is dense and row-major) by one oneDNN matmul primitive: every matrix of the batch in one
   * call. At most 10 batch dims. False, computing nothing, when oneDNN has no optimised implementation of the layout.
   */
  matmul(arrays: { a: Float32Array; b: Float32Array; out: Float32Array }, dims: DnnlMatMulDims): boolean;
  /** By operation family ("eltwise exp", "softmax", "binary add", ...), the implementation oneDNN last picked for it. */
  implementations(): Record<string, string>;
  /** The primitives now cached. */
  cached(): number;
}

const SYMBOLS = {
  dnnl_version: { parameters: [], result: "pointer" },
  dnnl_engine_create: { parameters: ["buffer", "i32", "usize"], result: "i32" },
  dnnl_stream_create: { parameters: ["buffer", "pointer", "u32"], result: "i32" },
  dnnl_memory_desc_init_by_strides: { parameters: ["buffer", "i32", "buffer", "i32", "buffer"], result: "i32" },
  dnnl_eltwise_forward_desc_init: { parameters: ["buffer", "i32", "i32", "buffer", "f32", "f32"], result: "i32" },
  dnnl_eltwise_backward_desc_init: { parameters: ["buffer", "i32", "buffer", "buffer", "f32", "f32"], result: "i32" },
  dnnl_softmax_v2_forward_desc_init: {
    parameters: ["buffer", "i32", "i32", "buffer", "buffer", "i32"],
    result: "i32",
  },
  dnnl_softmax_v2_backward_desc_init: {
    parameters: ["buffer", "i32", "buffer", "buffer", "buffer", "i32"],
    result: "i32",
  },
  dnnl_binary_desc_init: { parameters: ["buffer", "i32", "buffer", "buffer", "buffer"], result: "i32" },
  dnnl_reduction_desc_init: { parameters: ["buffer", "i32", "buffer", "buffer", "f32", "f32"], result: "i32" },
  dnnl_matmul_desc_init: { parameters: ["buffer", "buffer", "buffer", "pointer", "buffer"], result: "i32" },
  dnnl_primitive_desc_create: { parameters: ["buffer", "buffer", "pointer", "pointer", "pointer"], result: "i32" },
  dnnl_primitive_desc_query: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },
  dnnl_primitive_desc_destroy: { parameters: ["pointer"], result: "i32" },
  dnnl_primitive_create: { parameters: ["buffer", "pointer"], result: "i32" },
  dnnl_primitive_destroy: { parameters: ["pointer"], result: "i32" },
  dnnl_memory_create: { parameters: ["buffer", "buffer", "pointer", "pointer"], result: "i32" },
  dnnl_memory_set_data_handle: { parameters: ["pointer", "buffer"], result: "i32" },
  dnnl_memory_destroy: { parameters: ["pointer"], result: "i32" },
  dnnl_primitive_execute: { parameters: ["pointer", "pointer", "i32", "buffer"], result: "i32" },
  dnnl_stream_wait: { parameters: ["pointer"], result: "i32" },
  dnnl_sgemm: {
    parameters: ["u8", "u8", "i64", "i64", "i64", "f32", "buffer", "i64", "buffer", "i64", "f32", "buffer", "i64"],
    result: "i32",
  },
  dnnl_reorder_primitive_desc_create: {
    parameters: ["buffer", "buffer", "pointer", "buffer", "pointer", "pointer"],
    result: "i32",
  },
  dnnl_primitive_attr_create: { parameters: ["buffer"], result: "i32" },
  dnnl_primitive_attr_destroy: { parameters: ["pointer"], result: "i32" },
  dnnl_primitive_attr_set_post_ops: { parameters: ["pointer", "pointer"], result: "i32" },
  dnnl_post_ops_create: { parameters: ["buffer"], result: "i32" },
  dnnl_post_ops_destroy: { parameters: ["pointer"], result: "i32" },
  dnnl_post_ops_append_binary: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
} as const;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** A built primitive with one memory object per operand, in the order its operands are passed to `run`. */
interface Primitive {
  primitive: Deno.PointerObject;
  memories: Deno.PointerObject[];
  /** The dnnl_exec_arg_t array. */
  args: Uint8Array;
  /** Per operand, whether the primitive writes it (copied back from a staging array). */
  writes: boolean[];
  /** Per operand, a staging array for operands small enough that V8 may keep them on its moving heap. */
  staging: (Float32Array | undefined)[];
}

/**
 * An operand in a primitive's description: its DNNL_ARG index, dims (with strides in elements, row-major unless
 * given), and whether the primitive writes it.
 */
interface Operand {
  arg: number;
  dims: number[];
  strides?: number[];
  writes: boolean;
}

// V8 keeps typed arrays of at most 64 bytes inside its garbage-collected heap, where a collection may move them
// between two FFI calls; operands that small are copied through an array of this length, which lives outside it.
const ON_HEAP_BYTES = 64;
const STAGING_LENGTH = 32;

/**
 * The library paths tried, in order: `ATTNLAB_DNNL` alone when set, else the platform's default.
 *
 * @example
 * ```ts
 * import { dnnlCandidates } from "./dnnl.ts";
 * console.log(dnnlCandidates().length > 0); // true
 * ```
 */
export function dnnlCandidates(): string[] {
  const forced = envString("ATTNLAB_DNNL");
  if (forced !== undefined) return [forced];
  if (Deno.build.os === "darwin") return ["libdnnl.2.dylib", "libdnnl.dylib"];
  return ["libdnnl.so.2", "/usr/lib/x86_64-linux-gnu/libdnnl.so.2"];
}

/**
 * The OpenMP thread count oneDNN is set to, from the environment: undefined (OpenMP's own reading) when
 * `OMP_NUM_THREADS` is set and not empty, else 1 (see the module notes for why).
 *
 * @example
 * ```ts
 * import { dnnlThreadRequest } from "./dnnl.ts";
 * console.log(dnnlThreadRequest({}), dnnlThreadRequest({ OMP_NUM_THREADS: "2" })); // 1 undefined
 * ```
 */
export function dnnlThreadRequest(env: Record<string, string | undefined>): number | undefined {
  if (env === null || typeof env !== "object") {
    throw new TypeError("dnnlThreadRequest: env must be an object of environment variables");
  }
  const omp = env.OMP_NUM_THREADS;
  return omp !== undefined && omp.trim() !== "" ? undefined : 1;
}

function setOpenMpThreads(request: number | undefined): number {
  // libgomp is loaded already (libdnnl links it); a second dlopen returns the same library.
  for (const path of ["libgomp.so.1", "libgomp.so", "libomp.so", "libiomp5.so"]) {
    let lib;
    try {
      lib = Deno.dlopen(path, {
        omp_set_num_threads: { parameters: ["i32"], result: "void" },
        omp_get_max_threads: { parameters: [], result: "i32" },
      });
    } catch {
      continue;
    }
    if (request !== undefined) lib.symbols.omp_set_num_threads(request);
    return lib.symbols.omp_get_max_threads();
  }
  return request ?? navigator.hardwareConcurrency;
}

/** Row-major strides of dims, or `given` as dnnl_dims_t. */
function denseStrides(dims: readonly number[], given?: readonly number[]): BigInt64Array {
  const strides = new BigInt64Array(MAX_NDIMS);
  if (given) {
    given.forEach((v, i) => strides[i] = BigInt(v));
    return strides;
  }
  let stride = 1;
  for (let i = dims.length - 1; i >= 0; i--) {
    strides[i] = BigInt(stride);
    stride *= dims[i];
  }
  return strides;
}

function product(dims: readonly number[]): number {
  let size = 1;
  for (const d of dims) size *= d;
  return size;
}

class Dnnl implements DnnlLibrary {
  readonly path: string;
  readonly version: string;
  readonly threads: number;
  #lib: Lib;
  #engine: Deno.PointerObject;
  #stream: Deno.PointerObject;
  // Key -> primitive, or null where oneDNN has no optimised implementation (remembered, not retried).
  #cache = new Map<string, Primitive | null>();
  #impls: Record<string, string> = {};
  #out = new BigUint64Array(1);

  constructor(path: string, lib: Lib, threads: number) {
    this.path = path;
    this.#lib = lib;
    this.threads = threads;
    const v = new Deno.UnsafePointerView(lib.dnnl_version()!);
    this.version = `${v.getInt32(0)}.${v.getInt32(4)}.${v.getInt32(8)}`;
    this.#check(lib.dnnl_engine_create(this.#out, ENGINE_CPU, 0n), "dnnl_engine_create");
    this.#engine = this.#pointer("dnnl_engine_create");
    this.#check(lib.dnnl_stream_create(this.#out, this.#engine, STREAM_DEFAULT_FLAGS), "dnnl_stream_create");
    this.#stream = this.#pointer("dnnl_stream_create");
  }

  #check(status: number, call: string): void {
    if (status !== 0) {
      throw new Error(`oneDNN: ${call} failed with ${STATUS_NAMES[status] ?? "an unknown status"} (${status})`);
    }
  }

  #pointer(call: string): Deno.PointerObject {
    const p = Deno.UnsafePointer.create(this.#out[0]);
    if (p === null) throw new Error(`oneDNN: ${call} returned a null handle`);
    return p;
  }

  #memoryDesc(dims: readonly number[], strides?: readonly number[]): Uint8Array {
    if (dims.length < 1 || dims.length > MAX_NDIMS) {
      throw new RangeError(`oneDNN: a memory descriptor takes 1 to ${MAX_NDIMS} dims, got [${dims}]`);
    }
    const md = new Uint8Array(MEMORY_DESC_BYTES);
    const d = new BigInt64Array(MAX_NDIMS);
    dims.forEach((v, i) => d[i] = BigInt(v));
    this.#check(
      this.#lib.dnnl_memory_desc_init_by_strides(md, dims.length, d, DATA_TYPE_F32, denseStrides(dims, strides)),
      "dnnl_memory_desc_init_by_strides",
    );
    return md;
  }

  /**
   * The primitive descriptor of `opDesc` (a backward one built against the forward `hint`), or null when oneDNN has
   * none or only a reference implementation.
   */
  #primitiveDesc(
    opDesc: Uint8Array,
    family: string,
    more: { hint?: Deno.PointerObject | null; attr?: Deno.PointerObject | null } = {},
  ): Deno.PointerObject | null {
    const status = this.#lib.dnnl_primitive_desc_create(
      this.#out,
      opDesc,
      more.attr ?? null,
      this.#engine,
      more.hint ?? null,
    );
    if (status === STATUS_UNIMPLEMENTED) return null;
    this.#check(status, `dnnl_primitive_desc_create (${family})`);
    const pd = this.#pointer("dnnl_primitive_desc_create");
    const name = this.#implementation(pd, family);
    if (name.startsWith("ref")) {
      this.#check(this.#lib.dnnl_primitive_desc_destroy(pd), "dnnl_primitive_desc_destroy");
      return null;
    }
    return pd;
  }

  /** The implementation's name ("jit:avx2", "ref:any", ...), recorded under `family`. */
  #implementation(pd: Deno.PointerObject, family: string): string {
    this.#check(
      this.#lib.dnnl_primitive_desc_query(pd, QUERY_IMPL_INFO_STR, 0, this.#out),
      "dnnl_primitive_desc_query (impl_info_str)",
    );
    const name = Deno.UnsafePointerView.getCString(this.#pointer("dnnl_primitive_desc_query"));
    this.#impls[family] = name;
    return name;
  }

  #build(pd: Deno.PointerObject, operands: Operand[]): Primitive {
    const lib = this.#lib;
    try {
      this.#check(lib.dnnl_primitive_create(this.#out, pd), "dnnl_primitive_create");
    } finally {
      this.#check(lib.dnnl_primitive_desc_destroy(pd), "dnnl_primitive_desc_destroy");
    }
    const primitive = this.#pointer("dnnl_primitive_create");
    const memories: Deno.PointerObject[] = [];
    const args = new Uint8Array(operands.length * EXEC_ARG_BYTES);
    const view = new DataView(args.buffer);
    operands.forEach(({ arg, dims, strides }, i) => {
      this.#check(
        lib.dnnl_memory_create(this.#out, this.#memoryDesc(dims, strides), this.#engine, null),
        "dnnl_memory_create",
      );
      const memory = this.#pointer("dnnl_memory_create");
      memories.push(memory);
      view.setInt32(i * EXEC_ARG_BYTES, arg, true);
      view.setBigUint64(i * EXEC_ARG_BYTES + 8, BigInt(Deno.UnsafePointer.value(memory)), true);
    });
    return {
      primitive,
      memories,
      args,
      writes: operands.map((o) => o.writes),
      staging: operands.map(() => undefined),
    };
  }

  #destroy(p: Primitive): void {
    this.#check(this.#lib.dnnl_primitive_destroy(p.primitive), "dnnl_primitive_destroy");
    for (const m of p.memories) this.#check(this.#lib.dnnl_memory_destroy(m), "dnnl_memory_destroy");
  }

  /** The cached primitive of `key`, built by `make` on a miss (null: no optimised implementation). */
  #get(key: string, make: () => Primitive | null): Primitive | null {
    const hit = this.#cache.get(key);
    if (hit !== undefined) {
      // Most recently used last, so that eviction takes the first.
      this.#cache.delete(key);
      this.#cache.set(key, hit);
      return hit;
    }
    const made = make();
    if (this.#cache.size >= DNNL_CACHE_ENTRIES) {
      const [oldKey, old] = this.#cache.entries().next().value!;
      this.#cache.delete(oldKey);
      if (old) this.#destroy(old);
    }
    this.#cache.set(key, made);
    return made;
  }

  #run(p: Primitive, arrays: Float32Array[]): void {
    const lib = this.#lib;
    for (let i = 0; i < arrays.length; i++) {
      let a = arrays[i];
      // Any other typed array would be read as float32 bytes, past its end where its elements are shorter.
      if (!(a instanceof Float32Array)) throw new TypeError(`oneDNN: operand ${i} must be a Float32Array`);
      if (a.byteLength <= ON_HEAP_BYTES) {
        const stage = p.staging[i] ??= new Float32Array(STAGING_LENGTH);
        if (!p.writes[i]) stage.set(a);
        a = stage;
      }
      this.#check(lib.dnnl_memory_set_data_handle(p.memories[i], a), "dnnl_memory_set_data_handle");
    }
    this.#check(lib.dnnl_primitive_execute(p.primitive, this.#stream, arrays.length, p.args), "dnnl_primitive_execute");
    this.#check(lib.dnnl_stream_wait(this.#stream), "dnnl_stream_wait");
    for (let i = 0; i < arrays.length; i++) {
      const a = arrays[i];
      if (p.writes[i] && a.byteLength <= ON_HEAP_BYTES) a.set(p.staging[i]!.subarray(0, a.length));
    }
  }

  eltwise(op: DnnlEltwise, arrays: { x: Float32Array; out: Float32Array; alpha?: number; beta?: number }): boolean {
    const { x, out, alpha = 0, beta = 0 } = arrays;
    const alg = ELTWISE_ALG[op];
    if (alg === undefined) throw new RangeError(`oneDNN eltwise: unknown op "${op}"`);
    const n = x.length;
    if (out.length !== n) throw new RangeError(`oneDNN eltwise: out has ${out.length} elements, x ${n}`);
    if (n === 0) return true;
    const p = this.#get(`e${alg}:${alpha}:${beta}:${n}`, () => {
      const pd = this.#primitiveDesc(this.#eltwiseForwardDesc(op, { n, alpha, beta }), `eltwise ${op}`);
      return pd && this.#build(pd, [{ arg: ARG.src, dims: [n], writes: false }, {
        arg: ARG.dst,
        dims: [n],
        writes: true,
      }]);
    });
    if (!p) return false;
    this.#run(p, [x, out]);
    return true;
  }

  eltwiseBackward(
    op: DnnlEltwiseBackward,
    arrays: { dy: Float32Array; data: Float32Array; dx: Float32Array; alpha?: number; beta?: number },
  ): boolean {
    const { dy, data: y, dx, alpha = 0, beta = 0 } = arrays;
    const alg = ELTWISE_ALG[op];
    if (alg === undefined) throw new RangeError(`oneDNN eltwiseBackward: unknown op "${op}"`);
    const n = y.length;
    if (dy.length !== n || dx.length !== n) {
      throw new RangeError(
        `oneDNN eltwiseBackward: dy, data and dx must have one length, got ${dy.length}, ${n}, ${dx.length}`,
      );
    }
    if (n === 0) return true;
    const p = this.#get(`eb${alg}:${alpha}:${beta}:${n}`, () => {
      const md = this.#memoryDesc([n]);
      const hint = this.#primitiveDesc(this.#eltwiseForwardDesc(op, { n, alpha, beta }), `eltwise ${op}`);
      if (!hint) return null;
      try {
        const desc = new Uint8Array(OP_DESC_BYTES);
        this.#check(
          this.#lib.dnnl_eltwise_backward_desc_init(desc, alg, md, md, alpha, beta),
          `dnnl_eltwise_backward_desc_init (${op})`,
        );
        const pd = this.#primitiveDesc(desc, `eltwise backward ${op}`, { hint });
        return pd && this.#build(pd, [
          { arg: ARG.diffDst, dims: [n], writes: false },
          { arg: op.endsWith("_use_dst_for_bwd") ? ARG.dst : ARG.src, dims: [n], writes: false },
          { arg: ARG.diffSrc, dims: [n], writes: true },
        ]);
      } finally {
        this.#check(this.#lib.dnnl_primitive_desc_destroy(hint), "dnnl_primitive_desc_destroy");
      }
    });
    if (!p) return false;
    this.#run(p, [dy, y, dx]);
    return true;
  }

  /** The forward eltwise descriptor of `op` over n elements: the primitive itself, or the backward's hint. */
  #eltwiseForwardDesc(
    op: DnnlEltwise | DnnlEltwiseBackward,
    o: { n: number; alpha: number; beta: number },
  ): Uint8Array {
    const desc = new Uint8Array(OP_DESC_BYTES);
    this.#check(
      this.#lib.dnnl_eltwise_forward_desc_init(
        desc,
        PROP_FORWARD_TRAINING,
        ELTWISE_ALG[op],
        this.#memoryDesc([o.n]),
        o.alpha,
        o.beta,
      ),
      `dnnl_eltwise_forward_desc_init (${op})`,
    );
    return desc;
  }

  #softmaxForwardDesc(dims: number[]): Uint8Array {
    const md = this.#memoryDesc(dims);
    const desc = new Uint8Array(OP_DESC_BYTES);
    this.#check(
      this.#lib.dnnl_softmax_v2_forward_desc_init(desc, PROP_FORWARD_TRAINING, SOFTMAX_ACCURATE, md, md, 1),
      "dnnl_softmax_v2_forward_desc_init",
    );
    return desc;
  }

  softmax(arrays: { x: Float32Array; out: Float32Array }, dims: { rows: number; n: number }): boolean {
    const { x, out } = arrays;
    const { rows, n } = dims;
    if (x.length !== rows * n || out.length !== rows * n) {
      throw new RangeError(`oneDNN softmax: x and out must have rows · n = ${rows * n} elements`);
    }
    if (rows * n === 0) return true;
    const p = this.#get(`s${rows}:${n}`, () => {
      const pd = this.#primitiveDesc(this.#softmaxForwardDesc([rows, n]), "softmax");
      return pd && this.#build(pd, [
        { arg: ARG.src, dims: [rows, n], writes: false },
        { arg: ARG.dst, dims: [rows, n], writes: true },
      ]);
    });
    if (!p) return false;
    this.#run(p, [x, out]);
    return true;
  }

  softmaxBackward(
    arrays: { dy: Float32Array; y: Float32Array; dx: Float32Array },
    dims: { rows: number; n: number },
  ): boolean {
    const { dy, y, dx } = arrays;
    const { rows, n } = dims;
    const size = rows * n;
    if (dy.length !== size || y.length !== size || dx.length !== size) {
      throw new RangeError(`oneDNN softmaxBackward: dy, y and dx must have rows · n = ${size} elements`);
    }
    if (size === 0) return true;
    const p = this.#get(`sb${rows}:${n}`, () => {
      const hint = this.#primitiveDesc(this.#softmaxForwardDesc([rows, n]), "softmax");
      if (!hint) return null;
      try {
        const md = this.#memoryDesc([rows, n]);
        const desc = new Uint8Array(OP_DESC_BYTES);
        this.#check(
          this.#lib.dnnl_softmax_v2_backward_desc_init(desc, SOFTMAX_ACCURATE, md, md, md, 1),
          "dnnl_softmax_v2_backward_desc_init",
        );
        const pd = this.#primitiveDesc(desc, "softmax backward", { hint });
        return pd && this.#build(pd, [
          { arg: ARG.diffDst, dims: [rows, n], writes: false },
          { arg: ARG.dst, dims: [rows, n], writes: false },
          { arg: ARG.diffSrc, dims: [rows, n], writes: true },
        ]);
      } finally {
        this.#check(this.#lib.dnnl_primitive_desc_destroy(hint), "dnnl_primitive_desc_destroy");
      }
    });
    if (!p) return false;
    this.#run(p, [dy, y, dx]);
    return true;
  }

  binary(op: DnnlBinary, arrays: DnnlBinaryArrays): boolean {
    const { a, aDims, b, bDims, out, then } = arrays;
    const alg = BINARY_ALG[op];
    if (alg === undefined) throw new RangeError(`oneDNN binary: unknown op "${op}"`);
    const fits = (dims: number[]) => dims.length === aDims.length && dims.every((d, i) => d === aDims[i] || d === 1);
    if (!fits(bDims) || (then && !fits(then.cDims))) {
      throw new RangeError(`oneDNN binary: b's and c's dims must equal a's [${aDims}] or be 1, rank for rank`);
    }
    const size = product(aDims);
    if (
      a.length !== size || out.length !== size || b.length !== product(bDims) ||
      (then && then.c.length !== product(then.cDims))
    ) {
      throw new RangeError(`oneDNN binary: array lengths do not fit the dims [${aDims}], [${bDims}]`);
    }
    if (size === 0) return true;
    const thenAlg = then ? BINARY_ALG[then.op] : 0;
    if (thenAlg === undefined) throw new RangeError(`oneDNN binary: unknown post-op "${then!.op}"`);
    const key = `b${alg}:${aDims}:${bDims}` + (then ? `:${thenAlg}:${then.cDims}` : "");
    const p = this.#get(key, () => {
      const lib = this.#lib;
      const mdA = this.#memoryDesc(aDims);
      const desc = new Uint8Array(OP_DESC_BYTES);
      this.#check(
        lib.dnnl_binary_desc_init(desc, alg, mdA, this.#memoryDesc(bDims), mdA),
        `dnnl_binary_desc_init (${op})`,
      );
      const operands: Operand[] = [
        { arg: ARG.src, dims: aDims, writes: false },
        { arg: ARG.src1, dims: bDims, writes: false },
        { arg: ARG.dst, dims: aDims, writes: true },
      ];
      if (!then) {
        const pd = this.#primitiveDesc(desc, `binary ${op}`);
        return pd && this.#build(pd, operands);
      }
      this.#check(lib.dnnl_post_ops_create(this.#out), "dnnl_post_ops_create");
      const postOps = this.#pointer("dnnl_post_ops_create");
      this.#check(lib.dnnl_primitive_attr_create(this.#out), "dnnl_primitive_attr_create");
      const attr = this.#pointer("dnnl_primitive_attr_create");
      try {
        this.#check(
          lib.dnnl_post_ops_append_binary(postOps, thenAlg, this.#memoryDesc(then.cDims)),
          "dnnl_post_ops_append_binary",
        );
        this.#check(lib.dnnl_primitive_attr_set_post_ops(attr, postOps), "dnnl_primitive_attr_set_post_ops");
        const pd = this.#primitiveDesc(desc, `binary ${op} then ${then.op}`, { attr });
        return pd && this.#build(pd, [...operands, { arg: ARG.postOp0Src1, dims: then.cDims, writes: false }]);
      } finally {
        this.#check(lib.dnnl_primitive_attr_destroy(attr), "dnnl_primitive_attr_destroy");
        this.#check(lib.dnnl_post_ops_destroy(postOps), "dnnl_post_ops_destroy");
      }
    });
    if (!p) return false;
    this.#run(p, then ? [a, b, out, then.c] : [a, b, out]);
    return true;
  }

  reduction(
    op: DnnlReduction,
    arrays: { x: Float32Array; xDims: number[]; out: Float32Array; outDims: number[] },
  ): boolean {
    const { x, xDims, out, outDims } = arrays;
    const alg = REDUCTION_ALG[op];
    if (alg === undefined) throw new RangeError(`oneDNN reduction: unknown op "${op}"`);
    if (xDims.length !== outDims.length || outDims.some((d, i) => d !== xDims[i] && d !== 1)) {
      throw new RangeError(`oneDNN reduction: out's dims [${outDims}] must equal x's [${xDims}] or be 1`);
    }
    if (x.length !== product(xDims) || out.length !== product(outDims)) {
      throw new RangeError(`oneDNN reduction: array lengths ${x.length}, ${out.length} do not fit the dims`);
    }
    if (x.length === 0) return false;
    const p = this.#get(`r${alg}:${xDims}:${outDims}`, () => {
      const desc = new Uint8Array(OP_DESC_BYTES);
      this.#check(
        this.#lib.dnnl_reduction_desc_init(desc, alg, this.#memoryDesc(xDims), this.#memoryDesc(outDims), 0, 0),
        `dnnl_reduction_desc_init (${op})`,
      );
      const pd = this.#primitiveDesc(desc, `reduction ${op}`);
      return pd && this.#build(pd, [
        { arg: ARG.src, dims: xDims, writes: false },
        { arg: ARG.dst, dims: outDims, writes: true },
      ]);
    });
    if (!p) return false;
    this.#run(p, [x, out]);
    return true;
  }

  transpose(arrays: { x: Float32Array; out: Float32Array }, layout: { shape: number[]; perm: number[] }): boolean {
    const { x, out } = arrays;
    const { shape, perm } = layout;
    const rank = shape.length;
    if (perm.length !== rank || [...perm].sort((a, b) => a - b).some((v, i) => v !== i)) {
      throw new RangeError(`oneDNN transpose: perm [${perm}] must be a permutation of 0..${rank - 1}`);
    }
    if (x.length !== product(shape) || out.length !== x.length) {
      throw new RangeError(`oneDNN transpose: x and out must have ${product(shape)} elements`);
    }
    if (x.length === 0) return true;
    if (rank < 1 || rank > MAX_NDIMS) return false;
    const p = this.#get(`t${shape}:${perm}`, () => {
      // The output's logical dims, read from x where they lie: output axis i has x's stride of axis perm[i].
      const inStrides: number[] = [];
      let stride = 1;
      for (let i = rank - 1; i >= 0; i--) {
        inStrides[i] = stride;
        stride *= shape[i];
      }
      const outDims = perm.map((axis) => shape[axis]);
      const src = this.#memoryDesc(outDims, perm.map((axis) => inStrides[axis]));
      const dst = this.#memoryDesc(outDims);
      const status = this.#lib.dnnl_reorder_primitive_desc_create(
        this.#out,
        src,
        this.#engine,
        dst,
        this.#engine,
        null,
      );
      if (status === STATUS_UNIMPLEMENTED) return null;
      this.#check(status, "dnnl_reorder_primitive_desc_create");
      const pd = this.#pointer("dnnl_reorder_primitive_desc_create");
      const name = this.#implementation(pd, "reorder");
      if (name.startsWith("ref")) {
        this.#check(this.#lib.dnnl_primitive_desc_destroy(pd), "dnnl_primitive_desc_destroy");
        return null;
      }
      return this.#build(pd, [{ arg: ARG.src, dims: outDims, writes: false }, {
        arg: ARG.dst,
        dims: outDims,
        writes: true,
      }]);
    });
    if (!p) return false;
    this.#run(p, [x, out]);
    return true;
  }

  sgemm(args: DnnlSgemmArgs): void {
    const { transA, transB, m, n, k, a, lda, b, ldb, c, ldc, alpha = 1, beta = 0 } = args;
    if (m === 0 || n === 0) return;
    const T = 84; // "T"
    const N = 78; // "N"
    this.#check(
      this.#lib.dnnl_sgemm(
        transA ? T : N,
        transB ? T : N,
        BigInt(m),
        BigInt(n),
        BigInt(k),
        alpha,
        a,
        BigInt(lda),
        b,
        BigInt(ldb),
        beta,
        c,
        BigInt(ldc),
      ),
      "dnnl_sgemm",
    );
  }

  matmul(arrays: { a: Float32Array; b: Float32Array; out: Float32Array }, dims: DnnlMatMulDims): boolean {
    const { a, b, out } = arrays;
    const { aBatch = [], bBatch = [], m, n, k, transA = false, transB = false } = dims;
    for (const [name, v] of [["m", m], ["n", n], ["k", k]] as const) {
      if (!Number.isInteger(v) || v < 0) throw new RangeError(`oneDNN matmul: dims.${name} must be an integer >= 0`);
    }
    if (
      aBatch.length !== bBatch.length ||
      aBatch.some((d, i) => !Number.isInteger(d) || d < 0 || (d !== bBatch[i] && d !== 1 && bBatch[i] !== 1))
    ) {
      throw new RangeError(
        `oneDNN matmul: aBatch [${aBatch}] and bBatch [${bBatch}] must have one rank and each dim equal or 1`,
      );
    }
    const outBatch = aBatch.map((d, i) => d === 1 ? bBatch[i] : d);
    if (a.length !== product(aBatch) * m * k || b.length !== product(bBatch) * k * n) {
      throw new RangeError(
        `oneDNN matmul: a has ${a.length} elements and b ${b.length}; the dims ask for ` +
          `${product(aBatch) * m * k} and ${product(bBatch) * k * n}`,
      );
    }
    if (out.length !== product(outBatch) * m * n) {
      throw new RangeError(
        `oneDNN matmul: out has ${out.length} elements, the dims ask for ${product(outBatch) * m * n}`,
      );
    }
    if (out.length === 0) return true;
    if (k === 0) {
      // An empty sum: oneDNN rejects a zero dim, the product is zero.
      out.fill(0);
      return true;
    }
    if (aBatch.length + 2 > MAX_NDIMS) return false;
    const key = `mm${aBatch}:${bBatch}:${m}:${n}:${k}:${+transA}${+transB}`;
    const p = this.#get(key, () => {
      // A matrix's strides: row-major as stored, read transposed when asked; batch dims are dense over the matrices.
      const strided = (batch: number[], rows: number, cols: number, trans: boolean) => {
        const strides = trans ? [1, rows] : [cols, 1];
        let stride = rows * cols;
        for (let i = batch.length - 1; i >= 0; i--) {
          strides.unshift(stride);
          stride *= batch[i];
        }
        return strides;
      };
      const operands: Operand[] = [
        { arg: ARG.src, dims: [...aBatch, m, k], strides: strided(aBatch, m, k, transA), writes: false },
        { arg: ARG.weights, dims: [...bBatch, k, n], strides: strided(bBatch, k, n, transB), writes: false },
        { arg: ARG.dst, dims: [...outBatch, m, n], writes: true },
      ];
      const [src, weights, dst] = operands.map((o) => this.#memoryDesc(o.dims, o.strides));
      const desc = new Uint8Array(OP_DESC_BYTES);
      this.#check(this.#lib.dnnl_matmul_desc_init(desc, src, weights, null, dst), "dnnl_matmul_desc_init");
      const pd = this.#primitiveDesc(desc, "matmul");
      return pd && this.#build(pd, operands);
    });
    if (!p) return false;
    this.#run(p, [a, b, out]);
    return true;
  }

  implementations(): Record<string, string> {
    return { ...this.#impls };
  }

  cached(): number {
    return this.#cache.size;
  }
}

/**
 * Opens the first oneDNN library that loads, creates its CPU engine and stream, and sets its thread count (see the
 * module notes); throws with every reason and the install hint.
 *
 * @example
 * ```ts
 * import { openDnnl } from "./dnnl.ts";
 * try {
 *   const dnnl = openDnnl();
 *   const out = new Float32Array(2);
 *   dnnl.eltwise("exp", { x: new Float32Array([0, 1]), out });
 *   console.log(out[0], out[1].toFixed(4)); // 1 2.7183
 * } catch (err) {
 *   console.log((err as Error).message); // no oneDNN on this machine
 * }
 * ```
 */
export function openDnnl(): DnnlLibrary {
  const reasons: string[] = [];
  for (const path of dnnlCandidates()) {
    let lib;
    try {
      lib = Deno.dlopen(path, SYMBOLS);
    } catch (err) {
      reasons.push(`${path}: ${(err as Error).message.split("\n")[0]}`);
      continue;
    }
    const env = {
      OMP_NUM_THREADS: envString("OMP_NUM_THREADS"),
      OPENBLAS_NUM_THREADS: envString("OPENBLAS_NUM_THREADS"),
    };
    const threads = setOpenMpThreads(dnnlThreadRequest(env));
    return new Dnnl(path, lib.symbols, threads);
  }
  throw new Error(`oneDNN could not be loaded (${reasons.join("; ")}); ${DNNL_INSTALL_HINT}`);
}

let loaded: DnnlLibrary | null | undefined;

/**
 * oneDNN, loaded on the first call; undefined when it cannot be loaded, after one line on stderr saying why and how
 * to install it.
 *
 * @example
 * ```ts
 * import { dnnl } from "./dnnl.ts";
 * const lib = dnnl();
 * console.log(lib === undefined || lib.version.startsWith("2.")); // true
 * ```
 */
export function dnnl(): DnnlLibrary | undefined {
  if (loaded === undefined) {
    try {
      loaded = openDnnl();
    } catch (err) {
      loaded = null;
      // One line, on stderr (stdout may be a task's machine-readable output).
      const reason = (err as Error).message.replace(`; ${DNNL_INSTALL_HINT}`, "");
      console.error(`attnlab: ${reason}; the blas backend keeps its JavaScript kernels; ${DNNL_INSTALL_HINT}`);
    }
  }
  return loaded ?? undefined;
}
