/**
 * The model's one typed config, its defaults, the presets, and the checks that make
 * unknown keys and wrong types throw.
 *
 * @module
 */

import { describeValue, resolveOptions } from "../_options.ts";
import { type VariantName, variants } from "../attention/mod.ts";

/** The registered attention variants, as a list. */
export const VARIANT_NAMES = Object.keys(variants) as VariantName[];

/**
 * One layer's attention: a registered variant and its options (`causal` and `keyMask` are set by the model), and whether its output
 * (all heads concatenated, before the output projection) is scaled by a learned per-channel gain, initialised to 1: with
 * NormAttention's `norm: "rms"` that makes RMSNorm with a learned gain, Table 1's "RMSNorm" row (the variant's own norms
 * have no parameters).
 */
export interface LayerAttention {
  variant: VariantName;
  options: Record<string, unknown>;
  /** A learned gain [dModel] on the attention output; default false. */
  gain?: boolean;
}

/** The named stacks of the paper. */
export const PRESETS = [
  "vanilla",
  "linear",
  "performer",
  "cosformer",
  "transnormer-t1",
  "transnormer-t2",
] as const;

/** A key of {@linkcode PRESETS}. */
export type PresetName = typeof PRESETS[number];

/** Everything that defines a model. Build one with {@linkcode modelConfig}. */
export interface ModelConfig {
  /** The preset the attention list came from, or null for a hand-written list. */
  preset: PresetName | null;
  /**
   * Token vocabulary: the rows of the embedding table and the width of the LM head. Default 256 (bytes), and 257 for
   * task "mlm" (256 bytes and the [MASK] id 256).
   */
  vocabSize: number;
  /** Hidden size d. */
  dModel: number;
  /** Attention heads; dModel must divide by it. */
  heads: number;
  /** One entry per layer. */
  attention: LayerAttention[];
  /** Pre-norm of every block and the final norm: SimpleRMSNorm (no parameters) or LayerNorm. */
  norm: "srms" | "layer";
  /** Feed-forward: GLU with silu, or a two-layer MLP with gelu. */
  ffn: "glu" | "mlp";
  /** FFN hidden size; null: round(8/3 d) for GLU, 4d for the MLP. */
  ffnHidden: number | null;
  /** Absolute positions added to the embeddings. */
  positions: "sinusoidal" | "none";
  /** Rotary encoding on q and k in every layer. */
  rotary: boolean;
  /** Longest sequence the model accepts (the sinusoidal table's length). */
  maxLength: number;
  /**
   * "lm": causal language model with a tied output head; "mlm": bidirectional (non-causal in every layer) masked
   * language model with the same tied head, whose loss averages over the masked positions only (a batch's `mask`
   * weights, required); "classify": bidirectional encoder, mean-pooled, linear head.
   */
  task: "lm" | "mlm" | "classify";
  /** Classes of the classification head; required when task is "classify". */
  numClasses: number | null;
  /**
   * Task "mlm" only: the [MASK] token id, an id of the vocabulary that the data never holds. Default vocabSize - 1
   * (256 with the default vocabSize 257, so the bytes 0..255 keep their ids); null for the other tasks.
   */
  maskToken: number | null;
  /** Seeds the initial weights (and Performer's projections). */
  seed: number;
}

/** What {@linkcode modelConfig} accepts: any config field, `attention` as a preset name or a list, and `layers`. */
export interface ModelConfigInput extends Partial<Omit<ModelConfig, "attention" | "preset">> {
  /** A preset name, or one entry per layer: a variant name or `{ variant, options }`. Default "transnormer-t2". */
  attention?:
    | PresetName
    | (VariantName | { variant: VariantName; options?: Record<string, unknown>; gain?: boolean })[];
  /** Layer count for a preset; with a list it must equal the list's length. Default 4. */
  layers?: number;
}

/** The defaults {@linkcode modelConfig} fills in. */
export const MODEL_DEFAULTS: Readonly<Omit<ModelConfig, "attention" | "preset">> = Object.freeze({
  vocabSize: 256,
  dModel: 64,
  heads: 4,
  norm: "srms",
  ffn: "glu",
  ffnHidden: null,
  positions: "sinusoidal",
  rotary: false,
  maxLength: 1024,
  task: "lm",
  numClasses: null,
  maskToken: null,
  seed: 0,
});

/** The default vocabSize of a masked language model (task "mlm"): the 256 bytes and one [MASK] id, 256. */
export const MLM_VOCAB_SIZE = 257;

/**
 * The largest `maxLength`, 2^20 tokens: past it no variant here fits a sequence in memory (softmax holds n² scores,
 * the others n × dModel activations per layer), and the sinusoidal table alone holds maxLength × dModel floats.
 */
export const MAX_LENGTH = 1_048_576;

/**
 * The most floats the sinusoidal position table (maxLength × dModel, allocated when the model is built) may hold:
 * 2^26, 256 MiB of float32.
 */
export const MAX_POSITION_TABLE_FLOATS = 67_108_864;

type Rule =
  | { kind: "int"; min: number; max?: { value: number; why: string }; nullable?: boolean }
  | { kind: "enum"; values: readonly string[] }
  | { kind: "bool" };

const RULES: Record<keyof typeof MODEL_DEFAULTS, Rule> = {
  vocabSize: { kind: "int", min: 2 },
  dModel: { kind: "int", min: 1 },
  heads: { kind: "int", min: 1 },
  norm: { kind: "enum", values: ["srms", "layer"] },
  ffn: { kind: "enum", values: ["glu", "mlp"] },
  ffnHidden: { kind: "int", min: 1, nullable: true },
  positions: { kind: "enum", values: ["sinusoidal", "none"] },
  rotary: { kind: "bool" },
  maxLength: {
    kind: "int",
    min: 1,
    max: { value: MAX_LENGTH, why: "no variant here fits a longer sequence in memory (softmax holds n² scores)" },
  },
  task: { kind: "enum", values: ["lm", "mlm", "classify"] },
  numClasses: { kind: "int", min: 2, nullable: true },
  maskToken: { kind: "int", min: 0, nullable: true },
  seed: { kind: "int", min: 0 },
};

/**
 * The per-layer attention of a preset with `layers` layers. TransNormer puts DiagAttention in the
 * first half (rounded up) and NormAttention in the rest; T1 uses relu blocks and `elu` features,
 * T2 softmax blocks and `1+elu` features, as in the authors' code.
 *
 * @example
 * ```ts
 * import { presetAttention } from "./config.ts";
 * console.log(presetAttention("transnormer-t1", 4).map((l) => l.variant).join(",")); // diag,diag,norm,norm
 * ```
 */
export function presetAttention(preset: PresetName, layers: number): LayerAttention[] {
  if (!PRESETS.includes(preset)) {
    throw new Error(`presetAttention: unknown preset "${preset}"; valid presets are ${PRESETS.join(", ")}`);
  }
  if (!Number.isInteger(layers) || layers < 1) {
    throw new Error(`presetAttention: layers must be an integer >= 1, got ${layers}`);
  }
  const early = Math.ceil(layers / 2);
  return Array.from({ length: layers }, (_, i): LayerAttention => {
    switch (preset) {
      case "vanilla":
        return { variant: "softmax", options: {} };
      case "linear":
        return { variant: "linear", options: { featureMap: "elu+1" } };
      case "performer":
        return { variant: "performer", options: {} };
      case "cosformer":
        return { variant: "cosformer", options: {} };
      case "transnormer-t1":
        return i < early
          ? { variant: "diag", options: { inner: "relu" } }
          : { variant: "norm", options: { featureMap: "elu" } };
      case "transnormer-t2":
        return i < early
          ? { variant: "diag", options: { inner: "softmax" } }
          : { variant: "norm", options: { featureMap: "elu+1" } };
    }
  });
}

function checkField(key: string, value: unknown, rule: Rule): void {
  const where = `modelConfig: ${key}`;
  if (value === null && rule.kind === "int" && rule.nullable) return;
  if (rule.kind === "bool" && typeof value !== "boolean") {
    throw new TypeError(`${where} must be true or false, got ${describeValue(value)}`);
  }
  if (rule.kind === "enum" && (typeof value !== "string" || !rule.values.includes(value))) {
    const message = `${where} must be one of ${rule.values.map((v) => `"${v}"`).join(", ")}, got ${
      describeValue(value)
    }`;
    throw typeof value === "string" ? new RangeError(message) : new TypeError(message);
  }
  if (rule.kind === "int") {
    const range = `an integer >= ${rule.min}${rule.max ? ` and <= ${rule.max.value}` : ""}`;
    const wanted = `${where} must be ${range}${rule.nullable ? " or null" : ""}, got ${describeValue(value)}`;
    if (typeof value !== "number") throw new TypeError(wanted);
    if (!Number.isInteger(value) || value < rule.min) throw new RangeError(wanted);
    if (rule.max && value > rule.max.value) throw new RangeError(`${wanted}: ${rule.max.why}`);
  }
}

function layerAttention(entry: unknown, index: number): LayerAttention {
  const where = `modelConfig: attention[${index}]`;
  const spec = typeof entry === "string" ? { variant: entry } : entry;
  if (spec === null || typeof spec !== "object" || Array.isArray(spec)) {
    throw new Error(`${where} must be a variant name or { variant, options, gain }, got ${describeValue(entry)}`);
  }
  for (const key of Object.keys(spec)) {
    if (key !== "variant" && key !== "options" && key !== "gain") {
      throw new Error(`${where}: unknown key "${key}"; valid keys are variant, options, gain`);
    }
  }
  const { variant, options = {}, gain = false } = spec as { variant: unknown; options?: unknown; gain?: unknown };
  if (typeof gain !== "boolean") {
    throw new TypeError(
      `${where}.gain must be true or false (a learned gain on the attention output), got ${describeValue(gain)}`,
    );
  }
  if (typeof variant !== "string" || !(VARIANT_NAMES as string[]).includes(variant)) {
    throw new Error(`${where}.variant must be one of ${VARIANT_NAMES.join(", ")}, got ${describeValue(variant)}`);
  }
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new Error(`${where}.options must be an object, got ${describeValue(options)}`);
  }
  const { defaults, rules } = variants[variant as VariantName];
  const accepted = Object.keys(defaults).filter((k) => k !== "causal" && k !== "keyMask");
  for (const key of Object.keys(options)) {
    if (key === "causal") {
      throw new Error(
        `${where}.options: "causal" is set by the model from its task ("lm" is causal, "mlm" and "classify" are ` +
          "not); remove it",
      );
    }
    if (key === "keyMask") {
      throw new Error(
        `${where}.options: "keyMask" is set by the model for each batch (a classifier's pad tokens); remove it and ` +
          "pass the pad id to logits() or in the batch",
      );
    }
    if (!accepted.includes(key)) {
      throw new TypeError(
        `${where}.options: unknown option "${key}" for ${variant}; valid options are ${accepted.join(", ")}`,
      );
    }
  }
  // The variant's own rules, now rather than at the first forward pass.
  resolveOptions(`${where}.options (${variant})`, options, defaults, rules);
  return { variant: variant as VariantName, options: { ...options }, ...(gain ? { gain: true } : {}) };
}

/**
 * A complete, checked {@linkcode ModelConfig}: defaults filled in, unknown keys and wrong types rejected.
 *
 * @example
 * ```ts
 * import { modelConfig } from "./config.ts";
 * const c = modelConfig({ attention: "vanilla", layers: 2, dModel: 32 });
 * console.log(c.attention.length, c.heads, c.norm); // 2 4 srms
 * const custom = modelConfig({ attention: ["diag", { variant: "norm", options: { norm: "layer" } }] });
 * console.log(custom.preset, custom.attention[1].options.norm); // null layer
 * const mlm = modelConfig({ task: "mlm" }); // the bytes and a [MASK] id
 * console.log(mlm.vocabSize, mlm.maskToken); // 257 256
 * ```
 */
export function modelConfig(input: ModelConfigInput = {}): ModelConfig {
  if (input === null || typeof input !== "object" || Array.isArray(input)) {
    throw new TypeError(
      `modelConfig: config must be an object, got ${describeValue(input)}; ` +
        'e.g. { attention: "transnormer-t2", layers: 4, dModel: 64, heads: 4 }, or {} for the defaults',
    );
  }
  const known = [...Object.keys(RULES), "attention", "layers"];
  for (const key of Object.keys(input)) {
    if (!known.includes(key)) {
      throw new Error(`modelConfig: unknown key "${key}"; valid keys are ${known.join(", ")}`);
    }
  }
  const out = { ...MODEL_DEFAULTS } as Record<string, unknown>;
  for (const [key, rule] of Object.entries(RULES)) {
    const value = (input as Record<string, unknown>)[key];
    if (value === undefined) continue;
    checkField(key, value, rule);
    out[key] = value;
  }
  const { attention = "transnormer-t2", layers } = input;
  if (layers !== undefined) checkField("layers", layers, { kind: "int", min: 1 });
  let preset: PresetName | null = null;
  let list: LayerAttention[];
  if (typeof attention === "string") {
    if (!PRESETS.includes(attention)) {
      throw new Error(`modelConfig: attention must be a preset (${PRESETS.join(", ")}) or a list, got "${attention}"`);
    }
    preset = attention;
    list = presetAttention(attention, layers ?? 4);
  } else if (Array.isArray(attention) && attention.length > 0) {
    list = attention.map(layerAttention);
    if (layers !== undefined && layers !== list.length) {
      throw new Error(`modelConfig: layers is ${layers} but the attention list has ${list.length} entries; drop one`);
    }
  } else {
    throw new Error(
      `modelConfig: attention must be a preset name or a non-empty list, got ${describeValue(attention)}`,
    );
  }
  const config = { ...out, preset, attention: list } as ModelConfig;
  if (config.dModel % config.heads !== 0) {
    throw new Error(`modelConfig: dModel (${config.dModel}) must be divisible by heads (${config.heads})`);
  }
  if (config.rotary && (config.dModel / config.heads) % 2 !== 0) {
    throw new Error(`modelConfig: rotary needs an even head size, got dModel/heads = ${config.dModel / config.heads}`);
  }
  if (config.task === "classify" && config.numClasses === null) {
    throw new Error(`modelConfig: task "classify" needs numClasses (an integer >= 2)`);
  }
  if (config.task !== "classify" && config.numClasses !== null) {
    throw new Error(`modelConfig: numClasses is only for task "classify"; remove it or set task: "classify"`);
  }
  if (config.task === "mlm") {
    // The [MASK] id: one id past the bytes by default, since vocabSize defaults to MLM_VOCAB_SIZE for "mlm".
    if (input.vocabSize === undefined) config.vocabSize = MLM_VOCAB_SIZE;
    if (config.maskToken === null) config.maskToken = config.vocabSize - 1;
    if (config.maskToken >= config.vocabSize) {
      throw new RangeError(
        `modelConfig: maskToken must be a token id in 0..${config.vocabSize - 1} (vocabSize ${config.vocabSize}), ` +
          `got ${config.maskToken}; leave it out for vocabSize - 1, or raise vocabSize`,
      );
    }
  } else if (config.maskToken !== null) {
    throw new Error(`modelConfig: maskToken is only for task "mlm"; remove it or set task: "mlm"`);
  }
  const table = config.maxLength * config.dModel;
  if (config.positions === "sinusoidal" && table > MAX_POSITION_TABLE_FLOATS) {
    throw new RangeError(
      `modelConfig: maxLength × dModel = ${config.maxLength} × ${config.dModel} = ${table} floats, over the limit of ` +
        `${MAX_POSITION_TABLE_FLOATS} (256 MiB) for the sinusoidal position table the model allocates when built; ` +
        `lower maxLength to at most ${Math.floor(MAX_POSITION_TABLE_FLOATS / config.dModel)}, or set positions: "none"`,
    );
  }
  return config;
}

/**
 * The FFN hidden size a config resolves to.
 *
 * @example
 * ```ts
 * import { ffnHiddenSize, modelConfig } from "./config.ts";
 * console.log(ffnHiddenSize(modelConfig({ dModel: 48 }))); // 128
 * ```
 */
export function ffnHiddenSize(config: ModelConfig): number {
  if (config.ffnHidden !== null) return config.ffnHidden;
  return config.ffn === "glu" ? Math.round((8 / 3) * config.dModel) : 4 * config.dModel;
}
