/**
 * oneDNN through FFI (lib/blas/dnnl.ts) and the blas backend's oneDNN kernels (lib/blas/dnnl_kernels.ts).
 *
 * The kernels are held to the cpu backend's kernels element by element, |blas − cpu| ≤ atol + rtol · |cpu| (NaN where
 * cpu has NaN, the same infinities), with tolerances from what oneDNN computes differently:
 *
 * - exact (0, 0) for Add, Sub, Multiply, RealDiv, Sqrt, Square, Abs, Relu: IEEE float32 arithmetic, correctly rounded
 *   in oneDNN as in the cpu kernel (which computes in doubles and rounds once: the same float32 for +, −, ×, ÷ and √);
 *   ±0 compare equal;
 * - rtol 1e-6 (about 8 float32 ulps; measured at most 3), atol 2⁻²³ for Exp, Sigmoid, Tanh, Elu, EluGrad and the fused
 *   elu + 1 (e^min(x, 0) by oneDNN's exp, x − relu(x) and the sum exact or rounded once):
 *   oneDNN's vector exp, logistic and tanh are polynomials a few ulps from the correctly rounded result; its elu
 *   computes e^x − 1 in float32, so near 0 its error is an ulp of 1 (2⁻²³) absolute; and it flushes results below the
 *   smallest normal float32 (e^−87) to 0, where the cpu kernel keeps the subnormal;
 * - rtol 2e-6, atol 1e-30 for Softmax: the row sum in float32 in oneDNN's order against the cpu kernel's double sum
 *   (measured at most 7 ulps at n = 1000), and flushed subnormals as above;
 * - softmax cross-entropy's forward, −log p[target] from oneDNN's softmax p (relative error ≤ 2e-6, as above, and
 *   p ≥ 1e-30 or the call goes to the double-precision loop): |loss − exact| ≤ w · 2.1e-6 + an ulp of the loss (since
 *   −log(p(1 + δ)) = −log p − log(1 + δ)), and its gradient w · dy · (p − onehot) within w · |dy| · (2e-6 · p + 2⁻²³);
 * - reductions and the gradients that sum: 2⁻²⁰ · Σ|terms| absolute: float32 sums in blocks against the cpu kernels'
 *   double sums (measured 3 · 10⁻⁸ · Σ|x|); gradients through several ops: rtol 1e-5 and 1e-6 · max|cpu|.
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { initBackend } from "../lib/backend.ts";
import { blasOverrides } from "../lib/blas/backend.ts";
import { DNNL_CACHE_ENTRIES, dnnlThreadRequest, openDnnl } from "../lib/blas/dnnl.ts";
import { collapsedPermutation, DNNL_MIN_ELEMENTS, dnnlBroadcast } from "../lib/blas/dnnl_kernels.ts";
import { SOFTMAX_CROSS_ENTROPY, softmaxCrossEntropy } from "../lib/blas/fused_loss.ts";
import { eluPlusOne, RELU_GRAD, siluGate, SOFTMAX_GRAD } from "../lib/blas/fused.ts";
import { seededNormal } from "../lib/random.ts";
import { dnnlSetup } from "./helpers.ts";

const { hasBlas: HAS_BLAS, lib: LIB, hasDnnl: HAS_DNNL } = await dnnlSetup();

interface Tolerance {
  rtol: number;
  atol: number;
}
const EXACT: Tolerance = { rtol: 0, atol: 0 };
const ELTWISE: Tolerance = { rtol: 1e-6, atol: 2 ** -23 };
const SOFTMAX: Tolerance = { rtol: 2e-6, atol: 1e-30 };

function seeded(shape: number[], seed: number, options: { positive?: boolean; scale?: number } = {}): Float32Array {
  const normal = seededNormal(seed);
  const size = shape.reduce((a, b) => a * b, 1);
  const { positive = false, scale = 1 } = options;
  return Float32Array.from({ length: size }, () => {
    const v = normal() * scale;
    return positive ? Math.abs(v) + 0.1 : v;
  });
}

/** Asserts |actual − expected| ≤ atol + rtol · |expected| everywhere, NaN for NaN and equal infinities. */
function assertWithin(what: string, actual: Float32Array, expected: Float32Array, tol: Tolerance): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const ok = Number.isNaN(e)
      ? Number.isNaN(a)
      : !Number.isFinite(e)
      ? a === e
      : Math.abs(a - e) <= tol.atol + tol.rtol * Math.abs(e);
    if (!ok) assert.fail(`${what}: element ${i}: blas ${a}, cpu ${e} (rtol ${tol.rtol}, atol ${tol.atol})`);
  }
}

/** The values of fn's outputs on a backend, read out inside a tidy; no tensor outlives it. */
async function valuesOn(name: "blas" | "cpu", fn: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  const previous = await initBackend({ quiet: true });
  await initBackend({ backend: name, quiet: true });
  try {
    let out: Float32Array[] = [];
    tf.tidy(() => {
      const result = fn();
      out = (Array.isArray(result) ? result : [result]).map((t) => Float32Array.from(t.dataSync() as Float32Array));
    });
    return out;
  } finally {
    await initBackend({ backend: previous, quiet: true });
  }
}

/** Runs fn on blas and cpu and holds each output within `tol` (a function of the output's index and cpu values). */
async function assertNearCpu(
  what: string,
  fn: () => tf.Tensor | tf.Tensor[],
  tol: Tolerance | ((index: number, cpu: Float32Array) => Tolerance),
): Promise<void> {
  const blas = await valuesOn("blas", fn);
  const cpu = await valuesOn("cpu", fn);
  assert.equal(blas.length, cpu.length, `${what}: number of outputs`);
  blas.forEach((b, i) =>
    assertWithin(`${what}: output ${i}`, b, cpu[i], typeof tol === "function" ? tol(i, cpu[i]) : tol)
  );
}

function maxAbs(values: Float32Array): number {
  let m = 0;
  for (const v of values) if (Number.isFinite(v)) m = Math.max(m, Math.abs(v));
  return m;
}

/** Output and gradients of sum(f(xs) · cotangent) with respect to every input. */
function withGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, xs: tf.Tensor[]): tf.Tensor[] {
  const out = f(...xs);
  const cot = tf.tensor(seeded(out.shape, 99), out.shape);
  return [out, ...tf.grads((...ys: tf.Tensor[]) => tf.sum(tf.mul(f(...ys), cot)))(xs)];
}

/** Tolerance for gradients through several ops: rtol 1e-5 and 1e-6 of the largest cpu value. */
const GRADIENT = (_: number, cpu: Float32Array): Tolerance => ({ rtol: 1e-5, atol: 1e-6 * maxAbs(cpu) });

// Shapes at and above each kernel's oneDNN threshold (so oneDNN runs), odd sizes, and one below it (the loops run).
const UNARY_SHAPES: number[][] = [[1], [4099], [3, 1031], [2, 3, 5, 139], [64, 64]];

Deno.test({
  name: "dnnl: openDnnl loads 2.x, computes exp on small and large arrays, and caches one primitive per shape",
  ignore: !HAS_DNNL,
  fn: () => {
    const lib = openDnnl();
    assert.match(lib.version, /^2\.\d+\.\d+$/);
    assert.ok(lib.threads >= 1);
    for (const n of [1, 5, 17, 1000]) {
      const x = Float32Array.from({ length: n }, (_, i) => (i % 13) - 6.5);
      const out = new Float32Array(n);
      assert.equal(lib.eltwise("exp", { x, out }), true);
      x.forEach((v, i) => assert.ok(Math.abs(out[i] - Math.exp(v)) <= 1e-6 * Math.exp(v), `exp(${v}) = ${out[i]}`));
    }
    const cached = lib.cached();
    const x = new Float32Array(1000);
    for (let i = 0; i < 5; i++) lib.eltwise("exp", { x, out: new Float32Array(1000) });
    assert.equal(lib.cached(), cached, "a repeated shape builds no primitive");
    assert.equal(lib.implementations()["eltwise exp"].startsWith("ref"), false);
  },
});

Deno.test({
  name: "dnnl: softmax, its gradient's parts, binary ops with broadcast and a post-op, reductions, sgemm",
  ignore: !HAS_DNNL,
  fn: () => {
    const lib = openDnnl();
    const rows = 3;
    const n = 5;
    const x = seeded([rows, n], 1);
    const y = new Float32Array(rows * n);
    assert.equal(lib.softmax({ x, out: y }, { rows, n }), true);
    for (let r = 0; r < rows; r++) {
      const row = Array.from(x.subarray(r * n, (r + 1) * n));
      const m = Math.max(...row);
      const z = row.reduce((s, v) => s + Math.exp(v - m), 0);
      row.forEach((v, j) => assert.ok(Math.abs(y[r * n + j] - Math.exp(v - m) / z) < 1e-7));
    }
    // (a − b) · c with b broadcast along rows: [rows, n] − [rows, 1], then times [1, n].
    const a = seeded([rows, n], 2);
    const b = seeded([rows, 1], 3);
    const c = seeded([1, n], 4);
    const out = new Float32Array(rows * n);
    lib.binary("sub", { a, aDims: [rows, n], b, bDims: [rows, 1], out, then: { op: "mul", c, cDims: [1, n] } });
    for (let i = 0; i < rows * n; i++) {
      assert.equal(out[i], Math.fround(Math.fround(a[i] - b[(i / n) | 0]) * c[i % n]));
    }
    const sums = new Float32Array(rows);
    assert.equal(lib.reduction("sum", { x: a, xDims: [rows, n], out: sums, outDims: [rows, 1] }), true);
    for (let r = 0; r < rows; r++) {
      const exact = a.subarray(r * n, (r + 1) * n).reduce((s, v) => s + v, 0);
      assert.ok(Math.abs(sums[r] - exact) < 1e-6, `row ${r}: ${sums[r]} vs ${exact}`);
    }
    // C = A · B: [2, 3] · [3, 1].
    const gemm = new Float32Array(2);
    lib.sgemm({
      transA: false,
      transB: false,
      m: 2,
      n: 1,
      k: 3,
      a: new Float32Array([1, 2, 3, 4, 5, 6]),
      lda: 3,
      b: new Float32Array([1, 10, 100]),
      ldb: 1,
      c: gemm,
      ldc: 1,
    });
    assert.deepEqual(Array.from(gemm), [321, 654]);
  },
});

Deno.test({
  name: "dnnl: bad arguments are RangeErrors naming the operation; a failing oneDNN call names the call and status",
  ignore: !HAS_DNNL,
  fn: () => {
    const lib = openDnnl();
    const x = new Float32Array(4);
    assert.throws(
      () => lib.eltwise("cosine" as "exp", { x, out: x }),
      (e) => e instanceof RangeError && /cosine/.test(e.message),
    );
    assert.throws(() => lib.eltwise("exp", { x, out: new Float32Array(3) }), RangeError);
    assert.throws(
      () => lib.binary("add", { a: x, aDims: [2, 2], b: x, bDims: [4, 1], out: x }),
      (e) => e instanceof RangeError && /b's and c's dims/.test(e.message),
    );
    assert.throws(() => lib.softmax({ x, out: x }, { rows: 3, n: 2 }), RangeError);
    // Any other typed array is refused before oneDNN reads it.
    assert.throws(
      () => lib.eltwise("exp", { x: new Int32Array(4) as unknown as Float32Array, out: x }),
      (e) => e instanceof TypeError && /Float32Array/.test(e.message),
    );
    // Dims whose product fits the arrays but which oneDNN rejects.
    assert.throws(
      () => lib.binary("add", { a: x, aDims: [-2, -2], b: x, bDims: [-2, -2], out: x }),
      (e) =>
        e instanceof Error && /dnnl_memory_desc_init_by_strides failed with dnnl_invalid_arguments/.test(e.message),
    );
  },
});

Deno.test({
  name: "dnnl: the primitive cache stays within DNNL_CACHE_ENTRIES, least recently used evicted first",
  ignore: !HAS_DNNL,
  fn: () => {
    const lib = openDnnl();
    const out = new Float32Array(DNNL_CACHE_ENTRIES + 40);
    for (let n = 1; n <= DNNL_CACHE_ENTRIES + 40; n++) {
      lib.eltwise("abs", { x: out.subarray(0, n), out: out.subarray(0, n) });
    }
    assert.equal(lib.cached(), DNNL_CACHE_ENTRIES);
    // Still correct after evictions (the evicted primitives were destroyed, not the live ones).
    const x = new Float32Array([-1, 2, -3]);
    const y = new Float32Array(3);
    lib.eltwise("abs", { x, out: y });
    assert.deepEqual(Array.from(y), [1, 2, 3]);
  },
});

Deno.test("dnnl: thread requests: OMP_NUM_THREADS when set, else one thread", () => {
  assert.equal(dnnlThreadRequest({}), 1);
  assert.equal(dnnlThreadRequest({ OPENBLAS_NUM_THREADS: "2" }), 1);
  assert.equal(dnnlThreadRequest({ OMP_NUM_THREADS: "" }), 1);
  assert.equal(dnnlThreadRequest({ OMP_NUM_THREADS: "2", OPENBLAS_NUM_THREADS: "1" }), undefined);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => dnnlThreadRequest(null as any), TypeError);
});

Deno.test({
  name: "dnnl: oneDNN runs one thread unless OMP_NUM_THREADS says otherwise",
  ignore: !HAS_DNNL,
  fn: async () => {
    const threads = async (env: Record<string, string>) => {
      const script = "import { openDnnl } from './lib/blas/dnnl.ts'; console.log(openDnnl().threads);";
      const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
        args: ["eval", script],
        env: { ...env, NO_COLOR: "1" },
        cwd: new URL("..", import.meta.url),
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(code, 0, new TextDecoder().decode(stderr));
      return Number(new TextDecoder().decode(stdout).trim());
    };
    assert.equal(await threads({ OMP_NUM_THREADS: "" }), 1);
    assert.equal(await threads({ OMP_NUM_THREADS: "3", OPENBLAS_NUM_THREADS: "1" }), 3);
  },
});

Deno.test("dnnl: dnnlBroadcast merges dims that broadcast alike and swaps only commuting ops", () => {
  assert.deepEqual(dnnlBroadcast([16, 4, 128, 128], [16, 1, 1, 128], { commutes: false }), {
    swap: false,
    outShape: [16, 4, 128, 128],
    fullDims: [16, 512, 128],
    otherDims: [16, 1, 128],
  });
  assert.deepEqual(dnnlBroadcast([64], [2048, 64], { commutes: true }), {
    swap: true,
    outShape: [2048, 64],
    fullDims: [2048, 64],
    otherDims: [1, 64],
  });
  assert.equal(dnnlBroadcast([64], [2048, 64], { commutes: false }), undefined);
  assert.equal(dnnlBroadcast([7, 1], [1, 9], { commutes: true }), undefined);
  assert.deepEqual(dnnlBroadcast([3, 4], [], { commutes: false })?.otherDims, [1]);
  assert.deepEqual(dnnlBroadcast([1, 1], [1], { commutes: false })?.fullDims, [1]);
  assert.deepEqual(dnnlBroadcast([2, 3, 4], [2, 3, 4], { commutes: false })?.fullDims, [24]);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => dnnlBroadcast([2], [2], true as any), TypeError);
});

Deno.test({
  name: "dnnl kernels: unary ops and EluGrad match the cpu kernels within tolerance, above and below the threshold",
  ignore: !HAS_BLAS,
  fn: async () => {
    const cases: [string, (x: tf.Tensor) => tf.Tensor, Tolerance, boolean][] = [
      ["exp", tf.exp, ELTWISE, false],
      ["sigmoid", tf.sigmoid, ELTWISE, false],
      ["tanh", tf.tanh, ELTWISE, false],
      ["elu", tf.elu, ELTWISE, false],
      ["sqrt", tf.sqrt, EXACT, true],
      ["square", tf.square, EXACT, false],
      ["abs", tf.abs, EXACT, false],
      ["relu", tf.relu, EXACT, false],
    ];
    for (const [name, op, tol, positive] of cases) {
      for (const shape of UNARY_SHAPES) {
        await assertNearCpu(
          `${name} [${shape}]`,
          () => op(tf.tensor(seeded(shape, 5, { positive, scale: 4 }), shape)),
          tol,
        );
      }
    }
    // Inputs near 0 (elu's e^x − 1) and far out (exp's overflow and underflow).
    for (const scale of [1e-4, 40]) {
      await assertNearCpu(`exp, sigmoid, tanh, elu, scale ${scale}`, () => {
        const x = tf.tensor(seeded([4099], 6, { scale }));
        return [tf.exp(x), tf.sigmoid(x), tf.tanh(x), tf.elu(x)];
      }, ELTWISE);
    }
    for (const shape of UNARY_SHAPES) {
      await assertNearCpu(`EluGrad [${shape}]`, () => {
        const x = tf.tensor(seeded(shape, 7, { scale: 3 }), shape);
        return tf.grad((z: tf.Tensor) => tf.sum(tf.mul(tf.elu(z), tf.tensor(seeded(shape, 8), shape))))(x);
      }, ELTWISE);
    }
  },
});

Deno.test({
  name: "dnnl kernels: NaN, ±Infinity and -1e9 give what the cpu kernels give (Exp, Relu, Softmax)",
  ignore: !HAS_BLAS,
  fn: async () => {
    const n = 4099;
    const specials = [NaN, Infinity, -Infinity, -1e9, 1e9, 0, -0, 100, -100];
    const withSpecials = (seed: number, which: number[]) => {
      const x = seeded([n], seed, { scale: 3 });
      which.forEach((k, i) => x[37 * i + 11] = specials[k]);
      return tf.tensor(x);
    };
    for (const which of [[0], [1], [2], [3, 4], [1, 2], [5, 6, 7, 8]]) {
      await assertNearCpu(`unary ops with ${which.map((k) => specials[k])}`, () => {
        const x = withSpecials(9, which);
        return [tf.exp(x), tf.relu(x), tf.sigmoid(x), tf.tanh(x), tf.elu(x), tf.abs(x), tf.square(x), tf.sqrt(x)];
      }, ELTWISE);
    }
    // Softmax rows: ordinary, fully masked with -1e9 (uniform), masked in part, all -Infinity (NaN on cpu), one NaN,
    // one +Infinity (NaN on cpu), one -Infinity: each batch needs oneDNN to hand the non-finite ones back.
    const n2 = 129;
    const row = (fill: (j: number) => number) => Array.from({ length: n2 }, (_, j) => fill(j));
    const base = seeded([n2], 10, { scale: 2 });
    const rows = [
      row((j) => base[j]),
      row(() => -1e9),
      row((j) => j % 3 === 0 ? base[j] : -1e9),
      row(() => -Infinity),
      row((j) => j === 5 ? NaN : base[j]),
      row((j) => j === 7 ? Infinity : base[j]),
      row((j) => j === 9 ? -Infinity : base[j]),
    ];
    for (const pick of [[0, 1, 2], [0, 3], [0, 4], [0, 5], [0, 6], [1, 1, 1]]) {
      const picked = pick.flatMap((r) => rows[r]);
      // Repeated to pass the threshold.
      const times = Math.ceil(4 * DNNL_MIN_ELEMENTS[tf.Softmax] / picked.length);
      const data = Array.from({ length: times }, () => picked).flat();
      await assertNearCpu(
        `softmax rows ${pick}`,
        () => tf.softmax(tf.tensor2d(data, [times * pick.length, n2])),
        SOFTMAX,
      );
    }
  },
});

Deno.test({
  name: "dnnl kernels: eluPlusOne and its gradient match the cpu composite, NaN and ±Infinity included",
  ignore: !HAS_BLAS,
  fn: async () => {
    // Gradient: min(y, 1) · dy, with y within ELTWISE of cpu's: rtol 1e-6 and an ulp of the largest |dy|.
    const gradient = (i: number) => i === 0 ? ELTWISE : { rtol: 1e-6, atol: 2 ** -23 * 4 };
    for (const shape of UNARY_SHAPES) {
      await assertNearCpu(
        `eluPlusOne and its gradient [${shape}]`,
        () => withGrads(eluPlusOne, [tf.tensor(seeded(shape, 71, { scale: 3 }), shape)]),
        gradient,
      );
    }
    const specials = [NaN, Infinity, -Infinity, -1e9, 1e9, 0, -0, 100, -100];
    for (const k of specials.keys()) {
      const x = seeded([4099], 72, { scale: 3 });
      x[1234] = specials[k];
      await assertNearCpu(`eluPlusOne with ${specials[k]}`, () => withGrads(eluPlusOne, [tf.tensor(x)]), gradient);
    }
  },
});

Deno.test({
  name: "dnnl kernels: relu's fused gradient equals cpu's dy · step(x) exactly, with NaN and ±Infinity in x and dy",
  ignore: !HAS_BLAS,
  fn: async () => {
    const exact = { rtol: 0, atol: 0 };
    for (const shape of UNARY_SHAPES) {
      await assertNearCpu(
        `relu and its gradient [${shape}]`,
        () => withGrads(tf.relu, [tf.tensor(seeded(shape, 73, { scale: 3 }), shape)]),
        exact,
      );
    }
    // dy = c: the gradient of sum(relu(x) · c). Specials in x (step(NaN) is NaN) and in dy (0 · ±Inf is NaN).
    const specials = [NaN, Infinity, -Infinity, 0, -0, -1e9, 1e9];
    for (const k of specials.keys()) {
      for (const where of ["x", "dy"] as const) {
        const x = seeded([4099], 74, { scale: 3 });
        const c = seeded([4099], 75);
        (where === "x" ? x : c)[1234] = specials[k];
        // Where dy is special, x at that index is negative too, so both its branches are seen across k.
        if (where === "dy") x[1234] = k % 2 === 0 ? -1 : 1;
        await assertNearCpu(
          `relu's gradient with ${specials[k]} in ${where}`,
          () => tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.relu(v), tf.tensor(c))))(tf.tensor(x)),
          exact,
        );
      }
    }
    // And the fused kernel is what ran on blas: no Step, no Multiply.
    const previous = await initBackend({ quiet: true });
    await initBackend({ backend: "blas", quiet: true });
    try {
      const x = tf.tensor(seeded([4099], 76));
      const info = await tf.profile(() => tf.grad((v: tf.Tensor) => tf.relu(v))(x));
      x.dispose();
      const names = info.kernelNames;
      assert.ok(names.includes(RELU_GRAD) && !names.includes("Step"), `kernels run: ${names.join(", ")}`);
    } finally {
      await initBackend({ backend: previous, quiet: true });
    }
  },
});

Deno.test({
  name: "dnnl kernels: Softmax and its gradient match the cpu backend on awkward shapes",
  ignore: !HAS_BLAS,
  fn: async () => {
    // [1100, 129] runs in two blocks of rows (1016 and 84).
    const shapes = [[4099, 1], [1, 4099], [33, 129], [2, 3, 5, 67], [16, 4, 16, 16], [2, 2], [1100, 129]];
    for (const shape of shapes) {
      await assertNearCpu(
        `softmax [${shape}]`,
        () => tf.softmax(tf.tensor(seeded(shape, 11, { scale: 3 }), shape)),
        SOFTMAX,
      );
      await assertNearCpu(
        `softmax and its gradient [${shape}]`,
        () => withGrads((x) => tf.softmax(x), [tf.tensor(seeded(shape, 12, { scale: 3 }), shape)]),
        (i, cpu) => i === 0 ? SOFTMAX : { rtol: 1e-5, atol: 2 ** -20 * Math.max(1, maxAbs(cpu)) },
      );
    }
    // A NaN or +Infinity in the second block hands the whole call to the loops.
    for (const bad of [NaN, Infinity]) {
      const data = seeded([1100, 129], 33, { scale: 3 });
      data[1050 * 129 + 7] = bad;
      await assertNearCpu(
        `softmax with ${bad} in the second block`,
        () => tf.softmax(tf.tensor(data, [1100, 129])),
        SOFTMAX,
      );
    }
    // Attention-like: masked logits, softmax over the keys, gradient through a product with values.
    await assertNearCpu("masked attention weights and gradients", () => {
      const logits = tf.tensor(seeded([2, 2, 32, 32], 13, { scale: 2 }), [2, 2, 32, 32]);
      const mask = tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([32, 32]), -1, 0)), -1e9);
      const v = tf.tensor(seeded([2, 2, 32, 8], 14), [2, 2, 32, 8]);
      return withGrads((l, vv) => tf.matMul(tf.softmax(tf.add(l, mask)), vv), [logits, v]);
    }, GRADIENT);
  },
});

Deno.test({
  name: "dnnl kernels: softmax cross-entropy (oneDNN's softmax) is within its bound of the exact loss and gradient",
  ignore: !HAS_BLAS,
  fn: async () => {
    /** Logits [rows, V], targets, weights (a third 0) and the upstream gradient, seeded; `edit` may change logits. */
    const makeCase = (rows: number, classes: number, seed: number, edit?: (x: Float32Array, t: Int32Array) => void) => {
      const logits = seeded([rows, classes], seed, { scale: 3 });
      const targets = Int32Array.from({ length: rows }, (_, r) => (r * 7919 + seed) % classes);
      const weights = Float32Array.from({ length: rows }, (_, r) => (r % 3 === 1 ? 0 : r % 3 === 2 ? 0.5 : 1));
      edit?.(logits, targets);
      return { rows, classes, logits, targets, weights, cot: seeded([rows], seed + 1) };
    };
    type Case = ReturnType<typeof makeCase>;
    /** The exact loss per row and its gradient, in doubles. */
    const exact = (c: Case) => {
      const loss: number[] = [];
      const grad: number[] = [];
      for (let r = 0; r < c.rows; r++) {
        const row = Array.from(c.logits.subarray(r * c.classes, (r + 1) * c.classes));
        const max = Math.max(...row);
        const logSum = max + Math.log(row.reduce((sum, x) => sum + Math.exp(x - max), 0));
        const w = c.weights[r];
        loss.push(w * (logSum - row[c.targets[r]]));
        row.forEach((x, j) => grad.push(w * c.cot[r] * (Math.exp(x - logSum) - (j === c.targets[r] ? 1 : 0))));
      }
      return { loss, grad };
    };
    const run = (c: Case) =>
      valuesOn("blas", () => {
        const logits = tf.tensor2d(c.logits, [c.rows, c.classes]);
        const targets = tf.tensor1d(c.targets, "int32");
        const weights = tf.tensor1d(c.weights);
        const ce = (x: tf.Tensor) => softmaxCrossEntropy(x as tf.Tensor2D, targets, { weights });
        return [ce(logits), tf.grad((x: tf.Tensor) => tf.sum(tf.mul(ce(x), tf.tensor1d(c.cot))))(logits)];
      });
    const cases = [
      makeCase(64, 257, 61),
      makeCase(37, 300, 62),
      // Above the threshold by a row, and the model's shape (16 × 128 tokens over 256 bytes).
      makeCase(DNNL_MIN_ELEMENTS[SOFTMAX_CROSS_ENTROPY] / 256 + 1, 256, 63),
      makeCase(2048, 256, 64),
      // A target 100 behind its row's maximum (p ≈ e^-100, a float32 subnormal that oneDNN flushes to 0): the call goes
      // to the double-precision loop.
      makeCase(40, 256, 65, (x, t) => (x[3 * 256 + t[3]] = -100 + Math.max(...x.subarray(3 * 256, 4 * 256)))),
    ];
    for (const [k, c] of cases.entries()) {
      const cachedBefore = LIB?.cached() ?? 0;
      const [loss, grad] = await run(c);
      // A new shape builds a new softmax primitive: oneDNN ran (but not for the case that goes to the loop).
      if (HAS_DNNL && k < 4) assert.ok(LIB!.cached() > cachedBefore, `case ${k}: oneDNN computed the softmax`);
      const want = exact(c);
      want.loss.forEach((e, r) => {
        const bound = c.weights[r] * 2.1e-6 + 2 ** -23 * Math.abs(e);
        assert.ok(Math.abs(loss[r] - e) <= bound, `case ${k}: loss row ${r} is ${loss[r]}, exactly ${e}`);
      });
      want.grad.forEach((e, i) => {
        const r = Math.floor(i / c.classes);
        const scale = c.weights[r] * Math.abs(c.cot[r]);
        const p = scale === 0 ? 0 : Math.abs(e) / scale;
        const bound = scale * (2e-6 * p + 2 ** -23) + 1e-45;
        assert.ok(Math.abs(grad[i] - e) <= bound, `case ${k}: d logits element ${i} is ${grad[i]}, exactly ${e}`);
      });
    }
    // NaN in the logits (a NaN loss for its row only) and a target out of range (a RangeError naming it) go to the
    // JavaScript kernel, as the composite would have them.
    const nan = makeCase(32, 256, 66, (x) => (x[5 * 256 + 9] = NaN));
    nan.weights.fill(1);
    const [nanLoss] = await run(nan);
    nanLoss.forEach((v, r) => assert.equal(Number.isNaN(v), r === 5, `row ${r}: ${v}`));
    const outOfRange = makeCase(32, 256, 67, (_, t) => (t[4] = 256));
    await assert.rejects(() => run(outOfRange), /targets\[4\] is 256, outside 0\.\.255/);
  },
});

Deno.test({
  name: "dnnl kernels: Add, Sub, Multiply, RealDiv with broadcasting are exact; their gradients sum within tolerance",
  ignore: !HAS_BLAS,
  fn: async () => {
    const broadcasts: [number[], number[]][] = [
      [[4099], [4099]],
      [[4099], []],
      [[], [4099]],
      [[33, 129], [129]],
      [[129], [33, 129]],
      [[33, 129], [33, 1]],
      [[33, 1], [33, 129]],
      [[2, 3, 5, 139], [2, 1, 1, 139]],
      [[2, 1, 5, 139], [2, 3, 5, 139]],
      [[7, 1, 600], [1, 9, 1]],
      [[2, 3, 1, 5, 139], [3, 1, 1, 139]],
      [[1, 2, 1, 3, 1, 2, 1, 700], [1, 2, 1, 3, 1, 2, 1, 700]],
      [[8, 8], [8, 8]],
    ];
    const ops: Record<string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor> = {
      add: tf.add,
      sub: tf.sub,
      mul: tf.mul,
      div: tf.div,
    };
    for (const [aShape, bShape] of broadcasts) {
      await assertNearCpu(`binary ops [${aShape}] ∘ [${bShape}]`, () => {
        const a = tf.tensor(seeded(aShape, 15), aShape);
        const b = tf.tensor(seeded(bShape, 16, { positive: true }), bShape);
        return Object.values(ops).map((op) => op(a, b));
      }, EXACT);
      for (const [name, op] of Object.entries(ops)) {
        await assertNearCpu(`${name} and gradients [${aShape}] ∘ [${bShape}]`, () => {
          const a = tf.tensor(seeded(aShape, 17), aShape);
          const b = tf.tensor(seeded(bShape, 18, { positive: true }), bShape);
          return withGrads(op, [a, b]);
        }, GRADIENT);
      }
    }
    // IEEE special values pass through unchanged.
    await assertNearCpu("binary ops with NaN and infinities", () => {
      const a = seeded([4099], 19);
      const b = seeded([4099], 20);
      [NaN, Infinity, -Infinity, 0, -0].forEach((v, i) => {
        a[100 * i] = v;
        b[100 * i + 50] = v;
        a[100 * i + 70] = v;
        b[100 * i + 70] = v;
      });
      const ta = tf.tensor(a);
      const tb = tf.tensor(b);
      return [tf.add(ta, tb), tf.sub(ta, tb), tf.mul(ta, tb), tf.div(ta, tb)];
    }, EXACT);
  },
});

Deno.test({
  name: "dnnl kernels: float32 tensors cast from bool or int32 (which keep their integer arrays) still compute right",
  ignore: !HAS_BLAS,
  fn: async () => {
    const shape = [16, 4, 8, 16];
    await assertNearCpu("ops on cast tensors", () => {
      const x = tf.tensor(seeded(shape, 31), shape);
      const mask = tf.cast(tf.greater(x, 0), "float32");
      const counts = tf.cast(tf.tensor(Int32Array.from(seeded(shape, 32), (v) => Math.round(v * 3)), shape), "float32");
      return [
        tf.mul(x, mask),
        tf.add(mask, x),
        tf.sub(counts, x),
        tf.div(x, tf.add(counts, 10)),
        tf.exp(mask),
        tf.softmax(counts),
        tf.transpose(counts, [0, 2, 1, 3]),
        tf.sum(mask, -1),
        siluGate(counts, mask),
      ];
    }, ELTWISE);
  },
});

Deno.test({
  name: "dnnl kernels: Sum and Mean over rows, columns and other blocks match the cpu kernels within 2^-20 Σ|x|",
  ignore: !HAS_BLAS,
  fn: async () => {
    const cases: [number[], number | number[]][] = [
      [[17, 517], -1],
      [[3, 4099], 1],
      [[1, 8193], 1],
      [[257, 33], 0],
      [[8209], 0],
      [[5, 1000, 3], 1],
      [[2, 3, 5, 300], [2, 3]],
      [[2, 3, 5, 300], [0, 1]],
      [[128, 128], [0, 1]],
      [[10, 10], 1],
    ];
    for (const [shape, axis] of cases) {
      const data = seeded(shape, 21, { scale: 5 });
      const x = () => tf.tensor(data, shape);
      const absSum = (await valuesOn("cpu", () => tf.sum(tf.abs(x()), axis, true)))[0];
      const count = shape.reduce((a, b) => a * b, 1) / absSum.length;
      for (const [name, op, per] of [["sum", tf.sum, 1], ["mean", tf.mean, count]] as const) {
        for (const keepDims of [false, true]) {
          const blas = (await valuesOn("blas", () => op(x(), axis, keepDims)))[0];
          const cpu = (await valuesOn("cpu", () => op(x(), axis, keepDims)))[0];
          blas.forEach((v, i) => {
            const bound = 2 ** -20 * absSum[i] / per;
            assert.ok(
              Math.abs(v - cpu[i]) <= bound,
              `${name} [${shape}] axis ${axis}: ${v} vs ${cpu[i]} (bound ${bound})`,
            );
          });
        }
      }
    }
    // NaN and infinities propagate as in the cpu kernels.
    const special = seeded([64, 128], 22);
    special[5] = NaN;
    special[128 * 3 + 7] = Infinity;
    special[128 * 9 + 1] = Infinity;
    special[128 * 9 + 2] = -Infinity;
    await assertNearCpu("sum and mean with NaN and infinities", () => {
      const x = tf.tensor(special, [64, 128]);
      return [tf.sum(x, -1), tf.mean(x, -1), tf.sum(x, 0)];
    }, (_, cpu) => ({ rtol: 1e-5, atol: 1e-5 * maxAbs(cpu) }));
  },
});

Deno.test("dnnl: collapsedPermutation drops size-1 axes and merges axes that move together", () => {
  assert.deepEqual(collapsedPermutation([16, 128, 4, 16], [0, 2, 1, 3]), {
    shape: [16, 128, 4, 16],
    perm: [0, 2, 1, 3],
  });
  assert.deepEqual(collapsedPermutation([2, 3, 4, 5], [2, 3, 0, 1]), { shape: [6, 20], perm: [1, 0] });
  assert.deepEqual(collapsedPermutation([2, 1, 3, 4, 5], [0, 3, 4, 1, 2]), { shape: [2, 3, 20], perm: [0, 2, 1] });
  assert.deepEqual(collapsedPermutation([2, 1, 3], [1, 0, 2]), { shape: [6], perm: [0] });
  assert.deepEqual(collapsedPermutation([1, 1], [1, 0]), { shape: [], perm: [] });
  assert.throws(() => collapsedPermutation([2, 3], [0]), RangeError);
});

Deno.test({
  name: "dnnl kernels: Transpose is exact on every permutation pattern, forward and gradient",
  ignore: !HAS_BLAS,
  fn: async () => {
    const cases: [number[], number[]][] = [
      [[16, 32, 4, 16], [0, 2, 1, 3]],
      [[2, 4, 33, 17], [0, 1, 3, 2]],
      [[129, 65], [1, 0]],
      [[3, 1, 5, 7, 41], [4, 1, 0, 3, 2]],
      [[5, 7, 9, 11], [3, 2, 1, 0]],
      [[6, 700], [0, 1]],
      [[2, 3, 4, 5, 6, 7], [5, 0, 4, 1, 3, 2]],
      [[8, 8], [1, 0]],
    ];
    for (const [shape, perm] of cases) {
      await assertNearCpu(
        `transpose [${shape}] by [${perm}]`,
        () => withGrads((x) => tf.transpose(x, perm), [tf.tensor(seeded(shape, 26), shape)]),
        EXACT,
      );
    }
  },
});

Deno.test({
  name: "dnnl kernels: siluGate and its gradients match the cpu composite within tolerance",
  ignore: !HAS_BLAS,
  fn: async () => {
    for (const shape of [[1], [3, 1031], [16, 32, 171], [64, 64]]) {
      for (const scale of [1, 30]) {
        await assertNearCpu(`siluGate [${shape}], scale ${scale}`, () => {
          const a = tf.tensor(seeded(shape, 27, { scale }), shape);
          const b = tf.tensor(seeded(shape, 28), shape);
          return withGrads((x, y) => siluGate(x, y), [a, b]);
        }, (_, cpu) => ({ rtol: 1e-5, atol: 2 ** -23 * Math.max(1, maxAbs(cpu)) }));
      }
    }
    // NaN and infinities in a: the composite's NaN and infinities.
    const a = seeded([4099], 29, { scale: 3 });
    [NaN, Infinity, -Infinity, 200, -200].forEach((v, i) => a[10 * i + 3] = v);
    await assertNearCpu("siluGate with NaN and infinities", () => {
      const b = tf.tensor(seeded([4099], 30));
      return withGrads((x, y) => siluGate(x, y), [tf.tensor(a), b]);
    }, (_, cpu) => ({ rtol: 1e-5, atol: 2 ** -23 * Math.max(1, maxAbs(cpu)) }));
  },
});

Deno.test({
  name: "dnnl kernels: gradients through sigmoid, tanh, exp, sqrt, elu and softmax in one graph match cpu",
  ignore: !HAS_BLAS,
  fn: async () => {
    const shape = [32, 300];
    await assertNearCpu("composite gradient", () => {
      const x = tf.tensor(seeded(shape, 23), shape);
      const w = tf.tensor(seeded([300], 24), [300]);
      return withGrads((a, b) => {
        const h = tf.add(tf.mul(tf.sigmoid(a), tf.tanh(tf.mul(a, b))), tf.elu(a));
        const s = tf.softmax(tf.add(tf.exp(tf.mul(a, 0.3)), tf.sqrt(tf.add(tf.square(a), 1))));
        return tf.div(tf.mul(h, s), tf.add(tf.mean(tf.abs(h), -1, true), 1));
      }, [x, w]);
    }, GRADIENT);
  },
});

Deno.test({
  name: "dnnl kernels: no tensor leaks and no primitive per call once a shape is cached",
  ignore: !HAS_BLAS || LIB === undefined,
  fn: async () => {
    const previous = await initBackend({ quiet: true });
    await initBackend({ backend: "blas", quiet: true });
    try {
      const shape = [23, 401];
      const x = tf.tensor(seeded(shape, 25), shape);
      const step = () =>
        tf.tidy(() => {
          const [out, g] = withGrads((z) => tf.softmax(tf.add(tf.mul(tf.exp(z), z), tf.elu(z))), [x]);
          return tf.sum(tf.add(tf.sum(out), tf.sum(tf.mul(g, 0.5))));
        });
      tf.dispose(step());
      const tensors = tf.memory().numTensors;
      const data = tf.backend().numDataIds();
      const cached = LIB!.cached();
      assert.ok(cached > 0);
      for (let i = 0; i < 5; i++) tf.dispose(step());
      assert.equal(LIB!.cached(), cached, "the second and later calls reuse the cached primitives");
      assert.equal(tf.memory().numTensors, tensors);
      assert.equal(tf.backend().numDataIds(), data);
      x.dispose();
    } finally {
      await initBackend({ backend: previous, quiet: true });
    }
  },
});

Deno.test({
  name: "dnnl kernels: they take the names of the loops they replace; oneDNN runs above the threshold only",
  ignore: !HAS_BLAS || LIB === undefined,
  fn: async () => {
    for (const name of Object.keys(DNNL_MIN_ELEMENTS)) {
      assert.ok(blasOverrides().includes(name), `${name} is one of the backend's own kernels`);
    }
    assert.ok(Object.keys(DNNL_MIN_ELEMENTS).includes(SOFTMAX_GRAD));
    const previous = await initBackend({ quiet: true });
    await initBackend({ backend: "blas", quiet: true });
    try {
      // A shape no other test uses: below the threshold no primitive is built, at it one is.
      const before = LIB!.cached();
      const small = DNNL_MIN_ELEMENTS[tf.Tanh] - 1;
      tf.tidy(() => tf.tanh(tf.ones([small, 1])).dataSync());
      assert.equal(LIB!.cached(), before);
      tf.tidy(() => tf.tanh(tf.ones([small + 1, 1])).dataSync());
      assert.equal(LIB!.cached(), before + 1);
    } finally {
      await initBackend({ backend: previous, quiet: true });
    }
  },
});

/** Runs `script` in a fresh deno with `env`, from the repository root. */
async function subprocess(
  script: string,
  env: Record<string, string>,
): Promise<{ code: number; out: string; err: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    env: { NO_COLOR: "1", ...env },
    cwd: new URL("..", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code, out: new TextDecoder().decode(stdout), err: new TextDecoder().decode(stderr) };
}

Deno.test({
  name: "dnnl: without libdnnl the backend says so once, naming apt-get install libdnnl2, and keeps the loops",
  ignore: !HAS_BLAS,
  fn: async () => {
    const script = "import * as tf from '@tensorflow/tfjs'; import { initBackend } from './lib/backend.ts'; " +
      "import { blasDnnl, blasOverrides } from './lib/blas/backend.ts'; " +
      "await initBackend({ backend: 'blas', quiet: true }); await initBackend({ backend: 'blas', quiet: true }); " +
      "const y = tf.softmax(tf.range(0, 4096).reshape([32, 128])); " +
      "console.log(JSON.stringify({ dnnl: blasDnnl()?.version ?? null, n: blasOverrides().length, " +
      "sum: tf.sum(y).dataSync()[0] }));";
    const missing = await subprocess(script, { ATTNLAB_DNNL: "/nonexistent/libdnnl.so.2" });
    assert.equal(missing.code, 0, missing.err);
    const lines = missing.err.split("\n").filter((line) => line.includes("libdnnl2"));
    assert.equal(lines.length, 1, missing.err);
    assert.match(lines[0], /apt-get install libdnnl2/);
    const withoutLib = JSON.parse(missing.out.trim().split("\n").at(-1)!);
    assert.equal(withoutLib.dnnl, null);
    assert.ok(Math.abs(withoutLib.sum - 32) < 1e-4);
    // ATTNLAB_BLAS_KERNELS=js: the same kernel names, no oneDNN, no message.
    const js = await subprocess(script, { ATTNLAB_BLAS_KERNELS: "js" });
    assert.equal(js.code, 0, js.err);
    assert.doesNotMatch(js.err, /libdnnl2/);
    const jsResult = JSON.parse(js.out.trim().split("\n").at(-1)!);
    assert.equal(jsResult.dnnl, null);
    assert.equal(jsResult.n, withoutLib.n);
    if (HAS_DNNL) {
      const all = await subprocess(script, {});
      assert.equal(all.code, 0, all.err);
      const allResult = JSON.parse(all.out.trim().split("\n").at(-1)!);
      assert.match(allResult.dnnl, /^2\./);
      assert.equal(allResult.n, withoutLib.n);
    }
  },
});
