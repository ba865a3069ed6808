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
import { plotDocument, saveClaims, saveFigure, saveTable, startRun } from "../lib/figures/mod.ts";
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
  assert.deepEqual(data.summary, { total: 4, reproduced: 2, notReproduced: 1, notComparable: 1 });
  assert.deepEqual(data.summary, countClaims(data.notebooks.flatMap((n) => n.claims.flatMap((c) => c.claims))));
  const [alpha, beta] = data.notebooks;
  assert.deepEqual(alpha.figures.map((f) => [f.entry.name, f.mime]), [["alpha_line", "image/svg+xml"]]);
  assert.deepEqual(alpha.tables[0].columns, ["model", "paper", "measured"]);
  assert.deepEqual(alpha.tables[0].rows, [['a, "b"', "1.5", "0.333333"], [HOSTILE, "2", ""]]);
  assert.equal(beta.runs.length, 1);
  assert.equal(beta.runs[0].backend, "wasm");
  assert.deepEqual(beta.runs[0].config, { m: 2 });

  const html = renderHtml(data);
  assert.equal(html.includes("<script"), false, "user text must be escaped");
  assert.equal(html.includes("http://") || html.includes("https://"), false, "no external URL");
  assert.ok(
    html.includes("✓ reproduced: 2") && html.includes("✗ not reproduced: 1") && html.includes("n/a not comparable: 1"),
  );
  assert.equal((html.match(/<img src="data:image\/svg\+xml;base64,/g) ?? []).length, 2);
  for (const id of ["summary", sectionId("01_alpha"), sectionId("02_beta")]) assert.ok(html.includes(`id="${id}"`), id);
  assert.ok(html.includes("Paper versus measured") && html.includes("toy size"));

  const md = renderMarkdown(data, { outDir: join(dir, "..") });
  const base = dir.split("/").at(-1);
  assert.ok(md.includes(`](${base}/alpha_line.svg)`), "image path relative to the Markdown file");
  assert.ok(md.includes("| ✗ | y grows | grows | flat | toy size |"), md);
  assert.ok(md.includes('| a, "b" | 1.5 | 0.333333 |'));
  assert.ok(md.includes("✓ reproduced: 2 · ✗ not reproduced: 1 · n/a not comparable: 1 · claims: 4"));
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
