/**
 * Adam with decoupled weight decay (AdamW), linear warmup, cosine decay and global-norm clipping, written
 * over tf.Variables so that its state (m, v, step) can be checkpointed exactly.
 *
 * The update at step s (0-based, t = s + 1), for each variable w with gradient g (after clipping):
 *
 *     m ← β1·m + (1 − β1)·g          v ← β2·v + (1 − β2)·g²
 *     w ← w·(1 − lr_s·λ) − lr_s · (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + ε)
 *
 * with λ = weightDecay applied only to the variables `decay` selects (PyTorch's AdamW).
 *
 * On the blas backend one fused kernel updates every variable and one computes every gradient's squared norm
 * (lib/blas/fused_adam.ts), with the float32 values of the tf-op composites that run on other backends, bit for bit.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { adamwUpdate, sumsOfSquares } from "../blas/fused_adam.ts";
import { checkInteger, checkOptionKeys, describeValue, type OptionRule, resolveOptions } from "../_options.ts";

/** The learning-rate schedules after warmup. */
export const SCHEDULES = ["cosine", "constant"] as const;

/** One of {@linkcode SCHEDULES}. */
export type Schedule = typeof SCHEDULES[number];

/** The learning-rate schedule. */
export interface ScheduleOptions {
  /** Peak learning rate. Default 1e-3. */
  lr?: number;
  /** Learning rate at the last step of the cosine decay; null: 0.1·lr. Default null. */
  minLr?: number | null;
  /** Warmup steps: the update at step s < warmup uses lr·(s + 1)/warmup. Default 0. */
  warmup?: number;
  /** Total steps the schedule spans (the cosine reaches minLr at step steps − 1). Required. */
  steps: number;
  /** "cosine" (default) or "constant" after warmup. */
  schedule?: Schedule;
}

/** Options of {@linkcode adam}: the schedule plus Adam's constants, weight decay and clipping. */
export interface AdamOptions extends ScheduleOptions {
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay λ (AdamW). Default 0. */
  weightDecay?: number;
  /** Scale the gradients down to this global L2 norm when it is larger; null: no clipping. Default null. */
  clip?: number | null;
  /** Which variables get weight decay; null: those of rank >= 2 (matrices, not gains or biases). Default null. */
  decay?: ((name: string, variable: tf.Variable) => boolean) | null;
}

/** {@linkcode AdamOptions} with every default filled in. */
export type ResolvedAdamOptions = Required<Omit<AdamOptions, "minLr" | "decay">> & {
  minLr: number;
  decay: ((name: string, variable: tf.Variable) => boolean) | null;
};

/**
 * The defaults of {@linkcode AdamOptions} (`steps` has none and must be given).
 *
 * @example
 * ```ts
 * import { ADAM_DEFAULTS } from "./adam.ts";
 * console.log(ADAM_DEFAULTS.lr, ADAM_DEFAULTS.beta2); // 0.001 0.999
 * ```
 */
export const ADAM_DEFAULTS: Readonly<Omit<Required<AdamOptions>, "steps">> = Object.freeze({
  lr: 1e-3,
  minLr: null,
  warmup: 0,
  schedule: "cosine",
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0,
  clip: null,
  decay: null,
});

/**
 * How each {@linkcode AdamOptions} key is checked (shared with `train`).
 *
 * @example
 * ```ts
 * import { ADAM_RULES } from "./adam.ts";
 * console.log(Object.keys(ADAM_RULES).includes("clip")); // true
 * ```
 */
export const ADAM_RULES: Readonly<Record<keyof AdamOptions, OptionRule>> = Object.freeze({
  lr: { type: "number", min: 0, exclusiveMin: true },
  minLr: { type: "number", min: 0, nullable: true },
  warmup: { type: "number", min: 0, integer: true },
  steps: { type: "number", min: 1, integer: true },
  schedule: { type: "enum", values: SCHEDULES },
  beta1: { type: "number", min: 0 },
  beta2: { type: "number", min: 0 },
  eps: { type: "number", min: 0, exclusiveMin: true },
  weightDecay: { type: "number", min: 0 },
  clip: { type: "number", min: 0, exclusiveMin: true, nullable: true },
  decay: { type: "function", nullable: true },
});

/**
 * Checks Adam options and fills in defaults; `owner` names the caller in errors.
 *
 * @example
 * ```ts
 * import { resolveAdamOptions } from "./adam.ts";
 * const o = resolveAdamOptions("demo", { lr: 0.01, steps: 100 });
 * console.log(o.minLr, o.schedule); // 0.001 cosine
 * ```
 */
export function resolveAdamOptions(owner: string, options: AdamOptions): ResolvedAdamOptions {
  const o = resolveOptions(owner, options, { ...ADAM_DEFAULTS, steps: 0 }, ADAM_RULES);
  if ((options as { steps?: unknown } | undefined)?.steps === undefined) {
    throw new TypeError(`${owner}: option steps is required (an integer >= 1: the steps the schedule spans)`);
  }
  for (const key of ["beta1", "beta2"] as const) {
    if (o[key] >= 1) throw new RangeError(`${owner}: option ${key} must be in [0, 1), got ${o[key]}`);
  }
  return { ...o, minLr: o.minLr ?? 0.1 * o.lr } as ResolvedAdamOptions;
}

/**
 * The learning rate of the update at step `step` (0-based): lr·(step + 1)/warmup during warmup, then
 * constant or a cosine from lr (at step warmup) down to minLr (at step steps − 1, and after).
 *
 * @example
 * ```ts
 * import { learningRate } from "./adam.ts";
 * const o = { lr: 1, minLr: 0, warmup: 2, steps: 4 };
 * console.log([0, 1, 2, 3].map((s) => learningRate(s, o))); // [0.5, 1, 1, 0]
 * ```
 */
export function learningRate(step: number, options: ScheduleOptions): number {
  checkInteger("learningRate", "step", step);
  // The schedule has no defaults for every key (steps), so its options are required.
  if (options === undefined) throw new TypeError("learningRate: options must be an object, got undefined");
  checkOptionKeys("learningRate", options, SCHEDULE_KEYS);
  return scheduledRate(step, options);
}

const SCHEDULE_KEYS = ["lr", "minLr", "warmup", "steps", "schedule"] as const;

/** {@linkcode learningRate} without the checks, for resolved options (which carry Adam's keys too). */
function scheduledRate(step: number, options: ScheduleOptions): number {
  const { lr = ADAM_DEFAULTS.lr, warmup = 0, steps, schedule = "cosine" } = options;
  const minLr = options.minLr ?? 0.1 * lr;
  if (step < warmup) return lr * (step + 1) / warmup;
  if (schedule === "constant") return lr;
  const span = steps - warmup - 1;
  const progress = span > 0 ? Math.min(1, (step - warmup) / span) : 0;
  return minLr + (lr - minLr) * (1 + Math.cos(Math.PI * progress)) / 2;
}

/**
 * The squared L2 norm of each tensor, as one float32 vector (read it once for all of them).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { squaredNorms } from "./adam.ts";
 * const sq = squaredNorms([tf.tensor1d([3, 4]), tf.tensor2d([[1, 1]])]);
 * console.log(Array.from(sq.dataSync())); // [25, 2]
 * ```
 */
export function squaredNorms(tensors: readonly tf.Tensor[]): tf.Tensor1D {
  // One fused kernel on the blas backend; tf.sum(tf.square(t)) per tensor elsewhere, the same float32 values.
  return sumsOfSquares(tensors); // [V]
}

/**
 * The global L2 norm sqrt(Σ ‖g‖²) of a set of tensors (null entries are skipped), summed in float64.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { globalNorm } from "./adam.ts";
 * console.log(globalNorm({ a: tf.tensor1d([3]), b: tf.tensor1d([4]) })); // 5
 * ```
 */
export function globalNorm(grads: Readonly<Record<string, tf.Tensor | null | undefined>>): number {
  const present = Object.values(grads).filter((g): g is tf.Tensor => g != null);
  const sq = squaredNorms(present);
  const values = sq.dataSync();
  sq.dispose();
  let total = 0;
  for (const x of values) total += x;
  return Math.sqrt(total);
}

/** What {@linkcode clipByGlobalNorm} returns. */
export interface Clipped {
  /** New tensors (the caller disposes them): the gradients times `scale`. */
  grads: Record<string, tf.Tensor>;
  /** Global norm before clipping. */
  norm: number;
  /** Whether the norm was above the threshold. */
  clipped: boolean;
  /** clip / norm when clipped, else 1. */
  scale: number;
}

/**
 * Scales `grads` so that their global L2 norm is at most `clip` (null: no clipping). Pass a known
 * pre-clip norm as `options.norm` to skip reading it from the device.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { clipByGlobalNorm, globalNorm } from "./adam.ts";
 * const c = clipByGlobalNorm({ a: tf.tensor1d([3, 4]) }, 1);
 * console.log(c.norm, c.clipped, Math.abs(globalNorm(c.grads) - 1) < 1e-6); // 5 true true
 * ```
 */
export function clipByGlobalNorm(
  grads: Readonly<Record<string, tf.Tensor>>,
  clip: number | null,
  options: { norm?: number } = {},
): Clipped {
  if (clip !== null && (typeof clip !== "number" || !(clip > 0) || !Number.isFinite(clip))) {
    const message = `clipByGlobalNorm: clip must be a finite number > 0 or null (no clipping), got ${
      describeValue(clip)
    }`;
    throw typeof clip === "number" ? new RangeError(message) : new TypeError(message);
  }
  checkOptionKeys("clipByGlobalNorm", options, ["norm"]);
  const norm = options.norm ?? globalNorm(grads);
  const clipped = clip !== null && norm > clip;
  const scale = clipped ? clip / norm : 1;
  const out = tf.tidy(() => {
    const scaled: Record<string, tf.Tensor> = {};
    for (const [name, g] of Object.entries(grads)) scaled[name] = scale === 1 ? tf.clone(g) : tf.mul(g, scale);
    return scaled;
  });
  return { grads: out, norm, clipped, scale };
}

/** What one {@linkcode Adam.apply} did. */
export interface AdamStepInfo {
  /** The 0-based index of this update. */
  step: number;
  /** Its learning rate. */
  lr: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Whether the gradients were clipped. */
  clipped: boolean;
  /** The factor the gradients were multiplied by (1 when not clipped). */
  scale: number;
}

/** Adam's state, as plain arrays: the number of updates applied and both moments per variable. */
export interface AdamState {
  step: number;
  m: Record<string, Float32Array>;
  v: Record<string, Float32Array>;
}

/** An Adam optimizer bound to a set of variables. */
export interface Adam {
  /** Variable names, in the order given. */
  readonly names: readonly string[];
  /** First moments, one tf.Variable per variable (same shape). */
  readonly m: Readonly<Record<string, tf.Variable>>;
  /** Second moments. */
  readonly v: Readonly<Record<string, tf.Variable>>;
  /** Updates applied so far; the next update has this index. */
  readonly step: number;
  /** The resolved options. */
  readonly options: Readonly<ResolvedAdamOptions>;
  /**
   * Clips and applies one update from gradients keyed by variable name (a missing or null gradient leaves
   * that variable and its moments as they are, as PyTorch does). `gradNorm`: the pre-clip global norm,
   * when already known. Throws when the gradient norm is not finite.
   */
  apply(grads: Readonly<Record<string, tf.Tensor | null | undefined>>, options?: { gradNorm?: number }): AdamStepInfo;
  /** Copies m, v and the step count out of the device. */
  getState(): Promise<AdamState>;
  /** Restores m, v and the step count (shapes must match). */
  setState(state: AdamState): void;
  /** Disposes m and v (not the variables being trained). */
  dispose(): void;
}

/**
 * Creates an Adam optimizer over `variables` (float32 tf.Variables keyed by name). Its moments start at zero.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { adam } from "./adam.ts";
 * const w = tf.variable(tf.tensor1d([1, -1]));
 * const opt = adam({ w }, { lr: 0.1, steps: 10 });
 * const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(w)) as tf.Scalar, [w]);
 * const info = opt.apply({ w: grads[w.name] });
 * console.log(info.lr, Array.from(w.dataSync()).map((x) => x.toFixed(2))); // 0.1 ["0.90", "-0.90"]
 * value.dispose();
 * grads[w.name].dispose();
 * opt.dispose();
 * w.dispose();
 * ```
 */
export function adam(variables: Readonly<Record<string, tf.Variable>>, options: AdamOptions): Adam {
  const o = resolveAdamOptions("adam", options);
  const names = checkVariables("adam", variables);
  const m: Record<string, tf.Variable> = {};
  const v: Record<string, tf.Variable> = {};
  const decays = new Set(decayedNames(variables, o.decay));
  // tidy disposes the zero tensors and keeps the variables made from them.
  tf.tidy(() => {
    for (const name of names) {
      m[name] = tf.variable(tf.zerosLike(variables[name]), false);
      v[name] = tf.variable(tf.zerosLike(variables[name]), false);
    }
  });
  let step = 0;
  let disposed = false;
  const alive = () => {
    if (disposed) throw new Error("adam: this optimizer was disposed; create a new one with adam(variables, options)");
  };

  return {
    names,
    m,
    v,
    options: o,
    get step() {
      return step;
    },
    apply(grads, applyOptions = {}) {
      alive();
      checkOptionKeys("adam.apply", applyOptions, ["gradNorm"]);
      for (const key of Object.keys(grads)) {
        if (!(key in variables)) {
          throw new Error(`adam.apply: grads has "${key}", which is not one of the variables (${names.join(", ")})`);
        }
      }
      for (const name of names) {
        const g = grads[name];
        if (g != null && g.shape.join() !== variables[name].shape.join()) {
          throw new Error(
            `adam.apply: the gradient of "${name}" has shape [${g.shape}], expected [${variables[name].shape}]`,
          );
        }
      }
      const gradNorm = applyOptions.gradNorm ?? globalNorm(grads);
      if (!Number.isFinite(gradNorm)) {
        throw new Error(`adam.apply: the global gradient norm is ${gradNorm}; refusing to apply a non-finite update`);
      }
      const lr = scheduledRate(step, o);
      const clipped = o.clip !== null && gradNorm > o.clip;
      const scale = clipped ? o.clip! / gradNorm : 1;
      const t = step + 1;
      const present = names.filter((name) => grads[name] != null);
      tf.tidy(() => {
        // Every variable at once: one fused kernel on the blas backend, the same float32 ops elsewhere.
        const slots = present.map((name) => ({
          w: variables[name],
          g: grads[name]!,
          m: m[name],
          v: v[name],
          decay: decays.has(name),
        }));
        const { beta1, beta2, eps, weightDecay } = o;
        const updated = adamwUpdate(slots, { lr, beta1, beta2, eps, t, scale, weightDecay });
        present.forEach((name, i) => {
          const [w1, m1, v1] = updated[i];
          variables[name].assign(w1);
          m[name].assign(m1);
          v[name].assign(v1);
        });
      });
      const info = { step, lr, gradNorm, clipped, scale };
      step = t;
      return info;
    },
    async getState() {
      alive();
      const state: AdamState = { step, m: {}, v: {} };
      for (const name of names) {
        state.m[name] = Float32Array.from(await m[name].data() as Float32Array);
        state.v[name] = Float32Array.from(await v[name].data() as Float32Array);
      }
      return state;
    },
    setState(state) {
      alive();
      if (state === null || typeof state !== "object" || !Number.isInteger(state.step) || state.step < 0) {
        throw new Error(`adam.setState: state must be { step: integer >= 0, m, v }, got ${describeValue(state)}`);
      }
      if (state.step > o.steps) {
        throw new RangeError(
          `adam.setState: state.step ${state.step} is beyond the schedule's ${o.steps} steps; ` +
            `create the optimizer with steps >= ${state.step}`,
        );
      }
      for (const name of names) {
        for (const [which, moments] of [["m", state.m], ["v", state.v]] as const) {
          const data = moments?.[name];
          if (!(data instanceof Float32Array) || data.length !== variables[name].size) {
            throw new Error(
              `adam.setState: state.${which}["${name}"] must be a Float32Array of ${variables[name].size} values, ` +
                `got ${describeValue(data)}`,
            );
          }
        }
      }
      tf.tidy(() => {
        for (const name of names) {
          m[name].assign(tf.tensor(state.m[name], variables[name].shape, "float32"));
          v[name].assign(tf.tensor(state.v[name], variables[name].shape, "float32"));
        }
      });
      step = state.step;
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      for (const name of names) {
        m[name].dispose();
        v[name].dispose();
      }
    },
  };
}

/**
 * The names of the variables that get weight decay: those `decay` selects, or by default those of rank >= 2.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { decayedNames } from "./adam.ts";
 * const w = tf.variable(tf.zeros([2, 2])), b = tf.variable(tf.zeros([2]));
 * console.log(decayedNames({ w, b }, null)); // ["w"]
 * w.dispose();
 * b.dispose();
 * ```
 */
export function decayedNames(
  variables: Readonly<Record<string, tf.Variable>>,
  decay: ((name: string, variable: tf.Variable) => boolean) | null,
): string[] {
  return Object.keys(variables).filter((name) => {
    const w = variables[name];
    const chosen = decay ? decay(name, w) : w.rank >= 2;
    if (typeof chosen !== "boolean") {
      throw new Error(`adam: option decay must return true or false, got ${describeValue(chosen)} for "${name}"`);
    }
    return chosen;
  });
}

/**
 * Checks a name → tf.Variable map (non-empty, float32, trainable, distinct tf names) and returns the names.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { checkVariables } from "./adam.ts";
 * const w = tf.variable(tf.zeros([2]));
 * console.log(checkVariables("demo", { "blocks.0.w": w })); // ["blocks.0.w"]
 * w.dispose();
 * ```
 */
export function checkVariables(owner: string, variables: unknown): string[] {
  if (variables === null || typeof variables !== "object" || Array.isArray(variables)) {
    throw new Error(`${owner}: variables must be an object of name → tf.Variable, got ${describeValue(variables)}`);
  }
  const names = Object.keys(variables);
  if (names.length === 0) throw new Error(`${owner}: variables is empty; give at least one tf.Variable to train`);
  const tfNames = new Map<string, string>();
  for (const name of names) {
    const w = (variables as Record<string, unknown>)[name];
    if (!(w instanceof tf.Variable)) {
      throw new Error(`${owner}: variables["${name}"] must be a tf.Variable (tf.variable(x)), got ${describeValue(w)}`);
    }
    if (w.dtype !== "float32") {
      throw new Error(`${owner}: variables["${name}"] must be float32, got ${w.dtype}`);
    }
    if (!w.trainable) {
      throw new Error(
        `${owner}: variables["${name}"] is not trainable; leave it out or create it with trainable = true`,
      );
    }
    if (w.isDisposed) throw new Error(`${owner}: variables["${name}"] is disposed`);
    const other = tfNames.get(w.name);
    if (other !== undefined) {
      throw new Error(
        `${owner}: variables["${other}"] and variables["${name}"] are the same tf.Variable or share its name ` +
          `"${w.name}"; each must be a distinct variable`,
      );
    }
    tfNames.set(w.name, name);
  }
  return names;
}
