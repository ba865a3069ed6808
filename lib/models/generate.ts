/**
 * Autoregressive generation from a trained language model ("Transformers are RNNs"): every
 * attention layer runs one {@linkcode decoder} of `lib/attention/decode.ts` through the model's
 * `logitsWith` hook, so a layer with recurrent forms (`RECURRENT_VARIANTS`: linear, norm, performer,
 * cosformer, retention) carries a state of fixed size and a token costs the same at any position,
 * softmax keeps a KV cache (O(t) per token), and diag keeps the current block.
 *
 * - {@linkcode decodeSession}: the low-level loop, prefill a prompt, then one token per step,
 *   with the logits of every token and the floats each layer's state holds.
 * - {@linkcode generate}: sampling on top of it (temperature, top-k, greedy, seeded).
 * - {@linkcode sampleToken}: one draw from a row of logits.
 *
 * cosFormer's weight cos(π/2 · (i − j)/M) needs the sequence length M in advance (its `attend()`
 * uses M = n). A session fixes M to its `length` (default the model's maxLength); {@linkcode generate}
 * sets it to prompt + maxNewTokens, the length of the sequence it produces, so its logits equal the
 * model's parallel forward over that whole sequence. They differ from a forward over a shorter
 * prefix (whose M is smaller) and, unless that length is the training length, from what the model
 * saw in training.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { decoder, type DecodeState, type OptionRule, type QKV, resolveOptions, variants } from "../attention/mod.ts";
import { seededUniform } from "../random.ts";
import { TransformerModel } from "./model.ts";

/** How a session carries the past: each layer's decoding state, or nothing (the whole sequence re-run per token). */
export type CacheMode = "kv" | "none";

/** Options of {@linkcode decodeSession}. */
export interface DecodeSessionOptions {
  /**
   * "kv" (default): each layer keeps its decoding state (a KV cache for softmax, S and z for the
   * kernel layers, the current block for diag). "none": nothing is kept but the token ids, and every
   * call re-runs the whole model over all tokens so far (O(t²) per token for softmax, the paper's baseline).
   */
  cache?: CacheMode;
  /** Longest sequence the session accepts, and cosFormer's M; default (null) the model's maxLength. */
  length?: number | null;
  /** Sees every layer's attention output [1, h, p, dh] of each call, inside its tf.tidy (clone to keep). */
  onLayerOutput?: ((layer: number, out: tf.Tensor4D) => void) | null;
}

/** A running decode over one sequence (batch 1); see {@linkcode decodeSession}. */
export interface DecodeSession {
  /** The resolved options. */
  readonly options: Readonly<{ cache: CacheMode; length: number }>;
  /** Tokens consumed so far; the next token stands at this position. */
  readonly position: number;
  /** Consumes p tokens at once; returns their logits [p, vocab] (row r predicts token position + r + 1). */
  prefill(ids: ArrayLike<number>): tf.Tensor2D;
  /** Consumes one token; returns its logits [1, vocab]. */
  step(id: number): tf.Tensor2D;
  /** Floats held by every layer's state (0 with cache "none", which keeps only token ids). */
  stateFloats(): number;
  /** {@linkcode stateFloats} per layer. */
  layerStateFloats(): number[];
  /** Frees every state; the session cannot be used afterwards. */
  dispose(): void;
}

const SESSION_RULES: Record<string, OptionRule> = {
  cache: { type: "enum", values: ["kv", "none"] },
  length: { type: "number", min: 1, integer: true, nullable: true },
};

function checkId(where: string, id: unknown, vocabSize: number): void {
  if (typeof id !== "number") throw new TypeError(`${where} must be a token id (a number), got ${String(id)}`);
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
    throw new RangeError(`${where} must be an integer token id in 0..${vocabSize - 1}, got ${id}`);
  }
}

function checkIds(owner: string, ids: ArrayLike<number>, vocabSize: number): number[] {
  if (ids === null || typeof ids !== "object" || typeof ids.length !== "number") {
    throw new TypeError(`${owner}: ids must be an array of token ids (number[] or a typed array), got ${String(ids)}`);
  }
  const out = Array.from(ids);
  if (out.length === 0) throw new RangeError(`${owner}: ids must hold at least one token, got an empty list`);
  out.forEach((id, i) => checkId(`${owner}: ids[${i}]`, id, vocabSize));
  return out;
}

/**
 * A token-by-token decode of one sequence through `model`: `prefill(prompt)`, then `step(id)` per
 * token, each returning logits. With `cache: "kv"` every attention layer runs its variant's
 * {@linkcode decoder}, whose outputs equal the variant's causal `attend()`, so the logits equal
 * `model.logits` over the whole sequence (cosFormer: with M = `length`). The caller disposes the
 * returned logits and, at the end, the session.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "./model.ts";
 * import { decodeSession } from "./generate.ts";
 * const model = createModel({ attention: "linear", layers: 2, dModel: 16, heads: 2 }, { log: () => {} });
 * const session = decodeSession(model);
 * const first = session.prefill([84, 104]);
 * const next = session.step(101);
 * const full = model.logits(tf.tensor2d([[84, 104, 101]], [1, 3], "int32"));
 * const last = tf.slice(full, [0, 2, 0], [1, 1, -1]).reshape([1, 256]);
 * console.log(first.shape.join(","), tf.max(tf.abs(tf.sub(next, last))).dataSync()[0] < 1e-4); // 2,256 true
 * // 2 layers × 2 heads × (S [8, 8] + z [8]) = 288 floats, at any position.
 * console.log(session.position, session.stateFloats()); // 3 288
 * session.dispose();
 * tf.dispose([first, next, full, last]);
 * model.dispose();
 * ```
 */
export function decodeSession(model: TransformerModel, options?: DecodeSessionOptions): DecodeSession {
  const owner = "decodeSession";
  if (!(model instanceof TransformerModel)) {
    throw new TypeError(`${owner}: model must be a TransformerModel (from createModel), got ${String(model)}`);
  }
  const { onLayerOutput = null, ...rest } = options ?? {};
  if (onLayerOutput !== null && typeof onLayerOutput !== "function") {
    throw new Error(`${owner}: option onLayerOutput must be a function (layer, out) => void or null`);
  }
  const o = resolveOptions<{ cache: CacheMode; length: number | null }>(
    owner,
    rest,
    { cache: "kv", length: null },
    SESSION_RULES,
  );
  const { config } = model;
  if (config.task === "mlm") {
    throw new TypeError(
      `${owner}: a masked language model (task "mlm") is bidirectional, not autoregressive, so it cannot decode ` +
        `or generate; fill masks with model.logits on a masked input instead`,
    );
  }
  if (config.task !== "lm") {
    throw new TypeError(`${owner}: model must be a language model (task "lm"), got task "${config.task}"`);
  }
  const length = o.length ?? config.maxLength;
  if (length > config.maxLength) {
    throw new Error(`${owner}: option length (${length}) exceeds the model's maxLength ${config.maxLength}`);
  }
  const layers = config.attention.length;
  const decoders: (ReturnType<typeof decoder> | undefined)[] = new Array(layers);
  let states: (DecodeState | undefined)[] = new Array(layers);
  const history: number[] = [];
  let disposed = false;

  // Each variant sets its own options for a session of `length` tokens (cosFormer's M; softmax's query blocks when
  // re-running a prefix), so the "kv" and "none" paths compute the same weights.
  const sessionOptions = (layer: number, variantOptions: Record<string, unknown>, rerun: boolean) =>
    variants[config.attention[layer].variant].sessionOptions(variantOptions, { length, rerun });

  const decoderFor = (layer: number, variantOptions: Record<string, unknown>) => {
    if (decoders[layer] === undefined) {
      const name = config.attention[layer].variant;
      decoders[layer] = decoder(name, sessionOptions(layer, variantOptions, false) as never);
    }
    return decoders[layer]!;
  };

  const advance = (method: string, ids: number[]): tf.Tensor2D => {
    if (disposed) throw new Error(`${owner}.${method}: the session was disposed`);
    const p = ids.length;
    if (history.length + p > length) {
      throw new Error(
        `${owner}.${method}: position ${history.length + p} would pass the session's length ${length}; ` +
          `start the session with a larger length (at most the model's maxLength ${config.maxLength})`,
      );
    }
    const offset = history.length;
    if (o.cache === "none") {
      history.push(...ids);
      const all = tf.tensor2d(history, [1, history.length], "int32"); // [1, t]
      try {
        return tf.tidy(() => {
          const logits = model.logitsWith(all, {
            attend: (layer, qkv, variantOptions) => {
              const variant = variants[config.attention[layer].variant] as unknown as {
                attend(q: QKV, o: object): tf.Tensor4D;
              };
              const out = variant.attend(qkv, sessionOptions(layer, variantOptions, true)); // [1, h, t, dh]
              onLayerOutput?.(layer, tf.slice(out, [0, 0, offset, 0], [-1, -1, p, -1]));
              return out;
            },
          }); // [1, t, V]
          return tf.reshape(tf.slice(logits, [0, offset, 0], [1, p, -1]), [p, config.vocabSize]) as tf.Tensor2D;
        });
      } finally {
        all.dispose();
      }
    }
    const next: (DecodeState | undefined)[] = new Array(layers);
    const input = tf.tensor2d(ids, [1, p], "int32"); // [1, p]
    try {
      const logits = tf.tidy(() => {
        const out = model.logitsWith(input, {
          offset,
          attend: (layer, qkv, variantOptions) => {
            const dec = decoderFor(layer, variantOptions);
            const [batch, heads, , dk] = qkv.q.shape;
            const state = states[layer] ?? dec.init({ batch, heads, dk, dv: qkv.v.shape[3] });
            const run = p === 1 && method === "step" ? dec.step(state, qkv) : dec.prefill(state, qkv);
            if (states[layer] === undefined) dec.dispose(state);
            next[layer] = run.state;
            onLayerOutput?.(layer, run.out);
            return run.out; // [1, h, p, dh]
          },
        }); // [1, p, V]
        return tf.reshape(out, [p, config.vocabSize]) as tf.Tensor2D;
      });
      // The new states are complete: release the old ones.
      states.forEach((state, layer) => state && decoders[layer]!.dispose(state));
      states = next;
      history.push(...ids);
      return logits;
    } catch (error) {
      next.forEach((state, layer) => state && decoders[layer]!.dispose(state));
      throw error;
    } finally {
      input.dispose();
    }
  };

  const layerStateFloats = () => states.map((state, layer) => (state ? decoders[layer]!.stateSize(state) : 0));

  return {
    options: Object.freeze({ cache: o.cache, length }),
    get position() {
      return history.length;
    },
    prefill: (ids) => advance("prefill", checkIds(`${owner}.prefill`, ids, config.vocabSize)),
    step(id: number) {
      checkId(`${owner}.step: id`, id, config.vocabSize);
      return advance("step", [id]);
    },
    stateFloats: () => layerStateFloats().reduce((a, b) => a + b, 0),
    layerStateFloats,
    dispose() {
      if (disposed) return;
      disposed = true;
      states.forEach((state, layer) => state && decoders[layer]!.dispose(state));
      states = new Array(layers);
    },
  };
}

/** Options of {@linkcode sampleToken}. */
export interface SampleOptions {
  /** Divides the logits before the softmax; must be > 0. Default 1. */
  temperature?: number;
  /** Keep only the k largest logits (ties at the k-th value kept too); null (default) keeps all. */
  topK?: number | null;
  /** Take the largest logit (the first on ties); temperature, topK and uniform are then unused. Default false. */
  greedy?: boolean;
  /** A uniform draw in [0, 1), e.g. one value of lib/random.ts seededUniform; required unless greedy. */
  uniform?: number | null;
}

const SAMPLE_RULES: Record<string, OptionRule> = {
  temperature: { type: "number", min: 0, exclusiveMin: true },
  topK: { type: "number", min: 1, integer: true, nullable: true },
  greedy: { type: "boolean" },
  uniform: { type: "number", min: 0, nullable: true },
};

/**
 * One token from a row of logits: softmax(logits / temperature) over the top k, inverted at `uniform`
 * (computed in float64), or the argmax when greedy.
 *
 * @example
 * ```ts
 * import { sampleToken } from "./generate.ts";
 * const logits = Float32Array.from([0, Math.log(3), 5]);
 * console.log(sampleToken(logits, { greedy: true })); // 2
 * // top-2 keeps ids 1 and 2 with weights 3 and e^5; a draw of 0.01 falls in id 1's share.
 * console.log(sampleToken(logits, { topK: 2, uniform: 0.01 })); // 1
 * ```
 */
export function sampleToken(logits: ArrayLike<number>, options: SampleOptions = {}): number {
  const owner = "sampleToken";
  const o = resolveOptions<Required<SampleOptions>>(
    owner,
    options,
    { temperature: 1, topK: null, greedy: false, uniform: null },
    SAMPLE_RULES,
  );
  const n = logits?.length;
  if (typeof n !== "number" || n < 1) throw new Error(`${owner}: logits must be a non-empty array of numbers`);
  let best = 0;
  for (let i = 0; i < n; i++) {
    // A NaN is never the largest, and its weight would make every cumulative share NaN: the draw would fall through.
    if (Number.isNaN(logits[i])) throw new RangeError(`${owner}: logits[${i}] is NaN; logits must be numbers`);
    if (logits[i] > logits[best]) best = i;
  }
  if (!Number.isFinite(logits[best])) {
    throw new Error(`${owner}: logits must be finite, got a maximum of ${logits[best]}`);
  }
  if (o.greedy) return best;
  if (o.topK !== null && o.topK > n) {
    throw new Error(`${owner}: option topK (${o.topK}) exceeds the ${n} logits; use at most ${n}, or null for all`);
  }
  if (o.uniform === null || o.uniform >= 1) {
    throw new Error(
      `${owner}: option uniform must be a number in [0, 1) (a seeded draw) unless greedy, got ${o.uniform}`,
    );
  }
  const threshold = o.topK === null ? -Infinity : Array.from(logits).sort((a, b) => b - a)[o.topK - 1];
  const weights = Array.from(logits, (x) => (x >= threshold ? Math.exp((x - logits[best]) / o.temperature) : 0));
  const total = weights.reduce((a, b) => a + b, 0);
  let acc = 0;
  for (let i = 0; i < n; i++) {
    acc += weights[i] / total;
    if (o.uniform < acc) return i;
  }
  // Rounding left the cumulative sum just below 1: the last kept token.
  return weights.findLastIndex((w) => w > 0);
}

/** Options of {@linkcode generate}. */
export interface GenerateOptions {
  /** The prompt: a string (UTF-8 bytes, for byte-level models), bytes or token ids; at least one token. */
  prompt: string | Uint8Array | number[];
  /** Tokens to generate (>= 1); prompt + maxNewTokens must fit the model's maxLength. */
  maxNewTokens: number;
  /** Softmax temperature, > 0; default 1. For the most likely token use `greedy: true`. */
  temperature?: number;
  /** Sample among the k most likely tokens only, 1..vocabSize; default null (all). */
  topK?: number | null;
  /** Always take the most likely token; default false. */
  greedy?: boolean;
  /** Seeds the draws (lib/random.ts seededUniform); default 0. */
  seed?: number;
  /** "kv" (default): decoding states; "none": re-run the whole model over the sequence for every token. */
  cache?: CacheMode;
  /** Called with each new token and its index, as soon as it is drawn. */
  onToken?: ((token: number, index: number) => void) | null;
}

/** What {@linkcode generate} returns. */
export interface GenerateResult {
  /** The prompt's token ids. */
  prompt: number[];
  /** The generated token ids (maxNewTokens of them). */
  tokens: number[];
  /** The generated tokens as UTF-8 text (bytes that do not decode become U+FFFD); for byte-level models. */
  text: string;
  /** Wall time per generated token, ms: entry 0 includes the prompt's prefill, entry i > 0 one step. */
  timingsMs: number[];
  /** Floats held by all layers' states when token i was drawn (the state covers prompt + i tokens). */
  stateFloats: number[];
  /** cosFormer's M and the session's length: prompt + maxNewTokens. */
  length: number;
}

const GENERATE_RULES: Record<string, OptionRule> = {
  maxNewTokens: { type: "number", min: 1, integer: true },
  temperature: { type: "number", min: 0, exclusiveMin: true },
  topK: { type: "number", min: 1, integer: true, nullable: true },
  greedy: { type: "boolean" },
  seed: { type: "number", min: 0, integer: true },
  cache: { type: "enum", values: ["kv", "none"] },
};

function promptIds(prompt: unknown, vocabSize: number): number[] {
  const owner = "generate";
  let ids: number[];
  if (typeof prompt === "string") ids = Array.from(new TextEncoder().encode(prompt));
  else if (prompt instanceof Uint8Array || Array.isArray(prompt)) ids = Array.from(prompt as ArrayLike<number>);
  else {
    throw new TypeError(
      `${owner}: option prompt must be a string, a Uint8Array or an array of token ids, got ${String(prompt)}`,
    );
  }
  if (ids.length === 0) {
    throw new RangeError(`${owner}: option prompt is empty; give at least one token (e.g. the document separator 0)`);
  }
  ids.forEach((id, i) => checkId(`${owner}: prompt token ${i}`, id, vocabSize));
  return ids;
}

/**
 * Generates `maxNewTokens` tokens after `prompt` from a language model: prefill, then one
 * {@linkcode DecodeSession.step} per token, each token drawn by {@linkcode sampleToken} from a
 * seeded uniform stream, so the same seed gives the same tokens. Records the time and the state's
 * size per token.
 *
 * @example
 * ```ts
 * import { createModel } from "./model.ts";
 * import { generate } from "./generate.ts";
 * const model = createModel({ attention: "transnormer-t2", layers: 2, dModel: 16, heads: 2 }, { log: () => {} });
 * const a = await generate(model, { prompt: "The ", maxNewTokens: 5, seed: 1, topK: 20 });
 * const b = await generate(model, { prompt: "The ", maxNewTokens: 5, seed: 1, topK: 20 });
 * console.log(a.tokens.length, a.tokens.join() === b.tokens.join(), a.timingsMs.length); // 5 true 5
 * model.dispose();
 * ```
 */
export async function generate(model: TransformerModel, options: GenerateOptions): Promise<GenerateResult> {
  const owner = "generate";
  if (!(model instanceof TransformerModel)) {
    throw new TypeError(`${owner}: model must be a TransformerModel (from createModel), got ${String(model)}`);
  }
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new Error(`${owner}: options must be an object { prompt, maxNewTokens, ... }, got ${String(options)}`);
  }
  const { prompt, onToken = null, ...rest } = options;
  if (onToken !== null && typeof onToken !== "function") {
    throw new Error(`${owner}: option onToken must be a function (token, index) => void or null`);
  }
  if (rest.maxNewTokens === undefined) throw new Error(`${owner}: option maxNewTokens is required, e.g. 100`);
  const o = resolveOptions<Required<Omit<GenerateOptions, "prompt" | "onToken">>>(
    owner,
    rest,
    { maxNewTokens: 0, temperature: 1, topK: null, greedy: false, seed: 0, cache: "kv" },
    GENERATE_RULES,
  );
  const { vocabSize, maxLength } = model.config;
  if (o.topK !== null && o.topK > vocabSize) {
    throw new Error(`${owner}: option topK (${o.topK}) exceeds the vocabulary size ${vocabSize}; use 1..${vocabSize}`);
  }
  const ids = promptIds(prompt, vocabSize);
  const length = ids.length + o.maxNewTokens;
  if (length > maxLength) {
    throw new Error(
      `${owner}: prompt (${ids.length} tokens) + maxNewTokens (${o.maxNewTokens}) = ${length} exceeds the model's ` +
        `maxLength ${maxLength}; shorten the prompt or generate fewer tokens`,
    );
  }
  const uniform = seededUniform(o.seed);
  const session = decodeSession(model, { cache: o.cache, length });
  const tokens: number[] = [];
  const timingsMs: number[] = [];
  const stateFloats: number[] = [];
  try {
    for (let i = 0; i < o.maxNewTokens; i++) {
      const start = performance.now();
      const logits = i === 0 ? session.prefill(ids) : session.step(tokens[i - 1]); // [p, V]
      const last = tf.tidy(() => tf.slice(logits, [logits.shape[0] - 1, 0], [1, -1])); // [1, V]
      const row = await last.data();
      tf.dispose([logits, last]);
      const token = sampleToken(row, {
        temperature: o.temperature,
        topK: o.topK,
        greedy: o.greedy,
        uniform: uniform(),
      });
      timingsMs.push(performance.now() - start);
      stateFloats.push(session.stateFloats());
      tokens.push(token);
      onToken?.(token, i);
    }
  } finally {
    session.dispose();
  }
  const text = new TextDecoder().decode(Uint8Array.from(tokens.filter((t) => t < 256)));
  return { prompt: ids, tokens, text, timingsMs, stateFloats, length };
}
