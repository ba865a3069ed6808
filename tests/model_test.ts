import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { assertClose, withModel } from "./helpers.ts";
import {
  createModel,
  ffnHiddenSize,
  type ModelBatch,
  modelConfig,
  type ModelConfigInput,
  presetAttention,
  PRESETS,
  rotary,
  sinusoidalTable,
  type TransformerModel,
} from "../lib/models/mod.ts";
import { seededUniform } from "../lib/random.ts";
import { setFiniteChecks, variants } from "../lib/attention/mod.ts";

const small = { layers: 2, dModel: 16, heads: 2, maxLength: 128 };

function ids(b: number, n: number, seed: number, vocab = 256): Int32Array {
  const u = seededUniform(seed);
  return Int32Array.from({ length: b * n }, () => Math.floor(u() * vocab));
}

function lmBatch(b: number, n: number, seed: number): ModelBatch {
  return { kind: "lm", inputs: ids(b, n, seed), targets: ids(b, n, seed + 1), batch: b, length: n };
}

Deno.test("presets: the layer lists of the paper", () => {
  assert.deepEqual(presetAttention("transnormer-t1", 5).map((l) => `${l.variant}:${Object.values(l.options)}`), [
    "diag:relu",
    "diag:relu",
    "diag:relu",
    "norm:elu",
    "norm:elu",
  ]);
  assert.deepEqual(presetAttention("transnormer-t2", 4).map((l) => `${l.variant}:${Object.values(l.options)}`), [
    "diag:softmax",
    "diag:softmax",
    "norm:elu+1",
    "norm:elu+1",
  ]);
  assert.deepEqual(presetAttention("vanilla", 3).map((l) => l.variant), ["softmax", "softmax", "softmax"]);
  assert.deepEqual(presetAttention("linear", 1)[0].options.featureMap, "elu+1");
});

Deno.test("config: unknown keys, wrong types and inconsistent sizes throw with the argument's name", () => {
  assert.throws(() => modelConfig({ dmodel: 8 } as never), /unknown key "dmodel"/);
  assert.throws(() => modelConfig({ dModel: 8.5 }), /dModel must be an integer/);
  assert.throws(() => modelConfig({ norm: "batch" as never }), /norm must be one of "srms", "layer"/);
  assert.throws(() => modelConfig({ rotary: 1 as never }), /rotary must be true or false/);
  assert.throws(() => modelConfig({ dModel: 10, heads: 4 }), /divisible by heads/);
  assert.throws(() => modelConfig({ attention: "flash" as never }), /preset/);
  assert.throws(
    () => modelConfig({ attention: ["softmax", "nope" as never] }),
    /attention\[1\]\.variant must be one of/,
  );
  assert.throws(
    () => modelConfig({ attention: [{ variant: "diag", options: { block: 8 } }] }),
    /unknown option "block"/,
  );
  assert.throws(() => modelConfig({ attention: [{ variant: "norm", options: { causal: true } }] }), /set by the model/);
  assert.throws(() => modelConfig({ attention: ["softmax"], layers: 2 }), /layers is 2/);
  assert.throws(() => modelConfig({ task: "classify" }), /needs numClasses/);
  assert.throws(() => modelConfig({ numClasses: 3 }), /only for task "classify"/);
  assert.throws(() => modelConfig({ rotary: true, dModel: 12, heads: 4 }), /even head size/);
  assert.throws(
    () => createModel({ attention: "vanilla" }, { log: () => {}, verbose: true } as never),
    /unknown option/,
  );
});

Deno.test("config: a resolved config builds the same model and keeps its preset", () => {
  const config = modelConfig({ attention: "transnormer-t1", ...small });
  withModel(config, (m) => {
    assert.deepEqual(m.config, config);
    assert.deepEqual(m.config.preset, "transnormer-t1");
  });
});

Deno.test("parameter count matches the closed form, and the summary prints it", () => {
  for (const [ffn, norm] of [["glu", "srms"], ["mlp", "layer"]] as const) {
    const c = modelConfig({ attention: "vanilla", layers: 3, dModel: 24, heads: 3, ffn, norm });
    const d = 24, L = 3, V = 256, h = ffnHiddenSize(c);
    const perNorm = norm === "layer" ? 2 * d : 0;
    const ffnParams = ffn === "glu" ? 3 * d * h : 2 * d * h;
    const expected = V * d + L * (4 * d * d + ffnParams + 2 * perNorm) + perNorm;
    const lines: string[] = [];
    const m = createModel(c, { log: (l) => lines.push(l) });
    assert.deepEqual(m.parameterCount, expected);
    assert(lines[0].includes(expected.toLocaleString("en-US")), lines[0]);
    m.dispose();
  }
  assert.deepEqual(ffnHiddenSize(modelConfig({ dModel: 48 })), 128);
});

Deno.test("shapes: language model logits [b, n, V], classifier logits [b, C]", () => {
  for (const preset of PRESETS) {
    withModel({ attention: preset, ...small }, (m) => {
      const x = tf.tensor2d(ids(2, 5, 1), [2, 5], "int32");
      const y = m.logits(x);
      assert.deepEqual(y.shape, [2, 5, 256]);
      tf.dispose([x, y]);
    });
  }
  withModel({ attention: "transnormer-t1", ...small, task: "classify", numClasses: 10 }, (m) => {
    const x = tf.tensor2d(ids(3, 7, 2), [3, 7], "int32");
    const y = m.logits(x, { pad: 0 });
    assert.deepEqual(y.shape, [3, 10]);
    tf.dispose([x, y]);
  });
});

Deno.test("causality: changing a future token never changes earlier logits, for every preset", () => {
  // n = 70 crosses DiagAttention's 64-token block and the 64-token chunks of the kernel variants.
  const n = 70;
  for (const preset of PRESETS) {
    for (const rotaryOn of [false, true]) {
      withModel({ attention: preset, ...small, rotary: rotaryOn }, (m) => {
        const base = ids(1, n, 3);
        for (const t of [0, 40, 66, n - 1]) {
          const changed = base.slice();
          changed[t] = (changed[t] + 17) % 256;
          tf.tidy(() => {
            const a = m.logits(tf.tensor2d(base, [1, n], "int32"));
            const b = m.logits(tf.tensor2d(changed, [1, n], "int32"));
            if (t > 0) {
              // Performer's key stabiliser is a max over all keys: it cancels in exact arithmetic only.
              const tol = preset === "performer" ? { atol: 1e-4, rtol: 1e-4 } : { atol: 1e-5, rtol: 1e-5 };
              assertClose(
                tf.slice(a, [0, 0, 0], [1, t, 256]),
                tf.slice(b, [0, 0, 0], [1, t, 256]),
                `${preset} t=${t}`,
                tol,
              );
            }
            const later = tf.max(
              tf.abs(tf.sub(tf.slice(a, [0, t, 0], [1, 1, 256]), tf.slice(b, [0, t, 0], [1, 1, 256]))),
            );
            assert(later.dataSync()[0] > 1e-4, `${preset}: the changed token ${t} must change its own logits`);
          });
        }
      });
    }
  }
});

Deno.test("the bidirectional classifier sees every token, and ignores padding", () => {
  withModel({ attention: "transnormer-t2", ...small, task: "classify", numClasses: 4 }, (m) => {
    tf.tidy(() => {
      const base = ids(1, 9, 4, 250);
      const changed = base.slice();
      changed[8] = (changed[8] + 1) % 250;
      const a = m.logits(tf.tensor2d(base, [1, 9], "int32"));
      const b = m.logits(tf.tensor2d(changed, [1, 9], "int32"));
      assert(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] > 1e-5, "the last token must reach the pooled output");
    });
  });
  // Diag blocks and softmax: padding after the text is invisible to the pooled output except through attention,
  // so use NormAttention-free local blocks of size 1, where each token sees only itself.
  withModel({
    attention: [{ variant: "diag", options: { blockSize: 1 } }],
    ...small,
    layers: 1,
    task: "classify",
    numClasses: 3,
  }, (m) => {
    tf.tidy(() => {
      const text = [5, 6, 7];
      const a = m.logits(tf.tensor2d([...text, 0, 0], [1, 5], "int32"), { pad: 0 });
      const b = m.logits(tf.tensor2d([...text, 0, 0, 0, 0], [1, 7], "int32"), { pad: 0 });
      assertClose(a, b, "padding length must not change pooled logits");
    });
  });
});

Deno.test("the classifier keeps pad tokens out of every layer's keys: the padding's length changes no logit", () => {
  // Every variant but cosFormer, whose weight cos(π/2 (i − j)/M) depends on M = n unless maxLength fixes it.
  const layers = Object.keys(variants).map((variant) => ({
    variant,
    options: variant === "cosformer" ? { maxLength: 16 } : variant === "local" ? { window: 2 } : {},
  }));
  for (const layer of layers) {
    withModel({ attention: [layer, layer] as never, ...small, task: "classify", numClasses: 3 }, (m) => {
      tf.tidy(() => {
        const text = [5, 6, 7, 8, 9], pad = 0;
        const bare = m.logits(tf.tensor2d(text, [1, 5], "int32"));
        const short = m.logits(tf.tensor2d([...text, pad, pad], [1, 7], "int32"), { pad });
        const long = m.logits(tf.tensor2d([...text, pad, pad, pad, pad, pad, pad], [1, 11], "int32"), { pad });
        assertClose(short, bare, `${layer.variant}: two pads must change no logit`, { atol: 1e-5 });
        assertClose(long, bare, `${layer.variant}: six pads must change no logit`, { atol: 1e-5 });
        // Without the pad option the same padded input is a different sequence: the check above can fail.
        const seen = m.logits(tf.tensor2d([...text, pad, pad], [1, 7], "int32"));
        assert(tf.max(tf.abs(tf.sub(seen, bare))).dataSync()[0] > 1e-4, `${layer.variant}: pads attended must count`);
        // Rows of one batch padded to different lengths: each equals its own unpadded logits.
        const both = m.logits(tf.tensor2d([...text, pad, pad, 3, 4, pad, pad, pad, pad, pad], [2, 7], "int32"), {
          pad,
        });
        const other = m.logits(tf.tensor2d([3, 4], [1, 2], "int32"));
        assertClose(both, tf.concat([bare, other]), `${layer.variant}: a batch of differently padded rows`, {
          atol: 1e-5,
        });
      });
    });
  }
});

Deno.test("the model's fast attention equals each variant's reference form, on logits and gradients", () => {
  const n = 67;
  for (const preset of PRESETS) {
    withModel({ attention: preset, ...small, rotary: preset === "transnormer-t2" }, (m) => {
      const x = tf.tensor2d(ids(2, n, 5), [2, n], "int32");
      const cot = tf.randomNormal([2, n, 256], 0, 1, "float32", 7);
      const vars = Object.values(m.variables);
      const run = (form: "fast" | "reference") =>
        tf.variableGrads(() => tf.sum(tf.mul(m.logits(x, { form }), cot)) as tf.Scalar, vars);
      const fast = run("fast");
      const ref = run("reference");
      const tol = { atol: 2e-4, rtol: 2e-4 };
      assertClose(fast.value, ref.value, `${preset}: logits·cot`, tol);
      for (const name of Object.keys(fast.grads)) {
        assertClose(fast.grads[name], ref.grads[name], `${preset}: d/d${name}`, tol);
      }
      tf.dispose([x, cot, fast.value, ref.value, ...Object.values(fast.grads), ...Object.values(ref.grads)]);
    });
  }
});

Deno.test("attentionWeights: one [b, h, n, n] matrix per layer; softmax rows are distributions over the past", () => {
  withModel({ attention: "vanilla", ...small }, (m) => {
    const x = tf.tensor2d(ids(2, 6, 8), [2, 6], "int32");
    const ws = m.attentionWeights(x);
    assert.deepEqual(ws.length, 2);
    for (const w of ws) {
      assert.deepEqual(w.shape, [2, 2, 6, 6]);
      const a = w.arraySync() as number[][][][];
      for (const row of a.flat(2)) assert(Math.abs(row.reduce((s, v) => s + v, 0) - 1) < 1e-5);
      for (let i = 0; i < 6; i++) for (let j = i + 1; j < 6; j++) assert.deepEqual(a[1][1][i][j], 0);
    }
    tf.dispose([x, ...ws]);
  });
});

/** Layer 0's q and k [b, h, n, dh] rebuilt by hand: gather·√d + sinusoids, SimpleRMSNorm, projections, head split. */
function layer0QK(m: TransformerModel, x: tf.Tensor2D): { q: tf.Tensor4D; k: tf.Tensor4D } {
  const { dModel: d, heads: h } = m.config;
  const [b, n] = x.shape;
  const embedded = tf.add(tf.mul(tf.gather(m.variables["embed.weight"], x), Math.sqrt(d)), sinusoidalTable(n, d)); // [b, n, d]
  // SimpleRMSNorm: x / (‖x‖ / √d + 1e-8).
  const rms = tf.div(tf.norm(embedded, "euclidean", -1, true), Math.sqrt(d)); // [b, n, 1]
  const normed = tf.div(embedded, tf.add(rms, 1e-8)); // [b, n, d]
  const project = (w: string) => {
    const y = tf.einsum("bnd,de->bne", normed, m.variables[`blocks.0.attn.${w}`]); // [b, n, d]
    return tf.transpose(tf.reshape(y, [b, n, h, d / h]), [0, 2, 1, 3]) as tf.Tensor4D; // [b, h, n, dh]
  };
  let q = project("wq");
  let k = project("wk");
  if (m.config.rotary) [q, k] = [rotary(q), rotary(k)];
  return { q, k };
}

Deno.test("attentionWeights: layer 0's matrix is built from the layer's actual q and k", () => {
  const n = 7;
  // Softmax by hand: softmax(q kᵀ / √dh) over the keys j <= i.
  for (const rotaryOn of [false, true]) {
    withModel({ attention: "vanilla", ...small, rotary: rotaryOn }, (m) => {
      tf.tidy(() => {
        const x = tf.tensor2d(ids(2, n, 40), [2, n], "int32");
        const { q, k } = layer0QK(m, x);
        const scores = tf.div(tf.matMul(q, k, false, true), Math.sqrt(m.config.dModel / m.config.heads)); // [b, h, n, n]
        const future = tf.sub(1, tf.linalg.bandPart(tf.ones([n, n]), -1, 0)); // [n, n]
        const expected = tf.softmax(tf.add(scores, tf.mul(future, -1e9))); // [b, h, n, n]
        assertClose(m.attentionWeights(x)[0], expected, `softmax layer 0, rotary ${rotaryOn}`);
      });
    });
  }
  // A kernel variant: linear attention's own weights() on the rebuilt q and k.
  withModel({ attention: "linear", ...small }, (m) => {
    tf.tidy(() => {
      const x = tf.tensor2d(ids(2, n, 41), [2, n], "int32");
      const { q, k } = layer0QK(m, x);
      const expected = variants.linear.weights({ q, k }, { featureMap: "elu+1", causal: true });
      const actual = m.attentionWeights(x)[0];
      assertClose(actual, expected, "linear layer 0");
      // A real check of the inputs: other q and k give another matrix.
      const shuffled = variants.linear.weights({ q: k, k: q }, { featureMap: "elu+1", causal: true });
      assert.ok(tf.max(tf.abs(tf.sub(actual, shuffled))).dataSync()[0] > 1e-3);
    });
  });
});

Deno.test("LayerNorm + MLP, no positions, and rotary: shapes, causality, and a decreasing loss", () => {
  const n = 70;
  const configs: ModelConfigInput[] = [
    { attention: "transnormer-t2", ...small, norm: "layer", ffn: "mlp" },
    { attention: "transnormer-t2", ...small, positions: "none" },
    { attention: "vanilla", ...small, positions: "none", rotary: true },
  ];
  for (const config of configs) {
    const what = JSON.stringify({ ...config, ...Object.fromEntries(Object.keys(small).map((k) => [k, undefined])) });
    withModel(config, (m) => {
      const base = ids(1, n, 50);
      tf.tidy(() => {
        const a = m.logits(tf.tensor2d(base, [1, n], "int32"));
        assert.deepEqual(a.shape, [1, n, 256]);
        for (const t of [5, 66]) {
          const changed = base.slice();
          changed[t] = (changed[t] + 31) % 256;
          const b = m.logits(tf.tensor2d(changed, [1, n], "int32"));
          assertClose(tf.slice(b, [0, 0, 0], [1, t, 256]), tf.slice(a, [0, 0, 0], [1, t, 256]), `${what} t=${t}`);
          const own = tf.max(tf.abs(tf.sub(tf.slice(a, [0, t, 0], [1, 1, 256]), tf.slice(b, [0, t, 0], [1, 1, 256]))));
          assert.ok(own.dataSync()[0] > 1e-4, `${what}: token ${t} must change its own logits`);
        }
      });
      const batch = lmBatch(2, 16, 51);
      const losses = adamLosses(m, batch);
      assert.ok(losses[7] < losses[0] - 0.1, `${what}: ${losses.map((l) => l.toFixed(3))}`);
    });
  }
});

/** The loss at each of `steps` Adam steps (lr 1e-2) on one fixed batch. */
function adamLosses(m: TransformerModel, batch: ModelBatch, steps = 8): number[] {
  const opt = tf.train.adam(1e-2);
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    const value = opt.minimize(() => m.loss(batch), true, Object.values(m.variables))!;
    losses.push(value.dataSync()[0]);
    value.dispose();
  }
  opt.dispose();
  return losses;
}

Deno.test("scoreGradients: the directional derivative of the loss along a perturbation of M, zero where unseen", () => {
  for (const preset of ["vanilla", "transnormer-t1"] as const) {
    withModel({ attention: preset, ...small }, (m) => {
      const batch = lmBatch(1, 8, 9);
      const grads = m.scoreGradients(batch);
      assert.deepEqual(grads.map((g) => g.shape), [[1, 2, 8, 8], [1, 2, 8, 8]]);
      const g = grads[1].arraySync() as number[][][][];
      for (let i = 0; i < 8; i++) for (let j = i + 1; j < 8; j++) assert.ok(g[0][0][i][j] === 0);
      // Central difference of the loss along a random lower-triangular direction E in layer 1's matrix.
      const e = tf.tidy(() =>
        tf.mul(tf.randomNormal([1, 2, 8, 8], 0, 1, "float32", 3), tf.linalg.bandPart(tf.ones([8, 8]), -1, 0))
      );
      const predicted = tf.tidy(() => tf.sum(tf.mul(grads[1], e)).dataSync()[0]);
      const eps = 1e-2;
      const lossAt = (sign: number) =>
        tf.tidy(() =>
          m.referenceLoss(batch, { perturb: [tf.zerosLike(e), tf.mul(e, sign * eps)] as tf.Tensor4D[] }).dataSync()[0]
        );
      const finite = (lossAt(1) - lossAt(-1)) / (2 * eps);
      assert(Math.abs(finite - predicted) <= 2e-3 + 2e-2 * Math.abs(predicted), `${preset}: ${finite} vs ${predicted}`);
      const norms = m.scoreGradientNorms(batch);
      norms.forEach((v, i) => assert(Math.abs(v - tf.tidy(() => tf.norm(grads[i]).dataSync()[0])) < 1e-6 * (1 + v)));
      tf.dispose([e, ...grads]);
    });
  }
});

Deno.test("scoreGradients: zero exactly where each layer's variant cannot see (local's window, diag's blocks, causal)", () => {
  const attention = [
    { variant: "local", options: { window: 2 } },
    { variant: "diag", options: { blockSize: 4 } },
    "retention",
  ] as const;
  const seen = [
    (i: number, j: number) => j <= i && i - j <= 2,
    (i: number, j: number) => j <= i && Math.floor(i / 4) === Math.floor(j / 4),
    (i: number, j: number) => j <= i,
  ];
  withModel({ ...small, attention: [...attention], layers: 3 }, (m) => {
    const grads = m.scoreGradients(lmBatch(1, 10, 4)).map((g) => g.arraySync() as number[][][][]);
    grads.forEach((g, layer) => {
      for (let i = 0; i < 10; i++) {
        for (let j = 0; j < 10; j++) {
          const value = g[0][1][i][j];
          if (!seen[layer](i, j)) assert.ok(value === 0, `layer ${layer} (${i}, ${j}) is not seen: ${value}`);
        }
      }
      // Seen entries do carry gradient (no mask hides them).
      assert.ok(g[0][1].flat().some((x) => x !== 0), `layer ${layer}: some gradient`);
    });
  });
});

Deno.test("a variant with a seed option gets one per layer (seed · 1009 + layer) unless the layer sets it", () => {
  const attention = ["performer", { variant: "performer", options: { seed: 3 } }, "retention", "performer"] as const;
  withModel({ ...small, attention: [...attention], layers: 4, seed: 5 }, (m) => {
    const seeds: unknown[] = [];
    tf.tidy(() => {
      m.logitsWith(tf.tensor2d(ids(1, 6, 2), [1, 6], "int32"), {
        attend: (layer, qkv, options) => {
          seeds.push(options.seed);
          return variants[m.config.attention[layer].variant].attend(qkv, options as never);
        },
      });
    });
    assert.deepEqual(seeds, [5 * 1009, 3, undefined, 5 * 1009 + 3]);
  });
});

Deno.test("loss decreases on a fixed tiny batch within a few steps, for every preset and the classifier", () => {
  const configs: ModelConfigInput[] = [
    ...PRESETS.map((p) => ({ attention: p, ...small })),
    { attention: "transnormer-t1", ...small, task: "classify", numClasses: 5 },
  ];
  for (const config of configs) {
    withModel(config, (m) => {
      const batch: ModelBatch = config.task === "classify"
        ? {
          kind: "cls",
          inputs: ids(4, 12, 10, 20),
          labels: Int32Array.from([0, 1, 2, 3]),
          batch: 4,
          length: 12,
          numClasses: 5,
          pad: 0,
        }
        : lmBatch(2, 16, 11);
      const losses = adamLosses(m, batch);
      assert(
        losses[7] < losses[0] - 0.1,
        `${config.attention}${config.task ?? ""}: ${losses.map((l) => l.toFixed(3))}`,
      );
    });
  }
});

Deno.test("the loss is cross-entropy: uniform logits give log V, and masked targets drop out", () => {
  withModel({ attention: "vanilla", ...small }, (m) => {
    for (const v of Object.values(m.variables)) v.assign(tf.zerosLike(v));
    const batch = lmBatch(2, 5, 12);
    const loss = m.loss(batch);
    assertClose(loss, tf.scalar(Math.log(256)), "zero weights give uniform logits");
    loss.dispose();
  });
  withModel({ attention: "vanilla", ...small }, (m) => {
    const full = lmBatch(1, 6, 13) as Extract<ModelBatch, { kind: "lm" }>;
    const mask = Float32Array.from([0, 0, 1, 0, 1, 0]);
    const masked = m.loss({ ...full, mask });
    // With the mask, only positions 2 and 4 count: the mean of their per-position losses.
    const perPosition = tf.tidy(() => {
      const logits = m.logits(tf.tensor2d(full.inputs, [1, 6], "int32"));
      const logp = tf.logSoftmax(tf.reshape(logits, [6, 256])).arraySync() as number[][];
      return [2, 4].map((i) => -logp[i][full.targets[i]]);
    });
    assertClose(masked, tf.scalar((perPosition[0] + perPosition[1]) / 2), "masked mean");
    masked.dispose();
  });
});

Deno.test("bad batches and ids get clear errors", () => {
  withModel({ attention: "vanilla", ...small }, (m) => {
    assert.throws(
      () => m.loss({ ...lmBatch(1, 4, 1), inputs: new Int32Array(3) }),
      /batch\.inputs must be an Int32Array of batch\*length = 4/,
    );
    assert.throws(
      () => m.loss({ ...lmBatch(1, 2, 1), inputs: Int32Array.from([1, 300]) }),
      { name: "RangeError", message: /batch\.inputs\[1\] is token id 300, outside 0\.\.255/ },
    );
    assert.throws(() => m.loss({ kind: "cls" } as never), /needs kind "lm"/);
    assert.throws(() => m.logits(tf.zeros([1, 3]) as tf.Tensor2D), /int32 tf.Tensor2D/);
    const long = tf.zeros([1, 129], "int32") as tf.Tensor2D;
    assert.throws(() => m.logits(long), /1\.\.128 \(maxLength\), got 129/);
    long.dispose();
    const x = tf.zeros([1, 3], "int32") as tf.Tensor2D;
    assert.throws(() => m.logits(x, { form: "naive" } as never), /form must be "fast" or "reference"/);
    assert.throws(() => m.logits(x, { causal: true } as never), /unknown option "causal"/);
    assert.throws(() => m.attentionWeights(x, { form: "fast" } as never), /attentionWeights: unknown option "form"/);
    assert.throws(() => m.referenceLoss(lmBatch(1, 3, 1), { perturbs: [] } as never), /unknown option "perturbs"/);
    const attend = () => tf.zeros([1, 2, 3, 8]) as tf.Tensor4D;
    assert.throws(() => m.logitsWith(x, { attend, start: 1 } as never), /logitsWith: unknown option "start"/);
    assert.throws(() => rotary(tf.zeros([1, 1, 2, 4]) as tf.Tensor4D, { ofset: 1 } as never), /unknown option "ofset"/);
    x.dispose();
  });
});

Deno.test("positions: the sinusoidal closed form, and rotary scores depend only on the offset between positions", () => {
  const pe = sinusoidalTable(5, 8);
  const a = pe.arraySync();
  for (let p = 0; p < 5; p++) {
    for (let j = 0; j < 8; j++) {
      const angle = p / 10000 ** ((2 * Math.floor(j / 2)) / 8);
      assert(Math.abs(a[p][j] - (j % 2 ? Math.cos(angle) : Math.sin(angle))) < 1e-6);
    }
  }
  pe.dispose();
  tf.tidy(() => {
    const q = tf.randomNormal([1, 1, 1, 8], 0, 1, "float32", 1) as tf.Tensor4D;
    const k = tf.randomNormal([1, 1, 1, 8], 0, 1, "float32", 2) as tf.Tensor4D;
    const score = (pq: number, pk: number) =>
      tf.sum(tf.mul(rotary(q, { offset: pq }), rotary(k, { offset: pk }))).dataSync()[0];
    assert(Math.abs(score(3, 1) - score(12, 10)) < 1e-4);
    assert(Math.abs(score(0, 0) - tf.sum(tf.mul(q, k)).dataSync()[0]) < 1e-5);
    assert(Math.abs(score(3, 1) - score(3, 2)) > 1e-4, "a different offset changes the score");
    // Rotation keeps every pair's norm.
    assertClose(tf.norm(rotary(q, { offset: 7 })), tf.norm(q), "norm kept");
  });
  assert.throws(() => rotary(tf.zeros([1, 1, 2, 3]) as tf.Tensor4D), /even/);
});

Deno.test("no leaked tensors over repeated forward, loss, weights and score-gradient calls", () => {
  const start = tf.memory().numTensors;
  for (let round = 0; round < 3; round++) {
    withModel({ attention: "transnormer-t2", ...small, rotary: true }, (m) => {
      const batch = lmBatch(1, 9, round);
      const x = tf.tensor2d(batch.inputs, [1, 9], "int32");
      tf.dispose([m.logits(x), m.loss(batch), ...m.attentionWeights(x), ...m.scoreGradients(batch)]);
      m.scoreGradientNorms(batch);
      const { value, grads } = tf.variableGrads(() => m.loss(batch), Object.values(m.variables));
      tf.dispose([x, value, ...Object.values(grads)]);
    });
  }
  assert.deepEqual(tf.memory().numTensors, start);
});

Deno.test("firstNonFinite: null for a healthy model; else the first stage whose output a bad weight reaches", async () => {
  const start = tf.memory().numTensors;
  const batch = lmBatch(1, 6, 30);
  const poison = (m: TransformerModel, name: string, index: number[], value: number) => {
    const w = m.variables[name];
    tf.tidy(() => w.assign(tf.add(w, tf.scatterND([index], [value], w.shape))));
  };
  const cases: [string, number[], number, string][] = [
    ["embed.weight", [batch.inputs[2], 0], NaN, "embed"],
    ["blocks.0.attn.wv", [0, 0], Infinity, "blocks.0.attn"],
    ["blocks.1.attn.wq", [1, 1], NaN, "blocks.1.attn"],
    ["blocks.0.ffn.w1", [0, 0], NaN, "blocks.0.ffn"],
    ["norm.weight", [0], NaN, "norm"],
  ];
  for (const [name, index, value, stage] of cases) {
    // Every stage is found with finite checks on too: the variants then throw on non-finite q, k or v.
    for (const checks of [false, true]) {
      const m = createModel({ attention: "vanilla", ...small, norm: "layer" }, { log: () => {} });
      const was = setFiniteChecks(checks);
      try {
        assert.equal(await m.firstNonFinite(batch), null);
        poison(m, name, index, value);
        assert.equal(await m.firstNonFinite(batch), stage, `${name}, finite checks ${checks}`);
      } finally {
        setFiniteChecks(was);
        m.dispose();
      }
    }
  }
  assert.equal(tf.memory().numTensors, start);
});

Deno.test("logitsWith: an attend hook that calls the variant reproduces logits; the hook sees every layer", () => {
  withModel({ attention: "transnormer-t1", ...small, rotary: true }, (m) => {
    tf.tidy(() => {
      const x = tf.tensor2d(ids(1, 11, 21), [1, 11], "int32");
      const seen: number[] = [];
      const hooked = m.logitsWith(x, {
        attend: (layer, qkv, options) => {
          seen.push(layer);
          assert.equal(options.causal, true);
          return variants[m.config.attention[layer].variant].attend(qkv, options as never);
        },
      });
      assert.deepEqual(seen, [0, 1]);
      assertClose(hooked, m.logits(x), "hooked logits");
      assert.throws(
        () => m.logitsWith(x, { offset: 120, attend: () => tf.zeros([1, 1, 1, 1]) as tf.Tensor4D }),
        /offset \+ n <= maxLength/,
      );
    });
  });
});

Deno.test("layer gain: a learned [dModel] gain on the attention output, absorbed exactly by scaling wo's rows", () => {
  const start = tf.memory().numTensors;
  const layer = { variant: "norm" as const, options: { featureMap: "elu+1", norm: "rms" } };
  const input = { ...small, attention: [{ ...layer, gain: true }, layer], seed: 3 };
  const withGain = createModel(input);
  const without = createModel({ ...small, attention: [layer, layer], seed: 3 });
  try {
    assert.deepEqual(Array.from(withGain.variables["blocks.0.attn.gain"].dataSync()), Array(16).fill(1));
    assert.equal("blocks.1.attn.gain" in withGain.variables, false);
    assert.equal(withGain.parameterCount, without.parameterCount + 16);
    // g · o then wo equals o then diag(g) · wo: set a gain on one model and the scaled wo on the other.
    const g = tf.tidy(() => tf.linspace(0.5, 2, 16));
    withGain.variables["blocks.0.attn.gain"].assign(g);
    tf.tidy(() =>
      without.variables["blocks.0.attn.wo"].assign(tf.mul(without.variables["blocks.0.attn.wo"], g.reshape([16, 1])))
    );
    g.dispose();
    const x = tf.tensor2d(ids(2, 9, 5), [2, 9], "int32");
    tf.tidy(() => assertClose(withGain.logits(x), without.logits(x), "gain vs scaled wo"));
    // And the gain gets a gradient (it is trainable, not a constant).
    const gain = withGain.variables["blocks.0.attn.gain"];
    const grads = tf.variableGrads(() => withGain.loss(lmBatch(2, 9, 7)), [gain]);
    assert.ok(tf.tidy(() => tf.norm(grads.grads[gain.name]).dataSync()[0]) > 0);
    tf.dispose([grads.value, ...Object.values(grads.grads), x]);
  } finally {
    withGain.dispose();
    without.dispose();
  }
  assert.throws(
    () => modelConfig({ attention: [{ ...layer, gain: "yes" }] as never }),
    (e: Error) => e instanceof TypeError && /gain must be true or false/.test(e.message),
  );
  assert.throws(
    () => modelConfig({ attention: [{ ...layer, gains: true }] as never }),
    /valid keys are variant, options, gain/,
  );
  assert.equal(tf.memory().numTensors, start);
});
