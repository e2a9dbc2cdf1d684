// A project that installed sbexportd-client from its tarball (npm pack): start a daemon,
// open an agent, export it to tfjs, onnx and portable, run each export with the
// package's loadExport and compare it with the daemon's NumPy reference (the parity
// rule: discrete actions equal, everything else within 1e-5 scaled by max(1, |ref|)).
// tests/test_client_node.py copies this file into a fresh project and runs it there.
//
// usage: node use-package.mjs PYTHON REPO_ROOT AGENT OUT
// Prints one JSON line per target; exit status 0 when every output agrees.
import { createRequire } from "node:module";

import { connect, loadExport, startDaemon, VERSION } from "sbexportd-client";
import { readPortable } from "sbexportd-client/portable";

const [python, root, agent, out] = process.argv.slice(2);
const require = createRequire(import.meta.url);
console.log(JSON.stringify({ package: VERSION, from: require.resolve("sbexportd-client") }));

const daemon = await startDaemon({ python, cwd: root, timeoutMs: 120000 });
const client = await connect({ host: daemon.host, port: daemon.port });
let failures = 0;
try {
  const model = await client.open(agent);
  const shape = model.summary.input.shape.slice(1);
  const per = shape.reduce((a, b) => a * b, 1);
  const n = 8;
  const obs = { dtype: "float32", shape: [n, ...shape], data: Float32Array.from({ length: n * per }, (_, i) => 0.5 * Math.sin(i)) };
  const ref = await model.predict(obs, { backend: "numpy" });
  await model.export({ to: "tfjs,onnx,portable", out, force: true });
  for (const target of ["tfjs", "onnx", "portable"]) {
    const ex = await loadExport(out, { target });
    const got = await ex.predict(obs);
    const worst = {};
    for (const [name, r] of Object.entries(ref)) {
      const key = name === "actions" ? "action" : name;
      const g = got[key];
      if (!g || g.data.length !== r.data.length) {
        worst[key] = "missing";
        failures++;
        continue;
      }
      let w = 0;
      for (let i = 0; i < r.data.length; i++) {
        const d = Math.abs(Number(g.data[i]) - Number(r.data[i]));
        w = Math.max(w, key === "action" ? d : d / Math.max(1, Math.abs(Number(r.data[i]))));
      }
      const ok = key === "action" && r.dtype === "int64" ? w === 0 : w <= 1e-5;
      if (!ok) failures++;
      worst[key] = w;
    }
    console.log(JSON.stringify({ target, runtime: ex.runtime, worst }));
    ex.dispose();
  }
  // the ./portable entry point on its own
  const policy = readPortable(`${out}/portable/policy.sbx.msgpack`);
  console.log(JSON.stringify({ portable_entry: policy.inputDtype, outputs: Object.keys(policy.outputs) }));
  await model.close();
} finally {
  await client.close().catch(() => {});
  await daemon.stop();
}
console.log(failures === 0 ? "use-package: every export agrees with the daemon" : `use-package: ${failures} outputs differ`);
process.exit(failures === 0 ? 0 : 1);
