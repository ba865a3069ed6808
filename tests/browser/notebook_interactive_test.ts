/**
 * The interactive path: the Notebook server started as `deno task notebook`
 * starts it (`startNotebookServer`), a temporary copy of notebooks/00_tour.ipynb
 * opened in headless chromium, every cell run with the Deno kernel in quick
 * mode (Cell > Run All), then: a figure rendered, a table rendered, no cell
 * errored. A fixture that throws in cell 2 shows the check can fail.
 *
 * The copies live in a temporary folder while the kernels run in notebooks/
 * (so `../lib/...` imports resolve, as in the runner); figures go to a
 * temporary folder, the trust database is in memory.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { NOTEBOOKS_DIR, ROOT } from "../../lib/notebook/paths.ts";
import { startNotebookServer } from "../../lib/notebook/server.ts";
import { launchChromium, openNotebook, runAllCells, runProblems } from "./_notebook_page.ts";

const TOUR = join(NOTEBOOKS_DIR, "00_tour.ipynb");
const FAILS = join(ROOT, "tests", "fixtures", "fails_in_cell_2.ipynb");

Deno.test({
  name: "browser: 00_tour runs in the Notebook server in quick mode: a figure and a table render, no cell errors",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const served = await Deno.makeTempDir({ prefix: "attnlab_interactive_" });
    const figures = await Deno.makeTempDir({ prefix: "attnlab_interactive_figures_" });
    const runtime = await Deno.makeTempDir({ prefix: "attnlab_interactive_runtime_" });
    await Deno.copyFile(TOUR, join(served, "00_tour.ipynb"));
    await Deno.copyFile(FAILS, join(served, "fails_in_cell_2.ipynb"));
    // A loaded machine starts Jupyter slowly (it took over 60 s beside two training workers).
    const server = await startNotebookServer({
      startupTimeoutSeconds: 300,
      dir: served,
      kernelDir: NOTEBOOKS_DIR,
      env: { ATTNLAB_QUICK: "1", ATTNLAB_FIGURES_DIR: figures, JUPYTER_RUNTIME_DIR: runtime, NO_COLOR: "1" },
      extra: ["--NotebookNotary.db_file=:memory:"],
    });
    const browser = await launchChromium().catch(async (err) => {
      await server.stop();
      throw err;
    });
    try {
      await t.step("00_tour", async () => {
        const { page, pageErrors } = await openNotebook(browser.context, server.notebookUrl("00_tour.ipynb"));
        try {
          const run = await runAllCells(page);
          console.log(`00_tour: ran ${run.cells.length} code cells in ${run.seconds.toFixed(1)} s`);
          const problems = runProblems("00_tour", run);
          assert.deepEqual(problems, [], `00_tour has failing cells:\n${problems.join("\n")}`);
          assert.ok(run.figures >= 1, `00_tour: no figure rendered (no <img> or <svg> in any output area)`);
          assert.ok(run.tables >= 1, `00_tour: no table rendered (no <table> in any output area)`);
          assert.deepEqual(pageErrors, [], "00_tour: the page threw");
        } finally {
          await page.close();
        }
        const written = [...Deno.readDirSync(figures)].map((e) => e.name);
        assert.ok(written.length > 0, `00_tour wrote no figure to ATTNLAB_FIGURES_DIR (${figures})`);
      });

      await t.step("the check catches a cell that throws, naming the cell and the error", async () => {
        const { page } = await openNotebook(browser.context, server.notebookUrl("fails_in_cell_2.ipynb"));
        try {
          const run = await runAllCells(page);
          assert.deepEqual(runProblems("fails_in_cell_2", run), [
            "fails_in_cell_2: cell 2 (`throw new RangeError(`fixture failure in cell 2 (answer ${answer})`);`) errored: " +
            "RangeError: fixture failure in cell 2 (answer 42)",
          ]);
          // Deno's kernel ignores stop_on_error, so Run All goes on past the error: cell 3 still runs.
          assert.deepEqual(run.cells.map((c) => c.executionCount), [1, 2, 3]);
          assert.equal(run.errorElements, 1, "the error output is on the page");
          // The fixture draws nothing, so the counters that pass 00_tour read zero here.
          assert.equal(run.figures, 0);
          assert.equal(run.tables, 0);
        } finally {
          await page.close();
        }
      });
    } finally {
      await browser.close();
      await server.stop();
      for (const dir of [served, figures, runtime]) await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
