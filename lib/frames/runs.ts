/**
 * Training runs as DataFrames: the logs that `train()` writes into `<runsDir>/<name>/`
 * (`train.csv`, `valid.csv`, `grad_norms.csv`, `probes.csv`; see `lib/train/train.ts`).
 *
 * @module
 */

import pl from "nodejs-polars";
import type { DataFrame } from "nodejs-polars";
import { join, relative, sep } from "node:path";
import { DEFAULT_RUNS_DIR, LOG_FILES } from "../train/train.ts";
import type { TrainLogs } from "../train/types.ts";
import { csvToFrame } from "./_columns.ts";
import type { ColumnTypes } from "./_columns.ts";
import { isFolder } from "./_files.ts";
import { checkOptionKeys, describeValue } from "../_options.ts";
import { pathOption } from "./_options.ts";
import { show } from "./show.ts";

/** Which log of a run: `"train"` (one row per step), `"valid"`, `"gradNorms"` or `"probes"`. */
export type RunLog = keyof TrainLogs;

const LOGS = Object.keys(LOG_FILES) as RunLog[];

/** Options for {@linkcode runLogs}. */
export interface RunLogsOptions {
  /** The folder of runs. Default `data/runs` at the repository root (where `train()` writes). */
  runsDir?: string;
  /** Which log: `"train"` (default), `"valid"`, `"gradNorms"` or `"probes"`. */
  log?: RunLog;
}

/** Options for {@linkcode validationCurve}. */
export interface ValidationCurveOptions {
  /** The folder of runs. Default `data/runs` at the repository root. */
  runsDir?: string;
}

// Column types of each log (lib/train/types.ts): steps and token counts are integers, `clipped` is a
// boolean, every other column (losses, norms, probe values) a float, so that a column is typed the
// same in every run whatever its values.
const SCHEMAS: Readonly<Record<RunLog, ColumnTypes>> = {
  train: {
    types: { step: "int", clipped: "bool", tokens: "int" },
    otherColumns: "float",
    required: ["step", "loss"],
  },
  valid: { types: { step: "int" }, otherColumns: "float", required: ["step", "loss"] },
  gradNorms: { types: { step: "int" }, otherColumns: "float", required: ["step"] },
  probes: { types: { step: "int" }, otherColumns: "float", required: ["step"] },
};

// A run's name is its folder under runsDir: the rule train() applies, which also keeps it inside runsDir.
const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*(\/[A-Za-z0-9_][A-Za-z0-9._-]*)*$/;

function checkNames(owner: string, name: unknown): string[] {
  const names = typeof name === "string" ? [name] : name;
  if (!Array.isArray(names)) {
    throw new TypeError(
      `${owner}: name must be a run name like "lm/transnormer-t2" or an array of them, got ${
        describeValue(name, { typed: true })
      }`,
    );
  }
  if (names.length === 0) throw new RangeError(`${owner}: name is an empty array; give at least one run name`);
  names.forEach((n, i) => {
    const where = Array.isArray(name) ? `name[${i}]` : "name";
    if (typeof n !== "string") {
      throw new TypeError(
        `${owner}: ${where} must be a run name like "lm/transnormer-t2", got ${describeValue(n, { typed: true })}`,
      );
    }
    if (!NAME.test(n)) {
      throw new RangeError(
        `${owner}: ${where} ${JSON.stringify(n)} is not a run name: letters, digits, ".", "_" and "-", ` +
          `parts separated by "/", like "lm/transnormer-t2"`,
      );
    }
    if (names.indexOf(n) !== i) throw new RangeError(`${owner}: ${where} "${n}" is listed twice`);
  });
  return names as string[];
}

// The runs under runsDir that hold a train.csv, as names ("lm/vanilla"), sorted; at most `limit` folders deep.
async function findRuns(runsDir: string, limit = 4): Promise<string[]> {
  const found: string[] = [];
  async function walk(dir: string, depth: number): Promise<void> {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch {
      return;
    }
    if (entries.some((e) => e.isFile && e.name === LOG_FILES.train)) {
      found.push(relative(runsDir, dir).split(sep).join("/"));
    }
    if (depth >= limit) return;
    for (const e of entries) if (e.isDirectory) await walk(join(dir, e.name), depth + 1);
  }
  await walk(runsDir, 0);
  return found.filter((n) => n !== "").sort();
}

// What trains a run of this name, for the error when its logs are missing.
function producer(name: string): string {
  const [group, preset] = name.split("/");
  // The scale a group's suffix names, as the environment that selects it.
  const prefix = (base: string) =>
    group === `${base}-quick` ? "ATTNLAB_QUICK=1 " : group === `${base}-large` ? "ATTNLAB_SCALE=large " : "";
  if (["lm", "lm-quick", "lm-large"].includes(group) && preset !== undefined) {
    return `the shared language models are trained by notebooks 02, 03, 04 and 06: run ` +
      `\`${prefix("lm")}deno task reproduce --only 02\`, or trainedLanguageModel("${preset}") in a notebook`;
  }
  if (["ablation", "ablation-quick", "ablation-large"].includes(group)) {
    return `notebook 05 trains the ablation runs: run \`${prefix("ablation")}deno task reproduce --only 05\``;
  }
  return `train it first with train(model, { name: "${name}", ... }) from lib/train`;
}

async function readLog(owner: string, runsDir: string, name: string, log: RunLog): Promise<DataFrame> {
  const dir = join(runsDir, name);
  const path = join(dir, LOG_FILES[log]);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    if (!(await isFolder(dir))) {
      const runs = await findRuns(runsDir);
      const listed = runs.length === 0
        ? `${runsDir} holds no runs`
        : `runs in ${runsDir}: ${runs.slice(0, 12).join(", ")}${runs.length > 12 ? `, … (${runs.length})` : ""}`;
      throw new Error(`${owner}: no run "${name}": ${dir} does not exist (${listed}); ${producer(name)}`);
    }
    if (log !== "train") {
      // train.csv present: the run was trained without this log.
      const trained = await Deno.stat(join(dir, LOG_FILES.train)).then(() => true, () => false);
      if (trained) {
        const option = log === "valid" ? "validation" : log === "probes" ? "probe" : null;
        const why = option === null
          ? "the run logged no gradient norms"
          : `the run was trained without the ${option} option of train()`;
        throw new Error(`${owner}: run "${name}" has no ${LOG_FILES[log]} (${path} is missing): ${why}`);
      }
    }
    throw new Error(
      `${owner}: run "${name}" has no ${LOG_FILES[log]} yet (${path} is missing): train() writes its logs at ` +
        `each checkpoint and at the end; ${producer(name)}`,
    );
  }
  return csvToFrame(text, path, SCHEMAS[log]);
}

async function loadLogs(owner: string, name: unknown, log: RunLog, runsDirOption: unknown): Promise<DataFrame> {
  const names = checkNames(owner, name);
  const runsDir = pathOption(owner, "runsDir", runsDirOption, () => DEFAULT_RUNS_DIR);
  const frames: DataFrame[] = [];
  for (const n of names) frames.push(await readLog(owner, runsDir, n, log));
  if (typeof name === "string") return show(frames[0]);
  // Several runs: one frame with the run's name first; a column some runs lack is null in their rows.
  const tagged = frames.map((df, i) => df.select(pl.lit(names[i]).alias("run"), pl.all()));
  return show(pl.concat(tagged, { how: "diagonal" }));
}

/**
 * A run's training log as a DataFrame: one row per logged step, from `<runsDir>/<name>/train.csv`,
 * with columns `step` (Int64), `lr`, `loss`, `grad_norm` (Float64), `clipped` (Bool), `clip`,
 * `tokens`, `tokens_per_s`, `seconds`; missing values (no clipping, unknown token count) are `null`.
 * `options.log` picks another log: `"valid"`, `"gradNorms"` (a column per variable and layer) or
 * `"probes"`. An array of names gives one frame with a leading `run` column. A missing run or log is
 * an Error naming the path and what trains the run.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { runLogs } from "./runs.ts";
 * const runsDir = await Deno.makeTempDir();
 * await Deno.mkdir(join(runsDir, "demo"));
 * await Deno.writeTextFile(
 *   join(runsDir, "demo", "train.csv"),
 *   "step,lr,loss,grad_norm,clipped,clip,tokens,tokens_per_s,seconds\n" +
 *     "0,0.001,5.5,2.5,true,1,2048,10240,0.2\n1,0.002,5.25,0.5,false,1,2048,20480,0.1\n",
 * );
 * const df = await runLogs("demo", { runsDir });
 * console.log(df.height, df.getColumn("loss").toArray(), df.getColumn("clipped").toArray()); // 2 [5.5, 5.25] [true, false]
 * ```
 */
export async function runLogs(name: string | readonly string[], options: RunLogsOptions = {}): Promise<DataFrame> {
  const o = checkOptionKeys("runLogs", options, ["runsDir", "log"]);
  const log = o.log ?? "train";
  if (typeof log !== "string") {
    throw new TypeError(
      `runLogs: options.log must be one of ${LOGS.join(", ")}, got ${describeValue(log, { typed: true })}`,
    );
  }
  if (!LOGS.includes(log as RunLog)) {
    throw new RangeError(`runLogs: options.log must be one of ${LOGS.join(", ")}, got "${log}"`);
  }
  return await loadLogs("runLogs", name, log as RunLog, o.runsDir);
}

/**
 * A run's validation curve as a DataFrame, from `<runsDir>/<name>/valid.csv`: `step` (Int64, updates
 * applied before the measurement), `loss` (mean over the validation batches, nats per token),
 * `perplexity` and `bits_per_byte` (Float64). Validation runs every few steps, so this is a separate
 * frame from the per-step {@linkcode runLogs}. An array of names gives one frame with a leading `run`
 * column, ready to plot one line per run. A run trained without validation is an Error that says so.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { validationCurve } from "./runs.ts";
 * const runsDir = await Deno.makeTempDir();
 * for (const [name, loss] of [["a", 2], ["b", 3]] as const) {
 *   await Deno.mkdir(join(runsDir, "lm", name), { recursive: true });
 *   const line = `50,${loss},${Math.exp(loss)},${loss / Math.LN2}`;
 *   await Deno.writeTextFile(join(runsDir, "lm", name, "valid.csv"), `step,loss,perplexity,bits_per_byte\n${line}\n`);
 * }
 * const df = await validationCurve(["lm/a", "lm/b"], { runsDir });
 * console.log(df.columns, df.getColumn("run").toArray()); // ["run", "step", "loss", "perplexity", "bits_per_byte"] ["lm/a", "lm/b"]
 * ```
 */
export async function validationCurve(
  name: string | readonly string[],
  options: ValidationCurveOptions = {},
): Promise<DataFrame> {
  const o = checkOptionKeys("validationCurve", options, ["runsDir"]);
  return await loadLogs("validationCurve", name, "valid", o.runsDir);
}
