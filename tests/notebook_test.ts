import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildExecuteArgs, formatSummary, listNotebooks, NotebookError, runNotebook } from "../lib/notebook/runner.ts";
import { NOTEBOOKS_DIR, ROOT } from "../lib/notebook/paths.ts";
import {
  estimateRemaining,
  formatDuration,
  formatFields,
  formatProgressLine,
  formatRate,
  formatValue,
  progress,
  renderBar,
} from "../lib/notebook/progress.ts";
import { kernelspecStatus, nbclientRecentEnough } from "../lib/notebook/jupyter.ts";
import { parseFlags } from "../lib/tasks/cli.ts";
import { buildDenoTestArgs, formatTotals, parseDenoTestSummary } from "../lib/tasks/test.ts";
import { installHint, missingPackages } from "../lib/tasks/setup.ts";
import { buildNotebookArgs, findServerUrl } from "../lib/tasks/notebook.ts";

const FIXTURES = join(ROOT, "tests", "fixtures");
const SUCCEEDS = join(FIXTURES, "succeeds.ipynb");
const FAILS = join(FIXTURES, "fails_in_cell_2.ipynb");
const quiet = () => {};

Deno.test("runner: quick mode runs a notebook on a copy and passes ATTNLAB_QUICK to the kernel", async () => {
  const before = readFileSync(SUCCEEDS);
  const figures = await Deno.makeTempDir({ prefix: "attnlab_test_" });
  try {
    const lines: string[] = [];
    const result = await runNotebook(SUCCEEDS, { mode: "quick", figuresDir: figures, log: (l) => lines.push(l) });
    assert.equal(result.status, "ok");
    assert.equal(result.cells, 3);
    assert.equal(result.executed, 2);
    assert.ok(lines.some((l) => l.includes("kernel started")), lines.join("\n"));
    assert.ok(lines.some((l) => l.includes("cell 3/3")), lines.join("\n"));
    const seen = JSON.parse(readFileSync(join(figures, "fixture_env.json"), "utf8"));
    assert.equal(seen.quick, "1");
    assert.equal(seen.scale, "quick");
    assert.equal(seen.cwd, NOTEBOOKS_DIR);
    assert.deepEqual(readFileSync(SUCCEEDS), before, "quick mode must not modify the notebook");
  } finally {
    await Deno.remove(figures, { recursive: true });
  }
});

Deno.test("runner: an error names the notebook and cell 2 and leaves the file alone", async () => {
  const before = readFileSync(FAILS);
  const err = await runNotebook(FAILS, { mode: "quick", log: quiet }).then(
    () => assert.fail("the failing fixture succeeded"),
    (e) => e,
  );
  try {
    assert.ok(err instanceof NotebookError, String(err));
    assert.equal(err.cell, 2);
    assert.equal(err.kind, "cell");
    assert.equal(err.ename, "RangeError");
    assert.match(err.message, /fails_in_cell_2\.ipynb/);
    assert.match(err.message, /cell 2/);
    assert.match(err.message, /fixture failure in cell 2 \(answer 42\)/);
    assert.match(err.firstLine ?? "", /^throw new RangeError/);
    assert.deepEqual(readFileSync(FAILS), before);
    assert.ok(err.partialOutput, "a partial notebook is kept for inspection");
    const partial = JSON.parse(readFileSync(err.partialOutput, "utf8"));
    assert.equal(partial.cells[1].outputs[0].output_type, "error");
  } finally {
    if (err?.partialOutput) await Deno.remove(join(err.partialOutput, ".."), { recursive: true });
  }
});

Deno.test("runner: full mode saves outputs in place without volatile metadata", async () => {
  const dir = await Deno.makeTempDir({ prefix: "attnlab_test_" });
  try {
    const copy = join(dir, "00_fixture.ipynb");
    copyFileSync(SUCCEEDS, copy);
    const figures = join(dir, "figures");
    const result = await runNotebook(copy, { mode: "full", figuresDir: figures, log: quiet });
    assert.equal(result.status, "ok");
    const saved = JSON.parse(readFileSync(copy, "utf8"));
    const text = saved.cells[1].outputs.map((o: { text?: string[] | string }) => [o.text ?? ""].flat().join("")).join(
      "",
    );
    assert.match(text, /hello from the fixture/);
    for (const cell of saved.cells) assert.equal(cell.metadata.execution, undefined);
    const seen = JSON.parse(readFileSync(join(figures, "fixture_env.json"), "utf8"));
    assert.deepEqual([seen.quick, seen.scale], ["0", "full"]);
    // Large mode: saved in place as full mode, the kernel at the large scale.
    const large = await runNotebook(copy, { mode: "large", figuresDir: figures, log: quiet });
    assert.equal(large.status, "ok");
    const seenLarge = JSON.parse(readFileSync(join(figures, "fixture_env.json"), "utf8"));
    assert.deepEqual([seenLarge.quick, seenLarge.scale], ["0", "large"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runner: listNotebooks sorts NN_*.ipynb, filters with only, and rejects filters that match nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "attnlab_test_" });
  try {
    for (const name of ["01_b.ipynb", "00_a.ipynb", "notes.ipynb", "02_attention.ipynb"]) {
      writeFileSync(join(dir, name), "{}");
    }
    mkdirSync(join(dir, "03_dir.ipynb.d"));
    const names = (only?: string[]) => listNotebooks({ dir, only }).map((p) => p.slice(dir.length + 1));
    assert.deepEqual(names(), ["00_a.ipynb", "01_b.ipynb", "02_attention.ipynb"]);
    assert.deepEqual(names(["00"]), ["00_a.ipynb"]);
    assert.deepEqual(names(["attention,01"]), ["01_b.ipynb", "02_attention.ipynb"]);
    assert.throws(() => names(["07"]), /--only 07 matches no notebook/);
    assert.deepEqual(listNotebooks({ dir: join(dir, "missing") }), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runner: driver arguments and summary table", () => {
  const args = buildExecuteArgs({ input: "/tmp/x.ipynb", output: "/tmp/x.ipynb", cellTimeoutSeconds: 5 });
  assert.ok(args[0].endsWith("execute.py"));
  assert.deepEqual(args.slice(args.indexOf("--cell-timeout"), args.indexOf("--cell-timeout") + 2), [
    "--cell-timeout",
    "5",
  ]);
  assert.ok(args.includes("--output"));
  const error = new NotebookError("x", { notebook: "n", kind: "cell", cell: 4 });
  const table = formatSummary([
    { notebook: "notebooks/00_a.ipynb", cells: 12, executed: 9, seconds: 14.24, status: "ok" },
    { notebook: "notebooks/01_b.ipynb", cells: 3, executed: 1, seconds: 2, status: "failed", error },
  ]);
  assert.deepEqual(table.split("\n"), [
    "notebook              cells  seconds  status",
    "notebooks/00_a.ipynb     12     14.2  ok",
    "notebooks/01_b.ipynb      3      2.0  FAILED (cell 4)",
  ]);
});

Deno.test("progress: bar, durations, rates and fields format deterministically", () => {
  assert.equal(renderBar(0, 4), "    ");
  assert.equal(renderBar(1, 4), "████");
  assert.equal(renderBar(0.5, 4), "██  ");
  assert.equal(renderBar(1 / 16, 2), "▏ ");
  assert.equal(renderBar(2, 3), "███");
  assert.equal(renderBar(NaN, 2), "  ");
  assert.equal(renderBar(0.5, 4, { ascii: true }), "##--");
  assert.equal(formatDuration(0), "00:00");
  assert.equal(formatDuration(65.4), "01:05");
  assert.equal(formatDuration(3725), "1:02:05");
  assert.equal(formatDuration(undefined), "--:--");
  assert.equal(formatDuration(NaN), "--:--");
  assert.equal(formatRate(12.5), "12.5 it/s");
  assert.equal(formatRate(0.25), "4.00 s/it");
  assert.equal(formatRate(0), "? it/s");
  assert.equal(formatValue(3), "3");
  assert.equal(formatValue(1.23456), "1.235");
  assert.equal(formatValue(0.000012), "1.20e-5");
  assert.equal(formatValue(123456.7), "1.23e+5");
  assert.equal(formatFields({ loss: 0.5, opt: "adam" }), "loss=0.5 opt=adam");
  assert.equal(estimateRemaining({ count: 25, total: 100, elapsedSeconds: 10 }), 30);
  assert.equal(estimateRemaining({ count: 0, total: 100, elapsedSeconds: 10 }), undefined);
  assert.equal(
    formatProgressLine(
      { label: "train", count: 25, total: 100, elapsedSeconds: 10, fields: { loss: 1.23 } },
      { barWidth: 8, ascii: true },
    ),
    "train:  25% |##------| 25/100 [00:10<00:30, 2.5 it/s] loss=1.23",
  );
  assert.equal(formatProgressLine({ count: 7, elapsedSeconds: 2 }), "7 [00:02, 3.5 it/s]");
});

Deno.test("progress: plain output is throttled by the (fake) clock and ends with a final line", async () => {
  let clock = 0;
  const lines: string[] = [];
  const p = progress({
    total: 10,
    label: "fit",
    output: "plain",
    plainIntervalSeconds: 5,
    barWidth: 4,
    ascii: true,
    now: () => clock,
    write: (t) => lines.push(t),
  });
  for (let i = 0; i < 10; i++) {
    clock += 1000;
    p.tick(1, { loss: 10 - i });
  }
  await p.done();
  assert.equal(p.count, 10);
  assert.deepEqual(lines, [
    "fit:  10% |----| 1/10 [00:01<00:09, 1 it/s] loss=10\n",
    "fit:  60% |##--| 6/10 [00:06<00:04, 1 it/s] loss=5\n",
    "fit: 100% |####| 10/10 [00:10<00:00, 1 it/s] loss=1\n",
  ]);
  assert.throws(() => progress({ totl: 3 } as never), /unknown option "totl"/);
});

Deno.test("progress: tty output redraws one line with \\r and ends with a newline", async () => {
  let clock = 0;
  const out: string[] = [];
  const p = progress({
    total: 2,
    output: "tty",
    barWidth: 2,
    ascii: true,
    now: () => clock,
    write: (t) => out.push(t),
  });
  clock = 1000;
  p.tick();
  clock = 2000;
  p.tick();
  await p.done();
  assert.ok(out.every((t) => t.startsWith("\r")));
  assert.ok(out.at(-1)!.endsWith("\x1b[K\n"));
  assert.match(out.at(-1)!, /100% \|##\| 2\/2/);
});

Deno.test("tasks: flags, summaries and commands", () => {
  const specs = {
    only: { type: "string", multiple: true, description: "" },
    help: { type: "boolean", description: "" },
  } as const;
  assert.throws(
    () => parseFlags(["--bogus"], specs, { command: "test" }),
    /unknown flag --bogus; valid flags: --only, --help/,
  );
  assert.throws(() => parseFlags(["stray"], specs, { command: "test" }), /valid flags/);
  assert.deepEqual(parseFlags(["--only=00", "--", "--x"], specs, { command: "t" }).rest, ["--x"]);
  assert.deepEqual(parseDenoTestSummary("x\nok | 12 passed (3 steps) | 0 failed (1s)\n"), {
    passed: 12,
    failed: 0,
    found: true,
  });
  assert.deepEqual(parseDenoTestSummary("\x1b[0m\x1b[31mFAILED\x1b[0m | 2 passed | 1 failed (5ms)"), {
    passed: 2,
    failed: 1,
    found: true,
  });
  assert.equal(parseDenoTestSummary("error: Type checking failed.").found, false);
  assert.equal(formatTotals(3, 1), "test: 3 passed, 1 failed");
  assert.deepEqual(buildDenoTestArgs(), ["test", "-A", "--doc", "tests/", "lib/"]);
  assert.deepEqual(buildDenoTestArgs({ paths: ["tests/a_test.ts"], filter: "x", extra: ["--parallel"] }), [
    "test",
    "-A",
    "--doc",
    "--filter",
    "x",
    "--parallel",
    "tests/a_test.ts",
  ]);
  assert.deepEqual(missingPackages({ executor: true, notebook: false, openblas: false, notebookUI: true }), {
    required: ["jupyter-notebook"],
    optional: ["libopenblas0"],
  });
  // PyTorch is required only when asked for (the twin test), and OpenBLAS then moves from optional to required.
  assert.deepEqual(
    missingPackages({ executor: true, notebook: true, openblas: false, notebookUI: false, torch: false }),
    {
      required: ["python3-torch", "libopenblas0"],
      optional: [],
    },
  );
  assert.deepEqual(
    missingPackages({ executor: true, notebook: true, openblas: true, notebookUI: false, dnnl: false }),
    {
      required: [],
      optional: ["libdnnl2"],
    },
  );
  assert.match(installHint(["python3-nbclient"], { apt: true, root: false }), /^sudo apt-get install/);
  assert.match(installHint(["jupyter-notebook"], { apt: false, root: false }), /^pip install .*notebook/);
  assert.deepEqual(buildNotebookArgs({ headless: true, root: true, dir: "/nb", extra: ["--port", "9"] }), [
    "-m",
    "notebook",
    "--notebook-dir=/nb",
    "--no-browser",
    "--allow-root",
    "--port",
    "9",
  ]);
  assert.equal(findServerUrl("  http://127.0.0.1:8888/?token=ab12 "), "http://127.0.0.1:8888/?token=ab12");
  assert.equal(nbclientRecentEnough("0.7.2"), true);
  assert.equal(nbclientRecentEnough("0.5.13"), false);
  assert.equal(kernelspecStatus({ dataDir: "/nonexistent" }).state, "missing");
});
