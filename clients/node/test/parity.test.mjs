// Exports made by the daemon (tfjs, onnx, portable), run in this process by loadExport,
// against the daemon's own predict (the NumPy reference, itself checked against SB2 in
// the Python suite). The parity rule: discrete actions equal; continuous actions max
// abs error <= 1e-5; every other output |err| <= 1e-5 * max(1, |ref|).
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { connect, loadExport } from "../src/index.js";
import { FIXTURES, REFERENCE, checkExport as check, compare, daemon, exportName, fixture, tempDir } from "./helpers.mjs";

// fixture -> what it covers; every one through tfjs, onnx and portable
const FAMILIES = {
  ppo2_mlp_vec_discrete: "MLP, Discrete",
  ppo2_mlp_vec_box: "MLP, Box",
  ppo2_mlp_vec_multidiscrete: "MultiDiscrete",
  ppo2_mlp_vec_multibinary: "MultiBinary",
  a2c_cnn_img_discrete: "CNN, uint8 image",
  sac_lncnn_img_box: "SAC, layer-norm CNN",
  ppo2_mlplstm_vec_box: "LSTM, state round trip",
  ppo2_mlplnlstm_vec_multidiscrete: "LN-LSTM, MultiDiscrete",
  a2c_cnnlnlstm_img_discrete: "CNN + LN-LSTM",
  dqn_mlp_vec_discrete: "DQN, dueling",
  dqn_lnmlp_vec_discrete: "DQN, layer norm",
  sac_mlp_vec_box: "SAC",
  td3_mlp_vec_box: "TD3",
  ddpg_mlp_normobs: "DDPG, observation normalization",
  ppo2_mlp_vecnormalize: "VecNormalize (vecnormalize.pkl)",
  a2c_mlp_elu: "elu activation",
  ppo2_mlp_dobs_box: "Discrete observations",
  ppo2_mlp_mdobs_discrete: "MultiDiscrete observations",
  a2c_mlp_mbobs_multidiscrete: "MultiBinary observations",
};
const KINDS = ["tfjs", "onnx", "portable"];
const report = []; // rows printed at the end

let d, client, tmp;
before(async () => {
  d = await daemon();
  client = await connect({ port: d.port });
  tmp = tempDir("sbx-node-parity-");
});
after(async () => {
  await client?.close();
  await d?.stop();
  tmp?.remove();
  if (report.length) {
    const fmt = (v) => v.toExponential(1);
    console.log("\nparity with the daemon's predict: worst |err| / max(1, |ref|) of the float outputs; discrete actions all equal");
    for (const name of Object.keys(FAMILIES)) {
      const rows = report.filter((r) => r.case === name && r.sweep === "families");
      if (rows.length) console.log(`  ${name.padEnd(34)} ${rows.map((r) => `${r.kind} ${fmt(r.scaled)}`).join("  ")}`);
    }
    const rows = report.filter((r) => r.sweep === "fixtures");
    if (rows.length) {
      const worst = rows.reduce((a, b) => (b.scaled > a.scaled ? b : a));
      console.log(`  portable on ${rows.length} fixtures: worst ${fmt(worst.scaled)} (${worst.case})`);
    }
    const mismatches = report.reduce((a, r) => a + r.mismatches, 0);
    assert.equal(mismatches, 0);
  }
});

async function checkExport(ex, model, name, sweep) {
  report.push({ ...(await check(ex, model, name)), sweep });
}

function openOptions(name) {
  const vn = join(FIXTURES, name, "vecnormalize.pkl");
  return name === "ppo2_mlp_vecnormalize" && existsSync(vn) ? { vecnormalize: vn } : {};
}

describe("tfjs, onnx and portable exports agree with the daemon", () => {
  for (const [name, what] of Object.entries(FAMILIES)) {
    test(`${name} (${what})`, async () => {
      const model = await client.open(fixture(name), openOptions(name));
      const out = join(tmp.dir, name);
      const result = await model.export({ to: KINDS, out });
      assert.deepEqual(result.results.map((r) => r.target), KINDS);
      for (const r of result.results) assert.equal(r.parity.passed, true);
      for (const kind of KINDS) {
        const ex = await loadExport(out, { target: kind });
        try {
          assert.equal(ex.target, kind);
          assert.deepEqual(ex.manifest, JSON.parse(readFileSync(join(out, kind, "manifest.json"), "utf8")));
          await checkExport(ex, model, name, "families");
        } finally {
          ex.dispose();
        }
      }
    });
  }
});

describe("the portable evaluator agrees with the daemon on every fixture", () => {
  const index = JSON.parse(readFileSync(join(FIXTURES, "index.json"), "utf8"));
  const cases = index.cases.map((c) => c.case).filter((c) => existsSync(fixture(c)));
  test(`${cases.length} fixtures (every algorithm, policy, space and op)`, async () => {
    assert.ok(cases.length >= 70, `${cases.length} fixtures`);
    const failures = [];
    for (const name of cases) {
      try {
        const model = await client.open(fixture(name), openOptions(name));
        const out = join(tmp.dir, "all", name);
        await model.export({ to: "portable", out });
        const ex = await loadExport(join(out, "portable"));
        await checkExport(ex, model, name, "fixtures");
      } catch (err) {
        failures.push(`${name}: ${err.message}`);
      }
    }
    assert.deepEqual(failures, []);
  });
});

describe("HER: the goal dict", () => {
  test("loadExport's predict takes the goal dict, flattened in the manifest's key order, as the daemon does", async () => {
    const model = await client.open(fixture("her_sac_bitflip"));
    const out = join(tmp.dir, "her");
    await model.export({ to: "portable", out });
    const ex = await loadExport(out, { target: "portable" });
    assert.deepEqual(ex.goalKeys, ["observation", "achieved_goal", "desired_goal"]);
    assert.deepEqual(ex.manifest.goal_observation.keys, ex.goalKeys);
    const bits = (seed) => Int32Array.from({ length: 3 * 4 }, (_, i) => ((i * 7 + seed) % 3 === 0 ? 1 : 0));
    const goal = Object.fromEntries(ex.goalKeys.map((k, i) => [k, { shape: [3, 4], data: bits(i) }]));
    const ref = await model.predict(goal, { backend: REFERENCE });
    const got = await ex.predict(goal);
    const flat = sampleFlat(goal, ex.goalKeys);
    assert.deepEqual(got, await ex.predict(flat));
    for (const [k, v] of Object.entries(ref)) {
      const c = compare(exportName(k), got[exportName(k)], v, false);
      assert.ok(c.ok, c.why);
    }
  });
});

function sampleFlat(goal, keys) {
  const rows = 3, data = new Int32Array(rows * 12);
  for (let r = 0; r < rows; r++) keys.forEach((k, i) => data.set(goal[k].data.subarray(r * 4, r * 4 + 4), r * 12 + i * 4));
  return { shape: [rows, 12], data };
}

// The zoo agents (../shared/zoo and zoo-more) run through the portable evaluator against
// SB2's own goldens in zoo.test.mjs.
