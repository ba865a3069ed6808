/**
 * No silent wrong results (issue 13, item 4) in the attention variants, the model and the training loop: each input
 * that used to give a wrong number, a raw error or a late failure now throws the error class and message below, and
 * leaves no tensor behind.
 */

import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  chunkedAttend,
  decoder,
  DECODER_VARIANTS,
  initialState,
  orthogonalRandomFeatures,
  recurrentAttend,
  recurrentStep,
  variants,
} from "../lib/attention/mod.ts";
import {
  createModel,
  decodeSession,
  generate,
  MAX_LENGTH,
  MAX_PARAMETERS,
  type ModelBatch,
  modelConfig,
  sampleToken,
  type TransformerModel,
} from "../lib/models/mod.ts";
import {
  adam,
  CheckpointError,
  loadCheckpoint,
  MANIFEST_FILE,
  train,
  type Trainable,
  trainCached,
} from "../lib/train/mod.ts";
import { attentionMaps, heatmapRows, localityCurve, rowNormalize, scoreJacobian } from "../lib/diagnostics/mod.ts";
import { seededQKV } from "./helpers.ts";

type ErrorClass = typeof Error | typeof TypeError | typeof RangeError | typeof CheckpointError;

function check(caught: unknown, cls: ErrorClass, text: string): void {
  assert(caught !== undefined, `expected a ${cls.name} with "${text}", but nothing was thrown`);
  const err = caught as Error;
  assert.equal(
    err.constructor,
    cls,
    `expected a ${cls.name} with "${text}", got ${err.constructor.name}: ${err.message}`,
  );
  assert(err.message.includes(text), `expected "${text}" in the message, got: ${err.message}`);
}

/** Asserts that f throws exactly `cls` (not a subclass) with `text` in its message, and leaks no tensor doing so. */
function throwsExactly(f: () => unknown, cls: ErrorClass, text: string): void {
  const before = tf.memory().numTensors;
  let caught: unknown;
  try {
    f();
  } catch (err) {
    caught = err;
  }
  check(caught, cls, text);
  assert.equal(tf.memory().numTensors, before, `tensors leaked on the failing path of "${text}"`);
}

/** {@linkcode throwsExactly} for an async function. */
async function rejectsExactly(f: () => Promise<unknown>, cls: ErrorClass, text: string): Promise<void> {
  const before = tf.memory().numTensors;
  let caught: unknown;
  try {
    await f();
  } catch (err) {
    caught = err;
  }
  check(caught, cls, text);
  assert.equal(tf.memory().numTensors, before, `tensors leaked on the failing path of "${text}"`);
}

const quiet = { log: () => {} };
const tiny = { attention: "vanilla" as const, layers: 1, dModel: 8, heads: 2, maxLength: 16 };

function withModel<T>(f: (m: TransformerModel) => T): T {
  const model = createModel(tiny, quiet);
  try {
    return f(model);
  } finally {
    model.dispose();
  }
}

function lm(inputs: number[], targets: number[], mask?: number[]): ModelBatch {
  return {
    kind: "lm",
    inputs: Int32Array.from(inputs),
    targets: Int32Array.from(targets),
    ...(mask ? { mask: Float32Array.from(mask) } : {}),
    batch: 1,
    length: inputs.length,
  };
}

// 1. Token ids and targets against the vocabulary.

Deno.test("vocabulary: loss rejects targets and inputs outside 0..vocabSize-1 instead of adding 0", () => {
  withModel((m) => {
    throwsExactly(() => m.loss(lm([1, 2], [999, 999])), RangeError, "batch.targets[0] is token id 999, outside 0..255");
    throwsExactly(() => m.loss(lm([1, 2], [3, -5])), RangeError, "batch.targets[1] is token id -5, outside 0..255");
    throwsExactly(() => m.loss(lm([1, 256], [3, 4])), RangeError, "batch.inputs[1] is token id 256, outside 0..255");
    throwsExactly(() => m.referenceLoss(lm([1, 2], [3, 999])), RangeError, "batch.targets[1] is token id 999");
    throwsExactly(() => m.scoreGradients(lm([1, 2], [3, 999])), RangeError, "batch.targets[1] is token id 999");
    // A batch that selects no target would have loss 0 whatever the model predicts.
    throwsExactly(() => m.loss(lm([1, 2], [3, 4], [0, 0])), RangeError, "batch.mask selects no target");
    throwsExactly(() => m.loss(lm([1, 2], [3, 4], [1, -1])), RangeError, "batch.mask weights must be finite and >= 0");
    throwsExactly(() => m.loss(lm([1, 2], [3, 4], [1, NaN])), RangeError, "got NaN");
    // The largest valid id is accepted, and gives a positive finite loss.
    const loss = m.loss(lm([255, 0], [255, 0]));
    const value = loss.dataSync()[0];
    loss.dispose();
    assert(Number.isFinite(value) && value > 0, `loss ${value}`);
  });
});

Deno.test("vocabulary: a classifier rejects labels outside 0..numClasses-1 and a pad outside the vocabulary", () => {
  const model = createModel({ ...tiny, task: "classify", numClasses: 3 }, quiet);
  const batch = { kind: "cls" as const, inputs: Int32Array.from([1, 2]), batch: 1, length: 2, numClasses: 3, pad: 0 };
  throwsExactly(
    () => model.loss({ ...batch, labels: Int32Array.from([3]) }),
    RangeError,
    "batch.labels[0] is label 3, outside 0..2",
  );
  throwsExactly(() => model.loss({ ...batch, labels: Int32Array.from([0]), pad: 300 }), RangeError, "batch.pad");
  const ids = tf.tensor2d([[1, 2]], [1, 2], "int32");
  throwsExactly(() => model.logits(ids, { pad: 256 }), RangeError, "option pad must be a token id in 0..255");
  ids.dispose();
  model.dispose();
});

Deno.test("a training run whose targets are all 999 stops at its first step instead of finishing with loss 0", async () => {
  const model = createModel(tiny, quiet);
  let calls = 0;
  await rejectsExactly(
    () =>
      train(model, {
        steps: 3,
        batchAt: () => (calls++, lm([1, 2, 3], [999, 999, 999])),
        progress: "none",
        log: null,
      }),
    RangeError,
    "batch.targets[0] is token id 999",
  );
  assert.equal(calls, 1);
  model.dispose();
});

Deno.test("vocabulary: logits, logitsWith and attentionWeights reject ids 256, 300 and -1", () => {
  withModel((m) => {
    const attend = () => {
      throw new Error("not reached");
    };
    for (const bad of [256, 300, -1]) {
      const ids = tf.tensor2d([[1, bad, 2]], [1, 3], "int32");
      const text = `ids holds token id ${bad}, outside the vocabulary 0..255`;
      throwsExactly(() => m.logits(ids), RangeError, text);
      throwsExactly(() => m.logits(ids, { form: "reference" }), RangeError, text);
      throwsExactly(() => m.logitsWith(ids, { attend }), RangeError, text);
      throwsExactly(() => m.attentionWeights(ids), RangeError, text);
      ids.dispose();
    }
    // The edges of the vocabulary are fine.
    const edges = tf.tensor2d([[0, 255]], [1, 2], "int32");
    const logits = m.logits(edges);
    assert.deepEqual(logits.shape, [1, 2, 256]);
    tf.dispose([edges, logits]);
  });
});

Deno.test("vocabulary: decodeSession and generate reject ids outside the vocabulary", async () => {
  const model = createModel(tiny, quiet);
  const session = decodeSession(model);
  throwsExactly(() => session.prefill([1, 256]), RangeError, "ids[1] must be an integer token id in 0..255, got 256");
  throwsExactly(() => session.step(-1), RangeError, "decodeSession.step: id must be an integer token id in 0..255");
  throwsExactly(() => session.step("a" as unknown as number), TypeError, "id must be a token id (a number)");
  assert.equal(session.position, 0);
  session.dispose();
  await rejectsExactly(
    () => generate(model, { prompt: [300], maxNewTokens: 1 }),
    RangeError,
    "prompt token 0 must be an integer token id in 0..255, got 300",
  );
  await rejectsExactly(
    () => generate(null as unknown as TransformerModel, { prompt: [1], maxNewTokens: 1 }),
    TypeError,
    "generate: model must be a TransformerModel",
  );
  model.dispose();
});

Deno.test("sampleToken: a NaN logit throws instead of letting the draw fall through to the last token", () => {
  const logits = [0, NaN, 1];
  throwsExactly(() => sampleToken(logits, { uniform: 0.5 }), RangeError, "sampleToken: logits[1] is NaN");
  throwsExactly(() => sampleToken(logits, { greedy: true }), RangeError, "sampleToken: logits[1] is NaN");
  // -Infinity is a masked token: never drawn, and allowed.
  assert.equal(sampleToken([-Infinity, 0], { uniform: 0.99 }), 1);
});

// 2. Zero-sized dimensions.

Deno.test("zero-sized axes: every variant's attend, weights and reference throw a RangeError naming q, k or v", () => {
  const good = seededQKV({ b: 1, h: 2, n: 3, dk: 4, dv: 2, seed: 1 });
  const zeros = (shape: number[]) => tf.zeros<tf.Rank>(shape) as tf.Tensor4D;
  const cases = [
    { qkv: { q: zeros([1, 2, 3, 0]), k: zeros([1, 2, 3, 0]), v: good.v }, text: "q must have dk >= 1" },
    { qkv: { ...good, v: zeros([1, 2, 3, 0]) }, text: "v must have dv >= 1" },
    { qkv: { q: zeros([1, 2, 0, 4]), k: zeros([1, 2, 0, 4]), v: zeros([1, 2, 0, 2]) }, text: "q must have n >= 1" },
    { qkv: { q: zeros([0, 2, 3, 4]), k: zeros([0, 2, 3, 4]), v: zeros([0, 2, 3, 2]) }, text: "q must have batch >= 1" },
    { qkv: { q: zeros([1, 0, 3, 4]), k: zeros([1, 0, 3, 4]), v: zeros([1, 0, 3, 2]) }, text: "q must have heads >= 1" },
  ];
  for (const [name, variant] of Object.entries(variants)) {
    for (const { qkv, text } of cases) {
      throwsExactly(() => variant.attend(qkv), RangeError, `${name}.attend: ${text}`);
      throwsExactly(() => variant.attend(qkv, { causal: true }), RangeError, `${name}.attend: ${text}`);
      throwsExactly(() => variant.reference(qkv), RangeError, `${name}.reference: ${text}`);
      if (!text.startsWith("v")) throwsExactly(() => variant.weights(qkv), RangeError, `${name}.weights: ${text}`);
    }
  }
  for (const name of ["linear", "norm"] as const) {
    const [dk0] = cases;
    throwsExactly(() => recurrentAttend(name, dk0.qkv), RangeError, `${name}.recurrentAttend: q must have dk >= 1`);
    throwsExactly(() => chunkedAttend(name, cases[1].qkv), RangeError, `${name}.chunkedAttend: v must have dv >= 1`);
    const token = tf.zeros([1, 2, 0]) as tf.Tensor3D;
    const one = tf.ones([1, 2, 4]) as tf.Tensor3D;
    const state = initialState({ batch: 1, heads: 2, dk: 4, dv: 4 });
    throwsExactly(
      () => recurrentStep(name, { q: token, k: token, v: one }, { state }),
      RangeError,
      `${name}.recurrentStep: q must have dk >= 1`,
    );
    tf.dispose([token, one, state.s, state.z]);
  }
  for (const name of DECODER_VARIANTS) {
    const dec = decoder(name, (name === "cosformer" ? { maxLength: 8 } : {}) as never);
    const state = dec.init({ batch: 1, heads: 2, dk: 4, dv: 2 });
    const step = { ...cases[1].qkv, q: zeros([1, 2, 1, 4]), k: zeros([1, 2, 1, 4]), v: zeros([1, 2, 1, 0]) };
    throwsExactly(() => dec.step(state, step), RangeError, `decoder("${name}").step: v must have dv >= 1`);
    throwsExactly(() => dec.prefill(state, cases[0].qkv), RangeError, `decoder("${name}").prefill: q must have dk`);
    tf.dispose([step.q, step.k, step.v]);
    dec.dispose(state);
  }
  tf.dispose(cases.flatMap(({ qkv }) => [qkv.q, qkv.k, qkv.v]));
  tf.dispose([good.q, good.k, good.v]);
});

Deno.test("recurrentStep: a k or v whose axes differ from q's throws instead of broadcasting", () => {
  const q = tf.ones([2, 2, 4]) as tf.Tensor3D;
  const k1 = tf.ones([2, 2, 1]) as tf.Tensor3D;
  const v1 = tf.ones([1, 2, 4]) as tf.Tensor3D;
  const state = initialState({ batch: 2, heads: 2, dk: 4, dv: 4 });
  throwsExactly(() => recurrentStep("linear", { q, k: k1, v: q }, { state }), Error, "k must have q's shape");
  throwsExactly(() => recurrentStep("norm", { q, k: q, v: v1 }, { state }), Error, "v q's batch and heads");
  tf.dispose([q, k1, v1, state.s, state.z]);
});

// 3. Disposed tensors.

Deno.test("disposed inputs: every form names the disposed argument", () => {
  const live = seededQKV({ b: 1, h: 2, n: 3, dk: 4, dv: 2, seed: 2 });
  const dead = seededQKV({ b: 1, h: 2, n: 3, dk: 4, dv: 2, seed: 3 });
  tf.dispose([dead.q, dead.k, dead.v]);
  for (const [name, variant] of Object.entries(variants)) {
    throwsExactly(() => variant.attend({ ...live, q: dead.q }), Error, `${name}.attend: q was disposed`);
    throwsExactly(() => variant.attend({ ...live, k: dead.k }), Error, `${name}.attend: k was disposed`);
    throwsExactly(() => variant.reference({ ...live, v: dead.v }), Error, `${name}.reference: v was disposed`);
    throwsExactly(() => variant.weights({ ...live, k: dead.k }), Error, `${name}.weights: k was disposed`);
    throwsExactly(() => variant.outputNorm(dead.v), Error, `${name}.outputNorm: o was disposed`);
  }
  throwsExactly(() => chunkedAttend("linear", { ...live, v: dead.v }), Error, "linear.chunkedAttend: v was disposed");
  const state = initialState({ batch: 1, heads: 2, dk: 4, dv: 2 });
  tf.dispose([state.s, state.z]);
  throwsExactly(() => recurrentAttend("norm", live, { state }), Error, "option state was disposed");
  const token = tf.ones([1, 2, 4]) as tf.Tensor3D;
  const gone = tf.ones([1, 2, 4]) as tf.Tensor3D;
  gone.dispose();
  const fresh = initialState({ batch: 1, heads: 2, dk: 4, dv: 4 });
  throwsExactly(
    () => recurrentStep("linear", { q: token, k: gone, v: token }, { state: fresh }),
    Error,
    "linear.recurrentStep: k was disposed",
  );
  const projection = orthogonalRandomFeatures({ features: 4, dk: 4, seed: 0 });
  projection.dispose();
  throwsExactly(() => variants.performer.attend(live, { projection }), Error, "option projection was disposed");
  const dec = decoder("softmax");
  const decState = dec.init({ batch: 1, heads: 2, dk: 4, dv: 2 });
  throwsExactly(
    () => dec.prefill(decState, { ...live, q: dead.q }),
    Error,
    'decoder("softmax").prefill: q was disposed',
  );
  dec.dispose(decState);
  withModel((m) => {
    const ids = tf.tensor2d([[1, 2]], [1, 2], "int32");
    ids.dispose();
    throwsExactly(() => m.logits(ids), Error, "TransformerModel: ids was disposed");
    const perturb = tf.zeros([1, 2, 2, 2]) as tf.Tensor4D;
    perturb.dispose();
    throwsExactly(
      () => m.referenceLoss(lm([1, 2], [2, 3]), { perturb: [perturb] }),
      Error,
      "perturb[0] was disposed",
    );
  });
  tf.dispose([live.q, live.k, live.v, token, fresh.s, fresh.z]);
});

Deno.test("disposed inputs: the diagnostics name the disposed argument", () => {
  const w = tf.ones([3, 3]) as tf.Tensor2D;
  const scores = tf.ones([3]) as tf.Tensor1D;
  const ids = tf.tensor2d([[1, 2]], [1, 2], "int32");
  tf.dispose([w, scores, ids]);
  throwsExactly(() => rowNormalize(w), Error, "rowNormalize: weights was disposed");
  throwsExactly(() => localityCurve(w), Error, "localityCurve: weights was disposed");
  throwsExactly(() => heatmapRows(w), Error, "heatmapRows: matrix was disposed");
  throwsExactly(() => scoreJacobian(scores, "softmax"), Error, "scoreJacobian: scores was disposed");
  withModel((m) => throwsExactly(() => attentionMaps(m, ids), Error, "attentionMaps: ids was disposed"));
});

// 4. createModel(null).

Deno.test("createModel and modelConfig: a config that is not an object gets a TypeError showing a minimal one", () => {
  for (const config of [null, undefined, 3, "vanilla", []]) {
    throwsExactly(() => createModel(config as never, quiet), TypeError, "createModel: config must be an object");
    throwsExactly(
      () => createModel(config as never, quiet),
      TypeError,
      'e.g. createModel({ attention: "transnormer-t2"',
    );
  }
  throwsExactly(() => modelConfig(null as never), TypeError, "modelConfig: config must be an object, got null");
  throwsExactly(() => createModel({}, null as never), TypeError, "createModel: options must be an object, got null");
  throwsExactly(() => createModel({}, { log: 1 } as never), TypeError, "option log must be a function");
});

// 5. Sizes that allocate.

Deno.test("maxLength and the model's size are bounded before anything is allocated", () => {
  throwsExactly(
    () => createModel({ ...tiny, maxLength: 1e9 }, quiet),
    RangeError,
    `maxLength must be an integer >= 1 and <= ${MAX_LENGTH}, got 1000000000: no variant here fits`,
  );
  // The sinusoidal table holds maxLength × dModel floats: 2^20 × 128 = 2^27, twice the limit of 2^26.
  throwsExactly(
    () => createModel({ ...tiny, dModel: 128, maxLength: MAX_LENGTH }, quiet),
    RangeError,
    'lower maxLength to at most 524288, or set positions: "none"',
  );
  // Without the table the same length builds.
  const model = createModel({ ...tiny, dModel: 128, maxLength: MAX_LENGTH, positions: "none" }, quiet);
  model.dispose();
  // 2 layers of a 10^5-wide FFN on dModel 2048 need far more than 2^28 parameters.
  throwsExactly(
    () => createModel({ ...tiny, dModel: 2048, ffnHidden: 100_000 }, quiet),
    RangeError,
    `over the limit of ${MAX_PARAMETERS.toLocaleString("en-US")}`,
  );
});

Deno.test("a constructor that fails part way (an allocation refused) disposes every variable it made", () => {
  const engine = tf.engine();
  const makeVariable = engine.makeVariable;
  let made = 0;
  // The fifth weight cannot be allocated, as when a size is too large for the machine.
  engine.makeVariable = function (...args: Parameters<typeof makeVariable>) {
    if (++made === 5) throw new RangeError("Array buffer allocation failed");
    return makeVariable.apply(engine, args);
  };
  try {
    throwsExactly(() => createModel(tiny, quiet), RangeError, "TransformerModel: out of memory allocating");
  } finally {
    engine.makeVariable = makeVariable;
  }
  assert.equal(made, 5);
});

// 6. Per-layer options, checked when the model is created.

Deno.test("per-layer attention options are checked by the variant's own rules when the model is created", () => {
  const layer = (variant: string, options: Record<string, unknown>) =>
    createModel({ ...tiny, attention: [{ variant, options } as never] }, quiet);
  const where = "modelConfig: attention[0].options";
  throwsExactly(() => layer("diag", { blockSize: -3 }), RangeError, `${where} (diag): option blockSize must be >= 1`);
  throwsExactly(() => layer("diag", { blockSize: 2.5 }), RangeError, "option blockSize must be an integer, got 2.5");
  throwsExactly(() => layer("diag", { inner: 3 }), TypeError, 'option inner must be one of "softmax", "relu", got 3');
  throwsExactly(() => layer("local", { window: -1 }), RangeError, `${where} (local): option window must be >= 0`);
  throwsExactly(() => layer("linear", { featureMap: "relu2" }), RangeError, 'option featureMap must be one of "elu+1"');
  throwsExactly(() => layer("performer", { features: 0 }), RangeError, "option features must be >= 1, got 0");
  throwsExactly(() => layer("softmax", { scale: "1" }), TypeError, 'option scale must be a finite number, got "1"');
  throwsExactly(() => layer("norm", { chunk: 8 }), TypeError, `${where}: unknown option "chunk" for norm`);
  // The same rules as the variant: what it accepts (a window of 0 attends to the token itself) builds.
  const model = layer("local", { window: 0 });
  model.dispose();
});

// 7. A checkpoint beyond its schedule.

function scalarModel(): Trainable<number> & { dispose(): void } {
  const w = tf.tidy(() => tf.variable(tf.tensor1d([2])));
  return {
    variables: { w },
    config: { kind: "scalar" },
    loss: (t: number) => tf.sum(tf.square(tf.sub(w, t))) as tf.Scalar,
    dispose: () => w.dispose(),
  };
}

Deno.test("a checkpoint whose step exceeds steps is refused on load, resume and reuse, naming path, step and steps", async () => {
  const runsDir = await Deno.makeTempDir();
  const options = { runsDir, steps: 10, batchAt: () => 0, progress: "none" as const, log: null };
  const model = scalarModel();
  await train(model, { ...options, name: "r", until: 5, checkpointEvery: 5 });
  const dir = join(runsDir, "r");
  const path = join(dir, MANIFEST_FILE);
  const manifest = JSON.parse(await Deno.readTextFile(path));
  await Deno.writeTextFile(path, JSON.stringify({ ...manifest, step: 99, finished: false }));
  const text = `checkpoint ${path} is at step 99, beyond the schedule's 10 steps; raise steps to at least 99`;
  await rejectsExactly(() => loadCheckpoint(dir), RangeError, text);
  await rejectsExactly(() => train(model, { ...options, name: "r", resume: true }), RangeError, text);
  let built = 0;
  await rejectsExactly(
    () => trainCached("r", { ...options, build: () => (built++, scalarModel()) }),
    RangeError,
    `or delete ${dir} to start over`,
  );
  assert.equal(built, 1);
  // finished must agree with step and steps: a "finished" run at step 5 of 10 is corrupt, not reusable.
  await Deno.writeTextFile(path, JSON.stringify({ ...manifest, finished: true }));
  await rejectsExactly(() => loadCheckpoint(dir), CheckpointError, "finished is true at step 5 of 10");
  // Adam refuses a state beyond its schedule too.
  const opt = adam(model.variables, { steps: 10 });
  const zeros = { w: new Float32Array(1) };
  throwsExactly(
    () => opt.setState({ step: 11, m: zeros, v: zeros }),
    RangeError,
    "adam.setState: state.step 11 is beyond the schedule's 10 steps",
  );
  opt.dispose();
  model.dispose();
  await Deno.remove(runsDir, { recursive: true });
});

// 8. Asynchronous callbacks where the loop needs values.

Deno.test("an async batchAt, validation.batches or build is named as such, before any update", async () => {
  const model = scalarModel();
  const base = { steps: 3, progress: "none" as const, log: null };
  await rejectsExactly(
    () => train(model, { ...base, batchAt: () => Promise.resolve(0) as unknown as number }),
    TypeError,
    "train: option batchAt returned a Promise at step 0; it must be synchronous and pure in step",
  );
  assert.equal(model.variables.w.dataSync()[0], 2, "no update was applied");
  await rejectsExactly(
    () =>
      train(model, {
        ...base,
        batchAt: () => 0,
        validation: { every: 1, batches: () => Promise.resolve([0]) as unknown as number[] },
      }),
    TypeError,
    "validation.batches() returned a Promise",
  );
  await rejectsExactly(
    () =>
      train(model, { ...base, batchAt: () => 0, probe: { every: 1, fn: () => Promise.resolve({ a: "1" }) as never } }),
    TypeError,
    'probe.fn must return an object of numbers, got a: "1"',
  );
  await rejectsExactly(
    () => train(model, { ...base, batchAt: () => 0, probe: { every: 1, fn: () => ({ a: "1" }) as never } }),
    TypeError,
    'probe.fn must return an object of numbers, got a: "1"',
  );
  const runsDir = await Deno.makeTempDir();
  await rejectsExactly(
    () => trainCached("b", { ...base, runsDir, batchAt: () => 0, build: () => Promise.resolve(model) as never }),
    TypeError,
    "trainCached: option build returned a Promise",
  );
  model.dispose();
  await Deno.remove(runsDir, { recursive: true });
});

// 9. A runsDir that cannot be written.

Deno.test("an unwritable runsDir fails before the first step (and before build), naming runsDir and the fix", async () => {
  const file = await Deno.makeTempFile();
  const runsDir = join(file, "runs");
  const model = scalarModel();
  let calls = 0;
  const options = { runsDir, steps: 3, batchAt: () => (calls++, 0), progress: "none" as const, log: null };
  const text = `option runsDir (${JSON.stringify(runsDir)}) cannot hold the run: writing in ${join(runsDir, "r")}`;
  await rejectsExactly(() => train(model, { ...options, name: "r" }), Error, `train: ${text}`);
  await rejectsExactly(() => train(model, { ...options, name: "r" }), Error, "give a folder you can write to");
  let built = 0;
  await rejectsExactly(
    () => trainCached("r", { ...options, build: () => (built++, model) }),
    Error,
    `trainCached: ${text}`,
  );
  assert.equal(calls, 0, "no step ran");
  assert.equal(built, 0, "no model was built");
  // With no name nothing is written, so no folder is needed.
  const result = await train(model, { ...options, runsDir: file });
  assert.equal(result.step, 3);
  model.dispose();
  await Deno.remove(file);
});
