import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { variableGrads } from "../lib/train/mod.ts";
import { PRESETS } from "../lib/models/config.ts";
import { createModel } from "../lib/models/mod.ts";
import { setFiniteChecks } from "../lib/attention/mod.ts";
import { dataBytes, resetPeakDataBytes } from "../lib/blas/pool.ts";
import { BLAS_BACKEND } from "../lib/blas/backend.ts";
import type { LmBatch } from "../lib/data/mod.ts";
import { seededNormal } from "../lib/random.ts";
import { onBackend } from "./helpers.ts";

type Grads = { value: tf.Scalar; grads: tf.NamedTensorMap };

/** The value and every gradient as plain arrays (then disposed), for bitwise comparison. */
function read(out: Grads): { value: number; grads: Record<string, number[]> } {
  const grads: Record<string, number[]> = {};
  for (const [name, g] of Object.entries(out.grads)) grads[name] = Array.from(g.dataSync());
  const value = out.value.dataSync()[0];
  tf.dispose([out.value, ...Object.values(out.grads)]);
  return { value, grads };
}

function seededVariable(shape: number[], seed: number): tf.Variable {
  const normal = seededNormal(seed);
  const size = shape.reduce((a, b) => a * b, 1);
  return tf.tidy(() => tf.variable(tf.tensor(Float32Array.from({ length: size }, normal), shape)));
}

/** Broadcasting Add and Sub, Reshape, Sum, Mean, Slice, Concat, a variable read twice, an Identity, one unreached. */
function graph(w: tf.Variable, b: tf.Variable, unused: tf.Variable): () => tf.Scalar {
  return () => {
    const x = tf.sub(tf.add(tf.reshape(w, [3, 4]), b), tf.mul(b, 0.5)); // [3, 4] + [4]
    const y = tf.concat([tf.slice(x, [0, 1], [3, 2]), tf.square(tf.clone(w)).reshape([3, 4])], 1); // [3, 6]
    const z = tf.mul(tf.sum(tf.tanh(y), 0), tf.mean(tf.exp(tf.mul(x, 0.1)), 1, true).reshape([3]).sum());
    tf.mul(unused, 2); // recorded, on no path to the value
    return tf.sum(tf.mul(z, tf.reshape(w, [12]).slice([0], [6]))) as tf.Scalar;
  };
}

for (const backend of ["cpu", BLAS_BACKEND] as const) {
  Deno.test(`variableGrads equals tf.variableGrads bit for bit on a small graph (${backend})`, async () => {
    await onBackend(backend, () => {
      const w = seededVariable([12], 1), b = seededVariable([4], 2), unused = seededVariable([2], 3);
      try {
        const f = graph(w, b, unused);
        const theirs = read(tf.variableGrads(f, [w, b, unused]));
        const ours = read(variableGrads(f, [w, b, unused]));
        assert.deepEqual(ours, theirs);
        assert.deepEqual(Object.keys(ours.grads).sort(), [w.name, b.name].sort()); // the unreached one is left out
        const state = tf.engine().state;
        assert.equal(state.gradientDepth, 0);
        assert.equal(state.activeTape, null);
      } finally {
        tf.dispose([w, b, unused]);
      }
    });
  });
}

Deno.test("variableGrads equals tf.variableGrads bit for bit on every preset's model, LM and classifier", () => {
  const finite = setFiniteChecks(false);
  try {
    const start = tf.memory().numTensors;
    const normal = seededNormal(7);
    const n = 9, batchSize = 2;
    const ids = Int32Array.from({ length: batchSize * n }, () => Math.floor((normal() + 4) * 30) & 255);
    const lm: LmBatch = {
      kind: "lm",
      inputs: ids,
      targets: ids.map((t) => (t * 7 + 3) & 255),
      batch: batchSize,
      length: n,
    };
    for (const preset of PRESETS) {
      for (const task of ["lm", "classify"] as const) {
        const model = createModel(
          {
            attention: preset,
            layers: 2,
            dModel: 16,
            heads: 2,
            maxLength: n,
            seed: 5,
            ...(task === "classify" ? { task, numClasses: 3 } : {}),
          },
          { log: () => {} },
        );
        try {
          const batch = task === "lm" ? lm : {
            kind: "cls" as const,
            inputs: ids,
            labels: Int32Array.from([0, 2]),
            batch: batchSize,
            length: n,
            numClasses: 3,
            pad: 0,
          };
          const vars = Object.values(model.variables) as tf.Variable[];
          const theirs = read(tf.variableGrads(() => model.loss(batch), vars));
          const ours = read(variableGrads(() => model.loss(batch), vars));
          assert.deepEqual(ours, theirs, `${preset} ${task}`);
          assert.equal(Object.keys(ours.grads).length, vars.length, `${preset} ${task}: every variable has a gradient`);
        } finally {
          model.dispose();
        }
      }
    }
    assert.equal(tf.memory().numTensors, start);
  } finally {
    setFiniteChecks(finite);
  }
});

Deno.test("variableGrads: Reshape, Add and Sub save their inputs' shapes only; Mul saves both tensors as tfjs does", () => {
  const w = seededVariable([4, 3], 4);
  try {
    // Tensors added by each op inside the forward pass: its output, plus a kept clone of each tensor it saves.
    const added = (grad: typeof variableGrads) => {
      const counts: number[] = [];
      const f = () => {
        let before = tf.memory().numTensors;
        const step = <T extends tf.Tensor>(t: T) => {
          counts.push(tf.memory().numTensors - before);
          before = tf.memory().numTensors;
          return t;
        };
        const r = step(tf.reshape(w, [12]));
        const a = step(tf.add(r, r));
        const s = step(tf.sub(a, r));
        const m = step(tf.mul(s, r));
        return tf.sum(m) as tf.Scalar;
      };
      read(grad(f, [w]));
      return counts;
    };
    assert.deepEqual(added(tf.variableGrads), [2, 3, 3, 3]);
    assert.deepEqual(added(variableGrads), [1, 1, 1, 3]);
  } finally {
    w.dispose();
  }
});

Deno.test("variableGrads frees each op's saved tensors and output gradients once the walk has passed it", () => {
  // A chain of 8 ops that each save their input; each gradient records how many tensors are alive when it runs.
  const w = seededVariable([16], 6);
  try {
    const alive = (grad: typeof variableGrads) => {
      const seen: number[] = [];
      const double = tf.customGrad(
        ((x: tf.Tensor, save: tf.GradSaveFunc) => {
          save([x]);
          return {
            value: tf.mul(x, 2),
            gradFunc: (dy: tf.Tensor) => {
              seen.push(tf.memory().numTensors);
              return tf.mul(dy, 2);
            },
          };
        }) as unknown as Parameters<typeof tf.customGrad>[0],
      );
      const f = () => {
        let x: tf.Tensor = w;
        for (let i = 0; i < 8; i++) x = double(x) as tf.Tensor;
        return tf.sum(x) as tf.Scalar;
      };
      const out = read(grad(f, [w]));
      assert.deepEqual(out.grads[w.name], new Array(16).fill(256));
      return seen;
    };
    const theirs = alive(tf.variableGrads), ours = alive(variableGrads);
    // tfjs holds every gradient until the end: one more tensor alive at each step of the walk.
    assert.deepEqual(theirs.slice(1).map((v, i) => v - theirs[i]), new Array(7).fill(1));
    // Here each step frees the saved input and the output gradient it has used, and holds one new gradient.
    assert.deepEqual(ours.slice(1).map((v, i) => v - ours[i]), new Array(7).fill(-1));
  } finally {
    w.dispose();
  }
});

Deno.test("variableGrads: a model step's peak data memory on blas is under half tf.variableGrads's", async () => {
  await onBackend(BLAS_BACKEND, () => {
    const finite = setFiniteChecks(false);
    const model = createModel(
      { attention: "transnormer-t2", layers: 2, dModel: 32, heads: 2, maxLength: 64, seed: 1 },
      { log: () => {} },
    );
    try {
      const ids = Int32Array.from({ length: 4 * 64 }, (_, i) => (i * 37) & 255);
      const batch: LmBatch = { kind: "lm", inputs: ids, targets: ids.map((t) => (t + 1) & 255), batch: 4, length: 64 };
      const vars = Object.values(model.variables) as tf.Variable[];
      const peak = (grad: typeof variableGrads) => {
        resetPeakDataBytes();
        const before = dataBytes().live;
        read(grad(() => model.loss(batch), vars));
        return dataBytes().peak - before;
      };
      peak(variableGrads); // both measured after a first step, so that neither pays for first-use buffers
      const theirs = peak(tf.variableGrads), ours = peak(variableGrads);
      assert.ok(ours < 0.5 * theirs, `peak ${ours} B here against ${theirs} B with tf.variableGrads`);
    } finally {
      model.dispose();
      setFiniteChecks(finite);
    }
  });
});

Deno.test("variableGrads: bad arguments and a throwing forward pass are errors that leave no tensor and no tape", () => {
  const w = seededVariable([3], 8);
  const start = tf.memory().numTensors;
  try {
    assert.throws(() => variableGrads(null as unknown as () => tf.Scalar, [w]), TypeError);
    const plain = tf.zeros([1]);
    assert.throws(() => variableGrads(() => tf.sum(w) as tf.Scalar, [plain as tf.Variable]), /tf\.Variable/);
    plain.dispose();
    assert.throws(() => variableGrads(() => tf.sum(w) as tf.Scalar, []), TypeError);
    assert.throws(() => variableGrads(() => tf.mul(w, 2) as unknown as tf.Scalar, [w]), /scalar tensor, got rank 1/);
    assert.throws(() =>
      variableGrads(() => {
        tf.mul(w, 3);
        throw new Error("boom");
      }, [w]), /boom/);
    const other = seededVariable([2], 9);
    assert.throws(() => variableGrads(() => tf.sum(other) as tf.Scalar, [w]), /no variable in varList reaches/);
    other.dispose();
    assert.equal(tf.memory().numTensors, start);
    assert.equal(tf.engine().state.gradientDepth, 0);
    assert.equal(tf.engine().state.activeTape, null);
    // and the next call works
    assert.deepEqual(read(variableGrads(() => tf.sum(tf.square(w)) as tf.Scalar, [w])).grads[w.name].length, 3);
  } finally {
    w.dispose();
  }
});

Deno.test("variableGrads inside another gradient, and a gradient inside it, are tfjs's second derivatives", () => {
  const w = seededVariable([5], 10);
  try {
    // d/dw of sum(g(w)) where g = the gradient of sum(w³ reshaped) = 3w² (through Reshape, whose saved shape serves
    // both levels): 6w.
    const inner = (x: tf.Tensor) => tf.grad((v: tf.Tensor) => tf.sum(tf.reshape(tf.pow(v, 3), [5, 1])))(x);
    const ours = read(variableGrads(() => tf.sum(inner(w)) as tf.Scalar, [w]));
    const theirs = read(tf.variableGrads(() => tf.sum(inner(w)) as tf.Scalar, [w]));
    assert.deepEqual(ours, theirs);
    const w6 = Array.from(w.dataSync(), (v) => Math.fround(6 * v));
    ours.grads[w.name].forEach((g, i) => assert.ok(Math.abs(g - w6[i]) <= 1e-5 * Math.max(1, Math.abs(w6[i]))));
    // Called where a tape is already recording (depth 1), it is tf.variableGrads.
    const outer = tf.grad((x: tf.Tensor) => {
      const { value, grads } = variableGrads(() => tf.sum(tf.mul(tf.square(w), x)) as tf.Scalar, [w]);
      tf.dispose(Object.values(grads));
      return value;
    })(tf.scalar(2));
    const squares = Array.from(w.dataSync()).reduce((s: number, v: number) => s + v * v, 0);
    assert.ok(Math.abs(outer.dataSync()[0] - squares) <= 1e-5 * squares);
    outer.dispose();
  } finally {
    w.dispose();
  }
});
