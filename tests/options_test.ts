import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  checkInteger,
  checkNotDisposed,
  checkNumber,
  checkOptionKeys,
  describeValue,
  isTensor,
  type OptionRule,
  positiveInteger,
  resolveOptions,
} from "../lib/_options.ts";
import { resolveOptions as fromAttention } from "../lib/attention/types.ts";

type ErrorClass = typeof Error | typeof TypeError | typeof RangeError;

/** Asserts that `f` throws exactly `cls` (not a subclass or a parent) and that every pattern matches its message. */
function throwsExactly(f: () => unknown, cls: ErrorClass, ...patterns: RegExp[]): void {
  let caught: unknown;
  try {
    f();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof Error, `expected a ${cls.name}, but nothing (or a non-Error) was thrown`);
  assert.equal(caught.constructor, cls, `expected a ${cls.name}, got ${caught.constructor.name}: ${caught.message}`);
  for (const p of patterns) assert.match(caught.message, p);
}

/** One option `x` under `rule`, resolved by the owner "demo". */
function one(rule: OptionRule, value: unknown): unknown {
  return resolveOptions("demo", { x: value }, { x: "default" }, { x: rule }).x;
}

/** The message names the owner and option, what was expected and what was got. */
function rejects(rule: OptionRule, value: unknown, cls: ErrorClass, expected: RegExp, got: string): void {
  throwsExactly(() => one(rule, value), cls, /^demo: option x /, expected, new RegExp(`got ${escape(got)}`));
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

Deno.test("options: attention/types.ts re-exports the one resolveOptions", () => {
  assert.equal(fromAttention, resolveOptions);
});

Deno.test("options: defaults are filled in, given values kept, and the defaults object left alone", () => {
  const defaults = { a: 1, b: "s", c: null as number | null };
  const rules: Record<string, OptionRule> = {
    a: { type: "number" },
    b: { type: "string" },
    c: { type: "number", nullable: true },
  };
  assert.deepEqual(resolveOptions("demo", undefined, defaults, rules), { a: 1, b: "s", c: null });
  assert.deepEqual(resolveOptions("demo", { c: 3 }, defaults, rules), { a: 1, b: "s", c: 3 });
  // undefined counts as not given.
  assert.deepEqual(resolveOptions("demo", { a: undefined }, defaults, rules), { a: 1, b: "s", c: null });
  assert.deepEqual(defaults, { a: 1, b: "s", c: null });
});

Deno.test("options: unknown keys and non-object options are TypeErrors naming the owner and the valid keys", () => {
  const rules: Record<string, OptionRule> = { causal: { type: "boolean" }, eps: { type: "number" } };
  throwsExactly(
    () => resolveOptions("demo", { casual: true }, {}, rules),
    TypeError,
    /^demo: unknown option "casual"; valid options are causal, eps$/,
  );
  for (const [bad, got] of [[null, "null"], [[1], "an array of length 1"], ["x", '"x"'], [3, "3"]] as const) {
    throwsExactly(
      () => checkOptionKeys("demo", bad, ["causal"]),
      TypeError,
      new RegExp(
        `^demo: options must be an object, got ${escape(got)}; pass an object such as \\{ causal: \\.\\.\\. \\}`,
      ),
    );
  }
  assert.deepEqual(checkOptionKeys("demo", undefined, ["causal"]), {});
});

Deno.test("options: boolean and enum rules", () => {
  assert.equal(one({ type: "boolean" }, false), false);
  rejects({ type: "boolean" }, 1, TypeError, /must be true or false/, "1");
  const e: OptionRule = { type: "enum", values: ["a", "b"] };
  assert.equal(one(e, "b"), "b");
  rejects(e, "c", RangeError, /must be one of "a", "b"/, '"c"');
  rejects(e, 2, TypeError, /must be one of "a", "b"/, "2");
});

Deno.test("options: number rules check type, finiteness, integers and each bound", () => {
  const r: OptionRule = { type: "number", min: 1, max: 4, integer: true };
  for (const ok of [1, 2, 4]) assert.equal(one(r, ok), ok);
  rejects(r, "2", TypeError, /must be a finite number/, '"2"');
  rejects(r, NaN, RangeError, /must be a finite number/, "NaN");
  rejects(r, Infinity, RangeError, /must be a finite number/, "Infinity");
  rejects(r, 1.5, RangeError, /must be an integer/, "1.5");
  rejects(r, 0, RangeError, /must be >= 1/, "0");
  rejects(r, 5, RangeError, /must be <= 4/, "5");
  const open: OptionRule = { type: "number", min: 0, exclusiveMin: true };
  assert.equal(one(open, 1e-9), 1e-9);
  rejects(open, 0, RangeError, /must be > 0/, "0");
  assert.equal(one({ type: "number" }, -1e300), -1e300);
});

Deno.test("options: a number rule with list takes a non-empty array, checking every element", () => {
  const r: OptionRule = { type: "number", min: 0, max: 1, list: true };
  assert.equal(one(r, 0.5), 0.5);
  assert.deepEqual(one(r, [0.5, 1]), [0.5, 1]);
  rejects(r, [], RangeError, /must be a number or a non-empty array/, "[]");
  throwsExactly(() => one(r, [0.5, 2]), RangeError, /^demo: option x\[1\] must be <= 1, got 2$/);
  throwsExactly(() => one(r, [0.5, "a"]), TypeError, /^demo: option x\[1\] must be a finite number, got "a"$/);
  rejects(r, "a", TypeError, /must be a finite number or an array of them/, '"a"');
  // Without list an array is a wrong type.
  rejects({ type: "number" }, [1], TypeError, /must be a finite number/, "an array of length 1");
});

Deno.test("options: string rules: any string, non-empty, or matching a pattern with a hint", () => {
  assert.equal(one({ type: "string" }, ""), "");
  rejects({ type: "string" }, 5, TypeError, /must be a string/, "5");
  rejects({ type: "string", nonEmpty: true }, "", RangeError, /must be a non-empty string/, '""');
  const hex: OptionRule = { type: "string", pattern: /^[0-9a-f]+$/, hint: "lowercase hex digits" };
  assert.equal(one(hex, "0af"), "0af");
  rejects(hex, "0AF", RangeError, /must be lowercase hex digits/, '"0AF"');
  rejects({ type: "string", pattern: /^a/ }, "b", RangeError, /must be a string matching \/\^a\//, '"b"');
});

Deno.test("options: function and object rules; an object rule keeps what check returns", () => {
  const f = () => 1;
  assert.equal(one({ type: "function" }, f), f);
  rejects({ type: "function" }, "f", TypeError, /must be a function/, '"f"');
  const seen: string[] = [];
  const r: OptionRule = {
    type: "object",
    check: (v, where) => {
      seen.push(where);
      return { ...v, checked: true };
    },
  };
  assert.deepEqual(one(r, { a: 1 }), { a: 1, checked: true });
  assert.deepEqual(seen, ["demo: option x"]);
  rejects(r, [1], TypeError, /must be an object/, "an array of length 1");
  rejects(r, 1, TypeError, /must be an object/, "1");
});

Deno.test("options: tensor rules check the rank and that the tensor is live", () => {
  const before = tf.memory().numTensors;
  const m = tf.zeros([2, 3]);
  const r: OptionRule = { type: "tensor", rank: 2 };
  assert.equal(one(r, m), m);
  const v = tf.zeros([6]);
  rejects(r, v, TypeError, /must be a rank-2 tf\.Tensor/, "a float32 tensor of shape [6]");
  v.dispose();
  rejects(r, [[0]], TypeError, /must be a rank-2 tf\.Tensor/, "an array of length 1");
  m.dispose();
  throwsExactly(() => one(r, m), Error, /^demo: option x was disposed; pass a live tensor/);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("options: nullable accepts null for every kind; without it null is rejected; null-aware messages", () => {
  const kinds: OptionRule[] = [
    { type: "boolean" },
    { type: "number" },
    { type: "enum", values: ["a"] },
    { type: "string" },
    { type: "function" },
    { type: "tensor", rank: 1 },
    { type: "object", check: (v) => v },
  ];
  for (const rule of kinds) {
    assert.equal(one({ ...rule, nullable: true } as OptionRule, null), null, rule.type);
    throwsExactly(() => one(rule, null), TypeError, /^demo: option x must be .*got null/);
  }
  rejects({ type: "function", nullable: true }, 1, TypeError, /must be a function or null/, "1");
});

Deno.test("describeValue: short, typed on request, never a whole long string", () => {
  assert.equal(describeValue(null), "null");
  assert.equal(describeValue(undefined), "undefined");
  assert.equal(describeValue(42), "42");
  assert.equal(describeValue(42, { typed: true }), "number 42");
  assert.equal(describeValue(true, { typed: true }), "boolean true");
  assert.equal(describeValue('a"b'), '"a\\"b"');
  assert.equal(describeValue("a", { typed: true }), 'the string "a"');
  assert.equal(describeValue("x".repeat(100)), JSON.stringify(`${"x".repeat(60)}…`));
  assert.equal(describeValue([1, 2, 3]), "an array of length 3");
  assert.equal(describeValue(new Float32Array(4)), "an instance of Float32Array of length 4");
  assert.equal(describeValue(new Map()), "an instance of Map");
  assert.equal(describeValue({ a: 1 }), "an object");
  assert.equal(describeValue(Object.create(null)), "an object");
  assert.equal(describeValue(function named() {}), "a function (named)");
  assert.equal(describeValue(10n), "a bigint (10n)");
  assert.equal(describeValue(Symbol("s")), "a symbol (Symbol(s))");
  const t = tf.zeros([2, 3], "int32");
  assert.equal(describeValue(t), "an int32 tensor of shape [2, 3]");
  assert.ok(isTensor(t) && !isTensor({ shape: [2], dtype: "float32" }));
  t.dispose();
  assert.ok(isTensor(t), "a disposed tensor is still a tensor");
  throwsExactly(() => checkNotDisposed("demo: t", t), Error, /^demo: t was disposed/);
});

Deno.test("checkNumber: a TypeError for a non-number, a RangeError naming the broken bound", () => {
  assert.equal(checkNumber("f", "x", 2.5), 2.5);
  assert.equal(checkNumber("f", "n", 100, { min: 100, integer: true }), 100);
  throwsExactly(() => checkNumber("f", "x", "1"), TypeError, /^f: x must be a number, got "1"$/);
  throwsExactly(() => checkNumber("f", "x", NaN), RangeError, /^f: x must be finite, got NaN$/);
  throwsExactly(() => checkNumber("f", "x", -Infinity), RangeError, /^f: x must be finite, got -Infinity$/);
  throwsExactly(() => checkNumber("f", "n", 1.5, { integer: true }), RangeError, /^f: n must be an integer, got 1\.5$/);
  throwsExactly(() => checkNumber("f", "x", 99, { min: 100 }), RangeError, /^f: x must be at least 100, got 99$/);
  throwsExactly(
    () => checkNumber("f", "x", 0, { min: 0, exclusiveMin: true }),
    RangeError,
    /^f: x must be greater than 0, got 0$/,
  );
  throwsExactly(() => checkNumber("f", "x", 2, { max: 1 }), RangeError, /^f: x must be at most 1, got 2$/);
});

Deno.test("checkInteger and positiveInteger state the whole expectation in every message", () => {
  assert.equal(checkInteger("f", "step", 0), 0);
  assert.equal(checkInteger("f", "d", 21, { min: 1, max: 21 }), 21);
  throwsExactly(() => checkInteger("f", "step", -1), RangeError, /^f: step must be an integer >= 0, got -1$/);
  throwsExactly(() => checkInteger("f", "step", 0.5), RangeError, /^f: step must be an integer >= 0, got 0\.5$/);
  throwsExactly(() => checkInteger("f", "step", "1"), TypeError, /^f: step must be an integer >= 0, got "1"$/);
  throwsExactly(() => checkInteger("f", "step", 2 ** 60), RangeError, /must be an integer >= 0/);
  throwsExactly(
    () => checkInteger("f", "d", 22, { min: 1, max: 21 }),
    RangeError,
    /^f: d must be an integer from 1 to 21, got 22$/,
  );
  assert.equal(positiveInteger("f", "rounds", 1), 1);
  throwsExactly(() => positiveInteger("f", "rounds", 0), RangeError, /^f: rounds must be a positive integer, got 0$/);
  throwsExactly(() => positiveInteger("f", "rounds", NaN), RangeError, /must be a positive integer, got NaN$/);
  throwsExactly(() => positiveInteger("f", "rounds", null), TypeError, /must be a positive integer, got null$/);
});
