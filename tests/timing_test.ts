import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  computed,
  interleavedTimes,
  interleavedTimesAsync,
  medianMs,
  medianMsAsync,
  timeInterval,
} from "../lib/timing.ts";
import "./helpers.ts";
import { initBackend } from "../lib/backend.ts";
import { poolStats } from "../lib/blas/mod.ts";

Deno.test("medianMs runs fn warmup + repeats times and disposes every result", () => {
  let calls = 0;
  const start = tf.memory().numTensors;
  const ms = medianMs(() => {
    calls++;
    return { a: tf.ones([4]), b: [tf.zeros([2])] };
  }, { repeats: 4, warmup: 2 });
  assert.equal(calls, 6);
  assert.ok(Number.isFinite(ms) && ms >= 0);
  assert.equal(tf.memory().numTensors, start);
});

Deno.test("medianMs rejects bad options", () => {
  assert.throws(() => medianMs(() => [], { repeats: 0 }), /repeats must be an integer >= 1, got 0/);
  assert.throws(() => medianMs(() => [], { warmup: -1 }), /warmup must be an integer >= 0/);
  assert.throws(() => medianMs(() => [], { repeat: 3 } as never), /unknown option "repeat"/);
});

/** Counts every `data()` read (of any tensor) while `fn` runs, with the size of what was read. */
async function spyReads<T>(fn: () => Promise<T>): Promise<{ out: T; sizes: number[] }> {
  const sizes: number[] = [];
  const data = tf.Tensor.prototype.data;
  tf.Tensor.prototype.data = function (this: tf.Tensor) {
    sizes.push(this.size);
    return data.call(this);
  } as typeof data;
  try {
    return { out: await fn(), sizes };
  } finally {
    tf.Tensor.prototype.data = data;
  }
}

Deno.test("medianMsAsync runs fn warmup + repeats times, awaits one element of each result and disposes it", async () => {
  let calls = 0;
  const start = tf.memory().numTensors;
  const { out: ms, sizes } = await spyReads(() =>
    medianMsAsync(() => {
      calls++;
      return { a: tf.ones([4, 3]), b: [tf.zeros([2])], c: tf.scalar(1) };
    }, { repeats: 4, warmup: 2 })
  );
  assert.equal(calls, 6);
  // Three tensors per run, each waited for by reading one element: never a whole output.
  assert.deepEqual(sizes, new Array(18).fill(1));
  assert.ok(Number.isFinite(ms) && ms >= 0);
  assert.equal(tf.memory().numTensors, start);
  await assert.rejects(() => medianMsAsync(() => [], { repeats: 0 }), /medianMsAsync: repeats must be an integer >= 1/);
  await assert.rejects(() => medianMsAsync(() => [], { warmup: 1.5 }), /warmup must be an integer >= 0/);
  await assert.rejects(() => medianMsAsync(() => [], { repeat: 3 } as never), /unknown option "repeat"/);
});

Deno.test("computed reads the first element of each tensor, leaves them alive, and handles empty ones", async () => {
  const t = tf.tensor2d([[5, 6], [7, 8]]);
  const empty = tf.zeros([0, 3]);
  const start = tf.memory().numTensors;
  const seen: number[] = [];
  const data = tf.Tensor.prototype.data;
  tf.Tensor.prototype.data = function (this: tf.Tensor) {
    const out = data.call(this);
    out.then((v) => seen.push(...Array.from(v as Float32Array)));
    return out;
  } as typeof data;
  try {
    await computed([t, { e: empty }]);
  } finally {
    tf.Tensor.prototype.data = data;
  }
  assert.deepEqual(seen, [5]);
  assert.equal(tf.memory().numTensors, start);
  assert.equal(t.isDisposed, false);
  tf.dispose([t, empty]);
});

Deno.test("on blas, the timers leave their outputs unread, so the backend's pool hands the arrays out again", async () => {
  const previous = await initBackend({ quiet: true });
  await initBackend({ backend: "blas", quiet: true });
  const a = tf.ones([128, 128]); // 64 KiB outputs: pooled (lib/blas/pool.ts)
  try {
    for (
      const time of [
        () => medianMs(() => tf.matMul(a, a), { repeats: 5 }),
        () => medianMsAsync(() => tf.matMul(a, a), { repeats: 5 }),
      ]
    ) {
      const before = poolStats();
      await time();
      // Six runs: every output after the first is a recycled array (a read-back one would never be).
      assert.ok(poolStats().reused - before.reused >= 5, JSON.stringify([before, poolStats()]));
    }
  } finally {
    a.dispose();
    await initBackend({ backend: previous, quiet: true });
  }
});

Deno.test("interleavedTimes: every function once per round, in an order rotated each round, warmups apart, nothing leaked", () => {
  const start = tf.memory().numTensors;
  const calls: string[] = [];
  const make = (name: string) => () => {
    calls.push(name);
    return tf.ones([2, 2]);
  };
  const seen: string[] = [];
  const times = interleavedTimes({ a: make("a"), b: make("b"), c: make("c") }, {
    rounds: 3,
    repeats: 2,
    warmup: 1,
    onTime: (round, name) => seen.push(`${round}${name}`),
  });
  // One warmup call each, then per round: each function twice (repeats), starting one further along.
  assert.deepEqual(calls.join(""), "abc" + "aabbcc" + "bbccaa" + "ccaabb");
  assert.deepEqual(seen, ["0a", "0b", "0c", "1b", "1c", "1a", "2c", "2a", "2b"]);
  assert.deepEqual(Object.keys(times), ["a", "b", "c"]);
  for (const name of ["a", "b", "c"]) {
    assert.equal(times[name].length, 3);
    assert.ok(times[name].every((ms) => ms >= 0 && Number.isFinite(ms)));
  }
  assert.equal(tf.memory().numTensors, start);
  assert.throws(() => interleavedTimes({}), /at least one function/);
  assert.throws(() => interleavedTimes({ a: make("a") }, { rounds: 0 }), RangeError);
  assert.throws(() => interleavedTimes({ a: make("a") }, { round: 3 } as never), /unknown option "round"/);
});

Deno.test("interleavedTimesAsync: the same calls in the same rotated order as interleavedTimes, every read awaited", async () => {
  const start = tf.memory().numTensors;
  const trace = () => {
    const calls: string[] = [], seen: string[] = [];
    const make = (name: string) => () => {
      calls.push(name);
      return tf.ones([2, 2]);
    };
    const fns = { a: make("a"), b: make("b"), c: make("c") };
    const options = { rounds: 3, repeats: 2, warmup: 1, onTime: (r: number, name: string) => seen.push(`${r}${name}`) };
    return { fns, options, calls, seen };
  };
  const sync = trace(), async = trace();
  const { sizes: syncReads } = await spyReads(() => Promise.resolve(interleavedTimes(sync.fns, sync.options)));
  const { out: times, sizes } = await spyReads(() => interleavedTimesAsync(async.fns, async.options));
  assert.deepEqual(async.calls, sync.calls);
  assert.deepEqual(async.seen, sync.seen);
  // 3 warm-up runs and 3 rounds × 3 functions × 2 repeats, each output waited for by one element's `await data()`.
  assert.deepEqual(sizes, new Array(3 + 18).fill(1));
  assert.deepEqual(syncReads, []);
  assert.deepEqual(Object.keys(times), ["a", "b", "c"]);
  assert.ok(Object.values(times).every((ms) => ms.length === 3 && ms.every((t) => t >= 0 && Number.isFinite(t))));
  assert.equal(tf.memory().numTensors, start);
  await assert.rejects(() => interleavedTimesAsync({}), RangeError);
  await assert.rejects(() => interleavedTimesAsync({ a: () => tf.ones([1]) }, { repeats: 0 }), RangeError);
  await assert.rejects(() => interleavedTimesAsync({ a: () => tf.ones([1]) }, { round: 3 } as never), TypeError);
  await assert.rejects(() => interleavedTimesAsync({ a: 1 } as never), /fns.a must be a function/);
});

Deno.test("timeInterval: the geometric mean and the t interval of log times, mapped back", () => {
  // log times 0, ln 2, 2 ln 2: mean ln 2, sd ln 2, se ln 2 / √3, t(0.975, 2) = 4.302653.
  const iv = timeInterval([1, 2, 4]);
  const halfWidth = 4.302653 * Math.LN2 / Math.sqrt(3);
  assert.ok(Math.abs(iv.estimate - 2) < 1e-12);
  assert.ok(Math.abs(Math.log(iv.high / 2) - halfWidth) < 1e-5 && Math.abs(Math.log(2 / iv.low) - halfWidth) < 1e-5);
  assert.equal(iv.n, 3);
  assert.equal(iv.level, 0.95);
  // A skewed sample: one slow round pulls the arithmetic mean far more than the geometric one.
  const skewed = timeInterval([10, 10, 10, 1000]);
  assert.ok(Math.abs(skewed.estimate - 10 * 100 ** 0.25) < 1e-9 && skewed.low > 0);
  assert.ok(timeInterval([1, 2, 4], { level: 0.8 }).high < iv.high);
  const one = timeInterval([5]);
  assert.ok(Math.abs(one.estimate - 5) < 1e-12 && Number.isNaN(one.low) && typeof one.reason === "string");
  assert.throws(
    () => timeInterval([1, 0]),
    (e: Error) => e instanceof RangeError && /ms\[1\] must be a finite time > 0/.test(e.message),
  );
  assert.throws(() => timeInterval([1, "2"] as never), TypeError);
  assert.throws(() => timeInterval([]), RangeError);
});
