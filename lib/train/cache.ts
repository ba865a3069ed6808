/**
 * Trained-model cache: train a run once, and load its finished checkpoint on later calls with the same hash.
 * The hash covers the model config, the options that change the result and the code that trains it
 * (`trainingCodeHash`: `lib/attention`, `lib/models`, `lib/train`, `lib/data`, `lib/random.ts`), so a change
 * to any of them retrains instead of loading a stale model.
 *
 * @module
 */

import { join, relative } from "node:path";
import { REPO_ROOT } from "../env.ts";
import { CheckpointError, loadCheckpoint, readCheckpointManifest } from "./checkpoint.ts";
import { describeValue } from "../_options.ts";
import { checkRunDir } from "./_run_dir.ts";
import {
  DEFAULT_RUNS_DIR,
  resolveTrainingOptions,
  restoreWeights,
  runIdentity,
  train,
  type TrainOptions,
  type TrainResult,
} from "./train.ts";
import type { Trainable } from "./types.ts";

/** Options of {@linkcode trainCached}: a model builder plus {@linkcode TrainOptions} (without name and resume). */
export interface TrainCachedOptions<B, M extends Trainable<B>> extends Omit<TrainOptions<B>, "name" | "resume"> {
  /** Builds a fresh model (initialised from its own seed); called once per trainCached call. */
  build: () => M;
}

/** What {@linkcode trainCached} did. */
export type CacheAction = "reused" | "resumed" | "trained" | "retrained";

/** What {@linkcode trainCached} returns: the model (the caller disposes its variables), the run and what was done. */
export interface TrainCachedResult<M> {
  model: M;
  result: TrainResult;
  action: CacheAction;
}

function shortPath(dir: string): string {
  const rel = relative(REPO_ROOT, dir);
  return rel.startsWith("..") ? dir : rel;
}

/**
 * Returns a trained model for run `name`: if `<runsDir>/<name>/` holds a finished checkpoint whose hash
 * (model config + options that change the result + the hash of the code that trains it, see `runIdentity`
 * and `trainingCodeHash`) matches, loads it without training;
 * if it holds an unfinished one with the same hash, resumes it; otherwise (none, another hash, or a
 * corrupt checkpoint) trains from scratch. Says which through `log`. The run folder must be writable: that is
 * checked first, before the model is built.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { trainCached } from "./cache.ts";
 * const runsDir = await Deno.makeTempDir();
 * const build = () => {
 *   const w = tf.variable(tf.tensor1d([2]));
 *   return { variables: { w }, config: { init: 2 }, loss: () => tf.sum(tf.square(w)) as tf.Scalar };
 * };
 * const options = { build, runsDir, steps: 3, lr: 0.1, batchAt: () => null, progress: "none" as const, log: null };
 * const first = await trainCached("demo", options);
 * const second = await trainCached("demo", options);
 * console.log(first.action, second.action); // trained reused
 * first.model.variables.w.dispose();
 * second.model.variables.w.dispose();
 * await Deno.remove(runsDir, { recursive: true });
 * ```
 */
export async function trainCached<B, M extends Trainable<B>>(
  name: string,
  options: TrainCachedOptions<B, M>,
): Promise<TrainCachedResult<M>> {
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `trainCached: options must be an object with build, steps and batchAt, got ${describeValue(options)}`,
    );
  }
  const { build, ...rest } = options;
  if (typeof build !== "function") {
    throw new TypeError(`trainCached: option build must be a function () => Trainable, got ${describeValue(build)}`);
  }
  for (const key of ["name", "resume"]) {
    if (key in rest) throw new TypeError(`trainCached: option ${key} is not accepted; the name is the first argument`);
  }
  const trainOptions: TrainOptions<B> = { ...rest, name };
  const o = resolveTrainingOptions("trainCached", trainOptions);
  const log = o.log ?? (() => {});
  const runsDir = o.runsDir ?? DEFAULT_RUNS_DIR;
  const dir = join(runsDir, name);
  const where = shortPath(dir);
  await checkRunDir("trainCached", { runsDir, dir });
  const model = build();
  if (model !== null && typeof (model as { then?: unknown }).then === "function") {
    throw new TypeError(
      "trainCached: option build returned a Promise; it must build the model synchronously, e.g. " +
        "build: () => createModel(config)",
    );
  }
  try {
    const { hash } = await runIdentity(model, trainOptions);
    let manifestHash: string | null = null;
    let corrupt: string | null = null;
    let manifest = null;
    try {
      manifest = await readCheckpointManifest(dir);
      manifestHash = manifest?.hash ?? null;
    } catch (err) {
      if (!(err instanceof CheckpointError)) throw err;
      corrupt = err.message;
    }
    if (manifest !== null && manifestHash === hash) {
      if (manifest.finished) {
        try {
          const checkpoint = await loadCheckpoint(dir);
          restoreWeights(model.variables, checkpoint!.weights);
          log(`reused ${where} (hash ${hash.slice(0, 8)}…, ${checkpoint!.manifest.step} steps)`);
          const logs = checkpoint!.logs;
          const result: TrainResult = {
            name,
            dir,
            hash,
            step: checkpoint!.manifest.step,
            steps: checkpoint!.manifest.steps,
            finished: true,
            stopped: null,
            logs,
          };
          return { model, result, action: "reused" };
        } catch (err) {
          if (!(err instanceof CheckpointError)) throw err;
          corrupt = err.message;
        }
      } else {
        log(`resuming ${where} from step ${manifest.step} of ${manifest.steps} (hash ${hash.slice(0, 8)}…)`);
        try {
          const result = await train(model, { ...trainOptions, resume: true });
          return { model, result, action: "resumed" };
        } catch (err) {
          if (!(err instanceof CheckpointError)) throw err;
          corrupt = err.message;
        }
      }
    }
    let action: CacheAction = "trained";
    if (corrupt !== null) {
      log(`${where}: checkpoint unusable (${corrupt}); retraining`);
      action = "retrained";
    } else if (manifest === null) {
      log(`training ${name}: no checkpoint in ${where}`);
    } else {
      log(`hash changed: retraining ${name} (was ${manifestHash!.slice(0, 8)}…, now ${hash.slice(0, 8)}…)`);
      action = "retrained";
    }
    const result = await train(model, { ...trainOptions, resume: false });
    return { model, result, action };
  } catch (err) {
    for (const w of Object.values(model.variables ?? {})) w.dispose();
    throw err;
  }
}
