/**
 * Softmax attention as one fused kernel of the `blas` backend, forward and backward, in the manner of FlashAttention
 * (Dao et al., 2022) on the CPU: per (batch, head) slice and block of B query rows,
 *
 *   S = scale · Q_B K_{:e}ᵀ (sgemm), masked, P = softmax(S) by rows, O_B = P V_{:e} (sgemm),
 *
 * where e is the number of keys the block can see (all of them; causal: up to its last query, so the blocks above the
 * diagonal are never computed). Only one block's [B, e] scores exist at a time, so memory is O(B n) instead of the
 * O(n²) of the matrix form. The gradient recomputes each block's P rather than keeping it:
 *
 *   dV_{:e} += Pᵀ dO_B, dP = dO_B V_{:e}ᵀ, dS = P ∘ (dP − rowsum(P ∘ dP)), dQ_B = scale · dS K_{:e},
 *   dK_{:e} += scale · dSᵀ Q_B
 *
 * (lib/attention/README.md, softmax). Five sgemm calls and two row passes per block, against tfjs's dozen ops over
 * the whole [n, n] matrix (matmul, scale, mask, softmax, matmul, and their gradients).
 *
 * The row softmax and its gradient are the blas backend's loops ({@linkcode softmaxRows}, {@linkcode softmaxGradRows});
 * with oneDNN loaded, its vectorised softmax primitives (lib/blas/dnnl_kernels.ts builds the same kernels on them).
 * Masked scores are −∞ before the softmax, so they get exactly 0, as the composite's −1e9 bias gives them.
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
import { softmaxGradRows } from "./fused.ts";
import { allocFloat32, allocFloat32Zeroed } from "./pool.ts";
import { softmaxRows } from "./reduce.ts";
import { type Sgemm, sgemmOf } from "./sgemm.ts";

/**
 * Softmax attention: inputs q [b, h, n, dk], k [b, h, nk, dk], v [b, h, nk, dv] (float32); attributes `scale` (the
 * logits' factor), `causal` (key j visible to query i only when j ≤ i; needs nk = n) and `blockSize` (query rows per
 * block); output [b, h, n, dv].
 */
export const SOFTMAX_ATTENTION = "AttnlabSoftmaxAttention";
/** Gradient of {@linkcode SOFTMAX_ATTENTION}: inputs q, k, v, dy (the output's cotangent); outputs dq, dk, dv. */
export const SOFTMAX_ATTENTION_GRAD = "AttnlabSoftmaxAttentionGrad";
/** Query rows per block by default: sgemm runs near its best from 64 rows, and causal blocks skip most of the mask. */
export const ATTENTION_BLOCK_SIZE = 64;

/** The row softmax and its gradient, over arrays seen as [rows, n]: the loops, or oneDNN's primitives. */
export interface SoftmaxRowOps {
  /** out = softmax(x) by rows (out may be x); false to give up (the kernel then falls back to its loops). */
  forward(x: Float32Array, out: Float32Array, n: number): boolean;
  /** dx = y ∘ (dy − rowsum(dy ∘ y)) (dx may be dy); false as above. */
  backward(dy: Float32Array, y: Float32Array, dx: Float32Array, n: number): boolean;
}

/** The blas backend's loops as {@linkcode SoftmaxRowOps}. */
const LOOPS: SoftmaxRowOps = {
  forward: (x, out, n) => (softmaxRows(x, out, n), true),
  backward: (dy, y, dx, n) => (softmaxGradRows(dy, y, dx, n), true),
};

/** The sizes of one call: b·h slices of n queries and nk keys, key width dk, value width dv, blocks of `block` rows. */
interface Sizes {
  slices: number;
  n: number;
  nk: number;
  dk: number;
  dv: number;
  block: number;
  scale: number;
  causal: boolean;
}

function sizesOf(name: string, inputs: Record<string, TensorInfo>, attrs: KernelArgs["attrs"]): Sizes {
  const { q, k, v } = inputs;
  const [b, h, n, dk] = q.shape;
  const [nk, dv] = [k.shape[2], v.shape[3]];
  const block = attrs?.blockSize ?? ATTENTION_BLOCK_SIZE;
  if (!(typeof block === "number" && Number.isInteger(block) && block >= 1)) {
    throw new RangeError(`${name}: attribute blockSize must be an integer >= 1, got ${block}`);
  }
  const causal = Boolean(attrs?.causal);
  if (causal && nk !== n) throw new RangeError(`${name}: causal attention needs as many keys as queries`);
  return { slices: b * h, n, nk, dk, dv, block: Math.min(block, n), scale: Number(attrs?.scale), causal };
}

/** The blocks of one slice: first query, rows, and keys seen. */
function* blocksOf(s: Sizes): Generator<{ start: number; rows: number; keys: number }> {
  for (let start = 0; start < s.n; start += s.block) {
    const rows = Math.min(s.block, s.n - start);
    yield { start, rows, keys: s.causal ? start + rows : s.nk };
  }
}

// Scores of several slices' blocks at once, so that one softmax call covers them all (a oneDNN call costs about as
// much as a few thousand elements' work): about 2^20 floats (4 MiB), per array.
const GROUP_ELEMENTS = 1 << 20;

/** Slices per group: as many [block, nk] score blocks as fit in GROUP_ELEMENTS, at least one. */
function groupOf(s: Sizes): number {
  return Math.max(1, Math.min(s.slices, Math.floor(GROUP_ELEMENTS / (s.block * s.nk))));
}

let scratch = new Float32Array(0);

/** Reusable scratch of at least `length` floats (kernels run one at a time, synchronously), cut into `sizes`. */
function scratchOf(...sizes: number[]): Float32Array[] {
  const total = sizes.reduce((x, y) => x + y, 0);
  if (scratch.length < total) scratch = new Float32Array(total);
  let at = 0;
  return sizes.map((size) => scratch.subarray(at, at += size));
}

/** One slice's views: its queries [n, dk], keys [nk, dk] and values [nk, dv] (and the same for any [.., n|nk, d]). */
function sliceOf(x: Float32Array, slice: number, rows: number, width: number): Float32Array {
  return x.subarray(slice * rows * width, (slice + 1) * rows * width);
}

/**
 * The probabilities of one block (first query `start`, `rows` rows, `keys` keys) for slices [first, first + count) into
 * p, slice g's at p[g · rows · keys]: scale · Q_B K_{:e}ᵀ by sgemm, −∞ above the diagonal when causal, then one row
 * softmax over them all.
 */
function groupProbabilities(
  gemm: Sgemm,
  ops: SoftmaxRowOps,
  x: { q: Float32Array; k: Float32Array; p: Float32Array },
  at: Sizes & { first: number; count: number; start: number; rows: number; keys: number },
): Float32Array {
  const { start, rows, keys, dk } = at;
  const p = x.p.subarray(0, at.count * rows * keys); // [count, rows, keys]
  for (let g = 0; g < at.count; g++) {
    const slice = at.first + g;
    const pg = p.subarray(g * rows * keys, (g + 1) * rows * keys);
    const qb = sliceOf(x.q, slice, at.n, dk).subarray(start * dk);
    const ks = sliceOf(x.k, slice, at.nk, dk);
    gemm({
      transA: false,
      transB: true,
      m: rows,
      n: keys,
      k: dk,
      a: qb,
      lda: dk,
      b: ks,
      ldb: dk,
      c: pg,
      ldc: keys,
      alpha: at.scale,
    });
    // Row i (query start + i) sees keys 0..start + i; the block's keys end at its last query.
    if (at.causal) { for (let i = 0; i < rows - 1; i++) pg.fill(-Infinity, i * keys + start + i + 1, (i + 1) * keys); }
  }
  if (!ops.forward(p, p, keys)) LOOPS.forward(p, p, keys);
  return p;
}

/** The groups of slices and, in each, the blocks: what both kernels walk. */
function* walk(s: Sizes): Generator<{ first: number; count: number; start: number; rows: number; keys: number }> {
  const group = groupOf(s);
  for (let first = 0; first < s.slices; first += group) {
    const count = Math.min(group, s.slices - first);
    for (const block of blocksOf(s)) yield { first, count, ...block };
  }
}

function attentionKernel(ops: SoftmaxRowOps, gemmOf: () => Sgemm) {
  return ({ inputs, backend, attrs }: KernelArgs): TensorInfo => {
    const s = sizesOf(SOFTMAX_ATTENTION, inputs as Record<string, TensorInfo>, attrs);
    const { n, nk, dv } = s;
    const [q, k, v] = [inputs.q!, inputs.k!, inputs.v!].map((x) => f32(backend, x));
    const out = allocFloat32(s.slices * n * dv);
    const [scores] = scratchOf(groupOf(s) * s.block * nk);
    const gemm = gemmOf();
    for (const at of walk(s)) {
      const { rows, keys, start } = at;
      const p = groupProbabilities(gemm, ops, { q, k, p: scores }, { ...s, ...at });
      for (let g = 0; g < at.count; g++) {
        const slice = at.first + g;
        // O_B = P V_{:e}: [rows, e] · [e, dv]
        const pg = p.subarray(g * rows * keys);
        const o = sliceOf(out, slice, n, dv).subarray(start * dv);
        const vs = sliceOf(v, slice, nk, dv);
        gemm({
          transA: false,
          transB: false,
          m: rows,
          n: dv,
          k: keys,
          a: pg,
          lda: keys,
          b: vs,
          ldb: dv,
          c: o,
          ldc: dv,
        });
      }
    }
    return backend.makeTensorInfo([...inputs.q!.shape.slice(0, 3), dv], "float32", out);
  };
}

function attentionGradKernel(ops: SoftmaxRowOps, gemmOf: () => Sgemm) {
  return ({ inputs, backend, attrs }: KernelArgs): TensorInfo[] => {
    const s = sizesOf(SOFTMAX_ATTENTION_GRAD, inputs as Record<string, TensorInfo>, attrs);
    const { n, nk, dk, dv, scale } = s;
    const [q, k, v, dy] = [inputs.q!, inputs.k!, inputs.v!, inputs.dy!].map((x) => f32(backend, x));
    const dq = allocFloat32(s.slices * n * dk);
    // dK and dV accumulate over the blocks that see each key.
    const dk_ = allocFloat32Zeroed(s.slices * nk * dk);
    const dv_ = allocFloat32Zeroed(s.slices * nk * dv);
    const size = groupOf(s) * s.block * nk;
    const [scores, dscores] = scratchOf(size, size);
    const gemm = gemmOf();
    for (const at of walk(s)) {
      const { rows, keys, start } = at;
      const p = groupProbabilities(gemm, ops, { q, k, p: scores }, { ...s, ...at });
      const dp = dscores.subarray(0, p.length);
      for (let g = 0; g < at.count; g++) {
        const slice = at.first + g;
        const [pg, dpg] = [p, dp].map((x) => x.subarray(g * rows * keys));
        const dob = sliceOf(dy, slice, n, dv).subarray(start * dv);
        const vs = sliceOf(v, slice, nk, dv);
        // dV_{:e} += Pᵀ dO_B: [e, rows] · [rows, dv]
        const dvs = sliceOf(dv_, slice, nk, dv);
        gemm({
          transA: true,
          transB: false,
          m: keys,
          n: dv,
          k: rows,
          a: pg,
          lda: keys,
          b: dob,
          ldb: dv,
          c: dvs,
          ldc: dv,
          beta: 1,
        });
        // dP = dO_B V_{:e}ᵀ: [rows, dv] · [dv, e]
        gemm({
          transA: false,
          transB: true,
          m: rows,
          n: keys,
          k: dv,
          a: dob,
          lda: dv,
          b: vs,
          ldb: dv,
          c: dpg,
          ldc: keys,
        });
      }
      // dS = P ∘ (dP − rowsum(P ∘ dP)), in place; masked entries have P = 0, so dS = 0 there.
      if (!ops.backward(dp, p, dp, keys)) LOOPS.backward(dp, p, dp, keys);
      for (let g = 0; g < at.count; g++) {
        const slice = at.first + g;
        const dsg = dp.subarray(g * rows * keys);
        const qb = sliceOf(q, slice, n, dk).subarray(start * dk);
        const ks = sliceOf(k, slice, nk, dk);
        // dQ_B = scale · dS K_{:e}: [rows, e] · [e, dk]
        const dqb = sliceOf(dq, slice, n, dk).subarray(start * dk);
        gemm({
          transA: false,
          transB: false,
          m: rows,
          n: dk,
          k: keys,
          a: dsg,
          lda: keys,
          b: ks,
          ldb: dk,
          c: dqb,
          ldc: dk,
          alpha: scale,
        });
        // dK_{:e} += scale · dSᵀ Q_B: [e, rows] · [rows, dk]
        const dks = sliceOf(dk_, slice, nk, dk);
        gemm({
          transA: true,
          transB: false,
          m: keys,
          n: dk,
          k: rows,
          a: dsg,
          lda: keys,
          b: qb,
          ldb: dk,
          c: dks,
          ldc: dk,
          alpha: scale,
          beta: 1,
        });
      }
    }
    return [
      backend.makeTensorInfo(inputs.q!.shape, "float32", dq),
      backend.makeTensorInfo(inputs.k!.shape, "float32", dk_),
      backend.makeTensorInfo(inputs.v!.shape, "float32", dv_),
    ];
  };
}

/**
 * The kernels of this module, by name, for the `blas` backend to register (through lib/blas/kernels.ts's
 * `fastKernels`): on the blas backend's row loops, or on `rows` (oneDNN's softmax primitives, from
 * lib/blas/dnnl_kernels.ts); their products by `options.sgemm`, by default the BLAS's (lib/blas/dnnl_kernels.ts gives
 * oneDNN's single-threaded sgemm, which ran a small model's attention, [16, 4, 128, 16], forward and backward in 0.83×
 * the time, and n = 2048 in about the same).
 *
 * @example
 * ```ts
 * import { fusedAttentionKernels, SOFTMAX_ATTENTION, SOFTMAX_ATTENTION_GRAD } from "./fused_attention.ts";
 * const names = Object.keys(fusedAttentionKernels());
 * console.log(names.includes(SOFTMAX_ATTENTION) && names.includes(SOFTMAX_ATTENTION_GRAD)); // true
 * ```
 */
export function fusedAttentionKernels(
  rows: SoftmaxRowOps = LOOPS,
  options: { sgemm?: Sgemm } = {},
): Record<string, Kernel> {
  const gemmOf = sgemmOf("fusedAttentionKernels", options);
  return {
    [SOFTMAX_ATTENTION]: attentionKernel(rows, gemmOf) as unknown as Kernel,
    [SOFTMAX_ATTENTION_GRAD]: attentionGradKernel(rows, gemmOf) as unknown as Kernel,
  };
}

/** Options of {@linkcode fusedSoftmaxAttention}. */
export interface FusedSoftmaxAttentionOptions {
  /** The logits' factor (> 0); default 1 / sqrt(dk). */
  scale?: number;
  /** Key j visible to query i only when j ≤ i (needs as many keys as queries); default false. */
  causal?: boolean;
  /** Query rows per block (an integer >= 1); default {@linkcode ATTENTION_BLOCK_SIZE}. */
  blockSize?: number;
}

/**
 * Whether {@linkcode fusedSoftmaxAttention} runs the fused kernel for these tensors here: on a backend that has it (the
 * blas backend), for float32 tensors that are not empty.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { fusesSoftmaxAttention } from "./fused_attention.ts";
 * await tf.setBackend("cpu");
 * const x = tf.ones([1, 1, 2, 2]) as tf.Tensor4D;
 * console.log(fusesSoftmaxAttention({ q: x, k: x, v: x })); // false
 * ```
 */
export function fusesSoftmaxAttention(qkv: { q: tf.Tensor4D; k: tf.Tensor4D; v: tf.Tensor4D }): boolean {
  const { q, k, v } = qkv;
  return hasFloat32Kernel(SOFTMAX_ATTENTION, [q, k, v]) && sizeOf(q.shape) > 0 && sizeOf(k.shape) > 0 &&
    sizeOf(v.shape) > 0;
}

/** [n, n]: −1e9 where key j lies after query i, else 0 (the attention variants' mask bias). */
function causalBias(n: number): tf.Tensor2D {
  const data = new Float32Array(n * n);
  for (let i = 0; i < n - 1; i++) data.fill(-1e9, i * n + i + 1, (i + 1) * n);
  return tf.tensor2d(data, [n, n]);
}

/** softmax(scale · Q Kᵀ + causal mask) [b, h, n, nk] in tf ops. */
function probabilities(qk: { q: tf.Tensor4D; k: tf.Tensor4D }, o: { scale: number; causal: boolean }): tf.Tensor4D {
  let logits: tf.Tensor = tf.mul(tf.matMul(qk.q, qk.k, false, true), o.scale); // [b, h, n, nk]
  if (o.causal) logits = tf.add(logits, causalBias(qk.q.shape[2])); // [b, h, n, n]
  return tf.softmax(logits) as tf.Tensor4D;
}

/** softmax(scale · Q Kᵀ + causal mask) V in tf ops: the composite the kernels stand for, and their fallback. */
function composite(
  qkv: { q: tf.Tensor4D; k: tf.Tensor4D; v: tf.Tensor4D },
  o: { scale: number; causal: boolean },
): tf.Tensor4D {
  return tf.tidy(() => tf.matMul(probabilities(qkv, o), qkv.v)); // [b, h, n, dv]
}

const registerGradient = gradientsOnce(() => [{
  kernelName: SOFTMAX_ATTENTION,
  inputsToSave: ["q", "k", "v"],
  gradFunc: (dy, saved, attrs) => {
    const [q, k, v] = saved as tf.Tensor4D[];
    const a = attrs as { scale: number; causal: boolean; blockSize: number };
    if (tf.engine().state.gradientDepth === 0 && hasFloat32Kernel(SOFTMAX_ATTENTION_GRAD, [dy as tf.Tensor])) {
      const [dq, dk, dv] = runKernel(SOFTMAX_ATTENTION_GRAD, { q, k, v, dy: dy as tf.Tensor }, a);
      return { q: () => dq, k: () => dk, v: () => dv };
    }
    // A gradient that is itself being differentiated: the kernel's products in differentiable ops.
    const g = dy as tf.Tensor4D;
    const p = probabilities({ q, k }, a); // [b, h, n, nk]
    const dp = tf.matMul(g, v, false, true); // [b, h, n, nk]
    const ds = tf.mul(p, tf.sub(dp, tf.sum(tf.mul(dp, p), -1, true))); // [b, h, n, nk]
    return {
      q: () => tf.mul(tf.matMul(ds, k), a.scale), // [b, h, n, dk]
      k: () => tf.mul(tf.matMul(ds, q, true, false), a.scale), // [b, h, nk, dk]
      v: () => tf.matMul(p, g, true, false), // [b, h, nk, dv]
    };
  },
}]);

/**
 * Softmax attention softmax(scale · Q Kᵀ + causal mask) V for q [b, h, n, dk], k [b, h, nk, dk], v [b, h, nk, dv]:
 * on the blas backend one fused kernel forward and one backward (O(blockSize · n) memory, the causal blocks above the
 * diagonal skipped), elsewhere the same computation in tf ops. Differentiable in q, k and v.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { fusedSoftmaxAttention } from "./fused_attention.ts";
 * const q = tf.zeros([1, 1, 3, 2]) as tf.Tensor4D;
 * const v = tf.tensor4d([1, 2, 3], [1, 1, 3, 1]);
 * // Equal scores: each row averages the values it sees.
 * console.log(Array.from(fusedSoftmaxAttention({ q, k: q, v }, { causal: true }).dataSync())); // [1, 1.5, 2]
 * ```
 */
export function fusedSoftmaxAttention(
  qkv: { q: tf.Tensor4D; k: tf.Tensor4D; v: tf.Tensor4D },
  options: FusedSoftmaxAttentionOptions = {},
): tf.Tensor4D {
  const { q, k, v } = qkv;
  for (const [name, x] of [["q", q], ["k", k], ["v", v]] as const) {
    if (!(x instanceof tf.Tensor) || x.rank !== 4) {
      throw new TypeError(`fusedSoftmaxAttention: ${name} must be a rank-4 tf.Tensor [b, h, n, d]`);
    }
  }
  if (
    k.shape[2] !== v.shape[2] || q.shape[3] !== k.shape[3] || q.shape[0] !== k.shape[0] || q.shape[1] !== k.shape[1]
  ) {
    throw new RangeError(
      `fusedSoftmaxAttention: shapes q [${q.shape}], k [${k.shape}], v [${v.shape}] do not fit: q and k need one dk, ` +
        "k and v one length, and all one batch and head count",
    );
  }
  const causal = options.causal ?? false;
  if (causal && q.shape[2] !== k.shape[2]) {
    throw new RangeError(
      `fusedSoftmaxAttention: causal needs as many keys as queries, got ${k.shape[2]} and ${q.shape[2]}`,
    );
  }
  const scale = options.scale ?? 1 / Math.sqrt(q.shape[3]);
  const blockSize = options.blockSize ?? ATTENTION_BLOCK_SIZE;
  if (!(scale > 0) || !Number.isFinite(scale)) {
    throw new RangeError(`fusedSoftmaxAttention: scale must be a finite number > 0, got ${scale}`);
  }
  if (!Number.isInteger(blockSize) || blockSize < 1) {
    throw new RangeError(`fusedSoftmaxAttention: blockSize must be an integer >= 1, got ${blockSize}`);
  }
  if (!fusesSoftmaxAttention(qkv)) return composite(qkv, { scale, causal });
  registerGradient();
  return runKernel(SOFTMAX_ATTENTION, { q, k, v }, { scale, causal, blockSize })[0] as tf.Tensor4D;
}
