/**
 * Copying: a random sequence, a separator, then the same sequence again; the model must
 * reproduce it, which needs exact retrieval from `copyLength` tokens back.
 *
 * Vocabulary layout for `vocabSize` V: 0 is padding (reserved, never emitted), 1 the
 * separator, 2 .. V - 1 the symbols to copy (uniform, with replacement).
 *
 * The full sequence is `x_1 .. x_L SEP x_1 .. x_L` (2L + 1 tokens, L = copyLength); a batch row
 * holds its first 2L tokens as inputs and the next-token targets. Targets before the separator
 * are 0 with mask 0; from the separator on, target `L + i` is `x_(i+1)` with mask 1.
 *
 * @module
 */

import { seededUniform } from "../random.ts";
import { type LmBatch, mixSeed, type SyntheticTask } from "./types.ts";
import { checkInteger, resolveOptions } from "../_options.ts";

/** Options for {@linkcode copyingTask}. */
export interface CopyingOptions {
  /** Symbols to copy (L). Default 32. */
  copyLength?: number;
  /** Default 16. */
  vocabSize?: number;
  /** Default 0. */
  seed?: number;
}

/** The copying task; batches have length 2 copyLength. */
export interface CopyingTask extends SyntheticTask<LmBatch> {
  readonly options: Readonly<Required<CopyingOptions>>;
  /** The separator id (1). */
  readonly separator: 1;
  /** The padding id (0). */
  readonly pad: 0;
}

/**
 * A copying task.
 *
 * @example
 * ```ts
 * import { copyingTask } from "./copying.ts";
 * const task = copyingTask({ copyLength: 4, seed: 2 });
 * const b = task.batch(0, 1);
 * console.log(b.length, b.inputs[4], b.targets[4] === b.inputs[0]); // 8 1 true
 * ```
 */
export function copyingTask(options?: CopyingOptions): CopyingTask {
  const owner = "copyingTask";
  const o = resolveOptions(owner, options, { copyLength: 32, vocabSize: 16, seed: 0 }, {
    copyLength: { type: "number", integer: true, min: 1 },
    vocabSize: { type: "number", integer: true, min: 3 },
    seed: { type: "number", integer: true, min: 0 },
  });
  const L = o.copyLength;
  const symbols = o.vocabSize - 2;
  return {
    name: "copying",
    vocabSize: o.vocabSize,
    length: 2 * L,
    separator: 1,
    pad: 0,
    options: o,
    batch(step: number, batchSize: number): LmBatch {
      checkInteger(`${owner}.batch`, "step", step);
      checkInteger(`${owner}.batch`, "batchSize", batchSize, { min: 1 });
      const n = 2 * L;
      const inputs = new Int32Array(batchSize * n); // [batch, 2L]
      const targets = new Int32Array(batchSize * n); // [batch, 2L]
      const mask = new Float32Array(batchSize * n); // [batch, 2L]
      for (let r = 0; r < batchSize; r++) {
        const uniform = seededUniform(mixSeed(o.seed, step * batchSize + r));
        const base = r * n;
        for (let i = 0; i < L; i++) {
          const x = 2 + Math.floor(uniform() * symbols);
          inputs[base + i] = x;
          // Input L + i is the separator (i = 0) or x_i; its next token, the target, is x_(i+1).
          if (i > 0) inputs[base + L + i] = inputs[base + i - 1];
          targets[base + L + i] = x;
          mask[base + L + i] = 1;
        }
        inputs[base + L] = 1;
      }
      return { kind: "lm", inputs, targets, mask, batch: batchSize, length: n };
    },
  };
}
