/**
 * The `webgpu` backend's plumbing: which WebGPU adapter Deno finds, whether it is a real GPU or a software one
 * (Mesa's lavapipe, `llvmpipe (LLVM ...)`), the runtime folder the Vulkan driver wants, and the registration of
 * `@tensorflow/tfjs-backend-webgpu` with a clear error in place of its synchronous read.
 *
 * Deno ships WebGPU (no flag needed in 2.9). On a machine without a GPU, Mesa's software Vulkan driver
 * (`apt-get install mesa-vulkan-drivers`) gives an adapter that runs the same shaders on the CPU: slow, but the
 * code path a GPU takes, which is what the tests need. `lib/backend.ts` picks `webgpu` by itself only for a real
 * GPU; a software adapter only when forced (`ATTNLAB_BACKEND=webgpu`).
 *
 * Deno's WebGPU has no synchronous way to read a GPU buffer, and the canvas trick tfjs-backend-webgpu uses for
 * `dataSync()` needs a 2d `OffscreenCanvas`, which Deno lacks (it fails with "Cannot read properties of null").
 * {@linkcode registerWebgpuBackend} replaces that read with a {@linkcode WebgpuSyncReadError} naming the fix:
 * `await tensor.data()`.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** How to get an adapter when Deno finds none (the package is setup's WEBGPU_PACKAGES, in lib/tasks/setup.ts). */
export const WEBGPU_INSTALL_HINT =
  "install a Vulkan driver: a GPU's own, or Mesa's software one with `apt-get install -y mesa-vulkan-drivers`";

/** What attnlab knows of a WebGPU adapter. */
export interface AdapterSummary {
  /** The driver's description, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)` or `NVIDIA H100 80GB HBM3`; may be empty. */
  description: string;
  /** The vendor as the adapter reports it (a name, or the PCI vendor id in decimal); may be empty. */
  vendor: string;
  /** The architecture, where reported; may be empty. */
  architecture: string;
  /** Whether it is a software or fallback adapter (runs on the CPU). */
  software: boolean;
}

/** What {@linkcode findAdapter} found. */
export type AdapterProbe =
  | { available: true; adapter: AdapterSummary }
  | { available: false; reason: string };

// Software rasterisers that expose Vulkan, D3D or Metal adapters: Mesa's lavapipe (its devices are named llvmpipe),
// softpipe, Google's SwiftShader, Microsoft's WARP.
const SOFTWARE_NAMES = /llvmpipe|lavapipe|softpipe|swiftshader|microsoft basic render|\bwarp\b/i;

/**
 * Whether an adapter is a software or fallback one: the adapter says so (`isFallbackAdapter`, on the adapter in
 * older WebGPU and on its `info` in newer), or its description names a known software rasteriser.
 *
 * @example
 * ```ts
 * import { isSoftwareAdapter } from "./webgpu.ts";
 * console.log(isSoftwareAdapter({ description: "llvmpipe (LLVM 15.0.6, 256 bits)" })); // true
 * console.log(isSoftwareAdapter({ description: "NVIDIA H100 80GB HBM3", isFallbackAdapter: false })); // false
 * console.log(isSoftwareAdapter({ description: "", isFallbackAdapter: true })); // true
 * ```
 */
export function isSoftwareAdapter(
  info: { description?: string; vendor?: string; isFallbackAdapter?: boolean },
): boolean {
  if (info.isFallbackAdapter === true) return true;
  return SOFTWARE_NAMES.test(info.description ?? "") || SOFTWARE_NAMES.test(info.vendor ?? "");
}

/**
 * The adapter as the start-up line names it: its description (or vendor and architecture when it has none) and
 * whether it is a GPU or software.
 *
 * @example
 * ```ts
 * import { describeAdapter } from "./webgpu.ts";
 * const lavapipe = { description: "llvmpipe (LLVM 15.0.6, 256 bits)", vendor: "65541", architecture: "", software: true };
 * console.log(describeAdapter(lavapipe)); // llvmpipe (LLVM 15.0.6, 256 bits), software
 * console.log(describeAdapter({ description: "", vendor: "nvidia", architecture: "hopper", software: false }));
 * // nvidia hopper, GPU
 * ```
 */
export function describeAdapter(adapter: AdapterSummary): string {
  const name = adapter.description.trim() ||
    [adapter.vendor, adapter.architecture].map((s) => s.trim()).filter((s) => s !== "").join(" ") ||
    "unnamed adapter";
  return `${name}, ${adapter.software ? "software" : "GPU"}`;
}

function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

function usableRuntimeDir(path: string): boolean {
  try {
    const st = statSync(path);
    const uid = Deno.uid?.();
    return st.isDirectory() && (st.mode & 0o777) === 0o700 && (uid == null || st.uid === uid);
  } catch {
    return false;
  }
}

/**
 * Makes `XDG_RUNTIME_DIR` name a folder of this user with mode 700, as the Vulkan driver's window-system code
 * expects (without one, wgpu prints "XDG_RUNTIME_DIR is invalid or not set" for each adapter request, though it
 * works). A usable value is kept; otherwise it is set, for this process and its children, to
 * `<tmp>/attnlab-runtime-<uid>` (created with mode 700; a fresh temporary folder if that path is taken by
 * someone else). Returns the folder, or undefined without permission to read or set the environment. Called by
 * {@linkcode findAdapter} before the first adapter request, which is when the driver reads it.
 *
 * @example
 * ```ts
 * import { statSync } from "node:fs";
 * import { ensureRuntimeDir } from "./webgpu.ts";
 * const dir = ensureRuntimeDir();
 * console.log(dir === Deno.env.get("XDG_RUNTIME_DIR")); // true
 * console.log((statSync(dir!).mode & 0o777).toString(8)); // 700
 * ```
 */
export function ensureRuntimeDir(): string | undefined {
  const current = readEnv("XDG_RUNTIME_DIR");
  if (current !== undefined && current !== "" && usableRuntimeDir(current)) return current;
  let dir = join(tmpdir(), `attnlab-runtime-${Deno.uid?.() ?? "user"}`);
  try {
    if (!existsSync(dir)) mkdirSync(dir, { mode: 0o700 });
    if (!usableRuntimeDir(dir)) dir = Deno.makeTempDirSync({ prefix: "attnlab-runtime-" }); // made with mode 700
    Deno.env.set("XDG_RUNTIME_DIR", dir);
    return dir;
  } catch {
    return undefined;
  }
}

/**
 * Whether this machine may have a GPU that WebGPU could use, from its device files alone: on Linux a DRM render
 * node (`/dev/dri/renderD*`: AMD, Intel, and NVIDIA's open driver), NVIDIA's `/dev/nvidia[0-9]*` or WSL's
 * `/dev/dxg`; on other systems always true. Asking for an adapter loads every Vulkan driver installed (lavapipe
 * among them) and takes about a second on a busy machine, so the default backend choice asks only where this is
 * true; `ATTNLAB_BACKEND=webgpu` always asks.
 *
 * @example
 * ```ts
 * import { mayHaveGpu } from "./webgpu.ts";
 * console.log(typeof mayHaveGpu()); // boolean
 * ```
 */
export function mayHaveGpu(): boolean {
  if (Deno.build.os !== "linux") return true;
  const names = (dir: string) => {
    try {
      return [...Deno.readDirSync(dir)].map((e) => e.name);
    } catch {
      return [];
    }
  };
  return names("/dev/dri").some((n) => n.startsWith("renderD")) ||
    names("/dev").some((n) => /^nvidia\d+$/.test(n) || n === "dxg");
}

let probe: Promise<AdapterProbe> | undefined;

async function requestAdapter(): Promise<AdapterProbe> {
  const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  if (gpu === undefined) return { available: false, reason: "this Deno has no navigator.gpu (WebGPU)" };
  ensureRuntimeDir();
  let adapter: GPUAdapter | null;
  try {
    // The adapter tfjs-backend-webgpu asks for (WEBGPU_USE_LOW_POWER_GPU unset).
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (err) {
    return { available: false, reason: `navigator.gpu.requestAdapter() failed: ${(err as Error).message}` };
  }
  if (adapter === null) {
    return { available: false, reason: "navigator.gpu.requestAdapter() found no adapter (no Vulkan driver?)" };
  }
  const info = (adapter.info ?? {}) as Partial<GPUAdapterInfo> & { isFallbackAdapter?: boolean };
  const fallback = (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? info.isFallbackAdapter;
  const summary = {
    description: String(info.description ?? ""),
    vendor: String(info.vendor ?? ""),
    architecture: String(info.architecture ?? ""),
  };
  return {
    available: true,
    adapter: { ...summary, software: isSoftwareAdapter({ ...summary, isFallbackAdapter: fallback }) },
  };
}

/**
 * The WebGPU adapter Deno finds for this process (asked once, then remembered), or why there is none.
 *
 * @example
 * ```ts
 * import { findAdapter } from "./webgpu.ts";
 * const found = await findAdapter();
 * console.log(found.available ? found.adapter.description : found.reason);
 * ```
 */
export function findAdapter(): Promise<AdapterProbe> {
  probe ??= requestAdapter();
  return probe;
}

/**
 * What a synchronous read (`dataSync`, `arraySync`, `bufferSync`) of a tensor in GPU memory throws on the
 * `webgpu` backend: Deno cannot read GPU memory synchronously.
 */
export class WebgpuSyncReadError extends Error {
  /** @param shape The shape of the tensor that was read. */
  constructor(shape: readonly number[]) {
    super(
      `webgpu backend: a synchronous read (dataSync, arraySync or bufferSync) of a tensor of shape [${shape}] ` +
        "held in GPU memory: Deno's WebGPU cannot read the GPU synchronously. Read it with `await tensor.data()` " +
        "(or `.array()`), or run this code on another backend (ATTNLAB_BACKEND=blas)",
    );
    this.name = "WebgpuSyncReadError";
  }
}

// The part of tfjs-backend-webgpu's backend that the read override touches.
interface WebgpuBackendClass {
  prototype: {
    readSync(dataId: object): unknown;
    tensorMap: { get(dataId: object): { values?: unknown; dtype: string; shape: number[] } | undefined };
  };
}

let patched = false;

/**
 * Loads `@tensorflow/tfjs-backend-webgpu` (which registers the `webgpu` backend with TensorFlow.js), once, and
 * replaces its synchronous read: values already on the CPU are returned as before; a tensor in GPU memory throws
 * a {@linkcode WebgpuSyncReadError} instead of tfjs's canvas fallback, which fails under Deno with a TypeError
 * from inside the package. Only registers: `tf.setBackend("webgpu")` then requests the device.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { registerWebgpuBackend } from "./webgpu.ts";
 * await registerWebgpuBackend();
 * console.log(tf.findBackendFactory("webgpu") !== null); // true when Deno has WebGPU (2.9 does)
 * ```
 */
export async function registerWebgpuBackend(): Promise<void> {
  if (!patched) {
    ensureRuntimeDir();
    patchReadSync(await import("@tensorflow/tfjs-backend-webgpu") as unknown as { WebGPUBackend: WebgpuBackendClass });
    replaceHighRankKernels();
    patched = true;
  }
  if (tf.findBackendFactory("webgpu") === null) {
    throw new Error(`@tensorflow/tfjs-backend-webgpu loaded but registered no "webgpu" backend (no navigator.gpu)`);
  }
}

// ---- Kernels of tfjs-backend-webgpu 4.22 that fail past rank 4 ----
//
// PadV2 and MirrorPad build their shader with at most four coordinates, so past rank 4 they return wrong numbers
// without an error (and with them the gradient of every slice, and of broadcasting arithmetic, at rank 5). Cumsum,
// Cumprod, Select (tf.where), Reverse throw "not yet supported" or a size error; Tile reads its input synchronously.
// Each is replaced, for inputs of rank 5 or more, by the same kernel on rank-3 views: one view per axis the kernel
// acts on, [product of the axes before, that axis, product of the axes after], which gives the same elements in
// the same order (row-major), so the same bits. Ranks up to 4 go to the package's kernel untouched, except:
//
// A reverse Cumsum or Cumprod (the gradient of every forward one) writes the scanned axis's length into its shader,
// but the shader cache's key ("cum_<op>_<exclusive>_<reverse>" and the ranks) leaves it out: a second reverse scan
// of another length in the same process reuses the first one's shader and returns wrong numbers, silently. A
// reverse scan is therefore run as Reverse, forward scan, Reverse (whose shaders read lengths from uniforms).

type Info = tf.TensorInfo;
type Backend = { disposeData(dataId: object): unknown };
type Kernel = (args: { inputs: Record<string, Info>; backend: Backend; attrs: Record<string, unknown> }) => Info;

const HIGH_RANK = 5;

function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** Applies `step` to each listed axis of `x` in turn, each time on the view [before, axis, after]. */
function perAxis(
  x: Info,
  backend: Backend,
  axes: readonly number[],
  step: (view: Info, axis: number) => Info,
): Info {
  const reshape = tf.getKernel("Reshape", "webgpu").kernelFunc as unknown as Kernel;
  const view = (t: Info, shape: number[]) => reshape({ inputs: { x: t }, backend, attrs: { shape } });
  let current = x;
  for (const axis of axes) {
    const shape = current.shape;
    const flat = view(current, [product(shape.slice(0, axis)), shape[axis], product(shape.slice(axis + 1))]);
    const stepped = step(flat, axis);
    backend.disposeData(flat.dataId);
    if (current !== x) backend.disposeData(current.dataId);
    current = view(stepped, [...shape.slice(0, axis), stepped.shape[1], ...shape.slice(axis + 1)]);
    backend.disposeData(stepped.dataId);
  }
  return current;
}

/** A padding kernel at rank >= HIGH_RANK as rank-3 pads, one padded axis after another (padding is separable). */
function paddedAxisByAxis(original: Kernel): Kernel {
  return (args) => {
    const { x } = args.inputs;
    const paddings = args.attrs.paddings as [number, number][];
    const axes = paddings.flatMap(([lo, hi], axis) => lo !== 0 || hi !== 0 ? [axis] : []);
    if (x.shape.length < HIGH_RANK || axes.length === 0) return original(args);
    return perAxis(x, args.backend, axes, (view, axis) =>
      original({
        ...args,
        inputs: { x: view },
        attrs: { ...args.attrs, paddings: [[0, 0], paddings[axis], [0, 0]] },
      }));
  };
}

const HIGH_RANK_KERNELS: Record<string, (original: Kernel) => Kernel> = {
  PadV2: paddedAxisByAxis,
  // Mirror padding is separable too: out[i, j] = x[m(i), m(j)], so one axis after another gives the same result.
  MirrorPad: paddedAxisByAxis,
  Cumsum: (original) => cumulative(original),
  Cumprod: (original) => cumulative(original),
  Reverse: (original) => (args) => {
    const { x } = args.inputs;
    if (x.shape.length < HIGH_RANK) return original(args);
    const axes = [...new Set(tf.util.parseAxisParam(args.attrs.dims as number | number[], x.shape))];
    return perAxis(x, args.backend, axes, (view) => original({ ...args, inputs: { x: view }, attrs: { dims: [1] } }));
  },
  Tile: (original) => (args) => {
    const { x } = args.inputs;
    const reps = args.attrs.reps as number[];
    const axes = reps.flatMap((r, axis) => r !== 1 ? [axis] : []);
    if (x.shape.length < HIGH_RANK || axes.length === 0) return original(args);
    return perAxis(
      x,
      args.backend,
      axes,
      (view, axis) => original({ ...args, inputs: { x: view }, attrs: { reps: [1, reps[axis], 1] } }),
    );
  },
  // tf.where broadcasts condition, t and e to one shape before the kernel: a flat view of all three is the same.
  Select: (original) => (args) => {
    const { condition, t, e } = args.inputs;
    if (t.shape.length < HIGH_RANK) return original(args);
    const reshape = tf.getKernel("Reshape", "webgpu").kernelFunc as unknown as Kernel;
    const flat = (x: Info) => reshape({ inputs: { x }, backend: args.backend, attrs: { shape: [product(x.shape)] } });
    const views = [flat(condition), flat(t), flat(e)];
    const selected = original({ ...args, inputs: { condition: views[0], t: views[1], e: views[2] } });
    const out = reshape({ inputs: { x: selected }, backend: args.backend, attrs: { shape: t.shape } });
    for (const v of [...views, selected]) args.backend.disposeData(v.dataId);
    return out;
  },
};

function cumulative(original: Kernel): Kernel {
  return (args) => {
    const { x } = args.inputs;
    const rank = x.shape.length;
    const axis = tf.util.parseAxisParam(args.attrs.axis as number, x.shape)[0];
    const reverse = Boolean(args.attrs.reverse);
    const reverseKernel = tf.getKernel("Reverse", "webgpu").kernelFunc as unknown as Kernel;
    const flip = (t: Info, at: number) =>
      reverseKernel({ inputs: { x: t }, backend: args.backend, attrs: { dims: [at] } });
    const scan = (t: Info, at: number) => {
      const attrs = { ...args.attrs, axis: at, reverse: false };
      if (!reverse) return original({ ...args, inputs: { x: t }, attrs });
      // A reverse scan is a forward scan of the reversed axis, reversed back.
      const flipped = flip(t, at);
      const scanned = original({ ...args, inputs: { x: flipped }, attrs });
      const out = flip(scanned, at);
      for (const done of [flipped, scanned]) args.backend.disposeData(done.dataId);
      return out;
    };
    if (rank < HIGH_RANK) return scan(x, axis);
    return perAxis(x, args.backend, [axis], (view) => scan(view, 1));
  };
}

/** Replaces the webgpu kernels of {@linkcode HIGH_RANK_KERNELS} (once; the package registers them on import). */
function replaceHighRankKernels(): void {
  for (const [name, wrap] of Object.entries(HIGH_RANK_KERNELS)) {
    const config = tf.getKernel(name, "webgpu");
    if (config === undefined) continue;
    tf.unregisterKernel(name, "webgpu");
    tf.registerKernel({
      ...config,
      kernelFunc: wrap(config.kernelFunc as unknown as Kernel) as unknown as tf.KernelFunc,
    });
  }
}

function patchReadSync(module: { WebGPUBackend: WebgpuBackendClass }): void {
  const proto = module.WebGPUBackend.prototype;
  const original = proto.readSync;
  proto.readSync = function (this: WebgpuBackendClass["prototype"], dataId: object) {
    const data = this.tensorMap.get(dataId);
    // Values on the CPU (uploaded inputs, CPU-forwarded small ops, anything read before) and strings read as before;
    // complex64 reads its two float32 parts through this same method.
    if (data === undefined || data.values != null || data.dtype === "string" || data.dtype === "complex64") {
      return original.call(this, dataId);
    }
    throw new WebgpuSyncReadError(data.shape);
  };
}
