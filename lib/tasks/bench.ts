/**
 * `deno task bench`: forward and forward + backward time of every attention variant on every loadable backend
 * (and in PyTorch when installed) at n = 256 … 65536, printed as a table and saved atomically as figures/bench.csv.
 * `--train`: a whole training step of each config and preset against its PyTorch twin (figures/bench_train.csv);
 * `--profile`: where one training step's time goes, kernel by kernel.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { type BackendName, BACKENDS, initBackend, loadableBackends } from "../backend.ts";
import { figuresDir } from "../env.ts";
import { writeFileAtomic } from "../figures/atomic.ts";
import { toCsv } from "../figures/csv.ts";
import { type BenchConfig, defaultBenchConfig, formatBenchTable, runBench } from "../bench/run.ts";
import { FLOP_VARIANTS } from "../bench/flops.ts";
import { formatProfile, profileStep } from "../bench/profile.ts";
import { formatPairedTable, runPairedBench } from "../bench/paired.ts";
import type { VariantName } from "../attention/mod.ts";
import {
  formatTrainBenchTable,
  runTrainBench,
  TRAIN_BENCH_CONFIG_NAMES,
  TRAIN_BENCH_CONFIGS,
  type TrainBenchConfigName,
  trainBenchModel,
} from "../bench/train_bench.ts";
import { type PresetName, PRESETS } from "../models/config.ts";
import { formatHelp, parseFlags, parseSeconds, runMain } from "./cli.ts";

const FLAGS = {
  quick: {
    type: "boolean",
    description:
      "n = 128, 256, one timed run, cpu up to 256 (for tests and CI); with --train or --profile: the small " +
      "config, vanilla and transnormer-t2, 2 rounds of 1 step",
  },
  train: {
    type: "boolean",
    description: "time a whole training step per config and preset against its PyTorch twin (figures/bench_train.csv)",
  },
  profile: { type: "boolean", description: "print where one training step's time goes, kernel by kernel" },
  paired: {
    type: "boolean",
    description: "time attention forward + backward against PyTorch in interleaved rounds, with the ratio's " +
      "interval (figures/bench_paired.csv)",
  },
  lengths: {
    type: "string",
    value: "LIST",
    description: "with --paired: sequence lengths, comma-separated (default 2048; quick 256)",
  },
  config: {
    type: "string",
    value: "LIST",
    description: `with --train or --profile: from ${TRAIN_BENCH_CONFIG_NAMES.join(", ")} (default both)`,
  },
  preset: {
    type: "string",
    value: "LIST",
    description: `with --train or --profile: from ${PRESETS.join(", ")} (default all)`,
  },
  rounds: {
    type: "string",
    value: "N",
    description:
      "with --train or --paired: interleaved rounds (default --train each config's: small 12, medium 5; --paired 8; " +
      "quick 2)",
  },
  steps: {
    type: "string",
    value: "N",
    description: "with --train: timed steps per side per round (default small 4, medium 1; quick 1)",
  },
  backends: {
    type: "string",
    value: "LIST",
    description: `comma-separated, from ${BACKENDS.join(", ")} (default: every backend that loads)`,
  },
  variants: { type: "string", value: "LIST", description: `comma-separated, from ${FLOP_VARIANTS.join(", ")}` },
  "max-n": { type: "string", value: "N", description: "longest sequence length (default 65536; quick 256)" },
  repeats: {
    type: "string",
    value: "N",
    description: "timed runs per configuration at most (default 3; quick 1); with --paired: per side per round",
  },
  out: {
    type: "string",
    value: "PATH",
    description: "CSV path (default figures/bench.csv; --train: figures/bench_train.csv; --profile: none)",
  },
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
Columns: the backend and its device (the CPU's model and logical cores, or the WebGPU adapter), median ms,
GFLOP/s from the matmul FLOP count (lib/bench/flops.ts), share of the sgemm peak measured in the same run,
speed-up over the cpu backend (empty past --cpu-max-n) and over PyTorch (when installed), peak MB from
tf.profile. Every timed run's outputs are read back with \`await tensor.data()\`, as a GPU backend needs.

--train times a whole training update (forward, backward, AdamW with clipping) of the model with each preset,
in two configs (small: 4 layers, d 64, 4 heads, 16 × 128 bytes, the notebooks' shared LMs; medium: 6 layers,
d 256, 4 heads, 8 × 512), against the same update of its PyTorch twin (lib/bench/torch_twin.ts) in interleaved
rounds: ms/step, tokens/s, GFLOP/s, share of the sgemm peak, peak MB (blas: its data buffers; PyTorch: its
allocator's events; views count in neither), and the ratio attnlab / PyTorch with its
95% interval over rounds. PyTorch on the reference BLAS is not timed (the ratio would flatter attnlab).
--paired times attention forward + backward (causal, batch 1, 8 heads, d 64; default n = 2048, every variant)
in attnlab and in PyTorch in interleaved rounds, PyTorch at every thread count each round and kept at its fastest:
ms and GFLOP/s per side, the ratio attnlab / PyTorch with its 95% interval over rounds (paired by round), and a
verdict: faster or slower when the whole interval is on one side of 1, else within noise.
--profile prints a training step's kernels per config and preset (the mean of 3 profiled steps; quick: 1):
calls, ms, share of the step, new MB, and the time spent outside kernels.`;

const ATTENTION_FLAGS = [
  "backends",
  "variants",
  "max-n",
  "repeats",
  "bidirectional",
  "max-run-s",
  "budget-s",
  "memory-gb",
  "cpu-max-n",
] as const;
const TRAIN_FLAGS = ["config", "preset", "rounds", "steps"] as const;
/** Flags that --paired takes. */
const PAIRED_FLAGS = ["paired", "quick", "variants", "lengths", "rounds", "repeats", "no-torch", "out"] as const;

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
  for (const flag of TRAIN_FLAGS) {
    if (values[flag] !== undefined) throw new Error(`--${flag} needs --train, --profile or --paired`);
  }
  if (values.lengths !== undefined) throw new Error("--lengths needs --paired (the full bench grows n to --max-n)");
  if (values.train === true || values.profile === true || values.paired === true) {
    throw new Error(
      "configFromFlags reads the attention bench's flags; use trainFlags for --train and --profile, pairedFlags " +
        "for --paired",
    );
  }
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

/** What `--train` or `--profile` runs, from {@linkcode trainFlags}. */
export interface TrainFlags {
  mode: "train" | "profile";
  configs: TrainBenchConfigName[];
  presets: PresetName[];
  /** --train only: interleaved rounds, timed steps per side per round (undefined: each config's own), warm-up steps. */
  rounds: number | undefined;
  steps: number | undefined;
  warmup: number;
  /** --train only: whether to time PyTorch (--no-torch: false). */
  torch: boolean;
  quick: boolean;
  /** The CSV to write (--train default figures/bench_train.csv), or null (--profile without --out). */
  out: string | null;
}

/**
 * The run `--train` or `--profile` asks for, from command-line flags. The attention bench's own flags are an error
 * here, as are --rounds and --steps with --profile.
 *
 * @example
 * ```ts
 * import { trainFlags } from "./bench.ts";
 * const flags = trainFlags(["--train", "--quick", "--no-torch"]);
 * console.log(flags.mode, flags.configs, flags.presets, flags.rounds, flags.torch); // train [ "small" ] [ "vanilla", "transnormer-t2" ] 2 false
 * ```
 */
export function trainFlags(args: readonly string[]): TrainFlags {
  const { values } = parseFlags(args, FLAGS, { command: "bench" });
  const train = values.train === true, profile = values.profile === true;
  if (train && profile) throw new Error("--train and --profile are separate runs; give one of them");
  if (values.paired === true) throw new Error("--paired is a separate run from --train and --profile; give one");
  if (values.lengths !== undefined) throw new Error("--lengths needs --paired");
  if (!train && !profile) throw new Error("trainFlags: give --train or --profile");
  const mode = train ? "train" : "profile";
  for (const flag of ATTENTION_FLAGS) {
    if (values[flag] !== undefined) {
      throw new Error(
        `--${flag} belongs to the attention bench, not --${mode}; valid with --${mode}: ${
          ["quick", "config", "preset", ...(train ? ["rounds", "steps", "no-torch"] : []), "out"].map((f) => `--${f}`)
            .join(", ")
        }`,
      );
    }
  }
  if (profile) {
    for (const flag of ["rounds", "steps", "no-torch"] as const) {
      if (values[flag] !== undefined) {
        const why = flag === "no-torch" ? "it runs no PyTorch" : "it times one step, in no rounds";
        throw new Error(`--${flag} applies to --train, not --profile (${why})`);
      }
    }
  }
  const quick = values.quick === true;
  const configs = typeof values.config === "string"
    ? parseList(values.config, "config", TRAIN_BENCH_CONFIG_NAMES)
    : quick
    ? ["small" as const]
    : [...TRAIN_BENCH_CONFIG_NAMES];
  const presets = typeof values.preset === "string"
    ? parseList(values.preset, "preset", PRESETS)
    : quick
    ? ["vanilla" as const, "transnormer-t2" as const]
    : [...PRESETS];
  const rounds = typeof values.rounds === "string" ? positiveInteger(values.rounds, "rounds") : quick ? 2 : undefined;
  const steps = typeof values.steps === "string" ? positiveInteger(values.steps, "steps") : quick ? 1 : undefined;
  const out = typeof values.out === "string"
    ? resolve(values.out)
    : train
    ? join(figuresDir(), "bench_train.csv")
    : null;
  return {
    mode,
    configs,
    presets,
    rounds,
    steps,
    warmup: quick ? 0 : 1,
    torch: values["no-torch"] !== true,
    quick,
    out,
  };
}

/** What `--paired` runs, from {@linkcode pairedFlags}. */
export interface PairedFlags {
  variants: VariantName[];
  lengths: number[];
  rounds: number;
  repeats: number;
  torch: boolean;
  /** The CSV to write: --out, default figures/bench_paired.csv. */
  out: string;
}

/**
 * The run `--paired` asks for, from command-line flags: --variants (default every variant), --lengths (default 2048),
 * --rounds (8), --repeats (3), --no-torch, --out; --quick: n = 256, 2 rounds of 1 run. Any other flag is an error.
 *
 * @example
 * ```ts
 * import { pairedFlags } from "./bench.ts";
 * const flags = pairedFlags(["--paired", "--variants", "local,cosformer", "--lengths", "1024,2048"]);
 * console.log(flags.variants, flags.lengths, flags.rounds, flags.repeats); // [ "local", "cosformer" ] [ 1024, 2048 ] 8 3
 * ```
 */
export function pairedFlags(args: readonly string[]): PairedFlags {
  const { values } = parseFlags(args, FLAGS, { command: "bench" });
  if (values.paired !== true) throw new Error("pairedFlags: give --paired");
  for (const [flag, value] of Object.entries(values)) {
    if (value !== undefined && !(PAIRED_FLAGS as readonly string[]).includes(flag)) {
      throw new Error(
        `--${flag} does not apply to --paired; valid with --paired: ${
          PAIRED_FLAGS.filter((f) => f !== "paired").map((f) => `--${f}`).join(", ")
        }`,
      );
    }
  }
  const quick = values.quick === true;
  const variants = typeof values.variants === "string"
    ? parseList(values.variants, "variants", FLOP_VARIANTS)
    : [...FLOP_VARIANTS];
  const lengths = typeof values.lengths === "string"
    ? [...new Set(values.lengths.split(",").map((s) => positiveInteger(s.trim(), "lengths")))]
    : [quick ? 256 : 2048];
  return {
    variants,
    lengths,
    rounds: typeof values.rounds === "string" ? positiveInteger(values.rounds, "rounds") : quick ? 2 : 8,
    repeats: typeof values.repeats === "string" ? positiveInteger(values.repeats, "repeats") : quick ? 1 : 3,
    torch: values["no-torch"] !== true,
    out: typeof values.out === "string" ? resolve(values.out) : join(figuresDir(), "bench_paired.csv"),
  };
}

function describeConfig(name: TrainBenchConfigName): string {
  const c = TRAIN_BENCH_CONFIGS[name];
  return `${name} (${c.layers} layers, d ${c.dModel}, ${c.heads} heads, ${c.batch} × ${c.n})`;
}

async function writeCsv(out: string, rows: Record<string, string | number | boolean | null>[]): Promise<void> {
  await mkdir(dirname(out), { recursive: true });
  await writeFileAtomic(out, toCsv(rows, { digits: 5 }));
}

async function runTrain(flags: TrainFlags): Promise<number> {
  const backend = tf.getBackend();
  console.log(
    `bench --train: backend ${backend}; configs ${flags.configs.map(describeConfig).join(", ")}; ` +
      `presets ${flags.presets.join(", ")}; ` +
      flags.configs.map((c) =>
        `${flags.rounds ?? TRAIN_BENCH_CONFIGS[c].rounds} rounds of ${flags.steps ?? TRAIN_BENCH_CONFIGS[c].steps} ` +
        `steps per side (${c})`
      ).join(", "),
  );
  const result = await runTrainBench({
    configs: flags.configs,
    presets: flags.presets,
    ...(flags.rounds === undefined ? {} : { rounds: flags.rounds }),
    ...(flags.steps === undefined ? {} : { steps: flags.steps }),
    warmup: flags.warmup,
    torch: flags.torch,
    onProgress: (line) => console.log(line),
  });
  console.log(
    `bench --train: sgemm peak ${result.peak.gflops.toFixed(1)} GFLOP/s (${result.peak.size}³ on ${backend}, ` +
      `${result.device}); ` +
      `torch: ${result.torch.status}, ${result.torch.detail}` +
      (result.torch.info ? `, its sgemm ${result.torch.info.sgemmGflops.toFixed(1)} GFLOP/s` : ""),
  );
  console.log(formatTrainBenchTable(result.rows));
  await writeCsv(flags.out!, result.rows);
  console.log(`bench: wrote ${flags.out} (${result.rows.length} rows) in ${result.elapsedS.toFixed(0)} s`);
  return 0;
}

async function runPaired(flags: PairedFlags): Promise<number> {
  const backend = tf.getBackend();
  console.log(
    `bench --paired: backend ${backend}; variants ${flags.variants.join(", ")}; n ${flags.lengths.join(", ")}; ` +
      `batch 1, 8 heads, d 64, causal; ${flags.rounds} rounds of ${flags.repeats} runs per side`,
  );
  const result = await runPairedBench({
    variants: flags.variants,
    lengths: flags.lengths,
    rounds: flags.rounds,
    repeats: flags.repeats,
    torch: flags.torch,
    onProgress: (line) => console.log(line),
  });
  console.log(
    `bench --paired: sgemm peak ${result.peak.gflops.toFixed(1)} GFLOP/s (${result.peak.size}³ on ${backend}, ` +
      `${result.device}); torch: ${result.torch.status}, ${result.torch.detail}` +
      (result.torch.info ? `, its sgemm ${result.torch.info.sgemmGflops.toFixed(1)} GFLOP/s` : ""),
  );
  console.log(formatPairedTable(result.rows));
  await writeCsv(flags.out, result.rows);
  console.log(`bench: wrote ${flags.out} (${result.rows.length} rows) in ${result.elapsedS.toFixed(0)} s`);
  return 0;
}

async function runProfile(flags: TrainFlags): Promise<number> {
  const backend = tf.getBackend();
  const rows: Record<string, string | number | boolean | null>[] = [];
  for (const config of flags.configs) {
    for (const preset of flags.presets) {
      const { model, batch } = trainBenchModel(config, preset);
      try {
        const p = await profileStep(model, batch, {
          // Three: the first updates run before V8 has optimised the kernels (the AdamW loop took 25 ms in each of the
          // first two small updates, 2 ms from the third on).
          warmup: flags.quick ? 1 : 3,
          profiled: flags.quick ? 1 : 3,
          plainSteps: flags.quick ? 1 : 3,
        });
        console.log(
          `\n${describeConfig(config)}, ${preset}, ${backend} backend on ${p.device}: one training step ` +
            `(mean of ${p.profiled})`,
        );
        console.log(formatProfile(p));
        const base = { config, preset, backend, device: p.device };
        for (const k of p.kernels) {
          rows.push({
            ...base,
            kernel: k.name,
            custom: k.custom,
            calls: k.calls,
            ms: k.ms,
            share: k.share,
            bytes: k.bytes,
          });
        }
        const total = (kernel: string, ms: number | null, calls: number | null = null) =>
          rows.push({
            ...base,
            kernel,
            custom: null,
            calls,
            ms,
            share: ms === null ? null : ms / p.wallMs,
            bytes: null,
          });
        total("(kernels, total)", p.kernelMs, p.calls);
        total("(outside kernels)", p.overheadMs);
        total("(step, profiled)", p.wallMs);
        total("(step without profiler)", p.plainMs);
      } finally {
        model.dispose();
      }
    }
  }
  if (flags.out !== null) {
    await writeCsv(flags.out, rows);
    console.log(`bench: wrote ${flags.out} (${rows.length} rows)`);
  }
  return 0;
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
  if (values.paired === true) {
    const flags = pairedFlags(args);
    await initBackend({ quiet: true });
    return await runPaired(flags);
  }
  if (values.train === true || values.profile === true) {
    const flags = trainFlags(args);
    await initBackend({ quiet: true });
    return flags.mode === "train" ? await runTrain(flags) : await runProfile(flags);
  }
  await initBackend({ quiet: true });
  // A software adapter (lavapipe) is never picked by default, but runs when --backends names webgpu.
  const namesWebgpu = typeof values.backends === "string" &&
    values.backends.split(",").map((b) => b.trim()).includes("webgpu");
  const config = configFromFlags(args, await loadableBackends({ softwareWebgpu: namesWebgpu }));
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
  await writeCsv(out, result.rows);
  console.log(`bench: wrote ${out} (${result.rows.length} rows) in ${result.elapsedS.toFixed(0)} s`);
  return 0;
}

if (import.meta.main) await runMain(main);
