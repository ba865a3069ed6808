/**
 * The runs the notebooks need, declared ahead of them: each group of trained models registers
 * itself here with the notebooks that read it, so `deno task train` (and `deno task reproduce`,
 * before it executes any notebook) can train every missing run as its own resumable job, and the
 * notebooks then load the same runs from the cache.
 *
 * A planned run is a language-model run of {@linkcode languageModelRun}: its architecture and the
 * options the notebook passes. The notebook and the task build it the same way, so they agree
 * on the run's hash.
 *
 * @module
 */

import { join } from "node:path";
import type { ByteCorpus } from "../data/sotu.ts";
import type { Scale } from "../env.ts";
import { type LanguageModelRun, languageModelRun, type TrainedLanguageModelOptions } from "../models/pretrained.ts";
import type { ModelConfigInput } from "../models/config.ts";
import { CheckpointError, readCheckpointManifest } from "../train/checkpoint.ts";
import { DEFAULT_RUNS_DIR, runIdentity } from "../train/train.ts";

/** Options a planned run fixes; the runner adds the loop's own (progress, checkpoints, corpus). */
export type PlannedRunOptions = Omit<TrainedLanguageModelOptions, "corpus" | "progress" | "log" | "onStep">;

/** One run a notebook needs. */
export interface PlannedRun {
  /** The run's folder under the runs folder, e.g. `lm/vanilla`: the same name the notebook loads. */
  name: string;
  /** The group that declared it. */
  group: string;
  /** A preset name or a model config, as given to {@linkcode languageModelRun}. */
  architecture: string | ModelConfigInput;
  options: PlannedRunOptions;
}

/** A group of runs and the notebooks that read them. */
export interface RunGroup {
  /** Short name, used by `deno task train --only`. */
  name: string;
  /** One line for people. */
  description: string;
  /** Notebook name prefixes (e.g. `02_`) of the notebooks that load these runs. */
  notebooks: readonly string[];
  /** The runs at a scale (`true`/`false`: quick/full, as before scales had names). */
  runs(scale: Scale | boolean): PlannedRun[];
}

const GROUPS = new Map<string, RunGroup>();

/**
 * Adds a group of planned runs; a group's module calls this once, at load. Returns the group.
 *
 * @example
 * ```ts
 * import { registerRunGroup, runGroup } from "./registry.ts";
 * registerRunGroup({
 *   name: "demo-group", description: "one tiny model", notebooks: ["99_"],
 *   runs: (scale) => [{
 *     name: "demo/t2", group: "demo-group", architecture: "transnormer-t2",
 *     options: { quick: scale === true || scale === "quick" },
 *   }],
 * });
 * console.log(runGroup("demo-group").runs(true)[0].name); // demo/t2
 * ```
 */
export function registerRunGroup(group: RunGroup): RunGroup {
  if (GROUPS.has(group.name)) {
    throw new Error(`registerRunGroup: a run group named "${group.name}" is already registered`);
  }
  GROUPS.set(group.name, group);
  return group;
}

/**
 * Every registered group, in registration order.
 *
 * @example
 * ```ts
 * import { runGroups } from "./mod.ts";
 * console.log(runGroups().map((g) => g.name)); // ["lm", "ablation"]
 * ```
 */
export function runGroups(): RunGroup[] {
  return [...GROUPS.values()];
}

/**
 * The group called `name`; an unknown name is an Error listing the known ones.
 *
 * @example
 * ```ts
 * import { runGroup } from "./mod.ts";
 * console.log(runGroup("lm").notebooks);
 * ```
 */
export function runGroup(name: string): RunGroup {
  const group = GROUPS.get(name);
  if (!group) {
    throw new RangeError(
      `unknown run group "${name}"; the groups are ${
        [...GROUPS.keys()].join(", ") || "none (import lib/experiments/mod.ts)"
      }`,
    );
  }
  return group;
}

/**
 * The groups whose runs the given notebooks read (by file name prefix).
 *
 * @example
 * ```ts
 * import { groupsForNotebooks } from "./mod.ts";
 * console.log(groupsForNotebooks(["notebooks/00_tour.ipynb", "notebooks/05_ablations.ipynb"]).map((g) => g.name));
 * ```
 */
export function groupsForNotebooks(notebooks: readonly string[]): RunGroup[] {
  const names = notebooks.map((path) => path.split(/[\\/]/).at(-1) ?? path);
  return runGroups().filter((g) => g.notebooks.some((prefix) => names.some((n) => n.startsWith(prefix))));
}

/**
 * The scale option a planned run passes: `{ quick }` at quick and full scale, as before the large scale existed (so
 * those runs keep their options exactly), and `{ scale: "large" }` at large scale.
 *
 * @example
 * ```ts
 * import { scaleOption } from "./registry.ts";
 * console.log(scaleOption("full"), scaleOption("large")); // { quick: false } { scale: "large" }
 * ```
 */
export function scaleOption(scale: Scale): { quick: boolean } | { scale: "large" } {
  return scale === "large" ? { scale } : { quick: scale === "quick" };
}

/**
 * `options` without `quick` and `scale`: what a planned run's trainer adds to the run's own options once the run's
 * scale is fixed (so the run's scale option is the only one passed on).
 *
 * @example
 * ```ts
 * import { withoutScale } from "./registry.ts";
 * console.log(withoutScale({ quick: true, scale: "quick" as const, runsDir: "/tmp/runs" })); // { runsDir: "/tmp/runs" }
 * ```
 */
export function withoutScale<T extends { quick?: boolean; scale?: Scale }>(options: T): Omit<T, "quick" | "scale"> {
  const { quick: _quick, scale: _scale, ...rest } = options;
  return rest;
}

/** Loop options the runner adds to a planned run. */
export interface RunExtras {
  corpus?: ByteCorpus;
  runsDir?: string;
  checkpointEvery?: number | null;
  onStep?: TrainedLanguageModelOptions["onStep"];
  progress?: TrainedLanguageModelOptions["progress"];
  log?: TrainedLanguageModelOptions["log"];
}

/**
 * The trainable spec of a planned run (see {@linkcode languageModelRun}).
 *
 * @example
 * ```ts
 * import { runGroup, runSpec } from "./mod.ts";
 * const spec = await runSpec(runGroup("lm").runs(true)[0]);
 * console.log(spec.name); // lm-quick/vanilla
 * ```
 */
export function runSpec(run: PlannedRun, extras: RunExtras = {}): Promise<LanguageModelRun> {
  return languageModelRun(run.architecture, { ...run.options, ...extras });
}

/** Where a planned run stands in the runs folder. */
export type RunState =
  | { kind: "finished"; step: number }
  | { kind: "partial"; step: number; steps: number }
  | { kind: "missing" }
  | { kind: "stale"; reason: string };

/**
 * Whether a planned run is cached: `finished` (loads without training), `partial` (resumes from
 * its last checkpoint), `missing`, or `stale` (a checkpoint of another hash, or an unusable one:
 * it is trained again from scratch). Builds the model once to compute the run's hash.
 *
 * @example
 * ```ts
 * import { runGroup, runState } from "./mod.ts";
 * const runsDir = await Deno.makeTempDir();
 * console.log(await runState(runGroup("lm").runs(true)[0], { runsDir })); // { kind: "missing" }
 * await Deno.remove(runsDir, { recursive: true });
 * ```
 */
export async function runState(run: PlannedRun, extras: RunExtras = {}): Promise<RunState> {
  return specState(await runSpec(run, extras), extras.runsDir);
}

/**
 * {@linkcode runState} of a run whose spec is already built (`runsDir` default `data/runs`).
 *
 * @example
 * ```ts
 * import { runGroup, runSpec, specState } from "./mod.ts";
 * const runsDir = await Deno.makeTempDir();
 * const spec = await runSpec(runGroup("lm").runs(true)[0], { runsDir });
 * console.log(await specState(spec, runsDir)); // { kind: "missing" }
 * await Deno.remove(runsDir, { recursive: true });
 * ```
 */
export async function specState(spec: LanguageModelRun, runsDir?: string): Promise<RunState> {
  const { build, ...trainOptions } = spec.options;
  const model = build();
  let hash: string;
  try {
    hash = (await runIdentity(model, { ...trainOptions, name: spec.name })).hash;
  } finally {
    model.dispose();
  }
  const dir = join(runsDir ?? DEFAULT_RUNS_DIR, spec.name);
  let manifest;
  try {
    manifest = await readCheckpointManifest(dir);
  } catch (err) {
    if (!(err instanceof CheckpointError)) throw err;
    return { kind: "stale", reason: err.message };
  }
  if (manifest === null) return { kind: "missing" };
  if (manifest.hash !== hash) {
    return { kind: "stale", reason: `trained with hash ${manifest.hash.slice(0, 8)}…, now ${hash.slice(0, 8)}…` };
  }
  return manifest.finished
    ? { kind: "finished", step: manifest.step }
    : { kind: "partial", step: manifest.step, steps: manifest.steps };
}
