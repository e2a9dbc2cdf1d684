// examples/example.mjs and bench/bench.mjs run as a user runs them.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

import { CLIENT_DIR, PYTHON, daemon } from "./helpers.mjs";

function run(script, args) {
  return spawnSync(process.execPath, [join(CLIENT_DIR, script), ...args],
    { cwd: CLIENT_DIR, encoding: "utf8", env: { ...process.env, SBEXPORTD_PYTHON: PYTHON }, timeout: 300000 });
}

test("examples/example.mjs: spawns the daemon, predicts, exports, loads the exports, runs a CartPole episode", () => {
  const r = run("examples/example.mjs", []);
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /connected to sbexportd .*spawned, stdio/);
  for (const target of ["tfjs", "onnx", "portable"]) assert.match(r.stdout, new RegExp(`exported ${target} -> `));
  assert.match(r.stdout, /\[begin\] exporting/);
  assert.match(r.stdout, /\[end\] done/);
  assert.match(r.stdout, /CartPole-v1 episode with the portable export: return 500 /);
});

test("examples/example.mjs against a running daemon (--port), on a recurrent agent", async () => {
  const d = await daemon();
  try {
    const agent = join(CLIENT_DIR, "../../tests/fixtures/ppo2_mlplstm_vec_box/model.zip");
    const r = run("examples/example.mjs", [agent, "--port", String(d.port)]);
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /tcp port/);
    assert.match(r.stdout, /step 4: action/);
  } finally {
    await d.stop();
  }
});

test("bench/bench.mjs prints its table (a short run)", () => {
  const r = run("bench/bench.mjs", ["--calls", "40", "--warmup", "5", "--json"]);
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  const res = JSON.parse(r.stdout);
  assert.equal(res.batch, 1);
  const names = res.rows.map((row) => row.name).join(" | ");
  for (const what of ["JSON", "msgpack", "portable", "onnxruntime-node", "tfjs cpu", "tfjs wasm"]) {
    assert.ok(names.includes(what), `${what} in ${names}`);
  }
  for (const row of res.rows) assert.ok(row.p50 > 0 && row.p99 >= row.p50, JSON.stringify(row));
});
