// Exports made by the daemon (tfjs, onnx, portable), run in this process by loadExport,
// against the daemon's own predict (the NumPy reference, itself checked against SB2 in
// the Python suite). The parity rule: discrete actions equal; continuous actions max
// abs error <= 1e-5; every other output |err| <= 1e-5 * max(1, |ref|).
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { connect, loadExport } from "../src/index.js";
import {
  FIXTURES, compare, daemon, exportName, fixture, isDiscreteSpace, sampleObs, sampleState, tempDir,
} from "./helpers.mjs";

const N = 16;
const STEPS = 3; // recurrent policies: steps of state round trip

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
    const worst = {};
    for (const r of report) worst[r.kind] = Math.max(worst[r.kind] ?? 0, r.scaled);
    console.log("\nparity against the daemon's predict (max |err| / max(1, |ref|) over all float outputs):");
    for (const r of report) {
      console.log(`  ${r.kind.padEnd(8)} ${r.case.padEnd(36)} ${r.scaled.toExponential(1)}  discrete mismatches ${r.mismatches}`);
    }
    console.log(`  worst: ${Object.entries(worst).map(([k, v]) => `${k} ${v.toExponential(1)}`).join(", ")}`);
  }
});

function openOptions(name) {
  const vn = join(FIXTURES, name, "vecnormalize.pkl");
  return name === "ppo2_mlp_vecnormalize" && existsSync(vn) ? { vecnormalize: vn } : {};
}

/** Run one step through the export and the daemon; check every output with the rule. */
async function checkStep(ex, model, obs, extra, label) {
  const ref = await model.predict(obs, extra);
  const got = await ex.predict(obs, extra);
  const discrete = isDiscreteSpace(model.summary.action_space);
  assert.deepEqual(Object.keys(got).sort(), Object.keys(ref).map(exportName).sort(), `${label}: output names`);
  let scaled = 0, mismatches = 0;
  for (const [name, r] of Object.entries(ref)) {
    const e = exportName(name);
    const c = compare(e, got[e], r, discrete && e === "action");
    assert.ok(c.ok, `${label}: ${c.why}`);
    if (e === "action") {
      if (discrete) {
        mismatches += c.mismatches;
        const dtype = model.summary.action_space.type === "MultiBinary" ? "float32" : "int64";
        assert.equal(got.action.dtype, dtype, `${label}: action dtype`);
        assert.equal(r.dtype, dtype, `${label}: the daemon's action dtype`);
      }
    }
    if (!(discrete && e === "action")) scaled = Math.max(scaled, c.scaled);
  }
  return { ref, got, scaled, mismatches };
}

async function checkExport(ex, model, name) {
  const rec = model.summary.recurrent;
  let scaled = 0, mismatches = 0;
  if (!rec) {
    const obs = sampleObs(model.summary, N, 11);
    ({ scaled, mismatches } = await checkStep(ex, model, obs, {}, `${ex.target} ${name}`));
  } else {
    // the daemon's state fed back to both, step after step; random states and resets too
    const size = rec.state_shape[1];
    let state = sampleState(size, N, 12);
    for (let step = 0; step < STEPS; step++) {
      const obs = sampleObs(model.summary, N, 20 + step);
      const mask = new Float32Array(N).map((_, i) => (step === 0 ? (i % 4 === 0 ? 1 : 0) : step === 2 && i % 5 === 0 ? 1 : 0));
      const r = await checkStep(ex, model, obs, { state, mask }, `${ex.target} ${name} step ${step}`);
      scaled = Math.max(scaled, r.scaled);
      mismatches += r.mismatches;
      state = r.ref.state;
    }
    // and the export's own state chain from zeros stays with the daemon's
    let own = null, refState = null;
    for (let step = 0; step < STEPS; step++) {
      const obs = sampleObs(model.summary, N, 40 + step);
      const got = await ex.predict(obs, { state: own ?? undefined });
      const ref = await model.predict(obs, { state: refState ?? undefined });
      const c = compare("state", got.state, ref.state, false);
      assert.ok(c.ok, `${ex.target} ${name} own chain step ${step}: ${c.why}`);
      own = got.state;
      refState = ref.state;
    }
  }
  // one unbatched observation gives unbatched outputs, like the daemon
  const one = sampleObs(model.summary, 1, 99);
  const single = await ex.predict({ ...one, shape: one.shape.slice(1) });
  const batched = await ex.predict(one);
  for (const [k, v] of Object.entries(single)) {
    assert.deepEqual(v.shape, batched[k].shape.slice(1), `${ex.target} ${name}: unbatched ${k}`);
    assert.deepEqual(Array.from(v.data), Array.from(batched[k].data));
  }
  report.push({ kind: ex.target, case: name, scaled, mismatches });
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
          await checkExport(ex, model, name);
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
        await checkExport(ex, model, name);
      } catch (err) {
        failures.push(`${name}: ${err.message}`);
      }
    }
    assert.deepEqual(failures, []);
  });
});

describe("zoo agents (../shared/zoo) through the portable evaluator", () => {
  const zoo = process.env.SBEXPORTD_ZOO ?? join(FIXTURES, "../../../shared/zoo");
  const agents = join(zoo, "agents");
  const files = existsSync(agents) ? readdirSync(agents).flatMap((algo) => readdirSync(join(agents, algo))
    .filter((f) => /\.(pkl|zip)$/.test(f)).map((f) => join(agents, algo, f))) : [];
  test(`${files.length} zoo agents`, { skip: files.length === 0 ? `no zoo at ${zoo}` : false }, async () => {
    const failures = [];
    for (const file of files) {
      const name = file.slice(agents.length + 1);
      try {
        const model = await client.open(file, { vecnormalize: "auto" });
        const out = join(tmp.dir, "zoo", name.replace(/[/.]/g, "_"));
        await model.export({ to: "portable", out });
        const ex = await loadExport(out, { target: "portable" });
        await checkExport(ex, model, `zoo ${name}`);
      } catch (err) {
        failures.push(`${name}: ${err.message}`);
      }
    }
    assert.deepEqual(failures, []);
  });
});
