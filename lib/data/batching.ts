/**
 * Language-model batches from a token stream: random windows for training, whose batch at
 * step t is a pure function of (seed, t), and a fixed tiling for evaluation.
 *
 * Both cut windows of `seqLen + 1` tokens; inputs are the first `seqLen`, targets the last
 * `seqLen` (the inputs shifted by one).
 *
 * @module
 */

import { seededUniform } from "../random.ts";
import { type LmBatch, mixSeed } from "./types.ts";
import { checkInteger, resolveOptions } from "../_options.ts";

/** A token stream: bytes, or ids from a larger vocabulary. */
export type TokenStream = Uint8Array | Uint16Array | Int32Array;

/** Options for {@linkcode lmSampler}. */
export interface LmSamplerOptions {
  /** Rows per batch. */
  batchSize: number;
  /** Tokens per row. */
  seqLen: number;
  /** Default 0. */
  seed?: number;
  /** Token ids must lie in [0, vocabSize). Default 256 for a Uint8Array, else required. */
  vocabSize?: number;
}

/** Random training windows; see {@linkcode lmSampler}. */
export interface LmSampler {
  readonly vocabSize: number;
  readonly batchSize: number;
  readonly seqLen: number;
  readonly seed: number;
  /** The batch at `step`: a pure function of (tokens, seed, step). */
  batch(step: number): LmBatch;
}

/** Options for {@linkcode lmTiling}. */
export interface LmTilingOptions {
  /** Rows per batch; the last batch may have fewer. */
  batchSize: number;
  /** Tokens per row. */
  seqLen: number;
  /** Keep only the first this many batches. Default: all. */
  maxBatches?: number | null;
}

/** A fixed evaluation tiling; see {@linkcode lmTiling}. */
export interface LmTiling {
  readonly seqLen: number;
  readonly batchSize: number;
  /** Number of windows (rows) over all batches. */
  readonly numWindows: number;
  readonly numBatches: number;
  /** Number of target tokens scored over all batches (numWindows * seqLen). */
  readonly numTargets: number;
  /** Batch `index` (0-based). */
  batch(index: number): LmBatch;
  [Symbol.iterator](): Iterator<LmBatch>;
}

function checkTokens(owner: string, tokens: unknown): asserts tokens is TokenStream {
  if (!(tokens instanceof Uint8Array || tokens instanceof Uint16Array || tokens instanceof Int32Array)) {
    throw new Error(`${owner}: tokens must be a Uint8Array, Uint16Array or Int32Array, got ${String(tokens)}`);
  }
}

function checkWindow(owner: string, tokens: TokenStream, seqLen: number): void {
  if (tokens.length < seqLen + 1) {
    throw new Error(
      `${owner}: seqLen ${seqLen} needs at least ${seqLen + 1} tokens (inputs plus the shifted target), ` +
        `but the stream has ${tokens.length}; use a shorter seqLen or a longer split`,
    );
  }
}

function checkVocab(owner: string, tokens: TokenStream, vocabSize: number): void {
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t < 0 || t >= vocabSize) {
      throw new Error(`${owner}: token ${t} at position ${i} is outside [0, ${vocabSize}); pass the right vocabSize`);
    }
  }
}

function windowsBatch(tokens: TokenStream, starts: ArrayLike<number>, seqLen: number): LmBatch {
  const rows = starts.length;
  const inputs = new Int32Array(rows * seqLen); // [batch, seqLen]
  const targets = new Int32Array(rows * seqLen); // [batch, seqLen]
  for (let r = 0; r < rows; r++) {
    const s = starts[r];
    inputs.set(tokens.subarray(s, s + seqLen), r * seqLen);
    targets.set(tokens.subarray(s + 1, s + 1 + seqLen), r * seqLen);
  }
  return { kind: "lm", inputs, targets, batch: rows, length: seqLen };
}

/**
 * Training batches of random windows. Row r of the batch at step t starts at a uniform
 * position in [0, tokens.length - seqLen - 1], drawn from a generator seeded by (seed, t), so
 * the batch at a step never depends on earlier calls and a resumed run repeats its loss curve.
 *
 * @example
 * ```ts
 * import { lmSampler } from "./batching.ts";
 * const tokens = new TextEncoder().encode("the quick brown fox jumps over the lazy dog");
 * const sampler = lmSampler(tokens, { batchSize: 2, seqLen: 8, seed: 1 });
 * const b = sampler.batch(0);
 * console.log(b.batch, b.length, b.inputs[1] === b.targets[0]); // 2 8 true
 * ```
 */
export function lmSampler(tokens: TokenStream, options: LmSamplerOptions): LmSampler {
  const owner = "lmSampler";
  checkTokens(owner, tokens);
  const o = resolveOptions(
    owner,
    options,
    { batchSize: 0, seqLen: 0, seed: 0, vocabSize: tokens instanceof Uint8Array ? 256 : 0 },
    {
      batchSize: { type: "number", integer: true, min: 1 },
      seqLen: { type: "number", integer: true, min: 1 },
      seed: { type: "number", integer: true, min: 0 },
      vocabSize: { type: "number", integer: true, min: 1 },
    },
  );
  if (o.batchSize === 0) throw new Error(`${owner}: option batchSize is required (an integer >= 1)`);
  if (o.seqLen === 0) throw new Error(`${owner}: option seqLen is required (an integer >= 1)`);
  if (o.vocabSize === 0) {
    throw new Error(`${owner}: option vocabSize is required for ${tokens.constructor.name} tokens`);
  }
  checkWindow(owner, tokens, o.seqLen);
  checkVocab(owner, tokens, o.vocabSize);
  const span = tokens.length - o.seqLen; // number of valid starts
  return {
    vocabSize: o.vocabSize,
    batchSize: o.batchSize,
    seqLen: o.seqLen,
    seed: o.seed,
    batch(step: number): LmBatch {
      checkInteger(`${owner}.batch`, "step", step);
      const uniform = seededUniform(mixSeed(o.seed, step));
      const starts = new Array<number>(o.batchSize);
      for (let r = 0; r < o.batchSize; r++) starts[r] = Math.floor(uniform() * span);
      return windowsBatch(tokens, starts, o.seqLen);
    },
  };
}

/**
 * Evaluation batches: window w covers inputs `tokens[w*seqLen, (w+1)*seqLen)` and targets one
 * further, for w < floor((tokens.length - 1) / seqLen). Windows are in order and do not
 * overlap, so every target token from position 1 up to numWindows * seqLen is scored exactly
 * once; batch i holds windows i*batchSize onward (the last batch may be smaller).
 *
 * @example
 * ```ts
 * import { lmTiling } from "./batching.ts";
 * const tiling = lmTiling(new Uint8Array(101), { batchSize: 4, seqLen: 10 });
 * console.log(tiling.numWindows, tiling.numBatches, tiling.batch(2).batch); // 10 3 2
 * ```
 */
export function lmTiling(tokens: TokenStream, options: LmTilingOptions): LmTiling {
  const owner = "lmTiling";
  checkTokens(owner, tokens);
  const o = resolveOptions(owner, options, { batchSize: 0, seqLen: 0, maxBatches: null as number | null }, {
    batchSize: { type: "number", integer: true, min: 1 },
    seqLen: { type: "number", integer: true, min: 1 },
    maxBatches: { type: "number", integer: true, min: 1, nullable: true },
  });
  if (o.batchSize === 0) throw new Error(`${owner}: option batchSize is required (an integer >= 1)`);
  if (o.seqLen === 0) throw new Error(`${owner}: option seqLen is required (an integer >= 1)`);
  checkWindow(owner, tokens, o.seqLen);
  const allWindows = Math.floor((tokens.length - 1) / o.seqLen);
  const allBatches = Math.ceil(allWindows / o.batchSize);
  const numBatches = o.maxBatches === null ? allBatches : Math.min(allBatches, o.maxBatches);
  const numWindows = Math.min(allWindows, numBatches * o.batchSize);
  const batch = (index: number): LmBatch => {
    checkInteger(`${owner}.batch`, "index", index);
    if (index >= numBatches) {
      throw new Error(`${owner}.batch: index must be < numBatches (${numBatches}), got ${index}`);
    }
    const first = index * o.batchSize;
    const rows = Math.min(o.batchSize, numWindows - first);
    const starts = Array.from({ length: rows }, (_, r) => (first + r) * o.seqLen);
    return windowsBatch(tokens, starts, o.seqLen);
  };
  return {
    seqLen: o.seqLen,
    batchSize: o.batchSize,
    numWindows,
    numBatches,
    numTargets: numWindows * o.seqLen,
    batch,
    *[Symbol.iterator]() {
      for (let i = 0; i < numBatches; i++) yield batch(i);
    },
  };
}
