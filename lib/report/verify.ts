/**
 * Checks the report in a real headless browser (Debian's chromium driven by
 * playwright-core): it renders, loads nothing but `file:` and `data:` URLs,
 * every image shows and the expected sections are there.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

/** Where Debian installs chromium. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/** Flags that keep chromium headless and off the network (see ENVIRONMENT.md). */
export const CHROMIUM_FLAGS: readonly string[] = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** How to get chromium when it is missing. */
export const CHROMIUM_INSTALL_HINT = "apt-get install -y chromium (as root; `deno task setup` does it)";

/** Options for {@linkcode verifyReport}. */
export interface VerifyReportOptions {
  /** Section ids that must be present. Default `["summary"]`. */
  sections?: string[];
  /** The browser. Default {@linkcode CHROMIUM_PATH}. */
  executablePath?: string;
  /** Milliseconds to wait for the page to load. Default 60000. */
  timeoutMs?: number;
}

/** What the browser saw. */
export interface VerifyResult {
  /** True when there are no problems. */
  ok: boolean;
  /** What is wrong, one line each. */
  problems: string[];
  /** Every URL the page requested (scheme and up to 80 characters). */
  requests: string[];
  /** Number of `<img>` elements, and of inline `<svg>` elements. */
  images: number;
  svgs: number;
  /** Ids of the `<section>` elements found. */
  sections: string[];
}

interface Seen {
  broken: string[];
  images: number;
  emptySvgs: number;
  svgs: number;
  sections: string[];
  bodyHeight: number;
}

/**
 * Whether chromium is installed at `path`.
 *
 * @example
 * ```ts
 * import { chromiumAvailable } from "./verify.ts";
 * console.log(typeof chromiumAvailable());
 * ```
 */
export function chromiumAvailable(path: string = CHROMIUM_PATH): boolean {
  return existsSync(path);
}

/**
 * Opens `htmlPath` from a `file://` URL in headless chromium (fresh profile)
 * and checks that it renders, that every request is `file:` or `data:`, that
 * every `<img>` has `naturalWidth > 0`, every inline `<svg>` a non-zero box,
 * and that the sections in `options.sections` exist. Throws when chromium is
 * missing, naming the install command.
 *
 * @example
 * ```ts ignore
 * import { verifyReport } from "./verify.ts";
 * const result = await verifyReport("figures/report.html", { sections: ["summary"] });
 * console.log(result.ok, result.problems);
 * ```
 */
export async function verifyReport(htmlPath: string, options: VerifyReportOptions = {}): Promise<VerifyResult> {
  for (const key of Object.keys(options)) {
    if (!["sections", "executablePath", "timeoutMs"].includes(key)) {
      throw new Error(`verifyReport: unknown option "${key}"; expected sections, executablePath or timeoutMs`);
    }
  }
  const executablePath = options.executablePath ?? CHROMIUM_PATH;
  if (!chromiumAvailable(executablePath)) {
    throw new Error(`verifyReport: no browser at ${executablePath}; install chromium with: ${CHROMIUM_INSTALL_HINT}`);
  }
  const path = resolve(htmlPath);
  if (!existsSync(path)) throw new Error(`verifyReport: ${path} does not exist; build it first with deno task report`);
  const expected = options.sections ?? ["summary"];
  const timeout = options.timeoutMs ?? 60_000;
  const { chromium } = await import("playwright-core");
  const profile = await Deno.makeTempDir({ prefix: "attnlab_chromium_" });
  // A persistent context on a fresh temporary folder is chromium's --user-data-dir.
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath,
    args: [...CHROMIUM_FLAGS],
    headless: true,
    timeout,
  });
  const problems: string[] = [];
  const requests: string[] = [];
  try {
    const page = await browser.newPage();
    page.on("request", (request) => {
      const url = request.url();
      requests.push(url.length > 80 ? `${url.slice(0, 80)}…` : url);
      if (!url.startsWith("file:") && !url.startsWith("data:")) problems.push(`external request: ${url}`);
    });
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    const response = await page.goto(pathToFileURL(path).href, { waitUntil: "load", timeout });
    if (response !== null && !response.ok()) problems.push(`loading the page failed with status ${response.status()}`);
    // Runs in the page; a string keeps the browser's DOM types out of Deno's type check.
    const seen = await page.evaluate<Seen>(`(() => {
      const imgs = [...document.querySelectorAll("img")];
      const svgs = [...document.querySelectorAll("svg")];
      return {
        broken: imgs.filter((img) => !img.complete || img.naturalWidth === 0).map((img) => img.alt || "(no alt)"),
        images: imgs.length,
        emptySvgs: svgs.filter((s) => {
          const box = s.getBoundingClientRect();
          return box.width === 0 || box.height === 0;
        }).length,
        svgs: svgs.length,
        sections: [...document.querySelectorAll("section")].map((s) => s.id),
        bodyHeight: document.body.getBoundingClientRect().height,
      };
    })()`);
    for (const alt of seen.broken) problems.push(`image does not show: ${alt}`);
    if (seen.emptySvgs > 0) problems.push(`${seen.emptySvgs} inline <svg> element(s) have an empty bounding box`);
    for (const id of expected) {
      if (!seen.sections.includes(id)) problems.push(`missing section: #${id}`);
    }
    if (!(seen.bodyHeight > 0)) problems.push("the page body has no height: nothing rendered");
    return {
      ok: problems.length === 0,
      problems,
      requests,
      images: seen.images,
      svgs: seen.svgs,
      sections: seen.sections,
    };
  } finally {
    await browser.close();
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}
