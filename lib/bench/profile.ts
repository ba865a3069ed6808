/**
 * Where the time of one training step goes: one update (forward, backward, Adam) under `tf.profile`, its kernels
 * grouped by name with their calls, time, share of the step and new bytes, and the time spent outside any kernel
 * (the engine's bookkeeping, the model's JavaScript, the profiler itself). Kept with the benchmark, to read before
 * and after each change: `deno task bench --profile`.
 *
 * - {@linkcode profileStep}: profile one training step of a model on a batch.
 * - {@linkcode groupKernels}: the grouping, on kernel records with their nesting depth.
 * - {@linkcode formatProfile}: the profile as a table.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { setFiniteChecks } from "../attention/mod.ts";
import type { LmBatch } from "../data/types.ts";
import { TransformerModel } from "../models/model.ts";
import type { AdamOptions } from "../train/adam.ts";
import { BLAS_BACKEND } from "../blas/backend.ts";
import { dataBytes, resetPeakDataBytes } from "../blas/pool.ts";
import { positiveInteger } from "../_options.ts";
import { deviceOf } from "./device.ts";
import { trainStepTimer } from "./train_step.ts";

/** One kernel call as {@linkcode groupKernels} reads it (what tf.profile records, plus the nesting). */
export interface KernelRecord {
  /** The registered kernel's name, or for a `tf.customGrad` op the name of the scope it ran in. */
  name: string;
  /** Whether the call is a `tf.customGrad` op rather than a registered kernel. */
  custom: boolean;
  /** Wall time of the call in ms, the calls nested in it included. */
  ms: number;
  /** 1 for a call made by the step itself, 2 for one made inside such a call (a custom op's forward, or the copy
   * of a tensor a kernel keeps for the gradient), and so on. */
  depth: number;
  /** Net tensor bytes the call left allocated (tf.profile's bytesAdded). */
  bytesAdded: number;
}

/** One row of a step's profile: the calls of one kernel. */
export interface KernelGroup {
  /** The kernel's name; a custom op is "custom op [the kernels it ran]". */
  name: string;
  /** Whether this is a `tf.customGrad` op (whose nested kernels have rows of their own). */
  custom: boolean;
  calls: number;
  /** Time in ms; a custom op's is its own, less the kernels nested in it (which count in their own rows). */
  ms: number;
  /** ms / the step's wall time (set by profileStep; groupKernels leaves it relative to the rows' total). */
  share: number;
  /**
   * Tensor bytes the calls added (tf.profile's bytesAdded), as tfjs counts them: a view such as Reshape counts its
   * size though it shares its input's buffer; null for custom ops (their nested kernels' rows hold them).
   */
  bytes: number | null;
}

interface CallNode {
  record: KernelRecord;
  children: CallNode[];
}

const UNNAMED_SCOPE = "unnamed scope";

/**
 * Groups kernel calls by name. Calls can nest, and tf.profile times a nested call twice, alone and inside its
 * parent: a `tf.customGrad` op's forward runs other kernels, and a kernel that keeps a tensor for the gradient
 * copies it (an Identity kernel) inside its own call. Here a custom op's nested kernels count in their own rows
 * and the op keeps only the time outside them (saving tensors for its gradient, its tidy); a registered kernel
 * keeps the whole of its call, its copies included, and they get no rows. So the rows add up to the outermost
 * calls' time. tf.profile names a custom op after the scope it ran in, usually "unnamed scope" (a `tf.tidy`
 * without a name): here it is "custom op [...]" with the kernels directly inside it (the Identity copies left
 * out unless alone). Rows come sorted by time, longest first; `share` is each row's part of the rows' total.
 *
 * @example
 * ```ts
 * import { groupKernels } from "./profile.ts";
 * // A custom op (3 ms) whose forward ran AttnlabSrmsNorm (2 ms), then a BatchMatMul (4 ms) that copied an input.
 * const rows = groupKernels([
 *   { name: "AttnlabSrmsNorm", custom: false, ms: 2, depth: 2, bytesAdded: 64 },
 *   { name: "unnamed scope", custom: true, ms: 3, depth: 1, bytesAdded: 64 },
 *   { name: "Identity", custom: false, ms: 0.5, depth: 2, bytesAdded: 0 },
 *   { name: "BatchMatMul", custom: false, ms: 4, depth: 1, bytesAdded: 128 },
 * ]);
 * console.log(rows.map((r) => `${r.name} ${r.ms}`)); // ["BatchMatMul 4", "AttnlabSrmsNorm 2", "custom op [AttnlabSrmsNorm] 1"]
 * ```
 */
export function groupKernels(records: readonly KernelRecord[]): KernelGroup[] {
  if (!Array.isArray(records)) throw new TypeError("groupKernels: records must be an array of kernel records");
  records.forEach((r, i) => {
    if (r === null || typeof r !== "object" || typeof r.name !== "string" || typeof r.custom !== "boolean") {
      throw new TypeError(`groupKernels: records[${i}] must be { name, custom, ms, depth, bytesAdded }`);
    }
    if (!Number.isInteger(r.depth) || r.depth < 1) {
      throw new RangeError(`groupKernels: records[${i}].depth must be an integer >= 1, got ${r.depth}`);
    }
    if (!(r.ms >= 0)) throw new RangeError(`groupKernels: records[${i}].ms must be a time >= 0, got ${r.ms}`);
  });
  // Calls finish, and are recorded, in post-order: the calls nested in one (depth d + 1) come just before it
  // (depth d). Finished calls waiting for their parent, by depth, rebuild the tree.
  const waiting: CallNode[][] = [];
  for (const record of records) {
    const node: CallNode = { record, children: [] };
    // Deeper calls waiting belong to this call (a nesting the depths skip included).
    for (let d = record.depth + 1; d < waiting.length; d++) {
      node.children.push(...(waiting[d] ?? []));
      waiting[d] = [];
    }
    (waiting[record.depth] ??= []).push(node);
  }
  const roots = waiting.flatMap((nodes) => nodes ?? []);
  const groups = new Map<string, KernelGroup>();
  const add = (name: string, custom: boolean, ms: number, bytes: number | null) => {
    const g = groups.get(name) ?? { name, custom, calls: 0, ms: 0, share: 0, bytes: custom ? null : 0 };
    g.calls += 1;
    g.ms += ms;
    if (g.bytes !== null && bytes !== null) g.bytes += bytes;
    groups.set(name, g);
  };
  const visit = (node: CallNode) => {
    const { record, children } = node;
    if (!record.custom) return add(record.name, false, record.ms, record.bytesAdded);
    const inner = [...new Set(children.map((c) => c.record.custom ? "custom op" : c.record.name))];
    const named = inner.length > 1 ? inner.filter((n) => n !== "Identity") : inner;
    const scope = record.name === UNNAMED_SCOPE || record.name === "" ? "" : ` ${record.name}`;
    const list = named.length === 0 ? "" : ` [${named.slice(0, 3).join(", ")}${named.length > 3 ? ", …" : ""}]`;
    const self = record.ms - children.reduce((s, c) => s + c.record.ms, 0);
    add(`custom op${scope}${list}`, true, Math.max(0, self), null);
    children.forEach(visit);
  };
  roots.forEach(visit);
  const rows = [...groups.values()].sort((a, b) => b.ms - a.ms || a.name.localeCompare(b.name));
  const total = rows.reduce((s, r) => s + r.ms, 0);
  for (const r of rows) r.share = total > 0 ? r.ms / total : 0;
  return rows;
}

/** Options of {@linkcode profileStep}. */
export interface ProfileStepOptions {
  /** Untimed updates first (Adam's moments, the array pool, kernel set-up). Default 1. */
  warmup?: number;
  /** Profiled updates, averaged: more of them smooth out the machine's load. Default 1. */
  profiled?: number;
  /** Updates timed without the profiler after them, whose median is `plainMs`. Default 3. */
  plainSteps?: number;
  /** Adam settings over the shared recipe's (as trainStepTimer takes them). */
  adam?: Partial<AdamOptions>;
}

/** What {@linkcode profileStep} returns; times, calls and bytes are per update (the mean of the profiled ones). */
export interface StepProfile {
  /** The backend the step ran on. */
  backend: string;
  /** What the backend ran on: the CPU's model and logical cores, or the WebGPU adapter (lib/bench/device.ts). */
  device: string;
  /** Profiled updates the numbers are the mean of. */
  profiled: number;
  /** Wall time of a profiled update in ms, from its start to its loss read back. */
  wallMs: number;
  /** The outermost kernel calls' time: the rows' total. */
  kernelMs: number;
  /** wallMs − kernelMs: time outside every kernel (engine bookkeeping, tape, JavaScript, the profiler's own). */
  overheadMs: number;
  /** Median of `plainSteps` updates without the profiler (null when 0 of them): wallMs − plainMs is its cost. */
  plainMs: number | null;
  /** By kernel, longest first; `share` is of wallMs. */
  kernels: KernelGroup[];
  /** Kernel calls: the rows' total (copies a kernel makes inside its own call count in it, not apart). */
  calls: number;
  /**
   * Peak bytes of an update above those held before it, the largest over the profiled updates, counted as
   * `peakMethod` says.
   */
  peakBytes: number;
  /**
   * "buffers" (blas): the backend's data buffers, views (Reshape) not counted, as `deno task bench --train` and
   * PyTorch's allocator count; "tensors" (other backends): tf.profile's tensor bytes, a view at its tensor's full size.
   */
  peakMethod: "buffers" | "tensors";
  /** Whether custom ops' nested kernels could be told apart (else every call counts as outermost). */
  nesting: boolean;
}

interface EngineInternals {
  state: { kernelDepth: number };
  profiler: { profileKernel: (name: string, inputs: unknown, f: () => unknown) => unknown };
}

/**
 * Profiles training updates of `model` on `batch` (forward, backward, Adam with the shared recipe's settings, as
 * `trainStepTimer` makes it) under `tf.profile`: `warmup` untimed updates, then `profiled` profiled ones, whose
 * kernels are grouped by name ({@linkcode groupKernels}) and averaged per update. Each update changes the model's
 * weights.
 *
 * What a kernel's time includes: tf.profile times each kernel call with the backend's `time()`, which on the cpu
 * and blas backends is the wall time of the synchronous call: the computation, the output tensor's creation and
 * the saving of tensors for the gradient; for a custom op, every kernel nested in its forward (counted in their
 * own rows here, not twice). It excludes everything between kernels: building the tape and running the gradient
 * functions' JavaScript, scopes and disposal, the model's own code, and the profiler's bookkeeping, all of which
 * is `overheadMs`. Outermost calls do not overlap, so `kernelMs ≤ wallMs`. The profiler slows the update (a
 * promise and a record per kernel call); `plainMs` is the same update without it. Asynchronous backends (webgpu)
 * time kernels differently; their numbers are not comparable with these.
 *
 * @example
 * ```ts
 * import { createModel } from "../models/model.ts";
 * import { profileStep } from "./profile.ts";
 * const model = createModel({ attention: "vanilla", layers: 1, dModel: 8, heads: 2 }, { log: () => {} });
 * const batch = { kind: "lm" as const, inputs: Int32Array.from([1, 2, 3]), targets: Int32Array.from([2, 3, 4]), batch: 1, length: 3 };
 * const p = await profileStep(model, batch, { plainSteps: 1 });
 * // 32 matmuls: 11 forward (embedding, q k v, QKᵀ, PV, out, 3 feed-forward, head), 21 backward (embedding: 1).
 * console.log(p.kernels.find((k) => k.name === "BatchMatMul")?.calls, p.kernelMs <= p.wallMs); // 32 true
 * model.dispose();
 * ```
 */
export async function profileStep(
  model: TransformerModel,
  batch: LmBatch,
  options: ProfileStepOptions = {},
): Promise<StepProfile> {
  const owner = "profileStep";
  if (!(model instanceof TransformerModel)) {
    throw new TypeError(`${owner}: model must be a TransformerModel (from createModel), got ${String(model)}`);
  }
  if (batch === null || typeof batch !== "object" || batch.kind !== "lm") {
    throw new TypeError(`${owner}: batch must be a language-model batch ({ kind: "lm", inputs, targets, ... })`);
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError(`${owner}: options must be { warmup?, profiled?, plainSteps?, adam? }`);
  }
  for (const key of Object.keys(options)) {
    if (!["warmup", "profiled", "plainSteps", "adam"].includes(key)) {
      throw new TypeError(`${owner}: unknown option "${key}"; expected warmup, profiled, plainSteps or adam`);
    }
  }
  const warmup = count(owner, "options.warmup", options.warmup ?? 1);
  const profiled = positiveInteger(owner, "options.profiled", options.profiled ?? 1);
  const plainSteps = count(owner, "options.plainSteps", options.plainSteps ?? 3);
  const timer = trainStepTimer(model, options.adam === undefined ? {} : { adam: options.adam });
  // Each update ends with an awaited read: a GPU backend has finished the update only then.
  const once = async () => {
    const start = performance.now();
    await timer.step(batch);
    return performance.now() - start;
  };
  const engine = tf.engine() as unknown as EngineInternals;
  const backend = tf.getBackend();
  const device = await deviceOf(backend);
  const finiteBefore = setFiniteChecks(false); // timed calls read nothing back; restored below
  try {
    for (let i = 0; i < warmup; i++) await once();
    const records: KernelRecord[] = [];
    let wallMs = 0, peakBytes = 0, nesting = true;
    for (let i = 0; i < profiled; i++) {
      const one = await profileOnce(engine, () => timer.step(batch), owner, backend);
      // Each update's calls start again at depth 1, so their records simply follow one another.
      records.push(...one.records);
      wallMs += one.wallMs / profiled;
      peakBytes = Math.max(peakBytes, one.peakBytes);
      nesting &&= one.nesting;
    }
    const kernels = groupKernels(records);
    for (const k of kernels) {
      k.calls /= profiled;
      k.ms /= profiled;
      if (k.bytes !== null) k.bytes /= profiled;
      k.share = wallMs > 0 ? k.ms / wallMs : 0;
    }
    const kernelMs = kernels.reduce((s, k) => s + k.ms, 0);
    const plain: number[] = [];
    for (let i = 0; i < plainSteps; i++) plain.push(await once());
    plain.sort((a, b) => a - b);
    const mid = Math.floor(plainSteps / 2);
    const plainMs = plainSteps === 0 ? null : plainSteps % 2 === 1 ? plain[mid] : (plain[mid - 1] + plain[mid]) / 2;
    return {
      backend,
      device,
      profiled,
      wallMs,
      kernelMs,
      overheadMs: wallMs - kernelMs,
      plainMs,
      kernels,
      calls: kernels.reduce((s, k) => s + k.calls, 0),
      peakBytes,
      peakMethod: backend === BLAS_BACKEND ? "buffers" : "tensors",
      nesting,
    };
  } finally {
    setFiniteChecks(finiteBefore);
    timer.dispose();
  }
}

/** One update under tf.profile: its kernel records with their depths, its wall time and peak tensor bytes. */
async function profileOnce(
  engine: EngineInternals,
  step: () => Promise<unknown>,
  owner: string,
  backend: string,
): Promise<{ records: KernelRecord[]; wallMs: number; peakBytes: number; nesting: boolean }> {
  const profiler = engine.profiler;
  const original = profiler.profileKernel;
  const depths: { name: string; depth: number }[] = [];
  // tf.profile records no nesting: a wrapper around the engine's per-kernel profiler notes the kernel depth of
  // each call (1 outside any kernel). It finishes just before the engine records the call, so the two lists
  // line up one to one; a mismatch (another tfjs version) leaves every call at depth 1 and `nesting` false.
  profiler.profileKernel = function (this: unknown, name, inputs, f) {
    const depth = engine.state.kernelDepth;
    const out = original.call(this, name, inputs, f);
    depths.push({ name, depth });
    return out;
  };
  let wallMs = 0;
  let info: Awaited<ReturnType<typeof tf.profile>>;
  const before = tf.memory().numBytes;
  const buffers = backend === BLAS_BACKEND;
  if (buffers) resetPeakDataBytes();
  const liveBefore = dataBytes().live;
  try {
    info = await tf.profile(async () => {
      const start = performance.now();
      await step();
      wallMs = performance.now() - start;
    });
  } finally {
    profiler.profileKernel = original;
  }
  const nesting = depths.length === info.kernels.length && depths.every((d, i) => d.name === info.kernels[i].name);
  const records = info.kernels.map((k, i): KernelRecord => {
    if (typeof k.kernelTimeMs !== "number") {
      throw new Error(
        `${owner}: the ${backend} backend gave no time for kernel ${k.name} (${JSON.stringify(k.kernelTimeMs)})`,
      );
    }
    return {
      name: k.name,
      // A custom op is recorded under its scope's name, which no registered kernel has.
      custom: tf.getKernel(k.name, backend) === undefined,
      ms: k.kernelTimeMs,
      depth: nesting ? depths[i].depth : 1,
      bytesAdded: k.bytesAdded,
    };
  });
  // Those held before (weights, Adam's moments) are taken out. On blas, the backend's data buffers (views count
  // nothing); elsewhere tf.profile's peak, which counts every tensor alive, a view at its full size.
  const peakBytes = buffers ? dataBytes().peak - liveBefore : info.peakBytes - before;
  return { records, wallMs, peakBytes: Math.max(0, peakBytes), nesting };
}

function count(owner: string, name: string, value: unknown): number {
  if (typeof value !== "number") throw new TypeError(`${owner}: ${name} must be an integer >= 0, got ${String(value)}`);
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(`${owner}: ${name} must be an integer >= 0, got ${value}`);
  }
  return value;
}

/**
 * A step's profile as a table: one row per kernel (calls, self ms, share of the step's wall time, new MB), the
 * first `top` rows and the rest summed, then the kernels' total, the time outside kernels, the wall time and the
 * update without the profiler.
 *
 * @example
 * ```ts
 * import { formatProfile, groupKernels } from "./profile.ts";
 * const kernels = groupKernels([
 *   { name: "BatchMatMul", custom: false, ms: 6, depth: 1, bytesAdded: 4e6 },
 *   { name: "Add", custom: false, ms: 2, depth: 1, bytesAdded: 0 },
 * ]);
 * for (const k of kernels) k.share = k.ms / 10;
 * const table = formatProfile({
 *   backend: "blas", device: "Intel(R) Xeon(R) Processor, 2 logical cores", profiled: 1, wallMs: 10, kernelMs: 8, overheadMs: 2, plainMs: 9.5, kernels, calls: 2, peakBytes: 8e6, peakMethod: "buffers", nesting: true,
 * });
 * console.log(table.split("\n").slice(0, 2)); // ["kernel                 calls     ms  % step  new MB", "BatchMatMul                1   6.00    60.0    4.00"]
 * console.log(table.split("\n").at(-4)); // outside kernels                2.00    20.0
 * ```
 */
export function formatProfile(profile: StepProfile, options: { top?: number } = {}): string {
  if (profile === null || typeof profile !== "object" || !Array.isArray(profile.kernels)) {
    throw new TypeError("formatProfile: profile must be what profileStep returns");
  }
  for (const key of Object.keys(options)) {
    if (key !== "top") throw new TypeError(`formatProfile: unknown option "${key}"; expected top`);
  }
  const top = positiveInteger("formatProfile", "options.top", options.top ?? 25);
  const pct = (ms: number) => (profile.wallMs > 0 ? (100 * ms / profile.wallMs).toFixed(1) : "");
  const mb = (b: number | null) => (b === null ? "" : (b / 1e6).toFixed(2));
  const shown = profile.kernels.slice(0, top);
  const rest = profile.kernels.slice(top);
  const calls = (c: number) => (Number.isInteger(c) ? String(c) : c.toFixed(1));
  const body = shown.map((k) => [k.name, calls(k.calls), k.ms.toFixed(2), pct(k.ms), mb(k.bytes)]);
  if (rest.length > 0) {
    const ms = rest.reduce((s, k) => s + k.ms, 0);
    const bytes = rest.reduce((s, k) => s + (k.bytes ?? 0), 0);
    body.push([
      `(${rest.length} more kernels)`,
      calls(rest.reduce((s, k) => s + k.calls, 0)),
      ms.toFixed(2),
      pct(ms),
      mb(bytes),
    ]);
  }
  const totals = [
    ["kernels, total", calls(profile.calls), profile.kernelMs.toFixed(2), pct(profile.kernelMs), ""],
    ["outside kernels", "", profile.overheadMs.toFixed(2), pct(profile.overheadMs), ""],
    [
      `step (wall, profiled${profile.profiled > 1 ? `, mean of ${profile.profiled}` : ""})`,
      "",
      profile.wallMs.toFixed(2),
      pct(profile.wallMs),
      "",
    ],
  ];
  if (profile.plainMs !== null) totals.push(["step without profiler", "", profile.plainMs.toFixed(2), "", ""]);
  const header = ["kernel", "calls", "ms", "% step", "new MB"];
  const all = [header, ...body, ...totals];
  const widths = header.map((_, i) => Math.max(...all.map((cells) => cells[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ").trimEnd();
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  const notes = [
    profile.peakMethod === "buffers"
      ? `peak MB of the backend's data buffers above those held before the step: ${
        mb(profile.peakBytes)
      } (views count nothing)`
      : `peak tensor MB above those alive before the step: ${mb(profile.peakBytes)} (views count as tensors)`,
  ];
  if (!profile.nesting) notes.push("(custom ops' nested kernels could not be told apart: they count twice)");
  return [line(header), ...body.map(line), rule, ...totals.map(line), ...notes].join("\n");
}
