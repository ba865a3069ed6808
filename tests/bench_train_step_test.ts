/**
 * lib/bench/train_step.ts: model FLOPs against closed forms written out by hand, one timed training update against
 * the same update made by hand, and the statuses (not the speed) of the Table 7 harness.
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { flopCount, modelFlops, trainStepTimer, trainStepTimes } from "../lib/bench/mod.ts";
import { modelConfig } from "../lib/models/config.ts";
import { createModel } from "../lib/models/model.ts";
import { adam } from "../lib/train/adam.ts";
import { LM_RECIPE } from "../lib/models/pretrained.ts";

const batchOf = (ids: number[]) => ({
  kind: "lm" as const,
  inputs: Int32Array.from(ids.slice(0, -1)),
  targets: Int32Array.from(ids.slice(1)),
  batch: 1,
  length: ids.length - 1,
});

Deno.test("modelFlops: projections, feed-forward, attention and head from closed forms; the embedding lookup counts none", () => {
  // 2 softmax layers, d = 8, 2 heads (dh = 4), GLU hidden round(8/3 · 8) = 21, V = 256; batch 3, n = 10.
  const [b, n, d, h, V, L] = [3, 10, 8, 21, 256, 2];
  const glu = modelFlops(modelConfig({ attention: ["softmax", "softmax"], dModel: d, heads: 2 }), { batch: b, n });
  const dense = L * 2 * b * n * (4 * d * d + 3 * d * h) + 2 * b * n * d * V; // layers + tied head
  const attention = L * 2 * (b * 2) * n * n * (4 + 4); // 2·bh·n²·(dk + dv) per layer
  // The embedding is a lookup: no FLOPs.
  assert.equal(glu.attentionFwd, attention);
  assert.equal(glu.fwd, dense + attention);
  // Backward: twice every matmul (both operands need gradients).
  assert.equal(glu.step, 3 * dense + 3 * attention);
  // An MLP has two feed-forward matmuls of 4d; a classifier's head works on the pooled [b, d].
  const mlp = modelFlops(modelConfig({ attention: ["softmax"], dModel: d, heads: 2, ffn: "mlp" }), { batch: 1, n });
  assert.equal(mlp.fwd, 2 * n * (4 * d * d + 2 * d * 4 * d) + 2 * n * d * V + 2 * 2 * n * n * 8);
  const cls = modelFlops(
    modelConfig({ attention: ["softmax"], dModel: d, heads: 2, task: "classify", numClasses: 5 }),
    {
      batch: 1,
      n,
    },
  );
  assert.equal(cls.fwd, 2 * n * (4 * d * d + 3 * d * h) + 2 * d * 5 + 2 * 2 * n * n * 8);
});

Deno.test("modelFlops: each layer's attention is its variant's flopCount with dk = d / heads", () => {
  const config = modelConfig({ attention: "transnormer-t2", layers: 4, dModel: 64, heads: 4 });
  const f = modelFlops(config, { batch: 1, n: 1024 });
  const per = config.attention.map((l) =>
    flopCount(l.variant, { batch: 1, heads: 4, n: 1024, dk: 16, causal: true, options: l.options })
  );
  assert.equal(f.attentionFwd, per.reduce((s, c) => s + c.fwd, 0));
  assert.equal(f.attentionStep, per.reduce((s, c) => s + c.fwdBwd, 0));
  // Doubling n doubles every term of a linear-cost model.
  assert.equal(modelFlops(config, { batch: 1, n: 2048 }).step, 2 * f.step);
  assert.throws(
    () => modelFlops(config, { batch: 1, n: 0 }),
    (e: Error) => e instanceof RangeError && /dims\.n/.test(e.message),
  );
  assert.throws(() => modelFlops({} as never, { batch: 1, n: 4 }), TypeError);
});

Deno.test("trainStepTimer: one call is the training loop's update (gradients, then Adam with the recipe's settings)", async () => {
  const ids = [5, 17, 99, 3, 250, 42, 7, 8, 9];
  const arch = { attention: "linear" as const, layers: 1, dModel: 8, heads: 2, seed: 4 };
  const timed = createModel(arch, { log: () => {} });
  const manual = createModel(arch, { log: () => {} });
  try {
    {
      const start = tf.memory().numTensors;
      const timer = trainStepTimer(timed);
      const loss = await timer.step(batchOf(ids));
      // The same update by hand.
      const vars = Object.values(manual.variables);
      const opt = adam(manual.variables, {
        lr: LM_RECIPE.lr,
        beta2: LM_RECIPE.beta2,
        weightDecay: LM_RECIPE.weightDecay,
        clip: LM_RECIPE.clip,
        schedule: "constant",
        steps: 10,
      });
      const { value, grads } = tf.variableGrads(() => manual.loss(batchOf(ids)), vars);
      opt.apply(Object.fromEntries(Object.keys(manual.variables).map((n, i) => [n, grads[vars[i].name]])));
      assert.equal(loss, value.dataSync()[0]);
      for (const name of Object.keys(timed.variables)) {
        const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(timed.variables[name], manual.variables[name]))).dataSync()[0]);
        assert.ok(diff < 1e-7, `${name}: ${diff}`);
      }
      tf.dispose([value, ...Object.values(grads)]);
      opt.dispose();
      // A non-finite loss applies nothing and says so.
      const stuck = trainStepTimer(timed);
      const w = timed.variables["embed.weight"];
      const kept = w.clone();
      const nan = tf.fill(w.shape, NaN);
      w.assign(nan);
      await assert.rejects(() => stuck.step(batchOf(ids)), /non-finite loss.*nothing was applied/);
      w.assign(kept);
      tf.dispose([kept, nan]);
      stuck.dispose();
      timer.dispose();
      assert.equal(tf.memory().numTensors, start);
      assert.throws(() => trainStepTimer({} as never), TypeError);
      assert.throws(() => trainStepTimer(timed, { lr: 1 } as never), /unknown option "lr"/);
    }
  } finally {
    timed.dispose();
    manual.dispose();
  }
});

Deno.test("trainStepTimes: timed rows have a time per round; the budgets stop a preset's longer lengths", async () => {
  const architecture = { layers: 1, dModel: 8, heads: 2 };
  const start = tf.memory().numTensors;
  const warm: string[] = [];
  const rows = await trainStepTimes({
    presets: ["vanilla", "linear"],
    lengths: [32, 16],
    architecture,
    rounds: 2,
    onWarmup: (label) => warm.push(label),
  });
  assert.equal(tf.memory().numTensors, start, "models and optimizers disposed");
  assert.deepEqual(warm, ["vanilla@16", "vanilla@32", "linear@16", "linear@32"]); // increasing n per preset
  for (const r of rows) {
    assert.equal(r.status, "timed");
    assert.equal(r.stepMs.length, 2);
    assert.ok(r.peakBytes! > 0 && r.parameters > 0);
    assert.deepEqual(
      r.flops,
      modelFlops(modelConfig({ ...architecture, attention: r.preset, maxLength: 32 }), { batch: 1, n: r.n }),
    );
  }
  // A memory budget below the first length's predicted growth: that length runs, the next is recorded, not run.
  const first = rows.find((r) => r.preset === "vanilla" && r.n === 16)!.peakBytes!;
  const capped = await trainStepTimes({
    presets: ["vanilla"],
    lengths: [16, 32, 64],
    architecture,
    rounds: 1,
    memoryBudgetBytes: 2 * first,
  });
  assert.deepEqual(capped.map((r) => r.status), ["timed", "over memory budget", "over memory budget"]);
  assert.match(capped[1].note, /^predicted .* > /);
  assert.deepEqual(capped[1].stepMs, []);
  // A time cap no step can meet: the first warm-up finds it, and nothing is timed.
  const slow = await trainStepTimes({
    presets: ["linear"],
    lengths: [16, 32],
    architecture,
    rounds: 1,
    maxStepMs: 1e-6,
  });
  assert.deepEqual(slow.map((r) => r.status), ["over time cap", "over time cap"]);
  assert.match(slow[0].note, /^warm-up step/);
});

Deno.test("trainStepTimes: bad input names the argument", async () => {
  const base = { presets: ["linear" as const], lengths: [8], architecture: { layers: 1, dModel: 8, heads: 2 } };
  await assert.rejects(() => trainStepTimes({ ...base, round: 2 } as never), /unknown option "round"/);
  await assert.rejects(() => trainStepTimes({ ...base, lengths: [] }), TypeError);
  await assert.rejects(() => trainStepTimes({ ...base, lengths: [0] }), RangeError);
  await assert.rejects(
    () => trainStepTimes({ ...base, memoryBudgetBytes: 0 }),
    /memoryBudgetBytes must be a number > 0/,
  );
  await assert.rejects(
    () => trainStepTimes({ ...base, tokens: [1, 2, 3] }),
    /options\.tokens must hold at least batch · \(longest length \+ 1\) = 9 ids, got 3/,
  );
});
