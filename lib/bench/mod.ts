/**
 * Benchmarks and scaling laws for the attention variants: FLOP counts, timing and peak memory of one
 * configuration, the sgemm peak, exponent fits (with intervals over interleaved rounds), crossover lengths,
 * the `deno task bench` driver, the log–log time and memory figures (`plots.ts`), per-layer scaling in
 * interleaved rounds (`scaling.ts`), decoding as an RNN (`rnn.ts`), whole-model training steps
 * (`train_step.ts`), the training-step benchmark against the PyTorch twin (`train_bench.ts`, `torch_twin.ts`,
 * `torch_model.py`: `deno task bench --train`), attention against its PyTorch twin in interleaved rounds
 * (`paired.ts`: `deno task bench --paired`) and a per-kernel profile of one step (`profile.ts`).
 *
 * ```ts
 * import { fitExponent, flopCount, measureAttention } from "./mod.ts"; // from a notebook: "../lib/bench/mod.ts"
 * const rows = [];
 * for (const n of [64, 128]) rows.push(await measureAttention({ variant: "linear", n, heads: 1, dk: 8, repeats: 1 }));
 * console.log(flopCount("linear", { batch: 1, heads: 1, n: 64, dk: 8 }).fwd > 0);
 * console.log(Number.isFinite(fitExponent(rows.map((m) => ({ x: m.n, y: m.fwdMs }))).exponent));
 * ```
 *
 * @module
 */

export { cpuDescription, deviceOf } from "./device.ts";
export { FLOP_VARIANTS, type FlopCount, flopCount, type FlopDims, performerFeatures } from "./flops.ts";
export {
  type Crossover,
  crossoverLength,
  type CrossoverOptions,
  type CrossoverRow,
  type ExponentBand,
  type ExponentFit,
  type ExponentInterval,
  exponentInterval,
  type ExponentsWithin,
  exponentsWithin,
  type ExtrapolateOptions,
  extrapolatePowerLaw,
  fitExponent,
  type Point,
  powerLawSum,
  type RoundSeries,
} from "./fit.ts";
export {
  type AttentionRuns,
  attentionRuns,
  measureAttention,
  type Measurement,
  type MeasureOptions,
  type SgemmPeak,
  sgemmPeak,
} from "./measure.ts";
export {
  type BenchConfig,
  type BenchResult,
  type BenchRow,
  checkBenchConfig,
  defaultBenchConfig,
  fasterTorchRows,
  formatBenchTable,
  runBench,
  type RunBenchOptions,
  SOFTMAX_LIVE_MATRICES,
  softmaxPlan,
  speedupNotes,
} from "./run.ts";
export {
  probeTorch,
  PYTHON,
  runTorchBench,
  TORCH_PACKAGES,
  TORCH_SCRIPT,
  type TorchBenchConfig,
  type TorchBenchResult,
  type TorchProbe,
  type TorchRow,
} from "./torch.ts";
export { type LogLogPlotOptions, memoryPlot, type PlotRow, timePlot } from "./plots.ts";
export {
  decodeTimes,
  decodeTimesAsync,
  type DecodeTimesOptions,
  type DecodeTiming,
  type DecodeTimingSpec,
  type Form,
  formAgreement,
  formAgreementAsync,
  type FormAgreementRow,
  type LayerOutputs,
  layerOutputs,
} from "./rnn.ts";
export { attentionScaling, type ScalingOptions, type ScalingRow, type ScalingSpec } from "./scaling.ts";
export {
  type ModelFlops,
  modelFlops,
  STEP_ADAM,
  type TrainStepRow,
  type TrainStepTimer,
  trainStepTimer,
  trainStepTimes,
  type TrainStepTimesOptions,
} from "./train_step.ts";
export {
  formatProfile,
  groupKernels,
  type KernelGroup,
  type KernelRecord,
  profileStep,
  type ProfileStepOptions,
  type StepProfile,
} from "./profile.ts";
export {
  type AttentionTwin,
  formatPairedTable,
  type PairedBenchOptions,
  type PairedBenchResult,
  type PairedBenchRow,
  pairedBenchRow,
  type PairedBenchRowInput,
  pairedVerdict,
  runPairedBench,
} from "./paired.ts";
export {
  fastestThreadCount,
  formatTrainBenchTable,
  runTrainBench,
  type TorchStatus,
  TRAIN_BENCH_CONFIG_NAMES,
  TRAIN_BENCH_CONFIGS,
  type TrainBenchConfigName,
  trainBenchModel,
  type TrainBenchOptions,
  type TrainBenchResult,
  type TrainBenchRow,
  trainBenchRow,
  type TrainBenchRowInput,
  type TrainBenchSample,
  type TrainBenchSpec,
  type TwinLike,
} from "./train_bench.ts";
export {
  type MlmBatch,
  TorchTwin,
  type TwinAttentionSpec,
  type TwinInfo,
  type TwinLoadOptions,
  type TwinStepTimes,
  twinVariableShapes,
} from "./torch_twin.ts";
