/**
 * Tests for lib/report: the HTML and Markdown builders (escaping, summary
 * counts, missing files), and a report built from a fixture figures folder
 * checked in headless chromium.
 */

import { strict as assert } from "node:assert";
import { dirname, join } from "node:path";
import { Buffer } from "node:buffer";
import { REPO_ROOT } from "../lib/env.ts";
import * as Plot from "@observablehq/plot";
import {
  libraryCodeHash,
  plotDocument,
  pruneManifest,
  saveClaims,
  saveFigure,
  saveTable,
  startRun,
} from "../lib/figures/mod.ts";
import {
  buildReport,
  checkFiguresDir,
  CHROMIUM_INSTALL_HINT,
  chromiumAvailable,
  countClaims,
  escapeHtml,
  escapeMarkdown,
  loadReport,
  parseCsv,
  renderHtml,
  renderMarkdown,
  sectionId,
  verifyReport,
} from "../lib/report/mod.ts";
import { main } from "../lib/report/main.ts";

Deno.env.set("ATTNLAB_FIGURES_DIR", await Deno.makeTempDir({ prefix: "attnlab_report_env_" }));

const HOSTILE = `<script>alert("x")</script> | *bold* & 'q'`;
const LEGACY = "legacy: the notebook's own check (no interval)";

/** A fixture figures folder: two notebooks, two figures, a table with awkward cells, claims of every verdict. */
async function fixture(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "attnlab_report_test_" });
  const runA = startRun({ notebook: "01_alpha", config: { n: 8, note: HOSTILE }, seed: 1 });
  const rows = [{ x: 1, y: 2 }, { x: 2, y: 3 }, { x: 3, y: 1 }];
  const line = Plot.plot({
    document: plotDocument(),
    width: 300,
    height: 200,
    marks: [Plot.line(rows, { x: "x", y: "y" })],
  });
  await saveFigure("alpha_line", line, { data: rows, run: runA, outDir: dir, backend: "cpu", caption: HOSTILE });
  await saveTable("alpha_table", [{ model: 'a, "b"', paper: 1.5, measured: 1 / 3 }, { model: HOSTILE, paper: 2 }], {
    run: runA,
    outDir: dir,
    backend: "cpu",
    caption: "Paper versus measured",
  });
  await saveClaims("01_claims", [
    { id: "one", claim: HOSTILE, paper: "≤ 1/4", measured: "0.25", reproduced: true },
    { id: "two", claim: "y grows", paper: "grows", measured: "flat", reproduced: false, note: "toy size" },
  ], { run: runA, outDir: dir, backend: "cpu" });
  const runB = startRun({ notebook: "02_beta", config: { m: 2 }, seed: 2 });
  const dots = Plot.plot({
    document: plotDocument(),
    width: 300,
    height: 200,
    marks: [Plot.dot(rows, { x: "x", y: "y" })],
  });
  await saveFigure("beta_dots", dots, { run: runB, outDir: dir, backend: "wasm", caption: "Dots." });
  await saveClaims("02_claims", [
    { id: "three", claim: "z", paper: "?", measured: "3", reproduced: null },
    { id: "four", claim: "w", paper: "1", measured: "1", reproduced: true },
  ], { run: runB, outDir: dir, backend: "wasm" });
  return dir;
}

Deno.test("escapeHtml and escapeMarkdown neutralise markup", () => {
  assert.equal(escapeHtml(HOSTILE), "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; | *bold* &amp; &#39;q&#39;");
  assert.equal(escapeMarkdown("a|b\n*c* _d_ [e](f) <g>"), "a\\|b \\*c\\* \\_d\\_ \\[e\\](f) &lt;g>");
});

Deno.test("parseCsv reads back what toCsv writes, quotes and line breaks included", async () => {
  const { toCsv } = await import("../lib/figures/csv.ts");
  const rows = [{ a: 'say "hi", ok', b: 2 }, { a: "two\nlines", b: 0.5 }];
  assert.deepEqual(parseCsv(toCsv(rows)), [["a", "b"], ['say "hi", ok', "2"], ["two\nlines", "0.5"]]);
  assert.deepEqual(parseCsv("a,b\r\n1,\r\n"), [["a", "b"], ["1", ""]]);
  assert.throws(() => parseCsv('a\n"open', "t.csv"), /t\.csv: a quoted field is never closed/);
});

Deno.test("loadReport groups by notebook and counts claims; HTML and Markdown carry them, escaped", async () => {
  const dir = await fixture();
  const data = await loadReport(dir);
  assert.deepEqual(data.notebooks.map((n) => n.notebook), ["01_alpha", "02_beta"]);
  // Legacy claims read as three outcomes: true ✓, false ✗, null inconclusive ("not comparable").
  assert.deepEqual(data.summary, {
    total: 4,
    reproduced: 2,
    notReproduced: 1,
    inconclusive: 1,
    inconclusiveBy: { "not comparable": 1 },
    notCounted: 0,
  });
  assert.deepEqual(data.summary, countClaims(data.notebooks.flatMap((n) => n.claims.flatMap((c) => c.claims))));
  const [alpha, beta] = data.notebooks;
  assert.deepEqual(alpha.figures.map((f) => [f.entry.name, f.mime]), [["alpha_line", "image/svg+xml"]]);
  assert.deepEqual(alpha.tables[0].columns, ["model", "paper", "measured"]);
  assert.deepEqual(alpha.tables[0].rows, [['a, "b"', "1.5", "0.333333"], [HOSTILE, "2", ""]]);
  // One run per way of making: the same config, backend and commit, split only by the code hash recorded
  // (saveClaims records one; a figure saved before saveFigure records one has none).
  assert.equal(beta.runs.length, new Set(beta.runs.map((r) => r.codeHash ?? "unrecorded")).size);
  for (const r of beta.runs) {
    assert.equal(r.backend, "wasm");
    assert.deepEqual(r.config, { m: 2 });
  }

  const html = renderHtml(data);
  assert.equal(html.includes("<script"), false, "user text must be escaped");
  assert.equal(html.includes("http://") || html.includes("https://"), false, "no external URL");
  assert.ok(
    html.includes("✓ reproduced: 2") && html.includes("✗ not reproduced: 1") && html.includes("? inconclusive: 1"),
  );
  // The summary comes first: before the first notebook's section.
  assert.ok(html.indexOf('id="summary"') < html.indexOf(`id="${sectionId("01_alpha")}"`));
  assert.equal((html.match(/<img src="data:image\/svg\+xml;base64,/g) ?? []).length, 2);
  for (const id of ["summary", sectionId("01_alpha"), sectionId("02_beta")]) assert.ok(html.includes(`id="${id}"`), id);
  assert.ok(html.includes("Paper versus measured") && html.includes("toy size"));

  const md = renderMarkdown(data, { outDir: join(dir, "..") });
  const base = dir.split("/").at(-1);
  assert.ok(md.includes(`](${base}/alpha_line.svg)`), "image path relative to the Markdown file");
  assert.ok(md.includes(`| ✗ | y grows | grows | flat |  | ${LEGACY} | toy size |`), md);
  assert.ok(md.includes(`| ? | z | ? | 3 | not comparable | ${LEGACY} |  |`), md);
  assert.ok(md.includes('| a, "b" | 1.5 | 0.333333 |'));
  assert.ok(md.includes("✓ reproduced: 2 · ✗ not reproduced: 1 · ? inconclusive: 1 · claims counted: 4"), md);
  assert.ok(md.indexOf("## What reproduced and what did not") < md.indexOf("## 01\\_alpha"), "summary first");
  assert.equal(md.includes("<script"), false);
  assert.ok(renderMarkdown(data).includes("](alpha_line.svg)"));
});

Deno.test("a file listed in the manifest but missing is a clear error; a bad claims file too", async () => {
  const dir = await fixture();
  await Deno.remove(join(dir, "beta_dots.svg"));
  await assert.rejects(
    loadReport(dir),
    /beta_dots\.svg is missing, but manifest\.json lists it for figure "beta_dots"; rerun/,
  );
  const dir2 = await fixture();
  await Deno.writeTextFile(join(dir2, "02_claims.json"), JSON.stringify([{ id: "x", claim: "c" }]));
  await assert.rejects(loadReport(dir2), /02_claims\.json: claims\[0\]\.paper must be a non-empty string/);
  await Deno.writeTextFile(
    join(dir2, "02_claims.json"),
    JSON.stringify([{ id: "x", claim: "c", paper: "p", measured: "m", reproduced: true, outcome: "reproduced" }]),
  );
  await assert.rejects(
    loadReport(dir2),
    /02_claims\.json: claims\[0\] mixes the legacy field "reproduced" with "outcome"/,
  );
  await assert.rejects(loadReport(dir2, { image: "gif" as "png" }), /options\.image must be "svg" or "png"/);
});

Deno.test("buildReport writes report.html and report.md atomically; PNG mode embeds PNGs", async () => {
  const dir = await fixture();
  const built = await buildReport({ figuresDir: dir, image: "png" });
  assert.equal(built.image, "png");
  const html = await Deno.readTextFile(built.html);
  assert.equal((html.match(/<img src="data:image\/png;base64,/g) ?? []).length, 2);
  assert.equal(await Deno.readTextFile(built.markdown), renderMarkdown(built.data, { outDir: dir }));
  const leftovers = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".tmp"));
  assert.deepEqual(leftovers, []);
  await assert.rejects(buildReport({ figuresDir: dir, colour: true } as never), /unknown option "colour"/);
});

Deno.test("deno task report: --verify fails when the browser is missing, and says how to install it", async () => {
  const dir = await fixture();
  const errors: string[] = [];
  const original = console.error;
  const log = console.log;
  console.error = (...parts: unknown[]) => void errors.push(parts.join(" "));
  console.log = () => {};
  try {
    const missing = join(dir, "no-such-chromium");
    assert.equal(await main(["--figures-dir", dir, "--verify", "--chromium", missing]), 1);
    assert.match(
      errors.join("\n"),
      /no chromium at .*no-such-chromium.*apt-get install.*--chromium PATH.*drop --verify/s,
    );
    assert.equal(await main(["--figures-dir", dir, "--chromium", missing]), 0, "without --verify the check is skipped");
    await assert.rejects(main(["--figures-dir", dir, "--verify", "--no-verify"]), /--verify or --no-verify, not both/);
  } finally {
    console.error = original;
    console.log = log;
  }
});

Deno.test({
  name: "the built report renders in headless chromium: no external request, every image shows, sections present",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    assert.ok(chromiumAvailable(), `chromium is needed for this test; install it with: ${CHROMIUM_INSTALL_HINT}`);
    const dir = await fixture();
    const built = await buildReport({ figuresDir: dir });
    const sections = ["summary", sectionId("01_alpha"), sectionId("02_beta")];
    const result = await verifyReport(built.html, { sections });
    assert.deepEqual(result.problems, []);
    assert.equal(result.images, 2);
    assert.ok(result.requests.every((r) => r.startsWith("file:") || r.startsWith("data:")), result.requests.join("\n"));

    // The checks can fail: an external image, a broken image and a missing section are all reported.
    const bad = join(dir, "bad.html");
    await Deno.writeTextFile(
      bad,
      `<!DOCTYPE html><html><body><section id="summary"><img alt="remote" src="http://127.0.0.1:9/x.png">` +
        `<img alt="broken" src="data:image/png;base64,AAAA"></section></body></html>`,
    );
    const failed = await verifyReport(bad, { sections: ["summary", "nb-missing"], timeoutMs: 20_000 });
    assert.equal(failed.ok, false);
    assert.ok(
      failed.problems.some((p) => p.startsWith("external request: http://127.0.0.1:9/x.png")),
      failed.problems.join("\n"),
    );
    assert.ok(failed.problems.includes("image does not show: broken"), failed.problems.join("\n"));
    assert.ok(failed.problems.includes("missing section: #nb-missing"));
  },
});

/** Rewrites `<dir>/manifest.json` with `change` applied to its figures object; returns the manifest's path. */
async function editManifest(dir: string, change: (figures: Record<string, unknown>) => void): Promise<string> {
  const path = join(dir, "manifest.json");
  const manifest = JSON.parse(await Deno.readTextFile(path));
  change(manifest.figures);
  await Deno.writeTextFile(path, JSON.stringify(manifest, null, 2));
  return path;
}

Deno.test("a null or malformed manifest entry is an error naming the manifest, the entry and the fix", async () => {
  const cases: [string, unknown, string][] = [
    ["null", null, "is null, not an object"],
    ["an array", [], "is an array, not an object"],
    ["a number", 3, "is a number, not an object"],
    ["no files", { name: "beta_dots", date: "2024-01-01T00:00:00Z" }, "has no files list of file names"],
    ["a non-string file", { name: "beta_dots", date: "2024-01-01T00:00:00Z", files: [3] }, "has no files list"],
    ["no name", { files: ["beta_dots.svg"], date: "2024-01-01T00:00:00Z" }, "has no name"],
    ["a bad kind", { name: "b", files: ["beta_dots.svg"], date: "d", kind: "movie" }, 'has kind "movie", not one of'],
  ];
  for (const [what, value, problem] of cases) {
    const dir = await fixture();
    const path = await editManifest(dir, (figures) => void (figures.beta_dots = value));
    const keys = Object.keys(JSON.parse(await Deno.readTextFile(path)).figures);
    const position = keys.indexOf("beta_dots") + 1;
    const expected = `report: ${path}: entry ${position} of ${keys.length}, figures["beta_dots"], ${problem}`;
    for (const attempt of [() => loadReport(dir), () => buildReport({ figuresDir: dir })]) {
      await assert.rejects(attempt, (err: Error) => {
        assert.ok(err.message.startsWith(expected), `${what}: ${err.message}`);
        assert.ok(
          err.message.includes('the manifest is corrupt: rerun the notebook that saves "beta_dots"') &&
            err.message.endsWith(`or remove the entry from ${path}`),
          err.message,
        );
        return true;
      });
    }
    assert.equal(await Deno.stat(join(dir, "report.html")).catch(() => null), null, `${what}: no report written`);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("manifest paths outside the figures folder are refused, and the outside file is never read", async () => {
  const secret = `<svg xmlns="http://www.w3.org/2000/svg"><text>OUTSIDE-SECRET-${crypto.randomUUID()}</text></svg>`;
  const name = (path: string) => path.split("/").at(-1)!;
  const cases: [string, (dir: string, outside: string) => string | Promise<string>, RegExp][] = [
    ["../", (_dir, outside) => `../${name(outside)}`, /which is outside the figures folder/],
    ["../../", (_dir, outside) => `../../${name(dirname(outside))}/${name(outside)}`, /which is outside the figures/],
    ["sub/../../", (_dir, outside) => `sub/../../${name(outside)}`, /which is outside the figures folder/],
    ["absolute", (_dir, outside) => outside, /which is outside the figures folder/],
    ["symlink", async (dir, outside) => {
      await Deno.symlink(outside, join(dir, "link.svg"));
      return "link.svg";
    }, /lists "link\.svg", which is a link to .*outside-.*, outside the figures folder/],
  ];
  // Every way Deno reads a file, wrapped to record the paths asked for.
  const readers = ["readFile", "readTextFile", "open", "readFileSync", "readTextFileSync", "openSync"] as const;
  const deno = Deno as unknown as Record<string, (path: string | URL, ...rest: unknown[]) => unknown>;
  const originals = Object.fromEntries(readers.map((r) => [r, deno[r]]));
  for (const [what, make, message] of cases) {
    const dir = await fixture();
    // The outside file lies next to the figures folder, as ../outside-<id>.svg.
    const outside = join(dirname(dir), `outside-${crypto.randomUUID()}.svg`);
    await Deno.writeTextFile(outside, secret);
    const file = await make(dir, outside);
    await editManifest(dir, (figures) => void ((figures.alpha_line as { files: string[] }).files = [file]));
    const opened: string[] = [];
    for (const r of readers) {
      deno[r] = (path, ...rest) => {
        opened.push(String(path));
        return originals[r](path, ...rest);
      };
    }
    try {
      await assert.rejects(buildReport({ figuresDir: dir }), (err: Error) => {
        assert.match(err.message, message, what);
        assert.ok(err.message.includes("alpha_line"), `${what}: names the entry: ${err.message}`);
        assert.ok(err.message.includes(JSON.stringify(file)), `${what}: names the path: ${err.message}`);
        return true;
      });
    } finally {
      for (const r of readers) deno[r] = originals[r];
    }
    const realOutside = await Deno.realPath(outside);
    for (const path of opened) {
      const real = await Deno.realPath(path).catch(() => path);
      assert.notEqual(real, realOutside, `${what}: ${path} was read`);
    }
    assert.ok(opened.some((p) => p.endsWith("manifest.json")), "the spy saw the manifest being read");
    // Nothing was written either, so no page holds the outside file's content.
    assert.equal(await Deno.stat(join(dir, "report.html")).catch(() => null), null, what);
    await Deno.remove(outside);
    await Deno.remove(dir, { recursive: true });
  }
  // The same files inside the folder are fine, and their content is embedded.
  const dir = await fixture();
  await Deno.mkdir(join(dir, "sub"));
  await Deno.writeTextFile(join(dir, "sub", "inside.svg"), secret);
  await editManifest(dir, (figures) => void ((figures.alpha_line as { files: string[] }).files = ["sub/inside.svg"]));
  const built = await buildReport({ figuresDir: dir, image: "svg" });
  const html = await Deno.readTextFile(built.html);
  assert.ok(html.includes(Buffer.from(secret).toString("base64")), "a file inside the folder is embedded");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a figures folder that does not exist, or holds no manifest.json, is an error naming the folder and the flag", async () => {
  const parent = await Deno.makeTempDir({ prefix: "attnlab_report_dirs_" });
  const missing = join(parent, "figurs");
  const empty = join(parent, "empty");
  await Deno.mkdir(empty);
  const fix = "give the folder that holds manifest.json";
  await assert.rejects(
    loadReport(missing),
    (err: Error) =>
      err.message.startsWith(`report: the figures folder ${missing} does not exist (resolved to ${missing}); ${fix}`),
  );
  await assert.rejects(
    buildReport({ figuresDir: empty }),
    /report: the figures folder .*empty holds no manifest\.json/,
  );
  await assert.rejects(checkFiguresDir(join(empty, "..", "empty", "x")), /does not exist/);
  const log = console.log;
  console.log = () => {};
  try {
    await assert.rejects(main(["--figures-dir", missing, "--no-verify"]), (err: Error) => {
      assert.equal(
        err.message,
        `report: --figures-dir ${missing} does not exist (resolved to ${missing}); ${fix} (the notebooks write ` +
          "figures/ and its manifest.json), e.g. --figures-dir figures",
      );
      return true;
    });
    await assert.rejects(
      main(["--figures-dir", empty, "--no-verify"]),
      new RegExp(`^Error: report: --figures-dir ${empty} holds no manifest\\.json .*run the notebooks first`),
    );
    // Without the flag, the default folder (here ATTNLAB_FIGURES_DIR, an empty folder) is checked the same way.
    await assert.rejects(
      main(["--no-verify"]),
      /report: the default figures folder \(ATTNLAB_FIGURES_DIR or figures\/\) .* holds no manifest\.json/,
    );
  } finally {
    console.log = log;
  }
  assert.deepEqual([...Deno.readDirSync(empty)], [], "no report written into the empty folder");
  // Through the task's error path: one error line, exit status 1.
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "lib", "report", "main.ts"), "--figures-dir", missing, "--no-verify"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 1, stderr);
  assert.equal(
    stderr,
    `error: report: --figures-dir ${missing} does not exist (resolved to ${missing}); ${fix} (the notebooks write figures/ and its manifest.json), e.g. --figures-dir figures\n`,
  );
  assert.equal(new TextDecoder().decode(out.stdout), "");
  await Deno.remove(parent, { recursive: true });
});

// ---------------------------------------------------------------------------------------------------------------
// Three outcomes, claims not counted, what would settle them, changes since the last commit, provenance.

const TEXT = { claim: "an effect", paper: "p", measured: "m" };
const CURRENT = "c".repeat(64);

/** A figures folder with claims in the three-outcome format (and one legacy file). */
async function outcomesFixture(dir?: string): Promise<string> {
  const out = dir ?? await Deno.makeTempDir({ prefix: "attnlab_report_outcomes_" });
  await Deno.mkdir(out, { recursive: true });
  const run = startRun({ notebook: "05_ablation", config: {}, seed: 0 });
  await saveClaims("05_claims", [
    {
      id: "diag_early",
      ...TEXT,
      claim: "Diag early helps",
      outcome: "reproduced",
      rule: "interval above 0.02",
      interval: { estimate: 0.05271, low: 0.031, high: 0.07442, level: 0.95, n: 3, method: "paired t" },
    },
    {
      id: "block_cost",
      ...TEXT,
      claim: "Larger blocks cost more",
      outcome: "inconclusive",
      reason: "within noise",
      rule: "ratio interval straddles 1.2",
      settle: { model: "one Diag layer", tokens: "n = 4K–16K", seeds: 10, flops: 2e9, note: "time the layer" },
    },
    {
      id: "rms_gain",
      ...TEXT,
      claim: "RMSNorm's gain helps a little",
      outcome: "inconclusive",
      reason: "underpowered",
      rule: "n < 13 seeds",
    },
    {
      id: "no_norm",
      ...TEXT,
      claim: "Without a norm training collapses",
      outcome: "not reproduced",
      reason: "confident absence",
      rule: "interval below ×160",
    },
    {
      id: "state",
      ...TEXT,
      claim: "The state has constant size",
      outcome: "reproduced",
      rule: "the state size is fixed by the code",
      evidence: false,
    },
    {
      id: "quarter",
      ...TEXT,
      claim: "Quarter bound",
      outcome: "inconclusive",
      reason: "by construction",
      rule: "an identity",
      evidence: false,
    },
  ], { run, outDir: out, backend: "cpu" });
  const old = startRun({ notebook: "06_rnn", config: {}, seed: 0 });
  await saveClaims("06_claims", [{ id: "speedup", ...TEXT, claim: "4,460× faster", reproduced: null }], {
    run: old,
    outDir: out,
    backend: "cpu",
  });
  return out;
}

Deno.test("the summary counts three outcomes; by-construction claims are listed apart and not counted", async () => {
  const dir = await outcomesFixture();
  const data = await loadReport(dir, { codeHash: CURRENT });
  // Counted: diag_early ✓, block_cost ?, rms_gain ?, no_norm ✗, speedup ? (legacy null); state and quarter apart.
  assert.deepEqual(data.summary, {
    total: 5,
    reproduced: 1,
    notReproduced: 1,
    inconclusive: 3,
    inconclusiveBy: { "within noise": 1, underpowered: 1, "not comparable": 1 },
    notCounted: 2,
  });
  const html = renderHtml(data);
  assert.ok(html.includes("✓ reproduced: 1") && html.includes("✗ not reproduced: 1"), "counts");
  assert.ok(html.includes("? inconclusive: 3") && html.includes("by construction, not counted: 2"), "counts");
  const md = renderMarkdown(data);
  assert.ok(
    md.includes(
      "✓ reproduced: 1 · ✗ not reproduced: 1 · ? inconclusive: 3 · claims counted: 5 · by construction, not counted: 2",
    ),
    md,
  );
  assert.ok(md.includes("Inconclusive by reason: not comparable 1, underpowered 1, within noise 1."), md);
  // Not counted, apart: both evidence:false claims, whatever their outcome.
  const apart = md.slice(md.indexOf("### By construction, not counted"), md.indexOf("### Inconclusive, and"));
  assert.ok(
    apart.includes("| ✓ | 05\\_ablation | The state has constant size | m |  | the state size is fixed"),
    apart,
  );
  assert.ok(apart.includes("| ? | 05\\_ablation | Quarter bound | m | by construction | an identity |"), apart);
  // Every counted inconclusive claim with its reason and what would settle it.
  const inconclusive = md.slice(md.indexOf("### Inconclusive, and"), md.indexOf("### Outcomes changed"));
  assert.ok(
    inconclusive.includes(
      "| ? | 05\\_ablation | Larger blocks cost more | within noise | one Diag layer; n = 4K–16K tokens; 10 seeds; " +
        "2.0e9 FLOPs; time the layer |",
    ),
    inconclusive,
  );
  assert.ok(inconclusive.includes("| ? | 05\\_ablation | RMSNorm's gain helps a little | underpowered | not stated |"));
  assert.ok(inconclusive.includes("| ? | 06\\_rnn | 4,460× faster | not comparable | not stated |"));
  assert.equal(inconclusive.includes("Quarter bound"), false, "by-construction claims are not among them");
  // The notebook's table shows the interval (its own column, as some claim here has one), the reason and the rule.
  assert.ok(
    md.includes(
      "| ✓ | Diag early helps | p | m | 0.05271 \\[0.031, 0.07442\\] (95% paired t, n = 3) |  | interval above 0.02 |",
    ),
    md,
  );
  assert.ok(
    md.includes("| ✗ | Without a norm training collapses | p | m |  | confident absence | interval below ×160 |  |"),
  );
  assert.ok(md.includes("| ✓ | The state has constant size | p | m |  | not counted as evidence | the state size"));
  const built = await buildReport({ figuresDir: dir, codeHash: CURRENT });
  assert.equal(await Deno.readTextFile(built.markdown), renderMarkdown(built.data, { outDir: dir }));
});

/** Runs git in `cwd` with a fixed identity; throws on failure. */
async function gitIn(cwd: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("git", {
    args: ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false", ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, `git ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
}

Deno.test("the report lists the claims whose outcome changed since HEAD, legacy claims normalised on both sides", async () => {
  const repo = await Deno.makeTempDir({ prefix: "attnlab_report_git_" });
  const figures = join(repo, "figures");
  // Before any git: says so, does not fail.
  const before = await loadReport(await outcomesFixture(figures), { codeHash: CURRENT });
  assert.equal(before.changes.compared, false);
  assert.match(
    before.changes.note,
    /is not inside a git repository, so the claims whose outcome changed .* not listed/,
  );
  await gitIn(repo, "init", "-q");
  const noCommit = await loadReport(figures, { codeHash: CURRENT });
  assert.match(noCommit.changes.note, /has no commit yet/);
  // The committed report: 05 as above, 06 legacy (reproduced: null), and a 07 file that will go.
  await saveClaims("07_claims", [{ id: "order", ...TEXT, claim: "T2 > Performer", reproduced: true }], {
    notebook: "07_complexity",
    outDir: figures,
    backend: "cpu",
  });
  await gitIn(repo, "add", "-A");
  await gitIn(repo, "commit", "-q", "-m", "committed report");
  const same = await loadReport(figures, { codeHash: CURRENT });
  assert.equal(same.changes.compared, true);
  assert.deepEqual(same.changes.changes, []);
  assert.match(same.changes.note, /^no claim changed its outcome since commit [0-9a-f]{10}$/);

  // Now: 05 rewritten (one outcome flips, one reason changes but not the outcome, one claim new, one gone);
  // 06 moves to the new format with the same outcome (inconclusive) and must not be listed; 07 is gone.
  const run = startRun({ notebook: "05_ablation", config: {}, seed: 0 });
  await saveClaims("05_claims", [
    { id: "diag_early", ...TEXT, claim: "Diag early helps", outcome: "not reproduced", rule: "interval below 0" },
    {
      id: "block_cost",
      ...TEXT,
      claim: "Larger blocks cost more",
      outcome: "inconclusive",
      reason: "underpowered",
      rule: "n < 3",
    },
    { id: "no_norm", ...TEXT, claim: "Without a norm training collapses", outcome: "reproduced", rule: "r" },
    { id: "fresh", ...TEXT, claim: "A new claim", outcome: "reproduced", rule: "r" },
    { id: "state", ...TEXT, claim: "The state has constant size", outcome: "reproduced", rule: "r", evidence: false },
    { id: "quarter", ...TEXT, claim: "Quarter bound", outcome: "inconclusive", reason: "by construction", rule: "r" },
  ], { run, outDir: figures, backend: "cpu" });
  await saveClaims("06_claims", [{
    id: "speedup",
    ...TEXT,
    claim: "4,460× faster",
    outcome: "inconclusive",
    reason: "not comparable",
    rule: "GPU batched against CPU batch 1",
  }], { notebook: "06_rnn", outDir: figures, backend: "cpu" });
  await Deno.remove(join(figures, "07_claims.json"));
  await pruneManifest(figures);

  const data = await loadReport(figures, { codeHash: CURRENT });
  assert.equal(data.changes.compared, true);
  assert.match(data.changes.commit ?? "", /^[0-9a-f]{40}$/);
  assert.deepEqual(
    data.changes.changes.map((c) => [c.file, c.notebook, c.id, c.before, c.after]),
    [
      ["05_claims.json", "05_ablation", "diag_early", "reproduced", "not reproduced"],
      ["05_claims.json", "05_ablation", "no_norm", "not reproduced", "reproduced"],
      ["05_claims.json", "05_ablation", "fresh", null, "reproduced"],
      ["05_claims.json", "05_ablation", "rms_gain", "inconclusive", null],
      ["07_claims.json", "07_complexity", "order", "reproduced", null],
    ],
  );
  assert.deepEqual(data.changes.problems, []);
  assert.match(data.changes.note, /^5 claim\(s\) differ from commit [0-9a-f]{10}$/);
  const md = renderMarkdown(data);
  const section = md.slice(md.indexOf("### Outcomes changed"), md.indexOf("### Provenance"));
  assert.ok(section.includes("| 05\\_ablation | Diag early helps | ✓ reproduced | ✗ not reproduced |"), section);
  assert.ok(
    section.includes(
      "| 05\\_ablation | Without a norm training collapses | ✗ not reproduced (confident absence) | ✓ reproduced |",
    ),
    section,
  );
  assert.ok(section.includes("| 05\\_ablation | A new claim | (new since) | ✓ reproduced |"), section);
  assert.ok(section.includes("| 07\\_complexity | T2 > Performer | ✓ reproduced | (gone) |"), section);
  assert.equal(section.includes("4,460"), false, "legacy null and inconclusive are the same outcome");
  assert.ok(renderHtml(data).includes('id="changes"'));

  // A copy outside git compares with the committed folder given as the baseline.
  const copy = await Deno.makeTempDir({ prefix: "attnlab_report_copy_" });
  for (const e of Deno.readDirSync(figures)) await Deno.copyFile(join(figures, e.name), join(copy, e.name));
  assert.equal((await loadReport(copy, { codeHash: CURRENT })).changes.compared, false);
  const viaBaseline = await loadReport(copy, { codeHash: CURRENT, baseline: figures });
  assert.deepEqual(viaBaseline.changes.changes, data.changes.changes);

  // A committed claims file that cannot be read is named, and left out; the report still builds.
  await Deno.writeTextFile(join(figures, "06_claims.json"), "[{");
  await gitIn(repo, "add", "-A");
  await gitIn(repo, "commit", "-q", "-m", "broken claims");
  await saveClaims("06_claims", [{ id: "speedup", ...TEXT, reproduced: null }], {
    notebook: "06_rnn",
    outDir: figures,
    backend: "cpu",
  });
  const broken = await loadReport(figures, { codeHash: CURRENT });
  assert.equal(broken.changes.problems.length, 1);
  assert.match(
    broken.changes.problems[0],
    /^06_claims\.json at [0-9a-f]{10} cannot be read \(.*JSON.*\); its claims are not compared$/,
  );
  assert.equal(broken.changes.changes.some((c) => c.file === "06_claims.json"), false);
  await Deno.remove(repo, { recursive: true });
  await Deno.remove(copy, { recursive: true });
});

Deno.test("the report marks results made from a dirty tree, under other code, or with no code hash", async () => {
  const dir = await outcomesFixture();
  const other = "d".repeat(64);
  const path = join(dir, "manifest.json");
  const manifest = JSON.parse(await Deno.readTextFile(path));
  const e05 = manifest.figures["05_claims"];
  const e06 = manifest.figures["06_claims"];
  Object.assign(e05, { dirty: true, codeHash: other });
  Object.assign(e06, { dirty: false, codeHash: CURRENT });
  await Deno.writeTextFile(path, JSON.stringify(manifest));
  const data = await loadReport(dir, { codeHash: CURRENT });
  assert.deepEqual(data.provenance, {
    codeHash: CURRENT,
    total: 2,
    dirty: ["05_claims"],
    otherCode: ["05_claims"],
    noCodeHash: [],
    // Both saved at the default scale: no scale tag on either.
    scales: { full: ["05_claims", "06_claims"] },
  });
  const [n05, n06] = data.notebooks;
  assert.deepEqual(n05.claims[0].flags, ["uncommitted changes", "other code"]);
  assert.deepEqual(n05.runs.map((r) => r.flags), [["uncommitted changes", "other code"]]);
  assert.deepEqual(n06.claims[0].flags, []);
  const md = renderMarkdown(data);
  assert.ok(md.includes("- 1 of 2 results were made from a tree with uncommitted changes: 05\\_claims."), md);
  assert.ok(md.includes("- 1 of 2 results were made under other code than the current tree's"), md);
  assert.ok(md.includes("Made with: uncommitted changes; other code."), md);
  assert.ok(md.includes("(clean tree, current code)"), "the clean run says so");
  const html = renderHtml(data);
  assert.ok(html.includes("<td>uncommitted changes; other code</td>"), "the run table's provenance column");

  // Entries saved before code hashes were recorded say that they cannot be judged.
  delete e05.codeHash;
  e05.dirty = false;
  await Deno.writeTextFile(path, JSON.stringify(manifest));
  const old = await loadReport(dir, { codeHash: CURRENT });
  assert.deepEqual([old.provenance.dirty, old.provenance.otherCode, old.provenance.noCodeHash], [[], [], [
    "05_claims",
  ]]);
  assert.ok(renderMarkdown(old).includes("1 of 2 results record no code hash (saved before code hashes were recorded"));
  // All clean.
  e05.codeHash = CURRENT;
  await Deno.writeTextFile(path, JSON.stringify(manifest));
  const clean = renderMarkdown(await loadReport(dir, { codeHash: CURRENT }));
  assert.ok(clean.includes("- All 2 results were made from a clean tree under the current code."), clean);
  // The current code hash defaults to the library's.
  assert.equal((await loadReport(dir)).provenance.codeHash, await libraryCodeHash());
  await assert.rejects(loadReport(dir, { codeHash: "abc" }), /options\.codeHash must be 64 lowercase hex digits/);
  await assert.rejects(loadReport(dir, { baseline: "" }), /options\.baseline must be a folder path/);
});
