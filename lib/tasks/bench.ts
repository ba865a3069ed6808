/**
 * `deno task bench`: forward and forward + backward time of every attention variant on every loadable backend
 * (and in PyTorch when installed) at n = 256 … 65536, printed as a table and saved atomically as figures/bench.csv.
 *
 * @module
 */

import { mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { type BackendName, BACKENDS, initBackend, loadableBackends } from "../backend.ts";
import { figuresDir } from "../env.ts";
import { writeFileAtomic } from "../figures/atomic.ts";
import { toCsv } from "../figures/csv.ts";
import { type BenchConfig, defaultBenchConfig, formatBenchTable, runBench } from "../bench/run.ts";
import { FLOP_VARIANTS } from "../bench/flops.ts";
import { formatHelp, parseFlags, parseSeconds, runMain } from "./cli.ts";

const FLAGS = {
  quick: { type: "boolean", description: "n = 128, 256, one timed run, cpu up to 256 (for tests and CI)" },
  backends: {
    type: "string",
    value: "LIST",
    description: `comma-separated, from ${BACKENDS.join(", ")} (default: every backend that loads)`,
  },
  variants: { type: "string", value: "LIST", description: `comma-separated, from ${FLOP_VARIANTS.join(", ")}` },
  "max-n": { type: "string", value: "N", description: "longest sequence length (default 65536; quick 256)" },
  repeats: { type: "string", value: "N", description: "timed runs per configuration at most (default 3; quick 1)" },
  out: { type: "string", value: "PATH", description: "CSV path (default figures/bench.csv)" },
  bidirectional: { type: "boolean", description: "also measure the bidirectional (non-causal) setting" },
  "no-torch": { type: "boolean", description: "skip PyTorch even when it is installed" },
  "max-run-s": {
    type: "string",
    value: "SECONDS",
    description: "stop growing n for a backend and variant once one run exceeds this (default 4; quick 5)",
  },
  "budget-s": {
    type: "string",
    value: "SECONDS",
    description: "start no new measurement after this long (default 540; quick 60)",
  },
  "memory-gb": { type: "string", value: "GB", description: "budget for softmax's n×n buffers, GiB (default 4)" },
  "cpu-max-n": {
    type: "string",
    value: "N",
    description: "longest n on the slow cpu backend (default 512; quick 256)",
  },
  help: { type: "boolean", description: "show this help" },
} as const;

const DESCRIPTION =
  `Times every attention variant (causal; --bidirectional adds the other setting), batch 1, 8 heads, d = 64,
forward and forward + backward (gradients for q, k, v through a random cotangent), on every backend that loads,
at n = 256, 512, ..., 65536. Bounded: softmax lengths whose n×n buffers exceed the memory budget run by query
blocks (in PyTorch too) or are skipped; a backend and variant stop growing n once one run exceeds --max-run-s;
the cpu backend stops at --cpu-max-n; nothing new starts after --budget-s. Every skip is a row that says why.
Columns: median ms, GFLOP/s from the matmul FLOP count (lib/bench/flops.ts), share of the sgemm peak measured
in the same run, speed-up over the cpu backend (empty past --cpu-max-n) and over PyTorch (when installed),
peak MB from tf.profile.`;

function positiveInteger(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} must be a positive integer, got "${value}"`);
  return n;
}

function parseList<T extends string>(value: string, flag: string, valid: readonly T[]): T[] {
  const items = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (items.length === 0) throw new Error(`--${flag} needs at least one name from ${valid.join(", ")}`);
  for (const item of items) {
    if (!(valid as readonly string[]).includes(item)) {
      throw new Error(`--${flag}: unknown name "${item}"; expected some of ${valid.join(", ")}`);
    }
  }
  return [...new Set(items)] as T[];
}

/**
 * The bench config from command-line flags; `loadable` are the backends that load here.
 *
 * @example
 * ```ts
 * import { configFromFlags } from "./bench.ts";
 * const config = configFromFlags(["--quick", "--variants", "linear"], ["blas", "cpu"]);
 * console.log(config.variants.join(","), config.backends.join(",")); // linear blas,cpu
 * ```
 */
export function configFromFlags(args: readonly string[], loadable: readonly BackendName[]): BenchConfig {
  const { values } = parseFlags(args, FLAGS, { command: "bench" });
  const quick = values.quick === true;
  let backends = [...loadable];
  if (typeof values.backends === "string") {
    backends = parseList(values.backends, "backends", BACKENDS);
    const missing = backends.filter((b) => !loadable.includes(b));
    if (missing.length > 0) {
      throw new Error(
        `--backends: ${missing.join(", ")} cannot load on this machine; loadable: ${loadable.join(", ")}`,
      );
    }
  }
  const config = defaultBenchConfig({ quick, backends });
  if (typeof values.variants === "string") config.variants = parseList(values.variants, "variants", FLOP_VARIANTS);
  if (typeof values["max-n"] === "string") {
    const maxN = positiveInteger(values["max-n"], "max-n");
    const all = Array.from({ length: 9 }, (_, i) => 256 * 2 ** i);
    const pool = quick ? [64, 128, 256, ...all.slice(1)] : all;
    config.lengths = pool.filter((n) => n <= maxN);
    if (config.lengths.length === 0) throw new Error(`--max-n must be at least ${pool[0]}, got ${maxN}`);
    if (quick) config.lengths = config.lengths.slice(-2);
  }
  if (typeof values.repeats === "string") config.repeats = positiveInteger(values.repeats, "repeats");
  if (values.bidirectional === true) config.causal = [true, false];
  if (values["no-torch"] === true) config.torch = false;
  if (typeof values["max-run-s"] === "string") config.maxRunS = parseSeconds(values["max-run-s"], "--max-run-s");
  if (typeof values["budget-s"] === "string") config.totalBudgetS = parseSeconds(values["budget-s"], "--budget-s");
  if (typeof values["memory-gb"] === "string") {
    const gb = Number(values["memory-gb"]);
    if (!(gb > 0)) throw new Error(`--memory-gb must be a number > 0, got "${values["memory-gb"]}"`);
    config.memoryBudgetBytes = gb * 2 ** 30;
  }
  if (typeof values["cpu-max-n"] === "string") config.cpuMaxN = positiveInteger(values["cpu-max-n"], "cpu-max-n");
  return config;
}

/**
 * Runs the bench task with `args`; returns the exit status.
 *
 * @example
 * ```ts
 * import { main } from "./bench.ts";
 * console.log(typeof main); // function
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const { values } = parseFlags(args, FLAGS, { command: "bench" });
  if (values.help) {
    console.log(formatHelp("deno task bench [flags]", DESCRIPTION, FLAGS));
    return 0;
  }
  await initBackend({ quiet: true });
  const config = configFromFlags(args, await loadableBackends());
  const out = typeof values.out === "string" ? resolve(values.out) : join(figuresDir(), "bench.csv");
  console.log(
    `bench: backends ${config.backends.join(", ")}; variants ${config.variants.join(", ")}; ` +
      `n ${config.lengths[0]}..${
        config.lengths.at(-1)
      }; batch ${config.batch}, ${config.heads} heads, d ${config.d}; ` +
      `${config.causal.length > 1 ? "causal and bidirectional" : "causal"}`,
  );
  const result = await runBench(config);
  console.log(
    `bench: sgemm peak ${result.peak.gflops.toFixed(1)} GFLOP/s (${result.peak.note}); ` +
      `torch: ${result.torch.detail}${
        result.torch.sgemmGflops ? `, its sgemm ${result.torch.sgemmGflops.toFixed(1)} GFLOP/s` : ""
      }`,
  );
  console.log(formatBenchTable(result.rows));
  await mkdir(dirname(out), { recursive: true });
  await writeFileAtomic(out, toCsv(result.rows, { digits: 5 }));
  console.log(`bench: wrote ${out} (${result.rows.length} rows) in ${result.elapsedS.toFixed(0)} s`);
  return 0;
}

if (import.meta.main) await runMain(main);
