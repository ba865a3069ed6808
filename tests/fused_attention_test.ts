// The fused softmax-attention kernels (lib/blas/fused_attention.ts) against softmax attention and its gradient in
// float64, computed here from the closed forms: S = scale · Q Kᵀ (masked above the diagonal when causal),
// P = softmax(S), O = P V; for a cotangent C, dV = Pᵀ C, dP = C Vᵀ, dS = P ∘ (dP − rowsum(P ∘ dP)), dQ = scale · dS K,
// dK = scale · dSᵀ Q. Both row-op sets are held to it: the registered kernel (oneDNN's softmax where it loads) through
// fusedSoftmaxAttention, and the loops' kernels called directly.

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { loadableBackends } from "../lib/backend.ts";
import {
  fusedAttentionKernels,
  fusedSoftmaxAttention,
  fusesSoftmaxAttention,
  SOFTMAX_ATTENTION,
  SOFTMAX_ATTENTION_GRAD,
} from "../lib/blas/fused_attention.ts";
import type { KernelArgs, TensorInfo } from "../lib/blas/_util.ts";
import { openBlas, type SgemmArgs } from "../lib/blas/sgemm.ts";
import { softmax } from "../lib/attention/softmax.ts";
import { seededNormal } from "../lib/random.ts";
import { onBackend } from "./helpers.ts";

const HAS_BLAS = (await loadableBackends()).includes("blas");
const B = 2;
const H = 2;
const SLICES = B * H;

interface Case {
  n: number;
  nk: number;
  dk: number;
  dv: number;
  causal: boolean;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  cot: Float32Array;
}

function normals(size: number, seed: number): Float32Array {
  const next = seededNormal(seed);
  return Float32Array.from({ length: size }, () => next());
}

function makeCase(dims: { n: number; nk?: number; dk: number; dv: number; causal: boolean }, seed: number): Case {
  const nk = dims.nk ?? dims.n;
  return {
    ...dims,
    nk,
    q: normals(SLICES * dims.n * dims.dk, seed),
    k: normals(SLICES * nk * dims.dk, seed + 1),
    v: normals(SLICES * nk * dims.dv, seed + 2),
    cot: normals(SLICES * dims.n * dims.dv, seed + 3),
  };
}

/** Output and q, k, v gradients through the cotangent, in float64 from the closed forms. */
function reference(c: Case): Float64Array[] {
  const { n, nk, dk, dv } = c;
  const scale = 1 / Math.sqrt(dk);
  const out = new Float64Array(SLICES * n * dv);
  const dq = new Float64Array(SLICES * n * dk);
  const dK = new Float64Array(SLICES * nk * dk);
  const dV = new Float64Array(SLICES * nk * dv);
  for (let s = 0; s < SLICES; s++) {
    for (let i = 0; i < n; i++) {
      const seen = c.causal ? i + 1 : nk;
      const p = new Float64Array(seen);
      for (let j = 0; j < seen; j++) {
        let dot = 0;
        for (let t = 0; t < dk; t++) dot += c.q[(s * n + i) * dk + t] * c.k[(s * nk + j) * dk + t];
        p[j] = scale * dot;
      }
      const max = Math.max(...p);
      let sum = 0;
      for (let j = 0; j < seen; j++) sum += p[j] = Math.exp(p[j] - max);
      for (let j = 0; j < seen; j++) p[j] /= sum;
      const dp = new Float64Array(seen);
      let rowSum = 0;
      for (let j = 0; j < seen; j++) {
        for (let e = 0; e < dv; e++) {
          out[(s * n + i) * dv + e] += p[j] * c.v[(s * nk + j) * dv + e];
          dV[(s * nk + j) * dv + e] += p[j] * c.cot[(s * n + i) * dv + e];
          dp[j] += c.cot[(s * n + i) * dv + e] * c.v[(s * nk + j) * dv + e];
        }
        rowSum += p[j] * dp[j];
      }
      for (let j = 0; j < seen; j++) {
        const ds = p[j] * (dp[j] - rowSum);
        for (let t = 0; t < dk; t++) {
          dq[(s * n + i) * dk + t] += scale * ds * c.k[(s * nk + j) * dk + t];
          dK[(s * nk + j) * dk + t] += scale * ds * c.q[(s * n + i) * dk + t];
        }
      }
    }
  }
  return [out, dq, dK, dV];
}

/** Each value within 2e-6 + 2e-5 · |reference|: float32 sums over at most 130 terms of order one. */
function assertNear(what: string, actual: ArrayLike<number>, expected: Float64Array): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const bound = 2e-6 + 2e-5 * Math.abs(expected[i]);
    if (!(Math.abs(actual[i] - expected[i]) <= bound)) {
      assert.fail(`${what}: element ${i}: ${actual[i]}, reference ${expected[i]} (bound ${bound})`);
    }
  }
}

function tensors(c: Case) {
  return {
    q: tf.tensor4d(c.q, [B, H, c.n, c.dk]),
    k: tf.tensor4d(c.k, [B, H, c.nk, c.dk]),
    v: tf.tensor4d(c.v, [B, H, c.nk, c.dv]),
    cot: tf.tensor4d(c.cot, [B, H, c.n, c.dv]),
  };
}

/** Output and gradients of fusedSoftmaxAttention through the cotangent, as arrays. */
function fusedValues(c: Case, blockSize?: number): Float32Array[] {
  return tf.tidy(() => {
    const { q, k, v, cot } = tensors(c);
    const options = { causal: c.causal, ...(blockSize === undefined ? {} : { blockSize }) };
    const f = (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
      fusedSoftmaxAttention({ q: x as tf.Tensor4D, k: y as tf.Tensor4D, v: z as tf.Tensor4D }, options);
    const { value, grads } = tf.valueAndGrads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
      tf.sum(tf.mul(f(x, y, z), cot))
    )([q, k, v]);
    value.dispose();
    return [f(q, k, v), ...grads].map((t) => t.dataSync() as Float32Array);
  });
}

const CASES = [
  { n: 1, dk: 8, dv: 5, causal: true },
  { n: 63, dk: 8, dv: 5, causal: true },
  { n: 65, dk: 8, dv: 5, causal: false },
  { n: 65, dk: 8, dv: 5, causal: true },
  { n: 130, dk: 16, dv: 16, causal: true },
  { n: 65, nk: 40, dk: 8, dv: 5, causal: false },
];

Deno.test({
  name: "fused softmax attention: outputs and q/k/v gradients equal the float64 closed form, every block size",
  ignore: !HAS_BLAS,
  fn: async () => {
    await onBackend("blas", () => {
      const start = tf.memory().numTensors;
      for (const [i, dims] of CASES.entries()) {
        const c = makeCase(dims, 10 * i + 1);
        const want = reference(c);
        for (const blockSize of [undefined, 1, 7, 64, 1000]) {
          const got = fusedValues(c, blockSize);
          ["output", "dq", "dk", "dv"].forEach((name, t) =>
            assertNear(`${JSON.stringify(dims)} block ${blockSize}: ${name}`, got[t], want[t])
          );
        }
      }
      assert.equal(tf.memory().numTensors, start);
    });
  },
});

Deno.test({
  name:
    "fused softmax attention: the loops' kernels (no oneDNN) equal the float64 closed form too, on the BLAS's sgemm or one given",
  ignore: !HAS_BLAS,
  fn: async () => {
    let calls = 0;
    const counting = (args: SgemmArgs) => {
      calls++;
      openBlas().sgemm(args);
    };
    for (const kernels of [fusedAttentionKernels(), fusedAttentionKernels(undefined, { sgemm: counting })]) {
      await checkLoopKernels(kernels);
    }
    assert.ok(calls > 0, "the kernels ran their products on the sgemm given");
    assert.throws(() => fusedAttentionKernels(undefined, { sgemm: "x" as never }), TypeError);
  },
});

async function checkLoopKernels(kernels: ReturnType<typeof fusedAttentionKernels>): Promise<void> {
  await onBackend("blas", () => {
    const backend = tf.backend() as unknown as KernelArgs["backend"];
    // A kernel's outputs as arrays, their buffers then freed.
    const read = (infos: TensorInfo | TensorInfo[]) =>
      (Array.isArray(infos) ? infos : [infos]).map((info) => {
        const values = Float32Array.from(backend.readSync(info.dataId) as Float32Array);
        backend.disposeData(info.dataId);
        return values;
      });
    for (const [i, dims] of CASES.entries()) {
      const c = makeCase(dims, 10 * i + 2);
      const want = reference(c);
      const x = tensors(c);
      for (const blockSize of [1, 7, 64]) {
        const attrs = { scale: 1 / Math.sqrt(c.dk), causal: c.causal, blockSize };
        const call = (name: string, inputs: Record<string, tf.Tensor>) =>
          read(kernels[name]({ inputs, backend, attrs } as unknown as KernelArgs) as TensorInfo | TensorInfo[]);
        const [out] = call(SOFTMAX_ATTENTION, { q: x.q, k: x.k, v: x.v });
        const grads = call(SOFTMAX_ATTENTION_GRAD, { q: x.q, k: x.k, v: x.v, dy: x.cot });
        [out, ...grads].forEach((got, t) =>
          assertNear(`${JSON.stringify(dims)} loops, block ${blockSize}: output ${t}`, got, want[t])
        );
      }
      tf.dispose(Object.values(x));
    }
  });
}

Deno.test({
  name: "fused softmax attention: the softmax variant runs the kernels on blas, with no Softmax op left",
  ignore: !HAS_BLAS,
  fn: async () => {
    await onBackend("blas", async () => {
      const start = tf.memory().numTensors;
      const c = makeCase({ n: 33, dk: 8, dv: 8, causal: true }, 77);
      const { q, k, v, cot } = tensors(c);
      assert.ok(fusesSoftmaxAttention({ q, k, v }));
      const f = (x: tf.Tensor) => tf.sum(tf.mul(softmax.attend({ q: x as tf.Tensor4D, k, v }, { causal: true }), cot));
      const info = await tf.profile(() => tf.grad(f)(q));
      assert.ok(info.kernelNames.includes(SOFTMAX_ATTENTION), info.kernelNames.join(", "));
      assert.ok(info.kernelNames.includes(SOFTMAX_ATTENTION_GRAD), info.kernelNames.join(", "));
      assert.ok(!info.kernelNames.includes("Softmax"), info.kernelNames.join(", "));
      tf.dispose([q, k, v, cot, info.result as tf.Tensor]);
      assert.equal(tf.memory().numTensors, start);
    });
  },
});

Deno.test("fused softmax attention: bad input gets typed errors that name the problem", () => {
  const x = tf.zeros([1, 1, 4, 2]) as tf.Tensor4D;
  const short = tf.zeros([1, 1, 3, 2]) as tf.Tensor4D;
  assert.throws(() => fusedSoftmaxAttention({ q: tf.zeros([4, 2]) as never, k: x, v: x }), TypeError);
  assert.throws(() => fusedSoftmaxAttention({ q: x, k: x, v: short }), /k and v one length/);
  assert.throws(() => fusedSoftmaxAttention({ q: x, k: short, v: short }, { causal: true }), RangeError);
  assert.throws(() => fusedSoftmaxAttention({ q: x, k: x, v: x }, { scale: 0 }), /scale must be a finite number > 0/);
  assert.throws(() => fusedSoftmaxAttention({ q: x, k: x, v: x }, { blockSize: 0 }), /blockSize must be an integer/);
  tf.dispose([x, short]);
});
