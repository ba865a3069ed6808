import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { type QKV, type VariantName, variants } from "../lib/attention/mod.ts";
import {
  closedFormDeviation,
  gradientSweep,
  growthExponents,
  growthVerdict,
  layerGradientNorms,
  layerJacobianNorms,
  maxLinearBoundRatio,
  maxScoreGradient,
  outputJacobian,
  positionalInput,
  randomScores as drawScores,
  scoreJacobian,
  scoreJacobianClosedForm,
  scoreJacobians,
  seedSpread,
  sweptQKV,
} from "../lib/diagnostics/mod.ts";
import { randomNormal, seededUniform } from "../lib/random.ts";
import { tInterval } from "../lib/stats/mod.ts";
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

Deno.test("randomScores: seeded, positive linear scores within each row's scale, ties that reach both bounds", () => {
  const start = tf.memory().numTensors;
  tf.tidy(() => {
    const a = drawScores("linear", { count: 200, n: 6, scale: [1e-4, 1e2], seed: 3 });
    const b = drawScores("linear", { count: 200, n: 6, scale: [1e-4, 1e2], seed: 3 });
    assert.deepEqual(a.shape, [200, 6]);
    assert.deepEqual(Array.from(a.dataSync()), Array.from(b.dataSync()), "same seed, same scores");
    const rows = a.arraySync();
    assert.ok(rows.every((row) => row.every((s) => s > 0 && s <= 1e2 * (1 + 1e-6))), "linear scores lie in (0, high]");
    // log-uniform σ over six decades: some rows below 1e-2, some above 1.
    const maxima = rows.map((row) => Math.max(...row));
    assert.ok(maxima.some((m) => m < 1e-2) && maxima.some((m) => m > 1), `row scales ${Math.min(...maxima)}..`);
    const fixed = drawScores("softmax", { count: 4000, n: 2, scale: 3, seed: 1 }).dataSync();
    const sd = Math.sqrt(Array.from(fixed).reduce((acc, x) => acc + x * x, 0) / fixed.length);
    assert.ok(Math.abs(sd - 3) < 0.15, `softmax scores are 3·N(0, 1): sd ${sd}`);
    // Two near-equal top scores: p ≈ (1/2, 1/2), where |∂p/∂s| = 1/4 (softmax) and |∂p/∂s_k|·4 s_k = 1 (linear).
    for (const scale of [1e-3, 1, 50]) {
      const soft = maxScoreGradient(drawScores("softmax", { count: 32, n: 8, scale, seed: 2, ties: true }), "softmax");
      // Softmax ties need the rest far below: at σ = 50 they are e^(−50) away; at small σ, p stays near uniform.
      if (scale >= 10) assert.ok(soft > 0.2499 && soft <= 0.25 + 1e-6, `softmax ties at ${scale}: ${soft}`);
      const ratio = maxLinearBoundRatio(drawScores("linear", { count: 32, n: 8, scale, seed: 2, ties: true }));
      assert.ok(ratio > 0.999 && ratio <= 1 + 1e-5, `linear ties at ${scale}: ${ratio}`);
    }
  });
  assert.equal(tf.memory().numTensors, start);
  assert.throws(() => drawScores("relu" as "linear", { count: 1, n: 2, scale: 1, seed: 0 }), RangeError);
  assert.throws(
    () => drawScores("linear", { count: 0, n: 2, scale: 1, seed: 0 }),
    /options.count must be an integer >= 1/,
  );
  assert.throws(() => drawScores("linear", { count: 1, n: 1, scale: 1, seed: 0, ties: true }), /options.n .* >= 2/);
  assert.throws(() => drawScores("linear", { count: 1, n: 2, scale: [2, 1], seed: 0 }), /low <= high/);
  assert.throws(() => drawScores("linear", { count: 1, n: 2, scale: -1, seed: 0 }), RangeError);
  assert.throws(() => drawScores("linear", { count: 1, n: 2, scale: "1" as unknown as number, seed: 0 }), TypeError);
  assert.throws(
    () => drawScores("linear", { count: 1, n: 2, scale: 1, seed: 0, tie: true } as never),
    /unknown option "tie"/,
  );
});

Deno.test("closedFormDeviation: float32 rounding only, measured against the terms' scale", () => {
  tf.tidy(() => {
    for (const kind of ["softmax", "linear"] as const) {
      const s = drawScores(kind, { count: 300, n: 8, scale: kind === "softmax" ? [0.01, 100] : [1e-4, 1e2], seed: 9 });
      const { absolute, relative } = closedFormDeviation(s, kind);
      assert.ok(relative < 1e-5, `${kind}: relative deviation ${relative}`);
      // The absolute deviation is at most the relative one times the largest term scale (1, or 1/min Σ s).
      const largest = kind === "softmax" ? 1 : 1 / tf.min(tf.sum(s, 1)).dataSync()[0];
      assert.ok(absolute <= relative * largest * (1 + 1e-6) && absolute >= 0, `${kind}: ${absolute}`);
    }
    assert.throws(() => closedFormDeviation(tf.tensor2d([[0, 1]]), "linear"), /> 0/);
  });
});

Deno.test("sweptQKV: q, k scaled by c (v kept), or q shifted by m, from one seeded layer", () => {
  const start = tf.memory().numTensors;
  const base = sweptQKV("scale", 1, { seed: 4 });
  const scaled = sweptQKV("scale", 0.01, { seed: 4 });
  const shifted = sweptQKV("shift", 6, { seed: 4, shape: { batch: 1, heads: 2, n: 16, d: 8 } });
  const other = sweptQKV("scale", 1, { seed: 5 });
  tf.tidy(() => {
    assertClose(scaled.q, tf.mul(base.q, 0.01), "q = c·q₀", { atol: 1e-8, rtol: 1e-6 });
    assertClose(scaled.k, tf.mul(base.k, 0.01), "k = c·k₀", { atol: 1e-8, rtol: 1e-6 });
    assertClose(scaled.v, base.v, "v = v₀", { atol: 0, rtol: 0 });
    assertClose(shifted.q, tf.sub(base.q, 6), "q = q₀ − m", { atol: 1e-6, rtol: 0 });
    assertClose(shifted.k, base.k, "k = k₀", { atol: 0, rtol: 0 });
    assert.ok(tf.max(tf.abs(tf.sub(other.q, base.q))).dataSync()[0] > 0.1, "another seed, another layer");
  });
  tf.dispose([base, scaled, shifted, other].flatMap((x) => [x.q, x.k, x.v]));
  assert.equal(tf.memory().numTensors, start);
  assert.throws(() => sweptQKV("scale", 0, { seed: 0 }), /x \(the scale c\) must be a finite number > 0/);
  assert.throws(() => sweptQKV("shift", Infinity, { seed: 0 }), /finite/);
  assert.throws(() => sweptQKV("grow" as "scale", 1, { seed: 0 }), /sweep must be "scale" or "shift"/);
  assert.throws(() => sweptQKV("scale", 1, { seed: -1 }), /options.seed must be an integer >= 0/);
  assert.throws(() => sweptQKV("scale", 1, { seed: 0, shape: { batch: 1, heads: 0, n: 2, d: 2 } }), /shape.heads/);
});

Deno.test("gradientSweep: homogeneous layers follow their closed-form scaling; scores of 1+elu scale by e^(−m)", () => {
  const start = tf.memory().numTensors;
  const setups = [
    { label: "relu", variant: "linear" as const, variantOptions: { featureMap: "relu" } },
    { label: "identity + srms", variant: "norm" as const, variantOptions: { featureMap: "identity" } },
    { label: "identity, no norm", variant: "norm" as const, variantOptions: { featureMap: "identity", norm: "none" } },
    { label: "performer", variant: "performer" as const },
  ];
  const values = [0.1, 1, 10];
  const { layers, scores } = gradientSweep(setups, { sweep: "scale", values, seeds: [0, 1] });
  assert.equal(layers.length, setups.length * values.length * 2);
  assert.equal(scores.length, values.length * 2);
  const at = (setup: string, seed: number, x: number) =>
    layers.find((r) => r.setup === setup && r.seed === seed && r.x === x)!;
  for (const seed of [0, 1]) {
    // relu features and an identity map under a scale-invariant norm leave O unchanged when q, k → c·q, c·k, so
    // ∇_{q,k} scales by exactly 1/c; without the norm O = Q(KᵀV) grows like c², and its gradient like c.
    for (const [setup, power] of [["relu", -1], ["identity + srms", -1], ["identity, no norm", 1]] as const) {
      for (const c of [0.1, 10]) {
        for (const stat of ["norm", "mean", "max"] as const) {
          const ratio = at(setup, seed, c)[stat] / at(setup, seed, 1)[stat];
          assert.ok(Math.abs(ratio / c ** power - 1) < 2e-3, `${setup} ${stat} seed ${seed} c=${c}: ratio ${ratio}`);
        }
      }
    }
    const row = at("relu", seed, 1);
    assert.ok(row.max >= row.mean && row.norm >= row.max, "norm >= max >= mean");
    assert.ok(Number.isFinite(at("performer", seed, 1).norm));
  }
  assert.notEqual(at("relu", 0, 1).norm, at("relu", 1, 1).norm, "each seed is its own random layer");
  // Growth exponents of the same sweep: 1 toward small c for relu, 1 toward large c without the norm.
  const points = (setup: string) =>
    layers.filter((r) => r.setup === setup).map((r) => ({ seed: r.seed, x: r.x, y: r.norm }));
  assert.ok(Math.abs(growthExponents(points("relu"), { toward: "small" }).interval.mean - 1) < 1e-3);
  assert.ok(Math.abs(growthExponents(points("identity, no norm"), { toward: "large" }).interval.mean - 1) < 1e-3);

  // Shifted queries: once every q₀ − m < 0, φ(q) = e^(q₀ − m) exactly (1+elu), so every score scales by e^(−m),
  // p = s / Σ s stays the same, and max |∂p/∂s| = max |1[j=k] − p_j| / Σ s grows by e² per step of 2 in m.
  const shift = gradientSweep([setups[0]], { sweep: "shift", values: [8, 10], seeds: [2] }).scores;
  assert.ok(
    Math.abs(shift[0].rowSum / shift[1].rowSum / Math.E ** 2 - 1) < 1e-3,
    `${shift[0].rowSum} / ${shift[1].rowSum}`,
  );
  const growth = shift[1].maxScoreGradient / shift[0].maxScoreGradient;
  assert.ok(Math.abs(growth / Math.E ** 2 - 1) < 1e-3, `score gradient grew ×${growth}`);
  assert.equal(shift[0].zeroRows, 0);
  assert.ok(shift[0].minRowSum <= shift[0].rowSum);
  assert.equal(tf.memory().numTensors, start);

  const options = { sweep: "scale" as const, values: [1], seeds: [0] };
  assert.throws(() => gradientSweep([], options), /setups must be a non-empty array/);
  assert.throws(() => gradientSweep([setups[0], setups[0]], options), /"relu" is used twice/);
  assert.throws(() => gradientSweep([{ label: "x", variant: "nope" as "norm" }], options), /variant must be one of/);
  assert.throws(() => gradientSweep([setups[0]], { ...options, value: [1] } as never), /unknown option "value"/);
  assert.throws(
    () => gradientSweep([setups[0]], { ...options, values: [] }),
    /options.values must be a non-empty array/,
  );
  assert.throws(() => gradientSweep([setups[0]], { ...options, scoreFeatureMap: "tanh" as "relu" }), /scoreFeatureMap/);
  assert.throws(() => gradientSweep([setups[0]], { ...options, values: [-1] }), /must be a finite number > 0/);
});

Deno.test("growthExponents: per-seed log–log slopes, signed by the direction of travel, with a t interval", () => {
  // y = x^γ_seed with γ = 1, 2, 3 as x grows: mean 2, s = 1, half-width t(0.975, 2)/√3 = 2.484138.
  const points = [1, 2, 3].flatMap((g) => [1, 10, 100].map((x) => ({ seed: g, x, y: 5 * x ** g })));
  const large = growthExponents(points, { toward: "large" });
  assert.deepEqual(large.seeds, [1, 2, 3]);
  large.exponents.forEach((e, i) => assert.ok(Math.abs(e - (i + 1)) < 1e-9));
  assert.ok(Math.abs(large.interval.mean - 2) < 1e-9 && Math.abs(large.interval.halfWidth - 2.484138) < 1e-6);
  // The same points travelled the other way: y shrinks as x shrinks, so γ is negative.
  const small = growthExponents(points, { toward: "small" });
  assert.ok(Math.abs(small.interval.mean + 2) < 1e-9);
  // A kink at x = 1: y ∝ 1/x below it, flat above; each side fitted on its own range.
  const kink = [0, 1, 2].flatMap((seed) => [0.01, 0.1, 1, 10, 100].map((x) => ({ seed, x, y: x < 1 ? 1 / x : 1 })));
  assert.ok(Math.abs(growthExponents(kink, { toward: "small", to: 1 }).interval.mean - 1) < 1e-9);
  assert.ok(Math.abs(growthExponents(kink, { toward: "large", from: 1 }).interval.mean) < 1e-9);
  // Zero and non-finite y are left out and counted; a seed left with fewer than two x is not fitted.
  const gaps = [
    ...[1, 10, 100].map((x) => ({ seed: 0, x, y: x })),
    { seed: 1, x: 1, y: 1 },
    { seed: 1, x: 10, y: NaN },
    { seed: 1, x: 100, y: 0 },
  ];
  const fit = growthExponents(gaps, { toward: "large" });
  assert.deepEqual([fit.seeds, fit.unfitted, fit.dropped], [[0], [1], 2]);
  assert.equal(fit.interval.n, 1);
  assert.ok(Number.isNaN(fit.interval.low), "one seed: no interval");
  const none = growthExponents([{ seed: 0, x: 1, y: 0 }], { toward: "large" });
  assert.equal(none.interval.n, 0);
  assert.ok(Number.isNaN(none.interval.estimate) && typeof none.interval.reason === "string");
  assert.throws(() => growthExponents(points, { toward: "up" as "large" }), /toward must be "large" or "small"/);
  assert.throws(() => growthExponents([{ seed: 0, x: 0, y: 1 }], { toward: "large" }), /x must be a finite number > 0/);
  assert.throws(() => growthExponents(points, { toward: "large", from: 2, to: 1 }), /from <= to/);
  assert.throws(() => growthExponents(points, { toward: "large", form: 1 } as never), /unknown option "form"/);
});

Deno.test("growthVerdict: three outcomes for 'grows' and 'bounded' claims, the rule in words", () => {
  const grows = { label: "grows", interval: tInterval([0.98, 1.0, 1.02]) };
  const flat = { label: "flat", interval: tInterval([0.01, -0.02, 0.0]) };
  const noisy = { label: "noisy", interval: tInterval([0.9, -0.5, 0.3]) };
  const two = { label: "two seeds", interval: tInterval([1, 1.1]) };
  const options = { margin: 0.25, quantity: "the gradient" };
  const g = (cases: typeof grows[]) => growthVerdict(cases, { ...options, claim: "grows" });
  const b = (cases: typeof grows[]) => growthVerdict(cases, { ...options, claim: "bounded" });
  assert.equal(g([flat, grows]).outcome, "reproduced");
  assert.equal(g([flat, grows]).interval!.estimate, grows.interval.estimate, "shows the growing case");
  assert.deepEqual([g([flat]).outcome, g([flat]).reason], ["not reproduced", "confident absence"]);
  assert.deepEqual([g([flat, noisy]).outcome, g([flat, noisy]).reason], ["inconclusive", "within noise"]);
  assert.deepEqual([g([two]).outcome, g([two]).reason], ["inconclusive", "underpowered"]);
  assert.equal(b([flat]).outcome, "reproduced");
  assert.deepEqual([b([flat, grows]).outcome, b([flat, grows]).reason], ["not reproduced", "grows: grows"]);
  assert.deepEqual([b([flat, noisy]).outcome, b([flat, noisy]).reason], ["inconclusive", "within noise"]);
  const rule = b([flat, grows]).rule;
  for (const part of ["the gradient", "flat; grows", "below the margin 0.25 in both cases", "95% t interval"]) {
    assert.ok(rule.includes(part), `rule "${rule}" lacks "${part}"`);
  }
  assert.throws(() => growthVerdict([], { ...options, claim: "grows" }), /non-empty array/);
  assert.throws(() => growthVerdict([flat], { ...options, claim: "blows up" as "grows" }), /"grows" or "bounded"/);
  assert.throws(
    () => growthVerdict([flat], { claim: "grows", margin: 0, quantity: "g" }),
    /margin must be a finite number > 0/,
  );
  assert.throws(() => growthVerdict([flat], { claim: "grows", margin: 0.25, quantity: "" }), TypeError);
});

Deno.test("seedSpread: mean, median, range and t interval per group; non-finite values dropped", () => {
  const rows = [
    ...[1, 2, 3].map((g, seed) => ({ setup: "a", x: 1, seed, g })),
    ...[10, NaN, 30].map((g, seed) => ({ setup: "b", x: 1, seed, g })),
    { setup: "c", x: 2, seed: 0, g: Infinity },
  ];
  const [a, b, c] = seedSpread(rows, { by: ["setup", "x"], value: "g" });
  assert.deepEqual([a.setup, a.x, a.n, a.mean, a.median, a.min, a.max, a.dropped], ["a", 1, 3, 2, 2, 1, 3, 0]);
  assert.ok(Math.abs(a.halfWidth - 2.484138) < 1e-6 && Math.abs(a.low - (2 - 2.484138)) < 1e-6);
  // b: 10 and 30, s = √200, half-width t(0.975, 1)·s/√2 = 12.7062·10 = 127.062.
  assert.deepEqual([b.n, b.mean, b.dropped], [2, 20, 1]);
  assert.ok(Math.abs(b.halfWidth - 127.062) < 1e-3, `${b.halfWidth}`);
  assert.deepEqual([c.n, c.dropped], [0, 1]);
  assert.ok(Number.isNaN(c.mean) && Number.isNaN(c.halfWidth));
  assert.throws(() => seedSpread(rows, { by: ["setup"], value: "h" as "g" }), /has no key "h"/);
  assert.throws(() => seedSpread("rows" as unknown as typeof rows, { by: ["setup"], value: "g" }), TypeError);
});

Deno.test("positionalInput: sinusoidal positions times the amplitude, plus seeded N(0, σ²) noise", () => {
  const start = tf.memory().numTensors;
  tf.tidy(() => {
    const n = 12, d = 6;
    const clean = positionalInput(n, d, { seed: 0, noise: 0, amplitude: 2 }).arraySync()[0][0];
    for (const [i, c] of [[0, 0], [3, 1], [7, 4], [11, 5]]) {
      const frequency = 4 / n ** ((2 * Math.floor(c / 2)) / d);
      const expected = 2 * (c % 2 === 0 ? Math.sin(i * frequency) : Math.cos(i * frequency));
      assert.ok(Math.abs(clean[i][c] - expected) < 1e-6, `(${i}, ${c}): ${clean[i][c]} vs ${expected}`);
    }
    const noisy = positionalInput(n, d, { seed: 7, amplitude: 2 });
    const noise = tf.sub(noisy, positionalInput(n, d, { seed: 7, amplitude: 2, noise: 0 }));
    assertClose(tf.reshape(noise, [n, d]), randomNormal([n, d], { seed: 7, std: 0.3 }), "noise", { atol: 1e-6 });
  });
  assert.equal(tf.memory().numTensors, start);
  assert.throws(() => positionalInput(0, 4, { seed: 0 }), /n must be an integer >= 1/);
  assert.throws(() => positionalInput(4, 4, { seed: 0, noise: -1 }), /options.noise/);
  assert.throws(() => positionalInput(4, 4, { seed: 0, colour: 1 } as never), /unknown option "colour"/);
});
