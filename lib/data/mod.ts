/**
 * The data layer: real text (State of the Union bytes, WikiText-103, your own UTF-8 files with
 * `loadTextCorpus`), synthetic probes (MQAR, ListOps, copying) and deterministic language-model batching.
 *
 * ```ts
 * import { lmSampler, loadSotu, mqarTask } from "./mod.ts";
 * const sotu = await loadSotu({ cache: false });
 * const train = lmSampler(sotu.splits.train, { batchSize: 2, seqLen: 16, seed: 0 });
 * console.log(train.batch(0).inputs.length, mqarTask().vocabSize); // 32 256
 * ```
 *
 * @module
 */

export * from "./types.ts";
export * from "./sotu.ts";
export * from "./batching.ts";
export * from "./mlm.ts";
export * from "./mqar.ts";
export * from "./listops.ts";
export * from "./copying.ts";
export * from "./zip.ts";
export * from "./wikitext.ts";
export * from "./text.ts";
