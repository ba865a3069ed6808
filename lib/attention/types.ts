/**
 * The contract every attention variant implements, and the input checks they share.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { checkNotDisposed, describeValue, type OptionRule } from "../_options.ts";

/** Options every variant accepts. */
export interface AttentionOptions {
  /** Mask future keys: query i sees keys j <= i. Default false. */
  causal?: boolean;
  /**
   * A key-padding mask [batch, n] (PyTorch's `key_padding_mask`, inverted): 1 where key j of sequence b is a real
   * token, 0 where it is padding. Pad keys are removed for every query of their sequence, causal or not, in
   * attend(), weights() and reference() alike: no weight, no share of a denominator, and zero gradient for their k and
   * v rows. A query that sees no real key returns 0 (its weights() row is 0). float32, int32 or bool (any nonzero
   * entry counts as a real key). Default null: every key is real. The recurrent forms and the decoders refuse it
   * (they run one unpadded sequence). README.md beside this file, "Key-padding masks", gives each variant's formula.
   */
  keyMask?: tf.Tensor2D | null;
}

/** A variant's own options, without those {@linkcode defineVariant} adds to every variant (`keyMask`). */
export type OwnOptions<O extends AttentionOptions> = Omit<O, "keyMask">;

/** Queries, keys and values. q, k: [batch, heads, n, dk]; v: [batch, heads, n, dv]. */
export interface QKV {
  q: tf.Tensor4D;
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

/** Queries and keys, [batch, heads, n, dk]. */
export interface QK {
  q: tf.Tensor4D;
  k: tf.Tensor4D;
}

/** One token: q, k [batch, heads, dk] and v [batch, heads, dv]. */
export interface Token {
  q: tf.Tensor3D;
  k: tf.Tensor3D;
  v: tf.Tensor3D;
}

/** Sizes fixed for a carried state: batch, heads, key/query features dk, value features dv. */
export interface StateDims {
  batch: number;
  heads: number;
  dk: number;
  dv: number;
}

/** A carried state: its tensors by name, e.g. linear attention's `{ s, z }`. */
export type StateTensors = Record<string, tf.Tensor>;

/** The problem size of a FLOP count. */
export interface FlopSize {
  batch: number;
  heads: number;
  /** Sequence length. */
  n: number;
  /** Query/key feature size. */
  dk: number;
  /** Value size. */
  dv: number;
}

/** Matmul FLOPs of one forward pass and of forward + backward (gradients for q, k and v). */
export interface FlopCount {
  fwd: number;
  fwdBwd: number;
}

/** What a decode session (lib/models/generate.ts) tells a variant about the run it sets options for. */
export interface SessionContext {
  /** The length of the whole sequence the session may decode. */
  length: number;
  /** True when the session re-runs attend() over the whole prefix for every token (cache "none"). */
  rerun: boolean;
}

/** One call of a {@linkcode DecodingEngine}: p new tokens q, k [b, h, p, dk], v [b, h, p, dv] at `position`. */
export interface DecodeCall {
  qkv: QKV;
  /** Tokens consumed before these (the absolute position of the first). */
  position: number;
  /** True for decoder.step (one token, the recurrent form), false for prefill (the chunked form). */
  single: boolean;
}

/**
 * What `decoder()` (decode.ts) drives for one variant: tensors in, outputs and new tensors out. Every variant with a
 * recurrent form gets one derived from it; the others (softmax's KV cache, diag's block, local's window) define their
 * own. Resolved options `o` are the variant's own plus `extraDefaults`, with causal true. X: the type of the
 * decoder-only options.
 */
export interface DecodingEngine<X extends object = Record<never, never>> {
  /** Options only the decoder takes (softmax's cache), with their defaults; their rules in `extraRules`. */
  readonly extraDefaults: Readonly<X>;
  readonly extraRules: Readonly<Record<string, OptionRule>>;
  /** Throws, naming `owner`, when the resolved options cannot decode (cosFormer without maxLength). */
  check(o: Readonly<Record<string, unknown>>, owner: string): void;
  /**
   * The shapes of the fixed-size state, which `init(dims, { from })` accepts from the recurrent forms; null when the
   * state grows with the tokens (a cache), so that only the decoder itself can make one.
   */
  readonly stateShapes: ((dims: StateDims, o: Readonly<Record<string, unknown>>) => Record<string, number[]>) | null;
  /** The state before the first token (run inside tf.tidy). */
  init(dims: StateDims, o: Readonly<Record<string, unknown>>): StateTensors;
  /** The outputs [b, h, p, dv] of the call's tokens and the state after them (run inside tf.tidy). */
  advance(
    tensors: Readonly<StateTensors>,
    call: DecodeCall,
    o: Readonly<Record<string, unknown>>,
  ): { out: tf.Tensor4D; tensors: StateTensors };
}

/**
 * One registered attention variant. All forms share the same signature. O: its options; X: the options its decoder
 * takes besides them (softmax's cache).
 */
export interface AttentionVariant<
  O extends AttentionOptions = AttentionOptions,
  X extends object = Record<never, never>,
> {
  readonly name: string;
  /** q, k: [batch, heads, n, dk]; v: [batch, heads, n, dv] -> [batch, heads, n, dv]. The fast path. */
  attend(qkv: QKV, options?: O): tf.Tensor4D;
  /** The explicit [batch, heads, n, n] matrix M that attend() applies to v (before any output norm). Naive O(n^2). */
  weights(qk: QK, options?: O): tf.Tensor4D;
  /** The naive O(n^2) output: weights(q, k) · v, then the output norm where the variant has one. */
  reference(qkv: QKV, options?: O): tf.Tensor4D;
  /** What reference() applies to weights(q, k) · v: the variant's output norm, or the identity. o: [batch, heads, n, dv]. */
  outputNorm(o: tf.Tensor4D, options?: O): tf.Tensor4D;
  /** [n, n]: 1 where query i may see key j under these options (the sparsity pattern and the causal mask), else 0. */
  visibleKeys(n: number, options?: O): tf.Tensor2D;
  /** Matmul FLOPs of attend() at this size (padding and masked entries included, as the implementation computes them). */
  flops(size: FlopSize, options?: O): FlopCount;
  /**
   * The options a decode session of `context.length` tokens runs this variant with, from the layer's own: cosFormer
   * fixes its M to the length, softmax re-runs a prefix in query blocks. Most variants return them unchanged.
   */
  sessionOptions(options: Readonly<Record<string, unknown>>, context: SessionContext): Record<string, unknown>;
  /** What decode.ts drives to decode token by token, or null when the variant has no decoding form. */
  readonly decoding: DecodingEngine<X> | null;
  /** Every option's default (null: computed from the input); the keys are the accepted options. */
  readonly defaults: Readonly<Required<O>>;
  /**
   * How each option is checked (the keys are the accepted options): give them to {@linkcode resolveOptions}
   * with {@linkcode AttentionVariant.defaults} to check options before running the variant, as a model does
   * when it is built.
   */
  readonly rules: Readonly<Record<string, OptionRule>>;
}

/**
 * The options of the causal state-carrying forms: the variant's own (causal implied; no keyMask: they run one unpadded
 * sequence), the state and its position.
 */
export type StateFormOptions<O extends AttentionOptions, S extends StateTensors> =
  & Omit<O, "causal" | "keyMask">
  & {
    causal?: true;
    /** The state after `position` tokens, from initialState() or an earlier call; default the zero state. */
    state?: S | null;
    /** Tokens the state has consumed: the absolute position of the first token given. Default 0. */
    position?: number;
  };

/**
 * A variant whose causal past fits in a fixed-size state, with three forms of one signature (as
 * flash-linear-attention's naive / chunk / fused_recurrent): `chunkedAttend` and `recurrentAttend` take q, k, v, the
 * options and an initial state and return `{ output, state }`; `recurrentStep` is one token of the recurrence. Each
 * equals the causal `attend()` and `reference()`, and a state carried between calls continues a sequence exactly.
 */
export interface RecurrentAttentionVariant<O extends AttentionOptions, S extends StateTensors>
  extends AttentionVariant<O> {
  /** The state before the first token, for inputs of these sizes. The caller owns (and disposes) its tensors. */
  initialState(dims: StateDims, options?: Omit<O, "causal" | "keyMask"> & { causal?: true }): S;
  /** The chunkwise-parallel form over n tokens: output [b, h, n, dv] and the state after the last token. */
  chunkedAttend(qkv: QKV, options?: StateFormOptions<O, S>): { output: tf.Tensor4D; state: S };
  /** The recurrent form: recurrentStep over the n tokens, O(1) state per token. */
  recurrentAttend(qkv: QKV, options?: StateFormOptions<O, S>): { output: tf.Tensor4D; state: S };
  /** One token: output [b, h, dv] and the next state. The caller owns both and the state it passed in. */
  recurrentStep(token: Token, options: StateFormOptions<O, S> & { state: S }): { output: tf.Tensor3D; state: S };
}

// The option rules live in lib/_options.ts; variant files import them from here.
export { checkOptionKeys, type OptionRule, resolveOptions } from "../_options.ts";

// Off by default: the check reads a scalar back synchronously on every call, which costs a device round trip and
// cannot run on a GPU backend that only reads asynchronously (webgpu).
let finiteChecks = false;

/**
 * Turns the NaN/Inf check on q, k and v on or off (default off) and returns the previous setting, so that a caller
 * can restore it. When on, every attend/weights/reference call reads one scalar back from the device synchronously
 * and throws a RangeError naming the input that holds NaN or Infinity; use it while debugging. The webgpu backend
 * skips it (it cannot read synchronously).
 *
 * @example
 * ```ts
 * import { setFiniteChecks } from "./types.ts";
 * const before = setFiniteChecks(true);
 * // ... calls that should stop at the first non-finite input ...
 * setFiniteChecks(before);
 * ```
 */
export function setFiniteChecks(enabled: boolean): boolean {
  if (typeof enabled !== "boolean") {
    throw new TypeError(`setFiniteChecks: enabled must be true or false, got ${describeValue(enabled)}`);
  }
  const previous = finiteChecks;
  finiteChecks = enabled;
  return previous;
}

const AXES = ["batch", "heads", "n"] as const;

function checkTensor4D(owner: string, name: string, x: unknown, last: string): tf.Tensor4D {
  if (!(x instanceof tf.Tensor)) {
    throw new TypeError(
      `${owner}: ${name} must be a tf.Tensor of shape [batch, heads, n, ${last}], got ${describeValue(x)}`,
    );
  }
  checkNotDisposed(`${owner}: ${name}`, x);
  if (x.rank !== 4) {
    throw new TypeError(
      `${owner}: ${name} must have rank 4 [batch, heads, n, ${last}], got shape [${x.shape.join(", ")}]; ` +
        `add the missing axes with tf.reshape, e.g. [1, 1, n, ${last}]`,
    );
  }
  if (x.dtype !== "float32") {
    throw new TypeError(`${owner}: ${name} must be float32, got ${x.dtype}; use tf.cast(${name}, "float32")`);
  }
  // An empty axis gives NaN (a softmax over no features) or zeros instead of an error further on.
  [...AXES, last].forEach((axis, i) => {
    if (x.shape[i] < 1) {
      throw new RangeError(
        `${owner}: ${name} must have ${axis} >= 1, got shape [${x.shape.join(", ")}] ([batch, heads, n, ${last}]); ` +
          `every axis needs at least one entry`,
      );
    }
  });
  // Opt-in (setFiniteChecks). Deno's WebGPU cannot read synchronously (lib/webgpu.ts): no check there; the training
  // loop still stops on a non-finite loss or gradient, which it reads asynchronously.
  if (finiteChecks && tf.getBackend() !== "webgpu") {
    // x * 0 is 0 for finite entries and NaN for NaN or +-Inf; one reduction finds either.
    const probe = tf.tidy(() => tf.sum(tf.mul(x, 0)));
    let bad: boolean;
    try {
      bad = !Number.isFinite(probe.dataSync()[0]);
    } finally {
      probe.dispose();
    }
    if (bad) {
      throw new RangeError(`${owner}: ${name} contains NaN or Infinity; check the values that produced it`);
    }
  }
  return x as tf.Tensor4D;
}

/**
 * Checks q and k: live (not disposed), rank 4, float32, no empty axis, finite, same batch, heads, length and
 * feature size. A wrong type or rank throws a TypeError, an empty axis a RangeError, a disposed tensor an Error.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { checkQK } from "./types.ts";
 * const q = tf.zeros([1, 2, 3, 4]) as tf.Tensor4D;
 * checkQK("demo", { q, k: q });
 * ```
 */
export function checkQK(owner: string, qk: QK): void {
  if (qk === null || typeof qk !== "object") {
    throw new TypeError(`${owner}: expected an object { q, k }, got ${describeValue(qk)}`);
  }
  const q = checkTensor4D(owner, "q", qk.q, "dk");
  const k = checkTensor4D(owner, "k", qk.k, "dk");
  if (q.shape.some((s, i) => s !== k.shape[i])) {
    throw new Error(
      `${owner}: q and k must have the same shape [batch, heads, n, dk], got q [${q.shape.join(", ")}] and k [${
        k.shape.join(", ")
      }]`,
    );
  }
}

/**
 * Checks q, k and v: as {@linkcode checkQK}, and v is [batch, heads, n, dv] with the same batch, heads and n.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { checkQKV } from "./types.ts";
 * const q = tf.zeros([1, 2, 3, 4]) as tf.Tensor4D;
 * checkQKV("demo", { q, k: q, v: tf.zeros([1, 2, 3, 5]) as tf.Tensor4D });
 * ```
 */
export function checkQKV(owner: string, qkv: QKV): void {
  if (qkv === null || typeof qkv !== "object") {
    throw new TypeError(`${owner}: expected an object { q, k, v }, got ${describeValue(qkv)}`);
  }
  checkQK(owner, qkv);
  const v = checkTensor4D(owner, "v", qkv.v, "dv");
  const k = qkv.k;
  if (v.shape[0] !== k.shape[0] || v.shape[1] !== k.shape[1] || v.shape[2] !== k.shape[2]) {
    throw new Error(
      `${owner}: v must be [batch, heads, n, dv] with the batch, heads and n of k, got v [${
        v.shape.join(", ")
      }] and k [${k.shape.join(", ")}]`,
    );
  }
}

/** The rule of option `keyMask`, which {@linkcode defineVariant} adds to every variant's rules (default null). */
export const KEY_MASK_RULE: OptionRule = Object.freeze({ type: "tensor", rank: 2, nullable: true });

const KEY_MASK_DTYPES: readonly string[] = ["float32", "int32", "bool"];

/**
 * Checks a resolved option `keyMask` (already known to be null or a live rank-2 tensor, by {@linkcode KEY_MASK_RULE})
 * against the keys k [batch, heads, n, dk]: its shape must be [batch, n] and its dtype float32, int32 or bool. A wrong
 * dtype throws a TypeError, a wrong shape an Error; both name the option, what was expected and the fix.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { checkKeyMask } from "./types.ts";
 * const k = tf.zeros([2, 1, 3, 4]) as tf.Tensor4D;
 * checkKeyMask("demo", tf.tensor2d([[1, 1, 0], [1, 1, 1]]), k);
 * try {
 *   checkKeyMask("demo", tf.ones([2, 4]) as tf.Tensor2D, k);
 * } catch (err) {
 *   console.log((err as Error).message.startsWith("demo: option keyMask must have shape [batch, n] = [2, 3]")); // true
 * }
 * ```
 */
export function checkKeyMask(owner: string, keyMask: tf.Tensor2D | null, k: tf.Tensor4D): void {
  if (keyMask === null) return;
  if (!KEY_MASK_DTYPES.includes(keyMask.dtype)) {
    throw new TypeError(
      `${owner}: option keyMask must be float32, int32 or bool (1 for a real key, 0 for a pad key), got ` +
        `${keyMask.dtype}; build it with tf.tensor2d(rows, [batch, n], "float32")`,
    );
  }
  const [batch, , n] = k.shape;
  if (keyMask.shape[0] !== batch || keyMask.shape[1] !== n) {
    throw new Error(
      `${owner}: option keyMask must have shape [batch, n] = [${batch}, ${n}] (k's batch and length), got ` +
        `[${keyMask.shape.join(", ")}]; give one row per sequence with 1 for each real key and 0 for each pad key`,
    );
  }
}

/**
 * Throws unless option `keyMask` is absent or null: the recurrent forms and the decoders run one sequence without
 * padding, so a key-padding mask there is a mistake. The Error names `owner` and says where a mask belongs.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { refuseKeyMask } from "./types.ts";
 * refuseKeyMask("demo", { keyMask: null });
 * try {
 *   refuseKeyMask("demo", { keyMask: tf.ones([1, 2]) });
 * } catch (err) {
 *   console.log((err as Error).message.startsWith("demo: option keyMask is for attend(), weights() and reference()")); // true
 * }
 * ```
 */
export function refuseKeyMask(owner: string, options: { keyMask?: unknown }): void {
  if (options.keyMask !== undefined && options.keyMask !== null) {
    throw new Error(
      `${owner}: option keyMask is for attend(), weights() and reference() only; the recurrent forms and the ` +
        `decoders run one sequence without padding: leave keyMask out and pass only the sequence's real tokens`,
    );
  }
}
