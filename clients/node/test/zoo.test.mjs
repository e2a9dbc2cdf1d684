// The portable evaluator on the portable export of every real zoo agent (../shared/zoo and
// zoo-more, at their real sizes) against SB2 2.10.2's own answers on its golden
// observations, under the judge the Python side uses: discrete actions equal, every other
// output the parity rule plus the float32 bound parity.judge computed there. The data is
// tests/zoo_reference.py's (stamped, shared with the Java client's run); a missing zoo
// fails it. An agent in tests/zoo.py CLIENT_KNOWN_FAILURES for "node" must fail (strict).
// The 17 agents whose folder adds VecNormalize statistics or a frame stack are checked a
// second time through that export ("<id> [auto]"), against the reference's judgement
// (parity.judge: rule, float32 bound, ties), a frame-stacked one frame by frame.
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
  console.log("\nportable evaluator on the zoo against SB2's goldens ([auto]: against the reference); worst |err| per output (its share of what the judge allows there)");
  for (const [id, row] of [...measured].sort()) console.log(`  ${id.padEnd(52)} ${row}`);
});

const AUTO = " [auto]"; // an agent's check of its export with the folder's VecNormalize / frame stack

/**
 * Run one export (predict(obs, state, mask): a LoadedExport's or a PortablePolicy's) on
 * every run of a case folder's reference: the failures and the worst errors per output.
 */
async function check(caseDir, discrete, predict) {
  const ref = decode(readFileSync(join(DIR, caseDir, "reference.msgpack")));
  const failures = [], worst = new Map();
  for (const [step, run] of ref.runs.entries()) {
    const input = (k) => run.inputs[k] && decodeWire(run.inputs[k]);
    const got = await predict(input("obs"), input("state"), input("mask"));
    for (const [name, wire] of Object.entries(run.outputs)) {
      const ties = run.ties?.[name] && decodeWire(run.ties[name]);
      const isAction = discrete && name === "action";
      const c = judge(name, got[name], decodeWire(wire), isAction, run.bound[name], ties);
      if (!c.ok) failures.push(c.why + (ref.runs.length > 1 ? ` (step ${step})` : ""));
      const [a, b] = worst.get(name) ?? [0, 0];
      worst.set(name, isAction ? [a + (c.mismatches ?? 0), 0] : [Math.max(a, c.maxAbs ?? NaN), Math.max(b, c.share ?? NaN)]);
    }
  }
  const row = [...worst].map(([name, [a, b]]) => (discrete && name === "action" ? `${name}=${a} differ`
    : `${name}=${a.toExponential(1)} (${b.toFixed(2)})`));
  return { failures, row: row.join(" ") };
}

/** Every check of the index: [name, case folder, discrete]: each agent's, and its "auto" export's where it has one. */
function checks() {
  return index.agents.filter((a) => !a.expected_export_failure).flatMap((a) => [
    [a.id, a.case, a.action !== "Box"],
    ...(a.auto ? [[a.id + AUTO, a.auto.case, a.action !== "Box"]] : []),
  ]);
}

describe("zoo agents through the portable evaluator, against SB2's goldens", () => {
  test("every zoo agent with a golden is in the reference data; expected failures name real agents", () => {
    const ids = index.agents.map((a) => a.id);
    assert.ok(ids.length > 0, `no zoo agents in ${DIR}`);
    assert.equal(new Set(ids).size, ids.length);
    const names = checks().map(([name]) => name);
    for (const f of index.client_known_failures) assert.ok(names.includes(f.id), `CLIENT_KNOWN_FAILURES: ${f.id}`);
  });

  test("every zoo agent's portable export gives SB2's answers (rule + float32 bound)", async () => {
    const expected = new Map(index.client_known_failures.filter((f) => f.client === "node").map((f) => [f.id, f.why]));
    const failures = [];
    for (const [name, caseDir, discrete] of checks()) {
      const ex = await loadExport(join(DIR, caseDir), { target: "portable" });
      let result;
      try {
        result = await check(caseDir, discrete, (obs, state, mask) => ex.predict(obs, { state, mask }));
      } finally {
        ex.dispose();
      }
      measured.set(name, result.row);
      const why = expected.get(name);
      if (why === undefined && result.failures.length) failures.push(`${name}: ${result.failures.join("; ")}`);
      if (why !== undefined && !result.failures.length) failures.push(`${name} passes: remove it from CLIENT_KNOWN_FAILURES (${why})`);
    }
    assert.deepEqual(failures, []);
    const auto = [...measured.keys()].filter((k) => k.endsWith(AUTO)).length;
    console.log(`zoo agents checked against SB2: ${measured.size - auto}; their auto exports against the reference: ${auto}`);
  });

  test(`the other side: ${LARGEST}'s export with one last-layer bias moved by 1e-3 is rejected`, async () => {
    const agent = index.agents.find((a) => a.id === LARGEST);
    assert.ok(agent, `${LARGEST} not in the zoo reference data`);
    const file = join(DIR, agent.case, "portable", "policy.sbx.msgpack");
    const bytes = readFileSync(file);
    const run = (p) => (obs) => p.run(obs);
    assert.deepEqual((await check(agent.case, false, run(readPortable(bytes)))).failures, []);
    const doc = decode(bytes);
    const bias = doc.nodes.filter((n) => n.op === "dense").at(-1).params.b;
    const data = doc.tensors[bias].data;
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    view.setFloat32(0, view.getFloat32(0, true) + 1e-3, true);
    const { failures } = await check(agent.case, false, run(readPortable(encode(doc))));
    assert.equal(failures.length, 1, failures.join("; "));
    assert.match(failures[0], /^action: max abs error/);
  });
});
