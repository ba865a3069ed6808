/**
 * Make an attention matrix readable as a heatmap: crop a window, average it down to a few hundred cells, and turn it
 * into `{ row, col, value }` records, the shape Observable Plot's `cell` mark takes. Every cell remembers the range
 * of original token indices it covers, so axes and tooltips can name tokens rather than cells.
 *
 * Inputs are an [rows, cols] float32 tf.Tensor2D (one head; pick it from [batch, heads, n, n] with
 * `tf.slice` and `tf.reshape`) or the {@linkcode MatrixCells} these functions return, so they compose:
 * `heatmapRows(downsampleMatrix(cropMatrix(w, { start: 0, size: 256 }), { size: 64 }))`. No tensors are created.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { resolveOptions } from "../_options.ts";
import { checkNotDisposed, describe } from "./_checks.ts";

/** A matrix of cells, each the mean of the original entries in a block of token indices. */
export interface MatrixCells {
  /** values[r][c]: the mean of the original entries in rows rowRanges[r] × columns colRanges[c]. */
  values: number[][];
  /** Half-open range [start, end) of original row (query) indices of each row of cells. */
  rowRanges: [number, number][];
  /** Half-open range [start, end) of original column (key) indices of each column of cells. */
  colRanges: [number, number][];
}

/** One heatmap cell, as Observable Plot's `cell` mark takes it (x: "col", y: "row", fill: "value"). */
export interface HeatmapCell {
  /** Cell row index (0 at the top). */
  row: number;
  /** Cell column index. */
  col: number;
  /** Mean of the original entries the cell covers. */
  value: number;
  /** First original row (query) index in the cell. */
  rowStart: number;
  /** One past the last original row index in the cell. */
  rowEnd: number;
  /** First original column (key) index in the cell. */
  colStart: number;
  /** One past the last original column index in the cell. */
  colEnd: number;
}

/** Options of {@linkcode downsampleMatrix}. */
export interface DownsampleOptions {
  /** Number of cells along each axis (an integer >= 1); an axis with fewer cells is left as is. Default 64. */
  size?: number;
}

/** Options of {@linkcode cropMatrix}. */
export interface CropOptions {
  /** First row and column of the square window, in cells of the input (tokens for a tensor). Default 0. */
  start?: number;
  /** Side of the window in cells (an integer >= 1). Required. */
  size: number;
}

/** Checks a Tensor2D for the cell functions: rank 2, float32, non-empty; its [rows, cols]. */
function checkMatrixTensor(owner: string, matrix: tf.Tensor): [number, number] {
  if (matrix.rank !== 2) {
    throw new TypeError(
      `${owner}: matrix must be a rank-2 tf.Tensor [rows, cols], got shape [${matrix.shape.join(", ")}]; ` +
        `for [batch, heads, n, n] pick one head: tf.reshape(tf.slice(w, [b, h, 0, 0], [1, 1, n, n]), [n, n])`,
    );
  }
  if (matrix.dtype !== "float32") {
    throw new TypeError(`${owner}: matrix must be float32, got ${matrix.dtype}; use tf.cast(matrix, "float32")`);
  }
  const [rows, cols] = matrix.shape;
  if (rows === 0 || cols === 0) {
    throw new RangeError(`${owner}: matrix must have at least one row and one column, got shape [${rows}, ${cols}]`);
  }
  return [rows, cols];
}

/** Cells of one token each from a matrix's values [rows · cols], row-major; checked finite. */
function unitCells(owner: string, data: Float32Array, [rows, cols]: [number, number]): MatrixCells {
  const values = Array.from({ length: rows }, (_, r) => Array.from(data.subarray(r * cols, (r + 1) * cols)));
  values.forEach((row, r) => checkFinite(owner, row, r));
  const unit = (m: number) => Array.from({ length: m }, (_, i) => [i, i + 1] as [number, number]);
  return { values, rowRanges: unit(rows), colRanges: unit(cols) };
}

/**
 * A Tensor2D's cells of one token each, read asynchronously: what {@linkcode heatmapRows},
 * {@linkcode cropMatrix} and {@linkcode downsampleMatrix} take in place of the tensor on a backend that cannot
 * read synchronously (webgpu under Deno). The tensor stays the caller's.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { heatmapRows, matrixCells } from "./heatmap.ts";
 * const w = tf.tensor2d([[1, 0], [0.5, 0.5]]);
 * const cells = await matrixCells(w);
 * console.log(heatmapRows(cells).map((c) => c.value).join(" ")); // 1 0 0.5 0.5
 * w.dispose();
 * ```
 */
export async function matrixCells(matrix: tf.Tensor2D): Promise<MatrixCells> {
  const owner = "matrixCells";
  checkNotDisposed(owner, "matrix", matrix);
  if (!(matrix instanceof tf.Tensor)) {
    throw new TypeError(`${owner}: matrix must be a tf.Tensor2D [rows, cols], got ${describe(matrix)}`);
  }
  const [rows, cols] = checkMatrixTensor(owner, matrix);
  return unitCells(owner, (await matrix.data()) as Float32Array, [rows, cols]);
}

/** Reads a Tensor2D into cells of one token each, or checks and returns given cells. */
function toCells(owner: string, matrix: unknown): MatrixCells {
  checkNotDisposed(owner, "matrix", matrix);
  if (matrix instanceof tf.Tensor) {
    const [rows, cols] = checkMatrixTensor(owner, matrix);
    return unitCells(owner, matrix.dataSync() as Float32Array, [rows, cols]);
  }
  const cells = matrix as MatrixCells;
  if (
    cells === null || typeof cells !== "object" || !Array.isArray(cells.values) || !Array.isArray(cells.rowRanges) ||
    !Array.isArray(cells.colRanges)
  ) {
    throw new TypeError(
      `${owner}: matrix must be a tf.Tensor2D or the { values, rowRanges, colRanges } cells of cropMatrix or ` +
        `downsampleMatrix, got ${describe(matrix)}`,
    );
  }
  const rows = cells.rowRanges.length;
  const cols = cells.colRanges.length;
  if (rows === 0 || cols === 0 || cells.values.length !== rows || cells.values.some((v) => v.length !== cols)) {
    throw new RangeError(
      `${owner}: matrix cells must be non-empty with values of shape [rowRanges.length, colRanges.length] = ` +
        `[${rows}, ${cols}]; pass the cells as returned by cropMatrix or downsampleMatrix`,
    );
  }
  cells.values.forEach((row, r) => checkFinite(owner, row, r));
  return cells;
}

function checkFinite(owner: string, row: number[], r: number): void {
  const c = row.findIndex((v) => typeof v !== "number" || !Number.isFinite(v));
  if (c >= 0) throw new RangeError(`${owner}: matrix must be finite, got ${row[c]} at row ${r}, column ${c}`);
}

/** Splits m cells into `bins` contiguous groups [floor(b·m/bins), floor((b+1)·m/bins)): sizes ⌊m/bins⌋ or ⌈m/bins⌉. */
function bins(m: number, count: number): [number, number][] {
  return Array.from({ length: count }, (_, b) => [Math.floor((b * m) / count), Math.floor(((b + 1) * m) / count)]);
}

/**
 * Block-average pooling to at most size × size cells. Each axis of m cells is split into min(size, m) contiguous
 * bins [⌊b·m/size⌋, ⌊(b + 1)·m/size⌋); when size does not divide m the bins hold ⌊m/size⌋ or ⌈m/size⌉ cells, spread
 * evenly. A new cell is the exact mean of the original entries it covers (input cells are weighted by the number of
 * entries they cover), so the area-weighted mean of all cells equals the mean of the matrix, and pooling in two
 * steps gives the same values as in one whenever the bins nest.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { downsampleMatrix } from "./heatmap.ts";
 * const w = tf.tensor2d([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]);
 * const { values, rowRanges } = downsampleMatrix(w, { size: 2 });
 * console.log(values, rowRanges); // [[3.5, 5.5], [11.5, 13.5]] [[0, 2], [2, 4]]
 * w.dispose();
 * ```
 */
export function downsampleMatrix(matrix: tf.Tensor2D | MatrixCells, options?: DownsampleOptions): MatrixCells {
  const owner = "downsampleMatrix";
  const { size } = resolveOptions(owner, options, { size: 64 }, { size: { type: "number", min: 1, integer: true } });
  const cells = toCells(owner, matrix);
  const rowBins = bins(cells.rowRanges.length, Math.min(size, cells.rowRanges.length));
  const colBins = bins(cells.colRanges.length, Math.min(size, cells.colRanges.length));
  const span = ([start, end]: [number, number]) => end - start;
  const values = rowBins.map(([r0, r1]) =>
    colBins.map(([c0, c1]) => {
      let sum = 0;
      let area = 0;
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) {
          const a = span(cells.rowRanges[r]) * span(cells.colRanges[c]);
          sum += a * cells.values[r][c];
          area += a;
        }
      }
      return sum / area;
    })
  );
  const merge = (ranges: [number, number][]) => ([b0, b1]: [number, number]): [number, number] => [
    ranges[b0][0],
    ranges[b1 - 1][1],
  ];
  return { values, rowRanges: rowBins.map(merge(cells.rowRanges)), colRanges: colBins.map(merge(cells.colRanges)) };
}

/**
 * A square window of the matrix: rows and columns start .. start + size − 1 (in cells of the input: tokens for a
 * tensor). Use it to look at the diagonal at full resolution; the window must lie inside the matrix.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { cropMatrix } from "./heatmap.ts";
 * const w = tf.tensor2d([[1, 2, 3], [4, 5, 6], [7, 8, 9]]);
 * const { values, colRanges } = cropMatrix(w, { start: 1, size: 2 });
 * console.log(values, colRanges); // [[5, 6], [8, 9]] [[1, 2], [2, 3]]
 * w.dispose();
 * ```
 */
export function cropMatrix(matrix: tf.Tensor2D | MatrixCells, options: CropOptions): MatrixCells {
  const owner = "cropMatrix";
  if (options === null || typeof options !== "object" || options.size === undefined) {
    throw new TypeError(
      `${owner}: option size is required: the side of the window in cells, e.g. { start: 0, size: 64 }`,
    );
  }
  const { start, size } = resolveOptions(owner, options, { start: 0, size: 1 }, {
    start: { type: "number", min: 0, integer: true },
    size: { type: "number", min: 1, integer: true },
  });
  const cells = toCells(owner, matrix);
  const rows = cells.rowRanges.length;
  const cols = cells.colRanges.length;
  const limit = Math.min(rows, cols);
  if (start + size > limit) {
    throw new RangeError(
      `${owner}: the window start + size = ${start} + ${size} = ${start + size} exceeds the matrix's ${rows} rows ` +
        `and ${cols} columns; use start <= ${Math.max(0, limit - size)} or size <= ${Math.max(0, limit - start)}`,
    );
  }
  return {
    values: cells.values.slice(start, start + size).map((row) => row.slice(start, start + size)),
    rowRanges: cells.rowRanges.slice(start, start + size).map(([a, b]) => [a, b]),
    colRanges: cells.colRanges.slice(start, start + size).map(([a, b]) => [a, b]),
  };
}

/**
 * One record per cell, row by row, for Observable Plot's `cell` mark:
 * `Plot.cell(heatmapRows(cells), { x: "col", y: "row", fill: "value" })`. Each record carries the original token
 * ranges it covers ([rowStart, rowEnd) × [colStart, colEnd)) for axis labels and tooltips.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { heatmapRows } from "./heatmap.ts";
 * const w = tf.tensor2d([[1, 0], [0.5, 0.5]]);
 * console.log(heatmapRows(w)[2]); // { row: 1, col: 0, value: 0.5, rowStart: 1, rowEnd: 2, colStart: 0, colEnd: 1 }
 * w.dispose();
 * ```
 */
export function heatmapRows(matrix: tf.Tensor2D | MatrixCells): HeatmapCell[] {
  const cells = toCells("heatmapRows", matrix);
  return cells.values.flatMap((values, row) =>
    values.map((value, col) => ({
      row,
      col,
      value,
      rowStart: cells.rowRanges[row][0],
      rowEnd: cells.rowRanges[row][1],
      colStart: cells.colRanges[col][0],
      colEnd: cells.colRanges[col][1],
    }))
  );
}
