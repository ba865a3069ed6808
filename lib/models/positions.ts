/**
 * Position encodings: the sinusoidal table added to embeddings, and the rotary encoding applied to q and k.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { checkOptionKeys } from "../_options.ts";

/**
 * The sinusoidal table [length, d]: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)).
 *
 * @example
 * ```ts
 * import { sinusoidalTable } from "./positions.ts";
 * const pe = sinusoidalTable(4, 6);
 * console.log(pe.shape.join(","), pe.arraySync()[0].join(",")); // 4,6 0,1,0,1,0,1
 * pe.dispose();
 * ```
 */
export function sinusoidalTable(length: number, d: number): tf.Tensor2D {
  if (!Number.isInteger(length) || length < 1) {
    throw new Error(`sinusoidalTable: length must be an integer >= 1, got ${length}`);
  }
  if (!Number.isInteger(d) || d < 1) throw new Error(`sinusoidalTable: d must be an integer >= 1, got ${d}`);
  const data = new Float32Array(length * d);
  for (let p = 0; p < length; p++) {
    for (let j = 0; j < d; j++) {
      const angle = p / Math.pow(10000, (2 * Math.floor(j / 2)) / d);
      data[p * d + j] = j % 2 === 0 ? Math.sin(angle) : Math.cos(angle);
    }
  }
  return tf.tensor2d(data, [length, d]);
}

/**
 * Rotary encoding of x [b, h, n, d] (d even) at positions offset..offset+n-1: the halves
 * (x1, x2) become (x1 cos θ − x2 sin θ, x1 sin θ + x2 cos θ), θ_{p,i} = p / 10000^(2i/d).
 * Dot products of rotated q and k then depend on positions only through their difference.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { rotary } from "./positions.ts";
 * const x = tf.ones([1, 1, 3, 4]) as tf.Tensor4D;
 * const r = rotary(x);
 * console.log(r.shape.join(","), r.arraySync()[0][0][0].join(",")); // 1,1,3,4 1,1,1,1
 * ```
 */
export function rotary(x: tf.Tensor4D, options: { offset?: number } = {}): tf.Tensor4D {
  checkOptionKeys("rotary", options, ["offset"]);
  const { offset = 0 } = options;
  if (!(x instanceof tf.Tensor) || x.rank !== 4) {
    throw new Error("rotary: x must be a tf.Tensor4D [batch, heads, n, d]");
  }
  const [, , n, d] = x.shape;
  if (d % 2 !== 0) throw new Error(`rotary: the last axis must be even, got d = ${d}`);
  if (!Number.isInteger(offset) || offset < 0) throw new Error(`rotary: offset must be an integer >= 0, got ${offset}`);
  const half = d / 2;
  const cos = new Float32Array(n * half);
  const sin = new Float32Array(n * half);
  for (let p = 0; p < n; p++) {
    for (let i = 0; i < half; i++) {
      const angle = (p + offset) / Math.pow(10000, (2 * i) / d);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return tf.tidy(() => {
    const c = tf.tensor2d(cos, [n, half]); // [n, d/2]
    const s = tf.tensor2d(sin, [n, half]); // [n, d/2]
    const [x1, x2] = tf.split(x, 2, 3); // [b, h, n, d/2] each
    return tf.concat([tf.sub(tf.mul(x1, c), tf.mul(x2, s)), tf.add(tf.mul(x1, s), tf.mul(x2, c))], 3) as tf.Tensor4D;
  });
}
