/**
 * lib/bench/train_bench.ts and `deno task bench --train`: the row arithmetic (medians, tokens/s, GFLOP/s, shares,
 * the paired ratio and its interval) against values worked out by hand, the benchmark with a stand-in twin of known
 * times, PyTorch's statuses, bad options, and the CLI writing its CSV. Speed is never asserted.
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { parseCsv } from "../lib/report/csv.ts";
import { join } from "node:path";
import { probeTorch } from "../lib/bench/torch.ts";
import { TWIN_PYTHON, type TwinInfo, type TwinStepTimes } from "../lib/bench/torch_twin.ts";
import {
  formatTrainBenchTable,
  runTrainBench,
  TRAIN_BENCH_CONFIGS,
  trainBenchModel,
  trainBenchRow,
  type TrainBenchRowInput,
  type TwinLike,
} from "../lib/bench/train_bench.ts";
import { modelFlops, STEP_ADAM } from "../lib/bench/train_step.ts";
import type { LmBatch } from "../lib/data/types.ts";
import { toCsv } from "../lib/figures/csv.ts";
import type { ModelConfig } from "../lib/models/config.ts";
import { trainFlags } from "../lib/tasks/bench.ts";
import { FAKE_TWIN_INFO as INFO, requireTorch, runBenchTask } from "./helpers.ts";

// The test task installs PyTorch (setup's torchTests): without it these tests fail, naming the fix, rather than skip.
const TORCH = await probeTorch(TWIN_PYTHON);

function input(overrides: Partial<TrainBenchRowInput> = {}): TrainBenchRowInput {
  return {
    config: "small",
    spec: TRAIN_BENCH_CONFIGS.small,
    preset: "vanilla",
    parameters: 1000,
    backend: "blas",
    device: "Intel(R) Xeon(R) Processor, 2 logical cores",
    flopsStep: 46e9,
    peakGflops: 250,
    attnlabMs: [[200, 220], [240, 260]],
    attnlabPeakBytes: 3e8,
    torch: { status: "ok", note: "", info: INFO, ms: [[100, 110], [120, 130]], peakBytes: 5e7, peakMethod: "profiler" },
    ...overrides,
  };
}

Deno.test("trainBenchRow: medians, spreads, tokens/s, GFLOP/s and shares from hand-computed values", () => {
  const row = trainBenchRow(input());
  // Every timed step: attnlab 200, 220, 240, 260 (median 230), PyTorch 100 … 130 (median 115).
  assert.equal(row.attnlab_ms, 230);
  assert.equal(row.attnlab_ms_min, 200);
  assert.equal(row.attnlab_ms_max, 260);
  assert.equal(row.torch_ms, 115);
  assert.deepEqual([row.torch_ms_min, row.torch_ms_max], [100, 130]);
  // GFLOP/s = FLOPs / ms / 1e6: 46e9 FLOPs in 230 ms is 200 GFLOP/s, 80% of a 250 GFLOP/s peak; in 115 ms, 400.
  assert.ok(Math.abs(row.attnlab_gflops - 200) < 1e-9);
  assert.ok(Math.abs(row.attnlab_share_of_peak - 0.8) < 1e-12);
  assert.ok(Math.abs(row.torch_gflops! - 400) < 1e-9);
  assert.ok(Math.abs(row.torch_share_of_peak! - 1.6) < 1e-12);
  // 16 × 128 tokens per step.
  assert.ok(Math.abs(row.attnlab_tokens_per_s - 2048 / 0.23) < 1e-6);
  assert.ok(Math.abs(row.torch_tokens_per_s! - 2048 / 0.115) < 1e-6);
  assert.equal(row.gflop_step, 46);
  assert.deepEqual([row.rounds, row.steps_per_round], [2, 2]);
  assert.deepEqual([row.attnlab_peak_mb, row.torch_peak_mb, row.torch_peak_method], [300, 50, "profiler"]);
  assert.deepEqual([row.torch_sgemm_gflops, row.torch_threads, row.torch_blas], [100, 2, "openblas"]);
  // Round medians 210, 250 against 105, 125: exactly twice in both rounds, so the interval is the point 2.
  assert.ok(Math.abs(row.ratio! - 2) < 1e-12);
  assert.ok(Math.abs(row.ratio_low! - 2) < 1e-12 && Math.abs(row.ratio_high! - 2) < 1e-12);
});

Deno.test("trainBenchRow: the ratio is paired over rounds on the log scale, its interval a t interval", () => {
  // Round ratios 3 and 2: the estimate is their geometric mean √6; the paired t interval on ln has n = 2 (1 df),
  // mean ln √6 and standard error |ln 3 − ln 2| / 2; t with 1 df is Cauchy: its 0.975 quantile is tan(0.475π).
  const row = trainBenchRow(input({
    attnlabMs: [[300], [200]],
    torch: { status: "ok", note: "", info: INFO, ms: [[100], [100]], peakBytes: null },
  }));
  const half = Math.tan(0.475 * Math.PI) * Math.abs(Math.log(3) - Math.log(2)) / 2;
  assert.ok(Math.abs(row.ratio! - Math.sqrt(6)) < 1e-12);
  assert.ok(Math.abs(row.ratio_low! - Math.sqrt(6) * Math.exp(-half)) < 1e-9);
  assert.ok(Math.abs(row.ratio_high! - Math.sqrt(6) * Math.exp(half)) < 1e-9);
  assert.equal(row.torch_peak_mb, null);
  // One round: an estimate, no interval.
  const one = trainBenchRow(input({
    attnlabMs: [[300]],
    torch: { status: "ok", note: "", info: INFO, ms: [[120]], peakBytes: null },
  }));
  assert.ok(Math.abs(one.ratio! - 2.5) < 1e-12);
  assert.deepEqual([one.ratio_low, one.ratio_high], [null, null]);
});

Deno.test("trainBenchRow: no ratio and no PyTorch columns unless PyTorch's status is ok", () => {
  for (const status of ["off", "unavailable", "reference BLAS", "failed"] as const) {
    const row = trainBenchRow(input({
      torch: { status, note: `why ${status}`, info: INFO, ms: [[100, 110], [120, 130]], peakBytes: 5e7 },
    }));
    assert.equal(row.torch_status, status);
    assert.equal(row.torch_note, `why ${status}`);
    for (const column of ["torch_ms", "torch_gflops", "torch_peak_mb", "ratio", "ratio_low", "ratio_high"]) {
      assert.equal(row[column], null, `${status}: ${column}`);
    }
    assert.equal(row.attnlab_ms, 230);
  }
});

Deno.test("trainBenchRow: bad times are errors naming them", () => {
  assert.throws(
    () => trainBenchRow(input({ attnlabMs: [] })),
    (e: Error) => e instanceof TypeError && /attnlabMs/.test(e.message),
  );
  assert.throws(
    () => trainBenchRow(input({ attnlabMs: [[200, -1]] })),
    (e: Error) => e instanceof RangeError && /attnlabMs\[0\]\[1\]/.test(e.message),
  );
  assert.throws(
    () => trainBenchRow(input({ torch: { status: "ok", note: "", info: INFO, ms: [[100]], peakBytes: null } })),
    (e: Error) => e instanceof RangeError && /pair by round/.test(e.message),
  );
  assert.throws(
    () => trainBenchRow(input({ torch: { status: "ok", note: "", info: INFO, ms: null, peakBytes: null } })),
    TypeError,
  );
  assert.throws(
    () => trainBenchRow(input({ flopsStep: 0 })),
    (e: Error) => e instanceof RangeError && /flopsStep/.test(e.message),
  );
});

Deno.test("table and CSV: the columns of a row, and the reason when there is no ratio", () => {
  const rows = [
    trainBenchRow(input()),
    trainBenchRow(input({
      preset: "linear",
      torch: { status: "reference BLAS", note: "install libopenblas0", info: INFO, ms: null, peakBytes: null },
    })),
  ];
  const table = formatTrainBenchTable(rows).split("\n");
  for (
    const column of ["config", "preset", "ms/step", "tokens/s", "GFLOP/s", "% peak", "peak MB", "× torch", "torch"]
  ) {
    assert.ok(table[0].includes(column), `table lacks ${column}`);
  }
  assert.match(table[0], /^config\s+preset\s+backend\s+device\s+ms\/step\s/);
  assert.match(
    table[1],
    /^small\s+vanilla\s+blas\s+Intel\(R\) Xeon\(R\) Processor, 2 logical cores\s+230\s+200–260\s.*\s2\.00\s+2\.00–2\.00\s+ok$/,
  );
  assert.match(table[2], /^small\s+linear\s+blas\s.*reference BLAS$/);
  assert.ok(table.includes("reference BLAS: install libopenblas0"));
  const header = toCsv(rows).split("\n")[0].split(",");
  for (
    const column of [
      "config",
      "preset",
      "backend",
      "device",
      "attnlab_ms",
      "attnlab_ms_min",
      "attnlab_ms_max",
      "attnlab_tokens_per_s",
      "attnlab_gflops",
      "attnlab_share_of_peak",
      "attnlab_peak_mb",
      "torch_status",
      "torch_ms",
      "torch_gflops",
      "torch_peak_mb",
      "ratio",
      "ratio_low",
      "ratio_high",
      "peak_gflops",
    ]
  ) assert.ok(header.includes(column), `CSV lacks ${column}`);
});

/** A twin whose steps take known times: `ms(round)` for every step of a round; calls are recorded. */
function fakeTwin(options: { ms?: (call: number) => number; info?: Partial<TwinInfo>; failAt?: number } = {}) {
  const calls: { op: string; args: unknown }[] = [];
  let timeCalls = 0;
  const twin: TwinLike = {
    info: { ...INFO, ...options.info },
    load(config: ModelConfig, o?: { weights?: Record<string, Float32Array>; adam?: object }) {
      calls.push({ op: "load", args: { config, ...o } });
      return Promise.resolve();
    },
    timeSteps(batch: LmBatch, o: { warmup: number; steps: number; memory?: boolean }): Promise<TwinStepTimes> {
      calls.push({ op: "timeSteps", args: { batch, ...o } });
      const call = timeCalls++;
      if (options.failAt === call) return Promise.reject(new Error("twin broke\nat line 2"));
      const ms = Array.from({ length: o.steps }, () => options.ms?.(call) ?? 100);
      return Promise.resolve({ ms, peakBytes: o.memory ? 4e6 : NaN, peakMethod: "profiler", losses: [] });
    },
    close() {
      calls.push({ op: "close", args: null });
      return Promise.resolve();
    },
  };
  return { twin, calls };
}

Deno.test("runTrainBench: a twin of known times gives the ratio worked out from the rounds, and leaks no tensors", async () => {
  const before = tf.memory().numTensors;
  // Call 0 is the warm-up (and memory) call; calls 1, 2, 3 are rounds 1-3 at 50, 100, 150 ms per step.
  const { twin, calls } = fakeTwin({ ms: (call) => 50 * call });
  const lines: string[] = [];
  const result = await runTrainBench({
    configs: ["small"],
    presets: ["linear"],
    rounds: 3,
    steps: 2,
    warmup: 0,
    twin,
    sgemmSize: 64,
    onProgress: (line) => lines.push(line),
  });
  assert.equal(tf.memory().numTensors, before);
  assert.equal(result.torch.status, "ok");
  const [row] = result.rows;
  const [sample] = result.samples;
  assert.deepEqual(sample.torchMs, [[50, 50], [100, 100], [150, 150]]);
  assert.equal(sample.attnlabMs.length, 3);
  assert.ok(sample.attnlabMs.every((r) => r.length === 2 && r.every((t) => t > 0)));
  // The ratio: the mean over rounds of ln(attnlab's round median / the twin's), exponentiated.
  const med = (r: number[]) => (r[0] + r[1]) / 2;
  const logs = sample.attnlabMs.map((r, i) => Math.log(med(r) / [50, 100, 150][i]));
  assert.ok(Math.abs(row.ratio! - Math.exp(logs.reduce((s, x) => s + x, 0) / 3)) < 1e-9);
  assert.ok(row.ratio_low! <= row.ratio! && row.ratio! <= row.ratio_high!);
  assert.equal(row.torch_ms, 100);
  assert.equal(row.torch_peak_mb, 4);
  // GFLOP/s from the model's counted FLOPs, on the medians.
  const { model } = trainBenchModel("small", "linear");
  const flops = modelFlops(model.config, { batch: 16, n: 128 }).step;
  model.dispose();
  assert.ok(Math.abs(row.attnlab_gflops - flops / row.attnlab_ms / 1e6) < 1e-9);
  assert.ok(Math.abs(row.torch_gflops! - flops / 100 / 1e6) < 1e-9);
  assert.equal(row.peak_gflops, result.peak.gflops);
  // The twin got the model's config and weights and the same AdamW; one memory call, then rounds without.
  const load = calls[0].args as { config: ModelConfig; weights: Record<string, Float32Array>; adam: object };
  assert.equal(calls[0].op, "load");
  assert.equal(load.config.preset, "linear");
  assert.deepEqual(load.adam, STEP_ADAM);
  assert.equal(load.weights["embed.weight"].length, 256 * 64);
  const times = calls.filter((c) => c.op === "timeSteps").map((c) => c.args as Record<string, unknown>);
  assert.deepEqual(times.map((t) => [t.warmup, t.steps, t.memory]), [[0, 1, true], [0, 2, false], [0, 2, false], [
    0,
    2,
    false,
  ]]);
  assert.equal((times[0].batch as LmBatch).inputs.length, 16 * 128);
  // A twin passed in is the caller's to close.
  assert.ok(!calls.some((c) => c.op === "close"));
  assert.ok(lines.some((l) => /small linear: round 3\/3: attnlab .* ms, torch 150\.0 ms/.test(l)));
});

Deno.test("runTrainBench: PyTorch on the reference BLAS is not timed; a failing twin marks its row", async () => {
  const slow = fakeTwin({ info: { blas: "reference", blasOptimised: false } });
  const ref = await runTrainBench({
    configs: ["small"],
    presets: ["linear"],
    rounds: 1,
    steps: 1,
    warmup: 0,
    twin: slow.twin,
    sgemmSize: 64,
  });
  assert.equal(ref.torch.status, "reference BLAS");
  assert.match(ref.rows[0].torch_note, /reference BLAS.*libopenblas0/);
  assert.equal(ref.rows[0].ratio, null);
  assert.deepEqual(slow.calls, []);
  const broken = fakeTwin({ failAt: 1 });
  const failed = await runTrainBench({
    configs: ["small"],
    presets: ["linear"],
    rounds: 2,
    steps: 1,
    warmup: 0,
    twin: broken.twin,
    sgemmSize: 64,
  });
  const [row] = failed.rows;
  assert.deepEqual([row.torch_status, row.torch_note, row.ratio], ["failed", "twin broke", null]);
  assert.equal(failed.samples[0].attnlabMs.length, 2);
  assert.equal(failed.samples[0].torchMs, null);
});

Deno.test("runTrainBench: bad options are typed errors naming them", async () => {
  const cases: [object, typeof TypeError | typeof RangeError, RegExp][] = [
    [{ round: 2 }, TypeError, /unknown option "round"/],
    [{ rounds: 0 }, RangeError, /options\.rounds/],
    [{ rounds: "2" }, TypeError, /options\.rounds/],
    [{ steps: 1.5 }, RangeError, /options\.steps/],
    [{ warmup: -1 }, RangeError, /options\.warmup/],
    [{ configs: "small" }, TypeError, /options\.configs/],
    [{ configs: ["large"] }, RangeError, /unknown name "large" in options\.configs; expected some of small, medium/],
    [{ presets: ["vanila"] }, RangeError, /options\.presets/],
    [{ torch: "no" }, TypeError, /options\.torch/],
    [{ torch: false, twin: fakeTwin().twin }, TypeError, /options\.twin/],
    [{ twin: { info: INFO } }, TypeError, /options\.twin\.load/],
    [{ onProgress: "yes" }, TypeError, /options\.onProgress/],
  ];
  for (const [options, type, message] of cases) {
    await assert.rejects(
      () => runTrainBench(options as never),
      (e: Error) => e instanceof type && message.test(e.message),
      JSON.stringify(Object.keys(options)),
    );
  }
});

Deno.test("trainBenchModel: the config's model and a batch whose targets are its inputs shifted by one", () => {
  const { model, batch, spec } = trainBenchModel("small", "transnormer-t2", { seed: 3 });
  try {
    assert.equal(spec, TRAIN_BENCH_CONFIGS.small);
    assert.deepEqual([model.config.dModel, model.config.heads, model.config.attention.length], [64, 4, 4]);
    assert.equal(model.config.preset, "transnormer-t2");
    assert.deepEqual([batch.batch, batch.length, batch.inputs.length], [16, 128, 16 * 128]);
    for (let s = 0; s < 16; s++) {
      for (let i = 0; i + 1 < 128; i++) assert.equal(batch.targets[s * 128 + i], batch.inputs[s * 128 + i + 1]);
    }
  } finally {
    model.dispose();
  }
  assert.throws(() => trainBenchModel("huge" as never, "vanilla"), RangeError);
  assert.throws(() => trainBenchModel("small", "vanila" as never), RangeError);
});

Deno.test("trainFlags: quick defaults, filters and the flags that do not apply", () => {
  const quick = trainFlags(["--train", "--quick", "--no-torch", "--out", "x.csv"]);
  assert.deepEqual(
    [quick.mode, quick.configs, quick.presets, quick.rounds, quick.steps, quick.warmup, quick.torch],
    ["train", ["small"], ["vanilla", "transnormer-t2"], 2, 1, 0, false],
  );
  assert.ok(quick.out!.endsWith("x.csv"));
  const full = trainFlags(["--train"]);
  // Rounds and steps undefined: each config's own (small 12 rounds of 4 steps, medium 5 of 1).
  assert.deepEqual([full.configs.length, full.presets.length, full.rounds, full.steps, full.torch], [
    2,
    6,
    undefined,
    undefined,
    true,
  ]);
  assert.deepEqual(
    [TRAIN_BENCH_CONFIGS.small.rounds, TRAIN_BENCH_CONFIGS.medium.rounds, TRAIN_BENCH_CONFIGS.small.steps],
    [12, 5, 4],
  );
  assert.equal(trainFlags(["--train", "--rounds", "3"]).rounds, 3);
  assert.ok(full.out!.endsWith("bench_train.csv"));
  const profile = trainFlags(["--profile", "--config", "medium", "--preset", "linear,performer"]);
  assert.deepEqual([profile.mode, profile.configs, profile.presets, profile.out], [
    "profile",
    ["medium"],
    ["linear", "performer"],
    null,
  ]);
  assert.throws(() => trainFlags(["--train", "--profile"]), /separate runs/);
  assert.throws(() => trainFlags(["--train", "--variants", "linear"]), /--variants belongs to the attention bench/);
  assert.throws(() => trainFlags(["--profile", "--rounds", "2"]), /--rounds applies to --train/);
  assert.throws(() => trainFlags(["--train", "--config", "big"]), /--config: unknown name "big"/);
  assert.throws(() => trainFlags(["--train", "--steps", "0"]), /--steps must be a positive integer/);
});

Deno.test("deno task bench --train --quick --no-torch writes the CSV with the expected columns", async () => {
  const dir = await Deno.makeTempDir();
  const csv = join(dir, "sub", "bench_train.csv");
  const run = await runBenchTask(["--train", "--quick", "--no-torch", "--out", csv]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /sgemm peak .* GFLOP\/s/);
  assert.match(run.stdout, /round 2\/2/);
  // parseCsv: the device column (the CPU's model name and cores) holds a comma, so it is quoted.
  const [columns, ...lines] = parseCsv(await Deno.readTextFile(csv));
  for (const column of ["config", "preset", "attnlab_ms", "attnlab_gflops", "gflop_step", "torch_status", "ratio"]) {
    assert.ok(columns.includes(column), `missing column ${column}`);
  }
  assert.equal(columns[columns.indexOf("backend") + 1], "device");
  const rows = lines.map((line) => Object.fromEntries(line.map((cell, i) => [columns[i], cell])));
  assert.ok(rows.every((r) => / logical cores?$/.test(r.device)), rows.map((r) => r.device).join("; "));
  assert.deepEqual(rows.map((r) => [r.config, r.preset, r.rounds, r.torch_status, r.ratio]), [
    ["small", "vanilla", "2", "off", ""],
    ["small", "transnormer-t2", "2", "off", ""],
  ]);
  for (const r of rows) {
    // GFLOP/s = GFLOP · 1000 / ms, to the CSV's five significant digits.
    const expected = Number(r.gflop_step) * 1000 / Number(r.attnlab_ms);
    assert.ok(Math.abs(Number(r.attnlab_gflops) / expected - 1) < 1e-3, `${r.attnlab_gflops} vs ${expected}`);
    assert.ok(Number(r.attnlab_peak_mb) > 0);
  }
  const bad = await runBenchTask(["--train", "--quick", "--backends", "cpu"]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /error: --backends belongs to the attention bench, not --train/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test({
  name: `runTrainBench: with the PyTorch twin, one small row gets PyTorch's times and a ratio`,
  fn: async () => {
    requireTorch(TORCH);
    const result = await runTrainBench({
      configs: ["small"],
      presets: ["linear"],
      rounds: 2,
      steps: 1,
      warmup: 0,
      sgemmSize: 64,
    });
    const [row] = result.rows;
    if (row.torch_status === "reference BLAS") {
      assert.equal(row.ratio, null); // the machine's PyTorch runs the reference BLAS: the row says so
      return;
    }
    assert.equal(row.torch_status, "ok", row.torch_note);
    assert.equal(result.samples[0].torchMs!.length, 2);
    assert.ok(row.torch_ms! > 0 && row.ratio! > 0);
    assert.ok(Math.abs(row.torch_gflops! - row.gflop_step * 1000 / row.torch_ms!) < 1e-9);
  },
});

Deno.test("runTrainBench: each round times PyTorch at every thread count; a row keeps the fastest count's rounds", async () => {
  // A twin whose steps take `fast` ms at one thread count and 120 at the other: the row must keep the fast count's
  // rounds, whichever it is, and its ratio must pair them with attnlab's.
  for (const fastCount of [1, 2]) {
    let threads = 1;
    const set: number[] = [];
    const { twin } = fakeTwin();
    twin.timeSteps = (_batch, o) =>
      Promise.resolve({
        ms: Array.from({ length: o.steps }, () => (threads === fastCount ? 80 : 120)),
        peakBytes: NaN,
        peakMethod: "none",
        losses: [],
      });
    twin.setThreads = (t: number) => {
      set.push(threads = t);
      return Promise.resolve(t);
    };
    const result = await runTrainBench({
      configs: ["small"],
      presets: ["linear"],
      rounds: 2,
      steps: 1,
      warmup: 0,
      twin,
      threads: 2,
      sgemmSize: 64,
    });
    // Round 1 runs 1 then 2 threads, round 2 the other way round: one change of count per round.
    assert.deepEqual(set, [1, 2, 2, 1]);
    const row = result.rows[0];
    assert.equal(row.torch_threads, fastCount);
    assert.equal(row.torch_ms, 80);
    assert.deepEqual(result.samples[0].torchMs, [[80], [80]]);
    // One step per round: the ratio is the geometric mean of attnlab's round times over 80.
    const logs = result.samples[0].attnlabMs.map(([ms]) => Math.log(ms / 80));
    const expected = Math.exp(logs.reduce((a, b) => a + b, 0) / logs.length);
    assert.ok(
      Math.abs(row.ratio! - expected) < 1e-9 * expected,
      `ratio ${row.ratio} against the kept count's ${expected}`,
    );
  }
});

Deno.test("runTrainBench: without options.rounds a row runs its config's rounds (small: 12)", async () => {
  const { twin } = fakeTwin();
  const result = await runTrainBench({
    configs: ["small"],
    presets: ["linear"],
    steps: 1,
    warmup: 0,
    twin,
    threads: 1,
    sgemmSize: 64,
  });
  assert.equal(result.rows[0].rounds, TRAIN_BENCH_CONFIGS.small.rounds);
  assert.equal(result.samples[0].attnlabMs.length, 12);
  assert.equal(result.samples[0].torchMs!.length, 12);
});
