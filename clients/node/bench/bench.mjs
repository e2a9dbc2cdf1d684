#!/usr/bin/env node
// Latency of one policy step (batch 1) from Node:
//   - predict round trips to the daemon over TCP, JSON and msgpack bodies;
//   - the agent's exports run in this process: the portable evaluator, TensorFlow.js
//     (cpu and wasm backends) and onnxruntime-node.
// Prints p50 / p99 / mean per call and calls per second.
//
// usage: node bench/bench.mjs [--calls 2000] [--warmup 200] [--agent PATH] [--python PATH] [--port N] [--json]
// (default agent: ../shared/zoo/agents/ppo2/CartPole-v1.pkl, else the repository's examples/ppo2_CartPole-v1.pkl;
//  without --port a daemon is started on a free loopback port and stopped at the end)
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { connect, loadExport, ndarray, startDaemon } from "../src/index.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

function parseArgs(argv) {
  const args = { calls: 2000, warmup: 200, agent: null, python: null, port: null, json: false, wasm: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--calls") args.calls = Number(argv[++i]);
    else if (a === "--warmup") args.warmup = Number(argv[++i]);
    else if (a === "--agent") args.agent = resolve(argv[++i]);
    else if (a === "--python") args.python = argv[++i];
    else if (a === "--port") args.port = Number(argv[++i]);
    else if (a === "--json") args.json = true;
    else if (a === "--no-wasm") args.wasm = false;
    else throw new Error(`unknown argument ${a}`);
  }
  const zoo = process.env.SBEXPORTD_ZOO ?? resolve(ROOT, "../shared/zoo");
  args.agent ??= [join(zoo, "agents/ppo2/CartPole-v1.pkl"), join(ROOT, "examples/ppo2_CartPole-v1.pkl")]
    .find((p) => existsSync(p));
  args.python ??= process.env.SBEXPORTD_PYTHON
    ?? (existsSync(join(ROOT, ".venv/bin/python")) ? join(ROOT, ".venv/bin/python") : "python3");
  return args;
}

function quantile(sorted, q) {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

/** Time `calls` awaited calls of fn after `warmup` unmeasured ones; microseconds. */
async function measure(name, fn, { calls, warmup }) {
  for (let i = 0; i < warmup; i++) await fn(i);
  const times = new Float64Array(calls);
  const start = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) {
    const t0 = process.hrtime.bigint();
    await fn(i);
    times[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  const total = Number(process.hrtime.bigint() - start) / 1e9;
  const sorted = Float64Array.from(times).sort();
  const mean = times.reduce((a, b) => a + b, 0) / calls;
  return { name, calls, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), mean, perSecond: calls / total };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!args.agent) throw new Error("no agent found: pass --agent PATH");
  const opts = { calls: args.calls, warmup: args.warmup };
  let daemon = null;
  let port = args.port;
  if (!port) {
    daemon = await startDaemon({ python: args.python, cwd: ROOT });
    port = daemon.port;
  }
  const out = mkdtempSync(join(tmpdir(), "sbexportd-bench-"));
  const rows = [];
  const clients = [];
  try {
    const json = await connect({ port, encoding: "json" });
    const mp = await connect({ port, encoding: "msgpack" });
    clients.push(json, mp);
    const model = await mp.open(args.agent);
    const shape = model.summary.input.shape.slice(1);
    const per = shape.reduce((a, b) => a * b, 1);
    // a few distinct observations, cycled, so no layer can cache an answer
    const observations = Array.from({ length: 16 }, (_, k) =>
      ndarray(Float32Array.from({ length: per }, (_, i) => Math.sin(k * 7 + i) * 0.05), [1, ...shape]));
    const obs = (i) => observations[i % observations.length];

    rows.push(await measure("daemon predict, JSON (TCP round trip)", (i) => json.predict(model.id, obs(i)), opts));
    rows.push(await measure("daemon predict, msgpack (TCP round trip)", (i) => mp.predict(model.id, obs(i)), opts));

    await model.export({ to: "tfjs,onnx,portable", out, force: true });
    const portable = await loadExport(join(out, "portable"));
    rows.push(await measure("portable evaluator (in process)", (i) => portable.predict(obs(i)), opts));
    const onnx = await loadExport(join(out, "onnx"));
    rows.push(await measure("onnxruntime-node (in process)", (i) => onnx.predict(obs(i)), opts));
    const tfjsCpu = await loadExport(join(out, "tfjs"), { backend: "cpu" });
    rows.push(await measure("@tensorflow/tfjs cpu (in process)", (i) => tfjsCpu.predict(obs(i)), opts));
    tfjsCpu.dispose();
    if (args.wasm) {
      const tfjsWasm = await loadExport(join(out, "tfjs"), { backend: "wasm" });
      rows.push(await measure("@tensorflow/tfjs wasm (in process)", (i) => tfjsWasm.predict(obs(i)), opts));
      tfjsWasm.dispose();
    }
    onnx.dispose();
    portable.dispose();

    const info = { agent: args.agent, calls: args.calls, batch: 1, node: process.version,
      cpu: cpus()[0]?.model ?? "?", cores: cpus().length };
    if (args.json) {
      console.log(JSON.stringify({ ...info, rows }, null, 1));
    } else {
      console.log(`agent ${info.agent} (${model.summary.algorithm} ${model.summary.policy}), batch 1, `
        + `${args.calls} calls after ${args.warmup} warm-up, Node ${info.node}, ${info.cores} x ${info.cpu}`);
      const head = ["path", "p50 us", "p99 us", "mean us", "calls/s"];
      const body = rows.map((r) => [r.name, r.p50.toFixed(1), r.p99.toFixed(1), r.mean.toFixed(1), Math.round(r.perSecond).toString()]);
      const widths = head.map((h, j) => Math.max(h.length, ...body.map((b) => b[j].length)));
      const line = (cells) => cells.map((c, j) => (j === 0 ? c.padEnd(widths[j]) : c.padStart(widths[j]))).join("  ");
      console.log(line(head));
      console.log(widths.map((w) => "-".repeat(w)).join("  "));
      for (const b of body) console.log(line(b));
    }
  } finally {
    for (const c of clients) await c.close();
    await daemon?.stop();
    rmSync(out, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`bench failed: ${err.stack ?? err}`);
  process.exit(1);
});
