/**
 * The masked-language-model protocol of the ablation tables (issue 14): the model's task "mlm" (bidirectional
 * attention in every variant, a loss over the masked positions only, a [MASK] id in the vocabulary) and the
 * masked batches of lib/data/mlm.ts (BERT's 15% and 80/10/10, seeded, a fixed validation masking).
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { withModel } from "./helpers.ts";
import {
  createModel,
  decodeSession,
  generate,
  languageModelRun,
  MLM_VOCAB_SIZE,
  modelConfig,
  type TransformerModel,
  VARIANT_NAMES,
} from "../lib/models/mod.ts";
import { type LmBatch, MLM_MASK_RATE, MLM_REPLACE, mlmSampler, mlmTiling } from "../lib/data/mod.ts";
import { trainCached } from "../lib/train/cache.ts";
import { seededUniform } from "../lib/random.ts";

const quiet = { log: () => {} };
const small = { layers: 2, dModel: 16, heads: 2, maxLength: 64 };

/** Runs `f` and asserts that it leaves no tensor behind, also when it throws. */
async function noLeaks(f: () => void | Promise<void>): Promise<void> {
  const start = tf.memory().numTensors;
  try {
    await f();
  } finally {
    assert.equal(tf.memory().numTensors, start, "tensors leaked");
  }
}

/** Asserts that `f` throws an instance of `type` whose message contains `text`. */
function throwsWith(f: () => unknown, type: ErrorConstructor, text: string): void {
  let caught: unknown = null;
  try {
    f();
  } catch (err) {
    caught = err;
  }
  assert(caught instanceof type, `expected a ${type.name} with "${text}", got ${String(caught)}`);
  assert(caught.message.includes(text), `expected "${text}" in the message, got: ${caught.message}`);
}

/** {@linkcode throwsWith} for a function that returns a promise. */
async function rejectsWith(f: () => Promise<unknown>, type: ErrorConstructor, text: string): Promise<void> {
  let caught: unknown = null;
  try {
    await f();
  } catch (err) {
    caught = err;
  }
  assert(caught instanceof type, `expected a ${type.name} with "${text}", got ${String(caught)}`);
  assert(caught.message.includes(text), `expected "${text}" in the message, got: ${caught.message}`);
}

function ids(count: number, seed: number, vocab: number): Int32Array {
  const u = seededUniform(seed);
  return Int32Array.from({ length: count }, () => Math.floor(u() * vocab));
}

/** Mean of -log softmax(logits)[target] over the positions of weight 1, in float64 from `model.logits`. */
function maskedCrossEntropy(model: TransformerModel, batch: LmBatch): { sum: number; count: number } {
  const V = model.config.vocabSize;
  const logits = tf.tidy(() =>
    model.logits(tf.tensor2d(batch.inputs, [batch.batch, batch.length], "int32")).dataSync()
  ); // [b, n, V]
  let sum = 0;
  let count = 0;
  for (let i = 0; i < batch.batch * batch.length; i++) {
    if (batch.mask![i] === 0) continue;
    const row = logits.subarray(i * V, (i + 1) * V);
    const max = Math.max(...row);
    let z = 0;
    for (const x of row) z += Math.exp(x - max);
    sum += max + Math.log(z) - row[batch.targets[i]];
    count++;
  }
  return { sum, count };
}

Deno.test("config: task mlm adds a [MASK] id (vocabSize 257, maskToken 256 by default); bad maskTokens throw", () => {
  const c = modelConfig({ task: "mlm" });
  assert.equal(c.vocabSize, MLM_VOCAB_SIZE);
  assert.equal(c.vocabSize, 257);
  assert.equal(c.maskToken, 256);
  assert.equal(modelConfig({ task: "mlm", vocabSize: 300 }).maskToken, 299);
  assert.equal(modelConfig({ task: "mlm", vocabSize: 300, maskToken: 0 }).maskToken, 0);
  assert.equal(modelConfig({}).maskToken, null);
  assert.equal(modelConfig({}).vocabSize, 256);
  throwsWith(() => modelConfig({ task: "mlm", maskToken: 257 }), RangeError, "maskToken must be a token id in 0..256");
  throwsWith(() => modelConfig({ task: "mlm", maskToken: -1 }), RangeError, "maskToken must be an integer >= 0");
  throwsWith(() => modelConfig({ task: "mlm", maskToken: "256" as never }), TypeError, "maskToken must be an integer");
  throwsWith(() => modelConfig({ maskToken: 255 }), Error, 'maskToken is only for task "mlm"');
  throwsWith(() => modelConfig({ task: "mlm", numClasses: 3 }), Error, 'numClasses is only for task "classify"');
  throwsWith(
    () => modelConfig({ task: "mlm", attention: [{ variant: "softmax", options: { causal: false } }] }),
    Error,
    '"causal" is set by the model from its task ("lm" is causal, "mlm" and "classify" are not)',
  );
  // A resolved config goes through createModel unchanged.
  withModel(c, (m) => assert.deepEqual([m.config.vocabSize, m.config.maskToken, m.config.task], [257, 256, "mlm"]));
});

Deno.test("mlm loss: only masked positions count, and it is the mean of -log softmax over them", async () => {
  await noLeaks(() => {
    for (const attention of ["vanilla", "transnormer-t2"] as const) {
      withModel({ attention, ...small, task: "mlm" }, (m) => {
        const [b, n] = [2, 8];
        const targets = ids(b * n, 1, 256);
        const mask = Float32Array.from({ length: b * n }, (_, i) => [1, 4, 6, 9, 15].includes(i) ? 1 : 0);
        const inputs = targets.map((t, i) => mask[i] ? m.config.maskToken! : t);
        const batch: LmBatch = { kind: "lm", inputs, targets, mask, batch: b, length: n };
        const lossOf = (x: LmBatch) => tf.tidy(() => m.loss(x).dataSync()[0]);
        const base = lossOf(batch);
        for (const unmasked of [0, 5, 14]) {
          const other = targets.slice();
          other[unmasked] = (other[unmasked] + 7) % 256;
          assert.equal(lossOf({ ...batch, targets: other }), base, `${attention}: target ${unmasked} is not masked`);
        }
        for (const masked of [1, 9]) {
          const other = targets.slice();
          other[masked] = (other[masked] + 7) % 256;
          assert.notEqual(lossOf({ ...batch, targets: other }), base, `${attention}: target ${masked} is masked`);
        }
        const { sum, count } = maskedCrossEntropy(m, batch);
        assert.equal(count, 5);
        assert(Math.abs(base - sum / count) <= 1e-5 * Math.abs(base), `${attention}: ${base} vs ${sum / count}`);
        // Without weights an mlm loss would average over the unmasked copies too: refused.
        const { mask: _, ...unweighted } = batch;
        throwsWith(() => m.loss(unweighted), TypeError, 'a masked language model (task "mlm") needs batch.mask');
        throwsWith(() => m.loss({ ...batch, mask: new Float32Array(b * n) }), RangeError, "selects no target");
      });
    }
  });
});

Deno.test("mlm attention is bidirectional in every variant: position 0 sees the last token (and lm's does not)", async () => {
  await noLeaks(() => {
    // n = 8 lies inside DiagAttention's block and LocalAttention's window (64), so both see the last token too.
    const n = 8;
    const a = Int32Array.from({ length: n }, (_, i) => 10 + i);
    const b = a.slice();
    b[n - 1] = 200;
    for (const variant of VARIANT_NAMES) {
      for (const task of ["mlm", "lm"] as const) {
        withModel({ attention: [variant, variant], ...small, task }, (m) => {
          const first = (x: Int32Array) =>
            tf.tidy(() => tf.slice(m.logits(tf.tensor2d(x, [1, n], "int32")), [0, 0, 0], [1, 1, -1]).dataSync());
          const [fa, fb] = [first(a), first(b)];
          const diff = Math.max(...fa.map((x, i) => Math.abs(x - fb[i])));
          // Causal: no dependence beyond float rounding (Performer's stabiliser subtracts a max over all keys, which
          // cancels exactly in real arithmetic); bidirectional: the logits move by 0.06 to 0.9 in trials.
          if (task === "mlm") assert(diff > 1e-3, `${variant} mlm: position 0 ignores the last token (${diff})`);
          else assert(diff < 1e-5, `${variant} lm: position 0 sees the future (${diff})`);
        });
      }
    }
    // The attention matrix itself: weight above the diagonal for mlm, none for lm.
    for (const task of ["mlm", "lm"] as const) {
      withModel({ attention: "vanilla", ...small, task }, (m) => {
        const upper = tf.tidy(() => {
          const [w] = m.attentionWeights(tf.tensor2d(a, [1, n], "int32")); // [1, h, n, n]
          const above = tf.sub(1, tf.linalg.bandPart(tf.ones([n, n]), -1, 0)); // [n, n], 1 where j > i
          return tf.sum(tf.mul(w, above)).dataSync()[0];
        });
        if (task === "mlm") assert(upper > 0.1, `mlm: ${upper}`);
        else assert.equal(upper, 0);
      });
    }
  });
});

Deno.test("mlm models are not autoregressive: decoding and generation refuse them", async () => {
  await noLeaks(async () => {
    const model = createModel({ attention: "linear", ...small, task: "mlm" }, quiet);
    try {
      throwsWith(
        () => decodeSession(model),
        TypeError,
        'a masked language model (task "mlm") is bidirectional, not autoregressive',
      );
      await rejectsWith(
        () => generate(model, { prompt: "ab", maxNewTokens: 2 }),
        TypeError,
        "cannot decode or generate",
      );
    } finally {
      model.dispose();
    }
  });
});

// Pairs "aabbcc...": the first of each pair is masked, so its token is read from the right neighbour alone; the left
// one belongs to the previous, independent pair. A causal model can do no better than chance (1/K).
const K = 16;
const PAIR_LEN = 16;

function pairsBatch(rows: number, seed: number, maskToken: number): LmBatch {
  const u = seededUniform(seed);
  const size = rows * PAIR_LEN;
  const [inputs, targets, mask] = [new Int32Array(size), new Int32Array(size), new Float32Array(size)];
  for (let r = 0; r < rows; r++) {
    const at = r * PAIR_LEN;
    for (let i = 0; i < PAIR_LEN; i += 2) targets[at + i] = targets[at + i + 1] = Math.floor(u() * K);
    inputs.set(targets.subarray(at, at + PAIR_LEN), at);
    for (let i = 0; i < PAIR_LEN; i += 2) {
      if (i === 0 || u() < 0.5) [inputs[at + i], mask[at + i]] = [maskToken, 1];
    }
  }
  return { kind: "lm", inputs, targets, mask, batch: rows, length: PAIR_LEN };
}

function maskedAccuracy(model: TransformerModel, batch: LmBatch): number {
  const predicted = tf.tidy(() =>
    tf.argMax(model.logits(tf.tensor2d(batch.inputs, [batch.batch, batch.length], "int32")), -1).dataSync()
  ); // [b * n]
  let [right, total] = [0, 0];
  batch.mask!.forEach((w, i) => {
    if (w === 0) return;
    total++;
    if (predicted[i] === batch.targets[i]) right++;
  });
  return right / total;
}

Deno.test("a tiny mlm model learns to fill masks that only the right-hand context determines; a causal one cannot", async () => {
  await noLeaks(() => {
    const accuracy: Record<string, number> = {};
    for (const task of ["mlm", "lm"] as const) {
      // vocabSize K + 1: the K symbols and the [MASK] id K (the causal control reads K as one more token).
      const config = { attention: "vanilla", layers: 2, dModel: 32, heads: 2, rotary: true, task } as const;
      withModel({ ...config, vocabSize: K + 1, maxLength: PAIR_LEN }, (m) => {
        const opt = tf.train.adam(1e-2);
        for (let step = 0; step < 60; step++) {
          const batch = pairsBatch(32, step, K);
          opt.minimize(() => m.loss(batch), false, Object.values(m.variables));
        }
        opt.dispose();
        accuracy[task] = maskedAccuracy(m, pairsBatch(64, 10_000, K));
      });
    }
    // Chance is 1/16 = 0.0625; the bidirectional model reaches 1.0 by step 50 in trials.
    assert(accuracy.mlm >= 0.8, `mlm masked accuracy ${accuracy.mlm}`);
    assert(accuracy.lm <= 0.2, `the causal control should stay near chance 0.0625, got ${accuracy.lm}`);
  });
});

/** A stream whose windows are recognisable: token i is i mod 251, so each row's targets count up by 1 mod 251. */
const counting = Uint8Array.from({ length: 20_000 }, (_, i) => i % 251);

Deno.test("mlmSampler: windows of the stream as targets, inputs equal to them outside the mask, pure in step", () => {
  const sampler = mlmSampler(counting, { batchSize: 8, seqLen: 32, seed: 3, maskToken: 256 });
  assert.deepEqual([sampler.maskRate, sampler.replace], [MLM_MASK_RATE, MLM_REPLACE]);
  const b = sampler.batch(5);
  assert.deepEqual([b.kind, b.batch, b.length, b.inputs.length, b.mask!.length], ["lm", 8, 32, 256, 256]);
  for (let r = 0; r < b.batch; r++) {
    for (let j = 1; j < b.length; j++) {
      assert.equal(b.targets[r * 32 + j], (b.targets[r * 32 + j - 1] + 1) % 251, `row ${r} is not a window`);
    }
  }
  b.mask!.forEach((w, i) => {
    assert(w === 0 || w === 1);
    if (w === 0) assert.equal(b.inputs[i], b.targets[i]);
  });
  assert.deepEqual(sampler.batch(5), b, "same step, same batch");
  assert.deepEqual(mlmSampler(counting, { batchSize: 8, seqLen: 32, seed: 3, maskToken: 256 }).batch(5), b);
  assert.notDeepEqual(sampler.batch(6).mask, b.mask, "another step, another masking");
  assert.notDeepEqual(
    mlmSampler(counting, { batchSize: 8, seqLen: 32, seed: 4, maskToken: 256 }).batch(5).mask,
    b.mask,
  );
});

Deno.test("mlmSampler: 15% of positions per row as fairseq counts them (9 or 10 of 64), 80/10/10 replacements", () => {
  const sampler = mlmSampler(counting, { batchSize: 200, seqLen: 64, seed: 1, maskToken: 256 });
  const counts = { 9: 0, 10: 0 } as Record<number, number>;
  const kinds = { mask: 0, random: 0, keep: 0 };
  let [chosen, rows] = [0, 0];
  for (let step = 0; step < 20; step++) {
    const b = sampler.batch(step);
    for (let r = 0; r < b.batch; r++) {
      let count = 0;
      for (let i = r * 64; i < (r + 1) * 64; i++) {
        if (b.mask![i] === 0) continue;
        count++;
        if (b.inputs[i] === 256) kinds.mask++;
        else if (b.inputs[i] !== b.targets[i]) kinds.random++;
        else kinds.keep++;
      }
      // floor(0.15 * 64 + u) = floor(9.6 + u): 10 with probability 0.6, else 9.
      assert(count === 9 || count === 10, `row ${r} of step ${step} masks ${count}`);
      counts[count]++;
      chosen += count;
      rows++;
    }
  }
  assert(Math.abs(chosen / (rows * 64) - 0.15) < 0.002, `mask rate ${chosen / (rows * 64)}`);
  assert(Math.abs(counts[10] / rows - 0.6) < 0.04, `share of rows with 10 masks ${counts[10] / rows}`);
  // A random replacement draws the original byte with probability 1/256, and then reads as kept.
  const expected = { mask: 0.8, random: 0.1 * (255 / 256), keep: 0.1 + 0.1 / 256 };
  for (const key of ["mask", "random", "keep"] as const) {
    const share = kinds[key] / chosen;
    assert(Math.abs(share - expected[key]) < 0.01, `${key}: ${share} of ${chosen}, expected ${expected[key]}`);
  }
});

Deno.test("mlmSampler: at least one mask per row; the replace split is honoured; random ids stay in the vocabulary", () => {
  const tiny = mlmSampler(counting, { batchSize: 500, seqLen: 4, seed: 2, maskToken: 256, maskRate: 0.05 });
  const b = tiny.batch(0);
  for (let r = 0; r < b.batch; r++) {
    assert(b.mask!.subarray(r * 4, r * 4 + 4).some((w) => w === 1), `row ${r} has no mask`);
  }
  const all = mlmSampler(counting, {
    batchSize: 4,
    seqLen: 32,
    maskToken: 256,
    replace: { mask: 1, random: 0, keep: 0 },
  })
    .batch(0);
  all.mask!.forEach((w, i) => assert.equal(all.inputs[i], w === 1 ? 256 : all.targets[i]));
  const keep = mlmSampler(counting, {
    batchSize: 4,
    seqLen: 32,
    maskToken: 256,
    replace: { mask: 0, random: 0, keep: 1 },
  })
    .batch(0);
  assert.deepEqual(keep.inputs, keep.targets);
  assert(keep.mask!.some((w) => w === 1));
  const stream = Int32Array.from({ length: 500 }, (_, i) => i % 10);
  const random = mlmSampler(stream, {
    batchSize: 50,
    seqLen: 10,
    vocabSize: 10,
    maskToken: 10,
    maskRate: 1,
    replace: { mask: 0, random: 1, keep: 0 },
  }).batch(0);
  assert(random.mask!.every((w) => w === 1), "maskRate 1 chooses every position");
  assert(random.inputs.every((t) => t >= 0 && t < 10));
  assert(random.inputs.some((t, i) => t !== random.targets[i]));
});

Deno.test("mlmSampler and mlmTiling: bad options throw a TypeError or RangeError naming the option", () => {
  const ok = { batchSize: 2, seqLen: 8, maskToken: 256 };
  for (const make of [mlmSampler, mlmTiling] as const) {
    const cases: [unknown, ErrorConstructor, string][] = [
      [{ ...ok, maskRate: 0 }, RangeError, "option maskRate must be > 0"],
      [{ ...ok, maskRate: 1.5 }, RangeError, "option maskRate must be in (0, 1]"],
      [{ ...ok, maskRate: "0.15" }, TypeError, "option maskRate"],
      [{ batchSize: 2, seqLen: 8 }, TypeError, "option maskToken is required"],
      [{ ...ok, maskToken: 255 }, RangeError, "option maskToken 255 lies inside the data vocabulary 0..255"],
      [{ ...ok, maskToken: -1 }, RangeError, "option maskToken must be >= 0"],
      [{ ...ok, maskToken: 256.5 }, RangeError, "option maskToken must be an integer"],
      [{ ...ok, batchSize: 0 }, RangeError, "option batchSize must be >= 1"],
      [{ seqLen: 8, maskToken: 256 }, TypeError, "option batchSize is required"],
      [{ batchSize: 2, maskToken: 256 }, TypeError, "option seqLen is required"],
      [{ ...ok, seqLen: 30_000 }, RangeError, "option seqLen 30000 is longer than the token stream"],
      [{ ...ok, maskProb: 0.15 }, TypeError, 'unknown option "maskProb"'],
      [{ ...ok, replace: { mask: 0.8, random: 0.1, keep: 0.2 } }, RangeError, "mask + random + keep = 1"],
      [{ ...ok, replace: { mask: 0.9, random: 0.1 } }, TypeError, "option replace.keep must be a number"],
      [
        { ...ok, replace: { mask: 1.2, random: -0.1, keep: -0.1 } },
        RangeError,
        "option replace.mask must be in [0, 1]",
      ],
      [{ ...ok, replace: { mask: 0.8, random: 0.1, keep: 0.1, drop: 0 } }, TypeError, 'unknown option "drop"'],
      [{ ...ok, replace: 0.8 }, TypeError, "option replace must be an object"],
      [null, TypeError, "options must be an object"],
    ];
    for (const [options, type, message] of cases) {
      throwsWith(() => make(counting, options as never), type, message);
    }
    throwsWith(() => make([1, 2, 3] as never, ok), TypeError, "tokens must be a Uint8Array");
    throwsWith(
      () => make(Int32Array.from([0, 12, 3, 4, 5, 6, 7, 8]), { ...ok, vocabSize: 10, maskToken: 10 }),
      RangeError,
      "token 12 at position 1",
    );
    throwsWith(() => make(Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), ok), TypeError, "option vocabSize is required");
  }
  const sampler = mlmSampler(counting, ok);
  throwsWith(() => sampler.batch(-1), RangeError, "step must be an integer >= 0");
  throwsWith(() => sampler.batch(1.5), RangeError, "step must be an integer >= 0");
  throwsWith(() => sampler.batch("1" as never), TypeError, "step must be an integer >= 0");
  const tiling = mlmTiling(counting, { ...ok, maxBatches: 3 });
  throwsWith(() => tiling.batch(3), RangeError, "index must be < numBatches (3)");
  throwsWith(() => mlmTiling(counting, { ...ok, maxBatches: 0 }), RangeError, "option maxBatches must be >= 1");
});

Deno.test("mlmTiling: consecutive windows, a fixed masking per window (seeded), the same count in every row", () => {
  const options = { batchSize: 8, seqLen: 20, maskToken: 256, seed: 7 };
  const stream = counting.subarray(0, 1000); // 50 windows: 6 full batches of 8, the last 2 windows left out
  const tiling = mlmTiling(stream, options);
  assert.deepEqual(
    [tiling.numWindows, tiling.numBatches, tiling.batchSize, tiling.maskedPerRow, tiling.numMasked],
    [48, 6, 8, 3, 144],
  );
  const batches = Array.from(tiling);
  assert.equal(batches.length, 6);
  batches.forEach((b, i) => {
    assert.equal(b.batch, 8);
    for (let r = 0; r < 8; r++) {
      const w = i * 8 + r;
      assert.deepEqual(b.targets.subarray(r * 20, r * 20 + 20), Int32Array.from(stream.subarray(w * 20, w * 20 + 20)));
      assert.equal(b.mask!.subarray(r * 20, r * 20 + 20).reduce((s, x) => s + x, 0), 3, `window ${w}`);
    }
  });
  // Fixed: the same batches on every call and from every tiling with these options.
  assert.deepEqual(tiling.batch(4), batches[4]);
  assert.deepEqual(mlmTiling(stream, options).batch(4), batches[4]);
  // A window's masking depends on (seed, window) only, not on the batch size.
  const byTwo = mlmTiling(stream, { ...options, batchSize: 2 });
  assert.deepEqual(byTwo.batch(17).inputs.subarray(20, 40), batches[4].inputs.subarray(60, 80)); // window 35
  assert.deepEqual(byTwo.batch(17).mask!.subarray(20, 40), batches[4].mask!.subarray(60, 80));
  assert.notDeepEqual(mlmTiling(stream, { ...options, seed: 8 }).batch(4).mask, batches[4].mask);
  assert.equal(mlmTiling(stream, { ...options, maxBatches: 2 }).numBatches, 2);
  // Fewer windows than batchSize: one batch of them all.
  const short = mlmTiling(counting.subarray(0, 70), options);
  assert.deepEqual([short.numBatches, short.batchSize, short.batch(0).batch], [1, 3, 3]);
});

Deno.test("mlmTiling: the plain mean of the batch losses (as train's validation takes it) is the masked-token mean", async () => {
  await noLeaks(() => {
    withModel({ attention: "transnormer-t2", ...small, task: "mlm" }, (m) => {
      const tiling = mlmTiling(counting.subarray(0, 400), { batchSize: 3, seqLen: 16, maskToken: 256, maskRate: 0.2 });
      let [sum, count, meanOfBatches] = [0, 0, 0];
      for (const batch of tiling) {
        meanOfBatches += tf.tidy(() => m.loss(batch).dataSync()[0]) / tiling.numBatches;
        const ce = maskedCrossEntropy(m, batch);
        sum += ce.sum;
        count += ce.count;
      }
      assert.equal(count, tiling.numMasked);
      assert(Math.abs(meanOfBatches - sum / count) < 1e-5 * sum / count, `${meanOfBatches} vs ${sum / count}`);
    });
  });
});

Deno.test("a recipe with task mlm trains a bidirectional byte model on masked batches; validation is over masked bytes", async () => {
  const runsDir = await Deno.makeTempDir();
  try {
    await noLeaks(async () => {
      const recipe = { task: "mlm" as const, steps: 2, validEvery: 2, probeEvery: null };
      const run = await languageModelRun("vanilla", { quick: true, runsDir, recipe, progress: "none", log: null });
      const causal = await languageModelRun("vanilla", { quick: true, runsDir, progress: "none", log: null });
      assert.equal(run.name, "mlm-quick/vanilla");
      assert.equal(causal.name, "lm-quick/vanilla");
      assert.match(run.options.dataId!, /:mlm0\.15:0\.8\/0\.1\/0\.1:validmask0$/);
      assert.doesNotMatch(causal.options.dataId!, /mlm/);
      const batch = await run.options.batchAt(0);
      assert(batch.mask!.some((w) => w === 1) && batch.inputs.some((t) => t === 256));
      const { model, result } = await trainCached(run.name, run.options);
      try {
        assert.deepEqual([model.config.task, model.config.vocabSize, model.config.maskToken], ["mlm", 257, 256]);
        let [sum, count] = [0, 0];
        for (const b of run.options.validation!.batches()) {
          const ce = maskedCrossEntropy(model, b);
          sum += ce.sum;
          count += ce.count;
        }
        const logged = result.logs.valid.at(-1)!;
        assert.equal(logged.step, 2);
        assert(Math.abs(logged.loss - sum / count) < 1e-5 * logged.loss, `${logged.loss} vs ${sum / count}`);
      } finally {
        model.dispose();
      }
      await rejectsWith(
        () => languageModelRun({ attention: "vanilla", task: "lm" }, { quick: true, recipe: { task: "mlm" } }),
        Error,
        'the architecture\'s task "lm" differs from the recipe\'s "mlm"',
      );
      await rejectsWith(
        () => languageModelRun("vanilla", { quick: true, recipe: { task: "masked" as never } }),
        RangeError,
        'recipe.task must be "lm" or "mlm"',
      );
    });
  } finally {
    await Deno.remove(runsDir, { recursive: true });
  }
});
