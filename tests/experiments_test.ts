// The training stage of `task reproduce`: planned runs, their cache state, the worker pool, and
// what an interrupted reproduce resumes.
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ABLATION_CONFIGS,
  ablationRun,
  groupsForNotebooks,
  MLM_ABLATION_CONFIGS,
  mlmAblationRun,
  type PlannedRun,
  runGroup,
  runSpec,
  runState,
  sharedLmRun,
} from "../lib/experiments/mod.ts";
import { lmRunName } from "../lib/models/pretrained.ts";
import { PRESETS } from "../lib/models/config.ts";
import { loadSotu } from "../lib/data/sotu.ts";
import { initBackend } from "../lib/backend.ts";
import { readCheckpointManifest, trainCached } from "../lib/train/mod.ts";
import { parseWorkerEvent, selectRuns, trainPlannedRuns, WORKER_EVENT } from "../lib/tasks/train.ts";
import { notebookInputsHash, readResumeRecord, writeResumeRecord } from "../lib/notebook/resume.ts";
import { sourceHash } from "../lib/source_hash.ts";
import "./helpers.ts";

const corpus = await loadSotu();
await initBackend({ quiet: true });

Deno.test("planned runs: the lm group is every preset × seeds 0, 1, 2, named lm/<preset>/seed<n>", () => {
  const full = runGroup("lm").runs(false);
  assert.equal(full.length, PRESETS.length * 3);
  for (const preset of PRESETS) {
    const runs = full.filter((r) => r.architecture === preset);
    assert.deepEqual(runs.map((r) => r.name), [0, 1, 2].map((s) => `${lmRunName(preset, false)}/seed${s}`));
    // The seed reaches the recipe, which seeds both the weights and the batch order.
    assert.deepEqual(runs.map((r) => (r.options.recipe as { seed: number }).seed), [0, 1, 2]);
  }
  assert.deepEqual(
    new Set(runGroup("lm").runs(true).map((r) => r.name.split("/")[0])),
    new Set(["lm-quick"]),
  );
  assert.throws(() => sharedLmRun("nope", 0, false), RangeError);
  assert.throws(() => sharedLmRun("vanilla", -1, false), RangeError);
  assert.throws(() => sharedLmRun("vanilla", "0" as unknown as number, false), TypeError);
});

Deno.test("planned runs: masked-LM ablations are bidirectional, unclipped unless a Table 1 arm clips, × 3 seeds", () => {
  const ids = Object.keys(MLM_ABLATION_CONFIGS);
  const runs = runGroup("ablation-mlm").runs(false);
  // all-norm (Table 8/9) is elu-srms-noclip (Table 1): one configuration, trained once.
  assert.equal(runs.length, (ids.length - 1) * 3);
  assert.equal(mlmAblationRun("all-norm", 2, false).name, mlmAblationRun("elu-srms-noclip", 2, false).name);
  assert.equal(new Set(runs.map((r) => r.name)).size, runs.length);
  const table1 = ids.filter((id) => MLM_ABLATION_CONFIGS[id].table === "1");
  // Five arms (denominator, none, LayerNorm, RMSNorm with gain, SRMS) × {clip, no clip}, the same attention in all layers.
  assert.equal(table1.length, 10);
  for (const id of table1) {
    const { attention, clip } = MLM_ABLATION_CONFIGS[id];
    assert.equal(clip, id.endsWith("-noclip") ? null : 1);
    assert.ok(attention.every((l) => JSON.stringify(l) === JSON.stringify(attention[0])), id);
    assert.ok(attention[0].variant === "linear" || attention[0].options?.featureMap === "elu+1", id);
  }
  assert.equal(MLM_ABLATION_CONFIGS["elu-rms-clip"].attention[0].gain, true);
  assert.equal(MLM_ABLATION_CONFIGS["elu-srms-clip"].attention[0].gain, undefined);
  for (const run of runs) {
    const recipe = run.options.recipe as { task: string; clip: number | null };
    assert.equal(recipe.task, "mlm");
    assert.match(run.name, /^ablation-mlm\/[a-z0-9-]+\/seed[123]$/);
  }
  assert.throws(() => mlmAblationRun("nope", 1, true), /unknown masked-LM configuration "nope"/);
});

Deno.test("planned runs: every ablation configuration × seed, and notebooks map to the groups they read", () => {
  const configs = Object.keys(ABLATION_CONFIGS).length;
  assert.equal(runGroup("ablation").runs(false).length, configs * 3);
  assert.equal(runGroup("ablation").runs(true).length, configs * 3);
  assert.deepEqual(groupsForNotebooks(["notebooks/00_tour.ipynb", "notebooks/07_complexity.ipynb"]), []);
  assert.deepEqual(
    groupsForNotebooks(["notebooks/05_ablations.ipynb"]).map((g) => g.name),
    ["ablation", "ablation-mlm"],
  );
  // 03 reads the masked-LM ablations too (the centred curve of the bidirectional models).
  assert.deepEqual(groupsForNotebooks(["x/03_attention_dilution.ipynb"]).map((g) => g.name), ["lm", "ablation-mlm"]);
  assert.equal(selectRuns(["lm", "ablation"], true).length, PRESETS.length * 3 + configs * 3);
  assert.throws(
    () => selectRuns(["nope"], true),
    /unknown run group "nope"; the groups are lm, ablation, ablation-mlm/,
  );
  assert.throws(() => ablationRun("nope", 1, true), RangeError);
});

Deno.test("runState: missing, then partial after an interrupted run, finished after it resumes, stale when the recipe changes", async () => {
  const runsDir = await Deno.makeTempDir();
  const start = tf.memory().numTensors;
  try {
    const run = runGroup("lm").runs(true)[1];
    assert.deepEqual(await runState(run, { corpus, runsDir }), { kind: "missing" });
    const spec = await runSpec(run, { corpus, runsDir, progress: "none", log: null });
    // Stop after 3 of the 6 updates, as a killed worker would after its last checkpoint.
    const first = await trainCached(spec.name, { ...spec.options, until: 3 });
    first.model.dispose();
    assert.deepEqual(await runState(run, { corpus, runsDir }), { kind: "partial", step: 3, steps: 6 });
    const resumed = await trainCached(spec.name, spec.options);
    resumed.model.dispose();
    assert.equal(resumed.action, "resumed");
    assert.deepEqual(resumed.result.logs.train.map((r) => r.step), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(await runState(run, { corpus, runsDir }), { kind: "finished", step: 6 });
    const changed: PlannedRun = { ...run, options: { ...run.options, recipe: { lr: 1e-3 } } };
    const stale = await runState(changed, { corpus, runsDir });
    assert.equal(stale.kind, "stale");
    assert.match((stale as { reason: string }).reason, /trained with hash [0-9a-f]{8}…, now [0-9a-f]{8}…/);
    assert.equal(tf.memory().numTensors, start);
  } finally {
    await Deno.remove(runsDir, { recursive: true });
  }
});

Deno.test("trainPlannedRuns: trains missing runs in worker processes, resumes an unfinished one, then finds all cached", async () => {
  const runsDir = await Deno.makeTempDir();
  try {
    const [a, b] = runGroup("lm").runs(true);
    const spec = await runSpec(b, { corpus, runsDir, progress: "none", log: null });
    const partial = await trainCached(spec.name, { ...spec.options, until: 2 });
    partial.model.dispose();
    const lines: string[] = [];
    const reports = await trainPlannedRuns([a, b], { quick: true, jobs: 2, runsDir, log: (l) => lines.push(l) });
    assert.deepEqual(reports.map((r) => [r.name, r.before.kind, r.status]), [
      [a.name, "missing", "trained"],
      [b.name, "partial", "trained"],
    ]);
    for (const run of [a, b]) {
      const manifest = await readCheckpointManifest(join(runsDir, run.name));
      assert.equal(manifest?.finished, true);
      assert.equal(manifest?.step, 6);
    }
    assert.ok(lines.some((l) => l.includes("2 run(s), 0 cached, 2 to train, 2 at a time")), lines.join("\n"));
    const again = await trainPlannedRuns([a, b], { quick: true, runsDir, log: () => {} });
    assert.deepEqual(again.map((r) => r.status), ["cached", "cached"]);
  } finally {
    await Deno.remove(runsDir, { recursive: true });
  }
});

Deno.test("parseWorkerEvent reads the worker's progress lines and nothing else", () => {
  assert.deepEqual(parseWorkerEvent(`${WORKER_EVENT}{"step":0,"steps":6}`), { step: 0, steps: 6 });
  assert.equal(parseWorkerEvent(`attnlab: backend blas`), null);
});

Deno.test("resume record: a notebook's inputs hash ignores outputs, follows code and library; a corrupt record is ignored", async () => {
  const nb = (code: string, out: string) =>
    JSON.stringify({
      cells: [
        { cell_type: "markdown", source: ["# title"] },
        { cell_type: "code", source: [code], outputs: [{ output_type: "stream", text: out }] },
      ],
    });
  const h = await notebookInputsHash(nb("train()", "loss 1"), "L");
  assert.equal(await notebookInputsHash(nb("train()", "loss 2"), "L"), h);
  assert.notEqual(await notebookInputsHash(nb("train(2)", "loss 1"), "L"), h);
  assert.notEqual(await notebookInputsHash(nb("train()", "loss 1"), "M"), h);
  assert.throws(() => notebookInputsHash("{}", "L"), /not a notebook/);

  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "cache", "reproduce.json");
    await writeResumeRecord({
      version: 1,
      started: "s",
      done: { "notebooks/00.ipynb": { inputs: h, finished: "f", seconds: 1 } },
    }, path);
    assert.equal(readResumeRecord(path)?.done["notebooks/00.ipynb"].inputs, h);
    for (const bad of ["null", "{", "[]", '{"version":2,"done":{}}']) {
      await Deno.writeTextFile(path, bad);
      const notes: string[] = [];
      assert.equal(readResumeRecord(path, (l) => notes.push(l)), null);
      assert.match(notes[0], /ignoring an unreadable resume record/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sourceHash changes when a file under a hashed folder changes, is added or renamed", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(root, "lib", "attention"), { recursive: true });
    await Deno.writeTextFile(join(root, "lib", "attention", "softmax.ts"), "export const a = 1;\n");
    const h0 = await sourceHash(["lib"], { root });
    assert.equal(await sourceHash(["lib"], { root }), h0);
    await Deno.writeTextFile(join(root, "lib", "attention", "softmax.ts"), "export const a = 2;\n");
    const h1 = await sourceHash(["lib"], { root });
    assert.notEqual(h1, h0);
    await Deno.rename(join(root, "lib", "attention", "softmax.ts"), join(root, "lib", "attention", "linear.ts"));
    assert.notEqual(await sourceHash(["lib"], { root }), h1);
    await assert.rejects(() => sourceHash(["missing"], { root }), /sourceHash: cannot read .*missing/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
