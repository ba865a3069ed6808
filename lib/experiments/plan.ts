/**
 * What training a scale's runs costs, worked out before any of it starts: each run's parameters, training tokens
 * (and tokens per parameter), how often it reads the corpus's training split, and its FLOPs; then, from two timed
 * updates of one run on this machine, how long the whole plan would take. `deno task train --dry-run` prints it and
 * stops; `deno task train --scale large` and `deno task reproduce --scale large` print it before they start.
 *
 * FLOPs are matmul FLOPs as `modelFlops` (lib/bench/train_step.ts) counts them: a training update is its `step`
 * count on the recipe's batch, the score-gradient probe a second forward and backward on `probeRows` rows every
 * `probeEvery` updates, and validation a forward pass over `validBatches` batches every `validEvery` updates.
 *
 * @module
 */

import type { Scale } from "../env.ts";
import { modelFlops, trainStepTimer } from "../bench/train_step.ts";
import type { ByteCorpus } from "../data/sotu.ts";
import { createModel, parameterCount } from "../models/model.ts";
import type { LanguageModelRun } from "../models/pretrained.ts";

/** The cost of one run (see {@linkcode runCost}). */
export interface RunCost {
  name: string;
  /** Trainable scalars of the run's model. */
  parameters: number;
  /** Training tokens: updates × batch × sequence length. */
  tokens: number;
  /** `tokens / parameters`. */
  tokensPerParameter: number;
  /** How many times the run reads the training split: `tokens` over the split's bytes. */
  corpusRepeats: number;
  /** Matmul FLOPs of training, probe and validation included. */
  flops: number;
}

/**
 * The cost of one run: parameters from its config, tokens from its recipe, FLOPs as the module says.
 *
 * @example
 * ```ts
 * import { languageModelRun } from "../models/pretrained.ts";
 * import { runCost } from "./plan.ts";
 * const spec = await languageModelRun("vanilla", { scale: "quick" });
 * const cost = runCost(spec);
 * console.log(cost.tokens === 6 * 2 * 32, cost.flops > 0); // true true
 * ```
 */
export function runCost(spec: LanguageModelRun): RunCost {
  const { recipe, config } = spec;
  const parameters = parameterCount(config);
  const tokens = recipe.steps * recipe.batchSize * recipe.seqLen;
  const n = recipe.seqLen;
  const train = recipe.steps * modelFlops(config, { batch: recipe.batchSize, n }).step;
  const probes = recipe.probeEvery === null ? 0 : Math.ceil(recipe.steps / recipe.probeEvery) *
    modelFlops(config, { batch: Math.min(recipe.probeRows, recipe.batchSize), n }).step;
  const validations = Math.floor(recipe.steps / recipe.validEvery) + 1;
  const valid = validations * recipe.validBatches * modelFlops(config, { batch: recipe.batchSize, n }).fwd;
  return {
    name: spec.name,
    parameters,
    tokens,
    tokensPerParameter: tokens / parameters,
    corpusRepeats: tokens / spec.corpus.splits.train.length,
    flops: train + probes + valid,
  };
}

/** A scale's plan (see {@linkcode scalePlan}). */
export interface ScalePlan {
  scale: Scale;
  runs: RunCost[];
  /** Bytes in the corpus's training split. */
  trainBytes: number;
  /** Sum of every run's FLOPs. */
  flops: number;
  /** Sum of every run's training tokens. */
  tokens: number;
}

/**
 * The costs of a scale's runs (their specs from `runSpec`) and their sum.
 *
 * @example
 * ```ts
 * import { languageModelRun } from "../models/pretrained.ts";
 * import { scalePlan } from "./plan.ts";
 * const spec = await languageModelRun("vanilla", { scale: "quick" });
 * const plan = scalePlan([spec, spec], { scale: "quick" });
 * console.log(plan.runs.length, plan.flops === 2 * plan.runs[0].flops); // 2 true
 * ```
 */
export function scalePlan(specs: readonly LanguageModelRun[], options: { scale: Scale }): ScalePlan {
  const runs = specs.map(runCost);
  const corpus: ByteCorpus | undefined = specs[0]?.corpus;
  return {
    scale: options.scale,
    runs,
    trainBytes: corpus?.splits.train.length ?? 0,
    flops: runs.reduce((sum, r) => sum + r.flops, 0),
    tokens: runs.reduce((sum, r) => sum + r.tokens, 0),
  };
}

/** What {@linkcode timeUpdates} measured. */
export interface UpdateTiming {
  /** The run timed. */
  name: string;
  /** Seconds of each timed update, in order (the first includes the backend's warm-up). */
  seconds: number[];
  /** Matmul FLOPs of one update (`modelFlops(...).step`). */
  flopsPerUpdate: number;
  /** FLOPs per second of the fastest update. */
  flopsPerSecond: number;
}

/**
 * Times `updates` (default 2) training updates of a run's model on its first batches, with the training loop's
 * update (loss, gradients, Adam; `trainStepTimer`), and the FLOP rate of the fastest. The model is built, updated and
 * disposed here; nothing is written.
 *
 * @example
 * ```ts
 * import { languageModelRun } from "../models/pretrained.ts";
 * import { timeUpdates } from "./plan.ts";
 * const spec = await languageModelRun("vanilla", { scale: "quick", log: null });
 * const t = await timeUpdates(spec);
 * console.log(t.seconds.length, t.flopsPerSecond > 0); // 2 true
 * ```
 */
export async function timeUpdates(spec: LanguageModelRun, options: { updates?: number } = {}): Promise<UpdateTiming> {
  const updates = options.updates ?? 2;
  if (!Number.isInteger(updates) || updates < 1) {
    throw new RangeError(`timeUpdates: options.updates must be a whole number >= 1, got ${String(updates)}`);
  }
  const model = createModel(spec.config, { log: () => {} });
  const timer = trainStepTimer(model);
  const seconds: number[] = [];
  try {
    for (let i = 0; i < updates; i++) {
      const batch = spec.options.batchAt(i);
      const start = performance.now();
      // The step's awaited read waits for the update to finish on asynchronous backends.
      await timer.step(batch);
      seconds.push((performance.now() - start) / 1000);
    }
  } finally {
    timer.dispose();
    model.dispose();
  }
  const { recipe, config } = spec;
  const flopsPerUpdate = modelFlops(config, { batch: recipe.batchSize, n: recipe.seqLen }).step;
  return { name: spec.name, seconds, flopsPerUpdate, flopsPerSecond: flopsPerUpdate / Math.min(...seconds) };
}

/**
 * A number in engineering notation with two significant digits, e.g. `2.8e17`.
 *
 * @example
 * ```ts
 * import { formatCount } from "./plan.ts";
 * console.log(formatCount(283_000_000_000_000_000), formatCount(4_785_664)); // 2.8e17 4.8e6
 * ```
 */
export function formatCount(value: number): string {
  return value.toExponential(1).replace("e+", "e");
}

/**
 * The plan as lines for people: runs, parameters, tokens per parameter, corpus repeats, FLOPs, and with a timing the
 * time it would take at the measured rate, one run at a time.
 *
 * @example
 * ```ts
 * import { languageModelRun } from "../models/pretrained.ts";
 * import { describePlan, scalePlan } from "./plan.ts";
 * const spec = await languageModelRun("vanilla", { scale: "quick" });
 * console.log(describePlan(scalePlan([spec], { scale: "quick" }))[0]); // scale quick: 1 run(s), …
 * ```
 */
export function describePlan(plan: ScalePlan, timing?: UpdateTiming): string[] {
  if (plan.runs.length === 0) return [`scale ${plan.scale}: no runs`];
  const params = plan.runs.map((r) => r.parameters);
  const perParam = plan.runs.map((r) => r.tokensPerParameter);
  const repeats = plan.runs.map((r) => r.corpusRepeats);
  const range = (xs: number[], digits: number) => {
    const lo = Math.min(...xs).toFixed(digits), hi = Math.max(...xs).toFixed(digits);
    return lo === hi ? lo : `${lo}–${hi}`;
  };
  const lines = [
    `scale ${plan.scale}: ${plan.runs.length} run(s), ${range(params.map((p) => p / 1e6), 2)}M parameters each, ` +
    `${formatCount(plan.tokens)} training tokens in all`,
    `  tokens per parameter: ${range(perParam, 1)}; corpus: the training split (${
      (plan.trainBytes / 1e6).toFixed(2)
    }M bytes) is read ${range(repeats, 1)}× per run`,
    `  training FLOPs (matmul, probe and validation included): ${formatCount(plan.flops)}`,
  ];
  if (timing !== undefined) {
    const hours = plan.flops / timing.flopsPerSecond / 3600;
    lines.push(
      `  timing: ${timing.seconds.length} updates of ${timing.name}: ${
        timing.seconds.map((s) => `${s.toFixed(2)} s`).join(", ")
      } ` +
        `(${formatCount(timing.flopsPerSecond)} FLOP/s at the fastest)`,
      `  estimate: ≈${hours < 48 ? `${hours.toFixed(1)} h` : `${(hours / 24).toFixed(1)} days`} ` +
        `at that rate, one run at a time`,
    );
  }
  return lines;
}
