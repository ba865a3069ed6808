/**
 * The three scales (ATTNLAB_SCALE=quick|full|large): reading the environment, the large plan's numbers against closed
 * forms, the full-scale names and recipes pinned as literals (the run cache is keyed by them), the scale recorded in
 * manifest entries and the claims frame, and the report's scale tags and changed-outcome marker.
 */

import { strict as assert } from "node:assert";
import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import { isQuick, type Scale, scale, toScale } from "../lib/env.ts";
import {
  ABLATION_CONFIGS,
  ABLATION_RECIPE_FULL,
  ablationLayers,
  ablationRecipe,
  ablationRun,
  mlmAblationRun,
  runCost,
  runGroups,
  runSpec,
  sharedLmRun,
  widenStack,
} from "../lib/experiments/mod.ts";
import {
  languageModelRun,
  LM_ARCHITECTURE,
  LM_ARCHITECTURE_LARGE,
  LM_RECIPE,
  LM_RECIPE_LARGE,
  lmRecipe,
  modelConfig,
  parameterCount,
} from "../lib/models/mod.ts";
import { createModel } from "../lib/models/model.ts";
import { loadSotu } from "../lib/data/sotu.ts";
import { entryScale, readManifest, saveClaims, startRun } from "../lib/figures/mod.ts";
import { claims as claimsFrame } from "../lib/frames/mod.ts";
import { loadReport } from "../lib/report/load.ts";
import { renderMarkdown } from "../lib/report/markdown.ts";
import { changeRows, provenanceLines } from "../lib/report/_summary.ts";
import { scaleFlag, selectRuns } from "../lib/tasks/train.ts";

/** Runs `fn` with the two scale variables set as given (undefined: unset), restoring them after. */
async function withScaleEnv<T>(vars: { scale?: string; quick?: string }, fn: () => T | Promise<T>): Promise<T> {
  const names = { scale: "ATTNLAB_SCALE", quick: "ATTNLAB_QUICK" } as const;
  const saved = { scale: Deno.env.get(names.scale), quick: Deno.env.get(names.quick) };
  const put = (key: "scale" | "quick", value: string | undefined) =>
    value === undefined ? Deno.env.delete(names[key]) : Deno.env.set(names[key], value);
  put("scale", vars.scale);
  put("quick", vars.quick);
  try {
    return await fn();
  } finally {
    put("scale", saved.scale);
    put("quick", saved.quick);
  }
}

Deno.test("scale(): each value, the ATTNLAB_QUICK alias, the default, and isQuick agreeing", async () => {
  for (const s of ["quick", "full", "large"]) {
    await withScaleEnv({ scale: s }, () => {
      assert.equal(scale(), s);
      assert.equal(isQuick(), s === "quick");
    });
  }
  await withScaleEnv({}, () => assert.equal(scale(), "full"));
  await withScaleEnv({ scale: "" }, () => assert.equal(scale(), "full"));
  await withScaleEnv({ quick: "1" }, () => assert.equal(scale(), "quick"));
  await withScaleEnv({ quick: "0" }, () => assert.equal(scale(), "full"));
  await withScaleEnv({ quick: "1", scale: "quick" }, () => assert.equal(scale(), "quick"));
  await withScaleEnv({ quick: "0", scale: "large" }, () => assert.equal(scale(), "large"));
});

Deno.test("scale(): contradictions and unknown values are RangeErrors naming the variable and the fix", async () => {
  await withScaleEnv({ quick: "1", scale: "full" }, () => {
    assert.throws(() => scale(), (e: Error) => {
      assert.ok(e instanceof RangeError);
      assert.match(e.message, /ATTNLAB_QUICK=1 .* ATTNLAB_SCALE=full/);
      assert.match(e.message, /unset ATTNLAB_QUICK/);
      return true;
    });
    assert.throws(() => isQuick(), RangeError);
  });
  await withScaleEnv({ quick: "1", scale: "large" }, () => assert.throws(() => scale(), RangeError));
  await withScaleEnv({ scale: "huge" }, () => {
    assert.throws(() => scale(), (e: Error) => e instanceof RangeError && /ATTNLAB_SCALE .*"huge"/.test(e.message));
  });
  await withScaleEnv({ scale: "Large" }, () => assert.throws(() => scale(), RangeError));
  await withScaleEnv({ quick: "yes" }, () => {
    assert.throws(() => scale(), (e: Error) => e instanceof RangeError && /ATTNLAB_QUICK .*"yes"/.test(e.message));
  });
  assert.equal(toScale(true, "t"), "quick");
  assert.equal(toScale(false, "t"), "full");
  assert.throws(() => toScale("medium" as Scale, "f: scale"), /f: scale must be "quick", "full" or "large"/);
  assert.throws(() => toScale(1 as unknown as Scale, "f: scale"), TypeError);
  // The task flags: --scale, --quick, the environment; a contradiction is a RangeError.
  assert.equal(scaleFlag("large", false, "train"), "large");
  assert.equal(scaleFlag(undefined, true, "train"), "quick");
  await withScaleEnv({ scale: "large" }, () => assert.equal(scaleFlag(undefined, false, "train"), "large"));
  assert.throws(
    () => scaleFlag("full", true, "train"),
    (e: Error) => e instanceof RangeError && /--quick/.test(e.message),
  );
  assert.throws(() => scaleFlag("xl", false, "train"), /train: --scale must be/);
});

// The parameters of a byte-level model with SimpleRMSNorm (no parameters) and a GLU feed-forward of hidden
// round(8d/3), with the head tied to the embedding: V·d for the embedding, then per layer q, k, v, o (4d²) and the
// feed-forward's three matrices (3·d·h).
function closedFormParameters(layers: number, d: number, vocab = 256): number {
  const hidden = Math.round((8 * d) / 3);
  return vocab * d + layers * (4 * d * d + 3 * d * hidden);
}

Deno.test("the large plan: 6 layers, d = 256, about 4.79M parameters, 98.3M tokens, over 20 tokens per parameter", async () => {
  assert.deepEqual({ ...LM_ARCHITECTURE_LARGE }, { layers: 6, dModel: 256, heads: 4, maxLength: 16384 });
  const params = closedFormParameters(6, 256);
  assert.equal(params, 4_785_664);
  const config = modelConfig({ ...LM_ARCHITECTURE_LARGE, attention: "vanilla" });
  assert.equal(parameterCount(config), params);
  // The count without building agrees with the built model's.
  const small = modelConfig({ attention: "transnormer-t2", layers: 2, dModel: 24, heads: 2 });
  const tensorsBefore = tf.memory().numTensors;
  const model = createModel(small, { log: () => {} });
  assert.equal(parameterCount(small), model.parameterCount);
  assert.equal(model.parameterCount, closedFormParameters(2, 24));
  model.dispose();
  assert.equal(tf.memory().numTensors, tensorsBefore);

  const r = LM_RECIPE_LARGE;
  assert.deepEqual([r.steps, r.batchSize, r.seqLen, r.lr, r.warmup, r.probeEvery, r.probeRows], [
    12_000,
    16,
    512,
    1e-3,
    600,
    60,
    4,
  ]);
  const tokens = 12_000 * 16 * 512;
  assert.equal(tokens, 98_304_000);
  assert.ok(tokens / params >= 20, `${tokens / params} tokens per parameter`);
  assert.ok(Math.abs(tokens / params - 20.54) < 0.01);

  const corpus = await loadSotu();
  const spec = await runSpec(sharedLmRun("vanilla", 0, "large"), { corpus, log: null });
  assert.equal(spec.name, "lm-large/vanilla/seed0");
  assert.deepEqual([spec.config.attention.length, spec.config.dModel, spec.config.heads], [6, 256, 4]);
  const cost = runCost(spec);
  assert.equal(cost.parameters, params);
  assert.equal(cost.tokens, tokens);
  const trainBytes = corpus.splits.train.length;
  assert.ok(trainBytes > 9e6 && trainBytes < 9.6e6, `the training split holds ${trainBytes} bytes`);
  assert.equal(cost.corpusRepeats, tokens / trainBytes);
  assert.ok(cost.corpusRepeats > 10 && cost.corpusRepeats < 11);
  // FLOPs, as 6·N·D with the attention on top: at least 6·N·D, and within a few times of it.
  assert.ok(cost.flops > 6 * params * tokens && cost.flops < 3 * 6 * params * tokens, `${cost.flops}`);
});

Deno.test("the large scale: 3 seeds of everything, ablations at the same size and budget, stacks widened by halves", async () => {
  const counts = Object.fromEntries(runGroups().map((g) => [g.name, g.runs("large").length]));
  const full = Object.fromEntries(runGroups().map((g) => [g.name, g.runs(false).length]));
  assert.deepEqual(counts, full);
  assert.deepEqual(counts, { lm: 6 * 3, ablation: 12 * 3, "ablation-mlm": 17 * 3 });
  for (const g of runGroups()) {
    const prefix = { lm: "lm-large/", ablation: "ablation-large/", "ablation-mlm": "ablation-mlm-large/" }[g.name]!;
    for (const run of g.runs("large")) assert.ok(run.name.startsWith(prefix), run.name);
    const seeds = new Set(g.runs("large").map((r) => r.name.split("/").at(-1)));
    assert.equal(seeds.size, 3);
  }
  assert.equal(ablationLayers("large"), 6);
  assert.deepEqual(ablationRecipe("large"), { ...LM_RECIPE_LARGE, probeEvery: null });
  const t2 = ablationRun("t2", 1, "large");
  const layers = (t2.architecture as { attention: { variant: string }[] }).attention.map((l) => l.variant);
  assert.deepEqual(layers, ["diag", "diag", "diag", "norm", "norm", "norm"]);
  // Every configuration's halves are uniform, so widening keeps each half's attention.
  for (const [id, stack] of Object.entries(ABLATION_CONFIGS)) {
    const wide = widenStack(stack, 6);
    assert.deepEqual(wide.slice(0, 3), [stack[0], stack[0], stack[0]], id);
    assert.deepEqual(wide.slice(3), [stack[3], stack[3], stack[3]], id);
  }
  assert.throws(() => widenStack(ABLATION_CONFIGS.t2, 5), RangeError);
  const corpus = await loadSotu();
  for (const run of [t2, mlmAblationRun("elu-none-noclip", 2, "large")]) {
    const spec = await runSpec(run, { corpus, log: null });
    assert.deepEqual([spec.config.attention.length, spec.config.dModel, spec.config.heads], [6, 256, 4]);
    assert.deepEqual([spec.recipe.steps, spec.recipe.batchSize, spec.recipe.seqLen], [12_000, 16, 512]);
    assert.ok(runCost(spec).tokensPerParameter >= 20);
  }
  assert.equal((await runSpec(mlmAblationRun("t2", 1, "large"), { corpus, log: null })).recipe.task, "mlm");
  assert.equal(selectRuns(["lm"], "large").length, 18);
});

Deno.test("full scale: the recipes, architecture, names and run options are exactly as before scales (pinned)", () => {
  assert.deepEqual({ ...LM_RECIPE }, {
    steps: 600,
    batchSize: 16,
    seqLen: 128,
    lr: 3e-3,
    warmup: 60,
    clip: 1,
    beta2: 0.98,
    weightDecay: 0.01,
    seed: 0,
    validEvery: 50,
    validBatches: 8,
    probeEvery: 10,
    probeRows: 16,
    task: "lm",
    maskRate: 0.15,
  });
  assert.equal(lmRecipe("full"), LM_RECIPE);
  assert.deepEqual({ ...LM_ARCHITECTURE }, { layers: 4, dModel: 64, heads: 4, maxLength: 16384 });
  assert.deepEqual({ ...ABLATION_RECIPE_FULL }, {
    steps: 250,
    batchSize: 8,
    seqLen: 128,
    warmup: 25,
    validEvery: 25,
    validBatches: 8,
    probeEvery: null,
    probeRows: 2,
  });
  assert.deepEqual(sharedLmRun("transnormer-t2", 2, "full"), {
    name: "lm/transnormer-t2/seed2",
    group: "lm",
    architecture: "transnormer-t2",
    options: { name: "lm/transnormer-t2/seed2", quick: false, recipe: { seed: 2 } },
  });
  const diag = { variant: "diag", options: { inner: "softmax", blockSize: 64 } };
  const norm = { variant: "norm", options: { featureMap: "elu+1", norm: "srms" } };
  const fullRecipe = {
    steps: 250,
    batchSize: 8,
    seqLen: 128,
    warmup: 25,
    validEvery: 25,
    validBatches: 8,
    probeEvery: null,
    probeRows: 2,
  };
  assert.deepEqual(ablationRun("t2", 3, false), {
    name: "ablation/t2/seed3",
    group: "ablation",
    architecture: { attention: [diag, diag, norm, norm] },
    options: { name: "ablation/t2/seed3", quick: false, recipe: { ...fullRecipe, seed: 3 } },
  });
  assert.deepEqual(mlmAblationRun("all-norm", 1, "full"), {
    name: "ablation-mlm/elu-srms-noclip/seed1",
    group: "ablation-mlm",
    architecture: { attention: [norm, norm, norm, norm] },
    options: {
      name: "ablation-mlm/elu-srms-noclip/seed1",
      quick: false,
      recipe: { ...fullRecipe, task: "mlm", clip: null, seed: 1 },
    },
  });
  const names = runGroups().flatMap((g) => g.runs("full").map((r) => r.name));
  assert.deepEqual(names.slice(0, 4), ["lm/vanilla/seed0", "lm/vanilla/seed1", "lm/vanilla/seed2", "lm/linear/seed0"]);
  assert.ok(names.every((n) => /^(lm|ablation|ablation-mlm)\/[a-z0-9-]+\/seed\d$/.test(n)), "full-scale names");
  // The quick scale is unchanged too.
  assert.deepEqual(sharedLmRun("vanilla", 0, true).options, {
    name: "lm-quick/vanilla/seed0",
    quick: true,
    recipe: { seed: 0 },
  });
  assert.equal(ablationRun("t2", 1, "quick").name, "ablation-quick/t2/seed1");
});

Deno.test("trainedLanguageModel options: scale and quick must agree", async () => {
  await assert.rejects(
    () => languageModelRun("vanilla", { quick: true, scale: "large" }),
    (e: Error) => e instanceof RangeError && /options\.quick is true .* options\.scale is "large"/.test(e.message),
  );
  const corpus = await loadSotu();
  const run = await languageModelRun("vanilla", { scale: "large", corpus });
  assert.equal(run.name, "lm-large/vanilla");
  assert.equal((await languageModelRun("vanilla", { quick: false, scale: "full", corpus })).name, "lm/vanilla");
});

const CLAIM = { claim: "an effect", paper: "p", measured: "m", rule: "r" };

Deno.test("manifest entries and the claims frame record the scale; an entry without one reads as full", async () => {
  const dir = await Deno.makeTempDir({ prefix: "attnlab_scale_claims_" });
  await withScaleEnv({ scale: "large" }, async () => {
    const run = startRun({ notebook: "05_demo", config: {}, seed: 0 });
    assert.equal(run.scale, "large");
    const saved = await saveClaims("05_claims", [{ id: "a", ...CLAIM, outcome: "reproduced" }], {
      run,
      outDir: dir,
      backend: "cpu",
    });
    assert.equal(saved.entry.scale, "large");
  });
  await withScaleEnv({}, () =>
    saveClaims("06_claims", [{ id: "b", ...CLAIM, outcome: "reproduced" }], {
      notebook: "06_demo",
      outDir: dir,
      backend: "cpu",
    }));
  const manifest = await readManifest(dir);
  assert.equal(manifest.figures["05_claims"].scale, "large");
  assert.equal(manifest.figures["06_claims"].scale, "full");
  // An entry saved before scales were recorded: no scale, read as full.
  const { scale: _dropped, ...old } = manifest.figures["06_claims"];
  assert.equal(entryScale(old), "full");
  manifest.figures["06_claims"] = old;
  await Deno.writeTextFile(join(dir, "manifest.json"), JSON.stringify(manifest));
  const df = await claimsFrame({ figuresDir: dir });
  assert.deepEqual(df.getColumn("scale").toArray(), ["large", "full"]);
});

Deno.test("the report: one scale line, tags on every result when scales are mixed, none when all are full", async () => {
  const dir = await Deno.makeTempDir({ prefix: "attnlab_scale_report_" });
  const save = (name: string, notebook: string) =>
    saveClaims(name, [{ id: "a", ...CLAIM, outcome: "reproduced" }], { notebook, outDir: dir, backend: "cpu" });
  await withScaleEnv({ scale: "full" }, () => save("02_claims", "02_demo"));
  const allFull = await loadReport(dir, { codeHash: null });
  assert.deepEqual(allFull.provenance.scales, { full: ["02_claims"] });
  assert.ok(allFull.notebooks.every((n) => n.claims.every((c) => !c.flags.some((f) => f.endsWith(" scale")))));
  assert.ok(provenanceLines(allFull).includes("Scale: all 1 results at full scale."));

  await withScaleEnv({ scale: "large" }, () => save("05_claims", "05_demo"));
  const mixed = await loadReport(dir, { codeHash: null });
  assert.deepEqual(mixed.provenance.scales, { full: ["02_claims"], large: ["05_claims"] });
  const flags = Object.fromEntries(mixed.notebooks.map((n) => [n.notebook, n.claims[0].flags]));
  assert.equal(flags["02_demo"][0], "full scale");
  assert.equal(flags["05_demo"][0], "large scale");
  assert.deepEqual(mixed.notebooks.map((n) => n.runs.map((r) => r.scale)), [["full"], ["large"]]);
  const md = renderMarkdown(mixed);
  assert.match(md, /Scale: 1 result at full scale, 1 at large scale; each result is tagged with its scale/);
  // Other flags (a dirty tree, another commit) may follow the scale.
  assert.match(md, /Made with: large scale[;.]/);

  // Only large results: still tagged (not the default scale).
  await Deno.remove(join(dir, "02_claims.json"));
  const manifest = await readManifest(dir);
  delete manifest.figures["02_claims"];
  await Deno.writeTextFile(join(dir, "manifest.json"), JSON.stringify(manifest));
  const large = await loadReport(dir, { codeHash: null });
  assert.equal(large.notebooks[0].claims[0].flags[0], "large scale");
});

async function gitIn(cwd: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("git", {
    args: ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false", ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, `git ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
}

Deno.test("the report's changed outcomes mark a change between scales: other models, not a rerun", async () => {
  const repo = await Deno.makeTempDir({ prefix: "attnlab_scale_git_" });
  const figures = join(repo, "figures");
  await Deno.mkdir(figures);
  const save = (name: string, outcome: "reproduced" | "not reproduced") =>
    saveClaims(name, [{ id: "a", ...CLAIM, outcome }], {
      notebook: name.slice(0, 2) + "_demo",
      outDir: figures,
      backend: "cpu",
    });
  await withScaleEnv({ scale: "full" }, async () => {
    await save("02_claims", "reproduced");
    await save("03_claims", "reproduced");
  });
  // The committed report predates scales: strip them, as an old manifest has none.
  const manifest = await readManifest(figures);
  for (const e of Object.values(manifest.figures)) delete e.scale;
  await Deno.writeTextFile(join(figures, "manifest.json"), JSON.stringify(manifest));
  await gitIn(repo, "init", "-q");
  await gitIn(repo, "add", "-A");
  await gitIn(repo, "commit", "-q", "-m", "full-scale report");
  // 02 flips at full scale (a rerun); 03 flips at large scale (other models).
  await withScaleEnv({ scale: "full" }, () => save("02_claims", "not reproduced"));
  await withScaleEnv({ scale: "large" }, () => save("03_claims", "not reproduced"));
  const data = await loadReport(figures, { codeHash: null });
  assert.deepEqual(
    data.changes.changes.map((c) => [c.file, c.before, c.after, c.scales ?? null]),
    [
      ["02_claims.json", "reproduced", "not reproduced", null],
      ["03_claims.json", "reproduced", "not reproduced", { before: "full", after: "large" }],
    ],
  );
  const table = changeRows(data);
  assert.deepEqual(table.columns, ["notebook", "claim", "committed", "now", "scale"]);
  assert.deepEqual(table.rows.map((r) => r[4]), ["", "scale full → large: other models, not a rerun"]);
  assert.match(renderMarkdown(data), /\| scale full → large: other models, not a rerun \|/);
});
