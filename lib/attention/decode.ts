/**
 * Incremental decoding for every attention variant ("Transformers are RNNs"): one token at a
 * time from a carried state, with one API for all. Token t's output equals row t of the
 * variant's causal attend() over the whole sequence.
 *
 * This module is generic: it checks inputs and states, and owns the states' tensors. What a state
 * holds and how a token advances it is each variant's own decoding engine (`variants[name].decoding`),
 * derived from its recurrent forms (linear, norm, performer, cosformer, retention: a state of fixed
 * size) or declared in its file (softmax's KV cache, diag's current block, local's window).
 *
 * Each variant's file states what its state holds and what a token costs; README.md beside this file tabulates them
 * (S and z of fixed size for the recurrent variants, the prefix's K and V for softmax, the current block for diag, the
 * last `window` tokens for local).
 *
 * Derivations and the documented deviations (performer's key stabiliser, cosFormer's
 * `maxLength`) are in README.md beside this file.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { checkStateTensors } from "./variant.ts";
import { DECODER_VARIANTS, type DecoderVariant, type OptionsOf, variants } from "./mod.ts";
import {
  checkQKV,
  type DecodingEngine,
  type OptionRule,
  type QKV,
  refuseKeyMask,
  resolveOptions,
  type StateDims,
  type StateTensors,
} from "./types.ts";

/** Options only variant N's decoder takes: its engine's own (softmax's cache), all optional. */
type DecoderExtras<N extends DecoderVariant> = (typeof variants)[N]["decoding"] extends DecodingEngine<infer X> | null
  ? Partial<X>
  : never;

/**
 * The variant's own options (causal is implied; no keyMask: decoding runs one sequence without padding) plus the
 * decoder's own (softmax's `cache`). cosFormer's `maxLength` (M) is required here: attend() defaults to M = n, so a
 * decoder needs the sequence length in advance.
 */
export type DecoderOptions<N extends DecoderVariant> =
  & Omit<OptionsOf<N>, "causal" | "keyMask">
  & { causal?: true }
  & DecoderExtras<N>;

/** Sizes fixed for a whole decode: batch, heads, key/query features dk, value features dv. */
export type DecodeDims = StateDims;

/**
 * A decoder's carried state. Its tensors are kept (tf.keep) and owned by the caller: dispose
 * a state with {@linkcode Decoder.dispose} once the next one has been computed from it.
 */
export interface DecodeState {
  readonly variant: DecoderVariant;
  readonly dims: Readonly<DecodeDims>;
  /** Tokens consumed so far; the next token has this (0-based) position. */
  readonly position: number;
  /** The state's tensors by name (which names depends on the variant; see README.md). */
  readonly tensors: Readonly<Record<string, tf.Tensor>>;
}

/** What {@linkcode Decoder.step} and {@linkcode Decoder.prefill} return: the outputs and the next state. */
export interface DecodeResult {
  /** [batch, heads, p, dv]: the outputs of the p tokens given (p = 1 for step). */
  out: tf.Tensor4D;
  state: DecodeState;
}

/** Where {@linkcode Decoder.init} starts: zeros by default, or a state carried from the variant's recurrent forms. */
export interface DecodeInitOptions {
  /** The state after `position` tokens from recurrentAttend / chunkedAttend (variants with recurrent forms only). */
  from?: Readonly<StateTensors> | null;
  /** Tokens already consumed; required with `from`, 0 otherwise. */
  position?: number;
}

/** One uniform decoding API; see {@linkcode decoder}. */
export interface Decoder {
  readonly variant: DecoderVariant;
  /** The resolved options, defaults filled in. */
  readonly options: Readonly<Record<string, unknown>>;
  /** A fresh state before the first token (or one carried from a recurrent run). */
  init(dims: DecodeDims, options?: DecodeInitOptions): DecodeState;
  /** One token: q, k [b, h, 1, dk], v [b, h, 1, dv] -> out [b, h, 1, dv]. Leaves `state` as it was. */
  step(state: DecodeState, token: QKV): DecodeResult;
  /** p tokens at once (a prompt), in the chunked or blocked form: equal to p calls of step(). */
  prefill(state: DecodeState, qkv: QKV): DecodeResult;
  /** Number of floats held by the state's tensors. */
  stateSize(state: DecodeState): number;
  /** Disposes the state's tensors. */
  dispose(state: DecodeState): void;
}

type Resolved = Record<string, unknown>;

function checkDims(owner: string, dims: DecodeDims): DecodeDims {
  if (dims === null || typeof dims !== "object" || Array.isArray(dims)) {
    throw new Error(`${owner}: dims must be an object { batch, heads, dk, dv }, got ${String(dims)}`);
  }
  const keys = ["batch", "heads", "dk", "dv"];
  for (const key of Object.keys(dims)) {
    if (!keys.includes(key)) throw new Error(`${owner}: unknown dims key "${key}"; valid keys are ${keys.join(", ")}`);
  }
  for (const key of keys) {
    const value = (dims as unknown as Record<string, unknown>)[key];
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
      throw new Error(`${owner}: dims.${key} must be a positive integer, got ${String(value)}`);
    }
  }
  return { batch: dims.batch, heads: dims.heads, dk: dims.dk, dv: dims.dv };
}

function checkInitOptions(owner: string, options: DecodeInitOptions | undefined): DecodeInitOptions {
  if (options === undefined) return {};
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new Error(`${owner}: options must be an object { from?, position? }, got ${String(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (key !== "from" && key !== "position") {
      throw new Error(`${owner}: unknown option "${key}"; valid options are from, position`);
    }
  }
  const { from = null, position } = options;
  if (position !== undefined && (typeof position !== "number" || !Number.isInteger(position) || position < 0)) {
    throw new Error(`${owner}: option position must be a non-negative integer, got ${String(position)}`);
  }
  if (from !== null && (typeof from !== "object" || Array.isArray(from))) {
    throw new Error(`${owner}: option from must be a state (its tensors by name) or null, got ${String(from)}`);
  }
  return { from, position };
}

function resolveDecoderOptions(
  engine: DecodingEngine<object>,
  name: DecoderVariant,
  options: object | undefined,
): Resolved {
  const owner = `decoder("${name}")`;
  const causal = (options as { causal?: unknown } | undefined)?.causal;
  if (causal !== undefined && causal !== true) {
    throw new RangeError(
      `${owner}: option causal must be true or omitted: decoding is causal; use the variant's attend()`,
    );
  }
  // The variant's own defaults and rules, causal, and the decoder's extras (softmax's cache).
  const { defaults, rules } = variants[name];
  const o = resolveOptions<Resolved>(
    owner,
    options,
    { ...defaults, causal: true, ...engine.extraDefaults },
    { ...rules, ...engine.extraRules } as Record<string, OptionRule>,
  );
  refuseKeyMask(owner, o);
  engine.check(o, owner);
  return o;
}

/**
 * A decoder for one attention variant: init a state, then step token by token (or prefill a prompt).
 * Token t's output equals row t of `variants[name].attend(qkv, { ...options, causal: true })`.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { decoder } from "./decode.ts";
 * import { linear } from "./linear.ts";
 * const q = tf.randomNormal([1, 2, 5, 4]) as tf.Tensor4D;
 * const v = tf.randomNormal([1, 2, 5, 3]) as tf.Tensor4D;
 * const dec = decoder("linear");
 * let state = dec.init({ batch: 1, heads: 2, dk: 4, dv: 3 });
 * const outs = [];
 * for (let t = 0; t < 5; t++) {
 *   const x = tf.slice(q, [0, 0, t, 0], [-1, -1, 1, -1]) as tf.Tensor4D;
 *   const { out, state: next } = dec.step(state, { q: x, k: x, v: tf.slice(v, [0, 0, t, 0], [-1, -1, 1, -1]) });
 *   dec.dispose(state);
 *   state = next;
 *   outs.push(out);
 * }
 * const parallel = linear.attend({ q, k: q, v }, { causal: true });
 * console.log(tf.max(tf.abs(tf.sub(tf.concat(outs, 2), parallel))).dataSync()[0] < 1e-4); // true
 * console.log(dec.stateSize(state)); // 2 * 4 * 3 + 2 * 4 = 32
 * ```
 */
export function decoder<N extends DecoderVariant>(name: N, options?: DecoderOptions<N>): Decoder {
  if (!(DECODER_VARIANTS as readonly string[]).includes(name)) {
    throw new Error(`decoder: variant must be one of ${DECODER_VARIANTS.join(", ")}, got ${JSON.stringify(name)}`);
  }
  const engine = variants[name].decoding as DecodingEngine<object>;
  const o = resolveDecoderOptions(engine, name, options);
  const owner = `decoder("${name}")`;

  const checkState = (method: string, state: DecodeState) => {
    if (state === null || typeof state !== "object" || !state.tensors || !state.dims) {
      throw new Error(`${owner}.${method}: state must be a DecodeState from init(), step() or prefill()`);
    }
    if (state.variant !== name) {
      throw new Error(`${owner}.${method}: state belongs to variant "${state.variant}"; use that variant's decoder`);
    }
    if (Object.values(state.tensors).some((x) => x.isDisposed)) {
      throw new Error(
        `${owner}.${method}: state has been disposed; pass the state returned by the latest step() or prefill()`,
      );
    }
  };

  const checkInput = (state: DecodeState, { method, qkv }: { method: string; qkv: QKV }) => {
    checkQKV(`${owner}.${method}`, qkv);
    const [b, h, n, dk] = qkv.q.shape;
    const dv = qkv.v.shape[3];
    if (method === "step" && n !== 1) {
      throw new Error(`${owner}.step: q, k, v must hold one token ([batch, heads, 1, d]), got n = ${n}; use prefill()`);
    }
    const want = state.dims;
    const got = { batch: b, heads: h, dk, dv };
    for (const key of ["batch", "heads", "dk", "dv"] as const) {
      if (got[key] !== want[key]) {
        throw new Error(
          `${owner}.${method}: the input's ${key} is ${got[key]} but the state was built for ${key} = ${want[key]}; ` +
            `pass q, k [${want.batch}, ${want.heads}, n, ${want.dk}] and v [${want.batch}, ${want.heads}, n, ${want.dv}]`,
        );
      }
    }
  };

  const advance = (state: DecodeState, { method, qkv }: { method: string; qkv: QKV }): DecodeResult => {
    checkState(method, state);
    checkInput(state, { method, qkv });
    const old = new Set<tf.Tensor>([...Object.values(state.tensors), qkv.q, qkv.k, qkv.v]);
    const result = tf.tidy(() => {
      const r = engine.advance(state.tensors, { qkv, position: state.position, single: method === "step" }, o);
      // Every state owns its tensors: what the engine passed through unchanged is cloned.
      const tensors = Object.fromEntries(
        Object.entries(r.tensors).map(([key, x]) => [key, old.has(x) ? tf.clone(x) : x]),
      );
      return { out: old.has(r.out) ? tf.clone(r.out) : r.out, tensors };
    });
    for (const x of Object.values(result.tensors)) tf.keep(x);
    const next: DecodeState = Object.freeze({
      variant: name,
      dims: state.dims,
      position: state.position + qkv.q.shape[2],
      tensors: Object.freeze(result.tensors),
    });
    return { out: result.out, state: next };
  };

  return Object.freeze({
    variant: name,
    options: Object.freeze({ ...o }),
    init(dims: DecodeDims, initOptions?: DecodeInitOptions): DecodeState {
      const d = Object.freeze(checkDims(`${owner}.init`, dims));
      const start = checkInitOptions(`${owner}.init`, initOptions);
      let tensors: Record<string, tf.Tensor>;
      if (start.from) {
        if (engine.stateShapes === null) {
          throw new Error(
            `${owner}.init: option from is only for the variants with recurrent forms (${recurrentNames()}): ` +
              `${name}'s state is a cache that only its decoder makes`,
          );
        }
        if (start.position === undefined) {
          throw new Error(`${owner}.init: option position is required with from: the tokens the state has consumed`);
        }
        checkStateTensors(`${owner}.init`, start.from, {
          shapes: engine.stateShapes(d, o),
          what: "option from",
          hint: "(the dims given), as returned by recurrentAttend or chunkedAttend",
        });
        tensors = tf.tidy(() => Object.fromEntries(Object.entries(start.from!).map(([key, x]) => [key, tf.clone(x)])));
      } else {
        if (start.position !== undefined && start.position !== 0) {
          throw new Error(`${owner}.init: option position needs a carried state (option from); omit it otherwise`);
        }
        const old = new Set(Object.values(o).filter((x): x is tf.Tensor => x instanceof tf.Tensor));
        tensors = tf.tidy(() => {
          const made = engine.init(d, o);
          // A state owns its tensors: one passed in through the options (a given projection) is cloned.
          return Object.fromEntries(Object.entries(made).map(([key, x]) => [key, old.has(x) ? tf.clone(x) : x]));
        });
      }
      for (const x of Object.values(tensors)) tf.keep(x);
      return Object.freeze({ variant: name, dims: d, position: start.position ?? 0, tensors: Object.freeze(tensors) });
    },
    step: (state: DecodeState, token: QKV) => advance(state, { method: "step", qkv: token }),
    prefill: (state: DecodeState, qkv: QKV) => advance(state, { method: "prefill", qkv }),
    stateSize(state: DecodeState): number {
      checkState("stateSize", state);
      return Object.values(state.tensors).reduce((sum, x) => sum + x.size, 0);
    },
    dispose(state: DecodeState): void {
      if (state === null || typeof state !== "object" || !state.tensors) {
        throw new Error(`${owner}.dispose: state must be a DecodeState from init(), step() or prefill()`);
      }
      tf.dispose(Object.values(state.tensors));
    },
  });
}

function recurrentNames(): string {
  return DECODER_VARIANTS.filter((name) => variants[name].decoding?.stateShapes !== null).join(", ");
}
