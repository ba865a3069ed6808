/**
 * Tests for lib/frames: the loaders against small fixture files in temporary folders (column names
 * and types, row counts, missing values as null, errors for missing files and bad options), the
 * strict typing of CSV cells and row values, and the Jupyter display of a frame.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import pl from "nodejs-polars";
import type { DataFrame } from "nodejs-polars";
import { JUPYTER_DISPLAY, saveTable } from "../lib/figures/mod.ts";
import type { MimeBundle } from "../lib/figures/mod.ts";
import {
  benchResults,
  claims,
  csvFrame,
  figureData,
  frame,
  isDataFrame,
  resultTable,
  resultTables,
  runLogs,
  show,
  validationCurve,
} from "../lib/frames/mod.ts";

type ErrorClass = new (...args: never[]) => Error;

/** Asserts that `f` throws an instance of exactly `cls` whose message matches `pattern`. */
function throwsExactly(f: () => unknown, cls: ErrorClass, pattern: RegExp): void {
  assert.throws(f, (err: unknown) => {
    assert.equal((err as Error).constructor, cls, `expected a ${cls.name}, got ${String(err)}`);
    assert.match((err as Error).message, pattern);
    return true;
  });
}

/** Asserts that `f()` rejects with an instance of exactly `cls` whose message matches `pattern`. */
async function rejectsExactly(f: () => Promise<unknown>, cls: ErrorClass, pattern: RegExp): Promise<void> {
  await assert.rejects(f, (err: unknown) => {
    assert.equal((err as Error).constructor, cls, `expected a ${cls.name}, got ${String(err)}`);
    assert.match((err as Error).message, pattern);
    return true;
  });
}

const dtypes = (df: DataFrame) => Object.fromEntries(df.columns.map((c) => [c, df.getColumn(c).dtype.variant]));
const column = (df: DataFrame, name: string) => df.getColumn(name).toArray() as unknown[];
const display = (df: DataFrame) => (df as unknown as { [JUPYTER_DISPLAY](): MimeBundle })[JUPYTER_DISPLAY]();

async function write(dir: string, file: string, text: string): Promise<void> {
  const path = join(dir, file);
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeTextFile(path, text);
}

// ---------------------------------------------------------------------------------------------------
// csvFrame and frame: typing

Deno.test("csvFrame types columns from their cells: Int64, Float64, Bool, String; empty cells are null", () => {
  const df = csvFrame(
    "n,ms,ok,label,code,none\n" +
      "64,1.5,true,softmax,007,\n" +
      "128,,false,,012,\n" +
      "-3,NaN,true,x,1,\n" +
      "0,-Infinity,false,y,2,\n",
  );
  assert.equal(df.height, 4);
  assert.deepEqual(df.columns, ["n", "ms", "ok", "label", "code", "none"]);
  assert.deepEqual(dtypes(df), {
    n: "Int64",
    ms: "Float64",
    ok: "Bool",
    label: "String",
    code: "String", // "007" keeps its leading zeros: the column is text
    none: "String", // no values at all
  });
  assert.deepEqual(column(df, "n"), [64, 128, -3, 0]);
  const ms = column(df, "ms");
  assert.equal(ms[0], 1.5);
  assert.equal(ms[1], null);
  assert.ok(Number.isNaN(ms[2]));
  assert.equal(ms[3], -Infinity);
  assert.deepEqual(column(df, "ok"), [true, false, true, false]);
  assert.deepEqual(column(df, "label"), ["softmax", null, "x", "y"]);
  assert.deepEqual(column(df, "code"), ["007", "012", "1", "2"]);
  assert.deepEqual(column(df, "none"), [null, null, null, null]);
});

Deno.test("csvFrame reads quoted fields and exponents as toCsv writes them", () => {
  const df = csvFrame('name,x\n"a, ""b""",1.5e-7\n"two\nlines",2e+21\n');
  assert.deepEqual(column(df, "name"), ['a, "b"', "two\nlines"]);
  assert.deepEqual(column(df, "x"), [1.5e-7, 2e21]);
  assert.equal(dtypes(df).x, "Float64"); // 2e21 is beyond the safe integers
});

Deno.test("csvFrame with declared types: a cell that does not fit is an Error naming row and column", () => {
  const typed = csvFrame("step,loss\n1,2\n2,3\n", { types: { loss: "float" } });
  assert.deepEqual(dtypes(typed), { step: "Int64", loss: "Float64" });
  throwsExactly(
    () => csvFrame("step,loss\n1,2.5\n2.5,3\n", { types: { step: "int" }, source: "train.csv" }),
    Error,
    /^train\.csv: row 2, column "step" holds "2\.5", expected an integer or an empty cell$/,
  );
  throwsExactly(
    () => csvFrame("ok\ntrue\nyes\n", { types: { ok: "bool" } }),
    Error,
    /row 2, column "ok" holds "yes", expected true or false/,
  );
  throwsExactly(
    () => csvFrame("x\n1\n 2\n", { types: { x: "float" } }),
    Error,
    /row 2, column "x" holds " 2", expected a number/,
  );
});

Deno.test("csvFrame rejects malformed text: ragged rows, duplicate or empty column names, no header", () => {
  throwsExactly(() => csvFrame("a,b\n1,2\n3\n"), Error, /^CSV text: row 2 has 1 field, the header has 2/);
  throwsExactly(() => csvFrame("a,b\n1,2\n\n"), Error, /row 2 has 1 field, the header has 2/);
  throwsExactly(() => csvFrame("a,a\n1,2\n"), Error, /the header names column "a" twice/);
  throwsExactly(() => csvFrame("a,\n1,2\n"), Error, /column 2 of the header has no name/);
  throwsExactly(() => csvFrame(""), Error, /CSV text is empty; expected a header line/);
  throwsExactly(() => csvFrame('a\n"open\n'), Error, /a quoted field is never closed/);
  const headerOnly = csvFrame("a,b\n");
  assert.deepEqual(headerOnly.shape, { height: 0, width: 2 });
});

Deno.test("csvFrame and frame reject unknown options and bad option values", () => {
  throwsExactly(() => csvFrame("a\n1\n", { type: {} } as never), TypeError, /csvFrame: unknown option "type"/);
  throwsExactly(
    () => csvFrame("a\n1\n", { types: { a: "number" } } as never),
    RangeError,
    /types\["a"\] must be one of/,
  );
  throwsExactly(() => csvFrame("a\n1\n", { types: [] } as never), TypeError, /options\.types must be an object/);
  throwsExactly(() => csvFrame(42 as never), TypeError, /csvFrame: text must be a string, got number 42/);
  throwsExactly(() => frame([], { maxRow: 3 } as never), TypeError, /frame: unknown option "maxRow"/);
  throwsExactly(() => frame([], { maxRows: 0 }), RangeError, /options\.maxRows must be a positive integer, got 0/);
  throwsExactly(() => frame([], { digits: 2.5 }), RangeError, /options\.digits must be an integer from 1 to 21/);
  throwsExactly(() => frame([], { digits: "4" } as never), TypeError, /options\.digits must be a number/);
  throwsExactly(() => frame([], null as never), TypeError, /frame: options must be an object/);
});

Deno.test("frame types row values; missing keys, null and undefined are null", () => {
  const df = frame([
    { variant: "softmax", n: 64, ms: 1.5, ok: true },
    { variant: "linear", n: 128, ms: null, ok: undefined },
    { variant: "norm", n: 256 },
  ]);
  assert.deepEqual(df.shape, { height: 3, width: 4 });
  assert.deepEqual(dtypes(df), { variant: "String", n: "Int64", ms: "Float64", ok: "Bool" });
  assert.deepEqual(column(df, "ms"), [1.5, null, null]);
  assert.deepEqual(column(df, "ok"), [true, null, null]);
  // An integer-valued column declared float is Float64.
  assert.equal(dtypes(frame([{ x: 1 }, { x: 2 }], { types: { x: "float" } })).x, "Float64");
  // An all-null column takes its declared type.
  assert.equal(dtypes(frame([{ x: null }], { types: { x: "int" } })).x, "Int64");
});

Deno.test("frame rejects a column that mixes kinds, Dates, huge bigints and values against declared types", () => {
  throwsExactly(
    () => frame([{ rank: 1 }, { rank: 2 }, { rank: "—" }]),
    TypeError,
    /^frame: column "rank" mixes numbers \(rows\[0\]: number 1\) and strings \(rows\[2\]: the string "—"\); give a missing value as null/,
  );
  throwsExactly(() => frame([{ at: new Date(0) }]), TypeError, /rows\[0\]\["at"\] is a Date/);
  throwsExactly(() => frame([{ big: 2n ** 60n }]), RangeError, /rows\[0\]\["big"\] is the bigint 1152921504606846976/);
  throwsExactly(
    () => frame([{ step: 1 }, { step: 1.5 }], { types: { step: "int" } }),
    TypeError,
    /column "step" is declared "int", but rows\[1\]\["step"\] is number 1\.5; expected an integer/,
  );
  throwsExactly(
    () => frame([{ x: 1 }], { types: { x: "string" } }),
    TypeError,
    /column "x" is declared "string", but rows\[0\]\["x"\] is number 1; expected text/,
  );
  throwsExactly(() => frame({} as never), TypeError, /frame: rows must be an array of row objects/);
  throwsExactly(() => frame([{ a: { b: 1 } }] as never), TypeError, /frame: rows\[0\]\.a must be a string, number/);
});

Deno.test("integers beyond ±2^31 are stored as Float64, so that Series.get returns them exactly", () => {
  // nodejs-polars 0.25.2 returns Int64 values through 32 bits from Series.get: 3e9 would read as -1294967296.
  const df = frame([{ n: 3_000_000_000 }, { n: 1 }]);
  assert.equal(dtypes(df).n, "Float64");
  assert.equal(df.getColumn("n").get(0), 3_000_000_000);
  const small = csvFrame("n\n2147483647\n-2147483647\n");
  assert.equal(dtypes(small).n, "Int64");
  assert.equal(small.getColumn("n").get(0), 2147483647);
  assert.equal(dtypes(csvFrame("n\n2147483648\n")).n, "Float64");
});

// ---------------------------------------------------------------------------------------------------
// show: the Jupyter display

Deno.test("show: an HTML table that counts the rows it leaves out, numbers to a few digits, cells escaped", () => {
  // CSV keeps the header's order, even for a column named like an array index (which an object would put first).
  const df = show(csvFrame("variant,64,ok\n<b>softmax</b>,0.333333,true\nlinear,,false\nnorm,2,\n"), {
    maxRows: 2,
    digits: 3,
  });
  const bundle = display(df);
  assert.deepEqual(Object.keys(bundle).sort(), ["text/html", "text/plain"]);
  const html = bundle["text/html"];
  assert.match(html, /<th title="String">variant<\/th><th title="Float64" style="text-align: right">64<\/th>/);
  assert.match(html, /<td>&lt;b&gt;softmax&lt;\/b&gt;<\/td><td style="text-align: right">0\.333<\/td><td>true<\/td>/);
  assert.match(html, /<td>linear<\/td><td style="text-align: right"><\/td><td>false<\/td>/);
  assert.ok(!html.includes("norm"), "the third row is beyond maxRows");
  assert.match(html, /first 2 of 3 rows shown \(1 more\); show\(df, \{ maxRows: 3 \}\) shows all/);
  assert.match(bundle["text/plain"], /^shape: \(3, 3\)/);
});

Deno.test("show: every row shown has no caption; an empty frame says so; show returns the same frame", () => {
  const df = pl.DataFrame({ a: [1, 2] });
  const shown = show(df);
  assert.equal(shown, df);
  const html = display(shown)["text/html"];
  assert.ok(!html.includes("<caption"));
  assert.equal((html.match(/<tr>/g) ?? []).length, 3);
  assert.match(
    display(csvFrame("a,b\n"))["text/html"],
    /no rows<\/caption><thead><tr><th[^>]*>a<\/th><th[^>]*>b<\/th><\/tr><\/thead><tbody><\/tbody>/,
  );
  // A frame derived with polars keeps polars' own display (50 rows, no count of the rest) until show().
  const derived = df.filter(pl.col("a").gt(1));
  assert.deepEqual(Object.keys(display(derived)).sort(), ["application/vnd.dataresource+json", "text/html"]);
  assert.deepEqual(Object.keys(display(show(derived))).sort(), ["text/html", "text/plain"]);
  throwsExactly(() => show([{ a: 1 }] as never), TypeError, /show: df must be a nodejs-polars DataFrame, got an array/);
  throwsExactly(() => show(df, { maxRows: -1 }), RangeError, /show: options\.maxRows must be a positive integer/);
  assert.equal(isDataFrame(df), true);
  assert.equal(isDataFrame({ height: 1 }), false);
});

// ---------------------------------------------------------------------------------------------------
// runLogs and validationCurve

const TRAIN_HEADER = "step,lr,loss,grad_norm,clipped,clip,tokens,tokens_per_s,seconds";

/** A runs folder: lm/a with train, valid and grad-norm logs; lm/b with its own; ablation/x with no validation. */
async function runsFixture(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "attnlab_frames_runs_" });
  await write(
    dir,
    "lm/a/train.csv",
    `${TRAIN_HEADER}\n0,0.0005,5.5,2.5,true,1,2048,10240,0.2\n1,0.001,4.25,0.75,false,1,2048,,0.125\n` +
      `2,0.001,NaN,NaN,false,1,2048,,0.5\n`,
  );
  await write(dir, "lm/a/valid.csv", "step,loss,perplexity,bits_per_byte\n0,5,148.413,7.21348\n2,4,54.5982,5.77078\n");
  await write(dir, "lm/a/grad_norms.csv", "step,blocks.0.attn.wq,global\n0,0.5,2.5\n1,0.25,0.75\n");
  await write(dir, "lm/b/train.csv", `${TRAIN_HEADER}\n0,0.0005,6,3,true,,,,0.25\n`);
  await write(dir, "lm/b/valid.csv", "step,loss,perplexity,bits_per_byte\n0,6,403.429,8.65617\n");
  await write(dir, "lm/b/grad_norms.csv", "step,blocks.0.attn.wq,blocks.1.attn.wq,global\n0,1.5,0.5,3\n");
  await write(dir, "ablation/x/seed1/train.csv", `${TRAIN_HEADER}\n0,0.001,5,1,false,1,1024,5120,0.2\n`);
  return dir;
}

Deno.test("runLogs: one row per logged step, typed columns, null for unknown values, NaN kept", async () => {
  const runsDir = await runsFixture();
  const df = await runLogs("lm/a", { runsDir });
  assert.equal(df.height, 3);
  assert.deepEqual(df.columns, TRAIN_HEADER.split(","));
  assert.deepEqual(dtypes(df), {
    step: "Int64",
    lr: "Float64",
    loss: "Float64",
    grad_norm: "Float64",
    clipped: "Bool",
    clip: "Float64",
    tokens: "Int64",
    tokens_per_s: "Float64",
    seconds: "Float64",
  });
  assert.deepEqual(column(df, "step"), [0, 1, 2]);
  assert.deepEqual(column(df, "loss").slice(0, 2), [5.5, 4.25]);
  assert.ok(Number.isNaN(column(df, "loss")[2]), "a stopped step's NaN loss stays NaN, not null");
  assert.deepEqual(column(df, "clipped"), [true, false, false]);
  assert.deepEqual(column(df, "tokens_per_s"), [10240, null, null]);
  // Declared types hold whatever the values: run b has no clip or token counts, still Float64 and Int64.
  const b = await runLogs("lm/b", { runsDir });
  assert.equal(dtypes(b).clip, "Float64");
  assert.equal(dtypes(b).tokens, "Int64");
  assert.deepEqual(column(b, "clip"), [null]);
  // Polars works on it: the mean of the finite losses of run a.
  const mean = df.filter(pl.col("loss").isNotNan()).select(pl.col("loss").mean()).toRecords()[0].loss;
  assert.equal(mean, (5.5 + 4.25) / 2);
});

Deno.test("validationCurve and runLogs of several runs: a leading run column, columns unioned", async () => {
  const runsDir = await runsFixture();
  const one = await validationCurve("lm/a", { runsDir });
  assert.deepEqual(one.columns, ["step", "loss", "perplexity", "bits_per_byte"]);
  assert.deepEqual(dtypes(one), { step: "Int64", loss: "Float64", perplexity: "Float64", bits_per_byte: "Float64" });
  assert.deepEqual(column(one, "loss"), [5, 4]);
  const both = await validationCurve(["lm/a", "lm/b"], { runsDir });
  assert.equal(both.height, 3);
  assert.deepEqual(both.columns, ["run", "step", "loss", "perplexity", "bits_per_byte"]);
  assert.deepEqual(column(both, "run"), ["lm/a", "lm/a", "lm/b"]);
  const norms = await runLogs(["lm/a", "lm/b"], { runsDir, log: "gradNorms" });
  assert.deepEqual(norms.columns, ["run", "step", "blocks.0.attn.wq", "global", "blocks.1.attn.wq"]);
  assert.deepEqual(column(norms, "blocks.1.attn.wq"), [null, null, 0.5]);
  assert.deepEqual(column(norms, "global"), [2.5, 0.75, 3]);
  assert.equal(JUPYTER_DISPLAY in norms, true);
});

Deno.test("runLogs: a missing run or log is an Error naming the path and what trains it", async () => {
  const runsDir = await runsFixture();
  await rejectsExactly(
    () => runLogs("lm/vanilla", { runsDir }),
    Error,
    new RegExp(
      `^runLogs: no run "lm/vanilla": ${join(runsDir, "lm", "vanilla")} does not exist \\(runs in ${runsDir}: ` +
        `ablation/x/seed1, lm/a, lm/b\\); the shared language models are trained by notebooks 02, 03, 04 and 06`,
    ),
  );
  await rejectsExactly(
    () => validationCurve("ablation/x/seed1", { runsDir }),
    Error,
    /validationCurve: run "ablation\/x\/seed1" has no valid\.csv \(.*valid\.csv is missing\): the run was trained without the validation option/,
  );
  await rejectsExactly(
    () => runLogs("ablation/y", { runsDir }),
    Error,
    /notebook 05 trains the ablation runs: run `deno task reproduce --only 05`/,
  );
  const empty = await Deno.makeTempDir();
  await rejectsExactly(() => runLogs("mine", { runsDir: empty }), Error, /holds no runs\); train it first with train/);
  await Deno.mkdir(join(empty, "started"));
  await rejectsExactly(
    () => runLogs("started", { runsDir: empty }),
    Error,
    /run "started" has no train\.csv yet .*train\(\) writes its logs at each checkpoint and at the end/,
  );
});

Deno.test("runLogs: bad names, options and log cells are errors that say what was expected", async () => {
  const runsDir = await runsFixture();
  await rejectsExactly(() => runLogs("../etc", { runsDir }), RangeError, /name "\.\.\/etc" is not a run name/);
  await rejectsExactly(() => runLogs("/abs", { runsDir }), RangeError, /name "\/abs" is not a run name/);
  await rejectsExactly(() => runLogs(42 as never, { runsDir }), TypeError, /name must be a run name .*got number 42/);
  await rejectsExactly(() => runLogs([], { runsDir }), RangeError, /name is an empty array/);
  await rejectsExactly(() => runLogs(["lm/a", "lm/a"], { runsDir }), RangeError, /name\[1\] "lm\/a" is listed twice/);
  await rejectsExactly(() => runLogs("lm/a", { runDir: runsDir } as never), TypeError, /unknown option "runDir"/);
  await rejectsExactly(
    () => runLogs("lm/a", { log: "grad_norms" } as never),
    RangeError,
    /options\.log must be one of/,
  );
  await rejectsExactly(() => runLogs("lm/a", { runsDir: "" }), TypeError, /options\.runsDir must be a non-empty path/);
  await rejectsExactly(() => validationCurve("lm/a", { log: "valid" } as never), TypeError, /unknown option "log"/);
  await write(runsDir, "bad/train.csv", `${TRAIN_HEADER}\n0,0.001,abc,1,false,1,1,1,1\n`);
  await rejectsExactly(
    () => runLogs("bad", { runsDir }),
    Error,
    /bad\/train\.csv: row 1, column "loss" holds "abc", expected a number/,
  );
  await write(runsDir, "other/train.csv", "epoch,value\n1,2\n");
  await rejectsExactly(() => runLogs("other", { runsDir }), Error, /has no "step" column \(columns: epoch, value\)/);
});

// ---------------------------------------------------------------------------------------------------
// claims, resultTables, resultTable, figureData, benchResults

const MANIFEST_ENTRY = { config: {}, seed: null, backend: "cpu", commit: null, dirty: null, durationMs: null };

/** A figures folder: two claims files (one without a manifest entry), a table, figures with and without data. */
async function figuresFixture(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "attnlab_frames_figures_" });
  await write(
    dir,
    "01_claims.json",
    JSON.stringify([
      { id: "bound", claim: "≤ 1/4", paper: "0.25", measured: "0.2500", reproduced: true },
      { id: "speed", claim: "faster", paper: "4460×", measured: "12×", reproduced: false, note: "CPU" },
    ]),
  );
  await write(
    dir,
    "02_claims.json",
    JSON.stringify([
      { id: "ppl", claim: "T2 ≤ vanilla", paper: "29.57", measured: "n/a", reproduced: null },
      {
        id: "noise",
        claim: "RMSNorm's gain helps",
        paper: "−0.8%",
        measured: "−0.6%",
        outcome: "inconclusive",
        reason: "within noise",
        rule: "the 95% t interval straddles 0.02",
        interval: { estimate: 0.006, low: -0.01, high: 0.022, level: 0.95, n: 3, method: "t" },
        settle: { seeds: 13, flops: 9e12 },
        evidence: false,
      },
    ]),
  );
  await write(dir, "dilution_table.csv", "model,layer,auc,rank\nvanilla,0,0.75,1\n1+elu,1,,—\n");
  await write(dir, "scaling.csv", "n,ms\n64,1.5\n128,4.25\n");
  const manifest = {
    figures: {
      "01_claims": {
        ...MANIFEST_ENTRY,
        name: "01_claims",
        files: ["01_claims.json"],
        notebook: "01_demo",
        kind: "claims",
        date: "2026-01-01T00:00:00.000Z",
      },
      dilution_table: {
        ...MANIFEST_ENTRY,
        name: "dilution_table",
        files: ["dilution_table.csv"],
        notebook: "03_attention_dilution",
        kind: "table",
        caption: "AUC",
        date: "2026-01-02T00:00:00.000Z",
      },
      gone_table: {
        ...MANIFEST_ENTRY,
        name: "gone_table",
        files: ["gone_table.csv"],
        notebook: "03_attention_dilution",
        kind: "table",
        date: "2026-01-03T00:00:00.000Z",
      },
      escape: {
        ...MANIFEST_ENTRY,
        name: "escape",
        files: ["../outside.csv"],
        kind: "table",
        date: "2026-01-03T00:00:00.000Z",
      },
      scaling: {
        ...MANIFEST_ENTRY,
        name: "scaling",
        files: ["scaling.svg", "scaling.png", "scaling.csv"],
        notebook: "07_complexity",
        date: "2026-01-04T00:00:00.000Z",
      },
      picture: { ...MANIFEST_ENTRY, name: "picture", files: ["picture.svg"], date: "2026-01-05T00:00:00.000Z" },
    },
  };
  await write(dir, "manifest.json", JSON.stringify(manifest));
  return dir;
}

Deno.test("claims: every claim of every *_claims.json in three outcomes, legacy ones normalised, null where absent", async () => {
  const figuresDir = await figuresFixture();
  const df = await claims({ figuresDir });
  assert.equal(df.height, 4);
  assert.deepEqual(df.columns, [
    "notebook",
    "name",
    "scale",
    "id",
    "outcome",
    "reason",
    "rule",
    "evidence",
    "legacy",
    "claim",
    "paper",
    "measured",
    "note",
    "interval_estimate",
    "interval_low",
    "interval_high",
    "interval_level",
    "interval_n",
    "interval_method",
    "settle_model",
    "settle_tokens",
    "settle_seeds",
    "settle_flops",
    "settle_note",
  ]);
  const types = dtypes(df);
  assert.deepEqual(
    [types.evidence, types.legacy, types.note, types.interval_low, types.interval_n, types.settle_flops, types.scale],
    ["Bool", "Bool", "String", "Float64", "Int64", "Float64", "String"],
  );
  assert.deepEqual(column(df, "notebook"), ["01_demo", "01_demo", null, null]);
  assert.deepEqual(column(df, "name"), ["01_claims", "01_claims", "02_claims", "02_claims"]);
  // Neither file records a scale (01's entry predates scales, 02 has no entry): both read as full.
  assert.deepEqual(column(df, "scale"), ["full", "full", "full", "full"]);
  assert.deepEqual(column(df, "id"), ["bound", "speed", "ppl", "noise"]);
  // Legacy true / false / null read as reproduced / not reproduced / inconclusive ("not comparable").
  assert.deepEqual(column(df, "outcome"), ["reproduced", "not reproduced", "inconclusive", "inconclusive"]);
  assert.deepEqual(column(df, "reason"), [null, null, "not comparable", "within noise"]);
  const legacyRule = "legacy: the notebook's own check (no interval)";
  assert.deepEqual(column(df, "rule"), [legacyRule, legacyRule, legacyRule, "the 95% t interval straddles 0.02"]);
  assert.deepEqual(column(df, "evidence"), [true, true, true, false]);
  assert.deepEqual(column(df, "legacy"), [true, true, true, false]);
  assert.deepEqual(column(df, "note"), [null, "CPU", null, null]);
  assert.deepEqual(column(df, "interval_low"), [null, null, null, -0.01]);
  assert.deepEqual(column(df, "interval_n"), [null, null, null, 3]);
  assert.deepEqual(column(df, "interval_method"), [null, null, null, "t"]);
  assert.deepEqual(column(df, "settle_seeds"), [null, null, null, 13]);
  assert.deepEqual(column(df, "settle_flops"), [null, null, null, 9e12]);
  assert.deepEqual(column(df, "settle_model"), [null, null, null, null]);
  // The default folder is figuresDir(): ATTNLAB_FIGURES_DIR when set.
  const saved = Deno.env.get("ATTNLAB_FIGURES_DIR");
  Deno.env.set("ATTNLAB_FIGURES_DIR", figuresDir);
  try {
    assert.equal((await claims()).height, 4);
  } finally {
    if (saved === undefined) Deno.env.delete("ATTNLAB_FIGURES_DIR");
    else Deno.env.set("ATTNLAB_FIGURES_DIR", saved);
  }
});

Deno.test("claims: a malformed file, no claims files, a missing folder and unknown options are errors", async () => {
  const figuresDir = await figuresFixture();
  await write(figuresDir, "03_claims.json", JSON.stringify([{ id: "x", claim: "c", paper: "p", measured: "m" }]));
  await rejectsExactly(
    () => claims({ figuresDir }),
    TypeError,
    /claims: .*03_claims\.json: claims\[0\] has no outcome: give outcome/,
  );
  await write(
    figuresDir,
    "03_claims.json",
    JSON.stringify([{ id: "x", claim: "c", paper: "p", measured: "m", reproduced: false, outcome: "reproduced" }]),
  );
  await rejectsExactly(
    () => claims({ figuresDir }),
    TypeError,
    /claims: .*03_claims\.json: claims\[0\] mixes the legacy field "reproduced" with "outcome"/,
  );
  await write(figuresDir, "03_claims.json", "[{");
  await rejectsExactly(() => claims({ figuresDir }), Error, /claims: .*03_claims\.json is not valid JSON/);
  const empty = await Deno.makeTempDir();
  await rejectsExactly(
    () => claims({ figuresDir: empty }),
    Error,
    /holds no \*_claims\.json file \(saveClaims writes them\); the notebooks write it: run `deno task reproduce`/,
  );
  await rejectsExactly(
    () => claims({ figuresDir: join(empty, "nope") }),
    Error,
    new RegExp(`claims: the figures folder ${join(empty, "nope")} does not exist; .*deno task reproduce`),
  );
  await rejectsExactly(
    () => claims({ dir: empty } as never),
    TypeError,
    /claims: unknown option "dir"; valid options are figuresDir/,
  );
  await rejectsExactly(() => claims("figures" as never), TypeError, /claims: options must be an object/);
});

Deno.test("resultTables lists the saved tables; resultTable reads one with typed columns", async () => {
  const figuresDir = await figuresFixture();
  const index = await resultTables({ figuresDir });
  assert.deepEqual(index.columns, ["name", "notebook", "caption", "file", "date", "backend", "commit"]);
  assert.deepEqual(column(index, "name"), ["dilution_table", "escape", "gone_table"]);
  assert.deepEqual(column(index, "caption"), ["AUC", null, null]);
  assert.equal(dtypes(index).commit, "String");
  const df = await resultTable("dilution_table", { figuresDir });
  assert.equal(df.height, 2);
  assert.deepEqual(dtypes(df), { model: "String", layer: "Int64", auc: "Float64", rank: "String" });
  assert.deepEqual(column(df, "auc"), [0.75, null]);
  assert.deepEqual(column(df, "rank"), ["1", "—"]);
  // No tables: the same columns, no rows.
  const bare = await Deno.makeTempDir();
  await write(bare, "manifest.json", JSON.stringify({ figures: {} }));
  assert.deepEqual((await resultTables({ figuresDir: bare })).shape, { height: 0, width: 7 });
});

Deno.test("resultTable and figureData: errors name the file and the notebook that writes it", async () => {
  const figuresDir = await figuresFixture();
  await rejectsExactly(
    () => resultTable("gone_table", { figuresDir }),
    Error,
    new RegExp(
      `^resultTable: ${
        join(figuresDir, "gone_table.csv")
      } is missing; manifest\\.json lists it for table "gone_table"; ` +
        "rerun notebook 03_attention_dilution: `deno task reproduce --only 03`$",
    ),
  );
  await rejectsExactly(
    () => resultTable("nope", { figuresDir }),
    Error,
    /has no table "nope" \(its tables: dilution_table, gone_table, escape\)/,
  );
  await rejectsExactly(
    () => resultTable("scaling", { figuresDir }),
    Error,
    /"scaling" is saved as a figure, not a table; read it with figureData\(name\)/,
  );
  await rejectsExactly(
    () => resultTable("escape", { figuresDir }),
    Error,
    /lists "\.\.\/outside\.csv" for "escape", outside/,
  );
  await rejectsExactly(
    () => resultTable(3 as never, { figuresDir }),
    TypeError,
    /name must be the name a table was saved under/,
  );
  await rejectsExactly(
    () => figureData("picture", { figuresDir }),
    Error,
    /figure "picture" was saved without data \(its files: picture\.svg\)/,
  );
  const noManifest = await Deno.makeTempDir();
  await rejectsExactly(
    () => figureData("scaling", { figuresDir: noManifest }),
    Error,
    new RegExp(`${join(noManifest, "manifest.json")} is missing; the notebooks write it`),
  );
  await rejectsExactly(() => resultTables({ figuresDir: noManifest }), Error, /manifest\.json is missing/);
  const data = await figureData("scaling", { figuresDir });
  assert.deepEqual(dtypes(data), { n: "Int64", ms: "Float64" });
  assert.deepEqual(column(data, "ms"), [1.5, 4.25]);
});

Deno.test("resultTable reads back what saveTable wrote: numbers, text and missing values", async () => {
  const figuresDir = await Deno.makeTempDir({ prefix: "attnlab_frames_save_" });
  const rows = [
    { model: "vanilla", "valid loss": 2.25, "paper PPL": 29.63, steps: 600, diverged: false },
    { model: 'a "quoted", name', "valid loss": 2.5, "paper PPL": null, steps: 600, diverged: true },
  ];
  await saveTable("round_trip", rows, { outDir: figuresDir, backend: "cpu", notebook: "02_demo" });
  const df = await resultTable("round_trip", { figuresDir });
  assert.deepEqual(dtypes(df), {
    model: "String",
    "valid loss": "Float64",
    "paper PPL": "Float64",
    steps: "Int64",
    diverged: "Bool",
  });
  assert.deepEqual(df.toRecords(), rows);
});

Deno.test("benchResults: bench.csv with declared types, null where nothing was measured", async () => {
  const figuresDir = await Deno.makeTempDir();
  await write(
    figuresDir,
    "bench.csv",
    "backend,variant,causal,n,batch,heads,d,status,note,fwd_ms,fwd_bwd_ms,repeats,speedup_vs_torch_fwd\n" +
      "blas,softmax,true,256,1,8,64,ok,,16.5,34.75,3,0.125\n" +
      "blas,softmax,true,512,1,8,64,skipped (time),predicted 20 s,,,,\n" +
      "cpu,linear,false,256,1,8,64,ok,,100,250,1,\n",
  );
  const df = await benchResults({ figuresDir });
  assert.equal(df.height, 3);
  assert.deepEqual(dtypes(df), {
    backend: "String",
    variant: "String",
    causal: "Bool",
    n: "Int64",
    batch: "Int64",
    heads: "Int64",
    d: "Int64",
    status: "String",
    note: "String",
    fwd_ms: "Float64",
    fwd_bwd_ms: "Float64",
    repeats: "Int64",
    speedup_vs_torch_fwd: "Float64",
  });
  assert.deepEqual(column(df, "fwd_ms"), [16.5, null, 100]);
  assert.deepEqual(column(df, "note"), [null, "predicted 20 s", null]);
  assert.deepEqual(column(df, "causal"), [true, true, false]);
  const ok = df.filter(pl.col("status").eq(pl.lit("ok")));
  assert.deepEqual(column(ok, "n"), [256, 256]);
  const path = join(figuresDir, "bench.csv");
  assert.equal((await benchResults({ path })).height, 3);
  const noBench = await Deno.makeTempDir();
  await rejectsExactly(
    () => benchResults({ figuresDir: noBench }),
    Error,
    /^benchResults: .*bench\.csv is missing; run `deno task bench` to write it/,
  );
  await rejectsExactly(
    () => benchResults({ figuresDir, path }),
    TypeError,
    /give options\.figuresDir or options\.path, not both/,
  );
  await rejectsExactly(() => benchResults({ out: path } as never), TypeError, /unknown option "out"/);
  await write(figuresDir, "bad.csv", "backend,variant,n,status\nblas,softmax,1e3x,ok\n");
  await rejectsExactly(
    () => benchResults({ path: join(figuresDir, "bad.csv") }),
    Error,
    /row 1, column "n" holds "1e3x", expected an integer/,
  );
});
