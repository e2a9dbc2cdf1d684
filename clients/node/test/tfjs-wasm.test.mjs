// TensorFlow.js's WASM backend (its own process: a tfjs backend is global) on tfjs
// exports made by the daemon, against the daemon's predict.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { connect, loadExport } from "../src/index.js";
import { checkExport, daemon, fixture, tempDir } from "./helpers.mjs";

let d, client, tmp;
before(async () => {
  d = await daemon();
  client = await connect({ port: d.port });
  tmp = tempDir("sbx-node-wasm-");
});
after(async () => {
  await client?.close();
  await d?.stop();
  tmp?.remove();
});

for (const name of ["ppo2_mlp_vec_discrete", "a2c_cnn_img_discrete", "ppo2_mlplnlstm_vec_multidiscrete", "sac_mlp_vec_box"]) {
  test(`tfjs on the wasm backend: ${name}`, async () => {
    const model = await client.open(fixture(name));
    const out = join(tmp.dir, name);
    await model.export({ to: "tfjs", out });
    const ex = await loadExport(join(out, "tfjs"), { backend: "wasm" });
    assert.match(ex.runtime, /wasm backend/);
    const r = await checkExport(ex, model, name);
    assert.equal(r.mismatches, 0);
    ex.dispose();
  });
}
