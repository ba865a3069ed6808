/**
 * Tests for lib/figures: snapshot SVGs, reproducible files, atomic writes,
 * the manifest, CSV formatting, PNG rendering and error messages.
 *
 * Snapshots live in tests/snapshots/<name>.svg. When a figure changes on
 * purpose, accept the new output with
 * `ATTNLAB_UPDATE_SNAPSHOTS=1 deno test -A tests/figures_test.ts`.
 */

import { strict as assert } from "node:assert";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as Plot from "@observablehq/plot";
import { initBackend } from "../lib/backend.ts";
import { writeFileAtomic } from "../lib/figures/atomic.ts";
import {
  gitState,
  JUPYTER_DISPLAY,
  plotDocument,
  readManifest,
  readPngSize,
  renderSvg,
  saveFigure,
  show,
  startRun,
  svgToPng,
  table,
  toCsv,
  toSvgString,
} from "../lib/figures/mod.ts";

const SNAPSHOT_DIR = join(dirname(fileURLToPath(import.meta.url)), "snapshots");
const UPDATE = Deno.env.get("ATTNLAB_UPDATE_SNAPSHOTS") === "1";

// Nothing in this file may write to the repository's figures/ folder.
Deno.env.set("ATTNLAB_FIGURES_DIR", await Deno.makeTempDir({ prefix: "attnlab_figures_env_" }));

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "attnlab_figures_test_" });
}

async function assertSnapshot(name: string, svg: string): Promise<void> {
  const expectedPath = join(SNAPSHOT_DIR, `${name}.svg`);
  const changedPath = join(SNAPSHOT_DIR, `${name}-changed.svg`);
  if (UPDATE) {
    await Deno.mkdir(SNAPSHOT_DIR, { recursive: true });
    await Deno.writeTextFile(expectedPath, svg);
    await Deno.remove(changedPath).catch(() => {});
    return;
  }
  const expected = existsSync(expectedPath) ? await Deno.readTextFile(expectedPath) : undefined;
  if (expected === svg) {
    await Deno.remove(changedPath).catch(() => {});
    return;
  }
  await Deno.writeTextFile(changedPath, svg);
  let at = 0;
  while (expected !== undefined && at < svg.length && svg[at] === expected[at]) at++;
  const why = expected === undefined ? "has no snapshot yet" : `differs from ${expectedPath} at character ${at}`;
  assert.fail(
    `snapshot "${name}" ${why}; the new output is in ${changedPath}. ` +
      `If the change is intended, accept it with ATTNLAB_UPDATE_SNAPSHOTS=1 deno test -A tests/figures_test.ts`,
  );
}

// Fixed data: the cost of three attention variants over sequence lengths.
function scalingRows() {
  const rows: { method: string; n: number; ms: number }[] = [];
  for (const method of ["softmax", "linear", "flash"]) {
    for (let k = 6; k <= 12; k++) {
      const n = 2 ** k;
      const ms = method === "linear" ? n / 64 : method === "flash" ? (n * n) / 40000 : (n * n) / 12000;
      rows.push({ method, n, ms });
    }
  }
  return rows;
}

function logLinePlot() {
  const rows = scalingRows();
  return Plot.plot({
    document: plotDocument(),
    x: { type: "log", base: 2, label: "sequence length" },
    y: { type: "log", label: "time (ms)", grid: true },
    color: { legend: true },
    marks: [
      Plot.line(rows, { x: "n", y: "ms", stroke: "method" }),
      Plot.dot(rows, { x: "n", y: "ms", fill: "method", clip: true }),
    ],
  });
}

function heatmapRows() {
  const rows: { query: number; key: number; weight: number }[] = [];
  for (let q = 0; q < 8; q++) {
    let total = 0;
    for (let k = 0; k <= q; k++) total += Math.exp(-(q - k) / 2);
    for (let k = 0; k < 8; k++) rows.push({ query: q, key: k, weight: k <= q ? Math.exp(-(q - k) / 2) / total : 0 });
  }
  return rows;
}

function heatmapPlot() {
  return Plot.plot({
    document: plotDocument(),
    color: { legend: true, scheme: "viridis", label: "attention weight" },
    marks: [Plot.cell(heatmapRows(), { x: "key", y: "query", fill: "weight", inset: 0.5 })],
  });
}

function titledPlot() {
  return Plot.plot({
    document: plotDocument(),
    title: "Perplexity by attention variant",
    subtitle: "validation set, 3 seeds",
    caption: "Lower is better. Error bars: one standard deviation.",
    marks: [
      Plot.barY([{ v: "softmax", ppl: 21.4 }, { v: "linear", ppl: 24.9 }, { v: "flash", ppl: 21.4 }], {
        x: "v",
        y: "ppl",
        fill: "steelblue",
      }),
      Plot.ruleY([0]),
    ],
  });
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

function darkPixels(pixels: Uint8Array): number {
  let count = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    if (pixels[i + 3] > 0 && pixels[i] < 100 && pixels[i + 1] < 100 && pixels[i + 2] < 100) count++;
  }
  return count;
}

Deno.test("snapshot: line plot with log axes and a swatch legend", async () => {
  await assertSnapshot("log_line", toSvgString(logLinePlot()));
});

Deno.test("snapshot: heatmap with Plot.cell and a colour-ramp legend", async () => {
  await assertSnapshot("cell_heatmap", toSvgString(heatmapPlot()));
});

Deno.test("snapshot: plot with title, subtitle and caption", async () => {
  await assertSnapshot("titled_bars", toSvgString(titledPlot()));
});

Deno.test("toSvgString gives the same bytes whatever was drawn before (clip ids renumbered)", () => {
  const first = toSvgString(logLinePlot());
  for (let i = 0; i < 3; i++) toSvgString(logLinePlot());
  const again = toSvgString(logLinePlot());
  assert.equal(again, first);
  assert.match(first, /id="plot-clip-1"/);
  assert.match(first, /clip-path="url\(#plot-clip-1\)"/);
  assert.doesNotMatch(first, /plot-clip-[2-9]/);
});

Deno.test("toSvgString makes one standalone SVG from a <figure> wrapper", () => {
  const svg = toSvgString(titledPlot());
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="'), svg.slice(0, 80));
  assert.doesNotMatch(svg, /<(figure|h2|h3|figcaption|div|span)\b/);
  assert.match(svg, /<text [^>]*font-weight="bold">Perplexity by attention variant<\/text>/);
  assert.match(svg, />validation set, 3 seeds</);
  assert.match(svg, />Lower is better\. Error bars: one standard deviation\.</);
  assert.match(svg, /font-family="DejaVu Sans, sans-serif"/);
  assert.doesNotMatch(svg, /system-ui/);
});

Deno.test("toSvgString rounds geometry to 2 decimals but leaves text alone", () => {
  const svg = toSvgString(Plot.plot({
    document: plotDocument(),
    x: { type: "log" },
    marks: [Plot.lineY([1, 3.14159, 2], { x: [1, 7, 13] }), Plot.text(["3.14159265"], { x: 3, y: 2 })],
  }));
  for (const [, name, value] of svg.matchAll(/ (d|transform|x|y|x1|x2|y1|y2|width|height)="([^"]*)"/g)) {
    assert.doesNotMatch(value, /\d\.\d{3}/, `${name}="${value}" keeps more than 2 decimals`);
  }
  assert.match(svg, />3\.14159265</);
});

Deno.test("toSvgString accepts an SVG string, adds xmlns and renumbers ids with their references", () => {
  const svg = toSvgString(
    '<svg width="20" height="10"><defs><clipPath id="c17"><rect width="5.123456" height="5"/></clipPath></defs>' +
      '<rect clip-path="url(#c17)" width="20" height="10" fill="red"/><use href="#c17"/><text>a &amp; b</text></svg>',
  );
  assert.equal(
    svg,
    '<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10" font-family="DejaVu Sans, sans-serif">' +
      '<rect x="0" y="0" width="20" height="10" fill="white"/><defs><clipPath id="c1"><rect width="5.12" height="5"/>' +
      '</clipPath></defs><rect clip-path="url(#c1)" width="20" height="10" fill="red"/><use href="#c1"/>' +
      "<text>a &amp; b</text></svg>\n",
  );
});

Deno.test("toSvgString gives the same SVG for a Plot element and for its outerHTML string", () => {
  for (const plot of [titledPlot(), heatmapPlot(), logLinePlot()]) {
    assert.equal(toSvgString((plot as unknown as { outerHTML: string }).outerHTML), toSvgString(plot));
  }
});

Deno.test("plotDocument's canvas stand-in makes Plot.raster deterministic", () => {
  const raster = () =>
    toSvgString(Plot.plot({
      document: plotDocument(),
      color: { legend: true },
      marks: [Plot.raster({ fill: (x: number, y: number) => x * y, x1: 0, x2: 1, y1: 0, y2: 1, width: 8, height: 8 })],
    }));
  const svg = raster();
  assert.equal(raster(), svg);
  const images = [...svg.matchAll(/href="data:image\/png;base64,([^"]+)"/g)].map((m) =>
    Uint8Array.from(atob(m[1]), (c) => c.charCodeAt(0))
  );
  assert.equal(images.length, 2, "one image for the legend ramp, one for the raster");
  assert.deepEqual(readPngSize(images[0]), { width: 256, height: 1 });
  assert.deepEqual(readPngSize(images[1]), { width: 8, height: 8 });
});

Deno.test("saveFigure writes byte-identical SVG, PNG and CSV on two saves", async () => {
  const [a, b] = [await tempDir(), await tempDir()];
  const rows = scalingRows();
  await saveFigure("scaling", logLinePlot(), { data: rows, outDir: a, seed: 1 });
  await saveFigure("scaling", logLinePlot(), { data: rows, outDir: b, seed: 1 });
  for (const file of ["scaling.svg", "scaling.png", "scaling.csv"]) {
    assert.deepEqual(await Deno.readFile(join(a, file)), await Deno.readFile(join(b, file)), file);
  }
  assert.deepEqual(await listDir(a), ["manifest.json", "scaling.csv", "scaling.png", "scaling.svg"]);
});

Deno.test("saveFigure writes atomically: readers never see partial files, no temp files remain", async () => {
  const dir = await tempDir();
  const expected = await saveFigure("heat", heatmapPlot(), { data: heatmapRows(), outDir: dir });
  const svgBytes = await Deno.readFile(expected.paths.svg);
  const pngBytes = await Deno.readFile(expected.paths.png);
  let done = false;
  let reads = 0;
  const reader = (async () => {
    while (!done) {
      assert.deepEqual(await Deno.readFile(expected.paths.svg), svgBytes);
      assert.deepEqual(await Deno.readFile(expected.paths.png), pngBytes);
      reads++;
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  })();
  await Promise.all(
    Array.from({ length: 4 }, () => saveFigure("heat", heatmapPlot(), { data: heatmapRows(), outDir: dir })),
  );
  done = true;
  await reader;
  assert.ok(reads > 0);
  assert.deepEqual(await listDir(dir), ["heat.csv", "heat.png", "heat.svg", "manifest.json"]);
});

Deno.test("writeFileAtomic removes its temp file when the rename fails", async () => {
  const dir = await tempDir();
  await Deno.mkdir(join(dir, "taken.svg"));
  await assert.rejects(writeFileAtomic(join(dir, "taken.svg"), "<svg/>"));
  assert.deepEqual(await listDir(dir), ["taken.svg"]);
});

Deno.test("manifest records backend, seed, config, notebook, commit and timing, sorted by name", async () => {
  await initBackend({ backend: "cpu", quiet: true });
  const dir = await tempDir();
  const run = startRun({ notebook: "01_scaling", config: { lengths: [64, 128], heads: 4 }, seed: 42 });
  await saveFigure("zeta", titledPlot(), { run, outDir: dir });
  await saveFigure("alpha", heatmapPlot(), { data: heatmapRows(), run, outDir: dir, durationMs: 1234.4 });
  await saveFigure("mid", heatmapPlot(), { outDir: dir, backend: "wasm", config: { n: 1 }, seed: "abc" });
  await saveFigure("alpha", heatmapPlot(), { data: heatmapRows(), run, outDir: dir, durationMs: 1234.4 });

  const text = await Deno.readTextFile(join(dir, "manifest.json"));
  const manifest = JSON.parse(text);
  assert.deepEqual(Object.keys(manifest), ["figures"]);
  assert.deepEqual(Object.keys(manifest.figures), ["alpha", "mid", "zeta"]);
  assert.deepEqual(await readManifest(dir), manifest);

  const alpha = manifest.figures.alpha;
  assert.deepEqual(Object.keys(alpha), [
    "name",
    "files",
    "notebook",
    "config",
    "seed",
    "backend",
    "commit",
    "dirty",
    "date",
    "durationMs",
  ]);
  assert.equal(alpha.name, "alpha");
  assert.deepEqual(alpha.files, ["alpha.svg", "alpha.png", "alpha.csv"]);
  assert.equal(alpha.notebook, "01_scaling");
  assert.deepEqual(alpha.config, { lengths: [64, 128], heads: 4 });
  assert.equal(alpha.seed, 42);
  assert.equal(alpha.backend, "cpu");
  assert.equal(alpha.durationMs, 1234);
  assert.ok(alpha.commit === null || /^[0-9a-f]{40}$/.test(alpha.commit), String(alpha.commit));
  assert.ok(alpha.dirty === null || typeof alpha.dirty === "boolean");
  assert.equal(new Date(alpha.date).toISOString(), alpha.date);

  const zeta = manifest.figures.zeta;
  assert.deepEqual(zeta.files, ["zeta.svg", "zeta.png"]);
  assert.equal(typeof zeta.durationMs, "number");
  assert.ok(zeta.durationMs >= 0);

  const mid = manifest.figures.mid;
  assert.equal(mid.backend, "wasm");
  assert.equal(mid.seed, "abc");
  assert.deepEqual(mid.config, { n: 1 });
  assert.equal(mid.durationMs, null);
  assert.equal("notebook" in mid, false);
});

Deno.test("saveFigure uses ATTNLAB_FIGURES_DIR when no outDir is given, and drops a stale CSV", async () => {
  const dir = await tempDir();
  const previous = Deno.env.get("ATTNLAB_FIGURES_DIR")!;
  Deno.env.set("ATTNLAB_FIGURES_DIR", dir);
  try {
    await saveFigure("env_dir", titledPlot(), { data: [{ a: 1 }] });
    assert.ok(existsSync(join(dir, "env_dir.csv")));
    const saved = await saveFigure("env_dir", titledPlot());
    assert.deepEqual(await listDir(dir), ["env_dir.png", "env_dir.svg", "manifest.json"]);
    assert.deepEqual(saved.entry.files, ["env_dir.svg", "env_dir.png"]);
  } finally {
    Deno.env.set("ATTNLAB_FIGURES_DIR", previous);
  }
});

Deno.test("gitState: null outside git, and ignores the figures folder when judging dirty", async () => {
  assert.deepEqual(await gitState(await tempDir()), { commit: null, dirty: null });
  const hasGit = await new Deno.Command("git", { args: ["--version"], stdout: "null", stderr: "null" }).output()
    .then((o) => o.success, () => false);
  if (!hasGit) return;
  const repo = await tempDir();
  const git = (...args: string[]) =>
    new Deno.Command("git", {
      args: ["-c", "user.name=test", "-c", "user.email=test@example.com", ...args],
      cwd: repo,
      stdout: "null",
      stderr: "null",
    }).output();
  await git("init", "-q");
  assert.deepEqual(await gitState(repo), { commit: null, dirty: false });
  await Deno.writeTextFile(join(repo, "code.ts"), "export {};\n");
  await git("add", "code.ts");
  await git("commit", "-q", "-m", "init");
  await Deno.mkdir(join(repo, "figures"));
  await Deno.writeTextFile(join(repo, "figures", "a.svg"), "<svg/>");
  const clean = await gitState(repo, join(repo, "figures"));
  assert.match(clean.commit ?? "", /^[0-9a-f]{40}$/);
  assert.equal(clean.dirty, false);
  await Deno.writeTextFile(join(repo, "code.ts"), "export const x = 1;\n");
  assert.equal((await gitState(repo, join(repo, "figures"))).dirty, true);
});

Deno.test("toCsv quotes and rounds exactly as specified", () => {
  const rows = [
    { name: "plain", value: 1 / 3, count: 12345678901, ok: true },
    { name: "comma, inside", value: -0, note: 'say "hi"' },
    { name: "line\nbreak", value: 1e-7 / 3, count: -42, ok: false },
    { name: "carriage\rreturn", value: 0.1 + 0.2, when: new Date(Date.UTC(2024, 0, 2, 3, 4, 5)) },
    { name: "specials", value: NaN, count: Infinity, note: null, big: 2n ** 70n },
    { name: "", value: -Infinity, note: undefined, ok: null },
    { name: "rounding", value: 2 / 3, count: 123456.789, note: "  spaces  " },
  ];
  const expected = [
    "name,value,count,ok,note,when,big",
    "plain,0.333333,12345678901,true,,,",
    '"comma, inside",0,,,"say ""hi""",,',
    '"line\nbreak",3.33333e-8,-42,false,,,',
    '"carriage\rreturn",0.3,,,,2024-01-02T03:04:05.000Z,',
    "specials,NaN,Infinity,,,,1180591620717411303424",
    ",-Infinity,,,,,",
    "rounding,0.666667,123457,,  spaces  ,,",
    "",
  ].join("\n");
  assert.equal(toCsv(rows), expected);
  assert.equal(toCsv([{ x: Math.PI }], { digits: 3 }), "x\n3.14\n");
  assert.equal(toCsv([]), "");
});

Deno.test("PNG: valid signature, 2x pixel size from IHDR, and text is drawn with the bundled font", async () => {
  const saved = await saveFigure("sized", titledPlot(), { outDir: await tempDir() });
  const width = Number(/^<svg [^>]*?width="(\d+)"/.exec(saved.svg)![1]);
  const height = Number(/^<svg [^>]*?height="(\d+)"/.exec(saved.svg)![1]);
  const png = await Deno.readFile(saved.paths.png);
  assert.deepEqual([...png.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10]);
  assert.deepEqual(readPngSize(png), { width: 2 * width, height: 2 * height });

  const textOnly = '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40">' +
    '<text x="10" y="30" font-size="20" font-family="DejaVu Sans, sans-serif">Attention</text></svg>';
  const empty = '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40"></svg>';
  const text = renderSvg(textOnly);
  assert.equal(text.width, 400);
  assert.equal(text.height, 80);
  assert.ok(darkPixels(text.pixels) > 300, `expected drawn glyphs, got ${darkPixels(text.pixels)} dark pixels`);
  assert.equal(darkPixels(renderSvg(empty).pixels), 0);
  assert.notDeepEqual(svgToPng(textOnly), svgToPng(empty));
  assert.deepEqual(svgToPng(textOnly), svgToPng(textOnly));
  assert.ok(darkPixels(renderSvg(saved.svg).pixels) > 1000, "the title and axis labels are drawn");
});

Deno.test("bad inputs give clear errors and write nothing", async () => {
  const dir = await tempDir();
  const plot = titledPlot();
  await assert.rejects(
    saveFigure("Attention Map", plot, { outDir: dir }),
    /saveFigure: name must match .* got "Attention Map"; use for example "attention_map"/,
  );
  await assert.rejects(saveFigure("_x", plot, { outDir: dir }), /name must match/);
  await assert.rejects(
    saveFigure("ok", plot, { outDir: dir, colour: "red" } as never),
    /saveFigure: unknown option "colour"; expected one of data, run/,
  );
  await assert.rejects(
    saveFigure("ok", plot, { outDir: dir, data: { n: 1 } as never }),
    /saveFigure: options\.data must be an array of row objects/,
  );
  await assert.rejects(
    saveFigure("ok", plot, { outDir: dir, data: [{ n: 1 }, 5] as never }),
    /options\.data\[1\] must be a plain object/,
  );
  await assert.rejects(
    saveFigure("ok", plot, { outDir: dir, data: [{ n: { nested: 1 } }] as never }),
    /options\.data\[0\]\.n must be a string, number.*flatten nested values/,
  );
  await assert.rejects(saveFigure("ok", 42 as never, { outDir: dir }), /expected the element returned by Plot\.plot/);
  await assert.rejects(saveFigure("ok", "<div></div>", { outDir: dir }), /expected SVG markup starting with "<svg"/);
  await assert.rejects(saveFigure("ok", plot, { outDir: dir, seed: NaN }), /seed must be a finite number/);
  await assert.rejects(saveFigure("ok", plot, { outDir: dir, config: [1] as never }), /config must be a plain object/);
  await assert.rejects(saveFigure("ok", plot, { outDir: dir, durationMs: -1 }), /durationMs must be a non-negative/);
  assert.deepEqual(await listDir(dir), []);
  assert.throws(() => toCsv([{ a: 1 }], { digit: 3 } as never), /toCsv: unknown option "digit"/);
  assert.throws(() => toCsv("a,b" as never), /rows must be an array of row objects/);
  assert.throws(() => table([{ a: 1 }], { rows: 3 } as never), /table: unknown option "rows"/);
  assert.throws(() => startRun({ sead: 1 } as never), /startRun: unknown option "sead"/);
});

Deno.test("saveFigure and show display inline as image/svg+xml", async () => {
  const saved = await saveFigure("inline", heatmapPlot(), { outDir: await tempDir() });
  const bundle = saved[JUPYTER_DISPLAY]();
  assert.equal(bundle["image/svg+xml"], saved.svg);
  assert.match(bundle["text/plain"], /inline\.svg\n.*inline\.png$/);
  const shown = show(heatmapPlot());
  assert.equal(shown[JUPYTER_DISPLAY]()["image/svg+xml"], saved.svg);
});

Deno.test("table renders HTML, Markdown and plain text, escaping cells and truncating long inputs", () => {
  const t = table([{ method: "<soft>max", ms: 1.23456 }, { method: "a|b", ms: 10 }, { method: "c" }], {
    maxRows: 2,
  });
  const bundle = t[JUPYTER_DISPLAY]();
  assert.equal(
    bundle["text/html"],
    '<table><caption style="caption-side: bottom">… 1 more row (3 in all)</caption>' +
      '<thead><tr><th>method</th><th style="text-align: right">ms</th></tr></thead><tbody>' +
      '<tr><td>&lt;soft&gt;max</td><td style="text-align: right">1.235</td></tr>' +
      '<tr><td>a|b</td><td style="text-align: right">10</td></tr></tbody></table>',
  );
  assert.equal(
    bundle["text/markdown"],
    "| method | ms |\n| :--- | ---: |\n| &lt;soft&gt;max | 1.235 |\n| a\\|b | 10 |\n\n… 1 more row (3 in all)",
  );
  assert.equal(
    bundle["text/plain"],
    "method        ms\n---------  -----\n<soft>max  1.235\na|b           10\n… 1 more row (3 in all)",
  );
  assert.equal(String(t), bundle["text/plain"]);
});

Deno.test("pruneManifest drops entries whose files are gone and keeps the rest", async () => {
  const { pruneManifest, readManifest, recordFigure } = await import("../lib/figures/manifest.ts");
  const dir = await Deno.makeTempDir();
  const entry = (name: string) => ({
    name,
    files: [`${name}.svg`],
    config: {},
    seed: null,
    backend: null,
    commit: null,
    dirty: null,
    date: new Date(0).toISOString(),
    durationMs: null,
  });
  await Deno.writeTextFile(`${dir}/kept.svg`, "<svg/>");
  await recordFigure(dir, entry("kept"));
  await recordFigure(dir, entry("gone"));
  assert.deepEqual(await pruneManifest(dir), ["gone"]);
  assert.deepEqual(Object.keys((await readManifest(dir)).figures), ["kept"]);
  assert.deepEqual(await pruneManifest(`${dir}/missing`), []);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("captions, tables and claims are recorded in the manifest; entries without kind stay figures", async () => {
  const { entryKind, saveClaims, saveTable } = await import("../lib/figures/mod.ts");
  const dir = await tempDir();
  const run = startRun({ notebook: "09_demo", config: { n: 8 }, seed: 3 });
  const fig = await saveFigure("demo_fig", titledPlot(), { run, outDir: dir, caption: "A & B <shown>" });
  assert.equal(fig.entry.caption, "A & B <shown>");
  assert.equal("kind" in fig.entry, false);
  const rows = [{ model: "vanilla", paper: 1.5, measured: 1 / 3 }];
  const tab = await saveTable("demo_table", rows, { run, outDir: dir, caption: "Paper versus measured" });
  assert.equal(await Deno.readTextFile(join(dir, "demo_table.csv")), toCsv(rows));
  const claims = [
    { id: "a", claim: "x is small", paper: "< 1", measured: "0.5", reproduced: true },
    { id: "b", claim: "y is large", paper: "> 1", measured: "0.5", reproduced: false, note: "toy size" },
    { id: "c", claim: "z", paper: "?", measured: "3", reproduced: null },
  ];
  const saved = await saveClaims("09_claims", claims, { run, outDir: dir });
  assert.deepEqual(JSON.parse(await Deno.readTextFile(saved.path)), claims);
  const manifest = await readManifest(dir);
  assert.deepEqual(Object.keys(manifest.figures), ["09_claims", "demo_fig", "demo_table"]);
  assert.deepEqual(manifest.figures.demo_table, tab.entry);
  assert.equal(manifest.figures.demo_table.kind, "table");
  assert.equal(manifest.figures.demo_table.caption, "Paper versus measured");
  assert.equal(manifest.figures["09_claims"].kind, "claims");
  assert.equal(manifest.figures["09_claims"].notebook, "09_demo");
  assert.deepEqual(manifest.figures["09_claims"].files, ["09_claims.json"]);
  assert.deepEqual(Object.values(manifest.figures).map(entryKind), ["claims", "figure", "table"]);
  const markdown = saved[JUPYTER_DISPLAY]()["text/markdown"]!;
  assert.ok(markdown.includes("| ✓ |") && markdown.includes("| ✗ |") && markdown.includes("| n/a |"), markdown);

  await assert.rejects(saveFigure("demo_fig", titledPlot(), { outDir: dir, caption: "" }), /options\.caption/);
  await assert.rejects(
    saveClaims("09_claims", [{ ...claims[0], reproduced: "yes" as unknown as boolean }], { outDir: dir }),
    /claims\[0\]\.reproduced must be true, false or null/,
  );
  await assert.rejects(saveClaims("09_claims", [claims[0], claims[0]], { outDir: dir }), /used twice/);
  await assert.rejects(
    saveClaims("09_claims", [{ ...claims[0], measured: 0.5 as unknown as string }], { outDir: dir }),
    /claims\[0\]\.measured must be a non-empty string/,
  );
  await assert.rejects(saveTable("demo_table", [], { outDir: dir }), /rows is empty/);
  await assert.rejects(saveTable("demo_table", rows, { outDir: dir, colour: 1 } as never), /unknown option "colour"/);

  await Deno.remove(join(dir, "demo_table.csv"));
  const { pruneManifest } = await import("../lib/figures/manifest.ts");
  assert.deepEqual(await pruneManifest(dir), ["demo_table"]);
});
