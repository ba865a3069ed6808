/**
 * Chooses the TensorFlow.js backend once, at start-up.
 *
 * The default is the best backend that loads, in this order:
 * `tensorflow` (tfjs-node-gpu or tfjs-node, when installed) > `webgpu` (Deno's WebGPU, on a real GPU only) >
 * `blas` (the cpu backend with matmuls from the system OpenBLAS) > `wasm` > `cpu`.
 * Every notebook, the training loop and the async diagnostics read tensors with `await data()`, so they run on
 * `webgpu`; code of your own must too (`dataSync()` there throws a WebgpuSyncReadError that says so).
 * `ATTNLAB_BACKEND` forces one; a forced backend that cannot load is an error
 * that says how to install it. A software WebGPU adapter (Mesa's lavapipe, which the tests use) is never picked
 * by itself: it runs the GPU's code path on the CPU, far slower than `blas`; `ATTNLAB_BACKEND=webgpu` forces it.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { BLAS_INSTALL_HINT, registerBlasBackend } from "./blas/mod.ts";
import { envString } from "./env.ts";
import {
  type AdapterSummary,
  describeAdapter,
  findAdapter,
  mayHaveGpu,
  registerWebgpuBackend,
  WEBGPU_INSTALL_HINT,
} from "./webgpu.ts";

/** The backends attnlab knows how to load, best first. */
export const BACKENDS = ["tensorflow", "webgpu", "blas", "wasm", "cpu"] as const;

/** A backend name accepted by {@linkcode initBackend} and `ATTNLAB_BACKEND`. */
export type BackendName = typeof BACKENDS[number];

/** Options for {@linkcode initBackend}. */
export interface InitBackendOptions {
  /** Force this backend; default: `ATTNLAB_BACKEND`, else the best that loads. */
  backend?: BackendName;
  /** Do not print the chosen backend. Default false. */
  quiet?: boolean;
}

const INSTALL_HINT: Record<BackendName, string> = {
  tensorflow: "install it on a machine with internet access: " +
    "`deno add npm:@tensorflow/tfjs-node@4.22.0 && deno install --allow-scripts=npm:@tensorflow/tfjs-node` " +
    "(or tfjs-node-gpu@4.22.0 with CUDA 11.2 / cuDNN 8.1 for the GPU build)",
  webgpu: WEBGPU_INSTALL_HINT,
  blas: BLAS_INSTALL_HINT,
  wasm: "it ships with the npm package @tensorflow/tfjs-backend-wasm@4.22.0; run `deno install` to fetch it",
  cpu: "it ships with @tensorflow/tfjs; run `deno install` to fetch it",
};

let chosen: Promise<BackendName> | undefined;

// Bare specifiers held in variables: Deno only resolves them if the user added
// the package to the import map, so a missing package fails fast and offline.
const NODE_PACKAGES = ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"];

async function loadTensorflow(): Promise<void> {
  const reasons: string[] = [];
  for (const name of NODE_PACKAGES) {
    try {
      await import(name);
      if (tf.findBackend("tensorflow") !== null) return;
      reasons.push(`${name} loaded but registered no "tensorflow" backend`);
    } catch (err) {
      reasons.push(`${name}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  throw new Error(reasons.join("; "));
}

// The adapter decides whether webgpu may be picked: a real GPU always, a software one only when asked for.
async function webgpuAdapter(allowSoftware: boolean): Promise<AdapterSummary> {
  if (!allowSoftware && !mayHaveGpu()) throw new Error("no GPU device file (/dev/dri/renderD*, /dev/nvidia*)");
  const found = await findAdapter();
  if (!found.available) throw new Error(found.reason);
  if (found.adapter.software && !allowSoftware) {
    throw new Error(
      `the only WebGPU adapter is a software one (${describeAdapter(found.adapter)}), slower than the CPU ` +
        "backends; ATTNLAB_BACKEND=webgpu uses it anyway",
    );
  }
  return found.adapter;
}

async function tryBackend(name: BackendName, allowSoftware = false): Promise<string | undefined> {
  try {
    if (name === "tensorflow") await loadTensorflow();
    if (name === "webgpu") {
      await webgpuAdapter(allowSoftware);
      // Registered only when tried, as wasm below: once registered, it outranks cpu in tfjs's own choice.
      await registerWebgpuBackend();
    }
    if (name === "blas") registerBlasBackend();
    // Registered only when tried: once registered, wasm outranks cpu in tfjs's own choice, and code that
    // touches tensors before initBackend() would then fail on its asynchronous start-up.
    if (name === "wasm") await import("@tensorflow/tfjs-backend-wasm");
    const ok = await tf.setBackend(name);
    if (!ok) return `tf.setBackend("${name}") returned false`;
    await tf.ready();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

function parseBackend(value: string, source: string): BackendName {
  if ((BACKENDS as readonly string[]).includes(value)) return value as BackendName;
  throw new Error(
    `${source} must be one of ${BACKENDS.join(", ")}, got "${value}"; ` +
      `unset it to pick the best available backend`,
  );
}

function forcedBackend(options: InitBackendOptions): BackendName | undefined {
  if (options.backend !== undefined) return parseBackend(options.backend, "options.backend");
  const envValue = envString("ATTNLAB_BACKEND");
  return envValue === undefined ? undefined : parseBackend(envValue, "ATTNLAB_BACKEND");
}

async function choose(forced: BackendName | undefined): Promise<BackendName> {
  // The cpu backend prints a "use tfjs-node" banner on first use unless PROD is set.
  tf.env().set("PROD", true);
  if (forced !== undefined) {
    const failure = await tryBackend(forced, true);
    if (failure !== undefined) {
      throw new Error(`backend "${forced}" could not load (${failure}); ${INSTALL_HINT[forced]}`);
    }
    return forced;
  }
  for (const name of BACKENDS) {
    const failure = await tryBackend(name);
    if (failure === undefined) return name;
    // tfjs-node is an opt-in extra; a missing BLAS is worth one line, since it costs 100x in speed.
    if (name === "blas") {
      console.log(`attnlab: blas backend unavailable (${failure.split(";")[0]}); ${BLAS_INSTALL_HINT}`);
    }
  }
  throw new Error(`no TensorFlow.js backend could load; ${INSTALL_HINT.cpu}`);
}

/** Options for {@linkcode loadableBackends}. */
export interface LoadableBackendsOptions {
  /** Count `webgpu` on a software adapter (lavapipe) too. Default false: only on a real GPU, as the default choice. */
  softwareWebgpu?: boolean;
}

/**
 * Every backend that loads on this machine, best first: the ones {@linkcode initBackend} would consider by
 * itself (so `webgpu` only on a real GPU, unless `softwareWebgpu`). Leaves the current backend in place.
 *
 * @example
 * ```ts
 * import { loadableBackends } from "./backend.ts";
 * const names = await loadableBackends();
 * console.log(names.includes("cpu")); // true
 * ```
 */
export async function loadableBackends(options: LoadableBackendsOptions = {}): Promise<BackendName[]> {
  for (const key of Object.keys(options)) {
    if (key !== "softwareWebgpu") {
      throw new TypeError(`loadableBackends: unknown option "${key}"; the only option is softwareWebgpu`);
    }
  }
  if (options.softwareWebgpu !== undefined && typeof options.softwareWebgpu !== "boolean") {
    throw new TypeError(
      `loadableBackends: options.softwareWebgpu must be true or false, got ${String(options.softwareWebgpu)}`,
    );
  }
  const current = tf.getBackend();
  const names: BackendName[] = [];
  for (const name of BACKENDS) {
    if (await tryBackend(name, options.softwareWebgpu ?? false) === undefined) names.push(name);
  }
  if (current) await tf.setBackend(current);
  return names;
}

const announced = new Set<BackendName>();

/**
 * Selects and initialises the backend: `options.backend`, else `ATTNLAB_BACKEND`, else the best
 * that loads. Without `options.backend`, later calls return the first choice. Prints
 * `attnlab: backend <name>` once per backend unless `quiet`, with the adapter for webgpu:
 * `attnlab: backend webgpu (llvmpipe (LLVM 15.0.6, 256 bits), software)`.
 *
 * @example
 * ```ts
 * import { initBackend } from "./backend.ts";
 * const name = await initBackend({ quiet: true });
 * console.log(["tensorflow", "webgpu", "blas", "wasm", "cpu"].includes(name)); // true
 * ```
 */
export async function initBackend(options: InitBackendOptions = {}): Promise<BackendName> {
  for (const key of Object.keys(options)) {
    if (key !== "backend" && key !== "quiet") {
      throw new Error(`initBackend: unknown option "${key}"; expected backend or quiet`);
    }
  }
  const forced = forcedBackend(options);
  let name: BackendName;
  if (options.backend !== undefined) {
    name = await choose(forced);
  } else {
    chosen ??= choose(forced);
    try {
      name = await chosen;
    } catch (err) {
      chosen = undefined;
      throw err;
    }
    if (tf.getBackend() !== name) await tf.setBackend(name);
  }
  if (!options.quiet && !announced.has(name)) {
    announced.add(name);
    console.log(`attnlab: backend ${await backendLabel()}`);
  }
  return name;
}

/**
 * The backend in use with, for webgpu, the adapter it runs on: `webgpu (NVIDIA H100 80GB HBM3, GPU)`,
 * `webgpu (llvmpipe (LLVM 15.0.6, 256 bits), software)`; other backends by name. For logs and benchmark rows.
 *
 * @example
 * ```ts
 * import { backendLabel, initBackend } from "./backend.ts";
 * await initBackend({ backend: "cpu", quiet: true });
 * console.log(await backendLabel()); // cpu
 * ```
 */
export async function backendLabel(): Promise<string> {
  const name = tf.getBackend();
  if (name !== "webgpu") return name;
  const found = await findAdapter();
  return found.available ? `webgpu (${describeAdapter(found.adapter)})` : "webgpu";
}

/**
 * The name of the backend in use right now, for manifests and logs.
 *
 * @example
 * ```ts
 * import { backendName, initBackend } from "./backend.ts";
 * await initBackend({ quiet: true });
 * console.log(backendName());
 * ```
 */
export function backendName(): string {
  return tf.getBackend();
}
