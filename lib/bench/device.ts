/**
 * The `device` column of every benchmark row: what a backend's numbers were measured on. For the CPU backends (cpu,
 * wasm, blas, tensorflow) the processor's model name and logical cores, from /proc/cpuinfo (Linux); elsewhere, or when
 * it cannot be read, `navigator.hardwareConcurrency` alone. For webgpu the adapter's description and whether it is a
 * GPU or software (`llvmpipe (LLVM 15.0.6, 256 bits), software` for Mesa's lavapipe), from lib/webgpu.ts.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { describeAdapter, findAdapter } from "../webgpu.ts";

/**
 * The CPU as /proc/cpuinfo's text describes it: the first `model name` (or `Hardware`, `cpu model`, `Processor` on
 * other architectures) and the number of `processor` entries, e.g. `Intel(R) Xeon(R) Processor, 2 logical cores`.
 * Without a model name, `unknown CPU`; without processor entries, `fallbackCores` (default
 * `navigator.hardwareConcurrency`).
 *
 * @example
 * ```ts
 * import { cpuDescription } from "./device.ts";
 * const text = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n";
 * console.log(cpuDescription(text)); // Intel(R) Xeon(R) Gold 6338, 2 logical cores
 * console.log(cpuDescription("", { fallbackCores: 1 })); // unknown CPU, 1 logical core
 * ```
 */
export function cpuDescription(cpuinfo: string, options: { fallbackCores?: number } = {}): string {
  if (typeof cpuinfo !== "string") {
    throw new TypeError(`cpuDescription: cpuinfo must be the text of /proc/cpuinfo, got ${typeof cpuinfo}`);
  }
  for (const key of Object.keys(options)) {
    if (key !== "fallbackCores") throw new TypeError(`cpuDescription: unknown option "${key}"; expected fallbackCores`);
  }
  const fallback = options.fallbackCores ?? navigator.hardwareConcurrency ?? 1;
  if (!Number.isInteger(fallback) || fallback < 1) {
    throw new RangeError(`cpuDescription: options.fallbackCores must be an integer >= 1, got ${fallback}`);
  }
  const fields = cpuinfo.split("\n").map((line) => {
    const colon = line.indexOf(":");
    return colon < 0 ? null : { key: line.slice(0, colon).trim().toLowerCase(), value: line.slice(colon + 1).trim() };
  }).filter((f) => f !== null);
  // x86 names the model "model name"; some ARM kernels "Hardware" or "Processor", MIPS "cpu model".
  const model = ["model name", "hardware", "cpu model", "processor"].map((key) =>
    fields.find((f) => f.key === key && f.value !== "" && !/^\d+$/.test(f.value))?.value
  ).find((v) => v !== undefined);
  const counted = fields.filter((f) => f.key === "processor" && /^\d+$/.test(f.value)).length;
  const cores = counted > 0 ? counted : fallback;
  return `${model ?? "unknown CPU"}, ${cores} logical core${cores === 1 ? "" : "s"}`;
}

let cpu: string | undefined;

/**
 * What a backend runs on, for the bench rows' `device` column: the WebGPU adapter for `webgpu`, else this machine's
 * CPU ({@linkcode cpuDescription} of /proc/cpuinfo, read once). Never throws: an adapter that cannot be found reads
 * `no WebGPU adapter`.
 *
 * @example
 * ```ts
 * import { deviceOf } from "./device.ts";
 * console.log((await deviceOf("cpu")).includes("logical core")); // true
 * ```
 */
export async function deviceOf(backend: string): Promise<string> {
  if (typeof backend !== "string") throw new TypeError(`deviceOf: backend must be a backend's name, got ${backend}`);
  if (backend === "webgpu") {
    const found = await findAdapter();
    return found.available ? describeAdapter(found.adapter) : "no WebGPU adapter";
  }
  if (cpu === undefined) {
    let text = "";
    try {
      text = readFileSync("/proc/cpuinfo", "utf8");
    } catch {
      // Not Linux, or no permission: the core count alone.
    }
    cpu = cpuDescription(text);
  }
  return cpu;
}
