/**
 * attnlab's results as polars DataFrames (nodejs-polars 0.25.2), for analysis in a notebook or a
 * script:
 *
 * | loader                               | reads                                                        |
 * | ------------------------------------ | ------------------------------------------------------------ |
 * | {@linkcode runLogs}`(name)`          | a run's per-step training log, `data/runs/<name>/train.csv`  |
 * | {@linkcode validationCurve}`(name)`  | its validation curve, `data/runs/<name>/valid.csv`           |
 * | {@linkcode claims}`()`               | every notebook's claims, `figures/*_claims.json`             |
 * | {@linkcode resultTables}`()`         | the index of saved tables, from `figures/manifest.json`      |
 * | {@linkcode resultTable}`(name)`      | one table saved with `saveTable`, `figures/<name>.csv`       |
 * | {@linkcode figureData}`(name)`       | the data behind a saved figure, `figures/<name>.csv`         |
 * | {@linkcode benchResults}`()`         | the rows of `deno task bench`, `figures/bench.csv`           |
 *
 * Numbers come back as numbers (Int64 or Float64), `true`/`false` as booleans, missing values as
 * `null`; a cell that does not fit its column is an Error, never a silent `null`. A missing file is an
 * Error naming its path and the command that writes it. {@linkcode frame}`(rows)` builds a frame from
 * rows of values the same way, {@linkcode csvFrame}`(text)` from CSV text.
 *
 * Every frame displays itself in Jupyter as a plain HTML table that says how many rows it leaves out
 * (and as polars' text); {@linkcode show}`(df)` does the same for a frame derived with polars.
 *
 * ```ts
 * import pl from "nodejs-polars";
 * import { frame, show } from "./mod.ts"; // from a notebook: "../lib/frames/mod.ts"
 *
 * const df = frame([
 *   { variant: "softmax", n: 1024, ms: 470 },
 *   { variant: "linear", n: 1024, ms: 157 },
 *   { variant: "norm", n: 1024, ms: 89 },
 * ]);
 * console.log(df.filter(pl.col("ms").lt(200)).getColumn("variant").toArray()); // ["linear", "norm"]
 * show(df.sort("ms")); // the last expression of a cell: displays as a table
 * ```
 *
 * @module
 */

export { csvFrame, frame } from "./frame.ts";
export type { ColumnType, CsvFrameOptions, FrameOptions } from "./frame.ts";
export { isDataFrame, show } from "./show.ts";
export type { ShowOptions } from "./show.ts";
export { runLogs, validationCurve } from "./runs.ts";
export type { RunLog, RunLogsOptions, ValidationCurveOptions } from "./runs.ts";
export { benchResults, claims, figureData, resultTable, resultTables } from "./results.ts";
export type { BenchResultsOptions, FiguresDirOptions } from "./results.ts";
