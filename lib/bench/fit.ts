/**
 * Scaling laws from measurements: the exponent p of y ≈ c·nᵖ, and the length where one method overtakes another.
 *
 * @module
 */

/** One measurement: x (e.g. the sequence length) and y (e.g. milliseconds), both > 0. */
export interface Point {
  x: number;
  y: number;
}

/** The least-squares fit of log y = log c + p·log x. */
export interface ExponentFit {
  /** The slope p on log-log axes. */
  exponent: number;
  /** c in y ≈ c·xᵖ. */
  coefficient: number;
  /** Coefficient of determination of the log-log fit (1 for exact power laws). */
  r2: number;
  /** Points used. */
  points: number;
}

/**
 * Fits y ≈ c·xᵖ by least squares on log-log axes. Needs at least two distinct x, all x and y finite and > 0.
 *
 * @example
 * ```ts
 * import { fitExponent } from "./fit.ts";
 * const fit = fitExponent([256, 512, 1024].map((x) => ({ x, y: 3 * x ** 2 })));
 * console.log(fit.exponent.toFixed(3), fit.coefficient.toFixed(3)); // 2.000 3.000
 * ```
 */
export function fitExponent(points: readonly Point[]): ExponentFit {
  if (!Array.isArray(points)) throw new Error(`fitExponent: points must be an array of { x, y }, got ${typeof points}`);
  points.forEach((p, i) => {
    if (p === null || typeof p !== "object") throw new Error(`fitExponent: points[${i}] must be { x, y }`);
    for (const key of ["x", "y"] as const) {
      const value = p[key];
      if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
        throw new Error(`fitExponent: points[${i}].${key} must be a finite number > 0, got ${String(value)}`);
      }
    }
  });
  if (new Set(points.map((p) => p.x)).size < 2) {
    throw new Error(`fitExponent: points must hold at least two distinct x values, got ${points.length} point(s)`);
  }
  const lx = points.map((p) => Math.log(p.x));
  const ly = points.map((p) => Math.log(p.y));
  const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
  const mx = mean(lx);
  const my = mean(ly);
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < lx.length; i++) {
    sxy += (lx[i] - mx) * (ly[i] - my);
    sxx += (lx[i] - mx) ** 2;
    syy += (ly[i] - my) ** 2;
  }
  const exponent = sxy / sxx;
  const r2 = syy === 0 ? 1 : (sxy * sxy) / (sxx * syy);
  return { exponent, coefficient: Math.exp(my - exponent * mx), r2, points: points.length };
}

/** A measured row for {@linkcode crossoverLength}: a method name, a length and a value (lower is better). */
export type CrossoverRow = Record<string, unknown>;

/** Where method b overtakes method a. */
export interface Crossover {
  /**
   * "crosses": b is slower at the shortest common length and faster at a longer one; `n` is interpolated.
   * "b-faster-throughout": b is already at most as slow at the shortest common length; `n` is that length (an upper bound).
   * "a-faster-throughout": b never catches up within the lengths measured; `n` is null.
   */
  relation: "crosses" | "b-faster-throughout" | "a-faster-throughout";
  n: number | null;
  /** The measured lengths either side of the crossing (relation "crosses" only). */
  bracket: [number, number] | null;
}

/** Options for {@linkcode crossoverLength}. */
export interface CrossoverOptions {
  /** Key of the method name in each row; default "variant". */
  by?: string;
  /** Key of the length; default "n". */
  length?: string;
  /** Key of the value compared (lower is better); default "ms". */
  value?: string;
}

/**
 * The length at which method `b` overtakes method `a` (b's value drops below a's): the first sign change of
 * log(b / a) over the lengths both were measured at, interpolated linearly in log n.
 *
 * @example
 * ```ts
 * import { crossoverLength } from "./fit.ts";
 * const rows = [256, 512, 1024, 2048].flatMap((n) => [
 *   { variant: "softmax", n, ms: (n / 1000) ** 2 },
 *   { variant: "linear", n, ms: n / 1000 },
 * ]);
 * const c = crossoverLength(rows, "softmax", "linear");
 * console.log(c.relation, Math.round(c.n!)); // crosses 1000
 * ```
 */
export function crossoverLength(
  rows: readonly CrossoverRow[],
  a: string,
  b: string,
  options: CrossoverOptions = {},
): Crossover {
  for (const key of Object.keys(options)) {
    if (!["by", "length", "value"].includes(key)) {
      throw new Error(`crossoverLength: unknown option "${key}"; expected by, length or value`);
    }
  }
  const { by = "variant", length = "n", value = "ms" } = options;
  if (!Array.isArray(rows)) throw new Error(`crossoverLength: rows must be an array of objects`);
  if (typeof a !== "string" || typeof b !== "string" || a === b) {
    throw new Error(`crossoverLength: a and b must be two different method names, got ${String(a)} and ${String(b)}`);
  }
  const series = (name: string) => {
    const out = new Map<number, number>();
    for (const row of rows) {
      if (row?.[by] !== name) continue;
      const n = row[length];
      const y = row[value];
      if (typeof n !== "number" || typeof y !== "number" || !(n > 0) || !(y > 0) || !Number.isFinite(y)) continue;
      out.set(n, y);
    }
    return out;
  };
  const sa = series(a);
  const sb = series(b);
  const common = [...sa.keys()].filter((n) => sb.has(n)).sort((x, y) => x - y);
  if (common.length === 0) {
    throw new Error(
      `crossoverLength: no length has a positive "${value}" for both "${a}" and "${b}" (rows keyed by "${by}", "${length}")`,
    );
  }
  const gap = (n: number) => Math.log(sb.get(n)! / sa.get(n)!);
  if (gap(common[0]) <= 0) return { relation: "b-faster-throughout", n: common[0], bracket: null };
  for (let i = 1; i < common.length; i++) {
    const g1 = gap(common[i]);
    if (g1 > 0) continue;
    const [n0, n1] = [common[i - 1], common[i]];
    const g0 = gap(n0);
    const t = g0 / (g0 - g1);
    return { relation: "crosses", n: Math.exp(Math.log(n0) + t * (Math.log(n1) - Math.log(n0))), bracket: [n0, n1] };
  }
  return { relation: "a-faster-throughout", n: null, bracket: null };
}
