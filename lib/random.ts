/**
 * Seeded random numbers generated in JavaScript, so that the same seed gives the
 * same numbers on every TensorFlow.js backend.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

/**
 * A seeded uniform generator on [0, 1) (mulberry32).
 *
 * @example
 * ```ts
 * import { seededUniform } from "./random.ts";
 * const a = seededUniform(7), b = seededUniform(7);
 * console.log(a() === b()); // true
 * ```
 */
export function seededUniform(seed: number): () => number {
  if (!Number.isInteger(seed) || seed < 0) {
    throw new Error(`seededUniform: seed must be a non-negative integer, got ${seed}`);
  }
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let r = Math.imul(t ^ (t >>> 15), 1 | t);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A seeded standard normal generator (Box-Muller over {@linkcode seededUniform}).
 *
 * @example
 * ```ts
 * import { seededNormal } from "./random.ts";
 * const g = seededNormal(1);
 * console.log(Number.isFinite(g())); // true
 * ```
 */
export function seededNormal(seed: number): () => number {
  const uniform = seededUniform(seed);
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const u = 1 - uniform();
    const w = uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * w);
    return r * Math.cos(2 * Math.PI * w);
  };
}

/**
 * A float32 tensor of N(mean, std^2) draws from a seed; identical on every backend.
 *
 * @example
 * ```ts
 * import { randomNormal } from "./random.ts";
 * const x = randomNormal([2, 3], { seed: 0 });
 * console.log(x.shape.join("x")); // 2x3
 * ```
 */
export function randomNormal<T extends tf.Tensor = tf.Tensor>(
  shape: number[],
  options: { seed: number; mean?: number; std?: number },
): T {
  const { seed, mean = 0, std = 1 } = options;
  const size = shape.reduce((a, b) => a * b, 1);
  const next = seededNormal(seed);
  const data = new Float32Array(size);
  for (let i = 0; i < size; i++) data[i] = mean + std * next();
  return tf.tensor(data, shape) as T;
}
