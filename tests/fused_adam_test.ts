import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { loadableBackends } from "../lib/backend.ts";
import {
  ADAMW_UPDATE,
  type AdamwConstants,
  type AdamwSlot,
  adamwUpdate,
  SUMS_OF_SQUARES,
  sumsOfSquares,
} from "../lib/blas/fused_adam.ts";
import { MIN_POOLED_LENGTH } from "../lib/blas/pool.ts";
import { adam, globalNorm, squaredNorms } from "../lib/train/adam.ts";
import { seededNormal } from "../lib/random.ts";
import { onBackend } from "./helpers.ts";

const HAS_BLAS = (await loadableBackends()).includes("blas");

// Gradients meet these too: zeros of both signs, a subnormal (its square is 0 in float32), values whose square
// overflows float32 or nearly does, and infinities (the update is then NaN, on both paths).
const SPECIALS = [0, -0, 1e-40, -3e-39, 1e19, -2e18, 1e30, Infinity, -Infinity, 1e-20];

/** Seeded float32 values; with `specials`, every seventh is one of SPECIALS. */
function seeded(size: number, seed: number, options: { specials?: boolean; std?: number } = {}): Float32Array {
  const normal = seededNormal(seed);
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    out[i] = normal() * (options.std ?? 1);
    if (options.specials && i % 7 === 3) out[i] = SPECIALS[(i / 7 | 0) % SPECIALS.length];
  }
  return out;
}

/** Asserts identical float32 contents (NaN equal to NaN, −0 distinct from 0). */
function assertSameBits(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i])) {
      assert.fail(`${what}: element ${i} is ${actual[i]}, the composite's ${expected[i]}`);
    }
  }
}

/**
 * lib/train/adam.ts's update as it was written before the fused kernel (tf ops, one variable at a time): the
 * reference both paths must reproduce bit for bit.
 */
function referenceUpdate(slots: readonly AdamwSlot[], c: AdamwConstants): tf.Tensor[][] {
  const bias1 = 1 - c.beta1 ** c.t;
  const bias2 = 1 - c.beta2 ** c.t;
  return slots.map(({ w, g: g0, m, v, decay }) => {
    const g = c.scale === 1 ? g0 : tf.mul(g0, c.scale);
    const m1 = tf.add(tf.mul(m, c.beta1), tf.mul(g, 1 - c.beta1));
    const v1 = tf.add(tf.mul(v, c.beta2), tf.mul(tf.square(g), 1 - c.beta2));
    const update = tf.div(tf.div(m1, bias1), tf.add(tf.sqrt(tf.div(v1, bias2)), c.eps));
    const kept = decay && c.weightDecay > 0 ? tf.mul(w, 1 - c.lr * c.weightDecay) : w;
    return [tf.sub(kept, tf.mul(update, c.lr)), m1, v1];
  });
}

// Scalars, vectors, a matrix past the pool's threshold (its outputs come from recycled arrays), an empty tensor.
const SHAPES = [[], [5], [4, 6], [64, 171], [0, 3]];
// Each step: the clipping scale, weight decay and learning rate change; t counts from 1.
const STEPS: Omit<AdamwConstants, "t">[] = [
  { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, scale: 1, weightDecay: 0 },
  { lr: 3e-3, beta1: 0.9, beta2: 0.98, eps: 1e-8, scale: 0.37, weightDecay: 0.1 },
  { lr: 7e-4, beta1: 0.9, beta2: 0.98, eps: 1e-6, scale: 1, weightDecay: 0.1 },
  { lr: 2e-2, beta1: 0.8, beta2: 0.95, eps: 1e-8, scale: 1e-3, weightDecay: 0 },
  { lr: 1e-3, beta1: 0, beta2: 0, eps: 1e-8, scale: 0.999999, weightDecay: 0.01 },
];

/** Runs STEPS from seeded weights with `update`; returns w, m, v after each step, per shape. */
function runSteps(update: typeof adamwUpdate, options: { specials: boolean }): Float32Array[][][] {
  const sizes = SHAPES.map((s) => s.reduce((a, b) => a * b, 1));
  let state = SHAPES.map((shape, i) => ({
    w: tf.tensor(seeded(sizes[i], 10 + i, { specials: options.specials }), shape),
    m: tf.zeros(shape),
    v: tf.zeros(shape),
  }));
  const trace: Float32Array[][][] = [];
  STEPS.forEach((constants, s) => {
    const grads = SHAPES.map((shape, i) =>
      tf.tensor(seeded(sizes[i], 100 * s + i, { specials: options.specials, std: 0.01 * (i + 1) }), shape)
    );
    // Decay alternates over the variables, so that each step has both kinds.
    const slots = state.map((x, i) => ({ ...x, g: grads[i], decay: (i + s) % 2 === 0 }));
    const out = tf.tidy(() => update(slots, { ...constants, t: s + 1 }));
    trace.push(out.map((triple) => triple.map((t) => Float32Array.from(t.dataSync() as Float32Array))));
    tf.dispose([...grads, ...state.flatMap((x) => [x.w, x.m, x.v])]);
    state = out.map(([w, m, v]) => ({ w, m, v }));
  });
  tf.dispose(state.flatMap((x) => [x.w, x.m, x.v]));
  return trace;
}

function assertSameTraces(actual: Float32Array[][][], expected: Float32Array[][][], what: string): void {
  expected.forEach((step, s) =>
    step.forEach((triple, i) =>
      ["w", "m", "v"].forEach((name, k) =>
        assertSameBits(actual[s][i][k], triple[k], `${what}: step ${s}, [${SHAPES[i]}], ${name}`)
      )
    )
  );
}

Deno.test({
  name: "fused adam: adamwUpdate on blas equals adam.ts's former composite on cpu, w, m and v bit for bit",
  ignore: !HAS_BLAS,
  fn: async () => {
    for (const specials of [false, true]) {
      const expected = await onBackend("cpu", () => runSteps(referenceUpdate, { specials }));
      const fused = await onBackend("blas", () => runSteps(adamwUpdate, { specials }));
      assertSameTraces(fused, expected, `fused${specials ? ", with special values" : ""}`);
      // Elsewhere adamwUpdate runs its own composite: the same bits again.
      const composite = await onBackend("cpu", () => runSteps(adamwUpdate, { specials }));
      assertSameTraces(composite, expected, `composite on cpu${specials ? ", with special values" : ""}`);
    }
    // The inputs are float32 values whose update is not exact: a check that would pass on any arithmetic would not
    // see a wrong rounding. One step of the first variable by hand, in doubles rounded at each op.
    const trace = await onBackend("blas", () => runSteps(adamwUpdate, { specials: false }));
    const [w0, g0] = [seeded(1, 10)[0], seeded(1, 0, { std: 0.01 })[0]];
    const f = Math.fround;
    const m1 = f(f(0 * f(0.9)) + f(g0 * f(1 - 0.9)));
    const v1 = f(f(0 * f(0.999)) + f(f(g0 * g0) * f(1 - 0.999)));
    const u = f(f(m1 / f(1 - 0.9)) / f(f(Math.sqrt(f(v1 / f(1 - 0.999)))) + f(1e-8)));
    assert.equal(trace[0][0][0][0], f(w0 - f(u * f(1e-3))));
    assert.equal(trace[0][0][1][0], m1);
    assert.equal(trace[0][0][2][0], v1);
  },
});

Deno.test({
  name: "fused adam: one kernel updates every variable on blas; none of the composite's ops run",
  ignore: !HAS_BLAS,
  fn: async () => {
    await onBackend("blas", async () => {
      const slots = SHAPES.map((shape, i) => ({
        w: tf.ones(shape),
        g: tf.fill(shape, 0.5),
        m: tf.zeros(shape),
        v: tf.zeros(shape),
        decay: i % 2 === 0,
      }));
      const info = await tf.profile(() => {
        const out = adamwUpdate(slots, { ...STEPS[1], t: 1 });
        tf.dispose(out.flat());
      });
      assert.deepEqual(info.kernels.map((k) => k.name), [ADAMW_UPDATE]);
      const norms = await tf.profile(() => squaredNorms(slots.map((s) => s.g)).dispose());
      assert.deepEqual(norms.kernels.map((k) => k.name), [SUMS_OF_SQUARES]);
      tf.dispose(slots.flatMap((s) => [s.w, s.g, s.m, s.v]));
    });
  },
});

/** Five updates of three variables through adam(): w, m, v and each step's info. */
function trainAdam(options: { weightDecay: number }): { values: Float32Array[][]; infos: unknown[] } {
  const shapes = [[8, 600], [600], [3, 7]];
  const variables = tf.tidy(() =>
    Object.fromEntries(
      shapes.map((shape, i) => [`v${i}`, tf.variable(tf.tensor(seeded(shape[0] * (shape[1] ?? 1), 40 + i), shape))]),
    )
  );
  // clip 1: the first steps' gradients (global norm about 7) are clipped, the last (about 0.8) is not.
  const opt = adam(variables, { lr: 0.01, warmup: 2, steps: 5, clip: 1, beta2: 0.98, ...options });
  const infos: unknown[] = [];
  for (let s = 0; s < 5; s++) {
    const grads = Object.fromEntries(
      shapes.map((shape, i) => [
        `v${i}`,
        // The second variable has no gradient at step 3: it and its moments stay as they are.
        s === 3 && i === 1 ? null : tf.tensor(
          seeded(shape[0] * (shape[1] ?? 1), 50 + 10 * s + i, {
            std: 0.1 / (1 + 2 * s),
          }),
          shape,
        ),
      ]),
    );
    infos.push(opt.apply(grads));
    tf.dispose(Object.values(grads).filter((g): g is tf.Tensor => g !== null));
  }
  const values = Object.keys(variables).map((name) =>
    [variables[name], opt.m[name], opt.v[name]].map((t) => Float32Array.from(t.dataSync() as Float32Array))
  );
  opt.dispose();
  tf.dispose(Object.values(variables));
  return { values, infos };
}

Deno.test({
  name: "fused adam: adam() on blas (fused) and on cpu (composite) agree bit for bit, with clipping and weight decay",
  ignore: !HAS_BLAS,
  fn: async () => {
    for (const weightDecay of [0, 0.1]) {
      const cpu = await onBackend("cpu", () => trainAdam({ weightDecay }));
      const blas = await onBackend("blas", () => trainAdam({ weightDecay }));
      assert.deepEqual(blas.infos, cpu.infos, `weight decay ${weightDecay}: lr, norms, clipping and scales`);
      const clipped = cpu.infos.map((info) => (info as { clipped: boolean }).clipped);
      assert.ok(clipped.includes(true) && clipped.includes(false), `some steps clip, others not: ${clipped}`);
      cpu.values.forEach((triple, i) =>
        ["w", "m", "v"].forEach((name, k) =>
          assertSameBits(blas.values[i][k], triple[k], `weight decay ${weightDecay}: variable ${i}, ${name}`)
        )
      );
    }
  },
});

Deno.test({
  name: "fused adam: sumsOfSquares equals tf.sum(tf.square(x)) per tensor on cpu, bit for bit",
  ignore: !HAS_BLAS,
  fn: async () => {
    // Long vectors: the sum's order and its double accumulator decide the last bits.
    const sizes = [1, 7, MIN_POOLED_LENGTH + 3, 100_000, 0];
    const make = (specials: boolean) => sizes.map((n, i) => tf.tensor1d(seeded(n, 70 + i, { specials, std: 3 })));
    for (const specials of [false, true]) {
      const reference = () =>
        tf.tidy(() => tf.stack(make(specials).map((t) => tf.sum(tf.square(t)))).dataSync() as Float32Array);
      const expected = await onBackend("cpu", reference);
      const fused = await onBackend("blas", () => tf.tidy(() => sumsOfSquares(make(specials)).dataSync()));
      assertSameBits(fused, expected, `sumsOfSquares${specials ? " with special values" : ""}`);
      assertSameBits(
        await onBackend("cpu", () => tf.tidy(() => sumsOfSquares(make(specials)).dataSync())),
        expected,
        "sumsOfSquares on cpu",
      );
    }
    await onBackend("blas", () => {
      // Other dtypes go through the composite (a cast), an empty list gives an empty vector.
      const ints = tf.tensor1d([3, 4], "int32");
      const two = tf.scalar(2);
      const mixed = sumsOfSquares([ints, two]);
      assert.deepEqual(Array.from(mixed.dataSync()), [25, 4]);
      const none = sumsOfSquares([]);
      assert.deepEqual(none.shape, [0]);
      // globalNorm reads it: sqrt(25 + 4).
      assert.equal(globalNorm({ a: ints, b: null }), 5);
      tf.dispose([ints, two, mixed, none]);
    });
  },
});

Deno.test({
  name: "fused adam: bad arguments are clear errors on every backend",
  ignore: !HAS_BLAS,
  fn: async () => {
    for (const backend of ["blas", "cpu"] as const) {
      await onBackend(backend, () =>
        tf.tidy(() => {
          const [a, b] = [tf.zeros([2, 3]), tf.zeros([3])];
          const slot = { w: a, g: a, m: a, v: a, decay: false };
          const ok: AdamwConstants = { ...STEPS[0], t: 1 };
          assert.throws(() => adamwUpdate([{ ...slot, g: b }], ok), (e) =>
            e instanceof RangeError && /slots\[0\]\.g/.test(String(e)));
          assert.throws(() =>
            adamwUpdate([{ ...slot, m: [1] as unknown as tf.Tensor }], ok), TypeError);
          assert.throws(() =>
            adamwUpdate([{ ...slot, decay: 1 as unknown as boolean }], ok), /decay must be true or false/);
          assert.throws(() =>
            adamwUpdate({} as unknown as AdamwSlot[], ok), TypeError);
          assert.throws(() =>
            adamwUpdate([slot], { ...ok, t: 0 }), (e) =>
            e instanceof RangeError && /constants\.t/.test(String(e)));
          assert.throws(() =>
            adamwUpdate([slot], { ...ok, beta2: 1 }), (e) =>
            e instanceof RangeError && /beta2/.test(String(e)));
          assert.throws(() =>
            adamwUpdate([slot], { ...ok, scale: 0 }), RangeError);
          assert.throws(() =>
            adamwUpdate([slot], { ...ok, lr: "1" as unknown as number }), TypeError);
          assert.throws(() =>
            sumsOfSquares([a, 3 as unknown as tf.Tensor]), TypeError);
          assert.deepEqual(adamwUpdate([], ok), []);
        }));
    }
  },
});
