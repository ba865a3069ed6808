/**
 * oneDNN's batched matmul (lib/blas/dnnl.ts's `matmul`) and the blas backend's BatchMatMul through it
 * (lib/blas/dnnl_kernels.ts's `dnnlBatchMatMul`).
 *
 * Tolerance: oneDNN sums each output's k products in float32 in its own order (blocked, with FMA), the cpu backend in
 * doubles within blocks of 48 rounded into a float32 accumulator, and OpenBLAS in a third order. A float32 sum of k
 * products in any order is within k · 2⁻²⁴ · Σ|aᵢ||bᵢ| of the exact sum (plus half an ulp for the final rounding),
 * so two such results differ by at most (k + 2) · 2⁻²³ · Σ|aᵢ||bᵢ|, element by element: the bound used here, with
 * Σ|aᵢ||bᵢ| computed as |A| · |B| (or, for a gradient, as the same gradient taken with every other operand's
 * absolute values, which is linear in those and so sums exactly the terms' magnitudes). NaN must match NaN and
 * infinities must be equal.
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { initBackend } from "../lib/backend.ts";
import { openDnnl } from "../lib/blas/dnnl.ts";
import {
  DNNL_MATMUL_RULE,
  dnnlBatchMatMul,
  type MatMulLayout,
  matMulLayout,
  prefersDnnlMatMul,
} from "../lib/blas/dnnl_kernels.ts";
import { openBlas } from "../lib/blas/sgemm.ts";
import { seededNormal } from "../lib/random.ts";
import { dnnlSetup } from "./helpers.ts";

const { hasBlas: HAS_BLAS, lib: LIB, hasDnnl: HAS_DNNL } = await dnnlSetup();
/** OpenBLAS's thread count, as the backend reads it. */
const BLAS_THREADS = HAS_BLAS ? openBlas().threads ?? navigator.hardwareConcurrency : 1;

function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

function seeded(shape: number[], seed: number, scale = 1): Float32Array {
  const normal = seededNormal(seed);
  return Float32Array.from({ length: product(shape) }, () => normal() * scale);
}

/** Asserts |actual − expected| ≤ (k + 2) · 2⁻²³ · bound element by element; NaN for NaN, equal infinities. */
function assertWithinSums(
  what: string,
  actual: Float32Array,
  expected: Float32Array,
  spec: { bound: Float32Array; k: number },
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const factor = (spec.k + 2) * 2 ** -23;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const ok = Number.isNaN(e)
      ? Number.isNaN(a)
      : !Number.isFinite(e)
      ? a === e
      : Math.abs(a - e) <= factor * spec.bound[i];
    if (!ok) assert.fail(`${what}: element ${i}: blas ${a}, reference ${e} (bound ${factor * spec.bound[i]})`);
  }
}

/** The values of fn's outputs on a backend, read inside a tidy; asserts that no tensor outlives it. */
async function valuesOn(name: "blas" | "cpu", fn: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  const previous = await initBackend({ quiet: true });
  await initBackend({ backend: name, quiet: true });
  const start = tf.memory().numTensors;
  try {
    let out: Float32Array[] = [];
    tf.tidy(() => {
      const result = fn();
      out = (Array.isArray(result) ? result : [result]).map((t) => Float32Array.from(t.dataSync() as Float32Array));
    });
    assert.equal(tf.memory().numTensors, start, `${name}: tensors leaked`);
    return out;
  } finally {
    await initBackend({ backend: previous, quiet: true });
  }
}

/** A matmul case: operands as stored (a transposed operand in its stored layout). */
interface Case {
  a: number[];
  b: number[];
  transA?: boolean;
  transB?: boolean;
}

function label(c: Case): string {
  return `[${c.a}]${c.transA ? "ᵀ" : ""} · [${c.b}]${c.transB ? "ᵀ" : ""}`;
}

function layoutOf(c: Case): MatMulLayout {
  return matMulLayout(c.a, c.b, { transA: c.transA, transB: c.transB });
}

/** Whether the blas backend runs this case in oneDNN (where oneDNN is loaded). */
function runsInDnnl(c: Case): boolean {
  return LIB !== undefined && prefersDnnlMatMul(layoutOf(c), { dnnl: LIB.threads, blas: BLAS_THREADS });
}

/**
 * Holds blas's matMul of c, and the gradients of Σ matMul · cot, to the cpu backend's within the bound. Gradients
 * only where the batch shapes are equal: tfjs's BatchMatMul gradient does not sum over broadcast batch dims.
 */
async function assertMatMulNearCpu(c: Case, seed: number): Promise<void> {
  const { m, n, k, outShape } = layoutOf(c);
  const a = seeded(c.a, seed);
  const b = seeded(c.b, seed + 1);
  const cot = seeded(outShape, seed + 2);
  const grads = c.a.slice(0, -2).join() === c.b.slice(0, -2).join();
  const f = (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y, c.transA, c.transB), z));
  const compute = (abs: boolean) => () => {
    const ta = tf.tensor(a, c.a);
    const tb = tf.tensor(b, c.b);
    const tc = tf.tensor(cot, outShape);
    const [x, y, z] = abs ? [tf.abs(ta), tf.abs(tb), tf.abs(tc)] : [ta, tb, tc];
    const out = [tf.matMul(x, y, c.transA, c.transB)];
    if (!grads) return out;
    // Taken at |b| and |cot| (abs), a's gradient is Σ |cot||b| over the summed index: its bound; likewise b's.
    const [ga] = tf.grads((p: tf.Tensor) => f(p, y, z))([ta]);
    const [gb] = tf.grads((q: tf.Tensor) => f(x, q, z))([tb]);
    return [...out, ga, gb];
  };
  const blas = await valuesOn("blas", compute(false));
  const cpu = await valuesOn("cpu", compute(false));
  const bounds = await valuesOn("cpu", compute(true));
  // The output sums k products; a's gradient n (cot · bᵀ), b's gradient m (aᵀ · cot).
  const depths = [k, n, m];
  blas.forEach((values, i) =>
    assertWithinSums(`${label(c)}: ${["output", "gradient of a", "gradient of b"][i]}`, values, cpu[i], {
      bound: bounds[i],
      k: depths[i],
    })
  );
}

// The training step's shapes (4 layers, d 64, 4 heads, 16 × 128; T2's blocks of 64) and awkward ones, every transpose.
const SHAPES: [number[], number[], number[], number[]][] = [
  // a as [rows, cols] untransposed, b likewise; transposing swaps the stored last two dims.
  [[16, 4], [128, 16], [16, 4], [16, 128]],
  [[16, 4], [128, 128], [16, 4], [128, 16]],
  [[16, 4, 2], [64, 16], [16, 4, 2], [16, 16]],
  [[], [2048, 64], [], [64, 171]],
  [[3], [37, 131], [3], [131, 29]],
  [[1], [67, 333], [1], [333, 45]],
  [[8], [1, 1000], [8], [1000, 64]],
  [[8], [300, 64], [8], [64, 1]],
  [[8], [300, 1], [8], [1, 300]],
  [[5], [3, 4], [5], [4, 2]],
];

function cases(): Case[] {
  const out: Case[] = [];
  const swap = (dims: number[]) => [dims[1], dims[0]];
  for (const [aBatch, aDims, bBatch, bDims] of SHAPES) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        out.push({
          a: [...aBatch, ...(transA ? swap(aDims) : aDims)],
          b: [...bBatch, ...(transB ? swap(bDims) : bDims)],
          transA,
          transB,
        });
      }
    }
  }
  return out;
}

Deno.test("dnnl matmul: matMulLayout merges batch dims that broadcast alike and folds a shared B into M", () => {
  assert.deepEqual(matMulLayout([16, 4, 128, 16], [16, 4, 16, 128], {}), {
    outShape: [16, 4, 128, 128],
    aBatch: [64],
    bBatch: [64],
    m: 128,
    n: 128,
    k: 16,
    transA: false,
    transB: false,
  });
  // A transposed: [2048, 64]ᵀ · [2048, 171] is 64 × 2048 by 2048 × 171.
  assert.deepEqual(matMulLayout([2048, 64], [2048, 171], { transA: true }), {
    outShape: [64, 171],
    aBatch: [],
    bBatch: [],
    m: 64,
    n: 171,
    k: 2048,
    transA: true,
    transB: false,
  });
  // Rank 4 by rank 2 folds into one product unless A is transposed.
  assert.deepEqual(matMulLayout([4, 3, 130, 70], [70, 90], {}).m, 4 * 3 * 130);
  const transposed = matMulLayout([4, 3, 70, 130], [70, 90], { transA: true });
  assert.deepEqual([transposed.aBatch, transposed.bBatch, transposed.m], [[12], [1], 130]);
  // Rank 2 by rank 4: B carries the batch.
  const shared = matMulLayout([130, 70], [4, 3, 70, 90], {});
  assert.deepEqual([shared.aBatch, shared.bBatch, shared.outShape], [[1], [12], [4, 3, 130, 90]]);
  // Batch 1 on either side, mixed, and size-1 output dims dropped.
  assert.deepEqual(matMulLayout([2, 1, 5, 3, 4], [1, 7, 5, 4, 6], {}).aBatch, [2, 1, 5]);
  assert.deepEqual(matMulLayout([2, 1, 5, 3, 4], [1, 7, 5, 4, 6], {}).bBatch, [1, 7, 5]);
  assert.deepEqual(matMulLayout([1, 6, 3, 4], [1, 6, 4, 5], {}).aBatch, [6]);
  assert.throws(
    () => matMulLayout([3, 4], [5, 6], {}),
    (e) => e instanceof RangeError && /inner dims 4 .* and 5/.test(e.message),
  );
  assert.throws(() => matMulLayout([2, 3, 4], [3, 4, 5], {}), /broadcast/i);
  assert.throws(() => matMulLayout([4], [4, 5], {}), RangeError);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => matMulLayout([2, 2], [2, 2], null as any), TypeError);
});

Deno.test("dnnl matmul: the dispatch rule's boundaries", () => {
  const { minFlops, minMatrixFlops, blasFromFlops, blasFromMatrixFlops } = DNNL_MATMUL_RULE;
  const two = { dnnl: 1, blas: 2 };
  const one = { dnnl: 1, blas: 1 };
  const layout = (batch: number, m: number, n: number, k: number) =>
    matMulLayout([batch, m, k], [batch, k, n], { transB: false });
  // 64 × 64 × 64 is 2¹⁹ FLOPs: oneDNN from there; 63 × 64 × 64 is below.
  assert.equal(2 * 64 * 64 * 64, minFlops);
  assert.equal(prefersDnnlMatMul(matMulLayout([64, 64], [64, 64], {}), two), true);
  assert.equal(prefersDnnlMatMul(matMulLayout([63, 64], [64, 64], {}), two), false);
  // 16³ matrices (2¹³ FLOPs each) in oneDNN once the batch reaches 2¹⁹ FLOPs; 8³ matrices never.
  assert.equal(2 * 16 ** 3, minMatrixFlops);
  assert.equal(prefersDnnlMatMul(layout(64, 16, 16, 16), two), true);
  assert.equal(prefersDnnlMatMul(layout(63, 16, 16, 16), two), false);
  assert.equal(prefersDnnlMatMul(layout(4096, 8, 8, 8), two), false);
  // The medium config's products (attention 2³⁰, dense 4096 × 256 × 256 = 2²⁹) go to a two-thread OpenBLAS and stay
  // in oneDNN beside a one-thread one; the small config's largest (2048 × 256 × 64, 2²⁶) stays in oneDNN.
  const medium = matMulLayout([8, 4, 512, 64], [8, 4, 512, 64], { transB: true });
  const dense = matMulLayout([8, 512, 256], [256, 256], {});
  assert.equal(2 * 4096 * 256 * 128, blasFromFlops);
  for (const big of [medium, dense]) {
    assert.equal(prefersDnnlMatMul(big, two), false);
    assert.equal(prefersDnnlMatMul(big, one), true);
    assert.equal(prefersDnnlMatMul(big, { dnnl: 2, blas: 2 }), true);
  }
  assert.equal(prefersDnnlMatMul(matMulLayout([4096, 256], [256, 127], {}), two), true);
  assert.equal(prefersDnnlMatMul(matMulLayout([4096, 256], [256, 128], {}), two), false);
  assert.equal(prefersDnnlMatMul(matMulLayout([16, 128, 64], [256, 64], { transB: true }), two), true);
  // A large batch of small matrices stays in oneDNN beside a two-thread OpenBLAS: local attention's causal products
  // at n = 2048 ([256] 64 × 128 × 64, 2²⁰ a matrix, 2²⁸ a call). Each matrix from 2²² (64 × 256 × 128) goes over.
  assert.equal(2 * 64 * 256 * 128, blasFromMatrixFlops);
  assert.equal(prefersDnnlMatMul(layout(256, 64, 64, 128), two), true);
  assert.equal(prefersDnnlMatMul(layout(64, 64, 256, 128), two), false);
  assert.equal(prefersDnnlMatMul(layout(64, 64, 255, 128), two), true);
  // A broadcast batch counts the output's matrices.
  assert.equal(prefersDnnlMatMul(matMulLayout([16, 16], [64, 16, 16], {}), two), true);
  assert.equal(prefersDnnlMatMul(medium, two, { rule: { ...DNNL_MATMUL_RULE, blasFromFlops: Infinity } }), true);
  assert.throws(() => prefersDnnlMatMul(medium, { dnnl: 0, blas: 1 }), RangeError);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => prefersDnnlMatMul({} as any, one), TypeError);
});

/** A float64 batched matmul with NumPy batch broadcasting, on arrays stored as the case says. */
function referenceMatMul(c: Case, a: Float32Array, b: Float32Array): { out: Float64Array; abs: Float64Array } {
  const { outShape, m, n, k } = layoutOf(c);
  const outBatch = outShape.slice(0, -2);
  const rank = outBatch.length;
  const pad = (s: number[]) => [...new Array(rank - s.length + 2).fill(1), ...s].slice(0, rank);
  const aBatch = pad(c.a);
  const bBatch = pad(c.b);
  const out = new Float64Array(product(outShape));
  const abs = new Float64Array(out.length);
  for (let t = 0; t < product(outBatch); t++) {
    let rest = t;
    let ia = 0;
    let ib = 0;
    let sa = 1;
    let sb = 1;
    for (let i = rank - 1; i >= 0; i--) {
      const index = rest % outBatch[i];
      rest = Math.floor(rest / outBatch[i]);
      if (aBatch[i] !== 1) ia += index * sa;
      if (bBatch[i] !== 1) ib += index * sb;
      sa *= aBatch[i];
      sb *= bBatch[i];
    }
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        let sAbs = 0;
        for (let p = 0; p < k; p++) {
          const x = a[ia * m * k + (c.transA ? p * m + i : i * k + p)];
          const y = b[ib * k * n + (c.transB ? j * k + p : p * n + j)];
          s += x * y;
          sAbs += Math.abs(x * y);
        }
        out[t * m * n + i * n + j] = s;
        abs[t * m * n + i * n + j] = sAbs;
      }
    }
  }
  return { out, abs };
}

Deno.test({
  name: "dnnl matmul: openDnnl().matmul against float64 sums: transposes, broadcasting, k = 0, tiny arrays, JIT",
  ignore: !HAS_DNNL,
  fn: () => {
    const lib = openDnnl();
    const layouts: Case[] = [
      { a: [4, 33, 17], b: [4, 17, 9] },
      { a: [4, 17, 33], b: [4, 9, 17], transA: true, transB: true },
      { a: [2, 1, 5, 6], b: [1, 3, 6, 7] },
      { a: [1, 3, 6, 5], b: [2, 3, 6, 7], transA: true },
      { a: [2, 3, 5, 6], b: [7, 6], transB: true },
      { a: [5, 6], b: [2, 3, 6, 7] },
      { a: [1, 1], b: [1, 1] },
      { a: [2, 1, 3], b: [2, 3, 1] },
      { a: [300, 64], b: [64, 70] },
    ];
    for (const c of layouts) {
      const layout = layoutOf(c);
      const a = seeded(c.a, 40);
      const b = seeded(c.b, 41);
      const out = new Float32Array(product(layout.outShape));
      assert.equal(lib.matmul({ a, b, out }, layout), true, label(c));
      assert.match(lib.implementations().matmul, /^(gemm:jit|brg:)/, `${label(c)}: a JIT implementation`);
      const { out: exact, abs } = referenceMatMul(c, a, b);
      out.forEach((v, i) => {
        const bound = (layout.k + 1) * 2 ** -24 * abs[i];
        assert.ok(Math.abs(v - exact[i]) <= bound, `${label(c)} element ${i}: ${v} vs ${exact[i]} (bound ${bound})`);
      });
    }
    // One primitive per layout: repeated calls build none.
    const cached = lib.cached();
    const c = layouts[0];
    const out = new Float32Array(product(layoutOf(c).outShape));
    for (let i = 0; i < 3; i++) lib.matmul({ a: seeded(c.a, i), b: seeded(c.b, i + 1), out }, layoutOf(c));
    assert.equal(lib.cached(), cached);
    // k = 0: zeros (an empty sum); m = 0: nothing.
    const zeros = new Float32Array(6).fill(7);
    assert.equal(
      lib.matmul({ a: new Float32Array(0), b: new Float32Array(0), out: zeros }, { m: 2, n: 3, k: 0 }),
      true,
    );
    assert.deepEqual(Array.from(zeros), [0, 0, 0, 0, 0, 0]);
    assert.equal(
      lib.matmul({ a: new Float32Array(0), b: new Float32Array(6), out: new Float32Array(0) }, {
        m: 0,
        n: 3,
        k: 2,
      }),
      true,
    );
  },
});

Deno.test({
  name: "dnnl matmul: bad arguments are RangeErrors naming what is wrong",
  ignore: !HAS_DNNL,
  fn: () => {
    const lib = openDnnl();
    const x = new Float32Array(6);
    assert.throws(
      () => lib.matmul({ a: x, b: new Float32Array(5), out: new Float32Array(4) }, { m: 2, n: 2, k: 3 }),
      (e) => e instanceof RangeError && /a has 6 elements and b 5; the dims ask for 6 and 6/.test(e.message),
    );
    assert.throws(
      () => lib.matmul({ a: x, b: x, out: new Float32Array(5) }, { m: 2, n: 2, k: 3, transB: true }),
      (e) => e instanceof RangeError && /out has 5 elements, the dims ask for 4/.test(e.message),
    );
    assert.throws(
      () => lib.matmul({ a: x, b: x, out: new Float32Array(4) }, { m: 2, n: 2, k: 1.5 }),
      (e) => e instanceof RangeError && /dims\.k/.test(e.message),
    );
    assert.throws(
      () => lib.matmul({ a: x, b: x, out: x }, { aBatch: [2], bBatch: [3], m: 1, n: 1, k: 3 }),
      (e) => e instanceof RangeError && /aBatch \[2\] and bBatch \[3\]/.test(e.message),
    );
    assert.throws(
      () =>
        lib.matmul({ a: new Int32Array(6) as unknown as Float32Array, b: x, out: new Float32Array(4) }, {
          m: 2,
          n: 2,
          k: 3,
          transB: true,
        }),
      (e) => e instanceof TypeError && /Float32Array/.test(e.message),
    );
    const kernel = (options: unknown) =>
      dnnlBatchMatMul(lib, () => ({ dataId: {}, shape: [], dtype: "float32" }), options as { blasThreads: number });
    assert.throws(() => kernel({ blasThreads: 0 }), (e) => e instanceof RangeError && /blasThreads/.test(e.message));
    assert.throws(() => kernel(null), TypeError);
  },
});

Deno.test({
  name: "dnnl matmul: BatchMatMul and its gradients match the cpu backend for every transpose and awkward shapes",
  ignore: !HAS_BLAS,
  fn: async (t) => {
    let dnnlCases = 0;
    for (const [i, c] of cases().entries()) {
      if (runsInDnnl(c)) dnnlCases++;
      await t.step(label(c), () => assertMatMulNearCpu(c, 100 + 3 * i));
    }
    // Most of them must have run in oneDNN for this to test it (all but the small [5] 3 × 4 × 2 and the [8] m = 1 …).
    if (LIB !== undefined) assert.ok(dnnlCases >= 28, `only ${dnnlCases} cases ran in oneDNN`);
  },
});

Deno.test({
  name: "dnnl matmul: batch broadcasting (rank 2 × rank 4, batch 1 on either side) matches the cpu backend",
  ignore: !HAS_BLAS,
  fn: async (t) => {
    const broadcasts: Case[] = [
      { a: [130, 70], b: [4, 3, 70, 90] },
      { a: [70, 130], b: [4, 3, 90, 70], transA: true, transB: true },
      { a: [4, 3, 130, 70], b: [70, 90] },
      { a: [4, 3, 70, 130], b: [90, 70], transA: true, transB: true },
      { a: [4, 3, 70, 130], b: [70, 90], transA: true },
      { a: [1, 3, 130, 70], b: [4, 3, 70, 90] },
      { a: [4, 3, 130, 70], b: [1, 3, 90, 70], transB: true },
      { a: [4, 3, 130, 70], b: [1, 1, 70, 90] },
      { a: [1, 12, 130, 70], b: [1, 12, 70, 90] },
    ];
    for (const [i, c] of broadcasts.entries()) {
      if (LIB !== undefined) assert.ok(runsInDnnl(c), `${label(c)} runs in oneDNN`);
      await t.step(label(c), () => assertMatMulNearCpu(c, 200 + 3 * i));
    }
  },
});

Deno.test({
  name: "dnnl matmul: batch dims broadcast both ways ([4, 1] × [1, 3]), where the cpu kernel is wrong: float64 sums",
  ignore: !HAS_BLAS,
  fn: async () => {
    for (const c of [{ a: [4, 1, 130, 70], b: [1, 3, 70, 90] }, { a: [4, 1, 70, 130], b: [3, 90, 70] }] as Case[]) {
      const cc = c.a[2] === 70 ? { ...c, transA: true, transB: true } : c;
      if (LIB !== undefined) assert.ok(runsInDnnl(cc), `${label(cc)} runs in oneDNN`);
      const a = seeded(cc.a, 50);
      const b = seeded(cc.b, 51);
      const [blas] = await valuesOn(
        "blas",
        () => tf.matMul(tf.tensor(a, cc.a), tf.tensor(b, cc.b), cc.transA, cc.transB),
      );
      const { out, abs } = referenceMatMul(cc, a, b);
      assertWithinSums(label(cc), blas, Float32Array.from(out), { bound: Float32Array.from(abs), k: 70 });
    }
  },
});

Deno.test({
  name: "dnnl matmul: NaN and infinities propagate as on the cpu backend; int32 and bool cast to float32 read right",
  ignore: !HAS_BLAS,
  fn: async () => {
    const shape = [8, 64, 64];
    const a = seeded(shape, 60);
    a[5] = NaN;
    a[64 * 64 + 70] = Infinity;
    a[2 * 64 * 64 + 3] = -Infinity;
    const b = seeded(shape, 61);
    const c = { a: shape, b: shape };
    if (LIB !== undefined) assert.ok(runsInDnnl(c));
    const compute = () => tf.matMul(tf.tensor(a, shape), tf.tensor(b, shape));
    const [blas] = await valuesOn("blas", compute);
    const [cpu] = await valuesOn("cpu", compute);
    const [bound] = await valuesOn("cpu", () => tf.matMul(tf.abs(tf.tensor(a, shape)), tf.abs(tf.tensor(b, shape))));
    assertWithinSums("with NaN and ±Infinity", blas, cpu, { bound, k: 64 });
    assert.ok(blas.some((v) => Number.isNaN(v)) && blas.some((v) => v === Infinity || v === -Infinity));
    // A float32 tensor cast from int32 or bool keeps the integer array: both paths (small: sgemm; large: oneDNN) must
    // read it as numbers. Integers up to 3 in k ≤ 128 sums are exact in float32.
    for (const [rows, k] of [[2, 3], [128, 128]]) {
      const ints = Int32Array.from({ length: rows * k }, (_, i) => (i * 7) % 5 - 2);
      const bools = Array.from({ length: k * rows }, (_, i) => i % 3 === 0);
      const cast = () =>
        tf.matMul(
          tf.cast(tf.tensor2d(ints, [rows, k], "int32"), "float32"),
          tf.cast(tf.tensor2d(bools, [k, rows], "bool"), "float32"),
        );
      const [x] = await valuesOn("blas", cast);
      const [y] = await valuesOn("cpu", cast);
      assert.deepEqual(x, y, `cast operands, ${rows} × ${k}`);
    }
  },
});

Deno.test({
  name: "dnnl matmul: _FusedMatMul with bias and activation matches the cpu backend on oneDNN-sized products",
  ignore: !HAS_BLAS,
  fn: async () => {
    for (const activation of ["relu", "elu", "linear"] as const) {
      const c = { a: [4, 130, 70], b: [4, 90, 70], transB: true };
      if (LIB !== undefined) assert.ok(runsInDnnl(c));
      const a = seeded(c.a, 70);
      const b = seeded(c.b, 71);
      const bias = seeded([90], 72);
      const compute = (abs: boolean) => () => {
        const [x, y] = [tf.tensor(a, c.a), tf.tensor(b, c.b)].map((v) => abs ? tf.abs(v) : v);
        return abs
          ? tf.add(tf.matMul(x, y, false, true), tf.abs(tf.tensor(bias)))
          : tf.fused.matMul({ a: x, b: y, transposeB: true, bias: tf.tensor(bias), activation });
      };
      const [blas] = await valuesOn("blas", compute(false));
      const [cpu] = await valuesOn("cpu", compute(false));
      const [bound] = await valuesOn("cpu", compute(true));
      // The activations are monotone with slope ≤ 1 (elu: e^x ≤ 1 below 0), so they keep the bound on the sum.
      assertWithinSums(`fused ${activation}`, blas, cpu, { bound, k: 71 });
    }
  },
});

Deno.test({
  name: "dnnl matmul: a training-like loop leaks no tensor and builds no primitive once its shapes are cached",
  ignore: !HAS_BLAS || LIB === undefined,
  fn: async () => {
    const previous = await initBackend({ quiet: true });
    await initBackend({ backend: "blas", quiet: true });
    try {
      const q = tf.tensor(seeded([4, 4, 128, 16], 80), [4, 4, 128, 16]);
      const w = tf.tensor(seeded([64, 64], 81), [64, 64]);
      const step = () =>
        tf.tidy(() => {
          const f = (x: tf.Tensor, y: tf.Tensor) => {
            const scores = tf.softmax(tf.matMul(x, x, false, true)); // [4, 4, 128, 128]
            const mixed = tf.reshape(tf.transpose(tf.matMul(scores, x), [0, 2, 1, 3]), [512, 64]); // [512, 64]
            return tf.sum(tf.matMul(mixed, y));
          };
          const [gq, gw] = tf.grads(f)([q, w]);
          return tf.add(tf.sum(gq), tf.sum(gw));
        });
      tf.dispose(step());
      const tensors = tf.memory().numTensors;
      const data = tf.backend().numDataIds();
      const cached = LIB!.cached();
      for (let i = 0; i < 4; i++) tf.dispose(step());
      assert.equal(LIB!.cached(), cached, "the second and later steps reuse the cached primitives");
      assert.equal(tf.memory().numTensors, tensors);
      assert.equal(tf.backend().numDataIds(), data);
      assert.match(LIB!.implementations().matmul, /^(gemm:jit|brg:)/);
      tf.dispose([q, w]);
    } finally {
      await initBackend({ backend: previous, quiet: true });
    }
  },
});

Deno.test({
  name: "dnnl matmul: ATTNLAB_BLAS_KERNELS=js is OpenBLAS's sgemm once per matrix, bit for bit",
  ignore: !HAS_BLAS,
  fn: async () => {
    // In a fresh process under js: tf.matMul on blas against cblas_sgemm called directly, matrix by matrix.
    const script = `
      import * as tf from "@tensorflow/tfjs";
      import { initBackend } from "./lib/backend.ts";
      import { blasDnnl } from "./lib/blas/backend.ts";
      import { openBlas } from "./lib/blas/sgemm.ts";
      await initBackend({ backend: "blas", quiet: true });
      const blas = openBlas();
      let same = 0, total = 0;
      for (const [batch, m, n, k, tA, tB] of [[64, 128, 128, 16, false, true], [64, 128, 16, 128, true, false],
        [8, 33, 65, 17, true, true], [1, 2048, 64, 64, false, false]]) {
        const a = Float32Array.from({ length: batch * m * k }, (_, i) => Math.sin(i));
        const b = Float32Array.from({ length: batch * k * n }, (_, i) => Math.cos(i));
        const got = tf.tidy(() => tf.matMul(tf.tensor(a, [batch, ...(tA ? [k, m] : [m, k])]),
          tf.tensor(b, [batch, ...(tB ? [n, k] : [k, n])]), tA, tB).dataSync());
        const want = new Float32Array(batch * m * n);
        for (let i = 0; i < batch; i++) {
          blas.sgemm({ transA: tA, transB: tB, m, n, k, a: a.subarray(i * m * k), lda: tA ? m : k,
            b: b.subarray(i * k * n), ldb: tB ? k : n, c: want.subarray(i * m * n), ldc: n });
        }
        total += want.length;
        for (let i = 0; i < want.length; i++) if (Object.is(got[i], want[i])) same++;
      }
      console.log(JSON.stringify({ same, total, dnnl: blasDnnl() === undefined ? null : "loaded" }));`;
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["eval", script],
      env: { NO_COLOR: "1", ATTNLAB_BLAS_KERNELS: "js" },
      cwd: new URL("..", import.meta.url),
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    const result = JSON.parse(new TextDecoder().decode(stdout).trim().split("\n").at(-1)!);
    assert.equal(result.dnnl, null);
    assert.ok(result.total > 0);
    assert.equal(result.same, result.total, "every element has sgemm's bits");
  },
});
