/**
 * Key-padding masks (option `keyMask`, issue 16 item 5) for every registered variant: pad keys are invisible to every
 * query in attend(), weights() and reference(), causal or not; their k and v rows get no gradient; trailing pads
 * leave the real tokens' outputs as on the truncated sequence; the recurrent forms and the decoders refuse a mask.
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  chunkedAttend,
  decoder,
  DECODER_VARIANTS,
  type QK,
  type QKV,
  RECURRENT_VARIANTS,
  recurrentAttend,
  recurrentStep,
  type Token,
  type VariantName,
  variants,
} from "../lib/attention/mod.ts";
import { assertClose, assertSameOutputAndGrads, maxAbsDiff, seededQKV } from "./helpers.ts";
import { lastPerformerPath } from "../lib/attention/performer.ts";
import { randomNormal } from "../lib/random.ts";
import { initBackend, loadableBackends } from "../lib/backend.ts";

// deno-lint-ignore no-explicit-any
type AnyOptions = Record<string, any>;
type Method = "attend" | "reference";

/** Option sets per variant (the Record makes the compiler ask for a new variant's entry): small blocks and chunks. */
const OPTION_SETS: Record<VariantName, AnyOptions[]> = {
  softmax: [{}, { queryBlockSize: 16 }],
  linear: [{ chunkSize: 16 }],
  performer: [{ features: 12, seed: 3, chunkSize: 16 }],
  cosformer: [{ chunkSize: 16 }],
  norm: [{ chunkSize: 16 }, { norm: "layer", normScope: "head" }],
  diag: [{ blockSize: 8 }, { blockSize: 8, inner: "relu" }],
  local: [{ window: 5 }],
  retention: [{ chunkSize: 16 }],
};

const NAMES = Object.keys(variants) as VariantName[];
const TOL = { atol: 1e-5, rtol: 2e-4 };

/**
 * The shapes under test, each with a [2, n] mask (1 real, 0 pad) whose rows differ: trailing pads only (`real`: the
 * real length of each row), or pads anywhere (`pads`: the pad positions of each row, a leading one included, so that
 * causal rows see no real key at first; with diag's blocks of 8, the block 56..62 of n = 63 holds pads only).
 */
interface Case {
  label: string;
  n: number;
  dk: number;
  dv: number;
  seed: number;
  rows: number[][];
}

function trailing(n: number, real: number[]): number[][] {
  return real.map((r) => Array.from({ length: n }, (_, j) => (j < r ? 1 : 0)));
}

function scattered(n: number, pads: number[][]): number[][] {
  return pads.map((p) => Array.from({ length: n }, (_, j) => (p.includes(j) ? 0 : 1)));
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

const CASES: Case[] = [
  { label: "n=1 all real", n: 1, dk: 6, dv: 5, seed: 1, rows: trailing(1, [1, 1]) },
  { label: "n=63 trailing", n: 63, dk: 6, dv: 5, seed: 2, rows: trailing(63, [56, 40]) },
  {
    label: "n=63 scattered",
    n: 63,
    dk: 6,
    dv: 5,
    seed: 3,
    rows: scattered(63, [[...range(56, 63)], [0, 5, 6, ...range(20, 24), 40, ...range(51, 63)]]),
  },
  { label: "n=65 trailing", n: 65, dk: 4, dv: 7, seed: 4, rows: trailing(65, [64, 35]) },
  { label: "n=65 scattered", n: 65, dk: 4, dv: 7, seed: 5, rows: scattered(65, [[0, 64], [10, ...range(35, 65)]]) },
];

function inputs(c: Case): { qkv: QKV; mask: tf.Tensor2D; real: tf.Tensor4D } {
  const qkv = seededQKV({ b: 2, h: 2, n: c.n, dk: c.dk, dv: c.dv, seed: c.seed, std: 0.7 });
  const mask = tf.tensor2d(c.rows, [2, c.n], "float32");
  const real = tf.reshape(mask, [2, 1, c.n, 1]) as tf.Tensor4D; // [b, 1, n, 1]
  return { qkv, mask, real };
}

const hasPads = (c: Case) => c.rows.some((row) => row.includes(0));

/** Asserts that `f` leaves no tensor behind. */
function noLeak<T>(what: string, f: () => T): T {
  const start = tf.memory().numTensors;
  const out = f();
  assert.equal(tf.memory().numTensors, start, `${what}: ${tf.memory().numTensors - start} tensors leaked`);
  return out;
}

function call(name: VariantName, method: Method, qkv: QKV, options: AnyOptions): tf.Tensor4D {
  return (variants[name][method] as (x: QKV, o: AnyOptions) => tf.Tensor4D)(qkv, options);
}

// 1. attend ≡ reference under the mask, outputs and gradients, on every backend that loads (blas runs the fused
// kernels where they take a mask, the other backends the tf-op forms).
const DEFAULT_BACKEND = await initBackend({ quiet: true });
const BACKENDS = [DEFAULT_BACKEND, ...(await loadableBackends()).filter((b) => b !== DEFAULT_BACKEND)];

for (const name of NAMES) {
  Deno.test(`keyMask ${name}: attend() ≡ reference(), outputs and gradients, on every backend`, async (t) => {
    for (const backend of BACKENDS) {
      await initBackend({ backend, quiet: true });
      for (const causal of [false, true]) {
        for (const base of OPTION_SETS[name]) {
          for (const c of CASES) {
            const what = `${backend}: ${name} ${JSON.stringify({ ...base, causal })} ${c.label}`;
            await t.step(what, () =>
              noLeak(what, () => {
                const { qkv, mask, real } = inputs(c);
                const options = { ...base, causal, keyMask: mask };
                assertSameOutputAndGrads(
                  (x) => variants[name].attend(x, options as never),
                  (x) => variants[name].reference(x, options as never),
                  qkv,
                  what,
                  TOL,
                );
                tf.dispose([qkv.q, qkv.k, qkv.v, mask, real]);
              }));
          }
        }
      }
    }
    await initBackend({ backend: DEFAULT_BACKEND, quiet: true });
  });
}

// 2. and 3. Pad keys are invisible: other k and v rows there change no output (but do without the mask), and their
// k and v rows get exactly zero gradient.
for (const name of NAMES) {
  Deno.test(`keyMask ${name}: pad keys' k, v change no output and get zero gradient`, async (t) => {
    for (const causal of [false, true]) {
      for (const base of OPTION_SETS[name]) {
        for (const c of CASES.filter(hasPads)) {
          const what = `${name} ${JSON.stringify({ ...base, causal })} ${c.label}`;
          await t.step(what, () =>
            noLeak(what, () => {
              const { qkv, mask, real } = inputs(c);
              tf.tidy(() => {
                const other = seededQKV({ b: 2, h: 2, n: c.n, dk: c.dk, dv: c.dv, seed: 100 + c.seed, std: 2 });
                const swap = (x: tf.Tensor4D, y: tf.Tensor4D) => tf.add(tf.mul(x, real), tf.mul(y, tf.sub(1, real)));
                const moved = { q: qkv.q, k: swap(qkv.k, other.k), v: swap(qkv.v, other.v) } as QKV;
                const options = { ...base, causal, keyMask: mask };
                for (const method of ["attend", "reference"] as const) {
                  assertClose(
                    call(name, method, moved, options),
                    call(name, method, qkv, options),
                    `${what} ${method}`,
                  );
                  // Without the mask the same change shows: the assertion above can fail.
                  const plain = { ...base, causal };
                  const changed = maxAbsDiff(call(name, method, moved, plain), call(name, method, qkv, plain));
                  assert.ok(changed > 1e-3, `${what} ${method}: without the mask the output should change`);
                  // 3. Gradients with respect to the pad keys' k and v rows are exactly zero.
                  const cot = randomNormal<tf.Tensor4D>([2, 2, c.n, c.dv], { seed: 7 });
                  const [dk, dv] = tf.grads((k: tf.Tensor, v: tf.Tensor) =>
                    tf.sum(
                      tf.mul(call(name, method, { q: qkv.q, k: k as tf.Tensor4D, v: v as tf.Tensor4D }, options), cot),
                    )
                  )([qkv.k, qkv.v]);
                  for (const [label, g] of [["k", dk], ["v", dv]] as const) {
                    const padPart = tf.max(tf.abs(tf.mul(g, tf.sub(1, real)))).dataSync()[0];
                    assert.equal(padPart, 0, `${what} ${method}: d/d${label} at pad keys`);
                    const realPart = tf.max(tf.abs(tf.mul(g, real))).dataSync()[0];
                    assert.ok(realPart > 0 && Number.isFinite(realPart), `${what} ${method}: d/d${label} at real keys`);
                  }
                }
                const w = variants[name].weights(moved, options as never);
                assertClose(w, variants[name].weights(qkv, options as never), `${what} weights`);
                // The pad keys' columns of weights() are 0.
                const padColumns = tf.mul(w, tf.reshape(tf.sub(1, mask), [2, 1, 1, c.n]));
                assert.equal(tf.max(tf.abs(padColumns)).dataSync()[0], 0, `${what}: weights of pad keys`);
              });
              tf.dispose([qkv.q, qkv.k, qkv.v, mask, real]);
            }));
        }
      }
    }
  });
}

// 4. Trailing pads: each sequence's real queries get the outputs of attend() over its real tokens alone. cosFormer's
// weight depends on M, which is the padded length n by default: it is fixed here (maxLength) for both calls.
for (const name of NAMES) {
  Deno.test(`keyMask ${name}: with trailing pads the real queries equal attend() on the truncated sequence`, async (t) => {
    for (const causal of [false, true]) {
      for (const base of OPTION_SETS[name]) {
        for (const c of CASES.filter((c) => c.label.includes("trailing"))) {
          const what = `${name} ${JSON.stringify({ ...base, causal })} ${c.label}`;
          await t.step(what, () =>
            noLeak(what, () => {
              const { qkv, mask, real } = inputs(c);
              tf.tidy(() => {
                const fixed = name === "cosformer" ? { maxLength: c.n } : {};
                const options = { ...base, ...fixed, causal };
                const whole = variants[name].attend(qkv, { ...options, keyMask: mask } as never);
                c.rows.forEach((row, b) => {
                  const length = row.filter((x) => x === 1).length;
                  const cut = (x: tf.Tensor4D) => tf.slice(x, [b, 0, 0, 0], [1, -1, length, -1]) as tf.Tensor4D;
                  const alone = variants[name].attend(
                    { q: cut(qkv.q), k: cut(qkv.k), v: cut(qkv.v) },
                    options as never,
                  );
                  assertClose(cut(whole), alone, `${what}: sequence ${b} (${length} real)`, TOL);
                });
              });
              tf.dispose([qkv.q, qkv.k, qkv.v, mask, real]);
            }));
        }
      }
    }
  });
}

// 5. A mask of ones is no mask: the same values, bit for bit, except softmax on a backend with the fused kernel
// (which takes no mask, so a mask sends it to the tf-op form): there within float32 rounding.
Deno.test("keyMask: a mask of ones gives the output of no mask", () => {
  for (const name of NAMES) {
    for (const causal of [false, true]) {
      for (const base of OPTION_SETS[name]) {
        const what = `${name} ${JSON.stringify({ ...base, causal })}`;
        noLeak(what, () =>
          tf.tidy(() => {
            const qkv = seededQKV({ b: 2, h: 2, n: 37, dk: 6, dv: 5, seed: 9, std: 0.7 });
            const ones = tf.ones([2, 37]) as tf.Tensor2D;
            for (const method of ["attend", "reference"] as const) {
              const masked = call(name, method, qkv, { ...base, causal, keyMask: ones });
              const plain = call(name, method, qkv, { ...base, causal });
              if (name === "softmax" && method === "attend") assertClose(masked, plain, `${what} ${method}`, TOL);
              else assert.equal(maxAbsDiff(masked, plain), 0, `${what} ${method}: not the same values`);
            }
          }));
      }
    }
  }
});

Deno.test("keyMask: a query that sees no real key returns 0, with finite gradients; bool and int32 masks work", () => {
  for (const name of NAMES) {
    for (const causal of [false, true]) {
      for (const base of OPTION_SETS[name]) {
        const what = `${name} ${JSON.stringify({ ...base, causal })}`;
        noLeak(what, () =>
          tf.tidy(() => {
            const n = 20;
            const qkv = seededQKV({ b: 2, h: 2, n, dk: 4, dv: 3, seed: 13, std: 0.7 });
            // Sequence 0: all pads; sequence 1: its first 3 keys are pads (when causal, queries 0..2 see none).
            const rows = [new Array(n).fill(0), Array.from({ length: n }, (_, j) => (j < 3 ? 0 : 1))];
            const mask = tf.tensor2d(rows, [2, n]);
            const options = { ...base, causal, keyMask: mask };
            const dead = tf.tensor4d(
              rows.flatMap((row, b) => row.map((_, i) => (b === 0 || (causal && i < 3) ? 1 : 0))),
              [2, 1, n, 1],
            );
            for (const method of ["attend", "reference"] as const) {
              const out = call(name, method, qkv, options);
              assert.ok(out.dataSync().every(Number.isFinite), `${what} ${method}: finite`);
              assert.equal(tf.max(tf.abs(tf.mul(out, dead))).dataSync()[0], 0, `${what} ${method}: dead rows are 0`);
              const grads = tf.grads((q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) =>
                tf.sum(call(name, method, { q, k, v } as QKV, options))
              )([qkv.q, qkv.k, qkv.v]);
              grads.forEach((g, i) => assert.ok(g.dataSync().every(Number.isFinite), `${what} ${method}: grad ${i}`));
              // The all-pad sequence has no gradient at all.
              for (const g of grads) {
                assert.equal(tf.max(tf.abs(tf.slice(g, [0, 0, 0, 0], [1, -1, -1, -1]))).dataSync()[0], 0, what);
              }
              // The same mask as bool and int32 (nonzero: real) gives the same values.
              for (const dtype of ["bool", "int32"] as const) {
                const cast = call(name, method, qkv, { ...options, keyMask: tf.cast(mask, dtype) });
                assert.equal(maxAbsDiff(cast, out), 0, `${what} ${method}: ${dtype} mask`);
              }
            }
            const w = variants[name].weights(qkv, options as never);
            assert.equal(tf.max(tf.abs(tf.mul(w, dead))).dataSync()[0], 0, `${what} weights: dead rows are 0`);
          }));
      }
    }
  }
});

// 6. Bad input: each error names keyMask.
Deno.test("keyMask: bad masks, and masks given to the recurrent forms or a decoder, get errors naming keyMask", () => {
  noLeak("bad input", () => {
    const qkv = seededQKV({ b: 2, h: 2, n: 4, dk: 3, dv: 2, seed: 1 });
    const disposed = tf.ones([2, 4]) as tf.Tensor2D;
    disposed.dispose();
    const good = tf.ones([2, 4]) as tf.Tensor2D;
    const wrong = {
      rank3: tf.ones([2, 1, 4]),
      rank1: tf.ones([4]),
      longer: tf.ones([2, 5]),
      batch1: tf.ones([1, 4]),
      complex: tf.tidy(() => tf.complex(tf.ones([2, 4]), tf.ones([2, 4]))),
    };
    for (const name of NAMES) {
      const variant = variants[name] as unknown as Record<Method | "weights", (x: QK, o: AnyOptions) => tf.Tensor>;
      for (const method of ["attend", "weights", "reference"] as const) {
        const owner = `${name}.${method}`;
        const bad = (keyMask: unknown, error: { name: string; message: RegExp }) =>
          assert.throws(() => variant[method](qkv, { keyMask }), error, `${owner}: ${error.message.source}`);
        bad(wrong.rank3, { name: "TypeError", message: /option keyMask must be a rank-2 tf.Tensor or null/ });
        bad(wrong.rank1, { name: "TypeError", message: /option keyMask must be a rank-2 tf.Tensor or null/ });
        bad([[1, 1, 1, 1], [1, 1, 1, 1]], {
          name: "TypeError",
          message: new RegExp(`^${owner}: option keyMask must be a rank-2 tf.Tensor or null, got an array`),
        });
        bad(true, { name: "TypeError", message: /option keyMask must be a rank-2 tf.Tensor or null, got true/ });
        bad(wrong.longer, {
          name: "Error",
          message: new RegExp(
            `^${owner}: option keyMask must have shape \\[batch, n\\] = \\[2, 4\\] \\(k's batch and length\\), ` +
              `got \\[2, 5\\]`,
          ),
        });
        bad(wrong.batch1, { name: "Error", message: /option keyMask must have shape \[batch, n\] = \[2, 4\]/ });
        bad(disposed, { name: "Error", message: new RegExp(`^${owner}: option keyMask was disposed`) });
        bad(wrong.complex, {
          name: "TypeError",
          message: /option keyMask must be float32, int32 or bool .*, got complex64/,
        });
        // null is no mask.
        tf.dispose(variant[method](qkv, { keyMask: null }));
      }
    }
    const refused = /option keyMask is for attend\(\), weights\(\) and reference\(\) only/;
    const first = (x: tf.Tensor4D) => tf.tidy(() => tf.squeeze(tf.slice(x, [0, 0, 0, 0], [-1, -1, 1, -1]), [2]));
    const token = { q: first(qkv.q), k: first(qkv.k), v: first(qkv.v) } as Token;
    for (const name of RECURRENT_VARIANTS) {
      const own = name === "cosformer" ? { maxLength: 4 } : {};
      const o = { keyMask: good, ...own } as never;
      assert.throws(() => chunkedAttend(name, qkv, o), {
        message: new RegExp(`${name}.chunkedAttend: ${refused.source}`),
      });
      assert.throws(() => recurrentAttend(name, qkv, o), {
        message: new RegExp(`${name}.recurrentAttend: ${refused.source}`),
      });
      const state = variants[name].initialState({ batch: 2, heads: 2, dk: 3, dv: 2 }, own as never);
      assert.throws(() => recurrentStep(name, token, { ...(o as object), state } as never), {
        message: new RegExp(`${name}.recurrentStep: ${refused.source}`),
      });
      assert.throws(() => variants[name].initialState({ batch: 2, heads: 2, dk: 3, dv: 2 }, o), refused);
      tf.dispose(Object.values(state));
      // null is no mask.
      const run = chunkedAttend(name, qkv, { keyMask: null, ...own } as never);
      tf.dispose([run.output, ...Object.values(run.state as Record<string, tf.Tensor>)]);
    }
    for (const name of DECODER_VARIANTS) {
      const o = { keyMask: good, ...(name === "cosformer" ? { maxLength: 4 } : {}) } as never;
      assert.throws(() => decoder(name, o), { message: new RegExp(`decoder\\("${name}"\\): ${refused.source}`) });
    }
    tf.dispose([qkv.q, qkv.k, qkv.v, good, token.q, token.k, token.v, ...Object.values(wrong)]);
  });
});

Deno.test("keyMask performer: causal masked calls keep the fused product on blas, rows with no real key included", async () => {
  if (!(await loadableBackends()).includes("blas")) return; // the fused product is the blas backend's
  const previous = await initBackend({ quiet: true });
  await initBackend({ backend: "blas", quiet: true });
  try {
    noLeak("performer fused", () =>
      tf.tidy(() => {
        const n = 40;
        const qkv = seededQKV({ b: 2, h: 2, n, dk: 4, dv: 3, seed: 21, std: 0.7 });
        // Leading pads (queries 0..2 of sequence 0 see none), and a sequence of pads only.
        const mask = tf.tensor2d([Array.from({ length: n }, (_, j) => (j < 3 ? 0 : 1)), new Array(n).fill(0)]);
        const options = { features: 12, seed: 3, chunkSize: 16, causal: true, keyMask: mask };
        const fused = variants.performer.attend(qkv, options);
        assert.equal(lastPerformerPath().attend, "fused");
        assertClose(fused, variants.performer.attend(qkv, { ...options, form: "log" }), "fused vs chunked", TOL);
        assert.equal(lastPerformerPath().attend, "chunked");
      }));
  } finally {
    await initBackend({ backend: previous, quiet: true });
  }
});
