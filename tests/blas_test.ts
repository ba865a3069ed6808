import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { initBackend, loadableBackends } from "../lib/backend.ts";
import { randomNormal } from "../lib/random.ts";
import { assertClose } from "./helpers.ts";
import { dataBytes, resetPeakDataBytes } from "../lib/blas/pool.ts";

const HAS_BLAS = (await loadableBackends()).includes("blas");

interface Case {
  a: number[];
  b: number[];
  transposeA?: boolean;
  transposeB?: boolean;
}

// Shapes as stored: transposed operands are given in their stored layout.
const CASES: Case[] = [
  { a: [3, 4], b: [4, 5] },
  { a: [4, 3], b: [4, 5], transposeA: true },
  { a: [3, 4], b: [5, 4], transposeB: true },
  { a: [4, 3], b: [5, 4], transposeA: true, transposeB: true },
  { a: [1, 3, 4], b: [1, 4, 5] },
  { a: [6, 3, 4], b: [6, 4, 5] },
  { a: [6, 4, 3], b: [6, 5, 4], transposeA: true, transposeB: true },
  { a: [2, 3, 7, 4], b: [2, 3, 4, 5], transposeB: false },
  { a: [6, 3, 4], b: [1, 4, 5] },
  { a: [6, 3, 4], b: [4, 5] },
  { a: [6, 4, 3], b: [4, 5], transposeA: true },
  { a: [1, 3, 4], b: [6, 5, 4], transposeB: true },
  { a: [1, 1], b: [1, 1] },
  { a: [3, 1], b: [1, 5] },
  { a: [1, 4], b: [4, 1] },
  { a: [5, 1, 4], b: [5, 4, 1] },
];

function label(c: Case): string {
  return `[${c.a}]${c.transposeA ? "ᵀ" : ""} x [${c.b}]${c.transposeB ? "ᵀ" : ""}`;
}

/** Output and gradients of matMul (or fused matMul) through a random cotangent, read back as plain arrays. */
function matMulAndGrads(backend: string, c: Case, fused: boolean) {
  return tf.tidy(() => {
    const a = randomNormal([...c.a], { seed: 1 });
    const b = randomNormal([...c.b], { seed: 2 });
    const n = c.transposeB ? c.b.at(-2)! : c.b.at(-1)!;
    const bias = randomNormal([n], { seed: 3 });
    const f = (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
      fused
        ? tf.fused.matMul({
          a: x,
          b: y,
          bias: z,
          transposeA: c.transposeA,
          transposeB: c.transposeB,
          activation: "elu",
        })
        : tf.matMul(x, y, c.transposeA, c.transposeB);
    const out = f(a, b, bias);
    const cot = randomNormal([...out.shape], { seed: 4 });
    // tfjs 4.22's BatchMatMul gradient does not sum over broadcast batch dims (on any backend),
    // so gradients are compared only where both operands have the same batch shape.
    if (c.a.slice(0, -2).join() !== c.b.slice(0, -2).join()) return { backend, out: out.arraySync(), grads: [] };
    const inputs = fused ? [a, b, bias] : [a, b];
    const grads = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(xs[0], xs[1], xs[2] ?? bias), cot)))(inputs);
    return { backend, out: out.arraySync(), grads: grads.map((g) => g.arraySync()) };
  });
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

/** A plain JavaScript batched matmul with NumPy broadcasting of the batch dims: the ground truth. */
function naiveMatMul(c: Case): tf.Tensor {
  return tf.tidy(() => {
    const a = randomNormal([...c.a], { seed: 1 });
    const b = randomNormal([...c.b], { seed: 2 });
    const at = c.transposeA
      ? tf.transpose(a, [...a.shape.keys()].map((i, _, all) => i < all.length - 2 ? i : 2 * all.length - 3 - i))
      : a;
    const bt = c.transposeB
      ? tf.transpose(b, [...b.shape.keys()].map((i, _, all) => i < all.length - 2 ? i : 2 * all.length - 3 - i))
      : b;
    // Broadcast [..., M, K, 1] * [..., 1, K, N] and sum over K: a matmul without BatchMatMul.
    return tf.sum(tf.mul(tf.expandDims(at, -1), tf.expandDims(bt, -3)), -2);
  });
}

Deno.test({
  name: "blas: BatchMatMul equals a broadcast-and-sum reference, forward and gradient, and agrees with cpu",
  ignore: !HAS_BLAS,
  fn: async (t) => {
    for (const c of CASES) {
      await t.step(label(c), async () => {
        const blas = await onBackend("blas", () => matMulAndGrads("blas", c, false));
        const cpu = await onBackend("cpu", () => matMulAndGrads("cpu", c, false));
        const reference = await onBackend("cpu", () => tf.tidy(() => naiveMatMul(c).arraySync()));
        tf.tidy(() => {
          assertClose(
            tf.tensor(blas.out as number[]),
            tf.tensor(reference as number[]),
            `${label(c)}: blas vs reference`,
          );
          // tfjs's cpu kernel broadcasts batch dims by flat index modulo, which is right when one side's batch is 1
          // or both are equal; every case here is of that kind, so cpu is a second reference.
          assertClose(tf.tensor(blas.out as number[]), tf.tensor(cpu.out as number[]), `${label(c)}: blas vs cpu`);
          blas.grads.forEach((g, i) =>
            assertClose(tf.tensor(g as number[]), tf.tensor(cpu.grads[i] as number[]), `${label(c)}: gradient ${i}`)
          );
        });
      });
    }
  },
});

Deno.test({
  name: "blas: batch dims broadcast in both directions, where tfjs's cpu kernel gets them wrong",
  ignore: !HAS_BLAS,
  fn: async (t) => {
    // cpu maps output batch i to operand batch i % size, so [2, 1] x [2] gives 2 matrices instead of 4.
    for (const c of [{ a: [2, 1, 3, 4], b: [1, 3, 4, 5] }, { a: [2, 1, 3, 4], b: [2, 4, 5] }]) {
      await t.step(label(c), async () => {
        const blas = await onBackend("blas", () => matMulAndGrads("blas", c, false));
        const reference = await onBackend("cpu", () => tf.tidy(() => naiveMatMul(c).arraySync()));
        tf.tidy(() => assertClose(tf.tensor(blas.out as number[]), tf.tensor(reference as number[]), label(c)));
      });
    }
  },
});

Deno.test({
  name: "blas: _FusedMatMul (bias + elu) agrees with cpu, forward and gradient",
  ignore: !HAS_BLAS,
  fn: async (t) => {
    for (const c of CASES.filter((c) => c.a.length === c.b.length)) {
      await t.step(label(c), async () => {
        const blas = await onBackend("blas", () => matMulAndGrads("blas", c, true));
        const cpu = await onBackend("cpu", () => matMulAndGrads("cpu", c, true));
        tf.tidy(() => {
          assertClose(tf.tensor(blas.out as number[]), tf.tensor(cpu.out as number[]), `${label(c)}: output`);
          blas.grads.forEach((g, i) =>
            assertClose(tf.tensor(g as number[]), tf.tensor(cpu.grads[i] as number[]), `${label(c)}: gradient ${i}`)
          );
        });
      });
    }
  },
});

Deno.test({
  name: "blas: _FusedMatMul agrees with cpu for every activation, with and without bias, forward and gradient",
  ignore: !HAS_BLAS,
  fn: async (t) => {
    const activations = ["linear", "relu", "relu6", "sigmoid", "elu", "leakyrelu", "prelu"] as const;
    // [3, 5, 4] x [3, 4, 6], inputs scaled by 2 so that outputs reach past relu6's kink at 6.
    type Run = { out: unknown; grads: unknown[] };
    const run = (activation: typeof activations[number], withBias: boolean): Run => {
      let result: Run = { out: null, grads: [] };
      tf.tidy(() => {
        const a = tf.mul(randomNormal([3, 5, 4], { seed: 11 }), 2);
        const b = tf.mul(randomNormal([3, 4, 6], { seed: 12 }), 2);
        const bias = randomNormal([6], { seed: 13 });
        const alpha = tf.mul(randomNormal([6], { seed: 14 }), 0.3);
        const cot = randomNormal([3, 5, 6], { seed: 15 });
        const f = (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
          tf.fused.matMul({
            a: x as tf.Tensor3D,
            b: y as tf.Tensor3D,
            ...(withBias ? { bias: z } : {}),
            activation,
            ...(activation === "prelu" ? { preluActivationWeights: alpha } : {}),
            ...(activation === "leakyrelu" ? { leakyreluAlpha: 0.15 } : {}),
          });
        const out = f(a, b, bias).arraySync();
        const inputs = withBias ? [a, b, bias] : [a, b];
        const grads = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(xs[0], xs[1], xs[2] ?? bias), cot)))(inputs)
          .map((g) => g.arraySync());
        result = { out, grads };
      });
      return result;
    };
    for (const activation of activations) {
      for (const withBias of [true, false]) {
        await t.step(`${activation}${withBias ? " + bias" : ""}`, async () => {
          const blas = await onBackend("blas", () => run(activation, withBias));
          const cpu = await onBackend("cpu", () => run(activation, withBias));
          tf.tidy(() =>
            assertClose(tf.tensor(blas.out as number[]), tf.tensor(cpu.out as number[]), `${activation}: output`)
          );
          assert.equal(blas.grads.length, withBias ? 3 : 2);
          tf.tidy(() =>
            blas.grads.forEach((g, i) =>
              assertClose(
                tf.tensor(g as number[]),
                tf.tensor(cpu.grads[i] as number[]),
                `${activation}: gradient ${i}`,
              )
            )
          );
        });
      }
    }
  },
});

Deno.test({
  name: "blas: mismatched inner dims are an error, int32 falls back to the cpu kernel, nothing leaks",
  ignore: !HAS_BLAS,
  fn: async () => {
    await onBackend("blas", () => {
      assert.throws(() => tf.matMul(tf.ones([2, 3]), tf.ones([4, 5])), /inner shapes/);
      const ints = tf.matMul(tf.tensor2d([[1, 2]], [1, 2], "int32"), tf.tensor2d([[3], [4]], [2, 1], "int32"));
      assert.deepEqual(ints.arraySync(), [[11]]);
      const start = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) {
        tf.dispose(
          tf.tidy(() =>
            tf.fused.matMul({ a: tf.ones([2, 3, 4]), b: tf.ones([4, 5]), bias: tf.ones([5]), activation: "relu" })
          ),
        );
      }
      assert.equal(tf.memory().numTensors, start);
      tf.dispose(ints);
    });
  },
});

Deno.test({
  name: "blas: dataBytes counts the backend's buffers once (a view adds nothing) and keeps the peak until reset",
  ignore: !HAS_BLAS,
  fn: async () => {
    await onBackend("blas", () => {
      const start = dataBytes().live;
      resetPeakDataBytes();
      const x = tf.zeros([1000]); // 4000 bytes
      const y = tf.reshape(x, [10, 100]); // a view of x's data
      assert.equal(dataBytes().live - start, 4000);
      const z = tf.add(x, 1); // a new buffer of 1000 floats (and the scalar 1, freed at once)
      assert.equal(dataBytes().live - start, 8000);
      tf.dispose([x, y]);
      assert.equal(dataBytes().live - start, 4000, "x's buffer is freed only once both x and its view are disposed");
      z.dispose();
      assert.equal(dataBytes().live, start);
      assert.equal(dataBytes().peak - start, 8000 + 4 /* the scalar 1 */);
      resetPeakDataBytes();
      assert.equal(dataBytes().peak, start);
    });
  },
});
