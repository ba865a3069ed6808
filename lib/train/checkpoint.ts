/**
 * Checkpoints of a training run: weights and Adam state as raw float32 (little-endian) files, the logs as
 * JSON, and a JSON manifest `checkpoint.json` that names them with shapes, byte offsets and SHA-256 sums.
 *
 * Saving writes every data file under a fresh name (temporary name, then rename), then renames the manifest
 * into place last, then deletes the previous checkpoint's files. A crash at any point leaves the previous
 * manifest and its files intact; a data file that does not match its manifest's size or checksum is
 * reported as a {@linkcode CheckpointError}.
 *
 * @module
 */

import { join } from "node:path";
import { backendLabel } from "../backend.ts";
import { writeFileAtomic } from "../figures/atomic.ts";
import type { AdamState } from "./adam.ts";
import { sha256Hex } from "./hash.ts";
import type { TrainLogs } from "./types.ts";

/** The manifest's file name inside a run folder. */
export const MANIFEST_FILE = "checkpoint.json";

/** The manifest's `format` field. */
export const CHECKPOINT_FORMAT = "attnlab-checkpoint";

/** A checkpoint that exists but cannot be used: unreadable manifest, missing file, size or checksum mismatch. */
export class CheckpointError extends Error {
  /**
   * @example
   * ```ts
   * import { CheckpointError } from "./checkpoint.ts";
   * console.log(new CheckpointError("bad").name); // CheckpointError
   * ```
   */
  constructor(message: string) {
    super(message);
    this.name = "CheckpointError";
  }
}

/** Where one tensor lies in a data file. */
export interface TensorEntry {
  name: string;
  shape: number[];
  dtype: "float32";
  /** Byte offset in the file. */
  offset: number;
  /** Byte length: 4 × the element count. */
  bytes: number;
}

/** One data file of a checkpoint. */
export interface FileEntry {
  /** File name, relative to the run folder. */
  path: string;
  bytes: number;
  sha256: string;
}

/** The JSON manifest, `checkpoint.json`. */
export interface CheckpointManifest {
  format: typeof CHECKPOINT_FORMAT;
  version: 1;
  byteOrder: "little";
  /** The run's name, or null. */
  name: string | null;
  /** Updates applied (Adam's step count). */
  step: number;
  /** The steps the run is meant to reach. */
  steps: number;
  /** Whether step === steps. */
  finished: boolean;
  /** SHA-256 of the canonical JSON of `identity`. */
  hash: string;
  /** The hashed description of the run: model config and the options that change the result. */
  identity: unknown;
  /** Weights: one entry per variable, in the model's order. */
  weights: FileEntry & { tensors: TensorEntry[] };
  /** Adam moments: "m/<name>" and "v/<name>" entries. */
  adam: FileEntry & { tensors: TensorEntry[] };
  /** The logs so far, with their row counts. */
  logs: FileEntry & { rows: Record<keyof TrainLogs, number> };
  /** ISO time of saving. */
  savedAt: string;
  /**
   * The backend that ran the session which saved it, as `backendLabel()` names it (`blas`, `webgpu (<adapter>)`):
   * not part of the identity, so a run trained on one backend is reused on another. Absent in older checkpoints.
   */
  backend?: string;
}

/** What {@linkcode saveCheckpoint} writes. */
export interface CheckpointInput {
  name: string | null;
  steps: number;
  hash: string;
  identity: unknown;
  /** Shapes of the variables, in the model's order (the keys of `weights`). */
  shapes: Record<string, number[]>;
  weights: Record<string, Float32Array>;
  /** Adam's state; its `step` is the checkpoint's step. */
  adam: AdamState;
  logs: TrainLogs;
}

/** A checkpoint read back by {@linkcode loadCheckpoint}. */
export interface LoadedCheckpoint {
  manifest: CheckpointManifest;
  weights: Record<string, Float32Array>;
  adam: AdamState;
  logs: TrainLogs;
}

const DATA_FILE = /^(weights|adam|logs)-\d+-[0-9a-f]{8}\.(bin|json)$/;
// Left behind by a save that was interrupted between writing a temporary file and renaming it.
const TEMP_FILE = /^\.((weights|adam|logs)-\d+-[0-9a-f]{8}\.(bin|json)|checkpoint\.json)\.[0-9a-f]{8}\.tmp$/;

function checkLittleEndian(): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error("checkpoint: this machine is big-endian; checkpoints are little-endian float32");
  }
}

function packTensors(
  entries: { name: string; shape: number[]; data: Float32Array }[],
): { bytes: Uint8Array; tensors: TensorEntry[] } {
  const total = entries.reduce((sum, e) => sum + e.data.byteLength, 0);
  const bytes = new Uint8Array(total);
  const tensors: TensorEntry[] = [];
  let offset = 0;
  for (const e of entries) {
    const size = e.shape.reduce((a, b) => a * b, 1);
    if (e.data.length !== size) {
      throw new Error(
        `saveCheckpoint: "${e.name}" holds ${e.data.length} values, its shape [${e.shape}] needs ${size}`,
      );
    }
    bytes.set(new Uint8Array(e.data.buffer, e.data.byteOffset, e.data.byteLength), offset);
    tensors.push({ name: e.name, shape: [...e.shape], dtype: "float32", offset, bytes: e.data.byteLength });
    offset += e.data.byteLength;
  }
  return { bytes, tensors };
}

function encodeLogs(logs: TrainLogs): string {
  // JSON has no NaN or Infinity; spell them as strings (the rows hold no other strings).
  return JSON.stringify(
    logs,
    (_key, value) => typeof value === "number" && !Number.isFinite(value) ? String(value) : value,
  );
}

function decodeLogs(text: string): TrainLogs {
  return JSON.parse(
    text,
    (_key, value) => value === "NaN" || value === "Infinity" || value === "-Infinity" ? Number(value) : value,
  );
}

/**
 * Writes a checkpoint into `dir` (created if missing) and returns its manifest; see the module doc for
 * the order of writes. Replaces the checkpoint that was there.
 *
 * @example
 * ```ts
 * import { loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
 * const dir = await Deno.makeTempDir();
 * const logs = { train: [], gradNorms: [], valid: [], probes: [] };
 * const w = new Float32Array([1, 2, 3]);
 * await saveCheckpoint(dir, {
 *   name: "demo", steps: 1, hash: "h", identity: {}, shapes: { w: [3] }, weights: { w },
 *   adam: { step: 1, m: { w: new Float32Array(3) }, v: { w: new Float32Array(3) } }, logs,
 * });
 * const back = await loadCheckpoint(dir);
 * console.log(back?.manifest.step, Array.from(back!.weights.w)); // 1 [1, 2, 3]
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function saveCheckpoint(dir: string, input: CheckpointInput): Promise<CheckpointManifest> {
  checkLittleEndian();
  const names = Object.keys(input.shapes);
  const step = input.adam.step;
  const tag = `${String(step).padStart(8, "0")}-${crypto.randomUUID().replaceAll("-", "").slice(0, 8)}`;
  const weights = packTensors(names.map((name) => ({ name, shape: input.shapes[name], data: input.weights[name] })));
  const moments = packTensors([
    ...names.map((name) => ({ name: `m/${name}`, shape: input.shapes[name], data: input.adam.m[name] })),
    ...names.map((name) => ({ name: `v/${name}`, shape: input.shapes[name], data: input.adam.v[name] })),
  ]);
  const logBytes = new TextEncoder().encode(encodeLogs(input.logs));
  await Deno.mkdir(dir, { recursive: true });
  const files = {
    weights: { path: `weights-${tag}.bin`, data: weights.bytes },
    adam: { path: `adam-${tag}.bin`, data: moments.bytes },
    logs: { path: `logs-${tag}.json`, data: logBytes },
  };
  for (const f of Object.values(files)) await writeFileAtomic(join(dir, f.path), f.data);
  const entry = async (f: { path: string; data: Uint8Array }): Promise<FileEntry> => ({
    path: f.path,
    bytes: f.data.byteLength,
    sha256: await sha256Hex(f.data),
  });
  const manifest: CheckpointManifest = {
    format: CHECKPOINT_FORMAT,
    version: 1,
    byteOrder: "little",
    name: input.name,
    step,
    steps: input.steps,
    finished: step >= input.steps,
    hash: input.hash,
    identity: input.identity,
    weights: { ...(await entry(files.weights)), tensors: weights.tensors },
    adam: { ...(await entry(files.adam)), tensors: moments.tensors },
    logs: {
      ...(await entry(files.logs)),
      rows: {
        train: input.logs.train.length,
        gradNorms: input.logs.gradNorms.length,
        valid: input.logs.valid.length,
        probes: input.logs.probes.length,
      },
    },
    savedAt: new Date().toISOString(),
    backend: await backendLabel(),
  };
  await writeFileAtomic(join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + "\n");
  await removeStaleFiles(dir, new Set(Object.values(files).map((f) => f.path)));
  return manifest;
}

async function removeStaleFiles(dir: string, keep: Set<string>): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile || keep.has(e.name)) continue;
    if (DATA_FILE.test(e.name) || TEMP_FILE.test(e.name)) await Deno.remove(join(dir, e.name)).catch(() => {});
  }
}

/**
 * Deletes the checkpoint in `dir`: the manifest first (so nothing half-deleted looks valid), then its data
 * files and any left over by an interrupted save. Other files are kept. A missing folder is fine.
 *
 * @example
 * ```ts
 * import { removeCheckpoint } from "./checkpoint.ts";
 * const dir = await Deno.makeTempDir();
 * await removeCheckpoint(dir);
 * await Deno.remove(dir);
 * ```
 */
export async function removeCheckpoint(dir: string): Promise<void> {
  try {
    await Deno.remove(join(dir, MANIFEST_FILE));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  try {
    await removeStaleFiles(dir, new Set());
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/**
 * Throws a RangeError when a checkpoint's step lies beyond the schedule's steps: resuming it would run no step and
 * report an unfinished run. `dir` is the run folder.
 *
 * @example
 * ```ts
 * import { checkCheckpointStep } from "./checkpoint.ts";
 * checkCheckpointStep("runs/demo", { step: 10, steps: 10 });
 * try {
 *   checkCheckpointStep("runs/demo", { step: 99, steps: 10 });
 * } catch (err) {
 *   console.log((err as Error).message.slice(0, 58)); // checkpoint runs/demo/checkpoint.json is at step 99, beyond
 * }
 * ```
 */
export function checkCheckpointStep(dir: string, at: { step: number; steps: number }): void {
  if (at.step > at.steps) {
    throw new RangeError(
      `checkpoint ${join(dir, MANIFEST_FILE)} is at step ${at.step}, beyond the schedule's ${at.steps} steps; ` +
        `raise steps to at least ${at.step} (a new run), or delete ${dir} to start over`,
    );
  }
}

function isFileEntry(x: unknown): x is FileEntry {
  const f = x as FileEntry;
  return f !== null && typeof f === "object" && typeof f.path === "string" && DATA_FILE.test(f.path) &&
    Number.isInteger(f.bytes) && typeof f.sha256 === "string" && /^[0-9a-f]{64}$/.test(f.sha256);
}

function checkTensorEntries(entries: unknown, fileBytes: number): entries is TensorEntry[] {
  if (!Array.isArray(entries)) return false;
  return entries.every((t: TensorEntry) =>
    t !== null && typeof t === "object" && typeof t.name === "string" && t.dtype === "float32" &&
    Array.isArray(t.shape) && t.shape.every((d) => Number.isInteger(d) && d >= 0) &&
    Number.isInteger(t.offset) && t.offset % 4 === 0 && t.bytes === 4 * t.shape.reduce((a, b) => a * b, 1) &&
    t.offset + t.bytes <= fileBytes
  );
}

/**
 * Reads and checks the manifest of the checkpoint in `dir`, without reading the data files.
 * Returns null when there is no manifest (no checkpoint, or one whose save never finished);
 * throws a {@linkcode CheckpointError} when it exists but is not a valid manifest.
 *
 * @example
 * ```ts
 * import { readCheckpointManifest } from "./checkpoint.ts";
 * const dir = await Deno.makeTempDir();
 * console.log(await readCheckpointManifest(dir)); // null
 * await Deno.remove(dir);
 * ```
 */
export async function readCheckpointManifest(dir: string): Promise<CheckpointManifest | null> {
  const path = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
  const bad = (why: string) =>
    new CheckpointError(`checkpoint manifest ${path} is not valid (${why}); delete ${dir} or train with resume: false`);
  let m: CheckpointManifest;
  try {
    m = JSON.parse(text);
  } catch (err) {
    throw bad(`not JSON: ${(err as Error).message}`);
  }
  if (m === null || typeof m !== "object" || m.format !== CHECKPOINT_FORMAT) {
    throw bad(`format is not "${CHECKPOINT_FORMAT}"`);
  }
  if (m.version !== 1) throw bad(`version ${m.version}, this code reads version 1`);
  if (m.byteOrder !== "little") throw bad("byteOrder is not little");
  if (!Number.isInteger(m.step) || m.step < 0 || !Number.isInteger(m.steps) || m.steps < 1) {
    throw bad("step and steps must be integers");
  }
  if (typeof m.hash !== "string" || typeof m.finished !== "boolean") throw bad("hash or finished missing");
  checkCheckpointStep(dir, m);
  if (m.finished !== (m.step === m.steps)) throw bad(`finished is ${m.finished} at step ${m.step} of ${m.steps}`);
  for (const key of ["weights", "adam", "logs"] as const) {
    if (!isFileEntry(m[key])) throw bad(`${key} is not a file entry { path, bytes, sha256 }`);
  }
  if (!checkTensorEntries(m.weights.tensors, m.weights.bytes) || !checkTensorEntries(m.adam.tensors, m.adam.bytes)) {
    throw bad("a tensor entry is malformed or lies outside its file");
  }
  return m;
}

async function readVerified(dir: string, entry: FileEntry, what: string): Promise<Uint8Array> {
  const path = join(dir, entry.path);
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new CheckpointError(
        `checkpoint in ${dir} is incomplete: its ${what} file ${entry.path} is missing; ` +
          `delete ${dir} or train with resume: false`,
      );
    }
    throw err;
  }
  if (bytes.byteLength !== entry.bytes) {
    throw new CheckpointError(
      `checkpoint in ${dir} is corrupt: ${entry.path} has ${bytes.byteLength} bytes, the manifest says ` +
        `${entry.bytes}; delete ${dir} or train with resume: false`,
    );
  }
  const sum = await sha256Hex(bytes);
  if (sum !== entry.sha256) {
    throw new CheckpointError(
      `checkpoint in ${dir} is corrupt: the SHA-256 checksum of ${entry.path} is ${sum.slice(0, 12)}…, ` +
        `the manifest says ${entry.sha256.slice(0, 12)}…; delete ${dir} or train with resume: false`,
    );
  }
  return bytes;
}

function unpack(bytes: Uint8Array, tensors: TensorEntry[]): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const t of tensors) out[t.name] = new Float32Array(bytes.slice(t.offset, t.offset + t.bytes).buffer);
  return out;
}

/**
 * Reads the checkpoint in `dir` and checks every data file against the manifest's sizes and SHA-256
 * sums. Returns null when there is no manifest; throws a {@linkcode CheckpointError} when the
 * checkpoint is corrupt or incomplete.
 *
 * @example
 * ```ts
 * import { loadCheckpoint } from "./checkpoint.ts";
 * const dir = await Deno.makeTempDir();
 * console.log(await loadCheckpoint(dir)); // null
 * await Deno.remove(dir);
 * ```
 */
export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint | null> {
  checkLittleEndian();
  const manifest = await readCheckpointManifest(dir);
  if (manifest === null) return null;
  const weights = unpack(await readVerified(dir, manifest.weights, "weights"), manifest.weights.tensors);
  const moments = unpack(await readVerified(dir, manifest.adam, "Adam state"), manifest.adam.tensors);
  const logs = decodeLogs(new TextDecoder().decode(await readVerified(dir, manifest.logs, "logs")));
  const adam: AdamState = { step: manifest.step, m: {}, v: {} };
  for (const t of manifest.weights.tensors) {
    const m = moments[`m/${t.name}`];
    const v = moments[`v/${t.name}`];
    if (!m || !v || m.length !== weights[t.name].length || v.length !== weights[t.name].length) {
      throw new CheckpointError(`checkpoint in ${dir} has no Adam moments of the size of "${t.name}"`);
    }
    adam.m[t.name] = m;
    adam.v[t.name] = v;
  }
  return { manifest, weights, adam, logs };
}
