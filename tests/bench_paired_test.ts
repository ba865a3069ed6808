/**
 * lib/bench/paired.ts (`deno task bench --paired`): rows and verdicts from hand-worked times, the run against a twin
 * of known times (order of the rounds, the kept thread count, softmax's memory plan, no leaked tensors), the flags,
 * and the real PyTorch twin's attention timer.
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type AttentionTwin,
  formatPairedTable,
  pairedBenchRow,
  type PairedBenchRowInput,
  pairedVerdict,
  runPairedBench,
} from "../lib/bench/paired.ts";
import { flopCount } from "../lib/bench/flops.ts";
import { TorchTwin, TWIN_PYTHON, type TwinAttentionSpec } from "../lib/bench/torch_twin.ts";
import { probeTorch } from "../lib/bench/torch.ts";
import { parseCsv } from "../lib/report/csv.ts";
import { pairedFlags } from "../lib/tasks/bench.ts";
import { FAKE_TWIN_INFO as INFO, requireTorch, runBenchTask } from "./helpers.ts";

// The test task installs PyTorch (setup's torchTests): without it these tests fail, naming the fix, rather than skip.
const TORCH = await probeTorch(TWIN_PYTHON);

function input(overrides: Partial<PairedBenchRowInput> = {}): PairedBenchRowInput {
  return {
    variant: "linear",
    causal: true,
    n: 2048,
    batch: 1,
    heads: 8,
    d: 64,
    backend: "blas",
    device: "cpu",
    flopsFwdBwd: 3e9,
    peakGflops: 150,
    attnlabMs: [[10, 12, 11], [20, 22, 21], [40, 44, 42]],
    torch: {
      status: "ok",
      note: "",
      msByThreads: new Map([[1, [[30], [60], [120]]], [2, [[22], [44], [88]]]]),
    },
    ...overrides,
  };
}

Deno.test("pairedBenchRow: medians, GFLOP/s, the fastest thread count and the paired ratio, by hand", () => {
  const row = pairedBenchRow(input());
  // attnlab's runs: median of all nine is 21; 3 GFLOP in 21 ms is 142.857 GFLOP/s.
  assert.equal(row.attnlab_ms, 21);
  assert.ok(Math.abs(row.attnlab_gflops! - 3e9 / 21 / 1e6) < 1e-9);
  assert.ok(Math.abs(row.attnlab_share_of_peak! - 3e9 / 21 / 1e6 / 150) < 1e-12);
  // Two threads are faster (median 44 against 60): their rounds are kept.
  assert.equal(row.torch_threads, 2);
  assert.equal(row.torch_ms, 44);
  // Round medians 11, 21, 42 against 22, 44, 88: ln ratios ln(1/2), ln(21/44), ln(42/88).
  const logs = [11 / 22, 21 / 44, 42 / 88].map(Math.log);
  const mean = logs.reduce((a, b) => a + b) / 3;
  assert.ok(Math.abs(row.ratio! - Math.exp(mean)) < 1e-12);
  // The 95% t interval on the log scale with 2 degrees of freedom (t = 4.302653).
  const sd = Math.sqrt(logs.reduce((a, x) => a + (x - mean) ** 2, 0) / 2);
  const half = 4.302652729911275 * sd / Math.sqrt(3);
  assert.ok(Math.abs(row.ratio_low! - Math.exp(mean - half)) < 1e-9);
  assert.ok(Math.abs(row.ratio_high! - Math.exp(mean + half)) < 1e-9);
  assert.equal(row.verdict, "faster");
  assert.equal(row.rounds, 3);
  assert.equal(row.repeats, 3);
  assert.equal(row.gflop_fwd_bwd, 3);
});

Deno.test("pairedBenchRow: no PyTorch columns unless its status is ok; bad times are errors naming them", () => {
  const off = pairedBenchRow(input({ torch: { status: "off", note: "--no-torch", msByThreads: null } }));
  assert.deepEqual([off.torch_ms, off.torch_threads, off.ratio, off.verdict, off.torch_note], [
    null,
    null,
    null,
    "",
    "--no-torch",
  ]);
  assert.throws(
    () => pairedBenchRow(input({ torch: { status: "ok", note: "", msByThreads: null } })),
    (e) => e instanceof TypeError && /msByThreads must hold PyTorch's times/.test(e.message),
  );
  assert.throws(
    () => pairedBenchRow(input({ torch: { status: "ok", note: "", msByThreads: new Map([[1, [[5], [6]]]]) } })),
    (e) => e instanceof RangeError && /has 2 rounds, attnlabMs 3: they pair by round/.test(e.message),
  );
  assert.throws(() => pairedBenchRow(input({ attnlabMs: [] })), /input.attnlabMs must be a non-empty array/);
  assert.throws(() => pairedBenchRow(input({ attnlabMs: [[1], [NaN], [2]] })), /input.attnlabMs\[1\]/);
  assert.throws(() => pairedBenchRow(input({ flopsFwdBwd: 0 })), /input.flopsFwdBwd must be a number > 0/);
});

Deno.test("pairedVerdict: one side of 1 or the other only when the whole interval is", () => {
  assert.equal(pairedVerdict(0.5, 0.999), "faster");
  assert.equal(pairedVerdict(0.5, 1), "within noise");
  assert.equal(pairedVerdict(1, 1.5), "within noise");
  assert.equal(pairedVerdict(1.001, 1.5), "slower");
  assert.equal(pairedVerdict(null, null), "within noise");
  assert.equal(pairedVerdict(NaN, NaN), "within noise");
});

/** A twin whose runs take `ms(threads, call)`; it records every call. */
function fakeTwin(ms: (threads: number, call: number) => number, options: { threads?: boolean } = {}) {
  const calls: { op: string; threads: number; spec?: TwinAttentionSpec; repeats?: number }[] = [];
  let threads = 1;
  let call = 0;
  const twin: AttentionTwin = {
    info: INFO,
    timeAttention(spec, o) {
      calls.push({ op: "time", threads, spec, repeats: o.repeats });
      const c = call++;
      return Promise.resolve(Array.from({ length: o.repeats }, () => ms(threads, c)));
    },
    close() {
      calls.push({ op: "close", threads });
      return Promise.resolve();
    },
  };
  if (options.threads !== false) {
    twin.setThreads = (t) => {
      threads = t;
      calls.push({ op: "threads", threads: t });
      return Promise.resolve(t);
    };
  }
  return { twin, calls };
}

Deno.test("runPairedBench: rounds alternate, PyTorch at every count, the fastest count kept; no tensor leaks", async () => {
  const before = tf.memory().numTensors;
  // Two threads take 50 ms, one 80: the row keeps two threads' rounds, whose runs are all 50 ms.
  const { twin, calls } = fakeTwin((threads) => (threads === 2 ? 50 : 80));
  const lines: string[] = [];
  const result = await runPairedBench({
    variants: ["linear", "norm"],
    lengths: [33],
    heads: 2,
    d: 8,
    rounds: 3,
    repeats: 2,
    twin,
    threads: 2,
    sgemmSize: 64,
    onProgress: (line) => lines.push(line),
  });
  assert.equal(tf.memory().numTensors, before);
  assert.equal(result.torch.status, "ok");
  assert.deepEqual(result.rows.map((r) => r.variant), ["linear", "norm"]);
  // Per variant: round 1 times 1 then 2 threads, round 2 the other way round, round 3 as round 1.
  const threadOrder = calls.filter((c) => c.op === "threads").map((c) => c.threads);
  assert.deepEqual(threadOrder, [1, 2, 2, 1, 1, 2, 1, 2, 2, 1, 1, 2]);
  // A twin given by the caller is not closed here.
  assert.equal(calls.filter((c) => c.op === "close").length, 0);
  const spec = calls.find((c) => c.op === "time")!.spec!;
  assert.deepEqual(spec, { variant: "linear", n: 33, batch: 1, heads: 2, d: 8, causal: true, queryBlockSize: null });
  assert.ok(calls.filter((c) => c.op === "time").every((c) => c.repeats === 2));
  for (const [i, row] of result.rows.entries()) {
    const sample = result.samples[i];
    assert.equal(row.torch_threads, 2);
    assert.equal(row.torch_ms, 50);
    assert.deepEqual(sample.torchMs, [[50, 50], [50, 50], [50, 50]]);
    assert.equal(sample.attnlabMs.length, 3);
    assert.ok(sample.attnlabMs.every((r) => r.length === 2 && r.every((t) => t > 0)));
    // The ratio: the geometric mean over rounds of attnlab's round median over 50.
    const logs = sample.attnlabMs.map(([a, b]) => Math.log((a + b) / 2 / 50));
    const expected = Math.exp(logs.reduce((a, b) => a + b) / 3);
    assert.ok(Math.abs(row.ratio! - expected) < 1e-9 * expected, `${row.ratio} vs ${expected}`);
    assert.ok(row.ratio_low! <= row.ratio! && row.ratio! <= row.ratio_high!);
    // GFLOP/s from the counted FLOPs of the same computation.
    const flops = flopCount(row.variant as "linear", { batch: 1, heads: 2, n: 33, dk: 8, causal: true }).fwdBwd;
    assert.ok(Math.abs(row.torch_gflops! - flops / 50 / 1e6) < 1e-9);
  }
  assert.ok(lines.some((l) => /linear n 33: round 3\/3: attnlab .* ms, torch 1t 80\.0 ms, torch 2t 50\.0 ms/.test(l)));
  assert.match(formatPairedTable(result.rows), /^linear\s+33\s/m);
});

Deno.test("runPairedBench: softmax follows the memory plan on both sides; a twin without setThreads", async () => {
  const { twin, calls } = fakeTwin(() => 40, { threads: false });
  // n = 256 with 2 heads holds 2 · 256² · 4 · 10 bytes of n × n buffers: a budget of a quarter runs query blocks.
  const whole = 2 * 256 * 256 * 4 * 10;
  const blocked = await runPairedBench({
    variants: ["softmax"],
    lengths: [256],
    heads: 2,
    d: 8,
    rounds: 2,
    repeats: 1,
    twin,
    memoryBudgetBytes: whole / 4,
    sgemmSize: 64,
  });
  const [row] = blocked.rows;
  const spec = calls.find((c) => c.op === "time")!.spec!;
  assert.equal(spec.queryBlockSize, 64);
  assert.equal(row.note, "query blocks of 64");
  assert.equal(row.torch_threads, null); // the twin's own count: it could not be changed
  assert.deepEqual(blocked.samples[0].torchMs, [[40], [40]]);
  assert.equal(calls.filter((c) => c.op === "threads").length, 0);
  // A budget below one block of 64 rows skips the row on both sides, saying why.
  const skipped = await runPairedBench({
    variants: ["softmax"],
    lengths: [256],
    heads: 2,
    d: 8,
    rounds: 2,
    repeats: 1,
    twin,
    memoryBudgetBytes: 1000,
    sgemmSize: 64,
  });
  assert.equal(skipped.rows[0].status, "skipped (memory)");
  assert.match(skipped.rows[0].note, /n×n buffers ≈ .* GiB > budget/);
  assert.equal(skipped.rows[0].ratio, null);
});

Deno.test("runPairedBench: PyTorch on the reference BLAS is not timed; a failing twin marks its row", async () => {
  const { twin, calls } = fakeTwin(() => 40);
  twin.info = { ...INFO, blas: "blas (reference)", blasOptimised: false };
  const reference = await runPairedBench({
    variants: ["diag"],
    lengths: [16],
    heads: 1,
    d: 4,
    rounds: 2,
    repeats: 1,
    twin,
    sgemmSize: 64,
  });
  assert.equal(reference.rows[0].torch_status, "reference BLAS");
  assert.match(reference.rows[0].torch_note, /apt-get install libopenblas0/);
  assert.equal(calls.filter((c) => c.op === "time").length, 0);
  const broken = fakeTwin(() => 40).twin;
  broken.timeAttention = () => Promise.reject(new Error("twin broke\nsecond line"));
  const failed = await runPairedBench({
    variants: ["diag"],
    lengths: [16],
    heads: 1,
    d: 4,
    rounds: 2,
    repeats: 1,
    twin: broken,
    sgemmSize: 64,
  });
  assert.deepEqual([failed.rows[0].torch_status, failed.rows[0].torch_note], ["failed", "twin broke"]);
  assert.equal(failed.rows[0].ratio, null);
  assert.equal(failed.rows[0].attnlab_ms! > 0, true);
});

Deno.test("runPairedBench: bad options are typed errors naming them", async () => {
  await assert.rejects(runPairedBench({ variants: ["fast" as "linear"] }), /options.variants: unknown variant "fast"/);
  await assert.rejects(runPairedBench({ lengths: [0] }), /options.lengths\[0\] must be a positive integer/);
  await assert.rejects(runPairedBench({ rounds: 1.5 }), /options.rounds must be a positive integer/);
  // deno-lint-ignore no-explicit-any
  await assert.rejects(runPairedBench({ bogus: 1 } as any), /unknown option "bogus"/);
  const { twin } = fakeTwin(() => 1);
  await assert.rejects(runPairedBench({ twin, torch: false }), /options.twin is given but options.torch is false/);
});

Deno.test("pairedFlags: defaults, quick, lists and the flags that do not apply", () => {
  const full = pairedFlags(["--paired"]);
  assert.deepEqual([full.variants.length, full.lengths, full.rounds, full.repeats, full.torch], [
    8,
    [2048],
    8,
    3,
    true,
  ]);
  assert.ok(full.out.endsWith("bench_paired.csv"));
  const quick = pairedFlags(["--paired", "--quick", "--no-torch", "--variants", "local", "--out", "x.csv"]);
  assert.deepEqual([quick.variants, quick.lengths, quick.rounds, quick.repeats, quick.torch], [
    ["local"],
    [256],
    2,
    1,
    false,
  ]);
  assert.ok(quick.out.endsWith("x.csv"));
  assert.deepEqual(pairedFlags(["--paired", "--lengths", "512,1024,512", "--rounds", "4"]).lengths, [512, 1024]);
  assert.throws(() => pairedFlags(["--paired", "--backends", "cpu"]), /--backends does not apply to --paired/);
  assert.throws(() => pairedFlags(["--paired", "--train"]), /--train does not apply to --paired/);
  assert.throws(() => pairedFlags(["--paired", "--lengths", "0"]), /--lengths must be a positive integer/);
  assert.throws(() => pairedFlags(["--lengths", "64"]), /pairedFlags: give --paired/);
});

Deno.test("deno task bench --paired --quick --no-torch writes the CSV; --lengths without --paired is an error", async () => {
  const dir = await Deno.makeTempDir();
  const csv = join(dir, "bench_paired.csv");
  const run = await runBenchTask(["--paired", "--quick", "--no-torch", "--variants", "linear,diag", "--out", csv]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /round 2\/2/);
  const [columns, ...lines] = parseCsv(await Deno.readTextFile(csv));
  const rows = lines.map((line) => Object.fromEntries(line.map((cell, i) => [columns[i], cell])));
  assert.deepEqual(rows.map((r) => [r.variant, r.n, r.rounds, r.torch_status, r.ratio]), [
    ["linear", "256", "2", "off", ""],
    ["diag", "256", "2", "off", ""],
  ]);
  for (const r of rows) {
    const expected = Number(r.gflop_fwd_bwd) * 1000 / Number(r.attnlab_ms);
    assert.ok(Math.abs(Number(r.attnlab_gflops) / expected - 1) < 1e-3, `${r.attnlab_gflops} vs ${expected}`);
  }
  const bad = await runBenchTask(["--lengths", "512"]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--lengths needs --paired/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test({
  name: "TorchTwin.timeAttention: the real twin times repeats runs at each thread count; bad specs are errors",
  fn: async () => {
    requireTorch(TORCH);
    const twin = await TorchTwin.start({ threads: 1 });
    try {
      const spec = { variant: "local", n: 65, batch: 1, heads: 2, d: 8, causal: true };
      const ms = await twin.timeAttention(spec, { repeats: 3 });
      assert.equal(ms.length, 3);
      assert.ok(ms.every((t) => t > 0 && Number.isFinite(t)));
      assert.equal(await twin.setThreads(2), 2);
      assert.equal(
        (await twin.timeAttention({ ...spec, variant: "softmax", queryBlockSize: 32 }, { repeats: 1 })).length,
        1,
      );
      await assert.rejects(
        twin.timeAttention({ ...spec, variant: "nope" }, { repeats: 1 }),
        /torch_attention.py has no twin of variant 'nope'/,
      );
      await assert.rejects(twin.timeAttention({ ...spec, n: 0 }, { repeats: 1 }), /spec.n must be/);
      await assert.rejects(twin.timeAttention(spec, { repeats: 0 }), /option repeats must be/);
      // deno-lint-ignore no-explicit-any
      await assert.rejects(twin.timeAttention({ ...spec, extra: 1 } as any, { repeats: 1 }), /unknown option "extra"/);
    } finally {
      await twin.close();
    }
  },
});
