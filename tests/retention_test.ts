/**
 * Retention (RetNet) against closed forms. The registry-driven suites already hold it to every variant's tests (naive
 * ≡ chunked ≡ recurrent on outputs and gradients, the state split, n = 1, 63, 65 with dk ≠ dv, decoding, bad input);
 * these check the numbers themselves: RetNet's default decays, the geometric sums they give, and its own errors.
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  chunkedAttend,
  decoder,
  initialState,
  type QKV,
  recurrentAttend,
  recurrentStep,
  retention,
  variants,
} from "../lib/attention/mod.ts";
import { flopCount } from "../lib/bench/mod.ts";
import { createModel, decodeSession } from "../lib/models/mod.ts";
import { assertClose, seededQKV } from "./helpers.ts";

/** Asserts that f throws exactly `cls` with `text` in its message, and leaks no tensor doing so. */
function throwsExactly(f: () => unknown, cls: typeof Error, text: string): void {
  const before = tf.memory().numTensors;
  let caught: unknown;
  try {
    f();
  } catch (error) {
    caught = error;
  }
  assert(caught instanceof Error, `expected a ${cls.name} with "${text}", but nothing was thrown`);
  assert.equal(caught.constructor, cls, `expected a ${cls.name}, got ${caught.constructor.name}: ${caught.message}`);
  assert(caught.message.includes(text), `expected "${text}" in: ${caught.message}`);
  assert.equal(tf.memory().numTensors, before, `tensors leaked on the failing path of "${text}"`);
}

/** q = k = v = 1 with dk = dv = 1: o_n = Σ_m D_nm, the decay weights alone. */
function ones(heads: number, n: number): QKV {
  const x = tf.ones([1, heads, n, 1]) as tf.Tensor4D;
  return { q: x, k: x, v: x };
}

const GEOMETRIC = (gamma: number, terms: number) => (1 - Math.pow(gamma, terms)) / (1 - gamma);

Deno.test("retention: RetNet's default decay γ_h = 1 − 2^(−5−h) per head, as geometric sums, in every form", () => {
  const heads = 3;
  const n = 70;
  const qkv = ones(heads, n);
  const gammas = [1 - 1 / 32, 1 - 1 / 64, 1 - 1 / 128];
  // Causal: o_n = Σ_{m<=n} γ^(n−m) = (1 − γ^(n+1)) / (1 − γ), with scale 1.
  const causal = tf.tensor4d(
    gammas.flatMap((g) => Array.from({ length: n }, (_, t) => GEOMETRIC(g, t + 1))),
    [1, heads, n, 1],
  );
  // Bidirectional: γ^|n−m| sums the geometric series on both sides, the diagonal once.
  const both = tf.tensor4d(
    gammas.flatMap((g) => Array.from({ length: n }, (_, t) => GEOMETRIC(g, t + 1) + GEOMETRIC(g, n - t) - 1)),
    [1, heads, n, 1],
  );
  const tol = { atol: 1e-5, rtol: 1e-5 };
  const options = { scale: 1, chunkSize: 16 };
  tf.tidy(() => {
    assertClose(retention.attend(qkv, { ...options, causal: true }), causal, "attend, causal", tol);
    assertClose(retention.reference(qkv, { ...options, causal: true }), causal, "reference, causal", tol);
    assertClose(chunkedAttend("retention", qkv, options).output, causal, "chunkedAttend", tol);
    assertClose(recurrentAttend("retention", qkv, { scale: 1 }).output, causal, "recurrentAttend", tol);
    assertClose(retention.attend(qkv, options), both, "attend, bidirectional", tol);
    assertClose(retention.reference(qkv, options), both, "reference, bidirectional", tol);
  });
  // A decoder steps the same recurrence.
  const dec = decoder("retention", { scale: 1 });
  let state = dec.init({ batch: 1, heads, dk: 1, dv: 1 });
  const outs: tf.Tensor4D[] = [];
  const one = tf.ones([1, heads, 1, 1]) as tf.Tensor4D;
  for (let t = 0; t < n; t++) {
    const next = dec.step(state, { q: one, k: one, v: one });
    dec.dispose(state);
    state = next.state;
    outs.push(next.out);
  }
  assertClose(tf.concat(outs, 2), causal, "decoder steps", tol);
  dec.dispose(state);
  tf.dispose([...outs, one, qkv.q, causal, both]);
});

Deno.test("retention: weights() is the decay-masked (Q Kᵀ · scale) ⊙ D, D_nm = γ^(n−m) below the diagonal, 0 above", () => {
  tf.tidy(() => {
    const n = 6;
    const w = retention.weights(ones(2, n), { causal: true, gamma: [0.5, 1], scale: 2 }).arraySync()[0];
    const sym = retention.weights(ones(2, n), { gamma: 0.5, scale: 1 }).arraySync()[0][0];
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        assert.equal(w[0][i][j], j <= i ? 2 * 0.5 ** (i - j) : 0, `head 0 (${i}, ${j})`);
        assert.equal(w[1][i][j], j <= i ? 2 : 0, `head 1, γ = 1 (${i}, ${j})`);
        assert.equal(sym[i][j], 0.5 ** Math.abs(i - j), `bidirectional (${i}, ${j})`);
      }
    }
  });
});

Deno.test("retention: the state decays by γ per token: S_t = γ^t S_0 once the keys are zero", () => {
  tf.tidy(() => {
    const gamma = 0.8;
    const s0 = { s: tf.ones([1, 1, 1, 1]) as tf.Tensor4D };
    const zero = tf.zeros([1, 1, 1]) as tf.Tensor3D;
    const one = tf.ones([1, 1, 1]) as tf.Tensor3D;
    let s = s0;
    for (let t = 1; t <= 5; t++) {
      const step = recurrentStep("retention", { q: one, k: zero, v: zero }, { gamma, scale: 1, state: s });
      s = step.state;
      // o_t = q S_t = γ^t.
      assert.ok(Math.abs(step.output.dataSync()[0] - gamma ** t) < 1e-6, `t=${t}: ${step.output.dataSync()[0]}`);
    }
  });
});

Deno.test("retention with γ = 1 is unnormalised linear attention: NormAttention with the identity map and no norm", () => {
  tf.tidy(() => {
    const qkv = seededQKV({ n: 65, dk: 4, dv: 3, seed: 9, std: 0.7 });
    for (const causal of [true, false]) {
      const plain = variants.norm.attend(qkv, { causal, featureMap: "identity", norm: "none" });
      assertClose(retention.attend(qkv, { causal, gamma: 1, scale: 1 }), plain, `causal=${causal}`);
    }
  });
});

Deno.test("retention: FLOPs are causal kernel attention's over m = dk, twice that bidirectional", () => {
  const dims = { batch: 1, heads: 2, n: 10, dk: 3, dv: 5, options: { chunkSize: 4 } };
  const causal = 2 * 2 * 12 * (4 * (3 + 5) + 2 * 3 * 5);
  assert.deepEqual(flopCount("retention", dims), { fwd: causal, fwdBwd: 3 * causal });
  assert.deepEqual(flopCount("retention", { ...dims, causal: false }), { fwd: 2 * causal, fwdBwd: 6 * causal });
});

Deno.test("retention in a model: a session's token-by-token logits equal the parallel forward, at a fixed state size", () => {
  const model = createModel(
    { attention: ["retention", { variant: "retention", options: { gamma: 0.9 } }], dModel: 16, heads: 2 },
    { log: () => {} },
  );
  const ids = Array.from({ length: 40 }, (_, i) => (i * 31 + 7) % 256);
  const session = decodeSession(model);
  const parts = [session.prefill(ids.slice(0, 9))];
  const sizes = new Set<number>();
  for (const id of ids.slice(9)) {
    parts.push(session.step(id));
    sizes.add(session.stateFloats());
  }
  const actual = tf.concat(parts, 0);
  const expected = tf.tidy(() => tf.reshape(model.logits(tf.tensor2d(ids, [1, 40], "int32")), [40, 256]));
  assertClose(actual, expected, "session vs parallel", { atol: 1e-4, rtol: 1e-4 });
  // 2 layers × 2 heads × S [8, 8].
  assert.deepEqual([...sizes], [2 * 2 * 8 * 8]);
  session.dispose();
  tf.dispose([...parts, actual, expected]);
  model.dispose();
});

Deno.test("retention: bad options and states get errors that name them", () => {
  const qkv = seededQKV({ n: 5, dk: 4, dv: 3, seed: 1 });
  throwsExactly(
    () => retention.attend(qkv, { gamma: [0.5, 0.6, 0.7] }),
    RangeError,
    "retention: option gamma has 3 values but the input has 2 heads; give one per head or a single number",
  );
  throwsExactly(
    () => retention.attend(qkv, { gamma: 0 }),
    RangeError,
    "retention.attend: option gamma must be > 0, got 0",
  );
  throwsExactly(() => retention.attend(qkv, { gamma: 1.5 }), RangeError, "option gamma must be <= 1, got 1.5");
  throwsExactly(() => retention.attend(qkv, { gamma: [0.5, 2] }), RangeError, "option gamma[1] must be <= 1, got 2");
  throwsExactly(() => retention.attend(qkv, { gamma: [] }), RangeError, "option gamma must be a number or a non-empty");
  throwsExactly(
    () => retention.attend(qkv, { gamma: "0.5" as unknown as number }),
    TypeError,
    "option gamma must be a finite number or an array of them",
  );
  throwsExactly(() => retention.attend(qkv, { chunkSize: 0 }), RangeError, "option chunkSize must be >= 1");
  throwsExactly(
    () => chunkedAttend("retention", qkv, { causal: false as true }),
    RangeError,
    "retention.chunkedAttend: option causal must be true or omitted: the recurrent forms are causal",
  );
  throwsExactly(
    () => chunkedAttend("retention", qkv, { position: -1 }),
    RangeError,
    "retention.chunkedAttend: option position must be a non-negative integer, got -1",
  );
  // A state of another variant (linear's { s, z }) or of other sizes is refused before any work.
  const kernel = initialState({ batch: 2, heads: 2, dk: 4, dv: 3 });
  throwsExactly(
    () => recurrentAttend("retention", qkv, { state: kernel as never }),
    Error,
    "retention.recurrentAttend: option state must be { s: [2, 2, 4, 3] } (batch, heads, dk, dv of the input)",
  );
  const small = retention.initialState({ batch: 2, heads: 2, dk: 4, dv: 2 });
  throwsExactly(
    () => chunkedAttend("retention", qkv, { state: small }),
    Error,
    "option state must be { s: [2, 2, 4, 3] }",
  );
  tf.dispose([kernel.s, kernel.z, small.s]);
  throwsExactly(() => chunkedAttend("retention", qkv, { state: small }), Error, "option state was disposed");
  throwsExactly(
    () => decoder("retention", { causal: false } as never),
    RangeError,
    'decoder("retention"): option causal must be true or omitted',
  );
  tf.dispose([qkv.q, qkv.k, qkv.v]);
});
