/**
 * A lock file shared by processes: `withFileLock(path, body)` runs `body` while
 * holding `path`, created with `createNew` so only one holder exists at a time.
 *
 * The lock file holds `{ pid, host, since, token }`. While the body runs, the
 * holder touches the file every {@linkcode LOCK_HEARTBEAT_MS}, so its modification
 * time says when the holder was last seen alive. A waiter breaks the lock when it
 * is **stale**:
 *
 * - its holder ran on this host and that process no longer exists (detected at
 *   once, e.g. after a notebook kernel was killed mid-save); or
 * - it has not been touched for {@linkcode LOCK_STALE_MS} (a holder on another
 *   host, a lock file from an older version without a pid, or a reused pid).
 *
 * Staleness is checked at every poll, and the wait ({@linkcode LOCK_WAIT_MS})
 * is longer than the staleness limit, so a stale lock is always broken before a
 * waiter gives up. Giving up means a live process is holding the lock and
 * making progress; the error names the lock file, its holder and the fix.
 *
 * Breaking renames the lock file aside and checks it was the one judged stale;
 * if a new holder took the lock in between, its file is put back. (Two waiters
 * breaking the same lock at the same moment can still, very rarely, both end
 * up holding it; the manifest stays valid JSON, but one of their entries may
 * be lost.)
 *
 * @module
 */

import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { basename, dirname, join } from "node:path";
import { SET_TAG, tempNameFor } from "./atomic.ts";

/** A lock untouched this long is stale, whoever holds it. */
export const LOCK_STALE_MS = 30_000;

/** How long a waiter waits for a live holder before giving up; longer than {@linkcode LOCK_STALE_MS}. */
export const LOCK_WAIT_MS = 60_000;

/** How often a holder touches its lock file. */
export const LOCK_HEARTBEAT_MS = 5_000;

/** What a lock file says about its holder; fields are absent when the file does not say. */
export interface LockHolder {
  pid?: number;
  host?: string;
  /** When the holder took the lock, ISO 8601. */
  since?: string;
  token?: string;
  /** When the file was last touched, in ms since the epoch. */
  touchedMs: number;
}

/** Options for {@linkcode withFileLock}; for tests and special callers. */
export interface FileLockOptions {
  /** Default {@linkcode LOCK_WAIT_MS}. */
  waitMs?: number;
  /** Default {@linkcode LOCK_STALE_MS}. */
  staleMs?: number;
  /** What to tell the user to check before deleting the lock by hand. Default: "no other process is saving to this folder". */
  holderHint?: string;
}

let host: string | undefined;
function thisHost(): string {
  try {
    host ??= hostname();
  } catch {
    host = "";
  }
  return host;
}

/**
 * Whether a process with this pid exists on this machine (`/proc/<pid>` on
 * Linux, `kill -0` elsewhere); `undefined` when that cannot be told.
 *
 * @example
 * ```ts
 * import { isProcessAlive } from "./lock.ts";
 * console.log(isProcessAlive(Deno.pid)); // true
 * ```
 */
export function isProcessAlive(pid: number): boolean | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  if (pid === Deno.pid) return true;
  try {
    if (Deno.build.os === "linux") return existsSync(`/proc/${pid}`);
    if (Deno.build.os === "windows") return undefined;
    // kill -0 sends nothing; it succeeds when the process exists (EPERM also means it exists).
    const { success, stderr } = new Deno.Command("kill", { args: ["-0", String(pid)], stderr: "piped", stdout: "null" })
      .outputSync();
    return success || /not permitted/i.test(new TextDecoder().decode(stderr));
  } catch {
    return undefined;
  }
}

/**
 * Reads a lock file; `null` when there is none. A file that is empty or not
 * JSON (an older version's lock, or one being written) gives only `touchedMs`.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { readLockHolder } from "./lock.ts";
 * console.log(await readLockHolder(join(await Deno.makeTempDir(), "x.lock"))); // null
 * ```
 */
export async function readLockHolder(path: string): Promise<LockHolder | null> {
  let text: string;
  let touchedMs: number;
  try {
    [text, touchedMs] = await Promise.all([
      Deno.readTextFile(path),
      Deno.stat(path).then((s) => s.mtime?.getTime() ?? Date.now()),
    ]);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
  let parsed: Record<string, unknown> = {};
  try {
    const value = JSON.parse(text);
    if (value !== null && typeof value === "object") parsed = value;
  } catch {
    // Not ours or half-written: judged by age alone.
  }
  const holder: LockHolder = { touchedMs };
  if (typeof parsed.pid === "number") holder.pid = parsed.pid;
  if (typeof parsed.host === "string") holder.host = parsed.host;
  if (typeof parsed.since === "string") holder.since = parsed.since;
  if (typeof parsed.token === "string") holder.token = parsed.token;
  return holder;
}

/**
 * Why a lock is stale, or `null` while its holder may still be working.
 *
 * @example
 * ```ts
 * import { staleReason } from "./lock.ts";
 * console.log(staleReason({ pid: Deno.pid, touchedMs: Date.now() })); // null
 * console.log(staleReason({ touchedMs: Date.now() - 60_000 })); // not touched for 60 s (limit 30 s)
 * ```
 */
export function staleReason(holder: LockHolder, staleMs: number = LOCK_STALE_MS): string | null {
  const local = holder.host === undefined || holder.host === thisHost();
  if (holder.pid !== undefined && local && isProcessAlive(holder.pid) === false) {
    return `its holder, process ${holder.pid}, no longer runs`;
  }
  const age = Date.now() - holder.touchedMs;
  if (age > staleMs) return `not touched for ${Math.round(age / 1000)} s (limit ${Math.round(staleMs / 1000)} s)`;
  return null;
}

function describeHolder(holder: LockHolder | null): string {
  if (holder === null) return "a holder that has just released it";
  const parts = [];
  if (holder.pid !== undefined) parts.push(`process ${holder.pid}`);
  if (holder.host !== undefined && holder.host !== thisHost()) parts.push(`on host ${holder.host}`);
  if (holder.since !== undefined) parts.push(`since ${holder.since}`);
  parts.push(`last touched ${Math.round((Date.now() - holder.touchedMs) / 1000)} s ago`);
  return parts.join(", ");
}

// Removes the lock file if it is still the one judged stale (same token and touch time).
async function breakLock(path: string, judged: LockHolder): Promise<void> {
  // Named like a figure-set temporary file, so that git ignores it and a save sweeps it if we die right here.
  const aside = join(dirname(path), tempNameFor(basename(path), SET_TAG));
  try {
    await Deno.rename(path, aside);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  const moved = await readLockHolder(aside);
  if (moved !== null && (moved.token !== judged.token || moved.touchedMs !== judged.touchedMs)) {
    // A new holder took the lock after we judged the old one: give it back (link fails if yet another exists).
    await Deno.link(aside, path).catch(() => {});
  }
  await Deno.remove(aside).catch(() => {});
}

function checkMs(value: unknown, name: string): number {
  if (!(typeof value === "number" && Number.isFinite(value) && value >= 0)) {
    throw new RangeError(`withFileLock: options.${name} must be a non-negative number of milliseconds, got ${value}`);
  }
  return value;
}

/**
 * Runs `body` while holding the lock file `path` (its folder must exist),
 * waiting for another holder, breaking a stale lock (see the module doc), and
 * removing the lock afterwards if it is still ours.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { withFileLock } from "./lock.ts";
 * const lock = join(await Deno.makeTempDir(), "demo.lock");
 * const held = await withFileLock(lock, async () => (await Deno.stat(lock)).isFile);
 * console.log(held, await Deno.stat(lock).then(() => true, () => false)); // true false
 * ```
 */
export async function withFileLock<T>(
  path: string,
  body: () => Promise<T>,
  options: FileLockOptions = {},
): Promise<T> {
  const waitMs = checkMs(options.waitMs ?? LOCK_WAIT_MS, "waitMs");
  const staleMs = checkMs(options.staleMs ?? LOCK_STALE_MS, "staleMs");
  const token = crypto.randomUUID();
  const content = JSON.stringify({ pid: Deno.pid, host: thisHost(), since: new Date().toISOString(), token }) + "\n";
  const deadline = Date.now() + waitMs;
  let delay = 10;
  for (;;) {
    let file: Deno.FsFile | undefined;
    try {
      file = await Deno.open(path, { write: true, createNew: true });
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
    }
    if (file !== undefined) {
      try {
        await file.write(new TextEncoder().encode(content));
      } finally {
        file.close();
      }
      break;
    }
    const holder = await readLockHolder(path);
    if (holder !== null && staleReason(holder, staleMs) !== null) {
      await breakLock(path, holder);
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `could not take the lock ${path} within ${Math.round(waitMs / 1000)} s: it is held by ` +
          `${describeHolder(holder)}. If ${options.holderHint ?? "no other process is saving to this folder"}, ` +
          `delete ${path} and retry`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 200);
  }
  let touching: Promise<void> = Promise.resolve();
  const heartbeat = setInterval(() => {
    const now = new Date();
    touching = Deno.utime(path, now, now).catch(() => {});
  }, LOCK_HEARTBEAT_MS);
  try {
    return await body();
  } finally {
    clearInterval(heartbeat);
    await touching;
    const holder = await readLockHolder(path).catch(() => null);
    if (holder?.token === token) await Deno.remove(path).catch(() => {});
  }
}
