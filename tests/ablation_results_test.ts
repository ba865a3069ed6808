/**
 * lib/experiments/ablation_results.ts against hand-computed values (the arithmetic is in the comments; t quantiles
 * from published tables: t(0.975, 1) = 12.706205, t(0.975, 2) = 4.302653, t(0.975, 5) = 2.570582,
 * t(0.975, 6) = 2.446912), the divergence rule's cases, and DiagAttention timers against causal softmax attention
 * (a block that covers the whole sequence is full attention).
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  ABLATION_CONFIGS,
  ablationEntries,
  ablationRecord,
  AblationRuns,
  clipLabel,
  compareLosses,
  contextLimited,
  curveRows,
  describeComparison,
  diagBlockTimers,
  DIVERGENCE_RULE,
  MLM_ABLATION_CONFIGS,
  seedRows,
  seedsToSettle,
  summarizeConfig,
  summaryRows,
  type TrainedRunLike,
} from "../lib/experiments/mod.ts";
import { variants } from "../lib/attention/mod.ts";
import { allOf, tInterval, verdict } from "../lib/stats/mod.ts";
import { assertClose, outputAndGrads, seededQKV } from "./helpers.ts";

const T_975_2 = 4.302653;

const close = (actual: number, expected: number, tol = 1e-6) =>
  assert.ok(Math.abs(actual - expected) <= tol, `${actual} is not within ${tol} of ${expected}`);

/** A trained run as trainedAblation returns it, with the logs the record reads. */
function fakeRun(
  losses: number[],
  options: { stopped?: number; seconds?: number[]; warmup?: number; dispose?: () => void } = {},
): TrainedRunLike & { model: { parameterCount: number; dispose(): void } } {
  const seconds = options.seconds ?? losses.map(() => 0.1);
  return {
    result: {
      stopped: options.stopped === undefined ? null : {
        reason: "non-finite",
        step: options.stopped,
        where: "loss",
        layer: null,
        stage: "blocks.1.attn",
        variables: [],
      },
      logs: {
        train: seconds.map((s, step) => ({ step, seconds: s })) as never,
        valid: losses.map((loss, i) => ({
          step: 10 * (i + 1),
          loss,
          perplexity: Math.exp(loss),
          bits_per_byte: loss / Math.LN2,
        })),
        gradNorms: [],
        probes: [],
      },
    },
    action: "trained",
    model: { parameterCount: 1000, dispose: options.dispose ?? (() => {}) },
    recipe: { steps: 30, batchSize: 8, seqLen: 128, warmup: options.warmup ?? 0 },
  };
}

function runsWith(setting: "causal" | "mlm", finals: Record<string, number[]>): AblationRuns {
  const runs = new AblationRuns();
  for (const [id, losses] of Object.entries(finals)) {
    losses.forEach((loss, i) => {
      const diverged = !Number.isFinite(loss);
      runs.add(ablationRecord(setting, id, i + 1, fakeRun(diverged ? [2] : [loss], diverged ? { stopped: 5 } : {})));
    });
  }
  return runs;
}

Deno.test("ablationEntries: every configuration of both settings, Table 1 MLM arms with and without clipping", () => {
  const entries = ablationEntries();
  assert.equal(entries.length, 5 + 10 + 5 + 5 + 4 + 4);
  const ids = (setting: string) => new Set(entries.filter((e) => e.setting === setting).map((e) => e.id));
  assert.deepEqual(ids("causal"), new Set(Object.keys(ABLATION_CONFIGS)));
  assert.deepEqual(ids("mlm"), new Set([...Object.keys(MLM_ABLATION_CONFIGS)]));
  for (const e of entries.filter((e) => e.setting === "mlm")) {
    assert.equal(e.clip, e.id.endsWith("-clip") ? 1 : null, e.id);
    // The T2 run is Table 9's first row and Table 11's block 64; every other run belongs to one table.
    if (e.id !== "t2") assert.equal(e.table, MLM_ABLATION_CONFIGS[e.id].table, e.id);
  }
  // The same arms in both settings: Table 11's block 64 is the T2 run in each.
  for (const table of ["1", "8/9", "11"] as const) {
    const arms = (
      setting: string,
    ) => [...new Set(entries.filter((e) => e.table === table && e.setting === setting).map((e) => e.arm))];
    assert.deepEqual(arms("causal"), arms("mlm"), table);
  }
  assert.equal(entries.find((e) => e.table === "11" && e.arm.startsWith("block 64") && e.setting === "mlm")?.id, "t2");
  assert.deepEqual(entries.filter((e) => e.paper !== null).map((e) => `${e.setting}:${e.id}:${e.paper}`), [
    "causal:late-linear:4.98",
    "causal:late-none:797.08",
    "causal:late-rms:4.94",
    "mlm:elu-denominator-clip:4.98",
    "mlm:elu-denominator-noclip:4.98",
    "mlm:elu-none-clip:797.08",
    "mlm:elu-none-noclip:797.08",
    "mlm:elu-rms-clip:4.94",
    "mlm:elu-rms-noclip:4.94",
    "causal:t2:3.81",
    "causal:norm-then-diag:4.21",
    "mlm:t2:3.81",
    "mlm:norm-then-diag:4.21",
  ]);
  assert.ok(ablationEntries({ causalClip: null }).filter((e) => e.setting === "causal").every((e) => e.clip === null));
  assert.throws(() => ablationEntries({ causalClip: 0 }), RangeError);
  assert.throws(() => ablationEntries({ causalClip: "1" as unknown as number }), TypeError);
  assert.equal(clipLabel(1), "clip 1");
  assert.equal(clipLabel(null), "no clip");
});

Deno.test("ablationRecord: final loss, divergence as +∞, tokens, median step time after warmup", () => {
  // Steps 0–4 take 0.5, 0.1, 0.4, 0.2, 0.3 s; warmup 2 leaves 0.4, 0.2, 0.3: median 0.3 s = 300 ms; sum 1.5 s.
  const r = ablationRecord("mlm", "t2", 2, fakeRun([3, 2.5], { seconds: [0.5, 0.1, 0.4, 0.2, 0.3], warmup: 2 }));
  assert.equal(r.finalLoss, 2.5);
  assert.equal(r.diverged, false);
  assert.equal(r.stoppedAt, null);
  assert.equal(r.tokens, 30 * 8 * 128);
  close(r.msPerStep, 300, 1e-9);
  close(r.trainSeconds, 1.5, 1e-12);
  assert.equal(r.parameters, 1000);
  // A stop on a non-finite loss is a divergence, whatever the last finite validation loss was.
  const stopped = ablationRecord("mlm", "elu-none-noclip", 1, fakeRun([3, 2.9], { stopped: 17 }));
  assert.equal(stopped.diverged, true);
  assert.equal(stopped.finalLoss, Infinity);
  assert.equal(stopped.stoppedAt, 17);
  assert.equal(stopped.where, "loss");
  assert.equal(ablationRecord("causal", "t2", 1, fakeRun([3, NaN])).finalLoss, Infinity);
  assert.ok(Number.isNaN(ablationRecord("causal", "t2", 1, fakeRun([3], { seconds: [0.1], warmup: 5 })).msPerStep));
  assert.throws(() => ablationRecord("causal", "t2", 1, fakeRun([])), /finished without a validation row/);
  assert.throws(() => ablationRecord("bidirectional" as never, "t2", 1, fakeRun([2])), RangeError);
  assert.throws(() => ablationRecord("causal", "t2", -1, fakeRun([2])), RangeError);
  assert.throws(() => ablationRecord("causal", "t2", 1, {} as never), TypeError);
});

Deno.test("AblationRuns: records by setting, id and seed; collect trains only what is missing and disposes", async () => {
  const runs = new AblationRuns();
  const calls: string[] = [];
  let disposed = 0;
  const train = (id: string, seed: number) => {
    calls.push(`${id}/${seed}`);
    return Promise.resolve(fakeRun([seed + 0.5], { dispose: () => disposed++ }));
  };
  const seen: string[] = [];
  assert.equal(await runs.collect("causal", ["t2", "all-diag", "t2"], [1, 2], train, (r) => seen.push(r.id)), 4);
  assert.deepEqual(calls, ["t2/1", "t2/2", "all-diag/1", "all-diag/2"]);
  assert.equal(await runs.collect("causal", ["t2"], [1, 2, 3], train), 1);
  assert.equal(await runs.collect("mlm", ["t2"], [1], train), 1);
  assert.deepEqual(calls.slice(4), ["t2/3", "t2/1"]);
  assert.equal(disposed, 6);
  assert.equal(seen.length, 4);
  assert.equal(runs.size, 6);
  assert.deepEqual(runs.losses("causal", "t2", [3, 1]), [3.5, 1.5]);
  assert.equal(runs.get("mlm", "t2", 1).setting, "mlm");
  assert.equal(AblationRuns.key("mlm", "t2", 1), "mlm/t2/seed1");
  assert.throws(() => runs.get("mlm", "t2", 2), /no run mlm\/t2\/seed2/);
  await assert.rejects(() => runs.collect("causal", ["t2"], [], train), TypeError);
  await assert.rejects(() => runs.collect("causal", ["t2"], [1], "no" as never), TypeError);
  // A model is disposed even when its record cannot be taken.
  await assert.rejects(() =>
    runs.collect("causal", ["x"], [9], () => Promise.resolve(fakeRun([], { dispose: () => disposed++ })))
  );
  assert.equal(disposed, 7);
});

Deno.test("summarizeConfig and summaryRows: mean ± t half-width over finished seeds, diverged apart, ranks", () => {
  const runs = runsWith("mlm", { a: [2.0, 2.2, 2.4], b: [1.0, Infinity, 1.2], c: [Infinity, Infinity, Infinity] });
  const a = summarizeConfig(runs, "mlm", "a", [1, 2, 3]);
  // mean 2.2, s = 0.2, se = 0.2/√3 = 0.1154701, half-width 4.302653 · 0.1154701 = 0.4968275
  close(a.loss!.mean, 2.2, 1e-12);
  close(a.loss!.halfWidth, 0.4968275, 1e-6);
  // Perplexities e^2, e^2.2, e^2.4 = 7.389056, 9.025013, 11.023176: mean 9.145748, squared deviations 3.085967 + 0.014577 + 3.524736 = 6.625280, s = √(6.625280/2) = 1.820066, half-width 4.521294
  close(a.ppl!.mean, 9.145748, 1e-5);
  close(a.ppl!.halfWidth, 4.521294, 1e-5);
  const b = summarizeConfig(runs, "mlm", "b", [1, 2, 3]);
  assert.deepEqual(b.diverged, [{ seed: 2, step: 5, where: "loss" }]);
  assert.deepEqual(b.losses, [1.0, Infinity, 1.2]);
  // Two finished seeds: mean 1.1, s = √0.02, half-width 12.706205 · 0.1 = 1.2706205
  close(b.loss!.halfWidth, 1.2706205, 1e-6);
  const c = summarizeConfig(runs, "mlm", "c", [1, 2, 3]);
  assert.equal(c.loss, null);
  assert.equal(c.ppl, null);
  const entries = ["a", "b", "c"].map((id) => ({
    table: "8/9" as const,
    setting: "mlm" as const,
    id,
    arm: id.toUpperCase(),
    clip: null,
    paper: null,
  }));
  const rows = summaryRows(runs, entries, [1, 2, 3]);
  assert.deepEqual(rows.map((r) => r.rank), [2, 1, 3]);
  assert.equal(rows[0]["valid loss, nats (mean ± 95% CI)"], "2.2 ± 0.5");
  assert.equal(rows[1]["valid loss, nats (mean ± 95% CI)"], "1.1 ± 1.3");
  assert.equal(rows[2]["valid loss, nats (mean ± 95% CI)"], "—");
  assert.equal(rows[1]["diverged seeds"], "seed 2 at update 5");
  assert.equal(rows[1]["finished seeds"], "2 of 3");
  assert.equal(rows[0]["diverged seeds"], "none");
  assert.equal(rows[0]["paper PPL"], null);
});

Deno.test("curveRows and seedRows: spread over seeds per step, per-seed final losses with diverged seeds as null", () => {
  const runs = new AblationRuns();
  runs.add(ablationRecord("causal", "t2", 1, fakeRun([3, 2])));
  runs.add(ablationRecord("causal", "t2", 2, fakeRun([5, 4])));
  runs.add(ablationRecord("causal", "t2", 3, fakeRun([4], { stopped: 15 })));
  const entry = { table: "11" as const, setting: "causal" as const, id: "t2", arm: "block 64", clip: 1, paper: null };
  // Step 10: 3, 5, 4 → mean 4, min 3, max 5; step 20: 2 and 4 (seed 3 stopped) → mean 3 over 2 seeds.
  assert.deepEqual(curveRows(runs, [entry], [1, 2, 3]).map((r) => [r.step, r.loss, r.low, r.high, r.seeds]), [
    [10, 4, 3, 5, 3],
    [20, 3, 2, 4, 2],
  ]);
  const rows = seedRows(runs, [entry], [1, 2, 3]);
  assert.deepEqual(rows.map((r) => r.loss), [2, 4, null]);
  // Finished final losses 2 and 4: mean 3, s = √2, half-width 12.706205 · √2/√2 = 12.706205.
  assert.equal(rows[0].mean, 3);
  close(rows[0].low!, 3 - 12.706205, 1e-5);
  close(rows[2].high!, 3 + 12.706205, 1e-5);
  // One finished seed: the interval collapses onto the mean; none: null.
  runs.add(ablationRecord("causal", "x", 1, fakeRun([1.5])));
  runs.add(ablationRecord("causal", "x", 2, fakeRun([1], { stopped: 2 })));
  const one = seedRows(runs, [{ ...entry, id: "x" }], [1, 2]);
  assert.deepEqual(one.map((r) => [r.loss, r.mean, r.low, r.high]), [[1.5, 1.5, 1.5, 1.5], [null, 1.5, 1.5, 1.5]]);
  const none = seedRows(runs, [{ ...entry, id: "x" }], [2]);
  assert.deepEqual([none[0].mean, none[0].low, none[0].high], [null, null, null]);
  assert.ok(rows.every((r) => r.diverged === 1 && r.clipping === "clip 1"));
});

Deno.test("compareLosses: paired t interval of other − base when every run finished", () => {
  // Differences 0.2, 0.3, 0.1: mean 0.2, s = 0.1, half-width 4.302653 · 0.1/√3 = 0.2484138.
  const noisy = compareLosses([2, 2, 2], [2.2, 2.3, 2.1], { direction: "greater", margin: 0.01 });
  close(noisy.interval!.low, 0.2 - 0.2484138, 1e-6);
  close(noisy.interval!.high, 0.2 + 0.2484138, 1e-6);
  assert.equal(noisy.interval!.method, "paired t");
  assert.deepEqual([noisy.verdict.outcome, noisy.verdict.reason], ["inconclusive", "within noise"]);
  assert.equal(noisy.divergence, null);
  assert.ok(noisy.verdict.rule.endsWith(DIVERGENCE_RULE));
  assert.ok(noisy.verdict.rule.startsWith("reproduced if the 95% paired t interval"));
  // Seeds move both arms alike: differences 0.5, 0.51, 0.49 (mean 0.5, half-width 0.0248) clear the margin.
  const clear = compareLosses([2, 2.1, 2.2], [2.5, 2.61, 2.69], { direction: "greater", margin: 0.01 });
  assert.equal(clear.verdict.outcome, "reproduced");
  close(clear.interval!.halfWidth, T_975_2 * 0.01 / Math.sqrt(3), 1e-6);
  const opposite = compareLosses([2.5, 2.61, 2.69], [2, 2.1, 2.2], { direction: "greater", margin: 0.01 });
  assert.deepEqual([opposite.verdict.outcome, opposite.verdict.reason], ["not reproduced", "opposite effect"]);
  // Non-inferiority: other − base below +0.01; differences −0.005, −0.004, −0.006 lie wholly below it.
  const noWorse = compareLosses([2, 2, 2], [1.995, 1.996, 1.994], { direction: "less", null: 0.01 });
  assert.equal(noWorse.verdict.outcome, "reproduced");
  assert.equal(
    describeComparison(noisy),
    "Δ loss (nats) 0.200 [-0.0484, 0.448] (95% paired t, n = 3); PPL ×1.22 [×0.953, ×1.57]",
  );
  assert.throws(() => compareLosses([2, 2], [2, 2, 2], { direction: "greater" }), RangeError);
  assert.throws(() => compareLosses([], [], { direction: "greater" }), TypeError);
  assert.throws(() => compareLosses([2, "2"] as never, [2, 2], { direction: "greater" }), TypeError);
});

Deno.test("compareLosses: the divergence rule decides when runs diverged", () => {
  const all = compareLosses([2, 2, 2], [Infinity, Infinity, Infinity], { direction: "greater", margin: Math.LN2 });
  assert.equal(all.verdict.outcome, "reproduced");
  assert.equal(all.interval, null);
  assert.deepEqual(all.differences, [Infinity, Infinity, Infinity]);
  assert.equal(all.divergence, "3 of 3 seeds diverged in the compared arm, 0 of 3 in the reference");
  // The reference diverging in every seed is the opposite effect.
  const reverse = compareLosses([Infinity, Infinity, Infinity], [2, 2, 2], { direction: "greater" });
  assert.deepEqual([reverse.verdict.outcome, reverse.verdict.reason], ["not reproduced", "opposite effect"]);
  // "less" (e.g. no worse than the reference): the compared arm diverging everywhere refutes it.
  const less = compareLosses([2, 2, 2], [Infinity, Infinity, Infinity], { direction: "less", null: 0.01 });
  assert.deepEqual([less.verdict.outcome, less.verdict.reason], ["not reproduced", "opposite effect"]);
  const twoSided = compareLosses([2, 2, 2], [Infinity, Infinity, Infinity], { direction: "two-sided", margin: 0.1 });
  assert.deepEqual([twoSided.verdict.outcome, twoSided.verdict.reason], ["not reproduced", "confident difference"]);
  const mixed = compareLosses([2, 2, 2], [Infinity, 2.5, Infinity], { direction: "greater" });
  assert.deepEqual([mixed.verdict.outcome, mixed.verdict.reason], ["inconclusive", "mixed divergence"]);
  assert.equal(
    describeComparison(mixed),
    "Δ loss per seed ∞, 0.500, ∞ nats (2 of 3 seeds diverged in the compared arm, 0 of 3 in the reference)",
  );
  // Both diverged in a seed: ∞ − ∞ is undetermined.
  const both = compareLosses([Infinity, 2, 2], [Infinity, Infinity, Infinity], { direction: "greater" });
  assert.ok(Number.isNaN(both.differences[0]));
  assert.equal(both.verdict.reason, "mixed divergence");
  const few = compareLosses([2, 2], [Infinity, Infinity], { direction: "greater" });
  assert.equal(few.verdict.reason, "underpowered");
  // Per-seed contrasts go through the same rule: (∞ − 2) − (2.1 − 2) = ∞.
  const did = compareLosses([0.1, 0.1, 0.2], [Infinity - 2, Infinity - 2, Infinity - 2], { direction: "greater" });
  assert.equal(did.verdict.outcome, "reproduced");
});

Deno.test("allOf, contextLimited: every part must hold; a context-limited claim counts only confident effects", () => {
  const yes = verdict(tInterval([0.5, 0.6, 0.55]), { direction: "greater" });
  const noisy = verdict(tInterval([0.5, -0.4, 0.1]), { direction: "greater" });
  const no = verdict(tInterval([-0.5, -0.6, -0.55]), { direction: "greater" });
  assert.equal(allOf([{ label: "A", verdict: yes }, { label: "B", verdict: yes }]).outcome, "reproduced");
  const open = allOf([{ label: "A", verdict: yes }, { label: "B", verdict: noisy }]);
  assert.deepEqual([open.outcome, open.reason], ["inconclusive", "within noise"]);
  const failed = allOf([{ label: "A", verdict: noisy }, { label: "B", verdict: no }]);
  assert.deepEqual([failed.outcome, failed.reason], ["not reproduced", "B: opposite effect"]);
  assert.match(failed.rule, /^reproduced only if every part is.*A: reproduced if .* \| B: reproduced if /);
  assert.throws(() => allOf([]), TypeError);

  const why = "at n = 128 block 128 is the whole context";
  const absent = verdict(tInterval([0.001, 0.002, 0.0015]), { direction: "greater", margin: 0.01 });
  assert.equal(absent.reason, "confident absence");
  const limited = contextLimited(absent, why);
  assert.deepEqual([limited.outcome, limited.reason], ["inconclusive", "not comparable"]);
  assert.deepEqual(limited.interval, absent.interval);
  assert.ok(limited.rule.startsWith(absent.rule) && limited.rule.includes(why));
  assert.equal(contextLimited(noisy, why).reason, "not comparable");
  assert.equal(contextLimited(yes, why).outcome, "reproduced");
  assert.equal(contextLimited(no, why).reason, "opposite effect");
  const few = verdict(tInterval([0.5, 0.6]), { direction: "greater" });
  assert.equal(contextLimited(few, why).reason, "underpowered");
  assert.throws(() => contextLimited(yes, ""), TypeError);
});

Deno.test("seedsToSettle: the fewest seeds whose t interval clears the nearest threshold at the same spread", () => {
  // sd = se·√n = 1; distance |1.5 − (0 + 0.5)| = 1: t(0.975, 5)/√6 = 1.0494 > 1 and t(0.975, 6)/√7 = 0.9248 < 1.
  const iv = { estimate: 1.5, se: 1 / Math.sqrt(3), n: 3, level: 0.95 };
  assert.equal(seedsToSettle(iv, { direction: "greater", margin: 0.5 }), 7);
  // "less" with null 2.5: threshold 2.5, distance 1 again.
  assert.equal(seedsToSettle(iv, { direction: "less", null: 2.5 }), 7);
  // Two-sided band [1, 3] around 2: the nearer edge 1 is 0.5 away; needs t(0.975, k−1)/√k < 0.5 (k = 18:
  // 2.109816/√18 = 0.4973 < 0.5; k = 17: 2.119905/√17 = 0.5141 > 0.5).
  assert.equal(seedsToSettle(iv, { direction: "two-sided", null: 2, margin: 1 }), 18);
  assert.equal(seedsToSettle({ ...iv, estimate: 0.5 }, { direction: "greater", margin: 0.5 }), null);
  assert.equal(seedsToSettle({ ...iv, se: NaN }, { direction: "greater" }), null);
  assert.equal(seedsToSettle({ ...iv, se: 0 }, { direction: "greater" }), 3);
  assert.equal(seedsToSettle({ ...iv, estimate: 0.5001 }, { direction: "greater", margin: 0.5 }, { max: 50 }), null);
});

Deno.test("diagBlockTimers: forward + backward per block size, FLOPs 2·bh·N·B·(dk + dv), no leaked tensors", () => {
  const start = tf.memory().numTensors;
  const timers = diagBlockTimers([16, 128], { n: 128, heads: 2, dk: 8 });
  // 2 · (1·2) · 128 · 16 · (8 + 8) = 131072 forward; forward + backward is 3×; block 128 is 8× more.
  assert.equal(timers.flops.block16.fwd, 131072);
  assert.equal(timers.flops.block16.fwdBwd, 3 * 131072);
  assert.equal(timers.flops.block128.fwd / timers.flops.block16.fwd, 8);
  const grads = timers.fns.block128();
  assert.deepEqual(grads.map((g) => g.shape), [[1, 2, 128, 8], [1, 2, 128, 8], [1, 2, 128, 8]]);
  // A block covering all 128 tokens is causal softmax attention: the same gradients through the same seeded input.
  const qkv = seededQKV({ b: 1, h: 2, n: 128, dk: 8, dv: 8, seed: 0 });
  tf.dispose(grads);
  timers.dispose();
  const reference = tf.tidy(() => {
    const cot = seededQKV({ b: 1, h: 2, n: 128, dk: 8, dv: 8, seed: 3 }).q;
    return outputAndGrads((x) => variants.softmax.attend(x, { causal: true }), qkv, cot).grads;
  });
  const again = diagBlockTimers([128], { n: 128, heads: 2, dk: 8 });
  const diagGrads = again.fns.block128();
  diagGrads.forEach((g, i) => assertClose(g, reference[i], `gradient ${i}`, { atol: 1e-5, rtol: 1e-4 }));
  tf.dispose([...diagGrads, ...reference, qkv.q, qkv.k, qkv.v]);
  again.dispose();
  assert.equal(tf.memory().numTensors, start);
  assert.throws(() => diagBlockTimers([], { n: 8 }), TypeError);
  assert.throws(() => diagBlockTimers([0], { n: 8 }), RangeError);
});
