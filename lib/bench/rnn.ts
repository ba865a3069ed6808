/**
 * Linear attention as an RNN, measured (notebook 06): whether a model's parallel, chunked and recurrent
 * forms give the same layer outputs, and the time per generated token at given positions, timed in
 * interleaved rounds so that load on the machine hits every model and position alike.
 *
 * - {@linkcode layerOutputs}: every attention layer's output [1, h, n, dh] and the logits [n, V] of one
 *   sequence, in one form: `"reference"` (the variant's explicit masked O(n²) product), `"attend"` (its fast
 *   chunked path) or `"recurrent"` (`decodeSession`, one token at a time from each layer's state).
 * - {@linkcode formAgreement}: the largest differences between the three forms, per layer and for the logits.
 * - {@linkcode decodeTimes}: per-token decoding time of several models at several positions, one session per
 *   model and position, every session stepped once per round.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { type QKV, setFiniteChecks, variants } from "../attention/mod.ts";
import { type DecodeSession, decodeSession } from "../models/generate.ts";
import { TransformerModel } from "../models/model.ts";
import { type ReadPlan, readPlan, readPlanAsync } from "../read.ts";
import { interleavedTimes, interleavedTimesAsync } from "../timing.ts";
import { positiveInteger } from "../_options.ts";

/** How {@linkcode layerOutputs} runs the attention layers. */
export type Form = "reference" | "attend" | "recurrent";

const FORMS: readonly Form[] = ["reference", "attend", "recurrent"];

/** What {@linkcode layerOutputs} returns; the caller disposes every tensor. */
export interface LayerOutputs {
  /** One per attention layer: its output before the output projection, [1, h, n, dh]. */
  layers: tf.Tensor4D[];
  /** The model's logits, [n, vocab]. */
  logits: tf.Tensor2D;
}

function checkModel(owner: string, model: unknown): TransformerModel {
  if (!(model instanceof TransformerModel)) {
    throw new TypeError(`${owner}: model must be a TransformerModel (from createModel), got ${String(model)}`);
  }
  return model;
}

function checkIds(owner: string, ids: unknown, model: TransformerModel): number[] {
  if (ids === null || typeof ids !== "object" || typeof (ids as ArrayLike<number>).length !== "number") {
    throw new TypeError(`${owner}: ids must be an array of token ids (number[] or a typed array), got ${String(ids)}`);
  }
  const out = Array.from(ids as ArrayLike<number>);
  if (out.length === 0) throw new RangeError(`${owner}: ids is empty; give at least one token id`);
  if (out.length > model.config.maxLength) {
    throw new RangeError(
      `${owner}: ids has ${out.length} tokens, more than the model's maxLength ${model.config.maxLength}`,
    );
  }
  const V = model.config.vocabSize;
  out.forEach((id, i) => {
    if (!Number.isInteger(id) || id < 0 || id >= V) {
      throw new RangeError(`${owner}: ids[${i}] must be a token id in 0..${V - 1}, got ${id}`);
    }
  });
  return out;
}

/**
 * Runs `model` over one sequence with every attention layer in `form`, and returns each layer's output
 * [1, h, n, dh] and the logits [n, V]. `"reference"` and `"attend"` go through the model's `logitsWith` hook
 * with the variant's own `reference()` or `attend()`; `"recurrent"` steps a `decodeSession` token by token,
 * so each layer reads only its carried state. The caller disposes the tensors.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { createModel } from "../models/model.ts";
 * import { layerOutputs } from "./rnn.ts";
 * const model = createModel({ attention: "linear", layers: 2, dModel: 16, heads: 2 }, { log: () => {} });
 * const out = layerOutputs(model, [84, 104, 101], "recurrent");
 * console.log(out.layers.length, out.layers[0].shape, out.logits.shape); // 2 [1, 2, 3, 8] [3, 256]
 * tf.dispose([...out.layers, out.logits]);
 * model.dispose();
 * ```
 */
export function layerOutputs(model: TransformerModel, ids: ArrayLike<number>, form: Form): LayerOutputs {
  checkModel("layerOutputs", model);
  const tokens = checkIds("layerOutputs", ids, model);
  if (!FORMS.includes(form)) {
    throw new RangeError(`layerOutputs: form must be one of ${FORMS.join(", ")}, got ${JSON.stringify(form)}`);
  }
  const n = tokens.length;
  const V = model.config.vocabSize;
  if (form === "recurrent") {
    const parts: tf.Tensor4D[][] = model.config.attention.map(() => []);
    const session = decodeSession(model, { length: n, onLayerOutput: (i, out) => parts[i].push(tf.keep(out.clone())) });
    const rows = tokens.map((id) => session.step(id)); // n × [1, V]
    session.dispose();
    const layers = parts.map((p) => {
      const all = tf.concat(p, 2) as tf.Tensor4D; // [1, h, n, dh]
      tf.dispose(p);
      return all;
    });
    const logits = tf.concat(rows, 0) as tf.Tensor2D; // [n, V]
    tf.dispose(rows);
    return { layers, logits };
  }
  const layers: tf.Tensor4D[] = [];
  const logits = tf.tidy(() => {
    const input = tf.tensor2d(tokens, [1, n], "int32"); // [1, n]
    const out = model.logitsWith(input, {
      attend: (i: number, qkv: QKV, options: Record<string, unknown>) => {
        const variant = variants[model.config.attention[i].variant] as unknown as Record<
          Form,
          (q: QKV, o: object) => tf.Tensor4D
        >;
        const o = variant[form](qkv, options); // [1, h, n, dh]
        layers[i] = tf.keep(o.clone());
        return o;
      },
    }); // [1, n, V]
    return tf.reshape(out, [n, V]) as tf.Tensor2D;
  });
  return { layers, logits };
}

/** One row of {@linkcode formAgreement}: a layer (or the logits) and the largest absolute differences. */
export interface FormAgreementRow {
  /** The layer index as a string, or "logits". */
  layer: string;
  /** The layer's variant and inner map, e.g. "norm (elu+1)"; "–" for the logits. */
  variant: string;
  /** max |output| of the reference form: the scale the differences compare with. */
  maxOutput: number;
  chunkedVsParallel: number;
  recurrentVsParallel: number;
  recurrentVsChunked: number;
}

/**
 * What {@linkcode formAgreement} and {@linkcode formAgreementAsync} read: per layer and for the logits, max |parallel|
 * and the three largest differences, as one [rows, 4] tensor read once; the three forms' outputs are disposed when
 * the read is done.
 */
function agreementPlan(owner: string, model: TransformerModel, ids: ArrayLike<number>): ReadPlan<FormAgreementRow[]> {
  checkModel(owner, model);
  checkIds(owner, ids, model);
  const names = model.config.attention.map((layer) => {
    const inner = layer.options.inner ?? layer.options.featureMap;
    return layer.variant + (typeof inner === "string" ? ` (${inner})` : "");
  });
  return {
    build: () => {
      const forms: tf.Tensor[][] = [];
      const maxAbs = (t: tf.Tensor) => tf.max(tf.abs(t)); // []
      try {
        for (const form of ["reference", "attend", "recurrent"] as const) {
          const out = layerOutputs(model, ids, form);
          forms.push([...out.layers, out.logits]);
        }
        const [parallel, chunked, recurrent] = forms;
        return [tf.stack(parallel.map((p, i) => {
          const c = chunked[i], r = recurrent[i];
          return tf.stack([maxAbs(p), maxAbs(tf.sub(c, p)), maxAbs(tf.sub(r, p)), maxAbs(tf.sub(r, c))]); // [4]
        }))]; // [layers + 1, 4]
      } finally {
        // layerOutputs keeps its tensors (tf.keep), so the read's tidy would not free them.
        tf.dispose(forms.flat());
      }
    },
    finish: ([values]) =>
      [...names, "–"].map((variant, i) => ({
        layer: i < names.length ? String(i) : "logits",
        variant,
        maxOutput: values[4 * i],
        chunkedVsParallel: values[4 * i + 1],
        recurrentVsParallel: values[4 * i + 2],
        recurrentVsChunked: values[4 * i + 3],
      })),
  };
}

/**
 * The largest absolute differences between the parallel (`reference`), chunked (`attend`) and recurrent
 * forms of `model` over `ids`, one row per attention layer and one for the logits. Layer i's input comes
 * from the same form's earlier layers, so later rows include what earlier layers differ by. Every number is read in
 * one synchronous read; {@linkcode formAgreementAsync} awaits it instead.
 *
 * @example
 * ```ts
 * import { createModel } from "../models/model.ts";
 * import { formAgreement } from "./rnn.ts";
 * const model = createModel({ attention: "transnormer-t2", layers: 2, dModel: 16, heads: 2 }, { log: () => {} });
 * const rows = formAgreement(model, [1, 2, 3, 4, 5, 6]);
 * console.log(rows.map((r) => r.layer), rows.every((r) => r.recurrentVsParallel < 1e-4 * r.maxOutput));
 * // ["0", "1", "logits"] true
 * model.dispose();
 * ```
 */
export function formAgreement(model: TransformerModel, ids: ArrayLike<number>): FormAgreementRow[] {
  return readPlan(agreementPlan("formAgreement", model, ids));
}

/**
 * {@linkcode formAgreement} with its one read awaited (`await data()`), for a GPU backend; the same rows.
 *
 * @example
 * ```ts
 * import { createModel } from "../models/model.ts";
 * import { formAgreementAsync } from "./rnn.ts";
 * const model = createModel({ attention: "linear", layers: 1, dModel: 8, heads: 2 }, { log: () => {} });
 * const rows = await formAgreementAsync(model, [1, 2, 3]);
 * console.log(rows.map((r) => r.layer), rows.every((r) => r.recurrentVsChunked < 1e-4 * r.maxOutput)); // ["0", "logits"] true
 * model.dispose();
 * ```
 */
export async function formAgreementAsync(
  model: TransformerModel,
  ids: ArrayLike<number>,
): Promise<FormAgreementRow[]> {
  return await readPlanAsync(agreementPlan("formAgreementAsync", model, ids));
}

/** One model to time in {@linkcode decodeTimes}. */
export interface DecodeTimingSpec {
  /** Its label in the results. */
  name: string;
  model: TransformerModel;
  /**
   * "kv" (default): each layer's decoding state (a KV cache for softmax, a fixed state for the kernel layers);
   * a timing is `stepsPerTiming` single-token steps. "none": no state; a timing is one re-run of the model over
   * the p tokens before the next one (what a token costs without a cache).
   */
  cache?: "kv" | "none";
  /** The positions to time it at (tokens already in the session). */
  positions: readonly number[];
}

/** Options of {@linkcode decodeTimes}. */
export interface DecodeTimesOptions {
  /** Interleaved rounds; each times every (model, position) once. Default 5. */
  rounds?: number;
  /** Single-token steps per timing of a "kv" session; its time per token is their mean. Default 4. */
  stepsPerTiming?: number;
  /** Untimed timings of every (model, position) before the first round (new kernel shapes). Default 1. */
  warmup?: number;
  /** A "kv" session is prefilled to its position in pieces of at most this many tokens. Default 1024. */
  prefillPiece?: number;
  /** Receives (round, "name@position") before each timing, e.g. for a progress line. */
  onTime?: (round: number, label: string) => void;
}

/** One (model, position) of {@linkcode decodeTimes}. */
export interface DecodeTiming {
  name: string;
  cache: "kv" | "none";
  /** The position the session stood at when timing began. */
  position: number;
  /** Milliseconds per generated token, one per round. */
  msPerToken: number[];
  /** Where the session stood after the last timing ("kv"), or the position ("none"). */
  endPosition: number;
  /** Floats every layer's state held at `endPosition` (0 for "none"). */
  stateFloats: number;
  /** Bytes tf.memory() counted above what was allocated before the session was created and prefilled (0 for "none"). */
  heldBytes: number;
}

/**
 * Times generation of several models at several positions in interleaved rounds. Each "kv" (model, position)
 * gets its own `decodeSession`, prefilled to the position; each round times `stepsPerTiming` single-token
 * steps of every session (one round moves each session on by that many tokens) in an order rotated from round
 * to round (`interleavedTimes`). A "none" timing re-runs the model over the prefix instead. Token ids come from
 * `ids`, which must hold every position reached. The finite checks of the attention layers are off while timing.
 * Per-round times at different positions of one model are paired by round: fit an exponent per round
 * (`exponentInterval`), or divide two models' times with `ratioInterval(..., { paired: true })`.
 *
 * @example
 * ```ts
 * import { createModel } from "../models/model.ts";
 * import { decodeTimes } from "./rnn.ts";
 * const model = createModel({ attention: "linear", layers: 1, dModel: 8, heads: 2, maxLength: 64 }, { log: () => {} });
 * const ids = Array.from({ length: 64 }, (_, i) => i % 256);
 * const rows = decodeTimes([{ name: "linear", model, positions: [8, 32] }], ids, { rounds: 2, stepsPerTiming: 2 });
 * console.log(rows.map((r) => [r.position, r.msPerToken.length, r.endPosition, r.stateFloats]));
 * // [[8, 2, 14, 40], [32, 2, 38, 40]]: (1 warm-up + 2 rounds) × 2 steps past each position; 2 heads × (S [4, 4] + z [4])
 * model.dispose();
 * ```
 */
export function decodeTimes(
  specs: readonly DecodeTimingSpec[],
  ids: ArrayLike<number>,
  options: DecodeTimesOptions = {},
): DecodeTiming[] {
  const run = openDecode("decodeTimes", specs, ids, options);
  try {
    return run.results(interleavedTimes(run.fns, run.timing));
  } finally {
    run.close();
  }
}

/**
 * {@linkcode decodeTimes} with every timing's last output read back by `await data()` ({@linkcode
 * interleavedTimesAsync}): the same sessions, rounds and rotated order, for a GPU backend.
 *
 * @example
 * ```ts
 * import { createModel } from "../models/model.ts";
 * import { decodeTimesAsync } from "./rnn.ts";
 * const model = createModel({ attention: "linear", layers: 1, dModel: 8, heads: 2, maxLength: 32 }, { log: () => {} });
 * const ids = Array.from({ length: 32 }, (_, i) => i);
 * const rows = await decodeTimesAsync([{ name: "linear", model, positions: [4] }], ids, { rounds: 2, stepsPerTiming: 1 });
 * console.log(rows[0].msPerToken.length, rows[0].endPosition); // 2 7
 * model.dispose();
 * ```
 */
export async function decodeTimesAsync(
  specs: readonly DecodeTimingSpec[],
  ids: ArrayLike<number>,
  options: DecodeTimesOptions = {},
): Promise<DecodeTiming[]> {
  const run = openDecode("decodeTimesAsync", specs, ids, options);
  try {
    return run.results(await interleavedTimesAsync(run.fns, run.timing));
  } finally {
    run.close();
  }
}

/** The sessions of a decoding benchmark, opened and prefilled, with what to time and how to read the times. */
interface DecodeRun {
  /** One function per (model, position), named "name@position". */
  fns: Record<string, () => tf.TensorContainer>;
  /** The interleavedTimes options. */
  timing: { rounds: number; repeats: 1; warmup: number; onTime?: (round: number, label: string) => void };
  /** The rows from interleavedTimes' per-round times. */
  results: (times: Record<string, number[]>) => DecodeTiming[];
  /** Disposes the sessions and turns the finite checks back on. */
  close: () => void;
}

/** Checks the arguments of decodeTimes, turns the finite checks off and opens every session (see decodeTimes). */
function openDecode(
  owner: string,
  specs: readonly DecodeTimingSpec[],
  ids: ArrayLike<number>,
  options: DecodeTimesOptions,
): DecodeRun {
  if (options === null || typeof options !== "object") throw new TypeError(`${owner}: options must be an object`);
  const known = ["rounds", "stepsPerTiming", "warmup", "prefillPiece", "onTime"];
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new TypeError(`${owner}: unknown option "${key}"; expected ${known.join(", ")}`);
  }
  const rounds = positiveInteger(owner, "options.rounds", options.rounds ?? 5);
  const steps = positiveInteger(owner, "options.stepsPerTiming", options.stepsPerTiming ?? 4);
  const piece = positiveInteger(owner, "options.prefillPiece", options.prefillPiece ?? 1024);
  const warmup = options.warmup ?? 1;
  if (!Number.isInteger(warmup) || warmup < 0) {
    throw new RangeError(`${owner}: options.warmup must be an integer >= 0, got ${warmup}`);
  }
  if (!Array.isArray(specs) || specs.length === 0) {
    throw new TypeError(`${owner}: specs must be a non-empty array of { name, model, cache?, positions }`);
  }
  const tokens = Array.from(ids);
  // Every "kv" session steps warmup + rounds timings past its position.
  const advance = (warmup + rounds) * steps;
  specs.forEach((spec, i) => {
    checkModel(`${owner}: specs[${i}].model`, spec.model);
    if (typeof spec.name !== "string" || spec.name === "") {
      throw new TypeError(`${owner}: specs[${i}].name must be a non-empty string`);
    }
    if (spec.cache !== undefined && spec.cache !== "kv" && spec.cache !== "none") {
      throw new RangeError(`${owner}: specs[${i}].cache must be "kv" or "none", got ${JSON.stringify(spec.cache)}`);
    }
    if (!Array.isArray(spec.positions) || spec.positions.length === 0) {
      throw new TypeError(`${owner}: specs[${i}].positions must be a non-empty array of positions`);
    }
    for (const p of spec.positions) {
      positiveInteger(owner, `specs[${i}].positions[]`, p);
      const end = spec.cache === "none" ? p : p + advance;
      const limit = Math.min(tokens.length, spec.model.config.maxLength);
      if (end > limit) {
        throw new RangeError(
          `${owner}: specs[${i}] ("${spec.name}") reaches position ${end} from ${p} (${advance} timed and warm-up ` +
            `steps), past ${
              tokens.length < spec.model.config.maxLength
                ? `ids (${tokens.length} tokens)`
                : `the model's maxLength ${spec.model.config.maxLength}`
            }; ` +
            "give more ids, a larger maxLength, or fewer rounds",
        );
      }
    }
  });
  const sessions: DecodeSession[] = [];
  const results: (DecodeTiming & { session: DecodeSession | null })[] = [];
  const fns: Record<string, () => tf.TensorContainer> = {};
  // Timed calls read nothing back; close() restores the setting found here.
  const finiteBefore = setFiniteChecks(false);
  const close = () => {
    setFiniteChecks(finiteBefore);
    for (const s of sessions) s.dispose();
  };
  try {
    for (const spec of specs) {
      const cache = spec.cache ?? "kv";
      for (const p of spec.positions) {
        const label = `${spec.name}@${p}`;
        if (label in fns) throw new RangeError(`${owner}: "${spec.name}" at position ${p} is given twice`);
        let session: DecodeSession | null = null;
        let heldBytes = 0;
        if (cache === "none") {
          // Each timing re-runs the whole prefix: nothing is held between timings.
          fns[label] = () => {
            const fresh = decodeSession(spec.model, { cache: "none" });
            try {
              const logits = fresh.prefill(tokens.slice(0, p)); // [p, V]
              const last = tf.slice(logits, [p - 1, 0], [1, -1]); // [1, V]
              logits.dispose();
              return last;
            } finally {
              fresh.dispose();
            }
          };
        } else {
          const before = tf.memory().numBytes;
          const kv = decodeSession(spec.model, { cache: "kv" });
          sessions.push(kv);
          while (kv.position < p) {
            const from = kv.position;
            tf.dispose(kv.prefill(tokens.slice(from, Math.min(p, from + piece))));
          }
          heldBytes = tf.memory().numBytes - before;
          session = kv;
          fns[label] = () => {
            for (let s = 0; s < steps - 1; s++) tf.dispose(kv.step(tokens[kv.position]));
            return kv.step(tokens[kv.position]);
          };
        }
        results.push({
          name: spec.name,
          cache,
          position: p,
          msPerToken: [],
          endPosition: p,
          stateFloats: 0,
          heldBytes,
          session,
        });
      }
    }
  } catch (err) {
    close();
    throw err;
  }
  return {
    fns,
    timing: { rounds, repeats: 1, warmup, ...(options.onTime === undefined ? {} : { onTime: options.onTime }) },
    results: (times) =>
      results.map(({ session, ...r }) => ({
        ...r,
        msPerToken: times[`${r.name}@${r.position}`].map((ms) => (r.cache === "kv" ? ms / steps : ms)),
        endPosition: session?.position ?? r.position,
        stateFloats: session?.stateFloats() ?? 0,
      })),
    close,
  };
}
