#!/usr/bin/env node
// sbexportd from Node, end to end:
//   1. connect to a daemon (spawn `python -m sbexportd.cli serve --stdio`, or --port N for a running one)
//   2. open an SB2 agent and predict with it
//   3. export it to tfjs, onnx and portable (with progress)
//   4. loadExport each export and check it answers as the daemon does
//   5. run the agent: a CartPole-v1 episode simulated here, the policy from the portable export
//
// usage: node examples/example.mjs [agent.zip|agent.pkl] [--python PATH] [--port N] [--out DIR]
// (default agent: the repository's examples/ppo2_CartPole-v1.pkl, the rl-baselines-zoo PPO2 CartPole)
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { connect, loadExport, ndarray } from "sbexportd-client";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "../../..");

function parseArgs(argv) {
  const args = { agent: join(ROOT, "examples/ppo2_CartPole-v1.pkl"), python: null, port: null, out: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--python") args.python = argv[++i];
    else if (a === "--port") args.port = Number(argv[++i]);
    else if (a === "--out") args.out = argv[++i];
    else args.agent = resolve(a);
  }
  args.python ??= process.env.SBEXPORTD_PYTHON
    ?? (existsSync(join(ROOT, ".venv/bin/python")) ? join(ROOT, ".venv/bin/python") : "python3");
  return args;
}

// CartPole-v1's dynamics (gym.envs.classic_control.cartpole), in float64 as gym computes them.
class CartPole {
  constructor(seed) {
    let s = seed >>> 0;
    this.random = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
    this.state = Array.from({ length: 4 }, () => this.random() * 0.1 - 0.05);
  }

  step(action) {
    const [gravity, massCart, massPole, length, forceMag, tau] = [9.8, 1.0, 0.1, 0.5, 10.0, 0.02];
    const total = massCart + massPole, poleMassLength = massPole * length;
    let [x, xDot, theta, thetaDot] = this.state;
    const force = action === 1 ? forceMag : -forceMag;
    const cos = Math.cos(theta), sin = Math.sin(theta);
    const temp = (force + poleMassLength * thetaDot * thetaDot * sin) / total;
    const thetaAcc = (gravity * sin - cos * temp) / (length * (4 / 3 - (massPole * cos * cos) / total));
    const xAcc = temp - (poleMassLength * thetaAcc * cos) / total;
    x += tau * xDot;
    xDot += tau * xAcc;
    theta += tau * thetaDot;
    thetaDot += tau * thetaAcc;
    this.state = [x, xDot, theta, thetaDot];
    return Math.abs(x) > 2.4 || Math.abs(theta) > (12 * 2 * Math.PI) / 360;
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));

  // 1. connect
  const client = args.port
    ? await connect({ port: args.port })
    : await connect({ spawn: { python: args.python, cwd: ROOT } });
  console.log(`connected to ${client.serverInfo.name} ${client.serverInfo.version} `
    + `(protocol ${client.capabilities.protocolVersion}, ${args.port ? `tcp port ${args.port}` : "spawned, stdio"})`);

  const out = args.out ?? mkdtempSync(join(tmpdir(), "sbexportd-example-"));
  try {
    // 2. open and predict
    const model = await client.open(args.agent, { vecnormalize: "auto" });
    const s = model.summary;
    console.log(`opened ${s.file}: ${s.algorithm} ${s.policy}, obs ${JSON.stringify(s.observation_space)}, `
      + `action ${JSON.stringify(s.action_space)}`);
    const obsShape = s.input.shape.slice(1);
    const per = obsShape.reduce((a, b) => a * b, 1);
    const obs = ndarray(Float32Array.from({ length: 2 * per }, (_, i) => Math.sin(i) * 0.05), [2, ...obsShape]);
    const ref = await model.predict(obs);
    console.log("daemon predict:", Object.fromEntries(Object.entries(ref).map(([k, v]) => [k, Array.from(v.data).slice(0, 6)])));

    // 3. export
    const result = await model.export({
      to: "tfjs,onnx,portable", out, force: true,
      onProgress: (e) => console.log(`  [${e.kind}] ${e.title ?? e.message ?? ""}${e.percentage !== undefined ? ` ${e.percentage}%` : ""}`),
    });
    for (const r of result.results) {
      console.log(`exported ${r.target} -> ${r.path} (${r.bytes} bytes${r.cached ? ", cached" : ""}; `
        + `daemon's check: ${r.parity.passed ? "passed" : "FAILED"} in ${r.parity.runtime})`);
    }

    // 4. load each export here and compare with the daemon
    const exports = {};
    for (const target of ["tfjs", "onnx", "portable"]) {
      const ex = await loadExport(join(out, target));
      exports[target] = ex;
      const got = await ex.predict(obs);
      let worst = 0;
      for (const [name, r] of Object.entries(ref)) {
        const g = got[name === "actions" ? "action" : name];
        for (let i = 0; i < r.data.length; i++) {
          worst = Math.max(worst, Math.abs(Number(g.data[i]) - Number(r.data[i])) / Math.max(1, Math.abs(Number(r.data[i]))));
        }
      }
      console.log(`${target.padEnd(8)} ${ex.runtime}: actions ${Array.from(got.action.data).join(",")}, `
        + `max scaled error vs daemon ${worst.toExponential(1)}`);
      if (worst > 1e-5) throw new Error(`${target} disagrees with the daemon`);
    }

    // 5. run: a CartPole episode with the portable policy (any other agent: a few steps on its obs)
    const policy = exports.portable;
    if (s.action_space.type === "Discrete" && s.action_space.n === 2 && per === 4 && !s.recurrent) {
      const env = new CartPole(42);
      let steps = 0;
      for (; steps < 500; steps++) {
        const { action } = await policy.predict(Float32Array.from(env.state));
        if (env.step(Number(action.data[0]))) break;
      }
      console.log(`CartPole-v1 episode with the portable export: return ${Math.min(steps + 1, 500)} (500 is the maximum)`);
    } else {
      let state;
      for (let t = 0; t < 5; t++) {
        const o = ndarray(Float32Array.from({ length: per }, (_, i) => Math.cos(t + i) * 0.1), obsShape);
        const res = await policy.predict(o, { state });
        state = res.state;
        console.log(`step ${t}: action ${Array.from(res.action.data).join(",")}`);
      }
    }
    for (const ex of Object.values(exports)) ex.dispose();
    await model.close();
  } finally {
    await client.close();
    if (!args.out) rmSync(out, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`example failed: ${err.name}: ${err.message}${err.code ? ` (code ${err.code}, ${err.kind})` : ""}`);
  process.exit(1);
});
