// loadExport: run an sbexportd export in this process, with the daemon's semantics.
//   tfjs      model.json + shards with @tensorflow/tfjs (cpu backend, or wasm)
//   onnx      policy.onnx with onnxruntime-node
//   portable  policy.sbx.msgpack with the JavaScript evaluator in portable.js
// Inputs and outputs follow manifest.json (the export convention): obs (state, mask);
// action, probs / probs_<i>, mean, std, values, q_values, state. Whatever the runtime,
// results are keyed by the convention's names (ONNX's `state_out` is `state`) and the
// action has the convention's dtype: int64 (BigInt64Array) for Discrete and
// MultiDiscrete spaces (TensorFlow.js computes int32; widened), float32 otherwise.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";

import { TYPED, astype, isNDArray, toNDArray } from "./arrays.js";
import { readPortable } from "./portable.js";

const require = createRequire(import.meta.url);
const INT_DTYPES = new Set(["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"]);

export class LoadedExport {
  constructor({ dir, manifest, runtime, runner, dispose }) {
    this.dir = dir;
    this.manifest = manifest;
    this.target = manifest.target;
    this.runtime = runtime;
    this._runner = runner;
    this._dispose = dispose ?? (() => {});
    this.inputs = manifest.inputs;
    this.outputNames = manifest.outputs.map((o) => conventionName(o.name));
    const inObs = manifest.inputs.find((i) => i.name === "obs");
    this.obsShape = inObs.shape.slice(1);
    this.obsDtype = inObs.dtype;
    const st = manifest.inputs.find((i) => i.name === "state");
    this.stateSize = st ? st.shape[1] : 0;
    this.recurrent = Boolean(st);
    const space = manifest.action_space?.type;
    this.actionDtype = space === "Discrete" || space === "MultiDiscrete" ? "int64" : "float32";
    this.goalKeys = manifest.goal_observation?.keys ?? null;
  }

  /**
   * Run the policy. obs: one observation or a batch (NDArray, typed array or nested
   * arrays); recurrent policies take state (N, 2*n_lstm) and mask (N,), zeros when
   * left out. A single observation gives unbatched outputs (as the daemon).
   */
  async predict(obs, { state, mask } = {}) {
    let x = this.goalKeys && isGoalDict(obs) ? concatGoal(obs, this.goalKeys) : toNDArray(obs);
    const single = sameShape(x.shape, this.obsShape);
    if (single) x = { ...x, shape: [1, ...x.shape] };
    else if (!sameShape(x.shape.slice(1), this.obsShape)) {
      throw new RangeError(`observation shape [${x.shape}] fits neither [${this.obsShape}] nor [N, ${this.obsShape}]`);
    }
    const n = x.shape[0];
    const feeds = { obs: x };
    if (this.recurrent) {
      const s = state == null ? { dtype: "float32", shape: [n, this.stateSize], data: new Float32Array(n * this.stateSize) }
        : astype(toNDArray(state, "float32"), "float32");
      const m = mask == null ? { dtype: "float32", shape: [n], data: new Float32Array(n) }
        : astype(toNDArray(mask, "float32"), "float32");
      if (s.data.length !== n * this.stateSize || m.data.length !== n) {
        throw new RangeError(`recurrent policy: state must be [${n}, ${this.stateSize}] and mask [${n}]`);
      }
      feeds.state = { ...s, shape: [n, this.stateSize] };
      feeds.mask = { ...m, shape: [n] };
    }
    const raw = await this._runner(feeds);
    const out = {};
    for (const name of this.outputNames) {
      let arr = raw[name];
      if (!arr) throw new Error(`${this.target}: the runtime gave no output ${name}`);
      if (name === "action") arr = astype(arr, this.actionDtype);
      else if (arr.dtype !== "float32") arr = astype(arr, "float32");
      if (single) arr = { ...arr, shape: arr.shape.slice(1) };
      out[name] = arr;
    }
    return out;
  }

  /** Same as predict (feeds as an object). */
  run(feeds) {
    return this.predict(feeds.obs, feeds);
  }

  dispose() {
    this._dispose();
  }
}

function isGoalDict(obs) {
  return obs !== null && typeof obs === "object" && !Array.isArray(obs) && !ArrayBuffer.isView(obs) && !isNDArray(obs);
}

/** HER: the goal dict's arrays concatenated along the last axis in the manifest's key order. */
function concatGoal(obs, keys) {
  const parts = keys.map((k) => {
    if (!(k in obs)) throw new RangeError(`the goal observation has no ${k} (keys: ${keys.join(", ")})`);
    return toNDArray(obs[k]);
  });
  const lead = parts[0].shape.slice(0, -1);
  const widths = parts.map((p) => p.shape.at(-1) ?? 1);
  if (!parts.every((p) => sameShape(p.shape.slice(0, -1), lead))) {
    throw new RangeError(`the goal observation's arrays differ in their leading dimensions`);
  }
  const rows = lead.reduce((a, b) => a * b, 1);
  const total = widths.reduce((a, b) => a + b, 0);
  const data = new Float64Array(rows * total);
  for (let r = 0; r < rows; r++) {
    let off = 0;
    parts.forEach((p, i) => {
      for (let j = 0; j < widths[i]; j++) data[r * total + off + j] = Number(p.data[r * widths[i] + j]);
      off += widths[i];
    });
  }
  return { dtype: "float64", shape: [...lead, total], data };
}

function sameShape(a, b) {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function conventionName(name) {
  return name === "state_out" ? "state" : name;
}

/**
 * Load an export folder (one holding manifest.json: out/<target>/), or
 * loadExport(out, {target}) for out/<target>/. options.backend: "cpu" (default) or
 * "wasm" for tfjs (TensorFlow.js's backend is global to the process).
 * options.manifest: the manifest as an object, for a folder that has none yet (sbexportd
 * checks each tfjs and onnx export with this loader before it writes the manifest).
 */
export async function loadExport(dir, options = {}) {
  let folder = resolve(dir);
  let manifest = options.manifest;
  let manifestPath = "the given manifest";
  if (!manifest) {
    if (options.target && !existsSync(join(folder, "manifest.json"))) folder = join(folder, options.target);
    manifestPath = join(folder, "manifest.json");
    if (!existsSync(manifestPath)) throw new Error(`${folder}: no manifest.json (not an sbexportd export folder)`);
    manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
  }
  if (manifest.format !== "sbexportd-export") throw new Error(`${manifestPath}: not an sbexportd export manifest`);
  if (options.target && manifest.target !== options.target) {
    throw new Error(`${folder} holds a ${manifest.target} export, not ${options.target}`);
  }
  switch (manifest.target) {
    case "portable": return loadPortable(folder, manifest);
    case "tfjs": return loadTfjs(folder, manifest, options);
    case "onnx": return loadOnnx(folder, manifest, options);
    default: throw new Error(`loadExport runs tfjs, onnx and portable exports, not ${manifest.target}`);
  }
}

// -- portable -------------------------------------------------------------------------------
function loadPortable(folder, manifest) {
  const policy = readPortable(join(folder, "policy.sbx.msgpack"));
  const runner = async (feeds) => {
    const out = policy.run(feeds.obs, feeds.state, feeds.mask);
    const result = {};
    for (const [name, t] of Object.entries(out)) result[name] = publicTensor(t);
    return result;
  };
  return new LoadedExport({ dir: folder, manifest, runner,
    runtime: `sbexportd-client portable evaluator (JavaScript, Node ${process.version})` });
}

/** An evaluator tensor -> an NDArray of its dtype. */
function publicTensor(t) {
  if (t.dtype === "float32") return { dtype: "float32", shape: [...t.shape], data: Float32Array.from(t.data) };
  return astype({ dtype: "float64", shape: t.shape, data: t.data }, t.dtype in TYPED ? t.dtype : "float64");
}

// -- tfjs -------------------------------------------------------------------------------------
let tfPromise = null;
let tfBackend = null;

async function importTf(backend) {
  if (!tfPromise) {
    tfPromise = (async () => {
      // tfjs announces on console.log that tfjs-node would be faster: keep stdout clean.
      const log = console.log;
      console.log = () => {};
      try {
        return require("@tensorflow/tfjs");
      } finally {
        console.log = log;
      }
    })();
  }
  const tf = await tfPromise;
  if (tfBackend !== backend) {
    if (backend === "wasm") {
      const wasm = require("@tensorflow/tfjs-backend-wasm");
      const dist = dirname(require.resolve("@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm"));
      wasm.setWasmPaths(dist + "/");
    }
    if (!(await tf.setBackend(backend))) throw new Error(`TensorFlow.js backend ${backend} is unavailable`);
    await tf.ready();
    // the cpu backend warns on its first tensor that tfjs-node would be faster (it does
    // not install here): not the caller's console's business
    const impl = tf.backend();
    if (backend === "cpu" && impl && "firstUse" in impl) impl.firstUse = false;
    tfBackend = backend;
  }
  return tf;
}

async function loadTfjs(folder, manifest, options) {
  const backend = options.backend ?? "cpu";
  const tf = await importTf(backend);
  const modelJSON = JSON.parse(readFileSync(join(folder, "model.json"), "utf8"));
  const artifacts = await tf.io.getModelArtifactsForJSON(modelJSON, async (weightsManifest) => {
    const specs = [];
    const buffers = [];
    for (const group of weightsManifest) {
      for (const path of group.paths) {
        const b = readFileSync(join(folder, path));
        buffers.push(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
      }
      specs.push(...group.weights);
    }
    return [specs, tf.io.concatenateArrayBuffers(buffers)];
  });
  const model = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
  const sigIn = modelJSON.signature?.inputs ?? {};
  const sigOut = modelJSON.signature?.outputs ?? {};
  const keys = Object.keys(sigOut);
  if (keys.length === 0) throw new Error(`${folder}/model.json has no signature outputs`);
  const fetches = keys.map((k) => sigOut[k].name);
  let sync = true; // GraphModel.execute when the graph has no control flow, else executeAsync
  const runner = async (feeds) => {
    if (tfBackend !== backend) await importTf(backend);
    const inputs = {};
    for (const [name, arr] of Object.entries(feeds)) {
      const declared = sigIn[name]?.dtype;
      const isFloat = declared ? declared === "DT_FLOAT" || declared === "DT_DOUBLE" || declared === "DT_HALF"
        : !INT_DTYPES.has(arr.dtype);
      inputs[name] = isFloat ? tf.tensor(toTyped(arr.data, Float32Array), arr.shape, "float32")
        : tf.tensor(toTyped(arr.data, Int32Array), arr.shape, "int32");
    }
    let tensors;
    try {
      if (sync) {
        try {
          tensors = model.execute(inputs, fetches);
        } catch (err) {
          if (!/executeAsync/.test(String(err?.message))) throw err;
          sync = false;
        }
      }
      if (!sync) tensors = await model.executeAsync(inputs, fetches);
    } finally {
      for (const t of Object.values(inputs)) t.dispose();
    }
    if (!Array.isArray(tensors)) tensors = [tensors];
    const out = {};
    try {
      for (let i = 0; i < keys.length; i++) {
        const t = tensors[i];
        const data = t.dataSync();
        out[conventionName(keys[i])] = { dtype: t.dtype === "int32" ? "int32" : "float32", shape: [...t.shape],
          data: t.dtype === "int32" ? Int32Array.from(data) : Float32Array.from(data) };
      }
    } finally {
      for (const t of tensors) t.dispose();
    }
    return out;
  };
  return new LoadedExport({ dir: folder, manifest, runner,
    runtime: `@tensorflow/tfjs ${tf.version.tfjs} (${backend} backend, Node ${process.version})`,
    dispose: () => model.dispose() });
}

function toTyped(data, Typed) {
  if (data instanceof Typed) return data;
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) return Typed.from(data, Number);
  return Typed.from(data);
}

// -- onnx ---------------------------------------------------------------------------------------
async function loadOnnx(folder, manifest, options) {
  const ort = require("onnxruntime-node");
  const sessionOptions = { logSeverityLevel: 3, ...(options.sessionOptions ?? {}) };
  const session = await ort.InferenceSession.create(join(folder, "policy.onnx"), sessionOptions);
  const declared = Object.fromEntries(manifest.inputs.map((i) => [i.name, i.dtype]));
  const runner = async (feeds) => {
    const inputs = {};
    for (const [name, arr] of Object.entries(feeds)) {
      const dtype = declared[name] ?? arr.dtype;
      const ortType = dtype === "bool" ? "bool" : dtype;
      inputs[name] = new ort.Tensor(ortType, astype(arr, dtype).data, arr.shape);
    }
    const result = await session.run(inputs);
    const out = {};
    for (const [name, t] of Object.entries(result)) {
      out[conventionName(name)] = { dtype: t.type, shape: t.dims.map(Number), data: t.data };
    }
    return out;
  };
  const version = require("onnxruntime-node/package.json").version;
  return new LoadedExport({ dir: folder, manifest, runner,
    runtime: `onnxruntime-node ${version} (CPU, Node ${process.version})`,
    dispose: () => session.release?.() });
}
