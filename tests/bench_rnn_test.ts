/**
 * lib/bench/rnn.ts: the three forms of a model's attention layers against the model's own forward pass and each
 * other, and the structure (not the speed) of interleaved decoding timings: positions reached, state sizes from
 * their closed forms, one time per round.
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { decodeTimes, formAgreement, layerOutputs } from "../lib/bench/mod.ts";
import { assertClose, withModel } from "./helpers.ts";

const IDS = [84, 104, 101, 32, 67, 111, 110, 103, 114, 101, 115, 115, 32, 104, 97, 115];

Deno.test("layerOutputs: every form's logits equal the model's own forward pass; recurrent and parallel layer outputs agree", () => {
  for (const attention of ["linear", "vanilla", "transnormer-t2"] as const) {
    withModel({ attention, layers: 2, dModel: 16, heads: 2, seed: 3 }, (model) => {
      const start = tf.memory().numTensors;
      const reference = tf.tidy(() =>
        tf.reshape(model.logits(tf.tensor2d([IDS], [1, IDS.length], "int32")), [IDS.length, 256])
      );
      const forms = (["reference", "attend", "recurrent"] as const).map((form) => layerOutputs(model, IDS, form));
      for (const [i, out] of forms.entries()) {
        assert.equal(out.layers.length, 2);
        assert.deepEqual(out.layers[0].shape, [1, 2, IDS.length, 8]);
        assertClose(out.logits, reference, `${attention}, form ${i}: logits`);
        out.layers.forEach((layer, l) => assertClose(layer, forms[0].layers[l], `${attention}, form ${i}: layer ${l}`));
      }
      tf.dispose([reference, ...forms.flatMap((f) => [...f.layers, f.logits])]);
      assert.equal(tf.memory().numTensors, start, `${attention}: tensors leaked`);
    });
  }
});

Deno.test("formAgreement: a row per layer and the logits, differences at float32 rounding, nothing leaked", () => {
  withModel({ attention: "transnormer-t1", layers: 2, dModel: 16, heads: 2 }, (model) => {
    const start = tf.memory().numTensors;
    const rows = formAgreement(model, IDS);
    assert.equal(tf.memory().numTensors, start);
    assert.deepEqual(rows.map((r) => [r.layer, r.variant]), [["0", "diag (relu)"], ["1", "norm (elu)"], [
      "logits",
      "–",
    ]]);
    for (const r of rows) {
      assert.ok(r.maxOutput > 0);
      for (const d of [r.chunkedVsParallel, r.recurrentVsParallel, r.recurrentVsChunked]) {
        assert.ok(d >= 0 && d < 1e-4 * Math.max(1, r.maxOutput), `${r.layer}: ${d}`);
      }
    }
  });
});

Deno.test("layerOutputs and formAgreement: bad input names the argument", () => {
  withModel({ attention: "linear", layers: 1, dModel: 8, heads: 2, maxLength: 8 }, (model) => {
    assert.throws(
      () => layerOutputs(model, IDS.slice(0, 4), "fast" as never),
      /form must be one of reference, attend, recurrent/,
    );
    assert.throws(
      () => layerOutputs(model, [], "attend"),
      (e: Error) => e instanceof RangeError && /ids is empty/.test(e.message),
    );
    assert.throws(() => layerOutputs(model, [1, 256], "attend"), /ids\[1\] must be a token id in 0\.\.255, got 256/);
    assert.throws(() => formAgreement(model, IDS), /ids has 16 tokens, more than the model's maxLength 8/);
    assert.throws(
      () => formAgreement({} as never, IDS),
      (e: Error) => e instanceof TypeError && /model must be a TransformerModel/.test(e.message),
    );
  });
});

Deno.test("decodeTimes: one session per (model, position), stepped each round; positions and states from their closed forms", () => {
  const arch = { layers: 2, dModel: 16, heads: 2, maxLength: 64 };
  withModel({ ...arch, attention: "linear" }, (linear) =>
    withModel({ ...arch, attention: "vanilla" }, (vanilla) => {
      const ids = Array.from({ length: 64 }, (_, i) => (i * 7) % 256);
      const start = tf.memory().numTensors;
      const labels: string[] = [];
      const rows = decodeTimes(
        [
          { name: "linear", model: linear, positions: [8, 32] },
          { name: "kv", model: vanilla, positions: [8, 32] },
          { name: "none", model: vanilla, cache: "none", positions: [16] },
        ],
        ids,
        {
          rounds: 3,
          stepsPerTiming: 2,
          warmup: 1,
          onTime: (round, label) => labels.push(`${round}:${label}`),
        },
      );
      assert.equal(tf.memory().numTensors, start, "sessions and logits disposed");
      // Every timing once per round, 5 timings × 3 rounds.
      assert.equal(labels.length, 15);
      assert.deepEqual(labels.slice(0, 5).map((l) => l.split(":")[1]).sort(), [
        "kv@32",
        "kv@8",
        "linear@32",
        "linear@8",
        "none@16",
      ]);
      // Each kv session moved (warmup 1 + rounds 3) × 2 steps past its position.
      const dh = 8;
      for (const r of rows) {
        assert.equal(r.msPerToken.length, 3);
        assert.ok(r.msPerToken.every((ms) => ms > 0));
        if (r.cache === "none") {
          assert.deepEqual([r.endPosition, r.stateFloats, r.heldBytes], [16, 0, 0]);
          continue;
        }
        assert.equal(r.endPosition, r.position + 8);
        // linear: layers · heads · (dh² + dh); KV cache: layers · 2 · heads · dh per token.
        const expected = r.name === "linear" ? 2 * 2 * (dh * dh + dh) : 2 * 2 * 2 * dh * r.endPosition;
        assert.equal(r.stateFloats, expected, `${r.name}@${r.position}`);
        assert.ok(r.heldBytes > 0);
      }
      const held = (name: string, p: number) => rows.find((r) => r.name === name && r.position === p)!.heldBytes;
      assert.ok(held("kv", 32) > held("kv", 8), "the KV cache grows with the prefix");
    }));
});

Deno.test("decodeTimes: bad input names the argument and what to change", () => {
  withModel({ attention: "linear", layers: 1, dModel: 8, heads: 2, maxLength: 32 }, (model) => {
    const ids = Array.from({ length: 32 }, (_, i) => i);
    const start = tf.memory().numTensors;
    assert.throws(
      () => decodeTimes([{ name: "a", model, positions: [28] }], ids, { rounds: 2, stepsPerTiming: 2 }),
      (e: Error) =>
        e instanceof RangeError && /reaches position 34 from 28.*past the model's maxLength 32/.test(e.message),
    );
    assert.throws(() => decodeTimes([{ name: "a", model, positions: [4] }], ids.slice(0, 6)), /past ids \(6 tokens\)/);
    assert.throws(
      () => decodeTimes([{ name: "a", model, positions: [4, 4] }], ids),
      /"a" at position 4 is given twice/,
    );
    assert.throws(
      () => decodeTimes([{ name: "a", model, positions: [4] }], ids, { round: 2 } as never),
      /unknown option "round"/,
    );
    assert.throws(
      () => decodeTimes([{ name: "a", model, cache: "full" as never, positions: [4] }], ids),
      /cache must be "kv" or "none"/,
    );
    assert.throws(() => decodeTimes([], ids), TypeError);
    assert.equal(tf.memory().numTensors, start);
  });
});
