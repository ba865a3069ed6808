/**
 * Chooses the TensorFlow.js backend once, at start-up.
 *
 * The default is the best backend that loads, in this order:
 * `tensorflow` (tfjs-node-gpu or tfjs-node, when installed) > `blas` (the cpu backend with
 * matmuls from the system OpenBLAS) > `wasm` > `cpu`.
 * `ATTNLAB_BACKEND` forces one; a forced backend that cannot load is an error
 * that says how to install it.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { BLAS_INSTALL_HINT, registerBlasBackend } from "./blas/mod.ts";
import { envString } from "./env.ts";

/** The backends attnlab knows how to load, best first. */
export const BACKENDS = ["tensorflow", "blas", "wasm", "cpu"] as const;

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

async function tryBackend(name: BackendName): Promise<string | undefined> {
  try {
    if (name === "tensorflow") await loadTensorflow();
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
    const failure = await tryBackend(forced);
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

/**
 * Every backend that loads on this machine, best first. Leaves the current backend in place.
 *
 * @example
 * ```ts
 * import { loadableBackends } from "./backend.ts";
 * const names = await loadableBackends();
 * console.log(names.includes("cpu")); // true
 * ```
 */
export async function loadableBackends(): Promise<BackendName[]> {
  const current = tf.getBackend();
  const names: BackendName[] = [];
  for (const name of BACKENDS) {
    if (await tryBackend(name) === undefined) names.push(name);
  }
  if (current) await tf.setBackend(current);
  return names;
}

const announced = new Set<BackendName>();

/**
 * Selects and initialises the backend: `options.backend`, else `ATTNLAB_BACKEND`, else the best
 * that loads. Without `options.backend`, later calls return the first choice. Prints
 * `attnlab: backend <name>` once per backend unless `quiet`.
 *
 * @example
 * ```ts
 * import { initBackend } from "./backend.ts";
 * const name = await initBackend({ quiet: true });
 * console.log(["tensorflow", "blas", "wasm", "cpu"].includes(name)); // true
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
    console.log(`attnlab: backend ${name}`);
  }
  return name;
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
