/**
 * Recycled float32 buffers for the `blas` backend's kernel outputs.
 *
 * A fresh `new Float32Array(n)` of a megabyte costs more than the loop that fills it: the memory is zeroed and, being
 * new to the process, faulted in page by page (measured here: an elementwise multiply of [16, 128, 171] took 1.1–1.3
 * ms into fresh arrays, 0.43–0.55 ms into recycled ones). So the backend's kernels take their outputs from
 * {@linkcode allocFloat32}, and the backend ({@linkcode PoolingBackend}) hands an output's array back here when its
 * tensor's data is freed, for the next kernel of that size.
 *
 * An array is recycled only when nothing outside the backend can still see it. Each pooled array has a state:
 *
 * - `allocated`: handed out by {@linkcode allocFloat32}, not yet the data of a tensor;
 * - `owned`: the data of exactly one tensor (its first `write` or `move`, whole);
 * - `pinned`: never recycled again: its values were read out (`dataSync`, `data`, `bufferSync`, a move to another
 *   backend: the caller may keep the array after disposing the tensor), or a second tensor's data is the array or a
 *   view of it (a cpu kernel's `subarray` slice), or a tensor holds only a view of it.
 *
 * Arrays shorter than {@linkcode MIN_POOLED_LENGTH} are not tracked (they are cheap to allocate), and the pool holds
 * at most {@linkcode MAX_POOLED_BYTES}; past that, freed arrays are left to the garbage collector.
 *
 * @module
 */

import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import type * as tf from "@tensorflow/tfjs";

/** Arrays shorter than this many floats (16 KiB) are neither tracked nor recycled. */
export const MIN_POOLED_LENGTH = 4096;

/**
 * The most bytes the free lists hold together: an eighth of the machine's memory, between 256 MiB and 4 GiB (2.9 GiB
 * on this 23 GiB machine). A training step of the medium benchmark config (6 layers, d 256, 8 × 512) frees and
 * allocates about 1.6 GB of arrays: with 256 MiB here, 431 of its 582 arrays were new each step, and a new array's
 * pages fault in on first touch (a fresh 4 MB output made a 1024³ sgemm 2.2× slower); with room for all of them, none
 * is, and the step took 1250 ms instead of 1450–2000. Freed arrays past the cap are left to the garbage collector.
 */
export const MAX_POOLED_BYTES: number = poolCap();

function poolCap(): number {
  let total = 0;
  try {
    // Asked first, so that a run without --allow-sys gets the floor rather than a permission prompt.
    const granted = Deno.permissions.querySync({ name: "sys", kind: "systemMemoryInfo" }).state === "granted";
    if (granted) total = Deno.systemMemoryInfo().total;
  } catch {
    // No permission API or no answer: the floor.
  }
  return Math.min(4 * 2 ** 30, Math.max(256 * 2 ** 20, Math.floor(total / 8)));
}

const ALLOCATED = 0;
const OWNED = 1;
const PINNED = 2;
const FREE = 3;

const states = new WeakMap<ArrayBufferLike, number>();
const free = new Map<number, Float32Array[]>();
let pooledBytes = 0;
const counts = { allocated: 0, reused: 0, recycled: 0 };

/**
 * A float32 array of `length` for a kernel's output: a recycled one when the pool has that length, else a new one.
 * Its contents are arbitrary: the kernel must write every element (or use {@linkcode allocFloat32Zeroed}).
 *
 * @example
 * ```ts
 * import { allocFloat32 } from "./pool.ts";
 * const out = allocFloat32(3);
 * out.set([1, 2, 3]);
 * console.log(out.length, out[2]); // 3 3
 * ```
 */
export function allocFloat32(length: number): Float32Array {
  if (length < MIN_POOLED_LENGTH) return new Float32Array(length);
  const reused = free.get(length)?.pop();
  if (reused !== undefined) {
    pooledBytes -= reused.byteLength;
    states.set(reused.buffer, ALLOCATED);
    counts.reused++;
    return reused;
  }
  const out = new Float32Array(length);
  states.set(out.buffer, ALLOCATED);
  counts.allocated++;
  return out;
}

/**
 * {@linkcode allocFloat32} filled with zeros.
 *
 * @example
 * ```ts
 * import { allocFloat32Zeroed } from "./pool.ts";
 * console.log(allocFloat32Zeroed(5000).every((v) => v === 0)); // true
 * ```
 */
export function allocFloat32Zeroed(length: number): Float32Array {
  const out = allocFloat32(length);
  if (length >= MIN_POOLED_LENGTH) out.fill(0);
  return out;
}

function isWhole(values: ArrayBufferView): boolean {
  return values.byteOffset === 0 && values.byteLength === values.buffer.byteLength;
}

/** A tensor's data is now `values`: the first whole claim owns a pooled array, any other claim pins it. */
function claim(values: unknown): void {
  if (!ArrayBuffer.isView(values)) return;
  const state = states.get(values.buffer);
  if (state === undefined || state === PINNED) return;
  states.set(values.buffer, state === ALLOCATED && isWhole(values) ? OWNED : PINNED);
}

/** `values` left the backend (read out): never recycle it. */
function pin(values: unknown): void {
  if (ArrayBuffer.isView(values) && states.has(values.buffer)) states.set(values.buffer, PINNED);
}

/** The data `values` of a freed tensor: back to the pool when the backend owned it alone. */
function recycle(values: unknown): void {
  if (!(values instanceof Float32Array) || states.get(values.buffer) !== OWNED || !isWhole(values)) return;
  if (pooledBytes + values.byteLength > MAX_POOLED_BYTES) {
    states.delete(values.buffer);
    return;
  }
  states.set(values.buffer, FREE);
  let list = free.get(values.length);
  if (list === undefined) free.set(values.length, list = []);
  list.push(values);
  pooledBytes += values.byteLength;
  counts.recycled++;
}

/**
 * Counters of the pool since the process started: arrays newly allocated, handed out again and handed back, and the
 * bytes now waiting in the free lists.
 *
 * @example
 * ```ts
 * import { poolStats } from "./pool.ts";
 * const s = poolStats();
 * console.log(s.allocated >= 0 && s.pooledBytes >= 0); // true
 * ```
 */
export function poolStats(): { allocated: number; reused: number; recycled: number; pooledBytes: number } {
  return { ...counts, pooledBytes };
}

let liveBytes = 0;
let peakBytes = 0;

function byteLengthOf(values: unknown): number {
  return ArrayBuffer.isView(values) ? values.byteLength : 0;
}

function addLive(bytes: number): void {
  liveBytes += bytes;
  if (liveBytes > peakBytes) peakBytes = liveBytes;
}

/**
 * Bytes of tensor data the blas backend holds now (`live`) and at most since the last
 * {@linkcode resetPeakDataBytes} (`peak`). Unlike `tf.memory().numBytes`, which counts every tensor at its full size,
 * a view that shares its data (a Reshape, an Identity) counts nothing: these are the backend's buffers, as an
 * allocator sees them. (A cpu kernel's output that is a slice of another tensor's array counts its own length again.)
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { registerBlasBackend } from "./backend.ts";
 * import { dataBytes, resetPeakDataBytes } from "./pool.ts";
 * registerBlasBackend();
 * await tf.setBackend("blas");
 * resetPeakDataBytes();
 * const before = dataBytes().live;
 * const x = tf.zeros([1000]);
 * const y = tf.reshape(x, [10, 100]); // a view: no new bytes
 * console.log(dataBytes().live - before, dataBytes().peak - before); // 4000 4000
 * tf.dispose([x, y]);
 * ```
 */
export function dataBytes(): { live: number; peak: number } {
  return { live: liveBytes, peak: peakBytes };
}

/**
 * Starts a new peak for {@linkcode dataBytes}: the peak becomes the bytes held now.
 *
 * @example
 * ```ts
 * import { dataBytes, resetPeakDataBytes } from "./pool.ts";
 * resetPeakDataBytes();
 * console.log(dataBytes().peak === dataBytes().live); // true
 * ```
 */
export function resetPeakDataBytes(): void {
  peakBytes = liveBytes;
}

/**
 * Empties the free lists (the arrays go to the garbage collector).
 *
 * @example
 * ```ts
 * import { clearPool, poolStats } from "./pool.ts";
 * clearPool();
 * console.log(poolStats().pooledBytes); // 0
 * ```
 */
export function clearPool(): void {
  for (const list of free.values()) for (const values of list) states.delete(values.buffer);
  free.clear();
  pooledBytes = 0;
}

/**
 * The cpu backend, with the data of freed tensors returned to the pool (see the module's description for when an
 * array is safe to recycle). Everything else is MathBackendCPU's.
 *
 * @example
 * ```ts
 * import { PoolingBackend } from "./pool.ts";
 * const backend = new PoolingBackend();
 * const id = backend.write(new Float32Array([1, 2]), [2], "float32");
 * console.log(Array.from(backend.readSync(id) as Float32Array)); // [1, 2]
 * backend.disposeData(id);
 * ```
 */
export class PoolingBackend extends MathBackendCPU {
  override write(values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType): tf.DataId {
    claim(values);
    addLive(byteLengthOf(values));
    return super.write(values, shape, dtype);
  }

  override move(
    dataId: tf.DataId,
    values: tf.backend_util.BackendValues,
    shape: number[],
    dtype: tf.DataType,
    refCount: number,
  ): void {
    claim(values);
    const previous = this.data.has(dataId) ? byteLengthOf(this.data.get(dataId)!.values) : 0;
    addLive(byteLengthOf(values) - previous);
    super.move(dataId, values, shape, dtype, refCount);
  }

  override readSync(dataId: tf.DataId): tf.backend_util.BackendValues {
    const values = super.readSync(dataId);
    pin(values);
    return values;
  }

  override disposeData(dataId: tf.DataId, force = false): boolean {
    const values = this.data.has(dataId) ? this.data.get(dataId)!.values : undefined;
    const released = super.disposeData(dataId, force);
    if (released && values !== undefined && !this.data.has(dataId)) {
      liveBytes -= byteLengthOf(values);
      recycle(values);
    }
    return released;
  }
}
