/**
 * Committed notebooks show their figures when opened: every notebooks/NN_*.ipynb
 * is opened in the Jupyter Notebook server in headless chromium, untrusted (a
 * fresh in-memory trust database) and without a kernel, and the images the
 * page renders are counted against the figure outputs saved in the file.
 *
 * The server serves temporary copies (checkpoints land there too), so no
 * tracked file is touched.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { Resvg } from "@resvg/resvg-js";
import { listNotebooks } from "../../lib/notebook/runner.ts";
import { startNotebookServer } from "../../lib/notebook/server.ts";
import {
  compareFigures,
  figureOutputs,
  isTrusted,
  launchChromium,
  openNotebook,
  renderedImages,
} from "./_notebook_page.ts";

const SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30" viewBox="0 0 40 30">` +
  `<rect width="40" height="30" fill="#3a6"/></svg>`;

/** A code cell with one execute_result whose data is `data`. */
function figureCell(id: string, data: Record<string, string>) {
  return {
    cell_type: "code",
    execution_count: 1,
    id,
    metadata: {},
    outputs: [{ output_type: "execute_result", execution_count: 1, metadata: {}, data }],
    source: ["figure()"],
  };
}

/**
 * A hand-made notebook: a markdown cell, then one figure with SVG and PNG
 * (cell 2), one with SVG only (cell 3), one with SVG and a PNG that does not
 * decode (cell 4), and a text output (cell 5).
 */
function fixtureNotebook(png: string) {
  const text = { "text/plain": "a figure" };
  return {
    cells: [
      { cell_type: "markdown", id: "md", metadata: {}, source: ["# fixture"] },
      figureCell("both", { "image/svg+xml": SVG, "image/png": png, ...text }),
      figureCell("svg-only", { "image/svg+xml": SVG, ...text }),
      figureCell("bad-png", { "image/svg+xml": SVG, "image/png": "iVBORw0KGgoAAAAN", ...text }),
      figureCell("text", { "text/plain": "no figure here" }),
    ],
    metadata: { kernelspec: { display_name: "Deno", language: "typescript", name: "deno" } },
    nbformat: 4,
    nbformat_minor: 5,
  };
}

Deno.test({
  name: "browser: committed notebooks render every figure output when opened untrusted, without running",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const notebooks = listNotebooks();
    assert.ok(notebooks.length > 0, "no notebooks/NN_*.ipynb found");
    const served = await Deno.makeTempDir({ prefix: "attnlab_view_" });
    const runtime = await Deno.makeTempDir({ prefix: "attnlab_view_runtime_" });
    for (const path of notebooks) await Deno.copyFile(path, join(served, basename(path)));
    const png = new Resvg(SVG).render().asPng().toString("base64");
    await Deno.writeTextFile(join(served, "fixture.ipynb"), JSON.stringify(fixtureNotebook(png)));

    // A loaded machine starts Jupyter slowly (it took over 60 s beside two training workers).
    const server = await startNotebookServer({
      startupTimeoutSeconds: 300,
      dir: served,
      // An empty trust database: nothing is trusted, as on a fresh clone.
      extra: ["--NotebookNotary.db_file=:memory:"],
      env: { JUPYTER_RUNTIME_DIR: runtime },
    });
    const browser = await launchChromium().catch(async (err) => {
      await server.stop();
      throw err;
    });
    try {
      const open = async (file: string) => {
        const { page, pageErrors } = await openNotebook(browser.context, server.notebookUrl(file), { noKernel: true });
        try {
          assert.equal(await isTrusted(page), false, `${file} opened trusted; the test needs an untrusted notebook`);
          return { seen: await renderedImages(page), pageErrors };
        } finally {
          await page.close();
        }
      };

      await t.step("the check counts a hand-made notebook: 1 of 3 figure outputs renders", async () => {
        const expected = figureOutputs(JSON.parse(await Deno.readTextFile(join(served, "fixture.ipynb"))));
        assert.deepEqual(expected, [{ cell: 2, figures: 1 }, { cell: 3, figures: 1 }, { cell: 4, figures: 1 }]);
        const { seen } = await open("fixture.ipynb");
        // Only the PNG decodes: the SVG is dropped untrusted, the bad PNG does not load.
        assert.deepEqual(seen.map((c) => [c.cell, c.images, c.broken]), [
          [1, 0, 0],
          [2, 1, 0],
          [3, 0, 0],
          [4, 0, 1],
          [5, 0, 0],
        ]);
        assert.equal(
          compareFigures("fixture", expected, seen),
          "fixture: 1 of 3 figure outputs rendered (no image for cell 3, cell 4); " +
            "an untrusted notebook drops image/svg+xml, so each figure output needs an image/png beside it",
        );
        assert.equal(compareFigures("fixture", expected.slice(0, 1), seen), undefined);
      });

      for (const path of notebooks) {
        const name = basename(path, ".ipynb");
        await t.step(name, async () => {
          const expected = figureOutputs(JSON.parse(readFileSync(path, "utf8")), name);
          const { seen, pageErrors } = await open(basename(path));
          assert.deepEqual(pageErrors, [], `${name}: the page threw`);
          const problem = compareFigures(name, expected, seen);
          if (problem) assert.fail(problem);
        });
      }
    } finally {
      await browser.close();
      await server.stop();
      await Deno.remove(served, { recursive: true }).catch(() => {});
      await Deno.remove(runtime, { recursive: true }).catch(() => {});
    }
  },
});
