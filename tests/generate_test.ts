import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  createModel,
  decodeSession,
  generate,
  type PresetName,
  PRESETS,
  sampleToken,
  type TransformerModel,
} from "../lib/models/mod.ts";
import { type VariantName, variants } from "../lib/attention/mod.ts";
import { seededUniform } from "../lib/random.ts";
import { assertClose } from "./helpers.ts";

const quiet = { log: () => {} };
const SMALL = { layers: 2, dModel: 16, heads: 2, maxLength: 256 };
const TOL = { atol: 1e-4, rtol: 1e-4 };

function smallModel(attention: PresetName): TransformerModel {
  return createModel({ attention, ...SMALL }, quiet);
}

/** Seeded byte ids. */
function seededIds(n: number, seed: number): number[] {
  const u = seededUniform(seed);
  return Array.from({ length: n }, () => Math.floor(u() * 256));
}

/** The model's parallel causal logits for one sequence, [n, vocab]. */
function parallelLogits(model: TransformerModel, ids: number[]): tf.Tensor2D {
  return tf.tidy(() => {
    const logits = model.logits(tf.tensor2d(ids, [1, ids.length], "int32")); // [1, n, V]
    return tf.reshape(logits, [ids.length, model.config.vocabSize]) as tf.Tensor2D;
  });
}

/** Logits [n, vocab] from a session: prefill of the first `prompt` tokens (if any), then one step per token. */
function sessionLogits(
  model: TransformerModel,
  ids: number[],
  options: { prompt?: number; cache?: "kv" | "none"; length?: number },
): tf.Tensor2D {
  const { prompt = 0, cache = "kv", length = ids.length } = options;
  const session = decodeSession(model, { cache, length });
  const parts: tf.Tensor2D[] = [];
  if (prompt > 0) parts.push(session.prefill(ids.slice(0, prompt)));
  for (const id of ids.slice(prompt)) parts.push(session.step(id));
  session.dispose();
  const out = tf.concat(parts, 0) as tf.Tensor2D; // [n, V]
  tf.dispose(parts);
  return out;
}

for (const preset of PRESETS) {
  Deno.test(`generate ${preset}: token-by-token logits equal the model's parallel causal logits`, async (t) => {
    const model = smallModel(preset);
    for (const n of [1, 63, 65]) {
      await t.step(`n=${n}, steps only`, () => {
        const ids = seededIds(n, n);
        const expected = parallelLogits(model, ids);
        const actual = sessionLogits(model, ids, {});
        assertClose(actual, expected, `${preset} n=${n}`, TOL);
        tf.dispose([expected, actual]);
      });
    }
    for (const prompt of [1, 17, 64, 70]) {
      await t.step(`prompt ${prompt} prefilled, then steps to 80`, () => {
        const ids = seededIds(80, 100 + prompt);
        const expected = parallelLogits(model, ids);
        const actual = sessionLogits(model, ids, { prompt });
        assertClose(actual, expected, `${preset} prompt=${prompt}`, TOL);
        tf.dispose([expected, actual]);
      });
    }
    model.dispose();
  });
}

Deno.test("generate: every registered variant decodes: session logits, kv and none, equal the parallel forward", async (t) => {
  for (const variant of Object.keys(variants) as VariantName[]) {
    await t.step(variant, () => {
      const model = createModel({ attention: [variant, variant], ...SMALL }, quiet);
      const ids = seededIds(70, 21);
      const expected = parallelLogits(model, ids);
      const kv = sessionLogits(model, ids, { prompt: 5 });
      const none = sessionLogits(model, ids, { prompt: 5, cache: "none" });
      assertClose(kv, expected, `${variant}: kv vs parallel`, TOL);
      assertClose(none, expected, `${variant}: none vs parallel`, TOL);
      tf.dispose([expected, kv, none]);
      model.dispose();
    });
  }
});

Deno.test("generate: a KV-cached softmax model equals one re-run over the whole prefix per token", () => {
  const model = smallModel("vanilla");
  const ids = seededIds(70, 3);
  const cached = sessionLogits(model, ids, { prompt: 5 });
  const uncached = sessionLogits(model, ids, { prompt: 5, cache: "none" });
  const parallel = parallelLogits(model, ids);
  assertClose(cached, uncached, "kv vs none", TOL);
  assertClose(uncached, parallel, "none vs parallel", TOL);
  tf.dispose([cached, uncached, parallel]);
  model.dispose();
});

Deno.test('generate: cache "none" equals "kv" for every preset, also in a session longer than its tokens', () => {
  for (const preset of PRESETS) {
    const model = smallModel(preset);
    const ids = seededIds(40, 11);
    // cosFormer's M is the session's length (90), not the 40 tokens seen, on both paths.
    const kv = sessionLogits(model, ids, { prompt: 3, length: 90 });
    const none = sessionLogits(model, ids, { prompt: 3, cache: "none", length: 90 });
    assertClose(none, kv, `${preset}: none vs kv`, TOL);
    tf.dispose([kv, none]);
    model.dispose();
  }
});

Deno.test("generate: the same seed gives the same tokens, other seeds other tokens", async () => {
  const model = smallModel("transnormer-t2");
  const run = (seed: number) => generate(model, { prompt: "The Congress", maxNewTokens: 24, seed });
  const [a, b, c, d] = [await run(7), await run(7), await run(8), await run(9)];
  assert.deepEqual(a.tokens, b.tokens);
  assert.equal(a.text, b.text);
  assert.notDeepEqual(a.tokens, c.tokens);
  assert.notDeepEqual(c.tokens, d.tokens);
  assert.equal(a.tokens.length, 24);
  assert.deepEqual(a.prompt, Array.from(new TextEncoder().encode("The Congress")));
  // cache "none" samples from the same logits (up to float rounding), so greedy decoding agrees.
  const greedy = await generate(model, { prompt: "The Congress", maxNewTokens: 12, greedy: true });
  const greedyNone = await generate(model, { prompt: "The Congress", maxNewTokens: 12, greedy: true, cache: "none" });
  assert.deepEqual(greedy.tokens, greedyNone.tokens);
  model.dispose();
});

Deno.test("generate: the tokens drawn are sampleToken of the parallel logits with the seeded uniform stream", async () => {
  const model = smallModel("linear");
  const options = { temperature: 0.7, topK: 10, seed: 4 };
  const out = await generate(model, { prompt: [10, 20, 30], maxNewTokens: 8, ...options });
  const uniform = seededUniform(options.seed);
  const ids = [...out.prompt, ...out.tokens];
  const logits = parallelLogits(model, ids).arraySync();
  out.tokens.forEach((token, i) => {
    const row = logits[out.prompt.length - 1 + i];
    assert.equal(token, sampleToken(row, { temperature: 0.7, topK: 10, uniform: uniform() }), `token ${i}`);
  });
  model.dispose();
});

Deno.test("sampleToken: greedy is the argmax, top-k keeps k tokens, frequencies follow softmax(logits / T)", () => {
  const logits = [1, 3, 0.5, 2.5, -1];
  assert.equal(sampleToken(logits, { greedy: true }), 1);
  const u = seededUniform(11);
  const draws = 20000;
  for (const [temperature, topK] of [[1, null], [0.5, null], [2, 3]] as const) {
    const counts = new Array(logits.length).fill(0);
    for (let i = 0; i < draws; i++) counts[sampleToken(logits, { temperature, topK, uniform: u() })]++;
    const kept = logits.map((x) => topK === null || x >= [...logits].sort((a, b) => b - a)[topK - 1]);
    const w = logits.map((x, i) => (kept[i] ? Math.exp(x / temperature) : 0));
    const total = w.reduce((a, b) => a + b, 0);
    w.forEach((wi, i) => {
      const p = wi / total;
      // Within 5 binomial standard deviations; tokens outside the top k are never drawn.
      const sd = Math.sqrt(draws * p * (1 - p));
      assert.ok(Math.abs(counts[i] - draws * p) <= 5 * sd + 1e-9, `T=${temperature} k=${topK} token ${i}`);
    });
  }
  assert.equal(sampleToken(logits, { topK: 1, uniform: 0.99 }), 1);
});

Deno.test("generate: state size is constant for the recurrent presets, grows with t for softmax, bounded for diag", () => {
  const dh = SMALL.dModel / SMALL.heads;
  const h = SMALL.heads;
  const m = Math.ceil(dh * Math.log(dh));
  const perLayer: Record<string, (t: number) => number> = {
    linear: () => h * (dh * dh + dh),
    norm: () => h * (dh * dh + dh),
    cosformer: () => h * (2 * dh * dh + 2 * dh),
    performer: () => h * (m * dh + m) + m * dh,
    softmax: (t) => t * h * 2 * dh,
    diag: (t) => (t % 64) * h * 2 * dh,
  };
  for (const preset of PRESETS) {
    const model = smallModel(preset);
    const session = decodeSession(model, { length: 150 });
    const ids = seededIds(150, 5);
    tf.dispose(session.prefill(ids.slice(0, 3)));
    for (let t = 3; t < 150; t++) {
      const expected = model.config.attention.map((layer) => perLayer[layer.variant](t));
      assert.deepEqual(session.layerStateFloats(), expected, `${preset} after ${t} tokens`);
      tf.dispose(session.step(ids[t]));
    }
    session.dispose();
    model.dispose();
  }
});

Deno.test("generate: no tensors leak over 2000 generated tokens, with every kind of decoding state", async () => {
  const model = createModel({
    attention: [
      "softmax",
      "linear",
      "performer",
      "cosformer",
      "norm",
      { variant: "diag", options: { blockSize: 16 } },
      "retention",
    ],
    dModel: 8,
    heads: 1,
    maxLength: 2100,
  }, quiet);
  const start = tf.memory().numTensors;
  let duringMax = 0;
  const out = await generate(model, {
    prompt: [0],
    maxNewTokens: 2000,
    seed: 1,
    onToken: () => (duringMax = Math.max(duringMax, tf.memory().numTensors)),
  });
  assert.equal(out.tokens.length, 2000);
  assert.equal(tf.memory().numTensors, start, "tensors after generate");
  // While generating, only the states are alive: softmax k, v; S, z per kernel layer; performer's 4; diag's block;
  // retention's S.
  assert.ok(
    duringMax - start <= 2 + 2 + 4 + 2 + 2 + 2 + 1,
    `at most the states' tensors alive, got ${duringMax - start}`,
  );
  // The softmax layer's cache grows with t; every other layer's state does not.
  const session = decodeSession(model);
  tf.dispose(session.prefill([1, 2, 3]));
  const early = session.layerStateFloats();
  for (let t = 0; t < 100; t++) tf.dispose(session.step(t % 256));
  const late = session.layerStateFloats();
  session.dispose();
  assert.equal(late[0], early[0] + 100 * 2 * 8);
  assert.deepEqual(late.slice(1, 5), early.slice(1, 5));
  assert.equal(late[6], early[6]);
  assert.equal(tf.memory().numTensors, start, "tensors after the session");
  model.dispose();
});

Deno.test("generate: bad arguments get errors that name the option and the fix", async () => {
  const model = smallModel("linear");
  const base = { prompt: "a", maxNewTokens: 2 };
  const rejects = (options: unknown, pattern: RegExp) =>
    assert.rejects(() => generate(model, options as never), pattern);
  await rejects({ ...base, temperature: 0 }, /option temperature must be > 0, got 0/);
  await rejects({ ...base, temperature: -1 }, /option temperature must be > 0/);
  await rejects({ ...base, topK: 257 }, /option topK \(257\) exceeds the vocabulary size 256; use 1..256/);
  await rejects({ ...base, topK: 0 }, /option topK must be >= 1, got 0/);
  await rejects({ ...base, topK: 2.5 }, /option topK must be an integer/);
  await rejects({ ...base, prompt: "" }, /option prompt is empty; give at least one token/);
  await rejects({ ...base, prompt: [] }, /option prompt is empty/);
  await rejects({ ...base, prompt: [1, 300] }, /prompt token 1 must be an integer token id in 0..255, got 300/);
  await rejects({ ...base, prompt: 5 }, /option prompt must be a string, a Uint8Array or an array/);
  await rejects({ ...base, maxNewTokens: 256 }, /= 257 exceeds the model's maxLength 256/);
  await rejects({ prompt: "a" }, /option maxNewTokens is required/);
  await rejects({ ...base, maxNewTokens: 0 }, /option maxNewTokens must be >= 1/);
  await rejects({ ...base, cache: "yes" }, /option cache must be one of "kv", "none"/);
  await rejects({ ...base, temprature: 1 }, /unknown option "temprature"/);
  await rejects({ ...base, onToken: 3 }, /option onToken must be a function/);
  await rejects(null, /options must be an object/);

  assert.throws(() => decodeSession(model, { length: 300 }), /option length \(300\) exceeds the model's maxLength 256/);
  assert.throws(() => decodeSession(model, { cache: "all" as never }), /option cache must be one of/);
  const session = decodeSession(model, { length: 3 });
  assert.throws(() => session.prefill([]), /ids must hold at least one token/);
  assert.throws(() => session.step(256), /id must be an integer token id in 0..255, got 256/);
  tf.dispose(session.prefill([1, 2, 3]));
  assert.throws(() => session.step(4), /position 4 would pass the session's length 3/);
  session.dispose();
  assert.throws(() => session.step(1), /the session was disposed/);

  assert.throws(() => sampleToken([1, 2], { uniform: 0.5, temperature: 0 }), /option temperature must be > 0/);
  assert.throws(() => sampleToken([1, 2], { uniform: 0.5, topK: 3 }), /option topK \(3\) exceeds the 2 logits/);
  assert.throws(() => sampleToken([1, 2], {}), /option uniform must be a number in \[0, 1\)/);
  assert.throws(() => sampleToken([NaN, NaN], { greedy: true }), /logits\[0\] is NaN/);

  const classifier = createModel({
    attention: "linear",
    layers: 1,
    dModel: 8,
    heads: 1,
    task: "classify",
    numClasses: 2,
  }, quiet);
  assert.throws(() => decodeSession(classifier), /model must be a language model/);
  classifier.dispose();
  model.dispose();
});
