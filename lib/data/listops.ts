/**
 * ListOps-style nested expressions (as in Long Range Arena), for a bidirectional classifier:
 * the label is the value of the expression, a digit.
 *
 * Vocabulary layout (16 ids):
 *
 * | id     | token  | meaning                                          |
 * | ------ | ------ | ------------------------------------------------ |
 * | 0      | PAD    | padding after the expression                     |
 * | 1..10  | 0..9   | digit d is id d + 1                              |
 * | 11     | `[MAX` | largest argument                                 |
 * | 12     | `[MIN` | smallest argument                                |
 * | 13     | `[MED` | median; for an even count the floor of the mean of the two middle values |
 * | 14     | `[SM`  | sum modulo 10                                    |
 * | 15     | `]`    | closes the innermost operator                    |
 *
 * Generation: the root is an operator; every operator takes 2..maxArgs arguments (uniform);
 * an argument is a digit with probability `leafProbability` and always at depth `maxDepth`,
 * else an operator. Trees whose token count is not within [minLength, maxLength] are drawn again.
 *
 * @module
 */

import { seededUniform } from "../random.ts";
import { type ClassBatch, mixSeed, type SyntheticTask } from "./types.ts";
import { checkInteger, resolveOptions } from "../_options.ts";

/** The operators, in id order starting at {@linkcode LISTOPS_TOKENS}.MAX. */
export const LISTOPS_OPERATORS = ["MAX", "MIN", "MED", "SM"] as const;

/** One operator. */
export type ListOpsOperator = typeof LISTOPS_OPERATORS[number];

/** Token ids of the ListOps vocabulary. */
export const LISTOPS_TOKENS = { PAD: 0, DIGIT_0: 1, MAX: 11, MIN: 12, MED: 13, SM: 14, CLOSE: 15 } as const;

/** Vocabulary size of ListOps. */
export const LISTOPS_VOCAB_SIZE = 16;

/** An expression: a digit, or an operator applied to arguments. */
export type ListOpsTree = number | { op: ListOpsOperator; args: ListOpsTree[] };

/** Options for {@linkcode listOpsTask}. */
export interface ListOpsOptions {
  /** Deepest operator nesting; the root is depth 1. Default 6. */
  maxDepth?: number;
  /** Most arguments per operator (>= 2). Default 5. */
  maxArgs?: number;
  /** Padded sequence length, and the most tokens an expression may have. Default 128. */
  maxLength?: number;
  /** Fewest tokens an expression may have. Default 4. */
  minLength?: number;
  /** Probability that an argument below the root is a digit. Default 0.75. */
  leafProbability?: number;
  /** Default 0. */
  seed?: number;
}

/** The ListOps task; batches are ClassBatch with 10 classes, padded with 0 to maxLength. */
export interface ListOpsTask extends SyntheticTask<ClassBatch> {
  readonly options: Readonly<Required<ListOpsOptions>>;
  /** Example `index`: the tree, its tokens (unpadded) and its label. */
  example(index: number): { tree: ListOpsTree; tokens: number[]; label: number };
}

/**
 * The value of an expression (recursive).
 *
 * @example
 * ```ts
 * import { evaluateListOps } from "./listops.ts";
 * console.log(evaluateListOps({ op: "SM", args: [7, { op: "MAX", args: [2, 9] }] })); // 6
 * ```
 */
export function evaluateListOps(tree: ListOpsTree): number {
  if (typeof tree === "number") return tree;
  const values = tree.args.map(evaluateListOps);
  switch (tree.op) {
    case "MAX":
      return Math.max(...values);
    case "MIN":
      return Math.min(...values);
    case "MED": {
      const s = values.sort((a, b) => a - b);
      const m = s.length >> 1;
      return s.length % 2 === 1 ? s[m] : Math.floor((s[m - 1] + s[m]) / 2);
    }
    case "SM":
      return values.reduce((a, b) => a + b, 0) % 10;
  }
}

/**
 * The token ids of an expression, without padding.
 *
 * @example
 * ```ts
 * import { listOpsTokens } from "./listops.ts";
 * console.log(listOpsTokens({ op: "MAX", args: [2, 9] }).join(" ")); // 11 3 10 15
 * ```
 */
export function listOpsTokens(tree: ListOpsTree): number[] {
  const out: number[] = [];
  const walk = (t: ListOpsTree) => {
    if (typeof t === "number") {
      out.push(LISTOPS_TOKENS.DIGIT_0 + t);
      return;
    }
    out.push(LISTOPS_TOKENS[t.op]);
    t.args.forEach(walk);
    out.push(LISTOPS_TOKENS.CLOSE);
  };
  walk(tree);
  return out;
}

/**
 * Token ids as text, e.g. `[MAX 2 9 ]`; padding is dropped.
 *
 * @example
 * ```ts
 * import { formatListOps } from "./listops.ts";
 * console.log(formatListOps([11, 3, 10, 15, 0, 0])); // [MAX 2 9 ]
 * ```
 */
export function formatListOps(tokens: ArrayLike<number>): string {
  const words: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t === LISTOPS_TOKENS.PAD) continue;
    if (t >= 1 && t <= 10) words.push(String(t - 1));
    else if (t === LISTOPS_TOKENS.CLOSE) words.push("]");
    else if (t >= LISTOPS_TOKENS.MAX && t <= LISTOPS_TOKENS.SM) {
      words.push(`[${LISTOPS_OPERATORS[t - LISTOPS_TOKENS.MAX]}`);
    } else throw new Error(`formatListOps: token ${t} at position ${i} is not a ListOps id (0..15)`);
  }
  return words.join(" ");
}

/** Draws per expression before giving up on the length bounds. */
const MAX_ATTEMPTS = 10000;

/**
 * A ListOps task.
 *
 * @example
 * ```ts
 * import { evaluateListOps, listOpsTask } from "./listops.ts";
 * const task = listOpsTask({ maxLength: 32, seed: 1 });
 * const b = task.batch(0, 4);
 * const ex = task.example(0);
 * console.log(b.numClasses, b.labels[0] === evaluateListOps(ex.tree)); // 10 true
 * ```
 */
export function listOpsTask(options?: ListOpsOptions): ListOpsTask {
  const owner = "listOpsTask";
  const o = resolveOptions(
    owner,
    options,
    { maxDepth: 6, maxArgs: 5, maxLength: 128, minLength: 4, leafProbability: 0.75, seed: 0 },
    {
      maxDepth: { type: "number", integer: true, min: 1 },
      maxArgs: { type: "number", integer: true, min: 2 },
      maxLength: { type: "number", integer: true, min: 4 },
      minLength: { type: "number", integer: true, min: 4 },
      leafProbability: { type: "number", min: 0 },
      seed: { type: "number", integer: true, min: 0 },
    },
  );
  if (o.leafProbability > 1) throw new Error(`${owner}: option leafProbability must be <= 1, got ${o.leafProbability}`);
  if (o.minLength > o.maxLength) {
    throw new Error(`${owner}: minLength (${o.minLength}) must be <= maxLength (${o.maxLength})`);
  }

  const example = (index: number) => {
    checkInteger(`${owner}.example`, "index", index);
    const uniform = seededUniform(mixSeed(o.seed, index));
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const tree = draw(uniform, o);
      if (tree === null) continue;
      const tokens = listOpsTokens(tree);
      if (tokens.length >= o.minLength) return { tree, tokens, label: evaluateListOps(tree) };
    }
    throw new Error(
      `${owner}: no expression with ${o.minLength}..${o.maxLength} tokens in ${MAX_ATTEMPTS} draws; ` +
        `lower minLength, raise maxLength, or change leafProbability, maxArgs or maxDepth`,
    );
  };

  return {
    name: "listops",
    vocabSize: LISTOPS_VOCAB_SIZE,
    length: o.maxLength,
    options: o,
    example,
    batch(step: number, batchSize: number): ClassBatch {
      checkInteger(`${owner}.batch`, "step", step);
      checkInteger(`${owner}.batch`, "batchSize", batchSize, { min: 1 });
      const inputs = new Int32Array(batchSize * o.maxLength); // [batch, maxLength], 0 = PAD
      const labels = new Int32Array(batchSize); // [batch]
      for (let r = 0; r < batchSize; r++) {
        const ex = example(step * batchSize + r);
        inputs.set(ex.tokens, r * o.maxLength);
        labels[r] = ex.label;
      }
      return { kind: "cls", inputs, labels, batch: batchSize, length: o.maxLength, numClasses: 10, pad: 0 };
    },
  };
}

/** One random tree, or null as soon as it has more than maxLength tokens. */
function draw(
  uniform: () => number,
  o: { maxDepth: number; maxArgs: number; maxLength: number; leafProbability: number },
): ListOpsTree | null {
  let count = 0;
  const node = (depth: number): ListOpsTree | null => {
    if (depth > 1 && (depth > o.maxDepth || uniform() < o.leafProbability)) {
      count += 1;
      return Math.floor(uniform() * 10);
    }
    const op = LISTOPS_OPERATORS[Math.floor(uniform() * LISTOPS_OPERATORS.length)];
    const arity = 2 + Math.floor(uniform() * (o.maxArgs - 1));
    count += 2;
    const args: ListOpsTree[] = [];
    for (let i = 0; i < arity; i++) {
      if (count > o.maxLength) return null;
      const child = node(depth + 1);
      if (child === null) return null;
      args.push(child);
    }
    return count > o.maxLength ? null : { op, args };
  };
  return node(1);
}
