/**
 * Child processes that must not outlive the task that started them. A task killed with
 * SIGTERM (or stopped with Ctrl-C) would otherwise leave its training workers or notebook
 * executor running: they keep the cores busy and may still write a run folder or save a
 * notebook afterwards.
 *
 * @module
 */

const live = new Set<Deno.ChildProcess>();
let listening = false;

function stopAll(signal: Deno.Signal): void {
  for (const child of live) {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
  }
  // 128 + the signal's number, as a shell reports it.
  Deno.exit(signal === "SIGINT" ? 130 : 143);
}

function listen(): void {
  if (listening || Deno.build.os === "windows") return;
  listening = true;
  Deno.addSignalListener("SIGINT", () => stopAll("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => stopAll("SIGTERM"));
}

/**
 * Registers `child` so that SIGINT or SIGTERM to this process first sends SIGTERM to it, then exits;
 * returns a function that unregisters it (call it once the child has exited).
 *
 * @example
 * ```ts
 * import { trackChild } from "./children.ts";
 * const child = new Deno.Command("true", { stdout: "null" }).spawn();
 * const untrack = trackChild(child);
 * console.log((await child.status).success); // true
 * untrack();
 * ```
 */
export function trackChild(child: Deno.ChildProcess): () => void {
  listen();
  live.add(child);
  return () => {
    live.delete(child);
  };
}
