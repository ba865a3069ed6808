/**
 * lib/bench: FLOP counts against closed forms, the exponent fit and the crossover on synthetic data,
 * and the structure (not the speed) of what `deno task bench` writes.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { dirname } from "node:path";
import {
  type BenchConfig,
  crossoverLength,
  defaultBenchConfig,
  exponentInterval,
  exponentsWithin,
  extrapolatePowerLaw,
  fitExponent,
  FLOP_VARIANTS,
  flopCount,
  formatBenchTable,
  measureAttention,
  memoryPlot,
  powerLawSum,
  probeTorch,
  PYTHON,
  runBench,
  softmaxPlan,
  timePlot,
  TORCH_SCRIPT,
} from "../lib/bench/mod.ts";
import { cpuDescription, deviceOf, fasterTorchRows } from "../lib/bench/mod.ts";
import { parseCsv } from "../lib/report/csv.ts";
import { configFromFlags } from "../lib/tasks/bench.ts";
import { initBackend } from "../lib/backend.ts";
import { REPO_ROOT } from "../lib/env.ts";
import { local, orthogonalRandomFeatures, softmax, variants } from "../lib/attention/mod.ts";
import { assertClose, maxAbsDiff, outputAndGrads, requireTorch, runBenchTask, seededQKV } from "./helpers.ts";

// The test task installs PyTorch (setup's torchTests): without it these tests fail, naming the fix, rather than skip.
const TORCH = await probeTorch();

Deno.test("flopCount: softmax is 2·bh·n²·(dk + dv), forward + backward three times that", () => {
  const { fwd, fwdBwd } = flopCount("softmax", { batch: 2, heads: 3, n: 5, dk: 4, dv: 6 });
  assert.equal(fwd, 2 * 6 * 25 * (4 + 6));
  assert.equal(fwdBwd, 3 * fwd);
  assert.equal(flopCount("softmax", { batch: 2, heads: 3, n: 5, dk: 4, dv: 6, causal: false }).fwd, fwd);
});

Deno.test("flopCount: query-blocked causal softmax counts only the keys each block reads", () => {
  // n = 4, blocks of 2: block 0 reads 2 keys, block 1 reads 4; bh = 1, dk = dv = 1.
  const { fwd, fwdBwd } = flopCount("softmax", { batch: 1, heads: 1, n: 4, dk: 1, options: { queryBlockSize: 2 } });
  const qk = 2 * (2 * 2 + 2 * 4);
  assert.equal(fwd, 2 * qk);
  assert.equal(fwdBwd, 4 * qk + 3 * qk);
});

Deno.test("flopCount: causal kernel variants are 2·bh·N·(C·(m + dv) + 2·m·dv) with N padded to chunks", () => {
  const dims = { batch: 1, heads: 2, n: 10, dk: 3, dv: 5, options: { chunkSize: 4 } };
  const expected = (m: number) => 2 * 2 * 12 * (4 * (m + 5) + 2 * m * 5);
  assert.equal(flopCount("linear", dims).fwd, expected(3));
  assert.equal(flopCount("norm", dims).fwd, expected(3));
  assert.equal(flopCount("cosformer", dims).fwd, expected(6));
  const performer = flopCount("performer", { ...dims, options: { chunkSize: 4, features: 7 } }).fwd;
  assert.equal(performer, expected(7) + 4 * 2 * 10 * 3 * 7);
});

Deno.test("flopCount: bidirectional kernel, diag and local closed forms", () => {
  assert.equal(flopCount("linear", { batch: 1, heads: 1, n: 8, dk: 2, dv: 3, causal: false }).fwd, 4 * 8 * 2 * 3);
  assert.equal(flopCount("diag", { batch: 1, heads: 1, n: 10, dk: 2, options: { blockSize: 4 } }).fwd, 2 * 12 * 4 * 4);
  // Local, window 4: n padded to 12; each query chunk sees 2 chunks of 4 keys causally (8), 3 (12) otherwise.
  assert.equal(flopCount("local", { batch: 1, heads: 1, n: 10, dk: 2, options: { window: 4 } }).fwd, 2 * 12 * 8 * 4);
  const both = flopCount("local", { batch: 1, heads: 1, n: 10, dk: 2, causal: false, options: { window: 4 } });
  assert.equal(both.fwd, 2 * 12 * 12 * 4);
  assert.equal(flopCount("performer", { batch: 1, heads: 1, n: 1, dk: 64 }).fwd > 0, true);
});

Deno.test("flopCount: every registered variant has a count, and the variant's defaults fill in its options", () => {
  // Every variant: the registry is the list, so a new variant cannot drop out of the benchmark.
  assert.deepEqual(FLOP_VARIANTS, Object.keys(variants));
  for (const name of FLOP_VARIANTS) {
    const { fwd, fwdBwd } = flopCount(name, { batch: 1, heads: 2, n: 100, dk: 8 });
    assert.ok(fwd > 0 && fwdBwd >= 3 * fwd, `${name}: ${fwd}, ${fwdBwd}`);
  }
  // chunkSize 64 is linear's default; options the variant does not have are ignored.
  const dims = { batch: 1, heads: 1, n: 100, dk: 2, dv: 3 };
  assert.deepEqual(flopCount("linear", dims), flopCount("linear", { ...dims, options: { chunkSize: 64, window: 2 } }));
  assert.equal(flopCount("linear", dims).fwd, 2 * 128 * (64 * (2 + 3) + 2 * 2 * 3));
});

Deno.test("flopCount: bad input names the argument", () => {
  assert.throws(() => flopCount("nope" as "linear", { batch: 1, heads: 1, n: 4, dk: 2 }), /variant must be one of/);
  assert.throws(() => flopCount("linear", { batch: 1, heads: 1, n: 0, dk: 2 }), /dims\.n must be a positive integer/);
  assert.throws(
    () => flopCount("linear", { batch: 1, heads: 1, n: 4, dk: 2, options: { chunkSize: 1.5 } }),
    /option chunkSize must be an integer, got 1\.5/,
  );
});

Deno.test("fitExponent recovers the slope of y = c·nᵖ", () => {
  for (const p of [0.5, 1, 2, 3]) {
    const fit = fitExponent([128, 256, 512, 1024, 4096].map((x) => ({ x, y: 0.01 * x ** p })));
    assert.ok(Math.abs(fit.exponent - p) < 1e-9, `p = ${p}: got ${fit.exponent}`);
    assert.ok(Math.abs(fit.coefficient - 0.01) < 1e-9);
    assert.ok(Math.abs(fit.r2 - 1) < 1e-9);
  }
  const noisy = fitExponent([256, 512, 1024, 2048].map((x, i) => ({ x, y: x * (i % 2 ? 1.05 : 0.95) })));
  assert.ok(Math.abs(noisy.exponent - 1) < 0.1 && noisy.r2 < 1);
  assert.throws(() => fitExponent([{ x: 1, y: 1 }]), /at least two distinct x/);
  assert.throws(() => fitExponent([{ x: 1, y: 1 }, { x: 2, y: 0 }]), /points\[1\]\.y must be a finite number > 0/);
});

/** Round r of a cost c_r·x^p_r at the lengths xs: one { x, ys } per length, as interleaved rounds give them. */
function roundSeries(xs: number[], rounds: { c: number; p: number }[]) {
  return xs.map((x) => ({ x, ys: rounds.map(({ c, p }) => c * x ** p) }));
}

Deno.test("exponentInterval: one exponent per round, and the t interval of those exponents", () => {
  // Exact power laws with exponents 1.9, 2.0, 2.1 in rounds 0-2: mean 2, sd 0.1, t(0.975, 2) = 4.302653.
  const series = roundSeries([256, 512, 1024, 2048], [{ c: 0.5, p: 1.9 }, { c: 3, p: 2 }, { c: 4, p: 2.1 }]);
  const { exponents, interval, fit } = exponentInterval(series);
  [1.9, 2, 2.1].forEach((p, r) => assert.ok(Math.abs(exponents[r] - p) < 1e-9, `round ${r}: ${exponents[r]}`));
  const halfWidth = 4.302653 * 0.1 / Math.sqrt(3);
  assert.ok(Math.abs(interval.estimate - 2) < 1e-9);
  assert.ok(Math.abs(interval.low - (2 - halfWidth)) < 1e-5 && Math.abs(interval.high - (2 + halfWidth)) < 1e-5);
  assert.equal(interval.n, 3);
  // The drawn curve goes through the per-length medians, here round 1 (c = 3, p = 2) at every length.
  assert.ok(Math.abs(fit.exponent - 2) < 1e-9 && Math.abs(fit.coefficient - 3) < 1e-6);
  // A 90% interval is narrower; one round has no interval.
  assert.ok(exponentInterval(series, { level: 0.9 }).interval.high < interval.high);
  const one = exponentInterval(roundSeries([1, 2], [{ c: 1, p: 1 }])).interval;
  assert.ok(Number.isNaN(one.low) && one.estimate === 1);
});

Deno.test("exponentInterval: bad input names the argument", () => {
  assert.throws(() => exponentInterval([]), (e: Error) => e instanceof RangeError && /series is empty/.test(e.message));
  assert.throws(
    () => exponentInterval([{ x: 1, ys: [1, 2] }, { x: 2, ys: [3] }]),
    (e: Error) => e instanceof RangeError && /series\[1\]\.ys has 1 values, series\[0\]\.ys 2/.test(e.message),
  );
  assert.throws(() => exponentInterval([{ x: 1, ys: 3 }] as never), TypeError);
  assert.throws(
    () => exponentInterval(roundSeries([1, 2], [{ c: 1, p: 1 }]), { levels: 0.9 } as never),
    /unknown option "levels"/,
  );
  assert.throws(() => exponentInterval([{ x: 1, ys: [1] }, { x: 1, ys: [2] }]), /at least two distinct x/);
});

Deno.test("exponentsWithin: the three outcomes, the worst series decides, at the Bonferroni level", () => {
  const xs = [256, 512, 1024];
  const near = (p: number) => roundSeries(xs, [p - 0.02, p, p + 0.02, p + 0.01].map((q) => ({ c: 1, p: q })));
  const noisy = (p: number) => roundSeries(xs, [p - 0.5, p + 0.5, p, p + 0.3].map((q) => ({ c: 1, p: q })));
  const band = { expected: 1, margin: 0.3 };
  const all = exponentsWithin([{ name: "a", series: near(1) }, { name: "b", series: near(1.2) }], band);
  assert.equal(all.verdict.outcome, "reproduced");
  assert.equal(all.deciding, "b"); // the one furthest from 1
  // Two series: each interval at 1 − 0.05/2 = 97.5%.
  assert.ok(all.each.every((e) => Math.abs(e.exponent.interval.level - 0.975) < 1e-12));
  assert.match(
    all.verdict.rule,
    /each of 2 exponents \(a, b\).*97\.5% t interval.*Bonferroni: 95% jointly.*\[0\.7, 1\.3\]/,
  );
  const refuted = exponentsWithin([{ name: "a", series: noisy(1) }, { name: "quadratic", series: near(2) }], band);
  assert.equal(refuted.verdict.outcome, "not reproduced");
  assert.equal(refuted.deciding, "quadratic");
  assert.deepEqual(refuted.verdict.interval, refuted.each[1].verdict.interval);
  const unsure = exponentsWithin([{ name: "a", series: near(1) }, { name: "wide", series: noisy(1) }], band);
  assert.equal(unsure.verdict.outcome, "inconclusive");
  assert.equal(unsure.verdict.reason, "within noise");
  assert.equal(unsure.deciding, "wide");
  // Two rounds: underpowered, whatever the exponents.
  const two = exponentsWithin([{ name: "a", series: roundSeries(xs, [{ c: 1, p: 1 }, { c: 2, p: 1 }]) }], band);
  assert.equal(two.verdict.reason, "underpowered");
  assert.match(two.verdict.rule, /^a's exponent fitted per interleaved round, decided on the 95% t interval/);
  assert.throws(() => exponentsWithin([], band), TypeError);
  assert.throws(() => exponentsWithin([{ name: "a", series: near(1) }], { expected: 1, margin: 0 }), RangeError);
  assert.throws(
    () => exponentsWithin([{ name: "a", series: near(1) }], { expected: 1, margin: 0.3, tol: 1 } as never),
    /unknown band key "tol"/,
  );
});

Deno.test("powerLawSum matches the closed forms of Σp and Σp²", () => {
  const n = 3072;
  assert.equal(powerLawSum({ coefficient: 0.5, exponent: 1 }, n), 0.5 * n * (n + 1) / 2);
  const squares = powerLawSum({ coefficient: 2, exponent: 2 }, n);
  assert.ok(Math.abs(squares - 2 * n * (n + 1) * (2 * n + 1) / 6) / squares < 1e-12);
  assert.equal(powerLawSum({ coefficient: 7, exponent: 0 }, 5), 35);
  assert.throws(() => powerLawSum({ coefficient: 1, exponent: 1 }, 0), RangeError);
  assert.throws(() => powerLawSum({ coefficient: NaN, exponent: 1 }, 3), /fit\.coefficient must be a finite number/);
});

Deno.test("extrapolatePowerLaw: n² from one point, the fitted exponent from more, never below minExponent", () => {
  assert.equal(extrapolatePowerLaw([], 100), 0);
  assert.equal(extrapolatePowerLaw([{ x: 10, y: 3 }], 30), 27);
  assert.equal(extrapolatePowerLaw([{ x: 10, y: 3 }], 30, { fallbackExponent: 1 }), 9);
  const cubic = [1, 2, 4].map((x) => ({ x, y: x ** 3 }));
  assert.ok(Math.abs(extrapolatePowerLaw(cubic, 8) - 512) < 1e-9);
  // A flat start (fixed costs) is predicted to grow at least linearly.
  assert.ok(Math.abs(extrapolatePowerLaw([{ x: 1, y: 5 }, { x: 2, y: 5 }], 8) - 20) < 1e-9);
  assert.throws(() => extrapolatePowerLaw([{ x: 1, y: 1 }], 0), RangeError);
  assert.throws(() => extrapolatePowerLaw([{ x: 1, y: 1 }], 2, { min: 1 } as never), /unknown option "min"/);
});

type PlotElement = ReturnType<typeof timePlot>;
const marks = (plot: PlotElement, label: string, shape: string) =>
  (plot as unknown as { querySelectorAll(s: string): { getAttribute(a: string): string | null }[] })
    .querySelectorAll(`g[aria-label="${label}"] ${shape}`);
const texts = (plot: PlotElement, label: string) =>
  [...(plot as unknown as { querySelectorAll(s: string): { textContent: string }[] })
    .querySelectorAll(`g[aria-label="${label}"] text`)].map((t) => t.textContent);

Deno.test("timePlot: log scales, one line per series and guide, a dot per row, a bar per interval, the guides' slopes", () => {
  const rows = [256, 512, 1024].flatMap((n) => [
    { variant: "softmax", n, ms: (n / 256) ** 2, lo: 0.9 * (n / 256) ** 2, hi: 1.2 * (n / 256) ** 2 },
    { variant: "linear", n, ms: 2 * n / 256, lo: null, hi: null },
  ]);
  const plot = timePlot(rows, { low: "lo", high: "hi", guides: [1, 2], xLabel: "sequence length n" });
  assert.equal(plot.scale("x")!.type, "log");
  assert.equal(plot.scale("y")!.type, "log");
  assert.deepEqual(plot.scale("color")!.domain, ["softmax", "linear"]);
  // The guides go through the lowest point at the smallest x (1 ms at n = 256) out to n = 1024.
  const [guides, series] = [
    ...(plot as unknown as { querySelectorAll(s: string): unknown[] }).querySelectorAll('g[aria-label="line"]'),
  ] as {
    querySelectorAll(s: string): unknown[];
  }[];
  assert.equal(guides.querySelectorAll("path").length, 2);
  assert.equal(series.querySelectorAll("path").length, 2);
  assert.deepEqual(texts(plot, "text"), ["∝ n", "∝ n²"]);
  const y = plot.scale("y")!;
  assert.deepEqual(y.domain, [0.9, 16 * 1.2]); // the lowest bar 0.9 at 256; the guide n² reaches 16, the top bar 16 · 1.2
  assert.equal(marks(plot, "dot", "circle").length, rows.length);
  assert.equal(marks(plot, "rule", "line").length, 3); // only softmax rows have an interval
  // Dodged: at one n the two series' dots stand apart; without dodge they share an x.
  const cx = (p: PlotElement) => marks(p, "dot", "circle").map((c) => Number(c.getAttribute("cx")));
  const dodged = cx(plot), plain = cx(timePlot(rows, { low: "lo", high: "hi", dodge: 0 }));
  assert.ok(dodged[0] !== dodged[1] && plain[0] === plain[1]);
});

Deno.test("timePlot and memoryPlot: facets, given domain and colours, labels; bad input names the argument", () => {
  const rows = ["forward", "backward"].flatMap((pass) =>
    [64, 128].map((n) => ({ variant: "diag", pass, n, MB: n / 64 }))
  );
  const plot = memoryPlot(rows, { fx: "pass", domain: ["diag", "local"], colors: ["#111111", "#222222"], guides: [1] });
  assert.deepEqual(plot.scale("fx")!.domain, ["forward", "backward"]);
  assert.deepEqual(plot.scale("color")!.range, ["#111111", "#222222"]);
  assert.equal(marks(plot, "dot", "circle").length, 4);
  assert.deepEqual(texts(plot, "text"), ["∝ n", "∝ n"]); // one guide per panel
  assert.ok(texts(plot, "y-axis label").join("").includes("memory (MB)"));
  assert.throws(
    () => timePlot([{ variant: "a", n: 64, ms: 0 }]),
    (e: Error) =>
      e instanceof RangeError &&
      /rows\[0\]\.ms must be a finite number > 0 \(the axes are logarithmic\)/.test(e.message),
  );
  assert.throws(() => timePlot([], {}), /rows is empty/);
  assert.throws(
    () => timePlot(rows, { low: "MB" }),
    (e: Error) => e instanceof TypeError && /both options\.low and options\.high/.test(e.message),
  );
  assert.throws(() => memoryPlot(rows, { colour: "red" } as never), /unknown option "colour"/);
  assert.throws(() => memoryPlot(rows, { colors: ["#111111"] }), /options\.colors needs options\.domain/);
  assert.throws(() => memoryPlot(rows, { dodge: -1 }), RangeError);
});

Deno.test("crossoverLength interpolates in log space and reports the other two cases", () => {
  const rows = [256, 512, 1024, 2048, 4096].flatMap((n) => [
    { variant: "softmax", n, ms: (n / 700) ** 2 },
    { variant: "linear", n, ms: n / 700 },
  ]);
  const c = crossoverLength(rows, "softmax", "linear");
  assert.equal(c.relation, "crosses");
  assert.ok(Math.abs(c.n! - 700) < 1e-6, `got ${c.n}`);
  assert.deepEqual(c.bracket, [512, 1024]);
  assert.deepEqual(crossoverLength(rows.filter((r) => r.n >= 1024), "softmax", "linear"), {
    relation: "b-faster-throughout",
    n: 1024,
    bracket: null,
  });
  assert.equal(crossoverLength(rows.filter((r) => r.n <= 512), "softmax", "linear").relation, "a-faster-throughout");
  const renamed = rows.map((r) => ({ method: r.variant, length: r.n, t: r.ms }));
  assert.equal(
    crossoverLength(renamed, "softmax", "linear", { by: "method", length: "length", value: "t" }).n! > 0,
    true,
  );
  assert.throws(() => crossoverLength(rows, "softmax", "nope"), /no length has a positive "ms"/);
});

Deno.test("softmaxPlan keeps small lengths whole and blocks or skips long ones", () => {
  const budget = { batch: 1, heads: 8, memoryBudgetBytes: 4 * 2 ** 30 };
  assert.equal(softmaxPlan(1024, budget).mode, "whole");
  const long = softmaxPlan(65536, budget);
  assert.ok(long.mode === "blocked" || long.mode === "skip");
  if (long.mode === "blocked") assert.ok(long.bytes <= budget.memoryBudgetBytes && long.queryBlockSize! >= 64);
});

Deno.test("measureAttention leaves no tensors behind and reports positive numbers", async () => {
  await initBackend({ backend: "cpu", quiet: true });
  const before = tf.memory().numTensors;
  const m = await measureAttention({ variant: "norm", n: 33, heads: 2, dk: 4, repeats: 1 });
  assert.equal(tf.memory().numTensors, before);
  assert.equal(m.backend, "cpu");
  assert.ok(m.fwdMs > 0 && m.fwdBwdMs! > 0 && m.peakBytes! > 0 && m.peakBytesFwdBwd! >= m.peakBytes!);
  await assert.rejects(
    () => measureAttention({ variant: "linear", n: 8, bogus: 1 } as never),
    /unknown option "bogus"/,
  );
});

Deno.test("bench flags: parsed into a config, bad ones rejected with a clear message", () => {
  const config = configFromFlags(["--quick", "--variants", "linear,norm", "--backends", "cpu", "--repeats", "2"], [
    "wasm",
    "cpu",
  ]);
  assert.deepEqual(config.variants, ["linear", "norm"]);
  assert.deepEqual(config.backends, ["cpu"]);
  assert.equal(config.repeats, 2);
  assert.deepEqual(configFromFlags(["--max-n", "1024"], ["cpu"]).lengths, [256, 512, 1024]);
  assert.throws(() => configFromFlags(["--bogus"], ["cpu"]), /unknown flag --bogus; valid flags:/);
  assert.throws(() => configFromFlags(["--variants", "fast"], ["cpu"]), /--variants: unknown name "fast"/);
  assert.throws(() => configFromFlags(["--backends", "blas"], ["cpu"]), /--backends: blas cannot load/);
  assert.throws(() => configFromFlags(["--repeats", "0"], ["cpu"]), /--repeats must be a positive integer/);
  assert.throws(() => configFromFlags(["--max-n", "10"], ["cpu"]), /--max-n must be at least 256/);
});

function tinyBench(overrides: Partial<BenchConfig>): BenchConfig {
  return {
    ...defaultBenchConfig({ quick: true, backends: ["cpu"] }),
    lengths: [16, 32],
    heads: 1,
    d: 8,
    torch: false,
    ...overrides,
  };
}

Deno.test("runBench: cpu rows past --cpu-max-n are skip rows that say why, and the table explains the empty x cpu", async () => {
  const result = await runBench(tinyBench({ variants: ["diag"], cpuMaxN: 16 }), {
    progressOutput: "none",
    log: () => {},
  });
  assert.deepEqual(result.rows.map((r) => [r.n, r.status]), [[16, "ok"], [32, "skipped (cpu n limit)"]]);
  assert.match(result.rows[1].note, /cpu capped at n ≤ 16 \(--cpu-max-n\); its JavaScript kernels take minutes/);
  const table = formatBenchTable(result.rows);
  assert.ok(table.startsWith("backend"));
  // The device column follows backend, in the rows and in the table: the CPU's model and logical cores.
  const device = cpuDescription(Deno.readTextFileSync("/proc/cpuinfo"));
  assert.ok(result.rows.every((r) => r.device === device));
  assert.deepEqual(Object.keys(result.rows[0]).slice(0, 3), ["backend", "device", "variant"]);
  assert.match(table.split("\n")[0], /^backend\s+device\s+variant\s/);
  assert.equal(table.split("\n")[1].split(/\s{2,}/)[1], device);
  assert.match(table, /x cpu is empty from n = 32: cpu capped at n ≤ 16/);
  assert.match(table, /x torch is empty throughout/);
});

/** Runs `code` in PyTorch's python with lib/bench importable, `input` as JSON on stdin; returns its JSON. */
async function python(code: string, input: unknown): Promise<Record<string, number[]>> {
  const prelude = `import json, sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, ${
    JSON.stringify(dirname(TORCH_SCRIPT))
  })\n`;
  const child = new Deno.Command(PYTHON, {
    args: ["-c", prelude + code],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  })
    .spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(input)));
  await writer.close();
  const out = await child.output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  assert.ok(out.success, decode(out.stderr));
  return JSON.parse(decode(out.stdout));
}

Deno.test({
  name: `torch: local and query-blocked softmax in torch_attention.py match lib/attention, output and gradients`,
  fn: async () => {
    requireTorch(TORCH);
    const cases = [
      { n: 11, window: 3, block: 4 },
      { n: 150, window: 64, block: 64 },
    ];
    for (const { n, window, block } of cases) {
      const qkv = seededQKV({ b: 1, h: 2, n, dk: 4, dv: 4, seed: n });
      const cot = seededQKV({ b: 1, h: 2, n, dk: 4, dv: 4, seed: n + 10 }).v;
      const torch = await python(
        `import torch
from torch_attention import blocked_softmax_attention, local_attention
x = {key: torch.tensor(value, requires_grad=True) for key, value in json.load(sys.stdin).items()}
out = {}
for causal in (True, False):
    for name, f in (("local", lambda q, k, v: local_attention(q, k, v, causal, ${window})),
                    ("softmax", lambda q, k, v: blocked_softmax_attention(q, k, v, causal, ${block}))):
        y = f(x["q"], x["k"], x["v"])
        grads = torch.autograd.grad(y, (x["q"], x["k"], x["v"]), x["cot"])
        for key, value in zip(("out", "dq", "dk", "dv"), (y, *grads)):
            out[f"{name}|{str(causal).lower()}|{key}"] = value.flatten().tolist()
print(json.dumps(out))`,
        { q: qkv.q.arraySync(), k: qkv.k.arraySync(), v: qkv.v.arraySync(), cot: cot.arraySync() },
      );
      for (const causal of [true, false]) {
        const references = {
          local: outputAndGrads((x) => local.attend(x, { window, causal }), qkv, cot),
          softmax: outputAndGrads((x) => softmax.attend(x, { causal }), qkv, cot),
        };
        for (const [name, ref] of Object.entries(references)) {
          const expected = [ref.out, ...ref.grads];
          ["out", "dq", "dk", "dv"].forEach((key, i) => {
            const actual = tf.tensor(torch[`${name}|${causal}|${key}`], expected[i].shape);
            assertClose(actual, expected[i], `${name} n=${n} window=${window} causal=${causal} ${key}`);
          });
        }
      }
    }
  },
});

Deno.test({
  name: `torch: make_attend's twin of every variant matches lib/attention, output and gradients`,
  fn: async () => {
    requireTorch(TORCH);
    // The bench runs every variant but softmax with its defaults (softmax gets queryBlockSize, checked above), so
    // variants[name].attend with { causal } is the reference. Performer's projection differs by construction
    // (torch.randn with seed 0 against the JavaScript orthogonal random features), so the TypeScript projection
    // is handed to make_attend through torch.randn; the check asserts make_attend asks for the same [m, dk].
    // Every registered variant has its twin in torch_attention.py (local also at other windows, in the test above).
    const names = Object.keys(variants) as (keyof typeof variants)[];
    const worst: Record<string, number> = {};
    for (const { n, dk, dv } of [{ n: 1, dk: 4, dv: 6 }, { n: 63, dk: 4, dv: 6 }, { n: 65, dk: 5, dv: 3 }]) {
      const qkv = seededQKV({ b: 1, h: 2, n, dk, dv, seed: 7 * n });
      const cot = seededQKV({ b: 1, h: 2, n, dk: dv, dv, seed: 7 * n + 10 }).v;
      const m = Math.max(1, Math.ceil(dk * Math.log(dk)));
      const projection = orthogonalRandomFeatures({ features: m, dk, seed: 0 });
      const torch = await python(
        `import torch
import torch_attention
data = json.load(sys.stdin)
w = torch.tensor(data.pop("w"))
x = {key: torch.tensor(value, requires_grad=True) for key, value in data.items()}
randn = torch.randn
def projection(*shape, generator=None):
    assert tuple(shape) == tuple(w.shape), (shape, w.shape)
    return w.clone()
out = {}
for causal in (True, False):
    for name in ${JSON.stringify(names)}:
        torch.randn = projection if name == "performer" else randn
        attend = torch_attention.make_attend(name, ${dk}, causal)
        torch.randn = randn
        y = attend(x["q"], x["k"], x["v"])
        grads = torch.autograd.grad(y, (x["q"], x["k"], x["v"]), x["cot"])
        for key, value in zip(("out", "dq", "dk", "dv"), (y, *grads)):
            out[f"{name}|{str(causal).lower()}|{key}"] = value.flatten().tolist()
print(json.dumps(out))`,
        {
          q: qkv.q.arraySync(),
          k: qkv.k.arraySync(),
          v: qkv.v.arraySync(),
          cot: cot.arraySync(),
          w: projection.arraySync(),
        },
      );
      for (const causal of [true, false]) {
        for (const name of names) {
          const options = name === "performer" ? { causal, projection } : { causal };
          const ref = outputAndGrads((x) => variants[name].attend(x, options), qkv, cot);
          const expected = [ref.out, ...ref.grads];
          ["out", "dq", "dk", "dv"].forEach((key, i) => {
            const actual = tf.tensor(torch[`${name}|${causal}|${key}`], expected[i].shape);
            const what = `${name} n=${n} dk=${dk} dv=${dv} causal=${causal} ${key}`;
            assertClose(actual, expected[i], what);
            const scale = Math.max(1, tf.max(tf.abs(expected[i])).dataSync()[0]);
            worst[name] = Math.max(worst[name] ?? 0, maxAbsDiff(actual, expected[i]) / scale);
          });
        }
      }
    }
    console.log(`max |torch - tfjs| / max(1, max|tfjs|): ${JSON.stringify(worst)}`);
  },
});

Deno.test({
  name: `runBench with PyTorch: local and blocked softmax run, softmax past the memory budget is a torch skip row`,
  fn: async () => {
    requireTorch(TORCH);
    // Heads 1, d 8: whole n = 64 needs 160 KiB of n×n buffers, n = 128 runs by blocks of 64 under 400 kB.
    const blocked = await runBench(
      tinyBench({
        variants: ["softmax", "local"],
        lengths: [64, 128],
        memoryBudgetBytes: 4e5,
        cpuMaxN: 64,
        torch: true,
      }),
      { progressOutput: "none", log: () => {} },
    );
    const torch = blocked.rows.filter((r) => r.backend === "torch");
    // Each row names the thread count of the faster of PyTorch's passes (1 thread and every core).
    const threads = navigator.hardwareConcurrency;
    const named = (note: string) => note.replace(new RegExp(`(; )?(1 thread|${threads} threads)$`), "");
    assert.deepEqual(torch.map((r) => [r.variant, r.n, r.status, named(r.note)]), [
      ["softmax", 64, "ok", ""],
      ["local", 64, "ok", ""],
      ["softmax", 128, "ok", "query blocks of 64"],
      ["local", 128, "ok", ""],
    ]);
    assert.ok(torch.every((r) => r.note !== named(r.note)), "every ok row names its threads");
    assert.ok(torch.every((r) => r.fwd_bwd_ms! > 0 && r.gflops_fwd_bwd! > 0));
    const skipped = await runBench(tinyBench({ variants: ["softmax"], memoryBudgetBytes: 1e3, torch: true }), {
      progressOutput: "none",
      log: () => {},
    });
    assert.deepEqual(
      skipped.rows.map((r) => [r.backend, r.n, r.status]),
      [["cpu", 16, "skipped (memory)"], ["cpu", 32, "skipped (memory)"], ["torch", 16, "skipped (memory)"], [
        "torch",
        32,
        "skipped (memory)",
      ]],
    );
    assert.ok(skipped.rows.every((r) => /n×n buffers ≈ .* GiB > budget/.test(r.note)));
  },
});

Deno.test("deno task bench --quick writes a CSV with the expected columns and rows", async () => {
  const dir = await Deno.makeTempDir();
  const csv = join(dir, "bench.csv");
  // --max-run-s 600: the rows, not the time cap, are under test (on a loaded machine the quick cap skipped n = 256).
  const run = await runBenchTask([
    "--quick",
    "--variants",
    "linear",
    "--backends",
    "cpu",
    "--max-run-s",
    "600",
    "--out",
    csv,
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /sgemm peak .* GFLOP\/s/);
  assert.match(run.stdout, /torch: /);
  const [columns, ...lines] = parseCsv(await Deno.readTextFile(csv));
  assert.deepEqual(columns.slice(0, 3), ["backend", "device", "variant"]);
  for (
    const column of [
      "backend",
      "device",
      "variant",
      "causal",
      "n",
      "status",
      "fwd_ms",
      "fwd_bwd_ms",
      "gflops_fwd_bwd",
      "share_of_peak",
      "peak_gflops",
      "speedup_vs_cpu_fwd_bwd",
      "speedup_vs_torch_fwd_bwd",
      "peak_mb_fwd_bwd",
    ]
  ) assert.ok(columns.includes(column), `missing column ${column}`);
  const rows = lines.map((line) => Object.fromEntries(line.map((cell, i) => [columns[i], cell])));
  const ours = rows.filter((r) => r.backend === "cpu");
  // The CPU's model name and logical cores, as /proc/cpuinfo has them (the model names hold commas: quoted).
  const cores = (await Deno.readTextFile("/proc/cpuinfo")).split("\n").filter((l) => /^processor\s*:\s*\d+$/.test(l));
  assert.ok(rows.every((r) => r.device.endsWith(`, ${cores.length} logical core${cores.length === 1 ? "" : "s"}`)));
  assert.deepEqual(ours.map((r) => [r.variant, r.n, r.status]), [["linear", "128", "ok"], ["linear", "256", "ok"]]);
  for (const row of ours) assert.ok(Number(row.fwd_ms) > 0 && Number(row.gflops_fwd_bwd) > 0);
  assert.ok(rows.every((r) => r.backend === "cpu" || r.backend === "torch"));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("deno task bench rejects unknown flags", async () => {
  const run = await runBenchTask(["--quick", "--fast"]);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /error: bench: unknown flag --fast; valid flags: --quick/);
});

Deno.test("deno task bundle: the benchmark as one file that runs from an empty folder, with Deno alone", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(join(REPO_ROOT, "deno.json"))).tasks as Record<string, string>;
  const [deno, ...args] = tasks.bundle.split(" ");
  assert.equal(deno, "deno");
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "bench.js");
    // The task's own command, writing into the temporary folder instead of dist/.
    const built = await new Deno.Command(Deno.execPath(), {
      args: args.map((a) => a === "dist/attnlab-bench.js" ? file : a),
      cwd: REPO_ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(built.code, 0, new TextDecoder().decode(built.stderr));
    // No deno.json, no node_modules, no lock file: only the bundle.
    const work = join(dir, "empty");
    await Deno.mkdir(work);
    const out = join(work, "bench.csv");
    const ran = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", file, "--quick", "--backends", "cpu", "--variants", "linear", "--max-n", "64", "--no-torch"]
        .concat(["--out", out]),
      cwd: work,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(ran.code, 0, new TextDecoder().decode(ran.stderr));
    const [columns, ...lines] = parseCsv(await Deno.readTextFile(out));
    const rows = lines.map((l) => Object.fromEntries(columns.map((c, i) => [c, l[i]])));
    assert.deepEqual(rows.map((r) => [r.backend, r.variant, r.n, r.status]), [["cpu", "linear", "64", "ok"]]);
    assert.ok(Number(rows[0].fwd_bwd_ms) > 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cpuDescription: the model name and the processor entries of /proc/cpuinfo, with fallbacks", async () => {
  const x86 = [0, 1, 2].map((i) =>
    `processor\t: ${i}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n`
  )
    .join("\n");
  assert.equal(cpuDescription(x86), "Intel(R) Xeon(R) Gold 6338, 3 logical cores");
  // ARM kernels name no "model name"; "Hardware" or a non-numeric "Processor" line does.
  const arm = "Processor\t: AArch64 Processor rev 4 (aarch64)\nprocessor\t: 0\nHardware\t: BCM2835\n";
  assert.equal(cpuDescription(arm), "BCM2835, 1 logical core");
  assert.equal(cpuDescription("", { fallbackCores: 4 }), "unknown CPU, 4 logical cores");
  assert.throws(() => cpuDescription(42 as never), TypeError);
  assert.throws(() => cpuDescription("", { cores: 2 } as never), TypeError);
  assert.throws(() => cpuDescription("", { fallbackCores: 0 }), RangeError);
  // This machine: read once, the same text for every CPU backend.
  const here = cpuDescription(await Deno.readTextFile("/proc/cpuinfo"));
  assert.equal(await deviceOf("cpu"), here);
  assert.equal(await deviceOf("blas"), here);
  await assert.rejects(() => deviceOf(1 as never), TypeError);
});

Deno.test("fasterTorchRows: each row from the pass that ran it fastest, ok before skipped, its threads in the note", () => {
  const row = (variant: string, n: number, status: string, ms?: number) => ({
    variant,
    n,
    causal: true,
    status,
    ...(ms === undefined ? {} : { fwd_ms: ms / 3, fwd_bwd_ms: ms, repeats: 3 }),
  });
  const two = {
    torch: "1.13",
    threads: 2,
    sgemm: { size: 64, ms: 1, gflops: 150 },
    rows: [row("linear", 64, "ok", 30), row("norm", 64, "ok", 10), row("softmax", 4096, "skipped, budget")],
  };
  const one = {
    torch: "1.13",
    threads: 1,
    sgemm: { size: 64, ms: 1, gflops: 90 },
    rows: [row("linear", 64, "ok", 20), row("norm", 64, "ok", 15), row("softmax", 4096, "ok", 900)],
  };
  const best = fasterTorchRows([two, one]);
  assert.deepEqual(
    best.rows.map((r) => [r.variant, r.fwd_bwd_ms, r.note]),
    [["linear", 20, "1 thread"], ["norm", 10, "2 threads"], ["softmax", 900, "1 thread"]],
  );
  assert.equal(best.sgemm.gflops, 150);
  assert.equal(best.threads, 2);
  // A row no pass ran stays as the first pass has it.
  const skipped = fasterTorchRows([two, { ...one, rows: [row("softmax", 4096, "skipped, budget")] }]);
  assert.equal(skipped.rows.find((r) => r.variant === "softmax")!.status, "skipped, budget");
  assert.throws(() => fasterTorchRows([]), RangeError);
});
