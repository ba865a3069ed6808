/**
 * Helpers for the browser tests: the figure outputs a saved notebook holds,
 * headless chromium (Debian's, driven by playwright-core), and what the
 * classic Jupyter Notebook page shows for a notebook: rendered images per
 * cell, and the outcome of running every cell.
 */

import type { BrowserContext, Page } from "playwright-core";
import { CHROMIUM_FLAGS, CHROMIUM_INSTALL_HINT, CHROMIUM_PATH, chromiumAvailable } from "../../lib/report/verify.ts";

/** The MIME types that make an output a figure. */
export const FIGURE_TYPES: readonly string[] = ["image/svg+xml", "image/png"];

/** Figure outputs of one cell of a saved notebook. */
export interface CellFigures {
  /** The cell, 1-based over all cells (markdown included), as Jupyter shows them. */
  cell: number;
  /** Outputs whose data holds image/svg+xml or image/png. */
  figures: number;
}

/** The figure outputs in a parsed `.ipynb`, one entry per cell that has any. */
export function figureOutputs(notebook: unknown, what = "notebook"): CellFigures[] {
  const cells = (notebook as { cells?: unknown })?.cells;
  if (!Array.isArray(cells)) throw new TypeError(`${what}: expected a notebook object with a cells array`);
  const found: CellFigures[] = [];
  cells.forEach((cell, index) => {
    const outputs: { data?: Record<string, unknown> }[] = Array.isArray(cell?.outputs) ? cell.outputs : [];
    const figures = outputs.filter((o) => FIGURE_TYPES.some((type) => o?.data?.[type] !== undefined)).length;
    if (figures > 0) found.push({ cell: index + 1, figures });
  });
  return found;
}

/**
 * Headless chromium with a fresh profile; throws naming the install command
 * when chromium is missing. `close` also removes the profile.
 */
export async function launchChromium(): Promise<{ context: BrowserContext; close: () => Promise<void> }> {
  if (!chromiumAvailable()) {
    throw new Error(`no chromium at ${CHROMIUM_PATH}; install it with: ${CHROMIUM_INSTALL_HINT}`);
  }
  const { chromium } = await import("playwright-core");
  const profile = await Deno.makeTempDir({ prefix: "attnlab_chromium_" });
  // A persistent context on a fresh temporary folder is chromium's --user-data-dir.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    args: [...CHROMIUM_FLAGS],
    headless: true,
    timeout: 60_000,
  });
  return {
    context,
    close: async () => {
      await context.close().catch(() => {});
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    },
  };
}

/** Options for {@linkcode openNotebook}. */
export interface OpenNotebookOptions {
  /** Refuse the page's request to start a kernel, so nothing can run. Default false. */
  noKernel?: boolean;
  /** Milliseconds to wait for the notebook to load (and its kernel, unless `noKernel`). Default 90000. */
  timeoutMs?: number;
}

/** Opens a notebook page and waits until the notebook is loaded (and its kernel connected, unless `noKernel`). */
export async function openNotebook(
  context: BrowserContext,
  url: string,
  options: OpenNotebookOptions = {},
): Promise<{ page: Page; pageErrors: string[] }> {
  const timeout = options.timeoutMs ?? 90_000;
  const page = await context.newPage();
  const pageErrors: string[] = [];
  page.on("pageerror", (err) => pageErrors.push(err.message));
  if (options.noKernel) {
    // Creating a session is what starts a kernel; without it the page only shows the saved outputs.
    await page.route(
      "**/api/sessions",
      (route) => route.request().method() === "POST" ? route.abort() : route.fallback(),
    );
  }
  await page.goto(url, { waitUntil: "load", timeout });
  const ready = options.noKernel
    ? "window.Jupyter?.notebook?._fully_loaded === true"
    : "window.Jupyter?.notebook?._fully_loaded === true && Jupyter.notebook.kernel?.is_connected() === true";
  await page.waitForFunction(ready, null, { timeout, polling: 200 });
  return { page, pageErrors };
}

/** What the page shows for one cell. */
export interface CellImages {
  /** 1-based over all cells. */
  cell: number;
  /** `<img>` elements in the cell's output area that loaded with a natural size above zero. */
  images: number;
  /** `<img>` elements in the output area that did not load. */
  broken: number;
}

/** Whether the page's notebook is trusted (Jupyter renders SVG and JavaScript outputs only then). */
export function isTrusted(page: Page): Promise<boolean> {
  return page.evaluate<boolean>("Jupyter.notebook.trusted === true");
}

/** Waits until every image in an output area has finished loading, then counts them per cell. */
export async function renderedImages(page: Page, timeoutMs = 30_000): Promise<CellImages[]> {
  await page.waitForFunction(
    `[...document.querySelectorAll(".output_area img")].every((img) => img.complete)`,
    null,
    { timeout: timeoutMs, polling: 100 },
  );
  // Runs in the page; a string keeps the browser's DOM types out of Deno's type check.
  return await page.evaluate<CellImages[]>(`Jupyter.notebook.get_cells().map((cell, index) => {
    const imgs = cell.output_area ? [...cell.output_area.element[0].querySelectorAll("img")] : [];
    const loaded = imgs.filter((img) => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0);
    return { cell: index + 1, images: loaded.length, broken: imgs.length - loaded.length };
  })`);
}

/**
 * Compares the figure outputs of a saved notebook with the images the page
 * rendered; `undefined` when every figure output rendered, else one line:
 * `04_attention_heatmaps: 3 of 7 figure outputs rendered (no image for ...)`.
 */
export function compareFigures(name: string, expected: CellFigures[], seen: CellImages[]): string | undefined {
  const images = new Map(seen.map((c) => [c.cell, c.images]));
  let total = 0;
  let rendered = 0;
  const missing: string[] = [];
  for (const { cell, figures } of expected) {
    // An image the output does not hold (none today) must not make up for a missing one.
    const shown = Math.min(figures, images.get(cell) ?? 0);
    total += figures;
    rendered += shown;
    if (shown < figures) missing.push(figures > 1 ? `cell ${cell} (${shown} of ${figures})` : `cell ${cell}`);
  }
  if (rendered === total) return undefined;
  return `${name}: ${rendered} of ${total} figure outputs rendered (no image for ${missing.join(", ")}); ` +
    "an untrusted notebook drops image/svg+xml, so each figure output needs an image/png beside it";
}

/** The outcome of one code cell after Run All. */
export interface CellRun {
  /** 1-based over all cells. */
  cell: number;
  /** The first non-blank source line. */
  firstLine: string;
  /** The execution count Jupyter shows, or null when the cell did not run. */
  executionCount: number | null;
  /** `ename: evalue` of each error output. */
  errors: string[];
  /** Text of the cell's stream and text outputs (for spotting errors printed rather than raised). */
  text: string;
}

/** What the page shows after Run All. */
export interface RunAllResult {
  cells: CellRun[];
  /** `<img>` with a natural size above zero, or `<svg>` with a non-empty box, in output areas. */
  figures: number;
  /** `<table>` elements with at least one row, in output areas. */
  tables: number;
  /** `.output_error` elements on the page. */
  errorElements: number;
  /** Seconds from Run All until the kernel went idle with no cell running. */
  seconds: number;
}

/**
 * Clears the saved outputs, runs every cell (Cell > Run All) and waits until
 * no cell is running and the kernel is idle; then reports what rendered.
 */
export async function runAllCells(page: Page, timeoutMs = 300_000): Promise<RunAllResult> {
  const started = performance.now();
  await page.evaluate("Jupyter.notebook.clear_all_output(); Jupyter.notebook.execute_all_cells();");
  // A cell is "running" from the moment it is queued until its reply; the kernel icon shows idle between cells.
  await page.waitForFunction(
    `Jupyter.notebook.get_cells().every((c) => !c.element[0].classList.contains("running")) &&
      document.querySelector("#kernel_indicator_icon")?.classList.contains("kernel_idle_icon")`,
    null,
    { timeout: timeoutMs, polling: 250 },
  );
  const seconds = (performance.now() - started) / 1000;
  await page.waitForFunction(
    `[...document.querySelectorAll(".output_area img")].every((img) => img.complete)`,
    null,
    { timeout: 30_000, polling: 100 },
  );
  const result = await page.evaluate<Omit<RunAllResult, "seconds">>(`(() => {
    const cells = Jupyter.notebook.get_cells().map((cell, index) => {
      if (cell.cell_type !== "code") return undefined;
      const outputs = cell.output_area.outputs;
      const first = cell.get_text().split("\\n").find((line) => line.trim() !== "") ?? "";
      return {
        cell: index + 1,
        firstLine: first.trim(),
        executionCount: typeof cell.input_prompt_number === "number" ? cell.input_prompt_number : null,
        errors: outputs.filter((o) => o.output_type === "error").map((o) => o.ename + ": " + o.evalue),
        text: outputs.map((o) => o.text ?? (o.data && o.data["text/plain"]) ?? "").join("\\n"),
      };
    }).filter((c) => c !== undefined);
    const areas = [...document.querySelectorAll(".output_area")];
    const images = areas.flatMap((a) => [...a.querySelectorAll("img")]).filter((img) => img.naturalWidth > 0);
    const svgs = areas.flatMap((a) => [...a.querySelectorAll("svg")]).filter((svg) => {
      // Count outermost SVGs only: a figure may nest more.
      if (svg.parentElement?.closest("svg")) return false;
      const box = svg.getBoundingClientRect();
      return box.width > 0 && box.height > 0;
    });
    const tables = areas.flatMap((a) => [...a.querySelectorAll("table")]).filter((t) => t.rows.length > 0);
    return {
      cells,
      figures: images.length + svgs.length,
      tables: tables.length,
      errorElements: document.querySelectorAll(".output_error").length,
    };
  })()`);
  return { ...result, seconds };
}

/** An error printed to a stream rather than raised: a Python traceback or a JavaScript `XxxError:` line. */
const PRINTED_ERROR = /Traceback \(most recent call last\)|^\s*(?:error: )?(?:Uncaught )?(?:[A-Z]\w*)?Error: /m;

/**
 * Problems in a Run All result, one line each, naming the cell and the error
 * text; empty when every code cell ran without error.
 */
export function runProblems(name: string, run: RunAllResult): string[] {
  const problems: string[] = [];
  for (const cell of run.cells) {
    const where = `${name}: cell ${cell.cell} (\`${cell.firstLine.slice(0, 80)}\`)`;
    for (const error of cell.errors) problems.push(`${where} errored: ${error}`);
    const printed = cell.text.match(PRINTED_ERROR);
    if (cell.errors.length === 0 && printed) {
      const line = cell.text.slice(printed.index).trim().split("\n")[0];
      problems.push(`${where} printed an error: ${line}`);
    }
    if (cell.executionCount === null && cell.errors.length === 0) {
      problems.push(`${where} did not run (an earlier cell failed, or the kernel stopped)`);
    }
  }
  if (run.errorElements > 0 && problems.length === 0) {
    problems.push(`${name}: ${run.errorElements} error output(s) on the page`);
  }
  return problems;
}
