/**
 * The causal product of kernel (linear) attention as one fused kernel of the `blas` backend, forward and backward:
 * per (batch, head) slice, Y = tril(Q Kᵀ) V, i.e. y_i = Σ_{j ≤ i} (q_i · k_j) v_j, for q, k [b, h, n, m] and
 * v [b, h, n, dv], computed chunk by chunk with the system BLAS's sgemm and never materialising the n × n matrix:
 * for a chunk of C rows, Y_c = Q_c S + tril(Q_c K_cᵀ) V_c, then S += K_cᵀ V_c (S [m, dv], the state carried between
 * chunks). tfjs runs about 20 ops for the same (pad, reshape, masked batched products, a prefix sum over chunks by
 * transpose, cumsum and transpose, sums, slice), and their gradients.
 *
 * The same kernel runs the anti-causal direction (attribute `reverse`: y_i = Σ_{j ≥ i} (q_i · k_j) v_j, chunks taken
 * from the last), which the gradient needs: dQ = tril(dY Vᵀ) K is a causal product of (dY, V, K); dK and dV are
 * anti-causal products of (V, dY, Q) and (K, Q, dY) (lib/attention/README.md derives them). It also takes an initial
 * state S₀ [b, h, m, dv] (y_i += q_i S₀, as if S₀ summed earlier tokens) and returns the final state S₀ + Kᵀ V, which a
 * prefill carries to the next call.
 *
 * Normalised (linear) attention, {@linkcode causalAttention}, is the causal product of [V, 1] divided through by its
 * last column, the row sums. Its kernel pair keeps the ones column virtual: the products run on V (dv columns, where
 * dv + 1 would slow every sgemm) and the row sums q_i · Σ_{j ≤ i} k_j, and their share of the gradient, come from
 * running sums of the keys (queries) in O(n m); one kernel forward and one backward (three products inside).
 *
 * On any other backend, under `ATTNLAB_BLAS_KERNELS=matmul` and for zero-sized tensors, the functions here run the
 * same chunkwise product in tf ops (and tfjs differentiates those). Measured on the 2-core machine (thread CPU time,
 * one BLAS thread, paired rounds), forward + backward of normalised attention took 0.63× the tf-op chunked form's time
 * at [16, 4, 128, 16] and 0.71× at [8, 4, 512, 64] (chunks of 64); a small linear-attention training step 0.78×.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import {
  f32,
  gradientsOnce,
  hasFloat32Kernel,
  type Kernel,
  type KernelArgs,
  runKernel,
  sizeOf,
  type TensorInfo,
} from "./_util.ts";
import { allocFloat32 } from "./pool.ts";
import { type Sgemm, sgemmOf } from "./sgemm.ts";

/**
 * The causal product: inputs q, k [b, h, n, m] and v [b, h, n, dv] (float32); attributes `reverse` (boolean: the
 * anti-causal product), `chunkSize` (rows per sgemm block) and `decay` (null, or one γ in (0, 1] per head: each term
 * (q_i · k_j) v_j weighted by γ^|i−j|, retention's decay); output y [b, h, n, dv].
 */
export const CAUSAL_PRODUCT = "AttnlabCausalProduct";
/**
 * The causal product from a state: inputs q, k, v as {@linkcode CAUSAL_PRODUCT} and s0 [b, h, m, dv]; the same
 * attributes; outputs [y [b, h, n, dv] with y_i += q_i s0, the final state s0 + Kᵀ V [b, h, m, dv]].
 */
export const CAUSAL_PRODUCT_STATE = "AttnlabCausalProductState";

/**
 * Normalised causal kernel attention: inputs q, k [b, h, n, m] and v [b, h, n, dv] (float32); attributes `eps` and
 * `chunkSize`; outputs [the rows of tril(Q Kᵀ) V divided by (their row sums of tril(Q Kᵀ) + eps) [b, h, n, dv], those
 * denominators [b, h, n]]: the causal product of [V, 1], divided through.
 */
export const CAUSAL_ATTENTION = "AttnlabCausalAttention";
/**
 * Gradient of {@linkcode CAUSAL_ATTENTION}: inputs q, k, v, out and den (its outputs), dy and dden (their cotangents);
 * attribute `chunkSize`; outputs [dq, dk, dv].
 */
export const CAUSAL_ATTENTION_GRAD = "AttnlabCausalAttentionGrad";

/** The default rows per chunk: the linear variants' `chunkSize` default. */
export const CAUSAL_CHUNK_SIZE = 64;

let scratch = new Float32Array(0);

/** Reusable scratch of at least `length` floats (kernels run one at a time, synchronously), cut into `sizes`. */
function scratchOf(...sizes: number[]): Float32Array[] {
  const total = sizes.reduce((x, y) => x + y, 0);
  if (scratch.length < total) scratch = new Float32Array(total);
  let at = 0;
  return sizes.map((size) => scratch.subarray(at, at += size));
}

/** The shape of one slice's product: n rows; a, b [n, p]; c, y [n, r]; chunks of `chunk` rows. */
interface SliceShape {
  n: number;
  p: number;
  r: number;
  chunk: number;
  reverse: boolean;
}

/**
 * A slice's decay γ as its powers γ^0 .. γ^chunk (float64 powers, rounded once); null: no decay (γ = 1), which skips
 * every scaling below.
 */
function decayPowers(gamma: number, chunk: number): Float32Array | null {
  if (gamma === 1) return null;
  return Float32Array.from({ length: chunk + 1 }, (_, t) => Math.pow(gamma, t));
}

/**
 * One (batch, head) slice of the causal product, y = tril(a bᵀ) c (triu when reverse) + a S₀, chunk by chunk through
 * sgemm on views of the arrays (each starts at the slice's first row). `state` [p, r] holds S₀ when `from` is set (else
 * its contents are ignored) and ends as the final state when `keep` is set; `block` holds a chunk's [C, C] product.
 * With `powers` (a decay γ, decayPowers) every term of the product is weighted by γ^|i−j|: the chunk's block entry-wise,
 * the state's share of row i by γ^(i+1) (γ^(len−i) when reverse), and the state update by γ^len on the old state and
 * γ^(len−1−t) (γ^t when reverse) on row t of c, scaled in `scaled` [C, r] (lib/attention/README.md, Retention).
 */
function sliceProduct(
  gemm: Sgemm,
  x: {
    a: Float32Array;
    b: Float32Array;
    c: Float32Array;
    y: Float32Array;
    state: Float32Array;
    block: Float32Array;
    scaled?: Float32Array;
  },
  shape: SliceShape & { from: boolean; keep: boolean; powers?: Float32Array | null },
): void {
  const { n, p, r, chunk, reverse, powers } = shape;
  const { state, block } = x;
  const chunks = Math.ceil(n / chunk);
  // Without S₀ the state starts at zero: its product is skipped until a chunk has added to it.
  let empty = !shape.from;
  for (let step = 0; step < chunks; step++) {
    const c = reverse ? chunks - 1 - step : step;
    const row = c * chunk;
    const len = Math.min(chunk, n - row);
    const ac = x.a.subarray(row * p);
    const bc = x.b.subarray(row * p);
    const cc = x.c.subarray(row * r);
    const yc = x.y.subarray(row * r, (row + len) * r);
    if (!empty) {
      gemm({ transA: false, transB: false, m: len, n: r, k: p, a: ac, lda: p, b: state, ldb: r, c: yc, ldc: r });
      if (powers) {
        for (let i = 0; i < len; i++) {
          const w = powers[reverse ? len - i : i + 1];
          for (let j = i * r, end = j + r; j < end; j++) yc[j] *= w;
        }
      }
    }
    // The chunk's block a bᵀ [len, len], with the entries a row may not see set to 0 (set, not multiplied: a
    // non-finite later key stays out of the row).
    gemm({ transA: false, transB: true, m: len, n: len, k: p, a: ac, lda: p, b: bc, ldb: p, c: block, ldc: len });
    // Plain loops: a fill() call per row costs about twice as much on these short rows (measured at C = 64).
    if (reverse) {
      for (let i = 1; i < len; i++) for (let j = i * len, end = j + i; j < end; j++) block[j] = 0;
    } else {
      for (let i = 0; i < len - 1; i++) for (let j = i * len + i + 1, end = (i + 1) * len; j < end; j++) block[j] = 0;
    }
    if (powers) {
      // Entry (i, j) the row sees: γ^|i−j|.
      for (let i = 0; i < len; i++) {
        const from = reverse ? i : 0, to = reverse ? len : i + 1;
        for (let j = from; j < to; j++) block[i * len + j] *= powers[reverse ? j - i : i - j];
      }
    }
    const beta = empty ? 0 : 1;
    gemm({
      transA: false,
      transB: false,
      m: len,
      n: r,
      k: len,
      a: block,
      lda: len,
      b: cc,
      ldb: r,
      c: yc,
      ldc: r,
      beta,
    });
    // S += b_cᵀ c_c, unless nothing reads it: the last chunk of a product whose state is not kept. With a decay,
    // S = γ^len S + b_cᵀ (γ^(len−1−t) c_t)_t.
    if (shape.keep || step < chunks - 1) {
      let rows = cc; // [len, r]
      let keep = beta;
      if (powers) {
        rows = x.scaled!;
        for (let t = 0; t < len; t++) {
          const w = powers[reverse ? t : len - 1 - t];
          for (let j = t * r, end = j + r; j < end; j++) rows[j] = cc[j] * w;
        }
        keep = empty ? 0 : powers[len];
      }
      gemm({
        transA: true,
        transB: false,
        m: p,
        n: r,
        k: len,
        a: bc,
        lda: p,
        b: rows,
        ldb: r,
        c: state,
        ldc: r,
        beta: keep,
      });
      empty = false;
    }
  }
}

/** The attribute chunkSize, checked, and capped at n. */
function chunkOf(name: string, attrs: KernelArgs["attrs"], n: number): number {
  const chunk = attrs?.chunkSize ?? CAUSAL_CHUNK_SIZE;
  if (!(typeof chunk === "number" && Number.isInteger(chunk) && chunk >= 1)) {
    throw new RangeError(`${name}: attribute chunkSize must be an integer >= 1, got ${chunk}`);
  }
  return Math.min(chunk, n);
}

/** The attribute decay, checked: one γ in (0, 1] per head, or null (none). */
function decayOf(name: string, attrs: KernelArgs["attrs"], heads: number): readonly number[] | null {
  const decay = attrs?.decay ?? null;
  if (decay === null) return null;
  if (
    !Array.isArray(decay) || decay.length !== heads ||
    !decay.every((g) => typeof g === "number" && g > 0 && g <= 1)
  ) {
    throw new RangeError(`${name}: attribute decay must be null or ${heads} numbers in (0, 1], one per head`);
  }
  return decay as number[];
}

function causalProductKernel({ inputs, backend, attrs }: KernelArgs, gemm: Sgemm): TensorInfo | TensorInfo[] {
  const { q, k, v, s0 } = inputs as Record<string, TensorInfo>;
  const [b, h, n, m] = q.shape;
  const dv = v.shape[3];
  const shape = { n, p: m, r: dv, chunk: chunkOf(CAUSAL_PRODUCT, attrs, n), reverse: Boolean(attrs?.reverse) };
  const decay = decayOf(CAUSAL_PRODUCT, attrs, h);
  const powers = decay?.map((g) => decayPowers(g, shape.chunk)) ?? null; // per head
  const [qv, kv, vv] = [q, k, v].map((x) => f32(backend, x));
  const y = allocFloat32(b * h * n * dv);
  const stateSize = m * dv;
  const states = s0 ? allocFloat32(b * h * stateSize) : null;
  if (states) states.set(f32(backend, s0));
  const [block, own, scaled] = scratchOf(
    shape.chunk * shape.chunk,
    states ? 0 : stateSize,
    powers ? shape.chunk * dv : 0,
  );
  for (let slice = 0; slice < b * h; slice++) {
    const at = slice * n;
    sliceProduct(gemm, {
      a: qv.subarray(at * m),
      b: kv.subarray(at * m),
      c: vv.subarray(at * dv),
      y: y.subarray(at * dv),
      state: states ? states.subarray(slice * stateSize, (slice + 1) * stateSize) : own,
      block,
      scaled,
    }, { ...shape, from: states !== null, keep: states !== null, powers: powers?.[slice % h] ?? null });
  }
  const out = backend.makeTensorInfo([b, h, n, dv], "float32", y);
  return states ? [out, backend.makeTensorInfo([b, h, m, dv], "float32", states)] : out;
}

function causalAttentionKernel({ inputs, backend, attrs }: KernelArgs, gemm: Sgemm): TensorInfo[] {
  const { q, k, v } = inputs as Record<string, TensorInfo>;
  const [b, h, n, m] = q.shape;
  const dv = v.shape[3];
  const eps = Number(attrs?.eps ?? 0);
  const shape = {
    n,
    p: m,
    r: dv,
    chunk: chunkOf(CAUSAL_ATTENTION, attrs, n),
    reverse: false,
    from: false,
    keep: false,
  };
  const [qv, kv, vv] = [q, k, v].map((x) => f32(backend, x));
  const out = allocFloat32(b * h * n * dv);
  const den = allocFloat32(b * h * n);
  const [block, state] = scratchOf(shape.chunk * shape.chunk, m * dv);
  const keys = new Float64Array(m);
  for (let slice = 0; slice < b * h; slice++) {
    const at = slice * n;
    const y = out.subarray(at * dv, (at + n) * dv);
    sliceProduct(
      gemm,
      { a: qv.subarray(at * m), b: kv.subarray(at * m), c: vv.subarray(at * dv), y, state, block },
      shape,
    );
    // The product's ones column, Σ_{j ≤ i} q_i · k_j = q_i · (Σ_{j ≤ i} k_j), from a running sum of the keys (in
    // doubles): O(n m) where the column would widen every sgemm from dv to dv + 1 columns.
    keys.fill(0);
    for (let i = 0; i < n; i++) {
      let dot = 0;
      for (let t = 0; t < m; t++) {
        keys[t] += kv[(at + i) * m + t];
        dot += qv[(at + i) * m + t] * keys[t];
      }
      const d = Math.fround(dot + eps);
      den[at + i] = d;
      for (let e = 0; e < dv; e++) y[i * dv + e] /= d;
    }
  }
  return [backend.makeTensorInfo([b, h, n, dv], "float32", out), backend.makeTensorInfo([b, h, n], "float32", den)];
}

function causalAttentionGradKernel({ inputs, backend, attrs }: KernelArgs, gemm: Sgemm): TensorInfo[] {
  const { q, k, v, out, den, dy, dden } = inputs as Record<string, TensorInfo>;
  const [b, h, n, m] = q.shape;
  const dv = v.shape[3];
  const chunk = chunkOf(CAUSAL_ATTENTION_GRAD, attrs, n);
  const [qv, kv, vv, ov, denv, dyv, ddv] = [q, k, v, out, den, dy, dden].map((x) => f32(backend, x));
  const dq = allocFloat32(b * h * n * m);
  const dk = allocFloat32(b * h * n * m);
  const dvOut = allocFloat32(b * h * n * dv);
  const [block, state, g] = scratchOf(chunk * chunk, m * dv, n * dv);
  const rowSum = new Float64Array(n);
  const running = new Float64Array(m);
  const causal = { n, chunk, reverse: false, from: false, keep: false };
  const anti = { ...causal, reverse: true };
  for (let slice = 0; slice < b * h; slice++) {
    const at = slice * n;
    const qs = qv.subarray(at * m);
    const ks = kv.subarray(at * m);
    const vs = vv.subarray(at * dv);
    // The cotangent of the numerator, G = dy / den, and of the row sum, dy's part −Σ dy · out / den plus den's own.
    for (let i = 0; i < n; i++) {
      const d = denv[at + i];
      let dot = 0;
      for (let e = 0; e < dv; e++) {
        const gy = dyv[(at + i) * dv + e];
        g[i * dv + e] = gy / d;
        dot += gy * ov[(at + i) * dv + e];
      }
      rowSum[i] = ddv[at + i] - dot / d;
    }
    // The products of lib/attention/README.md on the numerator: dQ = P(G, V, K), dK = P̄(V, G, Q), dV = P̄(K, Q, G).
    const dqs = dq.subarray(at * m, (at + n) * m);
    const dks = dk.subarray(at * m, (at + n) * m);
    sliceProduct(gemm, { a: g, b: vs, c: ks, y: dqs, state, block }, { ...causal, p: dv, r: m });
    sliceProduct(gemm, { a: vs, b: g, c: qs, y: dks, state, block }, { ...anti, p: dv, r: m });
    sliceProduct(gemm, { a: ks, b: qs, c: g, y: dvOut.subarray(at * dv), state, block }, { ...anti, p: m, r: dv });
    // And through the row sum q_i · Σ_{j ≤ i} k_j (with cotangent s_i): dQ_i += s_i Σ_{j ≤ i} k_j and
    // dK_j += Σ_{i ≥ j} s_i q_i, from running sums in doubles (V's ones column has no gradient to give).
    running.fill(0);
    for (let i = 0; i < n; i++) {
      for (let t = 0; t < m; t++) {
        running[t] += ks[i * m + t];
        dqs[i * m + t] += rowSum[i] * running[t];
      }
    }
    running.fill(0);
    for (let j = n - 1; j >= 0; j--) {
      for (let t = 0; t < m; t++) {
        running[t] += rowSum[j] * qs[j * m + t];
        dks[j * m + t] += running[t];
      }
    }
  }
  return [
    backend.makeTensorInfo([b, h, n, m], "float32", dq),
    backend.makeTensorInfo([b, h, n, m], "float32", dk),
    backend.makeTensorInfo([b, h, n, dv], "float32", dvOut),
  ];
}

/**
 * The kernels of this module, by name, for the `blas` backend to register (through lib/blas/kernels.ts's
 * `fastKernels`), their products computed by `options.sgemm`: by default the BLAS's (OpenBLAS); lib/blas/dnnl_kernels.ts
 * builds them on oneDNN's single-threaded JIT sgemm when it is loaded, which ran the causal product of
 * [16, 4, 128, 45] features 1.6× as fast and of [1, 8, 2048, 64] 1.5× (its C × C and C × r products are too small
 * for OpenBLAS's threads to pay, and at C = 128 OpenBLAS threads them at a loss).
 *
 * @example
 * ```ts
 * import { CAUSAL_PRODUCT, CAUSAL_PRODUCT_STATE, fusedCausalKernels } from "./fused_causal.ts";
 * const names = Object.keys(fusedCausalKernels());
 * console.log(names.includes(CAUSAL_PRODUCT) && names.includes(CAUSAL_PRODUCT_STATE)); // true
 * ```
 */
export function fusedCausalKernels(options: { sgemm?: Sgemm } = {}): Record<string, Kernel> {
  const gemm = sgemmOf("fusedCausalKernels", options);
  const product = (args: KernelArgs) => causalProductKernel(args, gemm());
  return {
    [CAUSAL_PRODUCT]: product as unknown as Kernel,
    [CAUSAL_PRODUCT_STATE]: product as unknown as Kernel,
    [CAUSAL_ATTENTION]: ((args: KernelArgs) => causalAttentionKernel(args, gemm())) as unknown as Kernel,
    [CAUSAL_ATTENTION_GRAD]: ((args: KernelArgs) => causalAttentionGradKernel(args, gemm())) as unknown as Kernel,
  };
}

/** The three tensors of a causal product: q, k [b, h, n, m] and v [b, h, n, dv]. */
export interface CausalProductInputs {
  q: tf.Tensor4D;
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

/** Options of {@linkcode causalProduct}. */
export interface CausalProductOptions {
  /** The anti-causal product, y_i = Σ_{j ≥ i} (q_i · k_j) v_j; default false. */
  reverse?: boolean;
  /** Rows per chunk (an integer >= 1; larger than n means one chunk); default {@linkcode CAUSAL_CHUNK_SIZE}. */
  chunkSize?: number;
}

/** Options of {@linkcode causalProduct}: those of every causal product, and a decay. */
export interface DecayedProductOptions extends CausalProductOptions {
  /**
   * A decay γ in (0, 1], one for every head or one per head: each term (q_i · k_j) v_j is weighted by γ^|i−j|
   * (retention's decay). Default none (γ = 1). On a backend without the fused kernel a decayed product runs as the
   * O(n²) masked matrix.
   */
  decay?: number | readonly number[] | null;
}

/** Options of {@linkcode causalProductWithState}: those of {@linkcode causalProduct} and the initial state. */
export interface CausalProductStateOptions extends CausalProductOptions {
  /** S₀ [b, h, m, dv], the state of the tokens before (after, when reverse) the sequence; default zeros. */
  state?: tf.Tensor4D;
}

/** The output [b, h, n, dv] and the final state S₀ + Kᵀ V [b, h, m, dv] of {@linkcode causalProductWithState}. */
export interface CausalProductResult {
  output: tf.Tensor4D;
  state: tf.Tensor4D;
}

/** The causal mask of a chunk, [c, c]: ones where key j <= row i (or j >= i when reverse). */
function chunkMask(c: number, reverse: boolean): tf.Tensor2D {
  const data = new Float32Array(c * c);
  for (let i = 0; i < c; i++) {
    if (reverse) data.fill(1, i * c + i, (i + 1) * c);
    else data.fill(1, i * c, i * c + i + 1);
  }
  return tf.tensor2d(data, [c, c]);
}

/** D [h, n, n] of one γ per head: γ^|i−j| where row i sees key j (j <= i, or j >= i when reverse), else 0. */
function decayMask(decay: readonly number[], n: number, reverse: boolean): tf.Tensor3D {
  const data = new Float32Array(decay.length * n * n);
  decay.forEach((g, h) => {
    for (let i = 0; i < n; i++) {
      const [from, to] = reverse ? [i, n] : [0, i + 1];
      for (let j = from; j < to; j++) data[(h * n + i) * n + j] = Math.pow(g, Math.abs(i - j));
    }
  });
  return tf.tensor3d(data, [decay.length, n, n]);
}

/** Exclusive prefix sums over axis 2 (chunks), suffix sums when reverse. */
function exclusiveOverChunks(x: tf.Tensor5D, reverse: boolean): tf.Tensor5D {
  // On the last axis: wasm's Cumsum gradient returns a wrongly shaped tensor when the axis is not the last one.
  const perm = [0, 1, 3, 4, 2];
  return tf.transpose(tf.cumsum(tf.transpose(x, perm), 4, true, reverse), [0, 1, 4, 2, 3]);
}

/** The chunkwise product in tf ops (every backend; tfjs differentiates it): the output, and the state when asked. */
function composite(
  { q, k, v }: CausalProductInputs,
  options: {
    reverse: boolean;
    chunkSize: number;
    state?: tf.Tensor4D;
    wantState: boolean;
    decay?: readonly number[] | null;
  },
): { output: tf.Tensor4D; state?: tf.Tensor4D } {
  const [b, h, n, m] = q.shape;
  const dv = v.shape[3];
  const { reverse, state } = options;
  return tf.tidy(() => {
    if (options.decay && n > 0) {
      // The decayed product as its matrix: (Q Kᵀ ⊙ D) V with D_ij = γ^|i−j| where the row sees key j, else 0.
      const d = decayMask(options.decay, n, reverse); // [h, n, n]
      return { output: tf.matMul(tf.mul(tf.matMul(q, k, false, true), d), v) as tf.Tensor4D };
    }
    if (n === 0) {
      const output = tf.zeros([b, h, 0, dv]) as tf.Tensor4D;
      return options.wantState ? { output, state: state ? tf.clone(state) : tf.zeros([b, h, m, dv]) } : { output };
    }
    const c = Math.min(options.chunkSize, n);
    const nc = Math.ceil(n / c);
    const pad = nc * c - n;
    // Zero rows after the last token add nothing to any product or state.
    const chunked = (x: tf.Tensor4D) =>
      tf.reshape(pad === 0 ? x : tf.pad(x, [[0, 0], [0, 0], [0, pad], [0, 0]]), [b, h, nc, c, x.shape[3]]);
    const qc = chunked(q) as tf.Tensor5D; // [b, h, nc, C, m]
    const kc = chunked(k) as tf.Tensor5D; // [b, h, nc, C, m]
    const vc = chunked(v) as tf.Tensor5D; // [b, h, nc, C, dv]
    const intra = tf.mul(tf.matMul(qc, kc, false, true), chunkMask(c, reverse)); // [b, h, nc, C, C]
    const chunkKV = tf.matMul(kc, vc, true, false) as tf.Tensor5D; // [b, h, nc, m, dv]
    let before: tf.Tensor = exclusiveOverChunks(chunkKV, reverse); // [b, h, nc, m, dv]
    if (state) before = tf.add(before, tf.expandDims(state, 2));
    const out = tf.add(tf.matMul(intra, vc), tf.matMul(qc, before)); // [b, h, nc, C, dv]
    const output = tf.slice(tf.reshape(out, [b, h, nc * c, dv]), [0, 0, 0, 0], [b, h, n, dv]) as tf.Tensor4D;
    if (!options.wantState) return { output };
    const total = tf.sum(chunkKV, 2) as tf.Tensor4D; // [b, h, m, dv]
    return { output, state: state ? tf.add(total, state) : total };
  });
}

/**
 * Registers the gradients of the three forward kernels, once: three more causal products each (anti-causal but dQ's,
 * lib/attention/README.md), as kernels on this backend and in differentiable ops inside a higher-order recording.
 */
const registerGradients = gradientsOnce(() => [
  {
    kernelName: CAUSAL_PRODUCT,
    inputsToSave: ["q", "k", "v"],
    gradFunc: (dy, saved, attrs) => {
      const [q, k, v] = saved as tf.Tensor4D[];
      const g = dy as tf.Tensor4D;
      const { reverse, chunkSize, decay } = attrs as { reverse: boolean; chunkSize: number; decay?: number[] | null };
      // With a decay the weights γ^|i−j| are the same both ways: each product keeps it.
      const back = { reverse: !reverse, chunkSize, decay };
      return {
        q: () => causalProduct({ q: g, k: v, v: k }, { reverse, chunkSize, decay }),
        k: () => causalProduct({ q: v, k: g, v: q }, back),
        v: () => causalProduct({ q: k, k: q, v: g }, back),
      };
    },
  },
  {
    kernelName: CAUSAL_ATTENTION,
    inputsToSave: ["q", "k", "v"],
    outputsToSave: [true, true],
    gradFunc: (dys, saved, attrs) => {
      const [q, k, v, out, den] = saved as tf.Tensor4D[];
      const [dy, dden] = dys as tf.Tensor[];
      const { chunkSize } = attrs as { chunkSize: number };
      if (tf.engine().state.gradientDepth === 0 && hasFloat32Kernel(CAUSAL_ATTENTION_GRAD, [dy, dden])) {
        const [dq, dk, dv] = runKernel(CAUSAL_ATTENTION_GRAD, { q, k, v, out, den, dy, dden }, { chunkSize });
        return { q: () => dq, k: () => dk, v: () => dv };
      }
      // A gradient that is itself being differentiated: the kernel's three products in differentiable ops. The
      // cotangent of [numerator, row sum] is [dy / den, dden − Σ dy · out / den].
      const d = tf.expandDims(den, 3); // [b, h, n, 1]
      const rowSum = tf.sub(tf.expandDims(dden, 3), tf.div(tf.sum(tf.mul(dy, out), 3, true), d)); // [b, h, n, 1]
      const g = tf.concat([tf.div(dy, d), rowSum], 3) as tf.Tensor4D; // [b, h, n, dv + 1]
      const vx = withOnes(v); // [b, h, n, dv + 1]
      const back = { reverse: true, chunkSize };
      return {
        q: () => causalProduct({ q: g, k: vx, v: k }, { chunkSize }),
        k: () => causalProduct({ q: vx, k: g, v: q }, back),
        v: () => tf.slice(causalProduct({ q: k, k: q, v: g }, back), [0, 0, 0, 0], [-1, -1, -1, v.shape[3]]),
      };
    },
  },
  {
    kernelName: CAUSAL_PRODUCT_STATE,
    inputsToSave: ["q", "k", "v", "s0"],
    gradFunc: (dys, saved, attrs) => {
      const [q, k, v, s0] = saved as tf.Tensor4D[];
      const [g, gs] = dys as tf.Tensor4D[];
      const { reverse, chunkSize } = attrs as { reverse: boolean; chunkSize: number };
      const back = { reverse: !reverse, chunkSize };
      const t = (x: tf.Tensor4D) => tf.transpose(x, [0, 1, 3, 2]) as tf.Tensor4D;
      // With S₀ and the final state S: dQ_i += dY_i S₀ᵀ, dK_j += V_j dSᵀ, dV_j += K_j dS: the products' own
      // initial states. And dS₀ = dS + Qᵀ dY.
      return {
        q: () => causalProductWithState({ q: g, k: v, v: k }, { reverse, chunkSize, state: t(s0) }).output,
        k: () => causalProductWithState({ q: v, k: g, v: q }, { ...back, state: t(gs) }).output,
        v: () => causalProductWithState({ q: k, k: q, v: g }, { ...back, state: gs }).output,
        s0: () => tf.add(gs, tf.matMul(q, g, true, false)),
      };
    },
  },
]);

function checkInputs(
  owner: string,
  inputs: CausalProductInputs,
  options: CausalProductStateOptions & { eps?: number },
  known: readonly string[],
): void {
  if (inputs === null || typeof inputs !== "object") {
    throw new TypeError(`${owner}: the first argument must be { q, k, v } (tf.Tensor4D each)`);
  }
  const { q, k, v } = inputs;
  for (const [name, x] of [["q", q], ["k", k], ["v", v]] as const) {
    if (!(x instanceof tf.Tensor) || x.rank !== 4) {
      throw new TypeError(`${owner}: ${name} must be a tf.Tensor4D [batch, heads, n, ${name === "v" ? "dv" : "m"}]`);
    }
    if (x.dtype !== "float32") throw new TypeError(`${owner}: ${name} must be float32, got ${x.dtype}; cast it first`);
  }
  if (!tf.util.arraysEqual(q.shape, k.shape)) {
    throw new RangeError(
      `${owner}: q and k must have one shape [batch, heads, n, m], got [${q.shape}] and [${k.shape}]`,
    );
  }
  if (!tf.util.arraysEqual(q.shape.slice(0, 3), v.shape.slice(0, 3))) {
    throw new RangeError(
      `${owner}: v must be [batch, heads, n, dv] with q's batch, heads and n ([${q.shape.slice(0, 3)}]), ` +
        `got [${v.shape}]`,
    );
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError(`${owner}: options must be an object { ${known.map((key) => `${key}?`).join(", ")} }`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new TypeError(`${owner}: unknown option "${key}"; the options are ${known.join(", ")}`);
    }
  }
  if (options.reverse !== undefined && typeof options.reverse !== "boolean") {
    throw new TypeError(`${owner}: options.reverse must be a boolean, got ${typeof options.reverse}`);
  }
  const { eps } = options;
  if (eps !== undefined) {
    if (typeof eps !== "number") throw new TypeError(`${owner}: options.eps must be a number`);
    if (!(Number.isFinite(eps) && eps >= 0)) {
      throw new RangeError(`${owner}: options.eps must be finite and >= 0, got ${eps}`);
    }
  }
  const { chunkSize } = options;
  if (chunkSize !== undefined) {
    if (typeof chunkSize !== "number") throw new TypeError(`${owner}: options.chunkSize must be a number`);
    if (!(Number.isInteger(chunkSize) && chunkSize >= 1)) {
      throw new RangeError(`${owner}: options.chunkSize must be an integer >= 1, got ${chunkSize}`);
    }
  }
  const { decay } = options as DecayedProductOptions;
  if (decay !== undefined && decay !== null) {
    const values = typeof decay === "number" ? [decay] : decay;
    if (!Array.isArray(values) || !values.every((g) => typeof g === "number")) {
      throw new TypeError(`${owner}: options.decay must be a number, one number per head, or null`);
    }
    if (typeof decay !== "number" && values.length !== q.shape[1]) {
      throw new RangeError(
        `${owner}: options.decay has ${values.length} values but the input has ${q.shape[1]} heads; ` +
          `give one per head or a single number`,
      );
    }
    const bad = values.find((g) => !(g > 0 && g <= 1));
    if (bad !== undefined) throw new RangeError(`${owner}: options.decay must be in (0, 1], got ${bad}`);
  }
  const { state } = options;
  if (state !== undefined) {
    if (!(state instanceof tf.Tensor) || state.rank !== 4 || state.dtype !== "float32") {
      throw new TypeError(`${owner}: options.state must be a float32 tf.Tensor4D [batch, heads, m, dv], or left out`);
    }
    const expected = [q.shape[0], q.shape[1], q.shape[3], v.shape[3]];
    if (!tf.util.arraysEqual(state.shape, expected)) {
      throw new RangeError(
        `${owner}: options.state must have shape [${expected}] (batch, heads, m, dv), got [${state.shape}]`,
      );
    }
  }
}

/**
 * The causal product of kernel attention, per (batch, head): y_i = Σ_{j ≤ i} (q_i · k_j) v_j, i.e. tril(Q Kᵀ) V, for
 * q, k [b, h, n, m] and v [b, h, n, dv] (float32); with `reverse`, the anti-causal y_i = Σ_{j ≥ i} (q_i · k_j) v_j. In
 * O(n · C · (m + dv) + n · m · dv) time and no n × n tensor. On the blas backend one kernel computes it (sgemm on
 * chunks of `chunkSize` rows, the state carried between them) and three more its gradient; elsewhere the same
 * chunkwise product in tf ops runs. Normalised linear attention is this product with a column of ones appended to v
 * (its last output column is then each row's sum). With `decay` γ (per head), each term is weighted by γ^|i−j|:
 * retention's product, in the same kernels.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { causalProduct } from "./fused_causal.ts";
 * const q = tf.ones([1, 1, 3, 2]) as tf.Tensor4D;
 * const v = tf.tensor4d([1, 2, 3], [1, 1, 3, 1]);
 * // Each q·k is 2: the running sums of v, times 2.
 * console.log(Array.from(causalProduct({ q, k: q, v }).dataSync())); // [2, 6, 12]
 * console.log(Array.from(causalProduct({ q, k: q, v }, { reverse: true }).dataSync())); // [12, 10, 6]
 * // With a decay of 1/2: 2·1, 2·(1/2 + 2), 2·(1/4 + 2/2 + 3).
 * console.log(Array.from(causalProduct({ q, k: q, v }, { decay: 0.5 }).dataSync())); // [2, 5, 8.5]
 * ```
 */
export function causalProduct(inputs: CausalProductInputs, options: DecayedProductOptions = {}): tf.Tensor4D {
  checkInputs("causalProduct", inputs, options, ["reverse", "chunkSize", "decay"]);
  const { q, k, v } = inputs;
  const reverse = options.reverse ?? false;
  const chunkSize = options.chunkSize ?? CAUSAL_CHUNK_SIZE;
  const heads = q.shape[1];
  const given = options.decay ?? null;
  const perHead = typeof given === "number" ? new Array<number>(heads).fill(given) : given;
  // γ = 1 on every head is no decay: the plain product, bit for bit.
  const decay = perHead === null || perHead.every((g) => g === 1) ? null : [...perHead];
  if (hasFloat32Kernel(CAUSAL_PRODUCT, [q, k, v]) && sizeOf(q.shape) > 0 && sizeOf(v.shape) > 0) {
    registerGradients();
    const attrs = decay === null ? { reverse, chunkSize } : { reverse, chunkSize, decay };
    return runKernel(CAUSAL_PRODUCT, { q, k, v }, attrs)[0] as tf.Tensor4D;
  }
  return composite(inputs, { reverse, chunkSize, wantState: false, decay }).output;
}

/**
 * {@linkcode causalProduct} from an initial state S₀ [b, h, m, dv] (default zeros), which stands for the tokens before
 * the sequence (after it, when `reverse`): y_i = q_i S₀ + Σ_{j ≤ i} (q_i · k_j) v_j; with the final state S₀ + Kᵀ V,
 * so that running tokens [0, s) and then [s, n) from the carried state equals one run over [0, n). Differentiable in
 * q, k, v and S₀.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { causalProductWithState } from "./fused_causal.ts";
 * const q = tf.ones([1, 1, 2, 1]) as tf.Tensor4D;
 * const v = tf.tensor4d([1, 2], [1, 1, 2, 1]);
 * const { output, state } = causalProductWithState({ q, k: q, v }, { state: tf.fill([1, 1, 1, 1], 10) as tf.Tensor4D });
 * console.log(Array.from(output.dataSync()), state.dataSync()[0]); // [ 11, 13 ] 13
 * ```
 */
export function causalProductWithState(
  inputs: CausalProductInputs,
  options: CausalProductStateOptions = {},
): CausalProductResult {
  checkInputs("causalProductWithState", inputs, options, ["reverse", "chunkSize", "state"]);
  const { q, k, v } = inputs;
  const reverse = options.reverse ?? false;
  const chunkSize = options.chunkSize ?? CAUSAL_CHUNK_SIZE;
  if (hasFloat32Kernel(CAUSAL_PRODUCT_STATE, [q, k, v]) && sizeOf(q.shape) > 0 && sizeOf(v.shape) > 0) {
    registerGradients();
    const [b, h, , m] = q.shape;
    const s0 = options.state ?? tf.zeros([b, h, m, v.shape[3]]);
    const [output, state] = runKernel(CAUSAL_PRODUCT_STATE, { q, k, v, s0 }, { reverse, chunkSize });
    if (options.state === undefined) s0.dispose();
    return { output: output as tf.Tensor4D, state: state as tf.Tensor4D };
  }
  const run = composite(inputs, { reverse, chunkSize, state: options.state, wantState: true });
  return { output: run.output, state: run.state! };
}

/**
 * v [b, h, n, dv] with a column of ones appended, [b, h, n, dv + 1]: the causal product of it also gives each row's sum
 * of tril(Q Kᵀ) (its last column), and a product state of it carries the key sums z in its last column.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { withOnes } from "./fused_causal.ts";
 * console.log(JSON.stringify(withOnes(tf.tensor4d([5, 6], [1, 1, 2, 1])).arraySync())); // [[[[5,1],[6,1]]]]
 * ```
 */
export function withOnes(v: tf.Tensor4D): tf.Tensor4D {
  const [b, h, n] = v.shape;
  return tf.concat([v, tf.ones([b, h, n, 1])], 3);
}

/** Options of {@linkcode causalAttention}. */
export interface CausalAttentionOptions {
  /** Added to each row's sum before dividing (finite, >= 0); default 1e-6, as the linear variants. */
  eps?: number;
  /** Rows per chunk (an integer >= 1); default {@linkcode CAUSAL_CHUNK_SIZE}. */
  chunkSize?: number;
}

/**
 * Normalised causal kernel attention over features q, k [b, h, n, m] (non-negative, e.g. elu + 1) and values
 * v [b, h, n, dv]: out_i = Σ_{j ≤ i} (q_i · k_j) v_j / (Σ_{j ≤ i} q_i · k_j + eps), the causal product of [V, 1]
 * divided through by its last column. On the blas backend one kernel computes it (the ones column and the division
 * inside, no [b, h, n, dv + 1] tensor) and one its gradient (the three products of lib/attention/README.md on the
 * cotangent [dy / den, −Σ dy · out / den]); elsewhere {@linkcode causalProduct} of [V, 1], split and divided, in tf ops.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { causalAttention } from "./fused_causal.ts";
 * const q = tf.ones([1, 1, 3, 2]) as tf.Tensor4D;
 * const v = tf.tensor4d([1, 2, 3], [1, 1, 3, 1]);
 * // Equal weights: the running means of v.
 * console.log(Array.from(causalAttention({ q, k: q, v }, { eps: 0 }).dataSync())); // [1, 1.5, 2]
 * ```
 */
export function causalAttention(inputs: CausalProductInputs, options: CausalAttentionOptions = {}): tf.Tensor4D {
  checkInputs("causalAttention", inputs, options, ["eps", "chunkSize"]);
  const { q, k, v } = inputs;
  const eps = options.eps ?? 1e-6;
  const chunkSize = options.chunkSize ?? CAUSAL_CHUNK_SIZE;
  if (hasFloat32Kernel(CAUSAL_ATTENTION, [q, k, v]) && sizeOf(q.shape) > 0 && sizeOf(v.shape) > 0) {
    registerGradients();
    const [out, den] = runKernel(CAUSAL_ATTENTION, { q, k, v }, { eps, chunkSize });
    // The denominators are an output for the gradient only (which keeps its own reference).
    den.dispose();
    return out as tf.Tensor4D;
  }
  return tf.tidy(() => dividedByRowSums(causalProduct({ q, k, v: withOnes(v) }, { chunkSize }), { eps }));
}

/**
 * [numerator, row sum] [b, h, n, dv + 1], as the causal product of [V, 1] gives, to numerator / (row sum + eps)
 * [b, h, n, dv].
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { dividedByRowSums } from "./fused_causal.ts";
 * const y = tf.tensor4d([6, 3, 2, 4], [1, 1, 2, 2]);
 * console.log(Array.from(dividedByRowSums(y, { eps: 0 }).dataSync())); // [2, 0.5]
 * ```
 */
export function dividedByRowSums(y: tf.Tensor4D, options: { eps: number }): tf.Tensor4D {
  // split, not two slices: its gradient is one concat where two slices' would be two pads and an add.
  const [numerator, rowSum] = tf.split(y, [y.shape[3] - 1, 1], 3); // [b, h, n, dv], [b, h, n, 1]
  return tf.div(numerator, tf.add(rowSum, options.eps));
}
