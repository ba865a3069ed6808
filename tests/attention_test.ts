import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  applyFeatureMap,
  chunkedAttend,
  initialState,
  type QKV,
  RECURRENT_VARIANTS,
  recurrentAttend,
  recurrentStep,
  type RecurrentVariant,
  setFiniteChecks,
  type StateTensors,
  type VariantName,
  variants,
} from "../lib/attention/mod.ts";
import { assertClose, assertSameOutputAndGrads, maxAbsDiff, onBackend, seededQKV } from "./helpers.ts";
import { randomNormal } from "../lib/random.ts";
import { initBackend, loadableBackends } from "../lib/backend.ts";

// deno-lint-ignore no-explicit-any
type AnyOptions = Record<string, any>;

/** Option sets exercised for each variant: defaults plus the non-default branches. */
const OPTION_SETS: Record<VariantName, AnyOptions[]> = {
  softmax: [{}, { scale: 0.5 }, { queryBlockSize: 16 }],
  linear: [{}, { featureMap: "relu", chunkSize: 16 }],
  performer: [{ features: 12, seed: 3, chunkSize: 16 }],
  cosformer: [{}, { chunkSize: 7 }, { chunkSize: 7, maxLength: 200 }],
  norm: [{}, { norm: "layer", normScope: "head", chunkSize: 16 }, { featureMap: "elu+1", norm: "rms" }],
  diag: [{}, { inner: "relu", blockSize: 16 }, { blockSize: 7 }],
  local: [{}, { window: 5 }, { window: 0 }],
  retention: [{}, { gamma: 0.9, chunkSize: 16 }, { gamma: [0.5, 1], scale: 0.3, chunkSize: 7 }],
};

const LENGTHS = [1, 7, 63, 64, 65, 130];

function label(name: string, options: AnyOptions): string {
  return `${name} ${JSON.stringify(options)}`;
}

// The whole library must work on whichever backend is chosen: the equivalence suite runs on each one that loads.
const DEFAULT_BACKEND = await initBackend({ quiet: true });
const BACKENDS_UNDER_TEST = [DEFAULT_BACKEND, ...(await loadableBackends()).filter((b) => b !== DEFAULT_BACKEND)];

for (const name of Object.keys(variants) as VariantName[]) {
  Deno.test(`${name}: attend() equals the naive weights()·v path, outputs and gradients, on every backend`, async (t) => {
    const variant = variants[name];
    for (const backend of BACKENDS_UNDER_TEST) {
      await initBackend({ backend, quiet: true });
      for (const causal of [false, true]) {
        for (const base of OPTION_SETS[name]) {
          const options = { ...base, causal };
          for (const n of LENGTHS) {
            await t.step(`${backend}: ${label(name, options)} n=${n}`, () => {
              const qkv = seededQKV({ n, dk: 6, dv: 5, seed: n, std: 0.7 });
              assertSameOutputAndGrads(
                (x) => variant.attend(x, options),
                (x) => variant.reference(x, options),
                qkv,
                `${backend}: ${label(name, options)} n=${n}`,
                { atol: 1e-5, rtol: 2e-4 },
              );
              tf.dispose([qkv.q, qkv.k, qkv.v]);
            });
          }
        }
      }
    }
    await initBackend({ backend: DEFAULT_BACKEND, quiet: true });
  });
}

Deno.test("weights(): rows are distributions where the variant normalises, and masks hold", () => {
  tf.tidy(() => {
    const n = 21;
    const { q, k } = seededQKV({ n, dk: 4, dv: 4, seed: 5 });
    const ones = tf.ones([2, 2, n]);
    // Positive queries and keys: relu (cosformer) would zero a whole row of an all-negative query.
    const [pq, pk] = [tf.abs(q), tf.abs(k)] as tf.Tensor4D[];
    for (const name of ["softmax", "linear", "performer", "cosformer", "local"] as const) {
      for (const causal of [false, true]) {
        const w = variants[name].weights({ q: pq, k: pk }, { causal });
        assertClose(tf.sum(w, -1), ones, `${name} causal=${causal}: row sums`, { atol: 1e-4 });
        if (causal) {
          assert.equal(tf.sum(tf.abs(tf.linalg.bandPart(w, 0, -1).sub(tf.linalg.bandPart(w, 0, 0)))).dataSync()[0], 0);
        }
      }
    }
    const diagW = variants.diag.weights({ q, k }, { blockSize: 8 }).arraySync();
    const localW = variants.local.weights({ q, k }, { window: 3 }).arraySync();
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        if (Math.floor(i / 8) !== Math.floor(j / 8)) {
          assert.equal(diagW[1][0][i][j], 0, `diag weight (${i}, ${j}) crosses a block`);
        }
        if (Math.abs(i - j) > 3) assert.equal(localW[1][0][i][j], 0, `local weight (${i}, ${j}) is outside the window`);
      }
    }
    // Token 64 is alone in the second block of 64 (n = 65): its padded neighbours get no weight.
    const lone = seededQKV({ n: 65, dk: 4, dv: 3, seed: 1 });
    const out = variants.diag.attend(lone, {});
    assertClose(
      tf.slice(out, [0, 0, 64, 0], [-1, -1, 1, -1]),
      tf.slice(lone.v, [0, 0, 64, 0], [-1, -1, 1, -1]),
      "lone token",
    );
  });
});

Deno.test("closed forms: zero queries give running means of v", () => {
  tf.tidy(() => {
    const n = 9;
    const v = randomNormal<tf.Tensor4D>([1, 1, n, 3], { seed: 4 });
    const zeros = tf.zeros([1, 1, n, 2]) as tf.Tensor4D;
    const counts = tf.reshape(tf.range(1, n + 1), [1, 1, n, 1]);
    const runningMean = tf.div(tf.cumsum(v, 2), counts);
    const mean = tf.mul(tf.ones([1, 1, n, 1]), tf.mean(v, 2, true));
    // softmax with q = 0 is uniform; linear with phi = elu+1 and k = 0 has phi(k) = 1 for every key.
    assertClose(variants.softmax.attend({ q: zeros, k: zeros, v }, { causal: true }), runningMean, "softmax causal");
    assertClose(variants.softmax.attend({ q: zeros, k: zeros, v }), mean, "softmax");
    assertClose(
      variants.linear.attend({ q: zeros, k: zeros, v }, { causal: true, chunkSize: 4 }),
      runningMean,
      "linear causal",
    );
    assertClose(variants.linear.attend({ q: zeros, k: zeros, v }), mean, "linear");
    // NormAttention with phi = elu+1 and q = k = 0: raw output dk * cumsum(v), then SimpleRMSNorm.
    const raw = tf.mul(tf.cumsum(v, 2), 2);
    const srms = tf.div(raw, tf.add(tf.mul(tf.norm(raw, 2, -1, true), 1 / Math.sqrt(3)), 1e-8));
    assertClose(
      variants.norm.attend({ q: zeros, k: zeros, v }, { causal: true, featureMap: "elu+1" }),
      srms,
      "norm causal",
    );
  });
});

Deno.test("norm: SimpleRMSNorm over the hidden vector gives unit mean square per token", () => {
  tf.tidy(() => {
    const qkv = seededQKV({ n: 33, dk: 4, dv: 3, seed: 8 });
    const o = variants.norm.attend(qkv, { causal: true });
    const meanSquare = tf.mean(tf.square(tf.transpose(o, [0, 2, 1, 3])), [2, 3]); // [b, n]
    assertClose(meanSquare, tf.onesLike(meanSquare), "mean square", { atol: 1e-4 });
  });
});

function splitTokens(qkv: QKV, s: number): [QKV, QKV] {
  const part = (x: tf.Tensor4D, from: number, size: number) =>
    tf.slice(x, [0, 0, from, 0], [-1, -1, size, -1]) as tf.Tensor4D;
  const n = qkv.q.shape[2];
  const first = { q: part(qkv.q, 0, s), k: part(qkv.k, 0, s), v: part(qkv.v, 0, s) };
  const second = { q: part(qkv.q, s, n - s), k: part(qkv.k, s, n - s), v: part(qkv.v, s, n - s) };
  return [first, second];
}

/** Option sets of the recurrent forms; cosFormer's need M (maxLength) in advance. */
const RECURRENT_OPTIONS: Record<RecurrentVariant, AnyOptions[]> = {
  linear: [{}, { featureMap: "relu" }],
  performer: [{ features: 12, seed: 3 }],
  cosformer: [{ maxLength: 65 }, { maxLength: 200 }],
  norm: [{}, { featureMap: "elu+1", normScope: "head" }],
  retention: [{}, { gamma: [0.5, 1], scale: 0.3 }],
};

for (const name of RECURRENT_VARIANTS) {
  Deno.test(`${name}: naive ≡ chunked ≡ recurrent, outputs and gradients`, async (t) => {
    for (const options of RECURRENT_OPTIONS[name]) {
      for (const n of [1, 7, 65]) {
        for (const chunkSize of [1, 8, 64]) {
          await t.step(`${label(name, options)} n=${n} chunk=${chunkSize}`, () => {
            const qkv = seededQKV({ n, dk: 5, dv: 3, seed: 11 * n + chunkSize, std: 0.7 });
            const naive = (x: QKV) => variants[name].reference(x, { ...options, causal: true });
            const chunked = (x: QKV) => tf.tidy(() => chunkedAttend(name, x, { ...options, chunkSize }).output);
            const recurrent = (x: QKV) => tf.tidy(() => recurrentAttend(name, x, options).output);
            assertSameOutputAndGrads(chunked, naive, qkv, "chunked vs naive");
            assertSameOutputAndGrads(recurrent, chunked, qkv, "recurrent vs chunked");
            tf.dispose([qkv.q, qkv.k, qkv.v]);
          });
        }
      }
    }
  });

  Deno.test(`${name}: state split: [0, s) then [s, n) from the carried state equals one run`, async (t) => {
    const n = 70;
    const [options] = RECURRENT_OPTIONS[name].map((o) => ({ ...o, ...(o.maxLength ? { maxLength: n } : {}) }));
    for (const s of [1, 30, 64, 69]) {
      await t.step(`s=${s}`, () => {
        tf.tidy(() => {
          const qkv = seededQKV({ n, dk: 4, dv: 6, seed: s, std: 0.7 });
          const whole = chunkedAttend(name, qkv, { ...options, chunkSize: 16 });
          const [a, b] = splitTokens(qkv, s);
          const forms = {
            chunked: (x: QKV, from?: { state: StateTensors; position: number }) =>
              chunkedAttend(name, x, { ...options, chunkSize: 16, ...from } as never),
            recurrent: (x: QKV, from?: { state: StateTensors; position: number }) =>
              recurrentAttend(name, x, { ...options, ...from } as never),
          };
          for (const [firstName, first] of Object.entries(forms)) {
            for (const [secondName, second] of Object.entries(forms)) {
              const head = first(a);
              const tail = second(b, { state: head.state, position: s });
              const what = `${firstName} then ${secondName}`;
              assertClose(tf.concat([head.output, tail.output], 2), whole.output, `${what}: output`);
              assert.deepEqual(Object.keys(tail.state).sort(), Object.keys(whole.state).sort(), `${what}: state keys`);
              for (const [key, x] of Object.entries(whole.state as StateTensors)) {
                assertClose((tail.state as StateTensors)[key], x, `${what}: state ${key}`);
              }
            }
          }
        });
      });
    }
  });
}

Deno.test("recurrent state has a fixed size whatever the position", () => {
  tf.tidy(() => {
    let state = initialState({ batch: 1, heads: 2, dk: 4, dv: 3 });
    const sizes = new Set<number>();
    for (let t = 0; t < 50; t++) {
      const x = randomNormal<tf.Tensor3D>([1, 2, 4], { seed: t });
      const v = randomNormal<tf.Tensor3D>([1, 2, 3], { seed: 1000 + t });
      state = recurrentStep("norm", { q: x, k: x, v }, { state }).state;
      sizes.add(state.s.size + state.z.size);
    }
    assert.deepEqual([...sizes], [4 * 3 * 2 + 4 * 2]);
  });
});

Deno.test("softmax: query blocks bound memory: peak bytes of forward+backward grow like B·n, not n²", async () => {
  const n = 1024;
  const matrix = n * n * 4;
  // tf.profile keeps one global profiler: profile one run at a time.
  const peak = async (options: Record<string, unknown>) => {
    const qkv = seededQKV({ b: 1, h: 1, n, dk: 8, dv: 8, seed: 7 });
    const info = await tf.profile(() => {
      const grads = tf.grads((q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) =>
        tf.sum(variants.softmax.attend({ q, k, v } as QKV, { causal: true, ...options }))
      )([qkv.q, qkv.k, qkv.v]);
      tf.dispose(grads);
    });
    tf.dispose([qkv.q, qkv.k, qkv.v]);
    return info.peakBytes;
  };
  // The tf-op forms (the cpu backend): the matrix form holds n × n buffers, the query blocks do not.
  const [whole, blocked] = await onBackend("cpu", async () => [await peak({}), await peak({ queryBlockSize: 32 })]);
  assert.ok(whole > 2 * matrix, `unblocked peak ${whole} B should exceed two n x n matrices (${2 * matrix} B)`);
  assert.ok(blocked < matrix / 2, `blocked peak ${blocked} B should stay under half an n x n matrix (${matrix / 2} B)`);
  // On blas both run the fused kernels (lib/blas/fused_attention.ts), which hold one block of scores at a time.
  if ((await loadableBackends()).includes("blas")) {
    const fused = await onBackend("blas", async () => [await peak({}), await peak({ queryBlockSize: 32 })]);
    for (const bytes of fused) {
      assert.ok(bytes < matrix / 2, `fused peak ${bytes} B should stay under half an n x n matrix (${matrix / 2} B)`);
    }
  }
});

Deno.test("performer: weights approach softmax's as features grow from 16 to 256", () => {
  tf.tidy(() => {
    const dk = 16;
    const errors = [16, 64, 256].map((features) => {
      let total = 0;
      for (let seed = 0; seed < 4; seed++) {
        const { q, k } = seededQKV({ b: 1, h: 2, n: 24, dk, dv: 1, seed: 100 + seed, std: 0.5 });
        total += tf.mean(
          tf.abs(
            tf.sub(variants.performer.weights({ q, k }, { features, seed }), variants.softmax.weights({ q, k })),
          ),
        ).dataSync()[0];
      }
      return total / 4;
    });
    assert.ok(errors[1] < errors[0] && errors[2] < errors[1], `errors must fall with features: ${errors}`);
    // Monte Carlo error shrinks like 1/sqrt(m): 16x the features should at least halve it.
    assert.ok(errors[2] < 0.5 * errors[0], `256 features should halve the error of 16: ${errors}`);
  });
});

Deno.test("performer: an explicit projection overrides the seed and is checked", () => {
  tf.tidy(() => {
    const { q, k } = seededQKV({ n: 5, dk: 4, dv: 1, seed: 2 });
    const projection = randomNormal<tf.Tensor2D>([8, 4], { seed: 9 });
    const a = variants.performer.weights({ q, k }, { projection, seed: 1 });
    const b = variants.performer.weights({ q, k }, { projection, seed: 2 });
    assert.equal(maxAbsDiff(a, b), 0);
    assert.throws(
      () => variants.performer.weights({ q, k }, { projection: randomNormal([8, 3], { seed: 1 }) }),
      /projection must be \[features, dk\] with dk = 4/,
    );
    assert.throws(() => variants.performer.weights({ q, k }, { projection, features: 9 }), /features \(9\) disagrees/);
  });
});

Deno.test("bad input gets a clear error", () => {
  const good = seededQKV({ n: 4, dk: 3, dv: 2, seed: 1 });
  const bad = (f: () => unknown, pattern: RegExp) => assert.throws(f, pattern);
  for (const [name, variant] of Object.entries(variants)) {
    bad(
      () => variant.attend({ ...good, q: tf.zeros([4, 3]) as unknown as tf.Tensor4D }),
      new RegExp(`${name}.attend: q must have rank 4`),
    );
    bad(
      () => variant.attend({ ...good, k: tf.zeros([2, 2, 5, 3]) as tf.Tensor4D }),
      /q and k must have the same shape/,
    );
    bad(
      () => variant.attend({ ...good, v: tf.zeros([2, 2, 3, 2]) as tf.Tensor4D }),
      /v must be \[batch, heads, n, dv\]/,
    );
    // The non-finite check is opt-in: off, NaN passes through; on, a RangeError names the input.
    const nanQ = tf.fill([2, 2, 4, 3], NaN) as tf.Tensor4D;
    const infV = tf.fill([2, 2, 4, 2], Infinity) as tf.Tensor4D;
    tf.dispose(variant.attend({ ...good, q: nanQ }));
    const finiteBefore = setFiniteChecks(true);
    try {
      assert.throws(() => variant.attend({ ...good, q: nanQ }), {
        name: "RangeError",
        message: /q contains NaN or Infinity/,
      });
      assert.throws(() => variant.attend({ ...good, v: infV }), {
        name: "RangeError",
        message: /v contains NaN or Infinity/,
      });
    } finally {
      assert.equal(setFiniteChecks(finiteBefore), true);
      tf.dispose([nanQ, infV]);
    }
    bad(
      () => variant.attend(good, { casual: true } as AnyOptions),
      /unknown option "casual"; valid options are causal/,
    );
    bad(() => variant.weights(good, { causal: 1 } as AnyOptions), /option causal must be true or false/);
    bad(() => variant.attend({ q: good.q } as unknown as QKV), /k must be a tf.Tensor/);
    bad(() => variant.attend(good, "causal" as unknown as AnyOptions), /options must be an object/);
  }
  bad(() => variants.diag.attend(good, { blockSize: 0 }), /diag.attend: option blockSize must be >= 1, got 0/);
  bad(() => variants.diag.attend(good, { blockSize: 1.5 }), /option blockSize must be an integer/);
  bad(
    () => variants.linear.attend(good, { featureMap: "tanh" } as AnyOptions),
    /option featureMap must be one of "elu\+1", "elu", "relu", "identity"/,
  );
  bad(() => variants.norm.attend(good, { norm: "batch" } as AnyOptions), /option norm must be one of/);
  bad(() => variants.softmax.attend(good, { scale: -1 }), /option scale must be > 0/);
  bad(() => variants.local.attend(good, { window: -2 }), /option window must be >= 0/);
  bad(() => recurrentAttend("linear", good, { causal: false } as AnyOptions), /recurrent forms are causal/);
  bad(
    () => recurrentAttend("softmax" as "linear", good),
    new RegExp(`recurrentAttend: variant must be one of ${RECURRENT_VARIANTS.join(", ")}, got "softmax"`),
  );
  bad(
    () => chunkedAttend("norm", good, { state: initialState({ batch: 1, heads: 2, dk: 3, dv: 2 }) }),
    /option state must be/,
  );
  bad(
    () =>
      recurrentStep("linear", { q: good.q, k: good.k, v: good.v } as never, {
        state: initialState({ batch: 2, heads: 2, dk: 3, dv: 2 }),
      }),
    /rank-3 tensor/,
  );
  tf.dispose([good.q, good.k, good.v]);
});

Deno.test("no tensors leak from any form, forward or backward", () => {
  const qkv = seededQKV({ n: 70, dk: 4, dv: 3, seed: 3 });
  const cot = randomNormal<tf.Tensor4D>([2, 2, 70, 3], { seed: 4 });
  const run = () => {
    for (const variant of Object.values(variants)) {
      for (const causal of [false, true]) {
        tf.dispose([
          variant.attend(qkv, { causal }),
          variant.weights(qkv, { causal }),
          variant.reference(qkv, { causal }),
        ]);
        const grads = tf.grads((q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) =>
          tf.sum(tf.mul(variant.attend({ q, k, v } as QKV, { causal }), cot))
        )([qkv.q, qkv.k, qkv.v]);
        tf.dispose(grads);
      }
    }
    const blocked = tf.grads((q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) =>
      tf.sum(tf.mul(variants.softmax.attend({ q, k, v } as QKV, { causal: true, queryBlockSize: 16 }), cot))
    )([qkv.q, qkv.k, qkv.v]);
    tf.dispose(blocked);
    for (const name of RECURRENT_VARIANTS) {
      const [options] = RECURRENT_OPTIONS[name].map((o) => ({ ...o, ...(o.maxLength ? { maxLength: 140 } : {}) }));
      const a = chunkedAttend(name, qkv, { ...options, chunkSize: 16 } as never);
      const b = recurrentAttend(name, qkv, { ...options, state: a.state, position: 70 } as never);
      tf.dispose([a.output, b.output, ...Object.values(a.state), ...Object.values(b.state)]);
    }
    // The opt-in finite check throws after its probe: the probe must not leak either.
    const finiteBefore = setFiniteChecks(true);
    try {
      assert.throws(() => variants.linear.attend({ ...qkv, v: tf.fill([2, 2, 70, 3], NaN) as tf.Tensor4D }));
    } finally {
      setFiniteChecks(finiteBefore);
    }
  };
  run();
  const start = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) run();
  // Each run leaves only the NaN input it made itself: nothing from the library.
  assert.equal(tf.memory().numTensors, start + 3);
  tf.dispose([qkv.q, qkv.k, qkv.v, cot]);
});

Deno.test("elu+1 keeps small features exact in float32, with finite gradients", () => {
  tf.tidy(() => {
    const x = tf.tensor1d([-30, -17, -1, 0, 0.5, 100]);
    const y = applyFeatureMap(x, "elu+1");
    const expected = [Math.exp(-30), Math.exp(-17), Math.exp(-1), 1, 1.5, 101];
    Array.from(y.dataSync()).forEach((v, i) =>
      assert.ok(Math.abs(v - expected[i]) <= 1e-6 * expected[i], `${v} vs ${expected[i]}`)
    );
    const g = tf.grad((t: tf.Tensor) => tf.sum(applyFeatureMap(t, "elu+1")))(x);
    const dexpected = [Math.exp(-30), Math.exp(-17), Math.exp(-1), 1, 1, 1];
    Array.from(g.dataSync()).forEach((v, i) =>
      assert.ok(Math.abs(v - dexpected[i]) <= 1e-6 * dexpected[i], `grad ${v} vs ${dexpected[i]}`)
    );
  });
});
