/**
 * Seeded inputs for the diagnostics: random score vectors for the bounds of Proposition 3.1
 * ({@linkcode randomScores}), q/k/v of one random layer scaled or shifted along a sweep ({@linkcode sweptQKV}), and
 * queries and keys that share a positional signal, so that an attention variant able to focus shows a band near the
 * diagonal ({@linkcode positionalInput}). Every draw comes from `lib/random.ts`, so a seed gives the same numbers on
 * every backend.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { QKV } from "../attention/mod.ts";
import { randomNormal, seededNormal, seededUniform } from "../random.ts";
import type { ScoreKind } from "./gradients.ts";
import { describe } from "./_checks.ts";

/** Options of {@linkcode randomScores}. */
export interface RandomScoresOptions {
  /** Number of score vectors (rows), an integer >= 1. */
  count: number;
  /** Scores per vector, an integer >= 1 (>= 2 with `ties`). */
  n: number;
  /**
   * The scale σ > 0 of every row, or a range [low, high] (0 < low <= high) from which each row draws its σ
   * log-uniformly.
   */
  scale: number | readonly [number, number];
  /** Seed, a non-negative integer. */
  seed: number;
  /**
   * Near-ties: each row has two top scores σ and σ(1 + 10⁻³u) and the rest far below them (softmax: −σ(1 + u);
   * linear: σ·10⁻⁴(1 − u)), so p ≈ (½, ½, 0, …): the worst case of both bounds. Default false.
   */
  ties?: boolean;
}

function checkInteger(owner: string, name: string, value: unknown, min: number): number {
  if (typeof value !== "number") throw new TypeError(`${owner}: ${name} must be an integer, got ${describe(value)}`);
  if (!Number.isInteger(value) || value < min) {
    throw new RangeError(`${owner}: ${name} must be an integer >= ${min}, got ${value}`);
  }
  return value;
}

function checkPositive(owner: string, name: string, value: unknown): number {
  if (typeof value !== "number") throw new TypeError(`${owner}: ${name} must be a number, got ${describe(value)}`);
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`${owner}: ${name} must be a finite number > 0, got ${value}`);
  }
  return value;
}

function checkObject(owner: string, options: unknown, known: readonly string[], example: string) {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new TypeError(`${owner}: options must be an object such as ${example}, got ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new RangeError(`${owner}: unknown option "${key}"; valid options are ${known.join(", ")}`);
    }
  }
  return options as Record<string, unknown>;
}

/**
 * Seeded score vectors [count, n] for the score-level bounds. Softmax scores are σ·N(0, 1); linear scores are the
 * positive σ·U(0, 1] (as φ(q)·φ(k) of a positive feature map). With `scale: [low, high]` each row draws its own σ
 * log-uniformly; with `ties` every row is a near-tie (see {@linkcode RandomScoresOptions}). The caller disposes the
 * tensor.
 *
 * @example
 * ```ts
 * import { randomScores } from "./inputs.ts";
 * const s = randomScores("linear", { count: 4, n: 3, scale: [1e-4, 1e2], seed: 1 });
 * console.log(s.shape, s.min().dataSync()[0] > 0); // [4, 3] true
 * s.dispose();
 * ```
 */
export function randomScores(kind: ScoreKind, options: RandomScoresOptions): tf.Tensor2D {
  const owner = "randomScores";
  if (kind !== "softmax" && kind !== "linear") {
    throw new RangeError(`${owner}: kind must be "softmax" or "linear", got ${describe(kind)}`);
  }
  const o = checkObject(
    owner,
    options,
    ["count", "n", "scale", "seed", "ties"],
    "{ count: 64, n: 8, scale: 1, seed: 0 }",
  );
  const count = checkInteger(owner, "options.count", o.count, 1);
  const ties = o.ties ?? false;
  if (typeof ties !== "boolean") {
    throw new TypeError(`${owner}: options.ties must be true or false, got ${describe(ties)}`);
  }
  const n = checkInteger(owner, "options.n", o.n, ties ? 2 : 1);
  const seed = checkInteger(owner, "options.seed", o.seed, 0);
  let low: number, high: number;
  if (Array.isArray(o.scale)) {
    if (o.scale.length !== 2) {
      throw new RangeError(
        `${owner}: options.scale must be a number or a range [low, high], got ${o.scale.length} values`,
      );
    }
    [low, high] = [
      checkPositive(owner, "options.scale[0]", o.scale[0]),
      checkPositive(owner, "options.scale[1]", o.scale[1]),
    ];
    if (low > high) {
      throw new RangeError(`${owner}: options.scale must be [low, high] with low <= high, got [${low}, ${high}]`);
    }
  } else {
    low = high = checkPositive(owner, "options.scale", o.scale);
  }
  // Separate streams for every seed: uniforms from 2·seed, normals from 2·seed + 1.
  const u = seededUniform((2 * seed) >>> 0);
  const z = seededNormal((2 * seed + 1) >>> 0);
  const data = new Float32Array(count * n);
  for (let row = 0; row < count; row++) {
    const sigma = low === high ? low : Math.exp(Math.log(low) + (Math.log(high) - Math.log(low)) * u());
    for (let j = 0; j < n; j++) {
      let s: number;
      if (ties && j < 2) s = j === 0 ? sigma : sigma * (1 + 1e-3 * u());
      else if (ties) s = kind === "softmax" ? -sigma * (1 + u()) : sigma * 1e-4 * (1 - u());
      else s = kind === "softmax" ? sigma * z() : sigma * (1 - u());
      data[row * n + j] = s;
    }
  }
  return tf.tensor2d(data, [count, n]);
}

/** How a sweep moves the inputs: `"scale"` multiplies q and k by c; `"shift"` subtracts m from every query entry. */
export type InputSweep = "scale" | "shift";

/** The sizes of one layer's q, k and v: [batch, heads, n, d] each. */
export interface LayerShape {
  batch: number;
  heads: number;
  n: number;
  d: number;
}

/** The layer shape the sweeps use by default: batch 1, 2 heads, n = 16, d = 8. */
export const SWEEP_SHAPE: Readonly<LayerShape> = Object.freeze({ batch: 1, heads: 2, n: 16, d: 8 });

/** Options of {@linkcode sweptQKV}. */
export interface SweptQKVOptions {
  /** Seed of the layer's q₀, k₀, v₀ (drawn from seeds 4·seed, 4·seed + 1, 4·seed + 2). */
  seed: number;
  /** Sizes; default {@linkcode SWEEP_SHAPE}. */
  shape?: LayerShape;
}

/** Checks a layer shape and returns it. */
export function checkLayerShape(owner: string, shape: unknown): LayerShape {
  if (shape === null || typeof shape !== "object" || Array.isArray(shape)) {
    throw new TypeError(`${owner}: shape must be { batch, heads, n, d }, got ${describe(shape)}`);
  }
  const s = shape as Record<string, unknown>;
  for (const key of ["batch", "heads", "n", "d"]) checkInteger(owner, `shape.${key}`, s[key], 1);
  return s as unknown as LayerShape;
}

/**
 * One random layer's inputs moved along a sweep: q₀, k₀, v₀ ~ N(0, 1) from `seed`, then `"scale"`: q = c·q₀,
 * k = c·k₀, v = v₀ (x = c > 0); `"shift"`: q = q₀ − m, k = k₀, v = v₀ (x = m, any finite number; for 1+elu the
 * scores φ(q)·φ(k) shrink like e^(−m) while staying positive). The caller disposes the three tensors.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { sweptQKV } from "./inputs.ts";
 * const base = sweptQKV("scale", 1, { seed: 3 });
 * const big = sweptQKV("scale", 10, { seed: 3 });
 * console.log(base.q.shape, Math.abs(big.q.dataSync()[0] - 10 * base.q.dataSync()[0]) < 1e-4); // [1, 2, 16, 8] true
 * tf.dispose([base.q, base.k, base.v, big.q, big.k, big.v]);
 * ```
 */
export function sweptQKV(sweep: InputSweep, x: number, options: SweptQKVOptions): QKV {
  const owner = "sweptQKV";
  if (sweep !== "scale" && sweep !== "shift") {
    throw new RangeError(`${owner}: sweep must be "scale" or "shift", got ${describe(sweep)}`);
  }
  if (typeof x !== "number") throw new TypeError(`${owner}: x must be a number, got ${describe(x)}`);
  if (sweep === "scale") checkPositive(owner, "x (the scale c)", x);
  else if (!Number.isFinite(x)) throw new RangeError(`${owner}: x (the shift m) must be finite, got ${x}`);
  const o = checkObject(owner, options, ["seed", "shape"], "{ seed: 0 }");
  const seed = checkInteger(owner, "options.seed", o.seed, 0);
  const { batch, heads, n, d } = checkLayerShape(owner, o.shape ?? SWEEP_SHAPE);
  const shape = [batch, heads, n, d];
  return tf.tidy(() => {
    const q0 = randomNormal<tf.Tensor4D>(shape, { seed: 4 * seed }); // [b, h, n, d]
    const k0 = randomNormal<tf.Tensor4D>(shape, { seed: 4 * seed + 1 }); // [b, h, n, d]
    const v = randomNormal<tf.Tensor4D>(shape, { seed: 4 * seed + 2 }); // [b, h, n, d]
    if (sweep === "shift") return { q: tf.sub(q0, x) as tf.Tensor4D, k: k0, v };
    return { q: tf.mul(q0, x) as tf.Tensor4D, k: tf.mul(k0, x) as tf.Tensor4D, v };
  });
}

/** Options of {@linkcode positionalInput}. */
export interface PositionalInputOptions {
  /** Seed of the noise, a non-negative integer. */
  seed: number;
  /** Amplitude of the sinusoidal signal; default 1.5. */
  amplitude?: number;
  /** Standard deviation of the N(0, σ²) noise added to it; default 0.3. */
  noise?: number;
}

/**
 * Queries or keys [1, 1, n, d] that share a smooth positional signal plus seeded noise: channel pair (2i, 2i + 1)
 * holds sin and cos of position · 4/n^(2i/d) (sinusoidal positions), times `amplitude`. Two such inputs with
 * different seeds make q·k largest near the diagonal, so a variant that can focus shows a band there. The caller
 * disposes the tensor.
 *
 * @example
 * ```ts
 * import { positionalInput } from "./inputs.ts";
 * const q = positionalInput(8, 4, { seed: 0, noise: 0 });
 * // Position 0: sin(0) = 0 and cos(0) = 1 in each channel pair, times the amplitude 1.5.
 * console.log(q.shape, Array.from(q.dataSync().slice(0, 4))); // [1, 1, 8, 4] [0, 1.5, 0, 1.5]
 * q.dispose();
 * ```
 */
export function positionalInput(n: number, d: number, options: PositionalInputOptions): tf.Tensor4D {
  const owner = "positionalInput";
  checkInteger(owner, "n", n, 1);
  checkInteger(owner, "d", d, 1);
  const o = checkObject(owner, options, ["seed", "amplitude", "noise"], "{ seed: 0 }");
  const seed = checkInteger(owner, "options.seed", o.seed, 0);
  const amplitude = o.amplitude ?? 1.5;
  if (typeof amplitude !== "number" || !Number.isFinite(amplitude)) {
    throw new TypeError(`${owner}: options.amplitude must be a finite number, got ${describe(amplitude)}`);
  }
  const noise = o.noise ?? 0.3;
  if (typeof noise !== "number" || !(noise >= 0) || !Number.isFinite(noise)) {
    throw new RangeError(`${owner}: options.noise must be a finite number >= 0, got ${describe(noise)}`);
  }
  const signal = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < d; c++) {
      const frequency = 4 / Math.pow(n, (2 * Math.floor(c / 2)) / d);
      signal[i * d + c] = amplitude * (c % 2 === 0 ? Math.sin(i * frequency) : Math.cos(i * frequency));
    }
  }
  return tf.tidy(() => {
    const x = tf.add(tf.tensor2d(signal, [n, d]), randomNormal([n, d], { seed, std: noise })); // [n, d]
    return tf.reshape(x, [1, 1, n, d]) as tf.Tensor4D; // [b, h, n, d]
  });
}
