/**
 * Masked-language-model batches (BERT, and fairseq's `masked_lm` task that the authors of "The Devil in
 * Linear Transformer" trained their bidirectional models with): windows of `seqLen` tokens, about 15% of
 * their positions chosen, and of those 80% replaced by the [MASK] id, 10% by a random token and 10% left
 * as they are. The targets are the original tokens (no shift) and the `mask` weights are 1 on the chosen
 * positions and 0 elsewhere, so a model of task "mlm" scores the chosen positions only.
 *
 * The authors' code gives no masking details of its own: it runs fairseq's `masked_lm` with its defaults,
 * which are this recipe (mask probability 0.15, 10% left unmasked, 10% random). As in fairseq, the number
 * of chosen positions in a training row is `floor(maskRate * seqLen + u)` for u uniform in [0, 1), so its
 * mean is exactly `maskRate * seqLen`, and the positions are distinct. Unlike fairseq, every row has at
 * least one (so no row drops out of the loss; this raises the rate only when maskRate * seqLen < 1), and a
 * random replacement is uniform over the data vocabulary 0..vocabSize-1 (it may draw the original token).
 *
 * @module
 */

import { seededUniform } from "../random.ts";
import type { TokenStream } from "./batching.ts";
import { type LmBatch, mixSeed, sampleDistinct } from "./types.ts";
import { checkOptionKeys, describeValue, resolveOptions } from "../_options.ts";

/** What becomes of a chosen position: fractions that sum to 1. */
export interface MlmReplace {
  /** Replaced by the [MASK] id. */
  mask: number;
  /** Replaced by a token drawn uniformly from the data vocabulary. */
  random: number;
  /** Left as it is (still scored). */
  keep: number;
}

/** BERT's and fairseq's split of the chosen positions: 80% [MASK], 10% random, 10% unchanged. */
export const MLM_REPLACE: Readonly<MlmReplace> = Object.freeze({ mask: 0.8, random: 0.1, keep: 0.1 });

/** The fraction of positions chosen for prediction, BERT's and fairseq's 15%. */
export const MLM_MASK_RATE = 0.15;

/** Options shared by {@linkcode mlmSampler} and {@linkcode mlmTiling}. */
export interface MlmMaskOptions {
  /** Rows per batch. */
  batchSize: number;
  /** Tokens per row. */
  seqLen: number;
  /**
   * The [MASK] id: the model's `config.maskToken` (256 for a byte model of task "mlm"). It must lie outside the
   * data vocabulary (>= vocabSize), so that no data token reads as a mask.
   */
  maskToken: number;
  /** Fraction of positions chosen for prediction, in (0, 1]. Default {@linkcode MLM_MASK_RATE} (0.15). */
  maskRate?: number;
  /** The data's token ids lie in [0, vocabSize); random replacements are drawn from them. Default 256 for a Uint8Array, else required. */
  vocabSize?: number;
  /** What becomes of a chosen position. Default {@linkcode MLM_REPLACE} (0.8 / 0.1 / 0.1). */
  replace?: MlmReplace;
}

/** Options of {@linkcode mlmSampler}. */
export interface MlmSamplerOptions extends MlmMaskOptions {
  /** Seeds the windows and the masking. Default 0. */
  seed?: number;
}

/** Options of {@linkcode mlmTiling}. */
export interface MlmTilingOptions extends MlmMaskOptions {
  /** Seeds the fixed masking of each window (not the windows, which are fixed). Default 0. */
  seed?: number;
  /** Keep only the first this many batches. Default: all. */
  maxBatches?: number | null;
}

/** Random masked training windows; see {@linkcode mlmSampler}. */
export interface MlmSampler {
  readonly vocabSize: number;
  readonly batchSize: number;
  readonly seqLen: number;
  readonly seed: number;
  readonly maskToken: number;
  readonly maskRate: number;
  readonly replace: Readonly<MlmReplace>;
  /** The batch at `step`: a pure function of (tokens, options, step). */
  batch(step: number): LmBatch;
}

/** A fixed masked evaluation tiling; see {@linkcode mlmTiling}. */
export interface MlmTiling {
  readonly seqLen: number;
  /** Rows of every batch: batchSize, or every window when the split holds fewer. */
  readonly batchSize: number;
  /** Windows (rows) over all batches. */
  readonly numWindows: number;
  readonly numBatches: number;
  /** Masked positions in every row: max(1, round(maskRate * seqLen)). */
  readonly maskedPerRow: number;
  /** Masked (scored) positions over all batches: numWindows * maskedPerRow. */
  readonly numMasked: number;
  /** Batch `index` (0-based). */
  batch(index: number): LmBatch;
  [Symbol.iterator](): Iterator<LmBatch>;
}

interface Resolved {
  batchSize: number;
  seqLen: number;
  seed: number;
  maskToken: number;
  maskRate: number;
  vocabSize: number;
  replace: Readonly<MlmReplace>;
  maxBatches: number | null;
}

function checkTokens(owner: string, tokens: unknown): asserts tokens is TokenStream {
  if (!(tokens instanceof Uint8Array || tokens instanceof Uint16Array || tokens instanceof Int32Array)) {
    throw new TypeError(
      `${owner}: tokens must be a Uint8Array, Uint16Array or Int32Array, got ${describeValue(tokens)}`,
    );
  }
}

function checkReplace(owner: string, value: unknown): Readonly<MlmReplace> {
  if (value === undefined) return MLM_REPLACE;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError(
      `${owner}: option replace must be an object { mask, random, keep }, got ${describeValue(value)}; ` +
        "e.g. { mask: 0.8, random: 0.1, keep: 0.1 }",
    );
  }
  const keys = ["mask", "random", "keep"] as const;
  const given = checkOptionKeys(`${owner}: option replace`, value, keys);
  const out = {} as MlmReplace;
  for (const key of keys) {
    const x = given[key];
    if (typeof x !== "number") {
      throw new TypeError(
        `${owner}: option replace.${key} must be a number in [0, 1], got ${describeValue(x)}; give all three of ` +
          "mask, random and keep, e.g. { mask: 0.8, random: 0.1, keep: 0.1 }",
      );
    }
    if (!(x >= 0 && x <= 1)) throw new RangeError(`${owner}: option replace.${key} must be in [0, 1], got ${x}`);
    out[key] = x;
  }
  const sum = out.mask + out.random + out.keep;
  if (Math.abs(sum - 1) > 1e-9) {
    throw new RangeError(
      `${owner}: option replace must have mask + random + keep = 1, got ${out.mask} + ${out.random} + ${out.keep} = ` +
        `${sum}`,
    );
  }
  return Object.freeze(out);
}

function resolveMlm(owner: string, tokens: TokenStream, options: unknown, tiling: boolean): Resolved {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new TypeError(
      `${owner}: options must be an object { batchSize, seqLen, maskToken, ... }, got ${describeValue(options)}`,
    );
  }
  const { replace, ...rest } = options as Record<string, unknown>;
  const int = (min: number) => ({ type: "number" as const, integer: true, min });
  const o = resolveOptions(
    owner,
    rest,
    {
      batchSize: 0,
      seqLen: 0,
      seed: 0,
      maskToken: -1,
      maskRate: MLM_MASK_RATE,
      vocabSize: tokens instanceof Uint8Array ? 256 : 0,
      ...(tiling ? { maxBatches: null as number | null } : {}),
    },
    {
      batchSize: int(1),
      seqLen: int(1),
      seed: int(0),
      maskToken: int(0),
      maskRate: { type: "number", min: 0, exclusiveMin: true },
      vocabSize: int(1),
      ...(tiling ? { maxBatches: { type: "number" as const, integer: true, min: 1, nullable: true } } : {}),
    },
  ) as Omit<Resolved, "replace" | "maxBatches"> & { maxBatches?: number | null };
  const required = (key: string, what: string) => {
    throw new TypeError(`${owner}: option ${key} is required (${what})`);
  };
  if (o.batchSize === 0) required("batchSize", "an integer >= 1");
  if (o.seqLen === 0) required("seqLen", "an integer >= 1");
  if (o.maskToken === -1) {
    required("maskToken", 'the model\'s config.maskToken, e.g. 256 for a byte model of task "mlm"');
  }
  if (o.vocabSize === 0) required("vocabSize", `the data vocabulary, for ${tokens.constructor.name} tokens`);
  if (o.maskRate > 1) throw new RangeError(`${owner}: option maskRate must be in (0, 1], got ${o.maskRate}`);
  if (o.maskToken < o.vocabSize) {
    throw new RangeError(
      `${owner}: option maskToken ${o.maskToken} lies inside the data vocabulary 0..${o.vocabSize - 1}, so data ` +
        `tokens would read as masks; use an id >= vocabSize (${o.vocabSize}), e.g. a model of task "mlm" with ` +
        `vocabSize ${o.vocabSize + 1} and its default maskToken ${o.vocabSize}`,
    );
  }
  if (tokens.length < o.seqLen) {
    throw new RangeError(
      `${owner}: option seqLen ${o.seqLen} is longer than the token stream (${tokens.length} tokens); use a shorter ` +
        "seqLen or a longer split",
    );
  }
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] >= o.vocabSize) {
      throw new RangeError(
        `${owner}: token ${tokens[i]} at position ${i} is outside the data vocabulary 0..${o.vocabSize - 1}; ` +
          "pass the right vocabSize",
      );
    }
  }
  return { ...o, maxBatches: o.maxBatches ?? null, replace: checkReplace(owner, replace) };
}

function checkIndex(owner: string, name: string, value: unknown): asserts value is number {
  if (typeof value !== "number") {
    throw new TypeError(`${owner}: ${name} must be an integer >= 0, got ${describeValue(value)}`);
  }
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${owner}: ${name} must be an integer >= 0, got ${value}`);
  }
}

/**
 * Writes row `row` of a batch: the window `tokens[start, start + seqLen)` as targets, and as inputs with `count`
 * distinct positions (drawn from `uniform`) replaced as `o.replace` says; mask weight 1 on those positions.
 */
function maskRow(
  batch: LmBatch,
  at: { tokens: TokenStream; start: number; row: number; count: number },
  o: Resolved,
  uniform: () => number,
): void {
  const { tokens, start, row, count } = at;
  const n = o.seqLen;
  const offset = row * n;
  const window = tokens.subarray(start, start + n);
  batch.targets.set(window, offset);
  batch.inputs.set(window, offset);
  for (const p of sampleDistinct(uniform, { population: n, count })) {
    const r = uniform();
    if (r < o.replace.mask) batch.inputs[offset + p] = o.maskToken;
    else if (r < o.replace.mask + o.replace.random) batch.inputs[offset + p] = Math.floor(uniform() * o.vocabSize);
    batch.mask![offset + p] = 1;
  }
}

function emptyBatch(rows: number, seqLen: number): LmBatch {
  const size = rows * seqLen;
  return {
    kind: "lm",
    inputs: new Int32Array(size), // [rows, seqLen]
    targets: new Int32Array(size), // [rows, seqLen]
    mask: new Float32Array(size), // [rows, seqLen]
    batch: rows,
    length: seqLen,
  };
}

/**
 * Masked-language-model training batches. Row r of the batch at step t is a window of `seqLen` tokens starting at a
 * uniform position, of which `max(1, floor(maskRate * seqLen + u))` distinct positions (u uniform in [0, 1)) are
 * chosen and replaced as `replace` says (default 80% [MASK], 10% random, 10% unchanged). Targets are the window's
 * own tokens; `mask` is 1 on the chosen positions and 0 elsewhere. Everything is drawn from a generator seeded by
 * (seed, t), so the batch at a step never depends on earlier calls and a resumed run repeats its loss curve.
 *
 * @example
 * ```ts
 * import { mlmSampler } from "./mlm.ts";
 * const text = new TextEncoder().encode("the quick brown fox jumps over the lazy dog, again and again");
 * const sampler = mlmSampler(text, { batchSize: 2, seqLen: 20, seed: 1, maskToken: 256 });
 * const b = sampler.batch(0);
 * const chosen = b.mask!.reduce((s, w) => s + w, 0);
 * const same = b.inputs.every((t, i) => b.mask![i] === 1 || t === b.targets[i]);
 * console.log(b.batch, b.length, chosen >= 2, same); // 2 20 true true
 * ```
 */
export function mlmSampler(tokens: TokenStream, options: MlmSamplerOptions): MlmSampler {
  const owner = "mlmSampler";
  checkTokens(owner, tokens);
  const o = resolveMlm(owner, tokens, options, false);
  const span = tokens.length - o.seqLen + 1; // number of valid starts
  const expected = o.maskRate * o.seqLen;
  return {
    vocabSize: o.vocabSize,
    batchSize: o.batchSize,
    seqLen: o.seqLen,
    seed: o.seed,
    maskToken: o.maskToken,
    maskRate: o.maskRate,
    replace: o.replace,
    batch(step: number): LmBatch {
      checkIndex(`${owner}.batch`, "step", step);
      const uniform = seededUniform(mixSeed(o.seed, step));
      const batch = emptyBatch(o.batchSize, o.seqLen);
      for (let row = 0; row < o.batchSize; row++) {
        const start = Math.floor(uniform() * span);
        // Rounded up with probability frac(expected), as fairseq does: the mean count is maskRate * seqLen.
        const count = Math.min(o.seqLen, Math.max(1, Math.floor(expected + uniform())));
        maskRow(batch, { tokens, start, row, count }, o, uniform);
      }
      return batch;
    },
  };
}

/**
 * Masked-language-model evaluation batches with a fixed masking: window w covers `tokens[w*seqLen, (w+1)*seqLen)`,
 * and its `max(1, round(maskRate * seqLen))` masked positions and their replacements are drawn from a generator
 * seeded by (seed, w) alone, so the same split gives the same masked batches at every step, in every run and for
 * every batchSize: validation perplexity (exp of the mean cross-entropy over the masked tokens) is comparable
 * across steps and runs.
 *
 * Every row masks the same number of positions and every batch holds the same number of rows (the windows past the
 * last full batch are left out; a split with fewer than batchSize windows gives one batch of them all), so every
 * batch scores the same number of tokens (the training loop's validation weights each batch by its scored targets
 * anyway, so its loss is the mean over all masked tokens).
 *
 * @example
 * ```ts
 * import { mlmTiling } from "./mlm.ts";
 * const tiling = mlmTiling(new Uint8Array(1000).fill(97), { batchSize: 4, seqLen: 20, maskToken: 256 });
 * console.log(tiling.numWindows, tiling.numBatches, tiling.maskedPerRow, tiling.numMasked); // 48 12 3 144
 * console.log(tiling.batch(3).mask!.join("") === tiling.batch(3).mask!.join("")); // true
 * ```
 */
export function mlmTiling(tokens: TokenStream, options: MlmTilingOptions): MlmTiling {
  const owner = "mlmTiling";
  checkTokens(owner, tokens);
  const o = resolveMlm(owner, tokens, options, true);
  const allWindows = Math.floor(tokens.length / o.seqLen);
  const rows = Math.min(o.batchSize, allWindows);
  const fullBatches = Math.floor(allWindows / rows);
  const numBatches = o.maxBatches === null ? fullBatches : Math.min(fullBatches, o.maxBatches);
  const numWindows = numBatches * rows;
  const maskedPerRow = Math.max(1, Math.round(o.maskRate * o.seqLen));
  const batch = (index: number): LmBatch => {
    checkIndex(`${owner}.batch`, "index", index);
    if (index >= numBatches) {
      throw new RangeError(`${owner}.batch: index must be < numBatches (${numBatches}), got ${index}`);
    }
    const out = emptyBatch(rows, o.seqLen);
    for (let row = 0; row < rows; row++) {
      const w = index * rows + row;
      const uniform = seededUniform(mixSeed(o.seed, w));
      maskRow(out, { tokens, start: w * o.seqLen, row, count: maskedPerRow }, o, uniform);
    }
    return out;
  };
  return {
    seqLen: o.seqLen,
    batchSize: rows,
    numWindows,
    numBatches,
    maskedPerRow,
    numMasked: numWindows * maskedPerRow,
    batch,
    *[Symbol.iterator]() {
      for (let i = 0; i < numBatches; i++) yield batch(i);
    },
  };
}
