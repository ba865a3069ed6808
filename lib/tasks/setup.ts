/**
 * `deno task setup`: makes this machine able to run the notebooks.
 *
 * Idempotent and quick (about a second) when everything is there. Installs:
 * - Jupyter's executor (nbclient) from Debian when missing (root only;
 *   otherwise an Error names the command to run), and the Notebook server
 *   too for `deno task notebook`;
 * - libopenblas0 and libdnnl2 (oneDNN) when missing and root (optional: never fails setup; the blas backend
 *   uses them when they are there);
 * - chromium when missing and root (optional here; `tests/report_test.ts`
 *   and `deno task report` check the report in it), unless `browser: false`;
 * - with `browserTests` (the test task's default), the Notebook server and
 *   chromium as requirements: the tests in `tests/browser/` open notebooks in
 *   Jupyter in headless chromium. Without root, an Error names the one
 *   command to run;
 * - with `torchTests` (the test task's default when it runs the unit tests), Debian's PyTorch (python3-torch)
 *   as a requirement: `tests/torch_twin_test.ts` holds the benchmark's PyTorch twin equal to the model;
 * - mesa-vulkan-drivers (Mesa's Vulkan drivers, lavapipe among them: a software WebGPU adapter) when missing and
 *   root, optional (the `webgpu` backend on a machine without a GPU); with `webgpuTests` a requirement:
 *   `tests/webgpu_test.ts` runs the webgpu backend on lavapipe;
 * - the Deno kernelspec, pointing at the deno running this task;
 * - the npm packages (`deno install`).
 *
 * @module
 */

import { cpSync, existsSync } from "node:fs";
import { join, resolve } from "node:path";
import {
  denoJupyterDataDir,
  findPython,
  jupyterDataDir,
  kernelspecStatus,
  type PythonInfo,
} from "../notebook/jupyter.ts";
import { ROOT } from "../notebook/paths.ts";
import { formatHelp, parseFlags, runMain } from "./cli.ts";
import { TORCH_PACKAGES } from "../bench/torch.ts";

/** Debian packages for executing notebooks headless. */
export const EXECUTOR_PACKAGES: readonly string[] = ["python3-nbclient", "jupyter-core"];
/** Debian package for the browser UI of `deno task notebook` (about 15 MB download). */
export const NOTEBOOK_PACKAGES: readonly string[] = ["jupyter-notebook"];
/** Debian package with the BLAS library; optional. */
export const BLAS_PACKAGES: readonly string[] = ["libopenblas0"];
/** Debian package with oneDNN, whose vectorised kernels the blas backend calls; optional. */
export const DNNL_PACKAGES: readonly string[] = ["libdnnl2"];
/** Debian packages with PyTorch (and the OpenBLAS it must run on), the benchmark's baseline and the twin test's. */
export { TORCH_PACKAGES };
/**
 * Debian package with Mesa's Vulkan drivers: lavapipe, the software WebGPU adapter the webgpu tests run on (it brings
 * the Vulkan loader, libvulkan1). `lib/webgpu.ts` names it in its install hint.
 */
export const WEBGPU_PACKAGES: readonly string[] = ["mesa-vulkan-drivers"];
/** Debian package with the headless browser the report is checked in (about 115 MB download). */
export const BROWSER_PACKAGES: readonly string[] = ["chromium"];
/** pip packages for machines without Debian's apt. */
export const PIP_PACKAGES: readonly string[] = ["nbclient", "nbformat", "jupyter_client"];

/** Options for {@linkcode setup}. */
export interface SetupOptions {
  /** Also install the Jupyter Notebook server (for `deno task notebook`). Default false. */
  notebookUI?: boolean;
  /** Also install chromium, which the test task and `deno task report` use to check the report. Default true. */
  browser?: boolean;
  /**
   * Require what the browser tests (`tests/browser/`) need: the Notebook
   * server and chromium. Implies `notebookUI` and `browser`. Default false.
   */
  browserTests?: boolean;
  /** Require Debian's PyTorch, which `tests/torch_twin_test.ts` runs. Default false. */
  torchTests?: boolean;
  /** Require Mesa's Vulkan drivers, whose lavapipe `tests/webgpu_test.ts` runs on. Default false (optional). */
  webgpuTests?: boolean;
  /** Skip `deno install`. Default false. */
  skipNpm?: boolean;
  /** Receives progress lines. Default `console.log`. */
  log?: (line: string) => void;
}

/** What {@linkcode setup} ended with. */
export interface SetupReport {
  /** The interpreter that runs nbclient. */
  python: PythonInfo;
  /** The Deno kernelspec folder. */
  kernelspec: string;
  /** Whether libopenblas0 is installed. */
  openblas: boolean;
  /** Whether oneDNN (libdnnl2) is installed. */
  dnnl: boolean;
  /** Whether Debian's PyTorch is installed. */
  torch: boolean;
  /** Whether Mesa's software Vulkan driver (lavapipe, from mesa-vulkan-drivers) is installed. */
  vulkan: boolean;
  /** Whether chromium is installed. */
  chromium: boolean;
  /** Debian packages installed by this call. */
  installed: string[];
  /** Seconds the call took. */
  seconds: number;
}

/**
 * The install command a person should run, for the given packages.
 *
 * @example
 * ```ts
 * import { installHint } from "./setup.ts";
 * console.log(installHint(["python3-nbclient"], { apt: true, root: false }));
 * console.log(installHint(["python3-nbclient"], { apt: false, root: false }));
 * ```
 */
export function installHint(packages: readonly string[], options: { apt: boolean; root: boolean }): string {
  if (options.apt) {
    const sudo = options.root ? "" : "sudo ";
    return `${sudo}apt-get install -y --no-install-recommends ${packages.join(" ")}`;
  }
  const pip = packages.includes("jupyter-notebook") ? [...PIP_PACKAGES, "notebook"] : PIP_PACKAGES;
  return `pip install ${pip.join(" ")}`;
}

/** What {@linkcode missingPackages} is told was found, and what is wanted. */
export interface HavePackages {
  /** Whether a Python with nbclient was found. */
  executor: boolean;
  /** Whether that Python also has the Notebook server. */
  notebook: boolean;
  /** Whether libopenblas0 is installed. */
  openblas: boolean;
  /** Whether libdnnl2 is installed; default true (not wanted). */
  dnnl?: boolean;
  /** Whether Debian's PyTorch is installed, when it is required; leave it out when it is not. */
  torch?: boolean;
  /** Whether mesa-vulkan-drivers is installed; leave it out when it is not wanted. */
  vulkan?: boolean;
  /** Whether mesa-vulkan-drivers is required (the webgpu tests) rather than optional. Default false. */
  vulkanRequired?: boolean;
  /** Whether the Notebook server is wanted. */
  notebookUI: boolean;
  /** Whether chromium is installed; leave it out when chromium is not wanted. */
  chromium?: boolean;
  /** Whether chromium is required (the browser tests) rather than optional. Default false. */
  chromiumRequired?: boolean;
}

/**
 * The Debian packages still needed, given what was found.
 *
 * @example
 * ```ts
 * import { missingPackages } from "./setup.ts";
 * console.log(missingPackages({ executor: false, notebook: false, openblas: true, notebookUI: true }));
 * console.log(missingPackages({ executor: true, notebook: true, openblas: true, notebookUI: false, chromium: false }));
 * // The browser tests: both the Notebook server and chromium are required.
 * console.log(missingPackages({
 *   executor: true,
 *   notebook: false,
 *   openblas: true,
 *   notebookUI: true,
 *   chromium: false,
 *   chromiumRequired: true,
 * })); // { required: ["jupyter-notebook", "chromium"], optional: [] }
 * // The twin test needs PyTorch; oneDNN is optional.
 * console.log(missingPackages({ executor: true, notebook: true, openblas: true, notebookUI: false, dnnl: false, torch: false }));
 * // { required: ["python3-torch", "libopenblas0"], optional: ["libdnnl2"] }
 * // Mesa's Vulkan drivers: optional, required by the webgpu tests.
 * console.log(missingPackages({ executor: true, notebook: true, openblas: true, notebookUI: false, vulkan: false }));
 * // { required: [], optional: ["mesa-vulkan-drivers"] }
 * ```
 */
export function missingPackages(have: HavePackages): { required: string[]; optional: string[] } {
  const chromium = have.chromium === false ? BROWSER_PACKAGES : [];
  const vulkan = have.vulkan === false ? WEBGPU_PACKAGES : [];
  const required = [
    ...(have.executor ? [] : EXECUTOR_PACKAGES),
    ...(have.notebookUI && !have.notebook ? NOTEBOOK_PACKAGES : []),
    ...(have.chromiumRequired ? chromium : []),
    ...(have.torch === false ? TORCH_PACKAGES : []),
    ...(have.vulkanRequired ? vulkan : []),
  ];
  const optional = [
    ...(have.openblas ? [] : BLAS_PACKAGES),
    ...(have.dnnl === false ? DNNL_PACKAGES : []),
    ...(have.chromiumRequired ? [] : chromium),
    ...(have.vulkanRequired ? [] : vulkan),
  ].filter((p) => !required.includes(p));
  return { required, optional };
}

const LIB_DIRS = [
  "/usr/lib/x86_64-linux-gnu",
  "/usr/lib/aarch64-linux-gnu",
  "/usr/lib64",
  "/usr/lib",
  "/usr/local/lib",
];

/**
 * Whether `libopenblas.so.0` is in a usual library folder (Linux only).
 *
 * @example
 * ```ts
 * import { hasOpenblas } from "./setup.ts";
 * console.log(typeof hasOpenblas());
 * ```
 */
export function hasOpenblas(): boolean {
  return hasLibrary("libopenblas.so.0");
}

/** Whether the shared library `file` is in a usual library folder (Linux only; elsewhere assumed present). */
function hasLibrary(file: string): boolean {
  if (Deno.build.os !== "linux") return true;
  return LIB_DIRS.some((dir) => existsSync(join(dir, file)));
}

/**
 * Whether oneDNN's `libdnnl.so.2` is in a usual library folder (Linux only).
 *
 * @example
 * ```ts
 * import { hasDnnl } from "./setup.ts";
 * console.log(typeof hasDnnl());
 * ```
 */
export function hasDnnl(): boolean {
  return hasLibrary("libdnnl.so.2");
}

/**
 * Whether Debian's PyTorch is installed for the system python3 (its package folder; importing torch takes seconds).
 *
 * @example
 * ```ts
 * import { hasTorch } from "./setup.ts";
 * console.log(typeof hasTorch());
 * ```
 */
export function hasTorch(): boolean {
  return existsSync("/usr/lib/python3/dist-packages/torch/__init__.py");
}

/**
 * Whether Mesa's software Vulkan driver, lavapipe, is installed with a Vulkan loader (Linux only; elsewhere assumed
 * present): its manifest `lvp_icd.<arch>.json` in `/usr/share/vulkan/icd.d` and `libvulkan.so.1`.
 *
 * @example
 * ```ts
 * import { hasLavapipe } from "./setup.ts";
 * console.log(typeof hasLavapipe());
 * ```
 */
export function hasLavapipe(): boolean {
  if (Deno.build.os !== "linux") return true;
  let manifests: string[] = [];
  try {
    manifests = [...Deno.readDirSync("/usr/share/vulkan/icd.d")].map((e) => e.name);
  } catch {
    return false;
  }
  return manifests.some((name) => /^lvp_icd\..*\.json$/.test(name)) && hasLibrary("libvulkan.so.1");
}

/**
 * Whether Debian's chromium is installed (`/usr/bin/chromium`).
 *
 * @example
 * ```ts
 * import { hasChromium } from "./setup.ts";
 * console.log(typeof hasChromium());
 * ```
 */
export function hasChromium(): boolean {
  return existsSync("/usr/bin/chromium");
}

function isRoot(): boolean {
  return Deno.uid?.() === 0;
}

function hasApt(): boolean {
  return existsSync("/usr/bin/apt-get");
}

async function capture(
  command: string,
  args: string[],
  env?: Record<string, string>,
): Promise<{ success: boolean; code: number; output: string }> {
  const out = await new Deno.Command(command, { args, env, cwd: ROOT, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const decoder = new TextDecoder();
  return { success: out.success, code: out.code, output: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

function tail(text: string, lines = 15): string {
  return text.trim().split("\n").slice(-lines).map((l) => `    ${l}`).join("\n");
}

async function aptInstall(packages: string[], log: (line: string) => void): Promise<{ ok: boolean; output: string }> {
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const policy = await capture("apt-cache", ["policy", ...packages]);
  const lacksCandidate = !policy.success || /Candidate: \(none\)/.test(policy.output) ||
    packages.some((p) => !policy.output.includes(`${p}:`));
  if (lacksCandidate) {
    log("setup: apt-get update ...");
    const update = await capture("apt-get", ["update"], env);
    if (!update.success) return { ok: false, output: update.output };
  }
  log(`setup: installing from Debian: ${packages.join(" ")} ...`);
  const install = await capture("apt-get", ["install", "-y", "--no-install-recommends", ...packages], env);
  return { ok: install.success, output: install.output };
}

let optionalHintShown = false;

/**
 * Makes the machine ready; see the module doc. Throws an Error naming the
 * one command to run when Jupyter is missing and cannot be installed here.
 *
 * @example
 * ```ts
 * import { setup } from "./setup.ts";
 * // Installs what is missing (apt, kernelspec, npm); this only shows the call.
 * const prepare = () => setup({ notebookUI: false });
 * console.log(typeof prepare);
 * ```
 */
export async function setup(options: SetupOptions = {}): Promise<SetupReport> {
  const log = options.log ?? console.log;
  const started = performance.now();
  const browserTests = options.browserTests ?? false;
  const torchTests = options.torchTests ?? false;
  const webgpuTests = options.webgpuTests ?? false;
  const notebookUI = (options.notebookUI ?? false) || browserTests;
  const installed: string[] = [];

  let search = await findPython({ needNotebook: notebookUI });
  const executor = search.found !== undefined || search.withoutNotebook !== undefined;
  let openblas = hasOpenblas();
  let dnnl = hasDnnl();
  let torch = hasTorch();
  let vulkan = hasLavapipe();
  const browser = (options.browser ?? true) || browserTests;
  let chromium = hasChromium();
  const need = missingPackages({
    executor,
    notebook: search.found !== undefined,
    openblas,
    dnnl,
    ...(torchTests ? { torch } : {}),
    vulkan,
    vulkanRequired: webgpuTests,
    notebookUI,
    ...(browser ? { chromium } : {}),
    chromiumRequired: browserTests,
  });
  if (need.required.length > 0 || need.optional.length > 0) {
    const root = isRoot();
    const apt = hasApt();
    if (root && apt) {
      const packages = [...need.required, ...need.optional];
      const result = await aptInstall(packages, log);
      if (result.ok) {
        installed.push(...packages);
      } else if (need.required.length > 0) {
        throw new Error(`setup: apt-get could not install ${packages.join(" ")}:\n${tail(result.output)}`);
      } else {
        log(`setup: could not install ${packages.join(" ")} (optional, continuing):\n${tail(result.output, 5)}`);
      }
      search = await findPython({ needNotebook: notebookUI });
      openblas = hasOpenblas();
      dnnl = hasDnnl();
      torch = hasTorch();
      vulkan = hasLavapipe();
      chromium = hasChromium();
    } else if (need.optional.length > 0 && need.required.length === 0 && !optionalHintShown) {
      optionalHintShown = true;
      const names: Record<string, string> = {
        chromium: "chromium (to check the report)",
        libopenblas0: "OpenBLAS",
        libdnnl2: "oneDNN (faster blas kernels)",
        "mesa-vulkan-drivers": "Mesa's Vulkan drivers (the webgpu backend without a GPU)",
      };
      const what = need.optional.map((p) => names[p] ?? p);
      log(`setup: optional: install ${what.join(" and ")} with \`${installHint(need.optional, { apt, root })}\``);
    }
    const forTests = browserTests ? " (the browser tests need it; `deno task test --no-browser` skips them)" : "";
    if (!search.found) {
      const what = notebookUI ? "the Jupyter Notebook server" : "Jupyter's nbclient";
      const pythonPackages = need.required.filter((p) => !BROWSER_PACKAGES.includes(p));
      throw new Error(
        `setup: no Python with ${what}${forTests} (tried: ${search.rejected.join("; ")}). ` +
          `Install it with: ${installHint(need.required, { apt, root })}` +
          (apt ? ` (or, without Debian's packages: ${installHint(pythonPackages, { apt: false, root })})` : "") +
          "; or set ATTNLAB_PYTHON to an interpreter that has it",
      );
    }
    if (torchTests && !torch) {
      throw new Error(
        "setup: no PyTorch for /usr/bin/python3 (tests/torch_twin_test.ts holds the benchmark's PyTorch twin equal " +
          `to the model). Install it with: ${
            apt
              ? installHint([...TORCH_PACKAGES], { apt, root })
              : "your system's package manager (Debian: python3-torch)"
          }`,
      );
    }
    if (webgpuTests && !vulkan) {
      throw new Error(
        "setup: no software Vulkan driver (tests/webgpu_test.ts runs the webgpu backend on Mesa's lavapipe). " +
          `Install it with: ${
            apt
              ? installHint([...WEBGPU_PACKAGES], { apt, root })
              : "your system's package manager (Debian: mesa-vulkan-drivers)"
          }`,
      );
    }
    if (browserTests && !chromium) {
      throw new Error(
        `setup: no chromium at /usr/bin/chromium${forTests}. Install it with: ` +
          (apt ? installHint(BROWSER_PACKAGES, { apt, root }) : "your system's package manager (Debian: chromium)"),
      );
    }
  }
  const python = search.found!;

  const kernel = kernelspecStatus();
  if (kernel.state !== "ok") {
    log(`setup: registering the Deno Jupyter kernel (${kernel.state}${kernel.deno ? `: ${kernel.deno}` : ""}) ...`);
    const result = await capture(Deno.execPath(), ["jupyter", "--install", "--force"]);
    if (!result.success) throw new Error(`setup: \`deno jupyter --install\` failed:\n${tail(result.output)}`);
    const written = join(denoJupyterDataDir(), "kernels", "deno");
    if (resolve(written) !== resolve(kernel.dir)) cpSync(written, kernel.dir, { recursive: true });
    const after = kernelspecStatus();
    if (after.state !== "ok") throw new Error(`setup: the kernelspec in ${after.dir} is still ${after.state}`);
  }

  if (!options.skipNpm) {
    const npmStarted = performance.now();
    const result = await capture(Deno.execPath(), ["install"]);
    if (!result.success) throw new Error(`setup: \`deno install\` failed:\n${tail(result.output)}`);
    const npmSeconds = (performance.now() - npmStarted) / 1000;
    if (npmSeconds > 5) log(`setup: npm packages installed in ${npmSeconds.toFixed(1)} s`);
  }

  const seconds = (performance.now() - started) / 1000;
  log(
    `setup: ready in ${seconds.toFixed(1)} s (python ${python.executable}, nbclient ${python.nbclient}` +
      `${python.notebook ? `, notebook ${python.notebook}` : ""}; kernelspec ${kernel.dir})`,
  );
  return {
    python,
    kernelspec: join(jupyterDataDir(), "kernels", "deno"),
    openblas,
    dnnl,
    torch,
    vulkan,
    chromium,
    installed,
    seconds,
  };
}

const FLAGS = {
  notebook: { type: "boolean", description: "also install the Jupyter Notebook server (browser UI)" },
  "skip-npm": { type: "boolean", description: "do not run `deno install`" },
  help: { type: "boolean", description: "show this help" },
} as const;

/**
 * The task's entry point; returns the exit status.
 *
 * @example
 * ```ts
 * import { main } from "./setup.ts";
 * console.log(await main(["--help"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const { values } = parseFlags(args, FLAGS, { command: "setup" });
  if (values.help) {
    console.log(
      formatHelp("deno task setup [flags]", "Installs what the notebooks need (see lib/tasks/setup.ts).", FLAGS),
    );
    return 0;
  }
  await setup({ notebookUI: Boolean(values.notebook), skipNpm: Boolean(values["skip-npm"]) });
  return 0;
}

if (import.meta.main) await runMain(main);
