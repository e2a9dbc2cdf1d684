// Unit tests of the extension's pure modules (no VS Code needed).
import assert from "node:assert/strict";
import { test } from "node:test";
import { formatError, formatExport, formatPrediction } from "../src/format";
import { LENS_COMMANDS, lensParams, routeLensCommand } from "../src/lenses";
import { exportParams, isOutputExists, targetItems } from "../src/picker";
import { DEFAULT_COMMAND, serverCommand } from "../src/server";

test("lens commands are routed through the extension, others left alone", () => {
  const args = [{ modelId: "m-1", to: ["onnx"], out: "/x/agent", force: false }];
  assert.deepEqual(routeLensCommand({ title: "Export...", command: "sbexport.export", arguments: args }),
                   { title: "Export...", command: "sbexportd.export", arguments: args });
  assert.equal(routeLensCommand({ title: "Inspect", command: "sbexport.inspect" }).command, "sbexportd.inspect");
  assert.equal(routeLensCommand({ title: "Predict sample", command: "sbexport.predict" }).command,
               "sbexportd.predictSample");
  assert.equal(routeLensCommand({ title: "x", command: "other.command" }).command, "other.command");
  assert.deepEqual(Object.keys(LENS_COMMANDS).sort(), ["sbexport.export", "sbexport.inspect", "sbexport.predict"]);
});

test("lensParams takes [params] and copies it", () => {
  const p = { modelId: "m-1" };
  const got = lensParams([p]);
  assert.deepEqual(got, p);
  assert.notEqual(got, p);
  assert.throws(() => lensParams([]), TypeError);
  assert.throws(() => lensParams(["m-1"]), TypeError);
  assert.throws(() => lensParams(undefined), TypeError);
});

test("the picker offers the daemon's targets with the defaults picked", () => {
  const items = targetItems(["pytorch", "onnx", "portable"], ["onnx", "portable", "nope"], { onnx: "ONNX" });
  assert.deepEqual(items, [{ label: "pytorch", description: undefined, picked: false },
                           { label: "onnx", description: "ONNX", picked: true },
                           { label: "portable", description: undefined, picked: true }]);
});

test("export params from the lens and the choices", () => {
  const lens = { modelId: "m-1", to: ["onnx"], out: "/w/exported/agent", force: false };
  assert.deepEqual(exportParams(lens, ["tfjs", "onnx"]),
                   { modelId: "m-1", to: ["tfjs", "onnx"], out: "/w/exported/agent", force: false });
  assert.deepEqual(exportParams(lens, ["onnx"], "  /tmp/o  ", true),
                   { modelId: "m-1", to: ["onnx"], out: "/tmp/o", force: true });
  assert.equal(exportParams({ ...lens, force: true }, ["onnx"]).force, true);
  assert.throws(() => exportParams(lens, []), RangeError);
  assert.throws(() => exportParams(lens, ["onnx"], " "), RangeError);
  assert.throws(() => exportParams({ out: "/x" }, ["onnx"]), TypeError);
});

test("output_exists is recognized by its kind only", () => {
  assert.equal(isOutputExists({ code: -33012, message: "x", data: { kind: "output_exists" } }), true);
  assert.equal(isOutputExists({ code: -33010, data: { kind: "export_failed" } }), false);
  assert.equal(isOutputExists(new Error("output_exists")), false);
  assert.equal(isOutputExists(null), false);
});

test("answers are formatted for a message", () => {
  assert.equal(formatPrediction({ backend: "numpy", outputs: { values: -0.68134, actions: 0, probs: [0.25, 0.75] } }),
               "Predicted on the sample observation (numpy): actions 0 · probs [0.2500, 0.7500] · values -0.6813");
  assert.match(formatPrediction({ outputs: { actions: { dtype: "int64", shape: [3], data: "AAAA" } } }),
               /actions int64 array of shape \[3\]/);
  assert.equal(formatExport({ out: "/w/agent", results: [{ target: "onnx" }, { target: "portable" }] }),
               "Exported to /w/agent: onnx, portable");
  assert.equal(formatError({ message: "exists", data: { hint: "pass force=true" } }), "exists (pass force=true)");
  assert.equal(formatError(new Error("boom")), "boom");
});

test("the server command setting", () => {
  assert.deepEqual(serverCommand(undefined), { command: "sbexportd", args: ["serve", "--stdio"] });
  assert.deepEqual(serverCommand([]), { command: DEFAULT_COMMAND[0], args: DEFAULT_COMMAND.slice(1) });
  assert.deepEqual(serverCommand(["/v/bin/python", "-m", "sbexportd.cli", "serve", "--stdio"]),
                   { command: "/v/bin/python", args: ["-m", "sbexportd.cli", "serve", "--stdio"] });
  assert.throws(() => serverCommand(["python", 3]), TypeError);
  assert.throws(() => serverCommand(["", "serve"]), TypeError);
});
