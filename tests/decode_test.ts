import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  type Decoder,
  decoder,
  DECODER_VARIANTS,
  type DecoderVariant,
  type DecodeState,
  orthogonalRandomFeatures,
  type QKV,
  RECURRENT_VARIANTS,
  recurrentAttend,
  type StateTensors,
  variants,
} from "../lib/attention/mod.ts";
import { assertClose, seededQKV } from "./helpers.ts";

// deno-lint-ignore no-explicit-any
type AnyOptions = Record<string, any>;

/** Option sets per variant: defaults plus the branches and boundaries that matter for decoding. */
const OPTION_SETS: Record<DecoderVariant, AnyOptions[]> = {
  softmax: [{}, { scale: 0.5 }, { cache: false }, { cache: false, queryBlockSize: 16 }],
  linear: [{}, { featureMap: "relu", chunkSize: 16 }],
  performer: [{ features: 12, seed: 3, chunkSize: 16 }, {}],
  cosformer: [{}, { chunkSize: 7 }],
  norm: [{}, { norm: "layer", normScope: "head", chunkSize: 16 }, { featureMap: "elu+1", norm: "rms" }],
  diag: [{}, { inner: "relu", blockSize: 16 }, { blockSize: 7 }, { blockSize: 1 }],
  local: [{}, { window: 5 }, { window: 0 }],
  retention: [{}, { gamma: [0.5, 1], scale: 0.3, chunkSize: 16 }],
};

const LENGTHS = [1, 63, 65];

/** The decoder options for a sequence of n tokens, as a decode session sets them (cosFormer needs the length). */
function decoderOptions(name: DecoderVariant, options: AnyOptions, n: number): AnyOptions {
  return variants[name].sessionOptions(options, { length: n, rerun: false });
}

/** The variant's options for attend()/reference() of decoder `name`: the decoder-only keys removed, causal set. */
function variantOptions(name: DecoderVariant, options: AnyOptions): AnyOptions {
  const own = Object.keys(variants[name].decoding?.extraDefaults ?? {});
  return { ...Object.fromEntries(Object.entries(options).filter(([key]) => !own.includes(key))), causal: true };
}

/** Tokens [from, from + size) of q, k and v. */
function tokens(qkv: QKV, range: { from: number; size: number }): QKV {
  const { from, size } = range;
  const part = (x: tf.Tensor4D) => tf.slice(x, [0, 0, from, 0], [-1, -1, size, -1]) as tf.Tensor4D;
  return { q: part(qkv.q), k: part(qkv.k), v: part(qkv.v) };
}

function dimsOf(qkv: QKV) {
  const [batch, heads, , dk] = qkv.q.shape;
  return { batch, heads, dk, dv: qkv.v.shape[3] };
}

/**
 * Runs a decoder over qkv: prefill of the first `prefill` tokens (none by default), then one step per token.
 * Returns the outputs [b, h, n, dv], the state size after each token, and the final state (caller disposes).
 */
function decodeSequence(
  dec: Decoder,
  qkv: QKV,
  options: { prefill?: number; start?: DecodeState } = {},
): { out: tf.Tensor4D; sizes: number[]; state: DecodeState } {
  const n = qkv.q.shape[2];
  const { prefill = 0 } = options;
  let state = options.start ?? dec.init(dimsOf(qkv));
  const outs: tf.Tensor4D[] = [];
  const sizes: number[] = [];
  const advance = (method: "prefill" | "step", range: { from: number; size: number }) => {
    const part = tokens(qkv, range);
    const next = dec[method](state, part);
    tf.dispose([part.q, part.k, part.v]);
    if (state !== options.start) dec.dispose(state);
    state = next.state;
    outs.push(next.out);
    sizes.push(dec.stateSize(state));
  };
  if (prefill > 0) advance("prefill", { from: 0, size: prefill });
  for (let t = prefill; t < n; t++) advance("step", { from: t, size: 1 });
  const out = tf.concat(outs, 2) as tf.Tensor4D; // [b, h, n, dv]
  tf.dispose(outs);
  return { out, sizes, state };
}

const TOL = { atol: 1e-5, rtol: 2e-4 };

for (const name of DECODER_VARIANTS) {
  Deno.test(`decode ${name}: token-by-token outputs equal the causal reference and attend()`, async (t) => {
    for (const base of OPTION_SETS[name]) {
      for (const n of LENGTHS) {
        await t.step(`${JSON.stringify(base)} n=${n}`, () => {
          const qkv = seededQKV({ n, dk: 5, dv: 3, seed: 7 * n + 1, std: 0.7 });
          const dec = decoder(name, decoderOptions(name, base, n));
          const run = decodeSequence(dec, qkv);
          const reference = variants[name].reference(qkv, variantOptions(name, base));
          const attend = variants[name].attend(qkv, variantOptions(name, base));
          assertClose(run.out, reference, `${name} ${JSON.stringify(base)} n=${n}: steps vs reference`, TOL);
          assertClose(run.out, attend, `${name} ${JSON.stringify(base)} n=${n}: steps vs attend`, TOL);
          assert.equal(run.state.position, n);
          dec.dispose(run.state);
          tf.dispose([qkv.q, qkv.k, qkv.v, run.out, reference, attend]);
        });
      }
    }
  });

  Deno.test(`decode ${name}: prefill of a prompt, then steps, equals one causal run`, async (t) => {
    const n = 40;
    for (const base of OPTION_SETS[name]) {
      for (const s of [1, 17, 33, 40]) {
        await t.step(`${JSON.stringify(base)} prompt=${s}`, () => {
          const qkv = seededQKV({ n, dk: 4, dv: 6, seed: s, std: 0.7 });
          const dec = decoder(name, decoderOptions(name, base, n));
          const run = decodeSequence(dec, qkv, { prefill: s });
          const attend = variants[name].attend(qkv, variantOptions(name, base));
          assertClose(run.out, attend, `${name} ${JSON.stringify(base)} prompt=${s}`, TOL);
          // A second prefill from the carried state: [0, s) then [s, n) in two calls.
          if (s < n) {
            const head = tokens(qkv, { from: 0, size: s });
            const tail = tokens(qkv, { from: s, size: n - s });
            const first = dec.prefill(dec.init(dimsOf(qkv)), head);
            const second = dec.prefill(first.state, tail);
            assertClose(tf.concat([first.out, second.out], 2), attend, `${name} two prefills s=${s}`, TOL);
            for (const state of [first.state, second.state]) dec.dispose(state);
            tf.dispose([head, tail, first.out, second.out].flatMap((x) => "q" in x ? [x.q, x.k, x.v] : [x]));
          }
          dec.dispose(run.state);
          tf.dispose([qkv.q, qkv.k, qkv.v, run.out, attend]);
        });
      }
    }
  });
}

Deno.test("decode: state size per position: constant for the recurrent variants, bounded or growing for the others", () => {
  const [b, h, dk, dv, n] = [2, 3, 4, 5, 40];
  const qkv = seededQKV({ b, h, n, dk, dv, seed: 5 });
  const features = 7;
  // Closed forms of the floats held after t + 1 tokens.
  const expected: Record<string, (t: number) => number> = {
    linear: () => b * h * (dk * dv + dk),
    norm: () => b * h * (dk * dv + dk),
    performer: () => b * h * (features * dv + features) + features * dk,
    cosformer: () => b * h * (2 * dk * dv + 2 * dk),
    softmax: (t) => b * h * (t + 1) * (dk + dv),
    "softmax no cache": (t) => b * h * (t + 1) * (2 * dk + dv),
    diag: (t) => b * h * ((t + 1) % 16) * (dk + dv),
    local: (t) => b * h * Math.min(t + 1, 5) * (dk + dv),
    retention: () => b * h * dk * dv,
  };
  const decoders: Record<string, Decoder> = {
    linear: decoder("linear"),
    norm: decoder("norm"),
    performer: decoder("performer", { features }),
    cosformer: decoder("cosformer", { maxLength: n }),
    softmax: decoder("softmax"),
    "softmax no cache": decoder("softmax", { cache: false }),
    diag: decoder("diag", { blockSize: 16 }),
    local: decoder("local", { window: 5 }),
    retention: decoder("retention"),
  };
  for (const [label, dec] of Object.entries(decoders)) {
    const run = decodeSequence(dec, qkv);
    assert.deepEqual(run.sizes, run.sizes.map((_, t) => expected[label](t)), label);
    dec.dispose(run.state);
    run.out.dispose();
  }
  tf.dispose([qkv.q, qkv.k, qkv.v]);
});

Deno.test("decode softmax: the KV-cached decoder equals the uncached one, with and without a scale", () => {
  for (const scale of [null, 0.3]) {
    const qkv = seededQKV({ n: 50, dk: 6, dv: 2, seed: 12 });
    const cached = decodeSequence(decoder("softmax", { scale }), qkv);
    const uncached = decodeSequence(decoder("softmax", { scale, cache: false }), qkv);
    assertClose(cached.out, uncached.out, `scale ${scale}: cached vs uncached`, { atol: 1e-6, rtol: 1e-5 });
    tf.dispose([qkv.q, qkv.k, qkv.v, cached.out, uncached.out, ...Object.values(cached.state.tensors)]);
    tf.dispose(Object.values(uncached.state.tensors));
  }
});

Deno.test("decode: no tensors leak over 2000 steps, and the count of held tensors stays constant", async (t) => {
  const steps = 2000;
  const x = seededQKV({ b: 1, h: 1, n: 1, dk: 2, dv: 2, seed: 3 });
  const cases: [string, Decoder, number][] = [
    ["linear", decoder("linear"), steps],
    ["norm", decoder("norm"), steps],
    ["performer", decoder("performer"), steps],
    ["cosformer", decoder("cosformer", { maxLength: steps }), steps],
    ["softmax", decoder("softmax"), steps],
    ["softmax no cache", decoder("softmax", { cache: false }), 300],
    ["diag", decoder("diag", { blockSize: 8 }), steps],
    ["local", decoder("local", { window: 3 }), steps],
    ["retention", decoder("retention"), steps],
  ];
  for (const [label, dec, count] of cases) {
    await t.step(label, () => {
      const start = tf.memory().numTensors;
      let state = dec.init({ batch: 1, heads: 1, dk: 2, dv: 2 });
      // Between steps, the only tensors alive beyond the start are the current state's own.
      const extra: number[] = [];
      for (let i = 0; i < count; i++) {
        const { out, state: next } = dec.step(state, x);
        dec.dispose(state);
        out.dispose();
        state = next;
        extra.push(tf.memory().numTensors - start - Object.keys(state.tensors).length);
      }
      assert.equal(state.position, count);
      assert.deepEqual(new Set(extra), new Set([0]), `${label}: tensors held beyond the state`);
      dec.dispose(state);
      assert.equal(tf.memory().numTensors, start, `${label}: tensors leaked`);
    });
  }
  tf.dispose([x.q, x.k, x.v]);
});

Deno.test("decode: prefill and init leak nothing, and a state survives the caller's tf.tidy", () => {
  const qkv = seededQKV({ n: 20, dk: 3, dv: 2, seed: 8 });
  for (const name of DECODER_VARIANTS) {
    const dec = decoder(name, decoderOptions(name, {}, 20));
    const start = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      // Built inside a tidy that returns nothing: only tf.keep saves the states' tensors.
      let state: DecodeState | undefined;
      let run: DecodeState | undefined;
      tf.tidy(() => {
        state = dec.init(dimsOf(qkv));
        run = dec.prefill(state, qkv).state;
      });
      if (!state || !run) throw new Error(`${name}: no state`);
      assert.ok(Object.values(run.tensors).every((x) => !x.isDisposed), `${name}: state disposed by tidy`);
      dec.dispose(state);
      dec.dispose(run);
    }
    assert.equal(tf.memory().numTensors, start, `${name}: tensors leaked`);
  }
  tf.dispose([qkv.q, qkv.k, qkv.v]);
});

for (const name of RECURRENT_VARIANTS) {
  Deno.test(`decode ${name}: state split: recurrentAttend on [0, s), then steps from the carried state, equals one run`, () => {
    const n = 50;
    const options = decoderOptions(name, {}, n);
    for (const s of [1, 20, 49]) {
      const qkv = seededQKV({ n, dk: 4, dv: 3, seed: 30 + s, std: 0.7 });
      const head = tokens(qkv, { from: 0, size: s });
      const tail = tokens(qkv, { from: s, size: n - s });
      const first = recurrentAttend(name, head, options as never);
      const dec = decoder(name, options as never);
      const start = dec.init(dimsOf(qkv), { from: first.state, position: s });
      const rest = decodeSequence(dec, tail, { start });
      const whole = variants[name].attend(qkv, { ...variantOptions(name, options), causal: true } as never);
      assertClose(tf.concat([first.output, rest.out], 2), whole, `${name} s=${s}`, TOL);
      assert.equal(rest.state.position, n);
      const check = recurrentAttend(name, qkv, options as never);
      for (const [key, x] of Object.entries(check.state as StateTensors)) {
        assertClose(rest.state.tensors[key], x, `${name} s=${s}: final ${key}`, TOL);
      }
      [start, rest.state].forEach((x) => dec.dispose(x));
      tf.dispose([qkv, head, tail].flatMap((x) => [x.q, x.k, x.v]));
      tf.dispose([first.output, rest.out, whole, check.output]);
      tf.dispose([...Object.values(first.state as StateTensors), ...Object.values(check.state as StateTensors)]);
    }
  });
}

Deno.test("decode performer: the projection is attend()'s, given or seeded, and stays fixed across steps", () => {
  const n = 30;
  const qkv = seededQKV({ n, dk: 4, dv: 3, seed: 21, std: 0.7 });
  const projection = orthogonalRandomFeatures({ features: 9, dk: 4, seed: 77 });
  for (const options of [{ projection }, { features: 9, seed: 77 }, { seed: 5 }]) {
    const dec = decoder("performer", options);
    const run = decodeSequence(dec, qkv);
    const attend = variants.performer.attend(qkv, { ...options, causal: true });
    assertClose(run.out, attend, `performer ${Object.keys(options)}`, TOL);
    if (!("seed" in options && options.seed === 5)) {
      assertClose(run.state.tensors.projection, projection, "the projection held is the one given or seeded", {
        atol: 0,
        rtol: 0,
      });
    }
    dec.dispose(run.state);
    tf.dispose([run.out, attend]);
  }
  tf.dispose([qkv.q, qkv.k, qkv.v, projection]);
});

Deno.test("decode performer: step t equals attend() on the prefix [0, t] and the whole-sequence causal attend(), for eps = 1e-9 and 0", () => {
  const n = 40;
  // Large keys make the key maximum grow along the sequence, so the stabilisers differ.
  const qkv = seededQKV({ b: 1, h: 2, n, dk: 4, dv: 3, seed: 4, std: 1.5 });
  const options = { features: 8, seed: 1 };
  const run = decodeSequence(decoder("performer", options), qkv);
  for (const t of [0, 9, 25, 39]) {
    const prefix = tokens(qkv, { from: 0, size: t + 1 });
    const last = tf.tidy(() => {
      const out = variants.performer.attend(prefix, { ...options, causal: true });
      return tf.slice(out, [0, 0, t, 0], [-1, -1, 1, -1]);
    });
    const row = tf.slice(run.out, [0, 0, t, 0], [-1, -1, 1, -1]);
    assertClose(row, last, `t=${t}: step vs attend on the prefix`, { atol: 1e-6, rtol: 1e-5 });
    tf.dispose([prefix.q, prefix.k, prefix.v, last, row]);
  }
  // eps acts at the unstabilised scale, so the stabilisers cancel and the decoder equals the whole-sequence causal attend().
  const wholeDefault = variants.performer.attend(qkv, { ...options, causal: true });
  assertClose(run.out, wholeDefault, "eps = 1e-9: steps vs attend", { atol: 1e-6, rtol: 1e-5 });
  wholeDefault.dispose();
  const exact = decodeSequence(decoder("performer", { ...options, eps: 0 }), qkv);
  const whole = variants.performer.attend(qkv, { ...options, eps: 0, causal: true });
  assertClose(exact.out, whole, "eps = 0: steps vs attend", { atol: 1e-6, rtol: 1e-5 });
  for (const r of [run, exact]) tf.dispose([r.out, ...Object.values(r.state.tensors)]);
  tf.dispose([qkv.q, qkv.k, qkv.v, whole]);
});

/**
 * Causal FAVOR+ attention in float64 from the float32 inputs and projection, without any stabiliser:
 * out_i = Σ_{j<=i} (φ̂(q_i)·φ̂(k_j)) v_j / (Σ_{j<=i} φ̂(q_i)·φ̂(k_j) + eps).
 */
function performerFloat64(qkv: QKV, options: { projection: tf.Tensor2D; eps: number }): tf.Tensor4D {
  const [b, h, n, dk] = qkv.q.shape;
  const dv = qkv.v.shape[3];
  const [m] = options.projection.shape;
  const w = options.projection.dataSync();
  const [q, k, v] = [qkv.q.dataSync(), qkv.k.dataSync(), qkv.v.dataSync()];
  const scale = Math.pow(dk, -0.25);
  const phi = (x: Float32Array | Int32Array | Uint8Array, at: number) => {
    let half = 0;
    for (let i = 0; i < dk; i++) half += (x[at + i] * scale) ** 2 / 2;
    return Float64Array.from({ length: m }, (_, r) => {
      let dot = 0;
      for (let i = 0; i < dk; i++) dot += w[r * dk + i] * x[at + i] * scale;
      return Math.exp(dot - half) / Math.sqrt(m);
    });
  };
  const out = new Float32Array(b * h * n * dv);
  for (let bh = 0; bh < b * h; bh++) {
    const fk = Array.from({ length: n }, (_, j) => phi(k, (bh * n + j) * dk));
    for (let i = 0; i < n; i++) {
      const fq = phi(q, (bh * n + i) * dk);
      const num = new Float64Array(dv);
      let den = options.eps;
      for (let j = 0; j <= i; j++) {
        let a = 0;
        for (let r = 0; r < m; r++) a += fq[r] * fk[j][r];
        den += a;
        for (let c = 0; c < dv; c++) num[c] += a * v[(bh * n + j) * dv + c];
      }
      for (let c = 0; c < dv; c++) out[(bh * n + i) * dv + c] = num[c] / den;
    }
  }
  return tf.tensor4d(out, [b, h, n, dv]);
}

Deno.test("performer regression: eps acts at the unstabilised scale, so large inputs (std 1.5, dk 16) match float64", () => {
  // With an absolute eps of 1e-9 this case measured errors of 2.7 (causal attend) and 0.34 (decoder):
  // the stabilised denominators of early rows were far below eps.
  const n = 200;
  const dk = 16;
  const qkv = seededQKV({ b: 1, h: 2, n, dk, dv: 8, seed: 21, std: 1.5 });
  const projection = orthogonalRandomFeatures({ features: Math.ceil(dk * Math.log(dk)), dk, seed: 0 });
  const exact = performerFloat64(qkv, { projection, eps: 1e-9 });
  const attend = variants.performer.attend(qkv, { causal: true });
  const reference = variants.performer.reference(qkv, { causal: true });
  const run = decodeSequence(decoder("performer"), qkv);
  const tol = { atol: 1e-4, rtol: 1e-4 };
  assertClose(attend, exact, "causal attend vs float64", tol);
  assertClose(reference, exact, "causal reference vs float64", tol);
  assertClose(run.out, exact, "decoder steps vs float64", tol);
  // A large eps really regularises: the same eps in float64 and float32 shifts all three alike.
  const big = performerFloat64(qkv, { projection, eps: 10 });
  const bigAttend = variants.performer.attend(qkv, { causal: true, eps: 10 });
  assertClose(bigAttend, big, "eps = 10: causal attend vs float64", tol);
  tf.dispose([qkv.q, qkv.k, qkv.v, projection, exact, attend, reference, run.out, big, bigAttend]);
  tf.dispose(Object.values(run.state.tensors));
});

Deno.test("decode cosformer: fewer steps than maxLength give the first rows of attend() at length maxLength", () => {
  const maxLength = 33;
  const qkv = seededQKV({ n: maxLength, dk: 4, dv: 3, seed: 6 });
  const prefix = tokens(qkv, { from: 0, size: 10 });
  const run = decodeSequence(decoder("cosformer", { maxLength }), prefix);
  const whole = tf.tidy(() =>
    tf.slice(variants.cosformer.attend(qkv, { causal: true }), [0, 0, 0, 0], [-1, -1, 10, -1])
  );
  assertClose(run.out, whole, "10 of 33 steps", TOL);
  // attend() over the 10-token prefix with M = 33 gives the same rows; the reference builds the matrix with M = 33.
  const early = tf.tidy(() => variants.cosformer.attend(prefix, { causal: true, maxLength }));
  const earlyReference = tf.tidy(() => variants.cosformer.reference(prefix, { causal: true, maxLength }));
  assertClose(early, whole, "attend of the prefix with maxLength 33", TOL);
  assertClose(earlyReference, whole, "reference of the prefix with maxLength 33", TOL);
  tf.dispose([early, earlyReference]);
  tf.dispose([qkv.q, qkv.k, qkv.v, prefix.q, prefix.k, prefix.v, run.out, whole, ...Object.values(run.state.tensors)]);
});

Deno.test("decode: accepts every option of the variant it wraps, and only those plus its own", () => {
  for (const name of DECODER_VARIANTS) {
    const own = name === "softmax" ? ["cache"] : [];
    const keys = Object.keys(decoder(name, decoderOptions(name, {}, 4)).options).sort();
    assert.deepEqual(keys, [...Object.keys(variants[name].defaults), ...own].sort(), name);
  }
});

Deno.test("decode: bad input gets an error that names the argument and the fix", () => {
  const dims = { batch: 2, heads: 2, dk: 4, dv: 3 };
  const token = seededQKV({ n: 1, dk: 4, dv: 3, seed: 1 });
  const two = seededQKV({ n: 2, dk: 4, dv: 3, seed: 1 });
  const otherHeads = seededQKV({ h: 3, n: 1, dk: 4, dv: 3, seed: 1 });
  const otherBatch = seededQKV({ b: 1, n: 1, dk: 4, dv: 3, seed: 1 });
  const otherDk = seededQKV({ n: 1, dk: 5, dv: 3, seed: 1 });
  const otherDv = seededQKV({ n: 1, dk: 4, dv: 2, seed: 1 });
  const dec = decoder("linear");
  const state = dec.init(dims);

  assert.throws(() => decoder("flash" as DecoderVariant), /variant must be one of softmax, linear, performer/);
  assert.throws(() => decoder("linear", { chunk: 4 } as AnyOptions), /unknown option "chunk"; valid options are/);
  assert.throws(() => decoder("diag", { blockSize: 0 }), /option blockSize must be >= 1/);
  assert.throws(() => decoder("softmax", { cache: "yes" } as AnyOptions), /option cache must be true or false/);
  assert.throws(() => decoder("local", { causal: false } as AnyOptions), /causal must be true or omitted/);
  assert.throws(() => decoder("cosformer"), /option maxLength is required/);
  assert.throws(() => dec.init({ ...dims, dk: 0 }), /dims.dk must be a positive integer/);
  assert.throws(() => dec.init({ ...dims, d: 1 } as AnyOptions as typeof dims), /unknown dims key "d"/);
  assert.throws(() => dec.init(dims, { position: 3 }), /option position needs a carried state/);
  assert.throws(
    () => decoder("diag").init(dims, { from: state.tensors as AnyOptions, position: 0 } as AnyOptions),
    /option from is only for the variants with recurrent forms \(linear, performer, cosformer, norm, retention\)/,
  );
  assert.throws(
    () => decoder("retention").init(dims, { from: state.tensors, position: 3 }),
    /option from must be \{ s: \[2, 2, 4, 3\] \} \(the dims given\)/,
  );
  assert.throws(() => decoder("retention", { gamma: 2 }), /decoder\("retention"\): option gamma must be <= 1, got 2/);

  const rank3 = tf.zeros([2, 2, 4]);
  assert.throws(
    () => dec.step(state, { ...token, q: rank3 as tf.Tensor4D }),
    /q must have rank 4 \[batch, heads, n, dk\]/,
  );
  assert.throws(() => dec.step(state, two), /must hold one token .*got n = 2; use prefill\(\)/);
  assert.throws(() => dec.step(state, otherHeads), /input's heads is 3 but the state was built for heads = 2/);
  assert.throws(() => dec.step(state, otherBatch), /input's batch is 1 but the state was built for batch = 2/);
  assert.throws(() => dec.step(state, otherDk), /input's dk is 5 but the state was built for dk = 4/);
  assert.throws(() => dec.step(state, otherDv), /input's dv is 2 but the state was built for dv = 3/);
  assert.throws(() => decoder("norm").step(state, token), /state belongs to variant "linear"/);

  const cos = decoder("cosformer", { maxLength: 2 });
  const cosState = cos.init(dims);
  const after = cos.prefill(cosState, two);
  assert.throws(() => cos.step(after.state, token), /position 3 is beyond maxLength 2/);
  assert.throws(
    () => cos.prefill(cosState, seededQKV({ n: 3, dk: 4, dv: 3, seed: 1 })),
    /position 3 is beyond maxLength 2/,
  );

  const performerDec = decoder("performer", { projection: orthogonalRandomFeatures({ features: 6, dk: 5, seed: 0 }) });
  assert.throws(() => performerDec.init(dims), /projection must be \[features, dk\] with dk = 4, got \[6, 5\]/);

  dec.dispose(state);
  assert.throws(() => dec.step(state, token), /state has been disposed/);
  cos.dispose(cosState);
  cos.dispose(after.state);
  after.out.dispose();
  rank3.dispose();
});
