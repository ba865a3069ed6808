// This suite holds the JavaScript kernels (double precision, rounded once) to the exact values: the backend is pinned
// to them while it starts. tests/dnnl_test.ts holds oneDNN's forward (the default with libdnnl2) to its own bound.
import { releaseKernelPin } from "./_js_kernels.ts";
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { loadableBackends } from "../lib/backend.ts";
import { SOFTMAX_CROSS_ENTROPY, SOFTMAX_CROSS_ENTROPY_GRAD, softmaxCrossEntropy } from "../lib/blas/fused_loss.ts";
import { createModel, type ModelBatch, type TransformerModel } from "../lib/models/mod.ts";
import { seededNormal, seededUniform } from "../lib/random.ts";
import { onBackend } from "./helpers.ts";

const HAS_BLAS = (await loadableBackends()).includes("blas");
releaseKernelPin();

/** One test case: logits [rows, V] as float32 values, targets, optional weights, the upstream gradient per row. */
interface Case {
  what: string;
  rows: number;
  classes: number;
  logits: Float32Array;
  targets: Int32Array;
  weights?: Float32Array;
  cot: Float32Array;
}

function makeCase(
  what: string,
  rows: number,
  classes: number,
  options: { seed: number; scale?: number; weights?: "random" | "some zero"; edit?: (x: Float32Array) => void },
): Case {
  const normal = seededNormal(options.seed);
  const uniform = seededUniform(options.seed + 1);
  const logits = Float32Array.from({ length: rows * classes }, () => normal() * (options.scale ?? 1));
  options.edit?.(logits);
  const targets = Int32Array.from({ length: rows }, () => Math.floor(uniform() * classes));
  const cot = Float32Array.from({ length: rows }, () => normal());
  let weights: Float32Array | undefined;
  if (options.weights === "random") weights = Float32Array.from({ length: rows }, () => 2 * uniform());
  if (options.weights === "some zero") {
    weights = Float32Array.from({ length: rows }, (_, r) => (r % 3 === 1 ? 0 : r % 3 === 2 ? 0.5 : 1));
  }
  return { what, rows, classes, logits, targets, weights, cot };
}

// Awkward shapes and values: one row, one class, a vocabulary of 257, logits of scale 1e-30 (a uniform softmax) to
// 1e4 (a one-hot softmax), rows where the target dominates by 60 (a loss near e^-60), masked rows.
const CASES: Case[] = [
  makeCase("[1, 1]", 1, 1, { seed: 1 }),
  makeCase("[1, 257]", 1, 257, { seed: 2 }),
  makeCase("[5, 1]", 5, 1, { seed: 3, weights: "random" }),
  makeCase("[37, 257]", 37, 257, { seed: 4 }),
  makeCase("[64, 256]", 64, 256, { seed: 5, scale: 3 }),
  makeCase("[16, 256], weights", 16, 256, { seed: 6, weights: "random" }),
  makeCase("[30, 50], a third of the weights 0", 30, 50, { seed: 7, weights: "some zero" }),
  makeCase("[8, 257], scale 1e4", 8, 257, { seed: 8, scale: 1e4 }),
  makeCase("[8, 257], scale 1e-30", 8, 257, { seed: 9, scale: 1e-30 }),
  makeCase("[8, 33], scale 30", 8, 33, { seed: 10, scale: 30 }),
  makeCase("[3, 7], equal logits", 3, 7, { seed: 11, scale: 0, edit: (x) => x.fill(-2.5) }),
];
// Targets that dominate by 60: −log p is about 32 e^-60, far below float32's epsilon (but not its smallest value).
const dominated = makeCase("[6, 32], target ahead by 60", 6, 32, { seed: 12 });
dominated.targets.forEach((t, r) => (dominated.logits[r * 32 + t] = 60));
CASES.push(dominated);

/** The loss per row and its gradient, in doubles: log Σ e^x − x_t with the largest term first, and w·dy·(p − δ). */
function exact(c: Case): { loss: number[]; grad: number[] } {
  const loss: number[] = [];
  const grad: number[] = [];
  for (let r = 0; r < c.rows; r++) {
    const row = Array.from(c.logits.subarray(r * c.classes, (r + 1) * c.classes));
    const w = c.weights ? c.weights[r] : 1;
    const max = Math.max(...row);
    // Smallest terms first, so that the sum of the terms other than the maximum keeps their digits.
    const terms = row.map((x) => Math.exp(x - max)).sort((a, b) => a - b);
    terms.pop(); // the maximum's own 1
    const rest = terms.reduce((s, e) => s + e, 0);
    const logSum = max + Math.log1p(rest);
    loss.push(w === 0 ? 0 : w * ((max - row[c.targets[r]]) + Math.log1p(rest)));
    row.forEach((x, j) => grad.push(w * c.cot[r] * (Math.exp(x - logSum) - (j === c.targets[r] ? 1 : 0))));
  }
  return { loss, grad };
}

/** Loss per row and d(Σ loss · cot)/d logits, through `ce`. */
function lossAndGrad(
  ce: (logits: tf.Tensor2D, targets: tf.Tensor1D, weights?: tf.Tensor1D) => tf.Tensor1D,
  c: Case,
): { loss: Float32Array; grad: Float32Array } {
  return tf.tidy(() => {
    const logits = tf.tensor2d(c.logits, [c.rows, c.classes]);
    const targets = tf.tensor1d(c.targets, "int32");
    const weights = c.weights ? tf.tensor1d(c.weights) : undefined;
    const cot = tf.tensor1d(c.cot);
    const loss = ce(logits, targets, weights).dataSync() as Float32Array;
    const grad = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(ce(x as tf.Tensor2D, targets, weights), cot)))(logits);
    return { loss: Float32Array.from(loss), grad: Float32Array.from(grad.dataSync() as Float32Array) };
  });
}

const fused = (logits: tf.Tensor2D, targets: tf.Tensor1D, weights?: tf.Tensor1D) =>
  softmaxCrossEntropy(logits, targets, { weights });

/** The model's loss before the fused kernel: tfjs's logSoftmax, oneHot, product and sum, negated; times the weights. */
function composite(logits: tf.Tensor2D, targets: tf.Tensor1D, weights?: tf.Tensor1D): tf.Tensor1D {
  const picked = tf.sum(tf.mul(tf.oneHot(targets, logits.shape[1]), tf.logSoftmax(logits)), 1);
  return (weights ? tf.neg(tf.mul(picked, weights)) : tf.neg(picked)) as tf.Tensor1D;
}

const ULP = 2 ** -23;

Deno.test({
  name: "fused loss: the blas kernels give −log softmax and its gradient within a float32 rounding of the exact values",
  ignore: !HAS_BLAS,
  fn: async () => {
    for (const c of CASES) {
      const { loss, grad } = await onBackend("blas", () => lossAndGrad(fused, c));
      const want = exact(c);
      want.loss.forEach((e, r) => {
        // One rounding of a value computed in doubles: at most half a unit in the last place, and never flushed to 0.
        assert.ok(Math.abs(loss[r] - e) <= ULP * Math.abs(e), `${c.what}: loss row ${r} is ${loss[r]}, exactly ${e}`);
      });
      want.grad.forEach((e, i) => {
        const r = Math.floor(i / c.classes);
        const p = Math.abs(e / (c.cot[r] * (c.weights?.[r] ?? 1))) || 0;
        // Two roundings: the softmax (stored as float32), then the product.
        const bound = ULP * (Math.abs(e) + Math.abs(c.cot[r] * (c.weights?.[r] ?? 1)) * p) + 1e-45;
        assert.ok(Math.abs(grad[i] - e) <= bound, `${c.what}: d logits element ${i} is ${grad[i]}, exactly ${e}`);
      });
    }
  },
});

Deno.test({
  name: "fused loss: agrees with the logSoftmax composite on cpu (loss to 1e-6 relative, gradient to 1e-6 of dy)",
  ignore: !HAS_BLAS,
  fn: async () => {
    // tf.oneHot cannot make one class: the former composite did not run with V = 1 (the next test covers it).
    for (const c of CASES.filter((c) => c.classes > 1)) {
      const f = await onBackend("blas", () => lossAndGrad(fused, c));
      const ref = await onBackend("cpu", () => lossAndGrad(composite, c));
      // The composite rounds log Σ e^(x − max) (a value in [0, log V]) to float32: an absolute error up to about
      // 1e-7 even where the loss is far smaller, so below 1 the bound is absolute.
      ref.loss.forEach((v, r) =>
        assert.ok(
          Math.abs(f.loss[r] - v) <= 1e-6 * Math.max(1, Math.abs(v)),
          `${c.what}: row ${r}: fused ${f.loss[r]}, composite ${v}`,
        )
      );
      // Each gradient element is dy·w·(p − δ), with p in [0, 1]: the composite's roundings of log p and of the sums
      // stay within a few float32 units of |dy·w|.
      ref.grad.forEach((v, i) => {
        const r = Math.floor(i / c.classes);
        const scale = Math.abs(c.cot[r] * (c.weights?.[r] ?? 1));
        assert.ok(
          Math.abs(f.grad[i] - v) <= 1e-6 * scale,
          `${c.what}: d logits ${i}: fused ${f.grad[i]}, composite ${v}`,
        );
      });
    }
  },
});

Deno.test({
  name: "fused loss: softmaxCrossEntropy runs the former composite bit for bit where the backend has no fused kernel",
  ignore: !HAS_BLAS,
  fn: async () => {
    for (const c of CASES.slice(3, 7)) {
      const op = await onBackend("cpu", () => lossAndGrad(fused, c));
      const ref = await onBackend("cpu", () => lossAndGrad(composite, c));
      assert.deepEqual(op, ref, c.what);
    }
    // One class: a loss of 0 and no gradient, where tf.oneHot would refuse a depth of 1.
    const one = await onBackend("cpu", () => lossAndGrad(fused, CASES[2]));
    assert.ok([...one.loss, ...one.grad].every((v) => v === 0), `${one.loss} ${one.grad}`);
  },
});

Deno.test({
  name: "fused loss: infinities, NaN and zero weights",
  ignore: !HAS_BLAS,
  fn: async () => {
    await onBackend("blas", () => {
      const run = (logits: number[][], targets: number[], weights?: number[]) =>
        lossAndGrad(fused, {
          what: "special",
          rows: logits.length,
          classes: logits[0].length,
          logits: Float32Array.from(logits.flat()),
          targets: Int32Array.from(targets),
          weights: weights && Float32Array.from(weights),
          cot: Float32Array.from(logits, () => 1),
        });
      // A −Infinity logit is a class of probability 0: the others share the softmax (the composite gives NaN here,
      // from 0 · −Infinity in its one-hot product).
      const ln2 = Math.fround(Math.LN2);
      const masked = run([[0, -Infinity, 0]], [0]);
      assert.deepEqual(Array.from(masked.loss), [ln2]);
      assert.deepEqual(Array.from(masked.grad), [-0.5, 0, 0.5]);
      // The target at −Infinity: an infinite loss; its gradient pushes it up with weight 1 and the rest down.
      const impossible = run([[-Infinity, 0, 0]], [0]);
      assert.deepEqual(Array.from(impossible.loss), [Infinity]);
      assert.deepEqual(Array.from(impossible.grad), [-1, 0.5, 0.5]);
      // NaN, +Infinity or only −Infinity make the row NaN, as in the composite; other rows are unaffected.
      const bad = run([[NaN, 0], [Infinity, 0], [-Infinity, -Infinity], [0, 0]], [1, 1, 0, 0]);
      assert.deepEqual(Array.from(bad.loss), [NaN, NaN, NaN, ln2]);
      assert.ok(bad.grad.subarray(0, 6).every((v) => Number.isNaN(v)));
      assert.deepEqual(Array.from(bad.grad.subarray(6)), [-0.5, 0.5]);
      // A row of weight 0 is not read: NaN logits there give a loss and a gradient of 0.
      const skipped = run([[NaN, 1], [0, 0]], [0, 1], [0, 2]);
      assert.deepEqual(Array.from(skipped.loss), [0, 2 * ln2]);
      assert.deepEqual(Array.from(skipped.grad), [0, 0, 1, -1]);
      // Every weight 0: nothing counts.
      const none = run([[1, 2], [3, 4]], [0, 1], [0, 0]);
      assert.deepEqual(Array.from(none.loss), [0, 0]);
      assert.deepEqual(Array.from(none.grad), [0, 0, 0, 0]);
      // No rows at all.
      const empty = tf.tidy(() => softmaxCrossEntropy(tf.zeros([0, 4]), tf.tensor1d([], "int32")).shape);
      assert.deepEqual(empty, [0]);
    });
  },
});

Deno.test({
  name: "fused loss: one kernel forward and one backward on blas",
  ignore: !HAS_BLAS,
  fn: async () => {
    await onBackend("blas", async () => {
      const c = CASES[4];
      const [logits, targets, cot] = [
        tf.tensor2d(c.logits, [c.rows, c.classes]),
        tf.tensor1d(c.targets, "int32"),
        tf.tensor1d(c.cot),
      ];
      const forward = await tf.profile(() => softmaxCrossEntropy(logits, targets).dispose());
      assert.deepEqual(forward.kernels.map((k) => k.name), [SOFTMAX_CROSS_ENTROPY]);
      const backward = await tf.profile(() =>
        tf.grad((x: tf.Tensor) => tf.sum(tf.mul(softmaxCrossEntropy(x as tf.Tensor2D, targets), cot)))(logits)
          .dispose()
      );
      const names = backward.kernels.map((k) => k.name);
      assert.ok(names.includes(SOFTMAX_CROSS_ENTROPY) && names.includes(SOFTMAX_CROSS_ENTROPY_GRAD), String(names));
      assert.ok(!names.includes("LogSoftmax") && !names.includes("OneHot"), String(names));
      tf.dispose([logits, targets, cot]);
    });
  },
});

Deno.test({
  name: "fused loss: inside nested gradient recordings it runs the composite",
  ignore: !HAS_BLAS,
  fn: async () => {
    // Where the gradient may itself be differentiated, softmaxCrossEntropy runs tfjs's composite: an inner gradient
    // taken inside an outer recording has the composite's bits.
    const c = CASES[4];
    const nested = (ce: typeof fused) => {
      let inner: Float32Array | undefined;
      tf.tidy(() => {
        const [logits, targets, cot] = [
          tf.tensor2d(c.logits, [c.rows, c.classes]),
          tf.tensor1d(c.targets, "int32"),
          tf.tensor1d(c.cot),
        ];
        tf.grad((x: tf.Tensor) => {
          const g = tf.grad((y: tf.Tensor) => tf.sum(tf.mul(ce(y as tf.Tensor2D, targets), cot)))(x);
          inner = Float32Array.from(g.dataSync() as Float32Array);
          return tf.sum(tf.mul(x, g));
        })(logits);
      });
      return inner!;
    };
    const ref = await onBackend("blas", () => nested(composite));
    assert.deepEqual(await onBackend("blas", () => nested(fused)), ref);
  },
});

Deno.test({
  name: "fused loss: bad arguments are clear errors",
  ignore: !HAS_BLAS,
  fn: async () => {
    for (const backend of ["blas", "cpu"] as const) {
      await onBackend(backend, () =>
        tf.tidy(() => {
          const logits = tf.zeros([2, 3]) as tf.Tensor2D;
          const targets = tf.tensor1d([0, 2], "int32");
          const bad = (f: () => unknown, kind: typeof TypeError | typeof RangeError, re: RegExp) =>
            assert.throws(f, (e) => e instanceof kind && re.test((e as Error).message), `${backend}: ${re}`);
          bad(() => softmaxCrossEntropy(tf.zeros([6]) as unknown as tf.Tensor2D, targets), TypeError, /logits must/);
          bad(() => softmaxCrossEntropy(tf.zeros([2, 0]) as tf.Tensor2D, targets), RangeError, /at least one class/);
          bad(() => softmaxCrossEntropy(logits, tf.tensor1d([0, 2])), TypeError, /targets must be an int32/);
          bad(() => softmaxCrossEntropy(logits, tf.tensor1d([0], "int32")), RangeError, /targets has 1 entries/);
          bad(() => softmaxCrossEntropy(logits, targets, { weights: tf.ones([3]) as tf.Tensor1D }), RangeError, /3/);
          bad(
            () => softmaxCrossEntropy(logits, targets, { weights: tf.ones([2], "int32") as tf.Tensor1D }),
            TypeError,
            /options\.weights must be a float32/,
          );
          bad(() => softmaxCrossEntropy(logits, targets, { mask: 1 } as never), TypeError, /unknown option "mask"/);
        }));
    }
    // The blas kernel checks every target (tfjs's oneHot would give a row of zeros, a loss of 0).
    await onBackend("blas", () =>
      tf.tidy(() => {
        assert.throws(
          () => softmaxCrossEntropy(tf.zeros([2, 3]), tf.tensor1d([0, 3], "int32")),
          (e) => e instanceof RangeError && /targets\[1\] is 3, outside 0\.\.2/.test(e.message),
        );
      }));
  },
});

/** The model's loss as lib/models/model.ts computed it before the fused kernel, from its logits. */
function formerLoss(model: TransformerModel, batch: ModelBatch): tf.Scalar {
  const ids = tf.tensor2d(batch.inputs, [batch.batch, batch.length], "int32");
  const logits = model.logits(ids, batch.kind === "cls" ? { pad: batch.pad } : {});
  if (batch.kind === "cls") {
    const labels = tf.oneHot(tf.tensor1d(batch.labels, "int32"), model.config.numClasses!);
    return tf.neg(tf.mean(tf.sum(tf.mul(labels, tf.logSoftmax(logits)), 1)));
  }
  const V = model.config.vocabSize;
  const logp = tf.logSoftmax(tf.reshape(logits, [batch.batch * batch.length, V]));
  const picked = tf.sum(tf.mul(tf.oneHot(tf.tensor1d(batch.targets, "int32"), V), logp), 1);
  if (!batch.mask) return tf.neg(tf.mean(picked));
  const mask = tf.tensor1d(batch.mask);
  return tf.neg(tf.div(tf.sum(tf.mul(picked, mask)), tf.maximum(tf.sum(mask), 1)));
}

function lossAndVariableGrads(model: TransformerModel, loss: () => tf.Scalar) {
  return tf.tidy(() => {
    const names = Object.keys(model.variables);
    const { value, grads } = tf.variableGrads(loss, names.map((n) => model.variables[n]));
    return {
      loss: value.dataSync()[0],
      grads: names.map((n) => Float32Array.from(grads[model.variables[n].name].dataSync() as Float32Array)),
    };
  });
}

Deno.test({
  name: "fused loss: the model's loss and gradients (lm, masked lm, classifier) agree with the former composite",
  ignore: !HAS_BLAS,
  fn: async () => {
    const uniform = seededUniform(5);
    const ids = (n: number, V: number) => Int32Array.from({ length: n }, () => Math.floor(uniform() * V));
    const [b, n] = [3, 24];
    const setups: [string, Parameters<typeof createModel>[0], ModelBatch][] = [
      ["lm", { attention: "transnormer-t2", layers: 2, dModel: 32, heads: 4 }, {
        kind: "lm",
        inputs: ids(b * n, 256),
        targets: ids(b * n, 256),
        batch: b,
        length: n,
      }],
      ["masked lm", { attention: "vanilla", layers: 2, dModel: 32, heads: 4, task: "mlm" }, {
        kind: "lm",
        inputs: ids(b * n, 256),
        targets: ids(b * n, 256),
        // 15% of the positions count, the rest (weight 0) are skipped by the kernel.
        mask: Float32Array.from({ length: b * n }, () => (uniform() < 0.15 ? 1 : 0)),
        batch: b,
        length: n,
      }],
      ["classifier", { attention: "vanilla", layers: 1, dModel: 16, heads: 2, task: "classify", numClasses: 5 }, {
        kind: "cls",
        inputs: ids(b * n, 256),
        labels: ids(b, 5),
        numClasses: 5,
        pad: 0,
        batch: b,
        length: n,
      }],
    ];
    await onBackend("blas", () => {
      for (const [what, config, batch] of setups) {
        const model = createModel(config, { log: () => {} });
        const f = lossAndVariableGrads(model, () => model.loss(batch));
        const ref = lossAndVariableGrads(model, () => formerLoss(model, batch));
        // The forward pass is the same bits; the loss differs by the composite's roundings.
        assert.ok(Math.abs(f.loss - ref.loss) <= 1e-6 * ref.loss, `${what}: loss ${f.loss} vs ${ref.loss}`);
        // d logits differ by a few float32 units of dy (1 / rows) per element; through the linear backward pass
        // that stays a few units of each gradient's scale: 1e-5 of its largest element.
        ref.grads.forEach((g, k) => {
          const scale = g.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
          const diff = g.reduce((m, v, i) => Math.max(m, Math.abs(v - f.grads[k][i])), 0);
          assert.ok(
            scale > 0 && diff <= 1e-5 * scale,
            `${what}: ${Object.keys(model.variables)[k]}: ${diff} / ${scale}`,
          );
        });
        model.dispose();
      }
    });
  },
});
