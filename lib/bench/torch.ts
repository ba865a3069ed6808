/**
 * The PyTorch side of the benchmark: `torch_attention.py` beside this file, run by the system python3 as a
 * subprocess when PyTorch is installed. PyTorch is not a project dependency; without it the bench says so and
 * carries on.
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/** The script that times the attention computations in PyTorch. */
export const TORCH_SCRIPT: string = fileURLToPath(new URL("./torch_attention.py", import.meta.url));

/** The interpreter tried for PyTorch. */
export const PYTHON = "/usr/bin/python3";

/** The Debian packages PyTorch needs here: PyTorch, and OpenBLAS so that torch does not fall back to the reference BLAS. */
export const TORCH_PACKAGES: readonly string[] = Object.freeze(["python3-torch", "libopenblas0"]);

/** Whether PyTorch can be imported, and its version or the reason it cannot. */
export interface TorchProbe {
  available: boolean;
  /** The version when available, else why not (one line). */
  detail: string;
}

/**
 * Checks whether `python3 -c "import torch"` works.
 *
 * @example
 * ```ts
 * import { probeTorch } from "./torch.ts";
 * const probe = await probeTorch();
 * console.log(typeof probe.available); // boolean
 * ```
 */
export async function probeTorch(python: string = PYTHON): Promise<TorchProbe> {
  try {
    const out = await new Deno.Command(python, {
      args: ["-c", "import torch; print(torch.__version__)"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.success ? out.stdout : out.stderr).trim();
    if (out.success) return { available: true, detail: text };
    return { available: false, detail: text.split("\n").at(-1) ?? `${python} exited with ${out.code}` };
  } catch (err) {
    return { available: false, detail: `${python} could not run (${(err as Error).message.split("\n")[0]})` };
  }
}

/** Input of {@linkcode runTorchBench}: what torch_attention.py reads. */
export interface TorchBenchConfig {
  /** Lengths per variant, ascending. */
  lengths: Record<string, number[]>;
  batch: number;
  heads: number;
  d: number;
  causal: boolean[];
  repeats: number;
  /** Stop growing n for a variant once one forward + backward run exceeds this. */
  max_run_s: number;
  /** Start no new measurement after this many seconds; default no limit. */
  budget_s?: number;
  /** torch.set_num_threads; default all cores. */
  threads?: number;
  /** Size of the square matmul timed as the sgemm peak; default 1024. */
  sgemm_size?: number;
  /** Softmax lengths run by query blocks (the backward recomputes each block's probabilities): n -> block size. */
  softmax_query_blocks?: Record<string, number>;
}

/** One PyTorch measurement. */
export interface TorchRow {
  variant: string;
  n: number;
  causal: boolean;
  status: string;
  /** Why it was skipped, or how it ran ("query blocks of 1024"). */
  note?: string;
  fwd_ms?: number;
  fwd_bwd_ms?: number;
  repeats?: number;
}

/** What torch_attention.py prints. */
export interface TorchBenchResult {
  torch: string;
  threads: number;
  sgemm: { size: number; ms: number; gflops: number };
  rows: TorchRow[];
}

/**
 * Runs torch_attention.py with `config` and parses its JSON. Throws with the script's stderr when it fails.
 *
 * @example
 * ```ts
 * import { probeTorch, runTorchBench } from "./torch.ts";
 * if ((await probeTorch()).available) {
 *   const result = await runTorchBench({
 *     lengths: { linear: [64] }, batch: 1, heads: 1, d: 8, causal: [true], repeats: 1, max_run_s: 5, sgemm_size: 64,
 *   });
 *   console.log(result.rows[0].status); // ok
 * }
 * ```
 */
export async function runTorchBench(config: TorchBenchConfig, python: string = PYTHON): Promise<TorchBenchResult> {
  const out = await new Deno.Command(python, {
    args: [TORCH_SCRIPT, JSON.stringify(config)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    const stderr = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" | ");
    throw new Error(`runTorchBench: ${TORCH_SCRIPT} exited with ${out.code}: ${stderr}`);
  }
  try {
    return JSON.parse(stdout) as TorchBenchResult;
  } catch {
    throw new Error(`runTorchBench: ${TORCH_SCRIPT} printed no JSON: ${stdout.slice(0, 200)}`);
  }
}
