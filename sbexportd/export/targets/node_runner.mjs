// Run one exported policy in Node with the Node client's own loader (sbexportd-client's
// loadExport), so that the exporter's check runs what the client's users run:
//   kind "tfjs": a TensorFlow.js graph model with @tensorflow/tfjs (cpu backend);
//   kind "onnx": an ONNX file with onnxruntime-node.
//
// usage: node node_runner.mjs request.json
// request: {"kind": "tfjs" | "onnx", "folder": the export's folder, "client": the folder of the
//           sbexportd-client package (clients/node, or node_modules/sbexportd-client),
//           "manifest": the manifest's fields loadExport reads (the folder has no manifest.json
//           yet), "out": reply path, "feeds": {name: {"dtype", "shape", "data": base64 little-endian}}}
// reply (written to "out"): {"runtime": "...", "outputs": {name: {"dtype", "shape", "data"}}},
//   outputs under the convention's names, as LoadedExport.predict gives them.
// Exit status 1 with a message on stderr on any error.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

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
  return { dtype: feed.dtype, shape: feed.shape, data: new Typed(copy.buffer, 0, buf.byteLength / Typed.BYTES_PER_ELEMENT) };
}

function encode({ dtype, shape, data }) {
  const Typed = TYPED[dtype];
  if (!Typed || !(data instanceof Typed)) throw new Error(`output of dtype ${dtype} holds ${data?.constructor?.name}`);
  return { dtype, shape, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64") };
}

/** The client package's entry point, resolved as Node resolves it from inside the package. */
async function importClient(folder) {
  const entry = createRequire(join(folder, "package.json")).resolve("sbexportd-client");
  return import(pathToFileURL(entry).href);
}

async function main() {
  const req = JSON.parse(readFileSync(process.argv[2], "utf8"));
  const { loadExport } = await importClient(req.client);
  const ex = await loadExport(req.folder, { manifest: req.manifest, target: req.kind });
  try {
    const feeds = Object.fromEntries(Object.entries(req.feeds).map(([k, v]) => [k, decode(v)]));
    const got = await ex.predict(feeds.obs, { state: feeds.state, mask: feeds.mask });
    const outputs = Object.fromEntries(Object.entries(got).map(([k, v]) => [k, encode(v)]));
    writeFileSync(req.out, JSON.stringify({ runtime: ex.runtime, outputs }));
  } finally {
    ex.dispose();
  }
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  console.error(`node_runner: ${err && err.message ? err.message : err}`);
  process.exit(1);
});
