/**
 * Gradient deviation (Table 2 of "The Devil in Linear Transformer", Qin et al. 2022): how much a gradient norm
 * fluctuates over training, from a per-update (or sampled) series of positive norms. Plain numbers in, numbers out:
 * no tensors.
 *
 * - **Raw deviation**: the relative standard deviation std / mean of the series (sample std, n − 1), the measure the
 *   paper's text describes ("relative standard deviation of gradients"; its code for the table is not public).
 * - **Detrended deviation**: gradient norms drift as training goes on (in this project's runs 1+elu's ‖∂L/∂W_q‖ grew
 *   about 11× over training), and a drift counts as deviation in std / mean. Each value is divided by the centred
 *   rolling median around it (`rollingMedian` of `lib/stats`), and the relative standard deviation of those ratios is
 *   the fluctuation around the trend. Only values whose whole window lies inside the series are kept: near the ends
 *   the window would be cut and no longer centred, so a steady trend would leave a residue there. A linear trend thus
 *   has detrended deviation exactly 0.
 *
 * {@linkcode meanDeviation} averages both over several series (the layers of a model), {@linkcode sampleWindow} turns
 * a window in updates into one in samples for a series logged every k-th update, {@linkcode growth} measures the
 * drift itself, and `leastFavourable` (lib/stats) picks the interval that decides a claim made about every one of
 * several comparisons ("lower than every other linear method").
 *
 * @module
 */

import { mean, rollingMedian, rsd } from "../stats/mod.ts";

/** A series of numbers: a plain array or a typed array. */
export type Series = readonly number[] | Float32Array | Float64Array;

/** Options of {@linkcode gradientDeviation} and {@linkcode meanDeviation}. */
export interface DeviationOptions {
  /**
   * The rolling median's window in values: an odd integer ≥ 3 (51 means ±25 values). The detrended deviation keeps
   * the values with a whole window, so a series needs at least window + 1 values.
   */
  window: number;
}

/** What {@linkcode gradientDeviation} returns. */
export interface Deviation {
  /** std / mean of the series (sample std, n − 1). */
  raw: number;
  /** std / mean of x_i / (rolling median around i), over the values whose window lies inside the series. */
  detrended: number;
  /** Values behind `raw`. */
  samples: number;
  /** Values behind `detrended`: samples − (window − 1). */
  detrendedSamples: number;
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name}`;
  if (typeof value === "string") return JSON.stringify(value);
  if (value !== null && typeof value === "object") return "an object";
  return String(value);
}

function checkSeries(owner: string, name: string, xs: unknown): number[] {
  if (!Array.isArray(xs) && !(xs instanceof Float32Array) && !(xs instanceof Float64Array)) {
    throw new TypeError(`${owner}: ${name} must be an array of positive numbers (gradient norms), got ${describe(xs)}`);
  }
  const values = Array.from(xs as ArrayLike<unknown>);
  values.forEach((x, i) => {
    if (typeof x !== "number") throw new TypeError(`${owner}: ${name}[${i}] must be a number, got ${describe(x)}`);
    if (!(x > 0) || !Number.isFinite(x)) {
      throw new RangeError(
        `${owner}: ${name}[${i}] is ${x}; gradient norms must be finite and > 0 (drop steps that stopped on a ` +
          `non-finite gradient before measuring)`,
      );
    }
  });
  return values as number[];
}

function checkOptions(owner: string, options: unknown, known: readonly string[], example: string): void {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new TypeError(`${owner}: options must be an object like ${example}, got ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new TypeError(`${owner}: unknown option "${key}"; expected ${known.join(", ")}`);
    }
  }
}

function checkWindow(owner: string, options: unknown): number {
  if (options === undefined) {
    throw new TypeError(`${owner}: options must give the window, e.g. { window: 51 } for ±25 values`);
  }
  checkOptions(owner, options, ["window"], "{ window: 51 }");
  const { window } = options as DeviationOptions;
  if (typeof window !== "number") {
    throw new TypeError(`${owner}: options.window must be an odd integer ≥ 3, got ${describe(window)}`);
  }
  if (!Number.isInteger(window) || window < 3 || window % 2 === 0) {
    throw new RangeError(
      `${owner}: options.window must be an odd integer ≥ 3 so the window centres on each value, got ${window}` +
        (Number.isInteger(window) && window >= 2 && window % 2 === 0 ? `; use ${window + 1} for ±${window / 2}` : ""),
    );
  }
  return window;
}

function deviationOf(owner: string, name: string, values: number[], window: number): Deviation {
  if (values.length < window + 1) {
    throw new RangeError(
      `${owner}: ${name} has ${values.length} values; the detrended deviation with a window of ${window} needs at ` +
        `least ${window + 1} (two values with a whole window); pass a smaller options.window or a longer series`,
    );
  }
  const h = (window - 1) / 2;
  const trend = rollingMedian(values, { window });
  // Only the values whose centred window lies inside the series: [h, n − h).
  const ratios = values.slice(h, values.length - h).map((x, i) => x / trend[h + i]);
  return { raw: rsd(values), detrended: rsd(ratios), samples: values.length, detrendedSamples: ratios.length };
}

/**
 * The raw and the detrended deviation of one series of positive gradient norms (see the module doc): raw is
 * std / mean (sample std); detrended is std / mean of x_i / median(x_{i−h} … x_{i+h}) for h ≤ i < n − h,
 * h = (window − 1) / 2. A constant series gives 0 and 0; a linear trend a positive raw deviation and a detrended one
 * of exactly 0.
 *
 * @example
 * ```ts
 * import { gradientDeviation } from "./deviation.ts";
 * // A steady climb from 1 to 10: all drift, no fluctuation.
 * const climb = gradientDeviation([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], { window: 5 });
 * console.log(climb.raw.toFixed(4), climb.detrended, climb.detrendedSamples); // 0.5505 0 6
 * // Alternating 1, 3: with ±1 the median is always the other value, so the ratios alternate 1/3, 3.
 * const flip = gradientDeviation([1, 3, 1, 3, 1, 3], { window: 3 });
 * console.log(flip.raw.toFixed(4), flip.detrended.toFixed(4)); // 0.5477 0.9238
 * ```
 */
export function gradientDeviation(xs: Series, options: DeviationOptions): Deviation {
  const window = checkWindow("gradientDeviation", options);
  return deviationOf("gradientDeviation", "xs", checkSeries("gradientDeviation", "xs", xs), window);
}

/** What {@linkcode meanDeviation} returns: the means over the series, and each series' own deviation. */
export interface MeanDeviation {
  /** Mean over the series of their raw deviations. */
  raw: number;
  /** Mean over the series of their detrended deviations. */
  detrended: number;
  /** Each series' {@linkcode Deviation}, in order. */
  perSeries: Deviation[];
}

/**
 * {@linkcode gradientDeviation} of several series (a model's layers, or its query and key projections in every
 * layer), and the mean of each measure over them: Table 2 reports one number per model, averaged over its layers.
 *
 * @example
 * ```ts
 * import { meanDeviation } from "./deviation.ts";
 * const flat = [2, 2, 2, 2, 2, 2];
 * const flip = [1, 3, 1, 3, 1, 3];
 * const d = meanDeviation([flat, flip], { window: 3 });
 * console.log(d.raw.toFixed(4), d.detrended.toFixed(4), d.perSeries.length); // 0.2739 0.4619 2
 * ```
 */
export function meanDeviation(series: readonly Series[], options: DeviationOptions): MeanDeviation {
  if (!Array.isArray(series)) {
    throw new TypeError(`meanDeviation: series must be an array of series (one per layer), got ${describe(series)}`);
  }
  if (series.length === 0) {
    throw new RangeError("meanDeviation: series is empty; pass at least one series of gradient norms");
  }
  const window = checkWindow("meanDeviation", options);
  const perSeries = series.map((xs, j) =>
    deviationOf("meanDeviation", `series[${j}]`, checkSeries("meanDeviation", `series[${j}]`, xs), window)
  );
  return { raw: mean(perSeries.map((d) => d.raw)), detrended: mean(perSeries.map((d) => d.detrended)), perSeries };
}

/**
 * The odd window, in samples, of a rolling median spanning about ±`halfWidth` updates of a series logged every
 * `every`-th update: 2·max(1, round(halfWidth / every)) + 1 (round half up). ±25 updates are 51 samples of a
 * per-update series and 7 (±3 samples, ±30 updates) of one logged every 10th update.
 *
 * @example
 * ```ts
 * import { sampleWindow } from "./deviation.ts";
 * console.log(sampleWindow(25, 1), sampleWindow(25, 10), sampleWindow(2, 10)); // 51 7 3
 * ```
 */
export function sampleWindow(halfWidth: number, every: number): number {
  for (const [name, value] of [["halfWidth", halfWidth], ["every", every]] as const) {
    if (typeof value !== "number") {
      throw new TypeError(`sampleWindow: ${name} must be a number of updates, got ${describe(value)}`);
    }
  }
  if (!(halfWidth > 0) || !Number.isFinite(halfWidth)) {
    throw new RangeError(`sampleWindow: halfWidth must be a finite number of updates > 0, got ${halfWidth}`);
  }
  if (!Number.isInteger(every) || every < 1) {
    throw new RangeError(`sampleWindow: every must be an integer ≥ 1 (log every k-th update), got ${every}`);
  }
  return 2 * Math.max(1, Math.round(halfWidth / every)) + 1;
}

/** Options of {@linkcode growth}. */
export interface GrowthOptions {
  /** The share of the series at each end whose means are compared, in (0, 0.5]. Default 0.1. */
  fraction?: number;
}

/**
 * The drift of a positive series: the mean of its last k values over the mean of its first k,
 * k = max(1, round(fraction · n)). 11 means the norm grew elevenfold from the start to the end.
 *
 * @example
 * ```ts
 * import { growth } from "./deviation.ts";
 * console.log(growth([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], { fraction: 0.2 }).toFixed(4)); // 6.3333
 * ```
 */
export function growth(xs: Series, options: GrowthOptions = {}): number {
  checkOptions("growth", options, ["fraction"], "{ fraction: 0.1 }");
  const { fraction = 0.1 } = options;
  if (typeof fraction !== "number") {
    throw new TypeError(`growth: options.fraction must be a number in (0, 0.5], got ${describe(fraction)}`);
  }
  if (!(fraction > 0 && fraction <= 0.5)) {
    throw new RangeError(
      `growth: options.fraction must lie in (0, 0.5] so the two ends do not overlap, got ${fraction}`,
    );
  }
  const values = checkSeries("growth", "xs", xs);
  if (values.length < 2) throw new RangeError(`growth: xs has ${values.length} value; it needs at least 2`);
  const k = Math.max(1, Math.round(fraction * values.length));
  return mean(values.slice(-k)) / mean(values.slice(0, k));
}
