/**
 * Builds a registered variant from one spec, so that input checks, option handling, memory hygiene, the naive
 * reference, the state-carrying forms and the decoding engine are the same for all. A variant's file declares its spec
 * (`VariantSpec`) and nothing outside that file needs to know the variant's name: decode.ts, recurrent.ts,
 * lib/bench/flops.ts, the model's masks and generation loop over the registry (`variants` in mod.ts).
 * README.md beside this file walks through a whole spec (retention).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import {
  type AttentionOptions,
  type AttentionVariant,
  checkKeyMask,
  checkQK,
  checkQKV,
  type DecodeCall,
  type DecodingEngine,
  type FlopCount,
  type FlopSize,
  KEY_MASK_RULE,
  type OptionRule,
  type OwnOptions,
  type QK,
  type QKV,
  type RecurrentAttentionVariant,
  refuseKeyMask,
  resolveOptions,
  type SessionContext,
  type StateDims,
  type StateFormOptions,
  type StateTensors,
  type Token,
} from "./types.ts";

/** What a state-carrying form continues from: the state (null: the zero state) after `position` tokens. */
export interface Carry<S extends StateTensors> {
  state: S | null;
  position: number;
}

/**
 * The causal forms of a variant whose past fits in a fixed-size state S (as flash-linear-attention's chunk and
 * fused_recurrent, and fast-transformers' recurrent twins). Both forms take q, k, v, the resolved options and the
 * carried state, and return the output and the state after the last token; they run inside tf.tidy, on checked
 * inputs. {@linkcode defineVariant} derives `chunkedAttend`, `recurrentAttend`, `recurrentStep`, `initialState` and
 * the decoding engine from them.
 */
export interface RecurrentSpec<O extends AttentionOptions, S extends StateTensors> {
  /** The state's tensors and their shapes for inputs of these sizes (used to check a state passed in). */
  shapes(dims: StateDims, options: Required<O>): Record<keyof S & string, number[]>;
  /** The state before the first token; default: zeros of `shapes`. */
  init?(dims: StateDims, options: Required<O>): S;
  /** Throws, naming `owner`, when these options cannot run the state forms (cosFormer needs maxLength). */
  check?(options: Required<O>, owner: string): void;
  /** Chunkwise-parallel: q, k [b, h, n, dk], v [b, h, n, dv] -> output [b, h, n, dv] and the state after token n. */
  chunked(qkv: QKV, options: Required<O>, carry: Carry<S>): { output: tf.Tensor4D; state: S };
  /** One token of the recurrence: q, k [b, h, 1, dk], v [b, h, 1, dv] -> output [b, h, 1, dv] and the next state. */
  step(qkv: QKV, options: Required<O>, carry: Carry<S> & { state: S }): { output: tf.Tensor4D; state: S };
}

/**
 * A decoding engine of the variant's own, for variants without a fixed-size state (a KV cache, a block, a window).
 * Options `o` hold the variant's options (causal true) plus the decoder-only `defaults` declared here.
 */
export interface DecodingSpec<O extends AttentionOptions, X extends object = Record<never, never>> {
  /** Options only the decoder takes, with their defaults and rules (softmax's cache). */
  defaults?: X;
  rules?: Record<keyof X & string, OptionRule>;
  /** The state before the first token. */
  init(dims: StateDims, options: Required<O> & X): StateTensors;
  /** The outputs [b, h, p, dv] of the p tokens of `call` and the state after them. */
  advance(
    tensors: Readonly<StateTensors>,
    call: DecodeCall,
    options: Required<O> & X,
  ): { out: tf.Tensor4D; tensors: StateTensors };
}

/** What a variant module provides; {@linkcode defineVariant} adds the rest. */
export interface VariantSpec<
  O extends AttentionOptions,
  S extends StateTensors = StateTensors,
  X extends object = Record<never, never>,
> {
  name: string;
  /**
   * Every option's default; `null` stands for a default computed from the input (e.g. 1/sqrt(dk)). `keyMask` is not
   * listed: {@linkcode defineVariant} adds it (default null) and its rule to every variant.
   */
  defaults: Required<OwnOptions<O>>;
  /** How each option is checked: the single source of the variant's rules (createModel and the decoders use them). */
  rules: Record<keyof OwnOptions<O> & string, OptionRule>;
  /**
   * The fast path; inputs are checked and options resolved. `keyMask`, when not null, is a checked [batch, n] mask
   * (any of its dtypes: read it through {@linkcode keyRows} or the helpers built on it) whose pad keys must be
   * removed (README.md, "Key-padding masks").
   */
  attend(qkv: QKV, options: Required<O>): tf.Tensor4D;
  /** The explicit [batch, heads, n, n] matrix, with the pad keys of `keyMask` removed as in attend(). */
  weights(qk: QK, options: Required<O>): tf.Tensor4D;
  /** The output norm applied after M v, if any. */
  outputNorm?(o: tf.Tensor4D, options: Required<O>): tf.Tensor4D;
  /**
   * Whether query i may see key j: the sparsity pattern together with the causal mask. Default: every key, or
   * j <= i when causal. The model's score gradients (and a sparse variant's own masks) use it.
   */
  visible?(i: number, j: number, options: Required<O>): boolean;
  /** Matmul FLOPs of attend() (lib/bench). */
  flops(size: FlopSize, options: Required<O>): FlopCount;
  /** The options a decode session runs the variant with (see {@linkcode AttentionVariant.sessionOptions}). */
  sessionOptions?(options: Record<string, unknown>, context: SessionContext): Record<string, unknown>;
  /** The causal state-carrying forms, where the variant has them; its decoder comes from them. */
  recurrent?: RecurrentSpec<O, S>;
  /** A decoding engine of its own, for a variant without `recurrent`. */
  decoding?: DecodingSpec<O, X>;
}

/**
 * Forward + backward FLOPs as 3 × forward: each matmul's gradient is two matmuls of its size.
 *
 * @example
 * ```ts
 * import { forwardFlops } from "./variant.ts";
 * console.log(JSON.stringify(forwardFlops(10))); // {"fwd":10,"fwdBwd":30}
 * ```
 */
export function forwardFlops(fwd: number): FlopCount {
  return { fwd, fwdBwd: 3 * fwd };
}

/**
 * n rounded up to a multiple of `size`: the length a chunked or blocked form computes.
 *
 * @example
 * ```ts
 * import { paddedLength } from "./variant.ts";
 * console.log(paddedLength(10, 4)); // 12
 * ```
 */
export function paddedLength(n: number, size: number): number {
  return Math.ceil(n / size) * size;
}

const causalOnly = (i: number, j: number, o: AttentionOptions) => !o.causal || j <= i;

function positiveInteger(owner: string, label: string, value: unknown): number {
  if (typeof value !== "number") throw new TypeError(`${owner}: ${label} must be a positive integer, got ${value}`);
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${owner}: ${label} must be a positive integer, got ${value}`);
  }
  return value;
}

function checkCausalTrue(owner: string, options: unknown): void {
  const causal = (options as { causal?: unknown } | null | undefined)?.causal;
  if (causal !== undefined && causal !== true) {
    throw new RangeError(
      `${owner}: option causal must be true or omitted: the recurrent forms are causal; use the variant's attend() otherwise`,
    );
  }
}

/** Tensors in `next` that are also in `given` are cloned, so that each state owns its tensors. */
function own<S extends StateTensors>(next: S, given: readonly tf.Tensor[]): S {
  const old = new Set(given);
  return Object.fromEntries(Object.entries(next).map(([key, x]) => [key, old.has(x) ? tf.clone(x) : x])) as S;
}

function shapeText(shapes: Record<string, number[]>): string {
  return `{ ${Object.entries(shapes).map(([key, shape]) => `${key}: [${shape.join(", ")}]`).join(", ")} }`;
}

/**
 * Throws unless `state` holds exactly the tensors of `shapes`, live, with those shapes. `what` names it in the
 * message ("option state", "option from"), `hint` says where a right one comes from.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { checkStateTensors } from "./variant.ts";
 * const options = { shapes: { s: [1, 2] }, what: "option state", hint: "(from initialState())" };
 * checkStateTensors("demo", { s: tf.zeros([1, 2]) }, options);
 * try {
 *   checkStateTensors("demo", { s: tf.zeros([2, 2]) }, options);
 * } catch (err) {
 *   console.log((err as Error).message); // demo: option state must be { s: [1, 2] } (from initialState())
 * }
 * ```
 */
export function checkStateTensors(
  owner: string,
  state: unknown,
  options: { shapes: Record<string, number[]>; what: string; hint: string },
): void {
  const { shapes, what, hint } = options;
  const values = state !== null && typeof state === "object" ? Object.values(state as object) : [];
  if (values.some((x) => x instanceof tf.Tensor && x.isDisposed)) {
    throw new Error(`${owner}: ${what} was disposed; pass the state returned by the latest call`);
  }
  const given = (state ?? {}) as Record<string, unknown>;
  const ok = state !== null && typeof state === "object" && !Array.isArray(state) &&
    Object.keys(given).length === Object.keys(shapes).length &&
    Object.entries(shapes).every(([key, shape]) => {
      const x = given[key];
      return x instanceof tf.Tensor && x.shape.length === shape.length &&
        (x.shape as number[]).every((s, i) => s === shape[i]);
    });
  if (!ok) throw new Error(`${owner}: ${what} must be ${shapeText(shapes)} ${hint}`);
}

const STATE_HINT =
  "(batch, heads, dk, dv of the input); start from initialState() or a state returned by the same variant";

function checkPosition(owner: string, position: unknown): number {
  if (position === undefined) return 0;
  if (typeof position !== "number") {
    throw new TypeError(`${owner}: option position must be a non-negative integer, got ${String(position)}`);
  }
  if (!Number.isInteger(position) || position < 0) {
    throw new RangeError(`${owner}: option position must be a non-negative integer, got ${position}`);
  }
  return position;
}

/**
 * The state forms of a variant with a {@linkcode RecurrentSpec}: options resolved (`spec` holds every option's default
 * and rule, keyMask's included), inputs and states checked.
 */
function statefulForms<O extends AttentionOptions, S extends StateTensors>(
  spec: { name: string; defaults: Required<O>; rules: Record<string, OptionRule> },
  recurrent: RecurrentSpec<O, S>,
) {
  const { name } = spec;
  // `state` and `position` are taken out before the rest is resolved; listing them keeps them valid keys.
  const rules: Record<string, OptionRule> = { ...spec.rules, state: { type: "boolean" }, position: { type: "number" } };
  const zeros = (dims: StateDims, o: Required<O>): S => {
    const shapes = Object.entries(recurrent.shapes(dims, o) as Record<string, number[]>);
    return Object.fromEntries(shapes.map(([key, shape]) => [key, tf.zeros(shape)])) as S;
  };
  const init = (dims: StateDims, o: Required<O>): S => recurrent.init ? recurrent.init(dims, o) : zeros(dims, o);

  // Options of a state form: causal must be true, `state` and `position` are taken out, the rest resolved.
  const resolve = (owner: string, options: unknown) => {
    checkCausalTrue(owner, options);
    // Not an object: resolveOptions says so.
    if (options !== undefined && (options === null || typeof options !== "object" || Array.isArray(options))) {
      resolveOptions(owner, options as object, spec.defaults, rules);
    }
    const { state = null, position, ...rest } = (options ?? {}) as { state?: S | null; position?: unknown };
    const o = resolveOptions(owner, rest, { ...spec.defaults, causal: true }, rules) as Required<O>;
    refuseKeyMask(owner, o);
    recurrent.check?.(o, owner);
    return { o, state, position: checkPosition(owner, position) };
  };
  const dimsOf = (qkv: QKV): StateDims => {
    const [batch, heads, , dk] = qkv.q.shape;
    return { batch, heads, dk, dv: qkv.v.shape[3] };
  };
  // Options and inputs of a whole-sequence form, checked: the state must fit the input's shapes.
  const forSequence = (owner: string, qkv: QKV, options: unknown) => {
    const r = resolve(owner, options);
    checkQKV(owner, qkv);
    if (r.state !== null) {
      checkStateTensors(owner, r.state, {
        shapes: recurrent.shapes(dimsOf(qkv), r.o),
        what: "option state",
        hint: STATE_HINT,
      });
    }
    return r;
  };

  return {
    initialState(dims: StateDims, options?: O): S {
      const owner = `${name}.initialState`;
      if (dims === null || typeof dims !== "object") {
        throw new TypeError(`${owner}: dims must be an object { batch, heads, dk, dv }, got ${String(dims)}`);
      }
      const d = { ...dims };
      for (const key of ["batch", "heads", "dk", "dv"] as const) positiveInteger(owner, key, d[key]);
      const { o } = resolve(owner, options);
      return tf.tidy(() => init(d, o));
    },
    chunkedAttend(qkv: QKV, options?: StateFormOptions<O, S>): { output: tf.Tensor4D; state: S } {
      const owner = `${name}.chunkedAttend`;
      const { o, state, position } = forSequence(owner, qkv, options);
      return tf.tidy(() => {
        const run = recurrent.chunked(qkv, o, { state, position });
        return { output: run.output, state: own(run.state, Object.values(state ?? {})) };
      });
    },
    recurrentAttend(qkv: QKV, options?: StateFormOptions<O, S>): { output: tf.Tensor4D; state: S } {
      const owner = `${name}.recurrentAttend`;
      const { o, state: given, position } = forSequence(owner, qkv, options);
      const n = qkv.q.shape[2];
      const token = (x: tf.Tensor4D, t: number) => tf.slice(x, [0, 0, t, 0], [-1, -1, 1, -1]) as tf.Tensor4D;
      let state = given ?? tf.tidy(() => init(dimsOf(qkv), o));
      const outputs: tf.Tensor4D[] = [];
      try {
        for (let t = 0; t < n; t++) {
          const current = state;
          const step = tf.tidy(() => {
            const one = { q: token(qkv.q, t), k: token(qkv.k, t), v: token(qkv.v, t) };
            const run = recurrent.step(one, o, { state: current, position: position + t });
            return { output: run.output, state: own(run.state, Object.values(current)) };
          });
          if (state !== given) tf.dispose(Object.values(state));
          state = step.state;
          outputs.push(step.output);
        }
      } catch (error) {
        tf.dispose(outputs);
        if (state !== given) tf.dispose(Object.values(state));
        throw error;
      }
      const output = tf.concat(outputs, 2) as tf.Tensor4D; // [b, h, n, dv]
      tf.dispose(outputs);
      return { output, state };
    },
    recurrentStep(token: Token, options: StateFormOptions<O, S> & { state: S }): { output: tf.Tensor3D; state: S } {
      const owner = `${name}.recurrentStep`;
      const { o, state, position } = resolve(owner, options);
      const { q, k, v } = token ?? {};
      for (const [label, x] of [["q", q], ["k", k], ["v", v]] as const) {
        if (!(x instanceof tf.Tensor) || x.rank !== 3) {
          throw new TypeError(`${owner}: ${label} must be a rank-3 tensor [batch, heads, d] for one token`);
        }
        if (x.isDisposed) throw new Error(`${owner}: ${label} was disposed; pass a live tensor`);
        const axis = ["batch", "heads", label === "v" ? "dv" : "dk"][x.shape.findIndex((s) => s < 1)];
        if (axis !== undefined) {
          throw new RangeError(
            `${owner}: ${label} must have ${axis} >= 1, got shape [${x.shape.join(", ")}] ([batch, heads, d])`,
          );
        }
      }
      // tfjs would broadcast a k or v of size 1 along an axis against the state instead of failing.
      if (k.shape.join() !== q.shape.join() || v.shape[0] !== q.shape[0] || v.shape[1] !== q.shape[1]) {
        throw new Error(
          `${owner}: k must have q's shape [batch, heads, dk] and v q's batch and heads, got q [${q.shape}], ` +
            `k [${k.shape}], v [${v.shape}]`,
        );
      }
      if (state === null) throw new Error(`${owner}: option state is required; start from initialState()`);
      const dims = { batch: q.shape[0], heads: q.shape[1], dk: q.shape[2], dv: v.shape[2] };
      checkStateTensors(owner, state, { shapes: recurrent.shapes(dims, o), what: "option state", hint: STATE_HINT });
      return tf.tidy(() => {
        const one = { q: tf.expandDims(q, 2), k: tf.expandDims(k, 2), v: tf.expandDims(v, 2) } as QKV;
        const run = recurrent.step(one, o, { state, position });
        return { output: tf.squeeze(run.output, [2]) as tf.Tensor3D, state: own(run.state, Object.values(state)) };
      });
    },
    /** The decoding engine: step for decoder.step, the chunked form for prefill. */
    engine: {
      extraDefaults: Object.freeze({}),
      extraRules: Object.freeze({}),
      check: (o, owner) => recurrent.check?.(o as Required<O>, owner),
      stateShapes: (dims, o) => recurrent.shapes(dims, o as Required<O>),
      init: (dims, o) => init(dims, o as Required<O>),
      advance: (tensors, { qkv, position, single }, o) => {
        const carry = { state: tensors as S, position };
        const run = single
          ? recurrent.step(qkv, o as Required<O>, carry)
          : recurrent.chunked(qkv, o as Required<O>, carry);
        return { out: run.output, tensors: run.state };
      },
    } satisfies DecodingEngine,
  };
}

function ownEngine<O extends AttentionOptions, X extends object>(decoding: DecodingSpec<O, X>): DecodingEngine<X> {
  return {
    extraDefaults: Object.freeze({ ...decoding.defaults }) as Readonly<X>,
    extraRules: Object.freeze({ ...decoding.rules }) as Readonly<Record<string, OptionRule>>,
    check: () => {},
    stateShapes: null,
    init: (dims, o) => decoding.init(dims, o as Required<O> & X),
    advance: (tensors, call, o) => decoding.advance(tensors, call, o as Required<O> & X),
  };
}

/**
 * Wraps a {@linkcode VariantSpec} into an {@linkcode AttentionVariant}: checks inputs, resolves options (unknown keys
 * throw), runs inside tf.tidy, and derives reference() = norm(weights() v), the visibility mask, the FLOP count and
 * the decoding engine. With `recurrent` it also derives the state forms of a {@linkcode RecurrentAttentionVariant}.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { defineVariant, forwardFlops } from "./variant.ts";
 * const mean = defineVariant({
 *   name: "mean",
 *   defaults: { causal: false },
 *   rules: { causal: { type: "boolean" } },
 *   weights: ({ q, k }) => tf.div(tf.onesLike(tf.matMul(q, k, false, true)), q.shape[2]),
 *   attend: ({ v }) => tf.mul(tf.onesLike(v), tf.mean(v, 2, true)),
 *   flops: ({ batch, heads, n, dv }) => forwardFlops(batch * heads * n * dv),
 * });
 * const x = tf.ones([1, 1, 4, 2]) as tf.Tensor4D;
 * console.log(mean.attend({ q: x, k: x, v: x }).shape.join(","), mean.decoding); // 1,1,4,2 null
 * ```
 */
export function defineVariant<O extends AttentionOptions, S extends StateTensors>(
  spec: VariantSpec<O, S> & { recurrent: RecurrentSpec<O, S> },
): RecurrentAttentionVariant<O, S>;
export function defineVariant<O extends AttentionOptions, X extends object = Record<never, never>>(
  spec: VariantSpec<O, StateTensors, X>,
): AttentionVariant<O, X>;
export function defineVariant<O extends AttentionOptions, S extends StateTensors, X extends object>(
  spec: VariantSpec<O, S, X>,
): AttentionVariant<O, X> {
  const { name } = spec;
  // keyMask is every variant's option: its default and its rule live here, once.
  const defaults = { ...spec.defaults, keyMask: null } as Required<O>;
  const rules: Record<string, OptionRule> = { ...spec.rules, keyMask: KEY_MASK_RULE };
  const resolve = (method: string, options: O | undefined) =>
    resolveOptions(`${name}.${method}`, options, defaults, rules);
  // The options of attend, weights and reference: resolved, and the key mask checked against k.
  const resolveFor = (method: string, k: tf.Tensor4D, options: O | undefined) => {
    const o = resolve(method, options);
    checkKeyMask(`${name}.${method}`, o.keyMask ?? null, k);
    return o;
  };
  const visible = spec.visible ?? causalOnly;
  const forms = spec.recurrent ? statefulForms({ name, defaults, rules }, spec.recurrent) : null;
  const { engine, ...stateful } = forms ?? { engine: null };
  const decoding = (engine ?? (spec.decoding ? ownEngine(spec.decoding) : null)) as DecodingEngine<X> | null;
  return Object.freeze({
    name,
    defaults: Object.freeze({ ...defaults }),
    rules: Object.freeze({ ...rules }),
    decoding,
    ...stateful,
    attend(qkv: QKV, options?: O): tf.Tensor4D {
      checkQKV(`${name}.attend`, qkv);
      const o = resolveFor("attend", qkv.k, options);
      return tf.tidy(() => spec.attend(qkv, o));
    },
    weights(qk: QK, options?: O): tf.Tensor4D {
      checkQK(`${name}.weights`, qk);
      const o = resolveFor("weights", qk.k, options);
      return tf.tidy(() => spec.weights(qk, o));
    },
    reference(qkv: QKV, options?: O): tf.Tensor4D {
      checkQKV(`${name}.reference`, qkv);
      const o = resolveFor("reference", qkv.k, options);
      return tf.tidy(() => {
        const out = tf.matMul(spec.weights(qkv, o), qkv.v) as tf.Tensor4D; // [b, h, n, dv]
        return spec.outputNorm ? spec.outputNorm(out, o) : out;
      });
    },
    outputNorm(out: tf.Tensor4D, options?: O): tf.Tensor4D {
      if (!(out instanceof tf.Tensor) || out.rank !== 4) {
        throw new TypeError(`${name}.outputNorm: o must be a rank-4 tf.Tensor [batch, heads, n, dv]`);
      }
      if (out.isDisposed) throw new Error(`${name}.outputNorm: o was disposed; pass a live tensor`);
      const o = resolve("outputNorm", options);
      return spec.outputNorm ? tf.tidy(() => spec.outputNorm!(out, o)) : tf.clone(out);
    },
    visibleKeys(n: number, options?: O): tf.Tensor2D {
      positiveInteger(`${name}.visibleKeys`, "n", n);
      const o = resolve("visibleKeys", options);
      return maskFrom(n, (i, j) => visible(i, j, o));
    },
    flops(size: FlopSize, options?: O): FlopCount {
      const owner = `${name}.flops`;
      if (size === null || typeof size !== "object") {
        throw new TypeError(`${owner}: size must be an object { batch, heads, n, dk, dv }, got ${String(size)}`);
      }
      const s = { ...size };
      for (const key of ["batch", "heads", "n", "dk", "dv"] as const) positiveInteger(owner, `size.${key}`, s[key]);
      return spec.flops(s, resolve("flops", options));
    },
    sessionOptions(options: Readonly<Record<string, unknown>>, context: SessionContext): Record<string, unknown> {
      const owner = `${name}.sessionOptions`;
      if (options === null || typeof options !== "object" || Array.isArray(options)) {
        throw new TypeError(`${owner}: options must be an object, got ${String(options)}`);
      }
      positiveInteger(owner, "context.length", context?.length);
      return spec.sessionOptions ? spec.sessionOptions({ ...options }, context) : { ...options };
    },
  });
}

/**
 * An additive mask: 0 where `allowed` is 1 and -1e9 where it is 0, so masked logits vanish in softmax.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { maskBias } from "./variant.ts";
 * console.log(Array.from(maskBias(tf.tensor1d([1, 0])).dataSync()).join(" ")); // 0 -1000000000
 * ```
 */
export function maskBias<T extends tf.Tensor>(allowed: T): T {
  return tf.tidy(() => tf.mul(tf.sub(1, allowed), -1e9) as T);
}

/**
 * softmax(logits + maskBias(allowed)) over the last axis: the scores of softmax attention under a 0/1 mask.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { maskedSoftmax } from "./variant.ts";
 * const p = maskedSoftmax(tf.tensor2d([[0, 0, 0]]), tf.tensor2d([[1, 1, 0]]));
 * console.log(Array.from(p.dataSync()).join(" ")); // 0.5 0.5 0
 * ```
 */
export function maskedSoftmax<T extends tf.Tensor>(logits: T, allowed: tf.Tensor): T {
  return tf.tidy(() => tf.softmax(tf.add(logits, maskBias(allowed))) as T);
}

/**
 * An [n, n] 0/1 matrix from a predicate on (query i, key j).
 *
 * @example
 * ```ts
 * import { maskFrom } from "./variant.ts";
 * console.log(JSON.stringify(maskFrom(2, (i, j) => i === j).arraySync())); // [[1,0],[0,1]]
 * ```
 */
export function maskFrom(n: number, allowed: (i: number, j: number) => boolean): tf.Tensor2D {
  const data = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) data[i * n + j] = allowed(i, j) ? 1 : 0;
  return tf.tensor2d(data, [n, n]);
}

/**
 * A key-padding mask [batch, n] (float32, int32 or bool; nonzero: a real key) as float32 0/1 along the key axis of
 * [batch, heads, n, d] tensors: [batch, 1, n, 1]. Keys, values and key features times it have their pad rows zeroed.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { keyRows } from "./variant.ts";
 * const rows = keyRows(tf.tensor2d([[true, false]], [1, 2], "bool"));
 * console.log(rows.shape.join(","), rows.dtype, Array.from(rows.dataSync()).join(" ")); // 1,1,2,1 float32 1 0
 * ```
 */
export function keyRows(keyMask: tf.Tensor2D): tf.Tensor4D {
  const [b, n] = keyMask.shape;
  return tf.tidy(() => tf.reshape(tf.cast(tf.notEqual(keyMask, 0), "float32"), [b, 1, n, 1])); // [b, 1, n, 1]
}

/**
 * x [batch, heads, n, d] (keys, values or key features) with the rows of the pad keys of `keyMask` [batch, n] set to
 * 0; x itself when keyMask is null. A kernel variant's φ(k_j) = 0 removes key j from its numerator and denominator.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { zeroPadKeys } from "./variant.ts";
 * const x = zeroPadKeys(tf.ones([1, 1, 3, 2]) as tf.Tensor4D, tf.tensor2d([[1, 0, 1]]));
 * console.log(Array.from(x.dataSync()).join(" ")); // 1 1 0 0 1 1
 * ```
 */
export function zeroPadKeys(x: tf.Tensor4D, keyMask: tf.Tensor2D | null): tf.Tensor4D {
  return keyMask === null ? x : tf.tidy(() => tf.mul(x, keyRows(keyMask)) as tf.Tensor4D); // [b, h, n, d]
}

/**
 * A 0/1 pattern `allowed` [..., nq, n] over (query, key) with the columns of the pad keys of `keyMask` [batch, n] set
 * to 0: [batch, 1, nq, n] for an [nq, n] pattern; `allowed` itself when keyMask is null.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { allowRealKeys } from "./variant.ts";
 * const allowed = allowRealKeys(tf.ones([2, 2]) as tf.Tensor2D, tf.tensor2d([[1, 0]]));
 * console.log(allowed.shape.join(","), JSON.stringify(allowed.arraySync())); // 1,1,2,2 [[[[1,0],[1,0]]]]
 * ```
 */
export function allowRealKeys(allowed: tf.Tensor, keyMask: tf.Tensor2D | null): tf.Tensor {
  if (keyMask === null) return allowed;
  const [b, n] = keyMask.shape;
  return tf.tidy(() => tf.mul(allowed, tf.reshape(keyRows(keyMask), [b, 1, 1, n]))); // [b, 1, nq, n]
}

/**
 * softmax(logits + maskBias(allowed)) · allowed: {@linkcode maskedSoftmax}, except that a row with no allowed key is
 * 0 rather than spread evenly over the keys it masks. The scores of softmax attention under a key-padding mask, where
 * a query can lose every key it sees; elsewhere the masked entries are already exactly 0, so nothing else changes.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { keyMaskedSoftmax } from "./variant.ts";
 * const p = keyMaskedSoftmax(tf.zeros([2, 2]), tf.tensor2d([[1, 1], [0, 0]]));
 * console.log(Array.from(p.dataSync()).join(" ")); // 0.5 0.5 0 0
 * ```
 */
export function keyMaskedSoftmax<T extends tf.Tensor>(logits: T, allowed: tf.Tensor): T {
  return tf.tidy(() => tf.mul(maskedSoftmax(logits, allowed), allowed) as T);
}
