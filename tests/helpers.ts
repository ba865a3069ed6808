/** Shared helpers for the test suites: seeded inputs, closeness checks, gradients through a cotangent. */

import * as tf from "@tensorflow/tfjs";
import { initBackend, loadableBackends } from "../lib/backend.ts";
import { blasDnnl } from "../lib/blas/backend.ts";
import { type DnnlLibrary, openDnnl } from "../lib/blas/dnnl.ts";
import type { QKV } from "../lib/attention/mod.ts";
import { randomNormal } from "../lib/random.ts";
import { createModel, type TransformerModel } from "../lib/models/mod.ts";
import { TORCH_PACKAGES } from "../lib/bench/torch.ts";
import type { TwinInfo } from "../lib/bench/torch_twin.ts";
import { join } from "node:path";
import { REPO_ROOT } from "../lib/env.ts";
import { type AdapterSummary, findAdapter } from "../lib/webgpu.ts";
import { WEBGPU_PACKAGES } from "../lib/tasks/setup.ts";

// The suites read results with dataSync(), which webgpu cannot do. So unless ATTNLAB_BACKEND names a backend, they
// (and the notebook kernels they start, which inherit it) run on the best backend that can: blas here, also on a
// machine whose real GPU the default choice would take. webgpu_test.ts holds webgpu to their numbers.
if (!Deno.env.get("ATTNLAB_BACKEND")) {
  Deno.env.set("ATTNLAB_BACKEND", (await loadableBackends()).find((b) => b !== "webgpu")!);
}
await initBackend({ quiet: true });

/** Seeded q, k: [b, h, n, dk] and v: [b, h, n, dv]. */
export function seededQKV(
  dims: { b?: number; h?: number; n: number; dk: number; dv: number; seed: number; std?: number },
): QKV {
  const { b = 2, h = 2, n, dk, dv, seed, std = 1 } = dims;
  return {
    q: randomNormal<tf.Tensor4D>([b, h, n, dk], { seed, std }),
    k: randomNormal<tf.Tensor4D>([b, h, n, dk], { seed: seed + 1, std }),
    v: randomNormal<tf.Tensor4D>([b, h, n, dv], { seed: seed + 2, std }),
  };
}

/** max |a - b| */
export function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

/** Throws unless |actual - expected| <= atol + rtol * max|expected| everywhere, and both are finite. */
export function assertClose(
  actual: tf.Tensor,
  expected: tf.Tensor,
  what: string,
  tol: { atol?: number; rtol?: number } = {},
) {
  const { atol = 1e-5, rtol = 1e-4 } = tol;
  if (actual.shape.join() !== expected.shape.join()) {
    throw new Error(`${what}: shape [${actual.shape}] differs from expected [${expected.shape}]`);
  }
  const scale = tf.tidy(() => tf.max(tf.abs(expected)).dataSync()[0]);
  const diff = maxAbsDiff(actual, expected);
  if (!Number.isFinite(diff) || !Number.isFinite(scale)) {
    throw new Error(`${what}: non-finite values (diff ${diff}, scale ${scale})`);
  }
  const bound = atol + rtol * scale;
  if (diff > bound) {
    throw new Error(
      `${what}: max |diff| ${diff.toExponential(3)} > ${bound.toExponential(3)} (scale ${scale.toExponential(3)})`,
    );
  }
}

/** The output of f and its gradients with respect to q, k, v through the cotangent `cot`. */
export function outputAndGrads(
  f: (qkv: QKV) => tf.Tensor4D,
  qkv: QKV,
  cot: tf.Tensor4D,
): { out: tf.Tensor4D; grads: tf.Tensor[] } {
  const out = f(qkv);
  const grads = tf.grads((q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) =>
    tf.sum(tf.mul(f({ q: q as tf.Tensor4D, k: k as tf.Tensor4D, v: v as tf.Tensor4D }), cot))
  )([qkv.q, qkv.k, qkv.v]);
  return { out, grads };
}

/** Asserts two functions agree on outputs and on gradients with respect to q, k and v. */
export function assertSameOutputAndGrads(
  actual: (qkv: QKV) => tf.Tensor4D,
  expected: (qkv: QKV) => tf.Tensor4D,
  qkv: QKV,
  what: string,
  tol?: { atol?: number; rtol?: number },
) {
  tf.tidy(() => {
    const [b, h, n] = qkv.q.shape;
    const cot = randomNormal<tf.Tensor4D>([b, h, n, qkv.v.shape[3]], { seed: 99 });
    const a = outputAndGrads(actual, qkv, cot);
    const e = outputAndGrads(expected, qkv, cot);
    assertClose(a.out, e.out, `${what}: output`, tol);
    ["q", "k", "v"].forEach((name, i) => assertClose(a.grads[i], e.grads[i], `${what}: d/d${name}`, tol));
  });
}

/** Runs `f` on a model built (silently) from `input`, and disposes the model afterwards, also when `f` throws. */
export function withModel<T>(input: Parameters<typeof createModel>[0], f: (m: TransformerModel) => T): T {
  const model = createModel(input, { log: () => {} });
  try {
    return f(model);
  } finally {
    model.dispose();
  }
}

/** The hello of a stand-in PyTorch twin on an optimised BLAS, for benchmark tests with twins of known times. */
export const FAKE_TWIN_INFO: Readonly<TwinInfo> = Object.freeze({
  torch: "fake",
  threads: 2,
  blas: "openblas",
  blasPath: null,
  blasOptimised: true,
  sgemmGflops: 100,
});

/**
 * Fails the calling test, naming the install command, when PyTorch cannot be imported: the test task installs it
 * (setup's torchTests), so a test that needs it fails rather than skips.
 */
export function requireTorch(probe: { available: boolean; detail: string }): void {
  if (!probe.available) {
    throw new Error(
      `PyTorch is needed by this test and cannot be imported (${probe.detail}); ` +
        `install it with: apt-get install -y ${TORCH_PACKAGES.join(" ")} (\`deno task test\` does so as root)`,
    );
  }
}

/** Runs `fn` on backend `name` (then restores the previous one) and asserts that it leaves no tensor behind. */
export async function onBackend<T>(name: "blas" | "cpu", fn: () => T | Promise<T>): Promise<T> {
  const previous = await initBackend({ quiet: true });
  await initBackend({ backend: name, quiet: true });
  const start = tf.memory().numTensors;
  try {
    const out = await fn();
    if (tf.memory().numTensors !== start) throw new Error(`${name}: ${tf.memory().numTensors - start} tensors leaked`);
    return out;
  } finally {
    await initBackend({ backend: previous, quiet: true });
  }
}

/** Runs `deno task bench` with `args` in a subprocess: its exit code and output. */
export async function runBenchTask(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "lib/tasks/bench.ts"), ...args],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

/**
 * What the oneDNN tests need to know: whether the blas backend loads, the oneDNN its kernels use (undefined without
 * libdnnl2 or under ATTNLAB_BLAS_KERNELS=js) and whether libdnnl2 opens at all.
 */
export async function dnnlSetup(): Promise<{ hasBlas: boolean; lib: DnnlLibrary | undefined; hasDnnl: boolean }> {
  const hasBlas = (await loadableBackends()).includes("blas");
  let hasDnnl = true;
  try {
    openDnnl();
  } catch {
    hasDnnl = false;
  }
  return { hasBlas, lib: hasBlas ? blasDnnl() : undefined, hasDnnl };
}

/**
 * The WebGPU adapter the webgpu tests run on (Mesa's lavapipe on a machine without a GPU). Fails the calling test,
 * naming the install command, when Deno finds none: the test task installs mesa-vulkan-drivers (setup), so a test
 * that needs it fails rather than skips.
 */
export async function requireWebgpu(): Promise<AdapterSummary> {
  const found = await findAdapter();
  if (!found.available) {
    throw new Error(
      `WebGPU is needed by this test and Deno finds no adapter (${found.reason}); install Mesa's software Vulkan ` +
        `driver with: apt-get install -y ${WEBGPU_PACKAGES.join(" ")} (\`deno task test\` does so as root)`,
    );
  }
  return found.adapter;
}
