// The portable evaluator on its own: every op of spec.OPS and every activation on the
// synthetic specs of tests/synthetic.py (against the NumPy reference, computed now by
// test/synthetic_reference.py), op edge cases, and files it must refuse.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { decode, encode } from "@msgpack/msgpack";

import { decodeWire } from "../src/arrays.js";
import { readPortable } from "../src/index.js";
import { ACTIVATIONS, OPS, tf1Tanh } from "../src/portable.js";
import { CLIENT_DIR, PYTHON, ROOT, compare, tempDir } from "./helpers.mjs";

let tmp, index;
before(() => {
  tmp = tempDir("sbx-node-synthetic-");
  execFileSync(PYTHON, [join(CLIENT_DIR, "test/synthetic_reference.py"), tmp.dir],
    { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: "3" } });
  index = JSON.parse(readFileSync(join(tmp.dir, "index.json"), "utf8"));
});
after(() => tmp?.remove());

function toEval(wire) {
  const a = decodeWire(wire);
  return { dtype: a.dtype, shape: a.shape, data: a.data };
}

describe("synthetic specs (every op, every activation) against the NumPy reference", () => {
  test("the synthetic cases cover every op of spec.OPS and every activation; the evaluator has exactly those", () => {
    const ops = new Set(index.cases.flatMap((c) => c.ops));
    assert.deepEqual([...ops].sort(), [...index.all_ops].sort());
    assert.deepEqual(Object.keys(OPS).sort(), [...index.all_ops].sort());
    const acts = new Set(index.cases.flatMap((c) => c.activations));
    assert.deepEqual([...acts].sort(), [...index.all_activations].sort());
    assert.deepEqual(Object.keys(ACTIVATIONS).sort(), [...index.all_activations].sort());
  });

  test("every synthetic case reproduces the reference within the parity rule", () => {
    const failures = [];
    for (const { case: name } of index.cases) {
      const policy = readPortable(join(tmp.dir, name, "policy.sbx.msgpack"));
      const ref = decode(readFileSync(join(tmp.dir, name, "reference.msgpack")));
      const discrete = ["Discrete", "MultiDiscrete", "MultiBinary"].includes(ref.action_space.type);
      for (const run of ref.runs) {
        const obs = run.inputs.obs.dtype ? toEval(run.inputs.obs)
          : Object.fromEntries(Object.entries(run.inputs.obs).map(([k, v]) => [k, toEval(v)]));
        const state = run.inputs.state && toEval(run.inputs.state);
        const mask = run.inputs.mask && toEval(run.inputs.mask);
        const got = policy.run(obs, state, mask);
        for (const [k, wire] of Object.entries(run.outputs)) {
          const r = decodeWire(wire);
          const c = compare(k, got[k], r, discrete && k === "action");
          if (!c.ok) failures.push(`${name} batch ${r.shape[0]}: ${c.why}`);
          if (k === "action" && r.dtype === "int64") assert.equal(got[k].dtype, "int64");
        }
      }
    }
    assert.deepEqual(failures, []);
  });
});

describe("ops", () => {
  const node = (op, attrs = {}, params = {}) => ({ op, inputs: [], outputs: [], attrs, params });
  const f32 = (shape, values) => ({ dtype: "float32", shape, data: Float32Array.from(values) });

  test("round is half to even, keeping the dtype", () => {
    const [y] = OPS.round(node("round"), [f32([1, 8], [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999997, 3.5])]);
    assert.deepEqual(Array.from(y.data), [-2, -2, -0, 0, 2, 2, 0, 4]);
    assert.equal(y.dtype, "float32");
  });

  test("argmax: first index on ties, int64", () => {
    const [y] = OPS.argmax(node("argmax"), [f32([2, 3], [1, 3, 3, -1, -1, -2])]);
    assert.deepEqual(Array.from(y.data), [1, 0]);
    assert.equal(y.dtype, "int64");
  });

  test("one_hot: out-of-range indices give a row of zeros; floats truncate toward zero", () => {
    const [y] = OPS.one_hot(node("one_hot", { n: 3 }), [{ dtype: "float64", shape: [4], data: Float64Array.from([2, 3, -1, 1.9]) }]);
    assert.deepEqual(Array.from(y.data), [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
  });

  test("cast_float via uint8 truncates and wraps like NumPy astype", () => {
    const [y] = OPS.cast_float(node("cast_float", { via: "uint8" }), [{ dtype: "float64", shape: [4], data: Float64Array.from([1.9, 255, 256, -1]) }]);
    assert.deepEqual(Array.from(y.data), [1, 255, 0, 255]);
  });

  test("conv2d: NHWC input, HWIO kernel, VALID padding, stride", () => {
    // 1 image 3x3x1, kernel 2x2x1x1 of ones, stride 1 -> 2x2 sums of windows, + bias 0.5
    const x = f32([1, 3, 3, 1], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const t = { w: f32([2, 2, 1, 1], [1, 1, 1, 1]), b: f32([1], [0.5]) };
    const [y] = OPS.conv2d(node("conv2d", { stride: 1 }, { w: "w", b: "b" }), [x], t);
    assert.deepEqual(y.shape, [1, 2, 2, 1]);
    assert.deepEqual(Array.from(y.data), [12.5, 16.5, 24.5, 28.5]);
    const [z] = OPS.conv2d(node("conv2d", { stride: 2 }, { w: "w", b: "b" }), [x], t);
    assert.deepEqual(z.shape, [1, 1, 1, 1]);
  });

  test("lstm: the mask resets the state before the step", () => {
    const n = 2;
    const zeros = (k) => f32([k], new Array(k).fill(0));
    const t = { wx: f32([1, 4 * n], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]), wh: f32([n, 4 * n], new Array(8 * n).fill(0.05)), b: zeros(4 * n) };
    const lstm = node("lstm", { n_hidden: n, layer_norm: false }, { wx: "wx", wh: "wh", b: "b" });
    const x = f32([1, 1], [1]);
    const fresh = OPS.lstm(lstm, [x, f32([1, 2 * n], [0, 0, 0, 0]), f32([1], [0])], t);
    const reset = OPS.lstm(lstm, [x, f32([1, 2 * n], [5, -5, 3, 3]), f32([1], [1])], t);
    assert.deepEqual(Array.from(reset[1].data), Array.from(fresh[1].data));
    const carried = OPS.lstm(lstm, [x, f32([1, 2 * n], [5, -5, 3, 3]), f32([1], [0])], t);
    assert.notDeepEqual(Array.from(carried[1].data), Array.from(fresh[1].data));
    assert.deepEqual(Array.from(fresh[1].data.subarray(n)), Array.from(fresh[0].data)); // state = [c, h]
  });

  test("TF1's tanh approximation: odd, saturates at the clamp, within a few ulps of tanh", () => {
    for (const x of [0.1, 0.5, 1, 2, 3, 5, 8.5]) {
      assert.equal(tf1Tanh(-x), -tf1Tanh(x));
      assert.ok(Math.abs(tf1Tanh(x) - Math.tanh(x)) < 1e-6, `${x}`);
    }
    assert.equal(tf1Tanh(20), tf1Tanh(9));
    assert.equal(tf1Tanh(0), 0);
  });
});

describe("files the evaluator refuses", () => {
  const good = () => decode(readFileSync(join(tmp.dir, "mlp_tanh_discrete", "policy.sbx.msgpack")));

  function refuses(mutate, pattern) {
    const doc = good();
    mutate(doc);
    assert.throws(() => readPortable(encode(doc)), pattern);
  }

  test("the good file loads", () => {
    assert.ok(index.cases.some((c) => c.case === "mlp_tanh_discrete"));
    readPortable(encode(good()));
  });
  test("another format or version", () => {
    refuses((d) => { d.format = "something-else"; }, /not an sbexportd-portable v1 file/);
    refuses((d) => { d.format_version = 2; }, /not an sbexportd-portable v1 file/);
  });
  test("an unknown op", () => refuses((d) => { d.nodes[1].op = "gelu"; }, /unknown op/));
  test("a tensor whose bytes do not match its shape", () => refuses((d) => {
    const t = Object.values(d.tensors)[0];
    t.data = t.data.subarray(0, t.data.length - 4);
  }, /bytes for/));
  test("an unsupported dtype", () => refuses((d) => { Object.values(d.tensors)[0].dtype = "complex64"; }, /unsupported dtype/));
  test("a node reading a tensor before it is written", () => refuses((d) => { d.nodes[0].inputs = ["nowhere"]; }, /before it is written/));
  test("a missing parameter", () => refuses((d) => { delete d.tensors[Object.keys(d.tensors)[0]]; }, /missing/));
  test("an output that is never written", () => refuses((d) => { d.outputs.action = "ghost"; }, /never written/));
});
