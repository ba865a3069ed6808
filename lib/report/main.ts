/**
 * `deno task report`: builds `figures/report.html` and `figures/report.md`
 * from the manifest, then checks the page in headless chromium when it is
 * installed (and says how to install it when not).
 *
 * @module
 */

import { relative } from "node:path";
import { figuresDir, REPO_ROOT } from "../env.ts";
import { formatHelp, parseFlags, runMain } from "../tasks/cli.ts";
import { buildReport } from "./build.ts";
import { sectionId } from "./html.ts";
import { checkFiguresDir } from "./load.ts";
import { CHROMIUM_INSTALL_HINT, CHROMIUM_PATH, chromiumAvailable, verifyReport } from "./verify.ts";

const FLAGS = {
  "figures-dir": { type: "string", value: "DIR", description: "figures folder to read (default figures/)" },
  baseline: {
    type: "string",
    value: "DIR",
    description: "folder whose claims at git HEAD are the last committed report (default: the figures folder)",
  },
  "no-verify": { type: "boolean", description: "do not open the report in the browser" },
  verify: { type: "boolean", description: "fail (exit 1) when chromium is missing, instead of skipping the check" },
  chromium: {
    type: "string",
    value: "PATH",
    description: `the browser that checks the page (default ${CHROMIUM_PATH})`,
  },
  png: { type: "boolean", description: "embed PNGs instead of SVGs" },
  help: { type: "boolean", description: "show this help" },
} as const;

/**
 * The task's entry point; returns the exit status.
 *
 * @example
 * ```ts
 * import { main } from "./main.ts";
 * console.log(await main(["--help"])); // 0
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const { values } = parseFlags(args, FLAGS, { command: "report" });
  if (values.verify && values["no-verify"]) {
    throw new Error("report: give --verify or --no-verify, not both");
  }
  if (values.help) {
    console.log(formatHelp("deno task report [flags]", "Builds figures/report.html and figures/report.md.", FLAGS));
    return 0;
  }
  const started = performance.now();
  // A misspelt folder must fail here (exit 1), not build an empty report.
  const given = values["figures-dir"] as string | undefined;
  const dir = await checkFiguresDir(
    given ?? figuresDir({ quick: false }),
    given !== undefined ? "--figures-dir" : "the default figures folder (ATTNLAB_FIGURES_DIR or figures/)",
  );
  const baseline = values.baseline as string | undefined;
  const built = await buildReport({
    figuresDir: dir,
    image: values.png ? "png" : "auto",
    ...(baseline !== undefined ? { baseline } : {}),
  });
  const s = built.data.summary;
  const show = (p: string) => relative(Deno.cwd(), p) || p;
  console.log(
    `report: wrote ${show(built.html)} (${
      (built.htmlBytes / 1e6).toFixed(2)
    } MB, ${built.image.toUpperCase()} images) ` +
      `and ${show(built.markdown)} in ${((performance.now() - started) / 1000).toFixed(1)} s; ` +
      `${built.data.notebooks.length} notebook(s), claims: ${s.reproduced} reproduced, ${s.notReproduced} not ` +
      `reproduced, ${s.inconclusive} inconclusive${s.notCounted > 0 ? `, ${s.notCounted} not counted` : ""}; ` +
      `${built.data.changes.note}`,
  );
  if (values["no-verify"]) return 0;
  const chromium = (values.chromium as string | undefined) ?? CHROMIUM_PATH;
  if (!chromiumAvailable(chromium)) {
    const message = `report: not verified in a browser: no chromium at ${chromium}; install it with: ` +
      `${CHROMIUM_INSTALL_HINT}, or give its path with --chromium PATH`;
    if (values.verify) {
      console.error(`${message} (or drop --verify to skip the check)`);
      return 1;
    }
    console.log(message);
    return 0;
  }
  const result = await verifyReport(built.html, {
    executablePath: chromium,
    sections: ["summary", ...built.data.notebooks.map((n) => sectionId(n.notebook))],
  });
  const external = result.requests.filter((r) => !r.startsWith("file:") && !r.startsWith("data:")).length;
  console.log(
    `report: verified in chromium: ${result.images} image(s), ${result.sections.length} section(s), ` +
      `${result.requests.length} request(s), ${external} external`,
  );
  if (!result.ok) {
    console.error(`report: the page has problems:\n${result.problems.map((p) => `  - ${p}`).join("\n")}`);
    return 1;
  }
  return 0;
}

if (import.meta.main) {
  Deno.chdir(REPO_ROOT);
  await runMain(main);
}
