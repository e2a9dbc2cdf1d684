// Run one exported policy in Node, as its JavaScript consumers would:
//   kind "tfjs": a TensorFlow.js graph model (model.json + shards) with @tensorflow/tfjs
//                on its pure-JS "cpu" backend (tfjs-node does not install here);
//   kind "onnx": an ONNX file with onnxruntime-node.
//
// usage: node node_runner.mjs request.json
// request: {"kind": "tfjs" | "onnx", "model": path, "modules": folder holding node_modules,
//           "out": reply path, "feeds": {name: {"dtype", "shape", "data": base64 little-endian}}}
// reply (written to "out"): {"runtime": "...", "outputs": {name: {"dtype", "shape", "data"}}}
// Exit status 1 with a message on stderr on any error.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const TYPED = {
  float32: Float32Array, float64: Float64Array, int32: Int32Array, uint8: Uint8Array,
  int8: Int8Array, int16: Int16Array, uint16: Uint16Array, int64: BigInt64Array, bool: Uint8Array,
};

function decode(feed) {
  const Typed = TYPED[feed.dtype];
  if (!Typed) throw new Error(`unsupported feed dtype ${feed.dtype}`);
  const buf = Buffer.from(feed.data, "base64");
  const copy = new Uint8Array(buf.byteLength);
  copy.set(buf);
  return new Typed(copy.buffer, 0, buf.byteLength / Typed.BYTES_PER_ELEMENT);
}

function encode(dtype, shape, values) {
  const Typed = TYPED[dtype];
  const arr = values instanceof Typed ? values : Typed.from(values);
  return { dtype, shape, data: Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength).toString("base64") };
}

async function runTfjs(req, require) {
  // tfjs announces on console.log that tfjs-node would be faster: keep stdout clean.
  const log = console.log;
  console.log = (...args) => console.error(...args);
  const tf = require("@tensorflow/tfjs");
  console.log = log;
  await tf.setBackend("cpu");
  await tf.ready();
  const folder = dirname(req.model);
  const modelJSON = JSON.parse(readFileSync(req.model, "utf8"));
  const artifacts = await tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
    const specs = [];
    const buffers = [];
    for (const group of manifest) {
      for (const path of group.paths) {
        const b = readFileSync(join(folder, path));
        buffers.push(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
      }
      specs.push(...group.weights);
    }
    return [specs, tf.io.concatenateArrayBuffers(buffers)];
  });
  const model = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
  const sigInputs = (modelJSON.signature && modelJSON.signature.inputs) || {};
  const feeds = {};
  for (const [name, feed] of Object.entries(req.feeds)) {
    const declared = sigInputs[name] && sigInputs[name].dtype;
    const dtype = declared === "DT_FLOAT" || declared === "DT_DOUBLE" ? "float32" : declared ? "int32"
      : (feed.dtype.startsWith("float") ? "float32" : "int32");
    const values = decode(feed);
    feeds[name] = tf.tensor(dtype === "float32" ? Float32Array.from(values) : Int32Array.from(values,
      (v) => Number(v)), feed.shape, dtype);
  }
  // Fetch the signature's outputs by tensor name, keyed by their signature keys.
  const sigOutputs = (modelJSON.signature && modelJSON.signature.outputs) || {};
  const keys = Object.keys(sigOutputs);
  if (keys.length === 0) throw new Error("model.json has no signature outputs");
  let tensors = await model.executeAsync(feeds, keys.map((k) => sigOutputs[k].name));
  if (!Array.isArray(tensors)) tensors = [tensors];
  const result = Object.fromEntries(keys.map((k, i) => [k, tensors[i]]));
  const outputs = {};
  for (const [name, t] of Object.entries(result)) {
    const dtype = t.dtype === "float32" ? "float32" : t.dtype === "int32" ? "int32" : "float32";
    outputs[name] = encode(dtype, t.shape, await t.data());
  }
  return { runtime: `@tensorflow/tfjs ${tf.version.tfjs} (cpu backend, Node ${process.version})`, outputs };
}

async function runOnnx(req, require) {
  const ort = require("onnxruntime-node");
  const session = await ort.InferenceSession.create(req.model);
  const feeds = {};
  for (const [name, feed] of Object.entries(req.feeds)) {
    feeds[name] = new ort.Tensor(feed.dtype, decode(feed), feed.shape);
  }
  const result = await session.run(feeds);
  const outputs = {};
  for (const [name, t] of Object.entries(result)) {
    outputs[name] = encode(t.type, t.dims.map(Number), t.data);
  }
  const version = require("onnxruntime-node/package.json").version;
  return { runtime: `onnxruntime-node ${version} (Node ${process.version})`, outputs };
}

async function main() {
  const req = JSON.parse(readFileSync(process.argv[2], "utf8"));
  const require = createRequire(join(req.modules, "package.json"));
  const reply = req.kind === "tfjs" ? await runTfjs(req, require)
    : req.kind === "onnx" ? await runOnnx(req, require)
    : (() => { throw new Error(`unknown kind ${req.kind}`); })();
  writeFileSync(req.out, JSON.stringify(reply));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  console.error(`node_runner: ${err && err.message ? err.message : err}`);
  process.exit(1);
});
