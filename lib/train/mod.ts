/**
 * A generic training loop for any {@linkcode Trainable}: Adam (AdamW) with warmup, cosine decay and
 * global-norm clipping; per-step logs of the loss, learning rate and gradient norms per variable and per
 * layer; validation loss, perplexity and bits per byte; probes; checkpoints with exact resumption; a
 * stop on non-finite values; and a cache of trained runs keyed by a hash of the run. Its update, `trainStep`, is
 * exported for a loop of your own.
 *
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { train } from "./mod.ts";
 * const w = tf.variable(tf.tensor1d([1, -1]));
 * const model = { variables: { "blocks.0.w": w }, config: {}, loss: () => tf.sum(tf.square(w)) as tf.Scalar };
 * const result = await train(model, { steps: 3, lr: 0.1, batchAt: () => null, progress: "none", log: null });
 * console.log(result.logs.gradNorms[0]["blocks.0.*"].toFixed(3)); // 2.828
 * w.dispose();
 * ```
 *
 * @module
 */

export type { GradNormRow, NonFiniteStop, ProbeRow, Trainable, TrainLogs, TrainRow, ValidRow } from "./types.ts";
export {
  type Adam,
  adam,
  ADAM_DEFAULTS,
  type AdamOptions,
  type AdamState,
  type AdamStepInfo,
  clipByGlobalNorm,
  type Clipped,
  globalNorm,
  learningRate,
  type ResolvedAdamOptions,
  type Schedule,
  type ScheduleOptions,
  SCHEDULES,
  squaredNorms,
} from "./adam.ts";
export { variableGrads } from "./backprop.ts";
export {
  CHECKPOINT_FORMAT,
  CheckpointError,
  type CheckpointInput,
  type CheckpointManifest,
  type FileEntry,
  loadCheckpoint,
  type LoadedCheckpoint,
  MANIFEST_FILE,
  readCheckpointManifest,
  removeCheckpoint,
  saveCheckpoint,
  type TensorEntry,
} from "./checkpoint.ts";
export { canonicalJson, configHash, sha256Hex } from "./hash.ts";
export {
  DEFAULT_RUNS_DIR,
  LOG_FILES,
  type ProbeOptions,
  restoreWeights,
  type RunIdentity,
  runIdentity,
  scoredTargets,
  type StepInfo,
  train,
  TRAINING_SOURCES,
  trainingCodeHash,
  type TrainOptions,
  type TrainResult,
  trainStep,
  type TrainStepOptions,
  type TrainStepResult,
  type ValidationOptions,
  writeLogCsvs,
} from "./train.ts";
export { type CacheAction, trainCached, type TrainCachedOptions, type TrainCachedResult } from "./cache.ts";
