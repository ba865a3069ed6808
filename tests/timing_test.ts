import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { medianMs } from "../lib/timing.ts";
import "./helpers.ts";

Deno.test("medianMs runs fn warmup + repeats times and disposes every result", () => {
  let calls = 0;
  const start = tf.memory().numTensors;
  const ms = medianMs(() => {
    calls++;
    return { a: tf.ones([4]), b: [tf.zeros([2])] };
  }, { repeats: 4, warmup: 2 });
  assert.equal(calls, 6);
  assert.ok(Number.isFinite(ms) && ms >= 0);
  assert.equal(tf.memory().numTensors, start);
});

Deno.test("medianMs rejects bad options", () => {
  assert.throws(() => medianMs(() => [], { repeats: 0 }), /repeats must be an integer >= 1, got 0/);
  assert.throws(() => medianMs(() => [], { warmup: -1 }), /warmup must be an integer >= 0/);
  assert.throws(() => medianMs(() => [], { repeat: 3 } as never), /unknown option "repeat"/);
});
