// The daemon client against a real `sbexportd serve --tcp 127.0.0.1:0` (and --stdio).
import assert from "node:assert/strict";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import {
  BadModelFileError, BadObservationError, CancelledError, Client, ConnectionError, ErrorCodes, FileNotFoundError,
  InvalidParamsError, Model, OutputExistsError, ParityFailedError, SbexportdError, UnauthorizedError, UnknownModelError,
  connect, findConnection, ndarray,
} from "../src/index.js";
import { PYTHON, ROOT, daemon, fixture, sampleObs, sampleState, tempDir } from "./helpers.mjs";

const MLP = fixture("ppo2_mlp_vec_discrete");
const LSTM = fixture("ppo2_mlplstm_vec_box");

let d;
before(async () => {
  d = await daemon();
});
after(async () => {
  await d?.stop();
});

describe("connection", () => {
  test("the daemon's listening line gives host and port; initialize advertises protocol 1.x", async () => {
    assert.equal(d.host, "127.0.0.1");
    assert.ok(d.port > 0);
    const c = await connect({ port: d.port, host: d.host });
    assert.ok(c instanceof Client);
    assert.equal(c.serverInfo.name, "sbexportd");
    assert.match(c.capabilities.protocolVersion, /^1\./);
    assert.ok(c.capabilities.targets.includes("tfjs") && c.capabilities.targets.includes("portable"));
    assert.deepEqual(c.capabilities.encodings, ["list", "base64", "msgpack"]);
    const targets = await c.targets();
    assert.ok(targets.targets.some((t) => t.name === "onnx"));
    await c.close();
    assert.equal(c.closed, true);
  });

  test("a spawned `sbexportd serve --stdio` serves one client and exits with it", async () => {
    const c = await connect({ spawn: { python: PYTHON, cwd: ROOT }, encoding: "json" });
    const m = await c.open(MLP);
    const out = await m.predict([[0.1, -0.2, 0.03, 0.4]]);
    assert.deepEqual(out.actions.shape, [1]);
    const status = await c.status();
    assert.equal(status.pid, c.child.pid);
    await c.close();
    assert.ok(c.child.exitCode === 0 || c.child.signalCode !== null, `exit ${c.child.exitCode}`);
  });

  test("a daemon that dies mid-request: the pending request rejects with ConnectionError, later ones too", async () => {
    const c = await connect({ spawn: { python: PYTHON, cwd: ROOT } });
    const closed = new Promise((resolve) => c.once("close", resolve));
    const m = await c.open(MLP);
    const t = tempDir();
    try {
      const pending = m.export({ to: "tfjs", out: t.dir });
      setTimeout(() => c.child.kill("SIGKILL"), 200);
      await assert.rejects(pending, ConnectionError);
      await closed;
      assert.equal(c.closed, true);
      await assert.rejects(c.status(), ConnectionError);
      await c.close();
    } finally {
      t.remove();
    }
  });

  test("connecting to a closed port is a ConnectionError", async () => {
    await assert.rejects(connect({ port: 1, host: "127.0.0.1" }), (err) => {
      assert.ok(err instanceof ConnectionError && err instanceof SbexportdError);
      assert.equal(err.code, null);
      return true;
    });
  });

  test("the token comes from the daemon's connection file; a wrong one is UnauthorizedError -33020", async () => {
    const secret = "s3cret-from-the-environment";
    const secured = await daemon([], { SBEXPORTD_TOKEN: secret });
    try {
      assert.equal(secured.token, secret);
      assert.equal(findConnection({ port: secured.port }).token, secret);
      await assert.rejects(connect({ port: secured.port, token: "wrong-token-0123456789" }), (err) => {
        assert.ok(err instanceof UnauthorizedError);
        assert.equal(err.code, ErrorCodes.UNAUTHORIZED);
        assert.equal(err.kind, "unauthorized");
        return true;
      });
      for (const options of [{ port: secured.port }, { connectionFile: secured.connectionFile }]) {
        const c = await connect(options); // the client finds the token by itself
        assert.equal((await c.status()).security.auth, true);
        await c.close();
      }
    } finally {
      await secured.stop();
    }
  });

  test("a target that fails is in result.failed with its error; the others are written", async () => {
    const faulty = await daemon([], {
      PYTHONPATH: [join(ROOT, "tests/fakes"), ROOT].join(":"), SBEXPORTD_TEST_FAULTS: "portable-parity",
    });
    const t = tempDir();
    try {
      const c = await faulty.connect();
      const m = await c.open(MLP);
      const r = await m.export({ to: ["params", "portable"], out: t.dir });
      assert.equal(r.complete, false);
      assert.deepEqual(r.results.map((x) => x.target), ["params"]);
      assert.equal(r.failed.length, 1);
      assert.equal(r.failed[0].target, "portable");
      assert.ok(r.failed[0].error instanceof ParityFailedError);
      assert.equal(r.failed[0].error.kind, "parity_failed");
      assert.deepEqual(readdirSync(t.dir), ["params"]);
      await assert.rejects(m.export({ to: ["params", "portable"], out: join(t.dir, "b"), allOrNothing: true }),
        ParityFailedError);
      assert.equal(existsSync(join(t.dir, "b")), false);
      await c.close();
    } finally {
      t.remove();
      await faulty.stop();
    }
  });
});

describe("open, inspect, parameters, predict", () => {
  let json, mp;
  before(async () => {
    json = await connect({ port: d.port, encoding: "json" });
    mp = await connect({ port: d.port, encoding: "msgpack" });
  });
  after(async () => {
    await json.close();
    await mp.close();
  });

  test("open returns a Model with the daemon's summary; the same file gets the same id anywhere", async () => {
    const a = await json.open(MLP);
    const b = await mp.open(MLP);
    assert.ok(a instanceof Model);
    assert.match(a.id, /^m-[0-9a-f]{20}$/);
    assert.equal(a.id, b.id);
    assert.equal(b.cached, true);
    assert.equal(a.summary.algorithm, "ppo2");
    assert.deepEqual(a.summary.action_space, { type: "Discrete", n: 3 });
    assert.deepEqual(a.summary.outputs, ["actions", "probs", "values"]);
  });

  test("inspect describes the policy", async () => {
    const m = await mp.open(MLP);
    const info = await m.inspect();
    assert.equal(info.modelId, m.id);
    assert.equal(info.algorithm, "ppo2");
    assert.ok(Array.isArray(info.layers) && info.layers.length > 0);
    assert.deepEqual(await json.inspect(m.id), info);
  });

  test("parameters: statistics, and values as typed arrays (JSON base64 and msgpack bytes equal)", async () => {
    const m = await mp.open(MLP);
    const stats = await m.parameters();
    assert.equal(stats.count, stats.parameters.length);
    assert.equal(stats.parameters[0].value, undefined);
    const name = stats.parameters[0].name;
    const viaMp = await mp.parameters(m.id, { names: [name], values: true });
    const viaJson = await json.parameters(m.id, { names: [name], values: true });
    const v = viaMp.parameters[0].value;
    assert.equal(v.dtype, "float32");
    assert.ok(v.data instanceof Float32Array);
    assert.deepEqual(v.shape, stats.parameters[0].shape);
    assert.deepEqual(viaJson.parameters[0].value, v);
    assert.equal(Math.min(...v.data), stats.parameters[0].min);
    await assert.rejects(m.parameters({ names: ["no/such:0"] }), (err) => {
      assert.ok(err instanceof InvalidParamsError);
      assert.equal(err.kind, "unknown_parameter");
      return true;
    });
  });

  test("predict: typed arrays in and out; JSON and msgpack results are equal", async () => {
    const m = await mp.open(MLP);
    const obs = sampleObs(m.summary, 16, 1);
    const a = await mp.predict(m.id, obs);
    const b = await json.predict(m.id, obs);
    assert.deepEqual(Object.keys(a).sort(), ["actions", "probs", "values"]);
    assert.ok(a.actions.data instanceof BigInt64Array);
    assert.equal(a.actions.dtype, "int64");
    assert.deepEqual(a.actions.shape, [16]);
    assert.ok(a.probs.data instanceof Float32Array);
    assert.deepEqual(a.probs.shape, [16, 3]);
    assert.deepEqual(a, b);
    // nested plain arrays give the same answers (floats as float64, cast like Model.predict)
    const nested = [];
    for (let i = 0; i < 16; i++) nested.push(Array.from(obs.data.subarray(i * 4, i * 4 + 4)));
    assert.deepEqual((await mp.predict(m.id, nested)).actions, a.actions);
    // one unbatched observation gives unbatched outputs
    const one = await m.predict(ndarray(obs.data.slice(0, 4)));
    assert.equal(one.actions.data[0], a.actions.data[0]);
    assert.deepEqual(one.probs.shape, [3]);
  });

  test("predict of one unbatched observation: scalar outputs have shape [] (protocol.md: unbatched outputs)", {
    todo: "daemon bug: sbexportd/serve/arrays.py _binary uses np.ascontiguousarray, which makes 0-d arrays (1,)",
  }, async () => {
    const m = await mp.open(MLP);
    for (const client of [mp, json]) {
      const one = await client.predict(m.id, ndarray(new Float32Array([0.1, -0.2, 0.03, 0.4])));
      assert.deepEqual(one.actions.shape, []);
      assert.deepEqual(one.values.shape, []);
    }
  });

  test("predict options: outputs, seeded sampling", async () => {
    const m = await mp.open(MLP);
    const obs = sampleObs(m.summary, 32, 2);
    const only = await m.predict(obs, { outputs: ["values"] });
    assert.deepEqual(Object.keys(only), ["values"]);
    const s1 = await m.predict(obs, { deterministic: false, seed: 7 });
    const s2 = await m.predict(obs, { deterministic: false, seed: 7, encoding: "json" });
    assert.deepEqual(s1.actions, s2.actions);
  });

  test("recurrent policy: state round trip, and mask resets it", async () => {
    const m = await mp.open(LSTM);
    const size = m.summary.recurrent.state_shape[1];
    const obs = sampleObs(m.summary, 4, 3);
    const first = await m.predict(obs, { mask: new Float32Array([1, 1, 1, 1]) });
    assert.deepEqual(first.state.shape, [4, size]);
    const second = await m.predict(obs, { state: first.state, mask: new Float32Array(4) });
    assert.notDeepEqual(second.state.data, first.state.data);
    const reset = await m.predict(obs, { state: second.state, mask: new Float32Array([1, 1, 1, 1]) });
    assert.deepEqual(reset, first);
    const viaJson = await json.predict(m.id, obs, { state: first.state, mask: [0, 0, 0, 0] });
    assert.deepEqual(viaJson, second);
    const random = sampleState(size, 4, 5);
    assert.deepEqual(await m.predict(obs, { state: random, mask: [0, 0, 0, 0] }),
      await json.predict(m.id, obs, { state: random, mask: new Float32Array(4) }));
  });

  test("frameStack: the same file with VecFrameStack(2) in front is another model, taking one frame at a time", async () => {
    const plain = await mp.open(MLP);
    const m = await mp.open(MLP, { frameStack: 2 });
    assert.notEqual(m.id, plain.id);
    assert.deepEqual(m.summary.frame_stack, { n: 2, state_shape: [null, 2] });
    assert.deepEqual(m.summary.input.shape, [null, 2]);
    const frames = sampleObs(m.summary, 4, 6);
    const first = await m.predict(frames, { mask: new Float32Array([1, 1, 1, 1]) });
    assert.deepEqual(first.state.shape, [4, 2]);
    assert.deepEqual(Array.from(first.state.data), Array.from(frames.data));  // the frame just seen, kept
    await assert.rejects(mp.open(MLP, { frameStack: 0 }), InvalidParamsError);
  });

  test("close forgets the model: UnknownModelError afterwards", async () => {
    const c = await connect({ port: d.port });
    const m = await c.open(fixture("a2c_mlp_vec_discrete"));
    const res = await m.close();
    assert.equal(res.closed, true);
    await assert.rejects(m.predict([[0, 0, 0, 0]]), (err) => {
      assert.ok(err instanceof UnknownModelError);
      assert.equal(err.code, -33004);
      assert.equal(err.kind, "unknown_model");
      assert.ok(err.hint);
      return true;
    });
    await c.close();
  });
});

describe("errors", () => {
  let c;
  before(async () => {
    c = await connect({ port: d.port });
  });
  after(async () => {
    await c.close();
  });

  test("a path that does not exist: FileNotFoundError, -33001, file_not_found, with the file", async () => {
    for (const encoding of ["msgpack", "json"]) {
      await assert.rejects(c.open("/no/such/agent.zip", { encoding }), (err) => {
        assert.ok(err instanceof FileNotFoundError, err.name);
        assert.ok(err instanceof SbexportdError && err instanceof Error);
        assert.equal(err.name, "FileNotFoundError");
        assert.equal(err.code, ErrorCodes.FILE_NOT_FOUND);
        assert.equal(err.code, -33001);
        assert.equal(err.kind, "file_not_found");
        assert.equal(err.file, "/no/such/agent.zip");
        assert.equal(err.method, "sbexport/open");
        assert.match(err.message, /no such file/);
        return true;
      });
    }
  });

  test("a file that is not an SB2 model: BadModelFileError -33002", async () => {
    const t = tempDir();
    try {
      const path = join(t.dir, "junk.zip");
      writeFileSync(path, "not a zip at all");
      await assert.rejects(c.open(path), (err) => {
        assert.ok(err instanceof BadModelFileError, err.name);
        assert.equal(err.code, -33002);
        assert.ok(err.kind);
        return true;
      });
    } finally {
      t.remove();
    }
  });

  test("a wrongly shaped observation: BadObservationError -33005; an unknown output: InvalidParamsError", async () => {
    const m = await c.open(MLP);
    await assert.rejects(m.predict(ndarray(new Float32Array(6), [2, 3])), (err) => {
      assert.ok(err instanceof BadObservationError);
      assert.equal(err.code, -33005);
      return true;
    });
    await assert.rejects(m.predict([[0, 0, 0, 0]], { outputs: ["q_values"] }), (err) => {
      assert.ok(err instanceof InvalidParamsError);
      assert.equal(err.code, -32602);
      assert.equal(err.kind, "unknown_output");
      return true;
    });
  });

  test("exporting onto an existing folder without force: OutputExistsError -33012", async () => {
    const t = tempDir();
    try {
      const m = await c.open(MLP);
      await m.export({ to: "portable", out: t.dir });
      await assert.rejects(m.export({ to: "portable", out: t.dir }), (err) => {
        assert.ok(err instanceof OutputExistsError);
        assert.equal(err.code, -33012);
        return true;
      });
      const again = await m.export({ to: "portable", out: t.dir, force: true });
      assert.equal(again.results[0].cached, true);
    } finally {
      t.remove();
    }
  });
});

describe("progress and cancellation", () => {
  let c;
  before(async () => {
    c = await connect({ port: d.port });
  });
  after(async () => {
    await c.close();
  });

  test("export reports $/progress begin, reports, end (before the answer), to onProgress and the client", async () => {
    const t = tempDir();
    try {
      const m = await c.open(fixture("a2c_mlp_vec_box"));
      const events = [], fromClient = [];
      const listener = (e) => fromClient.push(e);
      c.on("progress", listener);
      const result = await m.export({ to: "portable", out: t.dir, onProgress: (e) => events.push(e) });
      c.off("progress", listener);
      assert.equal(result.results[0].target, "portable");
      assert.ok(existsSync(join(t.dir, "portable", "manifest.json")));
      assert.equal(events[0].kind, "begin");
      assert.match(events[0].title, /exporting/);
      assert.equal(events.at(-1).kind, "end");
      assert.equal(events.at(-1).message, "done");
      assert.ok(events.some((e) => e.kind === "report" && /portable/.test(e.message ?? "")));
      assert.ok(events.every((e) => e.method === "sbexport/export" && e.token === events[0].token));
      const pcts = events.filter((e) => e.percentage !== undefined).map((e) => e.percentage);
      assert.deepEqual(pcts, [...pcts].sort((a, b) => a - b));
      assert.deepEqual(fromClient, events);
    } finally {
      t.remove();
    }
  });

  test("an AbortSignal cancels an export: $/cancelRequest, CancelledError -32800, nothing in out", async () => {
    const t = tempDir();
    try {
      const m = await c.open(fixture("ppo2_mlp_netarch_relu"));
      const ac = new AbortController();
      const events = [];
      const started = Date.now();
      await assert.rejects(m.export({
        to: "tfjs,onnx,savedmodel", out: t.dir, signal: ac.signal,
        onProgress: (e) => {
          events.push(e);
          if (e.kind === "begin") ac.abort(new Error("user gave up"));
        },
      }), (err) => {
        assert.ok(err instanceof CancelledError, `${err.name}: ${err.message}`);
        assert.equal(err.code, ErrorCodes.REQUEST_CANCELLED);
        assert.equal(err.kind, "cancelled");
        return true;
      });
      assert.equal(events.at(-1).kind, "end");
      assert.equal(events.at(-1).message, "cancelled");
      assert.deepEqual(readdirSync(t.dir), [], "a cancelled export leaves nothing in out");
      assert.ok(Date.now() - started < 60000);
      // the connection goes on
      assert.ok((await c.status()).requests.byMethod["sbexport/export"] >= 1);
    } finally {
      t.remove();
    }
  });

  test("an already aborted signal rejects at once, without sending", async () => {
    const m = await c.open(MLP);
    const before = (await c.status()).requests.byMethod["sbexport/predict"] ?? 0;
    await assert.rejects(m.predict([[0, 0, 0, 0]], { signal: AbortSignal.abort() }), CancelledError);
    const afterCount = (await c.status()).requests.byMethod["sbexport/predict"] ?? 0;
    assert.equal(afterCount, before);
  });
});
