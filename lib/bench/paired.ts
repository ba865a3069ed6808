/**
 * The paired attention benchmark behind `deno task bench --paired`: one attention computation, forward + backward,
 * timed in attnlab and in its PyTorch twin (torch_attention.py, run by the twin server of torch_twin.ts) in
 * interleaved rounds, PyTorch at every thread count in each round. The ratio attnlab / PyTorch comes with a 95%
 * interval over rounds, paired by round, so a change in the machine's load hits both sides; the unpaired full bench
 * (run.ts) times each side once, minutes apart, and on this shared machine a pass moves by 30–50%.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { setFiniteChecks, type VariantName, variants } from "../attention/mod.ts";
import { checkOptionKeys, positiveInteger } from "../_options.ts";
import { median, ratioInterval } from "../stats/mod.ts";
import { timesMsAsync } from "../timing.ts";
import { deviceOf } from "./device.ts";
import { FLOP_VARIANTS, flopCount } from "./flops.ts";
import { attentionRuns, type SgemmPeak, sgemmPeak } from "./measure.ts";
import { softmaxPlan } from "./run.ts";
import { fastestThreadCount, type TorchStatus } from "./train_bench.ts";
import { TorchTwin, type TwinAttentionSpec, type TwinInfo } from "./torch_twin.ts";

/** What the paired bench needs of PyTorch: {@linkcode TorchTwin}, or a stand-in in tests. */
export interface AttentionTwin {
  info: TwinInfo;
  /** Sets PyTorch's threads; without it every round times the twin's own count. */
  setThreads?(threads: number): Promise<number>;
  timeAttention(spec: TwinAttentionSpec, options: { warmup?: number; repeats: number }): Promise<number[]>;
  close(): Promise<void>;
}

/** Options of {@linkcode runPairedBench}. */
export interface PairedBenchOptions {
  /** Default every variant with a FLOP count (FLOP_VARIANTS). */
  variants?: readonly VariantName[];
  /** Sequence lengths; default [2048], the length issue 15's goal names. */
  lengths?: readonly number[];
  /** Default 1. */
  batch?: number;
  /** Default 8. */
  heads?: number;
  /** dk = dv; default 64. */
  d?: number;
  /** Default true (the language-model setting). */
  causal?: boolean;
  /** Interleaved rounds per row; default 8. */
  rounds?: number;
  /** Timed runs per side (and per PyTorch thread count) per round, after one untimed; default 3. */
  repeats?: number;
  /** The most threads PyTorch may use: each round times it at 1 … threads; default navigator.hardwareConcurrency. */
  threads?: number;
  /** Time PyTorch; default true. */
  torch?: boolean;
  /** A started twin to use (not closed here); default one started here and closed at the end. */
  twin?: AttentionTwin;
  /** Softmax lengths whose n × n buffers exceed this run by query blocks on both sides (run.ts's softmaxPlan). */
  memoryBudgetBytes?: number;
  /** Size of the square sgemm timed as the peak; default 1024. */
  sgemmSize?: number;
  /** Receives a line per round. Default none. */
  onProgress?: (line: string) => void;
}

/** One row of figures/bench_paired.csv. */
export interface PairedBenchRow {
  [column: string]: string | number | boolean | null;
  variant: string;
  causal: boolean;
  n: number;
  batch: number;
  heads: number;
  d: number;
  backend: string;
  device: string;
  /** "ok", or "skipped (memory)". */
  status: string;
  note: string;
  rounds: number;
  /** Timed runs per side per round. */
  repeats: number;
  gflop_fwd_bwd: number;
  /** Median of every timed attnlab run. */
  attnlab_ms: number | null;
  attnlab_gflops: number | null;
  attnlab_share_of_peak: number | null;
  torch_status: TorchStatus;
  torch_note: string;
  /** The thread count kept (the fastest over the run, fastestThreadCount); its runs give the PyTorch columns. */
  torch_threads: number | null;
  torch_ms: number | null;
  torch_gflops: number | null;
  torch_share_of_peak: number | null;
  /** attnlab / PyTorch: the ratio of the geometric means of the rounds' medians (below 1: attnlab is faster). */
  ratio: number | null;
  /** Its 95% interval over rounds, paired (null with fewer than 2 rounds). */
  ratio_low: number | null;
  ratio_high: number | null;
  /** By {@linkcode pairedVerdict}: "faster", "slower", "within noise", or "" without a ratio. */
  verdict: string;
  /** The sgemm peak measured in the same run, GFLOP/s. */
  peak_gflops: number;
}

/** What {@linkcode pairedBenchRow} builds a row from. */
export interface PairedBenchRowInput {
  variant: string;
  causal: boolean;
  n: number;
  batch: number;
  heads: number;
  d: number;
  backend: string;
  device: string;
  /** Forward + backward matmul FLOPs (flopCount(...).fwdBwd). */
  flopsFwdBwd: number;
  peakGflops: number;
  /** Per round, attnlab's timed runs in ms. */
  attnlabMs: readonly (readonly number[])[];
  torch: {
    status: TorchStatus;
    note: string;
    /** Per thread count (null: the twin's own), per round, PyTorch's runs; paired with attnlab's by round. */
    msByThreads: ReadonlyMap<number | null, readonly (readonly number[])[]> | null;
  };
  note?: string;
}

/**
 * The verdict on a ratio attnlab / PyTorch from its interval: "faster" when the whole interval is below 1, "slower"
 * when it is above 1, else "within noise" (also when there is no interval, with one round).
 *
 * @example
 * ```ts
 * import { pairedVerdict } from "./paired.ts";
 * console.log(pairedVerdict(0.7, 0.9), pairedVerdict(0.9, 1.1), pairedVerdict(1.05, 1.3)); // faster within noise slower
 * ```
 */
export function pairedVerdict(low: number | null, high: number | null): string {
  if (low === null || high === null || !Number.isFinite(low) || !Number.isFinite(high)) return "within noise";
  if (high < 1) return "faster";
  if (low > 1) return "slower";
  return "within noise";
}

/**
 * One row of the paired bench from its run times: attnlab's median, PyTorch's at its fastest thread count, GFLOP/s
 * (FLOPs / ms / 1e6) and shares of the sgemm peak, and the ratio attnlab / PyTorch of the rounds' medians with its
 * paired interval and {@linkcode pairedVerdict}.
 *
 * @example
 * ```ts
 * import { pairedBenchRow } from "./paired.ts";
 * const row = pairedBenchRow({
 *   variant: "linear", causal: true, n: 2048, batch: 1, heads: 8, d: 64, backend: "blas", device: "cpu",
 *   flopsFwdBwd: 4e9, peakGflops: 200, attnlabMs: [[20, 21, 19], [40, 40, 41], [30, 29, 30]],
 *   torch: {
 *     status: "ok", note: "",
 *     msByThreads: new Map([[1, [[50], [100], [75]]], [2, [[40], [80], [60]]]]),
 *   },
 * });
 * // Two threads were PyTorch's faster count; every round attnlab took half its time.
 * console.log(row.torch_threads, row.ratio?.toFixed(3), row.ratio_low?.toFixed(3), row.verdict); // 2 0.500 0.500 faster
 * console.log(row.attnlab_ms, row.attnlab_gflops?.toFixed(1)); // 30 133.3
 * ```
 */
export function pairedBenchRow(input: PairedBenchRowInput): PairedBenchRow {
  const owner = "pairedBenchRow";
  if (input === null || typeof input !== "object") throw new TypeError(`${owner}: input must be an object`);
  const rounds = checkRounds(owner, "input.attnlabMs", input.attnlabMs);
  for (const key of ["flopsFwdBwd", "peakGflops"] as const) {
    if (typeof input[key] !== "number" || !(input[key] > 0)) {
      throw new RangeError(`${owner}: input.${key} must be a number > 0, got ${input[key]}`);
    }
  }
  const all = input.attnlabMs.flat();
  const ms = median(all);
  const gflops = input.flopsFwdBwd / ms / 1e6;
  const row: PairedBenchRow = {
    ...blankRow(input, input.peakGflops, input.torch),
    status: "ok",
    note: input.note ?? "",
    rounds,
    repeats: Math.max(...input.attnlabMs.map((r) => r.length)),
    gflop_fwd_bwd: input.flopsFwdBwd / 1e9,
    attnlab_ms: ms,
    attnlab_gflops: gflops,
    attnlab_share_of_peak: gflops / input.peakGflops,
  };
  if (input.torch.status !== "ok") return row;
  const byThreads = input.torch.msByThreads;
  if (byThreads === null || byThreads.size === 0) {
    throw new TypeError(`${owner}: input.torch.msByThreads must hold PyTorch's times when its status is ok`);
  }
  for (const [threads, times] of byThreads) {
    const n = checkRounds(owner, `input.torch.msByThreads.get(${threads})`, times);
    if (n !== rounds) {
      throw new RangeError(
        `${owner}: input.torch.msByThreads.get(${threads}) has ${n} rounds, attnlabMs ${rounds}: they pair by round`,
      );
    }
  }
  const threads = fastestThreadCount(byThreads);
  const theirs = byThreads.get(threads)!;
  const tms = median(theirs.flat());
  const tgflops = input.flopsFwdBwd / tms / 1e6;
  const ratio = ratioInterval(input.attnlabMs.map((r) => median([...r])), theirs.map((r) => median([...r])), {
    paired: true,
  });
  const low = Number.isFinite(ratio.low) ? ratio.low : null;
  const high = Number.isFinite(ratio.high) ? ratio.high : null;
  return {
    ...row,
    torch_threads: threads,
    torch_ms: tms,
    torch_gflops: tgflops,
    torch_share_of_peak: tgflops / input.peakGflops,
    ratio: ratio.estimate,
    ratio_low: low,
    ratio_high: high,
    verdict: pairedVerdict(low, high),
  };
}

/** A row of `base`'s computation with nothing measured: every time, rate and ratio null, no rounds. */
function blankRow(
  base: Pick<PairedBenchRow, "variant" | "causal" | "n" | "batch" | "heads" | "d" | "backend" | "device">,
  peakGflops: number,
  torch: { status: TorchStatus; note: string },
): PairedBenchRow {
  return {
    // Spelled out: this is the CSV's column order.
    variant: base.variant,
    causal: base.causal,
    n: base.n,
    batch: base.batch,
    heads: base.heads,
    d: base.d,
    backend: base.backend,
    device: base.device,
    status: "",
    note: "",
    rounds: 0,
    repeats: 0,
    gflop_fwd_bwd: 0,
    attnlab_ms: null,
    attnlab_gflops: null,
    attnlab_share_of_peak: null,
    torch_status: torch.status,
    torch_note: torch.note,
    torch_threads: null,
    torch_ms: null,
    torch_gflops: null,
    torch_share_of_peak: null,
    ratio: null,
    ratio_low: null,
    ratio_high: null,
    verdict: "",
    peak_gflops: peakGflops,
  };
}

function checkRounds(owner: string, name: string, rounds: unknown): number {
  if (!Array.isArray(rounds) || rounds.length === 0) {
    throw new TypeError(`${owner}: ${name} must be a non-empty array of rounds, each an array of run times in ms`);
  }
  rounds.forEach((r, i) => {
    if (!Array.isArray(r) || r.length === 0 || r.some((x) => typeof x !== "number" || !(x > 0) || !isFinite(x))) {
      throw new RangeError(`${owner}: ${name}[${i}] must be a non-empty array of finite times > 0 ms`);
    }
  });
  return rounds.length;
}

/** What {@linkcode runPairedBench} returns. */
export interface PairedBenchResult {
  rows: PairedBenchRow[];
  /**
   * The times behind each row, in the same order: per round, attnlab's runs and PyTorch's at its kept thread count
   * (null without PyTorch's times or for a skipped row).
   */
  samples: { attnlabMs: number[][]; torchMs: number[][] | null }[];
  peak: SgemmPeak;
  /** PyTorch for the whole run: "ok" when its twin started on an optimised BLAS. */
  torch: { status: TorchStatus; detail: string; info: TwinInfo | null };
  backend: string;
  device: string;
  elapsedS: number;
}

const OPTION_KEYS = [
  "variants",
  "lengths",
  "batch",
  "heads",
  "d",
  "causal",
  "rounds",
  "repeats",
  "threads",
  "torch",
  "twin",
  "memoryBudgetBytes",
  "sgemmSize",
  "onProgress",
] as const;

/** The first line of an error's message. */
function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}

/**
 * Runs the paired benchmark on the current backend: the sgemm peak, then per length and variant `rounds` rounds,
 * each timing attnlab's forward + backward `repeats` times (after one untimed run) and PyTorch's at every thread
 * count from 1 to `threads` the same way, who goes first swapping every round. Softmax runs by query blocks on both
 * sides where its n × n buffers would pass the memory budget, and is skipped where blocks would too. The attention
 * layers' finite checks are off while it runs; it leaves no tensor behind.
 *
 * @example
 * ```ts
 * import { initBackend } from "../backend.ts";
 * import { runPairedBench } from "./paired.ts";
 * await initBackend({ quiet: true }); // the best backend here (blas where OpenBLAS loads), as the bench task does
 * const result = await runPairedBench({
 *   variants: ["linear"], lengths: [33], heads: 2, d: 8, rounds: 2, repeats: 1, torch: false, sgemmSize: 64,
 * });
 * const row = result.rows[0];
 * console.log(row.variant, row.n, row.rounds, row.torch_status, row.attnlab_ms! > 0, row.ratio); // linear 33 2 off true null
 * ```
 */
export async function runPairedBench(options: PairedBenchOptions = {}): Promise<PairedBenchResult> {
  const owner = "runPairedBench";
  const o = checkOptionKeys<PairedBenchOptions>(owner, options, OPTION_KEYS);
  const names: readonly VariantName[] = o.variants ?? FLOP_VARIANTS;
  if (!Array.isArray(o.variants ?? FLOP_VARIANTS) || names.length === 0) {
    throw new TypeError(`${owner}: options.variants must be a non-empty list of ${FLOP_VARIANTS.join(", ")}`);
  }
  for (const v of names) {
    if (!FLOP_VARIANTS.includes(v)) {
      throw new RangeError(`${owner}: options.variants: unknown variant "${v}"; expected ${FLOP_VARIANTS.join(", ")}`);
    }
  }
  const lengths = o.lengths ?? [2048];
  if (!Array.isArray(lengths) || lengths.length === 0) {
    throw new TypeError(`${owner}: options.lengths must be a non-empty list of positive integers`);
  }
  lengths.forEach((n, i) => positiveInteger(owner, `options.lengths[${i}]`, n));
  const batch = positiveInteger(owner, "options.batch", o.batch ?? 1);
  const heads = positiveInteger(owner, "options.heads", o.heads ?? 8);
  const d = positiveInteger(owner, "options.d", o.d ?? 64);
  const rounds = positiveInteger(owner, "options.rounds", o.rounds ?? 8);
  const repeats = positiveInteger(owner, "options.repeats", o.repeats ?? 3);
  const threads = positiveInteger(owner, "options.threads", o.threads ?? navigator.hardwareConcurrency);
  const sgemmSize = positiveInteger(owner, "options.sgemmSize", o.sgemmSize ?? 1024);
  const causal = o.causal ?? true;
  if (typeof causal !== "boolean") throw new TypeError(`${owner}: options.causal must be true or false`);
  const useTorch = o.torch ?? true;
  if (typeof useTorch !== "boolean") throw new TypeError(`${owner}: options.torch must be true or false`);
  const memoryBudgetBytes = o.memoryBudgetBytes ?? 4 * 2 ** 30;
  if (typeof memoryBudgetBytes !== "number" || !(memoryBudgetBytes > 0)) {
    throw new RangeError(`${owner}: options.memoryBudgetBytes must be a number > 0, got ${memoryBudgetBytes}`);
  }
  if (o.twin !== undefined) {
    const t = o.twin as unknown as Record<string, unknown>;
    if (t === null || typeof t !== "object" || typeof t.info !== "object" || typeof t.timeAttention !== "function") {
      throw new TypeError(`${owner}: options.twin must be a TorchTwin (or { info, timeAttention, close })`);
    }
    if (!useTorch) throw new TypeError(`${owner}: options.twin is given but options.torch is false; drop one`);
  }
  if (o.onProgress !== undefined && typeof o.onProgress !== "function") {
    throw new TypeError(`${owner}: options.onProgress must be a function (line) => void`);
  }
  const progress = o.onProgress ?? (() => {});
  const start = performance.now();
  const backend = tf.getBackend();
  if (typeof backend !== "string") {
    throw new Error(`${owner}: no TensorFlow.js backend is set; call initBackend() (lib/backend.ts) first`);
  }
  const device = await deviceOf(backend);
  const peak = await sgemmPeak({ size: sgemmSize, repeats: 5 });
  progress(`paired bench: sgemm peak ${peak.gflops.toFixed(1)} GFLOP/s (${sgemmSize}³ on ${backend})`);

  let twin: AttentionTwin | null = null;
  let owned = false;
  let torch: PairedBenchResult["torch"] = { status: "off", detail: "not asked for (--no-torch)", info: null };
  if (useTorch) {
    try {
      twin = o.twin ?? await TorchTwin.start({ threads });
      owned = o.twin === undefined;
      const info = twin.info;
      torch = info.blasOptimised ? { status: "ok", detail: `PyTorch ${info.torch}, ${info.blas}`, info } : {
        status: "reference BLAS",
        detail: `PyTorch ${info.torch} runs the reference BLAS (${info.blas}), about 10× slower than an optimised ` +
          "one: not timed, no ratio; install libopenblas0 (apt-get install libopenblas0)",
        info,
      };
    } catch (err) {
      torch = { status: "unavailable", detail: firstLine(err), info: null };
    }
    progress(`paired bench: torch ${torch.status}: ${torch.detail}`);
  }
  const counts: (number | null)[] = twin?.setThreads !== undefined && threads > 1
    ? Array.from({ length: threads }, (_, i) => i + 1)
    : [null];

  const rows: PairedBenchRow[] = [];
  const samples: PairedBenchResult["samples"] = [];
  const finiteBefore = setFiniteChecks(false); // timed calls read nothing back; restored below
  try {
    for (const n of lengths) {
      for (const variant of names) {
        const label = `${variant} n ${n}`;
        const plan = variant === "softmax" ? softmaxPlan(n, { batch, heads, memoryBudgetBytes }) : null;
        const base = { variant, causal, n, batch, heads, d, backend, device };
        if (plan?.mode === "skip") {
          rows.push({
            ...blankRow(base, peak.gflops, { status: torch.status, note: torch.status === "ok" ? "" : torch.detail }),
            status: "skipped (memory)",
            note: `n×n buffers ≈ ${(plan.bytes / 2 ** 30).toFixed(1)} GiB > budget`,
          });
          samples.push({ attnlabMs: [], torchMs: null });
          continue;
        }
        const queryBlockSize = plan?.mode === "blocked" ? plan.queryBlockSize : null;
        const extra = queryBlockSize === null ? {} : { queryBlockSize };
        const variantOptions = { ...extra, causal };
        const flops = flopCount(variant, { batch, heads, n, dk: d, causal, options: variantOptions }).fwdBwd;
        const runs = attentionRuns(variants[variant] as never, {
          batch,
          heads,
          n,
          dk: d,
          dv: d,
          options: variantOptions,
        });
        let status = torch.status;
        let note = status === "ok" ? "" : torch.detail;
        const attnlabMs: number[][] = [];
        const msByThreads = new Map<number | null, number[][]>(counts.map((c) => [c, []]));
        const spec: TwinAttentionSpec = { variant, n, batch, heads, d, causal, queryBlockSize };
        try {
          const ours = async () => {
            attnlabMs.push(await timesMsAsync(runs.forwardBackward, { repeats, warmup: 1 }));
          };
          const theirs = async (r: number) => {
            if (status !== "ok") return;
            try {
              // Counts in turn, the order reversed every other round: one change of count per round.
              for (const count of r % 2 === 0 ? counts : [...counts].reverse()) {
                if (count !== null) await twin!.setThreads!(count);
                const ms = await twin!.timeAttention(spec, { warmup: 1, repeats });
                if (ms.length !== repeats) throw new Error(`the twin timed ${ms.length} runs, ${repeats} asked for`);
                msByThreads.get(count)!.push(ms);
              }
            } catch (err) {
              status = "failed";
              note = firstLine(err);
              progress(`paired bench: ${label}: PyTorch failed: ${note}`);
            }
          };
          for (let r = 0; r < rounds; r++) {
            // Alternate who goes first, so a trend in the machine's load does not favour one side.
            if (r % 2 === 0) {
              await ours();
              await theirs(r);
            } else {
              await theirs(r);
              await ours();
            }
            const last = (xs: number[][]) => (xs.length > r ? `${median(xs[r]).toFixed(1)} ms` : "–");
            const theirsLast = status === "ok"
              ? [...msByThreads].map(([c, ms]) => `, torch${c === null ? "" : ` ${c}t`} ${last(ms)}`).join("")
              : "";
            progress(`paired bench: ${label}: round ${r + 1}/${rounds}: attnlab ${last(attnlabMs)}${theirsLast}`);
          }
        } catch (err) {
          throw new Error(`${owner}: ${label}: ${firstLine(err)}`, { cause: err });
        } finally {
          runs.dispose();
        }
        const row = pairedBenchRow({
          ...base,
          flopsFwdBwd: flops,
          peakGflops: peak.gflops,
          attnlabMs,
          torch: { status, note, msByThreads: status === "ok" ? msByThreads : null },
          note: queryBlockSize === null ? "" : `query blocks of ${queryBlockSize}`,
        });
        rows.push(row);
        samples.push({
          attnlabMs,
          // The row's thread count is the fastest one (null: the twin's own, when it could not be changed).
          torchMs: row.ratio === null ? null : msByThreads.get(row.torch_threads)!,
        });
        progress(
          `paired bench: ${label}: attnlab ${row.attnlab_ms!.toFixed(1)} ms` +
            (row.ratio === null
              ? ""
              : `, torch ${row.torch_ms!.toFixed(1)} ms (${row.torch_threads} thread${
                row.torch_threads === 1 ? "" : "s"
              }), ratio ${row.ratio.toFixed(2)} [${row.ratio_low?.toFixed(2) ?? "–"}, ${
                row.ratio_high?.toFixed(2) ?? "–"
              }]: ${row.verdict}`),
        );
      }
    }
  } finally {
    setFiniteChecks(finiteBefore);
    if (owned) await twin!.close();
  }
  return { rows, samples, peak, torch, backend, device, elapsedS: (performance.now() - start) / 1000 };
}

function fmt(value: number | null, digits: number): string {
  if (value === null || !Number.isFinite(value)) return "";
  return Math.abs(value) >= 1000 ? value.toFixed(0) : value.toPrecision(digits);
}

/**
 * The paired rows as a fixed-width table: variant, n, ms and GFLOP/s per side, PyTorch's threads, the ratio with
 * its interval and the verdict; under it, the rule of the verdict.
 *
 * @example
 * ```ts
 * import { formatPairedTable } from "./paired.ts";
 * console.log(formatPairedTable([]).split("\n")[0].startsWith("variant")); // true
 * ```
 */
export function formatPairedTable(rows: readonly PairedBenchRow[]): string {
  const header = [
    "variant",
    "n",
    "attnlab ms",
    "GFLOP/s",
    "% peak",
    "torch ms",
    "threads",
    "GFLOP/s",
    "ratio",
    "95% interval",
    "verdict",
  ];
  const body = rows.map((r) => [
    r.variant,
    String(r.n),
    fmt(r.attnlab_ms, 3),
    fmt(r.attnlab_gflops, 3),
    r.attnlab_share_of_peak === null ? "" : (100 * r.attnlab_share_of_peak).toFixed(1),
    fmt(r.torch_ms, 3),
    r.torch_threads === null ? "" : String(r.torch_threads),
    fmt(r.torch_gflops, 3),
    r.ratio === null ? "" : r.ratio.toFixed(2),
    r.ratio_low === null || r.ratio_high === null ? "" : `${r.ratio_low.toFixed(2)}–${r.ratio_high.toFixed(2)}`,
    r.status !== "ok" ? `${r.status}: ${r.note}` : r.ratio === null ? `torch ${r.torch_status}` : r.verdict,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => cells[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ")
      .trimEnd();
  return [
    line(header),
    ...body.map(line),
    "",
    "ratio: attnlab / PyTorch forward + backward time (below 1: attnlab is faster), the geometric mean over rounds of " +
    "each round's medians, PyTorch at its fastest thread count; verdict: faster when the whole 95% interval is below " +
    "1, slower when above, else within noise.",
  ].join("\n");
}
