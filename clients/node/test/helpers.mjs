// Shared by the tests: a real daemon, fixtures, seeded observations, the parity rule.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { startDaemon } from "../src/index.js";

export const CLIENT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const ROOT = resolve(CLIENT_DIR, "../..");
export const FIXTURES = join(ROOT, "tests/fixtures");
export const PYTHON = process.env.SBEXPORTD_PYTHON
  ?? (existsSync(join(ROOT, ".venv/bin/python")) ? join(ROOT, ".venv/bin/python") : "python3");

export function fixture(name, file = "model.zip") {
  return join(FIXTURES, name, file);
}

/** A daemon on a free loopback port, stopped by the returned stop(); env adds variables. */
export async function daemon(extraArgs = [], env = {}) {
  return startDaemon({ python: PYTHON, cwd: ROOT, extraArgs, timeoutMs: 120000, env: { ...process.env, ...env } });
}

export function tempDir(prefix = "sbx-node-") {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

// -- seeded observations from a space (as sbexportd's conventions.sample_observations) ------------
export function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => {
    const u = Math.max(next(), 1e-12), v = next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  return { next, normal };
}

const TYPED = { float32: Float32Array, float64: Float64Array, uint8: Uint8Array, int32: Int32Array, int64: BigInt64Array };

function bound(b, i) {
  if (Array.isArray(b)) return bound(b[i]);
  if (b === "inf") return Infinity;
  if (b === "-inf") return -Infinity;
  return b;
}

/** n observations of a summary's observation space, in its input dtype: {dtype, shape, data}. */
export function sampleObs(summary, n, seed = 0) {
  const r = rng(seed);
  const space = summary.observation_space;
  const dtype = summary.input.dtype;
  const Typed = TYPED[dtype] ?? Float32Array;
  const shape = summary.input.shape.slice(1);
  const per = shape.reduce((a, b) => a * b, 1);
  const data = new Typed(n * per);
  for (let k = 0; k < n; k++) {
    for (let i = 0; i < per; i++) {
      let v;
      if (space.type === "Discrete") v = Math.floor(r.next() * space.n);
      else if (space.type === "MultiDiscrete") v = Math.floor(r.next() * space.nvec[i]);
      else if (space.type === "MultiBinary") v = r.next() < 0.5 ? 0 : 1;
      else {
        const lo = bound(space.low, i), hi = bound(space.high, i);
        if (Number.isFinite(lo) && Number.isFinite(hi) && hi - lo < 1e6) v = lo + (hi - lo) * r.next();
        else v = r.normal();
        if (dtype.startsWith("int") || dtype.startsWith("uint")) v = Math.round(v);
      }
      data[k * per + i] = Typed === BigInt64Array ? BigInt(v) : v;
    }
  }
  return { dtype, shape: [n, ...shape], data };
}

export function sampleState(size, n, seed) {
  const r = rng(seed);
  return { dtype: "float32", shape: [n, size], data: Float32Array.from({ length: n * size }, () => 2 * r.next() - 1) };
}

// -- the parity rule (sbexportd/parity.py) ----------------------------------------------------
export const TOL = 1e-5;

/**
 * Compare an output with the reference. Discrete actions: equal; continuous actions:
 * max abs error <= 1e-5; everything else: |err| <= 1e-5 * max(1, |ref|).
 * Returns {ok, maxAbs, scaled, mismatches, why}.
 */
export function compare(name, got, ref, discreteAction) {
  if (!got) return { ok: false, why: `${name}: missing` };
  if (got.shape.join(",") !== ref.shape.join(",")) {
    return { ok: false, why: `${name}: shape [${got.shape}] != [${ref.shape}]` };
  }
  let maxAbs = 0, scaled = 0, mismatches = 0;
  for (let i = 0; i < ref.data.length; i++) {
    const a = Number(got.data[i]), b = Number(ref.data[i]);
    const d = Math.abs(a - b);
    if (a !== b && !(Number.isNaN(a) && Number.isNaN(b))) mismatches++;
    if (!Number.isNaN(d)) {
      maxAbs = Math.max(maxAbs, d);
      scaled = Math.max(scaled, d / Math.max(1, Math.abs(b)));
    } else if (!(Number.isNaN(a) && Number.isNaN(b))) {
      maxAbs = scaled = Infinity;
    }
  }
  const ok = discreteAction ? mismatches === 0 : name === "action" || name === "actions" ? maxAbs <= TOL : scaled <= TOL;
  return { ok, maxAbs, scaled, mismatches,
    why: ok ? "" : `${name}: ${discreteAction ? `${mismatches} entries differ` : `max abs ${maxAbs}, scaled ${scaled}`}` };
}

/**
 * The judge of sbexportd.parity.compare with a float32 bound (parity.judge's 2E of the
 * output): discrete actions equal; continuous actions |err| <= 1e-5 + bound; every other
 * output |err| <= 1e-5 * max(1, |ref|) + bound, element by element; ties (optional) marks
 * the discrete entries parity.judge accepts any answer on. Returns {ok, maxAbs, share (worst |err| / allowed), mismatches, why}.
 */
export function judge(name, got, ref, discreteAction, bound, ties) {
  if (!got) return { ok: false, why: `${name}: missing` };
  if (got.shape.join(",") !== ref.shape.join(",")) {
    return { ok: false, why: `${name}: shape [${got.shape}] != [${ref.shape}]` };
  }
  const action = name === "action" || name === "actions";
  let maxAbs = 0, share = 0, mismatches = 0, ok = true;
  for (let i = 0; i < ref.data.length; i++) {
    const a = Number(got.data[i]), b = Number(ref.data[i]);
    if (discreteAction) { // ties: entries where exact and TF1 arithmetic disagree, any answer taken
      if (a !== b && !(ties && ties.data[i])) mismatches++;
      continue;
    }
    let d = Math.abs(a - b);
    if (Number.isNaN(d)) d = Number.isNaN(a) && Number.isNaN(b) ? 0 : Infinity;
    const allowed = (action ? TOL : TOL * Math.max(1, Math.abs(b))) + bound;
    ok &&= d <= allowed;
    maxAbs = Math.max(maxAbs, d);
    share = Math.max(share, d / allowed);
  }
  if (discreteAction) {
    ok = mismatches === 0 && got.dtype === ref.dtype;
    return { ok, maxAbs: 0, share: 0, mismatches,
      why: ok ? "" : `${name}: ${mismatches} entries differ (dtype ${got.dtype}, reference ${ref.dtype})` };
  }
  return { ok, maxAbs, share, mismatches: 0,
    why: ok ? "" : `${name}: max abs error ${maxAbs.toPrecision(3)}, ${share.toFixed(2)} times what the rule + float32 bound ${bound.toPrecision(2)} allow` };
}

export function isDiscreteSpace(space) {
  return ["Discrete", "MultiDiscrete", "MultiBinary"].includes(space.type);
}

/** The export convention's name of a daemon output. */
export function exportName(daemonName) {
  return daemonName === "actions" ? "action" : daemonName;
}

// -- an export against the daemon ---------------------------------------------------------------
// the daemon's NumPy reference, named: its default may be another verified backend, and two
// implementations each within the rule of the reference are not within it of each other
export const REFERENCE = "numpy";
const N = 16;
const STEPS = 3; // recurrent policies: steps of state round trip

/** Run one step through the export and the daemon; check every output with the rule. */
async function checkStep(ex, model, obs, extra, label) {
  const ref = await model.predict(obs, { ...extra, backend: REFERENCE });
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

/**
 * An export (LoadedExport) against the daemon's predict of the same model: N seeded
 * observations; recurrent policies step by step with the daemon's state fed back
 * (random states, resets), then each side's own state chain from zeros; and one
 * unbatched observation. Returns {kind, case, scaled, mismatches}.
 */
export async function checkExport(ex, model, name) {
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
      const ref = await model.predict(obs, { state: refState ?? undefined, backend: REFERENCE });
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
  return { kind: ex.target, case: name, scaled, mismatches };
}

