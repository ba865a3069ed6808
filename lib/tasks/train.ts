/**
 * `deno task train`: trains every run the notebooks need (see `lib/experiments`) that the run
 * cache does not hold yet, each in its own process, a few at a time, with one progress line and
 * an estimate of the time left. Runs checkpoint as they go, so an interrupted task resumes each
 * unfinished run from its last checkpoint. `deno task reproduce` runs this before the notebooks.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { initBackend } from "../backend.ts";
import { type Scale, scale as envScale, toScale } from "../env.ts";
import { type ByteCorpus, loadSotu } from "../data/sotu.ts";
import {
  describePlan,
  type PlannedRun,
  runGroup,
  runGroups,
  runSpec,
  type RunState,
  runState,
  scalePlan,
  specState,
  timeUpdates,
} from "../experiments/mod.ts";
import type { LanguageModelRun } from "../models/pretrained.ts";
import { trainCached } from "../train/cache.ts";
import { trackChild } from "../children.ts";
import { progress } from "../notebook/progress.ts";
import { forEachLine, formatSeconds } from "../notebook/runner.ts";
import { formatHelp, parseFlags, runMain } from "./cli.ts";

const FLAGS = {
  only: {
    type: "string",
    multiple: true,
    value: "GROUP",
    description: "train only this group of runs (lm, ablation, ablation-mlm); may be repeated",
  },
  jobs: { type: "string", value: "N", description: "runs trained at once (default: the number of cores)" },
  scale: {
    type: "string",
    value: "SCALE",
    description: "quick, full or large: the runs of that scale (default ATTNLAB_SCALE, else full)",
  },
  quick: { type: "boolean", description: "the quick-scale runs (as --scale quick or ATTNLAB_QUICK=1)" },
  "dry-run": {
    type: "boolean",
    description: "print the plan (FLOPs, corpus repeats, a time estimate from 2 timed updates), then stop",
  },
  list: { type: "boolean", description: "list the runs and whether each is cached, then stop" },
  "checkpoint-every": { type: "string", value: "STEPS", description: "checkpoint every STEPS updates (default 50)" },
  "runs-dir": { type: "string", value: "DIR", description: "the runs folder (default data/runs)" },
  worker: { type: "string", value: "RUN", description: "(internal) train one run in this process" },
  help: { type: "boolean", description: "show this help" },
} as const;

const DESCRIPTION = `Trains the runs that the notebooks load from data/runs/ and that are missing there,
each in its own process, N at a time. A run whose checkpoint has another hash is
trained again; an unfinished one resumes from its last checkpoint.`;

/** Worker progress lines on stdout start with this, followed by one JSON object. */
export const WORKER_EVENT = "@@attnlab-train ";

const SELF = fileURLToPath(import.meta.url);

/** Options of {@linkcode trainPlannedRuns}. */
export interface TrainPlannedOptions {
  /** Runs trained at once. Default: the number of cores. */
  jobs?: number;
  /** The runs' scale as a boolean (`true`: quick, `false`: full); see `scale`. */
  quick?: boolean;
  /** The runs' scale, passed to the workers; default from `quick`, else the environment's. */
  scale?: Scale;
  /** Updates between checkpoints. Default 50. */
  checkpointEvery?: number;
  /** The runs folder. Default `data/runs`. */
  runsDir?: string;
  /** Receives every message line. Default `console.log`. */
  log?: (line: string) => void;
}

/** What {@linkcode trainPlannedRuns} did with each run. */
export interface TrainedRunReport {
  name: string;
  /** The state before training. */
  before: RunState;
  status: "cached" | "trained" | "failed";
  seconds: number;
  /** Why it failed: the worker's last lines. */
  error?: string;
}

/**
 * Describes a run's cache state in a few words.
 *
 * @example
 * ```ts
 * import { describeState } from "./train.ts";
 * console.log(describeState({ kind: "partial", step: 100, steps: 600 })); // unfinished (100 of 600 steps)
 * ```
 */
export function describeState(state: RunState): string {
  switch (state.kind) {
    case "finished":
      return `cached (${state.step} steps)`;
    case "partial":
      return `unfinished (${state.step} of ${state.steps} steps)`;
    case "missing":
      return "not trained";
    case "stale":
      return `stale: ${state.reason}`;
  }
}

/**
 * Reads a worker's progress event from one line of its output, or null for any other line.
 *
 * @example
 * ```ts
 * import { parseWorkerEvent, WORKER_EVENT } from "./train.ts";
 * console.log(parseWorkerEvent(`${WORKER_EVENT}{"step":4,"steps":10}`), parseWorkerEvent("hello")); // { step: 4, steps: 10 } null
 * ```
 */
export function parseWorkerEvent(line: string): { step: number; steps: number } | null {
  if (!line.startsWith(WORKER_EVENT)) return null;
  const event = JSON.parse(line.slice(WORKER_EVENT.length));
  return { step: Number(event.step), steps: Number(event.steps) };
}

/**
 * Trains the given runs that are not cached, `jobs` at a time, each in a child process
 * (`train.ts --worker NAME`), with one progress line over all of them. Never throws for a run
 * that fails: its report says why.
 *
 * @example
 * ```ts
 * import { trainPlannedRuns } from "./train.ts";
 * console.log(await trainPlannedRuns([], { scale: "quick" })); // []
 * ```
 */
export async function trainPlannedRuns(
  runs: readonly PlannedRun[],
  options: TrainPlannedOptions = {},
): Promise<TrainedRunReport[]> {
  const log = options.log ?? console.log;
  const scale = options.scale ??
    (options.quick !== undefined ? toScale(options.quick, "trainPlannedRuns: options.quick") : envScale());
  const jobs = Math.max(1, options.jobs ?? navigator.hardwareConcurrency ?? 1);
  if (runs.length === 0) return [];
  // Load (and cache) the corpus once here, so the workers never race to build the data cache.
  const corpus = await loadSotu();
  await initBackend({ quiet: true });
  const runsDir = options.runsDir;
  const specs: LanguageModelRun[] = [];
  const states: RunState[] = [];
  for (const run of runs) {
    const spec = await runSpec(run, { corpus, runsDir });
    specs.push(spec);
    states.push(await specState(spec, runsDir));
  }
  const reports: TrainedRunReport[] = runs.map((run, i) => ({
    name: run.name,
    before: states[i],
    status: "cached",
    seconds: 0,
  }));
  const todo = runs.map((run, i) => ({ run, i })).filter(({ i }) => states[i].kind !== "finished");
  log(`train: ${runs.length} run(s), ${runs.length - todo.length} cached, ${todo.length} to train, ${jobs} at a time`);
  if (todo.length === 0) return reports;

  // The bar counts work, not steps, so its time left is right across runs of unequal cost: a step
  // costs its batch's tokens, twice when the score-gradient probe (a second pass) runs at that step.
  const costs = todo.map(({ i }) => {
    const { recipe } = specs[i];
    const probe = recipe.probeEvery === null ? 0 : 1 / recipe.probeEvery;
    // In units of 1024 token-passes, at least 1 per step.
    return {
      steps: recipe.steps,
      perStep: Math.max(1, Math.round(recipe.batchSize * recipe.seqLen * (1 + probe) / 1024)),
    };
  });
  const total = todo.reduce((sum, { i }, j) => {
    const s = states[i];
    return sum + costs[j].perStep * (costs[j].steps - (s.kind === "partial" ? s.step : 0));
  }, 0);
  const bar = progress({ total, label: "train (work)", plainIntervalSeconds: 30 });
  const current = new Map<string, string>();
  let finished = 0;
  const runOne = async (run: PlannedRun, i: number, perStep: number) => {
    const started = performance.now();
    const before = states[i];
    let last = before.kind === "partial" ? before.step : 0;
    const tail: string[] = [];
    const args = ["run", "-A", SELF, "--worker", run.name, "--scale", scale];
    if (options.checkpointEvery) args.push("--checkpoint-every", String(options.checkpointEvery));
    if (runsDir) args.push("--runs-dir", runsDir);
    const child = new Deno.Command(Deno.execPath(), {
      args,
      // One BLAS thread per worker when several share the cores.
      env: { NO_COLOR: "1", ...(jobs > 1 ? { OPENBLAS_NUM_THREADS: "1" } : {}) },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const untrack = trackChild(child);
    const keep = (line: string) => {
      if (!line.trim()) return;
      tail.push(line);
      if (tail.length > 12) tail.shift();
    };
    const [status] = await Promise.all([
      child.status,
      forEachLine(child.stdout, (line) => {
        const event = parseWorkerEvent(line);
        if (event === null) return keep(line);
        const done = event.step + 1;
        current.set(run.name, `${done}/${event.steps}`);
        if (done > last) {
          bar.tick(perStep * (done - last), {
            runs: `${finished}/${todo.length} done`,
            running: [...current].map(([n, s]) => `${n} ${s}`).join(", "),
          });
        }
        last = Math.max(last, done);
      }),
      forEachLine(child.stderr, keep),
    ]);
    untrack();
    current.delete(run.name);
    const seconds = (performance.now() - started) / 1000;
    finished++;
    if (status.success) {
      reports[i] = { ...reports[i], status: "trained", seconds };
      log(`train: ${run.name} trained in ${formatSeconds(seconds)} [${finished}/${todo.length}]`);
    } else {
      reports[i] = { ...reports[i], status: "failed", seconds, error: tail.join("\n") };
      log(`train: ${run.name} FAILED (exit ${status.code}) [${finished}/${todo.length}]\n    ${tail.join("\n    ")}`);
    }
  };
  const queue = todo.map((t, j) => ({ ...t, perStep: costs[j].perStep }));
  await Promise.all(Array.from({ length: Math.min(jobs, queue.length) }, async () => {
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
      await runOne(next.run, next.i, next.perStep);
    }
  }));
  await bar.done({ runs: `${finished}/${todo.length} done`, running: "none" });
  return reports;
}

/**
 * The planned runs of the groups named (all groups when none), at a scale (`true`/`false`: quick/full).
 *
 * @example
 * ```ts
 * import { selectRuns } from "./train.ts";
 * console.log(selectRuns(["lm"], false).length, selectRuns(["lm"], "large")[0].name); // 18 lm-large/vanilla/seed0
 * ```
 */
export function selectRuns(groups: readonly string[], scale: Scale | boolean): PlannedRun[] {
  const picked = groups.length > 0 ? groups.flatMap((g) => g.split(",")).map((g) => runGroup(g.trim())) : runGroups();
  return picked.flatMap((g) => g.runs(scale));
}

/**
 * Reads the task's scale: `--scale` (quick, full or large), `--quick`, or the environment's (`ATTNLAB_SCALE`,
 * `ATTNLAB_QUICK`). A `--scale` other than those three, or one that contradicts `--quick`, is a RangeError.
 *
 * @example
 * ```ts
 * import { scaleFlag } from "./train.ts";
 * console.log(scaleFlag("large", false, "train"), scaleFlag(undefined, true, "train")); // large quick
 * ```
 */
export function scaleFlag(value: string | undefined, quick: boolean, command: string): Scale {
  if (value === undefined) return quick ? "quick" : envScale();
  const scale = toScale(value as Scale, `${command}: --scale`);
  if (quick && scale !== "quick") {
    throw new RangeError(`${command}: --quick asks for quick scale but --scale ${scale}; give only one of them`);
  }
  return scale;
}

/** Options of {@linkcode printPlan}. */
export interface PrintPlanOptions {
  corpus?: ByteCorpus;
  runsDir?: string;
  /** Receives every line. Default `console.log`. */
  log?: (line: string) => void;
}

/**
 * Prints what training `runs` at `scale` takes, before any of it starts: runs, parameters, tokens per parameter,
 * corpus repeats, FLOPs, and a time estimate from 2 timed updates of the first run not yet cached (of the first run
 * when all are). Returns the lines.
 *
 * @example
 * ```ts
 * import { printPlan, selectRuns } from "./train.ts";
 * const lines = await printPlan(selectRuns(["lm"], "quick").slice(0, 1), "quick", { log: () => {} });
 * console.log(lines[0]); // train: scale quick: 1 run(s), …
 * ```
 */
export async function printPlan(
  runs: readonly PlannedRun[],
  scale: Scale,
  options: PrintPlanOptions = {},
): Promise<string[]> {
  const log = options.log ?? console.log;
  const corpus = options.corpus ?? await loadSotu();
  await initBackend({ quiet: true });
  const specs: LanguageModelRun[] = [];
  for (const run of runs) specs.push(await runSpec(run, { corpus, runsDir: options.runsDir, log: null }));
  let timed = specs[0];
  for (const spec of specs) {
    if ((await specState(spec, options.runsDir)).kind !== "finished") {
      timed = spec;
      break;
    }
  }
  const timing = timed === undefined ? undefined : await timeUpdates(timed);
  const lines = describePlan(scalePlan(specs, { scale }), timing).map((line) => `train: ${line}`);
  for (const line of lines) log(line);
  return lines;
}

async function worker(name: string, scale: Scale, checkpointEvery: number, runsDir?: string): Promise<number> {
  await initBackend();
  const run = runGroups().flatMap((g) => g.runs(scale)).find((r) => r.name === name);
  if (!run) throw new RangeError(`train --worker: no planned run named "${name}"; see deno task train --list`);
  const spec = await runSpec(run, {
    checkpointEvery,
    ...(runsDir ? { runsDir } : {}),
    progress: "none",
    log: (line) => console.error(line),
    onStep: (info) => console.log(`${WORKER_EVENT}${JSON.stringify({ step: info.step, steps: spec.recipe.steps })}`),
  });
  const { model, result } = await trainCached(spec.name, spec.options);
  model.dispose();
  if (result.stopped) {
    console.error(
      `${name}: stopped at step ${result.stopped.step}: ${result.stopped.reason} (${result.stopped.where})`,
    );
  }
  return 0;
}

/**
 * Reads a flag's whole-number value ≥ 1; anything else is a RangeError naming the flag.
 *
 * @example
 * ```ts
 * import { parseCount } from "./train.ts";
 * console.log(parseCount("2", "--jobs")); // 2
 * ```
 */
export function parseCount(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${flag} must be a whole number ≥ 1, got "${value}"`);
  return n;
}

/**
 * The task's entry point; returns the exit status.
 *
 * @example
 * ```ts
 * import { main } from "./train.ts";
 * console.log(await main(["--help"])); // 0
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const { values } = parseFlags(args, FLAGS, { command: "train" });
  if (values.help) {
    console.log(formatHelp("deno task train [flags]", DESCRIPTION, FLAGS));
    return 0;
  }
  const scale = scaleFlag(values.scale as string | undefined, Boolean(values.quick), "train");
  const checkpointEvery = values["checkpoint-every"]
    ? parseCount(values["checkpoint-every"] as string, "--checkpoint-every")
    : 50;
  const runsDir = values["runs-dir"] as string | undefined;
  if (values.worker) return await worker(values.worker as string, scale, checkpointEvery, runsDir);
  const runs = selectRuns((values.only as string[] | undefined) ?? [], scale);
  if (values.list) {
    const corpus = await loadSotu();
    await initBackend({ quiet: true });
    for (const run of runs) {
      console.log(`${run.name.padEnd(36)} ${describeState(await runState(run, { corpus, runsDir }))}`);
    }
    return 0;
  }
  const jobs = values.jobs ? parseCount(values.jobs as string, "--jobs") : undefined;
  // The large scale is meant for a GPU: say what it costs here before it starts.
  if (values["dry-run"] || scale === "large") await printPlan(runs, scale, { runsDir });
  if (values["dry-run"]) return 0;
  const reports = await trainPlannedRuns(runs, { jobs, scale, checkpointEvery, runsDir });
  const failed = reports.filter((r) => r.status === "failed");
  console.log(
    `train: ${reports.filter((r) => r.status === "trained").length} trained, ` +
      `${reports.filter((r) => r.status === "cached").length} cached, ${failed.length} failed`,
  );
  return failed.length > 0 ? 1 : 0;
}

if (import.meta.main) await runMain(main);
