/**
 * lib/bench/scaling.ts: the structure (not the speed) of per-layer timings in interleaved rounds: a row per spec and
 * length, a time per round, peak memory, FLOPs from flopCount, the time cap, and nothing leaked.
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { attentionScaling, flopCount } from "../lib/bench/mod.ts";
import "./helpers.ts";

Deno.test("attentionScaling: a row per spec and length, one forward and one forward + backward time per round", async () => {
  const start = tf.memory().numTensors;
  const timings: string[] = [];
  const rows = await attentionScaling([
    { name: "softmax", variant: "softmax", lengths: [32] },
    { name: "norm_elu1", variant: "norm", options: { featureMap: "elu+1" } },
  ], {
    lengths: [64, 32],
    heads: 2,
    dk: 8,
    rounds: 3,
    targetMs: 5,
    onTime: (round, label) => timings.push(`${round} ${label}`),
  });
  assert.equal(tf.memory().numTensors, start, "inputs disposed");
  assert.deepEqual(rows.map((r) => `${r.name}@${r.n}`), ["softmax@32", "norm_elu1@32", "norm_elu1@64"]);
  // 3 timed configurations × 2 passes × 3 rounds.
  assert.equal(timings.length, 18);
  for (const r of rows) {
    assert.equal(r.status, "timed");
    assert.equal(r.fwdMs.length, 3);
    assert.equal(r.fwdBwdMs.length, 3);
    assert.ok([...r.fwdMs, ...r.fwdBwdMs].every((ms) => ms > 0 && Number.isFinite(ms)));
    assert.ok(r.runsPerTiming.fwd >= 1 && r.runsPerTiming.fwd <= 16 && r.runsPerTiming.fwdBwd >= 1);
    assert.ok(r.peakBytesFwd! > 0 && r.peakBytesFwdBwd! >= r.peakBytesFwd!);
    const options = r.name === "norm_elu1" ? { featureMap: "elu+1", causal: true } : { causal: true };
    assert.deepEqual(r.flops, flopCount(r.variant, { batch: 1, heads: 2, n: r.n, dk: 8, options }));
  }
});

Deno.test("attentionScaling: past the time cap a length and the longer ones are recorded, not run", async () => {
  const rows = await attentionScaling([{ name: "linear", variant: "linear" }], {
    lengths: [16, 32, 64],
    dk: 4,
    rounds: 1,
    maxRunMs: 1e-6,
  });
  assert.deepEqual(rows.map((r) => r.status), ["over time cap", "over time cap", "over time cap"]);
  assert.match(rows[0].note, /warm-up took/);
  assert.ok(rows.every((r) => r.fwdMs.length === 0));
  assert.ok(rows[0].peakBytesFwdBwd !== null && rows[1].peakBytesFwdBwd === null); // the first ran its warm-up only
});

Deno.test("attentionScaling: bad input names the argument", async () => {
  await assert.rejects(() => attentionScaling([], { lengths: [8] }), TypeError);
  await assert.rejects(
    () => attentionScaling([{ name: "a", variant: "nope" as never }], { lengths: [8] }),
    (e: Error) => e instanceof RangeError && /specs\[0\]\.variant must be one of/.test(e.message),
  );
  await assert.rejects(
    () => attentionScaling([{ name: "a", variant: "linear" }, { name: "a", variant: "norm" }], { lengths: [8] }),
    /specs\[1\]\.name "a" is used twice/,
  );
  await assert.rejects(
    () => attentionScaling([{ name: "a", variant: "linear" }], { lengths: [8], round: 1 } as never),
    /unknown option "round"/,
  );
  await assert.rejects(
    () => attentionScaling([{ name: "a", variant: "linear" }], { lengths: [8], targetMs: -1 }),
    RangeError,
  );
  await assert.rejects(() => attentionScaling([{ name: "a", variant: "linear" }], { lengths: [0] }), RangeError);
});
