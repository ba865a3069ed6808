import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { type QKV, type VariantName, variants } from "../lib/attention/mod.ts";
import {
  layerGradientNorms,
  layerJacobianNorms,
  maxLinearBoundRatio,
  maxScoreGradient,
  outputJacobian,
  scoreJacobian,
  scoreJacobianClosedForm,
  scoreJacobians,
} from "../lib/diagnostics/mod.ts";
import { randomNormal, seededUniform } from "../lib/random.ts";
import { assertClose, outputAndGrads, seededQKV } from "./helpers.ts";

/** [batch, n] scores: softmax scores ~ N(0, scale²); linear scores ~ scale · U(0, 1], all positive. */
function randomScores(kind: "softmax" | "linear", batch: number, n: number, scale: number, seed: number): tf.Tensor2D {
  if (kind === "softmax") return randomNormal<tf.Tensor2D>([batch, n], { seed, std: scale });
  const u = seededUniform(seed);
  return tf.tensor2d(Float32Array.from({ length: batch * n }, () => scale * (1 - u())), [batch, n]);
}

Deno.test("scoreJacobian (autodiff) equals the paper's closed form, softmax and linear", () => {
  for (const kind of ["softmax", "linear"] as const) {
    for (const n of [1, 2, 5, 17]) {
      for (const scale of [0.01, 1, 30]) {
        tf.tidy(() => {
          const batch = randomScores(kind, 8, n, scale, n * 100 + Math.round(scale * 100));
          const auto = scoreJacobians(batch, kind);
          const closed = scoreJacobianClosedForm(batch, kind);
          // Float32 rounding acts on terms of size p_j p_k / s_k <= 1/Σ s (linear), which may cancel to 0.
          const atol = kind === "softmax" ? 1e-6 : 1e-5 / tf.min(tf.sum(batch, 1)).dataSync()[0];
          assertClose(auto, closed, `${kind} n=${n} scale=${scale}`, { atol, rtol: 1e-4 });
          const one = tf.squeeze(tf.slice(batch, [0, 0], [1, n]), [0]) as tf.Tensor1D;
          assertClose(scoreJacobian(one, kind), scoreJacobianClosedForm(one, kind), `${kind} 1-D`, {
            atol,
            rtol: 1e-4,
          });
        });
      }
    }
  }
});

Deno.test("score Jacobians satisfy their invariants: columns sum to 0; softmax's is symmetric", () => {
  tf.tidy(() => {
    for (const kind of ["softmax", "linear"] as const) {
      const j = scoreJacobians(randomScores(kind, 16, 9, 2, 7), kind); // [16, 9, 9]
      // Σ_j p_j = 1 for every s, so Σ_j ∂p_j/∂s_k = 0.
      assert.ok(tf.max(tf.abs(tf.sum(j, 1))).dataSync()[0] < 1e-6, `${kind}: columns of J must sum to 0`);
    }
    const j = scoreJacobians(randomScores("softmax", 16, 9, 3, 8), "softmax");
    assertClose(j, tf.transpose(j, [0, 2, 1]), "softmax J = Jᵀ", { atol: 1e-7 });
  });
});

Deno.test("linear attention's Jacobian equals (1[j=k] − p_j) / Σ s, derived directly from p = s / Σ s", () => {
  tf.tidy(() => {
    const s = [0.2, 0.5, 1.3, 0.01];
    const sum = s.reduce((a, b) => a + b);
    const expected = s.map((_, j) => s.map((__, k) => ((j === k ? 1 : 0) - s[j] / sum) / sum));
    assertClose(scoreJacobian(tf.tensor1d(s), "linear"), tf.tensor2d(expected), "linear J", { rtol: 1e-5 });
  });
});

Deno.test("softmax: |∂p/∂s| <= 1/4, reached by two equal large scores", () => {
  tf.tidy(() => {
    // Two equal top scores split the mass 1/2, 1/2: ∂p_0/∂s_0 = 1/2 · 1/2 = 1/4 exactly.
    for (const big of [20, 80]) {
      const worst = maxScoreGradient(tf.tensor1d([big, big, -big, 0]), "softmax");
      assert.ok(Math.abs(worst - 0.25) < 1e-6, `two equal scores ${big}: got ${worst}, expected 1/4`);
    }
    // Adversarial batches: near-ties of two scores at every scale, plus random vectors.
    const u = seededUniform(3);
    const ties = Array.from({ length: 256 }, () => {
      const scale = 10 ** (4 * u() - 2);
      return [scale, scale * (1 + 1e-3 * u()), -scale * u(), scale * u() - scale];
    });
    const worstTie = maxScoreGradient(tf.tensor2d(ties), "softmax");
    assert.ok(worstTie <= 0.25 + 1e-6 && worstTie > 0.249, `near ties: ${worstTie}`);
    for (const scale of [0.1, 3, 100]) {
      const m = maxScoreGradient(randomScores("softmax", 512, 6, scale, 11), "softmax");
      assert.ok(m <= 0.25 + 1e-6, `random scale ${scale}: ${m} > 1/4`);
    }
  });
});

Deno.test("linear: |∂p/∂s_k| follows 1/(4 s_k) on two equal scores and never exceeds it", () => {
  tf.tidy(() => {
    // s = (ε, ε): p = (1/2, 1/2), Σ s = 2ε, ∂p_0/∂s_0 = (1 − 1/2) / (2ε) = 1/(4ε): the bound, reached.
    for (const eps of [1, 1e-2, 1e-4, 1e-6]) {
      const j = scoreJacobian(tf.tensor1d([eps, eps]), "linear").arraySync();
      const expected = 1 / (4 * eps);
      assert.ok(Math.abs(j[0][0] - expected) <= 1e-5 * expected, `ε=${eps}: ${j[0][0]} vs 1/(4ε) = ${expected}`);
      assert.ok(Math.abs(maxScoreGradient(tf.tensor1d([eps, eps]), "linear") - expected) <= 1e-5 * expected);
      assert.ok(Math.abs(maxLinearBoundRatio(tf.tensor1d([eps, eps])) - 1) < 1e-5);
    }
    for (const scale of [1e-5, 1, 1e3]) {
      const r = maxLinearBoundRatio(randomScores("linear", 512, 6, scale, 5));
      assert.ok(r <= 1 + 1e-5 && r > 0, `scale ${scale}: |∂p/∂s|·4|s| = ${r} exceeds 1`);
    }
  });
});

Deno.test("score functions reject bad inputs with clear errors instead of returning NaN", () => {
  tf.tidy(() => {
    const neg = tf.tensor1d([0.5, -0.1]);
    assert.throws(() => scoreJacobian(neg, "linear"), /linear attention needs f\(s\) = s >= 0.*-0\.1.*index 1/);
    assert.throws(() => scoreJacobianClosedForm(neg, "linear"), /> 0/);
    assert.throws(() => maxLinearBoundRatio(tf.tensor2d([[1, 2], [0, 0]])), /vector 1 sums to 0/);
    assert.throws(() => scoreJacobian(tf.tensor1d([0, 0, 0]), "linear"), /Σ s > 0/);
    // A single zero score has a finite derivative (autodiff), but the closed form divides by it.
    assert.ok(Number.isFinite(maxScoreGradient(tf.tensor1d([0, 1]), "linear")));
    assert.throws(() => scoreJacobianClosedForm(tf.tensor1d([0, 1]), "linear"), /use scoreJacobian/);
    assert.throws(() => scoreJacobian(tf.tensor1d([1, NaN]), "softmax"), /finite/);
    assert.throws(() => maxScoreGradient(tf.zeros([0, 3]) as tf.Tensor2D, "softmax"), /at least one vector/);
    assert.throws(() => scoreJacobian(tf.tensor1d([1, 2]), "relu" as "linear"), /kind must be "softmax" or "linear"/);
    assert.throws(() => scoreJacobian(tf.tensor2d([[1, 2]]) as unknown as tf.Tensor1D, "softmax"), /scoreJacobians/);
    assert.throws(() => scoreJacobians(tf.tensor1d([1, 2]) as unknown as tf.Tensor2D, "softmax"), /\[batch, n\]/);
    // Softmax needs no sign condition and does not overflow.
    assert.equal(maxScoreGradient(tf.tensor1d([-1e30, -1e30]), "softmax"), 0.25);
  });
});

const SETUPS: { variant: VariantName; variantOptions?: Record<string, unknown> }[] = [
  ...(Object.keys(variants) as VariantName[]).map((variant) => ({ variant })),
  { variant: "norm", variantOptions: { norm: "none" } },
  { variant: "norm", variantOptions: { causal: true, normScope: "head", norm: "layer" } },
  { variant: "linear", variantOptions: { causal: true } },
];

Deno.test("outputJacobian agrees with a reverse pass: Jᵀu = ∇⟨out, u⟩, for every variant", () => {
  const qkv = seededQKV({ b: 2, h: 2, n: 5, dk: 4, dv: 3, seed: 21, std: 0.8 });
  for (const setup of SETUPS) {
    tf.tidy(() => {
      const f = (x: QKV) => variants[setup.variant].attend(x, setup.variantOptions ?? {});
      const u = randomNormal<tf.Tensor4D>([2, 2, 5, 3], { seed: 4 });
      const { grads } = outputAndGrads(f, qkv, u);
      ["q", "k", "v"].forEach((wrt, i) => {
        const j = outputJacobian(qkv, { ...setup, wrt: wrt as "q" | "k" | "v" }); // [60, 80 or 60]
        const viaJ = tf.reshape(tf.matMul(tf.reshape(u, [1, -1]), j), grads[i].shape);
        assertClose(viaJ, grads[i], `${JSON.stringify(setup)} d/d${wrt}`, { atol: 1e-5, rtol: 1e-4 });
      });
      const norms = layerJacobianNorms(qkv, setup);
      const g = layerGradientNorms(qkv, { ...setup, seed: 4 });
      for (const value of [norms.q.frobenius, norms.k.maxAbs, norms.k.maxRowSum, g.q, g.k, g.v]) {
        assert.ok(Number.isFinite(value) && value >= 0, `${JSON.stringify(setup)}: ${value}`);
      }
      assert.ok(norms.q.maxAbs <= norms.q.maxRowSum && norms.q.maxRowSum <= norms.q.frobenius * Math.sqrt(80));
    });
  }
  tf.dispose([qkv.q, qkv.k, qkv.v]);
});

Deno.test("layerJacobianNorms matches the closed form of O = Q (Kᵀ V) (norm, identity map, no norm)", () => {
  const qkv = seededQKV({ b: 1, h: 2, n: 6, dk: 4, dv: 3, seed: 5 });
  tf.tidy(() => {
    // ∂o_{h,i,e}/∂q_{h,i,d} = (K_hᵀ V_h)[d, e] and 0 across tokens or heads.
    const kv = tf.matMul(qkv.k, qkv.v, true, false); // [1, 2, dk, dv]
    const norms = layerJacobianNorms(qkv, {
      variant: "norm",
      variantOptions: { featureMap: "identity", norm: "none" },
    });
    const n = 6;
    assert.ok(Math.abs(norms.q.maxAbs - tf.max(tf.abs(kv)).dataSync()[0]) < 1e-5);
    const frobenius = Math.sqrt(n * tf.sum(tf.square(kv)).dataSync()[0]);
    assert.ok(Math.abs(norms.q.frobenius - frobenius) < 1e-4 * frobenius, `${norms.q.frobenius} vs ${frobenius}`);
    // Row (h, i, e) of J holds column e of K_hᵀV_h: its absolute sum is Σ_d |(KᵀV)[d, e]|.
    const rowSum = tf.max(tf.sum(tf.abs(kv), 2)).dataSync()[0];
    assert.ok(Math.abs(norms.q.maxRowSum - rowSum) < 1e-4 * rowSum);
  });
  tf.dispose([qkv.q, qkv.k, qkv.v]);
});

Deno.test("norm's output is scale-invariant in v, so its v-gradient shrinks as 1/c while linear's does not", () => {
  const qkv = seededQKV({ b: 1, h: 2, n: 8, dk: 4, dv: 4, seed: 9 });
  tf.tidy(() => {
    const base = layerGradientNorms(qkv, { variant: "norm", seed: 1 });
    for (const c of [10, 1000]) {
      const scaled = { ...qkv, v: tf.mul(qkv.v, c) as tf.Tensor4D };
      const g = layerGradientNorms(scaled, { variant: "norm", seed: 1 });
      assert.ok(Math.abs(g.v * c - base.v) < 1e-3 * base.v, `c=${c}: ${g.v * c} vs ${base.v}`);
      assert.ok(Math.abs(g.q - base.q) < 1e-3 * base.q, `c=${c}: q-gradient ${g.q} vs ${base.q}`);
      // Linear attention is linear in v: its v-gradient does not depend on v at all.
      const lin = layerGradientNorms(scaled, { variant: "linear", seed: 1 }).v;
      const linBase = layerGradientNorms(qkv, { variant: "linear", seed: 1 }).v;
      assert.ok(Math.abs(lin - linBase) < 1e-4 * linBase);
    }
  });
  tf.dispose([qkv.q, qkv.k, qkv.v]);
});

Deno.test("layer diagnostics check their options", () => {
  const qkv = seededQKV({ b: 1, h: 1, n: 3, dk: 2, dv: 2, seed: 1 });
  assert.throws(() => layerGradientNorms(qkv, { variant: "nope" as VariantName }), /variant must be one of "softmax"/);
  assert.throws(() => layerGradientNorms(qkv, { variant: "norm", sed: 1 } as never), /unknown option "sed"/);
  assert.throws(() => layerJacobianNorms(qkv, { variant: "norm", seed: 1 } as never), /unknown option "seed"/);
  assert.throws(() => outputJacobian(qkv, { variant: "norm", wrt: "x" as "q" }), /wrt must be "q", "k" or "v"/);
  assert.throws(
    () => layerGradientNorms(qkv, { variant: "norm", variantOptions: { featurMap: "elu" } }),
    /unknown option "featurMap"/,
  );
  assert.throws(
    () => layerGradientNorms({ ...qkv, q: tf.zeros([3, 2]) } as unknown as QKV, { variant: "norm" }),
    /rank 4/,
  );
  tf.dispose([qkv.q, qkv.k, qkv.v]);
});

Deno.test("no diagnostic leaks tensors over repeated calls", () => {
  const qkv = seededQKV({ b: 1, h: 2, n: 4, dk: 3, dv: 2, seed: 2 });
  const scores = tf.tensor2d([[0.5, 1, 2], [3, 3, 0.1]]);
  const run = () => {
    tf.dispose([
      scoreJacobian(tf.tensor1d([1, 2]), "softmax"),
      scoreJacobians(scores, "linear"),
      scoreJacobianClosedForm(scores, "linear"),
    ]);
    maxScoreGradient(scores, "softmax");
    maxLinearBoundRatio(scores);
    for (const setup of SETUPS) {
      layerGradientNorms(qkv, setup);
      layerJacobianNorms(qkv, setup);
      outputJacobian(qkv, { ...setup, wrt: "v" }).dispose();
    }
    assert.throws(() => scoreJacobian(tf.tensor1d([-1, 2]), "linear"));
  };
  run();
  const start = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) run();
  // Each run leaves only the 1-D score tensors it made itself: two per run, nothing from the library.
  assert.equal(tf.memory().numTensors, start + 6);
  tf.dispose([qkv.q, qkv.k, qkv.v, scores]);
});
