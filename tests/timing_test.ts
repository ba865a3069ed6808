import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { interleavedTimes, interleavedTimesAsync, medianMs, medianMsAsync, timeInterval } from "../lib/timing.ts";
import "./helpers.ts";

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

Deno.test("medianMsAsync runs fn warmup + repeats times, awaits each result's data and disposes it", async () => {
  let calls = 0;
  let reads = 0;
  const start = tf.memory().numTensors;
  const ms = await medianMsAsync(() => {
    calls++;
    const a = tf.ones([4]);
    // Counts the reads the timer awaits: one per returned tensor.
    const data = a.data.bind(a);
    a.data = (() => (reads++, data())) as typeof a.data;
    return { a, b: [tf.zeros([2])] };
  }, { repeats: 4, warmup: 2 });
  assert.equal(calls, 6);
  assert.equal(reads, 6);
  assert.ok(Number.isFinite(ms) && ms >= 0);
  assert.equal(tf.memory().numTensors, start);
  await assert.rejects(() => medianMsAsync(() => [], { repeats: 0 }), /medianMsAsync: repeats must be an integer >= 1/);
  await assert.rejects(() => medianMsAsync(() => [], { warmup: 1.5 }), /warmup must be an integer >= 0/);
  await assert.rejects(() => medianMsAsync(() => [], { repeat: 3 } as never), /unknown option "repeat"/);
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
    let reads = 0;
    const make = (name: string) => () => {
      calls.push(name);
      const t = tf.ones([2, 2]);
      const data = t.data.bind(t);
      t.data = (() => (reads++, data())) as typeof t.data;
      return t;
    };
    const fns = { a: make("a"), b: make("b"), c: make("c") };
    const options = { rounds: 3, repeats: 2, warmup: 1, onTime: (r: number, name: string) => seen.push(`${r}${name}`) };
    return { fns, options, calls, seen, reads: () => reads };
  };
  const sync = trace(), async = trace();
  interleavedTimes(sync.fns, sync.options);
  const times = await interleavedTimesAsync(async.fns, async.options);
  assert.deepEqual(async.calls, sync.calls);
  assert.deepEqual(async.seen, sync.seen);
  // 3 warm-up runs and 3 rounds × 3 functions × 2 repeats, each output read once by `await data()`.
  assert.equal(async.reads(), 3 + 18);
  assert.equal(sync.reads(), 0);
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
