/**
 * `deno task reproduce`: setup, then every notebook in full mode (`--scale large`: at the large scale, after
 * printing what it costs), saved in place with its outputs; figures go to `figures/` (or `ATTNLAB_FIGURES_DIR`).
 *
 * @module
 */

import { existsSync, readFileSync, rmSync } from "node:fs";
import { ensureFiguresDir, REPO_ROOT } from "../env.ts";
import { gitState, pruneManifest } from "../figures/manifest.ts";
import { groupsForNotebooks } from "../experiments/mod.ts";
import { displayPath, formatSeconds, formatSummary, listNotebooks, runNotebooks } from "../notebook/runner.ts";
import type { NotebookResult } from "../notebook/runner.ts";
import {
  notebookInputsHash,
  readResumeRecord,
  RESUME_FILE,
  type ResumeRecord,
  writeResumeRecord,
} from "../notebook/resume.ts";
import { sourceHash } from "../source_hash.ts";
import { setup } from "./setup.ts";
import { parseCount, printPlan, scaleFlag, trainPlannedRuns } from "./train.ts";
import { formatHelp, parseFlags, parseSeconds, runMain } from "./cli.ts";

const FLAGS = {
  only: {
    type: "string",
    multiple: true,
    value: "PATTERN",
    description: "run only notebooks whose file name starts with or contains PATTERN (e.g. --only 00)",
  },
  scale: {
    type: "string",
    value: "SCALE",
    description: "full (default) or large (meant for a GPU; prints its cost first); quick is for tests",
  },
  "fail-fast": { type: "boolean", description: "stop at the first failing notebook" },
  restart: { type: "boolean", description: "ignore what an interrupted run finished; run every notebook again" },
  "no-train": { type: "boolean", description: "skip the training stage (notebooks then train what they miss)" },
  jobs: { type: "string", value: "N", description: "runs trained at once in the training stage (default: cores)" },
  "cell-timeout": { type: "string", value: "SECONDS", description: "seconds one cell may run (default 3600)" },
  timeout: { type: "string", value: "SECONDS", description: "seconds one notebook may run (default 14400)" },
  help: { type: "boolean", description: "show this help" },
} as const;

const DESCRIPTION = `First trains every run the notebooks load that data/runs/ lacks (deno task train),
as resumable jobs with progress and the time left; then executes notebooks/NN_*.ipynb
(or the NOTEBOOKS given) one by one at full size through Jupyter and the Deno kernel,
saving each in place with its outputs. A failing notebook is left unchanged; its partial
outputs go to a temporary file. An interrupted run resumes: training from the last
checkpoints, notebooks after the last one finished (unless it or lib/ changed).
--scale large runs everything at the large scale (6 layers, d = 256, n = 512, 98M
tokens per run; meant for a GPU) after printing its FLOPs, corpus repeats and a
time estimate from 2 timed updates.`;

/**
 * The task's entry point; returns the exit status.
 *
 * @example
 * ```ts
 * import { main } from "./reproduce.ts";
 * console.log(await main(["--help"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, FLAGS, { command: "reproduce", positionals: true });
  if (values.help) {
    console.log(formatHelp("deno task reproduce [flags] [NOTEBOOKS...]", DESCRIPTION, FLAGS));
    return 0;
  }
  const cellTimeoutSeconds = values["cell-timeout"]
    ? parseSeconds(values["cell-timeout"] as string, "--cell-timeout")
    : 3600;
  const timeoutSeconds = values.timeout ? parseSeconds(values.timeout as string, "--timeout") : 14400;
  const jobs = values.jobs ? parseCount(values.jobs as string, "--jobs") : undefined;
  const only = (values.only as string[] | undefined) ?? [];
  if (positionals.length > 0 && only.length > 0) throw new Error("reproduce: give NOTEBOOKS or --only, not both");
  const missing = positionals.filter((path) => !existsSync(path));
  if (missing.length > 0) throw new Error(`reproduce: no such notebook: ${missing.join(", ")}`);
  const notebooks = positionals.length > 0 ? positionals : listNotebooks({ only });
  // The scale: --scale, else ATTNLAB_SCALE (ATTNLAB_QUICK=1 is quick), else full.
  const scale = scaleFlag(values.scale as string | undefined, false, "reproduce");

  const started = performance.now();
  // An unusable ATTNLAB_FIGURES_DIR fails here, before any setup or training, naming the variable.
  const figuresDir = ensureFiguresDir(undefined, { quick: false });
  // The git state is recorded once, before anything is written (the notebooks are saved in place as the run
  // goes, which would mark every later result dirty), and handed to the notebooks as ATTNLAB_PROVENANCE.
  let provenance = await gitState(REPO_ROOT, figuresDir, { fromEnv: false });
  let record: ResumeRecord | null = values.restart ? null : readResumeRecord();
  const recorded = record?.provenance;
  if (recorded && recorded.commit === provenance.commit && recorded.codeHash === provenance.codeHash) {
    // Same commit and code: the tree is dirty now only from the notebooks the interrupted run saved.
    provenance = { ...provenance, dirty: recorded.dirty };
  }
  console.log(
    `reproduce: provenance: commit ${provenance.commit?.slice(0, 10) ?? "none"}, ${
      provenance.dirty === null ? "no git" : provenance.dirty ? "uncommitted changes" : "clean tree"
    }, code hash ${provenance.codeHash?.slice(0, 10) ?? "none"}`,
  );
  await setup();
  if (notebooks.length === 0) {
    console.log("reproduce: no notebooks in notebooks/, nothing to do");
    return 0;
  }
  // The library hash the provenance recorded above (lib/, deno.json, deno.lock), not computed a second time.
  const library = provenance.codeHash ?? await sourceHash(["lib"]);
  if (record !== null) {
    console.log(
      `reproduce: resuming the run started ${record.started} (${Object.keys(record.done).length} notebook(s) ` +
        `finished then; --restart runs every notebook again)`,
    );
  }
  record ??= {
    version: 1,
    started: new Date().toISOString(),
    done: {},
    provenance: { commit: provenance.commit, dirty: provenance.dirty, codeHash: provenance.codeHash },
  };

  if (!values["no-train"]) {
    const groups = groupsForNotebooks(notebooks);
    const runs = groups.flatMap((g) => g.runs(scale));
    if (runs.length > 0) {
      console.log(`reproduce: training stage: ${groups.map((g) => `${g.name} (${g.description})`).join("; ")}`);
      // The large scale is meant for a GPU: say what it costs on this machine before it starts.
      if (scale === "large") await printPlan(runs, scale);
      const reports = await trainPlannedRuns(runs, { jobs, scale });
      const failed = reports.filter((r) => r.status === "failed");
      if (failed.length > 0) {
        console.error(
          `reproduce: ${failed.length} run(s) failed to train: ${failed.map((r) => r.name).join(", ")}; ` +
            "fix the cause and run `deno task reproduce` again: finished runs are kept",
        );
        return 1;
      }
    }
  }

  console.log(`reproduce: ${notebooks.length} notebook(s), figures to ${figuresDir}`);
  const results: NotebookResult[] = [];
  let skipped = 0;
  for (const notebook of notebooks) {
    const key = displayPath(notebook);
    // A notebook finished at another scale is not done at this one (full keeps its keys from before scales).
    const inputs = await notebookInputsHash(
      readFileSync(notebook, "utf8"),
      scale === "full" ? library : `${library}:${scale}`,
    );
    const done = record.done[key];
    if (done?.inputs === inputs) {
      console.log(`notebook ${key}: finished at ${done.finished} by the interrupted run, unchanged since: skipped`);
      skipped++;
      continue;
    }
    const [result] = await runNotebooks([notebook], { mode: scale, cellTimeoutSeconds, timeoutSeconds, provenance });
    results.push(result);
    if (result.status === "ok") {
      record.done[key] = { inputs, finished: new Date().toISOString(), seconds: Math.round(result.seconds) };
      await writeResumeRecord(record);
    } else if (values["fail-fast"]) {
      break;
    }
  }
  if (results.length > 0) console.log(formatSummary(results));
  const dropped = await pruneManifest(figuresDir);
  if (dropped.length > 0) {
    console.log(`reproduce: dropped manifest entries of figures no longer drawn: ${dropped.join(", ")}`);
  }
  const failed = results.filter((r) => r.status === "failed").length;
  // Only a run over every notebook that finished them all closes the record; a partial one keeps it.
  const everyNotebook = positionals.length === 0 && only.length === 0;
  if (everyNotebook && failed === 0 && results.length + skipped === notebooks.length) {
    rmSync(RESUME_FILE, { force: true });
  }
  console.log(
    `reproduce: ${results.length - failed} passed, ${failed} failed, ${skipped} already done; ` +
      `${formatSeconds((performance.now() - started) / 1000)} in all`,
  );
  return failed > 0 ? 1 : 0;
}

if (import.meta.main) await runMain(main);
