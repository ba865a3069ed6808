/**
 * Measuring one attention configuration: forward and forward + backward wall time, peak memory, and the
 * machine's sgemm peak to compare against.
 *
 * Peak memory comes from `tf.profile`, which snapshots `tf.memory().numBytes` after every kernel: the peak is
 * the highest snapshot minus the bytes live before the run (the inputs), so it counts the outputs and every
 * intermediate alive at once, at kernel granularity. Timing is wall clock until every output is computed, which one
 * element of each read by `await data()` tells (`computed`, `medianMsAsync` in lib/timing.ts): a GPU backend needs an
 * asynchronous read (a synchronous one stalls it, or, for Deno's WebGPU, throws), and reading whole outputs would time
 * their copy and, on the blas backend, fresh pages for the next run's outputs.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { type BackendName, initBackend } from "../backend.ts";
import { setFiniteChecks, type VariantName, variants } from "../attention/mod.ts";
import { randomNormal } from "../random.ts";
import { computed, medianMsAsync } from "../timing.ts";
import { type FlopCount, flopCount } from "./flops.ts";

/** Options for {@linkcode measureAttention}. */
export interface MeasureOptions {
  variant: VariantName;
  /** Sequence length. */
  n: number;
  /** Default 1. */
  batch?: number;
  /** Default 8. */
  heads?: number;
  /** Query/key size; default 64. */
  dk?: number;
  /** Value size; default dk. */
  dv?: number;
  /** Default true. */
  causal?: boolean;
  /** Passed to the variant's attend() (e.g. `{ featureMap: "elu+1" }`); causal is set from `causal`. */
  options?: Record<string, unknown>;
  /** Run on this backend (restoring the current one after); default the current backend. */
  backend?: BackendName;
  /** Timed runs at most; default 3. */
  repeats?: number;
  /**
   * Fewer timed runs when one is slow: at most max(1, ⌊maxRunMs / run⌋); when the warm-up alone takes longer than
   * this, the warm-up runs are the measurement (`repeats` 0). Default Infinity.
   */
  maxRunMs?: number;
  /** Also time forward + backward; default true. */
  backward?: boolean;
  /** Profile the (untimed) warm-up runs for peak memory; default true. */
  memory?: boolean;
  /** Seed of q, k, v and the cotangent; default 0. */
  seed?: number;
}

/** The result of {@linkcode measureAttention}. */
export interface Measurement {
  variant: VariantName;
  backend: string;
  n: number;
  batch: number;
  heads: number;
  dk: number;
  dv: number;
  causal: boolean;
  /** Median forward time. */
  fwdMs: number;
  /** Median time of the forward pass plus the gradients with respect to q, k and v; null without `backward`. */
  fwdBwdMs: number | null;
  /** The warm-up forward + backward run (or forward run without `backward`), for budgeting. */
  warmupMs: number;
  /** Timed runs behind each median; 0 when the (profiled) warm-up run is the measurement. */
  repeats: number;
  /** Peak bytes above the inputs during a forward pass; null without `memory`. */
  peakBytes: number | null;
  /** The same during forward + backward; null without `memory` or `backward`. */
  peakBytesFwdBwd: number | null;
  /** Matmul FLOPs (see flops.ts). */
  flops: FlopCount;
}

const MEASURE_KEYS = [
  "variant",
  "n",
  "batch",
  "heads",
  "dk",
  "dv",
  "causal",
  "options",
  "backend",
  "repeats",
  "maxRunMs",
  "backward",
  "memory",
  "seed",
];

function checkPositiveInteger(value: unknown, name: string, owner: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new Error(`${owner}: ${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

async function profiledRun(fn: () => tf.TensorContainer): Promise<{ ms: number; peakBytes: number }> {
  const before = tf.memory().numBytes;
  const start = performance.now();
  const info = await tf.profile(async () => {
    const out = fn();
    await computed(out);
    return out;
  });
  const ms = performance.now() - start;
  tf.dispose(info.result);
  return { ms, peakBytes: Math.max(0, (Number.isFinite(info.peakBytes) ? info.peakBytes : before) - before) };
}

async function plainRun(fn: () => tf.TensorContainer): Promise<{ ms: number; peakBytes: number }> {
  const start = performance.now();
  const out = fn();
  try {
    await computed(out);
  } finally {
    tf.dispose(out);
  }
  return { ms: performance.now() - start, peakBytes: 0 };
}

/**
 * Times `variant.attend()` forward and forward + backward on seeded inputs of shape [batch, heads, n, d], after one
 * warm-up run of each (profiled for peak memory). Turns the per-call finite checks off while timing and back on after.
 * Leaves no tensors behind.
 *
 * @example
 * ```ts
 * import { measureAttention } from "./measure.ts";
 * const m = await measureAttention({ variant: "linear", n: 64, heads: 2, dk: 8, repeats: 1 });
 * console.log(m.fwdMs > 0, m.fwdBwdMs! > 0, m.peakBytes! > 0); // true true true
 * ```
 */
export async function measureAttention(options: MeasureOptions): Promise<Measurement> {
  const owner = "measureAttention";
  if (options === null || typeof options !== "object") throw new Error(`${owner}: options must be an object`);
  for (const key of Object.keys(options)) {
    if (!MEASURE_KEYS.includes(key)) {
      throw new Error(`${owner}: unknown option "${key}"; valid options are ${MEASURE_KEYS.join(", ")}`);
    }
  }
  const name = options.variant;
  if (typeof name !== "string" || !(name in variants)) {
    throw new Error(`${owner}: variant must be one of ${Object.keys(variants).join(", ")}, got ${String(name)}`);
  }
  const n = checkPositiveInteger(options.n, "n", owner);
  const batch = checkPositiveInteger(options.batch ?? 1, "batch", owner);
  const heads = checkPositiveInteger(options.heads ?? 8, "heads", owner);
  const dk = checkPositiveInteger(options.dk ?? 64, "dk", owner);
  const dv = checkPositiveInteger(options.dv ?? dk, "dv", owner);
  const repeats = checkPositiveInteger(options.repeats ?? 3, "repeats", owner);
  const seed = options.seed ?? 0;
  const causal = options.causal ?? true;
  const backward = options.backward ?? true;
  const memory = options.memory ?? true;
  const maxRunMs = options.maxRunMs ?? Infinity;
  if (typeof causal !== "boolean") throw new Error(`${owner}: causal must be a boolean, got ${String(causal)}`);
  if (!(typeof maxRunMs === "number" && maxRunMs > 0)) {
    throw new Error(`${owner}: maxRunMs must be a number > 0, got ${String(maxRunMs)}`);
  }
  const variantOptions = { ...(options.options ?? {}), causal };
  const variant = variants[name] as unknown as {
    attend(qkv: { q: tf.Tensor4D; k: tf.Tensor4D; v: tf.Tensor4D }, o: object): tf.Tensor4D;
  };
  const flops = flopCount(name, { batch, heads, n, dk, dv, causal, options: variantOptions });

  const previous = tf.getBackend();
  if (options.backend !== undefined) await initBackend({ backend: options.backend, quiet: true });
  const backend = tf.getBackend();
  const attention = attentionRuns(variant, { batch, heads, n, dk, dv, seed, options: variantOptions });
  const finiteBefore = setFiniteChecks(false); // timed calls read nothing back; restored below
  try {
    const { forward, forwardBackward } = attention;
    const warm = memory ? profiledRun : plainRun;

    const fwdWarm = await warm(forward);
    const bwdWarm = backward ? await warm(forwardBackward) : null;
    const warmupMs = bwdWarm?.ms ?? fwdWarm.ms;
    // One run past maxRunMs: the warm-up is the measurement (repeats 0) rather than spending as long again.
    const runs = warmupMs > maxRunMs ? 0 : Math.min(repeats, Math.max(1, Math.floor(maxRunMs / warmupMs)));
    const fwdMs = runs === 0 ? fwdWarm.ms : await medianMsAsync(forward, { repeats: runs, warmup: 0 });
    const fwdBwdMs = !backward
      ? null
      : runs === 0
      ? bwdWarm!.ms
      : await medianMsAsync(forwardBackward, { repeats: runs, warmup: 0 });
    return {
      variant: name,
      backend,
      n,
      batch,
      heads,
      dk,
      dv,
      causal,
      fwdMs,
      fwdBwdMs,
      warmupMs,
      repeats: runs,
      peakBytes: memory ? fwdWarm.peakBytes : null,
      peakBytesFwdBwd: memory && bwdWarm ? bwdWarm.peakBytes : null,
      flops,
    };
  } finally {
    setFiniteChecks(finiteBefore);
    attention.dispose();
    if (options.backend !== undefined && previous && tf.getBackend() !== previous) await tf.setBackend(previous);
  }
}

/** What {@linkcode attentionRuns} returns: the two computations a benchmark times, on inputs it holds. */
export interface AttentionRuns {
  /** `attend(q, k, v)`: [batch, heads, n, dv]. */
  forward(): tf.Tensor;
  /** The gradients of q, k and v through the seeded cotangent: three tensors. */
  forwardBackward(): tf.Tensor[];
  /** Frees the inputs. */
  dispose(): void;
}

/**
 * The forward and forward + backward computations of `variant.attend()` on seeded inputs q, k [batch, heads, n, dk]
 * and v, the cotangent [batch, heads, n, dv] (seeds seed … seed + 3), as {@linkcode measureAttention} times them. The
 * caller disposes what each call returns, and the runs when done.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { variants } from "../attention/mod.ts";
 * import { attentionRuns } from "./measure.ts";
 * const runs = attentionRuns(variants.linear, { batch: 1, heads: 2, n: 16, dk: 8, dv: 4, options: { causal: true } });
 * const grads = runs.forwardBackward();
 * console.log(grads.map((g) => g.shape.join("×")).join(" ")); // 1×2×16×8 1×2×16×8 1×2×16×4
 * tf.dispose(grads);
 * runs.dispose();
 * ```
 */
export function attentionRuns(
  variant: { attend(qkv: { q: tf.Tensor4D; k: tf.Tensor4D; v: tf.Tensor4D }, options: object): tf.Tensor4D },
  shape: { batch: number; heads: number; n: number; dk: number; dv: number; seed?: number; options?: object },
): AttentionRuns {
  const { batch, heads, n, dk, dv, seed = 0, options = {} } = shape;
  const q = randomNormal<tf.Tensor4D>([batch, heads, n, dk], { seed }); // [b, h, n, dk]
  const k = randomNormal<tf.Tensor4D>([batch, heads, n, dk], { seed: seed + 1 }); // [b, h, n, dk]
  const v = randomNormal<tf.Tensor4D>([batch, heads, n, dv], { seed: seed + 2 }); // [b, h, n, dv]
  const dy = randomNormal<tf.Tensor4D>([batch, heads, n, dv], { seed: seed + 3 }); // [b, h, n, dv]
  const gradient = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
    variant.attend({ q: a as tf.Tensor4D, k: b as tf.Tensor4D, v: c as tf.Tensor4D }, options)
  );
  return {
    forward: () => variant.attend({ q, k, v }, options),
    forwardBackward: () => gradient([q, k, v], dy),
    dispose: () => tf.dispose([q, k, v, dy]),
  };
}

/** The result of {@linkcode sgemmPeak}. */
export interface SgemmPeak {
  backend: string;
  /** The matmul is size × size × size. */
  size: number;
  ms: number;
  gflops: number;
}

/**
 * Achieved GFLOP/s of one square float32 matMul (2·size³ FLOPs), the median of `repeats` runs: the yardstick
 * for "share of peak". Runs on `backend` (restoring the current one after), default the current backend.
 *
 * @example
 * ```ts
 * import { sgemmPeak } from "./measure.ts";
 * const peak = await sgemmPeak({ size: 64, repeats: 1 });
 * console.log(peak.gflops > 0); // true
 * ```
 */
export async function sgemmPeak(
  options: { size?: number; repeats?: number; backend?: BackendName } = {},
): Promise<SgemmPeak> {
  for (const key of Object.keys(options)) {
    if (!["size", "repeats", "backend"].includes(key)) {
      throw new Error(`sgemmPeak: unknown option "${key}"; expected size, repeats or backend`);
    }
  }
  const size = checkPositiveInteger(options.size ?? 1024, "size", "sgemmPeak");
  const repeats = checkPositiveInteger(options.repeats ?? 5, "repeats", "sgemmPeak");
  const previous = tf.getBackend();
  if (options.backend !== undefined) await initBackend({ backend: options.backend, quiet: true });
  const a = randomNormal<tf.Tensor2D>([size, size], { seed: 1 }); // [size, size]
  const b = randomNormal<tf.Tensor2D>([size, size], { seed: 2 }); // [size, size]
  try {
    // medianMsAsync waits on one element of the product and frees the rest unread, so the blas pool recycles it: a
    // product read back whole is never recycled, and a fresh output's page faults made the 1024³ product 2.2× slower
    // than the sgemm itself (84 against 187 GFLOP/s here, PyTorch's being 186).
    const ms = await medianMsAsync(() => tf.matMul(a, b), { repeats, warmup: 1 });
    return { backend: tf.getBackend(), size, ms, gflops: (2 * size ** 3) / (ms * 1e6) };
  } finally {
    tf.dispose([a, b]);
    if (options.backend !== undefined && previous && tf.getBackend() !== previous) await tf.setBackend(previous);
  }
}
