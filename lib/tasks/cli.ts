/**
 * Command-line helpers shared by the tasks: strict flag parsing with errors
 * that list the valid flags, help text, and running a task's main.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** One flag a task accepts. */
export interface FlagSpec {
  /** `boolean` flags take no value; `string` flags take one. */
  type: "boolean" | "string";
  /** The flag may be given more than once (string flags collect a list). */
  multiple?: boolean;
  /** Placeholder shown in help, e.g. `SECONDS`. */
  value?: string;
  /** One line of help. */
  description: string;
}

/** Flags by long name (without `--`). */
export type FlagSpecs = Record<string, FlagSpec>;

/** The result of {@linkcode parseFlags}. */
export interface ParsedFlags {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  /** Arguments after a bare `--`, untouched. */
  rest: string[];
}

/**
 * Parses `args` against `specs`. An unknown flag, a missing value or an
 * unexpected positional is an Error naming it and listing the valid flags.
 *
 * @example
 * ```ts
 * import { parseFlags } from "./cli.ts";
 * const specs = { only: { type: "string", multiple: true, description: "pick notebooks" } } as const;
 * const parsed = parseFlags(["--only", "00", "--", "--x"], specs, { command: "demo" });
 * console.log(parsed.values.only, parsed.rest);
 * ```
 */
export function parseFlags(
  args: readonly string[],
  specs: FlagSpecs,
  options: { command: string; positionals?: boolean },
): ParsedFlags {
  const dash = args.indexOf("--");
  const own = dash >= 0 ? args.slice(0, dash) : [...args];
  const rest = dash >= 0 ? args.slice(dash + 1) : [];
  const valid = Object.keys(specs).map((name) => `--${name}`).join(", ");
  for (const arg of own) {
    if (!arg.startsWith("--") || arg === "--") continue;
    const name = arg.slice(2).split("=")[0];
    if (!(name in specs)) {
      throw new Error(`${options.command}: unknown flag ${arg.split("=")[0]}; valid flags: ${valid}`);
    }
  }
  try {
    const parsed = parseArgs({
      args: own,
      options: Object.fromEntries(
        Object.entries(specs).map(([name, spec]) => [name, { type: spec.type, multiple: spec.multiple ?? false }]),
      ),
      allowPositionals: options.positionals ?? false,
      strict: true,
    });
    return { values: parsed.values as ParsedFlags["values"], positionals: parsed.positionals, rest };
  } catch (err) {
    throw new Error(`${options.command}: ${(err as Error).message}; valid flags: ${valid}`);
  }
}

/**
 * Help text: usage line, description, then one line per flag.
 *
 * @example
 * ```ts
 * import { formatHelp } from "./cli.ts";
 * console.log(formatHelp("deno task demo [flags]", "Does a demo.", {
 *   help: { type: "boolean", description: "show this help" },
 * }));
 * ```
 */
export function formatHelp(usage: string, description: string, specs: FlagSpecs): string {
  const rows = Object.entries(specs).map(([name, spec]) => [
    `--${name}${spec.type === "string" ? ` ${spec.value ?? "VALUE"}` : ""}`,
    spec.description + (spec.multiple ? " (repeatable)" : ""),
  ]);
  const width = Math.max(...rows.map(([flag]) => flag.length));
  return [
    `usage: ${usage}`,
    "",
    description,
    "",
    "flags:",
    ...rows.map(([flag, text]) => `  ${flag.padEnd(width)}  ${text}`),
  ].join("\n");
}

/**
 * A positive number of seconds from a flag value.
 *
 * @example
 * ```ts
 * import { parseSeconds } from "./cli.ts";
 * console.log(parseSeconds("90", "--timeout"));
 * ```
 */
export function parseSeconds(value: string, flag: string): number {
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new Error(`${flag} must be a positive number of seconds, got "${value}"`);
  }
  return seconds;
}

/**
 * Runs a task's main with `Deno.args` and exits with its status; an Error
 * prints as one `error:` line (no stack) and exits 1.
 *
 * @example
 * ```ts
 * import { runMain } from "./cli.ts";
 * console.log(typeof runMain);
 * ```
 */
export async function runMain(main: (args: string[]) => Promise<number>): Promise<never> {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (err) {
    console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
    code = 1;
  }
  Deno.exit(code);
}
