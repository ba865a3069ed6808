/**
 * The benchmark behind `deno task bench`: every variant on every backend at growing lengths, bounded by a memory
 * budget (softmax's n × n matrices), a per-run time cap, a length cap for the slow cpu backend and a total time
 * budget; plus the same computations in PyTorch when it is installed.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { type BackendName, BACKENDS, initBackend, loadableBackends } from "../backend.ts";
import { type VariantName, variants } from "../attention/mod.ts";
import { progress } from "../notebook/progress.ts";
import { deviceOf } from "./device.ts";
import { FLOP_VARIANTS, flopCount } from "./flops.ts";
import { measureAttention, type SgemmPeak, sgemmPeak } from "./measure.ts";
import { probeTorch, runTorchBench, type TorchBenchConfig, type TorchBenchResult, type TorchRow } from "./torch.ts";

/** Everything a bench run needs. */
export interface BenchConfig {
  /** Measured in this order; the cpu backend is the reference for the speed-up columns. */
  backends: BackendName[];
  variants: VariantName[];
  /** Sequence lengths, ascending. */
  lengths: number[];
  batch: number;
  heads: number;
  /** dk = dv. */
  d: number;
  /** [true] (the language-model setting) or [true, false]. */
  causal: boolean[];
  /** Timed runs per configuration at most (fewer when a run is slow). */
  repeats: number;
  /** A (backend, variant) stops growing n once one forward + backward run exceeds this, or is predicted to exceed 1.5× it. */
  maxRunS: number;
  /** No new measurement starts after this many seconds. */
  totalBudgetS: number;
  /** Softmax lengths whose estimated n × n buffers exceed this are blocked by queries or skipped. */
  memoryBudgetBytes: number;
  /** The cpu backend is measured up to this length only. */
  cpuMaxN: number;
  /** Run torch_attention.py when PyTorch is installed. */
  torch: boolean;
}

/** n × n float32 buffers alive at once per (batch, head) in softmax's forward + backward (tf.profile: 9.8 at n = 1024). */
export const SOFTMAX_LIVE_MATRICES = 10;

/**
 * The defaults of `deno task bench` (full) or `deno task bench --quick`, for the given backends.
 *
 * @example
 * ```ts
 * import { defaultBenchConfig } from "./run.ts";
 * const config = defaultBenchConfig({ quick: true, backends: ["cpu"] });
 * console.log(config.lengths.join(","), config.heads, config.d); // 128,256 8 64
 * ```
 */
export function defaultBenchConfig(options: { quick: boolean; backends: BackendName[] }): BenchConfig {
  const { quick, backends } = options;
  const lengths = quick ? [128, 256] : Array.from({ length: 9 }, (_, i) => 256 * 2 ** i);
  return {
    backends: [...backends],
    variants: [...FLOP_VARIANTS],
    lengths,
    batch: 1,
    heads: 8,
    d: 64,
    causal: [true],
    repeats: quick ? 1 : 3,
    maxRunS: quick ? 5 : 4,
    totalBudgetS: quick ? 60 : 540,
    memoryBudgetBytes: 4 * 2 ** 30,
    cpuMaxN: quick ? 256 : 512,
    torch: true,
  };
}

/** One row of figures/bench.csv. Empty fields are null. */
export interface BenchRow {
  [column: string]: string | number | boolean | null;
  backend: string;
  /** What the backend ran on: the CPU's model and logical cores, or the WebGPU adapter (lib/bench/device.ts). */
  device: string;
  variant: string;
  causal: boolean;
  n: number;
  batch: number;
  heads: number;
  d: number;
  /** "ok", or "skipped (memory | time | cpu n limit | total budget)", "failed", "not in torch_attention.py". */
  status: string;
  note: string;
  fwd_ms: number | null;
  fwd_bwd_ms: number | null;
  repeats: number | null;
  peak_mb_fwd: number | null;
  peak_mb_fwd_bwd: number | null;
  gflop_fwd: number;
  /** Forward + backward matmul GFLOP (3 × forward, 4·QKᵀ + 3·PV for query-blocked softmax). */
  gflop_fwd_bwd: number;
  gflops_fwd: number | null;
  gflops_fwd_bwd: number | null;
  /** gflops_fwd_bwd / peak_gflops. */
  share_of_peak: number | null;
  peak_gflops: number;
  /** cpu backend's time / this time (higher is faster), at the same variant, causal and n. */
  speedup_vs_cpu_fwd: number | null;
  speedup_vs_cpu_fwd_bwd: number | null;
  /** PyTorch's time / this time (below 1: slower than PyTorch). */
  speedup_vs_torch_fwd: number | null;
  speedup_vs_torch_fwd_bwd: number | null;
}

/** The result of {@linkcode runBench}. */
export interface BenchResult {
  config: BenchConfig;
  rows: BenchRow[];
  peak: SgemmPeak & { note: string };
  /** PyTorch's version and sgemm peak, or why it was not run. */
  torch: { ran: boolean; detail: string; sgemmGflops: number | null; threads: number | null };
  elapsedS: number;
}

/** Options for {@linkcode runBench}. */
export interface RunBenchOptions {
  /** Progress line; default "auto" (see lib/notebook/progress.ts). */
  progressOutput?: "auto" | "tty" | "plain" | "none";
  /** One-line notes (torch missing, peak backend); default console.log. */
  log?: (line: string) => void;
}

const MB = 1e6;
/** A length is skipped when its forward + backward run is predicted (by FLOP ratio) to exceed this × maxRunS. */
const PREDICTED_CAP_FACTOR = 1.5;
/**
 * wasm's heap is 32-bit: past about 2 GiB its allocator traps outside any await (seen at n = 65536 as an
 * uncaught "RuntimeError: divide by zero" that ended the run), so wasm rows whose predicted peak exceeds this are skipped.
 */
const WASM_HEAP_BUDGET_MB = 1536;
/** Share of the total budget the TensorFlow.js measurements may start within when PyTorch runs after them. */
const TFJS_BUDGET_SHARE = 0.85;
const TORCH_MIN_BUDGET_S = 30;

function cpuCapNote(cpuMaxN: number): string {
  return `cpu capped at n ≤ ${cpuMaxN} (--cpu-max-n); its JavaScript kernels take minutes beyond`;
}

/**
 * How softmax runs at length n under the memory budget: whole, by query blocks (when the installed softmax has
 * `queryBlockSize`), or not at all.
 *
 * @example
 * ```ts
 * import { softmaxPlan } from "./run.ts";
 * const budget = 4 * 2 ** 30;
 * console.log(softmaxPlan(1024, { batch: 1, heads: 8, memoryBudgetBytes: budget }).mode); // whole
 * ```
 */
export function softmaxPlan(
  n: number,
  config: { batch: number; heads: number; memoryBudgetBytes: number },
): { mode: "whole" | "blocked" | "skip"; queryBlockSize: number | null; bytes: number } {
  const perRow = config.batch * config.heads * n * 4 * SOFTMAX_LIVE_MATRICES;
  const bytes = perRow * n;
  if (bytes <= config.memoryBudgetBytes) return { mode: "whole", queryBlockSize: null, bytes };
  if (!("queryBlockSize" in variants.softmax.defaults)) return { mode: "skip", queryBlockSize: null, bytes };
  let size = 2 ** Math.floor(Math.log2(n / 2));
  while (size >= 64 && perRow * size > config.memoryBudgetBytes) size /= 2;
  if (size < 64) return { mode: "skip", queryBlockSize: null, bytes };
  return { mode: "blocked", queryBlockSize: size, bytes: perRow * size };
}

/**
 * The memory plan of `variant` at length n ({@linkcode softmaxPlan}), or null for a variant with no plan (every length
 * runs whole).
 */
function memoryPlan(variant: string, n: number, config: BenchConfig): ReturnType<typeof softmaxPlan> | null {
  // The benchmark's one name dispatch, kept on purpose: the plan counts softmax's own n × n buffers
  // (SOFTMAX_LIVE_MATRICES), and only softmax holds them in its fast path.
  return variant === "softmax" ? softmaxPlan(n, config) : null;
}

function emptyRow(
  base: Pick<BenchRow, "backend" | "device" | "variant" | "causal" | "n">,
  config: BenchConfig,
): BenchRow {
  return {
    // Spelled out: this is the CSV's column order, with device right after backend.
    backend: base.backend,
    device: base.device,
    variant: base.variant,
    causal: base.causal,
    n: base.n,
    batch: config.batch,
    heads: config.heads,
    d: config.d,
    status: "",
    note: "",
    fwd_ms: null,
    fwd_bwd_ms: null,
    repeats: null,
    peak_mb_fwd: null,
    peak_mb_fwd_bwd: null,
    gflop_fwd: 0,
    gflop_fwd_bwd: 0,
    gflops_fwd: null,
    gflops_fwd_bwd: null,
    share_of_peak: null,
    peak_gflops: 0,
    speedup_vs_cpu_fwd: null,
    speedup_vs_cpu_fwd_bwd: null,
    speedup_vs_torch_fwd: null,
    speedup_vs_torch_fwd_bwd: null,
  };
}

/**
 * Checks a bench config: known backends and variants, ascending positive lengths, positive sizes and budgets.
 *
 * @example
 * ```ts
 * import { checkBenchConfig, defaultBenchConfig } from "./run.ts";
 * checkBenchConfig(defaultBenchConfig({ quick: true, backends: ["cpu"] }));
 * ```
 */
export function checkBenchConfig(config: BenchConfig): void {
  const where = "bench config";
  if (!Array.isArray(config.backends) || config.backends.length === 0) {
    throw new Error(`${where}: backends must be a non-empty list of ${BACKENDS.join(", ")}`);
  }
  for (const b of config.backends) {
    if (!(BACKENDS as readonly string[]).includes(b)) {
      throw new Error(`${where}: unknown backend "${b}"; expected some of ${BACKENDS.join(", ")}`);
    }
  }
  if (!Array.isArray(config.variants) || config.variants.length === 0) {
    throw new Error(`${where}: variants must be a non-empty list of ${FLOP_VARIANTS.join(", ")}`);
  }
  for (const v of config.variants) {
    if (!FLOP_VARIANTS.includes(v)) {
      throw new Error(`${where}: unknown variant "${v}"; expected some of ${FLOP_VARIANTS.join(", ")}`);
    }
  }
  if (!Array.isArray(config.lengths) || config.lengths.length === 0) {
    throw new Error(`${where}: lengths must be a non-empty list`);
  }
  config.lengths.forEach((n, i) => {
    if (!Number.isInteger(n) || n < 1 || (i > 0 && n <= config.lengths[i - 1])) {
      throw new Error(`${where}: lengths must be ascending positive integers, got ${config.lengths.join(", ")}`);
    }
  });
  for (const key of ["batch", "heads", "d", "repeats", "cpuMaxN"] as const) {
    if (!Number.isInteger(config[key]) || config[key] < 1) {
      throw new Error(`${where}: ${key} must be a positive integer, got ${config[key]}`);
    }
  }
  for (const key of ["maxRunS", "totalBudgetS", "memoryBudgetBytes"] as const) {
    if (!(typeof config[key] === "number" && config[key] > 0)) {
      throw new Error(`${where}: ${key} must be a number > 0, got ${config[key]}`);
    }
  }
  if (
    !Array.isArray(config.causal) || config.causal.length === 0 || config.causal.some((c) => typeof c !== "boolean")
  ) {
    throw new Error(`${where}: causal must be [true], [false] or [true, false]`);
  }
}

async function measurePeak(backends: BackendName[], log: (line: string) => void): Promise<BenchResult["peak"]> {
  const loadable = backends.includes("blas") ? ["blas" as const] : await loadableBackends();
  if (loadable.includes("blas")) {
    return { ...await sgemmPeak({ backend: "blas", size: 1024 }), note: "1024³ sgemm through the blas backend" };
  }
  const best = loadable[0];
  const size = best === "tensorflow" ? 1024 : 512;
  const note = `blas not loadable: ${size}³ matMul on the best backend (${best}) instead`;
  log(`bench: ${note}`);
  return { ...await sgemmPeak({ backend: best, size }), note };
}

/** What PyTorch runs: every length but softmax's memory skips, and softmax's query blocks where tfjs blocks too. */
function torchPlan(config: BenchConfig): Pick<TorchBenchConfig, "lengths" | "softmax_query_blocks"> {
  const lengths: Record<string, number[]> = {};
  const blocks: Record<string, number> = {};
  for (const variant of config.variants) {
    lengths[variant] = config.lengths.filter((n) => memoryPlan(variant, n, config)?.mode !== "skip");
    for (const n of config.lengths) {
      const plan = memoryPlan(variant, n, config);
      if (plan?.mode === "blocked") blocks[n] = plan.queryBlockSize!;
    }
  }
  return { lengths, softmax_query_blocks: blocks };
}

/**
 * Runs the benchmark: the sgemm peak, every (length, backend, variant, causal) in that order, so a spent budget
 * cuts the longest lengths first, then PyTorch (when installed and `config.torch`) with what is left of the budget.
 *
 * @example
 * ```ts
 * import { defaultBenchConfig, runBench } from "./run.ts";
 * const config = { ...defaultBenchConfig({ quick: true, backends: ["cpu"] }), variants: ["diag" as const], lengths: [64], heads: 1, d: 8, torch: false };
 * const result = await runBench(config, { progressOutput: "none", log: () => {} });
 * console.log(result.rows.length, result.rows[0].status); // 1 ok
 * ```
 */
export async function runBench(config: BenchConfig, options: RunBenchOptions = {}): Promise<BenchResult> {
  checkBenchConfig(config);
  const log = options.log ?? ((line: string) => console.log(line));
  const start = performance.now();
  const elapsedS = () => (performance.now() - start) / 1000;
  const previous = tf.getBackend();
  for (const backend of config.backends) await initBackend({ backend, quiet: true });
  const devices = new Map<string, string>();
  // PyTorch runs on the CPU (torch_attention.py uses no accelerator).
  for (const backend of [...config.backends, "torch"]) devices.set(backend, await deviceOf(backend));

  const peak = await measurePeak(config.backends, log);

  const rows: BenchRow[] = [];
  const flopsOf = (variant: VariantName, n: number, causal: boolean, extra: Record<string, unknown> = {}) =>
    flopCount(variant, { batch: config.batch, heads: config.heads, n, dk: config.d, causal, options: extra });
  const total = config.lengths.length * config.backends.length * config.variants.length * config.causal.length;
  const bar = progress({ total, label: "bench", output: options.progressOutput ?? "auto" });
  // Why a configuration stopped growing n: the status and note of every longer row.
  const stopped = new Map<string, { status: string; note: string }>();
  const last = new Map<string, { ms: number; flops: number; peakMb: number; n: number }>();
  const capMs = config.maxRunS * 1000;
  // PyTorch runs last and is much faster; it gets what is left of the budget, at least TORCH_MIN_BUDGET_S.
  const tfjsBudgetS = config.torch ? config.totalBudgetS * TFJS_BUDGET_SHARE : config.totalBudgetS;
  for (const n of config.lengths) {
    for (const backend of config.backends) {
      for (const variant of config.variants) {
        for (const causal of config.causal) {
          const key = `${backend}|${variant}|${causal}`;
          const row = emptyRow({ backend, device: devices.get(backend)!, variant, causal, n }, config);
          rows.push(row);
          bar.tick(1, { backend, variant, n });
          let extra: Record<string, unknown> = {};
          // A variant holding n × n buffers runs by query blocks, or not at all, where the memory plan says so.
          const plan = memoryPlan(variant, n, config);
          if (plan !== null) {
            if (plan.mode === "skip") {
              row.status = "skipped (memory)";
              row.note = `n×n buffers ≈ ${(plan.bytes / 2 ** 30).toFixed(1)} GiB > budget`;
            } else if (plan.mode === "blocked") {
              extra = { queryBlockSize: plan.queryBlockSize };
              row.note = `query blocks of ${plan.queryBlockSize} (whole n×n would need ≈ ${
                ((config.batch * config.heads * n * n * 4 * SOFTMAX_LIVE_MATRICES) / 2 ** 30).toFixed(1)
              } GiB)`;
            }
          }
          const flops = flopsOf(variant, n, causal, extra);
          row.gflop_fwd = flops.fwd / 1e9;
          row.gflop_fwd_bwd = flops.fwdBwd / 1e9;
          if (row.status !== "") continue;
          if (backend === "cpu" && n > config.cpuMaxN) {
            row.status = "skipped (cpu n limit)";
            row.note = cpuCapNote(config.cpuMaxN);
            continue;
          }
          if (stopped.has(key)) {
            Object.assign(row, stopped.get(key));
            continue;
          }
          const before = last.get(key);
          const predicted = before ? before.ms * flops.fwdBwd / before.flops : 0;
          if (predicted > PREDICTED_CAP_FACTOR * capMs) {
            row.status = "skipped (time)";
            row.note = `forward+backward predicted ≈ ${(predicted / 1000).toFixed(0)} s`;
            stopped.set(key, { status: row.status, note: row.note });
            continue;
          }
          // Peak memory of every variant here grows at most linearly in n (softmax runs by query blocks when large).
          const predictedMb = before ? before.peakMb * n / before.n : 0;
          if (backend === "wasm" && predictedMb > WASM_HEAP_BUDGET_MB) {
            row.status = "skipped (memory)";
            row.note = `wasm heap: predicted peak ≈ ${predictedMb.toFixed(0)} MB > ${WASM_HEAP_BUDGET_MB} MB`;
            stopped.set(key, { status: row.status, note: row.note });
            continue;
          }
          if (elapsedS() > tfjsBudgetS) {
            row.status = "skipped (total budget)";
            row.note = `bench ran past ${tfjsBudgetS.toFixed(0)} s`;
            continue;
          }
          try {
            const m = await measureAttention({
              variant,
              n,
              batch: config.batch,
              heads: config.heads,
              dk: config.d,
              causal,
              options: extra,
              backend,
              repeats: config.repeats,
              maxRunMs: capMs,
            });
            Object.assign(row, {
              status: "ok",
              fwd_ms: m.fwdMs,
              fwd_bwd_ms: m.fwdBwdMs,
              repeats: m.repeats,
              peak_mb_fwd: m.peakBytes! / MB,
              peak_mb_fwd_bwd: m.peakBytesFwdBwd! / MB,
            });
            const slowest = Math.max(m.warmupMs, m.fwdBwdMs!);
            last.set(key, { ms: m.fwdBwdMs!, flops: flops.fwdBwd, peakMb: m.peakBytesFwdBwd! / MB, n });
            if (slowest > capMs) {
              const note = `n = ${n} took ${(slowest / 1000).toFixed(1)} s > ${config.maxRunS} s`;
              stopped.set(key, { status: "skipped (time)", note });
            }
          } catch (err) {
            row.status = "failed";
            row.note = (err as Error).message.split("\n")[0].slice(0, 160);
            stopped.set(key, { status: "skipped (time)", note: `failed at n = ${n}` });
          }
        }
      }
    }
  }
  await bar.done();

  let torch: BenchResult["torch"] = {
    ran: false,
    detail: "not requested (--no-torch)",
    sgemmGflops: null,
    threads: null,
  };
  let torchResult: TorchBenchResult | null = null;
  if (config.torch) {
    const probe = await probeTorch();
    if (!probe.available) {
      torch = {
        ran: false,
        detail: `PyTorch not available (${probe.detail}); no torch rows`,
        sgemmGflops: null,
        threads: null,
      };
      log(`bench: ${torch.detail}`);
    } else {
      // PyTorch at one thread and at every core, each row kept from the faster pass (on this 2-core machine one
      // thread was the faster in some runs, two in others): a fixed count would flatter attnlab.
      const counts = [...new Set([navigator.hardwareConcurrency, 1])];
      const passes: TorchBenchResult[] = [];
      for (const [i, threads] of counts.entries()) {
        const left = config.totalBudgetS - elapsedS();
        passes.push(
          await runTorchBench({
            ...torchPlan(config),
            batch: config.batch,
            heads: config.heads,
            d: config.d,
            causal: config.causal,
            repeats: config.repeats,
            max_run_s: config.maxRunS,
            // The passes share what is left of the budget.
            budget_s: Math.max(TORCH_MIN_BUDGET_S, left / (counts.length - i)),
            threads,
          }),
        );
      }
      torchResult = fasterTorchRows(passes);
      torch = {
        ran: true,
        detail: `PyTorch ${torchResult.torch}, the faster of ${counts.join(" and ")} thread(s) per row`,
        sgemmGflops: torchResult.sgemm.gflops,
        threads: torchResult.threads,
      };
    }
  }

  for (const t of torchResult ? withTorchMemorySkips(torchResult.rows, config) : []) {
    const variant = t.variant as VariantName;
    const row = emptyRow(
      { backend: "torch", device: devices.get("torch")!, variant, causal: t.causal, n: t.n },
      config,
    );
    row.status = t.status;
    row.note = t.note ?? "";
    if (t.status === "ok") {
      Object.assign(row, { fwd_ms: t.fwd_ms, fwd_bwd_ms: t.fwd_bwd_ms, repeats: t.repeats });
    }
    // PyTorch ran by query blocks where the memory plan says so.
    const plan = memoryPlan(variant, t.n, config);
    const flops = flopsOf(
      variant,
      t.n,
      t.causal,
      plan?.mode === "blocked" ? { queryBlockSize: plan.queryBlockSize } : {},
    );
    row.gflop_fwd = flops.fwd / 1e9;
    row.gflop_fwd_bwd = flops.fwdBwd / 1e9;
    rows.push(row);
  }

  if (previous && tf.getBackend() !== previous) await tf.setBackend(previous);
  fillDerived(rows, peak.gflops);
  return { config, rows, peak, torch, elapsedS: elapsedS() };
}

/**
 * One result from PyTorch passes at several thread counts: per (variant, n, causal), the ok row with the lowest
 * forward + backward time, its note naming the threads; a row no pass ran ok comes from the first pass. The sgemm
 * peak is the best pass's, `threads` the first pass's.
 *
 * @example
 * ```ts
 * import { fasterTorchRows } from "./run.ts";
 * const pass = (threads: number, ms: number) => ({
 *   torch: "2.0", threads, sgemm: { size: 64, ms: 1, gflops: 10 * threads },
 *   rows: [{ variant: "linear", n: 64, causal: true, status: "ok", fwd_ms: ms / 3, fwd_bwd_ms: ms, repeats: 1 }],
 * });
 * const best = fasterTorchRows([pass(2, 30), pass(1, 20)]);
 * console.log(best.rows[0].fwd_bwd_ms, best.rows[0].note, best.sgemm.gflops); // 20 1 thread 20
 * ```
 */
export function fasterTorchRows(passes: readonly TorchBenchResult[]): TorchBenchResult {
  if (passes.length === 0) throw new RangeError("fasterTorchRows: passes must hold at least one result");
  const key = (r: TorchRow) => `${r.variant}|${r.n}|${r.causal}`;
  const best = new Map<string, TorchRow>();
  for (const pass of passes) {
    for (const row of pass.rows) {
      const named = row.status === "ok"
        ? {
          ...row,
          note: [row.note, `${pass.threads} thread${pass.threads === 1 ? "" : "s"}`].filter(Boolean).join("; "),
        }
        : row;
      const held = best.get(key(row));
      const faster = held === undefined ||
        (named.status === "ok" && (held.status !== "ok" || named.fwd_bwd_ms! < held.fwd_bwd_ms!));
      if (faster) best.set(key(row), named);
    }
  }
  const peak = passes.reduce((a, b) => (b.sgemm.gflops > a.sgemm.gflops ? b : a));
  return { torch: passes[0].torch, threads: passes[0].threads, sgemm: peak.sgemm, rows: [...best.values()] };
}

/** PyTorch's rows plus a skip row for each length the memory budget held back, in length order. */
function withTorchMemorySkips(rows: TorchRow[], config: BenchConfig): TorchRow[] {
  const skips = config.variants.flatMap((variant) =>
    config.lengths.flatMap((n) => {
      const plan = memoryPlan(variant, n, config);
      if (plan?.mode !== "skip") return [];
      const note = `n×n buffers ≈ ${(plan.bytes / 2 ** 30).toFixed(1)} GiB > budget`;
      return config.causal.map((causal) => ({ variant, n, causal, status: "skipped (memory)", note }));
    })
  );
  return [...rows, ...skips].sort((a, b) => a.n - b.n);
}

function fillDerived(rows: BenchRow[], peakGflops: number): void {
  const index = (backend: string) =>
    new Map(
      rows.filter((r) => r.backend === backend && r.status === "ok").map((r) => [`${r.variant}|${r.causal}|${r.n}`, r]),
    );
  const cpu = index("cpu");
  const torch = index("torch");
  const ratio = (a: number | null | undefined, b: number | null) => (a && b ? a / b : null);
  for (const row of rows) {
    row.peak_gflops = peakGflops;
    if (row.status !== "ok") continue;
    const key = `${row.variant}|${row.causal}|${row.n}`;
    row.gflops_fwd = row.gflop_fwd / (row.fwd_ms! / 1000);
    row.gflops_fwd_bwd = row.gflop_fwd_bwd / (row.fwd_bwd_ms! / 1000);
    row.share_of_peak = row.gflops_fwd_bwd / peakGflops;
    if (row.backend !== "cpu") {
      row.speedup_vs_cpu_fwd = ratio(cpu.get(key)?.fwd_ms, row.fwd_ms);
      row.speedup_vs_cpu_fwd_bwd = ratio(cpu.get(key)?.fwd_bwd_ms, row.fwd_bwd_ms);
    }
    if (row.backend !== "torch") {
      row.speedup_vs_torch_fwd = ratio(torch.get(key)?.fwd_ms, row.fwd_ms);
      row.speedup_vs_torch_fwd_bwd = ratio(torch.get(key)?.fwd_bwd_ms, row.fwd_bwd_ms);
    }
  }
}

function fmt(value: number | null, digits: number): string {
  if (value === null || !Number.isFinite(value)) return "";
  if (Math.abs(value) >= 1000) return value.toFixed(0);
  return value.toPrecision(digits);
}

/**
 * Why the speed-up columns are empty where they are: one line each, printed under the bench table.
 *
 * @example
 * ```ts
 * import { speedupNotes } from "./run.ts";
 * console.log(speedupNotes([])[0].startsWith("x cpu, x torch:")); // true
 * ```
 */
export function speedupNotes(rows: readonly BenchRow[]): string[] {
  const notes = [
    "x cpu, x torch: that backend's fwd+bwd ms / this row's (higher is faster) at the same variant, causal and n; " +
    "empty where that backend has no ok row to compare with.",
  ];
  const cpu = rows.filter((r) => r.backend === "cpu");
  const capped = cpu.filter((r) => r.status === "skipped (cpu n limit)");
  if (rows.length > 0 && cpu.length === 0) notes.push("x cpu is empty throughout: the cpu backend was not measured.");
  if (capped.length > 0) {
    const first = capped.reduce((a, b) => (b.n < a.n ? b : a));
    notes.push(`x cpu is empty from n = ${first.n}: ${first.note}.`);
  }
  if (rows.length > 0 && !rows.some((r) => r.backend === "torch")) {
    notes.push("x torch is empty throughout: PyTorch did not run (see the torch line above).");
  }
  return notes;
}

/**
 * The bench rows as a fixed-width text table (the CSV holds every column), then {@linkcode speedupNotes}.
 *
 * @example
 * ```ts
 * import { formatBenchTable } from "./run.ts";
 * console.log(formatBenchTable([]).split("\n")[0].startsWith("backend")); // true
 * ```
 */
export function formatBenchTable(rows: readonly BenchRow[]): string {
  const both = new Set(rows.map((r) => r.causal)).size > 1;
  const header = [
    "backend",
    "device",
    "variant",
    ...(both ? ["causal"] : []),
    "n",
    "fwd ms",
    "fwd+bwd ms",
    "GFLOP/s",
    "% peak",
    "x cpu",
    "x torch",
    "peak MB",
    "status",
  ];
  const body = rows.map((r) => [
    r.backend,
    r.device,
    r.variant,
    ...(both ? [String(r.causal)] : []),
    String(r.n),
    fmt(r.fwd_ms, 3),
    fmt(r.fwd_bwd_ms, 3),
    fmt(r.gflops_fwd_bwd, 3),
    r.share_of_peak === null ? "" : (100 * r.share_of_peak).toFixed(2),
    fmt(r.speedup_vs_cpu_fwd_bwd, 3),
    fmt(r.speedup_vs_torch_fwd_bwd, 3),
    fmt(r.peak_mb_fwd_bwd, 3),
    r.status === "ok" ? (r.note ? `ok: ${r.note}` : "ok") : `${r.status}${r.note ? `: ${r.note}` : ""}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => cells[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < 3 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ")
      .trimEnd();
  return [line(header), ...body.map(line), "", ...speedupNotes(rows)].join("\n");
}
