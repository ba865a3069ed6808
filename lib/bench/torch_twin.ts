/**
 * A PyTorch twin of the whole attnlab model, in a persistent `python3 torch_model.py --server` process: the same
 * variables under the same names, the same forward pass, loss and AdamW update (`torch_model.py` beside this file
 * says what "the same" covers), so that a training step can be timed in PyTorch on the same batch and weights, and a
 * test can hold the two equal (tests/torch_twin_test.ts).
 *
 * The process speaks JSON lines over stdin/stdout; float arrays travel as base64 of little-endian float32. Errors on
 * the Python side come back as a message that the method throws, naming itself. {@linkcode TorchTwin.close} ends the
 * process; a twin that is never closed keeps it running.
 *
 * PyTorch is not a project dependency: Debian's `python3-torch` provides it, with `libopenblas0` for an optimised
 * BLAS (without it torch runs the reference BLAS, about ten times slower; {@linkcode TwinInfo.blasOptimised} says).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { orthogonalRandomFeatures, performerFeatures } from "../attention/performer.ts";
import { checkInteger, checkOptionKeys, describeValue } from "../_options.ts";
import type { LmBatch } from "../data/types.ts";
import { ffnHiddenSize, type ModelConfig, modelConfig, type ModelConfigInput } from "../models/config.ts";
import { STEP_ADAM } from "./train_step.ts";
import { PYTHON, TORCH_PACKAGES } from "./torch.ts";
import { ADAM_RULES, type AdamOptions, resolveAdamOptions } from "../train/adam.ts";

/** The server script run by {@linkcode TorchTwin.start}. */
export const TWIN_SCRIPT: string = fileURLToPath(new URL("./torch_model.py", import.meta.url));

/** The interpreter {@linkcode TorchTwin.start} runs by default. */
export const TWIN_PYTHON: string = PYTHON;

const INSTALL = `apt-get install -y ${TORCH_PACKAGES.join(" ")}`;

/** What the twin process reports when it starts. */
export interface TwinInfo {
  /** torch.__version__. */
  torch: string;
  /** torch.get_num_threads() after setting it. */
  threads: number;
  /**
   * The BLAS library torch has loaded, read from /proc/self/maps after a matmul: "openblas", "mkl", "blis", "atlas",
   * "reference" (Debian's libblas3), "accelerate" (from torch's build config, where /proc is absent) or "unknown".
   */
  blas: string;
  /** The loaded library's file, when found. */
  blasPath: string | null;
  /** False for the reference BLAS and for a library that could not be named. */
  blasOptimised: boolean;
  /** torch's own float32 1024 × 1024 × 1024 matmul, the median of five after one warm-up, in GFLOP/s. */
  sgemmGflops: number;
}

/** One attention computation for {@linkcode TorchTwin.timeAttention}: inputs q, k, v of [batch, heads, n, d]. */
export interface TwinAttentionSpec {
  /** A variant of torch_attention.py's TWINS (lib/attention's names), with its default options. */
  variant: string;
  n: number;
  batch: number;
  heads: number;
  d: number;
  causal: boolean;
  /** Softmax by query blocks of this many rows, each block's probabilities recomputed in the backward. */
  queryBlockSize?: number | null;
}

/** What {@linkcode TorchTwin.timeSteps} measured. */
export interface TwinStepTimes {
  /** Milliseconds of each timed update (loss, backward, clipping, AdamW), wall clock around the whole update. */
  ms: number[];
  /**
   * Peak bytes of tensors allocated by one update above those alive before it, measured on one extra update between
   * the warm-up and the timed ones: the running total of torch.profiler's allocation events (profile_memory, the CPU
   * allocator), as tf.profile's peakBytes counts a step's tensors in lib/bench/train_step.ts. Where the profiler
   * cannot say, the rise of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs); NaN when
   * neither works or `memory` was false. `peakMethod` says which.
   */
  peakBytes: number;
  /** "profiler", "rss" or "none". */
  peakMethod: string;
  /** The loss before each timed update. */
  losses: number[];
}

/** A masked language model's batch (task "mlm"): an LmBatch whose `mask` weights pick the positions scored. */
export type MlmBatch = LmBatch & { mask: Float32Array };

/** Options of {@linkcode TorchTwin.load}. */
export interface TwinLoadOptions {
  /** attnlab variable name -> values (row-major, float32); default: the twin's own seeded init (not attnlab's). */
  weights?: Record<string, Float32Array>;
  /**
   * AdamW settings over {@linkcode TWIN_ADAM_DEFAULTS} (LM_RECIPE's lr, β₂, weight decay and clipping, constant
   * learning rate: what lib/bench/train_step.ts's trainStepTimer uses). `decay` is called once per variable with a
   * zero tf.Variable of its shape.
   */
  adam?: Partial<AdamOptions>;
  /**
   * "gather" (default): a row lookup, as the attnlab model makes its embedding on backends with the lookup's gradient
   * (blas, cpu); "onehot": the one-hot matmul it makes elsewhere (wasm).
   */
  embedding?: "onehot" | "gather";
}

/**
 * The AdamW settings a twin trains with unless `load`'s `adam` overrides them: those of trainStepTimer.
 *
 * @example
 * ```ts
 * import { TWIN_ADAM_DEFAULTS } from "./torch_twin.ts";
 * console.log(TWIN_ADAM_DEFAULTS.beta2, TWIN_ADAM_DEFAULTS.schedule); // 0.98 constant
 * ```
 */
export const TWIN_ADAM_DEFAULTS: Readonly<AdamOptions> = STEP_ADAM;

/**
 * The trainable variables of a model config, name -> shape, in the order lib/models/model.ts creates them: the names
 * under which the twin takes weights and returns gradients.
 *
 * @example
 * ```ts
 * import { modelConfig } from "../models/config.ts";
 * import { twinVariableShapes } from "./torch_twin.ts";
 * const shapes = twinVariableShapes(modelConfig({ attention: ["softmax"], dModel: 8, heads: 2 }));
 * console.log(Object.keys(shapes).join(" ")); // embed.weight blocks.0.attn.wq blocks.0.attn.wk blocks.0.attn.wv blocks.0.attn.wo blocks.0.ffn.w1 blocks.0.ffn.w2 blocks.0.ffn.w3
 * console.log(shapes["blocks.0.ffn.w1"]); // [ 8, 21 ]
 * ```
 */
export function twinVariableShapes(config: ModelConfig): Record<string, number[]> {
  const { vocabSize: V, dModel: d, attention, norm } = config;
  const hidden = ffnHiddenSize(config);
  const out: Record<string, number[]> = { "embed.weight": [V, d] };
  attention.forEach((layer, i) => {
    const p = `blocks.${i}`;
    if (norm === "layer") Object.assign(out, { [`${p}.norm1.weight`]: [d], [`${p}.norm1.bias`]: [d] });
    for (const w of ["wq", "wk", "wv"]) out[`${p}.attn.${w}`] = [d, d];
    if (layer.gain) out[`${p}.attn.gain`] = [d];
    out[`${p}.attn.wo`] = [d, d];
    if (norm === "layer") Object.assign(out, { [`${p}.norm2.weight`]: [d], [`${p}.norm2.bias`]: [d] });
    if (config.ffn === "glu") {
      Object.assign(out, { [`${p}.ffn.w1`]: [d, hidden], [`${p}.ffn.w2`]: [d, hidden], [`${p}.ffn.w3`]: [hidden, d] });
    } else {
      Object.assign(out, { [`${p}.ffn.w1`]: [d, hidden], [`${p}.ffn.w2`]: [hidden, d] });
    }
  });
  if (norm === "layer") Object.assign(out, { "norm.weight": [d], "norm.bias": [d] });
  return out;
}

function toBase64(x: Float32Array | Int32Array): string {
  return Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString("base64");
}

function floatsFromBase64(text: string): Float32Array {
  const bytes = Buffer.from(text, "base64");
  // A copy into a fresh buffer: the decoded bytes may start at an offset that is not a multiple of 4.
  const out = new Float32Array(bytes.byteLength / 4);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

/** Reads newline-terminated lines from a byte stream, however long a line is. */
class LineReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #pending: Uint8Array[] = [];
  #done = false;
  readonly #decoder = new TextDecoder();

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  /** The next line without its newline, or null at the end of the stream. */
  async next(): Promise<string | null> {
    while (true) {
      const last = this.#pending.at(-1);
      const at = last === undefined ? -1 : last.indexOf(10);
      if (last !== undefined && at >= 0) {
        const head = last.subarray(0, at);
        const rest = last.subarray(at + 1);
        const parts = [...this.#pending.slice(0, -1), head];
        this.#pending = rest.length > 0 ? [rest] : [];
        const total = parts.reduce((s, p) => s + p.length, 0);
        const joined = new Uint8Array(total);
        let offset = 0;
        for (const p of parts) {
          joined.set(p, offset);
          offset += p.length;
        }
        return this.#decoder.decode(joined);
      }
      if (this.#done) return null;
      const { value, done } = await this.#reader.read();
      if (done) {
        this.#done = true;
        if (this.#pending.length === 0) return null;
        this.#pending.push(new Uint8Array([10]));
      } else if (value.length > 0) {
        // Only the newest chunk can hold the newline not seen yet.
        this.#pending.push(value);
      }
    }
  }

  /** Reads and drops whatever is left, to the end of the stream. */
  async drain(): Promise<void> {
    while (!this.#done) {
      const { done } = await this.#reader.read();
      if (done) this.#done = true;
    }
    this.#reader.releaseLock();
  }
}

type Reply = Record<string, unknown> & { ok: boolean; error?: string };

/**
 * The PyTorch twin process. Start one with {@linkcode TorchTwin.start}, {@linkcode TorchTwin.load} a model config
 * (and an attnlab model's weights), then compare losses and gradients or time training steps; close it when done.
 *
 * @example
 * ```ts
 * import { modelConfig } from "../models/config.ts";
 * import { probeTorch } from "./torch.ts";
 * import { TorchTwin } from "./torch_twin.ts";
 * if ((await probeTorch()).available) {
 *   const twin = await TorchTwin.start({ threads: 1 });
 *   try {
 *     await twin.load(modelConfig({ attention: "vanilla", layers: 1, dModel: 8, heads: 2 }));
 *     const batch = { kind: "lm" as const, inputs: Int32Array.from([1, 2, 3]), targets: Int32Array.from([2, 3, 4]), batch: 1, length: 3 };
 *     const { loss, grads } = await twin.lossAndGrads(batch);
 *     const times = await twin.timeSteps(batch, { warmup: 1, steps: 2 });
 *     console.log(loss > 0, grads["blocks.0.attn.wq"].length, times.ms.length); // true 64 2
 *   } finally {
 *     await twin.close();
 *   }
 * }
 * ```
 */
export class TorchTwin {
  /** Version, threads, BLAS library and sgemm speed of the twin process. */
  readonly info: TwinInfo;
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: LineReader;
  readonly #stderr: Promise<void>;
  #stderrTail = "";
  #nextId = 1;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;
  #exited = false;
  #config: ModelConfig | null = null;
  #shapes: Record<string, number[]> = {};
  #adam: Record<string, unknown> | null = null;

  private constructor(child: Deno.ChildProcess, lines: LineReader, info: TwinInfo, stderr: StderrPump) {
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.#lines = lines;
    this.info = info;
    this.#stderr = stderr.done;
    stderr.onText = (text) => this.#stderrTail = (this.#stderrTail + text).slice(-4000);
    this.#stderrTail = stderr.text;
    child.status.then(() => this.#exited = true);
  }

  /**
   * Spawns `python3 torch_model.py --server` (default /usr/bin/python3) with `threads` torch, OpenMP and OpenBLAS
   * threads (default: every core) and waits for its hello: the torch version, the BLAS it loaded and its sgemm speed.
   * Throws an Error naming the install command when python3 or PyTorch is missing.
   */
  static async start(options: { python?: string; threads?: number } = {}): Promise<TorchTwin> {
    const o = checkOptionKeys("TorchTwin.start", options, ["python", "threads"]);
    const python = o.python ?? TWIN_PYTHON;
    if (typeof python !== "string" || python === "") {
      throw new TypeError(
        `TorchTwin.start: option python must be the path of a Python 3 interpreter, got ${describeValue(python)}`,
      );
    }
    const threads = o.threads ?? navigator.hardwareConcurrency ?? 1;
    checkInteger("TorchTwin.start", "option threads", threads, { min: 1 });
    const n = String(threads);
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(python, {
        args: [TWIN_SCRIPT, "--server", "--threads", n],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        env: { OMP_NUM_THREADS: n, OPENBLAS_NUM_THREADS: n, MKL_NUM_THREADS: n, PYTHONDONTWRITEBYTECODE: "1" },
      }).spawn();
    } catch (err) {
      throw new Error(
        `TorchTwin.start: cannot run ${python} (${(err as Error).message.split("\n")[0]}); ` +
          `install Python 3 with PyTorch and OpenBLAS: ${INSTALL} (as root), or pass options.python`,
      );
    }
    const stderr = pumpStderr(child.stderr);
    const lines = new LineReader(child.stdout);
    let hello: Reply | null = null;
    let failure: string;
    try {
      const line = await lines.next();
      hello = line === null ? null : JSON.parse(line) as Reply;
      failure = hello === null ? "it exited before saying hello" : hello.error ?? "";
    } catch (err) {
      failure = `its first line was not JSON (${(err as Error).message})`;
    }
    if (hello?.ok === true) return new TorchTwin(child, lines, hello.info as TwinInfo, stderr);
    // No twin: end the process and read its streams to the end.
    try {
      child.stdin.close();
    } catch { /* already closed */ }
    const status = await child.status;
    await lines.drain();
    await stderr.done;
    if (hello?.missing === "torch") {
      throw new Error(
        `TorchTwin.start: PyTorch is not installed for ${python} (${hello.error}); install it: ${INSTALL} ` +
          "(as root; the reference BLAS without libopenblas0 is about ten times slower)",
      );
    }
    const tail = stderr.text.trim().split("\n").slice(-3).join(" | ");
    throw new Error(
      `TorchTwin.start: ${python} ${TWIN_SCRIPT} failed (exit ${status.code}): ${failure}${tail ? `: ${tail}` : ""}; ` +
        `it needs Python 3 with PyTorch (${INSTALL})`,
    );
  }

  /** The config of the loaded model, or null before {@linkcode TorchTwin.load}. */
  get config(): ModelConfig | null {
    return this.#config;
  }

  /** The AdamW settings the loaded model trains with (lr, minLr, warmup, steps, schedule, β₁, β₂, eps, ...). */
  get adamOptions(): Readonly<Record<string, unknown>> | null {
    return this.#adam;
  }

  /**
   * Builds the twin of `config` (task "lm" or "mlm") with `weights` (every variable of the config, by attnlab name)
   * or its own init, and a fresh AdamW over them. Performer layers get the projection the attnlab model draws for
   * them (option `projection`, else `orthogonalRandomFeatures` with the layer's seed, config.seed · 1009 + layer).
   */
  async load(config: ModelConfig, options: TwinLoadOptions = {}): Promise<void> {
    const owner = "TorchTwin.load";
    const o = checkOptionKeys(owner, options, ["weights", "adam", "embedding"]) as TwinLoadOptions;
    const resolved = checkConfig(owner, config);
    const shapes = twinVariableShapes(resolved);
    const embedding = o.embedding ?? "gather";
    if (embedding !== "onehot" && embedding !== "gather") {
      throw new RangeError(`${owner}: option embedding must be "onehot" or "gather", got ${describeValue(embedding)}`);
    }
    let weights: Record<string, string> | null = null;
    if (o.weights !== undefined) {
      if (o.weights === null || typeof o.weights !== "object") {
        throw new TypeError(`${owner}: option weights must be an object of variable name -> Float32Array`);
      }
      for (const name of Object.keys(o.weights)) {
        if (!(name in shapes)) {
          throw new Error(
            `${owner}: option weights has "${name}", which is not a variable of this config; ` +
              `its variables are ${Object.keys(shapes).join(", ")}`,
          );
        }
      }
      weights = {};
      for (const [name, shape] of Object.entries(shapes)) {
        const w = o.weights[name];
        if (w === undefined) {
          throw new Error(`${owner}: option weights lacks "${name}" [${shape}]; give every variable, or none`);
        }
        if (!(w instanceof Float32Array)) {
          throw new TypeError(`${owner}: option weights["${name}"] must be a Float32Array, got ${describeValue(w)}`);
        }
        if (w.length !== tf.util.sizeFromShape(shape)) {
          throw new RangeError(
            `${owner}: option weights["${name}"] must hold ${
              tf.util.sizeFromShape(shape)
            } values ([${shape}]), got ${w.length}`,
          );
        }
        weights[name] = toBase64(w);
      }
    }
    const adam = resolveAdam(owner, o.adam, shapes);
    const { config: wire, projections } = wireConfig(resolved);
    const reply = await this.#call("load", { config: wire, weights, projections, embedding, ...adam });
    this.#config = resolved;
    this.#shapes = reply.shapes as Record<string, number[]>;
    this.#adam = reply.adam as Record<string, unknown>;
  }

  /** The loss of `batch` and every variable's gradient, keyed by attnlab name; the weights do not change. */
  async lossAndGrads(batch: LmBatch | MlmBatch): Promise<{ loss: number; grads: Record<string, Float32Array> }> {
    const reply = await this.#call("lossAndGrads", { batch: this.#batch("TorchTwin.lossAndGrads", batch) });
    const grads: Record<string, Float32Array> = {};
    for (const [name, data] of Object.entries(reply.grads as Record<string, string>)) {
      grads[name] = floatsFromBase64(data);
    }
    return { loss: reply.loss as number, grads };
  }

  /** One training update on `batch` (loss, gradients, clipping, AdamW); returns the loss before it. */
  async step(batch: LmBatch | MlmBatch): Promise<number> {
    const reply = await this.#call("step", { batch: this.#batch("TorchTwin.step", batch) });
    return reply.loss as number;
  }

  /**
   * Sets the threads of every later op: torch's intra-op threads and, when torch runs OpenBLAS, OpenBLAS's pool.
   * Returns torch's thread count after the call. (On a small model two threads can be slower than one: see
   * lib/bench/train_bench.ts, which times PyTorch at its faster setting.)
   */
  async setThreads(threads: number): Promise<number> {
    checkInteger("TorchTwin.setThreads", "threads", threads, { min: 1 });
    const reply = await this.#call("threads", { threads });
    return reply.threads as number;
  }

  /** The current weights, keyed by attnlab name. */
  async weights(): Promise<Record<string, Float32Array>> {
    const reply = await this.#call("weights", {});
    const out: Record<string, Float32Array> = {};
    for (const [name, data] of Object.entries(reply.weights as Record<string, string>)) {
      out[name] = floatsFromBase64(data);
    }
    return out;
  }

  /**
   * `warmup` untimed updates on `batch`, one more measured for memory (unless `memory` is false), then `steps` timed
   * updates, each a full AdamW step with clipping. The weights train as they go.
   */
  async timeSteps(
    batch: LmBatch | MlmBatch,
    options: { warmup: number; steps: number; memory?: boolean },
  ): Promise<TwinStepTimes> {
    const owner = "TorchTwin.timeSteps";
    if (options === undefined) throw new TypeError(`${owner}: options { warmup, steps } are required`);
    const o = checkOptionKeys(owner, options, ["warmup", "steps", "memory"]);
    const { warmup, steps, memory = true } = o;
    checkInteger(owner, "option warmup", warmup);
    checkInteger(owner, "option steps", steps, { min: 1 });
    if (typeof memory !== "boolean") throw new TypeError(`${owner}: option memory must be true or false`);
    const reply = await this.#call("timeSteps", { batch: this.#batch(owner, batch), warmup, steps, memory });
    const peak = reply.peakBytes as number;
    return {
      ms: reply.ms as number[],
      peakBytes: peak < 0 ? NaN : peak,
      peakMethod: reply.peakMethod as string,
      losses: reply.losses as number[],
    };
  }

  /**
   * Times one attention computation of torch_attention.py forward + backward (the gradients of q, k and v through a
   * seeded cotangent) at the twin's current threads: `warmup` untimed runs, then `repeats` timed ones, their ms. Needs
   * no loaded model. The inputs of the last spec are kept, so repeated calls time only the computation.
   */
  async timeAttention(spec: TwinAttentionSpec, options: { warmup?: number; repeats: number }): Promise<number[]> {
    const owner = "TorchTwin.timeAttention";
    if (spec === null || typeof spec !== "object") throw new TypeError(`${owner}: spec must be an object`);
    const s = checkOptionKeys(owner, spec, ["variant", "n", "batch", "heads", "d", "causal", "queryBlockSize"]);
    if (typeof s.variant !== "string") throw new TypeError(`${owner}: spec.variant must be a variant name`);
    for (const key of ["n", "batch", "heads", "d"] as const) checkInteger(owner, `spec.${key}`, s[key], { min: 1 });
    if (typeof s.causal !== "boolean") throw new TypeError(`${owner}: spec.causal must be true or false`);
    if (s.queryBlockSize !== undefined && s.queryBlockSize !== null) {
      checkInteger(owner, "spec.queryBlockSize", s.queryBlockSize, { min: 1 });
    }
    if (options === undefined) throw new TypeError(`${owner}: options { repeats } are required`);
    const o = checkOptionKeys(owner, options, ["warmup", "repeats"]);
    const warmup = o.warmup ?? 1;
    checkInteger(owner, "option warmup", warmup);
    checkInteger(owner, "option repeats", o.repeats, { min: 1 });
    const reply = await this.#call("timeAttention", {
      ...s,
      queryBlockSize: s.queryBlockSize ?? null,
      warmup,
      repeats: o.repeats,
    });
    return reply.ms as number[];
  }

  /** Ends the twin process (asks it to exit, kills it after 10 s) and waits for it. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queue.catch(() => {});
    if (!this.#exited) {
      try {
        await this.#writer.write(new TextEncoder().encode(JSON.stringify({ id: 0, op: "close" }) + "\n"));
      } catch { /* the process is gone */ }
    }
    try {
      await this.#writer.close();
    } catch { /* already closed */ }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        try {
          this.#child.kill("SIGKILL");
        } catch { /* exited meanwhile */ }
        resolve();
      }, 10_000);
    });
    await Promise.race([this.#child.status, killed]);
    clearTimeout(timer);
    await this.#child.status;
    await this.#lines.drain();
    await this.#stderr;
  }

  #batch(owner: string, batch: LmBatch | MlmBatch): Record<string, unknown> {
    if (this.#closed) throw new Error(`${owner}: the twin was closed; start a new one with TorchTwin.start()`);
    const config = this.#config;
    if (config === null) throw new Error(`${owner}: no model loaded; call load(config) first`);
    return wireBatch(owner, batch, config);
  }

  /** One request and its reply, after the requests before it. */
  #call(op: string, payload: Record<string, unknown>): Promise<Reply> {
    const run = async (): Promise<Reply> => {
      const owner = `TorchTwin.${op}`;
      if (this.#closed) throw new Error(`${owner}: the twin was closed; start a new one with TorchTwin.start()`);
      const id = this.#nextId++;
      try {
        await this.#writer.write(new TextEncoder().encode(JSON.stringify({ id, op, ...payload }) + "\n"));
      } catch (err) {
        throw new Error(`${owner}: cannot write to the twin process (${(err as Error).message})${this.#why()}`);
      }
      const line = await this.#lines.next();
      if (line === null) throw new Error(`${owner}: the twin process exited${this.#why()}`);
      const reply = JSON.parse(line) as Reply;
      if (reply.id !== id) throw new Error(`${owner}: the twin answered request ${reply.id}, expected ${id}`);
      if (!reply.ok) throw new Error(`${owner}: the PyTorch twin failed: ${reply.error}`);
      return reply;
    };
    const next = this.#queue.then(run, run);
    this.#queue = next.catch(() => {});
    return next;
  }

  #why(): string {
    const tail = this.#stderrTail.trim().split("\n").slice(-3).join(" | ");
    return tail ? `; its stderr ends: ${tail}` : "";
  }
}

interface StderrPump {
  text: string;
  onText: ((text: string) => void) | null;
  done: Promise<void>;
}

function pumpStderr(stream: ReadableStream<Uint8Array>): StderrPump {
  const pump: StderrPump = { text: "", onText: null, done: Promise.resolve() };
  pump.done = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      const text = decoder.decode(chunk, { stream: true });
      pump.text = (pump.text + text).slice(-4000);
      pump.onText?.(text);
    }
  })();
  return pump;
}

/** The config checked again by modelConfig (unknown keys, option names, types), as a full ModelConfig. */
function checkConfig(owner: string, config: ModelConfig): ModelConfig {
  if (config === null || typeof config !== "object" || !Array.isArray(config.attention)) {
    throw new TypeError(`${owner}: config must be a ModelConfig (modelConfig(...) or model.config)`);
  }
  const { preset, ...rest } = config;
  const resolved = modelConfig(rest as unknown as ModelConfigInput);
  resolved.preset = preset ?? null;
  if (resolved.task !== "lm" && resolved.task !== "mlm") {
    throw new RangeError(`${owner}: the twin models task "lm" or "mlm", got "${resolved.task}"`);
  }
  return resolved;
}

/** The config as JSON, and each performer layer's projection [m, dk] as the attnlab model draws it. */
function wireConfig(config: ModelConfig) {
  const dh = config.dModel / config.heads;
  const projections: Record<string, { shape: number[]; data: string }> = {};
  const attention = config.attention.map((layer, i) => {
    const options = { ...layer.options };
    // Name dispatch kept on purpose: the PyTorch twin gets Performer's random projection as data, drawn here as the
    // model draws it, so that both sides use the same features (no other variant draws random weights).
    if (layer.variant === "performer") {
      const given = options.projection as tf.Tensor2D | null | undefined;
      const m = (options.features as number | null | undefined) ?? performerFeatures(dh);
      const seed = (options.seed as number | undefined) ?? config.seed * 1009 + i;
      const w = given ?? orthogonalRandomFeatures({ features: m, dk: dh, seed });
      projections[String(i)] = { shape: [...w.shape], data: toBase64(w.dataSync() as Float32Array) };
      if (!given) w.dispose();
      delete options.projection;
    }
    return { ...layer, options };
  });
  return { config: { ...config, attention }, projections };
}

function resolveAdam(owner: string, adam: Partial<AdamOptions> | undefined, shapes: Record<string, number[]>) {
  checkOptionKeys(`${owner}: option adam`, adam, Object.keys(ADAM_RULES));
  const o = resolveAdamOptions(`${owner}: option adam`, { ...TWIN_ADAM_DEFAULTS, ...adam } as AdamOptions);
  let decayNames: string[] | null = null;
  if (o.decay !== null) {
    decayNames = [];
    for (const [name, shape] of Object.entries(shapes)) {
      const stand = tf.variable(tf.zeros(shape), false, `twin_decay_${name}`);
      try {
        const chosen = o.decay(name, stand);
        if (typeof chosen !== "boolean") {
          throw new TypeError(`${owner}: option adam.decay must return true or false, got ${describeValue(chosen)}`);
        }
        if (chosen) decayNames.push(name);
      } finally {
        stand.dispose();
      }
    }
  }
  const { decay: _, ...rest } = o;
  return { adam: rest, decayNames };
}

/** The batch checked against the config and encoded for the wire. */
function wireBatch(owner: string, batch: LmBatch | MlmBatch, config: ModelConfig): Record<string, unknown> {
  if (batch === null || typeof batch !== "object" || batch.kind !== "lm") {
    throw new TypeError(`${owner}: batch must be an LmBatch (kind "lm"; with mask weights for task "mlm")`);
  }
  for (const key of ["batch", "length"] as const) {
    checkInteger(owner, `batch.${key}`, batch[key], { min: 1 });
  }
  if (batch.length > config.maxLength) {
    throw new RangeError(
      `${owner}: batch.length must be at most the model's maxLength ${config.maxLength}, got ${batch.length}`,
    );
  }
  const count = batch.batch * batch.length;
  const V = config.vocabSize;
  for (const key of ["inputs", "targets"] as const) {
    const ids = batch[key];
    if (!(ids instanceof Int32Array) || ids.length !== count) {
      throw new TypeError(
        `${owner}: batch.${key} must be an Int32Array of batch × length = ${count} token ids, got ${
          describeValue(ids)
        }`,
      );
    }
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] < 0 || ids[i] >= V) {
        throw new RangeError(`${owner}: batch.${key}[${i}] is ${ids[i]}, outside the vocabulary 0..${V - 1}`);
      }
    }
  }
  let mask: string | null = null;
  if (batch.mask !== undefined) {
    if (!(batch.mask instanceof Float32Array) || batch.mask.length !== count) {
      throw new TypeError(
        `${owner}: batch.mask must be a Float32Array of ${count} weights, got ${describeValue(batch.mask)}`,
      );
    }
    let total = 0;
    for (const w of batch.mask) {
      if (!(w >= 0) || w === Infinity) {
        throw new RangeError(`${owner}: batch.mask weights must be finite and >= 0, got ${w}`);
      }
      total += w;
    }
    if (total === 0) throw new RangeError(`${owner}: batch.mask selects no target (all weights are 0)`);
    mask = toBase64(batch.mask);
  } else if (config.task === "mlm") {
    throw new TypeError(
      `${owner}: a masked language model (task "mlm") needs batch.mask, a Float32Array of ${count} weights ` +
        "(1 on the masked positions); build its batches with lib/data/mlm.ts",
    );
  }
  return {
    inputs: toBase64(batch.inputs),
    targets: toBase64(batch.targets),
    mask,
    batch: batch.batch,
    length: batch.length,
  };
}
