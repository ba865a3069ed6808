/**
 * Speed of the blas backend's own kernels against the cpu backend (the baseline) and wasm, per kernel
 * and end to end (attention and a transformer block, forward and backward), all in one run:
 *
 *     deno bench -A tests/blas_kernels_bench.ts
 *
 * To see what the typed-array kernels gain over the matmul-only blas backend, run it again with
 * `ATTNLAB_BLAS_KERNELS=matmul`: "blas" then means the cpu backend with sgemm matmuls only.
 * `ATTNLAB_QUICK=1` shrinks the end-to-end workloads (n = 256 instead of 1024).
 */

import * as tf from "@tensorflow/tfjs";
import { type BackendName, initBackend, loadableBackends } from "../lib/backend.ts";
import { variants } from "../lib/attention/mod.ts";
import { isQuick } from "../lib/env.ts";
import { randomNormal } from "../lib/random.ts";
import { siluGate, srmsNorm } from "../lib/blas/fused.ts";
import { createModel } from "../lib/models/model.ts";
import { LM_ARCHITECTURE } from "../lib/models/pretrained.ts";

const BACKENDS = (await loadableBackends()).filter((name) => ["cpu", "wasm", "blas"].includes(name));
const QUICK = isQuick();
// The finite-input check (setFiniteChecks) is off by default, so the timed calls read nothing back.

/** A prepared workload: `run` is timed, `dispose` frees its inputs. */
interface Workload {
  run(): void;
  dispose(): void;
}

/**
 * One bench per backend in `group`, cpu the baseline; `build` makes the inputs on the backend being measured.
 * `skip` names backends that cannot run the workload.
 */
function benchOnBackends(
  group: string,
  build: () => Workload,
  options: { n: number; skip?: Partial<Record<BackendName, string>> },
): void {
  for (const backend of BACKENDS) {
    Deno.bench({
      name: backend,
      group,
      baseline: backend === "cpu",
      n: options.n,
      warmup: 1,
      ignore: options.skip?.[backend] !== undefined,
      async fn(b) {
        await initBackend({ backend, quiet: true });
        const work = build();
        b.start();
        work.run();
        b.end();
        work.dispose();
      },
    });
  }
}

/** A workload that applies `op` to seeded inputs of the given shapes and drops the result. */
function kernel(shapes: number[][], op: (...xs: tf.Tensor[]) => tf.Tensor): () => Workload {
  return () => {
    const xs = shapes.map((shape, i) => randomNormal(shape, { seed: i + 1 }));
    return {
      // Nothing returned from tidy: it would walk a returned typed array element by element.
      run: () =>
        tf.tidy(() => {
          op(...xs).dataSync();
        }),
      dispose: () => tf.dispose(xs),
    };
  };
}

// Per kernel, on [8, 256, 256] (524288 floats): what attention and training call most.
const X = [8, 256, 256];
const KERNELS: [string, () => Workload][] = [
  ["Add same shape", kernel([X, X], tf.add)],
  ["Multiply by a row [.., 1]", kernel([X, [8, 256, 1]], tf.mul)],
  ["Multiply by a scalar", kernel([X], (x) => tf.mul(x, 0.125))],
  ["Sub a vector [256]", kernel([X, [256]], tf.sub)],
  ["Exp", kernel([X], tf.exp)],
  ["Sigmoid", kernel([X], tf.sigmoid)],
  ["Softmax", kernel([X], (x) => tf.softmax(x))],
  ["Sum over the last axis", kernel([X], (x) => tf.sum(x, -1))],
  ["Sum over a leading axis", kernel([X], (x) => tf.sum(x, 0))],
  ["Max over the last axis", kernel([X], (x) => tf.max(x, -1))],
  ["Transpose the last two axes", kernel([X], (x) => tf.transpose(x, [0, 2, 1]))],
  ["Transpose heads [0, 2, 1, 3]", kernel([[8, 256, 8, 32]], (x) => tf.transpose(x, [0, 2, 1, 3]))],
  ["Cumsum over the last axis", kernel([X], (x) => tf.cumsum(x, 2))],
  ["PadV2 on the token axis", kernel([X], (x) => tf.pad(x, [[0, 0], [0, 64], [0, 0]]))],
  [
    "GatherV2 (embedding lookup)",
    kernel(
      [[256, 128]],
      (table) => tf.gather(table, tf.tensor1d(Array.from({ length: 4096 }, (_, i) => i % 256), "int32")),
    ),
  ],
  [
    "UnsortedSegmentSum (embedding gradient)",
    // cpu's kernel takes seconds here (one masked sum per segment), so fewer rows than elsewhere.
    kernel(
      [[1024, 64]],
      (rows) => tf.unsortedSegmentSum(rows, tf.tensor1d(Array.from({ length: 1024 }, (_, i) => i % 256), "int32"), 256),
    ),
  ],
];
/** Forward and backward of `op` on seeded inputs through a seeded cotangent (the fused kernels run both ways). */
function withGradient(shapes: number[][], op: (...xs: tf.Tensor[]) => tf.Tensor): () => Workload {
  return () => {
    const xs = shapes.map((shape, i) => randomNormal(shape, { seed: i + 1 }));
    const cot = randomNormal(shapes[0], { seed: 9 });
    return {
      run: () =>
        tf.tidy(() => {
          tf.grads((...ys: tf.Tensor[]) => tf.sum(tf.mul(op(...ys), cot)))(xs).forEach((g) => g.dataSync());
        }),
      dispose: () => tf.dispose([...xs, cot]),
    };
  };
}

// The fused kernels of lib/blas/fused.ts, forward and backward, on the shared LM's shapes: the GLU gate on
// [16, 128, 171], SimpleRMSNorm on [16, 128, 64], Softmax on [16, 4, 128, 128]. Other backends run the composites.
KERNELS.push(
  ["siluGate fwd+bwd", withGradient([[16, 128, 171], [16, 128, 171]], (a, b) => siluGate(a, b))],
  ["srmsNorm fwd+bwd", withGradient([[16, 128, 64]], (x) => srmsNorm(x))],
  ["Softmax fwd+bwd", withGradient([[16, 4, 128, 128]], (x) => tf.softmax(x))],
);

for (const [name, build] of KERNELS) {
  const segments = name.startsWith("UnsortedSegmentSum");
  benchOnBackends(`kernel: ${name}`, build, {
    n: segments ? 2 : 10,
    skip: segments ? { wasm: "tfjs-backend-wasm has no UnsortedSegmentSum kernel" } : {},
  });
}

/** Forward and backward of one attention variant on [1, 8, n, 64], through a seeded cotangent. */
function attention(name: "softmax" | "linear", causal: boolean): () => Workload {
  const n = QUICK ? 256 : 1024;
  return () => {
    const [q, k, v, cot] = [1, 2, 3, 4].map((seed) => randomNormal<tf.Tensor4D>([1, 8, n, 64], { seed }));
    const attend = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
      variants[name].attend({ q: qq as tf.Tensor4D, k: kk as tf.Tensor4D, v: vv as tf.Tensor4D }, { causal });
    return {
      run: () =>
        tf.tidy(() => {
          const grads = tf.grads((qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
            tf.sum(tf.mul(attend(qq, kk, vv), cot))
          )(
            [q, k, v],
          );
          grads.forEach((g) => g.dataSync());
        }),
      dispose: () => tf.dispose([q, k, v, cot]),
    };
  };
}

/**
 * One Adam step of a small transformer block on [8, 128] tokens of width 128: embedding lookup, RMSNorm,
 * a GLU feed-forward with silu, a residual, and softmax cross-entropy over 256 classes.
 */
function transformerBlock(): Workload {
  const [batch, tokens, width, classes] = [8, QUICK ? 32 : 128, 128, 256];
  const ids = tf.tensor2d(
    Array.from({ length: batch * tokens }, (_, i) => (i * 7919) % classes),
    [batch, tokens],
    "int32",
  );
  const labels = tf.oneHot(
    tf.tensor1d(Array.from({ length: batch * tokens }, (_, i) => (i * 31) % classes), "int32"),
    classes,
  );
  const weights = {
    embed: tf.variable(randomNormal([classes, width], { seed: 5, std: 0.1 })),
    gate: tf.variable(randomNormal([width, 4 * width], { seed: 6, std: 0.05 })),
    up: tf.variable(randomNormal([width, 4 * width], { seed: 7, std: 0.05 })),
    down: tf.variable(randomNormal([4 * width, width], { seed: 8, std: 0.05 })),
    gain: tf.variable(tf.ones([width])),
    out: tf.variable(randomNormal([width, classes], { seed: 9, std: 0.05 })),
  };
  const optimizer = tf.train.adam(1e-3);
  // minimize() frees the loss's intermediates itself.
  const loss = () => {
    const x = tf.gather(weights.embed, ids); // [batch, tokens, width]
    const rms = tf.sqrt(tf.add(tf.mean(tf.square(x), -1, true), 1e-6)); // [batch, tokens, 1]
    const normed = tf.reshape(tf.mul(tf.div(x, rms), weights.gain), [batch * tokens, width]);
    const gate = tf.matMul(normed, weights.gate); // [batch * tokens, 4 * width]
    const hidden = tf.mul(tf.mul(gate, tf.sigmoid(gate)), tf.matMul(normed, weights.up));
    const y = tf.add(normed, tf.matMul(hidden, weights.down)); // [batch * tokens, width]
    return tf.losses.softmaxCrossEntropy(labels, tf.matMul(y, weights.out)) as tf.Scalar;
  };
  return {
    run: () => {
      const cost = optimizer.minimize(loss, true)!;
      cost.dataSync();
      cost.dispose();
    },
    dispose: () => {
      optimizer.dispose();
      tf.dispose([ids, labels, ...Object.values(weights)]);
    },
  };
}

/**
 * One training update of a shared language model (lib/models/pretrained.ts's LM_ARCHITECTURE: 4 layers, d = 64,
 * 4 heads, the given preset) on 16 × 128 bytes: forward, backward and an Adam step.
 */
function sharedLmUpdate(preset: "vanilla" | "transnormer-t2"): () => Workload {
  return () => {
    const model = createModel({ ...LM_ARCHITECTURE, attention: preset }, { log: () => {} });
    const [b, n] = [16, QUICK ? 32 : 128];
    const tokens = Int32Array.from({ length: b * n }, (_, i) => (i * 7919) % 256);
    const batch = {
      kind: "lm" as const,
      inputs: tokens,
      targets: tokens.map((t) => (t * 31) % 256),
      batch: b,
      length: n,
    };
    const optimizer = tf.train.adam(1e-3);
    return {
      run: () => {
        const cost = optimizer.minimize(() => model.loss(batch), true)!;
        cost.dataSync();
        cost.dispose();
      },
      dispose: () => {
        optimizer.dispose();
        model.dispose();
      },
    };
  };
}

const end = { n: 3 };
benchOnBackends("end to end: softmax attention fwd+bwd", attention("softmax", false), end);
benchOnBackends("end to end: causal softmax attention fwd+bwd", attention("softmax", true), end);
benchOnBackends("end to end: linear attention fwd+bwd", attention("linear", false), end);
benchOnBackends("end to end: causal linear attention fwd+bwd", attention("linear", true), end);
benchOnBackends("end to end: transformer block Adam step", transformerBlock, {
  ...end,
  skip: { wasm: "tfjs-backend-wasm has no UnsortedSegmentSum, the gradient of the embedding lookup" },
});
const slowBackends = {
  cpu: "the cpu backend takes tens of seconds per update",
  wasm: "minutes for the bench on single-threaded wasm",
};
benchOnBackends("end to end: shared LM update, vanilla", sharedLmUpdate("vanilla"), { ...end, skip: slowBackends });
benchOnBackends("end to end: shared LM update, transnormer-t2", sharedLmUpdate("transnormer-t2"), {
  ...end,
  skip: slowBackends,
});
