/**
 * lib/bench/profile.ts: the grouping of nested kernel calls, the kernel counts of a small model's training step
 * against counts made by hand, the profile's invariants (kernel time within the wall time, rows adding up), the
 * table, bad options and leaks. Speed is never asserted.
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { formatProfile, groupKernels, type KernelRecord, profileStep } from "../lib/bench/profile.ts";
import { initBackend } from "../lib/backend.ts";
import { createModel } from "../lib/models/model.ts";
import "./helpers.ts";

const batchOf = (ids: number[]) => ({
  kind: "lm" as const,
  inputs: Int32Array.from(ids.slice(0, -1)),
  targets: Int32Array.from(ids.slice(1)),
  batch: 1,
  length: ids.length - 1,
});

const rec = (name: string, ms: number, depth = 1, custom = false, bytesAdded = 0): KernelRecord => ({
  name,
  custom,
  ms,
  depth,
  bytesAdded,
});

Deno.test("groupKernels: custom ops keep their own time, nested kernels count once, in their own rows", () => {
  // Post-order, as tf.profile records calls: a custom op's nested kernels come just before it.
  const rows = groupKernels([
    rec("AttnlabSrmsNorm", 2, 2, false, 100),
    rec("Identity", 0.25, 2),
    rec("unnamed scope", 3, 1, true),
    rec("Identity", 0.5, 2), // the copy a Multiply keeps for its gradient, inside the Multiply's call
    rec("Multiply", 1.5, 1, false, 40),
    rec("Multiply", 1, 1, false, 40),
    rec("AttnlabSrmsNorm", 1, 2, false, 100),
    rec("unnamed scope", 1.5, 1, true),
    rec("Max", 0.5, 2),
    rec("logSoftmax__op", 1, 1, true),
  ]);
  const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
  assert.deepEqual(
    Object.keys(byName).sort(),
    [
      "AttnlabSrmsNorm",
      "Identity",
      "Multiply",
      "custom op [AttnlabSrmsNorm]",
      "custom op logSoftmax__op [Max]",
      "Max",
    ].sort(),
  );
  assert.deepEqual([byName.AttnlabSrmsNorm.calls, byName.AttnlabSrmsNorm.ms, byName.AttnlabSrmsNorm.bytes], [
    2,
    3,
    200,
  ]);
  // The custom op's own time: (3 − 2 − 0.25) + (1.5 − 1) = 1.25; its bytes are its nested kernels'.
  const custom = byName["custom op [AttnlabSrmsNorm]"];
  assert.deepEqual([custom.calls, custom.ms, custom.bytes, custom.custom], [2, 1.25, null, true]);
  // The Identity inside the first Multiply is part of that Multiply's call; the one inside the custom op is apart.
  assert.deepEqual([byName.Multiply.calls, byName.Multiply.ms, byName.Multiply.bytes], [2, 2.5, 80]);
  assert.deepEqual([byName.Identity.calls, byName.Identity.ms], [1, 0.25]);
  assert.deepEqual([byName["custom op logSoftmax__op [Max]"].ms, byName.Max.ms], [0.5, 0.5]);
  // The rows add up to the outermost calls: 3 + 1.5 + 1 + 1.5 + 1.
  const total = rows.reduce((s, r) => s + r.ms, 0);
  assert.equal(total, 8);
  assert.ok(Math.abs(rows.reduce((s, r) => s + r.share, 0) - 1) < 1e-12);
  assert.deepEqual(rows.map((r) => r.ms), [...rows.map((r) => r.ms)].sort((a, b) => b - a));
  // A custom op that ran only copies is named after them.
  assert.equal(groupKernels([rec("Identity", 1, 2), rec("unnamed scope", 2, 1, true)])[0].name, "custom op [Identity]");
});

Deno.test("groupKernels: bad records are errors naming them", () => {
  assert.throws(() => groupKernels("x" as never), TypeError);
  assert.throws(() => groupKernels([{ name: "Add", ms: 1, depth: 1, bytesAdded: 0 } as never]), /records\[0\]/);
  assert.throws(
    () => groupKernels([rec("Add", 1, 0)]),
    (e: Error) => e instanceof RangeError && /depth/.test(e.message),
  );
  assert.throws(() => groupKernels([rec("Add", NaN)]), (e: Error) => e instanceof RangeError && /ms/.test(e.message));
});

Deno.test("profileStep: a 1- and a 2-layer vanilla step's matmuls, counted by hand (cpu backend)", async () => {
  // On the cpu backend nothing is fused: each matmul of the model is one BatchMatMul call.
  // Forward: per layer q, k, v, QKᵀ, PV, out and the GLU's 3, then the tied head: 1 + 9L (the embedding is a lookup:
  // one GatherV2, its gradient one UnsortedSegmentSum). Backward: two matmuls per forward matmul, 2(9L + 1). The Adam
  // update has none. Step: 3 + 27L.
  const previous = tf.getBackend();
  await initBackend({ backend: "cpu", quiet: true });
  try {
    for (const layers of [1, 2]) {
      const model = createModel({ attention: "vanilla", layers, dModel: 8, heads: 2 }, { log: () => {} });
      const before = tf.memory().numTensors;
      // Two profiled steps for the 2-layer model: the rows are per step, their mean.
      const p = await profileStep(model, batchOf([1, 2, 3, 4]), { plainSteps: 1, profiled: layers });
      assert.equal(tf.memory().numTensors, before, "profileStep leaked tensors");
      model.dispose();
      const matmul = p.kernels.find((k) => k.name === "BatchMatMul")!;
      assert.equal(matmul.calls, 3 + 27 * layers, `${layers} layers`);
      // One softmax per layer forward; the cross-entropy's one-hot targets; the embedding's lookup and its gradient.
      assert.equal(p.kernels.find((k) => k.name === "Softmax")!.calls, layers);
      assert.equal(p.kernels.find((k) => k.name === "OneHot")!.calls, 1);
      assert.equal(p.kernels.find((k) => k.name === "GatherV2")!.calls, 1);
      assert.equal(p.kernels.find((k) => k.name === "UnsortedSegmentSum")!.calls, 1);
      assert.equal(p.backend, "cpu");
      assert.match(p.device, / logical cores?$/);
      assert.equal(p.profiled, layers);
      assert.ok(p.nesting);
    }
  } finally {
    await initBackend({ backend: previous as never, quiet: true });
  }
});

Deno.test("profileStep: kernel time within the wall time and rows that add up (default backend)", async () => {
  const model = createModel({ attention: "transnormer-t2", layers: 2, dModel: 16, heads: 2 }, { log: () => {} });
  const before = tf.memory().numTensors;
  try {
    const p = await profileStep(model, batchOf([5, 1, 4, 1, 5, 9, 2, 6, 5]), { warmup: 1, profiled: 2, plainSteps: 2 });
    assert.equal(tf.memory().numTensors, before, "profileStep leaked tensors");
    // Outermost calls are disjoint parts of the step: their total cannot pass its wall time.
    assert.ok(p.kernelMs <= p.wallMs, `kernels ${p.kernelMs} ms > wall ${p.wallMs} ms`);
    assert.ok(p.kernelMs > 0 && p.plainMs! > 0);
    assert.ok(Math.abs(p.kernels.reduce((s, k) => s + k.ms, 0) - p.kernelMs) < 1e-9);
    assert.ok(Math.abs(p.overheadMs - (p.wallMs - p.kernelMs)) < 1e-9);
    for (const k of p.kernels) assert.ok(Math.abs(k.share - k.ms / p.wallMs) < 1e-12, k.name);
    assert.equal(p.calls, p.kernels.reduce((s, k) => s + k.calls, 0));
    assert.ok(p.peakBytes > 0);
    // On blas the backend's own buffers (views count nothing), elsewhere tf.profile's tensor bytes; the note says which.
    assert.equal(p.peakMethod, p.backend === "blas" ? "buffers" : "tensors");
    const note = formatProfile(p).split("\n").at(-1)!;
    assert.match(
      note,
      p.peakMethod === "buffers" ? /data buffers .* \(views count nothing\)$/ : /views count as tensors/,
    );
    assert.ok(p.nesting);
    assert.ok(!p.kernels.some((k) => k.name === "unnamed scope"), "custom ops are relabelled");
    const table = formatProfile(p, { top: 3 }).split("\n");
    assert.match(table[0], /^kernel\s+calls\s+ms\s+% step\s+new MB$/);
    assert.equal(table[1].split(/\s{2,}/)[0], p.kernels[0].name);
    assert.match(table[4], new RegExp(`^\\(${p.kernels.length - 3} more kernels\\)`));
    assert.ok(table.some((l) => /^outside kernels\s/.test(l)));
    assert.ok(table.some((l) => /^step without profiler\s/.test(l)));
  } finally {
    model.dispose();
  }
});

Deno.test("profileStep and formatProfile: bad arguments are typed errors", async () => {
  const model = createModel({ attention: "linear", layers: 1, dModel: 8, heads: 2 }, { log: () => {} });
  const batch = batchOf([1, 2, 3]);
  try {
    await assert.rejects(() => profileStep({} as never, batch), TypeError);
    await assert.rejects(() => profileStep(model, { kind: "cls" } as never), TypeError);
    await assert.rejects(() => profileStep(model, batch, { warmups: 1 } as never), /unknown option "warmups"/);
    await assert.rejects(() => profileStep(model, batch, { warmup: -1 }), RangeError);
    await assert.rejects(() => profileStep(model, batch, { profiled: 0 }), /options\.profiled/);
    await assert.rejects(() => profileStep(model, batch, { plainSteps: "2" as never }), TypeError);
    assert.throws(() => formatProfile({} as never), TypeError);
  } finally {
    model.dispose();
  }
});
