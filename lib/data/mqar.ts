/**
 * Multi-query associative recall (MQAR, as in the Zoology and Based papers): the probe of
 * how well an attention variant retrieves a value by its key from far back in the context.
 *
 * Vocabulary layout for `vocabSize` V, with K = floor((V - 1) / 2):
 *
 * | ids            | role                                              |
 * | -------------- | ------------------------------------------------- |
 * | 0              | filler between queries (never a key or a value)   |
 * | 1 .. K         | keys                                              |
 * | K + 1 .. V - 1 | values                                            |
 *
 * A sequence of `seqLen` tokens starts with `numKv` pairs `k v` (distinct keys, values drawn
 * uniformly with replacement). The rest is the query region: `numQueries` distinct keys of the
 * context, each at a distinct random even offset of the region, filler elsewhere. The target at a
 * query's position is the value paired with that key, with mask 1; every other target is 0 with
 * mask 0.
 *
 * @module
 */

import { seededUniform } from "../random.ts";
import { type LmBatch, mixSeed, sampleDistinct, type SyntheticTask } from "./types.ts";
import { checkInteger, resolveOptions } from "../_options.ts";

/** Options for {@linkcode mqarTask}. */
export interface MqarOptions {
  /** Key-value pairs per sequence. Default 8. */
  numKv?: number;
  /** Queried keys per sequence, at most numKv. Default numKv. */
  numQueries?: number | null;
  /** Default 256. */
  vocabSize?: number;
  /** Tokens per sequence; at least 2 numKv + 2 numQueries - 1. Default 64. */
  seqLen?: number;
  /** Default 0. */
  seed?: number;
}

/** The MQAR task: {@linkcode SyntheticTask} plus its resolved options and vocabulary layout. */
export interface MqarTask extends SyntheticTask<LmBatch> {
  readonly options: Readonly<Required<MqarOptions>> & { numQueries: number };
  /** Keys are ids 1 ..= numKeys; values are numKeys + 1 ..< vocabSize. */
  readonly numKeys: number;
  /** The id between queries. */
  readonly filler: 0;
}

/**
 * An MQAR task; its batches are LmBatch with a mask that selects the query positions.
 *
 * @example
 * ```ts
 * import { mqarTask } from "./mqar.ts";
 * const task = mqarTask({ numKv: 4, seqLen: 16, vocabSize: 32, seed: 1 });
 * const b = task.batch(0, 2);
 * console.log(b.length, b.mask!.reduce((a, m) => a + m, 0)); // 16 8
 * ```
 */
export function mqarTask(options?: MqarOptions): MqarTask {
  const owner = "mqarTask";
  const o = resolveOptions(
    owner,
    options,
    { numKv: 8, numQueries: null as number | null, vocabSize: 256, seqLen: 64, seed: 0 },
    {
      numKv: { type: "number", integer: true, min: 1 },
      numQueries: { type: "number", integer: true, min: 1, nullable: true },
      vocabSize: { type: "number", integer: true, min: 3 },
      seqLen: { type: "number", integer: true, min: 1 },
      seed: { type: "number", integer: true, min: 0 },
    },
  );
  const numQueries = o.numQueries ?? o.numKv;
  const numKeys = Math.floor((o.vocabSize - 1) / 2);
  const numValues = o.vocabSize - 1 - numKeys;
  if (numQueries > o.numKv) {
    throw new Error(
      `${owner}: numQueries (${numQueries}) must be <= numKv (${o.numKv}): only context keys are queried`,
    );
  }
  if (o.numKv > numKeys) {
    throw new Error(
      `${owner}: numKv (${o.numKv}) needs that many distinct keys, but vocabSize ${o.vocabSize} has ${numKeys}; ` +
        `raise vocabSize to at least ${2 * o.numKv + 1}`,
    );
  }
  const minLen = 2 * o.numKv + 2 * numQueries - 1;
  if (o.seqLen < minLen) {
    throw new Error(
      `${owner}: seqLen (${o.seqLen}) is too short for ${o.numKv} pairs and ${numQueries} queries; it must be >= ${minLen}`,
    );
  }
  const context = 2 * o.numKv;
  const slots = Math.floor((o.seqLen - context + 1) / 2);
  const L = o.seqLen;

  const fill = (index: number, inputs: Int32Array, targets: Int32Array, mask: Float32Array, row: number) => {
    const uniform = seededUniform(mixSeed(o.seed, index));
    const keys = sampleDistinct(uniform, { population: numKeys, count: o.numKv }).map((k) => k + 1);
    const values = keys.map(() => numKeys + 1 + Math.floor(uniform() * numValues));
    const base = row * L;
    for (let i = 0; i < o.numKv; i++) {
      inputs[base + 2 * i] = keys[i];
      inputs[base + 2 * i + 1] = values[i];
    }
    const asked = sampleDistinct(uniform, { population: o.numKv, count: numQueries });
    const at = sampleDistinct(uniform, { population: slots, count: numQueries });
    for (let q = 0; q < numQueries; q++) {
      const p = base + context + 2 * at[q];
      inputs[p] = keys[asked[q]];
      targets[p] = values[asked[q]];
      mask[p] = 1;
    }
  };

  return {
    name: "mqar",
    vocabSize: o.vocabSize,
    length: L,
    numKeys,
    filler: 0,
    options: { ...o, numQueries },
    batch(step: number, batchSize: number): LmBatch {
      checkInteger(`${owner}.batch`, "step", step);
      checkInteger(`${owner}.batch`, "batchSize", batchSize, { min: 1 });
      const inputs = new Int32Array(batchSize * L); // [batch, seqLen]
      const targets = new Int32Array(batchSize * L); // [batch, seqLen]
      const mask = new Float32Array(batchSize * L); // [batch, seqLen]
      for (let r = 0; r < batchSize; r++) fill(step * batchSize + r, inputs, targets, mask, r);
      return { kind: "lm", inputs, targets, mask, batch: batchSize, length: L };
    },
  };
}
