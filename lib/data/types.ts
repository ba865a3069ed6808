/**
 * The batch types shared by the data layer, the models and the training loop, and the
 * seeding, hashing and sampling helpers of the data modules.
 *
 * @module
 */

import { checkInteger, checkOptionKeys } from "../_options.ts";

/**
 * Language modelling: predict `targets[i]` from `inputs[..i]`, or, for a masked language model (task "mlm", batches
 * from lib/data/mlm.ts), from all of `inputs`, scoring the positions `mask` marks. Row-major `[batch, length]`.
 *
 * @example
 * ```ts
 * import type { LmBatch } from "./types.ts";
 * const b: LmBatch = { kind: "lm", inputs: new Int32Array([1, 2]), targets: new Int32Array([2, 3]), batch: 1, length: 2 };
 * console.log(b.inputs.length === b.batch * b.length);
 * ```
 */
export interface LmBatch {
  kind: "lm";
  inputs: Int32Array;
  targets: Int32Array;
  batch: number;
  length: number;
  /** 1 where the target counts in the loss; absent = all count */
  mask?: Float32Array;
}

/**
 * Sequence classification. inputs row-major `[batch, length]`; labels `[batch]`; pad id in `pad`.
 *
 * @example
 * ```ts
 * import type { ClassBatch } from "./types.ts";
 * const b: ClassBatch = {
 *   kind: "cls", inputs: new Int32Array([3, 4, 0]), labels: new Int32Array([7]),
 *   batch: 1, length: 3, numClasses: 10, pad: 0,
 * };
 * console.log(b.labels.length === b.batch);
 * ```
 */
export interface ClassBatch {
  kind: "cls";
  inputs: Int32Array;
  labels: Int32Array;
  batch: number;
  length: number;
  numClasses: number;
  pad: number;
}

/**
 * A synthetic task: example `i` is a pure function of `(seed, i)`, and
 * `batch(step, batchSize)` holds examples `step * batchSize ..< (step + 1) * batchSize`,
 * so a resumed run sees exactly the batches it would have seen.
 *
 * @example
 * ```ts
 * import type { LmBatch, SyntheticTask } from "./types.ts";
 * const task: SyntheticTask<LmBatch> = {
 *   name: "ones", vocabSize: 2, length: 1,
 *   batch: (_step, size) => ({
 *     kind: "lm", inputs: new Int32Array(size).fill(1), targets: new Int32Array(size).fill(1), batch: size, length: 1,
 *   }),
 * };
 * console.log(task.batch(0, 3).batch); // 3
 * ```
 */
export interface SyntheticTask<B extends LmBatch | ClassBatch> {
  /** Task name, for manifests. */
  readonly name: string;
  /** Token ids lie in [0, vocabSize). */
  readonly vocabSize: number;
  /** The sequence length of every batch. */
  readonly length: number;
  /** The batch at `step` of `batchSize` examples; a pure function of (seed, step, batchSize). */
  batch(step: number, batchSize: number): B;
}

/**
 * A 32-bit seed for example `index` of the stream seeded by `seed`: a murmur3-style mix of both,
 * so neighbouring seeds and indices give unrelated generators.
 *
 * @example
 * ```ts
 * import { mixSeed } from "./types.ts";
 * console.log(mixSeed(1, 2) === mixSeed(1, 2), mixSeed(1, 2) !== mixSeed(2, 1)); // true true
 * ```
 */
export function mixSeed(seed: number, index: number): number {
  let h = fmix(seed >>> 0 ^ 0x9e3779b9);
  // index may exceed 2^32 (step * batchSize); fold in both halves.
  h = fmix(h ^ (index >>> 0));
  h = fmix(h ^ Math.floor(index / 4294967296));
  return h >>> 0;
}

function fmix(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Lowercase hexadecimal SHA-256 of `bytes`.
 *
 * @example
 * ```ts
 * import { sha256Hex } from "./types.ts";
 * console.log(await sha256Hex(new Uint8Array())); // e3b0c442...b855
 * ```
 */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * `count` distinct integers from [0, population), in random order (partial Fisher-Yates).
 *
 * @example
 * ```ts
 * import { seededUniform } from "../random.ts";
 * import { sampleDistinct } from "./types.ts";
 * const picks = sampleDistinct(seededUniform(3), { population: 10, count: 4 });
 * console.log(new Set(picks).size); // 4
 * ```
 */
export function sampleDistinct(uniform: () => number, options: { population: number; count: number }): number[] {
  if (options === undefined) {
    throw new TypeError("sampleDistinct: options must be an object { population, count }, got undefined");
  }
  checkOptionKeys("sampleDistinct", options, ["population", "count"]);
  const { population, count } = options;
  checkInteger("sampleDistinct", "population", population);
  checkInteger("sampleDistinct", "count", count);
  if (count > population) {
    throw new RangeError(`sampleDistinct: count (${count}) must be <= population (${population})`);
  }
  const pool = Array.from({ length: population }, (_, i) => i);
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(uniform() * (population - i));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, count);
}
