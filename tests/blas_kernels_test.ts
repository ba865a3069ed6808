import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { initBackend, loadableBackends } from "../lib/backend.ts";
import { normalizeLastAxis } from "../lib/attention/mod.ts";
import { fastExp } from "../lib/blas/_exp.ts";
import { blasOverrides } from "../lib/blas/backend.ts";
import { ELU_PLUS_ONE, eluPlusOne, siluGate, srmsNorm } from "../lib/blas/fused.ts";
import { SCALED_RELU_PAIR, scaledReluPair } from "../lib/blas/fused_features.ts";
import { blasKernelSet, fastKernels } from "../lib/blas/kernels.ts";
import { MIN_POOLED_LENGTH, poolStats } from "../lib/blas/pool.ts";
import { seededNormal, seededUniform } from "../lib/random.ts";

// This suite checks the JS kernels bit for bit against the cpu backend: pin it to them (oneDNN's, under the default
// "all", agree within ulps; tests/dnnl_test.ts checks those), and put the variable back for later test modules.
const KERNELS_SET = Deno.env.get("ATTNLAB_BLAS_KERNELS");
if (KERNELS_SET === undefined) Deno.env.set("ATTNLAB_BLAS_KERNELS", "js");
const HAS_BLAS = (await loadableBackends()).includes("blas");
if (KERNELS_SET === undefined) Deno.env.delete("ATTNLAB_BLAS_KERNELS");

/** A tensor's content, read back: what two backends must agree on. */
interface Snapshot {
  shape: number[];
  dtype: string;
  values: number[];
}

function snapshot(result: tf.Tensor | tf.Tensor[]): Snapshot[] {
  const list = Array.isArray(result) ? result : [result];
  return list.map((t) => ({ shape: t.shape, dtype: t.dtype, values: Array.from(t.dataSync() as Float32Array) }));
}

async function onBackend<T>(name: "blas" | "cpu", fn: () => T): Promise<T> {
  const previous = await initBackend({ quiet: true });
  await initBackend({ backend: name, quiet: true });
  try {
    return fn();
  } finally {
    await initBackend({ backend: previous, quiet: true });
  }
}

/**
 * Runs `fn` on blas and on cpu and asserts identical shapes, dtypes and values (NaN equal to NaN,
 * and -0 distinct from 0): every kernel here does the cpu kernel's arithmetic, roundings included.
 * `cpuFn`, when given, is what cpu runs instead (a composite the blas side fuses).
 */
async function assertSameAsCpu(
  what: string,
  fn: () => tf.Tensor | tf.Tensor[],
  cpuFn: () => tf.Tensor | tf.Tensor[] = fn,
): Promise<void> {
  const run = (f: () => tf.Tensor | tf.Tensor[]) => () => {
    let out: Snapshot[] = [];
    tf.tidy(() => {
      out = snapshot(f());
    });
    return out;
  };
  const blas = await onBackend("blas", run(fn));
  const cpu = await onBackend("cpu", run(cpuFn));
  assert.equal(blas.length, cpu.length, `${what}: number of outputs`);
  blas.forEach((b, i) => {
    const c = cpu[i];
    assert.deepEqual(b.shape, c.shape, `${what}: output ${i} shape`);
    assert.equal(b.dtype, c.dtype, `${what}: output ${i} dtype`);
    const bad = b.values.findIndex((v, j) => !Object.is(v, c.values[j]));
    assert.equal(bad, -1, `${what}: output ${i} element ${bad}: blas ${b.values[bad]}, cpu ${c.values[bad]}`);
  });
}

const SPECIALS = [NaN, Infinity, -Infinity, 0, -0, -1e9, 200, -200, 1e-40, 1];

/** Seeded values: normal draws, and with `specials` every fifth entry replaced by NaN, ±Inf, ±0, huge or tiny. */
function seeded(shape: number[], seed: number, options: { specials?: boolean; positive?: boolean } = {}): Float32Array {
  const size = shape.reduce((a, b) => a * b, 1);
  const normal = seededNormal(seed);
  const data = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    const v = normal();
    data[i] = options.positive ? Math.abs(v) + 0.1 : v;
    if (options.specials && i % 5 === 2) data[i] = SPECIALS[(i / 5 | 0) % SPECIALS.length];
  }
  return data;
}

function tensor(shape: number[], seed: number, options: { specials?: boolean; positive?: boolean } = {}) {
  return tf.tensor(seeded(shape, seed, options), shape);
}

/** Output and gradients of sum(f(xs) * cotangent) with respect to every input. */
function withGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, xs: tf.Tensor[]): tf.Tensor[] {
  const out = f(...xs);
  const cot = tf.tensor(seeded(out.shape, 99), out.shape);
  const grads = tf.grads((...ys: tf.Tensor[]) => tf.sum(tf.mul(f(...ys), cot)))(xs);
  return [out, ...grads];
}

const BINARY_OPS: Record<string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor> = {
  add: tf.add,
  sub: tf.sub,
  mul: tf.mul,
  div: tf.div,
  maximum: tf.maximum,
  minimum: tf.minimum,
  squaredDifference: tf.squaredDifference,
  pow: tf.pow,
  less: tf.less,
  lessEqual: tf.lessEqual,
  greater: tf.greater,
  greaterEqual: tf.greaterEqual,
  equal: tf.equal,
  notEqual: tf.notEqual,
};
const DIFFERENTIABLE_BINARY = ["add", "sub", "mul", "div", "maximum", "minimum", "squaredDifference", "pow"];

// Fast paths: same shape, scalar either side, trailing-dim and row broadcasts; then mixed ranks,
// broadcasts on both sides, interleaved size-1 dims, and empty tensors.
const BROADCASTS: [number[], number[]][] = [
  [[], []],
  [[5], []],
  [[], [5]],
  [[3, 4], [3, 4]],
  [[2, 3, 4], [4]],
  [[4], [2, 3, 4]],
  [[2, 3, 4], [2, 3, 1]],
  [[2, 3, 1], [2, 3, 4]],
  [[7, 1], [1, 9]],
  [[1], [2, 3]],
  [[2, 1, 4], [1, 3, 1]],
  [[2, 3, 1, 5], [3, 4, 1]],
  [[2, 1, 3, 1, 2], [1, 4, 3, 5, 1]],
  [[1, 1, 1], [2, 3]],
  [[3, 1, 5], [3, 4, 5]],
  [[0, 3], [3]],
  [[1, 2, 1, 3, 1], [1, 2, 1, 3, 1]],
];

// Without OpenBLAS the backend is refused with the install hint: tests/backend_test.ts checks that in a subprocess.

Deno.test({
  name: "blas kernels: the backend registers its own kernels for everything in fastKernels()",
  ignore: !HAS_BLAS,
  fn: () => {
    const own = blasOverrides();
    // Under ATTNLAB_BLAS_KERNELS=matmul only the matmuls are the backend's own, and the comparisons below are moot.
    const expected = blasKernelSet() !== "matmul" ? Object.keys(fastKernels()) : [];
    assert.equal(own.length, expected.length + 2);
    for (const name of [...expected, tf.BatchMatMul, tf._FusedMatMul]) {
      assert.ok(own.includes(name), `${name} is overridden`);
      // The fused kernels (lib/blas/fused.ts) exist on blas alone.
      assert.notEqual(tf.getKernel(name, "blas")!.kernelFunc, tf.getKernel(name, "cpu")?.kernelFunc, name);
    }
    assert.equal(tf.getKernel(tf.OneHot, "blas")!.kernelFunc, tf.getKernel(tf.OneHot, "cpu")!.kernelFunc);
  },
});

Deno.test({
  name: "blas kernels: binary ops agree with cpu on every broadcast pattern, with NaN, Inf and -0",
  ignore: !HAS_BLAS,
  fn: async (t) => {
    for (const [name, op] of Object.entries(BINARY_OPS)) {
      await t.step(name, async () => {
        for (const [sa, sb] of BROADCASTS) {
          await assertSameAsCpu(
            `${name} [${sa}] x [${sb}]`,
            () => op(tensor(sa, 1, { specials: true }), tensor(sb, 2, { specials: true })),
          );
        }
        // The same operand on both sides: NaN against NaN, Inf against Inf.
        await assertSameAsCpu(`${name} x with itself`, () => {
          const x = tensor([4, 5], 3, { specials: true });
          return op(x, x);
        });
      });
    }
  },
});

Deno.test({
  name: "blas kernels: binary op gradients (through broadcast sums) agree with cpu",
  ignore: !HAS_BLAS,
  fn: async (t) => {
    for (const name of DIFFERENTIABLE_BINARY) {
      const op = BINARY_OPS[name];
      await t.step(name, async () => {
        // tfjs 4.22's gradients of maximum, minimum and squaredDifference do not sum over broadcast dims
        // (on every backend), so those are checked on equal shapes only.
        const equalOnly = ["maximum", "minimum", "squaredDifference"].includes(name);
        const cases = BROADCASTS.filter(([a, b]) =>
          !a.includes(0) && !b.includes(0) && (!equalOnly || a.join() === b.join())
        );
        for (const [sa, sb] of cases) {
          // pow's gradient takes log(a): positive bases keep it finite.
          const positive = name === "pow";
          await assertSameAsCpu(
            `d ${name} [${sa}] x [${sb}]`,
            () => withGrads(op, [tensor(sa, 4, { positive }), tensor(sb, 5)]),
          );
        }
      });
    }
  },
});

Deno.test({
  name: "blas kernels: int32 and bool operands fall back to the cpu kernels",
  ignore: !HAS_BLAS,
  fn: async () => {
    const ints = (shape: number[], seed: number) => {
      const u = seededUniform(seed);
      return tf.tensor(
        Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => Math.floor(u() * 9) - 4),
        shape,
        "int32",
      );
    };
    for (const [name, op] of Object.entries(BINARY_OPS)) {
      if (name === "div") continue;
      await assertSameAsCpu(`${name} int32`, () => op(ints([2, 3, 4], 1), ints([3, 1], 2)));
    }
    await assertSameAsCpu("int32 unary, reductions, layout", () => {
      const x = ints([2, 3, 4], 3);
      return [
        tf.neg(x),
        tf.abs(x),
        tf.square(x),
        tf.relu(x),
        tf.sum(x, 1),
        tf.max(x, -1),
        tf.min(x, 0),
        tf.mean(x, 2),
        tf.cumsum(x, 1),
        tf.transpose(x, [2, 0, 1]),
        tf.pad(x, [[1, 0], [0, 2], [1, 1]], 7),
        tf.unsortedSegmentSum(x, tf.tensor1d([1, 0], "int32"), 3),
        tf.sum(tf.cast(x, "bool"), 1),
        tf.logicalAnd(tf.cast(x, "bool"), tf.greater(x, 0)),
      ];
    });
  },
});

const UNARY_OPS: Record<string, (x: tf.Tensor) => tf.Tensor> = {
  exp: tf.exp,
  log: tf.log,
  neg: tf.neg,
  sqrt: tf.sqrt,
  rsqrt: tf.rsqrt,
  square: tf.square,
  relu: tf.relu,
  elu: tf.elu,
  sigmoid: tf.sigmoid,
  tanh: tf.tanh,
  abs: tf.abs,
  reciprocal: tf.reciprocal,
  step: (x) => tf.step(x, 0.25),
};
const POSITIVE_ONLY = new Set(["log", "sqrt", "rsqrt", "reciprocal"]);
const UNARY_SHAPES = [[], [1], [7], [3, 5], [2, 3, 4, 5], [2, 1, 3, 1, 2], [0, 4]];

Deno.test({
  name: "blas kernels: unary ops and their gradients agree with cpu, including NaN, ±Inf, ±0 and -1e9",
  ignore: !HAS_BLAS,
  fn: async (t) => {
    for (const [name, op] of Object.entries(UNARY_OPS)) {
      await t.step(name, async () => {
        for (const shape of UNARY_SHAPES) {
          await assertSameAsCpu(`${name} [${shape}]`, () => op(tensor(shape, 6, { specials: true })));
          await assertSameAsCpu(
            `d ${name} [${shape}]`,
            () => withGrads(op, [tensor(shape, 7, { positive: POSITIVE_ONLY.has(name) })]),
          );
        }
        // Around the underflow guards of exp, elu and sigmoid: -104 and 104 and their float32 neighbours.
        await assertSameAsCpu(
          `${name} near ±104`,
          () => op(tf.tensor1d([-104.00001, -104, -103.99999, -103.5, -88, 88, 103.99999, 104, 104.00001, 120])),
        );
      });
    }
  },
});

const REDUCTIONS: Record<string, (x: tf.Tensor, axis: number | number[] | undefined, keepDims: boolean) => tf.Tensor> =
  {
    sum: (x, axis, keepDims) => tf.sum(x, axis, keepDims),
    mean: (x, axis, keepDims) => tf.mean(x, axis, keepDims),
    max: (x, axis, keepDims) => tf.max(x, axis, keepDims),
    min: (x, axis, keepDims) => tf.min(x, axis, keepDims),
  };

// Contiguous blocks of axes take the fast path; [0, 2] and [0, 2, 4] are not one block and fall back.
const REDUCE_CASES: [number[], number | number[] | undefined][] = [
  [[], undefined],
  [[5], 0],
  [[5], undefined],
  [[3, 4], 0],
  [[3, 4], 1],
  [[3, 4], -1],
  [[3, 4], [0, 1]],
  [[2, 3, 4], 1],
  [[2, 3, 4], [0, 1]],
  [[2, 3, 4], [1, 2]],
  [[2, 3, 4], [0, 2]],
  [[2, 1, 3, 4, 5], [1, 2]],
  [[2, 1, 3, 4, 5], [0, 1, 2]],
  [[2, 3, 1, 4, 5], [1, 3]],
  [[2, 1, 3, 4, 5], [0, 2, 4]],
  [[2, 3, 4, 5], 3],
  [[1, 1, 7], 2],
  [[6, 1], 1],
];

Deno.test({
  name: "blas kernels: Sum, Mean, Max, Min agree with cpu over every axis pattern, forward (with NaN) and gradient",
  ignore: !HAS_BLAS,
  fn: async (t) => {
    for (const [name, reduce] of Object.entries(REDUCTIONS)) {
      await t.step(name, async () => {
        for (const [shape, axis] of REDUCE_CASES) {
          for (const keepDims of [false, true]) {
            const what = `${name} [${shape}] axis ${JSON.stringify(axis)} keepDims ${keepDims}`;
            await assertSameAsCpu(what, () => reduce(tensor(shape, 8, { specials: true }), axis, keepDims));
            await assertSameAsCpu(`d ${what}`, () => withGrads((x) => reduce(x, axis, keepDims), [tensor(shape, 9)]));
          }
        }
        // A NaN after the column's maximum, before it, and alone: Max and Min propagate NaN as cpu does.
        await assertSameAsCpu(`${name} NaN placement`, () => {
          const x = tf.tensor2d([[1, NaN, 3], [NaN, 5, -1], [2, 7, NaN], [4, 0, 2]]);
          return [reduce(x, 0, false), reduce(x, 1, false), reduce(x, undefined, false)];
        });
      });
    }
  },
});

Deno.test({
  name: "blas kernels: Softmax agrees with cpu (masked rows, -Inf, NaN, length 1) and sums rows to 1",
  ignore: !HAS_BLAS,
  fn: async () => {
    for (const shape of [[5], [3, 7], [2, 3, 1], [2, 3, 4, 6], [2, 2, 33, 65]]) {
      await assertSameAsCpu(`softmax [${shape}]`, () => tf.softmax(tensor(shape, 10, { specials: true })));
      await assertSameAsCpu(`d softmax [${shape}]`, () => withGrads((x) => tf.softmax(x), [tensor(shape, 11)]));
    }
    await assertSameAsCpu(
      "softmax of a causally masked [2, 9, 9]",
      () =>
        tf.softmax(tf.add(tensor([2, 9, 9], 12), tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([9, 9]), -1, 0)), -1e9))),
    );
    await assertSameAsCpu(
      "softmax rows of -Inf",
      () => tf.softmax(tf.tensor2d([[-Infinity, -Infinity], [0, -Infinity]])),
    );
    await onBackend("blas", () =>
      tf.tidy(() => {
        const rows = tf.sum(tf.softmax(tensor([4, 50], 13)), -1).dataSync();
        for (const s of rows) assert.ok(Math.abs(s - 1) < 1e-6, `softmax row sums to ${s}`);
      }));
  },
});

Deno.test({
  name: "blas kernels: Cumsum agrees with cpu on every axis, exclusive and reverse, forward and gradient",
  ignore: !HAS_BLAS,
  fn: async () => {
    for (
      const [shape, axes] of [[[6], [0]], [[3, 4, 5], [0, 1, 2, -1]], [[2, 1, 3], [1, 2]]] as [number[], number[]][]
    ) {
      for (const axis of axes) {
        for (const exclusive of [false, true]) {
          for (const reverse of [false, true]) {
            const what = `cumsum [${shape}] axis ${axis} exclusive ${exclusive} reverse ${reverse}`;
            // The cpu kernel mis-shapes a negative axis (it returns [undefined, ...]); blas normalises it,
            // so the reference gets the same axis counted from the front.
            const cpuAxis = axis < 0 ? axis + shape.length : axis;
            await assertSameAsCpu(
              what,
              () =>
                tf.cumsum(
                  tensor(shape, 14, { specials: true }),
                  tf.getBackend() === "cpu" ? cpuAxis : axis,
                  exclusive,
                  reverse,
                ),
            );
            // tfjs 4.22's Cumsum gradient transposes its result unless the axis is given as rank - 1 (on every backend).
            if (axis !== shape.length - 1) continue;
            await assertSameAsCpu(
              `d ${what}`,
              () => withGrads((x) => tf.cumsum(x, axis, exclusive, reverse), [tensor(shape, 15)]),
            );
          }
        }
      }
    }
  },
});

Deno.test({
  name: "blas kernels: UnsortedSegmentSum matches a plain sum per segment and cpu; gather's gradient agrees with cpu",
  ignore: !HAS_BLAS,
  fn: async () => {
    const ids = [3, 0, 3, 1, 5, 0, 3];
    await assertSameAsCpu(
      "unsortedSegmentSum [7, 2, 3]",
      () => tf.unsortedSegmentSum(tensor([7, 2, 3], 16), tf.tensor1d(ids, "int32"), 6),
    );
    await assertSameAsCpu(
      "unsortedSegmentSum [7]",
      () => tf.unsortedSegmentSum(tensor([7], 17), tf.tensor1d(ids, "int32"), 4),
    );
    await onBackend("blas", () =>
      tf.tidy(() => {
        const x = seeded([7, 3], 18);
        const out = tf.unsortedSegmentSum(tf.tensor2d(x, [7, 3]), tf.tensor1d(ids, "int32"), 6).dataSync();
        for (let s = 0; s < 6; s++) {
          for (let j = 0; j < 3; j++) {
            let expected = 0;
            ids.forEach((id, r) => expected += id === s ? x[r * 3 + j] : 0);
            assert.equal(out[s * 3 + j], Math.fround(expected), `segment ${s} column ${j}`);
          }
        }
      }));
    // cpu multiplies every row by a 0/1 mask, so one NaN reaches every segment; blas keeps it in its own.
    await onBackend("blas", () =>
      tf.tidy(() => {
        const out = tf.unsortedSegmentSum(tf.tensor2d([[1, 2], [NaN, 3], [4, 5]]), tf.tensor1d([0, 1, 0], "int32"), 2);
        assert.deepEqual(Array.from(out.dataSync()), [5, 7, NaN, 3]);
      }));
    await assertSameAsCpu("gradient of an embedding lookup", () => {
      const table = tensor([10, 4], 19);
      const indices = tf.tensor2d([[1, 4, 1], [9, 0, 4]], [2, 3], "int32");
      return withGrads((w) => tf.gather(w, indices), [table]);
    });
  },
});

Deno.test({
  name: "blas kernels: GatherV2 agrees with cpu on every axis and index rank; bad indices and batchDims go to cpu",
  ignore: !HAS_BLAS,
  fn: async () => {
    const cases: [number[], number[], number[], number][] = [
      [[5, 3], [4], [0, 4, 4, 2], 0],
      [[5, 3], [2, 2], [1, 0, 3, 1], 0],
      [[2, 5, 3], [3], [4, 0, 2], 1],
      [[2, 3, 5], [2, 1], [4, 0], -1],
      [[6], [], [3], 0],
      [[4, 1, 2], [5], [3, 3, 0, 1, 2], 0],
    ];
    for (const [shape, indexShape, ids, axis] of cases) {
      const what = `gather [${shape}] at [${ids}] (shape [${indexShape}]) axis ${axis}`;
      const indices = () => tf.tensor(ids, indexShape, "int32");
      await assertSameAsCpu(what, () => tf.gather(tensor(shape, 27, { specials: true }), indices(), axis));
      await assertSameAsCpu(`d ${what}`, () => withGrads((x) => tf.gather(x, indices(), axis), [tensor(shape, 28)]));
    }
    await assertSameAsCpu(
      "gather with batchDims 1",
      () => tf.gather(tensor([2, 4, 3], 29), tf.tensor2d([[0, 3], [2, 2]], [2, 2], "int32"), 1, 1),
    );
    await onBackend("blas", () =>
      assert.throws(
        () => tf.gather(tf.ones([3, 2]), tf.tensor1d([0, 3], "int32")),
        /GatherV2: the index value 3 is not in \[0, 2\]/,
      ));
  },
});

const PERMUTATIONS: [number[], number[]][] = [
  [[], []],
  [[5], [0]],
  [[3, 4], [1, 0]],
  [[37, 70], [1, 0]],
  [[2, 3, 4], [0, 1, 2]],
  [[2, 3, 4], [0, 2, 1]],
  [[2, 3, 4], [1, 0, 2]],
  [[2, 3, 4], [1, 2, 0]],
  [[2, 3, 4], [2, 0, 1]],
  [[2, 3, 4], [2, 1, 0]],
  [[2, 3, 4, 5], [0, 2, 1, 3]],
  [[2, 3, 4, 5], [0, 1, 3, 2]],
  [[2, 3, 4, 5], [3, 2, 1, 0]],
  [[2, 35, 33, 5], [0, 2, 3, 1]],
  [[2, 1, 3, 1, 5], [4, 3, 2, 1, 0]],
  [[2, 1, 3, 1, 5], [0, 2, 4, 1, 3]],
  [[1, 2, 4, 3, 5], [0, 1, 3, 4, 2]],
  [[0, 3], [1, 0]],
];

Deno.test({
  name: "blas kernels: Transpose agrees with cpu on every permutation pattern and undoes itself",
  ignore: !HAS_BLAS,
  fn: async () => {
    for (const [shape, perm] of PERMUTATIONS) {
      await assertSameAsCpu(
        `transpose [${shape}] by [${perm}]`,
        () => withGrads((x) => tf.transpose(x, perm), [tensor(shape, 20, { specials: true })]).slice(0, 1),
      );
      await assertSameAsCpu(
        `d transpose [${shape}] by [${perm}]`,
        () => withGrads((x) => tf.transpose(x, perm), [tensor(shape, 21)]),
      );
      await onBackend("blas", () =>
        tf.tidy(() => {
          const x = tensor(shape, 22);
          const inverse = perm.map((_, i) => perm.indexOf(i));
          assert.deepEqual(tf.transpose(tf.transpose(x, perm), inverse).dataSync(), x.dataSync());
        }));
    }
  },
});

Deno.test({
  name: "blas kernels: PadV2 agrees with cpu for ranks 1 to 4, zero and non-zero fill, forward and gradient",
  ignore: !HAS_BLAS,
  fn: async () => {
    const cases: [number[], [number, number][], number][] = [
      [[4], [[2, 1]], 0],
      [[3, 4], [[0, 0], [1, 2]], 0],
      [[3, 4], [[1, 2], [0, 0]], -1.5],
      [[2, 3, 4], [[1, 0], [0, 2], [3, 1]], 0],
      [[1, 2, 5, 3], [[0, 0], [0, 0], [0, 3], [0, 0]], 7],
      [[0, 3], [[1, 1], [0, 1]], 2],
    ];
    for (const [shape, paddings, value] of cases) {
      const what = `pad [${shape}] by ${JSON.stringify(paddings)} with ${value}`;
      await assertSameAsCpu(what, () => tf.pad(tensor(shape, 23, { specials: true }), paddings, value));
      if (!shape.includes(0)) {
        await assertSameAsCpu(`d ${what}`, () => withGrads((x) => tf.pad(x, paddings, value), [tensor(shape, 24)]));
      }
    }
  },
});

Deno.test({
  name:
    "blas kernels: Slice, SplitV and Concat agree with cpu for ranks 1 to 5, offsets, -1 sizes and empty parts, forward and gradient",
  ignore: !HAS_BLAS,
  fn: async () => {
    const slices: [number[], number[], number[]][] = [
      [[7], [2], [4]],
      [[3, 5], [1, 0], [2, -1]],
      [[3, 5], [0, 2], [3, 2]],
      [[2, 3, 4], [1, 1, 0], [1, 2, 4]],
      [[2, 2, 6, 4, 3], [0, 0, 1, 0, 0], [2, 2, 4, 4, 3]],
      [[2, 2, 6, 4, 3], [1, 0, 2, 1, 1], [1, 2, 3, 2, 2]],
      [[4, 40], [1, 3], [2, 20]],
      [[3, 4], [1, 0], [0, 4]],
    ];
    for (const [shape, begin, size] of slices) {
      const what = `slice [${shape}] at [${begin}] size [${size}]`;
      await assertSameAsCpu(what, () => tf.slice(tensor(shape, 31, { specials: true }), begin, size));
      if (!size.includes(0)) {
        await assertSameAsCpu(`d ${what}`, () => withGrads((x) => tf.slice(x, begin, size), [tensor(shape, 32)]));
      }
    }
    const splits: [number[], number | number[], number][] = [
      [[6], 3, 0],
      [[2, 9, 4], [2, 3, 4], 1],
      [[2, 9, 4], [5, -1], 1],
      [[3, 2, 8], 4, -1],
      [[2, 3, 6, 2, 5], [1, 0, 5], 2],
    ];
    for (const [shape, parts, axis] of splits) {
      const what = `split [${shape}] into ${JSON.stringify(parts)} along ${axis}`;
      await assertSameAsCpu(what, () => tf.split(tensor(shape, 33, { specials: true }), parts, axis));
      await assertSameAsCpu(
        `concat of ${what}`,
        () => tf.concat([tensor(shape, 36, { specials: true }), ...tf.split(tensor(shape, 37), parts, axis)], axis),
      );
      // The gradient of concat is SplitV.
      await assertSameAsCpu(
        `d concat of ${what}`,
        () => withGrads((a, b) => tf.concat([a, b], axis), [tensor(shape, 34), tensor(shape, 35)]),
      );
    }
    // Long rows (copied whole), axis 0, a single input, and an empty result.
    await assertSameAsCpu("concat of long rows", () => tf.concat([tensor([3, 70], 38), tensor([3, 10], 39)], 1));
    await assertSameAsCpu("concat along axis 0", () => tf.concat([tensor([2, 5], 40), tensor([4, 5], 41)], 0));
    await assertSameAsCpu("concat of one tensor", () => tf.concat([tensor([2, 5], 42)], 1));
    await assertSameAsCpu("concat of empty tensors", () => tf.concat([tf.zeros([2, 0]), tf.zeros([2, 0])], 1));
  },
});

Deno.test({
  name: "blas kernels: Tile and broadcastTo agree with cpu (ranks 1 to 5, reps of 0 and 1, rows short and long)",
  ignore: !HAS_BLAS,
  fn: async () => {
    const tiles: [number[], number[]][] = [
      [[3], [4]],
      [[1], [70]],
      [[2, 3], [1, 1]],
      [[2, 3], [3, 2]],
      [[2, 1], [2, 65]],
      [[2, 70], [2, 3]],
      [[2, 3, 4], [2, 1, 3]],
      [[1, 2, 1, 3, 2], [2, 1, 3, 1, 2]],
      [[2, 3], [0, 2]],
      [[0, 3], [2, 2]],
    ];
    for (const [shape, reps] of tiles) {
      const what = `tile [${shape}] by [${reps}]`;
      await assertSameAsCpu(what, () => tf.tile(tensor(shape, 51, { specials: true }), reps));
      // tfjs has Tile's gradient up to rank 4 only.
      if (!shape.includes(0) && !reps.includes(0) && shape.length <= 4) {
        await assertSameAsCpu(`d ${what}`, () => withGrads((x) => tf.tile(x, reps), [tensor(shape, 52)]));
      }
    }
    const broadcasts: [number[], number[]][] = [[[3, 1], [3, 5]], [[1, 4], [3, 4]], [[2, 1, 3, 1], [2, 4, 3, 66]]];
    for (const [shape, to] of broadcasts) {
      await assertSameAsCpu(`broadcastTo [${shape}] -> [${to}]`, () => tf.broadcastTo(tensor(shape, 53), to));
    }
  },
});

Deno.test({
  name: "blas kernels: the gradients of Sum and Mean (dy broadcast) are cpu's bit for bit, with NaN, ±Inf and -0 in dy",
  ignore: !HAS_BLAS,
  fn: async () => {
    const cases: [number[], number | number[] | undefined, boolean][] = [
      [[5], undefined, false],
      [[3, 4], 1, true],
      [[2, 3, 4], [0, 1], false],
      [[2, 3, 70], -1, true],
      [[2, 1, 3, 4, 5], [1, 2], false],
    ];
    for (const [name, reduce] of [["sum", tf.sum], ["mean", tf.mean]] as const) {
      for (const [shape, axis, keepDims] of cases) {
        const what = `d ${name} [${shape}] axis ${JSON.stringify(axis)} keepDims ${keepDims}`;
        await assertSameAsCpu(what, () => {
          const x = tensor(shape, 54);
          const y = reduce(x, axis, keepDims);
          const dy = tensor(y.shape, 55, { specials: true });
          return tf.grad((z: tf.Tensor) => tf.sum(tf.mul(reduce(z, axis, keepDims), dy)))(x);
        });
      }
    }
  },
});

Deno.test({
  name: "blas kernels: repeated forward and backward passes leak no tensors and no backend data",
  ignore: !HAS_BLAS,
  fn: async () => {
    await onBackend("blas", () => {
      const pass = () =>
        tf.tidy(() => {
          const x = tensor([2, 3, 4, 5], 25);
          const y = tensor([4, 1], 26);
          const f = (a: tf.Tensor, b: tf.Tensor) => {
            const z = tf.softmax(tf.add(tf.mul(tf.sigmoid(a), b), tf.exp(tf.minimum(a, 0))));
            const gated = srmsNorm(
              siluGate(
                z,
                tf.concat(
                  [tf.slice(z, [0, 0, 0, 0], [1, 3, 4, 5]), tf.neg(tf.slice(a, [1, 0, 0, 0], [1, 3, 4, 5]))],
                  0,
                ),
              ),
            );
            const s = tf.sum(tf.transpose(tf.cumsum(gated, 3), [0, 2, 1, 3]), [1, 2]);
            return tf.add(tf.max(tf.pad(s, [[1, 1], [0, 0]]), -1), tf.mean(tf.elu(b)));
          };
          return withGrads(f, [x, y]).concat(
            tf.unsortedSegmentSum(x, tf.tensor1d([1, 0], "int32"), 3),
            tf.gather(x, tf.tensor1d([2, 0, 2], "int32"), 1),
          );
        });
      tf.dispose(pass());
      const tensors = tf.memory().numTensors;
      const data = tf.backend().numDataIds();
      for (let i = 0; i < 3; i++) tf.dispose(pass());
      assert.equal(tf.memory().numTensors, tensors);
      assert.equal(tf.backend().numDataIds(), data);
    });
  },
});

Deno.test({
  name: "blas kernels: ATTNLAB_BLAS_KERNELS=matmul registers only the matmuls; a bad value names the variable",
  ignore: !HAS_BLAS,
  fn: async () => {
    const script = "import { blasOverrides, registerBlasBackend } from './lib/blas/backend.ts'; " +
      "registerBlasBackend(); console.log(blasOverrides().join(','));";
    const run = async (value: string) => {
      const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
        args: ["eval", script],
        env: { ATTNLAB_BLAS_KERNELS: value, NO_COLOR: "1" },
        cwd: new URL("..", import.meta.url),
        stdout: "piped",
        stderr: "piped",
      }).output();
      return { code, output: new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr) };
    };
    const matmul = await run("matmul");
    assert.equal(matmul.code, 0, matmul.output);
    assert.equal(matmul.output.trim(), [tf.BatchMatMul, tf._FusedMatMul].sort().join(","));
    const bad = await run("fast");
    assert.notEqual(bad.code, 0);
    assert.match(bad.output, /ATTNLAB_BLAS_KERNELS must be one of all, js, matmul, got "fast"/);
  },
});

/** The float32 units in the last place between two float32 values of one sign. */
function ulps(a: number, b: number): number {
  const view = new Float32Array([a, b]);
  const bits = new Int32Array(view.buffer);
  return Math.abs(bits[0] - bits[1]);
}

Deno.test("blas kernels: fastExp is within 1e-15 of Math.exp and rounds to the same float32 but in rare cases", () => {
  // Every float32 input where e^x is finite and non-zero in float32: [-104, 89), seeded.
  const uniform = seededUniform(41);
  let worst = 0;
  let differ = 0;
  const n = 1_000_000;
  for (let i = 0; i < n; i++) {
    const x = Math.fround(-104 + 193 * uniform());
    const exact = Math.exp(x);
    const fast = fastExp(x);
    worst = Math.max(worst, Math.abs(fast - exact) / exact);
    if (Math.fround(fast) !== Math.fround(exact)) {
      differ++;
      assert.equal(ulps(fast, exact), 1, `fastExp(${x}) rounds ${ulps(fast, exact)} float32 ulps from Math.exp`);
    }
  }
  assert.ok(worst < 1e-15, `largest relative difference ${worst}`);
  // Fewer than one input in 10^7 is expected to round the other way: more than one in a million is a real error.
  assert.ok(differ <= 1, `${differ} of ${n} inputs round to another float32`);
  for (const x of [0, -0, 1e-30, -1e-30, 699.9, -699.9, 700, -700, 710, -746, Infinity, -Infinity, NaN]) {
    const expected = Math.exp(x);
    const got = fastExp(x);
    assert.ok(Object.is(got, expected) || Math.abs(got - expected) <= 1e-15 * expected, `fastExp(${x}) = ${got}`);
  }
  assert.equal(fastExp(0), 1);
});

const FUSED_SHAPES = [[7], [3, 5], [2, 3, 4, 6], [2, 64, 171], [0, 4]];

Deno.test({
  name: "blas kernels: siluGate equals tf.mul(tf.mul(a, tf.sigmoid(a)), b) on cpu, value and gradients, bit for bit",
  ignore: !HAS_BLAS,
  fn: async () => {
    const composite = (a: tf.Tensor, b: tf.Tensor) => tf.mul(tf.mul(a, tf.sigmoid(a)), b);
    for (const shape of FUSED_SHAPES) {
      await assertSameAsCpu(
        `siluGate [${shape}]`,
        () => siluGate(tensor(shape, 42, { specials: true }), tensor(shape, 43, { specials: true })),
        () => composite(tensor(shape, 42, { specials: true }), tensor(shape, 43, { specials: true })),
      );
      // Large inputs too (±8): the sigmoid's tails.
      const big = (seed: number) => tf.mul(tensor(shape, seed), 8);
      await assertSameAsCpu(
        `d siluGate [${shape}]`,
        () => withGrads(siluGate, [big(44), tensor(shape, 45)]),
        () => withGrads(composite, [big(44), tensor(shape, 45)]),
      );
    }
    // Where b also feeds another op, its gradient is the same bits; where a does, a's gradient adds its three parts
    // in another order (the kernel adds its two first): float rounding.
    const reuse = (gate: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor, which: 0 | 1) => (a: tf.Tensor, b: tf.Tensor) =>
      tf.add(gate(a, b), tf.mul([a, b][which], 0.3));
    await assertSameAsCpu(
      "d siluGate with b reused",
      () => withGrads(reuse(siluGate, 1), [tensor([4, 33], 46), tensor([4, 33], 47)]),
      () => withGrads(reuse(composite, 1), [tensor([4, 33], 46), tensor([4, 33], 47)]),
    );
    await onBackend("blas", () =>
      tf.tidy(() => {
        const grads = (gate: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor) =>
          withGrads(reuse(gate, 0), [tensor([4, 33], 46), tensor([4, 33], 47)]).map((t) => t.dataSync());
        const [fused, reference] = [grads(siluGate), grads(composite)];
        fused.forEach((values, k) =>
          values.forEach((v, i) => {
            const r = reference[k][i];
            assert.ok(Math.abs(v - r) <= 2 ** -22 * Math.max(1, Math.abs(r)), `output ${k} element ${i}: ${v} vs ${r}`);
          })
        );
      }));
    await onBackend("blas", () => {
      assert.throws(() => siluGate(tf.ones([2, 3]), tf.ones([3])), /siluGate: a and b must have one shape/);
    });
  },
});

Deno.test({
  name: "blas kernels: eluPlusOne equals relu(x) + exp(min(x, 0)) on cpu, value and gradient, bit for bit",
  ignore: !HAS_BLAS,
  fn: async () => {
    const composite = (x: tf.Tensor) => tf.add(tf.relu(x), tf.exp(tf.minimum(x, 0)));
    assert.ok(tf.getKernel(ELU_PLUS_ONE, "blas"), "the blas backend runs the fused kernel");
    for (const shape of FUSED_SHAPES) {
      await assertSameAsCpu(
        `eluPlusOne [${shape}]`,
        () => eluPlusOne(tensor(shape, 52, { specials: true })),
        () => composite(tensor(shape, 52, { specials: true })),
      );
      // Gradients over ±6, and at the specials (x = 0 and ±0 included: the two branches meet there).
      await assertSameAsCpu(
        `d eluPlusOne [${shape}]`,
        () => withGrads(eluPlusOne, [tf.mul(tensor(shape, 53), 6)]),
        () => withGrads(composite, [tf.mul(tensor(shape, 53), 6)]),
      );
      await assertSameAsCpu(
        `d eluPlusOne [${shape}] at the specials`,
        () => withGrads(eluPlusOne, [tensor(shape, 54, { specials: true })]),
        () => withGrads(composite, [tensor(shape, 54, { specials: true })]),
      );
    }
    await onBackend("blas", () => assert.throws(() => eluPlusOne([1] as never), /eluPlusOne: x must be a tf.Tensor/));
  },
});

Deno.test({
  name:
    "blas kernels: scaledReluPair equals [relu(x)·a, relu(x)·b] on cpu, value and gradients in x, a, b, bit for bit",
  ignore: !HAS_BLAS,
  fn: async () => {
    // cosFormer's composite, as lib/attention/cosformer.ts had it: relu(x) once, times each weight, concatenated.
    const composite = (x: tf.Tensor, a: tf.Tensor, b: tf.Tensor) => {
      const r = tf.relu(x);
      return tf.concat([tf.mul(r, a), tf.mul(r, b)], -1);
    };
    const fused = (x: tf.Tensor, a: tf.Tensor, b: tf.Tensor) =>
      scaledReluPair(x, { a: a as tf.Tensor2D, b: b as tf.Tensor2D });
    assert.ok(tf.getKernel(SCALED_RELU_PAIR, "blas"), "the blas backend runs the fused kernel");
    // n = 1, 63, 65 rows, d odd and even, rank 2 to 4 (cosFormer's is [b, h, n, d]).
    for (const shape of [[1, 1, 1, 3], [2, 3, 63, 5], [1, 2, 65, 8], [4, 7], [3, 1, 2]]) {
      const n = shape[shape.length - 2];
      const inputs = (specials: boolean) => [tensor(shape, 61, { specials }), tensor([n, 1], 62), tensor([n, 1], 63)];
      await assertSameAsCpu(
        `scaledReluPair [${shape}]`,
        () => fused(...inputs(true) as [tf.Tensor, tf.Tensor, tf.Tensor]),
        () => composite(...inputs(true) as [tf.Tensor, tf.Tensor, tf.Tensor]),
      );
      for (const specials of [false, true]) {
        await assertSameAsCpu(
          `d scaledReluPair [${shape}]${specials ? " at the specials" : ""}`,
          () => withGrads(fused, inputs(specials)),
          () => withGrads(composite, inputs(specials)),
        );
      }
    }
    // A gradient of a gradient runs differentiable ops: the same values as the composite's.
    const second = (f: typeof composite) => () => {
      const [x, a, b] = [tensor([2, 5, 4], 64), tensor([5, 1], 65), tensor([5, 1], 66)];
      const cot = tensor([2, 5, 8], 67);
      const dx = (y: tf.Tensor) => tf.grad((z: tf.Tensor) => tf.sum(tf.mul(f(z, y, b), cot)))(x);
      return tf.grad((y: tf.Tensor) => tf.sum(tf.mul(dx(y), x)))(a);
    };
    await assertSameAsCpu("d² scaledReluPair", second(fused), second(composite));
    await onBackend("blas", () => {
      const start = tf.memory().numTensors;
      tf.tidy(() => {
        withGrads(fused, [tensor([2, 3, 4], 68), tensor([3, 1], 69), tensor([3, 1], 70)]);
      });
      assert.equal(tf.memory().numTensors, start, "no tensor leaks");
      assert.throws(
        () => scaledReluPair(tf.ones([3]), { a: tf.ones([3, 1]), b: tf.ones([3, 1]) }),
        /x must be a tf.Tensor of rank >= 2/,
      );
      assert.throws(
        () =>
          scaledReluPair(tf.ones([2, 3, 4]), { a: tf.ones([2, 1]) as tf.Tensor2D, b: tf.ones([3, 1]) as tf.Tensor2D }),
        /weights.a must be a tf.Tensor of shape \[3, 1\] \(one weight per row of x \[..., 3, d\]\), got shape \[2,1\]/,
      );
    });
  },
});

Deno.test({
  name: "blas kernels: srmsNorm equals normalizeLastAxis(x, 'srms') on cpu, value and gradient, bit for bit",
  ignore: !HAS_BLAS,
  fn: async () => {
    const fused = (x: tf.Tensor) => srmsNorm(x);
    const reference = (x: tf.Tensor) => normalizeLastAxis(x, "srms");
    for (const shape of [[7], [3, 5], [2, 3, 4, 6], [2, 128, 64], [3, 1]]) {
      await assertSameAsCpu(
        `srms [${shape}]`,
        () => fused(tensor(shape, 48, { specials: true })),
        () => reference(tensor(shape, 48, { specials: true })),
      );
      await assertSameAsCpu(
        `d srms [${shape}]`,
        () => withGrads(fused, [tensor(shape, 49)]),
        () => withGrads(reference, [tensor(shape, 49)]),
      );
    }
    // A residual stream: x feeds the norm and the sum, and its gradient adds three parts in the composite's order.
    const residual = (norm: (x: tf.Tensor) => tf.Tensor) => (x: tf.Tensor, w: tf.Tensor) =>
      tf.add(x, tf.mul(norm(x), w));
    await assertSameAsCpu(
      "d x + srms(x) · w",
      () => withGrads(residual(fused), [tensor([2, 9, 16], 50), tensor([16], 51)]),
      () => withGrads(residual(reference), [tensor([2, 9, 16], 50), tensor([16], 51)]),
    );
    await onBackend("blas", () => {
      assert.throws(() => srmsNorm(tf.scalar(1)), /srmsNorm: x must be a tf.Tensor of rank >= 1/);
    });
    // A zero row: the denominator is 1e-8 and the gradient finite, as in the composite.
    await assertSameAsCpu(
      "d srms of a zero row",
      () => withGrads(fused, [tf.zeros([2, 8])]),
      () => withGrads(reference, [tf.zeros([2, 8])]),
    );
  },
});

Deno.test({
  name:
    "blas kernels: Softmax's fused gradient equals tfjs's on cpu for long rows; a second-order gradient still works",
  ignore: !HAS_BLAS,
  fn: async () => {
    await assertSameAsCpu(
      "d softmax [4, 4, 128, 128]",
      () => withGrads((x) => tf.softmax(x), [tensor([4, 4, 128, 128], 52)]),
    );
    // A gradient of a gradient runs differentiable ops instead of the fused kernel: the same values but for float
    // rounding (the ops differ from those tfjs differentiates in the composite). tfjs has no second-order gradient
    // through sigmoid or softmax on any backend: their gradients use the saved output, which the outer tape cannot
    // follow.
    const second = (f: (x: tf.Tensor) => tf.Tensor) => (x: tf.Tensor) => {
      const inner = tf.grad((y: tf.Tensor) => tf.sum(tf.mul(f(y), tf.tensor(seeded(y.shape, 53), y.shape))));
      return tf.grad((y: tf.Tensor) => tf.sum(tf.square(inner(y))))(x);
    };
    await onBackend("blas", () =>
      tf.tidy(() => {
        const fused = second((x) => srmsNorm(x))(tensor([3, 7], 56)).dataSync();
        const reference = second((x) => normalizeLastAxis(x, "srms"))(tensor([3, 7], 56)).dataSync();
        fused.forEach((v, i) => assert.ok(Math.abs(v - reference[i]) <= 1e-5 * Math.abs(reference[i]), `d² srms ${i}`));
      }));
  },
});

Deno.test({
  name: "blas kernels: recycled output arrays never reach data that is still visible",
  ignore: !HAS_BLAS,
  fn: async () => {
    // Big enough for the pool; small arrays are never recycled.
    const n = 4 * MIN_POOLED_LENGTH;
    const [av, bv] = [seeded([n], 60), seeded([n], 61)];
    const expected = Array.from(av, (v, i) => Math.fround(v + bv[i]));
    await onBackend("blas", () => {
      const start = tf.memory().numTensors;
      const a = tf.tensor2d(av, [4, n / 4]);
      const b = tf.tensor2d(bv, [4, n / 4]);
      const fresh = () => tf.add(a, b); // [4, n / 4], from the pool once arrays of its size come back
      const before = poolStats();
      // After each release, outputs of that size with other values: an array still visible but wrongly recycled
      // would be overwritten by them.
      const churn: [tf.Tensor, tf.Tensor][] = [];
      const interlope = () => churn.push([tf.sub(a, b), tf.mul(a, b)], [tf.sub(a, b), tf.mul(a, b)]);
      // Read out, then disposed: the caller may keep the array, so it is never handed out again.
      const read = fresh();
      const values = read.dataSync();
      read.dispose();
      interlope();
      // A reshape shares its data (one data id, counted twice), a continuous strided slice (a cpu kernel) is a view.
      const reshapedParent = fresh();
      const reshaped = tf.reshape(reshapedParent, [n]);
      reshapedParent.dispose();
      interlope();
      const parent = fresh();
      const view = tf.stridedSlice(parent, [1, 0], [2, n / 4], [1, 1]);
      const backend = tf.backend() as unknown as { data: { get(id: object): { values: Float32Array } } };
      assert.equal(backend.data.get(view.dataId).values.buffer, backend.data.get(parent.dataId).values.buffer);
      parent.dispose();
      interlope();
      // Freed with nothing else holding it: recycled, and handed out again.
      fresh().dispose();
      interlope();
      assert.deepEqual(Array.from(values), expected, "values read before dispose were overwritten");
      assert.deepEqual(Array.from(reshaped.dataSync()), expected, "a reshape of a freed tensor was overwritten");
      assert.deepEqual(Array.from(view.dataSync()), expected.slice(n / 4, n / 2), "a view was overwritten");
      const after = poolStats();
      assert.ok(after.recycled > before.recycled && after.reused > before.reused, JSON.stringify({ before, after }));
      // Recycled arrays hold stale values: each kernel writes every element.
      const difference = Array.from(av, (v, i) => Math.fround(v - bv[i]));
      const product = Array.from(av, (v, i) => Math.fround(v * bv[i]));
      for (const [sub, mul] of churn) {
        assert.deepEqual(Array.from(sub.dataSync()), difference);
        assert.deepEqual(Array.from(mul.dataSync()), product);
      }
      tf.dispose([a, b, reshaped, view, ...churn.flat()]);
      assert.equal(tf.memory().numTensors, start);
    });
    // A cpu kernel on a blas tensor moves its data to the cpu backend, which frees it on blas: never recycled.
    const moved = await onBackend("blas", () => tf.add(tf.tensor1d(av), 0));
    await onBackend("cpu", () => tf.dispose(tf.add(moved, 0)));
    const cpuData = (tf.findBackend("cpu") as unknown as { data: { has(id: object): boolean } }).data;
    assert.ok(cpuData.has(moved.dataId), "the tensor moved to cpu");
    await onBackend("blas", () => tf.tidy(() => tf.dispose(Array.from({ length: 4 }, () => tf.neg(tf.tensor1d(bv))))));
    await onBackend("cpu", () => assert.deepEqual(Array.from(moved.dataSync()), Array.from(av)));
    moved.dispose();
  },
});
