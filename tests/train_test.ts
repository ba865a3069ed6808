import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  adam,
  CheckpointError,
  clipByGlobalNorm,
  globalNorm,
  learningRate,
  loadCheckpoint,
  MANIFEST_FILE,
  readCheckpointManifest,
  runIdentity,
  saveCheckpoint,
  train,
  type Trainable,
  trainCached,
  type TrainOptions,
  trainStep,
} from "../lib/train/mod.ts";
import { randomNormal, seededNormal } from "../lib/random.ts";
import { createModel } from "../lib/models/mod.ts";
import { setFiniteChecks } from "../lib/attention/mod.ts";
import { backendLabel } from "../lib/backend.ts";
import type { LmBatch } from "../lib/data/mod.ts";
import "./helpers.ts";

const D = 4;
const H = 6;
const C = 3;

/** A synthetic classification batch: n rows of D features and their labels. */
interface Batch {
  x: Float32Array;
  y: Int32Array;
  /** Inject a non-finite value: into the loss, or into these variables' gradients only. */
  poison?: "loss" | string[];
}

type Mlp = Trainable<Batch> & { dispose(): void };

/** A 2-layer MLP: logits = tanh(x W0) W1 + b1, mean softmax cross-entropy. */
function mlp(seed: number, hidden = H): Mlp {
  const variables = tf.tidy(() => ({
    "blocks.0.w": tf.variable(randomNormal([D, hidden], { seed, std: 0.5 })),
    "blocks.1.w": tf.variable(randomNormal([hidden, C], { seed: seed + 1, std: 0.5 })),
    "blocks.1.b": tf.variable(tf.zeros([C])),
  }));
  return {
    variables,
    config: { kind: "mlp", d: D, hidden, classes: C, seed },
    loss(batch) {
      const n = batch.y.length;
      const x = tf.tensor2d(batch.x, [n, D]); // [n, D]
      const h = tf.tanh(tf.matMul(x, variables["blocks.0.w"])); // [n, H]
      const logits = tf.add(tf.matMul(h, variables["blocks.1.w"]), variables["blocks.1.b"]); // [n, C]
      const picked = tf.sum(tf.mul(tf.oneHot(tf.tensor1d(batch.y, "int32"), C), logits), 1); // [n]
      let loss = tf.mean(tf.sub(tf.logSumExp(logits, 1), picked)) as tf.Scalar;
      if (batch.poison === "loss") loss = tf.mul(loss, NaN) as tf.Scalar;
      else if (batch.poison) {
        // sqrt(w - w) is 0, but its gradient is Inf - Inf = NaN for w alone.
        for (const name of batch.poison) {
          const w = variables[name as keyof typeof variables];
          loss = tf.add(loss, tf.sum(tf.sqrt(tf.sub(w, w)))) as tf.Scalar;
        }
      }
      return loss;
    },
    dispose() {
      for (const w of Object.values(variables)) w.dispose();
    },
  };
}

/** Batch `step`: seeded features, labels from a fixed linear teacher (so the task is learnable). */
function batchAt(step: number, n = 16): Batch {
  const normal = seededNormal(1000 + step);
  const teacher = [[1, -1, 0.5], [0.5, 1, -1], [-1, 0.5, 1], [1, 1, -0.5]];
  const x = Float32Array.from({ length: n * D }, () => normal());
  const y = Int32Array.from({ length: n }, (_, i) => {
    const scores = [0, 1, 2].map((c) => teacher.reduce((s, row, j) => s + row[c] * x[i * D + j], 0));
    return scores.indexOf(Math.max(...scores));
  });
  return { x, y };
}

async function weightsOf(model: Mlp): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = {};
  for (const [name, w] of Object.entries(model.variables)) out[name] = Float32Array.from(await w.data());
  return out;
}

function assertBitwiseEqual(a: Float32Array, b: Float32Array, what: string) {
  assert.equal(a.length, b.length, `${what}: length`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) assert.equal(ua[i], ub[i], `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

const QUIET = { progress: "none", log: null } as const;

async function withTempDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "attnlab-train-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("learningRate: warmup from 0 and cosine to minLr at known steps (closed form)", () => {
  const o = { lr: 1, minLr: 0.1, warmup: 4, steps: 14 };
  // Warmup: (s + 1)/4; cosine over s = 4..13: 0.1 + 0.9 (1 + cos(pi (s - 4)/9))/2.
  const expected: [number, number][] = [[0, 0.25], [1, 0.5], [3, 1], [4, 1], [7, 0.775], [13, 0.1], [20, 0.1]];
  for (const [s, lr] of expected) assert.ok(Math.abs(learningRate(s, o) - lr) < 1e-12, `step ${s}`);
  assert.ok(Math.abs(learningRate(10, o) - (0.1 + 0.9 * 0.25)) < 1e-12); // cos(2pi/3) = -1/2
  assert.equal(learningRate(10, { ...o, schedule: "constant" }), 1);
  assert.ok(Math.abs(learningRate(13, { lr: 2, warmup: 4, steps: 14 }) - 0.2) < 1e-12, "default minLr = 0.1 lr");
  assert.throws(() => learningRate(-1, o), /step must be an integer >= 0/);
});

Deno.test("learningRate, clipByGlobalNorm and adam.apply: an unknown option key throws, naming the key", () => {
  assert.throws(
    () => learningRate(0, { lr: 1, steps: 4, warmUp: 2 } as never),
    /learningRate: unknown option "warmUp"/,
  );
  assert.throws(() => learningRate(0, null as never), /learningRate: options must be an object/);
  const g = tf.tensor1d([3, 4]);
  assert.throws(
    () => clipByGlobalNorm({ g }, 1, { gradNorm: 5 } as never),
    /clipByGlobalNorm: unknown option "gradNorm"/,
  );
  const w = tf.variable(tf.tensor1d([1, 2]));
  const opt = adam({ w }, { lr: 0.1, steps: 4 });
  assert.throws(() => opt.apply({ w: g }, { norm: 5 } as never), /adam\.apply: unknown option "norm"/);
  assert.equal(opt.step, 0, "a rejected call applies nothing");
  assert.deepEqual(Array.from(w.dataSync()), [1, 2]);
  opt.dispose();
  tf.dispose([g, w]);
});

Deno.test("adam: a few AdamW steps match a float64 closed-form reference", () => {
  const w0 = [1, -2, 0.5];
  const c = [1, 0.5, 2];
  const t = [0.3, 0.1, -1];
  const o = { lr: 0.1, minLr: 0.01, warmup: 2, steps: 6, beta1: 0.8, beta2: 0.9, eps: 1e-8, weightDecay: 0.1 };
  const w = tf.variable(tf.tensor1d(w0));
  const cT = tf.tensor1d(c);
  const tT = tf.tensor1d(t);
  const opt = adam({ w }, { ...o, decay: () => true });

  const ref = { w: [...w0], m: [0, 0, 0], v: [0, 0, 0] };
  for (let s = 0; s < 6; s++) {
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(cT, tf.square(tf.sub(w, tT)))) as tf.Scalar, [w]);
    const info = opt.apply({ w: grads[w.name] });
    value.dispose();
    grads[w.name].dispose();

    const lr = s < 2 ? 0.1 * (s + 1) / 2 : 0.01 + 0.09 * (1 + Math.cos(Math.PI * (s - 2) / 3)) / 2;
    assert.ok(Math.abs(info.lr - lr) < 1e-12, `lr at step ${s}`);
    for (let i = 0; i < 3; i++) {
      const g = 2 * c[i] * (ref.w[i] - t[i]);
      ref.m[i] = 0.8 * ref.m[i] + 0.2 * g;
      ref.v[i] = 0.9 * ref.v[i] + 0.1 * g * g;
      const mHat = ref.m[i] / (1 - 0.8 ** (s + 1));
      const vHat = ref.v[i] / (1 - 0.9 ** (s + 1));
      ref.w[i] = ref.w[i] * (1 - lr * 0.1) - lr * mHat / (Math.sqrt(vHat) + 1e-8);
    }
    const got = { w: w.dataSync(), m: opt.m.w.dataSync(), v: opt.v.w.dataSync() };
    for (const key of ["w", "m", "v"] as const) {
      for (let i = 0; i < 3; i++) {
        const err = Math.abs(got[key][i] - ref[key][i]);
        assert.ok(
          err <= 1e-5 * Math.max(1, Math.abs(ref[key][i])),
          `${key}[${i}] at step ${s}: ${got[key][i]} vs ${ref[key][i]}`,
        );
      }
    }
  }
  assert.equal(opt.step, 6);
  opt.dispose();
  tf.dispose([w, cT, tT]);
});

Deno.test("adam: weight decay skips rank-1 variables by default; missing gradients leave a variable alone", () => {
  const m = tf.variable(tf.ones([2, 2]));
  const b = tf.variable(tf.ones([2]));
  const frozen = tf.variable(tf.ones([2]));
  const opt = adam({ m, b, frozen }, { lr: 0.5, steps: 1, weightDecay: 1, schedule: "constant" });
  const zeros = { m: tf.zeros([2, 2]), b: tf.zeros([2]) };
  opt.apply(zeros);
  // Zero gradient: the Adam step is 0, so only the decay w (1 - lr λ) = 0.5 acts.
  assert.deepEqual(Array.from(m.dataSync()), [0.5, 0.5, 0.5, 0.5]);
  assert.deepEqual(Array.from(b.dataSync()), [1, 1]);
  assert.deepEqual(Array.from(frozen.dataSync()), [1, 1]);
  opt.dispose();
  tf.dispose([m, b, frozen, zeros.m, zeros.b]);
});

Deno.test("clipByGlobalNorm: the clipped global norm equals the threshold; below it nothing changes", () => {
  const grads = { a: randomNormal([3, 4], { seed: 1 }), b: randomNormal([5], { seed: 2 }) };
  let sq = 0;
  for (const g of Object.values(grads)) for (const x of g.dataSync()) sq += x * x;
  const clipped = clipByGlobalNorm(grads, 0.5);
  assert.ok(Math.abs(clipped.norm - Math.sqrt(sq)) < 1e-5 * Math.sqrt(sq));
  assert.equal(clipped.clipped, true);
  assert.ok(Math.abs(globalNorm(clipped.grads) - 0.5) < 1e-6, `clipped norm ${globalNorm(clipped.grads)}`);
  const kept = clipByGlobalNorm(grads, 1e6);
  assert.equal(kept.clipped, false);
  assert.deepEqual(Array.from(kept.grads.a.dataSync()), Array.from(grads.a.dataSync()));
  assert.throws(() => clipByGlobalNorm(grads, 0), /clip must be a finite number > 0 or null/);
  tf.dispose([grads.a, grads.b, clipped.grads.a, clipped.grads.b, kept.grads.a, kept.grads.b]);
});

Deno.test("adam: clipping applies the same update as unclipped Adam on gradients scaled to the threshold", () => {
  const g = { w: tf.tensor1d([3, -4]) };
  const a = tf.variable(tf.tensor1d([1, 1]));
  const b = tf.variable(tf.tensor1d([1, 1]));
  const optA = adam({ w: a }, { lr: 0.1, steps: 3, clip: 1 });
  const optB = adam({ w: b }, { lr: 0.1, steps: 3 });
  for (let s = 0; s < 3; s++) {
    const info = optA.apply(g);
    assert.equal(info.clipped, true);
    assert.equal(info.gradNorm, 5);
    const scaled = tf.mul(g.w, 1 / 5);
    optB.apply({ w: scaled });
    scaled.dispose();
  }
  assert.deepEqual(Array.from(a.dataSync()), Array.from(b.dataSync()));
  assert.deepEqual(Array.from(optA.v.w.dataSync()), Array.from(optB.v.w.dataSync()));
  optA.dispose();
  optB.dispose();
  tf.dispose([g.w, a, b]);
});

Deno.test("train: the loss falls on a fixed batch; gradient-norm logs match independent gradients", async () => {
  const model = mlp(1);
  const fixed = batchAt(0, 32);
  const reference = tf.variableGrads(() => model.loss(fixed), Object.values(model.variables));
  const refNorms: Record<string, number> = {};
  for (const [name, w] of Object.entries(model.variables)) {
    refNorms[name] = Math.hypot(...reference.grads[w.name].dataSync());
  }
  const refLoss = reference.value.dataSync()[0];
  tf.dispose([reference.value, ...Object.values(reference.grads)]);

  const seen: number[] = [];
  const result = await train(model, {
    ...QUIET,
    steps: 40,
    lr: 0.05,
    schedule: "constant",
    batchAt: () => fixed,
    tokensPerBatch: 32,
    onStep: (info) => void seen.push(info.step),
  });
  const losses = result.logs.train.map((r) => r.loss);
  assert.equal(losses[0], refLoss);
  assert.ok(losses.at(-1)! < 0.5 * losses[0], `loss ${losses[0]} -> ${losses.at(-1)}`);
  assert.deepEqual(seen, Array.from({ length: 40 }, (_, i) => i));
  assert.equal(result.finished, true);
  assert.equal(result.dir, null);

  const first = result.logs.gradNorms[0];
  assert.deepEqual(Object.keys(first), [
    "step",
    "blocks.0.w",
    "blocks.1.w",
    "blocks.1.b",
    "blocks.0.*",
    "blocks.1.*",
    "global",
  ]);
  for (const name of Object.keys(refNorms)) {
    assert.ok(Math.abs(first[name] - refNorms[name]) < 1e-5 * refNorms[name], `${name}: ${first[name]}`);
  }
  assert.ok(Math.abs(first["blocks.0.*"] - first["blocks.0.w"]) < 1e-12);
  assert.ok(Math.abs(first["blocks.1.*"] - Math.hypot(first["blocks.1.w"], first["blocks.1.b"])) < 1e-6);
  assert.ok(Math.abs(first.global - Math.hypot(first["blocks.0.*"], first["blocks.1.*"])) < 1e-6);
  assert.equal(result.logs.train[0].grad_norm, first.global);
  for (const row of result.logs.train) {
    assert.equal(row.tokens, 32);
    assert.ok(row.tokens_per_s !== null && row.tokens_per_s > 0 && Number.isFinite(row.tokens_per_s));
    assert.equal(row.lr, 0.05);
  }
  model.dispose();
});

Deno.test("train: clipping is logged with its threshold, validation gives exp(loss) and bits, CSVs are written", async () => {
  await withTempDir(async (runsDir) => {
    const model = mlp(2);
    const valid = [batchAt(100), batchAt(101)];
    const result = await train(model, {
      ...QUIET,
      name: "clip",
      runsDir,
      steps: 5,
      lr: 0.05,
      clip: 0.3,
      batchAt,
      batchTokens: (b) => b.y.length,
      validation: { every: 2, batches: () => valid },
      probe: { every: 2, fn: (step) => ({ twice: 2 * step }) },
    });
    for (const row of result.logs.train) {
      assert.equal(row.clip, 0.3);
      assert.equal(row.clipped, row.grad_norm > 0.3);
      assert.equal(row.tokens, 16);
    }
    assert.ok(result.logs.train.some((r) => r.clipped));
    assert.deepEqual(result.logs.valid.map((r) => r.step), [2, 4, 5]);
    assert.deepEqual(result.logs.probes, [{ step: 0, twice: 0 }, { step: 2, twice: 4 }, { step: 4, twice: 8 }]);
    // The last validation ran on the final weights: recompute it here.
    const now = valid.map((b) => tf.tidy(() => model.loss(b).dataSync()[0]));
    const last = result.logs.valid.at(-1)!;
    assert.ok(Math.abs(last.loss - (now[0] + now[1]) / 2) < 1e-7);
    assert.equal(last.perplexity, Math.exp(last.loss));
    assert.equal(last.bits_per_byte, last.loss / Math.LN2);

    const dir = join(runsDir, "clip");
    const header = async (file: string) => (await Deno.readTextFile(join(dir, file))).split("\n")[0];
    assert.equal(await header("train.csv"), "step,lr,loss,grad_norm,clipped,clip,tokens,tokens_per_s,seconds");
    assert.equal(await header("grad_norms.csv"), "step,blocks.0.w,blocks.1.w,blocks.1.b,blocks.0.*,blocks.1.*,global");
    assert.equal(await header("valid.csv"), "step,loss,perplexity,bits_per_byte");
    assert.equal(await header("probes.csv"), "step,twice");
    const trainLines = (await Deno.readTextFile(join(dir, "train.csv"))).trim().split("\n");
    assert.equal(trainLines.length, 6);
    const manifest = await readCheckpointManifest(dir);
    assert.equal(manifest?.step, 5);
    assert.equal(manifest?.finished, true);
    assert.deepEqual(manifest?.logs.rows, { train: 5, gradNorms: 5, valid: 3, probes: 3 });
    // The backend that trained it is recorded (blas here; webgpu with its adapter), outside the identity.
    assert.equal(manifest?.backend, await backendLabel());
    assert.equal(manifest?.backend, tf.getBackend());
    model.dispose();
  });
});

/** A language-model batch of `rows` rows whose targets are the given numbers, with an optional mask. */
function numberBatch(targets: number[], rows: number, mask?: number[]): LmBatch {
  return {
    kind: "lm",
    inputs: new Int32Array(targets.length),
    targets: Int32Array.from(targets),
    batch: rows,
    length: targets.length / rows,
    ...(mask ? { mask: Float32Array.from(mask) } : {}),
  };
}

Deno.test("train: an async probe.fn is awaited in place: it sees the weights of its step and logs what a sync one does", async () => {
  // The probe reads w's first entry: synchronously, or with await data() after a delay, as a GPU backend must.
  const run = async (
    read: (model: Mlp) => (step: number) => Record<string, number> | Promise<Record<string, number>>,
  ) => {
    const model = mlp(3);
    const first = Object.values(model.variables)[0];
    const result = await train(model, { ...QUIET, steps: 5, lr: 0.05, batchAt, probe: { every: 2, fn: read(model) } });
    const last = first.dataSync()[0];
    model.dispose();
    return { probes: result.logs.probes, last };
  };
  const sync = await run((model) => (step) => ({ w: Object.values(model.variables)[0].dataSync()[0], step }));
  const async = await run((model) => async (step) => {
    await new Promise((resolve) => setTimeout(resolve, 5)); // the next update must wait for this probe
    return { w: (await Object.values(model.variables)[0].data())[0], step };
  });
  assert.deepEqual(async.probes, sync.probes);
  assert.deepEqual(sync.probes.map((r) => r.step), [0, 2, 4]);
  // Each probe saw its own step's weights: they moved between probes.
  assert.equal(new Set(sync.probes.map((r) => r.w)).size, 3);
  assert.equal(async.last, sync.last);
});

Deno.test("train: validation loss is the mean over all scored targets, each batch weighted by its count", async () => {
  // Each target's "loss" is its own value, so a batch's mean loss is the mean of its scored targets (as the models'
  // losses are: weighted by the mask, or over batch × length without one).
  const w = tf.variable(tf.scalar(0));
  const meanTarget = (b: LmBatch) => {
    const weights = b.mask ?? new Float32Array(b.targets.length).fill(1);
    let sum = 0;
    let count = 0;
    b.targets.forEach((t, i) => (sum += t * weights[i], count += weights[i]));
    return sum / count;
  };
  const model: Trainable<LmBatch> = {
    variables: { w },
    config: { kind: "targets" },
    loss: (b) => tf.add(tf.mul(w, 0), meanTarget(b)) as tf.Scalar,
  };
  // a: 3 scored targets of mean 2; b: 1 masked target of 10; c: no mask, 2 rows × 1 target, mean 6.
  const a = numberBatch([1, 2, 3, 4], 1, [1, 1, 1, 0]);
  const b = numberBatch([10, 0, 0, 0], 1, [1, 0, 0, 0]);
  const c = numberBatch([5, 7], 2);
  const validate = async (batches: LmBatch[]) => {
    const result = await train(model, {
      ...QUIET,
      steps: 1,
      batchAt: () => a,
      validation: { every: 1, batches: () => batches },
    });
    return result.logs.valid.map((r) => r.loss);
  };
  // By hand: (1 + 2 + 3 + 10) / 4 = 4, not the mean of the batch means (2 + 10) / 2 = 6.
  assert.deepEqual(await validate([a, b]), [4]);
  // (1 + 2 + 3 + 10 + 5 + 7) / 6; the batch means alone would give (2 + 10 + 6) / 3 = 6.
  assert.deepEqual(await validate([a, b, c]), [28 / 6]);
  // Batches that score as many targets each keep the plain mean of their means.
  assert.deepEqual(await validate([a, numberBatch([8, 9, 10, 0], 1, [1, 1, 1, 0])]), [(2 + 9) / 2]);
  await assert.rejects(
    validate([a, { ...b, mask: new Float32Array(4) }]),
    /validation batch 1 scores 0 targets; each batch needs a finite number > 0/,
  );
  w.dispose();
});

Deno.test("train: a masked LM's validation loss over two batches equals its loss over them as one batch", async () => {
  const model = createModel({ attention: "vanilla", layers: 1, dModel: 8, heads: 2, task: "mlm" }, { log: () => {} });
  const M = model.config.maskToken!;
  const uniform = seededNormal(5);
  const ids = (n: number) => Int32Array.from({ length: n }, () => Math.abs(Math.floor(uniform() * 40)) % 200);
  // Two rows with 5 masked positions, then one row with 1: per-batch means weighted alike would overweight the last.
  const targets = ids(24);
  const mask = Float32Array.from({ length: 24 }, (_, i) => [1, 3, 8, 12, 14, 21].includes(i) ? 1 : 0);
  const inputs = targets.map((t, i) => mask[i] ? M : t);
  const whole: LmBatch = { kind: "lm", inputs, targets, batch: 3, length: 8, mask };
  const part = (from: number, to: number): LmBatch => ({
    kind: "lm",
    inputs: inputs.slice(from * 8, to * 8),
    targets: targets.slice(from * 8, to * 8),
    batch: to - from,
    length: 8,
    mask: mask.slice(from * 8, to * 8),
  });
  const result = await train(model, {
    ...QUIET,
    steps: 1,
    batchAt: () => whole,
    validation: { every: 1, batches: () => [part(0, 2), part(2, 3)] },
  });
  // Validation ran after the update: on the weights the model holds now.
  const expected = tf.tidy(() => model.loss(whole).dataSync()[0]);
  assert.ok(Math.abs(result.logs.valid[0].loss - expected) < 1e-6, `${result.logs.valid[0].loss} vs ${expected}`);
  model.dispose();
});

Deno.test("checkpoint: weights and Adam m, v round-trip bitwise", async () => {
  await withTempDir(async (dir) => {
    const special = new Float32Array([0, -0, 1e-45, -3.4e38, 1 / 3, NaN, Infinity, 7]);
    const w = tf.variable(randomNormal([2, 3], { seed: 5 }));
    const opt = adam({ "blocks.0.w": w }, { lr: 0.1, steps: 4 });
    for (let s = 0; s < 2; s++) {
      const g = randomNormal([2, 3], { seed: 10 + s });
      opt.apply({ "blocks.0.w": g });
      g.dispose();
    }
    const state = await opt.getState();
    const weights = { "blocks.0.w": Float32Array.from(w.dataSync()), extra: special };
    const shapes = { "blocks.0.w": [2, 3], extra: [8] };
    const logs = {
      train: [{
        step: 0,
        lr: 0.1,
        loss: NaN,
        grad_norm: Infinity,
        clipped: false,
        clip: null,
        tokens: null,
        tokens_per_s: null,
        seconds: 0.5,
      }],
      gradNorms: [{ step: 0, global: -Infinity }],
      valid: [],
      probes: [],
    };
    await saveCheckpoint(dir, {
      name: "rt",
      steps: 4,
      hash: "h",
      identity: { a: 1 },
      shapes,
      weights,
      adam: { step: 2, m: { ...state.m, extra: special }, v: { ...state.v, extra: special } },
      logs,
    });
    const back = await loadCheckpoint(dir);
    assert.ok(back);
    assert.equal(back.manifest.step, 2);
    assert.equal(back.manifest.finished, false);
    for (const name of Object.keys(shapes)) {
      assertBitwiseEqual(back.weights[name], weights[name as keyof typeof weights], `weights ${name}`);
    }
    assertBitwiseEqual(back.adam.m["blocks.0.w"], state.m["blocks.0.w"], "m");
    assertBitwiseEqual(back.adam.v["blocks.0.w"], state.v["blocks.0.w"], "v");
    assert.deepEqual(back.logs, logs);

    const w2 = tf.variable(tf.zeros([2, 3]));
    const opt2 = adam({ "blocks.0.w": w2 }, { lr: 0.1, steps: 4 });
    opt2.setState({
      step: back.adam.step,
      m: { "blocks.0.w": back.adam.m["blocks.0.w"] },
      v: { "blocks.0.w": back.adam.v["blocks.0.w"] },
    });
    const state2 = await opt2.getState();
    assert.equal(state2.step, 2);
    assertBitwiseEqual(state2.m["blocks.0.w"], state.m["blocks.0.w"], "m after setState");
    assertBitwiseEqual(state2.v["blocks.0.w"], state.v["blocks.0.w"], "v after setState");
    opt.dispose();
    opt2.dispose();
    tf.dispose([w, w2]);
  });
});

function resumeOptions(runsDir: string): TrainOptions<Batch> {
  return {
    ...QUIET,
    runsDir,
    steps: 6,
    lr: 0.05,
    warmup: 2,
    clip: 0.5,
    weightDecay: 0.01,
    batchAt,
    checkpointEvery: 2,
    validation: { every: 2, batches: () => [batchAt(100)] },
    probe: { every: 2, fn: (step) => ({ step2: step * step }) },
  };
}

function assertSameLogs(a: Awaited<ReturnType<typeof train>>, b: Awaited<ReturnType<typeof train>>) {
  const timeless = (rows: Record<string, unknown>[]) => rows.map(({ seconds: _s, tokens_per_s: _t, ...rest }) => rest);
  assert.deepEqual(timeless(b.logs.train), timeless(a.logs.train));
  for (let i = 0; i < a.logs.train.length; i++) {
    assert.ok(Object.is(a.logs.train[i].loss, b.logs.train[i].loss), `loss at step ${i}`);
  }
  assert.deepEqual(b.logs.gradNorms, a.logs.gradNorms);
  assert.deepEqual(b.logs.valid, a.logs.valid);
  assert.deepEqual(b.logs.probes, a.logs.probes);
}

Deno.test("train: 3 steps + resume + 3 steps in a fresh model equals 6 straight steps bitwise", async () => {
  await withTempDir(async (runsDir) => {
    const straightModel = mlp(3);
    const straight = await train(straightModel, { ...resumeOptions(runsDir), name: "straight" });

    const firstModel = mlp(3);
    const first = await train(firstModel, { ...resumeOptions(runsDir), name: "split", until: 3 });
    assert.equal(first.step, 3);
    assert.equal(first.finished, false);
    firstModel.dispose();

    const messages: string[] = [];
    const secondModel = mlp(3);
    const second = await train(secondModel, {
      ...resumeOptions(runsDir),
      name: "split",
      resume: true,
      log: (m) => messages.push(m),
    });
    assert.ok(messages.some((m) => /resuming from step 3 of 6/.test(m)), messages.join("\n"));
    assert.equal(second.finished, true);
    assertSameLogs(straight, second);
    const [a, b] = [await weightsOf(straightModel), await weightsOf(secondModel)];
    for (const name of Object.keys(a)) assertBitwiseEqual(b[name], a[name], `final ${name}`);
    straightModel.dispose();
    secondModel.dispose();
  });
});

Deno.test("train: a run that crashes after a checkpoint resumes to the same curve", async () => {
  await withTempDir(async (runsDir) => {
    const straightModel = mlp(4);
    const straight = await train(straightModel, { ...resumeOptions(runsDir), name: "straight" });

    const crashModel = mlp(4);
    await assert.rejects(
      train(crashModel, {
        ...resumeOptions(runsDir),
        name: "crash",
        onStep: ({ step }) => {
          if (step === 4) throw new Error("simulated crash");
        },
      }),
      /simulated crash/,
    );
    crashModel.dispose();
    assert.equal((await readCheckpointManifest(join(runsDir, "crash")))?.step, 4);

    const resumedModel = mlp(4);
    const resumed = await train(resumedModel, { ...resumeOptions(runsDir), name: "crash", resume: true });
    assertSameLogs(straight, resumed);
    const [a, b] = [await weightsOf(straightModel), await weightsOf(resumedModel)];
    for (const name of Object.keys(a)) assertBitwiseEqual(b[name], a[name], `final ${name}`);
    straightModel.dispose();
    resumedModel.dispose();
  });
});

Deno.test("train: a corrupt or half-written checkpoint is detected", async () => {
  await withTempDir(async (runsDir) => {
    const options = { ...QUIET, runsDir, name: "c", steps: 3, lr: 0.05, batchAt };
    const model = mlp(5);
    await train(model, options);
    model.dispose();
    const dir = join(runsDir, "c");
    const manifest = (await readCheckpointManifest(dir))!;

    // Files of an interrupted later save (data written, manifest not yet renamed) do not disturb it.
    await Deno.writeFile(join(dir, "weights-00000009-deadbeef.bin"), new Uint8Array(12));
    await Deno.writeTextFile(join(dir, ".checkpoint.json.abcdef12.tmp"), "{");
    assert.equal((await loadCheckpoint(dir))?.manifest.step, 3);

    // A flipped byte: checksum mismatch.
    const weightsPath = join(dir, manifest.weights.path);
    const bytes = await Deno.readFile(weightsPath);
    bytes[5] ^= 0xff;
    await Deno.writeFile(weightsPath, bytes);
    await assert.rejects(loadCheckpoint(dir), (err: Error) => {
      assert.ok(err instanceof CheckpointError);
      assert.match(err.message, /corrupt: the SHA-256 checksum of weights-.*\.bin/);
      return true;
    });
    const fresh = mlp(5);
    await assert.rejects(train(fresh, { ...options, resume: true }), /checksum.*resume: false/);

    // A truncated file.
    await Deno.writeFile(weightsPath, bytes.subarray(0, 8));
    await assert.rejects(loadCheckpoint(dir), /has 8 bytes, the manifest says/);

    // A missing data file.
    await Deno.remove(weightsPath);
    await assert.rejects(loadCheckpoint(dir), /incomplete: its weights file .* is missing/);

    // An unreadable manifest.
    await Deno.writeTextFile(join(dir, MANIFEST_FILE), "{ not json");
    await assert.rejects(readCheckpointManifest(dir), /not valid \(not JSON/);

    // No manifest: no checkpoint; resuming starts from step 0 and says so.
    await Deno.remove(join(dir, MANIFEST_FILE));
    assert.equal(await loadCheckpoint(dir), null);
    const messages: string[] = [];
    const result = await train(fresh, { ...options, resume: true, log: (m) => messages.push(m) });
    assert.ok(messages.some((m) => /no checkpoint in .*; training from step 0/.test(m)), messages.join("\n"));
    assert.equal(result.logs.train[0].step, 0);
    assert.equal(result.logs.train.length, 3);
    // The new save removed the leftovers of the interrupted one.
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.ok(!names.includes("weights-00000009-deadbeef.bin") && !names.includes(".checkpoint.json.abcdef12.tmp"));
    fresh.dispose();
  });
});

Deno.test("train: a non-finite gradient stops at the right step and layer, without a checkpoint of it", async () => {
  await withTempDir(async (runsDir) => {
    const poisoned = (from: number, poison: Batch["poison"]) => (step: number) => ({
      ...batchAt(step),
      poison: step >= from ? poison : undefined,
    });
    const base = { ...QUIET, runsDir, steps: 6, lr: 0.05, checkpointEvery: 2 };

    const model = mlp(6);
    const before = await (async () => {
      const result = await train(model, { ...base, name: "nan", batchAt: poisoned(3, ["blocks.1.w"]) });
      return result;
    })();
    assert.deepEqual(before.stopped, {
      reason: "non-finite",
      step: 3,
      where: "blocks.1.w",
      layer: 1,
      stage: null,
      variables: ["blocks.1.w"],
    });
    assert.equal(before.step, 3);
    assert.equal(before.finished, false);
    assert.equal(before.logs.train.length, 4);
    assert.ok(Number.isFinite(before.logs.train[3].loss));
    assert.ok(Number.isNaN(before.logs.train[3].grad_norm));
    assert.ok(Number.isNaN(before.logs.gradNorms[3]["blocks.1.w"]));
    assert.ok(Number.isFinite(before.logs.gradNorms[3]["blocks.0.w"]));
    assert.equal((await readCheckpointManifest(join(runsDir, "nan")))?.step, 2);
    for (const w of Object.values(await weightsOf(model))) assert.ok(w.every(Number.isFinite));
    assert.match(await Deno.readTextFile(join(runsDir, "nan", "train.csv")), /\n3,[^\n]*NaN/);
    model.dispose();

    const both = mlp(6);
    // Both bad: the report names the highest layer, where backpropagation meets the NaN first; all are listed.
    const first = await train(both, { ...base, batchAt: poisoned(1, ["blocks.0.w", "blocks.1.w"]) });
    assert.equal(first.stopped?.where, "blocks.1.w");
    assert.equal(first.stopped?.layer, 1);
    assert.deepEqual(first.stopped?.variables, ["blocks.0.w", "blocks.1.w"]);
    both.dispose();

    const lossModel = mlp(6);
    const loss = await train(lossModel, { ...base, batchAt: poisoned(2, "loss") });
    assert.equal(loss.stopped?.where, "loss");
    assert.equal(loss.stopped?.step, 2);
    assert.equal(loss.stopped?.layer, null);
    assert.equal(loss.stopped?.stage, null, "a model without firstNonFinite cannot say where");
    await assert.rejects(
      train(lossModel, { ...base, batchAt: poisoned(0, ["blocks.0.w"]), throwOnNonFinite: true }),
      /stopped at step 0: non-finite gradient of blocks\.0\.w/,
    );
    lossModel.dispose();
  });
});

/** A tiny 2-layer TransformerModel language model and its batch at `step`. */
function tinyTransformer(attention: "vanilla" | "transnormer-t2") {
  const model = createModel({ attention, layers: 2, dModel: 8, heads: 2, maxLength: 16, seed: 3 }, { log: () => {} });
  const lmBatchAt = (step: number): LmBatch => {
    const normal = seededNormal(500 + step);
    const inputs = Int32Array.from({ length: 2 * 8 }, () => Math.abs(Math.floor(normal() * 40)) % 256);
    return { kind: "lm", inputs, targets: inputs.map((t) => (t + 1) % 256), batch: 2, length: 8 };
  };
  return { model, lmBatchAt };
}

Deno.test("train: a NaN or Inf weight in layer 1 of a real transformer stops with layer 1, cleanly", async () => {
  // With the opt-in finite check on, a NaN q makes the attention variant throw: no gradient is computed. An Inf in
  // the last FFN (check off, the default) gives a NaN loss instead, whose gradient is NaN everywhere, the
  // embedding's included.
  const cases = [
    { attention: "vanilla", weight: "blocks.1.attn.wq", value: NaN, stage: "blocks.1.attn", throws: true },
    { attention: "transnormer-t2", weight: "blocks.1.ffn.w1", value: Infinity, stage: "blocks.1.ffn", throws: false },
  ] as const;
  for (const { attention, weight, value, stage, throws } of cases) {
    const { model, lmBatchAt } = tinyTransformer(attention);
    const tensorsBefore = tf.memory().numTensors;
    const messages: string[] = [];
    const finiteBefore = setFiniteChecks(throws);
    const result = await train(model, {
      steps: 5,
      lr: 1e-2,
      batchAt: lmBatchAt,
      progress: "none",
      log: (m) => messages.push(m),
      // After update 1, one entry of a layer-1 weight goes bad: the loss of step 2 is the first non-finite one.
      onStep: ({ step }) => {
        if (step !== 1) return;
        const w = model.variables[weight];
        tf.tidy(() => w.assign(tf.add(w, tf.scatterND([[0, 0]], [value], w.shape as [number, number]))));
      },
    }).finally(() => setFiniteChecks(finiteBefore));
    const stopped = result.stopped!;
    assert.equal(stopped.step, 2, attention);
    assert.equal(stopped.where, "loss");
    assert.equal(stopped.layer, 1, `${attention}: a NaN from layer 1 on is reported in layer 1`);
    assert.equal(stopped.stage, stage);
    if (throws) assert.deepEqual(stopped.variables, []);
    else assert.ok(stopped.variables.includes("embed.weight") && stopped.variables.includes("blocks.0.attn.wq"));
    assert.equal(result.step, 2);
    assert.equal(result.finished, false);
    assert.equal(result.logs.train.length, 3);
    assert.match(
      messages.at(-1)!,
      new RegExp(`stopped at step 2: non-finite loss \\(first non-finite output: ${stage}\\)`),
    );
    assert.equal(tf.memory().numTensors, tensorsBefore, `${attention}: no tensors leaked`);
    for (const [name, w] of Object.entries(model.variables)) {
      if (name !== weight) assert.ok(w.dataSync().every(Number.isFinite), `${name} was not updated with NaN`);
    }
    model.dispose();
  }
});

Deno.test("train: non-finite gradients in a real transformer are reported in the highest layer they reach", async () => {
  const { model, lmBatchAt } = tinyTransformer("vanilla");
  // sqrt(w - w) adds 0 to the loss and NaN to w's gradient: the spread a NaN from layer 1 leaves behind it.
  const poisoned = ["embed.weight", "blocks.0.attn.wq", "blocks.1.attn.wq", "blocks.1.attn.wo"];
  const wrapped: Trainable<LmBatch> = {
    variables: model.variables,
    config: model.config,
    loss: (batch) =>
      tf.tidy(() =>
        poisoned.reduce(
          (loss, name) => tf.add(loss, tf.sum(tf.sqrt(tf.sub(model.variables[name], model.variables[name])))),
          model.loss(batch) as tf.Tensor,
        ) as tf.Scalar
      ),
  };
  const tensorsBefore = tf.memory().numTensors;
  const result = await train(wrapped, { ...QUIET, steps: 3, batchAt: lmBatchAt });
  assert.deepEqual(result.stopped, {
    reason: "non-finite",
    step: 0,
    where: "blocks.1.attn.wo",
    layer: 1,
    stage: null,
    variables: poisoned,
  });
  assert.equal(tf.memory().numTensors, tensorsBefore);
  model.dispose();
});

Deno.test("trainCached: reuses a finished run with the same hash, resumes a partial one, retrains on a change", async () => {
  await withTempDir(async (runsDir) => {
    let batches = 0;
    const messages: string[] = [];
    const options = {
      runsDir,
      steps: 4,
      lr: 0.05,
      seed: 7,
      dataId: "synthetic-v1",
      progress: "none" as const,
      log: (m: string) => messages.push(m),
      build: () => mlp(7),
      batchAt: (step: number) => {
        batches++;
        return batchAt(step);
      },
    };
    const first = await trainCached("cached", options);
    assert.equal(first.action, "trained");
    assert.match(messages.at(-2)!, /training cached: no checkpoint/);
    assert.equal(batches, 4);

    const second = await trainCached("cached", options);
    assert.equal(second.action, "reused");
    assert.equal(batches, 4, "reuse must not train");
    assert.match(messages.at(-1)!, /reused .*cached \(hash [0-9a-f]{8}…, 4 steps\)/);
    assert.equal(second.result.hash, first.result.hash);
    assert.deepEqual(second.result.logs, first.result.logs);
    const [a, b] = [await weightsOf(first.model), await weightsOf(second.model)];
    for (const name of Object.keys(a)) assertBitwiseEqual(b[name], a[name], name);

    const changed = await trainCached("cached", { ...options, lr: 0.01 });
    assert.equal(changed.action, "retrained");
    assert.match(messages.find((m) => m.startsWith("hash changed"))!, /hash changed: retraining cached/);
    assert.notEqual(changed.result.hash, first.result.hash);

    const otherData = await trainCached("cached", { ...options, lr: 0.01, dataId: "synthetic-v2" });
    assert.equal(otherData.action, "retrained");
    const otherModel = await trainCached("cached", {
      ...options,
      lr: 0.01,
      dataId: "synthetic-v2",
      build: () => mlp(7, 5),
    });
    assert.equal(otherModel.action, "retrained");

    const partial = await trainCached("partial", { ...options, until: 2 });
    assert.equal(partial.result.step, 2);
    const rest = await trainCached("partial", options);
    assert.equal(rest.action, "resumed");
    assert.equal(rest.result.step, 4);
    const [c, d] = [await weightsOf(first.model), await weightsOf(rest.model)];
    for (const name of Object.keys(c)) assertBitwiseEqual(d[name], c[name], `resumed ${name}`);

    for (const r of [first, second, changed, otherData, otherModel, partial, rest]) r.model.dispose();
  });
});

Deno.test("train and trainCached leak no tensors", async () => {
  await withTempDir(async (runsDir) => {
    const start = tf.memory().numTensors;
    for (let i = 0; i < 2; i++) {
      const model = mlp(8);
      await train(model, {
        ...QUIET,
        name: "leak",
        runsDir,
        steps: 4,
        clip: 0.1,
        batchAt,
        checkpointEvery: 1,
        validation: { every: 2, batches: () => [batchAt(50)] },
        probe: { every: 1, fn: () => ({ norm: tf.tidy(() => tf.norm(model.variables["blocks.0.w"]).dataSync()[0]) }) },
      });
      await train(model, { ...QUIET, name: "leak", runsDir, steps: 6, batchAt, resume: false, until: 2 });
      await train(model, {
        ...QUIET,
        steps: 3,
        batchAt: (s) => ({ ...batchAt(s), poison: s === 1 ? "loss" as const : undefined }),
      });
      model.dispose();
      const cached = await trainCached("leak-cached", { ...QUIET, runsDir, steps: 2, batchAt, build: () => mlp(9) });
      cached.model.dispose();
    }
    assert.equal(tf.memory().numTensors, start);
  });
});

Deno.test("train: bad options and models throw errors that name the problem", async () => {
  const model = mlp(10);
  const ok = { ...QUIET, steps: 2, batchAt };
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ ...ok, lrr: 1 }, /unknown option "lrr"; valid options are/],
    [{ ...ok, lr: -1 }, /option lr must be > 0, got -1/],
    [{ ...ok, lr: "0.1" }, /option lr must be a finite number/],
    [{ QUIET, batchAt }, /unknown option "QUIET"/],
    [{ ...QUIET, batchAt }, /option steps is required/],
    [{ ...QUIET, steps: 2 }, /option batchAt is required/],
    [{ ...ok, steps: 2.5 }, /option steps must be an integer/],
    [{ ...ok, beta1: 1 }, /option beta1 must be in \[0, 1\)/],
    [{ ...ok, clip: "big" }, /option clip must be a finite number/],
    [{ ...ok, schedule: "linear" }, /option schedule must be one of "cosine", "constant"/],
    [{ ...ok, batchAt: 3 }, /option batchAt must be a function/],
    [{ ...ok, validation: { every: 0, batches: () => [] } }, /validation.every must be an integer >= 1/],
    [{ ...ok, validation: { every: 1 } }, /validation.batches must be a function/],
    [{ ...ok, probe: { every: 1, fn: () => ({}), extra: 1 } }, /probe: unknown key "extra"/],
    [{ ...ok, name: "../escape" }, /option name must be a name of letters/],
    [{ ...ok, resume: true }, /resume needs a name/],
    [{ ...ok, until: 3 }, /until must be <= steps \(2\)/],
    [{ ...ok, tokensPerBatch: 4, batchTokens: () => 4 }, /tokensPerBatch or batchTokens, not both/],
    [{ ...ok, progress: "loud" }, /option progress must be one of/],
  ];
  for (const [options, pattern] of cases) {
    await assert.rejects(train(model, options as unknown as TrainOptions<Batch>), pattern, JSON.stringify(options));
  }
  await assert.rejects(
    train(model, { ...ok, validation: { every: 1, batches: () => [] } }),
    /validation.batches\(\) must return a non-empty array/,
  );
  await assert.rejects(
    train({ ...model, config: { f: () => 1 } }, ok),
    /model.config must be JSON-serialisable: .*model.config.f is a function/,
  );
  await assert.rejects(
    train({ ...model, firstNonFinite: "blocks.0" } as never, ok),
    /model.firstNonFinite must be a function \(batch\) => string \| null \(or a promise of one\), or absent/,
  );
  await assert.rejects(train({ ...model, variables: {} }, ok), /variables is empty/);
  await assert.rejects(
    train({ ...model, variables: { a: tf.zeros([2]) as unknown as tf.Variable } }, ok),
    /variables\["a"\] must be a tf.Variable/,
  );
  const w = model.variables["blocks.0.w"];
  await assert.rejects(train({ ...model, variables: { a: w, b: w } }, ok), /same tf.Variable/);
  await assert.rejects(
    trainCached("x", { ...ok, build: () => mlp(11), resume: true } as never),
    /option resume is not accepted/,
  );
  await assert.rejects(trainCached("x", { ...ok } as never), /option build must be a function/);
  await assert.rejects(trainCached("bad name!", { ...ok, build: () => mlp(11) }), /option name must be a name/);
  model.dispose();
});

Deno.test("the run's hash covers the training code: a change under lib/attention retrains, one elsewhere does not", async () => {
  const { trainingCodeHash, TRAINING_SOURCES } = await import("../lib/train/train.ts");
  const { REPO_ROOT } = await import("../lib/env.ts");
  const { cpSync } = await import("node:fs");
  assert.deepEqual(TRAINING_SOURCES, [
    "lib/attention",
    "lib/models",
    "lib/train",
    "lib/data",
    "lib/random.ts",
    "lib/blas",
    "lib/_options.ts",
  ]);
  await withTempDir(async (root) => {
    // A copy of the training sources hashes like the repository; the real files are never touched.
    for (const path of TRAINING_SOURCES) cpSync(join(REPO_ROOT, path), join(root, path), { recursive: true });
    const original = await trainingCodeHash({ root });
    assert.equal(original, await trainingCodeHash());
    assert.match(original, /^[0-9a-f]{64}$/);
    await Deno.mkdir(join(root, "lib", "report"), { recursive: true });
    await Deno.writeTextFile(join(root, "lib", "report", "extra.ts"), "export const x = 1;\n");
    assert.equal(await trainingCodeHash({ root }), original, "code outside the training sources is not hashed");
    await Deno.writeTextFile(join(root, "lib", "attention", "softmax.ts"), "\n// changed\n", { append: true });
    const changed = await trainingCodeHash({ root });
    assert.notEqual(changed, original);
    await assert.rejects(trainingCodeHash({ root: join(root, "nowhere") }), /sourceHash: cannot read .*nowhere/);
    assert.throws(() => trainingCodeHash({ rot: root } as never), /unknown option "rot"; the only option is root/);

    const runsDir = join(root, "runs");
    const messages: string[] = [];
    const tensors = tf.memory().numTensors;
    const options = {
      runsDir,
      steps: 3,
      lr: 0.05,
      seed: 7,
      progress: "none" as const,
      log: (m: string) => messages.push(m),
      build: () => mlp(7),
      batchAt: (step: number) => batchAt(step),
    };
    // By default the identity holds the current code's hash.
    const probe = mlp(7);
    const { build: _build, ...trainOptions } = options;
    const byDefault = await runIdentity(probe, trainOptions);
    assert.equal(byDefault.identity.codeHash, await trainingCodeHash());
    const before = await runIdentity(probe, { ...trainOptions, codeHash: original });
    const after = await runIdentity(probe, { ...trainOptions, codeHash: changed });
    assert.equal(before.hash, byDefault.hash, "the repository's code, given or computed, is the same key");
    assert.notEqual(after.hash, before.hash);
    probe.dispose();

    const first = await trainCached("code", { ...options, codeHash: original });
    const again = await trainCached("code", { ...options, codeHash: original });
    const retrained = await trainCached("code", { ...options, codeHash: changed });
    const reused = await trainCached("code", { ...options, codeHash: changed });
    assert.deepEqual([first.action, again.action, retrained.action, reused.action], [
      "trained",
      "reused",
      "retrained",
      "reused",
    ]);
    assert.equal(retrained.result.hash, after.hash);
    assert.ok(
      messages.some((m) =>
        m === `hash changed: retraining code (was ${before.hash.slice(0, 8)}…, now ${after.hash.slice(0, 8)}…)`
      ),
    );
    // Resuming a checkpoint made by other code is refused, and says why.
    const partial = mlp(7);
    await train(partial, { ...QUIET, name: "resume-code", runsDir, steps: 4, until: 2, batchAt, codeHash: original });
    await assert.rejects(
      train(partial, { ...QUIET, name: "resume-code", runsDir, steps: 4, batchAt, resume: true, codeHash: changed }),
      /is of a different run .*the training code changed/,
    );
    partial.dispose();
    for (const r of [first, again, retrained, reused]) r.model.dispose();
    assert.equal(tf.memory().numTensors, tensors, "no tensor left behind");
  });
});

Deno.test("train: a malformed codeHash option is a TypeError or RangeError naming it", async () => {
  const model = mlp(12);
  const ok = { ...QUIET, steps: 2, batchAt };
  await assert.rejects(train(model, { ...ok, codeHash: 42 as never }), (err: Error) => {
    assert.equal(err.constructor, TypeError);
    assert.match(
      err.message,
      /^train: option codeHash must be a string \(a SHA-256 such as trainingCodeHash\(\) returns\)/,
    );
    return true;
  });
  await assert.rejects(async () => await runIdentity(model, { ...ok, codeHash: "ABC" }), (err: Error) => {
    assert.equal(err.constructor, RangeError);
    assert.match(err.message, /^runIdentity: option codeHash must be 64 lowercase hex digits .*got "ABC"/);
    return true;
  });
  model.dispose();
});

Deno.test("trainStep: one update's rows match the closed form; a NaN loss stops it with no update applied", async () => {
  const tensorsBefore = tf.memory().numTensors;
  // loss Σ(w - t)² + b², gradients 2(w - t) and 2b: at w = [3, -1], t = 1, b = 0.5 the loss is 4 + 4 + 0.25 and the
  // gradients [4, -4] and [1], so the squared norms are 32 and 1.
  const [w, b] = tf.tidy(() => [tf.variable(tf.tensor1d([3, -1])), tf.variable(tf.tensor1d([0.5]))]);
  const model: Trainable<number> = {
    variables: { "blocks.0.w": w, b },
    config: {},
    loss: (t) => tf.add(tf.sum(tf.square(tf.sub(w, t))), tf.sum(tf.square(b))) as tf.Scalar,
  };
  const schedule = { lr: 0.1, steps: 10, warmup: 2 };
  const opt = adam(model.variables, { ...schedule, clip: 1 });
  const tensorsWithOpt = tf.memory().numTensors;

  const step = await trainStep(model, 1, opt, { tokens: 5 });
  assert.equal(step.stopped, null);
  assert.deepEqual(step.gradNorms, {
    step: 0,
    "blocks.0.w": Math.sqrt(32),
    b: 1,
    "blocks.0.*": Math.sqrt(32),
    global: Math.sqrt(33),
  });
  const { seconds, tokens_per_s, ...row } = step.row;
  assert.deepEqual(row, {
    step: 0,
    lr: learningRate(0, schedule),
    loss: 8.25,
    grad_norm: Math.sqrt(33),
    clipped: true,
    clip: 1,
    tokens: 5,
  });
  assert.ok(seconds >= 0 && tokens_per_s === 5 / seconds);
  assert.equal(opt.step, 1);
  // Adam's first update moves each weight by lr · sign(gradient) (the clip scales m and √v alike).
  const lr0 = learningRate(0, schedule);
  const moved = [3 - lr0, -1 + lr0, 0.5 - lr0];
  [...w.dataSync(), ...b.dataSync()].forEach((x, i) => assert.ok(Math.abs(x - moved[i]) < 1e-6, `${x} vs ${moved[i]}`));

  // A NaN target: the loss and w's gradient are NaN, b's is not. No update: weights, moments and step stay.
  const weights = [Float32Array.from(w.dataSync()), Float32Array.from(b.dataSync())];
  const state = await opt.getState();
  const bad = await trainStep(model, NaN, opt);
  assert.deepEqual(bad.stopped, {
    reason: "non-finite",
    step: 1,
    where: "loss",
    layer: null,
    stage: null,
    variables: ["blocks.0.w"],
  });
  assert.equal(bad.row.step, 1);
  assert.equal(bad.row.lr, learningRate(1, schedule));
  assert.ok(Number.isNaN(bad.row.loss) && Number.isNaN(bad.row.grad_norm));
  assert.equal(bad.row.clipped, false);
  assert.ok(Number.isNaN(bad.gradNorms!["blocks.0.w"]));
  assert.ok(Math.abs(bad.gradNorms!.b - 2 * weights[1][0]) < 1e-6);
  assert.equal(opt.step, 1);
  assertBitwiseEqual(Float32Array.from(w.dataSync()), weights[0], "w after the NaN step");
  assertBitwiseEqual(Float32Array.from(b.dataSync()), weights[1], "b after the NaN step");
  assert.deepEqual(await opt.getState(), state, "Adam's moments are not updated");

  // A loss that throws is a stop when firstNonFinite locates a non-finite output (no gradients: no grad_norms row),
  // and is rethrown otherwise.
  const throwing: Trainable<number> = {
    ...model,
    loss: (t) => {
      tf.square(w); // a tensor on the tape, which the throw must not leave behind
      throw new Error(`the attention met NaN (${t})`);
    },
  };
  const thrown = await trainStep({ ...throwing, firstNonFinite: () => "blocks.0.attn" }, 1, opt);
  assert.deepEqual(thrown.stopped, {
    reason: "non-finite",
    step: 1,
    where: "loss",
    layer: 0,
    stage: "blocks.0.attn",
    variables: [],
  });
  assert.equal(thrown.gradNorms, null);
  assert.ok(Number.isNaN(thrown.row.loss));
  await assert.rejects(trainStep(throwing, 1, opt), /the attention met NaN \(1\)/);
  await assert.rejects(trainStep({ ...throwing, firstNonFinite: () => null }, 1, opt), /the attention met NaN/);
  // An async firstNonFinite (as the model's, which reads with await data()) is awaited.
  const later = await trainStep({ ...throwing, firstNonFinite: () => Promise.resolve("blocks.2.ffn") }, 1, opt);
  assert.deepEqual([later.stopped?.stage, later.stopped?.layer], ["blocks.2.ffn", 2]);
  await assert.rejects(
    trainStep({ ...throwing, firstNonFinite: () => Promise.resolve(null) }, 1, opt),
    /the attention met NaN/,
  );
  assert.equal(opt.step, 1);
  assert.equal(tf.memory().numTensors, tensorsWithOpt, "trainStep leaks no tensors");

  // Bad arguments are named.
  const other = adam({ w }, { steps: 10 });
  await assert.rejects(
    trainStep(model, 1, other),
    /optimizer's variables \(w\) are not the model's \(blocks\.0\.w, b\)/,
  );
  await assert.rejects(trainStep(model, 1, opt, { tokens: -1 }), /option tokens must be a number >= 0 or null, got -1/);
  await assert.rejects(trainStep(model, 1, opt, { tok: 1 } as never), /trainStep: unknown option "tok"/);
  assert.equal(opt.step, 1);
  other.dispose();
  opt.dispose();
  w.dispose();
  b.dispose();
  assert.equal(tf.memory().numTensors, tensorsBefore);
});

Deno.test("trainStep is train's step: a loop of it gives train's logs and weights bitwise", async () => {
  const options = { steps: 4, lr: 0.05, warmup: 1, clip: 0.5, weightDecay: 0.01 };
  const [a, b] = [mlp(13), mlp(13)];
  const result = await train(a, { ...QUIET, ...options, batchAt });
  const opt = adam(b.variables, options);
  const rows = [];
  for (let s = 0; s < options.steps; s++) rows.push(await trainStep(b, batchAt(s), opt));
  opt.dispose();
  const timeless = ({ seconds: _s, tokens_per_s: _t, ...row }: Record<string, unknown>) => row;
  assert.deepEqual(rows.map((r) => timeless(r.row)), result.logs.train.map(timeless));
  assert.deepEqual(rows.map((r) => r.gradNorms), result.logs.gradNorms);
  const [wa, wb] = [await weightsOf(a), await weightsOf(b)];
  for (const name of Object.keys(wa)) assertBitwiseEqual(wb[name], wa[name], name);
  a.dispose();
  b.dispose();
});
