/**
 * Reverse-mode gradients of a scalar function of variables that free memory as the backward walk goes, as PyTorch's
 * autograd does: {@linkcode variableGrads}.
 *
 * `tf.variableGrads` keeps every tensor saved for the backward pass, and the gradient of every intermediate tensor,
 * until the whole walk ends, so a training step's peak holds all of them at once. This walk is tfjs's, node for node
 * and add for add (the gradients are bitwise the same), but it disposes a node's saved tensors and the gradients of
 * its outputs as soon as the node has passed its gradients on: nothing earlier on the tape reads them again.
 *
 * It reads tfjs's tape (`engine.state.activeTape`, `startTape`, `endTape`, `scopedRun`), which is not public API;
 * `tests/backprop_test.ts` holds it to `tf.variableGrads` bit for bit, on the model as on small graphs.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

/** One recorded op on tfjs's gradient tape (tfjs-core's TapeNode, as far as this walk reads it). */
interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  gradient: ((dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>) | null;
  saved?: tf.Tensor[];
}

/** The engine members the walk uses (all exist on tfjs-core 4.x's Engine). */
interface TapeEngine {
  state: { gradientDepth: number; activeTape: TapeNode[] | null };
  startTape(): void;
  endTape(): void;
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  tidy<T extends tf.TensorContainer>(name: string, f: () => T): T;
}

/**
 * `tf.variableGrads(f, varList)` with the same values and gradients, bit for bit, and a lower peak: each op's saved
 * tensors and its outputs' gradients are freed as soon as the backward walk has passed the op. Inside another
 * gradient (a higher-order derivative) the whole tape must stay, so there it is tfjs's own `tf.variableGrads`.
 *
 * @param f A synchronous function returning a scalar, whose ops read the variables.
 * @param varList The trainable variables to differentiate with respect to (at least one).
 * @returns `value` (f's scalar) and `grads` keyed by each variable's name (variables f does not reach are left out).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { variableGrads } from "./backprop.ts";
 * const w = tf.variable(tf.tensor1d([1, 2, 3]));
 * const { value, grads } = variableGrads(() => tf.sum(tf.square(w)) as tf.Scalar, [w]);
 * console.log(value.dataSync()[0], Array.from(grads[w.name].dataSync())); // 14 [ 2, 4, 6 ]
 * tf.dispose([value, grads[w.name], w]);
 * ```
 */
export function variableGrads(
  f: () => tf.Scalar,
  varList: tf.Variable[],
): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  if (typeof f !== "function") throw new TypeError("variableGrads: f must be a function returning a scalar");
  if (!Array.isArray(varList) || varList.length === 0 || !varList.every((v) => v instanceof tf.Variable)) {
    throw new TypeError("variableGrads: varList must be a non-empty array of tf.Variable");
  }
  const engine = tf.engine() as unknown as TapeEngine;
  if (engine.state.gradientDepth !== 0) return tf.variableGrads(f, varList);
  const xs = varList.filter((v) => v.trainable);
  if (xs.length === 0) throw new TypeError("variableGrads: none of varList is trainable");

  let y: tf.Tensor;
  try {
    y = engine.scopedRun(
      () => (engine.startTape(), saveShapesOnly(engine, true)),
      () => (saveShapesOnly(engine, false), engine.endTape()),
      () => engine.tidy("forward", f),
    );
  } catch (err) {
    dropTape(engine);
    throw err;
  }
  try {
    if (!(y instanceof tf.Tensor) || y.rank !== 0) {
      throw new TypeError(
        `variableGrads: f must return a scalar tensor, got ${y instanceof tf.Tensor ? `rank ${y.rank}` : typeof y}`,
      );
    }
    const nodes = nodesFromXsToY(engine.state.activeTape ?? [], xs, y);
    releaseUnread(engine.state.activeTape ?? [], nodes);
    const named = engine.tidy("backward", () => walkBack(engine, nodes, xs, y));
    if (Object.keys(named).length === 0) {
      throw new Error("variableGrads: no variable in varList reaches f's value; check that f reads them");
    }
    return { value: y as tf.Scalar, grads: named };
  } catch (err) {
    y.dispose();
    throw err;
  } finally {
    dropTape(engine);
  }
}

/** The walk: tfjs's backpropagateGradients, releasing what no earlier node reads. Returns xs' gradients by name. */
function walkBack(engine: TapeEngine, nodes: TapeNode[], xs: tf.Variable[], y: tf.Tensor): tf.NamedTensorMap {
  const grad = new Map<number, tf.Tensor>(); // tensor id -> its accumulated gradient
  // How many entries of `grad` hold each tensor object: a gradient function may hand a dy on unchanged.
  const holds = new Map<tf.Tensor, number>();
  const hold = (id: number, t: tf.Tensor) => {
    grad.set(id, t);
    holds.set(t, (holds.get(t) ?? 0) + 1);
  };
  const release = (id: number) => {
    const t = grad.get(id);
    if (t === undefined) return;
    grad.delete(id);
    const left = holds.get(t)! - 1;
    if (left > 0) holds.set(t, left);
    else {
      holds.delete(t);
      t.dispose();
    }
  };
  hold(y.id, tf.ones(y.shape));
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i];
    const dys = node.outputs.map((o) => grad.get(o.id) ?? null);
    if (node.gradient == null) {
      throw new Error(`variableGrads: no gradient is registered for ${node.kernelName}; it cannot be differentiated`);
    }
    const inputGradients = node.gradient(dys);
    for (const name in node.inputs) {
      if (!(name in inputGradients)) {
        throw new Error(`variableGrads: the gradient of ${node.kernelName} gives none for its input ${name}`);
      }
      const dx = engine.tidy(name, () => inputGradients[name]());
      const x = node.inputs[name];
      if (dx.dtype !== "float32" || !tf.util.arraysEqual(dx.shape, x.shape)) {
        throw new Error(
          `variableGrads: the gradient of ${node.kernelName} for ${name} is ${dx.dtype} [${dx.shape}], ` +
            `expected float32 [${x.shape}]`,
        );
      }
      if (!grad.has(x.id)) hold(x.id, dx);
      else {
        // The same sum, in the same order, as tfjs's walk: earlier + this one.
        const sum = tf.add(grad.get(x.id)!, dx);
        release(x.id);
        hold(x.id, sum);
        if (!holds.has(dx)) dx.dispose();
      }
    }
    // Every reader of this node's outputs comes later on the tape and has been walked: their gradients are final
    // and read no more, and neither is what the node saved.
    for (const o of node.outputs) release(o.id);
    disposeSaved(node, holds);
  }
  const named: tf.NamedTensorMap = {};
  for (const x of xs) if (grad.has(x.id)) named[x.name] = grad.get(x.id)!;
  return named;
}

/**
 * The nodes on a path from some x to y, in tape order, each with only the inputs that depend on an x (tfjs's
 * getFilteredNodesXToY, rewritten: gradients flow only where both hold).
 */
function nodesFromXsToY(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set<number>(xs.map((x) => x.id));
  const nodeFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      nodeFromX.add(node.id);
      for (const o of node.outputs) fromX.add(o.id);
    }
  }
  const toY = new Set<number>([y.id]);
  const nodeToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    if (node.outputs.some((o) => toY.has(o.id))) {
      nodeToY.add(node.id);
      for (const t of Object.values(node.inputs)) toY.add(t.id);
    }
  }
  const out: TapeNode[] = [];
  for (const node of tape) {
    if (!nodeFromX.has(node.id) || !nodeToY.has(node.id)) continue;
    const inputs: Record<string, tf.Tensor> = {};
    for (const name in node.inputs) if (fromX.has(node.inputs[name].id)) inputs[name] = node.inputs[name];
    out.push({ ...node, inputs });
  }
  return out;
}

/**
 * tfjs ops whose registered gradient reads only the shapes of what it saved (tfjs-core 4.22's gradients/*_grad.ts):
 * Reshape, Sum and Mean save their input, Add and Sub both inputs, Slice its input and Concat all of them, and each
 * pins a whole buffer for its shape alone.
 */
const SHAPE_ONLY = new Set(["Reshape", "Add", "Sub", "Sum", "Mean", "Slice", "Concat"]);

/** What a SHAPE_ONLY gradient reads of a saved tensor; reading its values would throw (it is no tensor). */
interface ShapeOf {
  readonly shape: number[];
  readonly rank: number;
  readonly dtype: tf.DataType;
  readonly size: number;
}

/** Before the walk: nodes off every path from the variables to y hold their saved tensors to no use. */
function releaseUnread(tape: TapeNode[], nodes: TapeNode[]): void {
  const walked = new Set(nodes.map((n) => n.id));
  for (const node of tape) {
    if (walked.has(node.id) || !node.saved) continue;
    disposeSaved(node);
    node.saved.length = 0;
  }
}

/**
 * While the forward pass records (and only at depth 1: a gradient nested inside keeps tfjs's own tape), the
 * SHAPE_ONLY ops save their inputs' shapes instead of the tensors. tfjs asks getTensorsForGradient what to save and at
 * once hands the answer to saveTensorsForBackwardMode, which clones and keeps it; both are wrapped on the engine
 * object for the duration and put back after.
 */
function saveShapesOnly(engine: TapeEngine, on: boolean): void {
  const own = engine as unknown as {
    getTensorsForGradient(kernelName: string, inputs: unknown, outputs: tf.Tensor[]): (tf.Tensor | ShapeOf)[];
    saveTensorsForBackwardMode(tensors: (tf.Tensor | ShapeOf)[]): (tf.Tensor | ShapeOf)[];
  };
  if (!on) {
    // Deleting the instance's own properties uncovers the prototype's methods again.
    delete (own as Partial<typeof own>).getTensorsForGradient;
    delete (own as Partial<typeof own>).saveTensorsForBackwardMode;
    return;
  }
  const proto = Object.getPrototypeOf(own) as typeof own;
  own.getTensorsForGradient = function (kernelName, inputs, outputs) {
    const tensors = proto.getTensorsForGradient.call(this, kernelName, inputs, outputs);
    if (!SHAPE_ONLY.has(kernelName) || engine.state.gradientDepth !== 1) return tensors;
    return tensors.map((t) => Object.freeze({ shape: t.shape.slice(), rank: t.rank, dtype: t.dtype, size: t.size }));
  };
  own.saveTensorsForBackwardMode = function (tensors) {
    return tensors.length > 0 && tensors.every((t) => !(t instanceof tf.Tensor))
      ? tensors
      : proto.saveTensorsForBackwardMode.call(this, tensors);
  };
}

/** Frees what is left on the tape (what the walk did not reach, or everything after a throw) and closes it. */
function dropTape(engine: TapeEngine): void {
  if (engine.state.gradientDepth !== 0) return;
  for (const node of engine.state.activeTape ?? []) disposeSaved(node);
  engine.state.activeTape = null;
}

/** Disposes the tensors a node saved (its shape-only stand-ins hold nothing), but those in `keep`. */
function disposeSaved(node: TapeNode, keep?: ReadonlyMap<tf.Tensor, number>): void {
  for (const t of node.saved ?? []) if (t instanceof tf.Tensor && !keep?.has(t)) t.dispose();
}
