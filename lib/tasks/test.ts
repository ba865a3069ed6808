/**
 * `deno task test`: setup, unit and doc tests (the browser tests in
 * `tests/browser/` among them), then every notebook in quick mode; ends with
 * the line `test: N passed, M failed`.
 *
 * @module
 */

import { formatSummary, listNotebooks, runNotebooks } from "../notebook/runner.ts";
import { ROOT } from "../notebook/paths.ts";
import { setup } from "./setup.ts";
import { formatHelp, parseFlags, parseSeconds, runMain } from "./cli.ts";

/** The browser tests: notebooks opened in the Jupyter Notebook server in headless chromium. */
export const BROWSER_TESTS = "tests/browser/";

const FLAGS = {
  filter: {
    type: "string",
    value: "PATTERN",
    description: "run only unit tests whose name matches (deno test --filter)",
  },
  only: {
    type: "string",
    multiple: true,
    value: "PATTERN",
    description: "run only notebooks whose file name starts with or contains PATTERN",
  },
  "no-notebooks": { type: "boolean", description: "skip the notebooks" },
  "no-unit": { type: "boolean", description: "skip the unit and doc tests (the browser tests too)" },
  "no-browser": {
    type: "boolean",
    description: `skip the browser tests (${BROWSER_TESTS}: Jupyter Notebook in headless chromium)`,
  },
  "fail-fast": { type: "boolean", description: "stop at the first failing test or notebook" },
  "cell-timeout": { type: "string", value: "SECONDS", description: "seconds one notebook cell may run (default 600)" },
  timeout: { type: "string", value: "SECONDS", description: "seconds one notebook may run (default 1800)" },
  help: { type: "boolean", description: "show this help" },
} as const;

const DESCRIPTION = `Runs setup, then \`deno test -A --doc\` over tests/ and lib/ (or the PATHS given),
then every notebooks/NN_*.ipynb in quick mode (ATTNLAB_QUICK=1, on temporary copies).
The tests in ${BROWSER_TESTS} open notebooks in the Jupyter Notebook server in headless
chromium, so setup then also installs jupyter-notebook and chromium (apt, as root;
otherwise it names the command); --no-browser skips them.
With --filter or PATHS the notebooks are skipped unless --only is given too.
Arguments after -- go to \`deno test\` unchanged. The last line is \`test: N passed, M failed\`.`;

/** Counts read from Deno's test summary line. */
export interface DenoTestCounts {
  passed: number;
  failed: number;
  /** Whether a summary line was found at all. */
  found: boolean;
}

/**
 * Reads the counts from `deno test` output (its `ok | X passed | Y failed` line).
 *
 * @example
 * ```ts
 * import { parseDenoTestSummary } from "./test.ts";
 * console.log(parseDenoTestSummary("FAILED | 5 passed (2 steps) | 1 failed (12ms)"));
 * ```
 */
export function parseDenoTestSummary(output: string): DenoTestCounts {
  // deno-lint-ignore no-control-regex
  const plain = output.replace(/\x1b\[[0-9;]*m/g, "");
  const matches = [...plain.matchAll(/^(?:ok|FAILED) \| (\d+) passed[^|]*\| (\d+) failed/gm)];
  const last = matches.at(-1);
  if (!last) return { passed: 0, failed: 0, found: false };
  return { passed: Number(last[1]), failed: Number(last[2]), found: true };
}

/** What {@linkcode buildDenoTestArgs} needs. */
export interface DenoTestArgsOptions {
  /** Test paths; default `tests/` and `lib/`. */
  paths?: readonly string[];
  filter?: string;
  failFast?: boolean;
  /** Paths for `deno test --ignore`. */
  ignore?: readonly string[];
  /** Passed through unchanged. */
  extra?: readonly string[];
}

/**
 * The arguments for `deno` that run the unit tests and the JSDoc examples in one go.
 *
 * @example
 * ```ts
 * import { buildDenoTestArgs } from "./test.ts";
 * console.log(buildDenoTestArgs({ filter: "attention" }).join(" "));
 * console.log(buildDenoTestArgs({ ignore: ["tests/browser/"] }).join(" ")); // test -A --doc --ignore=tests/browser/ tests/ lib/
 * ```
 */
export function buildDenoTestArgs(options: DenoTestArgsOptions = {}): string[] {
  const args = ["test", "-A", "--doc"];
  if (options.filter) args.push("--filter", options.filter);
  if (options.failFast) args.push("--fail-fast");
  if (options.ignore && options.ignore.length > 0) args.push(`--ignore=${options.ignore.join(",")}`);
  args.push(...(options.extra ?? []));
  const paths = options.paths && options.paths.length > 0 ? options.paths : ["tests/", "lib/"];
  args.push(...paths);
  return args;
}

/**
 * The closing line, in the plain `N passed, M failed` form CI reads.
 *
 * @example
 * ```ts
 * import { formatTotals } from "./test.ts";
 * const line = formatTotals(12, 0);
 * console.log(line.length);
 * ```
 */
export function formatTotals(passed: number, failed: number): string {
  return `test: ${passed} passed, ${failed} failed`;
}

async function tee(stream: ReadableStream<Uint8Array>, sink: { writeSync(p: Uint8Array): number }): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream) {
    let written = 0;
    while (written < chunk.length) written += sink.writeSync(chunk.subarray(written));
    text += decoder.decode(chunk, { stream: true });
  }
  return text + decoder.decode();
}

async function runDenoTests(args: string[]): Promise<DenoTestCounts & { success: boolean }> {
  console.log(`test: deno ${args.join(" ")}`);
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const [status, out, err] = await Promise.all([
    child.status,
    tee(child.stdout, Deno.stdout),
    tee(child.stderr, Deno.stderr),
  ]);
  return { ...parseDenoTestSummary(out + "\n" + err), success: status.success };
}

/**
 * The task's entry point; returns the exit status.
 *
 * @example
 * ```ts
 * import { main } from "./test.ts";
 * console.log(await main(["--help"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const { values, positionals, rest } = parseFlags(args, FLAGS, { command: "test", positionals: true });
  if (values.help) {
    console.log(formatHelp("deno task test [flags] [PATHS...] [-- deno test args]", DESCRIPTION, FLAGS));
    return 0;
  }
  const cellTimeoutSeconds = values["cell-timeout"]
    ? parseSeconds(values["cell-timeout"] as string, "--cell-timeout")
    : 600;
  const timeoutSeconds = values.timeout ? parseSeconds(values.timeout as string, "--timeout") : 1800;
  const only = (values.only as string[] | undefined) ?? [];
  const narrowed = Boolean(values.filter) || positionals.length > 0;
  const runNotebooksToo = !values["no-notebooks"] && (only.length > 0 || !narrowed);
  const failFast = Boolean(values["fail-fast"]);
  const noBrowser = Boolean(values["no-browser"]);
  // Setup installs the browser tests' needs only when they can run: not skipped, and not narrowed away by PATHS.
  const browserTests = !noBrowser && !values["no-unit"] &&
    (positionals.length === 0 || positionals.some((p) => p.includes("browser")));
  // PyTorch likewise: only when a test that needs it is among those run (the twin's, tests/torch_twin_test.ts, and the
  // benchmarks' against it, tests/bench*_test.ts).
  const torchTests = !values["no-unit"] &&
    (positionals.length === 0 || positionals.some((p) => p.includes("torch") || p.includes("bench")));
  // tests/webgpu_test.ts needs Mesa's software Vulkan driver (lavapipe) for its adapter.
  const webgpuTests = !values["no-unit"] && (positionals.length === 0 || positionals.some((p) => p.includes("webgpu")));

  let passed = 0;
  let failed = 0;
  try {
    await setup({ browserTests, torchTests, webgpuTests });
  } catch (err) {
    console.error(`error: ${(err as Error).message}`);
    console.log(formatTotals(0, 1));
    return 1;
  }

  if (!values["no-unit"]) {
    const counts = await runDenoTests(buildDenoTestArgs({
      paths: positionals,
      filter: values.filter as string | undefined,
      failFast,
      ignore: noBrowser ? [BROWSER_TESTS] : [],
      extra: rest,
    }));
    passed += counts.passed;
    failed += counts.failed;
    if (!counts.success && counts.failed === 0) {
      console.error("test: deno test failed before reporting results (type errors or bad arguments; see above)");
      failed += 1;
    }
  }

  if (runNotebooksToo && !(failFast && failed > 0)) {
    try {
      const notebooks = listNotebooks({ only });
      if (notebooks.length === 0) {
        console.log("test: no notebooks in notebooks/");
      } else {
        const results = await runNotebooks(notebooks, { mode: "quick", cellTimeoutSeconds, timeoutSeconds, failFast });
        console.log(formatSummary(results));
        passed += results.filter((r) => r.status === "ok").length;
        failed += results.filter((r) => r.status === "failed").length;
      }
    } catch (err) {
      console.error(`error: ${(err as Error).message}`);
      failed += 1;
    }
  } else if (!values["no-notebooks"] && narrowed) {
    console.log("test: notebooks skipped (--filter or PATHS given; add --only PATTERN to run some)");
  }

  console.log(formatTotals(passed, failed));
  return failed > 0 ? 1 : 0;
}

if (import.meta.main) await runMain(main);
