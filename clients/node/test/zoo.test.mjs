// The portable evaluator on the portable export of every real zoo agent (../shared/zoo and
// zoo-more, at their real sizes) against SB2 2.10.2's own answers on its golden
// observations, under the judge the Python side uses: discrete actions equal, every other
// output the parity rule plus the float32 bound parity.judge computed there. The data is
// tests/zoo_reference.py's (stamped, shared with the Java client's run); a missing zoo
// fails it. An agent in tests/zoo.py CLIENT_KNOWN_FAILURES for "node" must fail (strict).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { decode, encode } from "@msgpack/msgpack";

import { decodeWire } from "../src/arrays.js";
import { loadExport, readPortable } from "../src/index.js";
import { PYTHON, ROOT, judge } from "./helpers.mjs";

const DIR = process.env.SBEXPORTD_ZOO_REFERENCE ?? join(ROOT, "build/zoo-reference");
const LARGEST = "zoo-more/td3/HumanoidBulletEnv-v0.pkl";
const measured = new Map(); // agent -> "output=worst |err| (share of allowed)"
let index;

before(() => {
  execFileSync(PYTHON, [join(ROOT, "tests/zoo_reference.py"), DIR],
    { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: "3" } });
  index = JSON.parse(readFileSync(join(DIR, "index.json"), "utf8"));
});
after(() => {
  if (!measured.size) return;
  console.log("\nportable evaluator on the zoo against SB2's goldens (worst |err| per output, and its share of what the judge allows)");
  for (const [id, row] of [...measured].sort()) console.log(`  ${id.padEnd(52)} ${row}`);
});

/** Run one agent's export (a LoadedExport, or a PortablePolicy's run) on its golden run: the failures. */
async function check(agent, predict) {
  const ref = decode(readFileSync(join(DIR, agent.case, "reference.msgpack")));
  const discrete = agent.action !== "Box";
  const failures = [], row = [];
  for (const run of ref.runs) {
    const got = await predict(decodeWire(run.inputs.obs));
    for (const [name, wire] of Object.entries(run.outputs)) {
      const c = judge(name, got[name], decodeWire(wire), discrete && name === "action", run.bound[name]);
      if (!c.ok) failures.push(c.why);
      row.push(discrete && name === "action" ? `${name}=${c.mismatches ?? "?"} differ`
        : `${name}=${(c.maxAbs ?? NaN).toExponential(1)} (${(c.share ?? NaN).toFixed(2)})`);
    }
  }
  return { failures, row: row.join(" ") };
}

describe("zoo agents through the portable evaluator, against SB2's goldens", () => {
  test("every zoo agent with a golden is in the reference data; expected failures name real agents", () => {
    const ids = index.agents.map((a) => a.id);
    assert.ok(ids.length > 0, `no zoo agents in ${DIR}`);
    assert.equal(new Set(ids).size, ids.length);
    for (const f of index.client_known_failures) assert.ok(ids.includes(f.id), `CLIENT_KNOWN_FAILURES: ${f.id}`);
  });

  test("every zoo agent's portable export gives SB2's answers (rule + float32 bound)", async () => {
    const expected = new Map(index.client_known_failures.filter((f) => f.client === "node").map((f) => [f.id, f.why]));
    const failures = [];
    for (const agent of index.agents) {
      if (agent.expected_export_failure) continue; // tests/zoo.py KNOWN_FAILURES: no export to run
      const ex = await loadExport(join(DIR, agent.case), { target: "portable" });
      let result;
      try {
        result = await check(agent, (obs) => ex.predict(obs));
      } finally {
        ex.dispose();
      }
      measured.set(agent.id, result.row);
      const why = expected.get(agent.id);
      if (why === undefined && result.failures.length) failures.push(`${agent.id}: ${result.failures.join("; ")}`);
      if (why !== undefined && !result.failures.length) failures.push(`${agent.id} passes: remove it from CLIENT_KNOWN_FAILURES (${why})`);
    }
    assert.deepEqual(failures, []);
    console.log(`zoo agents checked against SB2: ${measured.size}`);
  });

  test(`the other side: ${LARGEST}'s export with one last-layer bias moved by 1e-3 is rejected`, async () => {
    const agent = index.agents.find((a) => a.id === LARGEST);
    assert.ok(agent, `${LARGEST} not in the zoo reference data`);
    const file = join(DIR, agent.case, "portable", "policy.sbx.msgpack");
    const bytes = readFileSync(file);
    const run = (p) => (obs) => p.run(obs);
    assert.deepEqual((await check(agent, run(readPortable(bytes)))).failures, []);
    const doc = decode(bytes);
    const bias = doc.nodes.filter((n) => n.op === "dense").at(-1).params.b;
    const data = doc.tensors[bias].data;
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    view.setFloat32(0, view.getFloat32(0, true) + 1e-3, true);
    const { failures } = await check(agent, run(readPortable(encode(doc))));
    assert.equal(failures.length, 1, failures.join("; "));
    assert.match(failures[0], /^action: max abs error/);
  });
});
