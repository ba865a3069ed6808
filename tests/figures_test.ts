/**
 * Tests for lib/figures and the figures settings of lib/env.ts: snapshot SVGs,
 * reproducible files, figure sets saved as one unit (lock, sweep, crash
 * recovery in a killed child process), the manifest and its config checks, CSV
 * formatting, PNG rendering, inline display with a PNG twin, the quick-mode
 * figures folder and error messages.
 *
 * Snapshots live in tests/snapshots/<name>.svg. When a figure changes on
 * purpose, accept the new output with
 * `ATTNLAB_UPDATE_SNAPSHOTS=1 deno test -A tests/figures_test.ts`.
 */

import { strict as assert } from "node:assert";
import { existsSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as Plot from "@observablehq/plot";
import { initBackend } from "../lib/backend.ts";
import { ensureFiguresDir, figuresDir, QUICK_FIGURES_PREFIX, REPO_ROOT, scale } from "../lib/env.ts";
import { sweepTempFiles, writeFileAtomic } from "../lib/figures/atomic.ts";
import { commitFileSet } from "../lib/figures/file_set.ts";
import { LOCK_STALE_MS, LOCK_WAIT_MS, staleReason, withFileLock } from "../lib/figures/lock.ts";
import { MANIFEST_LOCK, SAVE_JOURNAL } from "../lib/figures/manifest.ts";
import {
  checkClaims,
  checkConfig,
  displayPath,
  gitState,
  JUPYTER_DISPLAY,
  LEGACY_RULE,
  libraryCodeHash,
  md,
  normalizeClaims,
  outcomeMark,
  plotDocument,
  pngForSvg,
  PROVENANCE_ENV,
  provenanceFromEnv,
  readManifest,
  readPngSize,
  renderSvg,
  saveClaims,
  saveFigure,
  saveTable,
  show,
  startRun,
  svgSize,
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

/** For assert.throws / assert.rejects: the error is exactly a `kind` and its message contains `text`. */
function errorWith(kind: ErrorConstructor | TypeErrorConstructor | RangeErrorConstructor, text: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof Error, `expected an Error, got ${String(err)}`);
    assert.equal(err.constructor, kind, `expected a ${kind.name}, got ${err.name}: ${err.message}`);
    assert.ok(
      err.message.includes(text),
      `expected the message to include ${JSON.stringify(text)}, got ${JSON.stringify(err.message)}`,
    );
    return true;
  };
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
    "codeHash",
    "date",
    "durationMs",
    "scale",
  ]);
  assert.equal(alpha.name, "alpha");
  // The scale the run started at (ATTNLAB_SCALE; full when unset, as in this test).
  assert.equal(alpha.scale, scale());
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
  assert.deepEqual(await gitState(await tempDir()), { commit: null, dirty: null, codeHash: null });
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
  assert.deepEqual(await gitState(repo), { commit: null, dirty: false, codeHash: null });
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

function decodeBase64(text: string): Uint8Array {
  assert.match(text, /^[A-Za-z0-9+/]+={0,2}$/, "base64 without line breaks, as Jupyter expects for image/png");
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

Deno.test("saveFigure and show display inline as image/svg+xml with a 1x image/png twin", async () => {
  const saved = await saveFigure("inline", heatmapPlot(), { outDir: await tempDir() });
  const bundle = saved[JUPYTER_DISPLAY]();
  assert.deepEqual(Object.keys(bundle), ["image/svg+xml", "image/png", "text/plain"]);
  assert.equal(bundle["image/svg+xml"], saved.svg);
  const png = decodeBase64(bundle["image/png"]);
  assert.deepEqual([...png.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10]);
  // 1x: the PNG has the SVG's size in pixels, so it displays at the figure's size.
  assert.deepEqual(readPngSize(png), svgSize(saved.svg));
  assert.deepEqual(png, svgToPng(saved.svg, { scale: 1 }));
  assert.match(bundle["text/plain"], /inline\.svg\n.*inline\.png$/);
  const shown = show(heatmapPlot());
  const shownBundle = shown[JUPYTER_DISPLAY]();
  assert.deepEqual(Object.keys(shownBundle), ["image/svg+xml", "image/png", "text/plain"]);
  assert.equal(shownBundle["image/svg+xml"], saved.svg);
  // Deterministic: the same SVG gives the same PNG, in show(), in saveFigure and from pngForSvg.
  assert.equal(shownBundle["image/png"], bundle["image/png"]);
  assert.equal(pngForSvg(saved.svg), bundle["image/png"]);
});

Deno.test("pngForSvg renders SVG from elsewhere (no xmlns, xlink) and rejects what is not SVG", () => {
  const plot = logLinePlot() as unknown as { outerHTML: string };
  // A Plot with a legend is a <figure>: take its inner <svg>, which has no xmlns, as a notebook would display it.
  const html = plot.outerHTML;
  const inner = html.slice(html.lastIndexOf("<svg"), html.lastIndexOf("</svg>") + 6);
  assert.doesNotMatch(inner.slice(0, inner.indexOf(">")), /xmlns=/);
  const png = decodeBase64(pngForSvg(inner));
  const width = Number(/width="(\d+)"/.exec(inner)![1]);
  assert.equal(readPngSize(png).width, width);
  const linked = '<svg width="4" height="2"><defs><rect id="r" width="4" height="2" fill="black"/></defs>' +
    '<use xlink:href="#r"/></svg>';
  const pixels = renderSvg(
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"' + linked.slice(4),
    { scale: 1 },
  ).png;
  assert.deepEqual(decodeBase64(pngForSvg(linked)), pixels);
  assert.equal(readPngSize(decodeBase64(pngForSvg(linked, { scale: 2 }))).width, 8);
  assert.throws(
    () => pngForSvg(42 as never),
    errorWith(TypeError, "pngForSvg: svg must be a string of SVG markup, got number"),
  );
  assert.throws(
    () => pngForSvg("<div><svg/></div>"),
    /pngForSvg: svg must be SVG markup starting with "<svg", got "<div>/,
  );
});

Deno.test("saveFigure lists the files it wrote relative to the repository root, and keeps paths absolute", async () => {
  // A folder inside the repository that git ignores (node_modules/), removed afterwards.
  const inside = await Deno.makeTempDir({ dir: join(REPO_ROOT, "node_modules"), prefix: ".attnlab_figures_test_" });
  try {
    const saved = await saveFigure("listed", titledPlot(), { outDir: inside, data: [{ a: 1 }] });
    const rel = `node_modules/${basename(inside)}`;
    assert.equal(
      saved[JUPYTER_DISPLAY]()["text/plain"],
      `saved listed:\n${rel}/listed.svg\n${rel}/listed.png\n${rel}/listed.csv`,
    );
    assert.equal(saved.paths.svg, join(inside, "listed.svg"));
    assert.equal(saved.paths.csv, join(inside, "listed.csv"));
  } finally {
    await Deno.remove(inside, { recursive: true });
  }
  const outside = await tempDir();
  const saved = await saveFigure("listed", titledPlot(), { outDir: outside });
  assert.equal(saved[JUPYTER_DISPLAY]()["text/plain"], `saved listed:\n${outside}/listed.svg\n${outside}/listed.png`);
  assert.equal(displayPath(join(REPO_ROOT, "figures", "a.svg")), "figures/a.svg");
  assert.equal(displayPath(REPO_ROOT), REPO_ROOT);
  assert.equal(displayPath(`${REPO_ROOT}-other/a.svg`), `${REPO_ROOT}-other/a.svg`);
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
  assert.equal(
    manifest.figures["09_claims"].codeHash,
    await libraryCodeHash(),
    "the claims entry records the code hash",
  );
  const markdown = saved[JUPYTER_DISPLAY]()["text/markdown"]!;
  const legacy = "legacy: the notebook's own check (no interval)";
  assert.deepEqual(markdown.split("\n").slice(0, 5), [
    "| outcome | claim | paper | measured | reason | rule | note |",
    "| :--- | :--- | :--- | :--- | :--- | :--- | :--- |",
    `| ✓ | x is small | &lt; 1 | 0.5 |  | ${legacy} |  |`,
    `| ✗ | y is large | &gt; 1 | 0.5 |  | ${legacy} | toy size |`,
    `| ? | z | ? | 3 | not comparable | ${legacy} |  |`,
  ]);

  await assert.rejects(saveFigure("demo_fig", titledPlot(), { outDir: dir, caption: "" }), /options\.caption/);
  await assert.rejects(
    saveClaims("09_claims", [{ ...claims[0], reproduced: "yes" as unknown as boolean }], { outDir: dir }),
    errorWith(TypeError, 'saveClaims: claims[0].reproduced must be true, false or null (not comparable), got "yes"'),
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

// ---------------------------------------------------------------------------------------------------------------
// A figure's files change together: checks before writes, the lock, sweeping, and what a killed save leaves.

/** Every file in a folder with its bytes, to show that a failed save changed nothing. */
async function folderState(dir: string): Promise<Record<string, string>> {
  const state: Record<string, string> = {};
  for (const name of await listDir(dir)) state[name] = new TextDecoder().decode(await Deno.readFile(join(dir, name)));
  return state;
}

/** The pid of a process that has exited (and been reaped), so that no process has it. */
async function deadPid(): Promise<number> {
  const child = new Deno.Command("true", { stdout: "null", stderr: "null" }).spawn();
  await child.status;
  assert.equal(existsSync(`/proc/${child.pid}`), false, `process ${child.pid} should be gone`);
  return child.pid;
}

const SQUARE = (fill: string) =>
  `<svg xmlns="http://www.w3.org/2000/svg" width="30" height="20"><rect width="30" height="20" fill="${fill}"/></svg>`;

Deno.test("an unreadable manifest fails every save before anything is written, even the lock", async () => {
  const dir = await tempDir();
  await saveFigure("kept", SQUARE("blue"), { outDir: dir, data: [{ v: 1 }], backend: "cpu" });
  for (const bad of ["{ not json", '{"figures": []}', "null"]) {
    await Deno.writeTextFile(join(dir, "manifest.json"), bad);
    const before = await folderState(dir);
    const why = bad === "{ not json"
      ? /manifest\.json is not valid JSON .*; fix it or delete it/
      : /has no "figures" object/;
    await assert.rejects(saveFigure("kept", SQUARE("red"), { outDir: dir, data: [{ v: 2 }], backend: "cpu" }), why);
    await assert.rejects(saveFigure("fresh", SQUARE("red"), { outDir: dir, backend: "cpu" }), why);
    await assert.rejects(saveTable("tab", [{ a: 1 }], { outDir: dir, backend: "cpu" }), why);
    const claim = { id: "a", claim: "c", paper: "1", measured: "1", reproduced: true };
    await assert.rejects(saveClaims("claims", [claim], { outDir: dir, backend: "cpu" }), why);
    assert.deepEqual(await folderState(dir), before);
  }
});

Deno.test("a lock whose holder no longer runs is broken at once and the save succeeds", async () => {
  const dir = await tempDir();
  const lock = join(dir, MANIFEST_LOCK);
  const pid = await deadPid();
  await Deno.writeTextFile(
    lock,
    JSON.stringify({ pid, host: hostname(), since: new Date().toISOString(), token: "x" }),
  );
  const started = Date.now();
  const saved = await saveFigure("after_crash", SQUARE("green"), { outDir: dir, backend: "cpu" });
  // Broken because the pid is gone, not because it aged: well within the staleness limit.
  assert.ok(Date.now() - started < LOCK_STALE_MS / 3, `took ${Date.now() - started} ms`);
  assert.equal(saved.entry.name, "after_crash");
  assert.deepEqual(await listDir(dir), ["after_crash.png", "after_crash.svg", "manifest.json"]);
});

Deno.test("lock staleness: a dead pid, or no touch for the limit; a live holder makes waiters fail with the fix", async () => {
  const pid = await deadPid();
  const now = Date.now();
  assert.equal(staleReason({ pid, host: hostname(), touchedMs: now }), `its holder, process ${pid}, no longer runs`);
  assert.equal(staleReason({ pid, touchedMs: now }), `its holder, process ${pid}, no longer runs`);
  // On another host the pid says nothing; only age counts.
  assert.equal(staleReason({ pid, host: `${hostname()}-elsewhere`, touchedMs: now }), null);
  assert.equal(staleReason({ pid: Deno.pid, touchedMs: now }), null);
  assert.equal(staleReason({ pid: Deno.pid, touchedMs: now - 31_000 }), "not touched for 31 s (limit 30 s)");
  assert.ok(LOCK_WAIT_MS > LOCK_STALE_MS, "a waiter must outlast the staleness limit");

  // An old lock file without a pid (an older version's) is broken once it is older than the limit.
  const dir = await tempDir();
  const lock = join(dir, MANIFEST_LOCK);
  await Deno.writeTextFile(lock, "");
  const old = new Date(Date.now() - LOCK_STALE_MS - 5_000);
  await Deno.utime(lock, old, old);
  await saveFigure("after_old_lock", SQUARE("green"), { outDir: dir, backend: "cpu" });
  assert.equal(existsSync(lock), false);

  // A live, fresh holder: the waiter gives up, names the lock file and says how to fix it, and writes nothing.
  await Deno.writeTextFile(lock, JSON.stringify({ pid: Deno.pid, host: hostname(), since: "then", token: "live" }));
  const before = await folderState(dir);
  let planned = false;
  await assert.rejects(
    commitFileSet(dir, () => {
      planned = true;
      return { files: [["x.txt", "x"]] };
    }, { lockName: MANIFEST_LOCK, journalName: SAVE_JOURNAL, waitMs: 300 }),
    (err: Error) => {
      assert.match(err.message, new RegExp(`^could not take the lock ${lock} within 0 s: it is held by process`));
      assert.match(
        err.message,
        /If no other notebook or task is saving to .*, delete .*manifest\.json\.lock and retry$/,
      );
      return true;
    },
  );
  assert.equal(planned, false);
  assert.deepEqual(await folderState(dir), before);
  await assert.rejects(
    withFileLock(lock, () => Promise.resolve(), { waitMs: -1 }),
    errorWith(RangeError, "withFileLock: options.waitMs must be a non-negative number of milliseconds, got -1"),
  );
});

Deno.test("leftover temporary files are swept at the next save: set ones at once, others once old", async () => {
  const dir = await tempDir();
  await saveFigure("kept", SQUARE("blue"), { outDir: dir, backend: "cpu" });
  const leftovers = [".kept.svg.set-0123abcd.tmp", ".kept.png.set-89abcdef.tmp", ".manifest.json.set-00000000.tmp"];
  for (const name of leftovers) await Deno.writeTextFile(join(dir, name), "partial");
  // writeFileAtomic temp files (no lock): an old one is a leftover, a fresh one may be a write in progress.
  await Deno.writeTextFile(join(dir, ".bench.csv.0123abcd.tmp"), "old");
  const old = new Date(Date.now() - LOCK_STALE_MS - 5_000);
  await Deno.utime(join(dir, ".bench.csv.0123abcd.tmp"), old, old);
  await Deno.writeTextFile(join(dir, ".report.html.89abcdef.tmp"), "being written");
  await Deno.writeTextFile(join(dir, ".notes.tmp"), "not ours");
  await saveFigure("next", SQUARE("red"), { outDir: dir, backend: "cpu" });
  assert.deepEqual(await listDir(dir), [
    ".notes.tmp",
    ".report.html.89abcdef.tmp",
    "kept.png",
    "kept.svg",
    "manifest.json",
    "next.png",
    "next.svg",
  ]);
  assert.deepEqual(await sweepTempFiles(dir, { olderThanMs: LOCK_STALE_MS, sets: true }), []);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(await sweepTempFiles(dir, { olderThanMs: 10 }), [".report.html.89abcdef.tmp"]);
});

Deno.test("a save that finds a folder where a file goes fails before writing anything", async () => {
  const dir = await tempDir();
  await Deno.mkdir(join(dir, "blocked.png"));
  await assert.rejects(
    saveFigure("blocked", SQUARE("red"), { outDir: dir, backend: "cpu" }),
    new RegExp(`cannot save ${join(dir, "blocked.png")}: a folder of that name is in the way; move or delete it`),
  );
  assert.deepEqual(await listDir(dir), ["blocked.png"]);
});

/** Runs saveFigure in a child process that stops at `stage` (and `index`), then kills it with SIGKILL. */
async function killedSave(dir: string, stage: string, index: number): Promise<void> {
  const script = join(await tempDir(), "killed_save.ts");
  const lib = (path: string) => new URL(`../lib/figures/${path}`, import.meta.url).href;
  await Deno.writeTextFile(
    script,
    `import { fileSetTestHooks } from "${lib("file_set.ts")}";
import { saveFigure } from "${lib("save.ts")}";
fileSetTestHooks.onStage = (stage, index) => {
  if (stage === ${JSON.stringify(stage)} && (stage !== "before-step" || index === ${index})) {
    Deno.stdout.writeSync(new TextEncoder().encode("STOPPED\\n"));
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // hang here until killed
  }
};
await saveFigure("crash", ${JSON.stringify(SQUARE("red"))}, {
  outDir: ${JSON.stringify(dir)}, data: [{ v: 2 }], seed: 2, backend: "cpu",
});
console.log("FINISHED");
`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--frozen", "--config", join(REPO_ROOT, "deno.json"), script],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let out = "";
  const decoder = new TextDecoder();
  const reader = child.stdout.getReader();
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += decoder.decode(value);
  }
  child.kill("SIGKILL");
  reader.releaseLock();
  await child.stdout.cancel();
  const stderr = decoder.decode(await new Response(child.stderr).arrayBuffer());
  const status = await child.status;
  assert.equal(out, "STOPPED\n", `the child should stop at ${stage}; stderr: ${stderr}`);
  assert.equal(status.signal, "SIGKILL");
}

async function oldSet(dir: string) {
  await saveFigure("crash", SQUARE("blue"), { outDir: dir, data: [{ v: 1 }], seed: 1, backend: "cpu" });
  return await folderState(dir);
}

Deno.test("a save killed after writing its temporaries leaves the old set; the next save sweeps the leftovers", async () => {
  const dir = await tempDir();
  const old = await oldSet(dir);
  await killedSave(dir, "temps-written", 0);
  const after = await folderState(dir);
  for (const name of Object.keys(old)) assert.equal(after[name], old[name], `${name} must be the old one`);
  const extra = Object.keys(after).filter((name) => !(name in old)).sort();
  assert.equal(extra.length, 5, extra.join(", ")); // four temporaries and the lock
  assert.ok(extra.includes(MANIFEST_LOCK), extra.join(", "));
  for (const target of ["crash.svg", "crash.png", "crash.csv", "manifest.json"]) {
    assert.ok(extra.some((name) => name.startsWith(`.${target}.set-`) && name.endsWith(".tmp")), target);
  }
  assert.equal((await readManifest(dir)).figures.crash.seed, 1);

  const next = await saveFigure("other", SQUARE("green"), { outDir: dir, backend: "cpu" });
  assert.deepEqual(await listDir(dir), [
    "crash.csv",
    "crash.png",
    "crash.svg",
    "manifest.json",
    "other.png",
    "other.svg",
  ]);
  const final = await folderState(dir);
  for (const name of ["crash.svg", "crash.png", "crash.csv"]) assert.equal(final[name], old[name], name);
  const manifest = await readManifest(dir);
  assert.equal(manifest.figures.crash.seed, 1);
  assert.deepEqual(manifest.figures.other, next.entry);
});

Deno.test("a save killed in the middle of its renames is finished by the next save in that folder", async () => {
  const dir = await tempDir();
  const old = await oldSet(dir);
  await killedSave(dir, "before-step", 1); // crash.svg renamed, crash.png and the rest not yet
  const svg = toSvgString(SQUARE("red"));
  const mixed = await folderState(dir);
  assert.equal(mixed["crash.svg"], svg, "the new SVG is in place");
  assert.equal(mixed["crash.png"], old["crash.png"], "beside the old PNG");
  assert.equal(mixed["crash.csv"], "v\n1\n");
  assert.equal(mixed["manifest.json"], old["manifest.json"]);
  assert.ok(SAVE_JOURNAL in mixed, "the journal records the renames still to do");

  await saveFigure("other", SQUARE("green"), { outDir: dir, backend: "cpu" });
  assert.deepEqual(await listDir(dir), [
    "crash.csv",
    "crash.png",
    "crash.svg",
    "manifest.json",
    "other.png",
    "other.svg",
  ]);
  assert.equal(await Deno.readTextFile(join(dir, "crash.svg")), svg);
  assert.deepEqual(await Deno.readFile(join(dir, "crash.png")), svgToPng(svg));
  assert.equal(await Deno.readTextFile(join(dir, "crash.csv")), "v\n2\n");
  const manifest = await readManifest(dir);
  assert.equal(manifest.figures.crash.seed, 2, "the killed save's manifest entry was put in place too");
  assert.deepEqual(Object.keys(manifest.figures), ["crash", "other"]);
});

Deno.test("a corrupt journal stops the next save with its path and the fix, before anything is written", async () => {
  const dir = await tempDir();
  await oldSet(dir);
  for (
    const [journal, why] of [
      ["{", /is not valid JSON/],
      ['{"steps": [["rename", "../../etc/passwd", "crash.svg"]]}', /steps\[0\]\[1\] must be a plain file name/],
      ['{"steps": [["rename", "crash.png", "crash.svg"]]}', /steps\[0\]\[1\] must be a set temporary file/],
    ] as const
  ) {
    await Deno.writeTextFile(join(dir, SAVE_JOURNAL), journal);
    const before = await folderState(dir);
    await assert.rejects(saveFigure("other", SQUARE("green"), { outDir: dir, backend: "cpu" }), (err: Error) => {
      assert.match(err.message, new RegExp(`^${join(dir, SAVE_JOURNAL).replace(/\./g, "\\.")} \\(the journal`));
      assert.match(err.message, why);
      assert.match(err.message, /delete it, and the \.\*\.set-\*\.tmp files beside it/);
      return true;
    });
    assert.deepEqual(await folderState(dir), before);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Config values must be JSON values.

Deno.test("checkConfig rejects what JSON would drop or change, naming the path", () => {
  class Schedule {
    steps = 10;
  }
  const cyclic: Record<string, unknown> = { a: { b: {} } };
  (cyclic.a as { b: Record<string, unknown> }).b.back = cyclic.a;
  const cases: [unknown, string][] = [
    [{ schedule: (step: number) => step }, "config.schedule is a function (schedule)"],
    [{ tag: Symbol("x") }, "config.tag is a symbol (Symbol(x))"],
    [{ big: 10n }, "config.big is a bigint (10n); a config holds only JSON values"],
    [{ lr: NaN }, "config.lr is NaN"],
    [{ lr: Infinity }, "config.lr is Infinity"],
    [{ lr: -Infinity }, "config.lr is -Infinity"],
    [{ sizes: new Map([["a", 1]]) }, "config.sizes is an instance of Map; a config holds only JSON values"],
    [{ seen: new Set([1]) }, "config.seen is an instance of Set"],
    [{ when: new Date(0) }, "config.when is an instance of Date"],
    [{ schedule: new Schedule() }, "config.schedule is an instance of Schedule"],
    [{ data: new Float32Array(2) }, "config.data is an instance of Float32Array"],
    [cyclic, "config.a.b.back is the same object as config.a (a cycle)"],
    [{ layers: [{ act: "relu" }, { act: Math.max }] }, "config.layers[1].act is a function (max)"],
    [{ "learning rate": () => 0 }, 'config["learning rate"] is a function'],
    [{ sizes: [1, undefined] }, "config.sizes[1] is undefined (or an array hole)"],
    [{ [Symbol("k")]: 1 }, "config is an object with a symbol key (Symbol(k))"],
  ];
  for (const [config, message] of cases) {
    assert.throws(() => checkConfig(config, "saveFigure"), (err: Error) => {
      assert.ok(err instanceof TypeError, `${message}: got ${err.name}`);
      assert.ok(err.message.startsWith(`saveFigure: ${message}`), err.message);
      assert.match(
        err.message,
        /a config holds only JSON values: finite numbers, strings, booleans, null, arrays and plain objects; \w/,
      );
      return true;
    });
  }
  assert.throws(() => checkConfig({ when: new Date(0) }, "x"), /convert it with \.toISOString\(\)/);
  assert.throws(() => checkConfig({ sizes: new Map() }, "x"), /convert it with Object\.fromEntries\(map\)/);
  assert.throws(
    () => checkConfig(null, "x"),
    errorWith(TypeError, "x: config must be a plain object like { n: 64, heads: 4 }, got null"),
  );
  assert.throws(() => checkConfig([1], "x"), errorWith(TypeError, "got an array"));

  // JSON values pass, including a shared (non-cyclic) object, a null-prototype object and an undefined property.
  const shared = { d: 64 };
  const bare = Object.assign(Object.create(null), { x: 1 });
  const ok = { a: shared, b: shared, bare, n: -0, s: "", t: true, z: null, list: [[1], { k: [] }], gone: undefined };
  assert.equal(checkConfig(ok, "x"), ok);
});

Deno.test("a config that is not JSON fails saveFigure, saveTable and startRun before anything is written", async () => {
  const dir = await tempDir();
  await assert.rejects(
    saveFigure("cfg", SQUARE("red"), { outDir: dir, config: { schedule: () => 1 } }),
    errorWith(TypeError, "saveFigure: config.schedule is a function"),
  );
  await assert.rejects(
    saveTable("cfg", [{ a: 1 }], { outDir: dir, config: { n: 1n } }),
    errorWith(TypeError, "save table: config.n is a bigint (1n)"),
  );
  assert.throws(() => startRun({ config: { lr: NaN } }), errorWith(TypeError, "startRun: config.lr is NaN"));
  const run = { ...startRun({}), config: { m: new Map() } };
  await assert.rejects(
    saveClaims("cfg", [{ id: "a", claim: "c", paper: "1", measured: "1", reproduced: true }], { outDir: dir, run }),
    errorWith(TypeError, "save claims: config.m is an instance of Map"),
  );
  assert.deepEqual(await listDir(dir), []);
});

// ---------------------------------------------------------------------------------------------------------------
// Where figures go: quick mode's temporary folder, and an unusable ATTNLAB_FIGURES_DIR.

async function withEnv<T>(vars: Record<string, string | undefined>, body: () => Promise<T> | T): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const set = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  };
  set(vars);
  try {
    return await body();
  } finally {
    set(saved);
  }
}

Deno.test("quick mode without ATTNLAB_FIGURES_DIR writes figures to one temporary folder, and says so once", async () => {
  const repoManifest = join(REPO_ROOT, "figures", "manifest.json");
  const repoManifestBefore = existsSync(repoManifest) ? await Deno.readTextFile(repoManifest) : undefined;
  const messages: string[] = [];
  const error = console.error;
  console.error = (...args: unknown[]) => messages.push(args.join(" "));
  try {
    await withEnv({ ATTNLAB_QUICK: "1", ATTNLAB_FIGURES_DIR: undefined }, async () => {
      const dir = figuresDir();
      assert.equal(dirname(dir), await Deno.realPath(tmpdir()).catch(() => tmpdir()));
      assert.ok(basename(dir).startsWith(QUICK_FIGURES_PREFIX), dir);
      assert.equal(figuresDir(), dir, "created once and reused");
      const saved = await saveFigure("quick_demo", SQUARE("red"), { backend: "cpu" });
      assert.equal(saved.paths.svg, join(dir, "quick_demo.svg"));
      assert.deepEqual(messages, [
        `attnlab: quick mode (ATTNLAB_QUICK=1) writes figures to ${dir}, not figures/; ` +
        `set ATTNLAB_FIGURES_DIR=figures to write them there`,
      ]);
      assert.equal(figuresDir({ quick: false }), join(REPO_ROOT, "figures"));
      await Deno.remove(dir, { recursive: true });
    });
    // Asking for figures/ in quick mode: a relative value is taken from the repository root, not the cwd.
    await withEnv({ ATTNLAB_QUICK: "1", ATTNLAB_FIGURES_DIR: "figures" }, () => {
      assert.equal(figuresDir(), join(REPO_ROOT, "figures"));
    });
    await withEnv({ ATTNLAB_QUICK: "0", ATTNLAB_FIGURES_DIR: undefined }, () => {
      assert.equal(figuresDir(), join(REPO_ROOT, "figures"));
    });
    assert.throws(() => figuresDir({ fast: true } as never), errorWith(TypeError, 'figuresDir: unknown option "fast"'));
  } finally {
    console.error = error;
  }
  const repoManifestAfter = existsSync(repoManifest) ? await Deno.readTextFile(repoManifest) : undefined;
  assert.equal(repoManifestAfter, repoManifestBefore, "figures/manifest.json is untouched");
});

Deno.test("an unusable ATTNLAB_FIGURES_DIR fails before any work with the variable, its value, why and the fix", async () => {
  const file = join(await tempDir(), "notes.txt");
  await Deno.writeTextFile(file, "a regular file\n");
  const fix = "; set ATTNLAB_FIGURES_DIR to a folder you can write to (it is created if missing), " +
    "or unset it to use figures/ (a temporary folder in quick mode)";
  const cases: [string, string][] = [
    [join(file, "figures"), `${file} is a file, not a folder, so no folder can be created under it`],
    [join(file, "a", "b"), `${file} is a file, not a folder, so no folder can be created under it`],
    [file, `${file} is a file, not a folder`],
  ];
  for (const [value, reason] of cases) {
    await withEnv({ ATTNLAB_FIGURES_DIR: value }, async () => {
      const expected = `ATTNLAB_FIGURES_DIR=${
        JSON.stringify(value)
      } cannot be used as the figures folder: ${reason}${fix}`;
      assert.throws(() => ensureFiguresDir(), errorWith(Error, expected));
      assert.throws(() => ensureFiguresDir(undefined, { quick: false }), errorWith(Error, expected));
      let rendered = false;
      const figure = {
        get outerHTML() {
          rendered = true;
          return SQUARE("red");
        },
      };
      await assert.rejects(saveFigure("env_bad", figure as never, { backend: "cpu" }), errorWith(Error, expected));
      assert.equal(rendered, false, "the check comes before any work");
      await assert.rejects(saveTable("env_bad", [{ a: 1 }], { backend: "cpu" }), errorWith(Error, expected));
    });
  }
  assert.equal(await Deno.readTextFile(file), "a regular file\n");
  // A folder that even root cannot write to (Linux's /proc; elsewhere /proc cannot be created).
  await withEnv({ ATTNLAB_FIGURES_DIR: "/proc/self" }, () => {
    assert.throws(
      () => ensureFiguresDir(),
      /^Error: ATTNLAB_FIGURES_DIR="\/proc\/self" cannot be used as the figures folder: /,
    );
  });
  await withEnv({ ATTNLAB_FIGURES_DIR: "" }, () => {
    assert.throws(
      () => ensureFiguresDir(),
      errorWith(Error, "ATTNLAB_FIGURES_DIR is set but empty; unset it to use figures/"),
    );
  });
  await assert.rejects(
    saveFigure("bad_out", SQUARE("red"), { outDir: join(file, "out"), backend: "cpu" }),
    errorWith(
      Error,
      `saveFigure: options.outDir ${
        JSON.stringify(join(file, "out"))
      } cannot be used as the figures folder: ${file} is a file`,
    ),
  );
  // A usable value: a missing folder is created, and the check leaves nothing in it.
  const fresh = join(await tempDir(), "new", "figures");
  await withEnv({ ATTNLAB_FIGURES_DIR: fresh }, () => assert.equal(ensureFiguresDir(), fresh));
  assert.deepEqual(await listDir(fresh), []);
  assert.throws(
    () => ensureFiguresDir(fresh, { lable: "x" } as never),
    errorWith(TypeError, 'ensureFiguresDir: unknown option "lable"; expected label or quick'),
  );
});

// ---------------------------------------------------------------------------------------------------------------
// Claims in three outcomes, md(), and provenance (code hash, ATTNLAB_PROVENANCE).

const TEXT = { claim: "T2 improves on vanilla", paper: "29.57 vs 29.63", measured: "0.10 ± 0.03" };

Deno.test("three-outcome claims: saved as given, read back normalised; legacy claims map onto the outcomes", async () => {
  const { verdict, exactVerdict, inconclusiveBecause } = await import("../lib/stats/verdict.ts");
  const { tInterval } = await import("../lib/stats/intervals.ts");
  const clear = verdict(tInterval([0.10, 0.12, 0.09, 0.11]), { direction: "greater", margin: 0.02 });
  const noisy = verdict(tInterval([0.10, -0.05, 0.02]), { direction: "greater", margin: 0.02 });
  const settle = { model: "6 layers, d = 512", tokens: "300M", seeds: 5, flops: 4.5e16, note: "bf16" };
  const claims = [
    { id: "clear", ...TEXT, ...clear },
    {
      id: "noisy",
      ...TEXT,
      ...noisy,
      settle,
    },
    { id: "fails", ...TEXT, ...exactVerdict(false, "max ratio ≤ 1 + 1e-5") },
    {
      id: "state",
      ...TEXT,
      ...inconclusiveBecause("by construction", "the state size is fixed by the code"),
      evidence: false as const,
    },
    { id: "old_yes", ...TEXT, reproduced: true },
    { id: "old_no", ...TEXT, reproduced: false, note: "toy size" },
    { id: "old_na", ...TEXT, reproduced: null },
  ];
  const dir = await tempDir();
  const saved = await saveClaims("10_claims", claims, { notebook: "10_demo", outDir: dir, backend: "cpu" });
  // The file keeps exactly what the notebook gave, legacy fields included.
  assert.deepEqual(JSON.parse(await Deno.readTextFile(saved.path)), JSON.parse(JSON.stringify(claims)));

  const read = normalizeClaims(JSON.parse(await Deno.readTextFile(saved.path)));
  assert.deepEqual(read.map((c) => [c.id, c.outcome, c.reason ?? null, c.evidence, c.legacy]), [
    ["clear", "reproduced", null, true, false],
    ["noisy", "inconclusive", "within noise", true, false],
    ["fails", "not reproduced", "check fails", true, false],
    ["state", "inconclusive", "by construction", false, false],
    ["old_yes", "reproduced", null, true, true],
    ["old_no", "not reproduced", null, true, true],
    ["old_na", "inconclusive", "not comparable", true, true],
  ]);
  assert.equal(LEGACY_RULE, "legacy: the notebook's own check (no interval)");
  assert.deepEqual(read.slice(4).map((c) => c.rule), [LEGACY_RULE, LEGACY_RULE, LEGACY_RULE]);
  assert.equal(read[5].note, "toy size");
  assert.equal("reproduced" in read[4], false, "normalised claims carry no legacy field");
  assert.deepEqual(read[1].settle, settle);
  // The interval survives the JSON round trip: n = 4 values, a 95% t interval.
  assert.equal(read[0].interval?.n, 4);
  assert.equal(read[0].interval?.level, 0.95);
  assert.equal(read[0].rule, clear.rule);

  const markdown = saved[JUPYTER_DISPLAY]()["text/markdown"]!;
  const marks = markdown.split("\n").slice(2).map((line) => line.split(" | ")[0]);
  assert.deepEqual(marks, ["| ✓", "| ?", "| ✗", "| ?", "| ✓", "| ✗", "| ?"]);
  assert.ok(markdown.includes("| by construction; not counted as evidence |"), markdown);
  assert.deepEqual([outcomeMark("reproduced"), outcomeMark("not reproduced"), outcomeMark("inconclusive")], [
    "✓",
    "✗",
    "?",
  ]);
  assert.throws(() => outcomeMark("n/a" as never), errorWith(RangeError, "outcomeMark: outcome must be one of"));
});

Deno.test("claims: mixing the formats and every malformed field of the new one are errors naming the field", () => {
  const good = { id: "a", ...TEXT, outcome: "inconclusive", reason: "within noise", rule: "the 95% t interval ..." };
  const interval = { estimate: 0.1, low: 0.05, high: 0.15, level: 0.95, n: 3, method: "t" };
  const cases: [string, Record<string, unknown>, ErrorConstructor, string][] = [
    [
      "mixed",
      { ...good, reproduced: true },
      TypeError,
      'saveClaims: claims[0] mixes the legacy field "reproduced" with "outcome", "reason", "rule"',
    ],
    ["mixed, one field", { id: "a", ...TEXT, reproduced: null, rule: "r" }, TypeError, 'with "rule"; a claim is'],
    ["neither", { id: "a", ...TEXT }, TypeError, "saveClaims: claims[0] has no outcome: give outcome"],
    ["unknown outcome", { ...good, outcome: "n/a" }, RangeError, 'claims[0].outcome must be one of "reproduced"'],
    ["outcome not a string", { ...good, outcome: true }, TypeError, "claims[0].outcome must be one of"],
    ["no rule", { ...good, rule: undefined }, TypeError, "claims[0].rule must be a non-empty sentence"],
    ["blank rule", { ...good, rule: "  " }, TypeError, "claims[0].rule must be a non-empty sentence"],
    ["inconclusive, no reason", { ...good, reason: undefined }, TypeError, "is inconclusive without a reason"],
    ["reproduced with a reason", { ...good, outcome: "reproduced" }, RangeError, "is reproduced but gives reason"],
    ["empty reason", { ...good, reason: "" }, TypeError, "claims[0].reason must be a non-empty string"],
    ["evidence true", { ...good, evidence: true }, TypeError, "claims[0].evidence may only be false"],
    ["interval not an object", { ...good, interval: [1, 2] }, TypeError, "claims[0].interval must be an interval"],
    [
      "interval extra key",
      { ...good, interval: { ...interval, nullValue: 0 } },
      TypeError,
      'unknown field "nullValue"',
    ],
    ["interval NaN", { ...good, interval: { ...interval, estimate: NaN } }, TypeError, "interval.estimate must be"],
    ["interval bounds", { ...good, interval: { ...interval, low: 0.2 } }, RangeError, "must have low ≤ high"],
    ["interval level", { ...good, interval: { ...interval, level: 95 } }, RangeError, "interval.level must be"],
    ["interval n", { ...good, interval: { ...interval, n: 0 } }, RangeError, "interval.n must be"],
    [
      "settle on reproduced",
      {
        ...good,
        outcome: "reproduced",
        reason: undefined,
        settle: { seeds: 3 },
      },
      RangeError,
      "claims[0].settle says what would settle an inconclusive claim",
    ],
    ["settle empty", { ...good, settle: {} }, TypeError, "claims[0].settle is empty"],
    ["settle unknown", { ...good, settle: { gpus: 8 } }, TypeError, 'claims[0].settle has unknown field "gpus"'],
    ["settle seeds", { ...good, settle: { seeds: 2.5 } }, RangeError, "claims[0].settle.seeds must be a positive"],
    ["settle flops", { ...good, settle: { flops: -1 } }, RangeError, "claims[0].settle.flops must be a positive"],
    ["settle model", { ...good, settle: { model: "" } }, TypeError, "claims[0].settle.model must be a non-empty"],
    ["unknown field", { ...good, verdict: "yes" }, TypeError, 'claims[0] has unknown field "verdict"'],
  ];
  for (const [what, claim, kind, text] of cases) {
    const given = Object.fromEntries(Object.entries(claim).filter(([, v]) => v !== undefined));
    assert.throws(() => checkClaims([given]), errorWith(kind, text), what);
  }
  assert.throws(() => checkClaims({}), errorWith(TypeError, "saveClaims: claims must be an array"));
  assert.throws(() => normalizeClaims([null], "report: x.json"), errorWith(TypeError, "report: x.json: claims[0]"));
  // Each valid on its own: a not-reproduced claim may give the verdict's reason, or none.
  assert.equal(checkClaims([{ ...good, outcome: "not reproduced", reason: "opposite effect" }]).length, 1);
  assert.equal(checkClaims([{ ...good, outcome: "not reproduced", reason: undefined }]).length, 1);
  assert.equal(checkClaims([{ ...good, interval: { ...interval, low: null, high: null } }]).length, 1);
});

Deno.test("saveClaims refuses a mixed claim before writing anything", async () => {
  const dir = await tempDir();
  const mixed = { id: "a", ...TEXT, reproduced: true, outcome: "reproduced", rule: "r" } as never;
  await assert.rejects(saveClaims("11_claims", [mixed], { outDir: dir }), errorWith(TypeError, "mixes the legacy"));
  assert.deepEqual(await listDir(dir), []);
});

Deno.test("md displays Markdown built from numbers; anything but a string is a TypeError", () => {
  const p = 2.194;
  const shown = md(`Softmax grows like n^**${p.toFixed(2)}**.`);
  assert.equal(shown.text, "Softmax grows like n^**2.19**.");
  assert.deepEqual(shown[JUPYTER_DISPLAY](), {
    "text/markdown": "Softmax grows like n^**2.19**.",
    "text/plain": "Softmax grows like n^**2.19**.",
  });
  assert.throws(() => md(2.19 as never), errorWith(TypeError, "md: text must be a string of Markdown, got number"));
  assert.throws(() => md(null as never), errorWith(TypeError, "got null"));
});

/** Runs `f` with ATTNLAB_PROVENANCE set to `value` (or unset for undefined), restoring it afterwards. */
async function withProvenance<T>(value: string | undefined, f: () => T | Promise<T>): Promise<T> {
  const saved = Deno.env.get(PROVENANCE_ENV);
  if (value === undefined) Deno.env.delete(PROVENANCE_ENV);
  else Deno.env.set(PROVENANCE_ENV, value);
  try {
    return await f();
  } finally {
    if (saved === undefined) Deno.env.delete(PROVENANCE_ENV);
    else Deno.env.set(PROVENANCE_ENV, saved);
  }
}

Deno.test("ATTNLAB_PROVENANCE: gitState and every save record it; fromEnv: false reads git", async () => {
  assert.equal(PROVENANCE_ENV, "ATTNLAB_PROVENANCE");
  const recorded = { commit: "a".repeat(40), dirty: false, codeHash: "b".repeat(64) };
  await withProvenance(JSON.stringify(recorded), async () => {
    assert.deepEqual(provenanceFromEnv(), recorded);
    assert.deepEqual(await gitState(), recorded);
    assert.deepEqual(await gitState(await tempDir()), recorded, "the recorded state, whatever the folder");
    const outside = await gitState(await tempDir(), undefined, { fromEnv: false });
    assert.deepEqual(outside, { commit: null, dirty: null, codeHash: null });
    const dir = await tempDir();
    const claim = { id: "a", ...TEXT, reproduced: true };
    const saved = await saveClaims("12_claims", [claim], { outDir: dir, backend: "cpu" });
    assert.equal(saved.entry.commit, recorded.commit);
    assert.equal(saved.entry.dirty, false);
    assert.equal(saved.entry.codeHash, recorded.codeHash);
    const tab = await saveTable("t", [{ a: 1 }], { outDir: dir, backend: "cpu" });
    assert.deepEqual([tab.entry.commit, tab.entry.dirty, tab.entry.codeHash], [
      recorded.commit,
      false,
      recorded.codeHash,
    ]);
  });
  await withProvenance("", () => assert.equal(provenanceFromEnv(), null, "empty means unset"));
  await withProvenance(undefined, async () => {
    assert.equal(provenanceFromEnv(), null);
    const here = await gitState();
    assert.equal(here.codeHash, await libraryCodeHash());
    assert.match(here.codeHash ?? "", /^[0-9a-f]{64}$/);
  });
  await assert.rejects(
    gitState(REPO_ROOT, undefined, { env: false } as never),
    errorWith(TypeError, 'unknown option "env"'),
  );
});

Deno.test("ATTNLAB_PROVENANCE: a malformed value fails startRun, gitState and saves with the variable's name", async () => {
  const ok = { commit: "c".repeat(40), dirty: true, codeHash: null };
  const cases: [string, string, ErrorConstructor, string][] = [
    ["not JSON", "{ commit", TypeError, "ATTNLAB_PROVENANCE is not valid JSON"],
    ["an array", "[]", TypeError, "ATTNLAB_PROVENANCE must hold a JSON object, got []"],
    [
      "extra field",
      JSON.stringify({ ...ok, branch: "main" }),
      TypeError,
      'ATTNLAB_PROVENANCE has unknown field "branch"',
    ],
    [
      "short commit",
      JSON.stringify({ ...ok, commit: "abc123" }),
      RangeError,
      "ATTNLAB_PROVENANCE: commit must be 40 or 64",
    ],
    [
      "commit type",
      JSON.stringify({ ...ok, commit: 7 }),
      TypeError,
      "ATTNLAB_PROVENANCE: commit must be a string or null",
    ],
    [
      "dirty",
      JSON.stringify({ ...ok, dirty: "no" }),
      TypeError,
      'ATTNLAB_PROVENANCE: dirty must be true, false or null, got "no"',
    ],
    [
      "no dirty",
      JSON.stringify({ commit: null, codeHash: null }),
      TypeError,
      "dirty must be true, false or null, got nothing",
    ],
    ["code hash", JSON.stringify({ ...ok, codeHash: "XYZ" }), RangeError, "ATTNLAB_PROVENANCE: codeHash must be 64"],
  ];
  for (const [what, value, kind, text] of cases) {
    await withProvenance(value, async () => {
      assert.throws(() => provenanceFromEnv(), errorWith(kind, text), what);
      assert.throws(() => startRun({ notebook: "01_x" }), errorWith(kind, text), `${what}: startRun`);
      await assert.rejects(gitState(), errorWith(kind, text), `${what}: gitState`);
      const dir = await tempDir();
      await assert.rejects(
        saveClaims("13_claims", [{ id: "a", ...TEXT, reproduced: true }], { outDir: dir, backend: "cpu" }),
        errorWith(kind, text),
        `${what}: saveClaims`,
      );
      assert.deepEqual((await listDir(dir)).filter((f) => f.endsWith(".json") && f !== "manifest.json"), []);
    });
  }
  // The message says who sets it and how to do without it.
  await withProvenance("{", () => {
    assert.throws(() => provenanceFromEnv(), /set by deno task reproduce .*unset it to read the git state directly/);
  });
});

Deno.test("libraryCodeHash: over lib/, deno.json and deno.lock; another byte gives another hash; null without them", async () => {
  const make = async (body: string) => {
    const root = await tempDir();
    await Deno.mkdir(join(root, "lib", "attention"), { recursive: true });
    await Deno.writeTextFile(join(root, "lib", "attention", "a.ts"), body);
    await Deno.writeTextFile(join(root, "deno.json"), "{}\n");
    await Deno.writeTextFile(join(root, "deno.lock"), "{}\n");
    return root;
  };
  const a = await libraryCodeHash(await make("export const a = 1;\n"));
  const same = await libraryCodeHash(await make("export const a = 1;\n"));
  const b = await libraryCodeHash(await make("export const a = 2;\n"));
  assert.match(a ?? "", /^[0-9a-f]{64}$/);
  assert.equal(a, same, "equal trees, equal hashes");
  assert.notEqual(a, b);
  const partial = await make("x");
  await Deno.remove(join(partial, "deno.lock"));
  assert.equal(await libraryCodeHash(partial), null);
});
